//! The raw epoll reference receiver: the socket registered once (edge-triggered), then
//! `recvfrom` (with the sender's address) into one 64 KiB buffer until `EAGAIN`, then
//! `epoll_wait`: what the tokio and xev epoll receivers do, without a runtime around it.

use super::*;
use common::epoll::Epoll;
use std::rc::Rc;

pub(crate) fn receive(sock: UdpSocket, rx: &Rc<Rx>) {
    if let Err(e) = run(&sock, rx) {
        rx.fail(e);
    }
}

fn run(sock: &UdpSocket, rx: &Rx) -> Result<(), String> {
    let fd = sock.as_raw_fd();
    let ep = Epoll::new().map_err(|e| format!("epoll: {e}"))?;
    ep.add(fd, libc::EPOLLIN | libc::EPOLLET, 0)
        .map_err(|e| format!("epoll_ctl: {e}"))?;
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        // SAFETY: plain C data; all-zero is valid.
        let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut addr_len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: `buf` and `addr` are live and writable for the lengths given.
        let n = unsafe {
            libc::recvfrom(
                fd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut addr as *mut libc::sockaddr_in6).cast(),
                &mut addr_len,
            )
        };
        if n >= 0 {
            if !rx.datagram(&buf[..n as usize]) {
                return Ok(());
            }
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                ep.wait(&mut evs, None)
                    .map_err(|e| format!("epoll_wait: {e}"))?;
            }
            io::ErrorKind::Interrupted => {}
            _ => return Err(format!("recvfrom: {e}")),
        }
    }
}
