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
//! Safe code cannot cause undefined behaviour through this crate:
//!
//! - A [`Completion`] is `!Unpin` and added as `Pin<&mut Completion>`, so its address is
//!   stable. While it is Active, the loop (and possibly the kernel or a pool thread) holds
//!   its address; its `Drop` therefore aborts the process with a message rather than let
//!   that memory be freed. Dropping or [`Loop::shutdown`]-ing the loop first cancels every
//!   operation, waits until the kernel and pool have let go, and leaves every completion
//!   Dead, so the natural drop order is fine.
//! - The kernel only touches memory the completion owns: [`Buffer`]s are inline arrays or
//!   owned `Vec`s moved into the operation (borrowed memory only through the `unsafe`
//!   [`Buffer::from_raw`]), and socket addresses and message headers live inside the
//!   pinned completion. An operation's buffer is only readable while it is Dead.
//! - The loop reaches completions through raw pointers into an `UnsafeCell`, never
//!   through `&mut Completion` of its own, and only while they are Active (tracked by a
//!   registry, so a cancel naming a finished, possibly freed, completion just reports
//!   `NotFound`). During its callback a completion may be reused but not dropped.
//! - An accepted fd that no callback will see (loop shutdown) is closed; results hand
//!   fds out as `OwnedFd`.
//! - Every `unsafe` block carries a `// SAFETY:` comment.

#![warn(missing_docs)]

pub mod backend;
mod callback;
#[cfg(doctest)]
mod compile_fail;
mod completion;
mod event_loop;
mod handoff;
mod heap;
mod op;
mod queue;
mod registry;
mod result;
pub mod rt;
mod sys;
mod thread_pool;
mod timer_queue;
pub mod watcher;

pub use backend::Backend;
pub use completion::{CallbackAction, Completion, CompletionState};
pub use event_loop::{Loop, Options, RunError, RunMode, MAX_ENTRIES};
pub use op::{Buffer, CancelTarget, Op, PollEvents, INLINE_BUFFER};
pub use result::{Accepted, CancelError, Error, OpResult, ReadError, TimerTrigger};
pub use rt::{block_on, fs, net, spawn, spawn_blocking, time, JoinHandle};
#[cfg(target_os = "linux")]
pub use rt::{notify, process, signal};
pub use thread_pool::{ThreadPool, ThreadPoolOptions};
#[cfg(target_os = "linux")]
pub use watcher::process::{ExitStatus, Process};
#[cfg(target_os = "linux")]
pub use watcher::r#async::Async;
#[cfg(target_os = "linux")]
pub use watcher::signal::Signal;
pub use watcher::{
    file::File,
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
