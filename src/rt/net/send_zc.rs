//! Zero-copy sends for [`TcpStream`](super::TcpStream) writes: [`set_send_zerocopy`].
//!
//! Off by default: over loopback on this machine a zero-copy send (`IORING_OP_SEND_ZC`)
//! measured 0.2-0.8x the throughput of a copying one from 4 KiB to 64 KiB writes, and
//! 0.55-1.08x above (no steady win): the receiving side copies anyway, and the sender
//! pins pages and waits for a second event. It can win on a real NIC for large writes;
//! measure with `cargo bench --bench send_zc` (`XEV_BENCH_ADDR` for a remote sink).

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::op::{Buffer, Op};
use crate::rt::io::FdOp;
use crate::rt::loop_fd::LoopFd;

/// The smallest write sent without copying; `usize::MAX`: never.
static THRESHOLD: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Send [`TcpStream::write`](super::TcpStream::write) and
/// [`write_all`](super::TcpStream::write_all) calls of at least `min_len` bytes without
/// copying them ([`Op::SendZc`]: on io_uring, `IORING_OP_SEND_ZC` where the kernel has
/// it; a plain send on the poll backend and older kernels), process-wide; `None` (the
/// default) turns it off. The buffer comes back only once the kernel has let go of it.
///
/// ```
/// xev::net::set_send_zerocopy(Some(256 * 1024));
/// assert_eq!(xev::net::send_zerocopy(), Some(256 * 1024));
/// xev::net::set_send_zerocopy(None);
/// ```
pub fn set_send_zerocopy(min_len: Option<usize>) {
    THRESHOLD.store(min_len.unwrap_or(usize::MAX), Ordering::Relaxed);
}

/// The threshold [`set_send_zerocopy`] set (`None`: off).
pub fn send_zerocopy() -> Option<usize> {
    match THRESHOLD.load(Ordering::Relaxed) {
        usize::MAX => None,
        n => Some(n),
    }
}

/// Whether zero copy is on at all (one relaxed load per write).
pub(crate) fn enabled() -> bool {
    THRESHOLD.load(Ordering::Relaxed) != usize::MAX
}

/// Whether a send of `len` bytes goes out without copying (zero copy is on and `len`
/// is at least the threshold).
pub(crate) fn wants(len: usize) -> bool {
    len >= THRESHOLD.load(Ordering::Relaxed)
}

/// The send of `buf` on `fd`: zero-copy if [`wants`] says so.
pub(crate) fn send_op(fd: &Rc<LoopFd>, buf: Buffer) -> FdOp {
    let zc = wants(buf.len());
    FdOp::on(fd, |fd| match zc {
        true => Op::SendZc { fd, buf },
        false => Op::Send { fd, buf },
    })
}
