//! [`read_dir`]: a directory's entries as a [`Stream`], read in batches on the thread pool.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::fs::{FileType, Metadata};
use std::future::{poll_fn, Future};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::blocking;
use crate::rt::blocking::spawn_blocking;
use crate::rt::JoinHandle;

/// Entries read per pool job.
const BATCH: usize = 64;

/// Open the directory `path` (on the blocking pool) to list its entries, as
/// [`std::fs::read_dir`]: a missing directory is `NotFound`, a path that is not a
/// directory is `NotADirectory` (`ENOTDIR`). `.` and `..` are never listed; the order
/// is the filesystem's.
///
/// The entries come from a [`ReadDir`], a [`Stream`] of `io::Result<DirEntry>` (or
/// [`ReadDir::next_entry`]), read 64 at a time on the pool, each with its file type.
///
/// ```
/// xev::block_on(async {
///     let dir = std::env::temp_dir().join(format!("xev-read-dir-doc-{}", std::process::id()));
///     std::fs::create_dir(&dir)?;
///     xev::fs::write(dir.join("a.txt"), "a").await?;
///     let mut entries = xev::fs::read_dir(&dir).await?;
///     while let Some(e) = entries.next_entry().await? {
///         assert_eq!(e.file_name(), "a.txt");
///         assert!(e.file_type()?.is_file());
///         assert_eq!(e.metadata().await?.len(), 1);
///     }
///     std::fs::remove_dir_all(&dir)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// When awaited outside a runtime.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let path = path.as_ref().to_path_buf();
    let dir = blocking(move || std::fs::read_dir(path)).await?;
    Ok(ReadDir {
        state: State::Idle(Some(dir)),
        ready: VecDeque::new(),
    })
}

/// A batch of entries, and the directory handed back for the next one (`None` once it
/// is read to its end).
type Batch = (Vec<io::Result<DirEntry>>, Option<std::fs::ReadDir>);

// Windows' `std::fs::ReadDir` holds a whole WIN32_FIND_DATAW (~600 bytes): one per
// listing, so not worth a box.
#[cfg_attr(windows, allow(clippy::large_enum_variant))]
enum State {
    /// Not reading (`None`: the end was reached).
    Idle(Option<std::fs::ReadDir>),
    /// A pool job is reading the next batch.
    Reading(JoinHandle<Batch>),
}

/// The entries of a directory; see [`read_dir`].
///
/// Dropping it while a batch is being read lets that pool job finish (it then closes
/// the directory).
pub struct ReadDir {
    state: State,
    ready: VecDeque<io::Result<DirEntry>>,
}

impl ReadDir {
    /// The next entry, `Ok(None)` after the last. An error reading one entry is returned
    /// in its place; the listing goes on after it.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        poll_fn(|cx| self.poll_entry(cx)).await.transpose()
    }

    fn poll_entry(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<DirEntry>>> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Poll::Ready(Some(e));
            }
            match &mut self.state {
                State::Idle(None) => return Poll::Ready(None),
                State::Idle(dir) => {
                    let dir = dir.take().expect("checked above");
                    self.state = State::Reading(spawn_blocking(move || next_batch(dir)));
                }
                State::Reading(job) => {
                    let outcome = match Pin::new(job).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(o) => o,
                    };
                    match outcome {
                        Ok((batch, dir)) => {
                            self.ready.extend(batch);
                            self.state = State::Idle(dir);
                        }
                        Err(e) => {
                            self.state = State::Idle(None);
                            return Poll::Ready(Some(Err(io::Error::from(e))));
                        }
                    }
                }
            }
        }
    }
}

impl Stream for ReadDir {
    type Item = io::Result<DirEntry>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_entry(cx)
    }
}

impl fmt::Debug for ReadDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir")
            .field("buffered", &self.ready.len())
            .field("reading", &matches!(self.state, State::Reading(_)))
            .finish()
    }
}

/// Up to [`BATCH`] entries of `dir`, with their file types (free when the filesystem
/// reports them in the listing, an `lstat` here otherwise).
fn next_batch(mut dir: std::fs::ReadDir) -> Batch {
    let mut batch = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        match dir.next() {
            None => return (batch, None),
            Some(e) => batch.push(e.and_then(|e| {
                Ok(DirEntry {
                    file_type: e.file_type()?,
                    path: e.path(),
                    name: e.file_name(),
                })
            })),
        }
    }
    (batch, Some(dir))
}

/// One entry of a [`ReadDir`].
#[derive(Debug, Clone)]
pub struct DirEntry {
    path: PathBuf,
    name: OsString,
    file_type: FileType,
}

impl DirEntry {
    /// The entry's name, without the directory.
    pub fn file_name(&self) -> OsString {
        self.name.clone()
    }

    /// The directory's path (as given to [`read_dir`]) joined with the entry's name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The entry's file type, read with the listing (a symlink is reported as a
    /// symlink, not followed). Always `Ok`: the type was read with the batch (an error
    /// there is the entry's error from the stream).
    pub fn file_type(&self) -> io::Result<FileType> {
        Ok(self.file_type)
    }

    /// The entry's metadata, not following a symlink (`lstat(2)` on the blocking pool,
    /// as `std::fs::DirEntry::metadata`). An entry removed since the listing is
    /// `NotFound`.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        let path = self.path.clone();
        blocking(move || std::fs::symlink_metadata(path)).await
    }
}
