//! The runtime control plane end to end: the real switch in the hairpin lab, real virtio-user
//! guests, and the real `dpdk-macvtapctl` on its control socket. Guests are added, removed
//! and changed while others stream, and every frame is accounted for.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{drops, guest_stats, guest_toml, mac, seq_frame, total_drops, Guest, LabOpts, LabSwitch};

const A: &str = "52:54:00:00:00:01";
const B: &str = "52:54:00:00:00:02";
const C: &str = "52:54:00:00:00:03";
const D: &str = "52:54:00:00:00:04";
/// Frames per `stream` command of a guest.
const CHUNK: u32 = 5_000;

/// Polls `cond` until it holds or `within` passes; fails with `what` and the last value seen.
fn wait_for<T: std::fmt::Debug>(what: &str, within: Duration, mut probe: impl FnMut() -> T, cond: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + within;
    loop {
        let v = probe();
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: still {v:?} after {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A guest streams to `dst` in chunks, one sequence per source MAC, until `stop` is set and
/// two more chunks went; returns the frames it sent.
fn stream_until(g: &Guest, dst: [u8; 6], src: [u8; 6], stop: &AtomicBool) -> u64 {
    let (mut sent, mut after) = (0u64, 0);
    while after < 2 {
        sent += u64::from(g.stream_from(dst, src, 64, CHUNK, sent as u32));
        if stop.load(Ordering::Relaxed) {
            after += 1;
        }
    }
    sent
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array().expect("guest-list is an array").iter().map(|g| g["name"].as_str().expect("name").to_owned()).collect()
}

#[test]
fn a_guest_added_while_two_stream_both_ways_costs_them_nothing() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts::default());
    let ctl = env.ctl();
    let (g1, g2) = (env.guest("vm1"), env.guest("vm2"));
    let ext_mac = env.lab.ext_mac;
    let ext = env.lab.ext_socket();
    let added = AtomicBool::new(false);
    let to_guests = AtomicU64::new(0);
    const EACH: u32 = 12_000;
    let (added, to_guests) = (&added, &to_guests);
    let ((g1, s1), (g2, s2)) = std::thread::scope(|s| {
        // A guest is not Sync: each streaming thread owns its guest and hands it back.
        let t1 = s.spawn(move || {
            let n = stream_until(&g1, ext_mac, mac(A), added);
            (g1, n)
        });
        let t2 = s.spawn(move || {
            let n = stream_until(&g2, ext_mac, mac(B), added);
            (g2, n)
        });
        let tx = s.spawn(|| {
            let frames = (0..EACH).flat_map(|i| [seq_frame(mac(A), ext_mac, i, 64), seq_frame(mac(B), ext_mac, i, 64)]);
            ext.send_paced(frames, Some(to_guests))
        });
        // The add lands in the middle of both streams.
        wait_for("frames towards the guests", Duration::from_secs(30), || to_guests.load(Ordering::Relaxed), |&n| n >= u64::from(EACH) / 2);
        let r = ctl.json(&["guest-add", "--toml", &guest_toml(env.dir.path(), "vm3", C, "")]);
        assert_eq!(r["added"], "vm3", "{r}");
        // The guests stop streaming (and so reading while they send) only once everything
        // from the external host is on its way.
        tx.join().expect("external sender");
        added.store(true, Ordering::Relaxed);
        (t1.join().expect("vm1 stream"), t2.join().expect("vm2 stream"))
    });
    // Everything from the external host arrived at vm1 and vm2, once each and in order.
    for (g, name) in [(&g1, "vm1"), (&g2, "vm2")] {
        let got = g.seqcheck(1000);
        assert_eq!((got.frames, got.flows, got.gaps, got.late), (u64::from(EACH), 1, 0, 0), "{name}: {got:?}");
    }
    // The new guest connects and receives its frames.
    let out = env.switch().proc.wait_line("guest vm3: ", Duration::from_secs(10));
    assert!(out.contains("mac 52:54:00:00:00:03") && out.ends_with("(added)"), "{out}");
    let g3 = env.guest("vm3");
    let (g3, (), got) = g3.receive_while(1000, || ext.send_paced((0..500).map(|i| seq_frame(mac(C), ext_mac, i, 64)), None));
    assert_eq!((got.frames, got.gaps, got.late), (500, 0, 0), "vm3: {got:?}");
    let list = ctl.json(&["guest-list"]);
    assert_eq!(names(&list), ["vm1", "vm2", "vm3"]);
    for g in [g1, g2, g3] {
        g.quit();
    }
    let v = env.stop();
    // Every frame the streaming guests sent left the uplink, across the add.
    assert_eq!(v["uplink"]["tx_packets"], s1 + s2, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], s1, "{v}");
    assert_eq!(guest_stats(&v, "vm2")["rx_packets"], s2, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(EACH), "{v}");
    assert_eq!(guest_stats(&v, "vm3")["tx_packets"], 500, "{v}");
    assert_eq!(total_drops(&v["uplink"]), 0, "{v}");
    for n in ["vm1", "vm2", "vm3"] {
        assert_eq!(total_drops(guest_stats(&v, n)), 0, "{n}: {v}");
    }
}

#[test]
fn a_removed_guest_accounts_for_every_frame_and_its_socket_goes() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts::default());
    let ctl = env.ctl();
    let (g1, g2) = (env.guest("vm1"), env.guest("vm2"));
    let ext_mac = env.lab.ext_mac;
    let ext = env.lab.ext_socket();
    const EACH: u32 = 10_000;
    let sent = AtomicU64::new(0);
    let (removed, (g1, got1), (g2, got2)) = std::thread::scope(|s| {
        let tx = s.spawn(|| {
            let frames = (0..EACH).flat_map(|i| [seq_frame(mac(A), ext_mac, i, 64), seq_frame(mac(B), ext_mac, i, 64)]);
            ext.send_paced(frames, Some(&sent))
        });
        // Both keep reading; vm2 while it is removed.
        let reader1 = s.spawn(move || {
            let got = g1.seqcheck(1000);
            (g1, got)
        });
        let reader = s.spawn(move || {
            let got = g2.seqcheck(3000);
            (g2, got)
        });
        wait_for("frames towards the guests", Duration::from_secs(30), || sent.load(Ordering::Relaxed), |&n| n >= u64::from(EACH));
        let removed = ctl.json(&["guest-del", "vm2"]);
        tx.join().expect("external sender");
        (removed, reader1.join().expect("vm1 reader"), reader.join().expect("vm2 reader"))
    });
    assert_eq!(removed["removed"], "vm2", "{removed}");
    let last = &removed["counters"];
    // Its socket is gone, and the switch no longer knows it.
    assert!(!env.sock("vm2").exists(), "vm2's socket is still there");
    assert!(ctl.refused(&["guest-show", "vm2"]).contains("guest \"vm2\" does not exist"));
    assert_eq!(names(&ctl.json(&["guest-list"])), ["vm1"]);
    // The other guest lost nothing and saw no reordering.
    assert_eq!((got1.frames, got1.gaps, got1.late), (u64::from(EACH), 0, 0), "vm1: {got1:?}");
    // vm2 got nothing the switch did not deliver to it, in order.
    let delivered = last["tx_packets"].as_u64().expect("tx_packets");
    assert!(got2.frames <= delivered && got2.late == 0, "vm2 read {got2:?}, the switch delivered {delivered}");
    g1.quit();
    drop(g2);
    let v = env.stop();
    // Every frame sent to vm2: delivered before the removal, dropped on vm2 under a reason,
    // or (its MAC no longer known) dropped on the uplink as unknown_dest.
    let unknown = drops(&v["uplink"], "unknown_dest");
    assert_eq!(delivered + total_drops(last) + unknown, u64::from(EACH), "vm2 final {last}, uplink {}", v["uplink"]);
    assert!(unknown > 0, "the removal landed before the stream ended: {v}");
    assert_eq!(total_drops(&v["uplink"]), unknown, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], u64::from(EACH), "{v}");
    assert!(v["guests"].as_array().expect("guests").iter().all(|g| g["name"] != "vm2"), "{v}");
}

#[test]
fn guest_set_of_mtu_and_mode_takes_effect_on_the_next_frame() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts::default());
    env.lab.set_hairpin(true);
    let ctl = env.ctl();
    let (g1, g2) = (env.guest("vm1"), env.guest("vm2"));
    let ext = env.lab.ext_socket();
    let ext_mac = env.lab.ext_mac;
    let big = seq_frame(mac(A), ext_mac, 1, 1000);
    ext.send(&big);
    assert_eq!(g1.recv(2000, 1), vec![big.clone()]);

    // MTU: 900 bytes of payload from now on; the 1000-byte frame is oversize.
    let r = ctl.json(&["guest-set", "vm1", "mtu=900"]);
    assert_eq!(r["keys"], serde_json::json!(["mtu"]), "{r}");
    assert_eq!(ctl.json(&["guest-show", "vm1"])["mtu"], 900);
    ext.send(&big);
    let c = wait_for("vm1 oversize drop", Duration::from_secs(10), || ctl.guest_counters("vm1"), |c| c["drops"]["oversize"] == 1);
    assert_eq!(c["tx_packets"], 1, "{c}");
    let small = seq_frame(mac(A), ext_mac, 2, 800);
    ext.send(&small);
    assert_eq!(g1.recv(2000, 1), vec![small], "a frame within the new MTU still arrives");

    // Mode: vm2's frame to vm1 comes back through the hairpin; vepa takes it, private not.
    let sibling = seq_frame(mac(A), mac(B), 3, 64);
    g2.send(&sibling, 1);
    assert_eq!(g1.recv(2000, 1), vec![sibling.clone()], "vepa: the reflected frame arrives");
    ctl.json(&["guest-set", "vm1", "mode=private"]);
    g2.send(&sibling, 1);
    wait_for("vm1 policy drop", Duration::from_secs(10), || ctl.guest_counters("vm1"), |c| c["drops"]["policy_denied"] == 1);
    assert!(g1.recv(300, 1).is_empty(), "private: a sibling's frame must not arrive");
    // The external host still reaches it.
    let from_ext = seq_frame(mac(A), ext_mac, 4, 64);
    ext.send(&from_ext);
    assert_eq!(g1.recv(2000, 1), vec![from_ext]);

    // What needs a reconnect is refused, and nothing changes.
    let e = ctl.refused(&["guest-set", "vm1", "queues=2"]);
    assert!(e.contains("queues cannot change while the guest is connected"), "{e}");
    let e = ctl.refused(&["guest-set", "vm1", "mtu=99999"]);
    assert!(e.contains("mtu = 99999"), "{e}");
    let e = ctl.refused(&["guest-set", "vm1", "mac=52:54:00:00:00:02"]);
    assert!(e.contains("already used by running guest \"vm2\""), "{e}");
    let show = ctl.json(&["guest-show", "vm1"]);
    assert_eq!((show["mtu"].as_u64(), show["mode"].as_str(), show["queues"].as_u64()), (Some(900), Some("private"), Some(1)), "{show}");
    g1.quit();
    g2.quit();
    let v = env.stop();
    assert_eq!(drops(guest_stats(&v, "vm1"), "oversize"), 1, "{v}");
    assert_eq!(drops(guest_stats(&v, "vm1"), "policy_denied"), 1, "{v}");
}

#[test]
fn reload_applies_a_changed_file_whole_and_refuses_a_bad_one_whole() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, ""), ("vm3", C, "")], LabOpts::default());
    let ctl = env.ctl();
    let g1 = env.guest("vm1");
    let dir = env.dir.path().to_path_buf();
    // vm2 goes, vm3 changes, vm4 comes.
    let file = [guest_toml(&dir, "vm1", A, ""), guest_toml(&dir, "vm3", C, "mtu = 1400\nmode = \"private\""), guest_toml(&dir, "vm4", D, "")].concat();
    std::fs::write(env.guests_file(), &file).expect("guests.toml");
    let r = ctl.json(&["reload"]);
    assert_eq!(r["added"], serde_json::json!(["vm4"]), "{r}");
    assert_eq!(r["removed"], serde_json::json!(["vm2"]), "{r}");
    assert_eq!(r["changed"], serde_json::json!(["vm3"]), "{r}");
    assert_eq!(names(&ctl.json(&["guest-list"])), ["vm1", "vm3", "vm4"]);
    assert!(!env.sock("vm2").exists() && env.sock("vm4").exists());
    let vm3 = ctl.json(&["guest-show", "vm3"]);
    assert_eq!((vm3["mtu"].as_u64(), vm3["mode"].as_str()), (Some(1400), Some("private")), "{vm3}");
    // The new guest forwards.
    let g4 = env.guest("vm4");
    let ext = env.lab.ext_socket();
    let f = seq_frame(mac(D), env.lab.ext_mac, 0, 64);
    ext.send(&f);
    assert_eq!(g4.recv(2000, 1), vec![f]);

    // A bad file: refused with its file and line, and nothing changes.
    let before = ctl.json(&["config-dump"]);
    let bad = [guest_toml(&dir, "vm1", A, ""), guest_toml(&dir, "vm5", A, "")].concat();
    std::fs::write(env.guests_file(), bad).expect("guests.toml");
    let e = ctl.refused(&["reload"]);
    let at = format!("{}:8: guest \"vm5\": mac = \"{A}\": already used by guest \"vm1\" (line 1)", env.guests_file().display());
    assert!(e.contains(&at), "expected {at:?} in {e}");
    assert_eq!(ctl.json(&["config-dump"]), before);
    // SIGHUP, as systemd's ExecReload sends it, reloads the same way.
    env.switch().proc.signal(libc::SIGHUP);
    let line = wait_for("the refusal on stderr", Duration::from_secs(10), || env.switch().proc.stderr_lines(), |l| l.iter().any(|x| x.contains("reload refused, nothing changed")));
    assert!(line.iter().any(|x| x.contains(&at)), "{line:?}");
    assert_eq!(ctl.json(&["config-dump"]), before);
    // A file the switch cannot apply (an MTU above the uplink's, which its packet buffers
    // are sized for) is refused whole too, naming the guest's line as validation does.
    let too_big = [guest_toml(&dir, "vm1", A, ""), guest_toml(&dir, "vm3", C, "mtu = 1400\nmode = \"private\""), guest_toml(&dir, "vm4", D, "mtu = 9000")].concat();
    let line = 1 + too_big.lines().enumerate().filter(|(_, l)| *l == "[[guest]]").nth(2).expect("vm4's table").0;
    std::fs::write(env.guests_file(), &too_big).expect("guests.toml");
    let e = ctl.refused(&["reload"]);
    let at = format!("{}:{line}: guest \"vm4\": mtu 9000 is above the uplink MTU 1500", env.guests_file().display());
    assert!(e.contains(&at), "expected {at:?} in {e}");
    assert_eq!(ctl.json(&["config-dump"]), before);
    // And the dump is itself a valid guests file that reloads to the same state.
    std::fs::write(env.guests_file(), before["toml"].as_str().expect("toml")).expect("guests.toml");
    let r = ctl.json(&["reload"]);
    assert_eq!((r["added"].as_array().map(Vec::len), r["removed"].as_array().map(Vec::len), r["changed"].as_array().map(Vec::len)), (Some(0), Some(0), Some(0)), "{r}");
    g1.quit();
    g4.quit();
    env.stop();
}

/// A reload that spells a guest's socket path another way (the same file) re-creates the
/// guest there: its old socket goes first, so the new one is not taken for another
/// process's, and what is left on that path is the new guest's socket, which serves.
#[test]
fn a_reload_that_respells_a_socket_path_recreates_the_guest_on_that_file() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "")], LabOpts::default());
    let ctl = env.ctl();
    let dir = env.dir.path().to_path_buf();
    let leaf = dir.file_name().and_then(|n| n.to_str()).expect("the lab's directory name");
    let respelt = format!("[[guest]]\nname = \"vm2\"\nmac = \"{B}\"\nsocket = \"{}/../{leaf}/vm2.sock\"\n", dir.display());
    std::fs::write(env.guests_file(), [guest_toml(&dir, "vm1", A, ""), respelt].concat()).expect("guests.toml");
    let r = ctl.json(&["reload"]);
    assert_eq!((&r["recreated"], &r["failed"]), (&serde_json::json!(["vm2"]), &serde_json::json!([])), "{r}");
    assert_eq!(names(&ctl.json(&["guest-list"])), ["vm1", "vm2"]);
    assert!(env.sock("vm2").exists(), "vm2's socket is gone after the reload");
    let g2 = env.guest("vm2");
    let f = seq_frame(mac(B), env.lab.ext_mac, 0, 64);
    env.lab.ext_socket().send(&f);
    assert_eq!(g2.recv(2000, 1), vec![f]);
    g2.quit();
    let v = env.stop();
    assert_eq!(guest_stats(&v, "vm2")["tx_packets"], 1, "{v}");
}

/// A guest whose socket path another process serves is refused, and that socket is left
/// alone: neither the switch's own control socket nor a listener of someone else's is taken
/// over (the switch runs as root; a stale socket, which nobody serves, is still replaced).
#[test]
fn a_guest_socket_that_a_live_process_serves_is_refused_and_left_alone() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    let control = common::control_socket(&env.guests_file());
    let other = env.dir.path().join("other.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&other).expect("the other process's socket");
    for path in [&control, &other] {
        let e = ctl.refused(&["guest-add", "--name", "vm2", "--mac", B, "--socket", path.to_str().expect("utf-8 path")]);
        let want = format!("guest \"vm2\": socket {}: another process serves it; not taking it over", path.display());
        assert!(e.contains(&want), "expected {want:?} in {e}");
        assert!(path.exists(), "{} was removed", path.display());
        // Nothing of the refused guest stays, and the control socket still answers.
        assert_eq!(names(&ctl.json(&["guest-list"])), ["vm1"]);
    }
    // A stale socket on the path (nobody listens) is replaced.
    drop(_listener);
    let r = ctl.json(&["guest-add", "--name", "vm2", "--mac", B, "--socket", other.to_str().expect("utf-8 path")]);
    assert_eq!(r["added"], "vm2", "{r}");
    assert_eq!(names(&ctl.json(&["guest-list"])), ["vm1", "vm2"]);
    env.stop();
}

/// The switch's resident memory, from /proc.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
}

#[test]
fn two_hundred_adds_and_removes_while_another_guest_streams() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    let g1 = env.guest("vm1");
    let ext_mac = env.lab.ext_mac;
    let done = AtomicBool::new(false);
    let add = guest_toml(env.dir.path(), "vm2", B, "");
    let pid = env.switch().proc.pid();
    let done = &done;
    let ((g1, sent), warm, end) = std::thread::scope(|s| {
        let t = s.spawn(move || {
            let n = stream_until(&g1, ext_mac, mac(A), done);
            (g1, n)
        });
        let mut warm = 0;
        for i in 0..200 {
            assert_eq!(ctl.json(&["guest-add", "--toml", &add])["added"], "vm2");
            assert_eq!(ctl.json(&["guest-del", "vm2"])["removed"], "vm2");
            if i == 99 {
                warm = rss_kib(pid);
            }
        }
        let end = rss_kib(pid);
        done.store(true, Ordering::Relaxed);
        (t.join().expect("vm1 stream"), warm, end)
    });
    eprintln!("switch RSS after 100 cycles {warm} KiB, after 200 {end} KiB");
    assert!(end <= warm + 1024, "the switch grew from {warm} to {end} KiB over the last 100 add/remove cycles");
    assert!(!env.sock("vm2").exists());
    // The guest quits only once the switch has taken everything it sent: frames still in its
    // virtqueue when it exits are not the switch's to count.
    wait_for("vm1's frames taken by the switch", Duration::from_secs(10), || ctl.guest_counters("vm1")["rx_packets"].as_u64(), |&n| n == Some(sent));
    g1.quit();
    let v = env.stop();
    assert_eq!(v["uplink"]["tx_packets"], sent, "every frame vm1 sent left the uplink: {v}");
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], sent, "{v}");
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}

/// One JSON-RPC exchange on an open connection.
fn rpc(conn: &mut BufReader<UnixStream>, line: &str) -> serde_json::Value {
    conn.get_mut().write_all(line.as_bytes()).expect("write");
    conn.get_mut().write_all(b"\n").expect("write");
    let mut reply = String::new();
    conn.read_line(&mut reply).expect("read");
    serde_json::from_str(&reply).unwrap_or_else(|e| panic!("reply to {line:?} is not JSON ({e}): {reply:?}"))
}

/// Reads until the server closes the connection (or 10 s pass: then fails).
fn wait_closed(s: &mut UnixStream) {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
}

#[test]
fn the_control_socket_survives_abuse_and_forwarding_does_not_notice() {
    let mut env = LabSwitch::start(&[("vm1", A, "")], LabOpts::default());
    let ctl = env.ctl();
    let g1 = env.guest("vm1");
    let path = ctl.socket.clone();
    let connect = || BufReader::new(UnixStream::connect(&path).expect("connect"));

    // Garbage, then a good request on the same connection.
    let mut c = connect();
    assert_eq!(rpc(&mut c, "this is not json")["error"]["code"], -32700);
    assert_eq!(rpc(&mut c, "[1,2]")["error"]["code"], -32600);
    let unknown = rpc(&mut c, r#"{"jsonrpc":"2.0","id":7,"method":"no-such-thing"}"#);
    assert_eq!((unknown["id"].as_u64(), unknown["error"]["code"].as_i64()), (Some(7), Some(-32601)), "{unknown}");
    let bad = rpc(&mut c, r#"{"jsonrpc":"2.0","id":8,"method":"guest-show","params":{"name":42}}"#);
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(rpc(&mut c, r#"{"jsonrpc":"2.0","id":9,"method":"version"}"#)["result"]["version"].is_string());

    // A 10 MB line: an error, then the connection is closed.
    let mut huge = UnixStream::connect(&path).expect("connect");
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..10 {
        if huge.write_all(&chunk).is_err() {
            break; // closed by the server already
        }
    }
    wait_closed(&mut huge);

    // A client that sends requests and never reads its replies is dropped once they pile up.
    let mut greedy = UnixStream::connect(&path).expect("connect");
    greedy.set_write_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let req = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"config-dump\"}\n".repeat(1000);
    // Writing until the buffers are full, then on without reading, until the write fails
    // because the server hung up.
    greedy.set_write_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        match greedy.write(&req) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) => break,
            Err(_) => {} // timed out: the buffers are full; keep not reading
        }
        assert!(Instant::now() < deadline, "a client that never reads was never disconnected");
    }

    // Many clients at once: the ones over the limit are told and closed; the rest are served.
    // The two closed above go first (the server holds a closing client until the peer closes
    // too, or a while), and a request on `c` answered after their hangups were reported
    // makes sure the server let go of them before the next round accepts.
    drop(huge);
    drop(greedy);
    assert!(rpc(&mut c, r#"{"jsonrpc":"2.0","id":10,"method":"version"}"#)["result"]["version"].is_string());
    let mut many: Vec<UnixStream> = (0..100).map(|_| UnixStream::connect(&path).expect("connect")).collect();
    let mut refused = 0;
    for s in &mut many {
        s.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
        let mut line = String::new();
        if BufReader::new(&mut *s).read_line(&mut line).is_ok() && line.contains("too many control clients") {
            refused += 1;
        }
    }
    // 64 clients at most: `c` and these 63 (the server closed `huge` and `greedy`).
    assert_eq!(refused, 37, "of 100 simultaneous clients beside one");
    // While they are all connected, a client still gets its answer once others leave.
    drop(many);
    assert!(ctl.json(&["version"])["version"].is_string());

    // A user outside the socket's group is refused by the file mode (0660 root:root).
    std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    assert_eq!(std::fs::metadata(&path).expect("socket").permissions().mode() & 0o777, 0o660);
    let mut nobody = Command::new("setpriv");
    nobody.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_dpdk-macvtapctl")]);
    let r = ctl.run_in(nobody, &["version"]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("Permission denied"), "{}", r.stderr);

    // Forwarding never noticed.
    let ext = env.lab.ext_socket();
    let f = seq_frame(mac(A), env.lab.ext_mac, 0, 64);
    ext.send(&f);
    assert_eq!(g1.recv(2000, 1), vec![f]);
    g1.quit();
    let v = env.stop();
    assert_eq!(total_drops(&v["uplink"]) + total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}

#[test]
fn dpdk_telemetry_lists_and_reads_the_switch() {
    let mut env = LabSwitch::start(&[("vm1", A, ""), ("vm2", B, "queues = 2")], LabOpts::default());
    let out = Command::new("dpdk-telemetry.py")
        .args(["-f", &env.switch().file_prefix])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().expect("stdin").write_all(b"/\n/macvtap/guests\n/macvtap/guest,vm2\n/macvtap/lcores\n/macvtap/version\n")?;
            child.wait_with_output()
        })
        .expect("running dpdk-telemetry.py");
    let text = String::from_utf8_lossy(&out.stdout);
    let replies: Vec<serde_json::Value> = text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(replies.len(), 5, "{text}");
    let commands = replies[0]["/"].as_array().expect("command list");
    for c in ["/macvtap/guests", "/macvtap/guest", "/macvtap/lcores", "/macvtap/stats", "/macvtap/version"] {
        assert!(commands.iter().any(|x| x == c), "{c} not listed: {text}");
    }
    // Telemetry has no arrays of objects: lists come keyed by name (or lcore id).
    let guests = replies[1]["/macvtap/guests"].as_object().expect("guests by name");
    assert_eq!(guests.keys().collect::<Vec<_>>(), ["vm1", "vm2"], "{text}");
    assert_eq!(guests["vm1"]["macs"][0], A, "{text}");
    let vm2 = &replies[2]["/macvtap/guest"];
    assert_eq!((vm2["name"].as_str(), vm2["queues"].as_u64(), vm2["macs"][0].as_str()), (Some("vm2"), Some(2), Some(B)), "{text}");
    assert_eq!(replies[3]["/macvtap/lcores"]["1"]["lcore"], 1, "{text}");
    assert!(replies[4]["/macvtap/version"]["version"].as_str().is_some_and(|v| v.starts_with(env!("CARGO_PKG_VERSION"))), "{text}");
    env.stop();
}
