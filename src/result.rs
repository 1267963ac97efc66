//! Typed results of finished operations and their error enums.
//!
//! Every backend reports an operation's outcome as one integer (a byte count, a file
//! descriptor, or `-errno`), exactly like an io_uring CQE. [`OpResult::build`] turns that
//! integer into the typed result for the operation, so every backend shares one mapping
//! and hence one behaviour.

use crate::sys::fd::{FromRawFd, OwnedFd, RawFd};
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;

#[cfg(unix)]
use crate::metadata::Metadata;
use crate::op::{Op, PollEvents};
use crate::sys;

/// Why an operation did not produce its value.
///
/// # Bad input
///
/// Bad input is an error result (or, for misuse the type system cannot rule out, a panic
/// that names it), never undefined behaviour or a hang, and the loop or runtime keeps
/// running. For each input, the callback API's result ([`OpResult`]) and the async API's
/// (`io::Error`, from `xev::net`, `xev::fs`, `xev::time`, ...), on every backend:
///
/// | Input | Callback API | Async API |
/// |---|---|---|
/// | closed fd (any fd operation, the dir fd of a path operation included) | `Err(Io(EBADF))` | cannot be written: sockets and files own open fds |
/// | fd `-1` | `Err(Io(EBADF))` | cannot be written |
/// | fd `i32::MAX - 1` | `Err(Io(EBADF))` | cannot be written |
/// | accept on a regular file | `Accept(Err(Io(ENOTSOCK)))` | `accept()`: `ENOTSOCK` |
/// | recv or read on a listening socket | `Err(ReadError::Io(ENOTCONN))` | `read()`: `ENOTCONN` |
/// | read into an empty buffer | `Ok(0)` at once, nothing consumed | `InvalidInput` (an `Ok(0)` would look like end of stream) |
/// | write of an empty buffer | `Ok(0)` | `write`: `Ok(0)`; `write_all`: `Ok(())`; `send_to`: an empty datagram |
/// | connect to a closed port | `Connect(Err(Io(ECONNREFUSED)))` | `ConnectionRefused` |
/// | bind to an address in use | `Tcp::bind`: `AddrInUse` | `TcpListener::bind`, `UdpSocket::bind`: `AddrInUse` |
/// | timer of 0 ms | fires on the next tick, `Timer(Expiration)` | `sleep(Duration::ZERO)` is ready at once |
/// | timer of `u64::MAX` ms | never fires; a cancel gives it `Timer(Canceled)` | `sleep(Duration::MAX)` waits (the deadline saturates); `timeout(Duration::MAX, f)` is `f`; `interval(Duration::MAX)` ticks once, then waits |
/// | cancel of a Dead completion, of a stale or empty [`CancelTarget`](crate::CancelTarget) | `Cancel(Err(NotFound))` | (a future is cancelled by dropping it; dropping a finished one does nothing) |
/// | two cancels of one operation | the first `Ok`, the second `Err(NotFound)`; the target is called back once, with `Canceled` | — |
/// | cancel of a cancel | `Cancel(Err(NotFound))` | — |
/// | a completion Active in another loop | `add` and `timer_reset` panic, naming it; a cancel gives `Err(`[`CancelError::OtherLoop`]`)` and touches nothing | — |
/// | notify after an [`Async`](crate::Async) handle is dropped | a clone's `notify` wakes the pending wait (`Ok`); with no wait pending, `notify` is `Ok` and does nothing | `Notify::notify` with nobody waiting stores one permit; it may be called from any thread, also after the runtime is gone |
/// | path with an interior NUL (`OpenAt`, `Statx`, every path op) | `Err(Io(EINVAL))`, without reaching the kernel | `fs::File::open`, `fs::metadata`, ...: `InvalidInput` |
/// | file offset past `i64::MAX` (`Pread`, `Pwrite`, `Readv` / `Writev` at an offset) | `Err(Io(EINVAL))`, nothing read or written (io_uring and `preadv2` would take `u64::MAX` for the current position) | `fs::File::read_at`, `write_at`, `write_all_at`: `InvalidInput` |
/// | more than 1024 (`IOV_MAX`) buffers in a vectored op | `Err(Io(EINVAL))` | `read_vectored` / `write_vectored`: `InvalidInput`, the buffers handed back |
/// | empty buffer list | `Readv`: `Ok(0)` at once; `Writev`: `Ok(0)` | `read_vectored`: `InvalidInput`; `write_vectored`: `Ok(0)` |
/// | Unix path longer than `sockaddr_un` holds (108 bytes with its NUL) | `UnixAddr::from_pathname`: `InvalidInput` | `UnixStream::connect`, `UnixListener::bind`: `InvalidInput` |
/// | Unix path nobody bound | `ConnectUnix(Err(Io(ENOENT)))` | `UnixStream::connect`: `NotFound` |
/// | wait on a process that is not our child | `Process::new` refuses it: `ECHILD` (not our unreaped child), `ESRCH` (no such pid), `InvalidInput` (a pid above `i32::MAX`) | `Child::wait` on a child reaped elsewhere: `ECHILD` |
///
/// Each row is a test in `runtime-tests/tests/bad_input.rs`, which also checks that the
/// same loop or runtime then still runs a timer and a TCP round trip.
#[derive(Debug)]
pub enum Error {
    /// The operation was cancelled (by a cancel operation or by the loop shutting down).
    Canceled,
    /// The operating system reported an error.
    Io(io::Error),
}

/// Why a read-like operation (read, pread, recv, recvmsg) did not produce bytes.
///
/// Bad input to a read (closed or wrong kind of fd, ...) gives the same OS errors as any
/// operation; see the table at [`Error`].
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed its side (or the file ended): the read returned 0 bytes into a
    /// non-empty buffer. A read into an empty buffer returns `Ok(0)` instead.
    Eof,
    /// The operation was cancelled.
    Canceled,
    /// The operating system reported an error.
    Io(io::Error),
}

/// Why a cancel operation did not cancel its target.
///
/// A Dead or stale target, a second cancel of one operation and a cancel of a cancel are
/// all [`NotFound`](Self::NotFound); another loop's target is
/// [`OtherLoop`](Self::OtherLoop) (see the table at [`Error`]).
#[derive(Debug)]
pub enum CancelError {
    /// The target is not in flight: it never started, already finished, or its result
    /// is already waiting for its callback.
    NotFound,
    /// The target was taken from a completion of another [`Loop`](crate::Loop): a loop
    /// only cancels its own operations (nothing was touched).
    OtherLoop,
    /// The target is running in a place that cannot be interrupted (a blocking call on
    /// the thread pool, or a kernel operation past its cancellation point), or another
    /// operating-system error.
    Io(io::Error),
}

/// What ended a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerTrigger {
    /// The deadline passed.
    Expiration,
    /// A cancel operation (or loop shutdown) removed the timer before its deadline.
    Canceled,
}

/// A connection returned by an accept operation.
#[derive(Debug)]
pub struct Accepted {
    /// The new socket: non-blocking and close-on-exec on every backend. Dropping it
    /// closes it.
    pub fd: OwnedFd,
    /// The peer's address, when it is an IPv4 or IPv6 address (`None` on a Unix-domain
    /// listener: [`Op::AcceptUnix`] gives a Unix peer's address).
    pub peer: Option<SocketAddr>,
}

/// The result handed to a completion's callback; its variant always matches the
/// operation's [`Op`] variant.
#[derive(Debug)]
pub enum OpResult {
    /// A no-op never calls back; this variant exists for completeness.
    Noop,
    /// See [`Op::Accept`].
    Accept(Result<Accepted, Error>),
    /// See [`Op::Connect`].
    Connect(Result<(), Error>),
    /// Bytes read; see [`Op::Read`].
    Read(Result<usize, ReadError>),
    /// Bytes read; see [`Op::Pread`].
    Pread(Result<usize, ReadError>),
    /// Bytes received; see [`Op::Recv`].
    Recv(Result<usize, ReadError>),
    /// Bytes received and the sender's address; see [`Op::RecvMsg`].
    RecvMsg(Result<(usize, Option<SocketAddr>), ReadError>),
    /// Bytes written; see [`Op::Write`].
    Write(Result<usize, Error>),
    /// Bytes written; see [`Op::Pwrite`].
    Pwrite(Result<usize, Error>),
    /// Bytes sent; see [`Op::Send`].
    Send(Result<usize, Error>),
    /// Bytes sent; see [`Op::SendMsg`].
    SendMsg(Result<usize, Error>),
    /// See [`Op::Close`].
    Close(Result<(), Error>),
    /// See [`Op::Shutdown`].
    Shutdown(Result<(), Error>),
    /// The readiness events that occurred; see [`Op::Poll`].
    Poll(Result<PollEvents, Error>),
    /// See [`Op::Timer`].
    Timer(TimerTrigger),
    /// See [`Op::Cancel`].
    Cancel(Result<(), CancelError>),
    #[cfg(unix)]
    /// The new connection (non-blocking, close-on-exec; dropping it closes it); see
    /// [`Op::AcceptUnix`]. The peer's address is in the operation, like the bytes of a
    /// read are in its buffer: [`Op::unix_addr`] of the completion's op (kept out of the
    /// result so that results stay small and nothing is allocated).
    AcceptUnix(Result<OwnedFd, Error>),
    #[cfg(unix)]
    /// See [`Op::ConnectUnix`].
    ConnectUnix(Result<(), Error>),
    #[cfg(unix)]
    /// Bytes sent; see [`Op::SendMsgUnix`].
    SendMsgUnix(Result<usize, Error>),
    #[cfg(unix)]
    /// Bytes received; the sender's address is [`Op::unix_addr`] of the completion's op.
    /// See [`Op::RecvMsgUnix`].
    RecvMsgUnix(Result<usize, ReadError>),
    /// The opened file (close-on-exec; a file handle on Windows); see [`Op::OpenAt`].
    OpenAt(Result<crate::sys::fd::OwnedFile, Error>),
    #[cfg(unix)]
    /// See [`Op::Statx`]. Boxed: the record is 136 bytes, and inline it made every
    /// `OpResult` 144 bytes, copied (a `memcpy` call each) several times per operation on
    /// the async path; boxed, an `OpResult` is 48 bytes.
    Statx(Result<Box<Metadata>, Error>),
    /// See [`Op::RenameAt`].
    RenameAt(Result<(), Error>),
    /// See [`Op::UnlinkAt`].
    UnlinkAt(Result<(), Error>),
    /// See [`Op::MkdirAt`].
    MkdirAt(Result<(), Error>),
    /// See [`Op::LinkAt`].
    LinkAt(Result<(), Error>),
    /// See [`Op::SymlinkAt`].
    SymlinkAt(Result<(), Error>),
    /// See [`Op::Fsync`].
    Fsync(Result<(), Error>),
    /// See [`Op::Fallocate`].
    Fallocate(Result<(), Error>),
    /// See [`Op::Ftruncate`].
    Ftruncate(Result<(), Error>),
    /// Bytes read, into the buffers in order; see [`Op::Readv`].
    Readv(Result<usize, ReadError>),
    /// Bytes written, from the buffers in order; see [`Op::Writev`].
    Writev(Result<usize, Error>),
    /// Bytes sent, from the buffers in order; see [`Op::SendMsgV`].
    SendMsgV(Result<usize, Error>),
    #[cfg(unix)]
    /// One accepted connection (non-blocking, close-on-exec; dropping it closes it); see
    /// [`Op::AcceptMulti`].
    AcceptMulti(Result<OwnedFd, Error>),
    #[cfg(unix)]
    /// The bytes of one arrival, in a buffer lent from the group; see [`Op::RecvMulti`].
    RecvMulti(Result<crate::buf_group::GroupBuf, ReadError>),
    /// Bytes sent without copying (the kernel is done with the buffer); see
    /// [`Op::SendZc`].
    SendZc(Result<usize, Error>),
}

fn os(res: isize) -> io::Error {
    // Windows: the core's own errno values as Windows codes (see `sys::os_error`).
    #[cfg(windows)]
    return crate::sys::os_error(-res as i32);
    #[cfg(unix)]
    io::Error::from_raw_os_error(-res as i32)
}

fn unit(res: isize) -> Result<(), Error> {
    match res {
        r if r >= 0 => Ok(()),
        r if r == -(libc::ECANCELED as isize) => Err(Error::Canceled),
        r => Err(Error::Io(os(r))),
    }
}

pub(crate) fn count(res: isize) -> Result<usize, Error> {
    unit(res).map(|()| res as usize)
}

pub(crate) fn read_count(res: isize, buf_len: usize) -> Result<usize, ReadError> {
    match res {
        0 if buf_len > 0 => Err(ReadError::Eof),
        r if r >= 0 => Ok(r as usize),
        r if r == -(libc::ECANCELED as isize) => Err(ReadError::Canceled),
        r => Err(ReadError::Io(os(r))),
    }
}

impl OpResult {
    /// Build the typed result of `op` from the backend's integer outcome `res`
    /// (non-negative value or `-errno`). `addr` is the address the kernel wrote for
    /// accept/recvmsg. An accepted (or opened) fd becomes owned here, so it is closed if nobody
    /// keeps it.
    pub(crate) fn build(op: &Op, res: isize, addr: Option<SocketAddr>) -> OpResult {
        let mut out = MaybeUninit::uninit();
        // SAFETY: `out` is valid for a write; `build_into` initialises it.
        unsafe {
            Self::build_into(out.as_mut_ptr(), op, res, addr);
            out.assume_init()
        }
    }

    /// [`build`](Self::build) into `out`: the loop builds a result where its callback
    /// reads it, without a copy in between (see `callback::CallFn`).
    ///
    /// # Safety
    /// `out` is valid for a write; what it held is overwritten, not dropped.
    pub(crate) unsafe fn build_into(
        out: *mut OpResult,
        op: &Op,
        res: isize,
        addr: Option<SocketAddr>,
    ) {
        let r = match op {
            Op::Noop => OpResult::Noop,
            Op::Accept { .. } => OpResult::Accept(unit(res).map(|()| Accepted {
                // SAFETY: a non-negative accept result is a new fd that nothing else owns.
                fd: unsafe { OwnedFd::from_raw_fd(res as RawFd) },
                peer: addr,
            })),
            Op::Connect { .. } => OpResult::Connect(unit(res)),
            Op::Read { buf, .. } => OpResult::Read(read_count(res, buf.len())),
            Op::Pread { buf, .. } => OpResult::Pread(read_count(res, buf.len())),
            Op::Recv { buf, .. } => OpResult::Recv(read_count(res, buf.len())),
            Op::RecvMsg { .. } => {
                // A zero-byte datagram is a valid message, not end-of-file.
                OpResult::RecvMsg(read_count(res, 0).map(|n| (n, addr)))
            }
            Op::Write { .. } => OpResult::Write(count(res)),
            Op::Pwrite { .. } => OpResult::Pwrite(count(res)),
            Op::Send { .. } => OpResult::Send(count(res)),
            Op::SendMsg { .. } => OpResult::SendMsg(count(res)),
            Op::Close { .. } => OpResult::Close(unit(res)),
            Op::Shutdown { .. } => OpResult::Shutdown(unit(res)),
            Op::Poll { .. } => OpResult::Poll(count(res).map(|m| PollEvents::from_bits(m as u32))),
            Op::Timer { .. } => OpResult::Timer(if res == -(libc::ECANCELED as isize) {
                TimerTrigger::Canceled
            } else {
                TimerTrigger::Expiration
            }),
            Op::Cancel { .. } => OpResult::Cancel(match res {
                r if r >= 0 => Ok(()),
                r if r == -(libc::ENOENT as isize) => Err(CancelError::NotFound),
                r if r == -(libc::EXDEV as isize) => Err(CancelError::OtherLoop),
                r => Err(CancelError::Io(os(r))),
            }),
            #[cfg(unix)]
            Op::AcceptUnix { .. } => OpResult::AcceptUnix(unit(res).map(|()| {
                // SAFETY: a non-negative accept result is a new fd that nothing else owns.
                unsafe { OwnedFd::from_raw_fd(res as RawFd) }
            })),
            #[cfg(unix)]
            Op::ConnectUnix { .. } => OpResult::ConnectUnix(unit(res)),
            #[cfg(unix)]
            Op::SendMsgUnix { .. } => OpResult::SendMsgUnix(count(res)),
            // A zero-byte datagram is a valid message, not end-of-file.
            #[cfg(unix)]
            Op::RecvMsgUnix { .. } => OpResult::RecvMsgUnix(read_count(res, 0)),
            Op::OpenAt { .. } => OpResult::OpenAt(unit(res).map(|()| {
                // SAFETY: a non-negative openat result is a new fd (a file handle's value
                // on Windows) that nothing else owns.
                #[cfg(unix)]
                return unsafe { OwnedFd::from_raw_fd(res as RawFd) };
                // SAFETY: as above.
                #[cfg(windows)]
                return unsafe {
                    std::os::windows::io::FromRawHandle::from_raw_handle(
                        crate::sys::fd::file_handle(res as RawFd),
                    )
                };
            })),
            #[cfg(unix)]
            Op::Statx { buf, .. } => {
                OpResult::Statx(unit(res).map(|()| Box::new(Metadata::from_statx(buf.get()))))
            }
            Op::RenameAt { .. } => OpResult::RenameAt(unit(res)),
            Op::UnlinkAt { .. } => OpResult::UnlinkAt(unit(res)),
            Op::MkdirAt { .. } => OpResult::MkdirAt(unit(res)),
            Op::LinkAt { .. } => OpResult::LinkAt(unit(res)),
            Op::SymlinkAt { .. } => OpResult::SymlinkAt(unit(res)),
            Op::Fsync { .. } => OpResult::Fsync(unit(res)),
            Op::Fallocate { .. } => OpResult::Fallocate(unit(res)),
            Op::Ftruncate { .. } => OpResult::Ftruncate(unit(res)),
            Op::Readv { bufs, .. } => OpResult::Readv(read_count(res, bufs.total_len())),
            Op::Writev { .. } => OpResult::Writev(count(res)),
            Op::SendMsgV { .. } => OpResult::SendMsgV(count(res)),
            #[cfg(unix)]
            Op::AcceptMulti { .. } => OpResult::AcceptMulti(unit(res).map(|()| {
                // SAFETY: a non-negative accept result is a new fd that nothing else owns.
                unsafe { OwnedFd::from_raw_fd(res as RawFd) }
            })),
            #[cfg(unix)]
            Op::RecvMulti { fd, group } => OpResult::RecvMulti(recv_multi(*fd, group, res)),
            Op::SendZc { .. } => OpResult::SendZc(count(res)),
        };
        // SAFETY: the caller's contract.
        unsafe { out.write(r) }
    }
}

/// Whether a raw accept (or open) result for `op` carries an fd that must be closed if no callback
/// will see it.
pub(crate) fn close_orphan_fd(op: &Op, res: isize) {
    #[cfg(unix)]
    let accepts = matches!(
        op,
        Op::Accept { .. } | Op::AcceptUnix { .. } | Op::OpenAt { .. }
    );
    #[cfg(windows)]
    let accepts = matches!(op, Op::Accept { .. } | Op::OpenAt { .. });
    if accepts && res >= 0 {
        sys::close_fd(res as RawFd);
    }
    #[cfg(unix)]
    if res >= 0 {
        match op {
            Op::AcceptMulti { .. } => sys::close_fd(res as RawFd),
            // A buffer lent to a result nobody sees goes back to its group.
            Op::RecvMulti { group, .. } => drop_recv_multi(group, res),
            _ => {}
        }
    }
}

/// Give the buffer of multishot receive result `res`, which nobody will see, back to
/// its group.
#[cfg(unix)]
pub(crate) fn drop_recv_multi(group: &crate::buf_group::BufferGroup, res: isize) {
    if res < 0 {
        return;
    }
    if let (Some(bid), len) = crate::buf_group::decode(res) {
        drop(crate::buf_group::GroupBuf::new(group, bid, len));
    }
}

/// The result of a multishot receive on socket `fd`: a lease of the buffer the bytes
/// landed in.
#[cfg(unix)]
pub(crate) fn recv_multi(
    fd: RawFd,
    group: &crate::buf_group::BufferGroup,
    res: isize,
) -> Result<crate::buf_group::GroupBuf, ReadError> {
    if res < 0 {
        return Err(read_count(res, 1).expect_err("negative"));
    }
    let (bid, len) = crate::buf_group::decode(res);
    let Some(bid) = bid else {
        // No buffer picked: the end of a stream, or (io_uring) an empty datagram.
        if !sys::is_stream(fd) {
            return Ok(crate::buf_group::GroupBuf::empty(group));
        }
        return Err(ReadError::Eof);
    };
    let buf = crate::buf_group::GroupBuf::new(group, bid, len);
    // Nothing landed in it: end of stream on a stream socket; on a datagram socket an
    // empty datagram, an empty lease like any other (the receive goes on). The socket's
    // type is asked only then (one `getsockopt`).
    if len == 0 && sys::is_stream(fd) {
        return Err(ReadError::Eof);
    }
    Ok(buf)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Canceled => f.write_str("operation canceled"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Eof => f.write_str("end of file"),
            ReadError::Canceled => f.write_str("operation canceled"),
            ReadError::Io(e) => e.fmt(f),
        }
    }
}

impl fmt::Display for CancelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelError::NotFound => f.write_str("no such operation in flight"),
            CancelError::OtherLoop => {
                f.write_str("the cancel target belongs to another loop (nothing was cancelled)")
            }
            CancelError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}
impl std::error::Error for ReadError {}
impl std::error::Error for CancelError {}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Canceled => io::Error::new(io::ErrorKind::Interrupted, "operation canceled"),
            Error::Io(e) => e,
        }
    }
}

impl From<ReadError> for io::Error {
    fn from(e: ReadError) -> io::Error {
        match e {
            ReadError::Eof => io::Error::new(io::ErrorKind::UnexpectedEof, "end of file"),
            ReadError::Canceled => io::Error::new(io::ErrorKind::Interrupted, "operation canceled"),
            ReadError::Io(e) => e,
        }
    }
}

impl From<CancelError> for io::Error {
    fn from(e: CancelError) -> io::Error {
        match e {
            CancelError::NotFound => {
                io::Error::new(io::ErrorKind::NotFound, "no such operation in flight")
            }
            CancelError::OtherLoop => io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
            CancelError::Io(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Buffer;

    /// A result is moved several times per async operation (callback, slot, future
    /// output); past 64 bytes each move is a `memcpy` call (when `Statx` carried its
    /// metadata inline, results were 144 bytes and those copies were 19 % of the async
    /// ping-pong's instructions).
    #[test]
    fn results_stay_small() {
        assert!(
            std::mem::size_of::<OpResult>() <= 64,
            "OpResult grew to {} bytes: box the large variant",
            std::mem::size_of::<OpResult>()
        );
    }

    #[test]
    fn read_zero_is_eof_unless_buffer_empty() {
        let op = Op::Read {
            fd: 0,
            buf: Buffer::inline(8),
        };
        assert!(matches!(
            OpResult::build(&op, 0, None),
            OpResult::Read(Err(ReadError::Eof))
        ));
        assert!(matches!(
            OpResult::build(&op, 5, None),
            OpResult::Read(Ok(5))
        ));
        let empty = Op::Read {
            fd: 0,
            buf: Buffer::inline(0),
        };
        assert!(matches!(
            OpResult::build(&empty, 0, None),
            OpResult::Read(Ok(0))
        ));
    }

    #[test]
    fn errno_mapping() {
        let op = Op::Recv {
            fd: 0,
            buf: Buffer::inline(8),
        };
        let canceled = -(libc::ECANCELED as isize);
        assert!(matches!(
            OpResult::build(&op, canceled, None),
            OpResult::Recv(Err(ReadError::Canceled))
        ));
        match OpResult::build(&op, -(libc::EBADF as isize), None) {
            OpResult::Recv(Err(ReadError::Io(e))) => {
                assert_eq!(e.raw_os_error(), Some(libc::EBADF))
            }
            other => panic!("{other:?}"),
        }
        let cancel = Op::Cancel {
            target: crate::op::CancelTarget::none(),
        };
        assert!(matches!(
            OpResult::build(&cancel, -(libc::ENOENT as isize), None),
            OpResult::Cancel(Err(CancelError::NotFound))
        ));
        let timer = Op::Timer { ms: 1 };
        assert!(matches!(
            OpResult::build(&timer, 0, None),
            OpResult::Timer(TimerTrigger::Expiration)
        ));
        assert!(matches!(
            OpResult::build(&timer, canceled, None),
            OpResult::Timer(TimerTrigger::Canceled)
        ));
    }
}
