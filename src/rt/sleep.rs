//! [`Sleep`]: the future behind `xev::time::sleep`, and the executor's queue of them.
//!
//! A sleep never touches the kernel, so it needs no [`Completion`](crate::Completion):
//! the pinned `Sleep` itself is the timer entry. The executor keeps pointers to the
//! entries of registered sleeps in the same monotonic-run-plus-heap [`TimerQueue`] the
//! loop uses for its timers, and passes the nearest deadline to the loop as its wait
//! limit. A registered `Sleep` removes itself from the queue when dropped (a pinned
//! value is always dropped before its memory is reused), so the queue never points to
//! freed memory. Cost per sleep: the future's own ~64 bytes plus one queue entry.
//!
//! A sleep belongs to the runtime that last polled it: polled by another runtime of the
//! same thread (it is not `Send`), it leaves the first one's queue (alive or dropped: the
//! `Rc` keeps that queue's memory) and joins the second's, so the runtime that awaits it
//! is the one that fires it.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use super::executor::{current, with_current, Executor};
use crate::heap::HeapItem;
use crate::timer_queue::{TimerItem, TimerQueue};

/// `Entry::loc` of a sleep the queue has fired.
const FIRED: usize = usize::MAX;

/// The part of a `Sleep` the queue points to.
struct Entry {
    /// Where the entry sits in the timer queue, or [`FIRED`].
    loc: Cell<usize>,
    /// The deadline it is queued with, in nanoseconds since the queue's epoch.
    deadline_ns: Cell<u64>,
    waker: UnsafeCell<Option<Waker>>,
}

#[derive(Clone, Copy, PartialEq)]
struct EntryPtr(NonNull<Entry>);

impl HeapItem for EntryPtr {
    fn set_index(self, index: usize) {
        // SAFETY: only registered (hence live, pinned) sleeps are in the queue.
        unsafe { self.0.as_ref() }.loc.set(index);
    }
}

impl TimerItem for EntryPtr {
    fn deadline(self) -> u64 {
        // SAFETY: as for `set_index`.
        unsafe { self.0.as_ref() }.deadline_ns.get()
    }
}

/// The executor's pending sleeps.
pub(crate) struct SleepQueue {
    timers: RefCell<TimerQueue<EntryPtr>>,
    epoch: Instant,
}

impl SleepQueue {
    pub(crate) fn new(epoch: Instant) -> SleepQueue {
        SleepQueue {
            timers: RefCell::default(),
            epoch,
        }
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch)
            .as_nanos()
            .min(u64::MAX as u128) as u64
    }

    /// How long until the nearest deadline (`None`: no sleep pending).
    pub(crate) fn time_to_next(&self) -> Option<Duration> {
        let (deadline, _) = self.timers.borrow_mut().peek()?;
        let now = self.ns(Instant::now());
        Some(Duration::from_nanos(deadline.saturating_sub(now)))
    }

    /// Wake every sleep whose deadline has passed.
    ///
    /// The queue is borrowed only to take the next due entry out, never while a waker
    /// runs: a wake may drop or poll other sleeps (a custom waker, or one that runs code
    /// synchronously), which then find the queue free and consistent.
    pub(crate) fn fire_due(&self) {
        if self.timers.borrow().len() == 0 {
            return;
        }
        let now = self.ns(Instant::now());
        loop {
            let waker = {
                let mut q = self.timers.borrow_mut();
                match q.peek() {
                    Some((deadline, e)) if deadline <= now => {
                        q.pop();
                        // SAFETY: queued entries are live (a Sleep removes its entry
                        // before it is dropped); executor thread, and no `&mut` to the
                        // entry exists now.
                        unsafe {
                            let e = e.0.as_ref();
                            e.loc.set(FIRED);
                            (*e.waker.get()).take()
                        }
                    }
                    _ => break,
                }
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// A future that completes at a deadline; see [`sleep`](crate::time::sleep).
///
/// It is `!Unpin` (the runtime points at it while it waits): `.await` it directly, or pin
/// it (`std::pin::pin!`, `Box::pin`) to poll it by hand. It may be polled on one runtime
/// and then awaited on another (of the same thread): it then waits on the second.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    deadline: Instant,
    /// Set while the entry is in that executor's queue (or has fired there).
    exec: Option<Rc<Executor>>,
    entry: Entry,
    _pin: PhantomPinned,
}

impl Sleep {
    pub(crate) fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            exec: None,
            entry: Entry {
                loc: Cell::new(FIRED),
                deadline_ns: Cell::new(0),
                waker: UnsafeCell::new(None),
            },
            _pin: PhantomPinned,
        }
    }

    /// When this sleep completes.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// True once the deadline has passed.
    pub fn is_elapsed(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Move the deadline (earlier or later); the sleep may be awaited again afterwards.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        // SAFETY: nothing is moved out; the entry stays where it is.
        let this = unsafe { self.get_unchecked_mut() };
        this.unregister();
        this.deadline = deadline;
    }

    fn unregister(&mut self) {
        if let Some(exec) = self.exec.take() {
            let loc = self.entry.loc.get();
            if loc != FIRED {
                let ptr = EntryPtr(NonNull::from(&self.entry));
                let found = exec.sleeps.timers.borrow_mut().remove(ptr, loc);
                if !found {
                    // The queue may still point at this sleep, whose memory is about to
                    // be reused: continuing could never be sound (this runs in `drop`).
                    eprintln!(
                        "xev: a registered Sleep was missing from its runtime's timer queue; \
                         aborting rather than leave a dangling entry"
                    );
                    std::process::abort();
                }
            }
            // SAFETY: not in the queue any more; executor thread.
            drop(unsafe { (*self.entry.waker.get()).take() });
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: the entry is never moved out of the pinned sleep.
        let this = unsafe { self.get_unchecked_mut() };
        if this.exec.is_some() && this.entry.loc.get() == FIRED {
            return Poll::Ready(());
        }
        let here = this.exec.as_ref().and_then(|registered| {
            with_current(|current| ptr::eq(Rc::as_ptr(registered), current))
        });
        if here == Some(true) {
            // SAFETY: executor thread; the queue touches an entry's waker only inside
            // `fire_due`'s short borrow of the queue (never across a wake, which is where
            // this poll could run from), so no other reference to it exists now.
            let slot = unsafe { &mut *this.entry.waker.get() };
            match slot {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *slot = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        // Not registered yet, or registered on another runtime of this thread (a sleep
        // is not `Send`), which may have been dropped since: move to this one, so the
        // runtime that awaits the sleep is the one that fires it.
        let exec = current("xev::time::sleep");
        this.unregister();
        let deadline = exec.sleeps.ns(this.deadline);
        // SAFETY: the entry is not queued, so nothing else reads the waker.
        unsafe { *this.entry.waker.get() = Some(cx.waker().clone()) };
        this.entry.deadline_ns.set(deadline);
        let ptr = EntryPtr(NonNull::from(&this.entry));
        exec.sleeps.timers.borrow_mut().push(ptr);
        this.exec = Some(exec);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}
