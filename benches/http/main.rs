//! HTTP/1.1 "Hello, World!" servers under a keep-alive load, one after another in one
//! process, each on its own thread:
//!
//! 1. xev `examples/http_hello.rs` (`serve`) on io_uring;
//! 2. the same on epoll;
//! 3. a tokio `current_thread` server written the same way (same parser and responses,
//!    `servers::tokio_hello`): the reference;
//! 4. a hand-written epoll loop serving the same bytes with the tokio server's buffering
//!    and syscalls (`raw_epoll.rs`, "raw epoll (ref)"): under the epoll target, how far
//!    the kernel and the machine let any server on epoll go;
//! 5. hyper 1.x on tokio `current_thread` (hyper's defaults);
//! 6. hyper on xev (`examples/hyper_hello.rs`'s `serve_with`, with the bare
//!    `http1::Builder::new()` the hyper-on-tokio server uses), built with
//!    `--features hyper`;
//! 7. xev `http_hello --threads 2` on io_uring: a `Pool` of 2 workers, each with its own
//!    `SO_REUSEPORT` listener (`serve_pool`, `Sharing::ReusePort`);
//! 8. the same with `--distribute`: worker 0 accepts and hands connections out;
//! 9. the same as 7 on epoll;
//! 10. the same as 7 with the workers' yield before block turned off
//!     (`Builder::yield_before_block(false)`; the pool's default is on);
//! 11. tokio `multi_thread` with 2 workers, the tokio server of 3 with `tokio::spawn`.
//!
//! Scaling lines compare 7 with 1 (xev 1 → 2 threads) and 11 with 3 (tokio); a line
//! compares 7 with 10 (what the yield is worth). For the
//! multi-threaded servers "server µs/req" is the process's CPU time minus the load
//! thread's (the main and watchdog threads sleep meanwhile). On a 2-CPU machine the
//! load generator competes with the 2 workers: the requests/s of 7-10 measure sharing
//! rather than scaling; CPU time per request is the fairer comparison.
//!
//! The load generator (`load.rs`) runs on its own thread over raw epoll:
//! `XEV_BENCH_CONNS` kept-alive connections (default 64), each sending
//! `XEV_BENCH_PIPELINE` requests in one write (default: one run with 1 and one with 16)
//! and the next batch once all are answered, for a warm-up and then `XEV_BENCH_SECS`
//! timed seconds (default 3); every response is checked (byte for byte where the server's
//! response is fixed, framing + status + body for hyper, whose `date` header varies), and
//! any error fails the bench. Figures: requests/s over the timed section, the server
//! thread's CPU time per request (its `CLOCK_THREAD_CPUTIME_ID`, read through
//! `pthread_getcpuclockid` at the start and end of the timed section), the load
//! generator's, and allocations per request (process-wide); both ratios are to the tokio
//! server's (for CPU time lower is better). On a shared machine the CPU time per request
//! is the steadier figure: requests/s also measures who else had the CPUs. Full mode: the
//! median of 5 rounds, variants interleaved, and under each target line its spread round
//! by round; `XEV_BENCH_QUICK=1` (CI): 1 round of 0.25 s.
//!
//! Other knobs: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_BENCH_PIN=none|same|split` (default none: the scheduler places the threads;
//! `split`: load generator on CPU 0, server on CPU 1), `XEV_BENCH_ROUNDS=N` (rounds per
//! variant, default 5). Comma lists work for `XEV_BENCH_CONNS` and `XEV_BENCH_PIPELINE`.
//!
//! Run with `cargo bench --bench http` (`--features hyper` or `--all-features` adds hyper
//! on xev).

#[path = "../common/mod.rs"]
mod common;
#[allow(dead_code)] // the example's `main`
#[path = "../../examples/http_hello.rs"]
mod http_hello;
mod idle;
mod load;
mod raw_epoll;
mod servers;
mod split;
mod ticks;

// ---- hyper on xev (feature `hyper`) ----------------------------------------------------
#[cfg(feature = "hyper")]
#[allow(dead_code)] // the example's `main` and `serve`
#[path = "../../examples/hyper_hello.rs"]
mod hyper_hello;
/// hyper on xev: `examples/hyper_hello.rs` with hyper's defaults and no timer, as the
/// hyper-on-tokio server (`servers::hyper_tokio`) runs.
#[cfg(feature = "hyper")]
const HYPER_ON_XEV: Option<servers::XevServe> = Some(|l| {
    Box::pin(async move {
        hyper_hello::serve_with(l, hyper::server::conn::http1::Builder::new()).await;
        Ok(())
    })
});
/// hyper on xev needs the `hyper` feature.
#[cfg(not(feature = "hyper"))]
const HYPER_ON_XEV: Option<servers::XevServe> = None;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::os::unix::thread::JoinHandleExt;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::report::{per_round_line, ratio, ratio_target, round_by_round};
use common::{sys, watchdog};
use load::{Expect, Sample};
use servers::Stop;
use xev::Backend;

/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    TokioCt,
    RawEpoll,
    HyperTokio,
    HyperXev,
    XevThreads2,
    XevThreads2Distribute,
    XevThreads2Epoll,
    XevThreads2NoYield,
    TokioMt2,
}

impl Variant {
    const ALL: [Variant; 11] = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::TokioCt,
        Variant::RawEpoll,
        Variant::HyperTokio,
        Variant::HyperXev,
        Variant::XevThreads2,
        Variant::XevThreads2Distribute,
        Variant::XevThreads2Epoll,
        Variant::XevThreads2NoYield,
        Variant::TokioMt2,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev http_hello io_uring",
            Variant::XevEpoll => "xev http_hello epoll",
            Variant::TokioCt => "tokio current_thread",
            Variant::RawEpoll => "raw epoll (ref)",
            Variant::HyperTokio => "hyper on tokio ct",
            Variant::HyperXev => "hyper on xev",
            Variant::XevThreads2 => "xev http_hello --threads 2 (io_uring)",
            Variant::XevThreads2Distribute => "xev --threads 2 --distribute (io_uring)",
            Variant::XevThreads2Epoll => "xev http_hello --threads 2 (epoll)",
            Variant::XevThreads2NoYield => "xev --threads 2, no yield before block (io_uring)",
            Variant::TokioMt2 => "tokio multi_thread 2 workers",
        }
    }

    fn on_io_uring(self) -> bool {
        // hyper on xev runs on xev's default backend: io_uring where available.
        matches!(
            self,
            Variant::XevIoUring
                | Variant::XevThreads2
                | Variant::XevThreads2Distribute
                | Variant::XevThreads2NoYield
        )
    }

    /// Served by several threads: CPU time is measured process-wide.
    fn multi_threaded(self) -> bool {
        matches!(
            self,
            Variant::XevThreads2
                | Variant::XevThreads2Distribute
                | Variant::XevThreads2Epoll
                | Variant::XevThreads2NoYield
                | Variant::TokioMt2
        )
    }

    fn expect(self) -> Expect {
        match self {
            Variant::XevIoUring
            | Variant::XevEpoll
            | Variant::TokioCt
            | Variant::RawEpoll
            | Variant::XevThreads2
            | Variant::XevThreads2Distribute
            | Variant::XevThreads2Epoll
            | Variant::XevThreads2NoYield
            | Variant::TokioMt2 => Expect::Exact(http_hello::OK),
            Variant::HyperTokio | Variant::HyperXev => Expect::Body(http_hello::BODY),
        }
    }

    /// Run this variant's server on the calling thread until `stop` fires.
    fn serve(
        self,
        listener: std::net::TcpListener,
        stop: &Stop,
        ready: &servers::Ready,
    ) -> Result<(), String> {
        match self {
            Variant::XevIoUring => servers::xev(Backend::IoUring, listener, stop, ready),
            Variant::XevEpoll => servers::xev(Backend::Epoll, listener, stop, ready),
            Variant::TokioCt => servers::tokio_hello(listener, stop, ready),
            Variant::RawEpoll => raw_epoll::serve(listener, stop, ready),
            Variant::HyperTokio => servers::hyper_tokio(listener, stop, ready),
            Variant::HyperXev => match HYPER_ON_XEV {
                Some(serve) => servers::xev_with(Backend::default(), listener, stop, ready, serve),
                None => Err("hyper on xev is not built in".into()),
            },
            Variant::XevThreads2
            | Variant::XevThreads2Distribute
            | Variant::XevThreads2Epoll
            | Variant::XevThreads2NoYield => {
                let (backend, sharing) = match self {
                    Variant::XevThreads2Epoll => (Backend::Epoll, http_hello::Sharing::ReusePort),
                    Variant::XevThreads2Distribute => {
                        (Backend::IoUring, http_hello::Sharing::Distribute)
                    }
                    _ => (Backend::IoUring, http_hello::Sharing::ReusePort),
                };
                // The pool's default (a worker yields once before it blocks), except in
                // the variant that shows what that default is worth here.
                let yield_before_block = self != Variant::XevThreads2NoYield;
                servers::xev_pool(
                    backend,
                    2,
                    sharing,
                    yield_before_block,
                    listener,
                    stop,
                    ready,
                )
            }
            Variant::TokioMt2 => servers::tokio_mt(2, listener, stop, ready),
        }
    }
}

#[derive(Clone, Copy)]
struct Workload {
    conns: usize,
    depth: usize,
    warmup: Duration,
    timed: Duration,
}

/// One run of `v` under `w`: a fresh server thread and listener, the load from another
/// thread, then the server stopped and joined.
fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    watchdog::arm(MEASUREMENT_LIMIT);
    let (cpu_client, cpu_server) = pin_plan();
    let stop = Stop::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let server = thread::Builder::new()
        .name("http-server".into())
        .spawn({
            let stop = stop.clone();
            move || {
                // SAFETY: gettid has no preconditions.
                let _ = tid_tx.send(unsafe { libc::gettid() });
                sys::pin_to("http", cpu_server);
                let r = v.serve(listener, &stop, &ready_tx);
                if let Err(e) = &r {
                    let _ = ready_tx.send(Err(e.clone()));
                }
                r
            }
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let started = ready_rx
        .recv()
        .unwrap_or_else(|_| Err("server thread ended".into()));
    let result = started.and_then(|()| {
        let server_clock = if v.multi_threaded() {
            libc::CLOCK_PROCESS_CPUTIME_ID
        } else {
            load::thread_clock(server.as_pthread_t())
                .map_err(|e| format!("pthread_getcpuclockid: {e}"))?
        };
        // The user/system split of a single-threaded server (its thread's stat file).
        let server_stat = match tid_rx.recv() {
            Ok(tid) if !v.multi_threaded() => {
                ticks::StatFile::open(&format!("/proc/self/task/{tid}/stat"))
                    .ok()
                    .map(std::sync::Arc::new)
            }
            _ => None,
        };
        let spec = load::Spec {
            addr,
            conns: w.conns,
            depth: w.depth,
            warmup: w.warmup,
            timed: w.timed,
            expect: v.expect(),
            server_clock,
            server_stat,
        };
        thread::Builder::new()
            .name("http-load".into())
            .spawn(move || {
                sys::pin_to("http", cpu_client);
                load::run(spec)
            })
            .map_err(|e| format!("spawn: {e}"))?
            .join()
            .map_err(|_| "load thread panicked".to_string())?
    });
    // The load's connections are closed by now.
    stop.fire();
    let served = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    watchdog::disarm();
    let sample = result?;
    served?;
    Ok(sample)
}

/// The thread placement, `XEV_BENCH_PIN`, by default `none`.
fn pin_mode() -> String {
    sys::pin_mode("none")
}

/// The CPUs of (load generator, server), when pinning.
fn pin_plan() -> (Option<usize>, Option<usize>) {
    sys::pin_plan(&pin_mode()).unzip()
}

/// A comma-separated list of numbers in `var`, or `default`.
fn numbers(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|x| {
                x.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{var}: {x:?} is not a number"))
            })
            .collect(),
        _ => default.to_vec(),
    }
}

fn table(w: &Workload, variants: &[Variant], samples: &[Vec<Sample>], rounds: usize) {
    println!();
    println!(
        "== {} connections, pipeline depth {}, {:.2} s timed (+{:.2} s warm-up), {} round(s) ==",
        w.conns,
        w.depth,
        w.timed.as_secs_f64(),
        w.warmup.as_secs_f64(),
        rounds
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        if s.is_empty() {
            return None;
        }
        let m = |f: fn(&Sample) -> f64| common::median(s.iter().map(f).collect());
        Some(Sample {
            per_sec: m(|x| x.per_sec),
            server_us_per_req: m(|x| x.server_us_per_req),
            client_us_per_req: m(|x| x.client_us_per_req),
            allocs_per_req: s.iter().map(|x| x.allocs_per_req).fold(0.0, f64::max),
            // Not measured (NaN) for the multi-threaded servers.
            server_user_share: {
                let v: Vec<f64> = s
                    .iter()
                    .map(|x| x.server_user_share)
                    .filter(|x| !x.is_nan())
                    .collect();
                if v.is_empty() {
                    f64::NAN
                } else {
                    common::median(v)
                }
            },
            checked: s.iter().map(|x| x.checked).sum(),
        })
    };
    let find = |v: Variant| variants.iter().position(|&x| x == v).and_then(med);
    // Under the epoll target: the hand-written epoll loop against tokio, and xev against it.
    let raw_reference = |x: &Sample, t: &Sample, min: f64| {
        let Some(raw) = find(Variant::RawEpoll) else {
            return;
        };
        let q = raw.per_sec / t.per_sec;
        println!(
            "  raw epoll reference: {q:.3}x tokio (requests/s), server CPU/req {:.2}x; xev \
             epoll is {:.3}x the raw loop",
            raw.server_us_per_req / t.server_us_per_req,
            x.per_sec / raw.per_sec
        );
        if x.per_sec / t.per_sec >= min {
            return;
        }
        if q < min {
            println!(
                "  measured cause: the kernel and this machine. A hand-written epoll loop making \
                 the same syscalls per request reaches {q:.3}x tokio, under {min}x: the target \
                 asks more than epoll gives here"
            );
        } else {
            println!(
                "  xev's own part: the raw epoll loop reaches {q:.3}x tokio, xev epoll {:.3}x \
                 of it",
                x.per_sec / raw.per_sec
            );
        }
    };
    // Under a target line: how `a` against `b` varied round by round.
    let spread_of = |a: Variant, b: Variant, goal: f64, prefix: &str| {
        let of = |v: Variant| variants.iter().position(|&x| x == v).map(|i| &samples[i]);
        if let (Some(a), Some(b)) = (of(a), of(b)) {
            let per_sec = |s: &Sample| s.per_sec;
            let cpu = |s: &Sample| s.server_us_per_req;
            if let Some(line) = round_by_round((a, b), per_sec, cpu, goal, "server CPU/req") {
                println!("  {prefix}{line}");
            }
        }
    };
    let spread = |a: Variant, b: Variant, goal: f64| spread_of(a, b, goal, "");
    let reference = find(Variant::TokioCt);
    println!(
        "{:<40} {:>12} {:>12} {:>14} {:>12} {:>12} {:>12} {:>12} {:>10} {:>17} {:>10}",
        "variant",
        "requests/s",
        "vs tokio ct",
        "server µs/req",
        "vs tokio ct",
        "(user µs",
        "sys µs)",
        "load µs/req",
        "load busy",
        "allocs/req (max)",
        "checked"
    );
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => println!(
                "{:<40} {:>12.0} {:>12} {:>14.2} {:>12} {:>12.2} {:>12.2} {:>12.2} {:>9.0}% {:>17.4} {:>10}",
                v.name(),
                s.per_sec,
                ratio(s.per_sec, reference.map(|r| r.per_sec)),
                s.server_us_per_req,
                ratio(s.server_us_per_req, reference.map(|r| r.server_us_per_req)),
                s.server_user_us(),
                s.server_us_per_req - s.server_user_us(),
                s.client_us_per_req,
                s.load_busy() * 100.0,
                s.allocs_per_req,
                s.checked
            ),
            None => println!("{:<40} {:>12}", v.name(), "failed"),
        }
    }
    per_round_line(
        "requests/s",
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
    );
    per_round_line(
        "server µs/req",
        2,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.server_us_per_req).collect())),
    );
    if let Some(r) = reference {
        for (v, goal, min) in [
            (Variant::XevIoUring, "1.2x tokio ct", 1.2),
            (Variant::XevEpoll, "1.0x tokio ct", 1.0),
        ] {
            if let Some(s) = find(v) {
                ratio_target(v.name(), goal, s.per_sec / r.per_sec, min);
                if s.per_sec / r.per_sec < min {
                    println!("  measured cause: {}", cause(&s, &r, min));
                }
                spread(v, Variant::TokioCt, min);
                if v == Variant::XevEpoll {
                    raw_reference(&s, &r, min);
                    spread_of(
                        Variant::RawEpoll,
                        Variant::TokioCt,
                        min,
                        "the raw epoll loop vs tokio, ",
                    );
                }
            }
        }
    }
    for (label, one, two) in [
        (
            "xev scaling 1 -> 2 threads",
            Variant::XevIoUring,
            Variant::XevThreads2,
        ),
        (
            "tokio scaling ct -> mt 2 workers",
            Variant::TokioCt,
            Variant::TokioMt2,
        ),
    ] {
        if let (Some(a), Some(b)) = (find(one), find(two)) {
            println!(
                "{label}: requests/s {:.2}x, server µs/req {:.2}x",
                b.per_sec / a.per_sec,
                b.server_us_per_req / a.server_us_per_req
            );
        }
    }
    if let (Some(y), Some(n)) = (
        find(Variant::XevThreads2),
        find(Variant::XevThreads2NoYield),
    ) {
        println!(
            "xev 2 threads: yield before block (the pool's default) vs not: requests/s \
             {:.2}x, server µs/req {:.2}x",
            y.per_sec / n.per_sec,
            y.server_us_per_req / n.server_us_per_req
        );
        if let Some(t) = find(Variant::TokioMt2) {
            println!(
                "  without the yield: {:.3}x tokio mt 2 workers",
                n.per_sec / t.per_sec
            );
        }
    }
    if let (Some(r), Some(d)) = (
        find(Variant::XevThreads2),
        find(Variant::XevThreads2Distribute),
    ) {
        println!(
            "xev 2 threads: distribute vs reuseport: requests/s {:.2}x, server µs/req {:.2}x",
            d.per_sec / r.per_sec,
            d.server_us_per_req / r.server_us_per_req
        );
    }
    if let (Some(x), Some(t)) = (find(Variant::XevThreads2), find(Variant::TokioMt2)) {
        ratio_target(
            "xev 2 threads vs tokio mt 2 workers",
            "1.0x",
            x.per_sec / t.per_sec,
            1.0,
        );
        if x.per_sec / t.per_sec < 1.0 {
            println!("  measured cause: {}", cause(&x, &t, 1.0));
            machine_check(&find);
        }
        spread(Variant::XevThreads2, Variant::TokioMt2, 1.0);
    }
    if let (Some(hx), Some(ht)) = (find(Variant::HyperXev), find(Variant::HyperTokio)) {
        ratio_target(
            "hyper on xev",
            "hyper on tokio ct",
            hx.per_sec / ht.per_sec,
            1.0,
        );
        if hx.per_sec < ht.per_sec {
            println!("  measured cause: {}", cause(&hx, &ht, 1.0));
        }
        spread(Variant::HyperXev, Variant::HyperTokio, 1.0);
    }
}

/// Under a missed 2-thread line: what a second worker gives each runtime on this machine
/// (1 -> 2 threads), what one xev loop serves against tokio's 2 workers, and the 2-loop
/// pool on epoll, from the same run.
fn machine_check(find: &impl Fn(Variant) -> Option<Sample>) {
    let rate = |a: Variant, b: Variant| Some(find(a)?.per_sec / find(b)?.per_sec);
    if let (Some(x), Some(t)) = (
        rate(Variant::XevThreads2, Variant::XevIoUring),
        rate(Variant::TokioMt2, Variant::TokioCt),
    ) {
        let verdict = if x < 1.0 && t < 1.0 {
            "both lose by a second worker: the load generator needs one of the 2 CPUs, so \
             the 2 workers share the other (the machine)"
        } else if x < 1.0 {
            "tokio's second worker does not cost it here, xev's does (not only the machine)"
        } else {
            "xev's second worker does not cost it here"
        };
        println!(
            "  a second worker on this machine: xev 1 -> 2 threads {x:.2}x, tokio ct -> mt \
             {t:.2}x requests/s; {verdict}"
        );
    }
    if let Some(r) = rate(Variant::XevIoUring, Variant::TokioMt2) {
        println!("  one xev loop (io_uring) vs tokio mt 2 workers: {r:.3}x requests/s");
    }
    if let (Some(e), Some(t)) = (find(Variant::XevThreads2Epoll), find(Variant::TokioMt2)) {
        println!(
            "  xev 2 threads on epoll vs tokio mt 2 workers: {:.3}x requests/s, server µs/req {:.2}x",
            e.per_sec / t.per_sec,
            e.server_us_per_req / t.server_us_per_req
        );
    }
}

/// Why an xev server `s` serves under `min` times the tokio server `r`'s requests/s
/// (single-threaded, both with 2 workers, or hyper on each), from CPU time per request. Server and load generator share the 2 CPUs:
/// with the CPUs shared, rates go as 1 / (server + load generator CPU per request); with
/// one CPU each, as 1 / the larger of the two. Either way the load generator's part and
/// the kernel's TCP work (the server's system time) bound what a faster server can gain.
fn cause(s: &Sample, r: &Sample, min: f64) -> String {
    let (xs, xl, ts, tl) = (
        s.server_us_per_req,
        s.client_us_per_req,
        r.server_us_per_req,
        r.client_us_per_req,
    );
    let sys = xs - s.server_user_us();
    let shared = (ts + tl) / (xs + xl);
    let split = ts.max(tl) / xs.max(xl);
    let need = (ts + tl) / min - xl;
    // The split is read from a single server thread's stat file: not for a pool.
    let split_of = if s.server_user_share.is_nan() || r.server_user_share.is_nan() {
        "user/system split not measured for several server threads".to_string()
    } else {
        format!(
            "user {:.2} vs {:.2}, system {sys:.2} vs {:.2}",
            s.server_user_us(),
            r.server_user_us(),
            ts - r.server_user_us()
        )
    };
    let mut why = format!(
        "server CPU/req {:.2}x tokio's ({xs:.2} vs {ts:.2} µs; {split_of}); server + load \
         generator {:.2} vs {:.2} µs/req: CPU-bound, the rate ratio would be {shared:.3}x with \
         the 2 CPUs shared, {split:.3}x with one CPU each",
        xs / ts,
        xs + xl,
        ts + tl,
    );
    if need < sys {
        why += &format!(
            "; {min}x needs the xev server at <= {need:.2} µs/req with this load generator, \
             below its system time alone"
        );
    } else {
        why += &format!("; {min}x needs the xev server at <= {need:.2} µs/req");
    }
    let used = s.load_busy() + s.server_busy();
    why += &format!(
        "; server and load generator used {:.0}% of the 2 CPUs",
        used * 50.0
    );
    if used < 1.8 {
        why += " (the rest went to other work on the machine or to waiting)";
    }
    why
}

fn main() {
    if let Ok(v) = std::env::var("XEV_HTTP_IDLE_CHILD") {
        idle::child(&v);
    }
    split::serve_if_asked();
    split::load_if_asked();
    let quick = common::quick();
    let started = Instant::now();
    if std::env::var_os("XEV_BENCH_IDLE_ONLY").is_some() {
        let failed = idle::section(quick);
        common::report::finish("total wall time", started, failed);
        return;
    }
    println!("http: HTTP/1.1 hello servers under a keep-alive, pipelined load (raw epoll client)");
    sys::print_command("http", quick);
    println!("{}", sys::machine());
    println!(
        "thread placement (XEV_BENCH_PIN): {}   io_uring available: {}   mode: {}",
        pin_mode(),
        Backend::IoUring.is_available(),
        if quick {
            "quick (1 round)"
        } else {
            "full (median of the rounds, variants interleaved)"
        }
    );
    watchdog::start(
        "http-watchdog",
        Duration::from_millis(200),
        format!("http: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting"),
    );
    let (rounds, warmup, mut timed) = if quick {
        (1, Duration::from_millis(100), Duration::from_millis(250))
    } else {
        (5, Duration::from_millis(500), Duration::from_secs(3))
    };
    let rounds = common::env_parse("XEV_BENCH_ROUNDS")
        .unwrap_or(rounds)
        .max(1);
    if let Some(s) = common::env_parse::<f64>("XEV_BENCH_SECS") {
        timed = Duration::from_secs_f64(s);
    }
    let mut variants = common::report::select(&Variant::ALL, Variant::name, Variant::on_io_uring);
    if HYPER_ON_XEV.is_none() {
        variants.retain(|&v| v != Variant::HyperXev);
        println!("hyper on xev: not built in (cargo bench --bench http --features hyper)");
    }
    let mut failed = false;
    for conns in numbers("XEV_BENCH_CONNS", &[64]) {
        for depth in numbers("XEV_BENCH_PIPELINE", &[1, 16]) {
            let w = Workload {
                conns,
                depth,
                warmup,
                timed,
            };
            let samples = common::report::interleaved(
                rounds,
                &variants,
                &mut failed,
                |v| measure(v, &w),
                |v| format!("http: {conns} conns, depth {depth} / {}", v.name()),
            );
            table(&w, &variants, &samples, rounds);
        }
    }
    failed |= idle::section(quick);
    common::report::finish("total wall time", started, failed);
}
