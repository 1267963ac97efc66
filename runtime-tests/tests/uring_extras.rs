//! io_uring extras (issue 12, item 3): the SQPOLL knob, linked timeouts and zero-copy
//! sends. Each feature's semantics and errors on io_uring, and the same API on the poll
//! backend (where it falls back).

use std::time::Duration;

use xev::net::{TcpListener, TcpStream};
use xev::rt::Builder;
use xev::Backend;

/// Echo `rounds` messages of `size` bytes over one loopback connection on `rt`.
fn echo(rt: &xev::rt::Runtime, rounds: usize, size: usize) {
    rt.block_on(async move {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = xev::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; size];
            loop {
                let (r, b) = s.read(buf).await;
                buf = b;
                let n = r.unwrap();
                if n == 0 {
                    return;
                }
                let (r, b) = s.write_all(buf[..n].to_vec()).await;
                r.unwrap();
                drop(b);
            }
        });
        let c = TcpStream::connect(addr).await.unwrap();
        for i in 0..rounds {
            let msg = vec![(i % 251) as u8; size];
            let (r, _) = c.write_all(msg.clone()).await;
            r.unwrap();
            let (r, back) = c.read_exact(vec![0u8; size]).await;
            r.unwrap();
            assert_eq!(back, msg, "round {i}");
        }
        drop(c);
        server.await.unwrap();
    });
}

/// `Options::sqpoll` / `Builder::sqpoll`: on io_uring the ring gets a polling thread
/// (this kernel allows it unprivileged) and the echo test runs on it; on the poll
/// backend the knob is ignored and the same program runs.
#[test]
fn sqpoll_loop_runs_the_echo_test() {
    for b in Backend::available() {
        let rt = Builder::new()
            .backend(b)
            .sqpoll(Duration::from_millis(20))
            .build()
            .unwrap();
        let on = rt.block_on(async { xev::rt::with_loop(|lp| lp.uses_sqpoll()) });
        assert_eq!(on, b == Backend::IoUring, "{b:?}");
        echo(&rt, 200, 64);
        // Idle longer than the thread's idle time: it sleeps, and the next submission
        // must wake it.
        std::thread::sleep(Duration::from_millis(60));
        echo(&rt, 20, 4096);
        // A link timeout on the polled ring (its timespec is read by the kernel thread).
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (r, _) = c
                .read_timeout(vec![0u8; 8], Duration::from_millis(15))
                .await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut, "{b:?}");
        });
    }
}

/// A loop without the knob has no polling thread.
#[test]
fn no_sqpoll_by_default() {
    for b in Backend::available() {
        let lp = xev::Loop::new(xev::Options {
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        assert!(!lp.uses_sqpoll());
    }
}

// ---------------------------------------------------------------------------------------
// SEND_ZC

use std::cell::Cell;
use std::io::Read;
use std::net::TcpStream as StdStream;
use std::os::fd::AsRawFd;
use std::pin::pin;
use std::rc::Rc;

use runtime_tests::{new_loop, only, record, results};
use xev::{Buffer, CallbackAction, Completion, Op, OpResult, RunMode};

/// A connected loopback pair, both ends non-blocking.
fn std_pair() -> (StdStream, StdStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = StdStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

/// Read exactly `n` bytes from a non-blocking std stream.
fn read_n(s: &mut StdStream, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got < n {
        match s.read(&mut out[got..]) {
            Ok(0) => panic!("end of stream after {got} of {n}"),
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(std::time::Instant::now() < deadline, "timed out");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// The errno of a failed `SendZc`.
fn os_error(r: &OpResult) -> Option<i32> {
    match r {
        OpResult::SendZc(Err(xev::Error::Io(e))) => e.raw_os_error(),
        OpResult::SendZc(Ok(_)) => None,
        other => panic!("not a SendZc result: {other:?}"),
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// `Op::SendZc` through one completion rearmed 50 times: each callback gets the whole
/// count exactly once (a notification CQE arriving after the callback would finish the
/// rearmed completion early with a stale count, or touch a completion that is gone), the
/// buffer handed back in the callback is ours (overwriting it there never changes the
/// bytes the peer receives), and the loop ends with nothing in flight.
#[test]
fn send_zc_calls_back_once_per_send_after_the_kernel_lets_go() {
    runtime_tests::each_backend(|b| {
        const LEN: usize = 64 * 1024;
        const SENDS: usize = 50;
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        let reader = std::thread::spawn(move || read_n(&mut peer, LEN * SENDS));
        let counts = Rc::new(Cell::new(0usize));
        let n = counts.clone();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::SendZc {
                fd: a.as_raw_fd(),
                buf: Buffer::from(pattern(LEN, 0)),
            },
            move |_, mut c, r| {
                let sent = match r {
                    OpResult::SendZc(Ok(k)) => k,
                    other => panic!("{other:?}"),
                };
                let Some(Op::SendZc { buf, .. }) = c.as_mut().op_mut() else {
                    panic!("the op is readable in its callback")
                };
                // The rest of the buffer is sent next; what went out may be scribbled on.
                buf.as_mut_slice()[..sent].fill(0xEE);
                buf.advance(sent);
                if buf.is_empty() {
                    n.set(n.get() + 1);
                    if n.get() == SENDS {
                        return CallbackAction::Disarm;
                    }
                    buf.rewind();
                    buf.as_mut_slice()
                        .copy_from_slice(&pattern(LEN, n.get() as u8));
                }
                CallbackAction::Rearm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(counts.get(), SENDS);
        assert_eq!(lp.active(), 0);
        let got = reader.join().unwrap();
        for (i, chunk) in got.chunks(LEN).enumerate() {
            assert!(chunk == pattern(LEN, i as u8), "{b:?}: send {i} corrupted");
        }
    });
}

/// Errors: a closed fd is `EBADF`, a peer that closed is `EPIPE`/`ECONNRESET` (never a
/// signal), a zero-length send is `Ok(0)`.
#[test]
fn send_zc_errors() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        // A number far above anything open.
        let r = results();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::SendZc {
                fd: 1 << 20,
                buf: Buffer::from(vec![1u8; 100]),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(os_error(&only(&r)), Some(libc::EBADF), "{b:?}");

        let (a, peer) = std_pair();
        drop(peer);
        std::thread::sleep(Duration::from_millis(20));
        let mut failed = None;
        for _ in 0..20 {
            let r = results();
            lp.start(
                c.as_mut(),
                Op::SendZc {
                    fd: a.as_raw_fd(),
                    buf: Buffer::from(vec![1u8; 64 * 1024]),
                },
                record(&r),
            );
            lp.run(RunMode::UntilDone).unwrap();
            if let Some(e) = os_error(&only(&r)) {
                failed = Some(e);
                break;
            }
        }
        assert!(
            matches!(failed, Some(libc::EPIPE) | Some(libc::ECONNRESET)),
            "{b:?}: {failed:?}"
        );

        let (a, _peer) = std_pair();
        let r = results();
        lp.start(
            c.as_mut(),
            Op::SendZc {
                fd: a.as_raw_fd(),
                buf: Buffer::from(Vec::new()),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::SendZc(Ok(0))), "{b:?}");
    });
}

/// The async `write_all` with zero copy on (here from 16 KiB): 1 MiB arrives intact on
/// both backends, the buffer comes back whole, and small writes (under the threshold)
/// still work. A zero-copy write whose future is dropped while the peer does not read
/// (the send buffer is full) is cancelled, and the stream still works afterwards.
#[test]
fn write_all_zero_copy_above_the_threshold() {
    xev::net::set_send_zerocopy(Some(16 * 1024));
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let big = pattern(1 << 20, 7);
            let reader = xev::spawn(async move {
                let (r, got) = s.read_exact(vec![0u8; (1 << 20) + 5]).await;
                r.unwrap();
                (s, got)
            });
            let (r, back) = c.write_all(big.clone()).await;
            r.unwrap();
            assert_eq!(back, big, "the buffer comes back unchanged");
            let (r, _) = c.write(b"small".to_vec()).await;
            assert_eq!(r.unwrap(), 5);
            let (s, got) = reader.await.unwrap();
            assert!(got[..1 << 20] == big[..], "{b:?}: bytes differ");
            assert_eq!(&got[1 << 20..], b"small");

            // Nobody reads `s`: 16 MiB cannot all fit in the socket buffers.
            let r =
                xev::time::timeout(Duration::from_millis(100), c.write_all(vec![3u8; 16 << 20]))
                    .await;
            assert!(r.is_err(), "{b:?}: the write should not have finished");
            // The stream is usable: the peer drains and the client writes again.
            let drain = xev::spawn(async move {
                let mut total = 0usize;
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let (r, b) = s.read(buf).await;
                    buf = b;
                    match r.unwrap() {
                        0 => return total,
                        n => total += n,
                    }
                }
            });
            let (r, _) = c.write_all(vec![4u8; 100_000]).await;
            r.unwrap();
            c.close().await.unwrap();
            assert!(drain.await.unwrap() >= 100_000);
        });
    }
}

// ---------------------------------------------------------------------------------------
// Link timeouts

use std::time::Instant;
use xev::{Loop, ReadError};

/// Whether `r` is a read that failed with `TimedOut`.
fn read_timed_out(r: &OpResult) -> bool {
    matches!(r, OpResult::Read(Err(ReadError::Io(e))) | OpResult::Recv(Err(ReadError::Io(e)))
        if e.kind() == std::io::ErrorKind::TimedOut)
}

fn recv(fd: i32) -> Op {
    Op::Recv {
        fd,
        buf: Buffer::from(vec![0u8; 64]),
    }
}

/// A recv on an idle socket with a 30 ms limit fails with `TimedOut` (`ETIMEDOUT`,
/// from io_uring's `ETIME`/`ECANCELED` pair), not earlier than the limit and well before
/// a second; the loop then holds nothing.
#[test]
fn link_timeout_fires_on_an_idle_socket() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, _peer) = std_pair();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        let t0 = Instant::now();
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(30));
        lp.run(RunMode::UntilDone).unwrap();
        let took = t0.elapsed();
        let res = only(&r);
        assert!(read_timed_out(&res), "{b:?}: {res:?}");
        assert!(
            took >= Duration::from_millis(29),
            "{b:?}: fired after {took:?}"
        );
        assert!(took < Duration::from_secs(1), "{b:?}: fired after {took:?}");
        assert_eq!(lp.active(), 0);
    });
}

/// Data arriving before the limit: the recv gets it, and nothing fires later (the loop
/// is idle, and a recv added afterwards without a limit is not cut short by the old
/// limit: `add` clears it).
#[test]
fn link_timeout_does_not_fire_when_data_arrives() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(40));
        std::io::Write::write_all(&mut peer, b"hello").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(5))), "{b:?}");
        assert_eq!(lp.active(), 0);

        // The same completion, plain add: data comes after the old limit.
        let r = results();
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        let w = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(80));
            std::io::Write::write_all(&mut peer, b"late").unwrap();
            peer
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(4))), "{b:?}");
        drop(w.join().unwrap());
    });
}

/// A rearmed operation keeps its limit: three recvs in a row time out, and the loop ends.
#[test]
fn link_timeout_survives_rearm() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, _peer) = std_pair();
        let n = Rc::new(Cell::new(0));
        let m = n.clone();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), move |_, _, r| {
            assert!(read_timed_out(&r), "{r:?}");
            m.set(m.get() + 1);
            if m.get() < 3 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        let t0 = Instant::now();
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(10));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(n.get(), 3, "{b:?}");
        assert!(t0.elapsed() >= Duration::from_millis(29), "{b:?}");
    });
}

/// Cancelling an operation that has a limit reports `Canceled`, not `TimedOut`.
#[test]
fn link_timeout_cancel_is_canceled() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, _peer) = std_pair();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_secs(30));
        lp.run(RunMode::NoWait).unwrap();
        let cr = results();
        let mut cancel = pin!(Completion::new());
        lp.cancel(cancel.as_mut(), &c, record(&cr));
        let t0 = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(
            matches!(only(&r), OpResult::Recv(Err(ReadError::Canceled))),
            "{b:?}"
        );
        assert!(matches!(only(&cr), OpResult::Cancel(Ok(()))), "{b:?}");
    });
}

/// A limit on an accept: `TimedOut` with no client; with a client waiting, the
/// connection.
#[test]
fn link_timeout_on_accept() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut()
            .prep(Op::Accept { fd: l.as_raw_fd() }, record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(20));
        lp.run(RunMode::UntilDone).unwrap();
        match only(&r) {
            OpResult::Accept(Err(xev::Error::Io(e))) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{b:?}")
            }
            other => panic!("{b:?}: {other:?}"),
        }
        let _client = StdStream::connect(l.local_addr().unwrap()).unwrap();
        let r = results();
        c.as_mut()
            .prep(Op::Accept { fd: l.as_raw_fd() }, record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_secs(5));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Accept(Ok(_))), "{b:?}");
    });
}

/// Operations that never wait ignore the limit: a 30 ms timer with a 1 ms limit expires
/// normally.
#[test]
fn link_timeout_is_ignored_by_timers() {
    runtime_tests::each_backend(|b| {
        let mut lp: Loop = new_loop(b);
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(Op::Timer { ms: 30 }, record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(1));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            matches!(only(&r), OpResult::Timer(xev::TimerTrigger::Expiration)),
            "{b:?}"
        );
    });
}

/// Async: `read_timeout` times out with the buffer back, the stream loses no byte (data
/// sent after the timeout is read next), and a dropped `read_timeout` future is
/// cancelled cleanly; `accept_timeout` times out, then accepts.
#[test]
fn read_and_accept_timeout_async() {
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let e = l
                .accept_timeout(Duration::from_millis(20))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{b:?}");
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept_timeout(Duration::from_secs(5)).await.unwrap();

            let t0 = Instant::now();
            let (r, buf) = c
                .read_timeout(vec![0u8; 32], Duration::from_millis(25))
                .await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut, "{b:?}");
            assert!(t0.elapsed() >= Duration::from_millis(24));
            assert_eq!(buf.capacity(), 32);

            s.write_all(b"abc".to_vec()).await.0.unwrap();
            let (r, buf) = c.read_timeout(buf, Duration::from_secs(5)).await;
            assert_eq!(r.unwrap(), 3, "{b:?}");
            assert_eq!(&buf[..3], b"abc");

            // Dropped in flight: the read is cancelled; later bytes go to the next read.
            let fut = c.read_timeout(vec![0u8; 8], Duration::from_secs(30));
            let r = xev::time::timeout(Duration::from_millis(10), fut).await;
            assert!(r.is_err());
            s.write_all(b"xyz".to_vec()).await.0.unwrap();
            let (r, buf) = c.read(vec![0u8; 8]).await;
            assert_eq!(r.unwrap(), 3, "{b:?}");
            assert_eq!(&buf[..3], b"xyz");
        });
    }
}

// ---------------------------------------------------------------------------------------
// Registered (fixed) files

/// The registered slot of `fd` on the current runtime's loop.
fn slot_of(fd: i32) -> Option<u32> {
    xev::rt::with_loop(|lp| lp.registered_slot(fd))
}

/// A slot is not reused while an orphaned read still names its old fd, and once reused
/// by a new connection, the orphan (cancelled) never touched it: the new connection gets
/// exactly the bytes its peer sent. On the poll backend the option is ignored and the
/// same program runs.
#[test]
fn fixed_slot_reuse_cannot_mix_connections() {
    for b in Backend::available() {
        let rt = Builder::new().backend(b).fixed_files(true).build().unwrap();
        rt.block_on(async {
            let uring = b == Backend::IoUring;
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let a = TcpStream::connect(addr).await.unwrap();
            let (sa, _) = l.accept().await.unwrap();
            let a_fd = a.as_raw_fd();
            let slot_a = slot_of(a_fd);
            assert_eq!(slot_a.is_some(), uring, "{b:?}");

            // An orphaned read on `a` (cancel in flight), then `a` dropped: its fd, and
            // its slot, stay until the orphan's completion arrives.
            let r = xev::time::timeout(Duration::from_millis(1), a.read(vec![0u8; 64])).await;
            assert!(r.is_err());
            drop(a);
            assert_eq!(slot_of(a_fd), slot_a, "{b:?}: slot freed under an orphan");
            let bconn = TcpStream::connect(addr).await.unwrap();
            let (sb, _) = l.accept().await.unwrap();
            if uring {
                assert_ne!(
                    slot_of(bconn.as_raw_fd()),
                    slot_a,
                    "slot reused under an orphan"
                );
            }

            // Let the orphan finish: the fd closes and its slot is free again.
            xev::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(slot_of(a_fd), None, "{b:?}");
            let c = TcpStream::connect(addr).await.unwrap();
            let (sc, _) = l.accept().await.unwrap();
            if uring {
                assert_eq!(slot_of(c.as_raw_fd()), slot_a, "the freed slot is reused");
            }
            // Bytes for the old connection go nowhere near the new one.
            let _ = sa.write_all(b"for-a".to_vec()).await;
            sc.write_all(b"for-c".to_vec()).await.0.unwrap();
            sb.write_all(b"for-b".to_vec()).await.0.unwrap();
            let (r, got) = c.read_exact(vec![0u8; 5]).await;
            r.unwrap();
            assert_eq!(got, b"for-c", "{b:?}");
            let (r, got) = bconn.read_exact(vec![0u8; 5]).await;
            r.unwrap();
            assert_eq!(got, b"for-b", "{b:?}");

            // Closing through the loop frees the slot too.
            let c_fd = c.as_raw_fd();
            c.close().await.unwrap();
            assert_eq!(slot_of(c_fd), None, "{b:?}");
            // Errors are unchanged on a registered fd: a read after the peer closed is
            // end of stream, a write then fails.
            drop(sb);
            let (r, _) = bconn.read(vec![0u8; 8]).await;
            assert_eq!(r.unwrap(), 0, "{b:?}");
        });
        echo(&rt, 50, 1024);
    }
}

/// Without the option no slot: the default is off unless `XEV_URING_FIXED_FILES=1`
/// (then on for io_uring).
#[test]
fn fixed_files_off_by_default() {
    let env_on = std::env::var_os("XEV_URING_FIXED_FILES").is_some_and(|v| v == "1");
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let want = env_on && b == Backend::IoUring;
            assert_eq!(slot_of(c.as_raw_fd()).is_some(), want, "{b:?}");
        });
    }
}

/// Callback API: `Loop::register_file` gives a socket a slot on io_uring (false on the
/// poll backend); sends and recvs on it work, a bad fd is refused, and an `Op::Close`
/// through the loop empties the slot and really closes the socket (the peer sees end of
/// stream: the table no longer holds the file).
#[test]
fn register_file_callback_api() {
    runtime_tests::each_backend(|b| {
        let mut lp = Loop::new(xev::Options {
            backend: Some(b),
            fixed_files: true,
            ..Default::default()
        })
        .unwrap();
        let uring = b == Backend::IoUring;
        assert!(!lp.register_file(1 << 20), "{b:?}: a closed fd got a slot");
        let (a, mut peer) = std_pair();
        let fd = a.as_raw_fd();
        assert_eq!(lp.register_file(fd), uring, "{b:?}");
        assert_eq!(lp.registered_slot(fd).is_some(), uring, "{b:?}");

        let r = results();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::Send {
                fd,
                buf: Buffer::from(b"ping".to_vec()),
            },
            record(&r),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Send(Ok(4))), "{b:?}");
        assert_eq!(read_n(&mut peer, 4), b"ping");
        std::io::Write::write_all(&mut peer, b"pong").unwrap();
        let r = results();
        lp.start(c.as_mut(), recv(fd), record(&r));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(4))), "{b:?}");

        let r = results();
        lp.start(c.as_mut(), Op::close(a), record(&r));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Close(Ok(()))), "{b:?}");
        assert_eq!(lp.registered_slot(fd), None);
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            peer.read(&mut buf).unwrap(),
            0,
            "{b:?}: the socket stayed open"
        );
    });
}

/// Many operations with a long limit that finish early (on the poll backend their
/// timer entries are pruned once they outnumber the live operations), then one with a
/// short limit among live ones with long limits: it still times out on time, and the
/// live ones are untouched (they finish with their data).
#[test]
fn link_timeouts_of_finished_operations_do_not_pile_up() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        let mut c = pin!(Completion::new());
        for i in 0..3000u32 {
            let r = results();
            c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
            lp.add_with_timeout(c.as_mut(), Duration::from_secs(3600));
            lp.run(RunMode::NoWait).unwrap(); // parks
            std::io::Write::write_all(&mut peer, &i.to_le_bytes()).unwrap();
            lp.run(RunMode::UntilDone).unwrap();
            assert!(matches!(only(&r), OpResult::Recv(Ok(4))), "{b:?} #{i}");
        }
        let (x, mut xpeer) = std_pair();
        let long = results();
        let mut lc = pin!(Completion::new());
        lc.as_mut().prep(recv(x.as_raw_fd()), record(&long));
        lp.add_with_timeout(lc.as_mut(), Duration::from_secs(3600));
        let short = results();
        c.as_mut().prep(recv(a.as_raw_fd()), record(&short));
        let t0 = Instant::now();
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(20));
        lp.run(RunMode::Once).unwrap();
        assert!(read_timed_out(&only(&short)), "{b:?}");
        assert!(t0.elapsed() < Duration::from_secs(2));
        std::io::Write::write_all(&mut xpeer, b"x").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&long), OpResult::Recv(Ok(1))), "{b:?}");
    });
}

/// A limit on an operation that borrows scratch space (recvmsg): the result and the
/// sender's address survive the two-CQE wait on io_uring (the wait state is kept beside
/// the completion, not in its result word); with no datagram, `TimedOut`.
#[test]
fn link_timeout_on_recvmsg_keeps_the_sender() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let recvmsg = || Op::RecvMsg {
            fd: rx.as_raw_fd(),
            buf: Buffer::from(vec![0u8; 64]),
        };
        let mut c = pin!(Completion::new());
        // Datagram sent while the recvmsg waits in the kernel / on readiness.
        let r = results();
        c.as_mut().prep(recvmsg(), record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_secs(5));
        lp.run(RunMode::NoWait).unwrap();
        tx.send_to(b"ping", rx.local_addr().unwrap()).unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        match only(&r) {
            OpResult::RecvMsg(Ok((4, Some(from)))) => {
                assert_eq!(from, tx.local_addr().unwrap(), "{b:?}")
            }
            other => panic!("{b:?}: {other:?}"),
        }
        // Datagram already there.
        tx.send_to(b"pong!", rx.local_addr().unwrap()).unwrap();
        let r = results();
        c.as_mut().prep(recvmsg(), record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_secs(5));
        lp.run(RunMode::UntilDone).unwrap();
        match only(&r) {
            OpResult::RecvMsg(Ok((5, Some(from)))) => {
                assert_eq!(from, tx.local_addr().unwrap(), "{b:?}")
            }
            other => panic!("{b:?}: {other:?}"),
        }
        // Nothing sent: the limit fires.
        let r = results();
        c.as_mut().prep(recvmsg(), record(&r));
        lp.add_with_timeout(c.as_mut(), Duration::from_millis(10));
        lp.run(RunMode::UntilDone).unwrap();
        match only(&r) {
            OpResult::RecvMsg(Err(ReadError::Io(e))) => {
                assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{b:?}")
            }
            other => panic!("{b:?}: {other:?}"),
        }
    });
}

// ---------------------------------------------------------------------------------------
// IORING_RECVSEND_POLL_FIRST: on io_uring a rearmed receive whose previous one returned
// data and emptied the socket asks the kernel to wait for data before trying
// (`XEV_URING_POLL_FIRST=1`: every receive; `=0`: none). Each test runs on both backends:
// the poll backend must behave the same. Run also with XEV_URING_POLL_FIRST=1.

use std::io::Write;

/// The bytes a finished receive left in `c`'s buffer.
fn received(c: &Completion, n: usize) -> Vec<u8> {
    c.buffer().expect("a buffer").as_slice()[..n].to_vec()
}

/// Bytes queued before the receive is issued come at once; bytes that arrive while it
/// waits in the kernel come when they arrive.
#[test]
fn poll_first_recv_gets_queued_and_later_data() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        peer.write_all(b"queued").unwrap();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        let t0 = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2), "{b:?}");
        assert!(matches!(only(&r), OpResult::Recv(Ok(6))), "{b:?}");
        assert_eq!(received(&c, 6), b"queued", "{b:?}");

        let r = results();
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        assert!(r.borrow().is_empty(), "{b:?}: finished with no data");
        let w = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            peer.write_all(b"later").unwrap();
            peer
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(5))), "{b:?}");
        assert_eq!(received(&c, 5), b"later", "{b:?}");
        drop(w.join().unwrap());
    });
}

/// Request/response through one rearmed completion (each receive empties the socket, so
/// the next one polls first): 300 messages, written by the callback itself (already
/// queued when the rearmed receive is issued) or by a thread a little later, all arrive
/// intact and in order.
#[test]
fn poll_first_rearmed_recv_request_response() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, peer) = std_pair();
        let peer = Rc::new(std::cell::RefCell::new(peer));
        let (tx, rx) = std::sync::mpsc::channel::<u8>();
        let tx = Rc::new(std::cell::RefCell::new(Some(tx)));
        let late_peer = peer.borrow().try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut p = late_peer;
            for i in rx {
                std::thread::sleep(Duration::from_micros(300));
                p.write_all(&[i; 16]).unwrap();
            }
        });
        let got = Rc::new(Cell::new(0u32));
        let (g, p, t) = (got.clone(), peer.clone(), tx.clone());
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), move |_, c, res| {
            let OpResult::Recv(Ok(16)) = res else {
                panic!("round {}: {res:?}", g.get());
            };
            let i = g.get() as u8;
            assert_eq!(received(&c, 16), [i; 16], "round {}", g.get());
            g.set(g.get() + 1);
            if g.get() == 300 {
                return CallbackAction::Disarm;
            }
            let next = g.get() as u8;
            if next.is_multiple_of(2) {
                p.borrow_mut().write_all(&[next; 16]).unwrap();
            } else {
                t.borrow().as_ref().unwrap().send(next).unwrap();
            }
            CallbackAction::Rearm
        });
        peer.borrow_mut().write_all(&[0u8; 16]).unwrap();
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(got.get(), 300, "{b:?}");
        tx.borrow_mut().take(); // the writer's channel closes
        writer.join().unwrap();
    });
}

/// End of stream: the last bytes, then 0, through a rearmed receive; a fresh receive
/// on a socket whose peer is already gone gets 0 at once.
#[test]
fn poll_first_recv_end_of_stream() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        let r = results();
        let r2 = r.clone();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), move |_, _, res| {
            let end = matches!(res, OpResult::Recv(Err(_)));
            r2.borrow_mut().push(res);
            match end {
                true => CallbackAction::Disarm,
                false => CallbackAction::Rearm,
            }
        });
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        let w = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(b"bye").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            drop(peer);
        });
        lp.run(RunMode::UntilDone).unwrap();
        w.join().unwrap();
        let v = r.borrow();
        assert!(
            matches!(
                v[..],
                [OpResult::Recv(Ok(3)), OpResult::Recv(Err(ReadError::Eof))]
            ),
            "{b:?}: {v:?}"
        );
        drop(v);

        let r = results();
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        let t0 = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2), "{b:?}");
        assert!(
            matches!(only(&r), OpResult::Recv(Err(ReadError::Eof))),
            "{b:?}"
        );
    });
}

/// Bad input gets an error, not a hang, and the loop keeps working: a number that is no
/// fd (`EBADF`), a pipe (`ENOTSOCK`); then a good receive on the same loop.
#[test]
fn poll_first_recv_errors() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (pr, mut pw) = std::io::pipe().unwrap();
        // Readable, so that even a receive polled first (`XEV_URING_POLL_FIRST=1`) tries.
        pw.write_all(b"x").unwrap();
        for (fd, errno) in [(1_000_000, libc::EBADF), (pr.as_raw_fd(), libc::ENOTSOCK)] {
            let r = results();
            let mut c = pin!(Completion::new());
            c.as_mut().prep(recv(fd), record(&r));
            lp.add(c.as_mut());
            let t0 = Instant::now();
            lp.run(RunMode::UntilDone).unwrap();
            assert!(t0.elapsed() < Duration::from_secs(2), "{b:?}");
            let res = only(&r);
            assert_eq!(runtime_tests::os_error(&res), Some(errno), "{b:?}: {res:?}");
        }
        let (a, mut peer) = std_pair();
        peer.write_all(b"ok").unwrap();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(2))), "{b:?}");
    });
}

/// Cancelling a receive that waits for data (polled first, on io_uring): `Canceled`, and
/// it took nothing: bytes written afterwards go to the next receive.
#[test]
fn poll_first_recv_cancel() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, mut peer) = std_pair();
        let r = results();
        let mut c = pin!(Completion::new());
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        let cr = results();
        let mut cancel = pin!(Completion::new());
        lp.cancel(cancel.as_mut(), &c, record(&cr));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            matches!(only(&r), OpResult::Recv(Err(ReadError::Canceled))),
            "{b:?}"
        );
        assert!(matches!(only(&cr), OpResult::Cancel(Ok(()))), "{b:?}");
        assert_eq!(lp.active(), 0, "{b:?}");

        peer.write_all(b"after").unwrap();
        let r = results();
        c.as_mut().prep(recv(a.as_raw_fd()), record(&r));
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::Recv(Ok(5))), "{b:?}");
        assert_eq!(received(&c, 5), b"after", "{b:?}");
    });
}

/// A datagram receive (`Op::RecvMsg`, which polls first only with `XEV_URING_POLL_FIRST=1`;
/// this checks its results either way): a datagram queued before
/// it, then one sent while it waits, each with its sender's address.
#[test]
fn poll_first_recvmsg_datagrams() {
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, from) = (rx.local_addr().unwrap(), tx.local_addr().unwrap());
        tx.send_to(b"first", to).unwrap();
        for (i, want) in [&b"first"[..], b"second!"].into_iter().enumerate() {
            let r = results();
            let mut c = pin!(Completion::new());
            let op = Op::RecvMsg {
                fd: rx.as_raw_fd(),
                buf: Buffer::from(vec![0u8; 64]),
            };
            c.as_mut().prep(op, record(&r));
            lp.add(c.as_mut());
            if i == 1 {
                lp.run(RunMode::NoWait).unwrap();
                assert!(r.borrow().is_empty(), "{b:?}");
                tx.send_to(want, to).unwrap();
            }
            lp.run(RunMode::UntilDone).unwrap();
            match only(&r) {
                OpResult::RecvMsg(Ok((n, addr))) => {
                    assert_eq!(n, want.len(), "{b:?}");
                    assert_eq!(addr, Some(from), "{b:?}");
                    assert_eq!(received(&c, n), want, "{b:?}");
                }
                other => panic!("{b:?}: {other:?}"),
            }
        }
    });
}

/// A streaming transfer of 4 MiB (data keeps arriving, so receives often leave bytes
/// behind and the next one skips the poll) through one rearmed 64 KiB receive: every
/// byte arrives, in order.
#[test]
fn poll_first_streaming_transfer_is_intact() {
    const TOTAL: usize = 4 << 20;
    runtime_tests::each_backend(|b| {
        let mut lp = new_loop(b);
        let (a, peer) = std_pair();
        let writer = std::thread::spawn(move || {
            peer.set_nonblocking(false).unwrap();
            let mut p = peer;
            let data = pattern(TOTAL, 7);
            for chunk in data.chunks(100_000) {
                p.write_all(chunk).unwrap();
            }
        });
        let want = pattern(TOTAL, 7);
        let got = Rc::new(std::cell::RefCell::new(Vec::with_capacity(TOTAL)));
        let g = got.clone();
        let mut c = pin!(Completion::new());
        let op = Op::Recv {
            fd: a.as_raw_fd(),
            buf: Buffer::from(vec![0u8; 64 << 10]),
        };
        c.as_mut().prep(op, move |_, c, res| match res {
            OpResult::Recv(Err(ReadError::Eof)) => CallbackAction::Disarm,
            OpResult::Recv(Ok(n)) => {
                g.borrow_mut().extend_from_slice(&received(&c, n));
                CallbackAction::Rearm
            }
            other => panic!("{other:?}"),
        });
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        writer.join().unwrap();
        assert!(*got.borrow() == want, "{b:?}: {} bytes", got.borrow().len());
    });
}

/// The same streaming transfer through the async runtime (a fresh op slot per read),
/// and request/response after it on the same connection.
#[test]
fn poll_first_streaming_transfer_async() {
    const TOTAL: usize = 4 << 20;
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async move {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let sender = xev::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                s.write_all(pattern(TOTAL, 3)).await.0.unwrap();
                let (r, buf) = s.read_exact(vec![0u8; 4]).await;
                r.unwrap();
                assert_eq!(buf, b"ping");
                s.write_all(b"pong".to_vec()).await.0.unwrap();
            });
            let c = TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::with_capacity(TOTAL);
            let mut buf = vec![0u8; 32 << 10];
            while got.len() < TOTAL {
                let (r, b2) = c.read(buf).await;
                buf = b2;
                let n = r.unwrap();
                assert!(n > 0, "end of stream after {}", got.len());
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got == pattern(TOTAL, 3), "{b:?}");
            c.write_all(b"ping".to_vec()).await.0.unwrap();
            let (r, buf) = c.read_exact(vec![0u8; 4]).await;
            r.unwrap();
            assert_eq!(buf, b"pong", "{b:?}");
            sender.await.unwrap();
        });
    }
}
