//! Frames crossing between workers over SPSC rings: the sending side batches per peer, the
//! receiving side delivers to the queues it owns. One flow always takes the same path, so
//! it stays in order.

use super::tag::Tag;
use super::worker::Worker;
use crate::fib::GuestId;
use crate::rte::Mbuf;
use crate::stats::DropReason;
use crate::wire::flow::flow_hash;

impl Worker {
    /// Queues a frame for worker `w`; sends a full batch at once.
    #[inline]
    pub(super) fn send_to_peer(&mut self, w: usize, m: Mbuf) {
        let Some(p) = self.peers.get_mut(w).and_then(Option::as_mut) else {
            self.count_lost_crossing(w, &m, DropReason::NoPeerRing);
            return;
        };
        if p.pending.free_slots() == 0 {
            p.ring.enqueue(&mut p.pending);
        }
        if let Err(m) = p.pending.push(m) {
            self.count_lost_crossing(w, &m, DropReason::PeerRingFull);
        }
    }

    /// Sends every peer's batch; what a full ring refuses is dropped and counted.
    pub(super) fn flush_peers(&mut self) {
        for w in 0..self.peers.len() {
            let Some(p) = self.peers[w].as_mut() else { continue };
            if p.pending.is_empty() {
                continue;
            }
            p.ring.enqueue(&mut p.pending);
            // After every batch the peer gets (`send_to_peer` leaves the last of them here).
            self.blocker.ring_peer(w);
            if !p.pending.is_empty() {
                self.drop_peer_pending(w, DropReason::PeerRingFull);
            }
        }
    }

    /// Frees what is batched for worker `w`, counting every copy it carried under `r`.
    #[cold]
    pub(super) fn drop_peer_pending(&mut self, w: usize, r: DropReason) {
        let Some(p) = self.peers[w].as_ref() else { return };
        for i in 0..p.pending.len() {
            self.count_lost_crossing(w, p.pending.get(i), r);
        }
        if let Some(p) = self.peers[w].as_mut() {
            p.pending.free_all();
        }
    }

    /// A frame for worker `w` did not get there: a tx drop under `r` on each guest it was a
    /// copy for (a unicast's one guest; a flood's guests whose queues `w` owns, found again
    /// the way `flood` found them, on the same tables, and counted as copies of the port it
    /// came from here, since `w` never saw them). Rare: the work is done only here.
    #[cold]
    fn count_lost_crossing(&self, w: usize, m: &Mbuf, r: DropReason) {
        let tag = Tag::from_raw(m.tag());
        let Some(f) = tag.flood_of() else {
            let g = GuestId(self.delivery().slot_guest(tag.slot()) as u16);
            self.stats.guest(g).tx_drop(r, 1);
            return;
        };
        let hash = flow_hash(m.data());
        let key = self.flood_key(f);
        let mut lost = 0;
        for i in 0..self.tables.floods.list(key).len() {
            match self.flood_target(key, i, f, hash) {
                Some((g, _, owner)) if owner == w => {
                    self.stats.guest(g).tx_drop(r, 1);
                    lost += 1;
                }
                _ => {}
            }
        }
        if lost != 0 {
            self.flood_port(f).more_copies(lost);
        }
    }

    /// Drains one burst from the ring of peer `i` and delivers it.
    pub(super) fn drain_peer(&mut self, i: usize) -> usize {
        let n = self.from_peers[i].dequeue(&mut self.rx);
        if n == 0 {
            return 0;
        }
        self.take_received(|w, m| {
            let tag = Tag::from_raw(m.tag());
            match tag.flood_of() {
                Some(f) => {
                    w.flood(m, f, false);
                }
                None => {
                    let slot = tag.slot();
                    let (gi, q) = w.delivery().slot_queue(slot);
                    let g = GuestId(gi as u16);
                    // The link may have dropped since the receiving worker looked, or the
                    // guest come back with fewer queue pairs than the one its sender chose
                    // (the library would refuse the copy, and log it, every time): that
                    // queue is down. A guest cannot go within this pass (`GuestLinks`). Queue 0
                    // is every live device's (its count is stored just after its id).
                    if w.link_up(g) && (q == 0 || q < w.links.active_queues(gi)) {
                        w.enqueue(slot, m);
                    } else {
                        drop(m);
                        w.stats.guest(g).tx_drop(DropReason::GuestDown, 1);
                    }
                }
            }
        });
        self.flush_slots();
        n
    }
}
