//! Assignment by measured load on a running switch: samples the cycles each guest queue cost
//! since the last look and asks `balance` for better owners. The caller publishes the result
//! the way it publishes every change.

use super::balance::{self, Load, Proposal};
use super::Assignment;
use crate::stats::{StatsRegistry, WorkerStats};

/// A rebalance worth applying: the moves (slot, new worker), for the assignment it was
/// computed on, with what it expects.
pub struct Plan {
    pub moves: Vec<(usize, u16)>,
    /// Per move, in the same order: (slot, from worker, to worker), for messages.
    pub described: Vec<(usize, u16, u16)>,
    pub proposal: Proposal,
    pub load: Load,
}

pub struct Rebalancer {
    last_slots: Vec<Vec<u64>>,
    last_workers: Vec<WorkerStats>,
}

impl Rebalancer {
    pub fn new(stats: &StatsRegistry) -> Rebalancer {
        Rebalancer { last_slots: stats.slot_cycles(), last_workers: stats.workers() }
    }

    /// The load since the previous call, over the slots in use (in `used` order).
    fn sample(&mut self, stats: &StatsRegistry, used: &[usize]) -> Load {
        let slots = stats.slot_cycles();
        let workers = stats.workers();
        let mut load = Load { slot: vec![0; used.len()], base: Vec::new(), total: Vec::new() };
        for (w, (now, last)) in slots.iter().zip(&self.last_slots).enumerate() {
            let mut on_slots = 0u64;
            for (i, &s) in used.iter().enumerate() {
                let d = now[s].wrapping_sub(last[s]);
                load.slot[i] += d;
                on_slots += d;
            }
            let busy = workers[w].busy_cycles.wrapping_sub(self.last_workers[w].busy_cycles);
            let idle = workers[w].idle_cycles.wrapping_sub(self.last_workers[w].idle_cycles)
                + workers[w].sleep_cycles.wrapping_sub(self.last_workers[w].sleep_cycles);
            load.base.push(busy.saturating_sub(on_slots));
            load.total.push(busy + idle);
        }
        self.last_slots = slots;
        self.last_workers = workers;
        load
    }

    /// Forgets the load so far (after a pause or a change, which is not the new state's load).
    pub fn restart(&mut self, stats: &StatsRegistry) {
        self.last_slots = stats.slot_cycles();
        self.last_workers = stats.workers();
    }

    /// Measures, and proposes moves if a better assignment is clearly better; Err says why
    /// nothing should move. `pinned(slot)`: the slot's guest is pinned to an lcore.
    pub fn propose(&mut self, stats: &StatsRegistry, current: &Assignment, pinned: impl Fn(usize) -> bool) -> Result<Plan, String> {
        let used: Vec<usize> = current.delivery.used_slots().collect();
        let load = self.sample(stats, &used);
        let owners: Vec<u16> = used.iter().map(|&s| current.delivery.slot_owner(s) as u16).collect();
        let pins: Vec<bool> = used.iter().map(|&s| pinned(s)).collect();
        let proposal = balance::propose(&owners, &pins, &load);
        if let Some(why) = balance::hold_back(&proposal, &load) {
            return Err(why);
        }
        let described: Vec<(usize, u16, u16)> = proposal.moves.iter().map(|&(i, from, to)| (used[i], from, to)).collect();
        let moves = described.iter().map(|&(s, _, to)| (s, to)).collect();
        Ok(Plan { moves, described, proposal, load })
    }
}
