//! Running the switch as a host service: the metrics endpoint read by Prometheus's own parser,
//! and the systemd notification protocol (`Type=notify`) on a socket the test owns.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{guest_stats, mac, seq_frame, switch_args, Guest, LabOpts, LabSwitch, Switch};

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";

/// One HTTP request on a fresh connection to `path`: the whole answer.
fn http(path: &std::path::Path, request: &[u8]) -> String {
    let mut s = UnixStream::connect(path).expect("connect to the metrics socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    // The server may answer and close before taking all of an oversized request: the
    // unread rest then resets the connection, after the answer.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !out.is_empty() => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every sample of an OpenMetrics document, as Prometheus's Python parser reads it:
/// `name{label=value,...} value` lines, labels sorted.
fn parse(body: &str) -> Vec<String> {
    let script = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value!r}")
"#;
    // Debian's interpreter, where python3-prometheus-client installs the parser.
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(out.status.success(), "the parser refused the document: {}\n{body}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

fn sample(samples: &[String], key: &str) -> f64 {
    let line = samples.iter().find(|l| l.rsplit_once(' ').is_some_and(|(k, _)| k == key)).unwrap_or_else(|| panic!("no sample {key} in\n{}", samples.join("\n")));
    line.rsplit_once(' ').and_then(|(_, v)| v.parse().ok()).unwrap_or_else(|| panic!("bad value in {line}"))
}

#[test]
fn metrics_parse_and_equal_the_switchs_own_counters() {
    let dir_metrics = tempfile::tempdir().expect("tempdir");
    let sock = dir_metrics.path().join("metrics.sock");
    let metrics_arg = format!("unix:{}", sock.display());
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts { app: &["--metrics", &metrics_arg], ..LabOpts::default() });
    let ctl = env.ctl();
    let (g1, g2) = (env.guest("vm1"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;
    // Traffic both ways, and a drop of each kind a guest and the uplink can show here.
    for _ in 0..50 {
        ext.send(&seq_frame(mac(A), ext_mac, 0, 100));
    }
    ext.send(&seq_frame([0x52, 0x54, 0, 0, 0, 0x77], ext_mac, 0, 60));
    assert_eq!(g2.send(&seq_frame(ext_mac, mac(B), 0, 80), 30), 30);
    assert_eq!(g2.send(&seq_frame(ext_mac, [0x52, 0x54, 0, 0, 0, 0x66], 0, 80), 2), 2);
    assert_eq!(g1.count(300).0, 50);
    // Nothing moves any more once the counters say so: then both reads see the same moment.
    common::identity::wait_stats(&ctl, Duration::from_secs(10), |s| {
        s["uplink"]["tx_packets"] == 30 && s["uplink"]["rx_packets"] == 51 && guest_stats(s, "vm2")["drops"]["spoofed_source"] == 2
    });
    // The same moment for both reads: the stats before and after the scrape agree (a worker
    // publishes its loop counters every few passes, so those may still move once).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (stats, answer) = loop {
        let before = ctl.json(&["stats"]);
        let answer = http(&sock, b"GET /metrics HTTP/1.1\r\nHost: switch\r\n\r\n");
        let after = ctl.json(&["stats"]);
        if before["workers"][0]["frames"] == after["workers"][0]["frames"] && before["guests"] == after["guests"] && before["uplink"] == after["uplink"] {
            break (after, answer);
        }
        assert!(Instant::now() < deadline, "the counters kept moving: {before} / {after}");
    };
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Type: application/openmetrics-text"), "{head}");
    let samples = parse(body);
    let ver = samples.iter().find(|l| l.starts_with("dpdk_macvtap_info{")).expect("info");
    assert!(ver.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))) && ver.contains("dpdk=DPDK 22.11"), "{ver}");
    assert_eq!(ver.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()), Some(1.0), "{ver}");
    for (g, name) in [("vm1", "vm1"), ("vm2", "vm2")] {
        let js = guest_stats(&stats, name);
        for (metric, field) in [("rx_packets_total", "rx_packets"), ("rx_bytes_total", "rx_bytes"), ("tx_packets_total", "tx_packets"), ("tx_bytes_total", "tx_bytes")] {
            let want = js[field].as_u64().expect("counter") as f64;
            assert_eq!(sample(&samples, &format!("dpdk_macvtap_guest_{metric}{{guest={g}}}")), want, "{g} {metric}");
        }
        for (metric, field) in [("forwarded_total", "forwarded"), ("copies_total", "copies"), ("local_total", "local")] {
            let want = js[field].as_u64().expect("counter") as f64;
            assert_eq!(sample(&samples, &format!("dpdk_macvtap_guest_{metric}{{guest={g}}}")), want, "{g} {metric}");
        }
        for dir in ["rx", "tx"] {
            for (reason, n) in js[format!("{dir}_drops")].as_object().expect("drops") {
                let want = n.as_u64().expect("drop counter") as f64;
                assert_eq!(sample(&samples, &format!("dpdk_macvtap_guest_{dir}_drops_total{{guest={g},reason={reason}}}")), want, "{g} {dir} {reason}");
            }
        }
        assert_eq!(sample(&samples, &format!("dpdk_macvtap_guest_link_up{{guest={g}}}")), 1.0);
    }
    assert_eq!(sample(&samples, "dpdk_macvtap_guest_rx_drops_total{guest=vm2,reason=spoofed_source}"), 2.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_guest_tx_drops_total{guest=vm2,reason=spoofed_source}"), 0.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_rx_packets_total{port=net_af_packet0}"), 51.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_tx_packets_total{port=net_af_packet0}"), 30.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_rx_drops_total{reason=unknown_dest}"), 1.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_tx_drops_total{reason=uplink_full}"), 0.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_forwarded_total{port=net_af_packet0}"), stats["uplink"]["forwarded"].as_u64().expect("forwarded") as f64);
    assert_eq!(sample(&samples, "dpdk_macvtap_uplink_link_up{port=net_af_packet0}"), 1.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_guests{}"), 2.0);
    assert!(sample(&samples, "dpdk_macvtap_lcore_busy_seconds_total{lcore=1}") > 0.0);
    assert_eq!(sample(&samples, "dpdk_macvtap_lcore_frames_total{lcore=1}"), stats["workers"][0]["frames"].as_u64().expect("frames") as f64);
    assert!(sample(&samples, "dpdk_macvtap_mempool_size{}") > 0.0);

    // What is not a scrape gets an error and costs nothing.
    assert!(http(&sock, b"GET /nothing HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(http(&sock, b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
    assert!(http(&sock, b"garbage\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(http(&sock, &vec![b'x'; 20_000]).starts_with("HTTP/1.1 431 "));
    // 40 connections that never send a request, still open during a scrape: the oldest make
    // way, the scrape is answered.
    let idle: Vec<UnixStream> = (0..40).map(|_| UnixStream::connect(&sock).expect("connect")).collect();
    assert!(http(&sock, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 OK"));
    drop(idle);
    g1.quit();
    g2.quit();
    env.stop();
    assert!(!sock.exists(), "the metrics socket is removed at exit");
}

/// The next datagram on the notify socket, as text (a signal to the test process cuts a wait
/// short: it goes on waiting).
fn receive(notify: &UnixDatagram, buf: &mut [u8]) -> String {
    loop {
        match notify.recv(buf) {
            Ok(n) => return String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no notification: {e}"),
        }
    }
}

#[test]
fn systemd_hears_ready_once_the_switch_forwards_and_stopping_on_sigterm() {
    common::require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = dir.path().join("guests.toml");
    std::fs::write(&guests, format!("[[guest]]\nname = \"vm1\"\nmac = \"{A}\"\nsocket = \"{}/vm1.sock\"\n", dir.path().display())).expect("guests.toml");
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let json = dir.path().join("stats.json");
    let sw = Switch::spawn_env(None, &["--vdev=net_null0,no-rx=1".into()], &switch_args(&guests, &json, 0), &[("NOTIFY_SOCKET", notify_path.to_str().expect("path"))]);
    let mut buf = [0u8; 4096];
    let msg = receive(&notify, &mut buf);
    // Sent only once the guest's socket exists and the workers run.
    assert!(dir.path().join("vm1.sock").exists(), "READY before the guest's socket exists: {msg}");
    // Printed before READY was sent, so it is in the pipe already.
    sw.proc.wait_line("dpdk-macvtap: forwarding (1 guests, 1 workers)", Duration::from_secs(5));
    let lines: Vec<&str> = msg.lines().collect();
    assert!(lines.contains(&"READY=1") && lines.contains(&"STATUS=forwarding: 1 guests (0 up), 1 workers"), "{msg:?}");
    // A guest connecting changes the status line.
    let g = Guest::start(&dir.path().join("vm1.sock"), "ntf");
    // One state per line (the protocol's newline-separated assignments).
    let mut next = || receive(&notify, &mut buf).trim_end().to_owned();
    assert_eq!(next(), "STATUS=forwarding: 1 guests (1 up), 1 workers");
    g.quit();
    assert_eq!(next(), "STATUS=forwarding: 1 guests (0 up), 1 workers");
    sw.proc.signal(libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    let out = sw.stop_clean_after_signal();
    assert!(out.contains("dpdk-macvtap: stopped"), "{out}");
}

/// `dpdk-macvtapctl top --once`: every guest with its rates while traffic flows to one.
#[test]
fn top_once_prints_every_guest_with_its_rate() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts::default());
    let ctl = env.ctl();
    let (g1, g2) = (env.guest("vm1"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;
    let done = std::sync::atomic::AtomicBool::new(false);
    let done = &done;
    let (human, json, g1) = std::thread::scope(|s| {
        let reader = s.spawn(move || {
            g1.count(1500);
            g1
        });
        let ext = &ext;
        let sender = s.spawn(move || {
            // Frames to vm1 until both views are taken (each spans one second).
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..16 {
                    ext.send(&seq_frame(mac(A), ext_mac, 0, 64));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let human = ctl.run(&["top", "--once"]);
        let json = ctl.json(&["top", "--once"]);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        sender.join().expect("sender");
        (human, json, reader.join().expect("reader"))
    });
    assert_eq!(human.code, 0, "{}{}", human.stdout, human.stderr);
    for name in ["(uplink)", "vm1", "vm2"] {
        assert!(human.stdout.lines().any(|l| l.starts_with(name)), "no row for {name}:\n{}", human.stdout);
    }
    let vm1 = human.stdout.lines().find(|l| l.starts_with("vm1")).expect("vm1 row");
    let cols: Vec<&str> = vm1.split_whitespace().collect();
    assert_eq!(cols[1], "up", "{vm1}");
    assert_ne!(cols[4], "0", "vm1 receives frames, its TX-PPS (to the guest) is not 0: {vm1}\n{}", human.stdout);
    let guests = json["guests"].as_array().expect("guests");
    let rate = |n: &str| guests.iter().find(|g| g["name"] == n).and_then(|g| g["tx_pps"].as_f64()).unwrap_or_else(|| panic!("{n} in {json}"));
    assert!(rate("vm1") > 100.0, "{json}");
    assert_eq!(rate("vm2"), 0.0, "{json}");
    g1.quit();
    g2.quit();
    env.stop();
}
