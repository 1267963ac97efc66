//! Owned buffers in the async API: slices (`IoBuf::slice`, `IoBufMut::slice_mut`), the
//! `bytes` feature's `Bytes` / `BytesMut`, and vectored reads and writes (TCP, UDP,
//! files), including futures dropped mid-operation.
//!
//! File tests are named `file_*` (`File::open` runs on the blocking pool, which valgrind
//! cannot run; CI skips them there).

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use xev::fs::{File, OpenOptions};
use xev::net::{TcpListener, TcpStream, UdpSocket};
use xev::rt::{IoBuf, IoBufMut};
use xev::time::{sleep, timeout};

/// A connected pair: (client, server).
async fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    Ok((client, server))
}

/// Read exactly `n` bytes from `s` (bounded by a timeout: a lost byte fails, not hangs).
async fn read_n(s: &TcpStream, n: usize) -> io::Result<Vec<u8>> {
    let (r, buf) = timeout(Duration::from_secs(10), s.read_exact(vec![0u8; n]))
        .await
        .expect("the bytes arrive");
    r?;
    Ok(buf)
}

/// Poll `fut` once with the current task's context; it must be pending.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

fn invalid_input<T: std::fmt::Debug>(r: io::Result<T>) {
    let e = r.expect_err("InvalidInput expected");
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
}

// ---- whole buffers: read, write, write_all ------------------------------------------

/// How many socket transfers the poll backend did without an operation so far (0 on
/// io_uring).
fn direct_transfers() -> u64 {
    xev::rt::with_loop(|lp| lp.poll_direct_transfers())
}

fn on_poll_backend() -> bool {
    xev::rt::with_loop(|lp| lp.backend()) != xev::Backend::IoUring
}

/// One read into each whole-buffer type, as a single read fills it: a `Vec` up to its
/// capacity (its length grows to what arrived, never shrinks), a `Box<[u8]>` and a
/// `Buffer` over their length; the same allocation comes back. On the poll backend
/// these reads go straight into the caller's memory (counted), also after waiting for
/// the data, which a read started before the write does.
#[xev::test(backend = "all")]
async fn a_single_read_fills_each_buffer_type_in_place() -> io::Result<()> {
    let (client, server) = pair().await?;
    let before = direct_transfers();

    // Capacity, length 0: the length becomes what arrived.
    client.write_all(&b"hello"[..]).await.0?;
    let v = Vec::with_capacity(64);
    let ptr = v.as_ptr();
    let (n, v) = server.read(v).await;
    assert_eq!(
        (n?, &v[..], v.capacity(), v.as_ptr()),
        (5, &b"hello"[..], 64, ptr)
    );

    // Length 2, capacity 64: bytes land from the start, the length grows to 5.
    client.write_all(&b"world"[..]).await.0?;
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(b"ab");
    let (n, v) = server.read(v).await;
    assert_eq!((n?, &v[..]), (5, &b"world"[..]));

    // Length 16: the length stays, the bytes after what arrived are untouched.
    client.write_all(&b"xyz"[..]).await.0?;
    let (n, v) = server.read(vec![7u8; 16]).await;
    assert_eq!(n?, 3);
    assert_eq!(
        (&v[..3], &v[3..], v.len()),
        (&b"xyz"[..], &[7u8; 13][..], 16)
    );

    client.write_all(&b"boxed"[..]).await.0?;
    let bx: Box<[u8]> = vec![0u8; 8].into_boxed_slice();
    let ptr = bx.as_ptr();
    let (n, bx) = server.read(bx).await;
    assert_eq!(
        (n?, &bx[..5], bx.len(), bx.as_ptr()),
        (5, &b"boxed"[..], 8, ptr)
    );

    client.write_all(&b"buf"[..]).await.0?;
    let (n, b) = server.read(xev::Buffer::from(vec![0u8; 8])).await;
    assert_eq!((n?, &b.as_slice()[..3], b.len()), (3, &b"buf"[..], 8));

    // A read that waits: started before the peer writes.
    let reader = xev::spawn(async move {
        let (n, v) = server.read(Vec::with_capacity(32)).await;
        (n, v, server)
    });
    sleep(Duration::from_millis(20)).await;
    client.write_all(b"late".to_vec()).await.0?;
    let (n, v, server) = reader.await.unwrap();
    assert_eq!((n?, &v[..]), (4, &b"late"[..]));

    // End of stream: Ok(0), the Vec unchanged.
    client.shutdown(std::net::Shutdown::Write).await?;
    let (n, v) = server.read(vec![9u8; 4]).await;
    assert_eq!((n?, &v[..]), (0, &[9u8; 4][..]));

    if on_poll_backend() {
        // 5 reads above, the late one, end of stream, and the client's 6 writes.
        let direct = direct_transfers() - before;
        assert!(direct >= 13, "{direct} direct transfers");
    }
    Ok(())
}

/// A read with no room is `InvalidInput` (an `Ok(0)` would look like end of file) and
/// hands the buffer back; no data is lost: the next read gets it.
#[xev::test(backend = "all")]
async fn a_read_with_no_room_is_invalid_input() -> io::Result<()> {
    let (client, server) = pair().await?;
    client.write_all(&b"kept"[..]).await.0?;
    let (r, v) = server.read(Vec::new()).await;
    invalid_input(r);
    assert_eq!(v.capacity(), 0);
    let (r, bx) = server.read(Box::<[u8]>::from(&b""[..])).await;
    invalid_input(r);
    assert!(bx.is_empty());
    let mut full = Vec::with_capacity(4);
    full.extend_from_slice(b"abcd");
    let (r, _) = server.read(full.slice_mut(4..)).await;
    invalid_input(r);
    assert_eq!(read_n(&server, 4).await?, b"kept");
    Ok(())
}

/// `write_all` of a large whole `Vec` that goes partial many times (the peer reads only
/// after a pause): every byte arrives once, in order, and the same allocation comes
/// back; `write` of an empty buffer is `Ok(0)`, `write_all` of one `Ok(())`; a write to a
/// closed peer is an error, not a `SIGPIPE`.
#[xev::test(backend = "all")]
async fn write_all_of_a_whole_buffer_continues_after_partial_writes() -> io::Result<()> {
    let (client, server) = pair().await?;
    let big: Vec<u8> = (0..8 << 20).map(|i| (i % 253) as u8).collect();
    let want = big.clone();
    let ptr = big.as_ptr();
    let writer = xev::spawn(async move {
        let r = client.write_all(big).await;
        (r, client)
    });
    sleep(Duration::from_millis(20)).await;
    let got = read_n(&server, 8 << 20).await?;
    assert!(got == want, "the peer got every byte in order");
    let ((r, back), client) = writer.await.unwrap();
    r?;
    assert_eq!((back.as_ptr(), back.len()), (ptr, 8 << 20));

    let (n, _) = client.write(Vec::new()).await;
    assert_eq!(n?, 0);
    client.write_all(Box::<[u8]>::from(&b""[..])).await.0?;
    client.write_all(&b"end"[..]).await.0?;
    assert_eq!(read_n(&server, 3).await?, b"end");

    drop(server);
    let mut failed = None;
    for _ in 0..100 {
        if let (Err(e), _) = client.write_all(vec![1u8; 64 << 10]).await {
            failed = Some(e);
            break;
        }
    }
    let kind = failed.expect("writes to a closed peer fail").kind();
    assert!(
        matches!(
            kind,
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
    Ok(())
}

// ---- slices -------------------------------------------------------------------------

/// The README's echo loop without a copy: read into one buffer, write back
/// `buf.slice(..n)`, reuse the same allocation for every message.
#[xev::test(backend = "all")]
async fn echo_writes_back_a_slice_of_the_read_buffer() -> io::Result<()> {
    let (client, server) = pair().await?;
    let echo = xev::spawn(async move {
        let mut buf = vec![0u8; 1024];
        let ptr = buf.as_ptr();
        let mut rounds = 0;
        loop {
            let (n, b) = server.read(buf).await;
            let n = n?;
            if n == 0 {
                return Ok::<usize, io::Error>(rounds);
            }
            let (res, slice) = server.write_all(b.slice(..n)).await;
            res?;
            assert_eq!((slice.begin(), slice.end()), (0, n));
            buf = slice.into_inner();
            assert_eq!(
                (buf.as_ptr(), buf.len()),
                (ptr, 1024),
                "the same allocation"
            );
            rounds += 1;
        }
    });
    for msg in ["ping", "a longer message, to change n", "x"] {
        client.write_all(msg).await.0?;
        assert_eq!(read_n(&client, msg.len()).await?, msg.as_bytes());
    }
    client.shutdown(std::net::Shutdown::Write).await?;
    assert_eq!(echo.await.unwrap()?, 3);
    Ok(())
}

/// A slice writes exactly its range, whatever the buffer type, also when the write is
/// partial (`write_all` advances inside the range) and for a slice of a slice.
#[xev::test(backend = "all")]
async fn a_slice_writes_exactly_its_range() -> io::Result<()> {
    let (client, server) = pair().await?;
    let (r, s) = client
        .write_all(String::from("0123456789").slice(3..6))
        .await;
    r?;
    assert_eq!((&s[..], s.get_ref().as_str()), (&b"345"[..], "0123456789"));
    client.write_all("static str".slice(7..)).await.0?;
    client
        .write_all(Box::<[u8]>::from(&b"boxed"[..]).slice(..=1))
        .await
        .0?;
    client
        .write_all(b"abcdef".to_vec().slice(1..5).slice(1..3))
        .await
        .0?;
    let (n, s) = client
        .write(xev::Buffer::copy_from(b"inline").slice(2..4))
        .await;
    assert_eq!(n?, 2);
    assert_eq!(s.into_inner().as_slice(), b"inline");
    // An empty slice writes nothing.
    let (n, _) = client.write(b"abc".to_vec().slice(3..)).await;
    assert_eq!(n?, 0);
    assert_eq!(read_n(&server, 3 + 3 + 2 + 2 + 2).await?, b"345strbocdli");

    // 4 MiB with a 1 MiB margin on each side: the peer does not read until the write
    // has gone partial at least once (the socket buffers hold far less than 2 MiB).
    let big: Vec<u8> = (0..6 << 20).map(|i| (i % 251) as u8).collect();
    let want = big[1 << 20..5 << 20].to_vec();
    let writer = xev::spawn(async move { client.write_all(big.slice(1 << 20..5 << 20)).await });
    let got = read_n(&server, 4 << 20).await?;
    assert!(got == want, "the peer got exactly the range");
    let (r, s) = writer.await.unwrap();
    r?;
    assert_eq!(s.into_inner().len(), 6 << 20, "the whole Vec comes back");
    Ok(())
}

/// A read into `slice_mut(4..)` fills from byte 4 and leaves bytes 0..4 (and, for a
/// bounded range, the bytes after it) untouched.
#[xev::test(backend = "all")]
async fn a_read_into_a_slice_mut_leaves_the_rest_untouched() -> io::Result<()> {
    let (client, server) = pair().await?;

    client.write_all("body").await.0?;
    let mut buf = Vec::with_capacity(32);
    buf.extend_from_slice(b"HEAD");
    let (n, s) = timeout(Duration::from_secs(10), server.read(buf.slice_mut(4..)))
        .await
        .expect("data");
    assert_eq!(n?, 4);
    assert_eq!(&s[..], b"body");
    let buf = s.into_inner();
    assert_eq!((&buf[..], buf.capacity()), (&b"HEADbody"[..], 32));

    // Inside an initialised Vec: only the range changes, the length stays.
    client.write_all("0123456789").await.0?;
    let (r, s) = server.read_exact(vec![b'.'; 12].slice_mut(4..8)).await;
    r?;
    assert_eq!(s.into_inner(), b"....0123....");
    // A Box and a Buffer: the range is against their length.
    let (r, s) = server
        .read_exact(Box::<[u8]>::from(vec![b'-'; 5]).slice_mut(1..4))
        .await;
    r?;
    assert_eq!(&*s.into_inner(), b"-456-");
    let (n, s) = server.read(xev::Buffer::inline(6).slice_mut(3..)).await;
    let n = n?;
    assert!((1..=3).contains(&n));
    assert_eq!(
        &s.into_inner().as_slice()[..3 + n],
        &b"\0\0\x00789"[..3 + n]
    );

    // Appending: slice_mut(len..) reads after what is there.
    client.write_all("more").await.0?;
    let mut log = Vec::with_capacity(64);
    log.extend_from_slice(b"log:");
    let at = log.len();
    let (n, s) = server.read(log.slice_mut(at..)).await;
    let n = n?;
    let log = s.into_inner();
    assert_eq!(&log[..], &b"log:more"[..4 + n]);

    // An empty range is refused like any read into no room.
    let (r, _) = server.read(vec![0u8; 8].slice_mut(8..)).await;
    invalid_input(r);
    Ok(())
}

/// A read future into a slice dropped mid-operation: the orphan keeps the buffer until
/// the cancelled read ends (valgrind and ASan check nothing touches freed memory), and
/// the next read gets the data.
#[xev::test(backend = "all")]
async fn a_dropped_read_into_a_slice_leaves_the_data() -> io::Result<()> {
    let (client, server) = pair().await?;
    let mut r = Box::pin(server.read(vec![0u8; 64].slice_mut(8..)));
    poll_once(r.as_mut()).await;
    drop(r);
    sleep(Duration::from_millis(20)).await;
    client.write_all("after").await.0?;
    assert_eq!(read_n(&server, 5).await?, b"after");
    Ok(())
}

// ---- bytes --------------------------------------------------------------------------

#[cfg(feature = "bytes")]
mod with_bytes {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};

    /// `Bytes` (shared and static) and `BytesMut` are written without a copy and come
    /// back whole; a `BytesMut` is read into like a `Vec` (from its start up to its
    /// capacity), and `slice_mut(len..)` appends.
    #[xev::test(backend = "all")]
    async fn bytes_and_bytes_mut_over_tcp() -> io::Result<()> {
        let (client, server) = pair().await?;
        let shared = Bytes::from(b"shared, refcounted".to_vec());
        let keep = shared.clone();
        let (r, back) = client.write_all(shared).await;
        r?;
        assert_eq!(back, keep);
        assert_eq!(back.as_ptr(), keep.as_ptr(), "the same memory, not a copy");
        client.write_all(Bytes::from_static(b"|static")).await.0?;
        // With `IoBuf` in scope, `keep.slice(..)` is `IoBuf::slice` (it takes `self`,
        // so method lookup finds it before `Bytes::slice(&self)`).
        let (r, s) = client.write_all(keep.slice(..6).slice(..3)).await;
        r?;
        assert_eq!(&s[..], b"sha");
        assert_eq!(&s.into_inner().into_inner()[..], b"shared, refcounted");
        let mut m = BytesMut::with_capacity(16);
        m.put_slice(b"|mut");
        let (r, m) = client.write_all(m).await;
        r?;
        assert_eq!(&m[..], b"|mut");
        let want = b"shared, refcounted|staticsha|mut";
        assert_eq!(read_n(&server, want.len()).await?, want);

        // Reads: up to the capacity, the length becomes what arrived.
        client.write_all("hello").await.0?;
        let (n, m) = server.read(BytesMut::with_capacity(64)).await;
        assert_eq!((n?, &m[..]), (5, &b"hello"[..]));
        // Appending through a slice.
        client.write_all(", world").await.0?;
        let at = m.len();
        let (r, s) = server.read_exact(m.slice_mut(at..at + 7)).await;
        r?;
        assert_eq!(&s.into_inner()[..], b"hello, world");
        // read_exact fills the length, never the capacity.
        client.write_all("abc").await.0?;
        let mut m = BytesMut::with_capacity(64);
        m.resize(3, 0);
        let (r, m) = server.read_exact(m).await;
        r?;
        assert_eq!(&m[..], b"abc");
        let (r, _) = server.read_exact(BytesMut::with_capacity(8)).await;
        invalid_input(r);
        // Several BytesMut in one vectored read.
        client.write_all("0123456789").await.0?;
        let bufs = vec![BytesMut::with_capacity(4), BytesMut::with_capacity(32)];
        let (n, bufs) = server.read_vectored(bufs).await;
        let n = n?;
        let cap0 = bufs[0].capacity();
        assert!(n <= 10 && cap0 >= 4);
        let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, &b"0123456789"[..n]);
        assert_eq!(bufs[0].len(), n.min(cap0));
        Ok(())
    }
}

// ---- vectored -----------------------------------------------------------------------

/// Data written from three buffers is read back spread over three buffers: each is
/// filled before the next, and each `Vec`'s length is set as after a single read of its
/// share (capacity-only `Vec`s grow to their share, initialised ones keep their length).
#[xev::test(backend = "all")]
async fn tcp_vectored_io_spreads_over_three_buffers() -> io::Result<()> {
    let (client, server) = pair().await?;
    let (n, bufs) = client
        .write_vectored(vec![b"abc".to_vec(), b"defg".to_vec(), b"hi".to_vec()])
        .await;
    assert_eq!(n?, 9);
    assert_eq!(bufs, [&b"abc"[..], b"defg", b"hi"], "handed back in order");
    sleep(Duration::from_millis(20)).await; // all 9 bytes are in the socket

    let bufs = vec![vec![b'.'; 3], Vec::with_capacity(4), vec![b'.'; 10]];
    let cap1 = bufs[1].capacity();
    assert_eq!(cap1, 4);
    let (n, bufs) = server.read_vectored(bufs).await;
    assert_eq!(n?, 9);
    assert_eq!(bufs[0], b"abc");
    assert_eq!(bufs[1], b"defg");
    assert_eq!(bufs[2], b"hi........", "a longer Vec keeps its length");

    // Partial fill: 5 bytes over 3 + 4 + 4 room.
    client.write_all("vwxyz").await.0?;
    sleep(Duration::from_millis(20)).await;
    let bufs = vec![
        Vec::with_capacity(3),
        Vec::with_capacity(4),
        Vec::with_capacity(4),
    ];
    let (n, bufs) = server.read_vectored(bufs).await;
    assert_eq!(n?, 5);
    assert_eq!(
        (bufs[0].as_slice(), bufs[1].as_slice(), bufs[2].len()),
        (&b"vwx"[..], &b"yz"[..], 0)
    );

    // Slices and mixed kinds work as vectored buffers too.
    let (n, _) = client
        .write_vectored(vec![
            b"--12--".to_vec().slice(2..4),
            b"3".to_vec().slice(..),
        ])
        .await;
    assert_eq!(n?, 3);
    let mut head = Vec::with_capacity(8);
    head.extend_from_slice(b"H:");
    let (n, bufs) = server.read_vectored(vec![head.slice_mut(2..5)]).await;
    assert_eq!(n?, 3);
    assert_eq!(bufs.into_iter().next().unwrap().into_inner(), b"H:123");

    // End of stream is Ok(0).
    client.shutdown(std::net::Shutdown::Write).await?;
    let (n, bufs) = server.read_vectored(vec![vec![0u8; 4]; 2]).await;
    assert_eq!(n?, 0);
    assert_eq!(bufs.len(), 2);
    Ok(())
}

/// The limits: IOV_MAX buffers work, IOV_MAX + 1 is InvalidInput (buffers handed back),
/// an empty Vec is InvalidInput for a read and Ok(0) for a write, buffers without room
/// are InvalidInput.
#[xev::test(backend = "all")]
async fn vectored_limits_and_empty_input() -> io::Result<()> {
    let (client, server) = pair().await?;
    let (n, back) = client.write_vectored(vec![b"z".to_vec(); 1024]).await;
    assert_eq!((n?, back.len()), (1024, 1024));
    let mut got = 0;
    while got < 1024 {
        let (n, bufs) = server.read_vectored(vec![vec![0u8; 1]; 1024]).await;
        let n = n?;
        assert!(n > 0 && bufs[..n].iter().all(|b| b == b"z"));
        got += n;
    }

    let (r, back) = client.write_vectored(vec![b"z".to_vec(); 1025]).await;
    invalid_input(r);
    assert_eq!(back.len(), 1025);
    let (r, back) = server.read_vectored(vec![vec![0u8; 1]; 1025]).await;
    invalid_input(r);
    assert_eq!(back.len(), 1025);

    let (n, back) = client.write_vectored(Vec::<Vec<u8>>::new()).await;
    assert_eq!((n?, back.len()), (0, 0));
    let (r, _) = server.read_vectored(Vec::<Vec<u8>>::new()).await;
    invalid_input(r);
    let (r, back) = server.read_vectored(vec![Vec::new(), Vec::new()]).await;
    invalid_input(r);
    assert_eq!(back.len(), 2);

    // Nothing was consumed: the stream still works.
    client.write_all("ok").await.0?;
    assert_eq!(read_n(&server, 2).await?, b"ok");
    Ok(())
}

/// UDP: several buffers go out as one datagram; an empty Vec is an empty datagram.
#[xev::test(backend = "all")]
async fn udp_vectored_sends_one_datagram() -> io::Result<()> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    let (n, _) = a
        .send_to_vectored(vec!["one ", "datagram"], b.local_addr()?)
        .await;
    assert_eq!(n?, 12);
    let (r, buf) = b.recv_from(vec![0u8; 64]).await;
    let (n, from) = r?;
    assert_eq!((&buf[..n], from), (&b"one datagram"[..], a.local_addr()?));

    a.connect(b.local_addr()?)?;
    let (n, _) = a.send_vectored(vec![b"x".to_vec(), b"yz".to_vec()]).await;
    assert_eq!(n?, 3);
    let (n, _) = a.send_vectored(Vec::<Vec<u8>>::new()).await;
    assert_eq!(n?, 0);
    let (r, buf) = b.recv_from(vec![0u8; 64]).await;
    assert_eq!(&buf[..r?.0], b"xyz");
    let (r, _) = b.recv_from(vec![0u8; 64]).await;
    assert_eq!(r?.0, 0, "the empty datagram");

    let (r, _) = a.send_vectored(vec![b"z".to_vec(); 1025]).await;
    invalid_input(r);
    let (r, _) = a
        .send_to_vectored(vec!["x"], "no-such-host.invalid:1")
        .await;
    assert!(r.is_err());
    Ok(())
}

/// A vectored read future dropped mid-operation: the orphan keeps its buffers and its
/// iovec array until the cancelled read ends (valgrind and ASan check that nothing
/// touches freed memory), and the data goes to the next read. Sockets only: no pool.
#[xev::test(backend = "all")]
async fn a_dropped_vectored_read_keeps_its_iovecs_until_it_ends() -> io::Result<()> {
    let (client, server) = pair().await?;
    for round in 0..3 {
        let bufs = vec![vec![0u8; 3], Vec::with_capacity(5), vec![0u8; 7]];
        let mut r = Box::pin(server.read_vectored(bufs));
        poll_once(r.as_mut()).await;
        drop(r);
        sleep(Duration::from_millis(20)).await;
        let msg = format!("round{round}");
        client.write_all(msg.clone()).await.0?;
        assert_eq!(read_n(&server, msg.len()).await?, msg.as_bytes());
    }
    Ok(())
}

/// A vectored write future dropped while the kernel is still sending from its buffers
/// (the peer is not reading): the orphan keeps them until the write ends, and what the
/// peer receives is a prefix of the data, never garbage.
#[xev::test(backend = "all")]
async fn a_dropped_vectored_write_sends_a_prefix_of_its_buffers() -> io::Result<()> {
    let (client, server) = pair().await?;
    let parts: Vec<Vec<u8>> = (0..3u8).map(|p| vec![b'a' + p; 2 << 20]).collect();
    let want: Vec<u8> = parts.concat();
    let mut w = Box::pin(client.write_vectored(parts));
    // Fill the socket buffers: the first write may finish partially at once.
    std::future::poll_fn(|cx| {
        let _ = w.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    drop(w);
    drop(client);
    let mut got = Vec::new();
    loop {
        let (n, buf) = timeout(Duration::from_secs(10), server.read(vec![0u8; 1 << 16]))
            .await
            .expect("end of stream");
        let n = n?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.len() <= want.len() && got[..] == want[..got.len()]);
    Ok(())
}

// ---- files (the pool on the epoll backend) --------------------------------------------

struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        TempPath(std::env::temp_dir().join(format!(
            "xev-rt-buf-{}-{tag}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `write_vectored_at` / `read_vectored_at`: in order, at the offset, partial at the
/// end of the file, `Ok(0)` past it; the limits; a read-only file refuses the write.
#[xev::test(backend = "all")]
async fn file_vectored_read_and_write_at() -> io::Result<()> {
    let p = TempPath::new("rw");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(&p.0)
        .await?;
    let (n, _) = f
        .write_vectored_at(vec![&b"01234"[..], b"", b"56789"], 0)
        .await;
    assert_eq!(n?, 10);
    let (n, _) = f.write_vectored_at(vec!["ab", "c"], 3).await;
    assert_eq!(n?, 3);
    assert_eq!(std::fs::read(&p.0)?, b"012abc6789");

    let bufs = vec![vec![0u8; 4], Vec::with_capacity(4), vec![b'.'; 4]];
    let (n, bufs) = f.read_vectored_at(bufs, 1).await;
    assert_eq!(n?, 9);
    assert_eq!((&bufs[0][..], &bufs[1][..]), (&b"12ab"[..], &b"c678"[..]));
    assert_eq!(bufs[2], b"9...");
    let (n, bufs) = f.read_vectored_at(vec![vec![0u8; 4]; 3], 10).await;
    assert_eq!(n?, 0);
    assert_eq!(bufs.len(), 3);
    let (n, bufs) = f
        .read_vectored_at(vec![Vec::with_capacity(2), Vec::with_capacity(8)], 7)
        .await;
    assert_eq!(n?, 3);
    assert_eq!((&bufs[0][..], &bufs[1][..]), (&b"78"[..], &b"9"[..]));

    let (r, _) = f.read_vectored_at(vec![vec![0u8; 1]; 1025], 0).await;
    invalid_input(r);
    let (r, _) = f.write_vectored_at(vec![&b"x"[..]; 1025], 0).await;
    invalid_input(r);
    let (r, _) = f.read_vectored_at(Vec::<Vec<u8>>::new(), 0).await;
    invalid_input(r);
    let (n, _) = f.write_vectored_at(Vec::<Vec<u8>>::new(), 0).await;
    assert_eq!(n?, 0);
    f.close().await?;

    let ro = File::open(&p.0).await?;
    let (r, _) = ro.write_vectored_at(vec!["x"], 0).await;
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
    Ok(())
}
