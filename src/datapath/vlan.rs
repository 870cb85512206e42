//! Per-guest VLANs on the workers: a tagged frame from the uplink is classified in its VLAN
//! with its tag removed, and a VLAN guest's frame gets its tag on the way out, by the port
//! (offloads) where the switch configured them, in software otherwise.
//!
//! The untagged path pays one ethertype comparison on the way in (`ingress::find`, and
//! again in `Worker::classify` for what takes the general path) and,
//! on the way out, one ethertype comparison (a guest may not tag its own frames) and one test
//! of the sender's VLAN, read once per burst. Everything else is here, off that path.
//!
//! Ownership: as everywhere in the datapath, a frame is passed on or freed once and counted.
//! Tags are written only on exclusive frames: a received frame and a frame just dequeued from
//! a guest are; a flood is stripped before it is shared.

use super::tag::{Flood, Tag};
use super::worker::Worker;
use crate::fib::GuestId;
use crate::rte::Mbuf;
use crate::stats::DropReason;
use crate::view::RxScope;
use crate::wire::vlan::{tci_of, vid_of};

/// Which VLAN work the uplink port does itself (decided at start from its capabilities and
/// `--no-vlan-offload`; the same for every worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VlanOffload {
    /// The port strips 802.1Q tags on receive (`RTE_ETH_RX_OFFLOAD_VLAN_STRIP`).
    pub rx_strip: bool,
    /// The port inserts the tag an mbuf asks for on send (`RTE_ETH_TX_OFFLOAD_VLAN_INSERT`).
    pub tx_insert: bool,
}

impl Worker {
    /// A frame from the uplink with an 802.1Q tag in its data (`classify` saw the ethertype):
    /// the tag comes off, then the frame is classified in its VLAN.
    #[inline(never)]
    pub(super) fn classify_tagged(&mut self, mut m: Mbuf, scope: RxScope) {
        let Some(tci) = tci_of(m.data()) else {
            // The ethertype without the rest of the tag.
            self.stats.uplink().rx_drop(DropReason::Runt, 1);
            return;
        };
        let vlan = vid_of(tci);
        if !self.tables.floods.has_vlan(vlan) {
            self.stats.uplink().rx_drop(DropReason::VlanUnknown, 1);
            return;
        }
        // A received frame is ours alone and `tci_of` saw a whole tag, so this holds; should
        // it not, the frame is counted rather than delivered tagged.
        if !m.strip_vlan() {
            self.stats.uplink().rx_drop(DropReason::Runt, 1);
            return;
        }
        self.classify_in(m, scope, vlan);
    }

    /// A frame whose tag the port already removed (VLAN strip offload), with its TCI.
    #[inline(never)]
    pub(super) fn classify_stripped(&mut self, m: Mbuf, scope: RxScope, tci: u16) {
        let vlan = vid_of(tci);
        if !self.tables.floods.has_vlan(vlan) {
            self.stats.uplink().rx_drop(DropReason::VlanUnknown, 1);
            return;
        }
        self.classify_in(m, scope, vlan);
    }

    /// A VLAN guest's frame for the uplink, tagged with `vlan`: by the port where it inserts
    /// tags, else in the frame's headroom.
    #[inline(never)]
    pub(super) fn send_tagged(&mut self, vlan: u16, mut m: Mbuf) {
        let tagged = if self.vlan_offload.tx_insert { m.request_tx_vlan(vlan) } else { m.insert_vlan(vlan) };
        if tagged {
            self.send_to_uplink(m);
        } else {
            // Only a frame without 4 bytes of headroom (the vhost library leaves the pool's
            // whole headroom) or without a whole header (refused as a runt before this).
            self.stats.uplink().tx_drop(DropReason::NoBuffer, 1);
        }
    }

    /// A VLAN bridge-mode guest's broadcast: untagged copies to its bridge-mode siblings in
    /// the VLAN, a tagged one to the uplink. The frame is shared by the local copies, so the
    /// uplink gets a copy of its own to tag.
    pub(super) fn flood_tagged_local(&mut self, g: GuestId, vlan: u16, mut m: Mbuf) {
        let f = Flood { source: Some(g), local: true, unpooled_only: false, vlan };
        // The uplink's copy first, in a buffer of its own: the frame itself is about to be
        // shared by the local copies, and a shared frame cannot take a tag.
        let out = self.copy_frame(&m);
        // Tag before sharing: every reference sees the same header.
        if !m.set_tag(Tag::flood(f).raw()) {
            // Never expected; dropped whole (with the uplink's copy) rather than half sent.
            self.stats.guest(g).rx_drop(DropReason::Untaggable, 1);
            return;
        }
        let (here, _) = self.flood(m, f, true);
        self.stats.guest(g).forward(here);
        match out {
            Some(out) => self.send_tagged(vlan, out),
            // Forwarded, but its way to the uplink found no buffer.
            None => self.stats.uplink().tx_drop(DropReason::NoBuffer, 1),
        }
    }

    /// A copy of `m` in a fresh buffer of the worker's pool; None if the pool is empty or the
    /// frame does not fit one buffer.
    fn copy_frame(&self, m: &Mbuf) -> Option<Mbuf> {
        let mut out = Mbuf::alloc(&self.pool)?;
        let len = u16::try_from(m.pkt_len()).ok()?;
        {
            let dst = out.append(len)?;
            let mut at = 0;
            for seg in m.segments() {
                dst[at..at + seg.len()].copy_from_slice(seg);
                at += seg.len();
            }
        }
        Some(out)
    }
}
