//! The "idle connections" section: what one idle keep-alive connection costs a server.
//!
//! Each server runs in a child process of its own (this bench re-executed with
//! `XEV_HTTP_IDLE_CHILD=<variant>`), so no variant reuses memory another freed and the
//! client's memory is not counted. Both processes raise `RLIMIT_NOFILE` (soft to hard;
//! the section prints SKIPPED with the limits if the hard limit is too low). The bench
//! (client) serves a few warm-up connections, asks the child for its resident set size,
//! then opens `XEV_BENCH_IDLE_CONNS` connections (default 10,000; 2,000 in quick mode) in
//! batches, sends one request on each and reads the response, leaves them all open and
//! idle, waits 300 ms and asks for the resident set size again. The figure is the growth
//! divided by the connections. Kernel socket memory is not in the resident set and is
//! the same for every server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use super::common;
use super::common::report::target;
use super::http_hello;
use super::servers;

/// The servers measured: name, what it is.
const VARIANTS: &[(&str, &str)] = &[
    (
        "xev-io_uring-pooled",
        "http_hello --pooled (read_pooled), io_uring",
    ),
    (
        "xev-epoll-pooled",
        "http_hello --pooled (read_pooled), epoll",
    ),
    (
        "xev-io_uring",
        "http_hello (8 KiB read buffer per connection), io_uring",
    ),
    (
        "xev-epoll",
        "http_hello (8 KiB read buffer per connection), epoll",
    ),
    (
        "tokio",
        "the same server on tokio current_thread (8 KiB read buffer)",
    ),
];

/// The target: bytes per idle connection of the pooled server.
const TARGET_BYTES: f64 = 4096.0;

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// Run the section; true if a child failed.
pub fn section(quick: bool) -> bool {
    let n: usize =
        common::env_parse("XEV_BENCH_IDLE_CONNS").unwrap_or(if quick { 2_000 } else { 10_000 });
    println!();
    println!(
        "idle connections: {n} keep-alive connections, one request each, then idle; \
         server resident-set growth per connection (each server in its own process)"
    );
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            println!("idle connections: SKIPPED (cannot find this executable: {e})");
            return false;
        }
    };
    let mut failed = false;
    let mut results = Vec::new();
    let need = n as u64 + 256;
    let have = raise_nofile();
    if have < need {
        println!(
            "idle connections: SKIPPED (RLIMIT_NOFILE is {have} after raising soft to hard; \
             {need} needed)"
        );
        return false;
    }
    println!("| server | bytes per idle connection |");
    println!("|---|---|");
    for &(name, what) in VARIANTS {
        if name.contains("io_uring") && !xev::Backend::IoUring.is_available() {
            println!("| {name} ({what}) | SKIPPED (io_uring not available) |");
            continue;
        }
        match measure(&exe, name, n) {
            Ok(Ok(b)) => {
                println!("| {name} ({what}) | {b:.0} |");
                results.push((name, b));
            }
            Ok(Err(why)) => println!("| {name} ({what}) | SKIPPED ({why}) |"),
            Err(e) => {
                println!("| {name} ({what}) | FAILED: {e} |");
                failed = true;
            }
        }
    }
    let get = |n: &str| results.iter().find(|(v, _)| *v == n).map(|(_, b)| *b);
    for name in ["xev-io_uring-pooled", "xev-epoll-pooled"] {
        if let Some(b) = get(name) {
            target(
                format_args!("{name}: {b:.0} B per idle connection <= {TARGET_BYTES:.0} B"),
                b <= TARGET_BYTES,
            );
        }
    }
    if let (Some(p), Some(t)) = (get("xev-epoll-pooled"), get("tokio")) {
        println!(
            "xev pooled (epoll) / tokio per idle connection: {:.3}x",
            p / t
        );
    }
    failed
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit; the new soft limit.
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

/// One variant: bytes per idle connection, or why it was skipped.
fn measure(exe: &std::path::Path, name: &str, n: usize) -> Result<Result<f64, String>, String> {
    use std::io::BufRead;
    let mut child = Command::new(exe)
        .env("XEV_HTTP_IDLE_CHILD", name)
        .env("XEV_BENCH_IDLE_CONNS", n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let mut to = child.stdin.take().expect("stdin");
    let mut from = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let mut ask = |cmd: &str, line: &mut String| -> Result<(), String> {
        if !cmd.is_empty() {
            writeln!(to, "{cmd}").map_err(|e| format!("to child: {e}"))?;
        }
        line.clear();
        from.read_line(line)
            .map_err(|e| format!("from child: {e}"))?;
        Ok(())
    };
    ask("", &mut line)?;
    if let Some(why) = line.strip_prefix("idle-skipped ") {
        let _ = child.wait();
        return Ok(Err(why.trim().to_string()));
    }
    let addr: std::net::SocketAddr = line
        .strip_prefix("idle-listening ")
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("child said {line:?}"))?;
    let rss = |ask: &mut dyn FnMut(&str, &mut String) -> Result<(), String>| {
        let mut l = String::new();
        ask("rss", &mut l)?;
        l.strip_prefix("idle-rss ")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("child said {l:?}"))
    };
    let ok_len = http_hello::OK.len();
    let open = |k: usize| -> Result<Vec<TcpStream>, String> {
        let mut conns = Vec::with_capacity(k);
        for _ in 0..k {
            let c = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
            let _ = c.set_nodelay(true);
            let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
            conns.push(c);
        }
        for c in &mut conns {
            c.write_all(REQUEST).map_err(|e| format!("request: {e}"))?;
        }
        let mut buf = vec![0u8; ok_len];
        for c in &mut conns {
            c.read_exact(&mut buf)
                .map_err(|e| format!("response: {e}"))?;
            if buf != http_hello::OK {
                return Err("wrong response".into());
            }
        }
        Ok(conns)
    };
    // Warm-up: the runtime's own structures and pools reach their working size.
    for _ in 0..3 {
        drop(open(64)?);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(&mut ask)?;
    let mut conns: Vec<TcpStream> = Vec::with_capacity(n);
    while conns.len() < n {
        let k = (n - conns.len()).min(100);
        conns.extend(open(k)?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(&mut ask)?;
    drop(to);
    let _ = child.kill();
    let _ = child.wait();
    drop(conns);
    Ok(Ok(after.saturating_sub(before) as f64 / n as f64))
}

/// The child: serve `variant` and answer the parent's `rss` requests until its stdin
/// closes.
pub fn child(variant: &str) -> ! {
    use std::io::BufRead;
    let n: usize = common::env_parse("XEV_BENCH_IDLE_CONNS").unwrap_or(10_000);
    let need = n as u64 + 256;
    let have = raise_nofile();
    if have < need {
        println!("idle-skipped RLIMIT_NOFILE is {have} after raising soft to hard; {need} needed");
        std::process::exit(0);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = servers::Stop::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let s = stop.clone();
    let v = variant.to_string();
    std::thread::spawn(move || {
        let r = match v.as_str() {
            "xev-io_uring-pooled" => {
                servers::xev_with(xev::Backend::IoUring, listener, &s, &ready_tx, |l| {
                    Box::pin(http_hello::serve_pooled(l))
                })
            }
            "xev-epoll-pooled" => {
                servers::xev_with(xev::Backend::Epoll, listener, &s, &ready_tx, |l| {
                    Box::pin(http_hello::serve_pooled(l))
                })
            }
            "xev-io_uring" => servers::xev(xev::Backend::IoUring, listener, &s, &ready_tx),
            "xev-epoll" => servers::xev(xev::Backend::Epoll, listener, &s, &ready_tx),
            "tokio" => servers::tokio_hello(listener, &s, &ready_tx),
            other => Err(format!("unknown variant {other}")),
        };
        if let Err(e) = r {
            println!("idle-error {e}");
            std::process::exit(1);
        }
    });
    if let Ok(Err(e)) = ready_rx.recv() {
        println!("idle-error {e}");
        std::process::exit(1);
    }
    println!("idle-listening {addr}");
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref() {
            Ok("rss") => println!("idle-rss {}", common::rss_bytes()),
            _ => break,
        }
    }
    stop.fire();
    std::process::exit(0);
}
