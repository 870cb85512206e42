//! The VEPA hairpin self-test's probe frames: two unicast frames between two locally
//! administered MACs of the switch's own (P1, P2), IEEE local experimental ethertype 1,
//! whose payload carries a magic, which of the pair it is, and the check's nonce.
//!
//! Frame 1 goes from P1 to P2, so the external switch learns P1 on our port; frame 2 goes
//! from P2 to P1, which the external switch then sends back to our port only if it reflects
//! (hairpin). Both destinations are unicast MACs no guest owns, so on the way back they miss
//! the MAC table: the datapath looks for probes on its unknown-destination path only.
//!
//! Pure: no DPDK, any thread.

use super::{MacAddr, ETHER_HDR_LEN};

/// IEEE Std 802 local experimental ethertype 1.
pub const PROBE_ETHERTYPE: u16 = 0x88b5;
/// Marks a probe among other frames of the experimental ethertype.
pub const PROBE_MAGIC: [u8; 8] = *b"mvt-hpin";
pub const PROBE_LEN: usize = 60;
/// Bytes of the payload a probe is recognised by: magic, which, nonce.
const PROBE_FIELDS: usize = PROBE_MAGIC.len() + 1 + 8;

/// Which frame of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ProbeKind {
    /// P1 -> P2: teaches the external switch where P1 is.
    Learn = 1,
    /// P2 -> P1: comes back only if the external switch reflects.
    Reflect = 2,
}

/// A recognised probe: which one and the nonce of the check that sent it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub kind: ProbeKind,
    pub nonce: u64,
}

/// The switch's two probe MACs: derived from the uplink's own MAC (so two switches on one
/// network use different ones), locally administered, unicast, never the uplink's own MAC
/// (bit 3 of the first octet is flipped), and skipping any pair where `taken` says a guest
/// uses one of them.
pub fn probe_macs(uplink: MacAddr, taken: impl Fn(&MacAddr) -> bool) -> (MacAddr, MacAddr) {
    let mut o = uplink.octets();
    o[0] = ((o[0] | 0x02) & 0xfe) ^ 0x08;
    o[5] &= 0xfe;
    for _ in 0..128 {
        let p1 = MacAddr::new(o);
        let mut o2 = o;
        o2[5] |= 0x01;
        let p2 = MacAddr::new(o2);
        if !taken(&p1) && !taken(&p2) {
            return (p1, p2);
        }
        o[5] = o[5].wrapping_add(2);
    }
    // 128 pairs, every one taken by a guest: fall back to an octet no derivation above
    // produces (the guests' MACs are checked again when the probes are sent).
    o[4] ^= 0xff;
    let mut o2 = o;
    o2[5] |= 0x01;
    (MacAddr::new(o), MacAddr::new(o2))
}

/// Writes probe `kind` of the check `nonce` from `src` to `dst` into `out`.
pub fn write_probe(out: &mut [u8; PROBE_LEN], dst: MacAddr, src: MacAddr, kind: ProbeKind, nonce: u64) {
    out.fill(0);
    out[0..6].copy_from_slice(&dst.octets());
    out[6..12].copy_from_slice(&src.octets());
    out[12..14].copy_from_slice(&PROBE_ETHERTYPE.to_be_bytes());
    let p = &mut out[ETHER_HDR_LEN..];
    p[..8].copy_from_slice(&PROBE_MAGIC);
    p[8] = kind as u8;
    p[9..17].copy_from_slice(&nonce.to_be_bytes());
}

/// The probe `frame` is, if it is one (of any check, of any switch using this format).
#[inline]
pub fn parse_probe(frame: &[u8]) -> Option<Probe> {
    if frame.len() < ETHER_HDR_LEN + PROBE_FIELDS || frame[12..14] != PROBE_ETHERTYPE.to_be_bytes() {
        return None;
    }
    let p = &frame[ETHER_HDR_LEN..];
    if p[..8] != PROBE_MAGIC {
        return None;
    }
    let kind = match p[8] {
        1 => ProbeKind::Learn,
        2 => ProbeKind::Reflect,
        _ => return None,
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(&p[9..17]);
    Some(Probe { kind, nonce: u64::from_be_bytes(n) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_bytes() {
        let p1 = MacAddr::new([0x0a, 0, 0, 0, 0, 0x10]);
        let p2 = MacAddr::new([0x0a, 0, 0, 0, 0, 0x11]);
        let mut f = [0xaau8; PROBE_LEN];
        write_probe(&mut f, p1, p2, ProbeKind::Reflect, 0x0102_0304_0506_0708);
        let mut want = vec![
            0x0a, 0, 0, 0, 0, 0x10, // to P1
            0x0a, 0, 0, 0, 0, 0x11, // from P2
            0x88, 0xb5, // local experimental 1
            b'm', b'v', b't', b'-', b'h', b'p', b'i', b'n', // magic
            2, // the reflect probe
            1, 2, 3, 4, 5, 6, 7, 8, // nonce
        ];
        want.resize(PROBE_LEN, 0);
        assert_eq!(f.to_vec(), want);
        assert_eq!(parse_probe(&f), Some(Probe { kind: ProbeKind::Reflect, nonce: 0x0102_0304_0506_0708 }));
    }

    #[test]
    fn other_frames_are_not_probes() {
        let mut f = [0u8; PROBE_LEN];
        write_probe(&mut f, MacAddr::new([2, 0, 0, 0, 0, 1]), MacAddr::new([2, 0, 0, 0, 0, 2]), ProbeKind::Learn, 7);
        assert_eq!(parse_probe(&f).map(|p| p.kind), Some(ProbeKind::Learn));
        let mut other_type = f;
        other_type[13] = 0xb6;
        let mut other_magic = f;
        other_magic[14] = b'M';
        let mut other_kind = f;
        other_kind[22] = 3;
        for bad in [&other_type[..], &other_magic[..], &other_kind[..], &f[..30]] {
            assert_eq!(parse_probe(bad), None);
        }
    }

    #[test]
    fn probe_macs_are_local_unicast_distinct_and_avoid_guests() {
        let uplink = MacAddr::new([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let (p1, p2) = probe_macs(uplink, |_| false);
        assert_eq!(p1, MacAddr::new([0x0a, 0x11, 0x22, 0x33, 0x44, 0x54]));
        assert_eq!(p2, MacAddr::new([0x0a, 0x11, 0x22, 0x33, 0x44, 0x55]));
        for p in [p1, p2] {
            assert!(p.is_locally_administered() && p.is_unicast() && p != uplink);
        }
        let (q1, q2) = probe_macs(uplink, |m| *m == p2);
        assert_eq!((q1, q2), (MacAddr::new([0x0a, 0x11, 0x22, 0x33, 0x44, 0x56]), MacAddr::new([0x0a, 0x11, 0x22, 0x33, 0x44, 0x57])));
        // A universally administered uplink MAC gets the local bit.
        let (r1, _) = probe_macs(MacAddr::new([0x52, 0x54, 0, 0, 0, 1]), |_| false);
        assert_eq!(r1, MacAddr::new([0x5a, 0x54, 0, 0, 0, 0]));
    }
}
