//! io_uring registered ("fixed") files for the fds the async runtime owns.
//!
//! At ring setup a sparse table of [`SLOTS`] entries is registered. When a runtime
//! socket or file is first used on the loop (`Loop::fd_opened`, see `rt/loop_fd.rs`) its
//! fd is put in a free slot (`IORING_REGISTER_FILES_UPDATE`), and every SQE naming that
//! fd number uses the slot (`IOSQE_FIXED_FILE`), which spares the kernel a file-table
//! lookup and reference count per operation. The slot is emptied when the owner announces
//! the close (`fd_closed`) or moves the fd to another loop (`fd_released`).
//!
//! **Slot reuse.** A slot is reused only after the fd's close was announced, and a
//! `LoopFd` announces it only when no operation names it any more (orphans of dropped
//! futures hold a reference until their completion arrives), so no operation of the old
//! fd can be issued after its slot names another file. An SQE resolves its slot when the
//! kernel issues it, and the kernel keeps the file of an in-flight request alive across
//! a table update, so a request already in the kernel keeps its own file. Raw callback
//! operations on a runtime-owned fd number are the caller's promise, as always.
//!
//! Off by default (`Options::fixed_files`, `XEV_URING_FIXED_FILES=1`): it costs two `io_uring_register` calls per
//! connection, and the ping-pong bench showed no win on this machine.

use std::os::fd::RawFd;

use io_uring::{squeue, IoUring};

/// Size of the sparse table.
pub(crate) const SLOTS: u32 = 4096;

pub(crate) struct FixedFiles {
    /// By fd number: its slot + 1 (0: none).
    slot_of: Vec<u32>,
    free: Vec<u32>,
    /// Slots never used yet start here.
    next: u32,
}

impl FixedFiles {
    /// Register the sparse table on `ring`, if the kernel allows it (5.19+); `None`
    /// otherwise.
    pub(crate) fn setup(ring: &IoUring) -> Option<FixedFiles> {
        ring.submitter().register_files_sparse(SLOTS).ok()?;
        Some(FixedFiles {
            slot_of: Vec::new(),
            free: Vec::new(),
            next: 0,
        })
    }

    /// The slot of `fd`, if it has one.
    #[inline]
    pub(crate) fn slot(&self, fd: RawFd) -> Option<u32> {
        match self.slot_of.get(fd as usize) {
            Some(&s) if s != 0 => Some(s - 1),
            _ => None,
        }
    }

    /// `fd` is a new file announced by its owner: give it a slot (if one is free and
    /// the kernel takes it; otherwise its operations simply use the fd).
    pub(crate) fn opened(&mut self, ring: &IoUring, fd: RawFd) {
        if fd < 0 {
            return;
        }
        if let Some(slot) = self.slot(fd) {
            // Announced again (back from another loop): point the slot at it anew.
            if ring.submitter().register_files_update(slot, &[fd]).is_err() {
                self.forget(fd, slot);
            }
            return;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.next < SLOTS => {
                self.next += 1;
                self.next - 1
            }
            None => return,
        };
        if ring.submitter().register_files_update(slot, &[fd]).is_err() {
            self.free.push(slot);
            return;
        }
        let idx = fd as usize;
        if self.slot_of.len() <= idx {
            self.slot_of.resize(idx + 1, 0);
        }
        self.slot_of[idx] = slot + 1;
    }

    /// `fd` is about to be closed, or leaves this loop: empty its slot.
    pub(crate) fn closed(&mut self, ring: &IoUring, fd: RawFd) {
        let Some(slot) = self.slot(fd) else {
            return;
        };
        // -1 empties the slot. Should the kernel refuse, the slot is not reused (it may
        // still hold the old file).
        if ring.submitter().register_files_update(slot, &[-1]).is_ok() {
            self.forget(fd, slot);
        } else {
            self.slot_of[fd as usize] = 0;
        }
    }

    fn forget(&mut self, fd: RawFd, slot: u32) {
        self.slot_of[fd as usize] = 0;
        self.free.push(slot);
    }
}

/// `sqe`, built on `fd`, made to name registered slot `slot` instead.
pub(crate) fn use_slot(sqe: squeue::Entry, slot: u32) -> squeue::Entry {
    let mut sqe = sqe.flags(squeue::Flags::FIXED_FILE);
    // The SQE's `fd` field (offset 4 of the kernel's 64-byte `io_uring_sqe`) holds the
    // slot index when IOSQE_FIXED_FILE is set.
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `repr(C)` around the kernel's `io_uring_sqe`, whose `fd`
    // is an `i32` at byte offset 4 (Linux UAPI, stable); we write within the entry.
    unsafe {
        (&mut sqe as *mut squeue::Entry)
            .cast::<u8>()
            .add(4)
            .cast::<i32>()
            .write_unaligned(slot as i32)
    };
    sqe
}
