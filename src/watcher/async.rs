//! [`Async`]: wake a loop from any thread (libxev's `Async`).
//!
//! # How a wake-up travels
//!
//! An `Async` is a `pending` flag plus the list of waits parked on it, shared through an
//! `Arc` by every clone of the handle. It has no file descriptor of its own: a wake-up
//! travels over the waiting loop's own wake path, the one the thread pool and the async
//! runtime's cross-thread wakers use (issue 12: one wake-up is one write to the loop's
//! wake-up eventfd, which io_uring watches with a multishot `POLL_ADD` and epoll with an
//! edge-triggered registration, so the loop submits nothing and drains nothing per
//! wake-up; on macOS, the BSDs and Windows it is the `polling` crate's notifier).
//!
//! - [`wait`](Async::wait) *parks* its completion in the loop (an operation no backend
//!   performs; it stays registered, so the loop keeps running and it can be cancelled),
//!   then, under the `Async`'s mutex, looks at the flag: if a notify is pending, the
//!   completion is finished at once; otherwise the loop's wake-up inbox and the
//!   completion's registration ticket are recorded in the `Async`'s list.
//! - [`notify`](Async::notify) does `pending.swap(true)`; only if the flag was clear does
//!   it take the list and hand each parked wait's ticket to its loop: the ticket is
//!   queued in the loop's inbox and the loop's wake-up fd is written, unless a wake-up of
//!   that inbox is still uncollected. While a wake-up is pending, further notifies cost
//!   one atomic swap and nothing else.
//! - The loop, each tick, takes the tickets and finishes the completions still parked
//!   under them. The watcher's callback, on the loop thread and before the user's
//!   callback, **clears** the flag (`swap(false)`); if it was already clear, no notify
//!   happened since the last callback (another wait on the same `Async` consumed it):
//!   the wait is parked again silently and the user's callback does not run. A rearm
//!   parks the completion again (and records it again).
//!
//! Why this loses nothing: a notify sets the flag *before* it takes the mutex to look at
//! the list, and a wait looks at the flag and records itself under that mutex. So for
//! every notify that found the flag clear, either its swap came before the wait's lock
//! (the wait sees the flag and finishes at once) or after it (the notify finds the wait
//! in the list and hands it over). A hand-off that arrives late (the wait was cancelled
//! meanwhile) is harmless: a ticket names one registration, so once the completion has
//! finished or been parked again, the old ticket finds nothing. A notify whose swap
//! lands before the callback's clear is covered by
//! that callback (the swaps are `AcqRel`, so whatever the notifier wrote before
//! `notify` is visible to it); a notify whose swap lands after the clear found the flag
//! clear and wakes the next wait. A callback that finds the flag clear is therefore
//! never the only trace of a notify.
//!
//! So the rule the user can rely on: **every notify is followed by at least one callback
//! that runs after it** (as long as a wait is re-queued each time), and several notifies
//! may be coalesced into one callback.
//!
//! The list holds only parked waits: a notify empties it (each wait listed is handed
//! over once), and a wait that records itself first drops its own loop's entries whose
//! completion is no longer parked (cancelled waits), so it never grows with
//! wait-and-cancel cycles. An entry keeps its loop's inbox (not the loop) alive, so a
//! notify after the loop is gone only queues a ticket nobody reads, and frees it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Op, PollEvents};
use crate::park::{ParkInbox, POLL_PARK};
use crate::registry::Ticket;
use crate::result::{Error, OpResult};

use super::mismatch;

/// A cross-thread wake-up for a loop.
///
/// One side calls [`wait`](Self::wait) on the loop thread (and re-queues it, usually by
/// returning [`CallbackAction::Rearm`], to keep listening); any thread holding a clone
/// calls [`notify`](Self::notify). Notifications coalesce: several notifies before the
/// callback runs produce one callback; a notify made before `wait` still wakes it. See
/// the [module docs](self) for how no wake-up is ever lost.
///
/// The handle is `Clone + Send + Sync` (the clones share one flag) and owns no file
/// descriptor: a wake-up goes through the waiting loop's own wake-up fd. Waiting on one
/// `Async` from several completions or loops at once is allowed: each notification then
/// wakes every wait parked at that moment, and the first callback to run consumes it (the
/// others park again without calling back). A notify after every handle and the loop are
/// dropped does nothing and fails nothing.
///
/// ```
/// use std::{cell::Cell, pin::pin, rc::Rc, thread, time::Duration};
/// use xev::watcher::r#async::Async;
/// use xev::{CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut c = pin!(Completion::new());
/// let mut lp = Loop::new(Options::default())?;
/// let wakeups = Rc::new(Cell::new(0));
/// let a = Async::new()?;
/// a.wait(&mut lp, c.as_mut(), wakeups.clone(), |n, _lp, _c, r| {
///     r.expect("async wait");
///     n.set(n.get() + 1);
///     CallbackAction::Disarm
/// });
/// let notifier = a.clone();
/// let t = thread::spawn(move || {
///     thread::sleep(Duration::from_millis(10));
///     notifier.notify().unwrap();
/// });
/// lp.run(RunMode::UntilDone)?; // blocks until the other thread notifies
/// assert_eq!(wakeups.get(), 1);
/// t.join().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Async {
    shared: Arc<Shared>,
}

struct Shared {
    /// A notify happened that no callback has consumed yet.
    pending: AtomicBool,
    /// The waits parked on this `Async`.
    waiters: Mutex<Waiters>,
    /// Notifies that found no wake-up pending (a statistic).
    writes: AtomicU64,
}

/// A parked wait: its loop's inbox and its registration ticket there.
type Waiter = (Arc<ParkInbox>, Ticket);

/// The waits parked on an `Async`. The usual single wait is held inline, so a notify
/// takes it out of the lock without touching the allocator; more waits (several
/// completions or loops on one `Async`) go in `more`, which a notify takes whole, so
/// that case allocates a list again per hand-off.
#[derive(Default)]
struct Waiters {
    first: Option<Waiter>,
    more: Vec<Waiter>,
}

impl Waiters {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }
}

impl Shared {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while the lock is held; a poisoned list is still sound.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loop thread, right after `c` was added with the parked op: finish it at once if a
    /// notify is pending, else record it, both under the list's lock (see the module
    /// docs).
    fn park(&self, lp: &mut Loop, c: &Completion) {
        // Not parked: the loop refused it (cannot happen for this op) or it already
        // finished; then there is nothing to record.
        let Some(ticket) = lp.parked_ticket(c) else {
            return;
        };
        let inbox = lp.park_inbox();
        let pending = {
            let mut waiters = self.waiters();
            // Entries of this loop whose wait is no longer parked (cancelled) go now.
            let live = |(i, t): &Waiter| !Arc::ptr_eq(i, inbox) || lp.is_parked(*t);
            if !waiters.first.as_ref().is_none_or(live) {
                waiters.first = None;
            }
            if !waiters.more.is_empty() {
                waiters.more.retain(live);
            }
            // A notify whose swap came before this lock is seen here; one after it sees
            // this wait in the list. Checked under the lock, so a wait that finishes at
            // once leaves no entry behind (a later notify would hand it over for nothing).
            let pending = self.pending.load(Ordering::Acquire);
            if !pending {
                let w = (inbox.clone(), ticket);
                match waiters.first {
                    None => waiters.first = Some(w),
                    Some(_) => waiters.more.push(w),
                }
            }
            pending
        };
        if pending {
            lp.unpark_now(ticket);
        }
    }
}

/// The operation of a wait: parked in the loop, for no backend (see `park.rs`).
fn parked_op() -> Op {
    Op::Poll {
        fd: crate::sys::fd::NO_FD,
        events: PollEvents::from_bits_internal(PollEvents::IN.bits() | POLL_PARK),
    }
}

impl Async {
    /// A new, un-notified `Async`. It allocates its shared state and nothing else (no
    /// file descriptor); the `Result` is kept for compatibility and is always `Ok`.
    ///
    /// ```
    /// let a = xev::watcher::r#async::Async::new()?;
    /// a.notify()?; // remembered until a wait consumes it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Async> {
        Ok(Async {
            shared: Arc::new(Shared {
                pending: AtomicBool::new(false),
                waiters: Mutex::new(Waiters::default()),
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// Wake the loop waiting on this `Async` (now, or the next wait if none is queued).
    /// Callable from any thread; never blocks for long (it takes the `Async`'s and the
    /// loop's hand-off locks, each held for a few instructions).
    ///
    /// If a wake-up is already pending (notified, and no callback has run since), this is
    /// one atomic swap and nothing else. Otherwise each parked wait is handed to its loop,
    /// whose wake-up fd is written once (unless a wake-up of that loop through this path
    /// is still uncollected). Writes made before `notify` are visible to the callback that
    /// the notification triggers.
    ///
    /// Never fails (the `Result` is kept for compatibility): the loop's wake-up write
    /// cannot fail for a reason the caller could act on.
    pub fn notify(&self) -> io::Result<()> {
        let s = &*self.shared;
        if s.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        s.writes.fetch_add(1, Ordering::Relaxed);
        // Each wait is handed over once; it records itself again when it parks again.
        // The waits are taken out so that the loop's wake-up write is made without the
        // lock: a loop woken by it (possibly on this CPU, at once) finds the lock free
        // when it parks again.
        let (first, more) = {
            let mut w = s.waiters();
            let more = match w.more.is_empty() {
                true => Vec::new(),
                false => std::mem::take(&mut w.more),
            };
            (w.first.take(), more)
        };
        if let Some((inbox, ticket)) = first {
            inbox.unpark(ticket);
        }
        for (inbox, ticket) in more {
            inbox.unpark(ticket);
        }
        Ok(())
    }

    /// Wait for a notification: `cb` runs on the loop thread with `Ok(())` once
    /// [`notify`](Self::notify) has been called (before or after this call) since the
    /// last callback, or with `Err(Error::Canceled)` if the wait is cancelled. Returning
    /// [`CallbackAction::Rearm`] waits for the next notification.
    ///
    /// The completion is parked in the loop (no system call, no kernel operation) and the
    /// watcher clears the pending flag before `cb` runs; a wake-up that finds no notify
    /// pending parks the wait again without calling `cb` (see the [module docs](self)).
    /// Once `cb` has disarmed, the completion may also be re-added with
    /// [`Loop::add`]: it waits again, as after a rearm (the loop wakes it at once, and
    /// the watcher parks it again, recorded, unless a notify is pending).
    pub fn wait<U, F>(&self, lp: &mut Loop, mut c: Pin<&mut Completion>, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let (mut ud, mut cb) = (userdata, cb);
        c.as_mut().prep(parked_op(), move |lp, mut c, r| {
            let r = match r {
                OpResult::Poll(Ok(_)) => {
                    if !shared.pending.swap(false, Ordering::AcqRel) {
                        // No notify since the last callback: a duplicate hand-off.
                        return repark(&shared, lp, c);
                    }
                    Ok(())
                }
                OpResult::Poll(Err(e)) => Err(e),
                _ => Err(mismatch()),
            };
            let action = cb(&mut ud, lp, c.as_mut(), r);
            // A callback that re-added the completion itself (a new wait, another
            // operation) made it Active again: the loop ignores the action then.
            if action == CallbackAction::Rearm && c.owner().is_none() {
                return repark(&shared, lp, c);
            }
            action
        });
        lp.add_parked(c.as_mut());
        self.shared.park(lp, &c);
    }

    /// How many times [`notify`](Self::notify) found no wake-up pending and so handed one
    /// over (a debugging statistic, shared by all clones): notifies that found a wake-up
    /// already pending are not counted. At most one more than the number of successful
    /// wait callbacks.
    ///
    /// ```
    /// let a = xev::watcher::r#async::Async::new()?;
    /// for _ in 0..1000 {
    ///     a.notify()?;
    /// }
    /// assert_eq!(a.writes(), 1); // coalesced: no wait consumed the first one yet
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn writes(&self) -> u64 {
        self.shared.writes.load(Ordering::Relaxed)
    }
}

/// Park wait `c` again from inside its callback (a rearm, or a duplicate hand-off): the
/// loop ignores the returned action once `c` is Active again.
fn repark(shared: &Shared, lp: &mut Loop, mut c: Pin<&mut Completion>) -> CallbackAction {
    lp.add_parked(c.as_mut());
    shared.park(lp, &c);
    CallbackAction::Disarm
}

impl fmt::Debug for Async {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .field("parked_waits", &self.shared.waiters().len())
            .field("writes", &self.writes())
            .finish()
    }
}
