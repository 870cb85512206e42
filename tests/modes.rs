//! The passthru and source modes against a real external switch (the `HairpinLab`: the
//! uplink is net_af_packet on a veth into a Linux bridge; a raw socket behind the bridge is
//! the external host), with real virtio-user guests. Exact frames and counters.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::identity::wait_stats;
use common::*;

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
const NOBODY: &str = "52:54:00:00:00:99";
/// Neither the external host nor any guest: a station behind a bridge nested in a guest.
const FOREIGN: &str = "02:00:00:00:f0:01";
/// A second external station, spoken for by the external host's raw socket.
const OTHER: &str = "02:00:00:00:ee:02";
const QUIET: u64 = 700;

fn only_incoming(frames: Vec<(Vec<u8>, bool)>) -> Vec<Vec<u8>> {
    frames.into_iter().filter(|(_, outgoing)| !outgoing).map(|(f, _)| f).collect()
}

/// `ip link show` of the uplink inside the switch's namespace.
fn uplink_link(env: &LabSwitch) -> String {
    env.lab.sw.output(&["ip", "-o", "link", "show", &env.lab.uplink])
}

fn is_promiscuous(link: &str) -> bool {
    link.split(['<', '>']).nth(1).is_some_and(|flags| flags.split(',').any(|f| f == "PROMISC"))
}

/// The `link/ether` address of an `ip -o link show` line.
fn link_mac(link: &str) -> String {
    let mut words = link.split_whitespace();
    words.find(|w| *w == "link/ether").and_then(|_| words.next()).unwrap_or_else(|| panic!("no link/ether in {link}")).to_owned()
}

/// Waits until the switch has printed a line starting with `prefix`.
fn printed(env: &LabSwitch, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = env.switch().proc.stdout_lines().into_iter().find(|l| l.starts_with(prefix)) {
            return l;
        }
        assert!(Instant::now() < deadline, "no line {prefix:?} from the switch:\n{}", env.switch().proc.report());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The uplink's own MAC, as the start-up summary printed it (before a guest's was set).
fn own_mac(env: &LabSwitch) -> String {
    let summary = printed(env, "uplink: port");
    summary.split(", mac ").nth(1).and_then(|r| r.split(',').next()).unwrap_or_else(|| panic!("{summary}")).to_owned()
}

/// passthru: every frame on the uplink reaches the guest whatever its destination (its own
/// MAC, unknown unicast, another station's, broadcast, multicast, an 802.1 link-local group);
/// it sends from a MAC that is not its own and the frame leaves; the uplink is promiscuous
/// and carries the guest's MAC while it runs, and is given back as it was at exit; a second
/// guest added at run time is refused.
#[test]
fn passthru_guest_owns_the_uplink() {
    let mut env = LabSwitch::start(&[("pt", A, "mode = \"passthru\"")], LabOpts::default());
    let own_mac = own_mac(&env);
    assert_ne!(own_mac, A);
    let promisc = printed(&env, "uplink: promiscuous");
    assert_eq!(promisc, "uplink: promiscuous (guest pt is in mode passthru)");
    assert_eq!(printed(&env, "uplink: MAC"), format!("uplink: MAC set to {A} (passthru guest pt)"));
    assert_eq!(printed(&env, "uplink admission"), "uplink admission: promiscuous for passthru guest pt");
    let line = printed(&env, "guest pt:");
    assert!(line.ends_with("mode passthru, mtu 1500, steering software (passthru: takes every frame on the port)"), "no rule or filter sorts its frames: {line}");
    let link = uplink_link(&env);
    assert!(is_promiscuous(&link), "{link}");
    assert_eq!(link_mac(&link), A, "the uplink carries the guest's MAC: {link}");
    let g = env.guest("pt");
    let ext = env.lab.ext_socket();
    let port = env.lab.bridge_port_capture();
    let from_ext = env.lab.ext_mac;

    let frames: Vec<Vec<u8>> = [mac(A), mac(NOBODY), mac(OTHER), BROADCAST, [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]]
        .iter()
        .enumerate()
        .map(|(i, &dst)| frame(dst, from_ext, TEST_ETHERTYPE, 60, i as u8))
        .collect();
    for f in &frames {
        ext.send(f);
    }
    assert_eq!(g.recv(5000, frames.len() + 1), frames, "every frame, in order, once; counters: {}", env.ctl().json(&["stats"]));
    // The bridge never forwards 802.1 link-local groups: sent from its port straight onto the wire.
    let lldp = frame([0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e], from_ext, 0x88cc, 60, 9);
    port.send(&lldp);
    assert_eq!(g.recv(3000, 2), vec![lldp.clone()], "a passthru guest gets link-local groups too");
    assert!(g.recv(QUIET, 1).is_empty());

    // From a station behind a bridge in the guest: no anti-spoofing for passthru.
    ext.drain();
    let out = frame(from_ext, mac(FOREIGN), TEST_ETHERTYPE, 70, 20);
    assert_eq!(g.send(&out, 1), 1);
    assert_eq!(only_incoming(ext.collect(Duration::from_millis(QUIET))), vec![out.clone()], "the frame left the uplink and reached the external host");

    let sock = env.sock("vm2");
    let refusal = env.ctl().refused(&["guest-add", "--name", "vm2", "--mac", B, "--socket", sock.to_str().expect("path")]);
    assert_eq!(
        refusal.trim_end(),
        "dpdk-macvtapctl: guest-add:1: guest \"vm2\": running guest \"pt\" is in mode \"passthru\" and owns the uplink alone: no other guest may be configured beside it"
    );
    assert!(!sock.exists(), "a refused guest leaves nothing behind");

    g.quit();
    let pt = env.ctl().guest_counters("pt");
    assert_eq!(pt["tx_packets"], 6, "six frames to the guest: {pt}");
    assert_eq!(pt["rx_packets"], 1, "{pt}");
    assert_eq!(total_drops(&pt), 0, "{pt}");

    // Removed at run time: the uplink is given back as it was.
    let r = env.ctl().run(&["guest-del", "pt"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(printed(&env, "uplink: MAC restored"), format!("uplink: MAC restored to {own_mac}"));
    let after = uplink_link(&env);
    assert!(!is_promiscuous(&after), "promiscuous mode is given back: {after}");
    assert_eq!(link_mac(&after), own_mac, "the uplink's own MAC is back: {after}");

    let v = env.stop();
    assert_eq!(v["uplink"]["rx_packets"], 6, "{v}");
    assert_eq!(v["uplink"]["tx_packets"], 1, "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
}

/// At exit too, the uplink gets its own MAC back and leaves promiscuous mode.
#[test]
fn passthru_uplink_is_given_back_at_exit() {
    let mut env = LabSwitch::start(&[("pt", A, "mode = \"passthru\"")], LabOpts::default());
    let own_mac = own_mac(&env);
    assert_eq!(link_mac(&uplink_link(&env)), A);
    env.stop();
    let after = uplink_link(&env);
    assert!(!is_promiscuous(&after), "{after}");
    assert_eq!(link_mac(&after), own_mac, "{after}");
}

/// A guests file with a passthru guest and another is refused before anything starts, with
/// the file, the line, the guest and why.
#[test]
fn passthru_beside_another_guest_is_refused_at_start() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guests.toml");
    let d = dir.path().display();
    std::fs::write(
        &path,
        format!("[[guest]]\nname = \"pt\"\nmac = \"{A}\"\nsocket = \"{d}/pt.sock\"\nmode = \"passthru\"\n\n[[guest]]\nname = \"vm2\"\nmac = \"{B}\"\nsocket = \"{d}/vm2.sock\"\n"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_dpdk-macvtap"))
        .args(eal_test_args())
        .arg(format!("--file-prefix={}", unique("pt")))
        .args(["-l", "0-1", "--vdev=net_null0", "--", "--port", "0", "--no-control", "--guests"])
        .arg(&path)
        .output()
        .expect("running the binary");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end(),
        format!("dpdk-macvtap: {}:7: guest \"vm2\": guest \"pt\" (line 1) is in mode \"passthru\" and owns the uplink alone: no other guest may be configured beside it", path.display())
    );
    assert!(!dir.path().join("pt.sock").exists(), "nothing was started");
}

/// source: frames whose source is listed reach the guest whatever their destination, once
/// (also when addressed to it); frames from other stations reach it only by its own MAC, as a
/// VEPA guest's do. The list changes at run time like any live key.
#[test]
fn source_guest_receives_by_listed_source() {
    let ext_mac = mac_str([0x02, 0x00, 0x00, 0x00, 0xee, 0x01]);
    let mon_extra = format!("mode = \"source\"\nsources = [\"{ext_mac}\"]");
    let mut env = LabSwitch::start(&[("mon", A, &mon_extra), ("vm2", B, "")], LabOpts::default());
    assert_eq!(printed(&env, "uplink: promiscuous"), "uplink: promiscuous (guest mon is in mode source)");
    let (mon, vm2) = (env.guest("mon"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let listed = env.lab.ext_mac;
    assert_eq!(mac_str(listed), ext_mac);
    let other = mac(OTHER);

    // From the listed station.
    let to_b = frame(mac(B), listed, TEST_ETHERTYPE, 60, 1);
    ext.send(&to_b);
    assert_eq!(vm2.recv(3000, 2), vec![to_b.clone()], "the destination gets it");
    assert_eq!(mon.recv(3000, 2), vec![to_b.clone()], "and the source-mode guest a copy");
    let to_nobody = frame(mac(NOBODY), listed, TEST_ETHERTYPE, 60, 2);
    ext.send(&to_nobody);
    assert_eq!(mon.recv(3000, 2), vec![to_nobody], "by its source alone");
    let to_a = frame(mac(A), listed, TEST_ETHERTYPE, 60, 3);
    ext.send(&to_a);
    assert_eq!(mon.recv(3000, 2), vec![to_a], "addressed to it and listed: once");
    let bcast = frame(BROADCAST, listed, TEST_ETHERTYPE, 60, 4);
    ext.send(&bcast);
    assert_eq!(mon.recv(3000, 2), vec![bcast.clone()], "a broadcast once");
    assert_eq!(vm2.recv(3000, 2), vec![bcast]);

    // From a station nobody lists.
    let other_to_b = frame(mac(B), other, TEST_ETHERTYPE, 60, 5);
    ext.send(&other_to_b);
    assert_eq!(vm2.recv(3000, 2), vec![other_to_b]);
    let other_to_nobody = frame(mac(NOBODY), other, TEST_ETHERTYPE, 60, 6);
    ext.send(&other_to_nobody);
    let other_to_a = frame(mac(A), other, TEST_ETHERTYPE, 60, 7);
    ext.send(&other_to_a);
    assert_eq!(mon.recv(3000, 3), vec![other_to_a], "only by its own MAC, as a VEPA guest");
    assert!(vm2.recv(QUIET, 1).is_empty());

    // The list changes at run time: now the other station is watched, the first is not.
    let r = env.ctl().run(&["guest-set", "mon", &format!("sources={OTHER}")]);
    assert_eq!((r.code, r.stdout.lines().next()), (0, Some("changed guest mon: sources")), "{}", r.stderr);
    assert_eq!(env.ctl().json(&["guest-show", "mon"])["sources"], serde_json::json!([OTHER]));
    let dumped = env.ctl().json(&["config-dump"]);
    assert!(dumped.to_string().contains(&format!("sources = [\\\"{OTHER}\\\"]")), "{dumped}");
    ext.send(&frame(mac(NOBODY), listed, TEST_ETHERTYPE, 60, 8));
    let watched = frame(mac(NOBODY), other, TEST_ETHERTYPE, 60, 9);
    ext.send(&watched);
    assert_eq!(mon.recv(3000, 2), vec![watched]);
    assert!(mon.recv(QUIET, 1).is_empty());
    assert!(vm2.recv(QUIET, 1).is_empty());

    mon.quit();
    vm2.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "mon")["tx_packets"], 6, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 3, "{v}");
    assert_eq!(v["uplink"]["rx_packets"], 9, "{v}");
    assert_eq!(drops(&v["uplink"], "unknown_dest"), 2, "the unlisted frames to nobody: {v}");
    assert_eq!(total_drops(&v["uplink"]), 2, "{v}");
    assert_eq!(total_drops(guest_stats(&v, "mon")), 0, "{v}");
    assert_eq!(total_drops(guest_stats(&v, "vm2")), 0, "{v}");
}

/// The only guest becomes passthru at run time and back: the uplink follows (promiscuous and
/// the guest's MAC, then its own again), and so does what the guest receives.
#[test]
fn passthru_set_and_unset_at_run_time() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let own_mac = own_mac(&env);
    let g = env.guest("vm1");
    let ext = env.lab.ext_socket();
    let ctl = env.ctl();
    let to_nobody = |tag: u8| frame(mac(NOBODY), env.lab.ext_mac, TEST_ETHERTYPE, 60, tag);
    // net_af_packet has no MAC filters, so the VEPA guest keeps the port promiscuous from
    // the start (steering's fallback).
    assert!(printed(&env, "uplink admission").starts_with("uplink admission: promiscuous (MAC filter for 52:54:00:00:00:01: "));

    let r = ctl.run(&["guest-set", "vm1", "mode=passthru"]);
    assert_eq!((r.code, r.stdout.lines().next()), (0, Some("changed guest vm1: mode")), "{}", r.stderr);
    assert_eq!(printed(&env, "uplink: MAC set"), format!("uplink: MAC set to {A} (passthru guest vm1)"));
    assert_eq!(printed(&env, "guest vm1: steering"), "guest vm1: steering software (passthru: takes every frame on the port)");
    let link = uplink_link(&env);
    assert!(is_promiscuous(&link) && link_mac(&link) == A, "{link}");
    ext.send(&to_nobody(1));
    assert_eq!(g.recv(3000, 2), vec![to_nobody(1)], "passthru: any destination");

    let r = ctl.run(&["guest-set", "vm1", "mode=vepa"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(printed(&env, "uplink: MAC restored"), format!("uplink: MAC restored to {own_mac}"));
    // Back in VEPA, the guest still needs the promiscuous port (see the start).
    assert_eq!(printed(&env, "uplink: stays"), "uplink: stays promiscuous (its MAC filters refused a guest's MAC: see uplink admission)");
    let link = uplink_link(&env);
    assert_eq!(link_mac(&link), own_mac, "{link}");
    ext.send(&to_nobody(2));
    assert!(g.recv(QUIET, 1).is_empty(), "vepa again: not its destination");

    g.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 1, "{v}");
    assert_eq!(drops(&v["uplink"], "unknown_dest"), 1, "{v}");
}

/// The switch's own hairpin probes are not the passthru guest's, though it takes every other
/// frame: a check still tells a reflecting bridge port, and the guest never sees a probe.
#[test]
fn a_passthru_guest_never_gets_the_switchs_hairpin_probes() {
    let mut env = LabSwitch::start(&[("pt", A, "mode = \"passthru\"")], LabOpts { hairpin_check: true, ..LabOpts::default() });
    let line = env.switch().proc.wait_line("hairpin: ", Duration::from_secs(10));
    assert_eq!(line, "hairpin: does not reflect: VEPA guests cannot reach each other through it");
    let g = env.guest("pt");
    env.lab.set_hairpin(true);
    let ctl = env.ctl();
    let out = ctl.run(&["hairpin-check"]);
    assert!(out.stdout.starts_with("hairpin: external switch reflects (hairpin on)\n"), "{}{}", out.stdout, out.stderr);
    // Whatever else the guest gets from the wire (the reflections of the first probe's
    // flood aside, which are the switch's too), no frame of the probes' ethertype.
    let got = g.recv(500, 64);
    assert!(got.iter().all(|f| f.len() < 14 || f[12..14] != [0x88, 0xb5]), "a probe reached the passthru guest: {got:?}");
    // Both of the second check's probes came back (the bridge had learned their sources on
    // the switch's port from the first check's), counted apart rather than given to the guest.
    wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["rx_drops"]["hairpin_probe"] == 2);
    g.quit();
    let v = env.stop();
    assert_eq!(drops(&v["uplink"], "hairpin_probe"), 2, "{v}");
}
