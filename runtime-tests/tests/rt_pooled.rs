//! `TcpStream::read_pooled`: data arrives in a buffer taken from the thread's pool only
//! once it is there; buffers go back on drop; end of stream; errors; a read dropped while
//! waiting loses nothing; many idle connections hold no buffer.

use std::time::Duration;

use xev::net::{pooled_free_buffers, TcpListener, TcpStream, POOLED_READ_SIZE};
use xev::time::{sleep, timeout};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

/// Bytes written arrive in order; each read returns what has arrived (up to the pool
/// buffer's size); the buffer goes back to the pool when dropped.
#[xev::test(backend = "all")]
async fn reads_arrive_in_order_and_buffers_return() {
    let (c, s) = pair().await;
    let data: Vec<u8> = (0..3 * POOLED_READ_SIZE + 17).map(|i| i as u8).collect();
    let w = {
        let data = data.clone();
        xev::spawn(async move {
            c.write_all(data).await.0.unwrap();
            c
        })
    };
    let mut got = Vec::new();
    while got.len() < data.len() {
        let b = s.read_pooled().await.unwrap();
        assert!(!b.is_empty() && b.len() <= POOLED_READ_SIZE);
        got.extend_from_slice(&b);
        let before = pooled_free_buffers();
        drop(b);
        assert_eq!(pooled_free_buffers(), before + 1, "buffer not returned");
    }
    assert_eq!(got, data);
    let c = w.await.unwrap();
    drop(c);
    // End of stream: an empty buffer, again and again.
    assert!(s.read_pooled().await.unwrap().is_empty());
    assert!(s.read_pooled().await.unwrap().is_empty());
}

/// A pooled read dropped while it waits loses no data: the next read gets all of it.
#[xev::test(backend = "all")]
async fn dropped_read_loses_nothing() {
    let (c, s) = pair().await;
    // Times out: nothing was sent.
    assert!(timeout(Duration::from_millis(20), s.read_pooled())
        .await
        .is_err());
    // Dropped after the data arrived but before it was polled again.
    let mut fut = Box::pin(s.read_pooled());
    assert!(futures_poll_once(fut.as_mut()).await.is_none());
    c.write_all(b"abc".to_vec()).await.0.unwrap();
    sleep(Duration::from_millis(20)).await;
    drop(fut);
    let b = s.read_pooled().await.unwrap();
    assert_eq!(&b[..], b"abc");
}

/// Poll a future once; `Some` if it finished.
async fn futures_poll_once<F: std::future::Future + Unpin>(mut f: F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// Reads on a listening socket fail (ENOTCONN) and on a reset connection report the
/// reset; the runtime keeps running.
#[xev::test(backend = "all")]
async fn errors_are_reported() {
    let (c, s) = pair().await;
    // RST: SO_LINGER 0 then close.
    let fd = std::os::fd::OwnedFd::from(c);
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a live `linger` of the given size on an fd we own.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&lg as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    drop(fd);
    let r = s.read_pooled().await;
    match r {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET), "{e}"),
        Ok(b) => assert!(b.is_empty(), "{b:?}"),
    }
    // The runtime still works.
    let (c, s) = pair().await;
    c.write_all(b"x".to_vec()).await.0.unwrap();
    assert_eq!(&s.read_pooled().await.unwrap()[..], b"x");
}

/// Many idle connections waiting in `read_pooled` hold no buffer: the pool neither
/// shrinks nor grows while they wait, and they all get their data when it comes.
#[xev::test(backend = "all")]
async fn idle_connections_hold_no_buffer() {
    let mut pairs = Vec::new();
    for _ in 0..64 {
        pairs.push(pair().await);
    }
    let free = pooled_free_buffers();
    let mut tasks = Vec::new();
    let mut clients = Vec::new();
    for (c, s) in pairs {
        clients.push(c);
        tasks.push(xev::spawn(async move {
            let b = s.read_pooled().await.unwrap();
            b.to_vec()
        }));
    }
    sleep(Duration::from_millis(30)).await;
    assert_eq!(pooled_free_buffers(), free, "waiting reads took buffers");
    for (i, c) in clients.iter().enumerate() {
        c.write_all(vec![i as u8; 10]).await.0.unwrap();
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), vec![i as u8; 10]);
    }
}

// ---- examples/http_hello.rs in pooled mode (`serve_pooled`) ----------------------------

#[allow(dead_code)] // the example's `main`
#[path = "../../examples/http_hello.rs"]
mod http_hello;

use http_hello::{BAD_REQUEST, OK, OK_CLOSE};

const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

async fn start_pooled() -> TcpStream {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    xev::spawn(async move {
        let r = http_hello::serve_pooled(l).await;
        panic!("serve_pooled returned {r:?}");
    });
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read until `n` bytes arrived (or end of stream), with a deadline.
async fn recv_n(s: &TcpStream, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        let b = timeout(Duration::from_secs(10), s.read_pooled())
            .await
            .expect("response timed out")
            .expect("read");
        if b.is_empty() {
            break;
        }
        got.extend_from_slice(&b);
    }
    got
}

/// Pipelined requests, a request split byte by byte, then `Connection: close`: the
/// answers come in order on one connection, then end of stream.
#[xev::test(backend = "all")]
async fn pooled_server_answers_pipelined_split_and_close() {
    let s = start_pooled().await;
    s.write_all(REQ.repeat(3)).await.0.unwrap();
    assert_eq!(recv_n(&s, 3 * OK.len()).await, OK.repeat(3));
    for &b in REQ {
        s.write_all(vec![b]).await.0.unwrap();
        sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(recv_n(&s, OK.len()).await, OK);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec())
        .await
        .0
        .unwrap();
    assert_eq!(recv_n(&s, usize::MAX).await, OK_CLOSE);
}

/// Garbage gets a 400, then end of stream.
#[xev::test(backend = "all")]
async fn pooled_server_rejects_garbage() {
    let s = start_pooled().await;
    s.write_all(b"NOT HTTP\r\n\r\n".to_vec()).await.0.unwrap();
    assert_eq!(recv_n(&s, usize::MAX).await, BAD_REQUEST);
}
