//! The fd-lifetime rule of the async runtime: an fd number is never closed while an
//! operation that names it can still be submitted, is in the kernel, is parked on
//! readiness or is queued for the thread pool (orphans of dropped futures included), so a
//! stale operation never reaches a new file that got the same number. Also: a future
//! dropped inside a loop callback still cancels its operation, a socket dropped there is
//! still announced closed to the loop, a socket moved to a second runtime keeps the first
//! runtime's operations, a read waiting without an operation (the poll backend's direct
//! path) is woken when its socket moves to another runtime, the waiter a dropped read
//! leaves is woken when its socket closes, and replacing the runtime's `Loop` fails
//! loudly.
//!
//! Every test runs once per available backend, on runtimes it builds itself while holding
//! [`LOCK`]: the tests watch fd numbers being reused (the lowest free number is the next
//! one handed out), so no other test of this file may open or close fds meanwhile.

use std::cell::Cell;
use std::future::Future;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::fs::{File, OpenOptions};
use xev::net::{TcpListener, TcpStream};
use xev::rt::{Builder, Runtime};
use xev::time::{sleep, timeout};
use xev::{Backend, CallbackAction, Completion};

static LOCK: Mutex<()> = Mutex::new(());

/// How long to wait for bytes or a connection before calling them lost.
const LOST: Duration = Duration::from_secs(5);

/// Run `body` on a fresh runtime of each available backend, with no other test of this
/// file running.
fn on_each_backend<Fut: Future<Output = ()>>(body: impl Fn(Backend) -> Fut) {
    let _g: MutexGuard<'_, ()> = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| runtime(b).block_on(body(b)));
}

fn runtime(b: Backend) -> Runtime {
    Builder::new()
        .backend(b)
        .build()
        .unwrap_or_else(|e| panic!("runtime on {b:?}: {e}"))
}

/// Poll `fut` once with the current task's context; it must be pending.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// Connect a new socket through `other` (it likely gets the number just freed), have its
/// peer send "DATA", and check the new socket reads exactly that: a stale operation on
/// the old number must not have taken it. `what` names the stale operation.
async fn new_socket_gets_its_data(other: &std::net::TcpListener, round: usize, what: &str) {
    let (c, mut c_peer) = std_connected(other);
    c_peer.write_all(b"DATA").unwrap();
    let c = TcpStream::from(c);
    let (res, got) = timeout(LOST, c.read_exact(vec![0u8; 4]))
        .await
        .unwrap_or_else(|_| panic!("round {round}: {what} took the data"));
    res.unwrap();
    assert_eq!(got, b"DATA", "round {round}");
}

/// A connected pair through `l`: (xev side, blocking std peer). (`l` outlives the pair,
/// so that the next socket gets the number of the first one closed.)
async fn std_pair(l: &std::net::TcpListener) -> (TcpStream, std::net::TcpStream) {
    let s = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(LOST)).unwrap();
    (s, peer)
}

/// Send on `s` (without the loop) until its send buffer is full.
fn fill_send_buffer(s: &TcpStream) {
    let chunk = [0u8; 65536];
    loop {
        // SAFETY: a plain send from a live buffer on a socket `s` keeps open.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "filling: {e}");
            return;
        }
    }
}

/// A connected pair made with blocking std calls only (the loop does not turn):
/// (client, server side).
fn std_connected(l: &std::net::TcpListener) -> (std::net::TcpStream, std::net::TcpStream) {
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(LOST)).unwrap();
    c.set_read_timeout(Some(LOST)).unwrap();
    (c, s)
}

/// Drop `v` inside a callback of the runtime's loop (a zero-length timer added through
/// `with_loop`), and return once that callback has run.
async fn drop_inside_a_callback<T: 'static>(v: T) {
    let done = Rc::new(Cell::new(false));
    let d = done.clone();
    let mut v = Some(v);
    let mut c = Box::pin(Completion::new());
    xev::rt::with_loop(|lp| {
        lp.timer(c.as_mut(), 0, move |_, _, _| {
            drop(v.take());
            d.set(true);
            CallbackAction::Disarm
        })
    });
    let start = Instant::now();
    while !done.get() {
        assert!(start.elapsed() < LOST, "the timer callback never ran");
        sleep(Duration::from_millis(1)).await;
    }
    drop(c); // Dead: its callback returned Disarm
}

/// The message of a caught panic.
fn panic_message(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The exact scenario of the defect: a write future polled once (on io_uring its SQE is
/// queued, not yet submitted) and dropped, then its socket dropped, then a new connected
/// socket that would get the same number, then the loop turns. The stale write must not
/// send its bytes to the new socket's peer.
#[test]
fn an_orphaned_write_never_reaches_a_new_socket() {
    on_each_backend(|_| async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let (a, _a_peer) = std_pair(&l).await;
            // A full send buffer: the write cannot finish at its first poll on the poll
            // backend either (a write that can finishes there at once, orphaning nothing).
            fill_send_buffer(&a);
            let mut w = Box::pin(a.write(&b"STALE"[..]));
            poll_once(w.as_mut()).await;
            drop(w);
            drop(a);
            // Blocking std calls: the loop does not turn before the new socket exists.
            let (c, mut c_peer) = std_connected(&other);
            let c = TcpStream::from(c);
            sleep(Duration::from_millis(5)).await; // the loop turns
            c.write_all("hello").await.0.unwrap();
            let mut got = [0u8; 5];
            c_peer.read_exact(&mut got).unwrap();
            assert_eq!(
                &got, b"hello",
                "round {round}: a stale write reached the new socket"
            );
        }
    });
}

/// As above for a read: the stale read must not take the new connection's data.
#[test]
fn an_orphaned_read_never_takes_a_new_sockets_data() {
    on_each_backend(|_| async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let (a, _a_peer) = std_pair(&l).await;
            let mut r = Box::pin(a.read(vec![0u8; 64]));
            poll_once(r.as_mut()).await;
            drop(r);
            drop(a);
            new_socket_gets_its_data(&other, round, "a stale read").await;
        }
    });
}

/// A read future and its socket dropped inside a loop callback (where the runtime's loop
/// is borrowed): the read is still cancelled and the number is not reused before it
/// ends, so a new async socket then reads its own data.
#[test]
fn a_socket_and_its_read_dropped_inside_a_callback_leave_a_new_socket_its_data() {
    on_each_backend(|_| async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for round in 0..5 {
            let a = Rc::new(TcpStream::connect(addr).await.unwrap());
            let (_a_srv, _) = l.accept().await.unwrap();
            let a2 = a.clone();
            let mut read = Box::pin(async move { a2.read(vec![0u8; 64]).await });
            poll_once(read.as_mut()).await;
            sleep(Duration::from_millis(2)).await; // parked (epoll) or in the kernel
            drop_inside_a_callback((read, a)).await;

            let b = TcpStream::connect(addr).await.unwrap();
            let (b_srv, _) = l.accept().await.unwrap();
            b_srv.write_all("DATA").await.0.unwrap();
            let (res, got) = timeout(LOST, b.read_exact(vec![0u8; 4]))
                .await
                .unwrap_or_else(|_| panic!("round {round}: the dropped read took the data"));
            res.unwrap();
            assert_eq!(got, b"DATA", "round {round}");
        }
    });
}

/// A socket dropped inside a loop callback (or inside `with_loop`), where the loop is
/// borrowed, is still announced closed to the loop: a raw fd that later gets its number,
/// used through the callback API, is woken (on epoll the loop must not keep trusting the
/// old registration).
#[test]
fn a_socket_dropped_inside_a_callback_is_announced_closed() {
    on_each_backend(|_| async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let (a, mut a_peer) = std_pair(&l).await;
            // A read that parks, then completes: the fd is registered and trusted.
            let w = xev::spawn(async move {
                sleep(Duration::from_millis(2)).await;
                a_peer.write_all(b"x").unwrap();
                a_peer
            });
            let (n, _) = a.read(vec![0u8; 8]).await;
            assert_eq!(n.unwrap(), 1);
            let a_peer = w.await.unwrap();
            let num = a.as_raw_fd();
            if round % 2 == 0 {
                drop_inside_a_callback(a).await;
            } else {
                xev::rt::with_loop(|_| drop(a));
            }
            sleep(Duration::from_millis(5)).await;

            let (s, mut s_peer) = std_connected(&l);
            assert_eq!(
                s.as_raw_fd(),
                num,
                "round {round}: the number was not reused"
            );
            s.set_nonblocking(true).unwrap();
            let done = Rc::new(Cell::new(false));
            let d = done.clone();
            let mut c = Box::pin(Completion::new());
            xev::rt::with_loop(|lp| {
                lp.start(
                    c.as_mut(),
                    xev::Op::Recv {
                        fd: s.as_raw_fd(),
                        buf: xev::Buffer::inline(8),
                    },
                    move |_, _, r| {
                        assert!(matches!(r, xev::OpResult::Recv(Ok(1))), "{r:?}");
                        d.set(true);
                        CallbackAction::Disarm
                    },
                )
            });
            sleep(Duration::from_millis(5)).await; // parked
            s_peer.write_all(b"y").unwrap();
            let start = Instant::now();
            while !done.get() && start.elapsed() < LOST {
                sleep(Duration::from_millis(1)).await;
            }
            if !done.get() {
                std::mem::forget(c); // still Active: dropping it would abort
                panic!("round {round}: a recv on the reused number was never woken");
            }
            drop(c);
            drop((s, s_peer, a_peer));
        }
    });
}

/// A file temp path, removed on drop.
struct TempPath(std::path::PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        TempPath(std::env::temp_dir().join(format!("xev-fd-lifetime-{}-{tag}", std::process::id())))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A `pwrite` future polled once and dropped, then its `fs::File` dropped, then another
/// file or a socket opened (with the same number, if the first was closed): the stale
/// write must not land there. And a `pread` the same way must not read from a socket
/// that took the number (it would take its data).
#[test]
fn an_orphaned_pwrite_or_pread_never_reaches_a_reopened_number() {
    on_each_backend(|b| async move {
        let first = TempPath::new(&format!("first-{b:?}"));
        let second = TempPath::new(&format!("second-{b:?}"));
        std::fs::write(&second.0, b"original").unwrap();
        for round in 0..5 {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .open(&first.0)
                .await
                .unwrap();
            let mut w = Box::pin(f.write_at(&b"CORRUPT"[..], 0));
            poll_once(w.as_mut()).await;
            drop(w);
            drop(f);
            let g = std::fs::OpenOptions::new()
                .write(true)
                .open(&second.0)
                .unwrap();
            sleep(Duration::from_millis(5)).await; // the loop turns
            drop(g);
            assert_eq!(
                std::fs::read(&second.0).unwrap(),
                b"original",
                "round {round}: a stale pwrite reached the other file"
            );
        }

        // The same with a socket taking the number (on io_uring a write to a regular file
        // may be punted to a kernel worker, where the queued cancel catches it; a socket
        // write runs at once).
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let f = OpenOptions::new().write(true).open(&first.0).await.unwrap();
            let mut w = Box::pin(f.write_at(&b"CORRUPT"[..], 0));
            poll_once(w.as_mut()).await;
            drop(w);
            drop(f);
            let (c, mut c_peer) = std_connected(&other);
            let c = TcpStream::from(c);
            sleep(Duration::from_millis(5)).await; // the loop turns
            c.write_all("hello").await.0.unwrap();
            let mut got = [0u8; 5];
            c_peer.read_exact(&mut got).unwrap();
            assert_eq!(
                &got, b"hello",
                "round {round}: a stale pwrite reached a socket"
            );
        }

        for round in 0..5 {
            let f = File::open(&second.0).await.unwrap();
            let mut r = Box::pin(f.read_at(vec![0u8; 64], 0));
            poll_once(r.as_mut()).await;
            drop(r);
            drop(f);
            let (c, mut c_peer) = std_connected(&other);
            c_peer.write_all(b"DATA").unwrap();
            let c = TcpStream::from(c);
            let (res, got) = timeout(LOST, c.read_exact(vec![0u8; 4]))
                .await
                .unwrap_or_else(|_| panic!("round {round}: a stale pread took the data"));
            res.unwrap();
            assert_eq!(got, b"DATA", "round {round}");
        }
    });
}

/// The number of Active completions on the runtime's loop.
fn active() -> usize {
    xev::rt::with_loop(|lp| lp.active())
}

/// An accept future dropped inside a loop callback is cancelled (at the start of the next
/// turn): its slot is freed, and the next connection goes to the next accept.
#[test]
fn an_accept_dropped_inside_a_callback_is_cancelled() {
    on_each_backend(|_| async {
        let l = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let addr = l.local_addr().unwrap();
        let baseline = active();
        for round in 0..3 {
            let l2 = l.clone();
            let mut accept = Box::pin(async move { l2.accept().await.map(drop) });
            poll_once(accept.as_mut()).await;
            sleep(Duration::from_millis(2)).await;
            drop_inside_a_callback(accept).await;
            // The cancel goes out at the start of the next turn; its completion (and the
            // accept's) arrive a few turns later (much later under valgrind).
            let start = Instant::now();
            while active() != baseline && start.elapsed() < LOST {
                sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(
                active(),
                baseline,
                "round {round}: the accept is still in flight"
            );

            let client = std::net::TcpStream::connect(addr).unwrap();
            let (_server, peer) = timeout(LOST, l.accept())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the dropped accept took it"))
                .unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
        }
    });
}

/// `close` after a dropped operation waits for that operation to end, reports `Ok`, and
/// the stale operation reaches nothing else.
#[test]
fn close_after_an_orphaned_operation() {
    on_each_backend(|_| async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..3 {
            let (a, _a_peer) = std_pair(&l).await;
            let mut r = Box::pin(a.read(vec![0u8; 64]));
            poll_once(r.as_mut()).await;
            drop(r);
            timeout(LOST, a.close())
                .await
                .unwrap_or_else(|_| panic!("round {round}: close hung"))
                .unwrap();
            let (c, mut c_peer) = std_connected(&other);
            c_peer.write_all(b"DATA").unwrap();
            let c = TcpStream::from(c);
            let (res, got) = timeout(LOST, c.read_exact(vec![0u8; 4]))
                .await
                .unwrap_or_else(|_| panic!("round {round}: a stale read took the data"));
            res.unwrap();
            assert_eq!(got, b"DATA");
        }
    });
}

/// A socket released into an `OwnedFd` while a dropped operation is still in flight on it
/// hands out a working descriptor of the same connection.
#[test]
fn into_owned_fd_with_an_operation_in_flight() {
    on_each_backend(|_| async {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, mut a_peer) = std_pair(&l).await;
        let mut r = Box::pin(a.read(vec![0u8; 64]));
        poll_once(r.as_mut()).await;
        drop(r);
        let fd = OwnedFd::from(a);
        let s = std::net::TcpStream::from(fd);
        s.set_read_timeout(Some(LOST)).unwrap();
        sleep(Duration::from_millis(5)).await; // the dropped read is cancelled meanwhile
        a_peer.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        (&s).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        (&s).write_all(b"pong").unwrap();
        a_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
    });
}

/// A socket announced to a second runtime (sequential `block_on`s on one thread) leaves
/// the first runtime's parked read alone: it completes with the data.
#[test]
fn a_socket_used_on_a_second_runtime_keeps_the_first_runtimes_operations() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| {
        let rt1 = runtime(b);
        let rt2 = runtime(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr: SocketAddr = l.local_addr().unwrap();
        let s = Rc::new(rt1.block_on(TcpStream::connect(addr)).unwrap());
        let (mut peer, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(LOST)).unwrap();
        for round in 0..3 {
            let s1 = s.clone();
            let reader = rt1.spawn(async move { s1.read(vec![0u8; 16]).await });
            rt1.block_on(sleep(Duration::from_millis(5))); // the read parks on rt1
                                                           // rt2 uses the socket: a write (and so an announcement there).
            rt2.block_on(async {
                s.write_all("from rt2").await.0.unwrap();
            });
            let mut got = [0u8; 8];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"from rt2");
            peer_sends_data_to(&rt1, reader, &mut peer, round);
            // And a read on rt2 that parks there, after rt1 used the socket again.
            let s2 = s.clone();
            let reader2 = rt2.spawn(async move { s2.read(vec![0u8; 16]).await });
            rt2.block_on(sleep(Duration::from_millis(5)));
            rt1.block_on(async { s.write_all("from rt1").await.0.unwrap() });
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"from rt1");
            peer.write_all(b"more").unwrap();
            let (res, buf) = rt2
                .block_on(timeout(LOST, reader2))
                .unwrap_or_else(|_| panic!("round {round}: rt2's read hung"))
                .unwrap();
            assert_eq!(&buf[..res.unwrap()], b"more");
        }
        drop(s);
        drop((rt1, rt2));
    });
}

/// What a probed future has done so far (see [`probed`]).
#[derive(Default)]
struct Probe {
    polls: Cell<usize>,
    ready: Cell<bool>,
}

/// `fut`, recording its polls and its end in `probe`.
async fn probed<F: Future>(probe: Rc<Probe>, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        probe.polls.set(probe.polls.get() + 1);
        let r = fut.as_mut().poll(cx);
        probe.ready.set(r.is_ready());
        r
    })
    .await
}

/// The peer sends `data`; the read task `reader` of runtime `rt` gets exactly that
/// within [`LOST`].
fn peer_sends_data_to(
    rt: &Runtime,
    reader: xev::JoinHandle<(std::io::Result<usize>, Vec<u8>)>,
    peer: &mut std::net::TcpStream,
    round: usize,
) {
    peer.write_all(b"data").unwrap();
    let (res, buf) = rt
        .block_on(timeout(LOST, reader))
        .unwrap_or_else(|_| panic!("round {round}: rt1's read hung"))
        .unwrap();
    let n = res.unwrap_or_else(|e| panic!("round {round}: rt1's read failed: {e}"));
    assert_eq!(&buf[..n], b"data", "round {round}");
}

/// Turn the current runtime until `done()` holds; panic with `what` after [`LOST`].
async fn turn_until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < LOST, "{what}");
        sleep(Duration::from_millis(1)).await;
    }
}

/// A read waiting on rt1 for its socket's edge without an operation (the poll backend's
/// direct path) when the socket is used on rt2, which moves it there (rt1 stops trusting
/// its registration: `fd_released`): the read is woken at once, with no data sent, looks
/// again, finds nothing and waits again (no error, no empty result, still no
/// operation), then gets exactly the bytes the peer sends; rt2 still reads what comes
/// next. On io_uring the read is an operation in rt1's ring: nothing wakes it, and it
/// gets the bytes too.
#[test]
fn a_read_waiting_without_an_operation_is_woken_when_its_socket_moves_to_another_runtime() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| {
        let poll = b != Backend::IoUring;
        let rt1 = runtime(b);
        let rt2 = runtime(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = Rc::new(
            rt1.block_on(TcpStream::connect(l.local_addr().unwrap()))
                .unwrap(),
        );
        let (mut peer, _) = l.accept().unwrap();
        peer.set_read_timeout(Some(LOST)).unwrap();
        for round in 0..3 {
            let probe = Rc::new(Probe::default());
            let s1 = s.clone();
            let reader = rt1.spawn(probed(probe.clone(), async move {
                s1.read(vec![0u8; 16]).await
            }));
            // The read waits on rt1 (and the socket is announced there).
            let waiting_ops = rt1.block_on(async {
                sleep(Duration::from_millis(5)).await;
                active()
            });
            assert_eq!(probe.polls.get(), 1, "round {round}");
            assert!(!probe.ready.get(), "round {round}: nothing was sent yet");
            assert_eq!(
                waiting_ops,
                usize::from(!poll),
                "round {round}: operations of the waiting read on {b:?}"
            );

            // rt2 uses the socket: it is announced there, and released by rt1.
            rt2.block_on(async { s.write_all("from rt2").await.0.unwrap() });
            let mut got = [0u8; 8];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"from rt2", "round {round}");

            // Back on rt1, with still nothing sent to the socket.
            let waiting_ops = rt1.block_on(async {
                if poll {
                    turn_until(
                        &format!("round {round}: the waiting read was not woken when its socket moved to rt2"),
                        || probe.polls.get() >= 2,
                    )
                    .await;
                } else {
                    sleep(Duration::from_millis(5)).await;
                }
                active()
            });
            assert!(
                !probe.ready.get(),
                "round {round}: the woken read found no data and went on waiting"
            );
            if poll {
                assert_eq!(probe.polls.get(), 2, "round {round}: woken once");
                assert_eq!(
                    waiting_ops, 0,
                    "round {round}: it waits again without an operation"
                );
            } else {
                assert_eq!(probe.polls.get(), 1, "round {round}: io_uring: not woken");
                assert_eq!(
                    waiting_ops, 1,
                    "round {round}: its operation is still in the ring"
                );
            }

            peer_sends_data_to(&rt1, reader, &mut peer, round);

            // Nothing lost or left behind on rt2 either.
            peer.write_all(b"more").unwrap();
            let (res, buf) = rt2
                .block_on(timeout(LOST, s.read(vec![0u8; 16])))
                .unwrap_or_else(|_| panic!("round {round}: rt2's read hung"));
            assert_eq!(&buf[..res.unwrap()], b"more", "round {round}");
        }
        drop(s);
        drop((rt1, rt2));
    });
}

/// Counts the wakes of the waker made from it.
#[derive(Default)]
struct CountWakes(AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountWakes {
    fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A read waiting for its socket's edge without an operation (the poll backend's direct
/// path) that is dropped, with its socket, inside a loop callback, where it cannot
/// withdraw: the waiter it leaves is woken when the socket's close is announced at the
/// next turn (`FdState::reset`), once, before anything else happens on the number. A
/// connection accepted next gets the number (its accept resets the number's state again),
/// and its data goes to its own reader, never to the dropped read. On io_uring the
/// dropped read's operation is cancelled instead, and the new connection gets its data
/// all the same.
#[test]
fn a_waiter_left_on_a_closed_socket_is_woken_and_the_connection_reusing_its_number_gets_its_data() {
    on_each_backend(|b| async move {
        let poll = b != Backend::IoUring;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        for round in 0..5 {
            let _old_peer = std::net::TcpStream::connect(addr).unwrap();
            let (old, _) = timeout(LOST, l.accept()).await.unwrap().unwrap();
            let num = old.as_raw_fd();
            let old = Rc::new(old);
            let wakes = Arc::new(CountWakes::default());
            let waker = std::task::Waker::from(wakes.clone());
            let mut read = Box::pin({
                let old = old.clone();
                async move { old.read(vec![0u8; 16]).await }
            });
            let first = read
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker));
            assert!(first.is_pending(), "round {round}: nothing was sent");
            assert_eq!(
                active(),
                usize::from(!poll),
                "round {round}: operations of the waiting read on {b:?}"
            );
            // Connect the next client before the number is freed: the accept, not the
            // client's socket(2), then gets it.
            let mut new_peer = std::net::TcpStream::connect(addr).unwrap();
            drop_inside_a_callback((read, old)).await;
            sleep(Duration::from_millis(5)).await; // the deferred close (or the cancel)
            if poll {
                turn_until(
                    &format!("round {round}: the waiter left on the closed socket was not woken"),
                    || wakes.count() >= 1,
                )
                .await;
            }

            let (new, _) = timeout(LOST, l.accept()).await.unwrap().unwrap();
            assert_eq!(
                new.as_raw_fd(),
                num,
                "round {round}: the number was not reused"
            );
            new_peer.write_all(b"DATA").unwrap();
            let (res, got) = timeout(LOST, new.read_exact(vec![0u8; 4]))
                .await
                .unwrap_or_else(|_| panic!("round {round}: the new connection's data was lost"));
            res.unwrap();
            assert_eq!(got, b"DATA", "round {round}");
            if poll {
                assert_eq!(
                    wakes.count(),
                    1,
                    "round {round}: woken once, by the close; the new connection's edge \
                     found no waiter of the old socket"
                );
            }
        }
    });
}

/// Replacing the runtime's loop through `with_loop` is detected: the runtime panics with
/// a message saying so (and dropping it afterwards is fine).
#[test]
fn replacing_the_runtimes_loop_in_with_loop_panics() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| {
        let rt = runtime(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // A read in flight on the loop that is about to be replaced.
        let (s, peer) = rt.block_on(std_pair(&l));
        let s = Rc::new(s);
        let s1 = s.clone();
        let _reader = rt.spawn(async move { s1.read(vec![0u8; 8]).await.0.map(drop) });
        let r = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                sleep(Duration::from_millis(2)).await;
                xev::rt::with_loop(|lp| drop(std::mem::replace(lp, new_loop(b))));
            })
        }));
        let msg = panic_message(r.expect_err("replacing the loop went unnoticed"));
        assert!(msg.contains("Loop was replaced"), "{msg}");
        drop(rt);
        drop((s, peer));
    });
}

/// The same from inside a callback on the runtime's loop.
#[test]
fn replacing_the_runtimes_loop_in_a_callback_panics() {
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| {
        let rt = runtime(b);
        let mut c = Box::pin(Completion::new());
        let r = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                xev::rt::with_loop(|lp| {
                    lp.timer(c.as_mut(), 0, move |lp, _, _| {
                        drop(std::mem::replace(lp, new_loop(b)));
                        CallbackAction::Disarm
                    })
                });
                sleep(Duration::from_millis(50)).await;
            })
        }));
        let msg = panic_message(r.expect_err("replacing the loop went unnoticed"));
        assert!(msg.contains("Loop was replaced"), "{msg}");
        drop(rt);
        drop(c); // Dead: its callback returned
    });
}

/// `Signals`: a `recv` polled once, then the set dropped (its signalfd closed at once
/// before the fix), then a new socket that gets the number: the stale read must not take
/// the socket's data.
#[test]
fn an_orphaned_signal_read_never_takes_a_new_sockets_data() {
    on_each_backend(|_| async {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..5 {
            let mut set = xev::signal::Signals::new(&[libc::SIGUSR2]).unwrap();
            {
                let mut r = Box::pin(set.recv());
                poll_once(r.as_mut()).await;
            }
            drop(set);
            new_socket_gets_its_data(&other, round, "a stale signalfd read").await;
        }
    });
}

/// `Child::wait`: a wait polled once, then the child dropped (its pidfd closed at once
/// before the fix), then a new socket that gets the number: the stale poll must not act
/// on the socket (a poll cannot take data, but it must not report the socket's
/// readiness to nobody and leave the number in use either: the socket reads normally).
#[test]
fn an_orphaned_child_wait_never_reaches_a_new_socket() {
    on_each_backend(|_| async {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for round in 0..3 {
            let mut child =
                xev::process::spawn(std::process::Command::new("sleep").arg("5")).unwrap();
            {
                let mut w = Box::pin(child.wait());
                poll_once(w.as_mut()).await;
            }
            child.kill().unwrap();
            let _ = child.try_wait();
            drop(child);
            new_socket_gets_its_data(&other, round, "a stale pidfd poll").await;
        }
    });
}
