//! The async storm's connections: a client task and a server-end task each run a reader
//! and a writer together, either of which may cut the connection at any point.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use xev::net::TcpStream;
use xev::time::timeout;

use crate::common::*;
use crate::ledger::end_name;
use crate::receiver::Receiver;
use crate::runtime::{us, Live, RtWorld};
use crate::{skipped, CHUNK_MAX, READ_MAX};

/// Runs two futures together until both finish (true), or until `cut` is set (false):
/// then both are dropped at once, in the same poll, orphaning whatever they had in flight.
struct JoinOrCut<'c, A, B> {
    a: Option<Pin<Box<A>>>,
    b: Option<Pin<Box<B>>>,
    cut: &'c Cell<bool>,
}

impl<A: Future<Output = ()>, B: Future<Output = ()>> Future for JoinOrCut<'_, A, B> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let this = &mut *self;
        if let Some(a) = &mut this.a {
            if a.as_mut().poll(cx).is_ready() {
                this.a = None;
            }
        }
        if !this.cut.get() {
            if let Some(b) = &mut this.b {
                if b.as_mut().poll(cx).is_ready() {
                    this.b = None;
                }
            }
        }
        if this.cut.get() {
            this.a = None;
            this.b = None;
            return Poll::Ready(false);
        }
        if this.a.is_none() && this.b.is_none() {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    }
}

pub(crate) async fn rt_client(w: Rc<RtWorld>, mut rng: Rng) {
    let _live = Live::client(&w);
    let id = w.ledger.borrow_mut().new_conn(&mut rng);
    w.bump("connects");
    let gone = |w: &RtWorld| {
        let mut l = w.ledger.borrow_mut();
        l.rec(id).gone[CLIENT as usize] = true;
        l.rec(id).done[CLIENT as usize] = true;
    };
    let stream = match rng.below(100) {
        0..=89 => TcpStream::connect(w.addr).await,
        90..=96 => match timeout(us(&mut rng, 1000), TcpStream::connect(w.addr)).await {
            Ok(r) => r,
            Err(_) => {
                w.bump("connects_dropped");
                return gone(&w);
            }
        },
        _ => {
            let ready = poll_once_and_drop(TcpStream::connect(w.addr));
            w.bump(if ready {
                "connects_polled_once_ready"
            } else {
                "connects_polled_once"
            });
            return gone(&w);
        }
    };
    match stream {
        Ok(s) => {
            w.bump("connected");
            rt_end(&w, s, id, CLIENT, Receiver::new(id, SERVER), rng).await
        }
        Err(e) => {
            w.fail(format!("async: connect of connection {id} failed: {e}"));
            gone(&w);
        }
    }
}

pub(crate) async fn rt_server_end(w: Rc<RtWorld>, s: TcpStream) {
    let _live = Live::task(&w);
    let rng = w.fork();
    let (r, hdr) = s.read_exact(vec![0u8; 8]).await;
    if r.is_err() {
        w.ledger.borrow_mut().anon += 1;
        return;
    }
    let first: [u8; 8] = hdr[..8].try_into().unwrap();
    let claimed = w.ledger.borrow_mut().claim(first);
    let id = match claimed {
        Ok(id) => id,
        Err(e) => return w.fail(format!("async: {e}")),
    };
    let mut rx = Receiver::new(id, CLIENT);
    let total = w.ledger.borrow_mut().rec(id).total[CLIENT as usize];
    let max_id = w.ledger.borrow().max_id();
    if let Err(e) = rx.data(&hdr, total, max_id) {
        w.fail(format!("async: server end of {id}: {e}"));
    }
    rt_end(&w, s, id, SERVER, rx, rng).await
}

/// Mark end `me` of `id` cut and set `cut`.
fn rt_cut(w: &RtWorld, id: u32, me: u8, cut: &Cell<bool>) {
    w.ledger.borrow_mut().rec(id).gone[me as usize] = true;
    w.bump("cuts");
    cut.set(true);
}

async fn rt_end(w: &Rc<RtWorld>, s: TcpStream, id: u32, me: u8, rx: Receiver, mut rng: Rng) {
    let cut = Cell::new(false);
    let total = w.ledger.borrow_mut().rec(id).total[me as usize];
    let finished = JoinOrCut {
        a: Some(Box::pin(rt_reader(w, &s, id, me, rx, rng.fork(), &cut))),
        b: Some(Box::pin(rt_writer(w, &s, id, me, total, rng.fork(), &cut))),
        cut: &cut,
    }
    .await;
    if finished && rng.chance(300) {
        if let Err(e) = s.close().await {
            w.fail(format!("async: close of connection {id}: {e}"));
        }
    } else {
        // Closes at once, in this poll: right after a cut, the reads and writes dropped
        // with the branches may still be queued for the kernel.
        drop(s);
    }
    w.ledger.borrow_mut().rec(id).done[me as usize] = true;
}

async fn rt_reader(
    w: &RtWorld,
    s: &TcpStream,
    id: u32,
    me: u8,
    mut rx: Receiver,
    mut rng: Rng,
    cut: &Cell<bool>,
) {
    let peer_total = w.ledger.borrow_mut().rec(id).total[1 - me as usize];
    loop {
        if rng.chance(4) && !skipped("cut") {
            return rt_cut(w, id, me, cut);
        }
        let len = rng.range(1, READ_MAX);
        let buf = vec![0u8; len as usize];
        let res = match rng.below(1000) {
            0..=869 => Some(s.read(buf).await),
            870..=969 => match timeout(us(&mut rng, 3000), s.read(buf)).await {
                Ok(r) => Some(r),
                Err(_) => {
                    w.bump("reads_dropped");
                    rx.dropped_read(len);
                    None
                }
            },
            _ => {
                w.bump("reads_polled_once");
                poll_once_and_drop(s.read(buf));
                rx.dropped_read(len);
                if rng.chance(300) && !skipped("cut") {
                    // Orphan the read and close its socket in the same poll.
                    return rt_cut(w, id, me, cut);
                }
                None
            }
        };
        w.bump("reads");
        match res {
            None => {}
            Some((Ok(0), _)) => {
                w.ledger.borrow_mut().eof(id, me, &rx);
                return;
            }
            Some((Ok(n), b)) => {
                w.add("bytes_read", n as u64);
                let max_id = w.ledger.borrow().max_id();
                if let Err(e) = rx.data(&b[..n], peer_total, max_id) {
                    w.fail(format!(
                        "async: the {} end of connection {id}: {e}",
                        end_name(me)
                    ));
                    return rt_cut(w, id, me, cut);
                }
                w.ledger.borrow_mut().rec(id).received[me as usize] = rx.got;
            }
            Some((Err(e), _)) => {
                if w.ledger.borrow_mut().peer_error_ok(id, me) {
                    w.bump("read_errors_after_peer_cut");
                } else {
                    w.fail(format!(
                        "async: read on the {} end of connection {id} failed: {e} (peer not cut)",
                        end_name(me)
                    ));
                }
                return;
            }
        }
    }
}

async fn rt_writer(
    w: &RtWorld,
    s: &TcpStream,
    id: u32,
    me: u8,
    total: u64,
    mut rng: Rng,
    cut: &Cell<bool>,
) {
    let truncate = |why: &'static str| {
        w.bump(why);
        w.ledger.borrow_mut().rec(id).truncated[me as usize] = true;
    };
    let failed = |e: io::Error| {
        if w.ledger.borrow_mut().peer_error_ok(id, me) {
            w.bump("write_errors_after_peer_cut");
            w.ledger.borrow_mut().rec(id).truncated[me as usize] = true;
        } else {
            w.fail(format!(
                "async: write on the {} end of connection {id} failed: {e} (peer not cut)",
                end_name(me)
            ));
        }
    };
    let mut off = 0;
    while off < total {
        if rng.chance(4) && !skipped("cut") {
            return rt_cut(w, id, me, cut);
        }
        let len = rng.range(1, CHUNK_MAX).min(total - off);
        let buf = stream_bytes(id, me, off, len as usize);
        w.bump("writes");
        match rng.below(1000) {
            0..=599 => match s.write(buf).await.0 {
                Ok(n) => {
                    off += n as u64;
                    w.add("bytes_written", n as u64);
                }
                Err(e) => {
                    failed(e);
                    break;
                }
            },
            600..=929 => match s.write_all(buf).await.0 {
                Ok(()) => {
                    off += len;
                    w.add("bytes_written", len);
                }
                Err(e) => {
                    failed(e);
                    break;
                }
            },
            930..=979 => match timeout(us(&mut rng, 2000), s.write(buf)).await {
                Ok((Ok(n), _)) => {
                    off += n as u64;
                    w.add("bytes_written", n as u64);
                }
                Ok((Err(e), _)) => {
                    failed(e);
                    break;
                }
                Err(_) => {
                    // Whether it went out is unknown: the stream ends here.
                    truncate("writes_dropped");
                    break;
                }
            },
            _ => {
                poll_once_and_drop(s.write(buf));
                truncate("writes_polled_once");
                if rng.chance(300) && !skipped("cut") {
                    return rt_cut(w, id, me, cut);
                }
                break;
            }
        }
    }
    w.bump("shutdowns");
    if let Err(e) = s.shutdown(Shutdown::Write).await {
        if !w.ledger.borrow_mut().peer_error_ok(id, me) {
            w.fail(format!("async: shutdown of connection {id}: {e}"));
        }
    }
}
