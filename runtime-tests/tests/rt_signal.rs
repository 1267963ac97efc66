//! `xev::signal`. Every signal here is thread-directed (`raise`) at the test's own
//! thread, which runs the runtime and blocks the signal (through `Signals::new`) first: a
//! process-directed signal could be delivered to another test thread that does not block
//! it and kill the test binary.

use std::io;
use std::time::Duration;

use xev::signal::{self, Signals};
use xev::time::{sleep, timeout};

/// Send `sig` to the calling thread only.
fn raise(sig: i32) {
    // SAFETY: raise(3) sends to the calling thread; every caller blocks `sig` first.
    assert_eq!(unsafe { libc::raise(sig) }, 0);
}

#[xev::test(backend = "all")]
async fn sigusr1_raised_to_self_is_received_twice() -> io::Result<()> {
    let mut sigs = Signals::new(&[libc::SIGUSR1])?;
    assert_eq!(sigs.signals(), &[libc::SIGUSR1]);
    // Pending before the read starts.
    raise(libc::SIGUSR1);
    assert_eq!(sigs.recv().await?, libc::SIGUSR1);
    raise(libc::SIGUSR1);
    assert_eq!(sigs.recv().await?, libc::SIGUSR1);
    // Raised while the read is parked (from a task on the same thread).
    let t = xev::spawn(async {
        sleep(Duration::from_millis(20)).await;
        raise(libc::SIGUSR1);
    });
    let got = timeout(Duration::from_secs(5), sigs.recv()).await;
    assert_eq!(
        got.expect("the parked read sees the signal")?,
        libc::SIGUSR1
    );
    t.await.unwrap();
    // Nothing more is pending.
    assert!(timeout(Duration::from_millis(20), sigs.recv())
        .await
        .is_err());
    // A signalfd is no regular file, and the runtime says so: the poll backend never
    // asks the kernel what it is, for any of the reads.
    assert_eq!(xev::rt::with_loop(|lp| lp.poll_kind_lookups()), 0);
    Ok(())
}

#[xev::test(backend = "all")]
async fn a_set_reports_which_signal_arrived() -> io::Result<()> {
    let mut sigs = Signals::new(&[libc::SIGUSR2, libc::SIGUSR1, libc::SIGUSR2])?;
    assert_eq!(sigs.signals(), &[libc::SIGUSR1, libc::SIGUSR2]);
    raise(libc::SIGUSR2);
    assert_eq!(sigs.recv().await?, libc::SIGUSR2);
    raise(libc::SIGUSR1);
    assert_eq!(sigs.recv().await?, libc::SIGUSR1);
    // Standard signals do not queue: twice while pending is received once.
    raise(libc::SIGUSR1);
    raise(libc::SIGUSR1);
    assert_eq!(sigs.recv().await?, libc::SIGUSR1);
    assert!(timeout(Duration::from_millis(20), sigs.recv())
        .await
        .is_err());
    Ok(())
}

#[xev::test(backend = "all")]
async fn a_dropped_recv_loses_no_signal() -> io::Result<()> {
    let mut sigs = Signals::new(&[libc::SIGUSR1])?;
    // The read started by this recv stays with `sigs` when the timeout drops it.
    assert!(timeout(Duration::from_millis(10), sigs.recv())
        .await
        .is_err());
    raise(libc::SIGUSR1);
    // Let the parked read complete while no recv future exists.
    sleep(Duration::from_millis(20)).await;
    assert_eq!(sigs.recv().await?, libc::SIGUSR1);
    // Dropping the whole set with a read in flight is fine too.
    assert!(timeout(Duration::from_millis(10), sigs.recv())
        .await
        .is_err());
    drop(sigs);
    // A new set still receives (the signal stays blocked after the drop).
    let mut again = Signals::new(&[libc::SIGUSR1])?;
    raise(libc::SIGUSR1);
    assert_eq!(again.recv().await?, libc::SIGUSR1);
    Ok(())
}

#[xev::test(backend = "all")]
async fn invalid_sets_are_refused() {
    for bad in [&[][..], &[libc::SIGKILL], &[libc::SIGSTOP], &[0], &[10_000]] {
        let e = Signals::new(bad).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
}

#[xev::test(backend = "all")]
async fn ctrl_c_sees_a_sigint() -> io::Result<()> {
    // The body is the runtime's main future: it is polled before the spawned task runs,
    // so `ctrl_c` blocks SIGINT in this thread before the task raises it.
    let t = xev::spawn(async {
        sleep(Duration::from_millis(20)).await;
        raise(libc::SIGINT);
    });
    timeout(Duration::from_secs(5), signal::ctrl_c())
        .await
        .expect("ctrl_c returns after the SIGINT")?;
    t.await.unwrap();
    Ok(())
}

#[test]
fn a_set_outlives_the_runtime_of_its_pending_read() {
    // Two runtimes in turn on this thread (hence a plain #[test] looping over the
    // backends): the read left pending by a cancelled recv on the first runtime is
    // restarted on the second once the first is gone.
    for backend in xev::Backend::available() {
        let mut sigs = Signals::new(&[libc::SIGUSR2]).unwrap();
        let rt = || xev::rt::Builder::new().backend(backend).build().unwrap();
        let first = rt();
        first.block_on(async {
            assert!(timeout(Duration::from_millis(5), sigs.recv())
                .await
                .is_err());
        });
        drop(first);
        let second = rt();
        let got = second.block_on(async {
            raise(libc::SIGUSR2);
            timeout(Duration::from_secs(5), sigs.recv()).await
        });
        assert_eq!(
            got.expect("received on the second runtime").unwrap(),
            libc::SIGUSR2,
            "{backend:?}"
        );
    }
}

/// A blocking-pool thread is started (by `spawn_blocking`, or by `fs::canonicalize`,
/// which runs on the pool on every backend), then `Signals::new` blocks `SIGUSR1` on the main thread, then
/// `SIGUSR1` is sent to the whole process (`kill(getpid())`): it must reach the runtime
/// instead of killing the process through the pool thread. Runs in a separate process
/// (`xev-signal-child`), which has no test-harness threads that could take the signal.
#[test]
fn a_process_directed_signal_is_not_taken_by_a_pool_thread() {
    for backend in xev::Backend::available() {
        for start in ["spawn_blocking", "fs_pool"] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_xev-signal-child"))
                .args([format!("{backend:?}"), start.to_string()])
                .output()
                .expect("run xev-signal-child");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("received SIGUSR1"),
                "{backend:?}, pool started by {start}: {:?}\nstdout: {stdout}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
