//! The raw io_uring reference, written directly on the io-uring crate: one ring per thread, recv/send SQEs tagged with
//! (connection << 1 | kind), one submit_and_wait(1) per iteration, CQEs in a batch.

use super::*;
use io_uring::{opcode, squeue, types};

const RECV: u64 = 0;
const SEND: u64 = 1;

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
    /// The receive SQEs' `ioprio`: `IORING_RECVSEND_POLL_FIRST` (1) when
    /// `XEV_URING_POLL_FIRST=1`, as xev then sets on every receive; else 0.
    ioprio: u16,
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
            ioprio: u16::from(std::env::var_os("XEV_URING_POLL_FIRST").is_some_and(|v| v == "1")),
        }
    }

    fn recv_sqe(&mut self, i: usize) -> squeue::Entry {
        opcode::Recv::new(types::Fd(self.fd), self.rbuf.as_mut_ptr(), RECV_BUF as u32)
            .ioprio(self.ioprio)
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
    let mut ring = common::uring::ring(ENTRIES)?;
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
        common::uring::submit_and_wait_one(&submitter)?;
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
