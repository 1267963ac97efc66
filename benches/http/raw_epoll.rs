//! A hand-written epoll server, the reference for the servers on epoll: no runtime, no
//! tasks, no wakers, only the syscalls. It answers with `http_hello::answer` (the same
//! bytes as `http_hello` and the tokio server) and buffers as the tokio server
//! (`servers::tokio_hello`) does: one 8 KiB read buffer per connection; what one `recv`
//! returned is answered at once (every complete request in it, a partial one kept for
//! the next read), all the responses go out in one `send`, and only then is the socket
//! read again. A connection that must close (HTTP/1.0, `Connection: close`, a bad
//! request) gets its responses, then the end of stream, then has what the client still
//! sends read and discarded for up to a second, as in tokio's server.
//!
//! Each socket is registered once, edge-triggered, for both directions (as mio and xev's
//! epoll backend register them), and the readiness is tracked as tokio tracks it: a
//! `recv` shorter than the buffer, or a `send` shorter than the data, counts as having
//! emptied (filled) the socket, so no syscall is spent to see `EAGAIN`. In the steady
//! state it makes tokio's syscalls: per batch of requests one `recvfrom` and one `sendto`,
//! and one `epoll_wait` per wake-up (`EVENTS` events at most, as the load generator).
//! What separates xev or tokio from this loop is theirs; what separates this loop from a
//! target is the kernel's and the machine's.
//!
//! The stop: an eventfd in the epoll set, written by the waker that [`Stop::wait`] is
//! polled with, so stopping costs nothing while serving.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use super::common::epoll::{recv, send, Epoll, SOCKET};
use super::http_hello;
use super::servers::{Ready, Stop};

/// Each connection's read buffer, as the tokio server's.
const READ_BUF: usize = 8 * 1024;
/// The initial capacity of each connection's response buffer, as the tokio server's.
const WRITE_BUF: usize = 4 * 1024;
/// Events per `epoll_wait`, as the load generator's.
const EVENTS: usize = 256;
/// How long a closing connection reads and discards what the client still sends.
const LINGER: Duration = Duration::from_secs(1);
/// The epoll keys of the stop eventfd and the listener; connections use their slot.
const STOP_KEY: u64 = u64::MAX;
const LISTENER_KEY: u64 = u64::MAX - 1;

/// The waker of the stop: writes to an eventfd that is in the epoll set.
struct StopWaker(OwnedFd);

impl Wake for StopWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of `one`, which outlives the call, to an eventfd we
        // own; a full counter (EAGAIN) still leaves it readable, which is all we need.
        let _ = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// One connection.
struct Conn {
    fd: OwnedFd,
    rbuf: Vec<u8>,
    /// The responses to the last read; `wbuf[sent..]` is still to be sent.
    wbuf: Vec<u8>,
    sent: usize,
    /// The start of a request split across reads (empty in the steady state).
    pending: Vec<u8>,
    /// Readiness as last reported and not since used up (a short or `EAGAIN` read or
    /// write clears it).
    readable: bool,
    writable: bool,
    /// The peer's end of stream, a hang-up or an error was reported: they stay, as in
    /// tokio, so the next read or write sees them whatever it used up before.
    read_closed: bool,
    write_closed: bool,
    /// Close once `wbuf` is sent: end of stream, then linger.
    closing: bool,
    /// Ended its stream: reads are discarded until end of stream, an error or the
    /// deadline.
    lingering: bool,
    /// Tells this connection from a later one in the same slot.
    serial: u64,
}

/// What to do with a connection after [`drive`].
enum Next {
    /// Wait for the next readiness event.
    Wait,
    /// Close it.
    Close,
}

/// Go on with `c` as far as its readiness allows: send what is left of its responses,
/// then read, answer and send, until the socket has nothing more to read or no room to
/// write; a lingering connection only reads and discards.
fn drive(c: &mut Conn) -> Next {
    loop {
        // The responses first: the tokio server reads again only after `write_all`.
        while c.sent < c.wbuf.len() {
            if !c.writable {
                return Next::Wait;
            }
            match send(c.fd.as_raw_fd(), &c.wbuf[c.sent..]) {
                Ok(n) => {
                    // A short write filled the socket (as tokio reads it): EPOLLOUT resumes.
                    if c.sent + n < c.wbuf.len() {
                        c.writable = c.write_closed;
                    }
                    c.sent += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = c.write_closed,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        if c.closing && !c.lingering {
            // SAFETY: shutdown of a socket we own; an error only means it is gone.
            unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_WR) };
            c.lingering = true;
        }
        if !c.readable {
            return Next::Wait;
        }
        let n = match recv(c.fd.as_raw_fd(), &mut c.rbuf) {
            Ok(0) => return Next::Close,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                c.readable = c.read_closed;
                return Next::Wait;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Next::Close,
        };
        // A short read emptied the socket: data that arrives later raises a new edge.
        if n < c.rbuf.len() {
            c.readable = c.read_closed;
        }
        if c.lingering {
            continue;
        }
        // As `servers::tokio_conn`.
        c.wbuf.clear();
        c.sent = 0;
        c.closing = if c.pending.is_empty() {
            let a = http_hello::answer(&c.rbuf[..n], &mut c.wbuf);
            if !a.close {
                c.pending.extend_from_slice(&c.rbuf[a.consumed..n]);
            }
            a.close
        } else {
            c.pending.extend_from_slice(&c.rbuf[..n]);
            let a = http_hello::answer(&c.pending, &mut c.wbuf);
            c.pending.drain(..a.consumed);
            a.close
        };
    }
}

/// Accept one connection: Ok(None) once there is none left (`EAGAIN`); errors about one
/// connection are skipped, as in the tokio server.
fn accept(listener: RawFd) -> io::Result<Option<OwnedFd>> {
    loop {
        // SAFETY: null address pointers are allowed (the peer's address is not wanted).
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: a new descriptor that nothing else owns.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            ErrorKind::WouldBlock => return Ok(None),
            ErrorKind::Interrupted | ErrorKind::ConnectionAborted => {}
            _ => return Err(e),
        }
    }
}

/// Serve on `listener` from the calling thread until `stop` fires.
pub fn serve(listener: std::net::TcpListener, stop: &Stop, ready: &Ready) -> Result<(), String> {
    let ep = Epoll::new().map_err(|e| format!("epoll_create1: {e}"))?;
    // SAFETY: eventfd has no memory preconditions.
    let efd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if efd < 0 {
        return Err(format!("eventfd: {}", io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    ep.add(efd.as_raw_fd(), libc::EPOLLIN | libc::EPOLLET, STOP_KEY)
        .map_err(|e| format!("epoll_ctl: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("nonblocking: {e}"))?;
    ep.add(
        listener.as_raw_fd(),
        libc::EPOLLIN | libc::EPOLLET,
        LISTENER_KEY,
    )
    .map_err(|e| format!("epoll_ctl: {e}"))?;
    let waker = Waker::from(Arc::new(StopWaker(efd)));
    let mut cx = Context::from_waker(&waker);
    let mut stopped = pin!(stop.wait());
    let _ = ready.send(Ok(()));

    let mut conns: Vec<Option<Conn>> = Vec::new();
    // Free slots; those freed during a batch of events join after it, so that a later
    // event of the batch for a closed connection cannot reach a new one.
    let mut free: Vec<usize> = Vec::new();
    let mut freed: Vec<usize> = Vec::new();
    // Lingering connections' deadlines (slot, serial), earliest first.
    let mut lingering: VecDeque<(Instant, usize, u64)> = VecDeque::new();
    let mut serial: u64 = 0;
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        if stopped.as_mut().poll(&mut cx).is_ready() {
            return Ok(());
        }
        let timeout = lingering.front().map(|&(at, _, _)| {
            let left = at.saturating_duration_since(Instant::now());
            // Rounded up to whole milliseconds: waking before the deadline would only
            // wait again.
            Duration::from_millis(left.as_micros().div_ceil(1000) as u64)
        });
        let n = ep
            .wait(&mut evs, timeout)
            .map_err(|e| format!("server: epoll_wait: {e}"))?;
        for ev in &evs[..n] {
            let (key, events) = (ev.u64, ev.events as i32);
            if key == STOP_KEY {
                if stopped.as_mut().poll(&mut cx).is_ready() {
                    return Ok(());
                }
                continue;
            }
            if key == LISTENER_KEY {
                while let Some(fd) =
                    accept(listener.as_raw_fd()).map_err(|e| format!("server: accept: {e}"))?
                {
                    // Nagle off, as every server of the bench; a failure only costs latency.
                    let _ = socket2::SockRef::from(&fd).set_tcp_nodelay(true);
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    ep.add(fd.as_raw_fd(), SOCKET, slot as u64)
                        .map_err(|e| format!("server: epoll_ctl: {e}"))?;
                    serial += 1;
                    conns[slot] = Some(Conn {
                        fd,
                        rbuf: vec![0u8; READ_BUF],
                        wbuf: Vec::with_capacity(WRITE_BUF),
                        sent: 0,
                        pending: Vec::new(),
                        // The first event says what the socket is ready for.
                        readable: false,
                        writable: false,
                        read_closed: false,
                        write_closed: false,
                        closing: false,
                        lingering: false,
                        serial,
                    });
                }
                continue;
            }
            let slot = key as usize;
            let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue; // closed earlier in this batch
            };
            if events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                c.read_closed = true;
            }
            if events & (libc::EPOLLHUP | libc::EPOLLERR) != 0 {
                c.write_closed = true;
            }
            c.readable |= c.read_closed || events & libc::EPOLLIN != 0;
            c.writable |= c.write_closed || events & libc::EPOLLOUT != 0;
            let was_lingering = c.lingering;
            match drive(c) {
                Next::Wait => {
                    if c.lingering && !was_lingering {
                        lingering.push_back((Instant::now() + LINGER, slot, c.serial));
                    }
                }
                Next::Close => {
                    // Closing the descriptor also takes it out of the epoll set.
                    conns[slot] = None;
                    freed.push(slot);
                }
            }
        }
        // Lingering connections past their deadline.
        if !lingering.is_empty() {
            let now = Instant::now();
            while let Some(&(at, slot, s)) = lingering.front() {
                if at > now {
                    break;
                }
                lingering.pop_front();
                if conns[slot].as_ref().is_some_and(|c| c.serial == s) {
                    conns[slot] = None;
                    freed.push(slot);
                }
            }
        }
        free.append(&mut freed);
    }
}
