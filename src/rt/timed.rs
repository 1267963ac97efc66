//! Reads and accepts with a time limit carried by the operation itself
//! ([`Loop::add_with_timeout`](crate::Loop::add_with_timeout)): on io_uring one
//! LINK_TIMEOUT SQE linked to the read or accept, no runtime timer; on the poll backend a
//! timer entry in the loop while the operation waits. Past the limit the operation fails
//! with [`TimedOut`](std::io::ErrorKind::TimedOut) and the buffer comes back with the
//! error (unlike `timeout(d, stream.read(buf))`, which drops the read's future, and with
//! it the buffer).

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::buf::{self, IoBufMut};
use super::io::{empty_read, read_result, Kind};
use super::loop_fd::LoopFd;
use super::op_future::OpFuture;
use crate::op::Op;
use crate::result::OpResult;

/// One read into `buf` that fails with `TimedOut` if nothing arrives within `limit`.
pub(crate) async fn read<B: IoBufMut>(
    fd: &Rc<LoopFd>,
    buf: B,
    kind: Kind,
    limit: Duration,
) -> (io::Result<usize>, B) {
    let (b, prep) = buf::into_read_buffer(buf);
    if b.is_empty() {
        return (Err(empty_read()), buf::from_read_buffer(b, prep, 0));
    }
    let raw = fd.raw();
    let op = match kind {
        Kind::Socket => Op::Recv { fd: raw, buf: b },
        Kind::At(offset) => Op::Pread {
            fd: raw,
            buf: b,
            offset,
        },
        Kind::Stream => Op::Read { fd: raw, buf: b },
    };
    let (res, op) = OpFuture::with_fd_within(op, Some(fd.clone()), limit).await;
    let res = read_result(res);
    let filled = *res.as_ref().unwrap_or(&0);
    let b = op.into_buffer().expect("a read hands its buffer back");
    (res, buf::from_read_buffer(b, prep, filled))
}

/// One accept on listener `fd` that fails with `TimedOut` if no connection arrives
/// within `limit`: the raw result, for the listener's own conversion.
pub(crate) async fn accept(fd: &Rc<LoopFd>, limit: Duration) -> OpResult {
    let op = Op::Accept { fd: fd.raw() };
    OpFuture::with_fd_within(op, Some(fd.clone()), limit)
        .await
        .0
}
