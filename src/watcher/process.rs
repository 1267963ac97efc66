//! [`Process`]: wait for a child process to exit, on the loop (libxev's `Process`).
//!
//! On Linux: a pidfd (`pidfd_open(2)`, Linux 5.3) polled for readability with an
//! [`Op::Poll`]; once readable, the child is reaped with
//! `waitid(P_PIDFD, pidfd, WEXITED | WNOHANG)` (Linux 5.4) and its `siginfo` decoded
//! into an [`ExitStatus`]. On macOS and the BSDs the polled fd is a kqueue holding an
//! `EVFILT_PROC`/`NOTE_EXIT` event for the pid, and the child is reaped with
//! `waitpid(pid, WNOHANG)` (`sys/bsd.rs`; type-checked there, not run).
//!
//! **Reaping.** The watcher reaps the child (like libxev). A `std::process::Child` whose
//! exit the watcher reported must not be waited for again: `Child::wait`/`try_wait` would
//! then fail with `ECHILD`, or, worse, if the pid has been reused by a newer child, reap
//! that one; `Child::kill` could likewise hit a reused pid. Just drop the `Child` (its
//! drop neither waits nor kills). Conversely, do not reap the child elsewhere (e.g.
//! `waitpid(-1, ..)` on another thread) while a wait is queued: the watcher would then
//! report `ECHILD`.
//!
//! **Identity.** The pidfd is opened by pid after the child started, so something that
//! reaps the child first (see above) could let its pid name another process by then.
//! [`Process::new`] therefore refuses (`ECHILD`) a pidfd whose process is not an
//! unreaped child of this one; it lists the one case no check can see.
//!
//! **Windows.** The watcher holds a process handle (`OpenProcess`, or a duplicate of a
//! `std::process::Child`'s handle); the system thread pool waits on it
//! (`RegisterWaitForSingleObject`) and, when the process exits, makes a loopback socket
//! readable, which the loop polls with the same [`Op::Poll`] (no thread of this crate
//! blocks; dropping the watcher unregisters that wait). The status is
//! `GetExitCodeProcess`'s code, always [`ExitStatus::Exited`] (with the full 32-bit code:
//! an `NTSTATUS` such as `0xC0000005` reads as a negative `i32`). Nothing is reaped on
//! Windows: the exit code stays readable while a handle is open, so `Child::wait` still
//! works after the watcher reported the exit, a rearmed wait reports the same status
//! again, and a process id is never reused while the watcher holds its handle.

#[cfg(unix)]
use crate::sys::fd::{AsRawFd, OwnedFd, RawFd};
use std::fmt;
use std::io;
use std::pin::Pin;
#[cfg(unix)]
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion};
use crate::event_loop::Loop;
use crate::op::{Op, PollEvents};
use crate::result::{Error, OpResult};

use super::mismatch;

/// How a child process ended.
///
/// ```
/// use xev::watcher::process::ExitStatus;
///
/// assert!(ExitStatus::Exited(0).success());
/// assert_eq!(ExitStatus::Exited(42).code(), Some(42));
/// assert_eq!(ExitStatus::Signaled(libc::SIGKILL).signal(), Some(libc::SIGKILL));
/// assert_eq!(ExitStatus::Signaled(libc::SIGKILL).code(), None);
/// assert_eq!(ExitStatus::CoreDumped(libc::SIGSEGV).signal(), Some(libc::SIGSEGV));
/// assert!(ExitStatus::CoreDumped(libc::SIGSEGV).core_dumped());
/// assert!(!ExitStatus::Signaled(libc::SIGSEGV).core_dumped());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The process called `exit` (or returned from `main`) with this code (0..=255).
    Exited(i32),
    /// The process was terminated by this signal and did not dump core.
    Signaled(i32),
    /// The process was terminated by this signal and dumped core (`WCOREDUMP`: the
    /// signal's default action writes a core file and the child's limits let it).
    CoreDumped(i32),
}

impl ExitStatus {
    /// Whether the process exited with code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Exited(0)
    }

    /// The exit code, if the process exited normally.
    pub fn code(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(c) => Some(c),
            ExitStatus::Signaled(_) | ExitStatus::CoreDumped(_) => None,
        }
    }

    /// The terminating signal, if a signal killed the process (with or without a core).
    pub fn signal(self) -> Option<i32> {
        match self {
            ExitStatus::Exited(_) => None,
            ExitStatus::Signaled(s) | ExitStatus::CoreDumped(s) => Some(s),
        }
    }

    /// Whether a signal killed the process and it dumped core (std's
    /// `ExitStatusExt::core_dumped`).
    pub fn core_dumped(self) -> bool {
        matches!(self, ExitStatus::CoreDumped(_))
    }
}

#[cfg(unix)]
impl From<ExitStatus> for std::process::ExitStatus {
    /// The same status as `std` represents it (a `wait(2)` status word).
    ///
    /// ```
    /// use xev::watcher::process::ExitStatus;
    /// let std_status: std::process::ExitStatus = ExitStatus::Exited(3).into();
    /// assert_eq!(std_status.code(), Some(3));
    ///
    /// use std::os::unix::process::ExitStatusExt;
    /// let std_status: std::process::ExitStatus = ExitStatus::CoreDumped(libc::SIGABRT).into();
    /// assert_eq!(std_status.signal(), Some(libc::SIGABRT));
    /// assert!(std_status.core_dumped());
    /// ```
    fn from(s: ExitStatus) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        // The `wait(2)` status word: the code in bits 8-15, else the signal in bits 0-6
        // and the core flag in bit 7 (`WCOREFLAG`, the same on Linux and the BSDs).
        match s {
            ExitStatus::Exited(c) => std::process::ExitStatus::from_raw((c & 0xff) << 8),
            ExitStatus::Signaled(sig) => std::process::ExitStatus::from_raw(sig & 0x7f),
            ExitStatus::CoreDumped(sig) => std::process::ExitStatus::from_raw(sig & 0x7f | 0x80),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Exited(c) => write!(f, "exit status: {c}"),
            ExitStatus::Signaled(s) => write!(f, "killed by signal {s}"),
            ExitStatus::CoreDumped(s) => write!(f, "killed by signal {s} (core dumped)"),
        }
    }
}

#[cfg(unix)]
/// Watches one process for its exit, through a pidfd the `Process` owns.
///
/// The process must be a child of the calling process (otherwise the wait reports
/// `ECHILD`); it may already have exited (a zombie) when the watcher is created or when
/// the wait starts: the callback still runs. See the [module docs](self) about reaping
/// and `std::process::Child`.
///
/// ```
/// use std::{cell::Cell, pin::pin, process::Command, rc::Rc};
/// use xev::watcher::process::{ExitStatus, Process};
/// use xev::{CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut c = pin!(Completion::new());
/// let mut lp = Loop::new(Options::default())?;
/// let child = Command::new("sh").args(["-c", "exit 3"]).spawn()?;
/// let proc = Process::from_child(&child)?;
/// let status = Rc::new(Cell::new(None));
/// proc.wait(&mut lp, c.as_mut(), status.clone(), |status, _lp, _c, r| {
///     status.set(Some(r.expect("wait")));
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// assert_eq!(status.get(), Some(ExitStatus::Exited(3)));
/// drop(child); // reaped by the watcher: do not call `child.wait()`
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Process {
    /// The pidfd, shared with the callback of a queued wait so that it stays open while
    /// the poll is in flight.
    pub(crate) fd: Arc<OwnedFd>,
    pid: u32,
    /// Set by the wait that reaped the child, shared with every wait's callback: a later
    /// wait (a rearm, a second completion) is `ECHILD` without reaping again. On the BSDs
    /// reaping is `waitpid(pid)`, which, once the child is gone, could reap a newer child
    /// of this process that got its pid.
    reaped: Arc<AtomicBool>,
}

#[cfg(unix)]
impl Process {
    /// Watch the child process `pid`: opens a pidfd (close-on-exec), then checks that it
    /// names an unreaped child of this process.
    ///
    /// Errors: `ECHILD` if the process is not a child of this one, which is also what
    /// a child that was reaped elsewhere and whose pid a newer, unrelated process now
    /// has looks like (the check keeps the watcher, and
    /// [`xev::process::Child`](crate::process::Child)'s signals, off that process);
    /// `ESRCH` if no process has that pid (a child reaped elsewhere, pid not reused);
    /// `InvalidInput` for a pid above `i32::MAX`; `ENOSYS` on kernels before 5.3 (5.4 for
    /// the check); fd-limit errors.
    ///
    /// What no check can see: a child reaped elsewhere whose pid was meanwhile reused by
    /// *another child of this process*. That needs both a reaping behind the `Child`'s
    /// back (`waitpid(-1, ..)`, `SIGCHLD` set to `SIG_IGN`) and the kernel handing the
    /// same pid out again (after going round the whole pid space) between that reaping
    /// and this call.
    pub fn new(pid: u32) -> io::Result<Process> {
        Ok(Process {
            fd: Arc::new(open_child_pidfd(pid)?),
            pid,
            reaped: Arc::default(),
        })
    }

    /// Watch a child spawned with `std::process::Command` (see [`new`](Self::new)). Call
    /// it right after `spawn`, before anything could wait for the child.
    pub fn from_child(child: &std::process::Child) -> io::Result<Process> {
        Process::new(child.id())
    }

    /// The watched process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait for the process to exit and reap it: `cb` runs with its [`ExitStatus`], or
    /// with `Err(Error::Io(ECHILD))` if it is not a child of this process or was reaped
    /// elsewhere, or `Err(Error::Canceled)` if the wait is cancelled.
    ///
    /// A spurious readiness (the pidfd readable but `waitid` finding nothing to reap) is
    /// absorbed: the poll is re-queued without calling `cb`. Returning
    /// [`CallbackAction::Rearm`] after the exit was reported gives `ECHILD` (the child
    /// is gone).
    pub fn wait<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<ExitStatus, Error>,
            ) -> CallbackAction
            + 'static,
    {
        let fd = Arc::clone(&self.fd);
        let reaped = Arc::clone(&self.reaped);
        let pid = self.pid;
        let op = Op::Poll {
            fd: fd.as_raw_fd(),
            events: PollEvents::IN,
        };
        let (mut ud, mut cb) = (userdata, cb);
        lp.start(c, op, move |lp, c, r| {
            let r = match r {
                // Reaped by an earlier wait: the child is gone (see `reaped`).
                OpResult::Poll(Ok(_)) if reaped.load(Ordering::Acquire) => {
                    Err(Error::Io(io::Error::from_raw_os_error(libc::ECHILD)))
                }
                OpResult::Poll(Ok(_)) => match reap(fd.as_raw_fd(), pid) {
                    Ok(Some(status)) => {
                        reaped.store(true, Ordering::Release);
                        Ok(status)
                    }
                    // Not exited after all: wait again, silently.
                    Ok(None) => return CallbackAction::Rearm,
                    Err(e) => Err(Error::Io(e)),
                },
                OpResult::Poll(Err(e)) => Err(e),
                _ => Err(mismatch()),
            };
            cb(&mut ud, lp, c, r)
        });
    }
}

#[cfg(unix)]
/// The exit fd of child `pid` (a pidfd on Linux, a kqueue elsewhere), checked to name
/// an unreaped child of this process; see [`Process::new`].
fn open_child_pidfd(pid: u32) -> io::Result<OwnedFd> {
    let Ok(raw_pid) = libc::pid_t::try_from(pid) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pid {pid} is out of range"),
        ));
    };
    crate::sys::open_child_exit_fd(raw_pid)
}

#[cfg(unix)]
/// Reap the child behind exit fd `fd` (pid `pid`) if it has exited: its status then (it
/// is reaped), `None` while it is still running.
pub(crate) fn reap(fd: RawFd, pid: u32) -> io::Result<Option<ExitStatus>> {
    Ok(
        crate::sys::reap_child(fd, pid as libc::pid_t)?.map(|end| match end {
            crate::sys::ChildEnd::Exited(code) => ExitStatus::Exited(code),
            crate::sys::ChildEnd::Signaled(sig, false) => ExitStatus::Signaled(sig),
            crate::sys::ChildEnd::Signaled(sig, true) => ExitStatus::CoreDumped(sig),
        }),
    )
}

#[cfg(unix)]
impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("pidfd", &self.fd.as_raw_fd())
            .finish()
    }
}

#[cfg(windows)]
impl From<ExitStatus> for std::process::ExitStatus {
    /// The same status as `std` represents it (the exit code; `Signaled` never happens on
    /// Windows and maps to its number as a code).
    fn from(s: ExitStatus) -> std::process::ExitStatus {
        use std::os::windows::process::ExitStatusExt;
        match s {
            ExitStatus::Exited(c) | ExitStatus::Signaled(c) | ExitStatus::CoreDumped(c) => {
                std::process::ExitStatus::from_raw(c as u32)
            }
        }
    }
}

#[cfg(windows)]
/// Watches one process for its exit, through a process handle the `Process` owns (see
/// the [module docs](self) for how Windows waits).
///
/// ```no_run
/// use std::{cell::Cell, pin::pin, process::Command, rc::Rc};
/// use xev::watcher::process::{ExitStatus, Process};
/// use xev::{CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut c = pin!(Completion::new());
/// let mut lp = Loop::new(Options::default())?;
/// let child = Command::new("cmd").args(["/C", "exit 3"]).spawn()?;
/// let proc = Process::from_child(&child)?;
/// let status = Rc::new(Cell::new(None));
/// proc.wait(&mut lp, c.as_mut(), status.clone(), |status, _lp, _c, r| {
///     status.set(Some(r.expect("wait")));
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// assert_eq!(status.get(), Some(ExitStatus::Exited(3)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Process {
    /// The handle and the socket its exit makes readable, shared with the callback of a
    /// queued wait so that both stay open while the poll is in flight.
    pub(crate) exit: Arc<crate::sys::ProcessExit>,
    pid: u32,
}

#[cfg(windows)]
impl Process {
    /// Watch the process `pid` (any process this one may open with `SYNCHRONIZE` and
    /// `PROCESS_QUERY_LIMITED_INFORMATION`, not only a child). Errors:
    /// `ERROR_INVALID_PARAMETER` if no process has that id, `ERROR_ACCESS_DENIED`, or
    /// socket errors. Prefer [`from_child`](Self::from_child) for a child: the id of a
    /// process that exited and whose handles are all closed may be reused.
    pub fn new(pid: u32) -> io::Result<Process> {
        Ok(Process {
            exit: Arc::new(crate::sys::ProcessExit::open(pid)?),
            pid,
        })
    }

    /// Watch a child spawned with `std::process::Command`, through a duplicate of its
    /// handle (so it names that very process, whatever happened to its id).
    pub fn from_child(child: &std::process::Child) -> io::Result<Process> {
        use std::os::windows::io::AsHandle;
        let handle = child.as_handle().try_clone_to_owned()?;
        Ok(Process {
            exit: Arc::new(crate::sys::ProcessExit::new(handle)?),
            pid: child.id(),
        })
    }

    /// The watched process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait for the process to exit: `cb` runs with its [`ExitStatus`], or
    /// `Err(Error::Canceled)` if the wait is cancelled. A readiness that finds the
    /// process still running is absorbed (the poll is re-queued without calling `cb`).
    /// Returning [`CallbackAction::Rearm`] after the exit reports the same status again.
    pub fn wait<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(
                &mut U,
                &mut Loop,
                Pin<&mut Completion>,
                Result<ExitStatus, Error>,
            ) -> CallbackAction
            + 'static,
    {
        let exit = Arc::clone(&self.exit);
        let op = Op::Poll {
            fd: exit.raw(),
            events: PollEvents::IN,
        };
        let (mut ud, mut cb) = (userdata, cb);
        lp.start(c, op, move |lp, c, r| {
            let r = match r {
                OpResult::Poll(Ok(_)) => match exit.exit_code() {
                    Ok(Some(code)) => Ok(ExitStatus::Exited(code as i32)),
                    // Not exited after all: wait again, silently.
                    Ok(None) => return CallbackAction::Rearm,
                    Err(e) => Err(Error::Io(e)),
                },
                OpResult::Poll(Err(e)) => Err(e),
                _ => Err(mismatch()),
            };
            cb(&mut ud, lp, c, r)
        });
    }
}

#[cfg(windows)]
impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("exit", &self.exit)
            .finish()
    }
}
