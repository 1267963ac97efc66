//! [`Udp`]: a UDP socket driven by the loop: datagrams to and from any address
//! (`recvmsg`/`sendmsg`, the sender's address reported with each datagram), or, after
//! [`connect`](Udp::connect), [`send`](Udp::send)/[`recv`](Udp::recv) with one peer.
//!
//! libxev asks the caller for a separate `UDP.State` per operation to hold the message
//! header and address; in xev they live inside the [`Completion`], so none is needed.
//!
//! ```
//! use std::{cell::RefCell, pin::pin, rc::Rc};
//! use xev::watcher::udp::Udp;
//! use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
//!
//! let (mut r, mut w) = (pin!(Completion::new()), pin!(Completion::new()));
//! let mut lp = Loop::new(Options::default())?;
//! let local = "127.0.0.1:0".parse()?;
//! let (a, b) = (Udp::new(local)?, Udp::new(local)?);
//! a.bind(local)?;
//! b.bind(local)?;
//! let from = Rc::new(RefCell::new(None));
//! b.read(&mut lp, r.as_mut(), Buffer::inline(16), from.clone(), |from, _, c, res| {
//!     let (n, sender) = res.expect("read");
//!     assert_eq!(&c.buffer().unwrap().as_slice()[..n], b"ping");
//!     *from.borrow_mut() = sender;
//!     CallbackAction::Disarm
//! });
//! a.write(&mut lp, w.as_mut(), b.local_addr()?, Buffer::copy_from(b"ping"), (), |_, _, _, res| {
//!     assert_eq!(res.unwrap(), 4);
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! assert_eq!(*from.borrow(), Some(a.local_addr()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::sys::fd::RawFd;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Buffer, Op, PollEvents};
use crate::result::{Error, OpResult, ReadError};

use super::fd::SharedFd;
use super::mismatch;
use super::stream;
use super::tcp;

/// A UDP socket that owns its fd, shared with the operations started through it: the fd
/// is closed when the `Udp` and all of those are gone (see [the watcher
/// docs](super#descriptor-lifetime)), or by [`close`](Self::close).
#[derive(Debug)]
pub struct Udp {
    fd: Arc<SharedFd>,
}

impl Udp {
    /// A new non-blocking, close-on-exec UDP socket of `addr`'s family (only the family
    /// is used).
    pub fn new(addr: SocketAddr) -> io::Result<Udp> {
        tcp::socket(&addr, socket2::Type::DGRAM).map(Udp::from)
    }

    /// Bind to `addr`, with `SO_REUSEADDR` set first. (libxev also sets `SO_REUSEPORT`,
    /// which lets any other socket of the same user bind the same port and take a share
    /// of its datagrams; xev leaves that to the caller.)
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        crate::sys::set_reuseaddr(self.raw())?;
        tcp::bind(self.raw(), &addr)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        tcp::local_addr(self.raw())
    }

    /// Fix the peer (a synchronous `connect(2)`: for UDP it only records the address).
    /// Afterwards [`send`](Self::send) and [`recv`](Self::recv) talk to `addr` only.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        tcp::connect(self.raw(), &addr)
    }

    /// The peer set by [`connect`](Self::connect).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        tcp::peer_addr(self.raw())
    }

    /// Receive one datagram into `buf` (`recvmsg(2)`). The callback gets its length and
    /// its sender's address (read the bytes with `c.buffer()`); a datagram longer than
    /// `buf` is truncated. A zero-length datagram is `Ok((0, sender))`, not EOF.
    pub fn read<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(usize, Option<SocketAddr>), ReadError>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::RecvMsg {
            fd: self.raw(),
            buf,
        };
        stream::start_on(lp, &self.fd, c, op, ud, recvmsg_result, cb);
    }

    /// Send `buf` as one datagram to `to` (`sendmsg(2)`).
    pub fn write<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        to: SocketAddr,
        buf: Buffer,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::SendMsg {
            fd: self.raw(),
            buf,
            addr: Some(to),
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::write_result, cb);
    }

    /// Send `buf` as one datagram to the connected peer.
    pub fn send<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::SendMsg {
            fd: self.raw(),
            buf,
            addr: None,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::write_result, cb);
    }

    /// Receive one datagram from the connected peer; the callback gets its length (a
    /// zero-length datagram is `Ok(0)`).
    pub fn recv<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<usize, ReadError>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::RecvMsg {
            fd: self.raw(),
            buf,
        };
        let map = |r| recvmsg_result(r).map(|(n, _)| n);
        stream::start_on(lp, &self.fd, c, op, ud, map, cb);
    }

    /// Wait until the socket is ready for `events`; see
    /// [`Stream::poll`](super::stream::Stream::poll).
    pub fn poll<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        events: PollEvents,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<PollEvents, Error>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::Poll {
            fd: self.raw(),
            events,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::poll_result, cb);
    }

    /// Close the socket through the loop; pending operations on it are cancelled first.
    pub fn close<U, F>(self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        stream::close(lp, self.fd, c, ud, cb);
    }

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }
}

fn recvmsg_result(r: OpResult) -> Result<(usize, Option<SocketAddr>), ReadError> {
    match r {
        OpResult::RecvMsg(r) => r,
        _ => Err(ReadError::Io(mismatch().into())),
    }
}

super::owns_fd!(
    Udp,
    "Wrap a UDP socket (it should be non-blocking for the poll backend)."
);
