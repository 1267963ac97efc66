//! The raw io_uring multishot reference receiver, written directly on the io-uring crate:
//! one `RecvMulti` SQE over a provided-buffer ring (256 buffers of 2 KiB, as the xev
//! multishot receiver's group), each buffer put back on the ring right after its datagram
//! is counted, the SQE issued again only when the kernel ends it (no `IORING_CQE_F_MORE`).
//! The same kernel work as `xev io_uring multishot` without a loop, a record or a
//! callback around it: how far a multishot receiver can go on this kernel.

use super::*;
use io_uring::{cqueue, opcode, types::BufRingEntry, types::Fd};
use std::alloc::Layout;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::rc::Rc;
use std::sync::atomic::AtomicU16;

const BUFFERS: u16 = 256;
const BUFFER_SIZE: usize = 2048;
const GROUP: u16 = 7;

/// The buffers and the ring of entries the kernel picks them from (page-aligned, as
/// `IORING_REGISTER_PBUF_RING` wants).
struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_layout: Layout,
    bufs: Box<[u8]>,
    tail: u16,
}

impl BufRing {
    fn new() -> io::Result<BufRing> {
        let ring_layout =
            Layout::from_size_align(BUFFERS as usize * std::mem::size_of::<BufRingEntry>(), 4096)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: non-zero size; all-zero entries (and tail 0) are a valid empty ring.
        let p = unsafe { std::alloc::alloc_zeroed(ring_layout) };
        let ring = NonNull::new(p.cast::<BufRingEntry>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let mut r = BufRing {
            ring,
            ring_layout,
            bufs: vec![0u8; BUFFERS as usize * BUFFER_SIZE].into_boxed_slice(),
            tail: 0,
        };
        for bid in 0..BUFFERS {
            r.give_back(bid);
        }
        Ok(r)
    }

    fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * BUFFER_SIZE;
        &self.bufs[start..start + len.min(BUFFER_SIZE)]
    }

    /// Put buffer `bid` back on the ring and publish it.
    fn give_back(&mut self, bid: u16) {
        let addr = self.bufs[bid as usize * BUFFER_SIZE..].as_mut_ptr();
        // SAFETY: `tail & (BUFFERS - 1)` indexes the ring's `BUFFERS` entries; the kernel
        // only reads entries between its head and the published tail, which this one is
        // past until the store below.
        unsafe {
            let e = &mut *self.ring.as_ptr().add((self.tail & (BUFFERS - 1)) as usize);
            e.set_addr(addr as u64);
            e.set_len(BUFFER_SIZE as u32);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field lies in the ring's first entry; the kernel reads it
        // concurrently, hence the atomic release store.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *mut u16;
            (*tail.cast::<AtomicU16>()).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring is unregistered (or its
        // io_uring closed) before this drops, see `receive`.
        unsafe { std::alloc::dealloc(self.ring.as_ptr().cast(), self.ring_layout) };
    }
}

pub(crate) fn receive(sock: UdpSocket, rx: &Rc<Rx>) {
    let fd = sock.as_raw_fd();
    let mut bufs = match BufRing::new() {
        Ok(b) => b,
        Err(e) => return rx.fail(format!("buffer ring: {e}")),
    };
    let mut ring = match common::uring::ring(ENTRIES) {
        Ok(r) => r,
        Err(e) => return rx.fail(format!("ring: {e}")),
    };
    // SAFETY: the ring memory holds `BUFFERS` entries and outlives the registration: the
    // io_uring (declared after `bufs`) drops first, which unregisters it.
    let reg = unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring.as_ptr() as u64, BUFFERS, GROUP, 0)
    };
    if let Err(e) = reg {
        return rx.fail(format!("register_buf_ring: {e}"));
    }
    if let Err(e) = run(&mut ring, fd, &mut bufs, rx) {
        rx.fail(e);
        // The SQE may still be live in the kernel with the ring's buffers: never free them.
        drop(ring);
        std::mem::forget(bufs);
        return;
    }
    // The receive has ended (`run` waited for its last CQE): the buffers may go.
    drop(ring);
}

/// Receive until the end marker (`Rx::datagram` says stop) or an error.
fn run(ring: &mut io_uring::IoUring, fd: RawFd, bufs: &mut BufRing, rx: &Rx) -> Result<(), String> {
    let (submitter, mut sq, mut cq) = ring.split();
    let mut live = false;
    loop {
        if !live {
            let sqe = opcode::RecvMulti::new(Fd(fd), GROUP).build().user_data(1);
            // SAFETY: the SQE names the registered buffer group only; one SQE in flight.
            if unsafe { sq.push(&sqe) }.is_err() {
                return Err("submission queue full".into());
            }
            sq.sync();
            live = true;
        }
        common::uring::submit_and_wait_one(&submitter).map_err(|e| format!("ring: {e}"))?;
        cq.sync();
        for cqe in &mut cq {
            let res = cqe.result();
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                live = false;
            }
            if res == -libc::ENOBUFS {
                continue; // every buffer out (not here: each goes back at once); go on
            }
            if res < 0 {
                return Err(format!("recv: {}", io::Error::from_raw_os_error(-res)));
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                return Err("a multishot receive without a buffer".into());
            };
            let go_on = rx.datagram(bufs.buffer(bid, res as usize));
            bufs.give_back(bid);
            if !go_on {
                cq.sync();
                return if live {
                    cancel(&submitter, &mut sq, &mut cq)
                } else {
                    Ok(())
                };
            }
        }
        cq.sync();
    }
}

/// Cancel the live multishot receive and wait for its last CQE: after that the kernel
/// no longer touches the buffers.
fn cancel(
    submitter: &io_uring::Submitter<'_>,
    sq: &mut io_uring::SubmissionQueue<'_>,
    cq: &mut io_uring::CompletionQueue<'_>,
) -> Result<(), String> {
    let sqe = opcode::AsyncCancel::new(1).build().user_data(2);
    // SAFETY: a cancel SQE points at no memory.
    if unsafe { sq.push(&sqe) }.is_err() {
        return Err("submission queue full".into());
    }
    sq.sync();
    loop {
        common::uring::submit_and_wait_one(submitter).map_err(|e| format!("ring: {e}"))?;
        cq.sync();
        for cqe in &mut *cq {
            if cqe.user_data() == 1 && !cqueue::more(cqe.flags()) {
                return Ok(());
            }
        }
        cq.sync();
    }
}
