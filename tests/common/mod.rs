//! Test-support harness shared by the integration tests (`mod common;` in each tests/*.rs).
//!
//! - [`Netns`], [`HairpinLab`]: the external network (namespaces, veths, a Linux bridge with
//!   hairpin), the same topology as `dpdk-config/lab.sh`, with names unique to each test.
//! - [`RawSocket`]: an AF_PACKET socket inside a namespace, playing the external host or
//!   capturing on a bridge port.
//! - [`Proc`], [`Switch`], [`Guest`]: the processes under test, always killed on drop so that a
//!   failing test leaves nothing running, and reported in full when a wait times out.
//!
//! Everything panics with a message that says what was expected and what was seen: these are
//! tests, and a panic is how they fail.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

mod ctl;
pub mod identity;
pub mod labswitch;
mod netns;
mod proc;
mod rawsock;

#[allow(unused_imports)]
pub use labswitch::{drops, guest_stats, total_drops, LabOpts, LabSwitch};
#[allow(unused_imports)]
pub use netns::{run_cmd, HairpinLab, Netns};
#[allow(unused_imports)]
pub use ctl::{Ctl, CtlRun};
#[allow(unused_imports)]
pub use proc::{run_to_exit, Guest, Proc, SeqCheck, Switch};
#[allow(unused_imports)]
pub use rawsock::RawSocket;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Ethertype of test frames (IEEE 802 local experimental 1): nothing on the path parses it.
pub const TEST_ETHERTYPE: u16 = 0x88b5;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// Fails the test unless it runs as root. The end-to-end tests need namespaces, raw sockets and
/// vhost-user sockets; skipping silently would report a pass for something never tested.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root (network namespaces, raw sockets, DPDK): run it as root, \
         e.g. `sudo dpdk-config/run-tests.sh`"
    );
}

/// A short name unique on this machine while this process lives: `prefix` + pid + counter,
/// both in hex. Short because it ends up in interface names (15 bytes at most) and DPDK file
/// prefixes; a `prefix` of up to 6 characters keeps the result within 15.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{:x}-{n:x}", std::process::id())
}

/// One `[[guest]]` table of a guests file: `name` with `mac`, its socket `dir/name.sock`,
/// and `extra` lines (other keys, or nothing).
pub fn guest_toml(dir: &Path, name: &str, mac: &str, extra: &str) -> String {
    format!("[[guest]]\nname = \"{name}\"\nmac = \"{mac}\"\nsocket = \"{}/{name}.sock\"\n{extra}\n", dir.display())
}

/// Waits until `path` exists; fails the test after `within`.
pub fn wait_path(path: &Path, within: std::time::Duration) {
    let deadline = std::time::Instant::now() + within;
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} did not appear within {within:?}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The repository root, to find dpdk-config/ and example files from any test.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// EAL arguments of the `test` profile (dpdk-config/eal/test.conf), so the tests and the shell
/// scripts that use the profile cannot drift apart. The caller adds --file-prefix and -l.
pub fn eal_test_args() -> Vec<String> {
    let path = repo_root().join("dpdk-config/eal/test.conf");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("EAL_ARGS="))
        .unwrap_or_else(|| panic!("{} has no EAL_ARGS= line", path.display()));
    line["EAL_ARGS=".len()..].trim_matches('"').split_whitespace().map(str::to_owned).collect()
}

/// The RARP frame QEMU's announce-self sends for `m`, written out by hand.
pub fn rarp(m: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0x80, 0x35, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03]);
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&m);
    f.extend_from_slice(&[0; 4]);
    f.resize(60, 0);
    f
}

/// An Ethernet frame of exactly 14 + `payload_len` bytes. The payload starts with `tag` and
/// counts up from it, so frames with different tags differ in every payload byte and a
/// corrupted or truncated frame does not compare equal.
pub fn frame(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload_len: usize, tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload_len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend((0..payload_len).map(|i| tag.wrapping_add(i as u8)));
    f
}

/// A frame as `macvtap-guest`'s `stream` makes them (what its `seqcheck` checks): `len`
/// bytes, ethertype 0x88b5, the big-endian sequence number `seq` right after the header, zeros.
pub fn seq_frame(dst: [u8; 6], src: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(18)];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

/// An IPv4/UDP frame of flow `sport` with sequence number `seq` in its payload.
pub fn udp(dst: [u8; 6], src: [u8; 6], sport: u16, seq: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(64);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = [0x45, 0, 0, 46, 0, 1, 0, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2];
    // A valid header checksum: the lab's bridge (br_netfilter) drops IPv4 with a bad one.
    let sum: u32 = ip.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    ip[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&9000u16.to_be_bytes());
    f.extend_from_slice(&[0, 26, 0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    f.resize(60, 0xab);
    f
}

/// Inserts an 802.1Q tag after the MAC addresses of `frame`.
pub fn vlan_tag(frame: &[u8], tpid: u16, tci: u16) -> Vec<u8> {
    assert!(frame.len() >= 14, "frame of {} bytes has no Ethernet header", frame.len());
    let mut f = Vec::with_capacity(frame.len() + 4);
    f.extend_from_slice(&frame[..12]);
    f.extend_from_slice(&tpid.to_be_bytes());
    f.extend_from_slice(&tci.to_be_bytes());
    f.extend_from_slice(&frame[12..]);
    f
}

pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        // Writing to a String cannot fail.
        let _ = write!(s, "{x:02x}");
    }
    s
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    assert!(s.len() % 2 == 0, "odd-length hex string: {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex at offset {i} in {s:?}"))
        })
        .collect()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn mac(s: &str) -> [u8; 6] {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16).unwrap_or_else(|_| panic!("bad MAC {s:?}")))
        .collect();
    parts.try_into().unwrap_or_else(|_| panic!("bad MAC {s:?}: not 6 octets"))
}

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

/// The switch's own arguments (after `--`) for `--port 0`, a guests file, a stats export, and
/// a control socket beside the guests file (`control_socket`), so tests never share one.
///
/// With `--no-hairpin-check`: tests assert on exact frames (and on silence) on the wire and on
/// exact uplink counters, which the start-up self-test's two probes (and their reflections)
/// would disturb depending on timing. Tests of the self-test turn it back on
/// (`LabOpts::hairpin_check`).
pub fn switch_args(guests: &Path, json: &Path, stats_interval: u64) -> Vec<String> {
    let control = control_socket(guests);
    let args = [
        "--port",
        "0",
        "--guests",
        &guests.display().to_string(),
        "--stats-interval",
        &stats_interval.to_string(),
        "--stats-json",
        &json.display().to_string(),
        "--control",
        &control.display().to_string(),
        NO_HAIRPIN_CHECK,
    ];
    args.iter().map(|s| s.to_string()).collect()
}

/// The switch option that turns its start-up hairpin self-test off.
pub const NO_HAIRPIN_CHECK: &str = "--no-hairpin-check";

/// The control socket `switch_args` gives a switch whose guests file is `guests`.
pub fn control_socket(guests: &Path) -> PathBuf {
    guests.with_file_name("control.sock")
}

/// Reads a JSON file (e.g. a stats export), failing the test with its content if it is not JSON.
pub fn stats_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{text}", path.display()))
}
