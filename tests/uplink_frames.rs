//! Frames the switch itself sends on the uplink, against a real Linux bridge: MAC
//! re-announcements (`dpdk-macvtapctl announce`) and the VEPA hairpin self-test
//! (`hairpin-check`, and at start-up).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use common::identity::wait_stats;
use common::*;

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
const B2: &str = "52:54:00:00:00:12";
const C: &str = "52:54:00:00:00:03";
const ROUNDS: u64 = 5;
/// The gap after which a capture is over: longer than nothing, shorter than a round's gap
/// would matter (the counters say when every frame has left before it is used).
const IDLE: Duration = Duration::from_millis(300);
/// How long the counters may take to say every round has left.
const WAIT: Duration = Duration::from_secs(10);

/// Frames the switch sent, from a capture on the bridge's port, counted by frame.
fn from_switch(capture: &RawSocket) -> BTreeMap<Vec<u8>, u64> {
    let mut seen = BTreeMap::new();
    for f in capture.collect_incoming(IDLE) {
        *seen.entry(f).or_insert(0) += 1;
    }
    seen
}

#[test]
fn announce_sends_a_rarp_per_guest_mac_per_round_and_the_bridge_learns_them() {
    let two_macs = format!("mac = [\"{B}\", \"{B2}\"]");
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    // Two guests more at run time, one with two MACs: announced like the file's.
    let add = |name: &str, mac_line: &str| {
        let toml = format!("[[guest]]\nname = \"{name}\"\n{mac_line}\nsocket = \"{}/{name}.sock\"\n", env.dir.path().display());
        assert_eq!(ctl.json(&["guest-add", "--toml", &toml])["added"], name);
    };
    add("vm2", &two_macs);
    add("vm3", &format!("mac = \"{C}\""));
    let capture = env.lab.bridge_port_capture();
    assert!(from_switch(&capture).is_empty(), "nothing on the wire before the announcement");

    let r = ctl.json(&["announce"]);
    assert_eq!(r, serde_json::json!({"guests": 3, "macs": 4, "rounds": ROUNDS, "queued": 4}));
    let v = wait_stats(&ctl, WAIT, |v| v["originated"]["tx_packets"] == 4 * ROUNDS);
    assert_eq!(v["originated"]["announces"], 4 * ROUNDS, "{v}");
    let want: BTreeMap<Vec<u8>, u64> = [A, B, B2, C].iter().map(|m| (rarp(mac(m)), ROUNDS)).collect();
    assert_eq!(from_switch(&capture), want, "exactly one RARP per MAC per round, nothing else");
    let fdb = env.lab.fdb();
    for m in [A, B, B2, C] {
        assert!(fdb.lines().any(|l| l.starts_with(m) && l.contains("dev mvtup0-br")), "{m} learned on the switch's port:\n{fdb}");
    }

    // One guest: its MACs only, and the human output says so.
    let out = ctl.run(&["announce", "vm2"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stdout, "announcing 2 MACs of 1 guests: 5 rounds, 2 frames queued now\n");
    wait_stats(&ctl, WAIT, |v| v["originated"]["tx_packets"] == 6 * ROUNDS);
    let want: BTreeMap<Vec<u8>, u64> = [B, B2].iter().map(|m| (rarp(mac(m)), ROUNDS)).collect();
    assert_eq!(from_switch(&capture), want);
    assert!(ctl.refused(&["announce", "vm9"]).contains("guest \"vm9\" does not exist"));

    let v = env.stop();
    let o = &v["originated"];
    assert_eq!((o["announces"].as_u64(), o["tx_packets"].as_u64(), o["tx_bytes"].as_u64()), (Some(30), Some(30), Some(30 * 60)), "{v}");
    assert_eq!(o["probes"], 0, "--no-hairpin-check: no probe at start-up: {v}");
    for k in ["dropped_ring_full", "dropped_no_buffer", "dropped_at_stop"] {
        assert_eq!(o[k], 0, "{k}: {v}");
    }
    assert_eq!(v["uplink"]["tx_packets"], 0, "announcements are not guest traffic: {v}");
    assert_eq!(v["hairpin"]["state"], "unknown", "{v}");
}

/// The two probes of one check, as the switch sent them: learn P1 -> P2, then reflect
/// P2 -> P1, the same nonce in both.
fn assert_probe_pair(frames: &BTreeMap<Vec<u8>, u64>, p1: [u8; 6], p2: [u8; 6]) {
    assert_eq!(frames.len(), 2, "one probe pair: {frames:?}");
    let learn = frames.keys().find(|f| f[0..6] == p2).expect("learn probe to P2");
    let reflect = frames.keys().find(|f| f[0..6] == p1).expect("reflect probe to P1");
    for (f, src, kind) in [(learn, p1, 1u8), (reflect, p2, 2u8)] {
        assert_eq!(f.len(), 60, "{f:?}");
        assert_eq!(f[6..12], src, "{f:?}");
        assert_eq!(f[12..14], [0x88, 0xb5], "{f:?}");
        assert_eq!(&f[14..22], b"mvt-hpin", "{f:?}");
        assert_eq!(f[22], kind, "{f:?}");
        assert!(f[31..].iter().all(|&b| b == 0), "zero padding: {f:?}");
    }
    assert_eq!(learn[23..31], reflect[23..31], "one nonce");
}

/// The metrics document, from the switch's metrics socket.
fn metrics(sock: &Path) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect to the metrics socket");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: switch\r\nConnection: close\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    text
}

#[test]
fn hairpin_check_tells_a_reflecting_bridge_port_from_one_that_does_not() {
    let mdir = tempfile::tempdir().expect("tempdir");
    let msock = mdir.path().join("metrics.sock");
    let marg = format!("unix:{}", msock.display());
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts { hairpin_check: true, app: &["--metrics", &marg], ..LabOpts::default() });
    // The lab's bridge port starts with hairpin off: the start-up check says so.
    let line = env.switch().proc.wait_line("hairpin: ", Duration::from_secs(10));
    assert_eq!(line, "hairpin: does not reflect: VEPA guests cannot reach each other through it");
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    let ctl = env.ctl();
    let status = ctl.json(&["call", "hairpin-status"]);
    assert_eq!(status["state"], "does_not_reflect", "{status}");
    assert_eq!(status["checking"], false, "{status}");
    let p: Vec<[u8; 6]> = status["probe_macs"].as_array().expect("probe macs").iter().map(|m| mac(m.as_str().expect("mac"))).collect();
    let (p1, p2) = (p[0], p[1]);
    assert!(p1[0] & 0x02 != 0 && p1[0] & 0x01 == 0 && p1 != p2, "locally administered unicast: {status}");

    env.lab.set_hairpin(true);
    let capture = env.lab.bridge_port_capture();
    let out = ctl.run(&["hairpin-check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.starts_with("hairpin: external switch reflects (hairpin on)\n"), "{}", out.stdout);
    assert_eq!(env.switch().proc.wait_line("hairpin: ", Duration::from_secs(5)), "hairpin: external switch reflects (hairpin on)");
    assert_probe_pair(&from_switch(&capture), p1, p2);
    assert_eq!(ctl.json(&["stats"])["hairpin"]["state"], "reflects");
    let m = metrics(&msock);
    for line in [
        "dpdk_macvtap_hairpin{state=\"reflects\"} 1\n",
        "dpdk_macvtap_hairpin{state=\"does_not_reflect\"} 0\n",
        "dpdk_macvtap_hairpin_probe_frames_total 4\n",
        "dpdk_macvtap_originated_tx_packets_total 4\n",
    ] {
        assert!(m.contains(line), "{line:?} in\n{m}");
    }

    env.lab.set_hairpin(false);
    let v = ctl.json(&["hairpin-check"]);
    assert_eq!((v["state"].as_str(), v["checking"].as_bool()), (Some("does_not_reflect"), Some(false)), "{v}");
    assert_eq!(v["message"], "does not reflect: VEPA guests cannot reach each other through it");
    assert_probe_pair(&from_switch(&capture), p1, p2);

    // No probe (sent, flooded, or reflected) reached a guest.
    assert!(a.recv(500, 1).is_empty() && b.recv(500, 1).is_empty(), "a guest received something");
    for g in ["vm1", "vm2"] {
        assert_eq!(ctl.guest_counters(g)["tx_packets"], 0, "{g}");
    }
    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(v["hairpin"]["state"], "does_not_reflect", "{v}");
    let o = &v["originated"];
    assert_eq!((o["probes"].as_u64(), o["tx_packets"].as_u64(), o["announces"].as_u64()), (Some(6), Some(6), Some(0)), "three checks: {v}");
    // Only while the port reflected did probes come back: both of that check's (the bridge
    // had learned P1 and P2 on our port from the first check).
    assert_eq!(drops(&v["uplink"], "hairpin_probe"), 2, "{v}");
    assert_eq!(v["uplink"]["rx_packets"], 2, "{v}");
    assert_eq!(total_drops(&v["uplink"]), 2, "counted apart, not as unknown_dest: {v}");
    for g in ["vm1", "vm2"] {
        assert_eq!(guest_stats(&v, g)["tx_packets"], 0, "{g}: {v}");
    }
}
