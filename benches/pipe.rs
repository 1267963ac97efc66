//! pipe: 64-byte ping-pong over a pair of pipes between two threads, the shape of a
//! parent talking to a child process through its stdin and stdout. The client thread
//! writes a message into one pipe and waits for it to come back on the other; the echo
//! thread reads it and writes it back. Each thread runs its own runtime (or loop), so
//! every message is a wait for another thread's write, as with a real child.
//!
//! Variants, measured in the same process and interleaved (A B C ..., A B C ..., ...):
//!
//! 1. `xev async io_uring`, 2. `xev async epoll`: `xev::rt::pipe` on a runtime of that
//!    backend on each thread;
//! 3. `xev io_uring`, 4. `xev epoll`: the callback API, `watcher::stream::Stream` on a
//!    loop of that backend on each thread (each reply's read callback starts the next
//!    write; the buffers go round, nothing is allocated per message);
//! 5. `tokio current_thread`: `tokio::net::unix::pipe` on a `current_thread` runtime on
//!    each thread (the reference);
//! 6. `raw epoll (ref)`: a hand-written loop on each thread: `read` until `EAGAIN`, then
//!    `epoll_wait` (edge-triggered), the syscalls a readiness runtime cannot avoid;
//! 7. `raw io_uring (ref)`: a hand-written loop on the `io-uring` crate on each thread:
//!    `Write` and `Read` SQEs on the pipe fds, one `submit_and_wait(1)` per wait.
//!
//! Figures: round trips per second, the process's CPU time per round trip (both threads)
//! and the ratio of each to tokio's; median of 3 rounds (`XEV_BENCH_QUICK=1`: 1 short
//! round). `XEV_BENCH_ONLY=epoll,tokio` filters the variants, `XEV_BENCH_ROUND_TRIPS=N`
//! sets the timed round trips.
//!
//! What it has caught: on the poll backend every pipe read and write was an operation,
//! and each asked `fstat` whether the fd was a regular file (whose I/O goes to the
//! thread pool): the ping-pong ran at 0.82x tokio's rate. The answer is now kept for the
//! runtime's own fds, and pipes take the direct path (`read`/`write` on the fd, or a
//! wait for its edge, without an operation), as sockets do. The callback API's watchers
//! paid the same `fstat` per operation until each watcher's descriptor recorded its kind
//! once (`SharedFd::kind`).
//!
//! Run with `cargo bench --bench pipe`.

#[path = "common/mod.rs"]
mod common;

#[global_allocator]
static A: common::Counting = common::Counting;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use common::report::{interleaved, per_round_line, ratio, select};

const MSG: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    XevIoUring,
    XevEpoll,
    XevCbIoUring,
    XevCbEpoll,
    Tokio,
    RawEpoll,
    RawIoUring,
}

impl Variant {
    const ALL: [Variant; 7] = [
        Variant::XevIoUring,
        Variant::XevEpoll,
        Variant::XevCbIoUring,
        Variant::XevCbEpoll,
        Variant::Tokio,
        Variant::RawEpoll,
        Variant::RawIoUring,
    ];

    fn name(self) -> &'static str {
        match self {
            Variant::XevIoUring => "xev async io_uring",
            Variant::XevEpoll => "xev async epoll",
            Variant::XevCbIoUring => "xev io_uring",
            Variant::XevCbEpoll => "xev epoll",
            Variant::Tokio => "tokio current_thread",
            Variant::RawEpoll => "raw epoll (ref)",
            Variant::RawIoUring => "raw io_uring (ref)",
        }
    }

    fn on_io_uring(self) -> bool {
        matches!(
            self,
            Variant::XevIoUring | Variant::XevCbIoUring | Variant::RawIoUring
        )
    }
}

#[derive(Clone, Copy)]
struct Sample {
    per_sec: f64,
    cpu_us: f64,
}

/// A pipe whose ends are non-blocking and close-on-exec: `(read, write)`.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// The two ends each thread gets: the client writes `to_echo` and reads `from_echo`.
struct Ends {
    client: (OwnedFd, OwnedFd),
    echo: (OwnedFd, OwnedFd),
}

fn ends() -> Ends {
    let (echo_rd, client_wr) = pipe();
    let (client_rd, echo_wr) = pipe();
    Ends {
        client: (client_rd, client_wr),
        echo: (echo_rd, echo_wr),
    }
}

/// `n` timed round trips after `n / 10` of warm-up, the client's side on this thread.
fn measure(v: Variant, n: u64) -> Result<Sample, String> {
    let warm = n / 10;
    let Ends { client, echo } = ends();
    let echo = std::thread::spawn(move || match v {
        Variant::XevIoUring => xev_echo(xev::Backend::IoUring, echo),
        Variant::XevEpoll => xev_echo(xev::Backend::Epoll, echo),
        Variant::XevCbIoUring => callback::echo(xev::Backend::IoUring, echo),
        Variant::XevCbEpoll => callback::echo(xev::Backend::Epoll, echo),
        Variant::Tokio => tokio_echo(echo),
        Variant::RawEpoll => raw_echo(echo),
        Variant::RawIoUring => raw_uring::echo(echo),
    });
    let run = |rounds: u64| match v {
        Variant::XevIoUring => xev_client(xev::Backend::IoUring, &client, rounds),
        Variant::XevEpoll => xev_client(xev::Backend::Epoll, &client, rounds),
        Variant::XevCbIoUring => callback::client(xev::Backend::IoUring, &client, rounds),
        Variant::XevCbEpoll => callback::client(xev::Backend::Epoll, &client, rounds),
        Variant::Tokio => tokio_client(&client, rounds),
        Variant::RawEpoll => raw_client(&client, rounds),
        Variant::RawIoUring => raw_uring::client(&client, rounds),
    };
    let result = run(warm).and_then(|()| {
        let (t, cpu) = (Instant::now(), common::cpu_time());
        run(n)?;
        Ok(Sample {
            per_sec: n as f64 / t.elapsed().as_secs_f64(),
            cpu_us: (common::cpu_time() - cpu).as_secs_f64() * 1e6 / n as f64,
        })
    });
    // The echo thread ends when the client's write end closes.
    drop(client);
    echo.join()
        .map_err(|_| "the echo thread panicked".to_string())??;
    result
}

/// The client's side on an xev runtime: write a message, read it back, `n` times.
fn xev_client(backend: xev::Backend, (rd, wr): &(OwnedFd, OwnedFd), n: u64) -> Result<(), String> {
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .build()
        .map_err(|e| e.to_string())?;
    let (rd, wr) = (dup(rd), dup(wr));
    rt.block_on(async move {
        let rx = xev::rt::pipe::Receiver::from(rd);
        let tx = xev::rt::pipe::Sender::from(wr);
        let mut msg = vec![7u8; MSG];
        let mut buf = vec![0u8; MSG];
        for _ in 0..n {
            let (r, m) = tx.write_all(msg).await;
            r.map_err(|e| format!("client write: {e}"))?;
            let (r, b) = rx.read_exact(buf).await;
            r.map_err(|e| format!("client read: {e}"))?;
            if b != m {
                return Err("the echo differs".to_string());
            }
            (msg, buf) = (m, b);
        }
        Ok(())
    })
}

/// The echo's side on an xev runtime: read what arrives, write it back, until the
/// client's write end closes.
fn xev_echo(backend: xev::Backend, (rd, wr): (OwnedFd, OwnedFd)) -> Result<(), String> {
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let rx = xev::rt::pipe::Receiver::from(rd);
        let tx = xev::rt::pipe::Sender::from(wr);
        let mut buf = vec![0u8; MSG];
        let mut out: Vec<u8> = Vec::with_capacity(MSG);
        loop {
            let (r, b) = rx.read(buf).await;
            buf = b;
            let k = r.map_err(|e| format!("echo read: {e}"))?;
            if k == 0 {
                return Ok(());
            }
            out.clear();
            out.extend_from_slice(&buf[..k]);
            let (r, o) = tx.write_all(out).await;
            r.map_err(|e| format!("echo write: {e}"))?;
            out = o;
        }
    })
}

fn tokio_rt() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// The client's side on tokio.
fn tokio_client((rd, wr): &(OwnedFd, OwnedFd), n: u64) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio_rt()?;
    let (rd, wr) = (dup(rd), dup(wr));
    rt.block_on(async move {
        let mut rx =
            tokio::net::unix::pipe::Receiver::from_owned_fd(rd).map_err(|e| e.to_string())?;
        let mut tx =
            tokio::net::unix::pipe::Sender::from_owned_fd(wr).map_err(|e| e.to_string())?;
        let msg = [7u8; MSG];
        let mut buf = [0u8; MSG];
        for _ in 0..n {
            tx.write_all(&msg)
                .await
                .map_err(|e| format!("client write: {e}"))?;
            rx.read_exact(&mut buf)
                .await
                .map_err(|e| format!("client read: {e}"))?;
            if buf != msg {
                return Err("the echo differs".to_string());
            }
        }
        Ok(())
    })
}

/// The echo's side on tokio.
fn tokio_echo((rd, wr): (OwnedFd, OwnedFd)) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio_rt()?;
    rt.block_on(async move {
        let mut rx =
            tokio::net::unix::pipe::Receiver::from_owned_fd(rd).map_err(|e| e.to_string())?;
        let mut tx =
            tokio::net::unix::pipe::Sender::from_owned_fd(wr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; MSG];
        loop {
            let k = rx
                .read(&mut buf)
                .await
                .map_err(|e| format!("echo read: {e}"))?;
            if k == 0 {
                return Ok(());
            }
            tx.write_all(&buf[..k])
                .await
                .map_err(|e| format!("echo write: {e}"))?;
        }
    })
}

/// A hand-written edge-triggered epoll wait for `fd` to become readable: `read` until
/// `EAGAIN` is the caller's, this only blocks until the next edge.
struct RawWait {
    ep: OwnedFd,
}

impl RawWait {
    fn new(fd: &OwnedFd) -> RawWait {
        // SAFETY: epoll_create1 has no preconditions; the fd is owned from here on.
        let ep = unsafe { OwnedFd::from_raw_fd(libc::epoll_create1(libc::EPOLL_CLOEXEC)) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; `ev` is a valid event record.
        let r = unsafe {
            libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev)
        };
        assert_eq!(r, 0, "epoll_ctl: {}", std::io::Error::last_os_error());
        RawWait { ep }
    }

    fn wait(&self) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: `ev` has room for the one event asked for.
        unsafe { libc::epoll_wait(self.ep.as_raw_fd(), &mut ev, 1, -1) };
    }
}

/// `read` on `fd` into `buf`, waiting on `w` while it would block: the bytes read.
fn raw_read(fd: &OwnedFd, w: &RawWait, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        // SAFETY: `buf` is writable for its length.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => w.wait(),
            std::io::ErrorKind::Interrupted => {}
            _ => return Err(format!("read: {e}")),
        }
    }
}

/// `write` of all of `buf` on `fd` (64 bytes into an empty pipe never block).
fn raw_write(fd: &OwnedFd, buf: &[u8]) -> Result<(), String> {
    // SAFETY: `buf` is readable for its length.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if r as usize == buf.len() {
        Ok(())
    } else {
        Err(format!("write: {r} ({})", std::io::Error::last_os_error()))
    }
}

/// The client's side as a hand-written loop.
fn raw_client((rd, wr): &(OwnedFd, OwnedFd), n: u64) -> Result<(), String> {
    let w = RawWait::new(rd);
    let msg = [7u8; MSG];
    let mut buf = [0u8; MSG];
    for _ in 0..n {
        raw_write(wr, &msg)?;
        let mut got = 0;
        while got < MSG {
            got += raw_read(rd, &w, &mut buf[got..])?;
        }
        if buf != msg {
            return Err("the echo differs".to_string());
        }
    }
    Ok(())
}

/// The echo's side as a hand-written loop.
fn raw_echo((rd, wr): (OwnedFd, OwnedFd)) -> Result<(), String> {
    let w = RawWait::new(&rd);
    let mut buf = [0u8; MSG];
    loop {
        let k = raw_read(&rd, &w, &mut buf)?;
        if k == 0 {
            return Ok(());
        }
        raw_write(&wr, &buf[..k])?;
    }
}

/// A second fd for the same pipe end (each runtime takes ownership of what it is given;
/// the original stays with `measure`, which closes it to end the echo).
/// The raw io_uring reference, written directly on the `io-uring` crate: one ring per
/// thread, one read and at most one write in flight.
mod raw_uring {
    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};

    use io_uring::{opcode, squeue, types, IoUring};

    use super::{common, MSG};

    const READ: u64 = 0;
    const WRITE: u64 = 1;

    type Buf = Box<[u8; MSG]>;

    /// Queue `e`.
    ///
    /// # Safety
    /// The buffer `e` names stays valid until its completion is reaped (the callers
    /// reap every entry before touching its buffer again, and leak the buffers when
    /// they leave with entries in flight).
    unsafe fn push(ring: &mut IoUring, e: &squeue::Entry) -> Result<(), String> {
        // SAFETY: the caller's contract.
        unsafe { ring.submission().push(e) }.map_err(|_| "submission queue full".to_string())
    }

    /// Submit what is queued and take the next completion: (tag, byte count).
    fn next(ring: &mut IoUring) -> Result<(u64, usize), String> {
        loop {
            if let Some(c) = ring.completion().next() {
                let (tag, res) = (c.user_data(), c.result());
                if res < 0 {
                    let e = io::Error::from_raw_os_error(-res);
                    return Err(format!("{}: {e}", ["read", "write"][tag as usize]));
                }
                return Ok((tag, res as usize));
            }
            common::uring::submit_and_wait_one(&ring.submitter()).map_err(|e| e.to_string())?;
        }
    }

    fn read(fd: &OwnedFd, buf: &mut [u8]) -> squeue::Entry {
        opcode::Read::new(
            types::Fd(fd.as_raw_fd()),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .build()
        .user_data(READ)
    }

    fn write(fd: &OwnedFd, buf: &[u8]) -> squeue::Entry {
        opcode::Write::new(types::Fd(fd.as_raw_fd()), buf.as_ptr(), buf.len() as u32)
            .build()
            .user_data(WRITE)
    }

    /// Run `f` with two heap buffers, leaked if it fails (entries may still be in flight
    /// on them; the ring's teardown cancels those only asynchronously).
    fn with_bufs(
        f: impl FnOnce(&mut IoUring, &mut Buf, &mut Buf) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut ring = common::uring::ring(8).map_err(|e| e.to_string())?;
        let (mut a, mut b): (Buf, Buf) = (Box::new([7; MSG]), Box::new([0; MSG]));
        let r = f(&mut ring, &mut a, &mut b);
        if r.is_err() {
            Box::leak(a);
            Box::leak(b);
        }
        r
    }

    /// Write a message and read it back, `n` times.
    pub(super) fn client((rd, wr): &(OwnedFd, OwnedFd), n: u64) -> Result<(), String> {
        with_bufs(|ring, msg, buf| {
            for _ in 0..n {
                // SAFETY: `msg` is not touched until the write is reaped below.
                unsafe { push(ring, &write(wr, &msg[..]))? };
                let (mut got, mut wrote, mut reading) = (0, false, false);
                while got < MSG || !wrote {
                    if got < MSG && !reading {
                        // SAFETY: `buf` is not touched until the read is reaped.
                        unsafe { push(ring, &read(rd, &mut buf[got..]))? };
                        reading = true;
                    }
                    match next(ring)? {
                        (WRITE, k) if k == MSG => wrote = true,
                        (WRITE, k) => return Err(format!("short write of {k} bytes")),
                        (_, 0) => return Err("end of file".to_string()),
                        (_, k) => (got, reading) = (got + k, false),
                    }
                }
                if buf != msg {
                    return Err("the echo differs".to_string());
                }
            }
            Ok(())
        })
    }

    /// Read what arrives and write it back, until the client's write end closes.
    pub(super) fn echo((rd, wr): (OwnedFd, OwnedFd)) -> Result<(), String> {
        with_bufs(|ring, out, buf| {
            let mut writing = false;
            loop {
                // SAFETY: `buf` is not touched until the read is reaped.
                unsafe { push(ring, &read(&rd, &mut buf[..]))? };
                let k = loop {
                    match next(ring)? {
                        (WRITE, _) => writing = false,
                        (_, k) => break k,
                    }
                };
                // The last write is done before its buffer is filled again (or left).
                while writing {
                    if next(ring)?.0 == WRITE {
                        writing = false;
                    }
                }
                if k == 0 {
                    return Ok(());
                }
                out[..k].copy_from_slice(&buf[..k]);
                // SAFETY: `out` is not touched until the write is reaped.
                unsafe { push(ring, &write(&wr, &out[..k]))? };
                writing = true;
            }
        })
    }
}

/// The callback API's variants: `watcher::stream::Stream` on a `Loop`.
mod callback {
    use std::cell::{Cell, RefCell};
    use std::os::fd::OwnedFd;
    use std::pin::Pin;
    use std::rc::Rc;

    use xev::watcher::stream::Stream;
    use xev::{Buffer, CallbackAction, Completion, Loop, Op, Options, ReadError, RunMode};

    use super::{dup, MSG};

    /// One side's state, shared by its read callback (which starts each write) and the
    /// caller. The write completion is only ever started while Dead: a write finishes
    /// (its completion is reported) before the peer can answer it.
    struct Side {
        tx: Stream,
        write: RefCell<Pin<Box<Completion>>>,
        /// Client: messages still to send. Echo: unused.
        left: Cell<u64>,
        /// Client: bytes of the current reply so far.
        got: Cell<usize>,
        /// The first failure (shared with the write callback, which must not hold the
        /// side: the side holds the write completion, which keeps its callback).
        error: Rc<RefCell<Option<String>>>,
    }

    fn fail(error: &RefCell<Option<String>>, e: String) -> CallbackAction {
        error.borrow_mut().get_or_insert(e);
        CallbackAction::Disarm
    }

    impl Side {
        fn fail(&self, e: String) -> CallbackAction {
            fail(&self.error, e)
        }

        /// Write the first `len` bytes of `fill`'s output: the buffer of the last write
        /// (a 64-byte one at first), refilled by `fill`.
        fn send(&self, lp: &mut Loop, fill: impl FnOnce(&mut [u8]) -> usize) {
            let mut c = self.write.borrow_mut();
            let mut buf = match c.as_mut().take_op() {
                Some(Op::Write { buf, .. }) => buf,
                _ => Buffer::from(vec![7u8; MSG]),
            };
            buf.set_len(MSG);
            let len = fill(buf.as_mut_slice());
            buf.set_len(len);
            let error = self.error.clone();
            self.tx
                .write(lp, c.as_mut(), buf, (), move |_, _, c, r| match r {
                    Ok(n) if n == c.buffer().map_or(0, Buffer::len) => CallbackAction::Disarm,
                    Ok(n) => fail(&error, format!("short write of {n} bytes")),
                    Err(e) => fail(&error, format!("write: {e}")),
                });
        }
    }

    fn side(backend: xev::Backend, wr: OwnedFd, left: u64) -> Result<(Loop, Rc<Side>), String> {
        let lp = Loop::new(Options {
            backend: Some(backend),
            ..Options::default()
        })
        .map_err(|e| e.to_string())?;
        let side = Rc::new(Side {
            tx: Stream::from(wr),
            write: RefCell::new(Box::pin(Completion::new())),
            left: Cell::new(left),
            got: Cell::new(0),
            error: Rc::new(RefCell::new(None)),
        });
        Ok((lp, side))
    }

    /// Run until the read completion is done; the side's error, if any.
    fn finish(mut lp: Loop, side: &Side, read: &Completion) -> Result<(), String> {
        while read.state() == xev::CompletionState::Active {
            lp.run(RunMode::Once).map_err(|e| e.to_string())?;
        }
        lp.run(RunMode::UntilDone).map_err(|e| e.to_string())?;
        side.error.borrow_mut().take().map_or(Ok(()), Err)
    }

    /// Write a message, read it back, `n` times.
    pub(super) fn client(
        backend: xev::Backend,
        (rd, wr): &(OwnedFd, OwnedFd),
        n: u64,
    ) -> Result<(), String> {
        if n == 0 {
            return Ok(());
        }
        let (mut lp, me) = side(backend, dup(wr), n)?;
        let rx = Stream::from(dup(rd));
        let mut read = Box::pin(Completion::new());
        me.send(&mut lp, |b| b.len());
        let st = me.clone();
        let buf = Buffer::from(vec![0u8; MSG]);
        rx.read(&mut lp, read.as_mut(), buf, (), move |_, lp, c, r| {
            let k = match r {
                Ok(k) => k,
                Err(e) => return st.fail(format!("client read: {e}")),
            };
            if c.buffer()
                .is_none_or(|b| b.as_slice()[..k] != [7u8; MSG][..k])
            {
                return st.fail("the echo differs".to_string());
            }
            let got = st.got.get() + k;
            st.got.set(got % MSG);
            if got < MSG {
                return CallbackAction::Rearm;
            }
            st.left.set(st.left.get() - 1);
            if st.left.get() == 0 {
                return CallbackAction::Disarm;
            }
            st.send(lp, |b| b.len());
            CallbackAction::Rearm
        });
        finish(lp, &me, &read)
    }

    /// Read what arrives and write it back, until the client's write end closes.
    pub(super) fn echo(backend: xev::Backend, (rd, wr): (OwnedFd, OwnedFd)) -> Result<(), String> {
        let (mut lp, me) = side(backend, wr, 0)?;
        let rx = Stream::from(rd);
        let mut read = Box::pin(Completion::new());
        let st = me.clone();
        let buf = Buffer::from(vec![0u8; MSG]);
        rx.read(&mut lp, read.as_mut(), buf, (), move |_, lp, c, r| {
            let k = match r {
                Ok(k) => k,
                Err(ReadError::Eof) => return CallbackAction::Disarm,
                Err(e) => return st.fail(format!("echo read: {e}")),
            };
            let Some(got) = c.buffer() else {
                return st.fail("no read buffer".to_string());
            };
            st.send(lp, |b| {
                b[..k].copy_from_slice(&got.as_slice()[..k]);
                k
            });
            CallbackAction::Rearm
        });
        finish(lp, &me, &read)
    }
}

fn dup(fd: &OwnedFd) -> OwnedFd {
    fd.try_clone().expect("dup")
}

fn main() {
    let quick = common::quick();
    let started = Instant::now();
    println!("pipe: 64-byte ping-pong over two pipes between two threads");
    common::sys::print_command("pipe", quick);
    println!("{}", common::sys::machine());
    let rounds = if quick { 1 } else { 3 };
    let n: u64 =
        common::env_parse("XEV_BENCH_ROUND_TRIPS").unwrap_or(if quick { 2_000 } else { 200_000 });
    let variants = select(&Variant::ALL, Variant::name, Variant::on_io_uring);
    let mut failed = false;
    let samples = interleaved(
        rounds,
        &variants,
        &mut failed,
        |v| measure(v, n),
        |v| format!("pipe: {}", v.name()),
    );
    let med = |i: usize| -> Option<Sample> {
        let s = &samples[i];
        (!s.is_empty()).then(|| Sample {
            per_sec: common::median(s.iter().map(|x| x.per_sec).collect()),
            cpu_us: common::median(s.iter().map(|x| x.cpu_us).collect()),
        })
    };
    let reference = variants
        .iter()
        .position(|&v| v == Variant::Tokio)
        .and_then(med);
    println!();
    println!(
        "== {n} timed round trips (+{} warm-up), {rounds} round(s) ==",
        n / 10
    );
    println!(
        "{:<24} {:>14} {:>12} {:>12} {:>12}",
        "variant", "round trips/s", "vs tokio", "cpu µs/rt", "vs tokio"
    );
    for (i, &v) in variants.iter().enumerate() {
        let Some(s) = med(i) else { continue };
        println!(
            "{:<24} {:>14.0} {:>12} {:>12.2} {:>12}",
            v.name(),
            s.per_sec,
            ratio(s.per_sec, reference.map(|r| r.per_sec)),
            s.cpu_us,
            ratio(s.cpu_us, reference.map(|r| r.cpu_us)),
        );
    }
    per_round_line(
        "round trips/s",
        0,
        variants
            .iter()
            .zip(&samples)
            .map(|(v, s)| (v.name(), s.iter().map(|x| x.per_sec).collect())),
    );
    common::report::finish("total wall time", started, failed);
}
