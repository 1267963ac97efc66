//! Dropping an Active completion cannot be made safe, so it aborts the process with a
//! clear message. Each case runs in a child process (this test binary re-executed with
//! `XEV_ABORT_CASE` set), and the parent checks the signal and the message.

use std::os::unix::process::ExitStatusExt;
use std::pin::Pin;
use std::process::Command;

use runtime_tests::new_loop;
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// Runs in the child: a completion is dropped while its timer is still in the loop.
fn drop_active_completion(backend: Backend) {
    let mut lp = new_loop(backend);
    let mut c = Box::pin(Completion::new());
    lp.timer(c.as_mut(), 60_000, |_, _, _| CallbackAction::Disarm);
    // Keep the loop from draining it first, then drop the Active completion.
    std::mem::forget(lp);
    drop(c);
    unreachable!("dropping an Active completion must abort");
}

/// Runs in the child: a completion is dropped from inside its own callback.
fn drop_inside_own_callback(backend: Backend) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut lp = new_loop(backend);
    let slot: Rc<RefCell<Option<Pin<Box<Completion>>>>> = Rc::new(RefCell::new(None));
    let mut c = Box::pin(Completion::new());
    let s = slot.clone();
    lp.timer(c.as_mut(), 0, move |_, _, _| {
        s.borrow_mut().take(); // drops the completion whose callback this is
        CallbackAction::Disarm
    });
    *slot.borrow_mut() = Some(c);
    let _ = lp.run(RunMode::UntilDone);
    unreachable!("dropping a completion inside its callback must abort");
}

fn child_case() -> Option<(String, Backend)> {
    let case = std::env::var("XEV_ABORT_CASE").ok()?;
    let backend = std::env::var("XEV_ABORT_BACKEND").ok()?;
    let b = Backend::candidates()
        .iter()
        .copied()
        .find(|b| b.name() == backend)?;
    Some((case, b))
}

fn run_case(case: &str, test_name: &str, expect: &str) {
    for b in Backend::available() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
            .env("XEV_ABORT_CASE", case)
            .env("XEV_ABORT_BACKEND", b.name())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{b:?}: {case}: status {:?}, stderr {stderr}",
            out.status
        );
        assert!(
            stderr.contains(expect),
            "{b:?}: {case}: stderr lacks {expect:?}: {stderr}"
        );
    }
}

#[test]
fn dropping_an_active_completion_aborts_with_a_message() {
    if let Some((case, b)) = child_case() {
        if case == "active" {
            drop_active_completion(b);
        }
        return;
    }
    run_case(
        "active",
        "dropping_an_active_completion_aborts_with_a_message",
        "dropped while Active",
    );
}

#[test]
fn dropping_a_completion_inside_its_callback_aborts_with_a_message() {
    if let Some((case, b)) = child_case() {
        if case == "callback" {
            drop_inside_own_callback(b);
        }
        return;
    }
    run_case(
        "callback",
        "dropping_a_completion_inside_its_callback_aborts_with_a_message",
        "inside its own callback",
    );
}
