//! What the control thread does between requests: the uplink's link, guest link messages,
//! announcement rounds and hairpin verdicts that are due, the periodic stats line, periodic
//! rebalancing by load, and the signals' requests (reload, stats dump).

use std::time::Instant;

use super::report::{busy_line, control_json, describe_moves, lcore_line, write_json};
use super::switch::Switch;
use crate::control::Signals;

/// When the periodic jobs are next due.
pub struct Timers {
    next_stats: Instant,
    next_rebalance: Instant,
}

impl Timers {
    pub fn new(s: &Switch) -> Timers {
        let now = Instant::now();
        Timers { next_stats: now + s.settings.stats_interval, next_rebalance: now + s.settings.rebalance_every }
    }
}

impl Switch {
    /// Returns whether the switch's state changed in a way its status line shows (links, the
    /// guest set).
    pub fn tick(&mut self, t: &mut Timers, signals: &Signals) -> bool {
        // The bond first: its members' carrier is part of the uplink's link.
        for line in self.bond.as_mut().map(|b| b.poll()).unwrap_or_default() {
            println!("{line}");
        }
        if self.bond.as_mut().is_some_and(|b| b.take_moved()) {
            // Another member now carries the guests' frames: the external switch relearns
            // their MACs there at once, as Linux has its macvlans announce after a failover.
            let a = self.announce_all();
            println!("uplink bond: re-announcing {} MAC(s) of {} guest(s)", a.macs, a.guests);
        }
        let uplink_changed = self.poll_uplink();
        let links = self.poll_links();
        let mut changed = uplink_changed || !links.is_empty() || std::mem::take(&mut self.guests_changed);
        for line in links {
            println!("{line}");
        }
        let now = Instant::now();
        self.announce_due(now);
        self.hairpin_tick(now);
        if !self.settings.stats_interval.is_zero() && now >= t.next_stats {
            let snap = self.snapshot();
            println!("stats: {}{}", snap.summary_line(), busy_line(&snap, &self.asg));
            t.next_stats += self.settings.stats_interval;
        }
        if self.settings.measure && now >= t.next_rebalance {
            // Periodic: only moves are worth a line.
            let _ = self.rebalance(false);
            t.next_rebalance = Instant::now() + self.settings.rebalance_every;
        }
        if signals.take_reload_request() {
            // systemd's ExecReload sends SIGHUP: the same as `dpdk-macvtapctl reload`.
            match self.reload() {
                Err(e) => eprintln!("dpdk-macvtap: reload refused, nothing changed: {e:#}"),
                Ok(done) => {
                    changed = true;
                    for f in &done.failed {
                        eprintln!("dpdk-macvtap: reload: {f}");
                    }
                }
            }
        }
        if signals.take_dump_request() {
            if let Some(path) = &self.settings.stats_json {
                let control = control_json(&self.running.steering, &self.running.guests, &self.asg);
                if let Err(e) = write_json(path, &self.snapshot(), &control, self.mempool_at_start, None) {
                    eprintln!("dpdk-macvtap: stats dump: {e:#}");
                }
            }
        }
        changed
    }

    /// A short summary for systemd's `STATUS=` (what `systemctl status` shows).
    pub fn status_line(&self) -> String {
        let ids = self.running.guests.ids();
        let up = ids.iter().filter(|&&g| self.watch.is_up(g)).count();
        let what = if self.uplink_link.link.up { "forwarding" } else { "uplink link down, guests wait" };
        format!("{what}: {} guests ({up} up), {} workers", ids.len(), self.asg.workers.len())
    }

    /// Moves guest queues to other workers if the measured load says it is worth a pause;
    /// Ok says what moved, Err why nothing did. `asked`: a user asked (the answer is printed).
    pub fn rebalance(&mut self, asked: bool) -> Result<String, String> {
        if !self.settings.measure {
            let why = "queue load is not measured; start with --assign cycles".to_owned();
            if asked {
                println!("rebalance: {why}");
            }
            return Err(why);
        }
        let guests = &self.running.guests;
        let d = &self.asg.delivery;
        let pinned = |slot: usize| guests.get(crate::fib::GuestId(d.slot_guest(slot) as u16)).is_some_and(|g| g.cfg.lcore.is_some());
        let plan = match self.rebalancer.propose(&self.registry, &self.asg, pinned) {
            Ok(p) => p,
            Err(why) => {
                if asked {
                    println!("rebalance: nothing moved ({why})");
                }
                return Err(why);
            }
        };
        let before = self.asg.clone();
        let next = self.asg.with_moves(&plan.moves);
        let configs: Vec<_> = self.running.guests.iter().map(|(id, r)| (id, r.cfg.clone())).collect();
        let tables = match self.build_tables(configs.iter().map(|(id, g)| (*id, g)), next.delivery.clone()) {
            Ok(t) => t,
            Err(e) => return Err(format!("{e:#}")),
        };
        self.asg = next;
        self.publish(tables);
        let msg = describe_moves(&self.running.guests, &before, &plan.described, &plan.proposal, &plan.load);
        println!("rebalance: {msg}");
        for plan in &self.asg.workers {
            println!("{}", lcore_line(&self.running.guests, plan));
        }
        for line in self.running.steering.retarget(&self.running.uplink, configs.iter().map(|(id, g)| (*id, g)), &self.asg) {
            println!("rebalance: {line}");
        }
        // The pause and the move itself are not the new assignment's load.
        self.rebalancer.restart(&self.registry);
        Ok(msg)
    }
}
