//! tokio variants of the UDP ping-pong: one current_thread runtime per thread.

use super::*;

fn run<F: std::future::Future<Output = ()>>(ctr: &Counter, f: impl FnOnce() -> F) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ctr.fail(format!("tokio runtime: {e}")),
    };
    rt.block_on(f());
}

fn from_std(s: UdpSocket, ctr: &Counter) -> Option<tokio::net::UdpSocket> {
    match tokio::net::UdpSocket::from_std(s) {
        Ok(s) => Some(s),
        Err(e) => {
            ctr.fail(format!("from_std: {e}"));
            None
        }
    }
}

pub(crate) fn client(sock: UdpSocket, to: SocketAddr, ctr: &Rc<Counter>) {
    run(ctr, || async move {
        let Some(s) = from_std(sock, ctr) else { return };
        let mut buf = [0u8; RECV_BUF];
        while ctr.claim() {
            if let Err(e) = s.send_to(PING, to).await {
                return ctr.fail(format!("client send: {e}"));
            }
            match s.recv_from(&mut buf).await {
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

pub(crate) fn server(sock: UdpSocket, ctr: &Rc<Counter>) {
    run(ctr, || async move {
        let Some(s) = from_std(sock, ctr) else { return };
        let mut buf = [0u8; RECV_BUF];
        loop {
            let (n, from) = match s.recv_from(&mut buf).await {
                Ok((0, _)) => return, // the stop signal
                Ok(x) => x,
                Err(e) => return ctr.fail(format!("server recv: {e}")),
            };
            if let Err(e) = s.send_to(&buf[..n], from).await {
                return ctr.fail(format!("server send: {e}"));
            }
        }
    });
}
