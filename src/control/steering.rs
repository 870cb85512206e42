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
//!
//! Guests come and go at run time: `add` and `remove` install and take away one guest's
//! rules and filters, without touching the others'. A guest added at run time on a VMDq port
//! is served from the default pool (pools are laid out when the port is configured).

use std::collections::BTreeMap;

use super::vmdq::{self, VmdqCaps, VmdqPlan};
use crate::config::GuestConfig;
use crate::control::Assignment;
use crate::fib::GuestId;
use crate::policy;
use crate::rte::flow::{self, EthDstMatch, FlowRule};
use crate::rte::{Port, PortInfo, RteError};
use crate::wire::MacAddr;

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

/// What the port can do, decided once at start.
enum PortMode {
    /// rte_flow rules are accepted (the probe validated one).
    Flow,
    /// VMDq pools; MACs of guests without a pool go into the default pool's filters.
    Pools { default_pool: u32 },
    /// Neither: every guest is software-dispatched, for this reason.
    Software(String),
}

/// One guest's steering and what it installed on the port; dropping the rules removes them.
struct Installed {
    how: GuestSteering,
    /// A rule per MAC (all of them, or none: partial rules would split its traffic).
    rules: Vec<(MacAddr, FlowRule)>,
    /// MACs this guest put into the port's filters, and the pool they went into.
    filtered: Vec<(MacAddr, u32)>,
    /// The filter pool its MACs go into (its own VMDq pool, the default one, or 0).
    pool: u32,
}

pub struct Steering {
    mode: PortMode,
    /// One line for the port: which mechanism, and why.
    pub port_summary: String,
    pub admission: String,
    /// The port is promiscuous (its filters ran out or it has none): new MACs need no filter.
    promiscuous: bool,
    guests: BTreeMap<GuestId, Installed>,
    /// The broadcast/multicast rule, if any guest has flow rules.
    group: Option<FlowRule>,
}

impl Steering {
    /// Guest `g`'s steering, if it is installed.
    pub fn guest(&self, g: GuestId) -> Option<&GuestSteering> {
        self.guests.get(&g).map(|i| &i.how)
    }

    /// Whether guest `g` has a VMDq pool of its own.
    pub fn pooled(&self, g: GuestId) -> bool {
        matches!(self.guest(g), Some(GuestSteering::Pool { .. }))
    }

    /// For the stats export.
    pub fn describe(&self, name: impl Fn(GuestId) -> String) -> serde_json::Value {
        serde_json::json!({
            "port": self.port_summary,
            "admission": self.admission,
            "rules": self.guests.values().map(|i| i.rules.len()).sum::<usize>() + usize::from(self.group.is_some()),
            "guests": self.guests.iter().map(|(&g, i)| format!("{}: {}", name(g), i.how)).collect::<Vec<_>>(),
        })
    }

    /// Whether the port is promiscuous because its filters ran out (or it has none).
    pub fn is_promiscuous(&self) -> bool {
        self.promiscuous
    }

    /// Steers guest `id` (just added to `asg`) and admits its MACs; returns how it is steered.
    pub fn add(&mut self, uplink: &Port, id: GuestId, g: &GuestConfig, asg: &Assignment) -> GuestSteering {
        if policy::owns_uplink(g.mode) {
            // Every frame is its own, whatever the destination: a rule or filter by its MAC
            // would only sort out what it must get anyway. The port is made promiscuous for it
            // (`control::uplink_owner`), and its MAC may become the port's own, which DPDK
            // refuses for an address already among the filters.
            let how = GuestSteering::Software { reason: "passthru: takes every frame on the port".to_owned() };
            self.guests.insert(id, Installed { how: how.clone(), rules: Vec::new(), filtered: Vec::new(), pool: 0 });
            return how;
        }
        let (how, rules) = match &self.mode {
            PortMode::Software(why) => (GuestSteering::Software { reason: why.clone() }, Vec::new()),
            PortMode::Pools { .. } => (GuestSteering::Software { reason: "added at run time: served from the default VMDq pool".to_owned() }, Vec::new()),
            PortMode::Flow => flow_steering(uplink, g, asg, id),
        };
        if !rules.is_empty() && self.group.is_none() {
            self.group = FlowRule::create(uplink.id(), EthDstMatch::group(), 0).ok();
        }
        let pool = match self.mode {
            PortMode::Pools { default_pool } => default_pool,
            _ => 0,
        };
        let filtered = self.admit_macs(uplink, &g.macs, pool);
        self.guests.insert(id, Installed { how: how.clone(), rules, filtered, pool });
        how
    }

    /// After guest `id`'s mode changed from `old` to `new`: a guest entering or leaving
    /// passthru is steered afresh (a passthru guest has no rules or filters, every other one
    /// needs them). Returns its new steering when it changed.
    pub fn remode(&mut self, uplink: &Port, id: GuestId, old: &GuestConfig, new: &GuestConfig, asg: &Assignment) -> Option<GuestSteering> {
        if policy::owns_uplink(old.mode) == policy::owns_uplink(new.mode) {
            return None;
        }
        self.remove(uplink, id);
        Some(self.add(uplink, id, new, asg))
    }

    /// Takes guest `id`'s rules and filters off the port.
    pub fn remove(&mut self, uplink: &Port, id: GuestId) {
        if let Some(gone) = self.guests.remove(&id) {
            drop(gone.rules);
            for (mac, _) in gone.filtered {
                // A filter the port no longer has is no reason to stop removing the others.
                let _ = uplink.remove_mac(mac.octets());
            }
        }
        if self.guests.values().all(|i| i.rules.is_empty()) {
            self.group = None;
        }
    }

    /// Guest `id` keeps only `keep` of its MACs: the rules and filters of the others go. In a
    /// batch, call this for every changed guest before `gain_macs` for any, and before adding
    /// new guests: a MAC may pass from one guest to another, and the port must end with the
    /// new owner's rule and filter, not without them.
    pub fn drop_macs(&mut self, uplink: &Port, id: GuestId, keep: &[MacAddr]) {
        let Some(inst) = self.guests.get_mut(&id) else { return };
        inst.rules.retain(|(mac, _)| keep.contains(mac));
        inst.filtered.retain(|&(mac, _)| {
            let stays = keep.contains(&mac);
            if !stays {
                let _ = uplink.remove_mac(mac.octets());
            }
            stays
        });
    }

    /// Guest `id` (now with `g.macs`) gets rules and filters for the MACs it did not have,
    /// in its own pool or towards its own queue; the ones it kept are left as they are (a
    /// PMD may refuse a second rule with the same pattern). Returns how it is steered.
    pub fn gain_macs(&mut self, uplink: &Port, id: GuestId, g: &GuestConfig) -> Option<GuestSteering> {
        if policy::owns_uplink(g.mode) {
            return self.guest(id).cloned(); // no rules or filters for passthru (see `add`)
        }
        let mut inst = self.guests.remove(&id)?;
        let new: Vec<MacAddr> = g.macs.iter().copied().filter(|m| !inst.filtered.iter().any(|(f, _)| f == m) && !inst.rules.iter().any(|(r, _)| r == m)).collect();
        if let GuestSteering::Flow { queue } = inst.how {
            let missing: Vec<MacAddr> = g.macs.iter().copied().filter(|m| !inst.rules.iter().any(|(r, _)| r == m)).collect();
            match create_rules(uplink, &missing, g.vlan, queue) {
                Ok(made) => inst.rules.extend(made),
                Err(reason) => {
                    inst.rules.clear();
                    inst.how = GuestSteering::Software { reason };
                }
            }
        }
        let filtered = self.admit_macs(uplink, &new, inst.pool);
        inst.filtered.extend(filtered);
        let how = inst.how.clone();
        self.guests.insert(id, inst);
        Some(how)
    }

    /// After guests moved to other workers: points their rules at the new owners' queues,
    /// new rules first, so the guest is never without one. A refusal keeps the old rules
    /// (the frames then cross a ring, as in software dispatch). Returns one line per change.
    pub fn retarget<'a>(&mut self, uplink: &Port, guests: impl IntoIterator<Item = (GuestId, &'a GuestConfig)>, asg: &Assignment) -> Vec<String> {
        let mut changes = Vec::new();
        for (id, g) in guests {
            let Some(inst) = self.guests.get_mut(&id) else { continue };
            let GuestSteering::Flow { queue } = inst.how else { continue };
            let Some(target) = target_queue(asg, id) else { continue };
            if target == queue {
                continue;
            }
            match create_rules(uplink, &g.macs, g.vlan, target) {
                Ok(made) => {
                    inst.rules = made;
                    inst.how = GuestSteering::Flow { queue: target };
                    changes.push(format!("guest {}: flow rules now to rx queue {target}", g.name));
                }
                Err(why) => changes.push(format!("guest {}: flow rules left on rx queue {queue} ({why})", g.name)),
            }
        }
        changes
    }

    /// Guest `id` moved to another VLAN (`g.vlan`): its rules are made again for it, the new
    /// ones before the old go. A refusal keeps the old rules: frames then reach another
    /// worker's queue and cross a ring, never the wrong guest (the classifier checks the VLAN).
    pub fn change_vlan(&mut self, uplink: &Port, id: GuestId, g: &GuestConfig) -> Option<String> {
        let inst = self.guests.get_mut(&id)?;
        let GuestSteering::Flow { queue } = inst.how else { return None };
        Some(match create_rules(uplink, &g.macs, g.vlan, queue) {
            Ok(made) => {
                inst.rules = made;
                format!("flow rules now for VLAN {}", g.vlan)
            }
            Err(why) => format!("flow rules left as they were ({why})"),
        })
    }

    /// Lets frames for one of the switch's own MACs through the port's filters (the hairpin
    /// self-test's P1, to which a reflecting external switch sends the probe back): into the
    /// default pool where there are pools, so they reach the unknown-destination path, never
    /// a guest's pool. Stays until the port closes. Err: why the port may not take them.
    pub fn admit_own(&mut self, uplink: &Port, mac: MacAddr) -> Result<(), String> {
        if self.promiscuous {
            return Ok(());
        }
        let pool = match self.mode {
            PortMode::Pools { default_pool } => default_pool,
            _ => 0,
        };
        if self.admit_macs(uplink, &[mac], pool).is_empty() && !self.promiscuous {
            return Err(self.admission.clone());
        }
        Ok(())
    }

    /// Puts `macs` into the port's filters (of `pool`) unless it is promiscuous already; the
    /// first refusal makes it promiscuous. Returns the MACs that went in.
    fn admit_macs(&mut self, uplink: &Port, macs: &[MacAddr], pool: u32) -> Vec<(MacAddr, u32)> {
        let mut added = Vec::new();
        if self.promiscuous {
            return added;
        }
        for mac in macs {
            match uplink.add_mac(mac.octets(), pool) {
                Ok(()) => added.push((*mac, pool)),
                Err(e) => {
                    let why = format!("MAC filter for {mac}: {}", short(&e));
                    self.admission = match uplink.set_promiscuous(true) {
                        Ok(()) => {
                            self.promiscuous = true;
                            format!("promiscuous ({why})")
                        }
                        Err(e) => format!("none: promiscuous mode refused too ({}); only frames the port admits by itself arrive ({why})", short(&e)),
                    };
                    break;
                }
            }
        }
        added
    }
}

/// Flow rules for guest `id` to its worker's rx queue, or software and why not.
fn flow_steering(uplink: &Port, g: &GuestConfig, asg: &Assignment, id: GuestId) -> (GuestSteering, Vec<(MacAddr, FlowRule)>) {
    match target_queue(asg, id) {
        None => (GuestSteering::Software { reason: "its worker polls no uplink rx queue".to_owned() }, Vec::new()),
        Some(queue) => match create_rules(uplink, &g.macs, g.vlan, queue) {
            Ok(made) => (GuestSteering::Flow { queue }, made),
            Err(reason) => (GuestSteering::Software { reason }, Vec::new()),
        },
    }
}

/// A rule per MAC, all or none: partial rules would split a guest's traffic. A VLAN guest's
/// rules also match its VLAN where the port accepts a VLAN item; where it does not, they
/// match the MAC alone (MACs are unique on the switch, and the classifier checks the VLAN).
fn create_rules(uplink: &Port, macs: &[MacAddr], vlan: u16, queue: u16) -> Result<Vec<(MacAddr, FlowRule)>, String> {
    let with_vlan = vlan != 0 && macs.first().is_some_and(|m| flow::validate(uplink.id(), EthDstMatch::exact_in(m.octets(), vlan), queue).is_ok());
    let pattern = |mac: &MacAddr| if with_vlan { EthDstMatch::exact_in(mac.octets(), vlan) } else { EthDstMatch::exact(mac.octets()) };
    macs.iter().map(|&mac| FlowRule::create(uplink.id(), pattern(&mac), queue).map(|r| (mac, r)).map_err(|e| short(&e))).collect()
}

/// The uplink rx queue a guest's frames should land on: the first one its queue-0 worker polls.
fn target_queue(asg: &Assignment, guest: GuestId) -> Option<u16> {
    let owner = asg.delivery.owner(guest.index(), 0);
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
/// rte_flow at all. `guests` are the start-up guests, ids 0..n. Err says why not.
pub fn plan_vmdq(uplink: &Port, info: &PortInfo, guests: &[GuestConfig], asg: &Assignment) -> Result<(VmdqPlan, VmdqCaps), String> {
    let Some(first) = guests.first() else { return Err("no guests".to_owned()) };
    if guests.iter().any(|g| policy::owns_uplink(g.mode)) {
        return Err("a passthru guest takes every frame: pools would only sort them".to_owned());
    }
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
    let owners: Vec<usize> = (0..guests.len()).map(|g| asg.delivery.owner(g, 0)).collect();
    let plan = vmdq::plan(&caps, &owners)?;
    if plan.rx_queues > info.max_rx_queues {
        return Err(format!("{} rx queues needed, the port has {}", plan.rx_queues, info.max_rx_queues));
    }
    Ok((plan, caps))
}

/// Installs flow rules or pool filters where the port takes them, after the port started,
/// for the start-up guests (ids 0..n). `vmdq` is what `plan_vmdq` decided (and the port was
/// configured with).
pub fn install(uplink: &Port, guests: &[GuestConfig], asg: &Assignment, vmdq: &Result<(VmdqPlan, VmdqCaps), String>) -> Steering {
    // Multicast must reach the guests whatever their filters.
    let _ = uplink.set_allmulticast(true);
    if let Ok((plan, caps)) = vmdq {
        return install_pools(uplink, guests, plan, caps);
    }
    // Probe once: a port without rte_flow refuses every rule alike.
    let probe_mac = guests.first().map_or([0x02, 0, 0, 0, 0, 1], |g| g.primary_mac().octets());
    let mode = match flow::validate(uplink.id(), EthDstMatch::exact(probe_mac), target_queue(asg, GuestId(0)).unwrap_or(0)) {
        Ok(()) => PortMode::Flow,
        Err(e) => PortMode::Software(short(&e)),
    };
    let mut st = Steering { mode, port_summary: String::new(), admission: String::new(), promiscuous: false, guests: BTreeMap::new(), group: None };
    for (i, g) in guests.iter().enumerate() {
        st.add(uplink, GuestId(i as u16), g, asg);
    }
    let hows: Vec<GuestSteering> = st.guests.values().map(|i| i.how.clone()).collect();
    st.port_summary = summarize(&hows);
    if let Err(why) = vmdq {
        if st.port_summary.starts_with("software") {
            st.port_summary.push_str(&format!("; no VMDq pools: {why}"));
        }
    }
    if !st.promiscuous && st.admission.is_empty() {
        st.admission = match guests.iter().find(|g| policy::owns_uplink(g.mode)) {
            // No filters for it (see `add`): `uplink_owner` makes the port promiscuous.
            Some(g) => format!("promiscuous for passthru guest {}", g.name),
            None => format!("{} guest MACs in the port's filters", guests.iter().map(|g| g.macs.len()).sum::<usize>()),
        };
    }
    st
}

/// Each guest's MACs into its own pool; a guest whose filter is refused, or who got no pool,
/// goes to the default pool and software dispatch.
fn install_pools(uplink: &Port, guests: &[GuestConfig], plan: &VmdqPlan, caps: &VmdqCaps) -> Steering {
    let default_pool = plan.mac_pool(caps, plan.default_pool);
    let mut st = Steering { mode: PortMode::Pools { default_pool }, port_summary: String::new(), admission: String::new(), promiscuous: false, guests: BTreeMap::new(), group: None };
    let mut unpooled_macs = 0;
    for (i, (g, pool)) in guests.iter().zip(&plan.guest_pool).enumerate() {
        let id = GuestId(i as u16);
        let mut filtered = Vec::new();
        let how = match *pool {
            None => GuestSteering::Software { reason: format!("all {} VMDq pools in use", plan.pools - 1) },
            Some(pool) => {
                let mut how = GuestSteering::Pool { pool, queue: plan.first_queue(caps, pool) };
                for mac in &g.macs {
                    match uplink.add_mac(mac.octets(), plan.mac_pool(caps, pool)) {
                        Ok(()) => filtered.push((*mac, plan.mac_pool(caps, pool))),
                        Err(e) => {
                            // The MACs already added stay: they still land on the guest's own queue.
                            how = GuestSteering::Software { reason: format!("VMDq pool {pool} for {mac}: {}", short(&e)) };
                            break;
                        }
                    }
                }
                how
            }
        };
        let pool = match (&how, *pool) {
            (GuestSteering::Pool { .. }, Some(p)) => plan.mac_pool(caps, p),
            _ => {
                // Guests without a pool are admitted through the default pool.
                filtered.extend(st.admit_macs(uplink, &g.macs, default_pool));
                unpooled_macs += g.macs.len();
                default_pool
            }
        };
        st.guests.insert(id, Installed { how, rules: Vec::new(), filtered, pool });
    }
    let pooled = st.guests.values().filter(|i| matches!(i.how, GuestSteering::Pool { .. })).count();
    st.port_summary = format!(
        "VMDq pools ({} of {} pools, {} queues each; default pool {} for the rest{})",
        pooled,
        plan.pools,
        plan.queues_per_pool,
        plan.default_pool,
        if pooled < guests.len() { format!(", software dispatch for {}", guests.len() - pooled) } else { String::new() }
    );
    let rest = if st.promiscuous { st.admission.clone() } else { format!("{unpooled_macs} guest MACs in the port's filters") };
    st.admission = format!("guest MACs in their pools; {rest}");
    st
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
