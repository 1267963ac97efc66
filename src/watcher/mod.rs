//! Watchers: libxev's typed callback API over the core loop.
//!
//! Each watcher is a thin, backend-independent type that fills in a [`Completion`] and
//! calls the user's callback with the user's own userdata type and a typed result. The
//! callback shape is always
//!
//! ```text
//! FnMut(&mut U, &mut Loop, Pin<&mut Completion>, <typed result>) -> CallbackAction
//! ```
//!
//! where `U` is the userdata moved in when the operation starts (an `Rc<RefCell<State>>`
//! to share state between several completions). Userdata plus callback are stored in
//! the completion itself when they fit in two words, one for the I/O watchers below,
//! whose callback also holds the descriptor (a `Rc` and a closure that captures nothing
//! else fit either way); up to 64 bytes they go in a block from a per-thread cache that
//! the next operation reuses, so starting one operation after another allocates nothing
//! once warmed up. Returning [`CallbackAction::Rearm`] repeats the same operation with
//! the same userdata.
//!
//! # Descriptor lifetime
//!
//! The I/O watchers ([`Stream`](stream::Stream), [`Tcp`](tcp::Tcp),
//! [`File`](file::File), [`Udp`](udp::Udp)) own their descriptor and share it with every
//! operation started through them: an operation keeps it open from its start until its
//! callback returns `Disarm` (a `Rearm` keeps it for the repeat), and a queued write
//! until its callback has run. So dropping a watcher while operations are in flight or
//! writes are queued is allowed and harmless: they finish on the file they were started
//! on, and the descriptor is closed when the last of them is done (a read waiting for
//! data keeps it open until data, EOF, a cancel, or the loop's shutdown). Its number
//! cannot be handed to another file meanwhile, so no operation ever acts on a file it was
//! not started on. ([`Signal`](signal::Signal) and [`Process`](process::Process) also
//! keep their descriptor open while a wait is in flight; [`Async`](crate::Async) has
//! none.)
//!
//! `close` cancels what is pending on the descriptor (callbacks get `Canceled`, queued
//! writes that have not started too) and closes it; operations still holding it at that
//! moment close it when they let go. Closing or unwrapping (`OwnedFd::from`) a watcher
//! inside the callback of one of its own operations is the ordinary case: that operation
//! is not in flight then and does not count; if that callback still returns `Rearm`, the
//! repeat fails with `EBADF`.
//!
//! What this does not cover: an operation built by hand with a raw descriptor number
//! ([`Op`](crate::Op), [`Loop::add`](crate::Loop::add) of a completion whose watcher
//! operation had finished). Such an operation borrows the number only: the descriptor
//! must stay open until it finishes. Breaking that rule is not memory-unsafe (the kernel
//! only ever touches memory the completion owns), but the operation may act on whatever
//! file gets the number next.
//!
//! [`Completion`]: crate::Completion
//! [`CallbackAction::Rearm`]: crate::CallbackAction::Rearm

pub mod r#async;
mod fd;
pub mod file;
pub mod process;
#[cfg(unix)]
pub mod signal;
#[cfg(all(unix, not(target_os = "linux")))]
mod signal_pipe;
pub mod stream;
pub mod tcp;
mod timer;
pub mod udp;
#[cfg(unix)]
pub mod unix;

pub use timer::Timer;

use std::io;

use crate::result::Error;

/// The conversions every I/O watcher has: from and into `OwnedFd`, `AsRawFd`, `AsFd`.
/// The type must hold its descriptor in a field `fd: Arc<SharedFd>` and nothing else.
macro_rules! owns_fd {
    ($t:ident, $from_doc:literal) => {
        impl From<$crate::sys::fd::OwnedFd> for $t {
            #[doc = $from_doc]
            fn from(fd: $crate::sys::fd::OwnedFd) -> $t {
                $t {
                    fd: $crate::watcher::fd::SharedFd::new(fd),
                }
            }
        }

        impl From<$t> for $crate::sys::fd::OwnedFd {
            /// The descriptor. If operations started through the watcher still hold it
            /// (in flight, or queued writes), they keep the original and this is a
            /// duplicate of it.
            ///
            /// # Panics
            /// In that case, if no descriptor is free for the duplicate (`EMFILE`).
            fn from(w: $t) -> $crate::sys::fd::OwnedFd {
                $crate::watcher::fd::into_owned(w.fd)
            }
        }

        $crate::watcher::fd_traits!($t);
    };
}
pub(crate) use owns_fd;

/// `AsRawFd` and `AsFd` for a type whose descriptor is in a field named `fd`.
macro_rules! fd_traits {
    ($t:ident) => {
        #[cfg(unix)]
        impl $crate::sys::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> $crate::sys::fd::RawFd {
                $crate::sys::fd::AsRawFd::as_raw_fd(&self.fd)
            }
        }

        #[cfg(unix)]
        impl $crate::sys::fd::AsFd for $t {
            fn as_fd(&self) -> $crate::sys::fd::BorrowedFd<'_> {
                $crate::sys::fd::AsFd::as_fd(&self.fd)
            }
        }

        // Windows: std's socket traits (the crate's `AsRawFd`/`AsFd` follow from them).
        #[cfg(windows)]
        impl std::os::windows::io::AsRawSocket for $t {
            fn as_raw_socket(&self) -> $crate::sys::fd::RawFd {
                $crate::sys::fd::AsRawFd::as_raw_fd(&*self.fd)
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsSocket for $t {
            fn as_socket(&self) -> $crate::sys::fd::BorrowedFd<'_> {
                $crate::sys::fd::AsFd::as_fd(&*self.fd)
            }
        }
    };
}
pub(crate) use fd_traits;

/// The error a watcher callback gets if its completion's operation was swapped for
/// another kind behind its back (with `Completion::op_mut`) before a rearm.
pub(crate) fn mismatch() -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        "the completion's operation no longer matches its watcher callback",
    ))
}
