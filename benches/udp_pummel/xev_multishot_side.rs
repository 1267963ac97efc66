//! xev receiver on the callback API with a multishot receive: one `Op::RecvMulti` over a
//! loop-owned buffer group (a provided-buffer ring on io_uring), rearmed after every
//! datagram; the datagram's buffer goes back to the group when the callback's lease
//! drops. One SQE serves every datagram while the kernel keeps it alive.

use super::*;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use xev::{CallbackAction, Completion, Loop, Op, OpResult, Options, ReadError, RunMode};

/// Buffers in the group, and their size (any loopback datagram up to the MTU fits).
const BUFFERS: u16 = 256;
const BUFFER_SIZE: u32 = 2048;

pub(crate) fn receive(backend: Backend, sock: UdpSocket, rx: &Rc<Rx>) {
    // Declared before the loop so that they are dropped after it.
    let mut recv = Box::pin(Completion::new());
    let fd = OwnedFd::from(sock);
    let mut lp = match Loop::new(Options {
        backend: Some(backend),
        entries: ENTRIES,
        ..Options::default()
    }) {
        Ok(lp) => lp,
        Err(e) => return rx.fail(format!("Loop::new: {e}")),
    };
    let group = match lp.register_buffer_group(BUFFERS, BUFFER_SIZE) {
        Ok(g) => g,
        Err(e) => return rx.fail(format!("register_buffer_group: {e}")),
    };
    let r = rx.clone();
    lp.start(
        recv.as_mut(),
        Op::RecvMulti {
            fd: fd.as_raw_fd(),
            group,
        },
        move |_, _, res| match res {
            OpResult::RecvMulti(Ok(buf)) => {
                if r.datagram(&buf) {
                    CallbackAction::Rearm
                } else {
                    CallbackAction::Disarm
                }
            }
            // Every buffer lent out (cannot happen here: each lease drops in its
            // callback); the data is still queued, so go on.
            OpResult::RecvMulti(Err(ReadError::Io(e)))
                if e.raw_os_error() == Some(libc::ENOBUFS) =>
            {
                CallbackAction::Rearm
            }
            other => {
                r.fail(format!("recv: {other:?}"));
                CallbackAction::Disarm
            }
        },
    );
    if let Err(e) = lp.run(RunMode::UntilDone) {
        rx.fail(format!("run: {e}"));
    }
    drop(lp);
    drop(fd);
}
