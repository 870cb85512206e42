//! The switch follows its uplink's link, and the control socket's event stream. The uplink is
//! net_af_packet on a veth whose peer is a Linux bridge port in the lab; taking that peer
//! down drops the uplink's carrier, as pulling a cable would.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const A: &str = "52:54:00:00:00:01";
const LEN: usize = 64;
const WAIT: Duration = Duration::from_secs(20);

/// `dpdk-macvtapctl [--json] events` on `env`'s control socket, running until dropped; waits
/// for its first line (the subscription's state) and returns it with the client.
fn subscribe(env: &LabSwitch, json: bool) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dpdk-macvtapctl"));
    cmd.arg("--control").arg(control_socket(&env.guests_file()));
    if json {
        cmd.arg("--json");
    }
    cmd.arg("events");
    let p = Proc::spawn(cmd, if json { "events --json" } else { "events" });
    let first = p.next_line(WAIT).unwrap_or_else(|| panic!("no subscription line\n{}", p.report()));
    (p, first)
}

/// The next event line of a human `events` client, without its timestamp (checked to be one).
fn next_event(p: &Proc) -> String {
    let line = p.next_line(WAIT).unwrap_or_else(|| panic!("no event within {WAIT:?}\n{}", p.report()));
    let (time, what) = line.split_once(' ').unwrap_or_else(|| panic!("event line without a timestamp: {line:?}"));
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "not an RFC 3339 UTC time: {line:?}");
    what.to_owned()
}

/// The value of the metric sample `line` (`name{labels}`) in a scrape of `socket`.
fn metric(socket: &Path, sample: &str) -> String {
    let mut s = UnixStream::connect(socket).expect("connect to the metrics socket");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("request");
    let mut body = String::new();
    s.read_to_string(&mut body).expect("answer");
    let prefix = format!("{sample} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no {sample} in\n{body}")).to_owned()
}

/// Sequence numbers of the stream frames from `src` among `frames`, checking each is exactly
/// the frame `macvtap-guest stream` builds for its number.
fn seqs(frames: &[Vec<u8>], dst: [u8; 6], src: [u8; 6]) -> Vec<u32> {
    frames
        .iter()
        .filter(|f| f.len() >= 18 && f[6..12] == src && f[12..14] == [0x88, 0xb5])
        .map(|f| {
            let n = u32::from_be_bytes([f[14], f[15], f[16], f[17]]);
            assert_eq!(*f, seq_frame(dst, src, n, LEN), "frame {n} arrived changed");
            n
        })
        .collect()
}

/// Under a guest's traffic the uplink's peer goes down and comes back: the switch sees both
/// (line, counters, uplink-show, event stream); frames the guest sends while it is down wait
/// in its virtqueue (the switch takes none: none is lost in the dead port) and all leave, in
/// order, once the link is back; the stream then goes on; nothing leaks.
#[test]
fn guest_frames_wait_while_the_uplink_is_down() {
    // A Linux bridge forwards from a port only up to a second after its carrier is back
    // (measured here: frames sent 10-500 ms after were lost in the bridge, none after 1 s).
    let dir = tempfile::tempdir().expect("tempdir");
    let scrape = dir.path().join("metrics.sock");
    let metrics_addr = format!("unix:{}", scrape.display());
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts { app: &["--uplink-up-delay", "1500", "--metrics", &metrics_addr], ..LabOpts::default() });
    let ctl = env.ctl();
    let (events, first) = subscribe(&env, false);
    assert!(first.ends_with(": uplink link up (10000 Mb/s, full duplex); guests vm1 down"), "{first}");
    let a = env.guest("vm1");
    assert_eq!(next_event(&events), "guest vm1 link up");
    let ext = env.lab.ext_socket();
    let (dst, src) = (env.lab.ext_mac, mac(A));

    // Before: a stream gets through.
    assert_eq!(a.stream(dst, src, LEN, 1000), 1000);
    // Read once the switch has sent them all (a quiet gap then ends the read, not a guess).
    let sent_all = |n: u64| common::identity::wait_stats(&ctl, WAIT, |v| v["uplink"]["tx_packets"] == n);
    sent_all(1000);
    let got = ext.collect_incoming(Duration::from_millis(700));
    assert_eq!(seqs(&got, dst, src), (0..1000).collect::<Vec<_>>(), "before the link goes down");

    env.lab.set_uplink_peer(false);
    env.switch().proc.wait_line("uplink: link down", WAIT);
    assert_eq!(next_event(&events), "uplink link down");
    let link = ctl.json(&["uplink-show"])["link"].clone();
    assert_eq!((link["state"].as_str(), link["changes"].as_u64(), link["kernel_interface"].as_str()), (Some("down"), Some(1), Some("mvtup0")), "{link}");
    assert_eq!((link["detection"].as_str(), link["up_delay_ms"].as_u64()), (Some("polling"), Some(1500)), "{link}");

    // While down: 100 frames go into the guest's virtqueue (it holds 256)...
    assert_eq!(a.stream_from(dst, src, LEN, 100, 1000), 100);
    // ...and two publications later every worker has run a whole pass after they were
    // posted (each adopts at the top of a pass), so had it taken them, the counters would say.
    ctl.json(&["guest-add", "--name", "vm9", "--mac", "52:54:00:00:00:09", "--socket", &env.sock("vm9").display().to_string()]);
    ctl.json(&["guest-del", "vm9"]);
    assert_eq!(next_event(&events), "guest vm9 added");
    assert_eq!(next_event(&events), "guest vm9 removed");
    let s = ctl.json(&["stats"]);
    assert_eq!(guest_stats(&s, "vm1")["rx_packets"], 1000, "the switch took frames from the guest while the link was down: {s}");
    assert_eq!(s["uplink"]["tx_packets"], 1000, "{s}");
    assert_eq!(total_drops(&s["uplink"]) + total_drops(guest_stats(&s, "vm1")), 0, "{s}");
    assert_eq!((s["uplink_link"]["state"].as_str(), s["uplink_link"]["changes"].as_u64()), (Some("down"), Some(1)), "{s}");
    let port = "{port=\"net_af_packet0\"}";
    assert_eq!(metric(&scrape, &format!("dpdk_macvtap_uplink_link_up{port}")), "0");
    assert_eq!(metric(&scrape, &format!("dpdk_macvtap_uplink_link_changes_total{port}")), "1");

    env.lab.set_uplink_peer(true);
    env.switch().proc.wait_line("uplink: link up (10000 Mb/s, full duplex)", WAIT);
    assert_eq!(next_event(&events), "uplink link up (10000 Mb/s, full duplex)");
    // The 100 that waited leave now, all of them, in order; then the stream goes on.
    sent_all(1100);
    let waited = ext.collect_incoming(Duration::from_millis(1000));
    assert_eq!(seqs(&waited, dst, src), (1000..1100).collect::<Vec<_>>(), "the frames that waited in the virtqueue: {}", ctl.json(&["stats"]));
    // The link-up handler re-announced the guest's MAC (a RARP from it, to broadcast).
    assert!(
        waited.iter().any(|f| f.len() >= 14 && f[0..6] == [0xff; 6] && f[6..12] == src && f[12..14] == [0x80, 0x35]),
        "no RARP re-announcing the guest's MAC after the link came back"
    );
    assert_eq!(a.stream_from(dst, src, LEN, 1000, 1100), 1000);
    sent_all(2100);
    let after = ext.collect_incoming(Duration::from_millis(700));
    assert_eq!(seqs(&after, dst, src), (1100..2100).collect::<Vec<_>>(), "after the link came back");

    assert_eq!(metric(&scrape, &format!("dpdk_macvtap_uplink_link_up{port}")), "1");
    assert_eq!(metric(&scrape, &format!("dpdk_macvtap_uplink_link_changes_total{port}")), "2");
    a.quit();
    assert_eq!(next_event(&events), "guest vm1 link down");
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], 2100, "{v}");
    assert_eq!(v["uplink"]["tx_packets"], 2100, "{v}");
    assert_eq!(drops(&v["uplink"], "uplink_down"), 0, "the guest was idle when the link went: nothing was held: {v}");
    assert_eq!((v["uplink_link"]["state"].as_str(), v["uplink_link"]["changes"].as_u64()), (Some("up"), Some(2)), "{v}");
    let mut events = events;
    assert_eq!(events.wait_exit(WAIT), 1, "the client ends with the switch\n{}", events.report());
    assert_eq!(events.stdout_lines().len(), 7, "the state line and exactly 6 events\n{}", events.report());
}

/// `events --json`: exactly the events of a guest added over the socket, its guest
/// connecting and leaving, its removal, and a guest added by a reload, in order, as JSON-RPC
/// notifications; the client ends (status 1) when the switch stops.
#[test]
fn event_stream_reports_guests_in_order() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    let (mut events, first) = subscribe(&env, true);
    let reply: serde_json::Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert_eq!(reply["id"], 1, "{reply}");
    assert_eq!(reply["result"]["subscribed"], true, "{reply}");
    assert_eq!(reply["result"]["guests"], serde_json::json!([{ "guest": "vm1", "state": "down" }]), "{reply}");
    assert_eq!(reply["result"]["uplink"]["state"], "up", "{reply}");

    let sock = env.sock("vm2");
    ctl.json(&["guest-add", "--name", "vm2", "--mac", "52:54:00:00:00:02", "--socket", &sock.display().to_string()]);
    let g = Guest::start(&sock, "vm2");
    env.switch().proc.wait_line("guest vm2: link up", WAIT);
    g.quit();
    env.switch().proc.wait_line("guest vm2: link down", WAIT);
    ctl.json(&["guest-del", "vm2"]);
    let text = std::fs::read_to_string(env.guests_file()).expect("guests file");
    let vm3 = format!("[[guest]]\nname = \"vm3\"\nmac = \"52:54:00:00:00:03\"\nsocket = \"{}\"\n", env.sock("vm3").display());
    std::fs::write(env.guests_file(), format!("{text}\n{vm3}")).expect("guests file");
    ctl.json(&["reload"]);

    let want = [("guest-added", "vm2", None), ("guest-link", "vm2", Some("up")), ("guest-link", "vm2", Some("down")), ("guest-removed", "vm2", None), ("guest-added", "vm3", None)];
    let mut last_time = String::new();
    for (kind, guest, state) in want {
        let line = events.next_line(WAIT).unwrap_or_else(|| panic!("no {kind} {guest} event\n{}", events.report()));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!((v["jsonrpc"].as_str(), v["method"].as_str(), v.get("id")), (Some("2.0"), Some("event"), None), "{line}");
        let p = &v["params"];
        assert_eq!((p["event"].as_str(), p["guest"].as_str(), p["state"].as_str()), (Some(kind), Some(guest), state), "{line}");
        let time = p["time"].as_str().unwrap_or_default().to_owned();
        assert!(time >= last_time, "events out of time order: {last_time} then {time}");
        last_time = time;
    }

    env.stop();
    let code = events.wait_exit(WAIT);
    assert_eq!(code, 1, "the client says the stream ended\n{}", events.report());
    // Only those events, to the end of the stream: the subscription's line and five.
    assert_eq!(events.stdout_lines().len(), 6, "{}", events.report());
    assert!(events.stderr_lines().iter().any(|l| l.contains("the switch closed the event stream")), "{}", events.report());
}

/// The link drops and returns in the middle of a guest's stream (no up delay): the guest's
/// stream stalls while it is down and then completes; every frame the switch took from the
/// guest is accounted for on the uplink, sent or counted as `uplink_down`.
#[test]
fn a_flap_under_a_stream_loses_no_frame_uncounted() {
    const TOTAL: u32 = 100_000;
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    let a = env.guest("vm1");
    let (dst, src) = (env.lab.ext_mac, mac(A));
    // A guest is not Sync: the streaming thread owns it and hands it back.
    let (a, sent) = std::thread::scope(|s| {
        let streaming = s.spawn(move || {
            let n = a.stream(dst, src, LEN, TOTAL);
            (a, n)
        });
        // Well into the stream.
        common::identity::wait_stats(&ctl, WAIT, |v| v["uplink"]["tx_packets"].as_u64().unwrap_or(0) >= u64::from(TOTAL) / 10);
        env.lab.set_uplink_peer(false);
        env.switch().proc.wait_line("uplink: link down", WAIT);
        let during = ctl.json(&["stats"]);
        env.lab.set_uplink_peer(true);
        env.switch().proc.wait_line("uplink: link up", WAIT);
        let done = streaming.join().expect("the guest's stream");
        assert!(during["uplink"]["tx_packets"].as_u64() < Some(u64::from(TOTAL)), "the flap came after the stream: {during}");
        done
    });
    assert_eq!(sent, TOTAL, "the guest's stream completed");
    // "sent" means in the guest's virtqueue; the switch may still be taking the last of them
    // (the stream runs against backpressure), and a guest that quits stops its queue.
    common::identity::wait_stats(&ctl, WAIT, |v| guest_stats(v, "vm1")["rx_packets"].as_u64() == Some(u64::from(TOTAL)));
    a.quit();
    let v = env.stop();
    let out = v["uplink"]["tx_packets"].as_u64().unwrap_or(0) + drops(&v["uplink"], "uplink_down");
    let taken = guest_stats(&v, "vm1")["rx_packets"].as_u64().unwrap_or(0);
    assert_eq!(taken, u64::from(TOTAL), "every frame left the guest: {v}");
    assert_eq!(out, taken, "sent or counted as uplink_down: {v}");
    assert_eq!(total_drops(&v["uplink"]), drops(&v["uplink"], "uplink_down"), "{v}");
    assert_eq!(v["uplink_link"]["changes"], 2, "{v}");
}
