//! Vectored positional reads and writes of a [`File`]: `preadv(2)` / `pwritev(2)`.

use std::io;

use super::File;
use crate::rt::io::{self as rio, Kind};
use crate::rt::{IoBuf, IoBufMut};

impl File {
    /// Read once at `offset` into several buffers (`preadv(2)`), filling each before the
    /// next: the total byte count, `Ok(0)` at the end of the file, possibly short.
    /// Buffer `i` gets the bytes after the room of the buffers before it (a `Vec`
    /// offers its capacity, as for [`read_at`](Self::read_at), and its length becomes
    /// the larger of its old length and the bytes it got). An empty `Vec`, buffers with
    /// no room at all, or more than 1024 buffers (`IOV_MAX`) is
    /// [`InvalidInput`](io::ErrorKind::InvalidInput). On the epoll backend it runs on
    /// the thread pool.
    ///
    /// ```
    /// use xev::fs::{self, File};
    ///
    /// xev::block_on(async {
    ///     let path = std::env::temp_dir().join(format!("xev-readv-doc-{}", std::process::id()));
    ///     fs::write(&path, "key=value").await?;
    ///     let f = File::open(&path).await?;
    ///     let (n, bufs) = f.read_vectored_at(vec![vec![0u8; 4], vec![0u8; 8]], 0).await;
    ///     assert_eq!(n?, 9);
    ///     assert_eq!((&bufs[0][..], &bufs[1][..5]), (&b"key="[..], &b"value"[..]));
    ///     std::fs::remove_file(&path)
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn read_vectored_at<B: IoBufMut>(
        &self,
        bufs: Vec<B>,
        offset: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        rio::read_vectored(&self.fd, bufs, Kind::At(offset)).await
    }

    /// Write several buffers in order at `offset`, as one write (`pwritev(2)`): the
    /// total byte count, possibly short. An empty `Vec` is `Ok(0)` at once; more than
    /// 1024 buffers (`IOV_MAX`) is [`InvalidInput`](io::ErrorKind::InvalidInput). On
    /// the epoll backend it runs on the thread pool.
    pub async fn write_vectored_at<B: IoBuf>(
        &self,
        bufs: Vec<B>,
        offset: u64,
    ) -> (io::Result<usize>, Vec<B>) {
        rio::write_vectored(&self.fd, bufs, Kind::At(offset), None, false).await
    }
}
