//! [`Unix`]: a Unix-domain socket (stream or datagram) driven by the loop: accept,
//! connect, read (recv), write (send), queued writes, datagrams to and from
//! [`UnixAddr`]esses, poll, shutdown and close, each with a typed callback.
//!
//! The socket is created non-blocking and close-on-exec (with socket2);
//! [`bind`](Unix::bind) and [`listen`](Unix::listen) are plain synchronous calls. Accept
//! and receive report the peer's or sender's [`UnixAddr`] (unnamed unless it bound one),
//! which the loop's [`Op::AcceptUnix`] and [`Op::RecvMsgUnix`] keep in the completion.
//!
//! ```
//! use std::{cell::RefCell, pin::pin, rc::Rc};
//! use xev::watcher::unix::Unix;
//! use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
//!
//! let (a, b) = Unix::pair()?;
//! let got: Rc<RefCell<Vec<u8>>> = Rc::default();
//! let (mut r, mut w) = (pin!(Completion::new()), pin!(Completion::new()));
//! let mut lp = Loop::new(Options::default())?;
//! b.read(&mut lp, r.as_mut(), Buffer::inline(16), got.clone(), |got, _lp, c, res| {
//!     let n = res.expect("read");
//!     got.borrow_mut().extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
//!     CallbackAction::Disarm
//! });
//! a.write(&mut lp, w.as_mut(), Buffer::copy_from(b"hi"), (), |_, _, _, res| {
//!     assert_eq!(res.unwrap(), 2);
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! assert_eq!(*got.borrow(), b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::sys::fd::{OwnedFd, RawFd};
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use socket2::{Domain, Type};

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Buffer, Op, PollEvents};
use crate::result::{Error, OpResult, ReadError};
use crate::UnixAddr;

use super::fd::SharedFd;
use super::mismatch;
use super::stream;

/// A Unix-domain socket (listening, connected, or datagram) that owns its fd, shared
/// with the operations started through it: the fd is closed when the `Unix` and all of
/// those are gone (see [the watcher docs](super#descriptor-lifetime)), or by
/// [`close`](Self::close), which cancels them first.
#[derive(Debug)]
pub struct Unix {
    fd: Arc<SharedFd>,
}

fn socket(ty: Type) -> io::Result<Unix> {
    let s = crate::sys::socket(Domain::UNIX, ty)?;
    Ok(Unix::from(OwnedFd::from(s)))
}

fn pair(ty: Type) -> io::Result<(Unix, Unix)> {
    let (a, b) = crate::sys::socketpair(Domain::UNIX, ty)?;
    Ok((Unix::from(OwnedFd::from(a)), Unix::from(OwnedFd::from(b))))
}

impl Unix {
    /// A new stream socket (to [`listen`](Self::listen) on or to
    /// [`connect`](Self::connect)).
    pub fn stream() -> io::Result<Unix> {
        socket(Type::STREAM)
    }

    /// A new datagram socket.
    pub fn datagram() -> io::Result<Unix> {
        socket(Type::DGRAM)
    }

    /// Two connected stream sockets (`socketpair(2)`).
    pub fn pair() -> io::Result<(Unix, Unix)> {
        pair(Type::STREAM)
    }

    /// Two connected datagram sockets (`socketpair(2)`).
    pub fn datagram_pair() -> io::Result<(Unix, Unix)> {
        pair(Type::DGRAM)
    }

    /// Bind to `addr` (a path, which must not exist yet, or an abstract name).
    pub fn bind(&self, addr: &UnixAddr) -> io::Result<()> {
        socket2::SockRef::from(&*self.fd).bind(&addr.socket2_addr())
    }

    /// Start listening for connections (accept them with [`accept`](Self::accept)).
    pub fn listen(&self, backlog: u32) -> io::Result<()> {
        let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
        socket2::SockRef::from(&*self.fd).listen(backlog)
    }

    /// The address the socket is bound to (unnamed if none).
    pub fn local_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.raw(), false)
    }

    /// The address of the connected peer (unnamed unless it bound one).
    pub fn peer_addr(&self) -> io::Result<UnixAddr> {
        UnixAddr::of_socket(self.raw(), true)
    }

    /// Accept one connection ([`Op::AcceptUnix`]). The callback gets the new connection
    /// (non-blocking, close-on-exec) and the peer's address; `Rearm` accepts the next
    /// one. Running out of descriptors is handled as for
    /// [`Tcp::accept`](super::tcp::Tcp::accept): pause, do not `Rearm` at once.
    pub fn accept<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(Unix, UnixAddr), Error>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::accept_unix(self.raw());
        start_with_addr(lp, &self.fd, c, op, ud, accept_result, cb);
    }

    /// Connect to `addr` ([`Op::ConnectUnix`]; it never waits). A missing path is
    /// `ENOENT`, a path nobody listens on `ECONNREFUSED`, a full backlog `EAGAIN`.
    /// On a datagram socket it fixes the peer.
    pub fn connect<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        addr: &UnixAddr,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::ConnectUnix {
            fd: self.raw(),
            addr: Box::new(*addr),
        };
        stream::start_on(lp, &self.fd, c, op, ud, connect_result, cb);
    }

    stream::socket_methods!();

    /// Send `buf` as one message to `to` ([`Op::SendMsgUnix`]).
    pub fn send_to<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        to: &UnixAddr,
        buf: Buffer,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::SendMsgUnix {
            fd: self.raw(),
            buf,
            addr: Box::new(*to),
        };
        stream::start_on(lp, &self.fd, c, op, ud, sendmsg_result, cb);
    }

    /// Receive one message into `buf` ([`Op::RecvMsgUnix`]): its length and its sender's
    /// address (unnamed for an unbound sender). A longer message is truncated; an empty
    /// one is `Ok((0, sender))`.
    pub fn recv_from<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(usize, UnixAddr), ReadError>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::recv_msg_unix(self.raw(), buf);
        start_with_addr(lp, &self.fd, c, op, ud, recvmsg_result, cb);
    }

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }
}

/// Start `op`, whose result comes with the address the kernel wrote into it: `map` gets
/// the result and that address (read from the Dead completion in the callback).
fn start_with_addr<U, T, M, F>(
    lp: &mut Loop,
    fd: &Arc<SharedFd>,
    c: Pin<&mut Completion>,
    op: Op,
    ud: U,
    map: M,
    mut cb: F,
) where
    U: 'static,
    M: Fn(OpResult, Option<UnixAddr>) -> T + 'static,
    F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, T) -> CallbackAction + 'static,
{
    let identity = |r: OpResult| r;
    let wrapped = move |ud: &mut U, lp: &mut Loop, c: Pin<&mut Completion>, r: OpResult| {
        let addr = c.op().and_then(Op::unix_addr).copied();
        cb(ud, lp, c, map(r, addr))
    };
    stream::start_on(lp, fd, c, op, ud, identity, wrapped);
}

fn accept_result(r: OpResult, peer: Option<UnixAddr>) -> Result<(Unix, UnixAddr), Error> {
    match (r, peer) {
        (OpResult::AcceptUnix(r), Some(peer)) => r.map(|fd| (Unix::from(fd), peer)),
        _ => Err(mismatch()),
    }
}

fn recvmsg_result(r: OpResult, from: Option<UnixAddr>) -> Result<(usize, UnixAddr), ReadError> {
    match (r, from) {
        (OpResult::RecvMsgUnix(r), Some(from)) => r.map(|n| (n, from)),
        _ => Err(ReadError::Io(mismatch().into())),
    }
}

fn connect_result(r: OpResult) -> Result<(), Error> {
    match r {
        OpResult::ConnectUnix(r) => r,
        _ => Err(mismatch()),
    }
}

fn sendmsg_result(r: OpResult) -> Result<usize, Error> {
    match r {
        OpResult::SendMsgUnix(r) => r,
        _ => Err(mismatch()),
    }
}

super::owns_fd!(
    Unix,
    "Wrap a Unix-domain socket (it should be non-blocking for the poll backend)."
);
