//! [`OpenOptions`]: how to open a file, turned into `openat(2)` flags the way `std` does,
//! and opened with one loop operation (`OPENAT` on io_uring).

use std::future::Future;
use std::io;
use std::path::Path;

use super::path_ops::open_at;
use super::File;

/// How to open a file, as [`std::fs::OpenOptions`] (whose rules about which
/// combinations are valid apply unchanged), with an async [`open`](Self::open).
///
/// ```
/// use xev::fs::OpenOptions;
///
/// xev::block_on(async {
///     let path = std::env::temp_dir().join(format!("xev-opts-doc-{}", std::process::id()));
///     let f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).await?;
///     f.write_all_at(&b"log line\n"[..], 0).await.0?;
///     assert!(OpenOptions::new().write(true).create_new(true).open(&path).await.is_err());
///     std::fs::remove_file(&path)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl OpenOptions {
    /// All options off (open with neither read nor write access fails, as in `std`).
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.read = read;
        self
    }

    /// Open for writing.
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.write = write;
        self
    }

    /// Open in append mode (`O_APPEND`; implies write access).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.append = append;
        self
    }

    /// Truncate an existing file to length 0 (needs write access).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.truncate = truncate;
        self
    }

    /// Create the file if it does not exist (needs write or append access).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }

    /// Create the file, failing with `ErrorKind::AlreadyExists` if it exists (atomic;
    /// `create` and `truncate` are then ignored).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// The permission bits of a newly created file (default `0o666`, minus the umask).
    pub fn mode(&mut self, mode: u32) -> &mut OpenOptions {
        self.mode = mode;
        self
    }

    /// Extra `open(2)` flags (`libc::O_NOATIME`, `libc::O_DIRECT`, ...); the access mode
    /// bits are ignored.
    pub fn custom_flags(&mut self, flags: i32) -> &mut OpenOptions {
        self.custom_flags = flags;
        self
    }

    /// Open `path` with these options: one `openat(2)` loop operation (native on
    /// io_uring, on the loop's thread pool on the epoll backend). The path is copied
    /// first, and the future does not borrow the options (so
    /// `OpenOptions::new().read(true).open(p)` may be stored).
    ///
    /// Errors as `std`: `NotFound`, `PermissionDenied`, `AlreadyExists` (`create_new`),
    /// `InvalidInput` for an invalid combination of options or a path with a NUL byte.
    /// Dropping the future before it completes leaks nothing: a descriptor opened anyway
    /// is closed when the operation ends.
    pub fn open(&self, path: impl AsRef<Path>) -> impl Future<Output = io::Result<File>> {
        let flags = self.flags();
        let mode = self.mode;
        let path = path.as_ref().to_path_buf();
        async move { open_at(&path, flags?, mode).await.map(File::from) }
    }

    /// The `openat(2)` flags, or `std`'s `InvalidInput` error for a combination it
    /// refuses.
    fn flags(&self) -> io::Result<i32> {
        let invalid = |msg: &'static str| Err(io::Error::new(io::ErrorKind::InvalidInput, msg));
        let access = match (self.read, self.write, self.append) {
            (true, false, false) => libc::O_RDONLY,
            (false, true, false) => libc::O_WRONLY,
            (true, true, false) => libc::O_RDWR,
            (false, _, true) => libc::O_WRONLY | libc::O_APPEND,
            (true, _, true) => libc::O_RDWR | libc::O_APPEND,
            (false, false, false) => {
                return invalid("must specify at least one of read, write, or append access")
            }
        };
        match (self.write, self.append) {
            (true, false) => {}
            (false, false) => {
                if self.truncate || self.create || self.create_new {
                    return invalid(
                        "creating or truncating a file requires write or append access",
                    );
                }
            }
            (_, true) => {
                if self.truncate && !self.create_new {
                    return invalid(
                        "creating or truncating a file requires write or append access",
                    );
                }
            }
        }
        let creation = match (self.create, self.truncate, self.create_new) {
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
        };
        Ok(access | creation | (self.custom_flags & !libc::O_ACCMODE))
    }
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_follow_std() {
        let kind = |o: &OpenOptions| o.flags().unwrap_err().kind();
        assert_eq!(kind(&OpenOptions::new()), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(OpenOptions::new().read(true).create(true)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(OpenOptions::new().append(true).truncate(true)),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            OpenOptions::new().read(true).flags().unwrap(),
            libc::O_RDONLY
        );
        assert_eq!(
            OpenOptions::new()
                .append(true)
                .create(true)
                .flags()
                .unwrap(),
            libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT
        );
        assert_eq!(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_RDWR)
                .flags()
                .unwrap(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW
        );
    }
}
