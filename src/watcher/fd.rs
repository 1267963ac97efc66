//! [`SharedFd`]: the descriptor of an I/O watcher ([`Stream`](super::stream::Stream),
//! [`Tcp`](super::tcp::Tcp), [`File`](super::file::File), [`Udp`](super::udp::Udp)),
//! shared by the watcher and every operation started through it, so the descriptor stays
//! open, and its number cannot be reused by another file, until the last of them is done.
//!
//! - A direct operation (`read`, `write`, `accept`, ...) keeps a clone in its callback
//!   from the start until its callback returns `Disarm` (a `Rearm` keeps it for the
//!   repeat). A queued write keeps one in its request until its callback has run.
//! - While a callback runs, its clone is *lent* to the thread ([`lending`]): the
//!   operation is not in flight then, so closing or unwrapping the watcher inside its own
//!   callback (the usual "EOF, close" step) takes the clone back and finds the
//!   descriptor unshared. If the callback then asks for a `Rearm`, the repeat gets
//!   `EBADF` (its descriptor number is poisoned), never another file.
//! - Closing a watcher whose descriptor is still held elsewhere (an operation in flight
//!   on another completion, queued writes) cancels what is pending on the file, marks it
//!   closed (queued writes not yet started fail with `Canceled`), and lets the last
//!   holder close it; see [`close_op`].

use crate::sys::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;

use crate::completion::{CallbackAction, Completion, FdKind};
use crate::event_loop::Loop;
use crate::op::Op;

/// An owned descriptor plus a "closed through the loop" mark, behind an `Arc`.
#[derive(Debug)]
pub(crate) struct SharedFd {
    fd: OwnedFd,
    /// Set when the watcher was closed while others still held the descriptor.
    closed: AtomicBool,
    /// What the file is, once asked (see [`kind`](Self::kind)): `KIND_UNKNOWN` until then.
    kind: AtomicU8,
}

const KIND_UNKNOWN: u8 = 0;
const KIND_READINESS: u8 = 1;
const KIND_BLOCKING: u8 = 2;

impl SharedFd {
    /// Share `fd`.
    pub(crate) fn new(fd: OwnedFd) -> Arc<SharedFd> {
        Arc::new(SharedFd {
            fd,
            closed: AtomicBool::new(false),
            kind: AtomicU8::new(KIND_UNKNOWN),
        })
    }

    /// Whether the file is one readiness can wait on or a regular file / block device
    /// (the poll backend's thread-pool work): asked of the kernel (`fstat`) the first
    /// time only. The descriptor is owned and open as long as `self` lives, so its number
    /// names the same file all along (the poll backend asks per operation for a raw fd).
    pub(crate) fn kind(&self) -> FdKind {
        match self.kind.load(Ordering::Relaxed) {
            KIND_READINESS => FdKind::Readiness,
            KIND_BLOCKING => FdKind::Blocking,
            _ => {
                let blocking = crate::sys::is_blocking_file(self.raw());
                let (k, kind) = if blocking {
                    (KIND_BLOCKING, FdKind::Blocking)
                } else {
                    (KIND_READINESS, FdKind::Readiness)
                };
                self.kind.store(k, Ordering::Relaxed);
                kind
            }
        }
    }

    /// The descriptor number (open as long as `self` lives).
    pub(crate) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Whether the watcher was closed while this descriptor was still held.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

crate::sys::fd::impl_as_fd!(
    SharedFd,
    |this| this.raw(),
    crate::sys::fd::AsFd::as_fd(&this.fd)
);

thread_local! {
    /// The descriptor of the operation whose callback is running on this thread: the
    /// operation's clone as `Arc::into_raw` (the reference is this slot's), or null. A
    /// raw pointer rather than an `Option<Arc>` so that the slot has no destructor: each
    /// access is then a plain thread-local load or store, without the lazy registration
    /// check (two per callback, ~40 instructions of a rearmed receive's ~990 under
    /// callgrind). Only [`lending`], while its guard lives, and [`reclaim`] touch it.
    static LENT: Cell<*const SharedFd> = const { Cell::new(std::ptr::null()) };
}

/// Run `f` (an operation's callback) with `keep`, the operation's clone of its
/// descriptor, lent to the thread; afterwards `keep` holds it again, or `None` if the
/// watcher took it back (closed or unwrapped inside `f`). Panic-safe; nests (a callback
/// of one loop may run another loop).
pub(crate) fn lending<R>(keep: &mut Option<Arc<SharedFd>>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous lender back and `keep`'s clone (if not taken) into `keep`.
    struct Return<'a> {
        keep: &'a mut Option<Arc<SharedFd>>,
        prev: *const SharedFd,
    }
    impl Drop for Return<'_> {
        fn drop(&mut self) {
            let mine = LENT.with(|l| l.replace(self.prev));
            // SAFETY: a non-null slot holds the reference `lending` put there with
            // `Arc::into_raw` (a `reclaim` that took it left null); taken out of the slot
            // just now, it is reconstituted once.
            *self.keep = (!mine.is_null()).then(|| unsafe { Arc::from_raw(mine) });
        }
    }
    let lent = keep.take().map_or(std::ptr::null(), Arc::into_raw);
    let prev = LENT.with(|l| l.replace(lent));
    let _back = Return { keep, prev };
    f()
}

/// Take back the clone of `fd` lent by the callback running now, if it is one of `fd`.
fn reclaim(fd: &Arc<SharedFd>) {
    LENT.with(|l| {
        let cur = l.get();
        if !cur.is_null() && std::ptr::eq(cur, Arc::as_ptr(fd)) {
            l.set(std::ptr::null());
            // SAFETY: the slot's reference (see `LENT`), taken out of it just now.
            drop(unsafe { Arc::from_raw(cur) });
        }
    });
}

/// After a watcher callback on `c` returned `action` (`had`: the operation held a clone
/// when the callback started): drop the clone on `Disarm`; on a `Rearm` whose clone was
/// taken back (the watcher was closed or unwrapped in the callback), poison the
/// operation's descriptor so the repeat fails with `EBADF`.
pub(crate) fn after_callback(
    keep: &mut Option<Arc<SharedFd>>,
    had: bool,
    c: Pin<&mut Completion>,
    action: CallbackAction,
) -> CallbackAction {
    match action {
        CallbackAction::Disarm => *keep = None,
        CallbackAction::Rearm if had && keep.is_none() => poison(c),
        CallbackAction::Rearm => {}
    }
    action
}

/// Set the descriptor of `c`'s operation to -1, unless the callback re-prepared `c`
/// (then the operation is the user's new one) or re-added it (the rearm is ignored).
fn poison(mut c: Pin<&mut Completion>) {
    // SAFETY: we are inside `c`'s callback on the loop thread. The loop moved the
    // callback out of the completion for the call, so the slot is non-empty only if the
    // user prepared `c` again; reading it through the raw pointer conflicts with nothing
    // (the `&mut` we hold is not used meanwhile).
    let reprepared = unsafe {
        let ptr = NonNull::from(c.as_mut().get_unchecked_mut());
        !(*Completion::raw(ptr)).callback.is_empty()
    };
    if reprepared {
        return;
    }
    if let Some(fd) = c.op_mut().and_then(Op::borrowed_fd_mut) {
        *fd = crate::sys::fd::NO_FD;
    }
}

/// The operation that closes `fd` for a watcher's `close`.
///
/// If nothing else holds the descriptor (the usual case, also inside the watcher's own
/// callback), that is `Op::Close` of it. Otherwise the descriptor is marked closed,
/// operations waiting for readiness on it are cancelled (poll backend), and a duplicate
/// is closed instead: on io_uring its close first cancels every request on the same
/// file; the original closes when the last holder lets go. An error duplicating (e.g.
/// `EMFILE`) is returned; then nothing in flight is cancelled on io_uring.
pub(crate) fn close_op(lp: &mut Loop, fd: Arc<SharedFd>) -> io::Result<Op> {
    reclaim(&fd);
    let shared = match Arc::try_unwrap(fd) {
        Ok(only) => return Ok(Op::close(only.fd)),
        Err(shared) => shared,
    };
    shared.closed.store(true, Ordering::Release);
    lp.fd_closed(shared.raw());
    dup(shared.raw()).map(Op::close)
}

/// The descriptor itself for `From<watcher> for OwnedFd`: `fd` if nothing else holds it,
/// else a duplicate (the operations holding the original keep using it).
///
/// # Panics
/// If operations still hold the descriptor and it cannot be duplicated (`EMFILE`).
pub(crate) fn into_owned(fd: Arc<SharedFd>) -> OwnedFd {
    reclaim(&fd);
    match Arc::try_unwrap(fd) {
        Ok(only) => only.fd,
        Err(shared) => dup(shared.raw()).unwrap_or_else(|e| {
            panic!("xev: cannot duplicate a descriptor still used by operations in flight: {e}")
        }),
    }
}

/// A close-on-exec duplicate of `fd`.
fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    let d = crate::sys::dup_cloexec(fd)?;
    // SAFETY: `d` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(d) })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn shared() -> Arc<SharedFd> {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        SharedFd::new(OwnedFd::from(a))
    }

    fn lent_now() -> bool {
        LENT.with(|l| !l.get().is_null())
    }

    /// A lent clone comes back after the callback, unless the callback took it back; a
    /// nested lending restores the outer one; a panic still returns the clone; no
    /// reference is leaked or dropped twice (Miri checks the raw-pointer round trips).
    #[test]
    fn a_lent_clone_comes_back_unless_taken_back() {
        let fd = shared();
        let mut keep = Some(fd.clone());
        lending(&mut keep, || {
            assert!(lent_now());
            assert_eq!(Arc::strong_count(&fd), 2);
        });
        assert!(!lent_now());
        assert!(keep.is_some());
        assert_eq!(Arc::strong_count(&fd), 2);

        // Taken back (a close inside the callback): its reference is dropped there.
        lending(&mut keep, || {
            reclaim(&fd);
            assert!(!lent_now());
            assert_eq!(Arc::strong_count(&fd), 1);
        });
        assert!(keep.is_none());

        // Nested: the inner callback's take-back of the outer fd does nothing (it is not
        // the fd lent now); the outer one's does.
        let other = shared();
        let (mut outer, mut inner) = (Some(fd.clone()), Some(other.clone()));
        lending(&mut outer, || {
            lending(&mut inner, || reclaim(&fd));
            reclaim(&fd);
        });
        assert!(outer.is_none());
        assert!(inner.is_some());
        assert_eq!((Arc::strong_count(&fd), Arc::strong_count(&other)), (1, 2));

        // A panicking callback: the clone is back and nothing is lent.
        let mut keep = Some(fd.clone());
        let r = catch_unwind(AssertUnwindSafe(|| {
            lending(&mut keep, || panic!("callback"))
        }));
        assert!(r.is_err());
        assert!(keep.is_some());
        assert!(!lent_now());
        // Nothing lent: a take-back is a no-op.
        reclaim(&fd);
        assert_eq!(Arc::strong_count(&fd), 2);
    }
}
