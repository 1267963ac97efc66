//! The async runtime's types used past their usual path: user code running at odd times
//! (a pool task whose destructor panics, wakers that drop a stream or a channel's sender),
//! objects carried from one runtime to the next (an `Incoming`, a hyper sleep), late
//! accept results, and byte counts at the edge of `usize`: regression tests for the
//! hangs, deadlocks and panics a soundness review of the runtime found, on every backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::task::{Context, Poll};
use std::time::Duration;

use runtime_tests::{each_backend_within, PanicOnDrop};
use xev::rt::{Builder, Pool};
use xev::Backend;

// ---------------------------------------------------------------------------------------
// Pool: a panicking destructor must not kill the worker.
// ---------------------------------------------------------------------------------------

/// A future that is ready at once and panics when it is dropped afterwards.
struct ReadyThenPanicOnDrop(PanicOnDrop);

impl Future for ReadyThenPanicOnDrop {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<u32> {
        Poll::Ready(7)
    }
}

/// Wait for `h` at most `limit` (a thread blocked in `join`, so a hang shows as a
/// timeout instead of a stuck test).
fn join_within<T: Send + 'static>(
    h: xev::rt::PoolJoinHandle<T>,
    limit: Duration,
) -> Option<Result<T, xev::rt::JoinError>> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(h.join());
    });
    rx.recv_timeout(limit).ok()
}

/// A pool task whose future finishes and then panics in its destructor: the output was
/// already handed to the handle, and the task set drops the future outside any
/// `catch_unwind`, so the panic unwound through the worker's `block_on` and killed the
/// worker thread. Every later task sent to that worker then hung forever (its job sat in
/// the inbox of a dead worker), although the pool documents that "a task that panics
/// only fails its own handle: the worker keeps running".
#[test]
fn a_pool_task_whose_future_panics_when_dropped_does_not_kill_its_worker() {
    each_backend_within(Duration::from_secs(30), |b| {
        let pool = Builder::new().backend(b).threads(1).build_pool().unwrap();
        let h = pool.spawn_on(0, || ReadyThenPanicOnDrop(PanicOnDrop));
        match join_within(h, Duration::from_secs(5)) {
            Some(Ok(7)) => {}
            Some(Ok(n)) => panic!("unexpected output {n}"),
            Some(Err(e)) => assert!(e.is_panic(), "{e:?}"),
            None => panic!("the first task's handle never resolved"),
        }
        let next = pool.spawn_on(0, || async { Pool::worker_index() });
        let got = join_within(next, Duration::from_secs(5));
        assert!(
            matches!(got, Some(Ok(Some(0)))),
            "the worker died: a later task never ran ({got:?})"
        );
        pool.shutdown();
    });
}

/// A job aborted before its worker built it drops its closure unrun; a capture whose
/// destructor panics unwound through the worker's main future and killed the worker, so
/// later tasks on it hung.
#[test]
fn an_aborted_job_whose_closure_panics_when_dropped_does_not_kill_its_worker() {
    each_backend_within(Duration::from_secs(30), |b| {
        let pool = Builder::new().backend(b).threads(1).build_pool().unwrap();
        // Hold the worker inside a closure until the second job is queued and aborted.
        let (go_tx, go_rx) = std_mpsc::channel::<()>();
        let blocker = pool.spawn_on(0, move || {
            go_rx.recv().unwrap();
            async {}
        });
        let guard = PanicOnDrop;
        let aborted = pool.spawn_on(0, move || {
            let _keep = &guard;
            async {}
        });
        aborted.abort();
        go_tx.send(()).unwrap();
        assert!(matches!(
            join_within(blocker, Duration::from_secs(5)),
            Some(Ok(()))
        ));
        let got = join_within(aborted, Duration::from_secs(5));
        assert!(
            matches!(&got, Some(Err(e)) if e.is_cancelled() || e.is_panic()),
            "{got:?}"
        );
        let next = pool.spawn_on(0, || async { Pool::worker_index() });
        let got = join_within(next, Duration::from_secs(5));
        assert!(
            matches!(got, Some(Ok(Some(0)))),
            "the worker died: a later task never ran ({got:?})"
        );
        pool.shutdown();
    });
}

// ---------------------------------------------------------------------------------------
// Objects carried from one runtime to the next on the same thread.
// ---------------------------------------------------------------------------------------

/// A runtime pinned to `b`.
fn runtime(b: Backend) -> xev::rt::Runtime {
    Builder::new()
        .backend(b)
        .build()
        .unwrap_or_else(|e| panic!("runtime on {b:?}: {e}"))
}

/// Poll `fut` once (it must not be ready yet).
async fn poll_once<F: Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx: &mut Context<'_>| {
        assert!(Pin::new(&mut *fut).poll(cx).is_pending(), "ready too early");
        Poll::Ready(())
    })
    .await
}

/// An `Incoming` first polled in one runtime (on io_uring that arms its multishot accept
/// in that runtime's loop) and polled again in a later runtime. The first runtime's
/// shutdown abandoned the multishot without running its callback, so the queue still
/// said "armed" and never armed again: the stream stayed `Pending` forever although
/// clients connected. At most one error item (the cancelled accept of the old runtime)
/// may come before the connection.
#[test]
fn an_incoming_polled_again_in_a_later_runtime_still_accepts() {
    use futures_util::StreamExt;
    each_backend_within(Duration::from_secs(30), |b| {
        let listener = runtime(b)
            .block_on(async { xev::net::TcpListener::bind("127.0.0.1:0") })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        runtime(b).block_on(async { poll_once(&mut incoming.next()).await });
        // The first runtime is gone; a second one takes over.
        runtime(b).block_on(async {
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let got = xev::time::timeout(Duration::from_secs(3), async {
                let mut errors = 0;
                loop {
                    match incoming.next().await {
                        Some(Ok(s)) => return s,
                        Some(Err(e)) => {
                            errors += 1;
                            assert!(errors <= 1, "a second error: {e}");
                        }
                        None => panic!("an Incoming never ends"),
                    }
                }
            })
            .await;
            assert!(got.is_ok(), "the Incoming never yielded the connection");
        });
    });
}

/// A hyper sleep first polled in one runtime registers with that runtime's hyper timer
/// task. Polled later in another runtime (the first one gone, or idle), it waited for a
/// task that no longer ran, and never fired.
#[test]
fn a_hyper_sleep_polled_in_a_later_runtime_still_fires() {
    use std::time::Instant;
    use xev::compat::HyperSleep;
    each_backend_within(Duration::from_secs(30), |b| {
        // The first runtime is dropped.
        let mut s = Box::pin(HyperSleep::until(
            Instant::now() + Duration::from_millis(100),
        ));
        runtime(b).block_on(async { poll_once(&mut s).await });
        let r = runtime(b).block_on(xev::time::timeout(Duration::from_secs(3), s));
        assert!(r.is_ok(), "the sleep never fired after its runtime ended");

        // The first runtime is alive but not running.
        let first = runtime(b);
        let mut s = Box::pin(HyperSleep::until(
            Instant::now() + Duration::from_millis(100),
        ));
        first.block_on(async { poll_once(&mut s).await });
        let r = runtime(b).block_on(xev::time::timeout(Duration::from_secs(3), s));
        assert!(r.is_ok(), "the sleep never fired in the runtime polling it");
        drop(first);
    });
}

// ---------------------------------------------------------------------------------------
// Byte counts at the edge of usize.
// ---------------------------------------------------------------------------------------

/// `PooledBuf::advance(n)` documents "all of them if `n` is larger"; after a first
/// advance, `advance(usize::MAX)` overflowed `start + n` (a panic in debug builds; in
/// release the sum wrapped and the buffer showed bytes already consumed again).
#[xev::test(backend = "all")]
async fn a_pooled_read_advanced_by_usize_max_is_empty() {
    let listener = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = xev::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (server, _) = listener.accept().await.unwrap();
    client.write_all(b"hello".to_vec()).await.0.unwrap();
    let mut got = server.read_pooled().await.unwrap();
    assert_eq!(&got[..], b"hello");
    got.advance(2);
    assert_eq!(&got[..], b"llo");
    got.advance(usize::MAX);
    assert!(got.is_empty(), "{:?}", &got[..]);
}

// ---------------------------------------------------------------------------------------
// A consumer dropped by its own waker inside the multishot's last callback.
// ---------------------------------------------------------------------------------------

mod dropped_by_its_waker {
    use std::cell::{Cell, RefCell};
    use std::future::poll_fn;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll, Wake, Waker};

    use futures_core::Stream;
    use xev::net::{Incoming, TcpListener};
    use xev::Backend;

    const CHILD: &str = "XEV_TEST_DROPPED_BY_ITS_WAKER";
    const TEST: &str =
        "dropped_by_its_waker::an_incoming_dropped_by_its_waker_in_the_last_callback_is_not_freed_there";
    /// Exactly the accept queue's capacity: the multishot stops with the queue full.
    const CLIENTS: usize = 64;

    thread_local! {
        static STREAM: RefCell<Option<Incoming<'static>>> = const { RefCell::new(None) };
        static TAKEN: Cell<usize> = const { Cell::new(0) };
    }

    /// Wakes the task; once every client was taken, first drops the stream (inside the
    /// loop callback that wakes it, as a waker may).
    struct DropStreamOnWake(Waker);

    impl Wake for DropStreamOnWake {
        fn wake(self: Arc<Self>) {
            if TAKEN.with(Cell::get) >= CLIENTS {
                drop(STREAM.with(|s| s.borrow_mut().take()));
            }
            self.0.wake_by_ref();
        }
    }

    fn child(b: Backend) {
        let rt = xev::rt::Builder::new().backend(b).build().unwrap();
        // 'static, for the thread-local slot the waker empties.
        let listener: &'static TcpListener = Box::leak(Box::new(
            rt.block_on(async { TcpListener::bind("127.0.0.1:0") })
                .unwrap(),
        ));
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        STREAM.with(|s| *s.borrow_mut() = Some(listener.incoming()));
        rt.block_on(poll_fn(|cx| {
            let w = Waker::from(Arc::new(DropStreamOnWake(cx.waker().clone())));
            let mut cx2 = Context::from_waker(&w);
            let gone = STREAM.with(|s| {
                let mut s = s.borrow_mut();
                let Some(inc) = s.as_mut() else {
                    return true;
                };
                // Take everything queued, then wait with the dropping waker.
                while let Poll::Ready(Some(r)) = Pin::new(&mut *inc).poll_next(&mut cx2) {
                    drop(r.unwrap());
                    TAKEN.with(|t| t.set(t.get() + 1));
                }
                false
            });
            if gone {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        // A few more rounds (the record is freed by a task), then the runtime goes.
        rt.block_on(xev::time::sleep(std::time::Duration::from_millis(10)));
        // The stream borrowing the listener is gone (the waker dropped it): free the
        // listener, so that LeakSanitizer (CI runs this under ASan) sees no leak.
        assert!(
            STREAM.with(|s| s.borrow().is_none()),
            "the waker dropped the stream"
        );
        let listener: *const TcpListener = listener;
        // SAFETY: `listener` came from `Box::leak` above, and nothing borrows it any more:
        // its only borrower, the `Incoming` in `STREAM`, was dropped.
        rt.block_on(async { drop(unsafe { Box::from_raw(listener.cast_mut()) }) });
        drop(rt);
        drop(clients);
        println!("XEV DONE {}", TAKEN.with(Cell::get));
    }

    /// On io_uring, an `Incoming` whose multishot stopped with its queue full, and whose
    /// consumer took every connection and waits, is woken by the operation's last
    /// callback (`finished`). A waker that drops the stream right there ran `close`
    /// with the queue `Idle`: it took the completion, which `state()` reports as Dead
    /// inside its callback, for a finished one and re-prepared it, so `invoke` dropped
    /// the callback it held, with the last reference to the queue: the queue and its
    /// completion were freed inside the completion's own callback (the completion's drop
    /// aborts the process: "a Completion was dropped inside its own callback"; past it,
    /// `invoke` would read the freed completion).
    #[test]
    fn an_incoming_dropped_by_its_waker_in_the_last_callback_is_not_freed_there() {
        if let Ok(name) = std::env::var(CHILD) {
            let b = *Backend::candidates()
                .iter()
                .find(|b| b.name() == name)
                .expect("backend name");
            return child(b);
        }
        // The accept queue (a kernel multishot) exists on io_uring only; on the poll
        // backend the stream keeps one single accept in flight, and nothing would wake
        // the waiting consumer once the clients are taken.
        for b in Backend::available().filter(|b| *b == Backend::IoUring) {
            let mut c = runtime_tests::child::TestChild::spawn(TEST, CHILD, b.name());
            let taken: usize = c.report("DONE").parse().unwrap();
            assert!(c.succeeded(), "{b:?}: the child failed");
            assert_eq!(taken, CLIENTS, "{b:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Channels: a waker's destructor runs user code; never under the channel's lock.
// ---------------------------------------------------------------------------------------

mod waker_drops_under_the_lock {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::{mpsc as std_mpsc, Arc, Mutex};
    use std::task::{Context, Wake, Waker};
    use std::time::Duration;

    use xev::sync::{mpsc, oneshot};

    /// A waker that owns something (here: the sending end of the very channel it waits
    /// on, as a signalling combinator may), dropped with the waker.
    struct Owning<T: Send>(#[allow(dead_code)] Mutex<Option<T>>);

    impl<T: Send + 'static> Wake for Owning<T> {
        fn wake(self: Arc<Self>) {}
    }

    fn owning<T: Send + 'static>(v: T) -> Waker {
        Waker::from(Arc::new(Owning(Mutex::new(Some(v)))))
    }

    /// Run `f` on a thread; false if it did not finish within 5 s (a deadlock).
    fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
        let (tx, rx) = std_mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).is_ok()
    }

    /// Dropping a oneshot receiver dropped its stored waker under the channel's lock;
    /// the waker's last reference owned the sender, whose drop takes the same lock: the
    /// thread deadlocked on itself.
    #[test]
    fn a_oneshot_receiver_dropped_with_a_waker_owning_the_sender() {
        assert!(finishes(|| {
            let (tx, mut rx) = oneshot::channel::<u8>();
            let w = owning(tx);
            assert!(Pin::new(&mut rx)
                .poll(&mut Context::from_waker(&w))
                .is_pending());
            drop(w); // the receiver's stored clone is the last one
            drop(rx);
        }));
        // Re-registering with another waker dropped the old one under the lock too.
        assert!(finishes(|| {
            let (tx, mut rx) = oneshot::channel::<u8>();
            let w = owning(tx);
            assert!(Pin::new(&mut rx)
                .poll(&mut Context::from_waker(&w))
                .is_pending());
            drop(w);
            let other = owning(());
            let _ = Pin::new(&mut rx).poll(&mut Context::from_waker(&other));
        }));
    }

    /// The same for an mpsc receiver (bounded and unbounded), dropped or polled again
    /// with another waker, and for a bounded sender's wait.
    #[test]
    fn an_mpsc_end_dropped_with_a_waker_owning_a_sender() {
        assert!(finishes(|| {
            let (tx, mut rx) = mpsc::unbounded_channel::<u8>();
            let w = owning(tx);
            assert!(rx.poll_recv_for_test(&w));
            drop(w);
            drop(rx);
        }));
        assert!(finishes(|| {
            let (tx, mut rx) = mpsc::channel::<u8>(1);
            let w = owning(tx);
            assert!(rx.poll_recv_for_test(&w));
            drop(w);
            let other = owning(());
            rx.poll_recv_for_test(&other);
        }));
        assert!(finishes(|| {
            let (tx, rx) = mpsc::channel::<u8>(1);
            tx.try_send(1).unwrap();
            let tx2 = tx.clone();
            let w = owning(tx2);
            let mut send = Box::pin(tx.send(2));
            assert!(send
                .as_mut()
                .poll(&mut Context::from_waker(&w))
                .is_pending());
            drop(w);
            drop(send); // leaves the waiting senders: drops the stored waker
            drop(rx);
        }));
    }

    trait PollRecv {
        /// Poll a receive with `w`; true if it is pending.
        fn poll_recv_for_test(&mut self, w: &Waker) -> bool;
    }

    impl<T> PollRecv for mpsc::Receiver<T> {
        fn poll_recv_for_test(&mut self, w: &Waker) -> bool {
            let mut recv = self.recv();
            Pin::new(&mut recv)
                .poll(&mut Context::from_waker(w))
                .is_pending()
        }
    }
}

// ---------------------------------------------------------------------------------------
// A connection an orphaned accept received after the next accept started.
// ---------------------------------------------------------------------------------------

/// With SQPOLL the kernel posts completions between the loop's turns. An accept whose
/// future is dropped after the kernel accepted a client (the CQE posted, not reaped yet)
/// hands that connection to the listener's stash when its CQE is reaped; an accept
/// started meanwhile had looked at the (then empty) stash and waited in the kernel for
/// another client: the connected client was never accepted.
#[test]
fn a_connection_stashed_after_the_next_accept_started_is_accepted() {
    stashed_after_the_next_accept_started(false);
}

/// The same with an `Incoming` (on io_uring, a multishot accept) waiting instead.
#[test]
fn a_connection_stashed_while_an_incoming_waits_is_yielded() {
    stashed_after_the_next_accept_started(true);
}

fn stashed_after_the_next_accept_started(via_incoming: bool) {
    if !Backend::available().any(|b| b == Backend::IoUring) {
        return;
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let t = std::thread::spawn(move || {
        let rt = Builder::new()
            .backend(Backend::IoUring)
            .sqpoll(Duration::from_millis(200))
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = xev::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut first = Box::pin(listener.accept());
            // Polled with a waker of its own (nothing of this task's waits on it).
            let noop = std::task::Waker::noop();
            assert!(first
                .as_mut()
                .poll(&mut Context::from_waker(noop))
                .is_pending());
            // Let the loop hand the accept to the kernel.
            xev::time::sleep(Duration::from_millis(50)).await;
            let _client = std::net::TcpStream::connect(addr).unwrap();
            // The kernel accepts and posts the completion; the loop does not reap it yet.
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
            let started = std::time::Instant::now();
            let second = if via_incoming {
                use futures_util::StreamExt;
                let mut incoming = listener.incoming();
                let next = xev::time::timeout(Duration::from_secs(3), incoming.next()).await;
                next.map(|r| r.expect("never ends").map(|s| (s, addr)))
            } else {
                xev::time::timeout(Duration::from_secs(3), listener.accept()).await
            };
            // (A timeout that fires re-polls the stream, which then finds the stash: a
            // yield that took the whole limit is the hang too.)
            if !matches!(second, Ok(Ok(_))) || started.elapsed() >= Duration::from_secs(2) {
                // Where it was: the stash, which the next accept takes at once.
                let third = xev::time::timeout(Duration::from_millis(100), listener.accept());
                let third = matches!(third.await, Ok(Ok(_)));
                panic!(
                    "the connected client was never accepted: {second:?} (then in the \
                     listener's stash: {third})"
                );
            }
        });
        d.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let r = t.join();
    assert!(r.is_ok() && done.load(std::sync::atomic::Ordering::SeqCst));
}
