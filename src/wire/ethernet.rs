//! Ethernet II header view: destination, source, EtherType, then payload.
//!
//! The view does not interpret VLAN tags: with a tag present, `ethertype()` is the TPID
//! (0x8100/0x88a8) and the tag is the first four payload bytes. Reading, removing and
//! inserting an 802.1Q tag is `wire::vlan`'s.

use super::{MacAddr, WireError};

/// Destination + source + EtherType.
pub const ETHER_HDR_LEN: usize = 14;
/// One 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// Frame check sequence; PMDs strip it, but device MTU arithmetic sometimes counts it.
pub const ETHER_CRC_LEN: usize = 4;

/// EtherType values the switch has reason to recognise.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    /// 802.3x PAUSE: link-local flow control, never flooded to guests (macvlan_broadcast
    /// skips it too).
    pub const PAUSE: u16 = 0x8808;
    pub const QINQ: u16 = 0x88a8;
}

const DST: usize = 0;
const SRC: usize = 6;
const TYPE: usize = 12;

/// A view of an Ethernet II frame over any byte buffer (a slice, a `Vec`, an mbuf's data).
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buf` after checking it holds a whole header.
    pub fn new_checked(buf: T) -> Result<Self, WireError> {
        let have = buf.as_ref().len();
        if have < ETHER_HDR_LEN {
            return Err(WireError::Truncated {
                layer: "ethernet",
                need: ETHER_HDR_LEN,
                have,
            });
        }
        Ok(EthernetFrame { buffer: buf })
    }

    #[inline]
    fn bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        // new_checked guaranteed the header is present, so this range is always in bounds.
        out.copy_from_slice(&self.buffer.as_ref()[at..at + N]);
        out
    }

    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        MacAddr(self.bytes(DST))
    }

    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        MacAddr(self.bytes(SRC))
    }

    #[inline]
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes(self.bytes(TYPE))
    }

    /// Everything after the 14-byte header (including any VLAN tag).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[ETHER_HDR_LEN..]
    }

    /// Whole frame length in bytes, header included.
    #[inline]
    pub fn len(&self) -> usize {
        self.buffer.as_ref().len()
    }

    /// Always false: a checked frame holds at least a header. Present for API symmetry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    #[inline]
    fn put(&mut self, at: usize, value: &[u8]) {
        self.buffer.as_mut()[at..at + value.len()].copy_from_slice(value);
    }

    #[inline]
    pub fn set_dst_addr(&mut self, mac: MacAddr) {
        self.put(DST, &mac.0);
    }

    #[inline]
    pub fn set_src_addr(&mut self, mac: MacAddr) {
        self.put(SRC, &mac.0);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.put(TYPE, &ethertype.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[ETHER_HDR_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broadcast ARP request from 52:54:00:00:00:01, first payload bytes only.
    const ARP_REQUEST: [u8; 18] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst
        0x52, 0x54, 0x00, 0x00, 0x00, 0x01, // src
        0x08, 0x06, // ARP
        0x00, 0x01, 0x08, 0x00, // htype, ptype
    ];

    #[test]
    fn reads_header_fields() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..]).expect("fixture is long enough");
        assert_eq!(f.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(f.src_addr(), MacAddr::new([0x52, 0x54, 0, 0, 0, 1]));
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.payload(), &[0x00, 0x01, 0x08, 0x00]);
        assert_eq!(f.len(), 18);
        assert!(!f.is_empty());
    }

    #[test]
    fn header_only_frame_has_empty_payload() {
        let f = EthernetFrame::new_checked(&ARP_REQUEST[..ETHER_HDR_LEN]).expect("exact header");
        assert!(f.payload().is_empty());
    }

    #[test]
    fn rejects_truncated_header() {
        let err = EthernetFrame::new_checked(&ARP_REQUEST[..13]).expect_err("13 bytes");
        assert_eq!(
            err,
            WireError::Truncated {
                layer: "ethernet",
                need: 14,
                have: 13
            }
        );
        assert_eq!(
            err.to_string(),
            "ethernet header truncated: need 14 bytes, have 13"
        );
    }

    #[test]
    fn writes_header_fields_in_place() {
        let mut buf = ARP_REQUEST.to_vec();
        let mut f = EthernetFrame::new_checked(&mut buf[..]).expect("fixture is long enough");
        f.set_dst_addr(MacAddr::new([0x52, 0x54, 0, 0, 0, 2]));
        f.set_src_addr(MacAddr::new([0x02, 0, 0, 0, 0, 9]));
        f.set_ethertype(ethertype::VLAN);
        f.payload_mut()[0] = 0xaa;
        let buf = f.into_inner();
        assert_eq!(
            buf[..ETHER_HDR_LEN + 1],
            [0x52, 0x54, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 9, 0x81, 0x00, 0xaa]
        );
    }
}
