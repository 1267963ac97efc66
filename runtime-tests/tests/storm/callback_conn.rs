//! The callback storm's connection ends: reads, writes (one at a time or all queued),
//! shutdown, close, cancels, and the connect that starts a client end.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;

use xev::watcher::stream::WriteQueue;
use xev::{
    Buffer, CallbackAction, CancelError, Completion, CompletionState, Error, Loop, OpResult,
    ReadError,
};

use crate::callback::{end_parts, live_end, CbCore, CbWorld, Ctx, End, EndCs, EndSt};
use crate::common::*;
use crate::ledger::end_name;
use crate::receiver::Receiver;
use crate::{skipped, CHUNK_MAX, READ_MAX};

pub(crate) fn cb_read(
    core: &mut CbCore,
    st: &mut EndSt,
    ctx: &Ctx,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
) {
    let len = core.rng.range(1, READ_MAX) as usize;
    st.reading = true;
    core.ledger.stats.bump("reads");
    let sock = st.sock.as_ref().expect("an open socket");
    sock.read(lp, c, Buffer::from(vec![0u8; len]), ctx.clone(), cb_on_read);
}

/// Handle received bytes; false if they were wrong (the failure is recorded).
fn cb_receive(core: &mut CbCore, st: &mut EndSt, data: &[u8]) -> bool {
    if st.rx.is_none() {
        st.hdr.extend_from_slice(data);
        if st.hdr.len() < 8 {
            return true;
        }
        let first: [u8; 8] = st.hdr[..8].try_into().unwrap();
        match core.ledger.claim(first) {
            Ok(id) => {
                st.id = id;
                st.total = core.ledger.rec(id).total[SERVER as usize];
                core.ledger.rec(id).fd[SERVER as usize] = st.fd;
                core.ledger.log(st.fd, id, SERVER, "claimed its connection");
                st.rx = Some(Receiver::new(id, CLIENT));
                let hdr = std::mem::take(&mut st.hdr);
                return cb_feed(core, st, &hdr);
            }
            Err(e) => {
                core.ledger.fail(e);
                return false;
            }
        }
    }
    cb_feed(core, st, data)
}

fn cb_feed(core: &mut CbCore, st: &mut EndSt, data: &[u8]) -> bool {
    let max_id = core.ledger.max_id();
    let id = st.id;
    let peer_total = core.ledger.rec(id).total[1 - st.side as usize];
    let rx = st.rx.as_mut().expect("a receiver");
    match rx.data(data, peer_total, max_id) {
        Ok(()) => {
            let got = rx.got;
            core.ledger.rec(id).received[st.side as usize] = got;
            true
        }
        Err(e) => {
            let msg = format!(
                "callback: the {} end of connection {id}: {e}",
                end_name(st.side)
            );
            core.ledger.suspect(id);
            core.ledger.log(st.fd, id, st.side, "received wrong bytes");
            core.ledger.fail(msg);
            false
        }
    }
}

fn cb_on_read(
    ctx: &mut Ctx,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, ReadError>,
) -> CallbackAction {
    let Some(w) = ctx.w.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let (core, st, cs) = live_end!(&mut guard, ctx, "read");
    st.reading = false;
    match r {
        Ok(n) => {
            core.ledger.stats.add("bytes_read", n as u64);
            let ok = {
                let data = &c.buffer().expect("Dead in its callback").as_slice()[..n];
                cb_receive(core, st, data)
            };
            if !ok {
                cb_close(core, st, cs, ctx, lp, true);
                return CallbackAction::Disarm;
            }
            if st.closing {
                return CallbackAction::Disarm;
            }
            if st.side == SERVER && st.id != 0 && !st.write_started {
                cb_start_writing(core, st, cs, ctx, lp);
            }
            cb_read(core, st, ctx, lp, c);
            // Now and then cancel or cut right after starting the read.
            if core.rng.chance(10) {
                cb_cancel(core, st, cs, ctx, lp, Target::Reader);
            } else if core.rng.chance(3) && st.id != 0 && !skipped("cut") {
                cb_close(core, st, cs, ctx, lp, true);
            }
        }
        Err(ReadError::Eof) => {
            st.read_over = true;
            core.ledger.log(st.fd, st.id, st.side, "read end of stream");
            match &st.rx {
                Some(rx) => core.ledger.eof(st.id, st.side, rx),
                None => core.ledger.anon += 1,
            }
            cb_maybe_close(core, st, cs, ctx, lp);
        }
        Err(ReadError::Canceled) => {
            if !st.closing {
                core.ledger.stats.bump("reads_canceled");
                cb_read(core, st, ctx, lp, c);
            }
        }
        Err(ReadError::Io(e)) => {
            if st.closing {
                return CallbackAction::Disarm;
            }
            st.read_over = true;
            core.ledger.log(st.fd, st.id, st.side, "read failed");
            if st.id == 0 {
                core.ledger.anon += 1;
            } else if core.ledger.peer_error_ok(st.id, st.side) {
                core.ledger.stats.bump("read_errors_after_peer_cut");
            } else {
                let msg = format!(
                    "callback: read on the {} end of connection {} failed: {e} (peer not cut)",
                    end_name(st.side),
                    st.id
                );
                core.ledger.fail(msg);
                cb_close(core, st, cs, ctx, lp, true);
                return CallbackAction::Disarm;
            }
            cb_maybe_close(core, st, cs, ctx, lp);
        }
    }
    CallbackAction::Disarm
}

fn cb_start_writing(core: &mut CbCore, st: &mut EndSt, cs: &mut EndCs, ctx: &Ctx, lp: &mut Loop) {
    st.write_started = true;
    if st.total == 0 {
        core.ledger.log(st.fd, st.id, st.side, "nothing to write");
        return cb_shutdown(core, st, cs, ctx, lp);
    }
    if core.rng.chance(300) && !skipped("queue") {
        // Queue the whole stream at once, in random pieces.
        let q = WriteQueue::new();
        let mut off = 0;
        while off < st.total {
            let len = core.rng.range(1, CHUNK_MAX).min(st.total - off);
            let buf = stream_bytes(st.id, st.side, off, len as usize);
            core.ledger.stats.bump("queued_writes");
            let sock = st.sock.as_ref().expect("an open socket");
            sock.queue_write(lp, &q, Buffer::from(buf), (ctx.clone(), len), cb_on_queued);
            off += len;
        }
        st.queue = Some(q);
        core.ledger
            .log(st.fd, st.id, st.side, "queued all its writes");
    } else {
        core.ledger
            .log(st.fd, st.id, st.side, "writes one at a time");
        cb_write(core, st, ctx, lp, cs.writer.as_mut());
    }
}

fn cb_write(core: &mut CbCore, st: &mut EndSt, ctx: &Ctx, lp: &mut Loop, c: Pin<&mut Completion>) {
    let len = core.rng.range(1, CHUNK_MAX).min(st.total - st.sent);
    let buf = stream_bytes(st.id, st.side, st.sent, len as usize);
    st.writing = true;
    core.ledger.stats.bump("writes");
    let sock = st.sock.as_ref().expect("an open socket");
    sock.write(lp, c, Buffer::from(buf), ctx.clone(), cb_on_write);
}

fn cb_on_write(
    ctx: &mut Ctx,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    r: Result<usize, Error>,
) -> CallbackAction {
    let Some(w) = ctx.w.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let (core, st, cs) = live_end!(&mut guard, ctx, "write");
    st.writing = false;
    if st.closing {
        return CallbackAction::Disarm;
    }
    match r {
        Ok(n) => {
            core.ledger.stats.add("bytes_written", n as u64);
            st.sent += n as u64;
            if st.sent < st.total {
                cb_write(core, st, ctx, lp, c);
                if core.rng.chance(10) {
                    cb_cancel(core, st, cs, ctx, lp, Target::Writer);
                }
            } else {
                cb_shutdown(core, st, cs, ctx, lp);
            }
        }
        Err(Error::Canceled) => {
            // Nothing was sent: send the same bytes again.
            core.ledger.stats.bump("writes_canceled");
            cb_write(core, st, ctx, lp, c);
        }
        Err(Error::Io(e)) => cb_write_failed(core, st, cs, ctx, lp, e),
    }
    CallbackAction::Disarm
}

fn cb_write_failed(
    core: &mut CbCore,
    st: &mut EndSt,
    cs: &mut EndCs,
    ctx: &Ctx,
    lp: &mut Loop,
    e: io::Error,
) {
    core.ledger.log(st.fd, st.id, st.side, "write failed");
    if core.ledger.peer_error_ok(st.id, st.side) {
        core.ledger.stats.bump("write_errors_after_peer_cut");
        core.ledger.rec(st.id).truncated[st.side as usize] = true;
        st.write_over = true;
        cb_maybe_close(core, st, cs, ctx, lp);
    } else {
        let msg = format!(
            "callback: write on the {} end of connection {} failed: {e} (peer not cut); {:?}",
            end_name(st.side),
            st.id,
            core.ledger.rec(st.id)
        );
        core.ledger.suspect(st.id);
        core.ledger.fail(msg);
        cb_close(core, st, cs, ctx, lp, true);
    }
}

fn cb_on_queued(
    ud: &mut (Ctx, u64),
    lp: &mut Loop,
    _buf: &mut Buffer,
    r: Result<usize, Error>,
) -> CallbackAction {
    let (ctx, len) = ud;
    let Some(w) = ctx.w.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let (core, st, cs) = live_end!(&mut guard, ctx, "queued write");
    if st.closing {
        return CallbackAction::Disarm;
    }
    match r {
        Ok(n) => {
            if n as u64 != *len {
                let msg = format!(
                    "callback: a queued write of {len} bytes on connection {} reported {n}",
                    st.id
                );
                core.ledger.fail(msg);
            }
            core.ledger.stats.add("bytes_written", n as u64);
            st.sent += n as u64;
        }
        Err(Error::Canceled) => {
            // A queue cancel (or a failure before it): how much of the request went out
            // is unknown, and the queue fails the rest; the stream stops here.
            core.ledger.stats.bump("queued_writes_canceled");
            core.ledger
                .log(st.fd, st.id, st.side, "queued write canceled");
            core.ledger.rec(st.id).truncated[st.side as usize] = true;
            st.write_over = true;
        }
        Err(Error::Io(e)) => {
            if !st.write_over {
                cb_write_failed(core, st, cs, ctx, lp, e);
            }
            return CallbackAction::Disarm;
        }
    }
    let idle = st.queue.as_ref().is_none_or(WriteQueue::is_empty);
    let all_reported = st.sent == st.total || (st.write_over && idle);
    if all_reported && !st.closing && cs.aux.state() == CompletionState::Dead {
        cb_shutdown(core, st, cs, ctx, lp);
    }
    CallbackAction::Disarm
}

fn cb_shutdown(core: &mut CbCore, st: &mut EndSt, cs: &mut EndCs, ctx: &Ctx, lp: &mut Loop) {
    core.ledger.stats.bump("shutdowns");
    core.ledger
        .log(st.fd, st.id, st.side, "shutdown(Write) issued");
    let sock = st.sock.as_ref().expect("an open socket");
    sock.shutdown(
        lp,
        cs.aux.as_mut(),
        Shutdown::Write,
        ctx.clone(),
        cb_on_shutdown,
    );
}

fn cb_on_shutdown(
    ctx: &mut Ctx,
    lp: &mut Loop,
    _c: Pin<&mut Completion>,
    r: Result<(), Error>,
) -> CallbackAction {
    let Some(w) = ctx.w.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let (core, st, cs) = live_end!(&mut guard, ctx, "shutdown");
    core.ledger
        .log(st.fd, st.id, st.side, "shutdown(Write) finished");
    if st.closing {
        return CallbackAction::Disarm;
    }
    match r {
        Ok(()) => {}
        Err(e) if core.ledger.peer_error_ok(st.id, st.side) => {
            let _ = e;
            core.ledger.stats.bump("shutdown_errors_after_peer_cut");
        }
        Err(e) => {
            let msg = format!("callback: shutdown of connection {} failed: {e}", st.id);
            core.ledger.fail(msg);
        }
    }
    st.write_over = true;
    cb_maybe_close(core, st, cs, ctx, lp);
    CallbackAction::Disarm
}

fn cb_maybe_close(core: &mut CbCore, st: &mut EndSt, cs: &mut EndCs, ctx: &Ctx, lp: &mut Loop) {
    let write_over = st.write_over || (st.side == SERVER && st.id == 0);
    if st.read_over && write_over && !st.closing {
        cb_close(core, st, cs, ctx, lp, false);
    }
}

/// Close the end through the loop (cancelling what is in flight on it); `early` marks it
/// cut.
pub(crate) fn cb_close(
    core: &mut CbCore,
    st: &mut EndSt,
    cs: &mut EndCs,
    ctx: &Ctx,
    lp: &mut Loop,
    early: bool,
) {
    if st.closing {
        return;
    }
    st.closing = true;
    let what = if early {
        "close issued (cut)"
    } else {
        "close issued"
    };
    core.ledger.log(st.fd, st.id, st.side, what);
    if early {
        core.ledger.stats.bump("cuts");
        if st.id != 0 {
            core.ledger.rec(st.id).gone[st.side as usize] = true;
        }
    }
    let sock = st.sock.take().expect("an open socket");
    sock.close(lp, cs.closer.as_mut(), ctx.clone(), |ctx, _lp, _c, r| {
        let Some(w) = ctx.w.upgrade() else {
            return CallbackAction::Disarm;
        };
        let mut guard = w.borrow_mut();
        let (core, st, _cs) = live_end!(&mut guard, ctx, "close");
        st.finished = true;
        core.ledger.log(st.fd, st.id, st.side, "closed");
        if st.id != 0 {
            core.ledger.rec(st.id).done[st.side as usize] = true;
        }
        if let Err(e) = r {
            let msg = format!("callback: close of connection {} failed: {e}", st.id);
            core.ledger.fail(msg);
        }
        CallbackAction::Disarm
    });
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    Reader,
    Writer,
    Connect,
    Queue,
}

/// Cancel one operation of an end (if its canceller is free).
pub(crate) fn cb_cancel(
    core: &mut CbCore,
    st: &mut EndSt,
    cs: &mut EndCs,
    ctx: &Ctx,
    lp: &mut Loop,
    t: Target,
) {
    if st.closing || cs.canceller.state() == CompletionState::Active {
        return;
    }
    let on_cancel = |what: &'static str| {
        move |ctx: &mut Ctx, _: &mut Loop, _: Pin<&mut Completion>, r: Result<(), CancelError>| {
            let Some(w) = ctx.w.upgrade() else {
                return CallbackAction::Disarm;
            };
            let mut guard = w.borrow_mut();
            let core = &mut guard.core;
            match r {
                Ok(()) => core.ledger.stats.bump("cancel_ok"),
                Err(CancelError::NotFound) => core.ledger.stats.bump("cancel_not_found"),
                Err(CancelError::Io(e)) if e.raw_os_error() == Some(libc::EALREADY) => {
                    core.ledger.stats.bump("cancel_already_running")
                }
                Err(e) => core
                    .ledger
                    .fail(format!("callback: cancel of a {what}: {e:?}")),
            }
            CallbackAction::Disarm
        }
    };
    let target: &Completion = match t {
        Target::Reader if st.reading => &cs.reader,
        Target::Writer if st.writing => &cs.writer,
        Target::Connect if st.connecting => &cs.aux,
        Target::Queue => {
            if let Some(q) = &st.queue {
                core.ledger.stats.bump("cancels_issued");
                q.cancel(
                    lp,
                    cs.canceller.as_mut(),
                    ctx.clone(),
                    on_cancel("queued write"),
                );
            }
            return;
        }
        _ => return,
    };
    core.ledger.stats.bump("cancels_issued");
    let cb = on_cancel("connection op");
    let ctx2 = ctx.clone();
    lp.cancel(cs.canceller.as_mut(), target, move |lp, c, r| {
        let r = match r {
            OpResult::Cancel(r) => r,
            other => panic!("a cancel got {other:?}"),
        };
        let mut ctx2 = ctx2.clone();
        cb(&mut ctx2, lp, c, r)
    });
}

pub(crate) fn cb_on_connect(
    ctx: &mut Ctx,
    lp: &mut Loop,
    _c: Pin<&mut Completion>,
    r: Result<(), Error>,
) -> CallbackAction {
    let Some(w) = ctx.w.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let (core, st, cs) = live_end!(&mut guard, ctx, "connect");
    st.connecting = false;
    core.ledger.log(st.fd, st.id, st.side, "connect finished");
    if st.closing {
        return CallbackAction::Disarm;
    }
    match r {
        Ok(()) => {
            core.ledger.stats.bump("connected");
            cb_read(core, st, ctx, lp, cs.reader.as_mut());
            cb_start_writing(core, st, cs, ctx, lp);
        }
        Err(Error::Canceled) => {
            core.ledger.stats.bump("connects_canceled");
            cb_close(core, st, cs, ctx, lp, true);
        }
        Err(Error::Io(e)) => {
            let msg = format!("callback: connect of connection {} failed: {e}", st.id);
            core.ledger.fail(msg);
            cb_close(core, st, cs, ctx, lp, true);
        }
    }
    CallbackAction::Disarm
}
