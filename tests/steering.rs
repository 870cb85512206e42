//! Steering and scale: multiqueue guests (one flow, one queue, in order), several workers with
//! software dispatch between them, the steering mode every vdev here reports, 256 guests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::*;

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";

/// (flow, seq) of a frame made by `udp`.
fn flow_seq(f: &[u8]) -> (u16, u32) {
    (u16::from_be_bytes([f[34], f[35]]), u32::from_be_bytes([f[42], f[43], f[44], f[45]]))
}

/// (port, queue, frame) as a guest's `recvq` reports them.
type Received = Vec<(usize, usize, Vec<u8>)>;

/// Parses `frameq PORT QUEUE HEX` lines of a guest's `recvq`.
fn recvq(g: &Guest, timeout_ms: u64, max: usize) -> Received {
    g.proc.send_line(&format!("recvq {timeout_ms} {max}"));
    let mut out = Vec::new();
    loop {
        let line = g.proc.wait_line("", Duration::from_millis(timeout_ms) + Duration::from_secs(120));
        if let Some(rest) = line.strip_prefix("frameq ") {
            let mut it = rest.split_whitespace();
            let p = it.next().and_then(|x| x.parse().ok()).expect("port");
            let q = it.next().and_then(|x| x.parse().ok()).expect("queue");
            out.push((p, q, unhex(it.next().expect("hex"))));
        } else if let Some(n) = line.strip_prefix("done ") {
            assert_eq!(n.trim().parse::<usize>().ok(), Some(out.len()), "recvq count");
            return out;
        }
    }
}

/// Per flow: the queue(s) it arrived on and its sequence numbers in arrival order.
fn by_flow(frames: &[(usize, usize, Vec<u8>)]) -> BTreeMap<u16, (BTreeSet<usize>, Vec<u32>)> {
    let mut m: BTreeMap<u16, (BTreeSet<usize>, Vec<u32>)> = BTreeMap::new();
    for (_, q, f) in frames {
        let (flow, seq) = flow_seq(f);
        let e = m.entry(flow).or_default();
        e.0.insert(*q);
        e.1.push(seq);
    }
    m
}

#[test]
fn a_four_queue_guest_gets_each_flow_on_one_queue_in_order() {
    const FLOWS: u16 = 64;
    const PER_FLOW: u32 = 20;
    let mut env = LabSwitch::start(&[("vm1", A, "queues = 4")], LabOpts::default());
    let g = env.guest_with("vm1", &["--queues", "4"]);
    let ext = env.lab.ext_socket();
    // Interleave the flows, as a real mix would arrive.
    let frames: Vec<Vec<u8>> = (0..PER_FLOW)
        .flat_map(|seq| (0..FLOWS).map(move |fl| (fl, seq)))
        .map(|(fl, seq)| udp(mac(A), env.lab.ext_mac, 5000 + fl, seq))
        .collect();
    let got = std::thread::scope(|s| {
        let h = s.spawn(|| ext.send_paced(&frames, None));
        let got = recvq(&g, 8000, frames.len());
        h.join().expect("sender");
        got
    });
    assert_eq!(got.len(), frames.len(), "nothing lost");
    let flows = by_flow(&got);
    assert_eq!(flows.len(), usize::from(FLOWS));
    let mut queues_used = BTreeSet::new();
    for (flow, (queues, seqs)) in &flows {
        assert_eq!(queues.len(), 1, "flow {flow} stayed on one queue: {queues:?}");
        assert_eq!(seqs, &(0..PER_FLOW).collect::<Vec<_>>(), "flow {flow}: in order, no loss, no duplicate");
        queues_used.extend(queues);
    }
    assert_eq!(queues_used, (0..4).collect::<BTreeSet<_>>(), "the flows spread over all 4 queues");
    g.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], frames.len() as u64, "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
}

#[test]
fn two_workers_dispatch_every_frame_exactly_once_in_order() {
    const FLOWS: u16 = 16;
    const PER_FLOW: u32 = 60;
    const STREAM: u32 = 400;
    // Three lcores on two cores: control on 0, workers 1 and 2 sharing core 1. Two uplink
    // queues (the kernel's fanout hash spreads flows over them), so frames for a guest often
    // arrive at the worker that does not own it and must cross over a ring.
    let mut env = LabSwitch::start(
        &[("vm1", A, ""), ("vm2", B, "")],
        LabOpts { vdev_opts: "qpairs=2", eal: &["--lcores=0@0,1@1,2@1"], ..LabOpts::default() },
    );
    let out = env.switch().proc.stdout_text();
    assert!(out.contains("lcore 1: uplink rx [0], uplink tx q0, guest queues [vm1:0]"), "{out}");
    assert!(out.contains("lcore 2: uplink rx [1], uplink tx q1, guest queues [vm2:0]"), "{out}");
    assert!(out.contains("uplink steering: software dispatch: rte_flow_validate not supported by the port"), "{out}");
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let capture = env.lab.ext_socket();
    let mut to_guests = Vec::new();
    for seq in 0..PER_FLOW {
        for fl in 0..FLOWS {
            to_guests.push(udp(mac(A), env.lab.ext_mac, 6000 + fl, seq));
            to_guests.push(udp(mac(B), env.lab.ext_mac, 7000 + fl, seq));
        }
    }
    let ext_mac = env.lab.ext_mac;
    let want = (u32::from(FLOWS) * PER_FLOW) as usize;
    // Each guest process is driven from its own thread (a Guest moves, it is not shared).
    let ((a, got_a), (b, got_b)) = std::thread::scope(|s| {
        let sender = s.spawn(|| ext.send_paced(&to_guests, None));
        let ta = s.spawn(move || {
            assert_eq!(a.stream(ext_mac, mac(A), 64, STREAM), STREAM);
            let got = recvq(&a, 8000, want);
            (a, got)
        });
        let tb = s.spawn(move || {
            assert_eq!(b.stream(ext_mac, mac(B), 64, STREAM), STREAM);
            let got = recvq(&b, 8000, want);
            (b, got)
        });
        sender.join().expect("sender");
        (ta.join().expect("vm1"), tb.join().expect("vm2"))
    });
    // What the guests sent, as the external host saw it, once the switch has sent it all.
    common::identity::wait_stats(&env.ctl(), Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == 2 * u64::from(STREAM));
    let seen = capture.collect(Duration::from_millis(500));
    a.quit();
    b.quit();
    let v = env.stop();
    for (name, got, base) in [("vm1", &got_a, 6000u16), ("vm2", &got_b, 7000u16)] {
        assert_eq!(got.len(), (u32::from(FLOWS) * PER_FLOW) as usize, "{name}: every frame, once; counters: {v}");
        let flows = by_flow(got);
        assert_eq!(flows.keys().copied().collect::<Vec<_>>(), (base..base + FLOWS).collect::<Vec<_>>(), "{name}: only its own flows");
        for (flow, (_, seqs)) in &flows {
            assert_eq!(seqs, &(0..PER_FLOW).collect::<Vec<_>>(), "{name} flow {flow}: in order");
        }
    }
    // What the guests sent reached the external host complete and in order.
    for src in [A, B] {
        let seqs: Vec<u32> = seen
            .iter()
            .filter(|(f, outgoing)| !outgoing && f.len() >= 18 && f[6..12] == mac(src) && f[12..14] == [0x88, 0xb5])
            .map(|(f, _)| u32::from_be_bytes([f[14], f[15], f[16], f[17]]))
            .collect();
        assert_eq!(seqs, (0..STREAM).collect::<Vec<_>>(), "{src}'s stream at the external host");
    }
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
    assert_eq!(v["uplink"]["tx_packets"], u64::from(2 * STREAM), "{v}");
    assert_eq!(v["workers"].as_array().map(|w| w.len()), Some(2), "{v}");
}

/// The vdevs lack rte_flow (or, for net_tap, the kernel features its rules need) and VMDq
/// pools: each must say so, put every guest on software steering with the reason, and still
/// forward. What this checks does not depend on the machine: the test profile starts EAL with
/// `--no-pci`, so even where a NIC with rte_flow or pools is bound to DPDK, port 0 is the vdev
/// named here (checked on the uplink line), and these PMDs have neither on any machine. The
/// NIC paths are not reached by any end-to-end test: the pool plan is unit-tested in
/// `control::vmdq` against NIC-like capabilities, and a rule that cannot be created falls
/// back to this same software path.
#[test]
fn every_vdev_here_reports_software_steering_and_forwards() {
    assert!(eal_test_args().iter().any(|a| a == "--no-pci"), "the test profile must keep NICs out: {:?}", eal_test_args());
    require_root();
    for (vdev, ns_needed) in [("net_null0", false), ("net_tap0,iface=mvtst0", true), ("net_ring0", false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = format!("[[guest]]\nname = \"vm1\"\nmac = \"{A}\"\nsocket = \"{}/vm1.sock\"\n", dir.path().display());
        std::fs::write(dir.path().join("guests.toml"), toml).expect("guests.toml");
        let json = dir.path().join("stats.json");
        let ns = ns_needed.then(|| Netns::new(&format!("mvt-{}", unique("st"))));
        let app = switch_args(&dir.path().join("guests.toml"), &json, 0);
        let sw = Switch::start(ns.as_ref(), &[format!("--vdev={vdev}")], &app);
        let out = sw.proc.stdout_text();
        let name = vdev.split(',').next().unwrap_or(vdev);
        let port = out.lines().find(|l| l.starts_with("uplink: ")).unwrap_or_else(|| panic!("{vdev}: no uplink line\n{out}"));
        let driver = name.trim_end_matches(|c: char| c.is_ascii_digit());
        assert!(port.starts_with(&format!("uplink: port 0 {name} (driver {driver})")), "{vdev}: port 0 is not the vdev: {port}");
        let line = out.lines().find(|l| l.starts_with("uplink steering: ")).unwrap_or_else(|| panic!("{vdev}: no steering line\n{out}"));
        assert!(line.starts_with("uplink steering: software dispatch: rte_flow_"), "{vdev}: {line}");
        // Pools are only considered where rte_flow is missing altogether (not net_tap's case).
        let pools = if vdev.starts_with("net_tap") { "the port has rte_flow" } else { "0 VMDq pools (at least 8 needed)" };
        assert!(line.ends_with(&format!("; no VMDq pools: {pools}")), "{vdev}: {line}");
        let guest_line = out.lines().find(|l| l.starts_with("guest vm1: ")).unwrap_or_default();
        assert!(guest_line.contains("steering software (rte_flow_"), "{vdev}: {guest_line}");
        let g = Guest::start(&dir.path().join("vm1.sock"), "st");
        sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
        let f = frame(BROADCAST, mac(A), TEST_ETHERTYPE, 46, 1);
        assert_eq!(g.send(&f, 8), 8);
        // The guest quits once the switch has sent all 8 out of the uplink.
        let ctl = Ctl::new(&control_socket(&dir.path().join("guests.toml")));
        common::identity::wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == 8);
        g.quit();
        sw.stop_clean();
        let v = stats_json(&json);
        assert_eq!(v["uplink"]["tx_packets"], 8, "{vdev} forwarded the guest's frames: {v}");
        assert!(v["steering"]["guests"][0].as_str().unwrap_or("").starts_with("vm1: software (rte_flow_"), "{v}");
    }
}

/// 256 guests from one file: they start quickly, each gets exactly the frame addressed to it,
/// and everything is released at exit.
#[test]
fn two_hundred_fifty_six_guests() {
    const N: usize = 256;
    // Debian's DPDK allows 32 ethdev ports per process: the guests live in several processes.
    const PER_PROCESS: usize = 30;
    let names: Vec<String> = (0..N).map(|i| format!("g{i:03}")).collect();
    let macs: Vec<String> = (0..N).map(|i| format!("52:54:00:01:{:02x}:{:02x}", i / 256, i % 256)).collect();
    let specs: Vec<(&str, &str, &str)> = names.iter().zip(&macs).map(|(n, m)| (n.as_str(), m.as_str(), "")).collect();
    let t0 = Instant::now();
    let mut env = LabSwitch::start(&specs, LabOpts::default());
    let startup = t0.elapsed();
    let out = env.switch().proc.stdout_text();
    assert!(out.contains("dpdk-macvtap: forwarding (256 guests, 1 workers)"), "{out}");
    assert!(startup < Duration::from_secs(20), "256 guests took {startup:?} to start");
    eprintln!("256 guests: switch forwarding {startup:?} after launch");

    let mut procs = Vec::new();
    for (chunk_i, chunk) in names.chunks(PER_PROCESS).enumerate() {
        let mut extra: Vec<String> = Vec::new();
        for n in &chunk[1..] {
            extra.push("--socket".into());
            extra.push(env.sock(n).display().to_string());
        }
        let extra_ref: Vec<&str> = extra.iter().map(String::as_str).collect();
        procs.push((chunk_i * PER_PROCESS, Guest::start_with(&env.sock(&chunk[0]), &format!("m{chunk_i}"), &extra_ref)));
    }
    for n in &names {
        env.switch().proc.wait_line(&format!("guest {n}: link up"), Duration::from_secs(60));
    }
    let ext = env.lab.ext_socket();
    let frames: Vec<Vec<u8>> = macs.iter().enumerate().map(|(i, m)| frame(mac(m), env.lab.ext_mac, TEST_ETHERTYPE, 46, i as u8)).collect();
    ext.send_paced(&frames, None);
    for (base, g) in &procs {
        let ports = PER_PROCESS.min(N - base);
        let got = recvq(g, 3000, ports);
        assert_eq!(got.len(), ports, "one frame per guest in the process serving guests {base}..");
        for (p, _, f) in got {
            assert_eq!(f, frames[base + p], "guest {} got the frame addressed to it", names[base + p]);
        }
    }
    for (_, g) in procs {
        g.quit();
    }
    let v = env.stop();
    for n in &names {
        assert_eq!(guest_stats(&v, n)["tx_packets"], 1, "{n}: {v}");
    }
    assert_eq!(total_drops(&v["uplink"]), 0);
}

/// `--assign cycles`: two busy guests that round-robin put on the same worker are split once
/// their load is measured, while they keep sending (nothing lost across the move), and every
/// guest is still served exactly once and in order afterwards.
#[test]
fn busy_queues_move_to_the_idle_worker_by_measured_load() {
    const C: &str = "52:54:00:00:00:03";
    const D: &str = "52:54:00:00:00:04";
    const CHUNK: u32 = 20_000;
    let mut env = LabSwitch::start(
        &[("vm1", A, ""), ("vm2", B, ""), ("vm3", C, ""), ("vm4", D, "")],
        LabOpts {
            vdev_opts: "qpairs=2",
            eal: &["--lcores=0@0,1@1,2@1"],
            app: &["--assign", "cycles", "--rebalance-interval", "1"],
            ..LabOpts::default()
        },
    );
    let out = env.switch().proc.stdout_text();
    assert!(out.contains("lcore 1: uplink rx [0], uplink tx q0, guest queues [vm1:0 vm3:0]"), "{out}");
    assert!(out.contains("lcore 2: uplink rx [1], uplink tx q1, guest queues [vm2:0 vm4:0]"), "{out}");
    let [g1, g2, g3, g4] = ["vm1", "vm2", "vm3", "vm4"].map(|n| env.guest(n));
    let ext_mac = env.lab.ext_mac;
    let moved = std::sync::atomic::AtomicBool::new(false);
    // vm1 and vm3 (both on lcore 1) send as fast as they can until the switch moves a queue.
    let (line, g1, g3, sent) = std::thread::scope(|s| {
        let senders: Vec<_> = [(g1, A), (g3, C)]
            .into_iter()
            .map(|(g, src)| {
                let moved = &moved;
                s.spawn(move || {
                    let mut sent = 0u64;
                    // Keep going a little after the move, so frames flow across it.
                    let mut after = 0;
                    while after < 3 {
                        sent += u64::from(g.stream(ext_mac, mac(src), 64, CHUNK));
                        if moved.load(std::sync::atomic::Ordering::Relaxed) {
                            after += 1;
                        }
                    }
                    (g, sent)
                })
            })
            .collect();
        // Set on the way out too, so that a failed wait does not leave the senders looping.
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let done = Done(&moved);
        let line = env.switch().proc.wait_line("rebalance: ", Duration::from_secs(60));
        drop(done);
        let mut done = senders.into_iter().map(|t| t.join().expect("sender"));
        let (g1, s1) = done.next().expect("vm1");
        let (g3, s3) = done.next().expect("vm3");
        (line, g1, g3, s1 + s3)
    });
    let moved_guest = if line.starts_with("rebalance: vm1:0 lcore 1 -> 2;") {
        "vm1"
    } else {
        assert!(line.starts_with("rebalance: vm3:0 lcore 1 -> 2;"), "one of the busy queues moves to lcore 2: {line}");
        "vm3"
    };
    let kept = if moved_guest == "vm1" { "vm3" } else { "vm1" };
    eprintln!("{line} ({sent} frames sent by vm1 and vm3 across it)");
    let lcore1 = env.switch().proc.wait_line("lcore 1: ", Duration::from_secs(5));
    let lcore2 = env.switch().proc.wait_line("lcore 2: ", Duration::from_secs(5));
    assert_eq!(lcore1, format!("lcore 1: uplink rx [0], uplink tx q0, guest queues [{kept}:0]"));
    // Each lcore's queues are listed in guest order.
    let mut on2 = vec![format!("{moved_guest}:0"), "vm2:0".to_owned(), "vm4:0".to_owned()];
    on2.sort();
    assert_eq!(lcore2, format!("lcore 2: uplink rx [1], uplink tx q1, guest queues [{}]", on2.join(" ")));

    // After the move: flows to every guest, each exactly once and in order.
    const FLOWS: u16 = 8;
    const PER_FLOW: u32 = 25;
    let macs = [A, B, C, D];
    let ext = env.lab.ext_socket();
    let mut frames = Vec::new();
    for seq in 0..PER_FLOW {
        for (gi, m) in macs.iter().enumerate() {
            for fl in 0..FLOWS {
                frames.push(udp(mac(m), ext_mac, 1000 * (gi as u16 + 1) + fl, seq));
            }
        }
    }
    let want = (u32::from(FLOWS) * PER_FLOW) as usize;
    let (guests, got): (Vec<Guest>, Vec<Received>) = std::thread::scope(|s| {
        let readers: Vec<_> = [g1, g2, g3, g4].into_iter().map(|g| s.spawn(move || {
            let got = recvq(&g, 6000, want);
            (g, got)
        })).collect();
        ext.send_paced(&frames, None);
        readers.into_iter().map(|t| t.join().expect("reader")).unzip()
    });
    for (gi, got) in got.iter().enumerate() {
        assert_eq!(got.len(), want, "guest {gi}: every frame once");
        let base = 1000 * (gi as u16 + 1);
        for (flow, (_, seqs)) in by_flow(got) {
            assert!((base..base + FLOWS).contains(&flow), "guest {gi} got flow {flow}");
            assert_eq!(seqs, (0..PER_FLOW).collect::<Vec<_>>(), "guest {gi} flow {flow}: in order");
        }
    }
    // Asked again (`dpdk-macvtapctl rebalance`) with everything idle: nothing worth moving,
    // and it says why, to the client and in the log.
    let r = env.ctl().json(&["rebalance"]);
    assert_eq!(r["moved"], false, "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.starts_with("nothing moved (")), "{r}");
    let again = env.switch().proc.wait_line("rebalance: ", Duration::from_secs(10));
    assert!(again.starts_with("rebalance: nothing moved ("), "{again}");
    for g in guests {
        g.quit();
    }
    let v = env.stop();
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
    for n in ["vm1", "vm2", "vm3", "vm4"] {
        assert_eq!(total_drops(guest_stats(&v, n)), 0, "{n}: {v}");
        assert_eq!(guest_stats(&v, n)["tx_packets"], want as u64, "{n}: {v}");
    }
    // Nothing was freed uncounted across the move (frames were crossing between workers).
    common::identity::assert_identities(&v, "at exit, after queues moved under load");
    // Everything the busy guests sent left the uplink, across the move.
    assert_eq!(v["uplink"]["tx_packets"], sent, "{v}");
    assert_eq!(v["assignment"][1]["guest_queues"], serde_json::json!(on2), "{v}");
    assert_eq!(v["assignment"][0]["guest_queues"], serde_json::json!([format!("{kept}:0")]), "{v}");
}
