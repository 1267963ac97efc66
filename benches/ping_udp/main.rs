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
use std::thread;
use std::time::{Duration, Instant};

use common::net::Variant;
use common::report::{per_round_line, ratio, ratio_target, target};
use common::roundtrip::{Counter, Sample};
use common::{sys, watchdog};
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

// ---------------------------------------------------------------------------------------
// Round-trip accounting: `common::roundtrip`'s `Counter`, one per client thread.

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
    watchdog::arm(MEASUREMENT_LIMIT);
    let (cpu_client, cpu_server) = common::net::pin_plan();
    let server = thread::Builder::new()
        .name("ping-udp-server".into())
        .spawn(move || {
            sys::pin_to("ping_udp", cpu_server);
            let ctr = Rc::new(Counter::new(0, 0));
            match v {
                Variant::XevIoUring => xev_side::server(Backend::IoUring, server, &ctr),
                Variant::XevEpoll => xev_side::server(Backend::Epoll, server, &ctr),
                Variant::XevAsyncIoUring => xev_async_side::server(Backend::IoUring, server, &ctr),
                Variant::XevAsyncEpoll => xev_async_side::server(Backend::Epoll, server, &ctr),
                Variant::RawIoUring => raw::server(server, &ctr),
                Variant::Tokio => tokio_side::server(server, &ctr),
            }
            ctr.error()
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let client = thread::Builder::new()
        .name("ping-udp-client".into())
        .spawn(move || {
            sys::pin_to("ping_udp", cpu_client);
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
    watchdog::disarm();
    if let Some(e) = server_err {
        return Err(e);
    }
    let (a, b) = marks?;
    Ok(Sample::between(a, b, w.timed))
}

// ---------------------------------------------------------------------------------------
// Report.

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
    let med = |i: usize| Sample::median(&samples[i]);
    let find = |want: Variant| variants.iter().position(|&v| v == want).and_then(med);
    let reference = find(Variant::RawIoUring);
    let tokio = find(Variant::Tokio);
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
                ratio(s.per_sec, reference.map(|r| r.per_sec)),
                ratio(s.per_sec, tokio.map(|t| t.per_sec)),
                s.allocs_per_rt,
                s.allocs,
                s.cpu_us_per_rt
            ),
            None => println!("{:<22} {:>14}", v.name(), "failed"),
        }
    }
    per_round_line(
        "round trips/s",
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
    );
    let Some(t) = tokio else { return };
    for (i, v) in variants.iter().enumerate() {
        if !v.is_xev() {
            continue;
        }
        if let Some(s) = med(i) {
            ratio_target(v.name(), "tokio current_thread", s.per_sec / t.per_sec, 1.0);
        }
    }
    for (i, v) in variants.iter().enumerate() {
        if let Some(s) = med(i).filter(|_| v.is_xev()) {
            target(
                format_args!(
                    "{} allocations per round trip after warm-up = 0: {}",
                    v.name(),
                    s.allocs
                ),
                s.allocs == 0,
            );
        }
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    common::net::header(
        "ping_udp",
        "ping_udp: loopback UDP echo, client and server loops on two threads",
        quick,
        ENTRIES,
    );
    watchdog::start(
        "ping-udp-watchdog",
        Duration::from_millis(200),
        format!("ping_udp: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting"),
    );
    let (rounds, mut timed, warmup) = if quick {
        (1, 1_000, 500)
    } else {
        (3, 100_000, 5_000)
    };
    if let Some(n) = common::env_parse("XEV_BENCH_ROUND_TRIPS") {
        timed = n;
    }
    let w = Workload { warmup, timed };
    let variants = Variant::selected();
    let mut failed = false;
    let samples = common::report::interleaved(
        rounds,
        &variants,
        &mut failed,
        |v| measure(v, &w),
        |v| format!("ping_udp: {}", v.name()),
    );
    table(&w, &variants, &samples, rounds);
    common::report::finish("total wall time", started, failed);
}
