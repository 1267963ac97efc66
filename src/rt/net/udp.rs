//! UDP: [`UdpSocket`].

use crate::sys::fd::{AsRawFd, RawFd};
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;

use crate::rt::io::{self as rio, Kind};
use crate::rt::loop_fd::LoopFd;
use crate::rt::{IoBuf, IoBufMut};
use crate::watcher::tcp as sock;

/// A UDP socket: datagrams to and from any address with [`send_to`](Self::send_to) and
/// [`recv_from`](Self::recv_from), or, after [`connect`](Self::connect), with one peer
/// through [`send`](Self::send) and [`recv`](Self::recv).
///
/// ```
/// use xev::net::UdpSocket;
///
/// xev::block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     let (n, _) = a.send_to("ping", b.local_addr()?).await;
///     assert_eq!(n?, 4);
///     let (res, buf) = b.recv_from(vec![0u8; 64]).await;
///     let (n, from) = res?;
///     assert_eq!(&buf[..n], b"ping");
///     assert_eq!(from, a.local_addr()?);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    fd: Rc<LoopFd>,
}

impl UdpSocket {
    /// A new socket bound to `addr` (port 0 picks a free port; see
    /// [`local_addr`](Self::local_addr)). Synchronous; like std, each address `addr`
    /// resolves to is tried in turn and the last error is returned if none works.
    /// Unlike [`TcpListener::bind`](super::TcpListener::bind), `SO_REUSEADDR` is not
    /// set: on a UDP socket it would let another socket bind the same port and take
    /// its datagrams.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        super::each_addr(addr, |a| {
            let fd = sock::socket(a, socket2::Type::DGRAM)?;
            sock::bind(fd.as_raw_fd(), a)?;
            Ok(UdpSocket {
                fd: LoopFd::shared(fd),
            })
        })
    }

    /// Send `buf` as one datagram to `addr` (`sendmsg(2)`; the first address `addr`
    /// resolves to is used): the number of bytes sent. An empty `buf` sends an empty
    /// datagram.
    pub async fn send_to<B: IoBuf>(
        &self,
        buf: B,
        addr: impl ToSocketAddrs,
    ) -> (io::Result<usize>, B) {
        let to = match addr.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(to)) => to,
            Ok(None) => {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to");
                return (Err(e), buf);
            }
            Err(e) => return (Err(e), buf),
        };
        rio::send_to(&self.fd, buf, Some(to)).await
    }

    /// Receive one datagram into `buf` (`recvmsg(2)`): its length and its sender's
    /// address. A datagram longer than `buf` is truncated (the rest is lost); an empty
    /// datagram is `Ok((0, sender))`. A buffer with no room is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error.
    ///
    /// Dropping the future cancels the receive.
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> (io::Result<(usize, SocketAddr)>, B) {
        rio::recv_from(&self.fd, buf).await
    }

    /// Fix the peer: afterwards [`send`](Self::send) goes to `addr` and only datagrams
    /// from `addr` are received. Each address `addr` resolves to is tried in turn.
    ///
    /// This is a plain synchronous `connect(2)`, not a loop operation: on a UDP socket
    /// it exchanges nothing with the network (it only records the peer and picks the
    /// route and local address), so it never waits.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        super::each_addr(addr, |a| sock::connect(self.raw(), a))
    }

    /// Send `buf` as one datagram to the peer set by [`connect`](Self::connect).
    pub async fn send<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        rio::send_to(&self.fd, buf, None).await
    }

    /// Receive one datagram from the peer set by [`connect`](Self::connect): its length
    /// (`Ok(0)` for an empty datagram). A datagram longer than `buf` is truncated.
    ///
    /// Dropping the future cancels the receive.
    pub fn recv<B: IoBufMut>(&self, buf: B) -> impl Future<Output = (io::Result<usize>, B)> + '_ {
        rio::read(&self.fd, buf, Kind::Socket)
    }

    /// Send several buffers, in order, as one datagram to `addr` (`sendmsg(2)`; the
    /// first address `addr` resolves to is used): the number of bytes sent. An empty
    /// `Vec` sends an empty datagram; more than 1024 buffers (`IOV_MAX`) is
    /// [`InvalidInput`](io::ErrorKind::InvalidInput).
    ///
    /// ```
    /// use xev::net::UdpSocket;
    ///
    /// xev::block_on(async {
    ///     let a = UdpSocket::bind("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind("127.0.0.1:0")?;
    ///     let (n, _) = a.send_to_vectored(vec!["hea", "der"], b.local_addr()?).await;
    ///     assert_eq!(n?, 6);
    ///     let (res, buf) = b.recv_from(vec![0u8; 64]).await;
    ///     assert_eq!(&buf[..res?.0], b"header");
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn send_to_vectored<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        addr: impl ToSocketAddrs,
    ) -> (io::Result<usize>, Vec<B>) {
        let to = match addr.to_socket_addrs().map(|mut it| it.next()) {
            Ok(Some(to)) => to,
            Ok(None) => {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to");
                return (Err(e), bufs);
            }
            Err(e) => return (Err(e), bufs),
        };
        rio::write_vectored(&self.fd, bufs, Kind::Socket, Some(to), true).await
    }

    /// Send several buffers, in order, as one datagram to the peer set by
    /// [`connect`](Self::connect) (see [`send_to_vectored`](Self::send_to_vectored)).
    pub async fn send_vectored<B: IoBuf>(&self, bufs: Vec<B>) -> (io::Result<usize>, Vec<B>) {
        rio::write_vectored(&self.fd, bufs, Kind::Socket, None, true).await
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        sock::local_addr(self.raw())
    }

    /// The peer set by [`connect`](Self::connect) (`NotConnected` before).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        sock::peer_addr(self.raw())
    }

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }
}

super::socket_fd!(UdpSocket, std::net::UdpSocket, "UDP socket");

// SO_REUSEPORT sockets (one per worker of a `xev::rt::Pool`).
#[cfg(unix)]
impl UdpSocket {
    /// Like [`bind`](Self::bind), with `SO_REUSEPORT` set: several sockets (all made
    /// with `bind_reuseport`, by the same user) can bind the same address, and the
    /// kernel spreads incoming datagrams over them (on Linux by a hash of the sender's
    /// address, so one peer's datagrams go to one socket). Bind the others to
    /// [`local_addr`](Self::local_addr) of the first. Unix only.
    ///
    /// ```
    /// use xev::net::UdpSocket;
    ///
    /// xev::block_on(async {
    ///     let a = UdpSocket::bind_reuseport("127.0.0.1:0")?;
    ///     let b = UdpSocket::bind_reuseport(a.local_addr()?)?;
    ///     assert_eq!(a.local_addr()?, b.local_addr()?);
    ///     Ok::<_, std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_reuseport(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        super::each_addr(addr, |a| {
            let fd = sock::socket(a, socket2::Type::DGRAM)?;
            let s = socket2::SockRef::from(&fd);
            s.set_reuse_port(true)?;
            s.bind(&(*a).into())?;
            Ok(UdpSocket {
                fd: LoopFd::shared(fd),
            })
        })
    }
}
