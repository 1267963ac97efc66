//! [`HyperTimer`]: hyper's timeouts on xev's timers (feature `hyper`).
//!
//! hyper wants sleeps that are `Send + Sync`, and xev's [`Sleep`](crate::time::Sleep) is
//! neither (it is an entry of its runtime's timer queue). A [`HyperSleep`] is plain data:
//! a deadline and an `Arc` of atomics shared with its runtime's *hyper timer driver*, one
//! task per runtime (started by the first sleep) that keeps the deadlines of the
//! registered sleeps in a heap and waits on one xev sleep until the nearest.
//!
//! hyper's HTTP/1.1 server starts a header read timeout for every request and drops it as
//! soon as the request head is parsed, so nearly every sleep is abandoned long before its
//! deadline. Abandoning is a flag: the driver drops abandoned entries when they reach the
//! top of its heap, or all at once when the heap has doubled since it last did (so it
//! holds at most about twice the sleeps still waiting). A registration is one `Arc` and
//! one heap push; the driver task is woken only for a deadline earlier than the one it
//! waits for.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;

use crate::event_loop::LoopId;
use crate::rt::time::saturating_add;

/// A [`hyper::rt::Timer`] on xev's timers, for hyper's timeouts
/// (`header_read_timeout`, keep-alive, HTTP/2 pings, ...).
///
/// hyper wants sleeps that are `Send + Sync`, and xev's [`Sleep`](crate::time::Sleep) is
/// neither; the timer's sleeps are [`HyperSleep`]s, which hold only a deadline and an
/// `Arc` of atomics, and on their first poll register with a task of the current xev
/// runtime that times them all (one per runtime). So the first poll of each sleep must
/// happen inside an xev runtime (where hyper polls them: in the connection's task); it
/// panics elsewhere, with a message that says so.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(saturating_add(Instant::now(), duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(s) => s.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// What a [`HyperSleep`] shares with the driver that times it.
#[derive(Default, Debug)]
struct Shared {
    fired: AtomicBool,
    /// The sleep was dropped or reset: the driver forgets the entry.
    abandoned: AtomicBool,
    /// The waker of the future awaiting the sleep.
    waiter: AtomicWaker,
}

/// The sleep of [`HyperTimer`]: `Send + Sync` (plain data and atomics), registered with
/// the current xev runtime's timer task on its first poll, which must be inside an xev
/// runtime. Dropping or resetting it unregisters it.
#[derive(Debug)]
pub struct HyperSleep {
    deadline: Instant,
    shared: Option<Arc<Shared>>,
    /// The loop of the runtime whose timer task times `shared` (while registered).
    timed_on: Option<LoopId>,
}

impl HyperSleep {
    /// A sleep until `deadline` (nothing starts before the first poll).
    pub fn until(deadline: Instant) -> HyperSleep {
        HyperSleep {
            deadline,
            shared: None,
            timed_on: None,
        }
    }

    /// When it fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Move the deadline; the next poll starts timing again.
    pub fn reset(&mut self, deadline: Instant) {
        self.abandon();
        self.deadline = deadline;
    }

    fn abandon(&mut self) {
        if let Some(s) = self.shared.take() {
            s.abandoned.store(true, Ordering::Release);
        }
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if let Some(shared) = &this.shared {
            if shared.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            // Polled in another runtime than the one whose timer task times it (the
            // sleep was carried there): that task may never run again (its runtime was
            // dropped, which drops the task and its entries, or is idle). Time it here
            // instead, as an xev `Sleep` moves to the runtime that polls it.
            let here = crate::rt::executor::with_current(|ex| ex.loop_id());
            if here.is_some() && here != this.timed_on {
                this.abandon();
            }
        }
        if this.shared.is_none() {
            if Instant::now() >= this.deadline {
                return Poll::Ready(());
            }
            let driver = Driver::current();
            this.shared = Some(driver.register(this.deadline));
            this.timed_on = Some(driver.loop_id);
        }
        let shared = this.shared.as_ref().expect("registered just above");
        shared.waiter.register(cx.waker());
        if shared.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// A registered sleep in the driver's heap.
struct Entry {
    deadline: Instant,
    shared: Arc<Shared>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Entry) -> bool {
        self.deadline == other.deadline
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    /// Reversed: `BinaryHeap` is a max-heap and the nearest deadline goes on top.
    fn cmp(&self, other: &Entry) -> CmpOrdering {
        other.deadline.cmp(&self.deadline)
    }
}

/// The heap never compacts below this many entries.
const MIN_COMPACT: usize = 64;

/// The hyper sleeps of one runtime, timed by one task (which owns it; the thread knows
/// it through a `Weak`, so it goes away with the runtime's tasks).
struct Driver {
    loop_id: LoopId,
    heap: RefCell<BinaryHeap<Entry>>,
    /// When the heap reaches this length, abandoned entries are dropped.
    compact_at: Cell<usize>,
    /// The deadline the task waits for (`None`: it waits for nothing, or has not run).
    armed: Cell<Option<Instant>>,
    /// The task's waker.
    task: RefCell<Option<Waker>>,
}

thread_local! {
    /// The drivers of this thread's runtimes (one, nearly always).
    static DRIVERS: RefCell<Vec<Weak<Driver>>> = const { RefCell::new(Vec::new()) };
}

impl Driver {
    /// The driver of the current runtime, started if need be.
    ///
    /// # Panics
    /// Outside an xev runtime.
    fn current() -> Rc<Driver> {
        let Some(loop_id) = crate::rt::executor::with_current(|ex| ex.loop_id()) else {
            panic!(
                "xev::compat::HyperSleep first polled outside an xev runtime: hyper's timers \
                 (HyperTimer) run on xev's, so poll the connection inside xev::block_on or an \
                 xev task"
            );
        };
        let found = DRIVERS.with(|drivers| {
            let mut drivers = drivers.borrow_mut();
            let found = drivers
                .iter()
                .filter_map(Weak::upgrade)
                .find(|d| d.loop_id == loop_id);
            if found.is_none() {
                // The runtimes of dead drivers are gone.
                drivers.retain(|d| d.strong_count() > 0);
            }
            found
        });
        if let Some(d) = found {
            return d;
        }
        let d = Rc::new(Driver {
            loop_id,
            heap: RefCell::default(),
            compact_at: Cell::new(MIN_COMPACT),
            armed: Cell::new(None),
            task: RefCell::new(None),
        });
        DRIVERS.with(|drivers| drivers.borrow_mut().push(Rc::downgrade(&d)));
        // Detached: it runs until its runtime drops it (with the driver: the thread
        // keeps only a `Weak`).
        drop(crate::spawn(d.clone().run()));
        d
    }

    fn register(&self, deadline: Instant) -> Arc<Shared> {
        let shared = Arc::new(Shared::default());
        let mut heap = self.heap.borrow_mut();
        heap.push(Entry {
            deadline,
            shared: shared.clone(),
        });
        if heap.len() >= self.compact_at.get() {
            heap.retain(|e| !e.shared.abandoned.load(Ordering::Acquire));
            self.compact_at.set(MIN_COMPACT.max(2 * heap.len()));
        }
        drop(heap);
        match self.armed.get() {
            Some(armed) if armed <= deadline => {}
            _ => {
                // An earlier deadline (or the task waits for nothing): let it re-arm.
                let task = self.task.borrow().clone();
                if let Some(w) = task {
                    w.wake();
                }
            }
        }
        shared
    }

    /// Fire the entries that are due (by the clock, or at or before `passed`, a deadline
    /// xev's timer says has passed), drop abandoned ones from the top, and return the
    /// nearest deadline left.
    ///
    /// The heap is borrowed only to take the next due entry out, never while a waker runs
    /// (a waker that polls a new sleep at once registers it).
    fn fire_due(&self, passed: Option<Instant>) -> Option<Instant> {
        let mut now = None;
        loop {
            let due = {
                let mut heap = self.heap.borrow_mut();
                loop {
                    let top = heap.peek()?;
                    if top.shared.abandoned.load(Ordering::Acquire) {
                        heap.pop();
                        continue;
                    }
                    if passed.is_none_or(|p| top.deadline > p)
                        && top.deadline > *now.get_or_insert_with(Instant::now)
                    {
                        return Some(top.deadline);
                    }
                    break heap.pop().expect("peeked");
                }
            };
            due.shared.fired.store(true, Ordering::Release);
            due.shared.waiter.wake();
        }
    }

    /// The task: wait on one xev sleep until the nearest deadline, again and again.
    async fn run(self: Rc<Driver>) {
        let mut sleep = pin!(crate::time::sleep_until(Instant::now()));
        // The deadline of the xev sleep when it has fired (and not been reset since).
        let mut passed = None;
        std::future::poll_fn(|cx| {
            {
                let mut task = self.task.borrow_mut();
                if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *task = Some(cx.waker().clone());
                }
            }
            loop {
                let Some(next) = self.fire_due(passed.take()) else {
                    self.armed.set(None);
                    return Poll::<()>::Pending;
                };
                if sleep.deadline() != next {
                    sleep.as_mut().reset(next);
                }
                self.armed.set(Some(next));
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                passed = Some(sleep.deadline());
            }
        })
        .await
    }
}
