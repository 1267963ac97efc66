//! The raw epoll reference, written directly on libc: one epoll instance per thread, each
//! socket registered once, edge-triggered, for reading and writing. It makes the syscalls
//! tokio and xev's poll backend make per message (one `recv`, one `send`; a `recv` that
//! fills less than the buffer has drained the socket, so no `EAGAIN` attempt follows) and
//! does nothing else: what an epoll runtime could reach at best on this kernel.

use super::*;
use std::os::fd::{FromRawFd, OwnedFd};

/// Events taken per `epoll_wait` (tokio's default capacity).
const EVENTS: usize = 1024;

struct Conn {
    fd: RawFd,
    rbuf: Box<[u8]>,
    /// Bytes still to send (after a short send); sent on the write edge.
    unsent: Vec<u8>,
    /// Client: reply bytes received toward the current message.
    got: usize,
    /// Server: end of file seen.
    closed: bool,
}

impl Conn {
    fn new(fd: RawFd) -> Conn {
        Conn {
            fd,
            rbuf: vec![0u8; RECV_BUF].into_boxed_slice(),
            unsent: Vec::with_capacity(RECV_BUF),
            got: 0,
            closed: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        send_or_keep(self.fd, &mut self.unsent, bytes)
    }

    /// On a write edge: send what a short send left.
    fn flush(&mut self) -> io::Result<()> {
        if self.unsent.is_empty() {
            return Ok(());
        }
        let n = send_some(self.fd, &self.unsent)?;
        self.unsent.drain(..n);
        Ok(())
    }

    /// One `recv` into `rbuf`: `Some(n)` bytes (0 is end of file), `None` on would-block.
    fn recv(&mut self) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: `rbuf` is an owned buffer of `RECV_BUF` bytes that outlives the call.
            let n = unsafe { libc::recv(self.fd, self.rbuf.as_mut_ptr().cast(), RECV_BUF, 0) };
            if n >= 0 {
                return Ok(Some(n as usize));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock => return Ok(None),
                io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
    }
}

/// Send `bytes` after whatever is still `unsent`; keep what the socket does not take.
fn send_or_keep(fd: RawFd, unsent: &mut Vec<u8>, bytes: &[u8]) -> io::Result<()> {
    if !unsent.is_empty() {
        unsent.extend_from_slice(bytes);
        return Ok(());
    }
    let n = send_some(fd, bytes)?;
    unsent.extend_from_slice(&bytes[n..]);
    Ok(())
}

/// One `send` of `bytes`: how many the socket took (0 on would-block).
fn send_some(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `bytes` is a live slice for the duration of the call.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(0),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}

/// An epoll instance with every connection registered (data: its index), edge-triggered.
fn epoll_for(conns: &[Conn]) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the result is checked before use.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a new descriptor that nothing else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        // SAFETY: `ep` and `c.fd` are open descriptors (the sockets outlive this loop);
        // `ev` is a valid event for the call.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, c.fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(ep)
}

/// Wait for events and hand each (connection index, readable, writable) to `on_event`,
/// until `done` says so.
fn run(
    conns: &mut [Conn],
    mut on_event: impl FnMut(&mut [Conn], usize, bool, bool) -> io::Result<()>,
    mut done: impl FnMut(&[Conn]) -> bool,
) -> io::Result<()> {
    let ep = epoll_for(conns)?;
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    while !done(conns) {
        // SAFETY: `events` has room for `EVENTS` entries; `ep` is open.
        let n = unsafe { libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let bits = ev.events as i32;
            let readable =
                bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) != 0;
            let writable = bits & (libc::EPOLLOUT | libc::EPOLLERR) != 0;
            on_event(conns, ev.u64 as usize, readable, writable)?;
        }
    }
    Ok(())
}

pub(super) fn client(socks: &[TcpStream], ctr: &Counter, msg: &'static [u8]) {
    let mut conns: Vec<Conn> = socks.iter().map(|s| Conn::new(s.as_raw_fd())).collect();
    // Messages sent whose reply has not fully arrived.
    let mut waiting = 0usize;
    for c in &mut conns {
        if !ctr.claim() {
            break;
        }
        if let Err(e) = c.send(msg) {
            return ctr.fail(format!("client send: {e}"));
        }
        waiting += 1;
    }
    let waiting = Cell::new(waiting);
    let r = run(
        &mut conns,
        |conns, i, readable, writable| {
            let c = &mut conns[i];
            if writable {
                c.flush()?;
            }
            if !readable {
                return Ok(());
            }
            while let Some(n) = c.recv()? {
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of file"));
                }
                c.got += n;
                while c.got >= msg.len() {
                    c.got -= msg.len();
                    ctr.complete();
                    waiting.set(waiting.get() - 1);
                    if ctr.claim() {
                        c.send(msg)?;
                        waiting.set(waiting.get() + 1);
                    }
                }
                if n < RECV_BUF {
                    break; // drained: wait for the next edge
                }
            }
            Ok(())
        },
        |_| waiting.get() == 0,
    );
    if let Err(e) = r {
        ctr.fail(format!("client: {e}"));
    }
}

pub(super) fn server(socks: &[TcpStream], ctr: &Counter) {
    let mut conns: Vec<Conn> = socks.iter().map(|s| Conn::new(s.as_raw_fd())).collect();
    let open = Cell::new(conns.len());
    let r = run(
        &mut conns,
        |conns, i, readable, writable| {
            let c = &mut conns[i];
            if c.closed {
                return Ok(());
            }
            if writable {
                c.flush()?;
            }
            if !readable {
                return Ok(());
            }
            while let Some(n) = c.recv()? {
                if n == 0 {
                    // End of file: the client is done with this connection.
                    c.closed = true;
                    open.set(open.get() - 1);
                    break;
                }
                let Conn {
                    fd, rbuf, unsent, ..
                } = c;
                send_or_keep(*fd, unsent, &rbuf[..n])?;
                if n < RECV_BUF {
                    break; // drained: wait for the next edge
                }
            }
            Ok(())
        },
        |_| open.get() == 0,
    );
    if let Err(e) = r {
        ctr.fail(format!("server: {e}"));
    }
}
