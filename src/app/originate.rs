//! The control thread's side of the frames the switch itself sends on the uplink: it builds
//! them in packet buffers and queues them on the workers' origin rings
//! (`datapath::originate`), counting what it queued and what it could not.

use std::sync::Arc;

use crate::datapath::OriginSender;
use crate::rte::{Burst, Mbuf, Mempool, BURST};
use crate::stats::OriginStats;

/// What a frame is for, to count it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Announce,
    Probe,
}

pub(super) struct Originator {
    /// One per worker, in worker order.
    senders: Vec<OriginSender>,
    pool: Arc<Mempool>,
    /// The worker the next spread burst goes to.
    next: usize,
    counts: OriginStats,
}

impl Originator {
    pub fn new(senders: Vec<OriginSender>, pool: Arc<Mempool>) -> Originator {
        Originator { senders, pool, next: 0, counts: OriginStats::default() }
    }

    /// Builds a packet buffer for each of `frames` and queues them for the uplink: all on
    /// the first worker, in order (`in_order`), or burst by burst on the workers in turn.
    /// What the pool or the rings cannot take is counted; returns how many were queued.
    pub fn send<const L: usize>(&mut self, kind: Kind, frames: &[[u8; L]], in_order: bool) -> usize {
        let mut queued = 0;
        for chunk in frames.chunks(BURST) {
            let mut burst: Burst = Burst::new();
            for f in chunk {
                let Some(mut m) = Mbuf::alloc(&self.pool) else {
                    self.counts.dropped_no_buffer += 1;
                    continue;
                };
                match m.append(L as u16) {
                    Some(data) => data.copy_from_slice(f),
                    None => {
                        self.counts.dropped_no_buffer += 1;
                        continue;
                    }
                }
                // A chunk is at most a burst: the push cannot fail (and a failure would
                // free the frame).
                let _ = burst.push(m);
            }
            let w = if in_order {
                0
            } else {
                self.next = (self.next + 1) % self.senders.len().max(1);
                self.next
            };
            if let Some(s) = self.senders.get_mut(w) {
                queued += s.post(&mut burst);
            }
            // What the ring refused is freed with the burst.
            self.counts.dropped_ring_full += burst.len() as u64;
        }
        match kind {
            Kind::Announce => self.counts.announces += queued as u64,
            Kind::Probe => self.counts.probes += queued as u64,
        }
        queued
    }

    /// The control thread's counts (queued, and dropped before a worker had them).
    pub fn counts(&self) -> OriginStats {
        self.counts
    }
}
