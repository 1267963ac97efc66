//! Async pipes (`xev::pipe`): data in order, end of file, `EPIPE` without `SIGPIPE` (in a
//! child process whose `SIGPIPE` is at its default action, so a signal would kill it),
//! large transfers through a full pipe, and the fd lifetime of a dropped read.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::Command;
use std::task::Poll;
use std::time::Duration;

use xev::pipe::{pipe, Receiver, Sender};
use xev::time::{sleep, timeout};
use xev::Backend;

const LOST: Duration = Duration::from_secs(10);

/// The backend of the current runtime.
fn backend() -> Backend {
    xev::rt::with_loop(|lp| lp.backend())
}

#[xev::test(backend = "all")]
async fn echo_in_order() -> io::Result<()> {
    let (tx, rx) = pipe()?;
    for i in 0..100u32 {
        let msg = format!("message {i}\n");
        tx.write_all(msg.clone()).await.0?;
        let (r, buf) = rx.read_exact(vec![0u8; msg.len()]).await;
        r?;
        assert_eq!(buf, msg.as_bytes(), "{:?}", backend());
    }
    // A single write of a small buffer is whole.
    let (n, _) = tx.write(&b"abc"[..]).await;
    assert_eq!(n?, 3);
    let (n, buf) = rx.read(Vec::with_capacity(16)).await;
    assert_eq!(&buf[..n?], b"abc");
    // A zero-length read buffer is an error, not an end of file.
    let (r, _) = rx.read(Vec::new()).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    Ok(())
}

#[xev::test(backend = "all")]
async fn eof_when_the_writer_closes() -> io::Result<()> {
    let (tx, rx) = pipe()?;
    // A read waiting on an empty pipe wakes up with end of file when the writer closes.
    let reader = xev::spawn(async move {
        let (n, _) = rx.read(vec![0u8; 8]).await;
        let first = n?;
        let (r, buf) = rx.read_exact(vec![0u8; 8]).await;
        Ok::<_, io::Error>((first, r.map_err(|e| e.kind()), buf))
    });
    sleep(Duration::from_millis(20)).await;
    tx.write_all(&b"tail"[..]).await.0?;
    tx.close().await?;
    let (first, exact, buf) = timeout(LOST, reader).await.expect("read woke").unwrap()?;
    assert_eq!(first, 4);
    assert_eq!(exact, Err(io::ErrorKind::UnexpectedEof));
    assert_eq!(buf, vec![0u8; 8]);
    Ok(())
}

#[xev::test(backend = "all")]
async fn epipe_when_the_reader_closes() -> io::Result<()> {
    let (tx, rx) = pipe()?;
    rx.close().await?;
    let (r, buf) = tx.write(&b"nobody"[..]).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(buf, b"nobody");
    let (r, _) = tx.write_all(vec![7u8; 100_000]).await;
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);

    // A writer parked on a full pipe gets EPIPE when the reader goes away.
    let (tx, rx) = pipe()?;
    // SAFETY: F_SETPIPE_SZ on our own pipe.
    assert!(unsafe { libc::fcntl(tx.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) } >= 4096);
    let writer = xev::spawn(async move { tx.write_all(vec![1u8; 1 << 20]).await.0 });
    sleep(Duration::from_millis(20)).await;
    drop(rx);
    let r = timeout(LOST, writer)
        .await
        .expect("the write woke")
        .unwrap();
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    Ok(())
}

/// 16 MiB through a 64 KiB pipe, written in 1 MiB `write_all`s while a concurrent task
/// reads in odd-sized pieces: every byte arrives, in order.
#[xev::test(backend = "all")]
async fn large_transfer_through_a_small_pipe() -> io::Result<()> {
    const TOTAL: usize = 16 << 20;
    let (tx, rx) = pipe()?;
    // SAFETY: F_SETPIPE_SZ on our own pipe.
    let size = unsafe { libc::fcntl(tx.as_raw_fd(), libc::F_SETPIPE_SZ, 64 * 1024) };
    assert_eq!(size, 64 * 1024);
    let pattern = |i: usize| (i % 251) as u8;
    let reader = xev::spawn(async move {
        let mut got = 0usize;
        let mut buf = Vec::with_capacity(10_007);
        loop {
            buf.clear();
            let (n, b) = rx.read(buf).await;
            buf = b;
            let n = n?;
            if n == 0 {
                return Ok::<_, io::Error>(got);
            }
            for (k, &x) in buf[..n].iter().enumerate() {
                assert_eq!(x, pattern(got + k), "byte {}", got + k);
            }
            got += n;
        }
    });
    let mut sent = 0;
    while sent < TOTAL {
        let chunk: Vec<u8> = (sent..sent + (1 << 20)).map(pattern).collect();
        tx.write_all(chunk).await.0?;
        sent += 1 << 20;
    }
    drop(tx);
    let got = timeout(LOST, reader).await.expect("reader done").unwrap()?;
    assert_eq!(got, TOTAL);
    Ok(())
}

/// Poll `fut` once with the current task's context; it must be pending.
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    std::future::poll_fn(|cx| {
        assert!(fut.as_mut().poll(cx).is_pending(), "expected Pending");
        Poll::Ready(())
    })
    .await
}

/// A read future polled once and dropped, then its `Receiver` dropped: the (cancelled)
/// read keeps the fd open until it ends, so a pipe made right after does not get the
/// number while the stale read could still take its data; the new pipe gets its bytes.
#[xev::test(backend = "all")]
async fn a_dropped_read_never_takes_a_new_pipes_data() -> io::Result<()> {
    for round in 0..5 {
        let (tx, rx) = pipe()?;
        let old = rx.as_raw_fd();
        let mut r = Box::pin(rx.read(vec![0u8; 64]));
        poll_once(r.as_mut()).await;
        drop(r);
        drop(rx);
        let (tx2, rx2) = pipe()?;
        let reused = rx2.as_raw_fd() == old || tx2.as_raw_fd() == old;
        tx2.write_all(&b"DATA"[..]).await.0?;
        let (res, buf) = timeout(LOST, rx2.read_exact(vec![0u8; 4]))
            .await
            .unwrap_or_else(|_| panic!("round {round} (reused: {reused}): data lost"));
        res?;
        assert_eq!(buf, b"DATA", "round {round}");
        drop(tx);
    }
    Ok(())
}

/// `OwnedFd` in and out: a std pipe end (blocking) becomes non-blocking and works; the
/// fd comes back out; `close` reports success.
#[xev::test(backend = "all")]
async fn owned_fd_conversions() -> io::Result<()> {
    let (r, w) = std::io::pipe()?;
    let tx = Sender::from(OwnedFd::from(w));
    let rx = Receiver::from(OwnedFd::from(r));
    // SAFETY: F_GETFL on an fd we own.
    let flags = unsafe { libc::fcntl(rx.as_raw_fd(), libc::F_GETFL) };
    assert!(flags & libc::O_NONBLOCK != 0);
    tx.write_all(&b"x"[..]).await.0?;
    let fd: OwnedFd = rx.into();
    let rx = Receiver::from(fd);
    let (n, buf) = rx.read(vec![0u8; 4]).await;
    assert_eq!(&buf[..n?], b"x");
    // Reading from the writing end is the kernel's EBADF, as an error.
    let (r, _) = Receiver::from(OwnedFd::from(tx)).read(vec![0u8; 4]).await;
    assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EBADF));
    rx.close().await
}

const SIGPIPE_CHILD: &str = "XEV_SIGPIPE_CHILD";

/// Whether SIGPIPE is blocked in this thread.
fn sigpipe_blocked() -> bool {
    // SAFETY: a zeroed sigset is a valid output buffer; pthread_sigmask with a null set
    // only reads the current mask.
    unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old);
        libc::sigismember(&old, libc::SIGPIPE) == 1
    }
}

/// Whether a SIGPIPE is pending (thread or process).
fn sigpipe_pending() -> bool {
    // SAFETY: sigpending writes into our zeroed set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}

/// In the child: SIGPIPE back to its default action (terminate), then writes to broken
/// pipes through the runtime and through the callback API. Reaching the end means no
/// signal was raised; the mask is restored and nothing is left pending afterwards.
fn sigpipe_child(b: Backend) {
    // SAFETY: setting a signal's disposition to SIG_DFL.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert!(!sigpipe_blocked());
    let rt = xev::rt::Builder::new().backend(b).build().unwrap();
    rt.block_on(async {
        let (tx, rx) = pipe().unwrap();
        drop(rx);
        let (r, _) = tx.write(&b"x"[..]).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        // A write parked on a full pipe whose reader goes away (io_uring retries it from
        // task work, the epoll backend on the readiness edge).
        let (tx, rx) = pipe().unwrap();
        let w = xev::spawn(async move { tx.write_all(vec![0u8; 1 << 20]).await.0 });
        sleep(Duration::from_millis(20)).await;
        drop(rx);
        assert_eq!(
            w.await.unwrap().unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
        // Child stdin whose child exited without reading.
        let mut child = xev::process::spawn(
            Command::new("true")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null()),
        )
        .unwrap();
        let stdin = child.stdin.take().unwrap();
        child.wait().await.unwrap();
        let (r, _) = stdin.write_all(vec![0u8; 1 << 20]).await;
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    });
    drop(rt);
    // The callback API's Op::Write on a raw pipe fd.
    let mut lp = runtime_tests::new_loop(b);
    let (tx, rx) = pipe().unwrap();
    drop(rx);
    let fd: OwnedFd = tx.into();
    let res = runtime_tests::results();
    let mut c = Box::pin(xev::Completion::new());
    lp.start(
        c.as_mut(),
        xev::Op::Write {
            fd: fd.as_raw_fd(),
            buf: xev::Buffer::copy_from(b"x"),
        },
        runtime_tests::record(&res),
    );
    lp.run(xev::RunMode::UntilDone).unwrap();
    let r = runtime_tests::only(&res);
    assert!(matches!(r, xev::OpResult::Write(_)), "{r:?}");
    assert_eq!(runtime_tests::os_error(&r), Some(libc::EPIPE), "{r:?}");
    drop(lp);
    assert!(!sigpipe_blocked(), "the loop restores the mask");
    assert!(!sigpipe_pending(), "no SIGPIPE left pending");
    println!("SIGPIPE-CHILD-OK");
}

/// The write to a broken pipe is `EPIPE` and never a `SIGPIPE`, on every backend, even
/// with `SIGPIPE` at `SIG_DFL` (checked in a re-executed child of this test binary, which
/// the signal would kill).
#[test]
fn a_broken_pipe_is_an_error_never_a_signal() {
    if let Ok(name) = std::env::var(SIGPIPE_CHILD) {
        let b = Backend::candidates()
            .iter()
            .copied()
            .find(|b| b.name() == name)
            .unwrap();
        sigpipe_child(b);
        return;
    }
    for b in Backend::available() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "a_broken_pipe_is_an_error_never_a_signal",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SIGPIPE_CHILD, b.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("SIGPIPE-CHILD-OK"),
            "{b:?}: status {:?}\nstdout {stdout}\nstderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
