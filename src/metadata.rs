//! [`Metadata`] and [`FileType`]: what `statx(2)` reports about a file, with a surface
//! like `std::fs::Metadata` (which cannot be built from a `statx` record).

use std::fmt;
use std::fs::Permissions;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

/// Information about a file, from [`Op::Statx`](crate::Op::Statx) (the callback API) or
/// `xev::fs::metadata` / `File::metadata` (the async API). Methods follow
/// [`std::fs::Metadata`] and its Unix extension.
///
/// ```
/// xev::block_on(async {
///     let m = xev::fs::metadata("/").await?;
///     assert!(m.is_dir() && !m.is_file());
///     assert_eq!(m.ino(), std::os::unix::fs::MetadataExt::ino(&std::fs::metadata("/")?));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Metadata {
    pub(crate) mask: u32,
    pub(crate) mode: u32,
    pub(crate) size: u64,
    pub(crate) ino: u64,
    pub(crate) dev: u64,
    pub(crate) rdev: u64,
    pub(crate) nlink: u64,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) blksize: u64,
    pub(crate) blocks: u64,
    pub(crate) atime: (i64, u32),
    pub(crate) mtime: (i64, u32),
    pub(crate) ctime: (i64, u32),
    pub(crate) btime: (i64, u32),
}

impl Metadata {
    /// From the record an `Op::Statx` filled (`statx` on Linux, `stat` elsewhere).
    pub(crate) fn from_statx(st: &crate::sys::StatRecord) -> Metadata {
        crate::sys::metadata_from(st)
    }

    /// The file's type.
    pub fn file_type(&self) -> FileType {
        FileType(self.mode & S_IFMT)
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }

    /// Whether it is a regular file.
    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }

    /// Whether it is a symbolic link (only from a query that does not follow links, such
    /// as `symlink_metadata`).
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }

    /// Size in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.size
    }

    /// The permission bits, as `std` represents them.
    pub fn permissions(&self) -> Permissions {
        Permissions::from_mode(self.mode)
    }

    /// The whole `st_mode` (type and permission bits).
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// Last modification time.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.time(crate::sys::STATX_MTIME, self.mtime, "modification")
    }

    /// Last access time.
    pub fn accessed(&self) -> io::Result<SystemTime> {
        self.time(crate::sys::STATX_ATIME, self.atime, "access")
    }

    /// Creation (birth) time; `ErrorKind::Unsupported` where the filesystem does not
    /// record it.
    pub fn created(&self) -> io::Result<SystemTime> {
        self.time(crate::sys::STATX_BTIME, self.btime, "creation")
    }

    /// Last status change time, seconds since the epoch (as `MetadataExt::ctime`).
    pub fn ctime(&self) -> i64 {
        self.ctime.0
    }

    /// Nanoseconds part of the status change time.
    pub fn ctime_nsec(&self) -> i64 {
        i64::from(self.ctime.1)
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// ID of the device holding the file.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Device ID, for a device special file.
    pub fn rdev(&self) -> u64 {
        self.rdev
    }

    /// Number of hard links.
    pub fn nlink(&self) -> u64 {
        self.nlink
    }

    /// Owner's user ID.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Owner's group ID.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// Preferred block size for I/O.
    pub fn blksize(&self) -> u64 {
        self.blksize
    }

    /// Number of 512-byte blocks allocated.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    fn time(&self, bit: u32, (sec, nsec): (i64, u32), what: &str) -> io::Result<SystemTime> {
        if self.mask & bit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{what} time is not available on this filesystem"),
            ));
        }
        let t = if sec >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(Duration::new(sec as u64, nsec))
        } else {
            SystemTime::UNIX_EPOCH
                .checked_sub(Duration::from_secs(sec.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nsec))))
        };
        t.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "timestamp out of range"))
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("file_type", &self.file_type())
            .field("len", &self.size)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("ino", &self.ino)
            .field("modified", &self.modified().ok())
            .finish_non_exhaustive()
    }
}

use s_if::*;

/// The `S_IF*` constants as `u32` (they are `mode_t`: 32 bits on Linux, 16 on BSD and
/// macOS, hence the casts).
#[allow(clippy::unnecessary_cast)]
mod s_if {
    pub(super) const S_IFMT: u32 = libc::S_IFMT as u32;
    pub(super) const S_IFDIR: u32 = libc::S_IFDIR as u32;
    pub(super) const S_IFREG: u32 = libc::S_IFREG as u32;
    pub(super) const S_IFLNK: u32 = libc::S_IFLNK as u32;
    pub(super) const S_IFBLK: u32 = libc::S_IFBLK as u32;
    pub(super) const S_IFCHR: u32 = libc::S_IFCHR as u32;
    pub(super) const S_IFIFO: u32 = libc::S_IFIFO as u32;
    pub(super) const S_IFSOCK: u32 = libc::S_IFSOCK as u32;
}

/// A file's type, from [`Metadata::file_type`] (as [`std::fs::FileType`] and its Unix
/// extension).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType(u32);

impl FileType {
    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.0 == S_IFDIR
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.0 == S_IFREG
    }

    /// A symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.0 == S_IFLNK
    }

    /// A block device.
    pub fn is_block_device(&self) -> bool {
        self.0 == S_IFBLK
    }

    /// A character device.
    pub fn is_char_device(&self) -> bool {
        self.0 == S_IFCHR
    }

    /// A FIFO (named pipe).
    pub fn is_fifo(&self) -> bool {
        self.0 == S_IFIFO
    }

    /// A Unix socket.
    pub fn is_socket(&self) -> bool {
        self.0 == S_IFSOCK
    }
}

impl fmt::Debug for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.0 {
            S_IFDIR => "dir",
            S_IFREG => "file",
            S_IFLNK => "symlink",
            S_IFBLK => "block device",
            S_IFCHR => "char device",
            S_IFIFO => "fifo",
            S_IFSOCK => "socket",
            _ => "unknown",
        };
        write!(f, "FileType({name})")
    }
}
