//! Reads and accepts with a time limit. Past the limit the operation fails with
//! [`TimedOut`](std::io::ErrorKind::TimedOut) and the buffer comes back with the error
//! (unlike `timeout(d, stream.read(buf))`, which drops the read's future, and with it
//! the buffer).
//!
//! Two ways, measured in `benches/link_timeout.rs` (CPU per round trip of an in-thread
//! echo, both reads limited, against plain reads): a runtime sleep that cancels the
//! operation when it fires (the default: +5-7% on io_uring, +10% on epoll), or the limit
//! carried by the operation itself, [`Loop::add_with_timeout`](crate::Loop::add_with_timeout)
//! (one LINK_TIMEOUT SQE on io_uring: +14-16%, the kernel arms an hrtimer and posts a
//! second CQE per read; a loop timer entry on epoll: +8-9%). The linked way is used when
//! `XEV_LINK_TIMEOUTS=1` is set.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

use super::buf::{self, IoBufMut};
use super::io::{empty_read, read_result, Kind};
use super::loop_fd::LoopFd;
use super::op_future::OpFuture;
use crate::op::Op;
use crate::result::{Error, OpResult, ReadError};

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
    let (res, op) = within(op, fd, limit).await;
    let res = read_result(res);
    let filled = *res.as_ref().unwrap_or(&0);
    let b = op.into_buffer().expect("a read hands its buffer back");
    (res, buf::from_read_buffer(b, prep, filled))
}

/// One accept on listener `fd` that fails with `TimedOut` if no connection arrives
/// within `limit`: the raw result, for the listener's own conversion.
pub(crate) async fn accept(fd: &Rc<LoopFd>, limit: Duration) -> OpResult {
    within(Op::Accept { fd: fd.raw() }, fd, limit).await.0
}

/// Whether limits are linked to their operation (`XEV_LINK_TIMEOUTS=1`, read once).
fn linked() -> bool {
    static LINKED: OnceLock<bool> = OnceLock::new();
    *LINKED.get_or_init(|| std::env::var_os("XEV_LINK_TIMEOUTS").is_some_and(|v| v == "1"))
}

/// Run `op` on `fd` with a time limit: a cancel past the limit is reported as
/// `ETIMEDOUT`.
async fn within(op: Op, fd: &Rc<LoopFd>, limit: Duration) -> (OpResult, Op) {
    if linked() {
        return OpFuture::with_fd_within(op, Some(fd.clone()), limit).await;
    }
    let mut op = pin!(OpFuture::with_fd(op, Some(fd.clone())));
    let mut sleep = pin!(crate::rt::time::sleep(limit));
    let mut fired = false;
    let (res, op) = poll_fn(|cx| {
        if let Poll::Ready(r) = op.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if !fired && sleep.as_mut().poll(cx).is_ready() {
            fired = true;
            op.cancel_in_flight();
        }
        Poll::Pending
    })
    .await;
    let timed_out = || Error::Io(io::Error::from_raw_os_error(libc::ETIMEDOUT));
    let res = match res {
        OpResult::Recv(Err(ReadError::Canceled)) if fired => {
            OpResult::Recv(Err(ReadError::Io(timed_out().into())))
        }
        OpResult::Read(Err(ReadError::Canceled)) if fired => {
            OpResult::Read(Err(ReadError::Io(timed_out().into())))
        }
        OpResult::Pread(Err(ReadError::Canceled)) if fired => {
            OpResult::Pread(Err(ReadError::Io(timed_out().into())))
        }
        OpResult::Accept(Err(Error::Canceled)) if fired => OpResult::Accept(Err(timed_out())),
        other => other,
    };
    (res, op)
}
