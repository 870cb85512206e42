//! One port's live counters (`PortCell`, written by one worker) and their plain-value copy
//! (`PortCounters`, what readers sum and print).

use std::ops::{Add, AddAssign, Sub};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{DropCounts, DropReason};

/// Adds `n` to a counter that only the calling thread ever writes. A load + store is enough
/// (and cheaper than `fetch_add`, which locks the bus); readers see either value, never a
/// torn one. If two threads did write the same cell, increments could be lost, not corrupt.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counters of one port (the uplink or one guest) written by exactly one worker thread:
/// relaxed load+store, no RMW needed.
/// Direction is the switch's: rx = frames the switch received from that port, tx = frames
/// (or copies) the switch delivered to it. What each counter means, and the identities they
/// hold, are in `super::reason`'s doc.
#[derive(Debug, Default)]
pub struct PortCell {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    forwarded: AtomicU64,
    local: AtomicU64,
    copies: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    rx_drops: [AtomicU64; DropReason::COUNT],
    tx_drops: [AtomicU64; DropReason::COUNT],
    stalls: AtomicU64,
}

impl PortCell {
    #[inline]
    pub fn rx(&self, pkts: u64, bytes: u64) {
        bump(&self.rx_packets, pkts);
        bump(&self.rx_bytes, bytes);
    }

    #[inline]
    pub fn tx(&self, pkts: u64, bytes: u64) {
        bump(&self.tx_packets, pkts);
        bump(&self.tx_bytes, bytes);
    }

    /// One frame received from this port went on, as `copies` copies for guests (0 for a
    /// guest's frame that only goes out of the uplink).
    #[inline]
    pub fn forward(&self, copies: u64) {
        bump(&self.forwarded, 1);
        if copies != 0 {
            bump(&self.copies, copies);
        }
    }

    /// `frames` frames received from this port went on as one copy each.
    #[inline]
    pub fn forward_singles(&self, frames: u64) {
        if frames != 0 {
            bump(&self.forwarded, frames);
            bump(&self.copies, frames);
        }
    }

    /// `copies` more copies of a frame already counted in `forwarded`: source-mode guests'
    /// copies of a unicast that also went to its destination's owner, and the copies of a
    /// flood that another worker (the one that received it) counted in `forwarded`, counted
    /// by the worker that handled them (`Worker::flood`) or lost them on the way.
    #[inline]
    pub fn more_copies(&self, copies: u64) {
        bump(&self.copies, copies);
    }

    /// One frame from this guest switched inside the host to one sibling (bridge mode), not
    /// to the uplink: one copy.
    #[inline]
    pub fn forward_local(&self) {
        bump(&self.forwarded, 1);
        bump(&self.local, 1);
        bump(&self.copies, 1);
    }

    /// `n` frames received from this port discarded for `r`, before any copy was made.
    #[inline]
    pub fn rx_drop(&self, r: DropReason, n: u64) {
        // The discriminant is < COUNT by construction of the enum, so this never fails.
        bump(&self.rx_drops[r.index()], n);
    }

    /// `n` frames (copies) headed to this port discarded for `r`.
    #[inline]
    pub fn tx_drop(&self, r: DropReason, n: u64) {
        bump(&self.tx_drops[r.index()], n);
    }

    /// `n` backpressure events: the port could not take frames and the worker held back
    /// instead of dropping.
    #[inline]
    pub fn stall(&self, n: u64) {
        bump(&self.stalls, n);
    }

    pub fn load(&self) -> PortCounters {
        let rx_drops = DropCounts(std::array::from_fn(|i| self.rx_drops[i].load(Relaxed)));
        let tx_drops = DropCounts(std::array::from_fn(|i| self.tx_drops[i].load(Relaxed)));
        PortCounters {
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            forwarded: self.forwarded.load(Relaxed),
            local: self.local.load(Relaxed),
            copies: self.copies.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            drops: rx_drops + tx_drops,
            rx_drops,
            tx_drops,
            stalls: self.stalls.load(Relaxed),
        }
    }
}

/// A copy of a port's counters, or a sum of several (see `super::reason` for what each
/// means).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PortCounters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Frames received from this port that went on (to a guest, or for a guest's frame, to
    /// the uplink or a sibling).
    pub forwarded: u64,
    /// Of `forwarded`, a guest's frames switched to one sibling inside the host only.
    pub local: u64,
    /// Copies of this port's frames made for guests.
    pub copies: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Both directions together: `rx_drops + tx_drops`.
    pub drops: DropCounts,
    /// Frames received from this port and dropped before any copy was made.
    pub rx_drops: DropCounts,
    /// Frames or copies headed to this port and dropped.
    pub tx_drops: DropCounts,
    pub stalls: u64,
}

impl PortCounters {
    pub fn total_drops(&self) -> u64 {
        self.drops.total()
    }
}

impl AddAssign for PortCounters {
    fn add_assign(&mut self, o: Self) {
        self.rx_packets = self.rx_packets.wrapping_add(o.rx_packets);
        self.rx_bytes = self.rx_bytes.wrapping_add(o.rx_bytes);
        self.forwarded = self.forwarded.wrapping_add(o.forwarded);
        self.local = self.local.wrapping_add(o.local);
        self.copies = self.copies.wrapping_add(o.copies);
        self.tx_packets = self.tx_packets.wrapping_add(o.tx_packets);
        self.tx_bytes = self.tx_bytes.wrapping_add(o.tx_bytes);
        self.drops += o.drops;
        self.rx_drops += o.rx_drops;
        self.tx_drops += o.tx_drops;
        self.stalls = self.stalls.wrapping_add(o.stalls);
    }
}

impl Add for PortCounters {
    type Output = PortCounters;

    fn add(mut self, o: Self) -> PortCounters {
        self += o;
        self
    }
}

/// Counts since a baseline (see `DropCounts`'s `Sub`).
impl Sub for PortCounters {
    type Output = PortCounters;

    fn sub(self, o: Self) -> PortCounters {
        PortCounters {
            rx_packets: self.rx_packets.wrapping_sub(o.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_sub(o.rx_bytes),
            forwarded: self.forwarded.wrapping_sub(o.forwarded),
            local: self.local.wrapping_sub(o.local),
            copies: self.copies.wrapping_sub(o.copies),
            tx_packets: self.tx_packets.wrapping_sub(o.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_sub(o.tx_bytes),
            drops: self.drops - o.drops,
            rx_drops: self.rx_drops - o.rx_drops,
            tx_drops: self.tx_drops - o.tx_drops,
            stalls: self.stalls.wrapping_sub(o.stalls),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_accumulates_and_loads() {
        let c = PortCell::default();
        c.rx(2, 128);
        c.rx(1, 64);
        c.tx(4, 400);
        c.rx_drop(DropReason::Oversize, 1);
        c.tx_drop(DropReason::Oversize, 2);
        c.tx_drop(DropReason::GuestDown, 5);
        c.forward(3);
        c.forward(0);
        c.forward_local();
        c.forward_singles(5);
        c.forward_singles(0);
        c.stall(3);
        let p = c.load();
        assert_eq!(
            (p.rx_packets, p.rx_bytes, p.tx_packets, p.tx_bytes, p.stalls),
            (3, 192, 4, 400, 3)
        );
        assert_eq!(p.drops[DropReason::Oversize], 3);
        assert_eq!(p.drops[DropReason::GuestDown], 5);
        assert_eq!(p.total_drops(), 8);
        assert_eq!((p.rx_drops.total(), p.tx_drops.total()), (1, 7));
        assert_eq!((p.forwarded, p.local, p.copies), (8, 1, 9));
    }

    #[test]
    fn counters_add_field_by_field() {
        let a = PortCounters {
            rx_packets: 1,
            rx_bytes: 10,
            tx_packets: 2,
            tx_bytes: 20,
            stalls: 1,
            ..Default::default()
        };
        let mut sum = a + a;
        assert_eq!(
            (
                sum.rx_packets,
                sum.rx_bytes,
                sum.tx_packets,
                sum.tx_bytes,
                sum.stalls
            ),
            (2, 20, 4, 40, 2)
        );
        sum += PortCounters::default();
        assert_eq!(sum, a + a);
    }
}
