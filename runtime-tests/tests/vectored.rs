//! The vectored operations of the callback API, on every backend: `Op::Readv`,
//! `Op::Writev` (pipes, sockets and files, with and without an offset) and
//! `Op::SendMsgV` (TCP and UDP); their limits, errors and cancellation.
//!
//! File tests are named `file_*` (the poll backend runs them on its thread pool, which
//! valgrind cannot run; CI skips them there).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::{pin, Pin};

use runtime_tests::{each_backend, new_loop, only, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// Run `op` in `c` on `lp` to its end and return its result.
fn run(lp: &mut Loop, c: Pin<&mut Completion>, op: Op) -> OpResult {
    let res = results();
    lp.start(c, op, record(&res));
    lp.run(RunMode::UntilDone).unwrap();
    only(&res)
}

/// The buffers of the (Dead) vectored operation in `c`.
fn bufs(c: &Completion) -> &[Buffer] {
    match c.op() {
        Some(Op::Readv { bufs, .. } | Op::Writev { bufs, .. } | Op::SendMsgV { bufs, .. }) => {
            bufs.as_slice()
        }
        other => panic!("not a vectored op: {other:?}"),
    }
}

fn three(a: &[u8], b: &[u8], c: &[u8]) -> Buffers {
    Buffers::from(vec![
        Buffer::copy_from(a),
        Buffer::copy_from(b),
        Buffer::copy_from(c),
    ])
}

fn room(sizes: &[usize]) -> Buffers {
    Buffers::from(
        sizes
            .iter()
            .map(|&n| Buffer::from(vec![b'.'; n]))
            .collect::<Vec<_>>(),
    )
}

/// A non-blocking pipe: (read end, write end).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
        0
    );
    // SAFETY: two new fds we own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn errno(r: &OpResult) -> Option<i32> {
    let e = match r {
        OpResult::Readv(Err(ReadError::Io(e)))
        | OpResult::Writev(Err(Error::Io(e)))
        | OpResult::SendMsgV(Err(Error::Io(e))) => e,
        _ => return None,
    };
    e.raw_os_error()
}

/// writev of three buffers into a pipe, readv back into three: filled in order, the
/// last one partly; end of file when the writer is gone.
#[test]
fn pipe_writev_then_readv_in_order() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let (r, w) = pipe();
        let op = Op::Writev {
            fd: w.as_raw_fd(),
            bufs: three(b"abc", b"", b"defgh"),
            offset: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::Writev(Ok(8))), "{res:?}");
        assert_eq!(bufs(&c).len(), 3, "the buffers stay in the op");

        let op = Op::Readv {
            fd: r.as_raw_fd(),
            bufs: room(&[2, 4, 8]),
            offset: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::Readv(Ok(8))), "{res:?}");
        let got = bufs(&c);
        assert_eq!(got[0].as_slice(), b"ab");
        assert_eq!(got[1].as_slice(), b"cdef");
        assert_eq!(got[2].as_slice(), b"gh......");

        drop(w);
        let op = Op::Readv {
            fd: r.as_raw_fd(),
            bufs: room(&[4]),
            offset: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(
            matches!(res, OpResult::Readv(Err(ReadError::Eof))),
            "{res:?}"
        );
    });
}

/// A readv on an empty pipe waits for data (parked on the poll backend, in the kernel
/// on io_uring) and gets the bytes written later; rearmed, it reads again into the same
/// buffers.
#[test]
fn readv_waits_for_data_and_rearms() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let (r, w) = pipe();
        let mut w = std::fs::File::from(w);
        let log = results();
        let mut rounds = 0;
        let log2 = log.clone();
        lp.start(
            c.as_mut(),
            Op::Readv {
                fd: r.as_raw_fd(),
                bufs: room(&[1, 2]),
                offset: None,
            },
            move |_, _, res| {
                log2.borrow_mut().push(res);
                rounds += 1;
                if rounds < 2 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        assert!(log.borrow().is_empty(), "no data yet");
        w.write_all(b"xyz").unwrap();
        lp.run(RunMode::Once).unwrap();
        assert!(matches!(log.borrow()[0], OpResult::Readv(Ok(3))));
        w.write_all(b"Q").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(log.borrow()[1], OpResult::Readv(Ok(1))));
        assert_eq!(bufs(&c)[0].as_slice(), b"Q");
        assert_eq!(bufs(&c)[1].as_slice(), b"yz", "untouched by the short read");
    });
}

/// SendMsgV: several buffers as one message, on a connected TCP socket (no address)
/// and as one UDP datagram to an address.
#[test]
fn sendmsgv_over_tcp_and_udp() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut rx, _) = l.accept().unwrap();
        tx.set_nonblocking(true).unwrap();
        let op = Op::SendMsgV {
            fd: tx.as_raw_fd(),
            bufs: three(b"tcp ", b"in ", b"pieces"),
            addr: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::SendMsgV(Ok(13))), "{res:?}");
        let mut got = [0u8; 13];
        rx.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"tcp in pieces");

        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        let op = Op::SendMsgV {
            fd: a.as_raw_fd(),
            bufs: three(b"one", b" ", b"datagram"),
            addr: Some(to.local_addr().unwrap()),
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::SendMsgV(Ok(12))), "{res:?}");
        let mut dgram = [0u8; 64];
        let (n, from) = to.recv_from(&mut dgram).unwrap();
        assert_eq!(
            (&dgram[..n], from),
            (&b"one datagram"[..], a.local_addr().unwrap())
        );

        // No buffers: an empty datagram.
        let op = Op::SendMsgV {
            fd: a.as_raw_fd(),
            bufs: Buffers::new(Vec::new()),
            addr: Some(to.local_addr().unwrap()),
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::SendMsgV(Ok(0))), "{res:?}");
        assert_eq!(to.recv(&mut dgram).unwrap(), 0);
    });
}

/// Errors: more than IOV_MAX buffers is EINVAL, a closed fd EBADF, a socket with a
/// closed peer EPIPE (never SIGPIPE); the loop keeps running.
#[test]
fn vectored_errors() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let (r, w) = pipe();
        let many = || Buffers::from((0..1025).map(|_| Buffer::inline(1)).collect::<Vec<_>>());
        let res = run(
            &mut lp,
            c.as_mut(),
            Op::Writev {
                fd: w.as_raw_fd(),
                bufs: many(),
                offset: None,
            },
        );
        assert_eq!(errno(&res), Some(libc::EINVAL), "{res:?}");
        let res = run(
            &mut lp,
            c.as_mut(),
            Op::Readv {
                fd: r.as_raw_fd(),
                bufs: many(),
                offset: None,
            },
        );
        assert_eq!(errno(&res), Some(libc::EINVAL), "{res:?}");

        let res = run(
            &mut lp,
            c.as_mut(),
            Op::Readv {
                fd: -1,
                bufs: room(&[4]),
                offset: None,
            },
        );
        assert_eq!(errno(&res), Some(libc::EBADF), "{res:?}");
        let res = run(
            &mut lp,
            c.as_mut(),
            Op::SendMsgV {
                fd: i32::MAX - 1,
                bufs: room(&[4]),
                addr: None,
            },
        );
        assert_eq!(errno(&res), Some(libc::EBADF), "{res:?}");

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tx = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        drop(l.accept().unwrap());
        tx.set_nonblocking(true).unwrap();
        let mut saw_error = false;
        for _ in 0..50 {
            let res = run(
                &mut lp,
                c.as_mut(),
                Op::SendMsgV {
                    fd: tx.as_raw_fd(),
                    bufs: room(&[1000, 1000]),
                    addr: None,
                },
            );
            match errno(&res) {
                None => assert!(matches!(res, OpResult::SendMsgV(Ok(_))), "{res:?}"),
                Some(e) => {
                    assert!(e == libc::EPIPE || e == libc::ECONNRESET, "{res:?}");
                    saw_error = true;
                    break;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            saw_error,
            "a write to a closed peer fails (and raises no SIGPIPE)"
        );

        // Still running.
        let res = run(&mut lp, c.as_mut(), Op::Timer { ms: 1 });
        assert!(matches!(res, OpResult::Timer(TimerTrigger::Expiration)));
    });
}

/// No room: readv of zero buffers, or of empty ones, completes with Ok(0) at once, even
/// on an idle socket (it must not wait for data).
#[test]
fn readv_of_no_room_is_ok_zero_at_once() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        for bufs in [Buffers::new(Vec::new()), room(&[0, 0])] {
            let res = results();
            lp.start(
                c.as_mut(),
                Op::Readv {
                    fd: a.as_raw_fd(),
                    bufs,
                    offset: None,
                },
                record(&res),
            );
            let mut t = pin!(Completion::new());
            lp.timer(t.as_mut(), 2000, |_, _, _| CallbackAction::Disarm);
            lp.run(RunMode::Once).unwrap();
            let r = res
                .borrow_mut()
                .pop()
                .expect("done at once, not after the timer");
            assert!(matches!(r, OpResult::Readv(Ok(0))), "{r:?}");
            let target = CancelTarget::of(&t);
            let mut cancel = pin!(Completion::new());
            lp.start(cancel.as_mut(), Op::Cancel { target }, |_, _, _| {
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
        }
    });
}

/// A readv waiting on an idle socket is cancelled: Canceled, its buffers intact.
#[test]
fn a_waiting_readv_is_cancelled() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let res = results();
        lp.start(
            c.as_mut(),
            Op::Readv {
                fd: a.as_raw_fd(),
                bufs: room(&[3, 3]),
                offset: None,
            },
            record(&res),
        );
        lp.run(RunMode::NoWait).unwrap();
        let target = CancelTarget::of(&c);
        let cres = results();
        let mut cancel = pin!(Completion::new());
        lp.start(cancel.as_mut(), Op::Cancel { target }, record(&cres));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&cres), OpResult::Cancel(Ok(()))));
        let r = only(&res);
        assert!(
            matches!(r, OpResult::Readv(Err(ReadError::Canceled))),
            "{r:?}"
        );
        assert_eq!(bufs(&c)[1].as_slice(), b"...");
    });
}

/// Positional vectored I/O on a regular file (the poll backend's thread pool): at the
/// offset, without moving the file position; readv/writev with no offset use and move
/// it; past the end is end of file.
#[test]
fn file_readv_writev_with_and_without_offset() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = pin!(Completion::new());
        let path = std::env::temp_dir().join(format!("xev-vectored-{}-{b:?}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        let fd = f.as_raw_fd();

        let op = Op::Writev {
            fd,
            bufs: three(b"hello", b", ", b"world"),
            offset: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::Writev(Ok(12))), "{res:?}");
        use std::io::Seek;
        assert_eq!(
            f.stream_position().unwrap(),
            12,
            "a plain writev moves the position"
        );
        let op = Op::Writev {
            fd,
            bufs: three(b"W", b"OR", b"LD"),
            offset: Some(7),
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::Writev(Ok(5))), "{res:?}");
        assert_eq!(f.stream_position().unwrap(), 12, "pwritev does not");

        let op = Op::Readv {
            fd,
            bufs: room(&[5, 2, 16]),
            offset: Some(0),
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(matches!(res, OpResult::Readv(Ok(12))), "{res:?}");
        let got: Vec<u8> = bufs(&c)
            .iter()
            .flat_map(|b| b.as_slice().to_vec())
            .collect();
        assert_eq!(&got[..12], b"hello, WORLD");
        let op = Op::Readv {
            fd,
            bufs: room(&[4]),
            offset: None,
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(
            matches!(res, OpResult::Readv(Err(ReadError::Eof))),
            "{res:?}"
        );
        let op = Op::Readv {
            fd,
            bufs: room(&[4]),
            offset: Some(100),
        };
        let res = run(&mut lp, c.as_mut(), op);
        assert!(
            matches!(res, OpResult::Readv(Err(ReadError::Eof))),
            "{res:?}"
        );
        let mut rest = String::new();
        f.seek(std::io::SeekFrom::Start(7)).unwrap();
        f.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "WORLD");
    });
}
