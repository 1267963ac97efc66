//! The timer side: loop timers armed, reset and cancelled in the callback storm; sleeps,
//! timeouts, intervals and aborted sleep tasks in the async storm. None may end early.

use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use xev::time::{sleep, timeout};
use xev::{CallbackAction, Completion, CompletionState, Loop, OpResult};

use crate::callback::CbWorld;
use crate::common::*;
use crate::runtime::{us, Live, RtWorld};

pub(crate) struct TimerSlot {
    pub(crate) c: Pin<Box<Completion>>,
    pub(crate) k: Pin<Box<Completion>>,
    pub(crate) armed: Option<(Instant, u64)>,
}

impl CbWorld {
    pub(crate) fn timer_action(&mut self, lp: &mut Loop, i: usize) {
        let weak = self.core.weak.clone();
        let on_timer = move |_: &mut Loop, _: Pin<&mut Completion>, r: OpResult| {
            let Some(w) = weak.upgrade() else {
                return CallbackAction::Disarm;
            };
            let mut w = w.borrow_mut();
            let w = &mut *w;
            let armed = w.timers[i].armed.take();
            let ledger = &mut w.core.ledger;
            match (r, armed) {
                (OpResult::Timer(xev::TimerTrigger::Expiration), Some((t0, ms))) => {
                    ledger.stats.bump("timers_fired");
                    if t0.elapsed() < Duration::from_millis(ms) {
                        let msg =
                            format!("callback: a {ms} ms timer fired after {:?}", t0.elapsed());
                        ledger.fail(msg);
                    }
                }
                (OpResult::Timer(xev::TimerTrigger::Canceled), Some(_)) => {
                    ledger.stats.bump("timers_canceled")
                }
                (r, armed) => {
                    ledger.fail(format!("callback: timer slot {i}: {r:?} when {armed:?}"))
                }
            }
            CallbackAction::Disarm
        };
        let draining = self.core.draining;
        let ms = self.core.rng.below(16);
        let slot = &mut self.timers[i];
        match slot.armed {
            None if !draining && slot.c.state() == CompletionState::Dead => {
                slot.armed = Some((Instant::now(), ms));
                lp.timer(slot.c.as_mut(), ms, on_timer);
            }
            Some(_) if self.core.rng.chance(500) && slot.k.state() == CompletionState::Dead => {
                lp.cancel(slot.k.as_mut(), &slot.c, |_, _, _| CallbackAction::Disarm);
            }
            Some(_) if !draining => {
                self.core.ledger.stats.bump("timers_reset");
                slot.armed = Some((Instant::now(), ms));
                lp.timer_reset(slot.c.as_mut(), ms, on_timer);
            }
            _ => {}
        }
    }
}

pub(crate) async fn rt_timers(w: Rc<RtWorld>) {
    let _live = Live::task(&w);
    let mut rng = w.fork();
    while !w.stop.get() {
        let d = us(&mut rng, 10_000);
        let t0 = Instant::now();
        match rng.below(10) {
            0..=4 => {
                sleep(d).await;
                w.bump("sleeps");
                if t0.elapsed() < d {
                    w.fail(format!(
                        "async: sleep({d:?}) ended after {:?}",
                        t0.elapsed()
                    ));
                }
            }
            5..=6 => {
                let d2 = us(&mut rng, 10_000);
                let r = timeout(d, sleep(d2)).await;
                w.bump("timeouts");
                let least = if r.is_ok() { d2 } else { d };
                if t0.elapsed() < least.min(d.max(d2)) {
                    w.fail(format!(
                        "async: timeout({d:?}, sleep({d2:?})) = {r:?} after {:?}",
                        t0.elapsed()
                    ));
                }
            }
            7 => {
                poll_once_and_drop(sleep(d));
                w.bump("sleeps_polled_once");
            }
            8 => {
                let h = xev::spawn(sleep(d));
                if rng.chance(500) {
                    h.abort();
                    match h.await {
                        Ok(()) => {}
                        Err(e) if e.is_cancelled() => w.bump("tasks_aborted"),
                        Err(e) => w.fail(format!("async: aborted sleep task: {e}")),
                    }
                } else if let Err(e) = h.await {
                    w.fail(format!("async: sleep task: {e}"));
                }
            }
            _ => {
                let period = Duration::from_micros(rng.range(500, 3000));
                let mut iv = xev::time::interval(period);
                for _ in 0..3 {
                    iv.tick().await;
                }
                w.bump("intervals");
                if t0.elapsed() < period * 2 {
                    w.fail(format!(
                        "async: three ticks of a {period:?} interval took {:?}",
                        t0.elapsed()
                    ));
                }
            }
        }
    }
}
