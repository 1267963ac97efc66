//! Unix-domain sockets: [`UnixListener`] (with its [`UnixIncoming`] stream),
//! [`UnixStream`] and [`UnixDatagram`], addressed by a filesystem path or, on Linux, an
//! abstract name ([`UnixAddr`]).
//!
//! They behave as the TCP and UDP types do (owned buffers, `&self` methods, an fd shared
//! with its operations so it outlives them), with [`UnixAddr`] for addresses: a client
//! that did not bind is reported as unnamed. Sockets are created with socket2,
//! non-blocking and close-on-exec. A listener bound to a path does not remove its socket
//! file when dropped (as with std): remove it yourself, or use an abstract name.

use crate::sys::fd::{AsRawFd, OwnedFd, RawFd};
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::path::Path;
use std::rc::Rc;

use socket2::{Domain, Socket, Type};

use crate::op::Op;
use crate::result::{OpResult, ReadError};
use crate::rt::buf;
use crate::rt::io::{self as rio, FdOp, Kind};
use crate::rt::loop_fd::LoopFd;
use crate::rt::net::incoming::Incoming;
use crate::rt::op_future::OpFuture;
use crate::rt::{IoBuf, IoBufMut};
use crate::UnixAddr;

/// The `listen(2)` backlog of [`UnixListener::bind`].
const BACKLOG: i32 = 1024;

/// A new non-blocking, close-on-exec Unix-domain socket of type `ty`.
fn socket(ty: Type) -> io::Result<Socket> {
    crate::sys::socket(Domain::UNIX, ty)
}

/// A connected pair of non-blocking, close-on-exec sockets of type `ty`.
fn pair(ty: Type) -> io::Result<(Rc<LoopFd>, Rc<LoopFd>)> {
    let (a, b) = crate::sys::socketpair(Domain::UNIX, ty)?;
    Ok((
        LoopFd::shared(OwnedFd::from(a)),
        LoopFd::shared(OwnedFd::from(b)),
    ))
}

/// A Unix-domain socket listening for connections.
///
/// ```
/// use xev::net::{UnixListener, UnixStream};
///
/// xev::block_on(async {
///     let dir = std::env::temp_dir().join(format!("xev-doc-{}", std::process::id()));
///     std::fs::create_dir_all(&dir)?;
///     let path = dir.join("listener.sock");
///     let _ = std::fs::remove_file(&path);
///     let listener = UnixListener::bind(&path)?;
///     let client = UnixStream::connect(&path).await?;
///     let (server_side, peer) = listener.accept().await?;
///     assert!(peer.is_unnamed()); // the client did not bind
///     client.write_all(b"hi".to_vec()).await.0?;
///     let (res, got) = server_side.read_exact(vec![0u8; 2]).await;
///     res?;
///     assert_eq!(got, b"hi");
///     std::fs::remove_dir_all(&dir)?;
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixListener {
    fd: Rc<LoopFd>,
}

impl UnixListener {
    /// A new socket bound to the socket file `path` and listening (backlog 1024).
    /// Synchronous. An existing file at `path` is
    /// [`AddrInUse`](io::ErrorKind::AddrInUse); a path too long for `sockaddr_un` (108
    /// bytes) or with a NUL inside is [`InvalidInput`](io::ErrorKind::InvalidInput).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        UnixListener::bind_addr(&UnixAddr::from_pathname(path)?)
    }

    /// As [`bind`](Self::bind), to any [`UnixAddr`]: a path or an abstract name (for
    /// std's `SocketAddr`, convert with `UnixAddr::from`).
    ///
    /// ```
    /// # #[cfg(target_os = "linux")]
    /// xev::block_on(async {
    ///     use xev::{net::{UnixListener, UnixStream}, UnixAddr};
    ///     let name = UnixAddr::from_abstract_name(format!("xev-doc-{}", std::process::id()))?;
    ///     let listener = UnixListener::bind_addr(&name)?;
    ///     assert_eq!(listener.local_addr()?, name);
    ///     let _client = UnixStream::connect_addr(&name).await?;
    ///     let (_conn, _peer) = listener.accept().await?;
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_addr(addr: &UnixAddr) -> io::Result<UnixListener> {
        let s = socket(Type::STREAM)?;
        s.bind(&addr.socket2_addr())?;
        s.listen(BACKLOG)?;
        Ok(UnixListener {
            fd: LoopFd::shared(s.into()),
        })
    }

    /// Wait for the next connection; returns it and the peer's address (unnamed unless
    /// the client bound its socket).
    ///
    /// Dropping the future cancels the accept; a connection accepted anyway is kept for
    /// the next accept on this listener, in order (as for
    /// [`TcpListener::accept`](super::TcpListener::accept), whose notes on running out
    /// of descriptors apply here too).
    pub async fn accept(&self) -> io::Result<(UnixStream, UnixAddr)> {
        // `Op::Accept`, not `Op::AcceptUnix`: a connection that raced a dropped future's
        // cancel is then kept by the listener (the runtime stashes `Accept` results);
        // the peer's address comes from getpeername(2), which reports what accept would.
        let fd = &self.fd;
        accepted(
            super::accept_or_stashed(fd, None, |_| async {
                rio::run(FdOp::on(fd, |fd| Op::Accept { fd })).await.0
            })
            .await,
        )
    }

    /// The connections, as a [`Stream`](futures_core::Stream); see [`UnixIncoming`].
    pub fn incoming(&self) -> UnixIncoming<'_> {
        Incoming::new(self)
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.fd.as_raw_fd(), false)
    }
}

super::socket_fd!(
    UnixListener,
    std::os::unix::net::UnixListener,
    "Unix-domain listener"
);

/// An accept's result as a stream and the peer's address.
fn accepted(r: OpResult) -> io::Result<(UnixStream, UnixAddr)> {
    match r {
        OpResult::Accept(Ok(a)) => {
            let peer = UnixAddr::of_socket(a.fd.as_raw_fd(), true)?;
            Ok((
                UnixStream {
                    fd: LoopFd::shared(a.fd),
                },
                peer,
            ))
        }
        OpResult::Accept(Err(e)) => Err(e.into()),
        other => Err(rio::mismatch(&other)),
    }
}

/// The connections of a [`UnixListener`], from [`UnixListener::incoming`] (see
/// [`Incoming`]).
pub type UnixIncoming<'a> = Incoming<'a, UnixListener>;

#[allow(private_interfaces)] // sealed trait (see incoming.rs)
impl super::incoming::sealed::Accepting for UnixListener {
    fn loop_fd(&self) -> &Rc<LoopFd> {
        &self.fd
    }
    fn stream_from(r: OpResult) -> io::Result<UnixStream> {
        accepted(r).map(|(s, _peer)| s)
    }
    fn stream_from_fd(fd: crate::sys::fd::OwnedFd) -> UnixStream {
        UnixStream {
            fd: LoopFd::shared(fd),
        }
    }
}

impl super::incoming::Listener for UnixListener {
    type Stream = UnixStream;
}

/// A Unix-domain stream connection.
///
/// Reads and writes take owned buffers and return them with the result; all methods take
/// `&self` (share the stream through an `Rc` to read in one task while another writes).
/// Dropping the stream closes its fd (once operations of dropped futures on it are over);
/// [`close`](Self::close) closes it through the loop.
///
/// ```
/// use xev::net::UnixStream;
///
/// xev::block_on(async {
///     let (a, b) = UnixStream::pair()?;
///     a.write_all(b"ping".to_vec()).await.0?;
///     let (res, got) = b.read_exact(vec![0u8; 4]).await;
///     res?;
///     assert_eq!(got, b"ping");
///     drop(a); // b then reads end of stream
///     assert_eq!(b.read(vec![0u8; 8]).await.0?, 0);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixStream {
    fd: Rc<LoopFd>,
}

impl UnixStream {
    /// Connect to the socket file at `path`. A missing file is
    /// [`NotFound`](io::ErrorKind::NotFound); a file nobody listens on is
    /// [`ConnectionRefused`](io::ErrorKind::ConnectionRefused); a listener whose backlog
    /// is full is [`WouldBlock`](io::ErrorKind::WouldBlock) (a Unix connect never waits);
    /// a path too long or with a NUL inside is
    /// [`InvalidInput`](io::ErrorKind::InvalidInput).
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = UnixAddr::from_pathname(path)?;
        UnixStream::connect_addr(&addr).await
    }

    /// As [`connect`](Self::connect), to any [`UnixAddr`] (a path or an abstract name).
    pub async fn connect_addr(addr: &UnixAddr) -> io::Result<UnixStream> {
        let stream = UnixStream {
            fd: LoopFd::shared(socket(Type::STREAM)?.into()),
        };
        connect(&stream.fd, addr).await?;
        Ok(stream)
    }

    /// Two connected streams (`socketpair(2)`); both addresses are unnamed.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = pair(Type::STREAM)?;
        Ok((UnixStream { fd: a }, UnixStream { fd: b }))
    }

    /// Read once into `buf`: the number of bytes read, `Ok(0)` at end of stream. A buffer
    /// with no room is an [`InvalidInput`](io::ErrorKind::InvalidInput) error. Dropping
    /// the future cancels the read.
    pub fn read<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::read(&self.fd, buf, Kind::Socket)
    }

    /// Fill `buf` completely; end of stream first is
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) (the bytes read so far are at the
    /// start of the returned buffer).
    pub fn read_exact<B: IoBufMut>(
        &self,
        buf: B,
    ) -> impl Future<Output = (io::Result<()>, B)> + '_ {
        rio::read_exact(&self.fd, buf, Kind::Socket)
    }

    /// Write once from the start of `buf` (`send(2)` with `MSG_NOSIGNAL`): the number of
    /// bytes written, possibly fewer. Writing to a closed peer is
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe), never a `SIGPIPE`.
    pub fn write<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::write(&self.fd, buf, Kind::Socket, false)
    }

    /// Write all of `buf`, continuing after partial writes.
    pub fn write_all<B: IoBuf>(&self, buf: B) -> impl Future<Output = (io::Result<()>, B)> + '_ {
        rio::write_all(&self.fd, buf, Kind::Socket, false)
    }

    /// Shut down the reading side, the writing side or both (`shutdown(2)`);
    /// `Shutdown::Write` sends end of stream.
    pub async fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        rio::unit(FdOp::on(&self.fd, |fd| Op::Shutdown { fd, how })).await
    }

    /// Close the connection through the loop, reporting any error of `close(2)`, after
    /// the operations of dropped futures on it are over.
    pub async fn close(self) -> io::Result<()> {
        rio::close(self.fd).await
    }

    /// The address of the peer (unnamed unless it bound one).
    pub fn peer_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.fd.as_raw_fd(), true)
    }

    /// The local address (unnamed for a client that did not bind).
    pub fn local_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.fd.as_raw_fd(), false)
    }

    /// The fd shared with this stream's operations (for `xev::compat`).
    #[allow(dead_code)] // used only with the compat features
    pub(crate) fn loop_fd(&self) -> &Rc<LoopFd> {
        &self.fd
    }
}

super::socket_fd!(
    UnixStream,
    std::os::unix::net::UnixStream,
    "Unix-domain stream"
);

/// Connect the socket of `fd` to `addr` through the loop ([`Op::ConnectUnix`]).
async fn connect(fd: &Rc<LoopFd>, addr: &UnixAddr) -> io::Result<()> {
    let addr = Box::new(*addr);
    match rio::run(FdOp::on(fd, |fd| Op::ConnectUnix { fd, addr }))
        .await
        .0
    {
        OpResult::ConnectUnix(r) => r.map_err(Into::into),
        other => Err(rio::mismatch(&other)),
    }
}

/// A Unix-domain datagram socket: messages to and from any address with
/// [`send_to`](Self::send_to) and [`recv_from`](Self::recv_from), or, after
/// [`connect`](Self::connect) (or from [`pair`](Self::pair)), with one peer through
/// [`send`](Self::send) and [`recv`](Self::recv). Message boundaries are kept.
///
/// ```
/// use xev::net::UnixDatagram;
///
/// xev::block_on(async {
///     let (a, b) = UnixDatagram::pair()?;
///     a.send(b"one".to_vec()).await.0?;
///     a.send(b"two".to_vec()).await.0?;
///     let (n, buf) = b.recv(vec![0u8; 16]).await;
///     assert_eq!(&buf[..n?], b"one");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixDatagram {
    fd: Rc<LoopFd>,
}

impl UnixDatagram {
    /// A new socket bound to the socket file `path` (errors as for
    /// [`UnixListener::bind`]).
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        UnixDatagram::bind_addr(&UnixAddr::from_pathname(path)?)
    }

    /// A new socket bound to `addr` (a path or an abstract name).
    pub fn bind_addr(addr: &UnixAddr) -> io::Result<UnixDatagram> {
        let s = socket(Type::DGRAM)?;
        s.bind(&addr.socket2_addr())?;
        Ok(UnixDatagram {
            fd: LoopFd::shared(s.into()),
        })
    }

    /// A new socket bound to no address: it can send, and receive replies only after
    /// [`connect`](Self::connect) (its messages arrive from an unnamed sender).
    pub fn unbound() -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            fd: LoopFd::shared(socket(Type::DGRAM)?.into()),
        })
    }

    /// Two connected sockets (`socketpair(2)`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = pair(Type::DGRAM)?;
        Ok((UnixDatagram { fd: a }, UnixDatagram { fd: b }))
    }

    /// Fix the peer to the socket at `path`: [`send`](Self::send) then goes there and
    /// only its messages are received. Synchronous (a Unix connect never waits).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        self.connect_addr(&UnixAddr::from_pathname(path)?)
    }

    /// As [`connect`](Self::connect), to any [`UnixAddr`].
    pub fn connect_addr(&self, addr: &UnixAddr) -> io::Result<()> {
        socket2::SockRef::from(&*self.fd).connect(&addr.socket2_addr())
    }

    /// Send `buf` as one message to the socket at `path`: the number of bytes sent. An
    /// invalid path is [`InvalidInput`](io::ErrorKind::InvalidInput), a missing one
    /// [`NotFound`](io::ErrorKind::NotFound).
    pub async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        path: impl AsRef<Path>,
    ) -> (io::Result<usize>, B) {
        match UnixAddr::from_pathname(path) {
            Ok(a) => self.send_to_addr(buf, &a).await,
            Err(e) => (Err(e), buf),
        }
    }

    /// Send `buf` as one message to `addr` ([`Op::SendMsgUnix`]).
    pub async fn send_to_addr<B: IoBuf>(&self, buf: B, addr: &UnixAddr) -> (io::Result<usize>, B) {
        let (b, saved) = buf::into_buffer(buf);
        let addr = Box::new(*addr);
        let (res, b) = rio::run(FdOp::on(&self.fd, |fd| Op::SendMsgUnix {
            fd,
            buf: b,
            addr,
        }))
        .await;
        let res = match res {
            OpResult::SendMsgUnix(r) => r.map_err(Into::into),
            other => Err(rio::mismatch(&other)),
        };
        let b = b.expect("sendmsg hands its buffer back");
        (res, buf::from_buffer(b, saved))
    }

    /// Receive one message into `buf`: its length and its sender's address (unnamed for
    /// an unbound sender). A longer message is truncated; an empty buffer is
    /// [`InvalidInput`](io::ErrorKind::InvalidInput). Dropping the future cancels it.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, UnixAddr)>, B) {
        let (b, prep) = buf::into_read_buffer(buf);
        if b.is_empty() {
            return (Err(rio::empty_read()), buf::from_read_buffer(b, prep, 0));
        }
        let op = Op::recv_msg_unix(self.fd.raw(), b);
        let (res, op) = OpFuture::with_fd(op, Some(self.fd.clone())).await;
        let from = op.unix_addr().copied().unwrap_or_else(UnixAddr::unnamed);
        let res = match res {
            OpResult::RecvMsgUnix(Ok(n)) => Ok((n, from)),
            OpResult::RecvMsgUnix(Err(ReadError::Eof)) => Err(io::ErrorKind::UnexpectedEof.into()),
            OpResult::RecvMsgUnix(Err(e)) => Err(e.into()),
            other => Err(rio::mismatch(&other)),
        };
        let b = op.into_buffer().expect("recvmsg hands its buffer back");
        let filled = res.as_ref().map_or(0, |(n, _)| *n);
        (res, buf::from_read_buffer(b, prep, filled))
    }

    /// Send `buf` as one message to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        rio::send_to(&self.fd, buf, None).await
    }

    /// Receive one message from the connected peer: its length (`Ok(0)` for an empty
    /// message). A longer message is truncated.
    pub fn recv<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::read(&self.fd, buf, Kind::Socket)
    }

    /// The address the socket is bound to (unnamed if none).
    pub fn local_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.raw(), false)
    }

    /// The connected peer's address (`NotConnected` before [`connect`](Self::connect)).
    pub fn peer_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.raw(), true)
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

super::socket_fd!(
    UnixDatagram,
    std::os::unix::net::UnixDatagram,
    "Unix-domain datagram socket"
);
