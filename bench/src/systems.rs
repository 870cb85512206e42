//! The DPDK switches under test, started on the same vdev topology and the same cores:
//! the switch's forwarding thread on core 1, its control/main thread on core 0 (shared with
//! the generator, where it mostly sleeps).
//!
//! - dpdk-macvtap: `--lcores 0@0,1@1`, guests in a generated guests.toml (server sockets);
//!   `macvtap` with its default idle sleep (or the harness's `--idle-sleep-max`),
//!   `macvtap-nosleep` the same binary with `--idle-sleep-max 0` (pure polling).
//! - testpmd io-fwd: the upper bound; `net_vhost` ports (server) and the same uplink vdev,
//!   `--port-topology=paired` (uplink <-> guest) or `chained` for the latency loop.
//! - OVS-DPDK: `ovs-vswitchd-dpdk` with its own ovsdb in a private run directory,
//!   `dpdk-lcore-mask=0x1`, `pmd-cpu-mask=0x2`, `dpdkvhostuser` guest ports, the uplink a
//!   `type=dpdk` port on the same vdev, and OpenFlow rules doing the VEPA job.

use std::path::{Path as FsPath, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::model::{guest_mac, mac_str, Env, System};
use crate::proc::{self, Proc};

pub const OVS_VSWITCHD: &str = "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk";
const OVS_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The uplink vdev, identical for every system.
#[derive(Clone, Debug)]
pub enum Uplink {
    /// `net_null,no-rx=1`: swallows what is sent, receives nothing.
    Null,
    /// `net_pcap,rx_pcap=F,infinite_rx=1`: replays F for ever; transmit drops.
    Pcap(PathBuf),
    /// `net_ring` without arguments: each tx queue feeds the rx queue of the same number,
    /// so whatever leaves the switch comes straight back in (a hairpin in one vdev).
    Loop,
    /// `net_vhost,iface=S` (server): a virtio-user port of the generator plays the wire. Its
    /// tx virtqueue is the uplink's rx ring: when the switch does not drain it in time, the
    /// generator's transmit is refused, which is where a NIC would drop (idle-sleep bursts).
    Vhost(PathBuf),
    /// `net_af_packet,iface=I`: a veth end whose peer the generator's own net_af_packet
    /// port plays the wire through (no rx interrupts: a worker blocks by watching I).
    AfPacket(String),
}

impl Uplink {
    pub fn devargs(&self, index: u32) -> String {
        match self {
            Uplink::Null => format!("net_null{index},no-rx=1"),
            Uplink::Pcap(f) => format!("net_pcap{index},rx_pcap={},infinite_rx=1", f.display()),
            Uplink::Loop => format!("net_ring{index}"),
            Uplink::Vhost(s) => format!("net_vhost{index},iface={},queues=1", s.display()),
            Uplink::AfPacket(i) => format!("net_af_packet{index},iface={i}"),
        }
    }
}

/// The vdev topology of one measurement.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Guests attached (the first ones configured).
    pub guests: usize,
    pub uplink: Uplink,
    pub jumbo: bool,
    /// A short name for logs and the command list ("g2u", "lat", ...).
    pub tag: String,
    /// dpdk-macvtap: the MACs of every configured guest; empty: `guests` guests with one MAC
    /// each (`guest_mac`).
    pub macs: Vec<Vec<[u8; 6]>>,
    /// testpmd io-fwd with several guests: one uplink per guest, paired with it
    /// (uplink i <-> guest i); empty: testpmd cannot do a topology of several guests.
    pub pair_uplinks: Vec<Uplink>,
    /// The switch's main/control thread on its forwarding core (the whole process pinned
    /// there) instead of the generator's.
    pub shared_core: bool,
}

impl Topology {
    /// Guests in the switch's configuration (attached or not).
    pub fn configured(&self) -> usize {
        self.macs.len().max(self.guests)
    }

    pub fn new(guests: usize, uplink: Uplink, jumbo: bool, tag: &str) -> Topology {
        Topology { guests, uplink, jumbo, tag: tag.to_owned(), macs: Vec::new(), pair_uplinks: Vec::new(), shared_core: false }
    }

    /// `--lcores` and the command's prefix: main lcore 0 on the generator's core (or the
    /// forwarding core when shared), forwarding lcore 1 on core 1.
    fn placement(&self, program: &FsPath) -> (Command, &'static str) {
        if self.shared_core {
            // taskset too: DPDK's own control threads (vhost-user events, interrupts) take the
            // process's CPUs not given to lcores, or the main lcore's when there are none.
            let mut c = Command::new("taskset");
            c.args(["-c", "1"]).arg(program);
            (c, "0@1,1@1")
        } else {
            (Command::new(program), "0@0,1@1")
        }
    }
}

/// What a switch reports about its own forwarding thread over the measurement window.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct SwitchFigures {
    /// Busy cycles per packet received by the switch (from either side).
    pub cycles_per_pkt: Option<f64>,
    /// Share of the forwarding thread's cycles spent on iterations that moved frames.
    pub busy_pct: Option<f64>,
    /// dpdk-macvtap only: its reported busy cycles over (window cycles - idle cycles -
    /// sleep cycles); about 1 when its accounting is right.
    #[serde(default)]
    pub reported_busy_x: Option<f64>,
    /// dpdk-macvtap only: share of the window the worker slept (idle sleep), in %.
    #[serde(default)]
    pub sleep_pct: Option<f64>,
    /// CPU time of everything but the switch and the guests during the window, % of one
    /// core (/proc): the shared machine's other load.
    #[serde(default)]
    pub others_pct: Option<f64>,
    /// dpdk-macvtap only: the worker's own accounting, `busy_cycles` / `frames`.
    #[serde(default)]
    pub own_cycles_per_pkt: Option<f64>,
    /// dpdk-macvtap only: frames per copy call into a guest (`enqueue_frames` /
    /// `enqueue_calls`), the effect of batching deliveries across bursts.
    #[serde(default)]
    pub frames_per_copy: Option<f64>,
}

/// dpdk-macvtap's worker counters from `--stats-json`, summed over workers (TSC cycles).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacvtapCounters {
    pub busy: u64,
    pub idle: u64,
    pub sleep: u64,
    /// The part of `sleep` spent blocked (`--idle-block-after`).
    pub blocked: u64,
    pub frames: u64,
    pub enqueue_calls: u64,
    pub enqueue_frames: u64,
}

/// The TSC, the clock every DPDK process here counts cycles with.
pub fn tsc() -> u64 {
    dpdk_macvtap::rte::eal::rdtsc()
}

pub struct Running {
    pub sockets: Vec<PathBuf>,
    kind: Kind,
}

enum Kind {
    Macvtap { proc: Proc, json: PathBuf, start: Option<(MacvtapCounters, u64)> },
    Testpmd { proc: Proc },
    Ovs(Ovs),
}

/// Starts `system` on `topo`; None when the system cannot do this topology.
pub fn start(env: &Env, system: System, topo: &Topology) -> Result<Option<Running>> {
    match system {
        System::Macvtap => start_macvtap(env, topo, env.idle_sleep_max, &[]).map(Some),
        System::MacvtapNosleep => start_macvtap(env, topo, Some(0), &[]).map(Some),
        System::Testpmd => {
            // io-fwd pairs ports: no fan-out, and several guests only with an uplink each.
            if topo.guests > 1 && !matches!(topo.uplink, Uplink::Loop) && topo.pair_uplinks.len() != topo.guests {
                return Ok(None);
            }
            start_testpmd(env, topo).map(Some)
        }
        System::Ovs => {
            if !env.hugepages {
                bail!("OVS-DPDK is only run with hugepages");
            }
            // OVS asks the uplink PMD for the MTU; net_null/net_pcap report 1500 at most, so
            // OVS refuses mtu_request=9000 there ("does not support MTU configuration").
            if topo.jumbo && !matches!(topo.uplink, Uplink::Loop) {
                return Ok(None);
            }
            if matches!(topo.uplink, Uplink::Vhost(_)) || topo.shared_core || topo.configured() > topo.guests {
                return Ok(None);
            }
            start_ovs(env, topo).map(Some)
        }
        System::Kernel => Ok(None),
    }
}

/// dpdk-macvtap; `idle_sleep_max` None leaves the binary's default bound; `extra`: more
/// switch options.
pub fn start_macvtap(env: &Env, topo: &Topology, idle_sleep_max: Option<u32>, extra: &[&str]) -> Result<Running> {
    let seq = env.next_seq();
    let dir = env.work.join(format!("macvtap{seq}"));
    std::fs::create_dir_all(&dir)?;
    let mut toml = String::new();
    let mut sockets = Vec::new();
    for i in 0..topo.configured() {
        let sock = dir.join(format!("vm{i}.sock"));
        let macs: Vec<String> = match topo.macs.get(i) {
            Some(m) => m.iter().map(|m| format!("\"{}\"", mac_str(*m))).collect(),
            None => vec![format!("\"{}\"", mac_str(guest_mac(i)))],
        };
        // Guests nobody attaches (the scale cases) are client-role: the switch keeps no
        // listening socket for them, and the vhost library's 1023 descriptors (2 a served
        // guest) then hold up to 990 configured guests beside the attached ones.
        let role = if i < topo.guests { "" } else { "vhost = \"client\"\n" };
        toml.push_str(&format!(
            "[[guest]]\nname = \"vm{i}\"\nmac = [{}]\nsocket = \"{}\"\nmtu = {}\n{role}\n",
            macs.join(", "),
            sock.display(),
            if topo.jumbo { 9000 } else { 1500 }
        ));
        if i < topo.guests {
            sockets.push(sock);
        }
    }
    let guests = dir.join("guests.toml");
    std::fs::write(&guests, toml)?;
    let json = dir.join("stats.json");
    let (mut cmd, lcores) = topo.placement(&env.macvtap_bin);
    cmd.args(env.eal_mem(512));
    cmd.args(["--no-pci", "--log-level=lib.eal:warning", &format!("--file-prefix=bmvt{seq}"), "--lcores", lcores]);
    cmd.arg("--vdev").arg(topo.uplink.devargs(0));
    cmd.args(["--", "--port", "0", "--guests"]).arg(&guests);
    cmd.args(["--stats-interval", "0", "--stats-json"]).arg(&json);
    cmd.arg("--control").arg(dir.join("control.sock"));
    if let Some(us) = idle_sleep_max {
        cmd.args(["--idle-sleep-max", &us.to_string()]);
    }
    cmd.args(extra);
    let log = dir.join("switch.log");
    let mut p = Proc::spawn("dpdk-macvtap", cmd, &log)?;
    let key = match idle_sleep_max {
        Some(0) => "macvtap-nosleep".to_owned(),
        Some(us) if Some(us) != env.idle_sleep_max => format!("macvtap --idle-sleep-max {us}"),
        _ => "macvtap".to_owned(),
    };
    let key = if extra.is_empty() { key } else { format!("{key} {}", extra.join(" ")) };
    env.record(&format!("{key}/switch ({})", topo.tag), &p.cmdline);
    p.wait_for("dpdk-macvtap: forwarding", START_TIMEOUT)?;
    Ok(Running { sockets, kind: Kind::Macvtap { proc: p, json, start: None } })
}

fn start_testpmd(env: &Env, topo: &Topology) -> Result<Running> {
    let seq = env.next_seq();
    let dir = env.work.join(format!("testpmd{seq}"));
    std::fs::create_dir_all(&dir)?;
    let sockets: Vec<PathBuf> = (0..topo.guests).map(|i| dir.join(format!("vm{i}.sock"))).collect();
    let (mut cmd, lcores) = topo.placement(FsPath::new(crate::guest::TESTPMD));
    cmd.args(env.eal_mem(512));
    cmd.args(["--no-pci", "--log-level=lib.eal:warning", &format!("--file-prefix=btpm{seq}"), "--lcores", lcores]);
    let vhost = |i: usize| format!("net_vhost{i},iface={},queues=1", sockets[i].display());
    let chained = matches!(topo.uplink, Uplink::Loop);
    // A vhost uplink must not take the name of guest 0's net_vhost0.
    let up = if matches!(topo.uplink, Uplink::Vhost(_)) { 99 } else { 0 };
    if chained {
        // guest A (port 0) -> loop uplink (port 1) -> guest B (port 2), chained topology.
        cmd.arg("--vdev").arg(vhost(0));
        cmd.arg("--vdev").arg(topo.uplink.devargs(0));
        cmd.arg("--vdev").arg(vhost(1));
    } else if topo.guests > 1 {
        // Ports 2i (uplink i) and 2i+1 (guest i): the default paired topology forwards each
        // pair both ways, so every guest has a wire of its own.
        for (i, u) in topo.pair_uplinks.iter().enumerate() {
            cmd.arg("--vdev").arg(u.devargs(i as u32));
            cmd.arg("--vdev").arg(vhost(i));
        }
    } else {
        cmd.arg("--vdev").arg(topo.uplink.devargs(up));
        cmd.arg("--vdev").arg(vhost(0));
    }
    cmd.args(["--", "--forward-mode=io", "--nb-cores=1", "--stats-period=1000", "--record-core-cycles", "--no-flush-rx"]);
    cmd.args(["--rxd=1024", "--txd=1024", "--total-num-mbufs=16383"]);
    if chained {
        cmd.arg("--port-topology=chained");
    }
    if topo.jumbo {
        cmd.args(["--mbuf-size=10240", "--max-pkt-len=9018"]);
    }
    let log = dir.join("switch.log");
    let mut p = Proc::spawn("testpmd io-fwd", cmd, &log)?;
    env.record(&format!("testpmd/switch ({})", topo.tag), &p.cmdline);
    p.wait_for("packet forwarding - ports=", START_TIMEOUT)?;
    Ok(Running { sockets, kind: Kind::Testpmd { proc: p } })
}

impl Running {
    /// The switch's process id (OVS: None, it detached itself).
    pub fn pid(&self) -> Option<i32> {
        match &self.kind {
            Kind::Macvtap { proc, .. } | Kind::Testpmd { proc } => Some(proc.pid()),
            Kind::Ovs(_) => None,
        }
    }

    /// dpdk-macvtap's worker counters now (a fresh `--stats-json` dump); None for the others.
    pub fn macvtap_counters(&self) -> Result<Option<MacvtapCounters>> {
        match &self.kind {
            Kind::Macvtap { proc, json, .. } => macvtap_counters(proc, json).map(Some),
            _ => Ok(None),
        }
    }

    /// Marks the start of the measurement window on the switch side.
    pub fn window_start(&mut self) -> Result<()> {
        match &mut self.kind {
            Kind::Macvtap { proc, json, start } => *start = Some((macvtap_counters(proc, json)?, tsc())),
            Kind::Testpmd { .. } => {}
            Kind::Ovs(o) => {
                o.appctl(&["dpif-netdev/pmd-stats-clear"])?;
            }
        }
        Ok(())
    }

    /// The switch's own figures since `window_start`.
    pub fn window_end(&mut self) -> Result<SwitchFigures> {
        match &mut self.kind {
            Kind::Macvtap { proc, json, start } => {
                let c1 = macvtap_counters(proc, json)?;
                let t1 = tsc();
                let (c0, t0) = start.unwrap_or((c1, t1));
                let (db, di, ds, df) = (c1.busy - c0.busy, c1.idle - c0.idle, c1.sleep - c0.sleep, c1.frames - c0.frames);
                // The worker is either polling or sleeping, so its busy cycles are the
                // window's cycles minus its idle and slept ones. This does not rely on
                // `busy_cycles` (which an older datapath added twice per busy iteration);
                // `reported_busy_x` compares the two.
                let wall = t1.saturating_sub(t0);
                let busy = wall.saturating_sub(di).saturating_sub(ds);
                let (dc, de) = (c1.enqueue_calls - c0.enqueue_calls, c1.enqueue_frames - c0.enqueue_frames);
                Ok(SwitchFigures {
                    own_cycles_per_pkt: (df > 0).then(|| db as f64 / df as f64),
                    frames_per_copy: (dc > 0).then(|| de as f64 / dc as f64),
                    cycles_per_pkt: (df > 0 && wall > 0).then(|| busy as f64 / df as f64),
                    busy_pct: (wall > 0).then(|| 100.0 * busy as f64 / wall as f64),
                    reported_busy_x: (busy > 0).then(|| db as f64 / busy as f64),
                    sleep_pct: (wall > 0).then(|| 100.0 * ds as f64 / wall as f64),
                    others_pct: None,
                })
            }
            Kind::Testpmd { .. } => Ok(SwitchFigures::default()),
            Kind::Ovs(o) => {
                let text = o.appctl(&["dpif-netdev/pmd-stats-show"])?;
                Ok(parse_pmd_stats(&text))
            }
        }
    }

    /// Stops the switch; testpmd reports its cycles per packet only at exit.
    pub fn stop(self) -> SwitchFigures {
        match self.kind {
            Kind::Macvtap { proc, .. } => {
                let log = proc.stop(STOP_GRACE);
                if !log.contains("mempool in use at exit: 0") {
                    eprintln!("bench: dpdk-macvtap did not report a clean exit: {}", proc::tail(&log, 3));
                }
                SwitchFigures::default()
            }
            Kind::Testpmd { proc } => {
                let log = proc.stop(STOP_GRACE);
                SwitchFigures { cycles_per_pkt: parse_testpmd_cycles(&log), ..Default::default() }
            }
            Kind::Ovs(o) => {
                drop(o);
                SwitchFigures::default()
            }
        }
    }
}

/// Sums the worker counters over workers from a fresh `--stats-json` dump (SIGUSR1).
fn macvtap_counters(proc: &Proc, json: &FsPath) -> Result<MacvtapCounters> {
    let before = std::fs::metadata(json).and_then(|m| m.modified()).ok();
    proc.signal(libc::SIGUSR1);
    let t0 = Instant::now();
    loop {
        let now = std::fs::metadata(json).and_then(|m| m.modified()).ok();
        if now.is_some() && now != before {
            break;
        }
        if t0.elapsed() > Duration::from_secs(3) {
            bail!("dpdk-macvtap did not rewrite {} after SIGUSR1", json.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let mut sum = MacvtapCounters::default();
    for w in v["workers"].as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
        let n = |k: &str| w[k].as_u64().unwrap_or(0);
        sum.busy += n("busy_cycles");
        sum.idle += n("idle_cycles");
        sum.sleep += n("sleep_cycles");
        sum.blocked += n("blocked_cycles");
        sum.frames += n("frames");
        sum.enqueue_calls += n("enqueue_calls");
        sum.enqueue_frames += n("enqueue_frames");
    }
    Ok(sum)
}

/// `CPU cycles/packet=12.34 (...)` from testpmd's exit statistics (`--record-core-cycles`).
pub fn parse_testpmd_cycles(log: &str) -> Option<f64> {
    log.lines()
        .filter_map(|l| l.split("CPU cycles/packet=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<f64>().ok())
        .next_back()
}

/// `avg processing cycles per packet: X` and `processing cycles: N (P%)` from pmd-stats-show.
pub fn parse_pmd_stats(text: &str) -> SwitchFigures {
    let mut f = SwitchFigures::default();
    for l in text.lines().map(str::trim) {
        if let Some(r) = l.strip_prefix("avg processing cycles per packet:") {
            f.cycles_per_pkt = r.split_whitespace().next().and_then(|x| x.parse().ok());
        } else if let Some(r) = l.strip_prefix("processing cycles:") {
            f.busy_pct = r.split('(').nth(1).and_then(|x| x.trim_end_matches(')').trim_end_matches('%').parse().ok());
        }
    }
    f
}

/// A private OVS instance: its own database, run directory, sockets and DPDK file prefix.
/// Dropping it stops both daemons.
pub struct Ovs {
    dir: PathBuf,
}

impl Ovs {
    fn vsctl(&self, args: &[&str]) -> Result<String> {
        let db = format!("unix:{}", self.dir.join("db.sock").display());
        proc::run(Command::new("ovs-vsctl").arg(format!("--db={db}")).arg("--timeout=60").args(args))
    }

    fn appctl(&self, args: &[&str]) -> Result<String> {
        proc::run(Command::new("ovs-appctl").arg("-t").arg(self.dir.join("ovs-vswitchd.ctl")).args(args))
    }

    fn ofctl(&self, args: &[&str]) -> Result<String> {
        let mgmt = format!("unix:{}", self.dir.join("br0.mgmt").display());
        proc::run(Command::new("ovs-ofctl").args(args.iter().map(|a| a.replace("@BR@", &mgmt))))
    }
}

impl Drop for Ovs {
    fn drop(&mut self) {
        let _ = proc::run(Command::new("ovs-appctl").arg("-t").arg(self.dir.join("ovs-vswitchd.ctl")).arg("exit"));
        proc::kill_pidfile(&self.dir.join("ovs-vswitchd.pid"));
        let _ = proc::run(Command::new("ovs-appctl").arg("-t").arg(self.dir.join("ovsdb-server.ctl")).arg("exit"));
        proc::kill_pidfile(&self.dir.join("ovsdb-server.pid"));
    }
}

/// The VEPA job as OpenFlow rules: guest -> uplink (own source MAC only); uplink unicast to
/// the owner of the destination; uplink broadcast/multicast to every guest but its source.
pub fn ovs_flows(guests: usize) -> String {
    const UP: usize = 1;
    let port = |i: usize| i + 2;
    let mcast = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00";
    let mut f = String::new();
    for i in 0..guests {
        let mac = mac_str(guest_mac(i));
        f.push_str(&format!("priority=100,in_port={},dl_src={mac},actions=output:{UP}\n", port(i)));
        f.push_str(&format!("priority=100,in_port={UP},dl_dst={mac},actions=output:{}\n", port(i)));
        let others: Vec<String> = (0..guests).filter(|&j| j != i).map(|j| format!("output:{}", port(j))).collect();
        let act = if others.is_empty() { "drop".to_owned() } else { others.join(",") };
        f.push_str(&format!("priority=110,in_port={UP},dl_src={mac},{mcast},actions={act}\n"));
    }
    let all: Vec<String> = (0..guests).map(|j| format!("output:{}", port(j))).collect();
    f.push_str(&format!("priority=100,in_port={UP},{mcast},actions={}\n", all.join(",")));
    f.push_str("priority=0,actions=drop\n");
    f
}

fn start_ovs(env: &Env, topo: &Topology) -> Result<Running> {
    let seq = env.next_seq();
    let dir = env.work.join(format!("ovs{seq}"));
    std::fs::create_dir_all(&dir)?;
    let d = |n: &str| dir.join(n).display().to_string();
    proc::run(Command::new("ovsdb-tool").args(["create", &d("conf.db"), OVS_SCHEMA]))?;
    let mut db = Command::new("taskset");
    db.args(["-c", "0", "ovsdb-server", &d("conf.db")]);
    db.args([format!("--remote=punix:{}", d("db.sock")), format!("--pidfile={}", d("ovsdb-server.pid"))]);
    db.args([format!("--unixctl={}", d("ovsdb-server.ctl")), format!("--log-file={}", d("ovsdb-server.log")), "--detach".into()]);
    env.record_cmd("ovs/ovsdb-server", &db);
    proc::run(&mut db)?;
    let ovs = Ovs { dir: dir.clone() };
    ovs.vsctl(&["--no-wait", "init"])?;
    let extra = format!("--file-prefix=bovs{seq} --no-pci --log-level=lib.eal:warning");
    let cfg = [
        "other_config:dpdk-init=true".to_owned(),
        "other_config:dpdk-lcore-mask=0x1".to_owned(),
        "other_config:pmd-cpu-mask=0x2".to_owned(),
        "other_config:dpdk-socket-mem=1024".to_owned(),
        format!("other_config:dpdk-extra=\"{extra}\""),
    ];
    let mut args = vec!["--no-wait", "set", "Open_vSwitch", "."];
    args.extend(cfg.iter().map(String::as_str));
    ovs.vsctl(&args)?;
    env.record("ovs/config", &format!("ovs-vsctl set Open_vSwitch . {}", cfg.join(" ")));
    let mut sw = Command::new(OVS_VSWITCHD);
    sw.env("OVS_RUNDIR", &dir).env("OVS_LOGDIR", &dir).env("OVS_DBDIR", &dir);
    sw.arg(format!("unix:{}", d("db.sock")));
    sw.args([format!("--pidfile={}", d("ovs-vswitchd.pid")), format!("--unixctl={}", d("ovs-vswitchd.ctl"))]);
    sw.args([format!("--log-file={}", d("ovs-vswitchd.log")), "--detach".into()]);
    env.record_cmd("ovs/ovs-vswitchd", &sw);
    proc::run(&mut sw).context("starting ovs-vswitchd-dpdk")?;
    ovs.vsctl(&["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"])?;
    let mtu: Vec<&str> = if topo.jumbo { vec!["mtu_request=9000"] } else { vec![] };
    let devargs = format!("options:dpdk-devargs=\"{}\"", topo.uplink.devargs(0));
    let mut a = vec!["add-port", "br0", "up", "--", "set", "Interface", "up", "type=dpdk", devargs.as_str(), "ofport_request=1"];
    a.extend(&mtu);
    ovs.vsctl(&a)?;
    let mut sockets = Vec::new();
    for i in 0..topo.guests {
        let name = format!("vm{i}");
        let ofp = format!("ofport_request={}", i + 2);
        let mut a = vec!["add-port", "br0", name.as_str(), "--", "set", "Interface", name.as_str(), "type=dpdkvhostuser", ofp.as_str()];
        a.extend(&mtu);
        ovs.vsctl(&a)?;
        sockets.push(dir.join(&name));
    }
    for port in std::iter::once("up".to_owned()).chain((0..topo.guests).map(|i| format!("vm{i}"))) {
        let err = ovs.vsctl(&["get", "Interface", &port, "error"])?;
        if !err.trim().is_empty() && err.trim() != "[]" {
            bail!("OVS port {port}: {}", err.trim());
        }
    }
    let flows = dir.join("flows.txt");
    std::fs::write(&flows, ovs_flows(topo.guests))?;
    ovs.ofctl(&["del-flows", "@BR@"])?;
    ovs.ofctl(&["add-flows", "@BR@", &flows.display().to_string()])?;
    env.record(&format!("ovs/flows ({} guests)", topo.guests), &ovs_flows(topo.guests));
    Ok(Running { sockets, kind: Kind::Ovs(ovs) })
}

/// `ovs-vswitchd-dpdk --version`, first line.
pub fn ovs_version() -> String {
    proc::run(Command::new(OVS_VSWITCHD).arg("--version"))
        .map(|s| s.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_else(|_| "not installed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pmd_stats_are_parsed() {
        let t = "pmd thread numa_id 0 core_id 1:\n  idle cycles: 10 (20.00%)\n  processing cycles: 40 (80.00%)\n  avg cycles per packet: 7.00 (579/123)\n  avg processing cycles per packet: 3.70 (456/123)\n";
        let f = parse_pmd_stats(t);
        assert_eq!(f.cycles_per_pkt, Some(3.70));
        assert_eq!(f.busy_pct, Some(80.0));
    }

    #[test]
    fn testpmd_cycles_are_parsed() {
        let t = "  CPU cycles/packet=55.12 (total cycles=1 / total RX packets=2) at 2600 MHz Clock\n";
        assert_eq!(parse_testpmd_cycles(t), Some(55.12));
    }

    #[test]
    fn flows_exclude_the_source_from_its_broadcast() {
        let f = ovs_flows(2);
        assert!(f.contains("in_port=1,dl_src=52:54:00:00:00:01,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=output:3"));
        assert!(f.contains("in_port=2,dl_src=52:54:00:00:00:01,actions=output:1"));
    }
}
