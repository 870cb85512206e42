//! Changing the guest set of a running switch: one batch (a reload, or a single add, remove
//! or change from the control socket) applied whole or not at all, through the same
//! publication as every other change.
//!
//! Order, and why:
//! 1. plan everything (assignment, tables) without touching anything: a refusal here leaves
//!    the running state as it was;
//! 2. start the new guests' sockets (the only step that can fail for reasons outside the
//!    config: a path in the way, a bad owner); on failure close the ones started and stop;
//! 3. publish: every worker takes the new tables between two passes, so guests the batch
//!    leaves alone lose no frame and keep their order;
//! 4. close the removed guests' sockets (no worker sees them any more; QEMU sees the peer
//!    close), take their rules and filters off the port, read their final counters, and only
//!    then give their ids back;
//! 5. steer the new and changed guests.
//!
//! A new guest whose socket path is held by a guest the same batch removes (a reload that
//! re-creates a guest) can only start after step 4; if that start fails, that guest alone is
//! left out (a second publication) and the reply says so.

use std::collections::HashSet;

use anyhow::{anyhow, Result};

use super::guests::RunningGuest;
use super::report::guest_line;
use super::switch::Switch;
use crate::config::{socket_key, GuestConfig};
use crate::fib::GuestId;
use crate::stats::GuestStats;

/// One change of the guest set.
#[derive(Default)]
pub struct Batch {
    pub remove: Vec<GuestId>,
    pub add: Vec<GuestConfig>,
    /// Guests whose live keys (MACs, mode, MTU, lcore) change; their sockets stay.
    pub change: Vec<(GuestId, GuestConfig)>,
    /// The file the guests' configs were read from (a reload), so that a refusal names the
    /// guest's line in it as validation does; None for one change from the socket, whose
    /// refusal names the guest alone.
    pub source: Option<String>,
}

/// What a batch did.
#[derive(Default)]
pub struct Applied {
    /// How long the whole change took on the control thread, and how long the workers
    /// paused for its publication(s) (the time from handing them the new view to the last
    /// of them running on it).
    pub took: std::time::Duration,
    pub paused: std::time::Duration,
    /// Final counters of each removed guest.
    pub removed: Vec<GuestStats>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    /// Guests removed and added again (a reload changed a key that needs a reconnect).
    pub recreated: Vec<String>,
    /// New guests left out after the rest applied (see the module doc), with why.
    pub failed: Vec<String>,
}

impl Switch {
    pub(super) fn apply(&mut self, b: Batch) -> Result<Applied> {
        let t0 = std::time::Instant::now();
        let who = |g: &GuestConfig| match &b.source {
            Some(file) => format!("{file}:{}: guest {:?}", g.line, g.name),
            None => format!("guest {:?}", g.name),
        };
        // 1. Plan. Only an MTU the batch sets is checked against the buffers' size: a guest
        // the switch started with keeps the MTU it started with.
        let new_mtus = b.add.iter().chain(b.change.iter().filter(|(id, g)| self.running.guests.get(*id).is_some_and(|r| r.cfg.mtu != g.mtu)).map(|(_, g)| g));
        for g in new_mtus {
            if g.mtu > self.uplink_mtu {
                return Err(anyhow!(
                    "{}: mtu {} is above the uplink MTU {} this switch was started with (packet buffers are sized for it): restart with --uplink-mtu {}",
                    who(g), g.mtu, self.uplink_mtu, g.mtu
                ));
            }
        }
        let removing: HashSet<GuestId> = b.remove.iter().copied().collect();
        let ids = self
            .running
            .guests
            .free_ids(b.add.len(), &[])
            .ok_or_else(|| anyhow!("no free guest id: {} guests at most", crate::config::MAX_GUESTS))?;
        let mut asg = self.asg.clone();
        for &id in &b.remove {
            asg.remove_guest(id);
        }
        for (&id, g) in ids.iter().zip(&b.add) {
            asg.add_guest(id, g.queues, g.lcore).map_err(|e| anyhow!("{}: {e}", who(g)))?;
        }
        for (id, g) in &b.change {
            let before = self.running.guests.get(*id).map(|r| r.cfg.lcore);
            if before != Some(g.lcore) {
                asg.pin_guest(*id, g.lcore).map_err(|e| anyhow!("{}: {e}", who(g)))?;
            }
        }
        let after: Vec<(GuestId, GuestConfig)> = self
            .running
            .guests
            .iter()
            .filter(|(id, _)| !removing.contains(id))
            .map(|(id, r)| (id, b.change.iter().find(|(c, _)| *c == id).map_or_else(|| r.cfg.clone(), |(_, g)| g.clone())))
            .chain(ids.iter().copied().zip(b.add.iter().cloned()))
            .collect();
        let tables = self.build_tables(after.iter().map(|(id, g)| (*id, g)), asg.delivery.clone())?;
        self.budget.check(super::sizing::source_queues(after.iter().map(|(_, g)| g))).map_err(|e| anyhow!(e))?;

        // 2. Sockets of the new guests whose paths are free now. Paths are compared as the
        // files they name (`/var/run/x.sock` is `/run/x.sock`), as validation compares them: a
        // re-created guest whose path is only spelt otherwise must wait for the old socket too.
        let held: HashSet<std::path::PathBuf> = b.remove.iter().filter_map(|&id| self.running.guests.get(id)).map(|r| socket_key(&r.cfg.socket)).collect();
        let mut started: Vec<(GuestId, RunningGuest)> = Vec::new();
        let mut deferred: Vec<(GuestId, &GuestConfig)> = Vec::new();
        for (&id, g) in ids.iter().zip(&b.add) {
            if held.contains(&socket_key(&g.socket)) {
                deferred.push((id, g));
                continue;
            }
            match RunningGuest::start(g, id, &self.events) {
                Ok(r) => started.push((id, r)),
                Err(e) => {
                    for (_, r) in started {
                        r.close(&self.events);
                    }
                    return Err(e.context(who(g)));
                }
            }
        }
        for &(id, ref g) in &after {
            if ids.contains(&id) {
                self.registry.add_guest(id, &g.name);
            }
        }

        // 3. Publish.
        self.asg = asg;
        self.publish(tables);

        // 4. The removed guests go.
        let mut out = Applied { paused: self.last_pause, ..Applied::default() };
        for &id in &b.remove {
            if let Some(r) = self.running.guests.take(id) {
                let name = r.cfg.name.clone();
                r.close(&self.events);
                self.running.steering.remove(&self.running.uplink, id);
                self.watch.forget(id);
                // Read after the close: no worker can count for it any more.
                if let Some(last) = self.registry.remove_guest(id) {
                    out.removed.push(last);
                }
                println!("guest {name}: removed");
            }
        }

        // 5. The changed and new guests are steered: every MAC a changed guest gave up goes
        // first, then what changed guests gained, then the new guests' (a MAC may pass from
        // one guest to another in one batch). A passthru guest's MAC the port carries as its
        // own is given back first, so that a guest taking that MAC gets its filter.
        let passthru_after = after.iter().find(|(_, g)| g.mode == crate::policy::Mode::Passthru).map(|(_, g)| g.primary_mac());
        if let Some(line) = self.owner.let_go_of_mac(&self.running.uplink, passthru_after) {
            println!("{line}");
        }
        let mut olds = Vec::with_capacity(b.change.len());
        for (id, g) in &b.change {
            let Some(old) = self.running.guests.get(*id).map(|r| r.cfg.clone()) else { continue };
            self.running.guests.set_config(*id, g.clone());
            if old.macs != g.macs {
                self.running.steering.drop_macs(&self.running.uplink, *id, &g.macs);
            }
            olds.push(old);
        }
        for ((id, g), old) in b.change.iter().zip(&olds) {
            if let Some(how) = self.running.steering.remode(&self.running.uplink, *id, old, g, &self.asg) {
                println!("guest {}: steering {how}", g.name);
            }
            if old.macs != g.macs {
                self.running.steering.gain_macs(&self.running.uplink, *id, g);
            }
            // A VLAN change remakes the rules; with MACs changed too, the gained MACs' rules
            // are made for the new VLAN and the kept ones stay (a rule for the old VLAN only
            // costs a ring hop: the classifier checks the VLAN).
            if old.vlan != g.vlan && old.macs == g.macs {
                if let Some(line) = self.running.steering.change_vlan(&self.running.uplink, *id, g) {
                    println!("guest {}: {line}", g.name);
                }
            }
            if old.lcore != g.lcore {
                for line in self.running.steering.retarget(&self.running.uplink, [(*id, g)], &self.asg) {
                    println!("guest {}: {line}", g.name);
                }
            }
            println!("guest {}: changed ({})", g.name, old.changed_keys(g).join(", "));
            out.changed.push(g.name.clone());
        }
        for (id, r) in started {
            self.add_running(id, r, &mut out);
        }
        let mut left_out = Vec::new();
        for (id, g) in deferred {
            match RunningGuest::start(g, id, &self.events) {
                Ok(r) => self.add_running(id, r, &mut out),
                Err(e) => {
                    out.failed.push(format!("{}: {e:#}", who(g)));
                    left_out.push(id);
                }
            }
        }
        if !left_out.is_empty() {
            let mut asg = self.asg.clone();
            for &id in &left_out {
                asg.remove_guest(id);
                self.registry.remove_guest(id);
            }
            let keep: Vec<(GuestId, GuestConfig)> = self.running.guests.iter().map(|(id, r)| (id, r.cfg.clone())).collect();
            // The running guests passed validation together, so their table builds; should it
            // not, the published tables stay (`Tables::new` keeps a map and a table that
            // disagree from reaching the workers).
            match self.build_tables(keep.iter().map(|(id, g)| (*id, g)), asg.delivery.clone()) {
                Ok(tables) => {
                    self.asg = asg;
                    self.publish(tables);
                    out.paused += self.last_pause;
                }
                Err(e) => eprintln!("dpdk-macvtap: internal error: the guests left out stay in the tables: {e:#}"),
            }
        }
        self.sync_uplink_owner();
        // The pause and the change are not the new state's load.
        self.rebalancer.restart(&self.registry);
        out.took = t0.elapsed();
        self.guests_changed = true;
        let removed: Vec<String> = out.removed.iter().map(|g| g.name.clone()).collect();
        self.note_applied(&removed, &out.added);
        Ok(out)
    }

    fn add_running(&mut self, id: GuestId, r: RunningGuest, out: &mut Applied) {
        let how = self.running.steering.add(&self.running.uplink, id, &r.cfg, &self.asg);
        println!("{} (added)", guest_line(&r.cfg, how));
        out.added.push(r.cfg.name.clone());
        self.running.guests.insert(id, r);
    }
}
