//! The loop's store of pending timers: a monotonic run plus a heap.
//!
//! Most programs arm timers whose deadlines arrive in order (the same timeout for every
//! request, libxev's million-timers benchmark). Such a timer is appended to the *run*, a
//! FIFO whose deadlines never decrease: `O(1)` to add and to expire, touching nothing but
//! the timer itself. A timer that would break the order goes to the [`Heap`]. Expiry takes
//! whichever front is earlier, so the pair behaves as one priority queue ordered by
//! `(deadline, arming order)`.
//!
//! Each item records where it is (`set_index`): a heap index, or a position in the run
//! with [`RUN_BIT`] set. Removing from the run leaves a tombstone that is dropped when it
//! reaches the front.

use std::collections::VecDeque;

use crate::heap::{Heap, HeapItem, Key};

/// Marks a location as a position in the run rather than a heap index.
const RUN_BIT: usize = 1 << (usize::BITS - 1);

/// Pending timers ordered by deadline, then by arming order.
pub(crate) struct TimerQueue<T: HeapItem> {
    heap: Heap<T>,
    run: VecDeque<Option<(Key, T)>>,
    /// Absolute position of `run[0]`.
    run_base: usize,
    /// Live (non-tombstone) entries in the run.
    run_live: usize,
    seq: u64,
}

impl<T: HeapItem + PartialEq> Default for TimerQueue<T> {
    fn default() -> Self {
        TimerQueue {
            heap: Heap::default(),
            run: VecDeque::new(),
            run_base: 0,
            run_live: 0,
            seq: 0,
        }
    }
}

impl<T: HeapItem + PartialEq> TimerQueue<T> {
    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.heap.len() + self.run_live
    }

    /// Add `item` with `deadline`; ties keep arming order.
    pub(crate) fn push(&mut self, deadline: u64, item: T) {
        self.seq += 1;
        let key = (deadline, self.seq);
        let in_order = match self.run.back() {
            None => true,
            Some(Some((last, _))) => deadline >= last.0,
            // `trim` keeps tombstones off the back; be safe and use the heap.
            Some(None) => false,
        };
        if in_order {
            let pos = self.run_base + self.run.len();
            self.run.push_back(Some((key, item)));
            self.run_live += 1;
            item.set_index(pos | RUN_BIT);
        } else {
            self.heap.push(key, item);
        }
    }

    /// The earliest timer.
    pub(crate) fn peek(&mut self) -> Option<(Key, T)> {
        self.trim();
        let run = self.run.front().copied().flatten();
        match (run, self.heap.peek()) {
            (Some(r), Some(h)) => Some(if r.0 <= h.0 { r } else { h }),
            (r, h) => r.or(h),
        }
    }

    /// Remove and return the earliest timer.
    pub(crate) fn pop(&mut self) -> Option<(Key, T)> {
        let (key, item) = self.peek()?;
        match self.run.front() {
            Some(Some((k, _))) if *k == key => {
                self.run.pop_front();
                self.run_base += 1;
                self.run_live -= 1;
            }
            _ => {
                self.heap.pop();
            }
        }
        Some((key, item))
    }

    /// Remove `item`, located at `loc` (the value it last received through `set_index`).
    /// Returns false if `item` is not there.
    pub(crate) fn remove(&mut self, item: T, loc: usize) -> bool {
        if loc & RUN_BIT != 0 {
            let pos = loc & !RUN_BIT;
            let Some(slot) = pos
                .checked_sub(self.run_base)
                .and_then(|i| self.run.get_mut(i))
            else {
                return false;
            };
            if !matches!(slot, Some((_, it)) if *it == item) {
                return false;
            }
            *slot = None;
            self.run_live -= 1;
            self.trim();
            true
        } else if self.heap.get(loc) == Some(item) {
            self.heap.remove(loc);
            true
        } else {
            false
        }
    }

    /// Remove every timer, in no particular order.
    pub(crate) fn drain(&mut self) -> Vec<T> {
        let mut all: Vec<T> = self.heap.drain().collect();
        all.extend(self.run.drain(..).flatten().map(|(_, it)| it));
        self.run_base = 0;
        self.run_live = 0;
        all
    }

    /// Drop tombstones from both ends of the run.
    fn trim(&mut self) {
        while let Some(None) = self.run.front() {
            self.run.pop_front();
            self.run_base += 1;
        }
        while let Some(None) = self.run.back() {
            self.run.pop_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Clone, Copy)]
    struct Item<'a>(&'a Cell<usize>, u32);

    impl PartialEq for Item<'_> {
        fn eq(&self, other: &Self) -> bool {
            self.1 == other.1
        }
    }

    impl HeapItem for Item<'_> {
        fn set_index(self, index: usize) {
            self.0.set(index);
        }
    }

    #[test]
    fn in_order_timers_use_the_run_and_out_of_order_the_heap() {
        let cells: Vec<Cell<usize>> = (0..4).map(|_| Cell::new(0)).collect();
        let mut q = TimerQueue::default();
        q.push(10, Item(&cells[0], 0));
        q.push(20, Item(&cells[1], 1));
        q.push(5, Item(&cells[2], 2)); // earlier than the run's back: heap
        q.push(20, Item(&cells[3], 3)); // tie: FIFO after item 1
        assert!(cells[0].get() & RUN_BIT != 0);
        assert!(cells[2].get() & RUN_BIT == 0);
        assert_eq!(q.len(), 4);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop().map(|(_, i)| i.1)).collect();
        assert_eq!(order, vec![2, 0, 1, 3]);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn remove_from_run_and_heap_and_stale_locations() {
        let cells: Vec<Cell<usize>> = (0..5).map(|_| Cell::new(0)).collect();
        let mut q = TimerQueue::default();
        for (i, d) in [1u64, 2, 3, 0, 4].iter().enumerate() {
            q.push(*d, Item(&cells[i], i as u32));
        }
        assert!(q.remove(Item(&cells[1], 1), cells[1].get())); // middle of run
        assert!(!q.remove(Item(&cells[1], 1), cells[1].get())); // already gone
        assert!(q.remove(Item(&cells[3], 3), cells[3].get())); // heap
        assert!(q.remove(Item(&cells[4], 4), cells[4].get())); // back of run
        assert_eq!(q.len(), 2);
        let order: Vec<u32> = std::iter::from_fn(|| q.pop().map(|(_, i)| i.1)).collect();
        assert_eq!(order, vec![0, 2]);
        // a location from before the front moved on is not found
        assert!(!q.remove(Item(&cells[0], 0), cells[0].get()));
    }

    #[test]
    // 20,000 steps of safe code: minutes under Miri; the smaller tests above run there.
    #[cfg_attr(miri, ignore)]
    fn random_mix_matches_a_sorted_model() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let cells: Vec<Cell<usize>> = (0..500).map(|_| Cell::new(0)).collect();
        let mut queued = vec![None; cells.len()];
        let mut model = std::collections::BTreeSet::new();
        let mut q = TimerQueue::default();
        let mut clock = 0u64;
        for _ in 0..20_000 {
            let id = (rnd() % cells.len() as u64) as usize;
            match rnd() % 4 {
                // mostly rising deadlines, sometimes earlier ones
                0 | 1 if queued[id].is_none() => {
                    clock += rnd() % 3;
                    let d = if rnd() % 5 == 0 {
                        clock.saturating_sub(rnd() % 50)
                    } else {
                        clock
                    };
                    q.push(d, Item(&cells[id], id as u32));
                    let key = (d, q.seq);
                    model.insert((key, id));
                    queued[id] = Some(key);
                }
                2 if queued[id].is_some() => {
                    assert!(q.remove(Item(&cells[id], id as u32), cells[id].get()));
                    model.remove(&(queued[id].take().unwrap(), id));
                }
                _ => {
                    let want = model.iter().next().copied();
                    let got = q.pop().map(|(k, it)| (k, it.1 as usize));
                    assert_eq!(got, want);
                    if let Some((k, i)) = want {
                        model.remove(&(k, i));
                        queued[i] = None;
                    }
                }
            }
            assert_eq!(q.len(), model.len());
        }
    }
}
