//! Files for tasks: [`File`], [`OpenOptions`], [`Metadata`], the path operations
//! ([`rename`], [`remove_file`], [`remove_dir`], [`create_dir`], [`create_dir_all`],
//! [`DirBuilder`], [`hard_link`], [`symlink`], [`metadata`], [`symlink_metadata`],
//! [`try_exists`]), the whole-file helpers [`read`], [`read_to_string`] and
//! [`write`](fn@write), and [`copy`], [`read_dir`] and [`canonicalize`].
//!
//! Every file and path operation is one loop operation. On io_uring they are kernel
//! operations (`OPENAT`, `STATX`, `RENAMEAT`, `UNLINKAT`, `MKDIRAT`, `LINKAT`,
//! `SYMLINKAT`, `FSYNC`, `FALLOCATE`, `FTRUNCATE`, `READ`, `WRITE`, `CLOSE`) and none runs
//! on the thread pool. The epoll backend cannot wait for a regular file or a path lookup
//! (they are always "ready" and then block), so it runs them on the loop's thread pool.
//! [`copy`] (`copy_file_range(2)`), [`read_dir`] and [`canonicalize`] have no io_uring
//! operation and run on the thread pool on both backends.
//!
//! Reads and writes are positional (`pread`/`pwrite` at an offset, the [`read_at`] /
//! [`write_at`] family) and take owned buffers ([`IoBuf`], [`IoBufMut`]) that come back
//! with the result. Paths are copied into owned strings before an operation starts (a
//! path with a NUL byte is `InvalidInput`). [`File::close`] is a loop operation that
//! reports the close error (a plain drop closes synchronously and ignores it, like
//! `std`).
//!
//! A [`File`]'s descriptor is never closed while an operation that names it can still
//! run: if a read or write future is dropped mid-operation, the (cancelled) operation
//! keeps the descriptor open until it ends, even if the `File` is dropped first, so a
//! file or socket opened meanwhile cannot get its number and receive the stale write.
//!
//! Every future here must be awaited inside a runtime (polling one elsewhere panics).
//!
//! ```
//! use xev::fs::{self, File};
//!
//! xev::block_on(async {
//!     let path = std::env::temp_dir().join(format!("xev-fs-doc-{}", std::process::id()));
//!     fs::write(&path, "hello, world").await?;
//!
//!     let f = File::open(&path).await?;
//!     let (n, buf) = f.read_at(vec![0u8; 5], 7).await;
//!     assert_eq!(&buf[..n?], b"world");
//!     assert_eq!(f.metadata().await?.len(), 12);
//!     f.close().await?;
//!
//!     assert_eq!(fs::read_to_string(&path).await?, "hello, world");
//!     std::fs::remove_file(&path)
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! [`read_at`]: File::read_at
//! [`write_at`]: File::write_at
//! [`IoBuf`]: crate::rt::IoBuf
//! [`IoBufMut`]: crate::rt::IoBufMut

mod canonicalize;
mod copy;
mod dir_builder;
mod metadata;
mod open_options;
mod path_ops;
mod read_dir;

pub use crate::metadata::{FileType, Metadata};
pub use canonicalize::canonicalize;
pub use copy::copy;
pub use dir_builder::{create_dir_all, DirBuilder};
pub use metadata::{metadata, symlink_metadata, try_exists};
pub use open_options::OpenOptions;
pub use path_ops::{create_dir, hard_link, remove_dir, remove_file, rename, symlink};
pub use read_dir::{read_dir, DirEntry, ReadDir};

use crate::sys::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::io;
use std::path::Path;
use std::rc::Rc;

mod vectored;

use super::buf::{IoBuf, IoBufMut};
use super::io::{self as rio, read_result, run, Kind};
use super::loop_fd::LoopFd;
use crate::op::{Buffer, Op};

/// Run `f` on the runtime's blocking pool (the fs helpers without a loop operation:
/// [`copy`], [`read_dir`], [`canonicalize`]).
async fn blocking<R, F>(f: F) -> io::Result<R>
where
    F: FnOnce() -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    super::blocking::spawn_blocking(f).await?
}

/// An open file whose reads and writes are async; see the [module docs](self).
///
/// Dropping it closes the descriptor at once (synchronously, ignoring errors, like
/// `std::fs::File`), or, if the operation of a dropped read or write future is still in
/// flight, when that operation ends; [`close`](Self::close) closes it through the loop
/// and reports the error. The read and write futures borrow the `File`, so it outlives
/// every operation awaited to its end; a future dropped mid-operation cancels it (on the
/// epoll backend, a `pread`/`pwrite` that a pool thread has already picked up still runs
/// to its end).
#[derive(Debug)]
pub struct File {
    fd: Rc<LoopFd>,
}

impl File {
    /// Open `path` read-only (as [`std::fs::File::open`]) with one `openat(2)` loop
    /// operation. A missing file is `ErrorKind::NotFound`.
    ///
    /// Dropping the future before it completes leaks nothing: a descriptor opened anyway
    /// is closed when the operation ends.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Create `path` or truncate it, and open it write-only (as
    /// [`std::fs::File::create`]), with one `openat(2)` loop operation.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// A new [`OpenOptions`] (same as [`OpenOptions::new`]).
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Read once at `offset` into `buf` (`pread(2)`), handing `buf` back: `Ok(0)` at the
    /// end of the file, otherwise the byte count, which may be short. How the bytes land
    /// in `buf` is described at [`IoBufMut`] (for a `Vec`: from its
    /// start, up to its capacity). A zero-length buffer is `InvalidInput`; a file not
    /// opened for reading gives `EBADF`.
    pub async fn read_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        rio::read(&self.fd, buf, Kind::At(offset)).await
    }

    /// Fill all of `buf` from `offset`, continuing after short reads;
    /// `ErrorKind::UnexpectedEof` if the file ends first (the bytes read so far are in
    /// `buf`).
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        rio::read_exact(&self.fd, buf, Kind::At(offset)).await
    }

    /// Write `buf` once at `offset` (`pwrite(2)`), handing it back with the byte count,
    /// which may be short. A file not opened for writing gives `EBADF`.
    ///
    /// On a file opened in append mode, Linux appends whatever the offset.
    pub async fn write_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        rio::write(&self.fd, buf, Kind::At(offset), false).await
    }

    /// Write all of `buf` at `offset`, continuing after short writes.
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        rio::write_all(&self.fd, buf, Kind::At(offset), false).await
    }

    /// Flush data and metadata to the device (`fsync(2)`, a loop operation).
    ///
    /// The operation keeps the descriptor open until it ends, so dropping the future, or
    /// the `File`, meanwhile is harmless.
    pub async fn sync_all(&self) -> io::Result<()> {
        path_ops::unit(rio::FdOp::on(&self.fd, |fd| Op::Fsync {
            fd,
            data_only: false,
        }))
        .await
    }

    /// Flush data, and only the metadata needed to read it back (`fdatasync(2)`; see
    /// [`sync_all`](Self::sync_all)).
    pub async fn sync_data(&self) -> io::Result<()> {
        path_ops::unit(rio::FdOp::on(&self.fd, |fd| Op::Fsync {
            fd,
            data_only: true,
        }))
        .await
    }

    /// The file's metadata (`statx(2)` of the descriptor, a loop operation).
    ///
    /// ```
    /// xev::block_on(async {
    ///     let f = xev::fs::File::open("Cargo.toml").await?;
    ///     let m = f.metadata().await?;
    ///     assert!(m.is_file() && m.len() > 0);
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn metadata(&self) -> io::Result<Metadata> {
        metadata::of_fd(&self.fd).await
    }

    /// Truncate or extend (with zeros) the file to `size` bytes (`ftruncate(2)`, a loop
    /// operation). The file must be open for writing (else `EINVAL` or `EBADF`); a size
    /// above `i64::MAX` is `InvalidInput`.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        if size > i64::MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file size above i64::MAX",
            ));
        }
        path_ops::unit(rio::FdOp::on(&self.fd, |fd| Op::Ftruncate {
            fd,
            len: size,
        }))
        .await
    }

    /// Make sure the disk space for `len` bytes from `offset` is allocated, extending the
    /// file if the range ends past its end (`fallocate(2)` with mode 0, a loop
    /// operation). Filesystems without `fallocate` give `EOPNOTSUPP`.
    pub async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        self.fallocate(0, offset, len).await
    }

    /// `fallocate(2)` with `FALLOC_FL_*` `mode` bits (e.g. `FALLOC_FL_KEEP_SIZE`,
    /// `FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`). A zero `len` is `EINVAL`.
    pub async fn fallocate(&self, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        path_ops::unit(rio::FdOp::on(&self.fd, |fd| Op::Fallocate {
            fd,
            mode,
            offset,
            len,
        }))
        .await
    }

    /// Close the file through the loop ([`Op::Close`]) and report the error, which for
    /// some filesystems (NFS) is where a failed deferred write shows up. The descriptor
    /// is released whatever the result. If the operation of a dropped read or write
    /// future is still in flight, this first waits for it to end (it was cancelled when
    /// its future was dropped).
    pub async fn close(self) -> io::Result<()> {
        rio::close(self.fd).await
    }

    /// The `std` file, e.g. for blocking use on another thread. If the operation of a
    /// dropped read or write future is still in flight, this is a duplicate descriptor
    /// of the same open file (the original is closed when that operation ends).
    ///
    /// # Panics
    /// If that duplicate cannot be made (the process is out of descriptors).
    pub fn into_std(self) -> std::fs::File {
        LoopFd::into_owned(self.fd).into()
    }

    /// The fd shared with this file's operations (for `xev::compat`).
    #[allow(dead_code)] // used only with the compat features
    pub(crate) fn loop_fd(&self) -> &Rc<LoopFd> {
        &self.fd
    }
}

impl From<std::fs::File> for File {
    /// Wrap an open `std` file (no system call).
    fn from(std: std::fs::File) -> File {
        File {
            fd: LoopFd::shared(std.into()),
        }
    }
}

impl From<OwnedFd> for File {
    /// Wrap an open descriptor (no system call).
    fn from(fd: OwnedFd) -> File {
        File {
            fd: LoopFd::shared(fd),
        }
    }
}

impl From<File> for std::fs::File {
    /// As [`File::into_std`].
    fn from(f: File) -> std::fs::File {
        f.into_std()
    }
}

impl From<File> for OwnedFd {
    /// As [`File::into_std`].
    fn from(f: File) -> OwnedFd {
        LoopFd::into_owned(f.fd)
    }
}

impl AsRawFd for File {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for File {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The first read of [`read`], and the smallest growth of its buffer.
const MIN_READ: usize = 8 * 1024;

/// Read the whole file at `path` (as [`std::fs::read`]): open, `statx` for the size,
/// then `pread` from offset 0 until end of file (all loop operations).
///
/// Memory: the size `statx` reports is reserved up front, fallibly: a file too large
/// for memory (such as a huge sparse file) is an [`OutOfMemory`](io::ErrorKind::OutOfMemory)
/// error, as with `std`, never an abort. The size is only a hint: the buffer is
/// initialised (touched) only as reads need room, in growing steps, so a file that turns
/// out shorter costs no more than its contents, and one that grew is read to its end
/// (growth is fallible too).
///
/// Meant for regular files (and others that support `pread`, such as `/proc` files);
/// a pipe or FIFO fails with `ESPIPE`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    // Shared with the reads, so a read whose future is dropped (this future cancelled)
    // keeps the fd open until it is over, as every async file does.
    let f = File::open(path).await?;
    let hint = f.metadata().await.map_or(0, |m| m.len());
    read_to_end(&f.fd, hint).await
}

/// The error of a failed (fallible) allocation of `bytes` more bytes.
fn out_of_memory(bytes: u128, e: std::collections::TryReserveError) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!("cannot allocate {bytes} bytes for the file's contents: {e}"),
    )
}

/// `pread`s from offset 0 until end of file; `hint` is the expected size.
///
/// `v.len()` is the initialised room (zeroed ahead of the reads), `filled` the bytes
/// read into its start.
async fn read_to_end(fd: &Rc<LoopFd>, hint: u64) -> io::Result<Vec<u8>> {
    // One byte more than the hint, so that the read that sees the end needs no growth.
    let want = u128::from(hint) + 1;
    let mut v = Vec::new();
    let reserve = usize::try_from(want).unwrap_or(usize::MAX).max(MIN_READ);
    v.try_reserve_exact(reserve)
        .map_err(|e| out_of_memory(want, e))?;
    let mut filled = 0;
    loop {
        if filled == v.len() {
            // Room for the next read: as much again as has been read (at least
            // MIN_READ), growing the allocation (fallibly, amortised) when it is full.
            let step = filled.max(MIN_READ);
            if v.len() == v.capacity() {
                v.try_reserve(step)
                    .map_err(|e| out_of_memory(step as u128, e))?;
            }
            let room = step.min(v.capacity() - v.len());
            v.resize(v.len() + room, 0); // within the capacity: no reallocation
        }
        let mut b = Buffer::from(v);
        b.advance(filled);
        let (res, back) = run(rio::FdOp::on(fd, |fd| Op::Pread {
            fd,
            buf: b,
            offset: filled as u64,
        }))
        .await;
        v = back
            .and_then(Buffer::into_vec)
            .expect("a pread hands its Vec buffer back");
        match read_result(res) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    v.truncate(filled);
    Ok(v)
}

/// Read the whole file at `path` as UTF-8 (as [`std::fs::read_to_string`]): [`read`],
/// then `ErrorKind::InvalidData` if the bytes are not UTF-8.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = read(path).await?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Write `contents` as the whole file at `path`, creating or truncating it (as
/// [`std::fs::write`]): [`File::create`], [`File::write_all_at`] from offset 0, then
/// [`File::close`], whose error is reported. `contents` is copied into an owned buffer
/// first (the write needs one the runtime can keep); if that allocation fails the result
/// is an [`OutOfMemory`](io::ErrorKind::OutOfMemory) error, and nothing is created.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let contents = contents.as_ref();
    let mut data = Vec::new();
    data.try_reserve_exact(contents.len())
        .map_err(|e| out_of_memory(contents.len() as u128, e))?;
    data.extend_from_slice(contents);
    let f = File::create(path).await?;
    if !data.is_empty() {
        f.write_all_at(data, 0).await.0?;
    }
    f.close().await
}
