//! [`spawn_blocking`]: run a blocking closure on the thread pool and await its result.

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread;

use atomic_waker::AtomicWaker;

use super::executor::current;
use super::task::JoinHandle;

/// Where the worker leaves the closure's outcome.
struct Shared<R> {
    outcome: Mutex<Option<thread::Result<R>>>,
    waker: AtomicWaker,
}

struct Outcome<R>(Arc<Shared<R>>);

impl<R> Future for Outcome<R> {
    type Output = R;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R> {
        self.0.waker.register(cx.waker());
        let taken = self
            .0
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match taken {
            Some(Ok(v)) => Poll::Ready(v),
            // Re-raised inside the task, so its JoinHandle reports JoinError::Panic.
            Some(Err(payload)) => resume_unwind(payload),
            None => Poll::Pending,
        }
    }
}

/// Run `f` on the runtime's thread pool (threads start on demand, see
/// [`Builder::blocking_threads`](crate::rt::Builder::blocking_threads)) and get its
/// result through a [`JoinHandle`]. A panic in `f` is reported as
/// [`JoinError::Panic`](crate::rt::JoinError::Panic). Aborting the handle stops waiting,
/// not the closure, which runs to the end.
///
/// ```
/// xev::block_on(async {
///     let h = xev::spawn_blocking(|| std::fs::read_to_string("Cargo.toml").map(|s| s.len()));
///     assert!(h.await.unwrap().unwrap() > 0);
/// });
/// ```
///
/// # Panics
/// Outside a runtime.
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let exec = current("xev::spawn_blocking");
    let shared = Arc::new(Shared {
        outcome: Mutex::new(None),
        waker: AtomicWaker::new(),
    });
    let s = shared.clone();
    // The executor's handle to the loop's pool: no loop borrow, so this works inside
    // `with_loop` too.
    exec.pool.execute(move || {
        let r = catch_unwind(AssertUnwindSafe(f));
        *s.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        s.waker.wake();
    });
    exec.spawn(Outcome(shared))
}
