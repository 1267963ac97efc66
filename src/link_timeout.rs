//! Link timeouts ([`Loop::add_with_timeout`](crate::Loop::add_with_timeout)): where an
//! I/O operation keeps its timeout, and which operations take one.
//!
//! The timeout lives in the completion's `deadline` field, which only timers use
//! otherwise (an absolute deadline in nanoseconds since the loop's epoch, far below
//! [`LINK_BIT`]): `LINK_BIT | nanoseconds`. A rearmed operation keeps it; `Loop::add`
//! clears it. io_uring links a LINK_TIMEOUT SQE to the operation; the poll backend keeps
//! a timer entry while the operation is parked on readiness. Either way the operation
//! then fails with `ETIMEDOUT` (`io::ErrorKind::TimedOut`).

use std::time::Duration;

use crate::completion::Inner;
use crate::op::Op;

/// Marks `deadline` as a link timeout rather than a timer's deadline.
const LINK_BIT: u64 = 1 << 63;

/// The `deadline` value for a link timeout of `d` (at least 1 ns, at most ~292 years).
pub(crate) fn encode(d: Duration) -> u64 {
    LINK_BIT | d.as_nanos().clamp(1, (LINK_BIT - 1) as u128) as u64
}

/// The link timeout of `inner`'s operation, in nanoseconds, if it has one.
pub(crate) fn of(inner: &Inner) -> Option<u64> {
    (inner.deadline & LINK_BIT != 0 && takes_one(&inner.op)).then_some(inner.deadline & !LINK_BIT)
}

/// Whether `op` can have a link timeout: an operation that may wait for its fd. Not
/// timers, cancels, no-ops, closes, shutdowns (they never wait), nor zero-copy sends
/// (their buffer is the kernel's until a notification a timeout cannot cut short).
pub(crate) fn takes_one(op: &Op) -> bool {
    !matches!(
        op,
        Op::Noop
            | Op::Timer { .. }
            | Op::Cancel { .. }
            | Op::Close { .. }
            | Op::Shutdown { .. }
            | Op::SendZc { .. }
    )
}
