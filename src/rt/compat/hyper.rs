//! hyper 1.x on xev (feature `hyper`): `hyper::rt::{Read, Write}` for [`Compat`] and its
//! halves, and [`HyperExecutor`]; [`HyperTimer`](super::HyperTimer) is in `hyper_timer.rs`.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

use super::stream::{Reader, Writer};
use super::{Compat, CompatIo, CompatReadHalf, CompatWriteHalf};

fn reader<S>(c: &mut Compat<S>) -> &mut Reader {
    c.reading()
}

fn writer<S>(c: &mut Compat<S>) -> &mut Writer {
    c.writing()
}

macro_rules! read_impl {
    ($ty:ident, $reader:expr) => {
        impl<S: CompatIo> Read for $ty<S> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                mut buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                let r = $reader(self.get_mut());
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
                let src = ready!(r.poll_fill_buf(cx))?;
                let n = src.len().min(buf.remaining());
                buf.put_slice(&src[..n]);
                r.consume(n);
                Poll::Ready(Ok(()))
            }
        }
    };
}

macro_rules! write_impl {
    ($ty:ident, $writer:expr) => {
        impl<S: CompatIo> Write for $ty<S> {
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

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                $writer(self.get_mut()).poll_flush(cx)
            }

            /// Flush, then shut the writing side of a socket down.
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                $writer(self.get_mut()).poll_close(cx)
            }
        }
    };
}

read_impl!(Compat, reader);
write_impl!(Compat, writer);
read_impl!(CompatReadHalf, CompatReadHalf::reader);
write_impl!(CompatWriteHalf, CompatWriteHalf::writer);

/// A [`hyper::rt::Executor`] that runs hyper's background futures (HTTP/2 connection
/// tasks, ...) as tasks of the current xev runtime with [`xev::spawn`](crate::spawn): they
/// need not be `Send`.
///
/// # Panics
/// `execute` panics outside an xev runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperExecutor;

impl<F> hyper::rt::Executor<F> for HyperExecutor
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        // Detached: the task runs to its end on its own.
        drop(crate::spawn(fut));
    }
}
