//! The Markdown report: medians with min-max over runs, ratios per pair of neighbouring
//! runs, the switches' own cycles per packet, latency percentiles, versions and the exact
//! commands. Times are never asserted; a machine's absolute numbers are its own.

use std::fmt::Write as _;
use std::path::Path as FsPath;
use std::process::Command;

use anyhow::Result;

use crate::model::{Case, Env, Path, System};
use crate::{Results, Sample};

pub const CORES: &str = "2 cores: core 0 = the generator (testpmd guests or macvtap-latgen, both of its lcores) \
plus the switch's control/main thread (dpdk-macvtap control lcore, testpmd main lcore, OVS main/handler threads via \
dpdk-lcore-mask=0x1); core 1 = the switch's one forwarding thread (dpdk-macvtap worker lcore, testpmd forwarding lcore, \
OVS PMD thread via pmd-cpu-mask=0x2). Kernel macvtap: see its section.";

pub fn now() -> String {
    sh("date", &["+%Y-%m-%d-%H%M"]).unwrap_or_else(|| "unknown-date".into())
}

/// Where a new result goes: `dir/base`, or `dir/base-2`, `-3`, ... when a run that started
/// in the same minute already wrote there. Dots (a host's domain) become underscores, so
/// that `with_extension` gives the result's files their names.
pub fn new_stem(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    let base = base.replace('.', "_");
    (1..)
        .map(|i| if i == 1 { dir.join(&base) } else { dir.join(format!("{base}-{i}")) })
        .find(|s| !s.with_extension("json").exists() && !s.with_extension("md").exists())
        .expect("a free name")
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_else(|_| "host".into())
}

fn sh(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn versions(env: &Env) -> Vec<(String, String)> {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned()))
        .unwrap_or_default();
    let git = sh("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = sh("git", &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty()).unwrap_or(false);
    let hp = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages").unwrap_or_default();
    vec![
        ("dpdk-macvtap".into(), format!("{git}{} ({})", if dirty { " + uncommitted changes" } else { "" }, env.macvtap_bin.display())),
        ("DPDK (dpdk-dev, testpmd)".into(), sh("dpkg-query", &["-W", "-f", "${Version}", "dpdk-dev"]).unwrap_or_default()),
        ("Open vSwitch".into(), crate::systems::ovs_version()),
        ("kernel".into(), sh("uname", &["-r"]).unwrap_or_default()),
        ("rustc".into(), sh("rustc", &["-V"]).unwrap_or_default()),
        ("CPU".into(), format!("{cpu}, {} online", sh("nproc", &[]).unwrap_or_default())),
        ("memory".into(), if env.hugepages { format!("2 MB hugepages ({} reserved)", hp.trim()) } else { "--no-huge".into() }),
    ]
}

/// Median, min, max of a non-empty list.
pub fn stats(v: &[f64]) -> Option<(f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let med = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    Some((med, s[0], s[n - 1]))
}

pub fn cases(res: &Results) -> Vec<Case> {
    let mut c: Vec<Case> = res.samples.iter().map(|s| s.case).collect();
    c.sort();
    c.dedup();
    c
}

pub fn systems(res: &Results) -> Vec<System> {
    let mut v: Vec<System> = res.samples.iter().map(|s| s.system).collect();
    v.sort();
    v.dedup();
    v
}

pub fn of<'a>(res: &'a Results, case: &Case, sys: System) -> Vec<&'a Sample> {
    res.samples.iter().filter(|s| s.case == *case && s.system == sys).collect()
}

/// The reference a case's ratio is taken against: testpmd on the same case, or for fan-out
/// (which io-fwd cannot do) testpmd uplink -> one guest at the same size.
fn reference_case(case: &Case) -> Case {
    match case.path {
        Path::Fanout(_) => Case { path: Path::UplinkToGuest, size: case.size, shared_core: case.shared_core },
        _ => *case,
    }
}

/// Ratios a/b per run index where both exist (neighbouring runs of the interleave).
pub fn ratios(res: &Results, case: &Case, a: System, b: System, b_case: &Case) -> Vec<(usize, f64)> {
    of(res, case, a)
        .iter()
        .filter_map(|x| of(res, b_case, b).into_iter().find(|y| y.run == x.run).map(|y| (x.run, x.pps / y.pps)))
        .collect()
}

/// A packets-per-second median (min–max) as Mpps, three decimals.
pub fn fmt_mpps(t: Option<(f64, f64, f64)>) -> String {
    fmt_range(t.map(|(a, b, c)| (a / 1e6, b / 1e6, c / 1e6)), 3)
}

pub fn fmt_range(t: Option<(f64, f64, f64)>, prec: usize) -> String {
    match t {
        Some((m, lo, hi)) => format!("{m:.prec$} ({lo:.prec$}–{hi:.prec$})"),
        None => "–".into(),
    }
}

pub fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "–".into())
}

pub fn write(res: &Results, md: &FsPath, png: &FsPath) -> Result<()> {
    let plot_ok = crate::plot::draw(res, png);
    let mut o = String::new();
    let a = &res.args;
    let _ = writeln!(o, "# dpdk-macvtap benchmark: {} on {}\n", res.started, res.host);
    let _ = writeln!(
        o,
        "{} run(s) per system and case, interleaved ({}), {} s warm-up then a {} s window per run. \
         Median (min–max) over runs. Ratios are taken per pair of neighbouring runs (same run index), then summarised.\n",
        a.runs,
        a.systems.join(" → "),
        a.warmup,
        a.duration
    );
    let _ = writeln!(o, "**Cores:** {CORES}\n");
    if a.systems.iter().any(|s| s == "macvtap") {
        let _ = writeln!(
            o,
            "**dpdk-macvtap idle sleep:** `macvtap` runs with {}; `macvtap-nosleep` is the same binary with `--idle-sleep-max 0` (pure polling).\n",
            match a.idle_sleep_max {
                Some(us) => format!("`--idle-sleep-max {us}`"),
                None => "the binary's default `--idle-sleep-max`".to_owned(),
            }
        );
    }
    for n in &res.notes {
        let _ = writeln!(o, "**Note:** {n}\n");
    }
    match &res.argv {
        Some(argv) => {
            let _ = writeln!(o, "Rerun: `bash bench/run.sh{}`\n", argv.iter().map(|x| format!(" {x}")).collect::<String>());
        }
        None => {
            let _ = writeln!(o, "Rerun: `bash bench/run.sh{}{}`\n", if a.quick { " --quick" } else { "" }, if !a.quick && a.runs != 5 { format!(" --runs {}", a.runs) } else { String::new() });
        }
    }
    match &plot_ok {
        Ok(()) => {
            let _ = writeln!(o, "![Mpps per system and frame size]({})\n", png.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default());
        }
        Err(e) => {
            let _ = writeln!(o, "(plot not drawn: {e:#})\n");
        }
    }

    let _ = writeln!(o, "## Headline: dpdk-macvtap / testpmd io-fwd\n");
    let _ = writeln!(o, "| path | frame | dpdk-macvtap Mpps | testpmd Mpps | ratio median (min–max) | dpdk-macvtap / OVS-DPDK |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|");
    for c in cases(res) {
        let m = stats(&pps(res, &c, System::Macvtap));
        let rc = reference_case(&c);
        let t = stats(&pps(res, &rc, System::Testpmd));
        let r = stats(&ratios(res, &c, System::Macvtap, System::Testpmd, &rc).iter().map(|x| x.1).collect::<Vec<_>>());
        let ro = stats(&ratios(res, &c, System::Macvtap, System::Ovs, &c).iter().map(|x| x.1).collect::<Vec<_>>());
        let note = if rc != c { " †" } else { "" };
        let _ = writeln!(
            o,
            "| {} | {} B | {} | {}{note} | {} | {} |",
            c.path_name(),
            c.size,
            fmt_mpps(m),
            fmt_mpps(t),
            fmt_range(r, 3),
            fmt_range(ro, 3)
        );
    }
    let _ = writeln!(o, "\n† fan-out: testpmd io-fwd cannot broadcast; the reference is testpmd uplink -> one guest at the same size and run index \
(frames delivered per second). Fan-out rates count frames delivered to all guests together.\n");

    sleep_section(res, &mut o);
    crate::scale::report_section(res, &mut o);

    let _ = writeln!(o, "## Throughput, every system\n");
    let _ = writeln!(o, "Mpps and Gbps are measured on the guest side (testpmd's per-port rates: transmitted for guest -> uplink, received and summed over guests otherwise). \
Gbps = Mpps × frame size (FCS included) × 8, without preamble and gap. Switch cycles/packet: busy cycles of the forwarding thread per packet it received \
(dpdk-macvtap `--stats-json` workers, testpmd `--record-core-cycles` at exit, OVS `pmd-stats-show` avg processing cycles per packet); busy %: share of the forwarding thread's cycles in iterations that moved frames.\n");
    let _ = writeln!(o, "| path | frame | system | Mpps median (min–max) | Gbps median | cycles/pkt median | busy % median | ratio to testpmd (min–max) |");
    let _ = writeln!(o, "|---|---:|---|---:|---:|---:|---:|---:|");
    for c in cases(res) {
        for sys in systems(res) {
            let v = pps(res, &c, sys);
            if v.is_empty() {
                continue;
            }
            let s = stats(&v);
            let cyc = stats(&of(res, &c, sys).iter().filter_map(|x| x.switch.cycles_per_pkt).collect::<Vec<_>>());
            let busy = stats(&of(res, &c, sys).iter().filter_map(|x| x.switch.busy_pct).collect::<Vec<_>>());
            let rc = reference_case(&c);
            let r = if sys == System::Testpmd && rc == c {
                "1".to_owned()
            } else {
                fmt_range(stats(&ratios(res, &c, sys, System::Testpmd, &rc).iter().map(|x| x.1).collect::<Vec<_>>()), 3)
            };
            let _ = writeln!(
                o,
                "| {} | {} B | {} | {} | {} | {} | {} | {} |",
                c.path_name(),
                c.size,
                sys,
                fmt_mpps(s),
                opt(s.map(|x| x.0 * c.size as f64 * 8.0 / 1e9), 2),
                opt(cyc.map(|x| x.0), 0),
                opt(busy.map(|x| x.0), 0),
                r
            );
        }
    }

    let x = stats(&res.samples.iter().filter_map(|s| s.switch.reported_busy_x).collect::<Vec<_>>());
    if let Some((m, lo, hi)) = x {
        let why = if (0.9..=1.1).contains(&m) {
            "which agrees with the worker's own `busy_cycles`".to_owned()
        } else {
            format!(
                "because the worker's own `busy_cycles` were {m:.2}× that (min {lo:.2}, max {hi:.2}): the measured build adds a busy \
iteration's cycles twice (`add_cycles(dt, 0)` and `add_loop(moved, dt)` in src/datapath/worker.rs, fixed in 6eaf967)"
            )
        };
        let _ = writeln!(
            o,
            "\ndpdk-macvtap cycles/pkt and busy % above are (window TSC cycles − the worker's reported idle cycles) / frames, {why}."
        );
    }

    if !res.skipped.is_empty() {
        let _ = writeln!(o, "\n### Not measured\n");
        let mut seen = Vec::new();
        for (c, s, why) in &res.skipped {
            if !seen.contains(&(c, s)) {
                seen.push((c, s));
                let _ = writeln!(o, "- {c}, {s}: {why}");
            }
        }
    }
    if res.args.sizes.iter().all(|&s| s != 9000) {
        let _ = writeln!(o, "\n9000 B was not in this run's sizes.");
    }

    crate::kernel::report_section(res, &mut o);
    crate::latency::report_section(res, &mut o);
    crate::profile::report_section(res, &mut o);

    let _ = writeln!(o, "\n## Per-run values (Mpps) and neighbouring-run ratios\n");
    for c in cases(res) {
        let _ = write!(o, "- {}:", c.label());
        for sys in systems(res) {
            let v: Vec<String> = of(res, &c, sys).iter().map(|x| format!("{:.3}", x.pps / 1e6)).collect();
            if !v.is_empty() {
                let _ = write!(o, " {}: [{}];", sys, v.join(", "));
            }
        }
        let rc = reference_case(&c);
        let r: Vec<String> = ratios(res, &c, System::Macvtap, System::Testpmd, &rc).iter().map(|(_, r)| format!("{r:.3}")).collect();
        if !r.is_empty() {
            let _ = write!(o, " macvtap/testpmd per run: [{}]", r.join(", "));
        }
        let r: Vec<String> = ratios(res, &c, System::Macvtap, System::MacvtapNosleep, &c).iter().map(|(_, r)| format!("{r:.3}")).collect();
        if !r.is_empty() {
            let _ = write!(o, "; macvtap/macvtap-nosleep per run: [{}]", r.join(", "));
        }
        let _ = writeln!(o);
    }

    if res.samples.iter().any(|s| s.switch.others_pct.is_some()) {
        let _ = writeln!(o, "\n## Other load on the machine during each window\n");
        let _ = writeln!(
            o,
            "CPU time of everything but the measured switch and guest processes over the window (/proc/stat minus their /proc/PID/stat), \
% of one core (the machine has 2: 200 % = both busy with something else), per run in run order. A run with tens of % here \
shared its cores with someone else's work.\n"
        );
        for c in cases(res) {
            let _ = write!(o, "- {}:", c.label());
            for sys in systems(res) {
                let v: Vec<String> = of(res, &c, sys).iter().map(|x| x.switch.others_pct.map(|p| format!("{p:.0}")).unwrap_or_else(|| "–".into())).collect();
                if !v.is_empty() {
                    let _ = write!(o, " {}: [{}];", sys, v.join(", "));
                }
            }
            let _ = writeln!(o);
        }
    }

    let _ = writeln!(o, "\n## Versions\n");
    for (k, v) in &res.versions {
        let _ = writeln!(o, "- {k}: {v}");
    }
    let _ = writeln!(o, "\n## Exact commands (first run of each; other sizes change only --txpkts, the pcap, mtu and mbuf sizes)\n");
    for (k, v) in &res.commands {
        let _ = writeln!(o, "{k}:\n```\n{v}\n```");
    }
    std::fs::write(md, o)?;
    Ok(())
}

/// dpdk-macvtap with its idle sleep against the same binary polling only, per case.
fn sleep_section(res: &Results, o: &mut String) {
    let cs: Vec<Case> = cases(res).into_iter().filter(|c| !of(res, c, System::Macvtap).is_empty() && !of(res, c, System::MacvtapNosleep).is_empty()).collect();
    if cs.is_empty() {
        return;
    }
    let bound = match res.args.idle_sleep_max {
        Some(us) => format!("`--idle-sleep-max {us}`"),
        None => "its default `--idle-sleep-max`".to_owned(),
    };
    let _ = writeln!(o, "## Idle sleep at saturation: dpdk-macvtap ({bound}) / dpdk-macvtap sleep off (`--idle-sleep-max 0`)\n");
    let _ = writeln!(
        o,
        "The same binary; ratios per pair of neighbouring runs (same run index), then median (min–max). Goal: at least 0.99. \
`slept %` = share of the window the default variant's worker spent in its idle sleep (`sleep_cycles`), median (min–max); \
`busy %` = share of the window in passes that moved frames. `quiet pairs`: the ratio over the pairs where neither run shared the \
machine (everything else < {:.0} % of a core over the window, see \"Other load\" below), and how many.\n",
        crate::latency::QUIET_OTHERS_PCT
    );
    let _ = writeln!(o, "| path | frame | with sleep Mpps | sleep off Mpps | ratio median (min–max) | quiet pairs: ratio (n) | slept % | busy % with sleep / sleep off |");
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in cs {
        let m = stats(&pps(res, &c, System::Macvtap));
        let n = stats(&pps(res, &c, System::MacvtapNosleep));
        let r = stats(&ratios(res, &c, System::Macvtap, System::MacvtapNosleep, &c).iter().map(|x| x.1).collect::<Vec<_>>());
        let slept = stats(&of(res, &c, System::Macvtap).iter().filter_map(|x| x.switch.sleep_pct).collect::<Vec<_>>());
        let quiet = |s: &Sample| s.switch.others_pct.is_some_and(|p| p < crate::latency::QUIET_OTHERS_PCT);
        let q: Vec<f64> = of(res, &c, System::Macvtap)
            .iter()
            .filter(|x| quiet(x))
            .filter_map(|x| of(res, &c, System::MacvtapNosleep).into_iter().find(|y| y.run == x.run && quiet(y)).map(|y| x.pps / y.pps))
            .collect();
        let busy = |s: System| opt(stats(&of(res, &c, s).iter().filter_map(|x| x.switch.busy_pct).collect::<Vec<_>>()).map(|x| x.0), 0);
        let _ = writeln!(
            o,
            "| {} | {} B | {} | {} | {} | {} ({}) | {} | {} / {} |",
            c.path_name(),
            c.size,
            fmt_mpps(m),
            fmt_mpps(n),
            fmt_range(r, 3),
            fmt_range(stats(&q), 3),
            q.len(),
            fmt_range(slept, 2),
            busy(System::Macvtap),
            busy(System::MacvtapNosleep)
        );
    }
    let _ = writeln!(o);
}

pub fn pps(res: &Results, case: &Case, sys: System) -> Vec<f64> {
    of(res, case, sys).iter().map(|s| s.pps).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        assert_eq!(stats(&[3.0, 1.0, 2.0]), Some((2.0, 1.0, 3.0)));
        assert_eq!(stats(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 1.0, 4.0)));
        assert_eq!(stats(&[]), None);
    }
}
