//! The frame that re-announces a MAC address on the uplink: a RARP "reverse request" from
//! that MAC to broadcast, the frame QEMU's announce-self sends after a migration, so every
//! switch on the way learns (or relearns) where the MAC lives. Also the schedule of rounds.
//!
//! Pure: no DPDK, any thread.

use std::time::Duration;

use super::{MacAddr, ETHER_HDR_LEN};

/// Ethertype of RARP.
pub const RARP_ETHERTYPE: u16 = 0x8035;
/// The frame's length: the Ethernet minimum without the FCS (the payload is zero-padded).
pub const ANNOUNCE_LEN: usize = 60;

/// RARP fields (RFC 903 reuses the ARP layout).
const HTYPE_ETHERNET: u16 = 1;
const PTYPE_IPV4: u16 = 0x0800;
const OP_REVERSE_REQUEST: u16 = 3;

/// Writes the announcement of `mac` into `out` (exactly `ANNOUNCE_LEN` bytes): to broadcast,
/// from `mac`, RARP reverse request with `mac` as sender and target hardware address and
/// zero protocol addresses.
pub fn write_announce(out: &mut [u8; ANNOUNCE_LEN], mac: MacAddr) {
    out.fill(0);
    out[0..6].copy_from_slice(&MacAddr::BROADCAST.octets());
    out[6..12].copy_from_slice(&mac.octets());
    out[12..14].copy_from_slice(&RARP_ETHERTYPE.to_be_bytes());
    let p = &mut out[ETHER_HDR_LEN..];
    p[0..2].copy_from_slice(&HTYPE_ETHERNET.to_be_bytes());
    p[2..4].copy_from_slice(&PTYPE_IPV4.to_be_bytes());
    p[4] = 6; // hardware address length
    p[5] = 4; // protocol address length
    p[6..8].copy_from_slice(&OP_REVERSE_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac.octets()); // sender hardware address; sender IP stays 0
    p[18..24].copy_from_slice(&mac.octets()); // target hardware address; target IP stays 0
}

/// Rounds of one announcement. As QEMU's announce-self defaults (5 rounds, gaps growing by
/// 100 ms from 50 ms): one lost frame or a switch port still coming up does not leave a
/// MAC unlearned, and the whole announcement is over in under a second.
pub const ANNOUNCE_ROUNDS: u32 = 5;
const FIRST_GAP: Duration = Duration::from_millis(50);
const GAP_STEP: Duration = Duration::from_millis(100);

/// How long after round `round` (0-based) the next one is due: 50, 150, 250, 350 ms.
pub fn gap_after(round: u32) -> Duration {
    FIRST_GAP + GAP_STEP * round
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_bytes_are_a_rarp_reverse_request_from_the_mac() {
        let mac = MacAddr::new([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        let mut f = [0xaau8; ANNOUNCE_LEN];
        write_announce(&mut f, mac);
        let mut want = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // from the guest MAC
            0x80, 0x35, // RARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x03, // Ethernet/IPv4, 6/4, reverse request
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, // sender: the MAC, 0.0.0.0
            0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0, 0, 0, 0, // target: the MAC, 0.0.0.0
        ];
        want.resize(ANNOUNCE_LEN, 0);
        assert_eq!(f.to_vec(), want);
    }

    #[test]
    fn rounds_come_with_growing_gaps() {
        let gaps: Vec<u64> = (0..ANNOUNCE_ROUNDS - 1).map(|r| gap_after(r).as_millis() as u64).collect();
        assert_eq!(gaps, [50, 150, 250, 350]);
    }
}
