//! Spawn a child process and wait for its exit on the loop with the [`Process`] watcher.
//!
//! ```text
//! cargo run --example process_wait                  # runs: sh -c "exit 42"
//! cargo run --example process_wait -- sleep 0.1     # any command
//! cargo run --example process_wait -- sh -c 'kill -9 $$'
//! ```
//!
//! The watcher reaps the child, so the `std::process::Child` is only dropped afterwards,
//! never waited for again.
//!
//! Unix only for now: the `Process` watcher is not on Windows yet.

#[cfg(unix)]
use std::cell::Cell;
#[cfg(unix)]
use std::pin::pin;
#[cfg(unix)]
use std::process::Command;
#[cfg(unix)]
use std::rc::Rc;
#[cfg(unix)]
use std::time::Instant;

#[cfg(unix)]
use xev::watcher::process::{ExitStatus, Process};
#[cfg(unix)]
use xev::{CallbackAction, Completion, Loop, Options, RunMode};

#[cfg(not(unix))]
fn main() {
    eprintln!("process_wait: Unix only (xev's Process watcher is not on this platform yet)");
    std::process::exit(2);
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (program, rest) = match args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (
            "sh".to_string(),
            vec!["-c".to_string(), "exit 42".to_string()],
        ),
    };

    let mut c = pin!(Completion::new());
    let mut lp = Loop::new(Options::default())?;
    let started = Instant::now();
    let child = Command::new(&program).args(&rest).spawn()?;
    let proc = Process::from_child(&child)?;
    println!(
        "backend {}: spawned {program} {rest:?} as pid {}",
        lp.backend().name(),
        proc.pid()
    );

    let status: Rc<Cell<Option<ExitStatus>>> = Rc::default();
    proc.wait(&mut lp, c.as_mut(), status.clone(), |status, _lp, _c, r| {
        match r {
            Ok(s) => status.set(Some(s)),
            Err(e) => eprintln!("wait failed: {e}"),
        }
        CallbackAction::Disarm
    });
    lp.run(RunMode::UntilDone)?;
    drop(child); // already reaped by the watcher

    match status.get() {
        Some(ExitStatus::Exited(code)) => {
            println!("exited with code {code} after {:.1?}", started.elapsed())
        }
        Some(s @ (ExitStatus::Signaled(_) | ExitStatus::CoreDumped(_))) => {
            println!("{s} after {:.1?}", started.elapsed())
        }
        None => return Err("no exit status".into()),
    }
    Ok(())
}
