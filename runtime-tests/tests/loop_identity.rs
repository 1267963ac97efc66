//! A completion Active in one loop belongs to that loop alone: another loop refuses to
//! act on it (a panic with a message for `add`/`timer_reset`, `CancelError::OtherLoop`
//! for a cancel), and both loops keep working afterwards.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;

use runtime_tests::{each_backend, new_loop, only, os_error, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The reviewed use-after-free: `timer_reset` on loop B of a timer Active in loop A put
/// the completion in B's queue and A's heap at once. Now B panics before touching it,
/// and A fires the timer exactly once.
#[test]
fn timer_reset_of_another_loops_timer_panics_and_touches_nothing() {
    each_backend(|b| {
        let fired = Rc::new(Cell::new(0));
        let mut t = pin!(Completion::new());
        let mut a = new_loop(b);
        let mut other = new_loop(b);
        let f = fired.clone();
        a.timer(t.as_mut(), 5, move |_, _, _| {
            f.set(f.get() + 1);
            CallbackAction::Disarm
        });
        let r = catch_unwind(AssertUnwindSafe(|| {
            other.timer_reset(t.as_mut(), 1, |_, _, _| CallbackAction::Disarm)
        }));
        let msg = panic_message(r.expect_err("timer_reset on another loop's timer"));
        assert!(msg.contains("another Loop"), "{msg}");
        assert_eq!(other.active(), 0, "the other loop took nothing");
        other.run(RunMode::UntilDone).unwrap();
        a.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.get(), 1, "the owner fired its timer once");
        assert_eq!(t.state(), CompletionState::Dead);
        // Both loops still work.
        for lp in [&mut a, &mut other] {
            let res = results();
            lp.timer(t.as_mut(), 0, record(&res));
            lp.run(RunMode::UntilDone).unwrap();
            assert!(matches!(
                only(&res),
                OpResult::Timer(TimerTrigger::Expiration)
            ));
        }
    });
}

/// `add` of a completion Active in another loop panics and says so.
#[test]
fn add_of_another_loops_completion_panics() {
    each_backend(|b| {
        let mut t = pin!(Completion::new());
        let mut a = new_loop(b);
        let mut other = new_loop(b);
        a.timer(t.as_mut(), 1, |_, _, _| CallbackAction::Disarm);
        let r = catch_unwind(AssertUnwindSafe(|| other.add(t.as_mut())));
        let msg = panic_message(r.expect_err("add of an Active completion"));
        assert!(msg.contains("another loop"), "{msg}");
        a.run(RunMode::UntilDone).unwrap();
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

/// The second review's case: every loop numbers its registrations from zero, so a
/// target taken from loop A named loop B's own timer, which got `Canceled`. Now the
/// cancel reports `OtherLoop` and B's timer fires normally.
#[test]
fn cancel_with_a_target_from_another_loop_is_refused() {
    each_backend(|b| {
        let mut ta = pin!(Completion::new());
        let mut tb = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        let mut a = new_loop(b);
        let mut lb = new_loop(b);
        a.timer(ta.as_mut(), 1, |_, _, _| CallbackAction::Disarm);
        let b_res = results();
        lb.timer(tb.as_mut(), 1, record(&b_res));
        let target = CancelTarget::of(&ta);
        let c_res = results();
        lb.start(cancel.as_mut(), Op::Cancel { target }, record(&c_res));
        lb.run(RunMode::UntilDone).unwrap();
        match only(&c_res) {
            OpResult::Cancel(Err(CancelError::OtherLoop)) => {}
            other => panic!("cancel across loops gave {other:?}"),
        }
        assert!(
            matches!(only(&b_res), OpResult::Timer(TimerTrigger::Expiration)),
            "loop B's own timer was not touched"
        );
        // The same target, on its own loop, cancels.
        let c_res = results();
        a.start(cancel.as_mut(), Op::Cancel { target }, record(&c_res));
        a.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&c_res), OpResult::Cancel(Ok(()))));
        let e: std::io::Error = CancelError::OtherLoop.into();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    });
}

/// A bad fd far beyond any open one gets EBADF from every operation; the poll backend
/// used to grow its per-fd table to the fd's size first (allocation failure: abort).
#[test]
fn huge_fd_is_ebadf_not_an_allocation() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        for fd in [i32::MAX - 1, i32::MAX, 1 << 30] {
            let ops = [
                Op::Recv {
                    fd,
                    buf: Buffer::inline(8),
                },
                Op::Send {
                    fd,
                    buf: Buffer::copy_from(b"x"),
                },
                Op::Read {
                    fd,
                    buf: Buffer::inline(8),
                },
                Op::Write {
                    fd,
                    buf: Buffer::copy_from(b"x"),
                },
                Op::Accept { fd },
                Op::Poll {
                    fd,
                    events: PollEvents::IN,
                },
            ];
            for op in ops {
                let what = format!("{op:?}");
                let res = results();
                lp.start(c.as_mut(), op, record(&res));
                lp.run(RunMode::UntilDone).unwrap();
                let r = only(&res);
                assert_eq!(os_error(&r), Some(libc::EBADF), "{what}: {r:?}");
            }
        }
        let res = results();
        lp.timer(c.as_mut(), 0, record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(
            only(&res),
            OpResult::Timer(TimerTrigger::Expiration)
        ));
    });
}
