//! Two workers: what crosses between them besides unicast dispatch (floods, bridge-mode local
//! delivery), and a guest that sets up more queue pairs than it is configured with.

mod common;

use std::time::Duration;

use common::*;

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
const C: &str = "52:54:00:00:00:03";
const D: &str = "52:54:00:00:00:04";

/// Two workers on two uplink queues (lcores 1 and 2 sharing core 1, control on core 0).
fn two_workers(guests: &[common::labswitch::GuestSpec<'_>]) -> LabSwitch {
    LabSwitch::start(guests, LabOpts { vdev_opts: "qpairs=2", eal: &["--lcores=0@0,1@1,2@1"], ..LabOpts::default() })
}

/// Broadcasts from the wire reach the guests of both workers, each frame exactly once and in
/// order: the worker that receives them (one flow: one rx queue) delivers to its own guests
/// and hands a reference to the other worker for its guests.
#[test]
fn floods_reach_the_guests_of_both_workers_once_and_in_order() {
    let mut env = two_workers(&[("vm1", A, ""), ("vm2", B, ""), ("vm3", C, ""), ("vm4", D, "")]);
    let out = env.switch().proc.stdout_text();
    assert!(out.contains("lcore 1: uplink rx [0], uplink tx q0, guest queues [vm1:0 vm3:0]"), "{out}");
    assert!(out.contains("lcore 2: uplink rx [1], uplink tx q1, guest queues [vm2:0 vm4:0]"), "{out}");
    // A watch on the interface would wake both workers for every frame: neither blocks.
    assert!(out.contains("uplink wake-ups: none: net_af_packet has no rx interrupts, and its frames are spread over 2 workers' queues"), "{out}");
    let guests: Vec<Guest> = ["vm1", "vm2", "vm3", "vm4"].iter().map(|n| env.guest(n)).collect();
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;
    // Paced, and few enough that a guest descheduled for a while on this 2-core machine
    // does not overflow its 256-entry ring.
    const N: u32 = 200;
    let got: Vec<(Guest, SeqCheck)> = std::thread::scope(|s| {
        let readers: Vec<_> = guests
            .into_iter()
            .map(|g| {
                s.spawn(move || {
                    let c = g.seqcheck(1500);
                    (g, c)
                })
            })
            .collect();
        for i in 0..N {
            ext.send(&seq_frame(BROADCAST, ext_mac, i, 64));
            if i % 8 == 7 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        readers.into_iter().map(|r| r.join().expect("reader")).collect()
    });
    for (i, (_, c)) in got.iter().enumerate() {
        assert_eq!((c.frames, c.flows, c.gaps, c.late), (u64::from(N), 1, 0, 0), "vm{}: {c:?}", i + 1);
    }
    for (g, _) in got {
        g.quit();
    }
    let v = env.stop();
    assert_eq!(v["uplink"]["rx_packets"], u64::from(N), "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
    assert_eq!((v["workers"][0]["blocked_cycles"].as_u64(), v["workers"][1]["blocked_cycles"].as_u64()), (Some(0), Some(0)), "{v}");
    for n in ["vm1", "vm2", "vm3", "vm4"] {
        assert_eq!(guest_stats(&v, n)["tx_packets"], u64::from(N), "{n}: {v}");
        assert_eq!(total_drops(guest_stats(&v, n)), 0, "{n}: {v}");
    }
}

/// Bridge mode: a guest's unicast to a bridge sibling owned by the other worker is delivered
/// inside the host (over the ring between the workers), never on the wire.
#[test]
fn bridge_mode_delivers_to_a_sibling_on_the_other_worker() {
    let mut env = two_workers(&[("vm1", A, "mode = \"bridge\""), ("vm2", B, "mode = \"bridge\"")]);
    let out = env.switch().proc.stdout_text();
    assert!(out.contains("guest queues [vm1:0]") && out.contains("guest queues [vm2:0]"), "one guest per worker: {out}");
    let (a, b) = (env.guest("vm1"), env.guest("vm2"));
    let wire = env.lab.bridge_port_capture();
    wire.drain();
    const N: u32 = 200;
    let (b, sent, got) = b.receive_while(1500, || a.stream(mac(B), mac(A), 64, N));
    assert_eq!(sent, N);
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(N), 0, 0), "{got:?}");
    let on_wire = wire.collect(Duration::from_millis(300));
    assert!(on_wire.is_empty(), "{} frames went on the wire", on_wire.len());
    a.quit();
    b.quit();
    let v = env.stop();
    assert_eq!(v["uplink"]["tx_packets"], 0, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], u64::from(N), "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")) + total_drops(guest_stats(&v, "vm2")), 0, "{v}");
}

/// A guest that sets up more queue pairs than its entry says is served on as many as
/// configured (its driver's other queues are simply never polled or filled).
#[test]
fn a_guest_with_more_queue_pairs_than_configured_uses_the_configured_ones() {
    let mut env = LabSwitch::start(&[("vm1", A, "queues = 2")], LabOpts::default());
    let ctl = env.ctl();
    let g = env.guest_with("vm1", &["--queues", "4"]);
    let show = ctl.json(&["guest-show", "vm1"]);
    assert_eq!((show["queues"].as_u64(), show["active_queues"].as_u64()), (Some(2), Some(2)), "{show}");
    let ext = env.lab.ext_socket();
    const N: u32 = 100;
    let (g, (), got) = g.receive_while(1500, || {
        for i in 0..N {
            ext.send(&seq_frame(mac(A), env.lab.ext_mac, i, 64));
        }
    });
    assert_eq!((got.frames, got.gaps, got.late), (u64::from(N), 0, 0), "{got:?}");
    assert_eq!(g.stream(env.lab.ext_mac, mac(A), 64, N), N);
    common::identity::wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == u64::from(N));
    g.quit();
    let v = env.stop();
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}
