//! Anonymous pipes for tasks: [`pipe`] makes a connected [`Sender`] (the writing end) and
//! [`Receiver`] (the reading end).
//!
//! Reads and writes are `read(2)` / `write(2)` ([`Op::Read`] / [`Op::Write`]) with owned
//! buffers ([`IoBuf`], [`IoBufMut`]) that come back with the result, like sockets. The
//! ends are non-blocking (`O_NONBLOCK`, needed by the epoll backend; io_uring does not
//! care) and close-on-exec.
//!
//! - A read returns `Ok(0)` at end of file: every sender (this process's and any
//!   child's copy) is closed.
//! - A write to a pipe whose every receiver is closed fails with
//!   [`BrokenPipe`](io::ErrorKind::BrokenPipe) (`EPIPE`). It never raises `SIGPIPE`,
//!   whatever the process's disposition for it: the loop's thread blocks `SIGPIPE` while
//!   the loop lives, from its first write on (see [`Op::Write`]).
//! - An end's descriptor is never closed while an operation that names it can still run
//!   (a dropped read or write future's operation keeps it open until it ends), as for
//!   every async socket and file.
//!
//! ```
//! xev::block_on(async {
//!     let (tx, rx) = xev::pipe::pipe()?;
//!     tx.write_all(b"hello through a pipe".to_vec()).await.0?;
//!     drop(tx); // the last sender: the reader sees end of file after the data
//!     let (n, buf) = rx.read(Vec::with_capacity(64)).await;
//!     assert_eq!(&buf[..n?], b"hello through a pipe");
//!     let (n, _) = rx.read(Vec::with_capacity(64)).await;
//!     assert_eq!(n?, 0);
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`Op::Read`]: crate::Op::Read
//! [`Op::Write`]: crate::Op::Write
//! [`IoBuf`]: crate::rt::IoBuf
//! [`IoBufMut`]: crate::rt::IoBufMut

use crate::sys::fd::{AsRawFd, OwnedFd};
use std::io;
use std::rc::Rc;

use super::buf::{IoBuf, IoBufMut};
use super::io::{self as rio, Kind};
use super::loop_fd::LoopFd;

/// A new pipe (`pipe2(O_CLOEXEC | O_NONBLOCK)`): what is written to the [`Sender`] is read
/// from the [`Receiver`]. Errors are `pipe2`'s (`EMFILE`, `ENFILE`). Needs no runtime;
/// the ends' operations do.
pub fn pipe() -> io::Result<(Sender, Receiver)> {
    let (r, w) = crate::sys::pipe_cloexec_nonblocking()?;
    Ok((
        Sender {
            fd: LoopFd::shared(w),
        },
        Receiver {
            fd: LoopFd::shared(r),
        },
    ))
}

/// Switch `fd` to non-blocking mode (`fcntl`, which fails only for an fd that is not
/// open, impossible for an `OwnedFd`).
fn nonblocking(fd: OwnedFd) -> OwnedFd {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on an fd we own; they only read and set its status flags.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFL);
        if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
            libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    crate::sys::set_nosigpipe(raw);
    fd
}

/// The writing end of a pipe; see the [module docs](self).
#[derive(Debug)]
pub struct Sender {
    fd: Rc<LoopFd>,
}

impl Sender {
    /// Write `buf` once (`write(2)`), handing it back with the byte count, which may be
    /// short when the pipe is nearly full (waits while it is full).
    /// [`BrokenPipe`](io::ErrorKind::BrokenPipe) if no reader is left.
    pub async fn write<B: IoBuf>(&self, buf: B) -> (io::Result<usize>, B) {
        rio::write(&self.fd, buf, Kind::Stream, false).await
    }

    /// Write all of `buf`, continuing after short writes. On an error, how much was
    /// written is unknown.
    pub async fn write_all<B: IoBuf>(&self, buf: B) -> (io::Result<()>, B) {
        rio::write_all(&self.fd, buf, Kind::Stream, false).await
    }

    /// Close this end through the loop and report the error of `close(2)`; once no other
    /// copy of it is left (a child's), the reader sees end of file. If the operation of a
    /// dropped write future is still in flight, this first waits for it to end (it was
    /// cancelled when its future was dropped). A plain drop closes too (ignoring errors).
    pub async fn close(self) -> io::Result<()> {
        rio::close(self.fd).await
    }
}

/// The reading end of a pipe; see the [module docs](self).
#[derive(Debug)]
pub struct Receiver {
    fd: Rc<LoopFd>,
}

impl Receiver {
    /// Read once into `buf` (`read(2)`, waiting while the pipe is empty), handing it back:
    /// `Ok(0)` at end of file, otherwise the byte count. How the bytes land in `buf` is
    /// described at [`IoBufMut`] (for a `Vec`: from its start, up to its capacity). A
    /// zero-length buffer is `InvalidInput`.
    pub async fn read<B: IoBufMut>(&self, buf: B) -> (io::Result<usize>, B) {
        rio::read(&self.fd, buf, Kind::Stream).await
    }

    /// Fill exactly `buf`'s length, continuing after short reads;
    /// [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) if the writers close first (the
    /// bytes read so far are in `buf`).
    pub async fn read_exact<B: IoBufMut>(&self, buf: B) -> (io::Result<()>, B) {
        rio::read_exact(&self.fd, buf, Kind::Stream).await
    }

    /// Read until end of file, appending to `buf` (as `std::io::Read::read_to_end`);
    /// returns the number of bytes appended. Reads in 64 KiB steps.
    pub async fn read_to_end(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        const STEP: usize = 64 * 1024;
        let start = buf.len();
        let mut chunk = Vec::with_capacity(STEP);
        loop {
            chunk.clear();
            let (res, back) = self.read(chunk).await;
            chunk = back;
            match res? {
                0 => return Ok(buf.len() - start),
                n => {
                    buf.try_reserve(n).map_err(|e| {
                        io::Error::new(io::ErrorKind::OutOfMemory, format!("read_to_end: {e}"))
                    })?;
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
    }

    /// Close this end through the loop and report the error of `close(2)`; writers then
    /// get [`BrokenPipe`](io::ErrorKind::BrokenPipe) once no other copy is left. Waits
    /// for the operation of a dropped read future first, as [`Sender::close`].
    pub async fn close(self) -> io::Result<()> {
        rio::close(self.fd).await
    }
}

macro_rules! pipe_end {
    ($t:ident) => {
        impl From<OwnedFd> for $t {
            /// Wrap an fd (a pipe or FIFO end, or another stream that `read(2)` /
            /// `write(2)` work on), switching it to non-blocking mode. No check is made
            /// that the fd is what it should be: a wrong one gives the errors the
            /// kernel gives (`EBADF` for a read on a write-only end, ...).
            fn from(fd: OwnedFd) -> $t {
                $t {
                    fd: LoopFd::shared(nonblocking(fd)),
                }
            }
        }

        impl From<$t> for OwnedFd {
            /// The fd, no longer known to any loop (still non-blocking). If an operation
            /// of a dropped future is still in flight on it (or this runs inside a loop
            /// callback), a duplicate of it (the same pipe end) is returned and the
            /// original number is closed once that operation ends.
            ///
            /// # Panics
            /// If that duplicate cannot be made (the process is out of descriptors).
            fn from(p: $t) -> OwnedFd {
                LoopFd::into_owned(p.fd)
            }
        }

        impl $t {
            /// The fd shared with this end's operations (for `xev::compat`).
            #[allow(dead_code)] // used only with the compat features
            pub(crate) fn loop_fd(&self) -> &Rc<LoopFd> {
                &self.fd
            }
        }

        crate::watcher::fd_traits!($t);
    };
}

pipe_end!(Sender);
pipe_end!(Receiver);
