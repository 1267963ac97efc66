//! xev async variants of the UDP ping-pong: one `xev::rt` runtime per thread on the given
//! backend, in the shape of `tokio_side.rs`, with the owned buffers of `xev::net`: the
//! client sends its `&'static` ping and reads into one `Box<[u8]>`; the server reads into
//! one `Box<[u8]>` and echoes from one `Vec` the bytes are copied into. Every buffer comes
//! back with its result and is reused, so the steady state allocates nothing.

use super::*;
use xev::net::UdpSocket as XevUdp;

pub(crate) fn client(backend: Backend, sock: UdpSocket, to: SocketAddr, ctr: &Rc<Counter>) {
    common::roundtrip::xev_async_run(backend, ENTRIES, ctr, || async move {
        let s = XevUdp::from(sock);
        let mut buf: Box<[u8]> = vec![0u8; RECV_BUF].into_boxed_slice();
        while ctr.claim() {
            if let (Err(e), _) = s.send_to(PING, to).await {
                return ctr.fail(format!("client send: {e}"));
            }
            let (r, b) = s.recv_from(buf).await;
            buf = b;
            match r {
                Ok((n, _)) => {
                    if let Err(e) = check_pong(&buf[..n]) {
                        return ctr.fail(e);
                    }
                }
                Err(e) => return ctr.fail(format!("client recv: {e}")),
            }
            ctr.complete();
        }
    });
}

pub(crate) fn server(backend: Backend, sock: UdpSocket, ctr: &Rc<Counter>) {
    common::roundtrip::xev_async_run(backend, ENTRIES, ctr, || async move {
        let s = XevUdp::from(sock);
        let mut rbuf: Box<[u8]> = vec![0u8; RECV_BUF].into_boxed_slice();
        let mut sbuf: Vec<u8> = Vec::with_capacity(RECV_BUF);
        loop {
            let (r, b) = s.recv_from(rbuf).await;
            rbuf = b;
            let (n, from) = match r {
                Ok((0, _)) => return, // the stop signal
                Ok(x) => x,
                Err(e) => return ctr.fail(format!("server recv: {e}")),
            };
            sbuf.clear();
            sbuf.extend_from_slice(&rbuf[..n]);
            let (r, b) = s.send_to(sbuf, from).await;
            sbuf = b;
            if let Err(e) = r {
                return ctr.fail(format!("server send: {e}"));
            }
        }
    });
}
