//! `incoming()` with a multishot accept (io_uring) and with one accept in flight (poll
//! backend): order, peers, back-pressure of the bounded queue, connections kept (never
//! lost, never leaked) when the stream or the listener goes, `EMFILE` recovery, two
//! streams in turn, `accept()` afterwards, runtime shutdown with connections queued.
//!
//! Every test runs once per available backend. The tests that count open sockets take
//! the write side of [`FDS`]; the others hold its read side while they have sockets open.

// The guards of `FDS` are held across awaits on purpose: they serialise whole tests,
// which run on different threads, each with its own single-threaded runtime.
#![allow(clippy::await_holding_lock)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdStream};
use std::pin::Pin;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use runtime_tests::child::{leave_free_descriptors, TestChild};
use runtime_tests::socket_count::{counting, open_sockets, sockets};

use futures_core::Stream;
use xev::net::{TcpListener, TcpStream, UnixListener};
use xev::time::{sleep, timeout};
use xev::Backend;

/// Connections a full queue holds before the multishot stops (the runtime's constant).
const CAPACITY: usize = 64;
/// How long a connection may take to show up before it counts as lost.
const LOST: Duration = Duration::from_secs(5);

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("local_addr");
    (l, addr)
}

/// Drop a listener (its stream dropped first) and let the loop finish stopping the
/// stream's accept (the listener's fd closes then), before the test's guard is released.
async fn settle(l: impl Sized) {
    drop(l);
    sleep(Duration::from_millis(20)).await;
}

/// The runtime's backend.
fn backend() -> Backend {
    xev::rt::with_loop(|lp| lp.backend())
}

/// The next item of a stream.
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// Poll `s` once: it must be pending (this arms its accept).
async fn poll_pending<S: Stream + Unpin>(s: &mut S) {
    std::future::poll_fn(|cx| {
        assert!(
            Pin::new(&mut *s).poll_next(cx).is_pending(),
            "expected Pending"
        );
        Poll::Ready(())
    })
    .await
}

/// Poll `s` once (this arms its accept) and return what it yields at once, if anything:
/// on the poll backend an accept that finds a client already waiting finishes at its
/// first poll.
async fn poll_once<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| match Pin::new(&mut *s).poll_next(cx) {
        Poll::Ready(item) => Poll::Ready(item),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// The next connection, within [`LOST`].
async fn next_conn<S>(s: &mut S) -> TcpStream
where
    S: Stream<Item = std::io::Result<TcpStream>> + Unpin,
{
    timeout(LOST, next(s))
        .await
        .expect("a connection was lost")
        .expect("never ends")
        .expect("accept")
}

/// `n` blocking clients, connected in order; client `i` sends its index (2 bytes).
fn connect_clients(addr: SocketAddr, n: usize) -> Vec<StdStream> {
    (0..n)
        .map(|i| {
            let mut c = StdStream::connect(addr).expect("connect");
            c.write_all(&(i as u16).to_le_bytes()).unwrap();
            c
        })
        .collect()
}

/// The index a client sent.
async fn index_of(s: &TcpStream) -> usize {
    let (res, b) = s.read_exact(vec![0u8; 2]).await;
    res.expect("read the index");
    u16::from_le_bytes([b[0], b[1]]) as usize
}

#[xev::test(backend = "all")]
async fn many_connections_arrive_in_order_with_their_peers_none_lost() {
    let _g = sockets();
    let (l, addr) = listener();
    const N: usize = 300;
    // The clients connect from another thread while the stream is being consumed, and
    // stay open until the server has read them all.
    let (addrs_tx, addrs_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let clients = std::thread::spawn(move || {
        let cs = connect_clients(addr, N);
        addrs_tx
            .send(
                cs.iter()
                    .map(|c| c.local_addr().unwrap())
                    .collect::<Vec<_>>(),
            )
            .unwrap();
        let _ = done_rx.recv();
        drop(cs);
    });
    let mut inc = l.incoming();
    let mut got = Vec::with_capacity(N);
    for _ in 0..N {
        let s = next_conn(&mut inc).await;
        got.push((index_of(&s).await, s.peer_addr().unwrap()));
    }
    let peers: Vec<SocketAddr> = addrs_rx.recv().unwrap();
    for (i, (index, peer)) in got.iter().enumerate() {
        assert_eq!(*index, i, "connections out of order");
        assert_eq!(*peer, peers[i], "peer address of connection {i}");
    }
    done_tx.send(()).unwrap();
    clients.join().unwrap();
    drop(inc);
    settle(l).await;
}

#[xev::test(backend = "all")]
async fn a_full_queue_stops_accepting_then_resumes_losing_nothing() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    const N1: usize = CAPACITY + 36;
    const N2: usize = 50;
    let mut inc = l.incoming();
    poll_pending(&mut inc).await;
    let accepted = |clients: usize| open_sockets() - before - 1 - clients;
    // A burst of clients while nobody takes from the stream: the kernel's multishot
    // accepts what the backlog holds at its wake-up, which fills the queue past its
    // capacity, so it stops.
    let mut clients = connect_clients(addr, N1);
    sleep(Duration::from_millis(100)).await;
    if backend() == Backend::IoUring {
        // The stop completes once the loop has handed over every connection the kernel
        // accepted (slow under valgrind).
        let mut waited = Duration::ZERO;
        while format!("{inc:?}").contains("accepting: true") {
            assert!(waited < LOST, "the multishot never stopped: {inc:?}");
            sleep(Duration::from_millis(10)).await;
            waited += Duration::from_millis(10);
        }
    }
    let first = accepted(N1);
    if backend() == Backend::IoUring {
        assert!(
            (CAPACITY..=N1).contains(&first),
            "{first} accepted while nobody consumed (queue of {CAPACITY})"
        );
    } else {
        assert_eq!(first, 1, "one accept in flight");
    }
    // Stopped: later clients wait in the listen backlog.
    clients.extend(connect_clients(addr, N2));
    sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted(N1 + N2),
        first,
        "accepting went on with a full queue"
    );
    // Taking them all resumes accepting; every client arrives, in order (the indices
    // of the second batch restart at 0).
    for i in (0..N1).chain(0..N2) {
        let s = next_conn(&mut inc).await;
        assert_eq!(index_of(&s).await, i);
    }
    drop(inc);
    drop((l, clients));
    sleep(Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), before);
}

#[xev::test(backend = "all")]
async fn connections_queued_when_the_stream_drops_go_to_the_next_accept_then_close_with_the_listener(
) {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    let mut inc = l.incoming();
    poll_pending(&mut inc).await;
    let mut clients = connect_clients(addr, 10);
    sleep(Duration::from_millis(50)).await;
    let first = next_conn(&mut inc).await;
    assert_eq!(index_of(&first).await, 0);
    drop(inc);
    sleep(Duration::from_millis(20)).await;
    // Nothing was closed: the queued ones (io_uring) or the waiting ones (backlog) are
    // the next accepts', in order.
    for (i, client) in clients.iter().enumerate().take(4).skip(1) {
        let (s, peer) = timeout(LOST, l.accept()).await.expect("lost").unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(index_of(&s).await, i);
    }
    // The listener takes the six left (kept or in its backlog) with it: no leak.
    drop(l);
    sleep(Duration::from_millis(20)).await;
    assert_eq!(
        open_sockets(),
        before + 10 + 1,
        "clients + the one stream kept"
    );
    // And their clients see the close.
    let mut buf = [0u8; 1];
    match clients[9].read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("client 9 should see its connection closed: {other:?}"),
    }
    drop((first, clients));
    assert_eq!(open_sockets(), before);
}

/// A listener turned into a plain fd (`OwnedFd::from`) takes the connections queued for
/// its next accept (io_uring: kept by the runtime; poll backend: in the backlog) with it:
/// they are closed, not leaked.
#[xev::test(backend = "all")]
async fn connections_queued_when_the_stream_drops_close_when_the_listener_becomes_a_std_fd() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    let mut inc = l.incoming();
    poll_pending(&mut inc).await;
    let clients = connect_clients(addr, 6);
    sleep(Duration::from_millis(50)).await;
    let first = next_conn(&mut inc).await;
    drop(inc);
    sleep(Duration::from_millis(20)).await;
    let fd = std::os::fd::OwnedFd::from(l);
    assert_eq!(
        open_sockets(),
        before + 6 + 1 + 1,
        "clients + the stream kept + the listener's fd, nothing queued left"
    );
    drop(fd);
    drop((first, clients));
    assert_eq!(open_sockets(), before);
}

#[xev::test(backend = "all")]
async fn a_listener_dropped_with_its_multishot_armed_closes_everything() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    let mut inc = l.incoming();
    poll_pending(&mut inc).await;
    let early = connect_clients(addr, 2);
    sleep(Duration::from_millis(20)).await;
    // One more connects right before the drop, before the loop turns again.
    let late = connect_clients(addr, 1);
    drop(inc);
    drop(l);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(open_sockets(), before + 3, "only the clients are left");
    assert!(
        StdStream::connect(addr).is_err(),
        "the listener's fd is closed"
    );
    drop((early, late));

    // The same with the listener owned by a task that is aborted mid-stream.
    let (l, addr) = listener();
    let task = xev::spawn(async move {
        let mut inc = l.incoming();
        let mut kept = Vec::new();
        while let Some(s) = next(&mut inc).await {
            kept.push(s.unwrap());
        }
    });
    sleep(Duration::from_millis(10)).await;
    let clients = connect_clients(addr, 5);
    sleep(Duration::from_millis(20)).await;
    task.abort();
    assert!(task.await.is_err(), "aborted");
    sleep(Duration::from_millis(50)).await;
    assert_eq!(open_sockets(), before + 5, "only the clients are left");
    drop(clients);
}

#[xev::test(backend = "all")]
async fn two_incomings_in_turn_share_the_connections_in_order() {
    let _g = sockets();
    let (l, addr) = listener();
    let clients = connect_clients(addr, 5);
    {
        let mut a = l.incoming();
        for i in 0..3 {
            assert_eq!(index_of(&next_conn(&mut a).await).await, i);
        }
    }
    let mut b = l.incoming();
    for i in 3..5 {
        assert_eq!(index_of(&next_conn(&mut b).await).await, i);
    }
    // Then clients that connect while `b` waits (indices restart at 0), in order.
    poll_pending(&mut b).await;
    sleep(Duration::from_millis(10)).await;
    let more = connect_clients(addr, 7);
    for i in 0..7 {
        assert_eq!(index_of(&next_conn(&mut b).await).await, i);
    }
    drop((clients, more));
    drop(b);
    settle(l).await;
}

#[xev::test(backend = "all")]
async fn accept_after_an_armed_incoming_is_dropped_gets_the_next_client() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    // (1) The cancellation has gone through when the client connects; (2) the client
    // connects right after the drop, before the loop turns.
    for settle in [true, false] {
        {
            let mut inc = l.incoming();
            poll_pending(&mut inc).await;
            sleep(Duration::from_millis(20)).await;
        }
        if settle {
            sleep(Duration::from_millis(20)).await;
        }
        let client = StdStream::connect(addr).unwrap();
        let (s, peer) = timeout(LOST, l.accept())
            .await
            .unwrap_or_else(|_| panic!("settle={settle}: the connection was lost"))
            .unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop((s, client));
        sleep(Duration::from_millis(20)).await;
        assert_eq!(
            open_sockets(),
            before + 1,
            "settle={settle}: the listener only"
        );
    }
}

#[xev::test(backend = "all")]
async fn a_stream_dropped_before_its_accept_reached_the_kernel_loses_nothing() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    // Clients wait in the backlog; the stream arms its accept and is dropped at once, so
    // the accept and its stop reach the kernel together: the accept takes the backlog
    // first, and what it took must not be closed.
    let clients = connect_clients(addr, 5);
    let first = {
        let mut inc = l.incoming();
        poll_once(&mut inc).await
    };
    let taken = usize::from(first.is_some());
    if let Some(s) = first {
        assert_eq!(index_of(&s.expect("accept")).await, 0);
    }
    sleep(Duration::from_millis(20)).await;
    for (i, client) in clients.iter().enumerate().skip(taken) {
        let (s, peer) = timeout(LOST, l.accept()).await.expect("lost").unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(index_of(&s).await, i);
    }
    drop((l, clients));
    sleep(Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), before);
}

#[test]
fn shutting_down_the_runtime_with_connections_queued_leaks_nothing() {
    let _g = counting();
    for b in Backend::available() {
        let before = open_sockets();
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        let (addr_tx, addr_rx) = mpsc::channel();
        rt.block_on(async move {
            let (l, addr) = listener();
            addr_tx.send(addr).unwrap();
            // A task that takes one connection, then sleeps with more queued.
            xev::spawn(async move {
                let mut inc = l.incoming();
                let first = next(&mut inc).await;
                sleep(Duration::from_secs(3600)).await;
                drop((first, inc));
            });
            sleep(Duration::from_millis(10)).await;
        });
        let addr = addr_rx.recv().unwrap();
        let clients = connect_clients(addr, 8);
        rt.block_on(sleep(Duration::from_millis(50)));
        drop(rt);
        assert_eq!(
            open_sockets(),
            before + 8,
            "{b:?}: only the clients are left"
        );
        drop(clients);
    }
}

#[xev::test(backend = "all")]
async fn unix_incoming_keeps_order_and_hands_leftovers_to_accept() {
    let _g = counting();
    let before = open_sockets();
    let dir = std::env::temp_dir().join(format!(
        "xev-accept-multi-{}-{:?}",
        std::process::id(),
        backend()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.sock");
    let l = UnixListener::bind(&path).unwrap();
    let mut inc = l.incoming();
    poll_pending(&mut inc).await;
    let clients: Vec<std::os::unix::net::UnixStream> = (0..6u8)
        .map(|i| {
            let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
            c.write_all(&[i]).unwrap();
            c
        })
        .collect();
    sleep(Duration::from_millis(30)).await;
    for i in 0..3u8 {
        let s = timeout(LOST, next(&mut inc))
            .await
            .expect("lost")
            .unwrap()
            .unwrap();
        assert_eq!(s.read_exact(vec![0u8; 1]).await.1, [i]);
        assert!(s.peer_addr().unwrap().is_unnamed());
    }
    drop(inc);
    for i in 3..6u8 {
        let (s, _) = timeout(LOST, l.accept()).await.expect("lost").unwrap();
        assert_eq!(s.read_exact(vec![0u8; 1]).await.1, [i]);
    }
    drop((l, clients));
    sleep(Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), before);
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------
// EMFILE in a child process (only the child's RLIMIT_NOFILE is lowered).

/// Set in the child: the backend's name.
const CHILD: &str = "XEV_ACCEPT_MULTI_EMFILE_CHILD";
/// Descriptors left free in the child.
const SLOTS: usize = 4;
/// Clients: more than the child can hold at once.
const CLIENTS: usize = 3 * SLOTS;

#[test]
fn emfile_mid_stream_is_an_error_item_and_the_stream_recovers() {
    if let Ok(name) = std::env::var(CHILD) {
        let b = *Backend::candidates()
            .iter()
            .find(|b| b.name() == name)
            .expect("backend name");
        return emfile_child(b);
    }
    let _g = sockets();
    for b in Backend::available() {
        let mut child = TestChild::spawn(
            "emfile_mid_stream_is_an_error_item_and_the_stream_recovers",
            CHILD,
            b.name(),
        );
        let port: u16 = child.report("PORT").parse().unwrap();
        let clients = connect_clients(SocketAddr::from(([127, 0, 0, 1], port)), CLIENTS);
        let done = child.report("DONE");
        assert!(child.succeeded(), "{b:?}: the child failed");
        let (order, errors) = done.split_once(' ').unwrap();
        let want: Vec<String> = (0..CLIENTS).map(|i| i.to_string()).collect();
        assert_eq!(order, want.join(","), "{b:?}: every client, in order");
        let errors: usize = errors.parse().unwrap();
        assert!(errors >= 2, "{b:?}: ran out of descriptors {errors} times");
        drop(clients);
    }
}

fn emfile_child(b: Backend) {
    let rt = xev::rt::Builder::new().backend(b).build().unwrap();
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mut inc = l.incoming();
        leave_free_descriptors(SLOTS);
        println!("XEV PORT {port}");
        let (mut order, mut errors, mut kept) = (Vec::new(), 0, Vec::new());
        while order.len() < CLIENTS {
            match timeout(LOST, next(&mut inc))
                .await
                .expect("stalled")
                .unwrap()
            {
                Ok(s) => {
                    order.push(index_of(&s).await.to_string());
                    kept.push(s);
                }
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    errors += 1;
                    // Back off, free descriptors, accept again.
                    sleep(Duration::from_millis(20)).await;
                    kept.clear();
                }
            }
        }
        println!("XEV DONE {} {errors}", order.join(","));
    });
}

#[xev::test(backend = "all")]
async fn a_stream_dropped_inside_a_loop_callback_loses_nothing() {
    let _g = counting();
    let before = open_sockets();
    let (l, addr) = listener();
    // The callback below must be 'static, and the stream borrows its listener: the
    // listener lives on the heap until the end of the test.
    let l: *mut TcpListener = Box::into_raw(Box::new(l));
    // SAFETY: freed only at the end of the test, after the stream borrowing it is gone.
    let lr: &'static TcpListener = unsafe { &*l };
    let clients = connect_clients(addr, 5);
    let mut inc = lr.incoming();
    let first = poll_once(&mut inc).await;
    let taken = usize::from(first.is_some());
    if let Some(s) = first {
        assert_eq!(index_of(&s.expect("accept")).await, 0);
    }
    // Dropped inside a loop callback (the runtime's loop is borrowed there): the stop
    // waits for the next turn and must still lose nothing.
    // Three more clients connect inside the callback, right before the drop: the kernel
    // accepts them for the multishot, which must hand them over, not close them.
    let slot = std::rc::Rc::new(std::cell::RefCell::new(Some(inc)));
    let later = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let (s2, l2) = (slot.clone(), later.clone());
    let mut c = Box::pin(xev::Completion::new());
    xev::rt::with_loop(|lp| {
        lp.timer(c.as_mut(), 0, move |_, _, _| {
            *l2.borrow_mut() = connect_clients(addr, 3);
            std::thread::sleep(Duration::from_millis(5));
            drop(s2.borrow_mut().take());
            xev::CallbackAction::Disarm
        })
    });
    while slot.borrow().is_some() {
        sleep(Duration::from_millis(1)).await;
    }
    let later = later.take();
    sleep(Duration::from_millis(20)).await;
    for (i, client) in clients.iter().chain(&later).enumerate().skip(taken) {
        let (s, peer) = timeout(LOST, lr.accept()).await.expect("lost").unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(index_of(&s).await, i % clients.len());
    }
    drop(c);
    // SAFETY: the stream that borrowed the listener was dropped in the callback above,
    // and `lr` is not used again.
    drop(unsafe { Box::from_raw(l) });
    drop((clients, later));
    sleep(Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), before);
}
