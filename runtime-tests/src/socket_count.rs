//! Counting the process's open sockets, for tests that prove nothing leaks: a test that
//! opens sockets holds [`sockets`] (shared), a test that counts them holds [`counting`]
//! (exclusive), so no other test of the same binary has sockets open while it counts.
//! (The runtimes of other tests come and go outside their guards, but their fds are
//! io_uring, epoll and eventfd inodes, never sockets.)

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FDS: RwLock<()> = RwLock::new(());

/// For a test that opens sockets: the counting tests wait until it is done.
pub fn sockets() -> RwLockReadGuard<'static, ()> {
    FDS.read().unwrap_or_else(|e| e.into_inner())
}

/// For a test that counts sockets: no other test has any open meanwhile.
pub fn counting() -> RwLockWriteGuard<'static, ()> {
    FDS.write().unwrap_or_else(|e| e.into_inner())
}

/// The entries of /proc/self/fd that are sockets.
pub fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}
