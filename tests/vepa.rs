//! VEPA forwarding against a real external switch: the uplink is net_af_packet on a veth whose
//! peer is a port of a Linux bridge in a private namespace; the guests are virtio-user
//! processes; a raw socket behind the bridge is the external host.

mod common;

use std::time::Duration;

use common::labswitch::GuestSpec;
use common::*;

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
const C: &str = "52:54:00:00:00:03";
const NOBODY: &str = "52:54:00:00:00:99";
const QUIET: u64 = 700;

/// Guests are (name, mac, mtu).
fn start(guests: &[(&str, &str, u16)], jumbo: bool) -> LabSwitch {
    let extras: Vec<String> = guests.iter().map(|(_, _, mtu)| format!("mtu = {mtu}")).collect();
    let specs: Vec<GuestSpec<'_>> = guests.iter().zip(&extras).map(|((n, m, _), e)| (*n, *m, e.as_str())).collect();
    LabSwitch::start(&specs, LabOpts { jumbo, ..LabOpts::default() })
}

fn only_incoming(frames: Vec<(Vec<u8>, bool)>) -> Vec<Vec<u8>> {
    frames.into_iter().filter(|(_, outgoing)| !outgoing).map(|(f, _)| f).collect()
}

/// 1 and 2: guest to guest unicast crosses the external switch; only hairpin brings it back.
#[test]
fn unicast_between_guests_needs_hairpin() {
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    let capture = env.lab.bridge_port_capture();

    env.lab.set_hairpin(true);
    let f = frame(mac(B), mac(A), TEST_ETHERTYPE, 100, 7);
    assert_eq!(a.send(&f, 1), 1);
    let got = b.recv(3000, 2);
    assert_eq!(got, vec![f.clone()], "B receives A's frame once, byte for byte");
    assert!(b.recv(QUIET, 1).is_empty(), "and only once");
    let seen = capture.collect(Duration::from_millis(300));
    assert!(seen.iter().any(|(x, outgoing)| !outgoing && *x == f), "the bridge port saw the frame arrive from the switch");
    assert!(seen.iter().any(|(x, outgoing)| *outgoing && *x == f), "and reflected it back (hairpin)");
    assert!(a.recv(QUIET, 1).is_empty(), "A does not get its own unicast back");

    env.lab.set_hairpin(false);
    let f2 = frame(mac(B), mac(A), TEST_ETHERTYPE, 100, 8);
    assert_eq!(a.send(&f2, 1), 1);
    assert!(b.recv(1500, 1).is_empty(), "VEPA isolation: without hairpin B receives nothing");
    let seen = capture.collect(Duration::from_millis(300));
    assert!(only_incoming(seen).contains(&f2), "the frame still left through the uplink");

    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(v["uplink"]["tx_packets"], 2, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 1, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], 2, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 0, "nothing was delivered to A: {v}");
}

/// 3: a broadcast reaches the sibling (reflected) and the external host, never its sender.
#[test]
fn broadcast_goes_to_siblings_and_outside_never_back() {
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    env.lab.set_hairpin(true);
    let ext = env.lab.ext_socket();
    ext.drain();
    let f = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 64, 3);
    assert_eq!(a.send(&f, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![f.clone()], "B gets the broadcast once");
    assert!(b.recv(QUIET, 1).is_empty());
    assert!(a.recv(QUIET, 1).is_empty(), "A never gets its own broadcast back");
    let at_ext = only_incoming(ext.collect(Duration::from_millis(500)));
    assert_eq!(at_ext, vec![f], "the external host got it once");
    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(drops(guest_stats(&v, "vm1"), "guest_queue_full"), 0);
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 0, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 1, "{v}");
}

/// 4: frames from outside go to the owner of the destination MAC only; unknown ones to nobody.
#[test]
fn external_unicast_reaches_only_its_owner() {
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let to_a = frame(mac(A), env.lab.ext_mac, TEST_ETHERTYPE, 80, 11);
    ext.send(&to_a);
    assert_eq!(a.recv(3000, 2), vec![to_a], "A gets the frame addressed to it");
    assert!(a.recv(QUIET, 1).is_empty());
    assert!(b.recv(QUIET, 1).is_empty(), "B gets nothing");
    let to_nobody = frame(mac(NOBODY), env.lab.ext_mac, TEST_ETHERTYPE, 80, 12);
    ext.send(&to_nobody);
    assert!(a.recv(QUIET, 1).is_empty());
    assert!(b.recv(QUIET, 1).is_empty());
    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(drops(&v["uplink"], "unknown_dest"), 1, "{v}");
    assert_eq!(v["uplink"]["rx_packets"], 2, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 1, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 0, "{v}");
}

/// 5: what a guest must not send is dropped, counted on that guest, and nothing else leaves.
#[test]
fn spoofed_runt_and_oversize_frames_are_dropped_and_counted() {
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    env.lab.set_hairpin(true);
    let capture = env.lab.bridge_port_capture();
    let ext = env.lab.ext_socket();
    let spoofed = frame(BROADCAST, mac(B), TEST_ETHERTYPE, 64, 1);
    let runt = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 0, 2)[..10].to_vec();
    let oversize = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 1600, 3);
    for f in [&spoofed, &runt, &oversize] {
        assert_eq!(a.send(f, 1), 1);
    }
    assert!(b.recv(1000, 1).is_empty(), "nothing reaches B");
    assert!(only_incoming(ext.collect(Duration::from_millis(300))).is_empty(), "nothing reaches the external host");
    assert!(capture.collect(Duration::from_millis(100)).is_empty(), "nothing left the uplink");
    a.quit();
    b.quit();
    let v = env.stop();
    let vm1 = guest_stats(&v, "vm1");
    assert_eq!(drops(vm1, "spoofed_source"), 1, "{v}");
    assert_eq!(drops(vm1, "runt"), 1, "{v}");
    assert_eq!(drops(vm1, "oversize"), 1, "{v}");
    assert_eq!(total_drops(vm1), 3, "{v}");
    assert_eq!(v["uplink"]["tx_packets"], 0, "{v}");
}

/// 6: a 9000-byte-MTU frame out to the external host and back in.
#[test]
fn jumbo_frames_both_ways() {
    let mut env = start(&[("vm1", A, 9000), ("vm2", B, 9000)], true);
    let a = env.guest("vm1");
    let ext = env.lab.ext_socket();
    let out = frame(env.lab.ext_mac, mac(A), TEST_ETHERTYPE, 9000, 5);
    assert_eq!(out.len(), 9014);
    assert_eq!(a.send(&out, 1), 1);
    let at_ext = only_incoming(ext.collect(Duration::from_millis(800)));
    assert_eq!(at_ext, vec![out], "the external host got the jumbo frame intact");
    let back = frame(mac(A), env.lab.ext_mac, TEST_ETHERTYPE, 9000, 6);
    ext.send(&back);
    assert_eq!(a.recv(3000, 2), vec![back], "A got the jumbo frame intact");
    a.quit();
    let v = env.stop();
    assert_eq!(total_drops(guest_stats(&v, "vm1")), 0, "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
}

/// 7: a guest that never reads costs only itself.
#[test]
fn a_stalled_guest_costs_only_itself() {
    const N: usize = 3000;
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500), ("vm3", C, 1500)], false);
    let (_a, b, stalled) = (env.guest("vm1"), env.guest("vm2"), env.guest("vm3"));
    let ext = env.lab.ext_socket();
    // Broadcasts go to every guest: vm2 reads them all, vm3 never reads.
    let f = frame(BROADCAST, env.lab.ext_mac, TEST_ETHERTYPE, 100, 9);
    let sender = std::thread::scope(|s| {
        let h = s.spawn(|| ext.send_paced(std::iter::repeat(&f).take(N), None));
        let counted = b.count(1500);
        h.join().expect("sender");
        counted
    });
    assert_eq!(sender.0, N as u64, "the reading guest got every frame");
    drop(stalled);
    let v = env.stop();
    let vm2 = guest_stats(&v, "vm2");
    assert_eq!(vm2["tx_packets"], N as u64, "{v}");
    assert_eq!(total_drops(vm2), 0, "{v}");
    let vm3 = guest_stats(&v, "vm3");
    let full = drops(vm3, "guest_queue_full");
    assert!(full > 0, "the stalled guest's queue filled: {v}");
    assert_eq!(vm3["tx_packets"].as_u64().unwrap_or(0) + total_drops(vm3), N as u64, "every frame accounted for: {v}");
}

/// 8: a guest leaves and comes back while frames for it keep arriving.
#[test]
fn guest_disconnect_and_reconnect_during_traffic() {
    const N: usize = 4000;
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let a = env.guest("vm1");
    let b = env.guest("vm2");
    let ext = env.lab.ext_socket();
    let f = frame(mac(B), env.lab.ext_mac, TEST_ETHERTYPE, 100, 4);
    let sock = env.sock("vm2");
    let b2 = std::thread::scope(|s| {
        let h = s.spawn(|| ext.send_paced(std::iter::repeat(&f).take(N), None));
        std::thread::sleep(Duration::from_millis(100));
        b.quit();
        env.switch().proc.wait_line("guest vm2: link down", Duration::from_secs(30));
        let b2 = Guest::start(&sock, "vm2b");
        env.switch().proc.wait_line("guest vm2: link up", Duration::from_secs(30));
        h.join().expect("sender");
        b2
    });
    // The new guest process may have been handed the end of the stream without reading it
    // yet (its ring may even be full); empty it, then check that delivery works again.
    let tail = b2.count(300).0;
    let after = frame(mac(B), env.lab.ext_mac, TEST_ETHERTYPE, 100, 5);
    ext.send(&after);
    assert_eq!(b2.recv(3000, 2), vec![after], "the reconnected guest receives again (after {tail} stream frames)");
    a.quit();
    b2.quit();
    let v = env.stop();
    let vm2 = guest_stats(&v, "vm2");
    assert_eq!(
        vm2["tx_packets"].as_u64().unwrap_or(0) + total_drops(vm2),
        N as u64 + 1,
        "every frame for vm2 was delivered or counted: {v}"
    );
    assert!(drops(vm2, "guest_down") > 0, "frames arriving while it was gone were counted: {v}");
}

/// vhost = "client": the guest owns the socket; the switch connects, and reconnects after the
/// guest restarts and after the switch itself restarts, with no guest restart needed.
#[test]
fn vhost_client_mode_reconnects_both_ways() {
    require_root();
    let lab = HairpinLab::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("vm1.sock");
    std::fs::write(
        dir.path().join("guests.toml"),
        format!("[[guest]]\nname = \"vm1\"\nmac = \"{A}\"\nsocket = \"{}\"\nvhost = \"client\"\n", sock.display()),
    )
    .expect("guests.toml");
    let json = dir.path().join("stats.json");
    let mut g = Guest::spawn(&sock, "cli", &["--server"]);
    common::wait_path(&sock, Duration::from_secs(60));
    let app = switch_args(&dir.path().join("guests.toml"), &json, 0);
    let sw = Switch::start(Some(&lab.sw), &[lab.uplink_vdev()], &app);
    g.wait_ready();
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
    let ext = lab.ext_socket();
    let f = frame(mac(A), lab.ext_mac, TEST_ETHERTYPE, 60, 1);
    ext.send(&f);
    assert_eq!(g.recv(3000, 1), vec![f.clone()]);

    // The switch restarts (cleanly, with nothing leaked); the guest stays.
    sw.stop_clean();
    let sw = Switch::start(Some(&lab.sw), &[lab.uplink_vdev()], &app);
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
    ext.send(&f);
    assert_eq!(g.recv(5000, 1), vec![f.clone()], "delivery resumes after the switch restarted");

    // The guest restarts; the switch reconnects by itself.
    g.quit();
    sw.proc.wait_line("guest vm1: link down", Duration::from_secs(30));
    let g2 = Guest::start_with(&sock, "cli2", &["--server"]);
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(60));
    ext.send(&f);
    assert_eq!(g2.recv(5000, 1), vec![f], "delivery resumes after the guest restarted");
    g2.quit();
    sw.stop_clean();
}

/// mode = "private": even when the external switch reflects them, frames from a sibling never
/// reach a private guest (and its own never reach siblings); the outside still does.
#[test]
fn a_private_guest_is_isolated_even_with_hairpin() {
    let specs: [common::labswitch::GuestSpec<'_>; 2] = [("vm1", A, ""), ("vm2", B, "mode = \"private\"")];
    let mut env = LabSwitch::start(&specs, LabOpts::default());
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    env.lab.set_hairpin(true);
    let ext = env.lab.ext_socket();
    let to_b = frame(mac(B), mac(A), TEST_ETHERTYPE, 64, 1);
    let bcast_a = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 64, 2);
    assert_eq!(a.send(&to_b, 1), 1);
    assert_eq!(a.send(&bcast_a, 1), 1);
    assert!(b.recv(1500, 1).is_empty(), "nothing from a sibling reaches the private guest");
    let from_b = frame(BROADCAST, mac(B), TEST_ETHERTYPE, 64, 3);
    assert_eq!(b.send(&from_b, 1), 1);
    assert!(a.recv(1000, 1).is_empty(), "nor does its broadcast reach the sibling");
    let from_outside = frame(mac(B), env.lab.ext_mac, TEST_ETHERTYPE, 64, 4);
    ext.send(&from_outside);
    assert_eq!(b.recv(3000, 2), vec![from_outside], "the outside still reaches it");
    a.quit();
    b.quit();
    let v = env.stop();
    let vm2 = guest_stats(&v, "vm2");
    assert_eq!(vm2["tx_packets"], 1, "{v}");
    assert_eq!(drops(vm2, "policy_denied"), 1, "the reflected unicast was refused by policy: {v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 0, "nothing of the private guest's reached the sibling: {v}");
}

/// mode = "bridge" (macvlan's bridge mode): bridge guests reach each other inside the host,
/// with or without hairpin; a VEPA guest is still reached only through the external switch;
/// a bridge guest's broadcast reaches its bridge sibling once (the reflected copy is not
/// delivered again), the VEPA guest through the reflection, and the outside.
#[test]
fn bridge_mode_switches_between_bridge_guests_inside_the_host() {
    let specs: [common::labswitch::GuestSpec<'_>; 3] =
        [("vm1", A, "mode = \"bridge\""), ("vm2", B, "mode = \"bridge\""), ("vm3", C, "")];
    let mut env = LabSwitch::start(&specs, LabOpts::default());
    let (a, b, c) = (env.guest("vm1"), env.guest("vm2"), env.guest("vm3"));
    let capture = env.lab.bridge_port_capture();
    env.lab.set_hairpin(false);

    let to_b = frame(mac(B), mac(A), TEST_ETHERTYPE, 64, 1);
    assert_eq!(a.send(&to_b, 1), 1);
    assert_eq!(b.recv(3000, 2), vec![to_b.clone()], "bridge to bridge, inside the host, once");
    let to_c = frame(mac(C), mac(A), TEST_ETHERTYPE, 64, 2);
    assert_eq!(a.send(&to_c, 1), 1);
    assert!(c.recv(1000, 1).is_empty(), "a VEPA guest is reached only through the external switch");
    let on_wire = only_incoming(capture.collect(Duration::from_millis(300)));
    assert!(!on_wire.contains(&to_b), "the local unicast never went on the wire");
    assert!(on_wire.contains(&to_c), "the unicast for the VEPA guest did");

    env.lab.set_hairpin(true);
    let ext = env.lab.ext_socket();
    ext.drain();
    let bcast = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 64, 3);
    assert_eq!(a.send(&bcast, 1), 1);
    assert_eq!(b.recv(2000, 3), vec![bcast.clone()], "the bridge sibling gets the broadcast once");
    assert_eq!(c.recv(2000, 3), vec![bcast.clone()], "the VEPA guest gets it once, reflected");
    assert!(a.recv(QUIET, 1).is_empty(), "never back to the sender");
    assert_eq!(only_incoming(ext.collect(Duration::from_millis(500))), vec![bcast], "the outside once");
    a.quit();
    b.quit();
    c.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 2, "{v}");
    assert_eq!(guest_stats(&v, "vm3")["tx_packets"], 1, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], 3, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 0, "nothing came back to the sender: {v}");
    assert_eq!(v["uplink"]["tx_packets"], 2, "only the VEPA-bound unicast and the broadcast left: {v}");
    assert_eq!(total_drops(guest_stats(&v, "vm2")), 0, "{v}");
}

/// IEEE 802.1 link-local group addresses (PAUSE, STP, LLDP) from the wire are for the switch's
/// end of the link only: no guest gets them, and each is counted as `link_local`; an ordinary
/// broadcast sent with them still arrives.
#[test]
fn link_local_frames_from_the_wire_reach_no_guest() {
    let mut env = start(&[("vm1", A, 1500), ("vm2", B, 1500)], false);
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    // Sent straight into the uplink from the bridge's port: the Linux bridge would itself
    // keep some of them (PAUSE) from ever being forwarded.
    let wire = env.lab.bridge_port_capture();
    let pause = frame([0x01, 0x80, 0xc2, 0, 0, 0x01], env.lab.ext_mac, 0x8808, 46, 1);
    let stp = frame([0x01, 0x80, 0xc2, 0, 0, 0x00], env.lab.ext_mac, 0x0026, 46, 2);
    let lldp = frame([0x01, 0x80, 0xc2, 0, 0, 0x0e], env.lab.ext_mac, 0x88cc, 46, 3);
    let bcast = frame(BROADCAST, env.lab.ext_mac, TEST_ETHERTYPE, 46, 4);
    for f in [&pause, &stp, &lldp, &bcast] {
        wire.send(f);
    }
    assert_eq!(a.recv(3000, 4), vec![bcast.clone()], "vm1: only the broadcast");
    assert_eq!(b.recv(3000, 4), vec![bcast], "vm2: only the broadcast");
    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(drops(&v["uplink"], "link_local"), 3, "{v}");
    assert_eq!(v["uplink"]["rx_packets"], 4, "{v}");
}
