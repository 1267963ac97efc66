//! `futures_io::{AsyncRead, AsyncWrite, AsyncBufRead}` for [`Compat`] and its halves, and
//! `AsyncSeek` for a wrapped file (feature `futures-io`).

#[cfg(unix)]
use std::io::SeekFrom;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(unix)]
use futures_io::AsyncSeek;
use futures_io::{AsyncBufRead, AsyncRead, AsyncWrite};

use super::stream::{Reader, Writer};
use super::{Compat, CompatIo, CompatReadHalf, CompatWriteHalf};

fn reader<S>(c: &mut Compat<S>) -> &mut Reader {
    c.reading()
}

fn writer<S>(c: &mut Compat<S>) -> &mut Writer {
    c.writing()
}

macro_rules! read_impls {
    ($ty:ident, $reader:expr) => {
        impl<S: CompatIo> AsyncRead for $ty<S> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                $reader(self.get_mut()).poll_read(cx, buf)
            }
        }

        impl<S: CompatIo> AsyncBufRead for $ty<S> {
            fn poll_fill_buf(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<&[u8]>> {
                $reader(self.get_mut()).poll_fill_buf(cx)
            }

            fn consume(self: Pin<&mut Self>, amt: usize) {
                $reader(self.get_mut()).consume(amt)
            }
        }
    };
}

macro_rules! write_impls {
    ($ty:ident, $writer:expr) => {
        impl<S: CompatIo> AsyncWrite for $ty<S> {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                $writer(self.get_mut()).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                $writer(self.get_mut()).poll_write_vectored(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                $writer(self.get_mut()).poll_flush(cx)
            }

            fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                $writer(self.get_mut()).poll_close(cx)
            }
        }
    };
}

read_impls!(Compat, reader);
write_impls!(Compat, writer);
read_impls!(CompatReadHalf, CompatReadHalf::reader);
write_impls!(CompatWriteHalf, CompatWriteHalf::writer);

/// Seeking a wrapped [`File`](crate::fs::File): accepted writes are flushed first (to
/// the positions they were written at), then the read and the write position both move to
/// the target, and the read-ahead is discarded (a read in flight is cancelled).
/// `SeekFrom::End` asks the kernel for the file's size (`statx`); `SeekFrom::Current`
/// counts from the position of the side used last: the next byte a read returns after a
/// read (or before anything), the end of what was written after a write, flush or close.
/// A target below 0 or above `i64::MAX` is `InvalidInput`, and nothing moves.
#[cfg(unix)]
impl AsyncSeek for Compat<crate::fs::File> {
    fn poll_seek(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        self.get_mut().poll_seek(cx, pos)
    }
}
