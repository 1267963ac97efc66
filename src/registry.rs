//! The loop's registry of Active completions.
//!
//! Every completion that is Active has a [`Ticket`] naming it. Most hold a slot here with
//! their address and a generation. The loop dereferences a completion address that did
//! not come from its own queues only after finding it again by ticket: a cancel request
//! names its target by ticket, so a target that already finished (and may have been
//! freed) is simply not found. The registry also lets [`Loop`](crate::Loop)'s drop find
//! every operation still in flight.
//!
//! The exception is a timer in the timer queue's monotonic run (almost every timer): its
//! ticket is its run position ([`Ticket::run`]), which is unique over the loop's life, and
//! the loop finds it in the run instead. It takes no slot (a million timers cost the
//! registry nothing but a count), but it is counted in [`len`](Registry::len) until its
//! callback runs.

use std::ptr::NonNull;

use crate::completion::Completion;

/// The name of one Active period of a completion: a registry slot and its generation
/// (`gen` tells two uses of one slot apart), or a timer's position in the timer queue's
/// run (see [`Ticket::run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

/// The bit of [`Ticket::slot`] that marks a run position (registry slots stay below it).
const RUN_TAG: u32 = 1 << 31;

/// The end of the intrusive free list.
const NO_SLOT: u32 = u32::MAX;

impl Ticket {
    /// The ticket of the timer at absolute position `pos` (below 2^63) of the timer
    /// queue's run: the tag bit, then the position's 63 bits over `slot` and `gen`.
    pub(crate) fn run(pos: u64) -> Ticket {
        debug_assert!(pos < 1 << 63, "run positions fit in 63 bits");
        Ticket {
            slot: RUN_TAG | (pos >> 32) as u32,
            gen: pos as u32,
        }
    }

    /// The run position this ticket names, if it is a run ticket.
    pub(crate) fn run_pos(self) -> Option<u64> {
        (self.slot & RUN_TAG != 0)
            .then(|| (u64::from(self.slot & !RUN_TAG) << 32) | u64::from(self.gen))
    }
}

/// A registry slot: 16 bytes, the free-list link living in what would be padding.
struct Slot {
    ptr: Option<NonNull<Completion>>,
    gen: u32,
    /// While free: the next free slot (or [`NO_SLOT`]).
    next_free: u32,
}

/// A slab of Active completions with an intrusive free list; no allocation once warmed
/// up, and no allocation at all on removal.
pub(crate) struct Registry {
    slots: Vec<Slot>,
    /// First free slot, or [`NO_SLOT`].
    free: u32,
    /// Active completions: slots in use plus run timers.
    live: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            slots: Vec::new(),
            free: NO_SLOT,
            live: 0,
        }
    }
}

impl Registry {
    /// Number of Active completions (registered ones and run timers).
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Register `c`, returning its ticket.
    pub(crate) fn insert(&mut self, c: NonNull<Completion>) -> Ticket {
        self.live += 1;
        if self.free != NO_SLOT {
            let slot = self.free;
            let s = &mut self.slots[slot as usize];
            self.free = s.next_free;
            s.ptr = Some(c);
            return Ticket { slot, gen: s.gen };
        }
        let slot = u32::try_from(self.slots.len())
            .ok()
            .filter(|s| s & RUN_TAG == 0)
            .expect("fewer than 2^31 registered completions");
        self.slots.push(Slot {
            ptr: Some(c),
            gen: 0,
            next_free: NO_SLOT,
        });
        Ticket { slot, gen: 0 }
    }

    /// Count an Active timer queued at run position `pos` (it takes no slot), returning
    /// its ticket.
    pub(crate) fn insert_run(&mut self, pos: u64) -> Ticket {
        self.live += 1;
        Ticket::run(pos)
    }

    /// Unregister the completion holding `t` (a run ticket: stop counting it).
    pub(crate) fn remove(&mut self, t: Ticket) {
        if t.run_pos().is_none() {
            let s = &mut self.slots[t.slot as usize];
            // Removing a registration that is not this one would free a slot another
            // completion holds: checked in release builds too.
            assert!(
                s.gen == t.gen && s.ptr.is_some(),
                "xev: registry removal of a completion that is not registered"
            );
            s.ptr = None;
            s.gen = s.gen.wrapping_add(1);
            s.next_free = self.free;
            self.free = t.slot;
        }
        self.live = self
            .live
            .checked_sub(1)
            .expect("xev: registry removal with no Active completion");
    }

    /// The completion registered under `t`, if it is still that registration (never one
    /// for a run ticket: the timer queue knows those).
    pub(crate) fn get(&self, t: Ticket) -> Option<NonNull<Completion>> {
        // A run ticket's slot has the tag bit, which no slot index reaches.
        let s = self.slots.get(t.slot as usize)?;
        if s.gen == t.gen {
            s.ptr
        } else {
            None
        }
    }

    /// Every registered completion (not the run timers).
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
    fn a_slot_is_16_bytes() {
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(std::mem::size_of::<Ticket>(), 8);
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

    /// The free list is a LIFO threaded through the free slots: every slot freed is
    /// reused before the slab grows.
    #[test]
    fn freed_slots_are_reused_before_growing() {
        let mut r = Registry::default();
        let ts: Vec<Ticket> = (1..=100).map(|i| r.insert(fake(i * 8))).collect();
        for t in ts.iter().step_by(3) {
            r.remove(*t);
        }
        assert_eq!(r.len(), 66);
        let again: Vec<Ticket> = (0..34).map(|i| r.insert(fake(1000 + i * 8))).collect();
        let mut reused: Vec<u32> = again.iter().map(|t| t.slot).collect();
        reused.sort();
        let freed: Vec<u32> = ts.iter().step_by(3).map(|t| t.slot).collect();
        assert_eq!(reused, freed, "exactly the freed slots, before any new one");
        assert_eq!(r.slots.len(), 100);
        for t in ts.iter().step_by(3) {
            assert_eq!(r.get(*t), None, "old generation");
        }
        assert_eq!(r.insert(fake(4096)).slot, 100, "then the slab grows");
    }

    #[test]
    fn run_tickets_round_trip_and_are_counted_but_never_found() {
        for pos in [
            0u64,
            1,
            0xffff_ffff,
            1 << 32,
            (1 << 63) - 1,
            123_456_789_012,
        ] {
            let t = Ticket::run(pos);
            assert_eq!(t.run_pos(), Some(pos));
        }
        let mut r = Registry::default();
        let a = r.insert(fake(8));
        assert_eq!(a.run_pos(), None, "slot tickets are not run tickets");
        assert_eq!(Ticket { slot: 5, gen: 7 }.run_pos(), None);
        let t = r.insert_run(0);
        assert_eq!(t, Ticket::run(0));
        assert_ne!(t, a, "a run ticket never equals a slot ticket");
        assert_eq!(r.len(), 2);
        assert_eq!(r.get(t), None, "the registry does not hold run timers");
        assert_eq!(r.iter().count(), 1);
        r.remove(t);
        assert_eq!(r.len(), 1);
        assert_eq!(r.get(a), Some(fake(8)));
        r.remove(a);
        assert_eq!(r.len(), 0);
    }

    #[test]
    #[should_panic(expected = "not registered")]
    fn removing_a_stale_ticket_panics() {
        let mut r = Registry::default();
        let a = r.insert(fake(8));
        r.remove(a);
        r.insert(fake(16));
        r.remove(a);
    }
}
