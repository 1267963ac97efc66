//! [`Tcp`]: a TCP socket driven by the loop: accept, connect, read (recv), write (send),
//! queued writes, poll, shutdown and close, each with a typed callback.
//!
//! The socket is created non-blocking and close-on-exec; [`bind`](Tcp::bind),
//! [`listen`](Tcp::listen) and the socket options are plain synchronous calls, like
//! libxev's.
//!
//! ```
//! use std::{cell::RefCell, pin::pin, rc::Rc};
//! use xev::watcher::tcp::Tcp;
//! use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
//!
//! let got: Rc<RefCell<Vec<u8>>> = Rc::default();
//! let (mut a, mut cn) = (pin!(Completion::new()), pin!(Completion::new()));
//! let mut lp = Loop::new(Options::default())?;
//!
//! let server = Tcp::new("127.0.0.1:0".parse()?)?;
//! server.bind("127.0.0.1:0".parse()?)?;
//! server.listen(16)?;
//! let addr = server.local_addr()?;
//!
//! // Accept one connection, then read from it with the same completion.
//! server.accept(&mut lp, a.as_mut(), got.clone(), |got, lp, c, res| {
//!     let (conn, _peer) = res.expect("accept");
//!     let conn = Rc::new(conn); // the read's userdata keeps the connection open
//!     let ud = (conn.clone(), got.clone());
//!     conn.read(lp, c, Buffer::inline(32), ud, |(_conn, got), _lp, c, res| {
//!         let n = res.expect("read");
//!         got.borrow_mut().extend_from_slice(&c.buffer().unwrap().as_slice()[..n]);
//!         CallbackAction::Disarm
//!     });
//!     CallbackAction::Disarm
//! });
//!
//! // Connect, then send from the connect callback.
//! let client = Rc::new(Tcp::new(addr)?);
//! client.connect(&mut lp, cn.as_mut(), addr, client.clone(), |client, lp, c, res| {
//!     res.expect("connect");
//!     client.write(lp, c, Buffer::copy_from(b"hi"), (), |_, _, _, res| {
//!         assert_eq!(res.unwrap(), 2);
//!         CallbackAction::Disarm
//!     });
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! assert_eq!(*got.borrow(), b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::sys::fd::{OwnedFd, RawFd};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Buffer, Op, PollEvents};
use crate::result::{Error, OpResult, ReadError};
use crate::sys;

use super::fd::SharedFd;
use super::mismatch;
use super::stream;

/// A TCP socket (listening or connected) that owns its fd, shared with the operations
/// started through it: the fd is closed when the `Tcp` and all of those are gone (see
/// [the watcher docs](super#descriptor-lifetime)), or by [`close`](Self::close), which
/// cancels them first.
#[derive(Debug)]
pub struct Tcp {
    fd: Arc<SharedFd>,
}

impl Tcp {
    /// A new non-blocking, close-on-exec TCP socket of `addr`'s family (IPv4 or IPv6; only
    /// the family of `addr` is used).
    pub fn new(addr: SocketAddr) -> io::Result<Tcp> {
        socket(&addr, socket2::Type::STREAM).map(Tcp::from)
    }

    /// Bind to `addr`, with `SO_REUSEADDR` set first (as libxev does), so a restarted
    /// server can bind its port while old connections linger in `TIME_WAIT`.
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        sys::set_reuseaddr(self.raw())?;
        bind(self.raw(), &addr)
    }

    /// Start listening for connections (accept them with [`accept`](Self::accept)).
    pub fn listen(&self, backlog: u32) -> io::Result<()> {
        sys::listen(self.raw(), backlog)
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        local_addr(self.raw())
    }

    /// The address of the connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        peer_addr(self.raw())
    }

    /// Set `TCP_NODELAY` (disable Nagle's algorithm) on or off.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        sys::set_nodelay(self.raw(), on)
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self) -> io::Result<bool> {
        sys::nodelay(self.raw())
    }

    /// Accept one connection. The callback gets the new connection (non-blocking,
    /// close-on-exec) and the peer's address; `Rearm` accepts the next one.
    ///
    /// # Running out of descriptors
    ///
    /// When the process has no descriptor (`EMFILE`, `ENFILE`) or memory (`ENOBUFS`,
    /// `ENOMEM`) for the new connection, the callback gets that error and the connection
    /// stays in the listen backlog. Do not `Rearm` then: the retry fails again at once,
    /// and the loop turns into a busy loop. Pause instead, as a production server does:
    /// run a short [`Timer`](super::Timer) (10-100 ms) on the same completion, accept
    /// again when it fires, and cut it short ([`Timer::reset`](super::Timer::reset) to 0)
    /// when you close a connection. The connections already accepted keep being served
    /// meanwhile. Other errors (`ECONNABORTED`, ...) concern one connection: `Rearm`.
    ///
    /// ```no_run
    /// # use std::pin::Pin;
    /// # use xev::watcher::{tcp::Tcp, Timer};
    /// # use xev::{CallbackAction, Completion, Error, Loop};
    /// # use std::rc::Rc;
    /// fn on_accept(
    ///     l: &mut Rc<Tcp>,
    ///     lp: &mut Loop,
    ///     c: Pin<&mut Completion>,
    ///     r: Result<(Tcp, Option<std::net::SocketAddr>), Error>,
    /// ) -> CallbackAction {
    ///     match r {
    ///         Ok((conn, _peer)) => { /* serve `conn` */ }
    ///         Err(Error::Io(e)) if xev::fd::is_out_of_descriptors(&e) => {
    ///             // Out of descriptors: accept again in 50 ms, not now.
    ///             Timer::new().run(lp, c, 50, l.clone(), |l, lp, c, _| {
    ///                 let ud = l.clone();
    ///                 l.accept(lp, c, ud, on_accept);
    ///                 CallbackAction::Disarm
    ///             });
    ///             return CallbackAction::Disarm;
    ///         }
    ///         Err(e) => eprintln!("accept: {e}"),
    ///     }
    ///     CallbackAction::Rearm
    /// }
    /// ```
    ///
    /// `examples/echo_callbacks.rs` does this.
    pub fn accept<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<(Tcp, Option<SocketAddr>), Error>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::Accept { fd: self.raw() };
        stream::start_on(lp, &self.fd, c, op, ud, accept_result, cb);
    }

    /// Connect to `addr`. A refused connection is `Err(Error::Io(e))` with
    /// `e.kind() == ErrorKind::ConnectionRefused`.
    pub fn connect<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        addr: SocketAddr,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Connect {
            fd: self.raw(),
            addr,
        };
        stream::start_on(lp, &self.fd, c, op, ud, connect_result, cb);
    }

    stream::socket_methods!();

    fn raw(&self) -> RawFd {
        self.fd.raw()
    }
}

fn accept_result(r: OpResult) -> Result<(Tcp, Option<SocketAddr>), Error> {
    match r {
        OpResult::Accept(r) => r.map(|a| (Tcp::from(a.fd), a.peer)),
        _ => Err(mismatch()),
    }
}

fn connect_result(r: OpResult) -> Result<(), Error> {
    match r {
        OpResult::Connect(r) => r,
        _ => Err(mismatch()),
    }
}

super::owns_fd!(
    Tcp,
    "Wrap a TCP socket (it should be non-blocking for the poll backend)."
);

// ---------------------------------------------------------------------------------------
// Socket helpers shared with the UDP watcher and the runtime: the synchronous calls are
// the platform's (`sys`).

pub(crate) use crate::sys::{bind, connect_sync as connect, local_addr, peer_addr};

/// A new non-blocking, close-on-exec socket of `addr`'s family and type `ty`.
pub(crate) fn socket(addr: &SocketAddr, ty: socket2::Type) -> io::Result<OwnedFd> {
    let domain = socket2::Domain::for_address(*addr);
    sys::socket(domain, ty).map(OwnedFd::from)
}
