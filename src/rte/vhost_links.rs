//! Which guests are connected, as the workers see it, and the handshake that keeps a guest's
//! device usable until every worker has let go of it: what makes the vhost library's
//! enqueue and dequeue safe to call (`vhost::enqueue`/`dequeue` take a [`Device`], which only
//! this handshake hands out).
//!
//! Writers: the vhost library's thread (`attach`/`detach`, through `GuestEvents`). Readers:
//! the workers, for each frame or burst they hand a guest (always inside a pass), and the
//! control thread for link messages.
//! Handshake: `detach` clears the vid, then waits until every worker has finished the pass
//! it was in (its pass counter moved), has stopped, or is parked (sleeping or blocked between passes).
//! A worker reads a vid only inside a pass and publishes the end of each pass with a
//! sequentially consistent store, so that its next read of the vid cannot be ordered before
//! that store.
//!
//! The types hold the worker to it: a worker sees the links through its own [`WorkerLinks`]
//! (one per worker index: a second is refused), whose [`Device`] handles borrow it, and
//! ending a pass (`pass_done`) takes it mutably, so no handle can outlive the pass it was
//! read in; it hands out no handle unless `detach` waits for it (after `started`, and not
//! parked: a [`Parked`] guard borrows it for as long as the worker sleeps or blocks, and one
//! that is forgotten rather than dropped leaves it handing out none); its stop is its drop.
//! The library's `destroy_device` (which unmaps the guest's memory) cannot complete while a
//! handle exists.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// A worker's pass counter once it has stopped for good, or while it is parked.
const STOPPED: u64 = u64::MAX;
const NO_DEVICE: i32 = -1;

pub struct GuestLinks {
    vid: Box<[AtomicI32]>,
    /// Queue pairs the connected guest set up (0 when not connected).
    queues: Box<[AtomicU16]>,
    passes: Box<[CachePadded<AtomicU64>]>,
    /// Which workers' `WorkerLinks` exist (`WorkerLinks::new`): two for one pass counter
    /// would end each other's passes.
    claimed: Box<[AtomicBool]>,
    /// Bumped after every attach and detach, so that a worker can keep the list of its
    /// connected queues and scan its guests again only when it moved (`changes`).
    changes: CachePadded<AtomicU64>,
}

impl GuestLinks {
    pub fn new(guests: usize, workers: usize) -> Arc<GuestLinks> {
        Arc::new(GuestLinks {
            vid: (0..guests).map(|_| AtomicI32::new(NO_DEVICE)).collect(),
            queues: (0..guests).map(|_| AtomicU16::new(0)).collect(),
            // A worker that never started (or failed to launch) must not be waited for.
            passes: (0..workers).map(|_| CachePadded::new(AtomicU64::new(STOPPED))).collect(),
            claimed: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            changes: CachePadded::new(AtomicU64::new(0)),
        })
    }

    /// The guest's vhost device id, if connected (workers use `WorkerLinks::device`).
    #[inline]
    pub fn vid(&self, guest: usize) -> Option<i32> {
        let v = self.vid[guest].load(Ordering::SeqCst);
        (v != NO_DEVICE).then_some(v)
    }

    #[inline]
    pub fn active_queues(&self, guest: usize) -> u16 {
        self.queues[guest].load(Ordering::Relaxed)
    }

    pub fn is_up(&self, guest: usize) -> bool {
        self.vid(guest).is_some()
    }

    /// How many attaches and detaches there have been. One that a reader sees here was
    /// complete (vid and queue count stored) before it was counted, so a reader that reads
    /// this first and then the guests sees at least every change up to the count it read.
    #[inline]
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// End of a worker pass: after this, the worker holds no vid it read before.
    #[inline]
    fn pass_done(&self, worker: usize) {
        let p = &self.passes[worker];
        let next = p.load(Ordering::Relaxed).wrapping_add(1) % STOPPED;
        p.store(next, Ordering::SeqCst);
    }

    /// The worker is about to read vids: from now on `detach` waits for its passes. (A detach
    /// that saw it stopped ordered its vid store before this, so the worker sees the change.)
    fn worker_started(&self, worker: usize) {
        self.passes[worker].store(0, Ordering::SeqCst);
    }

    /// The worker has left its loop and will read no vid again.
    fn worker_stopped(&self, worker: usize) {
        self.passes[worker].store(STOPPED, Ordering::SeqCst);
    }

    /// Publishes `vid` as the guest's device; false (nothing changed) if the guest already
    /// has one. A second client on a guest's server socket gets its own vid from the library:
    /// it must be refused (so the library never starts it), not replace the first, or the
    /// first's later `detach` would not find it and would return while a worker may still
    /// use it.
    pub fn attach(&self, guest: usize, vid: i32, queue_pairs: u16) -> bool {
        if self.vid[guest].compare_exchange(NO_DEVICE, vid, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return false;
        }
        // Read by workers only after they saw the vid, and only as a bound (a stale 0 is safe).
        self.queues[guest].store(queue_pairs, Ordering::Relaxed);
        self.changes.fetch_add(1, Ordering::SeqCst);
        true
    }

    /// Unpublishes the device and returns once no worker can be using it.
    pub fn detach(&self, guest: usize, vid: i32) {
        if self.vid[guest].compare_exchange(vid, NO_DEVICE, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.queues[guest].store(0, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        // Even for a device that was never (or is no longer) published, wait for every worker's
        // pass: it costs a pass, and nothing then depends on how the vid came to be stale.
        for p in self.passes.iter() {
            let seen = p.load(Ordering::SeqCst);
            if seen == STOPPED {
                continue;
            }
            while p.load(Ordering::SeqCst) == seen {
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }
}

/// A live vhost device, for the pass in which it was looked up: what `vhost::enqueue` and
/// `vhost::dequeue` need. Only `WorkerLinks::device` makes one, and it borrows the worker's
/// links, so the worker cannot end its pass (and let a `detach` complete) while holding it.
pub struct Device<'pass> {
    vid: i32,
    _pass: PhantomData<&'pass WorkerLinks>,
}

impl Device<'_> {
    /// The library's id of the device (an id only: the calls need the `Device`).
    #[inline]
    pub fn vid(&self) -> i32 {
        self.vid
    }
}

/// One worker's side of [`GuestLinks`]. Not `Clone`: each worker has exactly one.
pub struct WorkerLinks {
    links: Arc<GuestLinks>,
    me: usize,
    /// `detach` waits for this worker's passes: set by `started` (and the end of a park),
    /// cleared by `park`. No `Device` is handed out while it is clear.
    active: bool,
}

impl WorkerLinks {
    /// Worker `me`'s side; panics if one exists (each worker index has one at a time).
    pub fn new(links: Arc<GuestLinks>, me: usize) -> WorkerLinks {
        assert!(!links.claimed[me].swap(true, Ordering::SeqCst), "worker {me}'s guest links made twice");
        WorkerLinks { links, me, active: false }
    }

    /// Guest `guest`'s device, if it is connected; valid until this worker's pass ends. None
    /// before `started`, and after a park whose guard was not dropped.
    #[inline]
    pub fn device(&self, guest: usize) -> Option<Device<'_>> {
        if !self.active {
            return None;
        }
        self.links.vid(guest).map(|vid| Device { vid, _pass: PhantomData })
    }

    #[inline]
    pub fn is_up(&self, guest: usize) -> bool {
        self.links.is_up(guest)
    }

    #[inline]
    pub fn active_queues(&self, guest: usize) -> u16 {
        self.links.active_queues(guest)
    }

    /// See `GuestLinks::changes`.
    #[inline]
    pub fn changes(&self) -> u64 {
        self.links.changes()
    }

    /// The end of a pass: no `Device` can be alive (this takes `&mut self`).
    #[inline]
    pub fn pass_done(&mut self) {
        self.links.pass_done(self.me);
    }

    /// See `GuestLinks::worker_started`. (The pass counter is stored before `active` is
    /// set: a device is only looked up once `detach` waits for this worker.)
    pub fn started(&mut self) {
        self.links.worker_started(self.me);
        self.active = true;
    }

    /// Before the worker sleeps or blocks between passes: a `detach` meanwhile does not wait
    /// for it.
    /// The guard borrows the links, so no `Device` is alive while it exists nor can one be
    /// looked up; dropping it makes `detach` wait for this worker's passes again, before any
    /// vid can be read (the same order as at start, `GuestLinks::worker_started`).
    pub fn park(&mut self) -> Parked<'_> {
        self.active = false;
        self.links.worker_stopped(self.me);
        Parked { links: self }
    }
}

/// The worker has left its loop (or unwinds) and will read no vid again: nobody waits for
/// it any more (`GuestLinks::worker_stopped`). Tied to the drop so that no handle can be
/// looked up after it.
impl Drop for WorkerLinks {
    fn drop(&mut self) {
        self.links.worker_stopped(self.me);
        // No handle can outlive this: the index may have a side again.
        self.links.claimed[self.me].store(false, Ordering::SeqCst);
    }
}

/// A worker sleeping or blocked between passes (`WorkerLinks::park`).
pub struct Parked<'a> {
    links: &'a mut WorkerLinks,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        // A pass count `detach` may have seen before the park would make it wait for one
        // more pass than needed; harmless, as at start.
        self.links.started();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_waits_for_a_worker_in_a_pass() {
        let links = GuestLinks::new(1, 2);
        links.attach(0, 7, 1);
        let mut worker = WorkerLinks::new(Arc::clone(&links), 0);
        worker.started();
        assert_eq!(worker.device(0).map(|d| d.vid()), Some(7));
        let l2 = Arc::clone(&links);
        let t = std::thread::spawn(move || {
            l2.detach(0, 7);
            std::time::Instant::now()
        });
        // Once the vid is unpublished the detach is waiting for worker 0's pass, which only
        // `pass_done` below can end.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while links.vid(0).is_some() {
            assert!(std::time::Instant::now() < deadline, "detach never unpublished the vid");
            std::thread::yield_now();
        }
        assert!(!t.is_finished(), "worker 0 has not finished its pass");
        let before = std::time::Instant::now();
        worker.pass_done();
        let returned = t.join().expect("detach thread");
        assert!(returned >= before);
        assert_eq!(links.vid(0), None);
        assert_eq!(links.active_queues(0), 0);
    }

    /// A worker blocked between passes (parked) holds no device: a detach goes on without
    /// it, and once it unparks, detaches wait for its passes again.
    #[test]
    fn detach_does_not_wait_for_a_parked_worker_and_waits_again_once_it_is_back() {
        let links = GuestLinks::new(2, 1);
        links.attach(0, 7, 1);
        links.attach(1, 8, 1);
        let mut worker = WorkerLinks::new(Arc::clone(&links), 0);
        worker.started();
        worker.pass_done();
        let parked = worker.park();
        // Returns at once (a worker in a pass would hold it until its pass ends).
        links.detach(0, 7);
        assert_eq!(links.vid(0), None);
        drop(parked);
        assert_eq!(worker.device(0).map(|d| d.vid()), None, "the unparked worker sees the detach");
        assert_eq!(worker.device(1).map(|d| d.vid()), Some(8));
        let l2 = Arc::clone(&links);
        let t = std::thread::spawn(move || l2.detach(1, 8));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while links.vid(1).is_some() {
            assert!(std::time::Instant::now() < deadline, "detach never unpublished the vid");
            std::thread::yield_now();
        }
        assert!(!t.is_finished(), "an unparked worker is waited for again");
        worker.pass_done();
        t.join().expect("detach thread");
    }

    /// Misuse a safe caller could write hands out no device that a detach does not wait
    /// for: before `started`, after a park whose guard was forgotten; a second side for one
    /// worker is refused.
    #[test]
    fn no_device_unless_detach_waits_for_the_worker() {
        let links = GuestLinks::new(1, 1);
        links.attach(0, 7, 1);
        let mut worker = WorkerLinks::new(Arc::clone(&links), 0);
        assert!(worker.device(0).is_none(), "before started");
        worker.started();
        assert_eq!(worker.device(0).map(|d| d.vid()), Some(7));
        std::mem::forget(worker.park());
        assert!(worker.device(0).is_none(), "parked, the guard forgotten: detach does not wait");
        links.detach(0, 7);
        let again = std::panic::catch_unwind(|| WorkerLinks::new(Arc::clone(&links), 0));
        assert!(again.is_err(), "a second side for worker 0");
        drop(worker);
        let next = WorkerLinks::new(Arc::clone(&links), 0);
        assert!(next.device(0).is_none(), "a new side starts as the first did");
    }

    #[test]
    fn a_second_device_is_refused_and_a_stale_detach_leaves_the_first_alone() {
        let links = GuestLinks::new(1, 1);
        assert!(links.attach(0, 3, 2));
        assert!(!links.attach(0, 4, 1), "a second client on the same socket");
        assert_eq!((links.vid(0), links.active_queues(0)), (Some(3), 2));
        links.detach(0, 4);
        assert_eq!(links.vid(0), Some(3));
        assert_eq!(links.active_queues(0), 2);
        links.detach(0, 3);
        assert_eq!(links.vid(0), None);
        assert!(links.attach(0, 5, 1), "the socket's next client");
    }
}
