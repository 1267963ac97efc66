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

/// Kernel-written address and message headers for accept/connect/sendmsg/recvmsg.
#[cfg(unix)]
#[repr(C)]
pub(crate) struct Scratch {
    pub(crate) addr: libc::sockaddr_in6,
    pub(crate) addrlen: libc::socklen_t,
    pub(crate) iov: libc::iovec,
    pub(crate) msg: libc::msghdr,
}
/// Windows: the address and its length (`sys::Scratch`).
#[cfg(windows)]
pub(crate) use crate::sys::Scratch;

/// The loop-mutable interior of a completion.
pub(crate) struct Inner {
    pub(crate) op: Op,
    pub(crate) callback: Callback,
    pub(crate) phase: Phase,
    /// Outcome as a CQE would carry it: value or `-errno`.
    pub(crate) res: isize,
    /// Intrusive queue link.
    pub(crate) next: Option<NonNull<Completion>>,
    /// Registry slot while Active.
    pub(crate) ticket: Ticket,
    /// Where the timer sits in the loop's timer queue.
    pub(crate) timer_slot: usize,
    /// The loop this completion is Active in (meaningless while Dead).
    pub(crate) owner: LoopId,
    /// Absolute timer deadline, nanoseconds since the loop's epoch.
    pub(crate) deadline: u64,
    /// Poll backend: a non-blocking connect is in progress.
    pub(crate) connecting: bool,
    pub(crate) scratch: Scratch,
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
                phase: Phase::Dead,
                res: 0,
                next: None,
                ticket: Ticket { slot: 0, gen: 0 },
                timer_slot: 0,
                owner: LoopId::NONE,
                deadline: 0,
                connecting: false,
                // SAFETY: these libc structs are plain data for which all-zero is valid.
                scratch: unsafe { std::mem::zeroed() },
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

    /// The operation, mutably, while Dead.
    pub fn op_mut(self: Pin<&mut Self>) -> Option<&mut Op> {
        match self.state() {
            // SAFETY: Dead, and `self` is exclusive; the op is not structurally pinned.
            CompletionState::Dead => Some(unsafe { &mut (*self.inner.get()).op }),
            CompletionState::Active => None,
        }
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
    /// most four words, so re-preparing a completion allocates nothing.
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
    }

    /// The owning loop and registry ticket while Active.
    pub(crate) fn owner_ticket(&self) -> Option<(LoopId, Ticket)> {
        match self.state() {
            CompletionState::Active => {
                // SAFETY: loop thread; `owner` and `ticket` are only written by the loop
                // thread.
                let inner = unsafe { &*self.inner.get() };
                Some((inner.owner, inner.ticket))
            }
            CompletionState::Dead => None,
        }
    }

    /// The loop this completion is Active in, if it is Active.
    pub(crate) fn owner(&self) -> Option<LoopId> {
        self.owner_ticket().map(|(l, _)| l)
    }

    /// The address the kernel wrote for accept/recvmsg.
    pub(crate) fn scratch_addr(inner: &Inner) -> Option<SocketAddr> {
        sys::from_sockaddr(&inner.scratch.addr, inner.scratch.addrlen)
    }
}

impl HeapItem for NonNull<Completion> {
    fn set_index(self, index: usize) {
        // SAFETY: only Active (hence live) completions are in the timer queue.
        unsafe { (*Completion::raw(self)).timer_slot = index }
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
    /// A guard against growth: a million timers cost a million completions.
    #[test]
    fn completion_stays_small() {
        let size = std::mem::size_of::<super::Completion>();
        assert!(size <= 280, "Completion grew to {size} bytes");
    }
}
