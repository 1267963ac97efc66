//! xev receivers on the callback API: the `xev::Udp` watcher's `read` (`recvmsg` into one
//! 64 KiB buffer), rearmed after every datagram, as libxev's receiver does.

use super::*;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use xev::{Buffer, CallbackAction, Completion, Loop, Options, ReadError, RunMode, Udp};

fn on_datagram(
    rx: &mut Rc<Rx>,
    _lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<(usize, Option<std::net::SocketAddr>), ReadError>,
) -> CallbackAction {
    let n = match r {
        Ok((n, _)) => n,
        Err(e) => {
            rx.fail(format!("recv: {e}"));
            return CallbackAction::Disarm;
        }
    };
    if rx.datagram(&c.buffer().expect("recv buffer").as_slice()[..n]) {
        CallbackAction::Rearm
    } else {
        CallbackAction::Disarm
    }
}

pub(crate) fn receive(backend: Backend, sock: UdpSocket, rx: &Rc<Rx>) {
    // Declared before the loop so that they are dropped after it.
    let mut recv = Box::pin(Completion::new());
    let udp = Udp::from(OwnedFd::from(sock));
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return rx.fail(format!("Loop::new: {e}")),
    };
    udp.read(
        &mut lp,
        recv.as_mut(),
        Buffer::from(vec![0u8; RECV_BUF]),
        rx.clone(),
        on_datagram,
    );
    if let Err(e) = lp.run(RunMode::UntilDone) {
        rx.fail(format!("run: {e}"));
    }
    drop(lp);
}
