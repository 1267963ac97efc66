//! tokio receiver: a current_thread runtime, `recv_from` in a loop.

use super::*;
use std::rc::Rc;

pub(crate) fn receive(sock: UdpSocket, rx: &Rc<Rx>) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return rx.fail(format!("tokio runtime: {e}")),
    };
    rt.block_on(async move {
        let s = match tokio::net::UdpSocket::from_std(sock) {
            Ok(s) => s,
            Err(e) => return rx.fail(format!("from_std: {e}")),
        };
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match s.recv_from(&mut buf).await {
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
