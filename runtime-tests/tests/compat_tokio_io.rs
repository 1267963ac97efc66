//! `xev::compat::Compat` through tokio's I/O traits: tokio-util codecs, tokio-rustls
//! (handshake and echo), `AsyncBufRead`, shutdown semantics.

use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::{self, pki_types};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_util::codec::{Framed, LinesCodec};
use xev::compat::Compat;
use xev::net::{TcpListener, TcpStream};
use xev::time::timeout;

const LOST: Duration = Duration::from_secs(10);

async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    (client, server)
}

#[xev::test(backend = "all")]
async fn lines_codec_framed_both_ways() {
    let (client, server) = pair().await;
    let upper = xev::spawn(async move {
        let mut f = Framed::new(Compat::new(server), LinesCodec::new());
        let mut n = 0;
        while let Some(line) = f.next().await {
            f.send(line.unwrap().to_uppercase()).await.unwrap();
            n += 1;
        }
        n
    });
    let mut f = Framed::new(Compat::new(client), LinesCodec::new());
    for i in 0..100 {
        f.feed(format!("line {i}")).await.unwrap();
    }
    SinkExt::<String>::flush(&mut f).await.unwrap();
    for i in 0..100 {
        let got = timeout(LOST, f.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got, format!("LINE {i}"));
    }
    // Shut the client's writing side down: the server's stream of lines ends.
    f.get_mut().shutdown().await.unwrap();
    assert_eq!(timeout(LOST, upper).await.unwrap().unwrap(), 100);
    assert!(f.next().await.is_none(), "the server closed");
}

#[xev::test(backend = "all")]
async fn read_line_and_shutdown_semantics() {
    let (client, server) = pair().await;
    let mut c = Compat::with_capacity(3, 3, client);
    let mut s = Compat::new(server);
    c.write_all(b"first line\nsecond").await.unwrap();
    c.shutdown().await.unwrap();
    let e = c.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    c.shutdown().await.unwrap(); // again: fine
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "first line\n");
    line.clear();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "second");
    assert_eq!(s.read_line(&mut line).await.unwrap(), 0);
    // The other direction still works after the client's shutdown of its writing side.
    s.write_all(b"reply").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = String::new();
    c.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "reply");
}

/// A server config with a self-signed certificate for `localhost`, and a client config
/// that trusts exactly that certificate.
fn tls_configs() -> (TlsAcceptor, TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = ck.cert.der().clone();
    let key = pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

#[xev::test(backend = "all")]
async fn rustls_handshake_and_echo() {
    let (acceptor, connector) = tls_configs();
    let (client, server) = pair().await;
    let echo = xev::spawn(async move {
        let tls = acceptor.accept(Compat::new(server)).await?;
        let (mut r, mut w) = tokio::io::split(tls);
        let n = tokio::io::copy(&mut r, &mut w).await?;
        w.shutdown().await?;
        Ok::<_, io::Error>(n)
    });
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = timeout(LOST, connector.connect(name, Compat::new(client)))
        .await
        .unwrap()
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // Several round trips, then a bulk transfer that spans many TLS records.
    for i in 0..10 {
        let msg = format!("hello {i}");
        tls.write_all(msg.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut back = vec![0u8; msg.len()];
        timeout(LOST, tls.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    let bulk: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let (mut r, mut w) = tokio::io::split(tls);
    let data = bulk.clone();
    let writer = xev::spawn(async move {
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    timeout(LOST, r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(back.len(), bulk.len());
    assert!(back == bulk);
    let echoed = timeout(LOST, echo).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed as usize, 10 * "hello 0".len() + bulk.len());
}

#[xev::test(backend = "all")]
async fn rustls_rejects_an_untrusted_certificate() {
    let (acceptor, _) = tls_configs();
    let (_, other_connector) = tls_configs(); // trusts another certificate
    let (client, server) = pair().await;
    let srv = xev::spawn(async move { acceptor.accept(Compat::new(server)).await.map(drop) });
    let name = pki_types::ServerName::try_from("localhost").unwrap();
    let e = timeout(LOST, other_connector.connect(name, Compat::new(client)))
        .await
        .unwrap()
        .map(drop)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e:?}");
    // The server sees the client's alert (an error), not a hang.
    assert!(timeout(LOST, srv).await.unwrap().unwrap().is_err());
}

/// On the poll backend, a `Compat` socket reads without an operation: a read that waits
/// holds no Active completion, and its data arrives through the direct path (counted by
/// the loop). io_uring keeps one read in flight (read-ahead) instead. Both deliver every
/// byte in order, end of stream included.
#[xev::test(backend = "all")]
async fn compat_socket_reads_on_the_poll_backend_use_no_operation() {
    let poll = xev::rt::with_loop(|lp| lp.backend()) != xev::Backend::IoUring;
    let direct = || xev::rt::with_loop(|lp| lp.poll_direct_transfers());
    let (client, server) = pair().await;
    let before = direct();
    let reader = xev::spawn(async move {
        let mut r = Compat::new(server);
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.map(|_| got)
    });
    xev::rt::yield_now().await; // the reader waits for data
    let active = xev::rt::with_loop(|lp| lp.active());
    assert_eq!(active, usize::from(!poll), "operations of the waiting read");
    let mut w = Compat::new(client);
    for chunk in [&b"first "[..], b"second ", b"third"] {
        w.write_all(chunk).await.unwrap();
        w.flush().await.unwrap();
        xev::time::sleep(Duration::from_millis(2)).await;
    }
    w.shutdown().await.unwrap();
    let got = timeout(LOST, reader).await.expect("read_to_end").unwrap();
    assert_eq!(got.unwrap(), b"first second third");
    if poll {
        // At least the data (the chunks may arrive together) and the end of stream.
        assert!(direct() - before >= 2, "{}", direct() - before);
    }
}

fn poll_backend() -> bool {
    xev::rt::with_loop(|lp| lp.backend()) != xev::Backend::IoUring
}

fn direct() -> u64 {
    xev::rt::with_loop(|lp| lp.poll_direct_transfers())
}

/// On the poll backend, a `Compat` socket writes without an operation: each write that
/// the socket can take at once is one send (`send`, or `sendmsg` for several buffers)
/// from the caller's buffers, counted by the loop's direct path, so `Ok(n)` means the
/// kernel has the bytes and flush has nothing left to do. io_uring writes behind through
/// operations (the direct path never counts there). Both deliver every byte in order.
#[xev::test(backend = "all")]
async fn compat_socket_writes_on_the_poll_backend_use_no_operation() {
    let poll = poll_backend();
    let (client, server) = pair().await;
    let mut w = Compat::new(client);
    let before = direct();
    w.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
    // hyper's shape: headers and body in one vectored write, then a flush.
    let bufs = [
        io::IoSlice::new(b"content-length: 4\r\n\r\n"),
        io::IoSlice::new(b""),
        io::IoSlice::new(b"body"),
    ];
    let n = w.write_vectored(&bufs).await.unwrap();
    assert_eq!(n, 25, "a vectored write that fits is taken whole");
    if poll {
        assert_eq!(
            xev::rt::with_loop(|lp| lp.active()),
            0,
            "nothing in flight after the writes"
        );
    }
    w.flush().await.unwrap();
    let sent = direct() - before;
    assert_eq!(
        sent,
        if poll { 2 } else { 0 },
        "each write one direct send, and flush none"
    );
    let mut r = Compat::new(server);
    let mut got = vec![0u8; 17 + 25];
    timeout(LOST, r.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &got[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"
    );
    // Close flushes and shuts the writing side down: the peer reads end of stream.
    w.shutdown().await.unwrap();
    let mut rest = Vec::new();
    timeout(LOST, r.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty(), "end of stream after the data");
    let e = w.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "write after shutdown");
}

/// A write much larger than the socket buffers, to a reader that starts late and reads
/// slowly, arrives whole and in order, in plain and vectored writes of odd sizes. On the
/// poll backend the writer waits for the socket's edges with no operation in flight;
/// io_uring writes behind.
#[xev::test(backend = "all")]
async fn compat_large_write_to_a_slow_reader_arrives_complete_and_in_order() {
    const LEN: usize = 8 << 20;
    let poll = poll_backend();
    let (client, server) = pair().await;
    let data: Rc<Vec<u8>> = Rc::new((0..LEN).map(|i| (i % 251) as u8).collect());
    let finished = Rc::new(std::cell::Cell::new(false));
    let writer = xev::spawn({
        let data = data.clone();
        let finished = finished.clone();
        async move {
            let mut w = Compat::new(client);
            let mut at = 0;
            let mut i = 0usize;
            while at < data.len() {
                let end = (at + 1 + (i * 7919) % 150_000).min(data.len());
                if i.is_multiple_of(2) {
                    w.write_all(&data[at..end]).await?;
                    at = end;
                } else {
                    // Two buffers; a partial write may end in either.
                    let mid = at + (end - at) / 2;
                    let n = w
                        .write_vectored(&[
                            io::IoSlice::new(&data[at..mid]),
                            io::IoSlice::new(&data[mid..end]),
                        ])
                        .await?;
                    assert!(n > 0 && n <= end - at);
                    at += n;
                }
                i += 1;
            }
            w.flush().await?;
            finished.set(true);
            w.shutdown().await?;
            Ok::<_, io::Error>(())
        }
    });
    let before = direct();
    xev::time::sleep(Duration::from_millis(30)).await;
    assert!(!finished.get(), "the socket is full: the writer waits");
    if poll {
        assert!(direct() > before, "the writes took the direct path");
    }
    // (On the poll backend a write past the task's inline budget of direct transfers is
    // written behind through an operation, so one may be in flight here.)
    assert!(xev::rt::with_loop(|lp| lp.active()) <= 1);
    let mut r = Compat::new(server);
    let mut got = Vec::with_capacity(LEN);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = timeout(LOST, r.read(&mut buf)).await.unwrap().unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() % (1 << 20) < n {
            // Slow: a pause per MiB.
            xev::time::sleep(Duration::from_millis(2)).await;
        }
    }
    timeout(LOST, writer).await.unwrap().unwrap().unwrap();
    assert_eq!(got.len(), LEN);
    assert!(got == *data, "every byte, in order");
}

/// Writing to a peer that has closed (with unread data, so it resets) fails with the
/// connection's error from a write or a flush, on both backends, and the loop keeps
/// running.
#[xev::test(backend = "all")]
async fn compat_write_to_a_closed_peer_fails_and_the_loop_goes_on() {
    let (client, server) = pair().await;
    let mut w = Compat::new(client);
    w.write_all(b"unread").await.unwrap();
    w.flush().await.unwrap();
    xev::time::sleep(Duration::from_millis(5)).await;
    drop(server); // unread data: the peer resets the connection
    xev::time::sleep(Duration::from_millis(5)).await;
    let chunk = vec![7u8; 4096];
    let mut e = None;
    for _ in 0..1000 {
        let res = async {
            w.write_all(&chunk).await?;
            w.flush().await
        };
        if let Err(err) = timeout(LOST, res).await.unwrap() {
            e = Some(err);
            break;
        }
        xev::time::sleep(Duration::from_millis(1)).await;
    }
    let e = e.expect("writes to a reset connection fail");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{e:?}"
    );
    // Still failing, not hanging (written behind on io_uring: by the flush); close
    // reports an error or succeeds, but returns.
    let again = async {
        w.write_all(&chunk).await?;
        w.flush().await
    };
    assert!(timeout(LOST, again).await.unwrap().is_err());
    let _ = timeout(LOST, w.shutdown()).await.unwrap();
    // The loop goes on: a new connection works.
    let (client, server) = pair().await;
    let mut w = Compat::new(client);
    w.write_all(b"still here").await.unwrap();
    w.shutdown().await.unwrap();
    let mut got = Vec::new();
    timeout(LOST, Compat::new(server).read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"still here");
}

/// A `Compat` dropped while its write waits for the socket's edge (the poll backend's
/// direct path; an operation on io_uring) withdraws the wait: the connection and the
/// loop go on, the peer reads what was sent, then end of stream.
#[xev::test(backend = "all")]
async fn compat_dropped_while_a_write_waits() {
    let (client, server) = pair().await;
    let writer = xev::spawn(async move {
        let mut w = Compat::new(client);
        let chunk = vec![1u8; 64 * 1024];
        loop {
            w.write_all(&chunk).await.unwrap();
        }
    });
    xev::time::sleep(Duration::from_millis(20)).await;
    writer.abort(); // drops the wrapper in the middle of a waiting write
    xev::rt::yield_now().await;
    let mut got = Vec::new();
    timeout(LOST, Compat::new(server).read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert!(!got.is_empty() && got.iter().all(|&b| b == 1));
}
