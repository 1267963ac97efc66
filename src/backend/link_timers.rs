//! The poll backend's link timeouts (see `link_timeout.rs`): one entry per operation
//! parked on readiness with a time limit, ordered by expiry. An entry names its
//! operation by registry ticket, so an operation that finished (or was rearmed) before
//! its entry expires is simply not found then: nothing is removed when an operation
//! finishes, and an operation's path costs nothing unless it has a limit.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::completion::{Completion, Phase};
use crate::event_loop::Core;
use crate::registry::Ticket;

#[derive(Default)]
pub(crate) struct LinkTimers {
    /// (expiry, ticket slot, ticket generation).
    heap: BinaryHeap<Reverse<(Instant, u32, u32)>>,
}

impl LinkTimers {
    /// `c` was just parked: start its limit, if it has one.
    pub(crate) fn arm(&mut self, core: &mut Core, c: NonNull<Completion>) {
        if core.links.is_empty() {
            return;
        }
        // SAFETY: `c` is Active and live; loop thread.
        let inner = unsafe { &*Completion::raw(c) };
        if inner.phase != Phase::Waiting {
            return;
        }
        // SAFETY: as above.
        let Some(ns) = (unsafe { core.links.of(c) }).map(|l| l.ns) else {
            return;
        };
        // A limit too far to represent never expires.
        if let Some(at) = Instant::now().checked_add(Duration::from_nanos(ns)) {
            let t = inner.ticket;
            self.heap.push(Reverse((at, t.slot, t.gen)));
        }
        // Entries of finished operations wait for their time; with long limits on many
        // short operations they would pile up: drop them once they outnumber the Active
        // completions (amortised O(1) per entry).
        if self.heap.len() > 2 * core.registry.len() + 1024 {
            self.heap.retain(|Reverse((_, slot, gen))| {
                core.registry
                    .get(Ticket {
                        slot: *slot,
                        gen: *gen,
                    })
                    .is_some()
            });
        }
    }

    /// `timeout`, shortened to the next expiry.
    pub(crate) fn cap(&self, timeout: Option<Duration>) -> Option<Duration> {
        let Some(Reverse((at, ..))) = self.heap.peek() else {
            return timeout;
        };
        let left = at.saturating_duration_since(Instant::now());
        Some(timeout.map_or(left, |t| t.min(left)))
    }

    /// Pop the expired entries, handing `f` each operation still parked.
    pub(crate) fn expire(
        &mut self,
        core: &mut Core,
        mut f: impl FnMut(&mut Core, NonNull<Completion>),
    ) {
        if self.heap.is_empty() {
            return;
        }
        let now = Instant::now();
        while let Some(&Reverse((at, slot, gen))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(c) = core.registry.get(Ticket { slot, gen }) else {
                continue; // finished long ago
            };
            // SAFETY: registered, so Active and live; loop thread.
            if unsafe { (*Completion::raw(c)).phase } == Phase::Waiting {
                f(core, c);
            }
        }
    }

    /// Forget every entry (shutdown).
    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
