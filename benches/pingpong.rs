//! Ping-pong over loopback TCP, after libxev's `src/bench/ping-pongs.zig`.
//!
//! A client thread and a server thread each run their own event loop. The client sends a
//! message, the server echoes the bytes back, and the client sends the next message when
//! the whole reply has arrived. Two workloads:
//!
//! - 1 connection, `"PING\n"` (5 bytes), 500,000 round trips;
//! - 100 connections at once, 64-byte messages, 500,000 round trips in total.
//!
//! Variants, measured in the same process and interleaved (A B C D A B C D ...):
//!
//! 1. xev on io_uring (callback API);
//! 2. xev on epoll (callback API);
//! 3. a raw io_uring loop written directly on the `io-uring` crate (the reference);
//! 4. tokio, one `current_thread` runtime per thread.
//!
//! Each run: fresh sockets (connection setup is not timed), a warm-up, then the timed
//! section, over which the process-wide allocation counter and CPU time are read.
//! `XEV_BENCH_QUICK=1` runs 2,000 round trips per variant once (CI smoke run).
//!
//! For profiling: `XEV_BENCH_ONLY=epoll,tokio` (variants whose name contains a word),
//! `XEV_BENCH_CONNS=1|100` (one workload), `XEV_BENCH_ROUND_TRIPS=N` (timed round trips
//! per run), `XEV_BENCH_PIN=none|same|split` (both threads on CPU 0, or client on CPU 0
//! and server on CPU 1; default: let the scheduler place them).
//!
//! Run with `cargo bench --bench pingpong`.

mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use xev::{
    Backend, Buffer, CallbackAction, Completion, CompletionState, Loop, Op, OpResult, Options,
    ReadError, RunMode,
};

/// Size of every receive buffer (and of the server's echo buffers).
const RECV_BUF: usize = 4096;
/// io_uring entries, for xev (its default) and the raw reference alike.
const ENTRIES: u32 = 256;
/// A single measurement that takes longer than this is a hang: the process exits.
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(300);

const PING: &[u8] = b"PING\n";
const MSG64: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n";

#[derive(Clone, Copy)]
struct Workload {
    title: &'static str,
    conns: usize,
    msg: &'static [u8],
    warmup: u64,
    timed: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    RawIoUring,
    Tokio,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev io_uring",
            Variant::XevEpoll => "xev epoll",
            Variant::RawIoUring => "raw io_uring (ref)",
            Variant::Tokio => "tokio current_thread",
        }
    }
}

/// One measurement's figures.
#[derive(Clone, Copy)]
struct Sample {
    per_sec: f64,
    /// Allocations (all threads) during the timed section.
    allocs: u64,
    allocs_per_rt: f64,
    cpu_us_per_rt: f64,
}

// ---------------------------------------------------------------------------------------
// Round-trip accounting shared by every client implementation (one per client thread).

#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    allocs: u64,
    cpu: Duration,
}

impl Mark {
    fn now() -> Mark {
        // Read the counters before the clock on the way in and after it on the way out
        // would be marginally tighter; the difference is one getrusage call.
        Mark {
            at: Instant::now(),
            allocs: common::allocations(),
            cpu: common::cpu_time(),
        }
    }
}

/// Counts round trips across all connections of one client: `claim` before sending,
/// `complete` when the whole reply is in. Marks the timed section's start when `warmup`
/// round trips are done and its end when all `total` are.
struct Counter {
    warmup: u64,
    total: u64,
    sent: Cell<u64>,
    done: Cell<u64>,
    start: Cell<Option<Mark>>,
    end: Cell<Option<Mark>>,
    error: RefCell<Option<String>>,
}

impl Counter {
    fn new(warmup: u64, total: u64) -> Counter {
        Counter {
            warmup,
            total,
            sent: Cell::new(0),
            done: Cell::new(0),
            start: Cell::new(None),
            end: Cell::new(None),
            error: RefCell::new(None),
        }
    }

    /// Take the right to send one more message; false when all are spoken for.
    fn claim(&self) -> bool {
        let s = self.sent.get();
        if s < self.total {
            self.sent.set(s + 1);
            true
        } else {
            false
        }
    }

    fn complete(&self) {
        let d = self.done.get() + 1;
        self.done.set(d);
        if d == self.warmup {
            self.start.set(Some(Mark::now()));
        }
        if d == self.total {
            self.end.set(Some(Mark::now()));
        }
    }

    fn fail(&self, what: String) {
        self.error.borrow_mut().get_or_insert(what);
    }

    fn marks(&self) -> Result<(Mark, Mark), String> {
        if let Some(e) = self.error.borrow().clone() {
            return Err(e);
        }
        match (self.start.get(), self.end.get()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!(
                "client stopped after {} of {} round trips",
                self.done.get(),
                self.total
            )),
        }
    }
}

/// Drop the first `n` bytes of a send buffer after a short send.
fn advance(buf: &mut Buffer, n: usize) {
    let len = buf.len();
    buf.as_mut_slice().copy_within(n..len, 0);
    buf.set_len(len - n);
}

// ---------------------------------------------------------------------------------------
// xev, callback API. Per connection: one recv completion that always rearms, and one
// persistent send completion that the recv callback re-adds (its op and callback are set
// once; only the bytes change on the server).

/// What a client send callback needs (it must not own the send completion: no cycle).
struct XcFlags {
    /// A reply arrived while the previous send was still Active: resend when it finishes.
    want_send: Cell<bool>,
    ctr: Rc<Counter>,
    msg: &'static [u8],
}

/// What a client recv callback needs.
struct XcConn {
    fd: RawFd,
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<XcFlags>,
    got: Cell<usize>,
}

fn xev_client_recv(lp: &mut Loop, r: OpResult, conn: &XcConn) -> CallbackAction {
    let n = match r {
        OpResult::Recv(Ok(n)) => n,
        other => {
            conn.flags.ctr.fail(format!("client recv: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let msg_len = conn.flags.msg.len();
    let mut got = conn.got.get() + n;
    let mut action = CallbackAction::Rearm;
    while got >= msg_len {
        got -= msg_len;
        conn.flags.ctr.complete();
        if conn.flags.ctr.claim() {
            let mut send = conn.send.borrow_mut();
            if send.state() == CompletionState::Dead {
                lp.add(send.as_mut());
            } else {
                conn.flags.want_send.set(true);
            }
        } else {
            action = CallbackAction::Disarm;
        }
    }
    conn.got.set(got);
    action
}

fn xev_client_sent(mut c: Pin<&mut Completion>, r: OpResult, f: &XcFlags) -> CallbackAction {
    let n = match r {
        OpResult::Send(Ok(n)) => n,
        other => {
            f.ctr.fail(format!("client send: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let buf = c
        .as_mut()
        .op_mut()
        .and_then(Op::buffer_mut)
        .expect("send buffer");
    if n < buf.len() {
        advance(buf, n);
        return CallbackAction::Rearm;
    }
    if buf.len() != f.msg.len() {
        // Restore the message after a short send (never allocates: within capacity).
        buf.set_len(f.msg.len());
        buf.as_mut_slice().copy_from_slice(f.msg);
    }
    if f.want_send.replace(false) {
        CallbackAction::Rearm
    } else {
        CallbackAction::Disarm
    }
}

fn xev_client(backend: Backend, socks: &[TcpStream], ctr: &Rc<Counter>, msg: &'static [u8]) {
    // Declared before the loop so that they are dropped after it (the loop's drop leaves
    // every completion Dead).
    let mut recvs: Vec<Pin<Box<Completion>>> = Vec::with_capacity(socks.len());
    let mut conns: Vec<Rc<XcConn>> = Vec::with_capacity(socks.len());
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return ctr.fail(format!("Loop::new: {e}")),
    };
    for s in socks {
        let fd = s.as_raw_fd();
        let flags = Rc::new(XcFlags {
            want_send: Cell::new(false),
            ctr: ctr.clone(),
            msg,
        });
        let mut send = Box::pin(Completion::new());
        let f = flags.clone();
        send.as_mut().prep(
            Op::Send {
                fd,
                buf: Buffer::from(msg.to_vec()),
            },
            move |_lp, c, r| xev_client_sent(c, r, &f),
        );
        conns.push(Rc::new(XcConn {
            fd,
            send: RefCell::new(send),
            flags,
            got: Cell::new(0),
        }));
        recvs.push(Box::pin(Completion::new()));
    }
    for (conn, recv) in conns.iter().zip(recvs.iter_mut()) {
        if !ctr.claim() {
            break;
        }
        lp.add(conn.send.borrow_mut().as_mut());
        let cc = conn.clone();
        lp.start(
            recv.as_mut(),
            Op::Recv {
                fd: conn.fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |lp, _c, r| xev_client_recv(lp, r, &cc),
        );
    }
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("client run: {e}"));
    }
    drop(lp);
}

/// What a server send callback needs.
struct XsFlags {
    /// Bytes received while the echo send was still Active (never in steady state).
    pending: RefCell<Vec<u8>>,
    ctr: Rc<Counter>,
}

struct XsConn {
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<XsFlags>,
}

fn xev_server_recv(
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: OpResult,
    conn: &XsConn,
) -> CallbackAction {
    let n = match r {
        OpResult::Recv(Ok(n)) => n,
        OpResult::Recv(Err(ReadError::Eof)) => return CallbackAction::Disarm,
        other => {
            conn.flags.ctr.fail(format!("server recv: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let data = &c.buffer().expect("recv buffer").as_slice()[..n];
    let mut send = conn.send.borrow_mut();
    if send.state() == CompletionState::Dead {
        let buf = send
            .as_mut()
            .op_mut()
            .and_then(Op::buffer_mut)
            .expect("send buffer");
        buf.set_len(n);
        buf.as_mut_slice().copy_from_slice(data);
        lp.add(send.as_mut());
    } else {
        conn.flags.pending.borrow_mut().extend_from_slice(data);
    }
    CallbackAction::Rearm
}

fn xev_server_sent(mut c: Pin<&mut Completion>, r: OpResult, f: &XsFlags) -> CallbackAction {
    let n = match r {
        OpResult::Send(Ok(n)) => n,
        other => {
            f.ctr.fail(format!("server send: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let buf = c
        .as_mut()
        .op_mut()
        .and_then(Op::buffer_mut)
        .expect("send buffer");
    if n < buf.len() {
        advance(buf, n);
        return CallbackAction::Rearm;
    }
    let mut pending = f.pending.borrow_mut();
    if pending.is_empty() {
        return CallbackAction::Disarm;
    }
    let k = pending.len().min(RECV_BUF);
    buf.set_len(k);
    buf.as_mut_slice().copy_from_slice(&pending[..k]);
    pending.drain(..k);
    CallbackAction::Rearm
}

fn xev_server(backend: Backend, socks: &[TcpStream], ctr: &Rc<Counter>) {
    let mut recvs: Vec<Pin<Box<Completion>>> = Vec::with_capacity(socks.len());
    let mut conns: Vec<Rc<XsConn>> = Vec::with_capacity(socks.len());
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return ctr.fail(format!("Loop::new: {e}")),
    };
    for s in socks {
        let fd = s.as_raw_fd();
        let flags = Rc::new(XsFlags {
            pending: RefCell::new(Vec::with_capacity(RECV_BUF)),
            ctr: ctr.clone(),
        });
        let mut send = Box::pin(Completion::new());
        let f = flags.clone();
        send.as_mut().prep(
            Op::Send {
                fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |_lp, c, r| xev_server_sent(c, r, &f),
        );
        let conn = Rc::new(XsConn {
            send: RefCell::new(send),
            flags,
        });
        let mut recv = Box::pin(Completion::new());
        let cc = conn.clone();
        lp.start(
            recv.as_mut(),
            Op::Recv {
                fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |lp, c, r| xev_server_recv(lp, c, r, &cc),
        );
        recvs.push(recv);
        conns.push(conn);
    }
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("server run: {e}"));
    }
    drop(lp);
}

// ---------------------------------------------------------------------------------------
// Raw io_uring reference: one ring per thread, recv/send SQEs tagged with
// (connection << 1 | kind), one submit_and_wait(1) per iteration, CQEs in a batch.

mod raw {
    use super::*;
    use io_uring::{opcode, squeue, types, IoUring};

    const RECV: u64 = 0;
    const SEND: u64 = 1;

    /// The same ring setup xev uses (falling back the same way).
    fn ring() -> io::Result<IoUring> {
        IoUring::builder()
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(ENTRIES)
            .or_else(|_| IoUring::builder().build(ENTRIES))
    }

    struct Conn {
        fd: RawFd,
        rbuf: Box<[u8]>,
        sbuf: Box<[u8]>,
        /// Bytes of `sbuf` being sent, starting at `soff`.
        soff: usize,
        slen: usize,
        send_busy: bool,
        /// Client: resend when the current send finishes. Server: unused.
        want_send: bool,
        /// Server: bytes received while a send was in flight.
        pending: Vec<u8>,
        /// Client: reply bytes received toward the current message.
        got: usize,
    }

    impl Conn {
        fn new(fd: RawFd) -> Conn {
            Conn {
                fd,
                rbuf: vec![0u8; RECV_BUF].into_boxed_slice(),
                sbuf: vec![0u8; RECV_BUF].into_boxed_slice(),
                soff: 0,
                slen: 0,
                send_busy: false,
                want_send: false,
                pending: Vec::with_capacity(RECV_BUF),
                got: 0,
            }
        }

        fn recv_sqe(&mut self, i: usize) -> squeue::Entry {
            opcode::Recv::new(types::Fd(self.fd), self.rbuf.as_mut_ptr(), RECV_BUF as u32)
                .build()
                .user_data((i as u64) << 1 | RECV)
        }

        fn send_sqe(&mut self, i: usize) -> squeue::Entry {
            self.send_busy = true;
            let p = self.sbuf[self.soff..].as_ptr();
            opcode::Send::new(types::Fd(self.fd), p, self.slen as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data((i as u64) << 1 | SEND)
        }
    }

    /// Drive the ring until no operation is in flight; `start` and `on_cqe` put the SQEs
    /// to submit into `out`.
    fn run(
        conns: &mut [Conn],
        start: impl FnOnce(&mut [Conn], &mut Vec<squeue::Entry>),
        mut on_cqe: impl FnMut(&mut [Conn], usize, u64, i32, &mut Vec<squeue::Entry>),
    ) -> io::Result<()> {
        let mut ring = ring()?;
        let (submitter, mut sq, mut cq) = ring.split();
        let mut out: Vec<squeue::Entry> = Vec::with_capacity(2 * conns.len() + 2);
        let mut inflight = 0usize;
        start(conns, &mut out);
        loop {
            for e in out.drain(..) {
                // SAFETY: every buffer an SQE points to is a boxed slice in `conns`, which
                // outlives the ring's use here: we only return once nothing is in flight
                // (or on a ring error, after which nothing more is submitted; the buffers
                // are then leaked, see below).
                while unsafe { sq.push(&e) }.is_err() {
                    sq.sync();
                    submitter.submit()?;
                    sq.sync();
                }
                inflight += 1;
            }
            if inflight == 0 {
                return Ok(());
            }
            sq.sync();
            match submitter.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            cq.sync();
            for cqe in &mut cq {
                inflight -= 1;
                let ud = cqe.user_data();
                on_cqe(conns, (ud >> 1) as usize, ud & 1, cqe.result(), &mut out);
            }
            // Publish the consumed head now: a stale head makes the next wait see the
            // entries just processed and return at once (one wasted syscall per tick).
            cq.sync();
        }
    }

    fn finish(conns: Vec<Conn>, r: io::Result<()>, ctr: &Counter, who: &str) {
        if let Err(e) = r {
            ctr.fail(format!("{who} ring: {e}"));
            // Operations may still be in flight in the kernel: never free their buffers.
            std::mem::forget(conns);
        }
    }

    pub(super) fn client(socks: &[TcpStream], ctr: &Counter, msg: &'static [u8]) {
        let mut conns: Vec<Conn> = socks.iter().map(|s| Conn::new(s.as_raw_fd())).collect();
        let r = run(
            &mut conns,
            |conns, out| {
                for (i, c) in conns.iter_mut().enumerate() {
                    if !ctr.claim() {
                        break;
                    }
                    c.sbuf[..msg.len()].copy_from_slice(msg);
                    c.soff = 0;
                    c.slen = msg.len();
                    out.push(c.send_sqe(i));
                    out.push(c.recv_sqe(i));
                }
            },
            |conns, i, kind, res, out| {
                let c = &mut conns[i];
                if kind == SEND {
                    c.send_busy = false;
                    if res < 0 {
                        return ctr.fail(format!("client send: {}", errno(res)));
                    }
                    let n = res as usize;
                    if n < c.slen {
                        c.soff += n;
                        c.slen -= n;
                        out.push(c.send_sqe(i));
                    } else if std::mem::take(&mut c.want_send) {
                        c.soff = 0;
                        c.slen = msg.len();
                        out.push(c.send_sqe(i));
                    }
                    return;
                }
                if res <= 0 {
                    return ctr.fail(format!("client recv: {}", errno(res)));
                }
                c.got += res as usize;
                let mut more = true;
                while c.got >= msg.len() {
                    c.got -= msg.len();
                    ctr.complete();
                    if !ctr.claim() {
                        more = false;
                    } else if c.send_busy {
                        c.want_send = true;
                    } else {
                        c.soff = 0;
                        c.slen = msg.len();
                        out.push(c.send_sqe(i));
                    }
                }
                if more || c.got > 0 {
                    out.push(c.recv_sqe(i));
                }
            },
        );
        finish(conns, r, ctr, "client");
    }

    pub(super) fn server(socks: &[TcpStream], ctr: &Counter) {
        let mut conns: Vec<Conn> = socks.iter().map(|s| Conn::new(s.as_raw_fd())).collect();
        let r = run(
            &mut conns,
            |conns, out| {
                for (i, c) in conns.iter_mut().enumerate() {
                    out.push(c.recv_sqe(i));
                }
            },
            |conns, i, kind, res, out| {
                let c = &mut conns[i];
                if kind == SEND {
                    c.send_busy = false;
                    if res < 0 {
                        return ctr.fail(format!("server send: {}", errno(res)));
                    }
                    let n = res as usize;
                    if n < c.slen {
                        c.soff += n;
                        c.slen -= n;
                        out.push(c.send_sqe(i));
                    } else if !c.pending.is_empty() {
                        let k = c.pending.len().min(RECV_BUF);
                        c.sbuf[..k].copy_from_slice(&c.pending[..k]);
                        c.pending.drain(..k);
                        c.soff = 0;
                        c.slen = k;
                        out.push(c.send_sqe(i));
                    }
                    return;
                }
                if res == 0 {
                    return; // EOF: the client is done.
                }
                if res < 0 {
                    return ctr.fail(format!("server recv: {}", errno(res)));
                }
                let n = res as usize;
                if c.send_busy {
                    let Conn { pending, rbuf, .. } = c;
                    pending.extend_from_slice(&rbuf[..n]);
                } else {
                    let Conn { sbuf, rbuf, .. } = c;
                    sbuf[..n].copy_from_slice(&rbuf[..n]);
                    c.soff = 0;
                    c.slen = n;
                    out.push(c.send_sqe(i));
                }
                out.push(c.recv_sqe(i));
            },
        );
        finish(conns, r, ctr, "server");
    }

    fn errno(res: i32) -> String {
        if res == 0 {
            "end of file".into()
        } else {
            io::Error::from_raw_os_error(-res).to_string()
        }
    }
}

// ---------------------------------------------------------------------------------------
// tokio: one current_thread runtime per thread, one local task per connection.

fn tokio_run<F: std::future::Future<Output = ()>>(ctr: &Counter, f: impl FnOnce() -> F) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ctr.fail(format!("tokio runtime: {e}")),
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, f());
}

fn tokio_client(socks: Vec<TcpStream>, ctr: &Rc<Counter>, msg: &'static [u8]) {
    tokio_run(ctr, || async move {
        let mut tasks = Vec::with_capacity(socks.len());
        for s in socks {
            let ctr = ctr.clone();
            tasks.push(tokio::task::spawn_local(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = match tokio::net::TcpStream::from_std(s) {
                    Ok(s) => s,
                    Err(e) => return ctr.fail(format!("from_std: {e}")),
                };
                let mut buf = [0u8; RECV_BUF];
                let mut got = 0;
                while ctr.claim() {
                    if let Err(e) = s.write_all(msg).await {
                        return ctr.fail(format!("client write: {e}"));
                    }
                    while got < msg.len() {
                        match s.read(&mut buf).await {
                            Ok(0) => return ctr.fail("client read: end of file".into()),
                            Ok(n) => got += n,
                            Err(e) => return ctr.fail(format!("client read: {e}")),
                        }
                    }
                    got -= msg.len();
                    ctr.complete();
                }
            }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                ctr.fail(format!("client task: {e}"));
            }
        }
    });
}

fn tokio_server(socks: Vec<TcpStream>, ctr: &Rc<Counter>) {
    tokio_run(ctr, || async move {
        let mut tasks = Vec::with_capacity(socks.len());
        for s in socks {
            let ctr = ctr.clone();
            tasks.push(tokio::task::spawn_local(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = match tokio::net::TcpStream::from_std(s) {
                    Ok(s) => s,
                    Err(e) => return ctr.fail(format!("from_std: {e}")),
                };
                let mut buf = [0u8; RECV_BUF];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) => return ctr.fail(format!("server read: {e}")),
                    };
                    if let Err(e) = s.write_all(&buf[..n]).await {
                        return ctr.fail(format!("server write: {e}"));
                    }
                }
            }));
        }
        for t in tasks {
            if let Err(e) = t.await {
                ctr.fail(format!("server task: {e}"));
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// One measurement.

/// `n` connected loopback pairs: (client ends, server ends), non-blocking, no Nagle.
fn socket_pairs(n: usize) -> io::Result<(Vec<TcpStream>, Vec<TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for _ in 0..n {
        let c = TcpStream::connect(addr)?;
        let (s, _) = listener.accept()?;
        for x in [&c, &s] {
            x.set_nodelay(true)?;
            x.set_nonblocking(true)?;
        }
        clients.push(c);
        servers.push(s);
    }
    Ok((clients, servers))
}

/// Check the echo path with blocking I/O before the loops take over (catches a broken
/// setup early instead of as a hang).
fn sanity_check(c: &TcpStream, s: &TcpStream) -> io::Result<()> {
    for x in [c, s] {
        x.set_nonblocking(false)?;
    }
    (&*c).write_all(b"x")?;
    let mut b = [0u8; 1];
    (&*s).read_exact(&mut b)?;
    (&*s).write_all(&b)?;
    (&*c).read_exact(&mut b)?;
    for x in [c, s] {
        x.set_nonblocking(true)?;
    }
    Ok(())
}

fn measure(v: Variant, w: &Workload) -> Result<Sample, String> {
    let (clients, servers) = socket_pairs(w.conns).map_err(|e| format!("setup: {e}"))?;
    sanity_check(&clients[0], &servers[0]).map_err(|e| format!("setup: {e}"))?;
    let (warmup, total, msg) = (w.warmup, w.warmup + w.timed, w.msg);
    watchdog_arm(MEASUREMENT_LIMIT);
    let (cpu_client, cpu_server) = pin_plan();
    let server = thread::Builder::new()
        .name("pingpong-server".into())
        .spawn(move || {
            pin_to(cpu_server);
            let ctr = Rc::new(Counter::new(0, 0));
            match v {
                Variant::XevIoUring => xev_server(Backend::IoUring, &servers, &ctr),
                Variant::XevEpoll => xev_server(Backend::Epoll, &servers, &ctr),
                Variant::RawIoUring => raw::server(&servers, &ctr),
                Variant::Tokio => tokio_server(servers, &ctr),
            }
            // Sockets (if not moved into tokio) are closed here, when `servers` drops.
            let e = ctr.error.borrow().clone();
            e
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let client = thread::Builder::new()
        .name("pingpong-client".into())
        .spawn(move || {
            pin_to(cpu_client);
            let ctr = Rc::new(Counter::new(warmup, total));
            match v {
                Variant::XevIoUring => xev_client(Backend::IoUring, &clients, &ctr, msg),
                Variant::XevEpoll => xev_client(Backend::Epoll, &clients, &ctr, msg),
                Variant::RawIoUring => raw::client(&clients, &ctr, msg),
                Variant::Tokio => tokio_client(clients, &ctr, msg),
            }
            // The client's sockets are closed by now, so the server sees end of file.
            ctr.marks()
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let marks = client
        .join()
        .map_err(|_| "client thread panicked".to_string())?;
    let server_err = server
        .join()
        .map_err(|_| "server thread panicked".to_string())?;
    watchdog_disarm();
    if let Some(e) = server_err {
        return Err(e);
    }
    let (a, b) = marks?;
    let n = w.timed as f64;
    let secs = (b.at - a.at).as_secs_f64();
    Ok(Sample {
        per_sec: n / secs,
        allocs: b.allocs - a.allocs,
        allocs_per_rt: (b.allocs - a.allocs) as f64 / n,
        cpu_us_per_rt: (b.cpu.saturating_sub(a.cpu)).as_secs_f64() * 1e6 / n,
    })
}

// ---------------------------------------------------------------------------------------
// CPU placement: XEV_BENCH_PIN=none (default) | same (both threads on CPU 0) | split
// (client on CPU 0, server on CPU 1).

fn pin_mode() -> String {
    std::env::var("XEV_BENCH_PIN").unwrap_or_else(|_| "none".into())
}

fn pin_plan() -> (Option<usize>, Option<usize>) {
    match pin_mode().as_str() {
        "same" => (Some(0), Some(0)),
        "split" => (Some(0), Some(1)),
        _ => (None, None),
    }
}

fn pin_to(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: cpu_set_t is plain data; CPU_SET writes inside it; sched_setaffinity(0, ..)
    // applies to the calling thread and only reads the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "pingpong: cannot pin to CPU {cpu}: {}",
                io::Error::last_os_error()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Watchdog: a measurement that hangs ends the process instead of the CI job's time.

static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Milliseconds since EPOCH after which the process exits; 0: no deadline.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);

fn watchdog_start() {
    let epoch = *EPOCH.get_or_init(Instant::now);
    thread::Builder::new()
        .name("pingpong-watchdog".into())
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(200));
            let d = DEADLINE_MS.load(Ordering::Relaxed);
            if d != 0 && epoch.elapsed().as_millis() as u64 > d {
                eprintln!("pingpong: a measurement exceeded {MEASUREMENT_LIMIT:?}; exiting");
                std::process::exit(2);
            }
        })
        .expect("spawn watchdog");
}

fn watchdog_arm(limit: Duration) {
    let now = EPOCH.get_or_init(Instant::now).elapsed();
    DEADLINE_MS.store((now + limit).as_millis() as u64, Ordering::Relaxed);
}

fn watchdog_disarm() {
    DEADLINE_MS.store(0, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------
// Report.

fn header(quick: bool) {
    let argv: Vec<String> = std::env::args().collect();
    let cmd = if quick {
        "XEV_BENCH_QUICK=1 cargo bench --bench pingpong"
    } else {
        "cargo bench --bench pingpong"
    };
    let nproc = thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    println!("pingpong: loopback TCP echo, client and server loops on two threads");
    println!("command: {cmd}");
    println!("argv:    {}", argv.join(" "));
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    println!("nproc: {nproc}   cpu: {cpu}   kernel: {kernel}   loadavg: {load}");
    println!(
        "thread placement (XEV_BENCH_PIN): {}   ring entries: {ENTRIES}",
        pin_mode()
    );
    println!(
        "io_uring available: {}   mode: {}",
        Backend::IoUring.is_available(),
        if quick {
            "quick (1 round)"
        } else {
            "full (median of 3 rounds, variants interleaved)"
        }
    );
}

fn table(w: &Workload, variants: &[Variant], samples: &[Vec<Sample>], rounds: usize) {
    println!();
    println!(
        "== {}: {} connection(s), {}-byte messages, {} timed round trips per run \
         (+{} warm-up), {} round(s) ==",
        w.title,
        w.conns,
        w.msg.len(),
        w.timed,
        w.warmup,
        rounds
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        if s.is_empty() {
            return None;
        }
        Some(Sample {
            per_sec: common::median(s.iter().map(|x| x.per_sec).collect()),
            allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
            allocs_per_rt: s.iter().map(|x| x.allocs_per_rt).fold(0.0, f64::max),
            cpu_us_per_rt: common::median(s.iter().map(|x| x.cpu_us_per_rt).collect()),
        })
    };
    let reference = variants
        .iter()
        .position(|&v| v == Variant::RawIoUring)
        .and_then(med);
    println!(
        "{:<22} {:>14} {:>16} {:>16} {:>14} {:>10}",
        "variant",
        "round trips/s",
        "vs raw io_uring",
        "allocs/rt (max)",
        "allocs (max)",
        "cpu µs/rt"
    );
    for (i, v) in variants.iter().enumerate() {
        match med(i) {
            Some(s) => {
                let ratio = reference.map_or("-".to_string(), |r| {
                    format!("{:.3}x", s.per_sec / r.per_sec)
                });
                println!(
                    "{:<22} {:>14.0} {:>16} {:>16.4} {:>14} {:>10.2}",
                    v.name(),
                    s.per_sec,
                    ratio,
                    s.allocs_per_rt,
                    s.allocs,
                    s.cpu_us_per_rt
                );
            }
            None => println!("{:<22} {:>14}", v.name(), "failed"),
        }
    }
    let rates: Vec<String> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let all: Vec<String> = samples[i]
                .iter()
                .map(|s| format!("{:.0}", s.per_sec))
                .collect();
            format!("{}: [{}]", v.name(), all.join(", "))
        })
        .collect();
    println!("per-round round trips/s: {}", rates.join("; "));
}

/// Profiling filters: `XEV_BENCH_ONLY=epoll,tokio` keeps the variants whose name contains
/// one of the words; `XEV_BENCH_CONNS=100` keeps one workload. Unset: everything.
fn wanted(var: &str, name: &str) -> bool {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| name.contains(w.trim())),
        _ => true,
    }
}

fn wanted_conns(conns: usize) -> bool {
    match std::env::var("XEV_BENCH_CONNS") {
        Ok(v) if !v.trim().is_empty() => v.split(',').any(|w| w.trim() == conns.to_string()),
        _ => true,
    }
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    header(quick);
    watchdog_start();
    let (rounds, mut timed, warmup) = if quick {
        (1, 2_000, 1_000)
    } else {
        (3, 500_000, 10_000)
    };
    if let Some(n) = std::env::var("XEV_BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        timed = n;
    }
    let workloads = [
        Workload {
            title: "ping-pong",
            conns: 1,
            msg: PING,
            warmup,
            timed,
        },
        Workload {
            title: "ping-pongs x100",
            conns: 100,
            msg: MSG64,
            warmup,
            timed,
        },
    ];
    let uring = Backend::IoUring.is_available();
    let variants: Vec<Variant> = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::RawIoUring,
        Variant::Tokio,
    ]
    .into_iter()
    .filter(|v| uring || !matches!(v, Variant::XevIoUring | Variant::RawIoUring))
    .filter(|v| wanted("XEV_BENCH_ONLY", v.name()))
    .collect();
    if !uring {
        println!("io_uring is not available here: its variants are skipped");
    }
    let mut failed = false;
    for w in workloads.iter().filter(|w| wanted_conns(w.conns)) {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); variants.len()];
        for _ in 0..rounds {
            for (i, &v) in variants.iter().enumerate() {
                match measure(v, w) {
                    Ok(s) => samples[i].push(s),
                    Err(e) => {
                        failed = true;
                        eprintln!("pingpong: {} / {}: {e}", w.title, v.name());
                    }
                }
            }
        }
        table(w, &variants, &samples, rounds);
    }
    println!();
    println!("total wall time: {:.1} s", started.elapsed().as_secs_f64());
    if failed {
        std::process::exit(1);
    }
}
