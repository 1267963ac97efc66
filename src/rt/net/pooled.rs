//! Pooled reads: a socket read that holds no buffer while it waits.
//!
//! [`TcpStream::read_pooled`](super::TcpStream::read_pooled) first waits for the socket
//! to become readable (one `Op::Poll`, which consumes nothing), then takes a buffer from
//! the thread's pool and receives into it without blocking. So a connection that waits
//! for its next request costs no read buffer at all, and a dropped read loses no data:
//! the bytes stay in the socket for the next read. The buffer comes back to the pool when
//! the returned [`PooledBuf`] is dropped.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::rc::Rc;

use crate::op::{Op, PollEvents};
use crate::result::OpResult;
use crate::rt::io::{self as rio, FdOp};
use crate::rt::loop_fd::LoopFd;

/// The size of each pooled read buffer: one read returns at most this many bytes.
pub const POOLED_READ_SIZE: usize = 8 * 1024;

/// Free buffers a thread keeps for later reads; more are freed.
const POOL_KEEP: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take() -> Box<[u8]> {
    POOL.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; POOLED_READ_SIZE].into_boxed_slice())
}

fn give_back(b: Box<[u8]>) {
    // During thread exit the pool may be gone: the buffer is simply freed.
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_KEEP {
            p.push(b);
        }
    });
}

/// How many free buffers this thread's read pool holds (for tests and measurements).
#[doc(hidden)]
pub fn pooled_free_buffers() -> usize {
    POOL.with(|p| p.borrow().len())
}

/// The bytes of one pooled read, in a buffer borrowed from the thread's pool; dropping
/// it returns the buffer. Empty means end of stream.
pub struct PooledBuf {
    buf: Option<Box<[u8]>>,
    start: usize,
    end: usize,
}

impl PooledBuf {
    /// Drop the first `n` bytes (all of them if `n` is larger), keeping the rest.
    pub fn advance(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Copy the bytes out, and return the buffer to the pool at once.
    pub fn to_vec(self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for PooledBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.buf {
            Some(b) => &b[self.start..self.end],
            None => &[],
        }
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            give_back(b);
        }
    }
}

impl fmt::Debug for PooledBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledBuf")
            .field("len", &self.len())
            .finish()
    }
}

/// Wait until `fd` is readable, then receive into a pool buffer.
pub(crate) async fn read_pooled(fd: &Rc<LoopFd>) -> io::Result<PooledBuf> {
    loop {
        let (r, _) = rio::run(FdOp::on(fd, |fd| Op::Poll {
            fd,
            events: PollEvents::IN,
        }))
        .await;
        match r {
            OpResult::Poll(Ok(_)) => {}
            OpResult::Poll(Err(e)) => return Err(e.into()),
            other => return Err(rio::mismatch(&other)),
        }
        let mut buf = take();
        // SAFETY: `buf` is ours and `POOLED_READ_SIZE` long; `fd` is open (we hold its
        // `LoopFd`) and the call does not block (`MSG_DONTWAIT`).
        let n = unsafe {
            libc::recv(
                fd.raw(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            return Ok(PooledBuf {
                buf: Some(buf),
                start: 0,
                end: n as usize,
            });
        }
        let e = io::Error::last_os_error();
        give_back(buf);
        match e.kind() {
            // Readable but taken meanwhile (or a spurious wake-up): wait again.
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}
