//! The raw epoll reference, written directly on libc: one epoll instance per thread, each
//! socket registered once, edge-triggered, for reading and writing. It makes the syscalls
//! tokio and xev's poll backend make per message (one `recv`, one `send`; a `recv` that
//! fills less than the buffer has drained the socket, so no `EAGAIN` attempt follows) and
//! does nothing else: what an epoll runtime could reach at best on this kernel.

use super::*;
use common::epoll::{self, Epoll, SOCKET};

/// Events taken per `epoll_wait` (tokio's default capacity).
const EVENTS: usize = 1024;

struct Conn {
    fd: RawFd,
    rbuf: Box<[u8]>,
    /// Bytes still to send (after a short send); sent on the write edge.
    unsent: Vec<u8>,
    /// Client: reply bytes received toward the current message.
    got: usize,
    /// End of file seen (the server's side): no more events for it.
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
            match epoll::recv(self.fd, &mut self.rbuf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
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
        match epoll::send(fd, bytes) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Wait for events until `done` says so. On each event of an open connection: send what
/// a short send left (write edge), then receive until the socket is drained (read edge),
/// handing each receive's byte count (0: end of file) to `on_data`, which says whether to
/// go on reading.
fn run(
    conns: &mut [Conn],
    mut on_data: impl FnMut(&mut Conn, usize) -> io::Result<bool>,
    mut done: impl FnMut(&[Conn]) -> bool,
) -> io::Result<()> {
    let ep = Epoll::new()?;
    for (i, c) in conns.iter().enumerate() {
        ep.add(c.fd, SOCKET, i as u64)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    while !done(conns) {
        let n = ep.wait(&mut events, None)?;
        for ev in &events[..n] {
            let c = &mut conns[ev.u64 as usize];
            let bits = ev.events as i32;
            if c.closed {
                continue;
            }
            if bits & (libc::EPOLLOUT | libc::EPOLLERR) != 0 {
                c.flush()?;
            }
            if bits & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) == 0 {
                continue;
            }
            while let Some(n) = c.recv()? {
                // A receive shorter than the buffer drained the socket: wait for the next edge.
                if !on_data(c, n)? || n < RECV_BUF {
                    break;
                }
            }
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
        |c, n| {
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
            Ok(true)
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
        |c, n| {
            if n == 0 {
                // End of file: the client is done with this connection.
                c.closed = true;
                open.set(open.get() - 1);
                return Ok(false);
            }
            let Conn {
                fd, rbuf, unsent, ..
            } = c;
            send_or_keep(*fd, unsent, &rbuf[..n])?;
            Ok(true)
        },
        |_| open.get() == 0,
    );
    if let Err(e) = r {
        ctr.fail(format!("server: {e}"));
    }
}
