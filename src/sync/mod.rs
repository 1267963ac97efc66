//! Channels between tasks on different threads: [`mpsc`] (bounded and unbounded, many
//! senders, one receiver) and [`oneshot`] (one value).
//!
//! Every handle is `Send`, so the two ends may live on different workers of a
//! [`Pool`](crate::rt::Pool), on a plain thread, or on the same runtime. A waiting end
//! sleeps through its task's [`Waker`](std::task::Waker): a value (or a close) sent from
//! another thread wakes it through the runtime's remote wake path (the hand-off queue
//! plus one write to the loop's wake fd, skipped while a wake-up is already pending), so
//! nothing spins and a busy receiver costs its senders no system call. The ends also
//! work with any other executor.
//!
//! A bounded channel's values move through a lock-free ring of its capacity
//! (`concurrent-queue`): a send or receive takes no lock unless the other side waits (the
//! lock guards only the wakers and the count of senders). An unbounded channel's values
//! are a `VecDeque` behind the mutex, which the receiver takes whole, one lock for a
//! batch. No allocation per value once the queue has grown. `cargo bench --bench
//! channels` compares a cross-worker ping-pong and streams over these channels with the
//! `async-channel` crate.
//!
//! ```
//! use xev::sync::{mpsc, oneshot};
//!
//! let pool = xev::rt::Pool::new(2)?;
//! let (tx, mut rx) = mpsc::channel::<u32>(4);
//! let (done_tx, done_rx) = oneshot::channel();
//! pool.spawn_on(1, move || async move {
//!     let mut sum = 0;
//!     while let Some(v) = rx.recv().await {
//!         sum += v;
//!     }
//!     done_tx.send(sum).unwrap();
//! });
//! pool.spawn_on(0, move || async move {
//!     for v in 1..=10 {
//!         tx.send(v).await.unwrap();
//!     }
//!     // dropping `tx` ends the receiver's loop
//! });
//! assert_eq!(xev::block_on(done_rx), Ok(55));
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod mpsc;
pub mod oneshot;
