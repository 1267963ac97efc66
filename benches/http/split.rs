//! Server and load generator in separate processes, for profiling one side alone
//! (`perf stat -p`, `strace -c -p`):
//!
//! ```text
//! # a server, until killed (xev-io_uring | xev-epoll | tokio | raw-epoll), on 127.0.0.1:PORT
//! XEV_HTTP_SERVE=tokio XEV_HTTP_PORT=8080 cargo bench --bench http
//! # the bench's load generator against it; with XEV_HTTP_SERVER_PID, the server
//! # process's CPU time (user and system) per request too
//! XEV_HTTP_LOAD=127.0.0.1:8080 XEV_HTTP_SERVER_PID=1234 XEV_BENCH_PIPELINE=1 cargo bench --bench http
//! ```
//!
//! The servers are the bench's own (`servers.rs`, `raw_epoll.rs`); the load is `load.rs` with the same
//! knobs (`XEV_BENCH_CONNS`, `XEV_BENCH_PIPELINE`, `XEV_BENCH_SECS`; one run each).

use std::time::Duration;

use super::load::{self, Expect};
use super::servers::{self, Stop};
use super::{http_hello, numbers};

/// `XEV_HTTP_SERVE=NAME`: serve with that server on `XEV_HTTP_PORT` (default 8080) until
/// killed. Returns only if the variable is unset.
pub fn serve_if_asked() {
    let Ok(name) = std::env::var("XEV_HTTP_SERVE") else {
        return;
    };
    let port: u16 = super::common::env_parse("XEV_HTTP_PORT").unwrap_or(8080);
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let shown = name.clone();
    std::thread::spawn(move || {
        if let Ok(Ok(())) = rx.recv() {
            println!(
                "http: {shown} serving on 127.0.0.1:{port}, pid {}",
                std::process::id()
            );
        }
    });
    let stop = Stop::default();
    let r = match name.as_str() {
        "xev-io_uring" => servers::xev(xev::Backend::IoUring, listener, &stop, &tx),
        "xev-epoll" => servers::xev(xev::Backend::Epoll, listener, &stop, &tx),
        "tokio" => servers::tokio_hello(listener, &stop, &tx),
        "raw-epoll" => super::raw_epoll::serve(listener, &stop, &tx),
        other => Err(format!(
            "XEV_HTTP_SERVE={other:?}: expected xev-io_uring, xev-epoll, tokio or raw-epoll"
        )),
    };
    if let Err(e) = r {
        eprintln!("http: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// `XEV_HTTP_LOAD=ADDR`: run the load generator against ADDR and print its figures.
/// Returns only if the variable is unset.
pub fn load_if_asked() {
    let Ok(addr) = std::env::var("XEV_HTTP_LOAD") else {
        return;
    };
    let addr = addr
        .parse()
        .unwrap_or_else(|e| panic!("XEV_HTTP_LOAD={addr:?}: {e}"));
    let pid: Option<u32> = super::common::env_parse("XEV_HTTP_SERVER_PID");
    let server_clock = match pid {
        Some(pid) => {
            let mut id: libc::clockid_t = 0;
            // SAFETY: `id` is ours to write; a bad pid is an error return.
            let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut id) };
            if r != 0 {
                panic!("clock_getcpuclockid({pid}): error {r}");
            }
            id
        }
        None => libc::CLOCK_THREAD_CPUTIME_ID,
    };
    let secs: f64 = super::common::env_parse("XEV_BENCH_SECS").unwrap_or(5.0);
    for conns in numbers("XEV_BENCH_CONNS", &[64]) {
        for depth in numbers("XEV_BENCH_PIPELINE", &[1]) {
            let spec = load::Spec {
                addr,
                conns,
                depth,
                warmup: Duration::from_millis(500),
                timed: Duration::from_secs_f64(secs),
                expect: Expect::Exact(http_hello::OK),
                server_clock,
                server_stat: pid.and_then(|p| {
                    super::ticks::StatFile::open(&format!("/proc/{p}/stat"))
                        .ok()
                        .map(std::sync::Arc::new)
                }),
            };
            let s = match load::run(spec) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("http: load: {e}");
                    std::process::exit(1);
                }
            };
            print!(
                "{conns} conns, depth {depth}: {:.0} requests/s; load {:.2} µs/req ({:.0}% of one CPU)",
                s.per_sec,
                s.client_us_per_req,
                s.client_us_per_req * s.per_sec / 1e4,
            );
            if pid.is_some() {
                print!(
                    "; server {:.2} µs/req ({:.0}% of one CPU; user {:.2}, system {:.2})",
                    s.server_us_per_req,
                    s.server_us_per_req * s.per_sec / 1e4,
                    s.server_user_us(),
                    s.server_us_per_req - s.server_user_us()
                );
            }
            println!("; {} responses in all", s.checked);
        }
    }
    std::process::exit(0);
}
