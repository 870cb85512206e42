//! The guest queues a worker serves, and of those the ones it polls on each pass: whose guest
//! is connected and set the queue up. A worker may serve hundreds of configured guests of
//! which a few are connected; looking at every one each pass cost it 15 cycles per frame
//! (9 %) at 990 configured guests with 32 connected (bench/README.md, "Configured guests that
//! are not connected"). So it keeps the connected ones apart, and scans its queues again
//! only when a guest attached or detached somewhere (`GuestLinks::changes`) or a publication
//! gave it other queues (`replace`).
//!
//! The list only narrows the loop: a queue on it is still polled through
//! `WorkerLinks::device`, so a guest that detaches after the scan is skipped as before, and
//! one that attaches after it is found by the next pass's scan.

use crate::fib::GuestId;
use crate::rte::vhost_links::WorkerLinks;
use crate::view::MAX_SLOTS;

/// A guest's queue pair: the guest and the pair's index.
pub(super) type GuestQueue = (GuestId, u16);

pub(super) struct GuestQueues {
    /// Every queue pair this worker serves (its view's `guest_queues`).
    all: Vec<GuestQueue>,
    /// Those connected at the last scan.
    live: Vec<GuestQueue>,
    /// `WorkerLinks::changes` at the last scan; None: scan at the next pass.
    seen: Option<u64>,
}

impl GuestQueues {
    /// Room for every queue a worker can serve, so a scan never allocates.
    pub(super) fn new(all: Vec<GuestQueue>) -> GuestQueues {
        GuestQueues { all, live: Vec::with_capacity(MAX_SLOTS), seen: None }
    }

    /// Every queue pair the worker serves, connected or not.
    #[inline]
    pub(super) fn all(&self) -> &[GuestQueue] {
        &self.all
    }

    /// Takes the queues of a new publication; returns the ones it replaces.
    pub(super) fn replace(&mut self, all: Vec<GuestQueue>) -> Vec<GuestQueue> {
        self.seen = None;
        std::mem::replace(&mut self.all, all)
    }

    /// Scans the queues again if a guest attached or detached since the last scan (one
    /// atomic load otherwise); returns how many are connected (`live`).
    #[inline]
    pub(super) fn refresh(&mut self, links: &WorkerLinks) -> usize {
        // Read before the guests: a change counted after this is scanned for next time.
        let changes = links.changes();
        if self.seen != Some(changes) {
            self.live.clear();
            let up = |&&(g, q): &&GuestQueue| q < links.active_queues(g.index()) && links.is_up(g.index());
            self.live.extend(self.all.iter().filter(up));
            self.seen = Some(changes);
        }
        self.live.len()
    }

    /// The connected queues as of the last `refresh`.
    #[inline]
    pub(super) fn live(&self) -> &[GuestQueue] {
        &self.live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rte::vhost_links::GuestLinks;
    use std::sync::Arc;

    #[test]
    fn only_connected_queues_the_guest_set_up_scanned_again_after_each_change() {
        let links = GuestLinks::new(4, 1);
        let worker = WorkerLinks::new(Arc::clone(&links), 0);
        let (g0, g1, g2, g3) = (GuestId(0), GuestId(1), GuestId(2), GuestId(3));
        let mut q = GuestQueues::new(vec![(g0, 0), (g1, 0), (g1, 1), (g1, 2), (g3, 0)]);
        assert_eq!(q.refresh(&worker), 0, "nobody connected");
        assert!(links.attach(1, 11, 2));
        assert_eq!(q.refresh(&worker), 2);
        assert_eq!(q.live(), &[(g1, 0), (g1, 1)], "guest 1's pairs 0 and 1: it set up two");
        assert!(links.attach(3, 13, 1));
        assert!(links.attach(2, 12, 1), "a guest this worker does not serve");
        q.refresh(&worker);
        assert_eq!(q.live(), &[(g1, 0), (g1, 1), (g3, 0)]);
        links.detach(1, 11);
        q.refresh(&worker);
        assert_eq!(q.live(), &[(g3, 0)]);
        assert_eq!(q.all().len(), 5, "every queue served is still there");
        // A publication gives the worker other queues, with no attach or detach.
        let old = q.replace(vec![(g3, 0), (g2, 0), (g0, 0)]);
        assert_eq!(old.len(), 5);
        q.refresh(&worker);
        assert_eq!(q.live(), &[(g3, 0), (g2, 0)]);
        links.detach(1, 11);
        assert_eq!(links.changes(), 4, "a stale detach is not a change");
    }
}
