//! Uplink -> guests: classify each frame by destination MAC and deliver it to the guest(s)
//! the forwarding mode allows.
//!
//! Ownership: a frame taken from the uplink rx burst is either pushed (one reference per
//! destination, extra references from `Mbuf::share`) into a guest's pending burst or dropped
//! with a counter. `TxQueue::tx` hands the accepted prefix to the vhost PMD, which copies into
//! guest memory and frees its reference; what it refused is freed here as `GuestQueueFull`.

use super::worker::Worker;
use crate::fib::GuestId;
use crate::policy::{self, Cast, Origin};
use crate::rte::Mbuf;
use crate::stats::DropReason;
use crate::wire::{MacAddr, ETHER_HDR_LEN};

impl Worker {
    /// Receives one burst from uplink rx queue `i` and delivers it; returns frames received.
    pub(super) fn ingress_burst(&mut self, i: usize) -> usize {
        let n = self.uplink_rx[i].rx(&mut self.rx);
        if n == 0 {
            return 0;
        }
        let mut rx = std::mem::take(&mut self.rx);
        let mut bytes = 0u64;
        for m in rx.drain() {
            bytes += m.pkt_len() as u64;
            self.classify(m);
        }
        self.rx = rx;
        self.stats.uplink().rx(n as u64, bytes);
        self.flush_guests();
        n
    }

    #[inline]
    fn classify(&mut self, m: Mbuf) {
        let head = m.data();
        if head.len() < ETHER_HDR_LEN {
            self.stats.uplink().drop(DropReason::Runt, 1);
            return;
        }
        let dst = MacAddr::from_slice(&head[0..6]).unwrap_or_default();
        let src = MacAddr::from_slice(&head[6..12]).unwrap_or_default();
        let src_guest = self.table.lookup(&src);
        if dst.is_multicast() {
            self.flood(m, src_guest);
            return;
        }
        let Some(g) = self.table.lookup(&dst) else {
            self.stats.uplink().drop(DropReason::UnknownDest, 1);
            return;
        };
        if let Some(reason) = self.refuse(g, &m, src_guest, Cast::Unicast) {
            self.stats.guest(g).drop(reason, 1);
            return;
        }
        self.enqueue(g, m);
    }

    /// Why guest `g` must not get frame `m`, if it must not.
    #[inline]
    fn refuse(&self, g: GuestId, m: &Mbuf, src_guest: Option<GuestId>, cast: Cast) -> Option<DropReason> {
        let entry = self.table.guest(g);
        let origin = match src_guest {
            None => Origin::External,
            Some(s) if s == g => Origin::Itself,
            Some(s) => Origin::Sibling(self.table.guest(s).mode),
        };
        if !policy::deliver_from_uplink(entry.mode, origin, cast) {
            return Some(DropReason::PolicyDenied);
        }
        if m.pkt_len() > entry.max_frame_len as usize {
            return Some(DropReason::Oversize);
        }
        if !self.link_up(g) {
            return Some(DropReason::GuestDown);
        }
        None
    }

    /// Broadcast/multicast: one reference to every guest the mode allows, never back to the
    /// guest that sent it (a hairpin reflection of its own frame).
    fn flood(&mut self, m: Mbuf, src_guest: Option<GuestId>) {
        let mut delivered = 0u32;
        let mut last_reason = DropReason::PolicyDenied;
        for gi in 0..self.out.len() {
            if self.out[gi].txq.is_none() {
                continue;
            }
            let g = GuestId(gi as u16);
            match self.refuse(g, &m, src_guest, Cast::Multicast) {
                None => {
                    self.enqueue(g, m.share());
                    delivered += 1;
                }
                // A guest that is down or too small for the frame is a drop on that guest;
                // a guest the mode excludes is simply not a destination.
                Some(DropReason::PolicyDenied) => {}
                Some(r) => {
                    self.stats.guest(g).drop(r, 1);
                    last_reason = r;
                }
            }
        }
        if delivered == 0 {
            self.stats.uplink().drop(last_reason, 1);
        }
        drop(m); // the reference we received; each shared one is freed by whoever takes it
    }

    #[inline]
    fn enqueue(&mut self, g: GuestId, m: Mbuf) {
        let len = m.pkt_len() as u64;
        let out = &mut self.out[g.index()];
        if out.pending.is_empty() {
            self.dirty.push(g);
        }
        match out.pending.push(m) {
            Ok(()) => out.bytes += len,
            // pending holds a full burst and we flush after every burst, so this cannot happen;
            // if it did, the frame is still accounted for.
            Err(m) => {
                drop(m);
                self.stats.guest(g).drop(DropReason::GuestQueueFull, 1);
            }
        }
    }

    /// Hands every guest's pending frames to its vhost queue; what the guest has no room for
    /// is dropped on that guest alone (a guest that stops reading costs only itself).
    pub(super) fn flush_guests(&mut self) {
        for d in 0..self.dirty.len() {
            let g = self.dirty[d];
            let out = &mut self.out[g.index()];
            let Some(txq) = out.txq.as_mut() else { continue };
            let queued = out.pending.len();
            let sent = txq.tx(&mut out.pending);
            let left_bytes: u64 = (0..out.pending.len()).map(|i| out.pending.get(i).pkt_len() as u64).sum();
            let cell = self.stats.guest(g);
            cell.tx(sent as u64, out.bytes - left_bytes);
            if sent < queued {
                cell.drop(DropReason::GuestQueueFull, (queued - sent) as u64);
                out.pending.free_all();
            }
            out.bytes = 0;
        }
        self.dirty.clear();
    }
}
