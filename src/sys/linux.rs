//! Linux: the system calls the portable code names, as Linux spells them (`accept4`,
//! `pipe2`, `statx`, `renameat2`, `fallocate`, `preadv2` with `RWF_NOWAIT`,
//! `copy_file_range`). Each function here has a twin of the same signature in `bsd.rs`.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Socket, Type};

use super::{neg_errno, ChildEnd};
use crate::completion::Inner;
use crate::metadata::Metadata;
use crate::op::Op;

/// Flags of every `send`/`sendto`/`sendmsg` the poll backend issues: never raise
/// `SIGPIPE`, never block.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

/// `send(2)` of the `len` bytes at `ptr` on socket `fd` with [`SEND_FLAGS`], once: the
/// bytes sent, or `-errno`. A raw system call (rustix's `linux_raw` backend), without
/// glibc's cancellation-point wrapper and `errno` round trip: about 100 fewer
/// instructions per call on the poll backend's hottest path (callgrind, pingpong x100).
///
/// # Safety
/// `ptr..ptr + len` is readable for the call. (`fd` may be closed or invalid: that is
/// `-EBADF`, as from libc.)
#[inline]
pub(crate) unsafe fn send_now(fd: RawFd, ptr: *const u8, len: usize) -> isize {
    if fd < 0 {
        return -(libc::EBADF as isize);
    }
    let flags = rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT;
    // SAFETY: the bytes are readable for the call (the caller's contract; `nonnull` only
    // stands in for the pointer of an empty buffer). `borrow_raw` needs `fd` to stay
    // open while the borrow lives: it lives for this one system call, which only names
    // the number, and a number closed meanwhile is `EBADF` (or, reused, another socket:
    // the fd-lifetime rules of ARCHITECTURE.md keep an owner's number open while its
    // transfers run). `fd` is not -1 (checked above).
    let (fd, buf) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(fd),
            std::slice::from_raw_parts(nonnull(ptr.cast_mut()), len),
        )
    };
    match rustix::net::send(fd, buf, flags) {
        Ok(n) => n as isize,
        Err(e) => -(e.raw_os_error() as isize),
    }
}

/// `recv(2)` into the `len` bytes at `ptr` from socket `fd` with `MSG_DONTWAIT`, once:
/// the bytes received, or `-errno`. A raw system call, as [`send_now`].
///
/// # Safety
/// `ptr..ptr + len` is writable for the call (it may hold uninitialized bytes). (`fd`
/// may be closed or invalid: `-EBADF`.)
#[inline]
pub(crate) unsafe fn recv_now(fd: RawFd, ptr: *mut u8, len: usize) -> isize {
    if fd < 0 {
        return -(libc::EBADF as isize);
    }
    // SAFETY: the bytes are writable for the call (the caller's contract); a
    // `MaybeUninit` slice makes no claim about their contents. `fd` as in `send_now`.
    let (fd, buf) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(fd),
            std::slice::from_raw_parts_mut(nonnull(ptr).cast::<std::mem::MaybeUninit<u8>>(), len),
        )
    };
    match rustix::net::recv(fd, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok(((filled, _), _)) => filled.len() as isize,
        Err(e) => -(e.raw_os_error() as isize),
    }
}

/// `read(2)` into the `len` bytes at `ptr` from `fd` (a pipe or other non-socket
/// stream, non-blocking), once: the bytes read, or `-errno`. A raw system call, as
/// [`send_now`].
///
/// # Safety
/// `ptr..ptr + len` is writable for the call (it may hold uninitialized bytes). (`fd`
/// may be closed or invalid: `-EBADF`.)
#[inline]
pub(crate) unsafe fn read_now(fd: RawFd, ptr: *mut u8, len: usize) -> isize {
    if fd < 0 {
        return -(libc::EBADF as isize);
    }
    // SAFETY: as in `recv_now`.
    let (fd, buf) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(fd),
            std::slice::from_raw_parts_mut(nonnull(ptr).cast::<std::mem::MaybeUninit<u8>>(), len),
        )
    };
    match rustix::io::read(fd, buf) {
        Ok((filled, _)) => filled.len() as isize,
        Err(e) => -(e.raw_os_error() as isize),
    }
}

/// `write(2)` of the `len` bytes at `ptr` on `fd` (a pipe or other non-socket stream,
/// non-blocking), once: the bytes written, or `-errno`. A raw system call, as
/// [`send_now`]; a pipe with no reader is `-EPIPE` only while the calling thread holds
/// `SIGPIPE` off (see `sigpipe.rs`).
///
/// # Safety
/// `ptr..ptr + len` is readable for the call. (`fd` may be closed or invalid: `-EBADF`.)
#[inline]
pub(crate) unsafe fn write_now(fd: RawFd, ptr: *const u8, len: usize) -> isize {
    if fd < 0 {
        return -(libc::EBADF as isize);
    }
    // SAFETY: as in `send_now`.
    let (fd, buf) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(fd),
            std::slice::from_raw_parts(nonnull(ptr.cast_mut()), len),
        )
    };
    match rustix::io::write(fd, buf) {
        Ok(n) => n as isize,
        Err(e) => -(e.raw_os_error() as isize),
    }
}

/// The `recvfrom(2)` system call, through glibc's plain `syscall` wrapper: without the
/// cancellation-point hooks of glibc's `recvfrom` (about 30 instructions per datagram on
/// the UDP receivers' hottest call). rustix's `recvfrom` hands the address back as a
/// 128-byte `SocketAddrAny` to copy, which measured more than glibc's wrapper (callgrind,
/// udp_pummel's epoll receiver: 144 against 139 instructions per `perform`; 89 this way).
/// The result and `errno` as from libc.
///
/// # Safety
/// As `recvfrom(2)`'s: `ptr..ptr + len` writable, `name` writable for `*namelen` bytes.
#[inline]
pub(crate) unsafe fn recvfrom_raw(
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    name: *mut libc::sockaddr,
    namelen: *mut libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract.
    let r = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            ptr,
            len,
            libc::MSG_DONTWAIT,
            name,
            namelen,
        )
    };
    r as isize
}

/// The `sendto(2)` system call with [`SEND_FLAGS`], through glibc's plain `syscall`
/// wrapper, as [`recvfrom_raw`]. The result and `errno` as from libc.
///
/// # Safety
/// As `sendto(2)`'s: `ptr..ptr + len` readable, `name` null or readable for `namelen`.
#[inline]
pub(crate) unsafe fn sendto_raw(
    fd: RawFd,
    ptr: *const u8,
    len: usize,
    name: *const libc::sockaddr,
    namelen: libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract.
    let r = unsafe { libc::syscall(libc::SYS_sendto, fd, ptr, len, SEND_FLAGS, name, namelen) };
    r as isize
}

/// `ptr`, or a dangling one for an empty buffer whose pointer is null (a slice's
/// pointer may not be null even when it is empty).
fn nonnull(ptr: *mut u8) -> *mut u8 {
    if ptr.is_null() {
        std::ptr::NonNull::dangling().as_ptr()
    } else {
        ptr
    }
}

/// `AT_EMPTY_PATH`: a `Statx` of the directory fd itself (with an empty path).
pub(crate) const AT_EMPTY_PATH: libc::c_int = libc::AT_EMPTY_PATH;
/// `STATX_BASIC_STATS | STATX_BTIME`: what `fs::metadata` asks for.
pub(crate) const STATX_ALL_TIMES: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME;
/// The `stx_mask` bit of the access time.
pub(crate) const STATX_ATIME: u32 = libc::STATX_ATIME;
/// `STATX_SIZE`.
// Used by `Compat<File>`'s seek to the end (the compat features).
#[cfg_attr(
    not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
    allow(dead_code)
)]
pub(crate) const STATX_SIZE: u32 = libc::STATX_SIZE;
/// The `stx_mask` bit of the modification time.
pub(crate) const STATX_MTIME: u32 = libc::STATX_MTIME;
/// The `stx_mask` bit of the birth time.
pub(crate) const STATX_BTIME: u32 = libc::STATX_BTIME;

/// The record an `Op::Statx` fills: `struct statx`.
pub(crate) type StatRecord = libc::statx;

/// Nothing to do: Linux sockaddrs have no length field.
#[inline(always)]
pub(crate) fn set_len_v4(_: &mut libc::sockaddr_in) {}

/// Nothing to do: Linux sockaddrs have no length field.
#[inline(always)]
pub(crate) fn set_len_v6(_: &mut libc::sockaddr_in6) {}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)`: the new fd, or -1 with `errno` set.
///
/// # Safety
/// `addr`/`len` as for `accept(2)`: null, or valid for the kernel to write.
#[inline]
pub(crate) unsafe fn accept_nonblocking(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> libc::c_int {
    // SAFETY: the caller's contract.
    unsafe { libc::accept4(fd, addr, len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) }
}

/// A new socket, non-blocking and close-on-exec in the one `socket(2)` call.
pub(crate) fn socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    Socket::new(domain, ty.nonblocking().cloexec(), None)
}

/// A connected pair of sockets, non-blocking and close-on-exec.
pub(crate) fn socketpair(domain: Domain, ty: Type) -> io::Result<(Socket, Socket)> {
    Socket::pair(domain, ty.nonblocking().cloexec(), None)
}

/// A pipe whose ends are non-blocking and close-on-exec (`pipe2`): `(read, write)`.
pub(crate) fn pipe_cloexec_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own, or fails and writes nothing.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `statx(2)`: the raw return value.
///
/// # Safety
/// `path` is a NUL-terminated string and `buf` a record, both valid for the call.
pub(crate) unsafe fn statx(
    dir: RawFd,
    path: *const libc::c_char,
    flags: libc::c_int,
    mask: u32,
    buf: *mut StatRecord,
) -> libc::c_long {
    // SAFETY: the caller's contract.
    unsafe { libc::syscall(libc::SYS_statx, dir, path, flags, mask, buf) }
}

/// `renameat2(2)` with `RENAME_*` flags: the raw return value.
///
/// # Safety
/// Both paths are NUL-terminated strings valid for the call.
pub(crate) unsafe fn renameat(
    old_dir: RawFd,
    old: *const libc::c_char,
    new_dir: RawFd,
    new: *const libc::c_char,
    flags: libc::c_uint,
) -> libc::c_long {
    // SAFETY: the caller's contract.
    unsafe { libc::syscall(libc::SYS_renameat2, old_dir, old, new_dir, new, flags) }
}

/// `fdatasync(2)`.
pub(crate) fn fdatasync(fd: RawFd) -> libc::c_int {
    // SAFETY: a plain syscall on a number; a bad fd just fails.
    unsafe { libc::fdatasync(fd) }
}

/// `fallocate(2)` with `FALLOC_FL_*` mode bits: the raw return value.
pub(crate) fn fallocate(fd: RawFd, mode: libc::c_int, offset: u64, len: u64) -> libc::c_long {
    // SAFETY: a plain syscall on a number; a bad fd just fails.
    unsafe { libc::fallocate(fd, mode, offset as libc::off_t, len as libc::off_t).into() }
}

/// `copy_file_range(2)` of up to `len` bytes from `src` at `*off_in` to `dst` at
/// `*off_out`, advancing both offsets: bytes copied (0 at the source's end).
pub(crate) fn copy_file_range(
    src: RawFd,
    off_in: &mut u64,
    dst: RawFd,
    off_out: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut i = *off_in as libc::loff_t;
    let mut o = *off_out as libc::loff_t;
    // SAFETY: the offsets are ours to update; the kernel touches no other user memory; a
    // bad fd just fails.
    let n = unsafe { libc::copy_file_range(src, &mut i, dst, &mut o, len, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    *off_in = i as u64;
    *off_out = o as u64;
    Ok(n as usize)
}

/// A [`Metadata`] from the record `statx(2)` filled.
pub(crate) fn metadata_from(st: &StatRecord) -> Metadata {
    let ts = |t: &libc::statx_timestamp| (t.tv_sec, t.tv_nsec);
    Metadata {
        mask: st.stx_mask,
        mode: u32::from(st.stx_mode),
        size: st.stx_size,
        ino: st.stx_ino,
        dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
        rdev: libc::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        nlink: u64::from(st.stx_nlink),
        uid: st.stx_uid,
        gid: st.stx_gid,
        blksize: u64::from(st.stx_blksize),
        blocks: st.stx_blocks,
        atime: ts(&st.stx_atime),
        mtime: ts(&st.stx_mtime),
        ctime: ts(&st.stx_ctime),
        btime: ts(&st.stx_btime),
    }
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
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: the caller's contract.
        let Op::Pread { fd, buf, offset } = (unsafe { &(*inner).op }) else {
            return None;
        };
        // preadv2 takes -1 (`u64::MAX`) for the current position; pread has no such
        // offset (`bad_input.rs::file_offsets_past_i64_max_are_einval`).
        if *offset > i64::MAX as u64 {
            return Some(-(libc::EINVAL as isize));
        }
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
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = inner;
        None
    }
}

/// An fd that becomes readable when the child `pid` exits, for `Process`: a pidfd
/// (`pidfd_open(2)`, Linux 5.3; close-on-exec), checked with a `waitid(.., WNOWAIT)`
/// (Linux 5.4) to name an unreaped child of this process (running or a zombie): `ECHILD`
/// otherwise.
pub(crate) fn open_child_exit_fd(pid: libc::pid_t) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_open(pid, flags) takes no pointers; it returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor (pidfds are close-on-exec) owned by nobody.
    let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    // The pidfd names whichever process has `pid` now. Only one that is still our
    // child passes; WNOWAIT leaves a zombie unreaped for the real wait.
    // SAFETY: siginfo_t is plain data for which all-zero is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid siginfo_t the kernel may write; no other pointers.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd.as_raw_fd() as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(fd);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// `waitid(P_PIDFD, fd, WEXITED | WNOHANG)`: how the child ended (it is reaped then),
/// `None` while it runs.
pub(crate) fn reap_child(fd: RawFd, _pid: libc::pid_t) -> io::Result<Option<ChildEnd>> {
    // SAFETY: siginfo_t is plain data for which all-zero is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid siginfo_t the kernel may write; no other pointers.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                fd as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    // SAFETY: waitid filled `info` for SIGCHLD (or left it zeroed when nothing was
    // reaped), so the `si_pid`/`si_status` union members are the ones to read.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    match info.si_code {
        libc::CLD_EXITED => Ok(Some(ChildEnd::Exited(status))),
        libc::CLD_KILLED => Ok(Some(ChildEnd::Signaled(status, false))),
        libc::CLD_DUMPED => Ok(Some(ChildEnd::Signaled(status, true))),
        code => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("waitid reported si_code {code} for pid {pid}"),
        )),
    }
}

/// Send `signal` through the pidfd `fd` (`pidfd_send_signal(2)`), so it can never hit
/// another process that reused the pid.
pub(crate) fn signal_child(fd: RawFd, _pid: libc::pid_t, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(pidfd, sig, info, flags) with a null siginfo (the kernel
    // fills one in as for kill(2)) and no flags; a bad fd just fails.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Nothing to do: Linux blocks `SIGPIPE` in the loop's thread instead (`sigpipe.rs`).
#[inline(always)]
pub(crate) fn set_nosigpipe(_fd: RawFd) {}
