//! [`DirBuilder`] and [`create_dir_all`]: create a directory, optionally with its
//! missing parents, through `mkdirat(2)` loop operations.

use std::io;
use std::path::Path;

use super::metadata::metadata;
use super::path_ops::mkdir;

/// How to create directories (as [`std::fs::DirBuilder`]): the mode of the new
/// directories and whether missing parents are created too.
///
/// ```
/// use xev::fs::DirBuilder;
///
/// xev::block_on(async {
///     let root = std::env::temp_dir().join(format!("xev-dirb-doc-{}", std::process::id()));
///     DirBuilder::new().recursive(true).mode(0o750).create(root.join("a/b")).await?;
///     assert!(xev::fs::metadata(root.join("a/b")).await?.is_dir());
///     std::fs::remove_dir_all(&root)
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DirBuilder {
    recursive: bool,
    mode: u32,
}

impl DirBuilder {
    /// Not recursive, mode `0o777` (minus the umask).
    pub fn new() -> DirBuilder {
        DirBuilder {
            recursive: false,
            mode: 0o777,
        }
    }

    /// Also create missing parents, and accept a directory that already exists.
    pub fn recursive(&mut self, recursive: bool) -> &mut DirBuilder {
        self.recursive = recursive;
        self
    }

    /// Permission bits of the new directories (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut DirBuilder {
        self.mode = mode;
        self
    }

    /// Create `path` with these options. The future does not borrow the builder.
    pub fn create(
        &self,
        path: impl AsRef<Path>,
    ) -> impl std::future::Future<Output = io::Result<()>> {
        let (recursive, mode) = (self.recursive, self.mode);
        let path = path.as_ref().to_path_buf();
        async move {
            if recursive {
                create_all(&path, mode).await
            } else {
                mkdir(&path, mode).await
            }
        }
    }
}

impl Default for DirBuilder {
    fn default() -> DirBuilder {
        DirBuilder::new()
    }
}

/// Create `path` and every missing parent (as [`std::fs::create_dir_all`]): success if
/// it exists as a directory already, also when another process creates some of the
/// directories meanwhile; an error if a component exists but is not a directory.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    create_all(path.as_ref(), 0o777).await
}

/// Walk up from `path` until a `mkdir` succeeds or finds a directory, then create the
/// remembered components downwards. A component that exists when created (a race) is
/// fine if it is a directory.
async fn create_all(path: &Path, mode: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut cur = path;
    loop {
        if cur.as_os_str().is_empty() {
            break;
        }
        match mkdir(cur, mode).await {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(cur);
                cur = cur
                    .parent()
                    .ok_or_else(|| io::Error::other("failed to create whole tree"))?;
            }
            Err(e) => {
                if is_dir(cur).await {
                    break;
                }
                return Err(e);
            }
        }
    }
    while let Some(p) = missing.pop() {
        if let Err(e) = mkdir(p, mode).await {
            if !is_dir(p).await {
                return Err(e);
            }
        }
    }
    Ok(())
}

async fn is_dir(path: &Path) -> bool {
    metadata(path).await.is_ok_and(|m| m.is_dir())
}
