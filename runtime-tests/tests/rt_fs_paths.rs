//! `xev::fs` path operations and file metadata/size/sync on both backends: open
//! semantics as `std` (NotFound, PermissionDenied, AlreadyExists, InvalidInput, append,
//! truncate, create_new), `metadata` / `symlink_metadata` / `File::metadata` against
//! `std`, rename, remove_file, remove_dir, create_dir, create_dir_all (also racing with
//! itself), DirBuilder, hard_link, symlink, try_exists, sync_all/sync_data, set_len,
//! allocate; a dropped open leaks no fd; and opening does not need the thread pool on
//! io_uring.

use std::future::{poll_fn, Future};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use xev::fs::{self, DirBuilder, File, OpenOptions};

/// A fresh directory under the temp dir, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "xev-rt-fs-paths-{}-{tag}-{}",
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

fn kind<T: std::fmt::Debug>(r: io::Result<T>) -> ErrorKind {
    r.expect_err("expected an error").kind()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[xev::test(backend = "all")]
async fn open_follows_std_semantics() -> io::Result<()> {
    let d = TempDir::new("open");
    let p = d.join("f");
    assert_eq!(kind(File::open(&p).await), ErrorKind::NotFound);
    assert_eq!(
        kind(File::create(d.join("no/such")).await),
        ErrorKind::NotFound
    );
    assert_eq!(kind(File::open("bad\0path").await), ErrorKind::InvalidInput);
    assert_eq!(
        kind(File::create(d.join("a\0")).await),
        ErrorKind::InvalidInput
    );

    // create_new: once, then AlreadyExists.
    let mut new = OpenOptions::new();
    new.write(true).create_new(true).mode(0o600);
    let f = new.open(&p).await?;
    f.write_all_at(&b"0123456789"[..], 0).await.0?;
    f.close().await?;
    assert_eq!(std::fs::metadata(&p)?.mode() & 0o777, 0o600 & !umask());
    assert_eq!(kind(new.open(&p).await), ErrorKind::AlreadyExists);

    // Invalid combinations, refused as std refuses them (std agrees on each).
    let combos = [
        (false, false, false, false),
        (true, false, true, false),
        (true, false, false, true),
        (false, true, false, true),
    ];
    for (read, append, create, truncate) in combos {
        let mut o = OpenOptions::new();
        o.read(read)
            .append(append)
            .create(create)
            .truncate(truncate);
        let std_err = std::fs::OpenOptions::new()
            .read(read)
            .append(append)
            .create(create)
            .truncate(truncate)
            .open(&p);
        assert_eq!(kind(std_err), ErrorKind::InvalidInput);
        assert_eq!(kind(o.open(&p).await), ErrorKind::InvalidInput, "{o:?}");
    }

    // append writes at the end whatever the offset; truncate empties.
    let a = OpenOptions::new().append(true).open(&p).await?;
    a.write_all_at(&b"ab"[..], 0).await.0?;
    a.close().await?;
    assert_eq!(std::fs::read(&p)?, b"0123456789ab");
    let t = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .await?;
    assert_eq!(t.metadata().await?.len(), 0);
    drop(t);
    // create without truncate keeps the contents.
    std::fs::write(&p, b"keep")?;
    let c = OpenOptions::new().write(true).create(true).open(&p).await?;
    assert_eq!(c.metadata().await?.len(), 4);
    drop(c);

    // A directory: readable, not writable; a path through a file.
    let dir = File::open(&d.0).await?;
    assert!(dir.metadata().await?.is_dir());
    assert_eq!(kind(File::create(&d.0).await), ErrorKind::IsADirectory);
    assert_eq!(
        kind(File::open(p.join("x")).await),
        ErrorKind::NotADirectory
    );

    // The descriptor is close-on-exec.
    let f = File::open(&p).await?;
    // SAFETY: F_GETFD on an open fd.
    let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETFD) };
    assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    Ok(())
}

fn umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; it is put back at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

#[xev::test(backend = "all")]
async fn permission_denied() -> io::Result<()> {
    let d = TempDir::new("perm");
    if !is_root() {
        let locked = d.join("locked");
        std::fs::create_dir(&locked)?;
        std::fs::write(locked.join("f"), b"x")?;
        std::fs::set_permissions(&locked, PermissionsExt::from_mode(0o000))?;
        let inside = locked.join("f");
        let results = [
            kind(File::open(&inside).await),
            kind(fs::metadata(&inside).await),
            kind(fs::try_exists(&inside).await),
            kind(fs::create_dir(locked.join("d")).await),
            kind(fs::remove_file(&inside).await),
            kind(fs::rename(&inside, d.join("out")).await),
        ];
        std::fs::set_permissions(&locked, PermissionsExt::from_mode(0o755))?;
        assert_eq!(results, [ErrorKind::PermissionDenied; 6]);
    } else {
        // Root passes permission checks: a sysfs file without a write method and a
        // procfs file that cannot be removed still refuse.
        if Path::new("/sys/kernel/notes").exists() {
            let r = OpenOptions::new()
                .write(true)
                .open("/sys/kernel/notes")
                .await;
            assert_eq!(kind(r), ErrorKind::PermissionDenied);
        }
        assert_eq!(
            kind(fs::remove_file("/proc/version").await),
            ErrorKind::PermissionDenied
        );
    }
    Ok(())
}

fn same(m: &xev::fs::Metadata, s: &std::fs::Metadata) {
    assert_eq!(m.len(), s.len());
    assert_eq!(m.is_file(), s.is_file());
    assert_eq!(m.is_dir(), s.is_dir());
    assert_eq!(m.is_symlink(), s.is_symlink());
    assert_eq!(m.file_type().is_file(), s.file_type().is_file());
    assert_eq!(m.permissions(), s.permissions());
    assert_eq!(m.mode(), s.mode());
    assert_eq!(m.ino(), s.ino());
    assert_eq!(m.dev(), s.dev());
    assert_eq!(m.nlink(), s.nlink());
    assert_eq!(m.uid(), s.uid());
    assert_eq!(m.gid(), s.gid());
    assert_eq!(m.blksize(), s.blksize());
    assert_eq!(m.blocks(), s.blocks());
    assert_eq!(m.modified().unwrap(), s.modified().unwrap());
    assert_eq!(m.accessed().unwrap(), s.accessed().unwrap());
    match s.created() {
        Ok(t) => assert_eq!(m.created().unwrap(), t),
        Err(_) => assert!(m.created().is_err()),
    }
}

#[xev::test(backend = "all")]
async fn metadata_matches_std() -> io::Result<()> {
    let d = TempDir::new("meta");
    let p = d.join("f");
    std::fs::write(&p, vec![1u8; 5000])?;
    let link = d.join("link");
    std::os::unix::fs::symlink("f", &link)?;
    same(&fs::metadata(&p).await?, &std::fs::metadata(&p)?);
    same(&fs::metadata(&link).await?, &std::fs::metadata(&link)?);
    same(
        &fs::symlink_metadata(&link).await?,
        &std::fs::symlink_metadata(&link)?,
    );
    assert!(fs::symlink_metadata(&link).await?.is_symlink());
    same(&fs::metadata(&d.0).await?, &std::fs::metadata(&d.0)?);
    let f = File::open(&p).await?;
    same(&f.metadata().await?, &std::fs::metadata(&p)?);

    assert_eq!(
        kind(fs::metadata(d.join("missing")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(fs::metadata(p.join("x")).await),
        ErrorKind::NotADirectory
    );
    assert_eq!(kind(fs::metadata("a\0b").await), ErrorKind::InvalidInput);
    let dangling = d.join("dangling");
    std::os::unix::fs::symlink("nowhere", &dangling)?;
    assert_eq!(kind(fs::metadata(&dangling).await), ErrorKind::NotFound);
    assert!(fs::symlink_metadata(&dangling).await?.is_symlink());

    assert!(fs::try_exists(&p).await?);
    assert!(fs::try_exists(&d.0).await?);
    assert!(!fs::try_exists(d.join("missing")).await?);
    assert!(!fs::try_exists(&dangling).await?);
    assert_eq!(
        kind(fs::try_exists(p.join("x")).await),
        ErrorKind::NotADirectory
    );
    Ok(())
}

#[xev::test(backend = "all")]
async fn rename_and_remove() -> io::Result<()> {
    let d = TempDir::new("rename");
    let (a, b) = (d.join("a"), d.join("b"));
    std::fs::write(&a, b"A")?;
    fs::rename(&a, &b).await?;
    assert!(!a.exists());
    assert_eq!(std::fs::read(&b)?, b"A");
    std::fs::write(&a, b"new")?;
    fs::rename(&a, &b).await?; // replaces b
    assert_eq!(std::fs::read(&b)?, b"new");
    assert_eq!(kind(fs::rename(&a, &b).await), ErrorKind::NotFound);
    let sub = d.join("sub");
    std::fs::create_dir(&sub)?;
    std::fs::write(sub.join("x"), b"x")?;
    assert_eq!(kind(fs::rename(&b, &sub).await), ErrorKind::IsADirectory);
    let empty = d.join("empty");
    std::fs::create_dir(&empty)?;
    let k = kind(fs::rename(&empty, &sub).await);
    assert!(
        matches!(k, ErrorKind::DirectoryNotEmpty | ErrorKind::AlreadyExists),
        "{k:?}"
    );
    assert_eq!(kind(fs::rename(&b, "bad\0").await), ErrorKind::InvalidInput);

    assert_eq!(kind(fs::remove_file(&sub).await), ErrorKind::IsADirectory);
    assert_eq!(kind(fs::remove_dir(&b).await), ErrorKind::NotADirectory);
    assert_eq!(
        kind(fs::remove_dir(&sub).await),
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(
        kind(fs::remove_file(d.join("missing")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(fs::remove_dir(d.join("missing")).await),
        ErrorKind::NotFound
    );
    fs::remove_file(sub.join("x")).await?;
    fs::remove_dir(&sub).await?;
    fs::remove_file(&b).await?;
    assert!(!sub.exists() && !b.exists());
    // remove_file removes a symlink, not its target.
    std::fs::write(&a, b"t")?;
    let l = d.join("l");
    std::os::unix::fs::symlink(&a, &l)?;
    fs::remove_file(&l).await?;
    assert!(a.exists() && !l.exists());
    Ok(())
}

#[xev::test(backend = "all")]
async fn create_dirs() -> io::Result<()> {
    let d = TempDir::new("mkdir");
    let one = d.join("one");
    fs::create_dir(&one).await?;
    assert!(std::fs::metadata(&one)?.is_dir());
    assert_eq!(kind(fs::create_dir(&one).await), ErrorKind::AlreadyExists);
    assert_eq!(
        kind(fs::create_dir(d.join("x/y")).await),
        ErrorKind::NotFound
    );
    assert_eq!(kind(fs::create_dir("bad\0").await), ErrorKind::InvalidInput);

    let deep = d.join("a/b/c/d");
    fs::create_dir_all(&deep).await?;
    assert!(std::fs::metadata(&deep)?.is_dir());
    fs::create_dir_all(&deep).await?; // exists: fine
    fs::create_dir_all(d.join("a/b/./c/../c2")).await?;
    assert!(d.join("a/b/c2").is_dir());
    fs::create_dir_all("").await?; // as std
    let file = d.join("file");
    std::fs::write(&file, b"x")?;
    assert_eq!(
        kind(fs::create_dir_all(&file).await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(fs::create_dir_all(file.join("sub")).await),
        ErrorKind::NotADirectory
    );

    // DirBuilder: mode, recursive or not.
    let mut b = DirBuilder::new();
    b.mode(0o700);
    b.create(d.join("m")).await?;
    assert_eq!(
        std::fs::metadata(d.join("m"))?.mode() & 0o777,
        0o700 & !umask()
    );
    assert_eq!(kind(b.create(d.join("m/n/o")).await), ErrorKind::NotFound);
    b.recursive(true).create(d.join("m/n/o")).await?;
    assert_eq!(
        std::fs::metadata(d.join("m/n/o"))?.mode() & 0o777,
        0o700 & !umask()
    );
    b.create(d.join("m/n/o")).await?;

    // Racing create_dir_all calls on overlapping trees all succeed.
    let race = d.join("race");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = race.join(format!("x/y/z{}", i % 3));
        tasks.push(xev::spawn(async move { fs::create_dir_all(&p).await }));
    }
    for t in tasks {
        t.await.expect("task")?;
    }
    for i in 0..3 {
        assert!(race.join(format!("x/y/z{i}")).is_dir());
    }
    Ok(())
}

#[xev::test(backend = "all")]
async fn links() -> io::Result<()> {
    let d = TempDir::new("links");
    let p = d.join("f");
    std::fs::write(&p, b"data")?;
    let h = d.join("h");
    fs::hard_link(&p, &h).await?;
    assert_eq!(fs::metadata(&p).await?.nlink(), 2);
    assert_eq!(std::fs::metadata(&h)?.ino(), std::fs::metadata(&p)?.ino());
    assert_eq!(kind(fs::hard_link(&p, &h).await), ErrorKind::AlreadyExists);
    assert_eq!(
        kind(fs::hard_link(d.join("missing"), d.join("h2")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(fs::hard_link(&p, "bad\0").await),
        ErrorKind::InvalidInput
    );

    let s = d.join("s");
    fs::symlink("f", &s).await?;
    assert_eq!(std::fs::read_link(&s)?, Path::new("f"));
    assert_eq!(fs::read(&s).await?, b"data");
    assert_eq!(kind(fs::symlink("f", &s).await), ErrorKind::AlreadyExists);
    assert_eq!(
        kind(fs::symlink("f", d.join("no/such")).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(fs::symlink("bad\0", d.join("s2")).await),
        ErrorKind::InvalidInput
    );
    fs::symlink("nowhere", d.join("dangling")).await?;
    assert!(!fs::try_exists(d.join("dangling")).await?);
    Ok(())
}

#[xev::test(backend = "all")]
async fn sync_set_len_and_allocate() -> io::Result<()> {
    let d = TempDir::new("size");
    let p = d.join("f");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .open(&p)
        .await?;
    f.write_all_at(&b"hello world"[..], 0).await.0?;
    f.sync_all().await?;
    f.sync_data().await?;
    f.set_len(5).await?;
    assert_eq!(std::fs::read(&p)?, b"hello");
    f.set_len(8192).await?;
    assert_eq!(f.metadata().await?.len(), 8192);
    assert_eq!(kind(f.set_len(u64::MAX).await), ErrorKind::InvalidInput);
    match f.allocate(0, 1 << 20).await {
        Ok(()) => {
            assert_eq!(f.metadata().await?.len(), 1 << 20);
            f.fallocate(libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20)
                .await?;
            let m = f.metadata().await?;
            assert_eq!(m.len(), 1 << 20);
            assert!(m.blocks() * 512 >= 2 << 20);
            assert_eq!(kind(f.allocate(0, 0).await), ErrorKind::InvalidInput);
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP)),
    }
    // A read-only file cannot be resized or allocated; it can be synced.
    let ro = File::open(&p).await?;
    assert!(ro.set_len(1).await.is_err());
    assert!(ro.allocate(0, 1).await.is_err());
    ro.sync_all().await?;
    assert_eq!(std::fs::metadata(&p)?.len(), f.metadata().await?.len());
    // A sync whose future and file are dropped mid-flight still leaves things usable.
    let mut s = Box::pin(ro.sync_data());
    poll_once(s.as_mut()).await;
    drop(s);
    drop(ro);
    f.sync_all().await?;
    Ok(())
}

/// Poll `fut` once with the task's context (starting it).
async fn poll_once<F: Future + ?Sized>(mut fut: Pin<&mut F>) {
    poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await
}

/// How many of this process's descriptors refer to `path`.
fn fds_open_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l == path)
        .count()
}

#[xev::test(backend = "all")]
async fn dropped_open_futures_leak_no_fd() -> io::Result<()> {
    let d = TempDir::new("leak");
    let p = d.join("f");
    std::fs::write(&p, b"x")?;
    for round in 0..40 {
        let mut fut: Pin<Box<dyn Future<Output = io::Result<File>>>> = match round % 3 {
            0 => Box::pin(File::open(&p)),
            1 => Box::pin(OpenOptions::new().read(true).write(true).open(&p)),
            _ => Box::pin(File::create(&p)),
        };
        poll_once(fut.as_mut()).await;
        if round % 2 == 1 {
            // Give the open time to finish, so its descriptor exists when the future
            // is dropped and must be closed by the runtime.
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(fut);
    }
    let mut r = Box::pin(fs::read(&p));
    poll_once(r.as_mut()).await;
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fds_open_on(&p) > 0 {
        assert!(
            Instant::now() < deadline,
            "a dropped open leaked its descriptor"
        );
        xev::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// With its one pool thread blocked, a runtime on io_uring still opens, stats, resizes,
/// syncs and renames files (none of it uses the pool); on epoll, where they run on the
/// pool, they wait for the thread and finish once it is free.
#[test]
fn file_ops_do_not_need_the_pool_on_io_uring() {
    for backend in xev::Backend::available() {
        let d = TempDir::new("nopool");
        let p = d.join("f");
        std::fs::write(&p, b"pool").unwrap();
        let rt = xev::rt::Builder::new()
            .backend(backend)
            .blocking_threads(1)
            .build()
            .unwrap();
        rt.block_on(async {
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let (started_tx, started) = std::sync::mpsc::channel::<()>();
            let busy = xev::spawn_blocking(move || {
                started_tx.send(()).unwrap();
                wait.recv().unwrap();
            });
            started.recv().unwrap();
            let work = async {
                let f = OpenOptions::new().read(true).write(true).open(&p).await?;
                assert_eq!(f.metadata().await?.len(), 4);
                f.set_len(2).await?;
                f.sync_all().await?;
                fs::rename(&p, d.join("g")).await?;
                fs::create_dir(d.join("dir")).await?;
                io::Result::Ok(())
            };
            let mut work = std::pin::pin!(work);
            // Generous on io_uring (a loaded machine); on epoll the ops cannot finish at
            // all while the pool thread is held, so a short wait shows it.
            let wait = match backend {
                xev::Backend::IoUring => Duration::from_secs(10),
                _ => Duration::from_millis(300),
            };
            let timed = xev::time::timeout(wait, work.as_mut()).await;
            if backend == xev::Backend::IoUring {
                timed
                    .expect("io_uring file ops waited for the busy pool")
                    .unwrap();
            } else {
                // Still waiting for the pool thread: free it, then they complete.
                assert!(
                    timed.is_err(),
                    "{backend:?}: file ops finished without the pool"
                );
            }
            release.send(()).unwrap();
            busy.await.unwrap();
            if backend != xev::Backend::IoUring {
                work.await.unwrap();
            }
        });
        assert_eq!(std::fs::read(d.join("g")).unwrap(), b"po");
        assert!(d.join("dir").is_dir());
    }
}
