//! Console interrupts on Windows: [`ctrl_c`].
//!
//! Windows has no Unix signals: the `Signals` stream and `Signal` watcher of Unix do not
//! exist here. What it has is the console's Ctrl-C and Ctrl-Break, which [`ctrl_c`]
//! waits for.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::rt::notify::Notify;

/// A task waiting in [`ctrl_c`].
struct Waiter {
    notify: Notify,
    /// Set when its future is dropped, so the handler forgets it.
    gone: Arc<AtomicBool>,
}

/// What the console handler shares with the waiting tasks.
struct State {
    waiters: Vec<Waiter>,
    /// A Ctrl-C arrived while nobody waited: the next `ctrl_c` returns at once.
    pending: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    waiters: Vec::new(),
    pending: false,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The console handler: wake every waiting task, or remember the event for the next.
fn on_ctrl_c() {
    let mut st = state();
    let waiters = std::mem::take(&mut st.waiters);
    let mut woke = false;
    for w in waiters {
        if !w.gone.load(Ordering::Acquire) {
            w.notify.notify();
            woke = true;
        }
    }
    if !woke {
        st.pending = true;
    }
}

/// Marks its waiter gone when the `ctrl_c` future is dropped before the event.
struct Gone(Arc<AtomicBool>);

impl Drop for Gone {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Wait for one Ctrl-C (or Ctrl-Break) of the console.
///
/// The first call installs a console control handler for the rest of the process: from
/// then on Ctrl-C no longer terminates the process; each one wakes every task waiting in
/// `ctrl_c`, or, if none is, is kept for the next call (which then returns at once), as a
/// blocked `SIGINT` stays pending on Unix.
///
/// ```no_run
/// # xev::block_on(async {
/// xev::signal::ctrl_c().await?;
/// println!("interrupted; shutting down");
/// # Ok::<(), std::io::Error>(())
/// # }).unwrap();
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    crate::sys::catch_ctrl_c(on_ctrl_c)?;
    let notify = Notify::new();
    let gone = Arc::new(AtomicBool::new(false));
    {
        let mut st = state();
        if std::mem::take(&mut st.pending) {
            return Ok(());
        }
        // Forget waiters whose futures were dropped, so repeated timeouts do not pile up.
        st.waiters.retain(|w| !w.gone.load(Ordering::Acquire));
        st.waiters.push(Waiter {
            notify: notify.clone(),
            gone: gone.clone(),
        });
    }
    let _gone = Gone(gone);
    notify.notified().await;
    Ok(())
}
