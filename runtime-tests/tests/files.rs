//! Regular files through the loop: write, pwrite, read, pread, close; errors; and the
//! thread pool the poll backend uses for them.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::ThreadId;

use runtime_tests::{dup_high, each_backend};
use xev::*;
// The glob also brings the `xev::test` attribute; plain `#[test]` means the built-in one.
use core::prelude::v1::test;

type Results = Rc<RefCell<Vec<(OpResult, ThreadId)>>>;

fn results() -> Results {
    Rc::new(RefCell::new(Vec::new()))
}

/// Records each result with the thread the callback ran on.
fn record(r: &Results) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
    let r = r.clone();
    move |_, _, res| {
        r.borrow_mut().push((res, std::thread::current().id()));
        CallbackAction::Disarm
    }
}

/// The single result, checking it was delivered on this (the loop's) thread.
fn only(r: &Results) -> OpResult {
    let mut v = r.borrow_mut();
    assert_eq!(v.len(), 1, "expected exactly one callback, got {v:?}");
    let (res, tid) = v.pop().unwrap();
    assert_eq!(
        tid,
        std::thread::current().id(),
        "callback ran off the loop thread"
    );
    res
}

/// A uniquely named file under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "xev-files-{}-{}-{}.tmp",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        );
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }

    fn open_rw(&self) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.0)
            .unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A loop on `b` with its own thread pool, so the test can see whether it was used.
fn loop_with_pool(b: Backend) -> (Loop, ThreadPool) {
    let pool = ThreadPool::new(ThreadPoolOptions::default());
    let lp = Loop::new(Options {
        backend: Some(b),
        thread_pool: Some(pool.clone()),
        ..Default::default()
    })
    .unwrap();
    (lp, pool)
}

#[test]
fn write_pwrite_read_pread_roundtrip() {
    each_backend(|b| {
        let tmp = TempFile::new("rt");
        let mut file = tmp.open_rw();
        let fd = file.as_raw_fd();
        let res = results();
        let mut c = pin!(Completion::new());
        let (mut lp, pool) = loop_with_pool(b);

        let run = |lp: &mut Loop, c: Pin<&mut Completion>, op: Op| -> OpResult {
            lp.start(c, op, record(&res));
            lp.run(RunMode::UntilDone).unwrap();
            only(&res)
        };

        // write advances the file position.
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Write {
                fd,
                buf: Buffer::copy_from(b"hello "),
            },
        );
        assert!(matches!(r, OpResult::Write(Ok(6))), "{r:?}");
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Write {
                fd,
                buf: Buffer::copy_from(b"world"),
            },
        );
        assert!(matches!(r, OpResult::Write(Ok(5))), "{r:?}");
        // pwrite at an offset does not move it.
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Pwrite {
                fd,
                buf: Buffer::copy_from(b"WORLD"),
                offset: 6,
            },
        );
        assert!(matches!(r, OpResult::Pwrite(Ok(5))), "{r:?}");
        assert_eq!(file.stream_position().unwrap(), 11);
        // read at the current position (the end): EOF.
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Read {
                fd,
                buf: Buffer::inline(16),
            },
        );
        assert!(matches!(r, OpResult::Read(Err(ReadError::Eof))), "{r:?}");
        // pread reads what both writes left.
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Pread {
                fd,
                buf: Buffer::inline(32),
                offset: 0,
            },
        );
        assert!(matches!(r, OpResult::Pread(Ok(11))), "{r:?}");
        assert_eq!(&c.buffer().unwrap().as_slice()[..11], b"hello WORLD");
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Pread {
                fd,
                buf: Buffer::inline(3),
                offset: 2,
            },
        );
        assert!(matches!(r, OpResult::Pread(Ok(3))), "{r:?}");
        assert_eq!(c.buffer().unwrap().as_slice(), b"llo");
        // pread past the end: EOF; zero-length pread: Ok(0).
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Pread {
                fd,
                buf: Buffer::inline(4),
                offset: 100,
            },
        );
        assert!(matches!(r, OpResult::Pread(Err(ReadError::Eof))), "{r:?}");
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Pread {
                fd,
                buf: Buffer::inline(0),
                offset: 0,
            },
        );
        assert!(matches!(r, OpResult::Pread(Ok(0))), "{r:?}");
        // read from the start after a seek, in two pieces.
        file.seek(SeekFrom::Start(0)).unwrap();
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Read {
                fd,
                buf: Buffer::inline(6),
            },
        );
        assert!(matches!(r, OpResult::Read(Ok(6))), "{r:?}");
        assert_eq!(c.buffer().unwrap().as_slice(), b"hello ");
        let r = run(
            &mut lp,
            c.as_mut(),
            Op::Read {
                fd,
                buf: Buffer::inline(16),
            },
        );
        assert!(matches!(r, OpResult::Read(Ok(5))), "{r:?}");
        assert_eq!(&c.buffer().unwrap().as_slice()[..5], b"WORLD");

        assert_eq!(std::fs::read(&tmp.0).unwrap(), b"hello WORLD");
        match b {
            Backend::IoUring => assert_eq!(pool.threads(), 0, "io_uring used the pool"),
            _ => assert!(
                pool.threads() >= 1,
                "file I/O did not go to the thread pool"
            ),
        }
    });
}

#[test]
fn many_concurrent_file_ops_with_large_buffers() {
    each_backend(|b| {
        const CHUNK: usize = 64 * 1024;
        const N: usize = 16;
        let tmp = TempFile::new("big");
        let file = tmp.open_rw();
        let fd = file.as_raw_fd();
        let res = results();
        let mut cs: Vec<Pin<Box<Completion>>> =
            (0..N).map(|_| Box::pin(Completion::new())).collect();
        let (mut lp, _pool) = loop_with_pool(b);
        for (i, c) in cs.iter_mut().enumerate() {
            let op = Op::Pwrite {
                fd,
                buf: Buffer::from(vec![i as u8; CHUNK]),
                offset: (i * CHUNK) as u64,
            };
            lp.start(c.as_mut(), op, record(&res));
        }
        lp.run(RunMode::UntilDone).unwrap();
        {
            let v = res.borrow();
            assert_eq!(v.len(), N);
            for (r, tid) in v.iter() {
                assert!(matches!(r, OpResult::Pwrite(Ok(CHUNK))), "{r:?}");
                assert_eq!(*tid, std::thread::current().id());
            }
        }
        res.borrow_mut().clear();
        for (i, c) in cs.iter_mut().enumerate().rev() {
            let op = Op::Pread {
                fd,
                buf: Buffer::from(vec![0xEE; CHUNK]),
                offset: (i * CHUNK) as u64,
            };
            lp.start(c.as_mut(), op, record(&res));
        }
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(res.borrow().len(), N);
        for (i, c) in cs.iter_mut().enumerate() {
            let buf = c
                .as_mut()
                .take_op()
                .unwrap()
                .buffer_mut()
                .map(|b| b.as_slice().to_vec());
            let buf = buf.unwrap();
            assert!(buf.iter().all(|&v| v == i as u8), "chunk {i} corrupted");
        }
        assert_eq!(std::fs::metadata(&tmp.0).unwrap().len(), (N * CHUNK) as u64);
        drop(lp);
        drop(cs);
    });
}

#[test]
fn read_on_a_write_only_file_is_ebadf_and_loop_continues() {
    each_backend(|b| {
        let tmp = TempFile::new("wo");
        std::fs::write(&tmp.0, b"some bytes").unwrap();
        let wo = OpenOptions::new().write(true).open(&tmp.0).unwrap();
        let fd = wo.as_raw_fd();
        let res = results();
        let mut c = pin!(Completion::new());
        let (mut lp, _pool) = loop_with_pool(b);
        for op in [
            Op::Read {
                fd,
                buf: Buffer::inline(8),
            },
            Op::Pread {
                fd,
                buf: Buffer::inline(8),
                offset: 0,
            },
        ] {
            lp.start(c.as_mut(), op, record(&res));
            lp.run(RunMode::UntilDone).unwrap();
            match only(&res) {
                OpResult::Read(Err(ReadError::Io(e))) | OpResult::Pread(Err(ReadError::Io(e))) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}")
                }
                other => panic!("read on a write-only file gave {other:?}"),
            }
        }
        // A following op works: write through the same fd, and a timer.
        lp.start(
            c.as_mut(),
            Op::Pwrite {
                fd,
                buf: Buffer::copy_from(b"SOME"),
                offset: 0,
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Pwrite(Ok(4))));
        assert_eq!(std::fs::read(&tmp.0).unwrap(), b"SOME bytes");
        lp.timer(c.as_mut(), 1, record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(
            only(&res),
            OpResult::Timer(TimerTrigger::Expiration)
        ));
    });
}

#[test]
fn write_on_a_read_only_file_is_ebadf() {
    each_backend(|b| {
        let tmp = TempFile::new("ro");
        std::fs::write(&tmp.0, b"keep").unwrap();
        let ro = File::open(&tmp.0).unwrap();
        let res = results();
        let mut c = pin!(Completion::new());
        let (mut lp, _pool) = loop_with_pool(b);
        lp.start(
            c.as_mut(),
            Op::Write {
                fd: ro.as_raw_fd(),
                buf: Buffer::copy_from(b"x"),
            },
            record(&res),
        );
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Write(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read(&tmp.0).unwrap(), b"keep");
    });
}

#[test]
fn close_op_on_a_file() {
    each_backend(|b| {
        let tmp = TempFile::new("close");
        let file = tmp.open_rw();
        // A high number no other test here allocates, so it cannot be reused meanwhile.
        let base = if b == Backend::IoUring { 4200 } else { 4300 };
        let high = dup_high(file.as_raw_fd(), base);
        let raw = high.as_raw_fd();
        drop(file);
        let res = results();
        let mut c = pin!(Completion::new());
        let (mut lp, _pool) = loop_with_pool(b);
        lp.start(c.as_mut(), Op::close(File::from(high)), record(&res));
        lp.run(RunMode::UntilDone).unwrap();
        assert!(matches!(only(&res), OpResult::Close(Ok(()))));
        // SAFETY: F_GETFD only queries the fd table.
        assert_eq!(
            unsafe { libc::fcntl(raw, libc::F_GETFD) },
            -1,
            "fd still open"
        );
        // A closed op cannot be re-run: its fd slot is empty now.
        lp.add(c.as_mut());
        lp.run(RunMode::UntilDone).unwrap();
        match only(&res) {
            OpResult::Close(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_finished_file_op_wakes_a_blocked_loop() {
    // The loop blocks until a 5 s timer; a file op's result (from the thread pool on the
    // poll backend) must wake it well before that.
    each_backend(|b| {
        let tmp = TempFile::new("wake");
        let file = tmp.open_rw();
        std::fs::write(&tmp.0, b"wake up").unwrap();
        let res = results();
        let timer_res = results();
        let mut c = pin!(Completion::new());
        let mut t = pin!(Completion::new());
        let (mut lp, _pool) = loop_with_pool(b);
        lp.timer(t.as_mut(), 5_000, record(&timer_res));
        lp.start(
            c.as_mut(),
            Op::Pread {
                fd: file.as_raw_fd(),
                buf: Buffer::inline(16),
                offset: 0,
            },
            record(&res),
        );
        let start = std::time::Instant::now();
        while res.borrow().is_empty() {
            lp.run(RunMode::Once).unwrap();
            assert!(
                start.elapsed() < std::time::Duration::from_secs(2),
                "loop was not woken"
            );
        }
        assert!(matches!(only(&res), OpResult::Pread(Ok(7))));
        assert!(timer_res.borrow().is_empty());
        drop(lp);
        assert_eq!(t.state(), CompletionState::Dead);
    });
}

#[test]
fn two_loops_sharing_one_thread_pool() {
    each_backend(|b| {
        let pool = ThreadPool::new(ThreadPoolOptions {
            max_threads: 2,
            ..Default::default()
        });
        let tmp = TempFile::new("shared");
        let file = tmp.open_rw();
        std::fs::write(&tmp.0, b"0123456789").unwrap();
        let fd = file.as_raw_fd();
        let r1 = results();
        let r2 = results();
        let mut c1: Vec<Pin<Box<Completion>>> =
            (0..8).map(|_| Box::pin(Completion::new())).collect();
        let mut c2: Vec<Pin<Box<Completion>>> =
            (0..8).map(|_| Box::pin(Completion::new())).collect();
        let mk = || {
            Loop::new(Options {
                backend: Some(b),
                thread_pool: Some(pool.clone()),
                ..Default::default()
            })
            .unwrap()
        };
        let (mut lp1, mut lp2) = (mk(), mk());
        for (i, c) in c1.iter_mut().enumerate() {
            let op = Op::Pread {
                fd,
                buf: Buffer::inline(1),
                offset: i as u64,
            };
            lp1.start(c.as_mut(), op, record(&r1));
        }
        for (i, c) in c2.iter_mut().enumerate() {
            let op = Op::Pread {
                fd,
                buf: Buffer::inline(1),
                offset: 9 - i as u64,
            };
            lp2.start(c.as_mut(), op, record(&r2));
        }
        while lp1.active() + lp2.active() > 0 {
            lp1.run(RunMode::NoWait).unwrap();
            lp2.run(RunMode::NoWait).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(r1.borrow().len(), 8);
        assert_eq!(r2.borrow().len(), 8);
        let bytes = |cs: &[Pin<Box<Completion>>]| -> Vec<u8> {
            cs.iter()
                .map(|c| c.buffer().unwrap().as_slice()[0])
                .collect()
        };
        assert_eq!(bytes(&c1), b"01234567");
        assert_eq!(bytes(&c2), b"98765432");
        drop((lp1, lp2));
    });
}

/// On the poll backend a file operation still queued for the thread pool can be
/// cancelled; one a worker has started finishes normally and the cancel gets `EALREADY`.
#[test]
fn poll_backend_cancels_a_file_op_still_queued_for_the_pool() {
    let pool = ThreadPool::new(ThreadPoolOptions {
        max_threads: 1,
        ..Default::default()
    });
    // Occupy the only worker so the pwrite below stays queued. (A write: a read of
    // cached data would complete on the loop thread without the pool.)
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    pool.execute(move || {
        started_tx.send(()).unwrap();
        let _ = release_rx.recv_timeout(std::time::Duration::from_secs(10));
    });
    started_rx.recv().unwrap();

    let tmp = TempFile::new("poolcancel");
    let file = tmp.open_rw();
    let (read_r, cancel_r) = (results(), results());
    let mut read = pin!(Completion::new());
    let mut cancel = pin!(Completion::new());
    let mut lp = Loop::new(Options {
        backend: Some(Backend::Epoll),
        thread_pool: Some(pool),
        ..Default::default()
    })
    .unwrap();
    lp.start(
        read.as_mut(),
        Op::Pwrite {
            fd: file.as_raw_fd(),
            buf: Buffer::copy_from(b"abcd"),
            offset: 0,
        },
        record(&read_r),
    );
    lp.cancel(cancel.as_mut(), &read, record(&cancel_r));
    lp.run(RunMode::UntilDone).unwrap();
    release_tx.send(()).unwrap();
    assert!(matches!(
        only(&read_r),
        OpResult::Pwrite(Err(Error::Canceled))
    ));
    assert!(matches!(only(&cancel_r), OpResult::Cancel(Ok(()))));
    assert_eq!(lp.active(), 0);
}
