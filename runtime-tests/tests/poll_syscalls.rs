//! The poll backend's readiness cache, counted: the attempts it makes that only find
//! `EAGAIN` (`Loop::poll_eagain_attempts`, a hidden per-loop counter).
//!
//! - Request/response traffic (the HTTP hello server under keep-alive and pipelined
//!   requests, TCP round trips between two tasks) makes no such attempt per request:
//!   after a short read the next read waits for an edge instead of asking the kernel, and
//!   the edge that follows still completes it. Unix-stream round trips make one per read:
//!   a Unix stream read stops short after bytes that carried descriptors, with more
//!   queued and no edge coming, so a short read there is not "drained"
//!   (`review5_poll_fs_process.rs::an_async_unix_read_gets_the_bytes_behind_passed_...`).
//! - A bulk `write_all` into a slow reader (TCP through `xev::net`, a pipe through the
//!   callback API's `WriteQueue`) makes no attempt per short write: a short write on a
//!   stream means its buffer is full, so the next write waits for the edge that room
//!   brings (and still gets every byte through, in order).
//! - Datagram sockets never take a short read for "drained": two datagrams queued at once
//!   are both read, without a new edge for the second.
//!
//! These tests run on the epoll backend only (io_uring makes no attempts of its own).
//! With `XEV_EPOLL_VIA_POLLING=1` the readiness comes from the `polling` crate, which
//! cannot report a peer's hang-up, so the short-read and short-write rules are off there:
//! the bounds are then one attempt per read (the cache still saves any second one), and
//! the traffic must still be complete and in order.

#[allow(dead_code)] // the example's `main`
#[path = "../../examples/http_hello.rs"]
mod http_hello;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use xev::net::{TcpListener, TcpStream, UdpSocket, UnixDatagram, UnixStream};
use xev::time::{sleep, timeout};

/// How long any exchange may take before the test fails (a lost wake-up hangs).
const LIMIT: Duration = Duration::from_secs(20);

/// A runtime on the epoll backend.
fn epoll_runtime() -> xev::rt::Runtime {
    xev::rt::Builder::new()
        .backend(xev::Backend::Epoll)
        .build()
        .expect("epoll runtime")
}

/// The EAGAIN attempts of the current runtime's loop so far.
fn eagain() -> u64 {
    xev::rt::with_loop(|lp| lp.poll_eagain_attempts())
}

/// Whether the poll backend takes its readiness from the `polling` crate (which reports
/// no hang-up, so the short-read and short-write rules are off).
fn via_polling() -> bool {
    std::env::var_os("XEV_EPOLL_VIA_POLLING").is_some_and(|v| v != "0")
}

/// The HTTP request every client round sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Blocking client: `conns` kept-alive connections; `rounds` rounds of one request on
/// every connection (all written, then all answered), then `batches` rounds of `depth`
/// pipelined requests in one write. Every response is checked byte for byte. Returns the
/// number of reads the server needed at most (one per write of the client).
fn http_client(addr: SocketAddr, conns: usize, rounds: usize, batches: usize, depth: usize) -> u64 {
    let mut streams: Vec<std::net::TcpStream> = (0..conns)
        .map(|_| {
            let s = std::net::TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(LIMIT)).expect("read timeout");
            s
        })
        .collect();
    let mut writes = 0;
    let mut exchange = |streams: &mut Vec<std::net::TcpStream>, n: usize| {
        let batch = REQUEST.repeat(n);
        for s in streams.iter_mut() {
            s.write_all(&batch).expect("write");
            writes += 1;
        }
        let want = http_hello::OK.repeat(n);
        for s in streams.iter_mut() {
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got).expect("read the responses");
            assert_eq!(got, want, "responses");
        }
    };
    for _ in 0..rounds {
        exchange(&mut streams, 1);
    }
    for _ in 0..batches {
        exchange(&mut streams, depth);
    }
    writes
}

#[test]
fn http_keep_alive_and_pipelined_requests_make_no_eagain_attempts() {
    const CONNS: usize = 4;
    epoll_runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        xev::spawn(async move {
            let r = http_hello::serve(listener).await;
            panic!("serve returned {r:?}");
        });
        let before = eagain();
        let client = xev::spawn_blocking(move || http_client(addr, CONNS, 300, 30, 16));
        let writes = timeout(LIMIT * 2, client)
            .await
            .expect("the client timed out")
            .expect("the client panicked");
        let attempts = eagain() - before;
        // Per connection: the accept after it may find the backlog empty, and its first
        // read may come before the request. Nothing per request.
        let setup = 2 * CONNS as u64 + 2;
        if via_polling() {
            assert!(
                attempts <= writes + setup,
                "{attempts} EAGAIN attempts for {writes} client writes"
            );
        } else {
            assert!(
                attempts <= setup,
                "{attempts} EAGAIN attempts for {writes} client writes ({CONNS} connections)"
            );
        }
    });
}

/// `n` round trips of 64-byte messages between `a` (client) and `b` (echo server), both
/// tasks of the current runtime; checks every echo. Returns the EAGAIN attempts made
/// after the first round trip.
macro_rules! round_trips {
    ($a:expr, $b:expr, $n:expr) => {{
        let (a, b, n) = ($a, $b, $n);
        let server = xev::spawn(async move {
            let mut buf: Box<[u8]> = vec![0u8; 4096].into_boxed_slice();
            loop {
                let (r, got) = b.read(buf).await;
                let k = r.expect("server read");
                if k == 0 {
                    return;
                }
                let (w, back) = b.write_all(got[..k].to_vec()).await;
                w.expect("server write");
                drop(back);
                buf = got;
            }
        });
        let mut buf: Box<[u8]> = vec![0u8; 4096].into_boxed_slice();
        let mut start = None;
        for i in 0..n {
            if i == 1 {
                start = Some(eagain());
            }
            let msg: Vec<u8> = (0..64u8).map(|x| x.wrapping_add(i as u8)).collect();
            let (w, _) = a.write_all(msg.clone()).await;
            w.expect("client write");
            let mut got = Vec::new();
            while got.len() < msg.len() {
                let (r, b2) = a.read(buf).await;
                let k = r.expect("client read");
                assert!(
                    k > 0,
                    "end of stream after {} of {} bytes",
                    got.len(),
                    msg.len()
                );
                got.extend_from_slice(&b2[..k]);
                buf = b2;
            }
            assert_eq!(got, msg, "echo of round trip {i}");
        }
        let attempts = eagain() - start.expect("at least two round trips");
        drop(a);
        server.await.expect("server task");
        attempts
    }};
}

/// The bound on EAGAIN attempts for `n` round trips (after the first): none on raw epoll
/// (a little slack), one per read (two reads per round trip) on `polling`.
fn round_trip_bound(n: u64) -> u64 {
    if via_polling() {
        2 * n + 2
    } else {
        2
    }
}

#[test]
fn tcp_round_trips_make_no_eagain_attempts() {
    const N: u64 = 500;
    epoll_runtime().block_on(async {
        timeout(LIMIT, async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            let (a, (b, _)) = {
                let accept = xev::spawn(async move { listener.accept().await.expect("accept") });
                let a = TcpStream::connect(addr).await.expect("connect");
                (a, accept.await.expect("accept task"))
            };
            a.set_nodelay(true).expect("nodelay");
            b.set_nodelay(true).expect("nodelay");
            let attempts = round_trips!(a, b, N as usize);
            assert!(
                attempts <= round_trip_bound(N - 1),
                "{attempts} EAGAIN attempts over {} TCP round trips",
                N - 1
            );
        })
        .await
        .expect("the round trips timed out (a lost wake-up?)");
    });
}

#[test]
fn unix_stream_round_trips_make_at_most_one_eagain_attempt_per_read() {
    const N: u64 = 500;
    epoll_runtime().block_on(async {
        timeout(LIMIT, async {
            let (a, b) = UnixStream::pair().expect("pair");
            let attempts = round_trips!(a, b, N as usize);
            // At most one per read (two reads per round trip): the short-read rule is off
            // for Unix streams (see the module docs); the cache still saves any second.
            assert!(
                attempts <= 2 * (N - 1) + 2,
                "{attempts} EAGAIN attempts over {} Unix-stream round trips",
                N - 1
            );
        })
        .await
        .expect("the round trips timed out (a lost wake-up?)");
    });
}

/// Set `SO_SNDBUF` or `SO_RCVBUF` (`opt`) on `fd` to `bytes`.
fn set_buf(fd: &impl AsRawFd, opt: libc::c_int, bytes: libc::c_int) {
    // SAFETY: setsockopt reads an int from a live local.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "setsockopt: {}", std::io::Error::last_os_error());
}

/// The bytes of the bulk transfer: position-dependent, so a lost or repeated chunk shows.
fn bulk(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn bulk_writes_into_a_slow_reader_make_no_eagain_attempt_per_short_write() {
    const LEN: usize = 4 << 20;
    const CHUNK: usize = 256 << 10;
    epoll_runtime().block_on(async {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local_addr");
        // The reader: a plain thread, reading 4 KiB at a time with small pauses, so the
        // writer's small send buffer fills again and again.
        let reader = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            set_buf(&s, libc::SO_RCVBUF, 16 << 10);
            s.set_read_timeout(Some(LIMIT)).expect("read timeout");
            let mut all = Vec::with_capacity(LEN);
            let mut buf = [0u8; 4096];
            let mut reads = 0u32;
            loop {
                let n = s.read(&mut buf).expect("reader read");
                if n == 0 {
                    return all;
                }
                all.extend_from_slice(&buf[..n]);
                reads += 1;
                if reads.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        let w = TcpStream::connect(addr).await.expect("connect");
        set_buf(&w, libc::SO_SNDBUF, 16 << 10);
        let data = bulk(LEN);
        let before = eagain();
        let mut sends = 0u64;
        timeout(LIMIT, async {
            // write_all in chunks: each chunk needs several sends, most of them short.
            for chunk in data.chunks(CHUNK) {
                let (r, _) = w.write_all(chunk.to_vec()).await;
                r.expect("write_all");
                sends += 1;
            }
        })
        .await
        .expect("the writes timed out (a lost wake-up after a short write?)");
        let attempts = eagain() - before;
        drop(w);
        let got = xev::spawn_blocking(move || reader.join())
            .await
            .expect("join task")
            .expect("reader thread");
        assert_eq!(got.len(), LEN, "bytes received");
        assert!(got == data, "the bytes arrived altered");
        if !via_polling() {
            // Each write_all starts with an attempt the cache allows (the previous one
            // ended with a full send); its short sends then wait for room.
            assert!(
                attempts <= sends,
                "{attempts} EAGAIN attempts for {LEN} bytes written in {sends} write_all calls"
            );
        }
    });
}

#[test]
fn queued_datagrams_are_all_read_after_a_short_one() {
    // A short datagram says nothing about the queue: the second one, queued at the same
    // time, must be read without a new edge.
    epoll_runtime().block_on(async {
        timeout(LIMIT, async {
            let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            a.connect(peer.local_addr().unwrap()).expect("connect");
            peer.connect(a.local_addr().unwrap()).expect("connect");
            let a = std::rc::Rc::new(a);
            let reader = {
                let a = a.clone();
                xev::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf: Box<[u8]> = vec![0u8; 1024].into_boxed_slice();
                    for _ in 0..2 {
                        let (r, b) = a.recv(buf).await;
                        got.push(b[..r.expect("recv")].to_vec());
                        buf = b;
                    }
                    got
                })
            };
            // Let the first read park (and register the socket) before both arrive.
            sleep(Duration::from_millis(20)).await;
            peer.send(b"one").expect("send");
            peer.send(b"two").expect("send");
            let got = reader.await.expect("reader");
            assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);

            let (x, y) = UnixDatagram::pair().expect("pair");
            let reader = xev::spawn(async move {
                let mut got = Vec::new();
                let mut buf: Box<[u8]> = vec![0u8; 1024].into_boxed_slice();
                for _ in 0..2 {
                    let (r, b) = x.recv(buf).await;
                    got.push(b[..r.expect("recv")].to_vec());
                    buf = b;
                }
                got
            });
            sleep(Duration::from_millis(20)).await;
            let (r, _) = y.send(b"three".to_vec()).await;
            r.expect("send");
            let (r, _) = y.send(b"four".to_vec()).await;
            r.expect("send");
            let got = reader.await.expect("reader");
            assert_eq!(got, vec![b"three".to_vec(), b"four".to_vec()]);
        })
        .await
        .expect("a queued datagram was never read (a short one taken for drained?)");
    });
}

#[test]
fn bulk_writes_into_a_pipe_make_no_eagain_attempt_per_short_write() {
    // The same through the callback API: a WriteQueue writing into a pipe whose reader is
    // a plain thread. A short write leaves the pipe full; the rest waits for the edge.
    use std::os::fd::{FromRawFd, OwnedFd};
    use xev::watcher::stream::{Stream, WriteQueue};
    use xev::{Buffer, CallbackAction, Loop, Options, RunMode};

    const LEN: usize = 4 << 20;
    const CHUNK: usize = 256 << 10;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own, or fails.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds are new and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let reader = std::thread::spawn(move || {
        let mut r = std::fs::File::from(r);
        let mut all = Vec::with_capacity(LEN);
        let mut buf = [0u8; 4096];
        let mut reads = 0u32;
        loop {
            let n = r.read(&mut buf).expect("reader read");
            if n == 0 {
                return all;
            }
            all.extend_from_slice(&buf[..n]);
            reads += 1;
            if reads.is_multiple_of(64) {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let tx = Stream::from(w);
    tx.set_nonblocking(true).expect("O_NONBLOCK");
    let mut lp = Loop::new(Options {
        backend: Some(xev::Backend::Epoll),
        ..Default::default()
    })
    .expect("epoll loop");
    let data = bulk(LEN);
    let q = WriteQueue::new();
    let written = std::rc::Rc::new(std::cell::Cell::new(0usize));
    for chunk in data.chunks(CHUNK) {
        tx.queue_write(
            &mut lp,
            &q,
            Buffer::copy_from(chunk),
            written.clone(),
            |written, _, _, r| {
                written.set(written.get() + r.expect("queued write"));
                CallbackAction::Disarm
            },
        );
    }
    let before = lp.poll_eagain_attempts();
    lp.run(RunMode::UntilDone).expect("run");
    let attempts = lp.poll_eagain_attempts() - before;
    assert_eq!(written.get(), LEN, "bytes written");
    drop(tx);
    drop(lp);
    let got = reader.join().expect("reader thread");
    assert_eq!(got.len(), LEN, "bytes received");
    assert!(got == data, "the bytes arrived altered");
    if !via_polling() {
        let chunks = LEN.div_ceil(CHUNK) as u64;
        assert!(
            attempts <= chunks,
            "{attempts} EAGAIN attempts for {LEN} bytes queued in {chunks} writes"
        );
    }
}
