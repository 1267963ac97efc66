//! [`LoopFd`]: the fd of an async socket, announced to the loop that runs its operations.
//!
//! The poll backend registers an fd with epoll once and, for operations it cannot trust,
//! refreshes that registration (one `epoll_ctl`) before parking, because a file closed
//! behind the loop's back silently loses its registration and its number may be reused.
//! A `LoopFd` removes that cost: the first time it is used on a runtime it tells that
//! loop "a new file has this number" (`Loop::fd_opened`), and when it is dropped or
//! released it says "closing now" (`Loop::fd_closed`). In between, the loop can trust the
//! registration, so an async read parks with no syscall at all.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr;
use std::rc::Rc;

use super::executor::{current, with_current, Executor};

/// An owned fd plus the runtime whose loop knows about it.
pub(crate) struct LoopFd {
    fd: OwnedFd,
    home: RefCell<Option<Rc<Executor>>>,
}

impl LoopFd {
    pub(crate) fn new(fd: OwnedFd) -> LoopFd {
        LoopFd {
            fd,
            home: RefCell::new(None),
        }
    }

    /// The fd number, announced first to the current runtime's loop if this is its first
    /// use there (outside a runtime: just the number).
    pub(crate) fn raw(&self) -> RawFd {
        let fd = self.fd.as_raw_fd();
        let known = with_current(|e| {
            self.home
                .borrow()
                .as_ref()
                .is_some_and(|h| ptr::eq(Rc::as_ptr(h), e))
        });
        if known == Some(false) {
            let exec = current("xev::net");
            let Ok(mut lp) = exec.lp.try_borrow_mut() else {
                // Inside a loop callback: stay unannounced (operations then refresh).
                return fd;
            };
            lp.fd_opened(fd);
            drop(lp);
            if let Some(old) = self.home.replace(Some(exec)) {
                release(&old, fd);
            }
        }
        fd
    }

    /// The fd itself, no longer announced to any loop.
    pub(crate) fn into_owned(self) -> OwnedFd {
        let mut this = std::mem::ManuallyDrop::new(self);
        if let Some(home) = this.home.get_mut().take() {
            release(&home, this.fd.as_raw_fd());
        }
        // SAFETY: `this` is never used or dropped again; the fd is moved out exactly once
        // (the `home` field was emptied above and owns nothing).
        unsafe { ptr::read(&this.fd) }
    }
}

/// Tell `home`'s loop that `fd` is closing (if it can still be told).
fn release(home: &Executor, fd: RawFd) {
    if home.is_closed() {
        return;
    }
    // Busy only when dropped inside one of the loop's callbacks; the fd then stays
    // marked as trusted until the next owner of the number announces itself.
    if let Ok(mut lp) = home.lp.try_borrow_mut() {
        lp.fd_closed(fd);
    }
}

impl Drop for LoopFd {
    fn drop(&mut self) {
        if let Some(home) = self.home.get_mut().take() {
            release(&home, self.fd.as_raw_fd());
        }
    }
}

impl AsRawFd for LoopFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for LoopFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for LoopFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoopFd").field(&self.fd.as_raw_fd()).finish()
    }
}
