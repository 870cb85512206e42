//! How anyone who gives a worker work wakes it when it blocks in a long idle period
//! (`datapath::block`) or sleeps in a short one: the control thread after a publication, an
//! origin post or the stop; the vhost thread when a guest's device comes up; a worker that
//! hands a peer frames. A blocked worker also wakes on its guests' kicks and its uplink rx
//! interrupts, which need no doorbell.
//!
//! The protocol (a Dekker pair, so no wake-up is lost): the worker sets `asleep` (SeqCst),
//! then looks at everything it waits for once more, and blocks only if that finds nothing;
//! whoever gives it work makes the work visible first, then (after a SeqCst fence) looks at
//! `asleep` and rings if it is set. Either the worker's last look sees the work or the
//! ringer sees the flag. A timed sleep sets the flag too, without the last look: a ring it
//! misses only lets the sleep run out, as it would without a doorbell. The ring is an
//! eventfd write (`mio::Waker`), a syscall made only for a worker that sleeps, blocks or is
//! about to, and only by the ringer that clears its flag: one per sleep or block. A busy
//! worker's flag is clear, and what a peer pays per batch is a fence and a load.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;

/// The token of a worker's doorbell in its own `mio::Poll`.
pub const DOORBELL: mio::Token = mio::Token(0);

struct Bell {
    asleep: CachePadded<AtomicBool>,
    waker: mio::Waker,
}

/// One doorbell per worker.
pub struct Doorbells {
    bells: Box<[Bell]>,
}

impl Doorbells {
    /// The doorbells of `workers` workers, and each worker's poller with its bell registered
    /// (the worker waits on it, with its kick and interrupt fds).
    pub fn new(workers: usize) -> std::io::Result<(Arc<Doorbells>, Vec<mio::Poll>)> {
        let mut polls = Vec::with_capacity(workers);
        let mut bells = Vec::with_capacity(workers);
        for _ in 0..workers {
            let poll = mio::Poll::new()?;
            let waker = mio::Waker::new(poll.registry(), DOORBELL)?;
            bells.push(Bell { asleep: CachePadded::new(AtomicBool::new(false)), waker });
            polls.push(poll);
        }
        Ok((Arc::new(Doorbells { bells: bells.into_boxed_slice() }), polls))
    }

    /// Wakes worker `w` if it blocks or is about to; call after making its work visible.
    #[inline]
    pub fn ring(&self, w: usize) {
        fence(Ordering::SeqCst);
        self.ring_fenced(w);
    }

    /// Wakes every worker that blocks; call after making the change visible.
    pub fn ring_all(&self) {
        fence(Ordering::SeqCst);
        for w in 0..self.bells.len() {
            self.ring_fenced(w);
        }
    }

    #[inline]
    fn ring_fenced(&self, w: usize) {
        if let Some(b) = self.bells.get(w) {
            // Only the ringer that clears the flag writes: one ring per sleep or block,
            // however many peers hand the worker frames meanwhile.
            if b.asleep.load(Ordering::Relaxed) && b.asleep.compare_exchange(true, false, Ordering::SeqCst, Ordering::Relaxed).is_ok() {
                // An eventfd write cannot fail short of the counter's overflow, which mio
                // handles by resetting it; the worker wakes in any case.
                let _ = b.waker.wake();
            }
        }
    }

    /// Worker `w` is about to take its last look before blocking (`true`), or is awake again.
    #[inline]
    pub fn set_asleep(&self, w: usize, asleep: bool) {
        if let Some(b) = self.bells.get(w) {
            b.asleep.store(asleep, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn woken(poll: &mut mio::Poll, wait: Duration) -> bool {
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(wait)).expect("poll");
        events.iter().any(|e| e.token() == DOORBELL)
    }

    #[test]
    fn only_a_worker_that_is_asleep_is_rung() {
        let (bells, mut polls) = Doorbells::new(2).expect("doorbells");
        bells.ring(0);
        assert!(!woken(&mut polls[0], Duration::ZERO), "an awake worker is not woken");
        bells.set_asleep(1, true);
        bells.ring_all();
        assert!(!woken(&mut polls[0], Duration::ZERO));
        assert!(woken(&mut polls[1], Duration::from_secs(5)), "the sleeping one is");
        bells.ring(1);
        assert!(!woken(&mut polls[1], Duration::ZERO), "once: the ring cleared the flag");
        bells.set_asleep(1, true);
        bells.set_asleep(1, false);
        bells.ring(1);
        assert!(!woken(&mut polls[1], Duration::ZERO), "the edge was taken, and it is awake now");
        bells.ring(7);
    }

    /// A ring from another thread while the worker blocks ends the block.
    #[test]
    fn a_ring_from_another_thread_ends_a_block() {
        let (bells, mut polls) = Doorbells::new(1).expect("doorbells");
        bells.set_asleep(0, true);
        let b = Arc::clone(&bells);
        let t = std::thread::spawn(move || b.ring(0));
        assert!(woken(&mut polls[0], Duration::from_secs(10)), "the ring woke the poller");
        t.join().expect("ringer");
    }
}
