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
//! (`--rate 0`), then 10 %, 50 % and 90 % of it, each with a freshly started switch.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::model::{guest_mac, mac_str, Env, System};
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
}

pub fn run_all(env: &Env, systems: &[System], a: &RunArgs) -> Result<Vec<LatencyResult>> {
    let loads: &[f64] = if a.quick { &[0.5] } else { &[0.1, 0.5, 0.9] };
    let secs = if a.quick { 2 } else { 4 };
    let mut out = Vec::new();
    // The kernel has no vhost-user side; OVS cannot close the net_ring loop (see OVS_NOTE).
    let dpdk: Vec<System> = systems.iter().copied().filter(|s| matches!(s, System::Macvtap | System::Testpmd)).collect();
    let mut max = Vec::new();
    for &sys in &dpdk {
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
    // Loads interleaved across systems: 10% A B C, 50% A B C, ...
    for &f in loads {
        for &(sys, m) in &max {
            let rate = (m * f) as u64;
            eprint!("latency | {sys} | {:.0}% = {:.3} Mpps: ", f * 100.0, rate as f64 / 1e6);
            match one(env, sys, rate, secs) {
                Ok(r) => {
                    eprintln!("p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns", r.p50_ns, r.p99_ns, r.p999_ns, r.max_ns);
                    out.push(LatencyResult { load: format!("{:.0}%", f * 100.0), ..r });
                }
                Err(e) => eprintln!("FAILED: {e:#}"),
            }
        }
    }
    Ok(out)
}

fn one(env: &Env, sys: System, rate: u64, secs: u64) -> Result<LatencyResult> {
    let topo = Topology { guests: 2, uplink: Uplink::Loop, jumbo: false, tag: "latency".into() };
    let Some(sw) = systems::start(env, sys, &topo)? else { bail!("not applicable") };
    let seq = env.next_seq();
    let json = env.work.join(format!("latency-{}-{rate}-{seq}.json", sys.key()));
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", crate::guest::GUEST_CORE]).arg(&env.latgen_bin);
    cmd.args(env.eal_mem(256));
    if env.hugepages {
        cmd.arg("--single-file-segments");
    }
    cmd.args(["--no-pci", "--log-level=lib.eal:warning", &format!("--file-prefix=blat{seq}"), "--lcores", "0@0"]);
    for i in 0..2 {
        cmd.arg("--vdev").arg(format!("net_virtio_user{i},path={},mac={},queues=1", sw.sockets[i].display(), mac_str(guest_mac(i))));
    }
    cmd.args(["--", "--mac-a", &mac_str(guest_mac(0)), "--mac-b", &mac_str(guest_mac(1))]);
    cmd.args(["--size", "64", "--rate", &rate.to_string(), "--warmup", "1", "--secs", &secs.to_string(), "--json"]).arg(&json);
    let log = env.work.join(format!("latgen-{}-{rate}-{seq}.log", sys.key()));
    let mut p = Proc::spawn("macvtap-latgen", cmd, &log)?;
    env.record(&format!("{}/latgen", sys.key()), &p.cmdline);
    let t0 = std::time::Instant::now();
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
    let _ = writeln!(o, "\n## Latency, guest A -> switch -> uplink (net_ring loopback) -> switch -> guest B, 64 B\n");
    let _ = writeln!(
        o,
        "One run per system and load (loads interleaved across systems). Timestamps are TSC values written by `macvtap-latgen` \
(both guests in one process on core 0, the switch's forwarding thread on core 1); HDR histogram, 3 significant digits. \
The generator's own queueing is included (it is a one-core sender and receiver). \"max\" is the loop's own maximum \
(`--rate 0`, latency there is queueing-dominated); the loads are shares of each system's own max.\n"
    );
    let _ = writeln!(o, "{OVS_NOTE}\n");
    let _ = writeln!(o, "| system | load | offered Mpps | received Mpps | p50 µs | p99 µs | p99.9 µs | max µs | lost |");
    let _ = writeln!(o, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in res.latency.iter().filter(|r| r.rx_pps > 0.0) {
        let us = |n: u64| format!("{:.1}", n as f64 / 1000.0);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |",
            r.system,
            r.load,
            if r.offered_pps == 0 { "as fast as possible".into() } else { format!("{:.3}", r.offered_pps as f64 / 1e6) },
            r.rx_pps / 1e6,
            us(r.p50_ns),
            us(r.p99_ns),
            us(r.p999_ns),
            us(r.max_ns),
            r.lost
        );
    }
}
