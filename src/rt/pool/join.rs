//! [`PoolJoinHandle`]: the `Send` handle of a task spawned on a [`Pool`](super::Pool),
//! and the worker-side half that fills it in.
//!
//! The two halves share one `Arc` (a mutex around the result and the two wakers). The
//! worker side, [`Completer`], stores the task's output once; if it is dropped without
//! one (the task was aborted, the pool shut down first, the job never ran), it stores
//! [`JoinError::Cancelled`]. So a handle always resolves.

use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use crate::rt::JoinError;

struct State<T> {
    result: Option<Result<T, JoinError>>,
    /// The result was stored (it may have been taken since).
    done: bool,
    /// The handle's waker (an awaiting task, or a thread blocked in `join`).
    join_waker: Option<Waker>,
    /// The task's own waker, to make it notice an abort.
    task_waker: Option<Waker>,
}

pub(super) struct JoinShared<T> {
    state: Mutex<State<T>>,
    aborted: AtomicBool,
}

impl<T> JoinShared<T> {
    pub(super) fn new() -> Arc<JoinShared<T>> {
        Arc::new(JoinShared {
            state: Mutex::new(State {
                result: None,
                done: false,
                join_waker: None,
                task_waker: None,
            }),
            aborted: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code that can panic runs under the lock (wakers are dropped and woken after
        // unlocking), and the state stays consistent anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The worker's half: stores the task's result (or `Cancelled` when dropped without).
pub(super) struct Completer<T> {
    shared: Arc<JoinShared<T>>,
}

impl<T> Completer<T> {
    pub(super) fn new(shared: Arc<JoinShared<T>>) -> Completer<T> {
        Completer { shared }
    }

    fn finish(&self, r: Result<T, JoinError>) {
        let (waker, task_waker) = {
            let mut st = self.shared.lock();
            if st.done {
                return;
            }
            st.done = true;
            st.result = Some(r);
            (st.join_waker.take(), st.task_waker.take())
        };
        // Unlocked: a waker's destructor may do anything.
        drop(task_waker);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Build the future with `f` on this (worker) thread, catching a panic of `f`.
    pub(super) fn build<F, Fut>(self, f: F) -> Option<PoolTask<Fut, T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        if self.shared.aborted.load(Ordering::Acquire) {
            return None; // dropping `self` stores Cancelled
        }
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(fut) => Some(PoolTask {
                fut: Some(fut),
                completer: self,
                registered: false,
            }),
            Err(payload) => {
                self.finish(Err(JoinError::Panic(payload)));
                None
            }
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        self.finish(Err(JoinError::Cancelled));
    }
}

/// The future a worker runs as a local task: the user's future, plus the hand-over of
/// its output (or panic) to the [`PoolJoinHandle`], plus abort.
pub(super) struct PoolTask<Fut, T> {
    /// `None` once dropped: a finished or aborted task drops its future itself, catching
    /// a panic of its destructor (the task set would drop it outside any `catch_unwind`,
    /// and the panic would unwind through the worker's `block_on` and kill the worker).
    fut: Option<Fut>,
    completer: Completer<T>,
    /// Our waker is stored in the shared state (done once: a task's waker never changes).
    registered: bool,
}

impl<Fut, T> PoolTask<Fut, T> {
    /// Drop the future in place (it is pinned), catching a panic of its destructor: the
    /// handle's result is already stored (or is `Cancelled`, by the completer), and the
    /// panic hook has reported the panic.
    fn drop_fut(fut: &mut Option<Fut>) {
        let p: *mut Option<Fut> = fut;
        // SAFETY: `p` points to the live, pinned `Option` (borrowed mutably here, so
        // nothing else references it); after `drop_in_place`, even one that unwinds, its
        // contents count as dropped, and the write below overwrites them without dropping
        // them again. The future is dropped where it is, never moved.
        let _ = catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(p) }));
        // SAFETY: as above: `p` is valid for writes and its old value is dropped.
        unsafe { std::ptr::write(p, None) };
    }
}

impl<Fut: Future<Output = T>, T> Future for PoolTask<Fut, T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `fut` is structurally pinned: it is never moved out of `self` (only
        // dropped in place, by `drop_fut`), and `PoolTask` has no Drop impl that could
        // move it; the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        let shared = &this.completer.shared;
        if !this.registered {
            this.registered = true;
            shared.lock().task_waker = Some(cx.waker().clone());
        }
        if shared.aborted.load(Ordering::Acquire) {
            // Cancelled: the completer stores it when the task drops it.
            Self::drop_fut(&mut this.fut);
            return Poll::Ready(());
        }
        let Some(fut) = this.fut.as_mut() else {
            return Poll::Ready(()); // already finished (never polled again)
        };
        // SAFETY: see above.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let r = match catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(JoinError::Panic(payload)),
        };
        this.completer.finish(r);
        Self::drop_fut(&mut this.fut);
        Poll::Ready(())
    }
}

/// The handle of a task spawned on a [`Pool`](super::Pool); it is `Send`, unlike
/// [`JoinHandle`](crate::rt::JoinHandle).
///
/// It is a future resolving to `Ok(output)`, or `Err(JoinError)` if the task panicked
/// (while being built or polled) or was cancelled (aborted, or the pool shut down
/// before it finished). Await it from any worker, from any xev runtime or any other
/// executor, or block on it with [`join`](Self::join). Dropping it detaches the task.
///
/// ```
/// let pool = xev::rt::Pool::new(2)?;
/// let h = pool.spawn(|| async { 6 * 7 });
/// assert_eq!(xev::block_on(h).unwrap(), 42); // awaited on another runtime
/// let p = pool.spawn(|| async { panic!("boom") });
/// assert!(p.join().unwrap_err().is_panic());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct PoolJoinHandle<T> {
    shared: Arc<JoinShared<T>>,
    /// Pool id and worker index the task was sent to (to refuse a self-deadlocking
    /// `join` on that worker).
    pub(super) target: (usize, usize),
}

impl<T> PoolJoinHandle<T> {
    pub(super) fn new(shared: Arc<JoinShared<T>>, target: (usize, usize)) -> PoolJoinHandle<T> {
        PoolJoinHandle { shared, target }
    }

    /// Ask the task to stop: unless it already finished, it is dropped at its next
    /// wake-up on its worker (or never built, if it has not started) and the handle
    /// resolves to [`JoinError::Cancelled`]. Never blocks.
    pub fn abort(&self) {
        self.shared.aborted.store(true, Ordering::Release);
        let w = self.shared.lock().task_waker.take();
        if let Some(w) = w {
            w.wake();
        }
    }

    /// True once the task has finished (its result is stored, or was taken).
    pub fn is_finished(&self) -> bool {
        self.shared.lock().done
    }

    /// The index of the worker the task was sent to.
    pub fn worker(&self) -> usize {
        self.target.1
    }

    /// Block this thread until the task finishes, and return its result.
    ///
    /// Meant for threads outside the pool (`main`, tests). On a worker, prefer
    /// `.await`: blocking stops that worker's loop and tasks meanwhile.
    ///
    /// # Panics
    /// On the very worker that runs the task (it could never finish), and if the result
    /// was already taken by awaiting the handle.
    pub fn join(self) -> Result<T, JoinError> {
        if super::current_worker_of(self.target.0) == Some(self.target.1) {
            panic!("PoolJoinHandle::join on the worker that runs the task would deadlock; await it instead");
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        loop {
            let old = {
                let mut st = self.shared.lock();
                if let Some(r) = st.result.take() {
                    return r;
                }
                assert!(!st.done, "PoolJoinHandle::join after the result was taken");
                st.join_waker.replace(waker.clone())
            };
            drop(old); // unlocked (an earlier poll's waker: its destructor may do anything)
            std::thread::park();
        }
    }
}

/// Wakes a thread blocked in [`PoolJoinHandle::join`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl<T> Future for PoolJoinHandle<T> {
    type Output = Result<T, JoinError>;

    /// # Panics
    /// If polled again after it returned `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.shared.lock();
        if let Some(r) = st.result.take() {
            return Poll::Ready(r);
        }
        assert!(!st.done, "PoolJoinHandle polled after it completed");
        let old = match &st.join_waker {
            Some(w) if w.will_wake(cx.waker()) => None,
            _ => st.join_waker.replace(cx.waker().clone()),
        };
        drop(st);
        drop(old); // unlocked: a waker's destructor may do anything
        Poll::Pending
    }
}

impl<T> fmt::Debug for PoolJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolJoinHandle")
            .field("worker", &self.target.1)
            .field("finished", &self.is_finished())
            .finish()
    }
}
