//! `xev::fs::copy`, `read_dir` and `canonicalize`, checked against `std::fs` (the same
//! results and the same errors), on both backends (all three run on the thread pool).

use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use xev::fs;

/// A fresh directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "xev-rt-fs-copy-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` bytes of a 251-byte cycle starting at `seed` (cheap even unoptimised).
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    let cycle: Vec<u8> = (0..251).map(|i| ((i + seed) % 251) as u8).collect();
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        let n = (len - v.len()).min(cycle.len());
        v.extend_from_slice(&cycle[..n]);
    }
    v
}

/// Empty, odd sizes around page and buffer boundaries, and a file larger than one
/// 64 MiB pool job: every byte arrives, and the byte count is returned.
#[xev::test(backend = "all")]
async fn copies_every_size() -> io::Result<()> {
    let d = TempDir::new("sizes");
    for (i, len) in [0, 1, 4095, 4097, 65_537, 1_048_577, (64 << 20) + 12_345]
        .into_iter()
        .enumerate()
    {
        let (src, dst) = (d.join(&format!("src{i}")), d.join(&format!("dst{i}")));
        let data = pattern(len, i);
        std::fs::write(&src, &data)?;
        // An existing, longer destination is truncated.
        std::fs::write(&dst, vec![9u8; len + 100])?;
        assert_eq!(fs::copy(&src, &dst).await?, len as u64, "{len} bytes");
        assert!(std::fs::read(&dst)? == data, "{len} bytes: contents differ");
    }
    Ok(())
}

/// Across filesystems (tmpfs `/dev/shm` to the temp dir, an `EXDEV` for
/// `copy_file_range` on this kernel unless both are the same filesystem type with its own
/// copy method) the read/write fallback copies every byte, several buffers' worth, both
/// ways.
#[xev::test(backend = "all")]
async fn copies_across_filesystems() -> io::Result<()> {
    let shm = Path::new("/dev/shm");
    assert!(shm.is_dir(), "this test needs a tmpfs at /dev/shm");
    let d = TempDir::new("xfs");
    let on_shm = shm.join(format!("xev-rt-fs-copy-{}", std::process::id()));
    let data = pattern((3 << 20) + 7, 5);
    std::fs::write(d.join("src"), &data)?;
    let r = fs::copy(d.join("src"), &on_shm).await;
    let back = fs::copy(&on_shm, d.join("back")).await;
    let shm_data = std::fs::read(&on_shm);
    let _ = std::fs::remove_file(&on_shm);
    assert_eq!(r?, data.len() as u64);
    assert_eq!(back?, data.len() as u64);
    assert!(shm_data? == data);
    assert!(std::fs::read(d.join("back"))? == data);
    Ok(())
}

/// The permission bits are copied, to a new file and onto an existing one, as `std`.
#[xev::test(backend = "all")]
async fn permissions_are_kept() -> io::Result<()> {
    let d = TempDir::new("perm");
    let src = d.join("src");
    std::fs::write(&src, b"#!/bin/sh\n")?;
    for mode in [0o755, 0o600, 0o444] {
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(mode))?;
        let new = d.join(&format!("new{mode:o}"));
        fs::copy(&src, &new).await?;
        let existing = d.join(&format!("existing{mode:o}"));
        std::fs::write(&existing, b"old")?;
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644))?;
        fs::copy(&src, &existing).await?;
        for p in [&new, &existing] {
            let got = std::fs::metadata(p)?.permissions().mode() & 0o7777;
            assert_eq!(got, mode, "{}", p.display());
        }
    }
    Ok(())
}

/// The kind of `e`, or `None` for success, to compare with `std`.
fn kind<T>(r: &io::Result<T>) -> Option<io::ErrorKind> {
    r.as_ref().err().map(|e| e.kind())
}

/// Errors as `std::fs::copy`: missing source, source a directory, destination a
/// directory, destination in a missing directory.
#[xev::test(backend = "all")]
async fn errors_match_std() -> io::Result<()> {
    let d = TempDir::new("errors");
    let file = d.join("file");
    std::fs::write(&file, b"data")?;
    let sub = d.join("sub");
    std::fs::create_dir(&sub)?;
    let cases: [(&Path, PathBuf, io::ErrorKind); 4] = [
        (&d.join("missing"), d.join("x"), io::ErrorKind::NotFound),
        (&sub, d.join("y"), io::ErrorKind::InvalidInput),
        (&file, sub.clone(), io::ErrorKind::IsADirectory),
        (&file, d.join("no/such/dir"), io::ErrorKind::NotFound),
    ];
    for (from, to, expect) in cases {
        let ours = fs::copy(from, &to).await;
        let std = std::fs::copy(from, &to);
        assert_eq!(
            kind(&ours),
            Some(expect),
            "{} -> {}: {ours:?}",
            from.display(),
            to.display()
        );
        assert_eq!(
            kind(&ours),
            kind(&std),
            "{} -> {}",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// Copying a file onto itself (the same path, or a hard link to it) behaves as
/// `std::fs::copy`: the file is truncated first, so it ends up empty and 0 is returned.
#[xev::test(backend = "all")]
async fn copy_onto_itself_is_like_std() -> io::Result<()> {
    let d = TempDir::new("self");
    let (ours, theirs) = (d.join("ours"), d.join("theirs"));
    for p in [&ours, &theirs] {
        std::fs::write(p, b"some contents")?;
    }
    let r_ours = fs::copy(&ours, &ours).await;
    let r_std = std::fs::copy(&theirs, &theirs);
    assert_eq!(
        r_ours.as_ref().ok(),
        r_std.as_ref().ok(),
        "{r_ours:?} vs {r_std:?}"
    );
    assert_eq!(std::fs::read(&ours)?, std::fs::read(&theirs)?);

    let link = d.join("link");
    std::fs::write(&ours, b"again")?;
    std::fs::hard_link(&ours, &link)?;
    let r = fs::copy(&ours, &link).await;
    assert_eq!(r.as_ref().ok(), Some(&0), "{r:?}");
    assert!(std::fs::read(&ours)?.is_empty());
    Ok(())
}

/// A copy future dropped while its first pool job runs stops after that job: the
/// destination never grows past one 64 MiB chunk; the loop and the files stay usable.
#[xev::test(backend = "all")]
async fn a_dropped_copy_stops_after_its_chunk() -> io::Result<()> {
    const CHUNK: u64 = 64 << 20;
    let d = TempDir::new("drop");
    let (src, dst) = (d.join("src"), d.join("dst"));
    std::fs::write(&src, pattern(200 << 20, 1))?;
    let r = xev::time::timeout(Duration::from_millis(1), fs::copy(&src, &dst)).await;
    assert!(r.is_err(), "200 MiB copied within 1 ms?");
    // Wait for the job in flight to end (the size stops changing), then look.
    let size = || std::fs::metadata(&dst).map_or(0, |m| m.len());
    let mut last = u64::MAX;
    for _ in 0..100 {
        xev::time::sleep(Duration::from_millis(100)).await;
        let now = size();
        if now == last {
            break;
        }
        last = now;
    }
    assert!(
        size() <= CHUNK,
        "the copy went on after its future was dropped: {}",
        size()
    );
    // A new copy is complete.
    assert_eq!(fs::copy(&src, &dst).await?, 200 << 20);
    assert_eq!(size(), 200 << 20);
    Ok(())
}

/// name -> (is_dir, is_file, is_symlink) as std lists them.
type Listing = BTreeMap<std::ffi::OsString, (bool, bool, bool)>;

fn std_listing(dir: &Path) -> io::Result<Listing> {
    let mut m = Listing::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        m.insert(e.file_name(), (t.is_dir(), t.is_file(), t.is_symlink()));
    }
    Ok(m)
}

/// 150 entries (more than two pool batches) of every kind: the same names and types as
/// `std::fs::read_dir`, each path is the directory joined with the name, metadata on
/// demand does not follow symlinks, through `next_entry` and through `Stream`.
#[xev::test(backend = "all")]
async fn read_dir_matches_std() -> io::Result<()> {
    let d = TempDir::new("list");
    for i in 0..140 {
        std::fs::write(d.join(&format!("f{i}")), vec![0u8; i])?;
    }
    for i in 0..5 {
        std::fs::create_dir(d.join(&format!("dir{i}")))?;
    }
    for i in 0..5 {
        symlink(d.join("nowhere"), d.join(&format!("link{i}")))?;
    }
    let expect = std_listing(&d.0)?;
    assert_eq!(expect.len(), 150);

    let mut got = Listing::new();
    let mut rd = fs::read_dir(&d.0).await?;
    while let Some(e) = rd.next_entry().await? {
        assert_eq!(e.path(), d.0.join(e.file_name()));
        let t = e.file_type()?;
        let m = e.metadata().await?;
        assert_eq!(
            m.file_type().is_symlink(),
            t.is_symlink(),
            "lstat, not stat"
        );
        if let Some(i) = e.file_name().to_str().and_then(|n| n.strip_prefix('f')) {
            assert_eq!(m.len(), i.parse::<u64>().unwrap());
        }
        got.insert(e.file_name(), (t.is_dir(), t.is_file(), t.is_symlink()));
    }
    assert!(rd.next_entry().await?.is_none(), "stays at the end");
    assert_eq!(got, expect);

    let mut rd = fs::read_dir(&d.0).await?;
    let mut n = 0;
    while let Some(e) = poll_fn(|cx| Pin::new(&mut rd).poll_next(cx)).await {
        e?;
        n += 1;
    }
    assert_eq!(n, 150);

    // An empty directory.
    let empty = d.join("dir0");
    assert!(fs::read_dir(&empty).await?.next_entry().await?.is_none());
    // An entry removed after the listing: metadata is NotFound.
    let mut rd = fs::read_dir(&d.0).await?;
    let e = rd.next_entry().await?.unwrap();
    let p = e.path();
    if e.file_type()?.is_dir() {
        std::fs::remove_dir(&p)?;
    } else {
        std::fs::remove_file(&p)?;
    }
    assert_eq!(
        e.metadata().await.unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    Ok(())
}

/// Errors as `std::fs::read_dir`: a missing directory, a regular file.
#[xev::test(backend = "all")]
async fn read_dir_errors_match_std() -> io::Result<()> {
    let d = TempDir::new("listerr");
    let file = d.join("file");
    std::fs::write(&file, b"x")?;
    for (p, expect) in [
        (d.join("missing"), io::ErrorKind::NotFound),
        (file, io::ErrorKind::NotADirectory),
    ] {
        let ours = fs::read_dir(&p).await.map(|_| ());
        assert_eq!(kind(&ours), Some(expect), "{}", p.display());
        assert_eq!(kind(&ours), kind(&std::fs::read_dir(&p).map(|_| ())));
    }
    Ok(())
}

/// `canonicalize` resolves `..` and symlinks as `std` does; a missing component is
/// `NotFound`; a symlink loop is `ELOOP`.
#[xev::test(backend = "all")]
async fn canonicalize_matches_std() -> io::Result<()> {
    let d = TempDir::new("canon");
    std::fs::create_dir(d.join("real"))?;
    std::fs::write(d.join("real/file"), b"x")?;
    symlink(d.join("real"), d.join("alias"))?;
    let p = d.join("alias/../alias/./file");
    assert_eq!(fs::canonicalize(&p).await?, std::fs::canonicalize(&p)?);
    assert_eq!(
        fs::canonicalize(&p).await?,
        std::fs::canonicalize(&d.0)?.join("real/file")
    );
    let missing = d.join("alias/missing");
    assert_eq!(
        fs::canonicalize(&missing).await.unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    symlink(d.join("loop"), d.join("loop"))?;
    let e = fs::canonicalize(d.join("loop")).await.unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    Ok(())
}
