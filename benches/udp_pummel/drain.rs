//! Drain cycles (the default flow, `XEV_BENCH_FLOW=drain`): the receiver's capacity,
//! measured apart from the sender's.
//!
//! On loopback the sender's CPU does most of the delivery (GSO segmentation and queueing
//! each datagram on the receiving socket happen inside its `sendmmsg`), and on this kind
//! of machine that costs it about as much per datagram as receiving costs the receiver.
//! With both running at once the rate is then the slower side's, often the sender's, and
//! a faster receiver only shows as idle time. So the run is cut into cycles: the sender
//! fills the receiver's queue with one cycle of datagrams (at most half the queue's
//! measured capacity, so nothing is dropped) while the receiver waits at the cycle
//! boundary (inside its per-datagram callback, the same for every variant); then the
//! receiver drains the full queue while the sender waits. Only the drains are timed: the
//! receiver's wall time, CPU time and scheduling figures exclude the waits, so the rate
//! is datagrams received per second of draining a queue that never runs dry.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use super::sched::Sched;
use super::{common, Shared};

/// How long either side sleeps between looks at the other's progress.
pub const POLL: Duration = Duration::from_micros(20);

/// A sender waiting this long for the receiver to finish a drain without progress
/// assumes the datagrams still missing were lost. Longer than the concurrent mode's: a
/// receiver kept off its CPU by other work must not look like a loss (the next fill
/// would then land on a queue that still holds the last one, and overflow it).
pub const STALL: Duration = Duration::from_secs(2);

/// What the receiver spent waiting at cycle boundaries after the warm-up (to subtract
/// from the timed interval).
#[derive(Clone, Copy, Default)]
pub struct Blocked {
    pub wall: Duration,
    pub cpu: Duration,
    pub sched: Sched,
}

impl Blocked {
    fn add(&mut self, wall: Duration, cpu: Duration, sched: Sched) {
        self.wall += wall;
        self.cpu += cpu;
        self.sched.run += sched.run;
        self.sched.wait += sched.wait;
        self.sched.slices += sched.slices;
    }
}

/// At the end of a cycle (`count` received): say so, and wait until the sender has
/// queued the next cycle (or finished). Returns what the wait cost, if `timed`.
pub fn wait_for_fill(shared: &Shared, count: u64, cycle: u64, blocked: &mut Blocked, timed: bool) {
    shared.received.store(count, Ordering::Release);
    let (t0, cpu0, s0) = (Instant::now(), common::thread_cpu_time(), Sched::now());
    while shared.filled.load(Ordering::Acquire) < count + cycle {
        thread::sleep(POLL);
    }
    if timed {
        let s1 = Sched::now();
        let cpu1 = common::thread_cpu_time();
        blocked.add(t0.elapsed(), cpu1.saturating_sub(cpu0), s0.until(s1));
    }
}

/// The cycle length: half the measured queue capacity (at most 8192), in whole sender
/// batches of `batch` datagrams.
pub fn cycle_len(capacity: Option<u64>, batch: u64) -> u64 {
    let half = capacity.map_or(4096, |n| n / 2).min(8192);
    (half / batch).max(1) * batch
}

/// `n` rounded up to whole cycles.
pub fn whole_cycles(n: u64, cycle: u64) -> u64 {
    n.div_ceil(cycle) * cycle
}
