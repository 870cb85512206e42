//! The binary as a whole: command line, config errors, start-up on net_null and net_tap
//! uplinks with vhost-user guests, link events, and a clean, leak-free shutdown.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_dpdk-macvtap");

fn two_guests(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("guests.toml");
    let text = format!(
        "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"{0}/vm1.sock\"\n\n\
         [[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"{0}/vm2.sock\"\nsocket_mode = \"0600\"\n",
        dir.display()
    );
    std::fs::write(&path, text).expect("writing guests.toml");
    path
}

#[test]
fn help_and_version_work_without_eal() {
    let out = Command::new(BIN).arg("--help").output().expect("running --help");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--guests <GUESTS>"), "{text}");
    assert!(text.contains("EAL options go before `--`"), "{text}");
    let out = Command::new(BIN).arg("--version").output().expect("running --version");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("built against DPDK 22.11"), "{text}");
}

#[test]
fn bad_guests_file_names_file_line_and_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guests.toml");
    std::fs::write(&path, "[[guest]]\nname = \"vm1\"\nmac = \"01:00:5e:00:00:01\"\nsocket = \"/tmp/x.sock\"\n").expect("write");
    let out = Command::new(BIN)
        .args(["--no-huge", "--", "--port", "0", "--guests"])
        .arg(&path)
        .output()
        .expect("running the binary");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3", path.display())), "{err}");
    assert!(err.contains("01:00:5e:00:00:01"), "{err}");
    assert!(err.contains("vm1"), "{err}");
}

#[test]
fn a_single_lcore_is_refused_with_advice() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = two_guests(dir.path());
    let prefix = unique("one");
    let mut cmd = Command::new(BIN);
    cmd.args(eal_test_args())
        .arg(format!("--file-prefix={prefix}"))
        .args(["-l", "0", "--vdev=net_null0", "--", "--port", "0", "--no-control", "--guests"])
        .arg(&guests);
    let out = common::run_to_exit(&mut cmd, &prefix);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no worker lcore"), "{err}");
}

/// net_null as the uplink (it also floods the switch with frames of its own, which must be
/// counted and freed), two guests, one of them connecting and leaving.
#[test]
fn null_uplink_guest_link_events_and_clean_exit() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = two_guests(dir.path());
    let json = dir.path().join("stats.json");
    let sw = Switch::start(None, &["--vdev=net_null0".into()], &switch_args(&guests, &json, 1));
    let mode = std::fs::metadata(dir.path().join("vm2.sock")).expect("vm2 socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket_mode applied to vm2's socket");
    let mode = std::fs::metadata(dir.path().join("vm1.sock")).expect("vm1 socket").permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "default socket_mode");

    let g = Guest::start(&dir.path().join("vm1.sock"), "g1");
    sw.proc.wait_line("guest vm1: link up", Duration::from_secs(30));
    sw.proc.wait_line("stats:", Duration::from_secs(10));
    // SIGUSR1 writes the counters without stopping anything.
    sw.proc.signal(libc::SIGUSR1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !json.exists() {
        assert!(std::time::Instant::now() < deadline, "no stats JSON after SIGUSR1");
        std::thread::sleep(Duration::from_millis(20));
    }
    let live = stats_json(&json);
    assert_eq!(live["mempool_in_use_at_exit"], serde_json::Value::Null, "a live dump, not the exit one: {live}");
    assert_eq!(live["guests"][0]["link_up"], true, "{live}");
    g.quit();
    sw.proc.wait_line("guest vm1: link down", Duration::from_secs(30));

    sw.stop_clean();
    let v = stats_json(&json);
    assert_eq!(v["mempool_in_use_at_exit"], 0);
    assert!(v["uplink"]["rx_packets"].as_u64().unwrap_or(0) > 0, "net_null produced frames: {v}");
}

/// net_tap as the uplink, inside a private namespace (the PMD creates the tap there).
#[test]
fn tap_uplink_starts_forwards_and_stops_cleanly() {
    require_root();
    let ns = Netns::new(&format!("mvt-{}", unique("tap")));
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = two_guests(dir.path());
    let json = dir.path().join("stats.json");
    let sw = Switch::start(Some(&ns), &["--vdev=net_tap0,iface=mvttap0".into()], &switch_args(&guests, &json, 1));
    let g1 = Guest::start(&dir.path().join("vm1.sock"), "g1");
    let g2 = Guest::start(&dir.path().join("vm2.sock"), "g2");
    sw.proc.wait_line("guest vm2: link up", Duration::from_secs(30));
    // Both guests send; the tap has no peer, so the frames leave and are gone, but they must
    // be counted as sent on the uplink.
    let f = frame(BROADCAST, mac("52:54:00:00:00:01"), TEST_ETHERTYPE, 50, 1);
    assert_eq!(g1.send(&f, 10), 10);
    let f = frame(BROADCAST, mac("52:54:00:00:00:02"), TEST_ETHERTYPE, 50, 2);
    assert_eq!(g2.send(&f, 5), 5);
    // The guests quit once the switch says all 15 left (a frame still in a virtqueue when
    // its guest exits is not the switch's).
    let ctl = Ctl::new(&control_socket(&guests));
    common::identity::wait_stats(&ctl, Duration::from_secs(10), |v| v["uplink"]["tx_packets"] == 15);
    g1.quit();
    g2.quit();
    sw.stop_clean();
    let v = stats_json(&json);
    assert_eq!(v["uplink"]["tx_packets"], 15, "{v}");
}

#[test]
fn pinning_a_guest_to_a_non_worker_lcore_is_refused_with_its_line() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("guests.toml");
    std::fs::write(&path, format!("[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"{}/vm1.sock\"\nlcore = 0\n", dir.path().display())).expect("write");
    let prefix = unique("pin");
    let mut cmd = Command::new(BIN);
    cmd.args(eal_test_args())
        .arg(format!("--file-prefix={prefix}"))
        .args(["-l", "0-1", "--vdev=net_null0", "--", "--port", "0", "--no-control", "--guests"])
        .arg(&path);
    let out = common::run_to_exit(&mut cmd, &prefix);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:1: guest \"vm1\": lcore = 0 is not a forwarding lcore (workers: 1)", path.display())),
        "{err}"
    );
}

/// Every numeric option at its edges: the smallest and largest accepted pass the command line
/// (the run then stops at the missing guests file, exit 1), one past either side is refused by
/// the parser with the range (exit 2), and nothing panics.
#[test]
fn every_numeric_option_is_range_checked_at_its_edges() {
    let cases: [(&str, &[&str], &[&str]); 7] = [
        ("--stats-interval", &["0", "86400"], &["86401", "18446744073709551615", "-1"]),
        ("--rebalance-interval", &["1", "86400"], &["0", "86401", "18446744073709551615"]),
        ("--mbufs", &["1023", "16777215"], &["1022", "16777216", "4294967296"]),
        ("--uplink-mtu", &["68", "9000"], &["67", "9001", "65535", "65536"]),
        ("--descriptors", &["64", "4096"], &["63", "4097", "65536"]),
        ("--idle-sleep-max", &["0", "10000"], &["10001", "4294967296"]),
        ("--control-mode", &["0", "777"], &["1000", "8", "rw"]),
    ];
    for (opt, good, bad) in cases {
        for v in good {
            let out = Command::new(BIN).args(["--", "--port", "0", "--guests", "/nonexistent/guests.toml", opt, v]).output().expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{opt} {v} should pass the command line: {err}");
            assert!(err.contains("/nonexistent/guests.toml: cannot read"), "{opt} {v}: {err}");
        }
        for v in bad {
            // `--opt=value`, so that a value starting with '-' is still the option's.
            let arg = format!("{opt}={v}");
            let out = Command::new(BIN).args(["--", "--port", "0", "--guests", "/nonexistent/guests.toml", &arg]).output().expect("run");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{opt} {v} should be refused: {err}");
            assert!(err.contains(&format!("invalid value '{v}' for '{opt}")), "{opt} {v}: {err}");
            assert!(!err.contains("panicked"), "{opt} {v}: {err}");
        }
    }
}

/// A pool too small for what the queues and lcores can hold at once is refused at start, with
/// the numbers; without --mbufs the switch sizes the pool itself.
#[test]
fn a_pool_too_small_for_the_queues_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = two_guests(dir.path());
    let prefix = unique("pool");
    let mut cmd = Command::new(BIN);
    cmd.args(eal_test_args())
        .arg(format!("--file-prefix={prefix}"))
        .args(["-l", "0-1", "--vdev=net_null0,no-rx=1", "--", "--port", "0", "--no-control", "--mbufs", "1023", "--guests"])
        .arg(&guests);
    let out = common::run_to_exit(&mut cmd, &prefix);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--mbufs 1023 is too few: up to 3711 packet buffers can be out of the pool at once (uplink rx rings 1024 + tx rings 1024 + rings between workers 0 + held by workers 352 + frames the switch sends 543 + lcore caches 768 + source-mode copies 0)"),
        "{err}"
    );
}

/// A source-mode guest's copies are buffers of the switch's own: a switch started with exactly
/// the pool its guests need refuses, whole, a source-mode guest it would need more for,
/// naming the numbers; a guest in another mode needs none.
#[test]
fn a_source_mode_guest_the_pool_cannot_hold_is_refused_with_the_numbers() {
    require_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let guests = two_guests(dir.path());
    let json = dir.path().join("stats.json");
    let mut app = switch_args(&guests, &json, 0);
    let eal = ["--vdev=net_null0,no-rx=1".to_string()];
    // The exact worst case, from the refusal of a pool one buffer too small.
    let mut short = Switch::spawn(None, &eal, &[app.clone(), vec!["--mbufs".into(), "1023".into()]].concat());
    assert_eq!(short.proc.wait_exit(Duration::from_secs(20)), 1);
    let err = short.proc.stderr_lines().join("\n");
    let need: u64 = err.split("up to ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no figure in {err}"));
    app.extend(["--mbufs".to_string(), need.to_string()]);
    let sw = Switch::start(None, &eal, &app);
    let ctl = Ctl::new(&control_socket(&guests));
    let sock = |n: &str| dir.path().join(format!("{n}.sock")).display().to_string();
    let e = ctl.refused(&["guest-add", "--name", "mon", "--mac", "52:54:00:00:00:03", "--socket", &sock("mon"), "--mode", "source", "--sources", "52:54:00:00:00:09"]);
    let want = format!("the packet pool has {need} buffers, and with these source-mode guests up to {} can be out of it at once (", need + 32);
    assert!(e.contains(&want) && e.contains(" + source-mode copies 32): restart with --mbufs "), "expected {want:?} in {e}");
    assert!(!std::path::Path::new(&sock("mon")).exists(), "the refused guest's socket");
    assert_eq!(ctl.json(&["guest-add", "--name", "vm3", "--mac", "52:54:00:00:00:03", "--socket", &sock("vm3")])["added"], "vm3");
    sw.stop_clean();
}
