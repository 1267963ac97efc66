//! Collecting a child's output: [`Child::wait_with_output`] and [`output`].

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::process::{Command, Output, Stdio};
use std::task::Poll;

use super::{spawn, Child, ChildStdout};

impl Child {
    /// Close [`stdin`](Self::stdin), read what is left of [`stdout`](Self::stdout) and
    /// [`stderr`](Self::stderr) to their ends (both at once, so a child that fills one
    /// pipe while this reads the other cannot deadlock), then wait for the child to exit
    /// (as `std::process::Child::wait_with_output`). A stream that was not piped, or was
    /// taken out, is empty in the [`Output`].
    ///
    /// The first read error is returned once both reads are over (the child is then not
    /// waited for; wait again or kill it). Dropping the future cancels the reads and the
    /// wait; the child is left running and unreaped.
    ///
    /// # Panics
    /// When awaited outside a runtime.
    pub async fn wait_with_output(mut self) -> io::Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) =
            join(read_all(self.stdout.take()), read_all(self.stderr.take())).await;
        let (stdout, stderr) = (stdout?, stderr?);
        let status = self.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

/// Run `cmd` to its end and collect its output, like [`Command::output`] but without
/// blocking the thread: its stdout and stderr are set to `Stdio::piped()` (replacing
/// what `cmd` said about them), then [`spawn`] and [`Child::wait_with_output`]. Its stdin
/// is left as `cmd` says (inherited by default; `std` makes it null here: set
/// `Stdio::null()` for that).
///
/// ```
/// use std::process::Command;
///
/// xev::block_on(async {
///     let out = xev::process::output(Command::new("sh").args(["-c", "echo out; echo err >&2"])).await?;
///     assert!(out.status.success());
///     assert_eq!(out.stdout, b"out\n");
///     assert_eq!(out.stderr, b"err\n");
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Panics
/// When awaited outside a runtime.
pub async fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output().await
}

/// Everything `pipe` delivers until end of file (nothing for no pipe).
async fn read_all(pipe: Option<ChildStdout>) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    if let Some(p) = pipe {
        p.read_to_end(&mut v).await?;
    }
    Ok(v)
}

/// Both outputs, the two futures polled in turn on the same task.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    poll_fn(|cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}
