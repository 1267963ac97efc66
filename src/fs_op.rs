//! The heap payloads of the filesystem [`Op`](crate::Op)s: [`OpPath`] (an owned,
//! NUL-terminated path) and [`StatxBuf`] (the `statx` record the kernel fills).
//!
//! Both keep the memory the kernel reads or writes on the heap, owned by the operation:
//! it stays valid, at the same address, for the operation's whole life (a cancelled or
//! orphaned one included), and the operation itself stays small.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
#[cfg(unix)]
use std::io;
use std::path::{Path, PathBuf};

/// A path for a filesystem operation: an owned copy, NUL-terminated for the kernel.
///
/// A path with an interior NUL byte cannot be given to the kernel; it is kept as
/// *invalid* and the operation carrying it completes with `EINVAL`
/// ([`ErrorKind::InvalidInput`](io::ErrorKind::InvalidInput)) instead of running.
///
/// ```
/// use xev::OpPath;
///
/// assert!(OpPath::new("/tmp/x").is_valid());
/// assert!(!OpPath::new("bad\0path").is_valid());
/// assert_eq!(OpPath::new("/tmp/x").as_c_str().unwrap().to_bytes(), b"/tmp/x");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OpPath(Option<CString>);

impl OpPath {
    /// A copy of `path` (invalid if it contains a NUL byte).
    pub fn new(path: impl AsRef<Path>) -> OpPath {
        OpPath(CString::new(path.as_ref().as_os_str().as_encoded_bytes()).ok())
    }

    /// The empty path, which names the directory fd itself with `AT_EMPTY_PATH`.
    pub fn empty() -> OpPath {
        OpPath(Some(CString::default()))
    }

    /// Whether the path can be given to the kernel (it has no interior NUL byte).
    pub fn is_valid(&self) -> bool {
        self.0.is_some()
    }

    /// The NUL-terminated path, or `None` if it is invalid.
    pub fn as_c_str(&self) -> Option<&CStr> {
        self.0.as_deref()
    }

    /// Pointer for the kernel (valid while `self` lives), or `None` if invalid.
    #[cfg(unix)]
    pub(crate) fn ptr(&self) -> Option<*const libc::c_char> {
        self.0.as_ref().map(|c| c.as_ptr())
    }
}

/// The owned, NUL-terminated copy of `path`, or the `InvalidInput` error `std` gives for
/// a path with an interior NUL byte.
#[cfg(unix)]
pub(crate) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "file name contained an unexpected NUL byte",
        )
    })
}

impl From<CString> for OpPath {
    fn from(c: CString) -> OpPath {
        OpPath(Some(c))
    }
}

impl From<&CStr> for OpPath {
    fn from(c: &CStr) -> OpPath {
        OpPath(Some(c.to_owned()))
    }
}

impl From<&Path> for OpPath {
    fn from(p: &Path) -> OpPath {
        OpPath::new(p)
    }
}

impl From<PathBuf> for OpPath {
    fn from(p: PathBuf) -> OpPath {
        OpPath::from(p.into_os_string())
    }
}

impl From<OsString> for OpPath {
    fn from(p: OsString) -> OpPath {
        OpPath(CString::new(p.into_encoded_bytes()).ok())
    }
}

impl From<&OsStr> for OpPath {
    fn from(p: &OsStr) -> OpPath {
        OpPath::new(p)
    }
}

impl From<&str> for OpPath {
    fn from(p: &str) -> OpPath {
        OpPath::new(p)
    }
}

impl From<String> for OpPath {
    fn from(p: String) -> OpPath {
        OpPath(CString::new(p).ok())
    }
}

impl fmt::Debug for OpPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(c) => write!(f, "OpPath({c:?})"),
            None => f.write_str("OpPath(<interior NUL>)"),
        }
    }
}

#[cfg(unix)]
/// The `statx(2)` record an [`Op::Statx`](crate::Op::Statx) fills, on the heap so the
/// kernel can write it while the operation is in flight. The callback receives it
/// converted into a [`Metadata`](crate::Metadata). On macOS and the BSDs, which have no
/// `statx`, it holds the `struct stat` that `fstatat` fills instead.
pub struct StatxBuf(Box<crate::sys::StatRecord>);

#[cfg(unix)]
impl StatxBuf {
    /// A zeroed record.
    pub fn new() -> StatxBuf {
        // SAFETY: `statx` is plain integers; all-zero is a valid value.
        StatxBuf(Box::new(unsafe { std::mem::zeroed() }))
    }

    /// The record (what the last `statx` wrote, or zeros).
    pub fn get(&self) -> &crate::sys::StatRecord {
        &self.0
    }

    /// Pointer for the kernel to write the record through (valid while `self` lives).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut crate::sys::StatRecord {
        &mut *self.0
    }
}

#[cfg(unix)]
impl Default for StatxBuf {
    fn default() -> StatxBuf {
        StatxBuf::new()
    }
}

#[cfg(unix)]
impl fmt::Debug for StatxBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatxBuf").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(OpPath::new("a/b").is_valid());
        assert!(!OpPath::new("a\0b").is_valid());
        assert!(!OpPath::from(String::from("a\0b")).is_valid());
        assert!(OpPath::from(PathBuf::from("x")).is_valid());
        assert_eq!(OpPath::empty().as_c_str().unwrap().to_bytes(), b"");
        #[cfg(unix)]
        assert_eq!(
            c_path(Path::new("a\0")).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            format!("{:?}", OpPath::new("a\0")),
            "OpPath(<interior NUL>)"
        );
    }
}
