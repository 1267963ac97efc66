//! The loop's own API: run modes, no-ops, nesting, stop, time, options, backends, misuse.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// A callback that records every result it gets and disarms.
fn record(
    slot: &Rc<RefCell<Vec<OpResult>>>,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static {
    let s = slot.clone();
    move |_, _, r| {
        s.borrow_mut().push(r);
        CallbackAction::Disarm
    }
}

fn slot() -> Rc<RefCell<Vec<OpResult>>> {
    Rc::new(RefCell::new(Vec::new()))
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn empty_loop_until_done_returns_at_once() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        assert_eq!(lp.active(), 0);
        let t = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
        assert!(!lp.stopped());
        assert_eq!(lp.active(), 0);
    });
}

#[test]
fn empty_loop_once_and_nowait_return_at_once() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let t = Instant::now();
        lp.run(RunMode::Once).unwrap();
        lp.run(RunMode::NoWait).unwrap();
        lp.run(RunMode::Once).unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "{:?}",
            t.elapsed()
        );
    });
}

#[test]
fn noop_never_calls_back_and_is_dead_after_add() {
    each_backend(|b| {
        let called = Rc::new(Cell::new(0));
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let k = called.clone();
        lp.start(c.as_mut(), Op::Noop, move |_, _, _| {
            k.set(k.get() + 1);
            CallbackAction::Disarm
        });
        assert_eq!(c.state(), CompletionState::Dead);
        assert_eq!(lp.active(), 0);
        // A fresh completion also holds a Noop: adding it as is works the same way.
        let mut fresh = pin!(Completion::new());
        lp.add(fresh.as_mut());
        assert_eq!(fresh.state(), CompletionState::Dead);
        let t = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        lp.run(RunMode::NoWait).unwrap();
        assert!(t.elapsed() < Duration::from_millis(100));
        assert_eq!(called.get(), 0, "a no-op must never call back");
        // The no-op completion is immediately reusable for real work.
        let k = called.clone();
        lp.timer(c.as_mut(), 0, move |_, _, r| {
            assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
            k.set(k.get() + 1);
            CallbackAction::Disarm
        });
        assert_eq!(c.state(), CompletionState::Active);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(called.get(), 1);
        assert_eq!(c.state(), CompletionState::Dead);
    });
}

#[test]
fn run_inside_a_callback_is_nested_error() {
    each_backend(|b| {
        let errors = Rc::new(RefCell::new(Vec::new()));
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let e = errors.clone();
        lp.timer(c.as_mut(), 0, move |lp, _, _| {
            for mode in [RunMode::NoWait, RunMode::Once, RunMode::UntilDone] {
                e.borrow_mut().push((mode, lp.run(mode)));
            }
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let errors = errors.borrow();
        assert_eq!(errors.len(), 3);
        for (mode, r) in errors.iter() {
            assert!(
                matches!(r, Err(RunError::Nested)),
                "run({mode:?}) in a callback gave {r:?}"
            );
        }
        // The error converts to an io::Error with a message.
        let io_err: io::Error = RunError::Nested.into();
        assert!(io_err.to_string().contains("nested"), "{io_err}");
        // The outer run is not disturbed: the loop still runs normally afterwards.
        let fired = slot();
        lp.timer(c.as_mut(), 1, record(&fired));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.borrow().len(), 1);
    });
}

#[test]
fn stop_from_callback_leaves_work_active_and_loop_resumes() {
    each_backend(|b| {
        let first = slot();
        let second = slot();
        let mut t1 = pin!(Completion::new());
        let mut t2 = pin!(Completion::new());
        let mut lp = new_loop(b);
        let f = first.clone();
        lp.timer(t1.as_mut(), 1, move |lp, _, r| {
            f.borrow_mut().push(r);
            lp.stop();
            assert!(lp.stopped());
            CallbackAction::Disarm
        });
        lp.timer(t2.as_mut(), 60, record(&second));
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(60),
            "run returned only after {:?}",
            start.elapsed()
        );
        assert!(lp.stopped(), "stopped() must be true after a stop");
        assert_eq!(first.borrow().len(), 1);
        assert_eq!(second.borrow().len(), 0, "second timer fired too early");
        assert_eq!(t2.state(), CompletionState::Active);
        assert_eq!(lp.active(), 1);

        // Running again clears the stop and finishes the remaining work.
        lp.run(RunMode::UntilDone).unwrap();
        assert!(!lp.stopped());
        assert_eq!(second.borrow().len(), 1);
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert_eq!(t2.state(), CompletionState::Dead);
        assert_eq!(lp.active(), 0);
    });
}

#[test]
fn stop_before_run_is_cleared_by_run() {
    each_backend(|b| {
        let fired = slot();
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.stop();
        assert!(lp.stopped());
        lp.timer(t.as_mut(), 1, record(&fired));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(!lp.stopped());
        assert_eq!(fired.borrow().len(), 1);
    });
}

#[test]
fn run_once_returns_after_the_first_callback() {
    each_backend(|b| {
        let a = slot();
        let z = slot();
        let mut ta = pin!(Completion::new());
        let mut tz = pin!(Completion::new());
        let mut lp = new_loop(b);
        // Timed from before arming: a deadline counts from the clock when the timer is
        // armed, so timing from after it could see the 5 ms timer fire "early".
        let start = Instant::now();
        lp.timer(ta.as_mut(), 5, record(&a));
        lp.timer(tz.as_mut(), 80, record(&z));
        lp.run(RunMode::Once).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(5));
        assert!(start.elapsed() < Duration::from_millis(80));
        assert_eq!(a.borrow().len(), 1);
        assert_eq!(z.borrow().len(), 0);
        assert_eq!(tz.state(), CompletionState::Active);
        lp.run(RunMode::Once).unwrap();
        assert_eq!(z.borrow().len(), 1);
        assert!(start.elapsed() >= Duration::from_millis(80));
    });
}

#[test]
fn now_advances_and_update_now_refreshes() {
    each_backend(|b| {
        let mut t = pin!(Completion::new());
        let mut lp = new_loop(b);
        let t0 = lp.now();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(lp.now(), t0, "now() is cached until a tick or update_now()");
        lp.update_now();
        let t1 = lp.now();
        assert!(t1 >= t0 + 20, "now went from {t0} to {t1} over 20 ms");

        // A tick refreshes it too, and a callback sees a time at or after its deadline.
        let seen = Rc::new(Cell::new(0u64));
        let s = seen.clone();
        lp.timer(t.as_mut(), 15, move |lp, _, _| {
            s.set(lp.now());
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            seen.get() >= t1 + 15,
            "callback saw now={} armed at {t1}",
            seen.get()
        );
        assert!(lp.now() >= seen.get());
    });
}

#[test]
fn options_backend_is_honoured() {
    each_backend(|b| {
        let lp = Loop::new(Options {
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(lp.backend(), b);
        assert!(format!("{lp:?}").contains(&format!("{b:?}")));
    });
}

#[test]
fn bad_entries_are_errors_not_panics() {
    each_backend(|b| {
        for entries in [0, MAX_ENTRIES + 1, 1_000_000, u32::MAX] {
            let r = catch_unwind(|| {
                Loop::new(Options {
                    entries,
                    backend: Some(b),
                    ..Default::default()
                })
            });
            match r {
                Ok(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}"),
                Ok(Ok(_)) => panic!("entries={entries} was accepted"),
                Err(p) => panic!("entries={entries} panicked: {}", panic_message(&*p)),
            }
        }
    });
}

#[test]
fn one_entry_loop_still_runs_many_operations() {
    // With a one-entry submission queue (io_uring) the backend must flush as it goes.
    each_backend(|b| {
        let results = slot();
        let socks: Vec<(UnixStream, UnixStream)> = (0..4)
            .map(|_| {
                let (x, y) = UnixStream::pair().unwrap();
                x.set_nonblocking(true).unwrap();
                (x, y)
            })
            .collect();
        let mut cs: Vec<Pin<Box<Completion>>> =
            (0..8).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = Loop::new(Options {
            entries: 1,
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        for (i, c) in cs.iter_mut().enumerate() {
            if i < 4 {
                let op = Op::Recv {
                    fd: socks[i].0.as_raw_fd(),
                    buf: Buffer::inline(8),
                };
                lp.start(c.as_mut(), op, record(&results));
            } else {
                lp.timer(c.as_mut(), 1, record(&results));
            }
        }
        lp.run(RunMode::NoWait).unwrap();
        for (_, y) in &socks {
            use std::io::Write;
            (&*y).write_all(b"x").unwrap();
        }
        lp.run(RunMode::UntilDone).unwrap();
        let results = results.borrow();
        assert_eq!(results.len(), 8);
        let recvs = results
            .iter()
            .filter(|r| matches!(r, OpResult::Recv(Ok(1))))
            .count();
        let timers = results
            .iter()
            .filter(|r| matches!(r, OpResult::Timer(TimerTrigger::Expiration)))
            .count();
        assert_eq!((recvs, timers), (4, 4), "{results:?}");
        drop(lp);
        drop(cs);
    });
}

#[test]
fn backend_queries_are_consistent() {
    // The queries are global; running them per backend also checks each one's own view.
    each_backend(|b| {
        assert!(b.is_available());
        assert!(Backend::available().any(|x| x == b));
        assert!(Backend::candidates().contains(&b));
        backend_queries();
    });
}

fn backend_queries() {
    let candidates = Backend::candidates();
    assert!(!candidates.is_empty());
    let available: Vec<Backend> = Backend::available().collect();
    assert!(
        !available.is_empty(),
        "at least one backend must be available"
    );
    // available() is candidates() filtered by is_available(), in the same order.
    let filtered: Vec<Backend> = candidates
        .iter()
        .copied()
        .filter(|b| b.is_available())
        .collect();
    assert_eq!(available, filtered);
    // default() is the first available candidate, and a default loop uses it.
    assert_eq!(Backend::default(), available[0]);
    assert_eq!(
        Loop::new(Options::default()).unwrap().backend(),
        Backend::default()
    );
    if cfg!(target_os = "linux") {
        assert_eq!(candidates, &[Backend::IoUring, Backend::Epoll]);
        assert!(Backend::Epoll.is_available());
    }
    // Backends that are not candidates here are not available, and asking for them is an
    // error, not a panic.
    for b in [
        Backend::IoUring,
        Backend::Epoll,
        Backend::Kqueue,
        Backend::Iocp,
    ] {
        assert_eq!(
            b.is_available(),
            available.contains(&b),
            "{b:?}: is_available disagrees with available()"
        );
        if !candidates.contains(&b) {
            assert!(!b.is_available(), "{b:?} available but not a candidate");
        }
        let r = Loop::new(Options {
            backend: Some(b),
            ..Default::default()
        });
        match (b.is_available(), r) {
            (true, Ok(lp)) => assert_eq!(lp.backend(), b),
            (false, Err(e)) => assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}"),
            (true, Err(e)) => panic!("{b:?} is available but Loop::new failed: {e}"),
            (false, Ok(_)) => panic!("{b:?} is unavailable but Loop::new succeeded"),
        }
    }
    let names: Vec<&str> = [
        Backend::IoUring,
        Backend::Epoll,
        Backend::Kqueue,
        Backend::Iocp,
    ]
    .iter()
    .map(|b| b.name())
    .collect();
    assert_eq!(names, ["io_uring", "epoll", "kqueue", "iocp"]);
}

#[test]
fn adding_an_active_completion_panics_and_loop_shuts_down_cleanly() {
    each_backend(|b| {
        let fired = slot();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(c.as_mut(), 10_000, record(&fired));
        assert_eq!(c.state(), CompletionState::Active);

        let r = catch_unwind(AssertUnwindSafe(|| lp.add(c.as_mut())));
        let msg = panic_message(&*r.expect_err("adding an Active completion must panic"));
        assert!(msg.contains("Active"), "panic message: {msg}");

        // Re-preparing or re-starting it panics too, without disturbing the operation.
        let r = catch_unwind(AssertUnwindSafe(|| lp.timer(c.as_mut(), 1, record(&fired))));
        assert!(r.is_err(), "starting an Active completion must panic");
        let r = catch_unwind(AssertUnwindSafe(|| {
            c.as_mut().prep(Op::Noop, record(&fired))
        }));
        assert!(r.is_err(), "prep on an Active completion must panic");
        assert_eq!(c.state(), CompletionState::Active);
        assert!(
            c.op().is_none(),
            "an Active completion's op is not readable"
        );
        assert_eq!(lp.active(), 1);

        // The loop is still consistent: it runs without firing the 10 s timer...
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(fired.borrow().len(), 0);
        // ...and shutdown leaves the completion Dead, so it can be dropped.
        lp.shutdown();
        assert_eq!(c.state(), CompletionState::Dead);
        assert_eq!(lp.active(), 0);
        assert_eq!(fired.borrow().len(), 0, "shutdown must not call back");
        assert!(matches!(c.op(), Some(Op::Timer { ms: 10_000 })));
    });
}

#[test]
fn nowait_never_blocks() {
    each_backend(|b| {
        let fired = slot();
        let got = slot();
        let (x, _y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        let mut t = pin!(Completion::new());
        let mut r = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(t.as_mut(), 200, record(&fired));
        lp.start(
            r.as_mut(),
            Op::Recv {
                fd: x.as_raw_fd(),
                buf: Buffer::inline(4),
            },
            record(&got),
        );
        let start = Instant::now();
        for _ in 0..10 {
            lp.run(RunMode::NoWait).unwrap();
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(100),
            "10 x NoWait took {took:?}"
        );
        assert!(fired.borrow().is_empty() && got.borrow().is_empty());
        assert_eq!(t.state(), CompletionState::Active);
        assert_eq!(r.state(), CompletionState::Active);
        assert_eq!(lp.active(), 2);
        lp.shutdown();
        assert_eq!(t.state(), CompletionState::Dead);
        assert_eq!(r.state(), CompletionState::Dead);
    });
}

#[test]
fn callback_may_restart_its_own_completion() {
    each_backend(|b| {
        let count = Rc::new(Cell::new(0));
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        fn again(
            count: Rc<Cell<u32>>,
        ) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction + 'static
        {
            move |lp, c, r| {
                assert!(matches!(r, OpResult::Timer(TimerTrigger::Expiration)));
                assert_eq!(c.state(), CompletionState::Dead, "Dead inside its callback");
                count.set(count.get() + 1);
                if count.get() < 3 {
                    lp.timer(c, 1, again(count.clone()));
                }
                CallbackAction::Disarm
            }
        }
        lp.timer(c.as_mut(), 1, again(count.clone()));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(count.get(), 3);
        assert_eq!(c.state(), CompletionState::Dead);
    });
}

#[test]
fn panicking_callback_leaves_loop_and_completion_usable() {
    each_backend(|b| {
        let fired = slot();
        let mut c = pin!(Completion::new());
        let mut other = pin!(Completion::new());
        let mut lp = new_loop(b);
        lp.timer(c.as_mut(), 0, |_, _, _| {
            panic!("callback panics (expected by this test)")
        });
        lp.timer(other.as_mut(), 30, record(&fired));
        let r = catch_unwind(AssertUnwindSafe(|| lp.run(RunMode::UntilDone)));
        let msg = panic_message(&*r.expect_err("the callback's panic propagates out of run"));
        assert!(msg.contains("expected by this test"), "{msg}");
        // The panicking completion is no longer in the loop: Dead, droppable, reusable.
        assert_eq!(c.state(), CompletionState::Dead);
        // The loop is not stuck in "running": it runs the remaining work.
        lp.run(RunMode::UntilDone)
            .expect("run after a panicking callback");
        assert_eq!(fired.borrow().len(), 1);
        lp.timer(c.as_mut(), 0, record(&fired));
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.borrow().len(), 2);
    });
}

#[test]
fn more_results_at_once_than_queue_entries() {
    // 200 receives that all complete in the same tick on a loop with 2 entries: on
    // io_uring that overflows the completion queue, and nothing may be lost.
    each_backend(|b| {
        const N: usize = 200;
        let count = Rc::new(Cell::new(0usize));
        let socks: Vec<(UnixStream, UnixStream)> = (0..N)
            .map(|_| {
                let (x, y) = UnixStream::pair().unwrap();
                x.set_nonblocking(true).unwrap();
                (x, y)
            })
            .collect();
        let mut cs: Vec<Pin<Box<Completion>>> =
            (0..N).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = Loop::new(Options {
            entries: 2,
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        for (c, (x, _)) in cs.iter_mut().zip(&socks) {
            let k = count.clone();
            let op = Op::Recv {
                fd: x.as_raw_fd(),
                buf: Buffer::inline(4),
            };
            lp.start(c.as_mut(), op, move |_, _, r| {
                assert!(matches!(r, OpResult::Recv(Ok(2))), "{r:?}");
                k.set(k.get() + 1);
                CallbackAction::Disarm
            });
        }
        lp.run(RunMode::NoWait).unwrap();
        for (_, y) in &socks {
            use std::io::Write;
            (&*y).write_all(b"ok").unwrap();
        }
        let start = Instant::now();
        lp.run(RunMode::UntilDone).unwrap();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(count.get(), N);
        drop(lp);
        drop(cs);
    });
}

#[test]
fn timer_reset_on_an_active_non_timer_panics_without_harm() {
    each_backend(|b| {
        let got = slot();
        let (x, y) = UnixStream::pair().unwrap();
        x.set_nonblocking(true).unwrap();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let op = Op::Recv {
            fd: x.as_raw_fd(),
            buf: Buffer::inline(4),
        };
        lp.start(c.as_mut(), op, record(&got));
        lp.run(RunMode::NoWait).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            lp.timer_reset(c.as_mut(), 1, record(&got));
        }));
        assert!(r.is_err(), "timer_reset on an Active recv must panic");
        // The recv is untouched and still completes.
        assert_eq!(c.state(), CompletionState::Active);
        use std::io::Write;
        (&y).write_all(b"hi").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        let got = got.borrow();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], OpResult::Recv(Ok(2))), "{:?}", got[0]);
    });
}

#[test]
fn rearm_is_ignored_when_the_callback_restarted_the_completion() {
    each_backend(|b| {
        let fired = slot();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let f = fired.clone();
        lp.timer(c.as_mut(), 0, move |lp, c, r| {
            f.borrow_mut().push(r);
            // Restart with a new operation and callback, and also ask for a rearm: the
            // restart wins, the rearm is ignored (one registration, not two).
            lp.timer(c, 20, record(&f));
            CallbackAction::Rearm
        });
        // The 20 ms timer is armed inside the first run, so time it from before that run
        // (timing from after it let a slow run, e.g. under valgrind, eat into the 20 ms).
        let start = Instant::now();
        lp.run(RunMode::NoWait).unwrap();
        assert_eq!(fired.borrow().len(), 1);
        assert_eq!(lp.active(), 1, "the completion is registered once");
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(19),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(fired.borrow().len(), 2);
        assert_eq!(c.state(), CompletionState::Dead);
    });
}
