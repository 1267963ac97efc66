//! The Process watcher: exit codes, death by signal, children that exited before the
//! wait, errors, cancel, several children on one loop.
//!
//! The watcher reaps every child it reports (`waitid`), so the tests never call
//! `Child::wait` afterwards (that would fail with ECHILD, or reap a reused pid).
#![allow(clippy::zombie_processes)]

use std::cell::RefCell;
use std::io;
use std::pin::pin;
use std::process::{Child, Command};
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{each_backend, new_loop};
use xev::watcher::process::{ExitStatus, Process};
use xev::{Backend, CallbackAction, Completion, Error, OpResult, RunMode};

fn sh(script: &str) -> Child {
    Command::new("sh").args(["-c", script]).spawn().unwrap()
}

type Log = Rc<RefCell<Vec<Result<ExitStatus, Error>>>>;

/// Wait for `proc` on a fresh loop of backend `b`; the single result.
fn wait_once(b: Backend, proc: &Process) -> Result<ExitStatus, Error> {
    let mut c = pin!(Completion::new());
    let mut lp = new_loop(b);
    let log: Log = Rc::default();
    proc.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
        log.borrow_mut().push(r);
        CallbackAction::Disarm
    });
    lp.run(RunMode::UntilDone).unwrap();
    assert_eq!(lp.active(), 0);
    let mut v = log.borrow_mut();
    assert_eq!(v.len(), 1, "exactly one callback: {v:?}");
    v.pop().unwrap()
}

/// The process state letter from /proc/<pid>/stat ('Z' for a zombie), if it exists.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Block until `pid` has exited (is a zombie waiting to be reaped).
fn until_zombie(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(pid) != Some('Z') {
        assert!(Instant::now() < deadline, "child {pid} did not exit");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn exit_code_zero() {
    each_backend(|b| {
        let child = sh("exit 0");
        let p = Process::from_child(&child).unwrap();
        assert_eq!(p.pid(), child.id());
        let st = wait_once(b, &p).unwrap();
        assert_eq!(st, ExitStatus::Exited(0));
        assert!(st.success());
        // Reaped by the watcher: the process no longer exists.
        assert_eq!(proc_state(child.id()), None);
    });
}

#[test]
fn exit_code_42() {
    each_backend(|b| {
        let child = sh("exit 42");
        let p = Process::from_child(&child).unwrap();
        let st = wait_once(b, &p).unwrap();
        assert_eq!(st, ExitStatus::Exited(42));
        assert_eq!(st.code(), Some(42));
        assert!(!st.success());
        let std_status: std::process::ExitStatus = st.into();
        assert_eq!(std_status.code(), Some(42));
    });
}

#[test]
fn killed_by_sigkill_is_reported_as_signaled() {
    each_backend(|b| {
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let p = Process::from_child(&child).unwrap();
        child.kill().unwrap(); // SIGKILL, before the wait is queued
        let st = wait_once(b, &p).unwrap();
        assert_eq!(st, ExitStatus::Signaled(libc::SIGKILL));
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        assert_eq!(st.code(), None);
        use std::os::unix::process::ExitStatusExt;
        let std_status: std::process::ExitStatus = st.into();
        assert_eq!(std_status.signal(), Some(libc::SIGKILL));
    });
}

/// A child killed by a signal that dumps core is `CoreDumped` (with the signal), exactly
/// when the same child reaped by std says it dumped core; with core files forbidden it is
/// `Signaled`. Both agree with std's status word through `From`.
#[test]
fn a_child_that_dumps_core_is_reported_as_core_dumped() {
    use std::os::unix::process::ExitStatusExt;
    each_backend(|b| {
        for dump in [true, false] {
            let child = runtime_tests::CoreChild::new(&format!("watcher-{b:?}-{dump}"), dump);
            let truth = child.std_dumped();
            if dump && !truth {
                eprintln!("this machine writes no core files: CoreDumped not exercised");
            }
            let spawned = child.command().spawn().unwrap();
            let p = Process::from_child(&spawned).unwrap();
            let st = wait_once(b, &p).unwrap();
            let want = if truth {
                ExitStatus::CoreDumped(libc::SIGSEGV)
            } else {
                ExitStatus::Signaled(libc::SIGSEGV)
            };
            assert_eq!(st, want, "dump allowed: {dump}");
            assert_eq!(st.signal(), Some(libc::SIGSEGV));
            assert_eq!(st.code(), None);
            assert_eq!(st.core_dumped(), truth);
            let std_status: std::process::ExitStatus = st.into();
            assert_eq!(std_status.signal(), Some(libc::SIGSEGV));
            assert_eq!(std_status.core_dumped(), truth);
            assert_eq!(st.to_string().ends_with("(core dumped)"), truth, "{st}");
        }
    });
}

#[test]
fn killed_while_the_wait_is_queued() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let child = Command::new("sleep").arg("10").spawn().unwrap();
        let p = Process::from_child(&child).unwrap();
        let log: Log = Rc::default();
        p.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
            log.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        assert!(log.borrow().is_empty(), "still running");
        // SAFETY: plain kill(2) on our own, not yet reaped, child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        lp.run(RunMode::UntilDone).unwrap();
        let v = log.borrow();
        assert!(
            matches!(v[..], [Ok(ExitStatus::Signaled(libc::SIGTERM))]),
            "{v:?}"
        );
    });
}

#[test]
fn child_that_exited_before_the_watcher_was_created() {
    each_backend(|b| {
        let child = sh("exit 7");
        until_zombie(child.id());
        let p = Process::from_child(&child).unwrap();
        assert_eq!(wait_once(b, &p).unwrap(), ExitStatus::Exited(7));
    });
}

#[test]
fn child_that_exited_after_the_watcher_but_before_the_wait() {
    each_backend(|b| {
        let child = sh("exit 9");
        let p = Process::from_child(&child).unwrap();
        until_zombie(child.id());
        assert_eq!(wait_once(b, &p).unwrap(), ExitStatus::Exited(9));
    });
}

#[test]
fn several_children_on_one_loop() {
    each_backend(|b| {
        let mut cs: Vec<_> = (0..5).map(|_| Box::pin(Completion::new())).collect();
        let mut lp = new_loop(b);
        let results: Rc<RefCell<Vec<(u32, ExitStatus)>>> = Rc::default();
        let mut children = Vec::new();
        for (i, c) in cs.iter_mut().enumerate() {
            let child = sh(&format!("sleep 0.0{i}; exit {}", 10 + i));
            let p = Process::from_child(&child).unwrap();
            let pid = child.id();
            p.wait(
                &mut lp,
                c.as_mut(),
                results.clone(),
                move |r, _lp, _c, st| {
                    r.borrow_mut().push((pid, st.unwrap()));
                    CallbackAction::Disarm
                },
            );
            children.push(child);
        }
        lp.run(RunMode::UntilDone).unwrap();
        let mut got = results.borrow().clone();
        got.sort_by_key(|(pid, _)| children.iter().position(|c| c.id() == *pid).unwrap());
        let want: Vec<_> = children
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id(), ExitStatus::Exited(10 + i as i32)))
            .collect();
        assert_eq!(got, want);
    });
}

#[test]
fn child_reaped_elsewhere_reports_echild() {
    each_backend(|b| {
        let mut child = sh("exit 1");
        let p = Process::from_child(&child).unwrap();
        // std reaps it first; the pidfd still reports the exit, waitid finds nothing.
        assert_eq!(child.wait().unwrap().code(), Some(1));
        match wait_once(b, &p) {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ECHILD), "{e}"),
            other => panic!("expected ECHILD, got {other:?}"),
        }
    });
}

#[test]
fn rearm_after_the_exit_reports_echild() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let child = sh("exit 5");
        let p = Process::from_child(&child).unwrap();
        let log: Log = Rc::default();
        p.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
            let again = r.is_ok();
            log.borrow_mut().push(r);
            if again {
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        lp.run(RunMode::UntilDone).unwrap();
        let v = log.borrow();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(matches!(v[0], Ok(ExitStatus::Exited(5))), "{v:?}");
        assert!(
            matches!(&v[1], Err(Error::Io(e)) if e.raw_os_error() == Some(libc::ECHILD)),
            "{v:?}"
        );
    });
}

#[test]
fn cancel_a_wait_then_wait_again() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut cancel = pin!(Completion::new());
        let mut lp = new_loop(b);
        let mut child = Command::new("sleep").arg("10").spawn().unwrap();
        let p = Process::from_child(&child).unwrap();
        let log: Log = Rc::default();
        p.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
            log.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        let cancel_ok = Rc::new(RefCell::new(None));
        let co = cancel_ok.clone();
        lp.cancel(cancel.as_mut(), &c, move |_, _, r| {
            *co.borrow_mut() = Some(matches!(r, OpResult::Cancel(Ok(()))));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*cancel_ok.borrow(), Some(true));
        assert!(
            matches!(log.borrow()[..], [Err(Error::Canceled)]),
            "{:?}",
            log.borrow()
        );
        // The child was not reaped by the cancelled wait: wait again after killing it.
        child.kill().unwrap();
        assert_eq!(
            wait_once(b, &p).unwrap(),
            ExitStatus::Signaled(libc::SIGKILL)
        );
    });
}

#[test]
fn dropping_the_process_while_waiting_is_fine() {
    each_backend(|b| {
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let child = sh("sleep 0.02; exit 4");
        let p = Process::from_child(&child).unwrap();
        let log: Log = Rc::default();
        p.wait(&mut lp, c.as_mut(), log.clone(), |log, _lp, _c, r| {
            log.borrow_mut().push(r);
            CallbackAction::Disarm
        });
        drop(p); // the queued wait keeps the pidfd open
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(log.borrow()[..], [Ok(ExitStatus::Exited(4))]));
    });
}

#[test]
fn bad_pids() {
    let e = Process::new(u32::MAX).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    // Above any pid_max (at most 2^22), so no such process.
    let e = Process::new(i32::MAX as u32).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{e}");
}
