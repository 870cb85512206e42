//! Frames crossing between workers over SPSC rings: the sending side batches per peer, the
//! receiving side delivers to the queues it owns. One flow always takes the same path, so
//! it stays in order.

use super::tag::Tag;
use super::worker::Worker;
use crate::fib::GuestId;
use crate::rte::Mbuf;
use crate::stats::DropReason;

impl Worker {
    /// Queues a frame for worker `w`; sends a full batch at once.
    #[inline]
    pub(super) fn send_to_peer(&mut self, w: usize, m: Mbuf) {
        let Some(p) = self.peers.get_mut(w).and_then(Option::as_mut) else {
            self.stats.uplink().drop(DropReason::DispatchFull, 1);
            return;
        };
        if p.pending.free_slots() == 0 {
            p.ring.enqueue(&mut p.pending);
        }
        if let Err(m) = p.pending.push(m) {
            drop(m);
            self.stats.uplink().drop(DropReason::DispatchFull, 1);
        }
    }

    /// Sends every peer's batch; what a full ring refuses is dropped and counted.
    pub(super) fn flush_peers(&mut self) {
        for p in self.peers.iter_mut().flatten() {
            if p.pending.is_empty() {
                continue;
            }
            p.ring.enqueue(&mut p.pending);
            let left = p.pending.len() as u64;
            if left > 0 {
                p.pending.free_all();
                self.stats.uplink().drop(DropReason::DispatchFull, left);
            }
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
                Some(f) => w.flood(m, f, false),
                None => {
                    let slot = tag.slot();
                    let g = GuestId(w.delivery().slot_guest(slot) as u16);
                    // The link may have dropped since the receiving worker looked.
                    if w.link_up(g) {
                        w.enqueue(slot, m);
                    } else {
                        drop(m);
                        w.stats.guest(g).drop(DropReason::GuestDown, 1);
                    }
                }
            }
        });
        self.flush_slots();
        n
    }
}
