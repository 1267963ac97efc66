//! [`File`]: a regular file driven by the loop: read and write at the file position,
//! `pread`/`pwrite` at an offset, ordered writes through a [`WriteQueue`], and close.
//!
//! On io_uring these are native kernel operations. The poll backend cannot wait for a
//! regular file (it is always "ready" and then blocks), so it runs them on the loop's
//! thread pool; either way the callback runs on the loop thread with a normal result.
//!
//! ```
//! use std::pin::pin;
//! use xev::watcher::file::File;
//! use xev::watcher::stream::WriteQueue;
//! use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
//!
//! let path = std::env::temp_dir().join(format!("xev-file-doc-{}", std::process::id()));
//! let mut lp = Loop::new(Options::default())?;
//! let f = File::create(&path)?;
//! let q = WriteQueue::new();
//! for part in ["hello, ", "file"] {
//!     f.queue_write(&mut lp, &q, Buffer::copy_from(part.as_bytes()), (), |_, _, _, r| {
//!         r.expect("write");
//!         CallbackAction::Disarm
//!     });
//! }
//! lp.run(RunMode::UntilDone)?;
//!
//! let mut c = pin!(Completion::new());
//! let f = File::open(&path)?;
//! f.pread(&mut lp, c.as_mut(), Buffer::inline(32), 7, (), |_, _, c, r| {
//!     let n = r.expect("pread");
//!     assert_eq!(&c.buffer().unwrap().as_slice()[..n], b"file");
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! # drop(lp);
//! std::fs::remove_file(&path)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Buffer, Op};
use crate::result::{Error, ReadError};

use super::fd::{self, SharedFd};
use super::stream::{self, WriteQueue};

/// An open file that owns its fd, shared with the operations started through it: the fd
/// is closed when the `File` and all of those are gone (see [the watcher
/// docs](super#descriptor-lifetime)), or by [`close`](Self::close).
#[derive(Debug)]
pub struct File {
    fd: Arc<SharedFd>,
}

impl File {
    /// Open `path` read-only (as [`std::fs::File::open`]).
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        std::fs::File::open(path).map(File::from)
    }

    /// Create or truncate `path` and open it write-only (as [`std::fs::File::create`]).
    pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
        std::fs::File::create(path).map(File::from)
    }

    /// Read once at the file position into `buf`, moving the position on. The callback
    /// gets the byte count (read the bytes with `c.buffer()`), [`ReadError::Eof`] at the
    /// end of the file, or the error (e.g. `EBADF` on a file opened write-only).
    pub fn read<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
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
        let op = Op::Read {
            fd: self.raw(),
            buf,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::read_result, cb);
    }

    /// Read once at `offset` into `buf`; the file position does not move.
    pub fn pread<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        buf: Buffer,
        offset: u64,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<usize, ReadError>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::Pread {
            fd: self.raw(),
            buf,
            offset,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::read_result, cb);
    }

    /// Write `buf` once at the file position (which moves on); the count may be short.
    /// Writes started this way are not ordered: use [`queue_write`](Self::queue_write).
    pub fn write<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Write {
            fd: self.raw(),
            buf,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::write_result, cb);
    }

    /// Write `buf` once at `offset`; the file position does not move.
    pub fn pwrite<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        buf: Buffer,
        offset: u64,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<usize, Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Pwrite {
            fd: self.raw(),
            buf,
            offset,
        };
        stream::start_on(lp, &self.fd, c, op, ud, stream::write_result, cb);
    }

    /// Write all of `buf` at the file position through `q`, after the requests already
    /// queued there; the callback gets the full length or the error. See [`WriteQueue`].
    pub fn queue_write<U, F>(&self, lp: &mut Loop, q: &WriteQueue, buf: Buffer, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        let op = Op::Write {
            fd: self.raw(),
            buf,
        };
        q.push(lp, &self.fd, op, ud, cb);
    }

    /// Write all of `buf` at `offset` through `q`, in queue order. A partial write is
    /// continued at the offset it reached (libxev's `queuePWrite` does not continue).
    pub fn queue_pwrite<U, F>(
        &self,
        lp: &mut Loop,
        q: &WriteQueue,
        buf: Buffer,
        offset: u64,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, &mut Buffer, Result<usize, Error>) -> CallbackAction + 'static,
    {
        let op = Op::Pwrite {
            fd: self.raw(),
            buf,
            offset,
        };
        q.push(lp, &self.fd, op, ud, cb);
    }

    /// Close the file through the loop (on the poll backend, on the thread pool: closing
    /// a file can block, e.g. on NFS).
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

impl From<std::fs::File> for File {
    fn from(f: std::fs::File) -> File {
        File {
            fd: SharedFd::new(f.into()),
        }
    }
}

impl From<File> for std::fs::File {
    /// The file; a duplicate of its descriptor if operations still hold it (see
    /// `From<File> for OwnedFd`).
    ///
    /// # Panics
    /// In that case, if no descriptor is free for the duplicate (`EMFILE`).
    fn from(f: File) -> std::fs::File {
        fd::into_owned(f.fd).into()
    }
}

super::owns_fd!(File, "Wrap an open file descriptor.");
