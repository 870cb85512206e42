//! Per-worker shards and the registry that owns them all.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::{GuestStats, PortCell, PortCounters, StatsSnapshot, WorkerStats};
use crate::fib::GuestId;

/// A worker's own loop accounting.
#[derive(Debug, Default)]
struct LoopCell {
    busy_cycles: AtomicU64,
    idle_cycles: AtomicU64,
    frames: AtomicU64,
}

/// One worker's counters. Index 0 is the uplink, guest g is at g+1, and one extra cell at
/// the end absorbs ids the shard was not sized for (a guest added after the shard was
/// created), so counting can never panic on the datapath; the registry ignores that cell.
#[derive(Debug)]
pub struct StatsShard {
    /// Each cell padded separately: shards live in separate allocations that may sit next to
    /// each other, and a cell must never share a line with another worker's.
    ports: Box<[CachePadded<PortCell>]>,
    looping: CachePadded<LoopCell>,
    /// Busy cycles spent on each guest queue slot (`DeliveryMap::slot`), written only while
    /// the switch measures load per queue. Cycles follow the work: a slot that moved between
    /// workers has cycles in both shards, and the control plane sums them.
    slot_cycles: Box<[AtomicU64]>,
}

impl StatsShard {
    pub fn new(n_guests: usize, n_slots: usize) -> Self {
        StatsShard {
            ports: (0..n_guests + 2)
                .map(|_| CachePadded::new(PortCell::default()))
                .collect(),
            looping: CachePadded::new(LoopCell::default()),
            slot_cycles: (0..n_slots + 1).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Guests this shard has cells for.
    pub fn n_guests(&self) -> usize {
        self.ports.len() - 2
    }

    #[inline]
    pub fn uplink(&self) -> &PortCell {
        &self.ports[0]
    }

    #[inline]
    pub fn guest(&self, id: GuestId) -> &PortCell {
        let overflow = self.ports.len() - 1;
        debug_assert!(
            id.index() < overflow - 1,
            "guest {id:?} beyond this shard's {} guests",
            overflow - 1
        );
        &self.ports[(id.index() + 1).min(overflow)]
    }

    /// TSC cycles spent in polls that did (`busy`) and did not (`idle`) move frames.
    #[inline]
    pub fn add_cycles(&self, busy: u64, idle: u64) {
        bump(&self.looping.busy_cycles, busy);
        bump(&self.looping.idle_cycles, idle);
    }

    /// One poll iteration that moved `frames` frames in `busy_cycles` TSC cycles.
    #[inline]
    pub fn add_loop(&self, frames: u64, busy_cycles: u64) {
        bump(&self.looping.frames, frames);
        bump(&self.looping.busy_cycles, busy_cycles);
    }

    /// Busy cycles spent on guest queue `slot` (out-of-range slots land in a spare cell, as
    /// unknown guests do).
    #[inline]
    pub fn add_slot_cycles(&self, slot: usize, cycles: u64) {
        let spare = self.slot_cycles.len() - 1;
        bump(&self.slot_cycles[slot.min(spare)], cycles);
    }

    /// Cycles this worker has spent on each slot so far.
    pub fn slot_cycles(&self) -> Vec<u64> {
        let n = self.slot_cycles.len() - 1;
        self.slot_cycles[..n].iter().map(|c| c.load(Relaxed)).collect()
    }

    fn load_worker(&self) -> WorkerStats {
        WorkerStats {
            busy_cycles: self.looping.busy_cycles.load(Relaxed),
            idle_cycles: self.looping.idle_cycles.load(Relaxed),
            frames: self.looping.frames.load(Relaxed),
        }
    }
}

/// Same single-writer rule as `PortCell`.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Every shard plus the guest names, on the control thread.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    guest_names: Vec<String>,
    slots: usize,
    shards: Vec<Arc<StatsShard>>,
}

impl StatsRegistry {
    /// `guest_names[i]` labels `GuestId(i)`; `slots` is the number of guest queue slots.
    pub fn new(guest_names: Vec<String>, slots: usize) -> Self {
        StatsRegistry {
            guest_names,
            slots,
            shards: Vec::new(),
        }
    }

    /// A new shard for one worker; the registry keeps a handle to read it.
    pub fn add_shard(&mut self) -> Arc<StatsShard> {
        let shard = Arc::new(StatsShard::new(self.guest_names.len(), self.slots));
        self.shards.push(Arc::clone(&shard));
        shard
    }

    /// Per worker (shard order), the cycles it has spent on each guest queue slot.
    pub fn slot_cycles(&self) -> Vec<Vec<u64>> {
        self.shards.iter().map(|s| s.slot_cycles()).collect()
    }

    /// Every worker's loop accounting, in shard order.
    pub fn workers(&self) -> Vec<WorkerStats> {
        self.shards.iter().map(|s| s.load_worker()).collect()
    }

    /// Sums every shard. `link_up` is left false for the caller to fill in.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut uplink = PortCounters::default();
        let mut guests: Vec<GuestStats> = self
            .guest_names
            .iter()
            .map(|name| GuestStats {
                name: name.clone(),
                counters: PortCounters::default(),
                link_up: false,
            })
            .collect();
        for shard in &self.shards {
            uplink += shard.uplink().load();
            for (i, g) in guests.iter_mut().enumerate().take(shard.n_guests()) {
                g.counters += shard.ports[i + 1].load();
            }
        }
        StatsSnapshot {
            uplink,
            guests,
            workers: self.workers(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DropReason;

    #[test]
    fn snapshot_sums_shards_written_from_other_threads() {
        let mut reg = StatsRegistry::new(vec!["vm1".into(), "vm2".into()], 2);
        let shards = [reg.add_shard(), reg.add_shard()];
        std::thread::scope(|s| {
            for (w, shard) in shards.iter().enumerate() {
                s.spawn(move || {
                    for _ in 0..1000 {
                        shard.uplink().rx(1, 60);
                        shard.guest(GuestId(1)).tx(1, 60);
                    }
                    shard
                        .guest(GuestId(0))
                        .drop(DropReason::GuestQueueFull, w as u64 + 1);
                    shard.add_cycles(10, 5);
                    shard.add_loop(1000, 100);
                    shard.add_slot_cycles(w, 7);
                    shard.add_slot_cycles(99, 1);
                });
            }
        });
        let snap = reg.snapshot();
        assert_eq!(
            (snap.uplink.rx_packets, snap.uplink.rx_bytes),
            (2000, 120_000)
        );
        assert_eq!(snap.guest("vm2").map(|g| g.counters.tx_packets), Some(2000));
        assert_eq!(
            snap.guest("vm1")
                .map(|g| g.counters.drops[DropReason::GuestQueueFull]),
            Some(3)
        );
        assert!(snap.guest("vm3").is_none());
        assert_eq!(reg.slot_cycles(), vec![vec![7, 0], vec![0, 7]]);
        assert_eq!(snap.workers.len(), 2);
        assert_eq!(
            snap.workers[0],
            WorkerStats {
                busy_cycles: 110,
                idle_cycles: 5,
                frames: 1000
            }
        );
    }

    #[test]
    fn unknown_guest_ids_are_caught_in_debug_and_absorbed_in_release() {
        let mut reg = StatsRegistry::new(vec!["vm1".into()], 1);
        let shard = reg.add_shard();
        let counted = std::panic::catch_unwind(|| shard.guest(GuestId(5)).rx(1, 1));
        assert_eq!(counted.is_err(), cfg!(debug_assertions));
        assert_eq!(reg.snapshot().guests[0].counters, PortCounters::default());
    }

    #[test]
    fn shards_do_not_share_cache_lines() {
        assert!(std::mem::align_of::<CachePadded<PortCell>>() >= 64);
        let shard = StatsShard::new(1, 1);
        assert_eq!(shard.n_guests(), 1);
        let a = shard.uplink() as *const PortCell as usize;
        let b = shard.guest(GuestId(0)) as *const PortCell as usize;
        assert!(b - a >= 64);
    }
}
