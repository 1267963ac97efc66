//! million-timers (after libxev's `src/bench/million-timers.zig`): arm 1,000,000 timers
//! whose deadline starts at 1 ms and rises by 1 ms every 1000 timers (timer `i` fires after
//! `i / 1000 + 1` ms), then run until every one has fired.
//!
//! Variants:
//! - `xev-io_uring`, `xev-epoll`: one [`xev::Loop`] pinned to that backend; the completions
//!   are allocated up front in one heap slice (outside the timed region, but inside the
//!   peak RSS) and each is started with `Loop::timer`, whose callback bumps a shared
//!   `Rc<Cell<usize>>` and disarms.
//! - `xev-async-io_uring`, `xev-async-epoll`: the async runtime (`xev::rt`) on that
//!   backend, shaped exactly like the tokio variant: inside `block_on`, one `xev::spawn`ed
//!   task per timer awaits `xev::time::sleep` and then bumps the same completion counter.
//!   As for tokio, "insert" is the time to spawn the tasks; each sleep enters the
//!   runtime's timer queue on its task's first poll, counted in "dispatch".
//! - `tokio-current_thread`: a current-thread runtime with the time driver; inside
//!   `block_on`, one `tokio::spawn`ed task per timer awaits `tokio::time::sleep`. Tokio
//!   puts a sleep into its timer wheel on the task's first poll, so its "insert" column is
//!   the time to spawn the tasks and the wheel insertions are counted in "dispatch".
//!
//! Allocations are counted separately during insert and during dispatch: for the
//! task-per-timer variants, insert holds the one allocation per spawned task (the task
//! itself) and dispatch everything the sleeps cost (ideally nothing).
//!
//! Every run happens in a fresh child process (this binary re-executed with
//! `--variant NAME`), which prints one machine-readable line; that gives a clean per-variant
//! peak RSS (VmHWM). Before the measured batch each child runs a warm-up batch of the same
//! size with 0 ms deadlines (fast) on the same loop (xev: the same completions), so the
//! loop's containers have reached their working size, and allocations are counted only
//! during the measured batch. The parent runs the variants interleaved (A B C, A B C, ...)
//! for 3 rounds and prints medians with ratios to tokio.
//!
//! `XEV_BENCH_QUICK=1`: 10,000 timers and 1 round (a CI smoke run of about a second).
//! `XEV_TIMERS_WARMUP=N` shrinks the warm-up batch (default: the batch size); with a
//! smaller warm-up, the few allocations xev makes in the measured batch are its
//! containers (timer heap, registry) growing to the full size.

mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use xev::{Backend, CallbackAction, Completion, Loop, OpResult, Options, RunMode};

const FULL_TIMERS: usize = 1_000_000;
const QUICK_TIMERS: usize = 10_000;
const WARMUP_TIMERS: usize = usize::MAX;
const FULL_ROUNDS: usize = 3;
const TIMERS_PER_MS: usize = 1000;
const RESULT_TAG: &str = "XEV_TIMERS_RESULT";

/// The variants, in the order they are interleaved; the last one is the reference.
const VARIANTS: [&str; 5] = [
    "xev-io_uring",
    "xev-epoll",
    "xev-async-io_uring",
    "xev-async-epoll",
    "tokio-current_thread",
];
const REFERENCE: &str = "tokio-current_thread";

/// Timer `i` fires after this many milliseconds.
fn deadline_ms(i: usize) -> u64 {
    (i / TIMERS_PER_MS) as u64 + 1
}

/// Size of the warm-up batch (0 ms timers): `XEV_TIMERS_WARMUP` or `n`, at most `n`.
fn warmup_timers(n: usize) -> usize {
    std::env::var("XEV_TIMERS_WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(WARMUP_TIMERS)
        .min(n)
}

/// What one measured batch cost (one child process).
struct Sample {
    /// User + system CPU time over insert + run.
    cpu: Duration,
    /// Wall time over insert + run.
    wall: Duration,
    /// Adding every timer (tokio: spawning every task).
    insert: Duration,
    /// Running until every timer has fired.
    dispatch: Duration,
    /// Allocations during insert + run of the measured batch (after the warm-up).
    allocs: u64,
    /// Of which during insert (spawning, for the task-per-timer variants).
    insert_allocs: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--variant") {
        let name = args.get(i + 1).map(String::as_str).unwrap_or("");
        std::process::exit(child(name));
    }
    parent();
}

// ---------------------------------------------------------------------------------------
// Child: run one variant once and print one line.

fn child(name: &str) -> i32 {
    let n = if common::quick() {
        QUICK_TIMERS
    } else {
        FULL_TIMERS
    };
    let warm = warmup_timers(n);
    let rss_start = common::rss_bytes();
    let sample = match name {
        "xev-io_uring" => run_xev(Backend::IoUring, n, warm),
        "xev-epoll" => run_xev(Backend::Epoll, n, warm),
        "xev-async-io_uring" => run_xev_async(Backend::IoUring, n, warm),
        "xev-async-epoll" => run_xev_async(Backend::Epoll, n, warm),
        "tokio-current_thread" => Ok(run_tokio(n, warm)),
        other => Err(format!("unknown variant {other:?}")),
    };
    match sample {
        Ok(s) => {
            println!(
                "{RESULT_TAG} variant={name} n={n} cpu_ns={} wall_ns={} insert_ns={} \
                 dispatch_ns={} allocs={} insert_allocs={} peak_rss={} rss_start={rss_start}",
                s.cpu.as_nanos(),
                s.wall.as_nanos(),
                s.insert.as_nanos(),
                s.dispatch.as_nanos(),
                s.allocs,
                s.insert_allocs,
                common::peak_rss_bytes(),
            );
            0
        }
        Err(why) => {
            println!(
                "{RESULT_TAG} variant={name} skipped={}",
                why.replace(' ', "_")
            );
            0
        }
    }
}

fn run_xev(backend: Backend, n: usize, warm: usize) -> Result<Sample, String> {
    if !backend.is_available() {
        return Err(format!("{} unavailable", backend.name()));
    }
    // Declared before the loop so that the loop is dropped first (a loop's drop leaves
    // every completion Dead, and only Dead completions may be dropped).
    let mut completions: Box<[Completion]> = (0..n).map(|_| Completion::new()).collect();
    let mut lp = Loop::new(Options {
        backend: Some(backend),
        ..Options::default()
    })
    .map_err(|e| format!("Loop::new: {e}"))?;
    let count = Rc::new(Cell::new(0usize));

    xev_batch(&mut lp, &mut completions[..warm], &count, true);

    let allocs = common::allocations();
    let cpu = common::cpu_time();
    let (insert, dispatch, insert_allocs) = xev_batch(&mut lp, &mut completions, &count, false);
    let cpu = common::cpu_time() - cpu;
    let allocs = common::allocations() - allocs;
    Ok(Sample {
        cpu,
        wall: insert + dispatch,
        insert,
        dispatch,
        allocs,
        insert_allocs,
    })
}

/// Arm one timer per completion and run until all have fired: (insert, dispatch) time
/// and the allocations during insert.
fn xev_batch(
    lp: &mut Loop,
    completions: &mut [Completion],
    count: &Rc<Cell<usize>>,
    warm_up: bool,
) -> (Duration, Duration, u64) {
    count.set(0);
    let a0 = common::allocations();
    let t0 = Instant::now();
    for (i, c) in completions.iter_mut().enumerate() {
        // SAFETY: every completion lives in the boxed slice made by `run_xev`, which is
        // never moved or reallocated (only the `Box` pointer could move) and is dropped in
        // place after the loop, so its address stays valid from here until its drop.
        let c = unsafe { Pin::new_unchecked(c) };
        let count = Rc::clone(count);
        lp.timer(
            c,
            if warm_up { 0 } else { deadline_ms(i) },
            move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
                count.set(count.get() + 1);
                CallbackAction::Disarm
            },
        );
    }
    let t1 = Instant::now();
    let a1 = common::allocations();
    lp.run(RunMode::UntilDone).expect("xev loop run");
    let t2 = Instant::now();
    assert_eq!(count.get(), completions.len(), "every timer fired once");
    assert_eq!(lp.active(), 0);
    (t1 - t0, t2 - t1, a1 - a0)
}

/// Counts finished tokio tasks and wakes the waiting `block_on` future after the last.
struct Done {
    count: AtomicUsize,
    target: usize,
    waker: Mutex<Option<Waker>>,
}

impl Done {
    fn fire(&self) {
        if self.count.fetch_add(1, Ordering::AcqRel) + 1 == self.target {
            if let Some(w) = self.waker.lock().unwrap().take() {
                w.wake();
            }
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.count.load(Ordering::Acquire) >= self.target {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.count.load(Ordering::Acquire) >= self.target {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// Run a task-per-timer `batch` (its (insert, dispatch) times and insert allocations),
/// reading CPU time and allocations around it.
async fn measured(batch: impl Future<Output = (Duration, Duration, u64)>) -> Sample {
    let allocs = common::allocations();
    let cpu = common::cpu_time();
    let (insert, dispatch, insert_allocs) = batch.await;
    let cpu = common::cpu_time() - cpu;
    let allocs = common::allocations() - allocs;
    Sample {
        cpu,
        wall: insert + dispatch,
        insert,
        dispatch,
        allocs,
        insert_allocs,
    }
}

fn run_tokio(n: usize, warm: usize) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        tokio_batch(warm, true).await;
        measured(tokio_batch(n, false)).await
    })
}

/// Spawn one sleeping task per timer and wait for all: (spawn, run) time and the
/// allocations during spawn.
async fn tokio_batch(n: usize, warm_up: bool) -> (Duration, Duration, u64) {
    let a0 = common::allocations();
    let t0 = Instant::now();
    let done = Arc::new(Done {
        count: AtomicUsize::new(0),
        target: n,
        waker: Mutex::new(None),
    });
    for i in 0..n {
        let done = Arc::clone(&done);
        let ms = if warm_up { 0 } else { deadline_ms(i) };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            done.fire();
        });
    }
    let t1 = Instant::now();
    let a1 = common::allocations();
    done.wait().await;
    let t2 = Instant::now();
    (t1 - t0, t2 - t1, a1 - a0)
}

fn run_xev_async(backend: Backend, n: usize, warm: usize) -> Result<Sample, String> {
    if !backend.is_available() {
        return Err(format!("{} unavailable", backend.name()));
    }
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .build()
        .map_err(|e| format!("xev::rt::Builder::build: {e}"))?;
    Ok(rt.block_on(async {
        xev_async_batch(warm, true).await;
        measured(xev_async_batch(n, false)).await
    }))
}

/// [`tokio_batch`] on the xev runtime: the same tasks, the same counter (the `Arc` is not
/// needed here, as xev tasks need not be `Send`, but keeps the two variants identical).
async fn xev_async_batch(n: usize, warm_up: bool) -> (Duration, Duration, u64) {
    let a0 = common::allocations();
    let t0 = Instant::now();
    let done = Arc::new(Done {
        count: AtomicUsize::new(0),
        target: n,
        waker: Mutex::new(None),
    });
    for i in 0..n {
        let done = Arc::clone(&done);
        let ms = if warm_up { 0 } else { deadline_ms(i) };
        drop(xev::spawn(async move {
            xev::time::sleep(Duration::from_millis(ms)).await;
            done.fire();
        }));
    }
    let t1 = Instant::now();
    let a1 = common::allocations();
    done.wait().await;
    let t2 = Instant::now();
    (t1 - t0, t2 - t1, a1 - a0)
}

// ---------------------------------------------------------------------------------------
// Parent: interleave child runs, then print medians.

fn run_child(name: &str) -> Result<BTreeMap<String, String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = Command::new(exe)
        .args(["--variant", name])
        .output()
        .map_err(|e| format!("spawn child: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "child {name} failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with(RESULT_TAG))
        .ok_or_else(|| format!("child {name} printed no result: {stdout}"))?;
    Ok(line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Medians of one variant's runs.
struct Summary {
    cpu_ms: f64,
    wall_ms: f64,
    insert_ms: f64,
    dispatch_ms: f64,
    peak_rss: f64,
    bytes_per_timer: f64,
    allocs: f64,
    allocs_max: f64,
    /// Median allocations during insert (spawning) and during dispatch.
    insert_allocs: f64,
    dispatch_allocs: f64,
}

fn parent() {
    let quick = common::quick();
    let n = if quick { QUICK_TIMERS } else { FULL_TIMERS };
    let rounds = if quick { 1 } else { FULL_ROUNDS };
    let started = Instant::now();

    println!(
        "million-timers: {n} timers, timer i fires after (i/{TIMERS_PER_MS})+1 ms \
         (1..={} ms), run until all fired{}",
        deadline_ms(n - 1),
        if quick { "  [QUICK]" } else { "" }
    );
    println!(
        "{rounds} round(s) interleaved {}; each run in a fresh child process; \
         warm-up of {} 0 ms timers first; medians shown",
        VARIANTS.join(" "),
        warmup_timers(n)
    );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "Linux {}, {} CPU(s), size_of::<xev::Completion>() = {} B",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        std::mem::size_of::<Completion>()
    );
    println!();

    let mut runs: BTreeMap<&str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    let mut skipped: BTreeMap<&str, String> = BTreeMap::new();
    for round in 1..=rounds {
        for name in VARIANTS {
            if skipped.contains_key(name) {
                continue;
            }
            match run_child(name) {
                Ok(kv) if kv.contains_key("skipped") => {
                    skipped.insert(name, kv["skipped"].replace('_', " "));
                }
                Ok(kv) => {
                    let f = |k: &str| kv[k].parse::<f64>().unwrap_or(f64::NAN);
                    println!(
                        "  round {round} {name:<22} cpu {:>8.1} ms  wall {:>8.1} ms  \
                         insert {:>7.1} ms  peak RSS {:>7.1} MiB  allocs {} (insert {})",
                        f("cpu_ns") / 1e6,
                        f("wall_ns") / 1e6,
                        f("insert_ns") / 1e6,
                        f("peak_rss") / MIB,
                        kv["allocs"],
                        kv["insert_allocs"],
                    );
                    runs.entry(name).or_default().push(kv);
                }
                Err(e) => {
                    eprintln!("{e}");
                    skipped.insert(name, "failed (see stderr)".to_string());
                    runs.remove(name);
                }
            }
        }
    }

    let summaries: BTreeMap<&str, Summary> = runs
        .iter()
        .map(|(&name, rs)| {
            let col = |k: &str| -> Vec<f64> {
                rs.iter()
                    .map(|kv| kv[k].parse::<f64>().unwrap_or(f64::NAN))
                    .collect()
            };
            let per_timer: Vec<f64> = rs
                .iter()
                .map(|kv| {
                    let peak: f64 = kv["peak_rss"].parse().unwrap_or(f64::NAN);
                    let start: f64 = kv["rss_start"].parse().unwrap_or(f64::NAN);
                    (peak - start) / n as f64
                })
                .collect();
            let allocs = col("allocs");
            let allocs_max = allocs.iter().copied().fold(0.0, f64::max);
            let dispatch_allocs: Vec<f64> = rs
                .iter()
                .map(|kv| {
                    let all: f64 = kv["allocs"].parse().unwrap_or(f64::NAN);
                    let ins: f64 = kv["insert_allocs"].parse().unwrap_or(f64::NAN);
                    all - ins
                })
                .collect();
            let s = Summary {
                cpu_ms: common::median(col("cpu_ns")) / 1e6,
                wall_ms: common::median(col("wall_ns")) / 1e6,
                insert_ms: common::median(col("insert_ns")) / 1e6,
                dispatch_ms: common::median(col("dispatch_ns")) / 1e6,
                peak_rss: common::median(col("peak_rss")),
                bytes_per_timer: common::median(per_timer),
                allocs: common::median(allocs),
                allocs_max,
                insert_allocs: common::median(col("insert_allocs")),
                dispatch_allocs: common::median(dispatch_allocs),
            };
            (name, s)
        })
        .collect();

    println!();
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>11} {:>9} {:>8} {:>13} {:>19} {:>10} {:>10}",
        "variant",
        "CPU ms",
        "wall ms",
        "insert ms",
        "dispatch ms",
        "peak MiB",
        "B/timer",
        "allocs/timer",
        "= insert+dispatch",
        "CPU/tokio",
        "RSS/tokio"
    );
    let reference = summaries.get(REFERENCE);
    for name in VARIANTS {
        let Some(s) = summaries.get(name) else {
            let why = skipped.get(name).map_or("no data", String::as_str);
            println!("{name:<22} {why}");
            continue;
        };
        let ratio = |f: fn(&Summary) -> f64| {
            reference.map_or("n/a".to_string(), |r| format!("{:.3}x", f(s) / f(r)))
        };
        println!(
            "{:<22} {:>9.1} {:>9.1} {:>10.1} {:>11.1} {:>9.1} {:>8.0} {:>13.6} {:>19} {:>10} {:>10}",
            name,
            s.cpu_ms,
            s.wall_ms,
            s.insert_ms,
            s.dispatch_ms,
            s.peak_rss / MIB,
            s.bytes_per_timer,
            s.allocs / n as f64,
            format!(
                "{:.6}+{:.6}",
                s.insert_allocs / n as f64,
                s.dispatch_allocs / n as f64
            ),
            ratio(|s| s.cpu_ms),
            ratio(|s| s.peak_rss),
        );
    }
    println!();
    println!("CPU = user+sys (getrusage) over insert+dispatch; wall = insert + dispatch.");
    println!(
        "tokio insert = time to spawn the tasks; each sleep enters tokio's timer wheel on \
         its task's first poll, which is counted in dispatch."
    );
    println!(
        "peak MiB = VmHWM of the child (includes xev's preallocated completions, allocated \
         outside the timed region); B/timer = (peak RSS - RSS at child start) / timers."
    );
    println!(
        "allocs/timer = allocations during the measured batch (after warm-up) / timers, split \
         into insert (for the task-per-timer variants: spawning, one allocation per task plus \
         the shared counter) + dispatch (the sleeps themselves)."
    );

    println!();
    println!(
        "targets (checked, not asserted){}:",
        if quick {
            "; QUICK: at this size the process's base RSS dominates the peak, so judge the \
             RSS target on a full run"
        } else {
            ""
        }
    );
    for name in ["xev-io_uring", "xev-epoll"] {
        let Some(s) = summaries.get(name) else {
            continue;
        };
        match reference {
            Some(r) => {
                let q = s.cpu_ms / r.cpu_ms;
                println!(
                    "  {name:<18} CPU <= 0.3x tokio: {q:.3}x  {}",
                    if q <= 0.3 { "MET" } else { "MISSED" }
                );
            }
            None => println!("  {name:<18} CPU <= 0.3x tokio: no tokio data"),
        }
        // Judged in decimal megabytes (150 MB = 150e6 B = 143.1 MiB), on a full run only.
        let rss_verdict = if quick {
            "not judged (QUICK)"
        } else if s.peak_rss <= 150e6 {
            "MET"
        } else {
            "MISSED"
        };
        println!(
            "  {name:<18} 1M callback timers <= 150 MB: {:.1} MB {rss_verdict}  ({n} timers; \
             peak RSS {:.1} MiB, of which size_of::<Completion>() = {} B per timer)",
            s.peak_rss / 1e6,
            s.peak_rss / MIB,
            std::mem::size_of::<Completion>(),
        );
        let verdict = if s.allocs_max == 0.0 {
            "MET (exactly 0)".to_string()
        } else if s.allocs_max < n as f64 / 1000.0 {
            format!(
                "MET as a rate, not exactly 0: no allocation per timer; these are the loop's \
                 containers growing past the {}-timer warm-up (XEV_TIMERS_WARMUP={n} \
                 measures the steady state)",
                warmup_timers(n)
            )
        } else {
            "MISSED".to_string()
        };
        println!(
            "  {name:<18} 0 allocations per timer after warm-up: {} allocations in {n} \
             timers (median; max {}) = {:.6}/timer  {verdict}",
            s.allocs,
            s.allocs_max,
            s.allocs / n as f64,
        );
    }
    for name in ["xev-async-io_uring", "xev-async-epoll"] {
        let Some(s) = summaries.get(name) else {
            continue;
        };
        match reference {
            Some(r) => {
                let q = s.cpu_ms / r.cpu_ms;
                println!(
                    "  {name:<18} CPU <= 0.6x tokio: {q:.3}x  {}",
                    if q <= 0.6 { "MET" } else { "MISSED" }
                );
                let q = s.peak_rss / r.peak_rss;
                println!(
                    "  {name:<18} peak RSS <= 0.5x tokio: {q:.3}x ({:.1} vs {:.1} MiB)  {}",
                    s.peak_rss / MIB,
                    r.peak_rss / MIB,
                    if q <= 0.5 { "MET" } else { "MISSED" }
                );
            }
            None => println!("  {name:<18} CPU, RSS vs tokio: no tokio data"),
        }
        // Spawning: one allocation per task is the task itself; what is left over is the
        // shared counter (1) and any container growth.
        let extra = s.insert_allocs - n as f64;
        let verdict = if s.dispatch_allocs == 0.0 {
            "MET (exactly 0 per sleep)"
        } else if s.dispatch_allocs < n as f64 / 1000.0 {
            "MET as a rate (a few container growths, not per sleep)"
        } else {
            "MISSED"
        };
        println!(
            "  {name:<18} 0 allocations per awaited sleep after warm-up: dispatch {} \
             allocations in {n} sleeps = {:.6}/sleep  {verdict}",
            s.dispatch_allocs,
            s.dispatch_allocs / n as f64,
        );
        println!(
            "  {name:<18} spawning: {} allocations for {n} tasks = {:.6}/task: one per task \
             (the task itself) + {} (the batch's shared counter `Arc` is 1; anything more is \
             container growth)",
            s.insert_allocs,
            s.insert_allocs / n as f64,
            extra,
        );
    }
    println!();
    println!("bench duration: {:.1} s", started.elapsed().as_secs_f64());
}

const MIB: f64 = 1024.0 * 1024.0;
