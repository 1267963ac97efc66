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
