//! UDP ping-pong over loopback, after libxev's `src/bench/ping-udp1.zig`.
//!
//! One client socket and one server socket, each driven by its own event loop on its own
//! thread. The client sends the datagram `"PING\n"` to the server's address, the server
//! echoes each datagram back to the address it came from (`recvmsg`/`sendmsg` on
//! unconnected sockets, as libxev's `UDP` does), and the client sends the next ping when
//! the pong has arrived, one datagram in flight. (libxev's ping-udp1 runs one socket that
//! pings itself on one loop, 500,000 round trips; here client and server are two sockets
//! on two threads, like `pingpong`.)
//!
//! Each round trip wakes a blocked thread on the other CPU twice, which on the 2-vCPU VM
//! this was written on costs ~60 µs (~16,000 round trips/s for every variant), so 500,000
//! round trips x 6 variants x 3 rounds would take ~10 minutes. A full run therefore
//! times 100,000 round trips per run (300,000 per variant over the 3 rounds, under 3
//! minutes); `XEV_BENCH_ROUND_TRIPS=500000` gives libxev's count per run.
//!
//! Variants, measured in the same process and interleaved (A B C ... A B C ...):
//!
//! 1. xev on io_uring (callback API: the `xev::Udp` watcher, `read` rearmed, `write`
//!    re-armed from the read callback);
//! 2. xev on epoll (the same);
//! 3. xev async on io_uring (`xev::rt` runtime, `xev::net::UdpSocket`, owned buffers);
//! 4. xev async on epoll (the same);
//! 5. a raw io_uring loop written directly on the `io-uring` crate (the reference:
//!    `RecvMsg`/`SendMsg` SQEs, one ring per thread);
//! 6. tokio, one `current_thread` runtime per thread (`tokio::net::UdpSocket`).
//!
//! Each run: fresh sockets (setup is not timed), a warm-up, then the timed section, over
//! which the process-wide allocation counter and CPU time (both threads) are read. The
//! server stops on an empty datagram that the main thread sends once the client is done.
//! `XEV_BENCH_QUICK=1` runs 1,000 round trips (+500 warm-up) per variant once (CI smoke
//! run).
//!
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_BENCH_ROUND_TRIPS=N` (timed round trips per run), `XEV_BENCH_PIN=none|same|split`
//! (let the scheduler place the threads, both on CPU 0, or, the default, client on CPU 0
//! and server on CPU 1).
//!
//! Run with `cargo bench --bench ping_udp`.

#[path = "../common/mod.rs"]
mod common;
mod raw;
mod tokio_side;
mod xev_async_side;
mod xev_side;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use xev::Backend;

/// Size of every receive buffer (libxev's ping-udp1 reads into 1024 bytes).
const RECV_BUF: usize = 1024;
/// io_uring entries, for xev (its default) and the raw reference alike.
const ENTRIES: u32 = 256;
/// A single measurement that takes longer than this is a hang (a lost datagram, which
/// loopback does not do with one in flight): the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(120);

const PING: &[u8] = b"PING\n";

#[derive(Clone, Copy)]
struct Workload {
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

    fn is_xev(self) -> bool {
        !matches!(self, Variant::RawIoUring | Variant::Tokio)
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
// Round-trip accounting shared by every client implementation.

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    allocs: u64,
    cpu: Duration,
}

impl Mark {
    fn now() -> Mark {
        Mark {
            at: Instant::now(),
            allocs: common::allocations(),
            cpu: common::cpu_time(),
        }
    }
}

/// Counts the client's round trips: `claim` before sending a ping, `complete` when its
/// pong is in. Marks the timed section's start when `warmup` round trips are done and its
/// end when all `total` are.
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

    /// Take the right to send one more ping; false when all are spoken for.
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

/// A pong must be the ping, whole.
fn check_pong(data: &[u8]) -> Result<(), String> {
    if data == PING {
        Ok(())
    } else {
        Err(format!("client: unexpected reply {data:?}"))
    }
}

// ---------------------------------------------------------------------------------------
// One measurement.

/// A client and a server socket on 127.0.0.1, non-blocking, not connected.
fn socket_pair() -> io::Result<(UdpSocket, UdpSocket, SocketAddr)> {
    let client = UdpSocket::bind("127.0.0.1:0")?;
    let server = UdpSocket::bind("127.0.0.1:0")?;
    let server_addr = server.local_addr()?;
    // Check the echo path with blocking I/O before the loops take over.
    client.set_read_timeout(Some(Duration::from_secs(5)))?;
    server.set_read_timeout(Some(Duration::from_secs(5)))?;
    client.send_to(b"x", server_addr)?;
    let mut b = [0u8; 8];
    let (n, from) = server.recv_from(&mut b)?;
    server.send_to(&b[..n], from)?;
    let (n, _) = client.recv_from(&mut b)?;
    if &b[..n] != b"x" {
        return Err(io::Error::other("sanity check: wrong echo"));
    }
    client.set_nonblocking(true)?;
    server.set_nonblocking(true)?;
    Ok((client, server, server_addr))
}

/// The server's stop signal: an empty datagram from a socket of its own.
fn stop_server(server_addr: SocketAddr) -> io::Result<()> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.send_to(&[], server_addr)?;
    Ok(())
}

fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let (client, server, server_addr) = socket_pair().map_err(|e| format!("setup: {e}"))?;
    let (warmup, total) = (w.warmup, w.warmup + w.timed);
    watchdog_arm(MEASUREMENT_LIMIT);
    let (cpu_client, cpu_server) = pin_plan();
    let server = thread::Builder::new()
        .name("ping-udp-server".into())
        .spawn(move || {
            pin_to(cpu_server);
            let ctr = Rc::new(Counter::new(0, 0));
            match v {
                Variant::XevIoUring => xev_side::server(Backend::IoUring, server, &ctr),
                Variant::XevEpoll => xev_side::server(Backend::Epoll, server, &ctr),
                Variant::XevAsyncIoUring => xev_async_side::server(Backend::IoUring, server, &ctr),
                Variant::XevAsyncEpoll => xev_async_side::server(Backend::Epoll, server, &ctr),
                Variant::RawIoUring => raw::server(server, &ctr),
                Variant::Tokio => tokio_side::server(server, &ctr),
            }
            let e = ctr.error.borrow().clone();
            e
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let client = thread::Builder::new()
        .name("ping-udp-client".into())
        .spawn(move || {
            pin_to(cpu_client);
            let ctr = Rc::new(Counter::new(warmup, total));
            match v {
                Variant::XevIoUring => {
                    xev_side::client(Backend::IoUring, client, server_addr, &ctr)
                }
                Variant::XevEpoll => xev_side::client(Backend::Epoll, client, server_addr, &ctr),
                Variant::XevAsyncIoUring => {
                    xev_async_side::client(Backend::IoUring, client, server_addr, &ctr)
                }
                Variant::XevAsyncEpoll => {
                    xev_async_side::client(Backend::Epoll, client, server_addr, &ctr)
                }
                Variant::RawIoUring => raw::client(client, server_addr, &ctr),
                Variant::Tokio => tokio_side::client(client, server_addr, &ctr),
            }
            ctr.marks()
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let marks = client.join();
    // Whatever happened to the client, let the server go.
    let stopped = stop_server(server_addr);
    let marks = marks.map_err(|_| "client thread panicked".to_string())?;
    stopped.map_err(|e| format!("stopping the server: {e}"))?;
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
    if let Err(e) = common::pin_thread(cpu) {
        eprintln!("ping_udp: cannot pin to CPU {cpu}: {e}");
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
        .name("ping-udp-watchdog".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(200));
            let d = DEADLINE_MS.load(Ordering::Relaxed);
            if d != 0 && epoch.elapsed().as_millis() as u64 > d {
                eprintln!("ping_udp: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting");
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
        "XEV_BENCH_QUICK=1 cargo bench --bench ping_udp"
    } else {
        "cargo bench --bench ping_udp"
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
    println!("ping_udp: loopback UDP echo, client and server loops on two threads");
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
        "== ping-udp: 1 client socket, {}-byte datagrams, {} timed round trips per run \
         (+{} warm-up), {} round(s) ==",
        PING.len(),
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
    let find = |want: Variant| variants.iter().position(|&v| v == want).and_then(med);
    let reference = find(Variant::RawIoUring);
    let tokio = find(Variant::Tokio);
    let ratio = |s: &Sample, r: Option<Sample>| {
        r.map_or("-".to_string(), |r| {
            format!("{:.3}x", s.per_sec / r.per_sec)
        })
    };
    println!(
        "{:<22} {:>14} {:>16} {:>10} {:>16} {:>14} {:>10}",
        "variant",
        "round trips/s",
        "vs raw io_uring",
        "vs tokio",
        "allocs/rt (max)",
        "allocs (max)",
        "cpu µs/rt"
    );
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => println!(
                "{:<22} {:>14.0} {:>16} {:>10} {:>16.4} {:>14} {:>10.2}",
                v.name(),
                s.per_sec,
                ratio(&s, reference),
                ratio(&s, tokio),
                s.allocs_per_rt,
                s.allocs,
                s.cpu_us_per_rt
            ),
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
    let Some(t) = tokio else { return };
    for (i, v) in variants.iter().enumerate() {
        if !v.is_xev() {
            continue;
        }
        if let Some(s) = med(i) {
            let q = s.per_sec / t.per_sec;
            println!(
                "target: {} >= tokio current_thread: {q:.3}x  {}",
                v.name(),
                if q >= 1.0 { "MET" } else { "MISSED" }
            );
        }
    }
    for (i, v) in variants.iter().enumerate() {
        if let Some(s) = med(i).filter(|_| v.is_xev()) {
            println!(
                "target: {} allocations per round trip after warm-up = 0: {}  {}",
                v.name(),
                s.allocs,
                if s.allocs == 0 { "MET" } else { "MISSED" }
            );
        }
    }
}

/// Profiling filter: `XEV_BENCH_ONLY=epoll,tokio` keeps the variants whose name contains
/// one of the words. Unset: everything.
fn wanted(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| name.contains(w.trim())),
        _ => true,
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    header(quick);
    watchdog_start();
    let (rounds, mut timed, warmup) = if quick {
        (1, 1_000, 500)
    } else {
        (3, 100_000, 5_000)
    };
    if let Some(n) = std::env::var("XEV_BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        timed = n;
    }
    let w = Workload { warmup, timed };
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
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, &v) in variants.iter().enumerate() {
            match measure(v, &w) {
                Ok(s) => samples[i].push(s),
                Err(e) => {
                    failed = true;
                    eprintln!("ping_udp: {}: {e}", v.name());
                }
            }
        }
    }
    table(&w, &variants, &samples, rounds);
    println!();
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}
