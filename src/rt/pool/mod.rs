//! [`Pool`]: thread-per-core. `n` worker threads, each running its own [`Loop`](crate::Loop)
//! and single-threaded executor (a [`Runtime`](crate::rt::Runtime)), optionally pinned to a
//! CPU; tasks never move between workers.
//!
//! **Shape.** Like glommio's and monoio's executor pools rather than tokio's work-stealing
//! runtime: [`Pool::spawn`] takes a `Send + 'static` *closure* that builds the future on the
//! worker it is sent to, so the future itself need not be `Send` (it may hold `Rc`s, xev
//! sockets, ...); only the closure and the output cross threads. Workers are chosen round
//! robin, or named with [`Pool::spawn_on`]. The returned [`PoolJoinHandle`] is `Send`, a
//! future (await it on any worker, in [`xev::block_on`](crate::block_on), on any executor)
//! and [`join`](PoolJoinHandle::join)s blocking.
//!
//! **Submission.** Each worker has an inbox (a mutex-protected queue of jobs) and an
//! [`AtomicWaker`] holding the waker of the worker's main future, which drains the inbox.
//! A spawn pushes the job and wakes that waker if one is stored: that is the runtime's
//! remote wake path (a hand-off queue plus one write to the loop's wake fd, skipped while a
//! wake-up is already pending). While the worker is busy its waker has been taken, so
//! further spawns are a lock and a push: no system call, no busy loop.
//!
//! **Shutdown.** [`Pool::shutdown`] (or dropping the pool) closes every inbox, wakes the
//! workers and joins their threads. Each worker then leaves its `block_on` and drops its
//! runtime, which cancels the tasks still pending there (their handles resolve to
//! [`JoinError::Cancelled`]); queued jobs that never
//! started resolve the same way. A task that panics only fails its own handle: the worker
//! keeps running.
//!
//! ```
//! use std::rc::Rc;
//!
//! let pool = xev::rt::Builder::new().threads(2).build_pool()?;
//! let handles: Vec<_> = (0..pool.threads())
//!     .map(|i| pool.spawn_on(i, move || async move {
//!         let local = Rc::new(i); // the future need not be Send
//!         xev::time::sleep(std::time::Duration::from_millis(1)).await;
//!         (*local, xev::rt::Pool::worker_index())
//!     }))
//!     .collect();
//! for (i, h) in handles.into_iter().enumerate() {
//!     assert_eq!(h.join().unwrap(), (i, Some(i)));
//! }
//! pool.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! **`#[xev::main(threads = N)]`** builds a pool of `N` workers and runs `main`'s body
//! on worker 0 ([`Pool::block_on`]), blocking the calling thread until it returns; the
//! body need not be `Send` (its output must be), and [`PoolHandle::current`] reaches
//! the other workers from it:
//!
//! ```
//! #[xev::main(threads = 2)]
//! async fn main() {
//!     let pool = xev::rt::PoolHandle::current().expect("main runs on worker 0");
//!     assert_eq!(xev::rt::Pool::worker_index(), Some(0));
//!     let on_1 = pool.spawn_on(1, || async { xev::rt::Pool::worker_index() });
//!     assert_eq!(on_1.await.unwrap(), Some(1));
//! }
//! ```

mod affinity;
mod join;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread;

use atomic_waker::AtomicWaker;

pub use join::PoolJoinHandle;
use join::{Completer, JoinShared};

use super::runtime::Builder;
use crate::rt::JoinError;

/// A job for a worker: builds and spawns one task there.
type Job = Box<dyn FnOnce() + Send>;

/// Where the pool's workers are pinned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Pinning {
    /// Not pinned (the default).
    #[default]
    None,
    /// Worker `i` on the `i`-th CPU this process may use (wrapping around).
    Auto,
    /// Worker `i` on `cores[i % cores.len()]`.
    Cores(Vec<usize>),
}

/// Ids telling pools apart (for the thread-local "which worker am I").
static NEXT_POOL_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// On a worker thread: its pool's handle and its index.
    static WORKER: RefCell<Option<(PoolHandle, usize)>> = const { RefCell::new(None) };
}

/// The worker index of this thread in the pool `pool_id`, if it is one of its workers.
fn current_worker_of(pool_id: usize) -> Option<usize> {
    WORKER
        .try_with(|w| match &*w.borrow() {
            Some((h, i)) if h.shared.id == pool_id => Some(*i),
            _ => None,
        })
        .ok()
        .flatten()
}

struct Inbox {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// One worker's shared half.
struct Worker {
    inbox: Mutex<Inbox>,
    /// The waker of the worker's main future (taken by the first wake).
    waker: AtomicWaker,
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        // Jobs are only moved under the lock, never run: it cannot be left inconsistent.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `job`, waking the worker; gives it back if the worker is closed.
    fn push(&self, job: Job) -> Result<(), Job> {
        {
            let mut inbox = self.lock();
            if inbox.closed {
                return Err(job);
            }
            inbox.jobs.push_back(job);
        }
        self.waker.wake();
        Ok(())
    }

    /// Close the inbox; the jobs that never started are returned (to drop unlocked).
    fn close(&self) -> VecDeque<Job> {
        let jobs = {
            let mut inbox = self.lock();
            inbox.closed = true;
            std::mem::take(&mut inbox.jobs)
        };
        self.waker.wake();
        jobs
    }

    /// The worker's main future: run the jobs that arrive until the inbox closes.
    fn poll_jobs(&self, cx: &mut Context<'_>, batch: &mut VecDeque<Job>) -> Poll<()> {
        // Register first, then look: a push after the look finds the waker and wakes us.
        self.waker.register(cx.waker());
        let closed = {
            let mut inbox = self.lock();
            std::mem::swap(&mut inbox.jobs, batch);
            inbox.closed
        };
        if closed {
            drop_jobs(std::mem::take(batch));
            return Poll::Ready(());
        }
        while let Some(job) = batch.pop_front() {
            // A panic of a job (a panicking destructor of what an aborted job's closure
            // captured: `Completer::build` drops it unrun) must not unwind through the
            // worker's main future: that would end the worker, and every task sent to
            // it later would wait forever. The job's handle resolves anyway (its
            // completer, dropped by the unwinding, stores `Cancelled`).
            let _ = catch_unwind(AssertUnwindSafe(job));
        }
        Poll::Pending
    }
}

/// Drop jobs that never ran (their handles resolve to `Cancelled`), each on its own: a
/// panicking destructor of one closure's captures neither stops the others being dropped
/// nor unwinds into the pool's shutdown (which must still close and join every worker).
fn drop_jobs(jobs: VecDeque<Job>) {
    for job in jobs {
        let _ = catch_unwind(AssertUnwindSafe(move || drop(job)));
    }
}

struct Shared {
    id: usize,
    workers: Box<[Worker]>,
    next: AtomicUsize,
}

/// A cloneable, `Send + Sync` handle to a [`Pool`]: it spawns tasks, but only the
/// `Pool` itself shuts the workers down. Spawning through a handle after the pool shut
/// down gives handles that resolve to [`JoinError::Cancelled`].
///
/// Inside a task on a worker, [`PoolHandle::current`] gives the handle of its pool:
///
/// ```
/// let pool = xev::rt::Pool::new(2)?;
/// let h = pool.spawn_on(0, || async {
///     let pool = xev::rt::PoolHandle::current().expect("on a worker");
///     // Start a task on worker 1 and await it here, on worker 0.
///     pool.spawn_on(1, || async { xev::rt::Pool::worker_index() }).await.unwrap()
/// });
/// assert_eq!(h.join().unwrap(), Some(1));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct PoolHandle {
    shared: Arc<Shared>,
}

impl PoolHandle {
    /// The handle of the pool whose worker this thread is, or `None` off the workers.
    pub fn current() -> Option<PoolHandle> {
        WORKER
            .try_with(|w| w.borrow().as_ref().map(|(h, _)| h.clone()))
            .ok()
            .flatten()
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.shared.workers.len()
    }

    /// Build a task with `f` on the next worker (round robin) and run it there.
    ///
    /// `f` runs on the worker, so the future it returns need not be `Send`. A panic of
    /// `f` or of the future fails the returned handle with
    /// [`JoinError::Panic`]; the worker keeps running.
    pub fn spawn<F, Fut>(&self, f: F) -> PoolJoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let n = self.shared.workers.len();
        let i = self.shared.next.fetch_add(1, Ordering::Relaxed) % n;
        self.spawn_on(i, f)
    }

    /// Like [`spawn`](Self::spawn), on worker `worker`.
    ///
    /// # Panics
    /// If `worker >= self.threads()`.
    pub fn spawn_on<F, Fut>(&self, worker: usize, f: F) -> PoolJoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        let n = self.shared.workers.len();
        assert!(
            worker < n,
            "spawn_on({worker}) on a pool of {n} workers (indices 0..{n})"
        );
        let shared = JoinShared::new();
        let completer = Completer::new(shared.clone());
        let job: Job = Box::new(move || {
            if let Some(task) = completer.build(f) {
                drop(crate::rt::spawn(task)); // detached: the completer reports
            }
        });
        // A refused job is dropped here: its completer stores `Cancelled`.
        let _ = self.shared.workers[worker].push(job);
        PoolJoinHandle::new(shared, (self.shared.id, worker))
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("threads", &self.threads())
            .finish()
    }
}

/// Thread-per-core: `n` worker threads, each with its own loop and single-threaded
/// executor; see the [module docs](self). Build one with [`Pool::new`] or
/// [`Builder::threads`] + [`Builder::build_pool`] (backend, ring size, CPU pinning).
///
/// Dropping the pool shuts it down like [`shutdown`](Self::shutdown).
pub struct Pool {
    handle: PoolHandle,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Pool {
    /// A pool of `n` workers with [`Builder`]'s defaults (not pinned).
    ///
    /// # Errors
    /// If `n` is 0, or a worker's runtime cannot be created (the first error is
    /// returned and the workers already started are stopped).
    pub fn new(n: usize) -> io::Result<Pool> {
        Builder::new().threads(n).build_pool()
    }

    /// Start `n` workers, each building its runtime from `builder`.
    pub(crate) fn start(builder: Builder, n: usize, pinning: Pinning) -> io::Result<Pool> {
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a pool needs at least one worker thread",
            ));
        }
        let cpus: Vec<usize> = match &pinning {
            Pinning::None => Vec::new(),
            Pinning::Auto => affinity::allowed_cpus(),
            Pinning::Cores(c) if c.is_empty() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "worker_cores needs at least one CPU",
                ))
            }
            Pinning::Cores(c) => c.clone(),
        };
        let shared = Arc::new(Shared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            workers: (0..n)
                .map(|_| Worker {
                    inbox: Mutex::new(Inbox {
                        jobs: VecDeque::new(),
                        closed: false,
                    }),
                    waker: AtomicWaker::new(),
                })
                .collect(),
            next: AtomicUsize::new(0),
        });
        let mut pool = Pool {
            handle: PoolHandle { shared },
            threads: Vec::with_capacity(n),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        for i in 0..n {
            let handle = pool.handle.clone();
            let builder = builder.clone();
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let ready = ready_tx.clone();
            let spawned = thread::Builder::new()
                .name(format!("xev-worker-{i}"))
                .spawn(move || worker_main(handle, i, builder, cpu, ready));
            match spawned {
                Ok(t) => pool.threads.push(t),
                Err(e) => return Err(e), // dropping `pool` stops the others
            }
        }
        drop(ready_tx);
        for _ in 0..n {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(io::Error::other("a pool worker exited while starting"));
                }
            }
        }
        Ok(pool)
    }

    /// The index of the worker this thread is (of any pool), or `None` off the workers.
    pub fn worker_index() -> Option<usize> {
        WORKER
            .try_with(|w| w.borrow().as_ref().map(|(_, i)| *i))
            .ok()
            .flatten()
    }

    /// A cloneable, `Send` handle that spawns on this pool.
    pub fn handle(&self) -> PoolHandle {
        self.handle.clone()
    }

    /// The number of workers.
    pub fn threads(&self) -> usize {
        self.handle.threads()
    }

    /// See [`PoolHandle::spawn`].
    pub fn spawn<F, Fut>(&self, f: F) -> PoolJoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// See [`PoolHandle::spawn_on`].
    ///
    /// # Panics
    /// If `worker >= self.threads()`.
    pub fn spawn_on<F, Fut>(&self, worker: usize, f: F) -> PoolJoinHandle<Fut::Output>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        self.handle.spawn_on(worker, f)
    }

    /// Build a future with `f` on worker 0, block this thread until it finishes and
    /// return its output: what `#[xev::main(threads = N)]` does with `main`'s body.
    ///
    /// # Panics
    /// With the future's own panic (resumed here), or if the pool shut down first.
    ///
    /// ```
    /// let pool = xev::rt::Pool::new(2)?;
    /// let n = pool.block_on(|| async {
    ///     let pool = xev::rt::PoolHandle::current().unwrap();
    ///     pool.spawn_on(1, || async { 20 }).await.unwrap() + 22
    /// });
    /// assert_eq!(n, 42);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn block_on<F, Fut>(&self, f: F) -> Fut::Output
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future + 'static,
        Fut::Output: Send + 'static,
    {
        match self.spawn_on(0, f).join() {
            Ok(v) => v,
            Err(JoinError::Panic(p)) => std::panic::resume_unwind(p),
            Err(JoinError::Cancelled) => panic!("xev::rt::Pool::block_on: the pool shut down"),
        }
    }

    /// Stop the workers and join their threads; see the [module docs](self). Tasks
    /// still pending are cancelled on their workers. Called from one of the pool's own
    /// workers, that worker's thread is not joined (it stops when its task returns).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for w in self.handle.shared.workers.iter() {
            drop_jobs(w.close()); // jobs never started: their handles resolve to Cancelled
        }
        let me = current_worker_of(self.handle.shared.id);
        for (i, t) in self.threads.drain(..).enumerate() {
            if Some(i) != me {
                // A worker's own panics are caught per task; a panic that escapes
                // (a destructor during shutdown) is already reported on stderr.
                let _ = t.join();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("threads", &self.threads())
            .finish()
    }
}

/// A worker thread: pin, build the runtime, report, then drain the inbox until closed.
fn worker_main(
    handle: PoolHandle,
    index: usize,
    builder: Builder,
    cpu: Option<usize>,
    ready: std::sync::mpsc::Sender<io::Result<()>>,
) {
    let rt = match cpu
        .map_or(Ok(()), affinity::pin_current)
        .and_then(|()| builder.build())
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    let shared = handle.shared.clone();
    WORKER.with(|w| *w.borrow_mut() = Some((handle, index)));
    let worker = &shared.workers[index];
    let mut batch = VecDeque::new();
    rt.block_on(poll_fn(|cx| worker.poll_jobs(cx, &mut batch)));
    // Cancel the tasks still pending while this thread still knows its pool.
    drop(rt);
    WORKER.with(|w| w.borrow_mut().take());
}
