//! The callback storm: one Loop, Tcp watchers, WriteQueue, timers, File watchers. This
//! file holds the world, its actions between ticks, and the phase driver; the callbacks
//! of a connection end are in `callback_conn`.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use xev::watcher::stream::WriteQueue;
use xev::watcher::tcp::Tcp;
use xev::{Backend, CallbackAction, Completion, CompletionState, Error, Loop, OpResult, RunMode};

use crate::callback_conn::{cb_cancel, cb_close, cb_on_connect, cb_read, Target};
use crate::common::*;
use crate::files::{FileSlot, Files};
use crate::ledger::{end_name, Ledger, Stats};
use crate::receiver::Receiver;
use crate::timers::TimerSlot;
use crate::{skipped, DRAIN_LIMIT, MAX_CONNS};

/// The userdata of every connection callback: the world and the end's slot.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub(crate) w: Weak<RefCell<CbWorld>>,
    pub(crate) idx: usize,
    /// The end's unique number (slots are reused).
    pub(crate) gen: u64,
}

pub(crate) struct EndSt {
    /// A number no other end of this phase has.
    pub(crate) gen: u64,
    /// Which end this is; it sends stream `(id, side)`.
    pub(crate) side: u8,
    /// Its socket's fd number.
    pub(crate) fd: i32,
    /// 0 until a server end has read its first word.
    pub(crate) id: u32,
    pub(crate) sock: Option<Tcp>,
    pub(crate) connecting: bool,
    pub(crate) closing: bool,
    pub(crate) finished: bool,
    /// Bytes to send, and confirmed sent.
    pub(crate) total: u64,
    pub(crate) sent: u64,
    pub(crate) write_started: bool,
    pub(crate) writing: bool,
    pub(crate) write_over: bool,
    pub(crate) queue: Option<WriteQueue>,
    /// `None` for a server end until it knows the id.
    pub(crate) rx: Option<Receiver>,
    pub(crate) hdr: Vec<u8>,
    pub(crate) reading: bool,
    pub(crate) read_over: bool,
}

pub(crate) struct EndCs {
    /// Connect, then shutdown.
    pub(crate) aux: Pin<Box<Completion>>,
    pub(crate) reader: Pin<Box<Completion>>,
    pub(crate) writer: Pin<Box<Completion>>,
    pub(crate) canceller: Pin<Box<Completion>>,
    pub(crate) closer: Pin<Box<Completion>>,
}

impl EndCs {
    fn new() -> EndCs {
        EndCs {
            aux: completion(),
            reader: completion(),
            writer: completion(),
            canceller: completion(),
            closer: completion(),
        }
    }

    fn all_dead(&self) -> bool {
        [
            &self.aux,
            &self.reader,
            &self.writer,
            &self.canceller,
            &self.closer,
        ]
        .iter()
        .all(|c| c.state() == CompletionState::Dead)
    }

    fn states(&self) -> String {
        format!(
            "aux {:?} reader {:?} writer {:?} canceller {:?} closer {:?}",
            self.aux.state(),
            self.reader.state(),
            self.writer.state(),
            self.canceller.state(),
            self.closer.state()
        )
    }
}

pub(crate) struct End {
    pub(crate) st: EndSt,
    pub(crate) cs: EndCs,
}

pub(crate) struct CbCore {
    pub(crate) rng: Rng,
    next_gen: u64,
    pub(crate) ledger: Ledger,
    addr: SocketAddr,
    pub(crate) draining: bool,
    stopping: bool,
    pub(crate) weak: Weak<RefCell<CbWorld>>,
}

pub(crate) struct CbWorld {
    pub(crate) core: CbCore,
    pub(crate) ends: Vec<Option<Box<End>>>,
    listener: Tcp,
    accept: Pin<Box<Completion>>,
    accept_cancel: Pin<Box<Completion>>,
    pub(crate) timers: Vec<TimerSlot>,
    pub(crate) files: Vec<FileSlot>,
    pub(crate) file_ro: xev::File,
    pub(crate) file_rw: xev::File,
}

/// In a callback: the world and the end `ctx` names, or record a failure and disarm if
/// that end is gone (a callback after its completions and write queue were all idle).
macro_rules! live_end {
    ($guard:expr, $ctx:expr, $what:literal) => {{
        let w: &mut CbWorld = $guard;
        let live = w
            .ends
            .get($ctx.idx)
            .and_then(|e| e.as_ref())
            .is_some_and(|e| e.st.gen == $ctx.gen);
        if !live {
            let msg = format!(
                "callback: a {} callback ran for connection end #{} after that end was \
                 finished and its completions and write queue were all idle",
                $what, $ctx.gen
            );
            w.core.ledger.fail(msg);
            return CallbackAction::Disarm;
        }
        end_parts!(w, $ctx.idx)
    }};
}

/// The world, the end in slot `idx` (split so both can be borrowed at once).
macro_rules! end_parts {
    ($w:expr, $idx:expr) => {{
        let w: &mut CbWorld = $w;
        let End { st, cs } = &mut **w.ends[$idx].as_mut().expect("a live end");
        (&mut w.core, st, cs)
    }};
}

pub(crate) use {end_parts, live_end};

impl CbCore {
    fn ctx(&self, idx: usize, gen: u64) -> Ctx {
        Ctx {
            w: self.weak.clone(),
            idx,
            gen,
        }
    }
}

impl CbWorld {
    fn insert(&mut self, mut end: End) -> usize {
        self.core.next_gen += 1;
        end.st.gen = self.core.next_gen;
        let slot = self.ends.iter().position(Option::is_none);
        let b = Box::new(end);
        match slot {
            Some(i) => {
                self.ends[i] = Some(b);
                i
            }
            None => {
                self.ends.push(Some(b));
                self.ends.len() - 1
            }
        }
    }

    fn new_end(side: u8, id: u32, sock: Tcp, total: u64) -> End {
        End {
            st: EndSt {
                gen: 0,
                side,
                fd: std::os::fd::AsRawFd::as_raw_fd(&sock),
                id,
                sock: Some(sock),
                connecting: false,
                closing: false,
                finished: false,
                total,
                sent: 0,
                write_started: false,
                writing: false,
                write_over: false,
                queue: None,
                rx: (side == CLIENT).then(|| Receiver::new(id, SERVER)),
                hdr: Vec::new(),
                reading: false,
                read_over: false,
            },
            cs: EndCs::new(),
        }
    }

    fn live_clients(&self) -> usize {
        self.ends
            .iter()
            .flatten()
            .filter(|e| e.st.side == CLIENT && !e.st.finished)
            .count()
    }

    fn new_client(&mut self, lp: &mut Loop) {
        let id = self.core.ledger.new_conn(&mut self.core.rng);
        let total = self.core.ledger.rec(id).total[CLIENT as usize];
        let sock = match Tcp::new(self.core.addr) {
            Ok(s) => s,
            Err(e) => {
                self.core.ledger.fail(format!("callback: socket(): {e}"));
                self.core.ledger.rec(id).gone[CLIENT as usize] = true;
                self.core.ledger.rec(id).done[CLIENT as usize] = true;
                return;
            }
        };
        let mut end = Self::new_end(CLIENT, id, sock, total);
        end.st.connecting = true;
        let idx = self.insert(end);
        let addr = self.core.addr;
        let (core, st, cs) = end_parts!(self, idx);
        let ctx = core.ctx(idx, st.gen);
        core.ledger.stats.bump("connects");
        core.ledger.rec(id).fd[CLIENT as usize] = st.fd;
        core.ledger
            .log(st.fd, id, CLIENT, "socket opened, connect issued");
        let sock = st.sock.as_ref().unwrap();
        sock.connect(lp, cs.aux.as_mut(), addr, ctx.clone(), cb_on_connect);
        if core.rng.chance(30) {
            cb_cancel(core, st, cs, &ctx, lp, Target::Connect);
        }
    }

    /// Random actions between ticks.
    fn act(&mut self, lp: &mut Loop) {
        if !self.core.draining {
            let mut n = self.live_clients();
            while n < MAX_CONNS {
                self.new_client(lp);
                n += 1;
            }
        }
        if !self.core.draining && self.core.rng.chance(120) {
            let live: Vec<usize> = (0..self.ends.len())
                .filter(|&i| self.ends[i].as_ref().is_some_and(|e| !e.st.closing))
                .collect();
            if !live.is_empty() {
                let idx = live[self.core.rng.below(live.len() as u64) as usize];
                let (core, st, cs) = end_parts!(self, idx);
                let ctx = core.ctx(idx, st.gen);
                match core.rng.below(100) {
                    0..=34 => cb_cancel(core, st, cs, &ctx, lp, Target::Reader),
                    35..=69 => cb_cancel(core, st, cs, &ctx, lp, Target::Writer),
                    70..=79 => cb_cancel(core, st, cs, &ctx, lp, Target::Connect),
                    80..=84 => cb_cancel(core, st, cs, &ctx, lp, Target::Queue),
                    _ => {
                        // Cut (a server end only once it knows which connection it is).
                        if (st.side == CLIENT || st.id != 0) && !skipped("cut") {
                            cb_close(core, st, cs, &ctx, lp, true);
                        }
                    }
                }
            }
        }
        if self.core.rng.chance(15)
            && self.accept.state() == CompletionState::Active
            && self.accept_cancel.state() == CompletionState::Dead
        {
            self.core.ledger.stats.bump("accept_cancels_issued");
            let weak = self.core.weak.clone();
            lp.cancel(self.accept_cancel.as_mut(), &self.accept, move |_, _, r| {
                if let (Some(w), OpResult::Cancel(r)) = (weak.upgrade(), r) {
                    let stats = &mut w.borrow_mut().core.ledger.stats;
                    stats.bump(if r.is_ok() {
                        "accept_cancel_ok"
                    } else {
                        "accept_cancel_not_ok"
                    });
                }
                CallbackAction::Disarm
            });
        }
        if self.core.rng.chance(300) {
            let i = self.core.rng.below(self.timers.len() as u64) as usize;
            self.timer_action(lp, i);
        }
        if self.core.rng.chance(250) {
            let i = self.core.rng.below(self.files.len() as u64) as usize;
            self.file_action(lp, i);
        }
    }

    /// Drop finished ends whose completions are all Dead.
    fn reap(&mut self) {
        for slot in &mut self.ends {
            if slot.as_ref().is_some_and(|e| {
                e.st.finished
                    && e.cs.all_dead()
                    && e.st.queue.as_ref().is_none_or(WriteQueue::is_empty)
            }) {
                *slot = None;
            }
        }
    }

    fn idle(&self) -> bool {
        self.ends.iter().all(Option::is_none)
            && self.timers.iter().all(|t| {
                t.armed.is_none()
                    && t.c.state() == CompletionState::Dead
                    && t.k.state() == CompletionState::Dead
            })
            && self.files.iter().all(|f| {
                !f.busy
                    && f.c.state() == CompletionState::Dead
                    && f.k.state() == CompletionState::Dead
            })
    }

    fn stuck_report(&self) -> String {
        let mut lines = Vec::new();
        for (i, e) in self.ends.iter().enumerate() {
            if let Some(e) = e {
                let s = &e.st;
                lines.push(format!(
                    "slot {i}: {} end of {}: connecting {} closing {} finished {} sent {}/{} \
                     writing {} write_over {} reading {} read_over {} got {} queue {:?}; {}",
                    end_name(s.side),
                    s.id,
                    s.connecting,
                    s.closing,
                    s.finished,
                    s.sent,
                    s.total,
                    s.writing,
                    s.write_over,
                    s.reading,
                    s.read_over,
                    s.rx.as_ref().map_or(0, |r| r.got),
                    s.queue,
                    e.cs.states()
                ));
            }
        }
        for (i, t) in self.timers.iter().enumerate() {
            if t.armed.is_some() || t.c.state() == CompletionState::Active {
                lines.push(format!("timer {i}: armed {:?} {:?}", t.armed, t.c.state()));
            }
        }
        for (i, f) in self.files.iter().enumerate() {
            if f.busy || f.c.state() == CompletionState::Active {
                lines.push(format!("file slot {i}: busy {} {:?}", f.busy, f.c.state()));
            }
        }
        lines.truncate(30);
        lines.join("\n  ")
    }
}

fn cb_on_accept(
    weak: &mut Weak<RefCell<CbWorld>>,
    lp: &mut Loop,
    _c: Pin<&mut Completion>,
    r: Result<(Tcp, Option<SocketAddr>), Error>,
) -> CallbackAction {
    let Some(w) = weak.upgrade() else {
        return CallbackAction::Disarm;
    };
    let mut guard = w.borrow_mut();
    let w = &mut *guard;
    match r {
        Ok((sock, _)) => {
            w.core.ledger.stats.bump("accepts");
            let idx = w.insert(CbWorld::new_end(SERVER, 0, sock, 0));
            let (core, st, cs) = end_parts!(w, idx);
            let ctx = core.ctx(idx, st.gen);
            core.ledger.log(st.fd, 0, SERVER, "accepted");
            cb_read(core, st, &ctx, lp, cs.reader.as_mut());
        }
        Err(Error::Canceled) => {
            // Accept again right away, after the cancelled accept.
            w.core.ledger.stats.bump("accepts_canceled");
        }
        Err(Error::Io(e)) => {
            w.core.ledger.fail(format!("callback: accept failed: {e}"));
            return CallbackAction::Disarm;
        }
    }
    if w.core.stopping {
        CallbackAction::Disarm
    } else {
        CallbackAction::Rearm
    }
}

/// A 5 ms heartbeat, so `run(Once)` returns regularly even when everything else is
/// stuck (the drain limit must be able to fire).
fn cb_beat(
    weak: &mut Weak<RefCell<CbWorld>>,
    lp: &mut Loop,
    c: Pin<&mut Completion>,
    _r: Result<(), Error>,
) -> CallbackAction {
    let stopping = weak.upgrade().is_none_or(|w| w.borrow().core.stopping);
    if !stopping {
        xev::Timer::new().run(lp, c, 5, weak.clone(), cb_beat);
    }
    CallbackAction::Disarm
}

/// One callback-API storm on `backend` for `dur`.
pub(crate) fn callback_storm(backend: Backend, dur: Duration, seed: u64) -> Stats {
    let label = format!("callback/{}", backend.name());
    let files = Files::new(&format!("cb-{}", backend.name()));
    let listener = Tcp::new("127.0.0.1:0".parse().unwrap()).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    listener.listen(1024).unwrap();
    let addr = listener.local_addr().unwrap();
    let rw = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files.scratch)
        .unwrap();
    // The world first and the loop second: the loop is dropped first, so every
    // completion is Dead before the world (which owns them) goes.
    let world = Rc::new(RefCell::new(CbWorld {
        core: CbCore {
            rng: Rng::new(seed),
            next_gen: 0,
            ledger: Ledger::new(label.clone()),
            addr,
            draining: false,
            stopping: false,
            weak: Weak::new(),
        },
        ends: Vec::new(),
        listener,
        accept: completion(),
        accept_cancel: completion(),
        timers: (0..8)
            .map(|_| TimerSlot {
                c: completion(),
                k: completion(),
                armed: None,
            })
            .collect(),
        files: (0..4)
            .map(|_| FileSlot {
                c: completion(),
                k: completion(),
                busy: false,
            })
            .collect(),
        file_ro: xev::File::open(&files.read_only).unwrap(),
        file_rw: xev::File::from(rw),
    }));
    let mut beat = completion();
    let mut stop_cancel = completion();
    let mut lp = runtime_tests::new_loop(backend);
    {
        let mut w = world.borrow_mut();
        w.core.weak = Rc::downgrade(&world);
        xev::Timer::new().run(&mut lp, beat.as_mut(), 5, w.core.weak.clone(), cb_beat);
        let w = &mut *w;
        let weak = w.core.weak.clone();
        w.listener
            .accept(&mut lp, w.accept.as_mut(), weak, cb_on_accept);
    }
    let start = Instant::now();
    let mut drain_start = None;
    loop {
        lp.run(RunMode::Once)
            .unwrap_or_else(|e| panic!("{label}: run: {e}"));
        let mut w = world.borrow_mut();
        let now = Instant::now();
        if drain_start.is_none() && now >= start + dur {
            w.core.draining = true;
            drain_start = Some(now);
        }
        w.act(&mut lp);
        w.reap();
        if let Some(d) = drain_start {
            if w.idle() {
                break;
            }
            if now - d > DRAIN_LIMIT {
                let report = w.stuck_report();
                w.core.ledger.fail(format!(
                    "callback: still busy {DRAIN_LIMIT:?} after the end (active {}):\n  {report}",
                    lp.active()
                ));
                break;
            }
        }
    }
    // Stop accepting; then nothing may be left in the loop.
    {
        let mut w = world.borrow_mut();
        let w = &mut *w;
        w.core.stopping = true;
        if w.accept.state() == CompletionState::Active {
            lp.cancel(stop_cancel.as_mut(), &w.accept, |_, _, _| {
                CallbackAction::Disarm
            });
        }
    }
    let t = Instant::now();
    while lp.active() > 0 && t.elapsed() < Duration::from_secs(5) {
        lp.run(RunMode::Once).unwrap();
    }
    let active = lp.active();
    let mut w = world.borrow_mut();
    if active != 0 {
        let report = w.stuck_report();
        w.core.ledger.fail(format!(
            "callback: {active} completions still Active after the drain:\n  {report}"
        ));
    }
    w.core.ledger.validate();
    let stats = w.core.ledger.stats.clone();
    let mut failures = std::mem::take(&mut w.core.ledger.failures);
    if !failures.is_empty() {
        failures.push(format!("fd history:{}", w.core.ledger.history()));
    }
    drop(w);
    drop(lp);
    drop(world);
    drop((beat, stop_cancel));
    if !failures.is_empty() {
        panic!(
            "{label}: {} failures:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    stats
}
