//! The macOS/BSD side of [`Signal`](super::signal::Signal): a self-pipe. These kernels
//! have no signalfd, so `Signal::new` installs a handler for its signals that writes one
//! 128-byte record per delivery (the signal number in the first 4 bytes, like
//! `signalfd_siginfo`) into a pipe whose read end the `Signal` owns; the watcher reads
//! that end exactly as it reads a signalfd on Linux.
//!
//! The handler writes to a fixed fd number per signal (allocated once, never closed):
//! a new `Signal` points it at its own pipe with `dup2`, and dropping that `Signal`
//! points it at `/dev/null`, so a handler running concurrently never writes to a closed
//! or reused descriptor. The latest `Signal` for a signal number receives it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

use super::signal::SIGINFO_SIZE;

/// One past the largest signal number handled.
const NSIG: usize = 129;

/// Per signal: the fd number the handler writes to (-1: none yet).
static TARGET: [AtomicI32; NSIG] = [const { AtomicI32::new(-1) }; NSIG];
/// Per signal: the id of the `Signal` the target points at (0: none). Changed under LOCK.
static OWNER: [AtomicU64; NSIG] = [const { AtomicU64::new(0) }; NSIG];
static LOCK: Mutex<()> = Mutex::new(());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

extern "C" fn handler(sig: libc::c_int) {
    let Some(t) = usize::try_from(sig).ok().and_then(|s| TARGET.get(s)) else {
        return;
    };
    let fd = t.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let mut rec = [0u8; SIGINFO_SIZE];
    rec[..4].copy_from_slice(&(sig as u32).to_ne_bytes());
    // SAFETY: errno is this thread's; write(2) is async-signal-safe and reads our buffer;
    // the write end is non-blocking, so a full pipe drops the record instead of blocking.
    unsafe {
        let errno = *crate::sys::errno_ptr();
        libc::write(fd, rec.as_ptr().cast(), rec.len());
        *crate::sys::errno_ptr() = errno;
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Point signal `s`'s fixed target fd at `fd` (allocating the target on first use).
fn point(s: usize, fd: RawFd) -> io::Result<()> {
    let t = TARGET[s].load(Ordering::Relaxed);
    if t < 0 {
        // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd or -1.
        let n = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) })?;
        TARGET[s].store(n, Ordering::Relaxed);
    } else {
        // SAFETY: `t` is our permanent fd; dup2 atomically replaces what it refers to.
        cvt(unsafe { libc::dup2(fd, t) })?;
        // SAFETY: fcntl on our permanent fd (dup2 cleared its close-on-exec flag).
        unsafe { libc::fcntl(t, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// A registration of a pipe's write end as the target of some signals.
pub(crate) struct Registration {
    id: u64,
    signals: Vec<i32>,
    _write: OwnedFd,
}

/// Make the handler write `signals` into a new pipe: its read end, and the registration
/// that undoes it on drop. `signals` are valid, catchable signal numbers.
pub(crate) fn register(signals: &[i32]) -> io::Result<(OwnedFd, Registration)> {
    let (r, w) = crate::sys::pipe_cloexec_nonblocking()?;
    // Each signal joins `reg` once it points at the pipe, so a failure part way drops a
    // registration that points exactly those back at /dev/null (after the lock is let
    // go: the drop takes it). Left pointing at this pipe, whose read end is gone, they
    // would fill it for nobody, or raise SIGPIPE in the handler, and keep an owner id
    // that no drop ever resets.
    let mut reg = Registration {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        signals: Vec::with_capacity(signals.len()),
        _write: w,
    };
    let done = {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        signals.iter().try_for_each(|&s| {
            let i = usize::try_from(s)
                .ok()
                .filter(|&i| i < NSIG)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
            point(i, reg._write.as_raw_fd())?;
            OWNER[i].store(reg.id, Ordering::Relaxed);
            reg.signals.push(s);
            // SAFETY: sigaction is plain data; all-zero plus the fields below is valid.
            let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
            sa.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESTART;
            // SAFETY: `sa` is initialised (empty mask from zeroing); a null old action is
            // allowed.
            cvt(unsafe { libc::sigaction(s, &sa, std::ptr::null_mut()) }).map(drop)
        })
    };
    done?;
    Ok((r, reg))
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: open(2) of a constant NUL-terminated path.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        for &s in &self.signals {
            let i = s as usize;
            if OWNER[i].load(Ordering::Relaxed) == self.id && null >= 0 {
                // The handler stays installed (restoring the default action could kill
                // the process for a signal already on its way): it writes to /dev/null.
                let _ = point(i, null);
                OWNER[i].store(0, Ordering::Relaxed);
            }
        }
        if null >= 0 {
            // SAFETY: our own fd from open above.
            unsafe { libc::close(null) };
        }
    }
}
