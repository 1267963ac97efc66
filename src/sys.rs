//! Thin syscall helpers shared by the backends: socket-address conversion and the
//! synchronous form of every I/O operation (used by the poll backend's "try now" path
//! and by the thread pool).

use std::io;
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{IntoRawFd, RawFd};

use crate::completion::{Inner, Scratch};
use crate::op::Op;

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
            *sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            *out = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
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

/// Prepare the scratch for a recvmsg: the kernel writes the sender's address into it.
pub(crate) fn prepare_recvmsg(sc: &mut Scratch, buf_ptr: *mut u8, buf_len: usize) {
    prepare_msg(sc, buf_ptr, buf_len, None);
    sc.msg.msg_name = (&mut sc.addr as *mut libc::sockaddr_in6).cast();
    sc.msg.msg_namelen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
}

/// A positional read of a regular file that only succeeds if all of it is already in the
/// page cache (`preadv2` with `RWF_NOWAIT`): `Some(result)` if it read the whole buffer or
/// failed for a reason the pool would hit too; `None` if it would have to wait for the
/// disk, came back short (partly cached, or at the end of the file: the pool's blocking
/// read gives the answer a plain `pread` gives, so a cached read never returns fewer bytes
/// than the pool would), or the kernel cannot tell. `None` means: do it on the pool.
///
/// # Safety
/// As for [`perform`]: `inner` is an Active completion the caller has exclusive access to.
pub(crate) unsafe fn read_cached(inner: *mut Inner) -> Option<isize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: the caller's contract.
        let Op::Pread { fd, buf, offset } = (unsafe { &(*inner).op }) else {
            return None;
        };
        let iov = libc::iovec {
            iov_base: buf.as_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: `iov` points into the op's owned buffer, valid for `buf.len()` bytes.
        let r = unsafe { libc::preadv2(*fd, &iov, 1, *offset as libc::off_t, libc::RWF_NOWAIT) };
        if r >= 0 {
            return (r as usize == buf.len() && r > 0).then_some(r as isize);
        }
        let e = neg_errno();
        // EAGAIN: not cached. EOPNOTSUPP/ENOSYS/EINVAL: no RWF_NOWAIT here.
        let retry_on_pool = [libc::EAGAIN, libc::EOPNOTSUPP, libc::ENOSYS, libc::EINVAL]
            .iter()
            .any(|&errno| e == -(errno as isize));
        if retry_on_pool {
            None
        } else {
            Some(e)
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = inner;
        None
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

/// Whether a short read on `fd` means its queue is empty: true for stream sockets, pipes
/// and other non-socket fds; false for datagram and seqpacket sockets.
pub(crate) fn is_stream(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes an int into `ty`; a non-socket fd just fails.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    r != 0 || ty == libc::SOCK_STREAM
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
        | Op::SendMsg { .. } => Wait::Writable,
        Op::Poll { events, .. } if !events.contains(crate::PollEvents::IN) => Wait::Writable,
        Op::Writev { .. } | Op::SendMsgV { .. } => Wait::Writable,
        _ => Wait::Readable,
    }
}

/// Perform the operation in `inner` once, synchronously, without blocking on sockets
/// (`MSG_DONTWAIT`, non-blocking fds) and returning `-EAGAIN` when it would block.
/// `connect_started` says whether a non-blocking connect is already in progress.
///
/// # Safety
/// `inner` must be valid and not accessed by anyone else during the call, and its buffer
/// must be valid memory (guaranteed by `Buffer`'s constructors).
pub(crate) unsafe fn perform(inner: *mut Inner, connect_started: bool) -> isize {
    // SAFETY: exclusive access per the contract.
    let inner = unsafe { &mut *inner };
    let sc = &mut inner.scratch;
    loop {
        // SAFETY: (all calls below) pointers come from owned buffers and scratch fields
        // that outlive the call; lengths match their allocations.
        let r = unsafe {
            match &mut inner.op {
                Op::Accept { fd } => {
                    sc.addrlen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                    libc::accept4(
                        *fd,
                        (&mut sc.addr as *mut libc::sockaddr_in6).cast(),
                        &mut sc.addrlen,
                        libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
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
                Op::Read { fd, buf } => libc::read(*fd, buf.as_ptr().cast(), buf.len()),
                Op::Pread { fd, buf, offset } => {
                    libc::pread(*fd, buf.as_ptr().cast(), buf.len(), *offset as libc::off_t)
                }
                Op::Write { fd, buf } => libc::write(*fd, buf.as_ptr().cast(), buf.len()),
                Op::Pwrite { fd, buf, offset } => {
                    libc::pwrite(*fd, buf.as_ptr().cast(), buf.len(), *offset as libc::off_t)
                }
                Op::Send { fd, buf } => libc::send(
                    *fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                ),
                Op::Recv { fd, buf } => {
                    libc::recv(*fd, buf.as_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                }
                // One buffer and no control data: sendto/recvfrom do what sendmsg/recvmsg
                // would, without the kernel copying a msghdr in (~120 ns per datagram).
                Op::SendMsg { fd, buf, addr } => {
                    let (name, len) = match addr {
                        Some(a) => {
                            sc.addrlen = to_sockaddr(a, &mut sc.addr);
                            ((&sc.addr as *const libc::sockaddr_in6).cast(), sc.addrlen)
                        }
                        None => (std::ptr::null(), 0),
                    };
                    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
                    libc::sendto(*fd, buf.as_ptr().cast(), buf.len(), flags, name, len)
                }
                Op::RecvMsg { fd, buf } => {
                    sc.addrlen = mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                    let r = libc::recvfrom(
                        *fd,
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                        (&mut sc.addr as *mut libc::sockaddr_in6).cast(),
                        &mut sc.addrlen,
                    );
                    // `Loop::invoke` takes the length from the msghdr (io_uring's recvmsg
                    // writes it there).
                    sc.msg.msg_namelen = sc.addrlen;
                    r
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
                    let (iov, n) = bufs.iovecs();
                    prepare_msg_iov(sc, iov, n, addr.as_ref());
                    libc::sendmsg(*fd, &sc.msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
                }
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
