//! xev async variants of the ping-pong: one `xev::rt` runtime per thread on the given
//! backend, one task per connection, in the shape of `tokio_side.rs`, with the owned
//! buffers of `xev::net`: each task keeps one receive buffer (`Box<[u8]>`, which reads
//! use as is) and, on the server, one send `Vec` that the echoed bytes are copied into
//! (a `Vec` is written up to its length); the client writes its `&'static` message.
//! Every buffer comes back with its result and is reused, so the steady state allocates
//! nothing.

use super::*;

/// `common::roundtrip::xev_async_run`, with `XEV_BENCH_SQPOLL_MS=<idle ms>` giving the
/// io_uring runtimes a submission-polling thread (`rt::Builder::sqpoll`).
fn run<F: std::future::Future<Output = ()>>(
    backend: Backend,
    ctr: &Counter,
    f: impl FnOnce() -> F,
) {
    let Some(ms) = common::env_parse("XEV_BENCH_SQPOLL_MS") else {
        return common::roundtrip::xev_async_run(backend, ENTRIES, ctr, f);
    };
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .entries(ENTRIES)
        .sqpoll(Duration::from_millis(ms))
        .build();
    match rt {
        Ok(rt) => rt.block_on(f()),
        Err(e) => ctr.fail(format!("xev runtime: {e}")),
    }
}

pub(crate) fn xev_async_client(
    backend: Backend,
    socks: Vec<TcpStream>,
    ctr: &Rc<Counter>,
    msg: &'static [u8],
) {
    // `XEV_BENCH_READ_TIMEOUT=link|timer`: every client read has a 10 s limit, as one
    // linked timeout (`read_timeout`) or as a runtime timer (`time::timeout`).
    let read_limit = match std::env::var("XEV_BENCH_READ_TIMEOUT").as_deref() {
        Ok("link") => Some((true, Duration::from_secs(10))),
        Ok("timer") => Some((false, Duration::from_secs(10))),
        _ => None,
    };
    run(backend, ctr, || async move {
        let mut tasks = Vec::with_capacity(socks.len());
        for s in socks {
            let ctr = ctr.clone();
            tasks.push(xev::spawn(async move {
                let s = xev::net::TcpStream::from(s);
                let mut buf: Box<[u8]> = vec![0u8; RECV_BUF].into_boxed_slice();
                let mut got = 0;
                while ctr.claim() {
                    if let (Err(e), _) = s.write_all(msg).await {
                        return ctr.fail(format!("client write: {e}"));
                    }
                    while got < msg.len() {
                        let (r, b) = match read_limit {
                            None => s.read(buf).await,
                            Some((true, d)) => s.read_timeout(buf, d).await,
                            Some((false, d)) => match xev::time::timeout(d, s.read(buf)).await {
                                Ok(rb) => rb,
                                Err(_) => return ctr.fail("client read: timed out".into()),
                            },
                        };
                        buf = b;
                        match r {
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

pub(crate) fn xev_async_server(backend: Backend, socks: Vec<TcpStream>, ctr: &Rc<Counter>) {
    run(backend, ctr, || async move {
        let mut tasks = Vec::with_capacity(socks.len());
        for s in socks {
            let ctr = ctr.clone();
            tasks.push(xev::spawn(async move {
                let s = xev::net::TcpStream::from(s);
                let mut rbuf: Box<[u8]> = vec![0u8; RECV_BUF].into_boxed_slice();
                let mut sbuf: Vec<u8> = Vec::with_capacity(RECV_BUF);
                loop {
                    let (r, b) = s.read(rbuf).await;
                    rbuf = b;
                    let n = match r {
                        Ok(0) => return,
                        Ok(n) => n,
                        Err(e) => return ctr.fail(format!("server read: {e}")),
                    };
                    sbuf.clear();
                    sbuf.extend_from_slice(&rbuf[..n]);
                    let (r, b) = s.write_all(sbuf).await;
                    sbuf = b;
                    if let Err(e) = r {
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
