//! Async networking: [`TcpListener`], [`TcpStream`] and [`UdpSocket`].
//!
//! Every socket is non-blocking and close-on-exec and owns its fd: dropping it closes
//! the fd at once (synchronously); [`TcpStream::close`] closes it through the loop
//! instead. Either way, **an fd number is never closed while an operation that names it
//! can still run**: if the future of an operation on the socket was dropped and the
//! operation (cancelled) has not ended yet, the fd is closed when it ends. Otherwise a
//! new socket could get the number in between and the stale operation would run on it,
//! writing to or reading from the wrong connection. Reads and writes take owned buffers and hand them back with the result, as
//! everywhere in the runtime (see [`IoBuf`](crate::rt::IoBuf) and
//! [`IoBufMut`](crate::rt::IoBufMut)); the methods take `&self`, so one task can read
//! while another writes the same socket (share it through an `Rc`).
//!
//! Dropping an operation's future before it finishes cancels the operation (this is how
//! [`timeout`](crate::time::timeout) and [`JoinHandle::abort`](crate::JoinHandle::abort)
//! stop a read or an accept); a connection that a cancelled accept produced anyway is
//! kept for the listener's next accept (closed only if the listener is gone). An operation that had already completed when its future was dropped (its
//! result waiting for the next poll) is not undone: bytes it read are lost with it.
//! `timeout` always takes such a result first; aborting a task may not.
//!
//! Addresses are anything [`ToSocketAddrs`] accepts. Resolving a host name with it is a
//! blocking lookup that stalls every task of the runtime while it runs; pass socket
//! addresses (`"127.0.0.1:8080"`, a `SocketAddr`), or resolve names first with
//! [`spawn_blocking`](crate::spawn_blocking).
//!
//! ```
//! use xev::net::{TcpListener, TcpStream};
//!
//! xev::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!
//!     // An echo server for one connection.
//!     let server = xev::spawn(async move {
//!         let (conn, _peer) = listener.accept().await?;
//!         let mut buf = vec![0u8; 1024];
//!         loop {
//!             let (res, b) = conn.read(buf).await;
//!             let n = res?;
//!             if n == 0 {
//!                 return Ok::<_, std::io::Error>(());
//!             }
//!             conn.write_all(b[..n].to_vec()).await.0?;
//!             buf = b;
//!         }
//!     });
//!
//!     let client = TcpStream::connect(addr).await?;
//!     client.write_all("hello").await.0?;
//!     client.shutdown(std::net::Shutdown::Write).await?;
//!     let (res, echoed) = client.read_exact(vec![0u8; 5]).await;
//!     res?;
//!     assert_eq!(echoed, b"hello");
//!     server.await??;
//!     Ok::<_, std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(unix)]
mod accept_queue;
mod incoming;
#[cfg(unix)]
mod pooled;
#[cfg(unix)]
mod send_zc;
mod tcp;
mod udp;
#[cfg(unix)]
mod unix;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

#[cfg(unix)]
pub use crate::UnixAddr;
pub use incoming::{Incoming, Listener};
#[cfg(unix)]
pub use pooled::{pooled_free_buffers, PooledBuf, POOLED_READ_SIZE};
#[cfg(unix)]
pub(crate) use send_zc::{
    enabled as send_zc_enabled, send_op as send_zc_op, wants as send_zc_wants,
};
#[cfg(unix)]
pub use send_zc::{send_zerocopy, set_send_zerocopy};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
#[cfg(unix)]
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

/// The error for an address that resolved to nothing (the same as std's).
fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any addresses",
    )
}

/// Try `f` on each address `addr` resolves to, like std: the first success, or the last
/// error.
fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(no_addresses))
}

/// One accept on listener `fd`: a stashed connection (see `LoopFd::stash`) if there is
/// one, else `accept(limit)`'s result (`limit`: what is left of `within`, if given). A
/// connection stashed while the accept waits (one an orphaned accept received, so one
/// that connected earlier) ends the wait: the accept is dropped (a connection it gets
/// anyway is stashed in turn) and the stashed one is returned. Otherwise the accept
/// would wait in the kernel for another client while the connected one sat in the
/// stash.
pub(crate) async fn accept_or_stashed<F, Fut>(
    fd: &std::rc::Rc<crate::rt::loop_fd::LoopFd>,
    within: Option<std::time::Duration>,
    mut accept: F,
) -> crate::result::OpResult
where
    F: FnMut(Option<std::time::Duration>) -> Fut,
    Fut: std::future::Future<Output = crate::result::OpResult>,
{
    use std::task::Poll;
    let deadline = within.map(|d| crate::rt::time::saturating_add(std::time::Instant::now(), d));
    loop {
        if let Some(a) = fd.take_stashed() {
            return crate::result::OpResult::Accept(Ok(a));
        }
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let mut op = std::pin::pin!(accept(left));
        let done = std::future::poll_fn(|cx| match op.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending if fd.watch_stash(cx.waker()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(r) = done {
            return r;
        }
    }
}

/// The fd conversions of a socket type holding a `LoopFd` in a field named `fd`, and
/// `From` its std counterpart (made non-blocking).
macro_rules! socket_fd {
    ($t:ident, $std:ty, $what:literal) => {
        impl From<$std> for $t {
            #[doc = concat!("Wrap a std ", $what, ", switching it to non-blocking mode.")]
            ///
            /// # Panics
            /// If the socket cannot be made non-blocking (`ioctl(FIONBIO)` fails only for
            /// an fd that is not open).
            fn from(s: $std) -> $t {
                s.set_nonblocking(true).unwrap_or_else(|e| {
                    panic!("xev::net: cannot make the socket non-blocking: {e}")
                });
                $t {
                    fd: crate::rt::loop_fd::LoopFd::shared(crate::sys::fd::OwnedFd::from(s)),
                }
            }
        }

        impl From<crate::sys::fd::OwnedFd> for $t {
            #[doc = concat!(
                        "Wrap an fd that is a ", $what, ", switching it to non-blocking mode."
                    )]
            ///
            /// # Panics
            /// As `From` the std type.
            fn from(fd: crate::sys::fd::OwnedFd) -> $t {
                $t::from(<$std>::from(fd))
            }
        }

        impl From<$t> for crate::sys::fd::OwnedFd {
            /// The socket's fd, no longer known to any loop. If an operation of a dropped
            /// future is still in flight on it (or this runs inside a loop callback), a
            /// duplicate of it (the same socket) is returned, and the original number is
            /// closed once that operation ends.
            ///
            /// # Panics
            /// If that duplicate cannot be made (the process is out of descriptors).
            fn from(s: $t) -> crate::sys::fd::OwnedFd {
                crate::rt::loop_fd::LoopFd::into_owned(s.fd)
            }
        }

        crate::watcher::fd_traits!($t);
    };
}
use socket_fd;
