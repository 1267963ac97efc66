//! Files for tasks on Windows: the `xev::fs` API over `std::fs`, every call a job on the
//! runtime's thread pool. ([`File`], [`OpenOptions`], [`read`], [`read_to_string`],
//! [`write`](fn@write), [`copy`], [`rename`], [`remove_file`], [`remove_dir`],
//! [`create_dir`], [`create_dir_all`], [`DirBuilder`], [`hard_link`], [`symlink_file`],
//! [`symlink_dir`], [`metadata`], [`symlink_metadata`], [`try_exists`], [`read_dir`],
//! [`canonicalize`].)
//!
//! Windows' readiness backend (`polling`, IOCP/AFD) waits for sockets only, so a file
//! operation is one blocking `std::fs` call on the pool (`ReadFile`/`WriteFile` at an
//! offset for the positional reads and writes), whose result wakes the task, as the
//! epoll backend does for regular files on Linux. A [`File`] shares its handle with the
//! jobs it starts (an `Arc`): a job whose future was dropped keeps the handle open until
//! it has run, so a handle opened meanwhile can never receive its write; buffers move
//! into the job and come back with the result.
//!
//! Differences from the Unix module, per item:
//! - [`Metadata`], [`FileType`] are `std::fs`'s (no `statx` fields: no birth-time mask,
//!   no inode or device numbers; `std`'s Windows extensions, `MetadataExt`, give the
//!   attributes and times).
//! - [`OpenOptions`] has no `mode` (Unix permission bits) or `custom_flags` (`O_*`):
//!   build one from a `std::fs::OpenOptions` with `std`'s `OpenOptionsExt` set
//!   (`share_mode`, `attributes`, `custom_flags`, ...) instead.
//! - [`File::allocate`] extends the file to `offset + len` if it is shorter (Windows has
//!   no `fallocate`: no block reservation); `fallocate` with Linux mode bits is absent.
//! - [`File::read_at`] and the other positional calls also move the handle's file
//!   position (Windows' `ReadFile`/`WriteFile` at an offset do), which only matters to
//!   code that also reads the handle at its position.
//! - [`File::sync_data`] flushes everything, as [`File::sync_all`] (`FlushFileBuffers`).
//! - `symlink` is [`symlink_file`] / [`symlink_dir`] (Windows makes the two kinds
//!   differently; both need the privilege Windows asks for, or developer mode).
//! - [`DirBuilder`] has no `mode`.
//! - `read_vectored_at` / `write_vectored_at` are absent: read or write each buffer.
//!
//! ```no_run
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

// On Unix this file is compiled only for its tests (see `rt`), where much of it is unused.
#![cfg_attr(unix, allow(dead_code, unused_imports))]

// The portable parts of the Unix module (pool jobs over `std::fs`), shared.
#[cfg(windows)]
#[path = "canonicalize.rs"]
mod canonicalize;
#[cfg(windows)]
#[path = "read_dir.rs"]
mod read_dir;

#[cfg(unix)]
pub use super::fs::{canonicalize, read_dir, DirEntry, ReadDir};
#[cfg(windows)]
pub use canonicalize::canonicalize;
#[cfg(windows)]
pub use read_dir::{read_dir, DirEntry, ReadDir};
pub use std::fs::{FileType, Metadata};

use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::buf::{self, IoBuf, IoBufMut};
use super::io::empty_read;
use crate::op::Buffer;

/// Run `f` on the runtime's blocking pool.
async fn blocking<R, F>(f: F) -> io::Result<R>
where
    F: FnOnce() -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    super::blocking::spawn_blocking(f).await?
}

/// A buffer on its way to a pool job and back.
struct SendBuffer(Buffer);

// SAFETY: a `Buffer` owns its memory (a `Vec`, inline bytes, a `bytes` handle, or memory
// its creator vouched for with the `unsafe` `Buffer::from_raw` until the operation ends),
// and nothing else refers to it while the job has it: the loop's own thread pool moves
// buffers to worker threads the same way.
unsafe impl Send for SendBuffer {}

/// One read at `offset` into `f` (moves the position on Windows; see the module docs).
fn read_at_std(f: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(f, buf, offset);
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(f, buf, offset);
}

/// One write at `offset` to `f`.
fn write_at_std(f: &std::fs::File, buf: &[u8], offset: u64) -> io::Result<usize> {
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_write(f, buf, offset);
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::write_at(f, buf, offset);
}

/// Run `io` on the pool with `file` and `b`, handing `b` back with the result (a panic in
/// `io` is an error, and the buffer still comes back).
async fn with_buffer<R, F>(file: &Arc<std::fs::File>, b: Buffer, io: F) -> (io::Result<R>, Buffer)
where
    F: FnOnce(&std::fs::File, &mut Buffer) -> io::Result<R> + Send + 'static,
    R: Send + 'static,
{
    let file = file.clone();
    let mut b = SendBuffer(b);
    let job = super::blocking::spawn_blocking(move || {
        let r = catch_unwind(AssertUnwindSafe(|| io(&file, &mut b.0)))
            .unwrap_or_else(|_| Err(io::Error::other("xev::fs: the file call panicked")));
        (r, b)
    });
    match job.await {
        Ok((r, b)) => (r, b.0),
        // The closure catches its own panics and nothing aborts this job: unreachable.
        Err(e) => panic!("xev::fs: a file job was lost: {e}"),
    }
}

/// An open file whose reads and writes are async (pool jobs); see the
/// [module docs](self).
///
/// Dropping it closes the handle at once, or, if the job of a dropped future still has
/// it, when that job ends; [`close`](Self::close) reports the close error.
pub struct File {
    file: Arc<std::fs::File>,
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File").field("file", &self.file).finish()
    }
}

impl File {
    /// Open `path` read-only (as [`std::fs::File::open`]). A missing file is
    /// `ErrorKind::NotFound`.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Create `path` or truncate it, and open it write-only (as
    /// [`std::fs::File::create`]).
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

    /// Read once at `offset` into `buf`, handing `buf` back: `Ok(0)` at the end of the
    /// file, otherwise the byte count, which may be short (bytes land as described at
    /// [`IoBufMut`]). A zero-length buffer is `InvalidInput`; a file not opened for
    /// reading is `PermissionDenied` (`ERROR_ACCESS_DENIED`).
    pub async fn read_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        let (b, prep) = buf::into_read_buffer(buf);
        if b.is_empty() {
            return (Err(empty_read()), buf::from_read_buffer(b, prep, 0));
        }
        let (res, b) = with_buffer(&self.file, b, move |f, b| {
            read_at_std(f, b.as_mut_slice(), offset)
        })
        .await;
        let filled = *res.as_ref().unwrap_or(&0);
        (res, buf::from_read_buffer(b, prep, filled))
    }

    /// Fill all of `buf` from `offset`, continuing after short reads;
    /// `ErrorKind::UnexpectedEof` if the file ends first (the bytes read so far are in
    /// `buf`). One pool job for the whole buffer.
    pub async fn read_exact_at<B: IoBufMut>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        let spare = buf::spare_capacity(&buf);
        let (b, prep) = buf::into_exact_buffer(buf);
        if b.is_empty() {
            let res = if spare > 0 {
                Err(buf::exact_into_capacity(spare))
            } else {
                Ok(())
            };
            return (res, buf::from_read_buffer(b, prep, 0));
        }
        let (res, b) = with_buffer(&self.file, b, move |f, b| {
            let dst = b.as_mut_slice();
            let mut filled = 0;
            while filled < dst.len() {
                match read_at_std(f, &mut dst[filled..], offset + filled as u64) {
                    Ok(0) => {
                        let e = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("end of file after {filled} of {} bytes", dst.len()),
                        );
                        return Ok((filled, Some(e)));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Ok((filled, Some(e))),
                }
            }
            Ok((filled, None))
        })
        .await;
        let (filled, res) = match res {
            Ok((n, None)) => (n, Ok(())),
            Ok((n, Some(e))) => (n, Err(e)),
            Err(e) => (0, Err(e)),
        };
        (res, buf::from_read_buffer(b, prep, filled))
    }

    /// Write `buf` once at `offset`, handing it back with the byte count, which may be
    /// short. A file not opened for writing is `PermissionDenied`.
    pub async fn write_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<usize>, B) {
        let (b, saved) = buf::into_buffer(buf);
        let (res, b) = with_buffer(&self.file, b, move |f, b| {
            write_at_std(f, b.as_slice(), offset)
        })
        .await;
        (res, buf::from_buffer(b, saved))
    }

    /// Write all of `buf` at `offset`, continuing after short writes (one pool job).
    pub async fn write_all_at<B: IoBuf>(&self, buf: B, offset: u64) -> (io::Result<()>, B) {
        let (b, saved) = buf::into_buffer(buf);
        let (res, b) = with_buffer(&self.file, b, move |f, b| {
            let mut src = b.as_slice();
            let mut at = offset;
            while !src.is_empty() {
                match write_at_std(f, src, at) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        src = &src[n..];
                        at += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await;
        (res, buf::from_buffer(b, saved))
    }

    /// Run `f` on the pool with this file's handle.
    async fn on_pool<R, F>(&self, f: F) -> io::Result<R>
    where
        F: FnOnce(&std::fs::File) -> io::Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let file = self.file.clone();
        blocking(move || f(&file)).await
    }

    /// Flush data and metadata to the device (`FlushFileBuffers`, on the pool).
    pub async fn sync_all(&self) -> io::Result<()> {
        self.on_pool(|f| f.sync_all()).await
    }

    /// Flush data (Windows flushes everything, as [`sync_all`](Self::sync_all)).
    pub async fn sync_data(&self) -> io::Result<()> {
        self.on_pool(|f| f.sync_data()).await
    }

    /// The file's metadata (`GetFileInformationByHandle`, on the pool).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.on_pool(|f| f.metadata()).await
    }

    /// Truncate or extend (with zeros) the file to `size` bytes (on the pool). The file
    /// must be open for writing; a size above `i64::MAX` is `InvalidInput`.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        if size > i64::MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file size above i64::MAX",
            ));
        }
        self.on_pool(move |f| f.set_len(size)).await
    }

    /// Extend the file to `offset + len` bytes (with zeros) if it is shorter; no block
    /// reservation on Windows (see the module docs). A range past `i64::MAX` is
    /// `InvalidInput`.
    pub async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "range past i64::MAX"))?;
        self.on_pool(move |f| {
            if f.metadata()?.len() < end {
                f.set_len(end)?;
            }
            Ok(())
        })
        .await
    }

    /// Close the handle and report the error. If the job of a dropped future still has
    /// the handle, it is closed when that job ends and this reports `Ok(())`.
    pub async fn close(self) -> io::Result<()> {
        match Arc::try_unwrap(self.file) {
            Ok(f) => blocking(move || close_std(f)).await,
            Err(_shared) => Ok(()),
        }
    }

    /// The `std` file, e.g. for blocking use on another thread. If the job of a dropped
    /// future still has the handle, this is a duplicate of it (the same open file).
    ///
    /// # Panics
    /// If that duplicate cannot be made.
    pub fn into_std(self) -> std::fs::File {
        Arc::try_unwrap(self.file).unwrap_or_else(|shared| {
            shared
                .try_clone()
                .unwrap_or_else(|e| panic!("xev::fs::File::into_std: cannot duplicate: {e}"))
        })
    }
}

/// Close `f`, reporting the error its drop would ignore.
fn close_std(f: std::fs::File) -> io::Result<()> {
    #[cfg(windows)]
    {
        use std::os::windows::io::IntoRawHandle;
        let h = f.into_raw_handle();
        // SAFETY: `h` was just released by `f`, so this closes it exactly once.
        if unsafe { windows_sys::Win32::Foundation::CloseHandle(h) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(unix)]
    {
        drop(f);
        Ok(())
    }
}

impl From<std::fs::File> for File {
    /// Wrap an open `std` file (no system call).
    fn from(std: std::fs::File) -> File {
        File {
            file: Arc::new(std),
        }
    }
}

impl From<File> for std::fs::File {
    /// As [`File::into_std`].
    fn from(f: File) -> std::fs::File {
        f.into_std()
    }
}

#[cfg(windows)]
impl From<std::os::windows::io::OwnedHandle> for File {
    /// Wrap an open file handle (no system call).
    fn from(h: std::os::windows::io::OwnedHandle) -> File {
        File::from(std::fs::File::from(h))
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

/// How to open a file, as [`std::fs::OpenOptions`] (which it wraps), with an async
/// [`open`](Self::open). Windows-specific options: set them on a `std::fs::OpenOptions`
/// (`std::os::windows::fs::OpenOptionsExt`) and convert it with `From`.
#[derive(Debug, Clone)]
pub struct OpenOptions(std::fs::OpenOptions);

impl OpenOptions {
    /// All options off (open with neither read nor write access fails, as in `std`).
    pub fn new() -> OpenOptions {
        OpenOptions(std::fs::OpenOptions::new())
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.0.read(read);
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.0.write(write);
        self
    }

    /// Append: every write goes to the end.
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.0.append(append);
        self
    }

    /// Truncate an existing file to length 0 (needs write access).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.0.truncate(truncate);
        self
    }

    /// Create the file if it does not exist.
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.0.create(create);
        self
    }

    /// Create the file, failing with `ErrorKind::AlreadyExists` if it exists (atomic).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.0.create_new(create_new);
        self
    }

    /// Open `path` with these options (on the pool). The future does not borrow the
    /// options; dropping it before it completes leaks nothing (a file opened anyway is
    /// closed when the job ends).
    pub fn open(&self, path: impl AsRef<Path>) -> impl Future<Output = io::Result<File>> {
        let opts = self.0.clone();
        let path = path.as_ref().to_path_buf();
        async move { blocking(move || opts.open(path)).await.map(File::from) }
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

impl From<std::fs::OpenOptions> for OpenOptions {
    /// These options, with whatever platform extensions were set on them.
    fn from(o: std::fs::OpenOptions) -> OpenOptions {
        OpenOptions(o)
    }
}

/// Read the whole file at `path` (as [`std::fs::read`], on the pool).
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::read(path)).await
}

/// Read the whole file at `path` as UTF-8 (as [`std::fs::read_to_string`]):
/// `ErrorKind::InvalidData` if the bytes are not UTF-8.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::read_to_string(path)).await
}

/// Write `contents` as the whole file at `path`, creating or truncating it (as
/// [`std::fs::write`], on the pool; the bytes are copied first, fallibly: an allocation
/// failure is `OutOfMemory` and nothing is created).
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let contents = contents.as_ref();
    let mut data = Vec::new();
    data.try_reserve_exact(contents.len()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::OutOfMemory,
            format!("cannot copy {} bytes to write: {e}", contents.len()),
        )
    })?;
    data.extend_from_slice(contents);
    let path = path.as_ref().to_path_buf();
    blocking(move || {
        let f = std::fs::File::create(path)?;
        std::io::Write::write_all(&mut &f, &data)?;
        close_std(f)
    })
    .await
}

/// Copy the contents of `from` to `to` (as [`std::fs::copy`]: `CopyFileExW` on Windows,
/// which also copies attributes), returning the byte count.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_path_buf(), to.as_ref().to_path_buf());
    blocking(move || std::fs::copy(from, to)).await
}

/// Rename `from` to `to`, replacing `to` if it is a file (as [`std::fs::rename`]).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (from.as_ref().to_path_buf(), to.as_ref().to_path_buf());
    blocking(move || std::fs::rename(from, to)).await
}

/// Remove a file (as [`std::fs::remove_file`]). A missing one is `NotFound`.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::remove_file(path)).await
}

/// Remove an empty directory (as [`std::fs::remove_dir`]).
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::remove_dir(path)).await
}

/// Create a directory (as [`std::fs::create_dir`]): `AlreadyExists` if it exists,
/// `NotFound` if its parent does not.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::create_dir(path)).await
}

/// Create a directory and its missing parents (as [`std::fs::create_dir_all`]).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    DirBuilder::new().recursive(true).create(path).await
}

/// Make `link` a hard link to `original` (as [`std::fs::hard_link`]).
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_path_buf(), link.as_ref().to_path_buf());
    blocking(move || std::fs::hard_link(original, link)).await
}

/// Make `link` a symbolic link to the file `original`
/// (`std::os::windows::fs::symlink_file`).
#[cfg(windows)]
pub async fn symlink_file(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_path_buf(), link.as_ref().to_path_buf());
    blocking(move || std::os::windows::fs::symlink_file(original, link)).await
}

/// Make `link` a symbolic link to the directory `original`
/// (`std::os::windows::fs::symlink_dir`).
#[cfg(windows)]
pub async fn symlink_dir(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref().to_path_buf(), link.as_ref().to_path_buf());
    blocking(move || std::os::windows::fs::symlink_dir(original, link)).await
}

/// The metadata of `path`, following symlinks (as [`std::fs::metadata`]).
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::metadata(path)).await
}

/// The metadata of `path` itself, a symlink not followed (as
/// [`std::fs::symlink_metadata`]).
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::symlink_metadata(path)).await
}

/// Whether `path` exists (following symlinks): `Ok(false)` when it is missing, an error
/// when that cannot be told (as [`std::fs::exists`]).
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    match metadata(path).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// How to create directories: [`recursive`](Self::recursive) or not (Windows has no
/// `mode`).
#[derive(Debug, Clone, Default)]
pub struct DirBuilder {
    recursive: bool,
}

impl DirBuilder {
    /// Not recursive.
    pub fn new() -> DirBuilder {
        DirBuilder::default()
    }

    /// Also create missing parents, and accept a directory that already exists.
    pub fn recursive(&mut self, recursive: bool) -> &mut DirBuilder {
        self.recursive = recursive;
        self
    }

    /// Create `path` with these options (on the pool). The future does not borrow the
    /// builder.
    pub fn create(&self, path: impl AsRef<Path>) -> impl Future<Output = io::Result<()>> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(self.recursive);
        let path: PathBuf = path.as_ref().to_path_buf();
        async move { blocking(move || b.create(path)).await }
    }
}

#[cfg(test)]
mod tests {
    //! The module's logic run on Linux (the pool jobs, buffer hand-back, errors); on
    //! Windows the same code calls `seek_read`/`seek_write` instead of `pread`/`pwrite`.
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xev-fs-win-{name}-{}", std::process::id()))
    }

    #[test]
    fn positional_reads_and_writes_hand_buffers_back() {
        let path = temp("rw");
        crate::block_on(async {
            write(&path, "hello, world").await.unwrap();
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .await
                .unwrap();
            let (n, buf) = f.read_at(vec![0u8; 5], 7).await;
            assert_eq!(&buf[..n.unwrap()], b"world");
            // At and past the end: Ok(0), the buffer comes back.
            let (n, buf) = f.read_at(vec![0u8; 4], 12).await;
            assert_eq!((n.unwrap(), buf.len()), (0, 4));
            // A zero-length buffer is an error, not a fake end of file.
            let (r, _) = f.read_at(Vec::<u8>::new(), 0).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
            let (n, _) = f.write_at(&b"HELLO"[..], 0).await;
            assert_eq!(n.unwrap(), 5);
            let (r, _) = f.write_all_at(vec![b'!'; 3], 12).await;
            r.unwrap();
            let (r, buf) = f.read_exact_at(vec![0u8; 15], 0).await;
            r.unwrap();
            assert_eq!(&buf[..], b"HELLO, world!!!");
            // Past the end: UnexpectedEof, with what was there.
            let (r, buf) = f.read_exact_at(vec![0u8; 8], 10).await;
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
            assert_eq!(&buf[..5], b"ld!!!");
            f.sync_all().await.unwrap();
            f.sync_data().await.unwrap();
            assert_eq!(f.metadata().await.unwrap().len(), 15);
            f.close().await.unwrap();
        });
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn sizes_and_access_errors() {
        let path = temp("size");
        crate::block_on(async {
            let f = File::create(&path).await.unwrap();
            f.set_len(100).await.unwrap();
            assert_eq!(f.metadata().await.unwrap().len(), 100);
            // Extends only.
            f.allocate(0, 10).await.unwrap();
            assert_eq!(f.metadata().await.unwrap().len(), 100);
            f.allocate(100, 28).await.unwrap();
            assert_eq!(f.metadata().await.unwrap().len(), 128);
            let big = f.set_len(u64::MAX).await.unwrap_err();
            assert_eq!(big.kind(), io::ErrorKind::InvalidInput);
            let past = f.allocate(u64::MAX, 2).await.unwrap_err();
            assert_eq!(past.kind(), io::ErrorKind::InvalidInput);
            // Write-only: a read fails (EBADF here, ERROR_ACCESS_DENIED on Windows).
            let (r, _) = f.read_at(vec![0u8; 4], 0).await;
            assert!(r.is_err());
            drop(f);
            let ro = File::open(&path).await.unwrap();
            let (r, _) = ro.write_at(&b"x"[..], 0).await;
            assert!(r.is_err());
            let std_file = ro.into_std();
            assert_eq!(std_file.metadata().unwrap().len(), 128);
        });
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_dropped_read_keeps_the_file_open_until_its_job_ends() {
        use std::future::Future;
        use std::pin::pin;
        use std::task::Context;
        let path = temp("orphan");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        crate::block_on(async {
            let f = File::open(&path).await.unwrap();
            let weak = Arc::downgrade(&f.file);
            {
                let mut read = pin!(f.read_at(vec![0u8; 1 << 20], 0));
                let waker = std::task::Waker::noop();
                // Started (the job holds the file), then dropped mid-operation.
                assert!(read
                    .as_mut()
                    .poll(&mut Context::from_waker(waker))
                    .is_pending());
            }
            drop(f);
            // The job still owns a reference until it has run; then the file closes.
            for _ in 0..1000 {
                if weak.strong_count() == 0 {
                    break;
                }
                crate::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            assert_eq!(weak.strong_count(), 0, "the orphaned job released the file");
        });
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn path_operations() {
        let root = temp("paths");
        crate::block_on(async {
            create_dir_all(root.join("a/b")).await.unwrap();
            create_dir_all(root.join("a/b")).await.unwrap();
            let e = create_dir(root.join("a")).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            let e = create_dir(root.join("missing/x")).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            let file = root.join("a/f.txt");
            write(&file, [0xffu8, 0xfe]).await.unwrap();
            assert_eq!(read(&file).await.unwrap(), [0xff, 0xfe]);
            let e = read_to_string(&file).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert_eq!(copy(&file, root.join("c.txt")).await.unwrap(), 2);
            rename(root.join("c.txt"), root.join("d.txt"))
                .await
                .unwrap();
            assert!(!try_exists(root.join("c.txt")).await.unwrap());
            assert!(try_exists(root.join("d.txt")).await.unwrap());
            hard_link(root.join("d.txt"), root.join("e.txt"))
                .await
                .unwrap();
            assert_eq!(metadata(root.join("e.txt")).await.unwrap().len(), 2);
            assert!(symlink_metadata(&root).await.unwrap().is_dir());
            let e = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
            let e = File::open(root.join("nope")).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            let mut names = Vec::new();
            let mut d = read_dir(&root).await.unwrap();
            while let Some(e) = d.next_entry().await.unwrap() {
                names.push(e.file_name());
            }
            names.sort();
            assert_eq!(names, ["a", "d.txt", "e.txt"]);
            assert!(canonicalize(&root).await.unwrap().is_absolute());
            let e = remove_dir(root.join("a")).await.unwrap_err();
            assert_ne!(e.kind(), io::ErrorKind::NotFound);
            remove_file(&file).await.unwrap();
            let e = remove_file(&file).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound);
            remove_dir(root.join("a/b")).await.unwrap();
            remove_dir(root.join("a")).await.unwrap();
        });
        std::fs::remove_dir_all(&root).unwrap();
    }
}
