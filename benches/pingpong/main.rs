//! Ping-pong over loopback TCP, after libxev's `src/bench/ping-pongs.zig`.
//!
//! A client thread and a server thread each run their own event loop. The client sends a
//! message, the server echoes the bytes back, and the client sends the next message when
//! the whole reply has arrived. Two workloads:
//!
//! - 1 connection, `"PING\n"` (5 bytes), 500,000 round trips;
//! - 100 connections at once, 64-byte messages, 500,000 round trips in total.
//!
//! Variants, measured in the same process and interleaved (A B C ... A B C ...):
//!
//! 1. xev on io_uring (callback API);
//! 2. xev on epoll (callback API);
//! 3. xev async on io_uring (`xev::rt` runtime, one task per connection, `xev::net`);
//! 4. xev async on epoll (the same);
//! 5. a raw io_uring loop written directly on the `io-uring` crate (the reference);
//! 6. tokio, one `current_thread` runtime per thread.
//!
//! Each run: fresh sockets (connection setup is not timed), a warm-up, then the timed
//! section, over which the process-wide allocation counter and CPU time are read.
//! `XEV_BENCH_QUICK=1` runs 2,000 round trips per variant once (CI smoke run).
//!
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_BENCH_CONNS=1|100` (one workload), `XEV_BENCH_ROUND_TRIPS=N` (timed round trips
//! per run), `XEV_BENCH_PIN=none|same|split` (let the scheduler place the threads, both
//! on CPU 0, or, the default, client on CPU 0 and server on CPU 1: on this 2-core machine
//! pinning removes most of the run-to-run noise from thread migration).
//!
//! Run with `cargo bench --bench pingpong`.

#[path = "../common/mod.rs"]
mod common;
mod raw;
mod tokio_side;
mod xev_async_side;
mod xev_side;

use tokio_side::{tokio_client, tokio_server};
use xev_async_side::{xev_async_client, xev_async_server};
use xev_side::{xev_client, xev_server};

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use xev::{
    Backend, Buffer, CallbackAction, Completion, CompletionState, Loop, Op, OpResult, Options,
    ReadError, RunMode,
};

/// Size of every receive buffer (and of the server's echo buffers).
const RECV_BUF: usize = 4096;
/// io_uring entries, for xev (its default) and the raw reference alike.
const ENTRIES: u32 = 256;
/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(300);

const PING: &[u8] = b"PING\n";
const MSG64: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

#[derive(Clone, Copy)]
struct Workload {
    title: &'static str,
    conns: usize,
    msg: &'static [u8],
    warmup: u64,
    timed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    XevAsyncIoUring,
    XevAsyncEpoll,
    RawIoUring,
    Tokio,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::XevAsyncIoUring => "xev async io_uring",
            Variant::XevAsyncEpoll => "xev async epoll",
            Variant::RawIoUring => "raw io_uring (ref)",
            Variant::Tokio => "tokio current_thread",
        }
    }
}

/// One measurement's figures.
#[derive(Clone, Copy)]
struct Sample {
    per_sec: f64,
    /// Allocations (all threads) during the timed section.
    allocs: u64,
    allocs_per_rt: f64,
    cpu_us_per_rt: f64,
}

// ---------------------------------------------------------------------------------------
// Round-trip accounting shared by every client implementation (one per client thread).

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    allocs: u64,
    cpu: Duration,
}

impl Mark {
    fn now() -> Mark {
        // Read the counters before the clock on the way in and after it on the way out
        // would be marginally tighter; the difference is one getrusage call.
        Mark {
            at: Instant::now(),
            allocs: common::allocations(),
            cpu: common::cpu_time(),
        }
    }
}

/// Counts round trips across all connections of one client: `claim` before sending,
/// `complete` when the whole reply is in. Marks the timed section's start when `warmup`
/// round trips are done and its end when all `total` are.
struct Counter {
    warmup: u64,
    total: u64,
    sent: Cell<u64>,
    done: Cell<u64>,
    start: Cell<Option<Mark>>,
    end: Cell<Option<Mark>>,
    error: RefCell<Option<String>>,
}

impl Counter {
    fn new(warmup: u64, total: u64) -> Counter {
        Counter {
            warmup,
            total,
            sent: Cell::new(0),
            done: Cell::new(0),
            start: Cell::new(None),
            end: Cell::new(None),
            error: RefCell::new(None),
        }
    }

    /// Take the right to send one more message; false when all are spoken for.
    fn claim(&self) -> bool {
        let s = self.sent.get();
        if s < self.total {
            self.sent.set(s + 1);
            true
        } else {
            false
        }
    }

    fn complete(&self) {
        let d = self.done.get() + 1;
        self.done.set(d);
        if d == self.warmup {
            self.start.set(Some(Mark::now()));
        }
        if d == self.total {
            self.end.set(Some(Mark::now()));
        }
    }

    fn fail(&self, what: String) {
        self.error.borrow_mut().get_or_insert(what);
    }

    fn marks(&self) -> Result<(Mark, Mark), String> {
        if let Some(e) = self.error.borrow().clone() {
            return Err(e);
        }
        match (self.start.get(), self.end.get()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!(
                "client stopped after {} of {} round trips",
                self.done.get(),
                self.total
            )),
        }
    }
}

/// Drop the first `n` bytes of a send buffer after a short send.
fn advance(buf: &mut Buffer, n: usize) {
    let len = buf.len();
    buf.as_mut_slice().copy_within(n..len, 0);
    buf.set_len(len - n);
}

// ---------------------------------------------------------------------------------------
// One measurement.

/// `n` connected loopback pairs: (client ends, server ends), non-blocking, no Nagle.
fn socket_pairs(n: usize) -> io::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        for x in [&c, &s] {
            x.set_nodelay(true)?;
            x.set_nonblocking(true)?;
        }
        clients.push(c);
        servers.push(s);
    }
    Ok((clients, servers))
}

/// Check the echo path with blocking I/O before the loops take over (catches a broken
/// setup early instead of as a hang).
fn sanity_check(c: &TcpStream, s: &TcpStream) -> io::Result<()> {
    for x in [c, s] {
        x.set_nonblocking(false)?;
    }
    (&*c).write_all(b"x")?;
    let mut b = [0u8; 1];
    (&*s).read_exact(&mut b)?;
    (&*s).write_all(&b)?;
    (&*c).read_exact(&mut b)?;
    for x in [c, s] {
        x.set_nonblocking(true)?;
    }
    Ok(())
}

fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let (clients, servers) = socket_pairs(w.conns).map_err(|e| format!("setup: {e}"))?;
    sanity_check(&clients[0], &servers[0]).map_err(|e| format!("setup: {e}"))?;
    let (warmup, total, msg) = (w.warmup, w.warmup + w.timed, w.msg);
    watchdog_arm(MEASUREMENT_LIMIT);
    let (cpu_client, cpu_server) = pin_plan();
    let server = thread::Builder::new()
        .name("pingpong-server".into())
        .spawn(move || {
            pin_to(cpu_server);
            let ctr = Rc::new(Counter::new(0, 0));
            match v {
                Variant::XevIoUring => xev_server(Backend::IoUring, &servers, &ctr),
                Variant::XevEpoll => xev_server(Backend::Epoll, &servers, &ctr),
                Variant::XevAsyncIoUring => xev_async_server(Backend::IoUring, servers, &ctr),
                Variant::XevAsyncEpoll => xev_async_server(Backend::Epoll, servers, &ctr),
                Variant::RawIoUring => raw::server(&servers, &ctr),
                Variant::Tokio => tokio_server(servers, &ctr),
            }
            // Sockets (if not moved into a runtime) are closed here, when `servers` drops.
            let e = ctr.error.borrow().clone();
            e
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let client = thread::Builder::new()
        .name("pingpong-client".into())
        .spawn(move || {
            pin_to(cpu_client);
            let ctr = Rc::new(Counter::new(warmup, total));
            match v {
                Variant::XevIoUring => xev_client(Backend::IoUring, &clients, &ctr, msg),
                Variant::XevEpoll => xev_client(Backend::Epoll, &clients, &ctr, msg),
                Variant::XevAsyncIoUring => xev_async_client(Backend::IoUring, clients, &ctr, msg),
                Variant::XevAsyncEpoll => xev_async_client(Backend::Epoll, clients, &ctr, msg),
                Variant::RawIoUring => raw::client(&clients, &ctr, msg),
                Variant::Tokio => tokio_client(clients, &ctr, msg),
            }
            // The client's sockets are closed by now, so the server sees end of file.
            ctr.marks()
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let marks = client
        .join()
        .map_err(|_| "client thread panicked".to_string())?;
    let server_err = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    watchdog_disarm();
    if let Some(e) = server_err {
        return Err(e);
    }
    let (a, b) = marks?;
    let n = w.timed as f64;
    let secs = (b.at - a.at).as_secs_f64();
    Ok(Sample {
        per_sec: n / secs,
        allocs: b.allocs - a.allocs,
        allocs_per_rt: (b.allocs - a.allocs) as f64 / n,
        cpu_us_per_rt: (b.cpu.saturating_sub(a.cpu)).as_secs_f64() * 1e6 / n,
    })
}

// ---------------------------------------------------------------------------------------
// CPU placement: XEV_BENCH_PIN=none | same (both threads on CPU 0) | split (the default:
// client on CPU 0, server on CPU 1).

fn pin_mode() -> String {
    std::env::var("XEV_BENCH_PIN").unwrap_or_else(|_| "split".into())
}

fn pin_plan() -> (Option<usize>, Option<usize>) {
    match pin_mode().as_str() {
        "same" => (Some(0), Some(0)),
        "split" => (Some(0), Some(1)),
        _ => (None, None),
    }
}

fn pin_to(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity(0, ..)
    // applies to the calling thread and only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "pingpong: cannot pin to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Watchdog: a measurement that hangs ends the process instead of the CI job's time.

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since EPOCH after which the process exits; 0: no deadline.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);

fn watchdog_start() {
    let epoch = *EPOCH.get_or_init(Instant::now);
    thread::Builder::new()
        .name("pingpong-watchdog".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(200));
            let d = DEADLINE_MS.load(Ordering::Relaxed);
            if d != 0 && epoch.elapsed().as_millis() as u64 > d {
                eprintln!("pingpong: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting");
                std::process::exit(2);
            }
        })
        .expect("spawn watchdog");
}

fn watchdog_arm(limit: Duration) {
    let now = EPOCH.get_or_init(Instant::now).elapsed();
    DEADLINE_MS.store((now + limit).as_millis() as u64, Ordering::Relaxed);
}

fn watchdog_disarm() {
    DEADLINE_MS.store(0, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Report.

fn header(quick: bool) {
    let argv: Vec<String> = std::env::args().collect();
    let cmd = if quick {
        "XEV_BENCH_QUICK=1 cargo bench --bench pingpong"
    } else {
        "cargo bench --bench pingpong"
    };
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    println!("pingpong: loopback TCP echo, client and server loops on two threads");
    println!("command: {cmd}");
    println!("argv:    {}", argv.join(" "));
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    println!("nproc: {nproc}   cpu: {cpu}   kernel: {kernel}   loadavg: {load}");
    println!(
        "thread placement (XEV_BENCH_PIN): {}   ring entries: {ENTRIES}",
        pin_mode()
    );
    println!(
        "io_uring available: {}   mode: {}",
        Backend::IoUring.is_available(),
        if quick {
            "quick (1 round)"
        } else {
            "full (median of 3 rounds, variants interleaved)"
        }
    );
}

fn table(w: &Workload, variants: &[Variant], samples: &[Vec<Sample>], rounds: usize) {
    println!();
    println!(
        "== {}: {} connection(s), {}-byte messages, {} timed round trips per run \
         (+{} warm-up), {} round(s) ==",
        w.title,
        w.conns,
        w.msg.len(),
        w.timed,
        w.warmup,
        rounds
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        if s.is_empty() {
            return None;
        }
        Some(Sample {
            per_sec: common::median(s.iter().map(|x| x.per_sec).collect()),
            allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
            allocs_per_rt: s.iter().map(|x| x.allocs_per_rt).fold(0.0, f64::max),
            cpu_us_per_rt: common::median(s.iter().map(|x| x.cpu_us_per_rt).collect()),
        })
    };
    let reference = variants
        .iter()
        .position(|&v| v == Variant::RawIoUring)
        .and_then(med);
    println!(
        "{:<22} {:>14} {:>16} {:>16} {:>14} {:>10}",
        "variant",
        "round trips/s",
        "vs raw io_uring",
        "allocs/rt (max)",
        "allocs (max)",
        "cpu µs/rt"
    );
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => {
                let ratio = reference.map_or("-".to_string(), |r| {
                    format!("{:.3}x", s.per_sec / r.per_sec)
                });
                println!(
                    "{:<22} {:>14.0} {:>16} {:>16.4} {:>14} {:>10.2}",
                    v.name(),
                    s.per_sec,
                    ratio,
                    s.allocs_per_rt,
                    s.allocs,
                    s.cpu_us_per_rt
                );
            }
            None => println!("{:<22} {:>14}", v.name(), "failed"),
        }
    }
    let rates: Vec<String> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let all: Vec<String> = samples[i]
                .iter()
                .map(|s| format!("{:.0}", s.per_sec))
                .collect();
            format!("{}: [{}]", v.name(), all.join(", "))
        })
        .collect();
    println!("per-round round trips/s: {}", rates.join("; "));
    let Some(r) = reference else { return };
    for (i, v) in variants.iter().enumerate() {
        if !matches!(v, Variant::XevAsyncIoUring | Variant::XevAsyncEpoll) {
            continue;
        }
        if let Some(s) = med(i) {
            let q = s.per_sec / r.per_sec;
            println!(
                "target: {} >= 0.9x raw io_uring: {q:.3}x  {}",
                v.name(),
                if q >= 0.9 { "MET" } else { "MISSED" }
            );
        }
    }
}

/// Profiling filters: `XEV_BENCH_ONLY=epoll,tokio` keeps the variants whose name contains
/// one of the words; `XEV_BENCH_CONNS=100` keeps one workload. Unset: everything.
fn wanted(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| name.contains(w.trim())),
        _ => true,
    }
}

fn wanted_conns(conns: usize) -> bool {
    match std::env::var("XEV_BENCH_CONNS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| w.trim() == conns.to_string()),
        _ => true,
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    header(quick);
    watchdog_start();
    let (rounds, mut timed, warmup) = if quick {
        (1, 2_000, 1_000)
    } else {
        (3, 500_000, 10_000)
    };
    if let Some(n) = std::env::var("XEV_BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        timed = n;
    }
    let workloads = [
        Workload {
            title: "ping-pong",
            conns: 1,
            msg: PING,
            warmup,
            timed,
        },
        Workload {
            title: "ping-pongs x100",
            conns: 100,
            msg: MSG64,
            warmup,
            timed,
        },
    ];
    let uring = Backend::IoUring.is_available();
    let variants: Vec<Variant> = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::XevAsyncIoUring,
        Variant::XevAsyncEpoll,
        Variant::RawIoUring,
        Variant::Tokio,
    ]
    .into_iter()
    .filter(|v| {
        uring
            || !matches!(
                v,
                Variant::XevIoUring | Variant::XevAsyncIoUring | Variant::RawIoUring
            )
    })
    .filter(|v| wanted("XEV_BENCH_ONLY", v.name()))
    .collect();
    if !uring {
        println!("io_uring is not available here: its variants are skipped");
    }
    let mut failed = false;
    for w in workloads.iter().filter(|w| wanted_conns(w.conns)) {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, &v) in variants.iter().enumerate() {
                match measure(v, w) {
                    Ok(s) => samples[i].push(s),
                    Err(e) => {
                        failed = true;
                        eprintln!("pingpong: {} / {}: {e}", w.title, v.name());
                    }
                }
            }
        }
        table(w, &variants, &samples, rounds);
    }
    println!();
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}
