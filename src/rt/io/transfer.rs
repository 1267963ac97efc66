//! [`Read`] and [`Write`]: the futures of one read, one write and a write of everything
//! (every async type's `read`, `write` and `write_all`), written by hand rather than as
//! `async fn`s because they are the hot path of a request/response server.
//!
//! On the poll backend a socket's bytes move straight between the kernel and the
//! caller's buffer (see [`direct`](super::direct)): no conversion of the buffer into
//! loop memory and no state machine around the transfer. Everywhere else (io_uring,
//! files, pipes, a loop busy in a callback, the inline budget spent) the buffer becomes
//! loop memory ([`Buffer`]) and an operation carries it, as [`run`](super::run) does.
//!
//! Both futures are `Unpin`: no field is structurally pinned. The direct path hands the
//! kernel a pointer only for the length of one call, and an operation owns its buffer
//! (in its completion slot), so moving the future between polls moves nothing the
//! kernel uses.

use std::future::Future;
use std::io;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::{
    advance, direct_kind, direct_read_result, empty_read, read_op, read_result, start, write_op,
    write_result, Kind, SocketWait, Started,
};
use crate::op::Buffer;
use crate::result::count;
use crate::rt::buf::{self, IoBuf, IoBufMut, ReadSaved, Saved, Token};
use crate::rt::loop_fd::LoopFd;

/// Whether zero-copy sends are on (`set_send_zerocopy`, Unix only).
fn zero_copy_on() -> bool {
    #[cfg(unix)]
    return crate::rt::net::send_zc_enabled();
    #[cfg(not(unix))]
    false
}

/// Whether a send of `len` bytes goes out without copying, zero copy being on.
fn zero_copy_wants(len: usize) -> bool {
    #[cfg(unix)]
    return crate::rt::net::send_zc_wants(len);
    #[cfg(not(unix))]
    {
        let _ = len;
        false
    }
}

/// One read into `buf`: `(Ok(n), buf)` with `n` bytes at its start, `Ok(0)` at end of
/// file; a buffer with no room is `InvalidInput` (an `Ok(0)` would look like end of file).
pub(crate) struct Read<'a, B: IoBufMut> {
    fd: &'a Rc<LoopFd>,
    kind: Kind,
    wait: SocketWait,
    /// The caller's buffer as it is, read into in place on the direct path; `None` once
    /// it became loop memory (or was handed back).
    caller: Option<B>,
    /// The buffer as loop memory: for buffer types the direct path cannot read into in
    /// place (a slice, `BytesMut`), and for every operation.
    slow: ManuallyDrop<Slow<ReadSaved<B>>>,
}

/// Where a read's or write's buffer is once it is loop memory. A plain tag first (not a
/// niche inside `Buffer`): telling `No` apart, on every poll and drop, is one compare.
#[repr(u8)]
enum Slow<S> {
    /// Not loop memory (the caller's buffer, or handed back).
    No,
    /// Loop memory, with what turns it back into the caller's type.
    Loop(Buffer, S),
    /// An operation carries it.
    Op(Started, S),
}

/// Drop `slow` (its owner is being dropped) without a call when there is nothing in it:
/// the direct path's case.
#[inline(always)]
fn drop_slow<S>(slow: &mut ManuallyDrop<Slow<S>>) {
    if !matches!(**slow, Slow::No) {
        // SAFETY: called once, from the owner's `drop`; `slow` is not used after it.
        unsafe { ManuallyDrop::drop(slow) }
    }
}

// No field is structurally pinned (see the module docs).
impl<B: IoBufMut> Unpin for Read<'_, B> {}

impl<B: IoBufMut> Drop for Read<'_, B> {
    fn drop(&mut self) {
        drop_slow(&mut self.slow);
    }
}

impl<'a, B: IoBufMut> Read<'a, B> {
    pub(crate) fn new(fd: &'a Rc<LoopFd>, buf: B, kind: Kind) -> Self {
        Read {
            fd,
            kind,
            wait: SocketWait::default(),
            caller: Some(buf),
            slow: ManuallyDrop::new(Slow::No),
        }
    }

    /// The read as loop memory and operations: buffer types without in-place access,
    /// io_uring, files and pipes, and a direct path that declined.
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<(io::Result<usize>, B)> {
        loop {
            match &mut *self.slow {
                Slow::No => {
                    let b = self
                        .caller
                        .take()
                        .expect("a read polled after it completed");
                    let (b, prep) = buf::into_read_buffer(b);
                    *self.slow = Slow::Loop(b, prep);
                }
                Slow::Loop(b, _) => {
                    if b.is_empty() {
                        return self.finish(Err(empty_read()));
                    }
                    if direct_kind(self.kind) {
                        let (ptr, len) = (b.as_ptr(), b.len());
                        // SAFETY: `ptr..ptr + len` is the loop buffer's memory, owned
                        // here and neither moved nor dropped during the call.
                        let r = unsafe {
                            self.wait
                                .poll_kind_transfer(cx, self.fd, self.kind, false, ptr, len)
                        };
                        match r {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Some(res)) => {
                                return self.finish(direct_read_result(res, len))
                            }
                            Poll::Ready(None) => {}
                        }
                    }
                    if let Slow::Loop(b, prep) = std::mem::replace(&mut *self.slow, Slow::No) {
                        *self.slow = Slow::Op(start(read_op(self.fd, b, self.kind)), prep);
                    }
                }
                Slow::Op(op, _) => {
                    let (res, b) = std::task::ready!(Pin::new(op).poll(cx));
                    let b = b.expect("a read hands its buffer back");
                    if let Slow::Op(_, prep) = std::mem::replace(&mut *self.slow, Slow::No) {
                        *self.slow = Slow::Loop(b, prep);
                    }
                    return self.finish(read_result(res));
                }
            }
        }
    }

    /// The loop buffer back to the caller's type after `res`.
    fn finish(&mut self, res: io::Result<usize>) -> Poll<(io::Result<usize>, B)> {
        let filled = *res.as_ref().unwrap_or(&0);
        match std::mem::replace(&mut *self.slow, Slow::No) {
            Slow::Loop(b, prep) => Poll::Ready((res, buf::from_read_buffer(b, prep, filled))),
            _ => unreachable!("finish is called with the buffer as loop memory"),
        }
    }
}

impl<B: IoBufMut> Future for Read<'_, B> {
    type Output = (io::Result<usize>, B);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(b) = &mut this.caller {
            if let Some((ptr, room)) = b.read_area(Token(())) {
                if room > 0 && direct_kind(this.kind) {
                    // SAFETY: `ptr..ptr + room` is the buffer's room for one read,
                    // writable; the buffer is owned here and neither moved nor dropped
                    // during the call.
                    match unsafe {
                        this.wait
                            .poll_kind_transfer(cx, this.fd, this.kind, false, ptr, room)
                    } {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(res)) => {
                            let res = direct_read_result(res, room);
                            if let Ok(n) = res {
                                // SAFETY: the receive wrote `n <= room` bytes there.
                                unsafe { b.area_filled(n, Token(())) };
                            }
                            let b = this.caller.take();
                            return Poll::Ready((res, b.expect("the buffer just read into")));
                        }
                        Poll::Ready(None) => {}
                    }
                }
            }
        }
        this.poll_slow(cx)
    }
}

/// One write from the start of `buf` (`ALL = false`: possibly partial), or of all of it
/// (`ALL = true`, continuing after partial writes: see [`WriteAll`]): the bytes written
/// and the buffer, whole.
pub(crate) struct Write<'a, B: IoBuf, const ALL: bool> {
    fd: &'a Rc<LoopFd>,
    kind: Kind,
    wait: SocketWait,
    /// Bytes of the buffer written so far (`ALL`).
    written: usize,
    /// Zero-copy sends are on (`set_send_zerocopy`): a send at least that large is an
    /// `Op::SendZc`.
    zc: bool,
    /// The caller's buffer, written from in place on the direct path; `None` while an
    /// operation carries it, and once handed back.
    caller: Option<B>,
    /// The operation that carries the buffer as loop memory, advanced past `written`
    /// (never `Loop`).
    slow: ManuallyDrop<Slow<Saved<B>>>,
}

// No field is structurally pinned (see the module docs).
impl<B: IoBuf, const ALL: bool> Unpin for Write<'_, B, ALL> {}

impl<B: IoBuf, const ALL: bool> Drop for Write<'_, B, ALL> {
    fn drop(&mut self) {
        drop_slow(&mut self.slow);
    }
}

impl<'a, B: IoBuf, const ALL: bool> Write<'a, B, ALL> {
    /// `zc`: zero-copy sends apply (a TCP socket's writes).
    pub(crate) fn new(fd: &'a Rc<LoopFd>, buf: B, kind: Kind, zc: bool) -> Self {
        Write {
            fd,
            kind,
            wait: SocketWait::default(),
            written: 0,
            zc: zc && zero_copy_on(),
            caller: Some(buf),
            slow: ManuallyDrop::new(Slow::No),
        }
    }

    fn done(&mut self, res: io::Result<usize>) -> Poll<(io::Result<usize>, B)> {
        let b = self
            .caller
            .take()
            .expect("a write ends with the caller's buffer back");
        Poll::Ready((res, b))
    }

    /// A transfer of `n` bytes done (`None`: go on with the rest).
    fn wrote(&mut self, n: usize) -> Option<io::Result<usize>> {
        if !ALL {
            return Some(Ok(n));
        }
        if n == 0 {
            return Some(Err(io::ErrorKind::WriteZero.into()));
        }
        self.written += n;
        self.kind = advance(self.kind, n);
        None
    }

    /// The rest of the buffer through an operation, then back to the caller's type.
    fn poll_op(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<usize>>> {
        if let Some(b) = self.caller.take() {
            let (mut lb, saved) = buf::into_buffer(b);
            lb.advance(self.written);
            let op = match self.zc && zero_copy_wants(lb.len()) {
                #[cfg(unix)]
                true => crate::rt::net::send_zc_op(self.fd, lb),
                _ => write_op(self.fd, lb, self.kind),
            };
            *self.slow = Slow::Op(start(op), saved);
        }
        let Slow::Op(op, _) = &mut *self.slow else {
            panic!("a write polled after it completed");
        };
        let (res, lb) = std::task::ready!(Pin::new(op).poll(cx));
        let mut lb = lb.expect("a write hands its buffer back");
        lb.rewind();
        if let Slow::Op(_, saved) = std::mem::replace(&mut *self.slow, Slow::No) {
            self.caller = Some(buf::from_buffer(lb, saved));
        }
        Poll::Ready(match write_result(res) {
            Ok(n) => self.wrote(n),
            Err(e) => Some(Err(e)),
        })
    }
}

impl<B: IoBuf, const ALL: bool> Future for Write<'_, B, ALL> {
    type Output = (io::Result<usize>, B);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            if let Some(b) = &this.caller {
                let bytes = b.bytes(Token(()));
                let left = bytes.len() - this.written;
                if ALL && left == 0 {
                    return this.done(Ok(this.written));
                }
                if direct_kind(this.kind) && !(this.zc && zero_copy_wants(left)) {
                    let ptr = bytes[this.written..].as_ptr().cast_mut();
                    // SAFETY: `ptr..ptr + left` is the unwritten part of the buffer's
                    // bytes, owned here and neither moved nor dropped during the call; a
                    // send only reads it.
                    match unsafe {
                        this.wait
                            .poll_kind_transfer(cx, this.fd, this.kind, true, ptr, left)
                    } {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(res)) => match count(res) {
                            Ok(n) => match this.wrote(n) {
                                Some(res) => return this.done(res),
                                None => continue,
                            },
                            Err(e) => return this.done(Err(e.into())),
                        },
                        Poll::Ready(None) => {}
                    }
                }
            }
            match std::task::ready!(this.poll_op(cx)) {
                Some(res) => return this.done(res),
                None => continue,
            }
        }
    }
}

/// [`Write`] of all of the buffer, as `write_all` reports it.
pub(crate) struct WriteAll<'a, B: IoBuf>(pub(crate) Write<'a, B, true>);

impl<B: IoBuf> Future for WriteAll<'_, B> {
    type Output = (io::Result<()>, B);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|(res, b)| (res.map(drop), b))
    }
}
