//! The uplink traffic replayed by `net_pcap,rx_pcap=F,infinite_rx=1`: a small classic pcap
//! file of identical frames, written here so every system replays the same bytes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Ethertype of generated frames (IEEE local experimental): nothing on the path parses them.
pub const ETHERTYPE: u16 = 0x88b5;
/// Frames per file: enough for the PMD's ring to cycle through, small enough to load fast.
const FRAMES: usize = 256;
/// At most this many when there are more destinations: `infinite_rx` holds every frame of
/// the file in an mbuf of the switch's pool for the whole run.
const MAX_FRAMES: usize = 1024;

/// One Ethernet frame of `len` bytes (FCS excluded): `dst`, `src`, ethertype, zero payload
/// with a sequence number in the first payload bytes.
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    if f.len() >= 18 {
        f[14..18].copy_from_slice(&seq.to_be_bytes());
    }
    f
}

/// Writes frames from `src` to each destination of `dsts` in turn: `FRAMES`, or one per
/// destination up to `MAX_FRAMES` (then only the first `MAX_FRAMES` destinations).
pub fn write(path: &Path, dsts: &[[u8; 6]], src: [u8; 6], len: usize) -> Result<()> {
    let frames = FRAMES.max(dsts.len().min(MAX_FRAMES));
    let mut out = Vec::with_capacity(24 + frames * (16 + len));
    // Global header: magic, version 2.4, tz 0, sigfigs 0, snaplen, linktype 1 (Ethernet).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..frames {
        let f = frame(dsts[i % dsts.len()], src, len, i as u32);
        out.extend_from_slice(&0u32.to_le_bytes()); // ts_sec
        out.extend_from_slice(&(i as u32).to_le_bytes()); // ts_usec
        out.extend_from_slice(&(f.len() as u32).to_le_bytes()); // incl_len
        out.extend_from_slice(&(f.len() as u32).to_le_bytes()); // orig_len
        out.extend_from_slice(&f);
    }
    let mut file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_has_addresses_and_length() {
        let f = frame([1; 6], [2; 6], 60, 7);
        assert_eq!(f.len(), 60);
        assert_eq!(&f[0..6], &[1; 6]);
        assert_eq!(&f[6..12], &[2; 6]);
        assert_eq!(&f[12..14], &[0x88, 0xb5]);
        assert_eq!(&f[14..18], &[0, 0, 0, 7]);
    }
}
