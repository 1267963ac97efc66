//! A readiness source over raw Linux epoll, for the poll backend.
//!
//! Every fd is registered once, edge-triggered, for both directions; the poll backend
//! keeps its own readiness cache, so waiting needs no `epoll_ctl` per operation. The wait
//! is one `epoll_pwait2` (nanosecond timeout; `epoll_wait` rounded up to whole
//! milliseconds on kernels before 5.11). Cross-thread wake-ups go through an eventfd that
//! is registered once as well.
//!
//! This replaces the `polling` crate on Linux: its `wait` re-arms a timerfd and an eventfd
//! around every `epoll_wait` (four extra syscalls per wait), which the ping-pong benchmark
//! showed as the epoll backend's main cost.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::poll::Readiness;

/// The epoll key of the wake-up eventfd.
const WAKE_KEY: u64 = u64::MAX;

pub(crate) struct Epoll {
    epfd: OwnedFd,
    wake: Arc<OwnedFd>,
    events: Vec<libc::epoll_event>,
}

static NO_PWAIT2: AtomicBool = AtomicBool::new(false);

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Epoll {
    pub(crate) fn new(capacity: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new fd or -1.
        let epfd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `epfd` is new and ours.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        // SAFETY: eventfd returns a new fd or -1.
        let wake = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `wake` is new and ours.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(wake) });
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: WAKE_KEY,
        };
        // SAFETY: both fds are open; `ev` is a valid event.
        cvt(unsafe {
            libc::epoll_ctl(
                epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                wake.as_raw_fd(),
                &mut ev,
            )
        })?;
        let events = Vec::with_capacity(capacity.max(1));
        Ok(Epoll { epfd, wake, events })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd) -> io::Result<()> {
        // EPOLLPRI: TCP urgent data, behind whose mark a read stops short (see `wait`).
        let flags =
            libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLPRI | libc::EPOLLET;
        let mut ev = libc::epoll_event {
            events: flags as u32,
            u64: fd as u64,
        };
        // SAFETY: `epfd` is open and `ev` valid; a bad `fd` just fails.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
    }

    /// Watch `fd` for both directions, edge-triggered.
    pub(crate) fn add(&self, fd: RawFd) -> io::Result<()> {
        match self.ctl(libc::EPOLL_CTL_ADD, fd) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => self.ctl(libc::EPOLL_CTL_MOD, fd),
            r => r,
        }
    }

    /// Re-register `fd`: re-reports its current readiness, and re-adds it if the kernel
    /// dropped it (the fd was closed and its number reused). `Ok(true)`: re-added, so the
    /// number names another file than the one registered.
    pub(crate) fn refresh(&self, fd: RawFd) -> io::Result<bool> {
        match self.ctl(libc::EPOLL_CTL_MOD, fd) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.ctl(libc::EPOLL_CTL_ADD, fd).map(|()| true)
            }
            r => r.map(|()| false),
        }
    }

    /// Stop watching `fd` (before it is closed).
    pub(crate) fn delete(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `ctl`; failure (not registered, closed) is harmless.
        unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        let fd = self.wake.clone();
        Box::new(move || super::signal_wake_fd(fd.as_raw_fd()))
    }

    /// Wait at most `timeout`, append what fired to `out`, and say how many events the
    /// kernel returned (a wake-up's included).
    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let cap = self.events.capacity() as libc::c_int;
        let ptr = self.events.as_mut_ptr();
        let epfd = self.epfd.as_raw_fd();
        let n = loop {
            let r = if NO_PWAIT2.load(Ordering::Relaxed) {
                let ms = match timeout {
                    None => -1,
                    // Round up: a wait must never end before the timer it is for.
                    Some(t) => {
                        t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
                    }
                };
                // SAFETY: `ptr` has room for `cap` events.
                unsafe { libc::epoll_wait(epfd, ptr, cap, ms) }
            } else {
                let ts = timeout.map(|t| libc::timespec {
                    tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: t.subsec_nanos() as libc::c_long,
                });
                let tsp = ts
                    .as_ref()
                    .map_or(std::ptr::null(), |t| t as *const libc::timespec);
                // SAFETY: `ptr` has room for `cap` events; `tsp` is null or a live timespec;
                // no signal mask (null).
                unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        epfd,
                        ptr,
                        cap,
                        tsp,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize, // sigsetsize: a full register, as the kernel reads it
                    ) as libc::c_int
                }
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => return Ok(0),
                Some(libc::ENOSYS) if !NO_PWAIT2.load(Ordering::Relaxed) => {
                    NO_PWAIT2.store(true, Ordering::Relaxed)
                }
                _ => return Err(e),
            }
        };
        // SAFETY: the kernel initialised the first `n` events.
        unsafe { self.events.set_len(n) };
        for ev in &self.events {
            let (key, bits) = (ev.u64, ev.events as libc::c_int);
            if key == WAKE_KEY {
                // No drain: the eventfd is edge-triggered, and every write to it is a new
                // edge (it wakes the wait queue), so the counter is left to grow (see
                // `signal_wake_fd`).
                continue;
            }
            let err = bits & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
            out.push(Readiness {
                fd: key as RawFd,
                readable: err || bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLPRI) != 0,
                writable: err || bits & libc::EPOLLOUT != 0,
                // Urgent data (EPOLLPRI) counts too: a TCP read stops short at its mark
                // with the bytes after it queued and no new edge coming for them, so a
                // short read no longer means "drained" (`review5_poll_fs_process.rs::
                // an_async_tcp_read_gets_the_bytes_behind_an_urgent_mark`).
                hup: err || bits & (libc::EPOLLRDHUP | libc::EPOLLPRI) != 0,
            });
        }
        self.events.clear();
        Ok(n)
    }
}
