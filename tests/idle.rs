//! A worker that sleeps when idle still delivers: the first frame after a lull, and every
//! frame of a burst that follows one, both ways (the frames wait in the rings meanwhile).

mod common;

use std::time::{Duration, Instant};

use common::{guest_stats, mac, seq_frame, total_drops, Ctl, LabOpts, LabSwitch};

const A: &str = "52:54:00:00:00:01";

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
}
