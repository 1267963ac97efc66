//! The I/O watchers' descriptors outlive the operations started through them (issue #13
//! items 1-2): queued and direct operations of a dropped watcher never reach the file that
//! would otherwise reuse its number; `close` cancels queued writes that have not started;
//! closing inside an operation's own callback needs no duplicate and poisons a `Rearm`;
//! a `WriteQueue` dropped with writes in flight releases everything when the loop goes.
//!
//! The tests put their descriptors at high numbers (each test its own range, see
//! [`dup_high`]) so that "the lowest free number" is deterministic under parallel tests.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use runtime_tests::{dup_high, each_backend, new_loop};
use xev::watcher::file::File;
use xev::watcher::stream::{Stream, WriteQueue};
use xev::watcher::tcp::Tcp;
use xev::watcher::udp::Udp;
use xev::{Buffer, CallbackAction, Completion, Error, Loop, ReadError, RunMode};

type Log = Rc<RefCell<Vec<String>>>;

/// Run until `done()` or two seconds; true if done.
fn run_until(lp: &mut Loop, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        lp.run(RunMode::NoWait).unwrap();
        std::thread::yield_now();
    }
    done()
}

/// A non-blocking pipe `(read end, write end)` with both ends at or above `base`.
fn pipe_at(base: RawFd) -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new fds into the array, or fails.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both are new fds that we own.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    (dup_high(r.as_raw_fd(), base), dup_high(w.as_raw_fd(), base))
}

/// Shrink a pipe to one page and fill it until a write would block.
fn fill_pipe(w: RawFd) {
    // SAFETY: fcntl on an fd we own; a failure only leaves the pipe bigger.
    unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, 4096) };
    let chunk = [b'x'; 4096];
    loop {
        // SAFETY: writing from a live buffer to a non-blocking pipe we own.
        let n = unsafe { libc::write(w, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            assert_eq!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock);
            return;
        }
    }
}

/// Everything readable from the non-blocking `fd` right now.
fn drain(fd: RawFd) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // SAFETY: reading into a live buffer from an fd we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// Whether `fd` is an open descriptor.
fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// A fresh temporary file path for this test.
fn temp_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("xev-fd-lifetime-{}-{tag}", std::process::id()))
}

/// An unrelated regular file opened at the lowest free number at or above `base`.
fn unrelated_file(path: &PathBuf, base: RawFd) -> OwnedFd {
    let f = std::fs::File::create(path).unwrap();
    dup_high(f.as_raw_fd(), base)
}

/// The watcher kinds with a `queue_write`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Stream,
    Tcp,
    File,
    FilePwrite,
}

/// A watcher of `kind` at the lowest free number at or above `base`, and a way to read
/// what reached its file.
struct Target {
    kind: Kind,
    stream: Option<Stream>,
    tcp: Option<Tcp>,
    file: Option<File>,
    read_back: Box<dyn FnMut() -> Vec<u8>>,
}

fn target(kind: Kind, base: RawFd, tag: &str) -> Target {
    let mut t = Target {
        kind,
        stream: None,
        tcp: None,
        file: None,
        read_back: Box::new(Vec::new),
    };
    match kind {
        Kind::Stream => {
            let (r, w) = pipe_at(base + 10);
            t.stream = Some(Stream::from(dup_high(w.as_raw_fd(), base)));
            drop(w);
            t.read_back = Box::new(move || drain(r.as_raw_fd()));
        }
        Kind::Tcp => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let (peer, _) = l.accept().unwrap();
            peer.set_nonblocking(true).unwrap();
            client.set_nonblocking(true).unwrap();
            t.tcp = Some(Tcp::from(dup_high(client.as_raw_fd(), base)));
            drop(client);
            t.read_back = Box::new(move || {
                std::thread::sleep(Duration::from_millis(20)); // loopback delivery
                drain(peer.as_raw_fd())
            });
        }
        Kind::File | Kind::FilePwrite => {
            let path = temp_path(tag);
            let f = std::fs::File::create(&path).unwrap();
            t.file = Some(File::from(dup_high(f.as_raw_fd(), base)));
            drop(f);
            t.read_back = Box::new(move || {
                let bytes = std::fs::read(&path).unwrap();
                let _ = std::fs::remove_file(&path);
                bytes
            });
        }
    }
    t
}

impl Target {
    fn raw(&self) -> RawFd {
        match self.kind {
            Kind::Stream => self.stream.as_ref().unwrap().as_raw_fd(),
            Kind::Tcp => self.tcp.as_ref().unwrap().as_raw_fd(),
            Kind::File | Kind::FilePwrite => self.file.as_ref().unwrap().as_raw_fd(),
        }
    }

    /// Queue `bytes` (at `offset` for `FilePwrite`), logging the result.
    fn queue(&self, lp: &mut Loop, q: &WriteQueue, bytes: &[u8], offset: u64, log: &Log) {
        let buf = Buffer::copy_from(bytes);
        let cb = |log: &mut Log, _: &mut Loop, _: &mut Buffer, r: Result<usize, Error>| {
            log.borrow_mut().push(format!("{r:?}"));
            CallbackAction::Disarm
        };
        let log = log.clone();
        match self.kind {
            Kind::Stream => self
                .stream
                .as_ref()
                .unwrap()
                .queue_write(lp, q, buf, log, cb),
            Kind::Tcp => self.tcp.as_ref().unwrap().queue_write(lp, q, buf, log, cb),
            Kind::File => self.file.as_ref().unwrap().queue_write(lp, q, buf, log, cb),
            Kind::FilePwrite => {
                let f = self.file.as_ref().unwrap();
                f.queue_pwrite(lp, q, buf, offset, log, cb)
            }
        }
    }

    fn drop_watcher(&mut self) {
        self.stream = None;
        self.tcp = None;
        self.file = None;
    }
}

/// A queue kept busy by a write to a full pipe; `unblock` lets it go on.
struct Blocker {
    _w: Stream,
    r: OwnedFd,
}

fn blocker(lp: &mut Loop, q: &WriteQueue, log: &Log) -> Blocker {
    let (r, w) = pipe_at(3);
    fill_pipe(w.as_raw_fd());
    let w = Stream::from(w);
    let l = log.clone();
    w.queue_write(lp, q, Buffer::copy_from(b"X"), l, |l, _, _, r| {
        l.borrow_mut().push(format!("X {r:?}"));
        CallbackAction::Disarm
    });
    for _ in 0..3 {
        lp.run(RunMode::NoWait).unwrap();
    }
    assert!(log.borrow().is_empty(), "the blocking write finished early");
    Blocker { _w: w, r }
}

impl Blocker {
    fn unblock(&self) {
        drain(self.r.as_raw_fd());
    }
}

/// Issue #13 item 1, the "AAAABBBB" case: writes queued for a watcher that is dropped
/// before they start must reach its own file, never the unrelated file that would get
/// its number next.
#[test]
fn queued_writes_of_a_dropped_watcher_never_reach_the_file_that_reuses_its_number() {
    const BASE: RawFd = 600;
    each_backend(|b| {
        for kind in [Kind::Stream, Kind::Tcp, Kind::File, Kind::FilePwrite] {
            let log: Log = Rc::default();
            let mut lp = new_loop(b);
            let q = WriteQueue::new();
            let blk = blocker(&mut lp, &q, &log);
            let tag = format!("{}-{kind:?}", b.name());
            let mut t = target(kind, BASE, &tag);
            let n = t.raw();
            t.queue(&mut lp, &q, b"AAAA", 0, &log);
            t.queue(&mut lp, &q, b"BBBB", 4, &log);
            t.drop_watcher();

            let other_path = temp_path(&format!("{tag}-other"));
            let other = unrelated_file(&other_path, BASE);
            blk.unblock();
            assert!(
                run_until(&mut lp, || q.is_empty()),
                "{kind:?}: {:?}",
                log.borrow()
            );
            assert_eq!(*log.borrow(), ["X Ok(1)", "Ok(4)", "Ok(4)"], "{kind:?}");
            let stray = std::fs::read(&other_path).unwrap();
            let _ = std::fs::remove_file(&other_path);
            assert_eq!(
                String::from_utf8_lossy(&stray),
                "",
                "{kind:?}: an unrelated file got the writes"
            );
            assert_eq!((t.read_back)(), b"AAAABBBB", "{kind:?}");
            assert_ne!(
                other.as_raw_fd(),
                n,
                "{kind:?}: the number was free for reuse"
            );
            assert!(
                !is_open(n),
                "{kind:?}: the descriptor outlived its last write"
            );
            drop(other);
        }
    });
}

/// A direct operation keeps its watcher's descriptor open too: a write parked on a full
/// pipe (or not yet submitted) whose watcher is dropped still goes to that pipe, and
/// the number is released only after the write's callback.
#[test]
fn a_direct_operation_keeps_the_descriptor_of_a_dropped_watcher() {
    const BASE: RawFd = 640;
    each_backend(|b| {
        for run_first in [false, true] {
            let got: Log = Rc::default();
            let mut c = pin!(Completion::new());
            let mut lp = new_loop(b);
            let (r, w) = pipe_at(BASE + 10);
            fill_pipe(w.as_raw_fd());
            let tx = Stream::from(dup_high(w.as_raw_fd(), BASE));
            drop(w);
            let n = tx.as_raw_fd();
            let g = got.clone();
            tx.write(
                &mut lp,
                c.as_mut(),
                Buffer::copy_from(b"AAAA"),
                g,
                |g, _, _, r| {
                    g.borrow_mut().push(format!("{r:?}"));
                    CallbackAction::Disarm
                },
            );
            if run_first {
                lp.run(RunMode::NoWait).unwrap();
            }
            drop(tx);
            let other_path = temp_path(&format!("direct-{}-{run_first}", b.name()));
            let other = unrelated_file(&other_path, BASE);
            let mut drained = drain(r.as_raw_fd());
            let done = run_until(&mut lp, || !got.borrow().is_empty());
            let stray = std::fs::read(&other_path).unwrap();
            let _ = std::fs::remove_file(&other_path);
            assert_eq!(
                String::from_utf8_lossy(&stray),
                "",
                "run_first {run_first}: an unrelated file got the write"
            );
            assert!(done, "run_first {run_first}: the write never finished");
            assert_eq!(*got.borrow(), ["Ok(4)"]);
            drained.extend(drain(r.as_raw_fd()));
            assert!(
                drained.ends_with(b"xAAAA"),
                "the write reached its own pipe"
            );
            assert_ne!(other.as_raw_fd(), n, "the number was free while in flight");
            assert!(!is_open(n), "released after the callback");
        }
    });
}

/// A read in flight keeps a dropped watcher's descriptor open until it ends (here by a
/// cancel); unwrapping a watcher with a read in flight gives a duplicate and leaves the
/// read on the original.
#[test]
fn dropping_or_unwrapping_a_watcher_with_a_read_in_flight() {
    const BASE: RawFd = 680;
    each_backend(|b| {
        let got: Log = Rc::default();
        let (mut c, mut x) = (pin!(Completion::new()), pin!(Completion::new()));
        let mut lp = new_loop(b);
        let read_into = |lp: &mut Loop, c: std::pin::Pin<&mut Completion>, rx: &Stream| {
            let g = got.clone();
            rx.read(lp, c, Buffer::inline(8), g, |g, _, c, r| {
                let bytes = r.map(|n| c.buffer().unwrap().as_slice()[..n].to_vec());
                g.borrow_mut().push(format!("{bytes:?}"));
                CallbackAction::Disarm
            });
        };

        // Dropped: open until the read is cancelled.
        let (r, w) = pipe_at(BASE);
        let rx = Stream::from(r);
        let n = rx.as_raw_fd();
        read_into(&mut lp, c.as_mut(), &rx);
        lp.run(RunMode::NoWait).unwrap();
        drop(rx);
        lp.run(RunMode::NoWait).unwrap();
        assert!(is_open(n) && got.borrow().is_empty());
        lp.cancel(x.as_mut(), &c, |_, _, _| CallbackAction::Disarm);
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*got.borrow(), ["Err(Canceled)"]);
        assert!(!is_open(n));
        drop(w);

        // Unwrapped: a duplicate; the read still gets what is written.
        got.borrow_mut().clear();
        let (r, w) = pipe_at(BASE);
        let rx = Stream::from(r);
        let n = rx.as_raw_fd();
        read_into(&mut lp, c.as_mut(), &rx);
        lp.run(RunMode::NoWait).unwrap();
        let fd = OwnedFd::from(rx);
        assert_ne!(fd.as_raw_fd(), n);
        std::fs::File::from(w).write_all(b"hi").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*got.borrow(), ["Ok([104, 105])"]);
        assert!(!is_open(n) && is_open(fd.as_raw_fd()));
    });
}

/// Closing inside the callback of the watcher's own operation closes the descriptor
/// itself (no duplicate is needed: that operation is not in flight), and a `Rearm`
/// returned anyway fails with `EBADF` instead of reading another file.
#[test]
fn close_inside_its_own_callback_then_rearm_gets_ebadf() {
    const BASE: RawFd = 720;
    each_backend(|b| {
        let got: Log = Rc::default();
        let mut c = pin!(Completion::new());
        let close_c = Rc::new(RefCell::new(Box::pin(Completion::new())));
        let mut lp = new_loop(b);
        let (r, w) = pipe_at(BASE);
        let mut w = std::fs::File::from(w);
        w.write_all(b"one").unwrap();
        let rx = Rc::new(RefCell::new(Some(Stream::from(r))));
        let n = rx.borrow().as_ref().unwrap().as_raw_fd();
        let ud = (rx.clone(), got.clone(), close_c.clone());
        let first = rx.borrow();
        first.as_ref().unwrap().read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(8),
            ud,
            |(rx, got, close_c), lp, _, r| {
                let r = r.map_err(|e| match e {
                    ReadError::Io(e) => e.raw_os_error(),
                    e => panic!("read: {e}"),
                });
                got.borrow_mut().push(format!("read {r:?}"));
                if let Some(rx) = rx.borrow_mut().take() {
                    let g = got.clone();
                    let mut cc = close_c.borrow_mut();
                    rx.close(lp, cc.as_mut(), g, |g, _, _, r| {
                        g.borrow_mut().push(format!("close {r:?}"));
                        CallbackAction::Disarm
                    });
                    // Another file gets the lowest number, to be read by mistake.
                    return CallbackAction::Rearm;
                }
                CallbackAction::Disarm
            },
        );
        drop(first);
        lp.run(RunMode::UntilDone).unwrap();
        let got = got.borrow().clone();
        assert_eq!(got[0], "read Ok(3)");
        let mut rest = got[1..].to_vec();
        rest.sort();
        let ebadf = format!("read Err(Some({}))", libc::EBADF);
        assert_eq!(rest, ["close Ok(())", &ebadf], "{got:?}");
        assert!(!is_open(n));
    });
}

/// `close` while writes for the watcher are queued but not started: the close goes
/// ahead, those writes fail with `Canceled` and never reach the peer, and the
/// descriptor is closed once the queue let go of it.
#[test]
fn close_cancels_queued_writes_that_have_not_started() {
    const BASE: RawFd = 760;
    each_backend(|b| {
        let log: Log = Rc::default();
        let mut x = pin!(Completion::new());
        let mut lp = new_loop(b);
        let q = WriteQueue::new();
        let blk = blocker(&mut lp, &q, &log);
        let mut t = target(Kind::Stream, BASE, &format!("close-{}", b.name()));
        let n = t.raw();
        t.queue(&mut lp, &q, b"AAAA", 0, &log);
        let l = log.clone();
        t.stream
            .take()
            .unwrap()
            .close(&mut lp, x.as_mut(), l, |l, _, _, r| {
                l.borrow_mut().push(format!("close {r:?}"));
                CallbackAction::Disarm
            });
        assert!(run_until(&mut lp, || log.borrow().len() == 1));
        assert_eq!(*log.borrow(), ["close Ok(())"]);
        blk.unblock();
        assert!(run_until(&mut lp, || q.is_empty()));
        assert_eq!(*log.borrow(), ["close Ok(())", "X Ok(1)", "Err(Canceled)"]);
        assert_eq!((t.read_back)(), b"");
        assert!(!is_open(n));
    });
}

/// The I/O watchers stay `Send` and `Sync`.
#[test]
fn io_watchers_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Stream>();
    check::<Tcp>();
    check::<File>();
    check::<Udp>();
}

/// A userdata value that counts its drops and owns a descriptor.
struct Owned {
    drops: Rc<Cell<usize>>,
    _fd: OwnedFd,
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

/// The inode numbers of the sockets and pipes this process has open.
fn open_inodes() -> HashSet<u64> {
    let mut set = HashSet::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy().into_owned();
            if let Some(num) = t
                .strip_prefix("socket:[")
                .or_else(|| t.strip_prefix("pipe:["))
                .and_then(|s| s.strip_suffix(']'))
            {
                set.insert(num.parse().unwrap());
            }
        }
    }
    set
}

fn inode(fd: RawFd) -> u64 {
    // SAFETY: all-zero is a valid `stat`; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is live and writable.
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    st.st_ino
}

/// Issue #13 item 2: a `WriteQueue` dropped (with its watcher) while writes are in flight
/// to a peer that never reads keeps itself alive; dropping the loop then releases it:
/// every request's userdata is dropped, and every descriptor (the watcher's, and those
/// the userdata owned) is closed.
#[test]
fn write_queue_dropped_mid_flight_is_released_with_the_loop() {
    each_backend(|b| {
        const REQUESTS: usize = 4;
        let drops = Rc::new(Cell::new(0));
        let mut lp = new_loop(b);
        let (writer, mut peer) = UnixStream::pair().unwrap();
        writer.set_nonblocking(true).unwrap();
        let mut watched = vec![inode(writer.as_raw_fd())];
        let w = Stream::from(OwnedFd::from(writer));
        let q = WriteQueue::new();
        for _ in 0..REQUESTS {
            let (r, pw) = pipe_at(3);
            watched.push(inode(r.as_raw_fd()));
            drop(pw);
            let ud = Owned {
                drops: drops.clone(),
                _fd: r,
            };
            w.queue_write(
                &mut lp,
                &q,
                Buffer::from(vec![7u8; 1 << 20]),
                ud,
                |_, _, _, r| panic!("a write to a peer that never reads finished: {r:?}"),
            );
        }
        for _ in 0..5 {
            lp.run(RunMode::NoWait).unwrap();
        }
        assert_eq!(q.len(), REQUESTS, "nothing can finish");
        drop((q, w));
        assert_eq!(drops.get(), 0, "the queue keeps itself alive while writing");
        assert!(open_inodes().contains(&watched[0]));
        drop(lp);
        assert_eq!(
            drops.get(),
            REQUESTS,
            "every request's userdata was dropped"
        );
        let still: Vec<_> = watched
            .iter()
            .filter(|i| open_inodes().contains(i))
            .collect();
        assert!(still.is_empty(), "descriptors leaked: inodes {still:?}");
        // The peer sees the writer closed: what was sent, then EOF.
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut sink = Vec::new();
        peer.read_to_end(&mut sink)
            .expect("EOF after the writer closed");
    });
}

/// A watcher's completion re-added with `Loop::add` after its operation finished runs
/// the operation again (on the number, which the live watcher keeps open), and a `Rearm`
/// from that run is not mistaken for one after a close.
#[test]
fn a_finished_watcher_operation_can_be_re_added() {
    const BASE: RawFd = 800;
    each_backend(|b| {
        let got: Log = Rc::default();
        let mut c = pin!(Completion::new());
        let mut lp = new_loop(b);
        let (r, w) = pipe_at(BASE);
        let mut w = std::fs::File::from(w);
        let rx = Stream::from(r);
        let rearms = Rc::new(Cell::new(0));
        let ud = (got.clone(), rearms.clone());
        rx.read(
            &mut lp,
            c.as_mut(),
            Buffer::inline(8),
            ud,
            |(g, rearms), _, c, r| {
                let bytes = r.map(|n| c.buffer().unwrap().as_slice()[..n].to_vec());
                g.borrow_mut().push(format!("{bytes:?}"));
                if g.borrow().len() == 2 && rearms.get() == 0 {
                    rearms.set(1);
                    return CallbackAction::Rearm;
                }
                CallbackAction::Disarm
            },
        );
        w.write_all(b"a").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        w.write_all(b"b").unwrap();
        lp.add(c.as_mut());
        lp.run(RunMode::NoWait).unwrap();
        w.write_all(b"c").unwrap();
        lp.run(RunMode::UntilDone).unwrap();
        assert_eq!(*got.borrow(), ["Ok([97])", "Ok([98])", "Ok([99])"]);
        drop(rx);
    });
}
