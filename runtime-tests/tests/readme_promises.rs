//! Promises of README.md and ARCHITECTURE.md that no other test checked (or checked only
//! on the happy path), found by an audit of every claim in the README's sections
//! "Watchers", "Async", "Networking, files, pipes and processes", "Using xev with hyper /
//! rustls / futures", "Using more than one core", "Choosing a backend", "Semantics" and
//! "What has been run", and of ARCHITECTURE.md's ownership and fd-lifetime rules. Each
//! test names the line it backs.
//!
//! Promises about process-wide settings (environment variables read once) and about the
//! number of open descriptors run in a child process: this test binary re-run with
//! `--exact child_entry` and the case in [`CHILD`].

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::pin::pin;
use std::process::Command;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use runtime_tests::{dup_high, each_backend, new_loop, only, record, results};
use xev::net::{TcpListener, TcpStream};
use xev::rt::Builder;
use xev::time::{sleep, timeout};
use xev::{
    Async, Backend, CallbackAction, CancelError, Completion, Loop, Op, OpResult, Options, RunMode,
    ThreadPool, ThreadPoolOptions,
};

#[allow(dead_code)] // the example's `main`
#[path = "../../examples/http_hello.rs"]
mod http_hello;

#[global_allocator]
static A: runtime_tests::alloc_count::Counting = runtime_tests::alloc_count::Counting;

/// The environment variable that makes [`child_entry`] run one case.
const CHILD: &str = "XEV_README_PROMISES_CHILD";

/// The text of a panic payload.
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Run case `case` in a child process with `env` set (`None`: removed); panics with the
/// child's output unless it passed.
fn run_child(case: &str, env: &[(&str, Option<&str>)]) {
    run_child_test("child_entry", case, env);
}

/// [`run_child`] of test `test` (which must print `CHILD-CASE-PASSED`); its stdout.
fn run_child_test(test: &str, case: &str, env: &[(&str, Option<&str>)]) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, case);
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-CASE-PASSED"),
        "child case {case} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.into_owned()
}

/// In a child process: run the case [`CHILD`] names (nothing in the parent).
#[test]
fn child_entry() {
    let Some(case) = std::env::var_os(CHILD) else {
        return;
    };
    match case.to_str().unwrap() {
        "yield" => child_yield(),
        "bad_backend" => child_bad_backend(),
        "pinned_backend" => child_pinned_backend(),
        "link_timeouts" => child_link_timeouts(),
        "async_fds" => child_async_fds(),
        "fixed_files" => child_fixed_files(),
        other => panic!("unknown child case {other}"),
    }
    println!("CHILD-CASE-PASSED");
}

// --- Watchers ---------------------------------------------------------------------------

/// README "Watchers": "A `Completion` is 128 bytes (as libxev's io_uring completion)."
/// (The unit test `completion_stays_small` only checks "at most 128".)
#[test]
#[cfg(target_pointer_width = "64")]
fn a_completion_is_128_bytes() {
    assert_eq!(std::mem::size_of::<Completion>(), 128);
}

/// README "Watchers" table: `Tcp` ... `bind` (SO_REUSEADDR): the option is set on the
/// socket, and a second socket can bind the port of a closed server whose accepted
/// connection lingers in TIME_WAIT (the reason for it).
#[test]
fn tcp_watcher_bind_sets_so_reuseaddr() {
    use xev::watcher::tcp::Tcp;
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let l = Tcp::new(any).unwrap();
    let reuseaddr = |fd: std::os::fd::RawFd| {
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `on`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&mut on as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        on != 0
    };
    assert!(
        !reuseaddr(l.as_raw_fd()),
        "a fresh socket has no SO_REUSEADDR"
    );
    l.bind(any).unwrap();
    assert!(reuseaddr(l.as_raw_fd()), "bind sets SO_REUSEADDR");

    // What it is for: the server side closes first, so its end is in TIME_WAIT.
    l.listen(8).unwrap();
    let addr = l.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let (server_side, _) = {
        // SAFETY: accept4 on a listening socket; a new fd we own, or -1.
        let fd = unsafe {
            libc::accept4(
                l.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        assert!(fd >= 0, "accept: {}", std::io::Error::last_os_error());
        // SAFETY: a new fd we own.
        (unsafe { OwnedFd::from_raw_fd(fd) }, ())
    };
    drop(server_side);
    drop(l);
    drop(client);
    std::thread::sleep(Duration::from_millis(20));
    let again = Tcp::new(addr).unwrap();
    again
        .bind(addr)
        .expect("the port of a closed server binds again at once");
    again.listen(8).unwrap();
}

/// README "Watchers" table, `Async`: "no fd of its own". In a child process (so other
/// tests' descriptors do not count): creating, waiting on and notifying 64 `Async`s
/// opens no descriptor.
#[test]
fn an_async_has_no_fd_of_its_own() {
    run_child("async_fds", &[]);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn child_async_fds() {
    let before = open_fds();
    let handles: Vec<Async> = (0..64).map(|_| Async::new().unwrap()).collect();
    assert_eq!(open_fds(), before, "Async::new opened descriptors");
    drop(handles);
    for b in Backend::available() {
        let mut lp = new_loop(b);
        // Warm up: the loop's own wake-up path may be set up at its first use.
        let warm = Async::new().unwrap();
        let mut c = pin!(Completion::new());
        warm.wait(&mut lp, c.as_mut(), (), |_, _, _, r| {
            r.unwrap();
            CallbackAction::Disarm
        });
        let n = warm.clone();
        std::thread::spawn(move || n.notify().unwrap())
            .join()
            .unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        let base = open_fds();

        let asyncs: Vec<Async> = (0..64).map(|_| Async::new().unwrap()).collect();
        let woken = Rc::new(std::cell::Cell::new(0));
        let mut cs: Vec<_> = (0..64).map(|_| Box::pin(Completion::new())).collect();
        for (a, c) in asyncs.iter().zip(cs.iter_mut()) {
            let w = woken.clone();
            a.wait(&mut lp, c.as_mut(), (), move |_, _, _, r| {
                r.unwrap();
                w.set(w.get() + 1);
                CallbackAction::Disarm
            });
        }
        assert_eq!(open_fds(), base, "{b:?}: waits opened descriptors");
        let remote: Vec<Async> = asyncs.to_vec();
        std::thread::spawn(move || {
            for a in remote {
                a.notify().unwrap();
            }
        })
        .join()
        .unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(woken.get(), 64, "{b:?}");
        assert_eq!(open_fds(), base, "{b:?}: notifies opened descriptors");
    }
}

// --- Async: the situation table -----------------------------------------------------------

/// Records the thread its value is dropped on.
struct DropThread(Arc<Mutex<Option<ThreadId>>>);

impl Drop for DropThread {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(std::thread::current().id());
    }
}

/// README "Async" table: "Runtime dropped with tasks pending | their futures are dropped
/// on the runtime's thread, then the loop is drained": the futures (and what they own)
/// are dropped at the runtime's drop, on the dropping thread, a socket read in flight is
/// cancelled and the socket closed (the peer sees end of file), and the handle reports
/// `Cancelled`. (`rt_tasks.rs` only checks the handle.)
#[test]
fn a_runtime_dropped_with_tasks_pending_drops_them_on_its_thread_and_closes_their_fds() {
    each_backend(|b| {
        let rt = Builder::new().backend(b).build().unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let dropped_reader = Arc::new(Mutex::new(None));
        let dropped_sleeper = Arc::new(Mutex::new(None));
        let (mut peer, reader, sleeper) = rt.block_on({
            let (dr, ds) = (dropped_reader.clone(), dropped_sleeper.clone());
            async move {
                let s = TcpStream::connect(addr).await.unwrap();
                let (peer, _) = std_listener.accept().unwrap();
                let guard = DropThread(dr);
                let reader = xev::spawn(async move {
                    let _guard = guard;
                    let (r, _) = s.read(vec![0u8; 16]).await;
                    r.map(drop)
                });
                let guard = DropThread(ds);
                let sleeper = xev::spawn(async move {
                    let _guard = guard;
                    sleep(Duration::from_secs(3600)).await;
                });
                // Both tasks run once: the read is in flight (or waiting for readiness).
                sleep(Duration::from_millis(10)).await;
                (peer, reader, sleeper)
            }
        });
        assert!(
            dropped_reader.lock().unwrap().is_none(),
            "{b:?}: still pending"
        );
        assert!(!reader.is_finished() && !sleeper.is_finished(), "{b:?}");
        drop(rt);
        let here = Some(std::thread::current().id());
        assert_eq!(
            *dropped_reader.lock().unwrap(),
            here,
            "{b:?}: reader dropped"
        );
        assert_eq!(
            *dropped_sleeper.lock().unwrap(),
            here,
            "{b:?}: sleeper dropped"
        );
        // The task's socket is closed: its peer reads end of file.
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(
            peer.read(&mut buf).unwrap(),
            0,
            "{b:?}: the socket was closed"
        );
        let rt2 = xev::rt::Runtime::new().unwrap();
        assert!(rt2.block_on(reader).unwrap_err().is_cancelled(), "{b:?}");
        assert!(rt2.block_on(sleeper).unwrap_err().is_cancelled(), "{b:?}");
    });
}

// --- Semantics table ------------------------------------------------------------------------

/// README "Semantics": "`shutdown()` of an async runtime's loop | the operation futures in
/// flight finish with `Canceled`, tasks waiting for readiness are woken and look again;
/// the runtime goes on". On io_uring a read in flight ends with the "operation canceled"
/// error and loses no byte (a later read gets them); on the poll backend the read waits
/// for readiness, looks again and gets the bytes. Then timers, tasks and I/O still work.
/// (`reentry_and_fd_reuse.rs` only checks that the read ends somehow.)
#[test]
fn a_runtime_loop_shutdown_cancels_operations_and_rewakes_readiness_waiters() {
    each_backend(|b| {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async move {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let s = Rc::new(TcpStream::connect(l.local_addr().unwrap()).await.unwrap());
            let (mut peer, _) = l.accept().unwrap();
            let s1 = s.clone();
            let reader = xev::spawn(async move {
                let (r, buf) = s1.read(vec![0u8; 16]).await;
                r.map(|n| buf[..n].to_vec())
            });
            sleep(Duration::from_millis(10)).await;
            xev::rt::with_loop(|lp| lp.shutdown());
            match b {
                Backend::IoUring => {
                    let r = timeout(Duration::from_secs(2), reader)
                        .await
                        .expect("io_uring: the read in flight did not finish")
                        .unwrap();
                    let e = r.expect_err("io_uring: the read in flight was not cancelled");
                    assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
                    assert!(e.to_string().contains("canceled"), "{e}");
                    peer.write_all(b"hello").unwrap();
                    let (r, buf) = timeout(Duration::from_secs(2), s.read(vec![0u8; 16]))
                        .await
                        .expect("a read after the shutdown");
                    assert_eq!(&buf[..r.unwrap()], b"hello", "no byte lost");
                }
                _ => {
                    // The waiting read looked again and went on waiting: data written
                    // after the shutdown reaches it.
                    sleep(Duration::from_millis(5)).await;
                    assert!(!reader.is_finished(), "{b:?}: woke with nothing to read");
                    peer.write_all(b"hello").unwrap();
                    let r = timeout(Duration::from_secs(2), reader)
                        .await
                        .expect("poll backend: the waiting read never got the bytes")
                        .unwrap();
                    assert_eq!(r.unwrap(), b"hello");
                }
            }
            // The runtime goes on: a timer, a task and an accept.
            let t0 = Instant::now();
            sleep(Duration::from_millis(5)).await;
            assert!(t0.elapsed() >= Duration::from_millis(5));
            assert_eq!(xev::spawn(async { 7 }).await.unwrap(), 7);
            let xl = TcpListener::bind("127.0.0.1:0").unwrap();
            let a = xl.local_addr().unwrap();
            let _c = std::net::TcpStream::connect(a).unwrap();
            timeout(Duration::from_secs(2), xl.accept())
                .await
                .expect("accept after the shutdown")
                .unwrap();
        });
    });
}

/// A FIFO in a fresh directory: an `open` of it for reading blocks until a writer opens
/// it, which keeps a pool job running for as long as the test wants.
struct Fifo(PathBuf);

impl Fifo {
    fn new(tag: &str) -> Fifo {
        let dir =
            std::env::temp_dir().join(format!("xev-readme-fifo-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let p = dir.join("fifo");
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        Fifo(p)
    }

    fn open_writer(&self) -> std::fs::File {
        open_fifo_writer(&self.0)
    }
}

/// Open the write end of FIFO `path` without blocking; retries while no reader has it
/// open yet.
fn open_fifo_writer(path: &std::path::Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                assert!(start.elapsed() < Duration::from_secs(5), "no reader came");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open the FIFO for writing: {e}"),
        }
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

/// The tests that block a pool worker in `open(2)` of a FIFO run one at a time, so that
/// one's worker is never taken for another's.
static POOL_OPENS: Mutex<()> = Mutex::new(());

/// The threads of this process now.
fn threads_now() -> std::collections::HashSet<std::ffi::OsString> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .map(|t| t.file_name())
        .collect()
}

/// Wait until a pool worker started after `before` (this test's own pool) is blocked in
/// `openat(2)` (opening the FIFO), so the job is known to be running, not queued.
/// Threads of other tests running meanwhile are not taken for it: they were there
/// before, or are not pool workers, or (other FIFO tests) wait for `POOL_OPENS`.
fn wait_for_a_thread_in_openat(before: &std::collections::HashSet<std::ffi::OsString>) {
    let want = format!("{} ", libc::SYS_openat);
    let start = Instant::now();
    loop {
        for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            if before.contains(&t.file_name()) {
                continue;
            }
            let pool = std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.trim_end() == "xev-pool");
            if let Ok(sc) = std::fs::read_to_string(t.path().join("syscall")) {
                if pool && sc.starts_with(&want) {
                    return;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pool worker of this test blocked in openat"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An epoll loop with a pool of one thread.
fn epoll_loop_with_one_pool_thread() -> (Loop, ThreadPool) {
    let pool = ThreadPool::new(ThreadPoolOptions {
        max_threads: 1,
        ..Default::default()
    });
    let lp = Loop::new(Options {
        backend: Some(Backend::Epoll),
        thread_pool: Some(pool.clone()),
        ..Default::default()
    })
    .unwrap();
    (lp, pool)
}

/// README "Semantics": "Cancel of a file operation on the poll backend's thread pool |
/// ... already running: `CancelError::Io(EALREADY)` and the operation completes
/// normally". An open of a FIFO blocks on the pool's worker until a writer comes; the
/// cancel gets `EALREADY`, the open then succeeds and its fd reads what the writer
/// wrote. (`cancel.rs` accepts any cancel error; `files.rs` covers the queued case.)
#[test]
fn cancel_of_a_running_pool_job_is_ealready_and_the_job_completes() {
    let _serial = POOL_OPENS.lock().unwrap_or_else(|e| e.into_inner());
    let before = threads_now();
    let fifo = Fifo::new("ealready");
    let (mut lp, _pool) = epoll_loop_with_one_pool_thread();
    let (open_r, cancel_r) = (results(), results());
    let mut open = pin!(Completion::new());
    let mut cancel = pin!(Completion::new());
    lp.start(
        open.as_mut(),
        Op::OpenAt {
            dir: None,
            path: fifo.0.as_path().into(),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        record(&open_r),
    );
    lp.run(RunMode::NoWait).unwrap();
    // The worker takes the job and blocks in open(2).
    wait_for_a_thread_in_openat(&before);
    lp.cancel(cancel.as_mut(), &open, record(&cancel_r));
    lp.run(RunMode::NoWait).unwrap();
    assert!(open_r.borrow().is_empty(), "the open cannot finish yet");
    let mut w = fifo.open_writer();
    w.write_all(b"fifo").unwrap();
    lp.run(RunMode::UntilDone).unwrap();
    match only(&cancel_r) {
        OpResult::Cancel(Err(CancelError::Io(e))) => {
            assert_eq!(e.raw_os_error(), Some(libc::EALREADY), "{e}")
        }
        other => panic!("cancel of a running pool job: {other:?}"),
    }
    let fd = match only(&open_r) {
        OpResult::OpenAt(Ok(fd)) => fd,
        other => panic!("the running open did not complete normally: {other:?}"),
    };
    let mut f = std::fs::File::from(fd);
    let mut got = [0u8; 4];
    f.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"fifo");
}

/// README "Semantics": "Loop dropped ... with operations in flight | ... (pool jobs not
/// yet started are withdrawn, running ones waited for) ..." and ARCHITECTURE 3.1: a
/// loop dropped while its open runs on the pool waits for the job, and the fd the open
/// produced, which nobody receives, is closed (the FIFO's writer then gets `EPIPE`).
#[test]
fn a_loop_dropped_with_a_running_pool_job_waits_for_it_and_closes_its_fd() {
    let _serial = POOL_OPENS.lock().unwrap_or_else(|e| e.into_inner());
    let before = threads_now();
    let fifo = Fifo::new("dropwait");
    let (mut lp, _pool) = epoll_loop_with_one_pool_thread();
    let called = Rc::new(std::cell::Cell::new(false));
    let mut open = Box::pin(Completion::new());
    let c2 = called.clone();
    lp.start(
        open.as_mut(),
        Op::OpenAt {
            dir: None,
            path: fifo.0.as_path().into(),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        move |_, _, _| {
            c2.set(true);
            CallbackAction::Disarm
        },
    );
    lp.run(RunMode::NoWait).unwrap();
    wait_for_a_thread_in_openat(&before);
    let path = fifo.0.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        open_fifo_writer(&path)
    });
    let t0 = Instant::now();
    drop(lp);
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250),
        "the drop returned after {waited:?}, before the running job ended"
    );
    assert!(!called.get(), "no callback at a drop");
    assert_eq!(open.state(), xev::CompletionState::Dead);
    let mut w = writer.join().unwrap();
    // The reader end the job opened was closed by the drop.
    let e = w.write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
}

/// ARCHITECTURE 3.3: "Pool jobs run on their own duplicate of the fd (`F_DUPFD_CLOEXEC`),
/// so a file closed while its job waits in the pool queue cannot be replaced under the
/// job; the caller's number travels in the job and is put back before the result is
/// handed over." A pwrite queued behind a busy worker, whose number is closed and then
/// given to another file, writes to the first file; the second is untouched, and the
/// completion's op names the caller's number again.
#[test]
fn a_pool_job_works_on_its_own_duplicate_of_the_fd() {
    let (mut lp, pool) = epoll_loop_with_one_pool_thread();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(Duration::from_secs(10));
    });
    started_rx.recv().unwrap();

    let dir = std::env::temp_dir().join(format!("xev-readme-dup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let (pa, pb) = (dir.join("a"), dir.join("b"));
    let a = std::fs::File::create(&pa).unwrap();
    let b = std::fs::File::create(&pb).unwrap();
    let a = dup_high(a.as_raw_fd(), 7300);
    let number = a.as_raw_fd();
    let r = results();
    let mut c = pin!(Completion::new());
    lp.start(
        c.as_mut(),
        Op::Pwrite {
            fd: number,
            buf: xev::Buffer::copy_from(b"meant for a"),
            offset: 0,
        },
        record(&r),
    );
    lp.run(RunMode::NoWait).unwrap();
    // The job waits in the queue. Its number now names file b.
    drop(a);
    // SAFETY: dup2 onto a number this test owns (above 7300, see `dup_high`).
    assert_eq!(unsafe { libc::dup2(b.as_raw_fd(), number) }, number);
    // SAFETY: the number dup2 just made; closed when dropped.
    let b_at_number = unsafe { OwnedFd::from_raw_fd(number) };
    release_tx.send(()).unwrap();
    lp.run(RunMode::UntilDone).unwrap();
    assert!(
        matches!(only(&r), OpResult::Pwrite(Ok(11))),
        "the queued pwrite"
    );
    assert_eq!(std::fs::read(&pa).unwrap(), b"meant for a");
    assert_eq!(
        std::fs::read(&pb).unwrap(),
        b"",
        "the file reusing the number"
    );
    match c.op() {
        Some(Op::Pwrite { fd, .. }) => assert_eq!(*fd, number, "the caller's number"),
        other => panic!("{other:?}"),
    }
    drop(b_at_number);
    let _ = std::fs::remove_dir_all(&dir);
}

// --- Using xev with hyper / rustls / futures ----------------------------------------------

/// README "Using xev with hyper / rustls / futures": "`tokio::time::sleep`, `tokio::net`
/// types, `tokio::spawn` and `tokio::task::spawn_local` panic inside xev" (they need
/// tokio's reactor and timer). Each panics with tokio's message; the xev runtime goes on.
#[test]
fn tokio_runtime_pieces_panic_inside_xev() {
    fn tokio_message(what: &str, p: std::thread::Result<()>) {
        let msg = panic_message(p.expect_err(what));
        assert!(
            msg.contains("Tokio") || msg.contains("LocalSet") || msg.contains("reactor"),
            "{what}: {msg}"
        );
    }
    each_backend(|b| {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            tokio_message(
                "tokio::time::sleep",
                catch_unwind(|| drop(tokio::time::sleep(Duration::from_millis(1)))),
            );
            tokio_message(
                "tokio::spawn",
                catch_unwind(|| drop(tokio::spawn(async {}))),
            );
            tokio_message(
                "tokio::task::spawn_local",
                catch_unwind(|| drop(tokio::task::spawn_local(async {}))),
            );
            let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std_l.set_nonblocking(true).unwrap();
            tokio_message(
                "tokio::net::TcpListener::from_std",
                catch_unwind(AssertUnwindSafe(|| {
                    drop(tokio::net::TcpListener::from_std(std_l))
                })),
            );
            // An async tokio::net constructor panics when polled: in an xev task, the
            // handle reports the panic.
            let h = xev::spawn(async {
                let _ = tokio::net::TcpListener::bind("127.0.0.1:0").await;
            });
            let e = h
                .await
                .expect_err("tokio::net::TcpListener::bind in an xev task");
            assert!(e.is_panic(), "{b:?}");
            // The runtime goes on.
            sleep(Duration::from_millis(1)).await;
        });
    });
}

// --- Using more than one core --------------------------------------------------------------

/// README "Using more than one core": yielding before blocking is "on by default for a
/// pool; `Options::yield_before_block` for a loop of your own, off by default" and
/// "`XEV_YIELD_BEFORE_BLOCK=0` for every pool turns it off" (a builder setting still
/// wins). `rt_pool.rs` reads the variable but CI never sets it.
#[test]
fn xev_yield_before_block_0_turns_it_off_for_every_pool() {
    run_child(
        "yield",
        &[
            ("XEV_YIELD_BEFORE_BLOCK", Some("0")),
            ("EXPECT", Some("off")),
        ],
    );
    run_child(
        "yield",
        &[("XEV_YIELD_BEFORE_BLOCK", None), ("EXPECT", Some("on"))],
    );
}

fn child_yield() {
    let default_on = std::env::var("EXPECT").unwrap() == "on";
    for b in Backend::available() {
        for (setting, want) in [(None, default_on), (Some(true), true), (Some(false), false)] {
            let mut builder = Builder::new().backend(b).threads(2);
            if let Some(on) = setting {
                builder = builder.yield_before_block(on);
            }
            let pool = builder.build_pool().unwrap();
            for w in 0..pool.threads() {
                let yields = pool
                    .spawn_on(w, || async {
                        xev::rt::with_loop(|lp| lp.yields_before_block())
                    })
                    .join()
                    .unwrap();
                assert_eq!(yields, want, "{b:?} setting {setting:?} worker {w}");
            }
            pool.shutdown();
        }
        // A loop of your own: off by default (the variable `=0` cannot turn it on).
        assert!(!new_loop(b).yields_before_block(), "{b:?}: Options default");
        let lp = Loop::new(Options {
            backend: Some(b),
            yield_before_block: true,
            ..Default::default()
        })
        .unwrap();
        assert!(
            lp.yields_before_block(),
            "{b:?}: Options::yield_before_block"
        );
    }
}

// --- Choosing a backend ---------------------------------------------------------------------

/// README "Choosing a backend": "An unknown or unavailable name is an error from
/// `Loop::new` / `Runtime::new` (`block_on` panics with it), never a silent fallback; a
/// backend pinned in code (`Options::backend`, `rt::Builder::backend`) wins over the
/// variable." `backend_env.rs` checks the errors of `Loop::new` / `Runtime::new` and a
/// pinned `Builder`; this checks `block_on`'s panic, `Options::backend` and a pinned
/// io_uring under `XEV_BACKEND=epoll`.
#[test]
fn block_on_panics_with_a_bad_xev_backend_and_pinned_backends_win() {
    run_child("bad_backend", &[("XEV_BACKEND", Some("uring"))]);
    run_child("bad_backend", &[("XEV_BACKEND", Some("kqueue"))]);
    run_child("pinned_backend", &[("XEV_BACKEND", Some("epoll"))]);
}

fn child_bad_backend() {
    let value = std::env::var("XEV_BACKEND").unwrap();
    let p = catch_unwind(|| xev::block_on(async { 1 })).expect_err("block_on did not panic");
    let msg = panic_message(p);
    assert!(
        msg.contains("XEV_BACKEND") && msg.contains(&value),
        "block_on's panic does not name the variable and its value: {msg}"
    );
    // Pinned in code, every available backend still works.
    for b in Backend::available() {
        let lp = Loop::new(Options {
            backend: Some(b),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("Options::backend({b:?}) with XEV_BACKEND={value}: {e}"));
        assert_eq!(lp.backend(), b);
        let rt = Builder::new().backend(b).build().unwrap();
        assert_eq!(
            rt.block_on(async { xev::rt::with_loop(|lp| lp.backend()) }),
            b
        );
    }
}

fn child_pinned_backend() {
    assert_eq!(
        Loop::new(Options::default()).unwrap().backend(),
        Backend::Epoll
    );
    for b in Backend::available() {
        let lp = Loop::new(Options {
            backend: Some(b),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            lp.backend(),
            b,
            "Options::backend wins over XEV_BACKEND=epoll"
        );
        let rt = Builder::new().backend(b).build().unwrap();
        assert_eq!(
            rt.block_on(async { xev::rt::with_loop(|lp| lp.backend()) }),
            b,
            "Builder::backend wins over XEV_BACKEND=epoll"
        );
    }
}

/// README "Choosing a backend": "`TcpStream::read_timeout`, `TcpListener::accept_timeout`:
/// an operation that fails with `TimedOut` past a limit ... The async methods use a
/// runtime timer unless `XEV_LINK_TIMEOUTS=1`". The linked form (never run by CI) keeps
/// the same semantics: `TimedOut` no earlier than the limit with the buffer handed back,
/// data before the limit is read, a timed-out accept leaves the next client to the next
/// accept.
#[test]
fn xev_link_timeouts_1_keeps_the_timeout_semantics() {
    run_child("link_timeouts", &[("XEV_LINK_TIMEOUTS", Some("1"))]);
}

fn child_link_timeouts() {
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let t0 = Instant::now();
            let e = l
                .accept_timeout(Duration::from_millis(20))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{b:?}");
            assert!(t0.elapsed() >= Duration::from_millis(19), "{b:?}: early");
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept_timeout(Duration::from_secs(5)).await.unwrap();

            let t0 = Instant::now();
            let (r, buf) = c
                .read_timeout(vec![0u8; 32], Duration::from_millis(25))
                .await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut, "{b:?}");
            assert!(t0.elapsed() >= Duration::from_millis(24), "{b:?}: early");
            assert_eq!(buf.capacity(), 32, "the buffer comes back");

            s.write_all(b"abc".to_vec()).await.0.unwrap();
            let (r, buf) = c.read_timeout(buf, Duration::from_secs(5)).await;
            assert_eq!(&buf[..r.unwrap()], b"abc", "{b:?}");
            // A late write after a timed-out read goes to the next read, whole.
            let (r, buf) = c.read_timeout(buf, Duration::from_millis(10)).await;
            assert_eq!(r.unwrap_err().kind(), std::io::ErrorKind::TimedOut);
            s.write_all(b"xyz".to_vec()).await.0.unwrap();
            let (r, buf) = c.read(buf).await;
            assert_eq!(&buf[..r.unwrap()], b"xyz", "{b:?}");
        });
    }
}

/// README "Choosing a backend": "`Options::fixed_files` / `rt::Builder::fixed_files` (or
/// `XEV_URING_FIXED_FILES=1`): the runtime's sockets get a slot in a registered-file
/// table". `uring_extras.rs` reads the variable but CI never sets it: with it set, a
/// runtime built without the option gives its sockets a slot on io_uring (none on the
/// poll backend) from their first use on the loop, an echo works through it, and the
/// slot goes with the socket.
#[test]
fn xev_uring_fixed_files_1_gives_runtime_sockets_a_slot() {
    run_child("fixed_files", &[("XEV_URING_FIXED_FILES", Some("1"))]);
}

fn child_fixed_files() {
    for b in Backend::available() {
        let rt = Builder::new().backend(b).build().unwrap();
        rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
            let (s, _) = l.accept().await.unwrap();
            let slot = |fd: i32| xev::rt::with_loop(|lp| lp.registered_slot(fd));
            let uring = b == Backend::IoUring;
            assert_eq!(slot(c.as_raw_fd()).is_some(), uring, "{b:?}: connected");
            let (r, _) = c.write_all(b"through the slot".to_vec()).await;
            r.unwrap();
            let (r, buf) = s.read_exact(vec![0u8; 16]).await;
            r.unwrap();
            assert_eq!(&buf[..], b"through the slot", "{b:?}");
            // A slot from the fd's first use on the loop (an accepted socket: its read).
            assert_eq!(slot(s.as_raw_fd()).is_some(), uring, "{b:?}: accepted");
            let fd = c.as_raw_fd();
            c.close().await.unwrap();
            assert_eq!(slot(fd), None, "{b:?}: the slot went with the socket");
            let (r, _) = s.read(vec![0u8; 4]).await;
            assert_eq!(r.unwrap(), 0, "{b:?}: the peer sees end of file");
        });
    }
}

// --- Networking: HTTP ---------------------------------------------------------------------

/// README "Networking, files, pipes and processes": `examples/http_hello.rs` answers
/// keep-alive requests with "no allocation per request". The server runs on this
/// thread's runtime (whose allocations are counted), a plain client on another thread
/// sends requests one at a time over one connection: after a warm-up, 4x the requests
/// make no more allocations on the server's thread than 1x.
#[test]
fn http_hello_makes_no_allocation_per_request() {
    use runtime_tests::alloc_count::allocs;
    use std::sync::mpsc;
    const N: usize = 50;
    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    each_backend(|b| {
        let rt = Builder::new().backend(b).build().unwrap();
        let (go_tx, go_rx) = mpsc::channel::<usize>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut resp = vec![0u8; http_hello::OK.len()];
            while let Ok(n) = go_rx.recv() {
                for _ in 0..n {
                    s.write_all(REQ).unwrap();
                    s.read_exact(&mut resp).unwrap();
                    assert_eq!(&resp[..], http_hello::OK);
                }
                done_tx.send(()).unwrap();
            }
        });
        let counts = rt.block_on(async move {
            xev::spawn(async move {
                let r = http_hello::serve(l).await;
                panic!("serve returned {r:?}");
            });
            let mut counts = Vec::new();
            for n in [N, N, 4 * N] {
                let before = allocs();
                go_tx.send(n).unwrap();
                let start = Instant::now();
                while done_rx.try_recv().is_err() {
                    assert!(start.elapsed() < Duration::from_secs(20), "client stuck");
                    sleep(Duration::from_millis(1)).await;
                }
                counts.push(allocs() - before);
            }
            counts
        });
        drop(rt);
        client.join().unwrap();
        let (few, many) = (counts[1], counts[2]);
        assert!(
            many <= few,
            "{b:?}: {N} requests made {few} allocations on the server's thread, {} made \
             {many} (warm-up: {})",
            4 * N,
            counts[0]
        );
    });
}

/// Poll `fut` once; it must not be ready yet.
async fn poll_once_pending<F: std::future::Future + Unpin>(fut: &mut F) {
    std::future::poll_fn(|cx| {
        assert!(
            std::pin::Pin::new(&mut *fut).poll(cx).is_pending(),
            "ready too early"
        );
        std::task::Poll::Ready(())
    })
    .await
}

/// The next connection of `incoming` within 3 s, skipping at most one error item (the
/// cancelled accept of an ended runtime).
async fn next_connection(incoming: &mut xev::net::Incoming<'_>) -> TcpStream {
    use futures_util::StreamExt;
    timeout(Duration::from_secs(3), async {
        let mut errors = 0;
        loop {
            match incoming.next().await {
                Some(Ok(s)) => return s,
                Some(Err(e)) => {
                    errors += 1;
                    assert!(errors <= 1, "a second error item: {e}");
                }
                None => panic!("an Incoming never ends"),
            }
        }
    })
    .await
    .expect("the Incoming did not yield the connection")
}

/// README "Async" table: "An `Incoming` polled in one `block_on`, then in a later one |
/// its accept of the ended runtime is dropped (a connection it got is kept for the next
/// accept) and accepting starts over on the new one." A client that connects while the
/// first runtime still runs (its accept may take the connection then) is yielded by the
/// second runtime, as the same connection (its peer address and its bytes), and a
/// later client after it. (`rt_user_code_and_runtime_moves.rs` only connects a client
/// after the first runtime is gone.)
#[test]
fn an_incoming_keeps_a_connection_its_ended_runtime_accepted() {
    each_backend(|b| {
        let listener = Builder::new()
            .backend(b)
            .build()
            .unwrap()
            .block_on(async { TcpListener::bind("127.0.0.1:0") })
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = listener.incoming();
        let first = Builder::new().backend(b).build().unwrap();
        let mut client1 = first.block_on(async {
            use futures_util::StreamExt;
            poll_once_pending(&mut incoming.next()).await;
            let c = std::net::TcpStream::connect(addr).unwrap();
            // The first runtime keeps running a while: its accept completes meanwhile.
            sleep(Duration::from_millis(30)).await;
            c
        });
        drop(first);
        client1.write_all(b"one").unwrap();
        let second = Builder::new().backend(b).build().unwrap();
        second.block_on(async {
            let s = next_connection(&mut incoming).await;
            assert_eq!(
                s.peer_addr().unwrap(),
                client1.local_addr().unwrap(),
                "{b:?}: not the connection of the first runtime's time"
            );
            let (r, buf) = s.read_exact(vec![0u8; 3]).await;
            r.unwrap();
            assert_eq!(&buf[..], b"one", "{b:?}");
            let client2 = std::net::TcpStream::connect(addr).unwrap();
            let s2 = next_connection(&mut incoming).await;
            assert_eq!(s2.peer_addr().unwrap(), client2.local_addr().unwrap());
        });
    });
}

// --- Async: the test attribute ------------------------------------------------------------

/// The body [`xev_test_backend_all_runs_once_per_available_backend`] runs in a child: it
/// reports the backend of each run.
#[xev::test(backend = "all")]
async fn backend_all_probe() {
    if std::env::var_os(CHILD).is_some_and(|c| c == "probe") {
        let b = xev::rt::with_loop(|lp| lp.backend());
        println!("PROBE-RAN {}", b.name());
        if b == *Backend::available().collect::<Vec<_>>().last().unwrap() {
            println!("CHILD-CASE-PASSED");
        }
    }
}

/// README "Async": "`#[xev::test(backend = \"all\")]` runs the test once per available
/// backend": the probe's runs are exactly `Backend::available()`, in order, each on a
/// runtime of that backend (whatever `XEV_BACKEND` says).
#[test]
fn xev_test_backend_all_runs_once_per_available_backend() {
    let want: Vec<String> = Backend::available()
        .map(|b| format!("PROBE-RAN {}", b.name()))
        .collect();
    for env in [None, Some("epoll")] {
        let out = run_child_test("backend_all_probe", "probe", &[("XEV_BACKEND", env)]);
        let got: Vec<&str> = out
            .lines()
            .filter_map(|l| l.find("PROBE-RAN ").map(|i| &l[i..]))
            .collect();
        assert_eq!(got, want, "XEV_BACKEND={env:?}:\n{out}");
    }
}

/// The write end of FIFO `path` if a reader has it open (or is opening it) within
/// `limit`; `None` if no reader came.
fn try_open_fifo_writer(path: &std::path::Path, limit: Duration) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let start = Instant::now();
    loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if start.elapsed() > limit {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("open the FIFO for writing: {e}"),
        }
    }
}

/// README "Async" table: "Future dropped while its operation is in flight | the
/// operation is cancelled; drop never blocks ..." and "Open finishes for a future that
/// was dropped | the new fd is closed, never leaked". An `fs::File::open` of a FIFO
/// blocks (in the pool's worker on epoll, in the kernel's worker on io_uring) until a
/// writer comes: dropping its future returns at once; then either the open was
/// interrupted (no reader remains) or it finished for nobody and its fd was closed (the
/// writer's write fails with `EPIPE`).
#[test]
fn dropping_a_blocked_open_never_blocks_and_its_late_fd_is_closed() {
    let _serial = POOL_OPENS.lock().unwrap_or_else(|e| e.into_inner());
    each_backend(|b| {
        let fifo = Fifo::new(&format!("dropopen-{}", b.name()));
        let rt = Builder::new().backend(b).build().unwrap();
        let path = fifo.0.clone();
        let outcome = rt.block_on(async move {
            let mut open = Box::pin(xev::fs::File::open(path.clone()));
            poll_once_pending(&mut open).await;
            // Let the open reach its blocking point.
            sleep(Duration::from_millis(50)).await;
            // Were the drop to wait for the open, this writer would end the wait after
            // 1 s (and the assertion below fail) rather than let the test hang.
            let valve = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                use std::os::unix::fs::OpenOptionsExt;
                // Errors (no reader, the FIFO already gone) are the normal case.
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&valve);
            });
            let t0 = Instant::now();
            drop(open);
            let took = t0.elapsed();
            assert!(
                took < Duration::from_millis(500),
                "{b:?}: dropping the open future blocked for {took:?}"
            );
            let Some(mut w) = try_open_fifo_writer(&path, Duration::from_millis(200)) else {
                return "interrupted";
            };
            // The open finished for nobody: the runtime closes its fd.
            let start = Instant::now();
            loop {
                sleep(Duration::from_millis(5)).await;
                match w.write(b"x") {
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        return "finished, closed"
                    }
                    Ok(_) | Err(_) => assert!(
                        start.elapsed() < Duration::from_secs(5),
                        "{b:?}: the fd of the dropped open was never closed"
                    ),
                }
            }
        });
        eprintln!("{b:?}: the dropped open was {outcome}");
    });
}

/// README "Watchers": "Userdata plus callback are stored in the completion when they fit
/// in two words (one for `Tcp`, `Udp`, `File` and `Stream`, whose callback also holds the
/// descriptor; an `Rc` and a closure that captures nothing else fit either way). Up to 64
/// bytes they go in a block from a per-thread cache that the next operation reuses ...;
/// larger ones are boxed once." On a fresh thread (an empty block cache), after a
/// warm-up of the loop: a timer with two words of userdata and a `Tcp` read with an `Rc`
/// allocate nothing at their start; a `Tcp` read with two words takes a block, and once
/// warmed up (two starts) such reads allocate nothing; 128 bytes of userdata are boxed, once per start, and a
/// rearm reuses the box.
#[test]
fn callbacks_are_stored_inline_in_a_cached_block_or_boxed_as_promised() {
    use runtime_tests::alloc_count::allocs_in;
    use std::cell::Cell;
    use xev::watcher::{tcp::Tcp, Timer};
    fn timer_cb<U>(
        _: &mut U,
        _: &mut Loop,
        _: std::pin::Pin<&mut Completion>,
        r: Result<(), xev::Error>,
    ) -> CallbackAction {
        r.unwrap();
        CallbackAction::Disarm
    }
    fn read_cb<U>(
        _: &mut U,
        _: &mut Loop,
        _: std::pin::Pin<&mut Completion>,
        r: Result<usize, xev::ReadError>,
    ) -> CallbackAction {
        r.unwrap();
        CallbackAction::Disarm
    }
    for b in Backend::available() {
        std::thread::spawn(move || {
            let mut lp = new_loop(b);
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (s, _) = l.accept().unwrap();
            s.set_nonblocking(true).unwrap();
            let conn = Tcp::from(OwnedFd::from(s));
            let mut c = Box::pin(Completion::new());
            // Warm-up: the loop's queues and the socket's registration, with userdata of
            // no size (stored inline, so no block enters the cache).
            Timer::new().run(&mut lp, c.as_mut(), 0, (), timer_cb);
            lp.run(RunMode::UntilDone).unwrap();
            peer.write_all(b"w").unwrap();
            let buf = xev::Buffer::from(vec![0u8; 8]);
            conn.read(&mut lp, c.as_mut(), buf, (), read_cb);
            lp.run(RunMode::UntilDone).unwrap();

            let two_words = (Rc::new(Cell::new(0u32)), 7usize);
            let n = allocs_in(|| Timer::new().run(&mut lp, c.as_mut(), 0, two_words, timer_cb));
            assert_eq!(n, 0, "{b:?}: timer with two words of userdata");
            lp.run(RunMode::UntilDone).unwrap();

            let mut read_with = |ud_words: usize| -> u64 {
                peer.write_all(b"r").unwrap();
                let buf = xev::Buffer::from(vec![0u8; 8]);
                let rc = Rc::new(Cell::new(0u32));
                let n = if ud_words == 1 {
                    allocs_in(|| conn.read(&mut lp, c.as_mut(), buf, rc, read_cb))
                } else {
                    allocs_in(|| conn.read(&mut lp, c.as_mut(), buf, (rc, 1usize), read_cb))
                };
                lp.run(RunMode::UntilDone).unwrap();
                n
            };
            assert_eq!(read_with(1), 0, "{b:?}: Tcp read with an Rc");
            assert_eq!(read_with(2), 1, "{b:?}: Tcp read with two words: one block");
            // The old callback is dropped (its block cached) once the next one is set, so
            // the second start may take one more block; from then on none.
            assert!(read_with(2) <= 1, "{b:?}: second Tcp read with two words");
            for i in 0..3 {
                assert_eq!(
                    read_with(2),
                    0,
                    "{b:?}: read {i} after warm-up reuses a block"
                );
            }

            let big = [7u64; 16];
            for _ in 0..2 {
                let n = allocs_in(|| Timer::new().run(&mut lp, c.as_mut(), 0, big, timer_cb));
                assert_eq!(n, 1, "{b:?}: 128 bytes of userdata: boxed");
                lp.run(RunMode::UntilDone).unwrap();
            }
            // A rearm reuses the box: 3 firings of one start, one allocation.
            let fired = Rc::new(Cell::new(0u32));
            let f2 = fired.clone();
            let n = allocs_in(|| {
                Timer::new().run(
                    &mut lp,
                    c.as_mut(),
                    0,
                    (big, f2),
                    |(_, f): &mut ([u64; 16], Rc<Cell<u32>>), _: &mut Loop, _, r| {
                        r.unwrap();
                        f.set(f.get() + 1);
                        if f.get() < 3 {
                            CallbackAction::Rearm
                        } else {
                            CallbackAction::Disarm
                        }
                    },
                );
                lp.run(RunMode::UntilDone).unwrap();
            });
            assert_eq!(fired.get(), 3);
            assert_eq!(n, 1, "{b:?}: a rearmed boxed callback");
        })
        .join()
        .unwrap_or_else(|_| panic!("{b:?} failed (see above)"));
    }
}
