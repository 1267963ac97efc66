//! [`Runtime`] and its [`Builder`].

use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;

use super::executor::Executor;
use super::task::JoinHandle;
use crate::backend::Backend;
use crate::event_loop::{Loop, Options};
use crate::thread_pool::{ThreadPool, ThreadPoolOptions};

use super::pool::{Pinning, Pool};

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = xev::rt::Builder::new()
///     .backend(xev::Backend::default())
///     .entries(512)
///     .blocking_threads(4)
///     .build()?;
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    opts: Options,
    blocking_threads: Option<usize>,
    /// Worker count for [`build_pool`](Builder::build_pool).
    threads: Option<usize>,
    pinning: Pinning,
    /// Set by [`yield_before_block`](Builder::yield_before_block); else the
    /// per-kind default (on for a pool's workers).
    yield_before_block: Option<bool>,
}

impl Builder {
    /// The defaults: the best available backend, 256 ring entries, a lazily started pool.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Run on `backend` (building fails if it is not available here). Without this, the
    /// runtime runs on [`Backend::default()`]: the backend named by the `XEV_BACKEND`
    /// environment variable (`io_uring`, `epoll`, ...; an unknown or unavailable name
    /// makes [`build`](Self::build) fail with that error), else the best one available.
    pub fn backend(mut self, backend: Backend) -> Builder {
        self.opts.backend = Some(backend);
        self
    }

    /// io_uring submission-queue size, or the poll backend's event batch (1..=32768).
    pub fn entries(mut self, entries: u32) -> Builder {
        self.opts.entries = entries;
        self
    }

    /// Most threads of the pool behind [`spawn_blocking`](crate::spawn_blocking) and
    /// regular-file I/O on the poll backend (at least 1).
    pub fn blocking_threads(mut self, n: usize) -> Builder {
        self.blocking_threads = Some(n);
        self
    }

    /// io_uring only: a kernel thread polls the submission queue, sleeping after `idle`
    /// without work (see [`Options::sqpoll`]; it costs a core, and measured slower on
    /// 2 cores). The poll backend ignores it.
    ///
    /// ```
    /// let rt = xev::rt::Builder::new()
    ///     .sqpoll(std::time::Duration::from_millis(50))
    ///     .build()?;
    /// assert_eq!(rt.block_on(async { 2 }), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sqpoll(mut self, idle: std::time::Duration) -> Builder {
        self.opts.sqpoll = Some(idle);
        self
    }

    /// io_uring only: register the runtime's sockets and files in a fixed-file table
    /// (see [`Options::fixed_files`]; off by default, or on with
    /// `XEV_URING_FIXED_FILES=1`).
    pub fn fixed_files(mut self, on: bool) -> Builder {
        self.opts.fixed_files = on;
        self
    }

    /// Before a wait that would block while I/O is awaited, look once without blocking
    /// and, if nothing came in, yield the CPU once (see
    /// [`Options::yield_before_block`]). Default: on for the
    /// workers of [`build_pool`](Self::build_pool), off for [`build`](Self::build).
    /// Without this call, the environment variable `XEV_YIELD_BEFORE_BLOCK` sets the
    /// default of both: `1` on, `0` off.
    ///
    /// Measured on 2 cores (see the README): an http server on a 2-worker pool, with its
    /// clients on the same CPUs, served 1.39x–1.46x the requests with it (1.08x–1.18x
    /// tokio's multi-thread runtime, against 0.74x–0.85x without). Workers that wait
    /// only for each other (channels, no I/O) do not yield: when they did, a stream
    /// from one worker to another over an unbounded channel went half as fast.
    ///
    /// ```
    /// let pool = xev::rt::Builder::new()
    ///     .threads(2)
    ///     .yield_before_block(false)
    ///     .build_pool()?;
    /// assert_eq!(pool.spawn(|| async { 3 }).join().unwrap(), 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn yield_before_block(mut self, on: bool) -> Builder {
        self.yield_before_block = Some(on);
        self
    }

    /// Use an existing pool (shared with other loops) instead.
    pub fn thread_pool(mut self, pool: ThreadPool) -> Builder {
        self.opts.thread_pool = Some(pool);
        self
    }

    /// The number of worker threads of the [`Pool`] that [`build_pool`](Self::build_pool)
    /// starts (default: the number of CPUs this process may use). [`build`](Self::build)
    /// ignores it: a [`Runtime`] is one thread.
    pub fn threads(mut self, n: usize) -> Builder {
        self.threads = Some(n);
        self
    }

    /// Pin worker `i` of the pool to the `i`-th CPU this process may run on (wrapping
    /// around if there are more workers than CPUs). Linux only (`sched_setaffinity`);
    /// a documented no-op elsewhere. Only [`build_pool`](Self::build_pool) uses it.
    pub fn pin_workers(mut self, pin: bool) -> Builder {
        self.pinning = if pin { Pinning::Auto } else { Pinning::None };
        self
    }

    /// Pin worker `i` of the pool to CPU `cores[i % cores.len()]` (Linux only; a no-op
    /// elsewhere). [`build_pool`](Self::build_pool) fails if the list is empty or a CPU
    /// cannot be used (`EINVAL` from `sched_setaffinity`).
    pub fn worker_cores(mut self, cores: impl IntoIterator<Item = usize>) -> Builder {
        self.pinning = Pinning::Cores(cores.into_iter().collect());
        self
    }

    /// Start a thread-per-core [`Pool`]: [`threads`](Self::threads) workers, each with
    /// its own loop and executor built from these settings (backend, ring entries). With
    /// [`blocking_threads`](Self::blocking_threads), the workers share one blocking pool
    /// of that size.
    ///
    /// ```
    /// let pool = xev::rt::Builder::new()
    ///     .threads(2)
    ///     .pin_workers(true)
    ///     .build_pool()?;
    /// let h = pool.spawn(|| async { xev::rt::Pool::worker_index().unwrap() });
    /// assert!(h.join().unwrap() < 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    /// `threads(0)`, an empty core list, a CPU that cannot be pinned, or a runtime that
    /// cannot be created (bad backend...): the first error, after stopping any worker
    /// already started.
    pub fn build_pool(mut self) -> io::Result<Pool> {
        let n = self.threads.take().unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let pinning = std::mem::take(&mut self.pinning);
        // A pool's workers yield before they block unless told otherwise (here, or by
        // `XEV_YIELD_BEFORE_BLOCK=0`): each worker's `build` below keeps what is set here.
        self.yield_before_block.get_or_insert_with(|| {
            std::env::var_os("XEV_YIELD_BEFORE_BLOCK").is_none_or(|v| v != "0")
        });
        if let Some(m) = self.blocking_threads.take() {
            if m == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "blocking_threads must be at least 1",
                ));
            }
            self.opts.thread_pool = Some(ThreadPool::new(ThreadPoolOptions {
                max_threads: m,
                ..ThreadPoolOptions::default()
            }));
        }
        Pool::start(self, n, pinning)
    }

    /// Create the runtime: its loop is created now, its pool threads when first needed.
    pub fn build(self) -> io::Result<Runtime> {
        let mut opts = self.opts;
        if let Some(on) = self.yield_before_block {
            opts.yield_before_block = on;
        }
        if let Some(n) = self.blocking_threads {
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "blocking_threads must be at least 1",
                ));
            }
            opts.thread_pool = Some(ThreadPool::new(ThreadPoolOptions {
                max_threads: n,
                ..ThreadPoolOptions::default()
            }));
        }
        let lp = Loop::new(opts)?;
        Ok(Runtime {
            backend: lp.backend(),
            exec: Executor::new(lp),
        })
    }
}

/// A single-threaded async runtime: one [`Loop`], the tasks spawned on it, and the
/// futures of `xev::time`, `xev::net`, `xev::fs`, ... that run on it.
///
/// A runtime stays on the thread that created it (it is not `Send`). Tasks that are still
/// pending when [`block_on`](Self::block_on) returns keep their state and continue in the
/// next `block_on`; dropping the runtime drops them (cancelling their operations).
///
/// ```
/// let rt = xev::rt::Runtime::new()?;
/// let h = rt.spawn(async { "from a task" });
/// assert_eq!(rt.block_on(h).unwrap(), "from a task");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Runtime {
    exec: Rc<Executor>,
    /// The loop's backend, kept here so that asking needs no loop borrow (it works
    /// inside [`with_loop`](crate::rt::with_loop)).
    backend: Backend,
}

impl Runtime {
    /// A runtime with [`Builder`]'s defaults.
    pub fn new() -> io::Result<Runtime> {
        Builder::new().build()
    }

    /// The backend the loop runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Run `fut` to completion on this thread, driving the loop and every spawned task
    /// meanwhile.
    ///
    /// # Panics
    /// If called inside another runtime's `block_on` on this thread (await the future
    /// instead), or if `fut` panics.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.exec.block_on(fut)
    }

    /// Start a task on this runtime; it runs during `block_on`.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + 'static,
    {
        self.exec.spawn(fut)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.exec.shutdown();
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend())
            .finish()
    }
}
