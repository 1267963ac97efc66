//! xev variants of the UDP ping-pong, on the callback API (the `xev::Udp` watcher, as
//! libxev's ping-udp1 uses `xev.UDP`): per socket one read completion that always rearms
//! (`recvmsg`), and one send completion that the read callback starts with `write`
//! (`sendmsg` to an address; the datagram is copied into the completion's inline buffer,
//! so nothing is allocated).

use super::*;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use xev::{
    Buffer, CallbackAction, Completion, CompletionState, Error, Loop, Op, Options, ReadError,
    RunMode, Udp,
};

fn new_loop(backend: Backend, ctr: &Counter) -> Option<Loop> {
    match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => Some(lp),
        Err(e) => {
            ctr.fail(format!("Loop::new: {e}"));
            None
        }
    }
}

/// What the client's send callback needs (it must not own the send completion: no cycle).
struct ClientFlags {
    /// A pong arrived while the previous ping's send was still Active: resend when it
    /// finishes (never in steady state).
    want_send: Cell<bool>,
    ctr: Rc<Counter>,
}

/// What the client's read callback needs.
struct ClientConn {
    udp: Udp,
    to: SocketAddr,
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<ClientFlags>,
}

fn client_sent(
    f: &mut Rc<ClientFlags>,
    _lp: &mut Loop,
    _c: Pin<&mut Completion>,
    r: Result<usize, Error>,
) -> CallbackAction {
    match r {
        Ok(n) if n == PING.len() => {}
        Ok(n) => {
            f.ctr
                .fail(format!("client send: {n} of {} bytes", PING.len()));
            return CallbackAction::Disarm;
        }
        Err(e) => {
            f.ctr.fail(format!("client send: {e}"));
            return CallbackAction::Disarm;
        }
    }
    if f.want_send.replace(false) {
        CallbackAction::Rearm
    } else {
        CallbackAction::Disarm
    }
}

fn send_ping(lp: &mut Loop, conn: &ClientConn) {
    let mut send = conn.send.borrow_mut();
    if send.state() == CompletionState::Dead {
        conn.udp.write(
            lp,
            send.as_mut(),
            conn.to,
            Buffer::copy_from(PING),
            conn.flags.clone(),
            client_sent,
        );
    } else {
        conn.flags.want_send.set(true);
    }
}

fn client_recv(
    conn: &mut Rc<ClientConn>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<(usize, Option<SocketAddr>), ReadError>,
) -> CallbackAction {
    let ctr = &conn.flags.ctr;
    let n = match r {
        Ok((n, _)) => n,
        Err(e) => {
            ctr.fail(format!("client recv: {e}"));
            return CallbackAction::Disarm;
        }
    };
    if let Err(e) = check_pong(&c.buffer().expect("recv buffer").as_slice()[..n]) {
        ctr.fail(e);
        return CallbackAction::Disarm;
    }
    ctr.complete();
    if !ctr.claim() {
        return CallbackAction::Disarm;
    }
    send_ping(lp, conn);
    CallbackAction::Rearm
}

pub(crate) fn client(backend: Backend, sock: UdpSocket, to: SocketAddr, ctr: &Rc<Counter>) {
    // Declared before the loop so that it is dropped after it (the loop's drop leaves
    // every completion Dead).
    let mut recv = Box::pin(Completion::new());
    let Some(mut lp) = new_loop(backend, ctr) else {
        return;
    };
    let conn = Rc::new(ClientConn {
        udp: Udp::from(OwnedFd::from(sock)),
        to,
        send: RefCell::new(Box::pin(Completion::new())),
        flags: Rc::new(ClientFlags {
            want_send: Cell::new(false),
            ctr: ctr.clone(),
        }),
    });
    conn.udp.read(
        &mut lp,
        recv.as_mut(),
        Buffer::from(vec![0u8; RECV_BUF]),
        conn.clone(),
        client_recv,
    );
    if ctr.claim() {
        send_ping(&mut lp, &conn);
    }
    drop(conn);
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("client run: {e}"));
    }
    drop(lp);
}

/// What the server's send callback needs.
struct ServerFlags {
    /// Datagrams received while the echo send was still Active (never in steady state).
    pending: RefCell<Vec<(SocketAddr, Vec<u8>)>>,
    ctr: Rc<Counter>,
}

struct ServerConn {
    udp: Udp,
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<ServerFlags>,
}

fn server_sent(
    f: &mut Rc<ServerFlags>,
    _lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, Error>,
) -> CallbackAction {
    if let Err(e) = r {
        f.ctr.fail(format!("server send: {e}"));
        return CallbackAction::Disarm;
    }
    let mut pending = f.pending.borrow_mut();
    if pending.is_empty() {
        return CallbackAction::Disarm;
    }
    let (to, data) = pending.remove(0);
    if let Some(Op::SendMsg { buf, addr, .. }) = c.op_mut() {
        *buf = Buffer::copy_from(&data);
        *addr = Some(to);
    }
    CallbackAction::Rearm
}

fn server_recv(
    conn: &mut Rc<ServerConn>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<(usize, Option<SocketAddr>), ReadError>,
) -> CallbackAction {
    let ctr = &conn.flags.ctr;
    let (n, from) = match r {
        Ok((0, _)) => return CallbackAction::Disarm, // the stop signal
        Ok((n, Some(from))) => (n, from),
        Ok((_, None)) => {
            ctr.fail("server recv: no sender address".into());
            return CallbackAction::Disarm;
        }
        Err(e) => {
            ctr.fail(format!("server recv: {e}"));
            return CallbackAction::Disarm;
        }
    };
    let data = &c.buffer().expect("recv buffer").as_slice()[..n];
    let mut send = conn.send.borrow_mut();
    if send.state() == CompletionState::Dead {
        conn.udp.write(
            lp,
            send.as_mut(),
            from,
            Buffer::copy_from(data),
            conn.flags.clone(),
            server_sent,
        );
    } else {
        conn.flags.pending.borrow_mut().push((from, data.to_vec()));
    }
    CallbackAction::Rearm
}

pub(crate) fn server(backend: Backend, sock: UdpSocket, ctr: &Rc<Counter>) {
    let mut recv = Box::pin(Completion::new());
    let Some(mut lp) = new_loop(backend, ctr) else {
        return;
    };
    let conn = Rc::new(ServerConn {
        udp: Udp::from(OwnedFd::from(sock)),
        send: RefCell::new(Box::pin(Completion::new())),
        flags: Rc::new(ServerFlags {
            pending: RefCell::new(Vec::new()),
            ctr: ctr.clone(),
        }),
    });
    conn.udp.read(
        &mut lp,
        recv.as_mut(),
        Buffer::from(vec![0u8; RECV_BUF]),
        conn.clone(),
        server_recv,
    );
    drop(conn);
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("server run: {e}"));
    }
    drop(lp);
}
