//! How each guest's frames reach the worker that owns it, and how the uplink admits them.
//!
//! Preference, per port and then per guest: an `rte_flow` rule `eth dst == MAC -> queue` that
//! lands the guest's frames on the rx queue its own worker polls; else, on a port without
//! rte_flow that has VMDq, a pool per guest (`vmdq`), whose queue the guest's worker polls;
//! otherwise software dispatch (RSS spreads frames over the workers' queues, the receiving
//! worker classifies and hands frames for another worker's guest over a ring). A rule or
//! pool filter the port refuses for one guest falls back for that guest only. The software
//! classifier runs on every path, so a wrong or missing rule can cost a ring hop, never a
//! misdelivery.
//!
//! Admission: guest MACs go into the port's MAC filters (their pool's, with VMDq); a port
//! without enough filters is made promiscuous instead, and the summary says so.

use super::vmdq::{self, VmdqCaps, VmdqPlan};
use crate::config::{Config, GuestConfig};
use crate::control::Assignment;
use crate::rte::flow::{self, EthDstMatch, FlowRule};
use crate::rte::{Port, PortInfo, RteError};

/// How one guest is steered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestSteering {
    Flow { queue: u16 },
    Pool { pool: u16, queue: u16 },
    Software { reason: String },
}

impl std::fmt::Display for GuestSteering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestSteering::Flow { queue } => write!(f, "flow (rx queue {queue})"),
            GuestSteering::Pool { pool, queue } => write!(f, "VMDq pool {pool} (rx queue {queue})"),
            GuestSteering::Software { reason } => write!(f, "software ({reason})"),
        }
    }
}

pub struct Steering {
    pub guests: Vec<GuestSteering>,
    /// One line for the port: which mechanism, and why.
    pub port_summary: String,
    pub admission: String,
    /// Installed rules per guest, and the broadcast/multicast one; dropping them removes
    /// them from the port (before it closes).
    rules: Vec<Vec<FlowRule>>,
    group: Option<FlowRule>,
}

impl Steering {
    /// For the stats export: outlives the rules, which go before the port closes.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "port": self.port_summary,
            "admission": self.admission,
            "rules": self.rules.iter().map(Vec::len).sum::<usize>() + usize::from(self.group.is_some()),
            "guests": self.guests.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
        })
    }

    /// After guests moved to other workers: points their rules at the new owners' queues,
    /// new rules first, so the guest is never without one. A refusal keeps the old rules
    /// (the frames then cross a ring, as in software dispatch). Returns one line per change.
    pub fn retarget(&mut self, uplink: &Port, cfg: &Config, asg: &Assignment) -> Vec<String> {
        let mut changes = Vec::new();
        for (gi, g) in cfg.guests.iter().enumerate() {
            let GuestSteering::Flow { queue } = self.guests[gi] else { continue };
            let Some(target) = target_queue(asg, gi) else { continue };
            if target == queue {
                continue;
            }
            match create_rules(uplink, g, target) {
                Ok(made) => {
                    self.rules[gi] = made;
                    self.guests[gi] = GuestSteering::Flow { queue: target };
                    changes.push(format!("guest {}: flow rules now to rx queue {target}", g.name));
                }
                Err(why) => changes.push(format!("guest {}: flow rules left on rx queue {queue} ({why})", g.name)),
            }
        }
        changes
    }
}

/// A rule per MAC of the guest, all or none: partial rules would split its traffic.
fn create_rules(uplink: &Port, g: &GuestConfig, queue: u16) -> Result<Vec<FlowRule>, String> {
    g.macs.iter().map(|mac| FlowRule::create(uplink.id(), EthDstMatch::exact(mac.octets()), queue).map_err(|e| short(&e))).collect()
}

/// The uplink rx queue a guest's frames should land on: the first one its queue-0 worker polls.
fn target_queue(asg: &Assignment, guest: usize) -> Option<u16> {
    let owner = asg.delivery.owner(guest, 0);
    asg.workers.get(owner).and_then(|w| w.uplink_rx.first().copied())
}

fn short(e: &RteError) -> String {
    let what = if e.is_unsupported() { "not supported by the port" } else { "refused" };
    match &e.detail {
        Some(d) => format!("{} {what}: {d}", e.op),
        None => format!("{} {what}: {}", e.op, crate::rte::error::strerror(e.errno)),
    }
}

/// Whether the port can steer by VMDq pools: decided once the port is configured and before
/// its queues are set up (pools change the queue layout), and only for a port that has no
/// rte_flow at all. Err says why not, for the summary.
pub fn plan_vmdq(uplink: &Port, info: &PortInfo, cfg: &Config, asg: &Assignment) -> Result<(VmdqPlan, VmdqCaps), String> {
    let Some(first) = cfg.guests.first() else { return Err("no guests".to_owned()) };
    match flow::validate(uplink.id(), EthDstMatch::exact(first.primary_mac().octets()), 0) {
        Err(e) if e.is_unsupported() => {}
        Err(_) | Ok(()) => return Err("the port has rte_flow".to_owned()),
    }
    let caps = VmdqCaps {
        max_pools: info.max_vmdq_pools,
        queue_base: info.vmdq_queue_base,
        queue_num: info.vmdq_queue_num,
        pool_base: info.vmdq_pool_base,
    };
    let owners: Vec<usize> = (0..cfg.guests.len()).map(|g| asg.delivery.owner(g, 0)).collect();
    let plan = vmdq::plan(&caps, &owners)?;
    if plan.rx_queues > info.max_rx_queues {
        return Err(format!("{} rx queues needed, the port has {}", plan.rx_queues, info.max_rx_queues));
    }
    Ok((plan, caps))
}

/// Installs flow rules or pool filters where the port takes them, after the port started.
/// `vmdq` is what `plan_vmdq` decided (and the port was configured with).
pub fn install(uplink: &Port, cfg: &Config, asg: &Assignment, vmdq: &Result<(VmdqPlan, VmdqCaps), String>) -> Steering {
    if let Ok((plan, caps)) = vmdq {
        return install_pools(uplink, cfg, plan, caps);
    }
    let n = cfg.guests.len();
    let mut guests = Vec::with_capacity(n);
    let mut rules: Vec<Vec<FlowRule>> = Vec::with_capacity(n);
    // Probe once with the first guest: a port without rte_flow refuses every rule alike.
    let probe = cfg
        .guests
        .first()
        .map(|g| flow::validate(uplink.id(), EthDstMatch::exact(g.primary_mac().octets()), target_queue(asg, 0).unwrap_or(0)));
    for (gi, g) in cfg.guests.iter().enumerate() {
        let (decided, made) = match &probe {
            Some(Err(e)) => (GuestSteering::Software { reason: short(e) }, Vec::new()),
            _ => match target_queue(asg, gi) {
                None => (GuestSteering::Software { reason: "its worker polls no uplink rx queue".to_owned() }, Vec::new()),
                Some(queue) => match create_rules(uplink, g, queue) {
                    Ok(made) => (GuestSteering::Flow { queue }, made),
                    Err(reason) => (GuestSteering::Software { reason }, Vec::new()),
                },
            },
        };
        guests.push(decided);
        rules.push(made);
    }
    // Broadcast and multicast to the shared queue 0; if refused, RSS spreads them, which
    // works as well (every worker can flood).
    let group = if rules.iter().any(|r| !r.is_empty()) { FlowRule::create(uplink.id(), EthDstMatch::group(), 0).ok() } else { None };
    let mut port_summary = summarize(&guests);
    if let Err(why) = vmdq {
        if port_summary.starts_with("software") {
            port_summary.push_str(&format!("; no VMDq pools: {why}"));
        }
    }
    let admission = admit(uplink, &cfg.guests.iter().collect::<Vec<_>>(), 0);
    Steering { guests, port_summary, admission, rules, group }
}

/// Each guest's MACs into its own pool; a guest whose filter is refused, or who got no pool,
/// goes to the default pool and software dispatch.
fn install_pools(uplink: &Port, cfg: &Config, plan: &VmdqPlan, caps: &VmdqCaps) -> Steering {
    let guests: Vec<GuestSteering> = cfg
        .guests
        .iter()
        .zip(&plan.guest_pool)
        .map(|(g, pool)| {
            let Some(pool) = *pool else {
                return GuestSteering::Software { reason: format!("all {} VMDq pools in use", plan.pools - 1) };
            };
            for mac in &g.macs {
                if let Err(e) = uplink.add_mac(mac.octets(), plan.mac_pool(caps, pool)) {
                    // The MACs already added stay: they still land on the guest's own queue.
                    return GuestSteering::Software { reason: format!("VMDq pool {pool} for {mac}: {}", short(&e)) };
                }
            }
            GuestSteering::Pool { pool, queue: plan.first_queue(caps, pool) }
        })
        .collect();
    let pooled = guests.iter().filter(|g| matches!(g, GuestSteering::Pool { .. })).count();
    let port_summary = format!(
        "VMDq pools ({} of {} pools, {} queues each; default pool {} for the rest{})",
        pooled,
        plan.pools,
        plan.queues_per_pool,
        plan.default_pool,
        if pooled < guests.len() { format!(", software dispatch for {}", guests.len() - pooled) } else { String::new() }
    );
    // Guests without a pool are admitted through the default pool.
    let unpooled: Vec<&GuestConfig> = cfg.guests.iter().zip(&guests).filter(|(_, s)| !matches!(s, GuestSteering::Pool { .. })).map(|(g, _)| g).collect();
    let admission = format!("guest MACs in their pools; {}", admit(uplink, &unpooled, plan.mac_pool(caps, plan.default_pool)));
    Steering { guests, port_summary, admission, rules: (0..cfg.guests.len()).map(|_| Vec::new()).collect(), group: None }
}

/// What the port ended up with: a port may validate rules and then refuse to create them.
fn summarize(guests: &[GuestSteering]) -> String {
    let flows = guests.iter().filter(|g| matches!(g, GuestSteering::Flow { .. })).count();
    let first_reason = guests.iter().find_map(|g| match g {
        GuestSteering::Software { reason } => Some(reason.as_str()),
        GuestSteering::Flow { .. } | GuestSteering::Pool { .. } => None,
    });
    match (flows, first_reason) {
        (_, None) if guests.is_empty() => "no guests".to_owned(),
        (_, None) => "rte_flow (eth dst -> the owning worker's rx queue)".to_owned(),
        (0, Some(why)) => format!("software dispatch: {why}"),
        (n, Some(why)) => format!("rte_flow for {n} guests, software dispatch for {} ({why})", guests.len() - n),
    }
}

/// Puts every guest MAC into the port's filters (of `pool`); falls back to promiscuous mode.
fn admit(uplink: &Port, guests: &[&GuestConfig], pool: u32) -> String {
    let mut failure = None;
    'outer: for g in guests {
        for mac in &g.macs {
            if let Err(e) = uplink.add_mac(mac.octets(), pool) {
                failure = Some(format!("MAC filter for {mac}: {}", short(&e)));
                break 'outer;
            }
        }
    }
    // Multicast must reach the guests whatever their filters.
    let _ = uplink.set_allmulticast(true);
    match failure {
        None => format!("{} guest MACs in the port's filters", guests.iter().map(|g| g.macs.len()).sum::<usize>()),
        Some(why) => match uplink.set_promiscuous(true) {
            Ok(()) => format!("promiscuous ({why})"),
            Err(e) => format!("none: promiscuous mode refused too ({}); only frames the port admits by itself arrive ({why})", short(&e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sw(r: &str) -> GuestSteering {
        GuestSteering::Software { reason: r.to_owned() }
    }

    #[test]
    fn the_summary_says_what_the_guests_got() {
        assert_eq!(summarize(&[]), "no guests");
        assert_eq!(summarize(&[GuestSteering::Flow { queue: 1 }]), "rte_flow (eth dst -> the owning worker's rx queue)");
        assert_eq!(summarize(&[sw("x: no"), sw("y")]), "software dispatch: x: no");
        assert_eq!(
            summarize(&[GuestSteering::Flow { queue: 0 }, sw("full")]),
            "rte_flow for 1 guests, software dispatch for 1 (full)"
        );
        assert_eq!(GuestSteering::Flow { queue: 3 }.to_string(), "flow (rx queue 3)");
        assert_eq!(GuestSteering::Pool { pool: 2, queue: 32 }.to_string(), "VMDq pool 2 (rx queue 32)");
        assert_eq!(sw("why").to_string(), "software (why)");
    }
}
