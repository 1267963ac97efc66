//! hyper 1.x on xev through `xev::compat`: HTTP/1.1 server and client with keep-alive,
//! pipelined requests, request bodies, the header read timeout (proves `HyperTimer`),
//! HTTP/2 with `HyperExecutor`, hyper-util's `TokioIo` over the tokio traits, the
//! example server (`examples/hyper_hello.rs`) against curl, and `HyperSleep` itself.

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::rt::Timer;
use hyper::service::service_fn;
use hyper::{client, server, Request, Response};
use runtime_tests::each_backend;
use xev::compat::{Compat, HyperExecutor, HyperSleep, HyperTimer};
use xev::net::{TcpListener, TcpStream};
use xev::rt::Builder;
use xev::time::timeout;

#[path = "../../examples/hyper_hello.rs"]
#[allow(dead_code)]
mod hyper_hello;

const LOST: Duration = Duration::from_secs(10);

/// Answers `<method> <path> <n>` (n: the connection's request count) and echoes a
/// request body after it.
async fn handler(
    req: Request<Incoming>,
    served: Rc<Cell<u32>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    served.set(served.get() + 1);
    let head = format!("{} {} {}\n", req.method(), req.uri().path(), served.get());
    let body = req.into_body().collect().await?.to_bytes();
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    Ok(Response::new(Full::new(Bytes::from(out))))
}

/// An HTTP/1.1 server on a new listener: returns its address and the number of
/// connections it accepted.
fn http1_server(configure: fn(&mut server::conn::http1::Builder)) -> (SocketAddr, Rc<Cell<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Rc::new(Cell::new(0));
    let acc = accepted.clone();
    xev::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            acc.set(acc.get() + 1);
            let served = Rc::new(Cell::new(0));
            let mut b = server::conn::http1::Builder::new();
            b.timer(HyperTimer);
            configure(&mut b);
            let conn = b.serve_connection(
                Compat::new(s),
                service_fn(move |req| handler(req, served.clone())),
            );
            xev::spawn(async move {
                let _ = conn.await;
            });
        }
    });
    (addr, accepted)
}

async fn body_string(resp: Response<Incoming>) -> String {
    assert_eq!(resp.status(), 200);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(b.to_vec()).unwrap()
}

#[xev::test(backend = "all")]
async fn http1_keep_alive_requests_on_one_connection() {
    let (addr, accepted) = http1_server(|_| {});
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = client::conn::http1::handshake(Compat::new(stream))
        .await
        .unwrap();
    let driver = xev::spawn(conn);
    for i in 1..=5u32 {
        let req = Request::get(format!("/r{i}"))
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = timeout(LOST, sender.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body_string(resp).await, format!("GET /r{i} {i}\n"));
    }
    // A request body larger than every buffer on the way, echoed back.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let req = Request::post("/echo")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(big.clone())))
        .unwrap();
    let resp = timeout(LOST, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..13], b"POST /echo 6\n");
    assert!(body[13..] == big[..]);
    assert_eq!(accepted.get(), 1, "every request went over one connection");
    // Dropping the sender ends the client connection cleanly.
    drop(sender);
    timeout(LOST, driver).await.unwrap().unwrap().unwrap();
}

#[xev::test(backend = "all")]
async fn http1_pipelined_requests_get_answers_in_order() {
    let (addr, accepted) = http1_server(|b| {
        b.pipeline_flush(true);
    });
    let mut c = Compat::new(TcpStream::connect(addr).await.unwrap());
    // Two requests in one write, before any answer.
    c.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    c.flush().await.unwrap();
    let mut raw = String::new();
    timeout(LOST, c.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{raw}");
    let one = raw.find("GET /one 1\n").expect("first answer");
    let two = raw.find("GET /two 2\n").expect("second answer");
    assert!(one < two, "answers in request order: {raw}");
    assert_eq!(accepted.get(), 1);
}

#[xev::test(backend = "all")]
async fn header_read_timeout_fires_on_xev_timers() {
    const LIMIT: Duration = Duration::from_millis(150);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let srv = xev::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let start = Instant::now();
        let res = server::conn::http1::Builder::new()
            .timer(HyperTimer)
            .header_read_timeout(LIMIT)
            .serve_connection(
                Compat::new(s),
                service_fn(|_req| async {
                    Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
                }),
            )
            .await;
        (res, start.elapsed())
    });
    let mut c = Compat::new(TcpStream::connect(addr).await.unwrap());
    // Half a request head, then silence.
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    c.flush().await.unwrap();
    let (res, elapsed) = timeout(LOST, srv).await.unwrap().unwrap();
    let e = res.expect_err("the connection times out");
    assert!(e.is_timeout(), "{e:?}");
    assert!(elapsed >= LIMIT, "fired after {elapsed:?}, limit {LIMIT:?}");
    assert!(elapsed < LOST, "fired after {elapsed:?}");
    // The server closed the connection: the client reads end of stream (after any 408).
    let mut rest = Vec::new();
    timeout(LOST, c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
}

#[xev::test(backend = "all")]
async fn http2_with_the_xev_executor() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    xev::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let served = Rc::new(Cell::new(0));
        let _ = server::conn::http2::Builder::new(HyperExecutor)
            .timer(HyperTimer)
            .serve_connection(
                Compat::new(s),
                service_fn(move |req| handler(req, served.clone())),
            )
            .await;
    });
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = client::conn::http2::Builder::new(HyperExecutor)
        .timer(HyperTimer)
        .handshake(Compat::new(stream))
        .await
        .unwrap();
    xev::spawn(conn);
    // Three requests at once on the one connection (HTTP/2 streams).
    let reqs: Vec<_> = (0..3)
        .map(|i| {
            let mut s = sender.clone();
            xev::spawn(async move {
                let req = Request::post(format!("/s{i}"))
                    .body(Full::new(Bytes::from(format!("body{i}"))))
                    .unwrap();
                let resp = s.send_request(req).await.unwrap();
                assert_eq!(resp.version(), hyper::Version::HTTP_2);
                body_string(resp).await
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for r in reqs {
        bodies.push(timeout(LOST, r).await.unwrap().unwrap());
    }
    for (i, b) in bodies.iter().enumerate() {
        assert!(b.starts_with(&format!("POST /s{i} ")), "{b}");
        assert!(b.ends_with(&format!("\nbody{i}")), "{b}");
    }
}

/// hyper-util's `TokioIo` turns the tokio traits of the same wrapper into hyper's.
#[xev::test(backend = "all")]
async fn tokio_io_adapter_of_hyper_util_works_too() {
    use hyper_util::rt::TokioIo;
    let (addr, _) = http1_server(|_| {});
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = client::conn::http1::handshake(TokioIo::new(Compat::new(stream)))
        .await
        .unwrap();
    xev::spawn(conn);
    let req = Request::get("/tokio")
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = timeout(LOST, sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(body_string(resp).await, "GET /tokio 1\n");
}

#[xev::test(backend = "all")]
async fn hyper_sleep_fires_resets_and_is_dropped() {
    let t = HyperTimer;
    let start = Instant::now();
    t.sleep(Duration::from_millis(30)).await;
    assert!(start.elapsed() >= Duration::from_millis(30));
    // Reset to an earlier deadline after it started waiting.
    let mut s = t.sleep(Duration::from_secs(3600));
    let poll_pending = std::future::poll_fn(|cx| {
        assert!(s.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    });
    poll_pending.await;
    let start = Instant::now();
    t.reset(&mut s, Instant::now() + Duration::from_millis(20));
    timeout(LOST, s).await.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    // A deadline in the past is ready at once; dropping a waiting sleep is fine.
    t.sleep_until(Instant::now() - Duration::from_millis(1))
        .await;
    let mut waiting = Box::pin(HyperSleep::until(
        Instant::now() + Duration::from_secs(3600),
    ));
    std::future::poll_fn(|cx| {
        assert!(waiting.as_mut().poll(cx).is_pending());
        std::task::Poll::Ready(())
    })
    .await;
    drop(waiting);
    xev::time::sleep(Duration::from_millis(5)).await;
}

#[test]
fn hyper_sleep_is_send_and_sync_and_needs_a_runtime_on_first_poll() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    let s = HyperSleep::until(Instant::now() + Duration::from_secs(1));
    send_sync(&s);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut s = Box::pin(s);
        let w = std::task::Waker::noop();
        let _ = s.as_mut().poll(&mut std::task::Context::from_waker(w));
    }))
    .expect_err("polled outside a runtime");
    let msg = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("");
    assert!(msg.contains("outside an xev runtime"), "{msg}");
    // Once registered on a runtime's thread, it may be polled from anywhere (plain data).
    let mut s = Box::pin(HyperSleep::until(
        Instant::now() + Duration::from_millis(20),
    ));
    xev::block_on(async {
        std::future::poll_fn(|cx| {
            assert!(s.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        xev::time::sleep(Duration::from_millis(40)).await;
    });
    let w = std::task::Waker::noop();
    let ready = std::thread::spawn(move || {
        s.as_mut()
            .poll(&mut std::task::Context::from_waker(w))
            .is_ready()
    })
    .join()
    .unwrap();
    assert!(ready, "it fired while the runtime ran");
}

/// The example server answers curl with keep-alive: both bodies, one connection.
#[test]
fn hyper_hello_answers_curl_with_keep_alive() {
    if !std::path::Path::new("/usr/bin/curl").exists()
        && std::process::Command::new("curl")
            .arg("--version")
            .output()
            .is_err()
    {
        println!("SKIPPED: curl not installed");
        return;
    }
    each_backend(|b| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let server = std::thread::spawn(move || {
            let rt = Builder::new().backend(b).build().unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let listener = TcpListener::from(listener);
                let _serving = xev::spawn(hyper_hello::serve(listener));
                while !stop2.load(Ordering::Acquire) {
                    xev::time::sleep(Duration::from_millis(5)).await;
                }
            })
        });
        let url = format!("http://127.0.0.1:{port}/");
        let out = std::process::Command::new("curl")
            .args(["-sv", "--http1.1", "--max-time", "10", &url, &url])
            .output()
            .expect("run curl");
        stop.store(true, Ordering::Release);
        server.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{b:?}: curl failed: {stderr}");
        assert_eq!(stdout, "Hello, World!Hello, World!", "{b:?}: {stderr}");
        let lower = stderr.to_lowercase();
        assert!(
            lower.contains("re-using existing connection") || lower.contains("reusing existing"),
            "{b:?}: curl did not re-use the connection: {stderr}"
        );
    });
}
