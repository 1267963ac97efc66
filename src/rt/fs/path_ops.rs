//! Operations on paths, each one loop operation (native on io_uring; on the loop's
//! thread pool on the epoll backend): [`rename`], [`remove_file`], [`remove_dir`],
//! [`create_dir`], [`hard_link`], [`symlink`], and the open behind
//! [`OpenOptions`](super::OpenOptions).
//!
//! Paths are copied into owned NUL-terminated strings before the operation starts, so
//! the caller's `&Path` need not outlive anything; a path with a NUL byte is
//! `ErrorKind::InvalidInput` and starts nothing. Relative paths start from the process's
//! working directory.

use crate::sys::fd::OwnedFd;
use std::io;
use std::path::Path;

use crate::fs_op::c_path;
use crate::op::Op;
use crate::result::OpResult;
use crate::rt::io::{mismatch, run, FdOp};
use crate::OpPath;

/// A copy of `path` for an operation, or the `InvalidInput` error of a NUL byte.
pub(super) fn op_path(path: &Path) -> io::Result<OpPath> {
    c_path(path).map(OpPath::from)
}

/// Run an operation whose result is `Result<(), Error>`.
pub(super) async fn unit(op: impl Into<FdOp>) -> io::Result<()> {
    match run(op).await.0 {
        OpResult::RenameAt(r)
        | OpResult::UnlinkAt(r)
        | OpResult::MkdirAt(r)
        | OpResult::LinkAt(r)
        | OpResult::SymlinkAt(r)
        | OpResult::Fsync(r)
        | OpResult::Fallocate(r)
        | OpResult::Ftruncate(r) => r.map_err(Into::into),
        other => Err(mismatch(&other)),
    }
}

/// `openat(2)` of `path` from the working directory (`O_CLOEXEC` is added).
pub(super) async fn open_at(path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let path = op_path(path)?;
    match run(Op::OpenAt {
        dir: None,
        path,
        flags,
        mode,
    })
    .await
    .0
    {
        OpResult::OpenAt(r) => r.map_err(Into::into),
        other => Err(mismatch(&other)),
    }
}

/// Rename `from` to `to`, replacing `to` if it exists (as [`std::fs::rename`];
/// `renameat2(2)`). Renaming a directory over a non-empty one fails, as does moving
/// across filesystems (`EXDEV`).
///
/// ```
/// xev::block_on(async {
///     let dir = std::env::temp_dir().join(format!("xev-rename-doc-{}", std::process::id()));
///     xev::fs::create_dir(&dir).await?;
///     xev::fs::write(dir.join("a"), "x").await?;
///     xev::fs::rename(dir.join("a"), dir.join("b")).await?;
///     assert_eq!(xev::fs::read_to_string(dir.join("b")).await?, "x");
///     xev::fs::remove_file(dir.join("b")).await?;
///     xev::fs::remove_dir(&dir).await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (old, new) = (op_path(from.as_ref())?, op_path(to.as_ref())?);
    unit(Op::RenameAt {
        old_dir: None,
        old,
        new_dir: None,
        new,
        flags: 0,
    })
    .await
}

/// Remove a file or symbolic link (as [`std::fs::remove_file`]; `unlinkat(2)`). A
/// directory is an error (`EISDIR`), a missing path `NotFound`.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = op_path(path.as_ref())?;
    unit(Op::UnlinkAt {
        dir: None,
        path,
        remove_dir: false,
    })
    .await
}

/// Remove an empty directory (as [`std::fs::remove_dir`]; `unlinkat(2)` with
/// `AT_REMOVEDIR`). A non-empty one is `DirectoryNotEmpty`, a file `NotADirectory`.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = op_path(path.as_ref())?;
    unit(Op::UnlinkAt {
        dir: None,
        path,
        remove_dir: true,
    })
    .await
}

/// Create a directory with mode `0o777` minus the umask (as [`std::fs::create_dir`];
/// `mkdirat(2)`). An existing path is `AlreadyExists`, a missing parent `NotFound`; see
/// [`create_dir_all`](super::create_dir_all) and [`DirBuilder`](super::DirBuilder).
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    mkdir(path.as_ref(), 0o777).await
}

/// `mkdirat(2)` of `path` with `mode`.
pub(super) async fn mkdir(path: &Path, mode: u32) -> io::Result<()> {
    let path = op_path(path)?;
    unit(Op::MkdirAt {
        dir: None,
        path,
        mode,
    })
    .await
}

/// Make `link` a new name of the file `original` (as [`std::fs::hard_link`];
/// `linkat(2)`, not following a symlink `original`). An existing `link` is
/// `AlreadyExists`.
pub async fn hard_link(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (old, new) = (op_path(original.as_ref())?, op_path(link.as_ref())?);
    unit(Op::LinkAt {
        old_dir: None,
        old,
        new_dir: None,
        new,
        flags: 0,
    })
    .await
}

/// Make `link` a symbolic link to `original` (as [`std::os::unix::fs::symlink`];
/// `symlinkat(2)`). `original` is stored as given, not checked. An existing `link` is
/// `AlreadyExists`.
pub async fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (target, link) = (op_path(original.as_ref())?, op_path(link.as_ref())?);
    unit(Op::SymlinkAt {
        target,
        dir: None,
        link,
    })
    .await
}
