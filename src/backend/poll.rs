//! The poll backend: completion semantics emulated over readiness (`polling`: epoll on
//! Linux, kqueue on BSD/macOS, IOCP on Windows).
//!
//! An operation is first tried at once (`MSG_DONTWAIT` / non-blocking fd). If it would
//! block, the completion joins a FIFO of readers or writers for its fd, and the fd is
//! registered one-shot for the union of what its waiters need. When the fd becomes ready,
//! waiters are retried in order until one would block again. Regular-file work (`pread`,
//! `pwrite`, and `read`/`write`/`close` on a regular file) runs on the thread pool.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use polling::{Event, Events, Poller};

use crate::completion::{Completion, Phase};
use crate::event_loop::Core;
use crate::op::Op;
use crate::queue::Intrusive;
use crate::sys::{self, Wait};

const EAGAIN: isize = -(libc::EAGAIN as isize);

#[derive(Default)]
struct FdState {
    readers: Intrusive<Completion>,
    writers: Intrusive<Completion>,
    /// The fd is in the poller's interest set.
    registered: bool,
    /// Interest armed since the last event: (readable, writable).
    armed: (bool, bool),
}

pub(crate) struct Driver {
    poller: Arc<Poller>,
    events: Events,
    /// Scratch list of (fd, readable, writable) from the last wait, reused.
    fired: Vec<(RawFd, bool, bool)>,
    fds: Vec<FdState>,
}

impl Driver {
    pub(crate) fn new(entries: u32) -> io::Result<Driver> {
        let cap = NonZeroUsize::new(entries.clamp(1, 4096) as usize).expect("non-zero");
        Ok(Driver {
            poller: Arc::new(Poller::new()?),
            events: Events::with_capacity(cap),
            fired: Vec::new(),
            fds: Vec::new(),
        })
    }

    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        let p = self.poller.clone();
        Box::new(move || {
            let _ = p.notify();
        })
    }

    pub(crate) fn start(&mut self, core: &mut Core, c: NonNull<Completion>) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active and live, and no one else touches it now; loop thread.
        let blocking_file = unsafe {
            (*inner).connecting = false;
            match &(*inner).op {
                Op::Pread { .. } | Op::Pwrite { .. } => true,
                Op::Read { fd, .. } | Op::Write { fd, .. } => sys::is_blocking_file(*fd),
                Op::Close { fd: Some(f) } => {
                    let raw = std::os::fd::AsRawFd::as_raw_fd(f);
                    self.forget_fd(raw);
                    sys::is_blocking_file(raw)
                }
                _ => false,
            }
        };
        if blocking_file {
            return core.send_to_pool(c);
        }
        self.try_or_wait(core, c);
    }

    /// Try the operation now; finish it, or park it on its fd until ready.
    fn try_or_wait(&mut self, core: &mut Core, c: NonNull<Completion>) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active and live and exclusively the loop's; its buffer is valid.
        let res = unsafe { sys::perform(inner, (*inner).connecting) };
        if res != EAGAIN {
            return core.finish(c, res);
        }
        // SAFETY: as above.
        let (fd, wait) = unsafe {
            if let Op::Connect { .. } = (*inner).op {
                (*inner).connecting = true;
            }
            ((*inner).op.fd().unwrap_or(-1), sys::wait_kind(&(*inner).op))
        };
        if fd < 0 {
            return core.finish(c, -(libc::EBADF as isize));
        }
        let idx = fd as usize;
        if self.fds.len() <= idx {
            self.fds.resize_with(idx + 1, FdState::default);
        }
        let st = &mut self.fds[idx];
        // SAFETY: `c` is live and in no other queue.
        unsafe {
            (*inner).phase = Phase::Waiting;
            match wait {
                Wait::Readable => st.readers.push(c),
                Wait::Writable => st.writers.push(c),
            }
        }
        if let Err(e) = self.arm(fd) {
            // Could not watch this fd: fail its waiters rather than hang them.
            let err = -(e.raw_os_error().unwrap_or(libc::EIO) as isize);
            let st = &mut self.fds[idx];
            while let Some(w) = st.readers.pop().or_else(|| st.writers.pop()) {
                core.finish(w, err);
            }
        }
    }

    /// Make the poller watch `fd` for what its waiters need.
    fn arm(&mut self, fd: RawFd) -> io::Result<()> {
        let st = &mut self.fds[fd as usize];
        let want = (!st.readers.is_empty(), !st.writers.is_empty());
        if !want.0 && !want.1 {
            return Ok(());
        }
        if st.registered && st.armed.0 >= want.0 && st.armed.1 >= want.1 {
            return Ok(());
        }
        let ev = Event::new(fd as usize, want.0, want.1);
        // SAFETY: `fd` is open: an operation on it is in flight, and the caller must keep
        // its fds open until their operations finish.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let r = if st.registered {
            match self.poller.modify(bfd, ev) {
                // The fd was closed behind our back and its number reused: register anew.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    // SAFETY: see `add_fd`.
                    unsafe { add_fd(&self.poller, fd, ev) }
                }
                r => r,
            }
        } else {
            // SAFETY: see `add_fd`.
            unsafe { add_fd(&self.poller, fd, ev) }
        };
        r?;
        st.registered = true;
        st.armed = want;
        Ok(())
    }

    /// `fd` is about to be closed: drop it from the interest set.
    fn forget_fd(&mut self, fd: RawFd) {
        if let Some(st) = self.fds.get_mut(fd as usize) {
            if st.registered {
                // SAFETY: the fd is still open (the close has not happened yet).
                let _ = self.poller.delete(unsafe { BorrowedFd::borrow_raw(fd) });
                st.registered = false;
                st.armed = (false, false);
            }
        }
    }

    pub(crate) fn cancel(
        &mut self,
        core: &mut Core,
        c: NonNull<Completion>,
        target: NonNull<Completion>,
    ) {
        let tin = Completion::raw(target);
        // SAFETY: `target` is registered, so live; loop thread.
        let fd = unsafe { (*tin).op.fd() };
        let removed = fd
            .and_then(|fd| self.fds.get_mut(fd as usize))
            .is_some_and(|st| st.readers.remove(target) || st.writers.remove(target));
        if removed {
            core.finish(target, -(libc::ECANCELED as isize));
            core.finish(c, 0);
        } else {
            core.finish(c, -(libc::ENOENT as isize));
        }
    }

    pub(crate) fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<()> {
        self.events.clear();
        self.poller.wait(&mut self.events, timeout)?;
        let mut fired = std::mem::take(&mut self.fired);
        fired.extend(
            self.events
                .iter()
                .map(|ev| (ev.key as RawFd, ev.readable, ev.writable)),
        );
        for &(fd, readable, writable) in &fired {
            self.on_ready(core, fd, readable, writable);
        }
        fired.clear();
        self.fired = fired;
        Ok(())
    }

    fn on_ready(&mut self, core: &mut Core, fd: RawFd, readable: bool, writable: bool) {
        let Some(st) = self.fds.get_mut(fd as usize) else {
            return;
        };
        st.armed = (false, false);
        if readable {
            drain(core, &mut st.readers);
        }
        if writable {
            drain(core, &mut st.writers);
        }
        if let Err(e) = self.arm(fd) {
            let err = -(e.raw_os_error().unwrap_or(libc::EIO) as isize);
            let st = &mut self.fds[fd as usize];
            while let Some(w) = st.readers.pop().or_else(|| st.writers.pop()) {
                core.finish(w, err);
            }
        }
    }

    pub(crate) fn shutdown(&mut self, core: &mut Core) {
        for (fd, st) in self.fds.iter_mut().enumerate() {
            while let Some(c) = st.readers.pop().or_else(|| st.writers.pop()) {
                core.abandon(c, None);
            }
            if st.registered {
                // SAFETY: the fd may be closed already, in which case delete just fails.
                let _ = self
                    .poller
                    .delete(unsafe { BorrowedFd::borrow_raw(fd as RawFd) });
                st.registered = false;
            }
        }
    }
}

/// Retry the waiters of one direction in order until one would block again.
fn drain(core: &mut Core, q: &mut Intrusive<Completion>) {
    while let Some(c) = q.peek() {
        let inner = Completion::raw(c);
        // SAFETY: queued waiters are Active and live; only the loop touches them.
        let res = unsafe { sys::perform(inner, (*inner).connecting) };
        if res == EAGAIN {
            return;
        }
        q.pop();
        core.finish(c, res);
    }
}

/// Add `fd` to the poller (modify if it is already there).
///
/// # Safety
/// `fd` must be open. `polling` asks that a source be deleted before it is closed; this
/// backend deletes fds it closes itself (`Op::Close`), and a registration left behind by
/// an fd closed elsewhere is dropped by the kernel with the file and detected (`ENOENT`)
/// before reuse, so no stale registration is ever relied upon.
unsafe fn add_fd(poller: &Poller, fd: RawFd, ev: Event) -> io::Result<()> {
    // SAFETY: per the function contract.
    match unsafe { poller.add(fd, ev) } {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            // SAFETY: `fd` is open per the contract.
            poller.modify(unsafe { BorrowedFd::borrow_raw(fd) }, ev)
        }
        r => r,
    }
}
