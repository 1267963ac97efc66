//! `xev::time` at the edges: `Duration::MAX` and the furthest representable `Instant`
//! through every time API (none panics, none fires), and sleeps, intervals and timeouts
//! first polled on one runtime and then awaited on another.

use std::future::{pending, poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_core::Stream;
use xev::rt::Runtime;
use xev::time::{interval, interval_at, sleep, sleep_until, timeout, timeout_at, Sleep};

/// The furthest `Instant` after now that the platform can represent (adding even one
/// nanosecond to it overflows).
fn furthest_instant() -> Instant {
    let now = Instant::now();
    let (mut lo, mut hi) = (0u128, Duration::MAX.as_nanos());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let d = Duration::new((mid / 1_000_000_000) as u64, (mid % 1_000_000_000) as u32);
        if now.checked_add(d).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let d = Duration::new((lo / 1_000_000_000) as u64, (lo % 1_000_000_000) as u32);
    now + d
}

/// How long each "never fires" check waits.
const WATCH: Duration = Duration::from_millis(30);

/// `fut` is still pending after [`WATCH`].
async fn never_fires<F: Future>(fut: F, what: &str) {
    assert!(
        timeout(WATCH, fut).await.is_err(),
        "{what} completed, but its deadline is centuries away"
    );
}

#[xev::test(backend = "all")]
async fn sleep_and_sleep_until_saturate() {
    let far = furthest_instant();
    never_fires(sleep(Duration::MAX), "sleep(Duration::MAX)").await;
    never_fires(sleep_until(far), "sleep_until(furthest instant)").await;
    let s = sleep(Duration::MAX);
    assert!(!s.is_elapsed());
    assert!(s.deadline() > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
}

#[xev::test(backend = "all")]
async fn sleep_reset_to_the_far_future_saturates() {
    let mut s = pin!(sleep(Duration::from_millis(1)));
    // Registered first, then moved past the end of time.
    assert!(poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx).is_pending())).await);
    s.as_mut().reset(furthest_instant());
    never_fires(s.as_mut(), "a sleep reset to the furthest instant").await;
    // And back: it fires again.
    s.as_mut().reset(Instant::now());
    timeout(Duration::from_secs(5), s)
        .await
        .expect("reset to now");
}

#[xev::test(backend = "all")]
async fn timeout_and_timeout_at_saturate() {
    let far = furthest_instant();
    assert_eq!(timeout(Duration::MAX, async { 7 }).await, Ok(7));
    assert_eq!(timeout_at(far, async { 8 }).await, Ok(8));
    never_fires(timeout(Duration::MAX, pending::<()>()), "timeout(MAX)").await;
    never_fires(timeout_at(far, pending::<()>()), "timeout_at(furthest)").await;
}

#[xev::test(backend = "all")]
async fn interval_of_duration_max_ticks_once_then_never() {
    let mut every = interval(Duration::MAX);
    let first = timeout(Duration::from_secs(5), every.tick())
        .await
        .expect("the first tick is at once");
    assert!(first <= Instant::now());
    never_fires(every.tick(), "the second tick of interval(MAX)").await;
    // Reset restarts the schedule one (saturated) period from now.
    every.reset();
    never_fires(every.tick(), "a tick after reset of interval(MAX)").await;
    // As a stream, too.
    never_fires(
        poll_fn(|cx| Pin::new(&mut every).poll_next(cx)),
        "the stream of interval(MAX)",
    )
    .await;
    assert_eq!(every.period(), Duration::MAX);
}

#[xev::test(backend = "all")]
async fn interval_at_the_far_future_never_ticks() {
    let far = furthest_instant();
    for period in [Duration::from_millis(1), Duration::MAX] {
        let mut every = interval_at(far, period);
        never_fires(every.tick(), "interval_at(furthest instant)").await;
        every.reset();
        if period == Duration::MAX {
            never_fires(every.tick(), "interval_at(furthest, MAX) after reset").await;
        }
    }
    // A start far away but representable, with a period that overflows after it.
    let mut every = interval_at(Instant::now(), Duration::MAX - Duration::from_secs(1));
    every.tick().await;
    never_fires(every.tick(), "the second tick of a near-MAX period").await;
}

/// Poll `fut` exactly once on the current runtime and check that it is pending.
async fn poll_once_pending<F: Future + ?Sized>(fut: Pin<&mut F>) {
    let mut fut = Some(fut);
    poll_fn(|cx| {
        let pending = fut.take().unwrap().poll(cx).is_pending();
        assert!(pending, "expected the first poll to be pending");
        Poll::Ready(())
    })
    .await
}

fn runtime() -> Runtime {
    Runtime::new().expect("runtime")
}

/// A sleep registered on `first` and then awaited on a second runtime fires there;
/// `drop_first` drops the first runtime before the second awaits.
fn sleep_moves_between_runtimes(drop_first: bool) {
    let first = runtime();
    let mut s: Pin<Box<Sleep>> = Box::pin(sleep(Duration::from_millis(100)));
    first.block_on(poll_once_pending(s.as_mut()));
    if drop_first {
        drop(first);
    } else {
        // The first runtime keeps turning meanwhile (the sleep must not fire there).
        first.block_on(sleep(Duration::from_millis(1)));
    }
    let second = runtime();
    let r = second.block_on(timeout(Duration::from_secs(5), s.as_mut()));
    assert!(
        r.is_ok(),
        "a sleep first polled on another runtime never fired (drop_first: {drop_first})"
    );
    // The sleep is done; dropping it, then running a runtime that knew it, is fine.
    drop(s);
    second.block_on(sleep(Duration::from_millis(30)));
}

#[test]
fn a_sleep_moves_to_the_runtime_that_awaits_it_while_the_first_lives() {
    sleep_moves_between_runtimes(false);
}

#[test]
fn a_sleep_moves_to_the_runtime_that_awaits_it_after_the_first_is_dropped() {
    sleep_moves_between_runtimes(true);
}

#[test]
fn a_moved_sleep_dropped_early_leaves_no_stale_entry_in_either_runtime() {
    let first = runtime();
    let second = runtime();
    let mut s: Pin<Box<Sleep>> = Box::pin(sleep(Duration::from_millis(10)));
    first.block_on(poll_once_pending(s.as_mut()));
    second.block_on(poll_once_pending(s.as_mut()));
    drop(s);
    // Both runtimes run past the dropped sleep's deadline: no entry may be left that
    // points at its freed memory.
    first.block_on(sleep(Duration::from_millis(20)));
    second.block_on(sleep(Duration::from_millis(20)));
    // And the sleep still moves back the other way.
    let mut s: Pin<Box<Sleep>> = Box::pin(sleep(Duration::from_millis(10)));
    second.block_on(poll_once_pending(s.as_mut()));
    first
        .block_on(timeout(Duration::from_secs(5), s))
        .expect("moved back to the first runtime");
}

#[test]
fn intervals_and_timeouts_move_between_runtimes() {
    for drop_first in [false, true] {
        let first = runtime();
        let mut every = interval(Duration::from_millis(100));
        let mut t = Box::pin(timeout(Duration::from_millis(100), pending::<()>()));
        first.block_on(async {
            every.tick().await; // at once
                                // The next tick's sleep and the timeout's are now registered here.
            poll_once_pending(pin!(every.tick())).await;
            poll_once_pending(t.as_mut()).await;
        });
        if drop_first {
            drop(first);
        }
        let second = runtime();
        second.block_on(async {
            timeout(Duration::from_secs(5), every.tick())
                .await
                .expect("the interval ticks on the second runtime");
            let r = timeout(Duration::from_secs(5), t.as_mut())
                .await
                .expect("the inner timeout fires on the second runtime");
            assert!(r.is_err(), "the pending future cannot complete");
        });
    }
}
