//! "Hello, World!" from hyper's HTTP/1.1 server on xev, keep-alive on.
//!
//! Try it:
//!
//! ```text
//! cargo run --release --example hyper_hello --features hyper -- 8080
//! curl -v --http1.1 http://127.0.0.1:8080/ http://127.0.0.1:8080/   # one connection, re-used
//! ```
//!
//! The server is [`serve`]: `http1::Builder::new()` (hyper's defaults) with `HyperTimer`,
//! which makes the default 30 s header read timeout work (without a timer hyper skips
//! it). [`serve_with`] takes any builder: benches/http runs it with a bare
//! `http1::Builder::new()`, as its hyper-on-tokio server does, so that both do the same
//! work. The bench and the runtime tests include this file with
//! `#[path = "../examples/hyper_hello.rs"] mod hyper_hello;` and run it on their own
//! listener. No adapter code is needed: `xev::compat::Compat` gives hyper its I/O traits
//! and `HyperTimer` its timer.

use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use xev::compat::{Compat, HyperTimer};
use xev::net::TcpListener;

/// The one handler: "Hello, World!" as `text/plain` for every request.
pub async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

/// Serve every connection `listener` accepts, each in its own task, until this future is
/// dropped (connections already accepted go on in their tasks), with hyper's default
/// HTTP/1.1 settings and xev's timer for its timeouts. Must run inside an xev runtime.
pub async fn serve(listener: TcpListener) {
    let mut builder = http1::Builder::new();
    builder.timer(HyperTimer);
    serve_with(listener, builder).await
}

/// As [`serve`], with the connections configured by `builder`.
pub async fn serve_with(listener: TcpListener, builder: http1::Builder) {
    let builder = Rc::new(builder);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Out of descriptors or memory: let connections finish before retrying
                // (see TcpListener::accept); anything else concerns one connection.
                eprintln!("hyper_hello: accept: {e}");
                xev::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        xev::spawn(async move {
            let conn = builder.serve_connection(Compat::new(stream), service_fn(hello));
            // A client that goes away mid-request is its own business.
            let _ = conn.await;
        });
    }
}

#[allow(dead_code)] // unused where this file is included as a module
fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad PORT {p:?}"))
        })?,
        None => 8080,
    };
    xev::block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        println!(
            "hyper_hello: listening on http://{}/",
            listener.local_addr()?
        );
        serve(listener).await;
        Ok(())
    })
}
