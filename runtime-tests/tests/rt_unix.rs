//! `xev::net`'s Unix-domain sockets: echo over a path and over an abstract name, the
//! peer addresses accept and recv_from report (unnamed, a bound path, an abstract name),
//! pairs, datagrams, the errors the kernel gives (missing path, nobody listening, address
//! in use, path too long, NUL inside, closed peer), and dropped futures (no lost
//! connection, no leaked socket).
//!
//! Every test runs once per available backend. The tests that count open sockets take
//! the write side of [`FDS`]; every other test holds its read side.

// The guards of `FDS` are held across awaits on purpose: they serialise whole tests.
#![allow(clippy::await_holding_lock)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use runtime_tests::socket_count::{counting, open_sockets, sockets};

use futures_core::Stream;
use xev::net::{UnixDatagram, UnixListener, UnixStream};
use xev::time::{sleep, timeout};
use xev::UnixAddr;

/// How long to wait for bytes or a connection before calling them lost.
const LOST: Duration = Duration::from_secs(5);

/// A fresh directory for socket files, removed on drop.
struct TempDir(PathBuf);

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempDir {
    fn new() -> TempDir {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("xev-unix-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A unique abstract name for this process and test run.
#[cfg(target_os = "linux")]
fn abstract_name(tag: &str) -> UnixAddr {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    UnixAddr::from_abstract_name(format!("xev-test-{}-{tag}-{n}", std::process::id())).unwrap()
}

/// Poll `fut` once with the current task's context; it must be pending.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// An echo server for one connection on `l`; returns the peer address it saw.
fn echo_once(l: UnixListener) -> xev::JoinHandle<io::Result<UnixAddr>> {
    xev::spawn(async move {
        let (conn, peer) = l.accept().await?;
        let mut buf = vec![0u8; 4096];
        loop {
            let (res, b) = conn.read(buf).await;
            let n = res?;
            if n == 0 {
                return Ok(peer);
            }
            conn.write_all(b[..n].to_vec()).await.0?;
            buf = b;
        }
    })
}

/// Send `msg` through `c`, shut down its writing side, and read everything back.
async fn round_trip(c: &UnixStream, msg: &[u8]) -> Vec<u8> {
    c.write_all(msg.to_vec()).await.0.unwrap();
    c.shutdown(Shutdown::Write).await.unwrap();
    let mut got = Vec::new();
    loop {
        let (n, b) = c.read(vec![0u8; 1000]).await;
        let n = n.unwrap();
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&b[..n]);
    }
}

#[xev::test(backend = "all")]
async fn echo_over_a_path_socket() {
    let _g = sockets();
    let dir = TempDir::new();
    let path = dir.path("echo.sock");
    let l = UnixListener::bind(&path).unwrap();
    assert_eq!(l.local_addr().unwrap().as_pathname(), Some(path.as_path()));
    let server = echo_once(l);
    let c = UnixStream::connect(&path).await.unwrap();
    assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(path.as_path()));
    assert!(c.local_addr().unwrap().is_unnamed());
    let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(round_trip(&c, &msg).await, msg);
    let peer = server.await.unwrap().unwrap();
    assert!(peer.is_unnamed(), "an unbound client is unnamed: {peer:?}");
    c.close().await.unwrap();
}

#[cfg(target_os = "linux")]
#[xev::test(backend = "all")]
async fn echo_over_an_abstract_name() {
    let _g = sockets();
    let name = abstract_name("echo");
    let l = UnixListener::bind_addr(&name).unwrap();
    assert_eq!(l.local_addr().unwrap(), name);
    assert!(l.local_addr().unwrap().as_abstract_name().is_some());
    let server = echo_once(l);
    let c = UnixStream::connect_addr(&name).await.unwrap();
    assert_eq!(c.peer_addr().unwrap(), name);
    assert_eq!(round_trip(&c, b"abstract hello").await, b"abstract hello");
    assert!(server.await.unwrap().unwrap().is_unnamed());
    // std's form of the name works too.
    let std_name = std::os::unix::net::SocketAddr::try_from(&name).unwrap();
    assert_eq!(UnixAddr::from(&std_name), name);
}

/// A client socket bound to `addr` and connected (blocking; a Unix connect to a
/// listener with room in its backlog completes at once) to `to`.
fn bound_client(addr: &UnixAddr, to: &UnixAddr) -> UnixStream {
    // std cannot bind a stream before connecting it: build the socket by hand.
    // SAFETY: socket(2) returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(fd >= 0);
    // SAFETY: a new fd we own.
    let fd: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let sock = std::os::unix::net::UnixStream::from(fd);
    bind_std(&sock, addr);
    connect_std(&sock, to);
    UnixStream::from(sock)
}

fn raw_addr(a: &UnixAddr) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut raw: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes: Vec<u8> = if let Some(p) = a.as_pathname() {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    } else {
        #[cfg(target_os = "linux")]
        {
            let mut v = vec![0u8];
            v.extend_from_slice(a.as_abstract_name().expect("a name"));
            v
        }
        #[cfg(not(target_os = "linux"))]
        panic!("unnamed")
    };
    for (d, s) in raw.sun_path.iter_mut().zip(&bytes) {
        *d = *s as libc::c_char;
    }
    let nul = usize::from(a.as_pathname().is_some());
    (raw, (2 + bytes.len() + nul) as libc::socklen_t)
}

fn bind_std(s: &impl std::os::fd::AsRawFd, a: &UnixAddr) {
    let (raw, len) = raw_addr(a);
    // SAFETY: `raw` is a valid sockaddr_un of `len` bytes.
    let r = unsafe {
        libc::bind(
            s.as_raw_fd(),
            (&raw as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    assert_eq!(r, 0, "bind: {}", io::Error::last_os_error());
}

fn connect_std(s: &impl std::os::fd::AsRawFd, a: &UnixAddr) {
    let (raw, len) = raw_addr(a);
    // SAFETY: `raw` is a valid sockaddr_un of `len` bytes.
    let r = unsafe {
        libc::connect(
            s.as_raw_fd(),
            (&raw as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    assert_eq!(r, 0, "connect: {}", io::Error::last_os_error());
}

#[xev::test(backend = "all")]
async fn accept_reports_a_bound_clients_path_and_unnamed_otherwise() {
    let _g = sockets();
    let dir = TempDir::new();
    let server_path = UnixAddr::from_pathname(dir.path("server.sock")).unwrap();
    let client_path = UnixAddr::from_pathname(dir.path("client.sock")).unwrap();
    let l = UnixListener::bind_addr(&server_path).unwrap();

    let c = bound_client(&client_path, &server_path);
    let (s, peer) = l.accept().await.unwrap();
    assert_eq!(peer, client_path, "accept reports the client's bound path");
    assert_eq!(s.peer_addr().unwrap(), client_path);
    assert_eq!(s.local_addr().unwrap(), server_path);
    assert_eq!(c.local_addr().unwrap(), client_path);
    c.write_all(b"x".to_vec()).await.0.unwrap();
    assert_eq!(s.read_exact(vec![0u8; 1]).await.1, b"x");

    let c2 = UnixStream::connect_addr(&server_path).await.unwrap();
    let (_s2, peer2) = l.accept().await.unwrap();
    assert!(peer2.is_unnamed(), "{peer2:?}");
    assert!(peer2.as_pathname().is_none());
    drop(c2);

    #[cfg(target_os = "linux")]
    {
        let client_name = abstract_name("client");
        let _c3 = bound_client(&client_name, &server_path);
        let (_s3, peer3) = l.accept().await.unwrap();
        assert_eq!(
            peer3, client_name,
            "accept reports the client's abstract name"
        );
    }
}

#[xev::test(backend = "all")]
async fn pairs_are_connected_and_unnamed() {
    let _g = sockets();
    let (a, b) = UnixStream::pair().unwrap();
    assert!(a.local_addr().unwrap().is_unnamed());
    assert!(a.peer_addr().unwrap().is_unnamed());
    a.write_all(b"to b".to_vec()).await.0.unwrap();
    b.write_all(b"to a".to_vec()).await.0.unwrap();
    assert_eq!(b.read_exact(vec![0u8; 4]).await.1, b"to b");
    assert_eq!(a.read_exact(vec![0u8; 4]).await.1, b"to a");
    drop(a);
    assert_eq!(b.read(vec![0u8; 4]).await.0.unwrap(), 0, "end of stream");

    let (x, y) = UnixDatagram::pair().unwrap();
    x.send(b"one".to_vec()).await.0.unwrap();
    x.send(Vec::new()).await.0.unwrap();
    x.send(b"three".to_vec()).await.0.unwrap();
    let (n, buf) = y.recv(vec![0u8; 16]).await;
    assert_eq!(&buf[..n.unwrap()], b"one");
    let (r, _) = y.recv_from(vec![0u8; 16]).await;
    let (n, from) = r.unwrap();
    assert_eq!(n, 0, "an empty datagram");
    assert!(from.is_unnamed());
    // A message longer than the buffer is truncated; the rest is gone.
    let (n, buf) = y.recv(vec![0u8; 2]).await;
    assert_eq!(&buf[..n.unwrap()], b"th");
}

#[xev::test(backend = "all")]
async fn datagrams_report_their_sender() {
    let _g = sockets();
    let dir = TempDir::new();
    let (pa, pb) = (dir.path("a.sock"), dir.path("b.sock"));
    let a = UnixDatagram::bind(&pa).unwrap();
    let b = UnixDatagram::bind(&pb).unwrap();
    assert_eq!(a.local_addr().unwrap().as_pathname(), Some(pa.as_path()));

    let (n, _) = a.send_to(b"ping".to_vec(), &pb).await;
    assert_eq!(n.unwrap(), 4);
    let (r, buf) = b.recv_from(vec![0u8; 64]).await;
    let (n, from) = r.unwrap();
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(from.as_pathname(), Some(pa.as_path()), "the sender's path");
    // Reply to the reported address.
    b.send_to_addr(b"pong".to_vec(), &from).await.0.unwrap();
    let (r, buf) = a.recv_from(vec![0u8; 64]).await;
    let (n, from) = r.unwrap();
    assert_eq!(&buf[..n], b"pong");
    assert_eq!(from.as_pathname(), Some(pb.as_path()));

    // An unbound sender is unnamed.
    let u = UnixDatagram::unbound().unwrap();
    u.send_to(b"anon".to_vec(), &pb).await.0.unwrap();
    let (r, _) = b.recv_from(vec![0u8; 64]).await;
    assert!(r.unwrap().1.is_unnamed());

    // Connected: send/recv and peer_addr.
    u.connect(&pb).unwrap();
    assert_eq!(u.peer_addr().unwrap().as_pathname(), Some(pb.as_path()));
    u.send(b"conn".to_vec()).await.0.unwrap();
    let (n, buf) = b.recv(vec![0u8; 64]).await;
    assert_eq!(&buf[..n.unwrap()], b"conn");

    #[cfg(target_os = "linux")]
    {
        let (na, nb) = (abstract_name("dga"), abstract_name("dgb"));
        let x = UnixDatagram::bind_addr(&na).unwrap();
        let y = UnixDatagram::bind_addr(&nb).unwrap();
        x.send_to_addr(b"abs".to_vec(), &nb).await.0.unwrap();
        let (r, buf) = y.recv_from(vec![0u8; 8]).await;
        let (n, from) = r.unwrap();
        assert_eq!(&buf[..n], b"abs");
        assert_eq!(from, na, "the sender's abstract name");
    }
}

#[xev::test(backend = "all")]
async fn errors_are_the_kernels_and_never_panics() {
    let _g = sockets();
    let dir = TempDir::new();
    let missing = dir.path("missing.sock");
    let e = UnixStream::connect(&missing).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    let e = UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x".to_vec(), &missing)
        .await
        .0
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");

    // A socket file nobody listens on any more, and a regular file: refused.
    let stale = dir.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let e = UnixStream::connect(&stale).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    let plain = dir.path("plain");
    std::fs::write(&plain, b"").unwrap();
    let e = UnixStream::connect(&plain).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");

    // Binding an existing path.
    let e = UnixListener::bind(&stale).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    let e = UnixDatagram::bind(&plain).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");

    // Path length: 107 bytes fit, 108 do not; a NUL inside is refused.
    let base = dir.0.as_os_str().len() + 1;
    let fits = dir.path(&"f".repeat(107 - base));
    assert_eq!(fits.as_os_str().len(), 107);
    let l = UnixListener::bind(&fits).unwrap();
    let _c = UnixStream::connect(&fits).await.unwrap();
    let _ = l.accept().await.unwrap();
    let long = dir.path(&"l".repeat(108 - base));
    let too_long = |e: io::Error| assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    too_long(UnixListener::bind(&long).unwrap_err());
    too_long(UnixDatagram::bind(&long).unwrap_err());
    too_long(UnixStream::connect(&long).await.unwrap_err());
    too_long(UnixStream::connect("a\0b").await.unwrap_err());
    too_long(UnixListener::bind("a\0b").unwrap_err());
    let u = UnixDatagram::unbound().unwrap();
    too_long(u.send_to(b"x".to_vec(), &long).await.0.unwrap_err());
    too_long(u.connect(&long).unwrap_err());
    too_long(UnixListener::bind("").unwrap_err());

    // Empty read buffers.
    let (a, _b) = UnixStream::pair().unwrap();
    too_long(a.read(Vec::new()).await.0.unwrap_err());
    too_long(u.recv_from(Vec::new()).await.0.unwrap_err());

    // recv on an unconnected, unbound datagram socket would wait forever: not an error
    // until data comes; peer_addr of it is NotConnected.
    let e = u.peer_addr().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    // The runtime still works.
    let (x, y) = UnixStream::pair().unwrap();
    x.write_all(b"ok".to_vec()).await.0.unwrap();
    assert_eq!(y.read_exact(vec![0u8; 2]).await.1, b"ok");
}

#[xev::test(backend = "all")]
async fn writing_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    let _g = sockets();
    // Rust programs ignore SIGPIPE; restore the default so a send without MSG_NOSIGNAL
    // would kill the test process.
    // SAFETY: setting a signal disposition to SIG_DFL.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let (a, b) = UnixStream::pair().unwrap();
    drop(b);
    let e = a.write(b"nobody".to_vec()).await.0.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    let e = a.write_all(vec![7u8; 100_000]).await.0.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    // Through an accepted connection too.
    let dir = TempDir::new();
    let l = UnixListener::bind(dir.path("l.sock")).unwrap();
    let c = UnixStream::connect(dir.path("l.sock")).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    c.close().await.unwrap();
    let e = s.write(b"gone".to_vec()).await.0.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    // SAFETY: restoring the previous disposition.
    unsafe { libc::signal(libc::SIGPIPE, old) };
}

#[xev::test(backend = "all")]
async fn a_dropped_accept_keeps_its_connection_and_leaks_nothing() {
    let _g = counting();
    let dir = TempDir::new();
    let path = dir.path("drop.sock");
    let l = UnixListener::bind(&path).unwrap();
    let before = open_sockets();

    // The accept's result arrives while its future sits unpolled, then it is dropped:
    // the next accept gets that connection at once.
    let mut accept = Box::pin(l.accept());
    poll_once(accept.as_mut()).await;
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    sleep(Duration::from_millis(20)).await;
    drop(accept);
    assert_eq!(open_sockets(), before + 2, "client + kept connection");
    let (s, peer) = timeout(LOST, l.accept())
        .await
        .expect("the kept connection is accepted at once")
        .unwrap();
    assert!(peer.is_unnamed());
    s.write_all(b"kept".to_vec()).await.0.unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"kept");
    drop((s, client));
    assert_eq!(open_sockets(), before);

    // Dropped in flight, the client connecting afterwards: not lost.
    let mut accept = Box::pin(l.accept());
    poll_once(accept.as_mut()).await;
    sleep(Duration::from_millis(20)).await;
    drop(accept);
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let (s, _) = timeout(LOST, l.accept()).await.expect("lost").unwrap();
    client.write_all(b"here").unwrap();
    assert_eq!(s.read_exact(vec![0u8; 4]).await.1, b"here");
    drop((s, client));

    // The same through incoming().
    {
        let mut inc = l.incoming();
        std::future::poll_fn(|cx| {
            assert!(Pin::new(&mut inc).poll_next(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        sleep(Duration::from_millis(20)).await;
    }
    let client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let (s, _) = timeout(LOST, l.accept()).await.expect("lost").unwrap();
    drop((s, client));
    assert_eq!(open_sockets(), before);

    // With the listener gone, a kept connection is closed, never leaked.
    let mut accept = Box::pin(l.accept());
    poll_once(accept.as_mut()).await;
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    sleep(Duration::from_millis(20)).await;
    drop(accept);
    drop(l);
    assert_eq!(
        open_sockets(),
        before,
        "listener -1, client +1, kept closed"
    );
    client.set_read_timeout(Some(LOST)).unwrap();
    assert_eq!(
        client.read(&mut [0u8; 4]).unwrap(),
        0,
        "the client sees the close"
    );
}

#[xev::test(backend = "all")]
async fn dropped_reads_lose_no_data_and_leak_nothing() {
    let _g = counting();
    let before = open_sockets();
    let (a, b) = UnixStream::pair().unwrap();
    let mut r = Box::pin(a.read(vec![0u8; 16]));
    poll_once(r.as_mut()).await;
    sleep(Duration::from_millis(5)).await;
    drop(r);
    b.write_all(b"after".to_vec()).await.0.unwrap();
    let (res, got) = timeout(LOST, a.read_exact(vec![0u8; 5]))
        .await
        .expect("lost");
    res.unwrap();
    assert_eq!(got, b"after", "the cancelled read took nothing");

    let (x, y) = UnixDatagram::pair().unwrap();
    let mut r = Box::pin(y.recv_from(vec![0u8; 16]));
    poll_once(r.as_mut()).await;
    sleep(Duration::from_millis(5)).await;
    drop(r);
    x.send(b"dgram".to_vec()).await.0.unwrap();
    let (res, buf) = timeout(LOST, y.recv_from(vec![0u8; 16]))
        .await
        .expect("lost");
    assert_eq!(&buf[..res.unwrap().0], b"dgram");

    // A read dropped without a single turn of the loop, then its socket dropped.
    let mut r = Box::pin(a.read(vec![0u8; 16]));
    poll_once(r.as_mut()).await;
    drop(r);
    drop((a, b, x, y));
    sleep(Duration::from_millis(5)).await;
    assert_eq!(open_sockets(), before);
}

#[xev::test(backend = "all")]
async fn incoming_and_std_conversions() {
    let _g = sockets();
    let dir = TempDir::new();
    let path = dir.path("inc.sock");
    let std_l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let l = UnixListener::from(std_l);
    let _c1 = UnixStream::connect(&path).await.unwrap();
    let _c2 = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut inc = l.incoming();
    for _ in 0..2 {
        let s = std::future::poll_fn(|cx| Pin::new(&mut inc).poll_next(cx))
            .await
            .expect("never ends")
            .expect("accept");
        assert!(s.peer_addr().unwrap().is_unnamed());
    }
    drop(inc);
    // Into and from OwnedFd.
    let (a, b) = UnixStream::pair().unwrap();
    let fd: OwnedFd = a.into();
    let a = UnixStream::from(fd);
    a.write_all(b"fd".to_vec()).await.0.unwrap();
    assert_eq!(b.read_exact(vec![0u8; 2]).await.1, b"fd");
    let (sa, mut sb) = std::os::unix::net::UnixStream::pair().unwrap();
    let sa = UnixStream::from(sa);
    sa.write_all(b"std".to_vec()).await.0.unwrap();
    let mut got = [0u8; 3];
    sb.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"std");
    sb.write_all(b"back").unwrap();
    assert_eq!(sa.read_exact(vec![0u8; 4]).await.1, b"back");
    let d = UnixDatagram::from(std::os::unix::net::UnixDatagram::unbound().unwrap());
    assert!(d.local_addr().unwrap().is_unnamed());
    let _: &Path = path.as_path();
}
