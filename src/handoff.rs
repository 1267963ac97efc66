//! [`Handoff`]: a queue from any thread to the loop thread that keeps its capacity.
//!
//! Used for pool results and for tasks woken from other threads. A `Mutex<VecDeque>`
//! rather than a lock-free list: pushes are rare next to the work they hand over, the
//! lock is never held for more than a few moves, and once the deque has grown to its
//! working size nothing is allocated per item (the unbounded `concurrent-queue` this
//! replaces allocated a block every 31 pushes).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

pub(crate) struct Handoff<T> {
    items: Mutex<VecDeque<T>>,
}

impl<T> Handoff<T> {
    pub(crate) fn new() -> Handoff<T> {
        Handoff::with_capacity(0)
    }

    /// A queue that holds `n` items before its first allocation after this one.
    pub(crate) fn with_capacity(n: usize) -> Handoff<T> {
        Handoff {
            items: Mutex::new(VecDeque::with_capacity(n)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
        // A panic while holding the lock cannot leave the deque inconsistent.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, item: T) {
        self.lock().push_back(item);
    }

    /// Move every queued item to the back of `into` (both keep their capacity).
    pub(crate) fn take_all(&self, into: &mut VecDeque<T>) {
        into.extend(self.lock().drain(..));
    }

    /// Hand every queued item to `f`, in order.
    pub(crate) fn drain_with(&self, mut f: impl FnMut(T)) {
        let mut items = self.lock();
        while let Some(item) = items.pop_front() {
            f(item);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Drop everything queued.
    pub(crate) fn clear(&self) {
        let items: VecDeque<T> = std::mem::take(&mut *self.lock());
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::Handoff;
    use std::collections::VecDeque;
    use std::sync::Arc;

    #[test]
    fn items_from_threads_arrive_in_per_thread_order() {
        let h = Arc::new(Handoff::new());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || (0..1000u32).for_each(|i| h.push((t, i))))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let mut got = VecDeque::new();
        h.take_all(&mut got);
        assert!(h.is_empty());
        assert_eq!(got.len(), 4000);
        for t in 0..4 {
            let seq: Vec<u32> = got
                .iter()
                .filter(|(x, _)| *x == t)
                .map(|(_, i)| *i)
                .collect();
            assert_eq!(seq, (0..1000).collect::<Vec<_>>());
        }
    }
}
