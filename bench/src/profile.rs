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

/// Samples the forwarding thread of process `pid` for `secs` seconds; (share %, symbol).
pub fn record(env: &Env, pid: i32, case: &Case, sys: System, secs: u64) -> Result<Vec<(f64, String)>> {
    let tid = crate::cpu::worker_thread(pid, 1)?;
    let data = env.work.join(format!("perf-{}-{}-{}{}.data", sys.key(), case.path.key(), case.size, if case.shared_core { "-shared" } else { "" }));
    let mut rec = Command::new("perf");
    rec.arg("record").arg("-q").arg("-o").arg(&data);
    rec.args(["-F", "4999", "-t", &tid.to_string(), "--", "sleep", &secs.to_string()]);
    env.record(&format!("{}/perf record", sys.key()), &proc::render(&rec));
    proc::run(&mut rec)?;
    let mut rep = Command::new("perf");
    rep.arg("report").arg("-i").arg(&data);
    rep.args(["--stdio", "--no-children", "--sort", "dso,symbol", "-q", "--percent-limit", &MIN_PCT.to_string()]);
    env.record(&format!("{}/perf report", sys.key()), &proc::render(&rep));
    let text = proc::run(&mut rep)?;
    let top = parse(&text);
    if top.is_empty() {
        bail!("perf report gave no symbols:\n{}", proc::tail(&text, 5));
    }
    Ok(top)
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
        let _ = writeln!(o, "- {}, {}: {}", s.case.label(), s.system, s.perf_top.iter().map(|(p, n)| format!("{p:.1} % `{n}`")).collect::<Vec<_>>().join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_are_parsed() {
        let t = "    31.20%  librte_vhost.so.23.0  [.] rte_vhost_enqueue_burst      -      -\n     5.01%  [kernel.kallsyms]     [k] native_write_msr\n\n";
        assert_eq!(
            parse(t),
            vec![(31.2, "rte_vhost_enqueue_burst (librte_vhost.so.23.0)".to_owned()), (5.01, "native_write_msr ([kernel.kallsyms])".to_owned())]
        );
    }
}
