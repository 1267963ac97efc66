//! The raw io_uring reference, written directly on the io-uring crate: one ring per
//! thread, a `RecvMsg` SQE always in flight and a `SendMsg` SQE per datagram (tagged
//! RECV / SEND in `user_data`), one `submit_and_wait(1)` per iteration, CQEs in a batch.

use super::*;
use io_uring::{opcode, squeue, types};
use std::os::fd::{AsRawFd, RawFd};

const RECV: u64 = 0;
const SEND: u64 = 1;

/// One direction's `msghdr` with its address and its one `iovec`, boxed so that the
/// pointers inside stay valid while the kernel holds them.
struct Msg {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in6,
    buf: Box<[u8]>,
}

impl Msg {
    fn new(cap: usize) -> Box<Msg> {
        // msghdr, iovec and sockaddr_in6 are plain data.
        let mut m = Box::new(Msg {
            // SAFETY: plain C data; all-zero is valid.
            hdr: unsafe { std::mem::zeroed() },
            // SAFETY: plain C data; all-zero is valid.
            iov: unsafe { std::mem::zeroed() },
            // SAFETY: plain C data; all-zero is valid.
            addr: unsafe { std::mem::zeroed() },
            buf: vec![0u8; cap].into_boxed_slice(),
        });
        m.hdr.msg_iov = &mut m.iov;
        m.hdr.msg_iovlen = 1;
        m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_in6).cast();
        m
    }

    /// Point the header at `len` bytes of the buffer and the full address room.
    fn reset(&mut self, len: usize) {
        self.iov.iov_base = self.buf.as_mut_ptr().cast();
        self.iov.iov_len = len;
        self.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    }

    fn recv_sqe(&mut self, fd: RawFd) -> squeue::Entry {
        self.reset(self.buf.len());
        opcode::RecvMsg::new(types::Fd(fd), &mut self.hdr)
            .build()
            .user_data(RECV)
    }

    /// `len` bytes of the buffer to the address in `addr` (of length `namelen`).
    fn send_sqe(&mut self, fd: RawFd, len: usize, namelen: libc::socklen_t) -> squeue::Entry {
        self.reset(len);
        self.hdr.msg_namelen = namelen;
        opcode::SendMsg::new(types::Fd(fd), &self.hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(SEND)
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_in6, libc::socklen_t) {
    // SAFETY: plain data; all-zero is valid.
    let mut out: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits inside sockaddr_in6 and both are plain data.
            let sin =
                unsafe { &mut *(&mut out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (out, len as libc::socklen_t)
}

/// Drive the ring until no operation is in flight; `start` and `on_cqe` put the SQEs to
/// submit into `out`. On a ring error the state is leaked (see below).
fn drive<S>(
    mut st: S,
    start: impl FnOnce(&mut S, &mut Vec<squeue::Entry>),
    mut on_cqe: impl FnMut(&mut S, u64, i32, &mut Vec<squeue::Entry>),
) -> io::Result<()> {
    let mut ring = common::uring::ring(ENTRIES)?;
    let (submitter, mut sq, mut cq) = ring.split();
    let mut out: Vec<squeue::Entry> = Vec::with_capacity(8);
    let mut inflight = 0usize;
    start(&mut st, &mut out);
    let r = loop {
        for e in out.drain(..) {
            // SAFETY: every pointer an SQE carries targets a boxed `Msg` in `st`, which
            // outlives the ring's use here: we only drop it once nothing is in flight;
            // after a ring error it is leaked instead.
            while unsafe { sq.push(&e) }.is_err() {
                sq.sync();
                if let Err(e) = submitter.submit() {
                    std::mem::forget(st);
                    return Err(e);
                }
                sq.sync();
            }
            inflight += 1;
        }
        if inflight == 0 {
            break Ok(());
        }
        sq.sync();
        if let Err(e) = common::uring::submit_and_wait_one(&submitter) {
            break Err(e);
        }
        cq.sync();
        for cqe in &mut cq {
            inflight -= 1;
            on_cqe(&mut st, cqe.user_data(), cqe.result(), &mut out);
        }
        // Publish the consumed head now (see pingpong's raw.rs).
        cq.sync();
    };
    if r.is_err() {
        // Operations may still be in flight in the kernel: never free their memory.
        std::mem::forget(st);
    }
    r
}

struct Client {
    rx: Box<Msg>,
    tx: Box<Msg>,
    namelen: libc::socklen_t,
    send_busy: bool,
    /// A pong arrived while the ping's send was in flight: resend when it finishes.
    want_send: bool,
}

impl Client {
    fn send(&mut self, fd: RawFd, out: &mut Vec<squeue::Entry>) {
        self.send_busy = true;
        out.push(self.tx.send_sqe(fd, PING.len(), self.namelen));
    }
}

pub(super) fn client(sock: UdpSocket, to: SocketAddr, ctr: &Counter) {
    let fd = sock.as_raw_fd();
    let (addr, namelen) = sockaddr(to);
    let mut st = Client {
        rx: Msg::new(RECV_BUF),
        tx: Msg::new(PING.len()),
        namelen,
        send_busy: false,
        want_send: false,
    };
    st.tx.addr = addr;
    st.tx.buf.copy_from_slice(PING);
    let r = drive(
        st,
        |st, out| {
            out.push(st.rx.recv_sqe(fd));
            if ctr.claim() {
                st.send(fd, out);
            }
        },
        |st, ud, res, out| {
            if ud == SEND {
                st.send_busy = false;
                if res != PING.len() as i32 {
                    return ctr.fail(format!("client send: {}", errno(res)));
                }
                if std::mem::take(&mut st.want_send) {
                    st.send(fd, out);
                }
                return;
            }
            if res < 0 {
                return ctr.fail(format!("client recv: {}", errno(res)));
            }
            if let Err(e) = check_pong(&st.rx.buf[..res as usize]) {
                return ctr.fail(e);
            }
            ctr.complete();
            if !ctr.claim() {
                return;
            }
            if st.send_busy {
                st.want_send = true;
            } else {
                st.send(fd, out);
            }
            out.push(st.rx.recv_sqe(fd));
        },
    );
    if let Err(e) = r {
        ctr.fail(format!("client ring: {e}"));
    }
    drop(sock);
}

struct Server {
    rx: Box<Msg>,
    tx: Box<Msg>,
    send_busy: bool,
    /// Datagrams received while a send was in flight (never in steady state).
    pending: Vec<(libc::sockaddr_in6, libc::socklen_t, Vec<u8>)>,
}

pub(super) fn server(sock: UdpSocket, ctr: &Counter) {
    let fd = sock.as_raw_fd();
    let st = Server {
        rx: Msg::new(RECV_BUF),
        tx: Msg::new(RECV_BUF),
        send_busy: false,
        pending: Vec::new(),
    };
    let r = drive(
        st,
        |st, out| out.push(st.rx.recv_sqe(fd)),
        |st, ud, res, out| {
            if ud == SEND {
                st.send_busy = false;
                if res < 0 {
                    return ctr.fail(format!("server send: {}", errno(res)));
                }
                if !st.pending.is_empty() {
                    let (addr, namelen, data) = st.pending.remove(0);
                    st.tx.addr = addr;
                    st.tx.buf[..data.len()].copy_from_slice(&data);
                    st.send_busy = true;
                    out.push(st.tx.send_sqe(fd, data.len(), namelen));
                }
                return;
            }
            if res < 0 {
                return ctr.fail(format!("server recv: {}", errno(res)));
            }
            let n = res as usize;
            if n == 0 {
                return; // the stop signal: no new receive, the ring drains
            }
            let namelen = st.rx.hdr.msg_namelen;
            if st.send_busy {
                let entry = (st.rx.addr, namelen, st.rx.buf[..n].to_vec());
                st.pending.push(entry);
            } else {
                let Server { rx, tx, .. } = st;
                tx.addr = rx.addr;
                tx.buf[..n].copy_from_slice(&rx.buf[..n]);
                st.send_busy = true;
                out.push(st.tx.send_sqe(fd, n, namelen));
            }
            out.push(st.rx.recv_sqe(fd));
        },
    );
    if let Err(e) = r {
        ctr.fail(format!("server ring: {e}"));
    }
    drop(sock);
}

fn errno(res: i32) -> String {
    if res >= 0 {
        format!("short transfer ({res} bytes)")
    } else {
        io::Error::from_raw_os_error(-res).to_string()
    }
}
