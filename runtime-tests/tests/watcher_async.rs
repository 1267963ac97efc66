//! The Async watcher: cross-thread wake-ups, coalescing, no lost wake-ups, cancel.

use std::cell::Cell;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::watcher::r#async::Async;
use xev::{CallbackAction, Completion, CompletionState, Error, OpResult, RunMode};

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Async>();
}

#[test]
fn notify_from_another_thread_wakes_a_blocked_loop() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let fired = Rc::new(Cell::new(0));
        a.wait(&mut lp, c.as_mut(), fired.clone(), |fired, _lp, _c, r| {
            r.expect("async wait");
            fired.set(fired.get() + 1);
            CallbackAction::Disarm
        });
        assert_eq!(lp.active(), 1, "only the wait is active");
        let notifier = a.clone();
        let t0 = Instant::now();
        let t = thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            notifier.notify().unwrap();
        });
        lp.run(RunMode::Once).unwrap();
        let waited = t0.elapsed();
        t.join().unwrap();
        assert_eq!(fired.get(), 1);
        assert!(
            waited >= Duration::from_millis(45),
            "run(Once) returned after {waited:?}, before the notify"
        );
        assert_eq!(lp.active(), 0);
        assert_eq!(a.writes(), 1);
    });
}

#[test]
fn notifies_before_and_after_wait_coalesce_into_one_callback() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        for _ in 0..5 {
            a.notify().unwrap();
        }
        let fired = Rc::new(Cell::new(0));
        a.wait(&mut lp, c.as_mut(), fired.clone(), |fired, _lp, _c, r| {
            r.expect("async wait");
            fired.set(fired.get() + 1);
            CallbackAction::Rearm
        });
        a.notify().unwrap();
        lp.run(RunMode::Once).unwrap();
        for _ in 0..10 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(fired.get(), 1, "six notifies, one callback");
        assert_eq!(a.writes(), 1, "one eventfd write for six notifies");
        // Still waiting (rearmed): the next notify gives exactly one more callback.
        assert_eq!(lp.active(), 1);
        a.notify().unwrap();
        lp.run(RunMode::Once).unwrap();
        for _ in 0..10 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(fired.get(), 2);
        assert_eq!(a.writes(), 2);
        lp.shutdown();
    });
}

#[test]
fn notify_before_wait_is_remembered() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        // A notify from another thread, finished before the wait is even queued.
        let n = a.clone();
        thread::spawn(move || n.notify().unwrap()).join().unwrap();
        let fired = Rc::new(Cell::new(false));
        a.wait(&mut lp, c.as_mut(), fired.clone(), |fired, _lp, _c, r| {
            r.expect("async wait");
            fired.set(true);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(fired.get());
    });
}

#[test]
fn burst_while_the_loop_is_idle_is_one_write_and_one_callback() {
    each_backend(|b| {
        const N: u64 = 100_000;
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let fired = Rc::new(Cell::new(0));
        a.wait(&mut lp, c.as_mut(), fired.clone(), |fired, _lp, _c, r| {
            r.expect("async wait");
            fired.set(fired.get() + 1);
            CallbackAction::Rearm
        });
        let n = a.clone();
        thread::spawn(move || {
            for _ in 0..N {
                n.notify().unwrap();
            }
        })
        .join()
        .unwrap();
        assert_eq!(a.writes(), 1, "100,000 notifies, one eventfd write");
        lp.run(RunMode::Once).unwrap();
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(fired.get(), 1);
        lp.shutdown();
    });
}

/// A notifier thread stores 1..=N into a shared counter, notifying after each store, while
/// the loop runs: every callback sees the counter, and the last value is always seen (the
/// last notify is not lost). Eventfd writes stay far below N and never exceed the number
/// of callbacks plus one.
#[test]
fn concurrent_burst_never_loses_the_last_notify() {
    each_backend(|b| {
        const N: u64 = 100_000;
        let mut c = pin!(Completion::new());
        let mut guard = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let counter = Arc::new(AtomicU64::new(0));
        let seen = Rc::new(Cell::new(0u64));
        let callbacks = Rc::new(Cell::new(0u64));
        let (ctr, s, cbs) = (counter.clone(), seen.clone(), callbacks.clone());
        a.wait(&mut lp, c.as_mut(), (), move |_, _lp, _c, r| {
            r.expect("async wait");
            let v = ctr.load(Ordering::Acquire);
            assert!(v >= s.get(), "the counter never goes back");
            s.set(v);
            cbs.set(cbs.get() + 1);
            CallbackAction::Rearm
        });
        let n = a.clone();
        let ctr = counter.clone();
        let t = thread::spawn(move || {
            for i in 1..=N {
                ctr.store(i, Ordering::Release);
                n.notify().unwrap();
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.get() != N {
            assert!(
                Instant::now() < deadline,
                "lost wake-up: last value seen {} of {N} ({} callbacks, {} writes)",
                seen.get(),
                callbacks.get(),
                a.writes()
            );
            // A watchdog timer, so that a lost wake-up fails the test instead of hanging.
            if guard.state() == CompletionState::Dead {
                lp.timer(guard.as_mut(), 100, |_, _, _| CallbackAction::Disarm);
            }
            lp.run(RunMode::Once).unwrap();
        }
        t.join().unwrap();
        let (writes, cbs) = (a.writes(), callbacks.get());
        eprintln!("{b:?}: {N} notifies -> {writes} eventfd writes, {cbs} callbacks");
        assert!(writes <= cbs + 1, "{writes} writes > {cbs} callbacks + 1");
        assert!(writes <= N / 10, "{writes} eventfd writes for {N} notifies");
        lp.shutdown();
    });
}

#[test]
fn cancelled_wait_reports_canceled_and_keeps_the_notification() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let got: Rc<Cell<Option<bool>>> = Rc::new(Cell::new(None));
        a.wait(&mut lp, c.as_mut(), got.clone(), |got, _lp, _c, r| {
            got.set(Some(matches!(r, Err(Error::Canceled))));
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        let cancelled = Rc::new(Cell::new(false));
        let cl = cancelled.clone();
        lp.cancel(cancel.as_mut(), &c, move |_, _, r| {
            assert!(matches!(r, OpResult::Cancel(Ok(()))), "{r:?}");
            cl.set(true);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(got.get(), Some(true), "the wait got Canceled");
        assert!(cancelled.get());

        // A notify now is still delivered to the next wait.
        a.notify().unwrap();
        let fired = Rc::new(Cell::new(false));
        a.wait(&mut lp, c.as_mut(), fired.clone(), |fired, _lp, _c, r| {
            r.expect("async wait");
            fired.set(true);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(fired.get());
    });
}

#[test]
fn dropping_every_handle_while_waiting_is_fine() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let notifier = a.clone();
        a.wait(&mut lp, c.as_mut(), (), |_, _, _, r| {
            r.expect("async wait");
            CallbackAction::Disarm
        });
        drop(a); // the queued wait keeps the eventfd open
        notifier.notify().unwrap();
        drop(notifier);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(lp.active(), 0);
    });
}

/// The eventfd is never drained by a syscall of its own (io_uring reads it inside the wait,
/// the poll backend waits for its edges): a strict ping-pong of N notifies gives exactly N
/// callbacks, none spurious although the eventfd stays readable; the poll backend never
/// retries the wait into `EAGAIN`; and once the notifier stops, neither more ticks nor a
/// fresh wait on a new completion call back until the next notify.
#[test]
fn ping_pong_is_one_callback_per_notify_and_an_idle_wait_stays_quiet() {
    each_backend(|b| {
        const N: u64 = 2_000;
        let mut c = pin!(Completion::new());
        let mut guard = pin!(Completion::new());
        let mut lp = new_loop(b);
        let ping = Async::new().unwrap();
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
        let callbacks = Rc::new(Cell::new(0u64));
        let cbs = callbacks.clone();
        ping.wait(&mut lp, c.as_mut(), (), move |_, _lp, _c, r| {
            r.expect("async wait");
            cbs.set(cbs.get() + 1);
            ack_tx.send(cbs.get()).unwrap();
            CallbackAction::Rearm
        });
        let n = ping.clone();
        let t = thread::spawn(move || {
            for i in 1..=N {
                n.notify().unwrap();
                // Strict: the next notify only after this one's callback.
                assert_eq!(ack_rx.recv().unwrap(), i);
            }
            ack_rx
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while callbacks.get() < N {
            assert!(
                Instant::now() < deadline,
                "lost wake-up after {}",
                callbacks.get()
            );
            if guard.state() == CompletionState::Dead {
                lp.timer(guard.as_mut(), 100, |_, _, _| CallbackAction::Disarm);
            }
            lp.run(RunMode::Once).unwrap();
        }
        let ack_rx = t.join().unwrap();
        assert_eq!(ping.writes(), N, "one eventfd write per strict ping");
        // Idle: a blocking tick ends with the timer, not with a stale wake-up.
        let timer = pin!(Completion::new());
        let mut timer = timer;
        lp.timer(timer.as_mut(), 30, |_, _, _| CallbackAction::Disarm);
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        while timer.state() != CompletionState::Dead {
            lp.run(RunMode::Once).unwrap();
        }
        assert_eq!(callbacks.get(), N, "spurious callback while idle");
        assert!(ack_rx.try_recv().is_err());
        if b != xev::Backend::IoUring {
            assert_eq!(
                lp.poll_eagain_attempts(),
                0,
                "{b:?}: the wait retried into EAGAIN"
            );
        }

        // A fresh wait (new completion, new registration) stays quiet until notified.
        let mut c2 = pin!(Completion::new());
        let fresh = Rc::new(Cell::new(0u32));
        ping.wait(&mut lp, c2.as_mut(), fresh.clone(), |f, _lp, _c, r| {
            r.expect("async wait");
            f.set(f.get() + 1);
            CallbackAction::Disarm
        });
        lp.timer(timer.as_mut(), 30, |_, _, _| CallbackAction::Disarm);
        while timer.state() != CompletionState::Dead {
            lp.run(RunMode::Once).unwrap();
        }
        assert_eq!(
            fresh.get(),
            0,
            "{b:?}: the fresh wait fired without a notify"
        );
        ping.notify().unwrap();
        // Both waits are on the same Async: the notify wakes at least one of them.
        let before = callbacks.get();
        while fresh.get() == 0 && callbacks.get() == before {
            lp.run(RunMode::Once).unwrap();
        }
        lp.shutdown();
    });
}

/// The edge wait that `Async` uses on the poll backend (a crate-internal `Op::Poll` bit),
/// given a number that names no file, fails with `EBADF` (on the poll backend without
/// growing its fd table to the made-up number) instead of hanging.
#[test]
fn wait_on_an_invalid_edge_fd_fails_cleanly() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        // An edge wait (the poll backend's form of an Async wait) on a number that names
        // no file: EBADF, not a hang.
        let op = xev::Op::Poll {
            fd: i32::MAX - 1,
            events: xev::PollEvents::from_bits(xev::PollEvents::IN.bits() | (1 << 27)),
        };
        let got = Rc::new(Cell::new(false));
        let g = got.clone();
        lp.start(c.as_mut(), op, move |_, _, r| {
            match r {
                OpResult::Poll(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(9)),
                other => panic!("{other:?}"),
            }
            g.set(true);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(got.get());
    });
}
