//! The File watcher: write, pwrite, read, pread, queued writes and pwrites, close, and a
//! read of a write-only file (an error, not a panic). On epoll these run on the pool.

use std::cell::RefCell;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runtime_tests::{each_backend, new_loop};
use xev::watcher::file::File;
use xev::watcher::stream::WriteQueue;
use xev::{Buffer, CallbackAction, Completion, Error, Loop, ReadError, RunMode};

/// A uniquely named file under the temp dir, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(tag: &str) -> TempPath {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("xev-watcher-file-{}-{tag}-{n}.tmp", std::process::id());
        TempPath(std::env::temp_dir().join(name))
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

type Seen = Rc<RefCell<Vec<String>>>;

/// Run the loop until idle and return what the callbacks logged since the last call.
fn settle(lp: &mut Loop, seen: &Seen) -> Vec<String> {
    lp.run(RunMode::UntilDone).unwrap();
    std::mem::take(&mut *seen.borrow_mut())
}

/// A read callback that logs the bytes (as text) or the error.
fn log_read(
    s: &mut Seen,
    _: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, ReadError>,
) -> CallbackAction {
    let entry = match r {
        Ok(n) => String::from_utf8_lossy(&c.buffer().unwrap().as_slice()[..n]).into_owned(),
        Err(ReadError::Io(e)) => format!("io {:?}", e.raw_os_error()),
        Err(e) => format!("{e:?}"),
    };
    s.borrow_mut().push(entry);
    CallbackAction::Disarm
}

fn log_write(
    s: &mut Seen,
    _: &mut Loop,
    _: Pin<&mut Completion>,
    r: Result<usize, Error>,
) -> CallbackAction {
    s.borrow_mut().push(format!("{r:?}"));
    CallbackAction::Disarm
}

#[test]
fn write_pwrite_then_read_and_pread_back() {
    each_backend(|b| {
        let path = TempPath::new("rw");
        let seen: Seen = Rc::default();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);

        let f = File::create(&path.0).unwrap();
        f.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"hello world"),
            seen.clone(),
            log_write,
        );
        assert_eq!(settle(&mut lp, &seen), ["Ok(11)"]);
        f.pwrite(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"W"),
            6,
            seen.clone(),
            log_write,
        );
        assert_eq!(settle(&mut lp, &seen), ["Ok(1)"]);
        // write continues at the file position (pwrite did not move it).
        f.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"!"),
            seen.clone(),
            log_write,
        );
        assert_eq!(settle(&mut lp, &seen), ["Ok(1)"]);
        f.close(&mut lp, c.as_mut(), seen.clone(), |s, _, _, r| {
            s.borrow_mut().push(format!("close {r:?}"));
            CallbackAction::Disarm
        });
        assert_eq!(settle(&mut lp, &seen), ["close Ok(())"]);
        assert_eq!(std::fs::read(&path.0).unwrap(), b"hello World!");

        let f = File::open(&path.0).unwrap();
        f.read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(5),
            seen.clone(),
            log_read,
        );
        assert_eq!(settle(&mut lp, &seen), ["hello"]);
        f.read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(32),
            seen.clone(),
            log_read,
        );
        assert_eq!(settle(&mut lp, &seen), [" World!"]);
        f.read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(32),
            seen.clone(),
            log_read,
        );
        assert_eq!(settle(&mut lp, &seen), ["Eof"]);
        f.pread(
            &mut lp,
            c.as_mut(),
            Buffer::inline(5),
            6,
            seen.clone(),
            log_read,
        );
        assert_eq!(settle(&mut lp, &seen), ["World"]);
    });
}

#[test]
fn queued_writes_and_pwrites_land_in_order() {
    each_backend(|b| {
        let path = TempPath::new("queue");
        let seen: Seen = Rc::default();
        let q = WriteQueue::new();
        let mut lp = new_loop(b);
        let f = File::create(&path.0).unwrap();
        for part in ["1234", "5678"] {
            let s = seen.clone();
            f.queue_write(
                &mut lp,
                &q,
                Buffer::copy_from(part.as_bytes()),
                s,
                |s, _, buf, r| {
                    s.borrow_mut()
                        .push(format!("{} {r:?}", String::from_utf8_lossy(buf.as_slice())));
                    CallbackAction::Disarm
                },
            );
        }
        assert_eq!(settle(&mut lp, &seen), ["1234 Ok(4)", "5678 Ok(4)"]);
        assert_eq!(std::fs::read(&path.0).unwrap(), b"12345678");

        // pwrites at offsets, in queue order: the later one wins where they overlap.
        let big: Vec<u8> = (0..300_000).map(|i| (i % 251) as u8).collect();
        let writes: [(&[u8], u64); 3] = [(&big, 8), (b"abcd", 2), (b"XY", 3)];
        for (bytes, off) in writes {
            let s = seen.clone();
            f.queue_pwrite(
                &mut lp,
                &q,
                Buffer::from(bytes.to_vec()),
                off,
                s,
                |s, _, _, r| {
                    s.borrow_mut().push(format!("{r:?}"));
                    CallbackAction::Disarm
                },
            );
        }
        assert_eq!(settle(&mut lp, &seen), ["Ok(300000)", "Ok(4)", "Ok(2)"]);
        let mut want = b"12aXYd78".to_vec();
        want.extend_from_slice(&big);
        assert!(std::fs::read(&path.0).unwrap() == want, "file contents");
    });
}

#[test]
fn reading_a_write_only_file_is_an_error_and_the_loop_goes_on() {
    each_backend(|b| {
        let path = TempPath::new("wronly");
        let seen: Seen = Rc::default();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let f = File::create(&path.0).unwrap();
        f.read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(8),
            seen.clone(),
            log_read,
        );
        assert_eq!(
            settle(&mut lp, &seen),
            [format!("io {:?}", Some(libc::EBADF))]
        );
        f.pread(
            &mut lp,
            c.as_mut(),
            Buffer::inline(8),
            0,
            seen.clone(),
            log_read,
        );
        assert_eq!(
            settle(&mut lp, &seen),
            [format!("io {:?}", Some(libc::EBADF))]
        );
        // The loop and the file still work.
        f.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"fine"),
            seen.clone(),
            log_write,
        );
        assert_eq!(settle(&mut lp, &seen), ["Ok(4)"]);
        assert_eq!(std::fs::read(&path.0).unwrap(), b"fine");
        // And the other way round: writing a read-only file.
        let r = File::open(&path.0).unwrap();
        r.write(
            &mut lp,
            c.as_mut(),
            Buffer::copy_from(b"no"),
            seen.clone(),
            |s, _, _, r| {
                let e = match r {
                    Err(Error::Io(e)) => e.raw_os_error(),
                    other => panic!("write to a read-only file: {other:?}"),
                };
                s.borrow_mut().push(format!("io {e:?}"));
                CallbackAction::Disarm
            },
        );
        assert_eq!(
            settle(&mut lp, &seen),
            [format!("io {:?}", Some(libc::EBADF))]
        );
    });
}

#[test]
fn conversions_keep_the_descriptor() {
    each_backend(|b| {
        let path = TempPath::new("conv");
        std::fs::write(&path.0, b"converted").unwrap();
        let seen: Seen = Rc::default();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let f = File::from(std::fs::File::open(&path.0).unwrap());
        let f = File::from(std::os::fd::OwnedFd::from(f));
        f.pread(
            &mut lp,
            c.as_mut(),
            Buffer::inline(16),
            0,
            seen.clone(),
            log_read,
        );
        assert_eq!(settle(&mut lp, &seen), ["converted"]);
        let std_file = std::fs::File::from(f);
        assert_eq!(std_file.metadata().unwrap().len(), 9);
    });
}
