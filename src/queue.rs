//! An intrusive FIFO of completions, linked through [`Completion`]'s `next` field.
//!
//! The loop never allocates to queue work: a completion can be in at most one queue at a
//! time (ready queue, per-fd waiter queue), and the link lives inside the completion.

use std::ptr::NonNull;

use crate::completion::Completion;

/// Something that can be linked into an [`Intrusive`] queue.
pub(crate) trait Linked {
    /// The link field of `this`.
    ///
    /// # Safety
    /// `this` must point to a live value.
    unsafe fn next(this: NonNull<Self>) -> *mut Option<NonNull<Self>>;
}

impl Linked for Completion {
    unsafe fn next(this: NonNull<Self>) -> *mut Option<NonNull<Self>> {
        // SAFETY: the caller guarantees `this` is live; we only form a raw pointer to the field.
        unsafe { std::ptr::addr_of_mut!((*Completion::raw(this)).next) }
    }
}

/// A singly linked FIFO of `T`s that live elsewhere.
pub(crate) struct Intrusive<T: Linked> {
    head: Option<NonNull<T>>,
    tail: Option<NonNull<T>>,
    len: usize,
}

impl<T: Linked> Default for Intrusive<T> {
    fn default() -> Self {
        Self {
            head: None,
            tail: None,
            len: 0,
        }
    }
}

impl<T: Linked> Intrusive<T> {
    /// True when the queue holds nothing.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    /// Number of queued items.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Append `item` at the back.
    ///
    /// # Safety
    /// `item` must stay live and must not be in any queue until it is popped or removed.
    pub(crate) unsafe fn push(&mut self, item: NonNull<T>) {
        // SAFETY: `item` is live per the caller's contract.
        unsafe { *T::next(item) = None };
        match self.tail {
            // SAFETY: `tail` is a queued, therefore live, item.
            Some(tail) => unsafe { *T::next(tail) = Some(item) },
            None => self.head = Some(item),
        }
        self.tail = Some(item);
        self.len += 1;
    }

    /// Remove and return the front item.
    pub(crate) fn pop(&mut self) -> Option<NonNull<T>> {
        let head = self.head?;
        // SAFETY: queued items are live (push contract).
        let next = unsafe { (*T::next(head)).take() };
        self.head = next;
        if next.is_none() {
            self.tail = None;
        }
        self.len -= 1;
        Some(head)
    }

    /// The front item, without removing it.
    pub(crate) fn peek(&self) -> Option<NonNull<T>> {
        self.head
    }

    /// Remove `item` from anywhere in the queue; returns whether it was found. O(n).
    pub(crate) fn remove(&mut self, item: NonNull<T>) -> bool {
        let mut prev: Option<NonNull<T>> = None;
        let mut cur = self.head;
        while let Some(c) = cur {
            // SAFETY: queued items are live (push contract).
            let next = unsafe { *T::next(c) };
            if c == item {
                match prev {
                    // SAFETY: `p` is a queued, live item.
                    Some(p) => unsafe { *T::next(p) = next },
                    None => self.head = next,
                }
                if self.tail == Some(c) {
                    self.tail = prev;
                }
                // SAFETY: `c` is live; it leaves the queue.
                unsafe { *T::next(c) = None };
                self.len -= 1;
                return true;
            }
            prev = cur;
            cur = next;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Node {
        v: u32,
        next: Cell<Option<NonNull<Node>>>,
    }

    impl Linked for Node {
        unsafe fn next(this: NonNull<Self>) -> *mut Option<NonNull<Self>> {
            // SAFETY: caller guarantees `this` is live.
            unsafe { (*this.as_ptr()).next.as_ptr() }
        }
    }

    fn nodes(n: u32) -> Vec<Node> {
        (0..n)
            .map(|v| Node {
                v,
                next: Cell::new(None),
            })
            .collect()
    }

    fn ptr(n: &Node) -> NonNull<Node> {
        NonNull::from(n)
    }

    fn drain(q: &mut Intrusive<Node>) -> Vec<u32> {
        // SAFETY: every node in these tests outlives its queue.
        std::iter::from_fn(|| q.pop().map(|p| unsafe { p.as_ref().v })).collect()
    }

    #[test]
    fn fifo_order_and_len() {
        let ns = nodes(5);
        let mut q = Intrusive::default();
        for n in &ns {
            // SAFETY: nodes outlive the queue and are pushed once.
            unsafe { q.push(ptr(n)) };
        }
        assert_eq!(q.len(), 5);
        assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty());
        assert!(q.pop().is_none());
    }

    #[test]
    fn remove_head_middle_tail_then_push() {
        let ns = nodes(5);
        let mut q = Intrusive::default();
        for n in &ns {
            // SAFETY: nodes outlive the queue and are pushed once.
            unsafe { q.push(ptr(n)) };
        }
        assert!(q.remove(ptr(&ns[0])));
        assert!(q.remove(ptr(&ns[2])));
        assert!(q.remove(ptr(&ns[4])));
        assert!(!q.remove(ptr(&ns[4])));
        // SAFETY: ns[4] was removed, so it may be pushed again.
        unsafe { q.push(ptr(&ns[4])) };
        assert_eq!(q.len(), 3);
        // SAFETY: the peeked node is one of `ns`, alive for the whole test.
        assert_eq!(q.peek().map(|p| unsafe { p.as_ref().v }), Some(1));
        assert_eq!(drain(&mut q), vec![1, 3, 4]);
    }
}
