//! [`metadata`], [`symlink_metadata`] and [`try_exists`]: one `statx(2)` loop operation
//! each (native on io_uring; on the loop's thread pool on the epoll backend), returning
//! an [`xev::fs::Metadata`](crate::Metadata).

use std::io;
use std::path::Path;
use std::rc::Rc;

use super::path_ops::op_path;
use crate::metadata::Metadata;
use crate::op::Op;
use crate::result::OpResult;
use crate::rt::io::{mismatch, run, FdOp};
use crate::rt::loop_fd::LoopFd;
use crate::{OpPath, StatxBuf};

/// Every field `Metadata` reports.
const MASK: u32 = crate::sys::STATX_ALL_TIMES;

/// The metadata of `path`, following symbolic links (as [`std::fs::metadata`]). A
/// missing path is `NotFound`.
///
/// ```
/// xev::block_on(async {
///     let m = xev::fs::metadata("Cargo.toml").await?;
///     assert!(m.is_file());
///     assert_eq!(m.len(), std::fs::metadata("Cargo.toml")?.len());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = op_path(path.as_ref())?;
    statx(Op::Statx {
        dir: None,
        path,
        flags: 0,
        mask: MASK,
        buf: StatxBuf::new(),
    })
    .await
}

/// The metadata of `path` itself: a symbolic link is described, not followed (as
/// [`std::fs::symlink_metadata`]).
pub async fn symlink_metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = op_path(path.as_ref())?;
    statx(Op::Statx {
        dir: None,
        path,
        flags: libc::AT_SYMLINK_NOFOLLOW,
        mask: MASK,
        buf: StatxBuf::new(),
    })
    .await
}

/// Whether `path` names an existing file, following symbolic links (as
/// [`std::fs::exists`]): `Ok(false)` if it or a link it goes through is missing, an error
/// if that cannot be told (e.g. permission denied on a parent directory).
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    match metadata(path).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The metadata of the open file `fd` (`statx` with `AT_EMPTY_PATH`).
pub(super) async fn of_fd(fd: &Rc<LoopFd>) -> io::Result<Metadata> {
    statx(FdOp::on(fd, |fd| Op::Statx {
        dir: Some(fd),
        path: OpPath::empty(),
        flags: crate::sys::AT_EMPTY_PATH,
        mask: MASK,
        buf: StatxBuf::new(),
    }))
    .await
}

async fn statx(op: impl Into<FdOp>) -> io::Result<Metadata> {
    match run(op).await.0 {
        OpResult::Statx(r) => r.map(|m| *m).map_err(Into::into),
        other => Err(mismatch(&other)),
    }
}
