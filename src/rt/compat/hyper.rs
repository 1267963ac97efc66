//! hyper 1.x on xev (feature `hyper`): `hyper::rt::{Read, Write}` for [`Compat`] and its
//! halves, [`HyperExecutor`] and [`HyperTimer`].

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use hyper::rt::{Read, ReadBufCursor, Write};

use super::stream::{Reader, Writer};
use super::{Compat, CompatIo, CompatReadHalf, CompatWriteHalf};
use crate::rt::time::saturating_add;

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

/// A [`hyper::rt::Timer`] on xev's timers, for hyper's timeouts
/// (`header_read_timeout`, keep-alive, HTTP/2 pings, ...).
///
/// hyper wants sleeps that are `Send + Sync`, and xev's [`Sleep`](crate::time::Sleep) is
/// neither; the timer's sleeps are [`HyperSleep`]s, which hold only a deadline and an
/// `Arc` of atomics, and on their first poll start a small xev task that waits on an xev
/// sleep. So the first poll of each sleep must happen inside an xev runtime (where hyper
/// polls them: in the connection's task); it panics elsewhere, with a message that says
/// so.
#[derive(Clone, Copy, Debug, Default)]
pub struct HyperTimer;

impl hyper::rt::Timer for HyperTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(saturating_add(Instant::now(), duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep::until(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(s) => s.get_mut().reset(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// What a [`HyperSleep`] shares with the xev task that times it.
#[derive(Default, Debug)]
struct Shared {
    fired: AtomicBool,
    /// The sleep was dropped or reset: the task ends.
    abandoned: AtomicBool,
    /// The waker of the future awaiting the sleep.
    waiter: AtomicWaker,
    /// The waker of the timing task.
    timer: AtomicWaker,
}

/// The sleep of [`HyperTimer`]: `Send + Sync` (plain data and atomics), timed by an xev
/// task started on its first poll, which must be inside an xev runtime. Dropping or
/// resetting it ends that task.
#[derive(Debug)]
pub struct HyperSleep {
    deadline: Instant,
    shared: Option<Arc<Shared>>,
}

impl HyperSleep {
    /// A sleep until `deadline` (nothing starts before the first poll).
    pub fn until(deadline: Instant) -> HyperSleep {
        HyperSleep {
            deadline,
            shared: None,
        }
    }

    /// When it fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Move the deadline; the next poll starts timing again.
    pub fn reset(&mut self, deadline: Instant) {
        self.abandon();
        self.deadline = deadline;
    }

    fn abandon(&mut self) {
        if let Some(s) = self.shared.take() {
            s.abandoned.store(true, Ordering::Release);
            s.timer.wake();
        }
    }

    fn register(&mut self) -> Arc<Shared> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let deadline = self.deadline;
        let timing = async move {
            let mut sleep = std::pin::pin!(crate::time::sleep_until(deadline));
            std::future::poll_fn(|cx| {
                s.timer.register(cx.waker());
                if s.abandoned.load(Ordering::Acquire) {
                    return Poll::Ready(());
                }
                ready!(sleep.as_mut().poll(cx));
                s.fired.store(true, Ordering::Release);
                s.waiter.wake();
                Poll::Ready(())
            })
            .await
        };
        if crate::rt::executor::with_current(|_| ()).is_none() {
            panic!(
                "xev::compat::HyperSleep first polled outside an xev runtime: hyper's timers \
                 (HyperTimer) run on xev's, so poll the connection inside xev::block_on or an \
                 xev task"
            );
        }
        drop(crate::spawn(timing));
        shared
    }
}

impl Future for HyperSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let shared = match &this.shared {
            Some(s) => s.clone(),
            None => {
                if Instant::now() >= this.deadline {
                    return Poll::Ready(());
                }
                let s = this.register();
                this.shared = Some(s.clone());
                s
            }
        };
        shared.waiter.register(cx.waker());
        if shared.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl hyper::rt::Sleep for HyperSleep {}

impl Drop for HyperSleep {
    fn drop(&mut self) {
        self.abandon();
    }
}
