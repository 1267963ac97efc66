//! The crate's descriptor types, one set per platform, under the names Unix gives them
//! (public as [`xev::fd`](crate::fd)).
//!
//! On Unix these are std's `RawFd`, `OwnedFd`, `BorrowedFd`, `AsRawFd`, `AsFd`,
//! `FromRawFd` and `IntoRawFd`, re-exported unchanged. On Windows, where the readiness
//! backend only handles sockets, the same names stand for std's socket types
//! (`RawSocket`, `OwnedSocket`, `BorrowedSocket`), and the traits are thin ones of this
//! module implemented for every type that has std's `AsRawSocket`, `AsSocket`,
//! `FromRawSocket` or `IntoRawSocket`, so `.as_raw_fd()` and friends read the same on
//! every platform. The rest of the crate names only these, never `std::os::fd` or
//! `std::os::windows::io`, so a reader finds the platform difference here alone.
//!
//! ```
//! use xev::fd::{AsRawFd, RawFd};
//!
//! let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! let raw: RawFd = sock.as_raw_fd();
//! # let _ = raw;
//! # Ok::<(), std::io::Error>(())
//! ```

#[cfg(unix)]
pub use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

#[cfg(windows)]
pub use windows::*;

/// The number no descriptor has (`-1` on Unix, `INVALID_SOCKET` on Windows): what an
/// operation's fd is set to once its owner is gone, so it fails with `EBADF`.
#[cfg(unix)]
pub(crate) const NO_FD: RawFd = -1;
/// The number no descriptor has (`-1` on Unix, `INVALID_SOCKET` on Windows): what an
/// operation's fd is set to once its owner is gone, so it fails with `EBADF`.
#[cfg(windows)]
pub(crate) const NO_FD: RawFd = !0;

/// Whether `fd` cannot name a descriptor (negative on Unix, `INVALID_SOCKET` on Windows).
#[inline(always)]
pub(crate) fn is_no_fd(fd: RawFd) -> bool {
    #[cfg(unix)]
    return fd < 0;
    #[cfg(windows)]
    return fd == NO_FD;
}

#[cfg(windows)]
mod windows {
    use std::os::windows::io::{AsRawSocket, AsSocket, FromRawSocket, IntoRawSocket};
    pub use std::os::windows::io::{
        BorrowedSocket as BorrowedFd, OwnedSocket as OwnedFd, RawSocket as RawFd,
    };

    /// The raw socket of a value: `AsRawSocket` under the Unix name.
    pub trait AsRawFd {
        /// The raw socket (`as_raw_socket`).
        fn as_raw_fd(&self) -> RawFd;
    }

    impl<T: AsRawSocket + ?Sized> AsRawFd for T {
        fn as_raw_fd(&self) -> RawFd {
            self.as_raw_socket()
        }
    }

    /// A borrowed socket of a value: `AsSocket` under the Unix name.
    pub trait AsFd {
        /// The borrowed socket (`as_socket`).
        fn as_fd(&self) -> BorrowedFd<'_>;
    }

    impl<T: AsSocket + ?Sized> AsFd for T {
        fn as_fd(&self) -> BorrowedFd<'_> {
            self.as_socket()
        }
    }

    /// A value made from a raw socket: `FromRawSocket` under the Unix name.
    pub trait FromRawFd {
        /// The value owning `fd` (`from_raw_socket`).
        ///
        /// # Safety
        /// `fd` is an open socket that nobody else owns.
        unsafe fn from_raw_fd(fd: RawFd) -> Self;
    }

    impl<T: FromRawSocket> FromRawFd for T {
        unsafe fn from_raw_fd(fd: RawFd) -> Self {
            // SAFETY: the caller's contract is `from_raw_socket`'s.
            unsafe { T::from_raw_socket(fd) }
        }
    }

    /// A value given up as its raw socket: `IntoRawSocket` under the Unix name.
    pub trait IntoRawFd {
        /// The raw socket, now owned by the caller (`into_raw_socket`).
        fn into_raw_fd(self) -> RawFd;
    }

    impl<T: IntoRawSocket> IntoRawFd for T {
        fn into_raw_fd(self) -> RawFd {
            self.into_raw_socket()
        }
    }
}

/// `AsRawFd` and `AsFd` for a type of the crate, from `|self| raw` and `|self| borrowed`
/// expressions: std's traits on Unix; std's `AsRawSocket`/`AsSocket` on Windows (so that
/// `Rc`/`Arc` of the type have them too, and the crate's traits follow).
macro_rules! impl_as_fd {
    ($t:ty, |$s:ident| $raw:expr, $borrowed:expr) => {
        #[cfg(unix)]
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> $crate::sys::fd::RawFd {
                let $s = self;
                $raw
            }
        }

        #[cfg(unix)]
        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> $crate::sys::fd::BorrowedFd<'_> {
                let $s = self;
                $borrowed
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsRawSocket for $t {
            fn as_raw_socket(&self) -> $crate::sys::fd::RawFd {
                let $s = self;
                $raw
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsSocket for $t {
            fn as_socket(&self) -> $crate::sys::fd::BorrowedFd<'_> {
                let $s = self;
                $borrowed
            }
        }
    };
}
pub(crate) use impl_as_fd;
