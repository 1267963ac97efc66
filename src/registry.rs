//! The loop's registry of Active completions.
//!
//! Every completion that is Active has a slot here holding its address and a generation.
//! The loop dereferences a completion address that did not come from its own queues only
//! after finding it here: a cancel request names its target by `(slot, generation)`, so a
//! target that already finished (and may have been freed) is simply not found. The
//! registry also lets [`Loop`](crate::Loop)'s drop find every operation still in flight.

use std::ptr::NonNull;

use crate::completion::Completion;

/// Where a completion is registered; `gen` tells two uses of one slot apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

struct Slot {
    ptr: Option<NonNull<Completion>>,
    gen: u32,
}

/// A slab of Active completions with a free list; no allocation once warmed up.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Registry {
    /// Number of registered (Active) completions.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Register `c`, returning its ticket.
    pub(crate) fn insert(&mut self, c: NonNull<Completion>) -> Ticket {
        self.live += 1;
        if let Some(slot) = self.free.pop() {
            let s = &mut self.slots[slot as usize];
            s.ptr = Some(c);
            return Ticket { slot, gen: s.gen };
        }
        let slot = u32::try_from(self.slots.len()).expect("fewer than 2^32 active completions");
        self.slots.push(Slot {
            ptr: Some(c),
            gen: 0,
        });
        // Every slot may be free at once: size the free list now so `remove` never
        // allocates.
        if self.free.capacity() < self.slots.len() {
            self.free.reserve(self.slots.capacity() - self.free.len());
        }
        Ticket { slot, gen: 0 }
    }

    /// Unregister the completion holding `t`.
    pub(crate) fn remove(&mut self, t: Ticket) {
        let s = &mut self.slots[t.slot as usize];
        // Removing a registration that is not this one would free a slot another
        // completion holds: checked in release builds too.
        assert!(
            s.gen == t.gen && s.ptr.is_some(),
            "xev: registry removal of a completion that is not registered"
        );
        s.ptr = None;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(t.slot);
        self.live -= 1;
    }

    /// The completion registered under `t`, if it is still that registration.
    pub(crate) fn get(&self, t: Ticket) -> Option<NonNull<Completion>> {
        let s = self.slots.get(t.slot as usize)?;
        if s.gen == t.gen {
            s.ptr
        } else {
            None
        }
    }

    /// Every registered completion.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NonNull<Completion>> + '_ {
        self.slots.iter().filter_map(|s| s.ptr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(addr: usize) -> NonNull<Completion> {
        // Never dereferenced: the registry only stores and compares addresses.
        NonNull::new(addr as *mut Completion).unwrap()
    }

    #[test]
    fn insert_get_remove_reuse_with_new_generation() {
        let mut r = Registry::default();
        let a = r.insert(fake(8));
        let b = r.insert(fake(16));
        assert_eq!(r.len(), 2);
        assert_eq!(r.get(a), Some(fake(8)));
        r.remove(a);
        assert_eq!(r.get(a), None, "a finished registration is not found");
        let c = r.insert(fake(24));
        assert_eq!(c.slot, a.slot, "slot reused");
        assert_ne!(c.gen, a.gen, "with a new generation");
        assert_eq!(r.get(a), None);
        assert_eq!(r.get(c), Some(fake(24)));
        assert_eq!(r.get(b), Some(fake(16)));
        assert_eq!(r.iter().count(), 2);
        assert_eq!(r.get(Ticket { slot: 99, gen: 0 }), None);
    }
}
