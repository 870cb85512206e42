//! A worker's side of moving guest queues between workers (the protocol is described in
//! `control::handover`). Runs between two passes, rarely: the only place in a worker that
//! yields its core or frees memory, both while it forwards nothing anyway.

use super::worker::{SlotOut, Worker};
use crate::control::WorkerUpdate;
use crate::rte::Burst;

impl Worker {
    /// Takes the newest assignment; false if told to stop on the way.
    pub(super) fn take_new_assignment(&mut self) -> bool {
        let epoch = self.handover.published();
        // 1. Nothing new comes in; what peers already sent is still delivered.
        self.handover.quiet(self.me, epoch);
        while !self.handover.all_quiet(epoch) {
            if self.stopping() {
                return false;
            }
            self.drain_peers_dry();
            self.pause();
        }
        // 2. Every worker is quiet, so no ring gets anything new: empty ours for good.
        self.drain_peers_dry();
        if let Some(update) = self.handover.take(self.me) {
            self.adopt(update);
        }
        self.handover.adopted(self.me, epoch);
        // 3. A queue gained here may be in its previous owner's hands until that one adopts.
        while !self.handover.all_adopted(epoch) {
            if self.stopping() {
                return false;
            }
            self.pause();
        }
        self.epoch = epoch;
        true
    }

    /// Delivers from every peer ring until all are empty.
    fn drain_peers_dry(&mut self) {
        loop {
            let mut moved = 0;
            for i in 0..self.from_peers.len() {
                moved += self.drain_peer(i);
            }
            if moved == 0 {
                return;
            }
        }
    }

    /// Between passes holding no device: let a detaching guest go, and let the workers this
    /// one waits for have the core when they share it.
    fn pause(&self) {
        self.links.pass_done(self.me);
        std::thread::yield_now();
    }

    fn adopt(&mut self, u: WorkerUpdate) {
        // Every pending burst is empty here (flushed after each burst), so the slots can be
        // rebuilt from scratch; slot numbers do not change with the owners.
        for &(g, q) in &self.guest_rx {
            self.slots[self.delivery.slot(g.index(), q)] = None;
        }
        for &(g, q) in &u.guest_queues {
            self.slots[u.delivery.slot(g.index(), q)] = Some(SlotOut { guest: g, queue: q, pending: Burst::new(), bytes: 0 });
        }
        self.guest_rx = u.guest_queues;
        self.delivery = u.delivery;
        for (to, slot) in self.to_guest.iter_mut().zip(&u.local_single_slots) {
            to.local_slot = *slot;
        }
    }
}
