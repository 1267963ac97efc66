//! The poll backend: completion semantics emulated over readiness.
//!
//! An operation is first tried at once (`MSG_DONTWAIT` / non-blocking fd) unless the fd is
//! known not to be ready. If it would block, the completion joins a FIFO of readers or
//! writers for its fd. Each fd is registered once, edge-triggered, for both directions;
//! when an edge arrives, that direction's waiters are retried in order until one would
//! block again. A per-fd readiness cache (cleared by `EAGAIN`, and by a short read or
//! write on a stream whose peer has not hung up) saves the syscalls that would only report
//! `EAGAIN`.
//!
//! The readiness source is raw epoll on Linux ([`super::epoll`]) and the `polling` crate
//! elsewhere ([`super::polling`]). Regular-file work (`pread`, `pwrite`, and
//! `read`/`write`/`close` on a regular file) runs on the thread pool, except a `pread`
//! whose data is all in the page cache (`preadv2(RWF_NOWAIT)` first, on the loop thread).
//!
//! **fd reuse.** An fd closed outside the loop loses its kernel registration with the file.
//! So before parking a freshly added operation, the registration is refreshed (one
//! `epoll_ctl`), which also re-reports current readiness (and, if the kernel had dropped
//! the registration, forgets what was learnt of the old file); a *rearmed* operation (the
//! same operation on the same fd, right after its callback) whose completion has parked
//! since its fresh start trusts the cache and costs no syscall. Fds closed with [`Op::Close`] (which first cancels the operations parked on
//! them) and fds produced by accept reset their state. The async runtime's sockets report
//! when a loop first sees them and when they close (`fd_opened` / `fd_closed`), so their
//! registration is trusted and their operations park without a syscall.

use crate::sys::fd::{from_index as fd_from_index, index as fd_index, AsRawFd, RawFd};
use std::io;
use std::ptr::NonNull;
use std::task::Waker;
use std::time::Duration;

#[cfg(target_os = "linux")]
use super::epoll::Epoll;
use super::polling::PollingSource;
use crate::completion::{Completion, FdKind, Phase};
use crate::event_loop::Core;
use crate::op::Op;
use crate::queue::Intrusive;
use crate::sys::{self, Wait};

const EAGAIN: isize = -(libc::EAGAIN as isize);

/// A read or write call transfers at most `MAX_RW_COUNT` bytes on Linux (`INT_MAX` rounded
/// down to a page; this is its value for pages up to 64 KiB): a result this large may be
/// that cap rather than a full or empty queue, so it never counts as short.
const MAX_RW_COUNT: usize = 0x7fff_0000;

/// One fd's readiness as reported by a source.
pub(crate) struct Readiness {
    pub(crate) fd: RawFd,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer hung up or an error is pending, or TCP urgent data came (a read stops
    /// short at its mark), or the source cannot tell: a short read no longer means
    /// "drained".
    pub(crate) hup: bool,
}

/// Where readiness comes from.
enum Source {
    #[cfg(target_os = "linux")]
    Epoll(Epoll),
    Polling(PollingSource),
}

macro_rules! source {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            #[cfg(target_os = "linux")]
            Source::Epoll($s) => $e,
            Source::Polling($s) => $e,
        }
    };
}

impl Source {
    fn new(capacity: usize) -> io::Result<Source> {
        #[cfg(target_os = "linux")]
        if std::env::var_os("XEV_EPOLL_VIA_POLLING").is_none_or(|v| v == "0") {
            return Ok(Source::Epoll(Epoll::new(capacity)?));
        }
        Ok(Source::Polling(PollingSource::new(capacity)?))
    }
    fn add(&self, fd: RawFd) -> io::Result<()> {
        source!(self, s => s.add(fd))
    }
    fn refresh(&self, fd: RawFd) -> io::Result<bool> {
        source!(self, s => s.refresh(fd))
    }
    fn delete(&self, fd: RawFd) {
        source!(self, s => s.delete(fd))
    }
    fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        source!(self, s => s.waker())
    }
    fn wait(&mut self, out: &mut Vec<Readiness>, timeout: Option<Duration>) -> io::Result<usize> {
        source!(self, s => s.wait(out, timeout))
    }
}

struct FdState {
    readers: Intrusive<Completion>,
    writers: Intrusive<Completion>,
    /// `Op::Poll`s for both `IN` and `OUT`, which either direction's edge may finish
    /// (see [`is_dual_poll`]); they consume nothing, so they queue behind nobody.
    pollers: Intrusive<Completion>,
    /// The fd is registered with the source.
    registered: bool,
    /// Readiness cache: worth trying a read / a write now.
    readable: bool,
    writable: bool,
    /// A short read means the receive queue is empty (TCP sockets and pipes, not Unix
    /// streams, datagrams, ttys or other devices: `sys::short_read_drains`).
    stream: bool,
    /// A hang-up or error was reported: EOF (or the error) may be pending behind the
    /// data, with no further edge to announce it, so short reads keep `readable`.
    hup: bool,
    /// The owner promised to report this fd's close (`fd_closed`), so its registration
    /// can be trusted without a refresh (the async runtime's sockets).
    tracked: bool,
    /// A tracked fd's kind, once looked up: `Some(true)` for a regular file or block
    /// device (its I/O goes to the thread pool). Only trusted while `tracked`: an
    /// untracked number may be closed and reused for another kind of file unseen.
    blocking_file: Option<bool>,
    /// Async-runtime tasks waiting for this direction's next edge without an operation
    /// (see [`Driver::transfer_or_wait`]), in the order they started waiting.
    read_waiters: Waiters,
    write_waiters: Waiters,
}

/// Tasks waiting for one direction of an fd, each with the id its future withdraws by.
/// The `Vec` keeps its capacity across waits, so steady-state waits allocate nothing.
#[derive(Default)]
struct Waiters(Vec<(u64, Waker)>);

impl Waiters {
    /// Wake every waiter, in the order they started waiting (the executor polls them in
    /// that order), and forget them.
    fn wake_all(&mut self) -> usize {
        let n = self.0.len();
        match n {
            0 => {}
            // The common case, without `drain`'s bookkeeping.
            1 => {
                if let Some((_, w)) = self.0.pop() {
                    w.wake();
                }
            }
            _ => {
                for (_, w) in self.0.drain(..) {
                    w.wake();
                }
            }
        }
        n
    }

    /// The waiter `id`, if it has not been woken since it started waiting.
    #[cfg(unix)]
    fn find(&mut self, id: u64) -> Option<&mut Waker> {
        self.0.iter_mut().find(|(i, _)| *i == id).map(|(_, w)| w)
    }
}

impl Default for FdState {
    fn default() -> Self {
        FdState {
            readers: Intrusive::default(),
            writers: Intrusive::default(),
            pollers: Intrusive::default(),
            registered: false,
            readable: true,
            writable: true,
            stream: false,
            hup: false,
            tracked: false,
            blocking_file: None,
            read_waiters: Waiters::default(),
            write_waiters: Waiters::default(),
        }
    }
}

impl FdState {
    /// Forget what we knew about the file behind this number. Parked operations stay;
    /// waiting tasks are woken (they look again, and find whatever the number now is).
    /// Returns how many tasks it woke.
    #[must_use]
    fn reset(&mut self) -> usize {
        self.registered = false;
        self.readable = true;
        self.writable = true;
        self.stream = false;
        self.hup = false;
        self.tracked = false;
        self.blocking_file = None;
        self.read_waiters.wake_all() + self.write_waiters.wake_all()
    }

    /// Whether an attempt in direction `wait` may be made now: nobody is queued ahead
    /// (FIFO) and the readiness cache says it may not block. The rule `start` and the
    /// async runtime's direct transfers share.
    fn may_try(&self, wait: Wait) -> bool {
        match wait {
            Wait::Readable => self.readers.is_empty() && self.readable,
            Wait::Writable => self.writers.is_empty() && self.writable,
        }
    }

    /// An attempt in direction `wait` returned `res` for `len` bytes: `EAGAIN` clears
    /// the readiness cache, and so does a short transfer on a stream whose peer has not
    /// hung up (its queue was drained, or its send buffer filled: the next attempt would
    /// only say `EAGAIN`, and what frees it is a new edge).
    #[inline]
    fn note_transfer(&mut self, wait: Wait, res: isize, len: usize) {
        let drained = res > 0 && (res as usize) < len.min(MAX_RW_COUNT) && self.stream && !self.hup;
        if res == EAGAIN || drained {
            self.set_ready(wait, false);
        }
    }

    fn set_ready(&mut self, wait: Wait, ready: bool) {
        match wait {
            Wait::Readable => self.readable = ready,
            Wait::Writable => self.writable = ready,
        }
    }

    /// Take any operation parked on this fd (cancel all, shutdown).
    fn pop_parked(&mut self) -> Option<NonNull<Completion>> {
        self.readers
            .pop()
            .or_else(|| self.writers.pop())
            .or_else(|| self.pollers.pop())
    }

    /// Take `c` off whichever queue of this fd it is parked in.
    fn remove_parked(&mut self, c: NonNull<Completion>) -> bool {
        self.readers.remove(c) || self.writers.remove(c) || self.pollers.remove(c)
    }

    fn waiters(&mut self, wait: Wait) -> &mut Waiters {
        match wait {
            Wait::Readable => &mut self.read_waiters,
            Wait::Writable => &mut self.write_waiters,
        }
    }
}

/// What [`Driver::transfer_or_wait`] did.
#[cfg(unix)]
pub(crate) enum Direct {
    /// The transfer was done: its result (`-errno` on error).
    Done(isize),
    /// It would block: the task waits for the fd's next edge under this id (see
    /// [`Driver::withdraw`]).
    Waiting(u64),
    /// Not for this path (an fd whose close is not reported, or operations queued
    /// ahead): start the operation as usual.
    Declined,
}

pub(crate) struct Driver {
    source: Source,
    /// Readiness reported by the last wait, reused.
    fired: Vec<Readiness>,
    fds: Vec<FdState>,
    /// Attempts that found the fd not ready (`EAGAIN`): each is a syscall the readiness
    /// cache did not save (tests of the cache read it through the loop).
    eagain: u64,
    /// Transfers done by [`transfer_or_wait`](Self::transfer_or_wait), without a
    /// completion.
    direct: u64,
    /// `fstat`s asked to tell a read's or write's regular file from a pollable fd (see
    /// [`is_blocking_file`](Self::is_blocking_file)).
    kind_lookups: u64,
    /// The id of the next task to wait in `transfer_or_wait`.
    #[cfg(unix)]
    next_waiter: u64,
    /// Tasks waiting in `transfer_or_wait` (see [`has_waiters`](Self::has_waiters)).
    waiting: usize,
    /// Names this driver to the buffer groups registered with it.
    #[cfg(unix)]
    token: u64,
    /// Buffer groups registered so far (the next group's id).
    #[cfg(unix)]
    groups: u16,
    /// Time limits of parked operations (`Loop::add_with_timeout`).
    links: super::link_timers::LinkTimers,
}

impl Driver {
    pub(crate) fn new(entries: u32) -> io::Result<Driver> {
        Ok(Driver {
            source: Source::new(entries.clamp(1, 4096) as usize)?,
            // The most one wait reports (the source's batch), so it never grows.
            fired: Vec::with_capacity(entries.clamp(1, 4096) as usize),
            fds: Vec::new(),
            eagain: 0,
            direct: 0,
            kind_lookups: 0,
            #[cfg(unix)]
            next_waiter: 0,
            waiting: 0,
            #[cfg(unix)]
            token: crate::buf_group::next_token(),
            #[cfg(unix)]
            groups: 0,
            links: Default::default(),
        })
    }

    /// A new buffer group served from a free list (see `Op::RecvMulti`).
    #[cfg(unix)]
    pub(crate) fn register_buffer_group(
        &mut self,
        count: u16,
        size: u32,
    ) -> io::Result<crate::buf_group::BufferGroup> {
        let g = crate::buf_group::Group::new_free(self.token, self.groups, count, size)?;
        self.groups = self.groups.wrapping_add(1);
        Ok(crate::buf_group::BufferGroup(std::rc::Rc::new(g)))
    }

    /// How many attempts so far reported `EAGAIN`.
    pub(crate) fn eagain_attempts(&self) -> u64 {
        self.eagain
    }

    pub(crate) fn direct_transfers(&self) -> u64 {
        self.direct
    }

    pub(crate) fn kind_lookups(&self) -> u64 {
        self.kind_lookups
    }

    /// Whether a task waits for an fd's edge without an operation (see
    /// [`transfer_or_wait`](Self::transfer_or_wait)): only a wait for readiness can wake
    /// it, however many tasks are ready.
    pub(crate) fn has_waiters(&self) -> bool {
        self.waiting > 0
    }

    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        self.source.waker()
    }

    /// The state of `fd`, growing the table to reach it. Only called for fds the kernel
    /// just accepted as open (an attempt that said `EAGAIN`, an accept's result, an fd
    /// announced by its owner), so the table is bounded by the process's fd limit, never
    /// by a number a caller made up; growth that cannot be allocated is an error.
    fn state(&mut self, fd: RawFd) -> io::Result<&mut FdState> {
        let idx = fd_index(fd);
        if self.fds.len() <= idx {
            self.fds
                .try_reserve(idx + 1 - self.fds.len())
                .map_err(|_| io::Error::from_raw_os_error(libc::ENOMEM))?;
            self.fds.resize_with(idx + 1, FdState::default);
        }
        Ok(&mut self.fds[idx])
    }

    /// Whether `fd` is a regular file or block device, whose I/O goes to the thread pool
    /// (`sys::is_blocking_file`, an `fstat`): looked up once for a tracked fd (the async
    /// runtime's pipes and files), every time for others, whose number may have been
    /// closed and reused for another kind of file since.
    fn is_blocking_file(&mut self, fd: RawFd) -> bool {
        let lookups = &mut self.kind_lookups;
        let mut ask = || {
            *lookups += 1;
            sys::is_blocking_file(fd)
        };
        match self.fds.get_mut(fd_index(fd)) {
            Some(st) if st.tracked => *st.blocking_file.get_or_insert_with(ask),
            _ => ask(),
        }
    }

    /// [`is_blocking_file`](Self::is_blocking_file), unless the operation's starter
    /// said what `fd` is (a watcher's descriptor, see `FdKind`).
    fn is_kind_blocking(&mut self, kind: FdKind, fd: RawFd) -> bool {
        match kind {
            FdKind::Readiness => false,
            FdKind::Blocking => true,
            FdKind::Unknown => self.is_blocking_file(fd),
        }
    }

    /// Whether `fd` is tracked and a regular file or block device (see
    /// [`is_blocking_file`](Self::is_blocking_file)): the direct path declines those.
    /// An untracked fd says false here; the direct path declines it anyway.
    #[cfg(unix)]
    pub(crate) fn is_tracked_blocking_file(&mut self, fd: RawFd) -> bool {
        let lookups = &mut self.kind_lookups;
        match self.fds.get_mut(fd_index(fd)) {
            Some(st) if st.tracked => *st.blocking_file.get_or_insert_with(|| {
                *lookups += 1;
                sys::is_blocking_file(fd)
            }),
            _ => false,
        }
    }

    pub(crate) fn start(&mut self, core: &mut Core, c: NonNull<Completion>, rearm: bool) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is Active and live, and no one else touches it now; loop thread.
        let blocking_file = unsafe {
            (*inner).connecting = false;
            // A rearm trusts the fd's registration only if this completion has seen it
            // refreshed (or made) since its fresh start: a fresh start that finished
            // without parking checked nothing, and its number may have been closed and
            // reused since the registration was made
            // (`reentry_and_fd_reuse.rs::a_rearm_on_a_reused_number_whose_first_attempt_did_not_park_...`).
            if !rearm {
                (*inner).fd.set_checked(false);
            }
            match &(*inner).op {
                Op::Pread { .. } | Op::Pwrite { .. } => true,
                #[cfg(unix)]
                Op::Statx { .. } => true,
                Op::OpenAt { .. }
                | Op::RenameAt { .. }
                | Op::UnlinkAt { .. }
                | Op::MkdirAt { .. }
                | Op::LinkAt { .. }
                | Op::SymlinkAt { .. }
                | Op::Fsync { .. }
                | Op::Fallocate { .. }
                | Op::Ftruncate { .. } => true,
                Op::Read { fd, .. } | Op::Write { fd, .. } => {
                    self.is_kind_blocking((*inner).fd.kind(), *fd)
                }
                Op::Close { fd: Some(f) } => {
                    let raw = f.as_raw_fd();
                    self.forget(core, raw);
                    sys::is_blocking_file(raw)
                }
                Op::Readv {
                    offset: Some(_), ..
                }
                | Op::Writev {
                    offset: Some(_), ..
                } => true,
                Op::Readv { fd, .. } | Op::Writev { fd, .. } => {
                    self.is_kind_blocking((*inner).fd.kind(), *fd)
                }
                _ => false,
            }
        };
        if blocking_file {
            // Data already in the page cache is read here, without the pool's two thread
            // switches; only a read that would wait for the disk (and every write) goes to
            // the pool.
            // SAFETY: `c` is Active and live, and only the loop touches it now.
            if let Some(res) = unsafe { sys::read_cached(inner) } {
                return self.complete(core, c, res);
            }
            return core.send_to_pool(c);
        }
        // SAFETY: as above.
        let (fd, wait) = unsafe {
            (
                (*inner).op.fd().unwrap_or(crate::sys::fd::NO_FD),
                sys::wait_kind(&(*inner).op),
            )
        };
        if crate::sys::fd::is_no_fd(fd) {
            return core.finish(c, -(libc::EBADF as isize));
        }
        #[cfg(unix)]
        // SAFETY: as above.
        if let Op::RecvMulti { group, .. } = unsafe { &(*inner).op } {
            if group.0.owner != self.token {
                // A group registered with another loop.
                return core.finish(c, -(libc::EINVAL as isize));
            }
        }
        // SAFETY: as above.
        if unsafe { matches!((*inner).op, Op::Shutdown { .. }) } {
            // shutdown(2) never blocks: do it now, whatever the readiness cache says (a
            // short read must not park it until the peer sends again), as io_uring does.
            let res = attempt(c);
            return self.complete(core, c, res);
        }
        // SAFETY: as above.
        if let Some(res) = unsafe { sys::done_at_submission(inner) } {
            return self.complete(core, c, res);
        }
        // SAFETY: as above.
        let dual = unsafe { is_dual_poll(&(*inner).op) };
        // An fd never seen has no state yet: it may be ready, and nobody is queued on it.
        // The table grows only once the attempt shows the fd is open (EAGAIN).
        // Try now only if nobody is queued ahead (FIFO) and the fd may be ready (a poll
        // for both directions: if either may be).
        let try_now = |st: &FdState| match dual {
            false => st.may_try(wait),
            true => st.readable || st.writable,
        };
        if self.fds.get(fd_index(fd)).is_none_or(try_now) {
            let res = attempt(c);
            if res != EAGAIN {
                return self.complete(core, c, res);
            }
            self.eagain += 1;
            if let Some(st) = self.fds.get_mut(fd_index(fd)) {
                st.set_ready(wait, false);
                if dual {
                    // poll(2) found it neither readable nor writable.
                    st.set_ready(Wait::Writable, false);
                }
            }
        }
        // SAFETY: as above.
        let trusted = rearm && unsafe { (*inner).fd.checked() };
        self.park(core, c, fd, wait, trusted);
        self.links.arm(core, c);
    }

    /// The async runtime's direct path: perform `io` (a non-blocking transfer of `len`
    /// bytes on `fd`, in direction `wait`) now, without a completion, when [`start`]
    /// would try it first anyway; when it would block, let the task wait for the fd's
    /// next edge with `waker` instead of parking an operation.
    ///
    /// Only for an fd whose close its owner reports (`tracked`: its registration is
    /// trusted, and it cannot close while the caller holds it), and only while no
    /// operation is queued in that direction (else `Declined`: the caller starts one,
    /// which queues behind them). A task polled again under the id it got (`waiting`)
    /// before its edge keeps its place. Waiters are woken in the order they started
    /// waiting by the edge (and by the fd's close, reuse or move to another loop), and
    /// each then calls again: the executor polls them in that order, so the first to
    /// wait is served first (one that starts between the edge and their polls may go
    /// ahead of them, as in tokio).
    ///
    /// [`start`]: Self::start
    #[cfg(unix)] // the async runtime calls it on Unix only (`rt::io`)
    #[inline(always)]
    pub(crate) fn transfer_or_wait(
        &mut self,
        fd: RawFd,
        wait: Wait,
        len: usize,
        waiting: Option<u64>,
        waker: &Waker,
        io: impl FnOnce() -> isize,
    ) -> Direct {
        let Some(st) = self.fds.get_mut(fd_index(fd)) else {
            return Direct::Declined;
        };
        if !st.tracked {
            return Direct::Declined;
        }
        if let Some(id) = waiting {
            if let Some(w) = st.waiters(wait).find(id) {
                // Polled again before its edge: keep its place.
                if !w.will_wake(waker) {
                    w.clone_from(waker);
                }
                return Direct::Waiting(id);
            }
        }
        let queue_empty = match wait {
            Wait::Readable => st.readers.is_empty(),
            Wait::Writable => st.writers.is_empty(),
        };
        if !queue_empty {
            return Direct::Declined;
        }
        // Tasks wait only while the cache says "not ready" (an edge wakes them all and
        // sets it), so `may_try` also says nobody waits ahead of this one; a waiter left
        // behind by a future that could not withdraw never holds up a transfer.
        if st.may_try(wait) {
            let res = io();
            st.note_transfer(wait, res, len);
            if res != EAGAIN {
                self.direct += 1;
                return Direct::Done(res);
            }
            self.eagain += 1;
        }
        if !st.registered {
            if let Err(e) = self.source.add(fd) {
                return Direct::Done(-(e.raw_os_error().unwrap_or(libc::EIO) as isize));
            }
            let st = &mut self.fds[fd_index(fd)];
            st.registered = true;
            st.stream = sys::short_read_drains(fd);
        }
        let id = self.next_waiter;
        self.next_waiter += 1;
        self.fds[fd_index(fd)]
            .waiters(wait)
            .0
            .push((id, waker.clone()));
        self.waiting += 1;
        Direct::Waiting(id)
    }

    /// The task waiting under `id` (see [`transfer_or_wait`](Self::transfer_or_wait))
    /// no longer waits (its future was dropped).
    #[cfg(unix)]
    pub(crate) fn withdraw(&mut self, fd: RawFd, wait: Wait, id: u64) {
        if let Some(st) = self.fds.get_mut(fd_index(fd)) {
            let w = &mut st.waiters(wait).0;
            let before = w.len();
            w.retain(|(i, _)| *i != id);
            self.waiting -= before - w.len();
        }
    }

    /// Park `c` on `fd` in direction `wait`, registering the fd if needed. `trusted`: a
    /// rearm of a completion that saw the registration made or refreshed since its fresh
    /// start, so no refresh is needed.
    fn park(
        &mut self,
        core: &mut Core,
        c: NonNull<Completion>,
        fd: RawFd,
        wait: Wait,
        trusted: bool,
    ) {
        let st = match self.state(fd) {
            Ok(st) => st,
            Err(e) => return core.finish(c, -(e.raw_os_error().unwrap_or(libc::ENOMEM) as isize)),
        };
        // SAFETY: `c` is live, Active, and in no queue.
        unsafe {
            (*Completion::raw(c)).phase = Phase::Waiting;
            if is_dual_poll(&(*Completion::raw(c)).op) {
                // Either direction's edge retries it (`drain`): parked with the readers,
                // a writable socket never woke it.
                st.pollers.push(c);
            } else {
                match wait {
                    Wait::Readable => st.readers.push(c),
                    Wait::Writable => st.writers.push(c),
                }
            }
        }
        let registered = st.registered;
        let r = if !registered {
            self.source.add(fd).map(|()| {
                let st = &mut self.fds[fd_index(fd)];
                st.registered = true;
                st.stream = sys::short_read_drains(fd);
            })
        } else if !trusted && !st.tracked {
            self.source.refresh(fd).map(|readded| {
                if readded {
                    // Another file has the number now: what was learnt of the old one
                    // (stream or datagram, hung up) does not hold (`reentry_and_fd_reuse.rs::
                    // a_number_reused_by_a_datagram_socket_is_not_taken_for_a_stream`).
                    let st = &mut self.fds[fd_index(fd)];
                    st.stream = sys::short_read_drains(fd);
                    st.hup = false;
                }
            })
        } else {
            Ok(())
        };
        if r.is_ok() {
            // SAFETY: `c` is live (parked just now); loop thread.
            unsafe { (*Completion::raw(c)).fd.set_checked(true) };
        }
        if let Err(e) = r {
            // Cannot watch this fd: fail its waiters rather than hang them.
            let err = -(e.raw_os_error().unwrap_or(libc::EIO) as isize);
            let st = &mut self.fds[fd_index(fd)];
            st.registered = false;
            while let Some(w) = st.pop_parked() {
                core.finish(w, err);
            }
        }
    }

    /// Record a finished attempt: update the readiness cache and queue the callback.
    fn complete(&mut self, core: &mut Core, c: NonNull<Completion>, res: isize) {
        let inner = Completion::raw(c);
        // SAFETY: `c` is live and Active; loop thread.
        let op = unsafe { &(*inner).op };
        match op {
            Op::Read { fd, buf } | Op::Recv { fd, buf } => {
                // Only an fd seen before has a cache to update.
                if let Some(st) = self.fds.get_mut(fd_index(*fd)) {
                    st.note_transfer(Wait::Readable, res, buf.len());
                }
            }
            #[cfg(unix)]
            Op::AcceptUnix { .. } if res >= 0 => {
                // A number seen before now names the new connection.
                if let Some(st) = self.fds.get_mut(fd_index(res as RawFd)) {
                    self.waiting -= st.reset();
                }
            }
            #[cfg(unix)]
            Op::AcceptMulti { .. } if res >= 0 => {
                // A number seen before now names the new connection.
                if let Some(st) = self.fds.get_mut(res as usize) {
                    self.waiting -= st.reset();
                }
            }
            Op::Accept { .. } if res >= 0 => {
                // A number seen before now names the new connection.
                if let Some(st) = self.fds.get_mut(fd_index(res as RawFd)) {
                    self.waiting -= st.reset();
                }
            }
            Op::Write { fd, buf } | Op::Send { fd, buf } | Op::SendZc { fd, buf } => {
                if let Some(st) = self.fds.get_mut(fd_index(*fd)) {
                    st.note_transfer(Wait::Writable, res, buf.len());
                }
            }
            _ => {}
        }
        core.finish(c, res);
    }

    /// A new file now has number `fd` and its owner will report its close: forget what
    /// was known about the number (a file closed behind the loop's back left it), and
    /// trust the registration made by its next wait until [`fd_closed`](Self::fd_closed).
    pub(crate) fn fd_opened(&mut self, fd: RawFd) {
        // Without room for its state, the fd simply stays untracked (its operations then
        // refresh the registration, or fail with ENOMEM when they park).
        if let Ok(st) = self.state(fd) {
            let woken = st.reset();
            st.tracked = true;
            self.waiting -= woken;
        }
    }

    /// `fd` stays open but its owner will no longer report its close (it moved to another
    /// loop): keep its readiness cache and registration (refreshed if it is announced
    /// again), and wake its waiters.
    pub(crate) fn fd_released(&mut self, fd: RawFd) {
        if let Some(st) = self.fds.get_mut(fd_index(fd)) {
            st.tracked = false;
            // Each looks again: a task still polled here announces the fd to this loop
            // again (`LoopFd::raw_on`) and so waits again without an operation
            // (`rt_fd_lifetime::a_read_waiting_without_an_operation_is_woken_...`).
            self.waiting -= st.read_waiters.wake_all() + st.write_waiters.wake_all();
        }
    }

    /// `fd` is about to be closed by its owner (see [`fd_opened`](Self::fd_opened)).
    pub(crate) fn fd_closed(&mut self, core: &mut Core, fd: RawFd) {
        self.forget(core, fd);
    }

    /// `fd` is about to be closed by the loop: cancel the operations parked on it (their
    /// callbacks get Canceled), and drop its registration and cache.
    fn forget(&mut self, core: &mut Core, fd: RawFd) {
        if let Some(st) = self.fds.get_mut(fd_index(fd)) {
            while let Some(w) = st.pop_parked() {
                core.finish(w, -(libc::ECANCELED as isize));
            }
            if st.registered {
                self.source.delete(fd);
            }
            self.waiting -= st.reset();
        }
    }

    pub(crate) fn cancel(
        &mut self,
        core: &mut Core,
        c: NonNull<Completion>,
        target: NonNull<Completion>,
    ) {
        // SAFETY: `target` is registered, so live; loop thread.
        let fd = unsafe { (*Completion::raw(target)).op.fd() };
        let removed = fd
            .and_then(|fd| self.fds.get_mut(fd_index(fd)))
            .is_some_and(|st| st.remove_parked(target));
        if removed {
            core.finish(target, -(libc::ECANCELED as isize));
            core.finish(c, 0);
        } else {
            core.finish(c, -(libc::ENOENT as isize));
        }
    }

    /// See `Driver::wait`; returns the number of events the source took, its wake-ups
    /// included.
    pub(crate) fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<usize> {
        let mut fired = std::mem::take(&mut self.fired);
        let r = self.source.wait(&mut fired, self.links.cap(timeout));
        for ev in &fired {
            if ev.hup {
                if let Some(st) = self.fds.get_mut(fd_index(ev.fd)) {
                    st.hup = true;
                }
            }
            if ev.readable {
                self.drain(core, ev.fd, Wait::Readable);
            }
            if ev.writable {
                self.drain(core, ev.fd, Wait::Writable);
            }
        }
        fired.clear();
        self.fired = fired;
        let mut links = std::mem::take(&mut self.links);
        links.expire(core, |core, c| self.time_out(core, c));
        self.links = links;
        r
    }

    /// `c`'s time limit passed while it was parked: take it off its fd's queue and fail
    /// it with `ETIMEDOUT`.
    fn time_out(&mut self, core: &mut Core, c: NonNull<Completion>) {
        // SAFETY: `c` is registered, so live; loop thread.
        let fd = unsafe { (*Completion::raw(c)).op.fd() };
        let removed = fd
            .and_then(|fd| self.fds.get_mut(fd_index(fd)))
            .is_some_and(|st| st.remove_parked(c));
        if removed {
            core.finish(c, -(libc::ETIMEDOUT as isize));
        }
    }

    /// `fd` became ready in direction `wait`: retry its waiters in order until one would
    /// block again (or a short read says the stream is empty).
    #[inline(always)]
    fn drain(&mut self, core: &mut Core, fd: RawFd, wait: Wait) {
        let Some(st) = self.fds.get_mut(fd_index(fd)) else {
            return;
        };
        st.set_ready(wait, true);
        // Tasks waiting without an operation look again when the executor polls them;
        // operations parked in this direction are retried now.
        let waiters = st.waiters(wait);
        if !waiters.0.is_empty() {
            self.waiting -= waiters.wake_all();
        }
        let parked = match wait {
            Wait::Readable => !st.readers.is_empty(),
            Wait::Writable => !st.writers.is_empty(),
        };
        let pollers = !st.pollers.is_empty();
        // The common edge (nothing parked: a direction the runtime's tasks use directly,
        // or a write edge nobody waits for) ends here.
        if parked {
            self.retry_parked(core, fd, wait);
        }
        if pollers {
            self.retry_pollers(core, fd);
        }
    }

    /// Retry the polls for both directions parked on `fd` (an edge of either came), in
    /// order; those still not ready stay, in the same order.
    #[inline(never)]
    fn retry_pollers(&mut self, core: &mut Core, fd: RawFd) {
        let n = self.fds[fd_index(fd)].pollers.len();
        for _ in 0..n {
            let Some(c) = self.fds[fd_index(fd)].pollers.pop() else {
                return;
            };
            let res = attempt(c);
            if res == EAGAIN {
                self.eagain += 1;
                // SAFETY: `c` is live and Active, and was just taken off the queue.
                unsafe { self.fds[fd_index(fd)].pollers.push(c) };
            } else {
                self.complete(core, c, res);
            }
        }
    }

    /// [`drain`](Self::drain)'s retries of the operations parked on `fd` in direction
    /// `wait` (kept out of line: the common edge has none).
    #[inline(never)]
    fn retry_parked(&mut self, core: &mut Core, fd: RawFd, wait: Wait) {
        loop {
            let st = &mut self.fds[fd_index(fd)];
            let (head, ready) = match wait {
                Wait::Readable => (st.readers.peek(), st.readable),
                Wait::Writable => (st.writers.peek(), st.writable),
            };
            let (Some(c), true) = (head, ready) else {
                return;
            };
            let res = attempt(c);
            let st = &mut self.fds[fd_index(fd)];
            if res == EAGAIN {
                self.eagain += 1;
                st.set_ready(wait, false);
                return;
            }
            match wait {
                Wait::Readable => st.readers.pop(),
                Wait::Writable => st.writers.pop(),
            };
            self.complete(core, c, res);
        }
    }

    pub(crate) fn shutdown(&mut self, core: &mut Core) {
        self.links.clear();
        self.waiting = 0;
        for (fd, st) in self.fds.iter_mut().enumerate() {
            while let Some(c) = st.pop_parked() {
                core.abandon(c, None);
            }
            // Woken, not forgotten: a shutdown through `xev::rt::with_loop` leaves the
            // runtime running, and its tasks look again (and start an operation: the fd
            // is no longer tracked). A closing runtime completed its tasks first, so
            // their wakers do nothing then.
            st.read_waiters.wake_all();
            st.write_waiters.wake_all();
            if st.registered {
                self.source.delete(fd_from_index(fd));
                let _ = st.reset();
            }
        }
    }
}

/// Whether `op` is an `Op::Poll` for both `IN` and `OUT`: it finishes on either
/// direction's readiness, so it waits for both edges (`FdState::pollers`).
fn is_dual_poll(op: &Op) -> bool {
    matches!(op, Op::Poll { events, .. }
        if events.contains(crate::PollEvents::IN) && events.contains(crate::PollEvents::OUT))
}

/// Perform `c`'s operation once, remembering an in-progress connect.
fn attempt(c: NonNull<Completion>) -> isize {
    let inner = Completion::raw(c);
    // SAFETY: `c` is Active and live and only the loop touches it; its buffer is valid.
    unsafe {
        let res = sys::perform(inner, (*inner).connecting);
        if res == EAGAIN {
            if let Op::Connect { .. } = (*inner).op {
                (*inner).connecting = true;
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wake-up is an event every source's wait counts, once, though it reports no
    /// readiness: a wait that took it must say so (see `Loop::wait_after_yield`).
    #[test]
    fn a_wake_up_counts_as_one_event_once() {
        let sources = [
            ("polling", Source::Polling(PollingSource::new(8).unwrap())),
            #[cfg(target_os = "linux")]
            ("epoll", Source::Epoll(Epoll::new(8).unwrap())),
        ];
        for (name, mut src) in sources {
            let mut out = Vec::new();
            let mut look = |src: &mut Source| src.wait(&mut out, Some(Duration::ZERO)).unwrap();
            assert_eq!(look(&mut src), 0, "{name}");
            let wake = src.waker();
            wake();
            assert_eq!(look(&mut src), 1, "{name}: the wake-up");
            assert_eq!(look(&mut src), 0, "{name}: counted once");
            // Two wake-ups before a wait are one event.
            wake();
            wake();
            assert_eq!(look(&mut src), 1, "{name}: two wake-ups");
            assert_eq!(look(&mut src), 0, "{name}");
            assert!(out.is_empty(), "{name}: a wake-up is no fd's readiness");
        }
    }

    /// A tracked fd's kind (regular file or not) is looked up once, until its owner
    /// announces a new file under the number; an untracked fd's every time, since its
    /// number may name another kind of file by now.
    #[cfg(unix)]
    #[test]
    fn a_tracked_fds_kind_is_looked_up_once_and_forgotten_with_it() {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("xev-kind-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let (rd, _wr) = sys::pipe_cloexec_nonblocking().unwrap();
        let fd = rd.as_raw_fd();
        // Point `fd` at the file or at a fresh pipe, behind the driver's back.
        let become_file = || {
            // SAFETY: `fd` is ours (the pipe's read end) and `file` stays open.
            assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), fd) }, fd);
        };
        let become_pipe = || {
            let (p, _w) = sys::pipe_cloexec_nonblocking().unwrap();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::dup2(p.as_raw_fd(), fd) }, fd);
        };
        let mut d = Driver::new(8).unwrap();

        // Untracked: looked up every time.
        assert!(!d.is_blocking_file(fd));
        become_file();
        assert!(
            d.is_blocking_file(fd),
            "an untracked number is looked up again"
        );

        // Tracked: looked up once; the owner reports any new file under the number.
        d.fd_opened(fd);
        assert!(d.is_blocking_file(fd));
        assert_eq!(d.fds[fd_index(fd)].blocking_file, Some(true));
        become_pipe();
        assert!(d.is_blocking_file(fd), "trusted until the owner announces");
        d.fd_opened(fd);
        assert!(
            !d.is_blocking_file(fd),
            "a new file under the number: looked up"
        );
        assert_eq!(d.fds[fd_index(fd)].blocking_file, Some(false));

        // Released (moved to another loop): no longer trusted.
        d.fd_released(fd);
        become_file();
        assert!(d.is_blocking_file(fd));
    }
}
