//! [`Buffers`]: the buffers of one vectored operation ([`Op::Readv`](crate::Op::Readv),
//! [`Op::Writev`](crate::Op::Writev), [`Op::SendMsgV`](crate::Op::SendMsgV)) and the
//! `iovec` array the kernel reads to find them.
//!
//! Both live on the heap behind one `Box` owned by the operation, so a vectored
//! operation adds 8 bytes to its `Op` (a `Completion` does not grow), and the array
//! stays at one address for the operation's whole life: io_uring may read it at any
//! time until the completion arrives, and an orphaned operation (its future dropped)
//! keeps it, with the buffers, until then.

use std::fmt;

use crate::op::Buffer;

/// Several [`Buffer`]s that one vectored operation fills or sends in order.
///
/// A read fills the first buffer completely before the next one; its result is the
/// total byte count. Each buffer is used from its current start (after any
/// [`Buffer::advance`]) for its current length.
///
/// ```
/// use xev::{Buffer, Buffers};
///
/// let bufs = Buffers::from(vec![Buffer::inline(4), Buffer::from(vec![0u8; 60])]);
/// assert_eq!((bufs.len(), bufs.total_len()), (2, 64));
/// let back: Vec<Buffer> = bufs.into_vec();
/// assert_eq!(back[1].len(), 60);
/// ```
///
/// With a loop: the buffers stay in the operation, and the callback (or the caller,
/// once the completion is Dead) finds them in [`Completion::op`](crate::Completion::op).
///
/// ```
/// use std::io::Write;
/// use std::os::fd::AsRawFd;
/// use std::pin::pin;
/// use xev::{Buffer, Buffers, CallbackAction, Completion, Loop, Op, OpResult, Options, RunMode};
///
/// let (mut tx, rx) = std::os::unix::net::UnixStream::pair()?;
/// rx.set_nonblocking(true)?;
/// tx.write_all(b"head:body")?;
///
/// let mut lp = Loop::new(Options::default())?;
/// let mut c = pin!(Completion::new());
/// let bufs = Buffers::from(vec![Buffer::inline(5), Buffer::inline(16)]);
/// let op = Op::Readv { fd: rx.as_raw_fd(), bufs, offset: None };
/// lp.start(c.as_mut(), op, |_, c, r| {
///     assert!(matches!(r, OpResult::Readv(Ok(9))));
///     let Some(Op::Readv { bufs, .. }) = c.op() else { unreachable!() };
///     assert_eq!(bufs.as_slice()[0].as_slice(), b"head:");
///     assert_eq!(&bufs.as_slice()[1].as_slice()[..4], b"body");
///     CallbackAction::Disarm
/// });
/// lp.run(RunMode::UntilDone)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Buffers {
    parts: Box<Parts>,
}

struct Parts {
    bufs: Vec<Buffer>,
    /// Rebuilt from `bufs` each time the operation starts; its capacity is
    /// `bufs.len()`, so that never reallocates.
    iov: Vec<crate::sys::IoVec>,
}

impl Buffers {
    /// The buffers `bufs`, in order.
    pub fn new(bufs: Vec<Buffer>) -> Buffers {
        let iov = Vec::with_capacity(bufs.len());
        Buffers {
            parts: Box::new(Parts { bufs, iov }),
        }
    }

    /// Number of buffers.
    pub fn len(&self) -> usize {
        self.parts.bufs.len()
    }

    /// True when there are no buffers.
    pub fn is_empty(&self) -> bool {
        self.parts.bufs.is_empty()
    }

    /// Bytes in all the buffers together.
    pub fn total_len(&self) -> usize {
        self.parts.bufs.iter().map(Buffer::len).sum()
    }

    /// The buffers.
    pub fn as_slice(&self) -> &[Buffer] {
        &self.parts.bufs
    }

    /// The buffers, mutably (their number cannot change).
    pub fn as_mut_slice(&mut self) -> &mut [Buffer] {
        &mut self.parts.bufs
    }

    /// The buffers back.
    pub fn into_vec(self) -> Vec<Buffer> {
        self.parts.bufs
    }

    /// The `iovec` array over the buffers, rebuilt now, and its length: for the kernel,
    /// which may read it (and the buffers) until the operation ends. The pointer stays
    /// valid until `self` is dropped or this is called again.
    pub(crate) fn iovecs(&mut self) -> (*const crate::sys::IoVec, usize) {
        let Parts { bufs, iov } = &mut *self.parts;
        iov.clear();
        iov.extend(bufs.iter().map(|b| crate::sys::io_vec(b.as_ptr(), b.len())));
        (iov.as_ptr(), iov.len())
    }
}

impl From<Vec<Buffer>> for Buffers {
    fn from(bufs: Vec<Buffer>) -> Buffers {
        Buffers::new(bufs)
    }
}

impl fmt::Debug for Buffers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffers")
            .field("count", &self.len())
            .field("total_len", &self.total_len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)] // reads `iovec` fields (Windows: `WSABUF`)
    fn iovecs_follow_the_buffers_and_never_reallocate() {
        let mut first = Buffer::from(b"hello".to_vec());
        first.advance(1);
        let mut bufs = Buffers::new(vec![first, Buffer::copy_from(b"!"), Buffer::inline(0)]);
        let (p1, n) = bufs.iovecs();
        assert_eq!(n, 3);
        // SAFETY: `p1` points at `n` iovecs owned by `bufs`, unchanged since.
        let iov = unsafe { std::slice::from_raw_parts(p1, n) };
        assert_eq!(iov[0].iov_len, 4);
        assert_eq!(iov[0].iov_base.cast::<u8>(), bufs.as_slice()[0].as_ptr());
        assert_eq!((iov[1].iov_len, iov[2].iov_len), (1, 0));
        bufs.as_mut_slice()[0].rewind();
        let (p2, _) = bufs.iovecs();
        assert_eq!(p1, p2, "the array stays where it is");
        // SAFETY: as above.
        assert_eq!(unsafe { (*p2).iov_len }, 5);
        assert_eq!(bufs.total_len(), 6);
        assert!(Buffers::new(Vec::new()).is_empty());
    }

    #[test]
    fn a_vectored_op_adds_one_pointer() {
        assert_eq!(std::mem::size_of::<Buffers>(), std::mem::size_of::<usize>());
        eprintln!(
            "Buffer {} Op {} Completion {}",
            std::mem::size_of::<Buffer>(),
            std::mem::size_of::<crate::Op>(),
            std::mem::size_of::<crate::Completion>()
        );
    }
}
