//! [`Compat`]: a stream that owns its buffers, so the poll-based I/O traits can be
//! implemented over xev's owned-buffer operations; and its split halves.
//!
//! The read side keeps one read in flight into a buffer it owns (read-ahead): `poll_read`
//! copies out of that buffer, and once it is drained the next read is started at once.
//! The write side copies into a buffer it owns and starts a write at once (write-behind);
//! while that write is in flight, further writes fill a second buffer, which is sent when
//! the first write ends. Flushing waits until both are empty; closing flushes, then shuts
//! the writing side down (sockets). Every operation is an [`OpFuture`] kept in the
//! wrapper (no allocation per poll): the buffers move into the operation and come back
//! with its result, and are reused. Dropping the wrapper drops those futures, which
//! cancels their operations (the runtime keeps the buffers and the fd until they end).
//!
//! Sockets on the poll backend take the runtime's direct path instead (tokio's way, see
//! `SocketWait`): a read drains into the read buffer with one `recv` when the buffer is
//! empty, no read in flight; a write with nothing accepted ahead (no write in flight, no
//! pending bytes) is one `send` (one buffer) or `sendmsg` (several) straight from the
//! caller's slices, no copy, and `Ok(n)` means the kernel has the `n` bytes. When the
//! socket would block, the task waits for its next edge with no operation and
//! `poll_read` / `poll_write` return `Pending`; a partial send returns the count, and the
//! next write waits for the edge. Only when the loop declines (operations queued ahead,
//! the task's inline budget spent, inside a loop callback) does a side fall back to its
//! operations above, and a write goes direct again only once they have drained, so bytes
//! are never reordered. The waiter is withdrawn when the wrapper is dropped.

// On Windows only sockets are wrapped (no pipes or files yet): the stream and
// positioned parts are unused there.
#![cfg_attr(not(unix), allow(dead_code))]

use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, SeekFrom};
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use super::{sealed, CompatIo};
#[cfg(unix)]
use crate::fs_op::{OpPath, StatxBuf};
use crate::op::{Buffer, Op};
use crate::result::count;
use crate::result::OpResult;
use crate::rt::executor::with_current;
use crate::rt::io::{direct_read_result, mismatch, read_result, write_result, SocketWait, IOV_MAX};
use crate::rt::loop_fd::LoopFd;
use crate::rt::op_future::OpFuture;

/// Default size of the read buffer and of each of the two write buffers.
pub const DEFAULT_BUFFER: usize = 16 * 1024;

/// How reads and writes reach the fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IoKind {
    /// `recv(2)` / `send(2)`; close shuts the writing side down.
    Socket,
    /// `read(2)` / `write(2)` (pipes, terminals, character devices); close only flushes.
    Stream,
    /// `pread(2)` / `pwrite(2)` at positions the wrapper tracks (regular files): reads
    /// and writes each start at offset 0 and advance by what they transfer; close only
    /// flushes.
    Positioned,
}

fn start(fd: &Rc<LoopFd>, op: Op) -> OpFuture {
    OpFuture::with_fd(op, Some(fd.clone()))
}

/// The read side: one owned buffer, data at `buf[pos..filled]`, or a read in flight.
pub(crate) struct Reader {
    fd: Rc<LoopFd>,
    kind: IoKind,
    offset: u64,
    cap: usize,
    /// Empty (no allocation) while the buffer is in the read in flight.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    op: Option<OpFuture>,
    /// A socket on the poll backend reads without an operation, at `poll_fill_buf`
    /// (`SocketWait`): no read-ahead, as in tokio.
    direct: SocketWait,
}

impl Reader {
    fn new(fd: Rc<LoopFd>, kind: IoKind, cap: usize) -> Reader {
        Reader {
            fd,
            kind,
            offset: 0,
            cap: cap.max(1),
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            op: None,
            direct: SocketWait::default(),
        }
    }

    /// Whether reads here take the direct path (a socket on the poll backend).
    fn reads_direct(&self) -> bool {
        self.kind == IoKind::Socket && with_current(|e| e.direct_io()).unwrap_or(false)
    }

    /// Read into the (drained) buffer without an operation, or wait for the socket's
    /// edge (see `reads_direct`). `Ready(None)`: start an operation instead.
    fn poll_read_direct(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<usize>>> {
        debug_assert!(self.op.is_none() && self.pos == self.filled);
        if self.buf.len() != self.cap {
            // Only the first read allocates.
            self.buf.resize(self.cap, 0);
        }
        // SAFETY: the buffer is owned by `self`, `cap` (> 0) bytes long, and not touched
        // elsewhere during the call.
        let res = ready!(unsafe {
            self.direct
                .poll_transfer::<false>(cx, &self.fd, false, self.buf.as_mut_ptr(), self.cap)
        });
        Poll::Ready(res.map(|res| direct_read_result(res, self.cap)))
    }

    /// Start a read into the (drained) buffer.
    fn start_read(&mut self) {
        debug_assert!(self.op.is_none() && self.pos == self.filled);
        let mut v = std::mem::take(&mut self.buf);
        // Only the first read allocates: the buffer comes back with its length.
        v.resize(self.cap, 0);
        self.pos = 0;
        self.filled = 0;
        let buf = Buffer::from(v);
        let op = match self.kind {
            IoKind::Socket => Op::Recv {
                fd: self.fd.raw(),
                buf,
            },
            IoKind::Stream => Op::Read {
                fd: self.fd.raw(),
                buf,
            },
            IoKind::Positioned => Op::Pread {
                fd: self.fd.raw(),
                buf,
                offset: self.offset,
            },
        };
        self.op = Some(start(&self.fd, op));
    }

    /// The buffered bytes, reading first if there are none; empty at end of stream.
    pub(crate) fn poll_fill_buf(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        loop {
            if self.pos < self.filled {
                return Poll::Ready(Ok(&self.buf[self.pos..self.filled]));
            }
            let Some(op) = self.op.as_mut() else {
                if self.kind == IoKind::Socket {
                    if let Some(res) = ready!(self.poll_read_direct(cx)) {
                        self.pos = 0;
                        match res {
                            Ok(0) => {
                                self.filled = 0;
                                return Poll::Ready(Ok(&[]));
                            }
                            Ok(n) => self.filled = n,
                            Err(e) => {
                                self.filled = 0;
                                return Poll::Ready(Err(e));
                            }
                        }
                        continue;
                    }
                }
                self.start_read();
                continue;
            };
            let (res, op) = ready!(Pin::new(op).poll(cx));
            self.op = None;
            self.buf = op
                .into_buffer()
                .and_then(Buffer::into_vec)
                .expect("a read hands its Vec buffer back");
            match read_result(res) {
                // End of stream: reported once; the next poll reads again.
                Ok(0) => return Poll::Ready(Ok(&[])),
                Ok(n) => {
                    self.filled = n;
                    if self.kind == IoKind::Positioned {
                        self.offset += n as u64;
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Mark `amt` buffered bytes used; when that drains the buffer, read ahead.
    pub(crate) fn consume(&mut self, amt: usize) {
        let amt = amt.min(self.filled - self.pos);
        self.pos += amt;
        if amt > 0 && self.pos == self.filled && self.op.is_none() && !self.reads_direct() {
            self.start_read();
        }
    }

    /// Copy buffered bytes into `dst` (reading first if there are none).
    #[cfg_attr(not(feature = "futures-io"), allow(dead_code))]
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if dst.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let src = ready!(self.poll_fill_buf(cx))?;
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        self.consume(n);
        Poll::Ready(Ok(n))
    }

    /// Bytes read from the fd that no `poll_read` has taken yet.
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.filled]
    }

    /// (Positioned) The offset of the next byte a read returns.
    fn position(&self) -> u64 {
        // A read in flight starts at `offset` and nothing is buffered meanwhile.
        self.offset - (self.filled - self.pos) as u64
    }

    /// (Positioned) Forget the buffered bytes, cancel a read in flight (the runtime keeps
    /// its buffer until it ends), and read from `offset` next.
    fn reposition(&mut self, offset: u64) {
        self.op = None;
        self.pos = 0;
        self.filled = 0;
        self.offset = offset;
    }
}

/// The write side: bytes accepted but not yet handed to the kernel (`pending`), a write
/// in flight (owning the other buffer), and the state of close.
pub(crate) struct Writer {
    fd: Rc<LoopFd>,
    kind: IoKind,
    offset: u64,
    cap: usize,
    pending: Vec<u8>,
    /// The buffer of the last finished write, cleared, for the next swap.
    spare: Vec<u8>,
    op: Option<OpFuture>,
    /// Bytes of the write in flight not yet written.
    inflight: usize,
    closed: bool,
    shutdown: Option<OpFuture>,
    shut_down: bool,
    /// A socket on the poll backend with nothing accepted ahead sends from the caller's
    /// buffers without an operation, at `poll_write` (`SocketWait`), as in tokio.
    direct: SocketWait,
}

impl Writer {
    fn new(fd: Rc<LoopFd>, kind: IoKind, cap: usize) -> Writer {
        Writer {
            fd,
            kind,
            offset: 0,
            cap: cap.max(1),
            pending: Vec::new(),
            spare: Vec::new(),
            op: None,
            inflight: 0,
            closed: false,
            shutdown: None,
            shut_down: false,
            direct: SocketWait::default(),
        }
    }

    /// Send `bufs` (not all empty) now from the caller's memory, without an operation
    /// and without a copy, or wait for the socket's edge (a socket with nothing accepted
    /// ahead, on the poll backend: see `Reader::reads_direct`). `Ready(None)`: take the
    /// write-behind path instead (io_uring, operations queued ahead, inline budget spent).
    fn poll_write_direct(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<Option<io::Result<usize>>> {
        debug_assert!(self.op.is_none() && self.pending.is_empty());
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
            // More than `IOV_MAX` buffers, the first ones empty: not worth a path.
            return Poll::Ready(None);
        };
        let res = ready!(if first.len() == len {
            // One buffer with bytes: `send`, which costs the kernel less than `sendmsg`.
            // SAFETY: `first` is borrowed for the call, `len` (> 0) bytes long, and a
            // send only reads it.
            unsafe {
                self.direct.poll_transfer::<false>(
                    cx,
                    &self.fd,
                    true,
                    first.as_ptr().cast_mut(),
                    len,
                )
            }
        } else {
            self.direct.poll_send_vectored(cx, &self.fd, bufs, len)
        });
        Poll::Ready(res.map(|res| count(res).map_err(Into::into)))
    }

    fn write_op(&self, buf: Buffer) -> Op {
        let fd = self.fd.raw();
        match self.kind {
            IoKind::Socket => Op::Send { fd, buf },
            IoKind::Stream => Op::Write { fd, buf },
            IoKind::Positioned => Op::Pwrite {
                fd,
                buf,
                offset: self.offset,
            },
        }
    }

    /// Hand the pending bytes to a write (none may be in flight).
    fn start_pending(&mut self) {
        debug_assert!(self.op.is_none() && !self.pending.is_empty());
        let next = std::mem::take(&mut self.spare);
        let v = std::mem::replace(&mut self.pending, next);
        self.inflight = v.len();
        let op = self.write_op(Buffer::from(v));
        self.op = Some(start(&self.fd, op));
    }

    /// Drive the write in flight (continuing after partial writes) until it is over.
    fn poll_inflight(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(op) = self.op.as_mut() {
            let (res, op) = ready!(Pin::new(op).poll(cx));
            self.op = None;
            let mut b = op.into_buffer().expect("a write hands its buffer back");
            let res = write_result(res);
            if let Ok(n) = res {
                if self.kind == IoKind::Positioned {
                    self.offset += n as u64;
                }
                if n > 0 && n < b.len() {
                    b.advance(n);
                    self.inflight = b.len();
                    let op = self.write_op(b);
                    self.op = Some(start(&self.fd, op));
                    continue;
                }
            }
            self.inflight = 0;
            let mut v = b.into_vec().expect("a write hands its Vec buffer back");
            v.clear();
            self.spare = v;
            match res {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Bytes accepted but not yet written: pending, and the rest of a write in flight.
    fn accepted(&self) -> usize {
        self.pending.len() + self.inflight
    }

    fn check_open(&self) -> io::Result<()> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "xev::compat: write after close/shutdown",
            ));
        }
        Ok(())
    }

    /// A socket on the poll backend with nothing accepted ahead: send `bufs` directly
    /// (`poll_write_direct`; `Pending` while the socket is full). Otherwise accept as
    /// many bytes of `bufs` as fit in the pending buffer and start a write if none is in
    /// flight: `Pending` only when the buffer is full and a write is in flight.
    pub(crate) fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check_open()?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        // An error of an earlier write-behind is reported here, once.
        if let Poll::Ready(Err(e)) = self.poll_inflight(cx) {
            return Poll::Ready(Err(e));
        }
        if self.kind == IoKind::Socket && self.op.is_none() && self.pending.is_empty() {
            // Nothing accepted ahead (so no byte can be overtaken): send directly.
            if let Some(res) = ready!(self.poll_write_direct(cx, bufs)) {
                return Poll::Ready(res);
            }
        }
        if self.op.is_none() && !self.pending.is_empty() {
            self.start_pending();
        }
        let room = self.cap - self.pending.len();
        if room == 0 {
            // A write is in flight (else the pending bytes were just handed over), and
            // `poll_inflight` registered the waker with it.
            return Poll::Pending;
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(self.cap);
        }
        let mut n = 0;
        for b in bufs {
            let take = b.len().min(room - n);
            self.pending.extend_from_slice(&b[..take]);
            n += take;
            if n == room {
                break;
            }
        }
        if self.op.is_none() {
            self.start_pending();
        }
        Poll::Ready(Ok(n))
    }

    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Wait until every accepted byte has been handed to the kernel.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_inflight(cx))?;
            if self.pending.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.start_pending();
        }
    }

    /// Flush, then (sockets) shut the writing side down; later writes fail.
    pub(crate) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.closed = true;
        if self.shut_down {
            return Poll::Ready(Ok(()));
        }
        if self.shutdown.is_none() {
            ready!(self.poll_flush(cx))?;
            if self.kind != IoKind::Socket {
                self.shut_down = true;
                return Poll::Ready(Ok(()));
            }
            let op = Op::Shutdown {
                fd: self.fd.raw(),
                how: Shutdown::Write,
            };
            self.shutdown = Some(start(&self.fd, op));
        }
        let op = self.shutdown.as_mut().expect("just set");
        let (res, _op) = ready!(Pin::new(op).poll(cx));
        self.shutdown = None;
        self.shut_down = true;
        match res {
            OpResult::Shutdown(r) => Poll::Ready(r.map_err(Into::into)),
            other => Poll::Ready(Err(mismatch(&other))),
        }
    }
}

/// An xev stream (any [`CompatIo`]: TCP and Unix sockets, pipe ends and child stdio,
/// files) with owned read and write buffers, implementing the poll-based I/O traits of the enabled features:
/// `futures-io`, `tokio-io`, `hyper` (see the [module docs](crate::compat)).
///
/// - **Reads** fill the wrapper's buffer and `poll_read` copies out of it: sockets on
///   the poll backend read when the buffer is empty (one `recv`, or a wait for the
///   socket's edge, no operation), everything else is read ahead (one read kept in
///   flight).
/// - **Writes** of sockets on the poll backend are sent at once from the caller's
///   buffers (one `send`/`sendmsg`, no copy), or wait for the socket to take them
///   (`Pending`), as in tokio. Elsewhere (io_uring, pipes, files), or when the loop
///   declines the direct send, they are written behind: `poll_write` copies into the
///   wrapper's buffer and starts a write at once, so a `poll_write` that returned `Ok(n)`
///   has not necessarily reached the kernel yet; an error of that write is reported by
///   the next `poll_write`, flush or close. **Flush (or close) before dropping**:
///   dropping the wrapper cancels a write still in flight, and unsent bytes are lost.
/// - `poll_close` / `poll_shutdown` flush, then shut the writing side of a socket down
///   (the peer reads end of stream); writes after it fail with `BrokenPipe`.
/// - Dropping the wrapper in the middle of an operation is safe: the operations are
///   cancelled and the runtime keeps their buffers and the fd until they end.
///
/// It is `!Send` (like every xev I/O type): use it in tasks of the runtime it was created
/// on.
pub struct Compat<S> {
    io: S,
    rd: Reader,
    wr: Writer,
    /// The side used last (positioned streams: where `SeekFrom::Current` counts from).
    last_write: bool,
    /// The `statx` of a `SeekFrom::End` seek (positioned streams).
    size_op: Option<OpFuture>,
    /// The seek started by tokio's `start_seek`.
    seek_to: Option<SeekFrom>,
}

impl<S: CompatIo> Compat<S> {
    /// Wrap `io` with [`DEFAULT_BUFFER`]-byte buffers (allocated on first use).
    pub fn new(io: S) -> Compat<S> {
        Compat::with_capacity(DEFAULT_BUFFER, DEFAULT_BUFFER, io)
    }

    /// Wrap `io` with a read buffer of `read` bytes and two write buffers of `write`
    /// bytes each (a size of 0 counts as 1).
    pub fn with_capacity(read: usize, write: usize, io: S) -> Compat<S> {
        let sealed::Parts { fd, kind } = sealed::CompatFd::compat_parts(&io);
        Compat {
            rd: Reader::new(fd.clone(), kind, read),
            wr: Writer::new(fd, kind, write),
            io,
            last_write: false,
            size_op: None,
            seek_to: None,
        }
    }

    /// Split into a read half and a write half, each usable from its own task; they share
    /// the stream. [`CompatReadHalf::reunite`] puts them back together.
    pub fn into_split(self) -> (CompatReadHalf<S>, CompatWriteHalf<S>) {
        let io = Rc::new(self.io);
        (
            CompatReadHalf {
                io: io.clone(),
                rd: self.rd,
            },
            CompatWriteHalf { io, wr: self.wr },
        )
    }
}

impl<S> Compat<S> {
    /// The wrapped stream (for its addresses and options). Reading or writing it
    /// directly while the wrapper is in use interleaves with the wrapper's read-ahead and
    /// write-behind.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes already read from the stream that no read has taken yet.
    pub fn read_buffer(&self) -> &[u8] {
        self.rd.buffered()
    }

    /// The wrapped stream. Bytes in the read buffer ([`read_buffer`](Self::read_buffer):
    /// take them first), a read in flight (cancelled: bytes it had received are lost)
    /// and written bytes not yet flushed are dropped with the wrapper's state.
    pub fn into_inner(self) -> S {
        self.io
    }

    /// The read side, for a read.
    pub(crate) fn reading(&mut self) -> &mut Reader {
        self.last_write = false;
        &mut self.rd
    }

    /// The write side, for a write, flush or close.
    pub(crate) fn writing(&mut self) -> &mut Writer {
        self.last_write = true;
        &mut self.wr
    }

    /// (Positioned) Seek: flush, then move the read and the write position to `pos`,
    /// where `Current` counts from the position of the side used last; returns the new
    /// position. May be polled again with another `pos` (the last one wins).
    #[cfg(unix)]
    #[cfg_attr(
        not(any(feature = "futures-io", feature = "tokio-io")),
        allow(dead_code)
    )]
    pub(crate) fn poll_seek(
        &mut self,
        cx: &mut Context<'_>,
        pos: SeekFrom,
    ) -> Poll<io::Result<u64>> {
        debug_assert_eq!(self.rd.kind, IoKind::Positioned);
        // Accepted bytes go where they were written, before the positions move.
        ready!(self.wr.poll_flush(cx))?;
        let (base, delta) = match pos {
            SeekFrom::Start(n) => (n, 0),
            SeekFrom::Current(d) => {
                let at = if self.last_write {
                    self.wr.offset
                } else {
                    self.rd.position()
                };
                (at, d)
            }
            SeekFrom::End(d) => {
                let fd = &self.rd.fd;
                let op = self.size_op.get_or_insert_with(|| {
                    start(
                        fd,
                        Op::Statx {
                            dir: Some(fd.raw()),
                            path: OpPath::empty(),
                            flags: crate::sys::AT_EMPTY_PATH,
                            mask: crate::sys::STATX_SIZE,
                            buf: StatxBuf::new(),
                        },
                    )
                });
                let (res, _op) = ready!(Pin::new(op).poll(cx));
                self.size_op = None;
                match res {
                    OpResult::Statx(Ok(m)) => (m.len(), d),
                    OpResult::Statx(Err(e)) => return Poll::Ready(Err(e.into())),
                    other => return Poll::Ready(Err(mismatch(&other))),
                }
            }
        };
        self.size_op = None;
        let to = match base.checked_add_signed(delta) {
            Some(to) if to <= i64::MAX as u64 => to,
            _ => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "xev::compat: seek to a negative or overflowing position",
                )))
            }
        };
        self.rd.reposition(to);
        self.wr.offset = to;
        Poll::Ready(Ok(to))
    }

    /// (Positioned) Remember a seek for [`poll_seek_started`](Self::poll_seek_started)
    /// (tokio's `start_seek`); a seek still in progress is replaced.
    #[cfg_attr(not(feature = "tokio-io"), allow(dead_code))]
    #[cfg(unix)]
    pub(crate) fn start_seek(&mut self, pos: SeekFrom) {
        self.seek_to = Some(pos);
    }

    /// (Positioned) Finish the seek [`start_seek`](Self::start_seek) started; without
    /// one, the position `SeekFrom::Current(0)` would give, moving nothing (tokio's
    /// `poll_complete`).
    #[cfg(unix)]
    #[cfg_attr(not(feature = "tokio-io"), allow(dead_code))]
    pub(crate) fn poll_seek_started(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let Some(pos) = self.seek_to else {
            return Poll::Ready(Ok(if self.last_write {
                // Where the next write goes: after everything accepted.
                self.wr.offset + self.wr.accepted() as u64
            } else {
                self.rd.position()
            }));
        };
        let res = ready!(self.poll_seek(cx, pos));
        self.seek_to = None;
        Poll::Ready(res)
    }
}

impl<S: fmt::Debug> fmt::Debug for Compat<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compat")
            .field("io", &self.io)
            .field("buffered", &self.rd.buffered().len())
            .field("pending_write", &self.wr.pending.len())
            .finish()
    }
}

/// The read half of a [`Compat`], from [`Compat::into_split`]: the read traits only.
pub struct CompatReadHalf<S> {
    io: Rc<S>,
    rd: Reader,
}

/// The write half of a [`Compat`], from [`Compat::into_split`]: the write traits only.
/// Dropping it does not shut the connection down: close it first (`poll_close` /
/// `poll_shutdown`, e.g. `AsyncWriteExt::close` / `shutdown`) if the peer should see end
/// of stream.
pub struct CompatWriteHalf<S> {
    io: Rc<S>,
    wr: Writer,
}

impl<S> CompatReadHalf<S> {
    /// Join `self` with the write half split from the same [`Compat`]; `Err` gives both
    /// back if `write` is the half of another one.
    #[allow(clippy::result_large_err)]
    pub fn reunite(
        self,
        write: CompatWriteHalf<S>,
    ) -> Result<Compat<S>, (CompatReadHalf<S>, CompatWriteHalf<S>)> {
        if !Rc::ptr_eq(&self.io, &write.io) {
            return Err((self, write));
        }
        let CompatReadHalf { io, rd } = self;
        drop(write.io);
        let io = match Rc::try_unwrap(io) {
            Ok(io) => io,
            Err(_) => unreachable!("the two halves hold the only references"),
        };
        Ok(Compat {
            io,
            rd,
            wr: write.wr,
            last_write: false,
            size_op: None,
            seek_to: None,
        })
    }

    /// The shared stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub(crate) fn reader(&mut self) -> &mut Reader {
        &mut self.rd
    }
}

impl<S> CompatWriteHalf<S> {
    /// The shared stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub(crate) fn writer(&mut self) -> &mut Writer {
        &mut self.wr
    }
}

impl<S: fmt::Debug> fmt::Debug for CompatReadHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompatReadHalf")
            .field("io", &self.io)
            .finish()
    }
}

impl<S: fmt::Debug> fmt::Debug for CompatWriteHalf<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompatWriteHalf")
            .field("io", &self.io)
            .finish()
    }
}

// The wrappers never pin their fields: the in-flight operations live in the runtime's
// slot pool, not in the wrapper.
impl<S> Unpin for Compat<S> {}
impl<S> Unpin for CompatReadHalf<S> {}
impl<S> Unpin for CompatWriteHalf<S> {}
