//! A worker's state and loop. Runs on one EAL worker lcore; built on the control thread and
//! moved there, so everything it touches per frame is its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::fib::{GuestId, MacTable};
use crate::rte::eal::rdtsc;
use crate::rte::{Burst, RxQueue, TxQueue, BURST};
use crate::stats::StatsShard;

/// Uplink frames a worker may hold while the uplink tx queue is full. Guests are only polled
/// for what fits here, so the rest wait in their virtqueues (backpressure, not loss).
pub(super) const UPLINK_PENDING: usize = 2 * BURST;

/// The queues one worker owns. Each queue token is in exactly one `WorkerQueues`.
pub struct WorkerQueues {
    /// Uplink rx queues this worker polls (frames towards guests).
    pub uplink_rx: Vec<RxQueue>,
    /// This worker's own uplink tx queue.
    pub uplink_tx: TxQueue,
    /// Guests whose transmissions this worker polls (their vhost rx queue).
    pub guest_rx: Vec<(GuestId, RxQueue)>,
    /// Guests this worker delivers to (their vhost tx queue); indexed by guest on use.
    pub guest_tx: Vec<(GuestId, TxQueue)>,
}

/// Per-guest delivery state of the worker that owns the guest's tx queue.
pub(super) struct GuestOut {
    pub(super) txq: Option<TxQueue>,
    pub(super) pending: Burst,
    pub(super) bytes: u64,
}

pub struct Worker {
    pub(super) uplink_rx: Vec<RxQueue>,
    pub(super) uplink_tx: TxQueue,
    pub(super) guest_rx: Vec<(GuestId, RxQueue)>,
    pub(super) out: Vec<GuestOut>,
    /// Guests with frames in `out[g].pending`, flushed after each rx burst.
    pub(super) dirty: Vec<GuestId>,
    pub(super) uplink_pending: Burst<UPLINK_PENDING>,
    pub(super) uplink_pending_bytes: u64,
    pub(super) rx: Burst,
    /// Rotates which guest is polled first, so a full uplink does not always favour guest 0.
    pub(super) next_guest: usize,
    pub(super) table: Arc<MacTable>,
    pub(super) links: Arc<[AtomicBool]>,
    pub(super) stats: Arc<StatsShard>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Built on the control thread: all allocation happens here.
    pub fn new(
        queues: WorkerQueues,
        table: Arc<MacTable>,
        links: Arc<[AtomicBool]>,
        stats: Arc<StatsShard>,
        stop: Arc<AtomicBool>,
    ) -> Worker {
        let n = table.len();
        let mut out: Vec<GuestOut> = (0..n).map(|_| GuestOut { txq: None, pending: Burst::new(), bytes: 0 }).collect();
        for (g, q) in queues.guest_tx {
            out[g.index()].txq = Some(q);
        }
        Worker {
            uplink_rx: queues.uplink_rx,
            uplink_tx: queues.uplink_tx,
            guest_rx: queues.guest_rx,
            out,
            dirty: Vec::with_capacity(n),
            uplink_pending: Burst::new(),
            uplink_pending_bytes: 0,
            rx: Burst::new(),
            next_guest: 0,
            table,
            links,
            stats,
            stop,
        }
    }

    /// Polls until told to stop. Frames still pending at the end are freed and counted.
    pub fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let t0 = rdtsc();
            let moved = self.poll_once();
            let dt = rdtsc().wrapping_sub(t0);
            if moved > 0 {
                self.stats.add_cycles(dt, 0);
                self.stats.add_loop(moved as u64, dt);
            } else {
                self.stats.add_cycles(0, dt);
            }
        }
        self.shutdown();
    }

    /// One pass over every queue this worker owns; returns frames moved.
    pub fn poll_once(&mut self) -> usize {
        let mut moved = 0;
        for i in 0..self.uplink_rx.len() {
            moved += self.ingress_burst(i);
        }
        moved += self.egress_all();
        moved
    }

    #[inline]
    pub(super) fn link_up(&self, g: GuestId) -> bool {
        self.links[g.index()].load(Ordering::Relaxed)
    }

    fn shutdown(&mut self) {
        let n = self.uplink_pending.len() as u64;
        if n > 0 {
            self.stats.uplink().drop(crate::stats::DropReason::UplinkFull, n);
            self.uplink_pending.free_all();
        }
        for o in &mut self.out {
            o.pending.free_all();
        }
    }
}
