//! Bad input comes back as an error result, never a panic, and the loop keeps running.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop, only, os_error, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// Run `op` to completion on `lp` and return its one result; then check that a normal
/// timer still fires on the same loop.
fn run_op(lp: &mut Loop, c: Pin<&mut Completion>, op: Op) -> OpResult {
    let res = results();
    let what = format!("{op:?}");
    let r = catch_unwind(AssertUnwindSafe(|| {
        lp.start(c, op, record(&res));
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{what} took long"
        );
    }));
    if let Err(p) = r {
        lp.shutdown();
        std::panic::resume_unwind(p);
    }
    let out = only(&res);
    timer_still_fires(lp);
    out
}

fn timer_still_fires(lp: &mut Loop) {
    let fired = results();
    let mut t = pin!(Completion::new());
    let start = Instant::now();
    lp.timer(t.as_mut(), 2, record(&fired));
    lp.run(RunMode::UntilDone).unwrap();
    assert!(matches!(
        only(&fired),
        OpResult::Timer(TimerTrigger::Expiration)
    ));
    assert!(start.elapsed() >= Duration::from_millis(2));
}

/// Every fd-taking operation on `fd` (with harmless arguments).
fn ops_on(fd: RawFd) -> Vec<Op> {
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    vec![
        Op::Read {
            fd,
            buf: Buffer::inline(8),
        },
        Op::Pread {
            fd,
            buf: Buffer::inline(8),
            offset: 0,
        },
        Op::Write {
            fd,
            buf: Buffer::copy_from(b"x"),
        },
        Op::Pwrite {
            fd,
            buf: Buffer::copy_from(b"x"),
            offset: 0,
        },
        Op::Send {
            fd,
            buf: Buffer::copy_from(b"x"),
        },
        Op::Recv {
            fd,
            buf: Buffer::inline(8),
        },
        Op::SendMsg {
            fd,
            buf: Buffer::copy_from(b"x"),
            addr: Some(addr),
        },
        Op::RecvMsg {
            fd,
            buf: Buffer::inline(8),
        },
        Op::Accept { fd },
        Op::Connect { fd, addr },
        Op::Shutdown {
            fd,
            how: Shutdown::Both,
        },
        Op::Poll {
            fd,
            events: PollEvents::IN,
        },
        Op::Poll {
            fd,
            events: PollEvents::OUT,
        },
    ]
}

#[test]
fn minus_one_fd_is_ebadf_for_every_op() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        for op in ops_on(-1) {
            let what = format!("{op:?}");
            let r = run_op(&mut lp, c.as_mut(), op);
            assert_eq!(
                os_error(&r),
                Some(libc::EBADF),
                "{what} on fd -1 gave {r:?}"
            );
        }
    });
}

#[test]
fn closed_fd_number_is_ebadf_for_every_op() {
    each_backend(|b| {
        // Make a number that is surely closed: dup to a high slot no other test here
        // allocates, then close it.
        let (x, _y) = UnixStream::pair().unwrap();
        // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
        let d = unsafe { libc::fcntl(x.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 4500) };
        assert!(d >= 4500);
        // SAFETY: `d` is ours; closing it leaves a dead number.
        unsafe { libc::close(d) };
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        for op in ops_on(d) {
            let what = format!("{op:?}");
            let r = run_op(&mut lp, c.as_mut(), op);
            assert_eq!(
                os_error(&r),
                Some(libc::EBADF),
                "{what} on closed fd {d} gave {r:?}"
            );
        }
        // Close through the loop of an fd that is already closed (ownership was lied
        // about): an error result, not a panic.
        // SAFETY: deliberately wrong ownership of a closed number; closing it fails with
        // EBADF and touches nothing else (no other test uses numbers >= 4500).
        let bogus = unsafe { OwnedFd::from_raw_fd(d) };
        let r = run_op(&mut lp, c.as_mut(), Op::close(bogus));
        assert_eq!(os_error(&r), Some(libc::EBADF), "{r:?}");
    });
}

#[test]
fn socket_ops_on_non_sockets_and_mismatched_sockets() {
    each_backend(|b| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new fds.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: new fds we own.
        let (rd, _wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        // SAFETY: plain socket(2); the fd is owned right away.
        let fresh = unsafe {
            OwnedFd::from_raw_fd(libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ))
        };
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let cases: Vec<(Op, &[i32])> = vec![
            (
                Op::Recv {
                    fd: rd.as_raw_fd(),
                    buf: Buffer::inline(4),
                },
                &[libc::ENOTSOCK],
            ),
            (
                Op::Send {
                    fd: rd.as_raw_fd(),
                    buf: Buffer::inline(4),
                },
                &[libc::ENOTSOCK],
            ),
            (Op::Accept { fd: rd.as_raw_fd() }, &[libc::ENOTSOCK]),
            (
                Op::Shutdown {
                    fd: rd.as_raw_fd(),
                    how: Shutdown::Read,
                },
                &[libc::ENOTSOCK],
            ),
            (
                Op::Accept {
                    fd: udp.as_raw_fd(),
                },
                &[libc::EOPNOTSUPP],
            ),
            (
                Op::Connect {
                    fd: tcp.as_raw_fd(),
                    addr: v6,
                },
                &[libc::EAFNOSUPPORT, libc::EINVAL, libc::EISCONN],
            ),
            (
                Op::Shutdown {
                    fd: fresh.as_raw_fd(),
                    how: Shutdown::Write,
                },
                &[libc::ENOTCONN],
            ),
            (
                Op::Recv {
                    fd: fresh.as_raw_fd(),
                    buf: Buffer::inline(4),
                },
                &[libc::ENOTCONN],
            ),
            (
                Op::Send {
                    fd: fresh.as_raw_fd(),
                    buf: Buffer::inline(4),
                },
                &[libc::EPIPE],
            ),
        ];
        for (op, want) in cases {
            let what = format!("{op:?}");
            let r = run_op(&mut lp, c.as_mut(), op);
            let got = os_error(&r);
            assert!(
                got.is_some_and(|e| want.contains(&e)),
                "{what} gave {r:?}, expected one of {want:?}"
            );
        }
    });
}

#[test]
fn connection_refused_is_a_result() {
    each_backend(|b| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        assert!(fd >= 0);
        // SAFETY: new socket we own.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let op = Op::Connect {
            fd: sock.as_raw_fd(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let r = run_op(&mut lp, c.as_mut(), op);
        assert_eq!(os_error(&r), Some(libc::ECONNREFUSED), "{r:?}");
        // Using the failed socket afterwards is an error too.
        // (The kernel reports end-of-file for a receive on a refused socket.)
        let r = run_op(
            &mut lp,
            c.as_mut(),
            Op::Recv {
                fd: sock.as_raw_fd(),
                buf: Buffer::inline(4),
            },
        );
        assert!(matches!(r, OpResult::Recv(Err(_))), "{r:?}");
        let r = run_op(
            &mut lp,
            c.as_mut(),
            Op::Send {
                fd: sock.as_raw_fd(),
                buf: Buffer::inline(4),
            },
        );
        assert!(os_error(&r).is_some(), "{r:?}");
    });
}

#[test]
fn read_on_write_only_file_is_a_result() {
    each_backend(|b| {
        let path =
            std::env::temp_dir().join(format!("xev-errors-wo-{}-{b:?}.tmp", std::process::id()));
        let f: File = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let r = run_op(
            &mut lp,
            c.as_mut(),
            Op::Read {
                fd: f.as_raw_fd(),
                buf: Buffer::inline(4),
            },
        );
        assert_eq!(os_error(&r), Some(libc::EBADF), "{r:?}");
        drop(f);
        std::fs::remove_file(&path).unwrap();
    });
}

#[test]
fn cancel_of_a_dead_completion_is_not_found() {
    each_backend(|b| {
        let dead = Completion::new();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let res = results();
        lp.cancel(c.as_mut(), &dead, record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Cancel(Err(CancelError::NotFound)) => {}
            other => panic!("{other:?}"),
        }
        let e: io::Error = CancelError::NotFound.into();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        timer_still_fires(&mut lp);
    });
}

#[test]
fn extreme_timer_values() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        // 0 ms fires.
        let r = run_op(&mut lp, c.as_mut(), Op::Timer { ms: 0 });
        assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
        // Deadlines that overflow nanoseconds saturate and never fire.
        let huge = [u64::MAX, u64::MAX - 1, u64::MAX / 1_000_000 + 1, 1 << 50];
        let fired = results();
        let mut cs: Vec<Pin<Box<Completion>>> =
            huge.iter().map(|_| Box::pin(Completion::new())).collect();
        let mut t = pin!(Completion::new());
        let mut lp2 = new_loop(b);
        for (c, &ms) in cs.iter_mut().zip(&huge) {
            lp2.timer(c.as_mut(), ms, record(&fired));
        }
        for _ in 0..3 {
            lp2.run(RunMode::NoWait).unwrap();
        }
        // A short timer on the same loop still fires, and run(Once) does not spin or
        // fire the huge ones.
        let start = Instant::now();
        lp2.timer(t.as_mut(), 5, record(&fired));
        lp2.run(RunMode::Once).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert!(matches!(
            only(&fired),
            OpResult::Timer(TimerTrigger::Expiration)
        ));
        assert!(cs.iter().all(|c| c.state() == CompletionState::Active));
        assert_eq!(lp2.active(), huge.len());
        drop(lp2);
        assert!(cs.iter().all(|c| c.state() == CompletionState::Dead));
        assert!(fired.borrow().is_empty(), "shutdown called back");
        drop(cs);
        timer_still_fires(&mut lp);
    });
}

#[test]
fn pread_on_a_pipe_is_espipe_or_a_plain_read() {
    // pread(2) on a pipe is ESPIPE, which is what the poll backend (thread pool) reports;
    // io_uring ignores the offset of a non-seekable file and reads. Either way it is a
    // result, and the loop keeps running. (Data is written first so the io_uring read
    // does not wait.)
    each_backend(|b| {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two new fds.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: new fds we own.
        let (rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        io::Write::write_all(&mut &wr, b"pipe").unwrap();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let r = run_op(
            &mut lp,
            c.as_mut(),
            Op::Pread {
                fd: rd.as_raw_fd(),
                buf: Buffer::inline(8),
                offset: 0,
            },
        );
        match r {
            OpResult::Pread(Ok(4)) if b == Backend::IoUring => {
                assert_eq!(&c.buffer().unwrap().as_slice()[..4], b"pipe")
            }
            ref r if os_error(r) == Some(libc::ESPIPE) => {}
            other => panic!("pread on a pipe gave {other:?}"),
        }
        let r = run_op(
            &mut lp,
            c.as_mut(),
            Op::Pwrite {
                fd: wr.as_raw_fd(),
                buf: Buffer::copy_from(b"x"),
                offset: 0,
            },
        );
        match r {
            OpResult::Pwrite(Ok(1)) if b == Backend::IoUring => {}
            ref r if os_error(r) == Some(libc::ESPIPE) => {}
            other => panic!("pwrite on a pipe gave {other:?}"),
        }
    });
}

#[test]
fn poll_with_no_events_is_einval_not_a_spin() {
    each_backend(|b| {
        let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let got = std::rc::Rc::new(std::cell::Cell::new(None));
        let mut c = std::pin::pin!(Completion::new());
        let mut lp = new_loop(b);
        let g = got.clone();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
        lp.start(
            c.as_mut(),
            Op::Poll {
                fd,
                events: PollEvents::from_bits(0),
            },
            move |_, _, r| {
                let OpResult::Poll(Err(Error::Io(e))) = r else {
                    panic!("{r:?}")
                };
                g.set(e.raw_os_error());
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(got.get(), Some(libc::EINVAL));
    });
}
