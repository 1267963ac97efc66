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
mod link_timers;
pub(crate) mod poll;
mod polling;
#[cfg(target_os = "linux")]
mod uring_fixed;

use crate::sys::fd::RawFd;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::str::FromStr;
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

    /// The backend a loop gets when none is pinned: the one named by the
    /// [`XEV_BACKEND`](BACKEND_ENV) environment variable if it is set, valid and available
    /// here, otherwise the first available candidate (io_uring when the kernel allows it:
    /// it is often disabled by seccomp or `kernel.io_uring_disabled`, else the poll
    /// backend).
    ///
    /// An unknown or unavailable `XEV_BACKEND` is ignored here, but it is an error for
    /// everything that creates a loop without pinning a backend ([`Loop::new`] with
    /// `Options::backend: None`, [`Runtime::new`](crate::rt::Runtime::new),
    /// [`block_on`](crate::block_on), `#[xev::main]`): use [`try_default`](Self::try_default)
    /// to see that error yourself.
    ///
    /// [`Loop::new`]: crate::Loop::new
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> Backend {
        Backend::try_default().unwrap_or_else(|_| Backend::best())
    }

    /// [`default`](Self::default), with an unknown or unavailable `XEV_BACKEND` reported as
    /// an error (`InvalidInput` for a name that is no backend, `Unsupported` for one that
    /// cannot run here).
    ///
    /// ```
    /// // With XEV_BACKEND unset (or empty), the best backend available here.
    /// if std::env::var_os("XEV_BACKEND").is_none() {
    ///     assert_eq!(xev::Backend::try_default()?, xev::Backend::available().next().unwrap());
    /// }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn try_default() -> io::Result<Backend> {
        Ok(Backend::from_env()?.unwrap_or_else(Backend::best))
    }

    /// The backend named by the [`XEV_BACKEND`](BACKEND_ENV) environment variable: `None`
    /// when it is unset or empty, an error when it names no backend (`InvalidInput`) or
    /// one that is not available here (`Unsupported`).
    pub fn from_env() -> io::Result<Option<Backend>> {
        let Some(value) = std::env::var_os(BACKEND_ENV) else {
            return Ok(None);
        };
        if value.is_empty() {
            return Ok(None);
        }
        let name = value.to_str().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{BACKEND_ENV}={value:?} is not valid UTF-8"),
            )
        })?;
        let backend: Backend = name.parse().map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{BACKEND_ENV}: {e}"))
        })?;
        if !backend.is_available() {
            let here: Vec<&str> = Backend::available().map(Backend::name).collect();
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{BACKEND_ENV}={name}: that backend is not available here (available: {})",
                    here.join(", ")
                ),
            ));
        }
        Ok(Some(backend))
    }

    /// The first available candidate (the last candidate if none is).
    fn best() -> Backend {
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

/// The environment variable that picks the backend of every loop created without a pinned
/// one: `io_uring`, `epoll`, `kqueue` or `iocp` (see [`Backend::default`]).
///
/// ```sh
/// XEV_BACKEND=epoll cargo run --release --example echo
/// ```
pub const BACKEND_ENV: &str = "XEV_BACKEND";

impl FromStr for Backend {
    type Err = ParseBackendError;

    /// A backend by its [`name`](Backend::name) (`io-uring` is accepted for `io_uring`),
    /// ASCII case ignored.
    ///
    /// ```
    /// assert_eq!("epoll".parse::<xev::Backend>(), Ok(xev::Backend::Epoll));
    /// assert_eq!("IO_URING".parse::<xev::Backend>(), Ok(xev::Backend::IoUring));
    /// assert!("uring".parse::<xev::Backend>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Backend, ParseBackendError> {
        let all = [
            Backend::IoUring,
            Backend::Epoll,
            Backend::Kqueue,
            Backend::Iocp,
        ];
        let s_norm = s.replace('-', "_");
        all.into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(&s_norm))
            .ok_or_else(|| ParseBackendError(s.to_owned()))
    }
}

impl fmt::Display for Backend {
    /// The backend's [`name`](Backend::name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no [`Backend`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseBackendError(String);

impl fmt::Display for ParseBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a backend name (expected io_uring, epoll, kqueue or iocp)",
            self.0
        )
    }
}

impl std::error::Error for ParseBackendError {}

#[cfg(target_os = "linux")]
fn probe_io_uring() -> bool {
    io_uring::Driver::new(8, None, false).is_ok()
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
    pub(crate) fn new(
        backend: Backend,
        entries: u32,
        sqpoll: Option<Duration>,
        fixed_files: bool,
    ) -> io::Result<Driver> {
        #[cfg(not(target_os = "linux"))]
        let _ = (sqpoll, fixed_files);
        match backend {
            #[cfg(target_os = "linux")]
            Backend::IoUring => Ok(Driver::IoUring(io_uring::Driver::new(
                entries,
                sqpoll,
                fixed_files,
            )?)),
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
            Driver::IoUring(d) => d.fd_opened(fd),
            Driver::Poll(d) => d.fd_opened(fd),
        }
    }

    /// `fd`, reported by [`fd_opened`](Self::fd_opened), is about to be closed.
    pub(crate) fn fd_closed(&mut self, core: &mut Core, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.fd_closed(fd),
            Driver::Poll(d) => d.fd_closed(core, fd),
        }
    }

    /// `fd`, reported by [`fd_opened`](Self::fd_opened), stays open but its close will not
    /// be reported (its waiters stay).
    pub(crate) fn fd_released(&mut self, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.fd_closed(fd),
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
    /// for results, which go to `core.ready`. Returns how many events it took from the
    /// kernel (CQEs or readiness events, wake-ups included): 0 means nothing at all came
    /// in, not even a wake-up (see `Loop::wait_after_yield`).
    pub(crate) fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<usize> {
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

    /// Give `fd` a registered-file slot (io_uring with fixed files on).
    pub(crate) fn register_file(&mut self, fd: RawFd) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => {
                d.fd_opened(fd);
                d.registered_slot(fd).is_some()
            }
            Driver::Poll(_) => {
                let _ = fd;
                false
            }
        }
    }

    /// Empty `fd`'s registered-file slot, if it has one.
    pub(crate) fn unregister_file(&mut self, fd: RawFd) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.fd_closed(fd),
            Driver::Poll(_) => {
                let _ = fd;
            }
        }
    }

    /// The registered-file slot of `fd` (io_uring with fixed files on).
    pub(crate) fn registered_slot(&self, fd: RawFd) -> Option<u32> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.registered_slot(fd),
            Driver::Poll(_) => {
                let _ = fd;
                None
            }
        }
    }

    /// Whether an io_uring submission-polling thread serves this loop.
    pub(crate) fn uses_sqpoll(&self) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.uses_sqpoll(),
            Driver::Poll(_) => false,
        }
    }

    /// End the kernel multishot behind completion `c` without detaching it (io_uring;
    /// nothing elsewhere, where each result is its own attempt).
    pub(crate) fn multishot_stop(&mut self, c: NonNull<Completion>) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.multishot_stop(c),
            Driver::Poll(_) => {
                let _ = c;
            }
        }
    }

    /// Whether multishot completion `c` has results held for it or may still get some
    /// without a new attempt (io_uring; never elsewhere).
    pub(crate) fn multishot_more(&self, c: NonNull<Completion>) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.multishot_more(c),
            Driver::Poll(_) => {
                let _ = c;
                false
            }
        }
    }

    /// The next result already received for multishot completion `c`, which is in its
    /// callback and still holds the operation its record serves (io_uring; never
    /// elsewhere, where each result is its own attempt): taken off the record, for the
    /// callback to run again at once.
    #[inline]
    /// `rec` is the backend's cache for one batch: `None` at its start.
    pub(crate) fn multishot_next(
        &mut self,
        c: NonNull<Completion>,
        rec: &mut Option<usize>,
    ) -> Option<isize> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.multishot_next(c, rec),
            Driver::Poll(_) => {
                let _ = (c, rec);
                None
            }
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

    /// A new buffer group for `Op::RecvMulti`.
    #[cfg(unix)]
    pub(crate) fn register_buffer_group(
        &mut self,
        count: u16,
        size: u32,
    ) -> io::Result<crate::buf_group::BufferGroup> {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.register_buffer_group(count, size),
            Driver::Poll(d) => d.register_buffer_group(count, size),
        }
    }

    /// The callback of multishot completion `c` returned: unless it restarted the same
    /// operation, stop the kernel's multishot.
    pub(crate) fn multishot_after_callback(&mut self, core: &mut Core, c: NonNull<Completion>) {
        match self {
            #[cfg(target_os = "linux")]
            Driver::IoUring(d) => d.multishot_after_callback(core, c),
            // Each poll-backend result is its own attempt: nothing stays in flight.
            Driver::Poll(_) => {
                let _ = (core, c);
            }
        }
    }
}

/// Wake a loop blocked on its wake-up eventfd `fd` (io_uring and raw epoll): one
/// `write(2)` adding 1 to the counter.
///
/// The loops never drain the counter: they wait for the eventfd with an edge (a multishot
/// poll on io_uring, an edge-triggered registration on epoll), and every write is a new
/// edge whether or not the counter was zero, so no `read(2)` is needed per wake-up. The
/// counter can therefore only grow; should it ever be full (`EAGAIN` after 2^64 - 2
/// wake-ups), it is reset with one read and the write is retried, which is still an edge.
#[cfg(target_os = "linux")]
pub(crate) fn signal_wake_fd(fd: RawFd) {
    let one: u64 = 1;
    for _ in 0..2 {
        // SAFETY: writes 8 bytes from a live u64 to an eventfd the caller keeps open.
        let r = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
            return;
        }
        let mut buf = 0u64;
        // SAFETY: reads at most 8 bytes into a live u64 from the same eventfd.
        unsafe { libc::read(fd, (&mut buf as *mut u64).cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for b in [
            Backend::IoUring,
            Backend::Epoll,
            Backend::Kqueue,
            Backend::Iocp,
        ] {
            assert_eq!(b.name().parse::<Backend>(), Ok(b));
            assert_eq!(b.to_string(), b.name());
        }
        assert_eq!("io-uring".parse::<Backend>(), Ok(Backend::IoUring));
        assert_eq!("EPOLL".parse::<Backend>(), Ok(Backend::Epoll));
        for bad in ["", "uring", "epol", "io_uring ", "poll"] {
            let e = bad.parse::<Backend>().unwrap_err();
            assert!(e.to_string().contains("expected io_uring, epoll"), "{e}");
        }
    }

    /// A full wake-up counter (never reached in practice) is reset and the wake-up still
    /// lands: the eventfd ends up readable with a count of 1.
    #[cfg(target_os = "linux")]
    #[test]
    fn signal_wake_fd_survives_a_full_counter() {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a new fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let max: u64 = u64::MAX - 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        let r = unsafe { libc::write(fd.as_raw_fd(), (&max as *const u64).cast(), 8) };
        assert_eq!(r, 8);
        signal_wake_fd(fd.as_raw_fd());
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live u64 from our eventfd.
        let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        assert_eq!((r, v), (8, 1));
    }
}
