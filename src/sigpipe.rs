//! `SIGPIPE` never kills a loop: [`Op::Write`](crate::Op::Write) to a pipe (or FIFO)
//! whose reading end is closed completes with `EPIPE`, on every backend, even in a
//! process that has `SIGPIPE` at its default action (a C host, `-Zon-broken-pipe=kill`).
//!
//! **Why this is needed.** `write(2)` to a pipe with no reader sends `SIGPIPE` to the
//! writing *thread* (`send_sig(SIGPIPE, current)` in the kernel's `pipe_write`), and
//! pipes have no `MSG_NOSIGNAL`. On the poll backend the writer is the loop's thread. On
//! io_uring the write is issued inline by `io_uring_enter` or retried from task work,
//! both in the thread that owns the ring (the loop's thread), or, if it was punted, in an
//! io-wq worker, which blocks every signal (such a signal stays pending on the worker and
//! dies with it). Threads of the crate's pool block every asynchronous signal already.
//!
//! **Where.** Linux, FreeBSD, DragonFly and NetBSD, as described here (a `write(2)` to a
//! broken pipe signals the writing thread on the BSDs too). macOS has no `sigtimedwait`:
//! there the fds themselves are made signal-free instead (see `imp` below).
//!
//! **Mechanism.** The first time a loop starts an `Op::Write` (or `Op::Writev`), it blocks `SIGPIPE` in
//! its own thread (one `pthread_sigmask`; a predictable branch per write afterwards). A
//! thread-directed signal that is blocked stays pending on that thread and is never
//! delivered. When the last loop of the thread that did so is dropped, a `SIGPIPE`
//! pending by then is consumed (`sigtimedwait` with a zero timeout) and the thread's
//! previous mask for `SIGPIPE` is restored. If `SIGPIPE` was blocked already, nothing is
//! changed and nothing is consumed. The alternative, blocking and unblocking around each
//! write, costs two more system calls per write on the poll backend, and on io_uring
//! would have to cover every `io_uring_enter` and, without `DEFER_TASKRUN`, every return
//! to user space where task work may run: not sound without holding the block anyway.
//!
//! **Visible effects.** While such a loop lives, its thread has `SIGPIPE` blocked: a
//! `write(2)` to a broken pipe by other code on that thread also gets `EPIPE` instead of
//! the signal, a process-directed `SIGPIPE` (`kill -PIPE`) goes to another thread, and
//! children forked by non-Rust code on that thread inherit the mask (`std::process`
//! resets it in the child). Consuming the pending signal at the end could also take a
//! process-directed `SIGPIPE` that arrived while every thread blocked it. On Linux a
//! [`Signal`](crate::watcher::signal::Signal) for `SIGPIPE` created on the thread
//! meanwhile takes the block over (`keep_blocked`): the end then neither consumes nor
//! unblocks, so its signalfd keeps hearing `SIGPIPE`
//! (`watcher_signal.rs::a_sigpipe_signal_keeps_hearing_after_the_loops_that_blocked_it_end`).
//! On the BSDs (where a `Signal` is a handler) a `SIGPIPE` raised on such a thread while
//! the loop lives is still consumed at its end.

#[cfg(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd"
))]
mod imp {
    use std::cell::Cell;
    use std::mem::MaybeUninit;
    use std::ptr;

    /// This thread's hold on the `SIGPIPE` block.
    struct Holds {
        /// Loops of this thread that hold it.
        count: Cell<usize>,
        /// Whether the first holder blocked it (it was unblocked before).
        blocked_by_us: Cell<bool>,
    }

    thread_local! {
        static HOLDS: Holds = const {
            Holds { count: Cell::new(0), blocked_by_us: Cell::new(false) }
        };
    }

    fn sigpipe_set() -> libc::sigset_t {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set; adding a valid signal cannot fail.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
            set.assume_init()
        }
    }

    /// Take a hold for a loop of this thread: block `SIGPIPE` here if it is not blocked.
    /// False if the thread is exiting (its thread-locals are gone; nothing was done).
    pub(crate) fn hold() -> bool {
        HOLDS
            .try_with(|h| {
                if h.count.get() == 0 {
                    let set = sigpipe_set();
                    let mut old = MaybeUninit::<libc::sigset_t>::uninit();
                    // SAFETY: pthread_sigmask reads `set` and writes the old mask into `old`.
                    let r =
                        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr()) };
                    // SAFETY: on success `old` was written; sigismember only reads it.
                    let was_blocked =
                        r != 0 || unsafe { libc::sigismember(old.as_ptr(), libc::SIGPIPE) } == 1;
                    h.blocked_by_us.set(!was_blocked);
                }
                h.count.set(h.count.get() + 1);
            })
            .is_ok()
    }

    /// Someone else on this thread wants `SIGPIPE` blocked from now on (a signalfd
    /// `Signal` for it, which reads the pending one and never unblocks): the last
    /// release leaves the block and the pending signal alone.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn keep_blocked() {
        let _ = HOLDS.try_with(|h| h.blocked_by_us.set(false));
    }

    /// Give back a hold taken by [`hold`]; the last one consumes a pending `SIGPIPE` and
    /// unblocks it, if the first one blocked it (and nobody asked [`keep_blocked`]).
    pub(crate) fn release() {
        let _ = HOLDS.try_with(|h| {
            let n = h.count.get().saturating_sub(1);
            h.count.set(n);
            if n > 0 || !h.blocked_by_us.replace(false) {
                return;
            }
            let set = sigpipe_set();
            let mut pending = MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: sigpending writes the pending set into `pending`.
            let has = unsafe { libc::sigpending(pending.as_mut_ptr()) } == 0
                // SAFETY: written by the successful sigpending.
                && unsafe { libc::sigismember(pending.as_ptr(), libc::SIGPIPE) } == 1;
            if has {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `set` is a valid set; a null siginfo is allowed; the zero
                // timeout makes it return at once (EAGAIN if nothing is pending).
                unsafe { libc::sigtimedwait(&set, ptr::null_mut(), &zero) };
            }
            // SAFETY: pthread_sigmask only reads `set`.
            unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut()) };
        });
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "freebsd",
    target_os = "dragonfly",
    target_os = "netbsd"
)))]
mod imp {
    // macOS has no `sigtimedwait` to consume a pending SIGPIPE, so the thread's mask is
    // left alone there. Instead the descriptors xev writes to never raise it: sockets
    // have SO_NOSIGPIPE (socket2, and `accept_nonblocking`), sends use MSG_NOSIGNAL, and
    // pipe ends xev creates or wraps (`pipe::Sender`/`Receiver`, child stdio, `Async`,
    // `Stream::pipe`) have F_SETNOSIGPIPE (`sys::set_nosigpipe`). Left: a pipe fd handed
    // to `Op::Write` directly, or wrapped by the callback `Stream::from`, in a process
    // whose SIGPIPE is not ignored (Rust binaries ignore it by default).
    pub(crate) fn hold() -> bool {
        false
    }
    pub(crate) fn release() {}
}

pub(crate) use imp::{hold, release};
// Only a signalfd `Signal` keeps the block (on the BSDs a `Signal` is a handler, which
// needs the signal unblocked).
#[cfg(target_os = "linux")]
pub(crate) use imp::keep_blocked;
