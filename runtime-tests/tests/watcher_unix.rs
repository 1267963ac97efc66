//! The Unix watcher and the core's Unix operations (`Op::AcceptUnix`, `ConnectUnix`,
//! `SendMsgUnix`, `RecvMsgUnix`): echo over a path and an abstract name, the peer and
//! sender addresses they report (unnamed, bound path, abstract name; also across rearms),
//! `Op::Accept` on a Unix listener (no address, never a made-up IP one), the errors the
//! kernel gives, and close cancelling pending operations.

use std::cell::RefCell;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop, only, record, results};
use xev::watcher::stream::WriteQueue;
use xev::watcher::unix::Unix;
use xev::{
    Buffer, CallbackAction, Completion, Error, Loop, Op, OpResult, ReadError, RunMode, UnixAddr,
};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory for socket files, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("xev-wunix-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn addr(&self, name: &str) -> UnixAddr {
        UnixAddr::from_pathname(self.0.join(name)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(target_os = "linux")]
fn abstract_name(tag: &str) -> UnixAddr {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    UnixAddr::from_abstract_name(format!("xev-wtest-{}-{tag}-{n}", std::process::id())).unwrap()
}

/// Run until `done()` or two seconds; true if done.
fn run_until(lp: &mut Loop, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        lp.run(RunMode::NoWait).unwrap();
    }
    done()
}

fn listener(addr: &UnixAddr) -> Unix {
    let l = Unix::stream().unwrap();
    l.bind(addr).unwrap();
    l.listen(16).unwrap();
    l
}

fn errno(e: &Error) -> Option<i32> {
    match e {
        Error::Io(e) => e.raw_os_error(),
        Error::Canceled => None,
    }
}

/// Accept one connection and echo what it reads until EOF; the peer address goes to
/// `peer`.
fn echo_server(
    lp: &mut Loop,
    c: std::pin::Pin<&mut Completion>,
    l: &Unix,
    peer: &Rc<RefCell<Option<UnixAddr>>>,
) {
    let q = WriteQueue::new();
    l.accept(lp, c, (q, peer.clone()), |(q, peer), lp, c, r| {
        let (conn, from) = r.expect("accept");
        *peer.borrow_mut() = Some(from);
        // Dropped at EOF: queued writes keep the descriptor until they are done, then
        // it closes and the client reads EOF.
        let conn = Rc::new(RefCell::new(Some(conn)));
        let ud = (conn.clone(), q.clone());
        let slot = conn.borrow();
        let sock = slot.as_ref().unwrap();
        sock.read(
            lp,
            c,
            Buffer::from(vec![0; 4096]),
            ud,
            |(conn, q), lp, c, r| match r {
                Ok(n) => {
                    let bytes = c.buffer().unwrap().as_slice()[..n].to_vec();
                    let slot = conn.borrow();
                    let sock = slot.as_ref().unwrap();
                    sock.queue_write(lp, q, Buffer::from(bytes), (), |_, _, _, r| {
                        r.expect("echo write");
                        CallbackAction::Disarm
                    });
                    CallbackAction::Rearm
                }
                Err(ReadError::Eof) => {
                    conn.borrow_mut().take();
                    CallbackAction::Disarm
                }
                Err(e) => panic!("server read: {e}"),
            },
        );
        CallbackAction::Disarm
    });
}

fn echo_on(b: xev::Backend, addr: &UnixAddr) {
    // The completions outlive the loop, so a failed assertion unwinds cleanly.
    let (mut a, mut cc, mut sc) = (
        pin!(Completion::new()),
        pin!(Completion::new()),
        pin!(Completion::new()),
    );
    let mut lp = new_loop(b);
    let l = listener(addr);
    assert_eq!(l.local_addr().unwrap(), *addr);
    let peer = Rc::new(RefCell::new(None));
    echo_server(&mut lp, a.as_mut(), &l, &peer);

    // Connect, write through a queue, then shut down writing and read the echo to EOF.
    let client = Rc::new(Unix::stream().unwrap());
    let step = Rc::new(RefCell::new(0));
    client.connect(&mut lp, cc.as_mut(), addr, step.clone(), |step, _, _, r| {
        r.expect("connect");
        *step.borrow_mut() = 1;
        CallbackAction::Disarm
    });
    assert!(run_until(&mut lp, || *step.borrow() == 1), "connect");
    let q = WriteQueue::new();
    let msg: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    client.queue_write(
        &mut lp,
        &q,
        Buffer::from(msg.clone()),
        step.clone(),
        |step, _, _, r| {
            assert_eq!(r.expect("write"), 50_000);
            *step.borrow_mut() = 2;
            CallbackAction::Disarm
        },
    );
    let got = Rc::new(RefCell::new(Vec::new()));
    let done = Rc::new(RefCell::new(false));
    let ud = (got.clone(), done.clone());
    client.read(
        &mut lp,
        cc.as_mut(),
        Buffer::from(vec![0; 4096]),
        ud,
        |(got, done), _, c, r| match r {
            Ok(n) => {
                got.borrow_mut()
                    .extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
                CallbackAction::Rearm
            }
            Err(ReadError::Eof) => {
                *done.borrow_mut() = true;
                CallbackAction::Disarm
            }
            Err(e) => panic!("client read: {e}"),
        },
    );
    assert!(run_until(&mut lp, || *step.borrow() == 2), "write");
    client.shutdown(&mut lp, sc.as_mut(), Shutdown::Write, (), |_, _, _, r| {
        r.expect("shutdown");
        CallbackAction::Disarm
    });
    assert!(
        run_until(&mut lp, || *done.borrow()),
        "echo did not finish: {} bytes back, peer {:?}",
        got.borrow().len(),
        peer.borrow()
    );
    assert_eq!(*got.borrow(), msg);
    assert!(peer.borrow().expect("accepted").is_unnamed());
    assert_eq!(client.peer_addr().unwrap(), *addr);
    assert!(client.local_addr().unwrap().is_unnamed());
    lp.run(RunMode::UntilDone).unwrap();
}

#[test]
fn echo_over_a_path_socket() {
    each_backend(|b| {
        let dir = TempDir::new();
        echo_on(b, &dir.addr("echo.sock"));
    });
}

#[cfg(target_os = "linux")]
#[test]
fn echo_over_an_abstract_name() {
    each_backend(|b| echo_on(b, &abstract_name("echo")));
}

#[test]
fn accept_reports_the_unix_peer_and_plain_accept_no_ip_address() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let dir = TempDir::new();
        let server = dir.addr("server.sock");
        let l = listener(&server);
        let mut names = vec![dir.addr("client.sock")];
        #[cfg(target_os = "linux")]
        names.push(abstract_name("client"));
        for name in names {
            // A client bound to `name`, connected through the watcher.
            let client = Unix::stream().unwrap();
            client.bind(&name).unwrap();
            let (mut a, mut cc) = (pin!(Completion::new()), pin!(Completion::new()));
            let seen = Rc::new(RefCell::new(None));
            l.accept(&mut lp, a.as_mut(), seen.clone(), |seen, _, _, r| {
                let (conn, peer) = r.expect("accept");
                assert_eq!(conn.peer_addr().unwrap(), peer);
                *seen.borrow_mut() = Some(peer);
                CallbackAction::Disarm
            });
            let connected = Rc::new(RefCell::new(false));
            client.connect(
                &mut lp,
                cc.as_mut(),
                &server,
                connected.clone(),
                |c, _, _, r| {
                    r.expect("connect");
                    *c.borrow_mut() = true;
                    CallbackAction::Disarm
                },
            );
            assert!(run_until(&mut lp, || seen.borrow().is_some() && *connected.borrow()));
            assert_eq!(seen.borrow().unwrap(), name, "the client's bound address");
        }

        // The raw op: the peer is in the completion's op after the callback.
        let mut c = pin!(Completion::new());
        let r = results();
        lp.start(c.as_mut(), Op::accept_unix(l.as_raw_fd()), record(&r));
        let _client =
            std::os::unix::net::UnixStream::connect(server.as_pathname().unwrap()).unwrap();
        assert!(run_until(&mut lp, || !r.borrow().is_empty()));
        assert!(matches!(only(&r), OpResult::AcceptUnix(Ok(_))));
        assert!(c.op().unwrap().unix_addr().unwrap().is_unnamed());

        // One accept rearmed: an unnamed peer first, then one with a long path; the room
        // for the address is reset each time, so the path is not cut to the first length.
        let long = dir.addr(&"a-long-client-path".repeat(4));
        let peers: Rc<RefCell<Vec<UnixAddr>>> = Rc::default();
        l.accept(&mut lp, c.as_mut(), peers.clone(), |peers, _, _, r| {
            peers.borrow_mut().push(r.expect("accept").1);
            if peers.borrow().len() < 2 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        let _unnamed =
            std::os::unix::net::UnixStream::connect(server.as_pathname().unwrap()).unwrap();
        assert!(run_until(&mut lp, || peers.borrow().len() == 1));
        let named = Unix::stream().unwrap();
        named.bind(&long).unwrap();
        let mut cc = pin!(Completion::new());
        named.connect(&mut lp, cc.as_mut(), &server, (), |_, _, _, r| {
            r.expect("connect");
            CallbackAction::Disarm
        });
        assert!(run_until(&mut lp, || peers.borrow().len() == 2));
        assert!(peers.borrow()[0].is_unnamed());
        assert_eq!(peers.borrow()[1], long);

        // Op::Accept on a Unix listener: the connection, and no (made-up) IP address.
        lp.start(c.as_mut(), Op::Accept { fd: l.as_raw_fd() }, record(&r));
        let _client2 =
            std::os::unix::net::UnixStream::connect(server.as_pathname().unwrap()).unwrap();
        assert!(run_until(&mut lp, || !r.borrow().is_empty()));
        match only(&r) {
            OpResult::Accept(Ok(a)) => assert_eq!(a.peer, None),
            other => panic!("{other:?}"),
        }
    });
}

/// A message and its sender.
type Received = (Vec<u8>, UnixAddr);

#[test]
fn datagrams_report_their_sender_across_rearms() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let dir = TempDir::new();
        let to = dir.addr("server.sock");
        let server = Unix::datagram().unwrap();
        server.bind(&to).unwrap();
        let long = dir.addr(&"a-long-sender-name".repeat(3));
        let short = dir.addr("s");
        let mut senders = vec![long, short, UnixAddr::unnamed()];
        #[cfg(target_os = "linux")]
        senders.push(abstract_name("sender"));

        // One recv_from, rearmed for every message: each reports its own sender (the
        // address room is reset for each receive).
        let got: Rc<RefCell<Vec<Received>>> = Rc::default();
        let mut rc = pin!(Completion::new());
        let n = senders.len();
        server.recv_from(
            &mut lp,
            rc.as_mut(),
            Buffer::inline(32),
            got.clone(),
            move |got, _, c, r| {
                let (len, from) = r.expect("recv_from");
                got.borrow_mut()
                    .push((c.buffer().unwrap().as_slice()[..len].to_vec(), from));
                if got.borrow().len() < n {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        let mut socks = Vec::new();
        for (i, s) in senders.iter().enumerate() {
            let sock = Unix::datagram().unwrap();
            if !s.is_unnamed() {
                sock.bind(s).unwrap();
            }
            let mut wc = Box::pin(Completion::new());
            let msg = format!("m{i}");
            sock.send_to(
                &mut lp,
                wc.as_mut(),
                &to,
                Buffer::copy_from(msg.as_bytes()),
                (),
                |_, _, _, r| {
                    assert_eq!(r.expect("send_to"), 2);
                    CallbackAction::Disarm
                },
            );
            assert!(run_until(&mut lp, || got.borrow().len() > i), "message {i}");
            socks.push((sock, wc));
        }
        for (i, (msg, from)) in got.borrow().iter().enumerate() {
            assert_eq!(msg, format!("m{i}").as_bytes());
            assert_eq!(*from, senders[i], "sender of message {i}");
        }

        // An empty buffer: Ok(0) at once, nothing consumed.
        let sock = Unix::datagram().unwrap();
        sock.bind(&dir.addr("e.sock")).unwrap();
        let mut wc = pin!(Completion::new());
        sock.send_to(
            &mut lp,
            wc.as_mut(),
            &to,
            Buffer::copy_from(b"kept"),
            (),
            |_, _, _, r| {
                r.expect("send");
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        let r = results();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::recv_msg_unix(server.as_raw_fd(), Buffer::inline(0)),
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::RecvMsgUnix(Ok(0))));
        assert!(c.op().unwrap().unix_addr().unwrap().is_unnamed());
        lp.start(
            c.as_mut(),
            Op::recv_msg_unix(server.as_raw_fd(), Buffer::inline(8)),
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            matches!(only(&r), OpResult::RecvMsgUnix(Ok(4))),
            "the datagram is still there"
        );
        assert_eq!(c.buffer().unwrap().as_slice()[..4], *b"kept");
        assert_eq!(*c.op().unwrap().unix_addr().unwrap(), dir.addr("e.sock"));
    });
}

#[test]
fn errors_are_the_kernels() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let dir = TempDir::new();
        let r = results();
        let mut c = pin!(Completion::new());
        let err_of = |r: OpResult| -> i32 {
            match r {
                OpResult::ConnectUnix(Err(e))
                | OpResult::AcceptUnix(Err(e))
                | OpResult::SendMsgUnix(Err(e))
                | OpResult::Send(Err(e)) => errno(&e).expect("an OS error"),
                OpResult::RecvMsgUnix(Err(ReadError::Io(e))) => e.raw_os_error().unwrap(),
                other => panic!("expected an error: {other:?}"),
            }
        };
        let s = Unix::stream().unwrap();
        // A missing path, a socket file nobody listens on, a regular file.
        let missing = dir.addr("missing");
        lp.start(
            c.as_mut(),
            Op::ConnectUnix {
                fd: s.as_raw_fd(),
                addr: Box::new(missing),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::ENOENT);
        let stale = dir.addr("stale");
        drop(listener(&stale));
        lp.start(
            c.as_mut(),
            Op::ConnectUnix {
                fd: s.as_raw_fd(),
                addr: Box::new(stale),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::ECONNREFUSED);
        // A full backlog: a Unix connect never waits, it reports EAGAIN (WouldBlock).
        let tight = dir.addr("tight");
        let l0 = Unix::stream().unwrap();
        l0.bind(&tight).unwrap();
        l0.listen(0).unwrap();
        let mut refused_at = None;
        let mut clients = Vec::new();
        for i in 0..4 {
            let cl = Unix::stream().unwrap();
            lp.start(
                c.as_mut(),
                Op::ConnectUnix {
                    fd: cl.as_raw_fd(),
                    addr: Box::new(tight),
                },
                record(&r),
            );
            lp.run(RunMode::UntilDone).unwrap();
            match only(&r) {
                OpResult::ConnectUnix(Ok(())) => clients.push(cl),
                OpResult::ConnectUnix(Err(Error::Io(e))) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
                    refused_at = Some(i);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(refused_at.is_some(), "a backlog of 0 filled up");
        // Binding an existing path.
        let e = Unix::stream().unwrap().bind(&stale).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        // sendmsg to a missing path.
        let d = Unix::datagram().unwrap();
        lp.start(
            c.as_mut(),
            Op::SendMsgUnix {
                fd: d.as_raw_fd(),
                buf: Buffer::copy_from(b"x"),
                addr: Box::new(missing),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::ENOENT);
        // Accept on a socket that is not listening, and on a regular file.
        lp.start(c.as_mut(), Op::accept_unix(s.as_raw_fd()), record(&r));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::EINVAL);
        let file = std::fs::File::create(dir.0.join("plain")).unwrap();
        lp.start(c.as_mut(), Op::accept_unix(file.as_raw_fd()), record(&r));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::ENOTSOCK);
        // A bad fd.
        lp.start(
            c.as_mut(),
            Op::recv_msg_unix(-1, Buffer::inline(4)),
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::EBADF);
        // Writing to a closed peer: EPIPE, no SIGPIPE (the default disposition is
        // restored so a signal would end the test process).
        // SAFETY: setting a signal disposition.
        let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let (x, y) = Unix::pair().unwrap();
        drop(y);
        x.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"gone"),
            r.clone(),
            |r, _, _, res| {
                r.borrow_mut().push(OpResult::Send(res));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(err_of(only(&r)), libc::EPIPE);
        // SAFETY: restoring the previous disposition.
        unsafe { libc::signal(libc::SIGPIPE, old) };
        // The loop still works.
        let (x, y) = Unix::pair().unwrap();
        x.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"ok"),
            (),
            |_, _, _, r| {
                r.unwrap();
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        let mut rc = pin!(Completion::new());
        y.read(&mut lp, rc.as_mut(), Buffer::inline(2), (), |_, _, _, r| {
            assert_eq!(r.unwrap(), 2);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
    });
}

#[test]
fn close_cancels_a_pending_accept_and_recv_from() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let dir = TempDir::new();
        let l = listener(&dir.addr("l.sock"));
        let d = Unix::datagram().unwrap();
        d.bind(&dir.addr("d.sock")).unwrap();
        let (mut a, mut r, mut c1, mut c2) = (
            pin!(Completion::new()),
            pin!(Completion::new()),
            pin!(Completion::new()),
            pin!(Completion::new()),
        );
        let log: Rc<RefCell<Vec<&str>>> = Rc::default();
        l.accept(&mut lp, a.as_mut(), log.clone(), |log, _, _, res| {
            assert!(matches!(res, Err(Error::Canceled)), "{res:?}");
            log.borrow_mut().push("accept canceled");
            CallbackAction::Disarm
        });
        d.recv_from(
            &mut lp,
            r.as_mut(),
            Buffer::inline(8),
            log.clone(),
            |log, _, _, res| {
                assert!(matches!(res, Err(ReadError::Canceled)), "{res:?}");
                log.borrow_mut().push("recv canceled");
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        l.close(&mut lp, c1.as_mut(), (), |_, _, _, res| {
            res.expect("close");
            CallbackAction::Disarm
        });
        d.close(&mut lp, c2.as_mut(), (), |_, _, _, res| {
            res.expect("close");
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = log.borrow().clone();
        got.sort();
        assert_eq!(got, ["accept canceled", "recv canceled"]);
    });
}
