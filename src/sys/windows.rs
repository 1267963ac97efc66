//! Windows: the whole `sys` module there (`lib.rs` loads this file instead of `mod.rs` on
//! Windows), the same names as on Unix over Winsock.
//!
//! The readiness backend drives sockets through `polling`'s IOCP/AFD support, so every
//! descriptor here is a `SOCKET` ([`fd`] names it `RawFd`). An operation is tried once,
//! non-blocking, and `WSAEWOULDBLOCK` (or a connect `WSAEINPROGRESS`) is reported as
//! `-EAGAIN`, which parks it until `polling` says the socket is ready, as on Unix. Errors
//! are `-code` with the Winsock / Win32 code, so `io::Error::from_raw_os_error` gives
//! Windows' own message.
//!
//! What Windows has no equivalent of is absent rather than pretended: Unix-domain
//! sockets, pipes and signals are `#[cfg(unix)]` in the layers above.
//!
//! **Files.** The file operations (`Pread`, `Pwrite`, `Readv`/`Writev` at an offset,
//! `Fsync`, `Ftruncate`, `Fallocate`) take a file `HANDLE` in their `fd` field (its value,
//! [`fd::raw_file`]), and `OpenAt` gives one back ([`fd::OwnedFile`]). The poll backend
//! runs them on the thread pool, like regular files on Unix, on a duplicate of the handle
//! (`DuplicateHandle`) that [`close_fd`] closes afterwards; they are performed with `std`
//! on a `File` that borrows the handle (`perform_file`). Differences from Unix, per
//! operation: a positioned read or write also moves the handle's file position
//! (`ReadFile`/`WriteFile` with an offset); a vectored one at an offset is a sequence of
//! positioned calls (not one atomic call); `Fsync` flushes everything (`FlushFileBuffers`)
//! even with `data_only`; `Fallocate` mode 0 extends the file to `offset + len` when it is
//! shorter (no block reservation), other modes are `ERROR_NOT_SUPPORTED`; the path
//! operations take no directory handle (`dir: Some(_)` is `ERROR_NOT_SUPPORTED`), take the
//! path as UTF-8 (anything else is `EINVAL`), ignore Unix permission bits (except that a
//! created file with no write bit in `mode` gets the read-only attribute), and
//! `SymlinkAt` needs the privilege Windows asks for (or developer mode). `Read`/`Write`
//! at the file position and `Statx` have no Windows form here (`Read`/`Write` are socket
//! operations: on a file handle they fail with `WSAENOTSOCK`).

#[path = "fd.rs"]
pub mod fd;

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::ptr;

use socket2::{Domain, Socket, Type};
use windows_sys::Win32::Networking::WinSock as ws;

use self::fd::RawFd;
use crate::completion::Inner;
use crate::op::Op;
use windows_sys::Win32::Foundation::CloseHandle;

/// The address storage of an operation's scratch space (large enough for IPv6).
pub(crate) type SockAddrBuf = ws::SOCKADDR_IN6;
/// A socket address length, as Winsock takes it.
pub(crate) type SockLen = i32;

/// The part of a message header the core reads back (the sender's address length).
#[repr(C)]
pub(crate) struct MsgName {
    /// Length of the address in [`Scratch::addr`].
    pub(crate) msg_namelen: SockLen,
}

/// Kernel-written address for accept/recvfrom and the address of a connect/sendto.
#[repr(C)]
pub(crate) struct Scratch {
    pub(crate) addr: SockAddrBuf,
    pub(crate) addrlen: SockLen,
    pub(crate) msg: MsgName,
}

/// The scatter/gather element of vectored I/O (`WSABUF`).
pub(crate) type IoVec = ws::WSABUF;

/// An [`IoVec`] over `len` bytes at `ptr` (a `WSABUF` holds at most `u32::MAX` bytes;
/// longer buffers are used in part, like a short write).
#[inline(always)]
pub(crate) fn io_vec(ptr: *const u8, len: usize) -> IoVec {
    ws::WSABUF {
        len: len.min(u32::MAX as usize) as u32,
        buf: ptr.cast_mut(),
    }
}

/// `ERROR_NOT_SUPPORTED`: what an operation Windows has no path for yet reports.
const ERROR_NOT_SUPPORTED: i32 = 50;

/// `-code` of the last failed Winsock call.
pub(crate) fn neg_errno() -> isize {
    // SAFETY: reads the calling thread's last Winsock error.
    -(unsafe { ws::WSAGetLastError() } as isize)
}

/// The handle Winsock takes for `fd`.
#[inline(always)]
fn sock(fd: RawFd) -> ws::SOCKET {
    fd as ws::SOCKET
}

/// Write `addr` into `out`, returning the length to pass to Winsock.
pub(crate) fn to_sockaddr(addr: &SocketAddr, out: &mut SockAddrBuf) -> SockLen {
    let sa = socket2::SockAddr::from(*addr);
    let len = (sa.len() as usize).min(mem::size_of::<SockAddrBuf>());
    // SAFETY: `sa` holds `len` initialised bytes of a sockaddr_in/in6, which fit in
    // `out` (a SOCKADDR_IN6); both are plain data and do not overlap.
    unsafe {
        ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (out as *mut SockAddrBuf).cast::<u8>(),
            len,
        )
    };
    len as SockLen
}

/// Read back an address Winsock wrote (`None` for other families or truncation).
pub(crate) fn from_sockaddr(raw: &SockAddrBuf, len: SockLen) -> Option<SocketAddr> {
    let len = (len.max(0) as usize).min(mem::size_of::<SockAddrBuf>());
    // SAFETY: the closure copies `len` bytes (at most the size of `raw`, and of the
    // storage, which is larger) into the zeroed storage socket2 gives it.
    let (_, sa) = unsafe {
        socket2::SockAddr::try_init(|storage, out_len| {
            ptr::copy_nonoverlapping(
                (raw as *const SockAddrBuf).cast::<u8>(),
                storage.cast::<u8>(),
                len,
            );
            *out_len = len as _;
            Ok(())
        })
    }
    .ok()?;
    sa.as_socket()
}

/// Operations finished at submission: none on Windows (the Unix-socket ones do not
/// exist here).
///
/// # Safety
/// As for [`perform`].
pub(crate) unsafe fn done_at_submission(_inner: *mut Inner) -> Option<isize> {
    None
}

/// Close `fd`, ignoring errors (used for sockets and file handles nobody will receive,
/// and for the duplicates the thread pool worked on): `closesocket`, or `CloseHandle`
/// when Winsock says it is not a socket (a file handle).
pub(crate) fn close_fd(fd: RawFd) {
    if fd::is_no_fd(fd) {
        return;
    }
    // SAFETY: the caller owns `fd` and gives it up; closesocket on a handle that is not a
    // socket fails with WSAENOTSOCK and leaves it open.
    if unsafe { ws::closesocket(sock(fd)) } != 0 && not_a_socket(-neg_errno() as i32) {
        // SAFETY: as above: the caller's handle, closed once.
        unsafe { CloseHandle(fd::file_handle(fd)) };
    }
}

/// Whether a Winsock error says the handle is no socket: `WSAENOTSOCK`, or
/// `WSANOTINITIALISED` (Winsock never started in this process, so it made no socket).
fn not_a_socket(code: i32) -> bool {
    fd::is_not_socket(code) || code == ws::WSANOTINITIALISED
}

/// Whether `fd` is a file that never reports "would block": always false on Windows,
/// where `Read`/`Write` are socket operations (the file operations go to the thread pool
/// by their kind).
pub(crate) fn is_blocking_file(_fd: RawFd) -> bool {
    false
}

/// Whether a short read on `fd` means its queue is empty: true for stream sockets (and
/// anything `SO_TYPE` cannot be read from), false for datagram sockets.
pub(crate) fn is_stream(fd: RawFd) -> bool {
    get_opt(fd, ws::SOL_SOCKET, ws::SO_TYPE).map_or(true, |ty| ty == ws::SOCK_STREAM)
}

/// Whether a short read on `fd` means its queue is drained (see the Unix twin): every
/// descriptor here is a socket, so its type says.
pub(crate) fn short_read_drains(fd: RawFd) -> bool {
    is_stream(fd)
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
        | Op::Writev { .. }
        | Op::SendMsgV { .. } => Wait::Writable,
        Op::Poll { events, .. } if !events.contains(crate::PollEvents::IN) => Wait::Writable,
        Op::SendZc { .. } => Wait::Writable,
        _ => Wait::Readable,
    }
}

/// Perform the operation in `inner` once, without blocking (the sockets are
/// non-blocking), returning `-EAGAIN` when it would block.
/// `connect_started` says whether a non-blocking connect is already in progress.
///
/// # Safety
/// `inner` must be valid and not accessed by anyone else during the call, and its buffer
/// must be valid memory (guaranteed by `Buffer`'s constructors).
pub(crate) unsafe fn perform(inner: *mut Inner, connect_started: bool) -> isize {
    // SAFETY: exclusive access per the contract; the loop lent scratch space to every
    // operation that uses it (see `scratch::needs_scratch`).
    let mut lent = unsafe { Inner::scratch(inner) };
    // SAFETY: exclusive access per the contract.
    let inner = unsafe { &mut *inner };
    if let Some(r) = perform_file(&mut inner.op) {
        return r;
    }
    /// The lent scratch space (`EINVAL` if an operation that needs it has none, which
    /// the loop never lets happen).
    macro_rules! scratch {
        () => {
            match lent.as_deref_mut() {
                Some(sc) => sc,
                None => return -(ws::WSAEINVAL as isize),
            }
        };
    }
    /// Winsock lengths are `i32`: a longer buffer is used in part (a short transfer).
    fn clamp(len: usize) -> i32 {
        len.min(i32::MAX as usize) as i32
    }
    // SAFETY: (all calls below) pointers come from owned buffers and scratch fields that
    // outlive the call; lengths match (or are below) their allocations; a bad socket
    // number just fails.
    let r: isize = unsafe {
        match &mut inner.op {
            Op::Accept { fd } => {
                let sc = scratch!();
                sc.addrlen = mem::size_of::<SockAddrBuf>() as SockLen;
                let s = ws::accept(
                    sock(*fd),
                    (&mut sc.addr as *mut SockAddrBuf).cast(),
                    &mut sc.addrlen,
                );
                if s == ws::INVALID_SOCKET {
                    neg_errno()
                } else {
                    // The accepted socket inherits the listener's non-blocking mode, but
                    // say so explicitly (a listener handed in by the user may be blocking).
                    let mut on: u32 = 1;
                    if ws::ioctlsocket(s, ws::FIONBIO, &mut on) != 0 {
                        let e = neg_errno();
                        ws::closesocket(s);
                        e
                    } else {
                        s as isize
                    }
                }
            }
            Op::Connect { fd, addr } => {
                if connect_started {
                    return match get_opt(*fd, ws::SOL_SOCKET, ws::SO_ERROR) {
                        Ok(err) => -(err as isize),
                        Err(e) => -(e.raw_os_error().unwrap_or(ERROR_NOT_SUPPORTED) as isize),
                    };
                }
                let sc = scratch!();
                let len = to_sockaddr(addr, &mut sc.addr);
                if ws::connect(sock(*fd), (&sc.addr as *const SockAddrBuf).cast(), len) != 0 {
                    let e = neg_errno();
                    if e == -(ws::WSAEINPROGRESS as isize) {
                        -(ws::WSAEWOULDBLOCK as isize)
                    } else {
                        e
                    }
                } else {
                    0
                }
            }
            Op::Read { fd, buf } | Op::Recv { fd, buf } => {
                ws::recv(sock(*fd), buf.as_ptr(), clamp(buf.len()), 0) as isize
            }
            Op::Write { fd, buf } | Op::Send { fd, buf } => {
                ws::send(sock(*fd), buf.as_ptr(), clamp(buf.len()), 0) as isize
            }
            // No zero-copy send here: a plain one.
            Op::SendZc { fd, buf } => {
                ws::send(sock(*fd), buf.as_ptr(), clamp(buf.len()), 0) as isize
            }
            Op::SendMsg { fd, buf, addr } => {
                let sc = scratch!();
                let (name, len) = match addr {
                    Some(a) => {
                        sc.addrlen = to_sockaddr(a, &mut sc.addr);
                        ((&sc.addr as *const SockAddrBuf).cast(), sc.addrlen)
                    }
                    None => (ptr::null(), 0),
                };
                ws::sendto(sock(*fd), buf.as_ptr(), clamp(buf.len()), 0, name, len) as isize
            }
            Op::RecvMsg { fd, buf } => {
                let sc = scratch!();
                sc.addrlen = mem::size_of::<SockAddrBuf>() as SockLen;
                let r = ws::recvfrom(
                    sock(*fd),
                    buf.as_ptr(),
                    clamp(buf.len()),
                    0,
                    (&mut sc.addr as *mut SockAddrBuf).cast(),
                    &mut sc.addrlen,
                );
                // `Loop::invoke` takes the length from here (as io_uring's recvmsg
                // leaves it in the msghdr on Linux).
                sc.msg.msg_namelen = sc.addrlen;
                r as isize
            }
            Op::Close { fd } => match fd.take() {
                Some(owned) => {
                    use self::fd::IntoRawFd;
                    // The socket is released even when closesocket reports an error.
                    if ws::closesocket(sock(owned.into_raw_fd())) == 0 {
                        0
                    } else {
                        neg_errno()
                    }
                }
                None => -(ws::WSAEBADF as isize),
            },
            Op::Shutdown { fd, how } => {
                let how = match how {
                    std::net::Shutdown::Read => ws::SD_RECEIVE,
                    std::net::Shutdown::Write => ws::SD_SEND,
                    std::net::Shutdown::Both => ws::SD_BOTH,
                };
                ws::shutdown(sock(*fd), how) as isize
            }
            Op::Poll { fd, events } => {
                let mut pfd = ws::WSAPOLLFD {
                    fd: sock(*fd),
                    events: poll_events_to_wsa(events.bits()),
                    revents: 0,
                };
                let r = ws::WSAPoll(&mut pfd, 1, 0);
                if r == 0 {
                    return -(libc::EAGAIN as isize);
                }
                if r > 0 {
                    if pfd.revents & ws::POLLNVAL != 0 {
                        return -(ws::WSAENOTSOCK as isize);
                    }
                    return poll_events_from_wsa(pfd.revents) as isize;
                }
                neg_errno()
            }
            Op::Readv {
                fd,
                bufs,
                offset: None,
            } => {
                let (iov, n) = bufs.iovecs();
                let mut got: u32 = 0;
                let mut flags: u32 = 0;
                let r = ws::WSARecv(
                    sock(*fd),
                    iov,
                    n.min(u32::MAX as usize) as u32,
                    &mut got,
                    &mut flags,
                    ptr::null_mut(),
                    None,
                );
                if r == 0 {
                    got as isize
                } else {
                    neg_errno()
                }
            }
            Op::Writev {
                fd,
                bufs,
                offset: None,
            }
            | Op::SendMsgV {
                fd,
                bufs,
                addr: None,
            } => {
                let (iov, n) = bufs.iovecs();
                let mut sent: u32 = 0;
                let r = ws::WSASend(
                    sock(*fd),
                    iov,
                    n.min(u32::MAX as usize) as u32,
                    &mut sent,
                    0,
                    ptr::null_mut(),
                    None,
                );
                if r == 0 {
                    sent as isize
                } else {
                    neg_errno()
                }
            }
            Op::SendMsgV {
                fd,
                bufs,
                addr: Some(a),
            } => {
                let sc = scratch!();
                let (iov, n) = bufs.iovecs();
                sc.addrlen = to_sockaddr(a, &mut sc.addr);
                let mut sent: u32 = 0;
                let r = ws::WSASendTo(
                    sock(*fd),
                    iov,
                    n.min(u32::MAX as usize) as u32,
                    &mut sent,
                    0,
                    (&sc.addr as *const SockAddrBuf).cast(),
                    sc.addrlen,
                    ptr::null_mut(),
                    None,
                );
                if r == 0 {
                    sent as isize
                } else {
                    neg_errno()
                }
            }
            Op::Noop | Op::Timer { .. } | Op::Cancel { .. } => -(ws::WSAEINVAL as isize),
            // Read/Write/Statx on files, Readv/Writev at the file position of a file:
            // no Windows form (see the module docs).
            _ => -(ERROR_NOT_SUPPORTED as isize),
        }
    };
    // Winsock calls return SOCKET_ERROR (-1) and leave the code in WSAGetLastError.
    let r = if r == ws::SOCKET_ERROR as isize {
        neg_errno()
    } else {
        r
    };
    if r == -(ws::WSAEWOULDBLOCK as isize) {
        return -(libc::EAGAIN as isize);
    }
    r
}

// ---------------------------------------------------------------------------------------
// Files: performed on the thread pool (see the module docs).

/// Bit 29 (Win32's "customer" bit, which no system code has) marks a Win32 code that a
/// file operation carries through the core's `-code` results: low Win32 codes
/// (`ERROR_TOO_MANY_OPEN_FILES` is 4) would otherwise read as one of the Unix errno
/// values that [`os_error`] translates (`EINTR` is 4 too). [`os_error`] removes it.
const WIN32_TAG: i32 = 1 << 29;

/// `-code` of an `io::Error` (its Windows code, tagged with [`WIN32_TAG`];
/// `ERROR_NOT_SUPPORTED` if it has none).
fn neg_code(e: &io::Error) -> isize {
    -((e.raw_os_error().unwrap_or(ERROR_NOT_SUPPORTED) | WIN32_TAG) as isize)
}

/// `-ERROR_NOT_SUPPORTED`, tagged as a Win32 code.
const NOT_SUPPORTED: isize = -((ERROR_NOT_SUPPORTED | WIN32_TAG) as isize);

/// A byte count or `-code`.
fn count_or_code(r: io::Result<usize>) -> isize {
    match r {
        Ok(n) => n.min(isize::MAX as usize) as isize,
        Err(e) => neg_code(&e),
    }
}

/// 0 or `-code`.
fn unit_or_code(r: io::Result<()>) -> isize {
    match r {
        Ok(()) => 0,
        Err(e) => neg_code(&e),
    }
}

/// `-EINVAL`: what a path Windows cannot be given (an interior NUL, not UTF-8) reports
/// (Windows' `WSAEINVAL`, `ErrorKind::InvalidInput`, once through [`os_error`]).
const BAD_PATH: isize = -(libc::EINVAL as isize);

/// The path an operation carries, as UTF-8 (`Err(-EINVAL)` otherwise).
fn path_of(p: &crate::fs_op::OpPath) -> Result<&std::path::Path, isize> {
    p.as_c_str()
        .and_then(|c| c.to_str().ok())
        .map(std::path::Path::new)
        .ok_or(BAD_PATH)
}

/// `-ERROR_NOT_SUPPORTED` unless `dir` is `None`: Windows has no `*at` operations.
fn no_dir(dir: &Option<RawFd>) -> Result<(), isize> {
    match dir {
        None => Ok(()),
        Some(_) => Err(NOT_SUPPORTED),
    }
}

/// Run `f` on the file handle `fd`, borrowed as a `std::fs::File` that is never closed
/// here (the handle stays its owner's).
fn with_file(fd: RawFd, f: impl FnOnce(&std::fs::File) -> isize) -> isize {
    use std::os::windows::io::FromRawHandle;
    if fd::is_no_fd(fd) {
        return -(libc::EBADF as isize);
    }
    // SAFETY: `fd` is the value of a file handle the operation's owner keeps open until
    // the operation is over (on the poll backend, the pool's own duplicate of it; see
    // `Op`'s docs for the callback API's rule). `ManuallyDrop` never closes it, so the
    // `File` only borrows it for the call.
    let file =
        mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_handle(fd::file_handle(fd)) });
    f(&file)
}

/// `std::fs::OpenOptions` for `open(2)`-style `flags` and `mode` (the Windows CRT's `O_*`
/// values, which `libc` gives on Windows).
fn open_options(flags: i32, mode: u32) -> std::fs::OpenOptions {
    use std::os::windows::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    match flags & (libc::O_WRONLY | libc::O_RDWR) {
        libc::O_WRONLY => o.write(true),
        libc::O_RDWR => o.read(true).write(true),
        _ => o.read(true),
    };
    if flags & libc::O_APPEND != 0 {
        o.append(true);
    }
    if flags & libc::O_TRUNC != 0 {
        o.truncate(true);
    }
    if flags & libc::O_CREAT != 0 {
        if flags & libc::O_EXCL != 0 {
            o.create_new(true);
        } else {
            o.create(true);
        }
        if mode & 0o222 == 0 {
            /// `FILE_ATTRIBUTE_READONLY`.
            const READONLY: u32 = 0x1;
            o.attributes(READONLY);
        }
    }
    o
}

/// The file and path operations, performed at once with blocking calls (the poll
/// backend sends them to the thread pool); `None` for every other operation.
fn perform_file(op: &mut Op) -> Option<isize> {
    use std::os::windows::fs::FileExt;
    use std::os::windows::io::IntoRawHandle;
    let r = match op {
        Op::Pread { fd, buf, offset } => with_file(*fd, |f| {
            count_or_code(f.seek_read(buf.as_mut_slice(), *offset))
        }),
        Op::Pwrite { fd, buf, offset } => with_file(*fd, |f| {
            count_or_code(f.seek_write(buf.as_slice(), *offset))
        }),
        Op::Readv {
            fd,
            bufs,
            offset: Some(offset),
        } => with_file(*fd, |f| {
            let mut total = 0usize;
            for b in bufs.as_mut_slice() {
                match f.seek_read(b.as_mut_slice(), *offset + total as u64) {
                    Ok(n) => {
                        total += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return neg_code(&e),
                    Err(_) => break,
                }
            }
            count_or_code(Ok(total))
        }),
        Op::Writev {
            fd,
            bufs,
            offset: Some(offset),
        } => with_file(*fd, |f| {
            let mut total = 0usize;
            for b in bufs.as_slice() {
                match f.seek_write(b.as_slice(), *offset + total as u64) {
                    Ok(n) => {
                        total += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return neg_code(&e),
                    Err(_) => break,
                }
            }
            count_or_code(Ok(total))
        }),
        Op::Fsync { fd, data_only } => with_file(*fd, |f| {
            unit_or_code(if *data_only {
                f.sync_data()
            } else {
                f.sync_all()
            })
        }),
        Op::Ftruncate { fd, len } => with_file(*fd, |f| unit_or_code(f.set_len(*len))),
        Op::Fallocate {
            fd,
            mode,
            offset,
            len,
        } => {
            if *mode != 0 {
                return Some(NOT_SUPPORTED);
            }
            let Some(end) = offset.checked_add(*len) else {
                return Some(-(libc::EINVAL as isize));
            };
            with_file(*fd, |f| {
                unit_or_code(f.metadata().and_then(|m| {
                    if m.len() < end {
                        f.set_len(end)
                    } else {
                        Ok(())
                    }
                }))
            })
        }
        Op::OpenAt {
            dir,
            path,
            flags,
            mode,
        } => match no_dir(dir).and_then(|()| path_of(path)) {
            Ok(p) => match open_options(*flags, *mode).open(p) {
                Ok(f) => f.into_raw_handle() as usize as isize,
                Err(e) => neg_code(&e),
            },
            Err(e) => e,
        },
        Op::RenameAt {
            old_dir,
            old,
            new_dir,
            new,
            flags,
        } => {
            let paths = no_dir(old_dir)
                .and_then(|()| no_dir(new_dir))
                .and_then(|()| Ok((path_of(old)?, path_of(new)?)));
            match paths {
                Ok((from, to)) => match *flags {
                    0 => unit_or_code(std::fs::rename(from, to)),
                    RENAME_NOREPLACE => unit_or_code(move_no_replace(from, to)),
                    _ => -(libc::EINVAL as isize),
                },
                Err(e) => e,
            }
        }
        Op::UnlinkAt {
            dir,
            path,
            remove_dir,
        } => match no_dir(dir).and_then(|()| path_of(path)) {
            Ok(p) if *remove_dir => unit_or_code(std::fs::remove_dir(p)),
            Ok(p) => unit_or_code(std::fs::remove_file(p)),
            Err(e) => e,
        },
        Op::MkdirAt { dir, path, .. } => match no_dir(dir).and_then(|()| path_of(path)) {
            Ok(p) => unit_or_code(std::fs::create_dir(p)),
            Err(e) => e,
        },
        Op::LinkAt {
            old_dir,
            old,
            new_dir,
            new,
            ..
        } => {
            let paths = no_dir(old_dir)
                .and_then(|()| no_dir(new_dir))
                .and_then(|()| Ok((path_of(old)?, path_of(new)?)));
            match paths {
                Ok((from, to)) => unit_or_code(std::fs::hard_link(from, to)),
                Err(e) => e,
            }
        }
        Op::SymlinkAt { target, dir, link } => {
            let paths = no_dir(dir).and_then(|()| Ok((path_of(target)?, path_of(link)?)));
            match paths {
                Ok((target, link)) => unit_or_code(symlink(target, link)),
                Err(e) => e,
            }
        }
        _ => return None,
    };
    Some(r)
}

/// `renameat2`'s `RENAME_NOREPLACE`.
const RENAME_NOREPLACE: u32 = 1;

/// Rename `from` to `to`, failing with `ERROR_ALREADY_EXISTS` if `to` exists
/// (`MoveFileExW` without `MOVEFILE_REPLACE_EXISTING`: atomic, as `RENAME_NOREPLACE`).
fn move_no_replace(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::MoveFileExW;
    let wide = |p: &std::path::Path| -> Vec<u16> {
        p.as_os_str()
            .encode_wide()
            .chain(std::iter::once(0))
            .collect()
    };
    let (from, to) = (wide(from), wide(to));
    // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call (paths from
    // UTF-8 strings, which have no interior NUL: `OpPath` refuses one).
    if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), 0) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A symbolic link at `link` to `target`: a directory link if `target` (resolved from
/// the link's directory when relative) is a directory now, a file link otherwise.
fn symlink(target: &std::path::Path, link: &std::path::Path) -> io::Result<()> {
    let resolved = match link.parent() {
        Some(dir) if target.is_relative() => dir.join(target),
        _ => target.to_path_buf(),
    };
    if resolved.is_dir() {
        std::os::windows::fs::symlink_dir(target, link)
    } else {
        std::os::windows::fs::symlink_file(target, link)
    }
}

/// `poll(2)`'s readable bit, Linux's value (what [`PollEvents`](crate::PollEvents) uses
/// on every platform).
pub(crate) const POLLIN: i16 = 0x1;
/// `poll(2)`'s writable bit (Linux's value).
pub(crate) const POLLOUT: i16 = 0x4;
/// `poll(2)`'s error bit (Linux's value).
pub(crate) const POLLERR: i16 = 0x8;
/// `poll(2)`'s hang-up bit (Linux's value).
pub(crate) const POLLHUP: i16 = 0x10;

/// `POLLIN`/`POLLOUT` bits of [`PollEvents`](crate::PollEvents) (Linux values) as
/// `WSAPoll` spells them.
fn poll_events_to_wsa(bits: u32) -> i16 {
    let mut e = 0;
    if bits & POLLIN as u32 != 0 {
        e |= ws::POLLRDNORM;
    }
    if bits & POLLOUT as u32 != 0 {
        e |= ws::POLLWRNORM;
    }
    e
}

/// `WSAPoll`'s result bits as [`PollEvents`](crate::PollEvents) (Linux values).
fn poll_events_from_wsa(re: i16) -> u16 {
    let mut e = 0;
    if re & (ws::POLLRDNORM | ws::POLLRDBAND) != 0 {
        e |= POLLIN as u16;
    }
    if re & ws::POLLWRNORM != 0 {
        e |= POLLOUT as u16;
    }
    if re & ws::POLLERR != 0 {
        e |= POLLERR as u16;
    }
    if re & ws::POLLHUP != 0 {
        e |= POLLHUP as u16;
    }
    e
}

/// A new socket, non-blocking and not inherited by child processes.
pub(crate) fn socket(domain: Domain, ty: Type) -> io::Result<Socket> {
    let s = Socket::new(domain, ty, None)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Synchronous socket setup (bind, connect for UDP, names, listen, options).

fn cvt(r: i32) -> io::Result<i32> {
    if r == ws::SOCKET_ERROR {
        // SAFETY: reads the calling thread's last Winsock error.
        Err(io::Error::from_raw_os_error(unsafe {
            ws::WSAGetLastError()
        }))
    } else {
        Ok(r)
    }
}

/// `bind`.
pub(crate) fn bind(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid SOCKADDR_IN6.
    let mut raw: SockAddrBuf = unsafe { mem::zeroed() };
    let len = to_sockaddr(addr, &mut raw);
    // SAFETY: `raw` holds a sockaddr of `len` bytes and outlives the call.
    cvt(unsafe { ws::bind(sock(fd), (&raw as *const SockAddrBuf).cast(), len) }).map(drop)
}

/// A synchronous `connect` (for UDP, where it only records the peer).
pub(crate) fn connect_sync(fd: RawFd, addr: &SocketAddr) -> io::Result<()> {
    // SAFETY: all-zero is a valid SOCKADDR_IN6.
    let mut raw: SockAddrBuf = unsafe { mem::zeroed() };
    let len = to_sockaddr(addr, &mut raw);
    // SAFETY: `raw` holds a sockaddr of `len` bytes and outlives the call.
    cvt(unsafe { ws::connect(sock(fd), (&raw as *const SockAddrBuf).cast(), len) }).map(drop)
}

type NameFn = unsafe extern "system" fn(ws::SOCKET, *mut ws::SOCKADDR, *mut i32) -> i32;

fn name(fd: RawFd, f: NameFn) -> io::Result<SocketAddr> {
    // SAFETY: all-zero is a valid SOCKADDR_IN6.
    let mut raw: SockAddrBuf = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<SockAddrBuf>() as SockLen;
    // SAFETY: Winsock writes at most `len` bytes into `raw`, which we own.
    cvt(unsafe { f(sock(fd), (&mut raw as *mut SockAddrBuf).cast(), &mut len) })?;
    from_sockaddr(&raw, len)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket address"))
}

/// `getsockname`.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, ws::getsockname)
}

/// `getpeername`.
pub(crate) fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    name(fd, ws::getpeername)
}

fn set_opt(fd: RawFd, level: i32, opt: i32, val: i32) -> io::Result<()> {
    // SAFETY: Winsock reads one int from `val`, which outlives the call.
    cvt(unsafe {
        ws::setsockopt(
            sock(fd),
            level,
            opt,
            (&val as *const i32).cast(),
            mem::size_of::<i32>() as i32,
        )
    })
    .map(drop)
}

fn get_opt(fd: RawFd, level: i32, opt: i32) -> io::Result<i32> {
    let mut val: i32 = 0;
    let mut len = mem::size_of::<i32>() as i32;
    // SAFETY: Winsock writes at most `len` bytes into `val`, which we own.
    cvt(unsafe {
        ws::getsockopt(
            sock(fd),
            level,
            opt,
            (&mut val as *mut i32).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// `listen` (a backlog above `i32::MAX` is clamped).
pub(crate) fn listen(fd: RawFd, backlog: u32) -> io::Result<()> {
    let backlog = backlog.min(i32::MAX as u32) as i32;
    // SAFETY: listen takes no pointers; a bad socket just fails.
    cvt(unsafe { ws::listen(sock(fd), backlog) }).map(drop)
}

/// Set `SO_REUSEADDR`.
pub(crate) fn set_reuseaddr(fd: RawFd) -> io::Result<()> {
    set_opt(fd, ws::SOL_SOCKET, ws::SO_REUSEADDR, 1)
}

/// Set `TCP_NODELAY` on or off.
pub(crate) fn set_nodelay(fd: RawFd, on: bool) -> io::Result<()> {
    set_opt(fd, ws::IPPROTO_TCP, ws::TCP_NODELAY, on.into())
}

/// Whether `TCP_NODELAY` is set.
pub(crate) fn nodelay(fd: RawFd) -> io::Result<bool> {
    get_opt(fd, ws::IPPROTO_TCP, ws::TCP_NODELAY).map(|v| v != 0)
}

/// A duplicate of socket `fd` that child processes do not inherit, owned by the caller
/// (`WSADuplicateSocketW` + `WSASocketW`, as std's `try_clone` does).
///
/// A file handle (Winsock says `WSAENOTSOCK`) is duplicated with `DuplicateHandle`
/// instead, not inheritable, with the same access (the thread pool's file operations
/// run on such a duplicate). [`fd::NO_FD`] is `EBADF`, never duplicated.
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
    if fd::is_no_fd(fd) {
        return Err(io::Error::from_raw_os_error(ws::WSAEBADF));
    }
    match dup_socket(fd) {
        Err(e) if e.raw_os_error().is_some_and(not_a_socket) => dup_handle(fd),
        r => r,
    }
}

/// `DuplicateHandle` of the file handle `fd` within this process, not inheritable.
fn dup_handle(fd: RawFd) -> io::Result<RawFd> {
    use windows_sys::Win32::Foundation::{DuplicateHandle, DUPLICATE_SAME_ACCESS};
    use windows_sys::Win32::System::Threading::GetCurrentProcess;
    let mut out: windows_sys::Win32::Foundation::HANDLE = ptr::null_mut();
    // SAFETY: `out` is ours and outlives the call; a handle that is not open just fails
    // (ERROR_INVALID_HANDLE). NO_FD (the pseudo handle value -1) was refused above.
    let ok = unsafe {
        DuplicateHandle(
            GetCurrentProcess(),
            fd::file_handle(fd),
            GetCurrentProcess(),
            &mut out,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out as usize as RawFd)
}

/// `WSADuplicateSocketW` + `WSASocketW` of socket `fd`.
fn dup_socket(fd: RawFd) -> io::Result<RawFd> {
    // SAFETY: all-zero is a valid WSAPROTOCOL_INFOW; Winsock fills it.
    let mut info: ws::WSAPROTOCOL_INFOW = unsafe { mem::zeroed() };
    // SAFETY: `info` is ours and outlives the call; a bad socket just fails.
    let r = unsafe {
        ws::WSADuplicateSocketW(
            sock(fd),
            windows_sys::Win32::System::Threading::GetCurrentProcessId(),
            &mut info,
        )
    };
    cvt(r)?;
    // SAFETY: `info` describes the socket to duplicate, as WSADuplicateSocketW wrote it.
    let s = unsafe {
        ws::WSASocketW(
            ws::FROM_PROTOCOL_INFO,
            ws::FROM_PROTOCOL_INFO,
            ws::FROM_PROTOCOL_INFO,
            &info,
            0,
            ws::WSA_FLAG_OVERLAPPED | ws::WSA_FLAG_NO_HANDLE_INHERIT,
        )
    };
    if s == ws::INVALID_SOCKET {
        // SAFETY: reads the calling thread's last Winsock error.
        return Err(io::Error::from_raw_os_error(unsafe {
            ws::WSAGetLastError()
        }));
    }
    Ok(s as RawFd)
}

/// Switch socket `fd` between non-blocking and blocking (`FIONBIO`).
pub(crate) fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    let mut arg: u32 = on.into();
    // SAFETY: Winsock reads `arg`, which outlives the call; a bad socket just fails.
    cvt(unsafe { ws::ioctlsocket(sock(fd), ws::FIONBIO, &mut arg) }).map(drop)
}

/// A read of a file served from the page cache without the pool: never on Windows (no
/// file reads reach the loop there), so `None`: do it on the pool.
///
/// # Safety
/// As for [`perform`].
pub(crate) unsafe fn read_cached(_inner: *mut Inner) -> Option<isize> {
    None
}

/// Have `handler` called for each Ctrl-C and Ctrl-Break of the console (on a thread the
/// system starts for it); the event then no longer terminates the process. Installed
/// once per process: later calls return the first call's outcome and keep its handler.
pub(crate) fn catch_ctrl_c(handler: fn()) -> io::Result<()> {
    use std::sync::OnceLock;
    use windows_sys::Win32::System::Console::{
        SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_C_EVENT,
    };

    static HANDLER: OnceLock<fn()> = OnceLock::new();
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();

    unsafe extern "system" fn on_ctrl(ty: u32) -> windows_sys::core::BOOL {
        match ty {
            CTRL_C_EVENT | CTRL_BREAK_EVENT => {
                if let Some(h) = HANDLER.get() {
                    h();
                }
                1
            }
            // Close, logoff, shutdown: the default action (terminate).
            _ => 0,
        }
    }

    let res = INSTALLED.get_or_init(|| {
        let _ = HANDLER.set(handler);
        // SAFETY: `on_ctrl` is a valid handler for the whole life of the process.
        if unsafe { SetConsoleCtrlHandler(Some(on_ctrl), 1) } == 0 {
            Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            Ok(())
        }
    });
    res.map_err(io::Error::from_raw_os_error)
}

/// The `io::Error` of a `-code` result. Winsock and Win32 codes are kept; the Unix errno
/// values the portable core reports itself (`EBADF` for a closed socket, `EINVAL`,
/// `ENOMEM`, ...; libc's CRT numbers, all below Winsock's 10000 and distinct from the one
/// Win32 code used here, `ERROR_NOT_SUPPORTED`) become the Windows code of the same
/// meaning, so the message and `ErrorKind` are Windows' own. A Win32 code a file
/// operation reported is tagged ([`WIN32_TAG`]) and comes back as it was.
pub(crate) fn os_error(code: i32) -> io::Error {
    if code & WIN32_TAG != 0 {
        return io::Error::from_raw_os_error(code & !WIN32_TAG);
    }
    /// `ERROR_NOT_ENOUGH_MEMORY`.
    const ERROR_NOT_ENOUGH_MEMORY: i32 = 8;
    /// `ERROR_OPERATION_ABORTED`.
    const ERROR_OPERATION_ABORTED: i32 = 995;
    let win = match code {
        libc::EBADF => ws::WSAEBADF,
        libc::EINVAL => ws::WSAEINVAL,
        libc::EAGAIN => ws::WSAEWOULDBLOCK,
        libc::EINTR => ws::WSAEINTR,
        libc::EALREADY => ws::WSAEALREADY,
        libc::ETIMEDOUT => ws::WSAETIMEDOUT,
        libc::ENOMEM => ERROR_NOT_ENOUGH_MEMORY,
        libc::ECANCELED => ERROR_OPERATION_ABORTED,
        libc::ENOTSUP => ERROR_NOT_SUPPORTED,
        other => other,
    };
    io::Error::from_raw_os_error(win)
}

// ---------------------------------------------------------------------------------------
// Processes: the exit of a process as a socket the readiness backend can wait for.

/// A process handle plus a socket that becomes readable when the process exits, for
/// `watcher::Process` and `xev::process` on Windows (where a pidfd or kqueue would be on
/// Unix).
///
/// Windows' readiness backend waits for sockets only, so the wait on the process handle
/// is handed to the system thread pool (`RegisterWaitForSingleObject`, one-shot): when
/// the process exits, its callback sends one datagram over a loopback UDP pair, and the
/// receiving socket ([`raw`](Self::raw)) turns readable; the loop polls that socket like
/// any other. No thread of this crate blocks. Dropping it unregisters the wait
/// (`UnregisterWaitEx`, waiting for a callback already running), so nothing is left
/// waiting on the process, and then closes the handle and the sockets.
///
/// Windows keeps a process's exit code while a handle to it is open, and never hands its
/// id to another process meanwhile: [`exit_code`](Self::exit_code) reads the same code
/// every time (nothing is "reaped").
pub(crate) struct ProcessExit {
    /// The process (`SYNCHRONIZE`, `PROCESS_QUERY_LIMITED_INFORMATION`,
    /// `PROCESS_TERMINATE`, or whatever the handle it was made from allows).
    process: std::os::windows::io::OwnedHandle,
    /// The receiving socket, shared with the polls that name it (so that a poll whose
    /// future was dropped keeps it open until it is over).
    rx: std::sync::Arc<fd::OwnedFd>,
    /// The sending socket, the callback's context (only the callback uses it): boxed
    /// so its address is stable.
    _tx: Box<Socket>,
    /// The registered wait (`RegisterWaitForSingleObject`).
    wait: windows_sys::Win32::Foundation::HANDLE,
}

// SAFETY: the wait handle is only used to unregister the wait, from whichever thread
// drops this; the other fields are Send and Sync.
unsafe impl Send for ProcessExit {}
// SAFETY: as above; `&self` methods read the process handle and the sockets only.
unsafe impl Sync for ProcessExit {}

/// The system wait callback: the process exited; make the receiving socket readable.
unsafe extern "system" fn on_process_exit(ctx: *mut core::ffi::c_void, _timed_out: bool) {
    // SAFETY: `ctx` is the `Box<Socket>` (`_tx`) of a `ProcessExit`, which unregisters this wait
    // (waiting for this callback to return) before the box is freed.
    let tx = unsafe { &*ctx.cast::<Socket>() };
    // A full buffer or any error: nothing more to do (it is readable, or the loop is
    // gone).
    let _ = tx.send(&[1]);
}

impl ProcessExit {
    /// Watch the process `pid` (`OpenProcess`): `ERROR_INVALID_PARAMETER` if no process
    /// has that id, `ERROR_ACCESS_DENIED` if this process may not wait for it.
    pub(crate) fn open(pid: u32) -> io::Result<ProcessExit> {
        use std::os::windows::io::FromRawHandle;
        use windows_sys::Win32::System::Threading::{
            OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION, PROCESS_SYNCHRONIZE, PROCESS_TERMINATE,
        };
        let access = PROCESS_SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION | PROCESS_TERMINATE;
        // SAFETY: OpenProcess takes no pointers; a bad pid just fails.
        let h = unsafe { OpenProcess(access, 0, pid) };
        if h.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `h` is a new handle that nothing else owns.
        ProcessExit::new(unsafe { std::os::windows::io::OwnedHandle::from_raw_handle(h) })
    }

    /// Watch the process behind `h` (e.g. a duplicate of a `std::process::Child`'s
    /// handle, which names that very process whatever happened to its id).
    pub(crate) fn new(process: std::os::windows::io::OwnedHandle) -> io::Result<ProcessExit> {
        use std::os::windows::io::{AsRawHandle, FromRawSocket, IntoRawSocket};
        use windows_sys::Win32::System::Threading::{
            RegisterWaitForSingleObject, INFINITE, WT_EXECUTEINWAITTHREAD, WT_EXECUTEONLYONCE,
        };
        let loopback: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        let rx = socket(Domain::IPV4, Type::DGRAM)?;
        rx.bind(&loopback.into())?;
        let tx = socket(Domain::IPV4, Type::DGRAM)?;
        tx.bind(&loopback.into())?;
        tx.connect(&rx.local_addr()?)?;
        rx.connect(&tx.local_addr()?)?;
        let tx = Box::new(tx);
        // SAFETY: `rx` gives up its socket, owned from now on by the `OwnedSocket`.
        let rx = unsafe { fd::OwnedFd::from_raw_socket(rx.into_raw_socket()) };
        let mut wait: windows_sys::Win32::Foundation::HANDLE = ptr::null_mut();
        // SAFETY: `wait` is ours; the callback's context is the boxed socket, which
        // outlives the registration (`Drop` unregisters before freeing it). The callback
        // only sends a datagram, so it may run in the wait thread itself.
        let ok = unsafe {
            RegisterWaitForSingleObject(
                &mut wait,
                process.as_raw_handle(),
                Some(on_process_exit),
                (&*tx as *const Socket).cast_mut().cast(),
                INFINITE,
                WT_EXECUTEONLYONCE | WT_EXECUTEINWAITTHREAD,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ProcessExit {
            process,
            rx: std::sync::Arc::new(rx),
            _tx: tx,
            wait,
        })
    }

    /// The socket to poll for readability (readable once the process has exited).
    pub(crate) fn raw(&self) -> RawFd {
        use std::os::windows::io::AsRawSocket;
        self.rx.as_raw_socket()
    }

    /// The receiving socket, for a poll to keep open until it is over.
    pub(crate) fn shared_fd(&self) -> std::sync::Arc<fd::OwnedFd> {
        self.rx.clone()
    }

    /// The exit code if the process has exited (`GetExitCodeProcess` once the handle is
    /// signalled), `None` while it runs.
    pub(crate) fn exit_code(&self) -> io::Result<Option<u32>> {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::Foundation::{WAIT_OBJECT_0, WAIT_TIMEOUT};
        use windows_sys::Win32::System::Threading::{GetExitCodeProcess, WaitForSingleObject};
        let h = self.process.as_raw_handle();
        // SAFETY: `h` is our open process handle; a zero timeout never blocks.
        match unsafe { WaitForSingleObject(h, 0) } {
            WAIT_TIMEOUT => return Ok(None),
            WAIT_OBJECT_0 => {}
            _ => return Err(io::Error::last_os_error()),
        }
        let mut code = 0u32;
        // SAFETY: `code` is ours and outlives the call; `h` is open.
        if unsafe { GetExitCodeProcess(h, &mut code) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(code))
    }

    /// End the process (`TerminateProcess`, exit code 1). `Ok(())` if it has already
    /// exited.
    pub(crate) fn kill(&self) -> io::Result<()> {
        use std::os::windows::io::AsRawHandle;
        use windows_sys::Win32::System::Threading::TerminateProcess;
        // SAFETY: our open process handle; TerminateProcess takes no pointers.
        if unsafe { TerminateProcess(self.process.as_raw_handle(), 1) } != 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // Access denied on a process that has already exited: done.
        if self.exit_code().ok().flatten().is_some() {
            return Ok(());
        }
        Err(e)
    }
}

impl Drop for ProcessExit {
    fn drop(&mut self) {
        use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
        use windows_sys::Win32::System::Threading::UnregisterWaitEx;
        // SAFETY: `wait` is our registration, unregistered once; INVALID_HANDLE_VALUE
        // waits for a callback already running, so `_tx` is not in use once this returns.
        unsafe { UnregisterWaitEx(self.wait, INVALID_HANDLE_VALUE) };
    }
}

impl std::fmt::Debug for ProcessExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessExit")
            .field("process", &self.process)
            .field("socket", &self.raw())
            .finish()
    }
}
