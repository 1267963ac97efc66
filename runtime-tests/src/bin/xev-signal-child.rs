//! A child process for `rt_signal`'s process-directed signal test (run by the test, not
//! by hand): it starts a blocking-pool thread, only then creates `Signals` for `SIGUSR1`
//! on its main thread, and sends `SIGUSR1` to the whole process with `kill(getpid())`.
//! The signal must reach the runtime; before xev's pool threads blocked asynchronous
//! signals, the kernel delivered it to the pool thread and its default action killed the
//! process.
//!
//! Usage: `xev-signal-child <backend, as {:?}> <spawn_blocking|fs_pool>`.
//! The process has no other threads (a test harness would add its own, which do not
//! block the signal). Prints `received SIGUSR1` and exits 0 on success.

use std::time::Duration;

use xev::rt::Builder;
use xev::signal::Signals;
use xev::time::timeout;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, backend, how] = &args[..] else {
        panic!("usage: xev-signal-child <backend> <spawn_blocking|fs_pool>");
    };
    let backend = xev::Backend::available()
        .find(|b| format!("{b:?}") == *backend)
        .unwrap_or_else(|| panic!("backend {backend} is not available"));
    let rt = Builder::new().backend(backend).build().expect("runtime");
    rt.block_on(async {
        match how.as_str() {
            "spawn_blocking" => xev::spawn_blocking(|| ()).await.expect("pool job"),
            // An fs helper with no loop operation (it runs on the pool on both backends;
            // `File::open` is a loop operation and no longer starts a pool thread on
            // io_uring).
            "fs_pool" => drop(
                xev::fs::canonicalize("/proc/self")
                    .await
                    .expect("canonicalize"),
            ),
            other => panic!("unknown start {other}"),
        }
        // A pool thread now exists (idle for 10 s) and was started before any signal
        // was blocked on this thread.
        let mut sigs = Signals::new(&[libc::SIGUSR1]).expect("signalfd");
        // SAFETY: kill(2) with our own pid; SIGUSR1 is blocked on this thread and, since
        // the fix, on every pool thread.
        assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) }, 0);
        let got = timeout(Duration::from_secs(10), sigs.recv())
            .await
            .expect("SIGUSR1 reached the runtime")
            .expect("signalfd read");
        assert_eq!(got, libc::SIGUSR1);
    });
    println!("received SIGUSR1");
}
