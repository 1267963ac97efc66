//! Re-entrancy of the runtime's own state: a waker that drops a `Sleep` while the runtime
//! is waking the sleeps that are due, and runtime APIs called from inside `with_loop`
//! (which holds the loop borrowed).

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use xev::rt::{Builder, Runtime};
use xev::time::{sleep, timeout, Sleep};

thread_local! {
    /// The sleep that [`DropVictim`]'s wake drops.
    static VICTIM: RefCell<Option<Pin<Box<Sleep>>>> = const { RefCell::new(None) };
}

/// A waker whose wake drops [`VICTIM`] (on the thread that wakes it: the runtime's).
struct DropVictim;

impl Wake for DropVictim {
    fn wake(self: Arc<Self>) {
        let victim = VICTIM.with(|v| v.borrow_mut().take());
        drop(victim);
    }
}

/// Poll `fut` once with the task's own waker; it must be pending.
async fn register<F: Future + ?Sized>(fut: Pin<&mut F>) {
    let mut fut = Some(fut);
    poll_fn(|cx| {
        assert!(fut.take().unwrap().poll(cx).is_pending());
        Poll::Ready(())
    })
    .await
}

/// A sleep of `trigger` polled with [`DropVictim`]'s waker, and a victim sleep of
/// `victim` registered with the task's waker; when the trigger fires, its wake drops the
/// victim from inside the runtime's timer processing.
async fn waker_drops_a_sleep(trigger: Duration, victim: Duration) {
    let mut v = Box::pin(sleep(victim));
    register(v.as_mut()).await;
    VICTIM.with(|slot| *slot.borrow_mut() = Some(v));
    let mut t = pin!(sleep(trigger));
    let waker = Waker::from(Arc::new(DropVictim));
    assert!(t
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    // The trigger fires during this sleep (it never wakes this task itself).
    sleep(trigger + Duration::from_millis(20)).await;
    assert!(
        VICTIM.with(|slot| slot.borrow().is_none()),
        "the trigger's wake did not run"
    );
    assert!(t.is_elapsed());
    // The runtime's timers still work.
    timeout(Duration::from_secs(5), sleep(Duration::from_millis(2)))
        .await
        .expect("a later sleep fires");
}

#[xev::test(backend = "all")]
async fn a_waker_may_drop_a_pending_sleep_while_sleeps_fire() {
    waker_drops_a_sleep(Duration::from_millis(2), Duration::from_secs(60)).await;
}

#[xev::test(backend = "all")]
async fn a_waker_may_drop_a_sleep_that_is_due_in_the_same_round() {
    // Both are due when the runtime next looks at its timers; the trigger comes first
    // and its wake drops the victim, which must then not be woken.
    waker_drops_a_sleep(Duration::from_millis(2), Duration::from_millis(3)).await;
}

#[xev::test(backend = "all")]
async fn spawn_blocking_inside_with_loop() {
    let h = xev::rt::with_loop(|_lp| xev::spawn_blocking(|| 6 * 7));
    assert_eq!(h.await.unwrap(), 42);
}

#[test]
fn runtime_backend_inside_with_loop() {
    for backend in xev::Backend::available() {
        let rt: Runtime = Builder::new().backend(backend).build().unwrap();
        rt.block_on(async {
            xev::rt::with_loop(|lp| assert_eq!(rt.backend(), lp.backend()));
        });
        assert_eq!(rt.backend(), backend);
    }
}

/// A pinned task future is dropped where it was polled, also when the task is aborted or
/// the runtime shuts down (a `Sleep` inside it is registered by address: moving the
/// future out before dropping it left the sleep queue pointing at the old place).
#[xev::test(backend = "all")]
async fn an_aborted_or_shut_down_task_is_dropped_in_place() {
    use std::cell::Cell;
    use std::marker::PhantomPinned;
    use std::rc::Rc;

    struct AddressCheck {
        polled_at: Rc<Cell<usize>>,
        dropped_at: Rc<Cell<usize>>,
        _pin: PhantomPinned,
    }
    impl std::future::Future for AddressCheck {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.polled_at.set(&*self as *const Self as usize);
            Poll::Pending
        }
    }
    impl Drop for AddressCheck {
        fn drop(&mut self) {
            self.dropped_at.set(self as *const Self as usize);
        }
    }
    let check = || {
        let (p, d) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(1)));
        let fut = AddressCheck {
            polled_at: p.clone(),
            dropped_at: d.clone(),
            _pin: PhantomPinned,
        };
        (fut, p, d)
    };
    // Aborted.
    let (fut, polled, dropped) = check();
    let h = xev::spawn(fut);
    xev::rt::yield_now().await;
    h.abort();
    assert!(h.await.unwrap_err().is_cancelled());
    assert_eq!(
        polled.get(),
        dropped.get(),
        "abort moved the future before dropping it"
    );
    // A sleep inside an aborted task leaves the queue consistent: later sleeps fire.
    let h = xev::spawn(xev::time::sleep(Duration::from_secs(3600)));
    xev::rt::yield_now().await;
    h.abort();
    let _ = h.await;
    xev::time::sleep(Duration::from_millis(2)).await;
    // Shut down with the task pending (a runtime of its own, on a thread of its own).
    std::thread::spawn(move || {
        let (fut, polled, dropped) = check();
        let rt = Runtime::new().unwrap();
        rt.block_on(async move {
            drop(xev::spawn(fut));
            xev::rt::yield_now().await;
        });
        drop(rt);
        assert_ne!(polled.get(), 0, "the task ran");
        assert_eq!(
            polled.get(),
            dropped.get(),
            "shutdown moved the future before dropping it"
        );
    })
    .join()
    .unwrap();
}
