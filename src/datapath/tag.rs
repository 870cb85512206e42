//! What a frame crossing to another worker carries in its mbuf tag: the destination queue
//! slot of a unicast frame, or "flood" with the guest that sent it (for reflection checks).

use crate::fib::GuestId;

const FLOOD: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(u32);

impl Tag {
    pub fn unicast(slot: usize) -> Tag {
        debug_assert!((slot as u32) < FLOOD);
        Tag(slot as u32)
    }

    pub fn flood(src: Option<GuestId>) -> Tag {
        Tag(FLOOD | src.map_or(0, |g| u32::from(g.0) + 1))
    }

    pub fn from_raw(raw: u32) -> Tag {
        Tag(raw)
    }

    pub fn raw(self) -> u32 {
        self.0
    }

    /// Some(source guest, if any) for a flood, None for a unicast.
    pub fn flood_source(self) -> Option<Option<GuestId>> {
        if self.0 & FLOOD == 0 {
            return None;
        }
        let s = self.0 & !FLOOD;
        Some(if s == 0 { None } else { Some(GuestId((s - 1) as u16)) })
    }

    pub fn slot(self) -> usize {
        (self.0 & !FLOOD) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(Tag::from_raw(Tag::unicast(4095 * 8).raw()).flood_source(), None);
        assert_eq!(Tag::unicast(77).slot(), 77);
        assert_eq!(Tag::flood(None).flood_source(), Some(None));
        assert_eq!(Tag::flood(Some(GuestId(0))).flood_source(), Some(Some(GuestId(0))));
        assert_eq!(Tag::flood(Some(GuestId(4095))).flood_source(), Some(Some(GuestId(4095))));
    }
}
