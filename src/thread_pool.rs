//! A small thread pool for blocking work (regular-file I/O on the poll backend, and
//! later `spawn_blocking`).
//!
//! Workers are started lazily, one at a time, only when a job arrives and no worker is
//! idle, up to `max_threads`; a worker idle for `idle_timeout` exits. Jobs are plain
//! function pointers with a data pointer, so queuing a completion allocates nothing once
//! the queue has grown to its working size.

use crate::sys::fd::RawFd;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// Settings for a [`ThreadPool`].
#[derive(Debug, Clone)]
pub struct ThreadPoolOptions {
    /// Most worker threads alive at once (at least 1).
    pub max_threads: usize,
    /// How long an idle worker waits for work before it exits.
    pub idle_timeout: Duration,
    /// Stack size of each worker.
    pub stack_size: usize,
}

impl Default for ThreadPoolOptions {
    fn default() -> Self {
        let cores = thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        ThreadPoolOptions {
            max_threads: (cores * 4).clamp(4, 64),
            idle_timeout: Duration::from_secs(10),
            stack_size: 256 * 1024,
        }
    }
}

/// One unit of work: `run(data, ctx, fd)` on a worker thread.
pub(crate) struct RawJob {
    pub(crate) run: unsafe fn(*mut (), *const (), RawFd),
    pub(crate) data: *mut (),
    pub(crate) ctx: *const (),
    /// A descriptor the job carries for its creator (-1 if none).
    pub(crate) fd: RawFd,
}

// SAFETY: a RawJob is created by code that guarantees `data` may be used from the worker
// thread (the loop hands over a completion it will not touch until the job reports back).
unsafe impl Send for RawJob {}

enum Job {
    Raw(RawJob),
    Boxed(Box<dyn FnOnce() + Send>),
}

struct State {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    opts: ThreadPoolOptions,
}

/// A handle to a pool of worker threads; clones share the pool.
///
/// Worker threads block every asynchronous signal (all but SIGSEGV, SIGBUS, SIGFPE,
/// SIGILL, SIGTRAP and SIGSYS) for their whole life, so a process-directed signal is
/// never delivered to them: it goes to a thread that does not block it, or stays pending
/// for a signalfd (`xev::signal::Signals`). Jobs run with that mask.
///
/// If the system refuses a new thread while no worker is alive (thread limits, memory),
/// queued jobs run on the thread that queues one, before `execute` (or the operation
/// that needed the pool) returns: slower, and a job that waits for that thread's loop
/// would wait forever, but no job is lost.
///
/// ```
/// let pool = xev::ThreadPool::new(xev::ThreadPoolOptions::default());
/// let (tx, rx) = std::sync::mpsc::channel();
/// pool.execute(move || tx.send(6 * 7).unwrap());
/// assert_eq!(rx.recv().unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct ThreadPool {
    shared: Arc<Shared>,
}

impl ThreadPool {
    /// A pool with no threads yet; they start when work arrives.
    pub fn new(mut opts: ThreadPoolOptions) -> ThreadPool {
        opts.max_threads = opts.max_threads.max(1);
        ThreadPool {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    jobs: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                }),
                cond: Condvar::new(),
                opts,
            }),
        }
    }

    /// Run `f` on a worker thread (allocates a box for `f`).
    pub fn execute(&self, f: impl FnOnce() + Send + 'static) {
        self.push(Job::Boxed(Box::new(f)));
    }

    /// Run a raw job on a worker thread; no allocation.
    pub(crate) fn execute_raw(&self, job: RawJob) {
        self.push(Job::Raw(job));
    }

    /// Remove a raw job that no worker has started yet and hand it back (`None`: a worker
    /// has it, or it already ran).
    pub(crate) fn cancel_raw(&self, data: *mut ()) -> Option<RawJob> {
        let mut st = self.lock();
        let pos = st
            .jobs
            .iter()
            .position(|j| matches!(j, Job::Raw(r) if r.data == data))?;
        match st.jobs.remove(pos) {
            Some(Job::Raw(j)) => Some(j),
            _ => unreachable!("the position of a raw job"),
        }
    }

    /// Worker threads alive now.
    pub fn threads(&self) -> usize {
        self.lock().threads
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A worker never panics while holding the lock (jobs run unlocked), so poisoning
        // cannot leave the state inconsistent; recover the guard.
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        let mut st = self.lock();
        st.jobs.push_back(job);
        if st.idle > st.jobs.len() - 1 {
            drop(st);
            self.shared.cond.notify_one();
            return;
        }
        if st.threads < self.shared.opts.max_threads {
            st.threads += 1;
            drop(st);
            let shared = self.shared.clone();
            // The worker inherits the mask in force while it is created: every
            // asynchronous signal blocked, from its first instruction on.
            let mask = BlockAsyncSignals::new();
            let spawned = thread::Builder::new()
                .name("xev-pool".into())
                .stack_size(self.shared.opts.stack_size)
                .spawn(move || worker(shared));
            #[cfg_attr(not(unix), allow(clippy::drop_non_drop))]
            drop(mask);
            if spawned.is_err() {
                // Could not start a thread: the job stays queued for an existing worker.
                let mut st = self.lock();
                st.threads -= 1;
                if st.threads == 0 {
                    // Nobody will ever run it; run it here rather than lose it.
                    let jobs: Vec<Job> = st.jobs.drain(..).collect();
                    drop(st);
                    jobs.into_iter().for_each(run);
                }
            }
        } else {
            drop(st);
            self.shared.cond.notify_one();
        }
    }
}

/// Blocks every asynchronous signal in the calling thread until dropped (which restores
/// the previous mask), so that a thread created meanwhile starts with them blocked.
///
/// Pool threads must never take a process-directed signal (`kill(pid)`, Ctrl-C, a
/// service manager's SIGTERM): a thread that does not block it is where the kernel
/// delivers it, and its default action there would kill the process even though the
/// program receives that signal through a signalfd (`xev::signal::Signals`) on the
/// loop's thread. The synchronous
/// signals a faulting instruction raises in the thread itself (SIGSEGV, SIGBUS, SIGFPE,
/// SIGILL, SIGTRAP, SIGSYS) stay unblocked, so faults are reported as usual.
#[cfg(unix)]
struct BlockAsyncSignals {
    old: libc::sigset_t,
    restore: bool,
}

/// No signal masks to manage on this platform.
#[cfg(not(unix))]
struct BlockAsyncSignals;

#[cfg(not(unix))]
impl BlockAsyncSignals {
    fn new() -> BlockAsyncSignals {
        BlockAsyncSignals
    }
}

#[cfg(unix)]
impl BlockAsyncSignals {
    fn new() -> BlockAsyncSignals {
        // SAFETY: sigset_t is plain data; sigfillset/sigemptyset initialise it below.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` and `old` are valid sigset_t values we own; sigdelset of a valid
        // signal number cannot fail; pthread_sigmask only reads `set` and writes `old`.
        let r = unsafe {
            libc::sigfillset(&mut set);
            for sig in SYNCHRONOUS_SIGNALS {
                libc::sigdelset(&mut set, sig);
            }
            libc::sigemptyset(&mut old);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old)
        };
        BlockAsyncSignals {
            old,
            restore: r == 0,
        }
    }
}

#[cfg(unix)]
impl Drop for BlockAsyncSignals {
    fn drop(&mut self) {
        if self.restore {
            // SAFETY: `old` is the mask pthread_sigmask saved in `new`.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
        }
    }
}

/// Signals raised by a faulting instruction in the thread that executed it.
#[cfg(unix)]
const SYNCHRONOUS_SIGNALS: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

fn run(job: Job) {
    match job {
        // SAFETY: the creator of the RawJob guarantees `run(data)` is valid here.
        Job::Raw(j) => unsafe { (j.run)(j.data, j.ctx, j.fd) },
        Job::Boxed(f) => {
            // A panicking boxed job must not kill the worker while it is counted.
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
                drop_payload(payload);
            }
        }
    }
}

/// Drop a job's panic payload without letting a panic in its destructor (a payload
/// type whose `Drop` panics, `std::panic::panic_any(..)`) unwind out of the worker: the
/// worker would die still counted in `threads`, and with every worker gone that way the
/// jobs queued after it would never run. The payload of that second panic is dropped the
/// same way, and so on; a payload still panicking after a few rounds is forgotten (a leak
/// rather than an endless chain of panicking destructors).
fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    let mut payload = payload;
    for _ in 0..8 {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(p) => payload = p,
        }
    }
    std::mem::forget(payload);
}

fn worker(shared: Arc<Shared>) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            run(job);
            st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        let (guard, timeout) = shared
            .cond
            .wait_timeout(st, shared.opts.idle_timeout)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            break;
        }
    }
    st.threads -= 1;
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("ThreadPool")
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.jobs.len())
            .field("max_threads", &self.shared.opts.max_threads)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Instant;

    fn opts(max: usize, idle_ms: u64) -> ThreadPoolOptions {
        ThreadPoolOptions {
            max_threads: max,
            idle_timeout: Duration::from_millis(idle_ms),
            ..Default::default()
        }
    }

    #[test]
    fn lazy_start_runs_everything_and_stays_bounded() {
        let pool = ThreadPool::new(opts(3, 5_000));
        assert_eq!(pool.threads(), 0, "no thread before work");
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let (running, peak, tx) = (running.clone(), peak.clone(), tx.clone());
            pool.execute(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(2));
                running.fetch_sub(1, Ordering::SeqCst);
                tx.send(i).unwrap();
            });
        }
        let mut got: Vec<i32> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak concurrency {}",
            peak.load(Ordering::SeqCst)
        );
        assert!(pool.threads() <= 3);
    }

    #[test]
    fn idle_workers_exit() {
        let pool = ThreadPool::new(opts(2, 50));
        let (tx, rx) = mpsc::channel();
        pool.execute(move || tx.send(()).unwrap());
        rx.recv().unwrap();
        assert!(pool.threads() >= 1);
        let start = Instant::now();
        while pool.threads() > 0 {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "idle worker did not exit"
            );
            thread::sleep(Duration::from_millis(10));
        }
        // and the pool still works afterwards
        let (tx, rx) = mpsc::channel();
        pool.execute(move || tx.send(7).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
    }

    #[test]
    fn panicking_job_does_not_lose_the_worker() {
        let pool = ThreadPool::new(opts(1, 5_000));
        pool.execute(|| panic!("job panics (expected in this test)"));
        let (tx, rx) = mpsc::channel();
        pool.execute(move || tx.send(1).unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn workers_block_asynchronous_signals_only() {
        let pool = ThreadPool::new(opts(1, 5_000));
        let (tx, rx) = mpsc::channel();
        pool.execute(move || {
            // SAFETY: sigset_t is plain data for which all-zero is valid.
            let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
            // SAFETY: with a null new set, pthread_sigmask only writes the current mask
            // into `cur`.
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) };
            // SAFETY: `cur` is an initialised sigset_t.
            let blocked = |sig| unsafe { libc::sigismember(&cur, sig) } == 1;
            tx.send([
                blocked(libc::SIGUSR1),
                blocked(libc::SIGINT),
                blocked(libc::SIGTERM),
                blocked(libc::SIGCHLD),
                !blocked(libc::SIGSEGV),
                !blocked(libc::SIGBUS),
                !blocked(libc::SIGFPE),
                !blocked(libc::SIGILL),
            ])
            .unwrap();
        });
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(
            got, [true; 8],
            "SIGUSR1, INT, TERM, CHLD blocked; SEGV, BUS, FPE, ILL not"
        );
        // The spawning thread's own mask is restored.
        // SAFETY: as above.
        let mut cur: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur) };
        // SAFETY: `cur` is an initialised sigset_t.
        assert_eq!(unsafe { libc::sigismember(&cur, libc::SIGUSR2) }, 0);
    }

    #[test]
    fn raw_jobs_run() {
        unsafe fn bump(data: *mut (), _ctx: *const (), _fd: RawFd) {
            // SAFETY: `data` is the AtomicUsize below, alive until the count is seen.
            unsafe { (*(data as *const AtomicUsize)).fetch_add(1, Ordering::SeqCst) };
        }
        let pool = ThreadPool::new(opts(2, 5_000));
        let count = Box::leak(Box::new(AtomicUsize::new(0)));
        for _ in 0..10 {
            pool.execute_raw(RawJob {
                run: bump,
                data: (count as *const AtomicUsize).cast_mut().cast(),
                ctx: std::ptr::null(),
                fd: crate::sys::fd::NO_FD,
            });
        }
        let start = Instant::now();
        while count.load(Ordering::SeqCst) < 10 {
            assert!(start.elapsed() < Duration::from_secs(5));
            thread::yield_now();
        }
    }
}
