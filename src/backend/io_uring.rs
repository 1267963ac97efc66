//! The io_uring backend: each [`Op`] becomes one native SQE whose `user_data` is the
//! completion's address. One `io_uring_enter` per tick submits everything queued and
//! waits, with the nearest user-space timer deadline as its timeout (`EXT_ARG`), so no
//! TIMEOUT SQE is ever used for timers.
//!
//! **Accepts on one listener go to the kernel one at a time.** The kernel parks an accept
//! that finds no connection on the listener's wait queue as an *exclusive* waiter: a new
//! connection wakes only the first one. An accept being cancelled stays on that queue
//! until the cancel's task work runs (with `DEFER_TASKRUN`, at our next wait), and it
//! still takes the wake-up, which the cancel then turns into `ECANCELED`: another accept
//! parked behind it on the same listener never hears of the connection, which sits in the
//! backlog until the next client arrives. So while an accept on a listener is in the
//! kernel, later accepts on it wait here (in order) and are issued when it completes;
//! issued after the earlier one is reaped, each tries the backlog first and finds
//! whatever the cancelled one let through. (Loops on other threads that share the
//! listener are not covered: each serialises only its own accepts.)
//!
//! **Time limits of completions that wait here, not in the kernel** (`add_with_timeout`):
//! an accept waiting for its turn, and a multishot completion parked on its record. The
//! driver keeps their deadlines (a limit runs from the `add` or rearm, as on the poll
//! backend): the kernel's wait is cut short for the nearest one, and a completion whose
//! deadline has passed fails with `ETIMEDOUT` (a multishot one is detached from its
//! record, as by a cancel). An accept issued after waiting gets a LINK_TIMEOUT of what is
//! left of its limit.
//!
//! **Multishot operations** (`Op::AcceptMulti`, `Op::RecvMulti`) post to a record the
//! driver owns ([`Multi`]; its address, tagged, is the SQE's `user_data`), not to their
//! completion. A result reaches the completion if it is parked on the record, and waits
//! in the record otherwise (in order), until the completion's callback rearms it. A
//! completion that stops (Disarm, cancel, re-prepared with another operation, loop
//! shutdown) is detached: the record's queued results are disposed of (connections
//! closed, buffers returned to their group), its SQE is cancelled, and it is freed at its
//! last CQE. Before 5.19 (no `SOCKET` opcode, so no multishot accept; provided-buffer
//! rings refused) accepts are issued one per rearm and receives wait for readiness
//! (`POLL_ADD`), then take a free buffer, as on the poll backend.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{opcode, squeue, types, IoUring};

use crate::completion::{Completion, Inner, Phase};
use crate::event_loop::Core;
use crate::link_timeout::{LinkWait, Links};
use crate::op::Op;
use crate::sys;

/// `user_data` of SQEs whose completions nobody waits for (shutdown cancels).
const IGNORE: u64 = 0;
/// `user_data` of the multishot poll on the wake-up eventfd.
const WAKE: u64 = 1;
/// Low bits of the `user_data` of a multishot record ([`Multi`]); completions are
/// 8-aligned, so their addresses never carry them.
const MULTI_TAG: u64 = 2;

pub(crate) struct Driver {
    ring: IoUring,
    /// Completions whose SQE was pushed and whose CQE has not arrived.
    in_kernel: usize,
    wake_fd: Arc<OwnedFd>,
    wake_armed: bool,
    /// (user_data, result, flags) of the CQEs being processed; reused.
    cqes: Vec<(u64, i32, u32)>,
    /// Listeners with an accept in the kernel, and the accepts waiting for it to finish
    /// (see the module docs). A handful of entries: one per busy listener.
    accepts: Vec<Accepting>,
    /// Some accept waiting in `accepts`, or some multishot completion parked on its
    /// record, may have a time limit (deadlines are checked on each wait while set; see
    /// the module docs).
    limits: bool,
    /// The opcodes this kernel supports (`None` if it cannot say): a filesystem operation
    /// whose opcode is missing (FTRUNCATE before 6.9, MKDIRAT/LINKAT/SYMLINKAT before
    /// 5.15) runs on the thread pool instead, as on the poll backend.
    probe: Option<io_uring::Probe>,
    /// Multishot operations the kernel may still post to, by their record's address
    /// (the SQE's `user_data` without [`MULTI_TAG`]).
    multis: AddrMap<Record>,
    /// Completion address -> record, for the completion each record serves.
    attached: AddrMap<usize>,
    /// Results of multishot records for their parked completions, finished after a reap.
    multi_done: Vec<(NonNull<Completion>, isize)>,
    /// Names this driver to its buffer groups.
    token: u64,
    /// Registered buffer groups (unregistered when the driver is dropped).
    groups: Vec<crate::buf_group::BufferGroup>,
    /// The kernel has `IORING_ACCEPT_MULTISHOT` (5.19+, probed by the SOCKET opcode of
    /// the same release); without it each record issues single accepts.
    accept_multishot: bool,
    /// Timespecs of LINK_TIMEOUT SQEs not yet consumed by the kernel (it copies them when
    /// it takes the SQE), and spare ones to reuse. Boxed: their addresses are in SQEs.
    #[allow(clippy::vec_box)] // each timespec must keep its address while the Vec grows
    link_ts: Vec<Box<types::Timespec>>,
    #[allow(clippy::vec_box)]
    spare_ts: Vec<Box<types::Timespec>>,
    /// Registered files for the runtime's fds (`uring_fixed.rs`), when turned on.
    fixed: Option<super::uring_fixed::FixedFiles>,
    /// When receives ask the kernel to wait for data before trying (see [`PollFirst`]).
    poll_first: PollFirst,
    /// SEND_ZC completions whose count arrived and whose notification has not (see
    /// `zc_step`): the notification waits until the data has left the socket, which may
    /// be never (a peer that does not read, a socket nobody closes).
    zc_waiting: AddrMap<NonNull<Completion>>,
    /// Addresses of SEND_ZC completions a shutdown abandoned before their notification
    /// (their buffers leaked to the kernel): that CQE, when it comes, is dropped, and a
    /// zero-copy send on the same address is sent as a plain send meanwhile, so that no
    /// notification can be taken for another's.
    stray_notifs: Vec<usize>,
}

/// `IORING_RECVSEND_POLL_FIRST` (in the SQE's `ioprio`; kernel 5.19+).
const RECVSEND_POLL_FIRST: u16 = 1;

/// The environment variable that chooses [`PollFirst`]: `0` never, `1` on every receive;
/// unset (or anything else) the default, [`PollFirst::Hint`].
pub(crate) const POLL_FIRST_ENV: &str = "XEV_URING_POLL_FIRST";

/// Whether `Op::Recv`/`Op::RecvMsg` SQEs carry `IORING_RECVSEND_POLL_FIRST`, which makes
/// the kernel arm its poll before the first attempt instead of after a failed one.
/// That saves a futile receive when the socket is empty (request/response traffic) and
/// costs a poll arm when data is already there (streaming).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PollFirst {
    /// Never (also forced when the kernel lacks the flag: before 5.19 it is `EINVAL`).
    Off,
    /// When the previous `Op::Recv` of the same completion (rearmed) returned data and
    /// left the stream socket empty (no `IORING_CQE_F_SOCK_NONEMPTY`): request/response
    /// traffic. Never after an `Op::RecvMsg` (see [`left_stream_empty`]). A freshly
    /// prepared completion does not, so a receive on a non-socket still fails with
    /// `ENOTSOCK` at once (polled first, it would wait for readability first).
    Hint,
    /// On every receive (a measurement knob: a receive on a non-socket then waits until
    /// the fd is readable before it fails with `ENOTSOCK`).
    Always,
}

impl PollFirst {
    /// The mode `XEV_URING_POLL_FIRST` asks for, on a kernel that has (or lacks) the flag.
    fn choose(env: Option<&std::ffi::OsStr>, supported: bool) -> PollFirst {
        match env.and_then(|v| v.to_str()) {
            _ if !supported => PollFirst::Off,
            Some("0") => PollFirst::Off,
            Some("1") => PollFirst::Always,
            _ => PollFirst::Hint,
        }
    }

    /// The `ioprio` of a receive by the completion `inner`.
    ///
    /// # Safety
    /// `inner` is live and only the loop thread touches it now.
    unsafe fn ioprio(self, inner: *const Inner) -> u16 {
        match self {
            PollFirst::Off => 0,
            PollFirst::Always => RECVSEND_POLL_FIRST,
            // SAFETY: the caller's contract.
            PollFirst::Hint if unsafe { (*inner).connecting } => RECVSEND_POLL_FIRST,
            PollFirst::Hint => 0,
        }
    }
}

/// Whether a stream receive that completed with `res` and CQE `flags` emptied its socket:
/// the hint of [`PollFirst::Hint`] for the completion's next receive.
///
/// Only `Op::Recv` (stream sockets in xev's watchers) takes it: the kernel reports
/// `IORING_CQE_F_SOCK_NONEMPTY` for TCP and Unix stream sockets, but never for datagram
/// sockets (UDP, Unix datagram: checked on 6.18 by
/// `tests::only_stream_sockets_report_a_nonempty_queue`), where a clear flag says
/// nothing. Taking the hint there made every rearmed `recvmsg` poll first: a poll arm
/// and a task-work round per datagram, 1.5x the receiver's CPU under udp_pummel.
fn left_stream_empty(res: isize, flags: u32) -> bool {
    res > 0 && !io_uring::cqueue::sock_nonempty(flags)
}

/// A map keyed by addresses (of completions and multishot records), with a hash that
/// costs one multiplication (SipHash would be a measurable share of a datagram's cost).
type AddrMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<AddrHasher>>;

/// Hashes one address: its bits above the alignment, times an odd constant.
#[derive(Default)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
        self.0 = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = ((n as u64) >> 3).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a multishot record receives.
enum MultiKind {
    Accept,
    Recv(crate::buf_group::BufferGroup),
}

/// One multishot submission. The kernel posts to it (its address is the SQE's
/// `user_data`), not to the completion it serves: a completion that stops (Disarm,
/// cancel, re-prepared with another operation) is detached, while the record lives on
/// until its last CQE (no `IORING_CQE_F_MORE`) and disposes of what still arrives.
struct Multi {
    fd: RawFd,
    kind: MultiKind,
    /// The completion it serves.
    attached: Option<NonNull<Completion>>,
    /// The attached completion waits (phase `Kernel`) for this record's next result.
    parked: bool,
    /// Results that arrived while the completion was not parked (in order).
    pending: VecDeque<isize>,
    /// When the parked completion's time limit (if any) expires.
    deadline: Option<Instant>,
    /// The kernel may still post to this record.
    live: bool,
    cancel_sent: bool,
}

/// A [`Multi`] owned through the pointer `Box::into_raw` gave (freed on drop). Its
/// address is the SQE's `user_data`, and the CQE path and a batch (`multishot_next`)
/// reach the record through it without a map lookup; a `Box` moved around by the map
/// would claim unique access to the record on every move, invalidating such pointers.
struct Record(NonNull<Multi>);

impl Record {
    fn new(m: Multi) -> Record {
        Record(NonNull::from(Box::leak(Box::new(m))))
    }

    /// The address the record is known by (its pointer's provenance exposed, for the
    /// pointer made back from it).
    fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl std::ops::Deref for Record {
    type Target = Multi;
    fn deref(&self) -> &Multi {
        // SAFETY: the record is live until `self` drops, and the borrow of `self` keeps
        // any `&mut` made from `self` from coexisting with this one.
        unsafe { self.0.as_ref() }
    }
}

impl std::ops::DerefMut for Record {
    fn deref_mut(&mut self) -> &mut Multi {
        // SAFETY: as in `deref`, with `&mut self` exclusive.
        unsafe { self.0.as_mut() }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // SAFETY: from `Box::leak` in `new`, freed only here.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

impl Multi {
    /// Result `res` arrived: to the attached completion if it waits (into `done`, to be
    /// finished after the reap), queued if it does not wait yet, disposed of if nobody
    /// is attached. True: the record is over (nothing attached, nothing more to come).
    fn hand_over(&mut self, res: isize, done: &mut Vec<(NonNull<Completion>, isize)>) -> bool {
        match self.attached {
            Some(c) if self.parked => {
                self.parked = false;
                done.push((c, res));
            }
            Some(_) => self.pending.push_back(res),
            None => dispose(&self.kind, res),
        }
        !self.live && self.attached.is_none()
    }

    /// Completion `c` (attached to `m`) starts: the oldest result that arrived while it
    /// was not waiting, or none, and then `c` waits (phase `Kernel`) for the next one.
    fn take_or_park(m: &mut Multi, c: NonNull<Completion>) -> Option<isize> {
        if let Some(res) = m.pending.pop_front() {
            return Some(res);
        }
        m.parked = true;
        // SAFETY: `c` is Active and live; loop thread.
        unsafe { (*Completion::raw(c)).phase = Phase::Kernel };
        None
    }
}

/// Low bit of the `user_data` of a LINK_TIMEOUT SQE: the rest is its operation's
/// completion (completions are at least 8-byte aligned).
const LINK_TAG: u64 = 1;

/// The accept in the kernel on listener `fd`, and the accepts queued behind it.
struct Accepting {
    fd: RawFd,
    current: NonNull<Completion>,
    /// Each with the deadline of its time limit, if it has one.
    waiting: VecDeque<(NonNull<Completion>, Option<Instant>)>,
}

impl Driver {
    pub(crate) fn new(
        entries: u32,
        sqpoll: Option<Duration>,
        fixed_files: bool,
    ) -> io::Result<Driver> {
        // SQPOLL excludes the task-run flags (the kernel thread runs the task work);
        // a kernel that refuses it gets the usual ring.
        let polled = sqpoll.and_then(|idle| {
            let ms = idle.as_millis().clamp(1, u32::MAX as u128) as u32;
            IoUring::builder()
                .setup_sqpoll(ms)
                .setup_single_issuer()
                .build(entries)
                .or_else(|_| IoUring::builder().setup_sqpoll(ms).build(entries))
                .ok()
        });
        let ring = match polled {
            Some(ring) => ring,
            None => IoUring::builder()
                .setup_coop_taskrun()
                // With DEFER_TASKRUN, completions are only posted when we enter the kernel
                // asking for events; the TASKRUN flag tells a non-blocking tick to do so.
                .setup_taskrun_flag()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .build(entries)
                .or_else(|_| IoUring::builder().build(entries))?,
        };
        if !ring.params().is_feature_ext_arg() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+ needed)",
            ));
        }
        // SAFETY: eventfd returns a new fd or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor we own.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut probe = io_uring::Probe::new();
        let probe = ring
            .submitter()
            .register_probe(&mut probe)
            .ok()
            .map(|()| probe);
        // Unit tests can pretend the kernel has no filesystem opcode (an empty probe).
        #[cfg(test)]
        let probe = match tests::NO_FS_OPCODES.with(|f| f.get()) {
            true => Some(io_uring::Probe::new()),
            false => probe,
        };
        let fixed = match fixed_files {
            true => super::uring_fixed::FixedFiles::setup(&ring),
            false => None,
        };
        let mut d = Driver {
            fixed,
            probe,
            ring,
            in_kernel: 0,
            wake_fd,
            wake_armed: false,
            cqes: Vec::with_capacity(entries as usize * 2),
            accepts: Vec::new(),
            limits: false,
            multis: AddrMap::default(),
            attached: AddrMap::default(),
            multi_done: Vec::new(),
            token: crate::buf_group::next_token(),
            groups: Vec::new(),
            accept_multishot: false,
            link_ts: Vec::new(),
            spare_ts: Vec::new(),
            poll_first: PollFirst::Off,
            zc_waiting: AddrMap::default(),
            stray_notifs: Vec::new(),
        };
        // POLL_FIRST came with 5.19, as did the SOCKET opcode.
        d.poll_first = PollFirst::choose(
            std::env::var_os(POLL_FIRST_ENV).as_deref(),
            d.probe
                .as_ref()
                .is_some_and(|p| p.is_supported(opcode::Socket::CODE)),
        );
        d.accept_multishot = d
            .probe
            .as_ref()
            .is_some_and(|p| p.is_supported(opcode::Socket::CODE));
        #[cfg(test)]
        if tests::NO_MULTISHOT.with(|f| f.get()) {
            d.accept_multishot = false;
        }
        d.arm_wake();
        Ok(d)
    }

    /// A runtime fd is first used on this loop: give it a registered slot (if on).
    pub(crate) fn fd_opened(&mut self, fd: RawFd) {
        if let Some(f) = &mut self.fixed {
            f.opened(&self.ring, fd);
        }
    }

    /// A runtime fd is about to close or leaves this loop: free its slot.
    pub(crate) fn fd_closed(&mut self, fd: RawFd) {
        if let Some(f) = &mut self.fixed {
            f.closed(&self.ring, fd);
        }
    }

    pub(crate) fn registered_slot(&self, fd: RawFd) -> Option<u32> {
        self.fixed.as_ref().and_then(|f| f.slot(fd))
    }

    pub(crate) fn uses_sqpoll(&self) -> bool {
        self.ring.params().is_setup_sqpoll()
    }

    /// Ask the kernel to end the multishot record completion `c` is attached to, if any,
    /// without detaching it: what the kernel still posts (connections it accepted before
    /// the cancel, then the final `ECANCELED`) keeps reaching `c` in order, unlike a
    /// cancel of `c`, which disposes of it. (The runtime's `Incoming` stops this way.)
    pub(crate) fn multishot_stop(&mut self, c: NonNull<Completion>) {
        let Some(&rec) = self.attached.get(&(c.as_ptr() as usize)) else {
            return;
        };
        let Some(m) = self.multis.get_mut(&rec) else {
            return;
        };
        if m.live && !m.cancel_sent {
            m.cancel_sent = true;
            let sqe = opcode::AsyncCancel::new(rec as u64 | MULTI_TAG)
                .build()
                .user_data(IGNORE);
            self.push(&sqe);
        }
    }

    /// Whether the record completion `c` is attached to holds results for it or may still
    /// receive some (so a rearm would not issue a new submission).
    pub(crate) fn multishot_more(&self, c: NonNull<Completion>) -> bool {
        self.attached
            .get(&(c.as_ptr() as usize))
            .and_then(|rec| self.multis.get(rec))
            .is_some_and(|m| m.live || !m.pending.is_empty())
    }

    /// The oldest result held for multishot completion `c` (in its callback), if its
    /// operation is still the one its record serves; see `Driver::multishot_next`.
    /// `rec` caches the record's address between the calls of one batch: the first call
    /// finds it in the maps, the others use it directly.
    pub(crate) fn multishot_next(
        &mut self,
        c: NonNull<Completion>,
        rec: &mut Option<usize>,
    ) -> Option<isize> {
        let key = match *rec {
            Some(key) => key,
            None => {
                let key = *self.attached.get(&(c.as_ptr() as usize))?;
                debug_assert!(self.multis.contains_key(&key));
                *rec.insert(key)
            }
        };
        debug_assert!(self.attached.get(&(c.as_ptr() as usize)) == Some(&key));
        // SAFETY: `key` is the address of the record (`Record::addr`) that `attached`
        // mapped `c` to in this batch; `multis` owns it until it is detached and over.
        // `c` is in its callback (the loop checks its phase before each call), and
        // nothing detaches the record of a completion in its callback: `detach(c)` runs
        // only on a new start of `c` (which ends its `Callback` phase, so the batch),
        // after the callback (`multishot_after_callback`) or in `shutdown` (deferred by
        // a callback until it returns, and before the next batch call: `invoke` checks
        // `shutdown_deferred`). A callback that swapped this loop out (and maybe dropped
        // it) is caught by `invoke`'s loop-id check before this is called again. So the
        // record is live, and only this thread touches it.
        let m = unsafe { &mut *(key as *mut Multi) };
        // SAFETY: `c` is in its callback, so live; loop thread. The op is only read.
        let same = match unsafe { &(*Completion::raw(c)).op } {
            Op::AcceptMulti { fd } => m.fd == *fd && matches!(m.kind, MultiKind::Accept),
            Op::RecvMulti { fd, group } => {
                m.fd == *fd && matches!(&m.kind, MultiKind::Recv(g) if g.same(group))
            }
            _ => false,
        };
        if !same {
            return None;
        }
        m.pending.pop_front()
    }

    pub(crate) fn waker(&self) -> Box<dyn Fn() + Send + Sync> {
        let fd = self.wake_fd.clone();
        Box::new(move || super::signal_wake_fd(fd.as_raw_fd()))
    }

    fn arm_wake(&mut self) {
        let sqe = opcode::PollAdd::new(types::Fd(self.wake_fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(WAKE);
        self.push(&sqe);
        self.wake_armed = true;
    }

    /// Push an SQE, flushing the submission queue to the kernel first if it is full.
    fn push(&mut self, sqe: &squeue::Entry) {
        loop {
            // SAFETY: every pointer inside `sqe` targets memory owned by an Active
            // completion (or the driver), which stays valid until its CQE is reaped.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            // Full: hand the queued SQEs to the kernel to make room.
            self.submit_for_room();
        }
    }

    /// One `io_uring_enter` to hand the queued SQEs to the kernel, when the SQ is full.
    /// `EINTR` is retried by the caller. `EBUSY`: a kernel before 5.19 takes no SQE
    /// while CQEs it could not post wait in its overflow list, and only the CQ's space
    /// lets it post them: the CQ's entries are moved aside for the next reap
    /// ([`stash_cqes`](Self::stash_cqes)), so the next try moves on. Other errors: wait
    /// for a completion, the only thing left that can make room.
    fn submit_for_room(&mut self) {
        match self.submit_now() {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => self.stash_cqes(),
            Err(_) => {
                let _ = self.ring.submit_and_wait(1);
            }
        }
    }

    /// `io_uring_enter` to submit. In tests, `tests::BUSY_WHILE_CQ_HOLDS` makes it
    /// answer as a kernel before 5.19 does while its CQ overflows: `EBUSY` as long as
    /// the CQ holds an entry.
    fn submit_now(&mut self) -> io::Result<usize> {
        #[cfg(test)]
        if tests::BUSY_WHILE_CQ_HOLDS.with(|f| f.get()) && !self.ring.completion().is_empty() {
            return Err(io::Error::from_raw_os_error(libc::EBUSY));
        }
        self.ring.submit()
    }

    /// Move the CQ's entries, in order, behind those already set aside in `cqes`, which
    /// the next [`reap`](Self::reap) handles first (while they are there, a wait does
    /// not block). Only the submit paths call this, and only on `EBUSY`.
    #[cold]
    fn stash_cqes(&mut self) {
        self.cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
    }

    pub(crate) fn start(&mut self, core: &mut Core, c: NonNull<Completion>) {
        // SAFETY: `c` is Active and live; loop thread.
        if unsafe { (*Completion::raw(c)).op.is_multishot() } {
            return self.start_multi(core, c);
        }
        if !self.attached.is_empty() {
            // Re-prepared with another operation: its multishot record stops.
            self.detach(c.as_ptr() as usize);
        }
        // SAFETY: `c` is Active and live; loop thread.
        if let Op::Accept { fd } | Op::AcceptUnix { fd, .. } = unsafe { &(*Completion::raw(c)).op }
        {
            let fd = *fd;
            if let Some(a) = self.accepts.iter_mut().find(|a| a.fd == fd) {
                // Another accept on this listener is in the kernel: wait behind it. Its
                // time limit runs from now (see the module docs).
                // SAFETY: as above.
                let deadline = unsafe { core.links.of(c) }
                    .and_then(|l| Instant::now().checked_add(Duration::from_nanos(l.ns)));
                self.limits |= deadline.is_some();
                // SAFETY: as above.
                unsafe { (*Completion::raw(c)).phase = Phase::Kernel };
                a.waiting.push_back((c, deadline));
                return;
            }
            self.accepts.push(Accepting {
                fd,
                current: c,
                waiting: VecDeque::new(),
            });
        }
        self.issue(core, c);
    }

    /// An accept's CQE arrived (`c` is about to be finished): issue the next accept
    /// waiting on the same listener, if any.
    fn accept_done(&mut self, core: &mut Core, c: NonNull<Completion>) {
        let Some(i) = self.accepts.iter().position(|a| a.current == c) else {
            return;
        };
        match self.accepts[i].waiting.pop_front() {
            Some((next, deadline)) => {
                self.accepts[i].current = next;
                self.issue_within(core, next, deadline);
            }
            None => {
                self.accepts.swap_remove(i);
            }
        }
    }

    /// Fail the accepts waiting on listener `fd`, or on another descriptor of the same
    /// file, with `ECANCELED`: it is being closed, and the close's own cancel (by file)
    /// takes care of the accept in the kernel.
    fn cancel_waiting_accepts(&mut self, core: &mut Core, fd: RawFd) {
        for a in &mut self.accepts {
            if a.waiting.is_empty() || (a.fd != fd && !same_file(a.fd, fd)) {
                continue;
            }
            for (w, _) in a.waiting.drain(..) {
                core.finish(w, -(libc::ECANCELED as isize));
            }
        }
    }

    /// `timeout` cut short to the nearest deadline of a waiting accept or a parked
    /// multishot completion.
    fn cap_by_limits(&self, timeout: Option<Duration>) -> Option<Duration> {
        let now = Instant::now();
        let accepts = self
            .accepts
            .iter()
            .flat_map(|a| a.waiting.iter().filter_map(|&(_, d)| d));
        let parked = self.multis.values().filter_map(|m| match m.parked {
            true => m.deadline,
            false => None,
        });
        let nearest = accepts.chain(parked).min();
        match nearest.map(|d| d.saturating_duration_since(now)) {
            Some(left) => Some(timeout.map_or(left, |t| t.min(left))),
            None => timeout,
        }
    }

    /// Fail the waiting accepts and parked multishot completions whose time limit has
    /// passed with `ETIMEDOUT`.
    fn expire_limits(&mut self, core: &mut Core) {
        let now = Instant::now();
        let (mut expired, mut more) = (Vec::new(), false);
        for a in &mut self.accepts {
            a.waiting.retain(|&(w, d)| match d {
                Some(d) if d <= now => {
                    expired.push(w);
                    false
                }
                Some(_) => {
                    more = true;
                    true
                }
                None => true,
            });
        }
        for m in self.multis.values() {
            match (m.attached, m.parked, m.deadline) {
                (Some(c), true, Some(d)) if d <= now => expired.push(c),
                (Some(_), true, Some(_)) => more = true,
                _ => {}
            }
        }
        self.limits = more;
        for w in expired {
            // A parked multishot completion stops as if cancelled (its record is
            // cancelled in the kernel); a waiting accept has left its queue above.
            self.detach(w.as_ptr() as usize);
            core.finish(w, -(libc::ETIMEDOUT as isize));
        }
    }

    /// Build and push the SQE of `c`.
    fn issue(&mut self, core: &mut Core, c: NonNull<Completion>) {
        self.issue_within(core, c, None)
    }

    /// [`issue`](Self::issue), with its time limit (if any) ending at `deadline` at the
    /// latest (an accept that waited behind another: its limit runs from its `add`).
    fn issue_within(&mut self, core: &mut Core, c: NonNull<Completion>, deadline: Option<Instant>) {
        let inner = Completion::raw(c);
        let ud = c.as_ptr() as u64;
        // SAFETY: `c` is Active and live and only the loop touches it; loop thread.
        if unsafe { matches!((*inner).op, Op::Shutdown { .. }) } {
            // shutdown(2) never blocks, but the kernel always runs IORING_OP_SHUTDOWN on a
            // worker that looks the fd up only then: a close queued behind it (the same
            // tick) makes it fail with EBADF or shut down the socket that took the
            // number. Done here, in order, as the poll backend does.
            // SAFETY: as above; the op owns no buffer.
            let res = unsafe { sys::perform(inner, false) };
            return core.finish(c, res);
        }
        // SAFETY: as above.
        if let Some(res) = unsafe { sys::done_at_submission(inner) } {
            return core.finish(c, res);
        }
        // SAFETY: `c` is Active and live; loop thread.
        if let Some(code) = fs_opcode(unsafe { &(*inner).op }) {
            if self.probe.as_ref().is_some_and(|p| !p.is_supported(code)) {
                return core.send_to_pool(c);
            }
        }
        // SAFETY: `c` is Active and live and not yet in the kernel; we build the SQE from
        // its op (pinned) and the scratch space the loop lent it (boxed), which both stay
        // put until the CQE arrives.
        let sqe = unsafe {
            let mut lent = Inner::scratch(inner);
            // The lent scratch space (`EINVAL` if an operation that needs it has none,
            // which the loop never lets happen).
            macro_rules! scratch {
                () => {
                    match lent.as_deref_mut() {
                        Some(sc) => sc,
                        None => return core.finish(c, -(libc::EINVAL as isize)),
                    }
                };
            }
            // A file offset past `i64::MAX`: io_uring would take `u64::MAX` (-1) for the
            // fd's current position, and no file has the others, so it is `EINVAL`, as
            // pread(2) gives on the poll backend (`bad_input.rs::file_offsets_past_i64_max_are_einval`).
            macro_rules! at {
                ($offset:expr) => {
                    match $offset {
                        o if o <= i64::MAX as u64 => o,
                        _ => return core.finish(c, -(libc::EINVAL as isize)),
                    }
                };
            }
            match &mut (*inner).op {
                Op::Accept { fd } => {
                    let sc = scratch!();
                    sc.addrlen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                    opcode::Accept::new(
                        types::Fd(*fd),
                        (&mut sc.addr as *mut libc::sockaddr_in6).cast(),
                        &mut sc.addrlen,
                    )
                    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                    .build()
                }
                Op::Connect { fd, addr } => {
                    let sc = scratch!();
                    let len = sys::to_sockaddr(addr, &mut sc.addr);
                    opcode::Connect::new(
                        types::Fd(*fd),
                        (&sc.addr as *const libc::sockaddr_in6).cast(),
                        len,
                    )
                    .build()
                }
                Op::Read { fd, buf } => {
                    opcode::Read::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .offset(u64::MAX)
                        .build()
                }
                Op::Pread { fd, buf, offset } => {
                    opcode::Read::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .offset(at!(*offset))
                        .build()
                }
                Op::Write { fd, buf } => {
                    opcode::Write::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .offset(u64::MAX)
                        .build()
                }
                Op::Pwrite { fd, buf, offset } => {
                    opcode::Write::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .offset(at!(*offset))
                        .build()
                }
                Op::Send { fd, buf } => {
                    opcode::Send::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                }
                Op::Recv { fd, buf } => {
                    opcode::Recv::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                        .ioprio(self.poll_first.ioprio(inner))
                        .build()
                }
                Op::SendMsg { fd, buf, addr } => {
                    let sc = scratch!();
                    sys::prepare_msg(sc, buf.as_ptr(), buf.len(), addr.as_ref());
                    opcode::SendMsg::new(types::Fd(*fd), &sc.msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                }
                Op::RecvMsg { fd, buf } => {
                    let sc = scratch!();
                    sys::prepare_recvmsg(sc, buf.as_ptr(), buf.len());
                    opcode::RecvMsg::new(types::Fd(*fd), &mut sc.msg)
                        .ioprio(self.poll_first.ioprio(inner))
                        .build()
                }
                Op::Close { fd } => match fd.take() {
                    Some(owned) => {
                        let raw = owned.into_raw_fd();
                        self.cancel_waiting_accepts(core, raw);
                        // A registered slot would keep the file open: empty it first.
                        self.fd_closed(raw);
                        // First cancel whatever else is pending on this fd (their
                        // callbacks get Canceled), as the poll backend does; SQEs are
                        // issued in order, so the cancel runs before the close.
                        let cancel = opcode::AsyncCancel2::new(
                            types::CancelBuilder::fd(types::Fd(raw)).all(),
                        );
                        self.push(&cancel.build().user_data(IGNORE));
                        opcode::Close::new(types::Fd(raw)).build()
                    }
                    None => return core.finish(c, -(libc::EBADF as isize)),
                },
                Op::Shutdown { fd, how } => {
                    let how = match how {
                        std::net::Shutdown::Read => libc::SHUT_RD,
                        std::net::Shutdown::Write => libc::SHUT_WR,
                        std::net::Shutdown::Both => libc::SHUT_RDWR,
                    };
                    opcode::Shutdown::new(types::Fd(*fd), how).build()
                }
                Op::Poll { fd, events } => {
                    opcode::PollAdd::new(types::Fd(*fd), events.bits()).build()
                }
                Op::Noop | Op::Timer { .. } | Op::Cancel { .. } => {
                    unreachable!("handled by the core")
                }
                Op::AcceptUnix { fd, addr } => {
                    addr.reset_for_kernel();
                    let name = addr.as_mut_ptr();
                    opcode::Accept::new(types::Fd(*fd), name, &mut addr.len)
                        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                        .build()
                }
                Op::ConnectUnix { .. } => unreachable!("done at submission"),
                Op::SendMsgUnix { fd, buf, addr } => {
                    let sc = scratch!();
                    sys::prepare_msg_unix(sc, buf.as_ptr(), buf.len(), addr, false);
                    opcode::SendMsg::new(types::Fd(*fd), &sc.msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                }
                Op::RecvMsgUnix { fd, buf, addr } => {
                    let sc = scratch!();
                    sys::prepare_msg_unix(sc, buf.as_ptr(), buf.len(), addr, true);
                    opcode::RecvMsg::new(types::Fd(*fd), &mut sc.msg).build()
                }
                // The iovec array lives in the op's box until the CQE is reaped.
                Op::Readv { fd, bufs, offset } => {
                    let at = match *offset {
                        Some(o) => at!(o),
                        None => u64::MAX, // the current position
                    };
                    let (iov, n) = bufs.iovecs();
                    opcode::Readv::new(types::Fd(*fd), iov, clamp(n))
                        .offset(at)
                        .build()
                }
                Op::Writev { fd, bufs, offset } => {
                    let at = match *offset {
                        Some(o) => at!(o),
                        None => u64::MAX, // the current position
                    };
                    let (iov, n) = bufs.iovecs();
                    opcode::Writev::new(types::Fd(*fd), iov, clamp(n))
                        .offset(at)
                        .build()
                }
                Op::SendMsgV { fd, bufs, addr } => {
                    let sc = scratch!();
                    let (iov, n) = bufs.iovecs();
                    sys::prepare_msg_iov(sc, iov, n, addr.as_ref());
                    opcode::SendMsg::new(types::Fd(*fd), &sc.msg)
                        .flags(libc::MSG_NOSIGNAL as u32)
                        .build()
                }
                Op::AcceptMulti { .. } | Op::RecvMulti { .. } => {
                    unreachable!("multishot operations are issued by their record")
                }
                // Zero copy where the kernel has it (6.0+), else a plain send; the
                // buffer is the op's until the notification (see `zc_step`).
                // An inline buffer lives in the completion, which a shutdown abandoning the
                // send may let the user free: it is sent as a plain send, as is a send on
                // a completion whose earlier notification is still to come.
                Op::SendZc { fd, buf } => {
                    let zc = self
                        .probe
                        .as_ref()
                        .is_some_and(|p| p.is_supported(opcode::SendZc::CODE))
                        && !buf.is_inline()
                        && (self.stray_notifs.is_empty()
                            || !self.stray_notifs.contains(&(c.as_ptr() as usize)));
                    if zc {
                        opcode::SendZc::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                    } else {
                        opcode::Send::new(types::Fd(*fd), buf.as_ptr(), clamp(buf.len()))
                            .flags(libc::MSG_NOSIGNAL)
                            .build()
                    }
                }
                Op::OpenAt { .. }
                | Op::Statx { .. }
                | Op::RenameAt { .. }
                | Op::UnlinkAt { .. }
                | Op::MkdirAt { .. }
                | Op::LinkAt { .. }
                | Op::SymlinkAt { .. }
                | Op::Fsync { .. }
                | Op::Fallocate { .. }
                | Op::Ftruncate { .. } => match fs_sqe(&mut (*inner).op) {
                    Some(sqe) => sqe,
                    // A path with an interior NUL never reaches the kernel.
                    None => return core.finish(c, -(libc::EINVAL as isize)),
                },
            }
        };
        // An fd with a registered slot is named by its slot.
        // SAFETY: `c` is Active and live; loop thread.
        let sqe = match (&self.fixed, unsafe { fixable_fd(&(*inner).op) }) {
            (Some(f), Some(fd)) => match f.slot(fd) {
                Some(slot) => super::uring_fixed::use_slot(sqe, slot),
                None => sqe,
            },
            _ => sqe,
        };
        // SAFETY: live and Active; loop thread.
        unsafe { (*inner).phase = Phase::Kernel };
        self.in_kernel += 1;
        // SAFETY: as above.
        let Some(link) = (unsafe { core.links.of(c) }) else {
            return self.push(&sqe.user_data(ud));
        };
        link.wait = LinkWait::Both;
        let ns = match deadline {
            // What is left of the limit (at least 1 ns: it then expires at once).
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now()).as_nanos();
                link.ns.min(left.clamp(1, u64::MAX as u128) as u64)
            }
            None => link.ns,
        };
        self.push_linked(sqe.user_data(ud), ns, ud | LINK_TAG);
    }

    /// Push `head` linked to a LINK_TIMEOUT of `ns` nanoseconds, in one submission (a
    /// link cut at the end of a submission would leave the timeout without its head).
    fn push_linked(&mut self, head: squeue::Entry, ns: u64, ud: u64) {
        let free = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if free < 2 {
            self.flush();
        }
        let mut ts = self
            .spare_ts
            .pop()
            .unwrap_or_else(|| Box::new(types::Timespec::new()));
        *ts = types::Timespec::from(Duration::from_nanos(ns));
        let timeout = opcode::LinkTimeout::new(&*ts).build().user_data(ud);
        self.link_ts.push(ts);
        self.push(&head.flags(squeue::Flags::IO_LINK));
        self.push(&timeout);
    }

    /// Hand every queued SQE to the kernel now (to make room).
    fn flush(&mut self) {
        while !self.ring.submission().is_empty() {
            self.submit_for_room();
            if self.ring.params().is_setup_sqpoll() {
                break; // the polling thread takes them
            }
        }
    }

    /// The kernel took every queued SQE (and copied the timespecs of the link timeouts
    /// among them): their timespecs can be reused.
    fn release_timespecs(&mut self) {
        if !self.link_ts.is_empty() && self.ring.submission().is_empty() {
            self.spare_ts.append(&mut self.link_ts);
        }
    }

    pub(crate) fn cancel(
        &mut self,
        core: &mut Core,
        c: NonNull<Completion>,
        target: NonNull<Completion>,
    ) {
        // SAFETY: `target` is registered (checked by the core), so live; loop thread.
        let phase = unsafe { (*Completion::raw(target)).phase };
        if phase != Phase::Kernel {
            return core.finish(c, -(libc::ENOENT as isize));
        }
        // A multishot completion waits on its record: stop the record, fail it here.
        if let Some(&m) = self.attached.get(&(target.as_ptr() as usize)) {
            if self.multis.get(&m).is_some_and(|m| m.parked) {
                self.detach(target.as_ptr() as usize);
                core.finish(target, -(libc::ECANCELED as isize));
                return core.finish(c, 0);
            }
        }
        // An accept still waiting for its turn is not in the kernel: fail it here.
        for a in &mut self.accepts {
            if let Some(i) = a.waiting.iter().position(|&(w, _)| w == target) {
                a.waiting.remove(i);
                core.finish(target, -(libc::ECANCELED as isize));
                return core.finish(c, 0);
            }
        }
        let sqe = opcode::AsyncCancel::new(target.as_ptr() as u64)
            .build()
            .user_data(c.as_ptr() as u64);
        // SAFETY: `c` and `target` are Active and live; loop thread. A second cancel of
        // the target now finds it `Canceling` and reports NotFound (the kernel would
        // answer 0 to both), as the poll backend does.
        unsafe {
            (*Completion::raw(c)).phase = Phase::Kernel;
            (*Completion::raw(target)).phase = Phase::Canceling;
        }
        self.in_kernel += 1;
        self.push(&sqe);
    }

    /// See `Driver::wait`; returns the number of CQEs reaped.
    pub(crate) fn wait(&mut self, core: &mut Core, timeout: Option<Duration>) -> io::Result<usize> {
        let timeout = match self.limits {
            true => self.cap_by_limits(timeout),
            false => timeout,
        };
        #[cfg(test)]
        if !self.cqes.is_empty() {
            tests::WAITS_WITH_CQES_ASIDE.with(|n| n.set(n.get() + 1));
        }
        // CQEs set aside by a submit (see `stash_cqes`) are waiting to be handled.
        let timeout = match self.cqes.is_empty() {
            true => timeout,
            false => Some(Duration::ZERO),
        };
        let r = match timeout {
            Some(t) if t.is_zero() => self.ring.submit_and_wait(0),
            Some(t) => {
                let ts = types::Timespec::new()
                    .sec(t.as_secs())
                    .nsec(t.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        if let Err(e) = r {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.release_timespecs();
        let reaped = self.reap(|d, c, res, flags, link| {
            // SAFETY: `c` is Active (its CQE just arrived), so live; loop thread.
            let step = unsafe { cqe_step(&mut core.links, &mut d.zc_waiting, c, res, flags, link) };
            let Some(res) = step else {
                return; // another CQE of this operation follows
            };
            d.in_kernel -= 1;
            // SAFETY: `c` is Active (its CQE just arrived), so live; loop thread.
            match unsafe { &(*Completion::raw(c)).op } {
                Op::Accept { .. } | Op::AcceptUnix { .. } => d.accept_done(core, c),
                // SAFETY: as above; the kernel is done with the operation.
                Op::RecvMsgUnix { .. } => unsafe { sys::unix_recvmsg_done(Completion::raw(c)) },
                // The hint for this completion's next receive (see `PollFirst::Hint`).
                // SAFETY: as above.
                Op::Recv { .. } => unsafe {
                    (*Completion::raw(c)).connecting = left_stream_empty(res, flags);
                },
                _ => {}
            }
            core.finish(c, res);
        });
        for (c, res) in self.multi_done.drain(..) {
            core.finish(c, res);
        }
        if self.limits {
            self.expire_limits(core);
        }
        Ok(reaped)
    }

    /// Take every CQE off the ring, handing user completions to `f`, and say how many
    /// there were (the wake-up's and the ignored ones included).
    /// (`f` also learns whether the CQE is a LINK_TIMEOUT's, for its operation `c`.)
    fn reap(
        &mut self,
        mut f: impl FnMut(&mut Self, NonNull<Completion>, isize, u32, bool),
    ) -> usize {
        // Copy the CQEs out first (the callback needs `&mut self`); the Vec is reused.
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            match ud {
                IGNORE => {}
                WAKE => {
                    // No drain: the multishot poll posts a CQE for every write to the
                    // eventfd (each one wakes its wait queue), readable or not before, so
                    // the counter is left to grow (see `signal_wake_fd`).
                    if !io_uring::cqueue::more(flags) {
                        self.wake_armed = false;
                    }
                }
                ud if ud & 7 == MULTI_TAG => self.multi_cqe(ud, res, flags),
                // The notification of a send a shutdown abandoned (see `stray_notifs`).
                ptr if io_uring::cqueue::notif(flags) && self.take_stray(ptr) => {}
                ptr => {
                    let link = ptr & LINK_TAG != 0;
                    let c = NonNull::new((ptr & !LINK_TAG) as *mut Completion)
                        .expect("non-null user_data");
                    f(self, c, res as isize, flags, link);
                }
            }
        }
        let reaped = cqes.len();
        cqes.clear();
        // CQEs a push made from the handlers above set aside (see `stash_cqes`): first
        // in line next time.
        cqes.append(&mut self.cqes);
        self.cqes = cqes;
        if !self.wake_armed {
            self.arm_wake();
        }
        reaped
    }

    pub(crate) fn shutdown(&mut self, core: &mut Core) {
        // Completions parked on multishot records are not in the kernel themselves; the
        // records are cancelled and reaped below (what they still receive is disposed of).
        let attached: Vec<usize> = self.attached.keys().copied().collect();
        for c in attached {
            let parked = self
                .attached
                .get(&c)
                .and_then(|m| self.multis.get(m))
                .is_some_and(|m| m.parked);
            self.detach(c);
            if parked {
                core.abandon(NonNull::new(c as *mut Completion).expect("non-null"), None);
            }
        }
        // Accepts waiting for their turn were never issued: nothing to reap.
        for a in std::mem::take(&mut self.accepts) {
            for (w, _) in a.waiting {
                core.abandon(w, None);
            }
        }
        if self.in_kernel == 0 {
            return;
        }
        let targets: Vec<_> = core
            .registry
            .iter()
            // SAFETY: registered completions are live; loop thread.
            .filter(|c| {
                matches!(
                    unsafe { (*Completion::raw(*c)).phase },
                    Phase::Kernel | Phase::Canceling
                )
            })
            .collect();
        for t in targets {
            let sqe = opcode::AsyncCancel::new(t.as_ptr() as u64)
                .build()
                .user_data(IGNORE);
            self.push(&sqe);
        }
        // Every operation ends (the cancels above), but a SEND_ZC's notification comes
        // only once its data has left the socket, maybe never: those are let go below.
        while self.in_kernel > self.zc_waiting.len() {
            // CQEs set aside by a submit (see `stash_cqes`) are handled without a wait.
            let wait = match self.cqes.is_empty() {
                true => 1,
                false => 0,
            };
            if let Err(e) = self.ring.submit_and_wait(wait) {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::ETIME)
                ) {
                    // The ring is unusable; nothing more can arrive. Leave the remaining
                    // completions Active rather than free memory the kernel may touch.
                    eprintln!("xev: io_uring wait failed during shutdown: {e}");
                    return;
                }
            }
            self.release_timespecs();
            self.reap(|d, c, res, flags, link| {
                // SAFETY: `c` is Active (its CQE just arrived), so live; loop thread.
                let step =
                    unsafe { cqe_step(&mut core.links, &mut d.zc_waiting, c, res, flags, link) };
                let Some(res) = step else {
                    return; // another CQE of this operation follows
                };
                d.in_kernel -= 1;
                core.abandon(c, Some(res));
            });
        }
        // Sends waiting only for their notification: the kernel may still read their
        // buffers, so each buffer is leaked to it, and its late CQE will be dropped.
        for (_, c) in std::mem::take(&mut self.zc_waiting) {
            // SAFETY: `c` is Active (in the kernel), so live; loop thread. The buffer is
            // moved out and never freed, so its memory stays valid for the kernel (a
            // zero-copy send never has an inline buffer, which would live in `c`).
            unsafe {
                if let Op::SendZc { buf, .. } = &mut (*Completion::raw(c)).op {
                    leak_to_kernel(std::mem::replace(buf, crate::op::Buffer::inline(0)));
                }
            }
            self.in_kernel -= 1;
            self.stray_notifs.push(c.as_ptr() as usize);
            core.abandon(c, None);
        }
    }

    /// Whether `ud` is the address of a send whose notification a shutdown left behind
    /// (then it is not any more).
    fn take_stray(&mut self, ud: u64) -> bool {
        match self.stray_notifs.iter().position(|&a| a as u64 == ud) {
            Some(i) => {
                self.stray_notifs.swap_remove(i);
                true
            }
            None => false,
        }
    }
}

impl Driver {
    /// A new buffer group: a provided-buffer ring registered with this ring.
    pub(crate) fn register_buffer_group(
        &mut self,
        count: u16,
        size: u32,
    ) -> io::Result<crate::buf_group::BufferGroup> {
        let bgid = u16::try_from(self.groups.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::OutOfMemory, "65536 buffer groups registered")
        })?;
        let ring = crate::buf_group::Group::new_ring(self.token, bgid, count, size)?;
        let addr = ring.ring_addr().expect("a ring group");
        #[cfg(test)]
        let no_ring = tests::NO_MULTISHOT.with(|f| f.get());
        #[cfg(not(test))]
        let no_ring = false;
        // SAFETY: the ring memory is page-aligned, holds `count` entries, and is owned by
        // the group, which we keep (in `groups`) until the ring is unregistered on drop.
        let registered = !no_ring
            && unsafe {
                self.ring
                    .submitter()
                    .register_buf_ring_with_flags(addr, count, bgid, 0)
            }
            .is_ok();
        let g = if registered {
            ring
        } else {
            // Before 5.19 (no provided-buffer rings): a free list, and receives that wait
            // for readiness (POLL_ADD) and then take a buffer, as on the poll backend.
            drop(ring);
            crate::buf_group::Group::new_free(self.token, bgid, count, size)?
        };
        let g = crate::buf_group::BufferGroup(std::rc::Rc::new(g));
        self.groups.push(g.clone());
        Ok(g)
    }

    /// Start multishot completion `c`: hand it a result that already arrived, or park it
    /// on its record (issuing the record's SQE if the kernel ended the last one).
    fn start_multi(&mut self, core: &mut Core, c: NonNull<Completion>) {
        let key = c.as_ptr() as usize;
        // SAFETY: `c` is Active and live; loop thread. The op is only read, and nothing
        // here touches the completion until `op` is no longer used.
        let op = unsafe { &(*Completion::raw(c)).op };
        let (fd, group) = match op {
            Op::AcceptMulti { fd } => (*fd, None),
            Op::RecvMulti { fd, group } => (*fd, Some(group)),
            _ => unreachable!("start_multi of a single-shot operation"),
        };
        // The usual case, a rearm: the record it is attached to serves the same
        // operation (one lookup of each map; the group was checked when it was made).
        if let Some(rec) = self.attached.get(&key).copied() {
            let same = |m: &&mut Record| {
                m.fd == fd
                    && match (&m.kind, group) {
                        (MultiKind::Accept, None) => true,
                        (MultiKind::Recv(a), Some(b)) => a.same(b),
                        _ => false,
                    }
            };
            if let Some(m) = self.multis.get_mut(&rec).filter(same) {
                return match Multi::take_or_park(m, c) {
                    Some(res) => {
                        // Already received: this tick delivers it (`Core::arrived`).
                        core.arrived += 1;
                        core.finish(c, res)
                    }
                    None => {
                        m.deadline = parked_deadline(core, c);
                        self.limits |= m.deadline.is_some();
                        if !m.live {
                            self.issue_multi(rec);
                        }
                    }
                };
            }
            self.detach(key);
        }
        if let Some(g) = group {
            if g.0.owner != self.token {
                // A group registered with another loop.
                return core.finish(c, -(libc::EINVAL as isize));
            }
        }
        let rec = self.new_multi(c, fd, group.cloned());
        let m = self.multis.get_mut(&rec).expect("new record");
        if let Some(res) = Multi::take_or_park(m, c) {
            return core.finish(c, res);
        }
        m.deadline = parked_deadline(core, c);
        self.limits |= m.deadline.is_some();
        self.issue_multi(rec);
    }

    fn new_multi(
        &mut self,
        c: NonNull<Completion>,
        fd: RawFd,
        group: Option<crate::buf_group::BufferGroup>,
    ) -> usize {
        let m = Record::new(Multi {
            fd,
            kind: match group {
                Some(g) => MultiKind::Recv(g),
                None => MultiKind::Accept,
            },
            attached: Some(c),
            parked: false,
            pending: VecDeque::new(),
            deadline: None,
            live: false,
            cancel_sent: false,
        });
        let key = m.addr();
        self.multis.insert(key, m);
        self.attached.insert(c.as_ptr() as usize, key);
        key
    }

    /// Push the SQE of record `rec`.
    fn issue_multi(&mut self, rec: usize) {
        let m = self.multis.get_mut(&rec).expect("record");
        let sqe = match &m.kind {
            MultiKind::Accept if self.accept_multishot => opcode::AcceptMulti::new(types::Fd(m.fd))
                .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                .build(),
            // Before 5.19: one accept per submission (its CQE has no F_MORE, so the
            // record ends and the next rearm issues another).
            MultiKind::Accept => {
                opcode::Accept::new(types::Fd(m.fd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
                    .build()
            }
            MultiKind::Recv(g) if g.0.is_ring() => {
                opcode::RecvMulti::new(types::Fd(m.fd), g.0.bgid).build()
            }
            // A free-list group (no provided-buffer rings): wait for readiness; the
            // receive happens when the CQE arrives (see `multi_cqe`).
            MultiKind::Recv(_) => {
                opcode::PollAdd::new(types::Fd(m.fd), libc::POLLIN as u32).build()
            }
        };
        m.live = true;
        m.cancel_sent = false;
        self.in_kernel += 1;
        self.push(&sqe.user_data(rec as u64 | MULTI_TAG));
    }

    /// A CQE for a multishot record.
    fn multi_cqe(&mut self, ud: u64, res: i32, flags: u32) {
        let key = (ud & !7) as usize;
        debug_assert!(
            self.multis.contains_key(&key),
            "CQE for an unknown multishot record"
        );
        // SAFETY: `key` is the address of a record in `multis` (its SQE's `user_data`;
        // `Record::addr`). A record leaves `multis` only when it is not `live`, that is
        // after the CQE without `F_MORE` that ends its submission (or its readiness
        // fallback's one CQE), and no SQE names it after that: so every CQE naming it
        // arrives while it is there. Only this thread touches records.
        let m = unsafe { &mut *(key as *mut Multi) };
        if let MultiKind::Recv(g) = &m.kind {
            if !g.0.is_ring() {
                // Readiness (the fallback): receive now into a free buffer; if the data
                // went elsewhere meanwhile, wait again.
                m.live = false;
                self.in_kernel -= 1;
                let res = match (res >= 0, m.attached.is_some()) {
                    (true, true) => sys::recv_into_group(m.fd, g),
                    // Detached: nobody receives, so the data stays in the socket.
                    (true, false) => -(libc::ECANCELED as isize),
                    (false, _) => res as isize,
                };
                if res == -(libc::EAGAIN as isize) && m.attached.is_some() {
                    return self.issue_multi(key);
                }
                return self.multi_result(key, res);
            }
        }
        let res = match (&m.kind, io_uring::cqueue::buffer_select(flags)) {
            (MultiKind::Recv(_), Some(bid)) if res >= 0 => {
                crate::buf_group::encode(bid, res as usize)
            }
            (MultiKind::Recv(g), Some(bid)) => {
                // An error with a buffer picked (not expected): the buffer goes back.
                g.0.picked();
                g.0.give_back(bid);
                res as isize
            }
            _ => res as isize,
        };
        if !io_uring::cqueue::more(flags) {
            m.live = false;
            self.in_kernel -= 1;
        }
        if m.hand_over(res, &mut self.multi_done) {
            self.multis.remove(&key);
        }
    }

    /// Hand result `res` of record `key` to its completion (or queue or dispose of it).
    fn multi_result(&mut self, key: usize, res: isize) {
        let Some(m) = self.multis.get_mut(&key) else {
            return;
        };
        if m.hand_over(res, &mut self.multi_done) {
            self.multis.remove(&key);
        }
    }

    /// The callback of multishot completion `c` returned: unless it started the same
    /// operation again, its record stops.
    pub(crate) fn multishot_after_callback(&mut self, core: &mut Core, c: NonNull<Completion>) {
        let key = c.as_ptr() as usize;
        if !self.attached.contains_key(&key) {
            return;
        }
        let inner = Completion::raw(c);
        // SAFETY: called by the loop right after `c`'s callback, before any user code can
        // free it, so `c` is live; loop thread. Rearmed (or re-added with a multishot
        // operation) in this loop, it is registered here and its record was (re)attached
        // by `start_multi`; otherwise the record stops.
        let continues = unsafe {
            (*inner).op.is_multishot()
                && !matches!((*inner).phase, Phase::Dead | Phase::Callback)
                && core.registry.get((*inner).ticket) == Some(c)
        };
        if !continues {
            self.detach(key);
        }
    }

    /// Completion `c` no longer uses its record (if any): results already there are
    /// disposed of (connections closed, buffers returned) and the kernel's multishot is
    /// cancelled; the record is freed at its last CQE. The caller deals with `c` itself.
    fn detach(&mut self, c: usize) {
        let Some(rec) = self.attached.remove(&c) else {
            return;
        };
        let m: &mut Multi = self.multis.get_mut(&rec).expect("attached record");
        m.attached = None;
        m.parked = false;
        for res in m.pending.drain(..) {
            dispose(&m.kind, res);
        }
        if !m.live {
            self.multis.remove(&rec);
            return;
        }
        if !m.cancel_sent {
            m.cancel_sent = true;
            let sqe = opcode::AsyncCancel::new(rec as u64 | MULTI_TAG)
                .build()
                .user_data(IGNORE);
            self.push(&sqe);
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Every operation was reaped by `shutdown`: the kernel no longer fills buffers.
        for g in self.groups.drain(..) {
            let _ = self.ring.submitter().unregister_buf_ring(g.0.bgid);
            g.0.set_dead();
        }
    }
}

/// The deadline of multishot completion `c`, parked on its record now: its time limit
/// (if any) starts now. One `is_empty` check when no completion has a limit.
#[inline]
fn parked_deadline(core: &mut Core, c: NonNull<Completion>) -> Option<Instant> {
    if core.links.is_empty() {
        return None;
    }
    // SAFETY: `c` is Active and live (just parked); loop thread.
    let ns = unsafe { core.links.of(c) }?.ns;
    Instant::now().checked_add(Duration::from_nanos(ns))
}

/// Never free `buf`: the kernel may read it at any time (a zero-copy send a shutdown
/// let go of). Its address is kept in a process-wide list, only so that leak checkers
/// (LeakSanitizer) see it as reachable; it is never read back.
fn leak_to_kernel(buf: crate::op::Buffer) {
    static HELD: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());
    let addr = Box::into_raw(Box::new(buf)) as usize;
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(addr);
}

/// Dispose of a multishot result nobody will receive.
fn dispose(kind: &MultiKind, res: isize) {
    if res < 0 {
        return;
    }
    match kind {
        MultiKind::Accept => sys::close_fd(res as RawFd),
        MultiKind::Recv(g) => crate::result::drop_recv_multi(g, res),
    }
}

/// The fd of an operation whose SQE may name it by registered slot: the socket and
/// stream operations (not closes, shutdowns, or directory fds of path operations).
fn fixable_fd(op: &Op) -> Option<RawFd> {
    match op {
        Op::Accept { fd }
        | Op::Connect { fd, .. }
        | Op::Read { fd, .. }
        | Op::Pread { fd, .. }
        | Op::Write { fd, .. }
        | Op::Pwrite { fd, .. }
        | Op::Send { fd, .. }
        | Op::Recv { fd, .. }
        | Op::SendMsg { fd, .. }
        | Op::RecvMsg { fd, .. }
        | Op::Poll { fd, .. }
        | Op::AcceptUnix { fd, .. }
        | Op::SendMsgUnix { fd, .. }
        | Op::RecvMsgUnix { fd, .. }
        | Op::Readv { fd, .. }
        | Op::Writev { fd, .. }
        | Op::SendMsgV { fd, .. }
        | Op::SendZc { fd, .. } => Some(*fd),
        _ => None,
    }
}

/// One CQE of `c` (`link`: its LINK_TIMEOUT's): its final result, or `None` while more
/// CQEs of it will come.
///
/// An operation with a link timeout finishes when both its CQE and its timeout's have
/// arrived (in either order; which came first, and the operation's result if it did, is
/// kept in its `links` entry, never in the completion, whose word may be a scratch cell).
/// If the timeout fired and the operation was cancelled by it, the result is `ETIMEDOUT`.
///
/// # Safety
/// `c` is Active and live; loop thread.
unsafe fn cqe_step(
    links: &mut Links,
    zc_waiting: &mut AddrMap<NonNull<Completion>>,
    c: NonNull<Completion>,
    res: isize,
    flags: u32,
    link: bool,
) -> Option<isize> {
    let timed_out = |head: isize, fired: bool| match (head, fired) {
        (h, true) if h == -(libc::ECANCELED as isize) => -(libc::ETIMEDOUT as isize),
        (h, _) => h,
    };
    // SAFETY: the caller's promise.
    let entry = unsafe { links.of(c) };
    if link {
        let fired = res == -(libc::ETIME as isize);
        let Some(l) = entry else {
            debug_assert!(false, "a LINK_TIMEOUT CQE without its entry");
            return None;
        };
        return match l.wait {
            LinkWait::Head(head) => {
                l.wait = LinkWait::Idle;
                Some(timed_out(head, fired))
            }
            _ => {
                l.wait = LinkWait::Timeout { fired };
                None
            }
        };
    }
    match entry {
        Some(l) if l.wait != LinkWait::Idle => match std::mem::replace(&mut l.wait, LinkWait::Idle)
        {
            LinkWait::Timeout { fired } => Some(timed_out(res, fired)),
            _ => {
                l.wait = LinkWait::Head(res);
                None
            }
        },
        // SAFETY: the caller's promise.
        _ => unsafe { zc_step(zc_waiting, c, res, flags) },
    }
}

/// One CQE of `c`: its final result, or `None` while more CQEs of it will come.
///
/// A SEND_ZC posts the byte count with `IORING_CQE_F_MORE` set, then a notification
/// (`IORING_CQE_F_NOTIF`) once the kernel no longer reads the buffer; the count waits in
/// the completion's `res` until then, so the callback (and whoever gets the buffer back)
/// runs only after the notification. A failed SEND_ZC posts a single CQE. Between the
/// two, `c` is in `waiting` (see `Driver::zc_waiting`).
///
/// # Safety
/// `c` is Active and live; loop thread.
unsafe fn zc_step(
    waiting: &mut AddrMap<NonNull<Completion>>,
    c: NonNull<Completion>,
    res: isize,
    flags: u32,
) -> Option<isize> {
    let inner = Completion::raw(c);
    // SAFETY: the caller's promise.
    unsafe {
        if !matches!((*inner).op, Op::SendZc { .. }) {
            return Some(res);
        }
        if io_uring::cqueue::notif(flags) {
            waiting.remove(&(c.as_ptr() as usize));
            return Some(Inner::res(inner));
        }
        if io_uring::cqueue::more(flags) {
            Inner::set_res(inner, res);
            waiting.insert(c.as_ptr() as usize, c);
            return None;
        }
    }
    Some(res)
}

/// The io_uring opcode of a filesystem operation, `None` for any other operation.
fn fs_opcode(op: &Op) -> Option<u8> {
    Some(match op {
        Op::OpenAt { .. } => opcode::OpenAt::CODE,
        Op::Statx { .. } => opcode::Statx::CODE,
        Op::RenameAt { .. } => opcode::RenameAt::CODE,
        Op::UnlinkAt { .. } => opcode::UnlinkAt::CODE,
        Op::MkdirAt { .. } => opcode::MkDirAt::CODE,
        Op::LinkAt { .. } => opcode::LinkAt::CODE,
        Op::SymlinkAt { .. } => opcode::SymlinkAt::CODE,
        Op::Fsync { .. } => opcode::Fsync::CODE,
        Op::Fallocate { .. } => opcode::Fallocate::CODE,
        Op::Ftruncate { .. } => opcode::Ftruncate::CODE,
        _ => return None,
    })
}

/// The SQE of a filesystem operation (paths, metadata, sync, size), or `None` if one of
/// its paths is invalid (interior NUL). Its pointers target the op's own heap-owned paths
/// and statx record, which live as long as the operation.
fn fs_sqe(op: &mut Op) -> Option<squeue::Entry> {
    let at = |dir: &Option<RawFd>| types::Fd(sys::at(*dir));
    Some(match op {
        Op::OpenAt {
            dir,
            path,
            flags,
            mode,
        } => opcode::OpenAt::new(at(dir), path.ptr()?)
            .flags(*flags | libc::O_CLOEXEC)
            .mode(*mode as libc::mode_t)
            .build(),
        Op::Statx {
            dir,
            path,
            flags,
            mask,
            buf,
        } => opcode::Statx::new(at(dir), path.ptr()?, buf.as_mut_ptr().cast())
            .flags(*flags)
            .mask(*mask)
            .build(),
        Op::RenameAt {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        } => opcode::RenameAt::new(at(old_dir), old.ptr()?, at(new_dir), new.ptr()?)
            .flags(*flags)
            .build(),
        Op::UnlinkAt {
            dir,
            path,
            remove_dir,
        } => opcode::UnlinkAt::new(at(dir), path.ptr()?)
            .flags(if *remove_dir { libc::AT_REMOVEDIR } else { 0 })
            .build(),
        Op::MkdirAt { dir, path, mode } => opcode::MkDirAt::new(at(dir), path.ptr()?)
            .mode(*mode as libc::mode_t)
            .build(),
        Op::LinkAt {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        } => opcode::LinkAt::new(at(old_dir), old.ptr()?, at(new_dir), new.ptr()?)
            .flags(*flags)
            .build(),
        Op::SymlinkAt { target, dir, link } => {
            opcode::SymlinkAt::new(at(dir), target.ptr()?, link.ptr()?).build()
        }
        Op::Fsync { fd, data_only } => opcode::Fsync::new(types::Fd(*fd))
            .flags(if *data_only {
                types::FsyncFlags::DATASYNC
            } else {
                types::FsyncFlags::empty()
            })
            .build(),
        Op::Fallocate {
            fd,
            mode,
            offset,
            len,
        } => opcode::Fallocate::new(types::Fd(*fd), *len)
            .offset(*offset)
            .mode(*mode)
            .build(),
        Op::Ftruncate { fd, len } => opcode::Ftruncate::new(types::Fd(*fd), *len).build(),
        _ => unreachable!("fs_sqe is only called for filesystem operations"),
    })
}

/// Whether two open descriptors refer to the same file (device and inode).
fn same_file(a: RawFd, b: RawFd) -> bool {
    let id = |fd| {
        // SAFETY: all-zero is a valid `stat`; fstat writes it or fails.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a live, writable `stat`.
        (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
    };
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
}

fn clamp(len: usize) -> u32 {
    len.min(u32::MAX as usize) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use std::cell::Cell;
    use std::os::unix::fs::MetadataExt;
    use std::pin::pin;

    use crate::{
        Backend, CallbackAction, Completion, Loop, Op, OpPath, OpResult, Options, RunMode, StatxBuf,
    };

    /// `XEV_URING_POLL_FIRST` picks the mode; a kernel without the flag never gets it;
    /// the hint follows the completion's last receive.
    #[test]
    fn poll_first_modes() {
        use super::{PollFirst, RECVSEND_POLL_FIRST};
        use std::ffi::OsStr;
        let os = |s: &'static str| Some(OsStr::new(s));
        assert_eq!(PollFirst::choose(None, true), PollFirst::Hint);
        assert_eq!(PollFirst::choose(os(""), true), PollFirst::Hint);
        assert_eq!(PollFirst::choose(os("0"), true), PollFirst::Off);
        assert_eq!(PollFirst::choose(os("1"), true), PollFirst::Always);
        for env in [None, os("0"), os("1")] {
            assert_eq!(PollFirst::choose(env, false), PollFirst::Off);
        }
        let c = pin!(Completion::new());
        let inner = Completion::raw(std::ptr::NonNull::from(&*c));
        // SAFETY: a live completion that only this thread touches.
        unsafe {
            assert_eq!(PollFirst::Hint.ioprio(inner), 0);
            assert_eq!(PollFirst::Always.ioprio(inner), RECVSEND_POLL_FIRST);
            (*inner).connecting = true; // the last receive emptied the socket
            assert_eq!(PollFirst::Hint.ioprio(inner), RECVSEND_POLL_FIRST);
            assert_eq!(PollFirst::Off.ioprio(inner), 0);
            assert_eq!(PollFirst::Always.ioprio(inner), RECVSEND_POLL_FIRST);
        }
    }

    /// Whether io_uring works here and its kernel has poll-first receives (5.19, with
    /// `IORING_CQE_F_SOCK_NONEMPTY` and the SOCKET opcode the driver detects them by);
    /// says why not on stderr.
    fn poll_first_kernel() -> bool {
        let Ok(ring) = io_uring::IoUring::new(8) else {
            eprintln!("io_uring unavailable: not checked");
            return false;
        };
        let mut probe = io_uring::Probe::new();
        let ok = ring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(io_uring::opcode::Socket::CODE);
        if !ok {
            eprintln!("kernel before 5.19: no poll-first receives, not checked");
        }
        ok
    }

    /// The kernel fact the poll-first hint rests on: a receive that leaves data behind
    /// says so (`IORING_CQE_F_SOCK_NONEMPTY`) on stream sockets, and never on datagram
    /// sockets, even with two more datagrams queued (see `left_stream_empty`).
    #[test]
    fn only_stream_sockets_report_a_nonempty_queue() {
        use io_uring::{cqueue, opcode, types, IoUring};
        use std::io::Write;
        use std::os::fd::AsRawFd;
        if !poll_first_kernel() {
            return;
        }
        let mut ring = IoUring::new(8).unwrap();
        // One receive of at most `len` bytes on `fd`, as `recvmsg` or `recv`: its result
        // and whether the kernel said the socket still holds data.
        let mut recv = |fd: i32, len: usize, msg: bool| {
            let mut buf = vec![0u8; len];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: len,
            };
            // SAFETY: plain C data; all-zero is valid.
            let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            let sqe = if msg {
                opcode::RecvMsg::new(types::Fd(fd), &mut hdr).build()
            } else {
                opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), len as u32).build()
            };
            // SAFETY: `buf`, `iov` and `hdr` outlive the operation: it is waited for
            // here; the queue is empty.
            unsafe { ring.submission().push(&sqe).unwrap() };
            ring.submit_and_wait(1).unwrap();
            let cqe = ring.completion().next().unwrap();
            (cqe.result(), cqueue::sock_nonempty(cqe.flags()))
        };
        let (rx, tx) = udp_pair();
        for _ in 0..3 {
            tx.send(b"datagram").unwrap();
        }
        let (d1, d2) = std::os::unix::net::UnixDatagram::pair().unwrap();
        for _ in 0..3 {
            d1.send(b"datagram").unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        for (what, fd) in [("UDP", rx.as_raw_fd()), ("Unix datagram", d2.as_raw_fd())] {
            assert_eq!(recv(fd, 64, true), (8, false), "{what} recvmsg");
            assert_eq!(recv(fd, 64, false), (8, false), "{what} recv");
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let (mut u1, u2) = std::os::unix::net::UnixStream::pair().unwrap();
        c.write_all(&[7; 30]).unwrap();
        u1.write_all(&[7; 30]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        for (what, fd) in [("TCP", s.as_raw_fd()), ("Unix stream", u2.as_raw_fd())] {
            assert_eq!(
                recv(fd, 10, false),
                (10, true),
                "{what} recv, 20 bytes left"
            );
            assert_eq!(
                recv(fd, 64, true),
                (20, false),
                "{what} recvmsg of the rest"
            );
        }
    }

    /// A rearmed receive polls first only after a stream receive that emptied its socket:
    /// never after a datagram's (the kernel does not report datagram queues).
    #[test]
    fn only_a_stream_receive_that_emptied_its_socket_polls_first_next() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        if !Backend::IoUring.is_available() || !poll_first_kernel() {
            return;
        }
        let mut lp = Loop::new(Options {
            backend: Some(Backend::IoUring),
            ..Default::default()
        })
        .unwrap();
        // Run `op` once (Disarm) and say whether its completion now asks to poll first.
        let mut hint_after = |op: Op| {
            let mut c = pin!(Completion::new());
            lp.start(c.as_mut(), op, |_, _, r| {
                assert!(!matches!(
                    r,
                    OpResult::Recv(Err(_)) | OpResult::RecvMsg(Err(_))
                ));
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
            let inner = Completion::raw(std::ptr::NonNull::from(&*c));
            // SAFETY: a live completion that only this thread touches, not in the loop.
            unsafe { (*inner).connecting }
        };
        let (rx, tx) = udp_pair();
        tx.send(b"one").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let fd = rx.as_raw_fd();
        // The only datagram: the socket is empty after it, but nothing says so.
        let buf = crate::Buffer::from(vec![0u8; 64]);
        assert!(!hint_after(Op::RecvMsg { fd, buf }), "UDP recvmsg");
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        s.set_nonblocking(true).unwrap();
        c.write_all(&[7; 30]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let fd = s.as_raw_fd();
        let buf = crate::Buffer::from(vec![0u8; 10]);
        assert!(!hint_after(Op::Recv { fd, buf }), "TCP, 20 bytes left");
        let buf = crate::Buffer::from(vec![0u8; 64]);
        assert!(hint_after(Op::Recv { fd, buf }), "TCP, emptied");
        assert!(!super::left_stream_empty(0, 0), "end of stream");
        assert!(
            !super::left_stream_empty(-(libc::EAGAIN as isize), 0),
            "an error"
        );
    }

    thread_local! {
        /// Loops created on this thread act as on a kernel whose io_uring has none of
        /// the filesystem opcodes.
        pub(crate) static NO_FS_OPCODES: Cell<bool> = const { Cell::new(false) };
        /// Loops created on this thread act as on a kernel without multishot accept and
        /// provided-buffer rings (before 5.19).
        pub(crate) static NO_MULTISHOT: Cell<bool> = const { Cell::new(false) };
        /// Submits on this thread answer `EBUSY` while the CQ holds an entry, as a
        /// kernel before 5.19 does while CQEs wait in its overflow list.
        pub(crate) static BUSY_WHILE_CQ_HOLDS: Cell<bool> = const { Cell::new(false) };
        /// Waits entered on this thread with CQEs set aside (see `stash_cqes`).
        pub(crate) static WAITS_WITH_CQES_ASIDE: Cell<usize> = const { Cell::new(0) };
    }

    /// On this thread, submits answer `EBUSY` while the CQ holds an entry (see
    /// `BUSY_WHILE_CQ_HOLDS`): a loop on a 2-entry ring, and `/dev/null` to write to.
    fn busy_tiny_ring() -> (Loop, std::fs::File) {
        BUSY_WHILE_CQ_HOLDS.with(|f| f.set(true));
        let lp = Loop::new(Options {
            backend: Some(Backend::IoUring),
            entries: 2,
            ..Default::default()
        })
        .unwrap();
        let null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        (lp, null)
    }

    /// CQEs set aside on `EBUSY` are handled before the loop blocks. On a 2-entry ring
    /// (whose SQ starts with the wake-up poll), a write completes at the first submit;
    /// the second submit finds its CQE in the CQ, sets it aside, and submits two pipe
    /// reads that wait; two more reads are queued. Only the write's callback feeds the
    /// pipe: a wait that blocked with its CQE aside would never end.
    #[test]
    fn set_aside_cqes_are_handled_before_the_loop_blocks() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        if !Backend::IoUring.is_available() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut lp, null) = busy_tiny_ring();
            let (r, w) = std::io::pipe().unwrap();
            let w = std::cell::RefCell::new(w);
            let w = std::rc::Rc::new(w);
            let done = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut cs: Vec<_> = (0..5).map(|_| Box::pin(Completion::new())).collect();
            for (i, c) in cs.iter_mut().enumerate() {
                let d = done.clone();
                let w = w.clone();
                let op = match i {
                    0 => Op::Write {
                        fd: null.as_raw_fd(),
                        buf: crate::Buffer::copy_from(b"ab"),
                    },
                    _ => Op::Read {
                        fd: r.as_raw_fd(),
                        buf: crate::Buffer::inline(1),
                    },
                };
                lp.start(c.as_mut(), op, move |_, _, res| {
                    match (i, res) {
                        // The write's callback feeds the pipe for the four reads.
                        (0, OpResult::Write(Ok(2))) => w.borrow_mut().write_all(b"wxyz").unwrap(),
                        (1.., OpResult::Read(Ok(1))) => {}
                        (i, res) => panic!("{i}: {res:?}"),
                    }
                    d.borrow_mut().push(i);
                    CallbackAction::Disarm
                });
            }
            lp.run(RunMode::UntilDone).unwrap();
            BUSY_WHILE_CQ_HOLDS.with(|f| f.set(false));
            let mut got = done.borrow().clone();
            got.sort();
            tx.send((got, WAITS_WITH_CQES_ASIDE.with(|n| n.get())))
                .unwrap();
        });
        let (got, aside) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the loop ran the set-aside callback instead of blocking");
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(
            aside > 0,
            "the case under test: a wait with a CQE set aside"
        );
    }

    /// A kernel before 5.19 refuses submissions (`EBUSY`) while its CQ overflows, and
    /// only reaping makes it take them again. A push into a full SQ then used to retry
    /// forever; the CQEs are now set aside for the next reap. On a 2-entry ring, 64
    /// writes to `/dev/null` started in one go each complete once, in order, and the
    /// loop then goes on as usual.
    #[test]
    fn a_full_sq_on_a_kernel_refusing_submits_while_its_cq_holds_entries_moves_on() {
        use std::os::fd::AsRawFd;
        if !Backend::IoUring.is_available() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut lp, null) = busy_tiny_ring();
            let done = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let mut cs: Vec<_> = (0..64).map(|_| Box::pin(Completion::new())).collect();
            for (i, c) in cs.iter_mut().enumerate() {
                let d = done.clone();
                let op = Op::Write {
                    fd: null.as_raw_fd(),
                    buf: crate::Buffer::copy_from(&[i as u8; 3]),
                };
                lp.start(c.as_mut(), op, move |_, _, r| {
                    assert!(matches!(r, OpResult::Write(Ok(3))), "{r:?}");
                    d.borrow_mut().push(i);
                    CallbackAction::Disarm
                });
            }
            lp.run(RunMode::UntilDone).unwrap();
            let got = done.borrow().clone();
            // The loop goes on: one more write, and a timer.
            let again = run(
                &mut lp,
                Op::Write {
                    fd: null.as_raw_fd(),
                    buf: crate::Buffer::copy_from(b"x"),
                },
            );
            let timer = run(&mut lp, Op::Timer { ms: 1 });
            BUSY_WHILE_CQ_HOLDS.with(|f| f.set(false));
            let again = matches!(again, OpResult::Write(Ok(1)));
            let timer = matches!(timer, OpResult::Timer(crate::TimerTrigger::Expiration));
            tx.send((got, again, timer)).unwrap();
        });
        let (got, again, timer) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the loop finished its writes (it spun in push before the fix)");
        assert_eq!(got, (0..64).collect::<Vec<_>>());
        assert!(again, "a write after them completes");
        assert!(timer, "a timer after them fires");
    }

    fn run(lp: &mut Loop, op: Op) -> OpResult {
        let out = std::rc::Rc::new(Cell::new(None));
        let o = out.clone();
        let mut c = pin!(Completion::new());
        lp.start(c.as_mut(), op, move |_, _, r| {
            o.set(Some(r));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        out.take().expect("one result")
    }

    /// On a kernel without multishot accept and provided-buffer rings, `AcceptMulti`
    /// issues single accepts and `RecvMulti` waits for readiness then receives into a
    /// free-list buffer: the same results.
    #[test]
    fn multishot_fallbacks_give_the_same_results() {
        use std::io::Write;
        if !Backend::IoUring.is_available() {
            return;
        }
        NO_MULTISHOT.with(|f| f.set(true));
        let lp = Loop::new(Options {
            backend: Some(Backend::IoUring),
            ..Default::default()
        });
        let mut lp = lp.unwrap();
        let group = lp.register_buffer_group(2, 8).unwrap();
        NO_MULTISHOT.with(|f| f.set(false));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let _clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g = got.clone();
        let mut c = pin!(Completion::new());
        use std::os::fd::AsRawFd;
        lp.start(
            c.as_mut(),
            Op::AcceptMulti { fd: l.as_raw_fd() },
            move |_, _, r| {
                let OpResult::AcceptMulti(Ok(fd)) = r else {
                    panic!("{r:?}")
                };
                g.borrow_mut().push(fd);
                if g.borrow().len() == 3 {
                    CallbackAction::Disarm
                } else {
                    CallbackAction::Rearm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(got.borrow().len(), 3);
        // Receive: 20 bytes through 2 buffers of 8: 8, 8, ENOBUFS; then the rest.
        let mut peer = std::net::TcpStream::connect(addr).unwrap();
        let (sock, _) = loop {
            match l.accept() {
                Ok(a) => break a,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
            }
        };
        sock.set_nonblocking(true).unwrap();
        peer.write_all(b"abcdefghijklmnopqrst").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let leases = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let k = leases.clone();
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: sock.as_raw_fd(),
                group: group.clone(),
            },
            move |_, _, r| {
                let OpResult::RecvMulti(r) = r else {
                    panic!("{r:?}")
                };
                let stop = r.is_err();
                k.borrow_mut().push(r);
                if stop {
                    CallbackAction::Disarm
                } else {
                    CallbackAction::Rearm
                }
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        let v: Vec<_> = leases.borrow_mut().drain(..).collect();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!(v[0].as_ref().unwrap().as_slice(), b"abcdefgh");
        assert_eq!(v[1].as_ref().unwrap().as_slice(), b"ijklmnop");
        match &v[2] {
            Err(crate::ReadError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ENOBUFS)),
            other => panic!("{other:?}"),
        }
        drop(v);
        assert_eq!(group.available(), 2);
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: sock.as_raw_fd(),
                group: group.clone(),
            },
            |_, _, r| {
                let OpResult::RecvMulti(Ok(b)) = r else {
                    panic!("{r:?}")
                };
                assert_eq!(b.as_slice(), b"qrst");
                CallbackAction::Disarm
            },
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(group.available(), 2);
    }

    /// The results a multishot receive's record holds when its callback rearms (a batch
    /// of CQEs from one wait) are delivered in the same tick, not one tick each (which
    /// also asked the kernel again every 16 ticks). On epoll a rearm is a fresh attempt,
    /// run at the next tick as before.
    #[test]
    fn multishot_batch_is_delivered_in_one_tick() {
        if Backend::IoUring.is_available() {
            let batches = multishot_batches(Backend::IoUring);
            assert!(
                batches.iter().any(|&n| n > 1),
                "one result per tick: {batches:?}"
            );
        }
        let batches = multishot_batches(Backend::Epoll);
        assert!(batches.iter().all(|&n| n == 1), "epoll: {batches:?}");
    }

    /// A non-blocking UDP socket on loopback, and a socket connected to it.
    fn udp_pair() -> (std::net::UdpSocket, std::net::UdpSocket) {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        (rx, tx)
    }

    /// 10 datagrams queued, then a rearming `RecvMulti` run by `NoWait` ticks: how many
    /// results each tick that delivered any delivered (all 10 arrive, in order).
    fn multishot_batches(backend: Backend) -> Vec<usize> {
        use std::os::fd::AsRawFd;
        let mut lp = Loop::new(Options {
            backend: Some(backend),
            ..Default::default()
        })
        .unwrap();
        let group = lp.register_buffer_group(16, 64).unwrap();
        let (rx, tx) = udp_pair();
        const N: usize = 10;
        for i in 0..N {
            tx.send(&[i as u8; 3]).unwrap();
        }
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g = got.clone();
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: rx.as_raw_fd(),
                group,
            },
            move |_, _, r| {
                let OpResult::RecvMulti(Ok(b)) = r else {
                    panic!("{r:?}")
                };
                g.borrow_mut().push(b[0]);
                if g.borrow().len() == N {
                    CallbackAction::Disarm
                } else {
                    CallbackAction::Rearm
                }
            },
        );
        let mut batches = Vec::new();
        for _ in 0..2000 {
            let before = got.borrow().len();
            lp.run(RunMode::NoWait).unwrap();
            let n = got.borrow().len() - before;
            if n > 0 {
                batches.push(n);
            }
            if got.borrow().len() == N {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            *got.borrow(),
            (0..N as u8).collect::<Vec<_>>(),
            "{backend:?}: in order"
        );
        assert_eq!(c.state(), crate::CompletionState::Dead);
        batches
    }

    /// How the callback of a multishot receive leaves a batch (results its record already
    /// holds, delivered in the same call of `invoke`) after the first `STOP` results.
    #[derive(Clone, Copy, Debug)]
    enum Leave {
        /// Returns `Disarm`.
        Disarm,
        /// Points its op at the second socket (`op_mut`) and returns `Rearm`.
        OtherSocket,
        /// Takes its op (`take_op`: `Noop`) and returns `Rearm`.
        TakeOp,
        /// Re-prepares itself (`prep`) for the second socket with a new callback.
        Prep,
        /// Re-prepares itself with the same operation and a new callback, which takes the
        /// next result (as `100 +` its first byte).
        PrepSame,
    }

    /// A batch ends where the callback stops asking for the same operation: every way of
    /// leaving it delivers no more of the first socket's results, hands every buffer those
    /// held back to the group, and (where the callback asked for it) receives from the
    /// other socket. On io_uring the first results come as one batch; epoll runs them as
    /// fresh attempts, with the same outcome.
    #[test]
    fn a_batch_ends_where_the_callback_changes_its_operation() {
        for backend in [Backend::IoUring, Backend::Epoll] {
            if !backend.is_available() {
                continue;
            }
            for leave in [
                Leave::Disarm,
                Leave::OtherSocket,
                Leave::TakeOp,
                Leave::Prep,
                Leave::PrepSame,
            ] {
                leave_a_batch(backend, leave);
            }
        }
    }

    fn leave_a_batch(backend: Backend, leave: Leave) {
        use std::os::fd::AsRawFd;
        const N: usize = 10;
        const STOP: usize = 3;
        const BUFFERS: u16 = 16;
        let mut lp = Loop::new(Options {
            backend: Some(backend),
            ..Default::default()
        })
        .unwrap();
        let group = lp.register_buffer_group(BUFFERS, 64).unwrap();
        let (a, a_tx) = udp_pair();
        let (b, b_tx) = udp_pair();
        for i in 0..N {
            a_tx.send(&[i as u8; 3]).unwrap();
        }
        b_tx.send(b"bbb").unwrap();
        let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let g = got.clone();
        let (a_fd, b_fd, b_group) = (a.as_raw_fd(), b.as_raw_fd(), group.clone());
        let mut c = pin!(Completion::new());
        lp.start(
            c.as_mut(),
            Op::RecvMulti {
                fd: a.as_raw_fd(),
                group: group.clone(),
            },
            move |_, mut c, r| {
                let OpResult::RecvMulti(Ok(buf)) = r else {
                    panic!("{r:?}")
                };
                g.borrow_mut().push(buf[0]);
                drop(buf);
                let n = g.borrow().len();
                if n < STOP {
                    return CallbackAction::Rearm;
                }
                if n > STOP {
                    return CallbackAction::Disarm; // the other socket's datagram
                }
                let group = b_group.clone();
                match leave {
                    Leave::Disarm => return CallbackAction::Disarm,
                    Leave::OtherSocket => {
                        *c.as_mut().op_mut().unwrap() = Op::RecvMulti { fd: b_fd, group }
                    }
                    Leave::TakeOp => drop(c.as_mut().take_op()),
                    Leave::Prep | Leave::PrepSame => {
                        let (fd, add) = match leave {
                            Leave::Prep => (b_fd, 0),
                            _ => (a_fd, 100),
                        };
                        let g = g.clone();
                        c.as_mut()
                            .prep(Op::RecvMulti { fd, group }, move |_, _, r| {
                                let OpResult::RecvMulti(Ok(buf)) = r else {
                                    panic!("{r:?}")
                                };
                                g.borrow_mut().push(buf[0] + add);
                                CallbackAction::Disarm
                            })
                    }
                }
                CallbackAction::Rearm
            },
        );
        // Every first-socket datagram reaches the kernel's receive before the loop looks.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let next = match leave {
            Leave::OtherSocket | Leave::Prep => Some(b'b'),
            Leave::PrepSame => Some(100 + STOP as u8),
            Leave::Disarm | Leave::TakeOp => None,
        };
        let want: Vec<u8> = (0..STOP as u8).chain(next).collect();
        for _ in 0..2000 {
            if *got.borrow() == want && c.state() == crate::CompletionState::Dead {
                break;
            }
            lp.run(RunMode::NoWait).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(*got.borrow(), want, "{backend:?} {leave:?}");
        for _ in 0..200 {
            if group.available() == BUFFERS {
                break;
            }
            lp.run(RunMode::NoWait).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(
            group.available(),
            BUFFERS,
            "{backend:?} {leave:?}: every buffer back"
        );
        drop(lp);
    }

    /// On a kernel without the opcodes, the filesystem operations run on the pool and
    /// give the same results.
    #[test]
    fn missing_fs_opcodes_fall_back_to_the_pool() {
        if !Backend::IoUring.is_available() {
            return;
        }
        NO_FS_OPCODES.with(|f| f.set(true));
        let lp = Loop::new(Options {
            backend: Some(Backend::IoUring),
            ..Default::default()
        });
        NO_FS_OPCODES.with(|f| f.set(false));
        let mut lp = lp.unwrap();
        let dir = std::env::temp_dir().join(format!("xev-probe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = run(
            &mut lp,
            Op::MkdirAt {
                dir: None,
                path: OpPath::new(&dir),
                mode: 0o755,
            },
        );
        assert!(matches!(r, OpResult::MkdirAt(Ok(()))), "{r:?}");
        let file = dir.join("f");
        let r = run(
            &mut lp,
            Op::OpenAt {
                dir: None,
                path: OpPath::new(&file),
                flags: libc::O_CREAT | libc::O_RDWR,
                mode: 0o644,
            },
        );
        let OpResult::OpenAt(Ok(fd)) = r else {
            panic!("{r:?}")
        };
        use std::os::fd::AsRawFd;
        let r = run(
            &mut lp,
            Op::Ftruncate {
                fd: fd.as_raw_fd(),
                len: 77,
            },
        );
        assert!(matches!(r, OpResult::Ftruncate(Ok(()))), "{r:?}");
        let r = run(
            &mut lp,
            Op::Statx {
                dir: Some(fd.as_raw_fd()),
                path: OpPath::empty(),
                flags: libc::AT_EMPTY_PATH,
                mask: libc::STATX_BASIC_STATS,
                buf: StatxBuf::new(),
            },
        );
        let OpResult::Statx(Ok(m)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(m.len(), 77);
        assert_eq!(m.ino(), std::fs::metadata(&file).unwrap().ino());
        let r = run(
            &mut lp,
            Op::UnlinkAt {
                dir: None,
                path: OpPath::new(&dir),
                remove_dir: true,
            },
        );
        match r {
            OpResult::UnlinkAt(Err(crate::Error::Io(e))) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOTEMPTY))
            }
            other => panic!("{other:?}"),
        }
        drop(fd);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
