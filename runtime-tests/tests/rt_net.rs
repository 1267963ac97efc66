//! `xev::net`: TCP echo under load, cancellation of reads and accepts (no lost bytes, no
//! leaked fds), timeouts, aborted tasks, error cases, `incoming`, and UDP.
//!
//! Every test runs once per available backend. The tests that count open sockets take
//! the write side of [`FDS`]; every other test holds its read side while it has sockets
//! open, so the counts only see the counting test's own sockets.

// The guards of `FDS` are held across awaits on purpose: they serialise whole tests,
// which run on different threads, each with its own single-threaded runtime.
#![allow(clippy::await_holding_lock)]

use std::cell::Cell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use runtime_tests::socket_count::{counting, open_sockets, sockets};

use futures_core::Stream;
use xev::net::{TcpListener, TcpStream, UdpSocket};
use xev::time::{sleep, timeout};

/// A listener on a free loopback port and its address.
fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

/// A connected pair: (client, server side), both through xev.
async fn pair() -> (TcpStream, TcpStream) {
    let (l, addr) = listener();
    let client = TcpStream::connect(addr).await.expect("connect");
    let (server, peer) = l.accept().await.expect("accept");
    assert_eq!(peer, client.local_addr().unwrap());
    (client, server)
}

/// A connected pair whose peer is a blocking std socket: (xev side, std side).
async fn std_pair() -> (TcpStream, std::net::TcpStream) {
    let (l, addr) = listener();
    let peer = std::net::TcpStream::connect(addr).expect("std connect");
    let (s, _) = l.accept().await.expect("accept");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (s, peer)
}

/// A port on which nothing listens (bound, then closed).
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// FNV-1a, 64 bits, continued over several chunks.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A cheap deterministic pseudo-random sequence (xorshift).
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Poll `fut` once with the current task's context; it must be pending.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// The next item of a stream.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

const TOTAL: usize = 10 * 1024 * 1024;
const CONNS: usize = 50;

#[xev::test(backend = "all")]
async fn echo_10_mib_over_50_concurrent_connections() {
    let _g = sockets();
    let (l, addr) = listener();

    // The server: one echo task per connection.
    let server = xev::spawn(async move {
        let mut echoers = Vec::new();
        for _ in 0..CONNS {
            let (conn, _) = l.accept().await.expect("accept");
            echoers.push(xev::spawn(async move {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut echoed = 0usize;
                loop {
                    buf.clear();
                    let (res, b) = conn.read(buf).await;
                    let n = res.expect("server read");
                    if n == 0 {
                        return echoed;
                    }
                    assert_eq!(b.len(), n);
                    let (res, b) = conn.write_all(b).await;
                    res.expect("server write_all");
                    echoed += n;
                    buf = b;
                }
            }));
        }
        let mut total = 0;
        for e in echoers {
            total += e.await.expect("echo task");
        }
        total
    });

    // The clients: each writes its share in random-sized chunks from one task while
    // reading the echo in another, and compares hashes of the two directions.
    let per_conn = TOTAL / CONNS;
    let clients: Vec<_> = (0..CONNS)
        .map(|i| {
            xev::spawn(async move {
                let stream = Rc::new(TcpStream::connect(addr).await.expect("connect"));
                let len = if i == 0 {
                    TOTAL - per_conn * (CONNS - 1)
                } else {
                    per_conn
                };
                let w = stream.clone();
                let writer = xev::spawn(async move {
                    let mut seed = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1);
                    let (mut sent, mut hash) = (0usize, FNV_START);
                    while sent < len {
                        let n = ((rng(&mut seed) % 65_536) as usize + 1).min(len - sent);
                        let chunk: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
                        hash = fnv(hash, &chunk);
                        let (res, _) = w.write_all(chunk).await;
                        res.expect("client write_all");
                        sent += n;
                    }
                    w.shutdown(Shutdown::Write).await.expect("shutdown");
                    (sent, hash)
                });
                let (mut got, mut hash) = (0usize, FNV_START);
                let mut buf = vec![0u8; 48 * 1024];
                loop {
                    let (res, b) = stream.read(buf).await;
                    let n = res.expect("client read");
                    if n == 0 {
                        break;
                    }
                    hash = fnv(hash, &b[..n]);
                    got += n;
                    buf = b;
                }
                let (sent, sent_hash) = writer.await.expect("writer");
                assert_eq!(got, sent, "connection {i}: bytes echoed");
                assert_eq!(hash, sent_hash, "connection {i}: checksum");
                got
            })
        })
        .collect();

    let mut total = 0;
    for c in clients {
        total += c.await.expect("client task");
    }
    assert_eq!(total, TOTAL);
    assert_eq!(server.await.expect("server task"), TOTAL);
}

/// How long to wait for bytes or a connection before calling it lost.
const LOST: Duration = Duration::from_secs(5);

#[xev::test(backend = "all")]
async fn a_read_dropped_mid_flight_loses_no_bytes() {
    let _g = sockets();
    // The peer is a blocking std socket written right after the read future is dropped,
    // before the loop has turned again (the cancellation is not even submitted yet).
    let (s, mut peer) = std_pair().await;
    let mut expected = Vec::new();
    let mut got = Vec::new();
    for round in 0..20u8 {
        let r = timeout(Duration::from_millis(1), s.read(vec![0u8; 64])).await;
        assert!(r.is_err(), "round {round}: the read completed: {r:?}");
        let msg: Vec<u8> = (0..=round).map(|k| round.wrapping_mul(31) ^ k).collect();
        peer.write_all(&msg).unwrap();
        expected.extend_from_slice(&msg);
        let (res, b) = timeout(LOST, s.read_exact(vec![0u8; msg.len()]))
            .await
            .unwrap_or_else(|_| panic!("round {round}: bytes were lost"));
        res.unwrap_or_else(|e| panic!("round {round}: {e}"));
        got.extend_from_slice(&b);
    }
    assert_eq!(got, expected);

    // The same with an xev peer in another task, and bytes already on their way while
    // the read is dropped.
    let (a, b) = pair().await;
    let b = Rc::new(b);
    for round in 0..20u8 {
        let r = timeout(Duration::from_millis(1), a.read(vec![0u8; 64])).await;
        assert!(r.is_err(), "xev round {round}: the read completed");
        let w = b.clone();
        let writer = xev::spawn(async move { w.write_all(vec![round; 100]).await.0 });
        let (res, got) = timeout(LOST, a.read_exact(vec![0u8; 100]))
            .await
            .unwrap_or_else(|_| panic!("xev round {round}: bytes were lost"));
        res.unwrap();
        assert_eq!(got, vec![round; 100]);
        writer.await.unwrap().unwrap();
    }
}

#[xev::test(backend = "all")]
async fn an_accept_result_nobody_took_goes_to_the_next_accept_or_is_closed() {
    let _g = counting();
    let (l, addr) = listener();
    let before = open_sockets();

    let mut accept = Box::pin(l.accept());
    poll_once(accept.as_mut()).await;
    let client = std::net::TcpStream::connect(addr).unwrap();
    // The loop turns while the accept future sits unpolled: its result arrives.
    sleep(Duration::from_millis(20)).await;
    assert_eq!(
        open_sockets(),
        before + 2,
        "the client and the accepted connection are open"
    );
    drop(accept);
    // The client connected: its connection is not lost with the future, the next accept
    // gets it at once.
    assert_eq!(open_sockets(), before + 2, "the connection was kept");
    let (s, peer) = timeout(LOST, l.accept())
        .await
        .expect("the kept connection is accepted at once")
        .unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    s.write_all("kept").await.0.unwrap();
    let mut buf = [0u8; 4];
    (&client).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    drop((s, client));
    assert_eq!(open_sockets(), before);

    // With the listener gone, such a connection is closed, never leaked.
    let mut accept = Box::pin(l.accept());
    poll_once(accept.as_mut()).await;
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    sleep(Duration::from_millis(20)).await;
    drop(accept);
    drop(l);
    assert_eq!(
        open_sockets(),
        before,
        "listener gone (-1), client open (+1), the kept connection closed (0)"
    );
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(
        client.read(&mut buf).unwrap(),
        0,
        "the client sees the close"
    );
}

#[xev::test(backend = "all")]
async fn an_accept_dropped_in_flight_leaks_nothing_and_loses_no_connection() {
    let _g = counting();
    let (l, addr) = listener();
    let before = open_sockets();

    // (1) The accept is in the kernel (the loop turned) when it is dropped; the client
    // connects after the cancellation went through. (2) The client connects right after
    // the drop, before the loop has turned (the cancellation is not submitted yet).
    for settle in [true, false] {
        let mut accept = Box::pin(l.accept());
        poll_once(accept.as_mut()).await;
        sleep(Duration::from_millis(20)).await;
        drop(accept);
        if settle {
            sleep(Duration::from_millis(20)).await;
        }
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        sleep(Duration::from_millis(20)).await;
        assert_eq!(
            open_sockets(),
            before + 1,
            "settle={settle}: only the client"
        );

        let (server, peer) = timeout(LOST, l.accept())
            .await
            .unwrap_or_else(|_| panic!("settle={settle}: the connection was lost"))
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        client.write_all(b"still here").unwrap();
        let (res, got) = server.read_exact(vec![0u8; 10]).await;
        res.unwrap();
        assert_eq!(got, b"still here");
        drop((server, client));
        assert_eq!(open_sockets(), before, "settle={settle}");
    }

    // The same through `incoming()`: dropping the stream cancels its accept.
    {
        let mut inc = l.incoming();
        std::future::poll_fn(|cx| {
            assert!(Pin::new(&mut inc).poll_next(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        sleep(Duration::from_millis(20)).await;
    }
    let client = std::net::TcpStream::connect(addr).unwrap();
    sleep(Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), before + 1);
    let (server, peer) = timeout(LOST, l.accept())
        .await
        .expect("incoming: the connection was lost")
        .unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
    drop((server, client));
    assert_eq!(open_sockets(), before);
}

#[xev::test(backend = "all")]
async fn timeout_on_a_read_that_never_completes_elapses_near_the_deadline() {
    let _g = sockets();
    let (a, _b) = pair().await;
    let start = Instant::now();
    let r = timeout(Duration::from_millis(50), a.read(vec![0u8; 16])).await;
    let elapsed = start.elapsed();
    assert!(r.is_err(), "the read completed: {r:?}");
    assert!(elapsed >= Duration::from_millis(50), "early: {elapsed:?}");
    assert!(elapsed < Duration::from_millis(300), "late: {elapsed:?}");
}

#[xev::test(backend = "all")]
async fn abort_ends_a_task_blocked_on_a_read_and_the_stream_still_works() {
    let _g = sockets();
    let (a, b) = pair().await;
    let a = Rc::new(a);
    let reached = Rc::new(Cell::new(false));
    let (a2, r2) = (a.clone(), reached.clone());
    let h = xev::spawn(async move {
        r2.set(true);
        let (res, buf) = a2.read(vec![0u8; 16]).await;
        unreachable!("the read completed: {res:?} {buf:?}");
    });
    sleep(Duration::from_millis(10)).await;
    assert!(reached.get(), "the task started its read");
    h.abort();
    let err = h.await.expect_err("aborted");
    assert!(err.is_cancelled(), "{err:?}");
    assert_eq!(
        Rc::strong_count(&a),
        1,
        "the task's future (and its Rc) was dropped"
    );

    let (res, _) = b.write_all("after the abort").await;
    res.unwrap();
    let (res, got) = a.read_exact(vec![0u8; 15]).await;
    res.unwrap();
    assert_eq!(got, b"after the abort");
    let (res, _) = a.write_all("and back").await;
    res.unwrap();
    let (res, got) = b.read_exact(vec![0u8; 8]).await;
    res.unwrap();
    assert_eq!(got, b"and back");
}

#[xev::test(backend = "all")]
async fn connect_errors_and_address_lists() {
    let _g = sockets();
    let closed = closed_port();
    let e = TcpStream::connect(closed).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

    // Each address is tried: the first that connects wins, else the last error.
    let (l, addr) = listener();
    let s = TcpStream::connect(&[closed, addr][..]).await.unwrap();
    assert_eq!(s.peer_addr().unwrap(), addr);
    let (_server, peer) = l.accept().await.unwrap();
    assert_eq!(peer, s.local_addr().unwrap());
    let e = TcpStream::connect(&[closed, closed_port()][..])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    let e = TcpStream::connect(&[][..] as &[SocketAddr])
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    let e = TcpListener::bind(addr).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
}

#[xev::test(backend = "all")]
async fn read_into_an_empty_vec_is_invalid_input() {
    let _g = sockets();
    let (a, b) = pair().await;
    let (res, buf) = a.read(Vec::new()).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert!(buf.is_empty());
    // Room in the capacity is enough.
    let (res, _) = b.write_all("x").await;
    res.unwrap();
    let (res, buf) = a.read(Vec::with_capacity(8)).await;
    assert_eq!(res.unwrap(), 1);
    assert_eq!(buf, b"x");
}

#[xev::test(backend = "all")]
async fn writing_to_a_closed_peer_is_an_error_not_sigpipe() {
    let _g = sockets();
    let (a, b) = pair().await;
    drop(b);
    let mut err = None;
    for _ in 0..100 {
        let (res, _) = a.write(vec![7u8; 4096]).await;
        if let Err(e) = res {
            err = Some(e);
            break;
        }
        sleep(Duration::from_millis(1)).await;
    }
    let e = err.expect("writes to a closed peer keep succeeding");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{e:?}"
    );
    // write_all reports it too.
    let (res, _) = a.write_all(vec![7u8; 4096]).await;
    assert!(res.is_err());
}

#[xev::test(backend = "all")]
async fn shutdown_write_makes_the_peer_read_eof() {
    let _g = sockets();
    let (a, b) = pair().await;
    let (res, _) = a.write_all("last words").await;
    res.unwrap();
    a.shutdown(Shutdown::Write).await.unwrap();
    let (res, got) = b.read_exact(vec![0u8; 10]).await;
    res.unwrap();
    assert_eq!(got, b"last words");
    let (res, _) = b.read(vec![0u8; 16]).await;
    assert_eq!(res.unwrap(), 0);
    // The other direction still works.
    let (res, _) = b.write_all("reply").await;
    res.unwrap();
    let (res, got) = a.read_exact(vec![0u8; 5]).await;
    res.unwrap();
    assert_eq!(got, b"reply");
    b.close().await.unwrap();
    let (res, _) = a.read(vec![0u8; 16]).await;
    assert_eq!(res.unwrap(), 0);
}

#[xev::test(backend = "all")]
async fn read_exact_reports_unexpected_eof_when_the_peer_closes_early() {
    let _g = sockets();
    let (a, mut peer) = std_pair().await;
    peer.write_all(b"abc").unwrap();
    drop(peer);
    let (res, buf) = a.read_exact(vec![0u8; 10]).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(&buf[..3], b"abc", "the bytes read so far are kept");
}

#[xev::test(backend = "all")]
async fn incoming_yields_each_connection() {
    let _g = sockets();
    let (l, addr) = listener();
    let clients = xev::spawn(async move {
        let mut v = Vec::new();
        for i in 0..3u8 {
            let s = TcpStream::connect(addr).await.unwrap();
            let (res, _) = s.write_all(vec![i]).await;
            res.unwrap();
            v.push(s);
        }
        v
    });
    let mut inc = l.incoming();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let s = next(&mut inc).await.expect("never ends").expect("accept");
        let (res, b) = s.read_exact(vec![0u8; 1]).await;
        res.unwrap();
        seen.push(b[0]);
    }
    drop(inc);
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    let clients = clients.await.unwrap();
    assert_eq!(clients.len(), 3);
}

#[xev::test(backend = "all")]
async fn conversions_and_options() {
    let _g = sockets();
    // From std: made non-blocking, usable on the loop.
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l = TcpListener::from(std_l);
    let addr = l.local_addr().unwrap();
    let std_c = std::net::TcpStream::connect(addr).unwrap();
    let (s, _) = l.accept().await.unwrap();
    let c = TcpStream::from(std_c);
    // A read with nothing to read must not block the thread.
    let r = timeout(Duration::from_millis(5), c.read(vec![0u8; 4])).await;
    assert!(r.is_err());

    s.set_nodelay(true).unwrap();
    assert!(s.nodelay().unwrap());
    s.set_nodelay(false).unwrap();
    assert!(!s.nodelay().unwrap());
    assert_eq!(s.local_addr().unwrap(), c.peer_addr().unwrap());

    // Into OwnedFd and back.
    let fd: std::os::fd::OwnedFd = c.into();
    let c = TcpStream::from(fd);
    let (res, _) = s.write_all("ok").await;
    res.unwrap();
    let (res, got) = c.read_exact(vec![0u8; 2]).await;
    res.unwrap();
    assert_eq!(got, b"ok");
    c.close().await.unwrap();
}

#[xev::test(backend = "all")]
async fn udp_send_to_and_recv_from_ping_pong() {
    let _g = sockets();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    for round in 0..5u8 {
        let (n, _) = a.send_to(vec![b'p', round], b_addr).await;
        assert_eq!(n.unwrap(), 2);
        let (res, buf) = b.recv_from(vec![0u8; 64]).await;
        let (n, from) = res.unwrap();
        assert_eq!((&buf[..n], from), (&[b'p', round][..], a_addr));
        let (n, _) = b.send_to(vec![b'q', round], from).await;
        assert_eq!(n.unwrap(), 2);
        let (res, buf) = a.recv_from(vec![0u8; 64]).await;
        let (n, from) = res.unwrap();
        assert_eq!((&buf[..n], from), (&[b'q', round][..], b_addr));
    }
    // A datagram longer than the buffer is truncated.
    let (n, _) = a.send_to(vec![9u8; 100], b_addr).await;
    assert_eq!(n.unwrap(), 100);
    let (res, buf) = b.recv_from(Vec::with_capacity(10)).await;
    assert_eq!(res.unwrap(), (10, a_addr));
    assert_eq!(buf, vec![9u8; 10]);
    let (res, _) = b.recv_from(Vec::new()).await;
    assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[xev::test(backend = "all")]
async fn udp_connect_send_recv_and_empty_datagrams() {
    let _g = sockets();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let other = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    assert_eq!(
        a.peer_addr().unwrap_err().kind(),
        io::ErrorKind::NotConnected
    );
    a.connect(b_addr).unwrap();
    b.connect(a_addr).unwrap();
    assert_eq!(a.peer_addr().unwrap(), b_addr);

    // A datagram from a third socket is filtered out by the connected socket.
    let (n, _) = other.send_to("intruder", a_addr).await;
    assert_eq!(n.unwrap(), 8);
    let (n, _) = b.send("hello").await;
    assert_eq!(n.unwrap(), 5);
    let (res, buf) = a.recv(vec![0u8; 64]).await;
    let n = res.unwrap();
    assert_eq!(&buf[..n], b"hello");

    // Zero-byte datagrams: Ok(0) on both receive paths, not end of file.
    let (n, _) = a.send(Vec::new()).await;
    assert_eq!(n.unwrap(), 0);
    let (res, _) = b.recv(vec![0u8; 8]).await;
    assert_eq!(res.unwrap(), 0);
    let (n, _) = b.send("").await;
    assert_eq!(n.unwrap(), 0);
    let (res, _) = a.recv_from(vec![0u8; 8]).await;
    assert_eq!(res.unwrap(), (0, b_addr));
    let (n, _) = other.send_to(&b""[..], b_addr).await;
    assert_eq!(n.unwrap(), 0);

    // A receive nothing answers is cancelled by a timeout, and the socket still works.
    let r = timeout(Duration::from_millis(5), a.recv(vec![0u8; 8])).await;
    assert!(r.is_err());
    let (n, _) = b.send("again").await;
    assert_eq!(n.unwrap(), 5);
    let (res, buf) = a.recv(vec![0u8; 8]).await;
    assert_eq!(&buf[..res.unwrap()], b"again");

    // From std; `a` is connected to `b`, so it does not hear this socket.
    let s = UdpSocket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
    let (n, _) = s.send_to("std", a_addr).await;
    assert_eq!(n.unwrap(), 3);
    let r = timeout(Duration::from_millis(20), a.recv(vec![0u8; 8])).await;
    assert!(r.is_err(), "a is connected to b: {r:?}");
}

/// fd numbers move between owners: an async socket released with `into` OwnedFd and
/// closed behind the loop, a socket used through the callback API and closed behind the
/// loop, then new async sockets that get the same numbers. Every read must still be
/// woken (on epoll: the registration of a reused number is refreshed or re-announced).
#[xev::test(backend = "all")]
async fn reused_fd_numbers_keep_working_across_owners() {
    let _g = sockets();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    for round in 0..30 {
        // The async side connects (a fresh socket(2) number, not an accepted one).
        let s = timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("round {round}: connect never woke"))
            .expect("connect");
        let (mut peer, _) = std_listener.accept().unwrap();
        // A read that parks (nothing sent yet), then data arrives.
        // (A task, not a thread: a one-byte blocking write never blocks, and the test
        // then also runs under valgrind, which starves threads while the loop waits.)
        let writer = xev::spawn(async move {
            sleep(Duration::from_millis(2)).await;
            peer.write_all(b"x").unwrap();
            peer
        });
        let (r, _) = timeout(Duration::from_secs(5), s.read(vec![0u8; 8]))
            .await
            .unwrap_or_else(|_| panic!("round {round}: async read never woke"));
        assert_eq!(r.unwrap(), 1);
        let peer = writer.await.unwrap();
        match round % 3 {
            // Released: closed behind the loop's back.
            0 => drop(std::os::fd::OwnedFd::from(s)),
            // Dropped normally.
            1 => drop(s),
            // Used once more through the callback API, then closed behind the loop.
            _ => {
                let fd = std::os::fd::OwnedFd::from(s);
                let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
                let done = Rc::new(Cell::new(false));
                let d = done.clone();
                let mut c = Box::pin(xev::Completion::new());
                xev::rt::with_loop(|lp| {
                    lp.start(
                        c.as_mut(),
                        xev::Op::Recv {
                            fd: raw,
                            buf: xev::Buffer::inline(8),
                        },
                        move |_, _, r| {
                            assert!(matches!(r, xev::OpResult::Recv(Ok(1))), "{r:?}");
                            d.set(true);
                            xev::CallbackAction::Disarm
                        },
                    )
                });
                (&peer).write_all(b"y").unwrap();
                let start = Instant::now();
                while !done.get() {
                    assert!(
                        start.elapsed() < Duration::from_secs(5),
                        "callback recv hung"
                    );
                    sleep(Duration::from_millis(1)).await;
                }
                drop(c);
                drop(fd);
            }
        }
        drop(peer);
    }
}
