//! The servers under test, each run on the calling thread until stopped: xev's
//! `http_hello::serve` on a given backend, a tokio `current_thread` server with the same
//! parsing and behaviour, hyper on tokio `current_thread`, and the slot for hyper on xev
//! (the hand-written epoll server is `raw_epoll.rs`).

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use super::http_hello;

/// io_uring entries of the xev runtimes (xev's default).
const ENTRIES: u32 = 256;

/// A stop request from another thread: [`Stop::fire`] wakes the server's runtime, whose
/// [`until_stopped`] then returns.
#[derive(Clone, Default)]
pub struct Stop(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Stop {
    pub fn fire(&self) {
        self.0.fired.store(true, Ordering::Release);
        if let Some(w) = self.0.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    /// Wait until fired (the raw epoll server polls this with a waker of its own).
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.0.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
            // A fire between the check and storing the waker took no waker: look again.
            if self.0.fired.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await
    }
}

/// Run `server` until `stop` fires: Ok, or the server's error if it ended first.
async fn until_stopped<F>(server: F, stop: &Stop) -> Result<(), String>
where
    F: Future<Output = io::Result<()>>,
{
    let mut server = pin!(server);
    let mut stopped = pin!(stop.wait());
    poll_fn(|cx| {
        if stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        match server.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Err("server returned before the stop".into())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(format!("server: {e}"))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Say the runtime is up (or why not) on `ready`.
pub type Ready = std::sync::mpsc::Sender<Result<(), String>>;

/// xev's `http_hello::serve` on `backend`.
pub fn xev(
    backend: xev::Backend,
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
) -> Result<(), String> {
    xev_with(backend, listener, stop, ready, |l| {
        Box::pin(http_hello::serve(l))
    })
}

/// A server function of an xev example: `serve(listener)`.
pub type XevServe = fn(xev::net::TcpListener) -> Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// Run `serve` on an xev runtime on `backend`.
pub fn xev_with(
    backend: xev::Backend,
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
    serve: XevServe,
) -> Result<(), String> {
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .entries(ENTRIES)
        .build()
        .map_err(|e| format!("xev runtime: {e}"))?;
    let _ = ready.send(Ok(()));
    rt.block_on(async move {
        let listener = xev::net::TcpListener::from(listener);
        until_stopped(serve(listener), stop).await
    })
}

/// A tokio `current_thread` runtime running `f` in a `LocalSet`.
fn tokio_run<F: Future<Output = Result<(), String>>>(
    ready: &Ready,
    f: impl FnOnce() -> F,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let _ = ready.send(Ok(()));
    tokio::task::LocalSet::new().block_on(&rt, f())
}

/// The accept loop of the tokio servers: each connection (with Nagle off) to `conn`.
async fn tokio_accept<C, F>(listener: std::net::TcpListener, conn: C) -> io::Result<()>
where
    C: Fn(tokio::net::TcpStream) -> F,
    F: Future<Output = ()> + 'static,
{
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (s, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return Err(e),
        };
        let _ = s.set_nodelay(true);
        tokio::task::spawn_local(conn(s));
    }
}

/// The hand-written tokio server: the same parsing, responses, buffers and closing
/// behaviour as `http_hello`, in the usual tokio shape (read, answer, write, repeat).
pub fn tokio_hello(
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
) -> Result<(), String> {
    tokio_run(ready, || {
        until_stopped(tokio_accept(listener, tokio_conn), stop)
    })
}

async fn tokio_conn(mut s: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut rbuf = vec![0u8; 8 * 1024];
    let mut wbuf: Vec<u8> = Vec::with_capacity(4 * 1024);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = match s.read(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        wbuf.clear();
        let close = if pending.is_empty() {
            let a = http_hello::answer(&rbuf[..n], &mut wbuf);
            if !a.close {
                pending.extend_from_slice(&rbuf[a.consumed..n]);
            }
            a.close
        } else {
            pending.extend_from_slice(&rbuf[..n]);
            let a = http_hello::answer(&pending, &mut wbuf);
            pending.drain(..a.consumed);
            a.close
        };
        if !wbuf.is_empty() && s.write_all(&wbuf).await.is_err() {
            return;
        }
        if close {
            // As http_hello: end of stream, then read and discard for a while.
            let _ = s.shutdown().await;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while matches!(s.read(&mut rbuf).await, Ok(n) if n > 0) {}
            })
            .await;
            return;
        }
    }
}

/// hyper's HTTP/1 server on tokio `current_thread`, with hyper's defaults (a `date`
/// header, one flush per response).
pub fn hyper_tokio(
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
) -> Result<(), String> {
    tokio_run(ready, || {
        until_stopped(
            tokio_accept(listener, |s| async move {
                let io = hyper_util::rt::TokioIo::new(s);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(hyper_hello))
                    .await;
            }),
            stop,
        )
    })
}

/// The hyper service: `Hello, World!` as `text/plain`.
async fn hyper_hello(
    _req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, std::convert::Infallible> {
    let mut r = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(
        http_hello::BODY,
    )));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

/// `http_hello` on a `Pool` of `threads` workers on `backend` (`serve_pool`), yielding
/// before they block or not (`Builder::yield_before_block`), until `stop` fires; then
/// the pool is shut down. The listener is closed and its address
/// re-bound by the workers (with `SO_REUSEPORT` for `Sharing::ReusePort`).
pub fn xev_pool(
    backend: xev::Backend,
    threads: usize,
    sharing: http_hello::Sharing,
    yield_before_block: bool,
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
) -> Result<(), String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("local_addr: {e}"))?;
    drop(listener);
    let pool = xev::rt::Builder::new()
        .backend(backend)
        .entries(ENTRIES)
        .threads(threads)
        .yield_before_block(yield_before_block)
        .build_pool()
        .map_err(|e| format!("xev pool: {e}"))?;
    let bound =
        http_hello::serve_pool(&pool, addr, sharing).map_err(|e| format!("serve_pool: {e}"))?;
    if bound != addr {
        return Err(format!("serve_pool bound {bound}, not {addr}"));
    }
    let _ = ready.send(Ok(()));
    // This thread only waits: the workers serve.
    xev::block_on(stop.wait());
    pool.shutdown();
    Ok(())
}

/// The tokio server of [`tokio_hello`] on a `multi_thread` runtime of `workers`
/// workers: the accept loop is a task too, connections are `tokio::spawn`ed.
pub fn tokio_mt(
    workers: usize,
    listener: std::net::TcpListener,
    stop: &Stop,
    ready: &Ready,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let server = rt.spawn(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            let (s, _) = match listener.accept().await {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err::<(), io::Error>(e),
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(tokio_conn(s));
        }
    });
    let _ = ready.send(Ok(()));
    let r = rt.block_on(until_stopped(
        async move {
            match server.await {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(e)),
            }
        },
        stop,
    ));
    rt.shutdown_background();
    r
}
