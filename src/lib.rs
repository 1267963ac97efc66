//! # xev
//!
//! A completion-based (proactor) event loop after the Zig library
//! [libxev](https://github.com/mitchellh/libxev): you submit an operation as a
//! [`Completion`], the backend performs it, and your callback receives the finished
//! [`OpResult`] and returns [`CallbackAction::Disarm`] or [`CallbackAction::Rearm`]
//! (re-queue exactly the same operation). Nothing is allocated per operation.
//!
//! Backends ([`Backend`]): io_uring on Linux, and a readiness backend (raw epoll on Linux;
//! the `polling` crate for kqueue/IOCP elsewhere) that emulates completion semantics, with
//! a [`ThreadPool`] for blocking file work. The backend is chosen at run time, falling back
//! to epoll when io_uring is disabled.
//!
//! On top of the core, [`watcher`]s give libxev's typed callback API: [`Timer`], [`Tcp`],
//! [`Udp`], [`File`], [`Stream`] with [`WriteQueue`], and on Linux [`Process`], [`Async`]
//! and [`Signal`].
//!
//! ```
//! use std::pin::pin;
//! use xev::{CallbackAction, Completion, Loop, OpResult, Options, RunMode};
//!
//! let mut lp = Loop::new(Options::default())?;
//! let mut c = pin!(Completion::new());
//! lp.timer(c.as_mut(), 5, |lp, _c, r| {
//!     println!("timer: {r:?} at {} ms", lp.now());
//!     CallbackAction::Disarm
//! });
//! lp.run(RunMode::UntilDone)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## The async runtime
//!
//! [`rt`] runs futures on the same loop: a single-threaded executor ([`block_on`],
//! [`spawn`], `#[xev::main]`, `#[xev::test]`) in which an I/O operation is a
//! [`Completion`] wrapped in a future, whose waker fires from the completion's callback
//! (on the poll backend a socket read or write is instead one non-blocking syscall,
//! waiting for readiness with the task's waker when it would block, as in tokio).
//! Three rules follow from the kernel owning memory while an operation is in flight:
//!
//! - **Owned buffers.** A read or write takes its buffer by value ([`rt::IoBuf`],
//!   [`rt::IoBufMut`]: `Vec<u8>`, `Box<[u8]>`, `String`, `&'static [u8]`, ...) and hands
//!   it back with the result, `(io::Result<usize>, B)`, instead of borrowing `&mut [u8]`
//!   as tokio does. A single read fills a `Vec` up to its *capacity* (so
//!   `Vec::with_capacity(n)` and `vec![0; n]` both work); `read_exact` fills its *length*.
//! - **Dropping a future cancels its operation** and never blocks: the operation (and its
//!   buffer and fd) stays with the runtime until the kernel has let go, then the buffer is
//!   freed. Data a dropped read had already received is lost with it (as with any
//!   cancelled read); a connection a dropped accept produced goes to the listener's next
//!   accept; an fd a dropped open produced is closed.
//! - **An async fd outlives its operations.** Sockets and files share their fd with every
//!   operation on it, so a fd number is never reused while an orphaned operation could
//!   still touch it.
//!
//! Callbacks and futures can share one loop ([`rt::with_loop`]). The backend is chosen
//! at run time: [`Backend::default()`] honours the `XEV_BACKEND` environment variable
//! (`io_uring`, `epoll`), else picks io_uring when the kernel allows it.
//!
//! ```
//! use xev::net::{TcpListener, TcpStream};
//!
//! #[xev::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let client = TcpStream::connect(listener.local_addr()?).await?;
//!     let (server, _peer) = listener.accept().await?;
//!     client.write_all("hello").await.0?;
//!     // The buffer goes in, and comes back with the result.
//!     let (n, buf) = server.read(Vec::with_capacity(64)).await;
//!     assert_eq!(&buf[..n?], b"hello");
//!     Ok(())
//! }
//! ```
//!
//! ## Semantics shared by every backend
//!
//! - A no-op completion never calls back and is Dead after `add`.
//! - Timers live in user space (a heap) on every backend and never fire early; a
//!   rearmed timer keeps its absolute deadline and fires on the next tick.
//! - Cancelling an operation in flight calls the target back with `Canceled` and the
//!   cancel with `Ok`; cancelling something not in flight gives `CancelError::NotFound`.
//! - A read that returns 0 bytes into a non-empty buffer is [`ReadError::Eof`]; a read
//!   into an empty buffer returns `Ok(0)`.
//! - Bad input (bad fd, refused connection, ...) comes back as an error result; the loop
//!   keeps running.
//! - Callbacks queued during a tick run on the next tick.
//!
//! ## Soundness
//!
//! Safe code cannot cause undefined behaviour through this crate. The argument, rule by
//! rule (each rule has tests in `runtime-tests/`, and CI runs them under valgrind,
//! AddressSanitizer + LeakSanitizer, ThreadSanitizer for the cross-thread parts, and Miri
//! for the pure data structures):
//!
//! - **Pinned completions.** A [`Completion`] is `!Unpin` and added as
//!   `Pin<&mut Completion>`, so its address is stable. While it is Active, the loop (and
//!   possibly the kernel or a pool thread) holds its address; its `Drop` therefore aborts
//!   the process with a message rather than let that memory be freed. Dropping or
//!   [`Loop::shutdown`]-ing the loop first cancels every operation, waits until the kernel
//!   and pool have let go, leaves every completion Dead, and then drops the callbacks of
//!   the abandoned completions, so the natural drop order is fine and nothing leaks.
//! - **Owned memory.** The kernel only touches memory the completion owns: [`Buffer`]s
//!   are inline arrays or owned `Vec`s moved into the operation (borrowed memory only
//!   through the `unsafe` [`Buffer::from_raw`]), and socket addresses and message headers
//!   live inside the pinned completion. An operation's buffer is only readable while it
//!   is Dead. The async API takes owned buffers ([`rt::IoBuf`], [`rt::IoBufMut`]) and
//!   keeps them until the kernel is done, even when the future is dropped.
//! - **Registry.** The loop reaches completions through raw pointers into an
//!   `UnsafeCell`, never through `&mut Completion` of its own, and only while they are
//!   Active (tracked by a registry, or for timers in the timer queue's run by their
//!   unique run position, so a cancel naming a finished, possibly freed, completion just
//!   reports `NotFound`). During its callback a completion may be reused
//!   but not dropped. Queue and registry removals that cannot fail are checked in release
//!   builds too.
//! - **Loop ownership.** A completion Active in one loop belongs to that loop alone: it
//!   records its loop's id, and so does every [`CancelTarget`]. `add` or `timer_reset` of
//!   a completion Active in another loop panics with a message; a cancel whose target is
//!   another loop's completes with [`CancelError::OtherLoop`] and touches nothing. The
//!   `&mut Loop` that [`rt::with_loop`] and the runtime's callbacks hand out could be
//!   replaced with `mem::replace`; the runtime detects that and panics rather than go on.
//! - **fd lifetime.** An fd number is never closed while an operation that names it can
//!   still be submitted, is in the kernel, is parked on readiness, or is queued for the
//!   thread pool, orphans of dropped futures included. The async types (`TcpListener`,
//!   `TcpStream`, `UdpSocket`, `fs::File`, `Signals`, `Child`) share their fd with every
//!   operation on it, and the last one closes it after telling the loop; the watchers'
//!   queued writes keep their fd the same way. So a new file that gets the number never
//!   receives a stale write or loses data to a stale read. Pool jobs work on a duplicate
//!   of the fd. A raw `RawFd` inside an [`Op`] of the callback API is the caller's
//!   promise: closing it while the operation is in flight cannot cause undefined
//!   behaviour (the memory is the completion's), but the operation may fail with `EBADF`
//!   or act on whatever file reuses the number.
//! - **Threads.** Callbacks and futures run on the loop's thread; `Loop`, `Completion`,
//!   `Runtime`, `JoinHandle` and the async sockets are not `Send` (compile-fail tests).
//!   Anything a pool worker touches after handing back a result is kept alive by a strong
//!   reference the job owns. Threads the crate starts block every asynchronous signal.
//! - **Futures and runtimes.** An async operation belongs to the runtime that started
//!   it: its completion lives in that runtime's pool, which the future keeps alive; if
//!   that runtime is dropped first, the operation completes with `Canceled`. A `Sleep`
//!   polled on another runtime moves there. A cancelled task's future is dropped in place
//!   (never moved first), and no runtime-internal borrow is held while a waker runs.
//! - An fd that a result carries but no callback or future will see (loop shutdown, a
//!   dropped accept) is closed; results hand fds out as `OwnedFd`.
//! - Every `unsafe` block carries a `// SAFETY:` comment.

#![warn(missing_docs)]
// The docs are written for Unix and link items Windows does not have (files, processes,
// signals, Unix sockets); there those links stay plain text.
#![cfg_attr(windows, allow(rustdoc::broken_intra_doc_links))]

pub mod backend;
#[cfg(unix)]
mod buf_group;
mod callback;
#[cfg(doctest)]
mod compile_fail;
mod completion;
mod event_loop;
mod fs_op;
mod handoff;
mod heap;
mod iovec;
mod link_timeout;
#[cfg(unix)]
mod metadata;
mod op;
mod park;
mod queue;
mod registry;
mod result;
pub mod rt;
mod scratch;
mod sigpipe;
// Windows has its own `sys` (Winsock); `sys/mod.rs` is the Unix one.
pub mod sync;
#[cfg_attr(windows, path = "sys/windows.rs")]
mod sys;
mod thread_pool;
mod timer_queue;
#[cfg(unix)]
mod unix_addr;
pub mod watcher;

pub use backend::Backend;
#[cfg(unix)]
pub use buf_group::{BufferGroup, GroupBuf, MAX_GROUP_BUFFER, MAX_GROUP_BUFFERS};
pub use completion::{CallbackAction, Completion, CompletionState};
pub use event_loop::{Loop, Options, RunError, RunMode, MAX_ENTRIES};
pub use fs_op::OpPath;
#[cfg(unix)]
pub use fs_op::StatxBuf;
pub use iovec::Buffers;
#[cfg(unix)]
pub use metadata::{FileType, Metadata};
pub use op::{Buffer, CancelTarget, Op, PollEvents, INLINE_BUFFER};
pub use result::{Accepted, CancelError, Error, OpResult, ReadError, TimerTrigger};
#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
pub use rt::compat;
#[cfg(unix)]
pub use rt::fs;
#[cfg(windows)]
pub use rt::fs;
pub use rt::notify;
#[cfg(unix)]
pub use rt::pipe;
#[cfg(unix)]
pub use rt::process;
#[cfg(windows)]
pub use rt::process;
pub use rt::signal;
pub use rt::{block_on, net, spawn, spawn_blocking, time, JoinHandle};
pub use sys::fd;
pub use thread_pool::{ThreadPool, ThreadPoolOptions};
#[cfg(unix)]
pub use unix_addr::UnixAddr;
pub use watcher::file::File;
pub use watcher::process::{ExitStatus, Process};
pub use watcher::r#async::Async;
#[cfg(unix)]
pub use watcher::signal::Signal;
#[cfg(unix)]
pub use watcher::unix::Unix;
pub use watcher::{
    stream::{Stream, WriteQueue},
    tcp::Tcp,
    udp::Udp,
    Timer,
};
pub use xev_macros::{main, test};

/// The README's code examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
