//! Why a frame was dropped: one named counter per reason, never a bare free.

use std::ops::{Add, AddAssign, Index, Sub};

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Every way the switch can discard a frame. The discriminant indexes counter arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Longer than the receiving guest's (or the uplink's) maximum frame.
    Oversize,
    /// Unicast to a MAC no guest owns (on a shared queue, the NIC let it in anyway).
    UnknownDest,
    /// A guest sent from a MAC it does not own.
    SpoofedSource,
    /// The guest's virtqueue had no room.
    GuestQueueFull,
    /// The destination guest has no vhost connection, or its link is down.
    GuestDown,
    /// Frames a worker could not hand the uplink: still held when it stopped (the uplink TX
    /// queue was full). While it runs, a full uplink is backpressure (`stalls`: guests are
    /// polled only for the room there is), not a drop.
    UplinkFull,
    /// The mode table said no (e.g. a reflected frame into a private guest).
    PolicyDenied,
    /// The ring to the worker that owns the destination queue was full.
    DispatchFull,
    /// A link-local group address (01:80:c2:00:00:0x: PAUSE, STP, LACP, LLDP...) from the
    /// uplink: for the switch's own end of the wire, never flooded to guests.
    LinkLocal,
    /// Frames a worker held for the uplink when it learnt that the uplink's link went down
    /// (at most a pending burst per worker; the port drops what it is given while down,
    /// as Linux drops a lower device's queue on carrier loss). Guests' further frames wait
    /// in their virtqueues until the link is back.
    UplinkDown,
}

impl DropReason {
    pub const COUNT: usize = 11;
    pub const ALL: [DropReason; DropReason::COUNT] = [
        DropReason::Runt,
        DropReason::Oversize,
        DropReason::UnknownDest,
        DropReason::SpoofedSource,
        DropReason::GuestQueueFull,
        DropReason::GuestDown,
        DropReason::UplinkFull,
        DropReason::PolicyDenied,
        DropReason::DispatchFull,
        DropReason::LinkLocal,
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
            DropReason::DispatchFull => "dispatch_full",
            DropReason::LinkLocal => "link_local",
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
                "dispatch_full",
                "link_local",
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
            r#"{"runt":3,"oversize":0,"unknown_dest":0,"spoofed_source":0,"guest_queue_full":0,"guest_down":0,"uplink_full":0,"policy_denied":4,"dispatch_full":0,"link_local":0,"uplink_down":0}"#
        );
    }
}
