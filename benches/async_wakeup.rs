//! Cross-thread wake-ups of a loop, after libxev's `src/bench/async1.zig` .. `async8.zig`
//! and `async_pummel_1.zig` .. `async_pummel_8.zig`. Two workloads, each with 1, 2, 4
//! and 8 worker threads:
//!
//! - `asyncN` (ping-pong): each of the N threads wakes the loop ("ping") and then blocks
//!   until the loop wakes it back ("pong"); the loop side, on each wake-up, pongs that
//!   thread. The figure is round trips per second, all threads together. libxev does
//!   1,000,000 round trips per thread; here a run does 200,000 in total (each of the N
//!   threads its share), because 1,000,000 per thread for every variant, thread count and
//!   round would take about 20 minutes on the 2-vCPU machine this was written on
//!   (`XEV_BENCH_ROUND_TRIPS=1000000` restores libxev's count). As in libxev, the loop
//!   side has one wake-up object per thread (libxev: one `xev.Async` per thread, whose
//!   wait callback notifies the thread back and rearms), so the loop knows whom to answer
//!   without any shared flag. The thread side is the same for every variant: after its
//!   ping it waits on a per-thread flag plus `std::thread::park` (a futex), and the loop
//!   side sets the flag and `unpark`s it, so only the loop side (and the ping call)
//!   differs between variants. (libxev runs a second xev loop on each thread instead.)
//! - `async_pummel_N`: N threads call notify on one shared wake-up object as fast as they
//!   can for a fixed time (200 ms; a fixed count, such as 1,000,000 notifies, is over in
//!   a few milliseconds when nearly all coalesce), while the loop side counts its wake-ups
//!   (callbacks, or returns from `notified().await`). Notifies made while a wake-up is
//!   already pending coalesce. When a thread is done it bumps a shared counter and
//!   notifies once more (counted in the notifies); the loop side stops at the first
//!   wake-up that sees every thread done. libxev stops at a fixed number of callbacks
//!   and reports callbacks/s; here the figure of merit is notifies/s (the notifying
//!   threads' throughput), with the wake-ups, wake-ups/s and the coalesced notifies
//!   beside it. A loop side that wakes up more often makes more notifies take the slow
//!   path (a syscall or a waker), so the two figures pull against each other.
//!
//! Variants (loop side), measured in the same process and interleaved (A B C .., A B C ..):
//!
//! 1. `xev io_uring`, 2. `xev epoll`: callback API, `xev::Async` (a pending flag; a wake-up
//!    goes over the loop's own wake-up fd to the parked wait): ping-pong: one `Async` per thread, each with a rearming `wait`; pummel: one
//!    `Async`, one rearming `wait`;
//! 3. `xev async io_uring`, 4. `xev async epoll`: `xev::rt` runtime on that backend,
//!    `xev::notify::Notify`: ping-pong: one `Notify` and one spawned task per thread
//!    (`loop { notified().await; pong }`); pummel: one `Notify`, one task;
//! 5. `tokio current_thread` (the reference): `new_current_thread().enable_all()`, with
//!    `tokio::sync::Notify` (`notify_one`, which stores one permit) in the same shapes.
//!
//! Each measurement: a fresh loop or runtime and fresh threads; a warm-up phase with the
//! same threads and wake-up objects (the loop's and the runtime's queues and the
//! allocator reach their working size), then the timed phase, over which wall time, CPU
//! time (user + system, all threads) and the process-wide allocation count are read. The
//! timed phase starts when the threads are released from a barrier (tasks of the async
//! variants are spawned, and callbacks armed, before that) and ends when the loop side
//! has seen the last wake-up. Three rounds (async1: five), medians shown (allocations: the
//! largest).
//!
//! Thread placement (see `pin_mode` for why): the ping-pong runs the loop side and the
//! workers on CPU 0, the pummel lets the scheduler decide; `XEV_BENCH_PIN=none|same|split`
//! overrides both (`split`: loop side on CPU 0, workers on CPU 1).
//!
//! `XEV_BENCH_QUICK=1`: a CI smoke run (1 round, 2,000 round trips, 5 ms pummels) of
//! about a second. For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name
//! contains a word), `XEV_BENCH_WORKLOAD=async|pummel` (one workload),
//! `XEV_BENCH_THREADS=1,8` (thread counts), `XEV_BENCH_ROUND_TRIPS=N` (timed round trips
//! per thread), `XEV_BENCH_PUMMEL_MS=N` (timed milliseconds of notifying),
//! `XEV_BENCH_ROUNDS=N`.
//!
//! Run with `cargo bench --bench async_wakeup`.

mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::fmt::Debug;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use common::report::{per_round_line, ratio, ratio_target};
use common::{sys, watchdog};

use xev::notify::Notify;
use xev::{Async, Backend, CallbackAction, Completion, Loop, Options, RunMode};

/// Worker thread counts of both workloads (libxev: async1, 2, 4, 8).
const THREADS: [usize; 4] = [1, 2, 4, 8];
/// Full mode: timed round trips per ping-pong run, all threads together (libxev: 1,000,000
/// per thread, which would take about 20 minutes here for the whole matrix).
const FULL_ROUND_TRIPS: u64 = 200_000;
/// Full mode: milliseconds of notifying per pummel run.
const FULL_PUMMEL_MS: u64 = 200;
const FULL_ROUNDS: usize = 3;
/// Full mode: rounds of async1, whose targets (xev >= tokio) print their spread round by
/// round: one cross-CPU wake-up per half round trip, so this VM's slow phases move a
/// median of 3.
const FULL_ROUNDS_ASYNC1: usize = 5;
/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    XevAsyncIoUring,
    XevAsyncEpoll,
    Tokio,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::XevAsyncIoUring => "xev async io_uring",
            Variant::XevAsyncEpoll => "xev async epoll",
            Variant::Tokio => "tokio current_thread",
        }
    }

    fn backend(self) -> Backend {
        match self {
            Variant::XevIoUring | Variant::XevAsyncIoUring => Backend::IoUring,
            _ => Backend::Epoll,
        }
    }

    fn is_xev(self) -> bool {
        self != REFERENCE
    }
}

const REFERENCE: Variant = Variant::Tokio;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `asyncN`: ping-pong between the loop and each thread.
    PingPong,
    /// `async_pummel_N`: the threads notify as fast as they can.
    Pummel,
}

#[derive(Clone, Copy)]
struct Workload {
    kind: Kind,
    threads: usize,
    /// Ping-pong: round trips per thread; pummel: milliseconds of notifying. Warm-up phase.
    warmup: u64,
    /// The same, timed phase.
    timed: u64,
}

impl Workload {
    fn title(&self) -> String {
        match self.kind {
            Kind::PingPong => format!("async{}", self.threads),
            Kind::Pummel => format!("async_pummel_{}", self.threads),
        }
    }
}

/// One measurement's figures (timed phase).
#[derive(Clone, Copy)]
struct Sample {
    elapsed: Duration,
    /// User + system, all threads.
    cpu: Duration,
    /// The user-space part of `cpu`.
    user: Duration,
    /// Context switches, all threads (`getrusage`).
    switches: u64,
    allocs: u64,
    /// Ping-pong: round trips, all threads. Pummel: notifies, all threads.
    ops: u64,
    /// Loop-side wake-ups: callbacks, or `notified().await`s that returned.
    wakeups: u64,
    /// Pummel, callback variants: notifies that found no wake-up pending (`Async::writes`).
    writes: Option<u64>,
}

impl Sample {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn wakeups_per_sec(&self) -> f64 {
        self.wakeups as f64 / self.elapsed.as_secs_f64()
    }

    fn allocs_per_wakeup(&self) -> f64 {
        self.allocs as f64 / self.wakeups.max(1) as f64
    }

    fn cpu_ns_per_op(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.ops.max(1) as f64
    }

    fn user_ns_per_op(&self) -> f64 {
        self.user.as_nanos() as f64 / self.ops.max(1) as f64
    }

    fn switches_per_op(&self) -> f64 {
        self.switches as f64 / self.ops.max(1) as f64
    }
}

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    allocs: u64,
    usage: common::Usage,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            at: Instant::now(),
            allocs: common::allocations(),
            usage: common::usage(),
        }
    }

    fn sample(self, end: Mark, ops: u64, wakeups: u64, writes: Option<u64>) -> Sample {
        let user = end.usage.user.saturating_sub(self.usage.user);
        Sample {
            elapsed: end.at - self.at,
            cpu: user + end.usage.system.saturating_sub(self.usage.system),
            user,
            switches: end.usage.switches.saturating_sub(self.usage.switches),
            allocs: end.allocs - self.allocs,
            ops,
            wakeups,
            writes,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The thread side, shared by every variant.

/// How a worker thread wakes the loop side.
#[derive(Clone)]
enum Ping {
    Async(Async),
    Notify(Notify),
    Tokio(Arc<tokio::sync::Notify>),
}

impl Ping {
    fn ping(&self) {
        match self {
            Ping::Async(a) => a.notify().expect("Async::notify"),
            Ping::Notify(n) => n.notify(),
            Ping::Tokio(n) => n.notify_one(),
        }
    }
}

/// How the loop side wakes one worker thread back: a flag plus `park`/`unpark` (a futex
/// wake when the thread is parked, an atomic store otherwise).
#[derive(Default)]
struct Pong {
    ready: AtomicBool,
    thread: OnceLock<Thread>,
}

impl Pong {
    /// Loop side: wake the thread.
    fn send(&self) {
        self.ready.store(true, Ordering::Release);
        self.thread.get().expect("worker registered").unpark();
    }

    /// Worker side: wait for `send` (park may return spuriously: the flag decides).
    fn wait(&self) {
        while !self.ready.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

/// What the worker threads of one measurement share with the loop side.
struct Shared {
    /// `threads + 1` parties: each phase starts when the loop side joins.
    barrier: Barrier,
    /// Pong of each worker (ping-pong).
    pongs: Vec<Pong>,
    /// Pummel: workers done with the warm-up phase, with the timed phase.
    done: [AtomicUsize; 2],
    /// Pummel: notifies made in each phase, all workers.
    notifies: [AtomicU64; 2],
    threads: usize,
}

impl Shared {
    fn new(threads: usize) -> Arc<Shared> {
        Arc::new(Shared {
            barrier: Barrier::new(threads + 1),
            pongs: (0..threads).map(|_| Pong::default()).collect(),
            done: [AtomicUsize::new(0), AtomicUsize::new(0)],
            notifies: [AtomicU64::new(0), AtomicU64::new(0)],
            threads,
        })
    }

    /// Pummel: whether every worker has finished `phase` (and notified afterwards).
    fn all_done(&self, phase: usize) -> bool {
        self.done[phase].load(Ordering::Acquire) == self.threads
    }

    /// Operations of `phase` (once it is over): round trips (ping-pong) or notifies
    /// (pummel, with each worker's final one), all workers.
    fn ops(&self, w: &Workload, phase: usize) -> u64 {
        match w.kind {
            Kind::PingPong => [w.warmup, w.timed][phase] * self.threads as u64,
            Kind::Pummel => self.notifies[phase].load(Ordering::Acquire),
        }
    }
}

/// Pummel: notifies between two looks at the clock.
const PUMMEL_BATCH: u64 = 256;

/// Start the workers: worker `i` pings through `pings[i]` (pummel: all the same object).
/// Each runs the warm-up phase and then the timed phase, each after the barrier.
fn spawn_workers(w: &Workload, shared: &Arc<Shared>, pings: Vec<Ping>) -> Vec<JoinHandle<()>> {
    let (kind, warmup, timed) = (w.kind, w.warmup, w.timed);
    let plan = pin_plan(kind);
    pings
        .into_iter()
        .enumerate()
        .map(|(i, ping)| {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("wakeup-worker-{i}"))
                .spawn(move || {
                    pin_to(plan.map(|(_, worker)| worker));
                    let pong = &shared.pongs[i];
                    pong.thread
                        .set(thread::current())
                        .expect("one registration");
                    for (phase, n) in [warmup, timed].into_iter().enumerate() {
                        shared.barrier.wait();
                        match kind {
                            Kind::PingPong => {
                                for _ in 0..n {
                                    ping.ping();
                                    pong.wait();
                                }
                            }
                            Kind::Pummel => {
                                let (t0, limit) = (Instant::now(), Duration::from_millis(n));
                                let mut made = 1; // the final one, below
                                loop {
                                    for _ in 0..PUMMEL_BATCH {
                                        ping.ping();
                                    }
                                    made += PUMMEL_BATCH;
                                    if t0.elapsed() >= limit {
                                        break;
                                    }
                                }
                                shared.notifies[phase].fetch_add(made, Ordering::AcqRel);
                                shared.done[phase].fetch_add(1, Ordering::AcqRel);
                                ping.ping();
                            }
                        }
                    }
                })
                .expect("spawn a worker thread")
        })
        .collect()
}

fn join_workers(workers: Vec<JoinHandle<()>>) -> Result<(), String> {
    for t in workers {
        t.join()
            .map_err(|_| "a worker thread panicked".to_string())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Loop side: xev callbacks (`xev::Async`).

fn measure_xev(backend: Backend, w: &Workload) -> Result<Sample, String> {
    let n = w.threads;
    let shared = Shared::new(n);
    // Ping-pong: one Async and one completion per thread; pummel: one of each.
    let objects = if w.kind == Kind::PingPong { n } else { 1 };
    let asyncs: Vec<Async> = (0..objects)
        .map(|_| Async::new())
        .collect::<io::Result<_>>()
        .map_err(|e| format!("Async::new: {e}"))?;
    // Declared before the loop so that they are dropped after it.
    let mut comps: Vec<Pin<Box<Completion>>> =
        (0..objects).map(|_| Box::pin(Completion::new())).collect();
    let mut lp = Loop::new(Options {
        backend: Some(backend),
        ..Options::default()
    })
    .map_err(|e| format!("Loop::new: {e}"))?;
    let pings = (0..n)
        .map(|i| Ping::Async(asyncs[i % objects].clone()))
        .collect();
    watchdog::arm(MEASUREMENT_LIMIT);
    pin_to(pin_plan(w.kind).map(|(lp, _)| lp));
    let workers = spawn_workers(w, &shared, pings);
    let wakeups = Arc::new(AtomicU64::new(0));
    let mut sample = None;
    for (phase, count) in [w.warmup, w.timed].into_iter().enumerate() {
        for (i, (a, c)) in asyncs.iter().zip(comps.iter_mut()).enumerate() {
            let shared = shared.clone();
            let wakeups = wakeups.clone();
            match w.kind {
                Kind::PingPong => {
                    a.wait(&mut lp, c.as_mut(), 0u64, move |seen, _lp, _c, r| {
                        r.expect("Async wait");
                        *seen += 1;
                        wakeups.fetch_add(1, Ordering::Relaxed);
                        shared.pongs[i].send();
                        if *seen < count {
                            CallbackAction::Rearm
                        } else {
                            CallbackAction::Disarm
                        }
                    });
                }
                Kind::Pummel => {
                    a.wait(&mut lp, c.as_mut(), (), move |_, _lp, _c, r| {
                        r.expect("Async wait");
                        wakeups.fetch_add(1, Ordering::Relaxed);
                        if shared.all_done(phase) {
                            CallbackAction::Disarm
                        } else {
                            CallbackAction::Rearm
                        }
                    });
                }
            }
        }
        let writes0: u64 = asyncs.iter().map(Async::writes).sum();
        wakeups.store(0, Ordering::Relaxed);
        let start = Mark::now();
        shared.barrier.wait();
        lp.run(RunMode::UntilDone)
            .map_err(|e| format!("Loop::run: {e}"))?;
        let end = Mark::now();
        let writes = asyncs.iter().map(Async::writes).sum::<u64>() - writes0;
        sample = Some(start.sample(
            end,
            shared.ops(w, phase),
            wakeups.load(Ordering::Relaxed),
            (w.kind == Kind::Pummel).then_some(writes),
        ));
    }
    join_workers(workers)?;
    watchdog::disarm();
    drop(lp);
    Ok(sample.expect("two phases"))
}

// ---------------------------------------------------------------------------------------
// Loop side: tasks (`xev::notify::Notify`, `tokio::sync::Notify`).

/// The two phases inside `block_on`: for each, spawn the loop-side tasks with `spawn(i,
/// phase, count)` (task `i` of ping-pong serves worker `i`; pummel has one task), then
/// release the workers and await the tasks, which return their wake-up counts.
async fn task_phases<H, E, S>(w: &Workload, shared: &Shared, mut spawn: S) -> Sample
where
    S: FnMut(usize, usize, u64) -> H,
    H: Future<Output = Result<u64, E>> + Unpin,
    E: Debug,
{
    let tasks = if w.kind == Kind::PingPong {
        w.threads
    } else {
        1
    };
    let mut handles = Vec::with_capacity(tasks);
    let mut sample = None;
    for (phase, count) in [w.warmup, w.timed].into_iter().enumerate() {
        for i in 0..tasks {
            handles.push(spawn(i, phase, count));
        }
        let start = Mark::now();
        // Blocks this thread briefly, before any task has run (they first run when this
        // future next yields).
        shared.barrier.wait();
        let mut wakeups = 0;
        for h in handles.drain(..) {
            wakeups += h.await.expect("a loop-side task failed");
        }
        let end = Mark::now();
        sample = Some(start.sample(end, shared.ops(w, phase), wakeups, None));
    }
    sample.expect("two phases")
}

/// A loop-side task of phase `phase` (`count`: its round trips, ping-pong), waiting with
/// `notified`: ping-pong: pong worker `i` at each wake-up, `count` times; pummel: until a
/// wake-up sees every worker done. Returns the wake-ups seen.
async fn serve<F: Future<Output = ()>>(
    kind: Kind,
    shared: &Shared,
    i: usize,
    phase: usize,
    count: u64,
    notified: impl Fn() -> F,
) -> u64 {
    let mut seen = 0;
    match kind {
        Kind::PingPong => {
            while seen < count {
                notified().await;
                seen += 1;
                shared.pongs[i].send();
            }
        }
        Kind::Pummel => loop {
            notified().await;
            seen += 1;
            if shared.all_done(phase) {
                break;
            }
        },
    }
    seen
}

fn measure_xev_async(backend: Backend, w: &Workload) -> Result<Sample, String> {
    let n = w.threads;
    let shared = Shared::new(n);
    let objects = if w.kind == Kind::PingPong { n } else { 1 };
    let notifies: Vec<Notify> = (0..objects).map(|_| Notify::new()).collect();
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .build()
        .map_err(|e| format!("xev::rt::Builder::build: {e}"))?;
    let pings = (0..n)
        .map(|i| Ping::Notify(notifies[i % objects].clone()))
        .collect();
    watchdog::arm(MEASUREMENT_LIMIT);
    pin_to(pin_plan(w.kind).map(|(lp, _)| lp));
    let workers = spawn_workers(w, &shared, pings);
    let kind = w.kind;
    let sample = rt.block_on(task_phases(w, &shared, |i, phase, count| {
        let notify = notifies[i].clone();
        let shared = shared.clone();
        xev::spawn(async move { serve(kind, &shared, i, phase, count, || notify.notified()).await })
    }));
    join_workers(workers)?;
    watchdog::disarm();
    Ok(sample)
}

fn measure_tokio(w: &Workload) -> Result<Sample, String> {
    let n = w.threads;
    let shared = Shared::new(n);
    let objects = if w.kind == Kind::PingPong { n } else { 1 };
    let notifies: Vec<Arc<tokio::sync::Notify>> = (0..objects)
        .map(|_| Arc::new(tokio::sync::Notify::new()))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let pings = (0..n)
        .map(|i| Ping::Tokio(notifies[i % objects].clone()))
        .collect();
    watchdog::arm(MEASUREMENT_LIMIT);
    pin_to(pin_plan(w.kind).map(|(lp, _)| lp));
    let workers = spawn_workers(w, &shared, pings);
    let kind = w.kind;
    let sample = rt.block_on(task_phases(w, &shared, |i, phase, count| {
        let notify = notifies[i].clone();
        let shared = shared.clone();
        tokio::spawn(
            async move { serve(kind, &shared, i, phase, count, || notify.notified()).await },
        )
    }));
    join_workers(workers)?;
    watchdog::disarm();
    Ok(sample)
}

fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let r = match v {
        Variant::XevIoUring | Variant::XevEpoll => measure_xev(v.backend(), w),
        Variant::XevAsyncIoUring | Variant::XevAsyncEpoll => measure_xev_async(v.backend(), w),
        Variant::Tokio => measure_tokio(w),
    };
    // The measuring thread may have been pinned for the loop side: undo it.
    unpin(w.kind);
    r
}

// ---------------------------------------------------------------------------------------
// CPU placement, XEV_BENCH_PIN: none (the scheduler decides) | same (loop side and every
// worker on CPU 0) | split (loop side on CPU 0, every worker on CPU 1). Defaults: `same`
// for the ping-pong, `none` for the pummel (its notifiers should get every CPU). On the
// 2-vCPU VM this was written on, a wake-up of a thread sleeping on another CPU costs
// about 45 µs (the idle vCPU has to be woken through the hypervisor), so `split` measures
// that and nothing else (every variant within 10% at ~21,000 round trips/s); unpinned,
// the scheduler mostly keeps the pair on one CPU anyway (wake-affine) but sometimes
// migrates a thread, which only adds noise. With `same`, each hand-off is a plain
// context switch and the loop side's own costs (syscalls, queues) make the difference.

fn pin_mode(kind: Kind) -> String {
    sys::pin_mode(match kind {
        Kind::PingPong => "same",
        Kind::Pummel => "none",
    })
}

/// (loop side, workers), when pinning.
fn pin_plan(kind: Kind) -> Option<(usize, usize)> {
    sys::pin_plan(&pin_mode(kind))
}

/// Restrict the calling thread to `cpus`; a failure is only reported.
fn set_affinity(cpus: &[usize]) {
    if let Err(e) = sys::set_affinity(cpus) {
        eprintln!("async_wakeup: cannot set the CPU affinity to {cpus:?}: {e}");
    }
}

fn pin_to(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        set_affinity(&[cpu]);
    }
}

fn unpin(kind: Kind) {
    if pin_plan(kind).is_some() {
        let all: Vec<usize> = (0..thread::available_parallelism().map_or(1, |n| n.get())).collect();
        set_affinity(&all);
    }
}

// ---------------------------------------------------------------------------------------
// Report.

fn header(quick: bool, rounds: usize) {
    println!(
        "async_wakeup: cross-thread wake-ups of a loop (libxev's async1..8 and \
         async_pummel_1..8){}",
        if quick { "  [QUICK]" } else { "" }
    );
    sys::print_command("async_wakeup", quick);
    println!("{}", sys::machine());
    println!(
        "thread placement (XEV_BENCH_PIN): ping-pong {}, pummel {}   io_uring available: {}",
        pin_mode(Kind::PingPong),
        pin_mode(Kind::Pummel),
        Backend::IoUring.is_available()
    );
    println!(
        "mode: {}",
        if rounds == 1 {
            "1 round".to_string()
        } else {
            format!("median of {rounds} rounds, variants interleaved")
        }
    );
}

/// Medians of one variant's samples (allocations: the largest).
struct Summary {
    per_sec: f64,
    wakeups: f64,
    wakeups_per_sec: f64,
    writes: Option<f64>,
    allocs: u64,
    allocs_per_wakeup: f64,
    cpu_ns_per_op: f64,
    user_ns_per_op: f64,
    switches_per_op: f64,
    ops: u64,
}

fn summarize(s: &[Sample]) -> Option<Summary> {
    if s.is_empty() {
        return None;
    }
    let med = |f: &dyn Fn(&Sample) -> f64| common::median(s.iter().map(f).collect());
    Some(Summary {
        per_sec: med(&|x| x.per_sec()),
        wakeups: med(&|x| x.wakeups as f64),
        wakeups_per_sec: med(&|x| x.wakeups_per_sec()),
        writes: s[0].writes.map(|_| med(&|x| x.writes.unwrap_or(0) as f64)),
        allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
        allocs_per_wakeup: s.iter().map(Sample::allocs_per_wakeup).fold(0.0, f64::max),
        cpu_ns_per_op: med(&|x| x.cpu_ns_per_op()),
        user_ns_per_op: med(&|x| x.user_ns_per_op()),
        switches_per_op: med(&|x| x.switches_per_op()),
        ops: s[0].ops,
    })
}

/// Why a ping-pong variant `s` makes fewer round trips/s than the reference `r`: where
/// its time per round trip goes. A round trip is two cross-thread wake-ups; when a side
/// sleeps, the kernel switches it out and back in (`switch/rt`), and the wall time that
/// is not CPU time is time the threads spent waiting for those wake-ups.
fn ping_pong_cause(s: &Summary, r: &Summary) -> String {
    let us = |ns: f64| ns / 1e3;
    let (sw, rw) = (1e6 / s.per_sec, 1e6 / r.per_sec);
    let (sc, rc) = (us(s.cpu_ns_per_op), us(r.cpu_ns_per_op));
    let (su, ru) = (us(s.user_ns_per_op), us(r.user_ns_per_op));
    format!(
        "µs per round trip {sw:.2} vs {rw:.2}: CPU {sc:.2} vs {rc:.2} (user {su:.2} vs {ru:.2}, \
         system {:.2} vs {:.2}), not on a CPU (waiting to be woken) {:.2} vs {:.2}; context \
         switches per round trip {:.2} vs {:.2}: {}",
        sc - su,
        rc - ru,
        sw - sc,
        rw - rc,
        s.switches_per_op,
        r.switches_per_op,
        if su <= ru {
            "xev's user time is at or below the reference's, the difference is the kernel's \
             (system time and the wake-up latency of the sleeping threads)"
        } else {
            "xev spends more user time per round trip"
        }
    )
}

fn table(w: &Workload, variants: &[Variant], samples: &[Vec<Sample>], rounds: usize) {
    println!();
    let sums: Vec<Option<Summary>> = samples.iter().map(|s| summarize(s)).collect();
    let reference = variants
        .iter()
        .position(|&v| v == REFERENCE)
        .and_then(|i| sums[i].as_ref());
    match w.kind {
        Kind::PingPong => {
            println!(
                "== {}: ping-pong between the loop and {} thread(s), {} timed round trips \
                 per thread (+{} warm-up), {} round(s) ==",
                w.title(),
                w.threads,
                w.timed,
                w.warmup,
                rounds
            );
            println!(
                "{:<22} {:>14} {:>10} {:>8} {:>12} {:>8} {:>10} {:>16} {:>12}",
                "variant",
                "round trips/s",
                "vs tokio",
                "µs/rt",
                "cpu µs/rt",
                "(user)",
                "switch/rt",
                "allocs/rt (max)",
                "allocs (max)"
            );
        }
        Kind::Pummel => {
            println!(
                "== {}: {} thread(s) notify one loop-side object for {} ms (+{} ms warm-up), \
                 {} round(s) ==",
                w.title(),
                w.threads,
                w.timed,
                w.warmup,
                rounds
            );
            println!(
                "{:<22} {:>12} {:>9} {:>10} {:>11} {:>10} {:>10} {:>9} {:>14}",
                "variant",
                "notifies/s",
                "vs tokio",
                "wake-ups",
                "wake-ups/s",
                "coalesced",
                "hand-offs",
                "cpu ns/n",
                "allocs/wake-up"
            );
        }
    }
    for (v, s) in variants.iter().zip(&sums) {
        let Some(s) = s else {
            println!("{:<22} {:>14}", v.name(), "failed");
            continue;
        };
        let ratio = ratio(s.per_sec, reference.map(|r| r.per_sec));
        match w.kind {
            Kind::PingPong => println!(
                "{:<22} {:>14.0} {:>10} {:>8.2} {:>12.2} {:>8.2} {:>10.2} {:>16.6} {:>12}",
                v.name(),
                s.per_sec,
                ratio,
                1e6 / s.per_sec,
                s.cpu_ns_per_op / 1e3,
                s.user_ns_per_op / 1e3,
                s.switches_per_op,
                s.allocs_per_wakeup,
                s.allocs
            ),
            Kind::Pummel => println!(
                "{:<22} {:>12.0} {:>9} {:>10.0} {:>11.0} {:>9.2}% {:>10} {:>9.1} {:>14.6}",
                v.name(),
                s.per_sec,
                ratio,
                s.wakeups,
                s.wakeups_per_sec,
                100.0 * (1.0 - s.wakeups / s.ops as f64),
                s.writes.map_or("-".to_string(), |x| format!("{x:.0}")),
                s.cpu_ns_per_op,
                s.allocs_per_wakeup
            ),
        }
    }
    let unit = match w.kind {
        Kind::PingPong => "round trips/s",
        Kind::Pummel => "notifies/s",
    };
    per_round_line(
        unit,
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(Sample::per_sec).collect())),
    );
    // Targets: asyncN, N = 1: xev >= tokio; async_pummel_N: xev >= tokio (notifies/s).
    if let Some(r) = reference {
        if w.kind == Kind::Pummel || w.threads == 1 {
            for (v, s) in variants.iter().zip(&sums) {
                let (true, Some(s)) = (v.is_xev(), s) else {
                    continue;
                };
                ratio_target(
                    &format!("{} {}", w.title(), v.name()),
                    &format!("tokio ({unit})"),
                    s.per_sec / r.per_sec,
                    1.0,
                );
                if w.kind == Kind::PingPong && s.per_sec < r.per_sec {
                    println!("  measured cause: {}", ping_pong_cause(s, r));
                }
                if w.kind == Kind::PingPong {
                    let at = |want: Variant| variants.iter().position(|&x| x == want);
                    let line = at(*v).zip(at(Variant::Tokio)).and_then(|(i, t)| {
                        common::report::round_by_round(
                            (&samples[i], &samples[t]),
                            Sample::per_sec,
                            Sample::cpu_ns_per_op,
                            1.0,
                            "cpu/rt",
                        )
                    });
                    if let Some(line) = line {
                        println!("  {line}");
                    }
                }
            }
        }
    }
    let allocating: Vec<String> = variants
        .iter()
        .zip(&sums)
        .filter_map(|(v, s)| {
            let s = s.as_ref()?;
            (v.is_xev() && s.allocs > 0).then(|| format!("{} {:.6}", v.name(), s.allocs_per_wakeup))
        })
        .collect();
    let what = format!("{} xev 0 allocations per wake-up after warm-up", w.title());
    if allocating.is_empty() {
        println!("target: {what}: MET");
    } else {
        println!("target: {what}: MISSED ({})", allocating.join(", "));
    }
}

/// One line per variant: its rate at each thread count.
fn summary_table(kind: Kind, done: &[(Workload, Vec<Option<Summary>>)], variants: &[Variant]) {
    let cols: Vec<&(Workload, Vec<Option<Summary>>)> =
        done.iter().filter(|(w, _)| w.kind == kind).collect();
    if cols.is_empty() {
        return;
    }
    println!();
    let unit = match kind {
        Kind::PingPong => "round trips/s (all threads)",
        Kind::Pummel => "notifies/s (all threads)",
    };
    println!("== summary: {unit}, medians ==");
    print!("{:<22}", "variant");
    for (w, _) in &cols {
        print!(" {:>16}", w.title());
    }
    println!();
    for (i, v) in variants.iter().enumerate() {
        print!("{:<22}", v.name());
        for (_, sums) in &cols {
            match &sums[i] {
                Some(s) => print!(" {:>16.0}", s.per_sec),
                None => print!(" {:>16}", "failed"),
            }
        }
        println!();
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    // Ping-pong: (warm-up, timed) round trips per run, all threads (each thread does its
    // share); pummel: (warm-up, timed) milliseconds of notifying.
    let (mut rounds, rt_warm, mut rt, pm_warm, mut pm) = if quick {
        (1, 400, 2_000, 2, 5)
    } else {
        (FULL_ROUNDS, 20_000, FULL_ROUND_TRIPS, 20, FULL_PUMMEL_MS)
    };
    let mut rt_per_thread = None;
    if let Some(n) = common::env_parse::<u64>("XEV_BENCH_ROUND_TRIPS") {
        rt_per_thread = Some(n);
    }
    if let Some(n) = common::env_parse::<u64>("XEV_BENCH_PUMMEL_MS") {
        pm = n;
    }
    if let Some(n) = common::env_parse::<u64>("XEV_BENCH_ROUNDS") {
        rounds = n.max(1) as usize;
    }
    header(quick, rounds);
    watchdog::start(
        "wakeup-watchdog",
        Duration::from_millis(100),
        format!(
            "async_wakeup: a measurement exceeded {MEASUREMENT_LIMIT:?} (lost wake-up?); \
             exiting"
        ),
    );
    let variants = common::report::select(
        &[
            Variant::XevIoUring,
            Variant::XevEpoll,
            Variant::XevAsyncIoUring,
            Variant::XevAsyncEpoll,
            Variant::Tokio,
        ],
        Variant::name,
        |v| v.backend() == Backend::IoUring,
    );
    let mut workloads = Vec::new();
    rt = rt.max(1);
    for (kind, word) in [(Kind::PingPong, "async"), (Kind::Pummel, "pummel")] {
        let keep = match std::env::var("XEV_BENCH_WORKLOAD") {
            Ok(v) if !v.trim().is_empty() => v.split(',').any(|x| x.trim() == word),
            _ => true,
        };
        if !keep {
            continue;
        }
        for threads in THREADS
            .into_iter()
            .filter(|&n| common::wanted_number("XEV_BENCH_THREADS", n))
        {
            let t = threads as u64;
            let (warmup, timed) = match kind {
                Kind::PingPong => (
                    (rt_warm / t).max(1),
                    rt_per_thread.unwrap_or((rt / t).max(1)),
                ),
                Kind::Pummel => (pm_warm, pm),
            };
            workloads.push(Workload {
                kind,
                threads,
                warmup,
                timed,
            });
        }
    }
    let rounds_set = common::env_parse::<u64>("XEV_BENCH_ROUNDS").is_some();
    let mut failed = false;
    let mut done = Vec::new();
    for w in &workloads {
        let rounds = match (w.kind, w.threads) {
            (Kind::PingPong, 1) if !quick && !rounds_set => FULL_ROUNDS_ASYNC1,
            _ => rounds,
        };
        let samples = common::report::interleaved(
            rounds,
            &variants,
            &mut failed,
            |v| measure(v, w),
            |v| format!("async_wakeup: {} / {}", w.title(), v.name()),
        );
        table(w, &variants, &samples, rounds);
        done.push((*w, samples.iter().map(|s| summarize(s)).collect()));
    }
    summary_table(Kind::PingPong, &done, &variants);
    summary_table(Kind::Pummel, &done, &variants);
    println!();
    println!(
        "round trips/s, notifies/s: all threads together, over the timed phase (wall time); \
         µs/rt = 1 / rate; cpu = user+sys of the whole process (getrusage) per round trip \
         or per notify (cpu ns/n); wake-ups = loop-side callbacks or returns from \
         notified().await; coalesced = 1 - wake-ups / notifies; hand-offs = notifies \
         that found no wake-up pending (Async::writes, callback variants); allocs = allocations in the \
         timed phase, all threads (max over rounds), per round trip or per loop-side \
         wake-up; vs tokio = rate / tokio current_thread's (>= 1 is no slower)."
    );
    common::report::finish("bench duration", started, failed);
}
