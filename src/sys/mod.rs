//! Thin syscall helpers shared by the backends: socket-address conversion and the
//! synchronous form of every I/O operation (used by the poll backend's "try now" path
//! and by the thread pool).
//!
//! This file holds what is the same on every Unix. What differs lives in one file per
//! platform family, re-exported here under the same names: `linux.rs` (Linux: `accept4`,
//! `pipe2`, `statx`, `renameat2`, `fallocate`, `preadv2`) and `bsd.rs` (macOS, FreeBSD and
//! the other kqueue systems: the same functions over what those kernels have). Callers use
//! `sys::accept_nonblocking`, `sys::pipe_cloexec_nonblocking`, `sys::socket`, ... and carry
//! no `cfg` of their own.

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
mod bsd;
pub mod fd;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly"
))]
pub(crate) use bsd::*;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

/// How a reaped child ended (see `reap_child`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChildEnd {
    /// `exit` with this code.
    Exited(i32),
    /// Killed by this signal; `true` if it dumped core.
    Signaled(i32, bool),
}

use crate::sys::fd::{IntoRawFd, RawFd};
use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::completion::Inner;
use crate::op::Op;
use crate::scratch::Scratch;

/// `-errno` of the last failed call.
pub(crate) fn neg_errno() -> isize {
    -(io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO) as isize)
}

fn ret(r: isize) -> isize {
    if r < 0 {
        neg_errno()
    } else {
        r
    }
}

/// Write `addr` into `out`, returning the length to pass to the kernel.
pub(crate) fn to_sockaddr(addr: &SocketAddr, out: &mut libc::sockaddr_in6) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits inside sockaddr_in6 and both are plain data.
            let sin = unsafe { &mut *(out as *mut libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            // SAFETY: all-zero is a valid sockaddr_in (and clears `sin_zero`).
            *sin = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            set_len_v4(sin);
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            *out = unsafe { mem::zeroed() };
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo();
            out.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            out.sin6_scope_id = a.scope_id();
            set_len_v6(out);
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Read back an address the kernel wrote (`None` for other families or truncation).
pub(crate) fn from_sockaddr(raw: &libc::sockaddr_in6, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = len as usize;
    match raw.sin6_family as i32 {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a sockaddr_in here.
            let sin = unsafe { &*(raw as *const libc::sockaddr_in6).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(raw.sin6_addr.s6_addr),
                u16::from_be(raw.sin6_port),
                raw.sin6_flowinfo,
                raw.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Fill the scratch `msghdr` for sendmsg/recvmsg over `buf` (and `addr` for sendmsg).
pub(crate) fn prepare_msg(
    sc: &mut Scratch,
    buf_ptr: *mut u8,
    buf_len: usize,
    addr: Option<&SocketAddr>,
) {
    sc.iov = libc::iovec {
        iov_base: buf_ptr.cast(),
        iov_len: buf_len,
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    sc.msg = unsafe { mem::zeroed() };
    sc.msg.msg_iov = &mut sc.iov;
    sc.msg.msg_iovlen = 1;
    match addr {
        Some(a) => {
            sc.addrlen = to_sockaddr(a, &mut sc.addr);
            sc.msg.msg_name = (&mut sc.addr as *mut libc::sockaddr_in6).cast();
            sc.msg.msg_namelen = sc.addrlen;
        }
        None => {
            sc.msg.msg_name = std::ptr::null_mut();
            sc.msg.msg_namelen = 0;
        }
    }
}

/// Fill the scratch `msghdr` for a sendmsg of the `n` iovecs at `iov` (owned by the
/// operation, like the buffers they name), to `addr` when given.
pub(crate) fn prepare_msg_iov(
    sc: &mut Scratch,
    iov: *const libc::iovec,
    n: usize,
    addr: Option<&SocketAddr>,
) {
    prepare_msg(sc, std::ptr::null_mut(), 0, addr);
    sc.msg.msg_iov = iov.cast_mut();
    sc.msg.msg_iovlen = n as _;
}

#[cfg(target_os = "linux")] // io_uring only
/// Prepare the scratch for a recvmsg: the kernel writes the sender's address into it.
pub(crate) fn prepare_recvmsg(sc: &mut Scratch, buf_ptr: *mut u8, buf_len: usize) {
    prepare_msg(sc, buf_ptr, buf_len, None);
    sc.msg.msg_name = (&mut sc.addr as *mut libc::sockaddr_in6).cast();
    sc.msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
}

#[cfg(target_os = "linux")] // io_uring only
/// Fill the scratch `msghdr` for a sendmsg/recvmsg whose address is the Unix address
/// `addr` (owned by the operation, so it stays put while the kernel holds the header).
/// For a recvmsg the kernel writes the sender's address there and its length into the
/// header; [`unix_recvmsg_done`] copies the length back.
pub(crate) fn prepare_msg_unix(
    sc: &mut Scratch,
    buf_ptr: *mut u8,
    buf_len: usize,
    addr: &mut crate::unix_addr::UnixAddr,
    recv: bool,
) {
    prepare_msg(sc, buf_ptr, buf_len, None);
    if recv {
        addr.reset_for_kernel();
    }
    sc.msg.msg_name = addr.as_mut_ptr().cast();
    sc.msg.msg_namelen = addr.len;
}

#[cfg(target_os = "linux")] // io_uring only
/// After an io_uring recvmsg of `inner` completed: record the sender's address length the
/// kernel wrote into the scratch header in the operation's address (no-op for other ops).
///
/// # Safety
/// `inner` is a live completion whose operation the kernel no longer uses.
pub(crate) unsafe fn unix_recvmsg_done(inner: *mut Inner) {
    // SAFETY: the caller's contract; loop thread.
    let sc = unsafe { Inner::scratch(inner) };
    // SAFETY: as above.
    if let (Op::RecvMsgUnix { addr, .. }, Some(sc)) = (unsafe { &mut (*inner).op }, sc) {
        addr.len = sc.msg.msg_namelen;
    }
}

/// Operations both backends finish at submission, on the loop thread: `Some(result)`.
/// A Unix connect never waits (it succeeds, fails, or reports `EAGAIN` for a full
/// backlog, which is the result then, not a reason to park), and a Unix recvmsg into an
/// empty buffer is `Ok(0)` with an unnamed sender without consuming a message (as the
/// core does for `RecvMsg`).
///
/// # Safety
/// As for [`perform`].
pub(crate) unsafe fn done_at_submission(inner: *mut Inner) -> Option<isize> {
    // SAFETY: the caller's contract.
    match unsafe { &mut (*inner).op } {
        // SAFETY: as above.
        Op::ConnectUnix { .. } => Some(unsafe { perform(inner, false) }),
        Op::RecvMsgUnix { buf, addr, .. } if buf.is_empty() => {
            addr.len = 0;
            Some(0)
        }
        _ => None,
    }
}

/// Close `fd`, ignoring errors (used for fds nobody will receive).
pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and gives it up.
    unsafe { libc::close(fd) };
}

/// Whether `fd` is a regular file (or a block device): such fds never report
/// `EAGAIN`, so the poll backend runs their I/O on the thread pool.
pub(crate) fn is_blocking_file(fd: RawFd) -> bool {
    // SAFETY: fstat writes into the zeroed struct we own; a bad fd just fails.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFBLK)
}

/// Whether `fd` is a stream, where a 0-byte read is its end: true for stream sockets,
/// pipes and other non-socket fds; false for datagram and seqpacket sockets, where it is
/// an empty datagram. (Whether a short read means "drained" is another question:
/// [`short_read_drains`].)
pub(crate) fn is_stream(fd: RawFd) -> bool {
    // A non-socket fd just fails.
    get_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE)
        .ok()
        .is_none_or(|ty| ty == libc::SOCK_STREAM)
}

/// Whether a short read on `fd` means its queue is drained (and a short write that its
/// buffer is full), so that the poll backend may wait for the next edge instead of trying
/// again: true for TCP sockets and for pipes and FIFOs, whose reads take everything
/// queued that fits (see `stream_reads_drain`). False for everything else: Unix stream
/// sockets (descriptors passed), datagram and seqpacket sockets, a tty
/// (one line per read in canonical mode), an eventfd in semaphore mode (one count per
/// read), inotify and other character devices, whose short read may leave data behind
/// that no new edge may announce (`review5_poll_fs_process.rs`:
/// `a_rearmed_read_of_a_tty_...`, `an_async_read_of_a_tty_...`).
/// (A pipe whose writer put it in packet mode, `O_DIRECT`, returns one packet per read
/// too; its read end cannot tell, so it stays a stream.)
pub(crate) fn short_read_drains(fd: RawFd) -> bool {
    if let Ok(ty) = get_opt(fd, libc::SOL_SOCKET, libc::SO_TYPE) {
        return ty == libc::SOCK_STREAM && stream_reads_drain(fd);
    }
    // SAFETY: fstat writes into the zeroed struct we own; a bad fd just fails.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: as above.
    (unsafe { libc::fstat(fd, &mut st) }) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFIFO
}

/// For a stream socket: whether a short read takes everything queued that fits. On Linux
/// only TCP (and MPTCP) promises it: a Unix stream read stops after bytes that carried
/// descriptors or other credentials than the bytes after them (`unix_stream_read_generic`,
/// `review5_poll_fs_process.rs::an_async_unix_read_gets_the_bytes_behind_passed_...`),
/// an SCTP read returns one message. (TCP's urgent mark, where a read stops short too,
/// is announced by `EPOLLPRI`, see `backend/epoll.rs`.) Elsewhere the readiness source
/// never applies the rule (`polling` cannot tell a hang-up), so any stream socket says
/// yes.
fn stream_reads_drain(fd: RawFd) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        get_opt(fd, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .is_ok_and(|p| p == libc::IPPROTO_TCP || p == libc::IPPROTO_MPTCP)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        true
    }
}

/// What to wait for before retrying an operation that reported `EAGAIN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    Readable,
    Writable,
}

/// Which readiness an operation waits for on the poll backend.
pub(crate) fn wait_kind(op: &Op) -> Wait {
    match op {
        Op::Connect { .. }
        | Op::Write { .. }
        | Op::Pwrite { .. }
        | Op::Send { .. }
        | Op::SendMsg { .. }
        | Op::ConnectUnix { .. }
        | Op::SendMsgUnix { .. } => Wait::Writable,
        Op::Poll { events, .. } if !events.contains(crate::PollEvents::IN) => Wait::Writable,
        Op::SendZc { .. } => Wait::Writable,
        Op::Writev { .. } | Op::SendMsgV { .. } => Wait::Writable,
        _ => Wait::Readable,
    }
}

/// Perform the operation in `inner` once, synchronously, without blocking on sockets
/// (`MSG_DONTWAIT`, non-blocking fds) and returning `-EAGAIN` when it would block.
/// `connect_started` says whether a non-blocking connect is already in progress.
///
/// # Safety
/// `inner` must be valid, its operation and lent scratch not accessed by anyone else
/// during the call, and its buffer valid memory (guaranteed by `Buffer`'s constructors).
/// Its other fields may be read meanwhile: on a pool worker, the loop thread still reads
/// the completion's phase (`Completion::state`, a cancel, `shutdown`), so only the op is
/// borrowed here, never the whole `Inner`.
pub(crate) unsafe fn perform(inner: *mut Inner, connect_started: bool) -> isize {
    // SAFETY: exclusive access to the scratch per the contract; the loop lent scratch
    // space to every operation that uses it (see `scratch::needs_scratch`).
    let mut lent = unsafe { Inner::scratch(inner) };
    // SAFETY: exclusive access to the op per the contract; a place, not a reference to
    // the whole `Inner`.
    let op = unsafe { &mut (*inner).op };
    /// The lent scratch space (`EINVAL` if an operation that needs it has none, which
    /// the loop never lets happen).
    macro_rules! scratch {
        () => {
            match lent.as_deref_mut() {
                Some(sc) => sc,
                None => return -(libc::EINVAL as isize),
            }
        };
    }
    loop {
        // SAFETY: (all calls below) pointers come from owned buffers and scratch fields
        // that outlive the call; lengths match their allocations.
        let r = unsafe {
            match op {
                Op::Accept { fd } => {
                    let sc = scratch!();
                    sc.addrlen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                    accept_nonblocking(
                        *fd,
                        (&mut sc.addr as *mut libc::sockaddr_in6).cast(),
                        &mut sc.addrlen,
                    ) as isize
                }
                Op::Connect { fd, addr } => {
                    if connect_started {
                        let mut err: libc::c_int = 0;
                        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
                        let r = libc::getsockopt(
                            *fd,
                            libc::SOL_SOCKET,
                            libc::SO_ERROR,
                            (&mut err as *mut libc::c_int).cast(),
                            &mut len,
                        );
                        if r < 0 {
                            return neg_errno();
                        }
                        return -(err as isize);
                    }
                    let sc = scratch!();
                    let len = to_sockaddr(addr, &mut sc.addr);
                    let r = libc::connect(*fd, (&sc.addr as *const libc::sockaddr_in6).cast(), len);
                    if r < 0 {
                        let e = neg_errno();
                        if e == -(libc::EINPROGRESS as isize) {
                            return -(libc::EAGAIN as isize);
                        }
                        return e;
                    }
                    0
                }
                // Plain system calls on Linux, without glibc's cancellation hooks (see
                // `read_now`): ~60 instructions less per read or write.
                Op::Read { fd, buf } => return stream_io_now(*fd, false, buf.as_ptr(), buf.len()),
                Op::Pread { fd, buf, offset } => {
                    libc::pread(*fd, buf.as_ptr().cast(), buf.len(), *offset as libc::off_t)
                }
                Op::Write { fd, buf } => return stream_io_now(*fd, true, buf.as_ptr(), buf.len()),
                Op::Pwrite { fd, buf, offset } => {
                    libc::pwrite(*fd, buf.as_ptr().cast(), buf.len(), *offset as libc::off_t)
                }
                // The poll backend has no zero-copy send: a plain one.
                Op::Send { fd, buf } | Op::SendZc { fd, buf } => {
                    return socket_io_now(*fd, true, buf.as_ptr(), buf.len())
                }
                Op::Recv { fd, buf } => return socket_io_now(*fd, false, buf.as_ptr(), buf.len()),
                // One buffer and no control data: sendto/recvfrom do what sendmsg/recvmsg
                // would, without the kernel copying a msghdr in (~120 ns per datagram).
                // Plain system calls on Linux (see `recvfrom_raw`).
                Op::SendMsg { fd, buf, addr } => {
                    return sendto_now(*fd, buf.as_ptr(), buf.len(), addr.as_ref())
                }
                Op::RecvMsg { fd, buf } => {
                    let sc = scratch!();
                    let r =
                        recvfrom_now(*fd, buf.as_ptr(), buf.len(), &mut sc.addr, &mut sc.addrlen);
                    // `Loop::invoke` takes the length from the msghdr (io_uring's recvmsg
                    // writes it there).
                    sc.msg.msg_namelen = sc.addrlen;
                    return r;
                }
                Op::Close { fd } => match fd.take() {
                    Some(owned) => {
                        // The fd is released even when close reports an error (Linux
                        // semantics), so it is never retried.
                        if libc::close(owned.into_raw_fd()) == 0 {
                            return 0;
                        }
                        let e = neg_errno();
                        return if e == -(libc::EINTR as isize) { 0 } else { e };
                    }
                    None => return -(libc::EBADF as isize),
                },
                Op::Shutdown { fd, how } => {
                    let how = match how {
                        std::net::Shutdown::Read => libc::SHUT_RD,
                        std::net::Shutdown::Write => libc::SHUT_WR,
                        std::net::Shutdown::Both => libc::SHUT_RDWR,
                    };
                    libc::shutdown(*fd, how) as isize
                }
                Op::Poll { fd, events } => {
                    let mut pfd = libc::pollfd {
                        fd: *fd,
                        events: events.bits() as i16,
                        revents: 0,
                    };
                    let r = libc::poll(&mut pfd, 1, 0);
                    if r == 0 {
                        return -(libc::EAGAIN as isize);
                    }
                    if r > 0 {
                        if pfd.revents & libc::POLLNVAL != 0 {
                            return -(libc::EBADF as isize);
                        }
                        return pfd.revents as u16 as isize;
                    }
                    r as isize
                }
                Op::Noop | Op::Timer { .. } | Op::Cancel { .. } => return -(libc::EINVAL as isize),
                Op::AcceptUnix { fd, addr } => {
                    addr.reset_for_kernel();
                    let name = addr.as_mut_ptr();
                    accept_nonblocking(*fd, name, &mut addr.len) as isize
                }
                // Never waits (see `done_at_submission`): EAGAIN is a full backlog.
                Op::ConnectUnix { fd, addr } => {
                    libc::connect(*fd, addr.as_ptr(), addr.len) as isize
                }
                Op::SendMsgUnix { fd, buf, addr } => libc::sendto(
                    *fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    SEND_FLAGS,
                    addr.as_ptr(),
                    addr.len,
                ),
                Op::RecvMsgUnix { fd, buf, addr } => {
                    addr.reset_for_kernel();
                    let name = addr.as_mut_ptr();
                    libc::recvfrom(
                        *fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                        name,
                        &mut addr.len,
                    )
                }
                Op::OpenAt { .. }
                | Op::Statx { .. }
                | Op::RenameAt { .. }
                | Op::UnlinkAt { .. }
                | Op::MkdirAt { .. }
                | Op::LinkAt { .. }
                | Op::SymlinkAt { .. }
                | Op::Fsync { .. }
                | Op::Fallocate { .. }
                | Op::Ftruncate { .. } => match perform_fs(op) {
                    Some(r) => r,
                    // A path with an interior NUL never reaches the kernel.
                    None => return -(libc::EINVAL as isize),
                },
                Op::Readv { fd, bufs, offset } => {
                    let (iov, n) = bufs.iovecs();
                    let n = n.min(libc::c_int::MAX as usize) as libc::c_int;
                    match offset {
                        None => libc::readv(*fd, iov, n),
                        Some(o) => libc::preadv(*fd, iov, n, *o as libc::off_t),
                    }
                }
                Op::Writev { fd, bufs, offset } => {
                    let (iov, n) = bufs.iovecs();
                    let n = n.min(libc::c_int::MAX as usize) as libc::c_int;
                    match offset {
                        None => libc::writev(*fd, iov, n),
                        Some(o) => libc::pwritev(*fd, iov, n, *o as libc::off_t),
                    }
                }
                Op::SendMsgV { fd, bufs, addr } => {
                    let sc = scratch!();
                    let (iov, n) = bufs.iovecs();
                    prepare_msg_iov(sc, iov, n, addr.as_ref());
                    libc::sendmsg(*fd, &sc.msg, SEND_FLAGS)
                }
                Op::AcceptMulti { fd } => {
                    accept_nonblocking(*fd, std::ptr::null_mut(), std::ptr::null_mut()) as isize
                }
                Op::RecvMulti { fd, group } => return recv_into_group(*fd, group),
            }
        };
        let r = ret(r);
        if r == -(libc::EINTR as isize) {
            continue;
        }
        if r == -(libc::EWOULDBLOCK as isize) {
            return -(libc::EAGAIN as isize);
        }
        return r;
    }
}

/// A send (`send`) or receive of the `len` bytes at `ptr` on socket `fd`, now and without
/// waiting (the async runtime's direct attempt, see `poll::Driver::try_now`): the bytes
/// moved, or `-errno` (`-EAGAIN` when it would block).
///
/// # Safety
/// `ptr..ptr + len` is valid for the call: readable for a send, writable for a receive.
/// (A closed or invalid `fd` is an error, `-EBADF`, not undefined behaviour.)
#[inline]
pub(crate) unsafe fn socket_io_now(fd: RawFd, send: bool, ptr: *mut u8, len: usize) -> isize {
    retry_nonblocking(|| {
        // SAFETY: the caller's contract; `MSG_NOSIGNAL` keeps a send to a closed peer an
        // `EPIPE` rather than a signal.
        unsafe {
            if send {
                send_now(fd, ptr, len)
            } else {
                recv_now(fd, ptr, len)
            }
        }
    })
}

/// A `write` (`send`) or `read` of the `len` bytes at `ptr` on `fd`, a pipe or other
/// non-socket stream in non-blocking mode, now and without waiting (the async runtime's
/// direct attempt for pipes): the bytes moved, or `-errno` (`-EAGAIN` when it would
/// block).
///
/// # Safety
/// As [`socket_io_now`]'s.
#[inline]
pub(crate) unsafe fn stream_io_now(fd: RawFd, send: bool, ptr: *mut u8, len: usize) -> isize {
    retry_nonblocking(|| {
        // SAFETY: the caller's contract.
        unsafe {
            if send {
                write_now(fd, ptr, len)
            } else {
                read_now(fd, ptr, len)
            }
        }
    })
}

/// `attempt` (a non-blocking socket call's result, `-errno` on error) again after
/// `EINTR`; "would block" as `-EAGAIN` whatever the platform spells it.
#[inline(always)]
fn retry_nonblocking(mut attempt: impl FnMut() -> isize) -> isize {
    loop {
        let r = attempt();
        if r == -(libc::EINTR as isize) {
            continue;
        }
        if r == -(libc::EWOULDBLOCK as isize) {
            return -(libc::EAGAIN as isize);
        }
        return r;
    }
}

/// A receive (`recvfrom`) of one datagram into the `len` bytes at `ptr` on socket `fd`,
/// now and without waiting, its sender's address written to `addr` (`addrlen` bytes):
/// the datagram's length, or `-errno` (`-EAGAIN` when none is queued). The async
/// runtime's direct `recv_from` (see `socket_io_now`) and the poll backend's `RecvMsg`.
///
/// # Safety
/// `ptr..ptr + len` is writable for the call.
#[inline]
pub(crate) unsafe fn recvfrom_now(
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    addr: &mut libc::sockaddr_in6,
    addrlen: &mut libc::socklen_t,
) -> isize {
    let name = (addr as *mut libc::sockaddr_in6).cast::<libc::sockaddr>();
    retry_nonblocking(|| {
        *addrlen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: the caller's contract for the bytes; `addr` is a writable
        // `sockaddr_in6` (large enough for IPv4 and IPv6) of the length given.
        ret(unsafe { recvfrom_raw(fd, ptr, len, name, addrlen) })
    })
}

/// A send (`sendto`) of the `len` bytes at `ptr` on socket `fd` as one datagram to
/// `addr` (`None`: the connected peer), now and without waiting: the bytes sent, or
/// `-errno` (`-EAGAIN` when it would block). The async runtime's direct `send_to` and
/// the poll backend's `SendMsg`.
///
/// # Safety
/// `ptr..ptr + len` is readable for the call.
#[inline]
pub(crate) unsafe fn sendto_now(
    fd: RawFd,
    ptr: *const u8,
    len: usize,
    addr: Option<&SocketAddr>,
) -> isize {
    // SAFETY: an all-zero `sockaddr_in6` is a valid (unspecified) address.
    let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let (name, namelen) = match addr {
        Some(a) => {
            let n = to_sockaddr(a, &mut raw);
            (
                (&raw as *const libc::sockaddr_in6).cast::<libc::sockaddr>(),
                n,
            )
        }
        None => (std::ptr::null(), 0),
    };
    // SAFETY: the caller's contract for the bytes; `name` is null or `raw`, alive for
    // the call, with its length.
    retry_nonblocking(|| ret(unsafe { sendto_raw(fd, ptr, len, name, namelen) }))
}

/// A vectored send (`sendmsg`) of `bufs`, in order, on socket `fd`, now and without
/// waiting (the async runtime's direct attempt for the compat adapters' vectored writes):
/// the bytes sent, or `-errno` (`-EAGAIN` when it would block). Past `IOV_MAX` (1024)
/// buffers only the first 1024 are sent (a partial write).
#[cfg(any(feature = "futures-io", feature = "tokio-io", feature = "hyper"))]
pub(crate) fn socket_sendv_now(fd: RawFd, bufs: &[io::IoSlice<'_>]) -> isize {
    // SAFETY: an all-zero `msghdr` is a valid one: no address, no control data.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // `IoSlice` is guaranteed ABI-compatible with `iovec` on Unix; the kernel only reads
    // the array (`*mut` is the C declaration's).
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len().min(1024) as _;
    // SAFETY: `msg` names `bufs`' iovecs and their memory, borrowed (alive, readable) for
    // the call; `MSG_NOSIGNAL` keeps a send to a closed peer an `EPIPE`.
    retry_nonblocking(|| ret(unsafe { libc::sendmsg(fd, &msg, SEND_FLAGS) }))
}

/// One receive into a free buffer of `group` (the poll backend's multishot receive): the
/// encoded buffer and length, `-ENOBUFS` (nothing consumed) when every buffer is lent.
pub(crate) fn recv_into_group(fd: RawFd, group: &crate::buf_group::BufferGroup) -> isize {
    let Some(bid) = group.0.take() else {
        return -(libc::ENOBUFS as isize);
    };
    let (p, len) = group.0.buffer(bid);
    loop {
        // SAFETY: buffer `bid` was just taken from the group, so it is ours alone until
        // the result's lease returns it; `p`/`len` describe it.
        let r = ret(unsafe { libc::recv(fd, p.cast(), len, libc::MSG_DONTWAIT) });
        if r == -(libc::EINTR as isize) {
            continue;
        }
        // An empty datagram is a result with its (empty) buffer, as io_uring gives it;
        // 0 on a stream socket is its end.
        if r == 0 && !is_stream(fd) {
            return crate::buf_group::encode(bid, 0);
        }
        if r <= 0 {
            group.0.give_back(bid);
            if r == -(libc::EWOULDBLOCK as isize) {
                return -(libc::EAGAIN as isize);
            }
            return r;
        }
        return crate::buf_group::encode(bid, r as usize);
    }
}

/// `dir` as the `*at` calls take it (`AT_FDCWD` for the working directory).
pub(crate) fn at(dir: Option<RawFd>) -> RawFd {
    dir.unwrap_or(libc::AT_FDCWD)
}

/// The blocking syscall of a filesystem operation (paths, metadata, sync, size), for the
/// thread pool: its raw return value (`-1` with `errno` set on failure), or `None` for a
/// path with an interior NUL (which is never given to the kernel).
///
/// # Safety
/// As for [`perform`]: `op` is the op of an Active completion the caller has exclusive
/// access to.
unsafe fn perform_fs(op: &mut Op) -> Option<isize> {
    /// The path pointers of `$p...`, or an early `None` for an invalid one.
    macro_rules! paths {
        ($($p:expr),+) => {
            ($($p.ptr()?),+)
        };
    }
    // SAFETY (all calls): path pointers come from the op's owned NUL-terminated paths and
    // the statx pointer from its boxed record, all valid for the call; fds are numbers.
    unsafe {
        let r: libc::c_long = match op {
            Op::OpenAt {
                dir,
                path,
                flags,
                mode,
            } => {
                let p = paths!(path);
                libc::openat(at(*dir), p, *flags | libc::O_CLOEXEC, *mode as libc::c_uint).into()
            }
            Op::Statx {
                dir,
                path,
                flags,
                mask,
                buf,
            } => {
                let p = paths!(path);
                statx(at(*dir), p, *flags, *mask, buf.as_mut_ptr())
            }
            Op::RenameAt {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let (o, n) = paths!(old, new);
                renameat(at(*old_dir), o, at(*new_dir), n, *flags)
            }
            Op::UnlinkAt {
                dir,
                path,
                remove_dir,
            } => {
                let p = paths!(path);
                let flags = if *remove_dir { libc::AT_REMOVEDIR } else { 0 };
                libc::unlinkat(at(*dir), p, flags).into()
            }
            Op::MkdirAt { dir, path, mode } => {
                let p = paths!(path);
                libc::mkdirat(at(*dir), p, *mode as libc::mode_t).into()
            }
            Op::LinkAt {
                old_dir,
                old,
                new_dir,
                new,
                flags,
            } => {
                let (o, n) = paths!(old, new);
                libc::linkat(at(*old_dir), o, at(*new_dir), n, *flags).into()
            }
            Op::SymlinkAt { target, dir, link } => {
                let (t, l) = paths!(target, link);
                libc::symlinkat(t, at(*dir), l).into()
            }
            Op::Fsync { fd, data_only } => {
                if *data_only {
                    fdatasync(*fd).into()
                } else {
                    libc::fsync(*fd).into()
                }
            }
            Op::Fallocate {
                fd,
                mode,
                offset,
                len,
            } => fallocate(*fd, *mode, *offset, *len),
            Op::Ftruncate { fd, len } => libc::ftruncate(*fd, *len as libc::off_t).into(),
            _ => unreachable!("perform_fs is only called for filesystem operations"),
        };
        Some(r as isize)
    }
}

// ---------------------------------------------------------------------------------------
// Synchronous socket setup (bind, connect for UDP, names, listen, options).

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `bind(2)`.
pub(crate) fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let len = to_sockaddr(addr, &mut raw);
    // SAFETY: `raw` holds a sockaddr of `len` bytes and outlives the call.
    cvt(unsafe { libc::bind(fd, (&raw as *const libc::sockaddr_in6).cast(), len) }).map(drop)
}

/// A synchronous `connect(2)` (for UDP, where it only records the peer).
pub(crate) fn connect_sync(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let len = to_sockaddr(addr, &mut raw);
    // SAFETY: `raw` holds a sockaddr of `len` bytes and outlives the call.
    cvt(unsafe { libc::connect(fd, (&raw as *const libc::sockaddr_in6).cast(), len) }).map(drop)
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn name(fd: RawFd, f: NameFn) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid sockaddr_in6.
    let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `raw`, which we own.
    cvt(unsafe { f(fd, (&mut raw as *mut libc::sockaddr_in6).cast(), &mut len) })?;
    from_sockaddr(&raw, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}

/// `getsockname(2)`.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, libc::getsockname)
}

/// `getpeername(2)`.
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, libc::getpeername)
}

/// `setsockopt(2)` with an int value.
fn set_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: the kernel reads one int from `val`, which outlives the call.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// `getsockopt(2)` of an int value.
fn get_opt(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `val`, which we own.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// `listen(2)` (a backlog above `c_int::MAX` is clamped).
pub(crate) fn listen(fd: RawFd, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(libc::c_int::MAX as u32) as libc::c_int;
    // SAFETY: listen(2) takes no pointers; a bad fd just fails.
    cvt(unsafe { libc::listen(fd, backlog) }).map(drop)
}

/// Set `SO_REUSEADDR`.
pub(crate) fn set_reuseaddr(fd: RawFd) -> io::Result<()> {
    set_opt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
}

/// Set `TCP_NODELAY` on or off.
pub(crate) fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
    set_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, on.into())
}

/// Whether `TCP_NODELAY` is set.
pub(crate) fn nodelay(fd: RawFd) -> io::Result<bool> {
    get_opt(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY).map(|v| v != 0)
}

// ---------------------------------------------------------------------------------------
// Vectored I/O.

/// The scatter/gather element of vectored I/O (`struct iovec`).
pub(crate) type IoVec = libc::iovec;

/// An [`IoVec`] over `len` bytes at `ptr`.
#[inline(always)]
pub(crate) fn io_vec(ptr: *const u8, len: usize) -> IoVec {
    libc::iovec {
        iov_base: ptr.cast_mut().cast(),
        iov_len: len,
    }
}

/// A close-on-exec duplicate of `fd` (`F_DUPFD_CLOEXEC`), owned by the caller.
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes no pointers; a bad fd just fails.
    let d = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if d < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(d)
}

/// Switch `fd`'s `O_NONBLOCK` flag.
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL take no pointers; a bad fd just fails.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let new = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: as above, with flags derived from the current ones.
    if fl < 0 || (new != fl && unsafe { libc::fcntl(fd, libc::F_SETFL, new) } < 0) {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The platform functions' contracts, checked on the platform the tests run on (the
    //! same assertions hold for `bsd.rs`, which CI only type-checks).
    use super::*;
    use std::os::fd::AsRawFd;

    fn fd_flags(fd: RawFd) -> (bool, bool) {
        // SAFETY: F_GETFD/F_GETFL on an fd the test owns.
        let (fdfl, fl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFD),
                libc::fcntl(fd, libc::F_GETFL),
            )
        };
        assert!(fdfl >= 0 && fl >= 0);
        (fdfl & libc::FD_CLOEXEC != 0, fl & libc::O_NONBLOCK != 0)
    }

    /// The direct socket calls on a bad fd (-1, or a number nothing has open) are
    /// `-EBADF`, never a panic; on an empty non-blocking UDP socket a receive is
    /// `-EAGAIN` and a datagram comes back with its sender.
    #[test]
    fn direct_socket_calls_report_errors_as_errno() {
        let mut buf = [0u8; 8];
        let p = buf.as_mut_ptr();
        // SAFETY: an all-zero `sockaddr_in6` is a valid address.
        let mut addr: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        let mut alen = 0;
        // A number far above any open one (a closed one could be reused meanwhile by a
        // test on another thread).
        let never_open = 1 << 30;
        let ebadf = -(libc::EBADF as isize);
        for fd in [-1, never_open] {
            // SAFETY: `buf` is valid for its 8 bytes during each call.
            unsafe {
                assert_eq!(socket_io_now(fd, true, p, 8), ebadf);
                assert_eq!(socket_io_now(fd, false, p, 8), ebadf);
                assert_eq!(recvfrom_now(fd, p, 8, &mut addr, &mut alen), ebadf);
                assert_eq!(sendto_now(fd, p, 8, None), ebadf);
            }
        }
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        // SAFETY: as above.
        unsafe {
            let eagain = -(libc::EAGAIN as isize);
            assert_eq!(
                recvfrom_now(rx.as_raw_fd(), p, 8, &mut addr, &mut alen),
                eagain
            );
            assert_eq!(sendto_now(tx.as_raw_fd(), b"hi".as_ptr(), 2, Some(&to)), 2);
            let mut n = eagain;
            for _ in 0..1000 {
                n = recvfrom_now(rx.as_raw_fd(), p, 8, &mut addr, &mut alen);
                if n != eagain {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            assert_eq!(n, 2);
        }
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(from_sockaddr(&addr, alen), Some(tx.local_addr().unwrap()));
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:80".parse::<SocketAddr>().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 65535, 7, 3)),
        ] {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            let len = to_sockaddr(&a, &mut raw);
            assert_eq!(from_sockaddr(&raw, len), Some(a));
            // Truncated: not an address.
            assert_eq!(from_sockaddr(&raw, len - 1), None);
            // What socket2 (and so the kernel) reads from the same bytes.
            // SAFETY: `raw` holds a sockaddr of `len` bytes.
            let s2 = unsafe {
                socket2::SockAddr::try_init(|storage, l| {
                    std::ptr::copy_nonoverlapping(
                        (&raw as *const libc::sockaddr_in6).cast::<u8>(),
                        storage.cast::<u8>(),
                        len as usize,
                    );
                    *l = len;
                    Ok(())
                })
            }
            .unwrap()
            .1;
            assert_eq!(s2.as_socket(), Some(a));
        }
    }

    #[test]
    fn pipe_is_cloexec_nonblocking_and_empty_read_is_eagain() {
        let (r, w) = pipe_cloexec_nonblocking().unwrap();
        for fd in [&r, &w] {
            assert_eq!(fd_flags(fd.as_raw_fd()), (true, true));
        }
        let mut b = [0u8; 1];
        // SAFETY: reads into the local buffer.
        let n = unsafe { libc::read(r.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        assert_eq!(n, -1);
        assert_eq!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::EAGAIN)
        );
    }

    #[test]
    fn sockets_are_cloexec_nonblocking() {
        use socket2::{Domain, Type};
        let s = socket(Domain::IPV4, Type::STREAM).unwrap();
        assert_eq!(fd_flags(s.as_raw_fd()), (true, true));
        let (a, b) = socketpair(Domain::UNIX, Type::STREAM).unwrap();
        assert_eq!(fd_flags(a.as_raw_fd()), (true, true));
        assert_eq!(fd_flags(b.as_raw_fd()), (true, true));
    }

    #[test]
    fn accept_nonblocking_gives_a_nonblocking_cloexec_fd() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        // SAFETY: all-zero is a valid sockaddr_in6; the kernel writes at most `len`.
        let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
        let mut len = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        // SAFETY: `raw`/`len` are valid for the kernel to write.
        let fd = unsafe {
            accept_nonblocking(
                l.as_raw_fd(),
                (&mut raw as *mut libc::sockaddr_in6).cast(),
                &mut len,
            )
        };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: a new fd we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        assert_eq!(fd_flags(fd.as_raw_fd()), (true, true));
        assert_eq!(
            from_sockaddr(&raw, len).map(|a| a.ip()),
            Some("127.0.0.1".parse().unwrap())
        );
        // A bad fd: -1 with errno set.
        // SAFETY: null address pointers are allowed.
        let r = unsafe { accept_nonblocking(-1, std::ptr::null_mut(), std::ptr::null_mut()) };
        assert_eq!(r, -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn copy_file_range_copies_and_advances_offsets() {
        use std::io::{Read, Seek, Write};
        let dir = std::env::temp_dir();
        let p = |n: &str| dir.join(format!("xev-sys-cfr-{}-{n}", std::process::id()));
        let (sp, dp) = (p("src"), p("dst"));
        std::fs::File::create(&sp)
            .unwrap()
            .write_all(b"0123456789")
            .unwrap();
        let src = std::fs::File::open(&sp).unwrap();
        let mut dst = std::fs::File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&dp)
            .unwrap();
        let (mut i, mut o) = (2u64, 0u64);
        match copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, 5) {
            Ok(n) => {
                assert_eq!((n, i, o), (5, 7, 5));
                let mut s = String::new();
                dst.rewind().unwrap();
                dst.read_to_string(&mut s).unwrap();
                assert_eq!(s, "23456");
            }
            // No copy_file_range here: the caller falls back.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS)),
        }
        let _ = (std::fs::remove_file(&sp), std::fs::remove_file(&dp));
    }

    #[test]
    fn statx_of_a_path_and_of_an_fd() {
        use std::os::unix::fs::MetadataExt;
        let stat = |dir: RawFd, path: &std::ffi::CStr, flags: libc::c_int| {
            // SAFETY: all-zero is a valid record.
            let mut rec: StatRecord = unsafe { mem::zeroed() };
            // SAFETY: a NUL-terminated path and a record, both live across the call.
            let r = unsafe { statx(dir, path.as_ptr(), flags, STATX_ALL_TIMES, &mut rec) };
            (r == 0)
                .then(|| metadata_from(&rec))
                .ok_or_else(io::Error::last_os_error)
        };
        let root = stat(libc::AT_FDCWD, c"/", 0).unwrap();
        assert!(root.is_dir());
        assert_eq!(root.ino(), std::fs::metadata("/").unwrap().ino());
        assert!(root.modified().is_ok());
        let exe = std::env::current_exe().unwrap();
        let f = std::fs::File::open(&exe).unwrap();
        let m = stat(f.as_raw_fd(), c"", AT_EMPTY_PATH).unwrap();
        let std_m = f.metadata().unwrap();
        assert!(m.is_file());
        assert_eq!(
            (m.len(), m.ino(), m.mode()),
            (std_m.len(), std_m.ino(), std_m.mode())
        );
        let missing = stat(libc::AT_FDCWD, c"/xev-no-such-path", 0).unwrap_err();
        assert_eq!(missing.raw_os_error(), Some(libc::ENOENT));
    }
}
