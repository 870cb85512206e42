//! Tests of the test lab itself, without dpdk-macvtap: if the Linux bridge, hairpin mode or
//! the raw sockets do not behave as the end-to-end tests assume, these fail first and say so,
//! instead of a switch test failing for a reason that is not the switch's.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const IDLE: Duration = Duration::from_millis(300);
const GUEST_A: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x01];
const GUEST_B: [u8; 6] = [0x52, 0x54, 0x00, 0x00, 0x00, 0x02];

fn incoming_copies(got: &[Vec<u8>], f: &[u8]) -> usize {
    got.iter().filter(|g| g.as_slice() == f).count()
}

#[test]
fn frame_hex_and_mac_helpers_round_trip() {
    let f = frame(BROADCAST, GUEST_A, TEST_ETHERTYPE, 50, 7);
    assert_eq!(f.len(), 64);
    assert_eq!(&f[12..14], &[0x88, 0xb5]);
    assert_eq!(f[14], 7);
    assert_ne!(f, frame(BROADCAST, GUEST_A, TEST_ETHERTYPE, 50, 8));
    assert_eq!(unhex(&hex(&f)), f);
    assert_eq!(mac(&mac_str(GUEST_B)), GUEST_B);
    let tagged = vlan_tag(&f, 0x8100, 42);
    assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 42]);
    assert_eq!(&tagged[16..], &f[12..]);
    assert!(unique("abcdef").len() <= 15);
    assert_ne!(unique("x"), unique("x"));
}

#[test]
fn eal_test_profile_is_no_huge() {
    let args = eal_test_args();
    assert!(args.iter().any(|a| a == "--no-huge"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--file-prefix")), "the caller adds the prefix: {args:?}");
}

#[test]
fn namespace_is_deleted_on_drop_and_has_ipv6_off() {
    require_root();
    let name = unique("nst");
    {
        let ns = Netns::new(&name);
        let v = ns.output(&["sysctl", "-n", "net.ipv6.conf.default.disable_ipv6"]);
        assert_eq!(v.trim(), "1");
        assert!(std::path::Path::new(&format!("/var/run/netns/{name}")).exists());
    }
    assert!(!std::path::Path::new(&format!("/var/run/netns/{name}")).exists(), "{name} survived drop");
}

#[test]
fn lab_is_silent_and_external_frames_reach_the_uplink() {
    require_root();
    let lab = HairpinLab::new();
    let up = lab.uplink_socket();
    let cap = lab.bridge_port_capture();
    let ext = lab.ext_socket();

    // Nothing in the lab may talk by itself: every frame a test sees must be one it caused.
    std::thread::sleep(Duration::from_millis(500));
    let chatter = cap.collect(IDLE);
    assert!(chatter.is_empty(), "unsolicited frames on the bridge port: {:?}", chatter.iter().map(|(f, _)| hex(f)).collect::<Vec<_>>());

    // Unknown unicast from the external host floods to the uplink port.
    let f = frame(GUEST_A, lab.ext_mac, TEST_ETHERTYPE, 100, 1);
    ext.send(&f);
    let seen = cap.collect(IDLE);
    assert_eq!(seen, vec![(f.clone(), true)], "bridge port should see it once, outgoing");
    assert_eq!(up.collect_incoming(IDLE), vec![f]);

    // And the other way: what the uplink sends arrives at the bridge port as incoming.
    let g = frame(lab.ext_mac, GUEST_A, TEST_ETHERTYPE, 60, 2);
    up.send(&g);
    assert_eq!(cap.collect(IDLE), vec![(g.clone(), false)]);
    assert_eq!(ext.collect_incoming(IDLE), vec![g]);
}

#[test]
fn hairpin_reflects_broadcast_back_to_the_uplink_only_when_on() {
    require_root();
    let lab = HairpinLab::new();
    let up = lab.uplink_socket();
    let ext = lab.ext_socket();
    let b = frame(BROADCAST, GUEST_A, TEST_ETHERTYPE, 46, 3);

    lab.set_hairpin(true);
    up.send(&b);
    assert_eq!(incoming_copies(&up.collect_incoming(IDLE), &b), 1, "hairpin on: broadcast must come back once");
    assert_eq!(incoming_copies(&ext.collect_incoming(IDLE), &b), 1);

    lab.set_hairpin(false);
    up.send(&b);
    assert_eq!(incoming_copies(&up.collect_incoming(IDLE), &b), 0, "hairpin off: nothing may come back");
    assert_eq!(incoming_copies(&ext.collect_incoming(IDLE), &b), 1);
}

/// The VEPA case itself: two guests behind one uplink reach each other only through the
/// bridge's reflection, and the reflected unicast does not leak to other ports.
#[test]
fn hairpin_reflects_unicast_between_macs_learned_on_the_uplink() {
    require_root();
    let lab = HairpinLab::new();
    let up = lab.uplink_socket();
    let ext = lab.ext_socket();
    // Let the bridge learn both guests on its uplink port.
    up.send(&frame(BROADCAST, GUEST_A, TEST_ETHERTYPE, 46, 10));
    up.send(&frame(BROADCAST, GUEST_B, TEST_ETHERTYPE, 46, 11));
    up.collect(IDLE);
    ext.collect(IDLE);
    let fdb = lab.fdb();
    assert!(fdb.contains(&mac_str(GUEST_A)) && fdb.contains(&mac_str(GUEST_B)), "bridge did not learn the guests:\n{fdb}");

    let u = frame(GUEST_B, GUEST_A, TEST_ETHERTYPE, 200, 12);
    lab.set_hairpin(true);
    up.send(&u);
    assert_eq!(incoming_copies(&up.collect_incoming(IDLE), &u), 1, "hairpin on: A->B must be reflected");
    assert!(ext.collect(IDLE).is_empty(), "known unicast must not reach the external host");

    lab.set_hairpin(false);
    up.send(&u);
    assert_eq!(incoming_copies(&up.collect_incoming(IDLE), &u), 0, "hairpin off: A->B must be dropped");
    assert!(ext.collect(IDLE).is_empty());
}

#[test]
fn vlan_tags_and_jumbo_frames_arrive_intact() {
    require_root();
    let lab = HairpinLab::new();
    let up = lab.uplink_socket();
    let ext = lab.ext_socket();

    // The kernel strips tags into metadata on receive; the socket must put them back.
    let tagged = vlan_tag(&frame(GUEST_A, lab.ext_mac, TEST_ETHERTYPE, 100, 20), 0x8100, 0x2064);
    ext.send(&tagged);
    assert_eq!(up.collect_incoming(IDLE), vec![tagged]);

    let jumbo = frame(GUEST_A, lab.ext_mac, TEST_ETHERTYPE, 8000, 21);
    assert!(ext.try_send(&jumbo).is_err(), "an 8014-byte frame must not fit a 1500 MTU");
    lab.set_uplink_mtu(9000);
    ext.send(&jumbo);
    assert_eq!(up.collect_incoming(IDLE), vec![jumbo]);
}

#[test]
fn raw_socket_ignore_outgoing_and_drain() {
    require_root();
    let lab = HairpinLab::new();
    let cap = lab.bridge_port_capture();
    let ext = lab.ext_socket();
    let f = frame(GUEST_A, lab.ext_mac, TEST_ETHERTYPE, 46, 30);
    ext.send(&f);
    ext.send(&f);
    // Both frames are in the capture's queue once it has seen them; drain takes them all.
    let seen = cap.collect(IDLE);
    assert_eq!(seen.len(), 2, "{seen:?}");
    ext.send(&f);
    ext.send(&f);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut drained = 0;
    while drained < 2 {
        drained += cap.drain();
        assert!(std::time::Instant::now() < deadline, "drain took {drained} of 2 frames");
        std::thread::yield_now();
    }
    assert_eq!(drained, 2);
    cap.ignore_outgoing();
    ext.send(&f);
    assert!(cap.collect(IDLE).is_empty(), "outgoing frames still seen after ignore_outgoing");
}

#[test]
fn proc_waits_for_lines_talks_and_reports_exit_codes() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo noise; echo hello world; read x; echo got $x; echo oops >&2; exit 3"]);
    let mut p = Proc::spawn(cmd, "sh");
    assert_eq!(p.wait_line("hello", Duration::from_secs(10)), "hello world");
    p.send_line("ping");
    assert_eq!(p.wait_line("got", Duration::from_secs(10)), "got ping");
    assert_eq!(p.wait_exit(Duration::from_secs(10)), 3);
    assert_eq!(p.stderr_lines(), vec!["oops".to_owned()]);
    assert!(p.report().contains("noise"));
}

#[test]
fn proc_signal_and_kill_on_drop() {
    let mut cmd = Command::new("sleep");
    cmd.arg("100");
    let mut p = Proc::spawn(cmd, "sleep");
    p.signal(libc::SIGINT);
    assert_eq!(p.wait_exit(Duration::from_secs(10)), 128 + libc::SIGINT);

    let mut cmd = Command::new("sleep");
    cmd.arg("100");
    let p = Proc::spawn(cmd, "sleep");
    let pid = p.pid();
    drop(p);
    // SAFETY: signal 0 only checks whether the pid exists; the child was reaped by drop.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "child {pid} survived Proc drop");
}

#[test]
fn proc_wait_line_fails_with_the_output_when_the_process_exits() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo starting; echo 'fatal: no such port' >&2; exit 1"]);
    let p = Proc::spawn(cmd, "failing");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.wait_line("ready", Duration::from_secs(10));
    }))
    .expect_err("wait_line must fail when the process exits");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("exited") && msg.contains("fatal: no such port") && msg.contains("starting"), "{msg}");
}
