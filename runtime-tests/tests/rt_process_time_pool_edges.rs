//! Child processes, time and the blocking pool used past their usual path: regression
//! tests for the hangs and panics a third soundness review found, on every backend.

use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use runtime_tests::{each_backend_within, PanicOnDrop};
use xev::rt::Builder;
use xev::{ThreadPool, ThreadPoolOptions};

// ---------------------------------------------------------------------------------------
// ThreadPool: a job whose panic payload panics when dropped must not lose the worker.
// ---------------------------------------------------------------------------------------

#[test]
fn a_pool_job_whose_panic_payload_panics_when_dropped_does_not_lose_the_worker() {
    each_backend_within(Duration::from_secs(10), |b| {
        let pool = ThreadPool::new(ThreadPoolOptions {
            max_threads: 1,
            ..Default::default()
        });
        pool.execute(|| std::panic::panic_any(PanicOnDrop));
        let rt = Builder::new().backend(b).thread_pool(pool).build().unwrap();
        let v = rt.block_on(async { xev::spawn_blocking(|| 42).await.unwrap() });
        assert_eq!(v, 42);
    });
}

/// A pool that cannot start a thread (here: a worker stack larger than the address
/// space) loses no job: each runs on the thread that queued it, and the loop's file
/// reads (pool jobs on epoll), `spawn_blocking` and a file read through the callback API
/// all finish with the right result.
#[test]
fn a_pool_that_cannot_start_a_thread_runs_its_jobs_on_the_caller() {
    fn unstartable() -> ThreadPool {
        ThreadPool::new(ThreadPoolOptions {
            stack_size: 1 << 50,
            ..Default::default()
        })
    }
    let pool = unstartable();
    let (tx, rx) = std_mpsc::channel();
    pool.execute(move || tx.send(std::thread::current().id()).unwrap());
    assert_eq!(
        rx.try_recv(),
        Ok(std::thread::current().id()),
        "ran at once, here"
    );
    assert_eq!(pool.threads(), 0);

    let path = std::env::temp_dir().join(format!("xev-unstartable-{}", std::process::id()));
    std::fs::write(&path, b"read on the caller").unwrap();
    each_backend_within(Duration::from_secs(10), |b| {
        let path = std::env::temp_dir().join(format!("xev-unstartable-{}", std::process::id()));
        let rt = Builder::new()
            .backend(b)
            .thread_pool(unstartable())
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(xev::fs::read(&path).await.unwrap(), b"read on the caller");
            let here = std::thread::current().id();
            let there = xev::spawn_blocking(|| std::thread::current().id()).await;
            assert_eq!(there.unwrap(), here);
        });

        // The callback API: a read of a regular file (a pool job on epoll).
        let file = std::fs::File::open(&path).unwrap();
        let mut lp = xev::Loop::new(xev::Options {
            backend: Some(b),
            thread_pool: Some(unstartable()),
            ..Default::default()
        })
        .unwrap();
        let mut c = std::pin::pin!(xev::Completion::new());
        let res = runtime_tests::results();
        use std::os::fd::AsRawFd;
        let op = xev::Op::Read {
            fd: file.as_raw_fd(),
            buf: xev::Buffer::from(vec![0u8; 64]),
        };
        lp.start(c.as_mut(), op, runtime_tests::record(&res));
        lp.run(xev::RunMode::UntilDone).unwrap();
        let r = runtime_tests::only(&res);
        assert!(matches!(r, xev::OpResult::Read(Ok(18))), "{r:?}");
        assert_eq!(&c.buffer().unwrap().as_slice()[..18], b"read on the caller");
    });
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------------
// Time: sleeps carried between runtimes, extreme durations.
// ---------------------------------------------------------------------------------------

/// Poll `fut` once with a no-op waker.
fn poll_once<F: std::future::Future>(fut: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    fut.poll(&mut cx)
}

#[test]
fn a_sleep_registered_on_a_dropped_runtime_fires_on_the_next() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut s = Box::pin(xev::time::sleep(Duration::from_millis(20)));
        let a = Builder::new().backend(b).build().unwrap();
        a.block_on(async {
            assert!(poll_once(s.as_mut()).is_pending());
        });
        drop(a);
        let b2 = Builder::new().backend(b).build().unwrap();
        b2.block_on(async { s.as_mut().await });
        drop(s);
    });
}

#[test]
fn extreme_durations_neither_panic_nor_fire() {
    each_backend_within(Duration::from_secs(10), |b| {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let far = xev::time::sleep(Duration::MAX);
            assert!(xev::time::timeout(Duration::from_millis(5), far)
                .await
                .is_err());
            assert!(xev::time::timeout(Duration::MAX, async { 3 }).await == Ok(3));
            assert!(
                xev::time::timeout(Duration::ZERO, std::future::pending::<()>())
                    .await
                    .is_err()
            );
            assert_eq!(xev::time::timeout(Duration::ZERO, async { 4 }).await, Ok(4));
            let mut iv = xev::time::interval(Duration::MAX);
            iv.tick().await;
            assert!(xev::time::timeout(Duration::from_millis(5), iv.tick())
                .await
                .is_err());
            let mut iv = xev::time::interval(Duration::from_nanos(1));
            for _ in 0..100 {
                iv.tick().await;
            }
            let past = std::time::Instant::now() - Duration::from_secs(1);
            xev::time::sleep_until(past).await;
            let mut s = std::pin::pin!(xev::time::sleep(Duration::MAX));
            assert!(poll_once(s.as_mut()).is_pending());
            s.as_mut().reset(std::time::Instant::now());
            s.as_mut().await;
        });
    });
}

// ---------------------------------------------------------------------------------------
// Processes: a wait carried to another runtime, waits after the child is reaped.
// ---------------------------------------------------------------------------------------

#[test]
fn a_child_wait_started_on_a_dropped_runtime_completes_on_the_next() {
    each_backend_within(Duration::from_secs(10), |b| {
        let mut child =
            xev::process::spawn(std::process::Command::new("sleep").arg("0.1")).unwrap();
        let a = Builder::new().backend(b).build().unwrap();
        a.block_on(async {
            let mut w = std::pin::pin!(child.wait());
            assert!(poll_once(w.as_mut()).is_pending());
            // Give the loop a turn with the wait in flight.
            xev::time::sleep(Duration::from_millis(1)).await;
        });
        drop(a);
        let b2 = Builder::new().backend(b).build().unwrap();
        let st = b2.block_on(child.wait()).unwrap();
        assert!(st.success());
        // Reaped: the same status again, signals are no-ops.
        assert!(child.try_wait().unwrap().unwrap().success());
        child.kill().unwrap();
        assert!(b2.block_on(child.wait()).unwrap().success());
    });
}

#[test]
fn two_watcher_waits_on_one_process_report_once_and_do_not_hang() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use xev::watcher::process::Process;
    use xev::{CallbackAction, Completion, RunMode};
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = runtime_tests::new_loop(b);
        let child = std::process::Command::new("true").spawn().unwrap();
        let p = Process::from_child(&child).unwrap();
        let got = Rc::new(RefCell::new(Vec::new()));
        let mut c1 = Box::pin(Completion::new());
        let mut c2 = Box::pin(Completion::new());
        for c in [c1.as_mut(), c2.as_mut()] {
            p.wait(&mut lp, c, got.clone(), |g, _, _, r| {
                g.borrow_mut().push(r.map_err(|e| e.to_string()));
                CallbackAction::Disarm
            });
        }
        lp.run(RunMode::UntilDone).unwrap();
        let got = got.borrow();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 1, "{got:?}");
        drop(child);
    });
}

// ---------------------------------------------------------------------------------------
// spawn_blocking: the runtime dropped while the job runs.
// ---------------------------------------------------------------------------------------

#[test]
fn a_runtime_dropped_while_a_blocking_job_runs_lets_it_finish() {
    each_backend_within(Duration::from_secs(10), |b| {
        let (tx, rx) = std_mpsc::channel();
        let rt = Builder::new().backend(b).build().unwrap();
        let mut h = None;
        rt.block_on(async {
            h = Some(xev::spawn_blocking(move || {
                std::thread::sleep(Duration::from_millis(50));
                tx.send(1).unwrap();
                PanicOnDrop
            }));
            xev::time::sleep(Duration::from_millis(1)).await;
        });
        drop(rt);
        drop(h);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        std::thread::sleep(Duration::from_millis(50));
    });
}

/// A non-blocking pipe: (read end, write end).
fn raw_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are new and owned by nobody else.
    unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn a_pidfd_number_reused_by_a_pipe_and_back_is_polled_correctly() {
    use std::cell::Cell;
    use std::os::fd::AsRawFd;
    use std::rc::Rc;
    use xev::watcher::process::Process;
    use xev::{CallbackAction, Completion, Op, PollEvents, RunMode};
    each_backend_within(Duration::from_secs(20), |b| {
        let mut lp = runtime_tests::new_loop(b);
        for _ in 0..4 {
            // A process wait (its pidfd polled while the child runs), then the pidfd closed.
            let child = std::process::Command::new("sleep")
                .arg("0.02")
                .spawn()
                .unwrap();
            let p = Process::from_child(&child).unwrap();
            let ok = Rc::new(Cell::new(false));
            let mut c = Box::pin(Completion::new());
            p.wait(&mut lp, c.as_mut(), ok.clone(), |ok, _, _, r| {
                ok.set(r.unwrap().success());
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
            assert!(ok.get());
            drop(p);
            drop(child);
            // A pipe that (most likely) gets the pidfd's number, polled for readability.
            let (r, w) = raw_pipe();
            // SAFETY: writes one byte from a valid buffer to the pipe's write end.
            assert_eq!(
                unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) },
                1
            );
            let got = Rc::new(Cell::new(false));
            let g = got.clone();
            let mut c2 = Box::pin(Completion::new());
            c2.as_mut().prep(
                Op::Poll {
                    fd: r.as_raw_fd(),
                    events: PollEvents::IN,
                },
                move |_, _, res| {
                    assert!(matches!(res, xev::OpResult::Poll(Ok(_))), "{res:?}");
                    g.set(true);
                    CallbackAction::Disarm
                },
            );
            lp.add(c2.as_mut());
            lp.run(RunMode::UntilDone).unwrap();
            assert!(got.get());
            drop((r, w));
        }
    });
}

#[test]
fn timer_watcher_extreme_deadlines_cancel_and_reset() {
    use std::cell::RefCell;
    use std::rc::Rc;
    use xev::{CallbackAction, Completion, RunMode, Timer};
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = runtime_tests::new_loop(b);
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut t = Box::pin(Completion::new());
        let mut k = Box::pin(Completion::new());
        Timer::new().run(&mut lp, t.as_mut(), u64::MAX, log.clone(), |l, _, _, r| {
            l.borrow_mut().push(format!("t {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::NoWait).unwrap();
        // Reset to "now", then cancel: the reset timer fires or is cancelled, once.
        Timer::new().reset(
            &mut lp,
            t.as_mut(),
            u64::MAX - 1,
            log.clone(),
            |l, _, _, r| {
                l.borrow_mut().push(format!("r {r:?}"));
                CallbackAction::Disarm
            },
        );
        Timer::new().cancel(&mut lp, &t, k.as_mut(), log.clone(), |l, _, _, r| {
            l.borrow_mut().push(format!("k {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let got = log.borrow().clone();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got.contains(&"r Err(Canceled)".to_string()), "{got:?}");
        assert!(got.contains(&"k Ok(())".to_string()), "{got:?}");
        // A timer reset to 0 from its own callback a few times, then done.
        let n = Rc::new(std::cell::Cell::new(0));
        Timer::new().run(&mut lp, t.as_mut(), 0, n.clone(), |n, lp, c, _| {
            n.set(n.get() + 1);
            if n.get() < 5 {
                Timer::new().reset(lp, c, 0, (), |_, _, _, _| CallbackAction::Disarm);
            }
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(n.get(), 1);
    });
}

// ---------------------------------------------------------------------------------------
// Loop timers: a reset whose old callback panics when dropped.
// ---------------------------------------------------------------------------------------

#[test]
fn a_timer_reset_whose_old_callback_panics_when_dropped_leaves_the_timer_armed() {
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::rc::Rc;
    use xev::{CallbackAction, Completion, RunMode};
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = runtime_tests::new_loop(b);
        let mut t = Box::pin(Completion::new());
        let bomb = PanicOnDrop;
        lp.timer(t.as_mut(), 60_000, move |_, _, _| {
            let _ = &bomb;
            CallbackAction::Disarm
        });
        let fired = Rc::new(Cell::new(0));
        let f = fired.clone();
        let r = catch_unwind(AssertUnwindSafe(|| {
            lp.timer_reset(t.as_mut(), 0, move |_, _, _| {
                f.set(f.get() + 1);
                CallbackAction::Disarm
            })
        }));
        assert!(r.is_err(), "the old callback's drop panicked");
        // The reset took effect all the same: the timer is armed, fires once, and the
        // completion ends Dead (dropping an Active one would abort the process).
        assert_eq!(t.state(), xev::CompletionState::Active);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(fired.get(), 1);
        assert_eq!(t.state(), xev::CompletionState::Dead);
    });
}

// ---------------------------------------------------------------------------------------
// A callback that replaces itself (re-prepares its completion) and is then dropped.
// ---------------------------------------------------------------------------------------

#[test]
fn a_callback_replaced_in_itself_whose_drop_panics_leaves_its_completion_dead() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use xev::{CallbackAction, Completion, Op, RunMode};
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = runtime_tests::new_loop(b);
        let mut c = Box::pin(Completion::new());
        let bomb = PanicOnDrop;
        c.as_mut().prep(Op::Timer { ms: 0 }, move |_, c, _| {
            let _ = &bomb;
            c.prep(Op::Noop, |_, _, _| CallbackAction::Disarm);
            CallbackAction::Disarm
        });
        lp.add(c.as_mut());
        let r = catch_unwind(AssertUnwindSafe(|| lp.run(RunMode::UntilDone)));
        assert!(r.is_err(), "the replaced callback's drop panicked");
        // The callback returned: its completion is Dead and can be used (and dropped).
        assert_eq!(c.state(), xev::CompletionState::Dead);
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        drop(c);
    });
}

#[test]
fn a_completion_owned_only_by_its_replaced_callback_is_freed_without_abort() {
    use std::cell::{Cell, RefCell};
    use std::pin::Pin;
    use std::rc::Rc;
    use xev::{CallbackAction, Completion, Op, RunMode};
    each_backend_within(Duration::from_secs(10), |b| {
        let mut lp = runtime_tests::new_loop(b);
        type Slot = Rc<RefCell<Option<Pin<Box<Completion>>>>>;
        let slot: Slot = Rc::new(RefCell::new(Some(Box::pin(Completion::new()))));
        let ran = Rc::new(Cell::new(false));
        let (owner, r2) = (slot.clone(), ran.clone());
        let mut guard = slot.borrow_mut();
        let c = guard.as_mut().unwrap();
        c.as_mut().prep(Op::Timer { ms: 0 }, move |_, c, _| {
            let _ = &owner; // the old callback owns the completion (through `owner`)
            r2.set(true);
            c.prep(Op::Noop, |_, _, _| CallbackAction::Disarm);
            CallbackAction::Disarm
        });
        lp.add(c.as_mut());
        drop(guard);
        drop(slot); // now only the callback owns the completion
        lp.run(RunMode::UntilDone).unwrap();
        assert!(ran.get());
    });
}

// ---------------------------------------------------------------------------------------
// Reads and accepts with a zero time limit: a result that arrives as the limit passes is
// never lost.
// ---------------------------------------------------------------------------------------

#[test]
fn zero_limit_reads_and_accepts_lose_no_data_and_no_connection() {
    each_backend_within(Duration::from_secs(20), |b| {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let mut accepted = Vec::new();
            for _ in 0..20 {
                let c = xev::net::TcpStream::connect(addr).await.unwrap();
                loop {
                    match l.accept_timeout(Duration::ZERO).await {
                        Ok((s, _)) => {
                            accepted.push((c, s));
                            break;
                        }
                        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
                    }
                }
            }
            let (c, s) = accepted.pop().unwrap();
            let mut got = 0usize;
            for i in 0..200u32 {
                let (r, _) = c.write_all(vec![i as u8; 3]).await;
                r.unwrap();
                let want = got + 3;
                while got < want {
                    let (r, _) = s.read_timeout(vec![0u8; 2], Duration::ZERO).await;
                    match r {
                        Ok(n) => got += n,
                        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}"),
                    }
                }
            }
            assert_eq!(got, 600);
        });
    });
}
