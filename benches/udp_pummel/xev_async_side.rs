//! xev async receivers: an `xev::rt` runtime on the given backend, `recv_from` in a loop
//! with one owned `Box<[u8]>` that comes back with every result (nothing allocated per
//! datagram).

use super::*;
use std::rc::Rc;

pub(crate) fn receive(backend: Backend, sock: UdpSocket, rx: &Rc<Rx>) {
    let rt = match xev::rt::Builder::new()
        .backend(backend)
        .entries(ENTRIES)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return rx.fail(format!("xev runtime: {e}")),
    };
    rt.block_on(async move {
        let s = xev::net::UdpSocket::from(sock);
        let mut buf: Box<[u8]> = vec![0u8; RECV_BUF].into_boxed_slice();
        loop {
            let (r, b) = s.recv_from(buf).await;
            buf = b;
            match r {
                Ok((n, _)) => {
                    if !rx.datagram(&buf[..n]) {
                        return;
                    }
                }
                Err(e) => return rx.fail(format!("recv: {e}")),
            }
        }
    });
}
