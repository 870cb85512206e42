//! Assignment by measured load on a running switch: samples the cycles each guest queue cost
//! since the last look, asks `balance` for better owners, and moves the queues through the
//! `Handover` protocol when that is worth a pause.

use std::sync::Arc;

use super::balance::{self, Load, Proposal};
use super::{Assignment, Handover, WorkerUpdate};
use crate::stats::{StatsRegistry, WorkerStats};

pub enum Outcome {
    /// Queues moved: the proposal that was applied and the load it was based on.
    Moved { proposal: Proposal, load: Load, before: Box<Assignment> },
    /// Nothing moved, and why.
    Kept(String),
}

pub struct Rebalancer {
    current: Assignment,
    /// Per slot: the guest is pinned to an lcore in the config.
    pinned: Vec<bool>,
    handover: Arc<Handover>,
    last_slots: Vec<Vec<u64>>,
    last_workers: Vec<WorkerStats>,
}

impl Rebalancer {
    /// `pins[g]`: guest g is pinned to an lcore.
    pub fn new(current: Assignment, pins: &[bool], handover: Arc<Handover>, stats: &StatsRegistry) -> Rebalancer {
        let pinned = (0..current.delivery.slots()).map(|s| pins[current.delivery.slot_guest(s)]).collect();
        Rebalancer { current, pinned, handover, last_slots: stats.slot_cycles(), last_workers: stats.workers() }
    }

    pub fn assignment(&self) -> &Assignment {
        &self.current
    }

    /// The load since the previous call.
    fn sample(&mut self, stats: &StatsRegistry) -> Load {
        let slots = stats.slot_cycles();
        let workers = stats.workers();
        let n_slots = self.current.delivery.slots();
        let mut load = Load { slot: vec![0; n_slots], base: Vec::new(), total: Vec::new() };
        for (w, (now, last)) in slots.iter().zip(&self.last_slots).enumerate() {
            let mut on_slots = 0u64;
            for s in 0..n_slots {
                let d = now[s].wrapping_sub(last[s]);
                load.slot[s] += d;
                on_slots += d;
            }
            let busy = workers[w].busy_cycles.wrapping_sub(self.last_workers[w].busy_cycles);
            let idle = workers[w].idle_cycles.wrapping_sub(self.last_workers[w].idle_cycles);
            load.base.push(busy.saturating_sub(on_slots));
            load.total.push(busy + idle);
        }
        self.last_slots = slots;
        self.last_workers = workers;
        load
    }

    /// Measures, and moves queues if a better assignment is clearly better. Returns once
    /// every worker runs on the new one.
    pub fn run(&mut self, stats: &StatsRegistry) -> Outcome {
        let load = self.sample(stats);
        let proposal = balance::propose(self.current.owners(), &self.pinned, &load);
        if let Some(why) = balance::hold_back(&proposal, &load) {
            return Outcome::Kept(why);
        }
        let next = self.current.with_owners(&proposal.owners);
        let delivery = Arc::new(next.delivery.clone());
        let updates = next
            .workers
            .iter()
            .enumerate()
            .map(|(w, plan)| WorkerUpdate {
                delivery: Arc::clone(&delivery),
                guest_queues: plan.guest_ids(),
                local_single_slots: delivery.local_single_slots(w),
            })
            .collect();
        let epoch = self.handover.publish(updates);
        self.handover.wait_adopted(epoch);
        let before = Box::new(std::mem::replace(&mut self.current, next));
        // The pause and the move itself are not the new assignment's load.
        self.sample(stats);
        Outcome::Moved { proposal, load, before }
    }
}
