//! Child processes awaited by a task, on Windows: [`spawn`], [`Child`], [`status`] and
//! [`output`].
//!
//! The process is started with [`std::process::Command`]; waiting for its exit is a poll
//! on the loop of the socket that the system thread pool makes readable when the
//! process handle is signalled (see [`Process`], the callback watcher, which does the
//! same), so no thread blocks in [`Child::wait`]. The status is `GetExitCodeProcess`'s.
//!
//! Differences from Unix: the child's standard streams set to `Stdio::piped()` are
//! `std`'s blocking pipe ends (Windows pipes are not sockets, which is all the readiness
//! backend can wait for): use them on another thread or with
//! [`spawn_blocking`](crate::spawn_blocking), or let [`Child::wait_with_output`] /
//! [`output`] collect them, which run `std`'s blocking collection on the thread pool (a
//! pool thread then waits for the process; dropping the future lets it finish). There
//! are no signals: [`Child::kill`] is `TerminateProcess` (exit code 1). Nothing is
//! reaped: `try_wait` and `wait` keep returning the same status.
//!
//! ```no_run
//! use std::process::Command;
//!
//! xev::block_on(async {
//!     let status = xev::process::status(Command::new("cmd").args(["/C", "exit 3"])).await?;
//!     assert_eq!(status.code(), Some(3));
//!
//!     let mut child = xev::process::spawn(Command::new("ping").args(["-n", "30", "127.0.0.1"]))?;
//!     child.kill()?;
//!     assert_eq!(child.wait().await?.code(), Some(1));
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::windows::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};

use super::io::mismatch;
use super::op_future::{FdKeeper, OpFuture};
use crate::op::{Op, PollEvents};
use crate::result::OpResult;
use crate::watcher::process::Process;

/// Spawn `cmd` (as [`Command::spawn`]) and watch its handle for its exit. Errors are
/// `Command::spawn`'s (a missing program is `NotFound`), or those of setting up the
/// watch (socket or wait registration errors): the just-started child is then killed
/// before the error is returned, so no process is left behind untracked.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut child = cmd.spawn()?;
    let process = match Process::from_child(&child) {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    Ok(Child {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        child,
        process,
    })
}

/// Run `cmd` to the end and return its exit status, like [`Command::status`] but
/// without blocking the thread: [`spawn`] then [`Child::wait`].
///
/// # Panics
/// When awaited outside a runtime.
pub async fn status(cmd: &mut Command) -> io::Result<ExitStatus> {
    spawn(cmd)?.wait().await
}

/// Run `cmd` to its end and collect its output, like [`Command::output`] but with the
/// collection on the thread pool: its stdout and stderr are set to `Stdio::piped()`
/// (replacing what `cmd` said about them), then [`spawn`] and
/// [`Child::wait_with_output`]. Its stdin is inherited unless `cmd` says otherwise.
///
/// # Panics
/// When awaited outside a runtime.
pub async fn output(cmd: &mut Command) -> io::Result<Output> {
    spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()))?
        .wait_with_output()
        .await
}

/// A spawned child process; see [`spawn`] and the [module docs](self).
///
/// Dropping it neither kills the process nor waits for it (like `std`).
#[derive(Debug)]
pub struct Child {
    /// The child's stdin, if `Stdio::piped()` was set (`std`'s blocking pipe end).
    /// [`wait`](Self::wait) closes it first, as `std` does.
    pub stdin: Option<std::process::ChildStdin>,
    /// The child's stdout, if `Stdio::piped()` was set (blocking).
    pub stdout: Option<std::process::ChildStdout>,
    /// The child's stderr, if `Stdio::piped()` was set (blocking).
    pub stderr: Option<std::process::ChildStderr>,
    child: std::process::Child,
    process: Process,
}

impl Child {
    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the child to exit. Closes [`stdin`](Self::stdin) first.
    ///
    /// Waiting is a poll on the loop, so other tasks run meanwhile; dropping the future
    /// cancels the poll (wait again later). Once the child has exited, this returns its
    /// status at once, every time.
    ///
    /// # Panics
    /// When awaited outside a runtime.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        loop {
            if let Some(s) = self.try_wait()? {
                return Ok(s);
            }
            let poll = Op::Poll {
                fd: self.process.exit.raw(),
                events: PollEvents::IN,
            };
            // The poll keeps the socket open until it is over, even if this future and
            // the child are dropped first.
            let keep = FdKeeper::Shared(self.process.exit.shared_fd());
            match OpFuture::keeping(poll, Some(keep)).await.0 {
                OpResult::Poll(Ok(_)) => {}
                OpResult::Poll(Err(e)) => return Err(e.into()),
                other => return Err(mismatch(&other)),
            }
        }
    }

    /// The child's status if it has exited, without waiting (`Ok(None)` while it runs).
    /// Needs no runtime.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        Ok(self.process.exit.exit_code()?.map(ExitStatus::from_raw))
    }

    /// End the child (`TerminateProcess`, exit code 1; then [`wait`](Self::wait)).
    /// `Ok(())` if it has already exited, as with `std`.
    pub fn kill(&mut self) -> io::Result<()> {
        self.process.exit.kill()
    }

    /// Close [`stdin`](Self::stdin), collect what is left of [`stdout`](Self::stdout)
    /// and [`stderr`](Self::stderr) (both at once) and wait for the child, as
    /// `std::process::Child::wait_with_output`, on the thread pool. A stream that was not
    /// piped, or was taken out, is empty in the [`Output`].
    ///
    /// # Panics
    /// When awaited outside a runtime.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let mut child = self.child;
        child.stdout = self.stdout.take();
        child.stderr = self.stderr.take();
        crate::spawn_blocking(move || child.wait_with_output()).await?
    }
}
