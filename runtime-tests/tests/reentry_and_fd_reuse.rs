//! Callbacks that reach past their own operation (another loop, a swapped-out loop, an
//! operation moved to another fd, a shutdown of the runtime's loop) and fd numbers closed
//! outside the loop and reused: regression tests for the use-after-frees and hangs a
//! soundness review found, on every backend.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;

use core::prelude::v1::test;
use runtime_tests::{each_backend, new_loop};
use xev::*;

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

type Slot = Rc<RefCell<Option<Pin<Box<Completion>>>>>;

/// Inside its callback on loop A, a completion is re-prepared, added to loop B and run
/// there to the end (so it is Dead), and then its owner frees it — all safe code. Loop
/// A's `invoke` read the freed completion when the callback returned (ASan:
/// heap-use-after-free in `Loop::invoke`). Now B refuses the completion (a panic, which
/// propagates out of A's `run`), and A is left with a Dead, live completion.
#[test]
fn a_completion_freed_in_its_callback_after_another_loop_ran_it() {
    each_backend(|b| {
        let slot: Slot = Rc::new(RefCell::new(Some(Box::pin(Completion::new()))));
        let mut a = new_loop(b);
        let mut other = Some(new_loop(b));
        let s = slot.clone();
        let ran = Rc::new(RefCell::new(false));
        let r2 = ran.clone();
        let mut guard = slot.borrow_mut();
        let c = guard.as_mut().unwrap().as_mut();
        a.timer(c, 0, move |_, mut c, _| {
            let mut lb = other.take().expect("called once");
            c.as_mut()
                .prep(Op::Timer { ms: 0 }, |_, _, _| CallbackAction::Disarm);
            lb.add(c.as_mut());
            lb.run(RunMode::UntilDone).unwrap();
            assert_eq!(c.state(), CompletionState::Dead);
            // `c` (the loop's `Pin<&mut>`) is not used again: free the completion.
            let _ = c;
            drop(s.borrow_mut().take());
            *r2.borrow_mut() = true;
            CallbackAction::Disarm
        });
        drop(guard);
        let r = catch_unwind(AssertUnwindSafe(|| a.run(RunMode::UntilDone)));
        let msg = panic_message(r.expect_err("another loop must refuse the completion"));
        assert!(msg.contains("inside its callback on another Loop"), "{msg}");
        assert!(
            !*ran.borrow(),
            "the completion was never freed in its callback"
        );
        let mut guard = slot.borrow_mut();
        let c = guard.as_mut().expect("still owned").as_mut();
        assert_eq!(c.state(), CompletionState::Dead);
        // Both loops' own use of it still works.
        a.timer(c, 0, |_, _, _| CallbackAction::Disarm);
        a.run(RunMode::UntilDone).unwrap();
    });
}

/// Run `lp` without blocking until `got` holds `n` results or 2 s have passed; the
/// count. Short of `n`, the loop is shut down first, so that the parked receive lets go
/// before its completion drops (the caller's assertion then fails).
fn results_within_2s<T>(lp: &mut Loop, got: &RefCell<Vec<T>>, n: usize) -> usize {
    let start = std::time::Instant::now();
    while got.borrow().len() < n && start.elapsed() < std::time::Duration::from_secs(2) {
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let count = got.borrow().len();
    if count < n {
        lp.shutdown();
    }
    count
}

/// Number N (the first free from `base`) registered with the loop `lp` by a receive on
/// `c` into `buf` bytes that parked and then got one byte (`buf` 1: the readiness cache
/// still says readable; more: a short read, so "drained"); then closed outside the loop
/// (nothing names it any more: the Dead completion let go of its op) and reused by
/// another connected stream socket. Returns N's new owner and its peer.
fn a_registered_number_reused(
    lp: &mut Loop,
    mut c: Pin<&mut Completion>,
    base: i32,
    buf: usize,
) -> (std::os::fd::OwnedFd, std::os::unix::net::UnixStream) {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let (a1, mut b1) = UnixStream::pair().unwrap();
    a1.set_nonblocking(true).unwrap();
    let n1 = runtime_tests::dup_high(a1.as_raw_fd(), base);
    drop(a1);
    let n = n1.as_raw_fd();
    let first = runtime_tests::results();
    lp.start(
        c.as_mut(),
        Op::Recv {
            fd: n,
            buf: Buffer::inline(buf),
        },
        runtime_tests::record(&first),
    );
    lp.run(RunMode::NoWait).unwrap();
    b1.write_all(b"x").unwrap();
    lp.run(RunMode::UntilDone).unwrap();
    assert!(matches!(runtime_tests::only(&first), OpResult::Recv(Ok(1))));
    drop(c.as_mut().take_op());
    drop(n1);
    drop(b1);
    let (a2, b2) = UnixStream::pair().unwrap();
    a2.set_nonblocking(true).unwrap();
    let n2 = runtime_tests::dup_high(a2.as_raw_fd(), base);
    drop(a2);
    assert_eq!(n2.as_raw_fd(), n, "the number is reused");
    (n2, b2)
}

/// A callback points its operation at another (open) socket with `op_mut` and rearms.
/// The poll backend treated that as "the same operation on the same fd" and trusted its
/// registration for the new number: a number closed outside the loop and reused has lost
/// its kernel registration, so the receive parked forever although data was waiting.
#[test]
fn a_rearm_after_op_mut_moved_the_fd_does_not_trust_the_old_registration() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    each_backend(|b| {
        let mut lp = new_loop(b);
        // 1. Number N registered, then closed outside the loop and reused by another
        //    socket with data waiting.
        let mut c = Box::pin(Completion::new());
        let (n2, mut b2) = a_registered_number_reused(&mut lp, c.as_mut(), 3100, 16);
        let n = n2.as_raw_fd();
        b2.write_all(b"y").unwrap();
        // 2. A receive on a third socket parks (so its completion has seen a registration
        // checked: a rearm of the same operation would trust it), then gets its data; its
        // callback moves the op to N and rearms.
        let (a3, mut b3) = UnixStream::pair().unwrap();
        a3.set_nonblocking(true).unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: a3.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, c, r| {
                g.borrow_mut().push(r);
                if g.borrow().len() == 1 {
                    *c.op_mut().unwrap() = Op::Recv {
                        fd: n,
                        buf: Buffer::inline(16),
                    };
                    return CallbackAction::Rearm;
                }
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        assert!(got.borrow().is_empty(), "parked: no data yet");
        b3.write_all(b"z").unwrap();
        let n_got = results_within_2s(&mut lp, &got, 2);
        assert_eq!(
            n_got, 2,
            "the rearmed receive on the reused number never finished"
        );
        assert!(
            matches!(got.borrow()[1], OpResult::Recv(Ok(1))),
            "{:?}",
            got.borrow()
        );
        drop(n2);
    });
}

/// A callback's `&mut Loop` is a plain `&mut`: safe code can `std::mem::swap` (or
/// `replace`) the loop behind it and drop the old one, here in the middle of an io_uring
/// multishot batch. `invoke` went on with the batch through the old driver's record,
/// cached before the callback and freed with the old loop (release + ASan:
/// heap-use-after-free in `multishot_next`; debug: its `debug_assert`). Now the loop
/// notices the replacement when the callback returns and panics with a message.
#[test]
fn a_loop_replaced_inside_a_multishot_callback_is_not_used_after_free() {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    each_backend(|b| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut lp = new_loop(b);
        let mut c = Box::pin(Completion::new());
        let calls = Rc::new(RefCell::new(0));
        let n = calls.clone();
        let mut spare = Some(new_loop(b));
        lp.start(
            c.as_mut(),
            Op::AcceptMulti { fd: l.as_raw_fd() },
            move |lp, _, r| {
                assert!(matches!(r, OpResult::AcceptMulti(Ok(_))), "{r:?}");
                *n.borrow_mut() += 1;
                if *n.borrow() == 2 {
                    let mut other = spare.take().unwrap();
                    std::mem::swap(lp, &mut other);
                    drop(other); // the loop that is running this callback
                }
                CallbackAction::Rearm
            },
        );
        let r = catch_unwind(AssertUnwindSafe(|| {
            while *calls.borrow() < 8 {
                lp.run(RunMode::Once).unwrap();
            }
        }));
        let msg = r.err().map(panic_message).unwrap_or_default();
        // Whatever happened, leave nothing Active behind the completion's drop.
        lp.shutdown();
        drop(lp);
        drop(clients);
        assert!(
            msg.contains("replaced"),
            "{msg:?} after {} calls",
            calls.borrow()
        );
    });
}

/// The poll backend's per-number `stream` flag (a short read means "drained") is learnt
/// when a number is first registered and was kept when the number, closed outside the
/// loop (nothing pending on it: allowed), came back as a datagram socket. A short
/// datagram then cleared the readiness cache, and the rearmed receive parked with the
/// next datagram already queued, waiting for an edge that only a third datagram brings.
#[test]
fn a_number_reused_by_a_datagram_socket_is_not_taken_for_a_stream() {
    use std::io::Write;
    use std::net::UdpSocket;
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;
    each_backend(|b| {
        let mut lp = new_loop(b);
        const BASE: i32 = 3200;
        // 1. A stream socket at number N: a receive parks, then gets a short read.
        let (a1, mut b1) = UnixStream::pair().unwrap();
        a1.set_nonblocking(true).unwrap();
        let n1 = runtime_tests::dup_high(a1.as_raw_fd(), BASE);
        drop(a1);
        let n = n1.as_raw_fd();
        let mut c = Box::pin(Completion::new());
        let first = runtime_tests::results();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: n,
                buf: Buffer::inline(16),
            },
            runtime_tests::record(&first),
        );
        lp.run(RunMode::NoWait).unwrap();
        b1.write_all(b"x").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(runtime_tests::only(&first), OpResult::Recv(Ok(1))));
        // Nothing names N any more when it closes (the Dead completion lets go of its op).
        drop(c.as_mut().take_op());
        // 2. N closed outside the loop (nothing pending on it), reused by a UDP socket
        //    with two datagrams queued.
        drop(n1);
        drop(b1);
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_nonblocking(true).unwrap();
        let un = runtime_tests::dup_high(u.as_raw_fd(), BASE);
        assert_eq!(un.as_raw_fd(), n, "the number is reused");
        // SAFETY: `un` is a UDP socket we own.
        let u2 = unsafe { UdpSocket::from_raw_fd(un.into_raw_fd()) };
        drop(u);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = u2.local_addr().unwrap();
        tx.send_to(b"1", to).unwrap();
        tx.send_to(b"2", to).unwrap();
        // 3. A receive on N that rearms: both datagrams must arrive.
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: n,
                buf: Buffer::inline(16),
            },
            move |_, c, r| {
                if let OpResult::Recv(Ok(k)) = r {
                    g.borrow_mut()
                        .push(c.buffer().unwrap().as_slice()[..k].to_vec());
                } else {
                    panic!("{r:?}");
                }
                if g.borrow().len() < 2 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        let n_got = results_within_2s(&mut lp, &got, 2);
        assert_eq!(
            n_got,
            2,
            "the second queued datagram was not received: {:?}",
            got.borrow()
        );
        drop(u2);
    });
}

/// A number closed outside the loop (nothing pending on it) and reused by a new socket:
/// a fresh receive on it that finishes at once (no park, so no registration refresh),
/// then rearms and parks, trusting the registration of the old file, which the kernel
/// dropped with it: no edge of the new socket is ever reported.
#[test]
fn a_rearm_on_a_reused_number_whose_first_attempt_did_not_park_is_woken() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    each_backend(|b| {
        let mut lp = new_loop(b);
        // 1. Number N registered (a receive parks), then read to the last byte (the
        //    cache still says readable); closed outside the loop, reused by another
        //    stream socket with data.
        let mut c = Box::pin(Completion::new());
        let (n2, mut b2) = a_registered_number_reused(&mut lp, c.as_mut(), 3300, 1);
        let n = n2.as_raw_fd();
        b2.write_all(b"y").unwrap();
        // 2. A receive that finishes at once, then rearms; more data comes later.
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: n,
                buf: Buffer::inline(16),
            },
            move |_, _, r| {
                g.borrow_mut().push(r);
                if g.borrow().len() < 2 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(got.borrow().len(), 1, "the first receive finished at once");
        b2.write_all(b"z").unwrap();
        let n_got = results_within_2s(&mut lp, &got, 2);
        assert_eq!(
            n_got,
            2,
            "the rearmed receive was never woken: {:?}",
            got.borrow()
        );
        drop(n2);
    });
}

/// The registration check a completion saw belongs to the fd it parked on: a completion
/// that parked on one socket, then had its operation moved to a reused number with
/// `op_mut` and was added again (a fresh start, no `prep`) that finished at once, must
/// not let its rearm trust the check made for the other socket.
#[test]
fn a_completion_moved_and_added_again_does_not_trust_a_check_made_for_another_fd() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    each_backend(|b| {
        let mut lp = new_loop(b);
        let mut c = Box::pin(Completion::new());
        let (n2, mut b2) = a_registered_number_reused(&mut lp, c.as_mut(), 3400, 1);
        let n = n2.as_raw_fd();
        b2.write_all(b"y").unwrap();
        // 1. A receive on another socket parks (its registration checked), gets its data
        //    and disarms.
        let (a3, mut b3) = UnixStream::pair().unwrap();
        a3.set_nonblocking(true).unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        lp.start(
            c.as_mut(),
            Op::Recv {
                fd: a3.as_raw_fd(),
                buf: Buffer::inline(16),
            },
            move |_, _, r| {
                g.borrow_mut().push(r);
                // The receive on N that finished at once rearms; the others disarm.
                if g.borrow().len() == 2 {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            },
        );
        lp.run(RunMode::NoWait).unwrap();
        assert!(got.borrow().is_empty(), "parked: no data yet");
        b3.write_all(b"z").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(got.borrow().len(), 1);
        // 2. Moved to N and added again: N has data, so it finishes without parking, and
        //    its callback rearms; more data comes later.
        *c.as_mut().op_mut().unwrap() = Op::Recv {
            fd: n,
            buf: Buffer::inline(16),
        };
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(got.borrow().len(), 2, "the receive on N finished at once");
        b2.write_all(b"w").unwrap();
        let n_got = results_within_2s(&mut lp, &got, 3);
        assert_eq!(
            n_got,
            3,
            "the rearmed receive on N was never woken: {:?}",
            got.borrow()
        );
        drop(n2);
    });
}

/// `Loop::shutdown` through `xev::rt::with_loop` on the runtime's own loop (safe code)
/// left every task whose I/O was pending waiting forever: no callback comes for an
/// abandoned operation (io_uring), and the poll backend forgot the wakers of tasks
/// waiting for an edge without one (epoll). Now those operations finish with an error
/// (`Canceled`) and those tasks are woken (and look again), and the runtime goes on.
#[test]
fn shutting_down_the_runtimes_loop_fails_its_pending_operations() {
    use std::io::Write;
    use std::time::Duration;
    each_backend(|b| {
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (first, second) = rt.block_on(async move {
            let s = xev::net::TcpStream::connect(addr).await.unwrap();
            let (mut peer, _) = l.accept().unwrap();
            let s = Rc::new(s);
            let s1 = s.clone();
            let reader = xev::spawn(async move { s1.read(vec![0u8; 8]).await.0.map(drop) });
            xev::time::sleep(Duration::from_millis(5)).await;
            xev::rt::with_loop(|lp| lp.shutdown());
            peer.write_all(b"hello").unwrap();
            let first = xev::time::timeout(Duration::from_secs(2), reader).await;
            // The runtime still works.
            peer.write_all(b"again").unwrap();
            let second = xev::time::timeout(Duration::from_secs(2), s.read(vec![0u8; 16])).await;
            (
                format!("{first:?}"),
                format!("{:?}", second.map(|(r, _)| r.is_ok())),
            )
        });
        assert!(
            !first.contains("Elapsed"),
            "{b:?}: the pending read never finished: {first}"
        );
        assert_eq!(second, "Ok(true)", "{b:?}: a read after the shutdown");
    });
}
