//! Uplink -> guests for the modes that do not deliver by destination alone: passthru (one
//! guest takes everything the uplink receives) and source (a guest also takes the unicast
//! frames of the stations its `sources` list names). `ingress::classify` calls in here only
//! when the published tables have such a guest, so the other modes pay a test of a field
//! (once per burst, in `deliver_received`, for the frames of the common case).
//!
//! Ownership: as in `ingress`: the frame is delivered or counted. A source copy is a frame of
//! its own (a new buffer from the pool, the bytes copied), never a second reference: the
//! original may still be tagged for another worker by the destination path, which needs it
//! unshared, and the copy may need a tag of its own to cross to the guest's worker.

use super::worker::Worker;
use crate::fib::GuestId;
use crate::rte::{Mbuf, Mempool};
use crate::stats::DropReason;
use crate::wire::MacAddr;

/// Guests listing one source, read from the source table per lookup (see `copy_by_source`).
const SOURCE_CHUNK: usize = 8;

impl Worker {
    /// Passthru: guest `g` owns the uplink and takes frame `m` whatever its destination
    /// (link-local groups included; see `policy::owns_uplink`).
    #[inline]
    pub(super) fn deliver_passthru(&mut self, g: GuestId, mut m: Mbuf) {
        // A tag the port took off goes back in: the guest owns the wire, tags included.
        if self.vlan_offload.rx_strip {
            if let Some(tci) = m.stripped_vlan() {
                if !m.insert_vlan(tci) {
                    // No headroom for the tag: the guest's copy is lost.
                    return self.copy_for(g, m, Some(DropReason::NoBuffer));
                }
            }
        }
        let refusal = self.unfit(g, &m);
        self.copy_for(g, m, refusal);
    }

    /// Mode source: a copy of unicast frame `m`, sent by `src`, to every guest that lists
    /// `src` and is in the frame's VLAN `vlan` (a source list never reaches across VLANs),
    /// except `owner` (the guest its destination takes it to anyway: one copy each).
    /// Returns the copies made (delivered or dropped on their guest). One lookup for a
    /// source nobody lists.
    ///
    /// Multicast needs no copies: a source-mode guest takes every flood a source match
    /// would give it (pinned by the policy tests).
    pub(super) fn copy_by_source(&mut self, m: &Mbuf, src: &MacAddr, owner: Option<GuestId>, vlan: u16) -> u64 {
        // The walk needs `self` mutably, so the list is read in chunks onto the stack (no
        // reference count touched per frame): one lookup per chunk, so one in the usual case.
        let mut done = 0;
        let mut copies = 0;
        loop {
            let mut chunk = [GuestId::default(); SOURCE_CHUNK];
            let n = match self.tables.sources.lookup(src) {
                None => return copies,
                Some(list) => {
                    let rest = list.get(done..).unwrap_or_default();
                    let n = rest.len().min(SOURCE_CHUNK);
                    chunk[..n].copy_from_slice(&rest[..n]);
                    n
                }
            };
            for &g in &chunk[..n] {
                if Some(g) != owner && self.tables.flags(g).vlan == vlan {
                    self.copy_to(g, m);
                    copies += 1;
                }
            }
            if n < SOURCE_CHUNK {
                return copies;
            }
            done += n;
        }
    }

    /// One source copy of `m` for guest `g`, or a drop counted on `g`.
    fn copy_to(&mut self, g: GuestId, m: &Mbuf) {
        if let Some(reason) = self.unfit(g, m) {
            self.stats.guest(g).tx_drop(reason, 1);
            return;
        }
        match copy_frame(&self.pool, m) {
            Some(copy) => self.deliver_unicast(g, copy),
            // No buffer to copy into: the copy could not be handed on.
            None => self.stats.guest(g).tx_drop(DropReason::NoBuffer, 1),
        }
    }
}

/// A new single-segment frame from `pool` holding `m`'s bytes; `None` when the pool is empty
/// or the frame does not fit one buffer (the pool's buffers hold the largest guest frame).
fn copy_frame(pool: &Mempool, m: &Mbuf) -> Option<Mbuf> {
    let mut copy = Mbuf::alloc(pool)?;
    let out = copy.append(u16::try_from(m.pkt_len()).ok()?)?;
    let mut at = 0;
    for seg in m.segments() {
        out.get_mut(at..at + seg.len())?.copy_from_slice(seg);
        at += seg.len();
    }
    Some(copy)
}
