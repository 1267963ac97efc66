//! A tour of xev on the default backend. First the callback API: a timer, a TCP
//! connection between two completions on one loop exchanging a message, and a file
//! written and read back. Then the same kinds of work with the async API on a runtime:
//! tasks, sleeps, a timeout, TCP, a file, a child process and a wake-up from a thread.
//!
//! Run it with `cargo run --release --example tour` (append `-- epoll` or `-- io_uring` to
//! pin a backend, or set `XEV_BACKEND=epoll`: every example honours it).
//!
//! Unix only for now: it uses files, a child process and raw fds, which xev does not
//! have on Windows yet.

#[cfg(not(unix))]
fn main() {
    eprintln!("tour: Unix only (files and processes are not in xev on this platform yet)");
    std::process::exit(2);
}

#[cfg(unix)]
use std::cell::RefCell;
#[cfg(unix)]
use std::net::{SocketAddr, TcpListener};
#[cfg(unix)]
use std::os::fd::{AsRawFd, OwnedFd};
#[cfg(unix)]
use std::pin::pin;
#[cfg(unix)]
use std::rc::Rc;

#[cfg(unix)]
use xev::rt::IoBuf;
#[cfg(unix)]
use xev::{Backend, Buffer, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};

#[cfg(unix)]
/// A non-blocking TCP socket that has not connected yet.
fn tcp_socket() -> std::io::Result<OwnedFd> {
    // socket2 sets close-on-exec (and SO_NOSIGPIPE on macOS) on every platform.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    Ok(OwnedFd::from(s))
}

#[cfg(unix)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Completions first, loop last: the loop is dropped first, which drains anything
    // still in flight before the completions go away.
    let mut timer = pin!(Completion::new());
    let mut accept = pin!(Completion::new());
    let mut connect = pin!(Completion::new());
    let mut server_io = Box::pin(Completion::new());
    let mut file_io = pin!(Completion::new());
    let backend = match std::env::args().nth(1).as_deref() {
        None => None,
        Some(name) => Some(
            Backend::candidates()
                .iter()
                .copied()
                .find(|b| b.name() == name)
                .ok_or_else(|| format!("unknown backend {name:?}"))?,
        ),
    };
    let mut lp = Loop::new(Options {
        backend,
        ..Options::default()
    })?;
    println!("backend: {}", lp.backend().name());

    // 1. A timer.
    let t0 = lp.now();
    lp.timer(timer.as_mut(), 20, move |lp, _c, r| {
        println!("timer: {r:?} after {} ms", lp.now() - t0);
        CallbackAction::Disarm
    });

    // 2. TCP: accept on one completion, connect + send on another, recv on a third.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr: SocketAddr = listener.local_addr()?;
    let accepted: Rc<RefCell<Option<OwnedFd>>> = Rc::default();
    let slot = accepted.clone();
    lp.start(
        accept.as_mut(),
        Op::Accept {
            fd: listener.as_raw_fd(),
        },
        move |_, _, r| {
            let OpResult::Accept(Ok(conn)) = r else {
                panic!("accept: {r:?}")
            };
            println!("server: accepted a connection from {:?}", conn.peer);
            *slot.borrow_mut() = Some(conn.fd);
            CallbackAction::Disarm
        },
    );
    let client = tcp_socket()?;
    let client_fd = client.as_raw_fd();
    lp.start(
        connect.as_mut(),
        Op::Connect {
            fd: client_fd,
            addr,
        },
        move |_, c, r| {
            let OpResult::Connect(Ok(())) = r else {
                panic!("connect: {r:?}")
            };
            println!("client: connected to {addr}");
            // Reuse this completion, from inside its own callback, for the send.
            let msg = Buffer::copy_from(b"hello from the client");
            c.prep(
                Op::Send {
                    fd: client_fd,
                    buf: msg,
                },
                |_, _, r| {
                    println!("client: sent {r:?}");
                    CallbackAction::Disarm
                },
            );
            CallbackAction::Rearm // re-queue the completion, now holding the send
        },
    );
    // Run until the connection exists, then receive on the server side.
    while accepted.borrow().is_none() {
        lp.run(RunMode::Once)?;
    }
    let server_fd = accepted
        .borrow()
        .as_ref()
        .map(|f| f.as_raw_fd())
        .expect("accepted");
    lp.start(
        server_io.as_mut(),
        Op::Recv {
            fd: server_fd,
            buf: Buffer::from(vec![0; 64]),
        },
        |_, c, r| {
            let OpResult::Recv(Ok(n)) = r else {
                panic!("recv: {r:?}")
            };
            let bytes = &c.buffer().expect("Dead in its callback").as_slice()[..n];
            println!("server: received {:?}", String::from_utf8_lossy(bytes));
            CallbackAction::Disarm
        },
    );

    // 3. A file written and read back (on epoll this runs on the thread pool).
    let path = std::env::temp_dir().join(format!("xev-tour-{}.txt", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    let file_fd = file.as_raw_fd();
    lp.start(
        file_io.as_mut(),
        Op::Pwrite {
            fd: file_fd,
            buf: Buffer::copy_from(b"xev was here\n"),
            offset: 0,
        },
        move |_, c, r| {
            println!("file: pwrite {r:?}");
            c.prep(
                Op::Pread {
                    fd: file_fd,
                    buf: Buffer::from(vec![0; 64]),
                    offset: 0,
                },
                |_, c, r: OpResult| {
                    let OpResult::Pread(Ok(n)) = r else {
                        panic!("pread: {r:?}")
                    };
                    let text = String::from_utf8_lossy(&c.buffer().expect("Dead").as_slice()[..n])
                        .into_owned();
                    println!("file: read back {text:?}");
                    CallbackAction::Disarm
                },
            );
            CallbackAction::Rearm
        },
    );

    lp.run(RunMode::UntilDone)?;
    drop(file);
    std::fs::remove_file(&path)?;
    drop(client);
    println!("done: {} completions active", lp.active());
    drop(lp);

    async_tour(backend)
}

#[cfg(unix)]
/// The async half: the same kinds of work as futures on a runtime.
fn async_tour(backend: Option<Backend>) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};
    use xev::net::{TcpListener, TcpStream};

    let mut builder = xev::rt::Builder::new();
    if let Some(b) = backend {
        builder = builder.backend(b);
    }
    let rt = builder.build()?;
    println!("async: runtime on {}", rt.backend().name());
    rt.block_on(async {
        // Tasks and sleeps: three tasks finish in the order of their sleeps.
        let start = Instant::now();
        let tasks: Vec<_> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                xev::spawn(async move {
                    xev::time::sleep(Duration::from_millis(ms)).await;
                    println!("async: task sleeping {ms} ms done at {:?}", start.elapsed());
                    ms
                })
            })
            .collect();
        for t in tasks {
            t.await?;
        }

        // A timeout around something that never finishes.
        let r = xev::time::timeout(Duration::from_millis(5), std::future::pending::<()>()).await;
        println!("async: timeout -> {r:?}");

        // TCP: an echo task and a client, with owned buffers handed back by each call.
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = xev::spawn(async move {
            let (stream, peer) = listener.accept().await?;
            let (r, buf) = stream.read(vec![0u8; 64]).await;
            let n = r?;
            // Echo exactly what arrived: a slice of the same buffer, no copy.
            let (r, _) = stream.write_all(buf.slice(..n)).await;
            r?;
            std::io::Result::Ok(peer)
        });
        let client = TcpStream::connect(addr).await?;
        let (r, _) = client.write_all("hello over async TCP").await;
        r?;
        let (r, buf) = client.read(Vec::with_capacity(64)).await;
        println!(
            "async: tcp echo of {:?} served for {}",
            String::from_utf8_lossy(&buf[..r?]),
            server.await??
        );

        // A file written and read back at an offset.
        let path = std::env::temp_dir().join(format!("xev-tour-async-{}", std::process::id()));
        xev::fs::write(&path, "0123456789").await?;
        let file = xev::fs::File::open(&path).await?;
        let (r, buf) = file.read_at(vec![0u8; 4], 3).await;
        println!(
            "async: file read_at(3) -> {:?}",
            String::from_utf8_lossy(&buf[..r?])
        );
        file.close().await?;
        std::fs::remove_file(&path)?;

        // A child process, and a wake-up from another thread.
        let status =
            xev::process::status(std::process::Command::new("sh").args(["-c", "exit 7"])).await?;
        println!("async: child exited with {status}");
        let notify = xev::notify::Notify::new();
        let n = notify.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            n.notify();
        });
        notify.notified().await;
        println!("async: woken by a thread after {:?}", start.elapsed());
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
