//! Watchdog: a measurement that hangs ends the process instead of the CI job's time.
//! `start` once, then `arm` before each measurement and `disarm` after it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since EPOCH after which the process exits; 0: no deadline.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);

/// Start the watchdog thread, named `thread_name`: every `every`, if an armed deadline
/// has passed, it prints `message` on stderr and exits the process with status 2.
pub fn start(thread_name: &str, every: Duration, message: String) {
    let epoch = *EPOCH.get_or_init(Instant::now);
    thread::Builder::new()
        .name(thread_name.into())
        .spawn(move || loop {
            thread::sleep(every);
            let d = DEADLINE_MS.load(Ordering::Relaxed);
            if d != 0 && epoch.elapsed().as_millis() as u64 > d {
                eprintln!("{message}");
                std::process::exit(2);
            }
        })
        .expect("spawn watchdog");
}

/// Set the deadline to `limit` from now.
pub fn arm(limit: Duration) {
    let now = EPOCH.get_or_init(Instant::now).elapsed();
    DEADLINE_MS.store((now + limit).as_millis() as u64, Ordering::Relaxed);
}

/// Clear the deadline.
pub fn disarm() {
    DEADLINE_MS.store(0, Ordering::Relaxed);
}
