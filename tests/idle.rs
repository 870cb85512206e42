//! A worker that sleeps or blocks when idle still delivers: the first frame after a lull, and
//! every frame of a burst that follows one, both ways (the frames wait in the rings
//! meanwhile); a blocked one wakes for each thing that can give it work.

mod common;

use std::time::{Duration, Instant};

use common::identity::wait_stats;
use common::{drops, guest_stats, mac, seq_frame, total_drops, Ctl, LabOpts, LabSwitch};

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
/// The switch's announcement rounds after the uplink's link comes up (per guest).
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

/// Waits until the switch has sent all its announcement rounds for `macs` (every guest's
/// MAC: the uplink's link came up with the wire), then takes them off the wire. The first
/// round leaves as the link comes up, while the wire's own port is still starting, and
/// DPDK's virtio driver discards what its rx rings hold at the end of its start
/// (`virtio_dev_start` flushes them): `early`, what the switch had sent when read right
/// after the wire said it was ready, may be gone. Every frame sent after that arrives, and
/// nothing else.
fn take_announcements(ctl: &Ctl, wire: &common::Guest, macs: &[&str], early: u64) {
    let rounds = u64::from(ANNOUNCE_ROUNDS);
    let sent = rounds * macs.len() as u64;
    let v = wait_stats(ctl, Duration::from_secs(20), |v| v["originated"]["tx_packets"].as_u64() >= Some(sent));
    assert_eq!(v["originated"]["tx_packets"], sent, "the switch sent other frames of its own: {v}");
    // All of them are in the wire's rings by now: the wait runs out only if some were flushed.
    let mut got = std::collections::BTreeMap::new();
    for f in wire.recv(2000, sent as usize) {
        *got.entry(f).or_insert(0u64) += 1;
    }
    let mut total = 0;
    for m in macs {
        let n = got.remove(&common::rarp(mac(m))).unwrap_or(0);
        assert!(n <= rounds, "{m} announced {n} times on the wire in {rounds} rounds");
        total += n;
    }
    assert!(got.is_empty(), "the wire got other frames than the announcements: {got:?}");
    assert!(total + early >= sent, "{total} of {sent} announcements reached the wire, and only {early} left before it was ready");
}

#[test]
fn a_sleeping_worker_delivers_the_first_frame_and_a_whole_burst_both_ways() {
    // Sleeps only: blocking is `an_af_packet_uplink_wakes_a_blocked_worker_...` below.
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts { app: &["--idle-sleep-max", "1000", "--idle-block-after", "0"], ..LabOpts::default() });
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
    let (g, (), got) = g.receive_while(1500, || {
        for i in 0..BURST {
            ext.send(&seq_frame(mac(A), ext_mac, i, 64));
        }
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");

    // The other way: a guest's burst after a lull all leaves the uplink.
    wait_asleep(&ctl);
    assert_eq!(g.stream(ext_mac, mac(A), 64, BURST), BURST);
    // The guest's burst all left the uplink.
    wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == u64::from(BURST));
    let lcores = ctl.json(&["lcore-show"]);
    assert!(lcores[0]["sleep_percent"].as_f64().is_some_and(|p| p > 0.0), "{lcores}");
    g.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(BURST) + 1, "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
    assert!(v["workers"][0]["sleep_cycles"].as_u64().is_some_and(|c| c > 0), "{v}");
}

/// net_af_packet has no rx interrupts: frames arriving at its kernel interface wake a blocked
/// worker instead (`rte::arrivals`): each single frame after a lull (one the host itself sends
/// out of the interface too), and a burst that follows one loses nothing; a guest's burst
/// after a lull wakes it with its kick. With a block limit
/// of a minute, only those events can end a block in time.
#[test]
fn an_af_packet_uplink_wakes_a_blocked_worker_through_its_kernel_interface() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts { app: &["--idle-block-limit", "60000"], ..LabOpts::default() });
    let iface = env.lab.uplink.clone();
    let says = format!("uplink wake-ups: net_af_packet has no rx interrupts; a blocked worker wakes for frames arriving at kernel interface {iface}");
    assert!(env.switch().proc.stdout_lines().contains(&says), "{}", env.switch().proc.report());
    let ctl = env.ctl();
    let g = env.guest("vm1");
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;

    const SINGLES: u32 = 10;
    for i in 0..SINGLES {
        ctl.uplink_frame_wakes(0, &g, &seq_frame(mac(A), ext_mac, i, 64), |f| ext.send(f), &format!("frame {i} on {iface}"));
    }

    // A frame the host itself sends out of the interface: the driver's socket sees it too
    // (and the guest gets it), so it must wake the worker as well.
    let host = common::RawSocket::open(Some(&env.lab.sw), &iface);
    ctl.uplink_frame_wakes(0, &g, &seq_frame(mac(A), ext_mac, SINGLES, 64), |f| host.send(f), &format!("a frame the host sent out of {iface}"));
    drop(host);

    ctl.wait_blocked(0);
    let (g, (), got) = g.receive_while(1500, || {
        for i in 0..BURST {
            ext.send(&seq_frame(mac(A), ext_mac, i, 64));
        }
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");

    // Dense traffic: a worker that moved 10,000 frames a second or more over a second lets
    // its watch go (the kernel then hands each frame to the driver's socket alone), and makes
    // it again when it next blocks. The switch's network namespace holds the driver's packet
    // socket and the watch.
    let pid = env.switch().proc.pid();
    let sockets = || std::fs::read_to_string(format!("/proc/{pid}/net/packet")).expect("packet sockets").lines().count() - 1;
    let hooked = sockets();
    assert_eq!(hooked, 2, "net_af_packet's socket and the worker's watch");
    let full = |s: &serde_json::Value| drops(guest_stats(s, "vm1"), "guest_queue_full");
    let before = ctl.json(&["stats"]);
    let (g, sent, got) = g.receive_while(1500, || {
        // 16 frames, then 0.5 ms asleep: about 27,000 frames a second here, and still above
        // the 10,000 that make the traffic dense if each sleep took three times as long.
        // Sleeping rather than spinning between bursts leaves this 2-core machine to the
        // worker and the guest's reader. Until the watch is let go.
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0;
        while sent % 256 != 0 || sockets() == hooked {
            assert!(Instant::now() < deadline, "the watch was never let go: {}", ctl.worker(0));
            for _ in 0..16 {
                ext.send(&seq_frame(mac(A), ext_mac, sent, 64));
                sent += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        sent
    });
    // The uplink received every frame sent (no wake-up was missed), and each one the guest did
    // not get is counted: the guest's reader is a process on a busy 2-core machine, and where
    // it fell behind its full queue is the one place a frame may stay undelivered. A few, not
    // a share of the traffic (the runs that showed them lost 18-195 of some 20,000).
    let rx = |s: &serde_json::Value| s["uplink"]["rx_packets"].as_u64().expect("uplink rx_packets");
    let sent64 = u64::from(sent);
    let now = wait_stats(&ctl, Duration::from_secs(10), |v| rx(v) - rx(&before) == sent64 && got.frames + full(v) - full(&before) == sent64);
    let unplaced = full(&now) - full(&before);
    assert_eq!((got.flows, got.late), (1, 0), "{got:?}");
    assert!(unplaced < sent64 / 10, "{unplaced} of {sent} found the guest's queue full");
    ctl.wait_blocked(0);
    assert_eq!(sockets(), hooked, "the watch made again to block");
    ctl.uplink_frame_wakes(0, &g, &seq_frame(mac(A), ext_mac, 0, 64), |f| ext.send(f), "a frame after the dense traffic (the new watch)");

    ctl.wait_blocked(0);
    let before = ctl.wake_count(0, "kick");
    assert_eq!(g.stream(ext_mac, mac(A), 64, BURST), BURST);
    // The guest's burst all left the uplink.
    wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == u64::from(BURST));
    assert!(ctl.wake_count(0, "kick") > before, "the guest's kick woke the worker: {}", ctl.worker(0));
    g.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(SINGLES + 1 + BURST + 1) + got.frames, "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), unplaced, "{v}");
}

/// Blocking after 1 ms of lull (unless a test says otherwise), for a minute at most: only an
/// event can end a block in time.
const BLOCK_AFTER_US: u32 = 1000;

/// A switch whose uplink has rx interrupts (net_vhost with `queues` queue pairs; the caller
/// attaches a virtio-user "wire" behind it) and guests `vms` (name, MAC), whose worker blocks
/// after `block_after_us` of lull.
fn vhost_uplink_switch(dir: &std::path::Path, vms: &[(&str, &str)], queues: u16, eal: &[&str], block_after_us: u32) -> (common::Switch, Ctl, std::path::PathBuf, std::path::PathBuf) {
    let guests = dir.join("guests.toml");
    let text: String = vms.iter().map(|(n, m)| common::guest_toml(dir, n, m, "")).collect();
    std::fs::write(&guests, text).expect("guests.toml");
    let json = dir.join("stats.json");
    let uplink = dir.join("uplink.sock");
    let mut app = common::switch_args(&guests, &json, 0);
    let block_after = block_after_us.to_string();
    app.extend(["--idle-sleep-max", "250", "--idle-block-after", &block_after, "--idle-block-limit", "60000"].map(String::from));
    let mut eal_args = vec![format!("--vdev=net_vhost0,iface={},queues={queues}", uplink.display())];
    eal_args.extend(eal.iter().map(|s| s.to_string()));
    let sw = common::Switch::start(None, &eal_args, &app);
    (sw, Ctl::new(&common::control_socket(&guests)), json, uplink)
}

const WIRE: &str = "02:00:00:00:00:ee";
const BURST: u32 = 200;

/// An uplink whose port has rx interrupts (net_vhost, with a virtio-user "wire" behind it):
/// through a long lull the worker blocks, and wakes for the wire's frames (the uplink's
/// interrupt), a guest's frames (its kick), the switch's own frames and a change (its
/// doorbell), a new guest's device (so that its kicks wake it too) and the stop, each time
/// delivering the first frame and the whole burst that follows, in order.
#[test]
fn a_blocked_worker_wakes_for_the_uplink_a_guest_and_a_change_and_loses_nothing() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sw, ctl, json, uplink) = vhost_uplink_switch(dir.path(), &[("vm1", A)], 1, &[], BLOCK_AFTER_US);
    let wire = common::Guest::start_with(&uplink, "wire", &["--mac", WIRE]);
    let early = ctl.originated();
    let g = common::Guest::start(&dir.path().join("vm1.sock"), "g1");
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));

    // The uplink's link came up with the wire: the switch announces vm1's MAC, in rounds the
    // control thread posts to the worker (blocked or not: the post rings), on the wire.
    take_announcements(&ctl, &wire, &[A], early);

    // The wire's frames: the first after a lull, then a burst.
    ctl.uplink_frame_wakes(0, &g, &seq_frame(mac(A), mac(WIRE), 0, 64), |f| assert_eq!(wire.send(f, 1), 1), "the first frame after a lull (the uplink's interrupt)");
    ctl.wait_blocked(0);
    let (g, sent, got) = g.receive_while(1500, || wire.stream(mac(A), mac(WIRE), 64, BURST));
    assert_eq!(sent, BURST);
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");

    // A guest's burst after a lull: its kick wakes the worker, and all of it reaches the wire.
    ctl.wait_blocked(0);
    let before = ctl.wake_count(0, "kick");
    let (wire, sent, got) = wire.receive_while(1500, || g.stream(mac(WIRE), mac(A), 64, BURST));
    assert_eq!(sent, BURST);
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{got:?}");
    assert!(ctl.wake_count(0, "kick") > before, "the guest's kick woke the worker: {}", ctl.worker(0));

    // A change while blocked: the publication rings the worker's doorbell (the add returns
    // only once the worker took it).
    ctl.wait_blocked(0);
    let before = ctl.wake_count(0, "doorbell");
    assert_eq!(ctl.json(&["guest-add", "--toml", &common::guest_toml(dir.path(), "vm2", B, "")])["added"], "vm2");
    assert!(ctl.wake_count(0, "doorbell") > before, "the publication rang the doorbell: {}", ctl.worker(0));
    // vm2's device arrives while the worker blocks with kicks armed for vm1 only: the device
    // rings, so the worker arms vm2's kicks too, and vm2's first frame wakes it.
    ctl.wait_blocked(0);
    let g2 = common::Guest::start(&dir.path().join("vm2.sock"), "g2");
    sw.proc.wait_line("guest vm2: link up", Duration::from_secs(30));
    ctl.wait_blocked(0);
    let from_vm2 = seq_frame(mac(WIRE), mac(B), 0, 64);
    assert_eq!(g2.send(&from_vm2, 1), 1);
    assert_eq!(wire.recv(5000, 1), vec![from_vm2], "the new guest's first frame, sent while the worker blocked");
    ctl.wait_blocked(0);
    let to_vm2 = seq_frame(mac(B), mac(WIRE), 0, 64);
    assert_eq!(wire.send(&to_vm2, 1), 1);
    assert_eq!(g2.recv(5000, 1), vec![to_vm2], "and its first frame from the wire");

    let blocked = ctl.worker(0)["blocked_cycles"].as_u64().expect("blocked_cycles");
    assert!(blocked > 0, "blocked cycles counted");
    g.quit();
    g2.quit();
    wire.quit();
    // The stop rings too: a blocked worker would otherwise hold the exit for a minute.
    ctl.wait_blocked(0);
    sw.stop_clean();
    let v = common::stats_json(&json);
    // The switch's side: what it received from each guest, and sent to it.
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], u64::from(BURST), "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(BURST) + 1, "{v}");
    assert_eq!((guest_stats(&v, "vm2")["rx_packets"].clone(), guest_stats(&v, "vm2")["tx_packets"].clone()), (1.into(), 1.into()), "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")) + total_drops(guest_stats(&v, "vm2")), 0, "{v}");
}

/// Two workers, both blocked: a frame the uplink's worker receives for a guest of the other
/// worker crosses a ring between them, and the crossing rings the other's doorbell.
#[test]
fn a_frame_crossing_to_a_blocked_worker_wakes_it() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two workers on core 1 (this machine has two cores), each with an uplink queue pair.
    let (sw, ctl, json, uplink) = vhost_uplink_switch(dir.path(), &[("vm1", A), ("vm2", B)], 2, &["--lcores=0@0,1@1,2@1"], BLOCK_AFTER_US);
    let wire = common::Guest::start_with(&uplink, "wire", &["--mac", WIRE, "--queues", "2"]);
    let early = ctl.originated();
    let g1 = common::Guest::start(&dir.path().join("vm1.sock"), "g1");
    let g2 = common::Guest::start(&dir.path().join("vm2.sock"), "g2");
    sw.proc.wait_line("guest vm2: link up", Duration::from_secs(30));
    take_announcements(&ctl, &wire, &[A, B], early);

    // The wire sends on its queue 0, which is uplink rx queue 0: find the worker polling it,
    // and the guest the other worker serves.
    let lcores = ctl.json(&["lcore-show"]);
    let rx0 = (0..2).find(|&w| lcores[w]["uplink_rx"].as_array().is_some_and(|q| q.contains(&0.into()))).expect("a worker polls uplink rx queue 0");
    let other = 1 - rx0;
    let (name, m, g, rest) = match lcores[other]["guest_queues"][0]["guest"].as_str() {
        Some("vm1") => ("vm1", A, g1, g2),
        Some("vm2") => ("vm2", B, g2, g1),
        q => panic!("worker {other} serves no guest ({q:?}): {lcores}"),
    };
    ctl.wait_blocked(rx0);
    ctl.wait_blocked(other);
    let before = ctl.wake_count(other, "doorbell");
    let (g, sent, got) = g.receive_while(1500, || wire.stream(mac(m), mac(WIRE), 64, BURST));
    assert_eq!(sent, BURST);
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(BURST), 0, 0), "{name}: {got:?}");
    assert!(ctl.wake_count(other, "doorbell") > before, "the crossing rang worker {other}: {}", ctl.worker(other));

    g.quit();
    rest.quit();
    wire.quit();
    sw.stop_clean();
    let v = common::stats_json(&json);
    assert_eq!(guest_stats(&v, name)["tx_packets"], u64::from(BURST), "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
}

/// Sparse frames: once one has ended a lull of 250 us or more, the worker blocks again after
/// a few empty passes rather than after `--idle-block-after` of sleeps (20 ms here, which
/// gaps of 3 ms never reach), so each frame wakes it with the uplink's interrupt; none is
/// lost. A late wake-up (the machine is busy) only costs one frame a lull of sleeps.
#[test]
fn a_worker_blocks_between_sparse_frames() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let (sw, ctl, json, uplink) = vhost_uplink_switch(dir.path(), &[("vm1", A)], 1, &[], 20_000);
    let wire = common::Guest::start_with(&uplink, "wire", &["--mac", WIRE]);
    let early = ctl.originated();
    let g = common::Guest::start(&dir.path().join("vm1.sock"), "g1");
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
    take_announcements(&ctl, &wire, &[A], early);

    ctl.wait_blocked(0);
    let before = ctl.wake_count(0, "uplink");
    const SPARSE: u32 = 40;
    let (g, sent, got) = g.receive_while(1500, || {
        (0..SPARSE)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(3));
                wire.send(&seq_frame(mac(A), mac(WIRE), i, 64), 1)
            })
            .sum::<u32>()
    });
    assert_eq!(sent, SPARSE);
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(SPARSE), 0, 0), "{got:?}");
    let woke = ctl.wake_count(0, "uplink") - before;
    assert!(woke >= u64::from(SPARSE) * 3 / 4, "only {woke} of {SPARSE} sparse frames woke a blocked worker: {}", ctl.worker(0));

    g.quit();
    wire.quit();
    sw.stop_clean();
    let v = common::stats_json(&json);
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(SPARSE), "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}
