//! [`Loop`]: the completion-based event loop, and the backend-independent rules every
//! backend follows (timers, cancellation, the ready queue, rearm, shutdown).

use crate::sys::fd::RawFd;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Driver};
use crate::callback::Callback;
use crate::completion::{CallbackAction, Completion, Inner, Phase};
use crate::handoff::Handoff;
use crate::op::{CancelTarget, Op, PollEvents};
use crate::park::{ParkInbox, POLL_PARK};
use crate::queue::Intrusive;
use crate::registry::{Registry, Ticket};
use crate::result::{close_orphan_fd, OpResult};
use crate::scratch::ScratchPool;
use crate::sys;
use crate::thread_pool::{RawJob, ThreadPool, ThreadPoolOptions};
use crate::timer_queue::{TimerItem, TimerQueue};

/// Ticks that may run queued results without asking the kernel for new ones.
const KERNEL_POLL_INTERVAL: u32 = 16;

/// The most io_uring submission-queue entries the kernel accepts.
pub const MAX_ENTRIES: u32 = 32768;

/// A process-unique name for a [`Loop`], recorded in every completion it runs and in
/// every [`CancelTarget`], so one loop never acts on another's completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LoopId(u32);

impl LoopId {
    /// No loop (a Dead completion's owner).
    pub(crate) const NONE: LoopId = LoopId(0);

    fn next() -> io::Result<LoopId> {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        let id = NEXT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
            .map_err(|_| io::Error::other("more than 2^32 - 1 loops created in this process"))?;
        Ok(LoopId(id))
    }
}

/// How a loop is created.
#[derive(Debug, Clone)]
pub struct Options {
    /// Submission-queue size for io_uring (1..=[`MAX_ENTRIES`]); the poll backend uses it
    /// as its event-batch size. Default 256.
    pub entries: u32,
    /// Pin a backend; `None` picks [`Backend::default()`]: the one the `XEV_BACKEND`
    /// environment variable names (`io_uring`, `epoll`, ...; an unknown or unavailable
    /// name makes [`Loop::new`] fail), else io_uring when the kernel allows it, else the
    /// poll backend. A pinned backend that is not available is an error; a pinned backend
    /// wins over `XEV_BACKEND`.
    pub backend: Option<Backend>,
    /// Pool for blocking work (regular-file I/O on the poll backend). `None`: the loop
    /// makes its own default pool, whose threads start only when needed.
    pub thread_pool: Option<ThreadPool>,
    /// io_uring only: set the ring up with `IORING_SETUP_SQPOLL`, a kernel thread that
    /// polls the submission queue and goes to sleep after this much idle time (rounded to
    /// milliseconds), so submitting needs no `io_uring_enter` while it is awake. `None`
    /// (the default): no polling thread. It costs a core: on a 2-core machine it measured
    /// slower (see the README). A kernel that refuses it gets a normal ring;
    /// [`Loop::uses_sqpoll`] tells which. The poll backend ignores it.
    pub sqpoll: Option<Duration>,
    /// io_uring only: register the async runtime's sockets and files in a fixed-file
    /// table (a slot per fd from its first use on the loop until its close), so their
    /// operations skip the kernel's per-operation file lookup. It costs two
    /// `io_uring_register` calls per fd and measured no faster on the async ping-pong
    /// here (CPU per round trip within noise at 1 and 100 connections), so the default is
    /// off unless the environment variable `XEV_URING_FIXED_FILES=1` is set. Without
    /// kernel support (5.19+) it is off. See also [`Loop::register_file`].
    pub fixed_files: bool,
    /// Before a wait that would block while I/O is awaited (a completion is Active, or an
    /// async task waits for a socket), look once without blocking and, if nothing at all
    /// came in (no completion, readiness event or wake-up), give the CPU away once
    /// ([`std::thread::yield_now`]) before blocking. A loop that waits only for wake-ups
    /// from other threads blocks at once. Where more threads are busy than there are CPUs
    /// (a pool of loops plus the clients or other work on the same machine), a loop that
    /// runs dry would otherwise sleep and be woken for nearly every request; after the
    /// yield, the work the other threads produced meanwhile is usually there. On an idle
    /// machine the yield returns at once, and the price is two syscalls per block. Between
    /// workers that only wake each other (channels, no I/O) it is not used, nor by a
    /// runtime whose last round ran only what other threads woke: a stream between two
    /// workers over an unbounded channel measured half as fast when they yielded. Off by
    /// default for a single loop (measured no faster, and about 3% more CPU
    /// per round trip at one connection), unless the environment variable
    /// `XEV_YIELD_BEFORE_BLOCK=1` is set; a [`Pool`](crate::rt::Pool) turns it on for its
    /// workers (see [`Builder::yield_before_block`](crate::rt::Builder::yield_before_block)
    /// and the README's figures).
    pub yield_before_block: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            entries: 256,
            backend: None,
            thread_pool: None,
            sqpoll: None,
            fixed_files: std::env::var_os("XEV_URING_FIXED_FILES").is_some_and(|v| v == "1"),
            yield_before_block: std::env::var_os("XEV_YIELD_BEFORE_BLOCK")
                .is_some_and(|v| v == "1"),
        }
    }
}

/// How long [`Loop::run`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// One pass: submit, collect whatever finished, run those callbacks; never block.
    NoWait,
    /// Block until at least one callback has run (returns at once if nothing is Active).
    Once,
    /// Run until no completion is Active, or [`Loop::stop`] is called.
    UntilDone,
}

/// Why [`Loop::run`] failed.
#[derive(Debug)]
pub enum RunError {
    /// `run` was called from inside a callback of the same loop.
    Nested,
    /// Waiting in the kernel failed.
    Io(io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Nested => {
                f.write_str("Loop::run called from inside a callback (nested runs are not allowed)")
            }
            RunError::Io(e) => write!(f, "event loop wait failed: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<RunError> for io::Error {
    fn from(e: RunError) -> io::Error {
        match e {
            RunError::Nested => io::Error::other(e.to_string()),
            RunError::Io(e) => e,
        }
    }
}

/// Completions coming back from the thread pool, and how to wake the loop for them.
pub(crate) struct PoolSink {
    done: Handoff<SendPtr>,
    wake_pending: AtomicBool,
    wake: Box<dyn Fn() + Send + Sync>,
}

struct SendPtr(NonNull<Completion>);
// SAFETY: the pointer is only dereferenced on the loop thread after the worker is done
// with the completion; carrying it across threads is the hand-back itself.
unsafe impl Send for SendPtr {}

/// Backend-independent loop state. Backends get `&mut Core` to report results.
pub(crate) struct Core {
    id: LoopId,
    pub(crate) registry: Registry,
    timers: TimerQueue<NonNull<Completion>>,
    pub(crate) ready: Intrusive<Completion>,
    epoch: Instant,
    now_ns: u64,
    /// `now_ns` was not refreshed this tick (no timers were pending).
    now_stale: bool,
    pool: Option<ThreadPool>,
    /// Socket-address and message-header space lent to the operations that need it.
    scratch: ScratchPool,
    sink: Arc<PoolSink>,
    pool_inflight: usize,
    /// Callbacks of completions abandoned by a shutdown, dropped once every completion is
    /// Dead (a callback may own a completion of this loop, e.g. a write queue's).
    abandoned: Vec<Callback>,
    /// Time limits of the completions added with one (`Loop::add_with_timeout`).
    pub(crate) links: crate::link_timeout::Links,
    /// Wake-ups of parked completions from other threads (`park.rs`).
    parked: Arc<ParkInbox>,
    /// The submission in progress is [`Loop::add_parked`]'s: a parked operation parks.
    /// Any other submission of one (a plain `add` or a rearm of a completion whose wait
    /// finished) is a spurious wake-up at once, since nothing recorded it where a
    /// wake-up would find it (see `park.rs`).
    parking: bool,
    /// Results queued during this tick's callbacks that had already arrived from the
    /// kernel (a rearmed multishot completion taking its record's next result): for each,
    /// the tick runs one more entry of the ready queue (in queue order), so a batch of
    /// CQEs is delivered in one tick, as a hand-written loop would, rather than one tick
    /// (and every 16th a kernel entry) per result. Bounded by what the last wait reaped.
    pub(crate) arrived: usize,
}

impl Core {
    /// Record `res` for `c` and queue its callback.
    pub(crate) fn finish(&mut self, c: NonNull<Completion>, res: isize) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active (registered), so it is live; loop thread.
        unsafe {
            Inner::set_res(inner, res);
            (*inner).phase = Phase::Ready;
            self.ready.push(c);
        }
    }

    /// Forget an Active completion without calling back (shutdown). `res` is its raw
    /// result if one arrived, so an accepted fd nobody will see gets closed.
    pub(crate) fn abandon(&mut self, c: NonNull<Completion>, res: Option<isize>) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active, hence live; loop thread; no kernel or pool reference
        // remains (the caller reaped it).
        unsafe {
            if let Some(res) = res {
                close_orphan_fd(&(*inner).op, res);
            }
            Inner::release_scratch(inner, &mut self.scratch);
            self.links.forget(c);
            self.registry.remove((*inner).ticket);
            (*inner).phase = Phase::Dead;
            // The callback will never run: drop what it owns (userdata, buffers, fds),
            // which may break a completion -> callback -> owner cycle.
            let cb = std::mem::replace(&mut (*inner).callback, Callback::empty());
            self.abandoned.push(cb);
        }
    }

    fn fresh_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64
    }

    fn update_now(&mut self) {
        self.now_ns = self.fresh_ns();
        self.now_stale = false;
    }

    /// Hand `c` to the thread pool; its result comes back through the sink.
    pub(crate) fn send_to_pool(&mut self, c: NonNull<Completion>) {
        unsafe fn run(data: *mut (), ctx: *const (), caller_fd: RawFd) {
            let c = NonNull::new(data.cast::<Completion>()).expect("non-null job");
            let inner = Completion::raw(c);
            // SAFETY: `ctx` came from `Arc::into_raw` of the loop's sink when this job was
            // queued; the job owns that strong reference, so everything it touches after
            // handing the result back (the wake flag, the wake-up fd) stays alive even if
            // the loop sees the result and is dropped at once.
            let sink = unsafe { Arc::from_raw(ctx.cast::<PoolSink>()) };
            // SAFETY: the loop handed this completion to us and does not touch it until we
            // push it back; its buffer is valid (owned by the op).
            let res = unsafe { sys::perform(inner, false) };
            // SAFETY: as above; `res` is read by the loop only after the queue hand-off.
            unsafe {
                Core::restore_caller_fd(inner, caller_fd);
                Inner::set_res(inner, res);
            }
            sink.done.push(SendPtr(c));
            if !sink.wake_pending.swap(true, Ordering::AcqRel) {
                (sink.wake)();
            }
            drop(sink);
        }
        let inner = Completion::raw(c);
        // A job runs later on another thread, and a job a worker has taken cannot be
        // cancelled. If its fd were closed meanwhile (an async future dropped, then its
        // file), the number could name another file by the time the job runs. So the job
        // works on its own duplicate; the caller's number travels in the job and is put
        // back (and the duplicate closed) before the result is handed back.
        let mut caller_fd = crate::sys::fd::NO_FD;
        // SAFETY: `c` is Active and live; loop thread; no worker has it yet.
        unsafe {
            if let Some(fd) = (*inner).op.borrowed_fd_mut() {
                let dup = match sys::dup_cloexec(*fd) {
                    Ok(dup) => dup,
                    Err(e) => {
                        let err = e.raw_os_error().unwrap_or(libc::EBADF);
                        return self.finish(c, -(err as isize));
                    }
                };
                caller_fd = std::mem::replace(fd, dup);
            }
        }
        // SAFETY: `c` is Active and live; loop thread.
        unsafe { (*inner).phase = Phase::Pool };
        self.pool_inflight += 1;
        let pool = self
            .pool
            .get_or_insert_with(|| ThreadPool::new(ThreadPoolOptions::default()));
        pool.execute_raw(RawJob {
            run,
            data: c.as_ptr().cast(),
            ctx: Arc::into_raw(self.sink.clone()).cast(),
            fd: caller_fd,
        });
    }

    /// Put the caller's fd back into an op that ran (or was withdrawn from) the pool, and
    /// close the duplicate it ran on.
    ///
    /// # Safety
    /// `inner` is a live completion that only the calling thread touches now.
    unsafe fn restore_caller_fd(inner: *mut Inner, caller_fd: RawFd) {
        if crate::sys::fd::is_no_fd(caller_fd) {
            return;
        }
        // SAFETY: the caller's promise.
        if let Some(fd) = unsafe { (*inner).op.borrowed_fd_mut() } {
            sys::close_fd(std::mem::replace(fd, caller_fd));
        }
    }

    /// A job withdrawn from the pool before it ran: undo what `send_to_pool` did.
    fn withdrawn(&mut self, c: NonNull<Completion>, job: RawJob) {
        self.pool_inflight -= 1;
        // SAFETY: no worker took the job, so `c` is live and only the loop touches it.
        unsafe { Self::restore_caller_fd(Completion::raw(c), job.fd) };
        // SAFETY: the job's strong reference to the sink, made by `Arc::into_raw`.
        drop(unsafe { Arc::from_raw(job.ctx.cast::<PoolSink>()) });
    }

    fn collect_pool(&mut self) {
        if self.pool_inflight == 0 {
            return;
        }
        self.sink.wake_pending.store(false, Ordering::Release);
        let sink = self.sink.clone();
        sink.done.drain_with(|SendPtr(c)| {
            self.pool_inflight -= 1;
            // SAFETY: the worker is done with `c`; it is Active and live.
            let res = unsafe { Inner::res(Completion::raw(c)) };
            self.finish(c, res);
        });
    }

    /// Finish the parked completions other threads asked for (one load when none did).
    fn collect_parked(&mut self) {
        if !self.parked.has_pending() {
            return;
        }
        let inbox = self.parked.clone();
        inbox.collect(|t| self.unpark(t));
    }

    /// Finish the completion parked under `t` with `POLLIN`, if it still is.
    fn unpark(&mut self, t: Ticket) {
        if let Some(c) = self.parked_under(t) {
            self.finish(c, crate::PollEvents::IN.bits() as isize);
        }
    }

    /// The completion registered under `t` if it is parked (see `park.rs`).
    fn parked_under(&self, t: Ticket) -> Option<NonNull<Completion>> {
        self.registry.get(t).filter(|&c| is_parked(c))
    }

    fn expire_timers(&mut self) {
        while let Some((deadline, c)) = self.timers.peek() {
            if deadline > self.now_ns {
                break;
            }
            self.timers.pop();
            self.finish(c, 0);
        }
    }

    /// How long the kernel may block: 0 when work is ready, else until the next deadline.
    fn wait_timeout(&mut self) -> Option<Duration> {
        if !self.ready.is_empty() || (self.pool_inflight > 0 && !self.sink.done.is_empty()) {
            return Some(Duration::ZERO);
        }
        let (deadline, _) = self.timers.peek()?;
        let now = self.fresh_ns();
        Some(Duration::from_nanos(deadline.saturating_sub(now)))
    }

    /// Queue timer `c` (its deadline set) and give it its ticket: its run position if it
    /// went to the run (no registry slot), else a registry slot.
    fn add_timer(&mut self, c: NonNull<Completion>) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active and live; loop thread.
        unsafe {
            (*inner).phase = Phase::Timer;
            (*inner).ticket = match self.timers.push(c) {
                Some(pos) => self.registry.insert_run(pos),
                None => self.registry.insert(c),
            };
        }
    }

    /// The Active completion `ticket` names in this loop, if it is still that
    /// operation: a run timer is looked up in the timer queue's run (positions are never
    /// reused), anything else in the registry.
    fn lookup(&self, ticket: crate::registry::Ticket) -> Option<NonNull<Completion>> {
        let Some(pos) = ticket.run_pos() else {
            return self.registry.get(ticket);
        };
        let t = self.timers.run_item(pos)?;
        // SAFETY: completions in the timer queue are Active, hence live; loop thread. A
        // run position names one arming, so this is the target; the ticket is compared
        // anyway rather than trusted.
        (unsafe { (*Completion::raw(t)).ticket } == ticket).then_some(t)
    }
}

impl TimerItem for NonNull<Completion> {
    fn deadline(self) -> u64 {
        // SAFETY: only Active (hence live) timers are in the timer queue, which asks for
        // the deadline only while the completion is queued there; loop thread.
        unsafe { Inner::deadline(Completion::raw(self)) }
    }
}

/// Whether registered completion `c` is parked (see `park.rs`): waiting, and for no
/// backend.
fn is_parked(c: NonNull<Completion>) -> bool {
    let inner = Completion::raw(c);
    // SAFETY: callers pass registered completions, which are live; loop thread; only the
    // phase and the op's event bits are read.
    unsafe {
        (*inner).phase == Phase::Waiting
            && matches!((*inner).op, Op::Poll { events, .. } if events.bits() & POLL_PARK != 0)
    }
}

/// The deadline of a timer of `ms` milliseconds armed now, in nanoseconds since `epoch`:
/// measured from the clock now, not the cached tick time, so a timer armed late in a long
/// tick still never fires early.
fn deadline_after(epoch: Instant, ms: u64) -> u64 {
    let now = epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64;
    now.saturating_add(ms.saturating_mul(1_000_000))
}

/// A completion-based event loop.
///
/// Add [`Completion`]s (operation + callback) and [`run`](Self::run) the loop; each
/// callback receives its operation's typed [`OpResult`] and returns
/// [`CallbackAction::Disarm`] or [`CallbackAction::Rearm`]. Nothing is allocated per
/// operation.
///
/// **Drop order.** Dropping the loop (or calling [`shutdown`](Self::shutdown)) cancels
/// every operation still in flight, waits until the kernel and the thread pool have let
/// go of them, closes any fd they produced that nobody received, and leaves every
/// completion Dead without calling its callback. So a program may stop the loop and drop
/// it before its completions; dropping a completion while it is still Active aborts. (One
/// exception to the waiting: an io_uring zero-copy send whose only outstanding event is
/// its notification, which may never come; its buffer is leaked to the kernel instead,
/// see [`Op::SendZc`].)
pub struct Loop {
    core: Core,
    driver: Driver,
    backend: Backend,
    running: bool,
    stopped: bool,
    /// A callback called [`shutdown`](Loop::shutdown): it runs when that callback
    /// returns (see there).
    shutdown_deferred: bool,
    /// How many times the loop was shut down (the async runtime notices a shutdown made
    /// through `xev::rt::with_loop` and fails the operations of its futures).
    shutdowns: u64,
    ticks_without_kernel: u32,
    /// Whether this loop has asked for `SIGPIPE` to be blocked in its thread (on its
    /// first `Op::Write` or `Op::Writev`; see `sigpipe.rs`): `None` until then.
    sigpipe: Option<bool>,
    /// See [`Options::yield_before_block`].
    yield_before_block: bool,
    /// How many times this loop yielded before blocking (tests check the rule).
    pub(crate) yields: u64,
}

impl Loop {
    /// Create a loop; see [`Options`].
    ///
    /// ```
    /// let lp = xev::Loop::new(xev::Options::default())?;
    /// println!("running on {:?}", lp.backend());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(opts: Options) -> io::Result<Loop> {
        if opts.entries == 0 || opts.entries > MAX_ENTRIES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "Options.entries = {} is outside 1..={MAX_ENTRIES}",
                    opts.entries
                ),
            ));
        }
        let backend = match opts.backend {
            Some(b) if !b.is_available() => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("backend {b:?} is not available on this system"),
                ))
            }
            Some(b) => b,
            None => Backend::try_default()?,
        };
        let driver = Driver::new(backend, opts.entries, opts.sqpoll, opts.fixed_files)?;
        let sink = Arc::new(PoolSink {
            done: Handoff::new(),
            wake_pending: AtomicBool::new(false),
            wake: driver.waker(),
        });
        let parked = Arc::new(ParkInbox::new(driver.waker()));
        let mut core = Core {
            id: LoopId::next()?,
            registry: Registry::default(),
            timers: TimerQueue::default(),
            ready: Intrusive::default(),
            epoch: Instant::now(),
            now_ns: 0,
            now_stale: false,
            pool: opts.thread_pool,
            scratch: ScratchPool::default(),
            links: Default::default(),
            sink,
            pool_inflight: 0,
            abandoned: Vec::new(),
            arrived: 0,
            parked,
            parking: false,
        };
        core.update_now();
        Ok(Loop {
            core,
            driver,
            backend,
            running: false,
            stopped: false,
            shutdown_deferred: false,
            shutdowns: 0,
            ticks_without_kernel: 0,
            sigpipe: None,
            yield_before_block: opts.yield_before_block,
            yields: 0,
        })
    }

    /// Whether this loop's io_uring ring runs a kernel submission-polling thread
    /// ([`Options::sqpoll`] asked for it and the kernel agreed); false on the poll backend.
    ///
    /// ```
    /// let lp = xev::Loop::new(xev::Options::default())?;
    /// assert!(!lp.uses_sqpoll());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn uses_sqpoll(&self) -> bool {
        self.driver.uses_sqpoll()
    }

    /// io_uring with [`Options::fixed_files`]: put `fd` in the ring's fixed-file table,
    /// so every later operation naming this fd number refers to the file by its slot
    /// (no per-operation file lookup in the kernel). Returns whether it got a slot (false
    /// on the poll backend, with the option off, or with the table full: operations then
    /// simply use the fd).
    ///
    /// The table holds its own reference to the file: call
    /// [`unregister_file`](Self::unregister_file) before closing `fd` yourself (an
    /// [`Op::Close`](crate::Op::Close) through this loop does it for you). Until then a
    /// new file that reuses the number would not be seen by this loop's operations, which
    /// would still reach the old one.
    ///
    /// ```
    /// use std::os::fd::AsRawFd;
    /// let mut lp = xev::Loop::new(xev::Options { fixed_files: true, ..Default::default() })?;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let fixed = lp.register_file(a.as_raw_fd());
    /// assert_eq!(fixed, lp.backend() == xev::Backend::IoUring);
    /// lp.unregister_file(a.as_raw_fd());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn register_file(&mut self, fd: RawFd) -> bool {
        self.driver.register_file(fd)
    }

    /// Take `fd` out of the fixed-file table (see [`register_file`](Self::register_file));
    /// nothing happens if it is not in it.
    pub fn unregister_file(&mut self, fd: RawFd) {
        self.driver.unregister_file(fd);
    }

    /// The registered-file slot of runtime fd `fd` on this loop (see
    /// [`Options::fixed_files`]), if it has one. For tests of the slot rules.
    #[doc(hidden)]
    pub fn registered_slot(&self, fd: RawFd) -> Option<u32> {
        self.driver.registered_slot(fd)
    }

    /// This loop's process-unique id.
    #[allow(dead_code)] // the runtime's loop-swap check uses it
    pub(crate) fn id(&self) -> LoopId {
        self.core.id
    }

    /// Whether this loop yields the CPU once before it blocks
    /// ([`Options::yield_before_block`]).
    ///
    /// ```
    /// let lp = xev::Loop::new(xev::Options { yield_before_block: true, ..Default::default() })?;
    /// assert!(lp.yields_before_block());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn yields_before_block(&self) -> bool {
        self.yield_before_block
    }

    /// The backend this loop runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Ask the kernel to end the multishot operation of `c` (Active in this loop, or in
    /// its callback) while every result it still posts keeps reaching `c`'s callback, the
    /// last one `Canceled` (io_uring; a no-op on the poll backend). Used by the runtime's
    /// `Incoming`, which must not lose a connection the kernel accepted.
    #[allow(dead_code)] // not on every platform
    pub(crate) fn multishot_stop(&mut self, c: &Completion) {
        self.driver.multishot_stop(NonNull::from(c));
    }

    /// Whether multishot completion `c` (in its callback) has results held for it, or may
    /// still receive some, without a new submission (io_uring only).
    #[allow(dead_code)] // not on every platform
    pub(crate) fn multishot_more(&self, c: &Completion) -> bool {
        self.driver.multishot_more(NonNull::from(c))
    }

    /// How many non-blocking attempts the poll backend has made so far that found their
    /// fd not ready (`EAGAIN`), each a syscall its readiness cache did not save; always 0
    /// on io_uring. For tests and profiling, not a stable API.
    #[doc(hidden)]
    pub fn poll_eagain_attempts(&self) -> u64 {
        match &self.driver {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => 0,
            Driver::Poll(d) => d.eagain_attempts(),
        }
    }

    /// How many socket sends and receives of the async runtime the poll backend has done
    /// at once, without a completion (its direct path); always 0 on io_uring. For tests
    /// and profiling, not a stable API.
    #[doc(hidden)]
    pub fn poll_direct_transfers(&self) -> u64 {
        match &self.driver {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => 0,
            Driver::Poll(d) => d.direct_transfers(),
        }
    }

    /// How many times the poll backend has asked the kernel (`fstat`) whether a read's or
    /// write's descriptor is a regular file (thread pool) or one it can wait on; always 0
    /// on io_uring. For tests and profiling, not a stable API.
    #[doc(hidden)]
    pub fn poll_kind_lookups(&self) -> u64 {
        match &self.driver {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => 0,
            Driver::Poll(d) => d.kind_lookups(),
        }
    }

    /// Number of Active completions.
    pub fn active(&self) -> usize {
        self.core.registry.len()
    }

    /// Whether only a wait for readiness can finish something here: a completion is
    /// Active, or an async task waits for a socket's edge without one (the poll
    /// backend's direct path, see `fd_transfer_or_wait`).
    pub(crate) fn awaits_io(&self) -> bool {
        self.active() > 0
            || match &self.driver {
                Driver::Poll(d) => d.has_waiters(),
                #[cfg(target_os = "linux")]
                Driver::IoUring(_) => false,
            }
    }

    /// Run the loop; see [`RunMode`]. Returns [`RunError::Nested`] if called from a
    /// callback. A previous [`stop`](Self::stop) is cleared when `run` starts.
    ///
    /// A panic in a callback propagates out of `run`; that callback's completion is then
    /// Dead, every other completion keeps its state, and the loop can be run again.
    pub fn run(&mut self, mode: RunMode) -> Result<(), RunError> {
        if self.running {
            return Err(RunError::Nested);
        }
        self.running = true;
        self.stopped = false;
        // A panicking callback unwinds through here: clear `running` on the way out, or
        // every later `run` would report `Nested`.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_inner(mode)));
        self.running = false;
        self.deferred_shutdown();
        match r {
            Ok(r) => r.map_err(RunError::Io),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    fn run_inner(&mut self, mode: RunMode) -> io::Result<()> {
        match mode {
            RunMode::NoWait => self.tick(false).map(drop),
            RunMode::Once => {
                while !self.stopped && self.active() > 0 {
                    if self.tick(true)? > 0 {
                        break;
                    }
                }
                Ok(())
            }
            RunMode::UntilDone => {
                while !self.stopped && self.active() > 0 {
                    self.tick(true)?;
                }
                Ok(())
            }
        }
    }

    /// One iteration: submit, wait (if `block` and nothing is ready) at most until the
    /// next timer, then run the callbacks that were ready at that point. Callbacks queued
    /// by those callbacks (rearms, synchronous results) wait for the next tick, so a
    /// callback that always rearms cannot trap the loop in one tick.
    fn tick(&mut self, block: bool) -> io::Result<usize> {
        self.tick_capped(block, None, true)
    }

    /// [`tick`](Self::tick) whose blocking wait also ends after `cap` (the async runtime's
    /// next sleep deadline); `may_yield` false skips the yield before block for this tick.
    fn tick_capped(
        &mut self,
        block: bool,
        cap: Option<Duration>,
        may_yield: bool,
    ) -> io::Result<usize> {
        // Results queued by the previous tick's callbacks (operations that finished at
        // once, rearmed timers) can run without asking the kernel first; it is still asked
        // at least every KERNEL_POLL_INTERVAL ticks, so I/O is never starved.
        if !self.core.ready.is_empty() && self.ticks_without_kernel < KERNEL_POLL_INTERVAL {
            self.ticks_without_kernel += 1;
        } else {
            self.ticks_without_kernel = 0;
            let timeout = if block {
                match (self.core.wait_timeout(), cap) {
                    (Some(t), Some(c)) => Some(t.min(c)),
                    (t, c) => t.or(c),
                }
            } else {
                Some(Duration::ZERO)
            };
            // Only while I/O is awaited (see `Options::yield_before_block`).
            if self.yield_before_block
                && may_yield
                && timeout != Some(Duration::ZERO)
                && self.awaits_io()
            {
                self.wait_after_yield(timeout)?;
            } else {
                self.driver.wait(&mut self.core, timeout)?;
            }
        }
        self.core.collect_pool();
        self.core.collect_parked();
        // The clock is read only when a timer may be due; `now()` reads it on demand
        // otherwise (a tick of pure I/O costs no clock_gettime).
        if self.core.timers.len() > 0 {
            self.core.update_now();
            self.core.expire_timers();
        } else {
            self.core.now_stale = true;
        }
        // What is queued now, plus one more entry per result the callbacks queue that had
        // already arrived (see `Core::arrived`): the queue is FIFO, so the extra entries
        // are the oldest ones queued meanwhile; the rest waits for the next tick.
        let mut left = self.core.ready.len();
        self.core.arrived = 0;
        let mut ran = 0;
        while left > 0 {
            let Some(c) = self.core.ready.pop() else {
                break;
            };
            self.invoke(c);
            ran += 1;
            left += std::mem::take(&mut self.core.arrived);
            left -= 1;
        }
        Ok(ran)
    }

    /// A blocking wait of at most `timeout` with [`Options::yield_before_block`]: look
    /// without blocking first; only if that took nothing at all from the kernel and
    /// queued nothing, yield once, then block for what is left of `timeout`.
    ///
    /// Anything the look took ends the tick there, without blocking: it may have
    /// consumed a wake-up (an edge of the wake-up eventfd, the `polling` crate's notify,
    /// io_uring's wake CQE) or woken a task directly (the poll backend's readiness
    /// waiters), which nothing in `core` records, and blocking after it could sleep
    /// through the very event that was to end the sleep.
    fn wait_after_yield(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        // `None`: no deadline, or one too far to represent (block as asked).
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let seen = self.driver.wait(&mut self.core, Some(Duration::ZERO))?;
        if seen > 0 || !self.core.ready.is_empty() {
            return Ok(());
        }
        std::thread::yield_now();
        self.yields += 1;
        // The yield may have lasted: the deadline (a timer's, a sleep's) stays where it
        // was.
        let timeout = match deadline {
            Some(d) => Some(d.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        self.driver.wait(&mut self.core, timeout).map(drop)
    }

    fn invoke(&mut self, c: NonNull<Completion>) {
        let inner = Completion::raw(c);
        // SAFETY: `c` came off the ready queue, so it is Active and live, and neither the
        // kernel nor the pool references it any more. It is marked `Callback`, which makes
        // dropping it abort, and no other loop takes it while it is
        // (`assert_not_in_other_callback`), so only this loop could make it Dead before
        // the callback returns, which it does not do (a `shutdown` waits): it stays live
        // until this function returns even if the callback reaches it through the user's
        // own handles.
        unsafe {
            self.core.registry.remove((*inner).ticket);
            (*inner).phase = Phase::Callback;
            let res = Inner::res(inner);
            let addr = match (*inner).op {
                Op::Accept { .. } | Op::RecvMsg { .. } => Inner::scratch(inner).and_then(|sc| {
                    if let Op::RecvMsg { .. } = (*inner).op {
                        sc.addrlen = sc.msg.msg_namelen;
                    }
                    Completion::scratch_addr(sc)
                }),
                _ => None,
            };
            let multishot = (*inner).op.is_multishot();
            // A rearm trusts what the backend knows of the fd (the poll backend: its
            // registration); a callback that may have pointed the operation at another
            // fd (`op_mut`, which marks it edited) starts it afresh (see below).
            (*inner).fd.set_edited(false);
            // The kernel and the pool are done with it; the outcome stays readable.
            Inner::release_scratch(inner, &mut self.core.scratch);
            let mut result = MaybeUninit::uninit();
            OpResult::build_into(result.as_mut_ptr(), &(*inner).op, res, addr);
            let mut cb = std::mem::replace(&mut (*inner).callback, Callback::empty());
            // The callback's `&mut Loop` may be swapped with another loop (safe code can
            // `std::mem::swap` or `replace` it, and drop this one): checked after every
            // call, before anything of this loop's is used again.
            let id = self.core.id;
            // If the callback panics, the completion must not stay in `Callback` (whose
            // drop aborts): the loop has already let go of it, so it is Dead.
            let unwind = DeadOnUnwind(c);
            // `result` is handed over and not used again.
            let mut action = cb.call_taking(
                self,
                Pin::new_unchecked(&mut *c.as_ptr()),
                result.as_mut_ptr(),
            );
            std::mem::forget(unwind);
            if self.core.id != id {
                Self::replaced_in_callback(inner, cb);
            }
            // A multishot rearmed as it was, whose record already holds its next result
            // (the rest of the batch the last wait reaped): the callback takes that result
            // now, without the round through the registry, the backend and the ready
            // queue that its rearm would make, in the order they arrived.
            let mut rec = None;
            while multishot
                && action == CallbackAction::Rearm
                && (*inner).phase == Phase::Callback
                && (*inner).callback.is_empty()
                && !self.shutdown_deferred
            {
                let Some(res) = self.driver.multishot_next(c, &mut rec) else {
                    break;
                };
                Inner::set_res(inner, res);
                let mut result = MaybeUninit::uninit();
                OpResult::build_into(result.as_mut_ptr(), &(*inner).op, res, None);
                let unwind = DeadOnUnwind(c);
                // As above.
                action = cb.call_taking(
                    self,
                    Pin::new_unchecked(&mut *c.as_ptr()),
                    result.as_mut_ptr(),
                );
                std::mem::forget(unwind);
                if self.core.id != id {
                    // `rec` is the old loop's record, possibly freed with it
                    // (`reentry_and_fd_reuse.rs::a_loop_replaced_inside_a_multishot_callback_...`).
                    Self::replaced_in_callback(inner, cb);
                }
            }
            // A callback replaced from inside itself (`prep` in the callback) is dropped
            // only at the end, once the completion has left `Callback` and the loop is
            // done with it: its drop is user code, and may free the completion (the old
            // closure may own it), which aborted in `Callback`, or panic, which
            // unwound with the completion still in `Callback` (as `replaced_in_callback`
            // and a shutdown's abandoned callbacks do it).
            let replaced = if (*inner).callback.is_empty() {
                (*inner).callback = cb;
                None
            } else {
                Some(cb)
            };
            let mut settled = false;
            if (*inner).phase == Phase::Callback {
                (*inner).phase = Phase::Dead;
                if action == CallbackAction::Rearm {
                    // Only the operation as it was is a rearm: another fd (a number
                    // closed outside the loop and reused) lost its registration, which
                    // only a fresh start refreshes (`reentry_and_fd_reuse.rs::
                    // a_rearm_after_op_mut_moved_the_fd_...`: parked forever). A flag,
                    // not a comparison of fds: this runs for every callback.
                    let as_it_was = !(*inner).fd.edited();
                    if !as_it_was {
                        // Nor is io_uring's poll-first hint about this operation's socket.
                        (*inner).connecting = false;
                    }
                    self.submit(c, as_it_was);
                    // Still multishot, it went to the backend's start, which kept or
                    // replaced its record (a rearm's usual case: nothing left to check).
                    settled = (*inner).op.is_multishot();
                } else {
                    // Disarmed: its time limit (if any) ends with it.
                    self.core.links.forget(c);
                }
            }
            if multishot && !settled {
                self.driver.multishot_after_callback(&mut self.core, c);
            }
            // `c` is not touched after this (it may be freed now).
            drop(replaced);
        }
        // The callback asked for a shutdown: now that the loop holds nothing of this
        // completion's (its batch record, its result), before any other callback.
        self.deferred_shutdown();
    }

    /// The callback of completion `inner` (moved out of it as `cb`) replaced the loop
    /// that ran it (`std::mem::swap`/`replace` through its `&mut Loop`): that loop's
    /// queues, driver and the multishot record of a batch are no longer behind `self`
    /// (and may be freed). Leave the completion Dead with its callback, touch nothing
    /// else, and panic.
    ///
    /// # Safety
    /// `inner` is the completion whose callback just returned (live: see `invoke`).
    #[cold]
    #[inline(never)]
    unsafe fn replaced_in_callback(inner: *mut Inner, cb: Callback) -> ! {
        // SAFETY: the caller's contract; loop thread. The completion is not touched after
        // `cb` is dropped (its drop may free the completion, Dead by then).
        unsafe {
            if (*inner).phase == Phase::Callback {
                (*inner).phase = Phase::Dead;
            }
            if (*inner).callback.is_empty() {
                (*inner).callback = cb;
            } else {
                drop(cb);
            }
        }
        panic!(
            "xev: the Loop was replaced (std::mem::swap / std::mem::replace of the callback's \
             &mut Loop) inside a callback; a callback may use its loop but not put another \
             one in its place"
        );
    }

    /// Run the [`shutdown`](Self::shutdown) a callback asked for, if any.
    fn deferred_shutdown(&mut self) {
        if std::mem::take(&mut self.shutdown_deferred) {
            self.shutdown_now();
        }
    }

    /// One tick for the async runtime: like [`run`](Self::run)`(NoWait)` when `block` is
    /// false; when true, wait (at most `cap`) until a completion, a timer or a
    /// [`remote_waker`](Self::remote_waker) call arrives, even if nothing is Active.
    /// `may_yield` false: block without [`Options::yield_before_block`]'s yield this time
    /// (the executor's worker fed only by other threads).
    pub(crate) fn turn(
        &mut self,
        block: bool,
        cap: Option<Duration>,
        may_yield: bool,
    ) -> Result<usize, RunError> {
        if self.running {
            return Err(RunError::Nested);
        }
        self.running = true;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.tick_capped(block, cap, may_yield)
        }));
        self.running = false;
        self.deferred_shutdown();
        match r {
            Ok(r) => r.map_err(RunError::Io),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// If `c`, just added, finished at submission (an attempt that did not wait, on the
    /// poll backend) and is the only completion in the ready queue, run its callback now
    /// instead of at the next tick, and say so. The async runtime uses this so that an
    /// operation that completed at once is ready at its future's first poll (no wake-up,
    /// no second poll of the task); anything else queued keeps the usual order.
    pub(crate) fn finish_now(&mut self, c: NonNull<Completion>) -> bool {
        // Alone in the queue: it was empty before `c` was added (`c` was Dead then), so
        // popping the head takes `c` and leaves nothing queued behind. `c` is only
        // compared until it is found queued, which makes it Active and live.
        if self.core.ready.len() != 1 || self.core.ready.peek() != Some(c) {
            return false;
        }
        self.core.ready.pop();
        self.invoke(c);
        true
    }

    /// The async runtime's direct path for a socket it owns (announced with
    /// [`fd_opened`](Self::fd_opened)): on the poll backend, a send (`send`) or receive
    /// of the `len` bytes at `ptr` done now, without a completion, if the backend would
    /// try it first anyway; if it would block, the task waits for the socket's next edge
    /// with `waker` (under the id returned, which `waiting` passes back on the next call
    /// and [`withdraw`](Self::withdraw) cancels). See `poll::Driver::transfer_or_wait`.
    /// `Declined` (io_uring, operations queued ahead, an fd not announced): start the
    /// operation as usual.
    ///
    /// `STREAM`: a pipe or other non-socket stream instead, with `read(2)` / `write(2)` on
    /// its non-blocking fd; a regular file or block device is declined (its I/O goes to
    /// the thread pool), and a write first makes sure `SIGPIPE` is held off this thread,
    /// as for an `Op::Write`. (A constant: the sockets' path has no branch for it.)
    ///
    /// # Safety
    /// `ptr..ptr + len` is valid for the call: readable for a send, writable for a receive.
    #[cfg(unix)]
    #[inline(always)]
    pub(crate) unsafe fn fd_transfer_or_wait<const STREAM: bool>(
        &mut self,
        fd: RawFd,
        send: bool,
        ptr: *mut u8,
        len: usize,
        waiting: Option<u64>,
        waker: &std::task::Waker,
    ) -> crate::backend::poll::Direct {
        if !STREAM {
            // SAFETY: the caller's contract.
            return self.socket_io_or_wait(fd, send, len, waiting, waker, || unsafe {
                crate::sys::socket_io_now(fd, send, ptr, len)
            });
        }
        if send && self.sigpipe.is_none() {
            // A write to a pipe with no reader must be `EPIPE`, never a signal (held
            // before the fd's kind is known: an `Op::Write` would hold it too).
            self.sigpipe = Some(crate::sigpipe::hold());
        }
        match &mut self.driver {
            Driver::Poll(d) => {
                if d.is_tracked_blocking_file(fd) {
                    return crate::backend::poll::Direct::Declined;
                }
                let wait = if send {
                    crate::sys::Wait::Writable
                } else {
                    crate::sys::Wait::Readable
                };
                // SAFETY: the caller's contract.
                d.transfer_or_wait(fd, wait, len, waiting, waker, || unsafe {
                    crate::sys::stream_io_now(fd, send, ptr, len)
                })
            }
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => crate::backend::poll::Direct::Declined,
        }
    }

    /// [`fd_transfer_or_wait`](Self::fd_transfer_or_wait) on a socket, with the transfer
    /// `io` (a send, `send`, or a receive of at most `len` bytes on `fd`, without waiting:
    /// its result, `-EAGAIN` when it would block) given by the caller: the compat
    /// adapters' vectored sends.
    #[cfg(unix)]
    #[inline(always)]
    pub(crate) fn socket_io_or_wait(
        &mut self,
        fd: RawFd,
        send: bool,
        len: usize,
        waiting: Option<u64>,
        waker: &std::task::Waker,
        io: impl FnOnce() -> isize,
    ) -> crate::backend::poll::Direct {
        match &mut self.driver {
            Driver::Poll(d) => {
                let wait = if send {
                    crate::sys::Wait::Writable
                } else {
                    crate::sys::Wait::Readable
                };
                d.transfer_or_wait(fd, wait, len, waiting, waker, io)
            }
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => crate::backend::poll::Direct::Declined,
        }
    }

    /// The task that waits under `id` in [`fd_transfer_or_wait`] no longer does.
    ///
    /// [`fd_transfer_or_wait`]: Self::fd_transfer_or_wait
    #[cfg(unix)]
    pub(crate) fn withdraw(&mut self, fd: RawFd, send: bool, id: u64) {
        let wait = if send {
            crate::sys::Wait::Writable
        } else {
            crate::sys::Wait::Readable
        };
        match &mut self.driver {
            Driver::Poll(d) => d.withdraw(fd, wait, id),
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => {}
        }
    }

    /// A function that interrupts this loop's blocking wait from any thread (it stays
    /// valid, and harmless, after the loop is dropped).
    pub(crate) fn remote_waker(&self) -> Box<dyn Fn() + Send + Sync> {
        self.driver.waker()
    }

    /// The cross-thread inbox of this loop's parked completions (see `park.rs`).
    pub(crate) fn park_inbox(&self) -> &Arc<ParkInbox> {
        &self.core.parked
    }

    /// [`add`](Self::add) of `c`, whose operation is a parked one (see `park.rs`), by the
    /// watcher that records it where wake-ups find it: it parks. (Added any other way, a
    /// parked operation is woken at once.)
    pub(crate) fn add_parked(&mut self, c: Pin<&mut Completion>) {
        self.core.parking = true;
        self.add(c);
        self.core.parking = false;
    }

    /// The ticket of `c` if it is parked in this loop (see `park.rs`).
    pub(crate) fn parked_ticket(&self, c: &Completion) -> Option<Ticket> {
        let (owner, ticket) = c.owner_ticket()?;
        (owner == self.core.id && self.core.parked_under(ticket).is_some()).then_some(ticket)
    }

    /// Whether the completion registered under `t` is still parked in this loop.
    pub(crate) fn is_parked(&self, t: Ticket) -> bool {
        self.core.parked_under(t).is_some()
    }

    /// Finish the completion parked under `t` now (its callback runs on the next tick),
    /// if it still is parked.
    pub(crate) fn unpark_now(&mut self, t: Ticket) {
        self.core.unpark(t);
    }

    /// A file now has number `fd`, and [`fd_closed`](Self::fd_closed) will be called
    /// before it is closed: the poll backend then trusts its registration.
    pub(crate) fn fd_opened(&mut self, fd: RawFd) {
        self.driver.fd_opened(fd);
    }

    /// `fd` (see [`fd_opened`](Self::fd_opened)) is about to be closed; operations still
    /// parked on it are cancelled.
    pub(crate) fn fd_closed(&mut self, fd: RawFd) {
        self.driver.fd_closed(&mut self.core, fd);
    }

    /// `fd` (see [`fd_opened`](Self::fd_opened)) stays open, but its close will no longer
    /// be reported here (its owner moved to another runtime): operations parked on it
    /// stay, and later ones refresh its registration again.
    pub(crate) fn fd_released(&mut self, fd: RawFd) {
        self.driver.fd_released(fd);
    }

    /// The loop's thread pool, started on first use.
    pub(crate) fn thread_pool(&mut self) -> &ThreadPool {
        self.core
            .pool
            .get_or_insert_with(|| ThreadPool::new(ThreadPoolOptions::default()))
    }

    /// Register a group of `count` receive buffers of `size` bytes each with this loop,
    /// for [`Op::RecvMulti`]: `count` a power of two up to
    /// [`MAX_GROUP_BUFFERS`](crate::MAX_GROUP_BUFFERS), `size` up to
    /// [`MAX_GROUP_BUFFER`](crate::MAX_GROUP_BUFFER) (`InvalidInput` otherwise). The memory
    /// is allocated now and owned by the loop, its operations and the leases of its
    /// buffers; on io_uring it becomes a provided-buffer ring (`IORING_REGISTER_PBUF_RING`).
    #[cfg(unix)]
    pub fn register_buffer_group(
        &mut self,
        count: u16,
        size: u32,
    ) -> io::Result<crate::buf_group::BufferGroup> {
        self.driver.register_buffer_group(count, size)
    }

    /// Stop: the current [`run`](Self::run) returns after the callbacks of this tick.
    pub fn stop(&mut self) {
        self.stopped = true;
    }

    /// Whether [`stop`](Self::stop) was called since the last `run` started.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The loop's monotonic time in milliseconds since it was created: cached once per
    /// tick while timers are pending (and by [`update_now`](Self::update_now)), read from
    /// the clock otherwise.
    pub fn now(&self) -> u64 {
        let ns = if self.core.now_stale {
            self.core.fresh_ns()
        } else {
            self.core.now_ns
        };
        ns / 1_000_000
    }

    /// Refresh the cached time now.
    pub fn update_now(&mut self) {
        self.core.update_now();
    }

    /// Add a prepared completion (see [`Completion::prep`]).
    ///
    /// # Panics
    /// If `c` is already Active.
    pub fn add(&mut self, c: Pin<&mut Completion>) {
        if let Some(owner) = c.owner() {
            let whose = if owner == self.core.id {
                "this"
            } else {
                "another"
            };
            panic!("Loop::add: the completion is already Active (in {whose} loop)");
        }
        self.assert_not_in_other_callback(&c, "Loop::add");
        // SAFETY: we never move out of the pinned completion; the loop keeps its address
        // and it cannot be freed while Active (its Drop aborts).
        let ptr = NonNull::from(unsafe { c.get_unchecked_mut() });
        // No link timeout from an earlier `add_with_timeout` (one `is_empty` check).
        self.core.links.forget(ptr);
        self.submit(ptr, false);
    }

    /// [`add`](Self::add) with a time limit: if the operation has not finished after
    /// `timeout`, it is cancelled and its callback gets an `ETIMEDOUT` error
    /// ([`io::ErrorKind::TimedOut`]). On io_uring one LINK_TIMEOUT SQE is linked to the
    /// operation (no user-space timer); on the poll backend the loop keeps a timer entry
    /// while the operation waits for its fd. The limit holds for operations that wait for
    /// a socket, pipe or other readiness; regular-file work on the thread pool (poll
    /// backend) finishes regardless. It is ignored for operations that never wait (timers,
    /// cancels, closes, shutdowns) and for [`Op::SendZc`]. A rearm keeps it.
    ///
    /// ```
    /// use std::pin::pin;
    /// use std::time::Duration;
    /// use xev::{Buffer, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};
    ///
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// a.set_nonblocking(true)?;
    /// let mut lp = Loop::new(Options::default())?;
    /// let mut c = pin!(Completion::new());
    /// let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
    /// c.as_mut().prep(Op::Read { fd, buf: Buffer::inline(8) }, |_, _, r| {
    ///     let OpResult::Read(Err(e)) = r else { panic!("{r:?}") };
    ///     assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::TimedOut);
    ///     CallbackAction::Disarm
    /// });
    /// lp.add_with_timeout(c.as_mut(), Duration::from_millis(5));
    /// lp.run(RunMode::UntilDone)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Panics
    /// If `c` is already Active.
    pub fn add_with_timeout(&mut self, c: Pin<&mut Completion>, timeout: Duration) {
        if let Some(owner) = c.owner() {
            self.assert_owns(owner, "Loop::add_with_timeout");
            panic!("Loop::add_with_timeout: the completion is already Active");
        }
        self.assert_not_in_other_callback(&c, "Loop::add_with_timeout");
        // SAFETY: as in `add`.
        let ptr = NonNull::from(unsafe { c.get_unchecked_mut() });
        self.core.links.set(ptr, timeout);
        self.submit(ptr, false);
    }

    /// Set `op` and `callback` on `c` and add it.
    ///
    /// ```
    /// use std::pin::pin;
    /// use xev::{Buffer, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};
    ///
    /// let mut lp = Loop::new(Options::default())?;
    /// let (r, w) = std::os::unix::net::UnixStream::pair()?;
    /// use std::io::Write;
    /// (&w).write_all(b"hello")?;
    /// use std::os::fd::AsRawFd;
    /// let mut c = pin!(Completion::new());
    /// lp.start(c.as_mut(), Op::Recv { fd: r.as_raw_fd(), buf: Buffer::inline(16) }, |_, c, res| {
    ///     let OpResult::Recv(Ok(n)) = res else { panic!("{res:?}") };
    ///     assert_eq!(&c.buffer().unwrap().as_slice()[..n], b"hello");
    ///     CallbackAction::Disarm
    /// });
    /// lp.run(RunMode::UntilDone)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start<F>(&mut self, mut c: Pin<&mut Completion>, op: Op, callback: F)
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        c.as_mut().prep(op, callback);
        self.add(c);
    }

    /// [`start`](Self::start) of an operation on a descriptor that stays open, and the
    /// same file, for as long as the operation is in flight (a watcher's), whose kind
    /// `kind` tells: asked only on the poll backend, which then skips its own per-operation
    /// `fstat` (see [`FdKind`](crate::completion::FdKind)).
    pub(crate) fn start_on_kind<F>(
        &mut self,
        mut c: Pin<&mut Completion>,
        op: Op,
        kind: impl FnOnce() -> crate::completion::FdKind,
        callback: F,
    ) where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        c.as_mut().prep(op, callback);
        if self.asks_fd_kind() {
            c.as_mut().set_fd_kind(kind());
        }
        self.add(c);
    }

    /// Whether the backend asks what a read's or write's descriptor is (the poll backend,
    /// which sends regular files to the thread pool); see
    /// [`start_on_kind`](Self::start_on_kind).
    pub(crate) fn asks_fd_kind(&self) -> bool {
        matches!(self.driver, Driver::Poll(_))
    }

    /// Start a timer on `c` that fires `ms` milliseconds from now (never earlier); 0 fires
    /// on the next tick and `u64::MAX` never fires. The callback receives
    /// `OpResult::Timer(Expiration)` or `OpResult::Timer(Canceled)`.
    pub fn timer<F>(&mut self, c: Pin<&mut Completion>, ms: u64, callback: F)
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        self.start(c, Op::Timer { ms }, callback);
    }

    /// Restart the timer `c` to fire `ms` from now with `callback`, whatever its state:
    /// an Active timer is moved (its old callback is not called), a Dead completion is
    /// started as by [`timer`](Self::timer). The callback fires once, with Expiration.
    ///
    /// Timers live in user space on every backend, so unlike libxev no second "cancel"
    /// completion is needed. If a cancel of this timer already reported `Ok` but the
    /// timer's `Canceled` callback has not run yet, the reset wins: the timer is armed
    /// again and its (new) callback fires once, with Expiration.
    ///
    /// The reset timer is a new operation: a [`CancelTarget`] taken before the reset (as
    /// one taken before a rearm) no longer names it, and cancels nothing.
    ///
    /// # Panics
    /// If `c` is Active with an operation other than a timer.
    pub fn timer_reset<F>(&mut self, c: Pin<&mut Completion>, ms: u64, callback: F)
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        match c.owner() {
            None => return self.timer(c, ms, callback),
            Some(owner) => self.assert_owns(owner, "Loop::timer_reset"),
        }
        // SAFETY: not moved out of; see `add`.
        let ptr = NonNull::from(unsafe { c.get_unchecked_mut() });
        let inner = Completion::raw(ptr);
        // SAFETY: Active in this loop (checked above), so live and in one of this loop's
        // queues; loop thread; a timer is never in the kernel or pool.
        let old = unsafe {
            assert!(
                matches!((*inner).op, Op::Timer { .. }),
                "Loop::timer_reset on an Active non-timer completion"
            );
            let found = match (*inner).phase {
                Phase::Timer => self.core.timers.remove(ptr, Inner::timer_slot(inner)),
                Phase::Ready => self.core.ready.remove(ptr),
                other => unreachable!("timer in phase {other:?}"),
            };
            assert!(
                found,
                "xev: an Active timer was missing from its loop's queue"
            );
            // A new arming, with a new ticket (`add_timer`).
            self.core.registry.remove((*inner).ticket);
            (*inner).op = Op::Timer { ms };
            Inner::set_deadline(inner, deadline_after(self.core.epoch, ms));
            std::mem::replace(&mut (*inner).callback, Callback::new(callback))
        };
        self.core.add_timer(ptr);
        // The old callback is dropped last, once the timer is queued again: its drop is
        // user code (its captures), and a panic in it used to unwind between the removal
        // and the re-queueing, leaving the completion Active in no queue (the reset timer
        // never fired, and dropping the completion aborted the process).
        drop(old);
    }

    /// Cancel `target`'s operation using `c`. The target's callback receives `Canceled`
    /// and `c`'s callback `OpResult::Cancel(Ok(()))`; if the target is not in flight,
    /// `c` gets `Err(CancelError::NotFound)` and the target is untouched.
    pub fn cancel<F>(&mut self, c: Pin<&mut Completion>, target: &Completion, callback: F)
    where
        F: FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static,
    {
        self.start(
            c,
            Op::Cancel {
                target: CancelTarget::of(target),
            },
            callback,
        );
    }

    /// Panic unless `owner` is this loop: a loop never acts on another loop's completion
    /// (it would sit in two loops' queues at once).
    fn assert_owns(&self, owner: LoopId, what: &str) {
        assert!(
            owner == self.core.id,
            "{what}: the completion is Active in another Loop; a loop only acts on its own \
             completions"
        );
    }

    /// Panic if `c` is inside its callback run by another loop. That loop's `invoke`
    /// reads the completion again when the callback returns, trusting that it cannot be
    /// freed meanwhile (its drop aborts in `Callback`); run here to the end it would be
    /// Dead, and its owner could free it inside the callback (a use-after-free:
    /// `reentry_and_fd_reuse.rs::a_completion_freed_in_its_callback_after_another_loop_ran_it`).
    fn assert_not_in_other_callback(&self, c: &Completion, what: &str) {
        if let Some(owner) = c.in_callback_of() {
            assert!(
                owner == self.core.id,
                "{what}: the completion is inside its callback on another Loop; only that \
                 loop may start it again from there"
            );
        }
    }

    /// Start (or restart, for `rearm`) an Active-to-be completion.
    fn submit(&mut self, c: NonNull<Completion>, rearm: bool) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is live (pinned by the caller or by Active-ness) and Dead; loop thread.
        unsafe {
            if let Op::Noop = (*inner).op {
                (*inner).phase = Phase::Dead;
                return;
            }
            // A timer gets its ticket where it is queued (`add_timer`).
            if !matches!((*inner).op, Op::Timer { .. }) {
                (*inner).ticket = self.core.registry.insert(c);
            }
            (*inner).owner = self.core.id;
            (*inner).phase = Phase::Ready; // placeholder until the backend places it
            let epoch = self.core.epoch;
            Inner::arm_word(inner, rearm, &mut self.core.scratch, |ms| {
                deadline_after(epoch, ms)
            });
            match (*inner).op {
                Op::Timer { .. } => self.core.add_timer(c),
                Op::Cancel { target } => self.start_cancel(c, target),
                // Parked: no backend; finished by a wake-up naming its ticket (park.rs).
                // Not added by its watcher, nobody would name it: a spurious wake-up now
                // (the watcher's callback then parks it again, recorded).
                Op::Poll { events, .. } if events.bits() & POLL_PARK != 0 => {
                    if self.core.parking {
                        (*inner).phase = Phase::Waiting
                    } else {
                        self.core.finish(c, PollEvents::IN.bits() as isize)
                    }
                }
                Op::Poll { events, .. } if !events.intersects(PollEvents::IN | PollEvents::OUT) => {
                    // Nothing to wait for: refuse rather than watch an fd for no event.
                    self.core.finish(c, -(libc::EINVAL as isize))
                }
                Op::Read { ref buf, .. }
                | Op::Pread { ref buf, .. }
                | Op::Recv { ref buf, .. }
                | Op::RecvMsg { ref buf, .. }
                    if buf.is_empty() =>
                {
                    // A read into no room can never fill anything: `Ok(0)` at once (the
                    // kernel would wait for data on an idle socket, or consume a datagram).
                    // No sender address either (not one left by an earlier recvmsg).
                    if let Some(sc) = Inner::scratch(inner) {
                        sc.msg.msg_namelen = 0;
                    }
                    self.core.finish(c, 0)
                }
                Op::Write { .. } | Op::Writev { .. } if self.sigpipe.is_none() => {
                    // A write to a pipe with no reader must be `EPIPE`, never a signal.
                    self.sigpipe = Some(crate::sigpipe::hold());
                    self.driver.start(&mut self.core, c, rearm)
                }
                _ => self.driver.start(&mut self.core, c, rearm),
            }
        }
    }

    fn start_cancel(&mut self, c: NonNull<Completion>, target: CancelTarget) {
        const ENOENT: isize = -(libc::ENOENT as isize);
        let Some((owner, ticket)) = target.0 else {
            return self.core.finish(c, ENOENT);
        };
        if owner != self.core.id {
            // Another loop's ticket would name an unrelated completion of this one.
            return self.core.finish(c, -(libc::EXDEV as isize));
        }
        let Some(t) = self.core.lookup(ticket) else {
            return self.core.finish(c, ENOENT);
        };
        if t == c {
            return self.core.finish(c, ENOENT);
        }
        let tin = Completion::raw(t);
        // SAFETY: `t` was found by its ticket (registry or timer run), hence Active and
        // live; we only read its phase and queue position, which only the loop thread
        // writes.
        let phase = unsafe { (*tin).phase };
        match phase {
            Phase::Timer => {
                // SAFETY: as above; it is in the timer queue.
                let slot = unsafe { Inner::timer_slot(tin) };
                let found = self.core.timers.remove(t, slot);
                assert!(
                    found,
                    "xev: an Active timer was missing from its loop's queue"
                );
                self.core.finish(t, -(libc::ECANCELED as isize));
                self.core.finish(c, 0);
            }
            Phase::Ready => self.core.finish(c, ENOENT),
            Phase::Pool => {
                // A job still queued can be withdrawn; one a worker has started cannot.
                let queued = self
                    .core
                    .pool
                    .as_ref()
                    .and_then(|p| p.cancel_raw(t.as_ptr().cast()));
                if let Some(job) = queued {
                    self.core.withdrawn(t, job);
                    self.core.finish(t, -(libc::ECANCELED as isize));
                    self.core.finish(c, 0);
                } else {
                    self.core.finish(c, -(libc::EALREADY as isize));
                }
            }
            Phase::Waiting if is_parked(t) => {
                self.core.finish(t, -(libc::ECANCELED as isize));
                self.core.finish(c, 0);
            }
            Phase::Kernel | Phase::Waiting => self.driver.cancel(&mut self.core, c, t),
            // Already being cancelled: this cancel would change nothing.
            Phase::Canceling => self.core.finish(c, ENOENT),
            Phase::Dead | Phase::Callback => self.core.finish(c, ENOENT),
        }
    }

    /// Cancel and drain every Active completion without calling back (see the type docs).
    /// The loop stays usable afterwards.
    ///
    /// Called from a callback, it takes effect when that callback returns, before any
    /// other callback runs: the calling callback is not called again (not even for the
    /// rest of a multishot batch), and its own completion, if it rearmed, is cancelled
    /// with the others. (Right away, it would free what the loop still holds for the
    /// running callback, and drop the callbacks of other completions while that one may
    /// be owned by one of them.)
    pub fn shutdown(&mut self) {
        if self.running {
            // Only a callback can call this while the loop runs.
            self.shutdown_deferred = true;
            return;
        }
        self.shutdown_now();
    }

    /// How many times the loop was shut down (see [`shutdown`](Self::shutdown)).
    pub(crate) fn shutdowns(&self) -> u64 {
        self.shutdowns
    }

    fn shutdown_now(&mut self) {
        self.shutdowns += 1;
        // Results already waiting.
        while let Some(c) = self.core.ready.pop() {
            // SAFETY: queued, so Active and live.
            let res = unsafe { Inner::res(Completion::raw(c)) };
            self.core.abandon(c, Some(res));
        }
        let timers = self.core.timers.drain();
        for c in timers {
            self.core.abandon(c, None);
        }
        // Parked completions are in no backend.
        let parked: Vec<_> = self
            .core
            .registry
            .iter()
            .filter(|&c| is_parked(c))
            .collect();
        for c in parked {
            self.core.abandon(c, None);
        }
        self.driver.shutdown(&mut self.core);
        // Pool jobs no worker has taken yet are withdrawn; only running ones are waited for.
        if let Some(pool) = self.core.pool.clone() {
            let queued: Vec<_> = self
                .core
                .registry
                .iter()
                // SAFETY: registered completions are live; loop thread.
                .filter(|c| unsafe { (*Completion::raw(*c)).phase } == Phase::Pool)
                .filter_map(|c| pool.cancel_raw(c.as_ptr().cast()).map(|job| (c, job)))
                .collect();
            for (c, job) in queued {
                self.core.withdrawn(c, job);
                self.core.abandon(c, None);
            }
        }
        while self.core.pool_inflight > 0 {
            self.core.collect_pool();
            while let Some(c) = self.core.ready.pop() {
                // SAFETY: queued, so Active and live; the worker is done with it.
                let res = unsafe { Inner::res(Completion::raw(c)) };
                self.core.abandon(c, Some(res));
            }
            if self.core.pool_inflight > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        debug_assert_eq!(self.core.registry.len(), 0);
        // Every completion is Dead now, so the callbacks may drop completions they own.
        drop(std::mem::take(&mut self.core.abandoned));
    }
}

/// Marks a completion Dead if its callback unwinds (see `Loop::invoke`).
struct DeadOnUnwind(NonNull<Completion>);

impl Drop for DeadOnUnwind {
    fn drop(&mut self) {
        let inner = Completion::raw(self.0);
        // SAFETY: only dropped while a callback of this completion unwinds out of
        // `invoke`; the completion cannot be freed during its callback (its drop aborts in
        // `Callback`, and no other loop may take it then: see `invoke`), and the loop no
        // longer references it (unregistered, in no queue), so it is live and only this
        // thread touches it. If the callback re-added it, its phase is no longer
        // `Callback` and it is left alone.
        unsafe {
            if (*inner).phase == Phase::Callback {
                (*inner).phase = Phase::Dead;
            }
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Never inside a callback (they borrow the loop).
        self.shutdown_now();
        if self.sigpipe == Some(true) {
            crate::sigpipe::release();
        }
    }
}

impl fmt::Debug for Loop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loop")
            .field("backend", &self.backend)
            .field("active", &self.active())
            .field("timers", &self.core.timers.len())
            .field("stopped", &self.stopped)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The yield happens only while I/O is awaited, and only when the look found
    /// nothing: a loop that waits only for a wake-up from another thread blocks at once;
    /// with a completion Active and nothing come in, it yields once per block; a look
    /// that took a wake-up does not yield.
    #[test]
    fn with_yield_before_block_a_loop_yields_only_while_io_is_awaited() {
        for b in Backend::available() {
            let mut lp = yielding_loop(b);
            let wake_later = |lp: &Loop| {
                let wake = lp.remote_waker();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    wake();
                })
            };
            // Nothing Active: a blocking turn, ended by the wake-up, never yields.
            let t = wake_later(&lp);
            lp.turn(true, Some(Duration::from_secs(5)), true).unwrap();
            t.join().unwrap();
            assert_eq!(lp.yields, 0, "{b:?}: yielded with no I/O awaited");
            // An Active completion (a timer far off): the look finds nothing, so the
            // tick yields once, then blocks until the wake-up.
            let mut c = Box::pin(Completion::new());
            lp.timer(c.as_mut(), 10_000, |_, _, _| CallbackAction::Disarm);
            lp.tick(false).unwrap(); // submit it
            let before = lp.yields;
            let t = wake_later(&lp);
            lp.tick(true).unwrap();
            t.join().unwrap();
            assert_eq!(lp.yields - before, 1, "{b:?}: one yield per block");
            // A wake-up already there: the look takes it, no yield.
            let before = lp.yields;
            (lp.remote_waker())();
            lp.tick(true).unwrap();
            assert_eq!(
                lp.yields, before,
                "{b:?}: yielded after the look took a wake-up"
            );
            lp.shutdown();
        }
    }

    /// Every available backend, with and without `yield_before_block`.
    fn backends_and_yield() -> impl Iterator<Item = (Backend, bool)> {
        Backend::available().flat_map(|b| [(b, false), (b, true)])
    }

    fn yielding_loop(b: Backend) -> Loop {
        Loop::new(Options {
            backend: Some(b),
            yield_before_block: true,
            ..Options::default()
        })
        .unwrap()
    }

    /// A wake-up that arrived before the tick is taken by the look without blocking
    /// (the eventfd's edge, `polling`'s notify, io_uring's wake CQE): that look must end
    /// the tick, or the blocking wait after the yield sleeps through it (here: until the
    /// 10 s timer). Both ways in: the remote waker (the async runtime's task wake-ups,
    /// the park inbox's) and the thread pool's sink.
    #[test]
    fn with_yield_before_block_a_wake_up_taken_by_the_look_ends_the_tick() {
        for b in Backend::available() {
            let mut c = Box::pin(Completion::new());
            let mut lp = yielding_loop(b);
            lp.timer(c.as_mut(), 10_000, |_, _, _| CallbackAction::Disarm);
            type Wake = Box<dyn Fn() + Send + Sync>;
            let wakers: [(&str, Wake); 2] = [
                ("remote waker", lp.remote_waker()),
                ("pool sink", {
                    let sink = lp.core.sink.clone();
                    Box::new(move || (sink.wake)())
                }),
            ];
            for (what, wake) in &wakers {
                for round in 0..3 {
                    wake();
                    let start = Instant::now();
                    assert_eq!(lp.tick(true).unwrap(), 0, "{b:?}: nothing was due");
                    assert!(
                        start.elapsed() < Duration::from_secs(5),
                        "{b:?}: {what}, round {round}: the wake-up was lost"
                    );
                }
            }
            // With nothing pending, the tick blocks again (until the wake below).
            let wake = lp.remote_waker();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                wake();
            });
            let start = Instant::now();
            lp.tick(true).unwrap();
            t.join().unwrap();
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(40) && waited < Duration::from_secs(5),
                "{b:?}: the idle tick waited {waited:?}"
            );
            lp.shutdown();
        }
    }

    /// With `yield_before_block`, a timer still fires at its deadline, not a yield
    /// earlier or later, and a result that is already there runs in the tick that
    /// looks for it.
    #[test]
    fn with_yield_before_block_timers_and_ready_results_are_on_time() {
        for b in Backend::available() {
            let mut lp = yielding_loop(b);
            let mut c = Box::pin(Completion::new());
            let fired = Arc::new(AtomicBool::new(false));
            let f = fired.clone();
            lp.timer(c.as_mut(), 30, move |_, _, r| {
                assert!(
                    matches!(r, OpResult::Timer(crate::result::TimerTrigger::Expiration)),
                    "{r:?}"
                );
                f.store(true, Ordering::SeqCst);
                CallbackAction::Disarm
            });
            let start = Instant::now();
            lp.run(RunMode::UntilDone).unwrap();
            let waited = start.elapsed();
            assert!(fired.load(Ordering::SeqCst), "{b:?}");
            assert!(
                waited >= Duration::from_millis(30) && waited < Duration::from_secs(2),
                "{b:?}: a 30 ms timer fired after {waited:?}"
            );

            // A datagram already queued: the look before the yield finds it.
            let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
            let mut c = Box::pin(Completion::new());
            let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let g = got.clone();
            let op = Op::Recv {
                fd: crate::sys::fd::AsRawFd::as_raw_fd(&rx),
                buf: crate::op::Buffer::from(vec![0u8; 8]),
            };
            lp.start(c.as_mut(), op, move |_, _, r| {
                let OpResult::Recv(Ok(n)) = r else {
                    panic!("recv: {r:?}")
                };
                g.store(n, Ordering::SeqCst);
                CallbackAction::Disarm
            });
            let start = Instant::now();
            lp.run(RunMode::Once).unwrap();
            assert_eq!(got.load(Ordering::SeqCst), 1, "{b:?}");
            assert!(start.elapsed() < Duration::from_secs(2), "{b:?}");
            lp.shutdown();
        }
    }

    /// The wake-up used by the thread pool interrupts a loop blocked in the kernel, on
    /// every backend (io_uring: eventfd + multishot poll; epoll: registered eventfd).
    #[test]
    fn pool_wakeup_interrupts_a_blocked_wait() {
        for (b, yield_before_block) in backends_and_yield() {
            let mut c = Box::pin(Completion::new());
            let mut lp = Loop::new(Options {
                backend: Some(b),
                yield_before_block,
                ..Options::default()
            })
            .unwrap();
            lp.timer(c.as_mut(), 10_000, |_, _, _| CallbackAction::Disarm);
            for _ in 0..3 {
                let sink = lp.core.sink.clone();
                let waker = std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(30));
                    (sink.wake)();
                });
                let start = Instant::now();
                let ran = lp.tick(true).unwrap();
                waker.join().unwrap();
                assert_eq!(ran, 0, "{b:?}: nothing was due");
                assert!(
                    start.elapsed() < Duration::from_secs(5),
                    "{b:?}: the wake-up did not interrupt the wait"
                );
            }
            lp.shutdown();
        }
    }

    /// The loop never drains its wake-up eventfd (its counter only grows): every one of
    /// many wake-ups still interrupts a blocked wait, and a stale count never makes a wait
    /// return at once (the wait is for the next edge, not for a readable counter: a
    /// level-triggered wait would spin through thousands of ticks here).
    #[test]
    fn undrained_wakeups_each_interrupt_once_and_never_spin() {
        for (b, yield_before_block) in backends_and_yield() {
            let mut c = Box::pin(Completion::new());
            let mut lp = Loop::new(Options {
                backend: Some(b),
                yield_before_block,
                ..Options::default()
            })
            .unwrap();
            lp.timer(c.as_mut(), 10_000, |_, _, _| CallbackAction::Disarm);
            // Many wake-ups while the loop is not waiting coalesce.
            for _ in 0..1000 {
                (lp.core.sink.wake)();
            }
            let start = Instant::now();
            for round in 0..20 {
                let sink = lp.core.sink.clone();
                let sent = Arc::new(AtomicBool::new(false));
                let sent2 = sent.clone();
                let delay = Duration::from_millis(if round % 5 == 0 { 30 } else { 1 });
                let waker = std::thread::spawn(move || {
                    std::thread::sleep(delay);
                    // Flag first: a tick that sees it set has its wake-up now or soon.
                    sent2.store(true, Ordering::SeqCst);
                    (sink.wake)();
                });
                // A signal may end a wait early too (EINTR), so count the ticks rather
                // than time one of them.
                let mut ticks = 0;
                while !sent.load(Ordering::SeqCst) {
                    assert_eq!(lp.tick(true).unwrap(), 0, "{b:?}: nothing was due");
                    ticks += 1;
                    assert!(ticks <= 5, "{b:?}: round {round}: the wait spins");
                }
                waker.join().unwrap();
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{b:?}: a wake-up did not interrupt its wait"
            );
            lp.shutdown();
        }
    }

    /// A parked completion (`park.rs`) reaches no backend, is finished by a wake-up naming
    /// its ticket (from another thread, interrupting a blocked wait), ignores tickets of
    /// its earlier registrations and made-up ones, can be cancelled, and is abandoned
    /// by a shutdown.
    #[test]
    fn parked_completions_wake_by_ticket_only() {
        for b in Backend::available() {
            let mut lp = Loop::new(Options {
                backend: Some(b),
                ..Options::default()
            })
            .unwrap();
            let parked = || Op::Poll {
                fd: crate::sys::fd::NO_FD,
                events: PollEvents::from_bits_internal(PollEvents::IN.bits() | POLL_PARK),
            };
            let hits = std::rc::Rc::new(std::cell::Cell::new(0));
            let h = hits.clone();
            let mut c = Box::pin(Completion::new());
            c.as_mut().prep(parked(), move |_, _, r| {
                assert!(
                    matches!(r, OpResult::Poll(Ok(e)) if e == PollEvents::IN),
                    "{r:?}"
                );
                h.set(h.get() + 1);
                CallbackAction::Disarm
            });
            lp.add_parked(c.as_mut());
            lp.run(RunMode::NoWait).unwrap();
            let t1 = lp.parked_ticket(&c).expect("parked");
            assert_eq!((hits.get(), lp.active()), (0, 1), "{b:?}");
            // A made-up ticket finds nothing.
            lp.park_inbox().unpark(Ticket { slot: 999, gen: 7 });
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(hits.get(), 0, "{b:?}");
            // From another thread, while the loop blocks.
            let inbox = lp.park_inbox().clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                inbox.unpark(t1)
            });
            lp.run(RunMode::Once).unwrap();
            assert!(
                t.join().unwrap(),
                "{b:?}: the first hand-off writes the wake fd"
            );
            assert_eq!((hits.get(), lp.active()), (1, 0), "{b:?}");
            // Parked again: the old ticket no longer names it.
            lp.add_parked(c.as_mut());
            let t2 = lp.parked_ticket(&c).expect("parked");
            assert_ne!(t1, t2);
            lp.park_inbox().unpark(t1);
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!((hits.get(), lp.active()), (1, 1), "{b:?}: stale ticket");
            assert!(lp.is_parked(t2) && !lp.is_parked(t1));
            lp.unpark_now(t2);
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!((hits.get(), lp.active()), (2, 0), "{b:?}");
            // Cancelled: Canceled, and a late wake-up finds nothing.
            let h = hits.clone();
            c.as_mut().prep(parked(), move |_, _, r| {
                assert!(
                    matches!(r, OpResult::Poll(Err(crate::Error::Canceled))),
                    "{r:?}"
                );
                h.set(h.get() + 10);
                CallbackAction::Disarm
            });
            lp.add_parked(c.as_mut());
            let t3 = lp.parked_ticket(&c).expect("parked");
            let mut cancel = Box::pin(Completion::new());
            lp.cancel(cancel.as_mut(), &c, |_, _, r| {
                assert!(matches!(r, OpResult::Cancel(Ok(()))), "{r:?}");
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
            assert_eq!(hits.get(), 12, "{b:?}");
            lp.park_inbox().unpark(t3);
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(hits.get(), 12, "{b:?}");
            // Added by anything but its watcher, a parked operation is woken at once
            // (nothing records it where a wake-up would find it).
            let h = hits.clone();
            c.as_mut().prep(parked(), move |_, _, r| {
                assert!(matches!(r, OpResult::Poll(Ok(e)) if e == PollEvents::IN));
                h.set(h.get() + 100);
                CallbackAction::Disarm
            });
            lp.add(c.as_mut());
            assert!(lp.parked_ticket(&c).is_none(), "{b:?}");
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!((hits.get(), lp.active()), (112, 0), "{b:?}");
            // Shutdown abandons a parked completion (its callback is dropped, not run).
            c.as_mut().prep(parked(), |_, _, _| {
                panic!("an abandoned completion is not called")
            });
            lp.add_parked(c.as_mut());
            lp.unpark_now(lp.parked_ticket(&c).unwrap());
            lp.shutdown();
            assert_eq!(lp.active(), 0);
            assert_eq!(c.state(), crate::CompletionState::Dead);
        }
    }

    /// The loop's table of time limits holds only Active (or rearmed) completions: an
    /// entry goes when the callback disarms, when `add` re-adds without a limit, and when
    /// a shutdown abandons the operation; a rearm keeps it.
    #[test]
    #[cfg(unix)]
    fn link_timeout_entries_end_with_their_operation() {
        use std::os::fd::AsRawFd;
        for b in Backend::available() {
            let mut lp = Loop::new(Options {
                backend: Some(b),
                ..Options::default()
            })
            .unwrap();
            let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
            a.set_nonblocking(true).unwrap();
            let recv = || Op::Recv {
                fd: a.as_raw_fd(),
                buf: crate::Buffer::inline(8),
            };
            let mut c = Box::pin(Completion::new());
            // Disarm after two rearms: the entry lives until then.
            let n = std::rc::Rc::new(std::cell::Cell::new(0));
            let m = n.clone();
            c.as_mut().prep(recv(), move |lp, _, _| {
                m.set(m.get() + 1);
                assert_eq!(lp.core.links.len(), 1, "kept across the callback");
                match m.get() {
                    3 => CallbackAction::Disarm,
                    _ => CallbackAction::Rearm,
                }
            });
            lp.add_with_timeout(c.as_mut(), Duration::from_millis(1));
            assert_eq!(lp.core.links.len(), 1);
            lp.run(RunMode::UntilDone).unwrap();
            assert_eq!((n.get(), lp.core.links.len()), (3, 0), "{b:?}");
            // A callback that re-adds its completion with `add`: no limit any more (the
            // recv then waits until cancelled, well past the 1 ms).
            let k = std::rc::Rc::new(std::cell::Cell::new(0));
            let j = k.clone();
            c.as_mut().prep(recv(), move |lp, c, r| {
                j.set(j.get() + 1);
                if j.get() == 1 {
                    lp.add(c);
                    assert_eq!(lp.core.links.len(), 0, "add clears the limit");
                } else {
                    assert!(matches!(r, OpResult::Recv(Err(crate::ReadError::Canceled))));
                }
                CallbackAction::Disarm
            });
            lp.add_with_timeout(c.as_mut(), Duration::from_millis(1));
            while k.get() == 0 {
                lp.run(RunMode::Once).unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(k.get(), 1, "{b:?}: no limit after `add`");
            let mut cancel = Box::pin(Completion::new());
            lp.cancel(cancel.as_mut(), &c, |_, _, _| CallbackAction::Disarm);
            lp.run(RunMode::UntilDone).unwrap();
            assert_eq!((k.get(), lp.core.links.len()), (2, 0), "{b:?}");
            // An operation that takes no limit (a timer) gets no entry.
            let mut t = Box::pin(Completion::new());
            t.as_mut()
                .prep(Op::Timer { ms: 1 }, |_, _, _| CallbackAction::Disarm);
            lp.add_with_timeout(t.as_mut(), Duration::from_millis(1));
            assert_eq!(lp.core.links.len(), 0, "{b:?}");
            lp.run(RunMode::UntilDone).ok();
            // A shutdown abandons a limited operation and its entry.
            let mut d = Box::pin(Completion::new());
            d.as_mut().prep(recv(), |_, _, _| CallbackAction::Disarm);
            lp.add_with_timeout(d.as_mut(), Duration::from_secs(60));
            lp.run(RunMode::NoWait).unwrap();
            lp.shutdown();
            assert_eq!(lp.core.links.len(), 0, "{b:?}");
        }
    }

    /// Timers with deadlines chosen by the test (nanoseconds since the loop's epoch,
    /// in the past so one run fires them all): equal deadlines, which the clock never
    /// produces, can then be armed on purpose.
    mod timer_order {
        use super::*;
        use crate::result::{CancelError, TimerTrigger};
        use std::cell::RefCell;
        use std::collections::BTreeMap;
        use std::rc::Rc;

        type Log = Rc<RefCell<Vec<(usize, TimerTrigger)>>>;

        fn logging(
            log: &Log,
            id: usize,
        ) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
            let log = log.clone();
            move |_, _, r| {
                let OpResult::Timer(t) = r else {
                    panic!("timer {id} got {r:?}")
                };
                log.borrow_mut().push((id, t));
                CallbackAction::Disarm
            }
        }

        /// Arm `c` (Dead) as a timer with absolute deadline `ns`: what `Loop::submit`
        /// does for a timer, with the deadline given instead of computed.
        fn arm_at(lp: &mut Loop, c: Pin<&mut Completion>, ns: u64, log: &Log, id: usize) {
            assert_eq!(c.state(), crate::CompletionState::Dead);
            let mut c = c;
            c.as_mut().prep(Op::Timer { ms: 0 }, logging(log, id));
            // SAFETY: not moved out of; the test keeps it pinned until the loop is gone.
            let ptr = NonNull::from(unsafe { c.get_unchecked_mut() });
            let inner = Completion::raw(ptr);
            // SAFETY: Dead and live; loop thread; as in `submit`.
            unsafe {
                (*inner).owner = lp.core.id;
                (*inner).phase = Phase::Ready;
                Inner::arm_word(inner, false, &mut lp.core.scratch, |_| ns);
            }
            lp.core.add_timer(ptr);
        }

        fn expect_cancel(
            want_ok: bool,
        ) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
            move |_, _, r| {
                match (&r, want_ok) {
                    (OpResult::Cancel(Ok(())), true) => {}
                    (OpResult::Cancel(Err(CancelError::NotFound)), false) => {}
                    _ => panic!("cancel (expected ok: {want_ok}) got {r:?}"),
                }
                CallbackAction::Disarm
            }
        }

        /// Equal deadlines fire in arming order across the run and the heap, through the
        /// loop: tickets, cancels and expiry included.
        #[test]
        fn equal_deadlines_fire_in_arming_order_across_run_and_heap() {
            for b in Backend::available() {
                let mut lp = Loop::new(Options {
                    backend: Some(b),
                    ..Options::default()
                })
                .unwrap();
                let log: Log = Rc::default();
                let deadlines = [10u64, 50, 10, 50, 10, 30, 50, 30, 10, 50, 10];
                let mut cs: Vec<Pin<Box<Completion>>> = deadlines
                    .iter()
                    .map(|_| Box::pin(Completion::new()))
                    .collect();
                for (i, (c, &d)) in cs.iter_mut().zip(&deadlines).enumerate() {
                    arm_at(&mut lp, c.as_mut(), d, &log, i);
                }
                // Which side each went to: run tickets are tagged.
                let in_run: Vec<bool> = cs
                    .iter()
                    .map(|c| c.owner_ticket().unwrap().1.run_pos().is_some())
                    .collect();
                assert_eq!(
                    in_run,
                    [true, true, false, true, false, false, true, false, false, true, false]
                );
                assert_eq!(lp.active(), deadlines.len());
                assert_eq!(
                    lp.core.registry.iter().count(),
                    6,
                    "only heap timers take slots"
                );
                // Cancel one of each kind (run 3, heap 4) and check the rest's order.
                let mut k1 = Box::pin(Completion::new());
                let mut k2 = Box::pin(Completion::new());
                lp.cancel(k1.as_mut(), &cs[3], expect_cancel(true));
                lp.cancel(k2.as_mut(), &cs[4], expect_cancel(true));
                lp.run(RunMode::UntilDone).unwrap();
                use TimerTrigger::{Canceled as C, Expiration as E};
                assert_eq!(
                    *log.borrow(),
                    [
                        (3, C),
                        (4, C),
                        (0, E),
                        (2, E),
                        (8, E),
                        (10, E),
                        (5, E),
                        (7, E),
                        (1, E),
                        (6, E),
                        (9, E)
                    ],
                    "{b:?}"
                );
                assert_eq!(lp.active(), 0);
                drop(lp);
            }
        }

        /// Many timers armed, cancelled (by live and by stale tickets) and reset at random,
        /// in rounds; each round's callbacks must match a model: cancels first (in cancel
        /// order), then expirations in (deadline, arming) order. Stale tickets (of armings
        /// that fired, were cancelled or reset, whose run positions are long gone) always
        /// get NotFound and touch nothing.
        #[test]
        #[cfg_attr(miri, ignore)]
        fn random_arms_cancels_and_resets_match_a_model() {
            for b in Backend::available() {
                let mut lp = Loop::new(Options {
                    backend: Some(b),
                    ..Options::default()
                })
                .unwrap();
                let mut seed = 0x2545_f491_4f6c_dd1du64 ^ b as u64;
                let mut rnd = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed
                };
                const N: usize = 4000;
                let log: Log = Rc::default();
                let mut cs: Vec<Pin<Box<Completion>>> =
                    (0..N).map(|_| Box::pin(Completion::new())).collect();
                let mut stale: Vec<CancelTarget> = Vec::new();
                let mut armed = 0u64;
                let mut heap_arms = 0;
                // Controlled deadlines stay below 1 ms; reset timers get "now + 0 ms",
                // after all of them once the loop is 1 ms old.
                std::thread::sleep(Duration::from_millis(2));
                for round in 0..6 {
                    let mut cancels: Vec<Pin<Box<Completion>>> = Vec::new();
                    let mut model: BTreeMap<(u64, u64), usize> = BTreeMap::new();
                    let mut key_of: Vec<Option<(u64, u64)>> = vec![None; N];
                    let mut want: Vec<(usize, TimerTrigger)> = Vec::new();
                    let mut after: Vec<usize> = Vec::new();
                    // Every arming of this round: stale once the round has run.
                    let mut armings: Vec<CancelTarget> = Vec::new();
                    let mut clock = 0u64;
                    for _ in 0..3 * N {
                        let id = (rnd() % N as u64) as usize;
                        let live = cs[id].state() == crate::CompletionState::Active;
                        match rnd() % 10 {
                            0..=4 if !live => {
                                clock += rnd() % 2;
                                let d = if rnd() % 6 == 0 {
                                    clock.saturating_sub(rnd() % 40)
                                } else {
                                    clock + rnd() % 2
                                };
                                arm_at(&mut lp, cs[id].as_mut(), d, &log, id);
                                let t = cs[id].owner_ticket().unwrap().1;
                                heap_arms += t.run_pos().is_none() as u32;
                                armings.push(CancelTarget::of(&cs[id]));
                                armed += 1;
                                model.insert((d, armed), id);
                                key_of[id] = Some((d, armed));
                            }
                            5 if live && key_of[id].is_some() => {
                                stale.push(CancelTarget::of(&cs[id]));
                                let mut k = Box::pin(Completion::new());
                                lp.cancel(k.as_mut(), &cs[id], expect_cancel(true));
                                cancels.push(k);
                                model.remove(&key_of[id].take().unwrap());
                                want.push((id, TimerTrigger::Canceled));
                            }
                            6 if live && key_of[id].is_some() => {
                                stale.push(CancelTarget::of(&cs[id]));
                                lp.timer_reset(cs[id].as_mut(), 0, logging(&log, id));
                                model.remove(&key_of[id].take().unwrap());
                                after.push(id);
                            }
                            7 if !stale.is_empty() => {
                                let target = stale[(rnd() % stale.len() as u64) as usize];
                                let mut k = Box::pin(Completion::new());
                                lp.start(k.as_mut(), Op::Cancel { target }, expect_cancel(false));
                                cancels.push(k);
                            }
                            _ => {}
                        }
                    }
                    assert_eq!(
                        lp.active(),
                        model.len() + after.len() + want.len() + cancels.len(),
                        "{b:?} round {round}: Loop::active counts every Active completion"
                    );
                    want.extend(model.values().map(|&id| (id, TimerTrigger::Expiration)));
                    want.extend(after.iter().map(|&id| (id, TimerTrigger::Expiration)));
                    lp.run(RunMode::UntilDone).unwrap();
                    assert_eq!(lp.active(), 0);
                    let got = std::mem::take(&mut *log.borrow_mut());
                    assert_eq!(got.len(), want.len(), "{b:?} round {round}");
                    assert!(got == want, "{b:?} round {round}: callbacks out of order");
                    stale.extend(armings);
                    if stale.len() > 4 * N {
                        stale.drain(..2 * N);
                    }
                }
                assert!(heap_arms > 500, "the heap path was exercised ({heap_arms})");
                drop(lp);
            }
        }
    }
}
