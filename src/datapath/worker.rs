//! A worker's state and loop. Runs on one EAL worker lcore; built on the control thread and
//! moved there, so everything it touches per frame is its own or immutable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::block::{Blocker, Wake};
use super::guest_queues::GuestQueues;
use super::idle::IdleBackoff;
use super::vlan::VlanOffload;
use super::originate::OriginQueue;
use crate::fib::GuestId;
use crate::rte::eal::rdtsc;
use crate::rte::ring::{Consumer, Producer};
use crate::rte::{Burst, Mbuf, Mempool, RxQueue, TxQueue, BURST};
use crate::stats::{DropReason, StatsShard};
use crate::view::{DeliveryMap, GuestLinks, Handover, RxScope, Tables, ToGuest, UnicastIndex, WorkerLinks, WorkerView, MAX_SLOTS, NO_BATCH};

/// Uplink frames a worker may hold while the uplink tx queue is full. Guests are only polled
/// for what fits here, so the rest wait in their virtqueues (backpressure, not loss).
pub const UPLINK_PENDING: usize = 2 * BURST;

/// Worker passes per TSC read and per end-of-pass publication (see `Worker::run`).
const PASSES_PER_TICK: u64 = 8;

pub(super) use crate::view::NO_SLOT;

/// The queues one worker owns. Each queue token and ring end is in exactly one `WorkerQueues`.
pub struct WorkerQueues {
    /// This worker's index in the assignment (what `DeliveryMap::owner` returns).
    pub index: usize,
    /// Uplink rx queues this worker polls (frames towards guests).
    pub uplink_rx: Vec<RxQueue>,
    /// For each of those, which guests its broadcast/multicast frames are for.
    pub uplink_scope: Vec<RxScope>,
    /// This worker's own uplink tx queue.
    pub uplink_tx: TxQueue,
    /// Rings towards other workers, by their index.
    pub to_peers: Vec<(usize, Producer)>,
    /// Rings from other workers.
    pub from_peers: Vec<Consumer>,
    /// Frames the control thread asks this worker to send on the uplink.
    pub origin: OriginQueue,
}

/// `Worker::slot_index` of a slot this worker does not own.
pub(super) const NOT_MINE: u16 = u16::MAX;

/// Delivery state of one guest queue this worker owns.
pub(super) struct SlotOut {
    /// Its slot (`DeliveryMap::slot`).
    pub(super) slot: u32,
    pub(super) guest: GuestId,
    pub(super) queue: u16,
    pub(super) pending: Burst,
    pub(super) bytes: u64,
}

/// Frames waiting to cross to another worker.
pub(super) struct PeerOut {
    pub(super) ring: Producer,
    pub(super) pending: Burst,
}

pub struct Worker {
    pub(super) me: usize,
    pub(super) uplink_rx: Vec<RxQueue>,
    pub(super) uplink_scope: Vec<RxScope>,
    pub(super) uplink_tx: TxQueue,
    pub(super) origin: OriginQueue,
    /// Guest queue pairs this worker serves (from its view), and those of them connected.
    pub(super) guest_queues: GuestQueues,
    /// The guest queues this worker owns, densely (their pending bursts are what a flood
    /// touches, so they sit together rather than spread over every possible slot).
    /// Capacity `MAX_SLOTS`, so a publication never reallocates it.
    pub(super) slots: Vec<SlotOut>,
    /// Indexed by `DeliveryMap::slot`: the slot's index in `slots`, or `NOT_MINE`.
    pub(super) slot_index: Box<[u16]>,
    /// Indexes in `slots` with pending frames, flushed after each burst.
    pub(super) dirty: Vec<u32>,
    /// Indexed by worker.
    pub(super) peers: Vec<Option<PeerOut>>,
    pub(super) from_peers: Vec<Consumer>,
    pub(super) uplink_pending: Burst<UPLINK_PENDING>,
    /// Frames received from the uplink so far (`block.rs` compares it with what its
    /// interface watches saw).
    pub(super) uplink_received: u64,
    pub(super) uplink_pending_bytes: u64,
    pub(super) rx: Burst,
    /// Rotates which guest queue is polled first, so a full uplink favours nobody.
    pub(super) next_guest: usize,
    /// The tables of the publication this worker runs on.
    pub(super) tables: Arc<Tables>,
    /// Per guest id: what a unicast from the uplink needs, in one entry per guest.
    pub(super) to_guest: Vec<ToGuest>,
    /// The same for the common case, by destination MAC.
    pub(super) unicasts: UnicastIndex,
    pub(super) links: WorkerLinks,
    /// Buffers for frames dequeued from guests.
    pub(super) pool: Arc<Mempool>,
    pub(super) stats: Arc<StatsShard>,
    /// Time each guest queue's work (for assignment by measured load); off by default, as
    /// it costs TSC reads per queue.
    pub(super) measure: bool,
    /// While measuring: (slot, frames) of each guest queue polled in this pass, to share the
    /// uplink send among them. Never longer than the slot count it was allocated for.
    pub(super) polled: Vec<(u32, u32)>,
    pub(super) handover: Arc<Handover>,
    /// The assignment epoch this worker runs on.
    pub(super) epoch: u64,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) idle: IdleBackoff,
    pub(super) blocker: Blocker,
    /// Which VLAN work the uplink port does itself.
    pub(super) vlan_offload: VlanOffload,
}

/// The slots of `view`'s guest queues, in `slots` and `slot_index` (both empty and unmarked
/// on entry), in the view's order, which its `Unicast::batch` indexes assume. No allocation:
/// `slots` has room for every slot.
pub(super) fn fill_slots(slots: &mut Vec<SlotOut>, slot_index: &mut [u16], view: &WorkerView) {
    for &(g, q) in &view.guest_queues {
        let slot = view.tables.delivery.slot(g.index(), q);
        debug_assert!(q != 0 || [NO_BATCH, slots.len() as u16].contains(&view.to_guest[g.index()].unicast.batch));
        slot_index[slot] = slots.len() as u16;
        slots.push(SlotOut { slot: slot as u32, guest: g, queue: q, pending: Burst::new(), bytes: 0 });
    }
}

/// What a worker shares with the control plane.
pub struct WorkerShared {
    /// Its part of the first publication.
    pub view: WorkerView,
    pub links: Arc<GuestLinks>,
    pub pool: Arc<Mempool>,
    pub stats: Arc<StatsShard>,
    pub measure: bool,
    pub handover: Arc<Handover>,
    pub stop: Arc<AtomicBool>,
    /// `--idle-sleep-max` in microseconds (0: never sleep).
    pub idle_sleep_max_us: u32,
    /// `--idle-block-after` in microseconds (0: never block).
    pub idle_block_after_us: u64,
    /// Its poller and everyone's doorbells (`view::Doorbells`).
    pub blocker: Blocker,
    pub vlan_offload: VlanOffload,
}

impl Worker {
    /// Built on the control thread: all allocation happens here.
    pub fn new(queues: WorkerQueues, shared: WorkerShared) -> Worker {
        let WorkerShared { view, links, pool, stats, measure, handover, stop, idle_sleep_max_us, idle_block_after_us, blocker, vlan_offload } = shared;
        let mut slots = Vec::with_capacity(MAX_SLOTS);
        let mut slot_index: Box<[u16]> = vec![NOT_MINE; MAX_SLOTS].into_boxed_slice();
        fill_slots(&mut slots, &mut slot_index, &view);
        let n_workers = queues.to_peers.iter().map(|(w, _)| w + 1).max().unwrap_or(0).max(queues.index + 1);
        let mut peers: Vec<Option<PeerOut>> = (0..n_workers).map(|_| None).collect();
        for (w, ring) in queues.to_peers {
            peers[w] = Some(PeerOut { ring, pending: Burst::new() });
        }
        let WorkerView { tables, guest_queues, to_guest, unicasts } = view;
        Worker {
            me: queues.index,
            to_guest,
            unicasts,
            uplink_rx: queues.uplink_rx,
            uplink_scope: queues.uplink_scope,
            uplink_tx: queues.uplink_tx,
            origin: queues.origin,
            guest_queues: GuestQueues::new(guest_queues),
            dirty: Vec::with_capacity(MAX_SLOTS),
            slots,
            slot_index,
            peers,
            from_peers: queues.from_peers,
            uplink_pending: Burst::new(),
            uplink_received: 0,
            uplink_pending_bytes: 0,
            rx: Burst::new(),
            next_guest: 0,
            tables,
            links: WorkerLinks::new(links, queues.index),
            pool,
            stats,
            measure,
            polled: Vec::with_capacity(MAX_SLOTS),
            epoch: handover.published(),
            handover,
            stop,
            idle: IdleBackoff::new(idle_sleep_max_us, idle_block_after_us),
            blocker,
            vlan_offload,
        }
    }

    /// The delivery map of the publication this worker runs on.
    #[inline]
    pub(super) fn delivery(&self) -> &DeliveryMap {
        &self.tables.delivery
    }

    /// Polls until told to stop. Frames still pending at the end are freed and counted.
    pub fn run(mut self) {
        self.links.started();
        crate::rte::lcore::set_timer_slack_ns(super::idle::IDLE_TIMER_SLACK_NS);
        // The TSC is read once every PASSES_PER_TICK passes, and the cycles in between (less
        // any slept) are split between busy and idle by how many of those passes moved
        // frames: in this VM a read per pass was 3% of a saturated worker's time.
        let mut t0 = rdtsc();
        let (mut passes, mut busy_passes, mut frames, mut slept, mut blocked) = (0u64, 0u64, 0u64, 0u64, 0u64);
        // A frame came to a watched interface and ended the last block: the pass right after
        // it may not find it yet (`IdleBackoff::restart_lull`).
        let mut woke_by_arrival = false;
        while !self.stop.load(Ordering::Relaxed) {
            if self.handover.published() != self.epoch {
                if self.blocker.armed() {
                    self.disarm_wakeups();
                }
                if !self.take_new_assignment() {
                    break;
                }
            }
            let moved = self.poll_once();
            if woke_by_arrival {
                if moved == 0 {
                    self.idle.restart_lull();
                    self.blocker.arrived_for_nothing();
                } else {
                    self.blocker.arrival_found();
                }
            }
            passes += 1;
            if moved > 0 {
                busy_passes += 1;
                frames += moved as u64;
            }
            let mut woke = None;
            woke_by_arrival = false;
            if self.blocker.armed() {
                // That pass was the last look before blocking (`block.rs`).
                let s0 = rdtsc();
                woke = self.block_or_disarm(moved);
                if let Some(why) = woke {
                    let b = rdtsc().wrapping_sub(s0);
                    (slept, blocked) = (slept + b, blocked + b);
                    self.stats.add_wake(why);
                }
                if self.blocker.arrived() {
                    if woke.is_some() {
                        woke_by_arrival = true;
                    } else if moved == 0 {
                        // It came while arming, so the worker did not block: not at once again.
                        self.idle.restart_lull();
                        self.blocker.arrived_for_nothing();
                    }
                }
            }
            // Woken by an event: poll at once (arming again first would delay the frame that
            // woke it); the lull goes on only if that pass finds nothing.
            let sleep_us = match woke {
                Some(why) if why != Wake::Timeout => 0,
                _ => self.idle.after_pass(moved > 0, std::time::Instant::now),
            };
            if sleep_us > 0 && !(self.idle.long_lull() && self.arm_wakeups()) {
                // Between passes, holding no device (and parked while it sleeps): a detaching
                // guest need not wait for it.
                self.links.pass_done();
                let s0 = rdtsc();
                self.idle_sleep(std::time::Duration::from_micros(u64::from(sleep_us)));
                slept += rdtsc().wrapping_sub(s0);
            }
            // After a block too, so a blocked worker's counters are as fresh as its wake-ups.
            if passes == PASSES_PER_TICK || woke.is_some() {
                // Every pass in between ended holding no device, so publishing now is as good.
                self.links.pass_done();
                let t1 = rdtsc();
                let awake = t1.wrapping_sub(t0).saturating_sub(slept);
                t0 = t1;
                let busy = awake * busy_passes / passes;
                self.stats.add_loop(frames, busy);
                self.stats.add_cycles(0, awake - busy);
                self.stats.add_sleep(slept, blocked);
                self.blocker.count_traffic(t1, frames);
                (passes, busy_passes, frames, slept, blocked) = (0, 0, 0, 0, 0);
            }
        }
        if self.blocker.armed() {
            self.disarm_wakeups();
        }
        self.wind_down();
        self.shutdown();
    }

    /// Between the last pass and `shutdown`: what this worker batched for its peers goes on
    /// the rings, it tells the others it sends no more, and once every worker has said so it
    /// delivers what the rings still hold. So no frame is left in a ring at exit, and every
    /// copy is counted by the worker that owns its queue.
    fn wind_down(&mut self) {
        self.flush_peers();
        self.handover.worker_stopped(self.me);
        while !self.handover.all_stopped() {
            self.drain_peers_dry();
            self.pause();
        }
        self.drain_peers_dry();
        // Detaches stop waiting for this worker when its `WorkerLinks` drops, with it.
    }

    /// One pass over every queue and ring this worker owns; returns frames moved.
    pub fn poll_once(&mut self) -> usize {
        let mut moved = 0;
        for i in 0..self.uplink_rx.len() {
            moved += self.ingress_burst(i);
        }
        for i in 0..self.from_peers.len() {
            moved += self.drain_peer(i);
        }
        moved += self.egress_all();
        // While the link is down the switch's own frames wait in their ring too (the link-up
        // re-announce follows anyway).
        if self.tables.uplink_up {
            moved += self.send_originated();
        }
        moved
    }

    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Moves every frame of the worker's rx burst into `handle`, in order; returns their total
    /// length. (The burst is lent out so that `handle` may use the rest of the worker.)
    #[inline]
    pub(super) fn take_received(&mut self, mut handle: impl FnMut(&mut Worker, Mbuf)) -> u64 {
        let mut rx = std::mem::take(&mut self.rx);
        rx.prefetch_headers();
        let mut bytes = 0u64;
        for m in rx.drain() {
            bytes += m.pkt_len() as u64;
            handle(self, m);
        }
        self.rx = rx;
        bytes
    }

    #[inline]
    pub(super) fn link_up(&self, g: GuestId) -> bool {
        self.links.is_up(g.index())
    }

    /// Frees what the worker still holds, each frame counted: the uplink burst the tx queue
    /// had no room for, and (never expected after `wind_down`) any batch for a guest or a peer.
    fn shutdown(&mut self) {
        self.drop_originated();
        let n = self.uplink_pending.len() as u64;
        if n > 0 {
            self.stats.uplink().tx_drop(DropReason::UplinkFull, n);
            self.uplink_pending.free_all();
        }
        for s in self.slots.iter_mut() {
            if !s.pending.is_empty() {
                self.stats.guest(s.guest).tx_drop(DropReason::Stopped, s.pending.len() as u64);
                s.pending.free_all();
            }
        }
        for w in 0..self.peers.len() {
            self.drop_peer_pending(w, DropReason::Stopped);
        }
    }
}
