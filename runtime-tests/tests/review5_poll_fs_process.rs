//! Soundness review 5: the poll backend (readiness cache, registrations, link timers),
//! file operations on the pool, processes and signals, cross-thread hand-off. Each test
//! names the bug it pins down.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend_within, new_loop};
use xev::{Buffer, CallbackAction, Completion, Op, OpResult, RunMode};

/// Write `data` to `fd` in one `write(2)`.
fn write_all_once(fd: &OwnedFd, data: &[u8]) {
    // SAFETY: `data` is readable for its length; `fd` is open.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    assert_eq!(n, data.len() as isize, "{}", io::Error::last_os_error());
}

/// A pseudo-terminal: (master, slave), the slave non-blocking in canonical mode (a read
/// returns at most one line).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty writes two new fds; null name, termios and winsize are allowed.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", io::Error::last_os_error());
    // SAFETY: two new fds that we own.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(s)) };
    for fd in [&m, &s] {
        // SAFETY: fcntl on fds we own.
        unsafe {
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        }
    }
    (m, s)
}

/// A read of `fd` into a `len`-byte buffer that rearms until `count` results came: it
/// first waits (parked, `fd` registered), then `feed` makes `fd` readable with one edge;
/// the results, each the bytes read, as far as they came within 3 s.
fn rearmed_reads(
    lp: &mut xev::Loop,
    fd: std::os::fd::RawFd,
    len: usize,
    count: usize,
    feed: impl FnOnce(),
) -> Vec<Vec<u8>> {
    let got: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let g = got.clone();
    let mut c = pin!(Completion::new());
    c.as_mut().prep(
        Op::Read {
            fd,
            buf: Buffer::from(vec![0u8; len]),
        },
        move |_, c, r| {
            let OpResult::Read(Ok(n)) = r else {
                panic!("{r:?}")
            };
            g.borrow_mut()
                .push(c.buffer().unwrap().as_slice()[..n].to_vec());
            if g.borrow().len() == count {
                CallbackAction::Disarm
            } else {
                CallbackAction::Rearm
            }
        },
    );
    lp.add(c.as_mut());
    lp.run(RunMode::NoWait).unwrap();
    assert!(got.borrow().is_empty(), "nothing to read yet");
    feed();
    let start = Instant::now();
    while got.borrow().len() < count && start.elapsed() < Duration::from_secs(3) {
        lp.run(RunMode::Once).unwrap();
    }
    let out = got.borrow().clone();
    if out.len() < count {
        // The read is still Active: end it before its completion goes.
        lp.shutdown();
    }
    out
}

/// A short read is "the queue is drained" only where the kernel returns everything
/// queued that fits (a stream socket, a pipe): a tty in canonical mode returns one line
/// per read, so after the first short read the tty was still readable, and no new edge
/// was coming for it. The poll backend took every non-socket fd for a stream and
/// cleared its readiness cache on the short read; the rearmed read (which trusts the
/// cache) waited forever.
#[test]
fn a_rearmed_read_of_a_tty_gets_the_line_behind_a_short_read() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let (master, slave) = pty();
        // SAFETY: F_SETFL on an fd we own.
        unsafe { libc::fcntl(slave.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        // Both lines in one write: the tty takes them in at once, one edge.
        let got = rearmed_reads(&mut lp, slave.as_raw_fd(), 64, 2, || {
            write_all_once(&master, b"first\nsecond\n")
        });
        assert_eq!(
            got,
            [b"first\n".to_vec(), b"second\n".to_vec()],
            "{b:?}: the second line was never read"
        );
    });
}

/// An eventfd in semaphore mode gives one count per read: 8 bytes into a 16-byte
/// buffer is a short read with more counts left. Every count is read. (This one holds
/// even with the short-read rule applied, unlike the tty above: the eventfd's read wakes
/// its own waiters, a new edge. It pins the semantics, not the bug.)
#[test]
fn a_rearmed_read_of_a_semaphore_eventfd_gets_every_count() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        // SAFETY: eventfd returns a new fd or -1.
        let raw = unsafe {
            libc::eventfd(
                0,
                libc::EFD_SEMAPHORE | libc::EFD_NONBLOCK | libc::EFD_CLOEXEC,
            )
        };
        assert!(raw >= 0, "eventfd: {}", io::Error::last_os_error());
        // SAFETY: a new fd that we own.
        let efd = unsafe { OwnedFd::from_raw_fd(raw) };
        // Three counts in one write: one edge.
        let got = rearmed_reads(&mut lp, efd.as_raw_fd(), 16, 3, || {
            write_all_once(&efd, &3u64.to_ne_bytes())
        });
        let counts: Vec<u64> = got
            .iter()
            .map(|r| u64::from_ne_bytes(r[..].try_into().unwrap()))
            .collect();
        assert_eq!(counts, [1, 1, 1], "{b:?}: a count was never read");
    });
}

/// The async runtime's pipe end over a tty (`Receiver::from(OwnedFd)` takes "another
/// stream that read(2) works on"): a read in canonical mode returns one line, and the
/// short read left the direct path's cache "not ready" with the next line queued; the
/// next read waited for an edge that never came.
#[test]
fn an_async_read_of_a_tty_gets_the_line_behind_a_short_read() {
    each_backend_within(Duration::from_secs(10), |b| {
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let (master, slave) = pty();
            let rx = xev::pipe::Receiver::from(slave);
            // The first read waits on the empty tty (registered, no edge yet).
            let reader = xev::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..2 {
                    let (n, buf) = rx.read(Vec::with_capacity(64)).await;
                    out.push(buf[..n.unwrap()].to_vec());
                }
                out
            });
            xev::time::sleep(Duration::from_millis(20)).await;
            // Both lines in one write: the tty takes them in at once, one edge.
            write_all_once(&master, b"first\nsecond\n");
            let got = xev::time::timeout(Duration::from_secs(3), reader)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: the second line was never read"))
                .unwrap();
            assert_eq!(got, [b"first\n".to_vec(), b"second\n".to_vec()], "{b:?}");
        });
    });
}

/// A task reading the async stream `conn` until `n` bytes came (each read into a fresh
/// 64-byte `Vec`); its output is the bytes.
macro_rules! spawn_reader {
    ($conn:expr, $n:expr) => {{
        let conn = $conn;
        xev::spawn(async move {
            let mut out = Vec::new();
            while out.len() < $n {
                let (n, buf) = conn.read(Vec::with_capacity(64)).await;
                let n = n.unwrap();
                assert!(n > 0, "end of stream after {out:?}");
                out.extend_from_slice(&buf[..n]);
            }
            out
        })
    }};
}

/// TCP urgent data: a read stops at the urgent mark once it has read anything (the
/// kernel's `tcp_recvmsg`), so that short read left the bytes after the mark queued, with
/// no new edge to announce them; the poll backend's cache took the short read for
/// "drained" and the next read waited forever (a peer could stall a connection so, by
/// sending one byte with `MSG_OOB`).
#[test]
fn an_async_tcp_read_gets_the_bytes_behind_an_urgent_mark() {
    each_backend_within(Duration::from_secs(10), |b| {
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let conn = xev::net::TcpStream::connect(addr).await.unwrap();
            let (peer, _) = l.accept().unwrap();
            // The first read waits (registered, no edge yet).
            let reader = spawn_reader!(conn, 6);
            xev::time::sleep(Duration::from_millis(20)).await;
            // "abc", then "X" as urgent data (not inline: reads skip it), then "def".
            let fd = peer.as_raw_fd();
            for (data, flags) in [(&b"abcX"[..], libc::MSG_OOB), (&b"def"[..], 0)] {
                // SAFETY: `data` is readable for its length; `fd` is open.
                let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), flags) };
                assert_eq!(n, data.len() as isize);
            }
            let got = xev::time::timeout(Duration::from_secs(3), reader)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: the bytes after the mark were never read"))
                .unwrap();
            assert_eq!(got, b"abcdef", "{b:?}");
        });
    });
}

/// Fill `fd`'s send buffer (non-blocking) until the kernel says `EAGAIN`.
fn fill_send_buffer(fd: std::os::fd::RawFd) {
    let chunk = [0u8; 65536];
    loop {
        // SAFETY: `chunk` is readable for its length; `fd` is open.
        let n = unsafe {
            libc::send(
                fd,
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            assert_eq!(
                io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            return;
        }
    }
}

/// Read everything queued on non-blocking `fd`.
fn drain_fd(fd: std::os::fd::RawFd) {
    let mut buf = [0u8; 65536];
    // SAFETY: `buf` is writable for its length; `fd` is open.
    while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// `Op::Poll` for `IN | OUT` finishes when either comes (as `poll(2)` and io_uring's
/// POLL_ADD do). The poll backend parked it with the readers only, so a socket that
/// became writable (and not readable) never woke it: the poll waited forever.
#[test]
fn a_poll_for_in_or_out_finishes_when_the_socket_becomes_writable() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let (a, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        fill_send_buffer(a.as_raw_fd());
        let got: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let g = got.clone();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(
            Op::Poll {
                fd: a.as_raw_fd(),
                events: xev::PollEvents::IN | xev::PollEvents::OUT,
            },
            move |_, _, r| {
                g.borrow_mut().push(r);
                CallbackAction::Disarm
            },
        );
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        assert!(
            got.borrow().is_empty(),
            "{b:?}: neither readable nor writable yet"
        );
        // The peer reads everything: `a` is writable again (and still not readable).
        drain_fd(peer.as_raw_fd());
        let start = Instant::now();
        while got.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        let r = got.borrow_mut().pop();
        match r {
            Some(OpResult::Poll(Ok(ev))) => {
                assert!(ev.contains(xev::PollEvents::OUT), "{b:?}: {ev:?}")
            }
            other => panic!("{b:?}: {other:?}"),
        }
    });
}

/// The polls for `IN | OUT` that wait in a queue of their own (see the test above) are
/// still found by a cancel, a time limit and a close of their fd.
#[test]
fn a_poll_for_in_or_out_can_be_cancelled_timed_out_and_closed() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let (a, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        fill_send_buffer(a.as_raw_fd());
        let fd = a.as_raw_fd();
        let both = xev::PollEvents::IN | xev::PollEvents::OUT;
        let log: Rc<RefCell<Vec<(u8, OpResult)>>> = Rc::default();
        let rec = |tag: u8| {
            let log = log.clone();
            move |_: &mut xev::Loop, _: std::pin::Pin<&mut Completion>, r: OpResult| {
                log.borrow_mut().push((tag, r));
                CallbackAction::Disarm
            }
        };
        let mut p1 = pin!(Completion::new());
        let mut p2 = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        lp.start(p1.as_mut(), Op::Poll { fd, events: both }, rec(1));
        p2.as_mut().prep(Op::Poll { fd, events: both }, rec(2));
        lp.add_with_timeout(p2.as_mut(), Duration::from_millis(20));
        lp.run(RunMode::NoWait).unwrap();
        assert!(log.borrow().is_empty(), "{b:?}: {:?}", log.borrow());
        lp.cancel(cancel.as_mut(), &p1, rec(3));
        let start = Instant::now();
        while log.borrow().len() < 3 && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        let mut got: Vec<(u8, Option<i32>)> = log
            .borrow()
            .iter()
            .map(|(t, r)| (*t, runtime_tests::os_error(r)))
            .collect();
        got.sort();
        let canceled = |t| {
            matches!(
                log.borrow().iter().find(|(x, _)| *x == t),
                Some((_, OpResult::Poll(Err(xev::Error::Canceled))))
            )
        };
        assert!(canceled(1), "{b:?}: {:?}", log.borrow());
        assert_eq!(
            got[1],
            (2, Some(libc::ETIMEDOUT)),
            "{b:?}: {:?}",
            log.borrow()
        );
        let cancel_ok = matches!(
            log.borrow().iter().find(|(t, _)| *t == 3),
            Some((_, OpResult::Cancel(Ok(()))))
        );
        assert!(cancel_ok, "{b:?}: {:?}", log.borrow());
        // A close through the loop cancels a poll parked on its fd.
        log.borrow_mut().clear();
        let mut p3 = pin!(Completion::new());
        let mut close = pin!(Completion::new());
        lp.start(p3.as_mut(), Op::Poll { fd, events: both }, rec(4));
        lp.run(RunMode::NoWait).unwrap();
        lp.start(
            close.as_mut(),
            Op::Close {
                fd: Some(OwnedFd::from(a)),
            },
            rec(5),
        );
        let start = Instant::now();
        while log.borrow().len() < 2 && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        let poll_canceled = log
            .borrow()
            .iter()
            .any(|(t, r)| *t == 4 && matches!(r, OpResult::Poll(Err(xev::Error::Canceled))));
        assert!(poll_canceled, "{b:?}: {:?}", log.borrow());
    });
}

/// Send `data` on Unix socket `fd` with `pass` attached as `SCM_RIGHTS`.
fn send_with_fd(fd: std::os::fd::RawFd, data: &[u8], pass: std::os::fd::RawFd) {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // Room for one fd's control message (aligned as cmsghdr).
    let mut cbuf = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid before the fields are set.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as _;
    // SAFETY: `msg` has a control buffer of msg_controllen bytes, so CMSG_FIRSTHDR is
    // non-null and the header and its data fit in it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<i32>(), pass);
    }
    // SAFETY: `msg` points at live buffers for the call.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    assert_eq!(n, data.len() as isize, "{}", io::Error::last_os_error());
}

/// A Unix stream read stops after bytes that carried descriptors (`SCM_RIGHTS`: the
/// kernel's `unix_stream_read_generic` never reads past them in one call), so that
/// short read left later bytes queued with no new edge coming; the poll backend's cache
/// took it for "drained" and the next read waited forever (a peer could stall the
/// connection so, by passing one descriptor).
#[test]
fn an_async_unix_read_gets_the_bytes_behind_passed_descriptors() {
    each_backend_within(Duration::from_secs(10), |b| {
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let (mine, peer) = std::os::unix::net::UnixStream::pair().unwrap();
            let conn = xev::net::UnixStream::from(OwnedFd::from(mine));
            // The first read waits (registered, no edge yet).
            let reader = spawn_reader!(conn, 6);
            xev::time::sleep(Duration::from_millis(20)).await;
            let fd = peer.as_raw_fd();
            send_with_fd(fd, b"abc", fd);
            // SAFETY: the bytes are readable; `fd` is open.
            let n = unsafe { libc::send(fd, b"def".as_ptr().cast(), 3, 0) };
            assert_eq!(n, 3);
            let got = xev::time::timeout(Duration::from_secs(3), reader)
                .await
                .unwrap_or_else(|_| panic!("{b:?}: the bytes after the descriptor were never read"))
                .unwrap();
            assert_eq!(got, b"abcdef", "{b:?}");
        });
    });
}
