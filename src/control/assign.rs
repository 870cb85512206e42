//! Which worker owns which queue. Pure: unit-tested without EAL.
//!
//! Every guest queue pair (both directions) belongs to exactly one worker, so each virtqueue
//! has one writer and one reader, and everything about that queue stays on one lcore. Uplink
//! rx queues are spread over the workers; a frame received by a worker that does not own its
//! destination queue crosses to the owner over a ring (`DeliveryMap::owner`). Each worker has
//! an uplink tx queue of its own.

use std::fmt;

use crate::fib::GuestId;

/// The queues of one worker, as indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPlan {
    /// EAL lcore the worker runs on.
    pub lcore: u32,
    pub uplink_rx: Vec<u16>,
    pub uplink_tx: u16,
    /// (guest index, queue) pairs this worker serves in both directions.
    pub guest_queues: Vec<(usize, u16)>,
}

impl WorkerPlan {
    /// `guest_queues` with guest ids, as the datapath names guests.
    pub fn guest_ids(&self) -> Vec<(GuestId, u16)> {
        self.guest_queues.iter().map(|&(g, q)| (GuestId(g as u16), q)).collect()
    }
}

/// For every guest queue, the worker that owns it. Immutable once built; shared by workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryMap {
    /// Index of guest g's queue 0 in `owner`.
    base: Vec<u32>,
    queues: Vec<u16>,
    owner: Vec<u16>,
}

impl DeliveryMap {
    #[inline]
    pub fn queues(&self, guest: usize) -> u16 {
        self.queues[guest]
    }

    /// A dense index for (guest, queue), usable as an array index and as a ring tag.
    #[inline]
    pub fn slot(&self, guest: usize, queue: u16) -> usize {
        self.base[guest] as usize + usize::from(queue)
    }

    #[inline]
    pub fn owner(&self, guest: usize, queue: u16) -> usize {
        usize::from(self.owner[self.slot(guest, queue)])
    }

    #[inline]
    pub fn slot_owner(&self, slot: usize) -> usize {
        usize::from(self.owner[slot])
    }

    pub fn slots(&self) -> usize {
        self.owner.len()
    }

    pub fn guests(&self) -> usize {
        self.queues.len()
    }

    /// The guest a slot belongs to (slots are dense, in guest order).
    pub fn slot_guest(&self, slot: usize) -> usize {
        self.base.partition_point(|&b| b as usize <= slot) - 1
    }

    /// (guest, queue) of a slot.
    pub fn slot_queue(&self, slot: usize) -> (usize, u16) {
        let g = self.slot_guest(slot);
        (g, (slot - self.base[g] as usize) as u16)
    }

    /// Per guest: its slot when it has a single queue and worker `me` owns it, else
    /// `u32::MAX`. Lets a worker deliver to its own single-queue guests without a hash or an
    /// owner lookup per frame.
    pub fn local_single_slots(&self, me: usize) -> Vec<u32> {
        (0..self.guests())
            .map(|g| if self.queues(g) == 1 && self.owner(g, 0) == me { self.slot(g, 0) as u32 } else { u32::MAX })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub workers: Vec<WorkerPlan>,
    pub delivery: DeliveryMap,
}

impl Assignment {
    /// The same uplink queues with guest queue slots owned as `owners` says (one entry per
    /// slot, a worker index each); every worker's list stays in slot order.
    pub fn with_owners(&self, owners: &[u16]) -> Assignment {
        assert_eq!(owners.len(), self.delivery.slots(), "one owner per slot");
        let mut workers = self.workers.clone();
        for w in &mut workers {
            w.guest_queues.clear();
        }
        for (slot, &o) in owners.iter().enumerate() {
            workers[usize::from(o)].guest_queues.push(self.delivery.slot_queue(slot));
        }
        let delivery = DeliveryMap { owner: owners.to_vec(), ..self.delivery.clone() };
        Assignment { workers, delivery }
    }

    /// Each slot's owning worker.
    pub fn owners(&self) -> &[u16] {
        &self.delivery.owner
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

/// Round-robin over the workers for every unpinned guest queue, in guest order; a guest with
/// `pin` has all of its queues on that lcore's worker.
pub fn assign(worker_lcores: &[u32], uplink_rx_queues: u16, guest_queues: &[u16], pins: &[Option<u16>]) -> Result<Assignment, AssignError> {
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
    let mut base = Vec::with_capacity(guest_queues.len());
    let mut owner = Vec::new();
    let mut next = 0usize;
    for (g, &nq) in guest_queues.iter().enumerate() {
        base.push(owner.len() as u32);
        let pinned = match pins.get(g).copied().flatten() {
            Some(lcore) => Some(
                worker_lcores
                    .iter()
                    .position(|&l| l == u32::from(lcore))
                    .ok_or_else(|| AssignError { guest: g, lcore, workers: worker_lcores.to_vec() })?,
            ),
            None => None,
        };
        for q in 0..nq {
            let wi = match pinned {
                Some(wi) => wi,
                None => {
                    let wi = next % w.max(1);
                    next += 1;
                    wi
                }
            };
            owner.push(wi as u16);
            if let Some(plan) = workers.get_mut(wi) {
                plan.guest_queues.push((g, q));
            }
        }
    }
    Ok(Assignment { workers, delivery: DeliveryMap { base, queues: guest_queues.to_vec(), owner } })
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
        assert_eq!(a.delivery.slots(), 6);
        for (wi, plan) in a.workers.iter().enumerate() {
            for &(g, q) in &plan.guest_queues {
                assert_eq!(a.delivery.owner(g, q), wi);
            }
        }
        assert_eq!(a.delivery.slot(1, 3), 4);
        assert_eq!((0..6).map(|s| a.delivery.slot_guest(s)).collect::<Vec<_>>(), vec![0, 1, 1, 1, 1, 2]);
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
        assert_eq!(a.owners(), &[0, 1, 0, 1]);
        let b = a.with_owners(&[1, 1, 0, 0]);
        assert_eq!(b.workers[0].guest_queues, vec![(1, 1), (2, 0)]);
        assert_eq!(b.workers[1].guest_queues, vec![(0, 0), (1, 0)]);
        assert_eq!(b.workers[0].uplink_rx, a.workers[0].uplink_rx);
        assert_eq!(b.delivery.owner(0, 0), 1);
        assert_eq!(b.delivery.slot_queue(2), (1, 1));
        assert_eq!(b.delivery.local_single_slots(0), vec![u32::MAX, u32::MAX, 3]);
        assert_eq!(b.delivery.local_single_slots(1), vec![0, u32::MAX, u32::MAX]);
    }

    #[test]
    fn pinning_to_a_non_worker_is_an_error() {
        let e = assign(&[1, 2], 1, &[1], &[Some(0)]).expect_err("lcore 0 is the main lcore");
        assert_eq!(e.to_string(), "lcore = 0 is not a forwarding lcore (workers: 1, 2)");
    }
}
