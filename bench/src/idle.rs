//! `macvtap-bench idle`: what dpdk-macvtap's adaptive idle sleep saves and what it costs,
//! per `--idle-sleep-max` bound, beside pure polling (bound 0) and testpmd io-fwd (which polls
//! at 100 %). At each bound the switch runs with its default `--idle-block-after` (it blocks
//! after a lull where every queue can wake it: in `uplink` below, not in `hairpin`), and for
//! the `--sleep-only` bounds also with timed sleeps alone (`--idle-block-after 0`):
//!
//! 1. **Idle CPU share** of the forwarding thread alone (`/proc/PID/task/TID/stat` utime +
//!    stime, cross-checked with `schedstat` and the switch's own `sleep_cycles`), with the
//!    guests connected and sending nothing: the generator sleeps (it does not poll either).
//! 2. **A burst after a long idle period**: N frames sent as fast as the generator's queue
//!    takes them, after the idle window; how many arrive, how long the first and the last
//!    take.
//! 3. **Wake-up delay**: single frames, each after 100 ms of idle (the worker is at its bound
//!    by then), timed one by one: what the first frame after a lull waits.
//!
//! Three scenarios, each with a freshly started switch per measurement:
//!
//! - `hairpin`: the latency loop (guest A -> switch -> `net_ring` uplink -> switch -> guest
//!   B). A retries what its queue refuses, as a guest's virtio-net driver waits for room:
//!   nothing can be lost, a sleep only delays.
//! - `uplink`: the uplink is `net_vhost` and the generator's port A plays the wire behind it
//!   (`queue_size` descriptors: the uplink's "rx ring"); A does *not* retry (`--no-retry`), so
//!   what arrives while that ring is full is dropped and counted, as a NIC drops at a full rx
//!   ring. Frames go to guest B.
//! - `afpacket`: the same with a `net_af_packet` uplink on one end of a veth pair and the
//!   generator's port A a `net_af_packet` port on the other: a port without rx interrupts,
//!   whose kernel interface the switch watches to block (`rte::arrivals` in the switch).
//!
//! Runs are interleaved: run 1: scenario 1: every variant, scenario 2: every variant; run 2:
//! ... Core 0 = generator + the switch's control thread, core 1 = the switch's worker.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cpu;
use crate::floor::{self, FloorSample};
use crate::model::{guest_mac, mac_str, Env, System, EXTERNAL_MAC};
use crate::proc::{self, Proc};
use crate::report::{self, stats};
use crate::systems::{self, Topology, Uplink};

#[derive(clap::Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IdleArgs {
    /// `--idle-sleep-max` bounds to measure, µs (0 = pure polling).
    #[arg(long, value_delimiter = ',', default_value = "0,50,100,250,500,1000")]
    bounds: Vec<u32>,
    /// Bounds to measure also with timed sleeps only (`--idle-block-after 0`), beside the
    /// default (which blocks after a lull where the ports can wake the worker).
    #[arg(long, value_delimiter = ',', default_value = "250")]
    #[serde(default)]
    sleep_only: Vec<u32>,
    /// `--idle-block-after` values (µs) to measure at the `--sleep-only` bounds beside the
    /// binary's default one (e.g. 1000).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    block_after: Vec<u64>,
    /// Leave out testpmd io-fwd (the 100 % reference).
    #[arg(long)]
    no_testpmd: bool,
    /// Runs per variant and scenario (interleaved).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Smoke check: 1 run, bounds 0 and 250, a 2 s window, 10 wake-up probes, hairpin only.
    #[arg(long)]
    quick: bool,
    /// hairpin (guest -> guest through a net_ring uplink; the sender retries), uplink (the
    /// generator plays the wire behind a net_vhost uplink; refused frames are drops),
    /// afpacket (the same behind a net_af_packet uplink on a veth).
    #[arg(long, value_delimiter = ',', default_value = "hairpin,uplink,afpacket")]
    scenarios: Vec<String>,
    /// Seconds between the links coming up (the generator going idle) and the CPU window.
    #[arg(long, default_value_t = 1)]
    settle: u64,
    /// Seconds in the CPU window.
    #[arg(long, default_value_t = 5)]
    window: u64,
    /// Bursts: N frames as fast as the generator's queue takes them, or N@PPS paced at PPS
    /// frames per second. The first burst follows the idle window (settle + window + 1 s of
    /// idle), the others `--idle-between-ms` after the previous one.
    #[arg(long, value_delimiter = ',', default_value = "1024,4096@2000000,4096@4000000")]
    bursts: Vec<String>,
    #[arg(long, default_value_t = 1000)]
    idle_between_ms: u64,
    /// Single frames after the bursts, each after `--wake-gap-ms` of idle.
    #[arg(long, default_value_t = 50)]
    wake_probes: usize,
    #[arg(long, default_value_t = 100)]
    wake_gap_ms: u64,
    /// Descriptors of the generator's virtio-user queues (in `uplink`, A's tx queue is the
    /// uplink's rx ring; dpdk-macvtap's `--descriptors` default is 1024 too).
    #[arg(long, default_value_t = 1024)]
    queue_size: u32,
    /// `--no-huge` for every DPDK process.
    #[arg(long)]
    no_huge: bool,
    /// Before each measurement, wait up to this many seconds for the machine to be quiet
    /// (everything else below 10 % of a core over a second); 0: do not wait.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    #[serde(default)]
    wait_quiet: u64,
    #[arg(long, default_value = "target/release/dpdk-macvtap")]
    macvtap_bin: PathBuf,
    #[arg(long, default_value = "target/release/macvtap-latgen")]
    latgen_bin: PathBuf,
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value = "/tmp/macvtap-bench")]
    work: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Variant {
    /// dpdk-macvtap with this `--idle-sleep-max` (0 = pure polling), blocking after its
    /// default `--idle-block-after` where the ports allow.
    Macvtap(u32),
    /// The same with `--idle-block-after 0`: timed sleeps only.
    SleepOnly(u32),
    /// The same with this `--idle-block-after` (µs).
    BlockAfter(u32, u64),
    Testpmd,
}

impl Variant {
    fn label(self) -> String {
        match self {
            Variant::Macvtap(0) => "dpdk-macvtap --idle-sleep-max 0 (pure polling)".into(),
            Variant::Macvtap(b) => format!("dpdk-macvtap --idle-sleep-max {b}"),
            Variant::SleepOnly(b) => format!("dpdk-macvtap --idle-sleep-max {b} --idle-block-after 0 (timed sleeps only)"),
            Variant::BlockAfter(b, a) => format!("dpdk-macvtap --idle-sleep-max {b} --idle-block-after {a}"),
            Variant::Testpmd => "testpmd io-fwd".into(),
        }
    }

    fn short(self) -> String {
        match self {
            Variant::Macvtap(b) => format!("macvtap {b}"),
            Variant::SleepOnly(b) => format!("macvtap {b} sleep-only"),
            Variant::BlockAfter(b, a) => format!("macvtap {b} block-after-{a}"),
            Variant::Testpmd => "testpmd".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Hairpin,
    Uplink,
    AfPacket,
}

impl Scenario {
    fn parse(s: &str) -> Result<Scenario> {
        match s {
            "hairpin" => Ok(Scenario::Hairpin),
            "uplink" => Ok(Scenario::Uplink),
            "afpacket" => Ok(Scenario::AfPacket),
            _ => bail!("unknown scenario {s:?} (hairpin, uplink, afpacket)"),
        }
    }

    fn key(self) -> &'static str {
        match self {
            Scenario::Hairpin => "hairpin",
            Scenario::Uplink => "uplink",
            Scenario::AfPacket => "afpacket",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Scenario::Hairpin => "hairpin: guest A -> switch -> net_ring uplink -> switch -> guest B; A retries refused frames (a guest driver waits), so nothing can be lost",
            Scenario::Uplink => "uplink: the generator's port A is the wire behind a net_vhost uplink, its tx virtqueue the uplink's rx ring; A does not retry, so frames arriving at a full ring are dropped (as at a NIC's full rx ring); frames go to guest B",
            Scenario::AfPacket => "afpacket: a net_af_packet uplink on a veth whose other end is the generator's port A (net_af_packet too); the uplink has no rx interrupts, so a blocked worker wakes through a packet socket on its veth end; A does not retry; frames go to guest B",
        }
    }
}

/// One burst as latgen reports it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct BurstOut {
    pub frames: usize,
    #[serde(default)]
    pub rate_pps: u64,
    pub idle_ms: u64,
    pub sent: u64,
    pub refused: u64,
    pub received: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub send_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IdleSample {
    pub scenario: String,
    pub variant: Variant,
    pub run: usize,
    /// Worker thread, utime + stime over the window, % of one core.
    pub cpu_pct: f64,
    /// Worker thread, schedstat run time over the window, % of one core.
    pub sched_pct: Option<f64>,
    /// Worker thread's voluntary context switches per second (its sleeps).
    pub wakeups_per_s: f64,
    /// The whole switch process, utime + stime, % of one core.
    pub process_pct: f64,
    /// dpdk-macvtap: `sleep_cycles` over the window's TSC cycles, %.
    pub sleep_pct: Option<f64>,
    /// dpdk-macvtap: `blocked_cycles` (the part of the sleep spent blocked), %.
    #[serde(default)]
    pub blocked_pct: Option<f64>,
    /// Core 1 (the worker's) busy with anything but the worker, % (from /proc/stat): the
    /// machine is shared.
    #[serde(default)]
    pub core1_other_pct: Option<f64>,
    /// Core 1 steal time (the hypervisor ran something else), %.
    #[serde(default)]
    pub core1_steal_pct: Option<f64>,
    pub bursts: Vec<BurstOut>,
    /// Wake-up probes: ns each, 0 = lost.
    pub wake_ns: Vec<u64>,
    /// The worker while the probes trickled in (results before this field have none).
    #[serde(default)]
    pub probes: Option<ProbeCpu>,
}

/// The worker thread while the wake-up probes trickle in (one frame every gap): from the end
/// of the bursts to the last probe.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ProbeCpu {
    /// Run time (schedstat), % of one core.
    pub cpu_pct: f64,
    /// Voluntary context switches per second (sleeps and blocks).
    pub wakeups_per_s: f64,
    /// dpdk-macvtap: share of the time blocked, %.
    pub blocked_pct: Option<f64>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct IdleResults {
    pub args: IdleArgs,
    pub started: String,
    pub host: String,
    pub versions: Vec<(String, String)>,
    pub samples: Vec<IdleSample>,
    /// A bare sleeping thread at each bound, once per run (`floor`).
    #[serde(default)]
    pub floors: Vec<FloorSample>,
    pub failures: Vec<(String, String)>,
    pub commands: Vec<(String, String)>,
}

pub fn run(mut a: IdleArgs) -> Result<()> {
    if a.quick {
        a.runs = 1;
        a.bounds = vec![0, 250];
        a.window = 2;
        a.wake_probes = 10;
        a.scenarios = vec!["hairpin".into()];
        a.bursts = vec!["1024".into()];
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let scenarios: Vec<Scenario> = a.scenarios.iter().map(|s| Scenario::parse(s)).collect::<Result<_>>()?;
    let mut variants: Vec<Variant> = a.bounds.iter().map(|&b| Variant::Macvtap(b)).collect();
    variants.extend(a.sleep_only.iter().filter(|&&b| b > 0).map(|&b| Variant::SleepOnly(b)));
    for &b in a.sleep_only.iter().filter(|&&b| b > 0) {
        variants.extend(a.block_after.iter().map(|&after| Variant::BlockAfter(b, after)));
    }
    if !a.no_testpmd {
        variants.push(Variant::Testpmd);
    }
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    std::fs::create_dir_all(&a.out)?;
    let env = Env::new(a.work.clone(), crate::abs(&a.macvtap_bin)?, crate::abs(&a.latgen_bin)?, !a.no_huge, 0, 0);
    crate::install_stop_handler();
    let started = report::now();
    let host = report::hostname();
    let stem = report::new_stem(&a.out, &format!("{started}-{host}-idle"));
    let mut res = IdleResults {
        args: a.clone(),
        started,
        host,
        versions: report::versions(&env),
        samples: Vec::new(),
        floors: Vec::new(),
        failures: Vec::new(),
        commands: Vec::new(),
    };
    let total = a.runs * scenarios.len() * variants.len();
    let mut done = 0;
    'all: for run in 0..a.runs {
        for &sc in &scenarios {
            for &v in &variants {
                if crate::stopping() {
                    break 'all;
                }
                done += 1;
                crate::wait_quiet(a.wait_quiet);
                eprint!("[{done}/{total}] idle | {} | {} | run {}: ", sc.key(), v.label(), run + 1);
                match measure(&env, &a, sc, v, run) {
                    Ok(s) => {
                        let b0 = s.bursts.first();
                        eprintln!(
                            "worker {:.2}% of a core ({}), {:.0} wake-ups/s; burst {}: {}/{} arrived, first {:.0} µs; wake-up p50 {:.0} µs",
                            s.cpu_pct,
                            s.sched_pct.map(|p| format!("schedstat {p:.2}%")).unwrap_or_default(),
                            s.wakeups_per_s,
                            b0.map(|b| b.frames).unwrap_or(0),
                            b0.map(|b| b.received).unwrap_or(0),
                            b0.map(|b| b.frames).unwrap_or(0),
                            b0.map(|b| b.first_ns as f64 / 1e3).unwrap_or(0.0),
                            pct(&received(&s.wake_ns), 0.5) / 1e3
                        );
                        res.samples.push(s);
                    }
                    Err(e) => {
                        eprintln!("FAILED: {e:#}");
                        res.failures.push((format!("{} | {} | run {}", sc.key(), v.label(), run + 1), first_line(&format!("{e:#}"))));
                    }
                }
                std::fs::write(stem.with_extension("json"), serde_json::to_string_pretty(&res)?)?;
            }
        }
        // With no switch running: the same sleeps, and nothing else.
        for &b in a.bounds.iter().filter(|&&b| b > 0) {
            if crate::stopping() {
                break 'all;
            }
            crate::wait_quiet(a.wait_quiet);
            eprint!("floor | sleep {b} µs alone | run {}: ", run + 1);
            match floor::measure(b, Duration::from_secs(a.window), run) {
                Ok(f) => {
                    eprintln!("{:.2}% of a core, {:.0} wake-ups/s", f.cpu_pct, f.wakeups_per_s);
                    res.floors.push(f);
                }
                Err(e) => {
                    eprintln!("FAILED: {e:#}");
                    res.failures.push((format!("floor | {b} µs | run {}", run + 1), first_line(&format!("{e:#}"))));
                }
            }
        }
    }
    res.commands = env.commands.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let json = stem.with_extension("json");
    std::fs::write(&json, serde_json::to_string_pretty(&res)?)?;
    let md = stem.with_extension("md");
    std::fs::write(&md, write_report(&res))?;
    println!("wrote {} (raw data in {})", md.display(), json.display());
    Ok(())
}

/// Rewrites the Markdown report from a saved .json.
pub fn rereport(json: &std::path::Path) -> Result<()> {
    let res: IdleResults = serde_json::from_str(&std::fs::read_to_string(json)?)?;
    let md = json.with_extension("md");
    std::fs::write(&md, write_report(&res))?;
    println!("wrote {}", md.display());
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(200).collect()
}

fn measure(env: &Env, a: &IdleArgs, sc: Scenario, v: Variant, run: usize) -> Result<IdleSample> {
    let seq = env.next_seq();
    // Port A of the generator: the wire behind the uplink (None: guest A of the hairpin).
    // The veth, if any, lives until the measurement ends.
    let (topo, wire, _veth) = match sc {
        Scenario::Hairpin => (Topology::new(2, Uplink::Loop, false, "idle hairpin"), None, None),
        Scenario::Uplink => {
            let s = env.work.join(format!("uplink{seq}.sock"));
            let w = format!("net_virtio_user0,path={},queues=1,queue_size={}", s.display(), a.queue_size);
            (Topology::new(1, Uplink::Vhost(s), false, "idle uplink"), Some(w), None)
        }
        Scenario::AfPacket => {
            let v = Veth::new(env, seq)?;
            let w = format!("net_af_packet0,iface={}", v.wire_end);
            (Topology::new(1, Uplink::AfPacket(v.switch_end.clone()), false, "idle afpacket"), Some(w), Some(v))
        }
    };
    let sw = match v {
        Variant::Macvtap(b) => systems::start_macvtap(env, &topo, Some(b), &[])?,
        Variant::SleepOnly(b) => systems::start_macvtap(env, &topo, Some(b), &["--idle-block-after", "0"])?,
        Variant::BlockAfter(b, after) => systems::start_macvtap(env, &topo, Some(b), &["--idle-block-after", &after.to_string()])?,
        Variant::Testpmd => systems::start(env, System::Testpmd, &topo)?.context("testpmd cannot run this topology")?,
    };
    let virtio = |i: usize, sock: &std::path::Path| format!("net_virtio_user{i},path={},queues=1,queue_size={}", sock.display(), a.queue_size);
    let (port_a, port_b, mac_a, mac_b) = match wire {
        None => (virtio(0, &sw.sockets[0]), virtio(1, &sw.sockets[1]), guest_mac(0), guest_mac(1)),
        Some(w) => (w, virtio(1, &sw.sockets[0]), EXTERNAL_MAC, guest_mac(0)),
    };
    let idle_secs = a.settle + a.window + 1;
    let json = env.work.join(format!("idle-{}-{}-{seq}.json", sc.key(), v.short().replace(' ', "")));
    let mut cmd = crate::latency::latgen_command(env, seq);
    for (port, mac) in [(&port_a, mac_a), (&port_b, mac_b)] {
        cmd.arg("--vdev").arg(if port.starts_with("net_virtio_user") { format!("{port},mac={}", mac_str(mac)) } else { port.clone() });
    }
    cmd.args(["--", "--mac-a", &mac_str(mac_a), "--mac-b", &mac_str(mac_b), "--size", "64", "--json"]).arg(&json);
    cmd.args(["--idle-secs", &idle_secs.to_string()]);
    cmd.args(["--bursts", &a.bursts.join(",")]);
    cmd.args(["--idle-between-ms", &a.idle_between_ms.to_string()]);
    cmd.args(["--wake-probes", &a.wake_probes.to_string(), "--wake-gap-ms", &a.wake_gap_ms.to_string()]);
    if sc != Scenario::Hairpin {
        cmd.arg("--no-retry");
    }
    let log = env.work.join(format!("idle-latgen-{seq}.log"));
    let mut p = Proc::spawn("macvtap-latgen", cmd, &log)?;
    env.record(&format!("idle {}/latgen", sc.key()), &p.cmdline);
    p.wait_for("latgen: idle for", Duration::from_secs(60))?;

    crate::nap(Duration::from_secs(a.settle))?;
    let pid = sw.pid().context("no switch pid")?;
    let tid = cpu::worker_thread(pid, 1)?;
    let m0 = (sw.macvtap_counters()?, systems::tsc());
    let (c0, p0, k0) = (cpu::read_thread(pid, tid)?, cpu::read_process_ticks(pid)?, cpu::read_core(1).ok());
    crate::nap(Duration::from_secs(a.window))?;
    let (c1, p1, k1) = (cpu::read_thread(pid, tid)?, cpu::read_process_ticks(pid)?, cpu::read_core(1).ok());
    let m1 = (sw.macvtap_counters()?, systems::tsc());
    let (cpu_pct, sched_pct, wakeups_per_s) = cpu::shares(&c0, &c1);
    let secs = c1.at.duration_since(c0.at).as_secs_f64();
    let process_pct = 100.0 * p1.saturating_sub(p0) as f64 / cpu::clk_tck() as f64 / secs;
    let core1 = k0.zip(k1).map(|(x, y)| cpu::core_shares(&x, &y));
    let (sleep_pct, blocked_pct) = (cycles_share(&m0, &m1, |c| c.sleep), cycles_share(&m0, &m1, |c| c.blocked));

    let budget = Duration::from_millis(
        (idle_secs * 1000).saturating_sub((a.settle + a.window) * 1000)
            + a.bursts.len() as u64 * (a.idle_between_ms + 2000)
            + a.wake_probes as u64 * (a.wake_gap_ms + 1000)
            + 30_000,
    );
    let t0 = std::time::Instant::now();
    // The worker while single frames trickle in (the wake-up probes, one per gap): from the
    // end of the bursts (a gap before the first probe) to within 5 ms of the last probe. Run
    // time from schedstat only: the stat ticks (1/100 s) say little over a short window.
    let probes = if a.wake_probes > 0 {
        p.wait_for("latgen: bursts sent", budget)?;
        let (pc0, pm0) = (cpu::read_thread(pid, tid)?, (sw.macvtap_counters()?, systems::tsc()));
        p.wait_for_every("latgen: probes done", budget.saturating_sub(t0.elapsed()), Duration::from_millis(5))?;
        let (pc1, pm1) = (cpu::read_thread(pid, tid)?, (sw.macvtap_counters()?, systems::tsc()));
        let (_, sched, wakeups) = cpu::shares(&pc0, &pc1);
        sched.map(|cpu_pct| ProbeCpu { cpu_pct, wakeups_per_s: wakeups, blocked_pct: cycles_share(&pm0, &pm1, |c| c.blocked) })
    } else {
        None
    };
    while p.alive() && t0.elapsed() < budget {
        if crate::stopping() {
            bail!("stopped by signal");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = p.stop(Duration::from_secs(5));
    sw.stop();
    let v_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("latgen wrote no result; log {}:\n{}", log.display(), proc::tail(&text, 10)))?,
    )?;
    let bursts: Vec<BurstOut> = serde_json::from_value(v_json["bursts"].clone())?;
    let wake_ns: Vec<u64> = serde_json::from_value(v_json["wake"]["ns"].clone())?;
    Ok(IdleSample {
        scenario: sc.key().into(),
        variant: v,
        run,
        cpu_pct,
        sched_pct,
        wakeups_per_s,
        process_pct,
        sleep_pct,
        blocked_pct,
        core1_other_pct: core1.map(|(busy, _)| (busy - cpu_pct).max(0.0)),
        core1_steal_pct: core1.map(|(_, steal)| steal),
        bursts,
        wake_ns,
        probes,
    })
}

/// A veth pair in the switch's network namespace: `switch_end` for the uplink, `wire_end`
/// for the generator's port A; deleted on drop.
struct Veth {
    switch_end: String,
    wire_end: String,
}

impl Veth {
    fn new(env: &Env, seq: u32) -> Result<Veth> {
        // Names of this bench process's own (another run's cannot be the same).
        let id = std::process::id() % 100_000;
        let v = Veth { switch_end: format!("mvb{id}u{seq}"), wire_end: format!("mvb{id}w{seq}") };
        // A leftover of an interrupted run.
        let _ = proc::run(std::process::Command::new("ip").args(["link", "del", &v.switch_end]));
        proc::run(std::process::Command::new("ip").args(["link", "add", &v.switch_end, "type", "veth", "peer", "name", &v.wire_end]))?;
        for end in [&v.switch_end, &v.wire_end] {
            // No IPv6 (where the host has it): its neighbour and router messages would wake
            // the worker and reach the guest.
            let ipv6 = format!("/proc/sys/net/ipv6/conf/{end}/disable_ipv6");
            if std::path::Path::new(&ipv6).exists() {
                std::fs::write(&ipv6, "1").with_context(|| format!("disabling IPv6 on {end}"))?;
            }
            proc::run(std::process::Command::new("ip").args(["link", "set", end, "up"]))?;
        }
        env.record("idle afpacket/veth", "ip link add mvbPuN type veth peer name mvbPwN; echo 1 > /proc/sys/net/ipv6/conf/{mvbPuN,mvbPwN}/disable_ipv6; ip link set {mvbPuN,mvbPwN} up");
        Ok(v)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = proc::run(std::process::Command::new("ip").args(["link", "del", &self.switch_end]));
    }
}

/// How much counter `f` of the switch (in TSC cycles) grew between two readings (counters,
/// TSC), as a share of the cycles between them, %.
fn cycles_share(a: &(Option<systems::MacvtapCounters>, u64), b: &(Option<systems::MacvtapCounters>, u64), f: fn(&systems::MacvtapCounters) -> u64) -> Option<f64> {
    match (a, b) {
        ((Some(c0), t0), (Some(c1), t1)) if t1 > t0 => Some(100.0 * f(c1).saturating_sub(f(c0)) as f64 / (t1 - t0) as f64),
        _ => None,
    }
}

/// The floor beside the worker: what sleeping at each bound costs with nothing else done.
fn write_floor(o: &mut String, res: &IdleResults) {
    if res.floors.is_empty() {
        return;
    }
    let _ = writeln!(o, "### What the sleeps alone cost (the floor)\n");
    let _ = writeln!(
        o,
        "A thread of the bench itself, pinned to core 1 with the worker's timer slack (1 µs), doing nothing but sleep the bound \
at a time for the same window, with no switch running (`bench/src/floor.rs`), read the same way. The idle worker cannot cost \
less at that bound; the difference is its own pass between sleeps.\n"
    );
    let sc = scenarios(res);
    let cols: Vec<String> = sc.iter().flat_map(|s| [format!("worker % ({s})"), format!("worker %, sleeps only ({s})")]).collect();
    let _ = writeln!(o, "| bound µs | sleeping alone % (stat) | alone % (schedstat) | alone wake-ups/s | {} |", cols.join(" | "));
    let _ = writeln!(o, "|---:|---:|---:|---:|{}", "---:|".repeat(cols.len()));
    let mut bounds: Vec<u32> = res.floors.iter().map(|f| f.bound_us).collect();
    bounds.sort_unstable();
    bounds.dedup();
    for b in bounds {
        let fs: Vec<&FloorSample> = res.floors.iter().filter(|f| f.bound_us == b).collect();
        let worker: Vec<String> = sc
            .iter()
            .flat_map(|s| {
                let of = |v: Variant| range(&res.samples.iter().filter(|x| &x.scenario == s && x.variant == v).map(|x| x.cpu_pct).collect::<Vec<_>>(), 1);
                [of(Variant::Macvtap(b)), of(Variant::SleepOnly(b))]
            })
            .collect();
        let _ = writeln!(
            o,
            "| {b} | {} | {} | {} | {} |",
            range(&fs.iter().map(|f| f.cpu_pct).collect::<Vec<_>>(), 1),
            range(&fs.iter().filter_map(|f| f.sched_pct).collect::<Vec<_>>(), 1),
            range(&fs.iter().map(|f| f.wakeups_per_s).collect::<Vec<_>>(), 0),
            worker.join(" | ")
        );
    }
    let _ = writeln!(o);
}

/// The delays of the probes that arrived (0 marks a lost one).
fn received(ns: &[u64]) -> Vec<f64> {
    ns.iter().filter(|&&x| x > 0).map(|&x| x as f64).collect()
}

/// Nearest-rank percentile (q in 0..=1) of an unsorted list; 0 when empty.
pub fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let k = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[k - 1]
}

fn range(v: &[f64], prec: usize) -> String {
    match stats(v) {
        Some((m, lo, hi)) if v.len() > 1 => format!("{m:.prec$} ({lo:.prec$}–{hi:.prec$})"),
        Some((m, _, _)) => format!("{m:.prec$}"),
        None => "–".into(),
    }
}

fn variants(res: &IdleResults) -> Vec<Variant> {
    let mut v: Vec<Variant> = Vec::new();
    for s in &res.samples {
        if !v.contains(&s.variant) {
            v.push(s.variant);
        }
    }
    v
}

fn scenarios(res: &IdleResults) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in &res.samples {
        if !v.contains(&s.scenario) {
            v.push(s.scenario.clone());
        }
    }
    v
}

pub fn write_report(res: &IdleResults) -> String {
    let a = &res.args;
    let mut o = String::new();
    let _ = writeln!(o, "# dpdk-macvtap idle sleep: {} on {}\n", res.started, res.host);
    let _ = writeln!(
        o,
        "{} run(s) per variant and scenario, interleaved (each run: every scenario, each with every variant in turn), each \
measurement on a freshly started switch. Median (min–max) over runs. **The machine was shared** (2 cores, other engineers' \
builds and tests at times): CPU shares and delays include whatever else ran.\n",
        a.runs
    );
    let _ = writeln!(o, "**Cores:** core 0 = `macvtap-latgen` (both generator ports, one lcore) + the switch's control/main thread; core 1 = the switch's one forwarding thread.\n");
    let _ = writeln!(o, "Scenarios:\n");
    for sc in scenarios(res) {
        if let Ok(s) = Scenario::parse(&sc) {
            let _ = writeln!(o, "- {}", s.describe());
        }
    }
    let _ = writeln!(
        o,
        "\nPer measurement: the generator connects both ports (virtio-user, {} descriptors per queue; in afpacket, port A is net_af_packet on the veth), prints that it goes idle and \
sleeps (no polling) for {} s; {} s later the forwarding thread's CPU time is read for {} s; then the bursts (64 B frames): {}; \
the first after that idle period, each other after {} ms of idle; then {} single frames each after {} ms of idle (the wake-up probes).\n",
        a.queue_size,
        a.settle + a.window + 1,
        a.settle,
        a.window,
        a.bursts.iter().map(|b| burst_label(b)).collect::<Vec<_>>().join(", "),
        a.idle_between_ms,
        a.wake_probes,
        a.wake_gap_ms
    );
    let _ = writeln!(o, "Rerun: `macvtap-bench idle{}` (as root; hugepages as for `bench/run.sh`)\n", rerun_args(a));

    // 1. CPU
    let _ = writeln!(o, "## Idle worker CPU share (no traffic, guests connected)\n");
    let _ = writeln!(
        o,
        "`worker` = the forwarding thread only (`rte-worker-1`): utime + stime from `/proc/PID/task/TID/stat` over the window, \
% of one core (clock ticks of 1/{} s, so ±{:.1} points per run); `schedstat` = the same thread's run time from \
`/proc/PID/task/TID/schedstat` (ns); `slept` = the switch's own `sleep_cycles` over the window's TSC cycles; `wake-ups/s` = \
the thread's voluntary context switches per second (one per sleep); `process` = the whole switch process (stat); `core 1 others` = \
core 1's busy time (/proc/stat) minus the worker's: other tasks of the shared machine on the worker's core; `steal` = core 1's steal time. \
A pure-polling thread below 100 % is one that other tasks pushed off its core part of the time. Goal: the worker at most 5 % of a core.\n",
        cpu::clk_tck(),
        100.0 / cpu::clk_tck() as f64 / a.window.max(1) as f64
    );
    for sc in scenarios(res) {
        let _ = writeln!(o, "### {sc}\n");
        let _ = writeln!(o, "| system | worker % (stat) | worker % (schedstat) | slept % | wake-ups/s | process % | core 1 others % | steal % | ≤ 5 %? |");
        let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for v in variants(res) {
            let ss: Vec<&IdleSample> = res.samples.iter().filter(|s| s.scenario == sc && s.variant == v).collect();
            if ss.is_empty() {
                continue;
            }
            let cpu: Vec<f64> = ss.iter().map(|s| s.cpu_pct).collect();
            let med = stats(&cpu).map(|x| x.0).unwrap_or(0.0);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.label(),
                range(&cpu, 1),
                range(&ss.iter().filter_map(|s| s.sched_pct).collect::<Vec<_>>(), 1),
                range(&ss.iter().filter_map(|s| s.sleep_pct).collect::<Vec<_>>(), 1),
                range(&ss.iter().map(|s| s.wakeups_per_s).collect::<Vec<_>>(), 0),
                range(&ss.iter().map(|s| s.process_pct).collect::<Vec<_>>(), 1),
                range(&ss.iter().filter_map(|s| s.core1_other_pct).collect::<Vec<_>>(), 0),
                range(&ss.iter().filter_map(|s| s.core1_steal_pct).collect::<Vec<_>>(), 1),
                if med <= 5.0 { "yes" } else { "no" }
            );
        }
        let _ = writeln!(o);
    }

    write_floor(&mut o, res);

    // 2. Bursts
    let _ = writeln!(o, "## A burst after a long idle period\n");
    let _ = writeln!(
        o,
        "`first` = the burst's first frame, handed to A -> received at B (the wake-up, plus the forwarding); `last` = first frame \
handed to A -> last frame received; `lost` = frames sent minus received, plus (uplink) frames A's full queue refused, summed \
over runs / frames offered over runs. µs, median (min–max) over runs.\n"
    );
    for sc in scenarios(res) {
        let nb = res.samples.iter().filter(|s| s.scenario == sc).map(|s| s.bursts.len()).max().unwrap_or(0);
        for k in 0..nb {
            let Some(b0) = res.samples.iter().find(|s| s.scenario == sc && s.bursts.len() > k).map(|s| &s.bursts[k]) else { continue };
            let pace = if b0.rate_pps == 0 { "as fast as A's queue takes them".to_owned() } else { format!("paced at {} Mpps", b0.rate_pps as f64 / 1e6) };
            let _ = writeln!(o, "### {sc}: burst of {} frames, {pace}, after {} ms idle\n", b0.frames, b0.idle_ms);
            let _ = writeln!(o, "| system | lost (all runs) | refused by A's queue | first frame µs | last frame µs | p99 µs |");
            let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
            for v in variants(res) {
                let bs: Vec<&BurstOut> = res.samples.iter().filter(|s| s.scenario == sc && s.variant == v).filter_map(|s| s.bursts.get(k)).collect();
                if bs.is_empty() {
                    continue;
                }
                let offered: usize = bs.iter().map(|b| b.frames).sum();
                let lost: u64 = bs.iter().map(|b| b.refused + b.sent.saturating_sub(b.received)).sum();
                let refused: u64 = bs.iter().map(|b| b.refused).sum();
                let us = |f: &dyn Fn(&BurstOut) -> u64| range(&bs.iter().filter(|b| b.received > 0).map(|b| f(b) as f64 / 1e3).collect::<Vec<_>>(), 0);
                let _ = writeln!(
                    o,
                    "| {} | {lost} / {offered} | {refused} | {} | {} | {} |",
                    v.label(),
                    us(&|b| b.first_ns),
                    us(&|b| b.last_ns),
                    us(&|b| b.p99_ns)
                );
            }
            let _ = writeln!(o);
        }
    }

    // 3. Wake-up probes
    let _ = writeln!(o, "## Wake-up delay: single frames after {} ms of idle\n", a.wake_gap_ms);
    let _ = writeln!(
        o,
        "Each probe is one frame, handed to A -> received at B, after {} ms in which nothing was sent (the worker has reached its \
bound by then). All probes of all runs pooled; µs. Pure polling and testpmd show what the path itself costs. \
Worker while they trickle in: its thread's run time (schedstat) from the end of the bursts (one gap before the first \
probe) to within 5 ms of the last probe, % of a core, its sleeps and blocks per second, and the share of that time it \
spent blocked as the switch counts it (a block counts when it ends); median (min–max) of the runs.\n",
        a.wake_gap_ms
    );
    let _ = writeln!(o, "| scenario | system | probes | lost | p50 µs | p90 µs | p99 µs | max µs | mean µs | worker % of a core | wake-ups/s | blocked % |");
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for sc in scenarios(res) {
        for v in variants(res) {
            let ss: Vec<&IdleSample> = res.samples.iter().filter(|s| s.scenario == sc && s.variant == v).collect();
            let all: Vec<u64> = ss.iter().flat_map(|s| s.wake_ns.iter().copied()).collect();
            if all.is_empty() {
                continue;
            }
            let got = received(&all);
            let mean = if got.is_empty() { 0.0 } else { got.iter().sum::<f64>() / got.len() as f64 };
            let probe = |f: fn(&ProbeCpu) -> Option<f64>, prec: usize| range(&ss.iter().filter_map(|s| s.probes.as_ref().and_then(f)).collect::<Vec<_>>(), prec);
            let _ = writeln!(
                o,
                "| {sc} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {} |",
                v.label(),
                all.len(),
                all.len() - got.len(),
                pct(&got, 0.5) / 1e3,
                pct(&got, 0.9) / 1e3,
                pct(&got, 0.99) / 1e3,
                pct(&got, 1.0) / 1e3,
                mean / 1e3,
                probe(|p| Some(p.cpu_pct), 1),
                probe(|p| Some(p.wakeups_per_s), 0),
                probe(|p| p.blocked_pct, 1),
            );
        }
    }

    // 4. The trade-off
    let _ = writeln!(o, "\n## The trade-off per bound (all scenarios pooled)\n");
    let _ = writeln!(o, "| --idle-sleep-max µs | worker % of a core, idle (median of runs) | wake-up p50 µs | wake-up p99 µs | first frame of a burst after idle, median µs | frames lost, bursts ≤ queue size | uplink: lost of paced bursts larger than the ring |");
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---|");
    for v in variants(res) {
        let ss: Vec<&IdleSample> = res.samples.iter().filter(|s| s.variant == v).collect();
        let cpu = stats(&ss.iter().map(|s| s.cpu_pct).collect::<Vec<_>>()).map(|x| x.0).unwrap_or(0.0);
        let wake = received(&ss.iter().flat_map(|s| s.wake_ns.iter().copied()).collect::<Vec<_>>());
        let first = stats(&ss.iter().filter_map(|s| s.bursts.first()).filter(|b| b.received > 0).map(|b| b.first_ns as f64 / 1e3).collect::<Vec<_>>()).map(|x| x.0);
        let small: Vec<&BurstOut> = ss.iter().flat_map(|s| s.bursts.iter()).filter(|b| b.frames <= a.queue_size as usize).collect();
        let paced: Vec<&BurstOut> = ss.iter().filter(|s| s.scenario == "uplink").flat_map(|s| s.bursts.iter()).filter(|b| b.rate_pps > 0).collect();
        let paced_lost: Vec<String> = {
            let mut rates: Vec<u64> = paced.iter().map(|b| b.rate_pps).collect();
            rates.sort_unstable();
            rates.dedup();
            rates
                .iter()
                .map(|&r| {
                    let bs: Vec<&&BurstOut> = paced.iter().filter(|b| b.rate_pps == r).collect();
                    let lost: u64 = bs.iter().map(|b| b.refused + b.sent.saturating_sub(b.received)).sum();
                    let offered: usize = bs.iter().map(|b| b.frames).sum();
                    format!("{lost} / {offered} at {} Mpps", r as f64 / 1e6)
                })
                .collect()
        };
        let lost: u64 = small.iter().map(|b| b.refused + b.sent.saturating_sub(b.received)).sum();
        let offered: usize = small.iter().map(|b| b.frames).sum();
        let name = match v {
            Variant::Macvtap(b) => b.to_string(),
            Variant::SleepOnly(b) => format!("{b}, sleeps only"),
            Variant::BlockAfter(b, after) => format!("{b}, block after {after} µs"),
            Variant::Testpmd => "testpmd".into(),
        };
        let _ = writeln!(
            o,
            "| {name} | {cpu:.1} | {:.1} | {:.1} | {} | {lost} / {offered} | {} |",
            pct(&wake, 0.5) / 1e3,
            pct(&wake, 0.99) / 1e3,
            first.map(|f| format!("{f:.0}")).unwrap_or_else(|| "–".into()),
            if paced_lost.is_empty() { "–".into() } else { paced_lost.join("; ") }
        );
    }

    if !res.failures.is_empty() {
        let _ = writeln!(o, "\n## Failed measurements\n");
        for (what, why) in &res.failures {
            let _ = writeln!(o, "- {what}: {why}");
        }
    }

    let _ = writeln!(o, "\n## Per-run values\n");
    for sc in scenarios(res) {
        for v in variants(res) {
            let ss: Vec<&IdleSample> = res.samples.iter().filter(|s| s.scenario == sc && s.variant == v).collect();
            if ss.is_empty() {
                continue;
            }
            let _ = writeln!(o, "- {sc}, {}:", v.label());
            let _ = writeln!(o, "  - worker % (stat): [{}]", ss.iter().map(|s| format!("{:.1}", s.cpu_pct)).collect::<Vec<_>>().join(", "));
            let _ = writeln!(o, "  - worker % (schedstat): [{}]", ss.iter().map(|s| s.sched_pct.map(|p| format!("{p:.2}")).unwrap_or_else(|| "–".into())).collect::<Vec<_>>().join(", "));
            if ss.iter().any(|s| s.sleep_pct.is_some()) {
                let _ = writeln!(o, "  - slept %: [{}]", ss.iter().map(|s| s.sleep_pct.map(|p| format!("{p:.1}")).unwrap_or_else(|| "–".into())).collect::<Vec<_>>().join(", "));
                let _ = writeln!(o, "  - of which blocked %: [{}]", ss.iter().map(|s| s.blocked_pct.map(|p| format!("{p:.1}")).unwrap_or_else(|| "–".into())).collect::<Vec<_>>().join(", "));
            }
            let _ = writeln!(o, "  - wake-ups/s: [{}]", ss.iter().map(|s| format!("{:.0}", s.wakeups_per_s)).collect::<Vec<_>>().join(", "));
            let _ = writeln!(
                o,
                "  - core 1 others % / steal %: [{}]",
                ss.iter()
                    .map(|s| format!("{} / {}", s.core1_other_pct.map(|p| format!("{p:.0}")).unwrap_or_else(|| "–".into()), s.core1_steal_pct.map(|p| format!("{p:.1}")).unwrap_or_else(|| "–".into())))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for k in 0..ss.iter().map(|s| s.bursts.len()).max().unwrap_or(0) {
                let v: Vec<String> = ss
                    .iter()
                    .filter_map(|s| s.bursts.get(k))
                    .map(|b| format!("{}/{} arrived, first {:.0} µs, last {:.0} µs", b.received, b.frames, b.first_ns as f64 / 1e3, b.last_ns as f64 / 1e3))
                    .collect();
                let _ = writeln!(o, "  - burst {}: [{}]", k + 1, v.join("; "));
            }
            let _ = writeln!(
                o,
                "  - wake-up p50 / max µs per run: [{}]",
                ss.iter()
                    .map(|s| {
                        let g = received(&s.wake_ns);
                        format!("{:.0} / {:.0}", pct(&g, 0.5) / 1e3, pct(&g, 1.0) / 1e3)
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    let _ = writeln!(o, "\n## Versions\n");
    for (k, v) in &res.versions {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(o, "\n## Exact commands (first of each kind; the variants differ only in `--idle-sleep-max`, the sockets and prefixes)\n");
    for (k, v) in &res.commands {
        let _ = writeln!(o, "{k}:\n```\n{v}\n```");
    }
    o
}

/// "4096@2000000" -> "4096 frames at 2 Mpps".
fn burst_label(spec: &str) -> String {
    match spec.split_once('@') {
        Some((n, r)) => format!("{n} frames paced at {} Mpps", r.parse::<f64>().map(|x| x / 1e6).unwrap_or(0.0)),
        None => format!("{spec} frames as fast as A's queue takes them"),
    }
}

fn rerun_args(a: &IdleArgs) -> String {
    if a.quick {
        return " --quick".into();
    }
    let mut s = String::new();
    let _ = write!(s, " --runs {} --bounds {}", a.runs, a.bounds.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","));
    let _ = write!(s, " --sleep-only {}", a.sleep_only.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","));
    if !a.block_after.is_empty() {
        let _ = write!(s, " --block-after {}", a.block_after.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(","));
    }
    let _ = write!(s, " --scenarios {}", a.scenarios.join(","));
    let _ = write!(s, " --bursts {}", a.bursts.join(","));
    let _ = write!(s, " --window {} --wake-probes {} --wake-gap-ms {}", a.window, a.wake_probes, a.wake_gap_ms);
    if a.no_testpmd {
        s.push_str(" --no-testpmd");
    }
    if a.wait_quiet > 0 {
        let _ = write!(s, " --wait-quiet {}", a.wait_quiet);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(pct(&v, 0.5), 50.0);
        assert_eq!(pct(&v, 0.99), 99.0);
        assert_eq!(pct(&v, 1.0), 100.0);
        assert_eq!(pct(&[], 0.5), 0.0);
    }
}
