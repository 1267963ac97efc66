//! Timers: expiration, ordering, extremes, cancel, reset, rearm, and arming late.

use std::cell::{Cell, RefCell};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

type Log = Rc<RefCell<Vec<(OpResult, Instant)>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

/// A callback that logs each result with the time it arrived, and disarms.
fn record(log: &Log) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
    let l = log.clone();
    move |_, _, r| {
        l.borrow_mut().push((r, Instant::now()));
        CallbackAction::Disarm
    }
}

fn triggers(log: &Log) -> Vec<TimerTrigger> {
    log.borrow()
        .iter()
        .map(|(r, _)| match r {
            OpResult::Timer(t) => *t,
            other => panic!("a timer got {other:?}"),
        })
        .collect()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn timer_fires_once_with_expiration_never_early() {
    each_backend(|b| {
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let start = Instant::now();
        lp.timer(t.as_mut(), 25, record(&fired));
        assert_eq!(t.state(), CompletionState::Active);
        assert_eq!(lp.active(), 1);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Expiration]);
        let at = fired.borrow()[0].1 - start;
        assert!(at >= ms(25), "fired after {at:?}, asked for 25 ms");
        assert!(at < ms(500), "fired only after {at:?}");
        assert_eq!(t.state(), CompletionState::Dead);
        assert_eq!(lp.active(), 0);
        // Nothing more ever arrives.
        lp.run(RunMode::UntilDone).unwrap();
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(fired.borrow().len(), 1);
    });
}

#[test]
fn many_timers_never_fire_early() {
    each_backend(|b| {
        let fired = log();
        let mut cs: Vec<Pin<Box<Completion>>> =
            (0..20).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        for (i, c) in cs.iter_mut().enumerate() {
            let delay = (i as u64 * 7) % 31 + 1;
            let l = fired.clone();
            let at = Instant::now();
            lp.timer(c.as_mut(), delay, move |_, _, r| {
                l.borrow_mut().push((r, Instant::now()));
                assert!(
                    at.elapsed() >= ms(delay),
                    "timer {i} of {delay} ms fired after {:?}",
                    at.elapsed()
                );
                CallbackAction::Disarm
            });
        }
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired), vec![TimerTrigger::Expiration; 20]);
        drop(lp);
        drop(cs);
    });
}

#[test]
fn longer_timer_stays_active_and_silent_meanwhile() {
    each_backend(|b| {
        let short = log();
        let long = log();
        let mut t1 = pin!(Completion::new());
        let mut t2 = pin!(Completion::new());
        let mut lp = new_loop(b);
        let start = Instant::now();
        lp.timer(t1.as_mut(), 10, record(&short));
        lp.timer(t2.as_mut(), 120, record(&long));
        lp.run(RunMode::Once).unwrap();
        assert_eq!(triggers(&short), [TimerTrigger::Expiration]);
        assert!(
            long.borrow().is_empty(),
            "the long timer fired with the short one"
        );
        assert_eq!(t1.state(), CompletionState::Dead);
        assert_eq!(t2.state(), CompletionState::Active);
        // Non-blocking ticks in between do not fire it either.
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        if start.elapsed() < ms(120) {
            assert!(long.borrow().is_empty());
            assert_eq!(t2.state(), CompletionState::Active);
        }
        lp.run(RunMode::Once).unwrap();
        assert_eq!(triggers(&long), [TimerTrigger::Expiration]);
        assert!(long.borrow()[0].1 - start >= ms(120));
        assert_eq!(t2.state(), CompletionState::Dead);
        assert_eq!(short.borrow().len(), 1);
    });
}

#[test]
fn timers_fire_in_deadline_order_ties_in_arming_order() {
    each_backend(|b| {
        let order = Rc::new(RefCell::new(Vec::new()));
        let delays = [30u64, 10, 20, 0, 10, 5, 0];
        let mut cs: Vec<Pin<Box<Completion>>> =
            delays.iter().map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        for (i, (c, &d)) in cs.iter_mut().zip(&delays).enumerate() {
            let o = order.clone();
            lp.timer(c.as_mut(), d, move |_, _, r| {
                assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
                o.borrow_mut().push(i);
                CallbackAction::Disarm
            });
        }
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*order.borrow(), [3, 6, 5, 1, 4, 2, 0]);
        drop(lp);
        drop(cs);
    });
}

#[test]
fn zero_ms_timer_fires_on_the_next_tick() {
    each_backend(|b| {
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), 0, record(&fired));
        assert!(fired.borrow().is_empty(), "no callback during add");
        assert_eq!(t.state(), CompletionState::Active);
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Expiration]);
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

#[test]
fn max_timer_stays_active_and_can_be_cancelled() {
    each_backend(|b| {
        let fired = log();
        let canceled = log();
        let mut t = pin!(Completion::new());
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), u64::MAX, record(&fired));
        for _ in 0..3 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(fired.borrow().is_empty());
        assert_eq!(t.state(), CompletionState::Active);
        let start = Instant::now();
        lp.cancel(c.as_mut(), &t, record(&canceled));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < ms(200));
        assert_eq!(triggers(&fired), [TimerTrigger::Canceled]);
        let cl = canceled.borrow();
        assert_eq!(cl.len(), 1);
        assert!(matches!(cl[0].0, OpResult::Cancel(Ok(()))), "{:?}", cl[0].0);
        assert_eq!(t.state(), CompletionState::Dead);
        assert_eq!(c.state(), CompletionState::Dead);
    });
}

#[test]
fn cancelling_an_active_timer() {
    each_backend(|b| {
        let fired = log();
        let canceled = log();
        let mut t = pin!(Completion::new());
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), 5_000, record(&fired));
        lp.run(RunMode::NoWait).unwrap();
        let start = Instant::now();
        lp.cancel(c.as_mut(), &t, record(&canceled));
        assert_eq!(c.state(), CompletionState::Active);
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < ms(200), "cancel waited for the deadline");
        assert_eq!(triggers(&fired), [TimerTrigger::Canceled]);
        assert!(matches!(canceled.borrow()[0].0, OpResult::Cancel(Ok(()))));
        assert_eq!(canceled.borrow().len(), 1);
        // The target is called back before the cancel.
        assert!(fired.borrow()[0].1 <= canceled.borrow()[0].1);
        // Cancelling again: the timer is gone.
        lp.cancel(c.as_mut(), &t, record(&canceled));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(
            canceled.borrow()[1].0,
            OpResult::Cancel(Err(CancelError::NotFound))
        ));
        assert_eq!(fired.borrow().len(), 1);
    });
}

#[test]
fn cancel_started_from_a_callback() {
    // Timer A's callback cancels timer B (deadline far away) with a stored target.
    each_backend(|b| {
        let fired_b = log();
        let canceled = log();
        let mut ta = pin!(Completion::new());
        let mut tb = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(tb.as_mut(), 10_000, record(&fired_b));
        // The cancel completion is moved into A's callback as a boxed completion.
        let target = CancelTarget::of(&tb);
        let cl = canceled.clone();
        let cancel_c = Rc::new(RefCell::new(Some(Box::pin(Completion::new()))));
        let holder = cancel_c.clone();
        lp.timer(ta.as_mut(), 1, move |lp, _, _| {
            let mut h = holder.borrow_mut();
            let c = h.as_mut().unwrap();
            let cl = cl.clone();
            lp.start(c.as_mut(), Op::Cancel { target }, move |_, _, r| {
                cl.borrow_mut().push((r, Instant::now()));
                CallbackAction::Disarm
            });
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired_b), [TimerTrigger::Canceled]);
        assert!(matches!(canceled.borrow()[0].0, OpResult::Cancel(Ok(()))));
        drop(lp);
        // The boxed cancel completion is Dead now and can go.
        assert_eq!(
            cancel_c.borrow().as_ref().unwrap().state(),
            CompletionState::Dead
        );
    });
}

#[test]
fn reset_active_timer_moves_the_deadline_both_ways() {
    each_backend(|b| {
        // Earlier: a 400 ms timer reset to 20 ms fires once at 20 ms with the new callback.
        let old = log();
        let new = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), 400, record(&old));
        lp.run(RunMode::NoWait).unwrap();
        let start = Instant::now();
        lp.timer_reset(t.as_mut(), 20, record(&new));
        assert_eq!(t.state(), CompletionState::Active);
        assert_eq!(lp.active(), 1);
        lp.run(RunMode::UntilDone).unwrap();
        let at = start.elapsed();
        assert!(old.borrow().is_empty(), "the replaced callback was called");
        assert_eq!(triggers(&new), [TimerTrigger::Expiration]);
        assert!(new.borrow()[0].1 - start >= ms(20));
        assert!(at < ms(300), "still waited for the old deadline: {at:?}");

        // Later: a 10 ms timer reset to 60 ms does not fire at 10 ms.
        let old = log();
        let new = log();
        lp.timer(t.as_mut(), 10, record(&old));
        let start = Instant::now();
        lp.timer_reset(t.as_mut(), 60, record(&new));
        lp.run(RunMode::Once).unwrap();
        assert!(old.borrow().is_empty());
        assert_eq!(triggers(&new), [TimerTrigger::Expiration]);
        assert!(
            new.borrow()[0].1 - start >= ms(60),
            "fired at the old deadline"
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(new.borrow().len(), 1);
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

#[test]
fn reset_a_dead_never_run_completion_starts_it() {
    each_backend(|b| {
        let new = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let start = Instant::now();
        lp.timer_reset(t.as_mut(), 20, record(&new));
        assert_eq!(t.state(), CompletionState::Active);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&new), [TimerTrigger::Expiration]);
        assert!(new.borrow()[0].1 - start >= ms(20));
    });
}

#[test]
fn reset_a_fired_timer_fires_once_at_the_new_deadline() {
    each_backend(|b| {
        let first = log();
        let second = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), 1, record(&first));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&first), [TimerTrigger::Expiration]);
        assert_eq!(t.state(), CompletionState::Dead);
        let start = Instant::now();
        lp.timer_reset(t.as_mut(), 25, record(&second));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(first.borrow().len(), 1);
        assert_eq!(triggers(&second), [TimerTrigger::Expiration]);
        assert!(second.borrow()[0].1 - start >= ms(25));
    });
}

#[test]
fn reset_a_timer_whose_result_is_already_queued() {
    // A and B expire in the same tick (A first); A's callback resets B, whose expiration
    // is already queued. B's old callback must not run; the new one fires once, at the
    // new deadline.
    each_backend(|b| {
        let old = log();
        let new = log();
        let reset_at = Rc::new(Cell::new(None));
        let tb = Rc::new(RefCell::new(Box::pin(Completion::new())));
        let mut ta = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (bx, nw, ra) = (tb.clone(), new.clone(), reset_at.clone());
        lp.timer(ta.as_mut(), 5, move |lp, _, _| {
            let mut target = bx.borrow_mut();
            assert_eq!(target.state(), CompletionState::Active);
            ra.set(Some(Instant::now()));
            lp.timer_reset(target.as_mut(), 30, record(&nw));
            CallbackAction::Disarm
        });
        lp.timer(tb.borrow_mut().as_mut(), 5, record(&old));
        // Both deadlines pass before the loop looks, so both land in one tick.
        std::thread::sleep(ms(10));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            old.borrow().is_empty(),
            "the old callback ran after the reset"
        );
        assert_eq!(triggers(&new), [TimerTrigger::Expiration]);
        assert!(new.borrow()[0].1 - reset_at.get().unwrap() >= ms(30));
        drop(lp);
        assert_eq!(tb.borrow().state(), CompletionState::Dead);
    });
}

#[test]
fn rearmed_timer_keeps_its_deadline_and_fires_next_tick() {
    each_backend(|b| {
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let l = fired.clone();
        let start = Instant::now();
        lp.timer(t.as_mut(), 30, move |_, _, r| {
            l.borrow_mut().push((r, Instant::now()));
            if l.borrow().len() < 3 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        lp.run(RunMode::Once).unwrap();
        assert_eq!(fired.borrow().len(), 1);
        assert_eq!(t.state(), CompletionState::Active, "rearmed");
        // Each further non-blocking tick delivers exactly one more expiration.
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(fired.borrow().len(), 2);
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(fired.borrow().len(), 3);
        assert_eq!(t.state(), CompletionState::Dead);
        assert_eq!(triggers(&fired), vec![TimerTrigger::Expiration; 3]);
        let f = fired.borrow();
        assert!(f[0].1 - start >= ms(30));
        // The absolute deadline was kept: no second 30 ms wait.
        assert!(
            f[2].1 - f[0].1 < ms(25),
            "rearm waited again: {:?}",
            f[2].1 - f[0].1
        );
    });
}

/// A callback that changes its timer (`op_mut`) before it rearms starts a new timer:
/// the new timeout counts from the callback, not from the old deadline. Left as it was,
/// the rearm keeps the old deadline (above).
#[test]
fn a_timer_changed_by_its_callback_counts_its_new_timeout_from_then() {
    each_backend(|b| {
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let l = fired.clone();
        lp.timer(t.as_mut(), 5, move |_, c, r| {
            l.borrow_mut().push((r, Instant::now()));
            if l.borrow().len() > 1 {
                return CallbackAction::Disarm;
            }
            match c.op_mut() {
                Some(Op::Timer { ms }) => *ms = 40,
                other => panic!("a timer's op is {other:?}"),
            }
            CallbackAction::Rearm
        });
        lp.run(RunMode::Once).unwrap();
        assert_eq!(fired.borrow().len(), 1);
        // Not on the next tick: the new timer has 40 ms to go.
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(
            fired.borrow().len(),
            1,
            "the changed timer fired at the old deadline"
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired), vec![TimerTrigger::Expiration; 2]);
        let f = fired.borrow();
        let gap = f[1].1 - f[0].1;
        assert!(
            gap >= ms(40),
            "the new timeout ran {gap:?}, asked for 40 ms"
        );
    });
}

#[test]
fn always_rearming_timer_does_not_trap_the_loop() {
    each_backend(|b| {
        let count = Rc::new(Cell::new(0u32));
        let canceled = Rc::new(Cell::new(false));
        let mut t = pin!(Completion::new());
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (k, cx) = (count.clone(), canceled.clone());
        lp.timer(t.as_mut(), 0, move |_, _, r| match r {
            OpResult::Timer(TimerTrigger::Expiration) => {
                k.set(k.get() + 1);
                CallbackAction::Rearm
            }
            OpResult::Timer(TimerTrigger::Canceled) => {
                cx.set(true);
                CallbackAction::Disarm
            }
            other => panic!("{other:?}"),
        });
        for i in 1..=20 {
            let start = Instant::now();
            lp.run(RunMode::NoWait).unwrap();
            assert!(start.elapsed() < ms(100));
            assert_eq!(count.get(), i, "callbacks per NoWait tick");
        }
        // run(Once) also returns after one round.
        lp.run(RunMode::Once).unwrap();
        assert_eq!(count.get(), 21);
        assert_eq!(t.state(), CompletionState::Active);
        let res = log();
        lp.cancel(c.as_mut(), &t, record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(canceled.get());
        assert!(matches!(res.borrow()[0].0, OpResult::Cancel(Ok(()))));
        assert_eq!(count.get(), 21);
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

#[test]
fn timer_armed_after_a_busy_callback_is_not_early() {
    each_backend(|b| {
        let armed_at = Rc::new(Cell::new(None::<Instant>));
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (a, l) = (armed_at.clone(), fired.clone());
        lp.timer(t.as_mut(), 1, move |lp, c, _| {
            // The loop's cached time is now ~50 ms stale.
            std::thread::sleep(ms(50));
            a.set(Some(Instant::now()));
            lp.timer(c, 30, record(&l));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Expiration]);
        let waited = fired.borrow()[0].1 - armed_at.get().unwrap();
        assert!(
            waited >= ms(30),
            "fired {waited:?} after arming a 30 ms timer"
        );
    });
}

#[test]
fn timer_armed_after_the_loop_was_blocked_is_not_early() {
    // The loop slept in the kernel for a while (stale cached time), then a timer is
    // armed from outside a callback.
    each_backend(|b| {
        let fired = log();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.run(RunMode::NoWait).unwrap();
        std::thread::sleep(ms(50));
        let armed = Instant::now();
        lp.timer(t.as_mut(), 30, record(&fired));
        lp.run(RunMode::UntilDone).unwrap();
        let waited = fired.borrow()[0].1 - armed;
        assert!(
            waited >= ms(30),
            "fired {waited:?} after arming a 30 ms timer"
        );
    });
}

#[test]
fn mixed_timers_with_cancels_and_resets_fire_once_in_order() {
    // 300 timers: a rising batch (same delay, so deadlines arrive in arming order), a
    // pseudo-random batch, some cancelled, some reset earlier or later. Every timer is
    // called back exactly once; cancelled ones with Canceled; the others with Expiration,
    // never early, and in deadline order.
    each_backend(|b| {
        const N: usize = 300;
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Per timer: expected deadline (None = cancelled), and what happened.
        // The loop samples its clock inside `timer`: the deadline lies between
        // (before + delay) and (after + delay).
        type Window = Option<(Instant, Instant)>;
        let expected: Rc<RefCell<Vec<Window>>> = Rc::new(RefCell::new(vec![None; N]));
        type Fired = Rc<RefCell<Vec<(usize, TimerTrigger, Instant)>>>;
        let fired: Fired = Rc::new(RefCell::new(Vec::new()));
        let mut ts: Vec<Pin<Box<Completion>>> =
            (0..N).map(|_| Box::pin(Completion::new())).collect();
        let mut cancels: Vec<Pin<Box<Completion>>> =
            (0..N).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        let cb = |i: usize, fired: &Fired| {
            let f = fired.clone();
            move |_: &mut Loop, _: Pin<&mut Completion>, r: OpResult| {
                let OpResult::Timer(t) = r else {
                    panic!("{r:?}")
                };
                f.borrow_mut().push((i, t, Instant::now()));
                CallbackAction::Disarm
            }
        };
        for (i, t) in ts.iter_mut().enumerate() {
            let delay = if i < N / 2 { 40 } else { rnd() % 60 };
            let before = Instant::now();
            lp.timer(t.as_mut(), delay, cb(i, &fired));
            let after = Instant::now();
            expected.borrow_mut()[i] = Some((before + ms(delay), after + ms(delay)));
        }
        // Let some expire and be delivered, then disturb the rest.
        lp.run(RunMode::NoWait).unwrap();
        let mut cancelled = 0;
        for i in 0..N {
            if ts[i].state() != CompletionState::Active {
                continue;
            }
            match rnd() % 6 {
                0 => {
                    lp.cancel(cancels[i].as_mut(), &ts[i], |_, _, r| {
                        assert!(matches!(r, OpResult::Cancel(Ok(()))), "{r:?}");
                        CallbackAction::Disarm
                    });
                    expected.borrow_mut()[i] = None;
                    cancelled += 1;
                }
                1 => {
                    let delay = rnd() % 80;
                    let before = Instant::now();
                    lp.timer_reset(ts[i].as_mut(), delay, cb(i, &fired));
                    let after = Instant::now();
                    expected.borrow_mut()[i] = Some((before + ms(delay), after + ms(delay)));
                }
                _ => {}
            }
        }
        lp.run(RunMode::UntilDone).unwrap();
        let fired = fired.borrow();
        let expected = expected.borrow();
        assert_eq!(fired.len(), N, "every timer calls back exactly once");
        let mut seen = vec![false; N];
        let mut last_lo: Option<Instant> = None;
        let mut n_cancelled = 0;
        for &(i, trig, when) in fired.iter() {
            assert!(!seen[i], "timer {i} called back twice");
            seen[i] = true;
            match (expected[i], trig) {
                (None, TimerTrigger::Canceled) => n_cancelled += 1,
                (Some((lo, hi)), TimerTrigger::Expiration) => {
                    assert!(when >= lo, "timer {i} fired early");
                    // In deadline order: this deadline cannot be before the earliest
                    // possible deadline of the previous expiration.
                    if let Some(prev_lo) = last_lo {
                        assert!(hi >= prev_lo, "timer {i} fired out of deadline order");
                    }
                    last_lo = Some(last_lo.map_or(lo, |p: Instant| p.max(lo)));
                }
                (e, t) => panic!("timer {i}: expected {e:?}, got {t:?}"),
            }
        }
        assert_eq!(n_cancelled, cancelled);
        drop(lp);
        drop((ts, cancels));
    });
}

/// A cancel callback that stores its result.
fn cancel_into(
    out: &Rc<RefCell<Vec<Result<(), String>>>>,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
    let out = out.clone();
    move |_, _, r| {
        let OpResult::Cancel(r) = r else {
            panic!("a cancel got {r:?}")
        };
        out.borrow_mut().push(r.map_err(|e| format!("{e:?}")));
        CallbackAction::Disarm
    }
}

const NOT_FOUND: &str = "NotFound";

fn not_found(r: &Result<(), String>) -> bool {
    matches!(r, Err(e) if e == NOT_FOUND)
}

#[test]
fn cancel_of_run_and_heap_timers_and_active_counts() {
    // In-order deadlines go to the loop's run, an earlier one to its heap: cancel finds
    // both, and `Loop::active` counts every Active completion wherever it is.
    each_backend(|b| {
        let fired = log();
        let outs = Rc::new(RefCell::new(Vec::new()));
        let mut a = pin!(Completion::new());
        let mut h = pin!(Completion::new());
        let mut z = pin!(Completion::new());
        let mut k1 = pin!(Completion::new());
        let mut k2 = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(a.as_mut(), 5_000, record(&fired)); // run
        lp.timer(z.as_mut(), 6_000, record(&fired)); // run
        lp.timer(h.as_mut(), 3_000, record(&fired)); // earlier than the run's back: heap
        assert_eq!(lp.active(), 3);
        lp.cancel(k1.as_mut(), &h, cancel_into(&outs));
        // The target's Canceled result and the cancel's own wait for the next tick.
        assert_eq!(lp.active(), 4);
        assert_eq!(h.state(), CompletionState::Active);
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Canceled]);
        assert_eq!(*outs.borrow(), [Ok(())]);
        assert_eq!(lp.active(), 2);
        lp.cancel(k2.as_mut(), &a, cancel_into(&outs));
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Canceled; 2]);
        assert_eq!(*outs.borrow(), [Ok(()), Ok(())]);
        assert_eq!(lp.active(), 1, "{b:?}: only z is left");
        assert_eq!(z.state(), CompletionState::Active);
        // Cancelling the gone ones again: NotFound, nothing else touched.
        lp.cancel(k1.as_mut(), &h, cancel_into(&outs));
        lp.cancel(k2.as_mut(), &a, cancel_into(&outs));
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(
            outs.borrow()[2..],
            [Err(NOT_FOUND.to_string()), Err(NOT_FOUND.to_string())]
        );
        assert_eq!(lp.active(), 1);
        assert_eq!(z.state(), CompletionState::Active);
        drop(lp);
    });
}

#[test]
fn stale_cancel_targets_are_not_found_after_many_rearms() {
    // A target names one arming. After that arming fired, was cancelled, rearmed or
    // reset, and after the timer and others were armed many times more (so that run
    // positions and registry slots have moved on), it is NotFound, and the timer's
    // current arming is untouched.
    each_backend(|b| {
        let fired = log();
        let outs = Rc::new(RefCell::new(Vec::new()));
        let mut t = pin!(Completion::new());
        let mut k = pin!(Completion::new());
        let mut others: Vec<Pin<Box<Completion>>> =
            (0..8).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        let mut stale = Vec::new();
        // Fired.
        lp.timer(t.as_mut(), 0, record(&fired));
        stale.push(CancelTarget::of(&t));
        lp.run(RunMode::UntilDone).unwrap();
        // Fired with its callback still queued (behind an earlier timer's, which cancels
        // it): NotFound too.
        let tgt = Rc::new(Cell::new(CancelTarget::none()));
        let kc = Rc::new(RefCell::new(Box::pin(Completion::new())));
        let (tgt2, kc2, outs2) = (tgt.clone(), kc.clone(), outs.clone());
        lp.timer(others[0].as_mut(), 0, move |lp, _, _| {
            let mut k = kc2.borrow_mut();
            let target = tgt2.get();
            lp.start(k.as_mut(), Op::Cancel { target }, cancel_into(&outs2));
            CallbackAction::Disarm
        });
        std::thread::sleep(ms(2));
        lp.timer(t.as_mut(), 0, record(&fired));
        tgt.set(CancelTarget::of(&t));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(triggers(&fired), [TimerTrigger::Expiration; 2]);
        assert_eq!(outs.borrow().len(), 1);
        assert!(not_found(&outs.borrow()[0]), "{b:?}: {:?}", outs.borrow());
        outs.borrow_mut().clear();
        // Rearmed by its callback (a new arming at the same deadline).
        let n = Rc::new(Cell::new(0));
        let n2 = n.clone();
        lp.timer(t.as_mut(), 1, move |_, _, _| {
            n2.set(n2.get() + 1);
            if n2.get() < 3 {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        stale.push(CancelTarget::of(&t));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(n.get(), 3);
        // Reset (to the heap and back to the run).
        lp.timer(others[1].as_mut(), 10_000, record(&fired));
        lp.timer(t.as_mut(), 20_000, record(&fired));
        stale.push(CancelTarget::of(&t));
        lp.timer_reset(t.as_mut(), 5_000, record(&fired)); // earlier: heap
        stale.push(CancelTarget::of(&t));
        lp.timer_reset(t.as_mut(), 30_000, record(&fired)); // later: run
        let mut c = pin!(Completion::new());
        lp.cancel(c.as_mut(), &others[1], |_, _, _| CallbackAction::Disarm);
        lp.run(RunMode::NoWait).unwrap();
        // Many armings of t and others.
        for round in 0..200 {
            lp.timer_reset(t.as_mut(), round % 3, record(&fired));
            if round % 50 == 0 {
                stale.push(CancelTarget::of(&t));
            }
            for o in others[2..].iter_mut() {
                lp.timer(o.as_mut(), round % 2, |_, _, _| CallbackAction::Disarm);
            }
            lp.run(RunMode::UntilDone).ok();
            lp.timer(others[1].as_mut(), 10_000, record(&fired));
            let mut c = pin!(Completion::new());
            lp.cancel(c.as_mut(), &others[1], |_, _, _| CallbackAction::Disarm);
            lp.run(RunMode::NoWait).unwrap();
        }
        fired.borrow_mut().clear();
        // The current arming: far away, in the run; then every stale target.
        lp.timer(t.as_mut(), 60_000, record(&fired));
        assert_eq!(lp.active(), 1);
        for target in &stale {
            lp.start(
                k.as_mut(),
                Op::Cancel { target: *target },
                cancel_into(&outs),
            );
            lp.run(RunMode::NoWait).unwrap();
        }
        let outs_now = outs.borrow().clone();
        assert_eq!(outs_now.len(), stale.len());
        assert!(outs_now.iter().all(not_found), "{b:?}: {outs_now:?}");
        assert!(
            fired.borrow().is_empty(),
            "no stale cancel reached the timer"
        );
        assert_eq!(t.state(), CompletionState::Active);
        // The live target still works.
        lp.cancel(k.as_mut(), &t, cancel_into(&outs));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(outs.borrow().last(), Some(&Ok(())));
        assert_eq!(triggers(&fired), [TimerTrigger::Canceled]);
        drop(lp);
    });
}

#[test]
fn stale_target_of_a_dropped_timer_is_not_found() {
    // The completion a stale target named is freed and its memory likely reused by a
    // new timer: the cancel must be NotFound without reading the old completion, and the
    // new timer is untouched.
    each_backend(|b| {
        let fired = log();
        let outs = Rc::new(RefCell::new(Vec::new()));
        let mut lp = new_loop(b);
        let mut k = pin!(Completion::new());
        let mut stale = Vec::new();
        for d in [0u64, 0, 1] {
            let mut t = Box::pin(Completion::new());
            lp.timer(t.as_mut(), d, record(&fired));
            stale.push(CancelTarget::of(&t));
            lp.run(RunMode::UntilDone).unwrap();
            drop(t);
        }
        let mut fresh = Box::pin(Completion::new());
        lp.timer(fresh.as_mut(), 60_000, record(&fired));
        for target in stale {
            lp.start(k.as_mut(), Op::Cancel { target }, cancel_into(&outs));
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(outs.borrow().iter().all(not_found));
        assert_eq!(outs.borrow().len(), 3);
        assert_eq!(fresh.state(), CompletionState::Active);
        assert_eq!(fired.borrow().len(), 3, "only the three expirations");
        drop(lp);
    });
}

#[test]
fn shutdown_with_pending_run_heap_and_queued_timers() {
    // Shutdown leaves every timer Dead without calling back (wherever it was: the run,
    // the heap, or fired with its callback still queued), counts nothing Active
    // afterwards, and the loop stays usable; targets from before the shutdown stay
    // NotFound.
    each_backend(|b| {
        let fired = log();
        let outs = Rc::new(RefCell::new(Vec::new()));
        let mut lp = new_loop(b);
        let mut ts: Vec<Pin<Box<Completion>>> =
            (0..1000).map(|_| Box::pin(Completion::new())).collect();
        let mut targets = Vec::new();
        for (i, t) in ts.iter_mut().enumerate() {
            // Mostly rising (the run), every 10th earlier (the heap).
            let d = if i % 10 == 9 {
                1_000
            } else {
                10_000 + i as u64
            };
            lp.timer(t.as_mut(), d, record(&fired));
            targets.push(CancelTarget::of(t));
        }
        // Two cancelled (results queued, callbacks not run yet).
        let mut k = pin!(Completion::new());
        let mut k2 = pin!(Completion::new());
        lp.cancel(k.as_mut(), &ts[0], cancel_into(&outs));
        lp.cancel(k2.as_mut(), &ts[9], cancel_into(&outs));
        assert_eq!(lp.active(), 1002);
        let held = Rc::strong_count(&fired);
        assert_eq!(held, 1001, "each callback holds the log");
        lp.shutdown();
        assert_eq!(lp.active(), 0);
        assert!(ts.iter().all(|t| t.state() == CompletionState::Dead));
        assert!(fired.borrow().is_empty(), "no callback ran");
        assert!(outs.borrow().is_empty(), "no callback ran");
        assert_eq!(Rc::strong_count(&fired), 1, "the callbacks were dropped");
        // Still usable; old targets name nothing.
        lp.timer(ts[1].as_mut(), 0, record(&fired));
        lp.timer(ts[5].as_mut(), 60_000, record(&fired));
        for target in &targets[..20] {
            lp.start(
                k.as_mut(),
                Op::Cancel { target: *target },
                cancel_into(&outs),
            );
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(outs.borrow().len(), 20);
        assert!(outs.borrow().iter().all(not_found));
        assert_eq!(triggers(&fired), [TimerTrigger::Expiration]);
        assert_eq!(ts[5].state(), CompletionState::Active);
        assert_eq!(lp.active(), 1);
        drop(lp);
        drop(ts);
    });
}
