//! Compatibility with the poll-based I/O traits of the ecosystem: `futures-io`, tokio's
//! `AsyncRead`/`AsyncWrite`, and hyper 1.x (I/O, executor and timer). Each comes with a
//! cargo feature, all off by default (without them this module does not exist):
//!
//! | feature | gives [`Compat`] | for |
//! |---|---|---|
//! | `futures-io` | `futures_io::{AsyncRead, AsyncWrite, AsyncBufRead}` | `futures::io` (`copy`, `BufReader`, `lines`, ...), async-tls, ... |
//! | `tokio-io` | `tokio::io::{AsyncRead, AsyncWrite, AsyncBufRead}` (tokio without a runtime) | tokio-util codecs, tokio-rustls, hyper-util's `TokioIo` |
//! | `hyper` | `hyper::rt::{Read, Write}`, plus [`HyperExecutor`] and [`HyperTimer`] | hyper's HTTP/1.1 server and client |
//! | `hyper-http2` | `hyper` plus HTTP/2 | hyper's HTTP/2 server and client |
//!
//! xev's sockets take owned buffers (`read(buf) -> (io::Result<usize>, buf)`: the kernel
//! may use the memory after a future is dropped), so they cannot implement poll-based
//! traits that lend a `&mut [u8]` for one poll. [`Compat`] owns its buffers instead: it
//! keeps one read in flight into its read buffer and copies out of it (read-ahead), and
//! copies writes into its write buffer and sends them from there (write-behind). That is
//! one copy per direction, no allocation per poll. On the poll backend (epoll) sockets
//! skip both, as tokio does: a read fills the read buffer with one `recv` when it is
//! empty, a write is one `send`/`sendmsg` from the caller's buffers (no copy), each done
//! at once or after waiting for the socket's readiness, without an operation. **Flush or
//! close before dropping a `Compat`**: dropping it cancels a write still in flight
//! (safely, but unsent bytes are lost). [`Compat::into_split`] gives read and write
//! halves for two tasks.
//!
//! # futures-io
//!
//! ```
//! # #[cfg(feature = "futures-io")] {
//! use futures_util::io::{AsyncBufReadExt, AsyncWriteExt};
//! use xev::compat::Compat;
//! use xev::net::{TcpListener, TcpStream};
//!
//! xev::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let mut client = Compat::new(TcpStream::connect(listener.local_addr()?).await?);
//!     let mut server = Compat::new(listener.accept().await?.0);
//!
//!     client.write_all(b"one\ntwo\n").await?;
//!     client.close().await?; // flush, then shut the writing side down
//!     let mut lines = Vec::new();
//!     let mut line = String::new();
//!     while server.read_line(&mut line).await? > 0 {
//!         lines.push(std::mem::take(&mut line));
//!     }
//!     assert_eq!(lines, ["one\n", "two\n"]);
//!     Ok::<_, std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # tokio-io
//!
//! tokio's traits only (`tokio` with no default features): tokio-util's codecs,
//! tokio-rustls (see `examples/tls_echo.rs`) and hyper-util's `TokioIo` work over
//! [`Compat`]. Your own `tokio` dependency may add `io-util` for the extension traits.
//!
//! ```
//! # #[cfg(feature = "tokio-io")] {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use xev::compat::Compat;
//! use xev::net::{TcpListener, TcpStream};
//!
//! xev::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let mut client = Compat::new(TcpStream::connect(listener.local_addr()?).await?);
//!     let mut server = Compat::new(listener.accept().await?.0);
//!
//!     client.write_all(b"ping").await?;
//!     client.shutdown().await?;
//!     let mut got = String::new();
//!     server.read_to_string(&mut got).await?;
//!     assert_eq!(got, "ping");
//!     Ok::<_, std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # hyper
//!
//! [`Compat`] is hyper's I/O directly (no `TokioIo`), [`HyperTimer`] runs hyper's
//! timeouts on xev's timers, and [`HyperExecutor`] spawns hyper's background tasks (HTTP/2)
//! as xev tasks, which need not be `Send`. `examples/hyper_hello.rs` is a complete server.
//!
//! ```
//! # #[cfg(feature = "hyper")] {
//! use http_body_util::{BodyExt, Full};
//! use hyper::body::Bytes;
//! use hyper::service::service_fn;
//! use hyper::{client, server, Request, Response};
//! use xev::compat::{Compat, HyperTimer};
//! use xev::net::{TcpListener, TcpStream};
//!
//! xev::block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     xev::spawn(async move {
//!         let (stream, _) = listener.accept().await.unwrap();
//!         let hello = service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("Hello"))))
//!         });
//!         server::conn::http1::Builder::new()
//!             .timer(HyperTimer)
//!             .serve_connection(Compat::new(stream), hello)
//!             .await
//!     });
//!
//!     let stream = Compat::new(TcpStream::connect(addr).await?);
//!     let (mut sender, conn) = client::conn::http1::handshake(stream).await.unwrap();
//!     xev::spawn(conn);
//!     for _ in 0..2 { // two requests, one connection (keep-alive)
//!         let req = Request::get("/").header("host", "localhost").body(Full::<Bytes>::default());
//!         let resp = sender.send_request(req.unwrap()).await.unwrap();
//!         let body = resp.into_body().collect().await.unwrap().to_bytes();
//!         assert_eq!(body, "Hello");
//!     }
//!     Ok::<_, std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # What does not work inside xev, and what to use instead
//!
//! Only tokio's *traits* (and runtime-free parts such as `tokio::io::split`,
//! `tokio::io::copy`, `tokio::sync`) work in xev tasks. Everything that needs tokio's
//! runtime panics, because there is none ("there is no reactor running, must be called
//! from the context of a Tokio 1.x runtime"):
//!
//! - **tokio's timers** (`tokio::time::sleep`, `timeout`, `interval`): use
//!   [`xev::time`](crate::time) (`sleep`, `timeout`, `interval`), and [`HyperTimer`] for
//!   hyper (hyper-util's `TokioTimer` would panic the same way).
//! - **`tokio::net`** types (they register with tokio's reactor): use
//!   [`xev::net`](crate::net) wrapped in [`Compat`].
//! - **`tokio::spawn`** and **`tokio::task::spawn_local`** (they need a tokio runtime, and
//!   a `LocalSet` for the latter): use [`xev::spawn`](crate::spawn), which takes `!Send`
//!   futures; `tokio::task::spawn_blocking` → [`xev::spawn_blocking`](crate::spawn_blocking).
//!   For hyper, [`HyperExecutor`] instead of hyper-util's `TokioExecutor`.
//!
//! ```should_panic
//! // Panics: no tokio timer in an xev runtime.
//! xev::block_on(tokio::time::sleep(std::time::Duration::from_millis(1)));
//! ```
//!
//! ```
//! // The xev equivalent.
//! xev::block_on(xev::time::sleep(std::time::Duration::from_millis(1)));
//! ```
//!
//! # Every xev stream
//!
//! [`Compat`] is generic over [`CompatIo`], which every xev byte stream implements; how
//! the wrapper reads, writes and closes depends on the kind of stream:
//!
//! | stream | reads / writes | close (`poll_close` / `poll_shutdown`) |
//! |---|---|---|
//! | [`TcpStream`](crate::net::TcpStream), [`UnixStream`](crate::net::UnixStream) | `recv(2)` / `send(2)` | flushes, then shuts the writing side down: the peer reads end of stream |
//! | [`pipe::Sender`](crate::pipe::Sender), [`pipe::Receiver`](crate::pipe::Receiver), so also a child's [`ChildStdin`](crate::process::ChildStdin), [`ChildStdout`](crate::process::ChildStdout), [`ChildStderr`](crate::process::ChildStderr) | `read(2)` / `write(2)` | only flushes: to send end of file (to a child reading its stdin), flush and drop the wrapper, which closes the end |
//! | [`fs::File`](crate::fs::File) | `pread(2)` / `pwrite(2)` at offsets the wrapper tracks | only flushes |
//!
//! A pipe end goes one way: reading a `Compat<Sender>` or writing a `Compat<Receiver>`
//! fails with the kernel's `EBADF`.
//!
//! A wrapped [`File`](crate::fs::File) has a read position and a write position, both
//! starting at offset 0 whatever the file's own offset, each advanced by what it
//! transfers (a file opened with `append` writes at its end anyway). A seek
//! (`futures_io::AsyncSeek`, `tokio::io::AsyncSeek`; `Compat<File>` only) flushes, then
//! moves both positions and discards the read-ahead; `SeekFrom::Current` counts from the
//! side used last. On the epoll backend every file read and write runs on the loop's
//! thread pool (io_uring reads and writes files in the kernel).
//!
//! ```
//! # #[cfg(feature = "futures-io")] {
//! use futures_util::io::{AsyncBufReadExt, AsyncWriteExt};
//! use xev::compat::Compat;
//!
//! xev::block_on(async {
//!     let child = xev::process::spawn(
//!         std::process::Command::new("cat")
//!             .stdin(std::process::Stdio::piped())
//!             .stdout(std::process::Stdio::piped()),
//!     );
//!     let mut child = child?;
//!     let mut stdin = Compat::new(child.stdin.take().unwrap());
//!     let mut stdout = Compat::new(child.stdout.take().unwrap());
//!     stdin.write_all(b"through cat\n").await?;
//!     stdin.flush().await?;
//!     drop(stdin); // end of file for cat
//!     let mut line = String::new();
//!     stdout.read_line(&mut line).await?;
//!     assert_eq!(line, "through cat\n");
//!     assert!(child.wait().await?.success());
//!     Ok::<_, std::io::Error>(())
//! })?;
//! # }
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(feature = "futures-io")]
mod futures_io;
#[cfg(feature = "hyper")]
mod hyper;
#[cfg(feature = "hyper")]
mod hyper_timer;
mod stream;
#[cfg(feature = "tokio-io")]
mod tokio_io;

use std::rc::Rc;

#[cfg(feature = "hyper")]
pub use self::hyper::HyperExecutor;
#[cfg(feature = "hyper")]
pub use hyper_timer::{HyperSleep, HyperTimer};
pub use stream::{Compat, CompatReadHalf, CompatWriteHalf, DEFAULT_BUFFER};

use crate::rt::loop_fd::LoopFd;
pub(crate) use stream::IoKind;

pub(crate) mod sealed {
    use super::*;

    /// What [`Compat`] needs from a stream: its fd and how to read and write it.
    #[derive(Debug)]
    pub struct Parts {
        pub(crate) fd: Rc<LoopFd>,
        pub(crate) kind: IoKind,
    }

    /// Implemented through [`compat_io!`].
    pub trait CompatFd {
        /// The fd every operation names (each operation keeps a clone until it ends), and
        /// how to read and write it.
        fn compat_parts(&self) -> Parts;
    }
}

/// A stream [`Compat`] can wrap. Sealed; implemented for
/// [`TcpStream`](crate::net::TcpStream) and [`UnixStream`](crate::net::UnixStream)
/// (sockets), [`pipe::Sender`](crate::pipe::Sender) and
/// [`pipe::Receiver`](crate::pipe::Receiver) (pipes, and so a child's stdin, stdout and
/// stderr) and [`fs::File`](crate::fs::File) (positioned reads and writes); the
/// [module docs](self#every-xev-stream) say how each is read, written and closed.
pub trait CompatIo: sealed::CompatFd {}

/// `compat_io!(Type, Kind)`: [`CompatIo`] for an async type with a
/// `pub(crate) fn loop_fd(&self) -> &Rc<LoopFd>`, where `Kind` is `Socket` (recv/send,
/// close shuts the writing side down), `Stream` (read/write) or `Positioned`
/// (pread/pwrite at offsets the wrapper tracks from 0).
macro_rules! compat_io {
    ($ty:ty, $kind:ident) => {
        impl $crate::rt::compat::sealed::CompatFd for $ty {
            fn compat_parts(&self) -> $crate::rt::compat::sealed::Parts {
                $crate::rt::compat::sealed::Parts {
                    fd: self.loop_fd().clone(),
                    kind: $crate::rt::compat::IoKind::$kind,
                }
            }
        }
        impl $crate::rt::compat::CompatIo for $ty {}
    };
}

compat_io!(crate::net::TcpStream, Socket);
// Unix sockets, pipes and files are Unix-only (Windows has sockets only, for now).
#[cfg(unix)]
compat_io!(crate::net::UnixStream, Socket);
#[cfg(unix)]
compat_io!(crate::pipe::Sender, Stream);
#[cfg(unix)]
compat_io!(crate::pipe::Receiver, Stream);
#[cfg(unix)]
compat_io!(crate::fs::File, Positioned);
