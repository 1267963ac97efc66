//! macOS, FreeBSD and the other kqueue systems: the functions `linux.rs` has, over what
//! these kernels offer. Type-checked in CI for x86_64/aarch64 macOS and x86_64 FreeBSD;
//! not run there.
//!
//! Differences from Linux, per function:
//! - `accept_nonblocking`: `accept4` on FreeBSD; on macOS `accept` then `FD_CLOEXEC`,
//!   `FIONBIO` and `SO_NOSIGPIPE` (three more system calls per accepted connection).
//! - `socket`/`socketpair`: socket2 (which sets `SO_NOSIGPIPE` and close-on-exec on
//!   macOS), then non-blocking.
//! - `pipe_cloexec_nonblocking`: `pipe2` on FreeBSD; `pipe` + `fcntl` on macOS, with
//!   `F_SETNOSIGPIPE` on both ends.
//! - `statx`: `fstatat` (or `fstat` for an empty path: with `AT_EMPTY_PATH` on FreeBSD,
//!   always on macOS, which has no such flag), translated into [`Metadata`]; the `mask`
//!   argument is ignored (all fields are filled).
//! - `renameat`: plain `renameat` for no flags; on macOS `RENAME_NOREPLACE` (1) and
//!   `RENAME_EXCHANGE` (2) through `renameatx_np`; other flags are `EINVAL`, and any flag
//!   on FreeBSD is `EOPNOTSUPP`.
//! - `fallocate`: mode 0 only (`EOPNOTSUPP` for `FALLOC_FL_*` modes): `posix_fallocate`
//!   on FreeBSD, `F_PREALLOCATE` + `ftruncate` on macOS.
//! - `fdatasync`: `fsync` on macOS (it has no public `fdatasync`).
//! - `copy_file_range`: FreeBSD's; `ENOSYS` on macOS (the caller falls back to read/write).
//! - `read_cached`: never (no `RWF_NOWAIT`): file reads go to the pool.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use socket2::{Domain, Socket, Type};

use super::ChildEnd;
use crate::completion::Inner;
use crate::metadata::Metadata;

/// Flags of every `send`/`sendto`/`sendmsg` the poll backend issues: never raise
/// `SIGPIPE`, never block.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;

/// `send(2)` of the `len` bytes at `ptr` on socket `fd` with [`SEND_FLAGS`], once: the
/// bytes sent, or `-errno` (Linux's twin is a raw system call).
///
/// # Safety
/// `ptr..ptr + len` is readable for the call (a closed `fd` is `-EBADF`).
pub(crate) unsafe fn send_now(fd: RawFd, ptr: *const u8, len: usize) -> isize {
    // SAFETY: the caller's contract.
    super::ret(unsafe { libc::send(fd, ptr.cast(), len, SEND_FLAGS) })
}

/// `recv(2)` into the `len` bytes at `ptr` from socket `fd` with `MSG_DONTWAIT`, once:
/// the bytes received, or `-errno`.
///
/// # Safety
/// `ptr..ptr + len` is writable for the call (a closed `fd` is `-EBADF`).
pub(crate) unsafe fn recv_now(fd: RawFd, ptr: *mut u8, len: usize) -> isize {
    // SAFETY: the caller's contract.
    super::ret(unsafe { libc::recv(fd, ptr.cast(), len, libc::MSG_DONTWAIT) })
}

/// `read(2)` into the `len` bytes at `ptr` from `fd` (a pipe or other non-socket
/// stream, non-blocking), once: the bytes read, or `-errno`.
///
/// # Safety
/// `ptr..ptr + len` is writable for the call (a closed `fd` is `-EBADF`).
pub(crate) unsafe fn read_now(fd: RawFd, ptr: *mut u8, len: usize) -> isize {
    // SAFETY: the caller's contract.
    super::ret(unsafe { libc::read(fd, ptr.cast(), len) })
}

/// `write(2)` of the `len` bytes at `ptr` on `fd` (a pipe or other non-socket stream,
/// non-blocking), once: the bytes written, or `-errno`.
///
/// # Safety
/// `ptr..ptr + len` is readable for the call (a closed `fd` is `-EBADF`).
pub(crate) unsafe fn write_now(fd: RawFd, ptr: *const u8, len: usize) -> isize {
    // SAFETY: the caller's contract.
    super::ret(unsafe { libc::write(fd, ptr.cast(), len) })
}

/// The `recvfrom(2)` call with `MSG_DONTWAIT` (Linux's twin is a plain system call).
///
/// # Safety
/// As `recvfrom(2)`'s: `ptr..ptr + len` writable, `name` writable for `*namelen` bytes.
pub(crate) unsafe fn recvfrom_raw(
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    name: *mut libc::sockaddr,
    namelen: *mut libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract.
    unsafe { libc::recvfrom(fd, ptr.cast(), len, libc::MSG_DONTWAIT, name, namelen) }
}

/// The `sendto(2)` call with [`SEND_FLAGS`].
///
/// # Safety
/// As `sendto(2)`'s: `ptr..ptr + len` readable, `name` null or readable for `namelen`.
pub(crate) unsafe fn sendto_raw(
    fd: RawFd,
    ptr: *const u8,
    len: usize,
    name: *const libc::sockaddr,
    namelen: libc::socklen_t,
) -> isize {
    // SAFETY: the caller's contract.
    unsafe { libc::sendto(fd, ptr.cast(), len, SEND_FLAGS, name, namelen) }
}

/// `AT_EMPTY_PATH`: a `Statx` of the directory fd itself (with an empty path).
#[cfg(target_os = "freebsd")]
pub(crate) const AT_EMPTY_PATH: libc::c_int = libc::AT_EMPTY_PATH;
/// `AT_EMPTY_PATH`: this kernel has no such flag, so none is needed: a `Statx` with an
/// empty path is always of the directory fd itself (see `statx`).
#[cfg(not(target_os = "freebsd"))]
pub(crate) const AT_EMPTY_PATH: libc::c_int = 0;
/// The `STATX_*` bits xev's `Metadata` records (Linux's values, kept here as flags).
pub(crate) const STATX_ATIME: u32 = 0x20;
/// Linux's `STATX_SIZE` bit (the emulation fills every field whatever the mask says).
// Used by `Compat<File>`'s seek to the end (the compat features).
#[cfg_attr(
    not(any(feature = "futures-io", feature = "tokio-io", feature = "hyper")),
    allow(dead_code)
)]
pub(crate) const STATX_SIZE: u32 = 0x200;
/// The modification time bit.
pub(crate) const STATX_MTIME: u32 = 0x40;
/// The birth time bit.
pub(crate) const STATX_BTIME: u32 = 0x800;
/// Everything `fs::metadata` asks for (`STATX_BASIC_STATS | STATX_BTIME` on Linux).
pub(crate) const STATX_ALL_TIMES: u32 = 0x7ff | STATX_BTIME;

/// The record an `Op::Statx` fills: `struct stat`.
pub(crate) type StatRecord = libc::stat;

fn set_errno(e: libc::c_int) {
    // SAFETY: this thread's errno slot.
    unsafe { *errno_ptr() = e };
}

/// This thread's errno slot (`__error()`; `__errno()` on NetBSD and OpenBSD).
pub(crate) fn errno_ptr() -> *mut libc::c_int {
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    // SAFETY: returns this thread's errno slot; no arguments.
    return unsafe { libc::__errno() };
    #[cfg(not(any(target_os = "netbsd", target_os = "openbsd")))]
    // SAFETY: as above.
    return unsafe { libc::__error() };
}

// The `libc` crate does not bind NetBSD's `posix_fallocate` (NetBSD 7 and later).
#[cfg(target_os = "netbsd")]
extern "C" {
    fn posix_fallocate(fd: libc::c_int, offset: libc::off_t, len: libc::off_t) -> libc::c_int;
}
#[cfg(not(any(target_vendor = "apple", target_os = "netbsd")))]
use libc::posix_fallocate;

/// Set the BSD length field.
#[inline(always)]
pub(crate) fn set_len_v4(sin: &mut libc::sockaddr_in) {
    sin.sin_len = std::mem::size_of::<libc::sockaddr_in>() as u8;
}

/// Set the BSD length field.
#[inline(always)]
pub(crate) fn set_len_v6(sin: &mut libc::sockaddr_in6) {
    sin.sin6_len = std::mem::size_of::<libc::sockaddr_in6>() as u8;
}

/// Accept a connection as a non-blocking, close-on-exec fd: the new fd, or -1 with
/// `errno` set.
///
/// # Safety
/// `addr`/`len` as for `accept(2)`: null, or valid for the kernel to write.
#[cfg(not(target_vendor = "apple"))]
#[inline]
pub(crate) unsafe fn accept_nonblocking(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> libc::c_int {
    // SAFETY: the caller's contract.
    unsafe { libc::accept4(fd, addr, len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) }
}

/// Accept a connection as a non-blocking, close-on-exec fd that never raises `SIGPIPE`:
/// the new fd, or -1 with `errno` set. macOS has no `accept4`: the flags are set after.
///
/// # Safety
/// `addr`/`len` as for `accept(2)`: null, or valid for the kernel to write.
#[cfg(target_vendor = "apple")]
pub(crate) unsafe fn accept_nonblocking(
    fd: RawFd,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> libc::c_int {
    // SAFETY: the caller's contract.
    let s = unsafe { libc::accept(fd, addr, len) };
    if s < 0 {
        return s;
    }
    if let Err(e) = set_cloexec_nonblocking(s).and_then(|()| set_nosigpipe_socket(s)) {
        // SAFETY: `s` is the new fd we own and give up.
        unsafe { libc::close(s) };
        set_errno(e.raw_os_error().unwrap_or(libc::EIO));
        return -1;
    }
    s
}

#[cfg(target_vendor = "apple")]
fn set_cloexec_nonblocking(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: fcntl/ioctl on an fd we own; FIONBIO reads the int we pass.
    let ok = unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
            && libc::ioctl(fd, libc::FIONBIO, &on) == 0
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(target_vendor = "apple")]
fn set_nosigpipe_socket(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads the int we pass.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_NOSIGPIPE,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A new socket, non-blocking and close-on-exec (socket2 also sets `SO_NOSIGPIPE` on
/// macOS).
pub(crate) fn socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    #[cfg(target_vendor = "apple")]
    {
        let s = Socket::new(domain, ty, None)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        Socket::new(domain, ty.nonblocking().cloexec(), None)
    }
}

/// A connected pair of sockets, non-blocking and close-on-exec.
pub(crate) fn socketpair(domain: Domain, ty: Type) -> io::Result<(Socket, Socket)> {
    #[cfg(target_vendor = "apple")]
    {
        let (a, b) = Socket::pair(domain, ty, None)?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((a, b))
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        Socket::pair(domain, ty.nonblocking().cloexec(), None)
    }
}

/// A pipe whose ends are non-blocking and close-on-exec: `(read, write)`. On macOS
/// writing to it never raises `SIGPIPE` (`F_SETNOSIGPIPE`).
pub(crate) fn pipe_cloexec_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    #[cfg(not(target_vendor = "apple"))]
    // SAFETY: pipe2 writes two fds into the array we own, or fails and writes nothing.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    #[cfg(target_vendor = "apple")]
    // SAFETY: pipe writes two fds into the array we own, or fails and writes nothing.
    let r = unsafe { libc::pipe(fds.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned by nobody else (dropping them closes them).
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    #[cfg(target_vendor = "apple")]
    for fd in [fds[0], fds[1]] {
        set_cloexec_nonblocking(fd)?;
        // SAFETY: fcntl on a pipe end we own.
        if unsafe { libc::fcntl(fd, libc::F_SETNOSIGPIPE, 1) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((rd, wr))
}

/// `statx` in terms of `fstatat`/`fstat`: the raw return value.
///
/// # Safety
/// `path` is a NUL-terminated string and `buf` a record, both valid for the call.
pub(crate) unsafe fn statx(
    dir: RawFd,
    path: *const libc::c_char,
    flags: libc::c_int,
    _mask: u32,
    buf: *mut StatRecord,
) -> libc::c_long {
    // SAFETY: `path` is NUL-terminated (the caller's contract).
    let empty = unsafe { *path } == 0;
    // FreeBSD: as Linux, only with AT_EMPTY_PATH. Elsewhere there is no such flag, and an
    // empty path (ENOENT for fstatat) names the fd itself.
    #[cfg(target_os = "freebsd")]
    let (of_fd, flags) = (flags & AT_EMPTY_PATH != 0, flags & !AT_EMPTY_PATH);
    #[cfg(not(target_os = "freebsd"))]
    let of_fd = true;
    if empty && of_fd {
        // SAFETY: fstat writes the record the caller gave us; a bad fd just fails.
        return unsafe { libc::fstat(dir, buf) }.into();
    }
    // SAFETY: as above.
    unsafe { libc::fstatat(dir, path, buf, flags) }.into()
}

/// `renameat`, with Linux's `RENAME_NOREPLACE` (1) and `RENAME_EXCHANGE` (2) where the
/// kernel has them (macOS); other flags are `EINVAL`, any flag on FreeBSD `EOPNOTSUPP`.
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
    if flags == 0 {
        // SAFETY: the caller's contract.
        return unsafe { libc::renameat(old_dir, old, new_dir, new) }.into();
    }
    #[cfg(target_vendor = "apple")]
    {
        let mapped = match flags {
            1 => libc::RENAME_EXCL,
            2 => libc::RENAME_SWAP,
            _ => {
                set_errno(libc::EINVAL);
                return -1;
            }
        };
        // SAFETY: the caller's contract.
        unsafe { libc::renameatx_np(old_dir, old, new_dir, new, mapped) }.into()
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        let _ = (old_dir, old, new_dir, new);
        set_errno(libc::EOPNOTSUPP);
        -1
    }
}

/// `fdatasync` (plain `fsync` on macOS).
pub(crate) fn fdatasync(fd: RawFd) -> libc::c_int {
    #[cfg(target_vendor = "apple")]
    // SAFETY: a plain syscall on a number; a bad fd just fails.
    return unsafe { libc::fsync(fd) };
    #[cfg(not(target_vendor = "apple"))]
    // SAFETY: as above.
    return unsafe { libc::fdatasync(fd) };
}

/// `fallocate` mode 0 (allocate `offset..offset + len` and extend the size to cover
/// it): the raw return value. `FALLOC_FL_*` modes are `EOPNOTSUPP`; a zero `len` `EINVAL`.
pub(crate) fn fallocate(fd: RawFd, mode: libc::c_int, offset: u64, len: u64) -> libc::c_long {
    if mode != 0 {
        set_errno(libc::EOPNOTSUPP);
        return -1;
    }
    let Some(end) = offset
        .checked_add(len)
        .filter(|&e| len > 0 && e <= i64::MAX as u64)
    else {
        set_errno(if len == 0 { libc::EINVAL } else { libc::EFBIG });
        return -1;
    };
    #[cfg(not(target_vendor = "apple"))]
    {
        let _ = end;
        // SAFETY: a plain syscall on a number; a bad fd just fails.
        let e = unsafe { posix_fallocate(fd, offset as libc::off_t, len as libc::off_t) };
        if e != 0 {
            set_errno(e);
            return -1;
        }
        0
    }
    #[cfg(target_vendor = "apple")]
    {
        // SAFETY: fstat writes into the zeroed struct we own; a bad fd just fails.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return -1;
        }
        let size = st.st_size as u64;
        if end <= size {
            return 0;
        }
        let mut store = libc::fstore_t {
            fst_flags: libc::F_ALLOCATECONTIG | libc::F_ALLOCATEALL,
            fst_posmode: libc::F_PEOFPOSMODE,
            fst_offset: 0,
            fst_length: (end - size) as libc::off_t,
            fst_bytesalloc: 0,
        };
        // SAFETY: F_PREALLOCATE reads and updates the fstore_t we own.
        if unsafe { libc::fcntl(fd, libc::F_PREALLOCATE, &mut store) } != 0 {
            store.fst_flags = libc::F_ALLOCATEALL;
            // SAFETY: as above (retry without asking for contiguous space).
            if unsafe { libc::fcntl(fd, libc::F_PREALLOCATE, &mut store) } != 0 {
                return -1;
            }
        }
        // SAFETY: a plain syscall on a number.
        unsafe { libc::ftruncate(fd, end as libc::off_t) }.into()
    }
}

/// `copy_file_range` of up to `len` bytes from `src` at `*off_in` to `dst` at
/// `*off_out`, advancing both offsets: bytes copied (0 at the source's end).
#[cfg(target_os = "freebsd")]
pub(crate) fn copy_file_range(
    src: RawFd,
    off_in: &mut u64,
    dst: RawFd,
    off_out: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut i = *off_in as libc::off_t;
    let mut o = *off_out as libc::off_t;
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

/// No `copy_file_range` here: `ENOSYS`, and the caller copies through user space.
#[cfg(not(target_os = "freebsd"))]
pub(crate) fn copy_file_range(
    _src: RawFd,
    _off_in: &mut u64,
    _dst: RawFd,
    _off_out: &mut u64,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from_raw_os_error(libc::ENOSYS))
}

/// A [`Metadata`] from the record `fstatat` filled (every field is valid; the birth time
/// when the filesystem records one). The field types differ between these systems.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn metadata_from(st: &StatRecord) -> Metadata {
    let ts = |sec: libc::time_t, nsec: libc::c_long| (sec as i64, nsec as u32);
    let has_btime = st.st_birthtime >= 0;
    Metadata {
        mask: 0x7ff | if has_btime { STATX_BTIME } else { 0 },
        mode: st.st_mode as u32,
        size: st.st_size as u64,
        ino: st.st_ino as u64,
        dev: st.st_dev as u64,
        rdev: st.st_rdev as u64,
        nlink: st.st_nlink as u64,
        uid: st.st_uid,
        gid: st.st_gid,
        blksize: st.st_blksize as u64,
        blocks: st.st_blocks as u64,
        #[cfg(not(target_os = "netbsd"))]
        atime: ts(st.st_atime, st.st_atime_nsec),
        #[cfg(not(target_os = "netbsd"))]
        mtime: ts(st.st_mtime, st.st_mtime_nsec),
        #[cfg(not(target_os = "netbsd"))]
        ctime: ts(st.st_ctime, st.st_ctime_nsec),
        #[cfg(not(target_os = "netbsd"))]
        btime: ts(st.st_birthtime, st.st_birthtime_nsec),
        // NetBSD spells the nanosecond fields without the underscore.
        #[cfg(target_os = "netbsd")]
        atime: ts(st.st_atime, st.st_atimensec),
        #[cfg(target_os = "netbsd")]
        mtime: ts(st.st_mtime, st.st_mtimensec),
        #[cfg(target_os = "netbsd")]
        ctime: ts(st.st_ctime, st.st_ctimensec),
        #[cfg(target_os = "netbsd")]
        btime: ts(st.st_birthtime, st.st_birthtimensec),
    }
}

/// Never: these kernels cannot read only-if-cached (`RWF_NOWAIT`), so file reads go to
/// the pool.
///
/// # Safety
/// None needed; `unsafe` to match the Linux twin.
pub(crate) unsafe fn read_cached(_inner: *mut Inner) -> Option<isize> {
    None
}

/// Check that `pid` is an unreaped child of this process (running or a zombie), leaving
/// a zombie unreaped: `waitid(P_PID, .., WNOWAIT)`.
fn check_child(pid: libc::pid_t) -> io::Result<()> {
    loop {
        // SAFETY: siginfo_t is plain data for which all-zero is valid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid siginfo_t the kernel may write; no other pointers.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// An fd that becomes readable when the child `pid` exits, for `Process`: a kqueue
/// (close-on-exec) with `EVFILT_PROC`/`NOTE_EXIT` for `pid`, polled for readability
/// like a pidfd. A child that is already a zombie (which `EVFILT_PROC` may refuse with
/// `ESRCH`) gets a triggered `EVFILT_USER` event instead, so the fd is readable at once.
/// `ECHILD` if `pid` is not an unreaped child of this process.
pub(crate) fn open_child_exit_fd(pid: libc::pid_t) -> io::Result<OwnedFd> {
    check_child(pid)?;
    // SAFETY: kqueue() takes no arguments; it returns a new fd or -1.
    let kq = unsafe { libc::kqueue() };
    if kq < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `kq` is a new fd nobody else owns.
    let kq = unsafe { OwnedFd::from_raw_fd(kq) };
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on the fd we own.
    if unsafe { libc::fcntl(kq.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `filter` and `flags` are `i16`/`u16` on macOS and FreeBSD, `u32` on NetBSD.
    let change = |ident: usize, filter, flags, fflags: u32| {
        // SAFETY: kevent is plain data; all-zero (null udata) is valid.
        let mut ev: libc::kevent = unsafe { std::mem::zeroed() };
        ev.ident = ident as _;
        ev.filter = filter;
        ev.flags = flags;
        ev.fflags = fflags;
        // SAFETY: one change from `ev`, which lives across the call; no event list.
        let r = unsafe {
            libc::kevent(
                kq.as_raw_fd(),
                &ev,
                1,
                std::ptr::null_mut(),
                0,
                std::ptr::null(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    match change(
        pid as usize,
        libc::EVFILT_PROC,
        libc::EV_ADD,
        libc::NOTE_EXIT,
    ) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            // Exited already (a zombie: check_child saw it): readable now.
            change(0, libc::EVFILT_USER, libc::EV_ADD, 0)?;
            change(0, libc::EVFILT_USER, 0, libc::NOTE_TRIGGER)?;
        }
        Err(e) => return Err(e),
    }
    Ok(kq)
}

/// Reap the child `pid` if it has exited (`waitpid(pid, WNOHANG)`): how it ended, `None`
/// while it runs. The fd from [`open_child_exit_fd`] is not needed here.
pub(crate) fn reap_child(_fd: RawFd, pid: libc::pid_t) -> io::Result<Option<ChildEnd>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the status into the int we own.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(Some(ChildEnd::Exited(libc::WEXITSTATUS(status))))
    } else if libc::WIFSIGNALED(status) {
        Ok(Some(ChildEnd::Signaled(
            libc::WTERMSIG(status),
            libc::WCOREDUMP(status),
        )))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("waitpid reported status {status:#x} for pid {pid}"),
        ))
    }
}

/// Send `signal` to the unreaped child `pid` (`kill(2)`: its pid cannot have been reused
/// while it is unreaped, and the caller sends nothing once it has reaped it).
pub(crate) fn signal_child(_fd: RawFd, pid: libc::pid_t, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes no pointers.
    if unsafe { libc::kill(pid, signal) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// macOS: make writes to the pipe `fd` fail with `EPIPE` instead of raising `SIGPIPE`
/// (`F_SETNOSIGPIPE`; errors ignored: a non-pipe fd just keeps its behaviour). Elsewhere
/// nothing: the loop's thread blocks `SIGPIPE` (`sigpipe.rs`).
pub(crate) fn set_nosigpipe(fd: RawFd) {
    #[cfg(target_vendor = "apple")]
    // SAFETY: fcntl on a number; a bad fd just fails.
    unsafe {
        libc::fcntl(fd, libc::F_SETNOSIGPIPE, 1);
    }
    #[cfg(not(target_vendor = "apple"))]
    let _ = fd;
}
