//! Pieces of the raw io_uring reference loops (written directly on the `io-uring` crate).

use io_uring::{IoUring, Submitter};
use std::io;

/// A ring with the setup xev uses (falling back the same way): `entries` entries,
/// cooperative task running, single issuer, deferred task running.
pub fn ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(entries)
        .or_else(|_| IoUring::builder().build(entries))
}

/// `submit_and_wait(1)`, with EINTR and EBUSY taken as "look at the completion queue
/// again" rather than as errors.
pub fn submit_and_wait_one(submitter: &Submitter<'_>) -> io::Result<()> {
    match submitter.submit_and_wait(1) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
        Err(e) => Err(e),
    }
}
