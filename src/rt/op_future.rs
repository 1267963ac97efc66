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

use crate::sys::fd::OwnedFd;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::executor::{current, Deferred, Executor};
use super::loop_fd::LoopFd;
use crate::completion::{CallbackAction, Completion, CompletionState, FdKind};
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

/// What keeps the fd an operation names open until the operation is over.
// Windows: no signalfd/pidfd watchers there, so `Shared` is unused.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) enum FdKeeper {
    /// An async socket or file: the last reference announces the close to its loop.
    Loop(Rc<LoopFd>),
    /// An fd the callback-API watchers share (signalfd, pidfd): closed with the last `Arc`.
    /// Never a regular file, so its operations tell the poll backend so (`FdKind`).
    Shared(Arc<OwnedFd>),
}

/// One completion plus what its future needs.
pub(crate) struct Slot {
    c: UnsafeCell<Completion>,
    state: Cell<SlotState>,
    waker: Cell<Option<Waker>>,
    result: Cell<Option<OpResult>>,
    /// The owner of the fd the operation names, kept until the slot is released.
    fd: Cell<Option<FdKeeper>>,
    next_free: Cell<Option<NonNull<Slot>>>,
}

impl Slot {
    /// A result nobody will take: a connection an accept received goes to its
    /// listener's stash (for the next accept on it), anything else is dropped.
    fn keep_or_drop(&self, res: OpResult) {
        match (res, self.fd.take()) {
            (OpResult::Accept(Ok(a)), Some(FdKeeper::Loop(listener))) => {
                listener.stash(a);
                self.fd.set(Some(FdKeeper::Loop(listener)));
            }
            (res, keep) => {
                self.fd.set(keep);
                drop(res);
            }
        }
    }

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

    /// The completion's address (for the loop, which compares it or reaches it through
    /// its cell).
    fn completion_ptr(s: NonNull<Slot>) -> NonNull<Completion> {
        // SAFETY: `s` points to a live slot (its owner holds it); `addr_of!` takes the
        // field's address without making a reference, and an address inside a live
        // allocation is non-null.
        unsafe { NonNull::new_unchecked(UnsafeCell::raw_get(std::ptr::addr_of!((*s.as_ptr()).c))) }
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
        match fd {
            Some(FdKeeper::Loop(fd)) => LoopFd::release_ref(fd, lp),
            Some(FdKeeper::Shared(fd)) => drop(fd),
            None => {}
        }
    }

    /// Start `op` (naming the fd of `fd`, if any) on a fresh slot in state `state`.
    fn start(
        &self,
        lp: &mut Loop,
        op: Op,
        state: SlotState,
        fd: Option<FdKeeper>,
        timeout: Option<std::time::Duration>,
    ) -> NonNull<Slot> {
        let slot = self.acquire();
        let pool: *const SlotPool = self;
        // SAFETY: live slot; Free, so nothing references its completion.
        let s = unsafe { slot.as_ref() };
        let readiness = matches!(fd, Some(FdKeeper::Shared(_)));
        s.state.set(state);
        s.fd.set(fd);
        // SAFETY: as above.
        let mut c = unsafe { Slot::completion(slot) };
        c.as_mut().prep(op, move |lp, c, res| {
            // SAFETY: the pool outlives every callback of its slots: the executor owns
            // both the pool and the loop, and the loop's callbacks only run inside
            // `Executor::turn`.
            unsafe { on_complete(&*pool, slot, Some(lp), c, res) };
            CallbackAction::Disarm
        });
        if readiness && lp.asks_fd_kind() {
            // A signalfd's read: no `fstat` per signal on the poll backend.
            c.as_mut().set_fd_kind(FdKind::Readiness);
        }
        match timeout {
            None => lp.add(c),
            Some(t) => lp.add_with_timeout(c, t),
        }
        slot
    }

    /// Cancel `target` (an orphan's operation) through a slot of its own.
    pub(crate) fn cancel(&self, lp: &mut Loop, target: CancelTarget) {
        self.start(lp, Op::Cancel { target }, SlotState::Orphaned, None, None);
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
/// `slot` is a live slot of `pool` and `c` its completion, inside its callback on `lp`
/// (`None` only in unit tests, which have no loop).
unsafe fn on_complete(
    pool: &SlotPool,
    slot: NonNull<Slot>,
    lp: Option<&mut Loop>,
    c: Pin<&mut Completion>,
    res: OpResult,
) {
    // SAFETY: the caller's promise.
    let s = unsafe { slot.as_ref() };
    match s.state.get() {
        SlotState::InFlight => {
            // An InFlight slot holds no result (its future takes it before releasing the
            // slot), so the result is written in place: no move out of the old value and
            // no drop of it (a result is 48 bytes: one copy fewer).
            // SAFETY: single-threaded, and no reference into the cell exists now (Cell's
            // contents are never borrowed). Overwriting a `Some` would only leak it.
            unsafe { s.result.as_ptr().write(Some(res)) };
            s.state.set(SlotState::Done);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        }
        SlotState::Orphaned => {
            // Nobody will see this result. A connection an orphaned accept received
            // anyway goes to the listener's next accept (the client connected after the
            // future was dropped); any other fd it carries is closed with it, and the
            // op's buffer goes with the op. The operation is over, so its fd may now be
            // closed (if this was its last reference), announced through `lp`.
            s.keep_or_drop(res);
            drop(c.take_op());
            pool.release(slot, lp);
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
    /// Start `op`, which names the fd of `fd`: the slot keeps `fd` until the operation is
    /// over (see the module docs).
    ///
    /// # Panics
    /// As [`keeping`](Self::keeping).
    pub(crate) fn with_fd(op: Op, fd: Option<Rc<LoopFd>>) -> OpFuture {
        OpFuture::keeping(op, fd.map(FdKeeper::Loop))
    }

    /// Start `op` on the current runtime; `fd`, if given, keeps the fd the operation
    /// names open until the operation is over, orphan included (`None`: the operation
    /// names no fd, or the caller keeps it open that long).
    ///
    /// # Panics
    /// Outside a runtime, or inside a loop callback (which has the `&mut Loop` already).
    pub(crate) fn keeping(op: Op, fd: Option<FdKeeper>) -> OpFuture {
        OpFuture::keeping_within(op, fd, None)
    }

    /// [`with_fd`](Self::with_fd) with a time limit (`Loop::add_with_timeout`): past
    /// `timeout` the operation fails with `ETIMEDOUT`.
    pub(crate) fn with_fd_within(
        op: Op,
        fd: Option<Rc<LoopFd>>,
        timeout: std::time::Duration,
    ) -> OpFuture {
        OpFuture::keeping_within(op, fd.map(FdKeeper::Loop), Some(timeout))
    }

    fn keeping_within(
        op: Op,
        fd: Option<FdKeeper>,
        timeout: Option<std::time::Duration>,
    ) -> OpFuture {
        let exec = current("an xev async operation");
        let slot = {
            let Ok(mut lp) = exec.lp.try_borrow_mut() else {
                panic!(
                    "xev: an async operation cannot be started from inside a loop callback; \
                     spawn a task instead"
                );
            };
            let slot = exec
                .slots
                .start(&mut lp, op, SlotState::InFlight, fd, timeout);
            // Finished at submission (the poll backend's first attempt did not wait):
            // run the slot's callback now, so the first poll finds the result and the
            // task goes on without a wake-up and a second poll (within the budget).
            if exec.take_inline() && !lp.finish_now(Slot::completion_ptr(slot)) {
                exec.return_inline();
            }
            slot
        };
        OpFuture {
            exec,
            slot: Some(slot),
        }
    }
}

impl OpFuture {
    /// Whether the runtime this operation was started on has shut down: its result (if
    /// it had not arrived, `Canceled`) is final, and nothing of that runtime runs again.
    pub(crate) fn runtime_closed(&self) -> bool {
        self.exec.is_closed()
    }

    /// Ask the loop to cancel the operation while this future keeps waiting for its
    /// result (`Canceled`, or the real result if it finished first) and its buffer.
    /// Nothing happens if the result is already in.
    pub(crate) fn cancel_in_flight(&self) {
        let Some(slot) = self.slot else {
            return;
        };
        // SAFETY: as in `poll`.
        let s = unsafe { slot.as_ref() };
        if s.state.get() != SlotState::InFlight || self.exec.is_closed() {
            return;
        }
        // SAFETY: a shared reference to name the target, as in `drop`.
        let c = unsafe { &*s.c.get() };
        if c.state() != CompletionState::Active {
            return;
        }
        let target = CancelTarget::of(c);
        match self.exec.lp.try_borrow_mut() {
            Ok(mut lp) => self.exec.slots.cancel(&mut lp, target),
            Err(_) => self.exec.defer(Deferred::Cancel(target)),
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
                // The result arrived but nobody took it: an accepted connection goes to
                // the listener's next accept, any other result is dropped (closing an
                // fd it carries), the op's buffer with the op; free the slot.
                if let Some(res) = s.result.take() {
                    s.keep_or_drop(res);
                }
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

#[cfg(test)]
mod tests {
    //! The slot pool's bookkeeping, driven by hand: no loop, no syscall, so these also run
    //! under Miri. Not covered here (they need a `Loop` and an executor, and are exercised
    //! by the runtime tests): `SlotPool::start`, and `OpFuture`'s `new`, `poll` and `drop`
    //! (the cancel submitted for an orphan).

    use super::*;
    use crate::result::ReadError;
    use crate::Buffer;
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<CountingWaker>, Waker) {
        let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (w.clone(), Waker::from(w))
    }

    fn slot_ref<'a>(s: NonNull<Slot>) -> &'a Slot {
        // SAFETY: every slot in these tests belongs to a pool that outlives the reference.
        unsafe { s.as_ref() }
    }

    /// Give the slot's (Dead) completion a read op that owns a heap buffer.
    fn prep_read(s: NonNull<Slot>, len: usize) {
        // SAFETY: live slot; no other reference to its completion is held.
        let c = unsafe { Slot::completion(s) };
        let op = Op::Read {
            fd: crate::sys::fd::NO_FD,
            buf: Buffer::from(vec![7u8; len]),
        };
        c.prep(op, |_, _, _| CallbackAction::Disarm);
    }

    fn op_is_noop(s: NonNull<Slot>) -> bool {
        // SAFETY: live slot; no other reference to its completion is held.
        matches!(unsafe { Slot::completion(s) }.op(), Some(Op::Noop))
    }

    #[test]
    fn slots_keep_their_address_as_the_pool_grows_and_are_reused() {
        let pool = SlotPool::default();
        // Five chunks: the list of chunks reallocates on the way, the chunks must not move.
        let n = 5 * CHUNK + 1;
        let slots: Vec<NonNull<Slot>> = (0..n).map(|_| pool.acquire()).collect();
        assert_eq!(pool.chunks.borrow().len(), 6);
        let distinct: HashSet<usize> = slots.iter().map(|s| s.as_ptr() as usize).collect();
        assert_eq!(distinct.len(), n, "every acquired slot is a different slot");
        // Slots of the first chunk are still usable after the pool grew.
        for &s in &slots {
            slot_ref(s).state.set(SlotState::InFlight);
        }
        prep_read(slots[0], 16);
        // SAFETY: live slot, no other reference to its completion.
        let op = unsafe { Slot::completion(slots[0]) }.take_op();
        assert!(matches!(op, Some(Op::Read { ref buf, .. }) if buf.len() == 16));
        // Released slots come back last-in first-out, as Free, without a new chunk.
        pool.release(slots[3], None);
        pool.release(slots[2 * CHUNK], None);
        assert_eq!(slot_ref(slots[3]).state.get(), SlotState::Free);
        assert_eq!(pool.acquire(), slots[2 * CHUNK]);
        assert_eq!(pool.acquire(), slots[3]);
        assert_eq!(pool.chunks.borrow().len(), 6);
    }

    #[test]
    fn a_result_for_a_waiting_future_is_stored_and_wakes_it() {
        let pool = SlotPool::default();
        let slot = pool.acquire();
        let s = slot_ref(slot);
        s.state.set(SlotState::InFlight);
        let (count, w) = waker();
        s.waker.set(Some(w));
        prep_read(slot, 32);
        // What the loop does when the read finishes: call the slot's callback.
        // SAFETY: `slot` is a live slot of `pool`; its completion is Dead, as in a callback.
        unsafe {
            on_complete(
                &pool,
                slot,
                None,
                Slot::completion(slot),
                OpResult::Read(Ok(5)),
            )
        };
        assert_eq!(s.state.get(), SlotState::Done);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        assert!(s.waker.take().is_none(), "the waker was consumed");
        assert!(matches!(s.result.take(), Some(OpResult::Read(Ok(5)))));
        // The op (and its buffer) stays in the slot for the future to take.
        assert!(!op_is_noop(slot));
    }

    #[test]
    fn a_result_for_an_orphan_drops_the_op_and_frees_the_slot() {
        let pool = SlotPool::default();
        let slot = pool.acquire();
        slot_ref(slot).state.set(SlotState::Orphaned);
        prep_read(slot, 4096);
        // SAFETY: as above.
        unsafe {
            on_complete(
                &pool,
                slot,
                None,
                Slot::completion(slot),
                OpResult::Read(Err(ReadError::Canceled)),
            )
        };
        assert!(op_is_noop(slot), "the orphan's op and buffer were dropped");
        assert_eq!(slot_ref(slot).state.get(), SlotState::Free);
        assert!(slot_ref(slot).result.take().is_none());
        assert_eq!(pool.acquire(), slot, "the slot is back on the free list");
    }

    #[test]
    fn shutdown_cancels_waiters_frees_orphans_and_leaves_the_rest() {
        let pool = SlotPool::default();
        let waiting = pool.acquire();
        let orphan = pool.acquire();
        let done = pool.acquire();
        let free = pool.acquire();
        pool.release(free, None);

        slot_ref(waiting).state.set(SlotState::InFlight);
        let (count, w) = waker();
        slot_ref(waiting).waker.set(Some(w));
        prep_read(waiting, 8);
        slot_ref(orphan).state.set(SlotState::Orphaned);
        prep_read(orphan, 8);
        slot_ref(done).state.set(SlotState::Done);
        slot_ref(done).result.set(Some(OpResult::Read(Ok(1))));

        pool.shutdown();

        // The waiting future gets `Canceled` for its own op and is woken.
        assert_eq!(slot_ref(waiting).state.get(), SlotState::Done);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(
            slot_ref(waiting).result.take(),
            Some(OpResult::Read(Err(ReadError::Canceled)))
        ));
        assert!(!op_is_noop(waiting), "its op stays for the future to take");
        // The orphan is released with its op.
        assert_eq!(slot_ref(orphan).state.get(), SlotState::Free);
        assert!(op_is_noop(orphan));
        // A finished result waits for its future; a free slot stays free.
        assert_eq!(slot_ref(done).state.get(), SlotState::Done);
        assert!(matches!(
            slot_ref(done).result.take(),
            Some(OpResult::Read(Ok(1)))
        ));
        assert_eq!(slot_ref(free).state.get(), SlotState::Free);
        // Free list: the orphan (released last), then the slot released before.
        assert_eq!(pool.acquire(), orphan);
        assert_eq!(pool.acquire(), free);
    }
}
