//! A worker that sleeps or blocks when idle still delivers: the first frame after a lull, and
//! every frame of a burst that follows one, both ways (the frames wait in the rings
//! meanwhile); a blocked one wakes for each thing that can give it work.

mod common;

use std::time::{Duration, Instant};

use common::{guest_stats, mac, seq_frame, total_drops, Ctl, LabOpts, LabSwitch};

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
/// The switch's announcement rounds after the uplink's link comes up.
const ANNOUNCE_ROUNDS: u32 = 5;

/// The worker's sleep counter.
fn slept(ctl: &Ctl) -> u64 {
    ctl.json(&["stats"])["workers"][0]["sleep_cycles"].as_u64().expect("sleep_cycles")
}

/// Returns once the worker has been asleep again (its counter moved twice: it is in its
/// idle sleep now, not finishing a burst).
fn wait_asleep(ctl: &Ctl) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = slept(ctl);
    let mut moved = 0;
    while moved < 2 {
        assert!(Instant::now() < deadline, "the idle worker never slept (sleep_cycles stuck at {last})");
        std::thread::sleep(Duration::from_millis(50));
        let now = slept(ctl);
        if now > last {
            moved += 1;
        }
        last = now;
    }
}

#[test]
fn a_sleeping_worker_delivers_the_first_frame_and_a_whole_burst_both_ways() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts { app: &["--idle-sleep-max", "1000"], ..LabOpts::default() });
    let ctl = env.ctl();
    let g = env.guest("vm1");
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;

    // One frame after a lull.
    wait_asleep(&ctl);
    let first = seq_frame(mac(A), ext_mac, 0, 64);
    ext.send(&first);
    assert_eq!(g.recv(5000, 1), vec![first], "the first frame after an idle period");

    // A burst after a lull, sent as fast as the socket takes it: all of it, in order.
    const BURST: u32 = 200;
    wait_asleep(&ctl);
    let (g, got) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let got = g.seqcheck(1500);
            (g, got)
        });
        for i in 0..BURST {
            ext.send(&seq_frame(mac(A), ext_mac, i, 64));
        }
        reader.join().expect("reader")
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");

    // The other way: a guest's burst after a lull all leaves the uplink.
    wait_asleep(&ctl);
    assert_eq!(g.stream(ext_mac, mac(A), 64, BURST), BURST);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.json(&["stats"])["uplink"]["tx_packets"] != u64::from(BURST) {
        assert!(Instant::now() < deadline, "the guest's burst did not all leave: {}", ctl.json(&["stats"]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let lcores = ctl.json(&["lcore-show"]);
    assert!(lcores[0]["sleep_percent"].as_f64().is_some_and(|p| p > 0.0), "{lcores}");
    g.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(BURST) + 1, "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
    assert!(v["workers"][0]["sleep_cycles"].as_u64().is_some_and(|c| c > 0), "{v}");
    // net_af_packet has no rx interrupts: the worker may not block, only sleep.
    assert_eq!(v["workers"][0]["blocked_cycles"], 0, "{v}");
}

/// The worker's wake-up counters (`stats` JSON `workers[0].wakes`) and its blocked cycles.
fn wakes(ctl: &Ctl) -> (serde_json::Value, u64) {
    let w = &ctl.json(&["stats"])["workers"][0];
    (w["wakes"].clone(), w["blocked_cycles"].as_u64().expect("blocked_cycles"))
}

fn wake_count(ctl: &Ctl, why: &str) -> u64 {
    wakes(ctl).0[why].as_u64().unwrap_or_else(|| panic!("no wakes.{why}"))
}

/// Returns once the worker has blocked through two whole block periods without an event
/// (two more timeouts): it is blocked now, waiting for a kick, an interrupt or its doorbell.
fn wait_blocked(ctl: &Ctl) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = wake_count(ctl, "timeout");
    while wake_count(ctl, "timeout") < first + 2 {
        assert!(Instant::now() < deadline, "the idle worker never blocked: {:?}", wakes(ctl));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An uplink whose port has rx interrupts (net_vhost, with a virtio-user "wire" behind it):
/// through a long lull the worker blocks, and wakes for the wire's frames (the uplink's
/// interrupt), a guest's frames (its kick) and a change (its doorbell), each time delivering
/// the first frame and the whole burst that follows, in order.
#[test]
fn a_blocked_worker_wakes_for_the_uplink_a_guest_and_a_change_and_loses_nothing() {
    common::require_root();
    const WIRE: &str = "02:00:00:00:00:ee";
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = dir.path().join("guests.toml");
    let vm = |name: &str, m: &str| format!("[[guest]]\nname = \"{name}\"\nmac = \"{m}\"\nsocket = \"{}/{name}.sock\"\n", dir.path().display());
    std::fs::write(&guests, vm("vm1", A)).expect("guests.toml");
    let json = dir.path().join("stats.json");
    let uplink = dir.path().join("uplink.sock");
    let mut app = common::switch_args(&guests, &json, 0);
    app.extend(["--idle-sleep-max", "250", "--idle-block-after", "1000"].map(String::from));
    let sw = common::Switch::start(None, &[format!("--vdev=net_vhost0,iface={},queues=1", uplink.display())], &app);
    let ctl = Ctl::new(&common::control_socket(&guests));
    let wire = common::Guest::start_with(&uplink, "wire", &["--mac", WIRE]);
    let g = common::Guest::start(&dir.path().join("vm1.sock"), "g1");
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
    const BURST: u32 = 200;

    // The uplink's link came up with the wire: the switch announces vm1's MAC, in rounds the
    // control thread posts to the worker (blocked or not, by the doorbell), all on the wire.
    let deadline = Instant::now() + Duration::from_secs(20);
    while ctl.json(&["stats"])["originated"]["tx_packets"] != u64::from(ANNOUNCE_ROUNDS) {
        assert!(Instant::now() < deadline, "the announcements did not all leave: {}", ctl.json(&["stats"]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let announced = wire.recv(5000, ANNOUNCE_ROUNDS as usize);
    assert_eq!(announced, vec![common::rarp(mac(A)); ANNOUNCE_ROUNDS as usize]);

    // The wire's frames: the first after a lull, then a burst.
    wait_blocked(&ctl);
    let before = wake_count(&ctl, "uplink");
    let first = seq_frame(mac(A), mac(WIRE), 0, 64);
    assert_eq!(wire.send(&first, 1), 1);
    assert_eq!(g.recv(5000, 1), vec![first], "the first frame after a lull");
    wait_blocked(&ctl);
    let (g, got) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let got = g.seqcheck(1500);
            (g, got)
        });
        assert_eq!(wire.stream(mac(A), mac(WIRE), 64, BURST), BURST);
        reader.join().expect("reader")
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");
    assert!(wake_count(&ctl, "uplink") > before, "the uplink's interrupt woke the worker: {:?}", wakes(&ctl));

    // A guest's burst after a lull: its kick wakes the worker, and all of it reaches the wire.
    wait_blocked(&ctl);
    let before = wake_count(&ctl, "kick");
    let (wire, got) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let got = wire.seqcheck(1500);
            (wire, got)
        });
        assert_eq!(g.stream(mac(WIRE), mac(A), 64, BURST), BURST);
        reader.join().expect("reader")
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");
    assert!(wake_count(&ctl, "kick") > before, "the guest's kick woke the worker: {:?}", wakes(&ctl));

    // A change while blocked: the publication rings the worker's doorbell, and the new guest
    // forwards.
    wait_blocked(&ctl);
    let before = wake_count(&ctl, "doorbell");
    let add = format!("[[guest]]\nname = \"vm2\"\nmac = \"{B}\"\nsocket = \"{}/vm2.sock\"\n", dir.path().display());
    assert_eq!(ctl.json(&["guest-add", "--toml", &add])["added"], "vm2");
    assert!(wake_count(&ctl, "doorbell") > before, "the publication rang the doorbell: {:?}", wakes(&ctl));
    let g2 = common::Guest::start(&dir.path().join("vm2.sock"), "g2");
    sw.proc.wait_line("guest vm2: link up", Duration::from_secs(30));
    wait_blocked(&ctl);
    let to_vm2 = seq_frame(mac(B), mac(WIRE), 0, 64);
    assert_eq!(wire.send(&to_vm2, 1), 1);
    assert_eq!(g2.recv(5000, 1), vec![to_vm2], "the new guest's first frame, with the worker blocked before");

    let (_, blocked) = wakes(&ctl);
    assert!(blocked > 0, "blocked cycles counted");
    g.quit();
    g2.quit();
    wire.quit();
    sw.stop_clean();
    let v = common::stats_json(&json);
    // The switch's side: what it received from the guest, and sent to it.
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], u64::from(BURST), "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(BURST) + 1, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 1, "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}
