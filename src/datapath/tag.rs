//! What a frame crossing to another worker carries in its mbuf tag: the destination queue
//! slot of a unicast frame, or "flood" with the guest that sent it (for reflection checks),
//! whether the flood is a bridge-mode guest's local one rather than one from the uplink,
//! whether it is only for the guests without a VMDq pool (the default pool's copy), and its
//! VLAN (the frame's tag is gone by then: floods are stripped before they are shared).

use crate::fib::GuestId;

const FLOOD: u32 = 1 << 31;
const LOCAL: u32 = 1 << 30;
const UNPOOLED: u32 = 1 << 29;
const SOURCE_MASK: u32 = UNPOOLED - 1;
/// A flood's source (guest id + 1, at most `MAX_GUESTS`) in the low 12 bits, its VLAN id in
/// the 12 above.
const FLOOD_SOURCE_MASK: u32 = 0xfff;
const VLAN_SHIFT: u32 = 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(u32);

/// A flood's origin, as the receiving worker needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flood {
    pub source: Option<GuestId>,
    /// Sent by a bridge-mode guest and switched inside the host (not received on the uplink).
    pub local: bool,
    /// For the guests without a VMDq pool only: the others got their own copy.
    pub unpooled_only: bool,
    /// Its VLAN id (0: untagged).
    pub vlan: u16,
}

impl Tag {
    pub fn unicast(slot: usize) -> Tag {
        debug_assert!((slot as u32) <= SOURCE_MASK);
        Tag(slot as u32)
    }

    pub fn flood(f: Flood) -> Tag {
        let src = f.source.map_or(0, |g| u32::from(g.0) + 1);
        debug_assert!(src <= FLOOD_SOURCE_MASK);
        let vlan = u32::from(crate::wire::vlan::vid_of(f.vlan)) << VLAN_SHIFT;
        Tag(FLOOD | if f.local { LOCAL } else { 0 } | if f.unpooled_only { UNPOOLED } else { 0 } | vlan | src)
    }

    pub fn from_raw(raw: u32) -> Tag {
        Tag(raw)
    }

    pub fn raw(self) -> u32 {
        self.0
    }

    /// Some for a flood, None for a unicast.
    pub fn flood_of(self) -> Option<Flood> {
        if self.0 & FLOOD == 0 {
            return None;
        }
        let s = self.0 & FLOOD_SOURCE_MASK;
        Some(Flood {
            source: if s == 0 { None } else { Some(GuestId((s - 1) as u16)) },
            local: self.0 & LOCAL != 0,
            unpooled_only: self.0 & UNPOOLED != 0,
            vlan: ((self.0 >> VLAN_SHIFT) & FLOOD_SOURCE_MASK) as u16,
        })
    }

    pub fn slot(self) -> usize {
        (self.0 & SOURCE_MASK) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(Tag::from_raw(Tag::unicast(4095 * 8).raw()).flood_of(), None);
        assert_eq!(Tag::unicast(77).slot(), 77);
        for local in [false, true] {
            for unpooled_only in [false, true] {
                for source in [None, Some(GuestId(0)), Some(GuestId(crate::config::MAX_GUESTS as u16 - 1))] {
                    for vlan in [0, 1, 10, 4094] {
                        let f = Flood { source, local, unpooled_only, vlan };
                        assert_eq!(Tag::from_raw(Tag::flood(f).raw()).flood_of(), Some(f));
                    }
                }
            }
        }
    }
}
