//! Unix signals as async values: [`Signals`] and [`ctrl_c`].
//!
//! A [`Signals`] is the callback watcher [`Signal`] (a signalfd on Linux; a self-pipe
//! fed by a signal handler on macOS and the BSDs, where the mask notes below do not
//! apply: see the watcher) read by a task: on Linux it
//! **blocks its signals in the calling thread**, with every consequence described in the
//! [watcher's module docs](crate::watcher::signal#signal-masks-what-you-must-know). In
//! short: the runtime's own threads (its blocking pool) block every asynchronous signal
//! whenever they start, so they never take one; threads *you* start must block the
//! signals too (create the `Signals` on the main thread before starting them, or call
//! `pthread_sigmask` in them), or a process-directed signal may be delivered to such a
//! thread and kill the process; a thread-directed signal (`raise`, `pthread_kill`) is
//! only seen if it targets the thread that runs the runtime; and dropping a `Signals`
//! does not unblock its signals.
//!
//! ```
//! use xev::signal::Signals;
//!
//! xev::block_on(async {
//!     let mut signals = Signals::new(&[libc::SIGUSR1])?; // blocks SIGUSR1 in this thread
//!     // SAFETY: raise(3) targets this thread, which blocks SIGUSR1: it stays pending
//!     // for the signalfd instead of killing the process.
//!     unsafe { libc::raise(libc::SIGUSR1) };
//!     assert_eq!(signals.recv().await?, libc::SIGUSR1);
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use crate::sys::fd::AsRawFd;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use super::io::mismatch;
use super::op_future::{FdKeeper, OpFuture};
use crate::op::{Buffer, Op};
use crate::result::{OpResult, ReadError};
use crate::watcher::signal::{signo, Signal, SIGINFO_SIZE};

/// A set of signals received by a task instead of by handlers; see the
/// [module docs](self) for the signal-mask rules.
///
/// [`recv`](Self::recv) returns the next signal's number; `Signals` is also a
/// [`Stream`](futures_core::Stream) of them (it never ends). Standard signals do not
/// queue: a signal raised again while still pending is received once.
///
/// A read started by `recv` stays with the `Signals` when the `recv` future is dropped
/// (in a `select`, or by [`timeout`](crate::time::timeout)), so a signal that arrived
/// meanwhile is not lost: the next `recv` returns it. That pending read belongs to the
/// runtime that started it; use one `Signals` on one runtime at a time (after that
/// runtime is dropped, the next `recv` simply starts a new read).
pub struct Signals {
    /// The read in flight, if any. Declared before `sig` so that it is dropped (and its
    /// read cancelled) before the signalfd is closed.
    read: Option<OpFuture>,
    /// The `signalfd_siginfo` buffer between reads (allocated once).
    buf: Option<Buffer>,
    sig: Signal,
}

impl Signals {
    /// Block `signals` in the calling thread and open a signalfd for them (see
    /// [`Signal::new`]; no runtime is needed for this call).
    ///
    /// Errors with `InvalidInput` for an empty list, an invalid signal number, or
    /// `SIGKILL`/`SIGSTOP`; nothing is blocked then.
    pub fn new(signals: &[i32]) -> io::Result<Signals> {
        Ok(Signals {
            read: None,
            buf: None,
            sig: Signal::new(signals)?,
        })
    }

    /// The signal numbers received through this set, sorted.
    pub fn signals(&self) -> &[i32] {
        self.sig.signals()
    }

    /// Wait for the next signal of the set and return its number (`libc::SIGINT`, ...).
    ///
    /// # Panics
    /// Outside a runtime.
    pub async fn recv(&mut self) -> io::Result<i32> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll for the next signal (for hand-written futures); see [`recv`](Self::recv).
    ///
    /// # Panics
    /// Outside a runtime.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<i32>> {
        let mut restarted = false;
        loop {
            let read = match &mut self.read {
                Some(r) => r,
                None => {
                    let buf = self
                        .buf
                        .take()
                        .unwrap_or_else(|| Buffer::from(vec![0u8; SIGINFO_SIZE]));
                    let fd = self.sig.fd.as_raw_fd();
                    // The read keeps the signalfd open until it is over, even if this
                    // set (and its read future) is dropped first.
                    let keep = FdKeeper::Shared(self.sig.fd.clone());
                    self.read
                        .insert(OpFuture::keeping(Op::Read { fd, buf }, Some(keep)))
                }
            };
            let (res, op) = ready!(Pin::new(read).poll(cx));
            self.read = None;
            self.buf = op.into_buffer();
            let r = match res {
                OpResult::Read(Ok(n)) => {
                    signo(self.buf.as_ref().map(Buffer::as_slice), n).map_err(Into::into)
                }
                // Only when the runtime that started the read was dropped meanwhile (we
                // never cancel our own read): start again on the current one.
                OpResult::Read(Err(ReadError::Canceled)) if !restarted => {
                    restarted = true;
                    continue;
                }
                OpResult::Read(Err(ReadError::Eof)) => Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "signalfd read returned no data",
                )),
                OpResult::Read(Err(e)) => Err(e.into()),
                other => Err(mismatch(&other)),
            };
            return Poll::Ready(r);
        }
    }
}

impl futures_core::Stream for Signals {
    type Item = io::Result<i32>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<i32>>> {
        self.get_mut().poll_recv(cx).map(Some)
    }
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("fd", &self.sig.fd.as_raw_fd())
            .field("signals", &self.signals())
            .field("reading", &self.read.is_some())
            .finish()
    }
}

/// Wait for one `SIGINT` (Ctrl-C in a terminal).
///
/// Each call creates a [`Signals`] for `SIGINT`, so the [signal-mask rules](self) apply:
/// call it (or create a `Signals` for `SIGINT`) on the main thread before starting
/// threads of your own, or a Ctrl-C may still kill the process through one of them
/// (xev's own pool threads never take it). `SIGINT` stays blocked afterwards: a second Ctrl-C no longer terminates the
/// process, it waits for the next `ctrl_c()`.
///
/// ```no_run
/// # xev::block_on(async {
/// xev::signal::ctrl_c().await?;
/// println!("interrupted; shutting down");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
///
/// # Panics
/// Outside a runtime.
pub async fn ctrl_c() -> io::Result<()> {
    Signals::new(&[libc::SIGINT])?.recv().await.map(drop)
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::pin::Pin;

    use futures_core::Stream;

    use super::Signals;
    use crate::backend::Backend;
    use crate::rt::Builder;

    #[test]
    fn signals_are_a_stream() {
        for backend in Backend::available() {
            let rt = Builder::new().backend(backend).build().unwrap();
            rt.block_on(async {
                let mut sigs = Signals::new(&[libc::SIGUSR1]).unwrap();
                for _ in 0..2 {
                    // SAFETY: raise(3) targets this thread, which blocks SIGUSR1 now.
                    unsafe { libc::raise(libc::SIGUSR1) };
                    let next = poll_fn(|cx| Pin::new(&mut sigs).poll_next(cx)).await;
                    assert_eq!(next.unwrap().unwrap(), libc::SIGUSR1, "{backend:?}");
                }
            });
        }
    }
}
