//! `xev::rt::Pool` (thread-per-core), `SO_REUSEPORT` listeners and `xev::sync`
//! channels. A pool does not fit `#[xev::test(backend = "all")]`: every pool test builds
//! its pools once per `xev::Backend::available()` (`each_backend`).

use std::cell::Cell;
use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

#[allow(dead_code)] // the example's `main` and single-thread parts
#[path = "../../examples/http_hello.rs"]
mod http_hello;

use runtime_tests::each_backend;
use xev::net::{TcpListener, UdpSocket};
use xev::rt::{Builder, JoinError, Pool, PoolHandle};
use xev::sync::{mpsc, oneshot};
use xev::time::{sleep, timeout};
use xev::Backend;

fn pool(b: Backend, n: usize) -> Pool {
    Builder::new()
        .backend(b)
        .threads(n)
        .build_pool()
        .unwrap_or_else(|e| panic!("pool on {b:?}: {e}"))
}

/// The backend of the runtime this task runs on.
fn current_backend() -> Backend {
    xev::rt::with_loop(|lp| lp.backend())
}

fn panic_message(e: JoinError) -> String {
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn pool_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pool>();
    check::<PoolHandle>();
    check::<xev::rt::PoolJoinHandle<Vec<u8>>>();
    check::<mpsc::Sender<Vec<u8>>>();
    check::<mpsc::UnboundedSender<Vec<u8>>>();
    check::<oneshot::Sender<Vec<u8>>>();
    fn send<T: Send>() {}
    send::<mpsc::Receiver<Vec<u8>>>();
    send::<oneshot::Receiver<Vec<u8>>>();
}

#[test]
fn each_worker_is_its_own_thread_with_its_own_loop_on_the_chosen_backend() {
    each_backend(|b| {
        let pool = pool(b, 3);
        assert_eq!(pool.threads(), 3);
        let main = thread::current().id();
        let hs: Vec<_> = (0..3)
            .map(|i| {
                pool.spawn_on(i, move || async move {
                    // Not Send: built and run on the worker.
                    let local = Rc::new(Cell::new(i));
                    sleep(Duration::from_millis(2)).await;
                    (
                        local.get(),
                        Pool::worker_index(),
                        thread::current().id(),
                        thread::current().name().map(str::to_owned),
                        current_backend(),
                    )
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for (i, h) in hs.into_iter().enumerate() {
            assert_eq!(h.worker(), i);
            let (v, idx, id, name, backend) = h.join().unwrap();
            assert_eq!((v, idx), (i, Some(i)));
            assert_ne!(id, main);
            assert_eq!(name.as_deref(), Some(format!("xev-worker-{i}").as_str()));
            assert_eq!(backend, b);
            ids.insert(id);
        }
        assert_eq!(ids.len(), 3, "three distinct worker threads");
        // Off the workers there is no worker index and no current pool.
        assert_eq!(Pool::worker_index(), None);
        assert!(PoolHandle::current().is_none());
    });
}

#[test]
fn spawn_is_round_robin_and_the_same_worker_keeps_the_same_thread() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let hs: Vec<_> = (0..6)
            .map(|_| {
                pool.spawn(|| async { (Pool::worker_index().unwrap(), thread::current().id()) })
            })
            .collect();
        let got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let workers: Vec<usize> = got.iter().map(|g| g.0).collect();
        assert_eq!(workers, [0, 1, 0, 1, 0, 1]);
        for g in &got {
            let first = got.iter().find(|x| x.0 == g.0).unwrap();
            assert_eq!(g.1, first.1, "worker {} changed threads", g.0);
        }
    });
}

#[test]
fn spawn_on_a_worker_that_does_not_exist_panics_with_the_range() {
    let pool = Pool::new(2).unwrap();
    let r = catch_unwind(AssertUnwindSafe(|| pool.spawn_on(2, || async {})));
    let msg = r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("spawn_on(2) on a pool of 2 workers"), "{msg}");
    // The pool still works.
    assert_eq!(pool.spawn_on(1, || async { 5 }).join().unwrap(), 5);
}

#[test]
fn bad_builder_settings_are_errors() {
    let e = Builder::new().threads(0).build_pool().unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = Pool::new(0).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = Builder::new()
        .threads(1)
        .worker_cores(Vec::new())
        .build_pool()
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = Builder::new()
        .threads(1)
        .blocking_threads(0)
        .build_pool()
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    #[cfg(target_os = "linux")]
    {
        // A CPU beyond the set, and one the process may not use.
        let e = Builder::new()
            .threads(2)
            .worker_cores([100_000])
            .build_pool()
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let e = Builder::new()
            .threads(2)
            .worker_cores([1000])
            .build_pool()
            .unwrap_err();
        assert!(e.to_string().contains("CPU 1000"), "{e}");
    }
}

/// The CPUs the calling thread may run on.
#[cfg(target_os = "linux")]
fn my_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(r, 0);
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE and `set` is initialised.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn pinned_workers_run_on_one_cpu_each() {
    let allowed = my_cpus();
    let n = 2;
    let pool = Builder::new()
        .threads(n)
        .pin_workers(true)
        .build_pool()
        .unwrap();
    for i in 0..n {
        let cpus = pool.spawn_on(i, || async { my_cpus() }).join().unwrap();
        assert_eq!(cpus, [allowed[i % allowed.len()]], "worker {i}");
    }
    let last = *allowed.last().unwrap();
    let pool = Builder::new()
        .threads(2)
        .worker_cores([last])
        .build_pool()
        .unwrap();
    for i in 0..2 {
        assert_eq!(
            pool.spawn_on(i, || async { my_cpus() }).join().unwrap(),
            [last]
        );
    }
    // Unpinned workers keep the process's set.
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.spawn(|| async { my_cpus() }).join().unwrap(), allowed);
}

#[test]
fn join_handles_are_awaited_from_another_worker_and_from_block_on() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let handle = pool.handle();
        let h = pool.spawn_on(0, move || async move {
            let on_1 = handle.spawn_on(1, || async {
                sleep(Duration::from_millis(5)).await;
                (Pool::worker_index(), String::from("from 1"))
            });
            let (w, s) = on_1.await.unwrap();
            (w, s, Pool::worker_index())
        });
        let r = xev::rt::Builder::new()
            .backend(b)
            .build()
            .unwrap()
            .block_on(h);
        assert_eq!(r.unwrap(), (Some(1), "from 1".to_owned(), Some(0)));

        // A handle awaited on a plain runtime on this thread, racing a sleep there.
        let slow = pool.spawn(|| async {
            sleep(Duration::from_millis(30)).await;
            7
        });
        let r = xev::block_on(async {
            let ticks = xev::spawn(async {
                let mut n = 0;
                for _ in 0..3 {
                    sleep(Duration::from_millis(1)).await;
                    n += 1;
                }
                n
            });
            (slow.await.unwrap(), ticks.await.unwrap())
        });
        assert_eq!(r, (7, 3));
    });
}

#[test]
fn panics_fail_only_their_handle_and_the_worker_keeps_running() {
    each_backend(|b| {
        let pool = pool(b, 1);
        let p = pool.spawn(|| async {
            sleep(Duration::from_millis(1)).await;
            panic!("task panicked on purpose");
        });
        let e = p.join().unwrap_err();
        assert!(e.is_panic());
        assert_eq!(panic_message(e), "task panicked on purpose");
        // A panic in the closure that builds the future.
        let p = pool.spawn(|| -> std::future::Ready<()> { panic!("builder panicked") });
        let e = p.join().unwrap_err();
        assert_eq!(panic_message(e), "builder panicked");
        // Same worker, still serving.
        let t = thread::current().id();
        let r = pool.spawn(move || async move { thread::current().id() != t });
        assert!(r.join().unwrap());
    });
}

#[test]
fn join_on_the_worker_that_runs_the_task_panics_instead_of_deadlocking() {
    let pool = Pool::new(2).unwrap();
    let h = pool.spawn_on(0, || async {
        let me = PoolHandle::current().unwrap();
        me.spawn_on(0, || async { 1 }).join()
    });
    let msg = panic_message(h.join().unwrap_err());
    assert!(msg.contains("would deadlock"), "{msg}");
    // Blocking on another worker is allowed (if unwise).
    let h = pool.spawn_on(0, || async {
        let me = PoolHandle::current().unwrap();
        me.spawn_on(1, || async { 2 }).join().unwrap()
    });
    assert_eq!(h.join().unwrap(), 2);
}

/// Records on drop the thread it was dropped on.
struct DropProbe(Arc<Mutex<Vec<thread::ThreadId>>>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        self.0.lock().unwrap().push(thread::current().id());
    }
}

#[test]
fn shutdown_cancels_pending_tasks_on_their_workers_and_joins_the_threads() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let (started_tx, mut started_rx) = mpsc::unbounded_channel();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let probe = DropProbe(dropped.clone());
                let started = started_tx.clone();
                pool.spawn(move || async move {
                    let _probe = probe;
                    started.send(thread::current().id()).unwrap();
                    sleep(Duration::from_secs(3600)).await;
                })
            })
            .collect();
        let mut workers = Vec::new();
        for _ in 0..4 {
            workers.push(xev::block_on(started_rx.recv()).unwrap());
        }
        let handle = pool.handle();
        pool.shutdown(); // returns once the worker threads are joined
        for h in hs {
            assert!(h.is_finished());
            assert!(h.join().unwrap_err().is_cancelled());
        }
        let dropped = dropped.lock().unwrap().clone();
        assert_eq!(dropped.len(), 4);
        for id in &dropped {
            assert!(workers.contains(id), "futures are dropped on their workers");
        }
        // Spawning through a handle that outlived the pool: cancelled, nothing runs.
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        let late = handle.spawn(move || {
            r.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        assert!(late.join().unwrap_err().is_cancelled());
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    });
}

#[test]
fn dropping_the_pool_with_queued_jobs_cancels_them_without_building_them() {
    let pool = Pool::new(1).unwrap();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    // The worker is busy (blocking, on purpose) while more jobs queue up behind it.
    let blocker = pool.spawn(move || async move {
        started_tx.send(()).unwrap();
        thread::sleep(Duration::from_millis(50));
        "finished"
    });
    started_rx.recv().unwrap();
    let built = Arc::new(AtomicUsize::new(0));
    let queued: Vec<_> = (0..10)
        .map(|i| {
            let built = built.clone();
            pool.spawn(move || {
                built.fetch_add(1, Ordering::SeqCst);
                async move { i }
            })
        })
        .collect();
    drop(pool); // waits for the blocker's poll to end, then joins the worker
    assert_eq!(blocker.join().unwrap(), "finished");
    for h in queued {
        assert!(h.join().unwrap_err().is_cancelled());
    }
    assert_eq!(built.load(Ordering::SeqCst), 0);
}

#[test]
fn abort_cancels_a_running_task_and_one_not_started_yet() {
    each_backend(|b| {
        let pool = pool(b, 1);
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let probe = DropProbe(dropped.clone());
        let (tx, rx) = oneshot::channel();
        let h = pool.spawn(move || async move {
            let _probe = probe;
            tx.send(()).unwrap();
            sleep(Duration::from_secs(3600)).await;
        });
        xev::block_on(rx).unwrap();
        h.abort();
        let e = xev::block_on(h).unwrap_err();
        assert!(e.is_cancelled());
        assert_eq!(dropped.lock().unwrap().len(), 1);

        // Aborted before the worker got to build it: the closure never runs.
        let built = Arc::new(AtomicUsize::new(0));
        let b2 = built.clone();
        let busy = pool.spawn(|| async { thread::sleep(Duration::from_millis(30)) });
        let h = pool.spawn(move || {
            b2.fetch_add(1, Ordering::SeqCst);
            async { 1 }
        });
        h.abort();
        assert!(h.join().unwrap_err().is_cancelled());
        busy.join().unwrap();
        assert_eq!(built.load(Ordering::SeqCst), 0);

        // Abort after completion changes nothing.
        let h = pool.spawn(|| async { 3 });
        while !h.is_finished() {
            thread::sleep(Duration::from_millis(1));
        }
        h.abort();
        assert_eq!(h.join().unwrap(), 3);
    });
}

#[test]
fn many_threads_spawning_at_once_lose_no_task() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let handle = pool.handle();
        let sum = Arc::new(AtomicUsize::new(0));
        let spawners: Vec<_> = (0..4)
            .map(|t| {
                let handle = handle.clone();
                let sum = sum.clone();
                thread::spawn(move || {
                    let hs: Vec<_> = (0..250)
                        .map(|i| {
                            let sum = sum.clone();
                            handle.spawn(move || async move {
                                if i % 50 == 0 {
                                    xev::rt::yield_now().await;
                                }
                                sum.fetch_add(1, Ordering::Relaxed);
                                t * 1000 + i
                            })
                        })
                        .collect();
                    hs.into_iter()
                        .enumerate()
                        .all(|(i, h)| h.join().unwrap() == t * 1000 + i)
                })
            })
            .collect();
        for s in spawners {
            assert!(s.join().unwrap());
        }
        assert_eq!(sum.load(Ordering::Relaxed), 1000);
    });
}

#[test]
fn main_attribute_with_threads_runs_the_body_on_worker_0() {
    #[xev::main(threads = 2)]
    async fn pooled_main() -> (Option<usize>, Option<usize>, usize) {
        let pool = PoolHandle::current().expect("on a worker");
        let other = pool.spawn_on(1, || async { Pool::worker_index() });
        (Pool::worker_index(), other.await.unwrap(), pool.threads())
    }
    assert_eq!(pooled_main(), (Some(0), Some(1), 2));

    #[xev::main(threads = 1)]
    async fn pooled_panic() {
        panic!("main body panicked");
    }
    let p = catch_unwind(pooled_panic).unwrap_err();
    assert_eq!(p.downcast_ref::<&str>(), Some(&"main body panicked"));
}

// --- SO_REUSEPORT -------------------------------------------------------------------

/// Accept on `listener` until `total` (shared by the listeners) reaches `want`; this
/// listener's count. (The timeout only makes it look at `total` again.)
async fn accept_until(listener: TcpListener, total: Arc<AtomicUsize>, want: usize) -> usize {
    let mut n = 0;
    while total.load(Ordering::SeqCst) < want {
        if let Ok(r) = timeout(Duration::from_millis(20), listener.accept()).await {
            r.unwrap();
            n += 1;
            total.fetch_add(1, Ordering::SeqCst);
        }
    }
    n
}

#[test]
fn two_reuseport_listeners_on_one_port_both_accept() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        let total = Arc::new(AtomicUsize::new(0));
        let t = total.clone();
        let first = pool.spawn_on(0, move || async move {
            let l = TcpListener::bind_reuseport("127.0.0.1:0").unwrap();
            addr_tx.send(l.local_addr().unwrap()).unwrap();
            accept_until(l, t, 64).await
        });
        let addr = xev::block_on(addr_rx).unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let t = total.clone();
        let second = pool.spawn_on(1, move || async move {
            let l = TcpListener::bind_reuseport(addr).unwrap();
            assert_eq!(l.local_addr().unwrap(), addr);
            ready_tx.send(()).unwrap();
            accept_until(l, t, 64).await
        });
        xev::block_on(ready_rx).unwrap();
        // A plain bind of the same port is refused: only SO_REUSEPORT sockets share it.
        let e = xev::block_on(async { TcpListener::bind(addr).map(drop) }).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        // 64 connections from distinct source ports spread over both listeners.
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let (a, b2) = (first.join().unwrap(), second.join().unwrap());
        drop(clients);
        assert_eq!(a + b2, 64);
        assert!(a > 0 && b2 > 0, "both listeners accept: {a} and {b2}");
    });
}

#[test]
fn two_reuseport_udp_sockets_on_one_port_both_receive() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let (addr_tx, addr_rx) = oneshot::channel::<SocketAddr>();
        /// Count "hi" datagrams until a "stop" arrives once `total` (shared) reached
        /// `want`; this socket's count. (No timeout: a datagram must not be lost to a
        /// cancelled receive.)
        async fn count(s: UdpSocket, total: Arc<AtomicUsize>, want: usize) -> usize {
            let mut n = 0;
            let mut buf = vec![0u8; 64];
            loop {
                let (r, b) = s.recv_from(buf).await;
                buf = b;
                let (len, _) = r.unwrap();
                match &buf[..len] {
                    b"hi" => {
                        n += 1;
                        total.fetch_add(1, Ordering::SeqCst);
                    }
                    b"stop" if total.load(Ordering::SeqCst) >= want => return n,
                    b"stop" => {}
                    other => panic!("unexpected datagram {other:?}"),
                }
            }
        }
        let total = Arc::new(AtomicUsize::new(0));
        let t = total.clone();
        let first = pool.spawn_on(0, move || async move {
            let s = UdpSocket::bind_reuseport("127.0.0.1:0").unwrap();
            addr_tx.send(s.local_addr().unwrap()).unwrap();
            count(s, t, 64).await
        });
        let addr = xev::block_on(addr_rx).unwrap();
        let (ready_tx, ready_rx) = oneshot::channel::<()>();
        let t = total.clone();
        let second = pool.spawn_on(1, move || async move {
            let s = UdpSocket::bind_reuseport(addr).unwrap();
            ready_tx.send(()).unwrap();
            count(s, t, 64).await
        });
        xev::block_on(ready_rx).unwrap();
        for _ in 0..64 {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            c.send_to(b"hi", addr).unwrap();
        }
        // "stop" from fresh source ports (so both sockets get some) until both ended.
        while !(first.is_finished() && second.is_finished()) {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            c.send_to(b"stop", addr).unwrap();
            thread::sleep(Duration::from_millis(2));
        }
        let (a, b2) = (first.join().unwrap(), second.join().unwrap());
        assert_eq!(a + b2, 64);
        assert!(a > 0 && b2 > 0, "both sockets receive: {a} and {b2}");
    });
}

// --- channels -----------------------------------------------------------------------

#[test]
fn bounded_channel_holds_capacity_values_and_send_waits_for_room() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let (tx, mut rx) = mpsc::channel::<u32>(2);
        assert_eq!(tx.max_capacity(), 2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(mpsc::TrySendError::Full(3)));
        assert_eq!(rx.len(), 2);
        // A sender on worker 0 blocks on the full channel until worker 1 receives.
        let sent = Arc::new(AtomicUsize::new(0));
        let s2 = sent.clone();
        let sender = pool.spawn_on(0, move || async move {
            for v in 3..=1000 {
                tx.send(v).await.unwrap();
                s2.store(v as usize, Ordering::SeqCst);
            }
        });
        thread::sleep(Duration::from_millis(20));
        assert_eq!(sent.load(Ordering::SeqCst), 0, "no room: the send waits");
        let receiver = pool.spawn_on(1, move || async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                assert!(rx.len() <= 2);
                got.push(v);
            }
            got
        });
        sender.join().unwrap();
        assert_eq!(receiver.join().unwrap(), (1..=1000).collect::<Vec<_>>());
    });
}

#[test]
#[should_panic(expected = "capacity must be at least 1")]
fn a_zero_capacity_channel_is_refused() {
    let _ = mpsc::channel::<u8>(0);
}

#[test]
fn dropping_every_sender_wakes_the_receiver_on_another_worker() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let (tx, mut rx) = mpsc::channel::<u8>(4);
        let tx2 = tx.clone();
        let (waiting_tx, waiting_rx) = oneshot::channel();
        let r = pool.spawn_on(1, move || async move {
            waiting_tx.send(()).unwrap();
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end, rx.try_recv())
        });
        xev::block_on(waiting_rx).unwrap();
        thread::sleep(Duration::from_millis(10));
        pool.spawn_on(0, move || async move {
            tx.send(9).await.unwrap();
            drop(tx);
        })
        .join()
        .unwrap();
        assert!(!r.is_finished());
        drop(tx2); // the last sender: the receiver sees the end
        let (first, end, try_end) = r.join().unwrap();
        assert_eq!(first, Some(9));
        assert_eq!(end, None);
        assert_eq!(try_end, Err(mpsc::TryRecvError::Disconnected));
    });
}

#[test]
fn dropping_the_receiver_wakes_a_waiting_sender_and_hands_the_value_back() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let dropped = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<DropProbe>(1);
        tx.try_send(DropProbe(dropped.clone())).unwrap();
        let probe = DropProbe(dropped.clone());
        let (waiting_tx, waiting_rx) = oneshot::channel();
        let s = pool.spawn_on(0, move || async move {
            waiting_tx.send(()).unwrap();
            let r = tx.send(probe).await;
            let closed = tx.is_closed();
            (r.map_err(|e| e.0).err().map(drop).is_some(), closed)
        });
        xev::block_on(waiting_rx).unwrap();
        thread::sleep(Duration::from_millis(10));
        assert!(!s.is_finished());
        pool.spawn_on(1, move || async move { drop(rx) })
            .join()
            .unwrap();
        assert_eq!(s.join().unwrap(), (true, true));
        // The queued value was dropped with the receiver, the refused one by the sender.
        assert_eq!(dropped.lock().unwrap().len(), 2);
    });
}

#[test]
fn unbounded_receive_keeps_order_and_len_across_batches() {
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    for v in 0..3 {
        tx.send(v).unwrap();
    }
    assert_eq!(rx.len(), 3);
    assert_eq!(rx.try_recv(), Ok(0)); // the receiver took the batch
    assert_eq!(rx.len(), 2);
    tx.send(3).unwrap();
    assert_eq!(rx.len(), 3);
    let got: Vec<u32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert_eq!(got, [1, 2, 3]);
    assert!(rx.is_empty());
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
    tx.send(4).unwrap();
    drop(tx);
    assert_eq!(rx.try_recv(), Ok(4));
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected));
}

#[test]
fn close_refuses_sends_but_keeps_queued_values() {
    xev::block_on(async {
        let (tx, mut rx) = mpsc::channel::<u8>(4);
        let (utx, mut urx) = mpsc::unbounded_channel::<u8>();
        tx.send(1).await.unwrap();
        utx.send(1).unwrap();
        rx.close();
        urx.close();
        assert!(tx.is_closed() && utx.is_closed());
        assert_eq!(tx.send(2).await, Err(mpsc::SendError(2)));
        assert_eq!(tx.try_send(2), Err(mpsc::TrySendError::Closed(2)));
        assert_eq!(utx.send(2), Err(mpsc::SendError(2)));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(urx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
        assert_eq!(urx.recv().await, None);
    });
}

/// A waker that counts its wake-ups.
struct CountWake(AtomicUsize);

impl std::task::Wake for CountWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn count_waker() -> (Arc<CountWake>, std::task::Waker) {
    let c = Arc::new(CountWake(AtomicUsize::new(0)));
    (c.clone(), std::task::Waker::from(c))
}

#[test]
fn a_woken_sender_dropped_before_sending_passes_the_room_on() {
    use std::task::Context;
    let (tx, mut rx) = mpsc::channel::<u8>(1);
    tx.try_send(0).unwrap();
    let (ca, wa) = count_waker();
    let (cb, wb) = count_waker();
    let mut a = Box::pin(tx.send(1));
    let mut b = Box::pin(tx.send(2));
    // Both wait for room, `a` first.
    assert!(a.as_mut().poll(&mut Context::from_waker(&wa)).is_pending());
    assert!(b.as_mut().poll(&mut Context::from_waker(&wb)).is_pending());
    assert_eq!(rx.try_recv(), Ok(0)); // room for one: wakes `a` only
    assert_eq!(ca.0.load(Ordering::SeqCst), 1);
    assert_eq!(cb.0.load(Ordering::SeqCst), 0);
    drop(a); // ... which gives up: `b` must be woken for the room
    assert_eq!(cb.0.load(Ordering::SeqCst), 1);
    assert_eq!(
        b.as_mut().poll(&mut Context::from_waker(&wb)),
        Poll::Ready(Ok(()))
    );
    drop(b);
    assert_eq!(rx.try_recv(), Ok(2));
    // A waiting sender dropped while still queued wakes nobody.
    tx.try_send(3).unwrap();
    let mut c = Box::pin(tx.send(4));
    let (cc, wc) = count_waker();
    assert!(c.as_mut().poll(&mut Context::from_waker(&wc)).is_pending());
    drop(c);
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(cc.0.load(Ordering::SeqCst), 0);
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty));
}

#[test]
fn many_senders_on_threads_and_workers_deliver_everything_in_per_sender_order() {
    each_backend(|b| {
        let pool = pool(b, 2);
        let (tx, mut rx) = mpsc::channel::<(usize, usize)>(16);
        let (utx, mut urx) = mpsc::unbounded_channel::<(usize, usize)>();
        let mut senders = Vec::new();
        for s in 0..4 {
            let tx = tx.clone();
            senders.push(pool.spawn(move || async move {
                for i in 0..500 {
                    tx.send((s, i)).await.unwrap();
                }
            }));
        }
        let threads: Vec<_> = (0..4)
            .map(|s| {
                let utx = utx.clone();
                thread::spawn(move || (0..500).for_each(|i| utx.send((s, i)).unwrap()))
            })
            .collect();
        drop((tx, utx));
        let check = |got: Vec<(usize, usize)>| {
            assert_eq!(got.len(), 2000);
            for s in 0..4 {
                let seq: Vec<usize> = got.iter().filter(|x| x.0 == s).map(|x| x.1).collect();
                assert_eq!(seq, (0..500).collect::<Vec<_>>());
            }
        };
        let bounded = xev::block_on(async {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        check(bounded);
        let unbounded = pool
            .spawn_on(1, move || async move {
                let mut got = Vec::new();
                while let Some(v) = urx.recv().await {
                    got.push(v);
                }
                got
            })
            .join()
            .unwrap();
        check(unbounded);
        senders.into_iter().for_each(|s| s.join().unwrap());
        threads.into_iter().for_each(|t| t.join().unwrap());
    });
}

/// The bounded channel's lock-free ring under load: for capacities from 1 up, a sender
/// fills the channel while worker 1 receives, so the sender and the receiver keep going
/// to sleep and waking each other across threads: first a sender task on worker 0, then
/// a sender on a plain thread (its own `block_on`), each alone (a second sender could
/// wake a stranded one). Every send and receive has a 3 s limit (each run takes well
/// under a second): a lost wake-up fails the test instead of hanging it. Everything
/// arrives once, in order, and `len` never exceeds the capacity.
#[test]
fn bounded_channels_lose_no_wake_up_under_load() {
    const N: u32 = 10_000;
    let limit = Duration::from_secs(3);
    each_backend(|b| {
        let pool = pool(b, 2);
        for cap in [1usize, 2, 5, 64] {
            for on_thread in [false, true] {
                let (tx, mut rx) = mpsc::channel::<u32>(cap);
                let send_all = move || async move {
                    for i in 0..N {
                        timeout(limit, tx.send(i))
                            .await
                            .unwrap_or_else(|_| panic!("capacity {cap}: the sender was not woken"))
                            .unwrap();
                    }
                };
                let receiver = pool.spawn_on(1, move || async move {
                    let mut next = 0;
                    loop {
                        match timeout(limit, rx.recv()).await {
                            Ok(Some(i)) => {
                                assert_eq!(i, next, "capacity {cap}: order");
                                next += 1;
                                assert!(rx.len() <= cap, "{} queued, capacity {cap}", rx.len());
                            }
                            Ok(None) => return next,
                            Err(_) => panic!("capacity {cap}: the receiver was not woken"),
                        }
                    }
                });
                if on_thread {
                    thread::spawn(move || xev::block_on(send_all()))
                        .join()
                        .unwrap();
                } else {
                    pool.spawn_on(0, send_all).join().unwrap();
                }
                assert_eq!(receiver.join().unwrap(), N, "capacity {cap}: all arrived");
            }
        }
    });
}

#[test]
fn oneshot_across_workers_sender_drop_receiver_drop_and_close() {
    each_backend(|b| {
        let pool = pool(b, 2);
        // A value from worker 0 to a receiver waiting on worker 1.
        let (tx, rx) = oneshot::channel::<String>();
        let r = pool.spawn_on(1, move || rx);
        thread::sleep(Duration::from_millis(10));
        pool.spawn_on(0, move || async move { tx.send("hi".into()).unwrap() });
        assert_eq!(r.join().unwrap(), Ok("hi".to_owned()));

        // The sender dropped without sending wakes the waiting receiver with an error.
        let (tx, rx) = oneshot::channel::<u8>();
        let r = pool.spawn_on(1, move || rx);
        thread::sleep(Duration::from_millis(10));
        assert!(!r.is_finished());
        pool.spawn_on(0, move || async move { drop(tx) });
        assert_eq!(r.join().unwrap(), Err(oneshot::RecvError));

        // The receiver gone: send hands the value back.
        let (tx, rx) = oneshot::channel::<u8>();
        assert!(!tx.is_closed());
        pool.spawn_on(1, move || async move { drop(rx) })
            .join()
            .unwrap();
        assert!(tx.is_closed());
        assert_eq!(tx.send(4), Err(4));

        // close + try_recv: a value sent before the close is still there.
        let (tx, mut rx) = oneshot::channel::<u8>();
        assert_eq!(rx.try_recv(), Err(oneshot::TryRecvError::Empty));
        let (tx2, mut rx2) = oneshot::channel::<u8>();
        tx.send(1).unwrap();
        rx.close();
        assert_eq!(rx.try_recv(), Ok(1));
        rx2.close();
        assert_eq!(tx2.send(2), Err(2));
        assert_eq!(rx2.try_recv(), Err(oneshot::TryRecvError::Closed));
        assert_eq!(xev::block_on(rx2), Err(oneshot::RecvError));
    });
}

// --- examples/http_hello.rs --threads ------------------------------------------------

/// One keep-alive connection: `n` requests, each answered with `OK`.
fn get_n(addr: SocketAddr, n: usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..n {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; http_hello::OK.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, http_hello::OK);
    }
}

#[test]
fn http_hello_serves_on_every_worker_with_reuseport_and_with_distribution() {
    each_backend(|b| {
        for sharing in [
            http_hello::Sharing::ReusePort,
            http_hello::Sharing::Distribute,
        ] {
            let pool = pool(b, 2);
            let addr = http_hello::serve_pool(&pool, "127.0.0.1:0".parse().unwrap(), sharing)
                .unwrap_or_else(|e| panic!("{sharing:?}: {e}"));
            assert_ne!(addr.port(), 0);
            let clients: Vec<_> = (0..8)
                .map(|_| thread::spawn(move || get_n(addr, 20)))
                .collect();
            for c in clients {
                c.join().unwrap();
            }
            // The port is taken: a second server on it fails to bind, with the error.
            if sharing == http_hello::Sharing::Distribute {
                let e = http_hello::serve_pool(&pool, addr, sharing).unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
            }
            pool.shutdown(); // cancels the servers and their connections
            assert!(
                std::net::TcpStream::connect(addr).is_err(),
                "{sharing:?}: closed"
            );
        }
    });
}

/// A pool's workers yield before they block unless the builder says otherwise, a
/// single runtime does not, and with the yield on no wake-up is lost: 2,000 round trips
/// between the two workers and 2,000 between a plain thread and a worker, each one a
/// cross-thread wake-up of a worker (awaiting I/O, so yielding) that may be in its look
/// without blocking, in its yield or asleep.
#[test]
fn workers_yield_before_block_by_default_and_lose_no_wake_up() {
    const ROUND_TRIPS: u32 = 2_000;
    each_backend(|b| {
        let rt = Builder::new().backend(b).build().unwrap();
        assert!(
            !rt.block_on(async { xev::rt::with_loop(|lp| lp.yields_before_block()) })
                || std::env::var_os("XEV_YIELD_BEFORE_BLOCK").is_some_and(|v| v == "1"),
            "{b:?}: a single runtime yields by default"
        );
        for setting in [None, Some(false), Some(true)] {
            let mut builder = Builder::new().backend(b).threads(2);
            if let Some(on) = setting {
                builder = builder.yield_before_block(on);
            }
            // Not dropped on a failure: a pool whose wake-ups are lost would hang its
            // shutdown, and the test must fail, not hang.
            let pool = std::mem::ManuallyDrop::new(builder.build_pool().unwrap());
            for w in 0..2 {
                let h = pool.spawn_on(w, || async {
                    xev::rt::with_loop(|lp| lp.yields_before_block())
                });
                let yields = join_within(h, "the setting's query");
                // On by default, unless the environment turns it off.
                let default = std::env::var_os("XEV_YIELD_BEFORE_BLOCK").is_none_or(|v| v != "0");
                assert_eq!(
                    yields,
                    setting.unwrap_or(default),
                    "{b:?} {setting:?} worker {w}"
                );
            }
            // Each worker also awaits I/O (a receive that only ends at the shutdown), so
            // it yields before it blocks when the setting is on: a worker that waits only
            // for other threads blocks at once.
            let idle_readers: Vec<_> = (0..2)
                .map(|w| {
                    pool.spawn_on(w, || async {
                        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                        let _ = s.recv_from(vec![0u8; 16]).await;
                    })
                })
                .collect();
            // Worker to worker.
            let (ping_tx, mut ping_rx) = mpsc::unbounded_channel::<u32>();
            let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<u32>();
            let echo = pool.spawn_on(1, move || async move {
                while let Some(n) = ping_rx.recv().await {
                    pong_tx.send(n).unwrap();
                }
            });
            let start = std::time::Instant::now();
            let (done_tx, done_rx) = std::sync::mpsc::channel::<u32>();
            let pinger = pool.spawn_on(0, move || async move {
                for n in 0..ROUND_TRIPS {
                    ping_tx.send(n).unwrap();
                    assert_eq!(pong_rx.recv().await, Some(n));
                    done_tx.send(n).unwrap();
                }
            });
            for n in 0..ROUND_TRIPS {
                let got = done_rx.recv_timeout(Duration::from_secs(10));
                assert_eq!(
                    got,
                    Ok(n),
                    "{b:?} {setting:?}: worker round trip {n} stalled"
                );
            }
            join_within(pinger, "the pinger");
            join_within(echo, "the echo task");
            // A plain thread to a worker and back.
            let (to_worker, mut from_main) = mpsc::unbounded_channel::<u32>();
            let (to_main, from_worker) = std::sync::mpsc::channel::<u32>();
            let echo = pool.spawn_on(0, move || async move {
                while let Some(n) = from_main.recv().await {
                    to_main.send(n).unwrap();
                }
            });
            for n in 0..ROUND_TRIPS {
                to_worker.send(n).unwrap();
                let got = from_worker.recv_timeout(Duration::from_secs(10));
                assert_eq!(
                    got,
                    Ok(n),
                    "{b:?} {setting:?}: round trip {n} lost its wake-up"
                );
            }
            drop(to_worker);
            join_within(echo, "the echo task");
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{b:?} {setting:?}: {:?} for {} round trips",
                start.elapsed(),
                2 * ROUND_TRIPS
            );
            std::mem::ManuallyDrop::into_inner(pool).shutdown();
            for h in idle_readers {
                assert!(h.join().is_err(), "the idle receive ends with the shutdown");
            }
        }
    });
}

/// `h`'s output, or a failure (not a hang) if it takes more than 10 s: the wake-up that
/// should have ended it was lost.
fn join_within<T: Send + 'static>(h: xev::rt::PoolJoinHandle<T>, what: &str) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(h.join().map_err(panic_message));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{what} panicked: {e}")),
        Err(_) => panic!("{what} did not finish in 10 s: a wake-up was lost"),
    }
}
