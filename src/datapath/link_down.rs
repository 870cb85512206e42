//! A worker while the uplink's link is down (`Tables::uplink_up` false in its publication).
//!
//! Guests are not polled: their frames wait in their virtqueues, the backpressure a full
//! uplink gives, instead of going into a port that drops them without saying so (a veth or
//! NIC without carrier takes frames and discards them). That also stops bridge-mode local
//! delivery, as Linux stops every macvlan when the lower device loses carrier. Frames the
//! worker already held for the uplink are freed once, counted as `uplink_down`: they were
//! taken before the control thread saw the link go, and would be as stale as Linux's
//! discarded queue by the time the link returns. Frames from the uplink (rare without a
//! link) and from peers are still delivered to guests.

use super::worker::Worker;
use crate::stats::DropReason;

impl Worker {
    /// `egress_all` while the link is down: returns 0 frames moved.
    pub(super) fn egress_while_down(&mut self) -> usize {
        let held = self.uplink_pending.len() as u64;
        if held > 0 {
            self.uplink_pending.free_all();
            self.uplink_pending_bytes = 0;
            self.stats.uplink().tx_drop(DropReason::UplinkDown, held);
        }
        // An 802.3ad bond still exchanges LACP (from inside tx bursts) to find a member that works.
        self.uplink_tx.kick();
        // What this pass's ingress and peer rings left for the guests.
        self.flush_slots();
        self.flush_peers();
        0
    }
}
