//! `xev::sync::mpsc` against the `async-channel` crate between two workers of an
//! `xev::rt::Pool` (2 workers, default backend), so both sides wake each other through
//! the same path (the task's waker: the runtime's hand-off queue plus a loop wake-up).
//!
//! Workloads:
//! - `ping-pong`: worker 0 sends a number to worker 1 over one channel, worker 1 sends it
//!   back over another, and worker 0 waits for it before sending the next: every message
//!   is a cross-thread wake-up of a sleeping worker. Round trips per second.
//! - `stream`: worker 0 sends values as fast as the channel takes them, worker 1
//!   receives them (bounded: capacity 128). Messages per second.
//! - `stream, capacity 1024`: the same with room for 1024 values in the bounded
//!   channels: the workers then run side by side instead of taking turns.
//!
//! Each for a bounded (capacity 1 for ping-pong, 128 for the stream) and an unbounded
//! channel of each crate. Figures: the rate, the process CPU time per message (both
//! workers; the main thread sleeps in `join`), and the ratio to `async-channel` of the
//! same kind (rate: higher is better; CPU: lower is better), and the context switches of
//! the process per 1,000 messages (each a worker that blocked and was woken, mostly). Median of 3 rounds, variants
//! interleaved; `XEV_BENCH_QUICK=1`: 1 short round. `XEV_BENCH_ONLY=xev` etc. filters the
//! variants, `XEV_BENCH_WORKLOAD=stream` etc. the workloads (by name),
//! `XEV_BENCH_CAPACITY=<n>` the bounded channels' capacity in `stream` and `stream beside
//! I/O` (default 128).
//!
//! - `stream beside I/O`: the stream again, after each worker got a task that waits on
//!   an idle UDP socket for the rest of the run: a pool that also serves I/O, whose
//!   workers may yield before they block (`rt::Builder::yield_before_block`, on by
//!   default in a pool, applies while I/O is awaited, and not after a round that ran
//!   only what the other worker woke). Compare with `XEV_YIELD_BEFORE_BLOCK=0`.
//!
//! Run with `cargo bench --bench channels`.

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::time::Instant;

use common::report::{per_round_line, ratio, ratio_target};
use xev::sync::mpsc;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    XevBounded,
    AcBounded,
    XevUnbounded,
    AcUnbounded,
}

impl Variant {
    const ALL: [Variant; 4] = [
        Variant::XevBounded,
        Variant::AcBounded,
        Variant::XevUnbounded,
        Variant::AcUnbounded,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::XevBounded => "xev::sync::mpsc bounded",
            Variant::AcBounded => "async-channel bounded",
            Variant::XevUnbounded => "xev::sync::mpsc unbounded",
            Variant::AcUnbounded => "async-channel unbounded",
        }
    }

    /// The async-channel variant of the same kind.
    fn reference(self) -> Variant {
        match self {
            Variant::XevBounded | Variant::AcBounded => Variant::AcBounded,
            Variant::XevUnbounded | Variant::AcUnbounded => Variant::AcUnbounded,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    PingPong,
    Stream,
    StreamLarge,
    StreamBesideIo,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::PingPong => "ping-pong (round trips)",
            Workload::Stream => "stream (messages)",
            Workload::StreamLarge => "stream, capacity 1024 (messages)",
            Workload::StreamBesideIo => "stream beside I/O (messages)",
        }
    }

    fn capacity(self) -> usize {
        match self {
            Workload::PingPong => 1,
            // `XEV_BENCH_CAPACITY=<n>`: another capacity for the bounded streams.
            Workload::Stream | Workload::StreamBesideIo => {
                common::env_parse("XEV_BENCH_CAPACITY").unwrap_or(128)
            }
            Workload::StreamLarge => 1024,
        }
    }
}

/// Either crate's sender.
enum Tx {
    XevB(mpsc::Sender<u64>),
    XevU(mpsc::UnboundedSender<u64>),
    Ac(async_channel::Sender<u64>),
}

/// Either crate's receiver.
enum Rx {
    Xev(mpsc::Receiver<u64>),
    Ac(async_channel::Receiver<u64>),
}

impl Tx {
    async fn send(&self, v: u64) {
        match self {
            Tx::XevB(t) => t.send(v).await.unwrap(),
            Tx::XevU(t) => t.send(v).unwrap(),
            Tx::Ac(t) => t.send(v).await.unwrap(),
        }
    }
}

impl Rx {
    async fn recv(&mut self) -> Option<u64> {
        match self {
            Rx::Xev(r) => r.recv().await,
            Rx::Ac(r) => r.recv().await.ok(),
        }
    }
}

fn channel(v: Variant, cap: usize) -> (Tx, Rx) {
    match v {
        Variant::XevBounded => {
            let (t, r) = mpsc::channel(cap);
            (Tx::XevB(t), Rx::Xev(r))
        }
        Variant::XevUnbounded => {
            let (t, r) = mpsc::unbounded_channel();
            (Tx::XevU(t), Rx::Xev(r))
        }
        Variant::AcBounded => {
            let (t, r) = async_channel::bounded(cap);
            (Tx::Ac(t), Rx::Ac(r))
        }
        Variant::AcUnbounded => {
            let (t, r) = async_channel::unbounded();
            (Tx::Ac(t), Rx::Ac(r))
        }
    }
}

#[derive(Clone, Copy)]
struct Sample {
    per_sec: f64,
    cpu_us: f64,
    allocs: f64,
    /// Context switches of the process per 1,000 messages.
    switches: f64,
}

/// One measurement: `n` messages (or round trips) after `n / 10` of warm-up.
fn measure(pool: &xev::rt::Pool, v: Variant, w: Workload, n: u64) -> Sample {
    let (tx_a, mut rx_a) = channel(v, w.capacity());
    let warm = n / 10;
    let total = warm + n;
    let (start_tx, start_rx) = std::sync::mpsc::channel::<(Instant, common::Usage, u64)>();
    let (b, a) = match w {
        Workload::PingPong => {
            let (tx_b, mut rx_b) = channel(v, 1);
            let echo = pool.spawn_on(1, move || async move {
                while let Some(x) = rx_a.recv().await {
                    tx_b.send(x).await;
                }
            });
            let driver = pool.spawn_on(0, move || async move {
                for i in 0..total {
                    if i == warm {
                        let _ =
                            start_tx.send((Instant::now(), common::usage(), common::allocations()));
                    }
                    tx_a.send(i).await;
                    assert_eq!(rx_b.recv().await, Some(i));
                }
            });
            (echo, driver)
        }
        Workload::Stream | Workload::StreamLarge | Workload::StreamBesideIo => {
            let sink = pool.spawn_on(1, move || async move {
                let mut expect = 0;
                while let Some(x) = rx_a.recv().await {
                    assert_eq!(x, expect);
                    expect += 1;
                }
                assert_eq!(expect, total);
            });
            let source = pool.spawn_on(0, move || async move {
                for i in 0..total {
                    if i == warm {
                        let _ =
                            start_tx.send((Instant::now(), common::usage(), common::allocations()));
                    }
                    tx_a.send(i).await;
                }
            });
            (sink, source)
        }
    };
    a.join().unwrap();
    b.join().unwrap();
    let (end_at, end, end_allocs) = (Instant::now(), common::usage(), common::allocations());
    let (at, start, allocs) = start_rx.recv().unwrap();
    let secs = (end_at - at).as_secs_f64();
    let cpu = (end.user + end.system) - (start.user + start.system);
    Sample {
        per_sec: n as f64 / secs,
        cpu_us: cpu.as_secs_f64() * 1e6 / n as f64,
        allocs: (end_allocs - allocs) as f64 / n as f64,
        switches: (end.switches - start.switches) as f64 * 1000.0 / n as f64,
    }
}

/// What was measured where xev's bounded stream trails async-channel's (`x`, `r`: their
/// medians): the context switches and the CPU per message, and how busy the two workers
/// were together (CPU per second of wall time).
fn bounded_stream_cause(x: Sample, r: Sample, capacity: usize) {
    let busy = |s: Sample| s.cpu_us * s.per_sec / 1e6;
    println!(
        "  cause not determined: per 1,000 messages {:.2} vs {:.2} context switches and \
         {:.0} vs {:.0} µs of CPU, but {:.2} vs {:.2} CPUs busy: the workers hand over the \
         {capacity}-slot ring with more time in which both are asleep (with room for 1024 \
         values, the next section, they do not)",
        x.switches,
        r.switches,
        x.cpu_us * 1000.0,
        r.cpu_us * 1000.0,
        busy(x),
        busy(r)
    );
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    println!("channels: xev::sync::mpsc vs async-channel between two workers of an xev::rt::Pool");
    common::sys::print_command("channels", quick);
    println!("{}", common::sys::machine());
    let rounds = if quick { 1 } else { 3 };
    let n: u64 =
        common::env_parse("XEV_BENCH_MESSAGES").unwrap_or(if quick { 2_000 } else { 100_000 });
    let pool = xev::rt::Pool::new(2).expect("a pool of 2 workers");
    let variants = common::report::select(&Variant::ALL, Variant::name, |_| false);
    let mut failed = false;
    let mut stream_rate = None;
    for w in [
        Workload::PingPong,
        Workload::Stream,
        Workload::StreamLarge,
        Workload::StreamBesideIo,
    ]
    .into_iter()
    .filter(|w| common::wanted("XEV_BENCH_WORKLOAD", w.name()))
    {
        if w == Workload::StreamBesideIo {
            for i in 0..2 {
                // Detached: the pool's shutdown drops it.
                drop(pool.spawn_on(i, || async {
                    let s = xev::net::UdpSocket::bind("127.0.0.1:0").expect("an idle socket");
                    let (r, _) = s.recv_from(vec![0u8; 64]).await;
                    panic!("the idle socket received something: {r:?}");
                }));
            }
        }
        let count = if w == Workload::PingPong { n } else { n * 10 };
        let samples = common::report::interleaved(
            rounds,
            &variants,
            &mut failed,
            |v| Ok::<_, String>(measure(&pool, v, w, count)),
            |v| format!("channels: {} / {}", w.name(), v.name()),
        );
        let med = |i: usize| -> Option<Sample> {
            let s = &samples[i];
            if s.is_empty() {
                return None;
            }
            Some(Sample {
                per_sec: common::median(s.iter().map(|x| x.per_sec).collect()),
                cpu_us: common::median(s.iter().map(|x| x.cpu_us).collect()),
                allocs: s.iter().map(|x| x.allocs).fold(0.0, f64::max),
                switches: common::median(s.iter().map(|x| x.switches).collect()),
            })
        };
        let find = |v: Variant| variants.iter().position(|&x| x == v).and_then(med);
        println!();
        println!(
            "== {}: {count} timed, capacity {} (bounded), {rounds} round(s) ==",
            w.name(),
            w.capacity()
        );
        println!(
            "{:<28} {:>12} {:>16} {:>12} {:>16} {:>12} {:>12}",
            "variant",
            "per second",
            "vs async-channel",
            "CPU µs/msg",
            "vs async-channel",
            "allocs/msg",
            "switches/1k"
        );
        for (i, v) in variants.iter().enumerate() {
            let Some(s) = med(i) else {
                println!("{:<28} {:>12}", v.name(), "failed");
                continue;
            };
            let r = find(v.reference());
            println!(
                "{:<28} {:>12.0} {:>16} {:>12.3} {:>16} {:>12.3} {:>12.2}",
                v.name(),
                s.per_sec,
                ratio(s.per_sec, r.map(|r| r.per_sec)),
                s.cpu_us,
                ratio(s.cpu_us, r.map(|r| r.cpu_us)),
                s.allocs,
                s.switches
            );
        }
        per_round_line(
            "per second",
            0,
            variants
                .iter()
                .zip(&samples)
                .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
        );
        match (w, find(Variant::XevUnbounded)) {
            (Workload::Stream, Some(x)) => stream_rate = Some(x.per_sec),
            (Workload::StreamBesideIo, Some(x)) => {
                if let Some(r) = stream_rate {
                    println!(
                        "xev::sync::mpsc unbounded stream beside I/O vs without: {:.3}x \
                         (yield before block: {})",
                        x.per_sec / r,
                        if std::env::var_os("XEV_YIELD_BEFORE_BLOCK").is_some_and(|v| v == "0") {
                            "off"
                        } else {
                            "the pool's default, on"
                        }
                    );
                }
            }
            _ => {}
        }
        for (xv, rv) in [
            (Variant::XevBounded, Variant::AcBounded),
            (Variant::XevUnbounded, Variant::AcUnbounded),
        ] {
            if let (Some(x), Some(r)) = (find(xv), find(rv)) {
                let q = x.per_sec / r.per_sec;
                ratio_target(
                    &format!("{} {}", xv.name(), w.name()),
                    "0.9x async-channel",
                    q,
                    0.9,
                );
                if q < 0.9 && xv == Variant::XevBounded && w != Workload::PingPong {
                    bounded_stream_cause(x, r, w.capacity());
                }
            }
        }
    }
    drop(pool);
    common::report::finish("total wall time", started, failed);
}
