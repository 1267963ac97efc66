//! [`Completion`]: one operation, its callback, and the loop's bookkeeping for it.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomPinned;
use std::net::SocketAddr;
use std::pin::Pin;
use std::ptr::NonNull;

use crate::callback::Callback;
use crate::event_loop::{Loop, LoopId};
use crate::heap::HeapItem;
use crate::op::Op;
use crate::registry::Ticket;
use crate::result::OpResult;
use crate::scratch::{needs_scratch, Scratch, ScratchCell, ScratchPool};
use crate::sys;

/// What a callback asks the loop to do with its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAction {
    /// The operation is finished; the completion is Dead and may be reused or dropped.
    Disarm,
    /// Queue exactly the same operation again (same fd, same buffer, same absolute timer
    /// deadline). Ignored if the callback already re-added the completion itself.
    Rearm,
}

/// Whether a completion is in use by a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionState {
    /// Not in any loop: may be configured, added, or dropped.
    Dead,
    /// Owned by a loop until its callback runs. Dropping it aborts the process.
    Active,
}

/// Where an Active completion is (the loop's finer view of `Active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // Kernel, Canceling: io_uring only
pub(crate) enum Phase {
    /// Not in a loop.
    Dead,
    /// Its callback is running: reusable (reported Dead), but must not be dropped.
    Callback,
    /// Result known, waiting in the ready queue for its callback.
    Ready,
    /// In the loop's timer heap.
    Timer,
    /// Submitted to the kernel (io_uring).
    Kernel,
    /// In the kernel with a cancel already requested (io_uring): a second cancel is
    /// NotFound.
    Canceling,
    /// Waiting for readiness of its fd (poll backend).
    Waiting,
    /// Running on the thread pool.
    Pool,
}

/// What the completion's result word holds (see [`Word`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WordKind {
    /// `res`: the outcome of an operation without scratch space.
    Res,
    /// `deadline`: a timer; its outcome rides along: cancelled (`true`) or expired.
    Deadline(bool),
    /// `cell`: a scratch-using operation's lent cell, which also holds its outcome.
    Scratch,
}

/// What the descriptor of a completion's `Read`/`Write`/`Readv`/`Writev` is, as its
/// starter knew it: a watcher whose descriptor stays open while the operation is in flight
/// knows its kind once and for all (`watcher::fd::SharedFd::kind`), so the poll backend
/// skips the `fstat` it would otherwise make per operation to tell a regular file (thread
/// pool) from anything it can wait on. A rearm keeps it (the same operation on the same
/// descriptor); anything that may point the operation elsewhere resets it to `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// Not known: the poll backend asks the kernel.
    Unknown,
    /// Something readiness can wait on: a pipe, tty, socket or character device.
    Readiness,
    /// A regular file or block device, which never reports "would block".
    Blocking,
}

/// One word that holds, depending on the operation, its outcome, its timer deadline, or
/// the scratch cell lent to it. [`Inner::kind`] says which; read it only through the
/// `Inner` accessors. Every field is plain data, so any bit pattern is a valid value of
/// each (reading the "wrong" one is wrong, never undefined).
#[derive(Clone, Copy)]
pub(crate) union Word {
    /// Outcome as a CQE would carry it: value or `-errno` (kind `Res`).
    res: isize,
    /// Absolute timer deadline, nanoseconds since the loop's epoch (kind `Deadline`).
    deadline: u64,
    /// The scratch cell lent by the loop while Active (kind `Scratch`).
    cell: *mut ScratchCell,
}

/// The loop-mutable interior of a completion: 128 bytes on 64-bit targets (the operation
/// 72, the callback 24, then 32 of bookkeeping). Fields that are never needed at the same
/// time share space: a timer's heap position lives in `next` (a timer in the heap is in
/// no queue), and its deadline, an operation's outcome and a lent scratch cell share
/// `word`.
pub(crate) struct Inner {
    pub(crate) op: Op,
    pub(crate) callback: Callback,
    /// Intrusive queue link; while the completion is in the timer queue, its position
    /// there instead (see [`Inner::timer_slot`]).
    pub(crate) next: Option<NonNull<Completion>>,
    /// Its name while Active: a registry slot, or a run timer's run position.
    pub(crate) ticket: Ticket,
    word: Word,
    /// The loop this completion is Active in (meaningless while Dead).
    pub(crate) owner: LoopId,
    pub(crate) phase: Phase,
    kind: WordKind,
    /// Poll backend: a non-blocking connect is in progress. io_uring backend (where it is
    /// otherwise unused): this completion's last receive returned data and left the
    /// socket empty, so its next one (a rearm) polls first (`IORING_RECVSEND_POLL_FIRST`).
    /// Cleared by [`Completion::prep`].
    pub(crate) connecting: bool,
    /// What the descriptor of a read or write is, when its starter knew (see
    /// [`FdKind`]); `Unknown` after [`Completion::prep`] and [`Completion::op_mut`].
    /// With it (one byte: the completion is full), poll backend only: since its last
    /// fresh start (not a rearm) this completion parked with its fd's registration made
    /// or refreshed, so a rearm on the same fd may trust the registration; and whether
    /// [`Completion::op_mut`] was called during the current callback. See [`FdNotes`].
    pub(crate) fd: FdNotes,
}

/// A completion's notes on its operation's descriptor, in one byte: its [`FdKind`],
/// whether the poll backend checked its registration since the completion's last fresh
/// start ("checked"), and whether the operation was handed out mutably (`op_mut`) during
/// the current callback ("edited": the callback may have pointed it at another fd, so
/// its rearm is a fresh start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FdNotes(u8);

impl FdNotes {
    const KIND: u8 = 0b011;
    const CHECKED: u8 = 0b100;
    const EDITED: u8 = 0b1000;

    /// Nothing known.
    pub(crate) const NONE: FdNotes = FdNotes(0);

    pub(crate) fn kind(self) -> FdKind {
        match self.0 & Self::KIND {
            1 => FdKind::Readiness,
            2 => FdKind::Blocking,
            _ => FdKind::Unknown,
        }
    }

    pub(crate) fn set_kind(&mut self, kind: FdKind) {
        let k = match kind {
            FdKind::Unknown => 0,
            FdKind::Readiness => 1,
            FdKind::Blocking => 2,
        };
        self.0 = (self.0 & !Self::KIND) | k;
    }

    pub(crate) fn checked(self) -> bool {
        self.0 & Self::CHECKED != 0
    }

    pub(crate) fn set_checked(&mut self, checked: bool) {
        self.0 = (self.0 & !Self::CHECKED) | if checked { Self::CHECKED } else { 0 };
    }

    pub(crate) fn edited(self) -> bool {
        self.0 & Self::EDITED != 0
    }

    pub(crate) fn set_edited(&mut self, edited: bool) {
        self.0 = (self.0 & !Self::EDITED) | if edited { Self::EDITED } else { 0 };
    }
}

impl Inner {
    /// Record the outcome `res` (value or `-errno`) of `this`'s operation.
    ///
    /// # Safety
    /// `this` is a live completion that only the calling thread touches now (the loop
    /// thread, or the pool worker running it); it is Active.
    pub(crate) unsafe fn set_res(this: *mut Inner, res: isize) {
        // SAFETY: the caller's contract; fields are accessed as places, forming no
        // reference to the whole completion. A `Scratch` word points to the lent cell.
        unsafe {
            match (*this).kind {
                WordKind::Res => (*this).word.res = res,
                WordKind::Deadline(_) => (*this).kind = WordKind::Deadline(res < 0),
                WordKind::Scratch => (*(*this).word.cell).res = res,
            }
        }
    }

    /// The outcome recorded by [`set_res`](Self::set_res) (a timer's is 0 or
    /// `-ECANCELED`).
    ///
    /// # Safety
    /// As for `set_res`.
    pub(crate) unsafe fn res(this: *const Inner) -> isize {
        // SAFETY: the caller's contract; the kind says which field is current.
        unsafe {
            match (*this).kind {
                WordKind::Res => (*this).word.res,
                WordKind::Deadline(true) => -(libc::ECANCELED as isize),
                WordKind::Deadline(false) => 0,
                WordKind::Scratch => (*(*this).word.cell).res,
            }
        }
    }

    /// The scratch space lent to `this`'s operation (`None` if it has none: the
    /// operation does not need any, or it is Dead).
    ///
    /// # Safety
    /// As for `set_res`, and the returned reference must not outlive the operation's
    /// Active period nor overlap another reference to the same scratch.
    pub(crate) unsafe fn scratch<'a>(this: *mut Inner) -> Option<&'a mut Scratch> {
        // SAFETY: the caller's contract; a `Scratch` word points to the live lent cell.
        unsafe {
            match (*this).kind {
                WordKind::Scratch => Some(&mut (*(*this).word.cell).sc),
                _ => None,
            }
        }
    }

    /// Prepare the result word of `this` for a submission of its operation: a timer's
    /// deadline is kept on a rearm (if it was a timer before) and otherwise computed by
    /// `deadline()`; a scratch-using operation borrows a cell from `pool`; every other
    /// operation starts with result 0.
    ///
    /// # Safety
    /// `this` is a live, Dead completion about to be submitted; loop thread.
    pub(crate) unsafe fn arm_word(
        this: *mut Inner,
        rearm: bool,
        pool: &mut ScratchPool,
        deadline: impl FnOnce(u64) -> u64,
    ) {
        // SAFETY: the caller's contract. A Dead completion holds no cell (it is given
        // back when the callback runs or the completion is abandoned).
        unsafe {
            debug_assert!(
                (*this).kind != WordKind::Scratch,
                "a Dead completion held scratch"
            );
            match (*this).op {
                Op::Timer { ms } => {
                    if !rearm || !matches!((*this).kind, WordKind::Deadline(_)) {
                        (*this).word.deadline = deadline(ms);
                    }
                    (*this).kind = WordKind::Deadline(false);
                }
                ref op if needs_scratch(op) => {
                    (*this).word.cell = pool.lend();
                    (*this).kind = WordKind::Scratch;
                }
                _ => {
                    (*this).word.res = 0;
                    (*this).kind = WordKind::Res;
                }
            }
        }
    }

    /// Give `this`'s scratch cell (if any) back to `pool`, keeping its outcome in the
    /// word. Done when the callback is about to run, or the completion is abandoned.
    ///
    /// # Safety
    /// `this` is live; loop thread; neither the kernel nor the pool uses the scratch any
    /// more, and no reference from [`scratch`](Self::scratch) is alive.
    pub(crate) unsafe fn release_scratch(this: *mut Inner, pool: &mut ScratchPool) {
        // SAFETY: the caller's contract; the cell came from `pool.lend` in `arm_word`.
        unsafe {
            if (*this).kind == WordKind::Scratch {
                let cell = (*this).word.cell;
                (*this).word.res = (*cell).res;
                (*this).kind = WordKind::Res;
                pool.give_back(cell);
            }
        }
    }

    /// A timer's absolute deadline (nanoseconds since the loop's epoch).
    ///
    /// # Safety
    /// `this` is live; loop thread; its operation is an armed timer.
    pub(crate) unsafe fn deadline(this: *const Inner) -> u64 {
        // SAFETY: the caller's contract.
        unsafe {
            debug_assert!(matches!((*this).kind, WordKind::Deadline(_)));
            (*this).word.deadline
        }
    }

    /// Set a timer's deadline (see [`deadline`](Self::deadline)).
    ///
    /// # Safety
    /// As for `deadline`.
    pub(crate) unsafe fn set_deadline(this: *mut Inner, deadline: u64) {
        // SAFETY: the caller's contract.
        unsafe {
            debug_assert!(matches!((*this).kind, WordKind::Deadline(_)));
            (*this).word.deadline = deadline;
        }
    }

    /// Where the timer sits in the loop's timer queue (valid while it is there).
    ///
    /// # Safety
    /// `this` is live; loop thread; it is in the timer queue (`Phase::Timer`).
    pub(crate) unsafe fn timer_slot(this: *const Inner) -> usize {
        // SAFETY: the caller's contract. The position was stored as a pointer without
        // provenance by `HeapItem::set_index`; it is only turned back into a number.
        unsafe { (*this).next.map_or(0, |p| p.as_ptr() as usize) }
    }
}

/// One operation plus the callback that receives its result.
///
/// A completion is configured with an [`Op`] and a callback, then added to a
/// [`Loop`] pinned (`std::pin::pin!` on the stack or `Box::pin`). It is
/// [`Active`](CompletionState::Active) until its callback runs; while Active its memory is
/// the loop's (and possibly the kernel's), so:
///
/// - dropping an Active completion aborts the process with a message (it cannot be done
///   safely, and the loop is not reachable from `Drop`); drop or
///   [`shutdown`](Loop::shutdown) the loop first, which cancels and drains everything;
/// - adding an Active completion panics;
/// - its [`op`](Self::op) (and buffer) is only readable while it is Dead.
///
/// Inside its own callback a completion counts as Dead (it can be reused right there), but
/// it must not be dropped until the callback returns.
///
/// ```
/// use std::pin::pin;
/// use xev::{CallbackAction, Completion, Loop, OpResult, Options, RunMode, TimerTrigger};
///
/// let mut lp = Loop::new(Options::default())?;
/// let mut c = pin!(Completion::new());
/// lp.timer(c.as_mut(), 1, |_lp, _c, r| {
///     assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Completion {
    inner: UnsafeCell<Inner>,
    _pin: PhantomPinned,
}

impl Default for Completion {
    fn default() -> Self {
        Self::new()
    }
}

impl Completion {
    /// A Dead completion holding [`Op::Noop`] and no callback.
    pub const fn new() -> Completion {
        Completion {
            inner: UnsafeCell::new(Inner {
                op: Op::Noop,
                callback: Callback::empty(),
                next: None,
                ticket: Ticket { slot: 0, gen: 0 },
                word: Word { res: 0 },
                owner: LoopId::NONE,
                phase: Phase::Dead,
                kind: WordKind::Res,
                connecting: false,
                fd: FdNotes::NONE,
            }),
            _pin: PhantomPinned,
        }
    }

    /// Raw access to the interior. All loop code goes through this pointer, never through
    /// `&mut Completion`, so user-held references and the loop's accesses do not conflict.
    pub(crate) fn raw(c: NonNull<Completion>) -> *mut Inner {
        // SAFETY: `c` points to a completion; `raw_get` forms no reference.
        unsafe { UnsafeCell::raw_get(std::ptr::addr_of!((*c.as_ptr()).inner)) }
    }

    fn phase(&self) -> Phase {
        // SAFETY: reading one Copy field through the cell; nothing writes `phase` off the
        // loop thread, and the loop thread is here.
        unsafe { (*self.inner.get()).phase }
    }

    /// Dead (reusable) or Active (owned by a loop).
    pub fn state(&self) -> CompletionState {
        match self.phase() {
            Phase::Dead | Phase::Callback => CompletionState::Dead,
            _ => CompletionState::Active,
        }
    }

    /// The operation, while the completion is Dead (`None` while Active: the kernel may be
    /// writing into its buffer).
    pub fn op(&self) -> Option<&Op> {
        match self.state() {
            // SAFETY: Dead: neither loop, kernel nor pool touches the op now.
            CompletionState::Dead => Some(unsafe { &(*self.inner.get()).op }),
            CompletionState::Active => None,
        }
    }

    /// The operation, mutably, while Dead. Inside the completion's callback this changes
    /// what `Rearm` repeats, and the rearm is then started as a fresh operation, as by
    /// [`Loop::add`](crate::Loop::add): the backend checks its fd again (the callback may
    /// have pointed it at another one), and a timer's deadline is counted from now.
    pub fn op_mut(self: Pin<&mut Self>) -> Option<&mut Op> {
        match self.state() {
            CompletionState::Dead => {
                let inner = self.inner.get();
                // SAFETY: Dead, and `self` is exclusive; the op is not structurally
                // pinned. (Inside its own callback, the loop has moved the callback out
                // of the completion and holds it elsewhere; fields are accessed as
                // places anyway.)
                unsafe {
                    // The caller may point the operation at another descriptor: its kind
                    // is forgotten, and a rearm from this callback is a fresh start (see
                    // `Loop::invoke`).
                    (*inner).fd.set_kind(FdKind::Unknown);
                    (*inner).fd.set_edited(true);
                    Some(&mut (*inner).op)
                }
            }
            CompletionState::Active => None,
        }
    }

    /// Record what the descriptor of this Dead completion's operation is (see
    /// [`FdKind`]), after [`prep`](Self::prep), before it starts.
    pub(crate) fn set_fd_kind(self: Pin<&mut Self>, kind: FdKind) {
        debug_assert!(self.state() == CompletionState::Dead);
        // SAFETY: Dead and exclusive; one plain field written as a place.
        unsafe { (*self.inner.get()).fd.set_kind(kind) }
    }

    /// The buffer of the operation, while Dead (e.g. the bytes a read just produced).
    pub fn buffer(&self) -> Option<&crate::Buffer> {
        self.op().and_then(Op::buffer)
    }

    /// Replace the operation with [`Op::Noop`] and return it (with its buffer), while Dead.
    pub fn take_op(self: Pin<&mut Self>) -> Option<Op> {
        self.op_mut().map(|op| std::mem::replace(op, Op::Noop))
    }

    /// Set the operation and the callback. The callback is stored inline when it is at
    /// most two words (e.g. an `Rc` and an index); up to 64 bytes it goes in a block from
    /// a per-thread cache that the callback set next reuses. So re-preparing a completion
    /// allocates nothing once warmed up; a larger callback is boxed.
    ///
    /// # Panics
    /// If the completion is Active.
    pub fn prep<F>(self: Pin<&mut Self>, op: Op, callback: F)
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        assert!(
            self.state() == CompletionState::Dead,
            "Completion::prep on an Active completion"
        );
        // SAFETY: Dead and exclusive; fields are replaced in place, nothing is moved out of
        // the pinned completion.
        let inner = unsafe { &mut *self.inner.get() };
        inner.op = op;
        inner.callback = Callback::new(callback);
        inner.connecting = false;
        inner.fd = FdNotes::NONE;
    }

    /// The owning loop and registry ticket while Active.
    pub(crate) fn owner_ticket(&self) -> Option<(LoopId, Ticket)> {
        match self.state() {
            CompletionState::Active => {
                // SAFETY: loop thread; `owner` and `ticket` are only written by the loop
                // thread. Read as places: a pool worker may be writing the op (and the
                // result word) right now, so no reference to the whole `Inner` is made.
                let inner = self.inner.get();
                Some(unsafe { ((*inner).owner, (*inner).ticket) })
            }
            CompletionState::Dead => None,
        }
    }

    /// The loop whose `invoke` is running this completion's callback right now, if any.
    pub(crate) fn in_callback_of(&self) -> Option<LoopId> {
        // SAFETY: loop thread; `phase` and `owner` are plain fields only the loop thread
        // writes, read by value.
        let (phase, owner) = unsafe { ((*self.inner.get()).phase, (*self.inner.get()).owner) };
        (phase == Phase::Callback).then_some(owner)
    }

    /// The loop this completion is Active in, if it is Active.
    pub(crate) fn owner(&self) -> Option<LoopId> {
        self.owner_ticket().map(|(l, _)| l)
    }

    /// The address the kernel wrote for accept/recvmsg into the scratch space.
    pub(crate) fn scratch_addr(sc: &Scratch) -> Option<SocketAddr> {
        sys::from_sockaddr(&sc.addr, sc.addrlen)
    }
}

impl HeapItem for NonNull<Completion> {
    fn set_index(self, index: usize) {
        // The position is kept in the queue link, which a timer in the timer queue does
        // not use (it is in no other queue); `Inner::timer_slot` reads it back. As a
        // pointer without provenance it is only ever a number, never dereferenced.
        // (`null().wrapping_add` rather than `ptr::without_provenance_mut`, for the MSRV.)
        let pos = NonNull::new(std::ptr::null_mut::<u8>().wrapping_add(index).cast());
        // SAFETY: only Active (hence live) completions are in the timer queue; loop
        // thread; the field is written as a place.
        unsafe { (*Completion::raw(self)).next = pos }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let phase = self.phase();
        if phase != Phase::Dead {
            let what = if phase == Phase::Callback {
                "inside its own callback"
            } else {
                "while Active (its operation is still in a loop)"
            };
            eprintln!(
                "xev: a Completion was dropped {what}; the loop or kernel still points at it. \
                 Drop or shut down the Loop before its completions. Aborting."
            );
            std::process::abort();
        }
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("state", &self.state())
            .field("op", &self.op())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    /// A guard against growth: a million timers cost a million completions. libxev's
    /// io_uring completion is 128 bytes; so is this one on 64-bit targets.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn completion_stays_small() {
        let size = size_of::<super::Completion>();
        assert!(size <= 128, "Completion grew to {size} bytes");
        assert_eq!(size_of::<crate::Buffer>(), 32, "Buffer");
        assert_eq!(size_of::<crate::callback::Callback>(), 24, "Callback");
    }

    /// A timer's queue position round-trips through the queue link, whatever its value
    /// (run positions have the top bit set).
    #[test]
    fn timer_slot_round_trips_through_the_link() {
        use crate::heap::HeapItem;
        let mut c = Box::pin(super::Completion::new());
        // SAFETY: not moved out of; only used through the raw pointer below.
        let ptr = std::ptr::NonNull::from(unsafe { c.as_mut().get_unchecked_mut() });
        for slot in [
            0,
            1,
            7,
            1 << 40,
            usize::MAX >> 1,
            (1 << (usize::BITS - 1)) | 5,
        ] {
            ptr.set_index(slot);
            // SAFETY: live completion, this thread only.
            assert_eq!(
                unsafe { super::Inner::timer_slot(super::Completion::raw(ptr)) },
                slot
            );
        }
        // SAFETY: as above; a Dead completion must end with an empty link.
        unsafe { (*super::Completion::raw(ptr)).next = None };
    }

    /// The result word: an operation's outcome, a timer's deadline and outcome, or a lent
    /// scratch cell holding the outcome, which stays readable after the cell goes back.
    #[test]
    fn result_word_by_kind() {
        use super::{Inner, WordKind};
        use crate::scratch::ScratchPool;
        let mut pool = ScratchPool::default();
        let mut c = Box::pin(super::Completion::new());
        // SAFETY: not moved out of; only used through the raw pointer.
        let ptr = std::ptr::NonNull::from(unsafe { c.as_mut().get_unchecked_mut() });
        let inner = super::Completion::raw(ptr);
        // SAFETY: a live completion only this thread touches; each op is armed before its
        // word is used, as `Loop::submit` does.
        unsafe {
            (*inner).op = crate::Op::Recv {
                fd: 0,
                buf: crate::Buffer::inline(1),
            };
            Inner::arm_word(inner, false, &mut pool, |_| unreachable!());
            assert_eq!((*inner).kind, WordKind::Res);
            Inner::set_res(inner, -11);
            assert_eq!(Inner::res(inner), -11);
            assert!(Inner::scratch(inner).is_none());

            (*inner).op = crate::Op::Timer { ms: 5 };
            Inner::arm_word(inner, false, &mut pool, |ms| ms * 10);
            assert_eq!(Inner::deadline(inner), 50);
            Inner::set_res(inner, -(libc::ECANCELED as isize));
            assert_eq!(Inner::res(inner), -(libc::ECANCELED as isize));
            // A rearmed timer keeps its deadline and starts with no outcome.
            Inner::arm_word(inner, true, &mut pool, |_| unreachable!());
            assert_eq!((Inner::deadline(inner), Inner::res(inner)), (50, 0));
            Inner::set_res(inner, 0);
            assert_eq!(Inner::res(inner), 0);

            (*inner).op = crate::Op::Accept { fd: 0 };
            // Rearmed from a timer into a non-timer: a fresh word, with scratch.
            Inner::arm_word(inner, true, &mut pool, |_| unreachable!());
            assert_eq!((*inner).kind, WordKind::Scratch);
            Inner::scratch(inner).unwrap().addrlen = 16;
            Inner::set_res(inner, 9);
            assert_eq!(Inner::res(inner), 9);
            Inner::release_scratch(inner, &mut pool);
            assert_eq!(((*inner).kind, Inner::res(inner)), (WordKind::Res, 9));
            assert!(Inner::scratch(inner).is_none());
            assert_eq!(pool.idle(), 1);

            // A timer rearmed after being something else gets a fresh deadline.
            (*inner).op = crate::Op::Timer { ms: 2 };
            Inner::arm_word(inner, true, &mut pool, |ms| ms + 1);
            assert_eq!(Inner::deadline(inner), 3);
            (*inner).op = crate::Op::Noop;
        }
    }

    /// Prints where the bytes of a completion go (`cargo test -p xev --lib
    /// completion_breakdown -- --nocapture`), and checks the parts add up.
    #[test]
    fn completion_breakdown() {
        let parts = [
            ("Op", size_of::<crate::Op>()),
            ("  of which Buffer", size_of::<crate::Buffer>()),
            ("Callback", size_of::<crate::callback::Callback>()),
            (
                "next / timer slot",
                size_of::<Option<std::ptr::NonNull<super::Completion>>>(),
            ),
            ("ticket", size_of::<crate::registry::Ticket>()),
            ("word (res / deadline / scratch)", size_of::<super::Word>()),
            ("owner", size_of::<crate::event_loop::LoopId>()),
            ("phase", size_of::<super::Phase>()),
            ("word kind", size_of::<super::WordKind>()),
            ("connecting", size_of::<bool>()),
            ("fd kind + checked", size_of::<super::FdNotes>()),
        ];
        let total = size_of::<super::Completion>();
        eprintln!("size_of::<Completion>() = {total} bytes:");
        for (name, n) in parts {
            eprintln!("  {name:<32} {n:>3}");
        }
        eprintln!(
            "  (lent only while Active) ScratchCell {} bytes",
            size_of::<crate::scratch::ScratchCell>()
        );
        let sum: usize = parts
            .iter()
            .filter(|(n, _)| !n.starts_with(' '))
            .map(|(_, n)| n)
            .sum();
        assert!(
            sum <= total,
            "the fields ({sum} B) cannot exceed the whole ({total} B)"
        );
        assert!(
            total - sum < 8,
            "{} bytes of padding: reorder or pack the fields",
            total - sum
        );
    }
}
