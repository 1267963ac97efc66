//! The operations a [`Completion`](crate::Completion) can carry, and the buffers they own.

use crate::sys::fd::{AsRawFd, OwnedFd, RawFd};
use std::cell::UnsafeCell;
use std::fmt;
use std::net::{Shutdown, SocketAddr};
use std::ops::BitOr;

use crate::completion::Completion;
use crate::event_loop::LoopId;
use crate::fs_op::OpPath;
#[cfg(unix)]
use crate::fs_op::StatxBuf;
use crate::iovec::Buffers;
use crate::registry::Ticket;
#[cfg(unix)]
use crate::unix_addr::UnixAddr;

/// One operation for the loop to perform.
///
/// Build it with the variant directly or the helper constructors, put it in a
/// [`Completion`] with [`Completion::prep`] or [`Loop::start`](crate::Loop::start), and the
/// callback receives the [`OpResult`](crate::OpResult) variant of the same name.
///
/// File descriptors are borrowed by number and must stay open until the operation
/// finishes; on the poll backend, sockets and pipes must be in non-blocking mode (every
/// fd this crate creates is). Only [`Op::Close`] takes ownership of its fd.
#[derive(Debug)]
pub enum Op {
    /// Does nothing: adding it leaves the completion Dead and never calls back.
    Noop,
    /// Accept one connection on a listening socket.
    Accept {
        /// The listening socket.
        fd: RawFd,
    },
    /// Connect a socket to `addr`.
    Connect {
        /// The socket.
        fd: RawFd,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// Read into `buf` at the fd's current position (for a regular file) or from the
    /// stream. On the poll backend, regular files are read on the thread pool.
    Read {
        /// Source.
        fd: RawFd,
        /// Destination; the whole buffer is offered.
        buf: Buffer,
    },
    /// Read into `buf` at `offset` (runs on the thread pool on the poll backend). Meant for
    /// seekable files: on a pipe or socket the poll backend reports `ESPIPE` while io_uring
    /// ignores the offset.
    Pread {
        /// Source.
        fd: RawFd,
        /// Destination.
        buf: Buffer,
        /// Byte offset in the file.
        offset: u64,
    },
    /// Write `buf` at the fd's current position (or to the stream). To a pipe or FIFO
    /// with no reader left it fails with `EPIPE` and never raises `SIGPIPE`: from its
    /// first `Write` on, a loop keeps `SIGPIPE` blocked in its thread until it is dropped
    /// (a signal raised meanwhile is then consumed, and the old mask restored).
    Write {
        /// Destination.
        fd: RawFd,
        /// Bytes to write.
        buf: Buffer,
    },
    /// Write `buf` at `offset` (runs on the thread pool on the poll backend).
    Pwrite {
        /// Destination.
        fd: RawFd,
        /// Bytes to write.
        buf: Buffer,
        /// Byte offset in the file.
        offset: u64,
    },
    /// `send(2)` on a socket (with `MSG_NOSIGNAL`: a closed peer is an error, not a signal).
    Send {
        /// The socket.
        fd: RawFd,
        /// Bytes to send.
        buf: Buffer,
    },
    /// `recv(2)` on a socket.
    Recv {
        /// The socket.
        fd: RawFd,
        /// Destination.
        buf: Buffer,
    },
    /// `sendmsg(2)`: send `buf` as one message, to `addr` when given (UDP).
    SendMsg {
        /// The socket.
        fd: RawFd,
        /// Bytes to send.
        buf: Buffer,
        /// Destination for unconnected sockets.
        addr: Option<SocketAddr>,
    },
    /// `recvmsg(2)`: receive one message into `buf` together with the sender's address.
    RecvMsg {
        /// The socket.
        fd: RawFd,
        /// Destination.
        buf: Buffer,
    },
    /// Close a file descriptor. Operations still pending on it are cancelled first (their
    /// callbacks get `Canceled`). The operation owns the fd; after the first start the
    /// slot is empty, so rearming a close reports `EBADF` instead of closing someone
    /// else's fd. (A regular-file operation already running on the thread pool finishes
    /// normally.)
    Close {
        /// The descriptor to close.
        fd: Option<OwnedFd>,
    },
    /// Shut down one or both directions of a connected socket.
    Shutdown {
        /// The socket.
        fd: RawFd,
        /// Which directions.
        how: Shutdown,
    },
    /// Wait until `fd` is ready for `events` (one shot), like `poll(2)`.
    Poll {
        /// The descriptor.
        fd: RawFd,
        /// Events of interest: [`PollEvents::IN`] and/or [`PollEvents::OUT`] (a mask with
        /// neither is `EINVAL`). `ERR` and `HUP` are always reported.
        events: PollEvents,
    },
    /// Fire `ms` milliseconds after the completion is added. The absolute deadline is fixed
    /// when it is added, so a rearmed timer keeps it and fires on the next tick.
    Timer {
        /// Delay in milliseconds; 0 fires on the next tick, `u64::MAX` never fires.
        ms: u64,
    },
    /// Cancel another completion's operation.
    Cancel {
        /// Which operation; see [`CancelTarget::of`].
        target: CancelTarget,
    },
    #[cfg(unix)]
    /// Accept one connection on a Unix-domain listening socket. The kernel writes the
    /// peer's [`UnixAddr`] into `addr` (whatever it held): usually unnamed, a path or a
    /// name when the client bound one; read it with [`Op::unix_addr`] in the callback.
    /// [`Op::accept_unix`] builds it. ([`Op::Accept`] works on a Unix listener too, but
    /// reports no peer address.)
    AcceptUnix {
        /// The listening socket.
        fd: RawFd,
        /// Where the kernel writes the peer's address.
        addr: Box<UnixAddr>,
    },
    #[cfg(unix)]
    /// Connect a Unix-domain socket (stream, datagram or seqpacket) to `addr`, a path or
    /// an abstract name. A Unix connect never waits, so both backends perform it when it
    /// is submitted: a full listen backlog is `EAGAIN` (`WouldBlock`), a missing path
    /// `ENOENT`, a path nobody listens on `ECONNREFUSED`.
    ConnectUnix {
        /// The socket.
        fd: RawFd,
        /// Where to connect.
        addr: Box<UnixAddr>,
    },
    #[cfg(unix)]
    /// `sendmsg(2)` of `buf` as one message to the Unix-domain address `addr` (with
    /// `MSG_NOSIGNAL`). A connected socket sends with [`Op::SendMsg`] (no address) or
    /// [`Op::Send`].
    SendMsgUnix {
        /// The socket.
        fd: RawFd,
        /// Bytes to send.
        buf: Buffer,
        /// Destination.
        addr: Box<UnixAddr>,
    },
    #[cfg(unix)]
    /// `recvmsg(2)` on a Unix-domain socket: one message into `buf`, and its sender's
    /// address written into `addr` (unnamed for a sender that is not bound; read it with
    /// [`Op::unix_addr`] in the callback).
    /// [`Op::recv_msg_unix`] builds it. An empty `buf` is `Ok(0)` at once, as for
    /// [`Op::RecvMsg`], with an unnamed sender.
    RecvMsgUnix {
        /// The socket.
        fd: RawFd,
        /// Destination.
        buf: Buffer,
        /// Where the kernel writes the sender's address.
        addr: Box<UnixAddr>,
    },
    /// `openat(2)`: open `path` (relative to `dir`, or to the working directory when
    /// `None`). `O_CLOEXEC` is always added. The result is the new fd (closed if no
    /// callback receives it). Native on io_uring; on the thread pool on the poll backend
    /// (as every path and file-metadata operation below).
    OpenAt {
        /// Directory a relative path starts from (`None`: the working directory).
        dir: Option<RawFd>,
        /// The path; an invalid one (interior NUL) completes with `EINVAL`.
        path: OpPath,
        /// `O_*` flags (access mode, `O_CREAT`, `O_TRUNC`, ...).
        flags: i32,
        /// Permission bits of a created file (before the umask).
        mode: u32,
    },
    #[cfg(unix)]
    /// `statx(2)` of `path` (relative to `dir`), or of the fd `dir` itself with
    /// [`OpPath::empty`] and `libc::AT_EMPTY_PATH`. The result is a
    /// [`Metadata`](crate::Metadata) read from `buf`.
    /// macOS/BSD: `fstatat` (`fstat` for an empty path; macOS has no `AT_EMPTY_PATH`, pass
    /// 0), every field filled whatever `mask` says.
    Statx {
        /// Directory a relative path starts from, or the file itself (see above).
        dir: Option<RawFd>,
        /// The path.
        path: OpPath,
        /// `AT_*` flags (`AT_SYMLINK_NOFOLLOW`, `AT_EMPTY_PATH`, ...).
        flags: i32,
        /// `STATX_*` fields wanted (e.g. `STATX_BASIC_STATS | STATX_BTIME`).
        mask: u32,
        /// Where the kernel writes the record.
        buf: StatxBuf,
    },
    /// `renameat2(2)`: rename `old` to `new`.
    /// macOS: `renameatx_np` for `RENAME_NOREPLACE` (1) / `RENAME_EXCHANGE` (2), other
    /// flags `EINVAL`; FreeBSD: any flag is `EOPNOTSUPP`.
    RenameAt {
        /// Directory `old` is relative to (`None`: the working directory); this fd is the
        /// operation's [`fd`](Op::fd).
        old_dir: Option<RawFd>,
        /// The existing name.
        old: OpPath,
        /// Directory `new` is relative to.
        new_dir: Option<RawFd>,
        /// The new name (replaced if it exists, unless `RENAME_NOREPLACE`).
        new: OpPath,
        /// `RENAME_*` flags.
        flags: u32,
    },
    /// `unlinkat(2)`: remove a file, or an empty directory when `remove_dir`
    /// (`AT_REMOVEDIR`).
    UnlinkAt {
        /// Directory a relative path starts from.
        dir: Option<RawFd>,
        /// The name to remove.
        path: OpPath,
        /// Remove a directory instead of a file.
        remove_dir: bool,
    },
    /// `mkdirat(2)`: create a directory.
    MkdirAt {
        /// Directory a relative path starts from.
        dir: Option<RawFd>,
        /// The new directory.
        path: OpPath,
        /// Permission bits (before the umask).
        mode: u32,
    },
    /// `linkat(2)`: make `new` a hard link to `old`.
    LinkAt {
        /// Directory `old` is relative to; the operation's [`fd`](Op::fd).
        old_dir: Option<RawFd>,
        /// The existing file.
        old: OpPath,
        /// Directory `new` is relative to.
        new_dir: Option<RawFd>,
        /// The new name.
        new: OpPath,
        /// `AT_SYMLINK_FOLLOW` or 0.
        flags: i32,
    },
    /// `symlinkat(2)`: make `link` a symbolic link whose contents are `target`.
    SymlinkAt {
        /// What the link points to (stored as is, not resolved).
        target: OpPath,
        /// Directory a relative `link` starts from.
        dir: Option<RawFd>,
        /// The new link.
        link: OpPath,
    },
    /// `fsync(2)`, or `fdatasync(2)` when `data_only` (`fsync` on macOS).
    Fsync {
        /// The file.
        fd: RawFd,
        /// Flush only the data and the metadata needed to read it.
        data_only: bool,
    },
    /// `fallocate(2)`: allocate (or, with `FALLOC_FL_*` modes, punch/zero) a range.
    /// macOS/BSD: mode 0 only (`posix_fallocate` on FreeBSD, `F_PREALLOCATE` + `ftruncate`
    /// on macOS); other modes `EOPNOTSUPP`.
    Fallocate {
        /// The file (open for writing).
        fd: RawFd,
        /// `FALLOC_FL_*` mode bits (0: allocate and extend the size).
        mode: i32,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
    },
    /// `ftruncate(2)`: truncate or extend (with zeros) the file to `len` bytes.
    Ftruncate {
        /// The file (open for writing).
        fd: RawFd,
        /// The new size.
        len: u64,
    },
    /// `readv(2)` (or `preadv(2)` at `offset`): read into several buffers, filling each
    /// completely before the next. The result is the total byte count; `Ok(0)` at once
    /// when the buffers hold no room at all. More than 1024 buffers (`IOV_MAX`) is
    /// `EINVAL`. On the poll backend, regular files (and every read at an offset) are
    /// read on the thread pool; with an offset, a pipe or socket reports `ESPIPE` there.
    Readv {
        /// Source.
        fd: RawFd,
        /// Destinations, in order.
        bufs: Buffers,
        /// Byte offset in the file, or `None` for the fd's current position (streams).
        offset: Option<u64>,
    },
    /// `writev(2)` (or `pwritev(2)` at `offset`): write several buffers in order, as one
    /// write. The result is the total byte count (possibly partial). More than 1024
    /// buffers is `EINVAL`. To a pipe or socket whose reader is gone it fails with
    /// `EPIPE` and never raises `SIGPIPE` (as [`Op::Write`]: the loop blocks `SIGPIPE` in
    /// its thread); on a socket [`Op::SendMsgV`] (with `MSG_NOSIGNAL`) avoids even that.
    Writev {
        /// Destination.
        fd: RawFd,
        /// Bytes to write, in order.
        bufs: Buffers,
        /// Byte offset in the file, or `None` for the fd's current position (streams).
        offset: Option<u64>,
    },
    /// `sendmsg(2)` of several buffers as one message (one datagram on UDP), to `addr`
    /// when given (with `MSG_NOSIGNAL`).
    SendMsgV {
        /// The socket.
        fd: RawFd,
        /// Bytes to send, in order.
        bufs: Buffers,
        /// Destination for unconnected sockets.
        addr: Option<SocketAddr>,
    },
    #[cfg(unix)]
    /// Accept connections on a listening socket, many per submission: each new connection
    /// calls the callback with [`OpResult::AcceptMulti`](crate::OpResult::AcceptMulti)
    /// while the operation stays in flight. Returning [`Rearm`](crate::CallbackAction::Rearm)
    /// keeps it accepting (no new submission while the kernel keeps it alive; a new one if
    /// the kernel ended it); [`Disarm`](crate::CallbackAction::Disarm) stops it (connections
    /// that arrived meanwhile are closed). A cancel stops it with `Canceled`.
    ///
    /// io_uring: one `IORING_ACCEPT_MULTISHOT` SQE (single accepts on kernels before
    /// 5.19); poll backend: one accept per readiness, the same callbacks. No peer address
    /// is reported (`getpeername` gives it). Do not mix it with [`Op::Accept`] on the same
    /// listener in one loop.
    AcceptMulti {
        /// The listening socket.
        fd: RawFd,
    },
    #[cfg(unix)]
    /// Receive on a socket into buffers of `group`, many per submission: each arrival
    /// calls the callback with [`OpResult::RecvMulti`](crate::OpResult::RecvMulti), a
    /// [`GroupBuf`](crate::GroupBuf) lease of the buffer the bytes landed in (dropping it
    /// returns the buffer to the group). Rearm/Disarm/cancel as for [`Op::AcceptMulti`];
    /// data that arrived after a Disarm stays in the socket or, if the kernel had already
    /// taken it, is dropped with its buffer (so disarm only to stop reading).
    ///
    /// A stream's end is `Err(Eof)`; on a datagram socket an empty datagram is an empty
    /// lease and the receive goes on. With every buffer of the group lent out the
    /// receive fails with `ENOBUFS` and nothing is consumed: drop leases and rearm.
    /// io_uring: one `IORING_RECV_MULTISHOT` SQE over the group's provided-buffer ring;
    /// poll backend: a free buffer is taken only when the socket is readable.
    RecvMulti {
        /// The socket.
        fd: RawFd,
        /// Where received bytes go; registered with this loop.
        group: crate::buf_group::BufferGroup,
    },
    /// `send(2)` without copying (`IORING_OP_SEND_ZC`, with `MSG_NOSIGNAL`): the kernel
    /// sends from `buf` itself. On io_uring it yields two events, the byte count and,
    /// once the kernel no longer reads the buffer, a notification: the callback runs
    /// only after both, so `buf` is never reusable while the kernel may still read it.
    /// Where zero copy is not available (the poll backend, a kernel without the opcode)
    /// it is a plain [`Op::Send`], and so is a send from an inline buffer. The
    /// notification comes only once the data has left the socket: a loop shut down (or
    /// dropped) while a send still waits for it does not wait (the peer might never
    /// read); it leaks the buffer to the kernel instead, and the completion's next
    /// zero-copy send before that notification arrives is a plain send. Zero copy pins
    /// pages and waits for the notification: it can pay off only for large buffers on a
    /// real NIC (over loopback it measured 0.2-0.8x of `Send` from 4 KiB to 64 KiB and
    /// no steady win above; see `benches/send_zc.rs`).
    SendZc {
        /// The socket (TCP or UDP; others report `EOPNOTSUPP` on io_uring).
        fd: RawFd,
        /// Bytes to send.
        buf: Buffer,
    },
}

impl Op {
    /// `Op::Close` taking ownership of `fd`.
    pub fn close(fd: impl Into<OwnedFd>) -> Op {
        Op::Close {
            fd: Some(fd.into()),
        }
    }

    #[cfg(unix)]
    /// `Op::AcceptUnix` on listener `fd`, with room for the peer's address.
    pub fn accept_unix(fd: RawFd) -> Op {
        Op::AcceptUnix {
            fd,
            addr: Box::new(UnixAddr::unnamed()),
        }
    }

    #[cfg(unix)]
    /// `Op::RecvMsgUnix` on `fd` into `buf`, with room for the sender's address.
    pub fn recv_msg_unix(fd: RawFd, buf: Buffer) -> Op {
        Op::RecvMsgUnix {
            fd,
            buf,
            addr: Box::new(UnixAddr::unnamed()),
        }
    }

    #[cfg(unix)]
    /// The Unix address this operation carries, if any: after an [`Op::AcceptUnix`] or
    /// an [`Op::RecvMsgUnix`] (read it from the Dead completion, in the callback), the
    /// peer's or sender's address the kernel wrote.
    ///
    /// ```
    /// let op = xev::Op::accept_unix(3);
    /// assert!(op.unix_addr().is_some_and(|a| a.is_unnamed()));
    /// ```
    pub fn unix_addr(&self) -> Option<&UnixAddr> {
        match self {
            Op::AcceptUnix { addr, .. }
            | Op::ConnectUnix { addr, .. }
            | Op::SendMsgUnix { addr, .. }
            | Op::RecvMsgUnix { addr, .. } => Some(addr),
            _ => None,
        }
    }

    /// The buffer this operation carries, if any.
    pub fn buffer(&self) -> Option<&Buffer> {
        with_buffer!(self, buf => Some(buf), None)
    }

    /// The buffer this operation carries, if any, mutably.
    pub fn buffer_mut(&mut self) -> Option<&mut Buffer> {
        with_buffer!(self, buf => Some(buf), None)
    }

    /// The buffer, taken out of the operation.
    pub(crate) fn into_buffer(self) -> Option<Buffer> {
        with_buffer!(self, buf => Some(buf), None)
    }

    /// The borrowed descriptor of this operation (not `Close`'s owned one), mutably.
    pub(crate) fn borrowed_fd_mut(&mut self) -> Option<&mut RawFd> {
        with_borrowed_fd!(self, fd => Some(fd), None)
    }

    /// Whether the operation delivers many results per submission.
    pub(crate) fn is_multishot(&self) -> bool {
        #[cfg(unix)]
        return matches!(self, Op::AcceptMulti { .. } | Op::RecvMulti { .. });
        #[cfg(not(unix))]
        false
    }

    /// The descriptor this operation works on, if any.
    pub fn fd(&self) -> Option<RawFd> {
        match self {
            Op::Close { fd } => fd.as_ref().map(|f| f.as_raw_fd()),
            op => with_borrowed_fd!(op, fd => Some(*fd), None),
        }
    }
}

/// `$yes` with `$buf` bound to the buffer of a buffer-carrying `$op`, else `$no` (one list
/// of those variants for shared, mutable and owned access).
macro_rules! with_buffer {
    ($op:expr, $buf:ident => $yes:expr, $no:expr) => {
        match $op {
            Op::Read { buf: $buf, .. }
            | Op::Pread { buf: $buf, .. }
            | Op::Write { buf: $buf, .. }
            | Op::Pwrite { buf: $buf, .. }
            | Op::Send { buf: $buf, .. }
            | Op::Recv { buf: $buf, .. }
            | Op::SendMsg { buf: $buf, .. }
            | Op::RecvMsg { buf: $buf, .. } => $yes,
            #[cfg(unix)]
            Op::SendMsgUnix { buf: $buf, .. } | Op::RecvMsgUnix { buf: $buf, .. } => $yes,
            Op::SendZc { buf: $buf, .. } => $yes,
            _ => $no,
        }
    };
}
use with_buffer;

/// `$yes` with `$fd` bound to the borrowed fd of `$op`, else `$no` (`Close` owns its fd).
macro_rules! with_borrowed_fd {
    ($op:expr, $fd:ident => $yes:expr, $no:expr) => {
        match $op {
            Op::Accept { fd: $fd }
            | Op::Connect { fd: $fd, .. }
            | Op::Read { fd: $fd, .. }
            | Op::Pread { fd: $fd, .. }
            | Op::Write { fd: $fd, .. }
            | Op::Pwrite { fd: $fd, .. }
            | Op::Send { fd: $fd, .. }
            | Op::Recv { fd: $fd, .. }
            | Op::SendMsg { fd: $fd, .. }
            | Op::RecvMsg { fd: $fd, .. }
            | Op::Shutdown { fd: $fd, .. }
            | Op::Poll { fd: $fd, .. }
            | Op::Readv { fd: $fd, .. }
            | Op::Writev { fd: $fd, .. }
            | Op::SendMsgV { fd: $fd, .. } => $yes,
            #[cfg(unix)]
            Op::AcceptUnix { fd: $fd, .. }
            | Op::ConnectUnix { fd: $fd, .. }
            | Op::SendMsgUnix { fd: $fd, .. }
            | Op::RecvMsgUnix { fd: $fd, .. } => $yes,
            Op::Close { .. } | Op::Noop | Op::Timer { .. } | Op::Cancel { .. } => $no,
            #[cfg(unix)]
            Op::AcceptMulti { fd: $fd } | Op::RecvMulti { fd: $fd, .. } => $yes,
            #[cfg(unix)]
            Op::Statx { dir: Some($fd), .. } => $yes,
            #[cfg(unix)]
            Op::Statx { dir: None, .. } => $no,
            Op::OpenAt { dir: Some($fd), .. }
            | Op::RenameAt {
                old_dir: Some($fd), ..
            }
            | Op::UnlinkAt { dir: Some($fd), .. }
            | Op::MkdirAt { dir: Some($fd), .. }
            | Op::LinkAt {
                old_dir: Some($fd), ..
            }
            | Op::SymlinkAt { dir: Some($fd), .. }
            | Op::Fsync { fd: $fd, .. }
            | Op::Fallocate { fd: $fd, .. }
            | Op::Ftruncate { fd: $fd, .. } => $yes,
            Op::OpenAt { dir: None, .. }
            | Op::RenameAt { old_dir: None, .. }
            | Op::UnlinkAt { dir: None, .. }
            | Op::MkdirAt { dir: None, .. }
            | Op::LinkAt { old_dir: None, .. }
            | Op::SymlinkAt { dir: None, .. } => $no,
            Op::SendZc { fd: $fd, .. } => $yes,
        }
    };
}
use with_borrowed_fd;

/// The largest length [`Buffer::inline`] takes (and an inline buffer may be
/// [`set_len`](Buffer::set_len) to).
///
/// Up to 22 bytes are stored inside the `Buffer` itself, without allocation: that is what
/// fits in a 32-byte `Buffer` (as big as a `Vec` plus an offset) next to its own
/// bookkeeping, and every [`Completion`](crate::Completion) carries one. A longer inline
/// buffer (23 to 32 bytes) is a `Vec` under the hood and allocates once.
pub const INLINE_BUFFER: usize = 32;

/// Bytes a [`Buffer`] stores in place (see [`INLINE_BUFFER`]).
const STORED: usize = 22;

/// Memory an operation reads from or writes into. The loop owns it while the operation is
/// in flight, so the kernel never touches memory that safe code could free.
///
/// ```
/// let b = xev::Buffer::from(b"PING\n".to_vec());
/// assert_eq!(b.as_slice(), b"PING\n");
/// let small = xev::Buffer::copy_from(b"hi"); // inline, no allocation
/// assert_eq!(small.len(), 2);
/// ```
pub struct Buffer {
    inner: Inner,
}

enum Inner {
    /// Up to [`STORED`] bytes stored in the completion itself.
    /// `start..end` of `data` is in use.
    Inline {
        data: UnsafeCell<[u8; STORED]>,
        start: u8,
        end: u8,
    },
    /// An owned heap buffer; `start..` is in use.
    Vec(Vec<u8>, usize),
    /// Memory the caller vouched for through [`Buffer::from_raw`]; `ptr` is `base`
    /// advanced.
    Raw {
        ptr: *mut u8,
        len: usize,
        base: *mut u8,
    },
    /// Memory owned by a boxed handle (`bytes::Bytes`, `bytes::BytesMut`); `ptr..ptr+len`
    /// is in use, inside the handle's memory, which starts at `base`. Boxed so the
    /// handle does not make every `Buffer` (hence every `Completion`) bigger.
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    Kept {
        ptr: *mut u8,
        len: usize,
        keep: Box<Kept>,
    },
}

/// The owner of a [`Inner::Kept`] buffer's memory, and where that memory starts.
#[cfg_attr(not(feature = "bytes"), allow(dead_code))]
pub(crate) struct Kept {
    pub(crate) base: *mut u8,
    pub(crate) owner: Owner,
}

/// What keeps a [`Kept`] buffer's memory alive and unmoved.
pub(crate) enum Owner {
    /// Refcounted, immutable: only ever written *from*.
    #[cfg(feature = "bytes")]
    Bytes(bytes::Bytes),
    /// Uniquely owned; its length is its whole capacity while in a buffer.
    #[cfg(feature = "bytes")]
    BytesMut(bytes::BytesMut),
}

/// The part of a buffer in use before [`Buffer::narrow`] (absolute offsets into the
/// buffer's memory), to give back to [`Buffer::widen`].
/// (`pub` only to appear in the sealed buffer traits; not reachable from outside.)
#[derive(Clone, Copy, Debug)]
pub struct View {
    start: usize,
    end: usize,
}

impl Buffer {
    /// A zeroed inline buffer of `len` bytes (at most [`INLINE_BUFFER`]), for small reads.
    ///
    /// # Panics
    /// If `len > INLINE_BUFFER`.
    pub fn inline(len: usize) -> Buffer {
        assert!(
            len <= INLINE_BUFFER,
            "inline buffers hold at most {INLINE_BUFFER} bytes"
        );
        if len > STORED {
            return Buffer::from(vec![0; len]);
        }
        Buffer {
            inner: Inner::Inline {
                data: UnsafeCell::new([0; STORED]),
                start: 0,
                end: len as u8,
            },
        }
    }

    /// A copy of `bytes`: inline when it fits, otherwise in a new `Vec`.
    pub fn copy_from(bytes: &[u8]) -> Buffer {
        if bytes.len() <= STORED {
            let mut data = [0; STORED];
            data[..bytes.len()].copy_from_slice(bytes);
            Buffer {
                inner: Inner::Inline {
                    data: UnsafeCell::new(data),
                    start: 0,
                    end: bytes.len() as u8,
                },
            }
        } else {
            Buffer::from(bytes.to_vec())
        }
    }

    /// A buffer over memory the caller keeps alive.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes from now until this
    /// `Buffer` is dropped or replaced, and nothing else may access that memory while an
    /// operation using this buffer is in flight.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> Buffer {
        Buffer {
            inner: Inner::Raw {
                ptr,
                len,
                base: ptr,
            },
        }
    }

    /// Whether the bytes are stored inside the `Buffer` value itself (so inside the
    /// completion whose operation holds it).
    #[cfg(target_os = "linux")] // io_uring's zero-copy sends only
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self.inner, Inner::Inline { .. })
    }

    /// Number of bytes the operation may use (after any [`advance`](Self::advance)).
    pub fn len(&self) -> usize {
        match &self.inner {
            Inner::Inline { start, end, .. } => (*end - *start) as usize,
            Inner::Vec(v, start) => v.len() - *start,
            Inner::Raw { len, .. } | Inner::Kept { len, .. } => *len,
        }
    }

    /// A buffer over memory `keep` owns: `len` bytes from `base`.
    ///
    /// # Safety
    /// `base..base + len` must stay valid (and unmoved) for as long as `keep` lives, and
    /// nothing else may access it while an operation using this buffer is in flight
    /// (for memory only ever written *from*, nothing else may write it).
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    pub(crate) unsafe fn kept(base: *mut u8, len: usize, owner: Owner) -> Buffer {
        Buffer {
            inner: Inner::Kept {
                ptr: base,
                len,
                keep: Box::new(Kept { base, owner }),
            },
        }
    }

    /// The handle of a kept buffer (all of its memory, whatever was in use).
    #[cfg_attr(not(feature = "bytes"), allow(dead_code))]
    pub(crate) fn into_owner(self) -> Option<Owner> {
        match self.inner {
            Inner::Kept { keep, .. } => Some(keep.owner),
            _ => None,
        }
    }

    /// The current view as absolute offsets into the buffer's memory.
    fn view(&self) -> View {
        let start = match &self.inner {
            Inner::Inline { start, .. } => *start as usize,
            Inner::Vec(_, start) => *start,
            Inner::Raw { ptr, base, .. } => *ptr as usize - *base as usize,
            Inner::Kept { ptr, keep, .. } => *ptr as usize - keep.base as usize,
        };
        View {
            start,
            end: start + self.len(),
        }
    }

    /// Restrict the bytes in use to `begin..end` of the current ones (what a slice of
    /// the buffer names), returning the view to give back to [`widen`](Self::widen).
    ///
    /// A `Vec` buffer is narrowed by lowering the `Vec`'s length to the end of the
    /// range: its memory is untouched, and `widen` raises the length again.
    ///
    /// # Panics
    /// If `begin > end` or `end > self.len()`.
    pub(crate) fn narrow(&mut self, begin: usize, end: usize) -> View {
        let len = self.len();
        assert!(
            begin <= end && end <= len,
            "range {begin}..{end} out of bounds of a {len}-byte buffer"
        );
        let old = self.view();
        let (abs_begin, abs_end) = (old.start + begin, old.start + end);
        match &mut self.inner {
            Inner::Inline { start, end, .. } => {
                *start = abs_begin as u8;
                *end = abs_end as u8;
            }
            Inner::Vec(v, start) => {
                // SAFETY: a shorter length (`abs_end <= v.len()`): the bytes past it stay
                // initialised, and are only forgotten until `widen`.
                unsafe { v.set_len(abs_end) };
                *start = abs_begin;
            }
            Inner::Raw { ptr, len, base } => {
                // SAFETY: `abs_begin <= abs_end <=` the memory's length, inside it.
                *ptr = unsafe { base.add(abs_begin) };
                *len = abs_end - abs_begin;
            }
            Inner::Kept { ptr, len, keep } => {
                // SAFETY: as for `Raw`.
                *ptr = unsafe { keep.base.add(abs_begin) };
                *len = abs_end - abs_begin;
            }
        }
        old
    }

    /// Undo [`narrow`](Self::narrow): use exactly the bytes of `view` again.
    ///
    /// # Safety
    /// `view` was returned by `narrow` on this buffer, and since then the buffer was only
    /// advanced, rewound, read from or written into (never [`set_len`](Self::set_len)
    /// or otherwise resized), so the bytes a `Vec` buffer's length covers again are the
    /// initialised ones it covered before.
    pub(crate) unsafe fn widen(&mut self, view: View) {
        match &mut self.inner {
            Inner::Inline { start, end, .. } => {
                *start = view.start as u8;
                *end = view.end as u8;
            }
            Inner::Vec(v, start) => {
                debug_assert!(view.end <= v.capacity());
                // SAFETY: the caller's contract: `view.end` was this Vec's length before
                // `narrow` lowered it, and nothing resized or reallocated it since, so
                // the bytes up to it are still initialised.
                unsafe { v.set_len(view.end) };
                *start = view.start;
            }
            Inner::Raw { ptr, len, base } => {
                // SAFETY: `view` lies inside the memory (it was a view of this buffer).
                *ptr = unsafe { base.add(view.start) };
                *len = view.end - view.start;
            }
            Inner::Kept { ptr, len, keep } => {
                // SAFETY: as for `Raw`.
                *ptr = unsafe { keep.base.add(view.start) };
                *len = view.end - view.start;
            }
        }
    }

    /// Consume the first `n` bytes: later operations use the rest (e.g. to continue a
    /// partial write). [`rewind`](Self::rewind) undoes it.
    ///
    /// ```
    /// let mut b = xev::Buffer::from(b"hello".to_vec());
    /// b.advance(2);
    /// assert_eq!(b.as_slice(), b"llo");
    /// b.rewind();
    /// assert_eq!(b.as_slice(), b"hello");
    /// ```
    ///
    /// # Panics
    /// If `n > self.len()`.
    pub fn advance(&mut self, n: usize) {
        assert!(
            n <= self.len(),
            "advance({n}) past the end of a {}-byte buffer",
            self.len()
        );
        match &mut self.inner {
            Inner::Inline { start, .. } => *start += n as u8,
            Inner::Vec(_, start) => *start += n,
            Inner::Raw { ptr, len, .. } | Inner::Kept { ptr, len, .. } => {
                // SAFETY: `n <= len`, so the new pointer stays inside the buffer's memory.
                *ptr = unsafe { ptr.add(n) };
                *len -= n;
            }
        }
    }

    /// Make every byte usable again after [`advance`](Self::advance).
    pub fn rewind(&mut self) {
        match &mut self.inner {
            Inner::Inline { start, .. } => *start = 0,
            Inner::Vec(_, start) => *start = 0,
            Inner::Raw { ptr, len, base } => {
                *len += *ptr as usize - *base as usize;
                *ptr = *base;
            }
            Inner::Kept { ptr, len, keep } => {
                *len += *ptr as usize - keep.base as usize;
                *ptr = keep.base;
            }
        }
    }

    /// True when the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `Buffer`s are only reachable by safe code while no operation uses them
        // (Completion::op returns None while Active); `from_raw`'s contract covers Raw.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len()) }
    }

    /// Shorten or lengthen an inline buffer (up to [`INLINE_BUFFER`]) or a `Vec` buffer
    /// (zero-filling), e.g. to write only the first `n` bytes of a reused buffer.
    ///
    /// # Panics
    /// If an inline buffer would exceed [`INLINE_BUFFER`], or the buffer is raw.
    pub fn set_len(&mut self, new_len: usize) {
        match &mut self.inner {
            Inner::Inline { data, start, end } => {
                let (start, new_end) = (*start as usize, *start as usize + new_len);
                assert!(
                    new_end <= INLINE_BUFFER,
                    "inline buffers hold at most {INLINE_BUFFER} bytes"
                );
                if new_end <= STORED {
                    *end = new_end as u8;
                } else {
                    // Past what is stored in place: move to a `Vec` (the bytes past the
                    // old storage are zero).
                    let mut v = data.get_mut().to_vec();
                    v.resize(new_end, 0);
                    self.inner = Inner::Vec(v, start);
                }
            }
            Inner::Vec(v, start) => v.resize(*start + new_len, 0),
            Inner::Raw { .. } | Inner::Kept { .. } => panic!("cannot resize a raw buffer"),
        }
    }

    /// The owned `Vec` (all of it, advanced bytes included), if this buffer is one.
    pub fn into_vec(self) -> Option<Vec<u8>> {
        match self.inner {
            Inner::Vec(v, _) => Some(v),
            _ => None,
        }
    }

    /// The whole memory of a raw buffer (advanced bytes included), if it is one.
    pub(crate) fn raw_parts(&self) -> Option<(*mut u8, usize)> {
        match &self.inner {
            Inner::Raw { ptr, len, base } => Some((*base, *len + (*ptr as usize - *base as usize))),
            _ => None,
        }
    }

    /// Pointer to the first byte, for the kernel.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        match &self.inner {
            // SAFETY: `start <= end <= STORED`, inside the array.
            Inner::Inline { data, start, .. } => unsafe {
                data.get().cast::<u8>().add(*start as usize)
            },
            // SAFETY: `start <= v.len()` (advance checks it, set_len keeps it).
            Inner::Vec(v, start) => unsafe { v.as_ptr().cast_mut().add(*start) },
            Inner::Raw { ptr, .. } | Inner::Kept { ptr, .. } => *ptr,
        }
    }
}

impl From<Vec<u8>> for Buffer {
    fn from(v: Vec<u8>) -> Buffer {
        Buffer {
            inner: Inner::Vec(v, 0),
        }
    }
}

impl From<Box<[u8]>> for Buffer {
    fn from(b: Box<[u8]>) -> Buffer {
        Buffer::from(b.into_vec())
    }
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Inline { .. } => "inline",
            Inner::Vec(..) => "vec",
            Inner::Raw { .. } => "raw",
            Inner::Kept { .. } => "kept",
        };
        f.debug_struct("Buffer")
            .field("kind", &kind)
            .field("len", &self.len())
            .finish()
    }
}

// `poll(2)`'s bits: libc's on Unix, the same (Linux) values from `sys` on Windows.
#[cfg(windows)]
use crate::sys as sys_poll;
#[cfg(unix)]
use libc as sys_poll;

/// Readiness events for [`Op::Poll`], with `poll(2)` bit values.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PollEvents(u32);

impl PollEvents {
    /// Readable (or a connection to accept).
    pub const IN: PollEvents = PollEvents(sys_poll::POLLIN as u32);
    /// Writable.
    pub const OUT: PollEvents = PollEvents(sys_poll::POLLOUT as u32);
    /// An error condition (reported, never requested).
    pub const ERR: PollEvents = PollEvents(sys_poll::POLLERR as u32);
    /// Hang-up (reported, never requested).
    pub const HUP: PollEvents = PollEvents(sys_poll::POLLHUP as u32);

    /// From raw `poll(2)` bits. The bit the crate uses internally (1 << 26, which no
    /// `poll(2)` or epoll event uses) is cleared.
    pub const fn from_bits(bits: u32) -> PollEvents {
        PollEvents(bits & !Self::INTERNAL)
    }

    /// The crate-internal bit (`park::POLL_PARK`): only
    /// [`from_bits_internal`](Self::from_bits_internal) sets it, so a user's `Op::Poll`
    /// can never park forever.
    pub(crate) const INTERNAL: u32 = 1 << 26;

    /// From raw bits, crate-internal ones included.
    pub(crate) const fn from_bits_internal(bits: u32) -> PollEvents {
        PollEvents(bits)
    }

    /// The raw `poll(2)` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// True when every bit of `other` is set.
    pub const fn contains(self, other: PollEvents) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when any bit of `other` is set.
    pub const fn intersects(self, other: PollEvents) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for PollEvents {
    type Output = PollEvents;
    fn bitor(self, rhs: PollEvents) -> PollEvents {
        PollEvents(self.0 | rhs.0)
    }
}

impl fmt::Debug for PollEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::IN, "IN"),
            (Self::OUT, "OUT"),
            (Self::ERR, "ERR"),
            (Self::HUP, "HUP"),
        ];
        let set: Vec<&str> = names
            .iter()
            .filter(|(e, _)| self.intersects(*e))
            .map(|(_, n)| *n)
            .collect();
        write!(f, "PollEvents({})", set.join("|"))
    }
}

/// Names the operation a cancel should stop: the registration of a completion at the
/// moment the target was taken. It is `Copy`, so it can be stored and used later; if the
/// target has finished by then (even if its memory was reused), the cancel reports
/// [`CancelError::NotFound`](crate::CancelError::NotFound). A rearmed completion is a new
/// registration. A target also names the loop that runs the operation: given to another
/// loop, the cancel reports [`CancelError::OtherLoop`](crate::CancelError::OtherLoop) and
/// touches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelTarget(pub(crate) Option<(LoopId, Ticket)>);

impl CancelTarget {
    /// The operation `c` is running now (or nothing, if `c` is Dead).
    pub fn of(c: &Completion) -> CancelTarget {
        CancelTarget(c.owner_ticket())
    }

    /// A target that is never found.
    pub const fn none() -> CancelTarget {
        CancelTarget(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers() {
        let mut b = Buffer::inline(4);
        assert_eq!(b.as_slice(), &[0; 4]);
        b.as_mut_slice().copy_from_slice(b"abcd");
        b.set_len(2);
        assert_eq!(b.as_slice(), b"ab");
        let v = Buffer::copy_from(&[7u8; 100]);
        assert_eq!(v.len(), 100);
        assert_eq!(v.into_vec().unwrap(), vec![7u8; 100]);
        let mut backing = [1u8, 2, 3];
        // SAFETY: `backing` outlives `r` and nothing else touches it meanwhile.
        let r = unsafe { Buffer::from_raw(backing.as_mut_ptr(), 3) };
        assert_eq!(r.as_slice(), &[1, 2, 3]);
        assert!(r.into_vec().is_none());
    }

    /// Up to 22 bytes are stored in place; `inline` still takes up to [`INLINE_BUFFER`]
    /// (in a `Vec` past 22), and an inline buffer grown past 22 bytes moves to a `Vec`
    /// keeping its bytes and its advanced start.
    #[test]
    fn inline_buffers_past_the_stored_size() {
        assert_eq!(
            std::mem::size_of::<Buffer>(),
            4 * std::mem::size_of::<usize>()
        );
        let b = Buffer::inline(STORED);
        assert_eq!(
            (b.len(), format!("{b:?}").contains("inline")),
            (STORED, true)
        );
        let mut b = Buffer::inline(INLINE_BUFFER);
        assert_eq!(b.len(), INLINE_BUFFER);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[31] = 9;
        assert_eq!(b.into_vec().unwrap()[31], 9);
        let c = Buffer::copy_from(&[5u8; 23]);
        assert_eq!(c.as_slice(), &[5u8; 23]);

        let mut g = Buffer::copy_from(b"abcdef");
        g.advance(2);
        g.set_len(3);
        assert_eq!(g.as_slice(), b"cde");
        g.set_len(INLINE_BUFFER - 2);
        assert_eq!(&g.as_slice()[..4], b"cdef");
        assert_eq!(g.len(), INLINE_BUFFER - 2);
        g.rewind();
        assert_eq!(&g.as_slice()[..6], b"abcdef");
        assert!(g.as_slice()[STORED..].iter().all(|&x| x == 0));
        let r = std::panic::catch_unwind(|| Buffer::inline(INLINE_BUFFER + 1));
        assert!(
            r.is_err(),
            "longer than INLINE_BUFFER panics, as documented"
        );
    }

    #[test]
    fn poll_events() {
        let e = PollEvents::IN | PollEvents::OUT;
        assert!(e.contains(PollEvents::IN));
        assert!(!PollEvents::IN.contains(e));
        assert_eq!(format!("{e:?}"), "PollEvents(IN|OUT)");
    }
}
