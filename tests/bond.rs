//! Bonded uplinks: DPDK's bonding PMD (`net_bonding`) over two `net_af_packet` members, each
//! on a veth whose far end is in the external network's namespace. This machine's kernel has
//! no bonding (nor team) driver, so the partners are the real ones that exist: for
//! active-backup a Linux bridge holding both far ends (it relearns a MAC on the member that
//! carries it after a failover); for 802.3ad Open vSwitch (userspace datapath) with an LACP
//! bond over the far ends, a real LACP partner.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const A: &str = "52:54:00:00:00:01";
const EXT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xee, 0x01];
/// A second destination behind the partner (nobody owns it; OVS floods it to the external
/// host), which DPDK's layer-2 hash sends over the other 802.3ad member.
const EXT2_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0xee, 0x02];
const CHUNKS: u32 = 20;
const CHUNK: u32 = 100;
const MEMBERS: [&str; 2] = ["--vdev=net_af_packet0,iface=bnd0", "--vdev=net_af_packet1,iface=bnd1"];
/// Generous: on 2 cores the switch, a guest, a partner and the test share the CPU.
const WAIT: Duration = Duration::from_secs(60);

/// ```text
///   sw: bnd0, bnd1 <--veths--> far: bnd0p, bnd1p   (the switch's bond members, the partner's)
///                              far: pext <--veth--> ext: ext0   (the external host)
/// ```
/// `far` holds the partner: a Linux bridge, or Open vSwitch, over bnd0p, bnd1p and pext.
struct BondLab {
    sw: Netns,
    far: Netns,
    ext: Netns,
    dir: tempfile::TempDir,
}

impl BondLab {
    fn new() -> BondLab {
        require_root();
        let id = unique("bnd");
        let lab = BondLab {
            sw: Netns::new(&format!("mvt-{id}-sw")),
            far: Netns::new(&format!("mvt-{id}-far")),
            ext: Netns::new(&format!("mvt-{id}-ext")),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let far = lab.far.name.as_str();
        for m in ["bnd0", "bnd1"] {
            lab.sw.run(&["ip", "link", "add", m, "type", "veth", "peer", "name", &format!("{m}p"), "netns", far]);
        }
        lab.ext.run(&["ip", "link", "add", "ext0", "address", &mac_str(EXT_MAC), "type", "veth", "peer", "name", "pext", "netns", far]);
        for (ns, dev) in [(&lab.sw, "bnd0"), (&lab.sw, "bnd1"), (&lab.far, "bnd0p"), (&lab.far, "bnd1p"), (&lab.far, "pext"), (&lab.ext, "ext0")] {
            ns.run(&["ip", "link", "set", dev, "up"]);
        }
        for (ns, dev) in [(&lab.sw, "bnd0"), (&lab.sw, "bnd1"), (&lab.ext, "ext0")] {
            ns.wait_carrier(dev, Duration::from_secs(5));
        }
        std::fs::write(
            lab.dir.path().join("guests.toml"),
            format!("[[guest]]\nname = \"vm1\"\nmac = \"{A}\"\nsocket = \"{}\"\n", lab.sock().display()),
        )
        .expect("guests.toml");
        lab
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("vm1.sock")
    }

    fn json(&self) -> PathBuf {
        self.dir.path().join("stats.json")
    }

    /// The active-backup partner: one Linux bridge over both far ends and the external host.
    fn bridge(&self) {
        self.far.run(&["ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"]);
        for dev in ["bnd0p", "bnd1p", "pext"] {
            self.far.run(&["ip", "link", "set", dev, "master", "br0"]);
        }
        self.far.run(&["ip", "link", "set", "br0", "up"]);
    }

    /// The switch in `sw` with `eal` (the member vdevs, maybe the bond's) and `--port port`.
    fn switch(&self, eal: &[&str], port: &str) -> Switch {
        self.switch_with(eal, port, &[])
    }

    /// Like `switch`, with more switch options.
    fn switch_with(&self, eal: &[&str], port: &str, more: &[&str]) -> Switch {
        let eal: Vec<String> = eal.iter().map(|s| s.to_string()).collect();
        let mut app = self.app(port);
        app.extend(more.iter().map(|s| s.to_string()));
        Switch::start(Some(&self.sw), &eal, &app)
    }

    fn app(&self, port: &str) -> Vec<String> {
        let mut app = switch_args(&self.dir.path().join("guests.toml"), &self.json(), 0);
        let at = app.iter().position(|a| a == "--port").expect("--port in switch_args") + 1;
        app[at] = port.to_owned();
        app
    }

    fn guest(&self, sw: &Switch) -> Guest {
        let g = Guest::start(&self.sock(), "bg");
        sw.proc.wait_line("guest vm1: link up", WAIT);
        g
    }

    /// Takes a far end down or up: the member's veth loses or regains its carrier.
    fn far_link(&self, dev: &str, up: bool) {
        self.far.run(&["ip", "link", "set", dev, if up { "up" } else { "down" }]);
    }

    /// The external host's socket, with room to queue a whole stream.
    fn ext_socket(&self) -> RawSocket {
        let s = RawSocket::open(Some(&self.ext), "ext0");
        s.ignore_outgoing();
        s.set_rcvbuf(256 << 20);
        s
    }
}

/// One exact frame from the guest to the external host (`tag`), and one back (`tag + 1`).
fn both_ways(g: &Guest, ext: &RawSocket, tag: u8, when: &str) {
    let out = frame(EXT_MAC, mac(A), TEST_ETHERTYPE, 60, tag);
    assert_eq!(g.send(&out, 1), 1);
    assert_eq!(ext.recv_timeout(Duration::from_secs(5)).map(|(f, _)| f), Some(out), "guest -> external host, {when}");
    from_outside(g, ext, tag + 1, when);
}

/// One exact frame from the external host to the guest.
fn from_outside(g: &Guest, ext: &RawSocket, tag: u8, when: &str) {
    let inbound = frame(mac(A), EXT_MAC, TEST_ETHERTYPE, 60, tag);
    ext.send(&inbound);
    assert_eq!(g.recv(5000, 2), vec![inbound], "external host -> guest, {when}");
}

/// Streams `count` frames numbered from `first` to the external host. The guest's `stream`
/// gives up after a second without progress, which a heavily shared machine can cause by
/// itself; so it resumes where it stopped, as long as each call moves some frames (a switch
/// that stopped forwarding moves none).
fn stream_all(g: &Guest, count: u32, first: u32) -> u32 {
    let mut sent = 0;
    while sent < count {
        let n = g.stream_from(EXT_MAC, mac(A), 64, count - sent, first + sent);
        if n == 0 {
            break;
        }
        sent += n;
    }
    sent
}

/// What the external host saw of a guest's `stream` (sequence numbers from `first`).
#[derive(Debug, Default)]
struct Seen {
    frames: u64,
    /// Numbers skipped: frames lost on the way.
    lost: u64,
    late: u64,
    next: u32,
    /// The receive rate before `at` was reached, in frames per second.
    rate: f64,
}

/// Counts `count` stream frames from `src` numbered from `first` as they reach `ext`, calling
/// `at_frame` once when `at` of them have arrived. Ends when the last number arrived, or when
/// nothing came for `idle` (what was not there by then is lost).
fn receive_stream(ext: &RawSocket, src: [u8; 6], first: u32, count: u32, at: u64, at_frame: impl FnOnce(), idle: Duration) -> Seen {
    let mut seen = Seen { next: first, ..Seen::default() };
    let mut buf = [0u8; 64];
    let mut at_frame = Some(at_frame);
    let mut t0 = None;
    while let Some(n) = ext.recv_into(&mut buf, idle) {
        if n < 18 || buf[6..12] != src || buf[12..14] != TEST_ETHERTYPE.to_be_bytes() {
            continue;
        }
        let t = *t0.get_or_insert_with(Instant::now);
        let seq = u32::from_be_bytes([buf[14], buf[15], buf[16], buf[17]]);
        seen.frames += 1;
        if seq < seen.next {
            seen.late += 1;
        } else {
            seen.lost += u64::from(seq - seen.next);
            seen.next = seq + 1;
        }
        if seen.frames == at {
            seen.rate = at as f64 / t.elapsed().as_secs_f64().max(1e-6);
            if let Some(f) = at_frame.take() {
                f();
            }
        }
        if seen.next == first + count {
            break;
        }
    }
    // The tail that never came.
    seen.lost += u64::from((first + count).saturating_sub(seen.next));
    seen
}

/// Frames streamed through a failover, and after the member came back.
const STREAM: u32 = 200_000;
const DOWN_AT: u64 = 40_000;
const AGAIN: u32 = 50_000;
/// What a failover may cost: the frames in the failed member's tx ring (net_af_packet's
/// default ring holds 512; they leave late, if its link comes back), and what the guest sent
/// in FAILOVER_MS (the control thread reads the members' carrier every pass of its loop, at
/// most 20 ms apart, and moves the bond at once).
const TX_RING: u64 = 512;
const FAILOVER_MS: f64 = 100.0;

/// Active-backup: a guest streams to the external host while the member in use loses its
/// far end. Forwarding moves to the other member; the frames missing (counted by sequence
/// number at the receiver, whose socket dropped none) are at most the failed member's tx ring
/// and FAILOVER_MS of the stream; frames from outside reach the guest over the new member;
/// when the member comes back (after --bond-up-delay) the bond returns to it without
/// losing a new frame, and the stranded ones leave then, late. The switch exits clean, with
/// no leak.
#[test]
fn active_backup_fails_over_under_a_stream_and_back() {
    let lab = BondLab::new();
    lab.bridge();
    // The bond from --port devargs (the switch probes it; its members are EAL's ports 0, 1).
    let bond = "net_bonding0,mode=1,slave=net_af_packet0,slave=net_af_packet1,primary=net_af_packet0";
    // A Linux bridge port forwards about half a second after its link comes up.
    let sw = lab.switch_with(&MEMBERS, bond, &["--bond-up-delay", "1500"]);
    let start = sw.proc.stdout_text();
    assert!(start.contains("uplink bond: active-backup (mode=1), members [0 net_af_packet0, 1 net_af_packet1], primary 0 net_af_packet0"), "{start}");
    assert!(start.contains("uplink: port 2 net_bonding0 (driver net_bonding)"), "{start}");
    // An active-backup bond reads one member: watching both would wake the worker for the
    // other's frames.
    assert!(start.contains("uplink wake-ups: none: net_bonding has no rx interrupts, and in active-backup (mode=1) it reads only the member in use"), "{start}");
    sw.proc.wait_line("uplink bond: sending on [0 net_af_packet0] (was [])", WAIT);
    let g = lab.guest(&sw);
    let ext = lab.ext_socket();

    both_ways(&g, &ext, 1, "before anything fails");
    ext.take_drops();

    // The far end of member 0 goes down once DOWN_AT frames of the stream have arrived.
    let (sent, seen) = std::thread::scope(|s| {
        let rx = s.spawn(|| receive_stream(&ext, mac(A), 0, STREAM, DOWN_AT, || lab.far_link("bnd0p", false), Duration::from_secs(3)));
        let sent = stream_all(&g, STREAM, 0);
        (sent, rx.join().expect("receiver"))
    });
    assert_eq!(sent, STREAM, "the guest sent the whole stream; received {seen:?}\n{}", sw.proc.report());
    assert_eq!(ext.take_drops(), 0, "the receiver's socket dropped nothing: every gap is a frame lost on the path");
    sw.proc.wait_line("uplink bond: member 0 net_af_packet0 (bnd0) carrier down", WAIT);
    sw.proc.wait_line("uplink bond: sending on [1 net_af_packet1] (was [0 net_af_packet0])", WAIT);
    let bound = TX_RING + (seen.rate * FAILOVER_MS / 1000.0) as u64;
    println!("failover: {} of {STREAM} frames missing at {:.0} frames/s (bound {bound}), {} late", seen.lost, seen.rate, seen.late);
    assert_eq!(seen.frames + seen.lost, u64::from(STREAM), "{seen:?}");
    assert_eq!(seen.late, 0, "nothing reordered: {seen:?}");
    assert_eq!(seen.next, STREAM, "the stream's last frame arrived, over member 1: {seen:?}");
    assert!(seen.lost <= bound, "failover lost {} frames (bound: {TX_RING} + {FAILOVER_MS} ms of the stream = {bound}): {seen:?}", seen.lost);

    // From outside, over the new member (the bridge learned the guest there from the stream).
    from_outside(&g, &ext, 3, "over member 1");

    // Member 0 comes back: the bond returns to its primary, under a stream, losing nothing.
    lab.far_link("bnd0p", true);
    sw.proc.wait_line("uplink bond: member 0 net_af_packet0 (bnd0) carrier up", WAIT);
    sw.proc.wait_line("uplink bond: sending on [0 net_af_packet0] (was [1 net_af_packet1])", WAIT);
    let port = lab.far.output(&["bridge", "link", "show", "dev", "bnd0p"]);
    assert!(port.contains("state forwarding"), "after up_delay the bridge port forwards again: {port}");
    let (sent2, seen2) = std::thread::scope(|s| {
        let rx = s.spawn(|| receive_stream(&ext, mac(A), STREAM, AGAIN, 1, || {}, Duration::from_secs(3)));
        let sent = stream_all(&g, AGAIN, STREAM);
        (sent, rx.join().expect("receiver"))
    });
    assert_eq!(sent2, AGAIN);
    assert_eq!(ext.take_drops(), 0);
    println!("return: {seen2:?}; never arrived: {}", seen.lost - seen2.late.min(seen.lost));
    assert_eq!((seen2.frames - seen2.late, seen2.lost), (u64::from(AGAIN), 0), "back on member 0, every new frame arrives: {seen2:?}");
    assert!(seen2.late <= seen.lost, "and the late ones are those the failover stranded in member 0's tx ring: {seen2:?}");
    from_outside(&g, &ext, 4, "over member 0 again");

    g.quit();
    sw.stop_clean();
    let v = stats_json(&lab.json());
    let out = u64::from(STREAM + AGAIN) + 1;
    // A guest's rx counts the frames taken from it, its tx those delivered to it.
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], out, "{v}");
    assert_eq!(v["uplink"]["tx_packets"], out, "the switch handed every frame to the bond: the losses are the failover's: {v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 3, "{v}");
    let dropped: u64 = guest_stats(&v, "vm1")["drops"].as_object().expect("drops").values().filter_map(|x| x.as_u64()).sum();
    assert_eq!(dropped, 0, "no frame of the guest's dropped by the switch: {v}");
}

/// A bond that reads every member (balance-xor here) over net_af_packet members: frames
/// arriving at either member's kernel interface wake a blocked worker (a bond has no rx
/// interrupts). With a block limit of a minute, only they can end a block in time.
#[test]
fn a_bond_over_af_packet_members_wakes_a_blocked_worker_through_them() {
    let lab = BondLab::new();
    lab.bridge();
    let sw = lab.switch_with(&MEMBERS, "net_bonding0,mode=2,slave=net_af_packet0,slave=net_af_packet1", &["--idle-block-limit", "60000"]);
    let start = sw.proc.stdout_text();
    assert!(start.contains("uplink wake-ups: net_bonding has no rx interrupts; a blocked worker wakes for frames arriving at kernel interfaces bnd0, bnd1"), "{start}");
    let g = lab.guest(&sw);
    let ext = lab.ext_socket();
    // The bridge learns the guest on the member its frames took.
    both_ways(&g, &ext, 1, "once");
    let ctl = Ctl::new(&control_socket(&lab.dir.path().join("guests.toml")));
    for tag in 3..6 {
        ctl.uplink_frame_wakes(0, &g, &frame(mac(A), EXT_MAC, TEST_ETHERTYPE, 60, tag), |f| ext.send(f), "a frame from the external host, through a member");
    }
    g.quit();
    sw.stop_clean();
    let v = stats_json(&lab.json());
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 4, "{v}");
    assert_eq!(total_drops(guest_stats(&v, "vm1")), 0, "{v}");
}

/// Open vSwitch (userspace datapath) in the partner's namespace: its own database and
/// daemons under `dir`, killed with the test.
struct Ovs {
    dir: PathBuf,
    _db: Proc,
    _vswitchd: Proc,
}

impl Ovs {
    fn env(dir: &Path, c: &mut Command) {
        for var in ["OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR"] {
            c.env(var, dir);
        }
    }

    fn start(ns: &Netns, dir: &Path) -> Ovs {
        let db = dir.join("conf.db");
        run_cmd(Command::new("ovsdb-tool").arg("create").arg(&db).arg("/usr/share/openvswitch/vswitch.ovsschema"));
        let mut c = ns.command("ovsdb-server");
        c.arg(&db).arg(format!("--remote=punix:{}", dir.join("db.sock").display())).arg(format!("--unixctl={}", dir.join("db.ctl").display()));
        c.arg("--no-chdir").arg(format!("--log-file={}", dir.join("ovsdb-server.log").display()));
        Self::env(dir, &mut c);
        let db_proc = Proc::spawn(c, "ovsdb-server");
        wait_path(&dir.join("db.sock"), Duration::from_secs(20));
        let mut c = ns.command("ovs-vswitchd");
        c.arg(format!("unix:{}", dir.join("db.sock").display())).arg(format!("--unixctl={}", dir.join("vswitchd.ctl").display()));
        c.arg("--no-chdir").arg(format!("--log-file={}", dir.join("ovs-vswitchd.log").display()));
        Self::env(dir, &mut c);
        let vs = Proc::spawn(c, "ovs-vswitchd");
        wait_path(&dir.join("vswitchd.ctl"), Duration::from_secs(20));
        let ovs = Ovs { dir: dir.to_owned(), _db: db_proc, _vswitchd: vs };
        ovs.vsctl(&["init"]);
        ovs
    }

    fn vsctl(&self, args: &[&str]) -> String {
        let mut c = Command::new("ovs-vsctl");
        c.arg(format!("--db=unix:{}", self.dir.join("db.sock").display())).arg("--timeout=30").args(args);
        Self::env(&self.dir, &mut c);
        run_cmd(&mut c)
    }

    fn appctl(&self, args: &[&str]) -> String {
        let mut c = Command::new("ovs-appctl");
        c.arg("-t").arg(self.dir.join("vswitchd.ctl")).args(args);
        Self::env(&self.dir, &mut c);
        run_cmd(&mut c)
    }

    /// `lacp/show bond0` once both members are aggregated both ways, as OVS sees them.
    fn wait_lacp(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let show = self.appctl(&["lacp/show", "bond0"]);
            let members = show.matches("current attached").count();
            let partners = show.lines().filter(|l| l.trim_start().starts_with("partner state:") && l.contains("collecting distributing")).count();
            if show.contains("status: active negotiated") && members == 2 && partners == 2 {
                return show;
            }
            assert!(Instant::now() < deadline, "OVS did not negotiate LACP with the switch's bond within {WAIT:?}:\n{show}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// LACP frames OVS received on `member` so far (`lacp/show-stats`).
    fn lacp_rx(&self, member: &str) -> u64 {
        let stats = self.appctl(&["lacp/show-stats", "bond0"]);
        let section = stats.split("member: ").find(|s| s.starts_with(member)).unwrap_or_else(|| panic!("no member {member} in:\n{stats}"));
        let line = section.lines().find(|l| l.trim_start().starts_with("RX PDUs:")).unwrap_or_else(|| panic!("no RX PDUs in:\n{stats}"));
        line.rsplit(':').next().and_then(|n| n.trim().parse().ok()).unwrap_or_else(|| panic!("bad {line:?}"))
    }
}

/// 802.3ad against a real LACP partner, Open vSwitch: LACP comes up (the switch says so, and
/// OVS shows both members aggregated both ways), stays up while the guest is quiet (the
/// workers call the bond's tx on idle passes: without that, DPDK's bond sends no LACP frame),
/// and frames pass both ways: exact frames, then 2,000 in order and none lost, spread over
/// both members.
#[test]
fn lacp_with_open_vswitch_comes_up_and_forwards() {
    let lab = BondLab::new();
    let ovs_dir = lab.dir.path().join("ovs");
    std::fs::create_dir(&ovs_dir).expect("ovs dir");
    let ovs = Ovs::start(&lab.far, &ovs_dir);
    ovs.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"]);
    ovs.vsctl(&["add-bond", "br0", "bond0", "bnd0p", "bnd1p", "lacp=active", "bond_mode=balance-slb", "--", "set", "port", "bond0", "other_config:lacp-time=fast"]);
    ovs.vsctl(&["add-port", "br0", "pext"]);

    let mut eal = MEMBERS.to_vec();
    eal.push("--vdev=net_bonding0,mode=4,slave=net_af_packet0,slave=net_af_packet1");
    let sw = lab.switch(&eal, "2");
    let start = sw.proc.stdout_text();
    assert!(start.contains("uplink bond: 802.3ad (mode=4), members [0 net_af_packet0, 1 net_af_packet1]; LACP frames through the data queues, sent on idle passes too"), "{start}");
    assert!(start.contains("uplink wake-ups: none: net_bonding has no rx interrupts, and 802.3ad sends its LACP frames from the workers' idle passes"), "{start}");
    sw.proc.wait_line("uplink bond: LACP aggregated [0 net_af_packet0, 1 net_af_packet1]", WAIT);
    let show = ovs.wait_lacp();
    println!("{show}");

    // Quiet for a while (no guest yet): OVS keeps receiving LACP frames on both members and
    // the aggregation holds.
    let before = [ovs.lacp_rx("bnd0p"), ovs.lacp_rx("bnd1p")];
    let deadline = Instant::now() + WAIT;
    while ovs.lacp_rx("bnd0p") < before[0] + 3 || ovs.lacp_rx("bnd1p") < before[1] + 3 {
        assert!(Instant::now() < deadline, "no LACP frames from the idle switch: before {before:?}\n{}", ovs.appctl(&["lacp/show-stats", "bond0"]));
        std::thread::sleep(Duration::from_millis(200));
    }
    ovs.wait_lacp();

    let g = lab.guest(&sw);
    let ext = lab.ext_socket();
    both_ways(&g, &ext, 1, "through OVS");
    // Chunks to two destinations, which the bond's layer-2 hash puts on different members;
    // each chunk is read before the next is sent (OVS's userspace datapath reads its ports
    // far slower than the switch sends).
    let tx = |dev: &str| -> u64 { lab.sw.output(&["cat", &format!("/sys/class/net/{dev}/statistics/tx_packets")]).trim().parse().expect("tx_packets") };
    let before = [tx("bnd0"), tx("bnd1")];
    let mut buf = [0u8; 64];
    for chunk in 0..CHUNKS {
        let dst = if chunk % 2 == 0 { EXT_MAC } else { EXT2_MAC };
        let first = chunk * CHUNK;
        assert_eq!(g.stream_from(dst, mac(A), 64, CHUNK, first), CHUNK);
        let mut next = first;
        while next < first + CHUNK {
            let Some(n) = ext.recv_into(&mut buf, Duration::from_secs(5)) else {
                panic!("chunk {chunk} to {}: frames {first}..{next} arrived, then nothing", mac_str(dst));
            };
            if n >= 18 && buf[6..12] == mac(A) && buf[12..14] == TEST_ETHERTYPE.to_be_bytes() {
                assert_eq!((&buf[..6], u32::from_be_bytes([buf[14], buf[15], buf[16], buf[17]])), (&dst[..], next), "in order, none lost");
                next += 1;
            }
        }
    }
    assert_eq!(ext.take_drops(), 0);
    let sent = [tx("bnd0") - before[0], tx("bnd1") - before[1]];
    let half = u64::from(CHUNKS / 2 * CHUNK);
    assert!(sent[0] >= half && sent[1] >= half, "each member carried one destination's frames: {sent:?}");

    g.quit();
    let out = sw.stop_clean();
    assert!(!out.contains("uplink bond: LACP aggregated [] "), "the aggregation never broke:\n{out}");
    let v = stats_json(&lab.json());
    assert_eq!(guest_stats(&v, "vm1")["rx_packets"], u64::from(CHUNKS * CHUNK) + 1, "{v}");
    assert_eq!(guest_stats(&v, "vm1")["tx_packets"], 1, "{v}");
    assert_eq!(v["workers"][0]["blocked_cycles"], 0, "the worker sending LACP frames on idle passes never blocked: {v}");
}

/// A bond member given as the uplink is refused, naming the bond: the switch would take
/// the member's frames away from the bond.
#[test]
fn a_bond_member_as_the_uplink_is_refused() {
    let lab = BondLab::new();
    let mut eal: Vec<String> = MEMBERS.iter().map(|s| s.to_string()).collect();
    eal.push("--vdev=net_bonding0,mode=1,slave=net_af_packet0,slave=net_af_packet1".to_owned());
    let mut sw = Switch::spawn(Some(&lab.sw), &eal, &lab.app("1"));
    let code = sw.proc.wait_exit(WAIT);
    let err = sw.proc.stderr_lines().join("\n");
    assert_eq!(code, 1, "{}", sw.proc.report());
    assert!(err.contains("--port: port 1 (net_af_packet1) is a member of bond net_bonding0"), "{err}");
}
