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
//! sockets, pipes, signals and the `*at` path operations are `#[cfg(unix)]` in the
//! layers above. Operations on files (positioned reads and writes, path operations,
//! metadata) are not wired to Windows handles yet and fail with `ERROR_NOT_SUPPORTED`
//! ("The request is not supported") instead of doing anything.

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

/// Close `fd`, ignoring errors (used for sockets nobody will receive).
pub(crate) fn close_fd(fd: RawFd) {
    // SAFETY: the caller owns `fd` and gives it up.
    unsafe { ws::closesocket(sock(fd)) };
}

/// Whether `fd` is a file that never reports "would block": never on Windows, where every
/// descriptor of the crate is a socket.
pub(crate) fn is_blocking_file(_fd: RawFd) -> bool {
    false
}

/// Whether a short read on `fd` means its queue is empty: true for stream sockets (and
/// anything `SO_TYPE` cannot be read from), false for datagram sockets.
pub(crate) fn is_stream(fd: RawFd) -> bool {
    get_opt(fd, ws::SOL_SOCKET, ws::SO_TYPE).map_or(true, |ty| ty == ws::SOCK_STREAM)
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
    // SAFETY: exclusive access per the contract.
    let inner = unsafe { &mut *inner };
    let sc = &mut inner.scratch;
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
            // Files and paths: not wired to Windows handles yet (see the module docs).
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
pub(crate) fn dup_cloexec(fd: RawFd) -> io::Result<RawFd> {
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

/// The socket behind [`Async`](crate::Async) on Windows: a loopback UDP pair, the
/// receiving end polled for readability (Windows has no eventfd or pipe the readiness
/// backend can wait on; a socket it can). `signal` sends a one-byte datagram, `drain`
/// reads them all.
pub(crate) struct WakeFd {
    rx: Socket,
    tx: Socket,
}

impl WakeFd {
    /// Two non-blocking UDP sockets on 127.0.0.1, each connected to the other (so the
    /// receiving one takes datagrams from its twin only).
    pub(crate) fn new() -> io::Result<WakeFd> {
        let loopback: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        let rx = socket(Domain::IPV4, Type::DGRAM)?;
        rx.bind(&loopback.into())?;
        let tx = socket(Domain::IPV4, Type::DGRAM)?;
        tx.bind(&loopback.into())?;
        tx.connect(&rx.local_addr()?)?;
        rx.connect(&tx.local_addr()?)?;
        Ok(WakeFd { rx, tx })
    }

    /// The socket to poll for readability.
    pub(crate) fn raw(&self) -> RawFd {
        use std::os::windows::io::AsRawSocket;
        self.rx.as_raw_socket()
    }

    /// Make it readable (one one-byte datagram). A full buffer is success: it is
    /// readable already.
    pub(crate) fn signal(&self) -> io::Result<()> {
        match self.tx.send(&[1]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Read every pending datagram (non-blocking; stops at the first "would block" or
    /// error, and after a bounded number so a notifier that never stops cannot hold the
    /// loop: what is left only makes the next wait return early).
    pub(crate) fn drain(&self) {
        let mut buf = [mem::MaybeUninit::<u8>::uninit(); 16];
        for _ in 0..1024 {
            if self.rx.recv(&mut buf).is_err() {
                break;
            }
        }
    }
}

/// The `io::Error` of a `-code` result. Winsock and Win32 codes are kept; the Unix errno
/// values the portable core reports itself (`EBADF` for a closed socket, `EINVAL`,
/// `ENOMEM`, ...; libc's CRT numbers, all below Winsock's 10000 and distinct from the one
/// Win32 code used here, `ERROR_NOT_SUPPORTED`) become the Windows code of the same
/// meaning, so the message and `ErrorKind` are Windows' own.
pub(crate) fn os_error(code: i32) -> io::Error {
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
