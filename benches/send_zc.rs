//! Zero-copy sends (`IORING_OP_SEND_ZC`) against copying ones, by write size.
//!
//! One thread writes `TOTAL` bytes over a loopback TCP connection with
//! `xev::net::TcpStream::write_all` in writes of each size (4 KiB .. 1 MiB), on an
//! io_uring runtime, once with zero copy off and once with it on for every write
//! (`xev::net::set_send_zerocopy(Some(0))`); another thread reads and discards with
//! blocking `read(2)`. Rounds are interleaved (copy, zc, copy, zc, ...); the median
//! throughput and the sender's CPU time per MiB are printed.
//!
//! Over loopback the receiver copies the bytes anyway, so zero copy only adds page
//! pinning and a second event per send; on a real NIC it can win for large writes (run
//! with `XEV_BENCH_ADDR=<ip:port of a discard server>` to measure one).
//!
//! `XEV_BENCH_QUICK=1` sends 16 MiB per measurement, once (CI smoke run);
//! `XEV_BENCH_MIB=N` sends N MiB per measurement.
//! Run with `cargo bench --bench send_zc`.

#[path = "common/mod.rs"]
mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Instant;

const SIZES: [usize; 5] = [4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20];

/// A discard server on loopback: accepts one connection at a time and reads until EOF.
fn discard_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().unwrap();
    thread::Builder::new()
        .name("send_zc-sink".into())
        .spawn(move || {
            for s in l.incoming() {
                let mut s = s.expect("accept");
                let mut buf = vec![0u8; 1 << 20];
                while s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            }
        })
        .unwrap();
    addr
}

/// Send `total` bytes in writes of `size`: (MiB/s, sender CPU µs per MiB).
fn measure(addr: SocketAddr, size: usize, total: usize, zc: bool) -> (f64, f64) {
    xev::net::set_send_zerocopy(if zc { Some(0) } else { None });
    let rt = xev::rt::Builder::new()
        .backend(xev::Backend::IoUring)
        .build()
        .expect("io_uring runtime");
    rt.block_on(async move {
        let s = xev::net::TcpStream::connect(addr).await.expect("connect");
        let mut buf = vec![0x5au8; size];
        let cpu0 = common::thread_cpu_time();
        let t0 = Instant::now();
        let mut sent = 0;
        while sent < total {
            let (r, b) = s.write_all(buf).await;
            r.expect("write_all");
            buf = b;
            sent += size;
        }
        let secs = t0.elapsed().as_secs_f64();
        let cpu = (common::thread_cpu_time() - cpu0).as_secs_f64();
        let mib = sent as f64 / (1 << 20) as f64;
        (mib / secs, cpu * 1e6 / mib)
    })
}

fn main() {
    if !xev::Backend::IoUring.is_available() {
        println!("send_zc: io_uring is not available here; nothing to measure");
        return;
    }
    let quick = common::quick();
    let (rounds, mut total) = if quick { (1, 16 << 20) } else { (3, 512 << 20) };
    if let Some(mib) = common::env_parse::<usize>("XEV_BENCH_MIB") {
        total = mib << 20;
    }
    let addr = match std::env::var("XEV_BENCH_ADDR") {
        Ok(a) => a.parse().expect("XEV_BENCH_ADDR: ip:port"),
        Err(_) => discard_server(),
    };
    println!(
        "send_zc: {} MiB per measurement to {addr}, median of {rounds} round(s), copy vs zero copy",
        total >> 20
    );
    println!(
        "{:>10} {:>14} {:>14} {:>8} {:>16} {:>16}",
        "write", "copy MiB/s", "zc MiB/s", "zc/copy", "copy cpu µs/MiB", "zc cpu µs/MiB"
    );
    for size in SIZES {
        let (mut copy, mut zc) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            copy.push(measure(addr, size, total, false));
            zc.push(measure(addr, size, total, true));
        }
        let med =
            |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| common::median(v.iter().map(f).collect());
        let (c, z) = (med(&copy, |s| s.0), med(&zc, |s| s.0));
        println!(
            "{:>9}K {:>14.0} {:>14.0} {:>7.2}x {:>16.1} {:>16.1}",
            size >> 10,
            c,
            z,
            z / c,
            med(&copy, |s| s.1),
            med(&zc, |s| s.1)
        );
    }
    xev::net::set_send_zerocopy(None);
}
