//! Backends: the mapping of [`Op`](crate::Op) onto one kernel interface each.
//!
//! - `io_uring.rs`: every operation is a native SQE; one `io_uring_enter` per tick submits
//!   and waits with the nearest timer deadline as its timeout.
//! - `poll.rs`: a readiness backend that emulates completions: try the syscall now, and on
//!   `EAGAIN` wait for readiness and retry; regular-file work runs on the thread pool. Its
//!   readiness comes from raw epoll on Linux (`epoll.rs`) and from the `polling` crate
//!   (kqueue on BSD/macOS, IOCP on Windows) elsewhere (`polling.rs`).
//!
//! Timers, cancellation bookkeeping and the ready queue are shared and live in
//! `event_loop.rs`.

#[cfg(target_os = "linux")]
mod epoll;
#[cfg(target_os = "linux")]
pub(crate) mod io_uring;
pub(crate) mod poll;
mod polling;

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::time::Duration;

use crate::completion::Completion;
use crate::event_loop::Core;

/// The kernel interfaces a [`Loop`](crate::Loop) can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Linux io_uring (5.11 or newer: needs `IORING_FEAT_EXT_ARG`).
    IoUring,
    /// The poll backend on Linux (epoll).
    Epoll,
    /// The poll backend on BSD and macOS (kqueue). Written, not yet run by our CI.
    Kqueue,
    /// The poll backend on Windows (IOCP via `polling`). Written, not yet run by our CI.
    Iocp,
}

impl Backend {
    /// The backends this platform can have, best first.
    ///
    /// ```
    /// for b in xev::Backend::candidates() {
    ///     println!("{b:?}: {}", b.is_available());
    /// }
    /// ```
    pub fn candidates() -> &'static [Backend] {
        if cfg!(target_os = "linux") {
            &[Backend::IoUring, Backend::Epoll]
        } else if cfg!(windows) {
            &[Backend::Iocp]
        } else {
            &[Backend::Kqueue]
        }
    }

    /// The first available candidate: io_uring when the kernel allows it (it is often
    /// disabled by seccomp or `kernel.io_uring_disabled`), else the poll backend.
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> Backend {
        let c = Backend::candidates();
        c.iter()
            .copied()
            .find(|b| b.is_available())
            .unwrap_or(c[c.len() - 1])
    }

    /// The candidates that work here, best first.
    pub fn available() -> impl Iterator<Item = Backend> {
        Backend::candidates()
            .iter()
            .copied()
            .filter(|b| b.is_available())
    }

    /// Whether a loop can run on this backend here (io_uring is probed once by creating
    /// a small ring).
    pub fn is_available(self) -> bool {
        match self {
            Backend::IoUring => {
                static PROBE: OnceLock<bool> = OnceLock::new();
                *PROBE.get_or_init(probe_io_uring)
            }
            Backend::Epoll => cfg!(any(
                target_os = "linux",
                target_os = "android",
                target_os = "illumos"
            )),
            Backend::Kqueue => cfg!(any(
                target_os = "macos",
                target_os = "ios",
                target_os = "freebsd",
                target_os = "netbsd",
                target_os = "openbsd",
                target_os = "dragonfly"
            )),
            Backend::Iocp => cfg!(windows),
        }
    }

    /// A short lowercase name: `io_uring`, `epoll`, `kqueue`, `iocp`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::IoUring => "io_uring",
            Backend::Epoll => "epoll",
            Backend::Kqueue => "kqueue",
            Backend::Iocp => "iocp",
        }
    }
}

#[cfg(target_os = "linux")]
fn probe_io_uring() -> bool {
    io_uring::Driver::new(8).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn probe_io_uring() -> bool {
    false
}

/// The running backend of a loop.
#[allow(clippy::large_enum_variant)] // one per loop; boxing would add a hop per operation
pub(crate) enum Driver {
    #[cfg(target_os = "linux")]
    IoUring(io_uring::Driver),
    Poll(poll::Driver),
}

impl Driver {
    pub(crate) fn new(backend: Backend, entries: u32) -> io::Result<Driver> {
        match backend {
            #[cfg(target_os = "linux")]
            Backend::IoUring => Ok(Driver::IoUring(io_uring::Driver::new(entries)?)),
            #[cfg(not(target_os = "linux"))]
            Backend::IoUring => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring needs Linux",
            )),
            Backend::Epoll | Backend::Kqueue | Backend::Iocp => {
                Ok(Driver::Poll(poll::Driver::new(entries)?))
            }
        }
    }

    /// Start an I/O operation (not a timer, cancel or no-op: the core handles those).
    /// `rearm`: the same operation again, right after its callback.
    pub(crate) fn start(&mut self, core: &mut Core, c: NonNull<Completion>, rearm: bool) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.start(core, c),
            Driver::Poll(d) => d.start(core, c, rearm),
        }
    }

    /// A new file has number `fd`, and its close will be reported (poll backend: its
    /// registration can be trusted without refreshing it for every operation).
    pub(crate) fn fd_opened(&mut self, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => {}
            Driver::Poll(d) => d.fd_opened(fd),
        }
    }

    /// `fd`, reported by [`fd_opened`](Self::fd_opened), is about to be closed.
    pub(crate) fn fd_closed(&mut self, core: &mut Core, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => {}
            Driver::Poll(d) => d.fd_closed(core, fd),
        }
    }

    /// `fd`, reported by [`fd_opened`](Self::fd_opened), stays open but its close will not
    /// be reported (its waiters stay).
    pub(crate) fn fd_released(&mut self, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(_) => {}
            Driver::Poll(d) => d.fd_released(fd),
        }
    }

    /// Cancel `target` (Kernel or Waiting) on behalf of cancel completion `c`.
    pub(crate) fn cancel(
        &mut self,
        core: &mut Core,
        c: NonNull<Completion>,
        target: NonNull<Completion>,
    ) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.cancel(core, c, target),
            Driver::Poll(d) => d.cancel(core, c, target),
        }
    }

    /// Submit pending work and wait at most `timeout` (`None`: until something happens)
    /// for results, which go to `core.ready`.
    pub(crate) fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.wait(core, timeout),
            Driver::Poll(d) => d.wait(core, timeout),
        }
    }

    /// A thread-safe function that interrupts a blocked `wait`.
    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.waker(),
            Driver::Poll(d) => d.waker(),
        }
    }

    /// Cancel and reap everything this backend holds, abandoning the completions.
    pub(crate) fn shutdown(&mut self, core: &mut Core) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.shutdown(core),
            Driver::Poll(d) => d.shutdown(core),
        }
    }
}
