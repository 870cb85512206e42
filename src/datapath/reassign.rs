//! A worker's side of a publication (the protocol is described in `view::handover`): every
//! change of what the worker sees, guests added, removed or changed and queues moved, comes
//! this way. Runs between two passes, rarely: the only place in a worker that yields its
//! core, while it forwards nothing anyway. It frees nothing: the view it lets go of goes
//! back to the control thread.

use super::worker::{fill_slots, Worker, NOT_MINE};
use crate::rte::eal::rdtsc;
use crate::view::WorkerView;

impl Worker {
    /// Takes the newest publication; false if told to stop on the way.
    pub(super) fn take_new_assignment(&mut self) -> bool {
        let t0 = rdtsc();
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
        self.handover.resumed(self.me, epoch, rdtsc().wrapping_sub(t0));
        // The control thread waits for this (`Handover::wait_adopted`), yielding. On a core
        // it shares with this worker it would otherwise get the core back only when the
        // scheduler preempts a busy worker: milliseconds for every change.
        std::thread::yield_now();
        true
    }

    /// Delivers from every peer ring until all are empty.
    pub(super) fn drain_peers_dry(&mut self) {
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
    pub(super) fn pause(&mut self) {
        self.links.pass_done();
        std::thread::yield_now();
    }

    /// Takes `new` and hands the view it replaces back for the control thread to free.
    fn adopt(&mut self, new: WorkerView) {
        // Every pending burst is empty here (flushed after each burst), so the slots can be
        // rebuilt from scratch; a queue's slot number is the same in every publication. Were
        // one not, it goes to its guest now rather than be freed uncounted with its slot.
        self.flush_slots();
        for s in self.slots.drain(..) {
            self.slot_index[s.slot as usize] = NOT_MINE;
        }
        fill_slots(&mut self.slots, &mut self.slot_index, &new);
        let WorkerView { tables, guest_queues, to_guest, unicasts } = new;
        let old = WorkerView {
            tables: std::mem::replace(&mut self.tables, tables),
            guest_queues: self.guest_queues.replace(guest_queues),
            to_guest: std::mem::replace(&mut self.to_guest, to_guest),
            unicasts: std::mem::replace(&mut self.unicasts, unicasts),
        };
        self.handover.retire(old);
    }
}
