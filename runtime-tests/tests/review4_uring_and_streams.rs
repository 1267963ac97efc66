//! Soundness review 4: the io_uring backend (accepts, multishot records, zero-copy
//! sends), provided buffers, the stream watcher's write queue and the async watcher.
//! Each test names the bug it pins down.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend_within, new_loop, os_error};
use xev::{CallbackAction, Completion, Op, OpResult, RunMode};

/// A time limit on an accept queued behind another accept on the same listener (io_uring
/// issues accepts on one listener one at a time) still holds: it used to start only when
/// the accept reached the kernel, so behind an accept without a limit it never expired.
#[test]
fn an_accept_queued_behind_another_still_times_out() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let fd = l.as_raw_fd();
        let first: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let second: Rc<RefCell<Vec<OpResult>>> = Rc::default();
        let mut c1 = pin!(Completion::new());
        let mut c2 = pin!(Completion::new());
        let f = first.clone();
        c1.as_mut().prep(Op::Accept { fd }, move |_, _, r| {
            f.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.add(c1.as_mut());
        let s = second.clone();
        c2.as_mut().prep(Op::Accept { fd }, move |_, _, r| {
            s.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.add_with_timeout(c2.as_mut(), Duration::from_millis(20));
        let start = Instant::now();
        while second.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        let got = second.borrow_mut().pop();
        match got {
            Some(r) => assert_eq!(os_error(&r), Some(libc::ETIMEDOUT), "{b:?}: {r:?}"),
            None => panic!("{b:?}: the 20 ms limit did not expire in 3 s"),
        }
        assert!(
            first.borrow().is_empty(),
            "{b:?}: the first accept finished"
        );
        // The first accept still takes a connection.
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let start = Instant::now();
        while first.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
            lp.run(RunMode::Once).unwrap();
        }
        assert!(
            matches!(first.borrow().first(), Some(OpResult::Accept(Ok(_)))),
            "{b:?}: {:?}",
            first.borrow()
        );
        let _ = Cell::new(0);
    });
}

/// Read what is in non-blocking pipe end `fd` now.
fn drain(fd: std::os::fd::RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// A write queue whose completion was left Dead with its callback by a panic (here the
/// loop check after a request callback swapped the loop) is started again by the next
/// `queue_write`: the old callback, dropped then, took the new request's callback and
/// descriptor with it (the descriptor closed while its write was in flight, the
/// callback never run, the queue marked idle with a write in flight).
#[test]
fn a_write_queue_left_mid_request_by_a_panic_starts_the_next_request_whole() {
    use xev::watcher::stream::{Stream, WriteQueue};
    use xev::Buffer;
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = new_loop(b);
        let other = Rc::new(RefCell::new(Some(new_loop(b))));
        let q = WriteQueue::new();
        let (r1, w1) = Stream::pipe().unwrap();
        let o = other.clone();
        w1.queue_write(
            &mut lp,
            &q,
            Buffer::copy_from(b"a"),
            (),
            move |_, lp, _, r| {
                r.unwrap();
                // Swap the running loop: the loop panics once this callback returns.
                std::mem::swap(lp, o.borrow_mut().as_mut().unwrap());
                CallbackAction::Disarm
            },
        );
        w1.queue_write(&mut lp, &q, Buffer::copy_from(b"b"), (), |_, _, _, _| {
            CallbackAction::Disarm
        });
        let panicked =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run(RunMode::UntilDone)));
        assert!(panicked.is_err(), "{b:?}: the swap was not caught");
        drop((lp, other)); // both loops (swapped) go

        let mut lp = new_loop(b);
        let (r2, w2) = Stream::pipe().unwrap();
        let r2 = std::os::fd::OwnedFd::from(r2);
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        w2.queue_write(
            &mut lp,
            &q,
            Buffer::copy_from(b"c"),
            (),
            move |_, _, _, r| {
                g.borrow_mut().push(r.map_err(|e| e.to_string()));
                CallbackAction::Disarm
            },
        );
        drop(w2); // the request alone keeps the descriptor open
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*got.borrow(), [Ok(1)], "{b:?}");
        assert_eq!(drain(r2.as_raw_fd()), b"c", "{b:?}");
        assert!(q.is_empty(), "{b:?}: {q:?}");
        drop(r1);
    });
}

/// A time limit on a multishot operation waiting for its next result holds on every
/// backend: io_uring parked the completion on its record, where no limit was kept, so it
/// waited forever (the poll backend times it out).
#[test]
fn a_multishot_wait_with_a_time_limit_times_out() {
    each_backend_within(Duration::from_secs(10), |b| {
        for accept in [false, true] {
            let mut c = pin!(Completion::new()); // outlives the loop
            let mut lp = new_loop(b);
            let group = lp.register_buffer_group(4, 64).unwrap();
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (peer, _) = l.accept().unwrap();
            a.set_nonblocking(true).unwrap();
            let op = match accept {
                true => Op::AcceptMulti { fd: l.as_raw_fd() },
                false => Op::RecvMulti {
                    fd: a.as_raw_fd(),
                    group: group.clone(),
                },
            };
            let got: Rc<RefCell<Vec<Option<i32>>>> = Rc::default();
            let g = got.clone();
            c.as_mut().prep(op, move |_, _, r| {
                g.borrow_mut().push(match r {
                    OpResult::AcceptMulti(Err(xev::Error::Io(e)))
                    | OpResult::RecvMulti(Err(xev::ReadError::Io(e))) => e.raw_os_error(),
                    OpResult::AcceptMulti(Err(_)) | OpResult::RecvMulti(Err(_)) => Some(-1),
                    _ => None,
                });
                CallbackAction::Disarm
            });
            lp.add_with_timeout(c.as_mut(), Duration::from_millis(20));
            let start = Instant::now();
            while got.borrow().is_empty() && start.elapsed() < Duration::from_secs(3) {
                lp.run(RunMode::NoWait).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            let what = if accept { "AcceptMulti" } else { "RecvMulti" };
            match got.borrow().first() {
                Some(Some(e)) => assert_eq!(*e, libc::ETIMEDOUT, "{b:?} {what}"),
                other => panic!("{b:?} {what}: {other:?} after 3 s"),
            }
            lp.run(RunMode::UntilDone).unwrap();
            drop(peer);
        }
    });
}

/// An `Async` wait's completion re-added with `Loop::add` after its callback disarmed
/// (as a finished watcher operation may be) waits again and hears notifies, the one made
/// before the re-add included: it used to park without recording itself with the
/// `Async`, so no notify ever reached it and the loop waited forever.
#[test]
fn an_async_wait_re_added_with_add_hears_notifies() {
    use xev::watcher::r#async::Async;
    each_backend_within(Duration::from_secs(10), |b| {
        let hits = Rc::new(Cell::new(0));
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        a.wait(&mut lp, c.as_mut(), hits.clone(), |n, _, _, r| {
            r.unwrap();
            n.set(n.get() + 1);
            CallbackAction::Disarm
        });
        a.notify().unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(hits.get(), 1, "{b:?}");

        // Notified before the re-add.
        a.notify().unwrap();
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(hits.get(), 2, "{b:?}");

        // Notified from another thread after it.
        lp.add(c.as_mut());
        let n = a.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            n.notify().unwrap();
        });
        lp.run(RunMode::UntilDone).unwrap();
        t.join().unwrap();
        assert_eq!(hits.get(), 3, "{b:?}");
    });
}

/// A connected TCP pair whose accepted end is returned unread.
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = l.accept().unwrap();
    a.set_nonblocking(true).unwrap();
    (a, peer)
}

/// Run `lp` without blocking until `c` has been in flight for a while: a zero-copy send
/// to a peer that does not read sends part of its buffer (the kernel posts the count),
/// and its notification waits until the peer reads or the socket goes away.
fn settle_send(lp: &mut xev::Loop) {
    for _ in 0..20 {
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `Loop::shutdown` and `Loop::drop` with a zero-copy send whose notification cannot come
/// (the peer does not read, and the socket stays open) return: they waited for it
/// forever. The send's buffer is leaked to the kernel instead (it may still read it), the
/// completion is Dead, and a later notification for its address is not taken for another
/// operation of the same completion.
#[test]
fn shutdown_and_drop_do_not_wait_forever_for_a_zero_copy_notification() {
    each_backend_within(Duration::from_secs(10), |b| {
        for drop_it in [false, true] {
            let mut c = pin!(Completion::new());
            let (a, peer) = tcp_pair();
            let mut lp = new_loop(b);
            let calls = Rc::new(Cell::new(0));
            let n = calls.clone();
            let buf = xev::Buffer::from(vec![7u8; 8 << 20]);
            c.as_mut().prep(
                Op::SendZc {
                    fd: a.as_raw_fd(),
                    buf,
                },
                move |_, _, _| {
                    n.set(n.get() + 1);
                    CallbackAction::Disarm
                },
            );
            lp.add(c.as_mut());
            settle_send(&mut lp);
            if drop_it {
                drop(lp);
                assert_eq!(c.state(), xev::CompletionState::Dead, "{b:?}");
                drop((a, peer));
                continue;
            }
            lp.shutdown();
            assert_eq!(c.state(), xev::CompletionState::Dead, "{b:?}");
            // The same completion sends again, on a pair whose peer reads: it is called
            // back once, after the whole count, even when the first send's notification
            // arrives meanwhile (the peer of the first pair reads now).
            let (a2, mut peer2) = tcp_pair();
            let got = Rc::new(RefCell::new(Vec::new()));
            let g = got.clone();
            let msg = vec![9u8; 64 << 10];
            c.as_mut().prep(
                Op::SendZc {
                    fd: a2.as_raw_fd(),
                    buf: xev::Buffer::from(msg.clone()),
                },
                move |_, _, r| {
                    g.borrow_mut().push(format!("{r:?}"));
                    CallbackAction::Disarm
                },
            );
            lp.add(c.as_mut());
            let reader = std::thread::spawn(move || {
                let mut sink = Vec::new();
                let mut peer = peer;
                peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let _ = std::io::Read::read_to_end(&mut peer, &mut sink);
            });
            let mut back = vec![0u8; msg.len()];
            peer2
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            lp.run(RunMode::UntilDone).unwrap();
            std::io::Read::read_exact(&mut peer2, &mut back).unwrap();
            assert_eq!(back, msg, "{b:?}");
            assert_eq!(
                *got.borrow(),
                [format!("SendZc(Ok({}))", msg.len())],
                "{b:?}"
            );
            drop(a);
            reader.join().unwrap();
            lp.run(RunMode::NoWait).unwrap();
            drop((lp, a2));
        }
    });
}
