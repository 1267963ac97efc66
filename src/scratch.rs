//! Socket-address and message-header scratch space, lent to the operations that need it.
//!
//! An accept needs room for the kernel to write the peer's address, a connect or a
//! `sendto` a place to put the destination as a `sockaddr`, a sendmsg/recvmsg a `msghdr`
//! and an `iovec` that must stay put until the kernel is done. Only those operations need
//! it (see [`needs_scratch`]), so it is not part of every [`Completion`]: the loop lends
//! a boxed [`ScratchCell`] to such an operation when it is submitted and takes it back
//! when its callback runs (or it is abandoned). Returned cells are kept on a free list
//! and reused, so once a loop has had as many of these operations in flight at once as
//! it will ever have, lending one allocates nothing.
//!
//! While lent, the cell also holds the operation's result (`res`): the completion's
//! result word holds the pointer to the cell instead (see `completion::Word`).
//!
//! [`Completion`]: crate::Completion

use crate::op::Op;

/// Kernel-written address and message headers for accept/connect/sendmsg/recvmsg.
#[cfg(unix)]
#[repr(C)]
pub(crate) struct Scratch {
    pub(crate) addr: libc::sockaddr_in6,
    pub(crate) addrlen: libc::socklen_t,
    pub(crate) iov: libc::iovec,
    pub(crate) msg: libc::msghdr,
}
/// Windows: the address and its length (`sys::Scratch`).
#[cfg(windows)]
pub(crate) use crate::sys::Scratch;

/// What a scratch-using operation has while it is Active: its scratch space and, once it
/// finished, its result.
pub(crate) struct ScratchCell {
    /// Outcome as a CQE would carry it: value or `-errno`.
    pub(crate) res: isize,
    pub(crate) sc: Scratch,
}

impl ScratchCell {
    fn new() -> ScratchCell {
        ScratchCell {
            res: 0,
            // SAFETY: plain C structs (integers, arrays of them, raw pointers) for which
            // all-zero is a valid value.
            sc: unsafe { std::mem::zeroed() },
        }
    }
}

/// Whether `op` borrows a [`ScratchCell`] while Active.
pub(crate) fn needs_scratch(op: &Op) -> bool {
    match op {
        Op::Accept { .. }
        | Op::Connect { .. }
        | Op::SendMsg { .. }
        | Op::RecvMsg { .. }
        | Op::SendMsgV { .. } => true,
        #[cfg(unix)]
        Op::SendMsgUnix { .. } | Op::RecvMsgUnix { .. } => true,
        _ => false,
    }
}

/// The loop's free list of scratch cells.
#[derive(Default)]
pub(crate) struct ScratchPool {
    // Boxed: a lent cell must not move (its `msghdr` points into itself), and lending
    // hands out the box's address.
    #[allow(clippy::vec_box)]
    free: Vec<Box<ScratchCell>>,
}

impl ScratchPool {
    /// A cell for a new operation: a returned one if any (no allocation), else a new one.
    /// Its result is 0 and its address lengths are 0, so nothing an earlier operation left
    /// there can be read back as this one's sender.
    pub(crate) fn lend(&mut self) -> *mut ScratchCell {
        let mut cell = self
            .free
            .pop()
            .unwrap_or_else(|| Box::new(ScratchCell::new()));
        cell.res = 0;
        cell.sc.addrlen = 0;
        cell.sc.msg.msg_namelen = 0;
        Box::into_raw(cell)
    }

    /// Take back a cell from [`lend`](Self::lend).
    ///
    /// # Safety
    /// `cell` came from `lend` of this pool (or another pool of this thread), was not
    /// returned since, and neither the kernel nor the thread pool uses it any more.
    pub(crate) unsafe fn give_back(&mut self, cell: *mut ScratchCell) {
        // SAFETY: the caller's contract: `cell` is a `Box::into_raw` nobody else owns.
        self.free.push(unsafe { Box::from_raw(cell) });
    }

    /// Cells on the free list (for tests).
    #[cfg(test)]
    pub(crate) fn idle(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A returned cell is reused (same address, no new allocation) and comes back with its
    /// result and address lengths cleared.
    #[test]
    fn cells_are_reused_and_cleared() {
        let mut pool = ScratchPool::default();
        let a = pool.lend();
        // SAFETY: `a` is a live cell this test owns.
        unsafe {
            (*a).res = 42;
            (*a).sc.addrlen = 16;
            (*a).sc.msg.msg_namelen = 16;
            pool.give_back(a);
        }
        assert_eq!(pool.idle(), 1);
        let b = pool.lend();
        assert_eq!(a, b, "the returned cell is lent again");
        assert_eq!(pool.idle(), 0);
        // SAFETY: as above.
        unsafe {
            assert_eq!((*b).res, 0);
            assert_eq!((*b).sc.addrlen, 0);
            assert_eq!((*b).sc.msg.msg_namelen, 0);
            let c = pool.lend();
            assert_ne!(b, c, "a second cell in flight is a different one");
            pool.give_back(b);
            pool.give_back(c);
        }
        assert_eq!(pool.idle(), 2);
    }

    #[test]
    fn only_address_and_message_ops_need_scratch() {
        assert!(needs_scratch(&Op::Accept { fd: 3 }));
        assert!(needs_scratch(&Op::RecvMsg {
            fd: 3,
            buf: crate::Buffer::inline(4)
        }));
        assert!(!needs_scratch(&Op::Recv {
            fd: 3,
            buf: crate::Buffer::inline(4)
        }));
        assert!(!needs_scratch(&Op::Timer { ms: 1 }));
        assert!(!needs_scratch(&Op::Noop));
    }
}
