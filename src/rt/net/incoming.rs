//! [`Incoming`]: the connections of a listener ([`TcpListener`](super::TcpListener) or
//! [`UnixListener`](super::UnixListener)) as a [`Stream`](futures_core::Stream).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use crate::op::Op;
use crate::result::OpResult;
use crate::rt::loop_fd::LoopFd;
use crate::rt::op_future::OpFuture;

// Sealed: the trait is unnameable outside the crate, so its crate-private types are not
// part of the public interface.
#[allow(private_interfaces)]
pub(super) mod sealed {
    use super::*;

    /// What [`Incoming`] needs from a listener: its fd, and how an accept's result becomes
    /// a stream.
    pub trait Accepting {
        /// The listener's fd, shared with its accepts.
        fn loop_fd(&self) -> &Rc<LoopFd>;
        /// The connected stream an `Op::Accept` produced (or its error).
        fn stream_from(r: OpResult) -> io::Result<Self::Stream>
        where
            Self: super::Listener;
    }
}

/// A listener whose connections [`Incoming`] yields: [`TcpListener`](super::TcpListener)
/// and, on Unix, [`UnixListener`](super::UnixListener). Sealed.
pub trait Listener: sealed::Accepting + fmt::Debug {
    /// The connected stream type an accept yields.
    type Stream;
}

/// The connections of a listener, from `incoming()` on
/// [`TcpListener`](super::TcpListener::incoming) or
/// [`UnixListener`](super::UnixListener::incoming): a [`Stream`](futures_core::Stream)
/// that never ends; an accept error is yielded as an `Err` item and the next poll accepts
/// again.
///
/// It holds the accept in flight between polls, so no connection is lost between two
/// items; dropping it cancels that accept (a connection that raced the cancellation is
/// kept for the listener's next accept; later ones stay queued behind it).
#[must_use = "streams do nothing unless polled"]
pub struct Incoming<'a, L: Listener = super::TcpListener> {
    listener: &'a L,
    accept: Option<OpFuture>,
}

impl<'a, L: Listener> Incoming<'a, L> {
    pub(super) fn new(listener: &'a L) -> Self {
        Incoming {
            listener,
            accept: None,
        }
    }
}

impl<L: Listener> futures_core::Stream for Incoming<'_, L> {
    type Item = io::Result<L::Stream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let fd = this.listener.loop_fd();
        if this.accept.is_none() {
            if let Some(a) = fd.take_stashed() {
                return Poll::Ready(Some(L::stream_from(OpResult::Accept(Ok(a)))));
            }
        }
        let accept = this.accept.get_or_insert_with(|| {
            OpFuture::with_fd(Op::Accept { fd: fd.raw() }, Some(fd.clone()))
        });
        let Poll::Ready((res, _op)) = Pin::new(accept).poll(cx) else {
            return Poll::Pending;
        };
        this.accept = None;
        Poll::Ready(Some(L::stream_from(res)))
    }
}

impl<L: Listener> fmt::Debug for Incoming<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", self.listener)
            .field("accepting", &self.accept.is_some())
            .finish()
    }
}
