//! Sockets through the loop: TCP accept/connect/send/recv/read/write/shutdown, rearm,
//! EOF, zero-length transfers, refused connections, UDP messages, poll and close.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{dup_high, each_backend, new_loop, only, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// A new non-blocking, close-on-exec IPv4 TCP socket, not yet connected.
fn tcp_socket() -> TcpStream {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
    // SAFETY: `fd` is a new socket owned by nobody else.
    TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Accept + connect through the loop; returns (server side, client side).
fn connect_pair(lp: &mut Loop) -> (TcpStream, TcpStream) {
    let l = listener();
    let client = tcp_socket();
    let acc = results();
    let con = results();
    let mut a = pin!(Completion::new());
    let mut c = pin!(Completion::new());
    lp.start(a.as_mut(), Op::Accept { fd: l.as_raw_fd() }, record(&acc));
    lp.start(
        c.as_mut(),
        Op::Connect {
            fd: client.as_raw_fd(),
            addr: l.local_addr().unwrap(),
        },
        record(&con),
    );
    lp.run(RunMode::UntilDone).unwrap();
    assert!(matches!(only(&con), OpResult::Connect(Ok(()))));
    let server = match only(&acc) {
        OpResult::Accept(Ok(acc)) => {
            assert_eq!(acc.peer, Some(client.local_addr().unwrap()), "peer address");
            TcpStream::from(acc.fd)
        }
        other => panic!("accept gave {other:?}"),
    };
    assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());
    (server, client)
}

fn is_nonblocking(fd: RawFd) -> bool {
    // SAFETY: F_GETFL on an open fd.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    fl >= 0 && fl & libc::O_NONBLOCK != 0
}

fn is_cloexec(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on an open fd.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    fl >= 0 && fl & libc::FD_CLOEXEC != 0
}

#[test]
fn tcp_accept_connect_and_exchange() {
    each_backend(|b| {
        let sent = results();
        let got = results();
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, client) = connect_pair(&mut lp);
        assert!(
            is_nonblocking(server.as_raw_fd()),
            "accepted fd is non-blocking"
        );
        assert!(
            is_cloexec(server.as_raw_fd()),
            "accepted fd is close-on-exec"
        );

        // Send / Recv, client -> server.
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(32),
            },
            record(&got),
        );
        lp.start(
            s.as_mut(),
            Op::Send {
                fd: client.as_raw_fd(),
                buf: Buffer::copy_from(b"ping over send"),
            },
            record(&sent),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::Send(Ok(14))));
        assert!(matches!(only(&got), OpResult::Recv(Ok(14))));
        assert_eq!(&r.buffer().unwrap().as_slice()[..14], b"ping over send");

        // Write / Read, server -> client, reusing the completions.
        lp.start(
            r.as_mut(),
            Op::Read {
                fd: client.as_raw_fd(),
                buf: Buffer::inline(32),
            },
            record(&got),
        );
        lp.run(RunMode::NoWait).unwrap();
        lp.start(
            s.as_mut(),
            Op::Write {
                fd: server.as_raw_fd(),
                buf: Buffer::copy_from(b"pong over write"),
            },
            record(&sent),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::Write(Ok(15))));
        assert!(matches!(only(&got), OpResult::Read(Ok(15))));
        assert_eq!(&r.buffer().unwrap().as_slice()[..15], b"pong over write");

        // The buffer comes back to the caller.
        let op = r.as_mut().take_op().unwrap();
        assert!(matches!(op, Op::Read { .. }));
        assert!(matches!(r.op(), Some(Op::Noop)));
    });
}

#[test]
fn large_transfer_with_partial_sends() {
    // 1 MiB through a socket: sends may be partial, the receiver rearms its recv.
    each_backend(|b| {
        const TOTAL: usize = 1 << 20;
        let data: Vec<u8> = (0..TOTAL).map(|i| (i * 7 % 251) as u8).collect();
        let received = Rc::new(RefCell::new(Vec::with_capacity(TOTAL)));
        let sent_total = Rc::new(RefCell::new(0usize));
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, client) = connect_pair(&mut lp);

        let rx = received.clone();
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::from(vec![0u8; 16 * 1024]),
            },
            move |_, c, res| {
                let OpResult::Recv(Ok(n)) = res else {
                    panic!("recv: {res:?}")
                };
                let mut rx = rx.borrow_mut();
                rx.extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                if rx.len() < TOTAL {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        fn send_rest(
            data: Rc<Vec<u8>>,
            from: usize,
            total: Rc<RefCell<usize>>,
            fd: RawFd,
        ) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
            move |lp, c, res| {
                let OpResult::Send(Ok(n)) = res else {
                    panic!("send: {res:?}")
                };
                assert!(n > 0);
                *total.borrow_mut() += n;
                let next = from + n;
                if next < data.len() {
                    let end = (next + 256 * 1024).min(data.len());
                    let op = Op::Send {
                        fd,
                        buf: Buffer::from(data[next..end].to_vec()),
                    };
                    let cb = send_rest(data.clone(), next, total.clone(), fd);
                    lp.start(c, op, cb);
                }
                CallbackAction::Disarm
            }
        }
        let data = Rc::new(data);
        let first = Op::Send {
            fd: client.as_raw_fd(),
            buf: Buffer::from(data[..256 * 1024].to_vec()),
        };
        let cb = send_rest(data.clone(), 0, sent_total.clone(), client.as_raw_fd());
        lp.start(s.as_mut(), first, cb);
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(*sent_total.borrow(), TOTAL);
        assert!(
            *received.borrow() == *data,
            "received bytes differ from sent bytes"
        );
    });
}

#[test]
fn rearmed_recv_receives_every_message() {
    each_backend(|b| {
        let msgs: Rc<RefCell<Vec<Vec<u8>>>> = Rc::new(RefCell::new(Vec::new()));
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, client) = connect_pair(&mut lp);
        let client = Rc::new(client);
        let script = [&b"one"[..], b"two", b"three"];
        (&*client).write_all(script[0]).unwrap();
        let (m, cl) = (msgs.clone(), client.clone());
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, c, res| {
                let OpResult::Recv(Ok(n)) = res else {
                    panic!("{res:?}")
                };
                let mut m = m.borrow_mut();
                m.push(c.buffer().unwrap().as_slice()[..n].to_vec());
                // TCP is a stream: send the next message only after this one arrived.
                if let Some(next) = script.get(m.len()) {
                    (&*cl).write_all(next).unwrap();
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            *msgs.borrow(),
            [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!(r.state(), CompletionState::Dead);
    });
}

#[test]
fn rearmed_recv_on_datagrams_sent_up_front() {
    each_backend(|b| {
        let (x, y) = UnixDatagram::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        for m in [&b"a"[..], b"bb", b"ccc"] {
            y.send(m).unwrap();
        }
        let msgs: Rc<RefCell<Vec<Vec<u8>>>> = Rc::new(RefCell::new(Vec::new()));
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let m = msgs.clone();
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: x.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, c, res| {
                let OpResult::Recv(Ok(n)) = res else {
                    panic!("{res:?}")
                };
                m.borrow_mut()
                    .push(c.buffer().unwrap().as_slice()[..n].to_vec());
                if m.borrow().len() < 3 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            *msgs.borrow(),
            [b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]
        );
    });
}

#[test]
fn eof_after_peer_shutdown_through_the_loop() {
    each_backend(|b| {
        let sd = results();
        let got = results();
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, client) = connect_pair(&mut lp);
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        lp.run(RunMode::NoWait).unwrap();
        lp.start(
            s.as_mut(),
            Op::Shutdown {
                fd: client.as_raw_fd(),
                how: Shutdown::Write,
            },
            record(&sd),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sd), OpResult::Shutdown(Ok(()))));
        assert!(matches!(only(&got), OpResult::Recv(Err(ReadError::Eof))));
        // EOF is sticky, for Read too.
        lp.start(
            r.as_mut(),
            Op::Read {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&got), OpResult::Read(Err(ReadError::Eof))));
        // The other direction still works after a half-close.
        lp.start(
            s.as_mut(),
            Op::Send {
                fd: server.as_raw_fd(),
                buf: Buffer::copy_from(b"late"),
            },
            record(&sd),
        );
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: client.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sd), OpResult::Send(Ok(4))));
        assert!(matches!(only(&got), OpResult::Recv(Ok(4))));
    });
}

#[test]
fn zero_length_read_and_recv_return_ok_zero() {
    each_backend(|b| {
        let got = results();
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, client) = connect_pair(&mut lp);
        (&client).write_all(b"data").unwrap();
        std::thread::sleep(Duration::from_millis(5));
        for op in [
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(0),
            },
            Op::Read {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(0),
            },
            Op::Read {
                fd: server.as_raw_fd(),
                buf: Buffer::from(Vec::new()),
            },
        ] {
            lp.start(r.as_mut(), op, record(&got));
            lp.run(RunMode::UntilDone).unwrap();
            match only(&got) {
                OpResult::Recv(Ok(0)) | OpResult::Read(Ok(0)) => {}
                other => panic!("zero-length op gave {other:?}"),
            }
        }
        // Nothing was consumed.
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: server.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&got), OpResult::Recv(Ok(4))));
        assert_eq!(&r.buffer().unwrap().as_slice()[..4], b"data");
        // A zero-length send is Ok(0) too.
        lp.start(
            r.as_mut(),
            Op::Send {
                fd: client.as_raw_fd(),
                buf: Buffer::inline(0),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&got), OpResult::Send(Ok(0))));
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    each_backend(|b| {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let con = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sock = tcp_socket();
        lp.start(
            c.as_mut(),
            Op::Connect {
                fd: sock.as_raw_fd(),
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            },
            record(&con),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&con) {
            OpResult::Connect(Err(Error::Io(e))) => {
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}")
            }
            other => panic!("{other:?}"),
        }
        // The loop keeps working.
        lp.timer(c.as_mut(), 1, record(&con));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(
            only(&con),
            OpResult::Timer(TimerTrigger::Expiration)
        ));
    });
}

#[test]
fn addr_in_use_and_ops_on_an_unbound_socket_report_errors() {
    each_backend(|b| {
        let l = listener();
        let err = TcpListener::bind(l.local_addr().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        // The same through raw sockets: bind fails, and loop ops on the socket that failed
        // to bind (so is not listening or connected) come back as errors.
        let sock = tcp_socket();
        let addr = match l.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(addr.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: bind(2) with a valid sockaddr_in and its size.
        let r = unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        assert_eq!(r, -1);
        assert_eq!(io::Error::last_os_error().kind(), io::ErrorKind::AddrInUse);

        let res = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            c.as_mut(),
            Op::Accept {
                fd: sock.as_raw_fd(),
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Accept(Err(Error::Io(e))) => {
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}")
            }
            other => panic!("accept on a non-listening socket gave {other:?}"),
        }
        lp.start(
            c.as_mut(),
            Op::Send {
                fd: sock.as_raw_fd(),
                buf: Buffer::copy_from(b"x"),
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Send(Err(Error::Io(e))) => {
                assert_eq!(e.raw_os_error(), Some(libc::EPIPE), "{e}")
            }
            other => panic!("send on an unconnected socket gave {other:?}"),
        }
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: sock.as_raw_fd(),
                buf: Buffer::inline(4),
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Recv(Err(ReadError::Io(e))) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}")
            }
            other => panic!("recv on an unconnected socket gave {other:?}"),
        }
    });
}

#[test]
fn send_to_a_closed_peer_is_an_error_not_a_signal() {
    each_backend(|b| {
        let (x, y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        drop(y);
        let res = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            c.as_mut(),
            Op::Send {
                fd: x.as_raw_fd(),
                buf: Buffer::copy_from(b"nobody"),
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Send(Err(Error::Io(e))) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn udp_sendmsg_to_address_and_recvmsg_reports_sender() {
    each_backend(|b| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let z = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        z.set_nonblocking(true).unwrap();
        let sent = results();
        let got = results();
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            r.as_mut(),
            Op::RecvMsg {
                fd: z.as_raw_fd(),
                buf: Buffer::inline(32),
            },
            record(&got),
        );
        lp.run(RunMode::NoWait).unwrap();
        assert!(got.borrow().is_empty());
        lp.start(
            s.as_mut(),
            Op::SendMsg {
                fd: a.as_raw_fd(),
                buf: Buffer::copy_from(b"datagram"),
                addr: Some(z.local_addr().unwrap()),
            },
            record(&sent),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::SendMsg(Ok(8))));
        match only(&got) {
            OpResult::RecvMsg(Ok((n, from))) => {
                assert_eq!(n, 8);
                assert_eq!(from, Some(a.local_addr().unwrap()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(&r.buffer().unwrap().as_slice()[..8], b"datagram");

        // A connected socket with no address, and a zero-length datagram.
        a.connect(z.local_addr().unwrap()).unwrap();
        lp.start(
            s.as_mut(),
            Op::SendMsg {
                fd: a.as_raw_fd(),
                buf: Buffer::inline(0),
                addr: None,
            },
            record(&sent),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::SendMsg(Ok(0))));
        lp.start(
            r.as_mut(),
            Op::RecvMsg {
                fd: z.as_raw_fd(),
                buf: Buffer::inline(32),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&got) {
            OpResult::RecvMsg(Ok((0, from))) => {
                assert_eq!(from, Some(a.local_addr().unwrap()))
            }
            other => panic!("zero-length datagram gave {other:?}"),
        }
    });
}

#[test]
fn udp_over_ipv6_reports_sender() {
    each_backend(|b| {
        let Ok(a) = UdpSocket::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback; skipping");
            return;
        };
        let z = UdpSocket::bind("[::1]:0").unwrap();
        a.set_nonblocking(true).unwrap();
        z.set_nonblocking(true).unwrap();
        let sent = results();
        let got = results();
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            s.as_mut(),
            Op::SendMsg {
                fd: a.as_raw_fd(),
                buf: Buffer::copy_from(b"six"),
                addr: Some(z.local_addr().unwrap()),
            },
            record(&sent),
        );
        lp.start(
            r.as_mut(),
            Op::RecvMsg {
                fd: z.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::SendMsg(Ok(3))));
        match only(&got) {
            OpResult::RecvMsg(Ok((3, from))) => assert_eq!(from, Some(a.local_addr().unwrap())),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn poll_in_fires_when_data_arrives_and_out_on_writable() {
    each_backend(|b| {
        let (x, y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        let pin_res = results();
        let pout_res = results();
        let mut pi = pin!(Completion::new());
        let mut po = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            po.as_mut(),
            Op::Poll {
                fd: x.as_raw_fd(),
                events: PollEvents::OUT,
            },
            record(&pout_res),
        );
        lp.start(
            pi.as_mut(),
            Op::Poll {
                fd: x.as_raw_fd(),
                events: PollEvents::IN,
            },
            record(&pin_res),
        );
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        match only(&pout_res) {
            OpResult::Poll(Ok(ev)) => {
                assert!(ev.contains(PollEvents::OUT), "{ev:?}");
                assert!(!ev.contains(PollEvents::IN), "{ev:?}");
            }
            other => panic!("{other:?}"),
        }
        assert!(pin_res.borrow().is_empty(), "POLLIN fired without data");
        assert_eq!(pi.state(), CompletionState::Active);
        (&y).write_all(b"!").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        match only(&pin_res) {
            OpResult::Poll(Ok(ev)) => assert!(ev.contains(PollEvents::IN), "{ev:?}"),
            other => panic!("{other:?}"),
        }
        // Poll consumed nothing.
        let mut buf = [0u8; 4];
        assert_eq!((&x).read(&mut buf).unwrap(), 1);

        // A rearmed poll fires again while the condition holds; HUP is reported.
        drop(y);
        let l = pin_res.clone();
        lp.start(
            pi.as_mut(),
            Op::Poll {
                fd: x.as_raw_fd(),
                events: PollEvents::IN,
            },
            move |_, _, r| {
                l.borrow_mut().push(r);
                if l.borrow().len() < 2 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        let v = pin_res.borrow();
        assert_eq!(v.len(), 2);
        for r in v.iter() {
            match r {
                OpResult::Poll(Ok(ev)) => {
                    assert!(ev.intersects(PollEvents::IN | PollEvents::HUP), "{ev:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    });
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the fd table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn close_op_closes_and_rearm_gives_ebadf() {
    each_backend(|b| {
        let (x, _y) = UnixStream::pair().unwrap();
        let base = if b == Backend::IoUring { 4000 } else { 4100 };
        let high = dup_high(x.as_raw_fd(), base);
        let raw = high.as_raw_fd();
        assert!(fd_is_open(raw));
        let res = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let l = res.clone();
        lp.start(c.as_mut(), Op::close(high), move |_, _, r| {
            l.borrow_mut().push(r);
            if l.borrow().len() == 1 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(!fd_is_open(raw), "fd {raw} is still open after Close");
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EBADF));
        let v = res.borrow();
        assert_eq!(v.len(), 2);
        assert!(matches!(v[0], OpResult::Close(Ok(()))), "{:?}", v[0]);
        match &v[1] {
            OpResult::Close(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("rearmed close gave {other:?}"),
        }
        // The original socket is unaffected.
        assert!(fd_is_open(x.as_raw_fd()));
    });
}

#[test]
fn close_op_on_a_socket_with_poll_registration() {
    // After a poll on the fd (which registers it with epoll), closing it through the loop
    // and reusing the number for a new socket must work.
    each_backend(|b| {
        let (x, y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        let res = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: x.as_raw_fd(),
                buf: Buffer::inline(4),
            },
            record(&res),
        );
        lp.run(RunMode::NoWait).unwrap();
        (&y).write_all(b"1").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Recv(Ok(1))));
        let raw = x.as_raw_fd();
        lp.start(c.as_mut(), Op::close(x), record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Close(Ok(()))));
        // A new pair likely reuses the number; recv on it must work on the same loop.
        let (x2, y2) = UnixStream::pair().unwrap();
        x2.set_nonblocking(true).unwrap();
        if x2.as_raw_fd() != raw && y2.as_raw_fd() != raw {
            eprintln!("fd {raw} was not reused (another test took it); still checking recv");
        }
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: x2.as_raw_fd(),
                buf: Buffer::inline(4),
            },
            record(&res),
        );
        lp.run(RunMode::NoWait).unwrap();
        (&y2).write_all(b"22").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Recv(Ok(2))));
    });
}

#[test]
fn fd_closed_outside_the_loop_and_reused_still_works() {
    // The poll backend remembers registrations by fd number; a number closed behind its
    // back and handed to a new socket must not confuse it.
    each_backend(|b| {
        let res = results();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        for round in 0..3 {
            let (x, y) = UnixStream::pair().unwrap();
            x.set_nonblocking(true).unwrap();
            lp.start(
                c.as_mut(),
                Op::Recv {
                    fd: x.as_raw_fd(),
                    buf: Buffer::inline(4),
                },
                record(&res),
            );
            lp.run(RunMode::NoWait).unwrap();
            assert!(res.borrow().is_empty(), "round {round}");
            (&y).write_all(b"abc").unwrap();
            lp.run(RunMode::UntilDone).unwrap();
            assert!(matches!(only(&res), OpResult::Recv(Ok(3))), "round {round}");
            // x and y are closed here by std, not through the loop.
        }
    });
}

#[test]
fn rearmed_accept_accepts_every_connection() {
    each_backend(|b| {
        let l = listener();
        let addr = l.local_addr().unwrap();
        let peers: Rc<RefCell<Vec<SocketAddr>>> = Rc::new(RefCell::new(Vec::new()));
        let accepted: Rc<RefCell<Vec<TcpStream>>> = Rc::new(RefCell::new(Vec::new()));
        let mut a = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (p, acc) = (peers.clone(), accepted.clone());
        lp.start(
            a.as_mut(),
            Op::Accept { fd: l.as_raw_fd() },
            move |_, _, r| {
                let OpResult::Accept(Ok(x)) = r else {
                    panic!("{r:?}")
                };
                p.borrow_mut().push(x.peer.unwrap());
                acc.borrow_mut().push(TcpStream::from(x.fd));
                if p.borrow().len() < 3 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        let clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        lp.run(RunMode::UntilDone).unwrap();
        let mut want: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut got = peers.borrow().clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        // Every accepted socket is a live, distinct connection.
        for s in accepted.borrow().iter() {
            assert!(want.contains(&s.peer_addr().unwrap()));
        }
    });
}

#[test]
fn tcp_over_ipv6() {
    each_backend(|b| {
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback; skipping");
            return;
        };
        l.set_nonblocking(true).unwrap();
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_INET6,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        assert!(fd >= 0);
        // SAFETY: new socket we own.
        let client = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let acc = results();
        let con = results();
        let mut a = pin!(Completion::new());
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(a.as_mut(), Op::Accept { fd: l.as_raw_fd() }, record(&acc));
        lp.start(
            c.as_mut(),
            Op::Connect {
                fd: client.as_raw_fd(),
                addr: l.local_addr().unwrap(),
            },
            record(&con),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&con), OpResult::Connect(Ok(()))));
        match only(&acc) {
            OpResult::Accept(Ok(x)) => {
                assert!(matches!(x.peer, Some(SocketAddr::V6(_))));
                assert_eq!(x.peer, Some(client.local_addr().unwrap()));
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn pending_send_and_recv_on_one_socket() {
    // One fd with a waiter in each direction: each completes when its own side is ready.
    each_backend(|b| {
        let (x, mut y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        y.set_nonblocking(true).unwrap();
        let chunk = [1u8; 4096];
        let mut filled = 0;
        while let Ok(n) = (&x).write(&chunk) {
            filled += n;
        }
        let sent = results();
        let got = results();
        let mut s = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.start(
            s.as_mut(),
            Op::Send {
                fd: x.as_raw_fd(),
                buf: Buffer::copy_from(b"tail"),
            },
            record(&sent),
        );
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: x.as_raw_fd(),
                buf: Buffer::inline(8),
            },
            record(&got),
        );
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(sent.borrow().is_empty() && got.borrow().is_empty());
        // Readable side first: the send must stay pending.
        y.write_all(b"hey").unwrap();
        lp.run(RunMode::Once).unwrap();
        assert!(matches!(only(&got), OpResult::Recv(Ok(3))));
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(sent.borrow().is_empty(), "send completed on a full socket");
        // Now drain the peer: the send goes through.
        let mut buf = vec![0u8; 1 << 16];
        let mut drained = 0;
        while drained < filled {
            match y.read(&mut buf) {
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&sent), OpResult::Send(Ok(4))));
    });
}

#[test]
fn echo_by_reusing_the_completion_in_its_callback() {
    // recv -> the same completion sends the bytes back -> recv again, three times.
    each_backend(|b| {
        fn on_recv(
            fd: RawFd,
            rounds: Rc<RefCell<u32>>,
        ) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
            move |lp, mut c, r| {
                let OpResult::Recv(Ok(n)) = r else {
                    panic!("{r:?}")
                };
                let data = c.as_mut().take_op().unwrap().buffer().unwrap().as_slice()[..n].to_vec();
                let rounds = rounds.clone();
                let op = Op::Send {
                    fd,
                    buf: Buffer::from(data),
                };
                lp.start(c, op, move |lp, c, r| {
                    assert!(matches!(r, OpResult::Send(Ok(_))), "{r:?}");
                    *rounds.borrow_mut() += 1;
                    if *rounds.borrow() < 3 {
                        let op = Op::Recv {
                            fd,
                            buf: Buffer::inline(16),
                        };
                        lp.start(c, op, on_recv(fd, rounds.clone()));
                    }
                    CallbackAction::Disarm
                });
                CallbackAction::Disarm
            }
        }
        let rounds = Rc::new(RefCell::new(0));
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (server, mut client) = connect_pair(&mut lp);
        let fd = server.as_raw_fd();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd,
                buf: Buffer::inline(16),
            },
            on_recv(fd, rounds.clone()),
        );
        client.set_nonblocking(false).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for word in [&b"alpha"[..], b"beta", b"gamma"] {
            client.write_all(word).unwrap();
            // Run until the echo is back.
            let mut back = vec![0u8; word.len()];
            let before = *rounds.borrow();
            while *rounds.borrow() == before {
                lp.run(RunMode::Once).unwrap();
            }
            client.read_exact(&mut back).unwrap();
            assert_eq!(back, word);
        }
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*rounds.borrow(), 3);
        assert_eq!(c.state(), CompletionState::Dead);
    });
}

#[test]
fn rearmed_recvmsg_reports_each_sender() {
    each_backend(|b| {
        let z = UdpSocket::bind("127.0.0.1:0").unwrap();
        z.set_nonblocking(true).unwrap();
        let s1 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let s2 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = z.local_addr().unwrap();
        s1.send_to(b"from-1", to).unwrap();
        s2.send_to(b"from-2!", to).unwrap();
        s1.send_to(b"1 again", to).unwrap();
        type Log = Rc<RefCell<Vec<(Vec<u8>, Option<SocketAddr>)>>>;
        let log: Log = Rc::new(RefCell::new(Vec::new()));
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        let l = log.clone();
        lp.start(
            r.as_mut(),
            Op::RecvMsg {
                fd: z.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, c, res| {
                let OpResult::RecvMsg(Ok((n, from))) = res else {
                    panic!("{res:?}")
                };
                l.borrow_mut()
                    .push((c.buffer().unwrap().as_slice()[..n].to_vec(), from));
                if l.borrow().len() < 3 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        let a1 = Some(s1.local_addr().unwrap());
        let a2 = Some(s2.local_addr().unwrap());
        assert_eq!(
            *log.borrow(),
            [
                (b"from-1".to_vec(), a1),
                (b"from-2!".to_vec(), a2),
                (b"1 again".to_vec(), a1)
            ]
        );
    });
}
