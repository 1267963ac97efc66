//! [`canonicalize`]: a path's absolute form with every symlink resolved.

use std::io;
use std::path::{Path, PathBuf};

use super::blocking;

/// The absolute form of `path` with `.`, `..` and every symlink resolved (as
/// [`std::fs::canonicalize`], `realpath(3)`), on the blocking pool. Every component must
/// exist: a missing one is `NotFound`.
///
/// ```
/// xev::block_on(async {
///     let here = xev::fs::canonicalize(".").await?;
///     assert!(here.is_absolute());
///     assert_eq!(here, std::env::current_dir()?.canonicalize()?);
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// When awaited outside a runtime.
pub async fn canonicalize(path: impl AsRef<Path>) -> io::Result<PathBuf> {
    let path = path.as_ref().to_path_buf();
    blocking(move || std::fs::canonicalize(path)).await
}
