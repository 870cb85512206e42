//! Which worker owns which queue. Pure: unit-tested without EAL.
//!
//! With one uplink rx queue (software classification), the worker that polls it is the only
//! one that writes guests' vhost tx queues, so every virtqueue has exactly one writer. Guests'
//! transmissions are spread round-robin; each worker has an uplink tx queue of its own.

/// The queues of one worker, as indexes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPlan {
    pub uplink_rx: Vec<u16>,
    pub uplink_tx: u16,
    pub guest_rx: Vec<usize>,
    pub guest_tx: Vec<usize>,
}

pub fn round_robin(workers: usize, uplink_rx_queues: u16, guests: usize) -> Vec<WorkerPlan> {
    let mut plans: Vec<WorkerPlan> = (0..workers)
        .map(|w| WorkerPlan { uplink_rx: Vec::new(), uplink_tx: w as u16, guest_rx: Vec::new(), guest_tx: Vec::new() })
        .collect();
    if workers == 0 {
        return plans;
    }
    for q in 0..uplink_rx_queues {
        plans[q as usize % workers].uplink_rx.push(q);
    }
    // Delivery to guests stays with the worker of uplink rx queue 0 (single writer per virtqueue).
    plans[0].guest_tx = (0..guests).collect();
    for g in 0..guests {
        plans[g % workers].guest_rx.push(g);
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_owns_everything() {
        let p = round_robin(1, 1, 3);
        assert_eq!(p, vec![WorkerPlan { uplink_rx: vec![0], uplink_tx: 0, guest_rx: vec![0, 1, 2], guest_tx: vec![0, 1, 2] }]);
    }

    #[test]
    fn guests_spread_and_each_queue_has_one_owner() {
        let p = round_robin(2, 1, 3);
        assert_eq!(p[0].guest_rx, vec![0, 2]);
        assert_eq!(p[1].guest_rx, vec![1]);
        assert_eq!(p[0].uplink_rx, vec![0]);
        assert!(p[1].uplink_rx.is_empty());
        assert_eq!((p[0].uplink_tx, p[1].uplink_tx), (0, 1));
        let tx_owners: usize = p.iter().map(|w| w.guest_tx.len()).sum();
        assert_eq!(tx_owners, 3);
    }
}
