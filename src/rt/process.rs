//! Child processes awaited by a task: [`spawn`], [`Child`], [`status`] and [`output`].
//!
//! On macOS and the BSDs the pidfd is a kqueue with `EVFILT_PROC`/`NOTE_EXIT`, reaping is
//! `waitpid` and signals go through `kill(2)` (the child's pid stays its own until this
//! module reaps it); see [`Process`]. The process is started with
//! [`std::process::Command`] (every `Command` option works); the async part is waiting
//! for its exit, through the same pidfd (`pidfd_open(2)`, Linux 5.3) and
//! `waitid(P_PIDFD, ..)` reaping (Linux 5.4) as the callback watcher
//! [`Process`]: the wait is an [`Op::Poll`] for the
//! pidfd's readability, so no thread blocks and no `SIGCHLD` handler is installed.
//!
//! The child's standard streams set to `Stdio::piped()` become async pipe ends
//! ([`ChildStdin`], [`ChildStdout`], [`ChildStderr`]: the [`pipe`](crate::pipe) module's
//! types), taken from [`Child::stdin`] and friends or consumed by
//! [`Child::wait_with_output`].
//!
//! ```
//! use std::process::{Command, Stdio};
//!
//! xev::block_on(async {
//!     let mut child = xev::process::spawn(
//!         Command::new("tr").arg("a-z").arg("A-Z").stdin(Stdio::piped()).stdout(Stdio::piped()),
//!     )?;
//!     let stdin = child.stdin.take().unwrap();
//!     stdin.write_all(b"shout\n".to_vec()).await.0?;
//!     drop(stdin); // end of input
//!     let out = child.wait_with_output().await?;
//!     assert!(out.status.success());
//!     assert_eq!(out.stdout, b"SHOUT\n");
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ```
//! use std::process::Command;
//!
//! xev::block_on(async {
//!     let status = xev::process::status(Command::new("sh").args(["-c", "exit 3"])).await?;
//!     assert_eq!(status.code(), Some(3));
//!
//!     let mut child = xev::process::spawn(&mut Command::new("sleep").arg("10"))?;
//!     child.kill()?;
//!     let status = child.wait().await?;
//!     # use std::os::unix::process::ExitStatusExt;
//!     assert_eq!(status.signal(), Some(libc::SIGKILL));
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod orphans;
mod output;

use crate::sys::fd::{AsRawFd, OwnedFd};
use std::io;
use std::process::{Command, ExitStatus};

pub use output::output;

use super::io::mismatch;
use super::op_future::{FdKeeper, OpFuture};
use crate::op::{Op, PollEvents};
use crate::result::OpResult;
use crate::watcher::process::{reap, Process};

/// Spawn `cmd` (as [`Command::spawn`]) and open a pidfd to await its exit.
///
/// The pidfd is opened by pid right after the spawn (std's `CLONE_PIDFD` support is not
/// stable) and checked to name an unreaped child of this process, so a child reaped
/// behind xev's back in between (`waitpid(-1, ..)` elsewhere, `SIGCHLD` set to
/// `SIG_IGN`) is an `ECHILD` or `ESRCH` error, never a handle on whatever process has
/// its pid now. The one case no check can see, and which needs such a reaping *and* a
/// full turn of the pid space within microseconds, is at
/// [`Process::new`].
///
/// Errors are `Command::spawn`'s (a missing program is `NotFound`), or the pidfd's
/// (`ENOSYS` before Linux 5.3, fd limits): in that case the just-started child is killed
/// and reaped before the error is returned, so no process is left behind untracked.
/// After `ECHILD`/`ESRCH` (the child was reaped elsewhere) nothing is sent to its pid.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    // Children of dropped `Child`s that have exited since the last spawn.
    orphans::reap_exited();
    let mut child = cmd.spawn()?;
    let process = match Process::new(child.id()) {
        Ok(p) => p,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ECHILD | libc::ESRCH)) => {
            // Reaped by someone else: the pid may name another process now.
            return Err(e);
        }
        Err(e) => {
            // The child is ours and (unless reaped behind our back, as above, which
            // the error does not suggest) not reaped yet: its pid is still its own.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Child {
        stdin: child
            .stdin
            .take()
            .map(|p| ChildStdin::from(OwnedFd::from(p))),
        stdout: child
            .stdout
            .take()
            .map(|p| ChildStdout::from(OwnedFd::from(p))),
        stderr: child
            .stderr
            .take()
            .map(|p| ChildStderr::from(OwnedFd::from(p))),
        process,
        status: None,
    })
    // `child` (now without pipes) is dropped: that neither waits nor kills.
}

/// Run `cmd` to the end and return its exit status, like [`Command::status`] but
/// without blocking the thread: [`spawn`] then [`Child::wait`]. The child inherits this
/// process's stdin, stdout and stderr unless `cmd` says otherwise.
///
/// # Panics
/// When awaited outside a runtime.
pub async fn status(cmd: &mut Command) -> io::Result<ExitStatus> {
    spawn(cmd)?.wait().await
}

/// The child's stdin as an async pipe end (write to it; drop or
/// [`close`](crate::pipe::Sender::close) it to send end of file).
pub type ChildStdin = crate::pipe::Sender;

/// The child's stdout as an async pipe end.
pub type ChildStdout = crate::pipe::Receiver;

/// The child's stderr as an async pipe end.
pub type ChildStderr = crate::pipe::Receiver;

/// A spawned child process; see [`spawn`].
///
/// Its pipes (set `Stdio::piped()` on the `Command` to get them) are async pipe ends,
/// switched to non-blocking mode at spawn time; `take()` them to use them in other
/// tasks. Writing to [`stdin`](Self::stdin) after the child closed its end (or exited)
/// is a [`BrokenPipe`](io::ErrorKind::BrokenPipe) error, never a `SIGPIPE`.
///
/// The child is reaped by [`wait`](Self::wait) or [`try_wait`](Self::try_wait); after
/// that, both keep returning the same status. Dropping a `Child` does not kill the
/// process (like `std`), but, unlike `std`, it does not leave it a zombie either: a
/// dropped child that has exited is reaped in the drop, and one still running is reaped
/// after it exits, by a later [`spawn`] (or [`status`] or [`output`]) on any thread
/// (as tokio does, without its `SIGCHLD` handler). So a [`status`] future dropped by a
/// timeout leaks nothing. Do not reap a child by other means (`waitpid(-1, ..)`
/// elsewhere); its wait would then fail with `ECHILD`.
#[derive(Debug)]
pub struct Child {
    /// The child's stdin, if `Stdio::piped()` was set. [`wait`](Self::wait) closes it
    /// first, as `std` does, so that a child reading its input to the end can exit.
    pub stdin: Option<ChildStdin>,
    /// The child's stdout, if `Stdio::piped()` was set.
    pub stdout: Option<ChildStdout>,
    /// The child's stderr, if `Stdio::piped()` was set.
    pub stderr: Option<ChildStderr>,
    /// The pidfd, through the callback watcher (which shares it with nothing here).
    process: Process,
    /// Set once the child has been reaped.
    status: Option<ExitStatus>,
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_none() {
            orphans::adopt(self.process.fd.clone(), self.process.pid());
        }
    }
}

impl Child {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.process.pid()
    }

    /// Wait for the child to exit and reap it. Closes [`stdin`](Self::stdin) first.
    ///
    /// Waiting is a poll of the pidfd on the loop, so other tasks run meanwhile; dropping
    /// the future cancels the wait and leaves the child unreaped (wait again later).
    /// Once the child has been reaped, this returns the same status at once.
    ///
    /// # Panics
    /// When awaited outside a runtime.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let fd = self.process.fd.as_raw_fd();
            // The poll keeps the pidfd open until it is over, even if this future and
            // the child are dropped first.
            let poll = Op::Poll {
                fd,
                events: PollEvents::IN,
            };
            let keep = FdKeeper::Shared(self.process.fd.clone());
            match OpFuture::keeping(poll, Some(keep)).await.0 {
                // Readable: reap on the next turn of the loop above. A spurious
                // readiness (nothing to reap yet) simply polls again.
                OpResult::Poll(Ok(_)) => {}
                OpResult::Poll(Err(e)) => return Err(e.into()),
                other => return Err(mismatch(&other)),
            }
        }
    }

    /// Reap the child if it has exited, without waiting: `Ok(Some(status))` then (and
    /// for every later call), `Ok(None)` while it is still running. One non-blocking
    /// `waitid`; needs no runtime.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let status = reap(self.process.fd.as_raw_fd(), self.process.pid())?.map(ExitStatus::from);
        self.status = status;
        Ok(status)
    }

    /// Kill the child with `SIGKILL` (then [`wait`](Self::wait) to reap it). `Ok(())` if
    /// it has already exited, as with `std`.
    pub fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Send `signal` (`libc::SIGTERM`, ...) to the child. The signal goes through the
    /// pidfd (`pidfd_send_signal(2)`), so it can never hit another process that reused
    /// the pid. `Ok(())` without sending anything if the child has already been reaped.
    pub fn signal(&mut self, signal: i32) -> io::Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let (fd, pid) = (self.process.fd.as_raw_fd(), self.process.pid());
        match crate::sys::signal_child(fd, pid as libc::pid_t, signal) {
            // The process is gone (nothing left to signal): not an error for us.
            Err(e) if e.raw_os_error() != Some(libc::ESRCH) => Err(e),
            _ => Ok(()),
        }
    }
}
