//! Children whose [`Child`](super::Child) was dropped before they were reaped (a
//! `status()` or `output()` future dropped by a `timeout`, a `Child` let go): a
//! process-wide list of their pidfds, reaped once they have exited, so they do not stay
//! zombies until this process ends.
//!
//! No thread and no `SIGCHLD` handler: a dropped child that has already exited is reaped
//! in the drop; the others are tried (one non-blocking `waitid` each) by every later
//! [`spawn`](super::spawn) of this module, on any thread. So zombies never pile up
//! across spawns: a loop of `timeout(d, status(cmd))` leaves at most the children still
//! running plus those that exited since its last spawn.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::fd::{AsRawFd, OwnedFd};
use crate::watcher::process::reap;

/// The unreaped children of dropped `Child`s: (pidfd, pid).
static ORPHANS: Mutex<Vec<(Arc<OwnedFd>, u32)>> = Mutex::new(Vec::new());

fn orphans() -> MutexGuard<'static, Vec<(Arc<OwnedFd>, u32)>> {
    // The list stays valid whatever a panicking holder was doing (a push or a retain).
    ORPHANS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `pid` (through its pidfd) is still to be reaped: it is running. Reaped now,
/// or an error (reaped behind our back: `ECHILD`), it is done with.
fn still_running(fd: &OwnedFd, pid: u32) -> bool {
    matches!(reap(fd.as_raw_fd(), pid), Ok(None))
}

/// Take over the child `pid` of a dropped `Child`: reaped now if it has exited, else
/// kept until it has (see the module docs).
pub(super) fn adopt(fd: Arc<OwnedFd>, pid: u32) {
    if still_running(&fd, pid) {
        orphans().push((fd, pid));
    }
}

/// Reap every adopted child that has exited (called before each spawn).
pub(super) fn reap_exited() {
    let mut list = orphans();
    if !list.is_empty() {
        list.retain(|(fd, pid)| still_running(fd, *pid));
    }
}
