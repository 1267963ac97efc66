//! Running out of descriptors (issue #9 item 8): an echo server whose accept fails with
//! `EMFILE` pauses accepting (a short timer) instead of retrying at once, keeps serving
//! the connections it has, and accepts the waiting clients once descriptors are free.
//! Both APIs (watchers and async), every backend.
//!
//! The server runs in a child process (this test binary, re-run with [`CHILD`] set and
//! `--exact` on the same test) so that only the child's `RLIMIT_NOFILE` is lowered: it
//! leaves the child exactly [`SLOTS`] free descriptors. The parent connects more clients
//! than that, checks the echoes, reads the child's own CPU time over a 300 ms window
//! while it is out of descriptors (from `getrusage`: a server retrying accept at once
//! burns a core), then closes some clients and checks that the waiting ones get served.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use runtime_tests::child::{leave_free_descriptors, TestChild};
use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::watcher::Timer;
use xev::{Backend, Buffer, CallbackAction, Completion, Error, Loop, Options, ReadError, RunMode};

/// Set in the child: `"<api> <backend name>"`.
const CHILD: &str = "XEV_EMFILE_TEST_CHILD";
/// Descriptors left free in the child, hence connections it can accept.
const SLOTS: usize = 6;
/// Clients the parent connects: more than the child can accept.
const CLIENTS: usize = SLOTS + 4;
/// How long a server waits before accepting again after `EMFILE`.
const BACKOFF_MS: u64 = 50;
/// The CPU-time window measured in the child once it is out of descriptors.
const WINDOW: Duration = Duration::from_millis(300);

#[test]
fn callback_server_backs_off_on_emfile() {
    parent_or_child("callback_server_backs_off_on_emfile", "callback");
}

#[test]
fn async_server_backs_off_on_emfile() {
    parent_or_child("async_server_backs_off_on_emfile", "async");
}

fn parent_or_child(test: &str, api: &str) {
    if let Ok(spec) = std::env::var(CHILD) {
        let (api, backend) = spec.split_once(' ').expect("child spec");
        let backend = *Backend::candidates()
            .iter()
            .find(|b| b.name() == backend)
            .expect("backend name");
        match api {
            "callback" => callback_server(backend),
            _ => async_server(backend),
        }
        return;
    }
    for b in Backend::available() {
        parent(test, api, b);
    }
}

// ---------------------------------------------------------------------------------------
// Parent

fn parent(test: &str, api: &str, b: Backend) {
    let mut child = TestChild::spawn(test, CHILD, &format!("{api} {}", b.name()));
    let port: u16 = child.report("PORT").parse().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ctx = format!("{api} on {}", b.name());

    // More clients than the child has descriptors for; each says hello.
    let mut clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            c.write_all(format!("hello {i:02}\n").as_bytes()).unwrap();
            c
        })
        .collect();
    assert_eq!(child.report("EMFILE"), "", "{ctx}");
    // The accepted ones echo (the listen queue is FIFO: the first SLOTS), also while
    // the child keeps failing to accept the others.
    for (i, c) in clients.iter_mut().enumerate().take(SLOTS) {
        expect_echo(c, &format!("hello {i:02}\n"), &ctx);
        c.write_all(b"still there?\n").unwrap();
        expect_echo(c, "still there?\n", &ctx);
    }
    for (i, c) in clients.iter_mut().enumerate().skip(SLOTS) {
        expect_silence(c, &format!("{ctx}: client {i}, not accepted yet"));
    }
    // No busy retry: the child's CPU time over the window, in microseconds.
    let report = child.report("CPU");
    let (cpu, wall) = report.split_once(' ').unwrap();
    let (cpu, wall): (u64, u64) = (cpu.parse().unwrap(), wall.parse().unwrap());
    assert!(
        cpu * 4 < wall,
        "{ctx}: the server used {cpu} us of CPU in {wall} us while out of descriptors"
    );

    // Free descriptors: the waiting clients get accepted and their hello echoed.
    for c in clients.drain(..4) {
        drop(c);
    }
    for (i, c) in clients.iter_mut().enumerate().skip(SLOTS - 4) {
        expect_echo(c, &format!("hello {:02}\n", i + 4), &ctx);
    }
    drop(clients);
    assert_eq!(child.report("DONE"), "", "{ctx}");
    assert!(child.succeeded(), "{ctx}: the child failed");
}

fn expect_echo(c: &mut TcpStream, want: &str, ctx: &str) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = vec![0; want.len()];
    c.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("{ctx}: no echo of {want:?}: {e}"));
    assert_eq!(String::from_utf8_lossy(&got), want, "{ctx}");
}

fn expect_silence(c: &mut TcpStream, ctx: &str) {
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut b = [0u8; 16];
    loop {
        match c.read(&mut b) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return,
            other => panic!("{ctx}: got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Child: shared pieces

/// Whether an accept error means "out of descriptors or memory": pause accepting.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// User plus system CPU time of this process so far.
fn cpu_time() -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is live and writable.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Report the CPU time used over [`WINDOW`] from `start` (CPU time, wall clock).
fn report_window(start: (Duration, Instant)) {
    let cpu = cpu_time() - start.0;
    let wall = start.1.elapsed();
    println!("XEV CPU {} {}", cpu.as_micros(), wall.as_micros());
}

// ---------------------------------------------------------------------------------------
// Child: the watcher (callback) server

struct Server {
    listener: Tcp,
    /// The CPU-time window's completion, and whether it was started.
    window: Pin<Box<Completion>>,
    measured: bool,
    /// Every connection (kept to the end: its completion may not be freed in its own
    /// callback).
    conns: Vec<Rc<RefCell<Conn>>>,
    closed: usize,
}

struct Conn {
    tcp: Option<Tcp>,
    read: Pin<Box<Completion>>,
    queue: WriteQueue,
}

type Srv = Rc<RefCell<Server>>;

fn callback_server(b: Backend) {
    let mut lp = Loop::new(Options {
        backend: Some(b),
        ..Options::default()
    })
    .unwrap();
    let mut accept = Box::pin(Completion::new());
    let listener = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    listener.listen(128).unwrap();
    let port = listener.local_addr().unwrap().port();
    let srv: Srv = Rc::new(RefCell::new(Server {
        listener,
        window: Box::pin(Completion::new()),
        measured: false,
        conns: Vec::with_capacity(CLIENTS),
        closed: 0,
    }));
    leave_free_descriptors(SLOTS);
    println!("XEV PORT {port}");
    start_accept(&mut lp, accept.as_mut(), &srv);
    while srv.borrow().closed < CLIENTS {
        lp.run(RunMode::Once).unwrap();
    }
    println!("XEV DONE");
    drop(lp);
    // Writes still queued hold callbacks that hold the server, which holds the queues:
    // break that cycle (the test's own) so LeakSanitizer sees no leak at exit.
    srv.borrow_mut().conns.clear();
}

fn start_accept(lp: &mut Loop, c: Pin<&mut Completion>, srv: &Srv) {
    let s = srv.borrow();
    s.listener.accept(lp, c, srv.clone(), on_accept);
}

fn on_accept(
    srv: &mut Srv,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<(Tcp, Option<SocketAddr>), Error>,
) -> CallbackAction {
    match r {
        Ok((tcp, _)) => {
            let conn = Rc::new(RefCell::new(Conn {
                tcp: Some(tcp),
                read: Box::pin(Completion::new()),
                queue: WriteQueue::new(),
            }));
            let ud = (srv.clone(), Rc::downgrade(&conn));
            {
                let mut cn = conn.borrow_mut();
                let Conn { tcp, read, .. } = &mut *cn;
                let buf = Buffer::from(vec![0; 256]);
                tcp.as_ref()
                    .unwrap()
                    .read(lp, read.as_mut(), buf, ud, on_read);
            }
            srv.borrow_mut().conns.push(conn);
            CallbackAction::Rearm
        }
        Err(Error::Io(e)) if out_of_resources(&e) => {
            if !srv.borrow().measured {
                srv.borrow_mut().measured = true;
                println!("XEV EMFILE");
                let start = (cpu_time(), Instant::now());
                let mut s = srv.borrow_mut();
                let ms = WINDOW.as_millis() as u64;
                Timer::new().run(lp, s.window.as_mut(), ms, start, |start, _, _, _| {
                    report_window(*start);
                    CallbackAction::Disarm
                });
            }
            // Accepting again now would fail again now: pause, on the same completion.
            Timer::new().run(lp, c, BACKOFF_MS, srv.clone(), |srv, lp, c, _| {
                start_accept(lp, c, srv);
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        }
        Err(e) => panic!("accept: {e}"),
    }
}

fn on_read(
    (srv, conn): &mut (Srv, Weak<RefCell<Conn>>),
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, ReadError>,
) -> CallbackAction {
    let conn = conn.upgrade().expect("connections live to the end");
    let mut conn = conn.borrow_mut();
    match r {
        Ok(n) => {
            let bytes = c.buffer().unwrap().as_slice()[..n].to_vec();
            let Conn { tcp, queue, .. } = &mut *conn;
            let buf = Buffer::from(bytes);
            tcp.as_ref()
                .unwrap()
                .queue_write(lp, queue, buf, (), |_, _, _, r| {
                    r.expect("echo");
                    CallbackAction::Disarm
                });
            CallbackAction::Rearm
        }
        Err(ReadError::Eof) => {
            // Dropping the socket frees its descriptor (once its queued echoes are out).
            conn.tcp = None;
            srv.borrow_mut().closed += 1;
            CallbackAction::Disarm
        }
        Err(e) => panic!("read: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Child: the async server

fn async_server(b: Backend) {
    let rt = xev::rt::Builder::new().backend(b).build().unwrap();
    rt.block_on(async {
        let listener = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        leave_free_descriptors(SLOTS);
        println!("XEV PORT {port}");
        let closed = Rc::new(Cell::new(0));
        let mut measured = false;
        while closed.get() < CLIENTS {
            let accepted = xev::time::timeout(Duration::from_millis(100), listener.accept());
            let Ok(accepted) = accepted.await else {
                continue; // just to look at the stop condition
            };
            match accepted {
                Ok((stream, _)) => {
                    let closed = closed.clone();
                    xev::spawn(async move {
                        let mut buf = vec![0u8; 256];
                        loop {
                            let (r, mut b) = stream.read(buf).await;
                            let n = r.expect("read");
                            if n == 0 {
                                break;
                            }
                            b.truncate(n);
                            let (r, mut b) = stream.write_all(b).await;
                            r.expect("echo");
                            b.resize(256, 0);
                            buf = b;
                        }
                        drop(stream);
                        closed.set(closed.get() + 1);
                    });
                }
                Err(e) if out_of_resources(&e) => {
                    if !measured {
                        measured = true;
                        println!("XEV EMFILE");
                        let start = (cpu_time(), Instant::now());
                        xev::spawn(async move {
                            xev::time::sleep(WINDOW).await;
                            report_window(start);
                        });
                    }
                    // Accepting again now would fail again now: pause.
                    xev::time::sleep(Duration::from_millis(BACKOFF_MS)).await;
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    });
    println!("XEV DONE");
}
