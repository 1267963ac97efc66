//! The bad-input table: each bad input through the callback API and (where the async API
//! can express it) the runtime, on every backend. Each gives a clear error (never a
//! panic of xev's own, never a hang), and afterwards the same loop or runtime still runs
//! a timer and a socket round trip. The table is in the docs of [`xev::Error`].
//!
//! Inputs the safe async API cannot express are noted where they would be: its sockets
//! and files own open descriptors, so a closed, negative or huge fd number cannot reach
//! it without `unsafe` code that breaks I/O safety.

mod common;

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::process::Command;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use runtime_tests::{dup_high, each_backend, new_loop, os_error};
use xev::net::{TcpListener, TcpStream, UdpSocket};
use xev::watcher::process::Process;
use xev::watcher::tcp::Tcp;
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// Run `op` on `lp` and return its single result, within 2 s (a hang fails).
fn one(lp: &mut Loop, op: Op) -> OpResult {
    let what = format!("{op:?}");
    let mut c = completion();
    let got: Rc<RefCell<Vec<OpResult>>> = Rc::default();
    let g = got.clone();
    lp.start(c.as_mut(), op, move |_, _, r| {
        g.borrow_mut().push(r);
        CallbackAction::Disarm
    });
    let t = Instant::now();
    while got.borrow().is_empty() && t.elapsed() < Duration::from_secs(2) {
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut v = got.borrow_mut();
    if v.is_empty() {
        drop(v);
        lp.shutdown();
        panic!("{what}: no result within 2 s");
    }
    assert_eq!(v.len(), 1, "{what}: one callback");
    v.pop().unwrap()
}

/// The fd-taking operations of the table, on `fd`.
fn fd_ops(fd: RawFd) -> Vec<Op> {
    vec![
        Op::Recv {
            fd,
            buf: Buffer::inline(8),
        },
        Op::Send {
            fd,
            buf: Buffer::copy_from(b"x"),
        },
        Op::Read {
            fd,
            buf: Buffer::inline(8),
        },
        Op::Write {
            fd,
            buf: Buffer::copy_from(b"x"),
        },
        Op::Pread {
            fd,
            buf: Buffer::inline(8),
            offset: 0,
        },
        Op::Accept { fd },
        Op::Connect {
            fd,
            addr: "127.0.0.1:9".parse().unwrap(),
        },
        Op::Poll {
            fd,
            events: PollEvents::IN,
        },
        Op::Shutdown {
            fd,
            how: std::net::Shutdown::Both,
        },
        // Vectored, Unix-socket and file operations (issue 10) follow the same rule.
        Op::Readv {
            fd,
            bufs: Buffers::new(vec![Buffer::inline(4), Buffer::inline(4)]),
            offset: None,
        },
        Op::Writev {
            fd,
            bufs: Buffers::new(vec![Buffer::copy_from(b"x")]),
            offset: None,
        },
        Op::SendMsgV {
            fd,
            bufs: Buffers::new(vec![Buffer::copy_from(b"x")]),
            addr: None,
        },
        Op::accept_unix(fd),
        Op::ConnectUnix {
            fd,
            addr: Box::new(UnixAddr::from_pathname("/tmp/xev-bad-input-nobody.sock").unwrap()),
        },
        Op::SendMsgUnix {
            fd,
            buf: Buffer::copy_from(b"x"),
            addr: Box::new(UnixAddr::from_pathname("/tmp/xev-bad-input-nobody.sock").unwrap()),
        },
        Op::recv_msg_unix(fd, Buffer::inline(8)),
        Op::Fsync {
            fd,
            data_only: false,
        },
        Op::Fallocate {
            fd,
            mode: 0,
            offset: 0,
            len: 1,
        },
        Op::Ftruncate { fd, len: 0 },
        // The fd as the directory of a relative path, and as the file itself.
        Op::OpenAt {
            dir: Some(fd),
            path: OpPath::new("x"),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        Op::Statx {
            dir: Some(fd),
            path: OpPath::empty(),
            flags: libc::AT_EMPTY_PATH,
            mask: libc::STATX_BASIC_STATS,
            buf: StatxBuf::new(),
        },
    ]
}

fn runtime(b: Backend) -> xev::rt::Runtime {
    xev::rt::Builder::new().backend(b).build().unwrap()
}

fn healthy_rt(b: Backend, rt: &xev::rt::Runtime, what: &str) {
    rt.block_on(assert_runtime_healthy(&format!("{b:?} after {what}")));
}

// ---------------------------------------------------------------------------------------
// Descriptors

#[test]
fn closed_fd_is_ebadf() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        // A number well above what other tests use, closed: nothing reuses it here.
        let fd = {
            let f = std::fs::File::open("/dev/null").unwrap();
            dup_high(f.as_raw_fd(), 900 + b as RawFd).as_raw_fd()
        };
        for op in fd_ops(fd) {
            let what = format!("{op:?}");
            let r = one(&mut lp, op);
            assert_eq!(
                os_error(&r),
                Some(libc::EBADF),
                "{b:?}: {what} on a closed fd: {r:?}"
            );
        }
        assert_loop_healthy(&mut lp, &format!("{b:?} after ops on a closed fd"));
    });
}

#[test]
fn negative_fd_is_ebadf() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        for op in fd_ops(-1) {
            let what = format!("{op:?}");
            let r = one(&mut lp, op);
            assert_eq!(os_error(&r), Some(libc::EBADF), "{b:?}: {what}: {r:?}");
        }
        assert_loop_healthy(&mut lp, &format!("{b:?} after ops on fd -1"));
    });
}

/// `XEV_BAD_INPUT_CHILD=huge_fd:<backend>`: run the huge-fd case here and report.
fn huge_fd_child() -> bool {
    let Ok(v) = std::env::var("XEV_BAD_INPUT_CHILD") else {
        return false;
    };
    let Some(name) = v.strip_prefix("huge_fd:") else {
        return false;
    };
    let b = Backend::candidates()
        .iter()
        .copied()
        .find(|b| b.name() == name)
        .expect("a backend name");
    // A runaway allocation must fail here, not push the machine into the OOM killer.
    let cap = libc::rlimit {
        rlim_cur: 8 << 30,
        rlim_max: 8 << 30,
    };
    // SAFETY: setrlimit reads the struct we own.
    unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) };
    let mut lp = new_loop(b);
    for op in fd_ops(i32::MAX - 1) {
        let what = format!("{op:?}");
        let r = one(&mut lp, op);
        println!("RESULT {what}: errno {:?}", os_error(&r));
    }
    assert_loop_healthy(&mut lp, "after ops on a huge fd");
    println!("HEALTHY");
    true
}

#[test]
fn huge_fd_is_ebadf_in_a_child_process() {
    if huge_fd_child() {
        return;
    }
    let mut failed = Vec::new();
    for b in Backend::available() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "huge_fd_is_ebadf_in_a_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("XEV_BAD_INPUT_CHILD", format!("huge_fd:{}", b.name()))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        // (libtest prints the test's name without a newline before our first line.)
        let results: Vec<&str> = stdout
            .lines()
            .filter_map(|l| l.find("RESULT ").map(|i| &l[i..]))
            .collect();
        let all_ebadf = results.len() == fd_ops(0).len()
            && results
                .iter()
                .all(|l| l.ends_with(&format!("errno Some({})", libc::EBADF)));
        if !out.status.success() || !all_ebadf || !stdout.contains("HEALTHY") {
            failed.push(format!(
                "{b:?}: child {:?}; results {results:?}; stderr: {}",
                out.status,
                stderr.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "fd i32::MAX - 1 must be EBADF for every op:\n{}",
        failed.join("\n")
    );
}

#[test]
fn wrong_kind_of_fd() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let file = std::fs::File::open("Cargo.toml").unwrap();
        let r = one(
            &mut lp,
            Op::Accept {
                fd: file.as_raw_fd(),
            },
        );
        assert_eq!(
            os_error(&r),
            Some(libc::ENOTSOCK),
            "{b:?}: accept on a file: {r:?}"
        );
        let l = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
        l.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        l.listen(1).unwrap();
        let r = one(
            &mut lp,
            Op::Recv {
                fd: l.as_raw_fd(),
                buf: Buffer::inline(8),
            },
        );
        assert_eq!(
            os_error(&r),
            Some(libc::ENOTCONN),
            "{b:?}: recv on a listener: {r:?}"
        );
        let r = one(
            &mut lp,
            Op::Read {
                fd: l.as_raw_fd(),
                buf: Buffer::inline(8),
            },
        );
        assert_eq!(
            os_error(&r),
            Some(libc::ENOTCONN),
            "{b:?}: read on a listener: {r:?}"
        );
        assert_loop_healthy(&mut lp, &format!("{b:?} after fds of the wrong kind"));

        let rt = runtime(b);
        rt.block_on(async {
            let file = std::fs::File::open("Cargo.toml").unwrap();
            let l = TcpListener::from(OwnedFd::from(file));
            let e = l.accept().await.expect_err("accept on a regular file");
            assert_eq!(e.raw_os_error(), Some(libc::ENOTSOCK), "{b:?}: {e}");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let s = TcpStream::from(OwnedFd::from(listener));
            let e = s
                .read(vec![0u8; 8])
                .await
                .0
                .expect_err("read on a listener");
            assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{b:?}: {e}");
        });
        healthy_rt(b, &rt, "fds of the wrong kind");
    });
}

// ---------------------------------------------------------------------------------------
// Buffers, addresses

/// A file offset past `i64::MAX` is `EINVAL` for every positioned read and write, on
/// every backend, and nothing is read or written. io_uring took `u64::MAX` for "the
/// fd's current position" (-1): `Pwrite` at `u64::MAX` wrote at the start of the file.
#[test]
fn file_offsets_past_i64_max_are_einval() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let path =
            std::env::temp_dir().join(format!("xev-bad-input-offset-{}-{b:?}", std::process::id()));
        std::fs::write(&path, b"original").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let fd = f.as_raw_fd();
        for offset in [u64::MAX, i64::MAX as u64 + 1] {
            let ops = [
                Op::Pread {
                    fd,
                    buf: Buffer::from(vec![0u8; 4]),
                    offset,
                },
                Op::Pwrite {
                    fd,
                    buf: Buffer::copy_from(b"XXXX"),
                    offset,
                },
                Op::Readv {
                    fd,
                    bufs: Buffers::from(vec![Buffer::from(vec![0u8; 4])]),
                    offset: Some(offset),
                },
                Op::Writev {
                    fd,
                    bufs: Buffers::from(vec![Buffer::copy_from(b"YYYY")]),
                    offset: Some(offset),
                },
            ];
            for op in ops {
                let what = format!("{b:?}: {op:?}");
                let r = one(&mut lp, op);
                let e = match r {
                    OpResult::Pread(Err(e)) | OpResult::Readv(Err(e)) => io::Error::from(e),
                    OpResult::Pwrite(Err(e)) | OpResult::Writev(Err(e)) => io::Error::from(e),
                    other => panic!("{what}: {other:?}"),
                };
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{what}: {e}");
            }
        }
        // The async API: `InvalidInput`, and the buffer back.
        let rt = runtime(b);
        rt.block_on(async {
            let f = xev::fs::File::options()
                .read(true)
                .write(true)
                .open(&path)
                .await
                .unwrap();
            let (r, buf) = f.read_at(vec![0u8; 4], u64::MAX).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput, "{b:?}");
            assert_eq!(buf.len(), 4);
            let (r, _) = f.write_all_at(b"ZZZZ".to_vec(), i64::MAX as u64 + 1).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput, "{b:?}");
        });
        healthy_rt(b, &rt, "huge offsets");
        let content = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(content, b"original", "{b:?}: the file was written");
        assert_loop_healthy(&mut lp, &format!("{b:?} after huge offsets"));
    });
}

#[test]
fn zero_length_buffers() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let (mut c, s) = std_tcp_pair();
        s.set_nonblocking(true).unwrap();
        c.write_all(b"data").unwrap();
        // With data waiting, reads into no room return Ok(0) and consume nothing.
        for op in [
            Op::Recv {
                fd: s.as_raw_fd(),
                buf: Buffer::inline(0),
            },
            Op::Read {
                fd: s.as_raw_fd(),
                buf: Buffer::inline(0),
            },
        ] {
            let r = one(&mut lp, op);
            assert!(
                matches!(r, OpResult::Recv(Ok(0)) | OpResult::Read(Ok(0))),
                "{b:?}: empty read with data waiting: {r:?}"
            );
        }
        for op in [
            Op::Send {
                fd: s.as_raw_fd(),
                buf: Buffer::inline(0),
            },
            Op::Write {
                fd: s.as_raw_fd(),
                buf: Buffer::inline(0),
            },
        ] {
            let r = one(&mut lp, op);
            assert!(
                matches!(r, OpResult::Send(Ok(0)) | OpResult::Write(Ok(0))),
                "{b:?}: empty write: {r:?}"
            );
        }
        let r = one(
            &mut lp,
            Op::Recv {
                fd: s.as_raw_fd(),
                buf: Buffer::inline(8),
            },
        );
        assert!(
            matches!(r, OpResult::Recv(Ok(4))),
            "{b:?}: the bytes are still there: {r:?}"
        );
        assert_loop_healthy(&mut lp, &format!("{b:?} after empty buffers"));

        let rt = runtime(b);
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let e = s.read(Vec::new()).await.0.expect_err("read into no room");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{b:?}: {e}");
            assert_eq!(a.write(Vec::new()).await.0.unwrap(), 0);
            a.write_all(Vec::new()).await.0.unwrap();
            let (r, _) = s.read_exact(Vec::new()).await;
            r.unwrap();
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            let v = UdpSocket::bind("127.0.0.1:0").unwrap();
            assert_eq!(
                u.send_to(Vec::new(), v.local_addr().unwrap())
                    .await
                    .0
                    .unwrap(),
                0
            );
            let (r, _) = v.recv_from(vec![0u8; 8]).await;
            assert_eq!(r.unwrap().0, 0, "{b:?}: an empty datagram arrives empty");
        });
        healthy_rt(b, &rt, "empty buffers");
        // Last: with nothing waiting, a read into no room must still end at once (Ok(0), as
        // the docs say, or an error): it can never fill its buffer.
        let r = catch_unwind(AssertUnwindSafe(|| {
            one(
                &mut lp,
                Op::Recv {
                    fd: s.as_raw_fd(),
                    buf: Buffer::inline(0),
                },
            )
        }));
        match r {
            Ok(OpResult::Recv(Ok(0))) => {}
            Ok(other) => panic!("{b:?}: empty recv on an idle socket: {other:?}"),
            Err(p) => panic!(
                "{b:?}: an empty recv on an idle socket waits for data: {}",
                panic_message(&*p)
            ),
        }
        assert_loop_healthy(
            &mut lp,
            &format!("{b:?} after an empty recv on an idle socket"),
        );
    });
}

/// A port on which nothing listens.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let addr = closed_port();
        let s = Tcp::new(addr).unwrap();
        let r = one(
            &mut lp,
            Op::Connect {
                fd: s.as_raw_fd(),
                addr,
            },
        );
        assert_eq!(os_error(&r), Some(libc::ECONNREFUSED), "{b:?}: {r:?}");
        assert_loop_healthy(&mut lp, &format!("{b:?} after a refused connect"));

        let rt = runtime(b);
        rt.block_on(async {
            let e = TcpStream::connect(addr).await.expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{b:?}: {e}");
        });
        healthy_rt(b, &rt, "a refused connect");
    });
}

#[test]
fn bind_to_an_address_in_use() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let s = Tcp::new(addr).unwrap();
        let e = s.bind(addr).expect_err("the port is taken");
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{b:?}: {e}");
        assert_loop_healthy(&mut lp, &format!("{b:?} after bind in use"));

        let rt = runtime(b);
        rt.block_on(async {
            let e = TcpListener::bind(addr).expect_err("the port is taken");
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{b:?}: {e}");
            let u = UdpSocket::bind("127.0.0.1:0").unwrap();
            let e = UdpSocket::bind(u.local_addr().unwrap()).expect_err("udp port taken");
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{b:?}: {e}");
        });
        healthy_rt(b, &rt, "bind in use");
    });
}

// ---------------------------------------------------------------------------------------
// Timers

#[test]
fn timers_of_zero_and_u64_max_ms() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let r = one(&mut lp, Op::Timer { ms: 0 });
        assert!(
            matches!(r, OpResult::Timer(TimerTrigger::Expiration)),
            "{b:?}: {r:?}"
        );
        // u64::MAX never fires; it can be cancelled, and reset to it.
        let got: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let (mut t, mut k, mut t2) = (completion(), completion(), completion());
        let g = got.clone();
        lp.timer(t.as_mut(), u64::MAX, move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        let g = got.clone();
        lp.timer(t2.as_mut(), 1, move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        let g = got.clone();
        lp.timer_reset(t2.as_mut(), u64::MAX, move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        lp.run(RunMode::NoWait).unwrap();
        assert!(got.borrow().is_empty(), "{b:?}: a u64::MAX timer fired");
        let g = got.clone();
        lp.cancel(k.as_mut(), &t, move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        let g = got.clone();
        let mut k2 = completion();
        lp.cancel(k2.as_mut(), &t2, move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let v = got.borrow();
        let canceled = v
            .iter()
            .filter(|r| matches!(r, OpResult::Timer(TimerTrigger::Canceled)))
            .count();
        let ok = v
            .iter()
            .filter(|r| matches!(r, OpResult::Cancel(Ok(()))))
            .count();
        assert_eq!((canceled, ok, v.len()), (2, 2, 4), "{b:?}: {v:?}");
        drop(v);
        assert_loop_healthy(&mut lp, &format!("{b:?} after extreme timers"));

        let rt = runtime(b);
        rt.block_on(async {
            let t = Instant::now();
            xev::time::sleep(Duration::ZERO).await;
            xev::time::sleep_until(Instant::now()).await;
            assert!(t.elapsed() < Duration::from_secs(1));
            // Duration::MAX: pending (the deadline saturates), never a panic.
            assert!(!poll_once_and_drop(xev::time::sleep(Duration::MAX)));
            let r = xev::time::timeout(Duration::MAX, async { 7 }).await;
            assert_eq!(r, Ok(7));
            let r = xev::time::timeout(Duration::ZERO, xev::time::sleep(Duration::MAX)).await;
            assert!(r.is_err(), "{b:?}: timeout(0) of a pending future elapses");
        });
        healthy_rt(b, &rt, "extreme sleeps");
    });
}

/// An interval with a period of `Duration::MAX` ticks once and then waits (forever),
/// rather than panicking on the deadline arithmetic.
#[test]
fn interval_of_duration_max_does_not_panic() {
    for b in Backend::available() {
        let rt = runtime(b);
        let r = catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async {
                let mut iv = xev::time::interval(Duration::MAX);
                iv.tick().await;
                let second = xev::time::timeout(Duration::from_millis(20), iv.tick()).await;
                assert!(second.is_err(), "the second tick is a lifetime away");
            })
        }));
        if let Err(p) = r {
            panic!("{b:?}: interval(Duration::MAX): {}", panic_message(&*p));
        }
        healthy_rt(b, &rt, "interval(Duration::MAX)");
    }
}

// ---------------------------------------------------------------------------------------
// Cancellation

/// A completion with a recv waiting on a socket that never gets data (returned with the
/// socket pair that keeps it open).
/// Results recorded by a callback.
type Log = Rc<RefCell<Vec<OpResult>>>;

fn pending_recv(lp: &mut Loop) -> (Pin<Box<Completion>>, Log, (OwnedFd, OwnedFd)) {
    let (a, c) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let mut t = completion();
    let got: Rc<RefCell<Vec<OpResult>>> = Rc::default();
    let g = got.clone();
    lp.start(
        t.as_mut(),
        Op::Recv {
            fd: a.as_raw_fd(),
            buf: Buffer::inline(8),
        },
        move |_, _, r| {
            g.borrow_mut().push(r);
            CallbackAction::Disarm
        },
    );
    lp.run(RunMode::NoWait).unwrap();
    (t, got, (a.into(), c.into()))
}

fn push_to(
    v: &Rc<RefCell<Vec<OpResult>>>,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
    let v = v.clone();
    move |_, _, r| {
        v.borrow_mut().push(r);
        CallbackAction::Disarm
    }
}

#[test]
fn cancel_of_a_dead_completion_is_not_found() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let never_used = completion();
        let r = {
            let mut k = completion();
            let got: Rc<RefCell<Vec<OpResult>>> = Rc::default();
            lp.cancel(k.as_mut(), &never_used, push_to(&got));
            lp.run(RunMode::UntilDone).unwrap();
            let r = got.borrow_mut().pop();
            r.unwrap()
        };
        assert!(
            matches!(r, OpResult::Cancel(Err(CancelError::NotFound))),
            "{b:?}: {r:?}"
        );
        // A finished one, and a stored target taken while it was in flight.
        let mut t = completion();
        lp.timer(t.as_mut(), 0, |_, _, _| CallbackAction::Disarm);
        let stale = CancelTarget::of(&t);
        lp.run(RunMode::UntilDone).unwrap();
        for target in [CancelTarget::of(&t), stale, CancelTarget::none()] {
            let r = one(&mut lp, Op::Cancel { target });
            assert!(
                matches!(r, OpResult::Cancel(Err(CancelError::NotFound))),
                "{b:?}: {r:?}"
            );
        }
        assert_loop_healthy(&mut lp, &format!("{b:?} after cancelling dead completions"));
    });
}

#[test]
fn double_cancel_cancels_once() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let (t, target_got, _fds) = pending_recv(&mut lp);
        let got1: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let got2: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let (mut k1, mut k2) = (completion(), completion());
        lp.cancel(k1.as_mut(), &t, push_to(&got1));
        lp.cancel(k2.as_mut(), &t, push_to(&got2));
        lp.run(RunMode::UntilDone).unwrap();
        // Each cancel's own result (their callbacks may run in either order: io_uring
        // answers the second at once, the first when the kernel has cancelled).
        let v: Vec<OpResult> = got1
            .borrow_mut()
            .drain(..)
            .chain(got2.borrow_mut().drain(..))
            .collect();
        let tg = target_got.borrow();
        assert!(
            matches!(tg[..], [OpResult::Recv(Err(ReadError::Canceled))]),
            "{b:?}: the target calls back once, Canceled: {tg:?}"
        );
        assert!(
            matches!(
                v[..],
                [
                    OpResult::Cancel(Ok(())),
                    OpResult::Cancel(Err(CancelError::NotFound))
                ]
            ),
            "{b:?}: the first cancel cancels, the second finds nothing: {v:?}"
        );
        drop(tg);
        assert_loop_healthy(&mut lp, &format!("{b:?} after a double cancel"));
    });
}

#[test]
fn cancel_of_a_cancel_is_not_found() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let (t, target_got, _fds) = pending_recv(&mut lp);
        let got1: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let got2: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let (mut k1, mut k2) = (completion(), completion());
        lp.cancel(k1.as_mut(), &t, push_to(&got1));
        lp.cancel(k2.as_mut(), &k1, push_to(&got2));
        lp.run(RunMode::UntilDone).unwrap();
        let (v1, v2) = (got1.borrow(), got2.borrow());
        assert!(
            matches!(v1[..], [OpResult::Cancel(Ok(()))]),
            "{b:?}: the cancel: {v1:?}"
        );
        assert!(
            matches!(v2[..], [OpResult::Cancel(Err(CancelError::NotFound))]),
            "{b:?}: the cancel of the cancel: {v2:?}"
        );
        assert!(
            matches!(
                target_got.borrow()[..],
                [OpResult::Recv(Err(ReadError::Canceled))]
            ),
            "{b:?}: the target"
        );
        drop((v1, v2));
        assert_loop_healthy(&mut lp, &format!("{b:?} after a cancel of a cancel"));
    });
}

#[test]
fn completion_of_another_loop() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut other = new_loop(b);
        let mut t = completion();
        other.timer(t.as_mut(), 60_000, |_, _, _| CallbackAction::Disarm);
        // add: a clear panic, nothing touched.
        let e = catch_unwind(AssertUnwindSafe(|| lp.add(t.as_mut()))).expect_err("add");
        let m = panic_message(&*e);
        assert!(
            m.contains("Active") && m.contains("another loop"),
            "{b:?}: {m}"
        );
        let e = catch_unwind(AssertUnwindSafe(|| {
            lp.timer_reset(t.as_mut(), 1, |_, _, _| CallbackAction::Disarm)
        }))
        .expect_err("timer_reset");
        let m = panic_message(&*e);
        assert!(m.contains("another Loop"), "{b:?}: {m}");
        // cancel: OtherLoop, and the timer stays with its loop.
        let r = one(
            &mut lp,
            Op::Cancel {
                target: CancelTarget::of(&t),
            },
        );
        assert!(
            matches!(r, OpResult::Cancel(Err(CancelError::OtherLoop))),
            "{b:?}: {r:?}"
        );
        assert_eq!(lp.active(), 0);
        assert_eq!(other.active(), 1);
        assert_eq!(t.state(), CompletionState::Active);
        assert_loop_healthy(&mut lp, &format!("{b:?} after another loop's completion"));
        drop(other);
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

// ---------------------------------------------------------------------------------------
// Wake-ups and processes

#[test]
fn notify_after_the_async_is_dropped() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let remote = a.clone();
        let woke = Rc::new(Cell::new(0));
        let mut w = completion();
        a.wait(&mut lp, w.as_mut(), woke.clone(), |n, _, _, r| {
            r.expect("wait");
            n.set(n.get() + 1);
            CallbackAction::Disarm
        });
        drop(a); // the handle that started the wait
        std::thread::spawn(move || remote.notify().unwrap())
            .join()
            .unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(woke.get(), 1, "{b:?}");
        // Notify with no wait queued and no loop left: Ok, nothing happens.
        let late = Async::new().unwrap();
        let late2 = late.clone();
        drop(late);
        late2.notify().unwrap();
        late2.notify().unwrap();
        assert_loop_healthy(&mut lp, &format!("{b:?} after notify of a dropped Async"));

        let rt = runtime(b);
        let n = xev::notify::Notify::new();
        let n2 = n.clone();
        rt.block_on(async move {
            drop(n);
            n2.notify(); // nobody waits: stored as a permit
            xev::time::timeout(Duration::from_secs(2), n2.notified())
                .await
                .expect("the stored permit completes the next wait");
        });
        // Notify from another thread after the runtime is gone.
        let n3 = xev::notify::Notify::new();
        let n4 = n3.clone();
        drop(rt);
        std::thread::spawn(move || n4.notify()).join().unwrap();
        drop(n3);
        let rt = runtime(b);
        healthy_rt(b, &rt, "notify of a dropped Notify");
    });
}

#[test]
fn wait_on_a_process_that_is_not_our_child() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        // SAFETY: getppid has no preconditions.
        let parent = unsafe { libc::getppid() } as u32;
        // A live process that is not our child is refused when the watcher is made:
        // `ECHILD`, never a pidfd that a later wait could not reap.
        match Process::new(parent) {
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {}
            other => panic!("{b:?}: Process::new of our parent: {other:?}"),
        }
        // A parent that has exited can be reproduced with a child of a child: waiting
        // on a process that is not ours and has exited is ECHILD.
        let grandchild = Command::new("sh")
            .args(["-c", "sleep 0.05 & echo $!"])
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8_lossy(&grandchild.stdout)
            .trim()
            .parse()
            .unwrap();
        if let Ok(p) = Process::new(pid) {
            let r = Rc::new(RefCell::new(None));
            let mut c = completion();
            p.wait(&mut lp, c.as_mut(), r.clone(), |g, _, _, res| {
                *g.borrow_mut() = Some(res);
                CallbackAction::Disarm
            });
            let t = Instant::now();
            while r.borrow().is_none() && t.elapsed() < Duration::from_secs(5) {
                lp.run(RunMode::NoWait).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let res = r.borrow_mut().take();
            match res {
                Some(Err(Error::Io(e))) if e.raw_os_error() == Some(libc::ECHILD) => {}
                other => panic!("{b:?}: wait on someone else's exited process: {other:?}"),
            }
        }
        // No such process, and a pid out of range.
        let e = Process::new(u32::MAX).expect_err("pid out of range");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{b:?}: {e}");
        let e = Process::new(i32::MAX as u32).expect_err("no such pid");
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{b:?}: {e}");
        assert_loop_healthy(&mut lp, &format!("{b:?} after waiting on a stranger"));

        // Async: a child reaped behind the runtime's back.
        let rt = runtime(b);
        rt.block_on(async {
            let mut child = xev::process::spawn(&mut Command::new("true")).unwrap();
            let pid = child.id() as libc::pid_t;
            let mut status = 0;
            // SAFETY: waitpid on our own child, writing into a local.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            assert_eq!(r, pid);
            let e = child.wait().await.expect_err("reaped elsewhere");
            assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "{b:?}: {e}");
        });
        healthy_rt(b, &rt, "waiting on a child reaped elsewhere");
    });
}

// ---------------------------------------------------------------------------------------
// Paths, buffer lists and Unix addresses (issue 10's operations)

#[test]
fn bad_paths_buffer_lists_and_unix_addresses() {
    let long_path = format!("/tmp/{}", "x".repeat(200));
    each_backend(|b| {
        let mut lp = new_loop(b);
        // A path with an interior NUL never reaches the kernel.
        let r = one(
            &mut lp,
            Op::OpenAt {
                dir: None,
                path: OpPath::new("/tmp/a\0b"),
                flags: libc::O_RDONLY,
                mode: 0,
            },
        );
        assert_eq!(os_error(&r), Some(libc::EINVAL), "{b:?}: NUL path: {r:?}");
        // More buffers than IOV_MAX.
        let r = one(
            &mut lp,
            Op::Readv {
                fd: 0,
                bufs: Buffers::new((0..1025).map(|_| Buffer::inline(1)).collect()),
                offset: None,
            },
        );
        assert_eq!(
            os_error(&r),
            Some(libc::EINVAL),
            "{b:?}: 1025 iovecs: {r:?}"
        );
        // A Unix path nobody has bound.
        // SAFETY: socket(2) returns a new fd (checked below) that only `sock` owns.
        let sock = unsafe {
            let fd = libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            );
            assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        };
        let r = one(
            &mut lp,
            Op::ConnectUnix {
                fd: sock.as_raw_fd(),
                addr: Box::new(UnixAddr::from_pathname("/tmp/xev-nobody-binds-this").unwrap()),
            },
        );
        assert_eq!(
            os_error(&r),
            Some(libc::ENOENT),
            "{b:?}: missing path: {r:?}"
        );
        drop(sock);
        // A Unix path longer than sockaddr_un holds.
        assert_eq!(
            UnixAddr::from_pathname(&long_path).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_loop_healthy(&mut lp, &format!("{b:?} after bad paths"));

        let rt = runtime(b);
        let long = long_path.clone();
        rt.block_on(async move {
            let e = xev::fs::File::open("/tmp/a\0b").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{b:?}: {e}");
            let e = xev::fs::metadata("/tmp/a\0b").await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{b:?}: {e}");
            let e = xev::net::UnixStream::connect(&long).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{b:?}: {e}");
            let e = xev::net::UnixStream::connect("/tmp/xev-nobody-binds-this")
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{b:?}: {e}");
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let bufs: Vec<Vec<u8>> = (0..1025).map(|_| vec![0u8; 1]).collect();
            let (r, bufs) = client.read_vectored(bufs).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            assert_eq!(bufs.len(), 1025, "the buffers come back");
            let (r, _) = client.write_vectored(Vec::<Vec<u8>>::new()).await;
            assert_eq!(r.unwrap(), 0, "an empty vectored write is Ok(0)");
        });
        healthy_rt(b, &rt, "bad paths and buffer lists");
    });
}

/// The poll bit the crate uses internally (parking an `Async` wait) cannot be set from
/// outside: `PollEvents::from_bits` clears it, so a poll asking only for it is refused
/// (`EINVAL`, nothing to wait for) instead of parking forever, and one that also asks
/// for `IN` is a plain readiness poll. (1 << 27, once an internal edge-wait bit, is
/// passed through as any other unknown bit.)
#[test]
fn internal_poll_bits_cannot_be_set_by_users() {
    assert_eq!(
        PollEvents::from_bits(1 << 26).bits(),
        0,
        "internal bit cleared"
    );
    each_backend(|b| {
        let mut lp = new_loop(b);
        let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
        let op = Op::Poll {
            fd: r.as_raw_fd(),
            events: PollEvents::from_bits(1 << 26),
        };
        let res = one(&mut lp, op);
        assert_eq!(
            os_error(&res),
            Some(libc::EINVAL),
            "{b:?}: the internal bit alone: {res:?}"
        );
        std::io::Write::write_all(&mut w, b"x").unwrap();
        let op = Op::Poll {
            fd: r.as_raw_fd(),
            events: PollEvents::from_bits(PollEvents::IN.bits() | (1 << 26)),
        };
        match one(&mut lp, op) {
            OpResult::Poll(Ok(ev)) => assert!(ev.contains(PollEvents::IN), "{b:?}: {ev:?}"),
            other => panic!("{b:?}: IN plus internal bits: {other:?}"),
        }
    });
}
