//! tokio variants of the ping-pong: one current_thread runtime per thread, one local task
//! per connection.

use super::*;

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

pub(crate) fn tokio_client(socks: Vec<TcpStream>, ctr: &Rc<Counter>, msg: &'static [u8]) {
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

pub(crate) fn tokio_server(socks: Vec<TcpStream>, ctr: &Rc<Counter>) {
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
