//! [`Notify`]: wake a task from any thread.
//!
//! A `Notify` holds at most one *permit*. [`Notify::notify`] (any thread, never blocks)
//! stores it and wakes one waiting task; [`Notify::notified`] waits for it and consumes
//! it, returning at once if it is already stored. Notifications coalesce: however many
//! notifies happen before a waiter runs, they leave one permit.
//!
//! The wake-up goes through the waiting task's [`Waker`], that is the runtime's own
//! remote wake path (a locked hand-off queue plus one write to the loop's wake fd, itself
//! skipped while a wake-up of that loop is already pending); a `Notify` has no fd. A
//! `notify` that finds the permit already stored is one atomic swap: no lock, no system
//! call.
//!
//! Unlike the callback watcher [`Async`](crate::Async), which wakes a
//! *loop*, a `Notify` wakes a *task* of whichever runtime awaits it.
//!
//! ```
//! use std::{thread, time::Duration};
//! use xev::notify::Notify;
//!
//! xev::block_on(async {
//!     let ready = Notify::new();
//!     let remote = ready.clone();
//!     let t = thread::spawn(move || {
//!         thread::sleep(Duration::from_millis(5));
//!         remote.notify();
//!     });
//!     ready.notified().await; // resumes once the other thread has notified
//!     t.join().unwrap();
//! });
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A cross-thread wake-up that tasks await; see the [module docs](self).
///
/// Cloning gives another handle to the same permit (an `Arc` inside); the handles are
/// `Send + Sync`, so any thread may [`notify`](Self::notify).
///
/// **Several waiters.** Any number of tasks may await [`notified`](Self::notified) at
/// once (on one runtime or several). They queue in the order they first waited, and each
/// permit is consumed by exactly one of them: one `notify` wakes the oldest waiter (FIFO),
/// `n` notifies spaced so that each permit is consumed before the next arrives wake `n`
/// waiters, while notifies that arrive before anyone consumed the permit coalesce (as for
/// a single waiter). A permit is never lost: if the woken waiter's future is dropped
/// before it consumed the permit, the next waiter is woken instead; a task that calls
/// `notified()` while a permit is stored takes it at once, even ahead of the queue (the
/// waiter woken for it then goes back to waiting). As with any future, a woken waiter
/// must be polled again (or dropped) for the permit to move on; combinators such as
/// `select` and [`timeout`](crate::time::timeout) do that.
///
/// Allocations: `new` allocates the shared state; the waiter queue allocates when a task
/// first waits, and keeps that room, so later waits allocate nothing unless more tasks
/// wait at once than ever before.
///
/// Memory effects: whatever a thread wrote before `notify` is visible to the task once
/// its `notified().await` has consumed the permit.
#[derive(Clone, Default)]
pub struct Notify {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The permit: stored by `notify`, consumed by a waiter.
    permit: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The registered waiters, oldest first.
#[derive(Default)]
struct Waiters {
    next_id: u64,
    queue: VecDeque<Waiter>,
}

struct Waiter {
    id: u64,
    waker: Option<Waker>,
    /// A `notify` picked this waiter (and took its waker) since it last registered.
    woken: bool,
}

impl Waiters {
    fn position(&self, id: u64) -> Option<usize> {
        self.queue.iter().position(|w| w.id == id)
    }

    /// The waker of the oldest waiter not picked yet, marking it picked.
    fn pick(&mut self) -> Option<Waker> {
        let w = self.queue.iter_mut().find(|w| !w.woken)?;
        w.woken = true;
        w.waker.take()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Nothing panics while the lock is held; a poisoned lock's data is still sound.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_permit(&self) -> bool {
        // A load first: waiting tasks that find no permit do not write the cache line
        // the notifying thread is hammering.
        self.permit.load(Ordering::Relaxed) && self.permit.swap(false, Ordering::AcqRel)
    }
}

impl Notify {
    /// A `Notify` without a permit.
    pub fn new() -> Notify {
        Notify::default()
    }

    /// Store the permit and wake one waiting task (the oldest), if any; callable from any
    /// thread, inside or outside a runtime; never blocks.
    ///
    /// If the permit is already stored, this is one atomic swap and nothing else: the
    /// notification coalesces with the stored one. Otherwise it takes the waiter list's
    /// lock (held for a few instructions) and wakes the chosen task through its waker.
    pub fn notify(&self) {
        let inner = &*self.inner;
        if inner.permit.swap(true, Ordering::AcqRel) {
            return;
        }
        let waker = inner.lock().pick();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Wait for the permit and consume it; completes at once if it is already stored.
    ///
    /// The returned future registers as a waiter when first polled (queueing behind
    /// earlier waiters); dropping it unregisters it, passing on a wake-up it had received
    /// but not yet used to the next waiter. See [`Notify`] for several waiters.
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            id: None,
        }
    }
}

impl fmt::Debug for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notify")
            .field("permit", &self.inner.permit.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The future returned by [`Notify::notified`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Notified<'a> {
    notify: &'a Notify,
    /// Our entry in the waiter list, once registered.
    id: Option<u64>,
}

impl Notified<'_> {
    /// Leave the waiter list (after consuming the permit, or when dropped).
    fn unregister(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let inner = &*self.notify.inner;
        // Our entry leaves the lock with it: its waker is dropped after the guard, since a
        // waker's drop is user code (it may notify this very `Notify`).
        let (_ours, handoff) = {
            let mut ws = inner.lock();
            let Some(i) = ws.position(id) else {
                return;
            };
            let w = ws.queue.remove(i).expect("position is in range");
            // A notify picked us for a permit that is still stored. Either we are being
            // dropped without consuming it, or a *newer* permit arrived (and picked us)
            // after we consumed ours. Either way nobody else would be woken for it (later
            // notifies see the permit stored and do nothing), so wake the next waiter.
            // (At worst, when the permit is not really ours to pass on, this is one
            // spurious wake-up: the waiter finds no permit and waits again.)
            let next = if w.woken && inner.permit.load(Ordering::Acquire) {
                ws.pick()
            } else {
                None
            };
            (w, next)
        };
        if let Some(w) = handoff {
            w.wake();
        }
    }
}

impl Future for Notified<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let inner = &*self.notify.inner;
        if inner.take_permit() {
            self.unregister();
            return Poll::Ready(());
        }
        // A waker this poll replaces, dropped after the guard (a waker's drop is user
        // code, which may notify this very `Notify`).
        let mut replaced = None;
        {
            let mut ws = inner.lock();
            let existing = self.id.and_then(|id| ws.position(id));
            match existing {
                Some(i) => {
                    let w = &mut ws.queue[i];
                    // Picked or not, we are waiting again (a permit we were picked for
                    // and that another task took is gone).
                    w.woken = false;
                    match &w.waker {
                        Some(old) if old.will_wake(cx.waker()) => {}
                        _ => replaced = w.waker.replace(cx.waker().clone()),
                    }
                }
                None => {
                    let id = ws.next_id;
                    ws.next_id += 1;
                    ws.queue.push_back(Waiter {
                        id,
                        waker: Some(cx.waker().clone()),
                        woken: false,
                    });
                    drop(ws);
                    self.id = Some(id);
                }
            }
        }
        drop(replaced);
        // A notify that stored the permit before we registered found nobody to wake (or
        // skipped us; or it came from the replaced waker's drop): check again now that we
        // are in the list.
        if inner.take_permit() {
            self.unregister();
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Notified<'_> {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl fmt::Debug for Notified<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notified")
            .field("registered", &self.id.is_some())
            .finish_non_exhaustive()
    }
}
