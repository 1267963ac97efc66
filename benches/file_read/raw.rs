//! The raw io_uring reference, written directly on the io-uring crate: one ring with the
//! setup xev uses (`common::uring::ring`), `depth` slots (one 64 KiB buffer each) whose
//! index is the SQE's `user_data`, one `submit_and_wait(1)` per batch of completions, and
//! each completed slot resubmitted at the next offset at once.

use super::*;
use common::uring;
use io_uring::{opcode, types, IoUring};

pub(super) struct RawReader {
    ring: IoUring,
    file: File,
    bufs: Vec<Box<[u8]>>,
    /// The offset each slot's read is at.
    offs: Vec<u64>,
    /// A ring error left reads in flight: the buffers must never be freed.
    poisoned: bool,
}

impl RawReader {
    pub(super) fn new(path: &Path, depth: usize) -> Result<RawReader, String> {
        Ok(RawReader {
            ring: uring::ring(ENTRIES).map_err(|e| format!("io_uring setup: {e}"))?,
            file: File::open(path).map_err(|e| format!("open: {e}"))?,
            bufs: (0..depth)
                .map(|_| vec![0u8; CHUNK].into_boxed_slice())
                .collect(),
            offs: vec![0; depth],
            poisoned: false,
        })
    }
}

impl Reader for RawReader {
    fn phase(&mut self, list: &'static [u64]) -> Result<u64, String> {
        let allocs = common::allocations();
        let fd = types::Fd(self.file.as_raw_fd());
        let (submitter, mut sq, mut cq) = self.ring.split();
        let (bufs, offs) = (&mut self.bufs, &mut self.offs);
        let mut next = 0;
        let mut inflight = 0;
        let mut error: Option<String> = None;
        for slot in 0..bufs.len().min(list.len()) {
            push(&mut sq, fd, bufs, offs, slot, list[next]);
            next += 1;
            inflight += 1;
        }
        while inflight > 0 {
            sq.sync();
            if let Err(e) = uring::submit_and_wait_one(&submitter) {
                self.poisoned = true;
                return Err(format!("io_uring_enter: {e}"));
            }
            cq.sync();
            for cqe in &mut cq {
                inflight -= 1;
                let slot = cqe.user_data() as usize;
                let res = cqe.result();
                let r = if res < 0 {
                    Err(format!(
                        "read at {}: {}",
                        offs[slot],
                        io::Error::from_raw_os_error(-res)
                    ))
                } else {
                    check(res as usize, &bufs[slot], offs[slot])
                };
                if let Err(e) = r {
                    error.get_or_insert(e);
                    next = list.len(); // stop dispatching, drain what is in flight
                }
                if next < list.len() {
                    push(&mut sq, fd, bufs, offs, slot, list[next]);
                    next += 1;
                    inflight += 1;
                }
            }
            cq.sync();
        }
        match error {
            Some(e) => Err(e),
            None => Ok(common::allocations() - allocs),
        }
    }
}

/// Queue a read of chunk-sized `bufs[slot]` at `off`.
fn push(
    sq: &mut io_uring::SubmissionQueue<'_>,
    fd: types::Fd,
    bufs: &mut [Box<[u8]>],
    offs: &mut [u64],
    slot: usize,
    off: u64,
) {
    offs[slot] = off;
    let sqe = opcode::Read::new(fd, bufs[slot].as_mut_ptr(), CHUNK as u32)
        .offset(off)
        .build()
        .user_data(slot as u64);
    // SAFETY: the buffer is a boxed slice owned by the reader, which is only dropped
    // with nothing in flight (see `poisoned`). The queue has room: at most `depth` <=
    // ENTRIES entries are ever pending, and each phase submits them all.
    unsafe { sq.push(&sqe) }.expect("submission queue has room");
}

impl Drop for RawReader {
    fn drop(&mut self) {
        if self.poisoned {
            // Reads may still be in flight in the kernel: never free their buffers.
            std::mem::forget(std::mem::take(&mut self.bufs));
        }
    }
}
