//! The Signal watcher (signalfd). Every signal here is thread-directed (`raise`) at the
//! test's own thread, which blocks it first: a process-directed signal could be delivered
//! to another test thread that does not block it and kill the test binary.

use std::cell::RefCell;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;

use runtime_tests::{each_backend, new_loop};
use xev::watcher::signal::Signal;
use xev::{CallbackAction, Completion, Error, Loop, OpResult, RunMode};

type Log = Rc<RefCell<Vec<Result<i32, Error>>>>;

/// Send `sig` to the calling thread only.
fn raise(sig: i32) {
    // SAFETY: raise(3) sends to the calling thread; every caller blocks `sig` first.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is ours and valid.
    unsafe { libc::sigemptyset(&mut set) };
    for &s in sigs {
        // SAFETY: as above; the numbers are valid signals.
        assert_eq!(unsafe { libc::sigaddset(&mut set, s) }, 0);
    }
    set
}

/// Block (`how = SIG_BLOCK`) or unblock (`SIG_UNBLOCK`) `sigs` in this thread.
fn mask(how: i32, sigs: &[i32]) {
    let set = sigset(sigs);
    // SAFETY: `set` is initialised; no old set requested.
    assert_eq!(
        unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) },
        0
    );
}

/// Whether `sig` is pending for this thread (or the process).
fn pending(sig: i32) -> bool {
    let mut set = sigset(&[]);
    // SAFETY: writes into `set`, which is ours.
    assert_eq!(unsafe { libc::sigpending(&mut set) }, 0);
    // SAFETY: `set` was filled by sigpending.
    unsafe { libc::sigismember(&set, sig) == 1 }
}

/// Take a pending, blocked `sig` without delivering it.
fn consume(sig: i32) -> bool {
    let set = sigset(&[sig]);
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid set and timeout; no siginfo requested.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == sig }
}

/// A wait callback that logs each result and rearms until `keep` results are logged.
fn logger(
    keep: usize,
) -> impl FnMut(&mut Log, &mut Loop, Pin<&mut Completion>, Result<i32, Error>) -> CallbackAction {
    move |log, _lp, _c, r| {
        log.borrow_mut().push(r);
        if log.borrow().len() < keep {
            CallbackAction::Rearm
        } else {
            CallbackAction::Disarm
        }
    }
}

#[test]
fn raised_sigusr1_reaches_the_callback() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGUSR1]).unwrap();
        assert_eq!(sig.signals(), &[libc::SIGUSR1]);
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
        lp.run(RunMode::NoWait).unwrap();
        assert!(log.borrow().is_empty(), "nothing raised yet");
        raise(libc::SIGUSR1);
        lp.run(RunMode::UntilDone).unwrap();
        let v = log.borrow();
        assert!(matches!(v[..], [Ok(libc::SIGUSR1)]), "{v:?}");
        assert!(!pending(libc::SIGUSR1), "consumed by the signalfd");
    });
}

#[test]
fn signal_raised_before_the_wait_is_delivered() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGHUP]).unwrap();
        raise(libc::SIGHUP);
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(log.borrow()[..], [Ok(libc::SIGHUP)]));
    });
}

#[test]
fn rearm_receives_two_signals_in_a_row() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGUSR1, libc::SIGUSR2]).unwrap();
        raise(libc::SIGUSR2);
        raise(libc::SIGUSR1);
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(2));
        lp.run(RunMode::UntilDone).unwrap();
        let got: Vec<i32> = log.borrow().iter().map(|r| *r.as_ref().unwrap()).collect();
        // signalfd dequeues the lowest-numbered pending signal first.
        assert_eq!(got, [libc::SIGUSR1, libc::SIGUSR2]);

        // The same signal twice: raised again from the callback, received by the rearm.
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
            log.borrow_mut().push(r);
            if log.borrow().len() < 2 {
                raise(libc::SIGUSR1);
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        raise(libc::SIGUSR1);
        lp.run(RunMode::UntilDone).unwrap();
        let got: Vec<i32> = log.borrow().iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(got, [libc::SIGUSR1, libc::SIGUSR1]);
    });
}

#[test]
fn realtime_signals_queue_one_callback_each() {
    each_backend(|b| {
        let rt = libc::SIGRTMIN() + 3;
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[rt]).unwrap();
        for _ in 0..3 {
            raise(rt);
        }
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(3));
        lp.run(RunMode::UntilDone).unwrap();
        let got: Vec<i32> = log.borrow().iter().map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(got, [rt, rt, rt]);
        // The watcher tells the backend its signalfd is no regular file: the poll backend
        // never asks the kernel, neither at the start nor at the two rearms.
        assert_eq!(lp.poll_kind_lookups(), 0, "{b:?}");
    });
}

#[test]
fn unwatched_sigusr2_is_not_reported() {
    each_backend(|b| {
        // Block SIGUSR2 ourselves so that raising it does not kill the test.
        mask(libc::SIG_BLOCK, &[libc::SIGUSR2]);
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGUSR1]).unwrap();
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
        raise(libc::SIGUSR2);
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert!(
            log.borrow().is_empty(),
            "SIGUSR2 reported: {:?}",
            log.borrow()
        );
        raise(libc::SIGUSR1);
        lp.run(RunMode::UntilDone).unwrap();
        assert!(
            matches!(log.borrow()[..], [Ok(libc::SIGUSR1)]),
            "{:?}",
            log.borrow()
        );
        // SIGUSR2 is still pending for this thread: take it, then unblock.
        assert!(pending(libc::SIGUSR2));
        assert!(consume(libc::SIGUSR2));
        assert!(!pending(libc::SIGUSR2));
        mask(libc::SIG_UNBLOCK, &[libc::SIGUSR2]);
    });
}

#[test]
fn cancelled_wait_reports_canceled() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGUSR1]).unwrap();
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
        lp.run(RunMode::NoWait).unwrap();
        let cancelled = Rc::new(RefCell::new(None));
        let cl = cancelled.clone();
        lp.cancel(cancel.as_mut(), &c, move |_, _, r| {
            *cl.borrow_mut() = Some(matches!(r, OpResult::Cancel(Ok(()))));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*cancelled.borrow(), Some(true));
        assert!(
            matches!(log.borrow()[..], [Err(Error::Canceled)]),
            "{:?}",
            log.borrow()
        );
    });
}

#[test]
fn dropping_the_signal_while_waiting_is_fine() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let sig = Signal::new(&[libc::SIGUSR1]).unwrap();
        let log: Log = Rc::default();
        sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
        drop(sig); // the queued wait keeps the signalfd open
        raise(libc::SIGUSR1);
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(log.borrow()[..], [Ok(libc::SIGUSR1)]));
    });
}

#[test]
fn invalid_signal_sets_are_refused() {
    for bad in [
        &[][..],
        &[libc::SIGKILL],
        &[libc::SIGSTOP],
        &[0],
        &[1000],
        &[-1],
    ] {
        let e = Signal::new(bad).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
    }
}

/// A loop blocks `SIGPIPE` in its thread for its first write (so a write to a broken pipe
/// is `EPIPE`), and its end used to consume a pending `SIGPIPE` and unblock it. A
/// `Signal` for `SIGPIPE` created on that thread meanwhile takes the block over: after
/// the loop's end, a `SIGPIPE` raised before it and one raised after it both reach the
/// signalfd (the first was consumed, the second, unblocked under Rust's `SIG_IGN`,
/// discarded).
#[test]
fn a_sigpipe_signal_keeps_hearing_after_the_loops_that_blocked_it_end() {
    each_backend(|b| {
        // A thread of its own: the test changes its mask for good.
        std::thread::spawn(move || {
            assert!(!pending(libc::SIGPIPE));
            let mut lp = new_loop(b);
            // The loop's first write blocks SIGPIPE here: a broken pipe gives EPIPE.
            let (r, w) = std::io::pipe().unwrap();
            drop(r);
            let mut c = pin!(Completion::new());
            let got = Rc::new(RefCell::new(None));
            let g = got.clone();
            use std::os::fd::AsRawFd;
            lp.start(
                c.as_mut(),
                xev::Op::Write {
                    fd: w.as_raw_fd(),
                    buf: xev::Buffer::copy_from(b"x"),
                },
                move |_, _, r| {
                    *g.borrow_mut() = Some(r);
                    CallbackAction::Disarm
                },
            );
            lp.run(RunMode::UntilDone).unwrap();
            let r = got.borrow_mut().take();
            assert!(
                matches!(&r, Some(OpResult::Write(Err(Error::Io(e)))) if e.raw_os_error() == Some(libc::EPIPE)),
                "{b:?}: {r:?}"
            );
            let sig = Signal::new(&[libc::SIGPIPE]).unwrap();
            raise(libc::SIGPIPE);
            drop(lp);
            assert!(pending(libc::SIGPIPE), "{b:?}: the loop's end consumed it");
            let mut lp = new_loop(b);
            let mut c = pin!(Completion::new());
            let log: Log = Rc::default();
            sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
            lp.run(RunMode::UntilDone).unwrap();
            assert!(matches!(log.borrow()[..], [Ok(libc::SIGPIPE)]), "{b:?}: {:?}", log.borrow());
            // Still blocked: a later one is heard too.
            raise(libc::SIGPIPE);
            assert!(pending(libc::SIGPIPE), "{b:?}: unblocked, so ignored");
            let log: Log = Rc::default();
            let mut c = pin!(Completion::new());
            sig.wait(&mut lp, c.as_mut(), log.clone(), logger(1));
            lp.run(RunMode::UntilDone).unwrap();
            assert!(matches!(log.borrow()[..], [Ok(libc::SIGPIPE)]), "{b:?}: {:?}", log.borrow());
        })
        .join()
        .unwrap();
    });
}
