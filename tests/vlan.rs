//! Per-guest VLANs against a real Linux bridge (which forwards tagged frames as they are, and
//! hairpins them when told): two guests in VLAN 10, one in VLAN 20, one untagged. Captures on
//! the bridge side show the tags; the guests see untagged frames; nothing crosses a VLAN.
//!
//! The uplink is net_af_packet, which offers VLAN strip and insert offloads (done by the PMD
//! from the kernel's packet metadata), so the tests run both ways: the offloads, and the
//! switch's own software tagging (`--no-vlan-offload`).

mod common;

use std::time::Duration;

use common::identity::wait_stats;
use common::*;

const A: &str = "52:54:00:00:10:0a";
const B: &str = "52:54:00:00:10:0b";
const C: &str = "52:54:00:00:20:0c";
const D: &str = "52:54:00:00:00:0d";
const QUIET: u64 = 600;
const IDLE: Duration = Duration::from_millis(400);
const VLAN: u16 = 0x8100;

/// a, b in VLAN 10, c in VLAN 20, d untagged.
fn start(app: &[&str]) -> LabSwitch {
    LabSwitch::start(
        &[("a", A, "vlan = 10"), ("b", B, "vlan = 10"), ("c", C, "vlan = 20"), ("d", D, "")],
        LabOpts { app, ..LabOpts::default() },
    )
}

fn tagged(f: &[u8], vid: u16) -> Vec<u8> {
    vlan_tag(f, VLAN, vid)
}

fn incoming(frames: Vec<(Vec<u8>, bool)>) -> Vec<Vec<u8>> {
    frames.into_iter().filter(|(_, outgoing)| !outgoing).map(|(f, _)| f).collect()
}

/// What `stats` says the uplink port does for VLANs.
fn vlan_work(env: &LabSwitch) -> serde_json::Value {
    env.ctl().json(&["stats"])["uplink_vlan"].clone()
}

fn startup_line(env: &LabSwitch, prefix: &str) -> String {
    let lines = env.switch().proc.stdout_lines();
    lines.into_iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no start-up line {prefix:?}"))
}

/// Checks that none of the guests a, b, c, d got anything more, lets them go, stops the
/// switch (clean, nothing leaked) and returns its final counters.
fn nothing_more_then_stop(env: &mut LabSwitch, guests: [Guest; 4]) -> serde_json::Value {
    for (name, g) in ["a", "b", "c", "d"].iter().zip(&guests) {
        assert!(g.recv(QUIET, 1).is_empty(), "{name} got something more");
    }
    for g in guests {
        g.quit();
    }
    env.stop()
}

/// Frames from the outside world, software tagging: each reaches the right guest untagged,
/// or nobody; guests' frames leave with their VLAN's tag (or none).
#[test]
fn tags_on_the_wire_and_none_in_the_guests() {
    let mut env = start(&["--no-vlan-offload"]);
    assert_eq!(
        startup_line(&env, "uplink vlan: "),
        "uplink vlan: rx tag removal by software (--no-vlan-offload), tx tag insertion by software (--no-vlan-offload)"
    );
    assert!(startup_line(&env, "guest a: ").contains(", vlan 10, "), "the guest line shows its VLAN");
    assert_eq!(vlan_work(&env), serde_json::json!({ "rx_strip": "software", "tx_insert": "software" }));
    let shown = env.ctl().json(&["guest-show", "c"]);
    assert_eq!(shown["vlan"], 20, "{shown}");
    assert_eq!(env.ctl().json(&["guest-show", "d"])["vlan"], serde_json::Value::Null);

    let (a, b, c, d) = (env.guest("a"), env.guest("b"), env.guest("c"), env.guest("d"));
    let ext = env.lab.ext_socket();
    let capture = env.lab.bridge_port_capture();
    let x = env.lab.ext_mac;

    // Out: A's frame gets tag 10 (priority 0), D's none; both byte for byte otherwise.
    let from_a = frame(x, mac(A), TEST_ETHERTYPE, 100, 1);
    let from_d = frame(x, mac(D), TEST_ETHERTYPE, 100, 2);
    assert_eq!(a.send(&from_a, 1), 1);
    assert_eq!(incoming(ext.collect(IDLE)), vec![tagged(&from_a, 10)], "the external host got A's frame tagged 10");
    assert_eq!(d.send(&from_d, 1), 1);
    assert_eq!(incoming(ext.collect(IDLE)), vec![from_d.clone()], "and D's untagged");
    let wire = incoming(capture.collect(Duration::from_millis(100)));
    assert_eq!(wire, vec![tagged(&from_a, 10), from_d], "as the bridge port saw them arrive");

    // A guest may not tag its own frames (nor reach into another VLAN by doing so).
    let self_tagged = tagged(&frame(x, mac(A), TEST_ETHERTYPE, 60, 3), 20);
    assert_eq!(a.send(&self_tagged, 1), 1);
    let self_tagged_d = tagged(&frame(x, mac(D), TEST_ETHERTYPE, 60, 4), 10);
    assert_eq!(d.send(&self_tagged_d, 1), 1);
    assert!(incoming(ext.collect(IDLE)).is_empty(), "neither self-tagged frame left");

    // In: tagged unicast reaches its guest untagged, whatever the priority bits.
    let to_a = frame(mac(A), x, TEST_ETHERTYPE, 80, 10);
    ext.send(&tagged(&to_a, 0xe000 | 10));
    assert_eq!(a.recv(3000, 2), vec![to_a.clone()], "A gets the frame without its tag");
    // The wrong VLAN, no tag, an unknown VLAN: nobody.
    ext.send(&tagged(&to_a, 20));
    ext.send(&to_a);
    ext.send(&tagged(&to_a, 30));
    // Priority-tagged (VID 0) is untagged: D gets it without the tag.
    let to_d = frame(mac(D), x, TEST_ETHERTYPE, 80, 11);
    ext.send(&tagged(&to_d, 0x6000));
    assert_eq!(d.recv(3000, 2), vec![to_d], "a priority tag is taken off for an untagged guest");

    // Broadcasts stay in their VLAN.
    let bc10 = frame(BROADCAST, x, TEST_ETHERTYPE, 64, 20);
    let bc20 = frame(BROADCAST, x, TEST_ETHERTYPE, 64, 21);
    let bc0 = frame(BROADCAST, x, TEST_ETHERTYPE, 64, 22);
    ext.send(&tagged(&bc10, 10));
    ext.send(&tagged(&bc20, 20));
    ext.send(&bc0);
    assert_eq!(a.recv(3000, 2), vec![bc10.clone()], "A: VLAN 10's broadcast, untagged");
    assert_eq!(b.recv(3000, 2), vec![bc10], "B: VLAN 10's broadcast, untagged");
    assert_eq!(c.recv(3000, 2), vec![bc20], "C: VLAN 20's only");
    assert_eq!(d.recv(3000, 2), vec![bc0], "D: the untagged one only");

    // A re-announcement goes out in each guest's VLAN: C's RARP tagged 20, D's untagged
    // (the first of its rounds; the external switch must learn C's MAC in VLAN 20).
    // Every round of both is counted sent before the wire is read: the capture then holds
    // them all, and exactly those (5 rounds each).
    let ctl = env.ctl();
    let before = ctl.originated();
    ctl.json(&["announce", "c"]);
    ctl.json(&["announce", "d"]);
    let v = wait_stats(&ctl, Duration::from_secs(20), |v| v["originated"]["tx_packets"].as_u64() >= Some(before + 10));
    assert_eq!(v["originated"]["tx_packets"], before + 10, "the switch sent other frames of its own: {v}");
    let mut rarps = std::collections::BTreeMap::new();
    for f in incoming(capture.collect(IDLE)) {
        let ethertype = if f[12..14] == VLAN.to_be_bytes() { &f[16..18] } else { &f[12..14] };
        if ethertype == [0x80, 0x35] {
            *rarps.entry(f).or_insert(0u64) += 1;
        }
    }
    let want: std::collections::BTreeMap<Vec<u8>, u64> = [(tagged(&rarp(mac(C)), 20), 5), (rarp(mac(D)), 5)].into_iter().collect();
    assert_eq!(rarps, want, "C announced in VLAN 20 only, D untagged, once a round");
    let v = nothing_more_then_stop(&mut env, [a, b, c, d]);
    let up = &v["uplink"];
    assert_eq!(up["rx_packets"], 8, "{v}");
    assert_eq!(up["tx_packets"], 2, "{v}");
    assert_eq!(drops(up, "unknown_dest"), 2, "VLAN 20's and the untagged frame for A: {v}");
    assert_eq!(drops(up, "vlan_unknown"), 1, "VLAN 30: {v}");
    assert_eq!(total_drops(up), 3, "{v}");
    assert_eq!(drops(guest_stats(&v, "a"), "vlan_tagged"), 1, "{v}");
    assert_eq!(drops(guest_stats(&v, "d"), "vlan_tagged"), 1, "{v}");
    for (name, tx) in [("a", 2), ("b", 1), ("c", 1), ("d", 2)] {
        let g = guest_stats(&v, name);
        assert_eq!(g["tx_packets"], tx, "{name}: {v}");
        assert_eq!(total_drops(g), u64::from(name == "a" || name == "d"), "{name}: {v}");
    }
    // 80-byte frames arrive 94 bytes long, tags removed: A got 94 + 78 (the broadcast).
    assert_eq!(guest_stats(&v, "a")["tx_bytes"], 94 + 78, "{v}");
}

/// Hairpin through the bridge, with the port's offloads doing the tagging: the two VLAN-10
/// guests reach each other, a VLAN-10 guest does not reach VLAN 20 nor the untagged guest.
#[test]
fn hairpin_within_a_vlan_and_never_across() {
    let mut env = start(&[]);
    assert_eq!(startup_line(&env, "uplink vlan: "), "uplink vlan: rx tag removal by port offload, tx tag insertion by port offload");
    assert_eq!(vlan_work(&env), serde_json::json!({ "rx_strip": "offload", "tx_insert": "offload" }));
    let (a, b, c, d) = (env.guest("a"), env.guest("b"), env.guest("c"), env.guest("d"));
    env.lab.set_hairpin(true);
    let capture = env.lab.bridge_port_capture();

    // A -> B: out tagged 10, reflected, B gets it untagged once.
    let ab = frame(mac(B), mac(A), TEST_ETHERTYPE, 100, 1);
    assert_eq!(a.send(&ab, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![ab.clone()], "B receives A's frame, untagged");
    let seen = capture.collect(IDLE);
    assert!(seen.contains(&(tagged(&ab, 10), false)), "left the switch tagged 10: {seen:?}");
    assert!(seen.contains(&(tagged(&ab, 10), true)), "and was reflected as it was: {seen:?}");

    // A's broadcast: B only (never A itself, never VLAN 20 or the untagged guest).
    let bc = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 64, 2);
    assert_eq!(a.send(&bc, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![bc], "B gets A's broadcast");

    // Across VLANs: A -> C (VLAN 20) and D -> A (untagged) come back in the sender's VLAN,
    // where the destination is nobody's.
    let ac = frame(mac(C), mac(A), TEST_ETHERTYPE, 100, 3);
    let da = frame(mac(A), mac(D), TEST_ETHERTYPE, 100, 4);
    assert_eq!(a.send(&ac, 1), 1);
    assert_eq!(d.send(&da, 1), 1);
    let seen = capture.collect(IDLE);
    assert!(seen.contains(&(tagged(&ac, 10), true)), "A -> C reflected, in VLAN 10: {seen:?}");
    assert!(seen.contains(&(da.clone(), true)), "D -> A reflected, untagged: {seen:?}");
    let v = nothing_more_then_stop(&mut env, [a, b, c, d]);
    let up = &v["uplink"];
    assert_eq!(up["tx_packets"], 4, "{v}");
    assert_eq!(up["rx_packets"], 4, "every frame reflected once: {v}");
    assert_eq!(drops(up, "unknown_dest"), 2, "A -> C and D -> A: {v}");
    assert_eq!(total_drops(up), 2, "{v}");
    assert_eq!(guest_stats(&v, "b")["tx_packets"], 2, "{v}");
    for name in ["a", "c", "d"] {
        assert_eq!(guest_stats(&v, name)["tx_packets"], 0, "{name}: {v}");
    }
    for name in ["a", "b", "c", "d"] {
        assert_eq!(total_drops(guest_stats(&v, name)), 0, "{name}: {v}");
    }
}

/// `guest-set vlan=...` moves a running guest between VLANs in one publication, and
/// `vlan=none` makes it untagged; config-dump writes the key.
#[test]
fn a_running_guest_moves_between_vlans() {
    let mut env = start(&["--no-vlan-offload"]);
    let c = env.guest("c");
    let ext = env.lab.ext_socket();
    let x = env.lab.ext_mac;
    let to_c = frame(mac(C), x, TEST_ETHERTYPE, 70, 1);

    ext.send(&tagged(&to_c, 20));
    assert_eq!(c.recv(3000, 2), vec![to_c.clone()], "in VLAN 20");
    let ctl = env.ctl();
    ctl.json(&["guest-set", "c", "vlan=10"]);
    assert!(ctl.json(&["config-dump"]).to_string().contains("vlan = 10"), "config-dump writes the new VLAN");
    ext.send(&tagged(&to_c, 20));
    ext.send(&tagged(&to_c, 10));
    assert_eq!(c.recv(3000, 2), vec![to_c.clone()], "only the VLAN-10 copy arrives");
    let out = frame(x, mac(C), TEST_ETHERTYPE, 70, 2);
    assert_eq!(c.send(&out, 1), 1);
    assert_eq!(incoming(ext.collect(IDLE)), vec![tagged(&out, 10)], "and C's frames now leave tagged 10");

    ctl.json(&["guest-set", "c", "vlan=none"]);
    assert_eq!(ctl.json(&["guest-show", "c"])["vlan"], serde_json::Value::Null);
    ext.send(&tagged(&to_c, 10));
    ext.send(&to_c);
    assert_eq!(c.recv(3000, 2), vec![to_c], "untagged now");
    let refused = ctl.refused(&["guest-set", "c", "vlan=4095"]);
    assert!(refused.contains("vlan = 4095: must be between 1 and 4094"), "{refused}");

    c.quit();
    let v = env.stop();
    let up = &v["uplink"];
    // The VLAN-20 frame after the move found VLAN 20 empty (b, a are in 10, nobody in 20),
    // the VLAN-10 one after the last move found C gone from VLAN 10.
    assert_eq!(drops(up, "vlan_unknown"), 1, "{v}");
    assert_eq!(drops(up, "unknown_dest"), 1, "{v}");
    assert_eq!(guest_stats(&v, "c")["tx_packets"], 3, "{v}");
}

/// Bridge mode within a VLAN: a, b (VLAN 10), c (VLAN 20) and d (untagged) all in bridge
/// mode, hairpin off. A -> B is switched inside the host; A -> C leaves tagged 10 (another
/// VLAN's guest is no sibling); A's broadcast reaches B untagged inside the host and the wire
/// once, tagged 10 (a copy of its own: the original is shared by the local copies).
fn bridge_mode_within_a_vlan(app: &[&str]) {
    let mut env = LabSwitch::start(
        &[
            ("a", A, "vlan = 10\nmode = \"bridge\""),
            ("b", B, "vlan = 10\nmode = \"bridge\""),
            ("c", C, "vlan = 20\nmode = \"bridge\""),
            ("d", D, "mode = \"bridge\""),
        ],
        LabOpts { app, ..LabOpts::default() },
    );
    let (a, b, c, d) = (env.guest("a"), env.guest("b"), env.guest("c"), env.guest("d"));
    env.lab.set_hairpin(false);
    let capture = env.lab.bridge_port_capture();

    let ab = frame(mac(B), mac(A), TEST_ETHERTYPE, 100, 1);
    assert_eq!(a.send(&ab, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![ab], "B gets A's frame inside the host");
    let ac = frame(mac(C), mac(A), TEST_ETHERTYPE, 100, 2);
    assert_eq!(a.send(&ac, 1), 1);
    let bc = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 64, 3);
    assert_eq!(a.send(&bc, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![bc.clone()], "B gets A's broadcast, untagged");
    let wire = incoming(capture.collect(IDLE));
    assert_eq!(wire, vec![tagged(&ac, 10), tagged(&bc, 10)], "only A -> C and the broadcast went out, tagged 10");
    let v = nothing_more_then_stop(&mut env, [a, b, c, d]);
    assert_eq!(v["uplink"]["tx_packets"], 2, "{v}");
    assert_eq!(v["uplink"]["rx_packets"], 0, "{v}");
    assert_eq!(guest_stats(&v, "a")["rx_packets"], 3, "{v}");
    assert_eq!(guest_stats(&v, "b")["tx_packets"], 2, "{v}");
    for name in ["a", "b", "c", "d"] {
        assert_eq!(total_drops(guest_stats(&v, name)), 0, "{name}: {v}");
    }
    assert_eq!(v["mempool_in_use_at_exit"], v["mempool_in_use_at_start"], "the broadcast's copy went back to the pool: {v}");
}

#[test]
fn bridge_mode_within_a_vlan_in_software() {
    bridge_mode_within_a_vlan(&["--no-vlan-offload"]);
}

#[test]
fn bridge_mode_within_a_vlan_with_offloads() {
    bridge_mode_within_a_vlan(&[]);
}
