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
//! the completion without allocation when they fit in four words (a `Rc` and a closure
//! that captures nothing else do). Returning [`CallbackAction::Rearm`] repeats the same
//! operation with the same userdata.
//!
//! [`Completion`]: crate::Completion
//! [`CallbackAction::Rearm`]: crate::CallbackAction::Rearm

pub mod r#async;
pub mod file;
pub mod process;
pub mod signal;
pub mod stream;
pub mod tcp;
mod timer;
pub mod udp;

pub use timer::Timer;

use std::io;

use crate::result::Error;

/// The conversions every fd-owning watcher has: from and into `OwnedFd`, `AsRawFd`,
/// `AsFd`. The type must hold its descriptor in a field named `fd`.
macro_rules! owns_fd {
    ($t:ident, $from_doc:literal) => {
        impl From<std::os::fd::OwnedFd> for $t {
            #[doc = $from_doc]
            fn from(fd: std::os::fd::OwnedFd) -> $t {
                $t { fd }
            }
        }

        impl From<$t> for std::os::fd::OwnedFd {
            fn from(w: $t) -> std::os::fd::OwnedFd {
                w.fd
            }
        }

        $crate::watcher::fd_traits!($t);
    };
}
pub(crate) use owns_fd;

/// `AsRawFd` and `AsFd` for a type whose descriptor is in a field named `fd`.
macro_rules! fd_traits {
    ($t:ident) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.fd)
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.fd)
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
