//! Faults, through both APIs and on every backend: a peer that resets the connection
//! mid-stream, a peer that stops reading while writes are queued and then closes,
//! panicking callbacks, tasks and pool jobs, and a loop or runtime dropped with every
//! kind of operation in flight. Each ends in an error (never a panic of xev's own, never
//! a hang), and the same loop or runtime keeps working afterwards; dropping leaks no fd
//! and finishes in bounded time.
//!
//! Every test takes `SERIAL`, so the fd counts are not disturbed by another test of this
//! file.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use runtime_tests::new_loop;
use xev::net::{TcpListener, TcpStream};
use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

static SERIAL: Mutex<()> = Mutex::new(());

/// Make `s` send a reset on close (`SO_LINGER` on, 0 s).
fn linger_zero(s: &impl AsRawFd) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads the linger struct we own.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

/// A connection whose one end is a non-blocking xev [`Tcp`] and the other a blocking std
/// socket: (xev end, std peer).
fn tcp_with_std_peer() -> (Tcp, std::net::TcpStream) {
    let (c, s) = std_tcp_pair();
    c.set_nonblocking(true).unwrap();
    (Tcp::from(OwnedFd::from(c)), s)
}

/// The OS error of an xev result, or `None`.
fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Io(e) => e.raw_os_error(),
        Error::Canceled => None,
    }
}

/// Run `lp` without blocking until `done()` or `limit` passes; false on timeout.
fn run_until(lp: &mut Loop, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !done() {
        if t.elapsed() > limit {
            return false;
        }
        lp.run(RunMode::NoWait).expect("run");
        std::thread::sleep(Duration::from_micros(500));
    }
    true
}

fn runtime(b: Backend) -> xev::rt::Runtime {
    xev::rt::Builder::new().backend(b).build().unwrap()
}

// ---------------------------------------------------------------------------------------
// A peer that resets the connection mid-stream

#[derive(Default)]
struct Outcome {
    read: Option<Result<(), ReadError>>,
    write: Option<Result<(), Error>>,
    bytes_in: usize,
}

#[test]
fn peer_reset_mid_stream_fails_reads_and_writes_callbacks() {
    let _serial = serial(&SERIAL);
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (x, mut peer) = tcp_with_std_peer();
        let x = Rc::new(x);
        peer.write_all(&[1u8; 1000]).unwrap();
        let out: Rc<RefCell<Outcome>> = Rc::default();
        let (mut r, mut w) = (completion(), completion());
        x.read(
            &mut lp,
            r.as_mut(),
            Buffer::from(vec![0u8; 4096]),
            out.clone(),
            |out, _, _, res| match res {
                Ok(n) => {
                    out.borrow_mut().bytes_in += n;
                    CallbackAction::Rearm
                }
                Err(e) => {
                    out.borrow_mut().read = Some(Err(e));
                    CallbackAction::Disarm
                }
            },
        );
        x.write(
            &mut lp,
            w.as_mut(),
            Buffer::from(vec![7u8; 64 * 1024]),
            out.clone(),
            |out, _, _, res| match res {
                Ok(_) => CallbackAction::Rearm,
                Err(e) => {
                    out.borrow_mut().write = Some(Err(e));
                    CallbackAction::Disarm
                }
            },
        );
        // Mid-stream: our reader has the peer's bytes, our writer has filled the pipe.
        assert!(run_until(&mut lp, Duration::from_secs(5), || out
            .borrow()
            .bytes_in
            == 1000));
        run_until(&mut lp, Duration::from_millis(50), || false);
        let mut sink = vec![0u8; 10_000];
        peer.read_exact(&mut sink).unwrap();
        linger_zero(&peer);
        drop(peer);
        let finished = run_until(&mut lp, Duration::from_secs(10), || {
            let o = out.borrow();
            o.read.is_some() && o.write.is_some()
        });
        let o = out.borrow();
        assert!(
            finished,
            "{b:?}: after the reset, read {:?} write {:?}",
            o.read, o.write
        );
        match o.read.as_ref().unwrap() {
            Err(ReadError::Io(e)) if e.raw_os_error() == Some(libc::ECONNRESET) => {}
            Err(ReadError::Eof) => {}
            other => panic!("{b:?}: read after a reset gave {other:?}"),
        }
        match o.write.as_ref().unwrap() {
            Err(e) if matches!(errno(e), Some(libc::EPIPE) | Some(libc::ECONNRESET)) => {}
            other => panic!("{b:?}: write after a reset gave {other:?}"),
        }
        drop(o);
        assert_eq!(lp.active(), 0);
        assert_loop_healthy(&mut lp, &format!("{b:?} after a peer reset"));
    });
}

#[test]
fn peer_reset_mid_stream_fails_reads_and_writes_async() {
    let _serial = serial(&SERIAL);
    for b in Backend::available() {
        runtime(b).block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (x, _) = l.accept().await.unwrap();
            let x = Rc::new(x);
            peer.write_all(&[1u8; 1000]).unwrap();
            let xr = x.clone();
            let reader = xev::spawn(async move {
                let mut total = 0;
                loop {
                    match xr.read(vec![0u8; 4096]).await.0 {
                        Ok(0) => return (total, Ok(())),
                        Ok(n) => total += n,
                        Err(e) => return (total, Err(e)),
                    }
                }
            });
            let xw = x.clone();
            let writer = xev::spawn(async move {
                loop {
                    if let Err(e) = xw.write_all(vec![7u8; 64 * 1024]).await.0 {
                        return e;
                    }
                }
            });
            // The peer reads a little of our stream, then resets.
            xev::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(30));
                let mut sink = vec![0u8; 10_000];
                peer.read_exact(&mut sink).unwrap();
                linger_zero(&peer);
                drop(peer);
            })
            .await
            .unwrap();
            let e = xev::time::timeout(Duration::from_secs(10), writer)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: write_all did not fail after a reset"))
                .unwrap();
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{b:?}: write after a reset: {e}"
            );
            let (n, r) = xev::time::timeout(Duration::from_secs(10), reader)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: read did not end after a reset"))
                .unwrap();
            assert_eq!(n, 1000, "{b:?}: bytes before the reset");
            match r {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => panic!("{b:?}: read after a reset: {e}"),
            }
            drop(x);
            assert_runtime_healthy(&format!("{b:?} after a peer reset")).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// A peer that stops reading while writes are queued, then closes

#[test]
fn stalled_peer_then_close_fails_every_queued_write() {
    let _serial = serial(&SERIAL);
    runtime_tests::each_backend(|b| {
        const N: usize = 256;
        const LEN: usize = 64 * 1024;
        let mut lp = new_loop(b);
        let (x, peer) = tcp_with_std_peer();
        let q = WriteQueue::new();
        let results: Rc<RefCell<Vec<Result<usize, Error>>>> = Rc::default();
        for _ in 0..N {
            x.queue_write(
                &mut lp,
                &q,
                Buffer::from(vec![3u8; LEN]),
                results.clone(),
                |res, _, _, r| {
                    res.borrow_mut().push(r);
                    CallbackAction::Disarm
                },
            );
        }
        // Let the writes fill every buffer on the way, until nothing moves for 300 ms.
        let mut last = (usize::MAX, Instant::now());
        while last.1.elapsed() < Duration::from_millis(300) {
            lp.run(RunMode::NoWait).unwrap();
            let n = results.borrow().len();
            if n != last.0 {
                last = (n, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let done_before = results.borrow().len();
        assert!(
            done_before < N && !q.is_empty(),
            "{b:?}: all {N} writes went through a peer that does not read"
        );
        drop(peer); // closes with unread data: a reset
        let finished = run_until(&mut lp, Duration::from_secs(10), || q.is_empty());
        let res = results.borrow();
        assert!(
            finished,
            "{b:?}: {} of {N} queued writes reported 10 s after the peer closed",
            res.len()
        );
        assert_eq!(res.len(), N, "{b:?}: every queued write reports once");
        let first_err = res
            .iter()
            .position(Result::is_err)
            .unwrap_or_else(|| panic!("{b:?}: no write failed after the peer closed"));
        assert!(
            res[..first_err]
                .iter()
                .all(|r| matches!(r, Ok(n) if *n == LEN)),
            "{b:?}: the writes before the failure are complete"
        );
        match &res[first_err] {
            Err(e) if matches!(errno(e), Some(libc::EPIPE) | Some(libc::ECONNRESET)) => {}
            other => panic!("{b:?}: the write in flight at the reset gave {other:?}"),
        }
        assert!(
            res[first_err + 1..]
                .iter()
                .all(|r| matches!(r, Err(Error::Canceled))),
            "{b:?}: the writes queued behind a failed one are cancelled unwritten: {:?}",
            &res[first_err + 1..]
        );
        drop(res);
        drop(x);
        assert_eq!(lp.active(), 0);
        assert_loop_healthy(&mut lp, &format!("{b:?} after a stalled peer closed"));
    });
}

#[test]
fn stalled_peer_then_close_fails_write_all() {
    let _serial = serial(&SERIAL);
    for b in Backend::available() {
        runtime(b).block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (x, _) = l.accept().await.unwrap();
            let x = Rc::new(x);
            let xw = x.clone();
            let writer = xev::spawn(async move { xw.write_all(vec![5u8; 32 << 20]).await.0 });
            // 32 MiB do not fit in the buffers of a peer that never reads.
            xev::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !writer.is_finished(),
                "{b:?}: write_all finished without a reader"
            );
            drop(peer);
            let r = xev::time::timeout(Duration::from_secs(10), writer)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: write_all hung after the peer closed"))
                .unwrap();
            let e = r.expect_err("write_all to a closed peer");
            assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "{b:?}: {e}"
            );
            drop(x);
            assert_runtime_healthy(&format!("{b:?} after a stalled peer closed")).await;
        });
    }
}

// ---------------------------------------------------------------------------------------
// Panics

#[test]
fn panicking_callback_propagates_from_run_and_the_loop_runs_again() {
    let _serial = serial(&SERIAL);
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        // Something else in flight while the callback panics.
        let (a, mut other) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let got = Rc::new(Cell::new(None));
        let mut r = completion();
        let g = got.clone();
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: a.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            move |_, _, res| {
                g.set(Some(matches!(res, OpResult::Recv(Ok(3)))));
                CallbackAction::Disarm
            },
        );
        let mut p = completion();
        lp.timer(p.as_mut(), 0, |_, _, _| panic!("boom in a callback"));
        let e = catch_unwind(AssertUnwindSafe(|| lp.run(RunMode::UntilDone)))
            .expect_err("the callback's panic comes out of run");
        assert_eq!(panic_message(&*e), "boom in a callback");
        assert_eq!(
            p.state(),
            CompletionState::Dead,
            "{b:?}: the panicked one is Dead"
        );
        assert_eq!(
            r.state(),
            CompletionState::Active,
            "{b:?}: the other is untouched"
        );
        other.write_all(b"abc").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            got.get(),
            Some(true),
            "{b:?}: the other operation completed"
        );
        assert_loop_healthy(&mut lp, &format!("{b:?} after a panicking callback"));
    });
}

#[test]
fn panicking_task_is_a_join_error_and_the_runtime_goes_on() {
    let _serial = serial(&SERIAL);
    for b in Backend::available() {
        let rt = runtime(b);
        rt.block_on(async move {
            let h = xev::spawn(async {
                xev::time::sleep(Duration::from_millis(1)).await;
                panic!("boom in a task");
            });
            let e = h.await.expect_err("a panicking task");
            assert!(e.is_panic(), "{b:?}: {e:?}");
            assert_eq!(panic_message(&*e.into_panic()), "boom in a task");
            assert_runtime_healthy(&format!("{b:?} after a panicking task")).await;
        });
        // A panic of the future given to block_on comes out of block_on, and the
        // runtime can be used again.
        let e = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async { panic!("boom in block_on") })
        }))
        .expect_err("block_on propagates");
        assert_eq!(panic_message(&*e), "boom in block_on");
        rt.block_on(assert_runtime_healthy(&format!(
            "{b:?} after a panic in block_on"
        )));
    }
}

#[test]
fn panicking_pool_job_is_a_join_error_and_the_pool_goes_on() {
    let _serial = serial(&SERIAL);
    for b in Backend::available() {
        let rt = xev::rt::Builder::new()
            .backend(b)
            .blocking_threads(1)
            .build()
            .unwrap();
        rt.block_on(async move {
            for i in 0..3 {
                let e = xev::spawn_blocking(move || -> u32 { panic!("boom in pool job {i}") })
                    .await
                    .expect_err("a panicking pool job");
                assert!(e.is_panic(), "{b:?}: {e:?}");
                assert_eq!(
                    panic_message(&*e.into_panic()),
                    format!("boom in pool job {i}")
                );
                // The single worker is still there (or replaced).
                let v = xev::spawn_blocking(move || i * 2).await.unwrap();
                assert_eq!(v, i * 2);
            }
            assert_runtime_healthy(&format!("{b:?} after panicking pool jobs")).await;
        });
    }
    // The callback API's pool too.
    let pool = ThreadPool::new(ThreadPoolOptions {
        max_threads: 1,
        ..ThreadPoolOptions::default()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    pool.execute(|| panic!("boom in a raw pool job"));
    pool.execute(move || tx.send(7).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
}

// ---------------------------------------------------------------------------------------
// Dropping a loop or a runtime with every kind of operation in flight

/// What the in-flight operations use; dropped after the loop.
struct Busy {
    listener: Tcp,
    idle: (Tcp, std::net::TcpStream),
    blocked: (Tcp, std::net::TcpStream),
    connecting: Tcp,
    full: Tcp,
    full_addr: SocketAddr,
    _queued: Vec<std::net::TcpStream>,
    file: std::fs::File,
    path: std::path::PathBuf,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A listener whose accept queue is full, so a connect to it stays in progress, and the
/// connections that fill it.
fn full_listener() -> (Tcp, SocketAddr, Vec<std::net::TcpStream>) {
    let l = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
    l.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => queued.push(s),
            Err(_) => break,
        }
    }
    (l, addr, queued)
}

impl Busy {
    fn new(tag: &str) -> Busy {
        let listener = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        listener.listen(16).unwrap();
        let (full, full_addr, queued) = full_listener();
        let path = std::env::temp_dir().join(format!("xev-faults-{}-{tag}", std::process::id()));
        std::fs::write(&path, vec![9u8; 4096]).unwrap();
        Busy {
            listener,
            idle: tcp_with_std_peer(),
            blocked: tcp_with_std_peer(),
            connecting: Tcp::new(full_addr).unwrap(),
            full,
            full_addr,
            _queued: queued,
            file: std::fs::File::open(&path).unwrap(),
            path,
        }
    }
}

#[test]
fn dropping_a_loop_with_everything_in_flight() {
    let _serial = serial(&SERIAL);
    runtime_tests::each_backend(|b| {
        let fds = open_fds();
        {
            let busy = Busy::new(b.name());
            // A one-thread pool kept busy, so the file read waits in its queue.
            let pool = ThreadPool::new(ThreadPoolOptions {
                max_threads: 1,
                ..ThreadPoolOptions::default()
            });
            pool.execute(|| std::thread::sleep(Duration::from_millis(600)));
            let mut cs: Vec<Pin<Box<Completion>>> = (0..9).map(|_| completion()).collect();
            let mut lp = Loop::new(Options {
                backend: Some(b),
                thread_pool: Some(pool),
                ..Options::default()
            })
            .unwrap();
            let calls = Rc::new(Cell::new(0));
            let count = |calls: &Rc<Cell<u32>>| {
                let calls = calls.clone();
                move |_: &mut Loop, _: Pin<&mut Completion>, _: OpResult| {
                    calls.set(calls.get() + 1);
                    CallbackAction::Disarm
                }
            };
            let blocked = busy.blocked.0.as_raw_fd();
            let ops = vec![
                Op::Accept {
                    fd: busy.listener.as_raw_fd(),
                },
                Op::Recv {
                    fd: busy.idle.0.as_raw_fd(),
                    buf: Buffer::from(vec![0u8; 64]),
                },
                Op::Poll {
                    fd: busy.idle.0.as_raw_fd(),
                    events: PollEvents::IN,
                },
                Op::Connect {
                    fd: busy.connecting.as_raw_fd(),
                    addr: busy.full_addr,
                },
                Op::Timer { ms: 60_000 },
                Op::Pread {
                    fd: busy.file.as_raw_fd(),
                    buf: Buffer::from(vec![0u8; 4096]),
                    offset: 1 << 20, // past the end: never served from the page cache
                },
            ];
            for (c, op) in cs.iter_mut().zip(ops) {
                lp.start(c.as_mut(), op, count(&calls));
            }
            // A send that blocks: fill the socket until a send is left waiting.
            let mut i = 6;
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                lp.start(
                    cs[i].as_mut(),
                    Op::Send {
                        fd: blocked,
                        buf: Buffer::from(vec![1u8; 1 << 20]),
                    },
                    count(&calls),
                );
                lp.run(RunMode::NoWait).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                lp.run(RunMode::NoWait).unwrap();
                if cs[i].state() == CompletionState::Active {
                    break;
                }
                assert!(Instant::now() < deadline, "{b:?}: the send never blocked");
                i = if i == 6 { 7 } else { 6 };
            }
            let before = calls.get();
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(
                calls.get(),
                before,
                "{b:?}: something that should wait finished"
            );
            // Accept, recv, poll, connect, timer and send wait; the pread past the end of
            // the file is done at once by io_uring and waits in the pool's queue on epoll.
            assert!(lp.active() >= 6, "{b:?}: {} active", lp.active());
            let t = Instant::now();
            drop(lp);
            let took = t.elapsed();
            assert!(
                took < Duration::from_secs(5),
                "{b:?}: dropping the loop took {took:?}"
            );
            assert!(cs.iter().all(|c| c.state() == CompletionState::Dead));
            drop(cs);
            let _ = &busy.full;
            drop(busy);
        }
        assert_eq!(open_fds(), fds, "{b:?}: fds leaked: {:?}", fd_list());
    });
}

#[test]
fn dropping_a_runtime_with_everything_in_flight() {
    let _serial = serial(&SERIAL);
    for b in Backend::available() {
        let fds = open_fds();
        let before = fd_list();
        let (full, full_addr, queued) = full_listener();
        let path =
            std::env::temp_dir().join(format!("xev-faults-rt-{}-{}", std::process::id(), b.name()));
        std::fs::write(&path, vec![9u8; 4096]).unwrap();
        let rt = xev::rt::Builder::new()
            .backend(b)
            .blocking_threads(1)
            .build()
            .unwrap();
        let started = Rc::new(Cell::new(0u32));
        let (peer_tx, peer_rx) = std::sync::mpsc::channel();
        let path2 = path.clone();
        let st = started.clone();
        rt.block_on(async move {
            let l = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
            let addr = l.local_addr().unwrap();
            let mark = move |st: &Rc<Cell<u32>>| st.set(st.get() + 1);
            // Blocking pool job first: the file read on the epoll pool waits behind it.
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                let _ =
                    xev::spawn_blocking(|| std::thread::sleep(Duration::from_millis(300))).await;
            });
            // An idle connection and a blocked writer (accepted before the pending
            // accept starts, which would otherwise take one of them).
            let idle_peer = std::net::TcpStream::connect(addr).unwrap();
            let (idle, _) = l.accept().await.unwrap();
            let blocked_peer = std::net::TcpStream::connect(addr).unwrap();
            let (blocked, _) = l.accept().await.unwrap();
            peer_tx.send((idle_peer, blocked_peer)).unwrap();
            let (s, l2) = (st.clone(), l.clone());
            xev::spawn(async move {
                mark(&s);
                let _ = l2.accept().await;
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                let _ = idle.read(vec![0u8; 64]).await;
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                let _ = blocked.write_all(vec![1u8; 32 << 20]).await;
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                let _ = TcpStream::connect(full_addr).await;
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                xev::time::sleep(Duration::from_secs(60)).await;
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                let mut child =
                    xev::process::spawn(std::process::Command::new("sleep").arg("1")).unwrap();
                let r = child.wait().await;
                drop(r);
            });
            let s = st.clone();
            xev::spawn(async move {
                mark(&s);
                if let Ok(f) = xev::fs::File::open(&path2).await {
                    let _ = f.read_at(vec![0u8; 4096], 1 << 20).await;
                }
            });
            xev::time::sleep(Duration::from_millis(50)).await;
        });
        assert_eq!(started.get(), 8, "{b:?}: every task started");
        let t = Instant::now();
        drop(rt);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{b:?}: dropping the runtime took {took:?}"
        );
        drop(peer_rx);
        drop((full, queued));
        let _ = std::fs::remove_file(&path);
        // The `sleep 1` child was not reaped (a dropped Child is not killed): its pidfd
        // went to the orphan list, which keeps it until the child has exited and a later
        // spawn reaps it (each turn below spawns and reaps a `true`). The pool job still
        // sleeping holds the waker of its task (and so the loop's wake-up fd) until it
        // ends.
        let t = Instant::now();
        while open_fds() != fds && t.elapsed() < Duration::from_secs(3) {
            let mut c = xev::process::spawn(&mut std::process::Command::new("true")).unwrap();
            while c.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = fd_list();
        let new: Vec<_> = after.iter().filter(|f| !before.contains(f)).collect();
        assert_eq!(open_fds(), fds, "{b:?}: fds leaked: {new:?}");
    }
}

#[test]
fn shutdown_on_a_reset_connection_is_an_error() {
    let _serial = serial(&SERIAL);
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (x, peer) = tcp_with_std_peer();
        linger_zero(&peer);
        drop(peer);
        std::thread::sleep(Duration::from_millis(20));
        let got = Rc::new(RefCell::new(None));
        let mut c = completion();
        x.shutdown(
            &mut lp,
            c.as_mut(),
            Shutdown::Write,
            got.clone(),
            |g, _, _, r| {
                *g.borrow_mut() = Some(r);
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        // The kernel may accept the shutdown of a reset socket or refuse it (ENOTCONN);
        // either way it is a result.
        match got.borrow_mut().take().expect("shutdown called back") {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::ENOTCONN) => {}
            Err(e) => panic!("{b:?}: shutdown after a reset: {e:?}"),
        }
        assert_loop_healthy(&mut lp, &format!("{b:?} after shutdown of a reset socket"));
    });
}
