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
        assert_eq!(a.writes(), 1, "one hand-off for six notifies");
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
        assert_eq!(a.writes(), 1, "100,000 notifies, one hand-off");
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
/// last notify is not lost). Hand-offs (`writes`) stay far below N and never exceed the
/// number of callbacks plus one.
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
        eprintln!("{b:?}: {N} notifies -> {writes} hand-offs, {cbs} callbacks");
        assert!(writes <= cbs + 1, "{writes} writes > {cbs} callbacks + 1");
        assert!(writes <= N / 10, "{writes} hand-offs for {N} notifies");
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
        drop(a); // the parked wait keeps the shared state alive
        notifier.notify().unwrap();
        drop(notifier);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(lp.active(), 0);
    });
}

/// A wake-up goes over the loop's own (never drained) wake-up fd: a strict ping-pong of N
/// notifies gives exactly N callbacks, none spurious; the poll backend never retries
/// anything into `EAGAIN`; and once the notifier stops, neither more ticks nor a fresh
/// wait on a new completion call back until the next notify.
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
        assert_eq!(ping.writes(), N, "one hand-off per strict ping");
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

/// The poll backend's edge wait (a crate-internal `Op::Poll` bit), given a number that
/// names no file, fails with `EBADF` (on the poll backend without growing its fd table to
/// the made-up number) instead of hanging.
#[test]
fn wait_on_an_invalid_edge_fd_fails_cleanly() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        // An edge wait on a number that names no file: EBADF, not a hang.
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

/// Run `lp` until `done()` or a 20 s deadline (a lost wake-up fails instead of hanging:
/// a watchdog timer keeps each blocking tick short).
fn run_until(lp: &mut xev::Loop, what: &str, done: impl Fn() -> bool) {
    let mut guard = Box::pin(Completion::new());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: lost wake-up");
        if guard.state() == CompletionState::Dead {
            lp.timer(guard.as_mut(), 50, |_, _, _| CallbackAction::Disarm);
        }
        lp.run(RunMode::Once).unwrap();
    }
    lp.run(RunMode::NoWait).unwrap();
    if guard.state() != CompletionState::Dead {
        let mut cancel = Box::pin(Completion::new());
        lp.cancel(cancel.as_mut(), &guard, |_, _, _| CallbackAction::Disarm);
        while guard.state() != CompletionState::Dead || cancel.state() != CompletionState::Dead {
            lp.run(RunMode::Once).unwrap();
        }
    }
}

/// Several threads each store their progress and notify, many times, while the loop
/// runs: no notify is lost (the loop always ends up seeing every thread's last value in a
/// callback that ran after it), hand-offs never exceed callbacks plus one, and a callback
/// never runs without a notify before it (callbacks <= notifies that found none pending).
#[test]
fn notifies_from_several_threads_are_each_followed_by_a_callback() {
    each_backend(|b| {
        const THREADS: usize = 4;
        const N: u64 = 20_000;
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let progress: Arc<Vec<AtomicU64>> =
            Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
        let seen = Rc::new(Cell::new(0u64));
        let callbacks = Rc::new(Cell::new(0u64));
        let (p, s, cbs) = (progress.clone(), seen.clone(), callbacks.clone());
        a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
            r.expect("async wait");
            s.set(p.iter().map(|x| x.load(Ordering::Acquire)).sum());
            cbs.set(cbs.get() + 1);
            CallbackAction::Rearm
        });
        let threads: Vec<_> = (0..THREADS)
            .map(|i| {
                let (n, p) = (a.clone(), progress.clone());
                thread::spawn(move || {
                    for k in 1..=N {
                        p[i].store(k, Ordering::Release);
                        n.notify().unwrap();
                        if k % 1000 == 0 {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let total = THREADS as u64 * N;
        run_until(&mut lp, &format!("{b:?}"), || seen.get() == total);
        threads.into_iter().for_each(|t| t.join().unwrap());
        // Quiet afterwards: no callback without a notify.
        let before = callbacks.get();
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(
            callbacks.get(),
            before,
            "{b:?}: a callback without a notify"
        );
        let (writes, cbs) = (a.writes(), callbacks.get());
        assert!(
            cbs >= 1 && writes <= cbs + 1,
            "{b:?}: {writes} hand-offs, {cbs} callbacks"
        );
        assert!(
            cbs <= writes,
            "{b:?}: {cbs} callbacks for {writes} hand-offs"
        );
        assert_eq!(lp.active(), 1, "{b:?}: the wait is still parked");
        lp.shutdown();
        assert_eq!(lp.active(), 0);
    });
}

/// A wait that was disarmed, then started again (on the same completion and on a new
/// one), gets the next notify, once.
#[test]
fn disarm_then_wait_again() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let fired = Rc::new(Cell::new(0));
        for round in 0..3 {
            let f = fired.clone();
            a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
                r.expect("async wait");
                f.set(f.get() + 1);
                CallbackAction::Disarm
            });
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(fired.get(), round, "{b:?}: no callback before the notify");
            let n = a.clone();
            thread::spawn(move || n.notify().unwrap()).join().unwrap();
            lp.run(RunMode::UntilDone).unwrap();
            assert_eq!(fired.get(), round + 1, "{b:?}");
            assert_eq!(c.state(), CompletionState::Dead);
        }
        // A notify while nothing waits is kept for the next wait, on a new completion.
        a.notify().unwrap();
        let mut c2 = pin!(Completion::new());
        let f = fired.clone();
        a.wait(&mut lp, c2.as_mut(), (), move |_, _, _, r| {
            r.expect("async wait");
            f.set(f.get() + 1);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.get(), 4, "{b:?}");
    });
}

/// Two `Async`s waited on by one loop: a notify of one wakes that one's callback only.
#[test]
fn two_watchers_on_one_loop_wake_separately() {
    each_backend(|b| {
        let mut ca = pin!(Completion::new());
        let mut cb = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (a, b2) = (Async::new().unwrap(), Async::new().unwrap());
        let hits = Rc::new(Cell::new((0u32, 0u32)));
        let h = hits.clone();
        a.wait(&mut lp, ca.as_mut(), (), move |_, _, _, r| {
            r.expect("wait a");
            h.set((h.get().0 + 1, h.get().1));
            CallbackAction::Rearm
        });
        let h = hits.clone();
        b2.wait(&mut lp, cb.as_mut(), (), move |_, _, _, r| {
            r.expect("wait b");
            h.set((h.get().0, h.get().1 + 1));
            CallbackAction::Rearm
        });
        for (i, (na, nb)) in [(1, 0), (1, 1), (2, 1), (3, 2)].into_iter().enumerate() {
            let which = if i == 1 || i == 3 { &b2 } else { &a };
            let n = which.clone();
            thread::spawn(move || n.notify().unwrap()).join().unwrap();
            if i == 3 {
                let n = a.clone();
                thread::spawn(move || n.notify().unwrap()).join().unwrap();
            }
            run_until(&mut lp, &format!("{b:?} step {i}"), || {
                hits.get() == (na, nb)
            });
            for _ in 0..3 {
                lp.run(RunMode::NoWait).unwrap();
            }
            assert_eq!(hits.get(), (na, nb), "{b:?} step {i}");
        }
        assert_eq!(lp.active(), 2);
        lp.shutdown();
    });
}

/// The loop runs in another thread (the `Async` is created here and moved there with
/// the loop's completion); this thread notifies, and each notify is answered.
#[test]
fn a_loop_in_another_thread_is_woken() {
    each_backend(|b| {
        const N: u64 = 500;
        let a = Async::new().unwrap();
        let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
        let waiter = a.clone();
        let t = thread::spawn(move || {
            let mut lp = new_loop(b);
            let mut c = Box::pin(Completion::new());
            let n = Rc::new(Cell::new(0u64));
            let n2 = n.clone();
            waiter.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
                r.expect("async wait");
                n2.set(n2.get() + 1);
                ack_tx.send(n2.get()).unwrap();
                if n2.get() == N {
                    CallbackAction::Disarm
                } else {
                    CallbackAction::Rearm
                }
            });
            lp.run(RunMode::UntilDone).unwrap();
            n.get()
        });
        for i in 1..=N {
            a.notify().unwrap();
            let got = ack_rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("{b:?}: notify {i} lost"));
            assert_eq!(got, i);
        }
        assert_eq!(t.join().unwrap(), N);
        assert_eq!(a.writes(), N, "{b:?}: strict ping-pong, one hand-off each");
    });
}

/// Dropping the loop with a wait parked drops the wait's callback (its userdata with it:
/// nothing leaks), and later notifies, from this thread and another, are harmless; the
/// same `Async` then works with a new loop.
#[test]
fn dropping_the_loop_with_a_parked_wait() {
    each_backend(|b| {
        let a = Async::new().unwrap();
        let token = Rc::new(());
        let mut c = Box::pin(Completion::new());
        {
            let mut lp = new_loop(b);
            a.wait(&mut lp, c.as_mut(), token.clone(), |_, _, _, _| {
                panic!("the callback of an abandoned wait never runs")
            });
            lp.run(RunMode::NoWait).unwrap();
            assert_eq!(Rc::strong_count(&token), 2);
        }
        assert_eq!(
            Rc::strong_count(&token),
            1,
            "{b:?}: the callback was dropped"
        );
        assert_eq!(c.state(), CompletionState::Dead);
        a.notify().unwrap();
        let n = a.clone();
        thread::spawn(move || n.notify().unwrap()).join().unwrap();
        // A new loop: the pending notify is delivered there.
        let mut lp = new_loop(b);
        let fired = Rc::new(Cell::new(0));
        let f = fired.clone();
        a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
            r.expect("async wait");
            f.set(f.get() + 1);
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.get(), 1, "{b:?}");
        // Every handle gone, then the loop: fine too.
        let mut c2 = Box::pin(Completion::new());
        a.wait(&mut lp, c2.as_mut(), (), |_, _, _, _| {
            CallbackAction::Disarm
        });
        drop(a);
        drop(lp);
        assert_eq!(c2.state(), CompletionState::Dead);
    });
}

/// Waits started and cancelled over and over, with no notify in between, leave no
/// records behind in the `Async` (its list holds parked waits only), and the notify after
/// them wakes the one wait left.
#[test]
fn wait_and_cancel_cycles_leave_nothing_behind() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let canceled = Rc::new(Cell::new(0));
        for _ in 0..1000 {
            let k = canceled.clone();
            a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
                assert!(matches!(r, Err(Error::Canceled)), "{r:?}");
                k.set(k.get() + 1);
                CallbackAction::Disarm
            });
            lp.cancel(cancel.as_mut(), &c, |_, _, r| {
                assert!(matches!(r, OpResult::Cancel(Ok(()))), "{r:?}");
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
        }
        assert_eq!(canceled.get(), 1000, "{b:?}");
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
            r.expect("async wait");
            f.set(true);
            CallbackAction::Disarm
        });
        let dbg = format!("{a:?}");
        assert!(dbg.contains("parked_waits: 1"), "{b:?}: {dbg}");
        let n = a.clone();
        thread::spawn(move || n.notify().unwrap()).join().unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(fired.get(), "{b:?}");
        assert!(format!("{a:?}").contains("parked_waits: 0"));
    });
}

/// Two waits on one `Async` (same loop) and a wait of a second loop in another thread:
/// each notify is consumed by exactly one callback, and the other waits stay parked.
#[test]
fn several_waits_on_one_async_share_each_notify() {
    each_backend(|b| {
        let mut c1 = pin!(Completion::new());
        let mut c2 = pin!(Completion::new());
        let mut lp = new_loop(b);
        let a = Async::new().unwrap();
        let hits = Rc::new(Cell::new(0u32));
        for c in [c1.as_mut(), c2.as_mut()] {
            let h = hits.clone();
            a.wait(&mut lp, c, (), move |_, _, _, r| {
                r.expect("async wait");
                h.set(h.get() + 1);
                CallbackAction::Rearm
            });
        }
        for round in 1..=20 {
            let n = a.clone();
            thread::spawn(move || n.notify().unwrap()).join().unwrap();
            run_until(&mut lp, &format!("{b:?} round {round}"), || {
                hits.get() == round
            });
            for _ in 0..3 {
                lp.run(RunMode::NoWait).unwrap();
            }
            assert_eq!(hits.get(), round, "{b:?}: one callback per notify");
            assert_eq!(lp.active(), 2);
        }
        // Another loop, in another thread, waits on the same Async too.
        let other = a.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = thread::spawn(move || {
            let mut lp2 = new_loop(b);
            let mut c = Box::pin(Completion::new());
            other.wait(&mut lp2, c.as_mut(), (), move |_, _, _, r| {
                r.expect("async wait (other loop)");
                tx.send(()).unwrap();
                CallbackAction::Disarm
            });
            lp2.run(RunMode::UntilDone).unwrap();
        });
        // Each notify wakes one of the three waits; stop once the other loop got one.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut notifies = 0;
        while rx.try_recv().is_err() {
            assert!(
                Instant::now() < deadline,
                "{b:?}: the other loop never woke"
            );
            a.notify().unwrap();
            notifies += 1;
            let until = Instant::now() + Duration::from_millis(20);
            while Instant::now() < until {
                lp.run(RunMode::NoWait).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
        }
        t.join().unwrap();
        assert!(hits.get() >= 20 && hits.get() < 20 + notifies, "{b:?}");
        lp.shutdown();
    });
}
