//! `xev::compat::Compat` through `futures-io`: bulk copies both ways, `AsyncBufRead`,
//! write-behind and close semantics, split halves, errors, and dropping the wrapper with
//! operations in flight.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::io::{copy, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, Cursor};
use xev::compat::{Compat, CompatIo};
use xev::net::{TcpListener, TcpStream};
use xev::time::timeout;

const LOST: Duration = Duration::from_secs(10);

/// A connected pair: (client, server side).
async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn within<F: Future>(what: &str, f: F) -> F::Output {
    timeout(LOST, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing after {LOST:?}"))
}

/// Poll `fut` once: it must be pending.
async fn pending_once<F: Future>(fut: std::pin::Pin<&mut F>) {
    let mut fut = fut;
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

#[xev::test(backend = "all")]
async fn copy_one_mib_both_ways() {
    const LEN: usize = 1 << 20;
    let (client, server) = pair().await;
    // The server echoes with futures' copy from its read half to its write half.
    let echo = xev::spawn(async move {
        let (mut rd, mut wr) = Compat::new(server).into_split();
        let n = copy(&mut rd, &mut wr).await?;
        wr.close().await?;
        Ok::<_, io::Error>(n)
    });
    let (mut rd, mut wr) = Compat::new(client).into_split();
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

#[xev::test(backend = "all")]
async fn buf_read_lines_across_small_buffers() {
    let (client, server) = pair().await;
    let text = "alpha\nbeta\r\n\nthis line is longer than the read buffer\ngamma";
    server.write_all(text).await.0.unwrap();
    server.shutdown(Shutdown::Write).await.unwrap();
    // A 4-byte read buffer: most lines straddle several reads.
    let mut r = Compat::with_capacity(4, 4, client);
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = within("read_line", r.read_line(&mut line)).await.unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, line.len());
        lines.push(line);
    }
    assert_eq!(
        lines,
        [
            "alpha\n",
            "beta\r\n",
            "\n",
            "this line is longer than the read buffer\n",
            "gamma"
        ]
    );
    // End of stream again, and fill_buf agrees.
    assert_eq!(r.fill_buf().await.unwrap(), b"");
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).await.unwrap(), 0);
}

#[xev::test(backend = "all")]
async fn read_buffer_and_zero_length_reads_and_writes() {
    let (client, server) = pair().await;
    let mut c = Compat::new(client);
    // Zero-length buffers: Ok(0) at once, no operation.
    assert_eq!(c.read(&mut []).await.unwrap(), 0);
    assert_eq!(c.write(&[]).await.unwrap(), 0);
    server.write_all(b"hello world".to_vec()).await.0.unwrap();
    let mut two = [0u8; 2];
    c.read_exact(&mut two).await.unwrap();
    assert_eq!(&two, b"he");
    // The rest of that read waits in the wrapper's buffer.
    let buffered = c.read_buffer().to_vec();
    assert!(b"llo world".starts_with(&buffered) && !buffered.is_empty());
    let mut rest = vec![0u8; 9];
    c.read_exact(&mut rest).await.unwrap();
    assert_eq!(rest, b"llo world");
}

#[xev::test(backend = "all")]
async fn close_delivers_everything_then_writes_fail() {
    const LEN: usize = 3 << 20; // far more than the socket buffers take at once
    let (client, server) = pair().await;
    let mut w = Compat::with_capacity(1024, 8192, client);
    let data = pattern(LEN);
    let reader = xev::spawn(async move {
        // Not `read_to_end`: futures' version zero-fills the vector's whole spare
        // capacity again after every `Pending`, which takes seconds in a debug build.
        let mut r = Compat::new(server);
        let mut got = Vec::new();
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    });
    // write_all returns once the last byte is in the wrapper's buffer; close must push
    // everything out before shutting the writing side down.
    w.write_all(&data).await.unwrap();
    within("close", w.close()).await.unwrap();
    let got = within("read_to_end", reader).await.unwrap().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == data);
    // After close: writes fail, flush and close again are fine.
    let e = w.write(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    let e = w.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    w.flush().await.unwrap();
    w.close().await.unwrap();
}

#[xev::test(backend = "all")]
async fn flush_waits_for_the_kernel_to_take_every_byte() {
    let (client, server) = pair().await;
    let mut w = Compat::with_capacity(16, 64, client);
    // Small writes: several land in the second buffer while the first is in flight.
    for i in 0..200u32 {
        w.write_all(format!("{i:04}\n").as_bytes()).await.unwrap();
    }
    within("flush", w.flush()).await.unwrap();
    // Everything reached the kernel: the peer reads it all without any more polling of
    // the writer.
    let (res, got) = server.read_exact(vec![0u8; 200 * 5]).await;
    res.unwrap();
    let expected: String = (0..200u32).map(|i| format!("{i:04}\n")).collect();
    assert_eq!(got, expected.as_bytes());
}

#[xev::test(backend = "all")]
async fn write_errors_surface_after_the_peer_resets() {
    let (client, server) = pair().await;
    // Close the peer with a reset (SO_LINGER 0), so writes fail fast.
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket and a properly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(server);
    xev::time::sleep(Duration::from_millis(20)).await;
    let mut w = Compat::new(client);
    let chunk = vec![1u8; 4096];
    let mut err = None;
    for _ in 0..1000 {
        if let Err(e) = w.write_all(&chunk).await {
            err = Some(e);
            break;
        }
        if let Err(e) = w.flush().await {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("writing to a reset connection fails");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ),
        "{e:?}"
    );
    // Reads report the reset too (or end of stream), never hang.
    let mut buf = [0u8; 16];
    match within("read after reset", w.read(&mut buf)).await {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}"),
        Ok(n) => panic!("read {n} bytes from a reset connection"),
    }
}

#[xev::test(backend = "all")]
async fn split_halves_work_from_two_tasks_and_reunite() {
    let (a, b) = pair().await;
    let (ra, wa) = Compat::new(a).into_split();
    let (mut rb, mut wb) = Compat::new(b).into_split();
    let ping = xev::spawn(async move {
        let mut wa = wa;
        wa.write_all(b"ping").await.unwrap();
        wa.flush().await.unwrap();
        wa
    });
    let mut buf = [0u8; 4];
    rb.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    wb.write_all(b"pong").await.unwrap();
    wb.flush().await.unwrap();
    let wa = ping.await.unwrap();
    let mut ra = ra;
    ra.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"pong");

    // Halves of different streams do not reunite; halves of one stream do.
    let (ra, wb) = match ra.reunite(wb) {
        Err(halves) => halves,
        Ok(_) => panic!("halves of two streams reunited"),
    };
    let mut a = ra.reunite(wa).expect("halves of one stream");
    let mut b = rb.reunite(wb).expect("halves of one stream");
    a.write_all(b"again").await.unwrap();
    a.close().await.unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"again");
}

/// The peer of a dropped wrapper sees end of stream: the fd was closed (it was the only
/// one referring to the connection), after the cancelled read ended.
#[xev::test(backend = "all")]
async fn dropping_with_a_read_in_flight_closes_the_fd() {
    for partial in [false, true] {
        let (client, server) = pair().await;
        let mut c = Compat::new(client);
        if partial {
            // Some bytes buffered, the read-ahead in flight.
            server.write_all(b"xy".to_vec()).await.0.unwrap();
            let mut one = [0u8; 1];
            c.read_exact(&mut one).await.unwrap();
        }
        {
            let mut buf = [0u8; 8];
            let mut read = pin!(c.read(&mut buf));
            if !partial {
                pending_once(read.as_mut()).await;
            }
        }
        // A write in flight too.
        c.write_all(&pattern(64 << 10)).await.unwrap();
        drop(c);
        // The server reads whatever arrived, then end of stream (or a reset: the
        // cancelled write may leave unread data behind): never a hang.
        let mut r = Compat::new(server);
        let mut sink = Vec::new();
        match within("peer of a dropped wrapper", r.read_to_end(&mut sink)).await {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e:?}"),
        }
    }
}

/// `CompatIo` is implemented for the TCP stream (the bound used in generic code).
#[test]
fn tcp_stream_is_compat_io() {
    fn is<T: CompatIo>() {}
    is::<TcpStream>();
}
