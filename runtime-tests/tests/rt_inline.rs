//! Operations that finish at submission (the poll backend tries a read or write at once)
//! are ready at their future's first poll: the task goes on without a wake-up and a
//! second poll. Each poll of a task takes at most a budget of them, so a task on a
//! socket that is always ready still yields to the other tasks and to the loop.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use xev::net::{TcpListener, TcpStream};
use xev::Backend;

async fn pair() -> io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;
    Ok((client, server))
}

/// A connected pair whose first transfer (which announces each socket to the loop) is
/// done, and whose server socket is drained: its next read waits for data.
async fn announced_pair() -> io::Result<(TcpStream, TcpStream)> {
    let (client, server) = pair().await?;
    client.write_all(&b"x"[..]).await.0?;
    server.read(vec![0u8; 1]).await.0?;
    Ok((client, server))
}

fn backend() -> Backend {
    xev::rt::with_loop(|lp| lp.backend())
}

/// Poll `fut` once: `Some(output)` if it finished in that poll.
async fn first_poll<F: Future>(fut: F) -> (Option<F::Output>, bool) {
    let mut fut = pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(v) => (Some(v), true),
        Poll::Pending => (Some(fut.await), false),
    }
}

#[xev::test(backend = "all")]
async fn a_write_that_finishes_at_once_is_ready_at_the_first_poll() -> io::Result<()> {
    let (client, server) = pair().await?;
    let (out, at_once) = first_poll(client.write(&b"hello"[..])).await;
    let (r, _) = out.expect("finished");
    assert_eq!(r?, 5);
    // The poll backend sends at once; io_uring sends when the loop next enters the kernel.
    assert_eq!(at_once, backend() != Backend::IoUring, "{:?}", backend());
    let (r, buf) = server.read(vec![0u8; 16]).await;
    assert_eq!(r?, 5);
    assert_eq!(&buf[..5], b"hello");
    // A read that finds its data at once is ready at once too, end of file as well.
    client.write_all(&b"again"[..]).await.0?;
    xev::time::sleep(std::time::Duration::from_millis(5)).await; // the bytes arrive
    let (out, _) = first_poll(server.read(vec![0u8; 16])).await;
    let (r, buf) = out.expect("finished");
    assert_eq!(r?, 5);
    assert_eq!(&buf[..5], b"again");
    drop(client);
    xev::time::sleep(std::time::Duration::from_millis(5)).await;
    let (r, _) = server.read(vec![0u8; 16]).await;
    assert_eq!(r?, 0, "end of file");
    Ok(())
}

#[xev::test(backend = "all")]
async fn writes_to_a_closed_peer_fail_and_hand_their_buffer_back() -> io::Result<()> {
    let (client, server) = pair().await?;
    server.shutdown(std::net::Shutdown::Both).await?;
    drop(server);
    xev::time::sleep(std::time::Duration::from_millis(5)).await; // the reset arrives
                                                                 // Writes to a reset connection fail (EPIPE / ECONNRESET), never a signal, never Ok
                                                                 // forever; each error comes back with its buffer.
    let mut failed = None;
    for _ in 0..100 {
        let (r, buf) = client.write(vec![1u8; 1024]).await;
        assert_eq!(buf.len(), 1024, "the buffer comes back");
        if let Err(e) = r {
            failed = Some(e);
            break;
        }
    }
    let e = failed.expect("a write to a closed peer fails");
    assert!(
        matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{e}"
    );
    Ok(())
}

/// A task reading an always-readable socket one byte at a time: every read could finish
/// at once on the poll backend. Another task spawned beside it must still run early,
/// after at most the budget of reads, and the bytes arrive in order.
#[xev::test(backend = "all")]
async fn a_task_on_an_always_ready_socket_still_lets_others_run() -> io::Result<()> {
    const N: usize = 16 * 1024;
    let (client, server) = pair().await?;
    let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
    client.write_all(data).await.0?;
    xev::time::sleep(std::time::Duration::from_millis(10)).await; // all of it arrives

    let reads = Rc::new(Cell::new(0usize));
    let r = reads.clone();
    let reader = xev::spawn(async move {
        let mut buf = vec![0u8; 1];
        for i in 0..N {
            let (res, b) = server.read(buf).await;
            buf = b;
            assert_eq!(res.expect("read"), 1);
            assert_eq!(buf[0], (i % 251) as u8, "byte {i} in order");
            r.set(i + 1);
        }
    });
    let seen = reads.clone();
    let other = xev::spawn(async move { seen.get() });
    let seen_by_other = other.await.expect("other task");
    reader.await.expect("reader task");
    assert_eq!(reads.get(), N);
    assert!(
        seen_by_other < 100,
        "the other task ran only after {seen_by_other} reads of {N}: the reader did not yield"
    );
    Ok(())
}

fn direct() -> u64 {
    xev::rt::with_loop(|lp| lp.poll_direct_transfers())
}

/// The poll backend's direct path (tokio's: try the socket first, wait for its edge only
/// if it would block): a send or receive on an async socket with no operation queued
/// ahead is done without an operation, and one that would block waits for the socket's
/// next edge with the task's waker, again without an operation. Waiting reads are served
/// in the order they started. io_uring never takes it.
#[xev::test(backend = "all")]
async fn socket_transfers_skip_the_operation_when_they_cannot_block() -> io::Result<()> {
    let poll = backend() != Backend::IoUring;
    let (client, server) = announced_pair().await?;
    let server = Rc::new(server);

    let before = direct();
    client.write_all(&b"hello"[..]).await.0?;
    assert_eq!(
        direct() - before,
        u64::from(poll),
        "a send that fits: direct"
    );
    xev::time::sleep(std::time::Duration::from_millis(5)).await;
    let before = direct();
    let (r, buf) = server.read(vec![0u8; 16]).await;
    assert_eq!((r?, &buf[..5]), (5, &b"hello"[..]));
    assert_eq!(direct() - before, u64::from(poll), "data waiting: direct");

    // The socket is empty (a short read said so): the next read waits without trying,
    // and a second read must wait behind it, not take its data.
    let before = direct();
    let first = xev::spawn({
        let server = server.clone();
        async move { server.read(vec![0u8; 16]).await }
    });
    xev::rt::yield_now().await; // `first` waits
    let second = xev::spawn({
        let server = server.clone();
        async move { server.read(vec![0u8; 16]).await }
    });
    xev::rt::yield_now().await;
    // On the poll backend they wait with no operation; io_uring has both in the kernel.
    let active = xev::rt::with_loop(|lp| lp.active());
    assert_eq!(
        active,
        if poll { 0 } else { 2 },
        "operations of the waiting reads"
    );
    client.write_all(&b"one"[..]).await.0?;
    xev::time::sleep(std::time::Duration::from_millis(10)).await;
    client.write_all(&b"two"[..]).await.0?;
    let (r1, b1) = first.await.expect("first reader");
    let (r2, b2) = second.await.expect("second reader");
    let got = [&b1[..r1?], &b2[..r2?]];
    if poll {
        // The poll backend serves a socket's readers in order.
        assert_eq!(
            got,
            [&b"one"[..], &b"two"[..]],
            "the read that waited first gets the data first"
        );
    } else {
        // Two receives in the kernel at once: either may take the first message.
        assert!(got == [&b"one"[..], &b"two"[..]] || got == [&b"two"[..], &b"one"[..]]);
    }
    // Two sends, and each read once its data came.
    assert_eq!(direct() - before, 4 * u64::from(poll));

    // End of stream comes back as from the operation (errors: the test above, whose
    // writes take this path on the poll backend).
    drop(client);
    xev::time::sleep(std::time::Duration::from_millis(5)).await;
    let (r, _) = server.read(vec![0u8; 16]).await;
    assert_eq!(r?, 0, "end of file");
    Ok(())
}

/// A read that waits for its socket's edge without an operation (the poll backend's
/// direct path) and is dropped stops waiting: the next read gets the data, nothing is
/// left registered that would hold it up, and the dropped read's task is not woken
/// into a wrong state. On io_uring the dropped read's operation is cancelled instead.
#[xev::test(backend = "all")]
async fn a_dropped_waiting_read_leaves_the_data_to_the_next() -> io::Result<()> {
    let (client, server) = announced_pair().await?;
    let server = Rc::new(server);
    // Dropped while it waits (by a time limit, as `timeout` would).
    let r = xev::time::timeout(
        std::time::Duration::from_millis(20),
        server.read(vec![0u8; 16]),
    )
    .await;
    assert!(r.is_err(), "nothing was sent: the read timed out");
    // A read in a task dropped while it waits (aborted).
    let waiting = xev::spawn({
        let server = server.clone();
        async move { server.read(vec![0u8; 16]).await }
    });
    xev::rt::yield_now().await;
    waiting.abort();
    xev::rt::yield_now().await;
    client.write_all(&b"data"[..]).await.0?;
    let (r, buf) = xev::time::timeout(
        std::time::Duration::from_secs(5),
        server.read(vec![0u8; 16]),
    )
    .await
    .expect("the next read is not held up by the dropped ones");
    assert_eq!(&buf[..r?], b"data");
    Ok(())
}

/// A read with an operation already parked on the socket (here one with a time limit,
/// which always uses an operation) does not take the direct path: it queues behind, and
/// the parked one gets the first data.
#[xev::test(backend = "epoll")]
async fn a_read_queues_behind_a_parked_operation() -> io::Result<()> {
    let (client, server) = announced_pair().await?;
    let server = Rc::new(server);
    let parked = xev::spawn({
        let server = server.clone();
        async move {
            server
                .read_timeout(vec![0u8; 16], std::time::Duration::from_secs(10))
                .await
        }
    });
    xev::rt::yield_now().await;
    let after = xev::spawn({
        let server = server.clone();
        async move { server.read(vec![0u8; 16]).await }
    });
    xev::rt::yield_now().await;
    assert_eq!(
        xev::rt::with_loop(|lp| lp.active()),
        2,
        "both queued as operations"
    );
    client.write_all(&b"one"[..]).await.0?;
    xev::time::sleep(std::time::Duration::from_millis(10)).await;
    client.write_all(&b"two"[..]).await.0?;
    let (r1, b1) = parked.await.expect("parked read");
    let (r2, b2) = after.await.expect("later read");
    assert_eq!([&b1[..r1?], &b2[..r2?]], [&b"one"[..], &b"two"[..]]);
    Ok(())
}

/// Tasks that are always ready (here one that yields in a loop) do not keep a read that
/// waits for its socket's edge without an operation (the poll backend's direct path)
/// from ever being woken: the executor still asks the kernel for readiness between
/// rounds of ready tasks.
#[xev::test(backend = "all")]
async fn always_ready_tasks_do_not_starve_a_waiting_read() -> io::Result<()> {
    let (client, server) = announced_pair().await?;
    let done = Rc::new(Cell::new(false));
    let spinner = xev::spawn({
        let done = done.clone();
        async move {
            let mut rounds = 0u64;
            while !done.get() {
                xev::rt::yield_now().await;
                rounds += 1;
            }
            rounds
        }
    });
    let reader = xev::spawn({
        let done = done.clone();
        async move {
            let r = server.read(vec![0u8; 16]).await;
            done.set(true);
            r
        }
    });
    xev::rt::yield_now().await; // the reader waits
    client.write_all(&b"late"[..]).await.0?;
    // Only the reader ends the spinner; a time limit makes a starved read a failure, not
    // a hang.
    let (r, buf) = xev::time::timeout(std::time::Duration::from_secs(5), reader)
        .await
        .expect("the waiting read was woken while another task kept yielding")
        .expect("reader task");
    assert_eq!(&buf[..r?], b"late");
    assert!(spinner.await.expect("spinner") > 0);
    Ok(())
}

/// Pipes take the direct path too on the poll backend (`read(2)` / `write(2)` on their
/// non-blocking fds, or a wait for the edge); a file's positioned I/O never does (the
/// thread pool or the page-cache fast path), nor a regular file wrapped as a pipe end,
/// whose transfers go to the pool as operations and still arrive.
#[cfg(unix)]
#[xev::test(backend = "all")]
async fn pipes_take_the_direct_path_and_files_never_do() -> io::Result<()> {
    let poll = backend() != Backend::IoUring;
    let before = direct();
    let (tx, rx) = xev::pipe::pipe()?;
    tx.write_all(&b"through a pipe"[..]).await.0?;
    let (r, buf) = rx.read(vec![0u8; 64]).await;
    assert_eq!(&buf[..r?], b"through a pipe");
    assert_eq!(
        direct() - before,
        2 * u64::from(poll),
        "the pipe's write and read: direct"
    );
    // A read that must wait for the edge, then gets the data.
    let reader = xev::spawn(async move { rx.read(vec![0u8; 64]).await });
    xev::time::sleep(std::time::Duration::from_millis(20)).await;
    tx.write_all(&b"later"[..]).await.0?;
    let (r, buf) = reader.await.expect("reader");
    assert_eq!(&buf[..r?], b"later");
    assert_eq!(direct() - before, 4 * u64::from(poll));

    let before = direct();
    let dir = std::env::temp_dir().join(format!("xev-direct-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("f-{:?}", backend()));
    let f = xev::fs::File::create(&path).await?;
    f.write_all_at(&b"in a file"[..], 0).await.0?;
    drop(f);
    let f = xev::fs::File::open(&path).await?;
    let (r, buf) = f.read_at(vec![0u8; 64], 0).await;
    assert_eq!(&buf[..r?], b"in a file");
    drop(f);
    // A regular file as a pipe end: `read(2)` through the pool, never direct.
    let file_as_pipe =
        xev::pipe::Receiver::from(std::os::fd::OwnedFd::from(std::fs::File::open(&path)?));
    let (r, buf) = file_as_pipe.read(vec![0u8; 64]).await;
    assert_eq!(&buf[..r?], b"in a file");
    let (r, _) = file_as_pipe.read(vec![0u8; 64]).await;
    assert_eq!(r?, 0, "then end of file");
    std::fs::remove_dir_all(&dir)?;
    assert_eq!(direct() - before, 0, "no file transfer is direct");
    Ok(())
}

/// Datagrams take the direct path too on the poll backend: `send_to` / `send` with one
/// `sendto`, `recv_from` / `recv` with one `recvfrom` (the sender's address from it) or a
/// wait for the socket's edge, each without an operation. An empty datagram is `Ok(0)`
/// with its sender, a dropped waiting receive loses no datagram, and a receive into an
/// empty buffer is still `InvalidInput`. io_uring never takes the path.
#[xev::test(backend = "all")]
async fn datagrams_skip_the_operation_when_they_cannot_block() -> io::Result<()> {
    use xev::net::UdpSocket;
    let poll = backend() != Backend::IoUring;
    let a = Rc::new(UdpSocket::bind("127.0.0.1:0")?);
    let b = UdpSocket::bind("127.0.0.1:0")?;
    let (a_addr, b_addr) = (a.local_addr()?, b.local_addr()?);

    let before = direct();
    let (r, _) = b.send_to(&b"ping"[..], a_addr).await;
    assert_eq!(r?, 4);
    xev::time::sleep(std::time::Duration::from_millis(5)).await;
    let (r, buf) = a.recv_from(vec![0u8; 16]).await;
    let (n, from) = r?;
    assert_eq!((&buf[..n], from), (&b"ping"[..], b_addr));
    assert_eq!(
        direct() - before,
        2 * u64::from(poll),
        "send_to and recv_from: direct"
    );

    // Nothing queued: the receive waits for the edge (with no operation on the poll
    // backend), then takes the datagram with its sender.
    let waiting = xev::spawn({
        let a = a.clone();
        async move { a.recv_from(vec![0u8; 16]).await }
    });
    xev::rt::yield_now().await;
    let active = xev::rt::with_loop(|lp| lp.active());
    assert_eq!(
        active,
        if poll { 0 } else { 1 },
        "operations of the waiting receive"
    );
    let before = direct();
    b.send_to(&b""[..], a_addr).await.0?;
    let (r, _) = waiting.await.expect("the waiting receive");
    assert_eq!(
        r?,
        (0, b_addr),
        "an empty datagram is Ok(0) with its sender"
    );
    assert_eq!(direct() - before, 2 * u64::from(poll));

    // A receive dropped while it waits leaves the next datagram to the next receive.
    let r = xev::time::timeout(
        std::time::Duration::from_millis(20),
        a.recv_from(vec![0u8; 16]),
    )
    .await;
    assert!(r.is_err(), "nothing was sent: the receive timed out");
    b.send_to(&b"kept"[..], a_addr).await.0?;
    let (r, buf) = xev::time::timeout(
        std::time::Duration::from_secs(5),
        a.recv_from(vec![0u8; 16]),
    )
    .await
    .expect("the next receive is not held up by the dropped one");
    let (n, from) = r?;
    assert_eq!((&buf[..n], from), (&b"kept"[..], b_addr));

    // Connected: `send` and `recv` name no address and take the same path.
    b.connect(a_addr)?;
    let before = direct();
    b.send(&b"conn"[..]).await.0?;
    let (r, buf) = a.recv_from(vec![0u8; 16]).await;
    let (n, from) = r?;
    assert_eq!((&buf[..n], from), (&b"conn"[..], b_addr));
    assert!(direct() - before >= 2 * u64::from(poll));

    // Errors come back as from the operation: a datagram too long to send, an empty
    // buffer to receive into.
    let (r, _) = b.send(vec![0u8; 70_000]).await;
    assert!(r.is_err(), "a 70,000-byte datagram: {r:?}");
    let (r, _) = a.recv_from(Vec::<u8>::new()).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    Ok(())
}
