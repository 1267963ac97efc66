//! [`Signal`]: receive Unix signals (SIGINT, SIGTERM, SIGHUP, SIGUSR1, ...) as loop
//! callbacks, through a Linux signalfd. (libxev has no signal watcher.)
//!
//! On macOS and the BSDs (no signalfd) the same API runs over a self-pipe fed by a
//! signal handler (`signal_pipe.rs`): there [`Signal::new`] installs a handler instead
//! of blocking the signals, the latest `Signal` of a signal number receives it, and
//! dropping it leaves the handler installed, discarding later deliveries. The mask notes
//! below are Linux's. Type-checked on those systems, not run there.
//!
//! # Signal masks: what you must know
//!
//! A signalfd only reports signals that are *blocked*, otherwise they are delivered the
//! usual way (a handler, or the default action, which for most signals kills the
//! process). [`Signal::new`] therefore blocks its signals in the **calling thread**
//! (`pthread_sigmask`). Consequences:
//!
//! - The signal mask is per thread, and a new thread inherits its creator's mask.
//! - A *process-directed* signal (`kill(pid, sig)`, Ctrl-C from a terminal, a service
//!   manager's SIGTERM) is delivered to any one thread that does not block it. If some
//!   thread does not block it, that thread may take it (and the default action kills the
//!   whole process) instead of the signalfd seeing it.
//! - **xev's own threads** (the [`ThreadPool`](crate::ThreadPool) behind
//!   `spawn_blocking`, file I/O on the poll backend and `fs` opens) block every
//!   asynchronous signal from the moment they start (only the synchronous SIGSEGV,
//!   SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGSYS stay unblocked), so they never take a
//!   process-directed signal, whenever they were started.
//! - **Your own threads** (`std::thread::spawn`, other libraries' threads) must block the
//!   signals too: create the `Signal` on the main thread **before spawning them** (they
//!   inherit the mask), or block the signals in each of them with `pthread_sigmask`
//!   (e.g. at the top of the thread's function).
//! - A *thread-directed* signal (`raise`, `pthread_kill`, `tgkill`) is only visible to
//!   the signalfd reads of that thread. The read runs on the loop's thread, so run the
//!   loop on the thread that created the `Signal` (or on one whose mask blocks the
//!   signals too).
//!
//! Dropping the `Signal` closes the signalfd (once no wait is in flight) but **does not
//! unblock** the signals: unblocking could immediately deliver a pending signal with its
//! default action (terminating the process), and the drop may run on another thread than
//! the one whose mask was changed. Unblock them yourself with `pthread_sigmask` if you
//! need to, after consuming what is pending (e.g. `sigtimedwait` with a zero timeout).

#[cfg(target_os = "linux")]
use crate::sys::fd::FromRawFd;
use crate::sys::fd::{AsRawFd, OwnedFd};
use std::fmt;
use std::io;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion, FdKind};
use crate::event_loop::Loop;
use crate::op::{Buffer, Op};
use crate::result::{Error, OpResult, ReadError};

use super::mismatch;

/// Size of one `struct signalfd_siginfo` (128 bytes).
#[cfg(target_os = "linux")]
pub(crate) const SIGINFO_SIZE: usize = mem::size_of::<libc::signalfd_siginfo>();
/// Size of one record of the self-pipe (as a `signalfd_siginfo`: 128 bytes).
#[cfg(not(target_os = "linux"))]
pub(crate) const SIGINFO_SIZE: usize = 128;

/// A set of signals delivered to the loop instead of to handlers.
///
/// Each [`wait`](Self::wait) callback receives one signal number; return
/// [`CallbackAction::Rearm`] to receive the next one. Standard signals do not queue: a
/// signal raised again while still pending is reported once. Read the
/// [module docs](self) about signal masks before using it in a threaded program.
///
/// ```
/// use std::{cell::Cell, pin::pin, rc::Rc};
/// use xev::watcher::signal::Signal;
/// use xev::{CallbackAction, Completion, Loop, Options, RunMode};
///
/// let mut c = pin!(Completion::new());
/// let mut lp = Loop::new(Options::default())?;
/// let sig = Signal::new(&[libc::SIGUSR1])?; // blocks SIGUSR1 in this thread
/// let got = Rc::new(Cell::new(0));
/// sig.wait(&mut lp, c.as_mut(), got.clone(), |got, _lp, _c, r| {
///     got.set(r.expect("signal"));
///     CallbackAction::Disarm
/// });
/// // SAFETY: plain raise(3); SIGUSR1 is blocked here, so it stays pending for the fd.
/// unsafe { libc::raise(libc::SIGUSR1) };
/// lp.run(RunMode::UntilDone)?;
/// assert_eq!(got.get(), libc::SIGUSR1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Signal {
    /// The signalfd, shared with the callback of a queued wait so that it stays open
    /// while the read is in flight.
    pub(crate) fd: Arc<OwnedFd>,
    signals: Vec<i32>,
    /// The self-pipe registration (macOS/BSD), undone on drop.
    #[cfg(not(target_os = "linux"))]
    _reg: super::signal_pipe::Registration,
}

impl Signal {
    /// Block `signals` in the calling thread and open a signalfd (non-blocking,
    /// close-on-exec) for them. On macOS and the BSDs: install the self-pipe's handler
    /// for them instead (nothing is blocked; see the [module docs](self)).
    ///
    /// Errors with `InvalidInput` for an empty list, an invalid signal number, or
    /// `SIGKILL`/`SIGSTOP` (which cannot be blocked or caught); nothing is blocked then.
    pub fn new(signals: &[i32]) -> io::Result<Signal> {
        if signals.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Signal::new needs at least one signal",
            ));
        }
        // SAFETY: sigset_t is plain data; sigemptyset initialises it below.
        let mut set: libc::sigset_t = unsafe { mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t we own.
        unsafe { libc::sigemptyset(&mut set) };
        for &s in signals {
            // SAFETY: `set` is a valid, initialised sigset_t; a bad number just fails.
            if s == libc::SIGKILL
                || s == libc::SIGSTOP
                || unsafe { libc::sigaddset(&mut set, s) } != 0
            {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("signal {s} cannot be watched"),
                ));
            }
        }
        let mut signals = signals.to_vec();
        signals.sort_unstable();
        signals.dedup();
        #[cfg(not(target_os = "linux"))]
        {
            let _ = set;
            let (fd, reg) = super::signal_pipe::register(&signals)?;
            Ok(Signal {
                fd: Arc::new(fd),
                signals,
                _reg: reg,
            })
        }
        #[cfg(target_os = "linux")]
        {
            // SAFETY: `set` is initialised; signalfd(-1, ..) creates a new fd or returns -1.
            let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `fd` is a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // Block only once the fd exists, so a failure leaves the mask untouched.
            // SAFETY: `set` is initialised; a null old-set pointer is allowed.
            let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
            if r != 0 {
                return Err(io::Error::from_raw_os_error(r));
            }
            if signals.contains(&libc::SIGPIPE) {
                // A loop of this thread may have blocked it for its writes: the block is
                // this fd's now, and the loop's end must not undo it (`sigpipe.rs`).
                crate::sigpipe::keep_blocked();
            }
            Ok(Signal {
                fd: Arc::new(fd),
                signals,
            })
        }
    }

    /// The watched signal numbers, sorted.
    pub fn signals(&self) -> &[i32] {
        &self.signals
    }

    /// Wait for one of the signals: `cb` runs with its number (`libc::SIGUSR1`, ...), or
    /// with `Err(Error::Canceled)` if the wait is cancelled. Returning
    /// [`CallbackAction::Rearm`] waits for the next one.
    ///
    /// The wait is an [`Op::Read`] of one 128-byte `signalfd_siginfo` into a buffer the
    /// completion owns (allocated here once, reused by every rearm).
    pub fn wait<U, F>(&self, lp: &mut Loop, c: Pin<&mut Completion>, userdata: U, cb: F)
    where
        U: 'static,
        F: FnMut(&mut U, &mut Loop, Pin<&mut Completion>, Result<i32, Error>) -> CallbackAction
            + 'static,
    {
        let fd = Arc::clone(&self.fd);
        let op = Op::Read {
            fd: fd.as_raw_fd(),
            buf: Buffer::from(vec![0u8; SIGINFO_SIZE]),
        };
        let (mut ud, mut cb) = (userdata, cb);
        // A signalfd is never a regular file, and it stays open (this callback holds it),
        // so the poll backend need not ask the kernel what it is, at the start nor at a
        // rearm.
        lp.start_on_kind(
            c,
            op,
            || FdKind::Readiness,
            move |lp, c, r| {
                // Keeps the signalfd open while the read is in flight.
                let _fd = &fd;
                let r = match r {
                    OpResult::Read(Ok(n)) => signo(c.buffer().map(Buffer::as_slice), n),
                    OpResult::Read(Err(ReadError::Canceled)) => Err(Error::Canceled),
                    OpResult::Read(Err(ReadError::Io(e))) => Err(Error::Io(e)),
                    OpResult::Read(Err(ReadError::Eof)) => Err(Error::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "signalfd read returned no data",
                    ))),
                    _ => Err(mismatch()),
                };
                cb(&mut ud, lp, c, r)
            },
        );
    }
}

/// The signal number in the first `n` bytes read from a signalfd.
pub(crate) fn signo(buf: Option<&[u8]>, n: usize) -> Result<i32, Error> {
    match buf {
        Some(b) if n == SIGINFO_SIZE && b.len() >= SIGINFO_SIZE => {
            // `ssi_signo` is the first field of `struct signalfd_siginfo`.
            let no = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            Ok(no as i32)
        }
        _ => Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("signalfd read returned {n} bytes, expected {SIGINFO_SIZE}"),
        ))),
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal")
            .field("fd", &self.fd.as_raw_fd())
            .field("signals", &self.signals)
            .finish()
    }
}
