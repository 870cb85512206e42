//! Why a frame was dropped: one named counter per reason, never a bare free; and what the
//! counters mean, which is defined here once (the README's counters section says the same).
//!
//! Per port (the uplink, each guest), in the switch's direction:
//! - `rx_packets`: frames received from the port.
//! - `forwarded`: of those, frames that went on. For the uplink: frames for which at least
//!   one copy was made for a guest. For a guest: frames queued for the uplink or switched
//!   to a sibling inside the host (bridge mode).
//! - `local`: of a guest's `forwarded`, the frames switched to one sibling only (not to the
//!   uplink).
//! - `rx_drops`: frames received from the port and dropped, per frame, one reason each,
//!   before any copy was made.
//! - `copies`: copies of the port's frames made for guests, one per guest the frame names: a
//!   unicast's one (the owner of its destination MAC, whether the mode then lets it in or
//!   not); a flood's, every guest whose mode takes it but its sender; a bridge guest's
//!   broadcast, every bridge sibling besides its way out of the uplink. Each worker counts
//!   the flood copies it handles: a guest attaching or detaching while a flood crosses
//!   between workers may get none of it, or two (see `Worker::flood`), each counted.
//! - `tx_packets`: frames the switch delivered to the port: for a guest, copies written into
//!   its virtqueue (from the uplink or from siblings); for the uplink, frames its tx queue
//!   took.
//! - `tx_drops`: copies (for a guest) or frames (for the uplink) headed to the port and
//!   dropped, one reason each.
//!
//! The identities, exact once no frame is in flight (between workers, in a worker's pending
//! uplink burst) and always at exit:
//! - uplink -> guests, per frame: `uplink.rx_packets = uplink.forwarded + uplink.rx_drops`.
//! - copies: `sum(port.copies) = sum(guest.tx_packets + guest.tx_drops)`.
//! - guests -> uplink, per frame: `guest.rx_packets = guest.forwarded + guest.rx_drops` for
//!   each guest, and `sum(guest.forwarded - guest.local) = uplink.tx_packets +
//!   uplink.tx_drops`.

use std::ops::{Add, AddAssign, Index, Sub};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Every way the switch can discard a frame. The discriminant indexes counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// rx: shorter than an Ethernet header.
    Runt,
    /// rx (a guest's frame over its own maximum) or tx (a copy over the destination guest's).
    Oversize,
    /// rx on the uplink: unicast to a MAC no guest owns (on a shared queue, the NIC let it in
    /// anyway).
    UnknownDest,
    /// rx on a guest: it sent from a MAC it does not own.
    SpoofedSource,
    /// tx on a guest: its virtqueue had no room.
    GuestQueueFull,
    /// tx on a guest: it has no vhost connection, or its link is down.
    GuestDown,
    /// tx on the uplink: frames a worker still held when it stopped because the uplink tx
    /// queue was full. While it runs, a full uplink is backpressure (`stalls`: guests are
    /// polled only for the room there is), not a drop.
    UplinkFull,
    /// tx on a guest: the mode table refuses it this unicast (e.g. a sibling's reflected
    /// frame into a private guest).
    PolicyDenied,
    /// tx on a guest: the ring to the worker that owns the guest's queue was full.
    PeerRingFull,
    /// rx on the uplink: a link-local group address (01:80:c2:00:00:0x: PAUSE, STP, LACP,
    /// LLDP...): for the switch's own end of the wire, never flooded to guests.
    LinkLocal,
    /// tx on a guest: the delivery map gave this worker a queue it does not own (the view
    /// and the worker's queues disagree; never expected).
    SlotNotOwned,
    /// tx on a guest: no ring to the worker the delivery map names (never expected).
    NoPeerRing,
    /// rx (a flood, or a bridge guest's broadcast) or tx (a unicast copy): the frame could
    /// not be tagged to cross to another worker because it was shared (never expected: a
    /// received frame is ours alone).
    Untaggable,
    /// rx on the uplink: a broadcast/multicast that no guest takes (none there, or the modes
    /// exclude them all, or only its sender is left; for a VMDq pool's replica, its one guest
    /// does not take it).
    NoDestination,
    /// rx on the uplink: a VMDq pool's replica of a broadcast that its guests already get
    /// from another pool (the default pool's copy when no unpooled guest is left, or a
    /// pool whose filters were refused).
    PoolDuplicate,
    /// tx on a guest: a copy a worker still held when it stopped (its pending batches; the
    /// rings between workers are emptied into the guests before they stop).
    Stopped,
    /// rx on the uplink: an 802.1Q-tagged frame for a VLAN no guest is in.
    VlanUnknown,
    /// rx on a guest: it sent an 802.1Q-tagged frame itself (the switch tags a VLAN guest's
    /// frames; an untagged guest may not reach into VLANs).
    VlanTagged,
    /// tx: no packet buffer (or headroom) for what the frame needed: a VLAN bridge-mode
    /// guest's broadcast's own copy for the uplink, a tag, a source-mode guest's copy.
    NoBuffer,
    /// rx on the uplink: a VEPA hairpin self-test probe of the switch's own that came back
    /// (counted, never delivered: see `wire::probe`).
    HairpinProbe,
    /// tx on the uplink: frames a worker held for the uplink when it learnt that the
    /// uplink's link went down (at most a pending burst per worker; the port drops what it
    /// is given while down, as Linux drops a lower device's queue on carrier loss). Guests'
    /// further frames wait in their virtqueues until the link is back.
    UplinkDown,
}

impl DropReason {
    pub const COUNT: usize = 21;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::UnknownDest,
        DropReason::SpoofedSource,
        DropReason::GuestQueueFull,
        DropReason::GuestDown,
        DropReason::UplinkFull,
        DropReason::PolicyDenied,
        DropReason::PeerRingFull,
        DropReason::LinkLocal,
        DropReason::SlotNotOwned,
        DropReason::NoPeerRing,
        DropReason::Untaggable,
        DropReason::NoDestination,
        DropReason::PoolDuplicate,
        DropReason::Stopped,
        DropReason::VlanUnknown,
        DropReason::VlanTagged,
        DropReason::NoBuffer,
        DropReason::HairpinProbe,
        DropReason::UplinkDown,
    ];

    /// Stable snake_case name, used as the JSON key and in log lines.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::Oversize => "oversize",
            DropReason::UnknownDest => "unknown_dest",
            DropReason::SpoofedSource => "spoofed_source",
            DropReason::GuestQueueFull => "guest_queue_full",
            DropReason::GuestDown => "guest_down",
            DropReason::UplinkFull => "uplink_full",
            DropReason::PolicyDenied => "policy_denied",
            DropReason::PeerRingFull => "peer_ring_full",
            DropReason::LinkLocal => "link_local",
            DropReason::SlotNotOwned => "slot_not_owned",
            DropReason::NoPeerRing => "no_peer_ring",
            DropReason::Untaggable => "untaggable",
            DropReason::NoDestination => "no_destination",
            DropReason::PoolDuplicate => "pool_duplicate",
            DropReason::Stopped => "stopped",
            DropReason::VlanUnknown => "vlan_unknown",
            DropReason::VlanTagged => "vlan_tagged",
            DropReason::NoBuffer => "no_buffer",
            DropReason::HairpinProbe => "hairpin_probe",
            DropReason::UplinkDown => "uplink_down",
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A count per [`DropReason`]. Serialises as `{"runt": n, ...}` with every reason present,
/// so consumers can rely on the keys existing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropCounts(pub [u64; DropReason::COUNT]);

impl DropCounts {
    pub fn get(&self, reason: DropReason) -> u64 {
        self.0[reason.index()]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |a, &b| a.wrapping_add(b))
    }

    /// Reasons in `DropReason::ALL` order with their counts.
    pub fn iter(&self) -> impl Iterator<Item = (DropReason, u64)> + '_ {
        DropReason::ALL.into_iter().map(|r| (r, self.get(r)))
    }
}

impl Index<DropReason> for DropCounts {
    type Output = u64;

    fn index(&self, reason: DropReason) -> &u64 {
        &self.0[reason.index()]
    }
}

impl AddAssign for DropCounts {
    fn add_assign(&mut self, rhs: Self) {
        for (a, b) in self.0.iter_mut().zip(rhs.0) {
            *a = a.wrapping_add(b);
        }
    }
}

impl Add for DropCounts {
    type Output = DropCounts;

    fn add(mut self, rhs: Self) -> DropCounts {
        self += rhs;
        self
    }
}

/// Counts since a baseline (counters only grow, so this never underflows; wrapping keeps a
/// wrapped counter's difference right).
impl Sub for DropCounts {
    type Output = DropCounts;

    fn sub(mut self, rhs: Self) -> DropCounts {
        for (a, b) in self.0.iter_mut().zip(rhs.0) {
            *a = a.wrapping_sub(b);
        }
        self
    }
}

impl Serialize for DropCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(DropReason::COUNT))?;
        for (reason, n) in self.iter() {
            map.serialize_entry(reason.name(), &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, r) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let names: Vec<&str> = DropReason::ALL.map(DropReason::name).to_vec();
        assert_eq!(
            names,
            [
                "runt",
                "oversize",
                "unknown_dest",
                "spoofed_source",
                "guest_queue_full",
                "guest_down",
                "uplink_full",
                "policy_denied",
                "peer_ring_full",
                "link_local",
                "slot_not_owned",
                "no_peer_ring",
                "untaggable",
                "no_destination",
                "pool_duplicate",
                "stopped",
                "vlan_unknown",
                "vlan_tagged",
                "no_buffer",
                "hairpin_probe",
                "uplink_down"
            ]
        );
    }

    #[test]
    fn counts_add_and_serialize_every_reason() {
        let mut a = DropCounts::default();
        a.0[DropReason::Runt.index()] = 2;
        let mut b = DropCounts::default();
        b.0[DropReason::Runt.index()] = 1;
        b.0[DropReason::PolicyDenied.index()] = 4;
        let sum = a + b;
        assert_eq!(sum[DropReason::Runt], 3);
        assert_eq!(sum.get(DropReason::PolicyDenied), 4);
        assert_eq!(sum.total(), 7);
        let json = serde_json::to_string(&sum).expect("serialize");
        assert_eq!(
            json,
            r#"{"runt":3,"oversize":0,"unknown_dest":0,"spoofed_source":0,"guest_queue_full":0,"guest_down":0,"uplink_full":0,"policy_denied":4,"peer_ring_full":0,"link_local":0,"slot_not_owned":0,"no_peer_ring":0,"untaggable":0,"no_destination":0,"pool_duplicate":0,"stopped":0,"vlan_unknown":0,"vlan_tagged":0,"no_buffer":0,"hairpin_probe":0,"uplink_down":0}"#
        );
    }
}
