//! Which worker owns each guest queue. Immutable once built; shared by the workers.
//!
//! A guest queue's slot is `guest id * MAX_QUEUES + queue`: fixed for the guest's life, so a
//! slot number means the same queue in every publication, in a frame's ring tag and in the
//! per-slot cycle counters, whatever guests come and go around it.

use crate::config::{MAX_GUESTS, MAX_QUEUES};
use crate::fib::GuestId;

/// Slots a switch can ever have: every queue of every guest id.
pub const MAX_SLOTS: usize = MAX_GUESTS * MAX_QUEUES as usize;
/// `owner` of a slot no guest queue uses.
pub const NO_OWNER: u16 = u16::MAX;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryMap {
    /// Per guest id: configured queue pairs, 0 for an id not in use.
    queues: Vec<u16>,
    /// Per slot (`queues.len() * MAX_QUEUES` of them): the owning worker, or `NO_OWNER`.
    owner: Vec<u16>,
    /// The ids in use, ascending: what a flood walks.
    live: Vec<GuestId>,
}

impl DeliveryMap {
    /// Configured queue pairs of guest `guest` (0 if the id is not in use).
    #[inline]
    pub fn queues(&self, guest: usize) -> u16 {
        self.queues.get(guest).copied().unwrap_or(0)
    }

    /// A dense index for (guest, queue), usable as an array index and as a ring tag.
    #[inline]
    pub fn slot(&self, guest: usize, queue: u16) -> usize {
        guest * MAX_QUEUES as usize + usize::from(queue)
    }

    /// The worker owning (guest, queue); `NO_OWNER` as usize for a queue not in use.
    #[inline]
    pub fn owner(&self, guest: usize, queue: u16) -> usize {
        self.slot_owner(self.slot(guest, queue))
    }

    #[inline]
    pub fn slot_owner(&self, slot: usize) -> usize {
        usize::from(self.owner.get(slot).copied().unwrap_or(NO_OWNER))
    }

    /// One past the highest slot that may be in use.
    pub fn slots(&self) -> usize {
        self.owner.len()
    }

    /// The guest ids in use, ascending.
    #[inline]
    pub fn guests(&self) -> &[GuestId] {
        &self.live
    }

    /// The guest a slot belongs to.
    #[inline]
    pub fn slot_guest(&self, slot: usize) -> usize {
        slot / MAX_QUEUES as usize
    }

    /// (guest, queue) of a slot.
    pub fn slot_queue(&self, slot: usize) -> (usize, u16) {
        (self.slot_guest(slot), (slot % MAX_QUEUES as usize) as u16)
    }

    /// Every slot in use, ascending.
    pub fn used_slots(&self) -> impl Iterator<Item = usize> + '_ {
        self.live.iter().flat_map(move |g| (0..self.queues(g.index())).map(move |q| self.slot(g.index(), q)))
    }

    /// Per guest id: its slot when it has a single queue and worker `me` owns it, else
    /// `u32::MAX`. Lets a worker deliver to its own single-queue guests without a hash or an
    /// owner lookup per frame.
    pub fn local_single_slots(&self, me: usize) -> Vec<u32> {
        (0..self.queues.len())
            .map(|g| if self.queues(g) == 1 && self.owner(g, 0) == me { self.slot(g, 0) as u32 } else { u32::MAX })
            .collect()
    }

    /// Adds guest `guest` with `owners[q]` owning its queue q. The id must be free.
    pub fn insert(&mut self, guest: GuestId, owners: &[u16]) {
        let g = guest.index();
        debug_assert!(g < MAX_GUESTS && !owners.is_empty() && owners.len() <= usize::from(MAX_QUEUES));
        if self.queues.len() <= g {
            self.queues.resize(g + 1, 0);
            self.owner.resize((g + 1) * usize::from(MAX_QUEUES), NO_OWNER);
        }
        self.queues[g] = owners.len() as u16;
        for (q, &w) in owners.iter().enumerate() {
            let s = self.slot(g, q as u16);
            self.owner[s] = w;
        }
        if let Err(at) = self.live.binary_search(&guest) {
            self.live.insert(at, guest);
        }
    }

    /// Removes guest `guest` (nothing if the id is not in use).
    pub fn remove(&mut self, guest: GuestId) {
        let g = guest.index();
        if self.queues(g) == 0 {
            return;
        }
        for q in 0..self.queues[g] {
            let s = self.slot(g, q);
            self.owner[s] = NO_OWNER;
        }
        self.queues[g] = 0;
        self.live.retain(|&x| x != guest);
        // Keep the tables as short as the highest id in use.
        let len = self.live.last().map_or(0, |l| l.index() + 1);
        self.queues.truncate(len);
        self.owner.truncate(len * usize::from(MAX_QUEUES));
    }

    /// Gives slot `slot` (in use) to worker `w`.
    pub fn set_owner(&mut self, slot: usize, w: u16) {
        debug_assert!(self.owner[slot] != NO_OWNER);
        self.owner[slot] = w;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_fixed_per_guest_and_removal_leaves_others_alone() {
        let mut d = DeliveryMap::default();
        d.insert(GuestId(0), &[0]);
        d.insert(GuestId(2), &[1, 0, 1]);
        assert_eq!(d.guests(), &[GuestId(0), GuestId(2)]);
        assert_eq!(d.slot(2, 1), 2 * MAX_QUEUES as usize + 1);
        assert_eq!(d.owner(2, 1), 0);
        assert_eq!(d.owner(2, 2), 1);
        assert_eq!(d.owner(1, 0), usize::from(NO_OWNER));
        assert_eq!(d.slot_queue(d.slot(2, 2)), (2, 2));
        assert_eq!(d.used_slots().collect::<Vec<_>>(), vec![0, 16, 17, 18]);
        assert_eq!(d.local_single_slots(0), vec![0, u32::MAX, u32::MAX]);
        d.remove(GuestId(2));
        assert_eq!(d.guests(), &[GuestId(0)]);
        assert_eq!(d.queues(2), 0);
        assert_eq!(d.slots(), MAX_QUEUES as usize);
        d.insert(GuestId(1), &[1]);
        assert_eq!(d.guests(), &[GuestId(0), GuestId(1)]);
        assert_eq!(d.owner(1, 0), 1);
        assert_eq!(d.owner(0, 0), 0);
    }
}
