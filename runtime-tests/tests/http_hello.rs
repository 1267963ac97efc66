//! `examples/http_hello.rs`, included as a module: curl gets two answers over one
//! connection; pipelined requests are answered in order; a request split byte by byte
//! is answered once whole; `Connection: close` and HTTP/1.0 close after the response;
//! malformed and too large requests get 400 and a close; plus unit tests of the parser.
//!
//! The async tests run once per available backend, the server as a task of the test's
//! own runtime and the client beside it (raw requests through `xev::net`, curl as a
//! child process polled with `try_wait`).

#[allow(dead_code)] // the example's `main`
#[path = "../../examples/http_hello.rs"]
mod http_hello;

use std::io::{self, ErrorKind};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http_hello::{
    answer, parse_request, response, Answered, Parsed, BAD_REQUEST, MAX_REQUEST, OK, OK_CLOSE,
    OK_KEEP_ALIVE,
};
use xev::net::{TcpListener, TcpStream};
use xev::time::{sleep, timeout};

/// How long any single client step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

/// The response to a HEAD request on a kept-alive HTTP/1.1 connection.
fn ok_head() -> &'static [u8] {
    &OK[..OK.len() - http_hello::BODY.len()]
}

/// Start the server as a task on the current runtime; its address.
fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    xev::spawn(async move {
        let r = http_hello::serve(listener).await;
        panic!("serve returned {r:?}");
    });
    addr
}

/// A client connection to `addr`, with Nagle off so small writes go out one by one.
async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

async fn send(s: &TcpStream, bytes: &[u8]) {
    let (r, _) = timeout(STEP, s.write_all(bytes.to_vec()))
        .await
        .expect("write timed out");
    r.expect("write");
}

/// Read exactly `n` bytes.
async fn recv(s: &TcpStream, n: usize) -> Vec<u8> {
    let (r, buf) = timeout(STEP, s.read_exact(vec![0u8; n]))
        .await
        .expect("read timed out");
    r.unwrap_or_else(|e| {
        panic!(
            "read_exact({n}): {e}; got {:?}",
            String::from_utf8_lossy(&buf)
        )
    });
    buf
}

/// Read until end of stream.
async fn recv_to_end(s: &TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let (r, b) = timeout(STEP, s.read(buf))
            .await
            .expect("read to end timed out");
        buf = b;
        match r.expect("read") {
            0 => return all,
            n => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Nothing arrives within `d` (the connection is open and silent).
async fn silent_for(s: &TcpStream, d: Duration) {
    if let Ok((r, buf)) = timeout(d, s.read(vec![0u8; 256])).await {
        let n = r.expect("read");
        panic!(
            "expected silence, got {n} bytes: {:?}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";

// ---------------------------------------------------------------------------------------
// curl

/// curl fetches the URL twice over one kept-alive connection (`curl -sv --http1.1 URL
/// URL`): both bodies arrive, and curl's log says it re-used the connection. Skipped
/// (with a message) only if curl is not installed.
#[xev::test(backend = "all")]
async fn curl_gets_two_answers_over_one_connection() {
    let addr = start();
    let url = format!("http://{addr}/");
    let child = Command::new("curl")
        .args(["-sv", "--http1.1", "--max-time", "10", &url, &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            println!("SKIPPED: curl not installed");
            return;
        }
        Err(e) => panic!("spawn curl: {e}"),
    };
    // curl runs as a child process; the server is a task of this runtime, so wait for
    // curl without blocking the thread.
    let started = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        assert!(started.elapsed() < STEP * 2, "curl did not finish");
        sleep(Duration::from_millis(5)).await;
    }
    let out = child.wait_with_output().expect("curl output");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "curl failed: {stderr}");
    assert_eq!(stdout, "Hello, World!Hello, World!", "stderr: {stderr}");
    // curl 7.88 logs "Re-using existing connection #0 with host 127.0.0.1"; newer
    // versions "Re-using existing http: connection with host ...".
    assert!(
        stderr.contains("Re-using existing"),
        "curl did not re-use the connection: {stderr}"
    );
    assert_eq!(
        stderr.matches("Connected to").count(),
        1,
        "curl connected more than once: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// Raw clients

/// Three requests in one write get three responses, in order (GET, HEAD, then GET with
/// `Connection: close`, whose responses differ), and then end of stream; three plain
/// GETs in one write leave the connection open for a fourth.
#[xev::test(backend = "all")]
async fn pipelined_requests_are_answered_in_order() {
    let addr = start();
    let s = connect(addr).await;
    let mut batch = Vec::new();
    batch.extend_from_slice(GET);
    batch.extend_from_slice(b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n");
    batch.extend_from_slice(b"GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    send(&s, &batch).await;
    let want = [OK, ok_head(), OK_CLOSE].concat();
    assert_eq!(text(&recv_to_end(&s).await), text(&want));

    let s = connect(addr).await;
    send(&s, &GET.repeat(3)).await;
    assert_eq!(recv(&s, 3 * OK.len()).await, OK.repeat(3));
    silent_for(&s, Duration::from_millis(50)).await;
    send(&s, GET).await;
    assert_eq!(recv(&s, OK.len()).await, OK);
}

/// Many pipelined requests in one write (more than one read's worth) are all answered,
/// in order, on one connection.
#[xev::test(backend = "all")]
async fn a_long_pipeline_is_answered_in_full() {
    let addr = start();
    let s = connect(addr).await;
    let n = 1000; // 27 KB of requests: several reads, a request split across two of them
    let c = xev::spawn({
        let s = connect(addr).await;
        async move {
            // Another connection is served meanwhile.
            send(&s, GET).await;
            assert_eq!(recv(&s, OK.len()).await, OK);
        }
    });
    send(&s, &GET.repeat(n)).await;
    assert_eq!(recv(&s, n * OK.len()).await, OK.repeat(n));
    c.await.expect("other connection");
    silent_for(&s, Duration::from_millis(20)).await;
}

/// A request written one byte at a time (each byte its own segment) is answered only
/// once its last byte arrives, and exactly once; so is a POST whose body is split the
/// same way; the connection then serves a whole request as usual.
#[xev::test(backend = "all")]
async fn a_request_split_byte_by_byte_is_answered_once_whole() {
    let addr = start();
    let s = connect(addr).await;
    let post = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    for req in [GET, &post[..]] {
        let (last, head) = req.split_last().unwrap();
        for &b in head {
            send(&s, &[b]).await;
            sleep(Duration::from_millis(1)).await;
        }
        silent_for(&s, Duration::from_millis(30)).await;
        send(&s, &[*last]).await;
        assert_eq!(text(&recv(&s, OK.len()).await), text(OK));
    }
    silent_for(&s, Duration::from_millis(30)).await;
    send(&s, GET).await;
    assert_eq!(recv(&s, OK.len()).await, OK);
}

/// A request split across two writes in the middle of a header, with the next request
/// starting in the same write as the end of the first.
#[xev::test(backend = "all")]
async fn requests_split_across_writes_keep_their_order() {
    let addr = start();
    let s = connect(addr).await;
    let two = [GET, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"].concat();
    for cut in [1, 10, GET.len() - 1, GET.len() + 1, two.len() - 2] {
        send(&s, &two[..cut]).await;
        sleep(Duration::from_millis(5)).await;
        send(&s, &two[cut..]).await;
        let want = [OK, ok_head()].concat();
        assert_eq!(
            text(&recv(&s, want.len()).await),
            text(&want),
            "cut at {cut}"
        );
    }
}

/// `Connection: close` gets its response and then end of stream; the same for HTTP/1.0
/// without keep-alive. HTTP/1.0 with `Connection: keep-alive` stays open (and says so).
#[xev::test(backend = "all")]
async fn close_requests_get_a_response_then_end_of_stream() {
    let addr = start();
    for req in [
        &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: t\r\nconnection: Keep-Alive, CLOSE\r\n\r\n",
        b"GET / HTTP/1.0\r\n\r\n",
    ] {
        let s = connect(addr).await;
        send(&s, req).await;
        assert_eq!(
            text(&recv_to_end(&s).await),
            text(OK_CLOSE),
            "{}",
            text(req)
        );
    }
    let s = connect(addr).await;
    for _ in 0..2 {
        send(&s, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await;
        assert_eq!(recv(&s, OK_KEEP_ALIVE.len()).await, OK_KEEP_ALIVE);
    }
    // Requests after the closing one in the same write are not answered.
    let s = connect(addr).await;
    send(&s, &[b"GET / HTTP/1.0\r\n\r\n", GET].concat()).await;
    assert_eq!(text(&recv_to_end(&s).await), text(OK_CLOSE));
}

/// Malformed and too large requests get 400 and the connection closes; a good request
/// before the bad one in the same write is answered first. The server goes on serving.
#[xev::test(backend = "all")]
async fn garbage_gets_400_and_close() {
    let addr = start();
    let too_long_header = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_REQUEST)
    );
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"garbage\r\n\r\n".to_vec()),
        ("binary", vec![0, 1, 2, 3, 0xff, b'\r', b'\n']),
        ("no host", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
        (
            "two hosts",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
        ),
        ("http/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec()),
        (
            "lowercase version",
            b"GET / http/1.1\r\nHost: t\r\n\r\n".to_vec(),
        ),
        ("no target", b"GET  HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        ("no colon", b"GET / HTTP/1.1\r\nHost t\r\n\r\n".to_vec()),
        (
            "folded header",
            b"GET / HTTP/1.1\r\nHost: t\r\n x\r\n\r\n".to_vec(),
        ),
        ("bare LF", b"GET / HTTP/1.1\nHost: t\n\n".to_vec()),
        (
            "bad length",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n".to_vec(),
        ),
        (
            "conflicting lengths",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
                .to_vec(),
        ),
        (
            "huge length",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
        ),
        (
            "chunked",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        ("too long header", too_long_header.into_bytes()),
        (
            "body too large",
            format!("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {MAX_REQUEST}\r\n\r\n")
                .into_bytes(),
        ),
    ];
    for (what, req) in &bad {
        let s = connect(addr).await;
        send(&s, req).await;
        assert_eq!(text(&recv_to_end(&s).await), text(BAD_REQUEST), "{what}");
    }
    // A good request, then garbage, in one write.
    let s = connect(addr).await;
    send(&s, &[GET, b"nonsense\r\n\r\n"].concat()).await;
    assert_eq!(
        text(&recv_to_end(&s).await),
        text(&[OK, BAD_REQUEST].concat())
    );
    // A request line that never ends: 400 once it passes the limit, without waiting
    // for its end.
    let s = connect(addr).await;
    send(&s, b"GET /").await;
    send(&s, &vec![b'a'; MAX_REQUEST]).await;
    assert_eq!(text(&recv_to_end(&s).await), text(BAD_REQUEST));
    // Still serving.
    let s = connect(addr).await;
    send(&s, GET).await;
    assert_eq!(recv(&s, OK.len()).await, OK);
}

/// A 400 reaches a client that keeps sending after its bad request (the server reads
/// and discards instead of resetting the connection), and the server then closes.
#[xev::test(backend = "all")]
async fn a_400_survives_a_client_that_keeps_sending() {
    let addr = start();
    let s = connect(addr).await;
    send(&s, b"garbage\r\n\r\n").await;
    assert_eq!(recv(&s, BAD_REQUEST.len()).await, BAD_REQUEST);
    // The server's write side is shut: end of stream next, while we still send.
    for _ in 0..5 {
        send(&s, &[b'x'; 1000]).await;
    }
    assert_eq!(recv_to_end(&s).await, b"");
}

/// Clients that vanish (mid-request, mid-pipeline, or after a reset) cost the server
/// nothing but their connection.
#[xev::test(backend = "all")]
async fn clients_vanishing_mid_request_do_not_disturb_the_server() {
    let addr = start();
    let s = connect(addr).await;
    send(&s, b"GET / HTTP/1.1\r\nHo").await;
    drop(s);
    // Many pipelined requests and no reading: the server's writes then fail or stall
    // until the close.
    let s = connect(addr).await;
    send(&s, &GET.repeat(200)).await;
    drop(s);
    // Reset (SO_LINGER 0) with unread responses.
    let s = std::net::TcpStream::connect(addr).expect("connect");
    socket_linger_zero(&s);
    use std::io::Write;
    (&s).write_all(&GET.repeat(10)).expect("write");
    drop(s);
    sleep(Duration::from_millis(20)).await;
    let s = connect(addr).await;
    send(&s, GET).await;
    assert_eq!(recv(&s, OK.len()).await, OK);
}

/// Set `SO_LINGER` to 0 so that closing resets the connection.
fn socket_linger_zero(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `l`, a live linger struct of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------
// The parser, unit by unit

fn complete(len: usize, http11: bool, keep_alive: bool, head: bool) -> Parsed {
    Parsed::Complete {
        len,
        http11,
        keep_alive,
        head,
    }
}

#[test]
fn parse_complete_requests() {
    assert_eq!(parse_request(GET), complete(GET.len(), true, true, false));
    let r = b"HEAD /x?y=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), true, true, true));
    let r = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), false, false, false));
    let r = b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), false, true, false));
    let r = b"GET / HTTP/1.1\r\nHOST: t\r\nConnection:close\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), true, false, false));
    let r = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade, close\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), true, false, false));
    // Leading empty lines are skipped and counted.
    let r = b"\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(parse_request(r), complete(r.len(), true, true, false));
    // A body is part of the request; what follows it is not.
    let r = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabcGET";
    assert_eq!(parse_request(r), complete(r.len() - 3, true, true, false));
    // Equal duplicate lengths are fine; header values may hold obs-text and tabs.
    let r = b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\ncontent-length: 1\r\nX: \xc3\xa9\t1\r\n\r\nz";
    assert_eq!(parse_request(r), complete(r.len(), true, true, false));
    // Only the first request counts.
    let two = [GET, GET].concat();
    assert_eq!(parse_request(&two), complete(GET.len(), true, true, false));
}

#[test]
fn parse_every_prefix_of_a_request_is_partial() {
    let r = b"POST /p HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody";
    for cut in 0..r.len() {
        assert_eq!(parse_request(&r[..cut]), Parsed::Partial, "cut at {cut}");
    }
    assert_eq!(parse_request(r), complete(r.len(), true, true, false));
    assert_eq!(parse_request(b""), Parsed::Partial);
    assert_eq!(parse_request(b"\r"), Parsed::Partial);
    assert_eq!(parse_request(b"\r\n"), Parsed::Partial);
}

#[test]
fn parse_rejects_malformed_requests_early() {
    for bad in [
        &b"garbage\r\n"[..],
        b"G(T / HTTP/1.1",         // not a token: known before the line ends
        b"GET / HTTP/1.1\rX",      // CR without LF
        b"GET / HTTP/1.1\n",       // bare LF
        b"GET / HTTP/1.1 x\r\n",   // four parts
        b"GET /\x01 HTTP/1.1\r\n", // control byte in the target
        b"\x16\x03\x01\x02\x00",   // a TLS client hello
        b"GET / HTTP/1.1\r\n: empty name\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: \r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n",
        b"GET / HTTP/1.1\r\n\r\n", // no Host
        b"GET / HTTP/1.2\r\nHost: t\r\n\r\n",
    ] {
        assert_eq!(parse_request(bad), Parsed::Invalid, "{:?}", text(bad));
    }
}

#[test]
fn parse_limits_the_size() {
    // Exactly MAX_REQUEST bytes is accepted; one more is not.
    let head = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: ";
    let fit = |body: usize| {
        let mut r = format!("{}{body}\r\n\r\n", text(head)).into_bytes();
        r.resize(r.len() + body, b'b');
        r
    };
    let mut body = MAX_REQUEST - 100;
    while fit(body).len() < MAX_REQUEST {
        body += 1;
    }
    let r = fit(body);
    assert_eq!(r.len(), MAX_REQUEST);
    assert_eq!(parse_request(&r), complete(r.len(), true, true, false));
    assert_eq!(parse_request(&fit(body + 1)), Parsed::Invalid);
    // A body announced too large is refused before it arrives.
    assert_eq!(parse_request(&fit(body + 1)[..100]), Parsed::Invalid);
    // An unfinished head past the limit is refused; below it, it is partial.
    let long = [&b"GET /"[..], &vec![b'a'; MAX_REQUEST]].concat();
    assert_eq!(parse_request(&long), Parsed::Invalid);
    assert_eq!(parse_request(&long[..MAX_REQUEST]), Parsed::Partial);
    let long = [GET, &vec![b'\r'; 1][..]].concat();
    assert_eq!(parse_request(&long), complete(GET.len(), true, true, false));
    let empty_lines = b"\r\n".repeat(MAX_REQUEST);
    assert_eq!(parse_request(&empty_lines), Parsed::Invalid);
}

#[test]
fn responses_match_the_request() {
    assert_eq!(response(true, true, false), OK);
    assert_eq!(response(false, true, false), OK_KEEP_ALIVE);
    assert_eq!(response(true, false, false), OK_CLOSE);
    assert_eq!(response(false, false, false), OK_CLOSE);
    assert_eq!(response(true, true, true), ok_head());
    for r in [OK, OK_KEEP_ALIVE, OK_CLOSE] {
        let s = text(r);
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n") && s.ends_with("\r\n\r\nHello, World!"));
        assert!(s.contains("\r\nContent-Length: 13\r\n"));
    }
}

#[test]
fn answer_batches_in_order_and_stops_at_close_or_garbage() {
    let mut out = Vec::new();
    let head = b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n";
    let input = [GET, head, &GET[..10]].concat();
    let a = answer(&input, &mut out);
    assert_eq!(
        a,
        Answered {
            consumed: GET.len() + head.len(),
            close: false
        }
    );
    assert_eq!(out, [OK, ok_head()].concat());

    // Appends to what `out` holds; stops after a closing request.
    let close = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let input = [GET, close, GET].concat();
    let a = answer(&input, &mut out);
    assert_eq!(
        a,
        Answered {
            consumed: GET.len() + close.len(),
            close: true
        }
    );
    assert_eq!(out, [OK, ok_head(), OK, OK_CLOSE].concat());

    // Garbage after good requests: their answers, then 400; everything used up.
    out.clear();
    let input = [GET, b"x y z\r\n", GET].concat();
    let a = answer(&input, &mut out);
    assert_eq!(
        a,
        Answered {
            consumed: input.len(),
            close: true
        }
    );
    assert_eq!(out, [OK, BAD_REQUEST].concat());

    // Nothing complete: nothing answered, nothing used.
    out.clear();
    assert_eq!(
        answer(b"GET / HT", &mut out),
        Answered {
            consumed: 0,
            close: false
        }
    );
    assert!(out.is_empty());
}
