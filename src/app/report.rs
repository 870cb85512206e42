//! What the switch prints and exports: the start-up summary, per-lcore lines, the busy
//! share, rebalance messages and the JSON document (`--stats-json`, `stats` on the control
//! socket). Formatting only.

use std::path::Path;

use anyhow::{Context, Result};

use super::guests::GuestSet;
use crate::config::{GuestConfig, VhostRole};
use crate::control::balance::Load;
use crate::control::steering::Steering;
use crate::control::{Assignment, WorkerPlan};
use crate::fib::GuestId;
use crate::rte::{Mempool, Port};
use crate::stats::StatsSnapshot;
use crate::wire::MacAddr;

pub fn guest_name(guests: &GuestSet, g: usize) -> String {
    guests.get(GuestId(g as u16)).map_or_else(|| format!("#{g}"), |r| r.cfg.name.clone())
}

/// `lcore 1: uplink rx [0], uplink tx q0, guest queues [vm1:0 vm3:0]`
pub fn lcore_line(guests: &GuestSet, plan: &WorkerPlan) -> String {
    let queues = plan.guest_queues.iter().map(|&(g, q)| format!("{}:{q}", guest_name(guests, g))).collect::<Vec<_>>().join(" ");
    format!("lcore {}: uplink rx {:?}, uplink tx q{}, guest queues [{queues}]", plan.lcore, plan.uplink_rx, plan.uplink_tx)
}

/// `guest vm1: mac ..., socket ... (server, mode 660), queues 1, mode vepa, mtu 1500, [vlan 10, ]steering ...`
pub fn guest_line(g: &GuestConfig, steering: impl std::fmt::Display) -> String {
    let macs = g.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",");
    let role = match g.vhost {
        VhostRole::Server => format!("server, mode {:o}", g.socket_mode),
        VhostRole::Client => "client".to_owned(),
    };
    let vlan = if g.vlan == 0 { String::new() } else { format!("vlan {}, ", g.vlan) };
    format!("guest {}: mac {macs}, socket {} ({role}), queues {}, mode {}, mtu {}, {vlan}steering {steering}", g.name, g.socket.display(), g.queues, g.mode, g.mtu)
}

pub fn print_summary(guests: &GuestSet, uplink: &Port, mtu: u16, rxq: u16, txq: u16, pool: &Mempool, steering: &Steering) {
    let info = uplink.info().ok();
    let mac = uplink.mac().map(MacAddr::new).unwrap_or_default();
    println!(
        "uplink: port {} {} (driver {}), mac {mac}, mtu {mtu}, {rxq} rx / {txq} tx queues",
        uplink.id(), uplink.name(), info.map(|i| i.driver).unwrap_or_default()
    );
    println!("uplink steering: {}", steering.port_summary);
    println!("uplink admission: {}", steering.admission);
    for (id, g) in guests.iter() {
        let how = steering.guest(id).map_or_else(|| "none".to_owned(), |s| s.to_string());
        println!("{}", guest_line(&g.cfg, how));
    }
    println!("mempool: {} mbufs of {} bytes", pool.available() + pool.in_use(), pool.data_room());
}

/// `uplink link: up (10000 Mb/s, full duplex) at start, followed by interrupt`
pub fn print_uplink_link(l: &crate::control::uplink_link::UplinkLink) {
    let error = l.last_error.as_ref().map(|e| format!(" (the port cannot say: {e}; taken as up)")).unwrap_or_default();
    let carrier = l.kernel_iface.as_ref().map(|k| format!(" and the carrier of kernel interface {k}")).unwrap_or_default();
    println!("uplink link: {} at start{error}, followed by {}{carrier}", l.describe().trim_start_matches("link "), l.detection.name());
}

/// Worker `w`'s share of its time (since start) spent moving frames and spent asleep, in
/// percent, from its own TSC accounting (0 when it has none).
pub fn busy_sleep_percent(s: &StatsSnapshot, w: usize) -> (f64, f64) {
    s.workers.get(w).map_or((0.0, 0.0), |w| (w.percent_of_time(w.busy_cycles), w.percent_of_time(w.sleep_cycles)))
}

/// ` | lcore 1 busy 12% sleep 80% 80 cyc/frame | ...`
pub fn busy_line(s: &StatsSnapshot, asg: &Assignment) -> String {
    let mut out = String::new();
    for (i, (w, plan)) in s.workers.iter().zip(&asg.workers).enumerate() {
        let cpp = w.busy_cycles.checked_div(w.frames).unwrap_or(0);
        let (busy, sleep) = busy_sleep_percent(s, i);
        let per_call = if w.enqueue_calls == 0 { 0.0 } else { w.enqueue_frames as f64 / w.enqueue_calls as f64 };
        out.push_str(&format!(" | lcore {} busy {busy:.0}% sleep {sleep:.0}% {cpp} cyc/frame {per_call:.1} frames/copy", plan.lcore));
    }
    out
}

/// Steering and queue assignment, for the JSON export.
pub fn control_json(steering: &Steering, guests: &GuestSet, asg: &Assignment) -> serde_json::Value {
    let lcores: Vec<serde_json::Value> = asg
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "lcore": w.lcore,
                "uplink_rx": w.uplink_rx,
                "guest_queues": w.guest_queues.iter().map(|&(g, q)| format!("{}:{q}", guest_name(guests, g))).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "steering": steering.describe(|g| guest_name(guests, g.index())), "assignment": lcores })
}

/// What a rebalance moved and the loads it expects, e.g. `vm3:0 lcore 1 -> 2; lcore 1 busy
/// 97% -> ~49%, lcore 2 busy 3% -> ~51%`.
pub fn describe_moves(guests: &GuestSet, before: &Assignment, moves: &[(usize, u16, u16)], p: &crate::control::balance::Proposal, load: &Load) -> String {
    let moved: Vec<String> = moves
        .iter()
        .map(|&(slot, from, to)| {
            let (g, q) = before.delivery.slot_queue(slot);
            let lc = |w: u16| before.workers[usize::from(w)].lcore;
            format!("{}:{q} lcore {} -> {}", guest_name(guests, g), lc(from), lc(to))
        })
        .collect();
    let loads: Vec<String> = before
        .workers
        .iter()
        .enumerate()
        .map(|(w, plan)| format!("lcore {} busy {:.0}% -> ~{:.0}%", plan.lcore, 100.0 * load.share(p.before[w], w), 100.0 * load.share(p.after[w], w)))
        .collect();
    format!("{}; {}", moved.join(", "), loads.join(", "))
}

/// The stats document: counters, steering, assignment and the pool's baseline.
pub fn stats_json(s: &StatsSnapshot, control: &serde_json::Value, at_start: u32, at_exit: Option<u32>) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
    v["steering"] = control["steering"].clone();
    v["assignment"] = control["assignment"].clone();
    v["mempool_in_use_at_start"] = serde_json::json!(at_start);
    v["mempool_in_use_at_exit"] = serde_json::json!(at_exit);
    v
}

pub fn write_json(path: &Path, s: &StatsSnapshot, control: &serde_json::Value, at_start: u32, at_exit: Option<u32>) -> Result<()> {
    let v = stats_json(s, control, at_start, at_exit);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&v)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
