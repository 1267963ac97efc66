//! Round-trip accounting of the ping-pong benches (`pingpong`, `ping_udp`): one `Counter`
//! per client thread, shared by every client implementation, and the figures of one
//! measurement.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// A point of the timed section: the clock, the allocation counter and the process's CPU
/// time (user, system).
#[derive(Clone, Copy)]
pub struct Mark {
    pub at: Instant,
    pub allocs: u64,
    pub user: Duration,
    pub system: Duration,
}

impl Mark {
    pub fn now() -> Mark {
        // Read the counters before the clock on the way in and after it on the way out
        // would be marginally tighter; the difference is one getrusage call.
        let (user, system) = super::cpu_times();
        Mark {
            at: Instant::now(),
            allocs: super::allocations(),
            user,
            system,
        }
    }
}

/// Counts round trips across all connections of one client: `claim` before sending,
/// `complete` when the whole reply is in. Marks the timed section's start when `warmup`
/// round trips are done and its end when all `total` are.
pub struct Counter {
    warmup: u64,
    total: u64,
    sent: Cell<u64>,
    done: Cell<u64>,
    start: Cell<Option<Mark>>,
    end: Cell<Option<Mark>>,
    error: RefCell<Option<String>>,
}

impl Counter {
    pub fn new(warmup: u64, total: u64) -> Counter {
        Counter {
            warmup,
            total,
            sent: Cell::new(0),
            done: Cell::new(0),
            start: Cell::new(None),
            end: Cell::new(None),
            error: RefCell::new(None),
        }
    }

    /// Take the right to send one more message; false when all are spoken for.
    pub fn claim(&self) -> bool {
        let s = self.sent.get();
        if s < self.total {
            self.sent.set(s + 1);
            true
        } else {
            false
        }
    }

    pub fn complete(&self) {
        let d = self.done.get() + 1;
        self.done.set(d);
        if d == self.warmup {
            self.start.set(Some(Mark::now()));
        }
        if d == self.total {
            self.end.set(Some(Mark::now()));
        }
    }

    /// Record an error (the first one is kept).
    pub fn fail(&self, what: String) {
        self.error.borrow_mut().get_or_insert(what);
    }

    /// The first error recorded, if any.
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }

    /// The timed section's start and end, or what went wrong.
    pub fn marks(&self) -> Result<(Mark, Mark), String> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        match (self.start.get(), self.end.get()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!(
                "client stopped after {} of {} round trips",
                self.done.get(),
                self.total
            )),
        }
    }
}

/// One measurement's figures.
#[derive(Clone, Copy)]
pub struct Sample {
    pub per_sec: f64,
    /// Allocations (all threads) during the timed section.
    pub allocs: u64,
    pub allocs_per_rt: f64,
    /// CPU time (user + system, all threads) per round trip.
    pub cpu_us_per_rt: f64,
    /// The user-space part of `cpu_us_per_rt`: the rest is the kernel's.
    pub user_us_per_rt: f64,
}

impl Sample {
    /// The figures of `n` round trips timed from `a` to `b`.
    pub fn between(a: Mark, b: Mark, n: u64) -> Sample {
        let n = n as f64;
        let secs = (b.at - a.at).as_secs_f64();
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n;
        let user = b.user.saturating_sub(a.user);
        let system = b.system.saturating_sub(a.system);
        Sample {
            per_sec: n / secs,
            allocs: b.allocs - a.allocs,
            allocs_per_rt: (b.allocs - a.allocs) as f64 / n,
            cpu_us_per_rt: us(user + system),
            user_us_per_rt: us(user),
        }
    }

    /// Medians of one variant's samples (allocations: the largest); None without any.
    pub fn median(s: &[Sample]) -> Option<Sample> {
        if s.is_empty() {
            return None;
        }
        Some(Sample {
            per_sec: super::median(s.iter().map(|x| x.per_sec).collect()),
            allocs: s.iter().map(|x| x.allocs).max().unwrap_or(0),
            allocs_per_rt: s.iter().map(|x| x.allocs_per_rt).fold(0.0, f64::max),
            cpu_us_per_rt: super::median(s.iter().map(|x| x.cpu_us_per_rt).collect()),
            user_us_per_rt: super::median(s.iter().map(|x| x.user_us_per_rt).collect()),
        })
    }
}

/// Run `f()` to completion on a fresh `xev::rt` runtime on `backend` with `entries`
/// io_uring entries; a runtime that cannot be built is recorded in `ctr`.
pub fn xev_async_run<F: std::future::Future<Output = ()>>(
    backend: xev::Backend,
    entries: u32,
    ctr: &Counter,
    f: impl FnOnce() -> F,
) {
    let rt = match xev::rt::Builder::new()
        .backend(backend)
        .entries(entries)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ctr.fail(format!("xev runtime: {e}")),
    };
    rt.block_on(f());
}
