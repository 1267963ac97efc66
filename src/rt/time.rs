//! Time: [`sleep`], [`sleep_until`], [`timeout`] and [`interval`].
//!
//! Sleeps are user-space timers of the runtime (a heap ordered by deadline, as for the
//! loop's own timers); they never touch the kernel and never complete early.
//!
//! Every deadline computation saturates: a duration or instant too large to represent
//! (`Duration::MAX`, `Instant::now() + Duration::MAX`) means "later than anything this
//! program will see" (at least a century from now), never a panic. Such a sleep,
//! timeout or interval tick simply never fires.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use xev::time;
//!
//! xev::block_on(async {
//!     let start = Instant::now();
//!     time::sleep(Duration::from_millis(5)).await;
//!     assert!(start.elapsed() >= Duration::from_millis(5));
//!
//!     let never = std::future::pending::<()>();
//!     assert!(time::timeout(Duration::from_millis(1), never).await.is_err());
//!
//!     let mut every = time::interval(Duration::from_millis(2));
//!     every.tick().await; // at once
//!     every.tick().await; // 2 ms later
//! });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use super::sleep::Sleep;

/// A future that completes after `duration` (measured from this call; a duration too
/// large to add to now, such as `Duration::MAX`, never completes).
///
/// # Panics
/// When awaited outside a runtime.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(deadline_after(duration))
}

/// A future that completes at `deadline` (at once if it has passed).
///
/// # Panics
/// When awaited outside a runtime.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep::until(deadline)
}

/// What an unrepresentable deadline saturates to: this far after its start, or, if even
/// that overflows, the start itself (which is then already that far in the future).
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `t + d`, saturating instead of overflowing: never earlier than `t`, and when `t + d`
/// cannot be represented, at least a century after `t` (or `t` itself if that cannot be
/// represented either).
pub(crate) fn saturating_add(t: Instant, d: Duration) -> Instant {
    t.checked_add(d).or_else(|| t.checked_add(FAR)).unwrap_or(t)
}

/// `now + d`, saturating (see [`saturating_add`]).
fn deadline_after(d: Duration) -> Instant {
    saturating_add(Instant::now(), d)
}

/// The error of [`timeout`] when the deadline passes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

impl From<Elapsed> for std::io::Error {
    fn from(e: Elapsed) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::TimedOut, e)
    }
}

/// Run `fut`, giving up after `duration`: `Err(Elapsed)` then, and `fut` is dropped
/// (which cancels the operation it was waiting on).
///
/// `timeout` cannot see inside `fut`, so it always uses a runtime timer and drops `fut`.
/// For one read or accept, [`TcpStream::read_timeout`](crate::net::TcpStream::read_timeout)
/// and [`TcpListener::accept_timeout`](crate::net::TcpListener::accept_timeout) hand the
/// buffer back with a `TimedOut` error. A limit linked to the operation in the kernel
/// (io_uring LINK_TIMEOUT, [`Loop::add_with_timeout`](crate::Loop::add_with_timeout))
/// measured dearer than this timer when the limit does not fire (`benches/link_timeout.rs`).
pub fn timeout<F: Future>(duration: Duration, fut: F) -> Timeout<F> {
    timeout_at(deadline_after(duration), fut)
}

/// [`timeout`] with an absolute deadline.
pub fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Timeout<F> {
    Timeout {
        fut,
        sleep: sleep_until(deadline),
    }
}

/// The future returned by [`timeout`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
#[derive(Debug)]
pub struct Timeout<F> {
    fut: F,
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: structural pinning of both fields; neither is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above.
        if let Poll::Ready(v) = unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        // SAFETY: as above.
        match unsafe { Pin::new_unchecked(&mut this.sleep) }.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Ticks every `period`, the first at once; see [`Interval`]. A period too large to
/// add to an instant (such as `Duration::MAX`) ticks once and then never again.
///
/// # Panics
/// If `period` is zero.
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// Ticks every `period`, the first at `start` (an instant far in the future simply
/// never ticks).
///
/// # Panics
/// If `period` is zero.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(
        !period.is_zero(),
        "xev::time::interval: the period must be non-zero"
    );
    Interval {
        period,
        sleep: Box::pin(sleep_until(start)),
    }
}

/// A periodic timer: [`tick`](Self::tick) completes at `start`, `start + period`,
/// `start + 2 * period`, ... It is also a [`Stream`](futures_core::Stream) of the tick
/// instants.
///
/// When ticks are missed (the task was busy longer than a period), the next tick
/// completes at once and the schedule then continues from *now* rather than bursting to
/// catch up.
#[derive(Debug)]
pub struct Interval {
    period: Duration,
    sleep: Pin<Box<Sleep>>,
}

impl Interval {
    /// Wait for the next tick; returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Poll for the next tick (for hand-written futures).
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let mut next = saturating_add(scheduled, self.period);
        if next <= now {
            next = saturating_add(now, self.period);
        }
        self.sleep.as_mut().reset(next);
        Poll::Ready(scheduled)
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Restart the schedule: the next tick is one period from now (saturating, as
    /// everywhere in [`xev::time`](crate::time)).
    pub fn reset(&mut self) {
        self.sleep.as_mut().reset(deadline_after(self.period));
    }
}

impl futures_core::Stream for Interval {
    type Item = Instant;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Instant>> {
        self.get_mut().poll_tick(cx).map(Some)
    }
}
