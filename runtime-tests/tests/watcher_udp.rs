//! The Udp watcher: ping-pong with sender addresses, cancelling a read, connected
//! send/recv, zero-length datagrams, close.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::pin;
use std::rc::Rc;

use runtime_tests::{each_backend, new_loop};
use xev::watcher::udp::Udp;
use xev::{Buffer, CallbackAction, Completion, Loop, ReadError, RunMode};

const LOCAL: &str = "127.0.0.1:0";

fn bound() -> (Rc<Udp>, SocketAddr) {
    let u = Udp::new(LOCAL.parse().unwrap()).unwrap();
    u.bind(LOCAL.parse().unwrap()).unwrap();
    let addr = u.local_addr().unwrap();
    (Rc::new(u), addr)
}

type Log = Rc<RefCell<Vec<(Vec<u8>, Option<SocketAddr>)>>>;

const ROUNDS: usize = 5;

/// `b`: read a datagram, send it back to its sender, read again (ROUNDS times).
fn pong(lp: &mut Loop, c: std::pin::Pin<&mut Completion>, b: &Rc<Udp>, log: &Log) {
    let ud = (b.clone(), log.clone());
    b.read(lp, c, Buffer::inline(32), ud, |(b, log), lp, mut c, r| {
        let (n, from) = r.expect("pong read");
        let bytes = c.as_mut().take_op().unwrap().buffer().unwrap().as_slice()[..n].to_vec();
        log.borrow_mut().push((bytes.clone(), from));
        let mut reply = b"pong".to_vec();
        reply.extend_from_slice(&bytes[4..]);
        let ud = (b.clone(), log.clone());
        b.write(
            lp,
            c,
            from.unwrap(),
            Buffer::copy_from(&reply),
            ud,
            |(b, log), lp, c, r| {
                r.expect("pong write");
                if log.borrow().len() < ROUNDS {
                    pong(lp, c, b, log);
                }
                CallbackAction::Disarm
            },
        );
        CallbackAction::Disarm
    });
}

/// `a`: send ping `i`, read the pong, send ping `i + 1`, ...
fn ping(lp: &mut Loop, c: std::pin::Pin<&mut Completion>, a: &Rc<Udp>, to: SocketAddr, log: &Log) {
    let i = log.borrow().len();
    let msg = format!("ping{i}");
    let ud = (a.clone(), log.clone());
    a.write(
        lp,
        c,
        to,
        Buffer::copy_from(msg.as_bytes()),
        ud,
        move |(a, log), lp, c, r| {
            assert_eq!(r.expect("ping write"), msg.len());
            let ud = (a.clone(), log.clone());
            a.read(lp, c, Buffer::inline(32), ud, move |(a, log), lp, c, r| {
                let (n, from) = r.expect("ping read");
                let bytes = c.buffer().unwrap().as_slice()[..n].to_vec();
                log.borrow_mut().push((bytes, from));
                if log.borrow().len() < ROUNDS {
                    ping(lp, c, a, to, log);
                }
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        },
    );
}

#[test]
fn ping_pong_reports_each_senders_address() {
    each_backend(|bk| {
        let (a_log, b_log): (Log, Log) = (Log::default(), Log::default());
        let (mut ca, mut cb) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(bk);
        let (a, a_addr) = bound();
        let (b, b_addr) = bound();
        pong(&mut lp, cb.as_mut(), &b, &b_log);
        ping(&mut lp, ca.as_mut(), &a, b_addr, &a_log);
        lp.run(RunMode::UntilDone).unwrap();
        let pings: Vec<_> = (0..ROUNDS)
            .map(|i| (format!("ping{i}").into_bytes(), Some(a_addr)))
            .collect();
        let pongs: Vec<_> = (0..ROUNDS)
            .map(|i| (format!("pong{i}").into_bytes(), Some(b_addr)))
            .collect();
        assert_eq!(*b_log.borrow(), pings, "b saw a's pings, from a's address");
        assert_eq!(*a_log.borrow(), pongs, "a saw b's pongs, from b's address");
    });
}

#[test]
fn cancelling_a_pending_read_gives_canceled() {
    each_backend(|bk| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let (mut r, mut x) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(bk);
        let (u, addr) = bound();
        let s = seen.clone();
        u.read(&mut lp, r.as_mut(), Buffer::inline(8), s, |s, _, _, r| {
            s.borrow_mut().push(format!("read {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        assert!(seen.borrow().is_empty(), "nothing was sent");
        let s = seen.clone();
        lp.cancel(x.as_mut(), &r, move |_, _, res| {
            s.borrow_mut().push(format!("cancel {res:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = seen.borrow().clone();
        got.sort();
        assert_eq!(got, ["cancel Cancel(Ok(()))", "read Err(Canceled)"]);
        // The socket still works: a read started again gets the next datagram.
        let s = seen.clone();
        u.read(&mut lp, r.as_mut(), Buffer::inline(8), s, |s, _, c, r| {
            let (n, _) = r.expect("read after cancel");
            let b = c.buffer().unwrap().as_slice()[..n].to_vec();
            s.borrow_mut().push(String::from_utf8(b).unwrap());
            CallbackAction::Disarm
        });
        let (v, _) = bound();
        v.write(
            &mut lp,
            x.as_mut(),
            addr,
            Buffer::copy_from(b"again"),
            (),
            |_, _, _, r| {
                r.expect("write");
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(seen.borrow().last().unwrap(), "again");
    });
}

#[test]
fn connected_send_and_recv_and_empty_datagrams() {
    each_backend(|bk| {
        type Got = Rc<RefCell<Vec<Result<Vec<u8>, String>>>>;
        let got: Got = Rc::default();
        let (mut r, mut w) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(bk);
        let (a, a_addr) = bound();
        let (b, b_addr) = bound();
        a.connect(b_addr).unwrap();
        b.connect(a_addr).unwrap();
        assert_eq!(a.peer_addr().unwrap(), b_addr);
        for msg in [&b"hello"[..], b""] {
            let g = got.clone();
            b.recv(
                &mut lp,
                r.as_mut(),
                Buffer::inline(16),
                g,
                |g, _, c, res| {
                    g.borrow_mut().push(
                        res.map(|n| c.buffer().unwrap().as_slice()[..n].to_vec())
                            .map_err(|e: ReadError| e.to_string()),
                    );
                    CallbackAction::Disarm
                },
            );
            a.send(
                &mut lp,
                w.as_mut(),
                Buffer::copy_from(msg),
                msg.len(),
                |n, _, _, res| {
                    assert_eq!(res.expect("send"), *n);
                    CallbackAction::Disarm
                },
            );
            lp.run(RunMode::UntilDone).unwrap();
        }
        assert_eq!(*got.borrow(), [Ok(b"hello".to_vec()), Ok(Vec::new())]);
    });
}

#[test]
fn close_cancels_a_pending_read() {
    each_backend(|bk| {
        let seen: Rc<RefCell<Vec<String>>> = Rc::default();
        let (mut r, mut x) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(bk);
        let u = Udp::new(LOCAL.parse().unwrap()).unwrap();
        u.bind(LOCAL.parse().unwrap()).unwrap();
        let s = seen.clone();
        u.read(&mut lp, r.as_mut(), Buffer::inline(8), s, |s, _, _, r| {
            s.borrow_mut().push(format!("read {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        let s = seen.clone();
        u.close(&mut lp, x.as_mut(), s, |s, _, _, r| {
            s.borrow_mut().push(format!("close {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = seen.borrow().clone();
        got.sort();
        assert_eq!(got, ["close Ok(())", "read Err(Canceled)"]);
    });
}
