//! Per-worker shards and the registry that owns them all.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::{DropReason, GuestStats, OriginStats, PortCell, PortCounters, StatsSnapshot, Wake, Wakes, WorkerStats};
use crate::fib::GuestId;

/// A worker's own loop accounting.
#[derive(Debug, Default)]
struct LoopCell {
    busy_cycles: AtomicU64,
    idle_cycles: AtomicU64,
    /// Cycles spent asleep (idle sleep), apart from the idle ones spent polling.
    sleep_cycles: AtomicU64,
    blocked_cycles: AtomicU64,
    blocks: AtomicU64,
    /// Blocks ended, by `Wake` (in its order).
    wakes: [AtomicU64; 4],
    frames: AtomicU64,
    /// Copy calls into guests, and the frames they were given: frames per call is how well
    /// deliveries are batched.
    enqueue_calls: AtomicU64,
    enqueue_frames: AtomicU64,
}

/// One worker's counters. Index 0 is the uplink, guest g is at g+1, and one extra cell at
/// the end absorbs an id the shard was not sized for (none should be: shards are sized for
/// every possible guest id), so counting can never panic on the datapath; the registry
/// ignores that cell.
#[derive(Debug)]
pub struct StatsShard {
    /// Each cell padded separately: shards live in separate allocations that may sit next to
    /// each other, and a cell must never share a line with another worker's.
    ports: Box<[CachePadded<PortCell>]>,
    looping: CachePadded<LoopCell>,
    /// Frames the switch itself sent on the uplink (announcements, probes): tx, and
    /// `UplinkFull` for those still queued when the worker stopped.
    originated: CachePadded<PortCell>,
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
            originated: CachePadded::new(PortCell::default()),
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

    /// Frames the switch originated (not guest traffic).
    #[inline]
    pub fn originated(&self) -> &PortCell {
        &self.originated
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

    /// One copy call into a guest, with `frames` frames.
    #[inline]
    pub fn add_enqueue(&self, frames: u64) {
        bump(&self.looping.enqueue_calls, 1);
        bump(&self.looping.enqueue_frames, frames);
    }

    /// TSC cycles the worker slept for (idle sleep), `blocked` of them blocked until an event.
    #[inline]
    pub fn add_sleep(&self, cycles: u64, blocked: u64) {
        bump(&self.looping.sleep_cycles, cycles);
        bump(&self.looping.blocked_cycles, blocked);
    }

    /// A block begins (counted at once, so that a reader can tell a worker that blocks now).
    pub fn add_block(&self) {
        bump(&self.looping.blocks, 1);
    }

    /// A block ended by `why` (its cycles come with the sleep's, `add_sleep`).
    pub fn add_wake(&self, why: Wake) {
        bump(&self.looping.wakes[why as usize], 1);
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
            sleep_cycles: self.looping.sleep_cycles.load(Relaxed),
            blocked_cycles: self.looping.blocked_cycles.load(Relaxed),
            blocks: self.looping.blocks.load(Relaxed),
            wakes: {
                let w = |why: Wake| self.looping.wakes[why as usize].load(Relaxed);
                Wakes { kick: w(Wake::Kick), uplink: w(Wake::Uplink), doorbell: w(Wake::Doorbell), timeout: w(Wake::Timeout) }
            },
            frames: self.looping.frames.load(Relaxed),
            enqueue_calls: self.looping.enqueue_calls.load(Relaxed),
            enqueue_frames: self.looping.enqueue_frames.load(Relaxed),
        }
    }
}

/// Same single-writer rule as `PortCell`.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Every shard plus the guests' names, on the control thread.
///
/// A guest id is reused after its guest left, and the workers' cells are never reset (only
/// their own worker writes them); so each guest's counters are reported relative to what
/// its id's cells held when the guest arrived.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    /// Indexed by guest id: the name of the guest holding it, and the cells' sum when it came.
    guests: Vec<Option<(String, PortCounters)>>,
    ids: usize,
    slots: usize,
    shards: Vec<Arc<StatsShard>>,
}

impl StatsRegistry {
    /// Room for `ids` guest ids and `slots` guest queue slots in every shard.
    pub fn new(ids: usize, slots: usize) -> Self {
        StatsRegistry {
            guests: (0..ids).map(|_| None).collect(),
            ids,
            slots,
            shards: Vec::new(),
        }
    }

    /// A new shard for one worker; the registry keeps a handle to read it.
    pub fn add_shard(&mut self) -> Arc<StatsShard> {
        let shard = Arc::new(StatsShard::new(self.ids, self.slots));
        self.shards.push(Arc::clone(&shard));
        shard
    }

    /// The cells of id `g`, summed over the shards.
    fn cells(&self, g: GuestId) -> PortCounters {
        let mut sum = PortCounters::default();
        for shard in &self.shards {
            if g.index() < shard.n_guests() {
                sum += shard.guest(g).load();
            }
        }
        sum
    }

    /// Guest `g` (named `name`) starts counting from zero now.
    pub fn add_guest(&mut self, g: GuestId, name: &str) {
        let base = self.cells(g);
        if let Some(slot) = self.guests.get_mut(g.index()) {
            *slot = Some((name.to_owned(), base));
        }
    }

    /// Guest `g`'s counters since it was added (None if no guest holds the id).
    pub fn guest(&self, g: GuestId) -> Option<GuestStats> {
        let (name, base) = self.guests.get(g.index())?.as_ref()?;
        Some(GuestStats { id: g, name: name.clone(), counters: self.cells(g) - *base, link_up: false })
    }

    /// Guest `g` left: its final counters. Call once no worker can count for it any more.
    pub fn remove_guest(&mut self, g: GuestId) -> Option<GuestStats> {
        let last = self.guest(g);
        if let Some(slot) = self.guests.get_mut(g.index()) {
            *slot = None;
        }
        last
    }

    /// Per worker (shard order), the cycles it has spent on each guest queue slot.
    pub fn slot_cycles(&self) -> Vec<Vec<u64>> {
        self.shards.iter().map(|s| s.slot_cycles()).collect()
    }

    /// Every worker's loop accounting, in shard order.
    pub fn workers(&self) -> Vec<WorkerStats> {
        self.shards.iter().map(|s| s.load_worker()).collect()
    }

    /// Sums every shard, guests in id order. `link_up` is left false for the caller to fill in.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut uplink = PortCounters::default();
        let mut sent = PortCounters::default();
        for shard in &self.shards {
            uplink += shard.uplink().load();
            sent += shard.originated().load();
        }
        // The control thread's part (what it queued) is filled in by the caller.
        let originated = OriginStats { tx_packets: sent.tx_packets, tx_bytes: sent.tx_bytes, dropped_at_stop: sent.tx_drops[DropReason::Stopped], ..OriginStats::default() };
        let guests = (0..self.guests.len()).filter_map(|i| self.guest(GuestId(i as u16))).collect();
        StatsSnapshot {
            uplink,
            guests,
            workers: self.workers(),
            originated,
            hairpin: Default::default(),
            uplink_link: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::DropReason;

    #[test]
    fn snapshot_sums_shards_written_from_other_threads() {
        let mut reg = StatsRegistry::new(2, 2);
        let shards = [reg.add_shard(), reg.add_shard()];
        reg.add_guest(GuestId(0), "vm1");
        reg.add_guest(GuestId(1), "vm2");
        std::thread::scope(|s| {
            for (w, shard) in shards.iter().enumerate() {
                s.spawn(move || {
                    for _ in 0..1000 {
                        shard.uplink().rx(1, 60);
                        shard.guest(GuestId(1)).tx(1, 60);
                    }
                    shard
                        .guest(GuestId(0))
                        .tx_drop(DropReason::GuestQueueFull, w as u64 + 1);
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
                sleep_cycles: 0,
                frames: 1000,
                ..WorkerStats::default()
            }
        );
    }

    #[test]
    fn unknown_guest_ids_are_caught_in_debug_and_absorbed_in_release() {
        let mut reg = StatsRegistry::new(1, 1);
        let shard = reg.add_shard();
        reg.add_guest(GuestId(0), "vm1");
        let counted = std::panic::catch_unwind(|| shard.guest(GuestId(5)).rx(1, 1));
        assert_eq!(counted.is_err(), cfg!(debug_assertions));
        assert_eq!(reg.snapshot().guests[0].counters, PortCounters::default());
    }

    #[test]
    fn a_reused_id_counts_from_zero_and_a_removed_guest_keeps_its_totals() {
        let mut reg = StatsRegistry::new(2, 1);
        let shard = reg.add_shard();
        reg.add_guest(GuestId(1), "old");
        shard.guest(GuestId(1)).tx(5, 300);
        let last = reg.remove_guest(GuestId(1)).expect("was there");
        assert_eq!((last.name.as_str(), last.counters.tx_packets), ("old", 5));
        assert!(reg.snapshot().guests.is_empty());
        reg.add_guest(GuestId(1), "new");
        shard.guest(GuestId(1)).tx(2, 100);
        let snap = reg.snapshot();
        assert_eq!(snap.guests.len(), 1);
        assert_eq!((snap.guests[0].name.as_str(), snap.guests[0].counters.tx_packets, snap.guests[0].counters.tx_bytes), ("new", 2, 100));
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
