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
//! Files are not sockets on Windows: the file operations of [`Op`](crate::Op) take a file
//! handle's value in their `fd` field ([`raw_file`] gives it on every platform) and
//! `Op::OpenAt` returns an [`OwnedFile`] (`OwnedFd` on Unix, `OwnedHandle` on Windows).
//! Error codes differ too: [`is_out_of_descriptors`] tells "out of descriptors" apart on
//! both.
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

/// The slot of `fd` in a per-descriptor table (the poll backend's): the number itself on
/// Unix, where descriptors are small and dense. On Windows a socket is a kernel handle
/// value, a multiple of 4 (the two low bits are tag bits the kernel ignores, so values
/// that differ only there name the same socket) that grows with the process's handle
/// count: a quarter of it keeps the table dense.
#[inline(always)]
pub(crate) fn index(fd: RawFd) -> usize {
    #[cfg(unix)]
    return fd as usize;
    #[cfg(windows)]
    return (fd >> 2) as usize;
}

/// The descriptor whose [`index`] is `i`.
#[inline(always)]
pub(crate) fn from_index(i: usize) -> RawFd {
    #[cfg(unix)]
    return i as RawFd;
    #[cfg(windows)]
    return (i as RawFd) << 2;
}

/// Whether an I/O error means the process or the system ran out of descriptors, or of
/// the memory or buffers needed to make one: an accept loop should pause (a timer, or
/// until a connection closes) rather than retry at once. The codes differ per platform:
/// `EMFILE`, `ENFILE`, `ENOBUFS` and `ENOMEM` on Unix; `WSAEMFILE`, `WSAENOBUFS`,
/// `ERROR_TOO_MANY_OPEN_FILES`, `ERROR_NOT_ENOUGH_MEMORY` and `ERROR_OUTOFMEMORY` on
/// Windows.
///
/// ```
/// use std::io;
///
/// #[cfg(unix)]
/// let full = io::Error::from_raw_os_error(libc::EMFILE);
/// #[cfg(windows)]
/// let full = io::Error::from_raw_os_error(10024); // WSAEMFILE
/// assert!(xev::fd::is_out_of_descriptors(&full));
/// assert!(!xev::fd::is_out_of_descriptors(&io::ErrorKind::ConnectionReset.into()));
/// ```
pub fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(is_fd_exhausted)
}

/// [`is_out_of_descriptors`] for a raw OS error code (positive).
pub(crate) fn is_fd_exhausted(code: i32) -> bool {
    #[cfg(unix)]
    return matches!(
        code,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    );
    #[cfg(windows)]
    {
        use windows_sys::Win32::Foundation::{
            ERROR_NOT_ENOUGH_MEMORY, ERROR_OUTOFMEMORY, ERROR_TOO_MANY_OPEN_FILES,
        };
        use windows_sys::Win32::Networking::WinSock::{WSAEMFILE, WSAENOBUFS};
        matches!(code, WSAEMFILE | WSAENOBUFS)
            || matches!(
                code as u32,
                ERROR_TOO_MANY_OPEN_FILES | ERROR_NOT_ENOUGH_MEMORY | ERROR_OUTOFMEMORY
            )
    }
}

/// Whether a raw OS error code (positive) means "not a socket": what Winsock reports for
/// a file handle (`WSAENOTSOCK`), `ENOTSOCK` on Unix.
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn is_not_socket(code: i32) -> bool {
    #[cfg(unix)]
    return code == libc::ENOTSOCK;
    #[cfg(windows)]
    return code == windows_sys::Win32::Networking::WinSock::WSAENOTSOCK;
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

    /// An open file, as [`Op::OpenAt`](crate::Op::OpenAt) gives it: a file `HANDLE`
    /// (`OwnedFd` on Unix).
    pub type OwnedFile = std::os::windows::io::OwnedHandle;

    /// The number the file operations ([`Op::Pread`](crate::Op::Pread),
    /// [`Op::Pwrite`](crate::Op::Pwrite), [`Op::Fsync`](crate::Op::Fsync), ...) take in
    /// their `fd` field for a file handle on Windows: the handle's value (`as_raw_fd` on
    /// Unix). The handle must stay open until the operation is over.
    ///
    /// ```
    /// let f = std::fs::File::open(std::env::current_exe()?)?;
    /// let op = xev::Op::Pread {
    ///     fd: xev::fd::raw_file(&f),
    ///     buf: xev::Buffer::inline(4),
    ///     offset: 0,
    /// };
    /// # let _ = op;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn raw_file(f: &impl std::os::windows::io::AsRawHandle) -> RawFd {
        f.as_raw_handle() as usize as RawFd
    }

    /// The file handle whose value [`raw_file`] gave.
    pub(crate) fn file_handle(fd: RawFd) -> std::os::windows::io::RawHandle {
        fd as usize as std::os::windows::io::RawHandle
    }
}

/// An open file, as [`Op::OpenAt`](crate::Op::OpenAt) gives it: `OwnedFd` on Unix (a file
/// `HANDLE` on Windows).
#[cfg(unix)]
pub type OwnedFile = OwnedFd;

/// The number the file operations ([`Op::Pread`](crate::Op::Pread),
/// [`Op::Pwrite`](crate::Op::Pwrite), [`Op::Fsync`](crate::Op::Fsync), ...) take in their
/// `fd` field: `as_raw_fd` on Unix (the file handle's value on Windows). The file must
/// stay open until the operation is over.
///
/// ```
/// let f = std::fs::File::open(std::env::current_exe()?)?;
/// let op = xev::Op::Pread {
///     fd: xev::fd::raw_file(&f),
///     buf: xev::Buffer::inline(4),
///     offset: 0,
/// };
/// # let _ = op;
/// # Ok::<(), std::io::Error>(())
/// ```
#[cfg(unix)]
pub fn raw_file(f: &impl AsRawFd) -> RawFd {
    f.as_raw_fd()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_index_round_trips() {
        #[cfg(unix)]
        let fds: [RawFd; 4] = [0, 1, 7, 1 << 20];
        #[cfg(windows)]
        let fds: [RawFd; 4] = [0, 4, 0x1f4, 1 << 22];
        for fd in fds {
            assert_eq!(from_index(index(fd)), fd);
        }
        // Dense on Unix: the number itself.
        #[cfg(unix)]
        assert_eq!(index(42), 42);
    }

    #[test]
    fn out_of_descriptors_by_meaning() {
        use std::io::{Error, ErrorKind};
        #[cfg(unix)]
        let (yes, no) = (
            [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM],
            [libc::EAGAIN, libc::ECONNRESET, libc::EBADF],
        );
        #[cfg(windows)]
        let (yes, no) = ([10024, 10055, 4, 8, 14], [10035, 10054, 10009]);
        for code in yes {
            assert!(
                is_out_of_descriptors(&Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        for code in no {
            assert!(
                !is_out_of_descriptors(&Error::from_raw_os_error(code)),
                "{code}"
            );
        }
        assert!(!is_out_of_descriptors(&ErrorKind::OutOfMemory.into()));
        #[cfg(unix)]
        assert!(is_not_socket(libc::ENOTSOCK) && !is_not_socket(libc::EBADF));
        #[cfg(windows)]
        assert!(is_not_socket(10038) && !is_not_socket(10009));
    }
}
