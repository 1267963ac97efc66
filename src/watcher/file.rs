//! [`File`]: a regular file driven by the loop: read and write at the file position,
//! `pread`/`pwrite` at an offset, ordered writes through a [`WriteQueue`], sync, size
//! (`set_len`, `allocate`), metadata, and close. Path operations (open, rename, unlink,
//! mkdir, links, statx of a path) are plain [`Op`]s (`Op::OpenAt`, ...).
//!
//! On io_uring these are native kernel operations. The poll backend cannot wait for a
//! regular file (it is always "ready" and then blocks), so it runs them on the loop's
//! thread pool; either way the callback runs on the loop thread with a normal result.
//!
//! **Windows.** `File` holds a file handle (shared with its operations through an `Arc`,
//! so a handle stays open until the last operation started on it is over) and has
//! [`pread`](File::pread), [`pwrite`](File::pwrite), [`sync`](File::sync),
//! [`set_len`](File::set_len) and [`allocate`](File::allocate) (mode 0 only: extend),
//! run on the loop's thread pool (see `Op`'s file operations in `sys/windows.rs`).
//! Absent there: `read`/`write` at the file position and `queue_write` (Windows'
//! readiness backend has no file streams; use `pread`/`pwrite` at offsets you track),
//! `metadata` (no `statx`: use `std::fs::File::metadata` or
//! [`xev::fs`](crate::fs)), and `close` through the loop (dropping the `File` closes the
//! handle once its operations are over).
//!
//! ```
//! # #[cfg(unix)] {
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
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(unix)]
use crate::sys::fd::RawFd;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
#[cfg(unix)]
use crate::fs_op::{OpPath, StatxBuf};
#[cfg(unix)]
use crate::metadata::Metadata;
use crate::op::{Buffer, Op};
use crate::result::{Error, OpResult, ReadError};

#[cfg(unix)]
use super::fd::{self, SharedFd};
#[cfg(unix)]
use super::stream::{self, WriteQueue};

#[cfg(unix)]
/// An open file that owns its fd, shared with the operations started through it: the fd
/// is closed when the `File` and all of those are gone (see [the watcher
/// docs](super#descriptor-lifetime)), or by [`close`](Self::close).
#[derive(Debug)]
pub struct File {
    fd: Arc<SharedFd>,
}

#[cfg(unix)]
impl File {
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

    /// The file's [`Metadata`] (`statx(2)` of the descriptor).
    ///
    /// ```
    /// use std::pin::pin;
    /// use xev::{CallbackAction, Completion, Loop, Options, RunMode};
    ///
    /// let mut lp = Loop::new(Options::default())?;
    /// let f = xev::File::open("Cargo.toml")?;
    /// let mut c = pin!(Completion::new());
    /// f.metadata(&mut lp, c.as_mut(), (), |_, _, _, r| {
    ///     assert!(r.expect("statx").is_file());
    ///     CallbackAction::Disarm
    /// });
    /// lp.run(RunMode::UntilDone)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn metadata<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<Metadata, Error>,
            ) -> CallbackAction
            + 'static,
    {
        let op = Op::Statx {
            dir: Some(self.raw()),
            path: OpPath::empty(),
            flags: crate::sys::AT_EMPTY_PATH,
            mask: crate::sys::STATX_ALL_TIMES,
            buf: StatxBuf::new(),
        };
        stream::start_on(lp, &self.fd, c, op, ud, metadata_result, cb);
    }

    /// The number the loop's file operations take for this file.
    fn raw(&self) -> RawFd {
        self.fd.raw()
    }

    /// Start `op` on this file's fd, kept open until the operation is over, with its
    /// result mapped by `map`.
    fn start<R: 'static, U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        op: Op,
        ud: U,
        map: fn(OpResult) -> R,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, R) -> CallbackAction + 'static,
    {
        stream::start_on(lp, &self.fd, c, op, ud, map, cb);
    }
}

/// The methods both platforms have (on Windows every one runs on the loop's thread pool).
impl File {
    /// Open `path` read-only (as [`std::fs::File::open`]).
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        std::fs::File::open(path).map(File::from)
    }

    /// Create or truncate `path` and open it write-only (as [`std::fs::File::create`]).
    pub fn create(path: impl AsRef<Path>) -> io::Result<File> {
        std::fs::File::create(path).map(File::from)
    }

    /// Read once at `offset` into `buf`; the file position does not move. The callback
    /// gets the byte count (read the bytes with `c.buffer()`), [`ReadError::Eof`] at the
    /// end of the file, or the error (`EBADF` on a file opened write-only;
    /// `ERROR_ACCESS_DENIED` on Windows).
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
        self.start(lp, c, op, ud, pread_result, cb);
    }

    /// Write `buf` once at `offset`; the file position does not move and the count may
    /// be short.
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
        self.start(lp, c, op, ud, pwrite_result, cb);
    }

    /// Flush the file's data and metadata to the device (`fsync(2)`), or with `data_only`
    /// only the data and the metadata needed to read it back (`fdatasync(2)`). Native on
    /// io_uring, on the thread pool on the poll backend (as every method below); on
    /// Windows `FlushFileBuffers`, whatever `data_only` says.
    pub fn sync<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, data_only: bool, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Fsync {
            fd: self.raw(),
            data_only,
        };
        self.start(lp, c, op, ud, unit_result, cb);
    }

    /// Truncate or extend (with zeros) the file to `len` bytes (`ftruncate(2)`); the file
    /// must be open for writing.
    pub fn set_len<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, len: u64, ud: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Ftruncate {
            fd: self.raw(),
            len,
        };
        self.start(lp, c, op, ud, unit_result, cb);
    }

    /// `fallocate(2)`: allocate `len` bytes from `offset` (mode 0 also extends the file),
    /// or punch / zero / keep-size with `FALLOC_FL_*` `mode` bits. Windows has no
    /// `fallocate`: mode 0 extends the file to `offset + len` bytes if it is shorter, and
    /// other modes are `ERROR_NOT_SUPPORTED`.
    #[allow(clippy::too_many_arguments)]
    pub fn allocate<U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        mode: i32,
        offset: u64,
        len: u64,
        ud: U,
        cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
            + 'static,
    {
        let op = Op::Fallocate {
            fd: self.raw(),
            mode,
            offset,
            len,
        };
        self.start(lp, c, op, ud, unit_result, cb);
    }
}

fn mismatch(r: &OpResult) -> Error {
    Error::Io(io::Error::other(format!("xev: unexpected result {r:?}")))
}

/// The result of a pread.
fn pread_result(r: OpResult) -> Result<usize, ReadError> {
    match r {
        OpResult::Pread(r) => r,
        other => Err(ReadError::Io(io::Error::other(format!(
            "xev: unexpected result {other:?}"
        )))),
    }
}

/// The result of a pwrite.
fn pwrite_result(r: OpResult) -> Result<usize, Error> {
    match r {
        OpResult::Pwrite(r) => r,
        other => Err(mismatch(&other)),
    }
}

/// The result of fsync, ftruncate or fallocate.
fn unit_result(r: OpResult) -> Result<(), Error> {
    match r {
        OpResult::Fsync(r) | OpResult::Ftruncate(r) | OpResult::Fallocate(r) => r,
        other => Err(mismatch(&other)),
    }
}

#[cfg(unix)]
/// The result of a statx.
fn metadata_result(r: OpResult) -> Result<Metadata, Error> {
    match r {
        OpResult::Statx(r) => r.map(|m| *m),
        other => Err(mismatch(&other)),
    }
}

#[cfg(unix)]
impl From<std::fs::File> for File {
    fn from(f: std::fs::File) -> File {
        File {
            fd: SharedFd::new(f.into()),
        }
    }
}

#[cfg(unix)]
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

#[cfg(unix)]
super::owns_fd!(File, "Wrap an open file descriptor.");

#[cfg(windows)]
/// An open file (a file handle), shared with the operations started through it: the
/// handle is closed when the `File` and all of those are gone. See the
/// [module docs](self) for what Windows has.
///
/// ```no_run
/// use std::pin::pin;
/// use xev::watcher::file::File;
/// use xev::{Buffer, CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut lp = Loop::new(Options::default())?;
/// let f = File::open("Cargo.toml")?;
/// let mut c = pin!(Completion::new());
/// f.pread(&mut lp, c.as_mut(), Buffer::inline(9), 0, (), |_, _, c, r| {
///     let n = r.expect("pread");
///     assert_eq!(&c.buffer().unwrap().as_slice()[..n], b"[workspac");
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct File {
    file: Arc<std::fs::File>,
}

#[cfg(windows)]
impl File {
    /// Start `op` (on this file's handle) with a callback that keeps the handle open
    /// until the operation is over and maps its result with `map`.
    fn start<R: 'static, U, F>(
        &self,
        lp: &mut Loop,
        c: Pin<&mut Completion>,
        op: Op,
        mut ud: U,
        map: fn(OpResult) -> R,
        mut cb: F,
    ) where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, R) -> CallbackAction + 'static,
    {
        let keep = Arc::clone(&self.file);
        lp.start(c, op, move |lp, c, r| {
            let _open = &keep;
            cb(&mut ud, lp, c, map(r))
        });
    }

    /// The number the loop's file operations take for this handle.
    fn raw(&self) -> crate::sys::fd::RawFd {
        crate::sys::fd::raw_file(&*self.file)
    }
}

#[cfg(windows)]
impl From<std::fs::File> for File {
    fn from(f: std::fs::File) -> File {
        File { file: Arc::new(f) }
    }
}

#[cfg(windows)]
impl From<File> for std::fs::File {
    /// The file; a duplicate of its handle if operations still hold it.
    ///
    /// # Panics
    /// In that case, if the duplicate cannot be made.
    fn from(f: File) -> std::fs::File {
        Arc::try_unwrap(f.file).unwrap_or_else(|shared| {
            shared
                .try_clone()
                .unwrap_or_else(|e| panic!("xev::File: cannot duplicate the handle: {e}"))
        })
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsRawHandle for File {
    fn as_raw_handle(&self) -> std::os::windows::io::RawHandle {
        self.file.as_raw_handle()
    }
}

#[cfg(windows)]
impl std::os::windows::io::AsHandle for File {
    fn as_handle(&self) -> std::os::windows::io::BorrowedHandle<'_> {
        self.file.as_handle()
    }
}
