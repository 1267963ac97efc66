//! Link timeouts ([`Loop::add_with_timeout`](crate::Loop::add_with_timeout)): where an
//! I/O operation keeps its timeout, and which operations take one.
//!
//! A completion has no room of its own for a timeout (its result word holds the outcome,
//! a timer's deadline or a lent scratch cell), so the loop keeps one [`Links`] table,
//! keyed by completion address, of the completions added with a timeout. It is consulted
//! only when it is not empty, so operations added without a timeout pay one
//! `is_empty()` check. An entry is made by `add_with_timeout`, kept across a rearm,
//! removed by `Loop::add`, when the callback disarms, and when the completion is
//! abandoned by a shutdown. io_uring links a LINK_TIMEOUT SQE to the operation (the
//! entry also tracks which of its two CQEs arrived), and keeps the deadline itself while
//! the operation waits in the driver (an accept queued behind another on its listener, a
//! multishot completion parked on its record); the poll backend keeps a timer entry
//! while the operation is parked on readiness. Either way the operation then fails with
//! `ETIMEDOUT` (`io::ErrorKind::TimedOut`).

use std::collections::HashMap;
use std::ptr::NonNull;
use std::time::Duration;

use crate::completion::{Completion, Inner};
use crate::op::Op;

/// Where a linked operation's two io_uring CQEs (its own and its LINK_TIMEOUT's) are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring only
pub(crate) enum LinkWait {
    /// Not submitted with a linked timeout (poll backend, or not issued yet).
    Idle,
    /// Both CQEs are still to come.
    Both,
    /// The operation's CQE came first, with this result.
    Head(isize),
    /// The timeout's CQE came first; whether it fired.
    Timeout { fired: bool },
}

/// One completion's time limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// The limit in nanoseconds (at least 1).
    pub(crate) ns: u64,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))] // io_uring only
    pub(crate) wait: LinkWait,
}

/// The loop's table of completions added with a time limit.
#[derive(Default)]
pub(crate) struct Links {
    map: HashMap<usize, Link>,
}

fn key(c: NonNull<Completion>) -> usize {
    c.as_ptr() as usize
}

impl Links {
    /// No completion has a time limit (the only check on paths without one).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `c` (Dead, about to be submitted) has the limit `d`, if its operation takes one;
    /// else none.
    pub(crate) fn set(&mut self, c: NonNull<Completion>, d: Duration) {
        // SAFETY: the caller holds `c` pinned and Dead; loop thread; only `op` is read.
        if takes_one(unsafe { &(*Completion::raw(c)).op }) {
            let ns = d.as_nanos().clamp(1, u64::MAX as u128) as u64;
            let wait = LinkWait::Idle;
            self.map.insert(key(c), Link { ns, wait });
        } else {
            self.forget(c);
        }
    }

    /// `c` has no time limit any more.
    #[inline]
    pub(crate) fn forget(&mut self, c: NonNull<Completion>) {
        if !self.map.is_empty() {
            self.map.remove(&key(c));
        }
    }

    /// The limit of `c`'s operation, if it has one (an operation changed in its callback
    /// to one that takes none, then rearmed, has none).
    ///
    /// # Safety
    /// `c` is live; loop thread.
    #[inline]
    pub(crate) unsafe fn of(&mut self, c: NonNull<Completion>) -> Option<&mut Link> {
        if self.map.is_empty() {
            return None;
        }
        let inner: *const Inner = Completion::raw(c);
        // SAFETY: the caller's contract; only `op` is read.
        if !takes_one(unsafe { &(*inner).op }) {
            return None;
        }
        self.map.get_mut(&key(c))
    }

    /// Entries (for tests).
    #[cfg(all(test, unix))]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Whether `op` can have a link timeout: an operation that may wait for its fd. Not
/// timers, cancels, no-ops, closes, shutdowns (they never wait), nor zero-copy sends
/// (their buffer is the kernel's until a notification a timeout cannot cut short).
pub(crate) fn takes_one(op: &Op) -> bool {
    !matches!(
        op,
        Op::Noop
            | Op::Timer { .. }
            | Op::Cancel { .. }
            | Op::Close { .. }
            | Op::Shutdown { .. }
            | Op::SendZc { .. }
    )
}
