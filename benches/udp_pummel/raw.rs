//! The raw io_uring reference receiver, written directly on the io-uring crate: one
//! `RecvMsg` SQE in flight (into one 64 KiB buffer, with the sender's address), submitted
//! again after each CQE with one `submit_and_wait(1)` per datagram: the same shape as the
//! xev receivers, without a loop or callbacks around it.

use super::*;
use io_uring::{opcode, types};
use std::rc::Rc;

/// The `msghdr` with its address and `iovec`, boxed so the kernel's pointers stay valid.
struct Msg {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: libc::sockaddr_in6,
    buf: Box<[u8]>,
}

pub(crate) fn receive(sock: UdpSocket, rx: &Rc<Rx>) {
    let fd = sock.as_raw_fd();
    let mut ring = match common::uring::ring(ENTRIES) {
        Ok(r) => r,
        Err(e) => return rx.fail(format!("ring: {e}")),
    };
    // msghdr, iovec and sockaddr_in6 are plain data.
    let mut m = Box::new(Msg {
        // SAFETY: plain C data; all-zero is valid.
        hdr: unsafe { std::mem::zeroed() },
        // SAFETY: plain C data; all-zero is valid.
        iov: unsafe { std::mem::zeroed() },
        // SAFETY: plain C data; all-zero is valid.
        addr: unsafe { std::mem::zeroed() },
        buf: vec![0u8; RECV_BUF].into_boxed_slice(),
    });
    m.iov.iov_base = m.buf.as_mut_ptr().cast();
    m.iov.iov_len = m.buf.len();
    m.hdr.msg_iov = &mut m.iov;
    m.hdr.msg_iovlen = 1;
    m.hdr.msg_name = (&mut m.addr as *mut libc::sockaddr_in6).cast();
    let (submitter, mut sq, mut cq) = ring.split();
    loop {
        m.hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        let sqe = opcode::RecvMsg::new(types::Fd(fd), &mut m.hdr)
            .build()
            .user_data(1);
        // SAFETY: the SQE points into `m`, which is only freed once no SQE is in flight
        // (leaked below after a ring error); the queue has room (one SQE at a time).
        if unsafe { sq.push(&sqe) }.is_err() {
            return rx.fail("submission queue full".into());
        }
        sq.sync();
        let res = loop {
            if let Err(e) = common::uring::submit_and_wait_one(&submitter) {
                rx.fail(format!("ring: {e}"));
                std::mem::forget(m);
                return;
            }
            cq.sync();
            if let Some(cqe) = cq.next() {
                break cqe.result();
            }
        };
        // Publish the consumed head now (see pingpong's raw.rs).
        cq.sync();
        if res < 0 {
            return rx.fail(format!("recv: {}", io::Error::from_raw_os_error(-res)));
        }
        if !rx.datagram(&m.buf[..res as usize]) {
            return;
        }
    }
}
