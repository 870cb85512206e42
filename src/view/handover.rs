//! The one way a change reaches the workers: guests added, removed or changed, and guest
//! queues moved between workers, all go through here, without two workers ever touching
//! one virtqueue and without losing or reordering a frame of a guest the change leaves alone.
//!
//! The control plane hands each worker its [`WorkerView`] of the new tables, then bumps
//! `epoch`.
//! Each worker, between two passes:
//! 1. stops taking frames in (uplink, guests) and says so (`quiet`); until every worker is
//!    quiet it keeps delivering what peers send it, under the old assignment;
//! 2. once all are quiet nobody sends on a ring any more: it empties its rings (still the old
//!    view), takes the new one, hands the old one back, and says so (`adopted`);
//! 3. waits until every worker has adopted, so that the previous owner of a queue it gained
//!    has finished with it, and goes back to forwarding.
//!
//! Frames meanwhile wait where they always wait: in the uplink's rx rings and the guests'
//! virtqueues. A flow in flight is never split across the old and new path, because the
//! rings are empty when the new assignment takes effect.
//!
//! Ordering: a worker's last use of a queue comes before its Release store of `adopted`; the
//! new owner's first use comes after its Acquire loads of every `adopted`.
//!
//! Freeing: the old views come back to the control thread (`retired`), which drops them once
//! every worker has adopted the new one: nothing is freed on a worker while it runs, and
//! nothing a worker may still read is freed at all. (At stop, a worker drops its own state,
//! the view it runs on included, on its way out.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_utils::CachePadded;

use super::{Doorbells, WorkerView};

/// What a worker has acknowledged once it has stopped for good: every epoch.
const STOPPED: u64 = u64::MAX;
/// How long the control thread yields, rather than sleeps, waiting for the workers to adopt.
const SPIN_FOR: Duration = Duration::from_millis(2);

pub struct Handover {
    epoch: CachePadded<AtomicU64>,
    quiet: Box<[CachePadded<AtomicU64>]>,
    adopted: Box<[CachePadded<AtomicU64>]>,
    /// Per worker: the last epoch it resumed forwarding on, and how long (TSC cycles) it
    /// forwarded nothing for that publication (written before `resumed`).
    resumed: Box<[CachePadded<AtomicU64>]>,
    paused_cycles: Box<[CachePadded<AtomicU64>]>,
    updates: Box<[(Sender<WorkerView>, Receiver<WorkerView>)]>,
    /// Views the workers have let go of, for the control thread to free.
    retired: (Sender<WorkerView>, Receiver<WorkerView>),
    /// A worker blocked in a long lull wakes for a publication too.
    bells: Arc<Doorbells>,
}

impl Handover {
    pub fn new(workers: usize, bells: Arc<Doorbells>) -> Arc<Handover> {
        // A worker that has not started yet has acknowledged epoch 0, the initial assignment.
        Arc::new(Handover {
            epoch: CachePadded::new(AtomicU64::new(0)),
            quiet: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            adopted: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            resumed: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            paused_cycles: (0..workers).map(|_| CachePadded::new(AtomicU64::new(0))).collect(),
            updates: (0..workers).map(|_| crossbeam_channel::bounded(1)).collect(),
            // Room for one view per worker: a worker hands back one per publication, and the
            // control thread empties it before the next.
            retired: crossbeam_channel::bounded(workers.max(1)),
            bells,
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

    /// The worker's part of the newest publication (sent before the epoch was bumped).
    pub fn take(&self, worker: usize) -> Option<WorkerView> {
        self.updates[worker].1.try_recv().ok()
    }

    /// A worker gives back the view it ran on; the control thread frees it. Never blocks:
    /// the channel has room for every worker's (see `retired`).
    pub fn retire(&self, old: WorkerView) {
        if let Err(e) = self.retired.0.try_send(old) {
            // Unreachable while each worker retires at most one view per publication; keep the
            // memory rather than free it here.
            std::mem::forget(e.into_inner());
        }
    }

    pub fn adopted(&self, worker: usize, epoch: u64) {
        self.adopted[worker].store(epoch, Ordering::Release);
    }

    pub fn all_adopted(&self, epoch: u64) -> bool {
        self.adopted.iter().all(|a| a.load(Ordering::Acquire) >= epoch)
    }

    /// The worker forwards again on `epoch`, after `cycles` TSC cycles without forwarding.
    pub fn resumed(&self, worker: usize, epoch: u64, cycles: u64) {
        self.paused_cycles[worker].store(cycles, Ordering::Relaxed);
        self.resumed[worker].store(epoch, Ordering::Release);
    }

    /// The worker has left its loop: nobody waits for it again.
    pub fn worker_stopped(&self, worker: usize) {
        self.paused_cycles[worker].store(0, Ordering::Relaxed);
        self.quiet[worker].store(STOPPED, Ordering::Release);
        self.adopted[worker].store(STOPPED, Ordering::Release);
        self.resumed[worker].store(STOPPED, Ordering::Release);
    }

    /// Every worker has left its loop (`worker_stopped`): none sends to another any more.
    pub fn all_stopped(&self) -> bool {
        self.all_quiet(STOPPED)
    }

    /// Once every worker resumed on `epoch` (or stopped): the longest any of them went
    /// without forwarding for it, in TSC cycles. What a publication costs the traffic.
    pub fn wait_resumed(&self, epoch: u64) -> u64 {
        while !self.resumed.iter().all(|r| r.load(Ordering::Acquire) >= epoch) {
            std::thread::yield_now();
        }
        self.paused_cycles.iter().map(|c| c.load(Ordering::Relaxed)).max().unwrap_or(0)
    }

    /// Hands every worker its view and starts the change; returns the new epoch.
    /// Control thread only, and only once the previous change has completed
    /// (`wait_adopted`).
    pub fn publish(&self, updates: Vec<WorkerView>) -> u64 {
        assert_eq!(updates.len(), self.updates.len(), "one update per worker");
        for (u, (tx, rx)) in updates.into_iter().zip(self.updates.iter()) {
            // Only a worker that stopped leaves its previous update behind: replace it.
            if let Err(TrySendError::Full(u)) = tx.try_send(u) {
                drop(rx.try_recv());
                drop(tx.try_send(u));
            }
        }
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.bells.ring_all();
        epoch
    }

    /// Waits until every worker runs on `epoch` (or has stopped), then frees the views they
    /// let go of.
    pub fn wait_adopted(&self, epoch: u64) {
        // Workers adopt within a pass or two: yield (which also hands the core to a worker
        // sharing it) rather than sleep, whose timer slack would be most of the wait; fall
        // back to sleeping only if a worker takes long.
        let t0 = std::time::Instant::now();
        while !self.all_adopted(epoch) {
            if t0.elapsed() < SPIN_FOR {
                std::thread::yield_now();
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        while let Ok(old) = self.retired.1.try_recv() {
            drop(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::assign;
    use crate::fib::{GuestId, MacTable};
    use crate::view::Tables;

    fn update(a: &crate::control::Assignment, w: usize) -> WorkerView {
        let cfg = crate::config::parse_str(crate::config::DEMO_GUESTS_TOML, std::path::Path::new("demo.toml")).expect("demo");
        let fib = MacTable::from_config(&cfg).expect("table");
        WorkerView::new(&Arc::new(Tables::new(fib, a.delivery.clone(), |_| false)), w)
    }

    /// Two threads play the workers' side of the protocol against the real control side.
    #[test]
    fn workers_move_through_the_phases_together() {
        let a = assign(&[1, 2], 1, &[1, 1], &[None, None]).expect("assign");
        let b = a.with_moves(&[(a.delivery.slot(0, 0), 1), (a.delivery.slot(1, 0), 0)]);
        let h = Handover::new(2, Doorbells::new(2).expect("doorbells").0);
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
                    h.retire(u);
                    h.adopted(w, e);
                    while !h.all_adopted(e) {
                        std::thread::yield_now();
                    }
                });
            }
            h.wait_adopted(epoch);
        });
        assert!(h.take(0).is_none());
        assert!(h.retired.1.try_recv().is_err(), "the control thread freed both old views");
    }

    #[test]
    fn a_stopped_worker_is_not_waited_for() {
        let h = Handover::new(2, Doorbells::new(2).expect("doorbells").0);
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
