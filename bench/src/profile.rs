//! `--perf SECONDS`: where the forwarding thread's cycles go. In the first run of each case,
//! right after the measurement window (the traffic still flowing), `perf record` samples the
//! switch's forwarding thread alone (`-t`, the thread pinned to core 1) for that long, and
//! `perf report` gives the symbols by share of samples. Outside the window, so the figures
//! of the run are not disturbed by it.

use std::fmt::Write as _;
use std::process::Command;

use anyhow::{bail, Result};

use crate::model::{Case, Env, System};
use crate::{proc, Results};

/// Symbols below this share of the samples are left out.
const MIN_PCT: f64 = 0.5;
/// At most this many symbols per case and system in the report.
const TOP: usize = 15;

/// Samples the forwarding thread of process `pid` for `secs` seconds; (share %, symbol), the
/// shares per object first ("all of OBJECT": unexported functions spread over many addresses).
pub fn record(env: &Env, pid: i32, case: &Case, sys: System, secs: u64) -> Result<Vec<(f64, String)>> {
    let tid = crate::cpu::worker_thread(pid, 1)?;
    let data = env.work.join(format!("perf-{}-{}-{}{}.data", sys.key(), case.path.key(), case.size, if case.shared_core { "-shared" } else { "" }));
    let mut rec = Command::new("perf");
    rec.arg("record").arg("-q").arg("-o").arg(&data);
    rec.args(["-F", "4999", "-t", &tid.to_string(), "--", "sleep", &secs.to_string()]);
    env.record(&format!("{}/perf record", sys.key()), &proc::render(&rec));
    proc::run(&mut rec)?;
    let report = |sort: &str| {
        let mut rep = Command::new("perf");
        rep.arg("report").arg("-i").arg(&data);
        rep.args(["--stdio", "--no-children", "--sort", sort, "-q", "--percent-limit", &MIN_PCT.to_string()]);
        env.record(&format!("{}/perf report ({sort})", sys.key()), &proc::render(&rep));
        proc::run(&mut rep)
    };
    let mut top = parse_objects(&report("dso")?);
    let text = report("dso,symbol")?;
    top.extend(parse(&text));
    if top.is_empty() {
        bail!("perf report gave no symbols:\n{}", proc::tail(&text, 5));
    }
    Ok(top)
}

/// `  45.10%  librte_vhost.so.23.0` lines: "all of OBJECT" and its share.
pub fn parse_objects(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let (pct, rest) = l.trim().split_once('%')?;
            let dso = rest.split_whitespace().next()?;
            Some((pct.trim().parse().ok()?, format!("all of {dso}")))
        })
        .collect()
}

/// `  23.45%  librte_vhost.so.23.0  [.] rte_vhost_enqueue_burst   -  -` lines: share and
/// "symbol (object)"; a symbol the object does not name is its address there.
pub fn parse(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|l| {
            let (pct, rest) = l.trim().split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            let (dso, sym) = rest.trim_start().split_once(char::is_whitespace)?;
            let sym = sym.trim_start().split_once("] ")?.1.trim();
            // perf pads the symbol column and may add columns after it (IPC: "-  -").
            let sym = sym.split("  ").next().unwrap_or(sym).trim();
            (!sym.is_empty()).then(|| (pct, format!("{sym} ({})", dso.trim())))
        })
        .take(TOP)
        .collect()
}

pub fn report_section(res: &Results, o: &mut String) {
    let with: Vec<_> = res.samples.iter().filter(|s| !s.perf_top.is_empty()).collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n## Where the forwarding thread's cycles go (perf)\n");
    let _ = writeln!(
        o,
        "`perf record -F 4999 -t <forwarding thread>` for {} s right after the first run's window (traffic still flowing), then \
`perf report --no-children --sort dso,symbol`: share of the samples per symbol (at least {MIN_PCT} %, at most {TOP}), with the \
object it is in. Functions a library does not export show as addresses (Debian's DPDK without debug symbols); the switch is a \
release build without debug information, so what the compiler inlined counts under the function it was inlined into \
(`Worker::run` holds most of the datapath). Kernel symbols on the worker's thread are interrupts and preemption.\n",
        res.args.perf
    );
    for s in with {
        let (objects, symbols): (Vec<_>, Vec<_>) = s.perf_top.iter().partition(|(_, n)| n.starts_with("all of "));
        let list = |v: Vec<&(f64, String)>| v.iter().map(|(p, n)| format!("{p:.1} % `{}`", n.trim_start_matches("all of "))).collect::<Vec<_>>().join(", ");
        if objects.is_empty() {
            let _ = writeln!(o, "- {}, {}: {}", s.case.label(), s.system, list(symbols));
        } else {
            let _ = writeln!(o, "- {}, {}: by object {}; by symbol {}", s.case.label(), s.system, list(objects), list(symbols));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_lines_are_parsed() {
        let t = "    45.10%  librte_vhost.so.23.0\n     3.00%  [kernel.kallsyms]\n";
        assert_eq!(parse_objects(t), vec![(45.1, "all of librte_vhost.so.23.0".to_owned()), (3.0, "all of [kernel.kallsyms]".to_owned())]);
    }

    #[test]
    fn report_lines_are_parsed() {
        let t = "    31.20%  librte_vhost.so.23.0  [.] rte_vhost_enqueue_burst      -      -\n     5.01%  [kernel.kallsyms]     [k] native_write_msr\n\n";
        assert_eq!(
            parse(t),
            vec![(31.2, "rte_vhost_enqueue_burst (librte_vhost.so.23.0)".to_owned()), (5.01, "native_write_msr ([kernel.kallsyms])".to_owned())]
        );
    }
}
