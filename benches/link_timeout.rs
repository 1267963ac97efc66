//! The cost of a time limit on a read: `TcpStream::read` against
//! `TcpStream::read_timeout` and against `xev::time::timeout(d, stream.read(buf))` (a
//! runtime timer, dropped when the read wins). `read_timeout` uses a runtime timer that
//! cancels the read when it fires; with `XEV_LINK_TIMEOUTS=1` it carries the limit on
//! the read itself (`Loop::add_with_timeout`: one LINK_TIMEOUT SQE linked to the read on
//! io_uring, a timer entry in the loop on epoll). Run once without and once with it.
//!
//! One thread, one runtime, one loopback TCP connection: a task echoes 8-byte messages
//! back, the main task sends one and reads the reply, `n` times (both reads of each
//! round trip carry the limit in the limited variants). Both ends live in one thread, so
//! the figure is CPU per round trip, not scheduling: CPU µs per round trip (thread CPU
//! time), median of the rounds, variants interleaved.
//!
//! `XEV_BENCH_QUICK=1`: 2,000 round trips, one round. Run with
//! `cargo bench --bench link_timeout` (and `XEV_LINK_TIMEOUTS=1 cargo bench ...`).

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use xev::net::{TcpListener, TcpStream};

#[derive(Clone, Copy, PartialEq)]
enum Limit {
    None,
    Linked,
    Timer,
}

impl Limit {
    fn name(self) -> &'static str {
        match self {
            Limit::None => "read",
            Limit::Linked => "read_timeout",
            Limit::Timer => "timeout(read) (timer)",
        }
    }
}

const LIMIT: Duration = Duration::from_secs(10);

async fn read(s: &TcpStream, buf: Vec<u8>, limit: Limit) -> (usize, Vec<u8>) {
    let (r, b) = match limit {
        Limit::None => s.read(buf).await,
        Limit::Linked => s.read_timeout(buf, LIMIT).await,
        Limit::Timer => xev::time::timeout(LIMIT, s.read(buf))
            .await
            .expect("no timeout"),
    };
    (r.expect("read"), b)
}

/// `n` round trips of an 8-byte message from `c`, reading into `b`.
async fn round_trips(c: &TcpStream, mut b: Vec<u8>, limit: Limit, n: u64) -> Vec<u8> {
    let msg: &'static [u8] = b"ping-xev";
    for _ in 0..n {
        c.write_all(msg).await.0.unwrap();
        let mut got = 0;
        while got < msg.len() {
            let (k, back) = read(c, b, limit).await;
            b = back;
            got += k;
        }
    }
    b
}

/// (CPU µs per round trip, wall µs per round trip).
fn measure(backend: xev::Backend, limit: Limit, n: u64) -> (f64, f64) {
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        c.set_nodelay(true).unwrap();
        s.set_nodelay(true).unwrap();
        let echo = xev::spawn(async move {
            let mut buf = vec![0u8; 64];
            loop {
                let (k, b) = read(&s, buf, limit).await;
                if k == 0 {
                    return;
                }
                let (r, b) = s.write_all(b[..k].to_vec()).await;
                r.unwrap();
                buf = b;
                buf.resize(64, 0);
            }
        });
        let buf = round_trips(&c, vec![0u8; 64], limit, n / 10).await; // warm-up
        let cpu0 = common::thread_cpu_time();
        let t0 = Instant::now();
        let _ = round_trips(&c, buf, limit, n).await;
        let wall = t0.elapsed();
        let cpu = common::thread_cpu_time() - cpu0;
        drop(c);
        echo.await.unwrap();
        (
            cpu.as_secs_f64() * 1e6 / n as f64,
            wall.as_secs_f64() * 1e6 / n as f64,
        )
    })
}

fn main() {
    let quick = common::quick();
    let (rounds, n) = if quick { (1, 2_000) } else { (5, 100_000) };
    let how = match std::env::var_os("XEV_LINK_TIMEOUTS").is_some_and(|v| v == "1") {
        true => "linked to the read (XEV_LINK_TIMEOUTS=1)",
        false => "a runtime timer",
    };
    println!("link_timeout: in-thread loopback TCP echo, {n} round trips, median of {rounds}");
    println!("read_timeout's limit: {how}");
    println!(
        "{:<10} {:<24} {:>14} {:>15} {:>14}",
        "backend", "variant", "cpu µs/rt", "wall µs/rt", "vs read (cpu)"
    );
    let variants = [Limit::None, Limit::Linked, Limit::Timer];
    for backend in xev::Backend::available() {
        let mut samples: Vec<Vec<(f64, f64)>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, &v) in variants.iter().enumerate() {
                samples[i].push(measure(backend, v, n));
            }
        }
        let base = common::median(samples[0].iter().map(|s| s.0).collect());
        for (i, v) in variants.iter().enumerate() {
            let cpu = common::median(samples[i].iter().map(|s| s.0).collect());
            let wall = common::median(samples[i].iter().map(|s| s.1).collect());
            println!(
                "{:<10} {:<24} {:>14.2} {:>15.2} {:>13.2}x",
                backend.name(),
                v.name(),
                cpu,
                wall,
                cpu / base
            );
        }
    }
}
