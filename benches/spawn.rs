//! spawn: the cost of a task. Spawn 1,000,000 empty tasks (`async {}`) from the future
//! given to `block_on` and join them through their handles, in two shapes:
//!
//! - `spawn all, then join`: spawn every task (keeping the handles in a `Vec` allocated
//!   beforehand), then await the handles in spawn order;
//! - `spawn, join, repeat`: spawn one task and await its handle before spawning the next
//!   (every task then costs a full scheduler round trip: the task runs, wakes the
//!   `block_on` future, which is polled again).
//!
//! Variants, measured in the same process and interleaved (A B C D, A B C D, ...):
//!
//! 1. `xev async io_uring`, 2. `xev async epoll`: `xev::rt::Builder::new().backend(..)`;
//! 3. `tokio current_thread` (the reference): `new_current_thread().enable_all()`, the
//!    configuration of `#[tokio::main(flavor = "current_thread")]`;
//! 4. `tokio (no drivers)`: `new_current_thread()` without I/O and time drivers, whose
//!    park/unpark needs no syscall; shown for information.
//!
//! Each measurement: a fresh runtime, a warm-up batch of the same size (the runtime's
//! containers and the allocator reach their working size), then the timed batch, over
//! which wall time, CPU time (user + system) and the process-wide allocation count are
//! read. Three rounds, medians shown (allocations: the largest). Each task is one
//! allocation in both runtimes (the task itself: header, future and output).
//!
//! `XEV_BENCH_QUICK=1`: 10,000 tasks and 1 round (a CI smoke run well under a second).
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_SPAWN_SHAPE=all|one` (one shape), `XEV_SPAWN_TASKS=N`.
//! Run with `cargo bench --bench spawn`.

mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use xev::Backend;

const FULL_TASKS: usize = 1_000_000;
const QUICK_TASKS: usize = 10_000;
const FULL_ROUNDS: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    Tokio,
    TokioNoDrivers,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev async io_uring",
            Variant::XevEpoll => "xev async epoll",
            Variant::Tokio => "tokio current_thread",
            Variant::TokioNoDrivers => "tokio (no drivers)",
        }
    }
}

const REFERENCE: Variant = Variant::Tokio;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Spawn every task, then await every handle in order.
    AllThenJoin,
    /// Spawn one task, await it, repeat.
    OneAtATime,
}

impl Shape {
    fn title(self) -> &'static str {
        match self {
            Shape::AllThenJoin => "spawn all, then join all handles in order",
            Shape::OneAtATime => "spawn, join, repeat (one task at a time)",
        }
    }
}

/// One timed batch.
#[derive(Clone, Copy)]
struct Sample {
    /// Spawning every task (`AllThenJoin` only).
    spawn: Option<Duration>,
    /// Spawn + join.
    total: Duration,
    cpu: Duration,
    allocs: u64,
}

/// Spawn and join `n` tasks in `shape`; `spawn` starts one empty task. `handles` is
/// empty, with room for `n`, and is left that way.
async fn batch<H, E>(shape: Shape, n: usize, handles: &mut Vec<H>, spawn: impl Fn() -> H) -> Sample
where
    H: Future<Output = Result<(), E>> + Unpin,
    E: Debug,
{
    let allocs = common::allocations();
    let cpu = common::cpu_time();
    let t0 = Instant::now();
    let mut spawn_time = None;
    match shape {
        Shape::AllThenJoin => {
            for _ in 0..n {
                handles.push(spawn());
            }
            spawn_time = Some(t0.elapsed());
            for h in handles.drain(..) {
                h.await.expect("join an empty task");
            }
        }
        Shape::OneAtATime => {
            for _ in 0..n {
                spawn().await.expect("join an empty task");
            }
        }
    }
    let total = t0.elapsed();
    let cpu = common::cpu_time() - cpu;
    let allocs = common::allocations() - allocs;
    Sample {
        spawn: spawn_time,
        total,
        cpu,
        allocs,
    }
}

fn measure(v: Variant, shape: Shape, n: usize) -> Result<Sample, String> {
    match v {
        Variant::XevIoUring | Variant::XevEpoll => {
            let backend = if v == Variant::XevIoUring {
                Backend::IoUring
            } else {
                Backend::Epoll
            };
            let rt = xev::rt::Builder::new()
                .backend(backend)
                .build()
                .map_err(|e| format!("xev::rt::Builder::build: {e}"))?;
            // Allocated outside the timed batches (and reused by both).
            let mut handles = Vec::with_capacity(n);
            Ok(rt.block_on(async {
                let spawn = || xev::spawn(async {});
                batch(shape, n, &mut handles, spawn).await;
                batch(shape, n, &mut handles, spawn).await
            }))
        }
        Variant::Tokio | Variant::TokioNoDrivers => {
            let mut b = tokio::runtime::Builder::new_current_thread();
            if v == Variant::Tokio {
                b.enable_all();
            }
            let rt = b.build().map_err(|e| format!("tokio runtime: {e}"))?;
            let mut handles = Vec::with_capacity(n);
            Ok(rt.block_on(async {
                let spawn = || tokio::spawn(async {});
                batch(shape, n, &mut handles, spawn).await;
                batch(shape, n, &mut handles, spawn).await
            }))
        }
    }
}

/// Medians of one variant's samples (allocations: the largest).
struct Summary {
    total_ns: f64,
    spawn_ns: Option<f64>,
    cpu_ns: f64,
    allocs_max: u64,
}

fn summarize(s: &[Sample], n: usize) -> Option<Summary> {
    if s.is_empty() {
        return None;
    }
    let per_task = |d: Duration| d.as_nanos() as f64 / n as f64;
    let spawns: Vec<f64> = s.iter().filter_map(|x| x.spawn.map(per_task)).collect();
    Some(Summary {
        total_ns: common::median(s.iter().map(|x| per_task(x.total)).collect()),
        spawn_ns: (!spawns.is_empty()).then(|| common::median(spawns)),
        cpu_ns: common::median(s.iter().map(|x| per_task(x.cpu)).collect()),
        allocs_max: s.iter().map(|x| x.allocs).max().unwrap_or(0),
    })
}

fn table(shape: Shape, n: usize, rounds: usize, variants: &[Variant], samples: &[Vec<Sample>]) {
    println!();
    println!(
        "== {}: {n} empty tasks, {rounds} round(s) ==",
        shape.title()
    );
    println!(
        "{:<22} {:>10} {:>11} {:>10} {:>12} {:>12} {:>14}",
        "variant", "ns/task", "spawn ns", "join ns", "cpu ns/task", "allocs/task", "time vs tokio"
    );
    let sums: Vec<Option<Summary>> = samples.iter().map(|s| summarize(s, n)).collect();
    let reference = variants
        .iter()
        .position(|&v| v == REFERENCE)
        .and_then(|i| sums[i].as_ref());
    for (v, s) in variants.iter().zip(&sums) {
        let Some(s) = s else {
            println!("{:<22} {:>10}", v.name(), "failed");
            continue;
        };
        let (spawn, join) = match s.spawn_ns {
            Some(sp) => (format!("{sp:.1}"), format!("{:.1}", s.total_ns - sp)),
            None => ("-".to_string(), "-".to_string()),
        };
        let ratio = reference.map_or("-".to_string(), |r| {
            format!("{:.3}x", s.total_ns / r.total_ns)
        });
        println!(
            "{:<22} {:>10.1} {:>11} {:>10} {:>12.1} {:>12.6} {:>14}",
            v.name(),
            s.total_ns,
            spawn,
            join,
            s.cpu_ns,
            s.allocs_max as f64 / n as f64,
            ratio
        );
    }
    common::report::per_round_line(
        "ns/task",
        1,
        variants.iter().zip(samples).map(|(v, s)| {
            let ns = s.iter().map(|x| x.total.as_nanos() as f64 / n as f64);
            (v.name(), ns.collect())
        }),
    );
    if let Some(r) = reference {
        for (v, s) in variants.iter().zip(&sums) {
            let (Variant::XevIoUring | Variant::XevEpoll, Some(s)) = (v, s) else {
                continue;
            };
            let q = s.total_ns / r.total_ns;
            println!(
                "target: {} no slower than tokio: {q:.3}x  {}",
                v.name(),
                if q <= 1.0 { "MET" } else { "MISSED" }
            );
        }
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    let (mut n, rounds) = if quick {
        (QUICK_TASKS, 1)
    } else {
        (FULL_TASKS, FULL_ROUNDS)
    };
    if let Some(t) = std::env::var("XEV_SPAWN_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        n = t;
    }
    println!(
        "spawn: spawn and join {n} empty tasks from the block_on future{}",
        if quick { "  [QUICK]" } else { "" }
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "Linux {}, {} CPU(s); {rounds} round(s), variants interleaved; each run: fresh \
         runtime, warm-up batch of {n}, timed batch; medians shown",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );
    let uring = Backend::IoUring.is_available();
    if !uring {
        println!("io_uring is not available here: its variant is skipped");
    }
    let variants: Vec<Variant> = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::Tokio,
        Variant::TokioNoDrivers,
    ]
    .into_iter()
    .filter(|&v| uring || v != Variant::XevIoUring)
    .filter(|v| common::wanted("XEV_BENCH_ONLY", v.name()))
    .collect();
    let mut failed = false;
    let shapes = [(Shape::AllThenJoin, "all"), (Shape::OneAtATime, "one")];
    for (shape, _) in shapes
        .into_iter()
        .filter(|(_, word)| common::wanted("XEV_SPAWN_SHAPE", word))
    {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, &v) in variants.iter().enumerate() {
                match measure(v, shape, n) {
                    Ok(s) => samples[i].push(s),
                    Err(e) => {
                        failed = true;
                        eprintln!("spawn: {} / {}: {e}", shape.title(), v.name());
                    }
                }
            }
        }
        table(shape, n, rounds, &variants, &samples);
    }
    println!();
    println!(
        "ns/task = wall time of the timed batch / tasks; spawn ns = spawning them (spawn all \
         only), join ns = the rest (running the tasks and awaiting the handles); cpu = \
         user+sys (getrusage); allocs/task = allocations in the timed batch / tasks (max \
         over rounds); time vs tokio = ns/task / tokio current_thread's (<= 1 is no slower)."
    );
    println!();
    println!("bench duration: {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}
