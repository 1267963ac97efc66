//! The filesystem operations of the callback API (`Op::OpenAt`, `Statx`, `RenameAt`,
//! `UnlinkAt`, `MkdirAt`, `LinkAt`, `SymlinkAt`, `Fsync`, `Fallocate`, `Ftruncate`) and
//! the watcher `File`'s sync / set_len / allocate / metadata, on every backend: each
//! operation's result and its errors (missing path, not a directory, directory not
//! empty, exists, permission denied, interior NUL, bad fd), metadata compared with
//! `std::fs::metadata`, and that an opened fd nobody receives is closed.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_tests::{dup_high, each_backend, new_loop, only, record, results};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

/// A fresh directory under the temp dir, removed (with its contents) on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "xev-fs-ops-{}-{tag}-{}",
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

/// Start `op`, run the loop until it is done, and return the one result.
fn run(lp: &mut Loop, op: Op) -> OpResult {
    let r = results();
    let mut c = pin!(Completion::new());
    lp.start(c.as_mut(), op, record(&r));
    lp.run(RunMode::UntilDone).unwrap();
    only(&r)
}

/// The unit result of a path or file operation.
fn unit(r: OpResult) -> Result<(), Error> {
    match r {
        OpResult::RenameAt(r)
        | OpResult::UnlinkAt(r)
        | OpResult::MkdirAt(r)
        | OpResult::LinkAt(r)
        | OpResult::SymlinkAt(r)
        | OpResult::Fsync(r)
        | OpResult::Fallocate(r)
        | OpResult::Ftruncate(r) => r,
        other => panic!("not a unit filesystem result: {other:?}"),
    }
}

/// The errno of a failed unit result.
fn errno(r: Result<(), Error>) -> i32 {
    match r {
        Err(Error::Io(e)) => e.raw_os_error().expect("an OS error"),
        other => panic!("expected an OS error, got {other:?}"),
    }
}

fn open_at(
    lp: &mut Loop,
    dir: Option<RawFd>,
    path: impl Into<OpPath>,
    flags: i32,
    mode: u32,
) -> Result<OwnedFd, Error> {
    match run(
        lp,
        Op::OpenAt {
            dir,
            path: path.into(),
            flags,
            mode,
        },
    ) {
        OpResult::OpenAt(r) => r,
        other => panic!("{other:?}"),
    }
}

fn statx(
    lp: &mut Loop,
    dir: Option<RawFd>,
    path: impl Into<OpPath>,
    flags: i32,
) -> Result<Metadata, Error> {
    let op = Op::Statx {
        dir,
        path: path.into(),
        flags,
        mask: libc::STATX_BASIC_STATS | libc::STATX_BTIME,
        buf: StatxBuf::new(),
    };
    match run(lp, op) {
        OpResult::Statx(r) => r.map(|m| *m),
        other => panic!("{other:?}"),
    }
}

fn open_errno(r: Result<OwnedFd, Error>) -> i32 {
    errno(r.map(drop))
}

fn mkdir(lp: &mut Loop, path: &Path, mode: u32) -> Result<(), Error> {
    unit(run(
        lp,
        Op::MkdirAt {
            dir: None,
            path: path.into(),
            mode,
        },
    ))
}

fn unlink(lp: &mut Loop, path: &Path, remove_dir: bool) -> Result<(), Error> {
    unit(run(
        lp,
        Op::UnlinkAt {
            dir: None,
            path: path.into(),
            remove_dir,
        },
    ))
}

fn rename(lp: &mut Loop, old: &Path, new: &Path, flags: u32) -> Result<(), Error> {
    unit(run(
        lp,
        Op::RenameAt {
            old_dir: None,
            old: old.into(),
            new_dir: None,
            new: new.into(),
            flags,
        },
    ))
}

fn umask() -> u32 {
    // SAFETY: umask only swaps the process's mask; it is put back at once.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m as u32
    }
}

#[test]
fn open_creates_reads_and_reports_errors() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("open");
        let p = d.join("f");
        let flags = libc::O_CREAT | libc::O_EXCL | libc::O_RDWR;
        let fd = open_at(&mut lp, None, p.as_path(), flags, 0o640).expect("create");
        // O_CLOEXEC is always added.
        // SAFETY: F_GETFD on an fd we own.
        let fdflags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(fdflags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640 & !umask());
        std::fs::write(&p, b"contents").unwrap();
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "contents");

        // O_EXCL on an existing file, a missing file, a path through a file, a dir
        // opened for writing.
        assert_eq!(
            open_errno(open_at(&mut lp, None, p.as_path(), flags, 0o600)),
            libc::EEXIST
        );
        let missing = d.join("missing");
        assert_eq!(
            open_errno(open_at(&mut lp, None, missing.as_path(), libc::O_RDONLY, 0)),
            libc::ENOENT
        );
        let through = p.join("x");
        assert_eq!(
            open_errno(open_at(&mut lp, None, through.as_path(), libc::O_RDONLY, 0)),
            libc::ENOTDIR
        );
        assert_eq!(
            open_errno(open_at(&mut lp, None, d.0.as_path(), libc::O_WRONLY, 0)),
            libc::EISDIR
        );

        // Relative to a directory fd.
        let dir = std::fs::File::open(&d.0).unwrap();
        let rel = open_at(&mut lp, Some(dir.as_raw_fd()), "f", libc::O_RDONLY, 0).expect("openat");
        assert_eq!(std::fs::File::from(rel).metadata().unwrap().ino(), m.ino());
        // A relative path against a non-directory fd.
        let file = std::fs::File::open(&p).unwrap();
        assert_eq!(
            open_errno(open_at(
                &mut lp,
                Some(file.as_raw_fd()),
                "f",
                libc::O_RDONLY,
                0
            )),
            libc::ENOTDIR
        );
        // A closed directory fd.
        let closed = dup_high(dir.as_raw_fd(), 900).as_raw_fd();
        assert_eq!(
            open_errno(open_at(&mut lp, Some(closed), "f", libc::O_RDONLY, 0)),
            libc::EBADF
        );
        // O_TRUNC empties it, O_APPEND appends.
        drop(
            open_at(
                &mut lp,
                None,
                p.as_path(),
                libc::O_WRONLY | libc::O_TRUNC,
                0,
            )
            .unwrap(),
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let a = open_at(
            &mut lp,
            None,
            p.as_path(),
            libc::O_WRONLY | libc::O_APPEND,
            0,
        )
        .unwrap();
        let mut a = std::fs::File::from(a);
        std::io::Write::write_all(&mut a, b"ab").unwrap();
        std::io::Write::write_all(&mut a, b"cd").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcd");
    });
}

#[test]
fn interior_nul_is_einval_for_every_path_op() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("nul");
        let bad = || OpPath::new("a\0b");
        let good = || OpPath::new(d.join("g"));
        assert_eq!(
            open_errno(open_at(&mut lp, None, bad(), libc::O_RDONLY, 0)),
            libc::EINVAL
        );
        match statx(&mut lp, None, bad(), 0) {
            Err(Error::Io(e)) => {
                assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
                assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
            }
            other => panic!("{other:?}"),
        }
        let ops = vec![
            Op::RenameAt {
                old_dir: None,
                old: good(),
                new_dir: None,
                new: bad(),
                flags: 0,
            },
            Op::RenameAt {
                old_dir: None,
                old: bad(),
                new_dir: None,
                new: good(),
                flags: 0,
            },
            Op::UnlinkAt {
                dir: None,
                path: bad(),
                remove_dir: false,
            },
            Op::MkdirAt {
                dir: None,
                path: bad(),
                mode: 0o755,
            },
            Op::LinkAt {
                old_dir: None,
                old: good(),
                new_dir: None,
                new: bad(),
                flags: 0,
            },
            Op::SymlinkAt {
                target: bad(),
                dir: None,
                link: good(),
            },
            Op::SymlinkAt {
                target: good(),
                dir: None,
                link: bad(),
            },
        ];
        for op in ops {
            let name = format!("{op:?}");
            assert_eq!(errno(unit(run(&mut lp, op))), libc::EINVAL, "{name}");
        }
        // Nothing was created by any of them.
        assert_eq!(std::fs::read_dir(&d.0).unwrap().count(), 0);
    });
}

#[test]
fn statx_matches_std_metadata() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("statx");
        let p = d.join("f");
        std::fs::write(&p, vec![7u8; 12_345]).unwrap();
        let link = d.join("l");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        let std_m = std::fs::metadata(&p).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let by_path = statx(&mut lp, None, p.as_path(), 0).unwrap();
        let by_fd = statx(
            &mut lp,
            Some(f.as_raw_fd()),
            OpPath::empty(),
            libc::AT_EMPTY_PATH,
        )
        .unwrap();
        let through_link = statx(&mut lp, None, link.as_path(), 0).unwrap();
        for m in [&by_path, &by_fd, &through_link] {
            assert!(m.is_file() && !m.is_dir() && !m.is_symlink());
            assert!(m.file_type().is_file());
            assert_eq!(m.len(), 12_345);
            assert_eq!(m.ino(), std_m.ino());
            assert_eq!(m.dev(), std_m.dev());
            assert_eq!(m.nlink(), std_m.nlink());
            assert_eq!(m.uid(), std_m.uid());
            assert_eq!(m.gid(), std_m.gid());
            assert_eq!(m.mode(), std_m.mode());
            assert_eq!(m.rdev(), std_m.rdev());
            assert_eq!(m.blksize(), std_m.blksize());
            assert_eq!(m.blocks(), std_m.blocks());
            assert_eq!(m.permissions(), std_m.permissions());
            assert_eq!(m.modified().unwrap(), std_m.modified().unwrap());
            assert_eq!(m.accessed().unwrap(), std_m.accessed().unwrap());
            assert_eq!(m.ctime(), std_m.ctime());
            assert_eq!(m.ctime_nsec(), std_m.ctime_nsec());
            match std_m.created() {
                Ok(t) => assert_eq!(m.created().unwrap(), t),
                Err(_) => assert!(m.created().is_err()),
            }
        }
        // Not following the link describes the link itself.
        let l = statx(&mut lp, None, link.as_path(), libc::AT_SYMLINK_NOFOLLOW).unwrap();
        let std_l = std::fs::symlink_metadata(&link).unwrap();
        assert!(l.is_symlink() && !l.is_file());
        assert_eq!(l.ino(), std_l.ino());
        assert_eq!(l.len(), std_l.len());
        // A directory.
        let dm = statx(&mut lp, None, d.0.as_path(), 0).unwrap();
        assert!(dm.is_dir());
        assert_eq!(dm.ino(), std::fs::metadata(&d.0).unwrap().ino());
        // Errors: missing, through a file, a dangling link, a closed fd.
        let e = |r: Result<Metadata, Error>| errno(r.map(drop));
        assert_eq!(
            e(statx(&mut lp, None, d.join("missing").as_path(), 0)),
            libc::ENOENT
        );
        assert_eq!(
            e(statx(&mut lp, None, p.join("x").as_path(), 0)),
            libc::ENOTDIR
        );
        let dangling = d.join("dangling");
        std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
        assert_eq!(e(statx(&mut lp, None, dangling.as_path(), 0)), libc::ENOENT);
        assert!(
            statx(&mut lp, None, dangling.as_path(), libc::AT_SYMLINK_NOFOLLOW)
                .unwrap()
                .is_symlink()
        );
        let closed = dup_high(f.as_raw_fd(), 910).as_raw_fd();
        assert_eq!(
            e(statx(
                &mut lp,
                Some(closed),
                OpPath::empty(),
                libc::AT_EMPTY_PATH
            )),
            libc::EBADF
        );
    });
}

#[test]
fn mkdir_unlink_and_rename() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("dirs");
        let sub = d.join("sub");
        mkdir(&mut lp, &sub, 0o750).unwrap();
        let m = std::fs::metadata(&sub).unwrap();
        assert!(m.is_dir());
        assert_eq!(m.mode() & 0o777, 0o750 & !umask());
        assert_eq!(errno(mkdir(&mut lp, &sub, 0o755)), libc::EEXIST);
        assert_eq!(
            errno(mkdir(&mut lp, &d.join("no/such"), 0o755)),
            libc::ENOENT
        );
        let file = d.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(errno(mkdir(&mut lp, &file.join("x"), 0o755)), libc::ENOTDIR);

        // unlink: a dir as a file, a file as a dir, a non-empty dir, a missing one.
        assert_eq!(errno(unlink(&mut lp, &sub, false)), libc::EISDIR);
        assert_eq!(errno(unlink(&mut lp, &file, true)), libc::ENOTDIR);
        std::fs::write(sub.join("inner"), b"y").unwrap();
        assert_eq!(errno(unlink(&mut lp, &sub, true)), libc::ENOTEMPTY);
        assert_eq!(
            errno(unlink(&mut lp, &d.join("missing"), false)),
            libc::ENOENT
        );

        // rename: a file, onto an existing file (replaced), RENAME_NOREPLACE, a file
        // over a directory, a directory over a non-empty directory, a missing source.
        let moved = d.join("moved");
        rename(&mut lp, &file, &moved, 0).unwrap();
        assert!(!file.exists());
        assert_eq!(std::fs::read(&moved).unwrap(), b"x");
        let other = d.join("other");
        std::fs::write(&other, b"z").unwrap();
        rename(&mut lp, &other, &moved, 0).unwrap();
        assert_eq!(std::fs::read(&moved).unwrap(), b"z");
        std::fs::write(&other, b"w").unwrap();
        assert_eq!(
            errno(rename(&mut lp, &other, &moved, libc::RENAME_NOREPLACE)),
            libc::EEXIST
        );
        assert_eq!(errno(rename(&mut lp, &other, &sub, 0)), libc::EISDIR);
        let empty = d.join("empty");
        std::fs::create_dir(&empty).unwrap();
        let e = errno(rename(&mut lp, &empty, &sub, 0));
        assert!(e == libc::ENOTEMPTY || e == libc::EEXIST, "errno {e}");
        assert_eq!(
            errno(rename(&mut lp, &d.join("missing"), &moved, 0)),
            libc::ENOENT
        );
        // An empty directory replaces an empty one.
        std::fs::remove_file(sub.join("inner")).unwrap();
        rename(&mut lp, &empty, &sub, 0).unwrap();
        assert!(!empty.exists());

        // The happy unlinks.
        unlink(&mut lp, &moved, false).unwrap();
        unlink(&mut lp, &sub, true).unwrap();
        assert!(!moved.exists() && !sub.exists());

        // Relative to directory fds.
        let dir = std::fs::File::open(&d.0).unwrap();
        let dfd = Some(dir.as_raw_fd());
        unit(run(
            &mut lp,
            Op::MkdirAt {
                dir: dfd,
                path: "rel".into(),
                mode: 0o700,
            },
        ))
        .unwrap();
        unit(run(
            &mut lp,
            Op::RenameAt {
                old_dir: dfd,
                old: "rel".into(),
                new_dir: dfd,
                new: "rel2".into(),
                flags: 0,
            },
        ))
        .unwrap();
        unit(run(
            &mut lp,
            Op::UnlinkAt {
                dir: dfd,
                path: "rel2".into(),
                remove_dir: true,
            },
        ))
        .unwrap();
        assert!(!d.join("rel").exists() && !d.join("rel2").exists());
    });
}

#[test]
fn hard_and_symbolic_links() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("links");
        let p = d.join("f");
        std::fs::write(&p, b"data").unwrap();
        let hard = d.join("hard");
        let link = |lp: &mut Loop, old: &Path, new: &Path| {
            unit(run(
                lp,
                Op::LinkAt {
                    old_dir: None,
                    old: old.into(),
                    new_dir: None,
                    new: new.into(),
                    flags: 0,
                },
            ))
        };
        link(&mut lp, &p, &hard).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().nlink(), 2);
        assert_eq!(
            std::fs::metadata(&hard).unwrap().ino(),
            std::fs::metadata(&p).unwrap().ino()
        );
        assert_eq!(errno(link(&mut lp, &p, &hard)), libc::EEXIST);
        assert_eq!(
            errno(link(&mut lp, &d.join("missing"), &d.join("h2"))),
            libc::ENOENT
        );
        // A hard link to a directory is not allowed.
        assert_eq!(errno(link(&mut lp, &d.0, &d.join("h3"))), libc::EPERM);

        let sym = d.join("sym");
        let symlink = |lp: &mut Loop, target: &Path, l: &Path| {
            unit(run(
                lp,
                Op::SymlinkAt {
                    target: target.into(),
                    dir: None,
                    link: l.into(),
                },
            ))
        };
        symlink(&mut lp, Path::new("f"), &sym).unwrap();
        assert_eq!(std::fs::read_link(&sym).unwrap(), Path::new("f"));
        assert_eq!(std::fs::read(&sym).unwrap(), b"data");
        assert_eq!(errno(symlink(&mut lp, Path::new("f"), &sym)), libc::EEXIST);
        assert_eq!(
            errno(symlink(&mut lp, Path::new("f"), &d.join("no/such"))),
            libc::ENOENT
        );
        // A dangling target is fine: it is stored, not resolved.
        symlink(&mut lp, Path::new("nowhere"), &d.join("dangling")).unwrap();
        assert!(std::fs::symlink_metadata(d.join("dangling"))
            .unwrap()
            .file_type()
            .is_symlink());
    });
}

#[test]
fn fsync_fallocate_ftruncate() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("sync");
        let p = d.join("f");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let fd = f.as_raw_fd();
        std::io::Write::write_all(&mut &f, b"hello").unwrap();
        for data_only in [false, true] {
            unit(run(&mut lp, Op::Fsync { fd, data_only })).unwrap();
        }
        unit(run(&mut lp, Op::Ftruncate { fd, len: 3 })).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hel");
        unit(run(&mut lp, Op::Ftruncate { fd, len: 10_000 })).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 10_000);
        // fallocate: mode 0 extends, KEEP_SIZE does not, a zero length is EINVAL.
        match unit(run(
            &mut lp,
            Op::Fallocate {
                fd,
                mode: 0,
                offset: 0,
                len: 1 << 20,
            },
        )) {
            Ok(()) => {
                assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
                unit(run(
                    &mut lp,
                    Op::Fallocate {
                        fd,
                        mode: libc::FALLOC_FL_KEEP_SIZE,
                        offset: 1 << 20,
                        len: 1 << 20,
                    },
                ))
                .unwrap();
                assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
                assert!(std::fs::metadata(&p).unwrap().blocks() * 512 >= 2 << 20);
            }
            // A filesystem without fallocate (the temp dir on tmpfs has it).
            Err(e) => assert_eq!(errno(Err(e)), libc::EOPNOTSUPP),
        }
        assert_eq!(
            errno(unit(run(
                &mut lp,
                Op::Fallocate {
                    fd,
                    mode: 0,
                    offset: 0,
                    len: 0
                }
            ))),
            libc::EINVAL
        );

        // A read-only fd cannot be resized or allocated.
        let ro = std::fs::File::open(&p).unwrap();
        let rfd = ro.as_raw_fd();
        let e = errno(unit(run(&mut lp, Op::Ftruncate { fd: rfd, len: 1 })));
        assert!(e == libc::EINVAL || e == libc::EBADF, "errno {e}");
        assert_eq!(
            errno(unit(run(
                &mut lp,
                Op::Fallocate {
                    fd: rfd,
                    mode: 0,
                    offset: 0,
                    len: 1
                }
            ))),
            libc::EBADF
        );
        // A closed fd.
        let closed = dup_high(fd, 920).as_raw_fd();
        for op in [
            Op::Fsync {
                fd: closed,
                data_only: false,
            },
            Op::Fsync {
                fd: closed,
                data_only: true,
            },
            Op::Ftruncate { fd: closed, len: 0 },
            Op::Fallocate {
                fd: closed,
                mode: 0,
                offset: 0,
                len: 1,
            },
        ] {
            assert_eq!(errno(unit(run(&mut lp, op))), libc::EBADF);
        }
        // fsync of a directory works.
        let dir = std::fs::File::open(&d.0).unwrap();
        unit(run(
            &mut lp,
            Op::Fsync {
                fd: dir.as_raw_fd(),
                data_only: false,
            },
        ))
        .unwrap();
    });
}

#[test]
fn permission_denied() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("perm");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            let locked = d.join("locked");
            std::fs::create_dir(&locked).unwrap();
            std::fs::write(locked.join("f"), b"x").unwrap();
            std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
                .unwrap();
            let inside = locked.join("f");
            assert_eq!(
                open_errno(open_at(&mut lp, None, inside.as_path(), libc::O_RDONLY, 0)),
                libc::EACCES
            );
            assert_eq!(
                errno(statx(&mut lp, None, inside.as_path(), 0).map(drop)),
                libc::EACCES
            );
            assert_eq!(
                errno(mkdir(&mut lp, &locked.join("d"), 0o755)),
                libc::EACCES
            );
            assert_eq!(errno(unlink(&mut lp, &inside, false)), libc::EACCES);
            std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        } else {
            // Root passes permission checks; a sysfs file without a write method and a
            // procfs file that cannot be unlinked still refuse.
            if Path::new("/sys/kernel/notes").exists() {
                let r = open_at(&mut lp, None, "/sys/kernel/notes", libc::O_WRONLY, 0);
                assert_eq!(open_errno(r), libc::EACCES);
            }
            assert_eq!(
                errno(unlink(&mut lp, Path::new("/proc/version"), false)),
                libc::EPERM
            );
        }
    });
}

/// How many of this process's descriptors refer to `path`.
fn fds_open_on(path: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l == path)
        .count()
}

#[test]
fn an_opened_fd_nobody_receives_is_closed() {
    each_backend(|b| {
        let d = TempDir::new("orphan");
        let p = d.join("f");
        std::fs::write(&p, b"x").unwrap();
        for _ in 0..10 {
            // The loop is dropped with the open in flight (submitted to the ring, or queued
            // on or running in the pool): the fd it produces is closed, never handed out.
            let mut lp = new_loop(b);
            let mut c = Box::pin(Completion::new());
            let op = Op::OpenAt {
                dir: None,
                path: p.as_path().into(),
                flags: libc::O_RDONLY,
                mode: 0,
            };
            lp.start(c.as_mut(), op, |_, _, _| {
                panic!("the callback must not run")
            });
            drop(lp);
            drop(c);
        }
        // A callback that drops its result closes the fd too.
        let mut lp = new_loop(b);
        let r = results();
        let mut c = pin!(Completion::new());
        let op = Op::OpenAt {
            dir: None,
            path: p.as_path().into(),
            flags: libc::O_RDONLY,
            mode: 0,
        };
        lp.start(c.as_mut(), op, record(&r));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&r), OpResult::OpenAt(Ok(_))));
        assert_eq!(fds_open_on(&p), 0, "an orphaned open leaked its descriptor");
    });
}

#[test]
fn rearmed_statx_refreshes_its_record() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("rearm");
        let p = d.join("f");
        std::fs::write(&p, b"1").unwrap();
        let p2 = p.clone();
        let lens = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let l = lens.clone();
        let mut c = pin!(Completion::new());
        let op = Op::Statx {
            dir: None,
            path: p.as_path().into(),
            flags: 0,
            mask: libc::STATX_SIZE,
            buf: StatxBuf::new(),
        };
        lp.start(c.as_mut(), op, move |_, _, r| {
            let OpResult::Statx(Ok(m)) = r else {
                panic!("{r:?}")
            };
            l.borrow_mut().push(m.len());
            if m.len() < 3 {
                std::fs::write(&p2, vec![0u8; m.len() as usize + 1]).unwrap();
                CallbackAction::Rearm
            } else {
                CallbackAction::Disarm
            }
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*lens.borrow(), vec![1, 2, 3]);
        // A statx through a fresh completion sees the final size.
        let op = Op::Statx {
            dir: None,
            path: p.as_path().into(),
            flags: 0,
            mask: libc::STATX_SIZE,
            buf: StatxBuf::new(),
        };
        let OpResult::Statx(Ok(m)) = run(&mut lp, op) else {
            panic!()
        };
        assert_eq!(m.len(), 3);
    });
}

#[test]
fn watcher_file_sync_set_len_allocate_metadata() {
    each_backend(|b| {
        let mut lp = new_loop(b);
        let d = TempDir::new("watcher");
        let p = d.join("f");
        let f = xev::File::from(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .unwrap(),
        );
        let out = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
        let mut c = pin!(Completion::new());
        let o = out.clone();
        f.set_len(&mut lp, c.as_mut(), 4096, (), move |_, _, _, r| {
            o.borrow_mut().push(format!("set_len {r:?}"));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
        for data_only in [false, true] {
            let o = out.clone();
            f.sync(&mut lp, c.as_mut(), data_only, (), move |_, _, _, r| {
                o.borrow_mut().push(format!("sync {r:?}"));
                CallbackAction::Disarm
            });
            lp.run(RunMode::UntilDone).unwrap();
        }
        let o = out.clone();
        f.allocate(&mut lp, c.as_mut(), libc::FALLOC_FL_KEEP_SIZE, 0, 65536, (), move |_, _, _, r| {
            o.borrow_mut().push(format!("allocate {}", r.is_ok() || matches!(&r, Err(Error::Io(e)) if e.raw_os_error() == Some(libc::EOPNOTSUPP))));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        let o = out.clone();
        f.metadata(&mut lp, c.as_mut(), (), move |_, _, _, r| {
            let m = r.expect("metadata");
            o.borrow_mut()
                .push(format!("metadata {} {}", m.len(), m.is_file()));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(
            *out.borrow(),
            [
                "set_len Ok(())",
                "sync Ok(())",
                "sync Ok(())",
                "allocate true",
                "metadata 4096 true"
            ]
        );
        // On a read-only watcher file: set_len fails, metadata works.
        let ro = xev::File::open(&p).unwrap();
        let o = out.clone();
        ro.set_len(&mut lp, c.as_mut(), 1, (), move |_, _, _, r| {
            o.borrow_mut().push(format!("ro {}", r.is_err()));
            CallbackAction::Disarm
        });
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(out.borrow().last().unwrap(), "ro true");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 4096);
    });
}
