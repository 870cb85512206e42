//! Frames the switch itself sends on the uplink (MAC re-announcements, hairpin self-test
//! probes). The uplink's tx queues belong to the workers, so the control thread, which
//! builds these frames, hands them to a worker over a single-producer/single-consumer ring
//! of its own (one per worker); the worker sends them on its uplink tx queue once per pass,
//! counted apart from guest traffic (`StatsShard::originated`).
//!
//! The worker checks a counter the control thread bumps after each enqueue rather than the
//! ring itself, so a pass with nothing to send costs one load of a line that is almost never
//! written. Backpressure: frames the tx queue does not take stay in the worker's pending
//! burst, and the rest in the ring, until a later pass; only the control thread drops (and
//! counts) what does not fit in the ring. At stop, what is left is counted and freed.
//!
//! Also here: recognising the switch's own probes among frames from the uplink whose
//! destination no guest owns (the only path a probe can take, as its destination is one of
//! the switch's probe MACs).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

use super::worker::Worker;
use crate::rte::ring::{self, Consumer, Producer};
use crate::rte::{Burst, Mbuf};
use crate::stats::DropReason;
use crate::view::Doorbells;
use crate::wire::probe::{parse_probe, ProbeKind};

/// Where workers leave the nonce of the last reflected probe they saw (any worker may see
/// it: the port's RSS decides which rx queue it lands on).
#[derive(Debug, Default)]
pub struct ProbeSeen {
    reflected: AtomicU64,
}

impl ProbeSeen {
    /// Whether the reflect probe of the check `nonce` came back.
    pub fn reflected(&self, nonce: u64) -> bool {
        self.reflected.load(Ordering::Relaxed) == nonce
    }
}

/// The control thread's end of one worker's ring.
pub struct OriginSender {
    ring: Producer,
    posted: Arc<CachePadded<AtomicU64>>,
    count: u64,
    /// The worker's doorbell, for a worker that sleeps or blocks.
    bells: Arc<Doorbells>,
    worker: usize,
}

impl OriginSender {
    /// Moves as many frames from the front of `burst` into the ring as fit (the rest stay
    /// there, for the caller to count and free) and tells the worker; returns how many.
    pub fn post<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let n = self.ring.enqueue(burst);
        if n > 0 {
            self.count += n as u64;
            // After the enqueue: a worker that sees the new count finds the frames.
            self.posted.store(self.count, Ordering::Release);
            self.bells.ring(self.worker);
        }
        n
    }
}

/// A worker's end: the ring, and the frames the uplink has not taken yet.
pub struct OriginQueue {
    ring: Consumer,
    posted: Arc<CachePadded<AtomicU64>>,
    /// The count of the last post whose frames were all taken from the ring.
    drained: u64,
    pending: Burst,
    probes: Arc<ProbeSeen>,
}

/// A ring of `capacity` between the control thread and worker `worker` (whose doorbell is
/// in `bells`).
pub fn origin_channel(name: &str, capacity: u32, socket: i32, probes: &Arc<ProbeSeen>, bells: &Arc<Doorbells>, worker: usize) -> crate::rte::Result<(OriginSender, OriginQueue)> {
    let (p, c) = ring::spsc(name, capacity, socket)?;
    let posted = Arc::new(CachePadded::new(AtomicU64::new(0)));
    Ok((
        OriginSender { ring: p, posted: Arc::clone(&posted), count: 0, bells: Arc::clone(bells), worker },
        OriginQueue { ring: c, posted, drained: 0, pending: Burst::new(), probes: Arc::clone(probes) },
    ))
}

impl Worker {
    /// Sends what the control thread queued for this worker; returns frames sent.
    #[inline]
    pub(super) fn send_originated(&mut self) -> usize {
        let o = &mut self.origin;
        let posted = o.posted.load(Ordering::Acquire);
        if posted == o.drained && o.pending.is_empty() {
            return 0;
        }
        let room = o.pending.free_slots();
        if o.ring.dequeue(&mut o.pending) < room {
            o.drained = posted;
        }
        let queued = o.pending.len();
        let bytes: u64 = (0..queued).map(|i| o.pending.get(i).pkt_len() as u64).sum();
        let sent = self.uplink_tx.tx(&mut o.pending);
        let left: u64 = (0..o.pending.len()).map(|i| o.pending.get(i).pkt_len() as u64).sum();
        self.stats.originated().tx(sent as u64, bytes - left);
        sent
    }

    /// Whether frames the control thread queued wait for room in the uplink's tx queue.
    #[inline]
    pub(super) fn origin_pending(&self) -> bool {
        !self.origin.pending.is_empty()
    }

    /// At stop: frames still queued for the uplink are counted and freed.
    pub(super) fn drop_originated(&mut self) {
        let o = &mut self.origin;
        loop {
            o.ring.dequeue(&mut o.pending);
            if o.pending.is_empty() {
                break;
            }
            self.stats.originated().tx_drop(DropReason::Stopped, o.pending.len() as u64);
            o.pending.free_all();
        }
    }

    /// A frame from the uplink for a unicast MAC no guest owns: one of the switch's own
    /// hairpin probes coming back (noted, and counted apart), or an unknown destination.
    #[inline]
    pub(super) fn unknown_destination(&self, m: &Mbuf) {
        match parse_probe(m.data()) {
            Some(p) => {
                if p.kind == ProbeKind::Reflect {
                    self.origin.probes.reflected.store(p.nonce, Ordering::Relaxed);
                }
                self.stats.uplink().rx_drop(DropReason::HairpinProbe, 1);
            }
            None => self.stats.uplink().rx_drop(DropReason::UnknownDest, 1),
        }
    }
}
