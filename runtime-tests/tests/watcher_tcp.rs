//! The Tcp watcher: accept, connect, echo of 1 MiB through write queues, EOF after the
//! peer's shutdown, refused connections, partial writes with small socket buffers, close.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::{Buffer, CallbackAction, Completion, CompletionState, Error, Loop, ReadError, RunMode};

const LOCAL: &str = "127.0.0.1:0";

/// A listening socket on a free loopback port.
fn listener() -> (Tcp, SocketAddr) {
    let l = Tcp::new(LOCAL.parse().unwrap()).unwrap();
    l.bind(LOCAL.parse().unwrap()).unwrap();
    l.listen(64).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// FNV-1a, continued from `h`: order-sensitive, so it checks order as well as content.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

fn set_buf(fd: RawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads one int that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", io::Error::last_os_error());
}

/// Run until `done()` or two seconds; true if done.
fn run_until(lp: &mut Loop, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        lp.run(RunMode::NoWait).unwrap();
    }
    done()
}

/// Accept one connection on `l` with `c` and echo everything it reads through `q`, until
/// EOF. `echoed` counts the bytes the queue reported written.
fn echo_server(
    lp: &mut Loop,
    c: std::pin::Pin<&mut Completion>,
    l: &Tcp,
    q: &WriteQueue,
    echoed: &Rc<Cell<usize>>,
) {
    let ud = (q.clone(), echoed.clone());
    l.accept(lp, c, ud, |(q, echoed), lp, c, r| {
        let (conn, peer) = r.expect("accept");
        assert!(peer.is_some(), "accept reports the peer's address");
        let conn = Rc::new(conn);
        let ud = (conn.clone(), q.clone(), echoed.clone());
        let buf = Buffer::from(vec![0; 16 * 1024]);
        conn.read(lp, c, buf, ud, |(conn, q, echoed), lp, c, r| match r {
            Ok(n) => {
                let bytes = c.buffer().unwrap().as_slice()[..n].to_vec();
                conn.queue_write(lp, q, Buffer::from(bytes), echoed.clone(), |e, _, _, r| {
                    e.set(e.get() + r.expect("echo write"));
                    CallbackAction::Disarm
                });
                CallbackAction::Rearm
            }
            Err(ReadError::Eof) => CallbackAction::Disarm,
            Err(e) => panic!("server read: {e}"),
        });
        CallbackAction::Disarm
    });
}

#[derive(Default)]
struct Received {
    bytes: usize,
    sum: u64,
    reports: Vec<usize>,
}

#[test]
fn echo_one_mib_through_write_queues_with_checksums() {
    each_backend(|b| {
        const TOTAL: usize = 1 << 20;
        const CHUNK: usize = 64 * 1024;
        let data: Rc<Vec<u8>> = Rc::new((0..TOTAL).map(|i| (i * 131 % 251) as u8).collect());
        let got = Rc::new(RefCell::new(Received {
            sum: FNV0,
            ..Received::default()
        }));
        let echoed = Rc::new(Cell::new(0));
        let (mut a, mut cn) = (pin!(Completion::new()), pin!(Completion::new()));
        let (sq, cq) = (WriteQueue::new(), WriteQueue::new());
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        echo_server(&mut lp, a.as_mut(), &l, &sq, &echoed);

        let client = Rc::new(Tcp::new(addr).unwrap());
        let ud = (client.clone(), cq.clone(), got.clone(), data.clone());
        client.connect(
            &mut lp,
            cn.as_mut(),
            addr,
            ud,
            |(client, cq, got, data), lp, c, r| {
                r.expect("connect");
                for chunk in data.chunks(CHUNK) {
                    let buf = Buffer::from(chunk.to_vec());
                    client.queue_write(lp, cq, buf, got.clone(), |got, _, _, r| {
                        got.borrow_mut().reports.push(r.expect("client write"));
                        CallbackAction::Disarm
                    });
                }
                // Read the echo back on this completion.
                let ud = (client.clone(), got.clone());
                let buf = Buffer::from(vec![0; 32 * 1024]);
                client.read(lp, c, buf, ud, |(client, got), lp, c, r| {
                    let n = r.expect("client read");
                    let mut g = got.borrow_mut();
                    g.bytes += n;
                    g.sum = fnv(g.sum, &c.buffer().unwrap().as_slice()[..n]);
                    if g.bytes < TOTAL {
                        return CallbackAction::Rearm;
                    }
                    // Everything is back: our EOF ends the server's read loop.
                    client.shutdown(lp, c, Shutdown::Write, (), |_, _, _, r| {
                        r.expect("shutdown");
                        CallbackAction::Disarm
                    });
                    CallbackAction::Disarm
                });
                CallbackAction::Disarm
            },
        );
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let g = got.borrow();
        assert_eq!(g.bytes, TOTAL);
        assert_eq!(g.sum, fnv(FNV0, &data), "checksum of the echo");
        assert_eq!(
            g.reports,
            [CHUNK; TOTAL / CHUNK],
            "each queued write in full"
        );
        assert_eq!(echoed.get(), TOTAL);
        assert!(sq.is_empty() && cq.is_empty());
    });
}

#[test]
fn read_gets_eof_after_the_peers_shutdown() {
    each_backend(|b| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let (mut a, mut cn) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        let s = seen.clone();
        l.accept(&mut lp, a.as_mut(), s, |s, lp, c, r| {
            let (conn, _) = r.expect("accept");
            let conn = Rc::new(conn);
            let ud = (conn.clone(), s.clone());
            conn.read(lp, c, Buffer::inline(16), ud, |(_, s), _, _, r| {
                s.borrow_mut().push(format!("{r:?}"));
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        });
        let client = Rc::new(Tcp::new(addr).unwrap());
        let ud = client.clone();
        client.connect(&mut lp, cn.as_mut(), addr, ud, |client, lp, c, r| {
            r.expect("connect");
            client.shutdown(lp, c, Shutdown::Write, (), |_, _, _, r| {
                r.expect("shutdown");
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*seen.borrow(), ["Err(Eof)"]);
    });
}

#[test]
fn last_bytes_and_eof_arriving_together_are_both_seen() {
    // The server's read is parked; the peer then sends and shuts down before the loop
    // looks: the short read of the bytes must not hide the EOF behind them.
    each_backend(|b| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let conn: Rc<RefCell<Option<Tcp>>> = Rc::default();
        let (mut a, mut cn, mut r) = (
            pin!(Completion::new()),
            pin!(Completion::new()),
            pin!(Completion::new()),
        );
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        let slot = conn.clone();
        l.accept(&mut lp, a.as_mut(), slot, |slot, _, _, r| {
            *slot.borrow_mut() = Some(r.expect("accept").0);
            CallbackAction::Disarm
        });
        let client = Tcp::new(addr).unwrap();
        client.connect(&mut lp, cn.as_mut(), addr, (), |_, _, _, r| {
            r.expect("connect");
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let s = seen.clone();
        let slot = conn.borrow();
        let server = slot.as_ref().unwrap();
        server.read(
            &mut lp,
            r.as_mut(),
            Buffer::from(vec![0; 4096]),
            s,
            |s, _, _, r| {
                s.borrow_mut().push(format!("{r:?}"));
                match r {
                    Ok(_) => CallbackAction::Rearm,
                    Err(_) => CallbackAction::Disarm,
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        let fd = client.as_raw_fd();
        // SAFETY: send(2)/shutdown(2) on the connected client socket we own.
        unsafe {
            assert_eq!(libc::send(fd, b"bye".as_ptr().cast(), 3, 0), 3);
            assert_eq!(libc::shutdown(fd, libc::SHUT_WR), 0);
        }
        let done = run_until(&mut lp, || r.state() == CompletionState::Dead);
        assert!(done, "EOF not seen: {:?}", seen.borrow());
        assert_eq!(*seen.borrow(), ["Ok(3)", "Err(Eof)"]);
    });
}

#[test]
fn shutdown_after_a_short_read_completes() {
    // A short read marks the socket "drained" on the poll backend; a shutdown must not
    // wait for more input because of that (regression: it parked until the peer sent).
    each_backend(|b| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let conn: Rc<RefCell<Option<Tcp>>> = Rc::default();
        let (mut a, mut cn) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        let slot = conn.clone();
        l.accept(&mut lp, a.as_mut(), slot, |slot, _, _, r| {
            *slot.borrow_mut() = Some(r.expect("accept").0);
            CallbackAction::Disarm
        });
        let client = Rc::new(Tcp::new(addr).unwrap());
        client.connect(&mut lp, cn.as_mut(), addr, (), |_, _, _, r| {
            r.expect("connect");
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let ud = (client.clone(), seen.clone());
        client.read(
            &mut lp,
            cn.as_mut(),
            Buffer::inline(16),
            ud,
            |(client, s), lp, c, r| {
                s.borrow_mut().push(format!("read {r:?}"));
                client.shutdown(lp, c, Shutdown::Both, s.clone(), |s, _, _, r| {
                    s.borrow_mut().push(format!("shutdown {r:?}"));
                    CallbackAction::Disarm
                });
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap(); // parked
        let server = conn.borrow_mut().take().unwrap();
        // SAFETY: send(2) of 1 byte from a live buffer on a connected socket we own.
        assert_eq!(
            unsafe { libc::send(server.as_raw_fd(), b"x".as_ptr().cast(), 1, 0) },
            1
        );
        let done = run_until(&mut lp, || seen.borrow().len() == 2);
        assert!(done, "shutdown did not complete: {:?}", seen.borrow());
        assert_eq!(*seen.borrow(), ["read Ok(1)", "shutdown Ok(())"]);
    });
}

#[test]
fn connect_to_a_closed_port_is_refused() {
    each_backend(|b| {
        let (l, addr) = listener();
        drop(l);
        let seen: Rc<RefCell<Option<io::ErrorKind>>> = Rc::default();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let client = Tcp::new(addr).unwrap();
        let s = seen.clone();
        client.connect(&mut lp, c.as_mut(), addr, s, |s, _, _, r| {
            match r {
                Err(Error::Io(e)) => *s.borrow_mut() = Some(e.kind()),
                other => panic!("connect to a closed port: {other:?}"),
            }
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*seen.borrow(), Some(io::ErrorKind::ConnectionRefused));
    });
}

#[test]
fn small_send_buffer_partial_write_then_queued_writes_complete() {
    each_backend(|b| {
        const TOTAL: usize = 1 << 20;
        let data: Rc<Vec<u8>> = Rc::new((0..TOTAL).map(|i| (i * 7 % 253) as u8).collect());
        let more: Rc<Vec<u8>> = Rc::new((0..TOTAL).map(|i| (i * 13 % 241) as u8).collect());
        let direct = Rc::new(Cell::new(0usize));
        let reports: Rc<RefCell<Vec<usize>>> = Rc::default();
        let received: Rc<RefCell<Vec<u8>>> = Rc::default();
        let (mut a, mut cn) = (pin!(Completion::new()), pin!(Completion::new()));
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        // Accepted sockets inherit the listener's receive buffer.
        set_buf(l.as_raw_fd(), libc::SO_RCVBUF, 4096);
        let rx = received.clone();
        l.accept(&mut lp, a.as_mut(), rx, |rx, lp, c, r| {
            let (conn, _) = r.expect("accept");
            let conn = Rc::new(conn);
            let ud = (conn.clone(), rx.clone());
            conn.read(
                lp,
                c,
                Buffer::from(vec![0; 64 * 1024]),
                ud,
                |(_, rx), _, c, r| {
                    let n = r.expect("server read");
                    let mut rx = rx.borrow_mut();
                    rx.extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                    if rx.len() < 2 * TOTAL {
                        CallbackAction::Rearm
                    } else {
                        CallbackAction::Disarm
                    }
                },
            );
            CallbackAction::Disarm
        });

        let client = Rc::new(Tcp::new(addr).unwrap());
        set_buf(client.as_raw_fd(), libc::SO_SNDBUF, 4096);
        let ud = (
            client.clone(),
            q.clone(),
            (data.clone(), more.clone()),
            (direct.clone(), reports.clone()),
        );
        client.connect(
            &mut lp,
            cn.as_mut(),
            addr,
            ud,
            |(client, q, bufs, logs), lp, c, r| {
                r.expect("connect");
                let ud = (client.clone(), q.clone(), bufs.clone(), logs.clone());
                // One direct send of 1 MiB: the small buffers make it partial.
                let whole = Buffer::from(bufs.0.to_vec());
                client.write(
                    lp,
                    c,
                    whole,
                    ud,
                    |(client, q, (data, more), (direct, reports)), lp, _, r| {
                        let n = r.expect("direct write");
                        direct.set(n);
                        // The rest of it, and another MiB, through the queue.
                        for part in [&data[n..], &more[..]] {
                            let buf = Buffer::from(part.to_vec());
                            client.queue_write(lp, q, buf, reports.clone(), |reports, _, _, r| {
                                reports.borrow_mut().push(r.expect("queued write"));
                                CallbackAction::Disarm
                            });
                        }
                        CallbackAction::Disarm
                    },
                );
                CallbackAction::Disarm
            },
        );
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let n = direct.get();
        assert!(
            n > 0 && n < TOTAL,
            "a direct 1 MiB write with a 4 KiB SO_SNDBUF wrote {n}"
        );
        assert_eq!(
            *reports.borrow(),
            [TOTAL - n, TOTAL],
            "queued writes report their full length"
        );
        let rx = received.borrow();
        assert_eq!(rx.len(), 2 * TOTAL);
        assert!(
            rx[..TOTAL] == data[..] && rx[TOTAL..] == more[..],
            "every byte, in order"
        );
    });
}

#[test]
fn rearmed_accept_reports_each_peer() {
    each_backend(|b| {
        let peers: Rc<RefCell<Vec<SocketAddr>>> = Rc::default();
        let conns: Rc<RefCell<Vec<Tcp>>> = Rc::default();
        let mut a = pin!(Completion::new());
        let mut cs: Vec<_> = (0..3).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST);
        let ud = (peers.clone(), conns.clone());
        l.accept(&mut lp, a.as_mut(), ud, |(peers, conns), _, _, r| {
            let (conn, peer) = r.expect("accept");
            assert_eq!(conn.peer_addr().ok(), peer);
            peers.borrow_mut().push(peer.unwrap());
            conns.borrow_mut().push(conn);
            if peers.borrow().len() < 3 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        let clients: Vec<Tcp> = (0..3).map(|_| Tcp::new(addr).unwrap()).collect();
        for (client, c) in clients.iter().zip(cs.iter_mut()) {
            client.set_nodelay(true).unwrap();
            assert!(client.nodelay().unwrap());
            client.connect(&mut lp, c.as_mut(), addr, (), |_, _, _, r| {
                r.expect("connect");
                CallbackAction::Disarm
            });
        }
        lp.run(RunMode::UntilDone).unwrap();
        let mut want: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut got = peers.borrow().clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    });
}

#[test]
fn close_cancels_the_pending_read() {
    each_backend(|b| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let (mut r, mut x) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        let client = Tcp::new(addr).unwrap();
        client.connect(&mut lp, x.as_mut(), addr, (), |_, _, _, r| {
            r.expect("connect");
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let s = seen.clone();
        client.read(&mut lp, r.as_mut(), Buffer::inline(8), s, |s, _, _, r| {
            s.borrow_mut().push(format!("read {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        let s = seen.clone();
        client.close(&mut lp, x.as_mut(), s, |s, _, _, r| {
            s.borrow_mut().push(format!("close {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = seen.borrow().clone();
        got.sort();
        assert_eq!(got, ["close Ok(())", "read Err(Canceled)"]);
        drop(l);
    });
}

/// Issue #9 item 7: an accept started in the same tick as the cancel of an earlier accept
/// on the same listener must still see a client that connects right then (io_uring used
/// to leave it stalled, the connection waiting in the backlog for another client).
#[test]
fn accept_after_a_cancelled_accept_sees_the_next_client() {
    each_backend(|b| {
        for order in ["connect-before-run", "connect-after-submit"] {
            let got: Rc<RefCell<Vec<String>>> = Rc::default();
            let (mut a, mut x, mut n) = (
                pin!(Completion::new()),
                pin!(Completion::new()),
                pin!(Completion::new()),
            );
            let mut lp = new_loop(b);
            let (l, addr) = listener();
            let g = got.clone();
            l.accept(&mut lp, a.as_mut(), g, |g, _, _, r| {
                g.borrow_mut().push(format!("A {:?}", r.map(|_| ())));
                CallbackAction::Disarm
            });
            // A is in the kernel (or parked) now.
            lp.run(RunMode::NoWait).unwrap();
            let g = got.clone();
            lp.cancel(x.as_mut(), &a, move |_, _, r| {
                g.borrow_mut().push(format!("cancel {r:?}"));
                CallbackAction::Disarm
            });
            let accepted: Rc<RefCell<Option<Tcp>>> = Rc::default();
            let acc = accepted.clone();
            l.accept(&mut lp, n.as_mut(), acc, |acc, _, _, r| {
                *acc.borrow_mut() = Some(r.expect("accept B").0);
                CallbackAction::Disarm
            });
            let client = if order == "connect-before-run" {
                let c = std::net::TcpStream::connect(addr).unwrap();
                lp.run(RunMode::NoWait).unwrap();
                c
            } else {
                lp.run(RunMode::NoWait).unwrap();
                std::net::TcpStream::connect(addr).unwrap()
            };
            let deadline = Instant::now() + Duration::from_secs(1);
            while accepted.borrow().is_none() && Instant::now() < deadline {
                lp.run(RunMode::NoWait).unwrap();
            }
            assert!(
                accepted.borrow().is_some(),
                "{order}: accept B stalled ({:?})",
                got.borrow()
            );
            let conn = accepted.borrow_mut().take().unwrap();
            assert_eq!(conn.peer_addr().unwrap(), client.local_addr().unwrap());
            lp.run(RunMode::UntilDone).unwrap();
            assert!(
                got.borrow().contains(&"A Err(Canceled)".to_string()),
                "{:?}",
                got.borrow()
            );
        }
    });
}

/// The async form of the same: `timeout(1 ms, listener.accept())` gives up, the next
/// `listener.accept()` is submitted, and a client connects before the loop waits again:
/// the accept must get it.
#[xev::test(backend = "all")]
async fn async_accept_after_a_timed_out_accept_sees_the_next_client() {
    let l = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    for round in 0..5 {
        let early = xev::time::timeout(Duration::from_millis(1), l.accept()).await;
        assert!(early.is_err(), "round {round}: nobody connected yet");
        let mut next = std::pin::pin!(xev::time::timeout(Duration::from_secs(1), l.accept()));
        // Poll it once (the accept is queued), let the loop submit it, then connect.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(next.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        xev::rt::yield_now().await;
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (conn, peer) = next
            .await
            .unwrap_or_else(|_| panic!("round {round}: accept stalled"))
            .expect("accept");
        assert_eq!(peer, client.local_addr().unwrap());
        drop(conn);
    }
}

/// Accept once on `l` with `c`, logging `"{i} {result}"` (true: a peer address came).
fn accept_logged(lp: &mut Loop, l: &Tcp, c: std::pin::Pin<&mut Completion>, i: usize, log: &Log) {
    l.accept(lp, c, log.clone(), move |g, _, _, r| {
        g.borrow_mut()
            .push(format!("{i} {:?}", r.map(|(_, p)| p.is_some())));
        CallbackAction::Disarm
    });
}

type Log = Rc<RefCell<Vec<String>>>;

/// Several accepts pending on one listener (on io_uring all but one wait their turn in
/// the loop): every client is accepted once, a waiting accept can be cancelled, closing
/// the listener cancels every pending accept, and dropping the loop drops them.
#[test]
fn several_pending_accepts_on_one_listener() {
    each_backend(|b| {
        let log: Log = Rc::default();
        let mut cs: Vec<_> = (0..4).map(|_| Box::pin(Completion::new())).collect();
        let (mut x, mut y) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(b);
        let (l, addr) = listener();
        for (i, c) in cs.iter_mut().enumerate() {
            accept_logged(&mut lp, &l, c.as_mut(), i, &log);
        }
        lp.run(RunMode::NoWait).unwrap();
        // Cancel the last one (waiting its turn on io_uring).
        let g = log.clone();
        lp.cancel(x.as_mut(), &cs[3], move |_, _, r| {
            g.borrow_mut().push(format!("cancel {r:?}"));
            CallbackAction::Disarm
        });
        let clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        assert!(
            run_until(&mut lp, || log.borrow().len() == 4),
            "{:?}",
            log.borrow()
        );
        let sorted = |log: &Log| {
            let mut v = log.borrow().clone();
            v.sort();
            v
        };
        assert_eq!(
            sorted(&log),
            [
                "0 Ok(true)",
                "1 Ok(true)",
                "3 Err(Canceled)",
                "cancel Cancel(Ok(()))"
            ]
        );

        // Accepts 2 and 0 pending; closing the listener cancels both.
        log.borrow_mut().clear();
        accept_logged(&mut lp, &l, cs[0].as_mut(), 0, &log);
        lp.run(RunMode::NoWait).unwrap();
        let g = log.clone();
        l.close(&mut lp, y.as_mut(), g, |g, _, _, r| {
            g.borrow_mut().push(format!("close {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            sorted(&log),
            ["0 Err(Canceled)", "2 Err(Canceled)", "close Ok(())"]
        );
        drop(clients);

        // Pending accepts, some waiting their turn, when the loop is dropped: no callback.
        log.borrow_mut().clear();
        let (l, _) = listener();
        for (i, c) in cs.iter_mut().enumerate() {
            accept_logged(&mut lp, &l, c.as_mut(), i, &log);
        }
        lp.run(RunMode::NoWait).unwrap();
        drop(lp);
        assert!(cs.iter().all(|c| c.state() == CompletionState::Dead));
        assert!(log.borrow().is_empty(), "{:?}", log.borrow());
    });
}
