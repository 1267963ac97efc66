//! The read and write shapes every async type shares: one operation with an owned
//! buffer, and the `write_all` / `read_exact` loops over it.
//!
//! They take the fd as the owner's `Rc<LoopFd>`, and every operation they start keeps a
//! clone until it is over ([`FdOp`]), so the fd outlives its operations, orphans
//! included (see `op_future`).

use crate::sys::fd::RawFd;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::buf::{self, IoBuf, IoBufMut};
#[cfg(unix)]
use super::executor::with_current;
use super::loop_fd::LoopFd;
use super::op_future::OpFuture;
use crate::event_loop::LoopId;
use crate::iovec::Buffers;
use crate::op::{Buffer, Op};
use crate::result::{read_count, OpResult, ReadError};

mod transfer;

pub(crate) use transfer::{Read, Write, WriteAll};

/// An operation plus the owner of the fd it names (if it names an owned one), which its
/// slot keeps until the operation is over.
pub(crate) struct FdOp {
    op: Op,
    fd: Option<Rc<LoopFd>>,
}

impl FdOp {
    /// The operation `make` builds from `fd`'s number (announced to the current loop).
    pub(crate) fn on(fd: &Rc<LoopFd>, make: impl FnOnce(RawFd) -> Op) -> FdOp {
        FdOp {
            op: make(fd.raw()),
            fd: Some(fd.clone()),
        }
    }
}

impl From<Op> for FdOp {
    /// An operation on no fd, or on one the caller keeps open until the operation is over.
    fn from(op: Op) -> FdOp {
        FdOp { op, fd: None }
    }
}

/// Which operation a read or write uses.
#[derive(Clone, Copy)]
// Windows: only sockets use it (files go through rt/fs/windows.rs; no pipes there).
#[cfg_attr(windows, allow(dead_code))]
pub(crate) enum Kind {
    /// `recv(2)` / `send(2)` (sockets: `MSG_NOSIGNAL` on send).
    Socket,
    /// `pread(2)` / `pwrite(2)` at this offset.
    At(u64),
    /// `read(2)` / `write(2)` (pipes and other streams that are not sockets).
    Stream,
}

fn read_op(fd: &Rc<LoopFd>, buf: Buffer, kind: Kind) -> FdOp {
    FdOp::on(fd, |fd| match kind {
        Kind::Socket => Op::Recv { fd, buf },
        Kind::At(offset) => Op::Pread { fd, buf, offset },
        Kind::Stream => Op::Read { fd, buf },
    })
}

fn write_op(fd: &Rc<LoopFd>, buf: Buffer, kind: Kind) -> FdOp {
    FdOp::on(fd, |fd| match kind {
        Kind::Socket => Op::Send { fd, buf },
        Kind::At(offset) => Op::Pwrite { fd, buf, offset },
        Kind::Stream => Op::Write { fd, buf },
    })
}

/// Whether `kind` may take the direct path: a socket or a pipe (or other stream), on
/// Unix; never an offset transfer (a file's, which the pool runs on the poll backend).
pub(crate) fn direct_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Socket | Kind::Stream) && cfg!(unix)
}

fn advance(kind: Kind, n: usize) -> Kind {
    match kind {
        Kind::At(offset) => Kind::At(offset + n as u64),
        k => k,
    }
}

/// A read's result as `std::io` reports it: end of file is `Ok(0)`.
pub(crate) fn read_result(r: OpResult) -> io::Result<usize> {
    let r = match r {
        OpResult::Read(r) | OpResult::Recv(r) | OpResult::Pread(r) | OpResult::Readv(r) => r,
        OpResult::RecvMsg(r) => r.map(|(n, _)| n),
        other => return Err(mismatch(&other)),
    };
    match r {
        Ok(n) => Ok(n),
        Err(ReadError::Eof) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// A direct read's raw outcome (`res`: bytes read or `-errno`, into a `len`-byte buffer)
/// as `std::io` reports it, like [`read_result`]: end of file is `Ok(0)`.
pub(crate) fn direct_read_result(res: isize, len: usize) -> io::Result<usize> {
    match read_count(res, len) {
        Ok(n) => Ok(n),
        Err(ReadError::Eof) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// A write's result.
pub(crate) fn write_result(r: OpResult) -> io::Result<usize> {
    match r {
        OpResult::Write(r)
        | OpResult::Send(r)
        | OpResult::Pwrite(r)
        | OpResult::SendMsg(r)
        | OpResult::Writev(r)
        | OpResult::SendMsgV(r)
        | OpResult::SendZc(r) => r.map_err(Into::into),
        other => Err(mismatch(&other)),
    }
}

pub(crate) fn mismatch(r: &OpResult) -> io::Error {
    io::Error::other(format!("xev: unexpected result {r:?}"))
}

/// A datagram whose sender has no IP address (`recv_from` on an IP socket).
fn non_ip_sender() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "datagram from a non-IP address")
}

pub(crate) fn empty_read() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "read into a zero-length buffer (an Ok(0) would look like end of file)",
    )
}

/// One operation whose result is the typed outcome plus the buffer it carried.
pub(crate) async fn run(op: impl Into<FdOp>) -> (OpResult, Option<Buffer>) {
    let FdOp { op, fd } = op.into();
    let (res, op) = OpFuture::with_fd(op, fd).await;
    (res, op.into_buffer())
}

/// [`run`] started at once (the caller awaits it right away): a plain future over the
/// operation's, without a state machine of its own (the reads' and writes' hot path).
fn start(op: FdOp) -> Started {
    Started(OpFuture::with_fd(op.op, op.fd))
}

/// See [`start`].
struct Started(OpFuture);

impl Future for Started {
    type Output = (OpResult, Option<Buffer>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|(res, op)| (res, op.into_buffer()))
    }
}

/// A socket or pipe send (`send`) or receive of all of `buf` on the poll backend without
/// an operation (tokio's way: see `Loop::fd_transfer_or_wait`): done at once when the
/// readiness cache says it may not block; when it would block, the task waits for the
/// socket's next edge and tries again. The outcome (`-errno` on error), or `None`: start
/// the operation as usual (io_uring, another kind of fd, operations queued ahead, inside
/// a loop callback, or this task's inline budget is spent: the budget that keeps an
/// always-ready socket from starving other tasks).
fn direct<'a>(fd: &'a LoopFd, kind: Kind, send: bool, buf: &'a Buffer) -> Direct<'a> {
    Direct {
        fd,
        on: direct_kind(kind),
        kind,
        send,
        ptr: buf.as_ptr(),
        len: buf.len(),
        _buf: PhantomData,
        waiting: SocketWait::default(),
    }
}

/// See [`direct`].
struct Direct<'a> {
    fd: &'a LoopFd,
    /// A socket or stream on Unix: the path may apply.
    on: bool,
    /// A socket or a stream (see `SocketWait::poll_kind_transfer`).
    kind: Kind,
    send: bool,
    /// The buffer's bytes, read once (its memory does not move while it is borrowed).
    ptr: *mut u8,
    len: usize,
    _buf: PhantomData<&'a Buffer>,
    waiting: SocketWait,
}

impl Future for Direct<'_> {
    type Output = Option<isize>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<isize>> {
        if !self.on {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        // SAFETY: `ptr..ptr + len` is the buffer borrowed for this future's life, so it
        // is alive and its memory does not move; a receive writes at most `len` into it.
        unsafe {
            this.waiting
                .poll_kind_transfer(cx, this.fd, this.kind, this.send, this.ptr, this.len)
        }
    }
}

/// A task's turn at a socket transfer on the poll backend without an operation (see
/// [`direct`]; the compat adapters' reads use it with their own buffer): the transfer, or
/// the task's place among the socket's waiters, withdrawn when this is dropped.
#[derive(Default)]
pub(crate) struct SocketWait {
    /// The loop, fd, direction and id the task waits under (see `Loop::withdraw`).
    waiting: Option<(LoopId, RawFd, bool, u64)>,
}

impl SocketWait {
    /// Transfer (`send`: from, else into) the `len` bytes at `ptr` on the socket `fd`
    /// now, or wait for its next edge: `Ready(Some(res))` is the outcome (`-errno` on
    /// error), `Ready(None)` means start an operation instead (not the poll backend,
    /// operations queued ahead, inside a loop callback, inline budget spent).
    ///
    /// # Safety
    /// `ptr..ptr + len` is valid for the call (readable for a send, writable for a
    /// receive). A receive has `len > 0` (the kernel would wait for data to put in no
    /// room, or take a datagram); a send of 0 bytes is allowed and finishes with 0.
    ///
    /// One out-of-line copy for every buffer type's read and write: the generic futures
    /// around it stay small. `STREAM`: a pipe or other non-socket stream (`read(2)` /
    /// `write(2)`; a regular file is declined; see `Loop::fd_transfer_or_wait`), a copy
    /// of its own, so that the sockets' path stays as it was (one shared copy with a
    /// run-time flag measured 176 instead of 159 instructions per socket transfer under
    /// callgrind).
    #[inline(never)]
    pub(crate) unsafe fn poll_transfer<const STREAM: bool>(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        send: bool,
        ptr: *mut u8,
        len: usize,
    ) -> Poll<Option<isize>> {
        #[cfg(unix)]
        {
            self.poll_io(cx, fd, send, |lp, raw, id, waker| {
                // SAFETY: the caller's contract.
                unsafe { lp.fd_transfer_or_wait::<STREAM>(raw, send, ptr, len, id, waker) }
            })
        }
        #[cfg(not(unix))]
        {
            let _ = (cx, fd, send, ptr, len, self.waiting);
            Poll::Ready(None)
        }
    }

    /// [`poll_transfer`](Self::poll_transfer) of a socket or a stream, as `kind` says (see
    /// `direct_kind`).
    ///
    /// # Safety
    /// As `poll_transfer`'s.
    #[inline(always)]
    pub(crate) unsafe fn poll_kind_transfer(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        kind: Kind,
        send: bool,
        ptr: *mut u8,
        len: usize,
    ) -> Poll<Option<isize>> {
        // SAFETY: the caller's contract.
        unsafe {
            match kind {
                Kind::Stream => self.poll_transfer::<true>(cx, fd, send, ptr, len),
                _ => self.poll_transfer::<false>(cx, fd, send, ptr, len),
            }
        }
    }

    /// [`poll_transfer`](Self::poll_transfer) of a send of `bufs` in order, as one
    /// `sendmsg` (at most `IOV_MAX` of them; `len`, their total length, is not 0).
    #[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
    pub(crate) fn poll_send_vectored(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        bufs: &[io::IoSlice<'_>],
        len: usize,
    ) -> Poll<Option<isize>> {
        #[cfg(unix)]
        {
            self.poll_io(cx, fd, true, |lp, raw, id, waker| {
                lp.socket_io_or_wait(raw, true, len, id, waker, || {
                    crate::sys::socket_sendv_now(raw, bufs)
                })
            })
        }
        #[cfg(not(unix))]
        {
            let _ = (cx, fd, bufs, len, self.waiting);
            Poll::Ready(None)
        }
    }

    /// [`poll_transfer`](Self::poll_transfer) of one datagram received with its
    /// sender's address (`recvfrom`), written to `addr` / `addrlen`.
    ///
    /// # Safety
    /// As `poll_transfer`'s, for a receive.
    #[cfg(unix)]
    pub(crate) unsafe fn poll_recv_from(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        ptr: *mut u8,
        len: usize,
        addr: &mut libc::sockaddr_in6,
        addrlen: &mut libc::socklen_t,
    ) -> Poll<Option<isize>> {
        self.poll_io(cx, fd, false, |lp, raw, id, waker| {
            lp.socket_io_or_wait(raw, false, len, id, waker, || {
                // SAFETY: the caller's contract.
                unsafe { crate::sys::recvfrom_now(raw, ptr, len, addr, addrlen) }
            })
        })
    }

    /// [`poll_transfer`](Self::poll_transfer) of one datagram sent to `addr` (`None`:
    /// the connected peer) with `sendto`.
    ///
    /// # Safety
    /// As `poll_transfer`'s, for a send.
    #[cfg(unix)]
    pub(crate) unsafe fn poll_send_to(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        ptr: *const u8,
        len: usize,
        addr: Option<&SocketAddr>,
    ) -> Poll<Option<isize>> {
        self.poll_io(cx, fd, true, |lp, raw, id, waker| {
            lp.socket_io_or_wait(raw, true, len, id, waker, || {
                // SAFETY: the caller's contract.
                unsafe { crate::sys::sendto_now(raw, ptr, len, addr) }
            })
        })
    }

    /// The shared part of the two: `io` asks the loop for the transfer on the fd number
    /// given, under the waiter id given (if still waiting on this loop).
    #[cfg(unix)]
    #[inline(always)]
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        fd: &LoopFd,
        send: bool,
        io: impl FnOnce(
            &mut crate::Loop,
            RawFd,
            Option<u64>,
            &std::task::Waker,
        ) -> crate::backend::poll::Direct,
    ) -> Poll<Option<isize>> {
        use crate::backend::poll::Direct as D;
        let waiting = self.waiting;
        let r = with_current(|exec| {
            if !exec.direct_io() {
                return None;
            }
            let raw = fd.raw_on(exec);
            // Registered with another runtime's loop: that registration is stale.
            let id = waiting.filter(|w| w.0 == exec.loop_id()).map(|w| w.3);
            if !exec.take_inline() {
                return None;
            }
            let Ok(mut lp) = exec.lp.try_borrow_mut() else {
                exec.return_inline();
                return None;
            };
            let r = io(&mut lp, raw, id, cx.waker());
            if !matches!(r, D::Done(_)) {
                exec.return_inline();
            }
            Some((r, exec.loop_id(), raw))
        })
        .flatten();
        match r {
            Some((D::Done(res), _, _)) => {
                self.waiting = None;
                Poll::Ready(Some(res))
            }
            Some((D::Waiting(id), lp, raw)) => {
                self.waiting = Some((lp, raw, send, id));
                Poll::Pending
            }
            Some((D::Declined, _, _)) => {
                self.waiting = None;
                Poll::Ready(None)
            }
            // Not the poll backend, budget spent, loop busy, no runtime: a
            // registration, if any, is withdrawn on drop.
            None => Poll::Ready(None),
        }
    }
}

impl Drop for SocketWait {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some((lp_id, raw, send, id)) = self.waiting {
            withdraw(lp_id, raw, send, id);
        }
    }
}

/// Stop waiting (see `SocketWait::drop`; out of line: a finished transfer waits no more).
/// If the loop is busy (dropped inside a callback) or is another runtime's, the entry
/// stays until the socket's next edge wakes it: a wake of a task that no longer waits,
/// nothing more.
#[cfg(unix)]
#[inline(never)]
fn withdraw(lp_id: LoopId, raw: RawFd, send: bool, id: u64) {
    with_current(|exec| {
        if exec.loop_id() == lp_id {
            if let Ok(mut lp) = exec.lp.try_borrow_mut() {
                lp.withdraw(raw, send, id);
            }
        }
    });
}

/// One read into `buf` (see [`Read`]).
pub(crate) fn read<B: IoBufMut>(fd: &Rc<LoopFd>, buf: B, kind: Kind) -> Read<'_, B> {
    Read::new(fd, buf, kind)
}

/// Fill exactly `buf`'s length (`UnexpectedEof` if the data ends first): for a `Vec`,
/// its length, never its spare capacity (see [`IoBufMut`]). A `Vec` of length 0 with
/// spare capacity is `InvalidInput`; any other empty buffer is `Ok(())` at once.
pub(crate) async fn read_exact<B: IoBufMut>(
    fd: &Rc<LoopFd>,
    buf: B,
    mut kind: Kind,
) -> (io::Result<()>, B) {
    let spare = buf::spare_capacity(&buf);
    let (mut b, prep) = buf::into_exact_buffer(buf);
    let total = b.len();
    if total == 0 {
        let res = if spare > 0 {
            Err(buf::exact_into_capacity(spare))
        } else {
            Ok(())
        };
        return (res, buf::from_read_buffer(b, prep, 0));
    }
    let mut filled = 0;
    let res = loop {
        let res = match direct(fd, kind, false, &b).await {
            Some(res) => direct_read_result(res, b.len()),
            None => {
                let (res, back) = start(read_op(fd, b, kind)).await;
                b = back.expect("a read hands its buffer back");
                read_result(res)
            }
        };
        match res {
            Ok(0) => {
                break Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("end of file after {filled} of {total} bytes"),
                ))
            }
            Ok(n) => {
                filled += n;
                kind = advance(kind, n);
                if filled == total {
                    break Ok(());
                }
                b.advance(n);
            }
            Err(e) => break Err(e),
        }
    };
    b.rewind();
    (res, buf::from_read_buffer(b, prep, filled))
}

/// One write of `buf` (possibly partial; see [`Write`]); `zc`: zero-copy sends apply
/// (a TCP socket's).
pub(crate) fn write<B: IoBuf>(
    fd: &Rc<LoopFd>,
    buf: B,
    kind: Kind,
    zc: bool,
) -> Write<'_, B, false> {
    Write::new(fd, buf, kind, zc)
}

/// Write all of `buf`, continuing after partial writes (see [`Write`]); `zc` as for
/// [`write`].
pub(crate) fn write_all<B: IoBuf>(
    fd: &Rc<LoopFd>,
    buf: B,
    kind: Kind,
    zc: bool,
) -> WriteAll<'_, B> {
    WriteAll(Write::new(fd, buf, kind, zc))
}

/// `recvmsg` into `buf`: bytes and the sender's address.
pub(crate) async fn recv_from<B: IoBufMut>(
    fd: &Rc<LoopFd>,
    buf: B,
) -> (io::Result<(usize, SocketAddr)>, B) {
    let (b, prep) = buf::into_read_buffer(buf);
    if b.is_empty() {
        return (Err(empty_read()), buf::from_read_buffer(b, prep, 0));
    }
    // The poll backend's direct path first (see [`direct`]): one `recvfrom`, or a wait
    // for the socket's next edge, with no operation.
    #[cfg(unix)]
    {
        // SAFETY: an all-zero `sockaddr_in6` is a valid (unspecified) address.
        let mut addr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        let mut addrlen: libc::socklen_t = 0;
        let (ptr, len) = (b.as_ptr(), b.len());
        let mut wait = SocketWait::default();
        let direct = std::future::poll_fn(|cx| {
            // SAFETY: `b` is owned here and neither moved nor dropped while this future
            // runs; its memory is `len` bytes at `ptr`.
            unsafe { wait.poll_recv_from(cx, fd, ptr, len, &mut addr, &mut addrlen) }
        })
        .await;
        drop(wait);
        if let Some(res) = direct {
            let res = match read_count(res, 0) {
                Ok(n) => match crate::sys::from_sockaddr(&addr, addrlen) {
                    Some(a) => Ok((n, a)),
                    None => Err(non_ip_sender()),
                },
                Err(e) => Err(e.into()),
            };
            let filled = res.as_ref().map_or(0, |(n, _)| *n);
            return (res, buf::from_read_buffer(b, prep, filled));
        }
    }
    let (res, b) = run(FdOp::on(fd, |fd| Op::RecvMsg { fd, buf: b })).await;
    let b = b.expect("recvmsg hands its buffer back");
    let res = match res {
        OpResult::RecvMsg(Ok((n, Some(addr)))) => Ok((n, addr)),
        OpResult::RecvMsg(Ok((_, None))) => Err(non_ip_sender()),
        OpResult::RecvMsg(Err(ReadError::Eof)) => Err(io::ErrorKind::UnexpectedEof.into()),
        OpResult::RecvMsg(Err(e)) => Err(e.into()),
        other => Err(mismatch(&other)),
    };
    let filled = res.as_ref().map_or(0, |(n, _)| *n);
    (res, buf::from_read_buffer(b, prep, filled))
}

/// `sendmsg` of `buf` to `addr` (or the connected peer).
pub(crate) async fn send_to<B: IoBuf>(
    fd: &Rc<LoopFd>,
    buf: B,
    addr: Option<SocketAddr>,
) -> (io::Result<usize>, B) {
    let (buf, saved) = buf::into_buffer(buf);
    // The direct path first, as for `recv_from`.
    #[cfg(unix)]
    {
        let (ptr, len) = (buf.as_ptr(), buf.len());
        let mut wait = SocketWait::default();
        let direct = std::future::poll_fn(|cx| {
            // SAFETY: `buf` is owned here and neither moved nor dropped while this
            // future runs; its memory is `len` bytes at `ptr`.
            unsafe { wait.poll_send_to(cx, fd, ptr, len, addr.as_ref()) }
        })
        .await;
        drop(wait);
        if let Some(res) = direct {
            return (
                crate::result::count(res).map_err(Into::into),
                buf::from_buffer(buf, saved),
            );
        }
    }
    let (res, b) = run(FdOp::on(fd, |fd| Op::SendMsg { fd, buf, addr })).await;
    let b = b.expect("sendmsg hands its buffer back");
    (write_result(res), buf::from_buffer(b, saved))
}

/// An operation without a buffer whose result is `Result<(), Error>` (connect, shutdown,
/// close).
pub(crate) async fn unit(op: impl Into<FdOp>) -> io::Result<()> {
    match run(op).await.0 {
        OpResult::Connect(r) | OpResult::Shutdown(r) | OpResult::Close(r) => r.map_err(Into::into),
        other => Err(mismatch(&other)),
    }
}

/// Close `fd` through the loop ([`Op::Close`]) once no operation names it any more (the
/// operations of dropped futures end first), reporting the error of `close(2)`.
pub(crate) async fn close(fd: Rc<LoopFd>) -> io::Result<()> {
    let fd = LoopFd::into_sole(fd).await;
    unit(Op::close(LoopFd::into_owned(fd))).await
}

/// The most buffers one vectored operation takes (`IOV_MAX` on Linux).
pub(crate) const IOV_MAX: usize = 1024;

fn too_many_buffers(n: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{n} buffers for one vectored operation (at most {IOV_MAX}, IOV_MAX)"),
    )
}

/// The buffers a vectored operation carried, in order.
fn vectored_buffers(op: Op) -> Vec<Buffer> {
    match op {
        Op::Readv { bufs, .. } | Op::Writev { bufs, .. } | Op::SendMsgV { bufs, .. } => {
            bufs.into_vec()
        }
        other => unreachable!("a vectored operation comes back as one, not {other:?}"),
    }
}

/// One `readv` (`preadv` at an offset) into `bufs`, filling each before the next.
/// No buffer, or no room in any of them, is `InvalidInput` (an `Ok(0)` would look like
/// end of file), as are more than [`IOV_MAX`] buffers. Buffer `i` gets the bytes after
/// those of the buffers before it; each is handed back as after a single read of its
/// share (a `Vec`'s length becomes the larger of its old length and its share).
pub(crate) async fn read_vectored<B: IoBufMut>(
    fd: &Rc<LoopFd>,
    bufs: Vec<B>,
    kind: Kind,
) -> (io::Result<usize>, Vec<B>) {
    if bufs.len() > IOV_MAX {
        return (Err(too_many_buffers(bufs.len())), bufs);
    }
    let (buffers, saved): (Vec<Buffer>, Vec<buf::ReadSaved<B>>) =
        bufs.into_iter().map(buf::into_read_buffer).unzip();
    let room: usize = buffers.iter().map(Buffer::len).sum();
    let back = |buffers: Vec<Buffer>, saved: Vec<buf::ReadSaved<B>>, mut n: usize| {
        buffers
            .into_iter()
            .zip(saved)
            .map(|(b, s)| {
                let filled = n.min(b.len());
                n -= filled;
                buf::from_read_buffer(b, s, filled)
            })
            .collect::<Vec<B>>()
    };
    if room == 0 {
        let e = if buffers.is_empty() {
            io::Error::new(io::ErrorKind::InvalidInput, "read_vectored into no buffers")
        } else {
            empty_read()
        };
        return (Err(e), back(buffers, saved, 0));
    }
    let bufs = Buffers::new(buffers);
    let op = FdOp::on(fd, |fd| match kind {
        Kind::Socket | Kind::Stream => Op::Readv {
            fd,
            bufs,
            offset: None,
        },
        Kind::At(offset) => Op::Readv {
            fd,
            bufs,
            offset: Some(offset),
        },
    });
    let FdOp { op, fd } = op;
    let (res, op) = OpFuture::with_fd(op, fd).await;
    let res = read_result(res);
    let filled = *res.as_ref().unwrap_or(&0);
    (res, back(vectored_buffers(op), saved, filled))
}

/// One vectored write of `bufs` in order (possibly partial): `sendmsg` with
/// `MSG_NOSIGNAL` on a socket (to `addr` when given), `pwritev` at an offset. More than
/// [`IOV_MAX`] buffers is `InvalidInput`; no buffer at all is `Ok(0)` at once, except
/// on a datagram socket (`datagram`), where it sends an empty datagram.
pub(crate) async fn write_vectored<B: IoBuf>(
    fd: &Rc<LoopFd>,
    bufs: Vec<B>,
    kind: Kind,
    addr: Option<SocketAddr>,
    datagram: bool,
) -> (io::Result<usize>, Vec<B>) {
    if bufs.len() > IOV_MAX {
        return (Err(too_many_buffers(bufs.len())), bufs);
    }
    if bufs.is_empty() && !datagram {
        return (Ok(0), bufs);
    }
    let (buffers, saved): (Vec<Buffer>, Vec<buf::Saved<B>>) =
        bufs.into_iter().map(buf::into_buffer).unzip();
    let bufs = Buffers::new(buffers);
    let FdOp { op, fd } = FdOp::on(fd, |fd| match kind {
        Kind::Socket => Op::SendMsgV { fd, bufs, addr },
        // Pipes: writev; a loop blocks SIGPIPE in its thread (see `sigpipe.rs`).
        Kind::Stream => Op::Writev {
            fd,
            bufs,
            offset: None,
        },
        Kind::At(offset) => Op::Writev {
            fd,
            bufs,
            offset: Some(offset),
        },
    });
    let (res, op) = OpFuture::with_fd(op, fd).await;
    let back = vectored_buffers(op)
        .into_iter()
        .zip(saved)
        .map(|(b, s)| buf::from_buffer(b, s))
        .collect();
    (write_result(res), back)
}
