//! [`Incoming`]: the connections of a listener ([`TcpListener`](super::TcpListener) or
//! [`UnixListener`](super::UnixListener)) as a [`Stream`](futures_core::Stream).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

#[cfg(unix)]
use super::accept_queue::AcceptQueue;
use crate::op::Op;
use crate::result::OpResult;
use crate::rt::loop_fd::LoopFd;
use crate::rt::op_future::OpFuture;
use crate::sys::fd::OwnedFd;

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
        /// The connected stream of a connection a multishot accept produced.
        #[cfg_attr(not(unix), allow(dead_code))]
        fn stream_from_fd(fd: OwnedFd) -> Self::Stream
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
/// It keeps accepting between polls, so no connection is lost between two items. On
/// io_uring that is one multishot accept (`IORING_ACCEPT_MULTISHOT`, Linux 5.19+) armed
/// while the stream is used: connections land in a queue of the stream's own. Once 64
/// or more are queued the multishot is stopped (the kernel drains the listen backlog at
/// each wake-up, so a burst can queue more) and further clients wait in the backlog
/// until the queue is half drained. On the poll backend it is one accept in flight at a
/// time. An error ends the multishot: it is yielded in order
/// after the connections before it, and nothing is accepted until the next poll finds the
/// queue empty (so backing off after `EMFILE` works as with
/// [`accept`](super::TcpListener::accept)).
///
/// Dropping it stops accepting: connections already accepted (queued, or racing the
/// cancellation) are kept for the listener's next accept or `incoming()`, in order, and
/// closed only with the listener. Use one `Incoming` of a listener at a time, and no
/// [`accept`](super::TcpListener::accept) on it meanwhile: concurrent accepts on one
/// listener each get some of the connections.
#[must_use = "streams do nothing unless polled"]
pub struct Incoming<'a, L: Listener = super::TcpListener> {
    listener: &'a L,
    accept: Option<OpFuture>,
    /// The multishot machinery, made at the first poll where the loop allows it.
    #[cfg(unix)]
    multi: Option<Rc<AcceptQueue>>,
    /// The first poll decided between single-shot and multishot.
    #[cfg(unix)]
    decided: bool,
}

impl<'a, L: Listener> Incoming<'a, L> {
    pub(super) fn new(listener: &'a L) -> Self {
        Incoming {
            listener,
            accept: None,
            #[cfg(unix)]
            multi: None,
            #[cfg(unix)]
            decided: false,
        }
    }
}

impl<L: Listener> Drop for Incoming<'_, L> {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(q) = self.multi.take() {
            q.close();
        }
    }
}

impl<L: Listener> futures_core::Stream for Incoming<'_, L> {
    type Item = io::Result<L::Stream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let fd = this.listener.loop_fd();
        // Polled again after the runtime that started our accept shut down (a stream
        // carried from one runtime to the next on this thread): that runtime runs
        // nothing any more. Its accept's result, a connection if it had arrived, goes to
        // the listener's stash (so does a queue's), and accepting starts over here.
        if this.accept.as_ref().is_some_and(OpFuture::runtime_closed) {
            this.accept = None;
        }
        #[cfg(unix)]
        if this.multi.as_ref().is_some_and(|q| q.runtime_closed()) {
            if let Some(q) = this.multi.take() {
                q.close();
            }
            this.decided = false;
        }
        if this.accept.is_none() {
            if let Some(a) = fd.take_stashed() {
                return Poll::Ready(Some(L::stream_from(OpResult::Accept(Ok(a)))));
            }
        }
        #[cfg(unix)]
        if !this.decided {
            this.decided = true;
            if AcceptQueue::usable() {
                this.multi = Some(AcceptQueue::new(fd));
            }
        }
        #[cfg(unix)]
        if let Some(q) = &this.multi {
            return match q.poll_next(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r.map(L::stream_from_fd))),
                // A connection stashed while we wait (an orphaned accept's, so an
                // earlier one) goes first; else the next stash wakes us.
                Poll::Pending => match fd.watch_stash(cx.waker()).then(|| fd.take_stashed()) {
                    Some(Some(a)) => Poll::Ready(Some(L::stream_from(OpResult::Accept(Ok(a))))),
                    _ => Poll::Pending,
                },
            };
        }
        let accept = this.accept.get_or_insert_with(|| {
            OpFuture::with_fd(Op::Accept { fd: fd.raw() }, Some(fd.clone()))
        });
        let Poll::Ready((res, _op)) = Pin::new(accept).poll(cx) else {
            if fd.watch_stash(cx.waker()) {
                // As in `accept_or_stashed`: the stashed connection came first; our
                // accept is dropped (a connection it gets anyway is stashed in turn).
                this.accept = None;
                if let Some(a) = fd.take_stashed() {
                    return Poll::Ready(Some(L::stream_from(OpResult::Accept(Ok(a)))));
                }
                cx.waker().wake_by_ref(); // (never: it was just seen) poll again
            }
            return Poll::Pending;
        };
        this.accept = None;
        Poll::Ready(Some(L::stream_from(res)))
    }
}

impl<L: Listener> Incoming<'_, L> {
    fn accepting(&self) -> bool {
        #[cfg(unix)]
        if let Some(q) = &self.multi {
            return q.accepting();
        }
        self.accept.is_some()
    }
}

impl<L: Listener> fmt::Debug for Incoming<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("listener", self.listener)
            .field("accepting", &self.accepting())
            .finish()
    }
}
