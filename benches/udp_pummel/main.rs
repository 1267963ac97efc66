//! UDP pummel over loopback, after libxev's `src/bench/udp_pummel_1v1.zig`: one sender,
//! one receiver, 1,000,000 datagrams of 45 bytes (libxev's
//! `"RANG TANG DING DONG I AM THE JAPANESE SANDMAN"`), counted as they are received.
//!
//! Only the receiver differs between variants; the sender is the same plain blocking std
//! socket (connected to the receiver) on its own thread. It sends with UDP GSO
//! (`UDP_SEGMENT` = 45: one `sendmmsg` of 8 messages of 64 x 45 bytes leaves as 512
//! ordinary 45-byte datagrams, segmented inside the kernel), because a sender that makes
//! every datagram a separate message (`sendmmsg` of 64 datagrams) costs more per datagram
//! than any of the receivers here: it kept them idle ~20 % of the time, so every variant
//! measured the sender (`XEV_BENCH_SENDER=mmsg` selects that sender, for comparison).
//! The receivers see plain 45-byte datagrams either way.
//!
//! Receiver variants, measured in the same process and interleaved (A B C ... A B C ...):
//!
//! 1. xev on io_uring (callback API: the `xev::Udp` watcher, one `read` (`recvmsg`) that
//!    always rearms, as libxev's receiver does);
//! 2. xev on epoll (the same);
//! 3. xev async on io_uring (`xev::rt` runtime, `xev::net::UdpSocket::recv_from` in a loop
//!    with one owned buffer);
//! 4. xev async on epoll (the same);
//! 5. a raw io_uring loop written directly on the `io-uring` crate (the reference: one
//!    `RecvMsg` SQE in flight, resubmitted after each CQE);
//! 6. tokio, a `current_thread` runtime (`tokio::net::UdpSocket::recv_from` in a loop);
//! 7. xev io_uring multishot (callback API: one `Op::RecvMulti` over a registered buffer
//!    group, a provided-buffer ring: one SQE for many datagrams; target >= 1.2x tokio);
//! 8. a raw io_uring multishot loop on the `io-uring` crate (the multishot reference: the
//!    same `RecvMulti` over a provided-buffer ring, with no loop or callback around it);
//! 9. a raw epoll loop (the epoll reference: `recvfrom` until `EAGAIN`, then
//!    `epoll_wait`, as the tokio and xev epoll receivers do).
//!
//! A missed single-shot line (an xev receiver under tokio) prints its raw reference's
//! rate against tokio's (raw io_uring for the io_uring receivers, raw epoll for the epoll
//! ones): under 1.0x, the kernel's cost of that way of receiving is the cause; xev's own
//! part is its rate against the raw loop's.
//!
//! **What is measured.** UDP on loopback drops datagrams when the receiver's queue is
//! full, so libxev's shape (the sender writes as fast as it can, the receiver counts what
//! arrives) measures drops as much as receiving once the sender is the faster side. Here
//! the receiver's socket gets a large `SO_RCVBUF` (`SO_RCVBUFFORCE` when permitted) and
//! its capacity in datagrams is measured once at start-up. The sender's CPU does most of
//! the loopback delivery (GSO segmentation and queueing each datagram on the receiving
//! socket happen inside its `sendmmsg`): measured here, about 1 µs of sender CPU per
//! datagram, as much as the receivers' own cost. Sending and receiving at once therefore
//! measures the slower side, often the sender (the receiver then sleeps part of the time:
//! a flow-control window of 1024 datagrams, the earlier default, left the receivers idle
//! ~40 % of the run). So by default (`XEV_BENCH_FLOW=drain`, `drain.rs`) the run is cut
//! into **drain cycles**: the sender fills the queue with one cycle (half the measured
//! capacity, in whole `sendmmsg` batches) while the receiver waits at the cycle boundary
//! inside its per-datagram callback (alike for every variant), then the receiver drains
//! the full queue while the sender waits. Only the drains are timed, so the figure is the
//! receiver's capacity: datagrams received per second of draining a queue that never runs
//! dry, nothing dropped. `XEV_BENCH_FLOW=window` sends concurrently instead, keeping at
//! most `XEV_BENCH_WINDOW` datagrams (default half the capacity; 0: no flow control,
//! libxev's shape, expect losses) unread from the count the receiver publishes every 16
//! datagrams. The rate counts from the warm-up count to the last datagram (or, if some
//! were lost, to the end marker the sender sends after the last datagram).
//!
//! Also reported per variant: datagrams lost, allocations, the receiver thread's CPU time
//! per datagram (capacity on its own CPU time: 1e9 / that), and how the receiver spent
//! the timed time (from `/proc/thread-self/schedstat`, `sched.rs`): busy (on its CPU),
//! queued (runnable but kept off its CPU by other work on the machine), idle (asleep for
//! want of datagrams: near 0 % in drain mode, which checks the measurement), and times it
//! got a CPU per 1000 datagrams; for the sender its CPU time per datagram, the share of
//! its time spent waiting, and datagrams per `sendmmsg`. The 1.2x target is checked on the
//! rate and on the receivers' CPU time per datagram, and a missed rate target prints its
//! measured cause.
//!
//! `XEV_BENCH_QUICK=1` runs 20,000 timed datagrams per variant once (CI smoke run).
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio`, `XEV_BENCH_DATAGRAMS=N` (timed datagrams
//! per run), `XEV_BENCH_ROUNDS=N` (default 5), `XEV_BENCH_FLOW=drain|window`,
//! `XEV_BENCH_WINDOW=N`, `XEV_BENCH_SENDER=gso|mmsg`,
//! `XEV_BENCH_PIN=none|same|split` (default split: sender on CPU 0, receiver on CPU 1).
//!
//! Run with `cargo bench --bench udp_pummel`.

#[path = "../common/mod.rs"]
mod common;
mod drain;
mod raw;
mod raw_epoll;
mod raw_multishot;
mod sched;
mod tokio_side;
mod xev_async_side;
mod xev_multishot_side;
mod xev_side;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::{Cell, RefCell};
use std::io;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::net::Variant as CommonVariant;
use common::report::{per_round_line, ratio, ratio_target, target};
use common::{sys, watchdog};
use sched::Sched;
use xev::Backend;

/// libxev's datagram.
const DATAGRAM: &[u8] = b"RANG TANG DING DONG I AM THE JAPANESE SANDMAN";
/// What the sender sends after the last datagram until the receiver stops.
const MARKER: &[u8] = b"E";
/// Receive buffer size (libxev's receiver reads into 64 KiB).
const RECV_BUF: usize = 65536;
/// io_uring entries, for xev (its default) and the raw reference alike.
const ENTRIES: u32 = 256;
/// SO_RCVBUF asked for (the kernel doubles it for its bookkeeping).
const RCVBUF: usize = 8 << 20;
/// Default flow-control window (datagrams sent and not yet counted by the receiver).
const WINDOW: u64 = 4096;
/// How long the sender sleeps between looks at the receiver's count while the window is
/// full.
const WAIT_SLEEP: Duration = Duration::from_micros(20);
/// The receiver publishes its count every this many datagrams.
const PUBLISH_EVERY: u64 = 16;
/// A sender waiting this long for the window without progress assumes the datagrams in
/// flight were lost and carries on.
const STALL: Duration = Duration::from_millis(100);
/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(60);

/// The shared variants plus this bench's own.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Common(CommonVariant),
    /// xev callback API, `Op::RecvMulti` over a provided-buffer ring (io_uring).
    XevMultishot,
    /// The raw multishot loop (io_uring; the reference for `XevMultishot`).
    RawMultishot,
    /// The raw epoll loop (the reference for the epoll receivers).
    RawEpoll,
}

impl Variant {
    const MULTISHOT: &'static str = "xev io_uring multishot";
    const RAW_MULTISHOT: &'static str = "raw multishot (ref)";
    const RAW_EPOLL: &'static str = "raw epoll (ref)";

    fn name(self) -> &'static str {
        match self {
            Variant::Common(v) => v.name(),
            Variant::XevMultishot => Variant::MULTISHOT,
            Variant::RawMultishot => Variant::RAW_MULTISHOT,
            Variant::RawEpoll => Variant::RAW_EPOLL,
        }
    }

    fn is_xev(self) -> bool {
        match self {
            Variant::Common(v) => v.is_xev(),
            Variant::XevMultishot => true,
            Variant::RawMultishot | Variant::RawEpoll => false,
        }
    }

    /// The raw loop that receives as this single-shot xev receiver does.
    fn single_shot_reference(self) -> Option<Variant> {
        match self {
            Variant::Common(CommonVariant::XevIoUring | CommonVariant::XevAsyncIoUring) => {
                Some(Variant::Common(CommonVariant::RawIoUring))
            }
            Variant::Common(CommonVariant::XevEpoll | CommonVariant::XevAsyncEpoll) => {
                Some(Variant::RawEpoll)
            }
            _ => None,
        }
    }

    fn selected() -> Vec<Variant> {
        let mut v: Vec<Variant> = CommonVariant::selected()
            .into_iter()
            .map(Variant::Common)
            .collect();
        if Backend::IoUring.is_available() && common::wanted("XEV_BENCH_ONLY", Variant::MULTISHOT) {
            v.push(Variant::XevMultishot);
        }
        if Backend::IoUring.is_available()
            && common::wanted("XEV_BENCH_ONLY", Variant::RAW_MULTISHOT)
        {
            v.push(Variant::RawMultishot);
        }
        if common::wanted("XEV_BENCH_ONLY", Variant::RAW_EPOLL) {
            v.push(Variant::RawEpoll);
        }
        v
    }
}

#[derive(Clone, Copy)]
struct Workload {
    mode: SendMode,
    warmup: u64,
    timed: u64,
    flow: Flow,
}

/// How the sender keeps the receiver's queue from overflowing (`XEV_BENCH_FLOW`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Fill a cycle of this many datagrams, let the receiver drain it, repeat; only the
    /// drains are timed (`drain.rs`; the default).
    Drain(u64),
    /// Send concurrently with receiving, keeping at most this many datagrams unread (0:
    /// no flow control, libxev's shape).
    Window(u64),
}

/// One measurement's figures.
#[derive(Clone, Copy)]
struct Sample {
    per_sec: f64,
    /// Datagrams the sender sent that the receiver never counted.
    lost: u64,
    /// Allocations (all threads) during the timed section.
    allocs: u64,
    allocs_per_dgram: f64,
    /// Receiver thread CPU time per timed datagram.
    rx_cpu_ns: f64,
    /// Receiver thread CPU time over the timed interval's wall time.
    rx_busy: f64,
    /// Share of the sender's sending time spent waiting for the window.
    sender_wait: f64,
    /// Share of the timed interval the receiver was runnable but off the CPU.
    rx_queued: f64,
    /// Times the receiver was given a CPU, per 1000 timed datagrams.
    rx_slices_per_k: f64,
    /// Datagrams per `sendmmsg` call.
    per_send: f64,
    /// Sender thread CPU time per datagram sent.
    tx_cpu_ns: f64,
}

impl Sample {
    /// Share of the timed interval the receiver slept (neither running nor runnable):
    /// it had nothing to receive.
    fn rx_idle(&self) -> f64 {
        (1.0 - self.rx_busy - self.rx_queued).max(0.0)
    }
}

// ---------------------------------------------------------------------------------------
// Receive accounting shared by every receiver implementation.

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    allocs: u64,
    /// The receiver thread's CPU time.
    cpu: Duration,
    /// The receiver thread's scheduling figures.
    sched: Sched,
    count: u64,
}

impl Mark {
    fn now(count: u64) -> Mark {
        Mark {
            at: Instant::now(),
            allocs: common::allocations(),
            cpu: common::thread_cpu_time(),
            sched: Sched::now(),
            count,
        }
    }
}

/// What sender and receiver share.
struct Shared {
    /// Datagrams counted by the receiver (published every `PUBLISH_EVERY`).
    received: AtomicU64,
    /// The receiver has stopped: no more markers needed.
    done: AtomicBool,
    /// Drain cycles: datagrams the sender has finished sending (`u64::MAX` once it
    /// has sent everything or given up).
    filled: AtomicU64,
}

/// Counts received datagrams. `datagram` returns false when the receiver should stop
/// (all counted, the end marker seen, or an error).
struct Rx {
    warmup: u64,
    total: u64,
    /// Drain cycle length (0: not in drain mode).
    cycle: u64,
    /// Drain mode: the timed waits at cycle boundaries.
    blocked: Cell<drain::Blocked>,
    shared: Arc<Shared>,
    count: Cell<u64>,
    start: Cell<Option<Mark>>,
    end: Cell<Option<Mark>>,
    error: RefCell<Option<String>>,
}

impl Rx {
    fn new(warmup: u64, total: u64, cycle: u64, shared: Arc<Shared>) -> Rx {
        Rx {
            warmup,
            total,
            cycle,
            blocked: Cell::new(drain::Blocked::default()),
            shared,
            count: Cell::new(0),
            start: Cell::new(None),
            end: Cell::new(None),
            error: RefCell::new(None),
        }
    }

    fn datagram(&self, data: &[u8]) -> bool {
        if data == MARKER {
            self.end.set(Some(Mark::now(self.count.get())));
            return false;
        }
        if data != DATAGRAM {
            self.fail(format!("unexpected datagram {data:?}"));
            return false;
        }
        let c = self.count.get() + 1;
        self.count.set(c);
        if c % PUBLISH_EVERY == 0 {
            self.shared.received.store(c, Ordering::Relaxed);
        }
        if c == self.warmup {
            self.start.set(Some(Mark::now(c)));
        }
        if c == self.total {
            self.end.set(Some(Mark::now(c)));
            return false;
        }
        if self.cycle > 0 && c % self.cycle == 0 {
            let mut b = self.blocked.get();
            drain::wait_for_fill(&self.shared, c, self.cycle, &mut b, c >= self.warmup);
            self.blocked.set(b);
        }
        true
    }

    fn fail(&self, what: String) {
        self.error.borrow_mut().get_or_insert(what);
    }

    fn marks(&self) -> Result<(Mark, Mark, drain::Blocked), String> {
        if let Some(e) = self.error.borrow().clone() {
            return Err(e);
        }
        match (self.start.get(), self.end.get()) {
            (Some(a), Some(b)) => Ok((a, b, self.blocked.get())),
            _ => Err(format!(
                "receiver stopped after {} of {} datagrams (before the end of the warm-up)",
                self.count.get(),
                self.total
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sender (the same for every variant).

struct SenderStats {
    sent: u64,
    /// `sendmmsg` calls that sent something.
    calls: u64,
    /// The sender thread's CPU time while sending.
    cpu: Duration,
    /// Time spent waiting for the window.
    waited: Duration,
    /// Time from the first send to the last datagram (markers excluded).
    elapsed: Duration,
}

/// How the sender sends: `sendmmsg` of UDP GSO messages (`UDP_SEGMENT`: one message of
/// up to `SEGS` x 45 bytes leaves the kernel as that many 45-byte datagrams, segmented on
/// the receive side of loopback), or `sendmmsg` of plain datagrams.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SendMode {
    Gso,
    Mmsg,
}

impl SendMode {
    fn from_env() -> SendMode {
        match std::env::var("XEV_BENCH_SENDER").as_deref() {
            Ok("mmsg") => SendMode::Mmsg,
            _ => SendMode::Gso,
        }
    }

    fn describe(self) -> String {
        match self {
            SendMode::Gso => {
                format!("sendmmsg of {MSGS} UDP GSO messages x {SEGS} datagrams (UDP_SEGMENT)")
            }
            SendMode::Mmsg => format!("sendmmsg of {SEGS} datagrams"),
        }
    }
}

/// Datagrams per GSO message, and per `sendmmsg` in `Mmsg` mode.
const SEGS: usize = 64;
/// GSO messages per `sendmmsg`.
const MSGS: usize = 8;
const SOL_UDP: libc::c_int = 17;
const UDP_SEGMENT: libc::c_int = 103;

/// The sender's socket with its prepared message headers.
struct Blaster {
    fd: std::os::fd::RawFd,
    mode: SendMode,
    /// `SEGS` copies of `DATAGRAM` back to back.
    _payload: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl Blaster {
    fn new(sock: &UdpSocket, mode: SendMode) -> io::Result<Blaster> {
        let fd = sock.as_raw_fd();
        if mode == SendMode::Gso {
            let v = DATAGRAM.len() as libc::c_int;
            // SAFETY: setsockopt reads one c_int from a live local.
            let r = unsafe {
                libc::setsockopt(
                    fd,
                    SOL_UDP,
                    UDP_SEGMENT,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if r != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mut payload: Box<[u8]> = DATAGRAM.repeat(SEGS).into_boxed_slice();
        let n = match mode {
            SendMode::Gso => MSGS,
            SendMode::Mmsg => SEGS,
        };
        let mut iovs: Box<[libc::iovec]> = (0..n)
            .map(|_| libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: DATAGRAM.len(),
            })
            .collect();
        let hdrs: Box<[libc::mmsghdr]> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is plain data; all-zero is an empty header.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Ok(Blaster {
            fd,
            mode,
            _payload: payload,
            iovs,
            hdrs,
        })
    }

    /// The most datagrams one `send` call sends.
    fn max_batch(&self) -> u64 {
        match self.mode {
            SendMode::Gso => (SEGS * MSGS) as u64,
            SendMode::Mmsg => SEGS as u64,
        }
    }

    /// Send `n` (1..=max_batch) datagrams with one `sendmmsg`: how many went out.
    fn send(&mut self, n: u64) -> io::Result<u64> {
        let n = n.min(self.max_batch()) as usize;
        let msgs = match self.mode {
            SendMode::Mmsg => n,
            SendMode::Gso => {
                let msgs = n.div_ceil(SEGS);
                for (i, iov) in self.iovs[..msgs].iter_mut().enumerate() {
                    iov.iov_len = (n - i * SEGS).min(SEGS) * DATAGRAM.len();
                }
                msgs
            }
        };
        // SAFETY: the first `msgs` headers point at live iovecs over `_payload`.
        let r = unsafe { libc::sendmmsg(self.fd, self.hdrs.as_mut_ptr(), msgs as libc::c_uint, 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let sent = match self.mode {
            SendMode::Mmsg => r as usize,
            SendMode::Gso => (r as usize * SEGS).min(n),
        };
        Ok(sent as u64)
    }
}

fn sender(
    sock: UdpSocket,
    mode: SendMode,
    total: u64,
    flow: Flow,
    shared: &Shared,
) -> io::Result<SenderStats> {
    let fd = sock.as_raw_fd();
    let mut out = Blaster::new(&sock, mode)?;
    let started = Instant::now();
    let cpu0 = common::thread_cpu_time();
    let (mut sent, mut slack, mut calls) = (0u64, 0u64, 0u64);
    let mut waited = Duration::ZERO;
    let (window, cycle) = match flow {
        Flow::Window(w) => (w, 0),
        Flow::Drain(c) => (0, c),
    };
    while sent < total {
        if cycle > 0 && sent % cycle == 0 && sent > 0 {
            // Drain cycles: wait until the receiver has counted all of the last cycle.
            let t0 = Instant::now();
            let mut last = shared.received.load(Ordering::Acquire);
            let mut last_change = t0;
            while last + slack < sent {
                thread::sleep(drain::POLL);
                let r = shared.received.load(Ordering::Acquire);
                if r != last {
                    (last, last_change) = (r, Instant::now());
                } else if last_change.elapsed() > drain::STALL {
                    // The datagrams in flight were lost: stop waiting for them.
                    slack = sent - r;
                }
            }
            waited += t0.elapsed();
        }
        let mut n = out.max_batch().min(total - sent);
        if window > 0 {
            let room = |received: u64, slack: u64| (received + slack + window).saturating_sub(sent);
            // Send whole batches only: wait until one fits in the window.
            let want = n.min(window);
            if room(shared.received.load(Ordering::Relaxed), slack) < want {
                let t0 = Instant::now();
                let mut last = shared.received.load(Ordering::Relaxed);
                let mut last_change = t0;
                loop {
                    // Sleep rather than spin: the queue holds far more than a sleep's
                    // worth of datagrams, and a spinning sender would take a CPU the
                    // machine's other work then takes from the receiver.
                    thread::sleep(WAIT_SLEEP);
                    let r = shared.received.load(Ordering::Relaxed);
                    if room(r, slack) >= want {
                        break;
                    }
                    if r != last {
                        (last, last_change) = (r, Instant::now());
                    } else if last_change.elapsed() > STALL {
                        // The datagrams in flight were lost: stop waiting for them.
                        slack = sent - r;
                        break;
                    }
                }
                waited += t0.elapsed();
            }
            n = n.min(room(shared.received.load(Ordering::Relaxed), slack).max(want));
        }
        if cycle > 0 {
            // Never past the end of the cycle being filled.
            n = n.min(cycle - sent % cycle);
        }
        match out.send(n) {
            Ok(k) => {
                sent += k;
                calls += 1;
                if cycle > 0 && (sent % cycle == 0 || sent == total) {
                    shared.filled.store(sent, Ordering::Release);
                }
            }
            Err(e) => match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ENOBUFS | libc::EAGAIN) => thread::yield_now(),
                _ => return Err(e),
            },
        }
    }
    let elapsed = started.elapsed();
    let cpu = common::thread_cpu_time().saturating_sub(cpu0);
    shared.filled.store(u64::MAX, Ordering::Release);
    // End markers until the receiver says it has stopped (errors ignored: once the
    // receiver's socket is closed, loopback answers with ECONNREFUSED).
    while !shared.done.load(Ordering::Acquire) {
        // SAFETY: sends 1 byte from static memory.
        unsafe { libc::send(fd, MARKER.as_ptr().cast(), MARKER.len(), 0) };
        let t = Instant::now();
        while !shared.done.load(Ordering::Acquire) && t.elapsed() < Duration::from_millis(2) {
            thread::yield_now();
        }
    }
    Ok(SenderStats {
        sent,
        calls,
        cpu,
        waited,
        elapsed,
    })
}

// ---------------------------------------------------------------------------------------
// Sockets.

/// Ask for `RCVBUF` bytes of receive buffer (forcing it past `rmem_max` when permitted);
/// returns the effective size the kernel reports.
fn size_rcvbuf(sock: &UdpSocket) -> usize {
    let fd = sock.as_raw_fd();
    let set = |opt: libc::c_int| {
        let v = RCVBUF as libc::c_int;
        // SAFETY: setsockopt reads one c_int from a live local.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    set(libc::SO_RCVBUF);
    if rcvbuf(sock) < RCVBUF {
        set(libc::SO_RCVBUFFORCE); // needs CAP_NET_ADMIN; harmless if refused
    }
    rcvbuf(sock)
}

fn rcvbuf(sock: &UdpSocket) -> usize {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes one c_int into a live local.
    unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    v.max(0) as usize
}

/// The receiver (bound, non-blocking, large receive buffer) and the sender (blocking,
/// connected to the receiver).
fn socket_pair() -> io::Result<(UdpSocket, UdpSocket)> {
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    size_rcvbuf(&rx);
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    rx.set_nonblocking(true)?;
    Ok((rx, tx))
}

/// How many of our datagrams the receiver's queue holds before it drops: fill an unread
/// socket and count what can be read back. Also checks that the path works.
fn queue_capacity(mode: SendMode) -> io::Result<(usize, u64)> {
    let (rx, tx) = socket_pair()?;
    let mut out = Blaster::new(&tx, mode)?;
    let mut sent = 0;
    while sent < 32_768 {
        sent += out.send(out.max_batch())?;
    }
    let mut buf = [0u8; 64];
    let mut n = 0u64;
    loop {
        match rx.recv(&mut buf) {
            Ok(k) if buf[..k] == *DATAGRAM => n += 1,
            Ok(k) => return Err(io::Error::other(format!("got a {k}-byte datagram"))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return Err(io::Error::other("no datagram arrived"));
    }
    Ok((rcvbuf(&rx), n))
}

// ---------------------------------------------------------------------------------------
// One measurement.

fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let (rx_sock, tx_sock) = socket_pair().map_err(|e| format!("setup: {e}"))?;
    let rx_addr = rx_sock.local_addr().map_err(|e| format!("setup: {e}"))?;
    let (warmup, total) = (w.warmup, w.warmup + w.timed);
    let (flow, mode) = (w.flow, w.mode);
    let cycle = match flow {
        Flow::Drain(c) => c,
        Flow::Window(_) => 0,
    };
    let shared = Arc::new(Shared {
        received: AtomicU64::new(0),
        done: AtomicBool::new(false),
        filled: AtomicU64::new(0),
    });
    watchdog::arm(MEASUREMENT_LIMIT);
    let (cpu_tx, cpu_rx) = common::net::pin_plan();
    let sh = shared.clone();
    let receiver = thread::Builder::new()
        .name("pummel-receiver".into())
        .spawn(move || {
            sys::pin_to("udp_pummel", cpu_rx);
            let rx = std::rc::Rc::new(Rx::new(warmup, total, cycle, sh.clone()));
            match v {
                Variant::Common(CommonVariant::XevIoUring) => {
                    xev_side::receive(Backend::IoUring, rx_sock, &rx)
                }
                Variant::Common(CommonVariant::XevEpoll) => {
                    xev_side::receive(Backend::Epoll, rx_sock, &rx)
                }
                Variant::Common(CommonVariant::XevAsyncIoUring) => {
                    xev_async_side::receive(Backend::IoUring, rx_sock, &rx)
                }
                Variant::Common(CommonVariant::XevAsyncEpoll) => {
                    xev_async_side::receive(Backend::Epoll, rx_sock, &rx)
                }
                Variant::Common(CommonVariant::RawIoUring) => raw::receive(rx_sock, &rx),
                Variant::Common(CommonVariant::Tokio) => tokio_side::receive(rx_sock, &rx),
                Variant::XevMultishot => {
                    xev_multishot_side::receive(Backend::IoUring, rx_sock, &rx)
                }
                Variant::RawMultishot => raw_multishot::receive(rx_sock, &rx),
                Variant::RawEpoll => raw_epoll::receive(rx_sock, &rx),
            }
            // The socket is closed by now; let the sender stop sending markers.
            sh.done.store(true, Ordering::Release);
            rx.marks()
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let sh = shared.clone();
    let sender = thread::Builder::new()
        .name("pummel-sender".into())
        .spawn(move || {
            sys::pin_to("udp_pummel", cpu_tx);
            let r = sender(tx_sock, mode, total, flow, &sh);
            if r.is_err() {
                // Nothing more will come: release a receiver waiting for a fill, and stop
                // it with end markers.
                sh.filled.store(u64::MAX, Ordering::Release);
                if let Ok(s) = UdpSocket::bind("127.0.0.1:0") {
                    while !sh.done.load(Ordering::Acquire) {
                        let _ = s.send_to(MARKER, rx_addr);
                        thread::sleep(Duration::from_millis(2));
                    }
                }
            }
            r
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let stats = sender
        .join()
        .map_err(|_| "sender thread panicked".to_string())?;
    let marks = receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_string())?;
    watchdog::disarm();
    let stats = stats.map_err(|e| format!("sender: {e}"))?;
    let (a, b, blocked) = marks?;
    let n = (b.count - a.count) as f64;
    // Drain cycles: the waits at cycle boundaries are not the receiver's work.
    let secs = (b.at - a.at).saturating_sub(blocked.wall).as_secs_f64();
    let cpu = b
        .cpu
        .saturating_sub(a.cpu)
        .saturating_sub(blocked.cpu)
        .as_secs_f64();
    let sched = a.sched.until(b.sched);
    let sched = Sched {
        run: sched.run.saturating_sub(blocked.sched.run),
        wait: sched.wait.saturating_sub(blocked.sched.wait),
        slices: sched.slices.saturating_sub(blocked.sched.slices),
    };
    Ok(Sample {
        per_sec: n / secs,
        lost: stats.sent.saturating_sub(b.count),
        allocs: b.allocs - a.allocs,
        allocs_per_dgram: (b.allocs - a.allocs) as f64 / n,
        rx_cpu_ns: cpu * 1e9 / n,
        rx_busy: cpu / secs,
        sender_wait: stats.waited.as_secs_f64() / stats.elapsed.as_secs_f64(),
        rx_queued: sched.wait.as_secs_f64() / secs,
        rx_slices_per_k: sched.slices as f64 * 1000.0 / n,
        per_send: stats.sent as f64 / stats.calls.max(1) as f64,
        tx_cpu_ns: stats.cpu.as_secs_f64() * 1e9 / stats.sent.max(1) as f64,
    })
}

// ---------------------------------------------------------------------------------------
// Report.

fn header(quick: bool, capacity: Option<(usize, u64)>, mode: SendMode, flow: Flow) {
    common::net::header(
        "udp_pummel",
        "udp_pummel: loopback UDP, one blocking sender thread, one receiver loop thread \
         (only the receiver differs)",
        quick,
        ENTRIES,
    );
    match capacity {
        Some((bytes, n)) => println!(
            "receiver SO_RCVBUF (effective): {bytes} bytes = {n} queued {}-byte datagrams   \
             flow control: {}",
            DATAGRAM.len(),
            match flow {
                Flow::Drain(c) => format!(
                    "drain cycles of {c} datagrams (XEV_BENCH_FLOW=drain; only the drains \
                     are timed)"
                ),
                Flow::Window(0) => "off (XEV_BENCH_FLOW=window XEV_BENCH_WINDOW=0)".to_string(),
                Flow::Window(w) => format!("window of {w} datagrams (XEV_BENCH_FLOW=window)"),
            }
        ),
        None => println!("receiver queue capacity: not measured"),
    }
    println!("sender: one blocking std socket, {}", mode.describe());
}

fn table(w: &Workload, variants: &[Variant], samples: &[Vec<Sample>], rounds: usize) {
    println!();
    println!(
        "== udp_pummel 1v1: {}-byte datagrams, {} timed datagrams per run (+{} warm-up), \
         {} round(s) ==",
        DATAGRAM.len(),
        w.timed,
        w.warmup,
        rounds
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        if s.is_empty() {
            return None;
        }
        let m = |f: fn(&Sample) -> f64| common::median(s.iter().map(f).collect());
        Some(Sample {
            per_sec: m(|x| x.per_sec),
            lost: s.iter().map(|x| x.lost).max().unwrap_or(0),
            allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
            allocs_per_dgram: s.iter().map(|x| x.allocs_per_dgram).fold(0.0, f64::max),
            rx_cpu_ns: m(|x| x.rx_cpu_ns),
            rx_busy: m(|x| x.rx_busy),
            sender_wait: m(|x| x.sender_wait),
            rx_queued: m(|x| x.rx_queued),
            rx_slices_per_k: m(|x| x.rx_slices_per_k),
            per_send: m(|x| x.per_send),
            tx_cpu_ns: m(|x| x.tx_cpu_ns),
        })
    };
    let find = |want: Variant| variants.iter().position(|&v| v == want).and_then(med);
    let reference = find(Variant::Common(CommonVariant::RawIoUring));
    let tokio = find(Variant::Common(CommonVariant::Tokio));
    println!(
        "{:<22} {:>13} {:>16} {:>9} {:>10} {:>18} {:>12} {:>15} {:>8} {:>9} {:>7} {:>11} {:>15} {:>14} {:>11}",
        "variant",
        "datagrams/s",
        "vs raw io_uring",
        "vs tokio",
        "lost (max)",
        "allocs/dgram (max)",
        "allocs (max)",
        "rx cpu ns/dgram",
        "rx busy",
        "rx queued",
        "rx idle",
        "rx runs/1k",
        "tx cpu ns/dgram",
        "sender waited",
        "dgrams/send"
    );
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => println!(
                "{:<22} {:>13.0} {:>16} {:>9} {:>10} {:>18.4} {:>12} {:>15.0} {:>7.0}% {:>8.0}% {:>6.0}% {:>11.1} {:>15.0} {:>13.0}% {:>11.1}",
                v.name(),
                s.per_sec,
                ratio(s.per_sec, reference.map(|r| r.per_sec)),
                ratio(s.per_sec, tokio.map(|t| t.per_sec)),
                s.lost,
                s.allocs_per_dgram,
                s.allocs,
                s.rx_cpu_ns,
                s.rx_busy * 100.0,
                s.rx_queued * 100.0,
                s.rx_idle() * 100.0,
                s.rx_slices_per_k,
                s.tx_cpu_ns,
                s.sender_wait * 100.0,
                s.per_send
            ),
            None => println!("{:<22} {:>13}", v.name(), "failed"),
        }
    }
    per_round_line(
        "datagrams/s",
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
    );
    per_round_line(
        "receiver CPU ns/datagram",
        0,
        variants
            .iter()
            .zip(samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.rx_cpu_ns).collect())),
    );
    if let Some(t) = tokio {
        for (i, v) in variants.iter().enumerate() {
            if let Some(s) = med(i).filter(|_| v.is_xev()) {
                ratio_target(v.name(), "tokio current_thread", s.per_sec / t.per_sec, 1.0);
                let reference = v.single_shot_reference();
                if let Some((r, raw)) = reference.and_then(|r| Some((r, find(r)?))) {
                    if s.per_sec < t.per_sec {
                        single_shot_cause(v.name(), &s, r.name(), &raw, &t);
                    }
                }
            }
        }
        if let Some(s) = find(Variant::XevMultishot) {
            let q = s.per_sec / t.per_sec;
            ratio_target(Variant::MULTISHOT, "1.2x tokio current_thread", q, 1.2);
            // The same comparison on the receivers' own CPU time, which other work on
            // the machine does not change.
            let capacity = t.rx_cpu_ns / s.rx_cpu_ns;
            ratio_target(
                &format!(
                    "{} receiver capacity ({:.0} datagrams per receiver CPU-second; tokio {:.0})",
                    Variant::MULTISHOT,
                    1e9 / s.rx_cpu_ns,
                    1e9 / t.rx_cpu_ns
                ),
                "1.2x tokio current_thread",
                capacity,
                1.2,
            );
            if q < 1.2 || capacity < 1.2 {
                println!("  measured cause: {}", cause(&s, &t, capacity));
            }
            let rounds = |want: Variant| {
                let i = variants.iter().position(|&v| v == want)?;
                Some(samples[i].as_slice())
            };
            let t_rounds = rounds(Variant::Common(CommonVariant::Tokio));
            let paired = |want: Variant| {
                common::report::round_by_round(
                    (rounds(want)?, t_rounds?),
                    |x: &Sample| x.per_sec,
                    |x: &Sample| x.rx_cpu_ns,
                    1.2,
                    "receiver cpu/datagram",
                )
            };
            if let Some(line) = paired(Variant::XevMultishot) {
                println!("  {line}");
            }
            if let Some(raw) = find(Variant::RawMultishot) {
                raw_multishot_ceiling(&s, &raw, &t, 1.2);
                if let Some(line) = paired(Variant::RawMultishot) {
                    println!("  the raw multishot loop vs tokio, {line}");
                }
            }
        }
    }
    for (i, v) in variants.iter().enumerate() {
        if let Some(s) = med(i).filter(|_| v.is_xev()) {
            target(
                format_args!(
                    "{} allocations per datagram after warm-up = 0: {}",
                    v.name(),
                    s.allocs
                ),
                s.allocs == 0,
            );
        }
    }
}

/// Why the single-shot receiver `name` (`s`) is under tokio `t`: its raw reference `raw`
/// (named `raw_name`: the same system calls per datagram, no loop around them) against
/// tokio is the kernel's part, `s` against `raw` xev's own.
fn single_shot_cause(name: &str, s: &Sample, raw_name: &str, raw: &Sample, t: &Sample) {
    let rate = raw.per_sec / t.per_sec;
    let own = s.per_sec / raw.per_sec;
    println!(
        "  {raw_name}: {rate:.3}x tokio (receiver CPU {:.0} vs {:.0} ns per datagram); {name} \
         is {own:.3}x the raw loop ({:.0} ns)",
        raw.rx_cpu_ns, t.rx_cpu_ns, s.rx_cpu_ns
    );
    if rate < 1.0 {
        println!(
            "  measured cause: the kernel. The raw loop reaches {rate:.3}x tokio: receiving \
             this way costs more in the kernel than tokio's recvfrom{}",
            if own < 0.95 {
                format!("; xev's own part on top: {own:.3}x the raw loop")
            } else {
                String::new()
            }
        );
    } else {
        println!("  xev's own part: the raw loop reaches {rate:.3}x tokio, {name} {own:.3}x of it");
    }
}

/// The raw multishot loop `raw` (the same kernel work, no loop around it) against tokio
/// `t`, and xev's multishot receiver `s` against it: when even the raw loop is under
/// `min` times tokio, the target is beyond what multishot receives give on this kernel.
fn raw_multishot_ceiling(s: &Sample, raw: &Sample, t: &Sample, min: f64) {
    let (rate, capacity) = (raw.per_sec / t.per_sec, t.rx_cpu_ns / raw.rx_cpu_ns);
    println!(
        "  raw multishot reference: {rate:.3}x tokio (rate), capacity {capacity:.3}x ({:.0} ns \
         per datagram); xev multishot is {:.3}x the raw loop's rate, {:.3}x its capacity",
        raw.rx_cpu_ns,
        s.per_sec / raw.per_sec,
        raw.rx_cpu_ns / s.rx_cpu_ns
    );
    if s.per_sec / t.per_sec >= min && t.rx_cpu_ns / s.rx_cpu_ns >= min {
        return;
    }
    if rate < min && capacity < min {
        println!(
            "  measured cause: the kernel. The raw multishot loop reaches {rate:.3}x tokio's \
             rate and {capacity:.3}x its capacity, under {min}x: the target asks more than \
             multishot receives give on this kernel"
        );
    } else {
        println!(
            "  xev's own part: the raw multishot loop reaches {rate:.3}x tokio's rate and \
             {capacity:.3}x its capacity"
        );
    }
}

/// Why the multishot receiver's rate `s` is under 1.2x tokio's `t`, from the figures.
fn cause(s: &Sample, t: &Sample, capacity: f64) -> String {
    let mut why = Vec::new();
    if s.lost > 0 || t.lost > 0 {
        why.push(format!(
            "datagrams lost (multishot {}, tokio {})",
            s.lost, t.lost
        ));
    }
    if s.rx_idle() > 0.05 || t.rx_idle() > 0.05 {
        why.push(format!(
            "receivers starved (idle multishot {:.0}%, tokio {:.0}%; the sender costs {:.0} \
             ns of CPU per datagram, the receivers {:.0} / {:.0}): the sender bounds the rate",
            s.rx_idle() * 100.0,
            t.rx_idle() * 100.0,
            s.tx_cpu_ns,
            s.rx_cpu_ns,
            t.rx_cpu_ns
        ));
    }
    if s.rx_queued > 0.05 || t.rx_queued > 0.05 {
        why.push(format!(
            "receivers runnable but off their CPU (multishot {:.0}%, tokio {:.0}% of the timed \
             time: other work on the machine)",
            s.rx_queued * 100.0,
            t.rx_queued * 100.0
        ));
    }
    if capacity < 1.2 {
        why.push(format!(
            "receiver CPU per datagram only {capacity:.3}x lower ({:.0} vs {:.0} ns)",
            s.rx_cpu_ns, t.rx_cpu_ns
        ));
    } else {
        why.push(format!(
            "on CPU time the receivers compare at {capacity:.3}x ({:.0} vs {:.0} ns per datagram)",
            s.rx_cpu_ns, t.rx_cpu_ns
        ));
    }
    why.join("; ")
}

fn env_u64(var: &str) -> Option<u64> {
    std::env::var(var).ok().and_then(|v| v.trim().parse().ok())
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    let mut mode = SendMode::from_env();
    let capacity = match queue_capacity(mode) {
        Ok(c) => Some(c),
        Err(e) if mode == SendMode::Gso => {
            eprintln!("udp_pummel: UDP GSO sender unavailable ({e}); using plain sendmmsg");
            mode = SendMode::Mmsg;
            queue_capacity(mode).ok()
        }
        Err(e) => {
            eprintln!("udp_pummel: measuring the receive queue: {e}");
            None
        }
    };
    let batch = match mode {
        SendMode::Gso => (SEGS * MSGS) as u64,
        SendMode::Mmsg => SEGS as u64,
    };
    let flow = match std::env::var("XEV_BENCH_FLOW").as_deref() {
        Ok("window") => Flow::Window(env_u64("XEV_BENCH_WINDOW").unwrap_or_else(
            || match capacity {
                Some((_, n)) => (n / 2).max(SEGS as u64),
                None => WINDOW,
            },
        )),
        Ok("drain") | Err(_) => Flow::Drain(drain::cycle_len(capacity.map(|c| c.1), batch)),
        Ok(other) => {
            eprintln!("udp_pummel: XEV_BENCH_FLOW={other:?}: expected drain or window");
            std::process::exit(2);
        }
    };
    header(quick, capacity, mode, flow);
    watchdog::start(
        "pummel-watchdog",
        Duration::from_millis(200),
        format!("udp_pummel: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting"),
    );
    let (rounds, mut timed, warmup) = if quick {
        (1, 20_000, 5_000)
    } else {
        // 5 rounds: the multishot target line prints its spread round by round, and
        // this VM's slow phases can move a median of 3.
        (5, 1_000_000, 50_000)
    };
    if let Some(n) = env_u64("XEV_BENCH_DATAGRAMS") {
        timed = n;
    }
    let rounds = env_u64("XEV_BENCH_ROUNDS").map_or(rounds, |n| n.max(1) as usize);
    let (mut warmup, mut timed) = (warmup, timed);
    if let Flow::Drain(cycle) = flow {
        // The timed section starts and ends at cycle boundaries.
        warmup = drain::whole_cycles(warmup, cycle);
        timed = drain::whole_cycles(timed, cycle);
    }
    let w = Workload {
        mode,
        warmup,
        timed,
        flow,
    };
    let variants = Variant::selected();
    let mut failed = false;
    let samples = common::report::interleaved(
        rounds,
        &variants,
        &mut failed,
        |v| measure(v, &w),
        |v| format!("udp_pummel: {}", v.name()),
    );
    table(&w, &variants, &samples, rounds);
    common::report::finish("total wall time", started, failed);
}
