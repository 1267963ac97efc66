//! Zero-copy sends for [`TcpStream`](super::TcpStream) writes: [`set_send_zerocopy`].
//!
//! Off by default: over loopback on this machine a zero-copy send (`IORING_OP_SEND_ZC`)
//! measured 0.2-0.8x the throughput of a copying one from 4 KiB to 64 KiB writes, and
//! 0.55-1.08x above (no steady win): the receiving side copies anyway, and the sender
//! pins pages and waits for a second event. It can win on a real NIC for large writes;
//! measure with `cargo bench --bench send_zc` (`XEV_BENCH_ADDR` for a remote sink).

use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::op::{Buffer, Op};
use crate::rt::buf::{self, IoBuf};
use crate::rt::io::{self as rio, FdOp};
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

fn send_op(fd: &Rc<LoopFd>, buf: Buffer) -> FdOp {
    let zc = buf.len() >= THRESHOLD.load(Ordering::Relaxed);
    FdOp::on(fd, |fd| match zc {
        true => Op::SendZc { fd, buf },
        false => Op::Send { fd, buf },
    })
}

fn result(r: crate::OpResult) -> io::Result<usize> {
    match r {
        crate::OpResult::SendZc(r) => r.map_err(Into::into),
        other => rio::write_result(other),
    }
}

/// One send of `buf` (possibly partial), zero-copy if it is large enough.
pub(crate) async fn write<B: IoBuf>(fd: &Rc<LoopFd>, buf: B) -> (io::Result<usize>, B) {
    let (b, saved) = buf::into_buffer(buf);
    let (res, b) = rio::run(send_op(fd, b)).await;
    let b = b.expect("a send hands its buffer back");
    (result(res), buf::from_buffer(b, saved))
}

/// Send all of `buf`, continuing after partial sends; each send is zero-copy while
/// what is left is large enough.
pub(crate) async fn write_all<B: IoBuf>(fd: &Rc<LoopFd>, buf: B) -> (io::Result<()>, B) {
    let (mut b, saved) = buf::into_buffer(buf);
    let res = loop {
        if b.is_empty() {
            break Ok(());
        }
        let (res, back) = rio::run(send_op(fd, b)).await;
        b = back.expect("a send hands its buffer back");
        match result(res) {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => b.advance(n),
            Err(e) => break Err(e),
        }
    };
    b.rewind();
    (res, buf::from_buffer(b, saved))
}
