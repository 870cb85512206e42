//! Follows each guest's vhost-user link and publishes it to the workers as one atomic flag per
//! guest, so nothing is delivered to a guest that is not connected.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::rte::Port;

pub struct LinkWatch {
    flags: Arc<[AtomicBool]>,
    last: Vec<bool>,
}

/// A guest whose link changed since the last poll.
pub struct LinkChange {
    pub guest: usize,
    pub up: bool,
}

impl LinkWatch {
    pub fn new(n: usize) -> LinkWatch {
        LinkWatch { flags: (0..n).map(|_| AtomicBool::new(false)).collect(), last: vec![false; n] }
    }

    /// The flags the workers read.
    pub fn flags(&self) -> Arc<[AtomicBool]> {
        Arc::clone(&self.flags)
    }

    pub fn is_up(&self, guest: usize) -> bool {
        self.last[guest]
    }

    /// Reads every guest port's link and returns what changed.
    pub fn poll(&mut self, ports: &[Port]) -> Vec<LinkChange> {
        let mut changes = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let up = p.link().up;
            if up != self.last[i] {
                self.last[i] = up;
                self.flags[i].store(up, Ordering::Release);
                changes.push(LinkChange { guest: i, up });
            }
        }
        changes
    }
}
