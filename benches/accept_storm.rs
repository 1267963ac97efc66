//! Accept storm: N clients connect to one listener as fast as one client thread can (each
//! connection kept open), and the server accepts them all. Measured per variant: the
//! accept rate (connections from the client's first connect to the server's last accept,
//! over that time) and the server thread's CPU time per accepted connection, the steadier
//! figure on a shared machine (the client thread's `connect` costs as much as an accept).
//!
//! Variants (server side only):
//! 1. xev io_uring accept: callback API, one `Op::Accept` rearmed after each connection;
//! 2. xev io_uring multishot: one `Op::AcceptMulti` (`IORING_ACCEPT_MULTISHOT`) rearmed;
//! 3. / 4. the same two on epoll (where the multishot is emulated: one accept per
//!    readiness, so it should match the single accept);
//! 5. / 6. xev async (`xev::net::TcpListener::accept` in a loop: one single-shot accept
//!    per connection) on io_uring and epoll;
//! 7. / 8. xev async `TcpListener::incoming()` consumed in a loop: one multishot accept
//!    kept armed on io_uring, one accept in flight at a time on epoll;
//! 9. tokio `current_thread` (`tokio::net::TcpListener::accept` in a loop).
//!
//! The listener's backlog is raised to 8192 (std listens with 128, and SYNs dropped on
//! overflow come back a second later, which swamped the rate). One client thread connects,
//! so the rate is bounded by its `connect`s for every variant; the server CPU time per
//! accept is the figure the server controls.
//!
//! `XEV_BENCH_QUICK=1`: 500 connections, 1 round; full: 5,000 connections, median of 3
//! rounds, variants interleaved. `XEV_BENCH_ONLY=word,...` keeps the variants whose name
//! contains a word; `XEV_BENCH_CONNS=N` sets the connections per run. RLIMIT_NOFILE is
//! raised soft to hard (the run needs 2 N + 64 descriptors) or the bench is SKIPPED.
//!
//! Run with `cargo bench --bench accept_storm`.

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::RefCell;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::report::{ratio_target, target};
use xev::{Backend, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Accept(Backend),
    Multishot(Backend),
    Async(Backend),
    Incoming(Backend),
    Tokio,
}

impl Variant {
    const ALL: [Variant; 9] = [
        Variant::Accept(Backend::IoUring),
        Variant::Multishot(Backend::IoUring),
        Variant::Accept(Backend::Epoll),
        Variant::Multishot(Backend::Epoll),
        Variant::Async(Backend::IoUring),
        Variant::Async(Backend::Epoll),
        Variant::Incoming(Backend::IoUring),
        Variant::Incoming(Backend::Epoll),
        Variant::Tokio,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::Accept(Backend::IoUring) => "xev io_uring accept",
            Variant::Multishot(Backend::IoUring) => "xev io_uring multishot",
            Variant::Accept(_) => "xev epoll accept",
            Variant::Multishot(_) => "xev epoll multishot",
            Variant::Async(Backend::IoUring) => "xev async io_uring",
            Variant::Async(_) => "xev async epoll",
            Variant::Incoming(Backend::IoUring) => "xev incoming io_uring",
            Variant::Incoming(_) => "xev incoming epoll",
            Variant::Tokio => "tokio current_thread",
        }
    }

    fn on_io_uring(self) -> bool {
        matches!(
            self,
            Variant::Accept(Backend::IoUring)
                | Variant::Multishot(Backend::IoUring)
                | Variant::Async(Backend::IoUring)
                | Variant::Incoming(Backend::IoUring)
        )
    }
}

/// The listen backlog: room for every connection of a full run.
const BACKLOG: i32 = 8192;

struct Sample {
    per_sec: f64,
    cpu_ns: f64,
}

/// Accept `n` connections on `l` with the callback API; keep them.
fn serve_callback(b: Backend, l: TcpListener, n: usize, multishot: bool) -> Result<(), String> {
    let mut c = Box::pin(Completion::new());
    let mut lp = Loop::new(Options {
        backend: Some(b),
        ..Options::default()
    })
    .map_err(|e| format!("Loop::new: {e}"))?;
    let kept: Rc<RefCell<Vec<OwnedFd>>> = Rc::default();
    let err: Rc<RefCell<Option<String>>> = Rc::default();
    let (k, e) = (kept.clone(), err.clone());
    let op = if multishot {
        Op::AcceptMulti { fd: l.as_raw_fd() }
    } else {
        Op::Accept { fd: l.as_raw_fd() }
    };
    lp.start(c.as_mut(), op, move |_, _, r| {
        let fd = match r {
            OpResult::Accept(Ok(a)) => a.fd,
            OpResult::AcceptMulti(Ok(fd)) => fd,
            other => {
                *e.borrow_mut() = Some(format!("accept: {other:?}"));
                return CallbackAction::Disarm;
            }
        };
        k.borrow_mut().push(fd);
        if k.borrow().len() == n {
            CallbackAction::Disarm
        } else {
            CallbackAction::Rearm
        }
    });
    lp.run(RunMode::UntilDone)
        .map_err(|e| format!("run: {e}"))?;
    drop(lp);
    let e = err.borrow_mut().take();
    match e {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn serve_async(b: Backend, l: TcpListener, n: usize) -> Result<(), String> {
    let rt = xev::rt::Builder::new()
        .backend(b)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let l = xev::net::TcpListener::from(l);
        let mut kept = Vec::with_capacity(n);
        while kept.len() < n {
            kept.push(l.accept().await.map_err(|e| format!("accept: {e}"))?.0);
        }
        Ok(())
    })
}

fn serve_incoming(b: Backend, l: TcpListener, n: usize) -> Result<(), String> {
    let rt = xev::rt::Builder::new()
        .backend(b)
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let l = xev::net::TcpListener::from(l);
        let mut inc = l.incoming();
        let mut kept = Vec::with_capacity(n);
        while kept.len() < n {
            let s = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut inc), cx)
            })
            .await
            .ok_or("incoming ended")?
            .map_err(|e| format!("incoming: {e}"))?;
            kept.push(s);
        }
        Ok(())
    })
}

fn serve_tokio(l: TcpListener, n: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    rt.block_on(async move {
        let l = tokio::net::TcpListener::from_std(l).map_err(|e| format!("from_std: {e}"))?;
        let mut kept = Vec::with_capacity(n);
        while kept.len() < n {
            kept.push(l.accept().await.map_err(|e| format!("accept: {e}"))?.0);
        }
        Ok(())
    })
}

fn measure(v: Variant, n: usize) -> Result<Sample, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    // std listens with a backlog of 128: a burst that overflows it has its SYNs dropped
    // and retried a second later, which then dominates the rate. Listening again sets
    // the backlog (capped by net.core.somaxconn).
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(l.as_raw_fd(), BACKLOG) } != 0 {
        return Err(format!("listen: {}", std::io::Error::last_os_error()));
    }
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let server = thread::spawn(move || {
        let _ = go_rx.recv();
        let cpu0 = common::thread_cpu_time();
        let r = match v {
            Variant::Accept(b) => serve_callback(b, l, n, false),
            Variant::Multishot(b) => serve_callback(b, l, n, true),
            Variant::Async(b) => serve_async(b, l, n),
            Variant::Incoming(b) => serve_incoming(b, l, n),
            Variant::Tokio => serve_tokio(l, n),
        };
        let end = Instant::now();
        r.map(|()| (end, common::thread_cpu_time() - cpu0))
    });
    go_tx.send(()).map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?);
    }
    let (end, cpu) = server.join().map_err(|_| "server panicked".to_string())??;
    drop(clients);
    Ok(Sample {
        per_sec: n as f64 / (end - start).as_secs_f64(),
        cpu_ns: cpu.as_secs_f64() * 1e9 / n as f64,
    })
}

fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a live `rlimit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        }
    }
    lim.rlim_cur
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    common::net::header(
        "accept_storm",
        "accept_storm: one client thread connects N times (keeping each connection), \
         the server accepts them all",
        quick,
        256,
    );
    let n: usize = common::env_parse("XEV_BENCH_CONNS").unwrap_or(if quick { 500 } else { 5000 });
    let rounds = if quick { 1 } else { 3 };
    let need = 2 * n as u64 + 64;
    let have = raise_nofile();
    if have < need {
        println!("accept_storm: SKIPPED (RLIMIT_NOFILE {have} < {need} needed)");
        return;
    }
    let variants = common::report::select(&Variant::ALL, Variant::name, Variant::on_io_uring);
    let mut failed = false;
    let samples = common::report::interleaved(
        rounds,
        &variants,
        &mut failed,
        |v| measure(v, n),
        |v| format!("accept_storm: {}", v.name()),
    );
    println!();
    println!("== accept storm: {n} connections per run, {rounds} round(s) ==");
    println!(
        "{:<24} {:>14} {:>10} {:>20} {:>16}",
        "variant", "accepts/s", "vs tokio", "server cpu ns/accept", "cpu vs tokio"
    );
    let med = |i: usize| -> Option<(f64, f64)> {
        let s = &samples[i];
        (!s.is_empty()).then(|| {
            (
                common::median(s.iter().map(|x| x.per_sec).collect()),
                common::median(s.iter().map(|x| x.cpu_ns).collect()),
            )
        })
    };
    let find = |w: Variant| variants.iter().position(|&v| v == w).and_then(med);
    let tokio = find(Variant::Tokio);
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some((r, c)) => println!(
                "{:<24} {:>14.0} {:>10} {:>20.0} {:>16}",
                v.name(),
                r,
                common::report::ratio(r, tokio.map(|t| t.0)),
                c,
                common::report::ratio(c, tokio.map(|t| t.1)),
            ),
            None => println!("{:<24} {:>14}", v.name(), "failed"),
        }
    }
    common::report::per_round_line(
        "accepts/s",
        0,
        variants
            .iter()
            .zip(&samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
    );
    if let (Some(m), Some(a)) = (
        find(Variant::Multishot(Backend::IoUring)),
        find(Variant::Accept(Backend::IoUring)),
    ) {
        ratio_target(
            "xev io_uring multishot accepts/s",
            "single-shot accept",
            m.0 / a.0,
            1.0,
        );
        target(
            format_args!(
                "xev io_uring multishot server CPU per accept <= single-shot: {:.0} vs {:.0} ns",
                m.1, a.1
            ),
            m.1 <= a.1,
        );
    }
    if let (Some(m), Some(a)) = (
        find(Variant::Incoming(Backend::IoUring)),
        find(Variant::Async(Backend::IoUring)),
    ) {
        ratio_target(
            "xev async incoming() (multishot) accepts/s",
            "async accept() loop",
            m.0 / a.0,
            1.0,
        );
        target(
            format_args!(
                "xev async incoming() server CPU per accept <= accept() loop: {:.0} vs {:.0} ns",
                m.1, a.1
            ),
            m.1 <= a.1,
        );
    }
    common::report::finish("total wall time", started, failed);
}
