//! The thread pool's result hand-off against loop drop (issue #9 item 4).
//!
//! A pool worker pushes its result and then touches the loop's sink again (the wake flag,
//! the wake-up eventfd). The loop can see the push, run the callback and be dropped in
//! between; the job therefore owns a strong reference to everything it touches. This
//! test drops the loop right after each result, thousands of times, so that window is
//! hit often: under AddressSanitizer (CI) a job touching freed state is reported, and a
//! wake-up written to a closed (and reused) eventfd number would corrupt the next loop.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::pin::pin;

use runtime_tests::{only, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

#[test]
fn loop_dropped_right_after_a_pool_result_is_fine() {
    if !Backend::Epoll.is_available() {
        eprintln!("SKIPPED: the poll backend is not available");
        return;
    }
    let dir = std::env::temp_dir().join(format!("xev-pool-handoff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"0123456789").unwrap();
    // A pool shared by every loop, so workers stay warm and results come back fast.
    let pool = ThreadPool::new(ThreadPoolOptions::default());
    let rounds = if cfg!(debug_assertions) { 2000 } else { 10000 };
    for i in 0..rounds {
        let mut c = pin!(Completion::new());
        let mut lp = Loop::new(Options {
            backend: Some(Backend::Epoll),
            thread_pool: Some(pool.clone()),
            ..Options::default()
        })
        .unwrap();
        let res = results();
        // A pwrite always runs on the pool under the poll backend.
        lp.start(
            c.as_mut(),
            Op::Pwrite {
                fd: f.as_raw_fd(),
                buf: Buffer::copy_from(b"ab"),
                offset: (i % 8) as u64,
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Pwrite(Ok(2))), "round {i}");
        drop(lp);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A loop dropped while pool jobs are still queued withdraws them rather than waiting
/// for them, and a job a worker already runs is waited for: no hang, no callback.
#[test]
fn loop_dropped_with_queued_pool_jobs_withdraws_them() {
    if !Backend::Epoll.is_available() {
        eprintln!("SKIPPED: the poll backend is not available");
        return;
    }
    let dir = std::env::temp_dir().join(format!("xev-pool-withdraw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::File::create(dir.join("f")).unwrap();
    // One worker, kept busy, so the loop's jobs stay queued.
    let pool = ThreadPool::new(ThreadPoolOptions {
        max_threads: 1,
        ..ThreadPoolOptions::default()
    });
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    pool.execute(move || {
        let _ = rx.recv_timeout(std::time::Duration::from_secs(10));
    });
    let mut cs: Vec<_> = (0..8).map(|_| Box::pin(Completion::new())).collect();
    let mut lp = Loop::new(Options {
        backend: Some(Backend::Epoll),
        thread_pool: Some(pool.clone()),
        ..Options::default()
    })
    .unwrap();
    let res = results();
    for c in &mut cs {
        lp.start(
            c.as_mut(),
            Op::Pwrite {
                fd: f.as_raw_fd(),
                buf: Buffer::copy_from(b"x"),
                offset: 0,
            },
            record(&res),
        );
    }
    let start = std::time::Instant::now();
    drop(lp);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "drop waited for queued jobs"
    );
    assert!(res.borrow().is_empty(), "no callback after drop");
    assert!(cs.iter().all(|c| c.state() == CompletionState::Dead));
    drop(tx);
    std::fs::remove_dir_all(&dir).unwrap();
}
