//! CPU time of one thread of another process, from /proc: the switch's forwarding thread,
//! not the whole process (the control thread, vhost and EAL threads share core 0 with the
//! generator and would blur an idle worker's share).
//!
//! Two readings of the same thing: `utime + stime` from `/proc/PID/task/TID/stat` (clock
//! ticks, `CLK_TCK` per second: coarse, but what `top` and `ps` show) and the first field of
//! `/proc/PID/task/TID/schedstat` (nanoseconds on a CPU, exact). Runs on the orchestrator's
//! main thread.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The forwarding thread of a DPDK process whose worker lcore is pinned to `core`: the EAL
/// names it `rte-worker-N` (DPDK 22.11; `lcore-worker-N` in some releases); failing that,
/// the one thread whose affinity is exactly `core` (the main lcore and the EAL's control
/// threads sit on core 0 here).
pub fn worker_thread(pid: i32, core: u32) -> Result<i32> {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let mut by_affinity = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let Ok(tid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if tid != pid && (comm.ends_with("worker-1") || comm.ends_with("worker1")) && core == 1 {
            return Ok(tid);
        }
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(str::trim).unwrap_or("");
        if tid != pid && cpus == core.to_string() {
            by_affinity.push(tid);
        }
    }
    match by_affinity.as_slice() {
        [tid] => Ok(*tid),
        [] => bail!("no thread of pid {pid} is pinned to core {core}"),
        many => bail!("several threads of pid {pid} are pinned to core {core}: {many:?}"),
    }
}

/// One reading of a thread's CPU time.
#[derive(Clone, Copy, Debug)]
pub struct ThreadCpu {
    pub at: Instant,
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Time on a CPU (schedstat), ns; None where the kernel has no schedstat.
    pub run_ns: Option<u64>,
    /// Voluntary context switches (each sleep of the worker is one).
    pub voluntary: u64,
}

/// utime + stime (fields 14 and 15) of a `stat` line; the command name in parentheses may
/// hold spaces, so fields are counted after its closing parenthesis.
pub fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

pub fn read_thread(pid: i32, tid: i32) -> Result<ThreadCpu> {
    let base = format!("/proc/{pid}/task/{tid}");
    let at = Instant::now();
    let stat = std::fs::read_to_string(format!("{base}/stat")).with_context(|| format!("{base}/stat"))?;
    let ticks = stat_ticks(&stat).with_context(|| format!("parsing {base}/stat"))?;
    let run_ns = std::fs::read_to_string(format!("{base}/schedstat")).ok().and_then(|s| s.split_whitespace().next()?.parse().ok());
    let status = std::fs::read_to_string(format!("{base}/status")).unwrap_or_default();
    let voluntary = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    Ok(ThreadCpu { at, ticks, run_ns, voluntary })
}

/// utime + stime of the whole process, clock ticks.
pub fn read_process_ticks(pid: i32) -> Result<u64> {
    let p = format!("/proc/{pid}/stat");
    stat_ticks(&std::fs::read_to_string(&p).with_context(|| p.clone())?).with_context(|| format!("parsing {p}"))
}

/// One core's counters from /proc/stat (clock ticks): (busy = everything but idle, iowait
/// and steal; steal = time the hypervisor ran something else).
#[derive(Clone, Copy, Debug)]
pub struct CoreTicks {
    pub at: Instant,
    pub busy: u64,
    pub steal: u64,
}

pub fn read_core(core: u32) -> Result<CoreTicks> {
    read_stat_line(&format!("cpu{core}"))
}

/// Every core together (the `cpu` line of /proc/stat).
pub fn read_all_cores() -> Result<CoreTicks> {
    read_stat_line("cpu")
}

fn read_stat_line(name: &str) -> Result<CoreTicks> {
    let at = Instant::now();
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name)).with_context(|| format!("no {name} in /proc/stat"))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice (guest is within user).
    let g = |i: usize| f.get(i).copied().unwrap_or(0);
    Ok(CoreTicks { at, busy: g(0) + g(1) + g(2) + g(5) + g(6), steal: g(7) })
}

/// What else ran on the machine during a window: every core's busy time minus the given
/// processes' own CPU time (`pids`: the measured switch and generator), % of one core.
pub struct OthersLoad {
    cores: CoreTicks,
    own: u64,
}

impl OthersLoad {
    pub fn read(pids: &[i32]) -> Option<OthersLoad> {
        let cores = read_all_cores().ok()?;
        let own = pids.iter().map(|&p| read_process_ticks(p).ok()).sum::<Option<u64>>()?;
        Some(OthersLoad { cores, own })
    }

    /// % of one core used by anything but `pids` since `self`.
    pub fn since(&self, pids: &[i32]) -> Option<f64> {
        let now = OthersLoad::read(pids)?;
        let secs = now.cores.at.duration_since(self.cores.at).as_secs_f64().max(1e-9);
        let all = now.cores.busy.saturating_sub(self.cores.busy);
        let own = now.own.saturating_sub(self.own);
        Some(100.0 * all.saturating_sub(own) as f64 / clk_tck() as f64 / secs)
    }
}

/// (busy, steal) of a core between two readings, % of that core.
pub fn core_shares(a: &CoreTicks, b: &CoreTicks) -> (f64, f64) {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let pc = |x: u64, y: u64| 100.0 * y.saturating_sub(x) as f64 / clk_tck() as f64 / secs;
    (pc(a.busy, b.busy), pc(a.steal, b.steal))
}

pub fn clk_tck() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Shares of one core between two readings, in %: (stat ticks, schedstat, wake-ups per s).
pub fn shares(a: &ThreadCpu, b: &ThreadCpu) -> (f64, Option<f64>, f64) {
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
    let stat = 100.0 * b.ticks.saturating_sub(a.ticks) as f64 / clk_tck() as f64 / secs;
    let sched = match (a.run_ns, b.run_ns) {
        (Some(x), Some(y)) => Some(100.0 * y.saturating_sub(x) as f64 / 1e9 / secs),
        _ => None,
    };
    (stat, sched, b.voluntary.saturating_sub(a.voluntary) as f64 / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_name() {
        let s = "18323 (rte worker) S 1 2 3 0 -1 4194560 10 0 0 0 123 45 0 0 20 0 6 0 100 1 2";
        assert_eq!(stat_ticks(s), Some(168));
    }
}
