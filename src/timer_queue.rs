//! The loop's store of pending timers: a monotonic run plus a heap.
//!
//! Most programs arm timers whose deadlines arrive in order (the same timeout for every
//! request, libxev's million-timers benchmark). Such a timer is appended to the *run*, a
//! FIFO whose deadlines never decrease: `O(1)` to add and to expire, touching nothing but
//! the timer itself. A timer that would break the order goes to the [`Heap`]. Expiry takes
//! whichever front is earlier, so the pair behaves as one priority queue ordered by
//! `(deadline, arming order)`.
//!
//! **Memory.** A run entry is one pointer (8 bytes): the deadline is read from the item
//! itself ([`TimerItem::deadline`]), a removed entry is a `None` tombstone, and arming
//! order within the run is its FIFO order. Every run entry has an *absolute position*
//! (`run_base` + its index), assigned in arming order and never reused during the queue's
//! life (tombstones are dropped only from the front, and [`drain`](TimerQueue::drain)
//! keeps counting), so a position names one arming of one timer: the loop hands it out
//! as the timer's cancel ticket, and [`run_item`](TimerQueue::run_item) finds it again.
//!
//! **Ties between the run and the heap.** A heap entry records the run's end position
//! when it was armed (`run_end`). The run entry at position `p` was armed before that heap
//! entry iff `p < run_end` (the end only grows, by one per run arming), so at equal
//! deadlines the run entry goes first iff `p < run_end`. Ties inside the heap are broken
//! by a sequence number counted over heap armings.
//!
//! Each item records where it is (`set_index`): a heap index, or its run position
//! (truncated to the bits of a `usize`) with [`RUN_BIT`] set.

use std::collections::VecDeque;

use crate::heap::{Heap, HeapItem};

/// Marks a location as a position in the run rather than a heap index.
const RUN_BIT: usize = 1 << (usize::BITS - 1);

/// A timer the queue can hold: a pointer-like handle that records its location and
/// knows its deadline.
pub(crate) trait TimerItem: HeapItem + PartialEq {
    /// The item's deadline; it does not change while the item is queued.
    fn deadline(self) -> u64;
}

/// A heap entry: the item and the run's end position when it was armed.
#[derive(Clone, Copy)]
struct HeapEntry<T> {
    item: T,
    run_end: u64,
}

impl<T: HeapItem> HeapItem for HeapEntry<T> {
    fn set_index(self, index: usize) {
        self.item.set_index(index);
    }
}

/// Pending timers ordered by deadline, then by arming order.
pub(crate) struct TimerQueue<T: TimerItem> {
    heap: Heap<HeapEntry<T>>,
    run: VecDeque<Option<T>>,
    /// Absolute position of `run[0]`; positions are never reused.
    run_base: u64,
    /// Live (non-tombstone) entries in the run.
    run_live: usize,
    /// Deadline of the newest run entry (tombstone or not), while the run is not empty:
    /// an item with an earlier deadline goes to the heap.
    run_last: u64,
    /// Heap arming order (ties inside the heap).
    seq: u64,
}

impl<T: TimerItem> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: Heap::default(),
            run: VecDeque::new(),
            run_base: 0,
            run_live: 0,
            run_last: 0,
            seq: 0,
        }
    }
}

impl<T: TimerItem> TimerQueue<T> {
    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.run_live
    }

    /// Add `item` (at its [`deadline`](TimerItem::deadline)); ties keep arming order.
    /// Returns its absolute run position if it went to the run, `None` for the heap.
    pub(crate) fn push(&mut self, item: T) -> Option<u64> {
        let deadline = item.deadline();
        if self.run_live == 0 {
            self.clear_run();
        }
        if self.run.is_empty() || deadline >= self.run_last {
            let pos = self.run_end();
            self.run.push_back(Some(item));
            self.run_live += 1;
            self.run_last = deadline;
            item.set_index(pos as usize | RUN_BIT);
            Some(pos)
        } else {
            self.seq += 1;
            let run_end = self.run_end();
            self.heap
                .push((deadline, self.seq), HeapEntry { item, run_end });
            None
        }
    }

    /// The earliest timer and its deadline.
    pub(crate) fn peek(&mut self) -> Option<(u64, T)> {
        self.front().map(|(d, item, _)| (d, item))
    }

    /// Remove and return the earliest timer and its deadline.
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        let (deadline, item, from_run) = self.front()?;
        if from_run {
            self.run.pop_front();
            self.run_base += 1;
            self.run_live -= 1;
        } else {
            self.heap.pop();
        }
        Some((deadline, item))
    }

    /// Remove `item`, located at `loc` (the value it last received through `set_index`).
    /// Returns false if `item` is not there.
    pub(crate) fn remove(&mut self, item: T, loc: usize) -> bool {
        if loc & RUN_BIT != 0 {
            let Some(i) = self.run_index(loc) else {
                return false;
            };
            let slot = &mut self.run[i];
            if *slot != Some(item) {
                return false;
            }
            *slot = None;
            self.run_live -= 1;
            if self.run_live == 0 {
                self.clear_run();
            } else {
                self.trim_front();
            }
            true
        } else if self.heap.get(loc).map(|e| e.item) == Some(item) {
            self.heap.remove(loc);
            true
        } else {
            false
        }
    }

    /// The live item at absolute run position `pos`, if it is still queued there (a
    /// position that fired, was removed, or was never handed out gives `None`).
    pub(crate) fn run_item(&self, pos: u64) -> Option<T> {
        let i = usize::try_from(pos.checked_sub(self.run_base)?).ok()?;
        self.run.get(i).copied().flatten()
    }

    /// Remove every timer, in no particular order. Run positions keep counting, so a
    /// position handed out before is never handed out again.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.heap.drain().map(|e| e.item).collect();
        all.extend(self.run.iter().flatten());
        self.clear_run();
        all
    }

    /// Position the next run entry gets.
    fn run_end(&self) -> u64 {
        self.run_base + self.run.len() as u64
    }

    /// Index in `run` of the location `loc` (a run position truncated to a `usize`, with
    /// [`RUN_BIT`]), if it is inside the run. Positions cover far more than the run's
    /// length, so the truncated difference identifies the entry on 32-bit targets too.
    fn run_index(&self, loc: usize) -> Option<usize> {
        let i = (loc & !RUN_BIT).wrapping_sub(self.run_base as usize) & !RUN_BIT;
        (i < self.run.len()).then_some(i)
    }

    /// The earliest timer: (deadline, item, whether it is the run's front).
    fn front(&mut self) -> Option<(u64, T, bool)> {
        self.trim_front();
        let run = self.run.front().copied().flatten();
        match (run, self.heap.peek()) {
            (Some(r), Some(((hd, _), h))) => {
                let rd = r.deadline();
                // At equal deadlines the run's front (position `run_base`) was armed
                // first iff it is before the heap entry's recorded run end.
                if rd < hd || (rd == hd && self.run_base < h.run_end) {
                    Some((rd, r, true))
                } else {
                    Some((hd, h.item, false))
                }
            }
            (Some(r), None) => Some((r.deadline(), r, true)),
            (None, Some(((hd, _), h))) => Some((hd, h.item, false)),
            (None, None) => None,
        }
    }

    /// Drop tombstones from the front of the run.
    fn trim_front(&mut self) {
        while let Some(None) = self.run.front() {
            self.run.pop_front();
            self.run_base += 1;
        }
    }

    /// Forget the run's entries (all tombstones, or drained), keeping the positions.
    fn clear_run(&mut self) {
        self.run_base = self.run_end();
        self.run.clear();
        self.run_live = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::collections::BTreeMap;

    /// A test timer: its deadline, where the queue says it is, and a name.
    struct Timer {
        deadline: Cell<u64>,
        loc: Cell<usize>,
        id: usize,
    }

    fn timers(n: usize) -> Vec<Timer> {
        (0..n)
            .map(|id| Timer {
                deadline: Cell::new(0),
                loc: Cell::new(0),
                id,
            })
            .collect()
    }

    #[derive(Clone, Copy)]
    struct Item<'a>(&'a Timer);

    impl PartialEq for Item<'_> {
        fn eq(&self, other: &Self) -> bool {
            std::ptr::eq(self.0, other.0)
        }
    }

    impl HeapItem for Item<'_> {
        fn set_index(self, index: usize) {
            self.0.loc.set(index);
        }
    }

    impl TimerItem for Item<'_> {
        fn deadline(self) -> u64 {
            self.0.deadline.get()
        }
    }

    fn push<'a>(q: &mut TimerQueue<Item<'a>>, t: &'a Timer, deadline: u64) -> Option<u64> {
        t.deadline.set(deadline);
        q.push(Item(t))
    }

    fn drain_ids(q: &mut TimerQueue<Item<'_>>) -> Vec<usize> {
        std::iter::from_fn(|| q.pop().map(|(_, i)| i.0.id)).collect()
    }

    #[test]
    fn a_run_entry_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Option<Item<'_>>>(), 8);
        assert_eq!(
            std::mem::size_of::<Option<std::ptr::NonNull<crate::Completion>>>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn in_order_timers_use_the_run_and_out_of_order_the_heap() {
        let t = timers(4);
        let mut q = TimerQueue::default();
        assert_eq!(push(&mut q, &t[0], 10), Some(0));
        assert_eq!(push(&mut q, &t[1], 20), Some(1));
        assert_eq!(push(&mut q, &t[2], 5), None); // earlier than the run's back: heap
        assert_eq!(push(&mut q, &t[3], 20), Some(2)); // tie: FIFO after timer 1
        assert!(t[0].loc.get() & RUN_BIT != 0);
        assert!(t[2].loc.get() & RUN_BIT == 0);
        assert_eq!(q.len(), 4);
        assert_eq!(q.peek().map(|(d, i)| (d, i.0.id)), Some((5, 2)));
        assert_eq!(drain_ids(&mut q), vec![2, 0, 1, 3]);
        assert_eq!(q.len(), 0);
    }

    /// Equal deadlines fire in arming order whichever side (run or heap) holds them.
    #[test]
    fn equal_deadlines_fire_in_arming_order_across_run_and_heap() {
        let t = timers(9);
        let mut q = TimerQueue::default();
        push(&mut q, &t[0], 10); // run
        push(&mut q, &t[1], 50); // run
        push(&mut q, &t[2], 10); // heap, after 0
        push(&mut q, &t[3], 50); // run, after 1 and 2
        push(&mut q, &t[4], 10); // heap, after 2
        push(&mut q, &t[5], 30); // heap
        push(&mut q, &t[6], 50); // run
        push(&mut q, &t[7], 30); // heap, after 5
        push(&mut q, &t[8], 10); // heap
        assert_eq!(drain_ids(&mut q), vec![0, 2, 4, 8, 5, 7, 1, 3, 6]);

        // A heap entry armed before a run entry of the same deadline goes first, also
        // after the run's front moved past tombstones.
        let t = timers(6);
        let mut q = TimerQueue::default();
        push(&mut q, &t[0], 100); // run, position 0
        push(&mut q, &t[1], 40); // heap (run_end 1)
        push(&mut q, &t[2], 100); // run, position 1
        push(&mut q, &t[3], 100); // run, position 2
        push(&mut q, &t[4], 100); // run, position 3
        assert!(q.remove(Item(&t[0]), t[0].loc.get()));
        assert!(q.remove(Item(&t[2]), t[2].loc.get()));
        push(&mut q, &t[5], 100); // run, position 4
        assert_eq!(q.pop().map(|(d, i)| (d, i.0.id)), Some((40, 1)));
        assert_eq!(drain_ids(&mut q), vec![3, 4, 5]);

        // Same deadline everywhere: heap entries armed between run entries interleave.
        let t = timers(7);
        let mut q = TimerQueue::default();
        push(&mut q, &t[0], 9); // run 0
        push(&mut q, &t[1], 9); // run 1
        push(&mut q, &t[2], 20); // run 2
        push(&mut q, &t[3], 9); // heap, armed after run 0 and 1 (run_end 3)
        push(&mut q, &t[4], 20); // run 3, after 3
        push(&mut q, &t[5], 20); // run 4
        push(&mut q, &t[6], 9); // heap
        assert_eq!(drain_ids(&mut q), vec![0, 1, 3, 6, 2, 4, 5]);
    }

    #[test]
    fn remove_from_run_and_heap_and_stale_locations() {
        let t = timers(5);
        let mut q = TimerQueue::default();
        for (i, d) in [1u64, 2, 3, 0, 4].iter().enumerate() {
            push(&mut q, &t[i], *d);
        }
        assert!(q.remove(Item(&t[1]), t[1].loc.get())); // middle of run
        assert!(!q.remove(Item(&t[1]), t[1].loc.get())); // already gone
        assert!(q.remove(Item(&t[3]), t[3].loc.get())); // heap
        assert!(!q.remove(Item(&t[3]), t[3].loc.get()));
        assert!(q.remove(Item(&t[4]), t[4].loc.get())); // back of run
        assert_eq!(q.len(), 2);
        // The back's tombstone stays: the next in-order timer gets a new position
        // (the heap timer took none).
        assert_eq!(push(&mut q, &t[4], 4), Some(4));
        assert_eq!(drain_ids(&mut q), vec![0, 2, 4]);
        // a location from before the front moved on is not found
        assert!(!q.remove(Item(&t[0]), t[0].loc.get()));
        // Another item at a location is not removed in its place.
        push(&mut q, &t[0], 7);
        assert!(!q.remove(Item(&t[1]), t[0].loc.get()));
        assert_eq!(q.len(), 1);
    }

    /// Run positions name one arming each, for the queue's whole life: after a timer
    /// fired, was removed, or the queue was drained, its position finds nothing, and a
    /// re-armed timer gets a new position.
    #[test]
    fn run_positions_are_never_reused() {
        let t = timers(3);
        let mut q = TimerQueue::default();
        let a = push(&mut q, &t[0], 1).unwrap();
        let b = push(&mut q, &t[1], 2).unwrap();
        assert_eq!(q.run_item(a).map(|i| i.0.id), Some(0));
        assert_eq!(q.run_item(b).map(|i| i.0.id), Some(1));
        assert!(q.run_item(b + 1).is_none(), "not handed out yet");
        assert!(q.remove(Item(&t[1]), t[1].loc.get()));
        assert!(q.run_item(b).is_none(), "removed");
        let b2 = push(&mut q, &t[1], 2).unwrap();
        assert!(b2 > b, "a re-armed timer gets a new position");
        q.pop();
        assert!(q.run_item(a).is_none(), "fired");
        // The run empties entirely (every entry gone), then refills.
        assert!(q.remove(Item(&t[1]), t[1].loc.get()));
        assert_eq!(q.len(), 0);
        let c = push(&mut q, &t[2], 0).unwrap();
        assert!(c > b2);
        // Heap timers have no position.
        push(&mut q, &t[0], 5);
        assert_eq!(push(&mut q, &t[1], 1), None);
        let drained = q.drain();
        assert_eq!(drained.len(), 3);
        assert!(q.run_item(c).is_none(), "drained");
        assert!(
            push(&mut q, &t[0], 0).unwrap() > c + 1,
            "drain keeps counting"
        );
        q.pop();
        // Many arm/fire cycles of one timer: every old position stays stale.
        let mut old = vec![a, b, b2, c];
        let cycles = if cfg!(miri) { 50 } else { 1000 };
        for _ in 0..cycles {
            let p = push(&mut q, &t[0], 3).unwrap();
            assert_eq!(q.run_item(p).map(|i| i.0.id), Some(0));
            assert!(old.iter().all(|&o| q.run_item(o).is_none()));
            q.pop();
            old.push(p);
        }
        assert_eq!(q.len(), 0);
    }

    /// Pushes, removals and pops mixed at random, checked step by step against a
    /// `BTreeMap` keyed by (deadline, arming order); also checks `run_item` for live and
    /// stale positions.
    #[test]
    fn random_mix_matches_a_sorted_model() {
        // A million steps; a few thousand under Miri (which is far slower).
        let steps = if cfg!(miri) { 3_000 } else { 1_000_000 };
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t = timers(if cfg!(miri) { 200 } else { 5000 });
        // Per timer while queued: its model key (deadline, arming order) and its run
        // position.
        type Queued = Option<((u64, u64), Option<u64>)>;
        let mut queued: Vec<Queued> = vec![None; t.len()];
        let mut stale: Vec<u64> = Vec::new();
        let mut model = BTreeMap::new();
        let mut q = TimerQueue::default();
        let mut clock = 0u64;
        let mut armed = 0u64;
        let mut heap_pushes = 0;
        for step in 0..steps {
            let id = (rnd() % t.len() as u64) as usize;
            match rnd() % 8 {
                // mostly rising deadlines, sometimes earlier ones, many ties
                0..=3 if queued[id].is_none() => {
                    clock += rnd() % 2;
                    let d = if rnd() % 8 == 0 {
                        clock.saturating_sub(rnd() % 50)
                    } else {
                        clock + rnd() % 3
                    };
                    armed += 1;
                    let pos = push(&mut q, &t[id], d);
                    heap_pushes += pos.is_none() as u32;
                    model.insert((d, armed), id);
                    queued[id] = Some(((d, armed), pos));
                }
                4 if queued[id].is_some() => {
                    assert!(q.remove(Item(&t[id]), t[id].loc.get()));
                    assert!(!q.remove(Item(&t[id]), t[id].loc.get()));
                    let (key, pos) = queued[id].take().unwrap();
                    model.remove(&key);
                    stale.extend(pos);
                }
                5 => {
                    if let Some((_, pos)) = queued[id] {
                        let got = pos.and_then(|p| q.run_item(p)).map(|i| i.0.id);
                        assert_eq!(got, pos.map(|_| id), "live position");
                    }
                    if !stale.is_empty() {
                        let p = stale[(rnd() % stale.len() as u64) as usize];
                        assert!(q.run_item(p).is_none(), "stale position {p}");
                    }
                }
                _ => {
                    let want = model.iter().next().map(|(k, i)| (k.0, *i));
                    let got = q.pop().map(|(d, it)| (d, it.0.id));
                    assert_eq!(got, want, "step {step}");
                    if let Some((_, i)) = want {
                        let (key, pos) = queued[i].take().unwrap();
                        model.remove(&key);
                        stale.extend(pos);
                    }
                }
            }
            if stale.len() > 10_000 {
                stale.drain(..5_000);
            }
            assert_eq!(q.len(), model.len());
        }
        assert!(heap_pushes > steps / 100, "the heap path was exercised");
        let mut rest = q.drain();
        rest.sort_by_key(|i| i.0.id);
        let mut want: Vec<usize> = model.values().copied().collect();
        want.sort();
        assert_eq!(rest.iter().map(|i| i.0.id).collect::<Vec<_>>(), want);
    }
}
