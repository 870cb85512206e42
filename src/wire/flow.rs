//! A flow hash over a frame's addresses and ports: spreads a multiqueue guest's traffic over
//! its queues while keeping each flow on one queue (so it stays in order).
//!
//! Pure and allocation-free; runs per frame on the worker that received it.



const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_SCTP: u8 = 132;

/// Hash of the flow a frame belongs to: IP addresses and L4 ports when the frame carries
/// IPv4/IPv6 (behind up to two VLAN tags), the MAC addresses and ethertype otherwise.
/// Truncated or odd frames still hash (on what is there); nothing here can fail.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let mut off = 12;
    let mut ethertype = be16(frame, off);
    for _ in 0..2 {
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            off += 4;
            ethertype = be16(frame, off);
        }
    }
    let l3 = off + 2;
    let mut h = Mix::default();
    match ethertype {
        ETH_P_IPV4 if frame.len() >= l3 + 20 => {
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            let proto = frame[l3 + 9];
            h.add(be32(frame, l3 + 12));
            h.add(be32(frame, l3 + 16));
            h.add(u32::from(proto));
            // Only the first fragment carries ports; hashing them on some fragments but not on
            // others would split one datagram over two queues.
            let fragmented = be16(frame, l3 + 6) & 0x3fff != 0;
            if !fragmented && ihl >= 20 && has_ports(proto) {
                h.add(be32(frame, l3 + ihl));
            }
        }
        ETH_P_IPV6 if frame.len() >= l3 + 40 => {
            for i in 0..8 {
                h.add(be32(frame, l3 + 8 + 4 * i));
            }
            let next = frame[l3 + 6];
            h.add(u32::from(next));
            if has_ports(next) {
                h.add(be32(frame, l3 + 40));
            }
        }
        _ => {
            for i in 0..3 {
                h.add(be32(frame, 4 * i));
            }
            h.add(u32::from(ethertype));
        }
    }
    h.finish()
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
}

fn be16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_be_bytes([s[0], s[1]]),
        None => 0,
    }
}

fn be32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// Multiply-xor accumulation with a final avalanche, so that the low bits used for
/// `hash % queues` depend on every input bit.
#[derive(Default)]
struct Mix(u32);

impl Mix {
    fn add(&mut self, w: u32) {
        self.0 = (self.0 ^ w).wrapping_mul(0x9e37_79b1).rotate_left(13);
    }

    fn finish(self) -> u32 {
        let mut h = self.0;
        h ^= h >> 16;
        h = h.wrapping_mul(0x85eb_ca6b);
        h ^= h >> 13;
        h = h.wrapping_mul(0xc2b2_ae35);
        h ^ (h >> 16)
    }
}




#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, vlan: bool) -> Vec<u8> {
        let mut f = vec![0x52, 0x54, 0, 0, 0, 1, 2, 0, 0, 0, 0xee, 1];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 28, 0, 1, 0, 0, 64, IPPROTO_UDP, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn same_flow_same_hash_whatever_the_payload_or_macs() {
        let a = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, false);
        let mut b = a.clone();
        b[0..12].copy_from_slice(&[2, 0, 0, 0, 0, 9, 2, 0, 0, 0, 0, 8]);
        b.extend_from_slice(&[1, 2, 3]);
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn ports_and_addresses_and_vlan_tags_are_seen() {
        let base = flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, false));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 1001, 53, false)));
        assert_ne!(base, flow_hash(&udp4([10, 0, 0, 3], [10, 0, 0, 2], 1000, 53, false)));
        assert_eq!(base, flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, true)), "the tag is skipped");
    }

    #[test]
    fn fragments_hash_without_ports() {
        let mut first = udp4([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53, false);
        first[14 + 6] = 0x20; // more fragments
        let mut other_ports = first.clone();
        other_ports[34] = 0x77;
        assert_eq!(flow_hash(&first), flow_hash(&other_ports));
    }

    #[test]
    fn spreads_64_flows_over_4_queues() {
        let mut per_queue = [0u32; 4];
        for p in 0..64u16 {
            per_queue[(flow_hash(&udp4([10, 0, 0, 1], [10, 0, 0, 2], 2000 + p, 9, false)) % 4) as usize] += 1;
        }
        assert!(per_queue.iter().all(|&n| n >= 8), "{per_queue:?}");
    }

    #[test]
    fn short_and_odd_frames_do_not_panic() {
        for len in 0..60 {
            let f = vec![0x08u8; len];
            let _ = flow_hash(&f);
        }
        let _ = flow_hash(&[0x86, 0xdd]);
    }
}
