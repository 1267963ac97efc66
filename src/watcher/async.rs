//! [`Async`]: wake a loop from any thread (libxev's `Async`, over a Linux eventfd).
//!
//! # How a wake-up travels
//!
//! An `Async` is an eventfd (non-blocking, close-on-exec) plus a `pending` flag, shared
//! through an `Arc` by every clone of the handle.
//!
//! - [`notify`](Async::notify) does `pending.swap(true)`; only if the flag was clear does
//!   it write the eventfd (one `write(2)`). While a wake-up is pending, further notifies
//!   cost one atomic swap and no syscall.
//! - [`wait`](Async::wait) costs no system call of its own per wake-up (issue 12: the
//!   drain `read(2)` each wake-up used to make is gone):
//!   - on **io_uring** it is an [`Op::Read`] of the eventfd into the completion's own
//!     8-byte buffer: the kernel resets the counter inside the operation that wakes us;
//!   - on the **poll backend** (Linux) it is an *edge wait*: an [`Op::Poll`] carrying a
//!     crate-internal bit that completes on the next readability edge epoll reports for
//!     the eventfd (registered edge-triggered), without any `poll(2)` or `read(2)`. The
//!     eventfd is never drained: every `write(2)` is an edge, readable before or not.
//!
//!   When it completes, the watcher, on the loop thread and before the user's callback,
//!   **clears** the flag (`swap(false)`). If the flag was already clear, no notify
//!   happened since the last callback (a stale edge, such as the one a fresh
//!   registration reports for a counter that was never drained): the wait is re-queued
//!   silently and the user's callback does not run.
//!
//! Why this loses nothing: a notify sets the flag *before* it writes. A notify whose
//! swap lands before the clear is covered by the callback that runs after the clear (the
//! swaps are `AcqRel`, so whatever the notifier wrote before `notify` is visible to the
//! callback). A notify whose swap lands after the clear found the flag clear, so it
//! writes after the clear, that is after the completion that ran the clear: its write is
//! a new edge (poll backend), or a count that the next read takes (io_uring), and wakes
//! the next wait. A completion that finds the flag clear is therefore never the only
//! trace of a notify.
//!
//! On macOS and the BSDs the eventfd is a non-blocking pipe instead (`sys::WakeFd`:
//! `notify` writes one byte), and on Windows a loopback UDP socket pair polled through
//! `polling`'s AFD readiness (`notify` sends a one-byte datagram). There the wait is a
//! plain [`Op::Poll`]: when it completes, the watcher first **drains** the fd (reads it
//! empty), then clears the flag. Drain before clear: a notify after the clear writes
//! again, after the drain, so its write wakes the next wait; a notify between the two
//! finds the flag set, writes nothing, and is covered by the callback that runs after the
//! clear. (Clear, then drain, would lose wake-ups: the drain could swallow the write of a
//! notify that set the flag, leaving the flag set with nothing to read, and every later
//! notify would be skipped.) Type-checked there, not run.
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
    /// On Linux the wait is an [`Op::Read`] of the eventfd (io_uring) or an edge wait
    /// on it (poll backend), and the watcher clears the pending flag before `cb` runs; a
    /// completion that finds no notify pending re-queues the wait without calling `cb`.
    /// Elsewhere it is an [`Op::Poll`] and the watcher drains the fd first (see the
    /// [module docs](self)).
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
