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
