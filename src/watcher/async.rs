//! [`Async`]: wake a loop from any thread (libxev's `Async`, over a Linux eventfd).
//!
//! On macOS and the BSDs the eventfd is a non-blocking pipe instead (`sys::WakeFd`:
//! `notify` writes one byte, the drain reads the pipe empty); everything below holds
//! as written. Type-checked there, not run.
//!
//! On Windows it is a loopback UDP socket pair, the receiving end polled through
//! `polling`'s AFD readiness: `notify` sends a one-byte datagram, the drain reads them
//! all; the same holds. Type-checked there, not run.
//!
//! # How a wake-up travels
//!
//! An `Async` is an eventfd (non-blocking, close-on-exec) plus a `pending` flag, shared
//! through an `Arc` by every clone of the handle.
//!
//! - [`notify`](Async::notify) does `pending.swap(true)`; only if the flag was clear does
//!   it write the eventfd (one `write(2)`). While a wake-up is pending, further notifies
//!   cost one atomic swap and no syscall.
//! - [`wait`](Async::wait) is an [`Op::Poll`] for readability on the eventfd (libxev
//!   switched from a read to a poll too). When it completes, the watcher, on the loop
//!   thread and before the user's callback, first **drains** the eventfd (a non-blocking
//!   `read(2)`, which resets its counter), then **clears** the flag (`swap(false)`), then
//!   calls the callback.
//!
//! Why drain before clear: a notify that lands after the clear finds the flag clear and
//! writes the eventfd again; because the drain is already over, that write stays in the
//! counter and wakes the next wait. A notify that lands between the drain and the clear
//! finds the flag set and writes nothing, but it happened before the clear, and the
//! callback runs after the clear, so the callback covers it (the swaps are `AcqRel`, so
//! whatever the notifier wrote before `notify` is visible to the callback). The opposite
//! order (clear, then drain) would lose wake-ups: a notify between the two would set the
//! flag and write, the drain would then swallow its write, and the flag would stay set
//! with nothing in the eventfd, so every later notify would be skipped and the loop would
//! never wake again.
//!
//! So the rule the user can rely on: **every notify is followed by at least one callback
//! that runs after it** (as long as a wait is re-queued each time), and several notifies
//! may be coalesced into one callback.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[cfg(target_os = "linux")]
use crate::backend::poll::POLL_EDGE;
#[cfg(target_os = "linux")]
use crate::backend::Backend;
use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
#[cfg(target_os = "linux")]
use crate::op::Buffer;
use crate::op::{Op, PollEvents};
#[cfg(target_os = "linux")]
use crate::result::ReadError;
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
/// The handle is `Clone + Send + Sync` (the clones share one eventfd). Waiting on one
/// `Async` from several completions or loops at once is allowed and safe, but pointless:
/// each notification then wakes at least one of them. Dropping every handle closes the
/// eventfd once no wait is in flight any more (a queued wait holds a reference).
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
    /// The eventfd (non-blocking, close-on-exec); a pipe on macOS/BSD.
    fd: crate::sys::WakeFd,
    /// A wake-up has been written (or is being written) and not yet consumed by a wait.
    pending: AtomicBool,
    /// Number of eventfd writes `notify` made (a statistic).
    writes: AtomicU64,
}

impl Async {
    /// A new, un-notified `Async` (one `eventfd(2)`).
    ///
    /// ```
    /// let a = xev::watcher::r#async::Async::new()?;
    /// a.notify()?; // remembered until a wait consumes it
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new() -> io::Result<Async> {
        Ok(Async {
            shared: Arc::new(Shared {
                fd: crate::sys::WakeFd::new()?,
                pending: AtomicBool::new(false),
                writes: AtomicU64::new(0),
            }),
        })
    }

    /// Wake the loop waiting on this `Async` (now, or the next wait if none is queued).
    /// Callable from any thread; never blocks.
    ///
    /// If a wake-up is already pending (notified, and no callback has run since), this is
    /// one atomic swap and no system call. Writes made before `notify` are visible to the
    /// callback that the notification triggers.
    ///
    /// Errors only if the eventfd write fails for a reason other than a full counter
    /// (which cannot happen with an fd this type owns); the notification is then not
    /// pending and a later `notify` tries again.
    pub fn notify(&self) -> io::Result<()> {
        let s = &*self.shared;
        if s.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A full counter is success: the fd is readable anyway, so the wait wakes.
        if let Err(e) = s.fd.signal() {
            s.pending.store(false, Ordering::Release);
            return Err(e);
        }
        s.writes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Wait for a notification: `cb` runs on the loop thread with `Ok(())` once
    /// [`notify`](Self::notify) has been called (before or after this call) since the
    /// last callback, or with `Err(Error::Canceled)` if the wait is cancelled. Returning
    /// [`CallbackAction::Rearm`] waits for the next notification.
    ///
    /// The wait is an [`Op::Poll`] on the eventfd; the watcher drains the eventfd and
    /// clears the pending flag before `cb` runs (see the [module docs](self)).
    pub fn wait<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let shared = Arc::clone(&self.shared);
        let (mut ud, mut cb) = (userdata, cb);
        // Linux: the eventfd is never drained by a syscall of its own (see the module
        // docs): io_uring reads it inside the wait, the poll backend waits for its edges.
        #[cfg(target_os = "linux")]
        {
            let fd = shared.fd.raw();
            let op = match lp.backend() {
                Backend::IoUring => Op::Read {
                    fd,
                    buf: Buffer::inline(8),
                },
                _ => Op::Poll {
                    fd,
                    events: PollEvents::from_bits(PollEvents::IN.bits() | POLL_EDGE),
                },
            };
            // The closure owns a reference to the eventfd, so the fd stays open while the
            // wait is in flight even if every handle is dropped.
            lp.start(c, op, move |lp, c, r| {
                let r = match r {
                    OpResult::Read(Ok(_)) | OpResult::Poll(Ok(_)) => {
                        if !shared.pending.swap(false, Ordering::AcqRel) {
                            // No notify since the last callback: a stale edge or count.
                            return CallbackAction::Rearm;
                        }
                        Ok(())
                    }
                    OpResult::Read(Err(ReadError::Canceled)) => Err(Error::Canceled),
                    OpResult::Read(Err(ReadError::Io(e))) => Err(Error::Io(e)),
                    // An eventfd never reads 0 bytes.
                    OpResult::Read(Err(ReadError::Eof)) => Err(mismatch()),
                    OpResult::Poll(Err(e)) => Err(e),
                    _ => Err(mismatch()),
                };
                cb(&mut ud, lp, c, r)
            });
        }
        #[cfg(not(target_os = "linux"))]
        {
            let op = Op::Poll {
                fd: shared.fd.raw(),
                events: PollEvents::IN,
            };
            // The closure owns a reference to the wake-up fd (see above).
            lp.start(c, op, move |lp, c, r| {
                let r = match r {
                    OpResult::Poll(Ok(_)) => {
                        shared.consume();
                        Ok(())
                    }
                    OpResult::Poll(Err(e)) => Err(e),
                    _ => Err(mismatch()),
                };
                cb(&mut ud, lp, c, r)
            });
        }
    }

    /// How many times [`notify`](Self::notify) actually wrote the eventfd (a debugging
    /// statistic, shared by all clones): notifies that found a wake-up already pending
    /// are not counted. At most one more than the number of successful wait callbacks.
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

#[cfg(not(target_os = "linux"))]
impl Shared {
    /// Called on the loop thread when a wait saw the eventfd readable: drain it, then
    /// clear the flag (in this order; see the module docs).
    fn consume(&self) {
        self.fd.drain();
        self.pending.swap(false, Ordering::AcqRel);
    }
}

impl fmt::Debug for Async {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("fd", &self.shared.fd.raw())
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .field("writes", &self.writes())
            .finish()
    }
}
