//! Parked completions: operations that no backend performs, finished by a wake-up handed
//! to the loop from any thread (the [`Async`](crate::Async) watcher's wait).
//!
//! A parked completion is an [`Op::Poll`](crate::Op::Poll) whose events carry the
//! crate-internal [`POLL_PARK`] bit. Added by its watcher (`Loop::add_parked`), which
//! then records its ticket where wake-ups find it, the loop registers it like any
//! operation, marks it `Waiting` and gives it to no backend. (Added any other way, e.g.
//! the user's `Loop::add` of a wait that finished, nothing would ever name it: it is
//! finished at once with `POLLIN`, a spurious wake-up, and the watcher's callback parks
//! it again properly; it used to wait forever.) A parked one ends in one of three ways:
//!
//! - a thread calls [`ParkInbox::unpark`] with its [`Ticket`]: the ticket is queued in the
//!   loop's inbox and the loop's own wake-up fd is written (only if no inbox wake-up is
//!   pending already), the one that interrupts the loop's blocking wait (multishot
//!   `POLL_ADD` on io_uring, edge-triggered on epoll, `polling`'s notifier elsewhere);
//!   the loop, once per tick, takes the queued tickets and finishes each completion still
//!   parked under that ticket with `POLLIN`;
//! - the loop thread finishes it at once (`Loop::unpark_now`), or it is
//!   cancelled (`Canceled`);
//! - a shutdown abandons it.
//!
//! A ticket names one registration (slot and generation), so a late or repeated wake-up
//! for a completion that already finished, was cancelled, or was re-added (a new
//! registration) finds nothing and is ignored: the worst a stale ticket can do is
//! nothing. Nothing is allocated per wake-up once the inbox has grown to its working size.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::handoff::Handoff;
use crate::registry::Ticket;

/// A crate-internal bit of [`Op::Poll`](crate::Op::Poll)'s events (outside every
/// `poll(2)` and epoll bit): park the
/// completion in its loop until a wake-up names it (see the module docs). An `Op::Poll`
/// with this bit ignores its fd.
pub(crate) const POLL_PARK: u32 = 1 << 26;
// Users cannot set it: `PollEvents::from_bits` clears the internal bits.
const _: () = assert!(crate::op::PollEvents::INTERNAL & POLL_PARK == POLL_PARK);

/// The cross-thread half of a loop's parked completions: tickets to finish, and how to
/// interrupt the loop's wait. Shared through an `Arc`; it stays valid (and harmless)
/// after its loop is dropped.
pub(crate) struct ParkInbox {
    tickets: Handoff<Ticket>,
    /// An inbox wake-up was written and the loop has not collected the inbox since.
    pending: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl ParkInbox {
    pub(crate) fn new(wake: Box<dyn Fn() + Send + Sync>) -> ParkInbox {
        ParkInbox {
            tickets: Handoff::new(),
            pending: AtomicBool::new(false),
            wake,
        }
    }

    /// Any thread: have the loop finish the completion parked under `t` (if it still is).
    /// Returns whether this call wrote the loop's wake-up fd (no earlier wake-up of this
    /// inbox was still pending).
    pub(crate) fn unpark(&self, t: Ticket) -> bool {
        self.tickets.push(t);
        // Push before the flag: a loop that clears the flag then drains sees the ticket,
        // and a flag we find set was set by a push whose write is still to be collected.
        if self.pending.swap(true, Ordering::AcqRel) {
            return false;
        }
        (self.wake)();
        true
    }

    /// Loop thread: whether wake-ups may be queued (one load; the common case is no).
    pub(crate) fn has_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Loop thread: hand every queued ticket to `f`, in order. The flag is cleared first,
    /// so a wake-up queued during or after the drain writes the wake-up fd again.
    pub(crate) fn collect(&self, f: impl FnMut(Ticket)) {
        self.pending.store(false, Ordering::Release);
        self.tickets.drain_with(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    /// Every ticket queued by any thread is collected, and the wake function runs only
    /// when the inbox goes from empty-and-collected to pending (never twice in a row
    /// without a collect in between).
    #[test]
    fn tickets_arrive_and_wake_ups_coalesce() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let w = wakes.clone();
        let inbox = Arc::new(ParkInbox::new(Box::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        })));
        assert!(inbox.unpark(Ticket { slot: 1, gen: 0 }));
        assert!(!inbox.unpark(Ticket { slot: 2, gen: 0 }));
        assert_eq!(wakes.load(Ordering::Relaxed), 1);
        let mut got = Vec::new();
        inbox.collect(|t| got.push(t.slot));
        assert_eq!(got, [1, 2]);
        assert!(!inbox.has_pending());
        let threads: Vec<_> = (0..4u32)
            .map(|i| {
                let inbox = inbox.clone();
                std::thread::spawn(move || {
                    for n in 0..500 {
                        inbox.unpark(Ticket { slot: i, gen: n });
                    }
                })
            })
            .collect();
        let mut n = 0;
        while n < 2000 {
            if inbox.has_pending() {
                inbox.collect(|_| n += 1);
            }
            std::thread::yield_now();
        }
        threads.into_iter().for_each(|t| t.join().unwrap());
        inbox.collect(|_| n += 1);
        assert_eq!(n, 2000);
        assert!(wakes.load(Ordering::Relaxed) >= 2);
    }
}
