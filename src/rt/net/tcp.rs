//! TCP: [`TcpListener`] (with its [`Incoming`] stream) and [`TcpStream`].

use crate::sys::fd::{AsRawFd, RawFd};
use std::future::Future;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use crate::op::Op;
use crate::result::OpResult;
use crate::rt::io::{self as rio, FdOp, Kind};
use crate::rt::loop_fd::LoopFd;
use crate::rt::net::incoming::Incoming;
use crate::rt::{IoBuf, IoBufMut};
use crate::watcher::tcp::{self as sock, Tcp};

/// The `listen(2)` backlog of [`TcpListener::bind`].
const BACKLOG: u32 = 1024;

/// A TCP socket listening for connections.
///
/// ```
/// use xev::net::{TcpListener, TcpStream};
///
/// xev::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (server_side, peer) = listener.accept().await?;
///     assert_eq!(peer, client.local_addr()?);
///     assert_eq!(server_side.peer_addr()?, client.local_addr()?);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    fd: Rc<LoopFd>,
}

impl TcpListener {
    /// A new socket bound to `addr` and listening (backlog 1024), with `SO_REUSEADDR`
    /// set first so a restarted server can bind its port while old connections linger
    /// in `TIME_WAIT`. Binding to port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr).
    ///
    /// This is synchronous (none of these calls wait for the network). Like std, each
    /// address `addr` resolves to is tried in turn: the first that works is used, else
    /// the last error is returned.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        super::each_addr(addr, |a| {
            let s = Tcp::new(*a)?;
            s.bind(*a)?;
            s.listen(BACKLOG)?;
            Ok(TcpListener {
                fd: LoopFd::shared(s.into()),
            })
        })
    }

    /// Wait for the next connection; returns it and the peer's address. Each call is one
    /// single-shot accept; to take connections one after another,
    /// [`incoming`](Self::incoming) is cheaper on io_uring.
    ///
    /// Dropping the future cancels the accept; a connection accepted anyway (the client
    /// connected before the cancellation reached the kernel) is kept for the next accept
    /// on this listener, in order, and later connections stay queued behind it. Only
    /// when the listener itself is gone is such a connection closed.
    ///
    /// # Running out of descriptors
    /// With no descriptor (`EMFILE`, `ENFILE`) or memory (`ENOBUFS`, `ENOMEM`) for the
    /// connection, this returns that error and the connection stays in the listen
    /// backlog. Accepting again at once fails again at once and burns a core: wait until
    /// one of your connections closes or 10-100 ms pass (e.g. `timeout(50 ms,
    /// closed.notified())` with a [`Notify`](crate::notify::Notify) your connection tasks
    /// notify), then accept again; accepted connections keep being served. Other errors
    /// (`ECONNABORTED`, ...) concern one connection: log them and go on.
    /// `examples/echo.rs` does this.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let fd = &self.fd;
        accepted(
            super::accept_or_stashed(fd, None, |_| async {
                rio::run(FdOp::on(fd, |fd| Op::Accept { fd })).await.0
            })
            .await,
        )
    }

    /// [`accept`](Self::accept), failing with [`TimedOut`](io::ErrorKind::TimedOut) if
    /// no connection arrives within `limit` (a runtime timer cancels the accept; with
    /// `XEV_LINK_TIMEOUTS=1` the limit rides on the accept instead, see
    /// [`Loop::add_with_timeout`](crate::Loop::add_with_timeout)). A connection stashed
    /// by an earlier cancelled accept is returned at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// xev::block_on(async {
    ///     let l = xev::net::TcpListener::bind("127.0.0.1:0")?;
    ///     let e = l.accept_timeout(Duration::from_millis(10)).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn accept_timeout(
        &self,
        limit: std::time::Duration,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let fd = &self.fd;
        accepted(
            super::accept_or_stashed(fd, Some(limit), |left| {
                crate::rt::timed::accept(fd, left.unwrap_or(limit))
            })
            .await,
        )
    }

    /// The connections, as a [`Stream`](futures_core::Stream); see [`Incoming`]. On
    /// io_uring it keeps one multishot accept armed (0.7-1.0x the server CPU time per
    /// connection of an [`accept`](Self::accept) loop in `benches/accept_storm.rs`), so
    /// prefer it to calling `accept` in a loop.
    ///
    /// ```
    /// use futures_core::Stream;
    /// use std::pin::Pin;
    /// use xev::net::{TcpListener, TcpStream};
    ///
    /// xev::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let addr = listener.local_addr()?;
    ///     let clients = xev::spawn(async move {
    ///         let mut v = Vec::new();
    ///         for _ in 0..3 {
    ///             v.push(TcpStream::connect(addr).await.unwrap());
    ///         }
    ///         v
    ///     });
    ///     let mut incoming = listener.incoming();
    ///     for _ in 0..3 {
    ///         let next = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_next(cx));
    ///         let conn = next.await.expect("never ends")?;
    ///         assert_eq!(conn.local_addr()?, addr);
    ///     }
    ///     clients.await.unwrap();
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming::new(self)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock::local_addr(self.raw())
    }

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }
}

super::socket_fd!(TcpListener, std::net::TcpListener, "TCP listener");

/// An accept's result as a stream and the peer's address.
fn accepted(r: OpResult) -> io::Result<(TcpStream, SocketAddr)> {
    match r {
        OpResult::Accept(Ok(a)) => {
            let peer = match a.peer {
                Some(p) => p,
                None => sock::peer_addr(a.fd.as_raw_fd())?,
            };
            Ok((
                TcpStream {
                    fd: LoopFd::shared(a.fd),
                },
                peer,
            ))
        }
        OpResult::Accept(Err(e)) => Err(e.into()),
        other => Err(rio::mismatch(&other)),
    }
}

#[allow(private_interfaces)] // sealed trait (see incoming.rs)
impl super::incoming::sealed::Accepting for TcpListener {
    fn loop_fd(&self) -> &Rc<LoopFd> {
        &self.fd
    }
    fn stream_from(r: OpResult) -> io::Result<TcpStream> {
        accepted(r).map(|(s, _peer)| s)
    }
    fn stream_from_fd(fd: crate::sys::fd::OwnedFd) -> TcpStream {
        TcpStream {
            fd: LoopFd::shared(fd),
        }
    }
}

impl super::incoming::Listener for TcpListener {
    type Stream = TcpStream;
}

/// A TCP connection.
///
/// Reads and writes take owned buffers and return them with the result. All methods take
/// `&self`: share the stream through an `Rc` to read in one task while another writes.
/// Dropping the stream closes its fd (at once, unless an operation of a dropped future
/// is still in flight on it: then when that operation ends); [`close`](Self::close)
/// closes it through the loop.
///
/// ```
/// use std::rc::Rc;
/// use xev::net::{TcpListener, TcpStream};
///
/// xev::block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let client = Rc::new(TcpStream::connect(listener.local_addr()?).await?);
///     let (server, _) = listener.accept().await?;
///
///     // Write from one task, read from another.
///     let writer = client.clone();
///     let w = xev::spawn(async move { writer.write_all(b"ping".to_vec()).await.0 });
///     let (res, got) = server.read_exact(vec![0u8; 4]).await;
///     res?;
///     assert_eq!(got, b"ping");
///     w.await??;
///
///     drop(server); // the client then reads end of file
///     let (n, _) = client.read(vec![0u8; 16]).await;
///     assert_eq!(n?, 0);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpStream {
    fd: Rc<LoopFd>,
}

impl TcpStream {
    /// Connect to `addr`. Each address it resolves to is tried in turn (a new socket
    /// for each); the first connection made is returned, else the last error (a refused
    /// connection is [`ConnectionRefused`](io::ErrorKind::ConnectionRefused)).
    ///
    /// Dropping the future cancels the attempt and closes its socket.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match connect_to(a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(super::no_addresses))
    }

    /// Read once into `buf` (`recv(2)`): the number of bytes read, `Ok(0)` at end of
    /// stream (the peer shut down its sending side or closed). A buffer with no room is
    /// an [`InvalidInput`](io::ErrorKind::InvalidInput) error. See
    /// [`IoBufMut`](crate::rt::IoBufMut) for how the bytes land in a `Vec`.
    ///
    /// Dropping the future cancels the read.
    // The read's own future, without an `async fn` layer around it (the hot path).
    pub fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::read(&self.fd, buf, Kind::Socket)
    }

    /// Wait for data and return it in a buffer taken from the thread's read pool only
    /// once it has arrived (at most [`POOLED_READ_SIZE`](super::POOLED_READ_SIZE) bytes);
    /// an empty buffer is end of stream. A connection waiting here costs no buffer, and
    /// dropping the future loses no data (it stays in the socket). Dropping the
    /// [`PooledBuf`](super::PooledBuf) returns the buffer.
    ///
    /// ```
    /// use xev::net::{TcpListener, TcpStream};
    ///
    /// xev::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     client.write_all(b"hello".to_vec()).await.0?;
    ///     let got = server.read_pooled().await?;
    ///     assert_eq!(&got[..], b"hello");
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(unix)]
    pub async fn read_pooled(&self) -> io::Result<super::PooledBuf> {
        super::pooled::read_pooled(&self.fd).await
    }

    /// [`read`](Self::read), failing with [`TimedOut`](io::ErrorKind::TimedOut) if no
    /// data (nor end of stream) arrives within `limit`; the buffer comes back either
    /// way. A runtime timer cancels the read past the limit (with `XEV_LINK_TIMEOUTS=1`
    /// the limit rides on the read instead: one linked LINK_TIMEOUT SQE on io_uring, see
    /// [`Loop::add_with_timeout`](crate::Loop::add_with_timeout); it measured dearer).
    /// (`xev::time::timeout(limit, stream.read(buf))` works too, but drops the read and
    /// its buffer on expiry.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use xev::net::{TcpListener, TcpStream};
    /// xev::block_on(async {
    ///     let l = TcpListener::bind("127.0.0.1:0")?;
    ///     let c = TcpStream::connect(l.local_addr()?).await?;
    ///     let (res, buf) = c.read_timeout(vec![0u8; 16], Duration::from_millis(10)).await;
    ///     assert_eq!(res.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    ///     assert_eq!(buf.capacity(), 16); // the buffer came back with the error
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read_timeout<B: IoBufMut>(
        &self,
        buf: B,
        limit: std::time::Duration,
    ) -> (io::Result<usize>, B) {
        crate::rt::timed::read(&self.fd, buf, Kind::Socket, limit).await
    }

    /// Fill `buf` completely, reading as often as needed; end of stream first is an
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) error (the bytes read so far are
    /// at the start of the returned buffer).
    pub fn read_exact<B: IoBufMut>(
        &self,
        buf: B,
    ) -> impl Future<Output = (io::Result<()>, B)> + '_ {
        rio::read_exact(&self.fd, buf, Kind::Socket)
    }

    /// Write once from the start of `buf` (`send(2)`): the number of bytes written,
    /// possibly fewer than `buf` holds. Writing to a connection the peer has closed is
    /// an error (`BrokenPipe` or `ConnectionReset`), never a `SIGPIPE`.
    pub fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::write(&self.fd, buf, Kind::Socket, true)
    }

    /// Write all of `buf`, continuing after partial writes. Large writes can go out
    /// without copying: see [`set_send_zerocopy`](crate::net::set_send_zerocopy).
    pub fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<()>, B)> + '_ {
        rio::write_all(&self.fd, buf, Kind::Socket, true)
    }

    /// Read once into several buffers (`readv(2)`), filling each before the next: the
    /// total byte count, `Ok(0)` at end of stream. Buffer `i` gets the bytes after the
    /// room of the buffers before it (a `Vec` offers its capacity, as for
    /// [`read`](Self::read), and its length becomes the larger of its old length and
    /// the bytes it got). An empty `Vec`, buffers with no room at all, or more than
    /// 1024 buffers (`IOV_MAX`) is [`InvalidInput`](io::ErrorKind::InvalidInput).
    ///
    /// ```
    /// use xev::net::{TcpListener, TcpStream};
    ///
    /// xev::block_on(async {
    ///     let listener = TcpListener::bind("127.0.0.1:0")?;
    ///     let client = TcpStream::connect(listener.local_addr()?).await?;
    ///     let (server, _) = listener.accept().await?;
    ///     let (n, _) = client.write_vectored(vec!["head", ":", "body"]).await;
    ///     assert_eq!(n?, 9);
    ///
    ///     let (n, bufs) = server.read_vectored(vec![vec![0u8; 4], vec![0u8; 16]]).await;
    ///     assert_eq!(n?, 9);
    ///     assert_eq!((&bufs[0][..], &bufs[1][..5]), (&b"head"[..], &b":body"[..]));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// Dropping the future cancels the read.
    pub async fn read_vectored<B: IoBufMut>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        rio::read_vectored(&self.fd, bufs, Kind::Socket).await
    }

    /// Write once from several buffers in order (`sendmsg(2)` with `MSG_NOSIGNAL`): the
    /// total byte count, possibly fewer than the buffers hold. An empty `Vec` is `Ok(0)`
    /// at once; more than 1024 buffers (`IOV_MAX`) is
    /// [`InvalidInput`](io::ErrorKind::InvalidInput).
    pub async fn write_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        rio::write_vectored(&self.fd, bufs, Kind::Socket, None, false).await
    }

    /// Shut down the reading side, the writing side or both (`shutdown(2)`).
    /// `Shutdown::Write` sends end of stream: the peer's reads then return `Ok(0)` once
    /// it has read everything sent before.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        rio::unit(FdOp::on(&self.fd, |fd| Op::Shutdown { fd, how })).await
    }

    /// Close the connection through the loop, reporting any error of `close(2)`.
    /// (Dropping the stream closes it too, synchronously and silently.) If an operation
    /// of a dropped future is still in flight on the stream, this first waits for it to
    /// end (it was cancelled when its future was dropped).
    pub async fn close(self) -> io::Result<()> {
        rio::close(self.fd).await
    }

    /// The address of the peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock::peer_addr(self.raw())
    }

    /// The local address of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock::local_addr(self.raw())
    }

    /// Set `TCP_NODELAY` (disable Nagle's algorithm, so small writes go out at once).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        crate::sys::set_nodelay(self.raw(), nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        crate::sys::nodelay(self.raw())
    }

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    /// The fd shared with this stream's operations (for `xev::compat`).
    #[allow(dead_code)]
    pub(crate) fn loop_fd(&self) -> &Rc<LoopFd> {
        &self.fd
    }
}

/// One connection attempt on a new socket.
async fn connect_to(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream {
        fd: LoopFd::shared(sock::socket(&addr, socket2::Type::STREAM)?),
    };
    rio::unit(FdOp::on(&stream.fd, |fd| Op::Connect { fd, addr })).await?;
    Ok(stream)
}

super::socket_fd!(TcpStream, std::net::TcpStream, "TCP stream");

// SO_REUSEPORT listeners (one per worker of a `xev::rt::Pool`).
#[cfg(unix)]
impl TcpListener {
    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` set as well as `SO_REUSEADDR`:
    /// several listeners (all made with `bind_reuseport`, by the same user) can then bind
    /// the same address, and the kernel spreads incoming connections over them. This is
    /// how each worker of a [`Pool`](crate::rt::Pool) accepts on its own listener.
    ///
    /// Binding port 0 picks a free port for the first listener; bind the others to
    /// [`local_addr`](Self::local_addr) of the first. Unix only (Windows has no
    /// `SO_REUSEPORT`). On Linux a connection is handed to one listener by a hash of
    /// its addresses: a listener that is closed drops the connections queued on it.
    ///
    /// ```
    /// use xev::net::TcpListener;
    ///
    /// xev::block_on(async {
    ///     let a = TcpListener::bind_reuseport("127.0.0.1:0")?;
    ///     let b = TcpListener::bind_reuseport(a.local_addr()?)?;
    ///     assert_eq!(a.local_addr()?, b.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_reuseport(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        super::each_addr(addr, |a| {
            let fd = sock::socket(a, socket2::Type::STREAM)?;
            let s = socket2::SockRef::from(&fd);
            s.set_reuse_address(true)?;
            s.set_reuse_port(true)?;
            s.bind(&(*a).into())?;
            s.listen(BACKLOG as i32)?;
            Ok(TcpListener {
                fd: LoopFd::shared(fd),
            })
        })
    }
}
