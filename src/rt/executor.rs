//! The single-threaded executor: it owns one [`Loop`], a run queue of tasks, the sleep
//! timers of `xev::time`, and the pool of completions that async operations use.
//!
//! One round of [`Executor::block_on`]: poll the main future if it was woken, poll every
//! task that was ready when the round began, then turn the loop: without blocking if
//! anything is ready again, otherwise blocking until a completion, a sleep deadline or a
//! wake-up from another thread arrives.
//!
//! Work that needs the loop but comes up while the loop is borrowed (inside one of its
//! callbacks, or inside [`with_loop`](super::with_loop)) is [`Deferred`]: the cancel of a
//! future dropped there, the close of an fd whose last owner was dropped there. It is done
//! at the start of the next turn, before the loop can block, or at the end of `with_loop`.
//!
//! The executor records its loop's id and checks it at every turn: safe code can replace
//! the loop behind a `&mut Loop` (`std::mem::replace` in `with_loop` or in a callback),
//! which would strand every pending operation, so that is reported with a panic.

use crate::sys::fd::{AsRawFd, OwnedFd, RawFd};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use super::op_future::SlotPool;
use super::sleep::SleepQueue;
use super::task::{JoinHandle, TaskRef};
use crate::event_loop::{Loop, LoopId};
use crate::handoff::Handoff;
use crate::op::CancelTarget;

thread_local! {
    /// The executor running on this thread (inside `block_on`), or null.
    static CURRENT: Cell<*const Executor> = const { Cell::new(ptr::null()) };
}

/// The part of an executor other threads may reach: wake-ups of tasks and of the main
/// future, and the loop's wake function. Shared through `Arc` by every task header.
pub(crate) struct Remote {
    queue: Handoff<TaskRef>,
    /// A wake-up of the loop is pending: later remote wakes skip the syscall.
    wake_pending: AtomicBool,
    main_woken: AtomicBool,
    /// The main future was woken from another thread (see `Executor::fed_remotely`).
    main_woken_remotely: AtomicBool,
    closed: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl Remote {
    /// Queue `task` on its executor: a plain push when called on that executor's thread
    /// during `block_on`, else through the hand-off queue plus a loop wake-up.
    pub(crate) fn schedule(task: TaskRef) {
        let remote: *const Remote = Arc::as_ptr(&task.header().remote);
        let e = CURRENT.try_with(Cell::get).unwrap_or(ptr::null());
        // SAFETY: a non-null CURRENT is the executor running on this thread (see
        // `with_current`).
        if !e.is_null() && ptr::eq(Arc::as_ptr(unsafe { &(*e).remote }), remote) {
            // SAFETY: as above.
            unsafe { (*e).queue.borrow_mut().push_back(task) };
            return;
        }
        let remote = task.header().remote.clone();
        remote.push(task);
    }

    fn push(&self, task: TaskRef) {
        if self.closed.load(Ordering::Acquire) {
            return; // the runtime is gone; dropping the reference is all that is left
        }
        self.queue.push(task);
        self.wake_loop();
    }

    fn wake_loop(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel) {
            (self.wake)();
        }
    }

    fn is_current(&self) -> bool {
        with_current(|e| ptr::eq(Arc::as_ptr(&e.remote), self)).unwrap_or(false)
    }
}

/// The waker of the future given to `block_on`.
struct MainWaker(Arc<Remote>);

impl Wake for MainWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.0.is_current() {
            self.0.main_woken.store(true, Ordering::Release);
        } else {
            // Before `main_woken`, whose swap makes it visible to the loop.
            self.0.main_woken_remotely.store(true, Ordering::Relaxed);
            self.0.main_woken.store(true, Ordering::Release);
            self.0.wake_loop();
        }
    }
}

/// The remote queue's first capacity: a runtime's first wake-ups from another thread
/// allocate nothing.
const REMOTE_QUEUE_START: usize = 16;

/// Every unfinished task, so shutdown can drop their futures on this thread.
///
/// `free` always has room for every slot, so a task's end never allocates: the growth
/// is paid by the spawn that added the slot (which allocates its task anyway).
#[derive(Default)]
struct TaskSet {
    tasks: Vec<Option<TaskRef>>,
    free: Vec<usize>,
}

impl TaskSet {
    fn insert(&mut self, t: TaskRef) {
        let i = self.free.pop().unwrap_or_else(|| {
            self.tasks.push(None);
            // Amortised, as `tasks` grows.
            self.free.reserve(self.tasks.len() - self.free.len());
            self.tasks.len() - 1
        });
        // SAFETY: executor thread; only the executor touches `set_index`.
        unsafe { *t.header().set_index.get() = i };
        self.tasks[i] = Some(t);
    }

    fn remove(&mut self, t: &TaskRef) -> Option<TaskRef> {
        // SAFETY: executor thread.
        let i = unsafe { *t.header().set_index.get() };
        let owned = self.tasks.get_mut(i)?.take();
        if owned.is_some() {
            self.free.push(i);
        }
        owned
    }
}

/// Loop work that came up while the loop was borrowed (see the module docs).
pub(crate) enum Deferred {
    /// Cancel the operation of a future dropped inside a callback (a target that has
    /// finished meanwhile is simply not found).
    Cancel(CancelTarget),
    /// Announce this fd's close to the loop (`Loop::fd_closed`), then close it. It stays
    /// open until then, so its number cannot be reused before the loop knows.
    Close(OwnedFd),
    /// Stop trusting this fd's registration (its owner moved to another runtime).
    Release(RawFd),
    /// Work that needs the loop, asked for while it was busy (e.g. stopping an
    /// `Incoming`'s multishot accept without losing a connection).
    #[cfg_attr(windows, allow(dead_code))] // only Unix accept queues defer work
    WithLoop(Rc<dyn DeferredWork>),
}

/// A [`Deferred::WithLoop`] job.
#[cfg_attr(windows, allow(dead_code))]
pub(crate) trait DeferredWork {
    /// Do the work; it must not run a callback nor defer more work.
    fn run(&self, lp: &mut Loop);
}

/// See the module docs. Shared through `Rc` by the runtime and by operation futures,
/// which keeps the completion pool alive for an operation future that outlives its
/// runtime.
pub(crate) struct Executor {
    pub(crate) lp: RefCell<Loop>,
    /// The id of the loop `lp` must hold.
    loop_id: LoopId,
    /// The loop's shutdown count when last checked (`check_loop`).
    loop_shutdowns: Cell<u64>,
    /// The loop is on the poll backend, where async socket transfers take the direct
    /// path (`rt::io::SocketWait`); fixed with the loop (`check_loop`). Always false off
    /// Unix, where only the compat adapters (features) ask.
    #[cfg_attr(not(unix), allow(dead_code))]
    direct_io: bool,
    deferred: RefCell<Vec<Deferred>>,
    queue: RefCell<VecDeque<TaskRef>>,
    tasks: RefCell<TaskSet>,
    remote: Arc<Remote>,
    pub(crate) slots: SlotPool,
    pub(crate) sleeps: SleepQueue,
    /// The loop's thread pool, reachable without borrowing the loop (`spawn_blocking`
    /// inside `with_loop`).
    pub(crate) pool: crate::thread_pool::ThreadPool,
    closed: Cell<bool>,
    /// Operations the future being polled may still see finish inside that poll (see
    /// [`take_inline`](Self::take_inline)); refilled before each poll of a task or of the
    /// main future.
    inline_budget: Cell<u32>,
    /// The last round that polled anything polled only what other threads woke (tasks
    /// from the hand-off queue, the main future through a remote wake), nothing woken
    /// here by the loop's I/O, its timers or other tasks: the worker is fed by other
    /// threads, and its next block skips the loop's yield (see
    /// `Options::yield_before_block`).
    fed_remotely: Cell<bool>,
}

/// How many operations that finish at submission one poll of a task may take at once
/// (their results ready at the first poll of their futures). Past that, the next one goes
/// through the loop as usual: the task yields, so a socket that is always ready cannot
/// keep one task running forever and starve the others and the loop.
const INLINE_BUDGET: u32 = 32;

/// Run `f` with the executor of this thread's `block_on`, if there is one.
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&Executor) -> R) -> Option<R> {
    let e = CURRENT.try_with(Cell::get).ok()?;
    // SAFETY: CURRENT is set only while `block_on` (or shutdown) runs on this thread with
    // `&Executor` borrowed, and reset before that borrow ends.
    (!e.is_null()).then(|| f(unsafe { &*e }))
}

/// The `Rc` of this thread's current executor.
///
/// # Panics
/// Outside a runtime, with `what` in the message.
pub(crate) fn current(what: &str) -> Rc<Executor> {
    let e = CURRENT.try_with(Cell::get).unwrap_or(ptr::null());
    assert!(
        !e.is_null(),
        "{what} must be called from inside an xev runtime (xev::block_on, Runtime::block_on, \
         #[xev::main] or #[xev::test])"
    );
    // SAFETY: a non-null CURRENT points to an executor owned by an `Rc` (Runtime holds
    // one) that is alive while it is set; incrementing first makes `from_raw` balanced.
    unsafe {
        Rc::increment_strong_count(e);
        Rc::from_raw(e)
    }
}

/// Sets CURRENT for its lifetime.
struct Enter(*const Executor);

impl Enter {
    fn new(e: &Executor) -> Enter {
        let prev = CURRENT.with(|c| c.replace(e));
        if !prev.is_null() {
            CURRENT.with(|c| c.set(prev));
            panic!(
                "xev: cannot start a runtime from inside a runtime (block_on inside block_on \
                 or inside a task); spawn the future or .await it instead"
            );
        }
        Enter(prev)
    }

    /// Make `e` current until dropped, whatever runs on this thread (for shutdown, which
    /// may happen inside another runtime's task, or while a panic unwinds).
    fn swap(e: &Executor) -> Enter {
        Enter(CURRENT.with(|c| c.replace(e)))
    }
}

impl Drop for Enter {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl Executor {
    pub(crate) fn new(mut lp: Loop) -> Rc<Executor> {
        let pool = lp.thread_pool().clone();
        let remote = Arc::new(Remote {
            // Room for a burst of tasks woken from other threads before the first one
            // (the deque keeps what it grows to).
            queue: Handoff::with_capacity(REMOTE_QUEUE_START),
            wake_pending: AtomicBool::new(false),
            main_woken: AtomicBool::new(false),
            main_woken_remotely: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: lp.remote_waker(),
        });
        Rc::new(Executor {
            direct_io: cfg!(unix) && lp.backend() != crate::Backend::IoUring,
            loop_id: lp.id(),
            loop_shutdowns: Cell::new(lp.shutdowns()),
            lp: RefCell::new(lp),
            deferred: RefCell::default(),
            queue: RefCell::new(VecDeque::new()),
            tasks: RefCell::default(),
            remote,
            slots: SlotPool::default(),
            sleeps: SleepQueue::new(Instant::now()),
            pool,
            closed: Cell::new(false),
            inline_budget: Cell::new(INLINE_BUDGET),
            fed_remotely: Cell::new(false),
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Take one unit of the polled future's budget of operations finished at once (see
    /// [`INLINE_BUDGET`]); false when it is spent.
    pub(crate) fn take_inline(&self) -> bool {
        let b = self.inline_budget.get();
        if b == 0 {
            return false;
        }
        self.inline_budget.set(b - 1);
        true
    }

    /// Give back the unit taken by [`take_inline`](Self::take_inline) for an operation
    /// that did not finish at once.
    pub(crate) fn return_inline(&self) {
        self.inline_budget.set(self.inline_budget.get() + 1);
    }

    /// Whether async socket transfers may take the direct path here (see `direct_io`).
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(crate) fn direct_io(&self) -> bool {
        self.direct_io
    }

    /// The id of this runtime's loop.
    pub(crate) fn loop_id(&self) -> LoopId {
        self.loop_id
    }

    /// Queue `work` for the next time the loop is free (see the module docs).
    pub(crate) fn defer(&self, work: Deferred) {
        self.deferred.borrow_mut().push(work);
    }

    /// Do the deferred work, with the loop borrowed by the caller.
    pub(crate) fn flush_deferred(&self, lp: &mut Loop) {
        // `WithLoop` jobs are dropped after the borrow ends: the last reference to one
        // may own an fd whose close is deferred in turn.
        let mut done_jobs: Vec<Rc<dyn DeferredWork>> = Vec::new();
        let mut deferred = self.deferred.borrow_mut();
        // None of this runs a callback or drops an owner, so nothing is deferred meanwhile.
        for work in deferred.drain(..) {
            match work {
                Deferred::Cancel(target) => self.slots.cancel(lp, target),
                Deferred::Close(fd) => {
                    lp.fd_closed(fd.as_raw_fd());
                    drop(fd);
                }
                Deferred::Release(fd) => lp.fd_released(fd),
                Deferred::WithLoop(job) => {
                    job.run(lp);
                    done_jobs.push(job);
                }
            }
        }
        drop(deferred);
        drop(done_jobs);
    }

    /// Panic if `lp` is not the loop this runtime was built with.
    pub(crate) fn check_loop(&self, lp: &Loop) {
        assert!(
            lp.id() == self.loop_id,
            "xev: the runtime's Loop was replaced (std::mem::replace or swap through the \
             `&mut Loop` of xev::rt::with_loop or of a callback on the runtime's loop); the \
             operations pending on the old loop are lost, so the runtime cannot go on"
        );
        if lp.shutdowns() != self.loop_shutdowns.get() {
            // Shut down through `with_loop` (or a callback on the loop): no callback will
            // come for the operations that were in flight, so their futures get
            // `Canceled` now instead of waiting forever (`reentry_and_fd_reuse.rs::
            // shutting_down_the_runtimes_loop_fails_its_pending_operations`).
            self.loop_shutdowns.set(lp.shutdowns());
            self.slots.shutdown();
        }
    }

    /// Start `fut` as a task; it first runs on the next round.
    pub(crate) fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        assert!(
            !self.closed.get(),
            "xev: spawn on a runtime that was shut down"
        );
        let task = TaskRef::new(fut, self.remote.clone());
        let handle = JoinHandle::new(task.clone_ref());
        let queued = task.clone_ref();
        queued.mark_scheduled();
        self.tasks.borrow_mut().insert(task);
        self.queue.borrow_mut().push_back(queued);
        handle
    }

    /// Drive the loop and the tasks until `fut` is done.
    pub(crate) fn block_on<F: Future>(&self, fut: F) -> F::Output {
        assert!(
            !self.closed.get(),
            "xev: block_on on a runtime that was shut down"
        );
        let _enter = Enter::new(self);
        let waker = Waker::from(Arc::new(MainWaker(self.remote.clone())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        self.remote.main_woken.store(true, Ordering::Release);
        loop {
            let mut main = None;
            if self.remote.main_woken.swap(false, Ordering::AcqRel) {
                main = Some(
                    self.remote
                        .main_woken_remotely
                        .swap(false, Ordering::Relaxed),
                );
                self.inline_budget.set(INLINE_BUDGET);
                if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                    // Closes deferred by the last round's callbacks happen now, not at the
                    // next `block_on`.
                    if !self.deferred.borrow().is_empty() {
                        if let Ok(mut lp) = self.lp.try_borrow_mut() {
                            self.flush_deferred(&mut lp);
                        }
                    }
                    return v;
                }
            }
            let tasks = self.run_tasks();
            if main.is_some() || tasks.is_some() {
                self.fed_remotely
                    .set(main.unwrap_or(true) && tasks.unwrap_or(true));
            }
            let idle =
                self.queue.borrow().is_empty() && !self.remote.main_woken.load(Ordering::Acquire);
            self.turn(idle);
        }
    }

    /// Poll every task that is ready now (tasks woken meanwhile wait for the next round,
    /// after the loop has been polled, so I/O is never starved). `Some(true)`: it polled
    /// tasks, all of them woken from other threads; `None`: none was ready.
    fn run_tasks(&self) -> Option<bool> {
        // A plain load first: most rounds have no remote wake-up, and a locked swap per
        // round is not free. A wake that sets the flag just after the load is collected
        // next round (it also woke the loop, so the loop does not sleep on it).
        let local = self.queue.borrow().len();
        if self.remote.wake_pending.load(Ordering::Acquire)
            && self.remote.wake_pending.swap(false, Ordering::AcqRel)
        {
            self.remote.queue.take_all(&mut self.queue.borrow_mut());
        }
        let n = self.queue.borrow().len();
        for _ in 0..n {
            let Some(t) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            self.inline_budget.set(INLINE_BUDGET);
            if t.run() {
                let owned = self.tasks.borrow_mut().remove(&t);
                t.complete();
                drop(owned);
            }
        }
        (n > 0).then_some(local == 0)
    }

    fn turn(&self, idle: bool) {
        let mut lp = self.lp.borrow_mut();
        self.check_loop(&lp);
        self.flush_deferred(&mut lp);
        if !idle && !lp.awaits_io() {
            // Tasks are ready and nothing is in flight or waiting for readiness: asking
            // the kernel would only cost a syscall (remote wake-ups are collected by
            // `run_tasks` regardless).
            drop(lp);
            self.sleeps.fire_due();
            return;
        }
        let cap = if idle {
            self.sleeps.time_to_next()
        } else {
            None
        };
        // A worker that only other threads feed blocks without the loop's yield: the
        // yield would only shorten the batches they hand it (a stream over an unbounded
        // channel between two workers that also await I/O measured half as fast).
        let r = lp.turn(idle, cap, !self.fed_remotely.get());
        // A callback may have replaced the loop through its `&mut Loop`.
        self.check_loop(&lp);
        drop(lp);
        if let Err(e) = r {
            panic!("xev: the event loop failed: {e}");
        }
        self.sleeps.fire_due();
    }

    /// Drop every task's future (on this thread), then cancel and drain the loop. Called
    /// once, by the runtime's `Drop`.
    pub(crate) fn shutdown(&self) {
        if self.closed.replace(true) {
            return;
        }
        let _enter = Enter::swap(self);
        self.remote.closed.store(true, Ordering::Release);
        // Dropping a future may spawn or wake; repeat until nothing is left.
        loop {
            let tasks: Vec<TaskRef> = {
                let mut set = self.tasks.borrow_mut();
                set.free.clear();
                set.tasks.drain(..).flatten().collect()
            };
            if tasks.is_empty() {
                break;
            }
            for t in tasks {
                t.cancel();
                t.complete();
            }
        }
        self.queue.borrow_mut().clear();
        self.remote.queue.clear();
        self.lp.borrow_mut().shutdown();
        self.slots.shutdown();
        // Nothing is in flight any more: deferred fds are simply closed.
        self.deferred.borrow_mut().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::TaskSet;
    use crate::net::UdpSocket;
    use crate::rt::Builder;
    use crate::sync::mpsc;
    use crate::Backend;
    use std::time::Duration;

    /// `free` of this thread's executor has room for every slot (so a task's end cannot
    /// allocate); returns (slots, free slots).
    fn task_set_room() -> (usize, usize) {
        super::with_current(|e| {
            let set = e.tasks.borrow();
            let (slots, free): (&TaskSet, _) = (&set, set.free.capacity());
            assert!(
                free >= slots.tasks.len(),
                "free list capacity {free} < {} slots",
                slots.tasks.len()
            );
            (slots.tasks.len(), slots.free.len())
        })
        .unwrap()
    }

    /// A task's end never allocates: the slot it frees goes to a free list that already
    /// has room for every slot, whatever order tasks are spawned and end in.
    #[test]
    fn a_tasks_end_never_grows_the_free_list() {
        let rt = Builder::new().build().unwrap();
        rt.block_on(async {
            let mut kept = Vec::new();
            for round in 1..=4 {
                let handles: Vec<_> = (0..37 * round).map(|_| crate::spawn(async {})).collect();
                // One of each batch stays until the end, so slots are reused out of order.
                kept.push(crate::spawn(async {
                    crate::time::sleep(Duration::from_millis(20)).await
                }));
                task_set_room();
                for h in handles {
                    h.await.unwrap();
                }
                let (slots, free) = task_set_room();
                assert_eq!(free, slots - round, "round {round}");
            }
            for h in kept {
                h.await.unwrap();
            }
            let (slots, free) = task_set_room();
            assert_eq!(free, slots);
        });
    }

    /// With `yield_before_block` and I/O awaited throughout (an idle UDP receive), a
    /// runtime fed only by another thread (channels whose sender is a plain thread, read
    /// by the main future and then by a task) blocks without yielding; once I/O is what
    /// wakes it, it yields before it blocks again.
    #[test]
    fn a_worker_fed_only_by_other_threads_blocks_without_yielding() {
        const N: u64 = 100;
        // Long enough for the runtime to block before the next message or datagram.
        const PAUSE: Duration = Duration::from_millis(1);
        for b in Backend::available() {
            let rt = Builder::new()
                .backend(b)
                .yield_before_block(true)
                .build()
                .unwrap();
            let (to_main, mut main_rx) = mpsc::unbounded_channel::<u64>();
            let (to_task, mut task_rx) = mpsc::unbounded_channel::<u64>();
            let (ack, acks) = std::sync::mpsc::channel::<u64>();
            let data = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let feeder = std::thread::spawn(move || {
                let recv = |what: &str, i: u64| {
                    let got = acks.recv_timeout(Duration::from_secs(10));
                    assert_eq!(got, Ok(i), "{b:?}: {what} {i} lost");
                };
                for (tx, who) in [(to_main, "main future"), (to_task, "task")] {
                    for i in 0..N {
                        std::thread::sleep(PAUSE);
                        tx.send(i).unwrap();
                        recv(who, i);
                    }
                }
                // The reader's port comes as the ack after the channels closed.
                let port = acks.recv_timeout(Duration::from_secs(10)).unwrap();
                for i in 0..N {
                    std::thread::sleep(PAUSE);
                    data.send_to(&i.to_le_bytes(), ("127.0.0.1", port as u16))
                        .unwrap();
                    recv("datagram", i);
                }
            });
            let (main, task, io) = rt.block_on(async move {
                let idle = UdpSocket::bind("127.0.0.1:0").unwrap();
                let _idle = crate::spawn(async move {
                    let _ = idle.recv_from(vec![0u8; 8]).await;
                });
                let yields = || crate::rt::with_loop(|lp| lp.yields);
                let start = yields();
                for i in 0..N {
                    assert_eq!(main_rx.recv().await, Some(i));
                    ack.send(i).unwrap();
                }
                let main = yields() - start;
                let start = yields();
                let ack2 = ack.clone();
                crate::spawn(async move {
                    for i in 0..N {
                        assert_eq!(task_rx.recv().await, Some(i));
                        ack2.send(i).unwrap();
                    }
                })
                .await
                .unwrap();
                let task = yields() - start;
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                ack.send(u64::from(s.local_addr().unwrap().port())).unwrap();
                let start = yields();
                let mut buf = vec![0u8; 8];
                for i in 0..N {
                    let (r, b) = s.recv_from(buf).await;
                    buf = b;
                    assert_eq!(r.unwrap().0, 8);
                    assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()), i);
                    ack.send(i).unwrap();
                }
                (main, task, yields() - start)
            });
            feeder.join().unwrap();
            // The first block of each phase follows a round that was not fed remotely
            // (the start, the spawn), and may yield.
            assert!(
                main <= 1,
                "{b:?}: {main} yields while another thread fed main"
            );
            assert!(
                task <= 1,
                "{b:?}: {task} yields while another thread fed a task"
            );
            // Each datagram is awaited in a block that yields first (unless the look
            // already finds it: allow for that on a busy machine).
            assert!(io >= N / 2, "{b:?}: {io} yields in {N} blocks awaiting I/O");
        }
    }
}
