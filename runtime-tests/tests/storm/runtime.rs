//! The async storm: one Runtime, xev::net, xev::fs, xev::time, spawn_blocking, and a
//! callback completion added through `with_loop` that drops a future inside a callback.
//! This file holds the world, the acceptor and spawner, and the phase driver; the tasks
//! of a connection are in `runtime_conn`.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use xev::net::TcpListener;
use xev::time::{sleep, timeout};
use xev::Backend;

use crate::common::*;
use crate::files::{rt_files, Files};
use crate::ledger::{Ledger, Stats};
use crate::mixed::rt_mixed;
use crate::runtime_conn::{rt_client, rt_server_end};
use crate::timers::rt_timers;
use crate::{skipped, DRAIN_LIMIT, MAX_CONNS};

pub(crate) struct RtWorld {
    rng: RefCell<Rng>,
    pub(crate) ledger: RefCell<Ledger>,
    pub(crate) addr: SocketAddr,
    pub(crate) stop: Cell<bool>,
    live_clients: Cell<usize>,
    live_tasks: Cell<usize>,
    /// Probe connections (closed at once) made by the acceptor.
    probes: Cell<u64>,
    pub(crate) files: Files,
}

impl RtWorld {
    pub(crate) fn fork(&self) -> Rng {
        self.rng.borrow_mut().fork()
    }
    pub(crate) fn fail(&self, msg: String) {
        self.ledger.borrow_mut().fail(msg);
    }
    pub(crate) fn bump(&self, k: &'static str) {
        self.ledger.borrow_mut().stats.bump(k);
    }
    pub(crate) fn add(&self, k: &'static str, n: u64) {
        self.ledger.borrow_mut().stats.add(k, n);
    }
}

/// Counts a running storm task (and a client) until dropped, however the task ends.
pub(crate) struct Live(Rc<RtWorld>, bool);

impl Live {
    pub(crate) fn task(w: &Rc<RtWorld>) -> Live {
        w.live_tasks.set(w.live_tasks.get() + 1);
        Live(w.clone(), false)
    }
    pub(crate) fn client(w: &Rc<RtWorld>) -> Live {
        w.live_clients.set(w.live_clients.get() + 1);
        w.live_tasks.set(w.live_tasks.get() + 1);
        Live(w.clone(), true)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live_tasks.set(self.0.live_tasks.get() - 1);
        if self.1 {
            self.0.live_clients.set(self.0.live_clients.get() - 1);
        }
    }
}

pub(crate) fn us(rng: &mut Rng, max: u64) -> Duration {
    Duration::from_micros(rng.below(max + 1))
}

async fn rt_acceptor(w: Rc<RtWorld>, l: Rc<TcpListener>) {
    let _live = Live::task(&w);
    let mut rng = w.fork();
    while !(w.stop.get() && w.live_clients.get() == 0) {
        let mut dropped = true;
        let accepted = match rng.below(100) {
            0..=69 => {
                dropped = false;
                timeout(Duration::from_millis(20), l.accept()).await.ok()
            }
            70..=89 => {
                // Drop the accept at a random moment, then accept again right away.
                match timeout(us(&mut rng, 2000), l.accept()).await {
                    Ok(r) => Some(r),
                    Err(_) => {
                        w.bump("accepts_dropped");
                        None
                    }
                }
            }
            90..=94 => {
                if poll_once_and_drop(l.accept()) {
                    // It had a connection, which went with the future.
                    w.bump("accepts_polled_once_ready");
                } else {
                    w.bump("accepts_polled_once");
                }
                None
            }
            _ => {
                let mut inc = l.incoming();
                let mut got = None;
                for _ in 0..3 {
                    let next = std::future::poll_fn(|cx| {
                        futures_core::Stream::poll_next(Pin::new(&mut inc), cx)
                    });
                    match timeout(Duration::from_millis(5), next).await {
                        Ok(Some(Ok(s))) => {
                            w.bump("accepts");
                            xev::spawn(rt_server_end(w.clone(), s));
                        }
                        Ok(Some(Err(e))) => got = Some(Err(e)),
                        Ok(None) => unreachable!("incoming never ends"),
                        Err(_) => break,
                    }
                }
                w.bump("incoming_dropped");
                got
            }
        };
        match accepted {
            Some(Ok((s, _))) => {
                w.bump("accepts");
                xev::spawn(rt_server_end(w.clone(), s));
            }
            Some(Err(e)) => {
                w.fail(format!("async: accept failed: {e}"));
                sleep(Duration::from_millis(1)).await;
            }
            None => {}
        }
        if dropped && rng.chance(300) {
            // Right after a dropped accept, a waiting connection must be accepted
            // promptly: connect a probe (which closes at once; its server end reads end
            // of stream before any id) and accept.
            w.probes.set(w.probes.get() + 1);
            let l2 = l.clone();
            let next =
                xev::spawn(async move { timeout(Duration::from_secs(2), l2.accept()).await });
            if rng.chance(500) {
                // Let the new accept wait in the kernel before the connection comes.
                sleep(Duration::from_millis(1)).await;
            }
            drop(std::net::TcpStream::connect(w.addr).expect("probe connect"));
            match next.await.expect("the accept task") {
                Ok(Ok((s, _))) => {
                    w.bump("accepts");
                    xev::spawn(rt_server_end(w.clone(), s));
                }
                Ok(Err(e)) => w.fail(format!("async: accept after a dropped accept: {e}")),
                Err(_) => w.fail(
                    "async: an accept right after a dropped accept did not complete within \
                     2 s although a connection was waiting"
                        .into(),
                ),
            }
        }
    }
}

async fn rt_spawner(w: Rc<RtWorld>) {
    let _live = Live::task(&w);
    while !w.stop.get() {
        if w.live_clients.get() < MAX_CONNS {
            let rng = w.fork();
            xev::spawn(rt_client(w.clone(), rng));
            xev::rt::yield_now().await;
        } else {
            sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One async storm on `backend` for `dur`.
pub(crate) fn async_storm(backend: Backend, dur: Duration, seed: u64) -> Stats {
    let label = format!("async/{}", backend.name());
    let rt = xev::rt::Builder::new()
        .backend(backend)
        .blocking_threads(4)
        .build()
        .unwrap();
    let (stats, failures) = rt.block_on(async {
        let l = Rc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let w = Rc::new(RtWorld {
            rng: RefCell::new(Rng::new(seed)),
            ledger: RefCell::new(Ledger::new(label.clone())),
            addr: l.local_addr().unwrap(),
            stop: Cell::new(false),
            live_clients: Cell::new(0),
            live_tasks: Cell::new(0),
            probes: Cell::new(0),
            files: Files::new(&format!("rt-{}", backend.name())),
        });
        let mut handles = vec![
            xev::spawn(rt_acceptor(w.clone(), l.clone())),
            xev::spawn(rt_spawner(w.clone())),
            xev::spawn(rt_timers(w.clone())),
            xev::spawn(rt_timers(w.clone())),
            xev::spawn(rt_files(w.clone())),
        ];
        if !skipped("mixed") {
            handles.push(xev::spawn(rt_mixed(w.clone())));
        }
        sleep(dur).await;
        w.stop.set(true);
        let t0 = Instant::now();
        while w.live_tasks.get() > 0 {
            if t0.elapsed() > DRAIN_LIMIT {
                let l = w.ledger.borrow();
                let mut open: Vec<_> = l
                    .records
                    .iter()
                    .filter(|(_, r)| !r.done[0] || (r.server_seen && !r.done[1]))
                    .map(|(id, r)| format!("{id}: {r:?}"))
                    .collect();
                open.sort();
                open.truncate(20);
                drop(l);
                w.fail(format!(
                    "async: {} tasks ({} clients) still running {DRAIN_LIMIT:?} after the \
                     end; unfinished connections:\n  {}",
                    w.live_tasks.get(),
                    w.live_clients.get(),
                    open.join("\n  ")
                ));
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
        for h in handles {
            h.abort();
            let _ = h.await;
        }
        drop(l);
        // Every operation a dropped future left behind must have ended by now.
        let t0 = Instant::now();
        loop {
            let active = xev::rt::with_loop(|lp| lp.active());
            if active == 0 {
                break;
            }
            if t0.elapsed() > Duration::from_secs(5) {
                w.fail(format!(
                    "async: {active} completions still Active 5 s after every task ended \
                     (operations of dropped futures that never finished)"
                ));
                break;
            }
            sleep(Duration::from_millis(2)).await;
        }
        let mut l = w.ledger.borrow_mut();
        // A probe's server end has no id: count it like a connection cut early.
        l.anon = l.anon.saturating_sub(w.probes.get());
        l.stats.add("accept_probes", w.probes.get());
        l.validate();
        (l.stats.clone(), std::mem::take(&mut l.failures))
    });
    drop(rt);
    if !failures.is_empty() {
        panic!(
            "{label}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    stats
}
