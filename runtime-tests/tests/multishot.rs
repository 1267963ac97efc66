//! Multishot operations of the callback API: `Op::AcceptMulti` (many connections per
//! submission) and `Op::RecvMulti` over a loop-owned `BufferGroup` (buffers lent to the
//! callback as `GroupBuf` leases), on every backend.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::Duration;

use runtime_tests::{each_backend, new_loop};
use xev::{
    Backend, BufferGroup, CallbackAction, Completion, Error, GroupBuf, Loop, Op, OpResult,
    ReadError, RunMode,
};

fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Run the loop until `done()` or a 5 s deadline.
fn run_until(lp: &mut Loop, done: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(5), "timed out");
        settle(lp, 2);
    }
}

/// Let the loop turn for `ms` (results still arriving are processed).
fn settle(lp: &mut Loop, ms: u64) {
    let mut t = pin!(Completion::new());
    lp.timer(t.as_mut(), ms, |_, _, _| CallbackAction::Disarm);
    while t.state() == xev::CompletionState::Active {
        lp.run(RunMode::Once).unwrap();
    }
}

/// A timer and a TCP round trip still work on `lp`.
fn loop_still_works(lp: &mut Loop) {
    settle(lp, 1);
    let l = listener();
    let addr = l.local_addr().unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    let got = Rc::new(RefCell::new(None));
    let g = got.clone();
    let mut a = pin!(Completion::new());
    lp.start(
        a.as_mut(),
        Op::Accept { fd: l.as_raw_fd() },
        move |_, _, r| {
            *g.borrow_mut() = Some(r);
            CallbackAction::Disarm
        },
    );
    lp.run(RunMode::UntilDone).unwrap();
    let Some(OpResult::Accept(Ok(acc))) = got.borrow_mut().take() else {
        panic!("accept after the multishot failed")
    };
    let mut s = TcpStream::from(acc.fd);
    s.set_nonblocking(false).unwrap();
    c.write_all(b"hi").unwrap();
    let mut b = [0u8; 2];
    s.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"hi");
}

type Accepted = Rc<RefCell<Vec<OwnedFd>>>;

/// Start a multishot accept that keeps every connection and rearms until `stop_at`.
fn accept_multi(
    lp: &mut Loop,
    c: std::pin::Pin<&mut Completion>,
    fd: i32,
    got: &Accepted,
    stop_at: usize,
) {
    let g = got.clone();
    lp.start(c, Op::AcceptMulti { fd }, move |_, _, r| match r {
        OpResult::AcceptMulti(Ok(fd)) => {
            g.borrow_mut().push(fd);
            if g.borrow().len() >= stop_at {
                CallbackAction::Disarm
            } else {
                CallbackAction::Rearm
            }
        }
        other => panic!("accept: {other:?}"),
    });
}

/// 64 clients connect before the loop runs; one multishot accept (one submission on
/// io_uring) receives every one of them, each a working non-blocking connection.
#[test]
fn accepts_many_connections() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let got: Accepted = Rc::default();
        let mut c = pin!(Completion::new());
        accept_multi(&mut lp, c.as_mut(), l.as_raw_fd(), &got, 64);
        let g = got.clone();
        run_until(&mut lp, || g.borrow().len() == 64);
        assert_eq!(c.state(), xev::CompletionState::Dead);
        // Each accepted socket is non-blocking and talks to one of the clients.
        let mut seen = std::collections::HashSet::new();
        for fd in got.borrow_mut().drain(..) {
            // SAFETY: fcntl on an fd we own.
            let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
            assert!(fl & libc::O_NONBLOCK != 0);
            let s = TcpStream::from(fd);
            seen.insert(s.peer_addr().unwrap());
        }
        let want: std::collections::HashSet<_> =
            clients.iter().map(|c| c.local_addr().unwrap()).collect();
        assert_eq!(seen, want);
        assert_eq!(lp.active(), 0);
        loop_still_works(&mut lp);
    });
}

/// Connections arriving while the callback keeps rearming are all delivered (the
/// kernel's multishot, or a resubmission, keeps the operation going).
#[test]
fn accepts_connections_arriving_over_time() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let got: Accepted = Rc::default();
        let mut c = pin!(Completion::new());
        accept_multi(&mut lp, c.as_mut(), l.as_raw_fd(), &got, 10);
        let mut clients = Vec::new();
        for i in 0..10 {
            clients.push(TcpStream::connect(addr).unwrap());
            let g = got.clone();
            run_until(&mut lp, || g.borrow().len() == i + 1);
        }
        assert_eq!(lp.active(), 0);
    });
}

/// Disarm mid-stream stops the operation: connections made afterwards are not
/// delivered to it, the loop goes idle, and the same completion can start again and
/// accepts new connections.
#[test]
fn disarm_stops_and_restart_works() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let l = listener();
        let addr = l.local_addr().unwrap();
        let got: Accepted = Rc::default();
        let mut c = pin!(Completion::new());
        accept_multi(&mut lp, c.as_mut(), l.as_raw_fd(), &got, 3);
        let _first: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let g = got.clone();
        run_until(&mut lp, || g.borrow().len() == 3);
        let _late: Vec<_> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        settle(&mut lp, 30);
        assert_eq!(got.borrow().len(), 3, "{b:?}: callback after Disarm");
        assert_eq!(c.state(), xev::CompletionState::Dead);
        assert_eq!(lp.active(), 0);
        // Restart on the same completion: new clients are accepted (connections that
        // came in while it was stopping may have been closed, never leaked).
        got.borrow_mut().clear();
        accept_multi(&mut lp, c.as_mut(), l.as_raw_fd(), &got, 2);
        let _next: Vec<_> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let g = got.clone();
        run_until(&mut lp, || g.borrow().len() == 2);
        loop_still_works(&mut lp);
    });
}

/// A cancel stops a waiting multishot accept with `Canceled`; the cancel succeeds.
#[test]
fn cancel_stops_accept() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let l = listener();
        let res = Rc::new(RefCell::new(Vec::new()));
        let r = res.clone();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::AcceptMulti { fd: l.as_raw_fd() },
            move |_, _, x| {
                let stop = matches!(x, OpResult::AcceptMulti(Err(_)));
                r.borrow_mut().push(x);
                if stop {
                    CallbackAction::Disarm
                } else {
                    CallbackAction::Rearm
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        let cres = Rc::new(RefCell::new(None));
        let cr = cres.clone();
        let mut cc = pin!(Completion::new());
        lp.cancel(cc.as_mut(), &c, move |_, _, x| {
            *cr.borrow_mut() = Some(x);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(
            cres.borrow_mut().take(),
            Some(OpResult::Cancel(Ok(())))
        ));
        let v = res.borrow();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(
            matches!(v[0], OpResult::AcceptMulti(Err(Error::Canceled))),
            "{v:?}"
        );
        assert_eq!(lp.active(), 0);
        drop(v);
        loop_still_works(&mut lp);
    });
}

/// Bad descriptors are errors, and the loop keeps running.
#[test]
fn bad_fds_are_errors() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let group = lp.register_buffer_group(4, 64).unwrap();
        for op in [
            Op::AcceptMulti { fd: -1 },
            Op::AcceptMulti { fd: i32::MAX - 1 },
            Op::RecvMulti {
                fd: -1,
                group: group.clone(),
            },
            Op::RecvMulti {
                fd: i32::MAX - 1,
                group: group.clone(),
            },
        ] {
            let res = Rc::new(RefCell::new(None));
            let r = res.clone();
            let mut c = pin!(Completion::new());
            lp.start(c.as_mut(), op, move |_, _, x| {
                *r.borrow_mut() = Some(x);
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
            let got = res.borrow_mut().take().expect("a result");
            let errno = match &got {
                OpResult::AcceptMulti(Err(Error::Io(e))) => e.raw_os_error(),
                OpResult::RecvMulti(Err(ReadError::Io(e))) => e.raw_os_error(),
                other => panic!("{other:?}"),
            };
            assert_eq!(errno, Some(libc::EBADF), "{got:?}");
            assert_eq!(lp.active(), 0);
        }
        assert_eq!(group.available(), 4);
        loop_still_works(&mut lp);
    });
}

/// Groups with no buffers, empty buffers, a count that is not a power of two or buffers
/// over the limit are refused with InvalidInput.
#[test]
fn bad_group_shapes_are_invalid_input() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        for (count, size) in [(0, 64), (4, 0), (3, 64), (4, 65536)] {
            let e = lp.register_buffer_group(count, size).unwrap_err();
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::InvalidInput,
                "{count} x {size}"
            );
        }
        assert!(lp.register_buffer_group(1, 1).is_ok());
    });
}

/// A group registered with another loop is refused (EINVAL), not used.
#[test]
fn group_of_another_loop_is_einval() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut other = new_loop(b);
        let group = other.register_buffer_group(4, 64).unwrap();
        let (a, _bs) = tcp_pair();
        let res = Rc::new(RefCell::new(None));
        let r = res.clone();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: a.as_raw_fd(),
                group,
            },
            move |_, _, x| {
                *r.borrow_mut() = Some(x);
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        match res.borrow_mut().take() {
            Some(OpResult::RecvMulti(Err(ReadError::Io(e)))) => {
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL))
            }
            other => panic!("{other:?}"),
        };
    });
}

fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nonblocking(true).unwrap();
    (a, b)
}

type Leases = Rc<RefCell<Vec<Result<GroupBuf, ReadError>>>>;

/// Start a multishot receive that keeps every result (leases included) and rearms
/// until an error.
fn recv_multi(
    lp: &mut Loop,
    c: std::pin::Pin<&mut Completion>,
    fd: i32,
    group: &BufferGroup,
    got: &Leases,
) {
    let g = got.clone();
    lp.start(
        c,
        Op::RecvMulti {
            fd,
            group: group.clone(),
        },
        move |_, _, r| {
            let OpResult::RecvMulti(r) = r else {
                panic!("{r:?}")
            };
            let stop = r.is_err();
            g.borrow_mut().push(r);
            if stop {
                CallbackAction::Disarm
            } else {
                CallbackAction::Rearm
            }
        },
    );
}

fn bytes_of(v: &[Result<GroupBuf, ReadError>]) -> Vec<u8> {
    v.iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|b| b.as_slice().to_vec())
        .collect()
}

/// A stream's bytes arrive in order in leased buffers; the peer's close is `Eof`
/// (which ends the operation); every buffer goes back to the group when its lease drops.
#[test]
fn recv_stream_in_order_then_eof() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let group = lp.register_buffer_group(8, 1024).unwrap();
        let (a, mut peer) = tcp_pair();
        let got: Leases = Rc::default();
        let mut c = pin!(Completion::new());
        recv_multi(&mut lp, c.as_mut(), a.as_raw_fd(), &group, &got);
        let mut want = Vec::new();
        for i in 0..20u8 {
            let chunk = vec![i; 100 + i as usize];
            peer.write_all(&chunk).unwrap();
            want.extend_from_slice(&chunk);
            let g = got.clone();
            let n = want.len();
            run_until(&mut lp, || bytes_of(&g.borrow()).len() == n);
            // Consume and return the buffers as we go.
            let mut v = got.borrow_mut();
            let kept: Vec<u8> = bytes_of(&v);
            v.clear();
            drop(v);
            want.drain(..kept.len())
                .zip(kept)
                .for_each(|(w, k)| assert_eq!(w, k));
        }
        assert_eq!(group.available(), 8, "{b:?}: buffers not returned");
        drop(peer);
        let g = got.clone();
        run_until(&mut lp, || !g.borrow().is_empty());
        assert!(
            matches!(got.borrow()[0], Err(ReadError::Eof)),
            "{:?}",
            got.borrow()
        );
        assert_eq!(c.state(), xev::CompletionState::Dead);
        assert_eq!(lp.active(), 0);
        assert_eq!(group.available(), 8);
    });
}

/// With every buffer lent out, the receive reports ENOBUFS and consumes nothing: after
/// the leases drop, a new receive gets the rest, and no byte is lost or duplicated.
#[test]
fn exhausted_group_is_enobufs_and_loses_nothing() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let group = lp.register_buffer_group(2, 16).unwrap();
        let (a, mut peer) = tcp_pair();
        let data: Vec<u8> = (0..100u8).collect();
        peer.write_all(&data).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let got: Leases = Rc::default();
        let mut c = pin!(Completion::new());
        recv_multi(&mut lp, c.as_mut(), a.as_raw_fd(), &group, &got);
        let g = got.clone();
        run_until(&mut lp, || g.borrow().iter().any(|r| r.is_err()));
        let mut all = Vec::new();
        let mut rounds = 0;
        loop {
            let v: Vec<_> = got.borrow_mut().drain(..).collect();
            let last = v.last().expect("results");
            match last {
                Err(ReadError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS)),
                other => panic!("{b:?}: {other:?}"),
            }
            assert_eq!(v.len(), 3, "{b:?}: two buffers then ENOBUFS: {v:?}");
            assert_eq!(group.available(), 0);
            all.extend(bytes_of(&v));
            drop(v); // the leases go back
            assert_eq!(group.available(), 2);
            rounds += 1;
            if all.len() >= 96 {
                break;
            }
            recv_multi(&mut lp, c.as_mut(), a.as_raw_fd(), &group, &got);
            let g = got.clone();
            run_until(&mut lp, || g.borrow().iter().any(|r| r.is_err()));
        }
        assert_eq!(rounds, 3);
        // The last 4 bytes.
        recv_multi(&mut lp, c.as_mut(), a.as_raw_fd(), &group, &got);
        let g = got.clone();
        run_until(&mut lp, || bytes_of(&g.borrow()).len() == 4);
        all.extend(bytes_of(&got.borrow()));
        assert_eq!(all, data, "{b:?}: bytes lost or reordered");
        // Stop it (Disarm by cancel) and check the buffers come back.
        let mut cc = pin!(Completion::new());
        lp.cancel(cc.as_mut(), &c, |_, _, _| CallbackAction::Disarm);
        lp.run(RunMode::UntilDone).unwrap();
        got.borrow_mut().clear();
        assert_eq!(group.available(), 2);
        assert_eq!(lp.active(), 0);
    });
}

/// A loop on backend `b` with a group of 16 buffers of 2 KiB, a non-blocking UDP
/// socket to receive on and one to send from.
fn udp_receiver(b: Backend) -> (Loop, BufferGroup, UdpSocket, UdpSocket) {
    let mut lp = new_loop(b);
    let group = lp.register_buffer_group(16, 2048).unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_nonblocking(true).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    (lp, group, rx, tx)
}

/// UDP: each datagram is one lease holding exactly that datagram.
#[test]
fn recv_datagrams() {
    each_backend(|b| {
        let (mut lp, group, rx, tx) = udp_receiver(b);
        let got: Leases = Rc::default();
        let mut c = pin!(Completion::new());
        recv_multi(&mut lp, c.as_mut(), rx.as_raw_fd(), &group, &got);
        let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1 + i as usize * 50]).collect();
        for m in &msgs {
            tx.send_to(m, rx.local_addr().unwrap()).unwrap();
        }
        let g = got.clone();
        run_until(&mut lp, || g.borrow().len() == 10);
        let v: Vec<Vec<u8>> = got
            .borrow()
            .iter()
            .map(|r| r.as_ref().expect("datagram").to_vec())
            .collect();
        assert_eq!(v, msgs);
        assert_eq!(group.available(), 6);
        got.borrow_mut().clear();
        assert_eq!(group.available(), 16);
        // Disarm through a cancel; the loop goes idle.
        let mut cc = pin!(Completion::new());
        lp.cancel(cc.as_mut(), &c, |_, _, _| CallbackAction::Disarm);
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(got.borrow()[0], Err(ReadError::Canceled)));
        assert_eq!(lp.active(), 0);
    });
}

/// A receive disarmed by its callback stops: later data stays in the socket (or, taken
/// by the kernel before the stop, its buffer returns to the group), the loop goes idle.
#[test]
fn disarm_recv_returns_buffers() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let group = lp.register_buffer_group(4, 64).unwrap();
        let (a, mut peer) = tcp_pair();
        let n = Rc::new(std::cell::Cell::new(0));
        let n2 = n.clone();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: a.as_raw_fd(),
                group: group.clone(),
            },
            move |_, _, r| {
                assert!(matches!(r, OpResult::RecvMulti(Ok(_))), "{r:?}");
                n2.set(n2.get() + 1);
                CallbackAction::Disarm
            },
        );
        peer.write_all(b"first").unwrap();
        let n3 = n.clone();
        run_until(&mut lp, || n3.get() == 1);
        peer.write_all(b"second").unwrap();
        settle(&mut lp, 30);
        assert_eq!(n.get(), 1);
        assert_eq!(lp.active(), 0);
        assert_eq!(group.available(), 4, "{b:?}: a buffer was lost");
        loop_still_works(&mut lp);
    });
}

/// A lease outlives its loop: the memory stays valid (owned by the lease too), and
/// dropping the loop with a multishot receive in flight leaves its completion Dead.
#[test]
fn lease_outlives_loop() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let group = lp.register_buffer_group(4, 64).unwrap();
        let (a, mut peer) = tcp_pair();
        let got: Leases = Rc::default();
        let mut c = Box::pin(Completion::new());
        recv_multi(&mut lp, c.as_mut(), a.as_raw_fd(), &group, &got);
        peer.write_all(b"kept").unwrap();
        let g = got.clone();
        run_until(&mut lp, || !g.borrow().is_empty());
        drop(lp);
        assert_eq!(c.state(), xev::CompletionState::Dead);
        let lease = got.borrow_mut().remove(0).unwrap();
        assert_eq!(&*lease, b"kept");
        drop(lease);
        drop(c);
    });
}

/// Dropping the loop while a multishot accept waits, with connections queued, closes
/// what it received and leaves the completion Dead.
#[test]
fn loop_drop_with_accept_in_flight() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let l = listener();
        let got: Accepted = Rc::default();
        let mut c = Box::pin(Completion::new());
        accept_multi(&mut lp, c.as_mut(), l.as_raw_fd(), &got, 1000);
        let addr = l.local_addr().unwrap();
        let _cl: Vec<_> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
        lp.run(RunMode::NoWait).unwrap();
        drop(lp);
        assert_eq!(c.state(), xev::CompletionState::Dead);
        drop(c);
    });
}

/// UDP: an empty datagram is an empty lease, not the end of the receive (only a stream
/// ends with 0 bytes); the datagrams after it arrive as usual and every buffer goes back.
#[test]
fn an_empty_datagram_is_an_empty_lease() {
    each_backend(|b| {
        let (mut lp, group, rx, tx) = udp_receiver(b);
        let got: Leases = Rc::default();
        let mut c = pin!(Completion::new());
        recv_multi(&mut lp, c.as_mut(), rx.as_raw_fd(), &group, &got);
        for m in [&b"a"[..], b"", b"b"] {
            tx.send_to(m, rx.local_addr().unwrap()).unwrap();
        }
        let g = got.clone();
        run_until(&mut lp, || {
            g.borrow().len() >= 3 || g.borrow().iter().any(|r| r.is_err())
        });
        let v: Vec<Vec<u8>> = got
            .borrow()
            .iter()
            .map(|r| r.as_ref().expect("a datagram, not an error").to_vec())
            .collect();
        assert_eq!(v, [b"a".to_vec(), Vec::new(), b"b".to_vec()], "{b:?}");
        got.borrow_mut().clear();
        assert_eq!(group.available(), 16, "every buffer back ({b:?})");
        // Still receiving: one more, then disarm through a cancel.
        tx.send_to(b"c", rx.local_addr().unwrap()).unwrap();
        let g = got.clone();
        run_until(&mut lp, || !g.borrow().is_empty());
        assert_eq!(got.borrow()[0].as_ref().expect("datagram").to_vec(), b"c");
        let mut cc = pin!(Completion::new());
        lp.cancel(cc.as_mut(), &c, |_, _, _| CallbackAction::Disarm);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(lp.active(), 0);
    });
}
