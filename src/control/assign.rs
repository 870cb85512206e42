//! Which worker owns which queue. Pure: unit-tested without EAL.
//!
//! Every guest queue pair (both directions) belongs to exactly one worker, so each virtqueue
//! has one writer and one reader, and everything about that queue stays on one lcore. Uplink
//! rx queues are spread over the workers; a frame received by a worker that does not own its
//! destination queue crosses to the owner over a ring (`DeliveryMap::owner`). Each worker has
//! an uplink tx queue of its own.

use std::fmt;

use crate::fib::GuestId;
use crate::view::DeliveryMap;

/// The queues of one worker, as indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPlan {
    /// EAL lcore the worker runs on.
    pub lcore: u32,
    pub uplink_rx: Vec<u16>,
    pub uplink_tx: u16,
    /// (guest id, queue) pairs this worker serves in both directions, in slot order
    /// (derived from the delivery map).
    pub guest_queues: Vec<(usize, u16)>,
}

/// Which worker serves what: the uplink queues (fixed for the run) and every guest queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub workers: Vec<WorkerPlan>,
    pub delivery: DeliveryMap,
}

impl Assignment {
    /// No guests yet: uplink rx queues spread over the workers, one tx queue each.
    pub fn empty(worker_lcores: &[u32], uplink_rx_queues: u16) -> Assignment {
        let w = worker_lcores.len();
        let mut workers: Vec<WorkerPlan> = worker_lcores
            .iter()
            .enumerate()
            .map(|(i, &lcore)| WorkerPlan { lcore, uplink_rx: Vec::new(), uplink_tx: i as u16, guest_queues: Vec::new() })
            .collect();
        for q in 0..uplink_rx_queues {
            if w > 0 {
                workers[usize::from(q) % w].uplink_rx.push(q);
            }
        }
        Assignment { workers, delivery: DeliveryMap::default() }
    }

    /// The worker index of lcore `lcore`, if it is a worker.
    fn worker_of(&self, guest: usize, lcore: u16) -> Result<usize, AssignError> {
        self.workers.iter().position(|w| w.lcore == u32::from(lcore)).ok_or_else(|| AssignError {
            guest,
            lcore,
            workers: self.workers.iter().map(|w| w.lcore).collect(),
        })
    }

    /// Adds guest `id` with `queues` queue pairs: all on `pin`'s worker when pinned, else each
    /// queue on the worker serving the fewest guest queues (a runtime add must not move
    /// anyone else's queues, so this only fills in). The id must not be in use.
    pub fn add_guest(&mut self, id: GuestId, queues: u16, pin: Option<u16>) -> Result<(), AssignError> {
        let pinned = pin.map(|l| self.worker_of(id.index(), l)).transpose()?;
        let mut load: Vec<usize> = self.workers.iter().map(|w| w.guest_queues.len()).collect();
        let mut owners = Vec::with_capacity(usize::from(queues));
        for _ in 0..queues.max(1) {
            let w = match pinned {
                Some(w) => w,
                None => (0..load.len()).min_by_key(|&w| (load[w], w)).unwrap_or(0),
            };
            if let Some(l) = load.get_mut(w) {
                *l += 1;
            }
            owners.push(w as u16);
        }
        self.delivery.insert(id, &owners);
        self.rebuild_lists();
        Ok(())
    }

    /// Removes guest `id`'s queues.
    pub fn remove_guest(&mut self, id: GuestId) {
        self.delivery.remove(id);
        self.rebuild_lists();
    }

    /// Moves guest `id`'s queues to lcore `pin`'s worker, or (None) leaves them where they are.
    pub fn pin_guest(&mut self, id: GuestId, pin: Option<u16>) -> Result<(), AssignError> {
        let Some(lcore) = pin else { return Ok(()) };
        let w = self.worker_of(id.index(), lcore)?;
        for q in 0..self.delivery.queues(id.index()) {
            let s = self.delivery.slot(id.index(), q);
            self.delivery.set_owner(s, w as u16);
        }
        self.rebuild_lists();
        Ok(())
    }

    /// The same assignment with each (slot, worker) of `moves` applied.
    pub fn with_moves(&self, moves: &[(usize, u16)]) -> Assignment {
        let mut next = self.clone();
        for &(slot, w) in moves {
            next.delivery.set_owner(slot, w);
        }
        next.rebuild_lists();
        next
    }

    /// Each worker's `guest_queues`, from the delivery map.
    fn rebuild_lists(&mut self) {
        for w in &mut self.workers {
            w.guest_queues.clear();
        }
        for slot in self.delivery.used_slots().collect::<Vec<_>>() {
            if let Some(w) = self.workers.get_mut(self.delivery.slot_owner(slot)) {
                w.guest_queues.push(self.delivery.slot_queue(slot));
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct AssignError {
    pub guest: usize,
    pub lcore: u16,
    pub workers: Vec<u32>,
}

impl fmt::Display for AssignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.workers.iter().map(|w| w.to_string()).collect::<Vec<_>>().join(", ");
        write!(f, "lcore = {} is not a forwarding lcore (workers: {list})", self.lcore)
    }
}

/// The start-up assignment of guests 0..n: round-robin over the workers for every unpinned
/// guest queue, in guest order; a guest with `pin` has all of its queues on that lcore's
/// worker.
pub fn assign(worker_lcores: &[u32], uplink_rx_queues: u16, guest_queues: &[u16], pins: &[Option<u16>]) -> Result<Assignment, AssignError> {
    let mut a = Assignment::empty(worker_lcores, uplink_rx_queues);
    let w = worker_lcores.len().max(1);
    let mut next = 0usize;
    for (g, &nq) in guest_queues.iter().enumerate() {
        let pinned = pins.get(g).copied().flatten().map(|l| a.worker_of(g, l)).transpose()?;
        let owners: Vec<u16> = (0..nq)
            .map(|_| match pinned {
                Some(wi) => wi as u16,
                None => {
                    next += 1;
                    ((next - 1) % w) as u16
                }
            })
            .collect();
        a.delivery.insert(GuestId(g as u16), &owners);
    }
    a.rebuild_lists();
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_owns_everything() {
        let a = assign(&[1], 1, &[1, 1, 1], &[None, None, None]).expect("assign");
        assert_eq!(a.workers, vec![WorkerPlan { lcore: 1, uplink_rx: vec![0], uplink_tx: 0, guest_queues: vec![(0, 0), (1, 0), (2, 0)] }]);
        assert_eq!((0..3).map(|g| a.delivery.owner(g, 0)).collect::<Vec<_>>(), vec![0, 0, 0]);
    }

    #[test]
    fn queues_go_round_robin_and_each_has_one_owner() {
        let a = assign(&[1, 2], 2, &[1, 4, 1], &[None, None, None]).expect("assign");
        assert_eq!(a.workers[0].uplink_rx, vec![0]);
        assert_eq!(a.workers[1].uplink_rx, vec![1]);
        assert_eq!(a.workers[0].guest_queues, vec![(0, 0), (1, 1), (1, 3)]);
        assert_eq!(a.workers[1].guest_queues, vec![(1, 0), (1, 2), (2, 0)]);
        assert_eq!(a.delivery.used_slots().count(), 6);
        for (wi, plan) in a.workers.iter().enumerate() {
            for &(g, q) in &plan.guest_queues {
                assert_eq!(a.delivery.owner(g, q), wi);
            }
        }
        assert_eq!(a.delivery.slot_queue(a.delivery.slot(1, 3)), (1, 3));
    }

    #[test]
    fn a_pinned_guest_stays_on_its_lcore() {
        let a = assign(&[3, 5], 1, &[2, 2], &[Some(5), None]).expect("assign");
        assert_eq!(a.workers[1].guest_queues[..2], [(0, 0), (0, 1)]);
        assert_eq!(a.workers[0].guest_queues, vec![(1, 0)]);
        assert_eq!(a.workers[1].guest_queues[2..], [(1, 1)]);
    }

    #[test]
    fn owners_can_be_changed_and_lists_follow() {
        let a = assign(&[1, 2], 2, &[1, 2, 1], &[None, None, None]).expect("assign");
        let d = &a.delivery;
        assert_eq!(d.used_slots().map(|s| d.slot_owner(s)).collect::<Vec<_>>(), vec![0, 1, 0, 1]);
        let b = a.with_moves(&[(d.slot(0, 0), 1), (d.slot(1, 1), 0), (d.slot(2, 0), 0)]);
        assert_eq!(b.workers[0].guest_queues, vec![(1, 1), (2, 0)]);
        assert_eq!(b.workers[1].guest_queues, vec![(0, 0), (1, 0)]);
        assert_eq!(b.workers[0].uplink_rx, a.workers[0].uplink_rx);
        assert_eq!(b.delivery.owner(0, 0), 1);
        let s2 = b.delivery.slot(2, 0) as u32;
        assert_eq!(b.delivery.local_single_slots(0), vec![u32::MAX, u32::MAX, s2]);
        assert_eq!(b.delivery.local_single_slots(1), vec![0, u32::MAX, u32::MAX]);
    }

    #[test]
    fn a_runtime_add_fills_the_least_loaded_worker_and_moves_nobody() {
        let mut a = assign(&[1, 2], 1, &[1, 1, 1], &[None, None, None]).expect("assign");
        let before: Vec<usize> = a.delivery.used_slots().map(|s| a.delivery.slot_owner(s)).collect();
        a.add_guest(GuestId(3), 2, None).expect("add");
        assert_eq!(a.delivery.owner(3, 0), 1, "worker 1 had one queue, worker 0 two");
        assert_eq!(a.delivery.owner(3, 1), 0);
        a.remove_guest(GuestId(1));
        let after: Vec<usize> = [0usize, 2].iter().map(|&g| a.delivery.owner(g, 0)).collect();
        assert_eq!(after, vec![before[0], before[2]]);
        assert_eq!(a.workers[1].guest_queues, vec![(3, 0)]);
        a.pin_guest(GuestId(3), Some(2)).expect("pin");
        assert_eq!(a.workers[1].guest_queues, vec![(3, 0), (3, 1)]);
        assert!(a.add_guest(GuestId(4), 1, Some(7)).is_err());
    }

    #[test]
    fn pinning_to_a_non_worker_is_an_error() {
        let e = assign(&[1, 2], 1, &[1], &[Some(0)]).expect_err("lcore 0 is the main lcore");
        assert_eq!(e.to_string(), "lcore = 0 is not a forwarding lcore (workers: 1, 2)");
    }
}
