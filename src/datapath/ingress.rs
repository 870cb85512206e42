//! Uplink -> guests: classify each frame by destination MAC and deliver it to the guest
//! queue(s) the forwarding mode allows, directly when this worker owns the queue, over a ring
//! to the owning worker otherwise. A passthru guest takes every frame, and source-mode guests
//! also get copies by source MAC: both in `modes.rs`. The common case (an untagged unicast
//! for a guest whose one queue is this worker's) is found for the whole burst before any
//! frame moves (`deliver_received`), with one probe of the worker's `UnicastIndex` per frame.
//! In bench/README.md, uplink -> guests at 64 B with the switch on one core: finding the
//! common case first took 124 -> 102 worker cycles per frame (2 guests), and the one probe
//! about 150 -> 110 (2 and 8 guests).
//!
//! Ownership: a frame taken from a burst is either pushed (one reference per destination,
//! extra references from `Mbuf::share`) into a slot's or a peer's pending burst, or dropped
//! with a counter. `vhost::enqueue` copies the frames into guest memory and takes none of
//! them: `flush_slots` frees every reference afterwards, counting the ones the guest had no
//! room for as `GuestQueueFull`.
//!
//! Counting (defined in `stats::reason`): a frame that names no guest is an rx drop on the
//! uplink; otherwise it is `forwarded` with a copy per guest it names (a unicast's owner, a
//! flood's guests), and each copy is delivered or a tx drop on its guest, counted once.

use super::tag::{Flood, Tag};
use super::worker::{Worker, NO_SLOT};
use crate::view::{FloodKey, RxScope};
use crate::fib::GuestId;
use crate::policy::{self, Cast, Origin};
use crate::rte::eal::rdtsc;
use crate::rte::{vhost, Mbuf, BURST};
use crate::stats::DropReason;
use crate::wire::probe::{parse_probe, PROBE_ETHERTYPE};
use crate::wire::flow::flow_hash;
use crate::wire::{ethertype, MacAddr, ETHER_HDR_LEN};

/// Uplink bursts a worker takes from one rx queue per pass, while they come full. Eight bursts
/// spread over eight guests fill each guest's 32-frame batch, so a copy call carries 32 frames
/// rather than the 16 of four bursts (bench/README.md: 117 worker cycles per frame against
/// 124, 21.8 Mpps against 20.6, uplink -> 8 guests at 64 B). A pass then holds up to 256
/// frames, 10-15 us of work at saturation, before the guests' queues are polled again.
pub const RX_BURSTS_PER_PASS: usize = 8;

/// Before a copy of at most this many frames into one guest (`flush_slots`, whatever filled
/// the batches: the uplink, other workers' rings, bridge-mode guests), the next guest's avail
/// index is prefetched. Where a pass spreads the uplink over many guests, each copy is short
/// and starts with a miss on that index, which the guest's core keeps writing: uplink -> 32
/// guests at 64 B (8 frames a copy) took 162 -> 149 worker cycles per frame with the
/// prefetch. Made before every copy, it measured 4-8 cycles a frame worse with 8 guests in
/// each of three rounds (full 32-frame copies, whose miss 32 frames share anyway); why was
/// not established (bench/README.md, "Where 32 receivers' cycles go").
const PREFETCH_MAX_COPY: usize = BURST / 2;

/// What `deliver_received`'s first step found for a frame.
#[derive(Clone, Copy)]
enum Found {
    /// The common case: it joins this worker's batch (an index in `slots`).
    Batch(u16),
    /// An untagged unicast for this guest, that the guest's mode, size or queues decide.
    Guest(GuestId),
    /// An untagged unicast for no guest.
    Unknown,
    /// Anything else: the general path (`classify`).
    General,
}

impl Worker {
    /// Receives from uplink rx queue `i`: up to `RX_BURSTS_PER_PASS` bursts while they come
    /// full, then delivers what they hold. Several bursts before the copies into the guests
    /// batch more frames per copy call when a burst is spread over many guests (the call's
    /// own cost is shared by fewer frames otherwise). Returns frames received.
    pub(super) fn ingress_burst(&mut self, i: usize) -> usize {
        let scope = self.uplink_scope[i];
        let mut total = 0;
        for _ in 0..RX_BURSTS_PER_PASS {
            let n = self.uplink_rx[i].rx(&mut self.rx);
            if n == 0 {
                break;
            }
            let bytes = self.deliver_received(scope);
            self.stats.uplink().rx(n as u64, bytes);
            total += n;
            if n < BURST {
                break; // the queue is drained for now
            }
        }
        if total > 0 {
            self.flush_slots();
            self.flush_peers();
            self.uplink_received += total as u64;
        }
        total
    }

    /// Delivers the rx burst in two steps. First, for each frame, what its header and the
    /// worker's index say (`Found`): for the common case (an untagged unicast for a guest
    /// whose one queue is this worker's, admitted whoever sent it), the batch it joins. Loads
    /// only, so the CPU overlaps the lookups of several frames rather than waiting for each.
    /// Then, in order, each frame goes where that says. Returns the bytes received.
    fn deliver_received(&mut self, scope: RxScope) -> u64 {
        // With a passthru guest or a source-mode guest, every frame asks more than the first
        // step does: straight to the general path.
        if self.tables.passthru.is_some() || !self.tables.sources.is_empty() {
            return self.take_received(|w, m| w.classify(m, scope));
        }
        let mut rx = std::mem::take(&mut self.rx);
        rx.prefetch_headers();
        let mut found = [Found::General; BURST];
        for (i, f) in found.iter_mut().enumerate().take(rx.len()) {
            *f = self.find(rx.get(i), scope);
        }
        let (mut bytes, mut batched) = (0u64, 0u64);
        for (m, &f) in rx.drain().zip(found.iter()) {
            bytes += m.pkt_len() as u64;
            match f {
                Found::Batch(li) => {
                    batched += 1;
                    self.enqueue_local(usize::from(li), m);
                }
                Found::Guest(g) => self.unicast_for(g, m, 0),
                Found::Unknown => self.unknown_destination(&m),
                Found::General => self.classify(m, scope),
            }
        }
        self.rx = rx;
        // Counted once per burst: a counter bumped per frame is a chain of loads and stores
        // through one address.
        self.stats.uplink().forward_singles(batched);
        bytes
    }

    /// `deliver_received`'s first step for one frame (no passthru or source-mode guest).
    #[inline(always)]
    fn find(&self, m: &Mbuf, scope: RxScope) -> Found {
        let head = m.data();
        if head.len() < ETHER_HDR_LEN || head[12..14] == ethertype::VLAN.to_be_bytes() || (self.vlan_offload.rx_strip && m.stripped_vlan().is_some()) {
            return Found::General;
        }
        let dst = MacAddr::from_slice(&head[0..6]).unwrap_or_default();
        if dst.is_multicast() {
            return Found::General;
        }
        let to = match self.pooled_owner(scope, 0) {
            Some(g) => self.to_guest[g.index()].unicast,
            None => match self.unicasts.get(&dst) {
                Some(to) => to,
                None => return Found::Unknown,
            },
        };
        match to.batch_for(m.pkt_len()) {
            Some(li) => Found::Batch(li),
            None => Found::Guest(to.guest),
        }
    }

    #[inline]
    fn classify(&mut self, m: Mbuf, scope: RxScope) {
        let head = m.data();
        if head.len() < ETHER_HDR_LEN {
            self.stats.uplink().rx_drop(DropReason::Runt, 1);
            return;
        }
        if let Some(g) = self.tables.passthru {
            // The switch's own hairpin probes coming back are its own, even here.
            if head[12..14] == PROBE_ETHERTYPE.to_be_bytes() && parse_probe(head).is_some() {
                return self.unknown_destination(&m);
            }
            // Before any VLAN work: the passthru guest gets the wire's frames as they came.
            return self.deliver_passthru(g, m);
        }
        // VLANs (`vlan.rs`): a tag the port took off, or one still in the frame.
        let tagged = head[12..14] == ethertype::VLAN.to_be_bytes();
        if self.vlan_offload.rx_strip {
            if let Some(tci) = m.stripped_vlan() {
                return self.classify_stripped(m, scope, tci);
            }
        }
        if tagged {
            return self.classify_tagged(m, scope);
        }
        self.classify_in(m, scope, 0);
    }

    /// Classifies an untagged frame (its tag removed, if it had one) of VLAN `vlan` (0:
    /// untagged) by its destination in that VLAN.
    #[inline(always)]
    pub(super) fn classify_in(&mut self, mut m: Mbuf, scope: RxScope, vlan: u16) {
        let head = m.data();
        let dst = MacAddr::from_slice(&head[0..6]).unwrap_or_default();
        let src = MacAddr::from_slice(&head[6..12]).unwrap_or_default();
        if dst.is_multicast() {
            if dst.is_link_local_group() {
                self.stats.uplink().rx_drop(DropReason::LinkLocal, 1);
                return;
            }
            let source = self.tables.fib.lookup_in(vlan, &src);
            let unpooled_only = match scope {
                RxScope::All => false,
                RxScope::Unpooled => true,
                RxScope::Guest(g) => return self.pool_copy(GuestId(g as u16), m, source, vlan),
            };
            let f = Flood { source, local: false, unpooled_only, vlan };
            // Tag before sharing: every reference sees the same header. (A received frame is
            // ours alone; were it not, it could not cross to another worker.)
            if !m.set_tag(Tag::flood(f).raw()) {
                self.stats.uplink().rx_drop(DropReason::Untaggable, 1);
                return;
            }
            match (self.flood(m, f, true), unpooled_only) {
                ((0, false), false) => self.stats.uplink().rx_drop(DropReason::NoDestination, 1),
                // The default pool's replica, when every guest it could be for has a pool.
                ((0, false), true) => self.stats.uplink().rx_drop(DropReason::PoolDuplicate, 1),
                ((here, _), _) => self.stats.uplink().forward(here),
            }
            return;
        }
        let owner = self.unicast_owner(scope, vlan, &dst);
        // Source-mode guests' copies (in buffers of their own) of a unicast from a station
        // they list: extra copies of this frame, or its only ones.
        let by_source = if self.tables.sources.is_empty() { 0 } else { self.copy_by_source(&m, &src, owner, vlan) };
        if by_source > 0 {
            match owner {
                Some(_) => self.stats.uplink().more_copies(by_source),
                None => return self.stats.uplink().forward(by_source),
            }
        }
        let Some(g) = owner else {
            self.unknown_destination(&m);
            return;
        };
        self.unicast_for(g, m, vlan);
    }

    /// A unicast from the uplink, untagged (its tag removed, if it had one), of VLAN `vlan`,
    /// for guest `g`: one copy, delivered or dropped on `g`.
    #[inline(always)]
    fn unicast_for(&mut self, g: GuestId, m: Mbuf, vlan: u16) {
        if let Some(common) = self.common_unicast(g, &m) {
            // (A guest that is down is counted when the slot is flushed.)
            self.stats.uplink().forward(1);
            match common {
                Ok(slot) => self.enqueue(slot, m),
                Err(refusal) => self.stats.guest(g).tx_drop(refusal, 1),
            }
            return;
        }
        let src_guest = if self.to_guest[g.index()].needs_source {
            let src = MacAddr::from_slice(&m.data()[6..12]).unwrap_or_default();
            self.tables.fib.lookup_in(vlan, &src)
        } else {
            None
        };
        self.admit_one(g, m, src_guest, Cast::Unicast);
    }

    /// The guest a unicast to `dst` in VLAN `vlan` is for. A queue hardware steering gives
    /// one guest (its VMDq pool's) only receives frames for that guest's MACs: no lookup.
    /// Everything else is looked up.
    #[inline(always)]
    fn unicast_owner(&self, scope: RxScope, vlan: u16, dst: &MacAddr) -> Option<GuestId> {
        self.pooled_owner(scope, vlan).or_else(|| self.tables.fib.lookup_in(vlan, dst))
    }

    /// The guest whose own VMDq pool rx queue `scope` is, if its frames of VLAN `vlan` are
    /// its own.
    #[inline(always)]
    fn pooled_owner(&self, scope: RxScope, vlan: u16) -> Option<GuestId> {
        match scope {
            RxScope::Guest(g) if self.tables.flags(GuestId(g as u16)).pooled_in(vlan) => Some(GuestId(g as u16)),
            _ => None,
        }
    }

    /// A unicast from the uplink for guest `g`, in the common case where the answer does not
    /// depend on who sent it and the guest's one queue is this worker's: the slot it goes to,
    /// or why `g` refuses it. None: the general checks decide.
    #[inline(always)]
    fn common_unicast(&self, g: GuestId, m: &Mbuf) -> Option<Result<usize, DropReason>> {
        let to = self.to_guest[g.index()];
        if to.needs_source || to.local_slot == NO_SLOT {
            return None;
        }
        Some(if !to.takes_unicast {
            Err(DropReason::PolicyDenied)
        } else if m.pkt_len() > to.unicast.max_len as usize {
            Err(DropReason::Oversize)
        } else {
            Ok(to.local_slot as usize)
        })
    }

    /// A frame from the uplink for guest `g` alone: one copy, delivered, or dropped on `g`
    /// (the mode refuses it, too big, down).
    #[inline]
    fn admit_one(&mut self, g: GuestId, m: Mbuf, src_guest: Option<GuestId>, cast: Cast) {
        let refusal = self.refuse(g, &m, src_guest, cast);
        self.copy_for(g, m, refusal);
    }

    /// The uplink frame `m` went on as one copy for guest `g`: delivered, or dropped on `g`.
    #[inline]
    pub(super) fn copy_for(&mut self, g: GuestId, m: Mbuf, refusal: Option<DropReason>) {
        self.stats.uplink().forward(1);
        match refusal {
            Some(r) => self.stats.guest(g).tx_drop(r, 1),
            None => self.deliver_unicast(g, m),
        }
    }

    /// A broadcast/multicast copy the port put in guest `g`'s own VMDq pool: for `g` alone.
    fn pool_copy(&mut self, g: GuestId, m: Mbuf, source: Option<GuestId>, vlan: u16) {
        if !self.tables.flags(g).pooled_in(vlan) {
            // A pool whose filters were refused (its guest is served from the default pool),
            // or a frame of another VLAN than the pool's guest.
            self.stats.uplink().rx_drop(DropReason::PoolDuplicate, 1);
            return;
        }
        // A flood for this one guest: one it is not for (its own, or its mode's refusal) names
        // nobody, as a flood's list would not have named it.
        match self.refuse(g, &m, source, Cast::Multicast) {
            Some(DropReason::PolicyDenied) => self.stats.uplink().rx_drop(DropReason::NoDestination, 1),
            refusal => self.copy_for(g, m, refusal),
        }
    }

    /// Sends an admitted unicast frame to guest `g`'s queue for its flow: directly when this
    /// worker owns the queue, over a ring to its owner otherwise.
    #[inline(always)]
    pub(super) fn deliver_unicast(&mut self, g: GuestId, mut m: Mbuf) {
        let local = self.to_guest[g.index()].local_slot;
        if local != NO_SLOT {
            self.enqueue(local as usize, m);
            return;
        }
        let q = self.queue_for(g, &m);
        let slot = self.delivery().slot(g.index(), q);
        let owner = self.delivery().slot_owner(slot);
        if owner == self.me {
            self.enqueue(slot, m);
        } else {
            if m.set_tag(Tag::unicast(slot).raw()) {
                self.send_to_peer(owner, m);
            } else {
                // Unicast frames are never shared; counted rather than sent untagged.
                self.stats.guest(g).tx_drop(DropReason::Untaggable, 1);
            }
        }
    }

    /// The guest's queue for this frame: one flow always maps to one queue.
    #[inline]
    pub(super) fn queue_for(&self, g: GuestId, m: &Mbuf) -> u16 {
        let n = self.delivery().queues(g.index()).min(self.links.active_queues(g.index()));
        if n <= 1 {
            0
        } else {
            (flow_hash(m.data()) % u32::from(n)) as u16
        }
    }

    /// Why guest `g` must not get frame `m` from the uplink, if it must not.
    #[inline]
    pub(super) fn refuse(&self, g: GuestId, m: &Mbuf, src_guest: Option<GuestId>, cast: Cast) -> Option<DropReason> {
        let entry = self.tables.fib.guest(g);
        let origin = match src_guest {
            None => Origin::External,
            Some(s) if s == g => Origin::Itself,
            Some(s) => Origin::Sibling(self.tables.fib.guest(s).mode),
        };
        if !policy::deliver_from_uplink(entry.mode, origin, cast) {
            return Some(DropReason::PolicyDenied);
        }
        self.unfit(g, m)
    }

    /// Why guest `g` cannot take frame `m` whatever the policy: too big for it, or not there.
    #[inline]
    pub(super) fn unfit(&self, g: GuestId, m: &Mbuf) -> Option<DropReason> {
        if m.pkt_len() > self.tables.fib.guest(g).max_frame_len as usize {
            return Some(DropReason::Oversize);
        }
        if !self.link_up(g) {
            return Some(DropReason::GuestDown);
        }
        None
    }

    /// Broadcast/multicast: one reference to every guest the mode allows, never back to the
    /// guest that sent it (a hairpin reflection of its own frame, or its own local flood). On
    /// the worker that received the frame (`first`), one reference goes to each other worker
    /// owning a destination queue; each worker delivers to (or counts the drop on) its own
    /// guests only.
    ///
    /// Each worker counts the copies it handled itself (the port the frame came from gets
    /// them as `copies`; the receiving worker's in its `forward`, a peer's here), because
    /// the two can see a guest's queue count differently: a guest attaching or detaching
    /// between the sending and the receiving worker's look moves the queue a flood is for,
    /// and a copy counted by one and handled by the other would break `copies = tx +
    /// tx_drops`. Then the guest gets that one flood from neither (it is coming or going) or,
    /// rarely, from both; each handled copy is counted once either way.
    ///
    /// Returns the copies handled here, and whether a reference went to a peer.
    pub(super) fn flood(&mut self, m: Mbuf, f: Flood, first: bool) -> (u64, bool) {
        let hash = flow_hash(m.data());
        let mut copies = 0u64;
        let mut peers: u64 = 0;
        let key = self.flood_key(f);
        let targets = self.tables.floods.list(key).len();
        // A reference per guest in the list, taken at once: one per local delivery, one per
        // peer that owns some of the others (never more than the list).
        let mut refs = m.shares(targets);
        // Indexed rather than iterated: the loop body needs `self` mutably.
        for i in 0..targets {
            let Some((g, slot, owner)) = self.flood_target(key, i, f, hash) else { continue };
            if owner != self.me {
                if first {
                    peers |= 1 << owner;
                }
                continue;
            }
            copies += 1;
            match self.unfit(g, refs.frame()) {
                None => self.enqueue(slot, refs.take()),
                // A guest the mode excludes is not in the list; one that is down or too small
                // for the frame is a drop on that guest.
                Some(r) => self.stats.guest(g).tx_drop(r, 1),
            }
        }
        let crossed = peers != 0;
        while peers != 0 {
            let w = peers.trailing_zeros() as usize;
            peers &= peers - 1;
            self.send_to_peer(w, refs.take());
        }
        // The references not taken and the one we were given go; each taken one is freed by
        // whoever has it.
        drop(refs);
        if !first && copies != 0 {
            self.flood_port(f).more_copies(copies);
        }
        (copies, crossed)
    }

    /// The port a flood came from, whose `copies` count its copies: the bridge-mode guest
    /// that sent a local flood, otherwise the uplink.
    #[inline]
    pub(super) fn flood_port(&self, f: Flood) -> &crate::stats::PortCell {
        match (f.local, f.source) {
            (true, Some(g)) => self.stats.guest(g),
            _ => self.stats.uplink(),
        }
    }

    /// Which list of guests a flood is for, settled when the tables were built.
    #[inline]
    pub(super) fn flood_key(&self, f: Flood) -> FloodKey {
        let source_mode = f.source.and_then(|s| self.tables.fib.get(s)).map(|e| e.mode);
        self.tables.floods.key(f.vlan, f.local, source_mode)
    }

    /// The `i`th guest of flood list `key`, with the slot of its queue for a frame of flow
    /// `hash` and that slot's owner; None if this flood is not for it (its sender, or a
    /// guest that got the frame in its own pool).
    #[inline]
    pub(super) fn flood_target(&self, key: FloodKey, i: usize, f: Flood, hash: u32) -> Option<(GuestId, usize, usize)> {
        let g = self.tables.floods.list(key)[i];
        let gi = g.index();
        // Never back to the guest that sent it (a reflection of its own frame).
        if Some(g) == f.source || (f.unpooled_only && self.tables.flags(g).pooled) {
            return None;
        }
        let nq = u32::from(self.delivery().queues(gi).min(self.links.active_queues(gi)));
        let q = if nq <= 1 { 0 } else { (hash % nq) as u16 };
        let slot = self.delivery().slot(gi, q);
        Some((g, slot, self.delivery().slot_owner(slot)))
    }

    // Per frame on every delivery path but the common one (which knows its batch): not worth
    // a call.
    #[inline(always)]
    pub(super) fn enqueue(&mut self, slot: usize, m: Mbuf) {
        let li = usize::from(self.slot_index[slot]);
        if li >= self.slots.len() {
            // Only reachable if the delivery map and this worker's slots disagree; the frame
            // is still accounted for.
            let g = GuestId(self.delivery().slot_guest(slot) as u16);
            self.stats.guest(g).tx_drop(DropReason::SlotNotOwned, 1);
            return;
        }
        self.enqueue_local(li, m);
    }

    /// Adds `m` to this worker's batch `li` (an index in `slots`), copying the batch into its
    /// guest first if it is full.
    #[inline(always)]
    fn enqueue_local(&mut self, li: usize, m: Mbuf) {
        // Callers pass an index from `slot_index` (indexes in `slots`, or `NOT_MINE`, which
        // `enqueue` stops) or a `Unicast::batch`, which `WorkerView::new` counts in the order
        // `worker::fill_slots` lays out `slots` (both at `Worker::new` and in `reassign`).
        debug_assert!(li < self.slots.len());
        let len = m.pkt_len() as u64;
        let out = &mut self.slots[li];
        if out.pending.is_empty() {
            self.dirty.push(li as u32);
        } else if out.pending.free_slots() == 0 {
            // A full batch goes to the guest now; the slot stays dirty for what follows.
            let t = if self.measure { rdtsc() } else { 0 };
            self.flush_slot(li);
            if self.measure {
                let slot = self.slots[li].slot as usize;
                self.stats.add_slot_cycles(slot, rdtsc().wrapping_sub(t));
            }
        }
        let out = &mut self.slots[li];
        match out.pending.push(m) {
            Ok(()) => out.bytes += len,
            Err(m) => {
                let g = out.guest;
                drop(m);
                self.stats.guest(g).tx_drop(DropReason::GuestQueueFull, 1);
            }
        }
    }

    /// Copies every slot's pending frames into its guest's virtqueue, then frees them (the
    /// vhost library copies; we keep ownership). What the guest has no room for is dropped on
    /// that guest alone: a guest that stops reading costs only itself.
    pub(super) fn flush_slots(&mut self) {
        let mut t = if self.measure { rdtsc() } else { 0 };
        for d in 0..self.dirty.len() {
            let li = self.dirty[d] as usize;
            // (While measuring, the prefetch is timed with this slot rather than the next:
            // one library call, small beside a copy.)
            if self.slots.get(li).is_some_and(|s| s.pending.len() <= PREFETCH_MAX_COPY) {
                if let Some(&next) = self.dirty.get(d + 1) {
                    self.prefetch_slot_ring(next as usize);
                }
            }
            self.flush_slot(li);
            if self.measure {
                let now = rdtsc();
                let slot = self.slots[li].slot as usize;
                self.stats.add_slot_cycles(slot, now.wrapping_sub(t));
                t = now;
            }
        }
        self.dirty.clear();
    }

    /// Starts loading the avail index of slot `li`'s guest queue, which its next copy reads
    /// first (`vhost::prefetch_rx_ring`).
    #[inline]
    fn prefetch_slot_ring(&self, li: usize) {
        let Some(out) = self.slots.get(li) else { return };
        if let Some(dev) = self.links.device(out.guest.index()) {
            vhost::prefetch_rx_ring(&dev, out.queue);
        }
    }

    /// Copies slot `li`'s pending frames into its guest and frees them.
    #[inline]
    fn flush_slot(&mut self, li: usize) {
        let Some(out) = self.slots.get_mut(li) else { return };
        let queued = out.pending.len();
        if queued == 0 {
            return;
        }
        let cell = self.stats.guest(out.guest);
        match self.links.device(out.guest.index()) {
            Some(dev) => {
                let sent = vhost::enqueue(&dev, out.queue, &mut out.pending);
                let left_bytes: u64 = (sent..queued).map(|i| out.pending.get(i).pkt_len() as u64).sum();
                cell.tx(sent as u64, out.bytes - left_bytes);
                if sent < queued {
                    cell.tx_drop(DropReason::GuestQueueFull, (queued - sent) as u64);
                }
                self.stats.add_enqueue(queued as u64);
            }
            None => cell.tx_drop(DropReason::GuestDown, queued as u64),
        }
        out.pending.free_all();
        out.bytes = 0;
    }
}
