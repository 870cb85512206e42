//! Latency at fixed offered loads, from timestamps our own generator (`macvtap-latgen`)
//! puts in the frames. The loop is the same for every DPDK system:
//!
//! ```text
//! core 0: macvtap-latgen  [guest A] --vhost-user--> switch --> uplink net_ring0 (tx ring = rx ring)
//!                         [guest B] <--vhost-user-- switch <------------'
//! core 1: the switch's forwarding thread
//! ```
//!
//! A sends to B's MAC; the switch sends it out of the uplink (VEPA), the ring hands it straight
//! back (a hairpin in one vdev), and the switch delivers it to B. testpmd does the same with
//! `--port-topology=chained` over ports A, ring, B. First the loop's maximum is measured
//! (`--rate 0`), then the loads of `--latency-loads` (shares of that maximum, e.g. 1 %, 10 %,
//! 50 %, 90 %, or absolute rates), each with a freshly started switch, `--latency-runs`
//! times, interleaved across systems (run 1: load 1 A B C, load 2 A B C, ...; run 2: ...).
//! The two dpdk-macvtap variants (default idle sleep, sleep off) are offered the same rates:
//! shares of the pure-polling variant's maximum, so their percentiles compare directly.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::model::{guest_mac, mac_str, Env, System};
use crate::report::stats;
use crate::proc::Proc;
use crate::systems::{self, Topology, Uplink};
use crate::{Results, RunArgs};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LatencyResult {
    pub system: System,
    /// "max" or a share of it, e.g. "50%".
    pub load: String,
    pub offered_pps: u64,
    pub rx_pps: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub lost: u64,
    pub samples: u64,
    /// Run index (0-based) when loads are measured several times.
    #[serde(default)]
    pub run: usize,
    /// dpdk-macvtap: share of (about) the window its worker slept, in %.
    #[serde(default)]
    pub sleep_pct: Option<f64>,
    /// CPU time of everything but the switch and latgen over (about) the window, % of one core.
    #[serde(default)]
    pub others_pct: Option<f64>,
}

/// One offered load: a share of the loop's maximum, or an absolute rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    Share(f64),
    Pps(u64),
}

impl Load {
    /// "10%" or "1000" (frames per second; "1000pps" too).
    pub fn parse(s: &str) -> Result<Load> {
        let t = s.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p.trim().parse().with_context(|| format!("latency load {s:?}"))?;
            if !(v > 0.0 && v <= 100.0) {
                bail!("latency load {s:?}: a share must be in (0, 100] %");
            }
            return Ok(Load::Share(v / 100.0));
        }
        let v: u64 = t.trim_end_matches("pps").trim().parse().with_context(|| format!("latency load {s:?} (give 10% or 1000)"))?;
        if v == 0 {
            bail!("latency load {s:?}: 0 is the maximum, measured anyway");
        }
        Ok(Load::Pps(v))
    }

    pub fn label(self) -> String {
        match self {
            Load::Share(f) => format!("{}%", fmt_g(f * 100.0)),
            Load::Pps(p) => format!("{p} pps"),
        }
    }

    fn rate(self, max: f64) -> u64 {
        match self {
            Load::Share(f) => ((max * f) as u64).max(1),
            Load::Pps(p) => p,
        }
    }
}

fn fmt_g(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

pub fn run_all(env: &Env, systems: &[System], a: &RunArgs) -> Result<Vec<LatencyResult>> {
    let loads: Vec<Load> = if a.quick { vec![Load::Share(0.5)] } else { a.latency_loads.iter().map(|s| Load::parse(s)).collect::<Result<_>>()? };
    let runs = if a.quick { 1 } else { a.latency_runs.max(1) };
    let secs = if a.quick { 2 } else { 4 };
    let mut out = Vec::new();
    // The kernel has no vhost-user side; OVS cannot close the net_ring loop (see OVS_NOTE).
    let dpdk: Vec<System> = systems.iter().copied().filter(|s| s.is_macvtap() || *s == System::Testpmd).collect();
    let mut max = Vec::new();
    for &sys in &dpdk {
        if crate::stopping() {
            return Ok(out);
        }
        crate::wait_quiet(a.wait_quiet);
        eprint!("latency | {sys} | max: ");
        match one(env, sys, 0, secs) {
            Ok(r) if r.rx_pps <= 0.0 => eprintln!("FAILED: nothing came back through the loop"),
            Ok(r) => {
                eprintln!("{:.3} Mpps, p50 {} ns", r.rx_pps / 1e6, r.p50_ns);
                max.push((sys, r.rx_pps));
                out.push(LatencyResult { load: "max".into(), ..r });
            }
            Err(e) => eprintln!("FAILED: {e:#}"),
        }
    }
    // Both dpdk-macvtap variants get shares of the pure-polling maximum (the same binary: at
    // the maximum it never sleeps), so they are offered identical rates.
    if let Some(&(_, m)) = max.iter().find(|(s, _)| *s == System::MacvtapNosleep) {
        for x in max.iter_mut().filter(|(s, _)| *s == System::Macvtap) {
            x.1 = m;
        }
    }
    // Runs, then loads, interleaved across systems: run 1: 10% A B C, 50% A B C, ...
    for run in 0..runs {
        for &load in &loads {
            for &(sys, m) in &max {
                if crate::stopping() {
                    return Ok(out);
                }
                let rate = load.rate(m);
                crate::wait_quiet(a.wait_quiet);
                eprint!("latency | run {} | {sys} | {} = {:.4} Mpps: ", run + 1, load.label(), rate as f64 / 1e6);
                match one(env, sys, rate, secs) {
                    Ok(r) => {
                        eprintln!(
                            "p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns{}",
                            r.p50_ns,
                            r.p99_ns,
                            r.p999_ns,
                            r.max_ns,
                            r.sleep_pct.map(|p| format!(", worker slept {p:.1}%")).unwrap_or_default()
                        );
                        out.push(LatencyResult { load: load.label(), run, ..r });
                    }
                    Err(e) => eprintln!("FAILED: {e:#}"),
                }
            }
        }
    }
    Ok(out)
}

/// macvtap-latgen pinned to the guests' core with its EAL options, before its vdevs: how
/// every latency-style measurement (this one, the idle bursts) starts it.
pub fn latgen_command(env: &Env, seq: u32) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", crate::guest::GUEST_CORE]).arg(&env.latgen_bin);
    cmd.args(env.eal_mem(256));
    if env.hugepages {
        cmd.arg("--single-file-segments");
    }
    cmd.args(["--no-pci", "--log-level=lib.eal:warning", &format!("--file-prefix=blat{seq}"), "--lcores", "0@0"]);
    cmd
}

fn one(env: &Env, sys: System, rate: u64, secs: u64) -> Result<LatencyResult> {
    let topo = Topology::new(2, Uplink::Loop, false, "latency");
    let Some(sw) = systems::start(env, sys, &topo)? else { bail!("not applicable") };
    let seq = env.next_seq();
    let json = env.work.join(format!("latency-{}-{rate}-{seq}.json", sys.key()));
    let mut cmd = latgen_command(env, seq);
    for i in 0..2 {
        cmd.arg("--vdev").arg(format!("net_virtio_user{i},path={},mac={},queues=1", sw.sockets[i].display(), mac_str(guest_mac(i))));
    }
    cmd.args(["--", "--mac-a", &mac_str(guest_mac(0)), "--mac-b", &mac_str(guest_mac(1))]);
    cmd.args(["--size", "64", "--rate", &rate.to_string(), "--warmup", "1", "--secs", &secs.to_string(), "--json"]).arg(&json);
    let log = env.work.join(format!("latgen-{}-{rate}-{seq}.log", sys.key()));
    let mut p = Proc::spawn("macvtap-latgen", cmd, &log)?;
    env.record(&format!("{}/latgen", sys.key()), &p.cmdline);
    let t0 = std::time::Instant::now();
    // dpdk-macvtap: how much of (about) the window its worker slept; every system: what else
    // ran. latgen's clock starts at "links up", then 1 s of warm-up: read at those edges.
    let (mut sleep_pct, mut others_pct) = (None, None);
    if p.wait_for("latgen: links up", Duration::from_secs(45)).is_ok() && crate::nap(Duration::from_secs(1)).is_ok() {
        let pids: Vec<i32> = sw.pid().into_iter().chain([p.pid()]).collect();
        let counters = || sw.macvtap_counters().ok().flatten().map(|c| (c, systems::tsc()));
        let (m0, others) = (counters(), crate::cpu::OthersLoad::read(&pids));
        if crate::nap(Duration::from_secs(secs)).is_ok() {
            others_pct = others.and_then(|o| o.since(&pids));
            if let (Some((c0, t0)), Some((c1, t1))) = (m0, counters()) {
                sleep_pct = (t1 > t0).then(|| 100.0 * c1.sleep.saturating_sub(c0.sleep) as f64 / (t1 - t0) as f64);
            }
        }
    }
    while p.alive() && t0.elapsed() < Duration::from_secs(secs + 45) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = p.stop(Duration::from_secs(5));
    sw.stop();
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&json).with_context(|| format!("latgen wrote no result; log {}:\n{}", log.display(), crate::proc::tail(&text, 10)))?,
    )?;
    let g = |k: &str| v[k].as_u64().unwrap_or(0);
    Ok(LatencyResult {
        system: sys,
        load: String::new(),
        offered_pps: rate,
        rx_pps: v["rx_pps"].as_f64().unwrap_or(0.0),
        p50_ns: g("p50_ns"),
        p99_ns: g("p99_ns"),
        p999_ns: g("p999_ns"),
        max_ns: g("max_ns"),
        lost: g("lost"),
        samples: g("samples"),
        run: 0,
        sleep_pct,
        others_pct,
    })
}

/// Why OVS-DPDK has no latency row.
pub const OVS_NOTE: &str = "OVS-DPDK is not in this table: its PMD thread transmits on tx queue 1 of the uplink \
(queue 0 belongs to the non-PMD thread), and net_ring maps tx queue 1 to ring 1 while OVS polls rx queue 0, \
so nothing comes back through the loop. The kernel macvtap has no vhost-user side for the generator.";

pub fn report_section(res: &Results, o: &mut String) {
    if res.latency.is_empty() {
        return;
    }
    let runs = res.latency.iter().map(|r| r.run + 1).max().unwrap_or(1);
    let _ = writeln!(o, "\n## Latency, guest A -> switch -> uplink (net_ring loopback) -> switch -> guest B, 64 B\n");
    let _ = writeln!(
        o,
        "{runs} run(s) per system and load (runs, then loads, interleaved across systems; median (min–max) over runs). \
Timestamps are TSC values written by `macvtap-latgen` \
(both guests in one process on core 0, the switch's forwarding thread on core 1); HDR histogram, 3 significant digits. \
The generator's own queueing is included (it is a one-core sender and receiver). \"max\" is the loop's own maximum \
(`--rate 0`, measured once per system; latency there is queueing-dominated); a share is of each system's own max, except that \
both dpdk-macvtap variants are offered shares of the sleep-off variant's max (the same rates). \
\"slept\": share of (about) the window dpdk-macvtap's worker spent in its idle sleep; \"others\": CPU time of everything but \
the switch and latgen over (about) the window, % of one core, median (max) over runs: the shared machine's other load.\n"
    );
    let _ = writeln!(o, "{OVS_NOTE}\n");
    let _ = writeln!(o, "| system | load | offered Mpps | received Mpps | p50 µs | p99 µs | p99.9 µs | max µs | lost | slept % | others % |");
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let us = |n: f64| n / 1000.0;
    let range = |v: Vec<f64>| match stats(&v) {
        Some((m, lo, hi)) if v.len() > 1 => format!("{:.1} ({:.1}–{:.1})", us(m), us(lo), us(hi)),
        Some((m, _, _)) => format!("{:.1}", us(m)),
        None => "–".into(),
    };
    for (sys, load) in groups(res) {
        let rs: Vec<&LatencyResult> = res.latency.iter().filter(|r| r.system == sys && r.load == load && r.rx_pps > 0.0).collect();
        if rs.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&LatencyResult) -> u64| rs.iter().map(|r| f(r) as f64).collect::<Vec<_>>();
        let offered = rs[0].offered_pps;
        let rx = stats(&rs.iter().map(|r| r.rx_pps).collect::<Vec<_>>()).map(|x| x.0).unwrap_or(0.0);
        let slept = stats(&rs.iter().filter_map(|r| r.sleep_pct).collect::<Vec<_>>());
        let others = stats(&rs.iter().filter_map(|r| r.others_pct).collect::<Vec<_>>());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.4} | {} | {} | {} | {} | {} | {} | {} |",
            sys,
            load,
            if offered == 0 { "as fast as possible".into() } else { format!("{:.4}", offered as f64 / 1e6) },
            rx / 1e6,
            range(col(&|r| r.p50_ns)),
            range(col(&|r| r.p99_ns)),
            range(col(&|r| r.p999_ns)),
            range(col(&|r| r.max_ns)),
            rs.iter().map(|r| r.lost).sum::<u64>(),
            slept.map(|(m, lo, hi)| if rs.len() > 1 { format!("{m:.1} ({lo:.1}–{hi:.1})") } else { format!("{m:.1}") }).unwrap_or_else(|| "–".into()),
            others.map(|(m, _, hi)| format!("{m:.0} ({hi:.0})")).unwrap_or_else(|| "–".into())
        );
    }
    sleep_cost_section(res, o);
    if runs > 1 {
        let _ = writeln!(o, "\nPer-run latency values (p50 / p99 / p99.9 µs, [others %], run order):\n");
        for (sys, load) in groups(res) {
            let v: Vec<String> = res
                .latency
                .iter()
                .filter(|r| r.system == sys && r.load == load && r.rx_pps > 0.0)
                .map(|r| {
                    let others = r.others_pct.map(|p| format!(" [{p:.0}]")).unwrap_or_default();
                    format!("{:.1} / {:.1} / {:.1}{others}", us(r.p50_ns as f64), us(r.p99_ns as f64), us(r.p999_ns as f64))
                })
                .collect();
            let _ = writeln!(o, "- {sys}, {load}: {}", v.join("; "));
        }
    }
}

/// (system, load) in the order measured.
fn groups(res: &Results) -> Vec<(System, String)> {
    let mut g: Vec<(System, String)> = Vec::new();
    for r in &res.latency {
        if !g.iter().any(|(s, l)| *s == r.system && *l == r.load) {
            g.push((r.system, r.load.clone()));
        }
    }
    // Loads in the order first measured, systems in their order within each load.
    let loads: Vec<String> = g.iter().fold(Vec::new(), |mut v, (_, l)| {
        if !v.contains(l) {
            v.push(l.clone());
        }
        v
    });
    let mut out = Vec::new();
    for l in loads {
        out.extend(g.iter().filter(|(_, x)| *x == l).cloned());
    }
    out
}

/// A run counts as quiet when everything else on the machine used less than this, % of one
/// core, over its window (the machine is shared; see `others_pct`).
pub const QUIET_OTHERS_PCT: f64 = 10.0;

/// What the default idle sleep costs against pure polling, per load: the difference of
/// neighbouring runs (same run index, same offered rate); then the same over the pairs where
/// neither run shared the machine.
fn sleep_cost_section(res: &Results, o: &mut String) {
    let pairs = |load: &str, quiet: bool| -> Vec<(&LatencyResult, &LatencyResult)> {
        let ok = |r: &LatencyResult| !quiet || r.others_pct.is_some_and(|p| p < QUIET_OTHERS_PCT);
        res.latency
            .iter()
            .filter(|r| r.system == System::Macvtap && r.load == load && r.rx_pps > 0.0 && ok(r))
            .filter_map(|a| {
                res.latency
                    .iter()
                    .find(|b| b.system == System::MacvtapNosleep && b.load == load && b.run == a.run && b.rx_pps > 0.0 && ok(b))
                    .map(|b| (a, b))
            })
            .collect()
    };
    let loads: Vec<String> = groups(res).into_iter().filter(|(s, _)| *s == System::Macvtap).map(|(_, l)| l).filter(|l| l != "max").collect();
    if loads.iter().all(|l| pairs(l, false).is_empty()) {
        return;
    }
    let us = |n: u64| n as f64 / 1000.0;
    let _ = writeln!(o, "\n### What the idle sleep costs: dpdk-macvtap (default bound) − dpdk-macvtap sleep off\n");
    let _ = writeln!(o, "Per pair of neighbouring runs (same run index, same offered rate), then median (min–max) over pairs; µs. Positive = the sleep adds latency.\n");
    let _ = writeln!(o, "| load | pairs | Δ p50 µs | Δ p99 µs | Δ p99.9 µs | p99 with sleep / sleep off |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for quiet in [false, true] {
        if quiet {
            let _ = writeln!(
                o,
                "\nThe same over the pairs where neither run shared the machine (others < {QUIET_OTHERS_PCT:.0} % of a core over the window), with \
the medians of both variants (with sleep / sleep off):\n"
            );
            let _ = writeln!(o, "| load | quiet pairs | p50 µs | p99 µs | p99.9 µs | Δ p99 µs | Δ p99.9 µs | slept % |");
            let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
        }
        for l in &loads {
            let p = pairs(l, quiet);
            if p.is_empty() {
                if quiet {
                    let _ = writeln!(o, "| {l} | 0 | – | – | – | – | – | – |");
                }
                continue;
            }
            let d = |f: &dyn Fn(&LatencyResult) -> u64| -> String {
                let v: Vec<f64> = p.iter().map(|(a, b)| (f(a) as f64 - f(b) as f64) / 1000.0).collect();
                match stats(&v) {
                    Some((m, lo, hi)) if v.len() > 1 => format!("{m:+.1} ({lo:+.1}–{hi:+.1})"),
                    Some((m, _, _)) => format!("{m:+.1}"),
                    None => "–".into(),
                }
            };
            if quiet {
                let both = |f: &dyn Fn(&LatencyResult) -> u64| -> String {
                    let a = stats(&p.iter().map(|(a, _)| us(f(a))).collect::<Vec<_>>()).map(|x| x.0).unwrap_or(0.0);
                    let b = stats(&p.iter().map(|(_, b)| us(f(b))).collect::<Vec<_>>()).map(|x| x.0).unwrap_or(0.0);
                    format!("{a:.1} / {b:.1}")
                };
                let slept = stats(&p.iter().filter_map(|(a, _)| a.sleep_pct).collect::<Vec<_>>()).map(|x| format!("{:.1}", x.0)).unwrap_or_else(|| "–".into());
                let _ = writeln!(
                    o,
                    "| {l} | {} | {} | {} | {} | {} | {} | {slept} |",
                    p.len(),
                    both(&|r| r.p50_ns),
                    both(&|r| r.p99_ns),
                    both(&|r| r.p999_ns),
                    d(&|r| r.p99_ns),
                    d(&|r| r.p999_ns)
                );
            } else {
                let ratio: Vec<f64> = p.iter().filter(|(_, b)| b.p99_ns > 0).map(|(a, b)| a.p99_ns as f64 / b.p99_ns as f64).collect();
                let _ = writeln!(
                    o,
                    "| {l} | {} | {} | {} | {} | {} |",
                    p.len(),
                    d(&|r| r.p50_ns),
                    d(&|r| r.p99_ns),
                    d(&|r| r.p999_ns),
                    stats(&ratio).map(|(m, lo, hi)| format!("{m:.2} ({lo:.2}–{hi:.2})")).unwrap_or_else(|| "–".into())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_parse() {
        assert_eq!(Load::parse("10%").ok(), Some(Load::Share(0.1)));
        assert_eq!(Load::parse("1000").ok(), Some(Load::Pps(1000)));
        assert_eq!(Load::parse("1000pps").ok(), Some(Load::Pps(1000)));
        assert!(Load::parse("0").is_err());
        assert!(Load::parse("150%").is_err());
        assert_eq!(Load::Share(0.01).label(), "1%");
        assert_eq!(Load::Share(0.005).label(), "0.5%");
    }
}
