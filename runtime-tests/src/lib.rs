//! Helpers for xev's behaviour tests: run a test body once per available backend and
//! say which backend failed.

use std::panic::{catch_unwind, AssertUnwindSafe};

pub mod alloc_count;
pub mod child;
pub mod socket_count;

pub use xev;

/// Run `body` once per available backend with a fresh loop of that backend; panic with
/// the names of the backends that failed.
pub fn each_backend(body: impl Fn(xev::Backend)) {
    let backends: Vec<xev::Backend> = xev::Backend::available().collect();
    assert!(!backends.is_empty(), "no backend available");
    let mut failed = Vec::new();
    for b in backends {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| body(b))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            eprintln!("backend {b:?} failed: {msg}");
            failed.push(format!("{b:?}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "failed on: {}", failed.join("; "));
}

/// [`each_backend`], each run on a fresh thread, so that a hang is a failure after
/// `limit` rather than a stuck test run.
pub fn each_backend_within(limit: std::time::Duration, body: fn(xev::Backend)) {
    each_backend(|b| {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let r = catch_unwind(move || body(b));
            let _ = tx.send(r.is_ok());
        });
        match rx.recv_timeout(limit) {
            Ok(true) => t.join().unwrap(),
            Ok(false) => panic!("failed (see the panic above)"),
            Err(_) => panic!("hung for {limit:?}"),
        }
    });
}

/// A value that panics when dropped (outside a panic already unwinding): user code
/// running at a moment the runtime may not expect.
pub struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

/// A loop pinned to `backend`.
pub fn new_loop(backend: xev::Backend) -> xev::Loop {
    xev::Loop::new(xev::Options {
        backend: Some(backend),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("Loop::new({backend:?}): {e}"))
}

use std::cell::RefCell;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;

use xev::{CallbackAction, Completion, Loop, OpResult};

/// Results collected by callbacks made with [`record`].
pub type Results = Rc<RefCell<Vec<OpResult>>>;

/// An empty result log.
pub fn results() -> Results {
    Rc::new(RefCell::new(Vec::new()))
}

/// A callback that appends its result to `r` and disarms.
pub fn record(
    r: &Results,
) -> impl FnMut(&mut Loop, Pin<&mut Completion>, OpResult) -> CallbackAction {
    let r = r.clone();
    move |_, _, res| {
        r.borrow_mut().push(res);
        CallbackAction::Disarm
    }
}

/// The single result in `r` (panics if there is not exactly one).
pub fn only(r: &Results) -> OpResult {
    let mut v = r.borrow_mut();
    assert_eq!(v.len(), 1, "expected exactly one callback, got {v:?}");
    v.pop().unwrap()
}

/// Duplicate `fd` to a number at or above `base`, where no other test in the process
/// allocates fds, so a closed number cannot be reused behind the test's back.
pub fn dup_high(fd: RawFd, base: RawFd) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base) };
    assert!(d >= base, "dup: {}", std::io::Error::last_os_error());
    // SAFETY: a new fd that we own.
    unsafe { OwnedFd::from_raw_fd(d) }
}

/// The OS error (`errno`) of a failed result, whatever the operation.
pub fn os_error(r: &OpResult) -> Option<i32> {
    use xev::{Error, ReadError};
    let e: &std::io::Error = match r {
        OpResult::Accept(Err(Error::Io(e)))
        | OpResult::Connect(Err(Error::Io(e)))
        | OpResult::Write(Err(Error::Io(e)))
        | OpResult::Pwrite(Err(Error::Io(e)))
        | OpResult::Send(Err(Error::Io(e)))
        | OpResult::SendMsg(Err(Error::Io(e)))
        | OpResult::Close(Err(Error::Io(e)))
        | OpResult::Shutdown(Err(Error::Io(e)))
        | OpResult::Poll(Err(Error::Io(e)))
        | OpResult::Read(Err(ReadError::Io(e)))
        | OpResult::Pread(Err(ReadError::Io(e)))
        | OpResult::Recv(Err(ReadError::Io(e)))
        | OpResult::RecvMsg(Err(ReadError::Io(e)))
        | OpResult::Readv(Err(ReadError::Io(e)))
        | OpResult::Writev(Err(Error::Io(e)))
        | OpResult::SendMsgV(Err(Error::Io(e)))
        | OpResult::AcceptUnix(Err(Error::Io(e)))
        | OpResult::ConnectUnix(Err(Error::Io(e)))
        | OpResult::SendMsgUnix(Err(Error::Io(e)))
        | OpResult::RecvMsgUnix(Err(ReadError::Io(e)))
        | OpResult::OpenAt(Err(Error::Io(e)))
        | OpResult::Statx(Err(Error::Io(e)))
        | OpResult::RenameAt(Err(Error::Io(e)))
        | OpResult::UnlinkAt(Err(Error::Io(e)))
        | OpResult::MkdirAt(Err(Error::Io(e)))
        | OpResult::LinkAt(Err(Error::Io(e)))
        | OpResult::SymlinkAt(Err(Error::Io(e)))
        | OpResult::Fsync(Err(Error::Io(e)))
        | OpResult::Fallocate(Err(Error::Io(e)))
        | OpResult::Ftruncate(Err(Error::Io(e))) => e,
        _ => return None,
    };
    e.raw_os_error()
}

/// A child that kills itself with `SIGSEGV`, for the core-dump tests: `sh` in its own
/// fresh directory under the temp dir (where a `core_pattern` of `core` writes the
/// file), with core files allowed (`ulimit -c unlimited`) when `dump`, else forbidden.
/// [`CoreChild::std_dumped`] runs the same child reaped by std: whether this machine
/// dumps core for it (the kernel's `core_pattern` and the hard limit decide), the truth
/// xev's status must agree with.
pub struct CoreChild {
    dir: std::path::PathBuf,
    script: &'static str,
}

impl CoreChild {
    /// A fresh directory named after `tag`.
    pub fn new(tag: &str, dump: bool) -> CoreChild {
        let dir = std::env::temp_dir().join(format!("xev-core-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = if dump {
            "ulimit -c unlimited 2>/dev/null; kill -SEGV $$"
        } else {
            "ulimit -c 0; kill -SEGV $$"
        };
        CoreChild { dir, script }
    }

    /// The command that runs the child.
    pub fn command(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", self.script]).current_dir(&self.dir);
        cmd
    }

    /// Whether the same child, reaped by `std`, dumped core (and it did die of SIGSEGV).
    pub fn std_dumped(&self) -> bool {
        use std::os::unix::process::ExitStatusExt;
        let st = self.command().status().unwrap();
        assert_eq!(st.signal(), Some(libc::SIGSEGV), "{st:?}");
        st.core_dumped()
    }
}

impl Drop for CoreChild {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
