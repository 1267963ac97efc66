//! A minimal HTTP/1.1 server on xev's async API: every request gets `Hello, World!`.
//!
//! ```text
//! cargo run --release --example http_hello -- [PORT] [--threads N [--distribute]] [--pooled]
//! curl -v http://127.0.0.1:PORT/ http://127.0.0.1:PORT/   # the second request re-uses the connection
//! wrk -t1 -c50 -d5s http://127.0.0.1:PORT/
//! ```
//!
//! It listens on 127.0.0.1:`PORT` (default 8080; 0 picks a free port; the bound address
//! is printed) until killed. One task per connection (`xev::spawn`), owned buffers that
//! go back and forth with every read and write:
//!
//! - keep-alive by default for HTTP/1.1, close for HTTP/1.0 unless it asks for
//!   keep-alive; `Connection: close` is honoured (the response, then the close);
//! - pipelining: every complete request in what one read returned is answered, in
//!   order, and the responses go out in one write; a request split over several reads
//!   waits for its end;
//! - the next read is in flight while a write of the responses is pending (the write
//!   and the read are polled together, by [`write_while_reading`]);
//! - a malformed request, or one larger than [`MAX_REQUEST`] bytes, gets
//!   `400 Bad Request` and the connection is closed (after a short lingering drain, so
//!   the client reads the 400 rather than a reset); a request body in chunked transfer
//!   coding is not supported (400);
//! - no allocation per request once a connection's buffers have grown to their working
//!   size.
//!
//! With `--threads N` it serves on a thread-per-core [`xev::rt::Pool`] of `N` workers
//! ([`serve_pool`]): each worker has its own `SO_REUSEPORT` listener on the port and the
//! kernel spreads the connections, or with `--distribute` worker 0 accepts them all and
//! hands them to the workers round robin (the std socket moves; the connection task is
//! built on its worker). `benches/http` measured both on 2 workers: see its output.
//!
//! The server is [`serve`] plus the pure parsing functions [`parse_request`] and
//! [`answer`]; `benches/http.rs` and `runtime-tests/tests/http_hello.rs` include this
//! file with `#[path]` and use them directly.

use std::future::{poll_fn, Future};
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use xev::net::{TcpListener, TcpStream};
use xev::notify::Notify;

/// The largest request accepted, head and body together: larger ones get a 400.
pub const MAX_REQUEST: usize = 8 * 1024;

/// The size of each connection's read buffer.
const READ_BUF: usize = 8 * 1024;

/// How long accepting pauses after running out of descriptors (unless a connection
/// closes first).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// How long a connection being closed after an error keeps reading (and discarding)
/// what the client still sends, so that the client reads our response rather than a
/// reset.
const LINGER: Duration = Duration::from_secs(1);

/// The body of every response.
pub const BODY: &[u8] = b"Hello, World!";

/// The response to an HTTP/1.1 request that keeps the connection open.
pub const OK: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

/// The response to an HTTP/1.0 request that asked for keep-alive.
pub const OK_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\n\r\nHello, World!";

/// The response to a request after which the connection closes.
pub const OK_CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nHello, World!";

/// The response to a malformed or too large request (the connection then closes).
pub const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// What [`parse_request`] found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request of `len` bytes (head and body).
    Complete {
        /// Its length in bytes.
        len: usize,
        /// HTTP/1.1 (true) or HTTP/1.0 (false).
        http11: bool,
        /// Whether the connection stays open after the response.
        keep_alive: bool,
        /// A `HEAD` request: the response has no body.
        head: bool,
    },
    /// The start of a request that is valid so far: wait for more bytes.
    Partial,
    /// Malformed, or larger than [`MAX_REQUEST`]: answer 400 and close.
    Invalid,
}

/// Whether `b` may appear in a token (a method or a header name, RFC 9110 `tchar`).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether `b` may appear in a header value (visible ASCII, obs-text, space, tab).
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80
}

/// The position of the first `\r\n` in `buf`, or Err(()) if a byte before it cannot be in
/// a line (a bare `\r` or `\n`, or a control byte `ok` rejects), or Ok(None) if there is
/// none yet.
fn line_end(buf: &[u8], ok: impl Fn(u8) -> bool) -> Result<Option<usize>, ()> {
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\r' {
            return match buf.get(i + 1) {
                Some(b'\n') => Ok(Some(i)),
                Some(_) => Err(()),
                None => Ok(None),
            };
        }
        if !ok(b) {
            return Err(());
        }
    }
    Ok(None)
}

/// `a` equals `b` ignoring ASCII case.
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether the comma-separated list `value` contains `token` (ignoring case and spaces).
fn list_has(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| eq_ignore_case(t.trim_ascii(), token))
}

/// Parse the request at the start of `buf` (RFC 9112, the parts a hello server needs):
/// the request line (`METHOD SP TARGET SP HTTP/1.x`, lines ending in CRLF; empty lines
/// before it are skipped), the headers (a token, a colon, a value; a folded line is
/// invalid), and a body of `Content-Length` bytes. HTTP/1.1 requires one `Host` header.
/// `Connection: close` (and HTTP/1.0 without `Connection: keep-alive`) ends the
/// connection after the response. `Transfer-Encoding` is not supported (invalid).
///
/// A line found invalid makes the request [`Parsed::Invalid`] as soon as it is complete
/// (or as soon as a byte no line may hold arrives), without waiting for the rest.
pub fn parse_request(buf: &[u8]) -> Parsed {
    let too_large = |len: usize| len > MAX_REQUEST;
    // Empty lines before the request line.
    let mut at = 0;
    while buf[at..].starts_with(b"\r\n") {
        at += 2;
    }
    // Request line.
    let line = &buf[at..];
    let Ok(end) = line_end(line, |b| (0x21..=0x7e).contains(&b) || b == b' ') else {
        return Parsed::Invalid;
    };
    let Some(end) = end else {
        return partial_line(line, buf.len());
    };
    let mut parts = line[..end].split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Invalid;
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || target.is_empty() {
        return Parsed::Invalid;
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        _ => return Parsed::Invalid,
    };
    at += end + 2;
    if too_large(at) {
        return Parsed::Invalid;
    }
    // Headers.
    let (mut close, mut keep_alive) = (false, false);
    let mut content_length: Option<usize> = None;
    let mut hosts = 0;
    loop {
        let rest = &buf[at..];
        let Ok(end) = line_end(rest, is_value_byte) else {
            return Parsed::Invalid;
        };
        let Some(end) = end else {
            if too_large(buf.len()) {
                return Parsed::Invalid;
            }
            return Parsed::Partial;
        };
        let line = &rest[..end];
        at += end + 2;
        if too_large(at) {
            return Parsed::Invalid;
        }
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Parsed::Invalid;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Parsed::Invalid; // includes a folded line (starting with a space)
        }
        if eq_ignore_case(name, b"connection") {
            close |= list_has(value, b"close");
            keep_alive |= list_has(value, b"keep-alive");
        } else if eq_ignore_case(name, b"content-length") {
            let Some(n) = parse_length(value) else {
                return Parsed::Invalid;
            };
            if content_length.is_some_and(|m| m != n) {
                return Parsed::Invalid;
            }
            content_length = Some(n);
        } else if eq_ignore_case(name, b"transfer-encoding") {
            return Parsed::Invalid;
        } else if eq_ignore_case(name, b"host") {
            hosts += 1;
        }
    }
    if http11 && hosts != 1 {
        return Parsed::Invalid;
    }
    let len = match at.checked_add(content_length.unwrap_or(0)) {
        Some(len) if !too_large(len) => len,
        _ => return Parsed::Invalid,
    };
    if buf.len() < len {
        return Parsed::Partial;
    }
    Parsed::Complete {
        len,
        http11,
        keep_alive: !close && (http11 || keep_alive),
        head: method == b"HEAD",
    }
}

/// An unfinished request line: partial, unless it is already too long or its method so
/// far is not a token.
fn partial_line(line: &[u8], total: usize) -> Parsed {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let method_so_far = line.split(|&b| b == b' ').next().unwrap_or_default();
    if total > MAX_REQUEST || !method_so_far.iter().all(|&b| is_tchar(b)) {
        return Parsed::Invalid;
    }
    Parsed::Partial
}

/// A `Content-Length` value: decimal digits only, no overflow.
fn parse_length(v: &[u8]) -> Option<usize> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0usize, |n, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
    })
}

/// The response to a complete request.
pub fn response(http11: bool, keep_alive: bool, head: bool) -> &'static [u8] {
    let r = match (keep_alive, http11) {
        (false, _) => OK_CLOSE,
        (true, true) => OK,
        (true, false) => OK_KEEP_ALIVE,
    };
    if head {
        &r[..r.len() - BODY.len()]
    } else {
        r
    }
}

/// What [`answer`] did with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answered {
    /// Bytes of input used up; the rest is the start of a request still incomplete.
    pub consumed: usize,
    /// The connection must close once the responses are written.
    pub close: bool,
}

/// Answer every complete request at the start of `input`, in order, appending the
/// responses to `out`. Stops after a request that closes the connection, and at an
/// invalid one (whose answer is [`BAD_REQUEST`]; then all of `input` counts as used).
pub fn answer(input: &[u8], out: &mut Vec<u8>) -> Answered {
    let mut at = 0;
    loop {
        match parse_request(&input[at..]) {
            Parsed::Complete {
                len,
                http11,
                keep_alive,
                head,
            } => {
                at += len;
                out.extend_from_slice(response(http11, keep_alive, head));
                if !keep_alive {
                    return Answered {
                        consumed: at,
                        close: true,
                    };
                }
                if at == input.len() {
                    return Answered {
                        consumed: at,
                        close: false,
                    };
                }
            }
            Parsed::Partial => {
                return Answered {
                    consumed: at,
                    close: false,
                }
            }
            Parsed::Invalid => {
                out.extend_from_slice(BAD_REQUEST);
                return Answered {
                    consumed: input.len(),
                    close: true,
                };
            }
        }
    }
}

/// Whether an accept error means "out of descriptors or memory": pause accepting.
fn out_of_resources(e: &io::Error) -> bool {
    xev::fd::is_out_of_descriptors(e)
}

/// Whether an accept error concerns one connection only (the next accept may succeed).
/// Windows: the kinds std maps Winsock's per-connection errors to.
#[cfg(windows)]
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::PermissionDenied
    )
}

/// Whether an accept error concerns one connection only (the next accept may succeed).
#[cfg(unix)]
fn about_one_connection(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ECONNABORTED
                | libc::ECONNRESET
                | libc::EPROTO
                | libc::EPERM
                | libc::EINTR
                | libc::ENETDOWN
                | libc::ENOPROTOOPT
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
                | libc::ENETUNREACH
        )
    ) || is_enonet(e)
}

/// `ENONET` (Linux only).
#[cfg(unix)]
fn is_enonet(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    return e.raw_os_error() == Some(libc::ENONET);
    #[cfg(not(target_os = "linux"))]
    return {
        let _ = e;
        false
    };
}

/// Serve HTTP on `listener` until accepting fails for good (an error about the listener
/// itself, such as `EBADF`; errors about one connection are skipped, and running out of
/// descriptors pauses accepting for up to 50 ms or until a connection closes).
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    accept_loop(listener, |stream, closed| {
        xev::spawn(async move {
            connection(stream).await;
            closed.notify();
        });
    })
    .await
}

/// Accept on `listener` and hand each connection (with the `Notify` to notify when it
/// closes) to `dispatch`; the error handling of [`serve`].
async fn accept_loop(
    listener: TcpListener,
    mut dispatch: impl FnMut(TcpStream, Notify),
) -> io::Result<()> {
    // Notified whenever a connection closes (and frees its descriptor).
    let closed = Notify::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) if out_of_resources(&e) => {
                let _ = xev::time::timeout(ACCEPT_BACKOFF, closed.notified()).await;
                continue;
            }
            Err(e) if about_one_connection(&e) => continue,
            Err(e) => return Err(e),
        };
        // Responses go out as soon as they are written (a failure only costs latency).
        let _ = stream.set_nodelay(true);
        dispatch(stream, closed.clone());
    }
}

/// How the workers of a [`Pool`](xev::rt::Pool) share the port in [`serve_pool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Each worker has its own `SO_REUSEPORT` listener and the kernel spreads the
    /// connections (the default of `--threads`).
    ReusePort,
    /// Worker 0 accepts every connection and hands them out round robin (`--distribute`).
    Distribute,
}

/// A `SO_REUSEPORT` listener (Unix only).
fn bind_reuseport(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    #[cfg(unix)]
    return TcpListener::bind_reuseport(addr);
    #[cfg(not(unix))]
    return Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("no SO_REUSEPORT here for {addr}: use --distribute"),
    ));
}

/// Serve HTTP on every worker of `pool`, on `addr` (port 0 picks a free port); returns
/// the bound address once every listener is up. The servers run until the pool is shut
/// down. Call it from outside the pool (it blocks until the listeners are bound).
pub fn serve_pool(
    pool: &xev::rt::Pool,
    addr: std::net::SocketAddr,
    sharing: Sharing,
) -> io::Result<std::net::SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel::<io::Result<std::net::SocketAddr>>();
    let mut bound = addr;
    let listeners = match sharing {
        Sharing::ReusePort => pool.threads(),
        Sharing::Distribute => 1,
    };
    for i in 0..listeners {
        let tx = tx.clone();
        let handle = pool.handle();
        // Detached: the server runs until the pool shuts down.
        drop(pool.spawn_on(i, move || async move {
            let listener = match sharing {
                Sharing::ReusePort => bind_reuseport(bound),
                Sharing::Distribute => TcpListener::bind(bound),
            };
            let listener = match listener.and_then(|l| l.local_addr().map(|a| (l, a))) {
                Ok((l, a)) => {
                    let _ = tx.send(Ok(a));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let r = match sharing {
                Sharing::ReusePort => serve(listener).await,
                Sharing::Distribute => {
                    let mut next = 0;
                    accept_loop(listener, |stream, closed| {
                        let to = next % handle.threads();
                        next += 1;
                        if to == 0 {
                            xev::spawn(async move {
                                connection(stream).await;
                                closed.notify();
                            });
                            return;
                        }
                        // Off this loop and onto worker `to`'s as a plain socket.
                        let std = std::net::TcpStream::from(xev::fd::OwnedFd::from(stream));
                        drop(handle.spawn_on(to, move || async move {
                            connection(TcpStream::from(std)).await;
                            closed.notify();
                        }));
                    })
                    .await
                }
            };
            if let Err(e) = r {
                eprintln!("http_hello: worker {i} stopped accepting: {e}");
            }
        }));
        // The first listener fixes the port the others share.
        bound = rx
            .recv()
            .map_err(|_| io::Error::other("the pool shut down"))??;
    }
    Ok(bound)
}

/// Poll `write` to completion, polling the read in `read` (if any) meanwhile. Returns
/// the write's output and, if the read finished in the meantime, its output (`read` is
/// then `None`). The write is polled first: a write that ends at once (a socket with
/// room, on the poll backend) leaves the read unpolled, for the caller to await next,
/// so a read that would only start waiting costs nothing extra here; while the write is
/// pending (always on io_uring), the read is in flight beside it.
///
/// Both futures are pinned by the caller, so neither is moved again here: a future
/// moved is copied whole, and a connection's futures are cold in the cache by the time
/// its next request comes (one per connection, many connections).
pub async fn write_while_reading<W: Future, R: Future>(
    mut write: std::pin::Pin<&mut W>,
    mut read: std::pin::Pin<&mut Option<R>>,
) -> (W::Output, Option<R::Output>) {
    let mut done = None;
    let out = poll_fn(|cx| {
        if let Poll::Ready(out) = write.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        if done.is_none() {
            if let Some(Poll::Ready(r)) = read.as_mut().as_pin_mut().map(|f| f.poll(cx)) {
                done = Some(r);
                read.set(None);
            }
        }
        Poll::Pending
    })
    .await;
    (out, done)
}

/// Serve one connection until the client closes it, asks to close, or sends something
/// invalid.
async fn connection(stream: TcpStream) {
    let mut rbuf: Box<[u8]> = vec![0u8; READ_BUF].into_boxed_slice();
    // Responses of one batch; keeps its capacity.
    let mut wbuf: Vec<u8> = Vec::with_capacity(4 * 1024);
    // The start of a request split across reads (empty in the steady state).
    let mut pending: Vec<u8> = Vec::new();
    let mut read = pin!(None);
    // A read that finished while a write was in flight.
    let mut finished = None;
    read.set(Some(stream.read(rbuf)));
    loop {
        let (res, buf) = match finished.take() {
            Some(r) => r,
            None => {
                let r = read.as_mut().as_pin_mut().expect("a read in flight").await;
                read.set(None);
                r
            }
        };
        rbuf = buf;
        let n = match res {
            Ok(0) | Err(_) => return, // end of stream (a partial request is dropped) or reset
            Ok(n) => n,
        };
        wbuf.clear();
        let close = if pending.is_empty() {
            let a = answer(&rbuf[..n], &mut wbuf);
            if !a.close {
                pending.extend_from_slice(&rbuf[a.consumed..n]);
            }
            a.close
        } else {
            pending.extend_from_slice(&rbuf[..n]);
            let a = answer(&pending, &mut wbuf);
            pending.drain(..a.consumed);
            a.close
        };
        if close {
            let (res, _) = stream.write_all(wbuf).await;
            if res.is_ok() {
                linger(&stream, rbuf).await;
            }
            return;
        }
        read.set(Some(stream.read(rbuf)));
        if wbuf.is_empty() {
            continue;
        }
        let write = pin!(stream.write_all(wbuf));
        let ((res, buf), done) = write_while_reading(write, read.as_mut()).await;
        wbuf = buf;
        if res.is_err() {
            return;
        }
        // `rbuf` comes back with the read, finished meanwhile or awaited next.
        finished = done;
    }
}

/// Close gracefully after a final response: send end of stream, then read and discard
/// what the client still sends, until it closes or [`LINGER`] passes (closing with
/// unread bytes would reset the connection, and the client could lose the response).
async fn linger(stream: &TcpStream, mut buf: Box<[u8]>) {
    if stream.shutdown(Shutdown::Write).await.is_err() {
        return;
    }
    let _ = xev::time::timeout(LINGER, async {
        loop {
            let (res, b) = stream.read(buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                return;
            }
        }
    })
    .await;
}

/// [`serve`] with pooled reads ([`connection_pooled`]): an idle keep-alive connection
/// holds no read, request or response buffer (`--pooled`; Unix).
#[cfg(unix)]
pub async fn serve_pooled(listener: TcpListener) -> io::Result<()> {
    let closed = Notify::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) if out_of_resources(&e) => {
                let _ = xev::time::timeout(ACCEPT_BACKOFF, closed.notified()).await;
                continue;
            }
            Err(e) if about_one_connection(&e) => continue,
            Err(e) => return Err(e),
        };
        let _ = stream.set_nodelay(true);
        let closed = closed.clone();
        xev::spawn(async move {
            connection_pooled(stream).await;
            closed.notify();
        });
    }
}

#[cfg(unix)]
thread_local! {
    /// Response buffers between uses (pooled mode): a connection holds one only while
    /// its responses are written.
    static RESPONSES: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One connection served with [`TcpStream::read_pooled`]: the read buffer comes from
/// the thread's pool when bytes arrive and goes back once they are answered, the
/// response buffer likewise, and a request split over reads is kept (copied) only until
/// it is complete. Same answers as [`connection`]; the next read starts after the
/// responses are written.
#[cfg(unix)]
async fn connection_pooled(stream: TcpStream) {
    // The start of a request split across reads (no capacity in the steady state).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let data = match stream.read_pooled().await {
            Ok(d) if !d.is_empty() => d,
            _ => return, // end of stream (a partial request is dropped) or reset
        };
        let mut wbuf = RESPONSES
            .with(|r| r.borrow_mut().pop())
            .unwrap_or_else(|| Vec::with_capacity(4 * 1024));
        let close = if pending.is_empty() {
            let a = answer(&data, &mut wbuf);
            if !a.close {
                pending.extend_from_slice(&data[a.consumed..]);
            }
            a.close
        } else {
            pending.extend_from_slice(&data);
            let a = answer(&pending, &mut wbuf);
            pending.drain(..a.consumed);
            if pending.is_empty() {
                pending = Vec::new();
            }
            a.close
        };
        drop(data);
        let (res, mut buf) = if wbuf.is_empty() {
            (Ok(()), wbuf)
        } else {
            stream.write_all(wbuf).await
        };
        buf.clear();
        RESPONSES.with(|r| r.borrow_mut().push(buf));
        if res.is_err() {
            return;
        }
        if close {
            if stream.shutdown(Shutdown::Write).await.is_ok() {
                let _ = xev::time::timeout(LINGER, async {
                    while matches!(stream.read_pooled().await, Ok(d) if !d.is_empty()) {}
                })
                .await;
            }
            return;
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port: u16 = 8080;
    let mut threads: Option<usize> = None;
    let mut sharing = Sharing::ReusePort;
    // Pooled reads (one thread; `--threads` serves with per-connection buffers).
    let mut pooled = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => {
                let n = args.next().ok_or("--threads needs a number")?;
                threads = Some(n.parse().map_err(|e| format!("--threads {n:?}: {e}"))?);
            }
            "--distribute" => sharing = Sharing::Distribute,
            "--pooled" => pooled = true,
            p => port = p.parse().map_err(|e| format!("port {p:?}: {e}"))?,
        }
    }
    if let Some(n) = threads {
        let pool = xev::rt::Builder::new().threads(n).build_pool()?;
        let addr = serve_pool(&pool, ([127, 0, 0, 1], port).into(), sharing)?;
        println!("http_hello: listening on http://{addr}/ ({n} workers, {sharing:?})");
        // Serve until killed: park this thread while the workers run.
        loop {
            std::thread::park();
        }
    }
    let rt = xev::rt::Runtime::new()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let backend = xev::rt::with_loop(|lp| lp.backend().name());
        println!(
            "http_hello: listening on http://{}/ ({backend})",
            listener.local_addr()?
        );
        #[cfg(unix)]
        if pooled {
            return serve_pooled(listener).await;
        }
        #[cfg(not(unix))]
        if pooled {
            eprintln!("http_hello: --pooled needs Unix; serving with per-connection buffers");
        }
        serve(listener).await
    })?;
    Ok(())
}
