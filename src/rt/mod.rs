//! The async runtime: a single-threaded executor on one [`Loop`], in which
//! an I/O operation is a [`Completion`](crate::Completion) wrapped in a future (on the
//! poll backend, a socket read or write is done by the future itself, waiting for the
//! socket's readiness with the task's waker when it would block).
//!
//! - [`block_on`] / [`Runtime::block_on`] drive a future, the loop and
//!   every task; [`spawn`] starts a task (no `Send` needed) and returns a
//!   [`JoinHandle`]; [`spawn_blocking`] runs a closure on the
//!   thread pool; `#[xev::main]` and `#[xev::test]` wrap an `async fn`.
//! - Async APIs: [`time`], [`net`], [`fs`],
//!   [`process`], [`signal`] and
//!   [`notify`].
//! - Reads and writes take owned buffers ([`IoBuf`], [`IoBufMut`]) and hand them back
//!   with the result, `(io::Result<usize>, B)`: the kernel may still be using the memory
//!   when a future is dropped, so the runtime keeps it until the operation ends.
//!   Dropping a future cancels its operation and never blocks; a connection that a
//!   cancelled accept produced anyway goes to the listener's next accept.
//! - `#[xev::main]` / `#[xev::test]` take an optional `backend = "io_uring" | "epoll"`
//!   (and, for tests, `"all"`: once per available backend). Misuse is a compile error that
//!   points at the problem, e.g. a function that is not `async`:
//!
//! ```compile_fail
//! #[xev::main]
//! fn main() {}
//! ```
//!
//! or one that takes arguments:
//!
//! ```compile_fail
//! #[xev::test]
//! async fn takes_an_argument(n: u32) {}
//! ```
//!
//! - Callbacks and futures share the loop: [`with_loop`] gives a task the `&mut Loop` to
//!   add callback-style completions (see its example).
//!
//! ```
//! use std::time::Duration;
//!
//! xev::block_on(async {
//!     let tasks: Vec<_> = (0..3u64)
//!         .map(|i| xev::spawn(async move {
//!             xev::time::sleep(Duration::from_millis(3 - i)).await;
//!             i
//!         }))
//!         .collect();
//!     let mut sum = 0;
//!     for t in tasks {
//!         sum += t.await.unwrap();
//!     }
//!     assert_eq!(sum, 3);
//! });
//! ```

mod blocking;
mod buf;
mod executor;
pub(crate) mod io;
pub(crate) mod loop_fd;
pub(crate) mod op_future;
pub mod pool;
mod runtime;
pub(crate) mod sleep;
mod task;
pub(crate) mod timed;

#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
pub mod compat;
#[cfg(unix)]
pub mod fs;
// Windows: `std::fs` on the thread pool (files are not sockets there).
#[cfg(windows)]
#[path = "fs/windows.rs"]
pub mod fs;
// The Windows module's logic (pool jobs, buffers, handle sharing) tested on Linux.
#[cfg(all(test, unix))]
#[path = "fs/windows.rs"]
mod fs_windows;
pub mod net;
pub mod notify;
#[cfg(unix)]
pub mod pipe;
#[cfg(unix)]
pub mod process;
// Windows: process handles waited on by the system thread pool (no pipes or signals).
#[cfg(windows)]
#[path = "process/windows.rs"]
pub mod process;
// Windows: only `ctrl_c` (console events; no Unix signals there).
#[cfg_attr(windows, path = "signal_windows.rs")]
pub mod signal;
pub mod time;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use blocking::spawn_blocking;
pub use buf::{IoBuf, IoBufMut, Slice, SliceMut};
pub use pool::{Pool, PoolHandle, PoolJoinHandle};
pub use runtime::{Builder, Runtime};
pub use task::{JoinError, JoinHandle};

use crate::Loop;

/// Start `fut` as a task on the current runtime. It need not be `Send`: it runs on this
/// thread. The returned [`JoinHandle`] is a future for its output; dropping it detaches
/// the task.
///
/// # Panics
/// Outside a runtime.
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
{
    executor::current("xev::spawn").spawn(fut)
}

/// Run `fut` to completion on a new runtime with default settings (see
/// [`Runtime::block_on`]).
///
/// # Panics
/// If the runtime cannot be created (the error says why), or inside another runtime.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    Runtime::new()
        .unwrap_or_else(|e| panic!("xev::block_on: cannot create a runtime: {e}"))
        .block_on(fut)
}

/// Run `f` with the current runtime's loop, to add callback-style completions that run on
/// the same loop as the tasks. The completions must stay pinned until their callbacks
/// finish (`Box::pin` them, or keep them in the task that awaits the outcome); a
/// callback can wake a task through a [`Waker`](std::task::Waker) it captured, or
/// through [`notify`].
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use xev::{CallbackAction, Completion};
///
/// xev::block_on(async {
///     let fired = Rc::new(Cell::new(false));
///     let mut timer = Box::pin(Completion::new());
///     let f = fired.clone();
///     xev::rt::with_loop(|lp| {
///         lp.timer(timer.as_mut(), 1, move |_lp, _c, _r| {
///             f.set(true);
///             CallbackAction::Disarm
///         })
///     });
///     xev::time::sleep(std::time::Duration::from_millis(20)).await;
///     assert!(fired.get());
///     drop(timer); // Dead by now
/// });
/// ```
///
/// The loop belongs to the runtime: replacing it through the `&mut Loop`
/// (`std::mem::replace`, `std::mem::swap`), here or in a callback on the runtime's loop,
/// would strand every operation pending on it. The runtime checks its loop's identity
/// after `f` returns and after every turn of the loop, and panics if it was replaced
/// ("the runtime's Loop was replaced"); the runtime is unusable afterwards. Dropping the
/// runtime is still safe, unless the replaced loop is kept alive with the runtime's
/// operations in it (then their completions abort the process when the runtime frees
/// them, rather than be freed while that loop still points at them).
///
/// Futures dropped and async sockets or files closed inside `f` (or inside a callback)
/// have their cancel or close deferred to the end of `f` (or to the next turn of the
/// loop), since both need the loop.
///
/// # Panics
/// Outside a runtime, from inside a loop callback (which already has the `&mut Loop`),
/// or if `f` replaced the loop (see above).
pub fn with_loop<R>(f: impl FnOnce(&mut Loop) -> R) -> R {
    let exec = executor::current("xev::rt::with_loop");
    let mut lp = exec
        .lp
        .try_borrow_mut()
        .expect("xev::rt::with_loop called from inside a loop callback");
    let r = f(&mut lp);
    exec.check_loop(&lp);
    exec.flush_deferred(&mut lp);
    r
}

/// Let the other ready tasks (and the loop) run before this task continues.
pub async fn yield_now() {
    struct YieldNow(bool);

    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                return Poll::Ready(());
            }
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    YieldNow(false).await
}
