//! [`UnixAddr`]: the address of a Unix-domain socket (a path, an abstract name on Linux,
//! or unnamed), kept in the form the kernel reads and writes (`sockaddr_un` plus its
//! length), so the loop's operations can hand it to the kernel as it is.
//!
//! Why not std's `std::os::unix::net::SocketAddr`: it cannot be built from a raw
//! `sockaddr_un` (what accept and recvmsg produce), nor for an unnamed peer. Why not
//! socket2's `SockAddr`: it is a `sockaddr_storage` (128 bytes) of any family, so every
//! accessor would have to handle IP addresses too. `UnixAddr` converts from and to std's
//! type (see the `From`/`TryFrom` impls) and to socket2's inside the crate.

use crate::sys::fd::RawFd;
use std::ffi::OsStr;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::mem;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr as StdAddr;
use std::path::Path;

/// Offset of `sun_path` in `sockaddr_un`: the length of an unnamed address.
const PATH_OFFSET: usize = mem::offset_of!(libc::sockaddr_un, sun_path);
/// Room for the path (108 bytes on Linux).
const PATH_ROOM: usize = mem::size_of::<libc::sockaddr_un>() - PATH_OFFSET;

/// The address of a Unix-domain socket: a filesystem path, an abstract name (Linux and
/// Android), or unnamed (a socket that never bound, such as most clients and both ends
/// of a socket pair).
///
/// Build one with [`from_pathname`](Self::from_pathname),
/// `from_abstract_name` (Linux and Android) or from std's
/// [`SocketAddr`](std::os::unix::net::SocketAddr); accepts and datagram receives report
/// the peer's as one.
///
/// ```
/// use xev::UnixAddr;
///
/// let a = UnixAddr::from_pathname("/tmp/app.sock")?;
/// assert_eq!(a.as_pathname(), Some(std::path::Path::new("/tmp/app.sock")));
/// assert!(!a.is_unnamed());
/// assert!(UnixAddr::unnamed().is_unnamed());
/// // Too long for `sun_path`, or with a NUL inside: an error, not a panic.
/// assert!(UnixAddr::from_pathname("x".repeat(200)).is_err());
/// assert!(UnixAddr::from_pathname("a\0b").is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy)]
#[repr(C)]
pub struct UnixAddr {
    pub(crate) raw: libc::sockaddr_un,
    pub(crate) len: libc::socklen_t,
}

/// What an address names.
#[derive(PartialEq, Eq, Hash)]
enum Kind<'a> {
    Unnamed,
    Pathname(&'a [u8]),
    Abstract(&'a [u8]),
}

impl UnixAddr {
    fn with_path(bytes: &[u8], len: usize) -> UnixAddr {
        // SAFETY: sockaddr_un is plain data; all-zero is valid.
        let mut raw: libc::sockaddr_un = unsafe { mem::zeroed() };
        raw.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in raw.sun_path.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        UnixAddr {
            raw,
            len: len as libc::socklen_t,
        }
    }

    /// The address of the socket file at `path`.
    ///
    /// An empty path, a path with a NUL byte inside, or one of 108 bytes or more (the room
    /// in `sockaddr_un`, counting the terminating NUL) is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error.
    pub fn from_pathname(path: impl AsRef<Path>) -> io::Result<UnixAddr> {
        let bytes = path.as_ref().as_os_str().as_bytes();
        if bytes.is_empty() {
            return Err(invalid("an empty path is not a Unix socket address"));
        }
        if bytes.contains(&0) {
            return Err(invalid("paths must not contain interior null bytes"));
        }
        if bytes.len() >= PATH_ROOM {
            return Err(invalid(
                "path must be shorter than SUN_LEN (108 bytes with its NUL)",
            ));
        }
        Ok(UnixAddr::with_path(bytes, PATH_OFFSET + bytes.len() + 1))
    }

    /// The abstract name `name` (Linux's namespace of socket names that are not files:
    /// nothing to unlink, gone with the last socket). Any bytes are allowed, NUL included;
    /// more than 107 is an [`InvalidInput`](io::ErrorKind::InvalidInput) error.
    ///
    /// ```
    /// # #[cfg(target_os = "linux")] {
    /// let a = xev::UnixAddr::from_abstract_name(b"xev-doc")?;
    /// assert_eq!(a.as_abstract_name(), Some(&b"xev-doc"[..]));
    /// assert_eq!(a.as_pathname(), None);
    /// # }
    /// # Ok::<(), std::io::Error>(())
    /// ```
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn from_abstract_name(name: impl AsRef<[u8]>) -> io::Result<UnixAddr> {
        let name = name.as_ref();
        if name.len() >= PATH_ROOM {
            return Err(invalid(
                "abstract name must be shorter than SUN_LEN (108 bytes with its leading NUL)",
            ));
        }
        let mut bytes = [0u8; PATH_ROOM];
        bytes[1..=name.len()].copy_from_slice(name);
        Ok(UnixAddr::with_path(
            &bytes[..=name.len()],
            PATH_OFFSET + 1 + name.len(),
        ))
    }

    /// The unnamed address (of a socket that is not bound).
    pub fn unnamed() -> UnixAddr {
        UnixAddr::with_path(&[], PATH_OFFSET)
    }

    /// Room for the kernel to write an address into (accept, recvmsg, getpeername).
    pub(crate) fn reset_for_kernel(&mut self) {
        self.len = mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    }

    fn kind(&self) -> Kind<'_> {
        let len = (self.len as usize).min(mem::size_of::<libc::sockaddr_un>());
        if len <= PATH_OFFSET {
            return Kind::Unnamed;
        }
        // SAFETY: `c_char` and `u8` have the same size and alignment, and `sun_path` is
        // `PATH_ROOM` initialised bytes, of which we view `len - PATH_OFFSET`.
        let path: &[u8] = unsafe {
            std::slice::from_raw_parts(self.raw.sun_path.as_ptr().cast(), len - PATH_OFFSET)
        };
        if path[0] == 0 {
            if cfg!(any(target_os = "linux", target_os = "android")) {
                return Kind::Abstract(&path[1..]);
            }
            return Kind::Unnamed;
        }
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        Kind::Pathname(&path[..end])
    }

    /// True for the address of a socket that is not bound (neither a path nor a name).
    pub fn is_unnamed(&self) -> bool {
        self.kind() == Kind::Unnamed
    }

    /// The path, if this is the address of a socket file.
    pub fn as_pathname(&self) -> Option<&Path> {
        match self.kind() {
            Kind::Pathname(p) => Some(Path::new(OsStr::from_bytes(p))),
            _ => None,
        }
    }

    /// The abstract name (without its leading NUL), if this is one.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn as_abstract_name(&self) -> Option<&[u8]> {
        match self.kind() {
            Kind::Abstract(n) => Some(n),
            _ => None,
        }
    }

    /// The raw address for the kernel to read.
    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        (&self.raw as *const libc::sockaddr_un).cast()
    }

    /// The raw address for the kernel to write.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.raw as *mut libc::sockaddr_un).cast()
    }

    /// The same address as socket2's type (for bind and the synchronous connect).
    pub(crate) fn socket2_addr(&self) -> socket2::SockAddr {
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_un is one of the platform's sockaddr types, which
        // `SockAddrStorage` (a sockaddr_storage) is large and aligned enough to hold.
        unsafe { *storage.view_as::<libc::sockaddr_un>() = self.raw };
        let len = (self.len).min(mem::size_of::<libc::sockaddr_un>() as libc::socklen_t);
        // SAFETY: the storage holds an AF_UNIX address whose first `len` bytes are valid.
        unsafe { socket2::SockAddr::new(storage, len) }
    }

    /// `getsockname(2)` (`peer: false`) or `getpeername(2)` (`peer: true`) of `fd`.
    pub(crate) fn of_socket(fd: RawFd, peer: bool) -> io::Result<UnixAddr> {
        let mut a = UnixAddr::unnamed();
        a.reset_for_kernel();
        let ptr = a.as_mut_ptr();
        // SAFETY: the kernel writes at most `a.len` bytes into `a.raw`, which we own.
        let r = unsafe {
            if peer {
                libc::getpeername(fd, ptr, &mut a.len)
            } else {
                libc::getsockname(fd, ptr, &mut a.len)
            }
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        if a.len as usize >= mem::size_of::<libc::sa_family_t>()
            && a.raw.sun_family != libc::AF_UNIX as libc::sa_family_t
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a Unix-domain socket",
            ));
        }
        Ok(a)
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl fmt::Debug for UnixAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Kind::Unnamed => f.write_str("(unnamed)"),
            Kind::Pathname(p) => write!(f, "{:?} (pathname)", Path::new(OsStr::from_bytes(p))),
            Kind::Abstract(n) => write!(f, "\"{}\" (abstract)", n.escape_ascii()),
        }
    }
}

impl PartialEq for UnixAddr {
    fn eq(&self, other: &UnixAddr) -> bool {
        self.kind() == other.kind()
    }
}

impl Eq for UnixAddr {}

impl Hash for UnixAddr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind().hash(state)
    }
}

impl From<&StdAddr> for UnixAddr {
    fn from(a: &StdAddr) -> UnixAddr {
        if let Some(p) = a.as_pathname() {
            let bytes = p.as_os_str().as_bytes();
            // std checked the length and the NULs when it built the address.
            return UnixAddr::with_path(bytes, PATH_OFFSET + bytes.len() + 1);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            #[cfg(target_os = "android")]
            use std::os::android::net::SocketAddrExt;
            #[cfg(target_os = "linux")]
            use std::os::linux::net::SocketAddrExt;
            if let Some(n) = a.as_abstract_name() {
                if let Ok(addr) = UnixAddr::from_abstract_name(n) {
                    return addr;
                }
            }
        }
        UnixAddr::unnamed()
    }
}

impl From<StdAddr> for UnixAddr {
    fn from(a: StdAddr) -> UnixAddr {
        UnixAddr::from(&a)
    }
}

impl TryFrom<&UnixAddr> for StdAddr {
    type Error = io::Error;

    /// std's form of a path or abstract name; an unnamed address has none
    /// ([`InvalidInput`](io::ErrorKind::InvalidInput)).
    fn try_from(a: &UnixAddr) -> io::Result<StdAddr> {
        match a.kind() {
            Kind::Pathname(p) => StdAddr::from_pathname(Path::new(OsStr::from_bytes(p))),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Kind::Abstract(n) => {
                #[cfg(target_os = "android")]
                use std::os::android::net::SocketAddrExt;
                #[cfg(target_os = "linux")]
                use std::os::linux::net::SocketAddrExt;
                StdAddr::from_abstract_name(n)
            }
            _ => Err(invalid(
                "std cannot represent an unnamed Unix socket address",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_limits() {
        let p = UnixAddr::from_pathname("/tmp/x.sock").unwrap();
        assert_eq!(p.as_pathname(), Some(Path::new("/tmp/x.sock")));
        assert_eq!(format!("{p:?}"), "\"/tmp/x.sock\" (pathname)");
        let max = "a".repeat(PATH_ROOM - 1);
        assert!(UnixAddr::from_pathname(&max).is_ok());
        let e = UnixAddr::from_pathname("a".repeat(PATH_ROOM)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            UnixAddr::from_pathname("a\0b").unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert!(UnixAddr::from_pathname("").is_err());
        assert!(UnixAddr::unnamed().is_unnamed());
        assert_eq!(UnixAddr::unnamed(), UnixAddr::unnamed());
        // A zero length (what recvmsg reports for an unbound sender) is unnamed too.
        let mut z = p;
        z.len = 0;
        assert!(z.is_unnamed());
        let std = StdAddr::try_from(&p).unwrap();
        assert_eq!(UnixAddr::from(&std), p);
        assert!(StdAddr::try_from(&UnixAddr::unnamed()).is_err());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn abstract_names() {
        let a = UnixAddr::from_abstract_name(b"n\0x").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"n\0x"[..]));
        assert!(a.as_pathname().is_none());
        assert_ne!(a, UnixAddr::from_abstract_name(b"n").unwrap());
        assert!(UnixAddr::from_abstract_name([1u8; PATH_ROOM - 1]).is_ok());
        assert!(UnixAddr::from_abstract_name([1u8; PATH_ROOM]).is_err());
        let std = StdAddr::try_from(&a).unwrap();
        assert_eq!(UnixAddr::from(std), a);
        assert_eq!(format!("{a:?}"), "\"n\\x00x\" (abstract)");
    }
}
