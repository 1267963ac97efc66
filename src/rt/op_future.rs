//! [`OpFuture`]: one loop operation as a future, and the executor's pool of completions
//! that such futures use (DESIGN section 5).
//!
//! The pool is a list of fixed chunks of [`Slot`]s that never move or shrink, plus a free
//! list, so a slot's completion has a stable address and steady-state operations
//! allocate nothing. A future owns its slot while the operation is in flight. The slot's
//! callback stores the result and wakes the future's waker. A future dropped before its
//! result arrives marks the slot *orphaned* and submits a cancel through a second slot;
//! the orphaned slot (with the buffer it owns, and any fd the result carries, which is
//! closed) is released when the operation's completion finally arrives. Dropping never
//! blocks. A future dropped inside a loop callback, where the loop is borrowed, has its
//! cancel deferred to the start of the executor's next turn (before the loop can block).
//!
//! **fd lifetime.** An fd number is never closed while an operation that names it can
//! still be submitted, is in the kernel, is parked on readiness or is queued for the
//! thread pool, orphans included: otherwise a new file could get the number first and
//! the stale operation would run on it (a write sending its bytes to another connection,
//! a read taking another connection's data). So an operation on an fd owned by an async
//! type ([`LoopFd`]) keeps a reference to it in its slot until the slot is released, and
//! the fd is closed when the last reference goes (see [`LoopFd`]). That is one `Rc`
//! clone per operation; no syscall, no allocation.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::executor::{current, Deferred, Executor};
use super::loop_fd::LoopFd;
use crate::completion::{CallbackAction, Completion, CompletionState};
use crate::op::{CancelTarget, Op};
use crate::result::OpResult;
use crate::Loop;

/// Slots per chunk.
const CHUNK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    /// The operation is in the loop; a future waits for it.
    InFlight,
    /// The result is stored; the future has not taken it yet.
    Done,
    /// Nobody waits: release the slot when the operation's completion arrives.
    Orphaned,
}

/// One completion plus what its future needs.
pub(crate) struct Slot {
    c: UnsafeCell<Completion>,
    state: Cell<SlotState>,
    waker: Cell<Option<Waker>>,
    result: Cell<Option<OpResult>>,
    /// The owner of the fd the operation names, kept until the slot is released.
    fd: Cell<Option<Rc<LoopFd>>>,
    next_free: Cell<Option<NonNull<Slot>>>,
}

impl Slot {
    fn new() -> Slot {
        Slot {
            c: UnsafeCell::new(Completion::new()),
            state: Cell::new(SlotState::Free),
            waker: Cell::new(None),
            result: Cell::new(None),
            fd: Cell::new(None),
            next_free: Cell::new(None),
        }
    }

    /// The completion, pinned.
    ///
    /// # Safety
    /// The slot is live and the caller holds no other reference to its completion.
    unsafe fn completion<'a>(s: NonNull<Slot>) -> Pin<&'a mut Completion> {
        // SAFETY: slots never move (chunks are boxed and never freed while the pool is
        // alive), so the completion is pinned; exclusivity is the caller's promise.
        unsafe { Pin::new_unchecked(&mut *(*s.as_ptr()).c.get()) }
    }
}

/// The executor's completions for async operations.
#[derive(Default)]
pub(crate) struct SlotPool {
    chunks: RefCell<Vec<Box<[Slot]>>>,
    free: Cell<Option<NonNull<Slot>>>,
}

impl SlotPool {
    fn acquire(&self) -> NonNull<Slot> {
        let slot = match self.free.get() {
            Some(s) => s,
            None => {
                let chunk: Box<[Slot]> = (0..CHUNK).map(|_| Slot::new()).collect();
                let mut chunks = self.chunks.borrow_mut();
                chunks.push(chunk);
                let chunk = chunks.last().expect("just pushed");
                for s in chunk.iter().rev() {
                    s.next_free.set(self.free.get());
                    self.free.set(Some(NonNull::from(s)));
                }
                self.free.get().expect("a fresh chunk has free slots")
            }
        };
        // SAFETY: free slots are live (chunks outlive the pool's users).
        let s = unsafe { slot.as_ref() };
        self.free.set(s.next_free.take());
        slot
    }

    /// Free `slot` (its operation is over) and let go of its fd reference; `lp` is the
    /// loop when called from one of its callbacks.
    fn release(&self, slot: NonNull<Slot>, lp: Option<&mut Loop>) {
        // SAFETY: the slot is live and its completion is Dead (or in its own callback).
        let s = unsafe { slot.as_ref() };
        let fd = s.fd.take();
        s.state.set(SlotState::Free);
        s.next_free.set(self.free.get());
        self.free.set(Some(slot));
        if let Some(fd) = fd {
            LoopFd::release_ref(fd, lp);
        }
    }

    /// Start `op` (naming the fd of `fd`, if any) on a fresh slot in state `state`.
    fn start(
        &self,
        lp: &mut Loop,
        op: Op,
        state: SlotState,
        fd: Option<Rc<LoopFd>>,
    ) -> NonNull<Slot> {
        let slot = self.acquire();
        let pool: *const SlotPool = self;
        // SAFETY: live slot; Free, so nothing references its completion.
        let s = unsafe { slot.as_ref() };
        s.state.set(state);
        s.fd.set(fd);
        // SAFETY: as above.
        let c = unsafe { Slot::completion(slot) };
        lp.start(c, op, move |lp, c, res| {
            // SAFETY: the pool outlives every callback of its slots: the executor owns
            // both the pool and the loop, and the loop's callbacks only run inside
            // `Executor::turn`.
            unsafe { on_complete(&*pool, slot, lp, c, res) };
            CallbackAction::Disarm
        });
        slot
    }

    /// Cancel `target` (an orphan's operation) through a slot of its own.
    pub(crate) fn cancel(&self, lp: &mut Loop, target: CancelTarget) {
        self.start(lp, Op::Cancel { target }, SlotState::Orphaned, None);
    }

    /// After the loop was shut down (every completion Dead, no callback will come):
    /// finish waiting futures with `Canceled`, free orphans.
    pub(crate) fn shutdown(&self) {
        let chunks = self.chunks.borrow();
        for s in chunks.iter().flat_map(|c| c.iter()) {
            let slot = NonNull::from(s);
            let state = s.state.get();
            if !matches!(state, SlotState::InFlight | SlotState::Orphaned) {
                continue;
            }
            // SAFETY: a shared reference to read the state; the loop accesses the
            // completion only through its cell.
            if unsafe { &*s.c.get() }.state() == CompletionState::Active {
                // Only if the runtime's loop was replaced and the old one is kept alive
                // (see `with_loop`): the operation may still run, so the slot keeps its
                // buffer and fd. Freeing the pool then aborts (an Active completion's
                // drop does) rather than free memory that loop points to.
                continue;
            }
            // SAFETY: Dead: the loop let go of the completion, and no one else holds it.
            let c = unsafe { Slot::completion(slot) };
            if state == SlotState::InFlight {
                let canceled = -(libc::ECANCELED as isize);
                let res = c.op().map(|op| OpResult::build(op, canceled, None));
                s.result.set(Some(res.unwrap_or(OpResult::Noop)));
                s.state.set(SlotState::Done);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            } else {
                drop(c.take_op());
                self.release(slot, None);
            }
        }
    }
}

/// The callback of every pool completion.
///
/// # Safety
/// `slot` is a live slot of `pool` and `c` its completion, inside its callback on `lp`.
unsafe fn on_complete(
    pool: &SlotPool,
    slot: NonNull<Slot>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    res: OpResult,
) {
    // SAFETY: the caller's promise.
    let s = unsafe { slot.as_ref() };
    match s.state.get() {
        SlotState::InFlight => {
            s.result.set(Some(res));
            s.state.set(SlotState::Done);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        SlotState::Orphaned => {
            // Nobody will see this result: dropping it closes an accepted fd, and the
            // op's buffer goes with the op. The operation is over, so its fd may now be
            // closed (if this was its last reference), announced through `lp`.
            drop(res);
            drop(c.take_op());
            pool.release(slot, Some(lp));
        }
        other => unreachable!("completion of a pool slot in state {other:?}"),
    }
}

/// One operation on the current runtime's loop, as a future resolving to the typed
/// result and the operation (which hands back its buffer).
///
/// The operation starts when the future is created; dropping the future before the
/// result arrives cancels the operation (see the module docs).
pub(crate) struct OpFuture {
    exec: Rc<Executor>,
    slot: Option<NonNull<Slot>>,
}

impl OpFuture {
    /// Start `op` on the current runtime (an operation that names no fd, or one whose fd
    /// the caller keeps open until the operation is over, orphan included).
    ///
    /// # Panics
    /// Outside a runtime, or inside a loop callback (which has the `&mut Loop` already).
    pub(crate) fn new(op: Op) -> OpFuture {
        OpFuture::with_fd(op, None)
    }

    /// Start `op`, which names the fd of `fd`: the slot keeps `fd` until the operation is
    /// over (see the module docs).
    ///
    /// # Panics
    /// As [`new`](Self::new).
    pub(crate) fn with_fd(op: Op, fd: Option<Rc<LoopFd>>) -> OpFuture {
        let exec = current("an xev async operation");
        let slot = {
            let Ok(mut lp) = exec.lp.try_borrow_mut() else {
                panic!(
                    "xev: an async operation cannot be started from inside a loop callback; \
                     spawn a task instead"
                );
            };
            exec.slots.start(&mut lp, op, SlotState::InFlight, fd)
        };
        OpFuture {
            exec,
            slot: Some(slot),
        }
    }
}

impl Future for OpFuture {
    type Output = (OpResult, Op);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(OpResult, Op)> {
        let slot = self.slot.expect("OpFuture polled after it completed");
        // SAFETY: our slot is live while we own it (the pool outlives us: we hold its
        // executor).
        let s = unsafe { slot.as_ref() };
        if s.state.get() != SlotState::Done {
            let w = s.waker.take();
            s.waker.set(match w {
                Some(w) if w.will_wake(cx.waker()) => Some(w),
                _ => Some(cx.waker().clone()),
            });
            return Poll::Pending;
        }
        let res = s.result.take().expect("a Done slot holds its result");
        // SAFETY: Done, so the completion is Dead and we own it.
        let op = unsafe { Slot::completion(slot) }
            .take_op()
            .expect("a Done slot's completion is Dead");
        self.slot = None;
        self.exec.slots.release(slot, None);
        Poll::Ready((res, op))
    }
}

impl Drop for OpFuture {
    fn drop(&mut self) {
        let Some(slot) = self.slot else {
            return;
        };
        // SAFETY: as in `poll`.
        let s = unsafe { slot.as_ref() };
        match s.state.get() {
            SlotState::Done => {
                // The result arrived but nobody took it: drop it (closing an fd it
                // carries) and the op's buffer, and free the slot.
                drop(s.result.take());
                // SAFETY: Done, so Dead and ours.
                drop(unsafe { Slot::completion(slot) }.take_op());
                self.exec.slots.release(slot, None);
            }
            SlotState::InFlight => {
                s.state.set(SlotState::Orphaned);
                drop(s.waker.take());
                if self.exec.is_closed() {
                    return;
                }
                // SAFETY: a shared reference to name the target; the loop accesses the
                // completion only through its cell.
                let c = unsafe { &*s.c.get() };
                if c.state() != CompletionState::Active {
                    return;
                }
                let target = CancelTarget::of(c);
                // The loop is busy only if this future is dropped from inside one of its
                // callbacks (or inside `with_loop`): then the cancel is deferred to the
                // start of the next turn (or the end of `with_loop`).
                match self.exec.lp.try_borrow_mut() {
                    Ok(mut lp) => self.exec.slots.cancel(&mut lp, target),
                    Err(_) => self.exec.defer(Deferred::Cancel(target)),
                }
            }
            SlotState::Free | SlotState::Orphaned => {
                unreachable!("an OpFuture's slot is never Free or Orphaned while it owns it")
            }
        }
    }
}
