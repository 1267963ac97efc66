//! Load: many concurrent TCP connections, each echoing 64 KiB, through the callback API
//! and the async runtime, on every backend. All connections are open at once before any
//! data moves; every byte that comes back is checked against what that connection sent
//! (a per-connection stream, compared byte for byte, which is stronger than a checksum).
//! Each run prints connections held, bytes, time and peak RSS (VmHWM).
//!
//! The default suite runs 1,000 connections; the ignored `load_10k` runs 10,000:
//!
//! ```text
//! cargo test -p runtime-tests --test load -- --nocapture
//! cargo test -p runtime-tests --test load -- --ignored --nocapture load_10k
//! ```
//!
//! The soft fd limit is raised to the hard one first. When one process cannot hold both
//! ends of every connection, the clients run in a child process (this test binary again)
//! and the server in this one; if even that does not fit, the run is skipped with the
//! reason printed.

mod common;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Command;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::*;
use xev::net::{TcpListener, TcpStream};
use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

static SERIAL: Mutex<()> = Mutex::new(());

/// Bytes each connection sends and gets back.
const ECHO: usize = 64 * 1024;
/// Read buffer of each end.
const READ_BUF: usize = 8 * 1024;
/// Connects in flight at once (more would overflow the listener's accept queue, whose
/// extra connections the kernel resets later).
const CONNECTING: usize = 256;
/// A run that takes longer than this has hung.
const LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Api {
    Callback,
    Async,
}

impl Api {
    fn name(self) -> &'static str {
        match self {
            Api::Callback => "callback",
            Api::Async => "async",
        }
    }
}

/// What the client side measured.
#[derive(Debug, Default)]
struct Report {
    held: usize,
    bytes: u64,
    secs: f64,
    failures: Vec<String>,
}

/// Check `data`, received by client `id` at `off`, against what it sent.
fn verify(id: u32, off: usize, data: &[u8], n: usize) -> Result<(), String> {
    if off + data.len() > ECHO {
        return Err(format!("connection {id}: more than {ECHO} bytes came back"));
    }
    check(id, CLIENT, off as u64, data, n as u32).map_err(|e| format!("connection {id}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Callback API

struct CbServerConn {
    tcp: Tcp,
    read: Pin<Box<Completion>>,
    q: WriteQueue,
}

struct CbClient {
    id: u32,
    tcp: Tcp,
    connect: Pin<Box<Completion>>,
    read: Pin<Box<Completion>>,
    q: WriteQueue,
    received: usize,
}

#[derive(Default)]
struct CbState {
    servers: Vec<Rc<RefCell<CbServerConn>>>,
    connected: usize,
    done: usize,
    failures: Vec<String>,
}

fn cb_serve(lp: &mut Loop, st: &Rc<RefCell<CbState>>, tcp: Tcp) {
    let conn = Rc::new(RefCell::new(CbServerConn {
        tcp,
        read: completion(),
        q: WriteQueue::new(),
    }));
    let weak = Rc::downgrade(&conn);
    {
        let mut c = conn.borrow_mut();
        let c = &mut *c;
        c.tcp.read(
            lp,
            c.read.as_mut(),
            Buffer::from(vec![0u8; READ_BUF]),
            (weak, Rc::downgrade(st)),
            |(weak, st), lp, c, r| {
                let (Some(conn), Some(st)) = (weak.upgrade(), st.upgrade()) else {
                    return CallbackAction::Disarm;
                };
                match r {
                    Ok(n) => {
                        let data = c.buffer().unwrap().as_slice()[..n].to_vec();
                        let conn = conn.borrow();
                        let st2 = Rc::downgrade(&st);
                        conn.tcp.queue_write(
                            lp,
                            &conn.q,
                            Buffer::from(data),
                            st2,
                            |st, _, _, r| {
                                if let (Err(e), Some(st)) = (r, st.upgrade()) {
                                    st.borrow_mut().failures.push(format!("echo write: {e}"));
                                }
                                CallbackAction::Disarm
                            },
                        );
                        CallbackAction::Rearm
                    }
                    Err(ReadError::Eof) => CallbackAction::Disarm,
                    Err(e) => {
                        st.borrow_mut().failures.push(format!("echo read: {e}"));
                        CallbackAction::Disarm
                    }
                }
            },
        );
    }
    st.borrow_mut().servers.push(conn);
}

fn cb_client_read(
    lp: &mut Loop,
    client: &Rc<RefCell<CbClient>>,
    st: &Rc<RefCell<CbState>>,
    n: usize,
) {
    let mut cl = client.borrow_mut();
    let cl = &mut *cl;
    let ud = (Rc::downgrade(client), Rc::downgrade(st), n);
    cl.tcp.read(
        lp,
        cl.read.as_mut(),
        Buffer::from(vec![0u8; READ_BUF]),
        ud,
        |(client, st, n), _, c, r| {
            let (Some(client), Some(st)) = (client.upgrade(), st.upgrade()) else {
                return CallbackAction::Disarm;
            };
            let mut cl = client.borrow_mut();
            match r {
                Ok(k) => {
                    let data = &c.buffer().unwrap().as_slice()[..k];
                    if let Err(e) = verify(cl.id, cl.received, data, *n) {
                        st.borrow_mut().failures.push(e);
                        return CallbackAction::Disarm;
                    }
                    cl.received += k;
                    if cl.received == ECHO {
                        st.borrow_mut().done += 1;
                        CallbackAction::Disarm
                    } else {
                        CallbackAction::Rearm
                    }
                }
                Err(e) => {
                    let msg = format!("connection {}: read after {}: {e}", cl.id, cl.received);
                    st.borrow_mut().failures.push(msg);
                    CallbackAction::Disarm
                }
            }
        },
    );
}

/// Run `lp` until `done()` (with a 10 ms heartbeat, so `done` is checked even while
/// nothing else happens), or until the time limit.
fn cb_run_until(lp: &mut Loop, start: Instant, mut done: impl FnMut() -> bool) -> bool {
    let mut beat = completion();
    let stop = Rc::new(Cell::new(false));
    let s = stop.clone();
    fn arm(lp: &mut Loop, c: Pin<&mut Completion>, s: Rc<Cell<bool>>) {
        lp.timer(c, 10, move |lp, c, _| {
            if !s.get() {
                arm(lp, c, s.clone());
            }
            CallbackAction::Disarm
        });
    }
    arm(lp, beat.as_mut(), s);
    let mut ok = true;
    while !done() {
        if start.elapsed() > LIMIT {
            ok = false;
            break;
        }
        lp.run(RunMode::Once).unwrap();
    }
    // The heartbeat ends by itself within 10 ms.
    stop.set(true);
    while beat.state() == CompletionState::Active {
        lp.run(RunMode::Once).unwrap();
    }
    ok
}

/// Clients of the callback API: connect `n`, then echo. With `serve`, this loop also
/// runs the server on `listener`.
fn cb_clients(b: Backend, n: usize, addr: SocketAddr, listener: Option<Tcp>) -> Report {
    let start = Instant::now();
    let st: Rc<RefCell<CbState>> = Rc::default();
    let mut accept = completion();
    let mut clients: Vec<Rc<RefCell<CbClient>>> = Vec::with_capacity(n);
    let mut lp = runtime_tests::new_loop(b);
    if let Some(l) = &listener {
        l.accept(
            &mut lp,
            accept.as_mut(),
            Rc::downgrade(&st),
            |st, lp, _, r| {
                let Some(st) = st.upgrade() else {
                    return CallbackAction::Disarm;
                };
                match r {
                    Ok((tcp, _)) => cb_serve(lp, &st, tcp),
                    Err(e) => st.borrow_mut().failures.push(format!("accept: {e}")),
                }
                CallbackAction::Rearm
            },
        );
    }
    let mut report = Report::default();
    let connect_one = |lp: &mut Loop, clients: &mut Vec<Rc<RefCell<CbClient>>>| -> bool {
        let i = clients.len();
        let tcp = match Tcp::new(addr) {
            Ok(t) => t,
            Err(e) => {
                st.borrow_mut().failures.push(format!("socket {i}: {e}"));
                return false;
            }
        };
        let client = Rc::new(RefCell::new(CbClient {
            id: i as u32 + 1,
            tcp,
            connect: completion(),
            read: completion(),
            q: WriteQueue::new(),
            received: 0,
        }));
        {
            let mut cl = client.borrow_mut();
            let cl = &mut *cl;
            cl.tcp.connect(
                lp,
                cl.connect.as_mut(),
                addr,
                Rc::downgrade(&st),
                |st, _, _, r| {
                    if let Some(st) = st.upgrade() {
                        let mut st = st.borrow_mut();
                        match r {
                            Ok(()) => st.connected += 1,
                            Err(e) => st.failures.push(format!("connect: {e}")),
                        }
                    }
                    CallbackAction::Disarm
                },
            );
        }
        clients.push(client);
        true
    };
    // Every connection open (and, in this process, accepted) before any data moves.
    let want_servers = if listener.is_some() { n } else { 0 };
    let mut all_open = true;
    while clients.len() < n && st.borrow().failures.is_empty() {
        while clients.len() < n && clients.len() - st.borrow().connected < CONNECTING {
            if !connect_one(&mut lp, &mut clients) {
                break;
            }
        }
        lp.run(RunMode::Once).unwrap();
        if start.elapsed() > LIMIT {
            all_open = false;
            break;
        }
    }
    all_open &= cb_run_until(&mut lp, start, || {
        let s = st.borrow();
        (s.connected == n && s.servers.len() == want_servers) || !s.failures.is_empty()
    });
    {
        let s = st.borrow();
        report.held = s.connected.min(n);
        if !all_open {
            report.failures.push(format!(
                "only {} of {n} connected ({} accepted here) after {:?}",
                s.connected,
                s.servers.len(),
                start.elapsed()
            ));
        }
    }
    if report.failures.is_empty() && st.borrow().failures.is_empty() {
        for client in &clients {
            cb_client_read(&mut lp, client, &st, n);
            let cl = client.borrow();
            let data = stream_bytes(cl.id, CLIENT, 0, ECHO);
            cl.tcp.queue_write(
                &mut lp,
                &cl.q,
                Buffer::from(data),
                Rc::downgrade(&st),
                |st, _, _, r| {
                    if let (Err(e), Some(st)) = (r, st.upgrade()) {
                        st.borrow_mut().failures.push(format!("client write: {e}"));
                    }
                    CallbackAction::Disarm
                },
            );
        }
        let finished = cb_run_until(&mut lp, start, || {
            let s = st.borrow();
            s.done == n || !s.failures.is_empty()
        });
        if !finished {
            report.failures.push(format!(
                "{} of {n} echoes done after {LIMIT:?}",
                st.borrow().done
            ));
        }
    }
    report.secs = start.elapsed().as_secs_f64();
    report.bytes = (st.borrow().done * ECHO * 2) as u64;
    report
        .failures
        .extend(st.borrow().failures.iter().take(10).cloned());
    // The loop first (every completion Dead), then the sockets.
    drop(lp);
    drop(clients);
    drop(accept);
    st.borrow_mut().servers.clear();
    drop(listener);
    report
}

/// The callback API's server alone, until `stop()`.
fn cb_server(b: Backend, listener: Tcp, mut stop: impl FnMut() -> bool) -> Vec<String> {
    let st: Rc<RefCell<CbState>> = Rc::default();
    let mut accept = completion();
    let mut lp = runtime_tests::new_loop(b);
    listener.accept(
        &mut lp,
        accept.as_mut(),
        Rc::downgrade(&st),
        |st, lp, _, r| {
            let Some(st) = st.upgrade() else {
                return CallbackAction::Disarm;
            };
            match r {
                Ok((tcp, _)) => cb_serve(lp, &st, tcp),
                Err(e) => st.borrow_mut().failures.push(format!("accept: {e}")),
            }
            CallbackAction::Rearm
        },
    );
    cb_run_until(&mut lp, Instant::now(), &mut stop);
    drop(lp);
    drop(accept);
    let failures = std::mem::take(&mut st.borrow_mut().failures);
    st.borrow_mut().servers.clear();
    failures
}

// ---------------------------------------------------------------------------------------
// Async API

/// Opens once; every waiter then proceeds.
#[derive(Default)]
struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
    fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if self.open.get() {
                Poll::Ready(())
            } else {
                self.waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            }
        })
    }
}

async fn rt_echo(s: TcpStream, failures: Rc<RefCell<Vec<String>>>) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let (r, b) = s.read(buf).await;
        match r {
            Ok(0) => return,
            Ok(n) => {
                let (r, b) = s.write_all(b[..n].to_vec()).await;
                drop(b);
                if let Err(e) = r {
                    failures.borrow_mut().push(format!("echo write: {e}"));
                    return;
                }
            }
            Err(e) => {
                failures.borrow_mut().push(format!("echo read: {e}"));
                return;
            }
        }
        buf = b;
    }
}

async fn rt_accept_loop(
    l: Rc<TcpListener>,
    n: usize,
    accepted: Rc<Cell<usize>>,
    failures: Rc<RefCell<Vec<String>>>,
) {
    for _ in 0..n {
        match l.accept().await {
            Ok((s, _)) => {
                accepted.set(accepted.get() + 1);
                xev::spawn(rt_echo(s, failures.clone()));
            }
            Err(e) => {
                failures.borrow_mut().push(format!("accept: {e}"));
                return;
            }
        }
    }
}

async fn rt_client(
    id: u32,
    n: usize,
    addr: SocketAddr,
    gate: Rc<Gate>,
    connected: Rc<Cell<usize>>,
    done: Rc<Cell<usize>>,
    failures: Rc<RefCell<Vec<String>>>,
) {
    let s = match TcpStream::connect(addr).await {
        Ok(s) => Rc::new(s),
        Err(e) => {
            failures.borrow_mut().push(format!("connect {id}: {e}"));
            return;
        }
    };
    connected.set(connected.get() + 1);
    gate.wait().await;
    let w = s.clone();
    let f = failures.clone();
    xev::spawn(async move {
        if let Err(e) = w.write_all(stream_bytes(id, CLIENT, 0, ECHO)).await.0 {
            f.borrow_mut().push(format!("client write {id}: {e}"));
        }
    });
    let mut got = 0;
    let mut buf = vec![0u8; READ_BUF];
    while got < ECHO {
        let (r, b) = s.read(buf).await;
        match r {
            Ok(0) => {
                failures
                    .borrow_mut()
                    .push(format!("connection {id}: end of stream after {got}"));
                return;
            }
            Ok(k) => {
                if let Err(e) = verify(id, got, &b[..k], n) {
                    failures.borrow_mut().push(e);
                    return;
                }
                got += k;
            }
            Err(e) => {
                failures
                    .borrow_mut()
                    .push(format!("connection {id}: read: {e}"));
                return;
            }
        }
        buf = b;
    }
    done.set(done.get() + 1);
}

/// Clients of the async API (and, with `listener`, the server in the same runtime).
fn rt_clients(b: Backend, n: usize, addr: SocketAddr, listener: Option<Tcp>) -> Report {
    let start = Instant::now();
    let rt = xev::rt::Builder::new().backend(b).build().unwrap();
    let report = rt.block_on(async move {
        let failures: Rc<RefCell<Vec<String>>> = Rc::default();
        let accepted = Rc::new(Cell::new(0));
        let want_accepted = if listener.is_some() { n } else { 0 };
        if let Some(l) = listener {
            let l = Rc::new(TcpListener::from(std::os::fd::OwnedFd::from(l)));
            xev::spawn(rt_accept_loop(l, n, accepted.clone(), failures.clone()));
        }
        let gate: Rc<Gate> = Rc::default();
        let connected = Rc::new(Cell::new(0));
        let done = Rc::new(Cell::new(0));
        for i in 0..n {
            while i - connected.get() >= CONNECTING && failures.borrow().is_empty() {
                if start.elapsed() > LIMIT {
                    break;
                }
                xev::time::sleep(Duration::from_millis(1)).await;
            }
            xev::spawn(rt_client(
                i as u32 + 1,
                n,
                addr,
                gate.clone(),
                connected.clone(),
                done.clone(),
                failures.clone(),
            ));
        }
        let mut report = Report::default();
        while (connected.get() < n || accepted.get() < want_accepted)
            && failures.borrow().is_empty()
            && start.elapsed() < LIMIT
        {
            xev::time::sleep(Duration::from_millis(2)).await;
        }
        report.held = connected.get();
        if connected.get() < n {
            report
                .failures
                .push(format!("only {} of {n} connected", connected.get()));
        } else {
            gate.open();
            while done.get() < n && failures.borrow().is_empty() && start.elapsed() < LIMIT {
                xev::time::sleep(Duration::from_millis(2)).await;
            }
            if done.get() < n {
                report
                    .failures
                    .push(format!("{} of {n} echoes done", done.get()));
            }
        }
        report.bytes = (done.get() * ECHO * 2) as u64;
        report
            .failures
            .extend(failures.borrow().iter().take(10).cloned());
        report
    });
    drop(rt);
    Report {
        secs: start.elapsed().as_secs_f64(),
        ..report
    }
}

/// The async server alone, until `stop()`.
fn rt_server(b: Backend, listener: Tcp, n: usize, mut stop: impl FnMut() -> bool) -> Vec<String> {
    let rt = xev::rt::Builder::new().backend(b).build().unwrap();
    rt.block_on(async move {
        let failures: Rc<RefCell<Vec<String>>> = Rc::default();
        let l = Rc::new(TcpListener::from(std::os::fd::OwnedFd::from(listener)));
        xev::spawn(rt_accept_loop(l, n, Rc::default(), failures.clone()));
        while !stop() {
            xev::time::sleep(Duration::from_millis(10)).await;
        }
        let f = failures.borrow().clone();
        f
    })
}

// ---------------------------------------------------------------------------------------
// Running

/// A loopback listener with the largest accept queue the system allows.
fn listener() -> (Tcp, SocketAddr) {
    let l = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
    l.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    l.listen(65535).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// `XEV_LOAD_CHILD=<api>:<backend>:<n>:<addr>`: run the clients here and print a report.
fn child() -> bool {
    let Ok(spec) = std::env::var("XEV_LOAD_CHILD") else {
        return false;
    };
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let api = if parts[0] == "callback" {
        Api::Callback
    } else {
        Api::Async
    };
    let b = Backend::candidates()
        .iter()
        .copied()
        .find(|b| b.name() == parts[1])
        .unwrap();
    let n: usize = parts[2].parse().unwrap();
    let addr: SocketAddr = parts[3].parse().unwrap();
    raise_nofile();
    reset_peak_rss();
    let r = match api {
        Api::Callback => cb_clients(b, n, addr, None),
        Api::Async => rt_clients(b, n, addr, None),
    };
    println!(
        "LOAD_CHILD held={} bytes={} secs={:.3} peak_rss_kib={} failures={:?}",
        r.held,
        r.bytes,
        r.secs,
        peak_rss_kib(),
        r.failures
    );
    true
}

/// One run; panics with the failures.
fn run(api: Api, b: Backend, n: usize, test_name: &str) -> String {
    let limit = raise_nofile() as usize;
    let label = format!("load {} {}/{}", n, api.name(), b.name());
    let per_end = n + 64;
    let in_process = 2 * n + 64 <= limit;
    if !in_process && per_end > limit {
        let msg = format!(
            "{label}: SKIPPED: {n} connections need {per_end} fds per process, the hard \
             limit is {limit}"
        );
        eprintln!("{msg}");
        return msg;
    }
    reset_peak_rss();
    let t = Instant::now();
    let (report, child_rss) = if in_process {
        let r = match api {
            Api::Callback => {
                let (l, addr) = listener();
                cb_clients(b, n, addr, Some(l))
            }
            Api::Async => {
                let (l, addr) = listener();
                rt_clients(b, n, addr, Some(l))
            }
        };
        (r, None)
    } else {
        // Server here, clients in a child process.
        let addr;
        let mut child;
        let failures = match api {
            Api::Callback => {
                let l;
                (l, addr) = listener();
                child = spawn_child(api, b, n, addr, test_name);
                cb_server(b, l, || child.try_wait().unwrap().is_some())
            }
            Api::Async => {
                let l;
                (l, addr) = listener();
                child = spawn_child(api, b, n, addr, test_name);
                rt_server(b, l, n, || child.try_wait().unwrap().is_some())
            }
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.find("LOAD_CHILD ").map(|i| &l[i..]))
            .unwrap_or_else(|| panic!("{label}: the client process said nothing: {out:?}"))
            .to_string();
        let field = |k: &str| -> String {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{k}=")))
                .unwrap_or("0")
                .to_string()
        };
        let mut r = Report {
            held: field("held").parse().unwrap(),
            bytes: field("bytes").parse().unwrap(),
            secs: field("secs").parse().unwrap(),
            failures,
        };
        if !line.contains("failures=[]") {
            r.failures.push(format!("client process: {line}"));
        }
        (r, Some(field("peak_rss_kib")))
    };
    let took = t.elapsed();
    let mib = report.bytes as f64 / (1 << 20) as f64;
    let line = format!(
        "{label}: {} connections held, {mib:.0} MiB echoed (both ways) in {:.2} s ({:.0} MiB/s), \
         peak RSS {} KiB{}{}",
        report.held,
        took.as_secs_f64(),
        mib / took.as_secs_f64().max(1e-9),
        peak_rss_kib(),
        if in_process { "" } else { " (server process)" },
        child_rss.map_or(String::new(), |k| format!(", clients' process {k} KiB")),
    );
    eprintln!("{line}");
    assert!(
        report.failures.is_empty(),
        "{label}: {}",
        report.failures.join("; ")
    );
    assert_eq!(report.held, n, "{label}: connections held");
    assert_eq!(report.bytes, (n * ECHO * 2) as u64, "{label}: bytes");
    line
}

fn spawn_child(
    api: Api,
    b: Backend,
    n: usize,
    addr: SocketAddr,
    test_name: &str,
) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            test_name,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env(
            "XEV_LOAD_CHILD",
            format!("{}:{}:{n}:{addr}", api.name(), b.name()),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn load(n: usize, test_name: &str) {
    let _serial = serial(&SERIAL);
    let mut failed = Vec::new();
    for b in Backend::available() {
        for api in [Api::Callback, Api::Async] {
            if let Err(p) = std::panic::catch_unwind(|| run(api, b, n, test_name)) {
                failed.push(panic_message(&*p));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn load_1k() {
    if child() {
        return;
    }
    load(1000, "load_1k");
}

#[test]
#[ignore = "10,000 connections; run with --ignored"]
fn load_10k() {
    if child() {
        return;
    }
    load(10_000, "load_10k");
}
