//! `xev::notify::Notify`: cross-thread wake-ups, coalescing, a stored permit, several
//! waiters (FIFO, one permit each, hand-off when a woken waiter is dropped), and no lost
//! wake-up under a stream of notifies.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use xev::notify::Notify;
use xev::time::{sleep, timeout};

#[test]
fn notify_is_clone_send_sync() {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<Notify>();
    fn send<T: Send>(_: &T) {}
    let n = Notify::new();
    send(&n.notified());
    // No runtime is needed to notify.
    n.notify();
    n.notify();
}

#[xev::test(backend = "all")]
async fn a_thread_notifying_after_20ms_resumes_the_task() {
    let n = Notify::new();
    let remote = n.clone();
    let start = Instant::now();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        remote.notify();
    });
    timeout(Duration::from_secs(5), n.notified())
        .await
        .expect("the notify from the thread wakes the task");
    assert!(start.elapsed() >= Duration::from_millis(20));
    t.join().unwrap();
}

#[xev::test(backend = "all")]
async fn a_hundred_thousand_notifies_coalesce_into_one_permit() {
    let n = Notify::new();
    let remote = n.clone();
    let t = thread::spawn(move || {
        for _ in 0..100_000 {
            remote.notify();
        }
    });
    // Sleep (not awaiting the Notify) until the thread is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.is_finished() {
        assert!(Instant::now() < deadline);
        sleep(Duration::from_millis(2)).await;
    }
    t.join().unwrap();
    // One permit: taken at once...
    let mut first = pin!(n.notified());
    let ready = poll_fn(|cx| Poll::Ready(first.as_mut().poll(cx).is_ready())).await;
    assert!(ready, "the stored permit is consumed without waiting");
    // ...and then the task waits again.
    assert!(timeout(Duration::from_millis(50), n.notified())
        .await
        .is_err());
}

#[xev::test(backend = "all")]
async fn a_stored_permit_returns_at_once() {
    let n = Notify::new();
    n.notify();
    n.notify(); // coalesces
    let mut f = pin!(n.notified());
    let ready = poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx).is_ready())).await;
    assert!(ready);
    assert!(timeout(Duration::from_millis(20), n.notified())
        .await
        .is_err());
    // A permit stored while nobody waits is kept for the next waiter.
    n.notify();
    sleep(Duration::from_millis(5)).await;
    timeout(Duration::from_millis(100), n.notified())
        .await
        .expect("the permit was kept");
}

#[xev::test(backend = "all")]
async fn task_to_task_on_one_runtime() {
    let n = Rc::new(Notify::new());
    let n2 = n.clone();
    let waiter = xev::spawn(async move {
        n2.notified().await;
        7
    });
    sleep(Duration::from_millis(5)).await;
    assert!(!waiter.is_finished());
    n.notify();
    assert_eq!(
        timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap(),
        7
    );
}

#[xev::test(backend = "all")]
async fn several_waiters_are_woken_one_per_permit_in_fifo_order() {
    let n = Notify::new();
    let done = Rc::new(RefCell::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..3 {
        let (n, done) = (n.clone(), done.clone());
        tasks.push(xev::spawn(async move {
            n.notified().await;
            done.borrow_mut().push(i);
        }));
        // Let each task register before the next one starts (FIFO order is by first
        // poll).
        sleep(Duration::from_millis(2)).await;
    }
    for k in 1..=3 {
        let remote = n.clone();
        thread::spawn(move || remote.notify()).join().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while done.borrow().len() < k {
            assert!(Instant::now() < deadline, "notify {k} woke no waiter");
            sleep(Duration::from_millis(1)).await;
        }
        // Exactly one waiter per permit.
        sleep(Duration::from_millis(20)).await;
        assert_eq!(done.borrow().len(), k, "one permit woke several waiters");
    }
    assert_eq!(*done.borrow(), [0, 1, 2]);
    for t in tasks {
        t.await.unwrap();
    }
}

#[xev::test(backend = "all")]
async fn a_dropped_woken_waiter_passes_the_permit_on() {
    let n = Rc::new(Notify::new());
    // `a` (in this task) registers first, then a task `b`.
    let mut a = Box::pin(n.notified());
    let pending = poll_fn(|cx| Poll::Ready(a.as_mut().poll(cx).is_pending())).await;
    assert!(pending);
    let n2 = n.clone();
    let b = xev::spawn(async move { n2.notified().await });
    sleep(Duration::from_millis(5)).await;
    assert!(!b.is_finished());
    n.notify(); // picks `a`, the oldest waiter
    drop(a); // ...which never consumes the permit: `b` must be woken instead
    timeout(Duration::from_secs(1), b)
        .await
        .expect("the permit went to the next waiter")
        .unwrap();
    // Nothing left.
    assert!(timeout(Duration::from_millis(20), n.notified())
        .await
        .is_err());
}

#[xev::test(backend = "all")]
async fn a_dropped_unwoken_waiter_is_simply_forgotten() {
    let n = Notify::new();
    {
        let mut a = Box::pin(n.notified());
        let pending = poll_fn(|cx| Poll::Ready(a.as_mut().poll(cx).is_pending())).await;
        assert!(pending);
    }
    let remote = n.clone();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        remote.notify();
    });
    timeout(Duration::from_secs(5), n.notified())
        .await
        .expect("the notify reached the live waiter, not the dropped one");
    t.join().unwrap();
}

#[xev::test(backend = "all")]
async fn no_wake_up_is_lost_under_a_stream_of_notifies() {
    // Four waiting tasks; a thread notifies 20,000 times, then raises `stop` and keeps
    // notifying until every task has seen it. Each task loops on `notified()` and checks
    // that the counter it reads is never older than one it saw before. A lost wake-up
    // would leave a task asleep with a permit stored and hang the test (the timeout
    // catches it).
    let n = Notify::new();
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicUsize::new(0));
    let exited = Arc::new(AtomicUsize::new(0));
    let wakeups = Rc::new(RefCell::new(0usize));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (n, stop, counter, exited, wakeups) = (
            n.clone(),
            stop.clone(),
            counter.clone(),
            exited.clone(),
            wakeups.clone(),
        );
        tasks.push(xev::spawn(async move {
            let mut last = 0;
            loop {
                n.notified().await;
                *wakeups.borrow_mut() += 1;
                let now = counter.load(Ordering::Acquire);
                assert!(now >= last);
                last = now;
                if stop.load(Ordering::Acquire) {
                    exited.fetch_add(1, Ordering::AcqRel);
                    return;
                }
            }
        }));
    }
    let (remote, stop2, counter2, exited2) = (n.clone(), stop.clone(), counter, exited.clone());
    let t = thread::spawn(move || {
        for i in 1..=20_000 {
            counter2.store(i, Ordering::Release);
            remote.notify();
            if i % 1000 == 0 {
                thread::yield_now();
            }
        }
        stop2.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while exited2.load(Ordering::Acquire) < 4 && Instant::now() < deadline {
            remote.notify();
            thread::sleep(Duration::from_micros(200));
        }
    });
    let all = async {
        for t in tasks {
            t.await.unwrap();
        }
    };
    timeout(Duration::from_secs(30), all)
        .await
        .expect("every waiter saw the stop flag");
    t.join().unwrap();
    assert_eq!(exited.load(Ordering::Acquire), 4);
    assert!(*wakeups.borrow() >= 4);
}

#[test]
fn waiters_on_several_runtimes_share_one_notify() {
    // Three threads, each with its own runtime and a task looping on `notified()` (with
    // a timeout, so that waiters also drop out and re-register all the time); the main
    // thread notifies until 3000 permits have been consumed in total.
    let n = Notify::new();
    let consumed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let (n, consumed, stop) = (n.clone(), consumed.clone(), stop.clone());
            thread::spawn(move || {
                xev::block_on(async move {
                    let mut mine = 0usize;
                    while !stop.load(Ordering::Acquire) {
                        if timeout(Duration::from_millis(50), n.notified())
                            .await
                            .is_ok()
                        {
                            mine += 1;
                            consumed.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    mine
                })
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while consumed.load(Ordering::Acquire) < 3000 {
        assert!(
            Instant::now() < deadline,
            "waiters stopped consuming permits"
        );
        n.notify();
        thread::yield_now();
    }
    stop.store(true, Ordering::Release);
    let per_thread: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        per_thread.iter().sum::<usize>(),
        consumed.load(Ordering::Acquire)
    );
}

/// A waker whose drop notifies the `Notify` it waits on (its drop is user code, as any
/// waker's). A `Notified` replaced that waker, or unregistered with it, while holding the
/// waiter list's lock, and the notify in its drop took the same lock: the thread
/// deadlocked on itself. Wakers are dropped after the lock now.
#[test]
fn a_waker_that_notifies_when_dropped_does_not_deadlock_the_notify() {
    use std::task::{Context, Wake, Waker};
    struct NotifyOnDrop(Notify);
    impl Wake for NotifyOnDrop {
        fn wake(self: Arc<Self>) {}
    }
    impl Drop for NotifyOnDrop {
        fn drop(&mut self) {
            self.0.notify();
        }
    }
    let (done, finished) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let n = Notify::new();
        // Replaced by a second poll with another waker.
        {
            let mut fut = pin!(n.notified());
            let w = Waker::from(Arc::new(NotifyOnDrop(n.clone())));
            assert!(fut.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
            drop(w); // the waiter list holds the last reference
            let other = Waker::from(Arc::new(NotifyOnDrop(Notify::new())));
            // The replaced waker's drop stored the permit: this poll takes it.
            assert!(fut
                .as_mut()
                .poll(&mut Context::from_waker(&other))
                .is_ready());
        }
        // Dropped while waiting (unregisters with the waker's last reference).
        {
            let mut fut = Box::pin(n.notified());
            let w = Waker::from(Arc::new(NotifyOnDrop(n.clone())));
            assert!(fut.as_mut().poll(&mut Context::from_waker(&w)).is_pending());
            drop(w);
            drop(fut);
        }
        // The permit that drop stored is there for the next waiter.
        let mut fut = pin!(n.notified());
        assert!(fut
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready());
        done.send(()).unwrap();
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(5)).is_ok(),
        "the thread deadlocked (or panicked) in the Notify"
    );
}
