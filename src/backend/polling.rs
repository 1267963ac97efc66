//! A readiness source over the `polling` crate, for the poll backend where raw epoll is
//! not available (kqueue on BSD/macOS, IOCP on Windows). Fds are registered once,
//! edge-triggered (`PollMode::Edge`), like the raw epoll source. On Linux it can stand in
//! for raw epoll (`XEV_EPOLL_VIA_POLLING=1`), which is how CI exercises it.

use crate::sys::fd::{BorrowedFd, RawFd};
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

use super::poll::Readiness;

pub(crate) struct PollingSource {
    poller: Arc<Poller>,
    events: Events,
    /// Set by the waker before it notifies: `polling` reports a notification as no
    /// event, so this is how a wait learns that it consumed one.
    notified: Arc<AtomicBool>,
}

impl PollingSource {
    pub(crate) fn new(capacity: usize) -> io::Result<PollingSource> {
        let cap = NonZeroUsize::new(capacity.max(1)).expect("non-zero");
        Ok(PollingSource {
            poller: Arc::new(Poller::new()?),
            events: Events::with_capacity(cap),
            notified: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Watch `fd` for both directions, edge-triggered.
    pub(crate) fn add(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: `polling` asks that a source be deleted before it is closed. The poll
        // backend deletes the fds it closes (`Op::Close`); a registration left by an fd
        // closed elsewhere is dropped by the kernel with the file and re-added by
        // `refresh` before its number is relied on again.
        match unsafe {
            self.poller
                .add_with_mode(fd, Event::all(fd as usize), PollMode::Edge)
        } {
            // epoll says EEXIST; `polling`'s kqueue keeps its own set and says
            // AlreadyExists without an errno.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => self.modify(fd),
            Err(e) if read_only_fd(&e) => self.modify(fd),
            r => r,
        }
    }

    fn modify(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: `fd` is open (an operation on it is being started).
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        match self
            .poller
            .modify_with_mode(b, Event::all(fd as usize), PollMode::Edge)
        {
            Err(e) if read_only_fd(&e) => {
                self.poller
                    .modify_with_mode(b, Event::readable(fd as usize), PollMode::Edge)
            }
            r => r,
        }
    }

    /// Re-register `fd` (see the raw epoll source).
    /// `Ok(true)`: re-added (the number names another file than the one registered).
    pub(crate) fn refresh(&self, fd: RawFd) -> io::Result<bool> {
        match self.modify(fd) {
            // ENOENT from epoll; NotFound without an errno from `polling`'s kqueue.
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.add(fd).map(|()| true),
            r => r.map(|()| false),
        }
    }

    /// Stop watching `fd` (before it is closed).
    pub(crate) fn delete(&self, fd: RawFd) {
        // SAFETY: the fd is still open (about to be closed), or the call just fails.
        let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
    }

    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        let p = self.poller.clone();
        let notified = self.notified.clone();
        Box::new(move || {
            // Flag first: a wait that consumed the notification then sees the flag.
            notified.store(true, Ordering::Release);
            let _ = p.notify();
        })
    }

    /// Wait at most `timeout`, append what fired to `out`, and say how many events came
    /// in (a notification since the last wait counts as one).
    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.events.clear();
        self.poller.wait(&mut self.events, timeout)?;
        // A plain load first: most waits follow no notification.
        let woke =
            self.notified.load(Ordering::Acquire) && self.notified.swap(false, Ordering::AcqRel);
        out.extend(self.events.iter().map(|ev| Readiness {
            fd: ev.key as RawFd,
            readable: ev.readable,
            writable: ev.writable,
            // `polling` reports neither RDHUP nor EV_EOF portably, so a peer's close may
            // hide behind data: never treat a short read as "drained" on this source.
            hup: true,
        }));
        Ok(self.events.len() + usize::from(woke))
    }
}

/// Whether registering both directions failed because the fd has only a read filter:
/// kqueue refuses `EVFILT_WRITE` on a kqueue fd (`EINVAL`), which `Process` polls on
/// macOS and the BSDs. Such an fd is then watched for readability only. Never on Linux.
fn read_only_fd(e: &io::Error) -> bool {
    cfg!(all(unix, not(target_os = "linux"))) && e.raw_os_error() == Some(libc::EINVAL)
}
