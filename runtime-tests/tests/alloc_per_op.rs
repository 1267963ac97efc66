//! The operations that need socket-address or message-header scratch space (accept,
//! connect, sendmsg/recvmsg) borrow it from their loop only while they are in flight, and
//! the loop reuses it: after warm-up, accept, recv, send, sendmsg and recvmsg allocate
//! nothing per operation, on the callback API (each op rearmed) and in the async runtime
//! (a fresh future per operation). Also: an async sleep stays at most 64 bytes.

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::pin;
use std::rc::Rc;

use runtime_tests::alloc_count::{allocs, allocs_in, Counting};
use runtime_tests::{each_backend, new_loop};
use xev::{Buffer, CallbackAction, Completion, Op, OpResult, RunMode};

#[global_allocator]
static A: Counting = Counting;

/// Allocations of `f(n)` and of `f(4 * n)`: equal when the operations `f` runs allocate
/// nothing each (what `f` allocates once, e.g. its counters, cancels out).
fn per_op(mut f: impl FnMut(usize), n: usize) -> (u64, u64) {
    f(n); // warm-up: the loop's containers and scratch cells reach their size
    (allocs_in(|| f(n)), allocs_in(|| f(4 * n)))
}

#[test]
fn the_counter_counts() {
    assert_eq!(allocs_in(|| drop(std::hint::black_box(vec![1u8; 10]))), 1);
}

/// `n` accepts on one completion, rearmed from its callback; each accepted fd is closed.
fn accept_n(lp: &mut xev::Loop, c: std::pin::Pin<&mut Completion>, fd: i32, n: usize) {
    let done = Rc::new(Cell::new(0usize));
    let d = done.clone();
    lp.start(c, Op::Accept { fd }, move |_, _, r| {
        let OpResult::Accept(Ok(a)) = r else {
            panic!("accept: {r:?}")
        };
        assert!(a.peer.is_some_and(|p| p.ip().is_loopback()), "peer address");
        d.set(d.get() + 1);
        if d.get() < n {
            CallbackAction::Rearm
        } else {
            CallbackAction::Disarm
        }
    });
    lp.run(RunMode::UntilDone).unwrap();
    assert_eq!(done.get(), n);
}

#[test]
fn callback_accept_allocates_nothing_per_accept() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // Connected (in the backlog) before anything is counted.
        let clients: Vec<StdStream> = (0..60).map(|_| StdStream::connect(addr).unwrap()).collect();
        let mut c = pin!(Completion::new());
        let (few, many) = per_op(
            |n| accept_n(&mut lp, c.as_mut(), listener.as_raw_fd(), n),
            10,
        );
        assert_eq!(
            few, many,
            "{b:?}: 10 accepts made {few} allocations, 40 made {many}"
        );
        drop(clients);
    });
}

/// `rounds` ping-pongs of 64 bytes over a TCP connection with rearmed Send and Recv.
fn tcp_rounds(lp: &mut xev::Loop, a: &StdStream, b: &StdStream, rounds: usize) {
    let mut s = pin!(Completion::new());
    let mut r = pin!(Completion::new());
    let sent = Rc::new(Cell::new(0usize));
    let got = Rc::new(Cell::new(0usize));
    let (s2, g2) = (sent.clone(), got.clone());
    lp.start(
        s.as_mut(),
        Op::Send {
            fd: a.as_raw_fd(),
            buf: Buffer::from(vec![7u8; 64]),
        },
        move |_, _, res| {
            let OpResult::Send(Ok(n)) = res else {
                panic!("send: {res:?}")
            };
            s2.set(s2.get() + n);
            if s2.get() < rounds * 64 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        },
    );
    lp.start(
        r.as_mut(),
        Op::Recv {
            fd: b.as_raw_fd(),
            buf: Buffer::from(vec![0u8; 64]),
        },
        move |_, _, res| {
            let OpResult::Recv(Ok(n)) = res else {
                panic!("recv: {res:?}")
            };
            g2.set(g2.get() + n);
            if g2.get() < rounds * 64 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        },
    );
    lp.run(RunMode::UntilDone).unwrap();
    assert_eq!((sent.get(), got.get()), (rounds * 64, rounds * 64));
}

#[test]
fn callback_tcp_send_recv_allocate_nothing() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let x = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (y, _) = listener.accept().unwrap();
        x.set_nonblocking(true).unwrap();
        y.set_nonblocking(true).unwrap();
        let (few, many) = per_op(|n| tcp_rounds(&mut lp, &x, &y, n), 50);
        assert_eq!(
            few, many,
            "{b:?}: 50 rounds made {few} allocations, 200 made {many}"
        );
    });
}

/// `n` datagrams from `a` to `b` with rearmed SendMsg (to an address) and RecvMsg.
fn udp_rounds(lp: &mut xev::Loop, a: &UdpSocket, b: &UdpSocket, n: usize) {
    let to = b.local_addr().unwrap();
    let from = a.local_addr().unwrap();
    let mut s = pin!(Completion::new());
    let mut r = pin!(Completion::new());
    let sent = Rc::new(Cell::new(0usize));
    let got = Rc::new(Cell::new(0usize));
    let (s2, g2) = (sent.clone(), got.clone());
    lp.start(
        s.as_mut(),
        Op::SendMsg {
            fd: a.as_raw_fd(),
            buf: Buffer::from(vec![3u8; 48]),
            addr: Some(to),
        },
        move |_, _, res| {
            assert!(matches!(res, OpResult::SendMsg(Ok(48))), "sendmsg: {res:?}");
            s2.set(s2.get() + 1);
            if s2.get() < n {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        },
    );
    lp.start(
        r.as_mut(),
        Op::RecvMsg {
            fd: b.as_raw_fd(),
            buf: Buffer::from(vec![0u8; 64]),
        },
        move |_, _, res| {
            let OpResult::RecvMsg(Ok((48, Some(sender)))) = res else {
                panic!("recvmsg: {res:?}")
            };
            assert_eq!(sender, from, "the sender's address comes back");
            g2.set(g2.get() + 1);
            if g2.get() < n {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        },
    );
    lp.run(RunMode::UntilDone).unwrap();
    assert_eq!((sent.get(), got.get()), (n, n));
}

#[test]
fn callback_sendmsg_recvmsg_allocate_nothing() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let x = UdpSocket::bind("127.0.0.1:0").unwrap();
        let y = UdpSocket::bind("127.0.0.1:0").unwrap();
        x.set_nonblocking(true).unwrap();
        y.set_nonblocking(true).unwrap();
        let (few, many) = per_op(|n| udp_rounds(&mut lp, &x, &y, n), 25);
        assert_eq!(
            few, many,
            "{b:?}: 25 rounds made {few} allocations, 100 made {many}"
        );
    });
}

/// A non-blocking IPv4 TCP socket.
fn tcp_socket() -> OwnedFd {
    // SAFETY: plain socket(2); the result is checked and owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A connect borrows scratch too: connecting (a fresh socket each time, which reuses the
/// fd number of the one closed before) allocates nothing per connect.
#[test]
fn callback_connect_allocates_nothing() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut c = pin!(Completion::new());
        let done = Rc::new(Cell::new(0usize));
        // The poll backend's per-fd table grows (amortised) with the highest fd number it
        // has parked an operation on; other tests of this process open fds concurrently,
        // so the number a new socket gets varies. Park one connect on a high number first
        // so that growth happens here, not in the measured runs.
        {
            let low = tcp_socket();
            // SAFETY: F_DUPFD_CLOEXEC on an fd we own makes a new fd we then own.
            let high = unsafe { libc::fcntl(low.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 1024) };
            assert!(high >= 1024, "dup: {}", std::io::Error::last_os_error());
            // SAFETY: `high` is new and owned by nothing else.
            let high = unsafe { OwnedFd::from_raw_fd(high) };
            let d = done.clone();
            lp.start(
                c.as_mut(),
                Op::Connect {
                    fd: high.as_raw_fd(),
                    addr,
                },
                move |_, _, r| {
                    assert!(matches!(r, OpResult::Connect(Ok(()))), "connect: {r:?}");
                    d.set(d.get() + 1);
                    CallbackAction::Disarm
                },
            );
            lp.run(RunMode::UntilDone).unwrap();
            drop(listener.accept().unwrap());
        }
        let mut connects = |n: usize| {
            for _ in 0..n {
                let s = tcp_socket();
                let d = done.clone();
                lp.start(
                    c.as_mut(),
                    Op::Connect {
                        fd: s.as_raw_fd(),
                        addr,
                    },
                    move |_, _, r| {
                        assert!(matches!(r, OpResult::Connect(Ok(()))), "connect: {r:?}");
                        d.set(d.get() + 1);
                        CallbackAction::Disarm
                    },
                );
                lp.run(RunMode::UntilDone).unwrap();
                // Accept and close at once, so the backlog never fills.
                drop(listener.accept().unwrap());
            }
        };
        let (few, many) = per_op(&mut connects, 5);
        assert_eq!(
            few, many,
            "{b:?}: 5 connects made {few} allocations, 20 made {many}"
        );
        assert_eq!(done.get(), 1 + 5 + 5 + 20);
    });
}

#[xev::test(backend = "all")]
async fn rt_udp_send_to_recv_from_allocate_nothing() {
    let x = xev::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let y = xev::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let to: SocketAddr = y.local_addr().unwrap();
    let from = x.local_addr().unwrap();
    let mut out = vec![1u8; 40];
    let mut inb = vec![0u8; 64];
    for i in 0..220 {
        let before = allocs();
        let (r, o) = x.send_to(out, to).await;
        assert_eq!(r.unwrap(), 40);
        let (r, b) = y.recv_from(inb).await;
        assert_eq!(r.unwrap(), (40, from));
        let n = allocs() - before;
        // The first rounds warm up the runtime's op slots and the loop's scratch cells.
        assert!(i < 20 || n == 0, "round {i}: {n} allocations");
        (out, inb) = (o, b);
    }
}

#[xev::test(backend = "all")]
async fn rt_tcp_read_write_allocate_nothing() {
    let listener = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = xev::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (s, _) = listener.accept().await.unwrap();
    let mut out = vec![5u8; 100];
    let mut inb = vec![0u8; 100];
    for i in 0..220 {
        let before = allocs();
        let (r, o) = c.write_all(out).await;
        r.unwrap();
        let (r, b) = s.read_exact(inb).await;
        r.unwrap();
        let n = allocs() - before;
        assert!(i < 20 || n == 0, "round {i}: {n} allocations");
        (out, inb) = (o, b);
    }
}

/// An async accept costs what the accepted stream itself needs (its shared fd), and
/// nothing for the peer address: the same count for the 20th accept as for the 200th.
#[xev::test(backend = "all")]
async fn rt_accept_allocates_only_the_stream() {
    let listener = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients: Vec<StdStream> = (0..100)
        .map(|_| StdStream::connect(addr).unwrap())
        .collect();
    let mut per_accept = Vec::new();
    for _ in 0..100 {
        let before = allocs();
        let (s, peer) = listener.accept().await.unwrap();
        per_accept.push(allocs() - before);
        assert!(peer.ip().is_loopback());
        drop(s);
    }
    let steady = &per_accept[20..];
    assert!(
        steady.iter().all(|&n| n == steady[0]) && steady[0] <= 1,
        "allocations per accept: {per_accept:?}"
    );
    drop(clients);
}

/// Async sleeps cost at most 64 bytes each (the future; its queue entry is the
/// runtime's).
#[test]
fn a_sleep_is_at_most_64_bytes() {
    let s = xev::time::sleep(std::time::Duration::from_millis(1));
    let size = std::mem::size_of_val(&s);
    assert!(size <= 64, "xev::time::sleep is {size} bytes");
}

/// Reads on the `Tcp` watcher, each started again from the previous one's callback with
/// userdata of two words (the connection and a counter: with the descriptor the watcher
/// keeps, too large to be stored inline), `rounds` times.
fn watcher_reads(lp: &mut xev::Loop, conn: &Rc<xev::watcher::tcp::Tcp>, rounds: usize) {
    type Ud = (Rc<xev::watcher::tcp::Tcp>, Rc<Cell<usize>>);
    fn on_read(
        ud: &mut Ud,
        lp: &mut xev::Loop,
        c: std::pin::Pin<&mut Completion>,
        r: Result<usize, xev::ReadError>,
        rounds: usize,
    ) -> CallbackAction {
        assert_eq!(r.expect("read"), 8);
        let (conn, n) = ud.clone();
        n.set(n.get() + 1);
        if n.get() < rounds {
            let mut c = c;
            let buf = c.as_mut().op_mut().and_then(|op| op.buffer_mut()).unwrap();
            let buf = std::mem::replace(buf, Buffer::inline(0));
            conn.clone()
                .read(lp, c, buf, (conn, n), move |ud, lp, c, r| {
                    on_read(ud, lp, c, r, rounds)
                });
        }
        CallbackAction::Disarm
    }
    let mut c = pin!(Completion::new());
    let n = Rc::new(Cell::new(0usize));
    let buf = Buffer::from(vec![0u8; 8]);
    conn.read(
        lp,
        c.as_mut(),
        buf,
        (conn.clone(), n.clone()),
        move |ud, lp, c, r| on_read(ud, lp, c, r, rounds),
    );
    lp.run(RunMode::UntilDone).unwrap();
    assert_eq!(n.get(), rounds);
}

#[test]
fn watcher_reprepared_with_two_word_userdata_allocates_nothing_per_op() {
    use std::io::Write;
    each_backend(|b| {
        let mut lp = new_loop(b);
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        let mut x = StdStream::connect(listener.local_addr().unwrap()).unwrap();
        let (y, _) = listener.accept().unwrap();
        y.set_nonblocking(true).unwrap();
        let conn = Rc::new(xev::watcher::tcp::Tcp::from(OwnedFd::from(y)));
        let mut feed = |n: usize| {
            // One 8-byte message per read; written all at once, read one by one.
            x.write_all(&vec![1u8; 8 * n]).unwrap();
        };
        let mut run = |n: usize| {
            feed(n);
            watcher_reads(&mut lp, &conn, n);
        };
        let (few, many) = per_op(&mut run, 10);
        assert_eq!(
            few, many,
            "{b:?}: 10 reads made {few} allocations, 40 made {many}"
        );
    });
}
