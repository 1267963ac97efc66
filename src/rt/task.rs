//! Tasks: one heap allocation per spawned future (header + future + output), their
//! wakers, and [`JoinHandle`].
//!
//! A task is reference counted by its owners: the executor's task set (until it
//! finishes), each run-queue entry, each [`Waker`], and the [`JoinHandle`]. Wakers may be
//! cloned, woken and dropped on any thread, so the count and the state bits are atomic;
//! everything else (the future, the output, the join waker) is only touched on the
//! executor's thread. The future is always dropped there too: when it finishes, when it
//! is aborted, or when the runtime shuts down, so a waker that outlives the runtime on
//! another thread only ever frees an empty shell.

use std::any::Any;
use std::cell::UnsafeCell;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use super::executor::Remote;

/// In a run queue (set by a wake, cleared just before the task is polled).
const SCHEDULED: u32 = 1;
/// The future is gone: it returned, panicked, or was aborted.
const COMPLETE: u32 = 2;
/// [`JoinHandle::abort`] was called.
const ABORTED: u32 = 4;
/// A [`JoinHandle`] exists.
const HANDLE: u32 = 8;

/// The part of a task that does not depend on its future's type.
pub(crate) struct Header {
    state: AtomicU32,
    refs: AtomicUsize,
    vtable: &'static VTable,
    /// Where a wake from another thread goes.
    pub(crate) remote: Arc<Remote>,
    /// Position in the executor's task set (executor thread only).
    pub(crate) set_index: UnsafeCell<usize>,
    /// Woken when the task completes (executor thread only).
    join_waker: UnsafeCell<Option<Waker>>,
}

struct VTable {
    /// Poll the future once; true when it is gone (output stored).
    poll: unsafe fn(NonNull<Header>) -> bool,
    /// Drop the future in place, storing `Err(Cancelled)` as the output.
    cancel: unsafe fn(NonNull<Header>),
    /// Move the output into `*mut Option<Result<T, JoinError>>`.
    take_output: unsafe fn(NonNull<Header>, *mut ()),
    /// Drop the output (nobody will read it).
    drop_output: unsafe fn(NonNull<Header>),
    /// Free the allocation.
    dealloc: unsafe fn(NonNull<Header>),
}

enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

#[repr(C)]
struct Cell<F: Future> {
    header: Header,
    stage: UnsafeCell<Stage<F>>,
}

impl<F: Future + 'static> Cell<F> {
    const VTABLE: VTable = VTable {
        poll: Self::poll,
        cancel: Self::cancel,
        take_output: Self::take_output,
        drop_output: Self::drop_output,
        dealloc: Self::dealloc,
    };

    /// # Safety (for all of these)
    /// `h` is a live task of this `F`, and the caller is on the executor's thread.
    unsafe fn stage<'a>(h: NonNull<Header>) -> &'a mut Stage<F> {
        // SAFETY: `Cell` is repr(C) with the header first, so the header pointer is the
        // cell pointer; the stage is only touched on the executor thread, one at a time.
        unsafe { &mut *(*h.cast::<Cell<F>>().as_ptr()).stage.get() }
    }

    unsafe fn poll(h: NonNull<Header>) -> bool {
        // SAFETY: see `stage`.
        let stage = unsafe { Self::stage(h) };
        let Stage::Running(fut) = stage else {
            return true;
        };
        // A borrowed waker: it owns no reference, so it must not be dropped (ManuallyDrop);
        // `clone` takes a real reference.
        // SAFETY: the vtable's functions uphold the RawWaker contract for a task header.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw_waker(h)) });
        let mut cx = Context::from_waker(&waker);
        // SAFETY: the future lives inside the task allocation and is never moved out of
        // it until it is dropped in place.
        let fut = unsafe { Pin::new_unchecked(fut) };
        let polled = catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)));
        let r = match polled {
            Ok(Poll::Pending) => return false,
            Ok(Poll::Ready(v)) => Ok(v),
            Err(payload) => Err(JoinError::Panic(payload)),
        };
        // SAFETY: `stage` holds the live `Running` future that just finished.
        unsafe { Self::finish(stage, r) };
        true
    }

    /// Drop the finished future in `stage` (in place: it is pinned) and store `r`. A panic
    /// in that drop (user code) becomes the task's error, as in `cancel`, instead of
    /// unwinding through the executor; the output it replaces is dropped (and a panic
    /// there too is swallowed: the task's result is already that panic).
    ///
    /// # Safety
    /// `stage` holds a live `Running` future that nothing else references now.
    unsafe fn finish(stage: &mut Stage<F>, r: Result<F::Output, JoinError>) {
        let stage: *mut Stage<F> = stage;
        // SAFETY: the caller's contract; after `drop_in_place` (even one that unwinds) the
        // future counts as dropped and is overwritten below without being dropped again.
        let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
            std::ptr::drop_in_place(stage)
        }));
        let r = match dropped {
            Ok(()) => r,
            Err(payload) => {
                let _ = catch_unwind(AssertUnwindSafe(move || drop(r)));
                Err(JoinError::Panic(payload))
            }
        };
        // SAFETY: the old value was dropped in place above; write without dropping it.
        unsafe { std::ptr::write(stage, Stage::Finished(r)) };
    }

    unsafe fn cancel(h: NonNull<Header>) {
        // SAFETY: see `stage`.
        let stage = unsafe { Self::stage(h) };
        if let Stage::Running(_) = stage {
            // Dropping the future here may run user code (and cancel its operations);
            // a panic there is kept as the task's error rather than unwinding the runtime.
            // The future is pinned: it must be dropped where it is, never moved out first
            // (a `Sleep` inside it is registered by address and unregisters on drop).
            let stage: *mut Stage<F> = stage;
            // SAFETY: `stage` holds a live `Running` future that nothing else references
            // now; after `drop_in_place` (even one that unwinds) it counts as dropped and
            // is overwritten below without being dropped again.
            let dropped = catch_unwind(AssertUnwindSafe(|| unsafe {
                std::ptr::drop_in_place(stage)
            }));
            let err = match dropped {
                Ok(()) => JoinError::Cancelled,
                Err(payload) => JoinError::Panic(payload),
            };
            // SAFETY: the old value was dropped in place above; write without dropping it.
            unsafe { std::ptr::write(stage, Stage::Finished(Err(err))) };
        }
    }

    unsafe fn take_output(h: NonNull<Header>, out: *mut ()) {
        // SAFETY: see `stage`; `out` points to an `Option<Result<F::Output, JoinError>>`
        // (the JoinHandle<F::Output> that calls this was created for this task).
        unsafe {
            let out = &mut *out.cast::<Option<Result<F::Output, JoinError>>>();
            if let Stage::Finished(r) = std::mem::replace(Self::stage(h), Stage::Consumed) {
                *out = Some(r);
            }
        }
    }

    unsafe fn drop_output(h: NonNull<Header>) {
        // SAFETY: see `stage`.
        let stage = unsafe { Self::stage(h) };
        if let Stage::Finished(_) = stage {
            *stage = Stage::Consumed;
        }
    }

    unsafe fn dealloc(h: NonNull<Header>) {
        // SAFETY: the last reference is gone; the allocation came from `Box::new` in
        // `RawTask::new`. By then the stage holds no future and no `F::Output` (see the
        // module docs), so freeing it off the executor thread runs no `F` code.
        drop(unsafe { Box::from_raw(h.cast::<Cell<F>>().as_ptr()) });
    }
}

/// An owned reference to a task.
pub(crate) struct TaskRef(NonNull<Header>);

// SAFETY: a TaskRef only gives access to the header's atomics and `Arc<Remote>` off the
// executor thread; the future and output are touched only on the executor thread.
unsafe impl Send for TaskRef {}

impl TaskRef {
    /// Allocate a task for `fut`, owned by the returned reference.
    pub(crate) fn new<F: Future + 'static>(fut: F, remote: Arc<Remote>) -> TaskRef {
        let cell = Box::new(Cell {
            header: Header {
                state: AtomicU32::new(HANDLE),
                refs: AtomicUsize::new(1),
                vtable: &Cell::<F>::VTABLE,
                remote,
                set_index: UnsafeCell::new(usize::MAX),
                join_waker: UnsafeCell::new(None),
            },
            stage: UnsafeCell::new(Stage::Running(fut)),
        });
        TaskRef(NonNull::from(Box::leak(cell)).cast())
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: we hold a reference, so the task is allocated.
        unsafe { self.0.as_ref() }
    }

    /// Another reference to the same task.
    pub(crate) fn clone_ref(&self) -> TaskRef {
        self.header().refs.fetch_add(1, Ordering::Relaxed);
        TaskRef(self.0)
    }

    /// Mark a new task as queued (the caller queues it).
    pub(crate) fn mark_scheduled(&self) {
        self.header().state.fetch_or(SCHEDULED, Ordering::AcqRel);
    }

    /// Poll the task once (executor thread). True when it is complete now.
    pub(crate) fn run(&self) -> bool {
        let h = self.header();
        let state = h.state.fetch_and(!SCHEDULED, Ordering::AcqRel);
        if state & COMPLETE != 0 {
            return false;
        }
        if state & ABORTED != 0 {
            self.cancel();
            return true;
        }
        // SAFETY: executor thread; the task is live.
        let done = unsafe { (h.vtable.poll)(self.0) };
        if !done && h.state.load(Ordering::Acquire) & ABORTED != 0 {
            // The task aborted itself through its own handle while running.
            self.cancel();
            return true;
        }
        done
    }

    /// Drop the future if it is still there (abort, runtime shutdown).
    pub(crate) fn cancel(&self) {
        // SAFETY: executor thread; the task is live.
        unsafe { (self.header().vtable.cancel)(self.0) }
    }

    /// Mark complete and hand the output to the JoinHandle (or drop it if detached).
    pub(crate) fn complete(&self) {
        let h = self.header();
        let state = h.state.fetch_or(COMPLETE, Ordering::AcqRel);
        if state & HANDLE == 0 {
            // SAFETY: executor thread; detached, so nobody will read the output.
            unsafe { (h.vtable.drop_output)(self.0) };
        }
        // SAFETY: executor thread.
        if let Some(w) = unsafe { (*h.join_waker.get()).take() } {
            w.wake();
        }
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { release(self.0) }
    }
}

/// Drop one reference; free the task when it was the last.
///
/// # Safety
/// The caller owns a reference to the live task `h`.
unsafe fn release(h: NonNull<Header>) {
    // SAFETY: the caller owns a reference, so the header is live.
    let header = unsafe { h.as_ref() };
    if header.refs.fetch_sub(1, Ordering::AcqRel) == 1 {
        // SAFETY: that was the last reference.
        unsafe { (header.vtable.dealloc)(h) }
    }
}

/// Queue the task unless it is already queued or complete.
fn schedule(h: NonNull<Header>) {
    // SAFETY: the caller (a waker or handle) holds a reference.
    let header = unsafe { h.as_ref() };
    let state = header.state.fetch_or(SCHEDULED, Ordering::AcqRel);
    if state & (SCHEDULED | COMPLETE) != 0 {
        return;
    }
    header.refs.fetch_add(1, Ordering::Relaxed);
    Remote::schedule(TaskRef(h));
}

const WAKER_VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

fn raw_waker(h: NonNull<Header>) -> RawWaker {
    RawWaker::new(h.as_ptr() as *const (), &WAKER_VTABLE)
}

unsafe fn waker_clone(p: *const ()) -> RawWaker {
    // SAFETY: `p` is a task header the calling waker references.
    let h = unsafe { NonNull::new_unchecked(p as *mut Header) };
    // SAFETY: as above.
    unsafe { h.as_ref() }.refs.fetch_add(1, Ordering::Relaxed);
    raw_waker(h)
}

unsafe fn waker_wake(p: *const ()) {
    // SAFETY: `p` is a task header; the waker owns one reference, consumed here.
    let h = unsafe { NonNull::new_unchecked(p as *mut Header) };
    // SAFETY: as above, the header is live while we hold the reference.
    let header = unsafe { h.as_ref() };
    let state = header.state.fetch_or(SCHEDULED, Ordering::AcqRel);
    if state & (SCHEDULED | COMPLETE) != 0 {
        // Already queued (or finished): just drop the waker's reference.
        // SAFETY: the waker's reference, given up once.
        unsafe { release(h) };
        return;
    }
    // The waker's own reference becomes the run queue entry's: no increment here and
    // decrement at the waker's drop (two atomic read-modify-writes per wake saved).
    Remote::schedule(TaskRef(h));
}

unsafe fn waker_wake_by_ref(p: *const ()) {
    // SAFETY: `p` is a task header the calling waker references.
    schedule(unsafe { NonNull::new_unchecked(p as *mut Header) });
}

unsafe fn waker_drop(p: *const ()) {
    // SAFETY: the waker owns one reference.
    unsafe { release(NonNull::new_unchecked(p as *mut Header)) }
}

/// Why a task has no output.
pub enum JoinError {
    /// The task was aborted (or the runtime shut down) before it finished.
    Cancelled,
    /// The task panicked; the payload is the panic's.
    Panic(Box<dyn Any + Send + 'static>),
}

impl JoinError {
    /// True if the task was aborted.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, JoinError::Cancelled)
    }

    /// True if the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panic(_))
    }

    /// The panic payload (to `std::panic::resume_unwind` it).
    ///
    /// # Panics
    /// If the task was cancelled rather than panicking.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self {
            JoinError::Panic(p) => p,
            JoinError::Cancelled => panic!("JoinError::into_panic on a cancelled task"),
        }
    }

    fn message(&self) -> &str {
        match self {
            JoinError::Cancelled => "",
            JoinError::Panic(p) => p
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(non-string payload)"),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("JoinError::Cancelled"),
            JoinError::Panic(_) => write!(f, "JoinError::Panic({:?})", self.message()),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Cancelled => f.write_str("task was cancelled"),
            JoinError::Panic(_) => write!(f, "task panicked: {}", self.message()),
        }
    }
}

impl std::error::Error for JoinError {}

impl From<JoinError> for std::io::Error {
    fn from(e: JoinError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}

/// An owned permission to await a spawned task's output.
///
/// It is a future resolving to `Ok(output)`, or `Err(JoinError)` if the task panicked or
/// was aborted. Dropping it detaches the task, which keeps running. A `JoinHandle` stays
/// on the thread of its runtime (it is not `Send`).
///
/// ```
/// xev::block_on(async {
///     let h = xev::spawn(async { 6 * 7 });
///     assert_eq!(h.await.unwrap(), 42);
///
///     let slow = xev::spawn(xev::time::sleep(std::time::Duration::from_secs(60)));
///     slow.abort();
///     assert!(slow.await.unwrap_err().is_cancelled());
/// });
/// ```
pub struct JoinHandle<T> {
    task: TaskRef,
    _marker: PhantomData<(T, *const ())>,
}

impl<T> JoinHandle<T> {
    pub(crate) fn new(task: TaskRef) -> JoinHandle<T> {
        JoinHandle {
            task,
            _marker: PhantomData,
        }
    }

    /// Ask the task to stop: its future is dropped (cancelling the operations it was
    /// waiting on) the next time the executor gets to it, and this handle then reports
    /// [`JoinError::Cancelled`]. No effect on a task that already finished.
    pub fn abort(&self) {
        let h = self.task.header();
        let state = h.state.fetch_or(ABORTED, Ordering::AcqRel);
        if state & COMPLETE == 0 {
            schedule(self.task.0);
        }
    }

    /// True once the task has finished (returned, panicked, or been aborted).
    pub fn is_finished(&self) -> bool {
        self.task.header().state.load(Ordering::Acquire) & COMPLETE != 0
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let h = self.task.header();
        if h.state.load(Ordering::Acquire) & COMPLETE != 0 {
            let mut out: Option<Result<T, JoinError>> = None;
            // SAFETY: this thread is the executor's (JoinHandle is !Send); the task's
            // output type is T.
            unsafe { (h.vtable.take_output)(self.task.0, (&mut out as *mut Option<_>).cast()) };
            return Poll::Ready(out.expect("JoinHandle polled after it returned its output"));
        }
        // SAFETY: executor thread; nothing else borrows the join waker now.
        let slot = unsafe { &mut *h.join_waker.get() };
        match slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let h = self.task.header();
        let state = h.state.fetch_and(!HANDLE, Ordering::AcqRel);
        if state & COMPLETE != 0 {
            // SAFETY: executor thread (JoinHandle is !Send).
            unsafe { (h.vtable.drop_output)(self.task.0) };
        }
        // SAFETY: executor thread.
        drop(unsafe { (*h.join_waker.get()).take() });
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}
