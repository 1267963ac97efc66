//! xev variants of the ping-pong, on the callback API. Per connection: one recv completion
//! that always rearms, and one persistent send completion that the recv callback re-adds
//! (its op and callback are set once; only the bytes change on the server).

use super::*;

/// What a client send callback needs (it must not own the send completion: no cycle).
struct XcFlags {
    /// A reply arrived while the previous send was still Active: resend when it finishes.
    want_send: Cell<bool>,
    ctr: Rc<Counter>,
    msg: &'static [u8],
}

/// What a client recv callback needs.
struct XcConn {
    fd: RawFd,
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<XcFlags>,
    got: Cell<usize>,
}

fn xev_client_recv(lp: &mut Loop, r: OpResult, conn: &XcConn) -> CallbackAction {
    let n = match r {
        OpResult::Recv(Ok(n)) => n,
        other => {
            conn.flags.ctr.fail(format!("client recv: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let msg_len = conn.flags.msg.len();
    let mut got = conn.got.get() + n;
    let mut action = CallbackAction::Rearm;
    while got >= msg_len {
        got -= msg_len;
        conn.flags.ctr.complete();
        if conn.flags.ctr.claim() {
            let mut send = conn.send.borrow_mut();
            if send.state() == CompletionState::Dead {
                lp.add(send.as_mut());
            } else {
                conn.flags.want_send.set(true);
            }
        } else {
            action = CallbackAction::Disarm;
        }
    }
    conn.got.set(got);
    action
}

fn xev_client_sent(mut c: Pin<&mut Completion>, r: OpResult, f: &XcFlags) -> CallbackAction {
    let n = match r {
        OpResult::Send(Ok(n)) => n,
        other => {
            f.ctr.fail(format!("client send: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let buf = c
        .as_mut()
        .op_mut()
        .and_then(Op::buffer_mut)
        .expect("send buffer");
    if n < buf.len() {
        advance(buf, n);
        return CallbackAction::Rearm;
    }
    if buf.len() != f.msg.len() {
        // Restore the message after a short send (never allocates: within capacity).
        buf.set_len(f.msg.len());
        buf.as_mut_slice().copy_from_slice(f.msg);
    }
    if f.want_send.replace(false) {
        CallbackAction::Rearm
    } else {
        CallbackAction::Disarm
    }
}

pub(crate) fn xev_client(
    backend: Backend,
    socks: &[TcpStream],
    ctr: &Rc<Counter>,
    msg: &'static [u8],
) {
    // Declared before the loop so that they are dropped after it (the loop's drop leaves
    // every completion Dead).
    let mut recvs: Vec<Pin<Box<Completion>>> = Vec::with_capacity(socks.len());
    let mut conns: Vec<Rc<XcConn>> = Vec::with_capacity(socks.len());
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return ctr.fail(format!("Loop::new: {e}")),
    };
    for s in socks {
        let fd = s.as_raw_fd();
        let flags = Rc::new(XcFlags {
            want_send: Cell::new(false),
            ctr: ctr.clone(),
            msg,
        });
        let mut send = Box::pin(Completion::new());
        let f = flags.clone();
        send.as_mut().prep(
            Op::Send {
                fd,
                buf: Buffer::from(msg.to_vec()),
            },
            move |_lp, c, r| xev_client_sent(c, r, &f),
        );
        conns.push(Rc::new(XcConn {
            fd,
            send: RefCell::new(send),
            flags,
            got: Cell::new(0),
        }));
        recvs.push(Box::pin(Completion::new()));
    }
    for (conn, recv) in conns.iter().zip(recvs.iter_mut()) {
        if !ctr.claim() {
            break;
        }
        lp.add(conn.send.borrow_mut().as_mut());
        let cc = conn.clone();
        lp.start(
            recv.as_mut(),
            Op::Recv {
                fd: conn.fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |lp, _c, r| xev_client_recv(lp, r, &cc),
        );
    }
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("client run: {e}"));
    }
    drop(lp);
}

/// What a server send callback needs.
struct XsFlags {
    /// Bytes received while the echo send was still Active (never in steady state).
    pending: RefCell<Vec<u8>>,
    ctr: Rc<Counter>,
}

struct XsConn {
    send: RefCell<Pin<Box<Completion>>>,
    flags: Rc<XsFlags>,
}

fn xev_server_recv(
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: OpResult,
    conn: &XsConn,
) -> CallbackAction {
    let n = match r {
        OpResult::Recv(Ok(n)) => n,
        OpResult::Recv(Err(ReadError::Eof)) => return CallbackAction::Disarm,
        other => {
            conn.flags.ctr.fail(format!("server recv: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let data = &c.buffer().expect("recv buffer").as_slice()[..n];
    let mut send = conn.send.borrow_mut();
    if send.state() == CompletionState::Dead {
        let buf = send
            .as_mut()
            .op_mut()
            .and_then(Op::buffer_mut)
            .expect("send buffer");
        buf.set_len(n);
        buf.as_mut_slice().copy_from_slice(data);
        lp.add(send.as_mut());
    } else {
        conn.flags.pending.borrow_mut().extend_from_slice(data);
    }
    CallbackAction::Rearm
}

fn xev_server_sent(mut c: Pin<&mut Completion>, r: OpResult, f: &XsFlags) -> CallbackAction {
    let n = match r {
        OpResult::Send(Ok(n)) => n,
        other => {
            f.ctr.fail(format!("server send: {other:?}"));
            return CallbackAction::Disarm;
        }
    };
    let buf = c
        .as_mut()
        .op_mut()
        .and_then(Op::buffer_mut)
        .expect("send buffer");
    if n < buf.len() {
        advance(buf, n);
        return CallbackAction::Rearm;
    }
    let mut pending = f.pending.borrow_mut();
    if pending.is_empty() {
        return CallbackAction::Disarm;
    }
    let k = pending.len().min(RECV_BUF);
    buf.set_len(k);
    buf.as_mut_slice().copy_from_slice(&pending[..k]);
    pending.drain(..k);
    CallbackAction::Rearm
}

pub(crate) fn xev_server(backend: Backend, socks: &[TcpStream], ctr: &Rc<Counter>) {
    let mut recvs: Vec<Pin<Box<Completion>>> = Vec::with_capacity(socks.len());
    let mut conns: Vec<Rc<XsConn>> = Vec::with_capacity(socks.len());
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return ctr.fail(format!("Loop::new: {e}")),
    };
    for s in socks {
        let fd = s.as_raw_fd();
        let flags = Rc::new(XsFlags {
            pending: RefCell::new(Vec::with_capacity(RECV_BUF)),
            ctr: ctr.clone(),
        });
        let mut send = Box::pin(Completion::new());
        let f = flags.clone();
        send.as_mut().prep(
            Op::Send {
                fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |_lp, c, r| xev_server_sent(c, r, &f),
        );
        let conn = Rc::new(XsConn {
            send: RefCell::new(send),
            flags,
        });
        let mut recv = Box::pin(Completion::new());
        let cc = conn.clone();
        lp.start(
            recv.as_mut(),
            Op::Recv {
                fd,
                buf: Buffer::from(vec![0u8; RECV_BUF]),
            },
            move |lp, c, r| xev_server_recv(lp, c, r, &cc),
        );
        recvs.push(recv);
        conns.push(conn);
    }
    if let Err(e) = lp.run(RunMode::UntilDone) {
        ctr.fail(format!("server run: {e}"));
    }
    drop(lp);
}
