//! [`copy`]: a whole file copied by the kernel (`copy_file_range(2)`) on the thread pool.

use crate::sys::fd::AsRawFd;
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::blocking;

/// Bytes copied between two looks at the stop flag (set when the future is dropped).
const CHUNK: u64 = 64 << 20;

/// The buffer of the read/write fallback.
const FALLBACK_BUF: usize = 1 << 20;

/// Copy the contents and the permission bits of the file `from` to `to` (created, or
/// truncated if it exists), as [`std::fs::copy`], and return the number of bytes copied.
///
/// The data is copied inside the kernel with `copy_file_range(2)` (no trip through user
/// space; on filesystems that support it, such as Btrfs or XFS, a clone of the extents),
/// in one job on the runtime's blocking pool (opening included: one round trip to the
/// pool per copy), 64 MiB per call. Where `copy_file_range` cannot
/// be used for this pair of files (`EXDEV` across filesystems on kernels before 5.3 and
/// again since 5.19 for some filesystems, `EINVAL`, `ENOSYS`, `EOPNOTSUPP`, `EPERM`
/// under some seccomp filters), it falls back to `read`/`write` through a 1 MiB buffer,
/// still on the pool.
///
/// Errors as `std`: a missing `from` is `NotFound`; `from` that is not a regular file
/// (a directory, a FIFO) is `InvalidInput`; `to` that is a directory is the
/// `open(2)` error (`EISDIR`). Copying a file onto itself (the same path, or another
/// link to it) truncates it first, as `std::fs::copy` does on Linux: the file ends up
/// empty and `Ok(0)` is returned.
///
/// Dropping the future stops the copy after the call in flight (at most 64 MiB more);
/// `to` is then left partly written.
///
/// ```
/// xev::block_on(async {
///     let dir = std::env::temp_dir();
///     let (a, b) = (dir.join(format!("xev-copy-a-{}", std::process::id())),
///                   dir.join(format!("xev-copy-b-{}", std::process::id())));
///     xev::fs::write(&a, "copied bytes").await?;
///     assert_eq!(xev::fs::copy(&a, &b).await?, 12);
///     assert_eq!(xev::fs::read_to_string(&b).await?, "copied bytes");
///     std::fs::remove_file(&a)?;
///     std::fs::remove_file(&b)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// When awaited outside a runtime.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let (from, to) = (from.as_ref().to_path_buf(), to.as_ref().to_path_buf());
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = stop.0.clone();
    blocking(move || copy_all(&from, &to, &flag)).await
}

/// Tells the pool job to stop when the future is dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The whole copy, on a pool thread: open both files, then copy chunk after chunk until
/// the end of the source, or until `stop` is set (the result is then unseen).
fn copy_all(from: &Path, to: &Path, stop: &AtomicBool) -> io::Result<u64> {
    let (src, dst) = open_pair(from, to)?;
    let mut done = 0u64;
    let mut kernel = true;
    while !stop.load(Ordering::Relaxed) {
        // Not bounded by the source's size as `fstat` gave it (the file may have grown):
        // the copy ends at end of file.
        let (n, k) = copy_chunk(&src, &dst, done, CHUNK, kernel)?;
        kernel = k;
        if n == 0 {
            return Ok(done);
        }
        done += n;
    }
    Err(io::Error::new(io::ErrorKind::Interrupted, "copy abandoned"))
}

/// Open `from` for reading and `to` for writing (created with `from`'s permissions, or
/// truncated and given them), as `std::fs::copy`.
fn open_pair(from: &Path, to: &Path) -> io::Result<(File, File)> {
    let src = File::open(from)?;
    let meta = src.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the source path is neither a regular file nor a symlink to a regular file",
        ));
    }
    let perm = meta.permissions();
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(perm.mode())
        .open(to)?;
    if dst.metadata()?.is_file() {
        // An existing file keeps its mode through open(2): set it (as std does).
        dst.set_permissions(Permissions::from_mode(perm.mode()))?;
    }
    Ok((src, dst))
}

/// Copy up to `want` bytes at offset `at` (the same in both files); the byte count (0 at
/// end of file) and whether the kernel copy is still usable. `kernel` false: the
/// read/write fallback.
fn copy_chunk(src: &File, dst: &File, at: u64, want: u64, kernel: bool) -> io::Result<(u64, bool)> {
    if kernel {
        match copy_range(src, dst, at, want) {
            Err(e) if at == 0 && falls_back(&e) => {}
            r => return r.map(|n| (n, true)),
        }
    }
    read_write(src, dst, at, want).map(|n| (n, false))
}

/// Whether `copy_file_range` failing with `e` before copying anything means "not for
/// these files" rather than a real error.
fn falls_back(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM)
    )
}

/// `copy_file_range` until `want` bytes are copied or the source ends.
fn copy_range(src: &File, dst: &File, at: u64, want: u64) -> io::Result<u64> {
    let mut done = 0u64;
    while done < want {
        let mut off_in = at + done;
        let mut off_out = off_in;
        let len = (want - done).min(1 << 30) as usize;
        let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
        match crate::sys::copy_file_range(s, &mut off_in, d, &mut off_out, len) {
            Ok(0) => break,
            Ok(n) => done += n as u64,
            Err(e) => {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                if done > 0 {
                    // Report what was copied; the next chunk meets the error again.
                    break;
                }
                return Err(e);
            }
        }
    }
    Ok(done)
}

/// `pread`/`pwrite` through a buffer until `want` bytes are copied or the source ends.
fn read_write(src: &File, dst: &File, at: u64, want: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; FALLBACK_BUF.min(want as usize).max(1)];
    let mut done = 0u64;
    while done < want {
        let room = buf.len().min((want - done) as usize);
        let n = match src.read_at(&mut buf[..room], at + done) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all_at(&buf[..n], at + done)?;
        done += n as u64;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fallback copies exactly what the kernel path copies, chunk by chunk.
    #[test]
    fn read_write_fallback_copies_in_chunks() {
        let dir = std::env::temp_dir();
        let a = dir.join(format!("xev-copy-fallback-a-{}", std::process::id()));
        let b = dir.join(format!("xev-copy-fallback-b-{}", std::process::id()));
        let data: Vec<u8> = (0..3 * FALLBACK_BUF + 17)
            .map(|i| (i % 249) as u8)
            .collect();
        std::fs::write(&a, &data).unwrap();
        let (src, dst) = open_pair(&a, &b).unwrap();
        let mut at = 0;
        loop {
            let n = read_write(&src, &dst, at, FALLBACK_BUF as u64 + 5).unwrap();
            if n == 0 {
                break;
            }
            at += n;
        }
        assert_eq!(at, data.len() as u64);
        assert_eq!(std::fs::read(&b).unwrap(), data);
        std::fs::remove_file(&a).unwrap();
        std::fs::remove_file(&b).unwrap();
    }

    #[test]
    fn which_errors_fall_back() {
        for e in [
            libc::EXDEV,
            libc::EINVAL,
            libc::ENOSYS,
            libc::EOPNOTSUPP,
            libc::EPERM,
        ] {
            assert!(falls_back(&io::Error::from_raw_os_error(e)));
        }
        for e in [libc::EIO, libc::ENOSPC, libc::EBADF] {
            assert!(!falls_back(&io::Error::from_raw_os_error(e)));
        }
    }
}
