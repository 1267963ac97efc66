//! The Timer watcher: run, reset and cancel with typed userdata and results.

use std::cell::RefCell;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// What each callback saw: (label, result is Ok, elapsed ms).
type Log = Rc<RefCell<Vec<(&'static str, Result<(), String>, u128)>>>;

fn log_cb(
    label: &'static str,
    start: Instant,
) -> impl FnMut(&mut Log, &mut Loop, std::pin::Pin<&mut Completion>, Result<(), Error>) -> CallbackAction
{
    move |log, _, _, r| {
        log.borrow_mut().push((
            label,
            r.map_err(|e| e.to_string()),
            start.elapsed().as_millis(),
        ));
        CallbackAction::Disarm
    }
}

#[test]
fn run_fires_once_with_ok_and_typed_userdata() {
    each_backend(|b| {
        let log: Log = Log::default();
        let start = Instant::now();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        Timer::new().run(&mut lp, c.as_mut(), 20, log.clone(), log_cb("t", start));
        lp.run(RunMode::UntilDone).unwrap();
        let log = log.borrow();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].1, Ok(()));
        assert!(log[0].2 >= 20, "fired early: {} ms", log[0].2);
    });
}

#[test]
fn cancel_reports_canceled_to_the_timer_and_ok_to_the_cancel() {
    each_backend(|b| {
        let log: Log = Log::default();
        let start = Instant::now();
        let cancel_result = Rc::new(RefCell::new(None));
        let mut t = pin!(Completion::new());
        let mut cc = pin!(Completion::new());
        let mut lp = new_loop(b);
        let timer = Timer::new();
        timer.run(&mut lp, t.as_mut(), 60_000, log.clone(), log_cb("t", start));
        timer.cancel(
            &mut lp,
            &t,
            cc.as_mut(),
            cancel_result.clone(),
            |out, _, _, r| {
                *out.borrow_mut() = Some(r.map_err(|e| e.to_string()));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(log.borrow().len(), 1);
        assert_eq!(log.borrow()[0].1, Err("operation canceled".to_string()));
        assert_eq!(*cancel_result.borrow(), Some(Ok(())));
        // Cancelling it again: nothing is running any more.
        timer.cancel(
            &mut lp,
            &t,
            cc.as_mut(),
            cancel_result.clone(),
            |out, _, _, r| {
                *out.borrow_mut() = Some(r.map_err(|e| e.to_string()));
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            *cancel_result.borrow(),
            Some(Err("no such operation in flight".to_string()))
        );
        assert_eq!(
            log.borrow().len(),
            1,
            "the timer callback is not called again"
        );
    });
}

#[test]
fn reset_before_the_first_tick_fires_once_at_the_new_deadline() {
    each_backend(|b| {
        let log: Log = Log::default();
        let start = Instant::now();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let timer = Timer::new();
        timer.run(&mut lp, t.as_mut(), 5, log.clone(), log_cb("old", start));
        // Before the loop ever ran: move it later, with a new callback.
        timer.reset(&mut lp, t.as_mut(), 40, log.clone(), log_cb("new", start));
        lp.run(RunMode::UntilDone).unwrap();
        let log = log.borrow();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].0, "new");
        assert_eq!(log[0].1, Ok(()), "a reset never reports Canceled");
        assert!(
            log[0].2 >= 40,
            "fired at {} ms, before the reset deadline",
            log[0].2
        );
    });
}

#[test]
fn reset_after_expiry_and_of_a_never_started_completion() {
    each_backend(|b| {
        let log: Log = Log::default();
        let start = Instant::now();
        let mut t = pin!(Completion::new());
        let mut never = pin!(Completion::new());
        let mut lp = new_loop(b);
        let timer = Timer::new();
        timer.run(&mut lp, t.as_mut(), 1, log.clone(), log_cb("first", start));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(log.borrow().len(), 1);
        // Already fired (Dead): reset behaves as run.
        timer.reset(&mut lp, t.as_mut(), 10, log.clone(), log_cb("again", start));
        // Never started: reset behaves as run.
        timer.reset(
            &mut lp,
            never.as_mut(),
            10,
            log.clone(),
            log_cb("never", start),
        );
        lp.run(RunMode::UntilDone).unwrap();
        let log = log.borrow();
        let labels: Vec<_> = log.iter().map(|l| l.0).collect();
        assert_eq!(labels.len(), 3, "{log:?}");
        assert!(labels.contains(&"again") && labels.contains(&"never"));
        assert!(log.iter().all(|l| l.1 == Ok(())));
    });
}

#[test]
fn reset_from_inside_the_callback_makes_a_repeating_timer() {
    each_backend(|b| {
        let count = Rc::new(RefCell::new(0u32));
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        fn tick(
            n: &mut Rc<RefCell<u32>>,
            lp: &mut Loop,
            c: std::pin::Pin<&mut Completion>,
            r: Result<(), Error>,
        ) -> CallbackAction {
            assert!(r.is_ok());
            *n.borrow_mut() += 1;
            if *n.borrow() < 5 {
                Timer::new().run(lp, c, 2, n.clone(), tick);
            }
            CallbackAction::Disarm
        }
        let start = Instant::now();
        Timer::new().run(&mut lp, t.as_mut(), 2, count.clone(), tick);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*count.borrow(), 5);
        assert!(start.elapsed() >= Duration::from_millis(10));
    });
}

#[test]
fn cancel_finds_run_and_heap_timers_and_only_the_current_arming() {
    // Two far timers (the loop's run) and a nearer one armed after them (its heap):
    // the watcher cancels each; a reset makes a new arming, which a cancel still finds;
    // a timer that already fired is NotFound.
    each_backend(|b| {
        let log: Log = Log::default();
        let start = Instant::now();
        let cancels = Rc::new(RefCell::new(Vec::new()));
        let on_cancel = |out: &mut Rc<RefCell<Vec<Result<(), String>>>>,
                         _: &mut Loop,
                         _: std::pin::Pin<&mut Completion>,
                         r: Result<(), CancelError>| {
            out.borrow_mut().push(r.map_err(|e| e.to_string()));
            CallbackAction::Disarm
        };
        let mut run1 = pin!(Completion::new());
        let mut run2 = pin!(Completion::new());
        let mut heap = pin!(Completion::new());
        let mut quick = pin!(Completion::new());
        let mut cc = pin!(Completion::new());
        let mut lp = new_loop(b);
        let timer = Timer::new();
        timer.run(
            &mut lp,
            run1.as_mut(),
            60_000,
            log.clone(),
            log_cb("run1", start),
        );
        timer.run(
            &mut lp,
            run2.as_mut(),
            70_000,
            log.clone(),
            log_cb("run2", start),
        );
        timer.run(
            &mut lp,
            heap.as_mut(),
            30_000,
            log.clone(),
            log_cb("heap", start),
        );
        timer.run(
            &mut lp,
            quick.as_mut(),
            0,
            log.clone(),
            log_cb("quick", start),
        );
        assert_eq!(lp.active(), 4);
        lp.run(RunMode::Once).unwrap();
        timer.cancel(&mut lp, &heap, cc.as_mut(), cancels.clone(), on_cancel);
        lp.run(RunMode::NoWait).unwrap();
        timer.reset(
            &mut lp,
            run2.as_mut(),
            80_000,
            log.clone(),
            log_cb("run2'", start),
        );
        timer.cancel(&mut lp, &run2, cc.as_mut(), cancels.clone(), on_cancel);
        lp.run(RunMode::NoWait).unwrap();
        timer.cancel(&mut lp, &quick, cc.as_mut(), cancels.clone(), on_cancel);
        lp.run(RunMode::NoWait).unwrap();
        timer.cancel(&mut lp, &run1, cc.as_mut(), cancels.clone(), on_cancel);
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        let canceled = Err("operation canceled".to_string());
        let seen: Vec<_> = log
            .borrow()
            .iter()
            .map(|(l, r, _)| (*l, r.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                ("quick", Ok(())),
                ("heap", canceled.clone()),
                ("run2'", canceled.clone()),
                ("run1", canceled.clone())
            ],
            "{b:?}"
        );
        assert_eq!(
            *cancels.borrow(),
            [
                Ok(()),
                Ok(()),
                Err("no such operation in flight".to_string()),
                Ok(())
            ]
        );
        assert_eq!(lp.active(), 0);
    });
}
