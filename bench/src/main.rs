//! `macvtap-bench`: runs dpdk-macvtap, testpmd io-fwd, OVS-DPDK and the kernel macvtap on the
//! same topology and cores, interleaved run by run, and writes a Markdown report and a PNG.
//!
//! `bash bench/run.sh` is the one command; it installs, builds and then calls
//! `macvtap-bench run ...`. Everything here runs on the orchestrator's main thread; the
//! measured processes are children pinned to cores 0 (generator) and 1 (switch).

mod cpu;
mod floor;
mod guest;
mod idle;
mod kernel;
mod latency;
mod model;
mod pcap;
mod plot;
mod proc;
mod profile;
mod report;
mod scale;
mod systems;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use model::{Case, Env, Path, System, EXTERNAL_MAC};
use systems::{SwitchFigures, Topology, Uplink};

#[derive(Parser, Debug)]
#[command(name = "macvtap-bench", about = "PVP-style comparison of dpdk-macvtap with testpmd, OVS-DPDK and kernel macvtap")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Runs the comparison and writes the report.
    Run(RunArgs),
    /// Rewrites the report and plot from a saved raw .json, optionally replacing whole
    /// cases with those of other runs (`--merge rerun.json`; the report says so). Also
    /// rewrites an `idle` report from its .json.
    Report {
        raw: PathBuf,
        #[arg(long)]
        merge: Vec<PathBuf>,
    },
    /// Kernel macvtap helper: writes frames into a tap fd or reads them (see kernel.rs).
    Tap(kernel::TapArgs),
    /// The idle sleep: the idle worker's CPU share per `--idle-sleep-max` (and testpmd's), a
    /// burst after a long idle period (lost, delayed) and the wake-up delay (see idle.rs).
    Idle(idle::IdleArgs),
}

#[derive(clap::Args, Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunArgs {
    /// Runs per system and case (interleaved A B C A B C ...).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Smoke check: 1 run, short windows, 64 B only, latency at one load.
    #[arg(long)]
    quick: bool,
    /// Systems to compare, in interleaving order: macvtap (its default idle sleep, or
    /// `--idle-sleep-max`), macvtap-nosleep (the same binary with `--idle-sleep-max 0`),
    /// testpmd, ovs, kernel.
    #[arg(long, value_delimiter = ',', default_value = "macvtap,macvtap-nosleep,testpmd,ovs,kernel")]
    systems: Vec<String>,
    /// `--idle-sleep-max` (µs) for the `macvtap` system; default: the binary's own default.
    #[arg(long, value_name = "MICROSECONDS")]
    #[serde(default)]
    idle_sleep_max: Option<u32>,
    /// Frame sizes (FCS included) for guest->uplink and uplink->guest.
    #[arg(long, value_delimiter = ',', default_value = "64,512,1518,9000")]
    sizes: Vec<usize>,
    /// Paths to measure: g2u (guest -> uplink), u2g (uplink -> guest), fanout, scale (uplink ->
    /// guests with many configured; `--scale`).
    #[arg(long, value_delimiter = ',', default_value = "g2u,u2g,fanout")]
    #[serde(default)]
    paths: Vec<String>,
    /// Broadcast fan-out guest counts.
    #[arg(long, value_delimiter = ',', default_value = "2,8")]
    fanout: Vec<usize>,
    /// Frame sizes for the fan-out cases.
    #[arg(long, value_delimiter = ',', default_value = "64,1518")]
    fanout_sizes: Vec<usize>,
    /// Guests on the g2u and u2g paths: 1 is the single-guest case; N > 1 has all N guests
    /// sending at once (g2u) or receiving at once (u2g, uplink frames spread round-robin
    /// over their MACs), with testpmd io-fwd given N uplink/guest port pairs.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    #[serde(default)]
    guests: Vec<usize>,
    /// Where the switch's control/main thread runs on the g2u and u2g paths: `apart` (on the
    /// generator's core 0, the forwarding thread alone on core 1) and/or `shared` (the whole
    /// switch process on core 1, as on a host that gives the switch one core).
    #[arg(long, value_delimiter = ',', default_value = "apart")]
    #[serde(default)]
    control_core: Vec<String>,
    /// The `scale` path: uplink -> guests with this many configured guests each (one case
    /// per count, at the first size), 1 guest having 1 MAC and more sharing `--scale-macs`.
    /// Not 1024: DPDK 22.11's vhost library watches 1023 descriptors in all (listening
    /// sockets and connections), which the switch checks at start; the guests nobody
    /// attaches are client-role (one descriptor each), so 990 leaves room for 32 attached.
    /// 32 (all attached) separates the spread over guests from the table's size.
    #[arg(long, value_delimiter = ',', default_value = "1,32,64,256,990")]
    #[serde(default)]
    scale: Vec<usize>,
    /// MACs in all for the scale cases of more than one guest (several per guest, rounded
    /// up to the same number each).
    #[arg(long, default_value_t = 4096)]
    #[serde(default)]
    scale_macs: usize,
    /// Interleave the cases too: run 1 of every case, then run 2 of every case, ... (ratios
    /// between cases, e.g. the scale rows, then compare neighbouring runs).
    #[arg(long)]
    #[serde(default)]
    interleave_cases: bool,
    /// Seconds of `perf record` on the switch's forwarding thread after the first run's
    /// window of each case (dpdk-macvtap and testpmd); 0: none. Needs `perf` (linux-perf).
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    #[serde(default)]
    perf: u64,
    /// Guests attached in the scale cases (at most the configured count); the frames go to a
    /// spread of their MACs.
    #[arg(long, default_value_t = 32)]
    #[serde(default)]
    scale_attached: usize,
    /// Seconds of traffic before the window.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Seconds in the measurement window.
    #[arg(long, default_value_t = 4)]
    duration: u64,
    /// Skip the latency histograms.
    #[arg(long)]
    no_latency: bool,
    /// Latency loads: shares of each system's maximum through the loop ("10%") or absolute
    /// rates in frames per second ("1000"). `--quick`: 50% only.
    #[arg(long, value_delimiter = ',', default_value = "1%,10%,50%,90%")]
    #[serde(default)]
    latency_loads: Vec<String>,
    /// Latency runs per system and load (interleaved).
    #[arg(long, default_value_t = 1)]
    #[serde(default)]
    latency_runs: usize,
    /// Before each measurement, wait up to this many seconds for the machine to be quiet
    /// (everything else below 10 % of a core over a second); 0: do not wait. The machine may
    /// be shared; the report gives every window's other load either way.
    #[arg(long, default_value_t = 0, value_name = "SECONDS")]
    #[serde(default)]
    wait_quiet: u64,
    /// Use `--no-huge` for every DPDK process (OVS-DPDK is then skipped).
    #[arg(long)]
    no_huge: bool,
    /// The switch binary under test.
    #[arg(long, default_value = "target/release/dpdk-macvtap")]
    macvtap_bin: PathBuf,
    /// The latency generator.
    #[arg(long, default_value = "target/release/macvtap-latgen")]
    latgen_bin: PathBuf,
    /// Where the report, plot and raw data go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Scratch directory (sockets, pcaps, logs).
    #[arg(long, default_value = "/tmp/macvtap-bench")]
    work: PathBuf,
}

/// One measurement: a system on a case, in run `run`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub case: Case,
    pub system: System,
    pub run: usize,
    pub pps: f64,
    pub switch: SwitchFigures,
    /// `--perf`: the forwarding thread's symbols by share of samples (first run only).
    #[serde(default)]
    pub perf_top: Vec<(f64, String)>,
}

/// Everything a report is made from (also saved as raw.json).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Results {
    pub args: RunArgs,
    pub started: String,
    pub host: String,
    pub versions: Vec<(String, String)>,
    pub samples: Vec<Sample>,
    /// (case label, system, reason) for what was not measured.
    pub skipped: Vec<(String, String, String)>,
    pub latency: Vec<latency::LatencyResult>,
    pub commands: Vec<(String, String)>,
    /// Remarks added when a report is rebuilt (e.g. merged cases).
    #[serde(default)]
    pub notes: Vec<String>,
    /// The `run` options as given, without the paths bench/run.sh adds (for "Rerun:").
    #[serde(default)]
    pub argv: Option<Vec<String>>,
}

/// This process's `run` options without the ones bench/run.sh passes itself.
fn user_argv() -> Vec<String> {
    let mut out = Vec::new();
    let mut it = std::env::args().skip(2);
    while let Some(x) = it.next() {
        if ["--work", "--macvtap-bin", "--latgen-bin", "--out"].contains(&x.as_str()) {
            it.next();
            continue;
        }
        if ["--work=", "--macvtap-bin=", "--latgen-bin=", "--out="].iter().any(|p| x.starts_with(p)) {
            continue;
        }
        out.push(x);
    }
    out
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run(a),
        Cmd::Report { raw, merge } => rereport(&raw, &merge),
        Cmd::Tap(a) => kernel::tap_main(a),
        Cmd::Idle(a) => idle::run(a),
    };
    if let Err(e) = r {
        eprintln!("macvtap-bench: {e:#}");
        std::process::exit(1);
    }
}

fn rereport(raw: &std::path::Path, merge: &[PathBuf]) -> Result<()> {
    let text = std::fs::read_to_string(raw)?;
    let mut res: Results = match serde_json::from_str(&text) {
        Ok(r) => r,
        // The raw data of `macvtap-bench idle`.
        Err(e) if merge.is_empty() => return idle::rereport(raw).with_context(|| format!("{} is neither a `run` ({e}) nor an `idle` result", raw.display())),
        Err(e) => return Err(e.into()),
    };
    for m in merge {
        let other: Results = serde_json::from_str(&std::fs::read_to_string(m)?)?;
        let cases = report::cases(&other);
        let labels: Vec<String> = cases.iter().map(|c| c.label()).collect();
        res.samples.retain(|s| !cases.contains(&s.case));
        res.skipped.retain(|(c, _, _)| !labels.contains(c));
        res.samples.extend(other.samples.iter().cloned());
        if !other.latency.is_empty() {
            res.latency = other.latency.clone();
            res.notes.push(format!("The latency table comes from the run started {}.", other.started));
        }
        res.skipped.extend(other.skipped.iter().cloned());
        for (k, v) in &other.commands {
            if !res.commands.iter().any(|(k2, _)| k2 == k) {
                res.commands.push((k.clone(), v.clone()));
            }
        }
        res.notes.push(format!(
            "Cases {} come from the run started {} ({}), which replaced this run's measurements of them.",
            labels.join(", "),
            other.started,
            m.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
        ));
    }
    let md = raw.with_extension("md");
    report::write(&res, &md, &raw.with_extension("png"))?;
    println!("wrote {}", md.display());
    Ok(())
}

fn run(mut a: RunArgs) -> Result<()> {
    if a.quick {
        a.runs = 1;
        a.warmup = 2;
        a.duration = 2;
        a.sizes = vec![64];
        a.fanout_sizes = vec![64];
    }
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let systems: Vec<System> = a
        .systems
        .iter()
        .map(|s| System::parse(s).with_context(|| format!("unknown system {s:?} (macvtap, macvtap-nosleep, testpmd, ovs, kernel)")))
        .collect::<Result<_>>()?;
    for l in &a.latency_loads {
        latency::Load::parse(l)?;
    }
    if !a.macvtap_bin.exists() {
        bail!("{} not found: build it with `cargo build --release`", a.macvtap_bin.display());
    }
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    std::fs::create_dir_all(&a.out)?;
    let mut env = Env::new(a.work.clone(), abs(&a.macvtap_bin)?, abs(&a.latgen_bin).unwrap_or_default(), !a.no_huge, a.warmup, a.duration);
    env.idle_sleep_max = a.idle_sleep_max;

    // 64 B first (the headline) with its fan-out, then latency, then the other sizes in the
    // order given: a run cut short still has the most important cells.
    let mut first = Vec::new();
    let mut later = Vec::new();
    let head = if a.sizes.contains(&64) { 64 } else { a.sizes.first().copied().unwrap_or(64) };
    let mut sizes = vec![head];
    sizes.extend(a.sizes.iter().copied().filter(|&s| s != head));
    let want = |p: &str| a.paths.iter().any(|x| x == p);
    let mut shared_modes = Vec::new();
    for m in if a.control_core.is_empty() { vec!["apart".to_owned()] } else { a.control_core.clone() } {
        match m.as_str() {
            "apart" => shared_modes.push(false),
            "shared" => shared_modes.push(true),
            _ => bail!("--control-core takes apart and/or shared, not {m:?}"),
        }
    }
    let counts = if a.guests.is_empty() { vec![1] } else { a.guests.clone() };
    if counts.contains(&0) || a.scale.contains(&0) {
        bail!("guest counts must be at least 1");
    }
    for &size in &sizes {
        let dst = if size == head { &mut first } else { &mut later };
        for &shared_core in &shared_modes {
            for &n in &counts {
                if want("g2u") {
                    let path = if n == 1 { Path::GuestToUplink } else { Path::GuestsToUplink(n) };
                    dst.push(Case { path, size, shared_core });
                }
                if want("u2g") {
                    let path = if n == 1 { Path::UplinkToGuest } else { Path::UplinkToGuests(n) };
                    dst.push(Case { path, size, shared_core });
                }
            }
        }
    }
    for &n in a.fanout.iter().filter(|_| want("fanout")) {
        for &size in &a.fanout_sizes {
            let dst = if size == head { &mut first } else { &mut later };
            dst.push(Case { path: Path::Fanout(n), size, shared_core: false });
        }
    }
    for &configured in a.scale.iter().filter(|_| want("scale")) {
        let macs = if configured == 1 { 1 } else { a.scale_macs.div_ceil(configured) * configured };
        if macs / configured > 256 {
            bail!("--scale-macs {} over {configured} guests is more than 256 MACs per guest (scale_mac numbers them in one byte)", a.scale_macs);
        }
        let path = Path::Scale { configured, macs, connected: a.scale_attached.clamp(1, configured) };
        first.push(Case { path, size: head, shared_core: false });
    }
    let cases: Vec<Case> = first.iter().chain(&later).copied().collect();
    install_stop_handler();

    let started = report::now();
    let host = report::hostname();
    let mut res = Results {
        args: a.clone(),
        started: started.clone(),
        host: host.clone(),
        versions: report::versions(&env),
        samples: Vec::new(),
        skipped: Vec::new(),
        latency: Vec::new(),
        commands: Vec::new(),
        notes: Vec::new(),
        argv: Some(user_argv()),
    };
    let stem = report::new_stem(&a.out, &format!("{}-{}", started.replace(':', "").replace(' ', "-"), host));
    let raw = stem.with_extension("json");
    let total = cases.len() * a.runs * systems.len();
    let mut done = 0;
    // Case by case, or (--interleave-cases) run by run across the cases, so that a slow
    // phase of a shared machine falls on every case alike.
    let order: Vec<(usize, usize)> = if a.interleave_cases {
        (0..a.runs).flat_map(|run| (0..cases.len()).map(move |k| (k, run))).collect()
    } else {
        (0..cases.len()).flat_map(|k| (0..a.runs).map(move |run| (k, run))).collect()
    };
    for (k, run) in order {
        let case = &cases[k];
        if k == first.len() && run == 0 && !a.no_latency && !stopping() {
            res.latency = latency::run_all(&env, &systems, &a)?;
            std::fs::write(&raw, serde_json::to_string_pretty(&res)?)?;
        }
        for &sys in &systems {
            done += 1;
            if res.skipped.iter().any(|(c, s, _)| *c == case.label() && *s == sys.name()) {
                continue;
            }
            if stopping() {
                break;
            }
            wait_quiet(a.wait_quiet);
            eprint!("[{done}/{total}] {} | {} | run {}: ", case.label(), sys, run + 1);
            let perf_s = if run == 0 { a.perf } else { 0 };
            match measure(&env, sys, case, perf_s) {
                Ok(Some((pps, fig, perf_top))) => {
                    eprintln!("{:.3} Mpps{}", pps / 1e6, fig.cycles_per_pkt.map(|c| format!(", {c:.0} cycles/pkt")).unwrap_or_default());
                    res.samples.push(Sample { case: *case, system: sys, run, pps, switch: fig, perf_top });
                }
                Ok(None) => {
                    eprintln!("not applicable");
                    res.skipped.push((case.label(), sys.name().into(), not_applicable(sys, case)));
                }
                Err(e) => {
                    eprintln!("FAILED: {e:#}");
                    res.skipped.push((case.label(), sys.name().into(), format!("failed: {}", first_line(&format!("{e:#}")))));
                }
            }
        }
        std::fs::write(&raw, serde_json::to_string_pretty(&res)?)?;
    }
    if !a.no_latency && !stopping() && first.len() == cases.len() {
        res.latency = latency::run_all(&env, &systems, &a)?;
    }
    res.commands = env.commands.borrow().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    std::fs::write(&raw, serde_json::to_string_pretty(&res)?)?;
    let md = stem.with_extension("md");
    report::write(&res, &md, &stem.with_extension("png"))?;
    println!("wrote {} ({} and raw data beside it)", md.display(), stem.with_extension("png").display());
    Ok(())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().chars().take(200).collect()
}

fn not_applicable(sys: System, case: &Case) -> String {
    match (sys, case.path) {
        (System::Testpmd, Path::Fanout(_)) => "io-fwd pairs ports; it has no broadcast".into(),
        (System::Ovs, _) if case.jumbo() => "OVS refuses mtu_request=9000 on the net_null/net_pcap uplink (the PMDs report a 1500-byte maximum)".into(),
        _ => "not applicable".into(),
    }
}

pub fn abs(p: &std::path::Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).with_context(|| format!("{} not found", p.display()))
}

/// Runs one system on one case; returns guest-side packets per second and the switch's own
/// figures, or None when the system cannot do the case.
/// A measurement: guest-side packets per second, the switch's figures, its profile.
type Measured = (f64, SwitchFigures, Vec<(f64, String)>);

/// `perf_s` > 0: the forwarding thread is then profiled that long after the window.
fn measure(env: &Env, sys: System, case: &Case, perf_s: u64) -> Result<Option<Measured>> {
    if sys == System::Kernel {
        return Ok(kernel::measure(env, case)?.map(|(pps, fig)| (pps, fig, Vec::new())));
    }
    let n = case.path.guests();
    let macs: Vec<[u8; 6]> = (0..n).map(|g| case.path.macs_of(g)[0]).collect();
    let (uplink, pair_uplinks) = match case.path {
        Path::GuestToUplink => (Uplink::Null, Vec::new()),
        Path::GuestsToUplink(n) => (Uplink::Null, vec![Uplink::Null; n]),
        Path::UplinkToGuest => (Uplink::Pcap(pcap_for(env, case, "", &macs)?), Vec::new()),
        Path::UplinkToGuests(_) => {
            let pairs = macs.iter().enumerate().map(|(i, m)| Ok(Uplink::Pcap(pcap_for(env, case, &format!("-port{i}"), &[*m])?))).collect::<Result<_>>()?;
            (Uplink::Pcap(pcap_for(env, case, "", &macs)?), pairs)
        }
        Path::Fanout(_) => (Uplink::Pcap(pcap_for(env, case, "", &[[0xff; 6]])?), Vec::new()),
        Path::Scale { .. } => {
            // MAC k of every attached guest before MAC k+1 of any: consecutive frames go to
            // different guests, and a capped file still reaches all of them.
            let per = case.path.macs_of(0).len();
            let dsts: Vec<[u8; 6]> = (0..per).flat_map(|k| (0..n).map(move |g| case.path.macs_of(g)[k])).collect();
            (Uplink::Pcap(pcap_for(env, case, "", &dsts)?), Vec::new())
        }
    };
    let mut topo = Topology::new(n, uplink, case.jumbo(), &case.path.key());
    topo.pair_uplinks = pair_uplinks;
    topo.shared_core = case.shared_core;
    if let Path::Scale { configured, .. } = case.path {
        topo.macs = (0..configured).map(|g| case.path.macs_of(g)).collect();
    }
    let Some(mut sw) = systems::start(env, sys, &topo)? else { return Ok(None) };
    let mut g = guest::start(env, case, &sw.sockets, &macs, sys.key())?;
    nap(Duration::from_secs(env.warmup_s))?;
    let started = sw.window_start();
    let pids: Vec<i32> = sw.pid().into_iter().chain(g.pids()).collect();
    let others = cpu::OthersLoad::read(&pids);
    nap(Duration::from_secs(env.duration_s))?;
    let others_pct = others.and_then(|o| o.since(&pids));
    let mut fig = if started.is_ok() { sw.window_end().unwrap_or_default() } else { SwitchFigures::default() };
    if sys != System::Ovs {
        // OVS daemonised itself: its CPU time is not in `pids`.
        fig.others_pct = others_pct;
    }
    // One more stats period so the last window sample is printed (or the profile's time).
    let mut perf_top = Vec::new();
    match sw.pid().filter(|_| perf_s > 0 && sys != System::Ovs) {
        Some(pid) => match profile::record(env, pid, case, sys, perf_s) {
            Ok(t) => perf_top = t,
            Err(e) => eprint!("(perf: {e:#}) "),
        },
        None => nap(Duration::from_millis(1200))?,
    }
    if let Some(p) = g.dead() {
        bail!("guest testpmd exited early; log {}:\n{}", p.log.display(), proc::tail(&p.log_text(), 15));
    }
    let glogs = g.stop(Duration::from_secs(10));
    let at_exit = sw.stop();
    if fig.cycles_per_pkt.is_none() {
        fig.cycles_per_pkt = at_exit.cycles_per_pkt;
    }
    let pps = guest::rate_all(&glogs, case, env.warmup_s as usize, env.duration_s as usize)?;
    if pps <= 0.0 {
        bail!("no traffic reached the guest side");
    }
    Ok(Some((pps, fig, perf_top)))
}

/// The pcap replayed for `case` (written once per case and `suffix`).
fn pcap_for(env: &Env, case: &Case, suffix: &str, dsts: &[[u8; 6]]) -> Result<PathBuf> {
    let f = env.work.join(format!("{}-{}{suffix}.pcap", case.path.key(), case.size));
    if !f.exists() {
        pcap::write(&f, dsts, EXTERNAL_MAC, case.buf_len())?;
    }
    Ok(f)
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// SIGINT/SIGTERM end the run after the current measurement's processes are stopped (their
/// `Drop`s run), and the report is still written from what was measured.
pub fn install_stop_handler() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t) };
    }
}

pub fn stopping() -> bool {
    STOP.load(std::sync::atomic::Ordering::Relaxed)
}

/// Waits until everything but this harness's children uses less than 10 % of a core over a
/// second, at most `max_s` seconds (0: returns at once). Says on stderr when it waited.
pub fn wait_quiet(max_s: u64) {
    if max_s == 0 {
        return;
    }
    let t0 = std::time::Instant::now();
    loop {
        let o = cpu::OthersLoad::read(&[]);
        if nap(Duration::from_secs(1)).is_err() {
            return;
        }
        let p = o.and_then(|o| o.since(&[]));
        if !p.is_some_and(|p| p >= latency::QUIET_OTHERS_PCT) {
            if t0.elapsed() > Duration::from_millis(1500) {
                eprintln!("(waited {} s for a quiet machine)", t0.elapsed().as_secs());
            }
            return;
        }
        if t0.elapsed() >= Duration::from_secs(max_s) {
            eprintln!("(machine still busy after {max_s} s: others {:.0} % of a core; measuring anyway)", p.unwrap_or(0.0));
            return;
        }
    }
}

/// Sleeps, but gives up early (with an error) when the run is being stopped.
pub fn nap(d: Duration) -> Result<()> {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < d {
        if stopping() {
            bail!("stopped by signal");
        }
        std::thread::sleep(Duration::from_millis(50).min(d - t0.elapsed()));
    }
    Ok(())
}
