//! The executor: spawn, JoinHandle, abort, panics, wake-ups from other threads,
//! spawn_blocking, mixing callbacks and futures, runtime lifecycle.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use xev::rt::{Builder, JoinError};
use xev::{CallbackAction, Completion, OpResult, TimerTrigger};

/// A cheap deterministic pseudo-random sequence (xorshift).
fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[xev::test(backend = "all")]
async fn ten_thousand_sleeping_tasks_all_return_their_index() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..10_000usize)
        .map(|i| {
            let ms = rng(&mut seed) % 21;
            xev::spawn(async move {
                let t = Instant::now();
                xev::time::sleep(Duration::from_millis(ms)).await;
                assert!(
                    t.elapsed() >= Duration::from_millis(ms),
                    "a sleep ended early"
                );
                i
            })
        })
        .collect();
    let mut seen = vec![false; handles.len()];
    for (i, h) in handles.into_iter().enumerate() {
        let got = h.await.expect("task result");
        assert_eq!(got, i);
        seen[got] = true;
    }
    assert!(seen.iter().all(|s| *s));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[xev::test(backend = "all")]
async fn join_handle_reports_output_panic_and_finish() {
    let h = xev::spawn(async { String::from("out") });
    assert_eq!(h.await.unwrap(), "out");

    let h = xev::spawn(async {
        xev::rt::yield_now().await;
        panic!("task exploded");
    });
    let err = h.await.unwrap_err();
    assert!(err.is_panic());
    assert!(err.to_string().contains("task exploded"), "{err}");
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"task exploded"));

    // The runtime keeps working after a task panicked.
    let h = xev::spawn(async { 5 });
    xev::time::sleep(Duration::from_millis(1)).await;
    assert!(h.is_finished());
    assert_eq!(h.await.unwrap(), 5);
}

/// A future that panics when dropped after it returned `Ready` (a hand-written future:
/// an async block drops what it captured inside its last `poll`): the panic is the
/// task's error (as tokio reports it), never an unwind out of the runtime, and the
/// runtime goes on. (A future that panics in `poll` and again in a drop during that
/// unwind aborts the process, as any panic while panicking does.)
#[xev::test(backend = "all")]
async fn a_task_whose_future_panics_when_dropped_reports_the_panic() {
    /// Ready with 7 at its `polls`-th poll; panics when dropped.
    struct ReadyThenPanicOnDrop {
        polls: u32,
    }
    impl Future for ReadyThenPanicOnDrop {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            self.polls -= 1;
            if self.polls == 0 {
                return Poll::Ready(7);
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
    impl Drop for ReadyThenPanicOnDrop {
        fn drop(&mut self) {
            panic!("dropped badly");
        }
    }
    // Ready at once, and after waiting once (dropped on a later round).
    for polls in [1, 2] {
        let h = xev::spawn(ReadyThenPanicOnDrop { polls });
        let err = h.await.unwrap_err();
        assert!(
            err.is_panic() && err.to_string().contains("dropped badly"),
            "{err}"
        );
    }
    // The runtime keeps working.
    assert_eq!(xev::spawn(async { 5 }).await.unwrap(), 5);
}

#[xev::test(backend = "all")]
async fn abort_cancels_a_sleeping_task_and_drops_its_future() {
    struct DropFlag(Rc<Cell<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(dropped.clone());
    let h = xev::spawn(async move {
        let _flag = flag;
        xev::time::sleep(Duration::from_secs(3600)).await;
        1
    });
    xev::rt::yield_now().await;
    assert!(!h.is_finished());
    h.abort();
    let err: JoinError = h.await.unwrap_err();
    assert!(err.is_cancelled(), "{err:?}");
    assert!(dropped.get(), "the aborted task's future was dropped");

    // Abort after completion changes nothing.
    let h = xev::spawn(async { 9 });
    xev::rt::yield_now().await;
    xev::rt::yield_now().await;
    h.abort();
    assert_eq!(h.await.unwrap(), 9);
}

#[xev::test(backend = "all")]
async fn a_task_can_abort_itself_through_its_handle() {
    let slot: Rc<Cell<Option<xev::JoinHandle<()>>>> = Rc::new(Cell::new(None));
    let s = slot.clone();
    let reached_end = Rc::new(Cell::new(false));
    let r = reached_end.clone();
    let h = xev::spawn(async move {
        xev::rt::yield_now().await;
        if let Some(me) = s.take() {
            me.abort();
            s.set(Some(me));
        }
        xev::rt::yield_now().await;
        r.set(true);
    });
    let probe = xev::spawn(async {});
    slot.set(Some(h));
    probe.await.unwrap();
    xev::time::sleep(Duration::from_millis(5)).await;
    let h = slot.take().expect("handle is back");
    assert!(h.await.unwrap_err().is_cancelled());
    assert!(!reached_end.get());
}

#[xev::test(backend = "all")]
async fn detached_tasks_keep_running() {
    let done = Rc::new(Cell::new(0));
    for _ in 0..10 {
        let d = done.clone();
        drop(xev::spawn(async move {
            xev::time::sleep(Duration::from_millis(2)).await;
            d.set(d.get() + 1);
        }));
    }
    // Bounded wait, not a fixed one: under valgrind, first polls alone can take longer
    // than the tasks' 2 ms sleeps.
    let start = std::time::Instant::now();
    while done.get() < 10 && start.elapsed() < Duration::from_secs(5) {
        xev::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(done.get(), 10);
}

/// A future that hands its waker to another thread once, then waits to be woken.
struct WokenFromThread {
    sent: bool,
    woken: Arc<Mutex<bool>>,
    delay: Duration,
}

impl Future for WokenFromThread {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if *self.woken.lock().unwrap() {
            return Poll::Ready(());
        }
        if !self.sent {
            self.sent = true;
            let (w, flag, delay): (Waker, _, _) =
                (cx.waker().clone(), self.woken.clone(), self.delay);
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                *flag.lock().unwrap() = true;
                w.wake();
            });
        }
        Poll::Pending
    }
}

#[xev::test(backend = "all")]
async fn a_wake_from_another_thread_resumes_a_task_and_the_main_future() {
    let start = Instant::now();
    let h = xev::spawn(WokenFromThread {
        sent: false,
        woken: Arc::default(),
        delay: Duration::from_millis(20),
    });
    h.await.unwrap();
    // The main future itself, woken from a thread while the loop blocks.
    WokenFromThread {
        sent: false,
        woken: Arc::default(),
        delay: Duration::from_millis(20),
    }
    .await;
    assert!(start.elapsed() >= Duration::from_millis(40));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Counts how often it is polled; done after `target` wakes.
struct CountPolls {
    polls: Rc<Cell<usize>>,
}

impl Future for CountPolls {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        if self.polls.get() == 1 {
            for _ in 0..1000 {
                cx.waker().wake_by_ref();
            }
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

#[xev::test(backend = "all")]
async fn many_wakes_before_a_run_schedule_the_task_once() {
    let polls = Rc::new(Cell::new(0));
    let h = xev::spawn(CountPolls {
        polls: polls.clone(),
    });
    h.await.unwrap();
    assert_eq!(
        polls.get(),
        2,
        "1000 wakes before the next run: one more poll"
    );

    // The same from other threads: 4 threads x 10,000 wakes.
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let stop = Arc::new(Mutex::new(false));
    let s = stop.clone();
    let h = xev::spawn(std::future::poll_fn(move |cx| {
        let n = p.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let w = cx.waker().clone();
                    std::thread::spawn(move || {
                        for _ in 0..10_000 {
                            w.wake_by_ref();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            *s.lock().unwrap() = true;
        }
        if *s.lock().unwrap() && n > 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }));
    h.await.unwrap();
    assert!(*stop.lock().unwrap());
    assert_eq!(
        polls.load(Ordering::SeqCst),
        2,
        "40,000 remote wakes coalesced"
    );
}

#[xev::test(backend = "all")]
async fn spawn_blocking_runs_on_the_pool_and_reports_panics() {
    let main = std::thread::current().id();
    let h = xev::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(10));
        std::thread::current().id() != main
    });
    assert!(h.await.unwrap(), "ran on another thread");

    let h = xev::spawn_blocking(|| -> u32 { panic!("blocking boom") });
    let err = h.await.unwrap_err();
    assert!(
        err.is_panic() && err.to_string().contains("blocking boom"),
        "{err}"
    );

    // Many at once complete, while the loop also runs timers.
    let hs: Vec<_> = (0..32u64)
        .map(|i| xev::spawn_blocking(move || i * 2))
        .collect();
    xev::time::sleep(Duration::from_millis(1)).await;
    let mut sum = 0;
    for h in hs {
        sum += h.await.unwrap();
    }
    assert_eq!(sum, (0..32).map(|i| i * 2).sum::<u64>());
}

#[xev::test(backend = "all")]
async fn a_callback_timer_and_an_async_sleep_share_the_loop() {
    let fired = Rc::new(Cell::new(None));
    let mut timer = Box::pin(Completion::new());
    let f = fired.clone();
    let start = Instant::now();
    xev::rt::with_loop(|lp| {
        lp.timer(timer.as_mut(), 10, move |_lp, _c, r| {
            assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
            f.set(Some(start.elapsed()));
            CallbackAction::Disarm
        })
    });
    xev::time::sleep(Duration::from_millis(5)).await;
    if start.elapsed() < Duration::from_millis(10) {
        assert!(
            fired.get().is_none(),
            "the 10 ms callback timer fired early"
        );
    }
    xev::time::sleep(Duration::from_millis(20)).await;
    let at = fired.get().expect("callback timer fired");
    assert!(at >= Duration::from_millis(10));
    assert_eq!(timer.state(), xev::CompletionState::Dead);
}

#[xev::test(backend = "all")]
async fn timeout_and_sleep_until_and_interval() {
    let start = Instant::now();
    let r = xev::time::timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
    let took = start.elapsed();
    assert!(r.is_err());
    assert!(took >= Duration::from_millis(30), "{took:?}");
    assert!(took < Duration::from_millis(30 + 250), "{took:?}");

    let r = xev::time::timeout(Duration::from_secs(10), async { 3 }).await;
    assert_eq!(r, Ok(3));

    let deadline = Instant::now() + Duration::from_millis(8);
    xev::time::sleep_until(deadline).await;
    assert!(Instant::now() >= deadline);
    xev::time::sleep_until(Instant::now() - Duration::from_secs(1)).await; // past: at once

    let mut iv = xev::time::interval(Duration::from_millis(5));
    let t0 = iv.tick().await;
    let t1 = iv.tick().await;
    let t2 = iv.tick().await;
    // Exactly one period apart, unless a tick was late (a slow machine): then the
    // schedule restarts from the late tick instead of bursting.
    assert!(t1 - t0 >= Duration::from_millis(5), "{:?}", t1 - t0);
    assert!(t2 - t1 >= Duration::from_millis(5), "{:?}", t2 - t1);
    assert!(Instant::now() >= t2);

    // As a Stream.
    use std::future::poll_fn;
    let mut iv = Box::pin(xev::time::interval(Duration::from_millis(2)));
    for _ in 0..3 {
        let next = poll_fn(|cx| futures_core::Stream::poll_next(iv.as_mut(), cx)).await;
        assert!(next.is_some());
    }

    // A huge duration does not overflow: it just never fires.
    let r = xev::time::timeout(Duration::from_millis(5), xev::time::sleep(Duration::MAX)).await;
    assert!(r.is_err());
}

#[xev::test(backend = "all")]
async fn dropping_a_sleep_removes_it() {
    // Thousands of sleeps dropped before their deadline must not fire or linger.
    for _ in 0..5000 {
        let s = xev::time::sleep(Duration::from_millis(1));
        let mut s = std::pin::pin!(s);
        let _ = std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx).is_pending())).await;
    }
    xev::time::sleep(Duration::from_millis(5)).await;
    // Reset moves a sleep's deadline.
    let mut s = Box::pin(xev::time::sleep(Duration::from_secs(3600)));
    let start = Instant::now();
    s.as_mut().reset(Instant::now() + Duration::from_millis(5));
    s.await;
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn tasks_left_pending_continue_in_the_next_block_on_and_die_with_the_runtime() {
    for b in xev::Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        let count = Rc::new(Cell::new(0));
        let c = count.clone();
        let h = rt.spawn(async move {
            loop {
                xev::time::sleep(Duration::from_millis(1)).await;
                c.set(c.get() + 1);
            }
        });
        // Wait for progress by polling the count, not a fixed time (valgrind is slow).
        let progressed = |from: usize| {
            let c = count.clone();
            rt.block_on(async move {
                let start = Instant::now();
                while c.get() <= from {
                    assert!(start.elapsed() < Duration::from_secs(10), "no progress");
                    xev::time::sleep(Duration::from_millis(2)).await;
                }
            });
        };
        progressed(0);
        let after_first = count.get();
        assert!(after_first > 0, "{b:?}");
        progressed(after_first);
        assert!(count.get() > after_first, "{b:?}: the task continued");
        drop(rt);
        // The handle outlives the runtime: the task was cancelled at shutdown.
        assert!(h.is_finished());
        let r = xev::rt::Runtime::new().unwrap().block_on(h);
        assert!(r.unwrap_err().is_cancelled(), "{b:?}");
    }
}

#[test]
fn block_on_inside_a_runtime_panics_with_a_message() {
    let rt = xev::rt::Runtime::new().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async { xev::block_on(async {}) })
    }));
    let msg = r.unwrap_err();
    let msg = msg
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| msg.downcast_ref::<String>().cloned())
        .unwrap();
    assert!(msg.contains("inside a runtime"), "{msg}");
    // And the runtime is still usable afterwards.
    assert_eq!(rt.block_on(async { 1 }), 1);
}

#[test]
fn spawn_outside_a_runtime_panics_with_a_message() {
    let r = std::panic::catch_unwind(|| drop(xev::spawn(async {})));
    let msg = r.unwrap_err();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("inside an xev runtime"), "{msg}");
}

#[test]
fn builder_rejects_bad_settings() {
    assert!(Builder::new().entries(0).build().is_err());
    assert!(Builder::new().blocking_threads(0).build().is_err());
    for b in xev::Backend::available() {
        let rt = Builder::new()
            .backend(b)
            .entries(8)
            .blocking_threads(1)
            .build()
            .unwrap();
        assert_eq!(rt.backend(), b);
        // One pool thread still serves several blocking jobs, one after another.
        let s = rt.block_on(async {
            let a = xev::spawn_blocking(|| 1);
            let b = xev::spawn_blocking(|| 2);
            a.await.unwrap() + b.await.unwrap()
        });
        assert_eq!(s, 3);
    }
}
