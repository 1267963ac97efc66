//! `xev::compat::Compat` over the other xev streams: Unix sockets (futures-io copies,
//! half-close, hyper HTTP/1.1 over a socket file), pipes (tokio-util's `LinesCodec`,
//! `tokio::io::copy`, write-behind and what flushing before a drop guarantees, one-way
//! ends), a child's stdin/stdout/stderr (`cat`), and files (positions tracked by the
//! wrapper, `read_line`, seeking with futures' and tokio's `AsyncSeek`, bad modes).
//!
//! Under valgrind, skip `file_` (file operations run on the thread pool on epoll) and
//! `child_` (pidfd).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_util::io::{copy, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, Cursor};
use xev::compat::Compat;
use xev::fs::File;
use xev::net::{UnixListener, UnixStream};
use xev::pipe::pipe;
use xev::time::timeout;

const LOST: Duration = Duration::from_secs(20);

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LOST, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {LOST:?}"))
}

/// Poll `fut` once: it must be pending.
async fn pending_once<F: Future>(mut fut: std::pin::Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// A fresh path in the temp directory (the file or socket is removed on drop).
struct TempPath(PathBuf);

static SEQ: AtomicUsize = AtomicUsize::new(0);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("xev-compat-more-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        TempPath(p)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn raw_os(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

// ---- Unix sockets -------------------------------------------------------------------

/// 1 MiB through a Unix socket pair and back: the far side echoes with futures' `copy`
/// between its split halves, and each side's `close` (shutdown of the writing side) ends
/// the other's copy.
#[xev::test(backend = "all")]
async fn unix_stream_copy_both_ways() {
    const LEN: usize = 1 << 20;
    let (a, b) = UnixStream::pair().unwrap();
    let echo = xev::spawn(async move {
        let (mut rd, mut wr) = Compat::new(b).into_split();
        let n = copy(&mut rd, &mut wr).await?;
        wr.close().await?;
        Ok::<_, io::Error>(n)
    });
    let (mut rd, mut wr) = Compat::new(a).into_split();
    let data = pattern(LEN);
    let sent = data.clone();
    let writer = xev::spawn(async move {
        let n = copy(&mut Cursor::new(sent), &mut wr).await?;
        wr.close().await?;
        Ok::<_, io::Error>(n)
    });
    let mut back = Vec::new();
    let n = within("echo", copy(&mut rd, &mut back)).await.unwrap();
    assert_eq!(n as usize, LEN);
    assert_eq!(writer.await.unwrap().unwrap() as usize, LEN);
    assert_eq!(echo.await.unwrap().unwrap() as usize, LEN);
    assert!(back == data, "the echoed MiB differs from what was sent");
}

/// `close` on a wrapped Unix stream is a half-close: the peer reads end of stream, and
/// can still answer; writing after close is `BrokenPipe` from the wrapper.
#[xev::test(backend = "all")]
async fn unix_stream_close_is_a_half_close() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut a = Compat::new(a);
    let mut b = Compat::new(b);
    a.write_all(b"question").await.unwrap();
    a.close().await.unwrap();
    let mut got = String::new();
    within("eof", b.read_to_string(&mut got)).await.unwrap();
    assert_eq!(got, "question");
    b.write_all(b"answer").await.unwrap();
    b.close().await.unwrap();
    let mut back = String::new();
    within("answer", a.read_to_string(&mut back)).await.unwrap();
    assert_eq!(back, "answer");
    let e = a.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}

/// hyper's HTTP/1.1 server and client on xev over a Unix socket file: two requests on
/// one connection (keep-alive), the second with a body the server echoes.
#[xev::test(backend = "all")]
async fn unix_stream_hyper_http1_request() {
    use http_body_util::{BodyExt, Full};
    use hyper::body::{Bytes, Incoming};
    use hyper::service::service_fn;
    use hyper::{client, server, Request, Response};
    use xev::compat::HyperTimer;

    let path = TempPath::new("hyper.sock");
    let listener = UnixListener::bind(&path.0).unwrap();
    let served = Rc::new(Cell::new(0u32));
    let count = served.clone();
    let server = xev::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let service = service_fn(move |req: Request<Incoming>| {
            let count = count.clone();
            async move {
                count.set(count.get() + 1);
                let head = format!("{} {} #{}\n", req.method(), req.uri().path(), count.get());
                let body = req.into_body().collect().await?.to_bytes();
                let mut out = head.into_bytes();
                out.extend_from_slice(&body);
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from(out))))
            }
        });
        server::conn::http1::Builder::new()
            .timer(HyperTimer)
            .serve_connection(Compat::new(stream), service)
            .await
            .map_err(io::Error::other)
    });

    let stream = Compat::new(UnixStream::connect(&path.0).await.unwrap());
    let (mut sender, conn) = client::conn::http1::handshake(stream).await.unwrap();
    let conn = xev::spawn(conn);
    let req = Request::get("/first")
        .header("host", "localhost")
        .body(Full::<Bytes>::default())
        .unwrap();
    let resp = within("first", sender.send_request(req)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "GET /first #1\n");
    let req = Request::post("/second")
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(b"over a unix socket")))
        .unwrap();
    let resp = within("second", sender.send_request(req)).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "POST /second #2\nover a unix socket");
    assert_eq!(
        served.get(),
        2,
        "both requests on the one accepted connection"
    );
    // Dropping the client's sender ends its connection; the server sees a clean end.
    drop(sender);
    within("client conn", conn).await.unwrap().unwrap();
    within("server conn", server).await.unwrap().unwrap();
}

// ---- pipes --------------------------------------------------------------------------

/// tokio-util's `LinesCodec` over a pipe: `FramedWrite` on the wrapped sender,
/// `FramedRead` on the wrapped receiver, 1,000 lines; closing the sink only flushes (a
/// pipe has no shutdown), dropping it closes the end and the reader's stream ends.
#[xev::test(backend = "all")]
async fn pipe_lines_codec() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

    let (tx, rx) = pipe().unwrap();
    let writer = xev::spawn(async move {
        let mut sink = FramedWrite::new(Compat::new(tx), LinesCodec::new());
        for i in 0..1000 {
            sink.send(format!("line {i} {}", "x".repeat(i % 50)))
                .await?;
        }
        SinkExt::<String>::close(&mut sink).await?;
        Ok::<_, tokio_util::codec::LinesCodecError>(())
    });
    let mut lines = FramedRead::new(Compat::new(rx), LinesCodec::new());
    let mut n = 0;
    while let Some(line) = within("next line", lines.next()).await {
        assert_eq!(line.unwrap(), format!("line {n} {}", "x".repeat(n % 50)));
        n += 1;
    }
    assert_eq!(n, 1000);
    writer.await.unwrap().unwrap();
}

/// `tokio::io::copy` (no tokio runtime needed) forwards 1 MiB from one pipe into another
/// through the wrappers; the end of the first pipe ends the copy.
#[xev::test(backend = "all")]
async fn pipe_tokio_copy_between_pipes() {
    const LEN: usize = 1 << 20;
    let (tx1, rx1) = pipe().unwrap();
    let (tx2, rx2) = pipe().unwrap();
    let data = pattern(LEN);
    let sent = data.clone();
    let feeder = xev::spawn(async move { tx1.write_all(sent).await.0 });
    let forward = xev::spawn(async move {
        let mut from = Compat::new(rx1);
        let mut to = Compat::new(tx2);
        let n = tokio::io::copy(&mut from, &mut to).await?;
        tokio::io::AsyncWriteExt::shutdown(&mut to).await?; // flush; the drop closes
        Ok::<_, io::Error>(n)
    });
    let mut got = Vec::new();
    within("drain", rx2.read_to_end(&mut got)).await.unwrap();
    feeder.await.unwrap().unwrap();
    assert_eq!(forward.await.unwrap().unwrap() as usize, LEN);
    assert!(got == data, "the forwarded MiB differs");
}

/// Write-behind on a pipe nobody reads yet: `write_all` returns once the wrapper has
/// accepted every byte (some are still in its buffers), `flush` waits until they are all
/// in the pipe, and after flush + drop the reader gets every byte, then end of file.
#[xev::test(backend = "all")]
async fn pipe_flush_before_drop_delivers_everything() {
    const LEN: usize = 512 * 1024; // far more than a pipe holds (64 KiB by default)
    let (tx, rx) = pipe().unwrap();
    let data = pattern(LEN);
    let mut w = Compat::with_capacity(4096, 64 * 1024, tx);
    // Accepting LEN bytes needs the pipe drained: a reader starts after a while.
    let reader = xev::spawn(async move {
        xev::time::sleep(Duration::from_millis(20)).await;
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.map(|_| got)
    });
    within("write_all", w.write_all(&data)).await.unwrap();
    within("flush", w.flush()).await.unwrap();
    drop(w);
    let got = within("reader", reader).await.unwrap().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == data, "the reader got different bytes");
}

/// The other half of the contract: with the pipe full and nobody reading, bytes the
/// wrapper accepted are not in the pipe yet (`flush` is pending); dropping the wrapper
/// then loses them: the reader gets a prefix of what was written, then end of file.
#[xev::test(backend = "all")]
async fn pipe_drop_without_flush_loses_the_tail() {
    let (tx, rx) = pipe().unwrap();
    let cap = 16 * 1024;
    let mut w = Compat::with_capacity(4096, cap, tx);
    // Fill the pipe: write until a write is not accepted at once.
    let data = pattern(4 << 20);
    let mut accepted = 0;
    loop {
        let fut = w.write(&data[accepted..accepted + cap]);
        match timeout(Duration::from_millis(100), fut).await {
            Ok(n) => accepted += n.unwrap(),
            Err(_) => break, // the pipe and both write buffers are full
        }
        assert!(accepted + cap <= data.len(), "the pipe never filled");
    }
    {
        let mut flush = pin!(w.flush());
        pending_once(flush.as_mut()).await;
    }
    drop(w);
    let mut got = Vec::new();
    within("read to eof", rx.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        got.len() < accepted,
        "{} of {accepted} bytes arrived: nothing was lost",
        got.len()
    );
    assert!(got == data[..got.len()], "what arrived is not a prefix");
}

/// A pipe end goes one way: reading through a wrapped sender or writing through a
/// wrapped receiver fails with the kernel's `EBADF` (the write reports it on flush at the
/// latest), and the loop and the other end go on working.
#[xev::test(backend = "all")]
async fn pipe_wrong_direction_is_ebadf() {
    let (tx, rx) = pipe().unwrap();
    let mut wtx = Compat::new(tx);
    let mut buf = [0u8; 8];
    let e = wtx.read(&mut buf).await.unwrap_err();
    assert_eq!(raw_os(&e), Some(libc::EBADF), "{e}");
    let mut wrx = Compat::new(rx);
    let e = match wrx.write(b"nope").await {
        Ok(_) => wrx.flush().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(raw_os(&e), Some(libc::EBADF), "{e}");
    // The right directions still work on the same wrappers.
    wtx.write_all(b"fine").await.unwrap();
    wtx.flush().await.unwrap();
    drop(wtx);
    let mut got = String::new();
    within("read", wrx.read_to_string(&mut got)).await.unwrap();
    assert_eq!(got, "fine");
}

/// Writing into a pipe whose reader is gone: the write-behind error (`BrokenPipe`, no
/// `SIGPIPE`) is reported by the flush at the latest.
#[xev::test(backend = "all")]
async fn pipe_reader_gone_is_broken_pipe_on_flush() {
    let (tx, rx) = pipe().unwrap();
    drop(rx);
    let mut w = Compat::new(tx);
    let e = match w.write(b"into the void").await {
        Ok(_) => w.flush().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
}

// ---- child stdio --------------------------------------------------------------------

/// `cat` through wrapped stdin and stdout: 2,000 lines written with `write_all`, stdin
/// flushed and dropped (end of file for `cat`), every line read back with `read_line`
/// concurrently, then the child exits 0. stderr, wrapped too, ends empty.
#[xev::test(backend = "all")]
async fn child_cat_lines_through_compat() {
    use std::process::{Command, Stdio};
    let mut child = xev::process::spawn(
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .unwrap();
    let mut stdin = Compat::new(child.stdin.take().unwrap());
    let mut stdout = Compat::new(child.stdout.take().unwrap());
    let mut stderr = Compat::new(child.stderr.take().unwrap());
    let line = |i: usize| format!("line {i}: {}\n", "y".repeat(i % 97));
    let feeder = xev::spawn(async move {
        for i in 0..2000 {
            stdin.write_all(line(i).as_bytes()).await?;
        }
        stdin.flush().await?;
        drop(stdin);
        Ok::<_, io::Error>(())
    });
    let mut got = String::new();
    let mut n = 0;
    loop {
        got.clear();
        if within("line", stdout.read_line(&mut got)).await.unwrap() == 0 {
            break;
        }
        assert_eq!(got, line(n));
        n += 1;
    }
    assert_eq!(n, 2000);
    feeder.await.unwrap().unwrap();
    let mut err = Vec::new();
    within("stderr", stderr.read_to_end(&mut err))
        .await
        .unwrap();
    assert!(err.is_empty());
    assert!(within("wait", child.wait()).await.unwrap().success());
}

/// A child that exits without reading its stdin: writing through the wrapper ends in
/// `BrokenPipe` (never `SIGPIPE`); its stdout, wrapped, still reads to the end.
#[xev::test(backend = "all")]
async fn child_that_ignores_stdin_gives_broken_pipe() {
    use std::process::{Command, Stdio};
    let mut child = xev::process::spawn(
        Command::new("sh")
            .args(["-c", "echo bye"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped()),
    )
    .unwrap();
    let mut stdin = Compat::new(child.stdin.take().unwrap());
    let mut stdout = Compat::new(child.stdout.take().unwrap());
    let mut out = String::new();
    within("stdout", stdout.read_to_string(&mut out))
        .await
        .unwrap();
    assert_eq!(out, "bye\n");
    assert!(within("wait", child.wait()).await.unwrap().success());
    let data = pattern(256 * 1024);
    let e = match stdin.write_all(&data).await {
        Ok(()) => stdin.flush().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
}

// ---- files --------------------------------------------------------------------------

/// Lines written through `AsyncWrite` in several small writes (buffers of a few bytes,
/// so positions advance over many `pwrite`s), closed; then read back through a new
/// wrapper with `read_line` (tiny read buffer) and `read_to_end`, from offset 0 although
/// the file's own offset was moved: the wrapper tracks its own positions.
#[xev::test(backend = "all")]
async fn file_write_then_read_lines() {
    let path = TempPath::new("lines");
    let text: String = (0..300)
        .map(|i| format!("row {i} {}\n", "z".repeat(i % 13)))
        .collect();
    let mut w = Compat::with_capacity(8, 5, File::create(&path.0).await.unwrap());
    for chunk in text.as_bytes().chunks(11) {
        w.write_all(chunk).await.unwrap();
    }
    w.close().await.unwrap();
    let e = w.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    drop(w);
    assert_eq!(std::fs::read_to_string(&path.0).unwrap(), text);

    let mut std_file = std::fs::File::open(&path.0).unwrap();
    std::io::Seek::seek(&mut std_file, std::io::SeekFrom::Start(17)).unwrap();
    let mut r = Compat::with_capacity(7, 7, File::from(std_file));
    let mut line = String::new();
    for i in 0..3 {
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert_eq!(line, format!("row {i} {}\n", "z".repeat(i % 13)));
    }
    let mut rest = String::new();
    r.read_to_string(&mut rest).await.unwrap();
    let first3: usize = (0..3)
        .map(|i| format!("row {i} {}\n", "z".repeat(i % 13)).len())
        .sum();
    assert_eq!(rest, text[first3..]);
    // At end of file: 0, again and again.
    let mut buf = [0u8; 4];
    assert_eq!(r.read(&mut buf).await.unwrap(), 0);
    assert_eq!(r.read(&mut buf).await.unwrap(), 0);
}

/// One wrapper on a file opened for reading and writing: the read and write positions
/// are separate, both from 0, so what was written and flushed is read back from the start;
/// a file written behind the wrapper's back grows and the read position continues.
#[xev::test(backend = "all")]
async fn file_read_and_write_positions_are_separate() {
    let path = TempPath::new("rw");
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path.0)
        .await
        .unwrap();
    let mut c = Compat::new(f);
    c.write_all(b"hello ").await.unwrap();
    c.flush().await.unwrap();
    let mut buf = [0u8; 64];
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"hello ");
    assert_eq!(c.read(&mut buf).await.unwrap(), 0, "end of file");
    c.write_all(b"world").await.unwrap();
    c.flush().await.unwrap();
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"world", "the read continues where it was");
    assert_eq!(std::fs::read(&path.0).unwrap(), b"hello world");
}

/// futures' `AsyncSeekExt` on a wrapped file: `Current` after a write is the end of what
/// was written (flushed first), `Start`/`End`/`Current` reads land at the right offsets,
/// a write after a seek goes there, and a negative target is `InvalidInput` and moves
/// nothing.
#[xev::test(backend = "all")]
async fn file_seek_futures_io() {
    use futures_util::io::AsyncSeekExt;
    use std::io::SeekFrom;
    let path = TempPath::new("seek");
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path.0)
        .await
        .unwrap();
    let data = pattern(100_000);
    let mut c = Compat::with_capacity(1000, 4096, f);
    c.write_all(&data).await.unwrap();
    // Not flushed yet: the seek flushes first.
    assert_eq!(c.seek(SeekFrom::Current(0)).await.unwrap(), 100_000);
    assert_eq!(std::fs::metadata(&path.0).unwrap().len(), 100_000);
    assert_eq!(c.seek(SeekFrom::Start(10)).await.unwrap(), 10);
    let mut five = [0u8; 5];
    c.read_exact(&mut five).await.unwrap();
    assert_eq!(five, data[10..15]);
    // Current counts from the next byte a read returns (not from the read-ahead).
    assert_eq!(c.seek(SeekFrom::Current(0)).await.unwrap(), 15);
    assert_eq!(c.seek(SeekFrom::Current(-5)).await.unwrap(), 10);
    c.read_exact(&mut five).await.unwrap();
    assert_eq!(five, data[10..15]);
    assert_eq!(c.seek(SeekFrom::End(-5)).await.unwrap(), 99_995);
    let mut tail = Vec::new();
    c.read_to_end(&mut tail).await.unwrap();
    assert_eq!(tail, data[99_995..]);
    let e = c.seek(SeekFrom::Current(-200_000)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = c.seek(SeekFrom::End(i64::MAX)).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        c.seek(SeekFrom::Current(0)).await.unwrap(),
        100_000,
        "unmoved"
    );
    // A write after a seek goes to the new position; past the end it leaves a hole.
    c.seek(SeekFrom::Start(2)).await.unwrap();
    c.write_all(b"XY").await.unwrap();
    c.seek(SeekFrom::End(3)).await.unwrap();
    c.write_all(b"!").await.unwrap();
    assert_eq!(c.seek(SeekFrom::Current(0)).await.unwrap(), 100_004);
    c.seek(SeekFrom::Start(0)).await.unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).await.unwrap();
    let mut expect = data.clone();
    expect[2..4].copy_from_slice(b"XY");
    expect.extend_from_slice(&[0, 0, 0, b'!']);
    assert!(all == expect, "the file differs from what was written");
}

/// tokio's traits, apart from futures' extension traits (the names clash).
mod tokio_side {
    use std::io::{self, SeekFrom};

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
    use xev::compat::Compat;
    use xev::fs::File;

    use super::TempPath;

    /// tokio's `AsyncSeekExt` (`start_seek` + `poll_complete`) on a wrapped file, with
    /// `stream_position` (no seek started) and `rewind`.
    #[xev::test(backend = "all")]
    async fn file_seek_tokio_io() {
        let path = TempPath::new("tseek");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path.0)
            .await
            .unwrap();
        let mut c = Compat::new(f);
        c.write_all(b"0123456789").await.unwrap();
        assert_eq!(
            c.stream_position().await.unwrap(),
            10,
            "written, not flushed"
        );
        assert_eq!(c.seek(SeekFrom::End(-4)).await.unwrap(), 6);
        let mut s = String::new();
        c.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "6789");
        assert_eq!(c.stream_position().await.unwrap(), 10);
        c.rewind().await.unwrap();
        let mut three = [0u8; 3];
        c.read_exact(&mut three).await.unwrap();
        assert_eq!(&three, b"012");
        assert_eq!(c.stream_position().await.unwrap(), 3);
        let e = c.seek(SeekFrom::Current(-4)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(c.stream_position().await.unwrap(), 3);
    }
}

/// Reading a wrapped write-only file is the kernel's `EBADF`, and so is writing a
/// read-only one (reported by flush at the latest); the wrappers go on working for the
/// direction the file allows.
#[xev::test(backend = "all")]
async fn file_wrong_mode_is_ebadf() {
    let path = TempPath::new("mode");
    let mut w = Compat::new(File::create(&path.0).await.unwrap());
    let mut buf = [0u8; 4];
    let e = w.read(&mut buf).await.unwrap_err();
    assert_eq!(raw_os(&e), Some(libc::EBADF), "{e}");
    w.write_all(b"data").await.unwrap();
    w.close().await.unwrap();
    let mut r = Compat::new(File::open(&path.0).await.unwrap());
    let e = match r.write(b"nope").await {
        Ok(_) => r.flush().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(raw_os(&e), Some(libc::EBADF), "{e}");
    let mut s = String::new();
    r.read_to_string(&mut s).await.unwrap();
    assert_eq!(s, "data");
}

/// Dropping a wrapped file with a read in flight and a write not flushed is safe (the
/// operations are cancelled; on epoll a pool thread may still finish one), and the loop
/// goes on: the file can be opened and read again at once.
#[xev::test(backend = "all")]
async fn file_drop_mid_operation() {
    let path = TempPath::new("drop");
    std::fs::write(&path.0, pattern(1 << 20)).unwrap();
    let f = File::options()
        .read(true)
        .write(true)
        .open(&path.0)
        .await
        .unwrap();
    let mut c = Compat::new(f);
    c.write_all(b"head").await.unwrap(); // a pwrite in flight (or done)
    {
        let mut buf = [0u8; 10];
        let mut read = pin!(c.read(&mut buf));
        let _ = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    }
    drop(c);
    let got = xev::fs::read(&path.0).await.unwrap();
    assert_eq!(got.len(), 1 << 20);
}

// ---- HyperTimer: one timer task per runtime -------------------------------------------

/// Poll a hyper sleep once: it must be pending.
async fn pending_sleep(s: &mut std::pin::Pin<Box<dyn hyper::rt::Sleep>>) {
    std::future::poll_fn(|cx| {
        assert!(s.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// Sleeps registered latest-first, after one of 10 s, fire in deadline order, each not
/// before its deadline, and long before 10 s: a deadline earlier than the one the timer
/// task waits for re-arms it. 20,000 sleeps started and dropped meanwhile (hyper's
/// pattern: a header read timeout per request) neither fire nor delay the live ones.
#[xev::test(backend = "all")]
async fn hyper_timer_orders_deadlines_and_forgets_dropped_sleeps() {
    use hyper::rt::Timer;
    use std::time::Instant;
    use xev::compat::HyperTimer;

    let start = Instant::now();
    let mut long = HyperTimer.sleep(Duration::from_secs(10));
    pending_sleep(&mut long).await;
    // Let the timer task run: it now waits for the 10 s deadline.
    xev::time::sleep(Duration::from_millis(1)).await;
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let mut tasks = Vec::new();
    for ms in [400u64, 300, 200, 100] {
        let mut s = HyperTimer.sleep(Duration::from_millis(ms));
        pending_sleep(&mut s).await;
        let order = order.clone();
        tasks.push(xev::spawn(async move {
            s.await;
            let at = start.elapsed();
            assert!(
                at >= Duration::from_millis(ms),
                "{ms} ms sleep fired at {at:?}"
            );
            order.borrow_mut().push(ms);
        }));
    }
    // Let each task wait on its sleep with its own waker (so the order they end in is
    // the order the timer wakes them, even if the loop below outlasts the deadlines).
    xev::time::sleep(Duration::from_millis(1)).await;
    for _ in 0..20_000 {
        let mut s = HyperTimer.sleep(Duration::from_millis(50));
        // Pending, unless this thread was descheduled for 50 ms since the line above.
        let _ = std::future::poll_fn(|cx| Poll::Ready(s.as_mut().poll(cx))).await;
        drop(s);
    }
    for t in tasks {
        within("sleep", t).await.unwrap();
    }
    assert_eq!(*order.borrow(), [100, 200, 300, 400]);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "waited for the 10 s sleep: {took:?}"
    );
    pending_sleep(&mut long).await;
    drop(long);
    // The dropped 50 ms sleeps are long past: still nothing fires out of turn, and a new
    // sleep after them times right.
    let t0 = Instant::now();
    within("late sleep", HyperTimer.sleep(Duration::from_millis(15))).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(15));
    assert!(
        took < Duration::from_secs(5),
        "waited for the 10 s sleep: {took:?}"
    );
}

/// A reset sleep fires at its new deadline only; `Timer::reset` to a past deadline makes
/// it ready at once.
#[xev::test(backend = "all")]
async fn hyper_timer_reset_moves_the_deadline() {
    use hyper::rt::Timer;
    use std::time::Instant;
    use xev::compat::HyperTimer;

    let t = HyperTimer;
    let mut s = t.sleep(Duration::from_millis(10));
    pending_sleep(&mut s).await;
    let t0 = Instant::now();
    t.reset(&mut s, t0 + Duration::from_millis(300));
    pending_sleep(&mut s).await;
    // The old 10 ms entry must not wake it.
    xev::time::sleep(Duration::from_millis(30)).await;
    if t0.elapsed() < Duration::from_millis(290) {
        pending_sleep(&mut s).await;
    }
    within("reset sleep", &mut s).await;
    assert!(t0.elapsed() >= Duration::from_millis(300));
    t.reset(&mut s, Instant::now() - Duration::from_millis(1));
    within("past deadline", s).await;
}

/// Each runtime of a thread times its own hyper sleeps: two runtimes used in turn, and a
/// third after the first is dropped (its timer task with it), all fire.
#[test]
fn hyper_timer_per_runtime_of_a_thread() {
    runtime_tests::each_backend(per_runtime_on);
}

fn per_runtime_on(backend: xev::Backend) {
    use hyper::rt::Timer;
    use xev::compat::HyperTimer;

    let runtime = || xev::rt::Builder::new().backend(backend).build().unwrap();
    let nap = || async {
        let t0 = std::time::Instant::now();
        within("hyper sleep", HyperTimer.sleep(Duration::from_millis(10))).await;
        assert!(t0.elapsed() >= Duration::from_millis(10));
    };
    let a = runtime();
    let b = runtime();
    for _ in 0..2 {
        a.block_on(nap());
        b.block_on(nap());
    }
    // A sleep left waiting on `a` when `a` goes away never fires, and nothing breaks.
    let mut orphan = HyperTimer.sleep(Duration::from_millis(5));
    a.block_on(pending_sleep(&mut orphan));
    drop(a);
    b.block_on(nap());
    let c = runtime();
    c.block_on(nap());
    c.block_on(xev::time::sleep(Duration::from_millis(10)));
    let w = std::task::Waker::noop();
    assert!(orphan
        .as_mut()
        .poll(&mut std::task::Context::from_waker(w))
        .is_pending());
}
