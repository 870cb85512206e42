//! The vhost library's device events, routed to the guest whose socket they came on, and the
//! control thread's record of which links it has reported.
//!
//! Threads: `GuestEvents` is called on the vhost library's own thread (and, when a connected
//! socket is unregistered, on the control thread inside `rte_vhost_driver_unregister`); the
//! path map changes on the control thread as guests come and go. A mutex guards the map:
//! neither thread is a worker, and device events are rare.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::fib::GuestId;
use crate::rte::vhost::VhostEvents;
use crate::view::{Doorbells, GuestLinks};

/// Socket path -> (guest, configured queue pairs).
type PathMap = HashMap<String, (GuestId, u16)>;

pub struct GuestEvents {
    by_path: Mutex<PathMap>,
    links: Arc<GuestLinks>,
    /// A worker blocked in a long lull must learn of a new device: its guest does not kick.
    bells: Arc<Doorbells>,
}

impl GuestEvents {
    pub fn new(links: Arc<GuestLinks>, bells: Arc<Doorbells>) -> Arc<GuestEvents> {
        Arc::new(GuestEvents { by_path: Mutex::new(HashMap::new()), links, bells })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, PathMap> {
        // A panic while holding the lock cannot leave the map half-changed (single inserts and
        // removes), so a poisoned lock is still usable.
        self.by_path.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Devices on `path` are guest `g`'s from now on. Call before its socket starts.
    pub fn add(&self, path: &str, g: GuestId, queues: u16) {
        self.map().insert(path.to_owned(), (g, queues));
    }

    /// Forgets `path`. Call after its socket was unregistered, so that the device's
    /// `destroy_device` still finds its guest. Must not be called with the lock held
    /// elsewhere: unregistering calls back into `destroy_device`.
    pub fn remove(&self, path: &str) {
        self.map().remove(path);
    }

    fn lookup(&self, path: &str) -> Option<(GuestId, u16)> {
        self.map().get(path).copied()
    }
}

/// The library holds one handler for the process; this forwards to the shared one.
pub struct EventsHandle(pub Arc<GuestEvents>);

impl VhostEvents for EventsHandle {
    fn new_device(&self, path: &str, vid: i32, queue_pairs: u16) -> bool {
        match self.0.lookup(path) {
            // A second client on a guest's socket is refused: one device per guest.
            Some((g, configured)) => {
                let attached = self.0.links.attach(g.index(), vid, queue_pairs.min(configured).max(1));
                if attached {
                    self.0.bells.ring_all();
                }
                attached
            }
            None => false,
        }
    }

    fn destroy_device(&self, path: &str, vid: i32) {
        // The lock is not held while waiting for the workers in `detach`.
        if let Some((g, _)) = self.0.lookup(path) {
            self.0.links.detach(g.index(), vid);
        }
    }
}

/// The control thread's view: which links changed since it last looked.
pub struct LinkWatch {
    /// Indexed by guest id.
    last: Vec<bool>,
}

impl LinkWatch {
    pub fn new(ids: usize) -> LinkWatch {
        LinkWatch { last: vec![false; ids] }
    }

    pub fn is_up(&self, g: GuestId) -> bool {
        self.last.get(g.index()).copied().unwrap_or(false)
    }

    /// A guest left: its id starts from "down" when it is reused.
    pub fn forget(&mut self, g: GuestId) {
        if let Some(l) = self.last.get_mut(g.index()) {
            *l = false;
        }
    }

    /// (guest, up) for every guest of `guests` whose link changed.
    pub fn poll(&mut self, links: &GuestLinks, guests: &[GuestId]) -> Vec<(GuestId, bool)> {
        let mut changes = Vec::new();
        for &g in guests {
            let up = links.is_up(g.index());
            if let Some(last) = self.last.get_mut(g.index()) {
                if up != *last {
                    *last = up;
                    changes.push((g, up));
                }
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_reports_changes_once() {
        let links = GuestLinks::new(2, 1);
        let mut worker = crate::view::WorkerLinks::new(Arc::clone(&links), 0);
        worker.started();
        let mut w = LinkWatch::new(2);
        let all = [GuestId(0), GuestId(1)];
        assert!(w.poll(&links, &all).is_empty());
        links.attach(1, 0, 1);
        assert_eq!(w.poll(&links, &all), vec![(GuestId(1), true)]);
        assert!(w.poll(&links, &all).is_empty());
        drop(worker);
        links.detach(1, 0);
        assert_eq!(w.poll(&links, &all), vec![(GuestId(1), false)]);
    }

    #[test]
    fn events_follow_the_path_map() {
        let links = GuestLinks::new(4, 1);
        let (bells, _polls) = Doorbells::new(1).expect("doorbells");
        let ev = GuestEvents::new(Arc::clone(&links), bells);
        let h = EventsHandle(Arc::clone(&ev));
        assert!(!h.new_device("/x.sock", 5, 1), "unknown socket refused");
        ev.add("/x.sock", GuestId(3), 2);
        assert!(h.new_device("/x.sock", 5, 4));
        assert_eq!((links.vid(3), links.active_queues(3)), (Some(5), 2));
        h.destroy_device("/x.sock", 5);
        assert_eq!(links.vid(3), None);
        ev.remove("/x.sock");
        assert!(!h.new_device("/x.sock", 6, 1));
    }
}
