//! 802.1Q tags: reading one after the MAC addresses, and taking it out or putting it in by
//! moving the 12 address bytes (the payload never moves).
//!
//! Role: the byte work of per-guest VLANs, on plain slices so that it is unit-tested without
//! DPDK; `rte::Mbuf` adjusts the buffer's offsets around it. Only TPID 0x8100 is a VLAN tag
//! here: an 802.1ad S-tag (0x88a8) is not one (see README, "VLANs").
//!
//! Threads: any; per frame on the workers, so nothing allocates and nothing panics.

use super::ethernet::{ethertype, ETHER_HDR_LEN, VLAN_TAG_LEN};

/// The two MAC addresses that move when a tag goes in or out.
const ADDRS: usize = 12;

/// VLAN ids a guest may be given: 0 means untagged (or priority-tagged) and 4095 is reserved
/// by 802.1Q.
pub const MIN_VID: u16 = 1;
pub const MAX_VID: u16 = 4094;
/// Number of distinct 12-bit VLAN ids, for tables indexed by one.
pub const VID_COUNT: usize = 4096;

/// The VLAN id (low 12 bits) of a TCI; the priority and DEI bits are dropped.
#[inline]
pub fn vid_of(tci: u16) -> u16 {
    tci & 0x0fff
}

/// The TCI of an 802.1Q-tagged frame (ethertype 0x8100 after the addresses), or None if the
/// frame is untagged or too short to hold a whole tag.
#[inline]
pub fn tci_of(frame: &[u8]) -> Option<u16> {
    if frame.len() < ETHER_HDR_LEN + VLAN_TAG_LEN || frame[ADDRS..ADDRS + 2] != ethertype::VLAN.to_be_bytes() {
        return None;
    }
    Some(u16::from_be_bytes([frame[14], frame[15]]))
}

/// Removes the tag of a tagged `frame` in place: the addresses move 4 bytes up, over the tag,
/// so the untagged frame is `frame[4..]` afterwards. The caller checked `tci_of` first; a
/// frame without room for a tag is left alone (and false returned).
#[inline]
pub fn strip(frame: &mut [u8]) -> bool {
    if frame.len() < ETHER_HDR_LEN + VLAN_TAG_LEN {
        return false;
    }
    frame.copy_within(0..ADDRS, VLAN_TAG_LEN);
    true
}

/// Puts a tag with `tci` into `buf`, whose first 4 bytes are room just made in front of an
/// untagged frame (`buf[4..]`): the addresses move 4 bytes down into that room and the tag
/// goes where they were. False (and nothing written) if `buf` holds no whole header.
#[inline]
pub fn insert(buf: &mut [u8], tci: u16) -> bool {
    if buf.len() < VLAN_TAG_LEN + ETHER_HDR_LEN {
        return false;
    }
    buf.copy_within(VLAN_TAG_LEN..VLAN_TAG_LEN + ADDRS, 0);
    buf[ADDRS..ADDRS + 2].copy_from_slice(&ethertype::VLAN.to_be_bytes());
    buf[ADDRS + 2..ADDRS + 4].copy_from_slice(&tci.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An untagged test frame: dst, src, ethertype 0x88b5, 4 payload bytes.
    const UNTAGGED: [u8; 18] = [
        0x52, 0x54, 0, 0, 0, 2, // dst
        0x52, 0x54, 0, 0, 0, 1, // src
        0x88, 0xb5, // ethertype
        1, 2, 3, 4,
    ];
    /// The same frame with priority 5, VLAN 10.
    const TAGGED: [u8; 22] = [
        0x52, 0x54, 0, 0, 0, 2, //
        0x52, 0x54, 0, 0, 0, 1, //
        0x81, 0x00, 0xa0, 0x0a, // TPID, PCP 5 DEI 0 VID 10
        0x88, 0xb5, //
        1, 2, 3, 4,
    ];

    #[test]
    fn reads_the_tag_of_8021q_frames_only() {
        assert_eq!(tci_of(&TAGGED), Some(0xa00a));
        assert_eq!(vid_of(0xa00a), 10);
        assert_eq!(tci_of(&UNTAGGED), None);
        let mut qinq = TAGGED;
        qinq[12..14].copy_from_slice(&ethertype::QINQ.to_be_bytes());
        assert_eq!(tci_of(&qinq), None, "an 802.1ad S-tag is not a VLAN tag here");
        assert_eq!(tci_of(&TAGGED[..17]), None, "a tag cut short");
        assert_eq!(tci_of(&TAGGED[..18]), Some(0xa00a), "a tag and its inner ethertype");
    }

    #[test]
    fn strip_moves_the_addresses_over_the_tag() {
        let mut buf = TAGGED;
        assert!(strip(&mut buf));
        assert_eq!(buf[VLAN_TAG_LEN..], UNTAGGED);
        let mut short = [0u8; 17];
        assert!(!strip(&mut short));
        assert_eq!(short, [0u8; 17], "left alone");
    }

    #[test]
    fn insert_fills_the_room_in_front() {
        let mut buf = [0xeeu8; 22];
        buf[VLAN_TAG_LEN..].copy_from_slice(&UNTAGGED);
        assert!(insert(&mut buf, 0xa00a));
        assert_eq!(buf, TAGGED);
        let mut short = [0u8; 17];
        assert!(!insert(&mut short, 1));
        assert_eq!(short, [0u8; 17]);
    }

    #[test]
    fn insert_then_strip_round_trips_every_vid() {
        for vid in [MIN_VID, 10, 100, MAX_VID] {
            let mut buf = [0u8; 22];
            buf[VLAN_TAG_LEN..].copy_from_slice(&UNTAGGED);
            assert!(insert(&mut buf, vid));
            assert_eq!(tci_of(&buf).map(vid_of), Some(vid));
            assert!(strip(&mut buf));
            assert_eq!(buf[VLAN_TAG_LEN..], UNTAGGED);
        }
    }
}
