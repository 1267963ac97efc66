//! [`LoopFd`]: the fd of an async socket or file, shared by its owner and by the
//! operations that name it, and announced to the loop that runs them.
//!
//! **Lifetime.** An fd number is never closed while an operation that names it can still
//! be submitted, is in the kernel, is parked on readiness or is queued for the thread
//! pool, orphans of dropped futures included (see `op_future`): the owner (a socket or
//! `fs::File`) holds its `LoopFd` through an `Rc`, each operation's slot holds a clone
//! until the operation is over, and the fd is closed when the last reference goes. So
//! dropping an owner closes its fd at once, unless a dropped future's operation is still
//! in flight on it; the fd is then closed when that operation ends.
//!
//! **Announcements.** The poll backend registers an fd with epoll once and, for
//! operations it cannot trust, refreshes that registration (one `epoll_ctl`) before
//! parking, because a file closed behind the loop's back silently loses its registration
//! and its number may be reused. A `LoopFd` removes that cost: the first time it is used
//! on a runtime it tells that loop "a new file has this number" (`Loop::fd_opened`), and
//! before it closes the fd it says "closing now" (`Loop::fd_closed`, which also drops the
//! registration). In between, the loop can trust the registration, so an async read
//! parks with no syscall at all.
//!
//! **Closing inside a loop callback.** The last reference is often dropped inside a loop
//! callback (an orphan's completion, or a user callback that owned a socket), where the
//! runtime's loop is borrowed. The slot pool's callback then announces the close through
//! the `&mut Loop` it receives; anywhere else the fd is handed to its runtime
//! ([`Deferred::Close`]), which announces and closes it at the start of its next turn. It
//! stays open until then, so its number cannot be reused before the loop knows.
//!
//! **Several runtimes.** A `LoopFd` used on a second runtime (one thread can run several
//! in turn) is announced there; the first runtime only stops trusting its registration
//! (`Loop::fd_released`), and operations parked there stay. The close is announced to the
//! runtime that used it last; the others have no operation left on it by then (each would
//! hold a reference).

use crate::sys::fd::{AsRawFd, OwnedFd, RawFd};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::mem::ManuallyDrop;
use std::ptr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::executor::{current, with_current, Deferred, Executor};
use crate::result::Accepted;
use crate::Loop;

/// An owned fd plus the runtime whose loop knows about it. Shared through `Rc` by its
/// owner and by the operations that name it (see the module docs).
pub(crate) struct LoopFd {
    /// Taken exactly once, in `Drop` or `into_owned_now`.
    fd: ManuallyDrop<OwnedFd>,
    /// `into_owned_now` took `fd`.
    fd_taken: bool,
    home: RefCell<Option<Rc<Executor>>>,
    /// Woken when only one reference is left ([`into_sole`](Self::into_sole) waits).
    sole: Cell<Option<Waker>>,
    /// Listeners: connections that an accept whose future was dropped received anyway
    /// (its result raced the cancellation), in arrival order, for the next accept.
    stashed: RefCell<VecDeque<Accepted>>,
    /// Listeners: the task of an accept waiting in the kernel, woken when a connection
    /// is stashed meanwhile (see [`watch_stash`](Self::watch_stash)).
    stash_watcher: Cell<Option<Waker>>,
}

impl LoopFd {
    /// A new shared owner of `fd`, not yet announced to any loop.
    pub(crate) fn shared(fd: OwnedFd) -> Rc<LoopFd> {
        Rc::new(LoopFd {
            fd: ManuallyDrop::new(fd),
            fd_taken: false,
            home: RefCell::new(None),
            sole: Cell::new(None),
            stashed: RefCell::new(VecDeque::new()),
            stash_watcher: Cell::new(None),
        })
    }

    /// Keep a connection that an orphaned accept on this listener received, for the next
    /// accept: a client that connected after the future was dropped must not lose its
    /// connection to the race.
    pub(crate) fn stash(&self, a: Accepted) {
        self.stashed.borrow_mut().push_back(a);
        // An accept started before this connection arrived here (it found the stash
        // empty) waits in the kernel for another client: let it take this one.
        if let Some(w) = self.stash_watcher.take() {
            w.wake();
        }
    }

    /// For an accept on this listener that is waiting: whether a connection is stashed
    /// (take it instead, dropping the accept: its own connection, if it gets one, is
    /// stashed after); if not, `waker` is woken by the next [`stash`](Self::stash).
    /// One watcher at a time (the last to ask).
    pub(crate) fn watch_stash(&self, waker: &Waker) -> bool {
        if !self.stashed.borrow().is_empty() {
            return true;
        }
        let w = self.stash_watcher.take();
        self.stash_watcher.set(match w {
            Some(w) if w.will_wake(waker) => Some(w),
            _ => Some(waker.clone()),
        });
        false
    }

    /// The oldest stashed connection, if any (see [`stash`](Self::stash)).
    pub(crate) fn take_stashed(&self) -> Option<Accepted> {
        self.stashed.borrow_mut().pop_front()
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
                // Moving, not closing: the old loop's operations on the fd stay.
                if !old.is_closed() {
                    match old.lp.try_borrow_mut() {
                        Ok(mut lp) => lp.fd_released(fd),
                        Err(_) => old.defer(Deferred::Release(fd)),
                    }
                }
            }
        }
        fd
    }

    /// [`raw`](Self::raw) with the current executor `e` at hand (the direct path's
    /// hot case: announced there already, so no thread-local lookup).
    #[cfg(unix)]
    #[inline]
    pub(crate) fn raw_on(&self, e: &Executor) -> RawFd {
        let home = self
            .home
            .borrow()
            .as_ref()
            .is_some_and(|h| ptr::eq(Rc::as_ptr(h), e));
        if home {
            self.fd.as_raw_fd()
        } else {
            self.raw()
        }
    }

    /// A slot lets go of its reference: its operation is over. `lp` is the loop when
    /// called from inside one of its callbacks (it is borrowed then); the last reference
    /// announces the close through it if it is the fd's home loop.
    pub(crate) fn release_ref(fd: Rc<LoopFd>, lp: Option<&mut Loop>) {
        match Rc::strong_count(&fd) {
            1 => {
                let this = Rc::into_inner(fd).expect("the only reference");
                if let Some(lp) = lp {
                    let home = this.home.borrow().as_ref().map(|h| h.loop_id());
                    if home == Some(lp.id()) {
                        lp.fd_closed(this.fd.as_raw_fd());
                        // Announced: `Drop` just closes.
                        *this.home.borrow_mut() = None;
                    }
                }
                drop(this);
            }
            2 => {
                // The owner may be waiting to be the only one left.
                if let Some(w) = fd.sole.take() {
                    w.wake();
                }
            }
            _ => {}
        }
    }

    /// Wait until `fd` is the only reference (the operations of dropped futures are over)
    /// and hand it back. Dropping the future drops the reference (the fd is then closed
    /// as usual, once those operations are over).
    pub(crate) async fn into_sole(fd: Rc<LoopFd>) -> Rc<LoopFd> {
        let mut fd = Some(fd);
        poll_fn(|cx| {
            let shared = fd.take().expect("polled after it finished");
            if Rc::strong_count(&shared) == 1 {
                return Poll::Ready(shared);
            }
            shared.sole.set(Some(cx.waker().clone()));
            fd = Some(shared);
            Poll::Pending
        })
        .await
    }

    /// The fd itself, no longer announced to any loop.
    ///
    /// If operations of dropped futures still name it, or its loop is busy (inside one of
    /// its callbacks) and cannot be told now, this is a duplicate (`F_DUPFD_CLOEXEC`, the
    /// same open file) and the original number is closed as usual later.
    ///
    /// # Panics
    /// If that duplicate cannot be made (the process is out of descriptors).
    pub(crate) fn into_owned(fd: Rc<LoopFd>) -> OwnedFd {
        match Rc::try_unwrap(fd) {
            Ok(this) => this.into_owned_now().unwrap_or_else(|this| this.dup()),
            Err(shared) => shared.dup(),
        }
    }

    /// The fd, after telling its home loop it is going (`Err(self)` if that loop is busy).
    fn into_owned_now(self) -> Result<OwnedFd, LoopFd> {
        let busy = match self.home.borrow().as_ref() {
            Some(home) if !home.is_closed() => match home.lp.try_borrow_mut() {
                Ok(mut lp) => {
                    lp.fd_closed(self.fd.as_raw_fd());
                    false
                }
                Err(_) => true,
            },
            _ => false,
        };
        if busy {
            return Err(self);
        }
        let mut this = self;
        // SAFETY: taken exactly once: `fd_taken` makes `Drop` leave it alone. The other
        // fields (connections stashed for the next accept included) drop as usual.
        let fd = unsafe { ManuallyDrop::take(&mut this.fd) };
        this.fd_taken = true;
        *this.home.get_mut() = None; // told above (or nothing to tell)
        Ok(fd)
    }

    fn dup(&self) -> OwnedFd {
        self.fd.try_clone().unwrap_or_else(|e| {
            panic!("xev: cannot duplicate the descriptor of a busy async socket or file: {e}")
        })
    }
}

impl Drop for LoopFd {
    fn drop(&mut self) {
        if self.fd_taken {
            return; // `into_owned_now` took it
        }
        // SAFETY: `drop` runs once, and the fd was not taken (`fd_taken`).
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        let Some(home) = self.home.get_mut().take() else {
            return; // never announced (or already): just close
        };
        if home.is_closed() {
            return; // the runtime is gone: nothing to tell
        }
        let busy = match home.lp.try_borrow_mut() {
            Ok(mut lp) => {
                lp.fd_closed(fd.as_raw_fd());
                false
            }
            Err(_) => true,
        };
        if busy {
            // Inside a callback of the home loop: it announces and closes the fd at the
            // start of its next turn.
            home.defer(Deferred::Close(fd));
        }
    }
}

crate::sys::fd::impl_as_fd!(
    LoopFd,
    |this| AsRawFd::as_raw_fd(&*this.fd),
    crate::sys::fd::AsFd::as_fd(&*this.fd)
);

impl fmt::Debug for LoopFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LoopFd").field(&self.fd.as_raw_fd()).finish()
    }
}
