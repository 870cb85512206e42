//! The "VMs": one `dpdk-testpmd` with a `net_virtio_user` port per guest, pinned to core 0
//! (txonly to send, rxonly to sink), the way PVP runs use testpmd inside the VM. The same
//! command is used against every switch; only the socket paths differ.
//!
//! Throughput is read from the guest side for every system alike: testpmd prints per-port
//! `Rx-pps`/`Tx-pps` every second (`--stats-period 1`); the first `warmup` samples are
//! skipped and the next `duration` samples averaged, summed over ports.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Result};

use crate::model::{mac_str, Case, Env};
use crate::proc::Proc;

pub const TESTPMD: &str = "/usr/bin/dpdk-testpmd";
/// The generator's core. The switch worker gets the other one.
pub const GUEST_CORE: &str = "0";

/// At most this many guests per testpmd process: DPDK's ethdev port limit
/// (`RTE_MAX_ETHPORTS`, 32 in Debian's build). More guests take more processes, all on the
/// generator's core.
pub const PORTS_PER_PROCESS: usize = 32;

/// The guest processes of one measurement.
pub struct Guests {
    pub procs: Vec<Proc>,
}

impl Guests {
    pub fn pids(&self) -> Vec<i32> {
        self.procs.iter().map(Proc::pid).collect()
    }

    /// The first process that exited early, if any.
    pub fn dead(&mut self) -> Option<&Proc> {
        let i = self.procs.iter_mut().position(|p| !p.alive())?;
        Some(&self.procs[i])
    }

    /// Stops every process; their logs.
    pub fn stop(self, grace: std::time::Duration) -> Vec<String> {
        self.procs.into_iter().map(|p| p.stop(grace)).collect()
    }
}

/// Starts the guests of `case` on the given sockets (clients: the switch owns the sockets),
/// port i with MAC `macs[i]`: one testpmd per `PORTS_PER_PROCESS` guests.
pub fn start(env: &Env, case: &Case, sockets: &[PathBuf], macs: &[[u8; 6]], system_key: &str) -> Result<Guests> {
    let mut procs = Vec::new();
    for (chunk, (socks, macs)) in sockets.chunks(PORTS_PER_PROCESS).zip(macs.chunks(PORTS_PER_PROCESS)).enumerate() {
        procs.push(start_one(env, case, socks, macs, system_key, chunk)?);
    }
    Ok(Guests { procs })
}

fn start_one(env: &Env, case: &Case, sockets: &[PathBuf], macs: &[[u8; 6]], system_key: &str, chunk: usize) -> Result<Proc> {
    let seq = env.next_seq();
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", GUEST_CORE, TESTPMD]);
    cmd.args(env.eal_mem(512));
    if env.hugepages {
        // virtio-user shares guest memory with the switch one fd per segment; keep them few.
        cmd.arg("--single-file-segments");
    }
    cmd.args(["--no-pci", "--log-level=lib.eal:warning", &format!("--file-prefix=bguest{seq}")]);
    // Main lcore and forwarding lcore both on the generator's core.
    cmd.args(["--lcores", &format!("0@{GUEST_CORE},1@{GUEST_CORE}")]);
    for (i, (s, mac)) in sockets.iter().zip(macs).enumerate() {
        cmd.arg("--vdev").arg(format!("net_virtio_user{i},path={},mac={},queues=1", s.display(), mac_str(*mac)));
    }
    cmd.arg("--");
    let mode = if case.path.guests_send() { "txonly" } else { "rxonly" };
    cmd.args([&format!("--forward-mode={mode}"), "--nb-cores=1", "--stats-period=1", "--rxd=1024", "--txd=1024"]);
    // testpmd parses in order: --mbuf-size must come before --txpkts, which checks the
    // segment against the mbuf size known at that point (else it keeps 64 B and says so).
    if case.jumbo() {
        cmd.args(["--mbuf-size=10240", &format!("--max-pkt-len={}", case.size)]);
    }
    cmd.arg(format!("--txpkts={}", case.buf_len()));
    // Every port's rx ring is filled at start: room for both rings of each, and slack.
    cmd.arg(format!("--total-num-mbufs={}", 16384.max(sockets.len() * 2048 + 4096)));
    let log = env.work.join(format!("guest-{system_key}-{}-{}-{seq}.log", case.path.key(), case.size));
    let mut p = Proc::spawn("guest testpmd", cmd, &log)?;
    // Started one after the other, each once its ports are up and it forwards: two that
    // attach many virtio-user ports at once were seen to hang in EAL init.
    p.wait_for("packet forwarding - ports=", std::time::Duration::from_secs(90))?;
    if chunk == 0 {
        env.record(&format!("{system_key}/guests ({})", case.path.key()), &p.cmdline);
    }
    Ok(p)
}

/// Per-sample packet rates, summed over ports: (rx_pps, tx_pps).
pub fn samples(log: &str) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for line in log.lines() {
        let t = line.trim();
        if t.starts_with("Port statistics") {
            out.push((0.0, 0.0));
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if let Some(v) = field(t, "Rx-pps:") {
            cur.0 += v;
        } else if let Some(v) = field(t, "Tx-pps:") {
            cur.1 += v;
        }
    }
    out
}

fn field(line: &str, name: &str) -> Option<f64> {
    let rest = line.strip_prefix(name)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The guest-side rate of `case` in packets per second, summed over the guest processes'
/// logs: transmitted when the guests send, received (all guests) otherwise.
pub fn rate_all(logs: &[String], case: &Case, warmup: usize, duration: usize) -> Result<f64> {
    logs.iter().map(|l| rate(l, case, warmup, duration)).sum()
}

/// The same for one process's log.
pub fn rate(log: &str, case: &Case, warmup: usize, duration: usize) -> Result<f64> {
    let s = samples(log);
    if s.len() < warmup + 1 {
        bail!("guest printed {} stats samples, expected at least {}", s.len(), warmup + 1);
    }
    let window: Vec<f64> = s[warmup..]
        .iter()
        .take(duration)
        .map(|&(rx, tx)| if case.path.guests_send() { tx } else { rx })
        .collect();
    Ok(window.iter().sum::<f64>() / window.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Path;

    const LOG: &str = "
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  Throughput (since last show)
  Rx-pps:            10          Rx-bps:            0
  Tx-pps:     100          Tx-bps:   5813110728
  ######################## NIC statistics for port 1  ########################
  Rx-pps:            5          Rx-bps:            0
  Tx-pps:     0          Tx-bps:   0
Port statistics ====================================
  Rx-pps:            20          Rx-bps:            0
  Tx-pps:     200          Tx-bps:   5813110728
";

    #[test]
    fn sums_ports_per_sample() {
        assert_eq!(samples(LOG), vec![(15.0, 100.0), (20.0, 200.0)]);
        let c = Case { path: Path::GuestToUplink, size: 64, shared_core: false };
        assert_eq!(rate(LOG, &c, 1, 5).ok(), Some(200.0));
    }
}
