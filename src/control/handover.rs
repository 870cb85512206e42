//! Moving guest queues between running workers without two of them ever touching one
//! virtqueue, and without losing or reordering a frame.
//!
//! The control plane hands each worker its part of the new assignment, then bumps `epoch`.
//! Each worker, between two passes:
//! 1. stops taking frames in (uplink, guests) and says so (`quiet`); until every worker is
//!    quiet it keeps delivering what peers send it, under the old assignment;
//! 2. once all are quiet nobody sends on a ring any more: it empties its rings (still the old
//!    assignment), takes the new one, and says so (`adopted`);
//! 3. waits until every worker has adopted, so that the previous owner of a queue it gained
//!    has finished with it, and goes back to forwarding.
//!
//! Frames meanwhile wait where they always wait: in the uplink's rx rings and the guests'
//! virtqueues. A flow in flight is never split across the old and new path, because the
//! rings are empty when the new assignment takes effect.
//!
//! Ordering: a worker's last use of a queue comes before its Release store of `adopted`; the
//! new owner's first use comes after its Acquire loads of every `adopted`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;

use super::DeliveryMap;
use crate::fib::GuestId;

/// What a worker has acknowledged once it has stopped for good: every epoch.
const STOPPED: u64 = u64::MAX;

/// One worker's share of a new assignment, built (and allocated) on the control thread.
pub struct WorkerUpdate {
    pub delivery: Arc<DeliveryMap>,
    /// (guest, queue) pairs the worker serves from now on.
    pub guest_queues: Vec<(GuestId, u16)>,
    /// `DeliveryMap::local_single_slots` for this worker.
    pub local_single_slots: Vec<u32>,
}

pub struct Handover {
    epoch: CachePadded<AtomicU64>,
    quiet: Box<[CachePadded<AtomicU64>]>,
    adopted: Box<[CachePadded<AtomicU64>]>,
    updates: Box<[(Sender<WorkerUpdate>, Receiver<WorkerUpdate>)]>,
}

impl Handover {
    pub fn new(workers: usize) -> Arc<Handover> {
        // A worker that has not started yet has acknowledged epoch 0, the initial assignment.
        Arc::new(Handover {
            epoch: CachePadded::new(AtomicU64::new(0)),
            quiet: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            adopted: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            updates: (0..workers).map(|_| crossbeam_channel::bounded(1)).collect(),
        })
    }

    /// The newest epoch; a worker compares it with the one it runs, once per pass.
    #[inline]
    pub fn published(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn quiet(&self, worker: usize, epoch: u64) {
        self.quiet[worker].store(epoch, Ordering::Release);
    }

    pub fn all_quiet(&self, epoch: u64) -> bool {
        self.quiet.iter().all(|q| q.load(Ordering::Acquire) >= epoch)
    }

    /// The worker's part of the newest assignment (sent before the epoch was bumped).
    pub fn take(&self, worker: usize) -> Option<WorkerUpdate> {
        self.updates[worker].1.try_recv().ok()
    }

    pub fn adopted(&self, worker: usize, epoch: u64) {
        self.adopted[worker].store(epoch, Ordering::Release);
    }

    pub fn all_adopted(&self, epoch: u64) -> bool {
        self.adopted.iter().all(|a| a.load(Ordering::Acquire) >= epoch)
    }

    /// The worker has left its loop: nobody waits for it again.
    pub fn worker_stopped(&self, worker: usize) {
        self.quiet[worker].store(STOPPED, Ordering::Release);
        self.adopted[worker].store(STOPPED, Ordering::Release);
    }

    /// Hands every worker its update and starts the move; returns the new epoch.
    /// Control thread only, and only once the previous move has completed.
    pub fn publish(&self, updates: Vec<WorkerUpdate>) -> u64 {
        assert_eq!(updates.len(), self.updates.len(), "one update per worker");
        for (u, (tx, rx)) in updates.into_iter().zip(self.updates.iter()) {
            // Only a worker that stopped leaves its previous update behind: replace it.
            if let Err(TrySendError::Full(u)) = tx.try_send(u) {
                drop(rx.try_recv());
                drop(tx.try_send(u));
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Waits until every worker runs on `epoch` (or has stopped).
    pub fn wait_adopted(&self, epoch: u64) {
        while !self.all_adopted(epoch) {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::assign;

    fn update(a: &crate::control::Assignment, w: usize) -> WorkerUpdate {
        WorkerUpdate {
            delivery: Arc::new(a.delivery.clone()),
            guest_queues: a.workers[w].guest_ids(),
            local_single_slots: a.delivery.local_single_slots(w),
        }
    }

    /// Two threads play the workers' side of the protocol against the real control side.
    #[test]
    fn workers_move_through_the_phases_together() {
        let a = assign(&[1, 2], 1, &[1, 1], &[None, None]).expect("assign");
        let b = a.with_owners(&[1, 0]);
        let h = Handover::new(2);
        assert_eq!(h.published(), 0);
        let epoch = h.publish(vec![update(&b, 0), update(&b, 1)]);
        assert_eq!(epoch, 1);
        std::thread::scope(|s| {
            for w in 0..2 {
                let h = &h;
                s.spawn(move || {
                    let e = h.published();
                    h.quiet(w, e);
                    while !h.all_quiet(e) {
                        std::thread::yield_now();
                    }
                    let u = h.take(w).expect("update");
                    assert_eq!(u.guest_queues, vec![(GuestId(1 - w as u16), 0)]);
                    h.adopted(w, e);
                    while !h.all_adopted(e) {
                        std::thread::yield_now();
                    }
                });
            }
            h.wait_adopted(epoch);
        });
        assert!(h.take(0).is_none());
    }

    #[test]
    fn a_stopped_worker_is_not_waited_for() {
        let h = Handover::new(2);
        let a = assign(&[1, 2], 1, &[1], &[None]).expect("assign");
        let e = h.publish(vec![update(&a, 0), update(&a, 1)]);
        h.worker_stopped(1);
        h.quiet(0, e);
        assert!(h.all_quiet(e));
        assert!(!h.all_adopted(e));
        h.adopted(0, e);
        h.wait_adopted(e);
    }
}
