//! How many packet buffers the switch can have out of its pool at once, worst case, so that
//! the pool is never what runs dry (a pool that does is a silent, lasting loss: the uplink's rx
//! rings stop refilling). Pure; the switch sizes its pool with it at start.
//!
//! Where buffers can be, all at once: every uplink rx descriptor (a ring is refilled as it
//! is read), every uplink tx descriptor, every ring between two workers (full), and what each
//! worker holds between two of its steps (its rx burst, its uplink pending burst, a pending
//! burst per peer, and what its guest queues' pending bursts hold: the uplink bursts it takes
//! before copying them into the guests), every worker's origin ring (full) and the burst of it
//! a worker holds, plus every lcore's mempool cache (up to 1.5 times
//! its size before it flushes). Guests hold none: the vhost library copies into and out of guest
//! memory. Only source-mode guests add to the figure: their copies of other stations' frames
//! are buffers of their own, up to a full batch per queue of theirs before it is copied into
//! the guest; so the figure is checked again whenever the guest set changes ([`Budget`]).

use crate::config::GuestConfig;
use crate::policy::Mode;
use crate::rte::BURST;

/// The queues of the source-mode guests among `guests` (`Demand::source_queues`).
pub fn source_queues<'a>(guests: impl IntoIterator<Item = &'a GuestConfig>) -> u64 {
    guests.into_iter().filter(|g| g.mode == Mode::Source).map(|g| u64::from(g.queues)).sum()
}

/// What the switch was configured with.
pub struct Demand<'a> {
    /// Descriptors of each uplink rx queue set up (polled or not).
    pub rx_descriptors: &'a [u16],
    pub tx_queues: u16,
    pub tx_descriptors: u16,
    pub workers: usize,
    /// Capacity of each ring between two workers.
    pub peer_ring: u32,
    /// Capacity of each worker's origin ring (frames the control thread queued for the
    /// uplink: announcements, probes); the worker holds a burst of them besides.
    pub origin_ring: u32,
    /// Every lcore EAL runs (the workers and the main one): each has a mempool cache.
    pub lcores: usize,
    pub cache: u32,
    /// Frames a worker may hold for the uplink while its tx queue is full.
    pub uplink_pending: usize,
    /// Uplink bursts a worker takes per rx queue before copying into guests: what its
    /// guest queues' pending bursts can hold at most.
    pub rx_bursts: usize,
    /// Queues of source-mode guests: each holds up to a batch of copies in buffers of their
    /// own.
    pub source_queues: u64,
}

impl Demand<'_> {
    /// The worst case, as (total, one line saying where it comes from).
    pub fn worst_case(&self) -> (u64, String) {
        let (layout, why) = self.layout();
        let copies = self.source_queues * BURST as u64;
        (layout + copies, format!("{why} + source-mode copies {copies}"))
    }

    /// The worst case but source-mode guests' copies: what the switch's layout alone holds.
    fn layout(&self) -> (u64, String) {
        let rx: u64 = self.rx_descriptors.iter().map(|&d| u64::from(d)).sum();
        let tx = u64::from(self.tx_queues) * u64::from(self.tx_descriptors);
        let pairs = (self.workers * self.workers.saturating_sub(1)) as u64;
        // A ring of capacity C holds at most C - 1.
        let rings = pairs * u64::from(self.peer_ring.saturating_sub(1));
        let per_worker = (BURST + self.uplink_pending + BURST * self.workers.saturating_sub(1) + self.rx_bursts * BURST) as u64;
        let held = self.workers as u64 * per_worker;
        let caches = self.lcores as u64 * u64::from(self.cache) * 3 / 2;
        let origin = self.workers as u64 * (u64::from(self.origin_ring.saturating_sub(1)) + BURST as u64);
        let total = rx + tx + rings + held + origin + caches;
        let why = format!("uplink rx rings {rx} + tx rings {tx} + rings between workers {rings} + held by workers {held} + frames the switch sends {origin} + lcore caches {caches}");
        (total, why)
    }
}

/// The pool a running switch has, and what its layout needs of it besides source-mode
/// guests' copies: a change of the guest set is refused (whole) if it would need more than
/// the pool has, as `--mbufs` too few is at start.
pub struct Budget {
    pool: u32,
    /// The worst case but source-mode guests' copies, and where it comes from.
    fixed: (u64, String),
}

impl Budget {
    pub fn new(pool: u32, demand: &Demand<'_>) -> Budget {
        Budget { pool, fixed: demand.layout() }
    }

    /// Whether a guest set whose source-mode guests have `source_queues` queues in all fits.
    pub fn check(&self, source_queues: u64) -> Result<(), String> {
        let copies = source_queues * BURST as u64;
        let (fixed, why) = &self.fixed;
        let need = fixed + copies;
        if need <= u64::from(self.pool) {
            return Ok(());
        }
        Err(format!(
            "the packet pool has {} buffers, and with these source-mode guests up to {need} can be out of it at once ({why} + source-mode copies {copies}): restart with --mbufs {need} or more",
            self.pool
        ))
    }
}

/// The pool's size: `asked` (`--mbufs`) if it covers the worst case, else an error naming the
/// numbers; without `asked`, the default or the worst case rounded up to 2^n - 1 (the size
/// DPDK's ring-backed pools use best), whichever is larger.
pub fn pool_size(asked: Option<u32>, default: u32, demand: &Demand<'_>) -> Result<u32, String> {
    let (need, why) = demand.worst_case();
    match asked {
        Some(n) if u64::from(n) >= need => Ok(n),
        Some(n) => Err(format!("--mbufs {n} is too few: up to {need} packet buffers can be out of the pool at once ({why}); give at least {need}, or leave --mbufs out to size the pool from that")),
        None if u64::from(default) >= need => Ok(default),
        None => {
            let rounded = (need + 1).next_power_of_two() - 1;
            u32::try_from(rounded).map_err(|_| format!("{need} packet buffers would be needed ({why}): use fewer lcores, queues or descriptors"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(workers: usize, rx: &[u16]) -> Demand<'_> {
        Demand { rx_descriptors: rx, tx_queues: workers as u16, tx_descriptors: 1024, workers, peer_ring: 1024, origin_ring: 512, lcores: workers + 1, cache: 256, uplink_pending: 64, rx_bursts: 4, source_queues: 0 }
    }

    #[test]
    fn one_worker_fits_the_default() {
        let d = demand(1, &[1024]);
        let (need, why) = d.worst_case();
        assert_eq!(need, 1024 + 1024 + (32 + 64 + 4 * 32) + (511 + 32) + 2 * 384, "no rings with one worker");
        assert_eq!(why, "uplink rx rings 1024 + tx rings 1024 + rings between workers 0 + held by workers 224 + frames the switch sends 543 + lcore caches 768 + source-mode copies 0");
        assert_eq!(pool_size(None, 16383, &d), Ok(16383));
        assert_eq!(pool_size(Some(4095), 16383, &d), Ok(4095));
    }

    #[test]
    fn many_workers_outgrow_the_default_and_a_short_pool_is_refused() {
        let rx = [1024u16; 8];
        let d = demand(8, &rx);
        let (need, _) = d.worst_case();
        assert_eq!(need, 8192 + 8192 + 56 * 1023 + 8 * (32 + 64 + 7 * 32 + 4 * 32) + 8 * (511 + 32) + 9 * 384);
        assert_eq!(pool_size(None, 16383, &d), Ok(131071), "rounded up to 2^n - 1");
        let e = pool_size(Some(16383), 16383, &d).expect_err("too few");
        assert!(e.starts_with(&format!("--mbufs 16383 is too few: up to {need} packet buffers can be out of the pool at once (uplink rx rings 8192 + tx rings 8192 + rings between workers 57288")), "{e}");
    }

    /// Source-mode guests' copies count at start and on every change of the guest set.
    #[test]
    fn source_mode_copies_need_buffers_of_their_own() {
        let d = Demand { source_queues: 3, ..demand(1, &[1024]) };
        let (need, why) = d.worst_case();
        let (without, _) = demand(1, &[1024]).worst_case();
        assert_eq!(need, without + 3 * 32);
        assert!(why.ends_with(" + source-mode copies 96"), "{why}");
        let budget = Budget::new(without as u32 + 64, &d);
        assert_eq!(budget.check(0), Ok(()));
        assert_eq!(budget.check(2), Ok(()), "two queues' batches fit the 64 spare");
        let e = budget.check(3).expect_err("a third does not");
        assert!(e.starts_with(&format!("the packet pool has {} buffers, and with these source-mode guests up to {} can be out of it at once (uplink rx rings 1024 ", without + 64, without + 96)), "{e}");
        assert!(e.ends_with(" + lcore caches 768 + source-mode copies 96): restart with --mbufs 3679 or more"), "{e}");
    }
}
