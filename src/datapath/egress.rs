//! Guests -> uplink: after the checks a tenant must not escape (source MAC ownership, size),
//! a guest's frame leaves through the uplink (VEPA, private); a bridge-mode guest's frame for
//! a bridge-mode sibling is delivered inside the host instead, and its broadcasts go both ways.
//!
//! Backpressure: a guest is polled only for as many frames as the uplink pending burst can
//! hold, so when the uplink tx queue is full the frames stay in the guests' virtqueues.
//!
//! Counting (defined in `stats::reason`): a frame the checks refuse is an rx drop on its
//! guest; every other one is `forwarded` by it (and `local` when it goes to one sibling
//! only), with the copies made for siblings.

use super::tag::{Flood, Tag};
use super::worker::Worker;
use crate::fib::GuestId;
use crate::policy::{self, Cast, Egress};
use crate::rte::eal::rdtsc;
use crate::rte::{vhost, Mbuf};
use crate::stats::DropReason;
use crate::wire::{ethertype, MacAddr, ETHER_HDR_LEN};

/// Where a guest's frame goes.
enum Route {
    Uplink,
    /// To this sibling, inside the host.
    Local(GuestId),
    /// Out of the uplink and to the bridge-mode siblings.
    UplinkAndLocal,
}

/// What the checks on one guest's frames need, read once per burst rather than per frame.
struct Sender {
    g: GuestId,
    max_len: usize,
    /// The guest's only MAC, when it has one (the common case: a compare, not a lookup).
    only_mac: Option<MacAddr>,
    /// Passthru: it may send from any source MAC (no anti-spoofing).
    any_source: bool,
    may_switch_locally: bool,
    /// Its VLAN id (0: untagged): frames leave with that tag.
    vlan: u16,
}

impl Worker {
    /// Polls the guests this worker owns, then transmits on the uplink; returns frames moved.
    pub(super) fn egress_all(&mut self) -> usize {
        if !self.tables.uplink_up {
            return self.egress_while_down();
        }
        // Only the connected queues: a worker may serve many more configured guests.
        let n_guests = self.guest_queues.refresh(&self.links);
        let mut moved = 0;
        if n_guests > 0 {
            let start = self.next_guest % n_guests;
            self.next_guest = self.next_guest.wrapping_add(1);
            // Two ranges rather than an index modulo the count: no division per queue.
            for i in (start..n_guests).chain(0..start) {
                let room = self.uplink_pending.free_slots();
                if room == 0 {
                    self.stats.uplink().stall(1);
                    break;
                }
                let (g, q) = self.guest_queues.live()[i];
                moved += self.egress_guest(g, q, room);
            }
        }
        // Frames switched locally (bridge mode) go out with the rest.
        self.flush_slots();
        self.flush_peers();
        if self.measure {
            let t = rdtsc();
            self.flush_uplink();
            self.share_send_cycles(rdtsc().wrapping_sub(t));
        } else {
            self.flush_uplink();
        }
        moved
    }

    /// Sending is part of what a guest queue costs (on a kernel-backed uplink, most of it):
    /// the cycles of one uplink send are split over the queues polled in this pass, by frames.
    fn share_send_cycles(&mut self, cycles: u64) {
        let total: u64 = self.polled.iter().map(|&(_, n)| u64::from(n)).sum();
        for &(slot, n) in &self.polled {
            if let Some(share) = (cycles * u64::from(n)).checked_div(total) {
                self.stats.add_slot_cycles(slot as usize, share);
            }
        }
        self.polled.clear();
    }

    fn egress_guest(&mut self, g: GuestId, q: u16, room: usize) -> usize {
        let Some(dev) = self.links.device(g.index()) else { return 0 };
        if q >= self.links.active_queues(g.index()) {
            return 0;
        }
        let t0 = if self.measure { rdtsc() } else { 0 };
        let n = vhost::dequeue(&dev, q, &self.pool, &mut self.rx, room);
        if n == 0 {
            return 0;
        }
        let entry = self.tables.fib.guest(g);
        let sender = Sender {
            g,
            max_len: entry.max_frame_len as usize,
            only_mac: if entry.macs.len() == 1 { Some(entry.macs[0]) } else { None },
            any_source: policy::any_source(entry.mode),
            may_switch_locally: self.tables.flags(g).may_switch_locally,
            vlan: entry.vlan,
        };
        let bytes = self.take_received(|w, mut m| match w.check_from_guest(&sender, &m) {
            Err(reason) => {
                w.stats.guest(g).rx_drop(reason, 1);
                drop(m);
            }
            Ok(Route::Uplink) => {
                w.stats.guest(g).forward(0);
                if sender.vlan == 0 {
                    w.send_to_uplink(m);
                } else {
                    w.send_tagged(sender.vlan, m);
                }
            }
            // Bridge mode: a sibling in bridge mode is reached inside the host.
            Ok(Route::Local(dst)) => {
                w.stats.guest(g).forward_local();
                match w.unfit(dst, &m) {
                    Some(reason) => {
                        w.stats.guest(dst).tx_drop(reason, 1);
                        drop(m);
                    }
                    None => w.deliver_unicast(dst, m),
                }
            }
            Ok(Route::UplinkAndLocal) if sender.vlan != 0 => w.flood_tagged_local(g, sender.vlan, m),
            Ok(Route::UplinkAndLocal) => {
                let f = Flood { source: Some(g), local: true, unpooled_only: false, vlan: 0 };
                // Tag before sharing: every reference sees the same header. (A frame just
                // dequeued is ours alone; were it not, it could not cross to another worker.)
                if m.set_tag(Tag::flood(f).raw()) {
                    let (here, _) = w.flood(m.share(), f, true);
                    w.stats.guest(g).forward(here);
                    w.send_to_uplink(m);
                } else {
                    // Never expected; dropped whole rather than sent with its copies missing.
                    w.stats.guest(g).rx_drop(DropReason::Untaggable, 1);
                }
            }
        });
        self.stats.guest(g).rx(n as u64, bytes);
        if self.measure {
            let slot = self.delivery().slot(g.index(), q);
            self.stats.add_slot_cycles(slot, rdtsc().wrapping_sub(t0));
            self.polled.push((slot as u32, n as u32));
        }
        n
    }

    /// The frame as room allows: the caller polled the guest for no more than fits.
    #[inline]
    pub(super) fn send_to_uplink(&mut self, m: Mbuf) {
        let len = m.pkt_len() as u64;
        if let Err(m) = self.uplink_pending.push(m) {
            // room was checked before polling; kept for accounting should that ever change
            drop(m);
            self.stats.uplink().tx_drop(DropReason::UplinkFull, 1);
        } else {
            self.uplink_pending_bytes += len;
        }
    }

    /// What a tenant may not send (runt, oversize, a source MAC it does not own), then where
    /// its mode sends the frame.
    #[inline]
    fn check_from_guest(&self, s: &Sender, m: &Mbuf) -> Result<Route, DropReason> {
        let head = m.data();
        if head.len() < ETHER_HDR_LEN {
            return Err(DropReason::Runt);
        }
        if m.pkt_len() > s.max_len {
            return Err(DropReason::Oversize);
        }
        // The switch tags a VLAN guest's frames; a guest's own 802.1Q tag would reach into a
        // VLAN that is not its own (see README, "VLANs"). A passthru guest owns the wire and
        // tags as it likes.
        if head[12..14] == ethertype::VLAN.to_be_bytes() && !s.any_source {
            return Err(DropReason::VlanTagged);
        }
        let src = MacAddr::from_slice(&head[6..12]).unwrap_or_default();
        let owned = s.any_source || match s.only_mac {
            Some(mac) => src == mac,
            None => self.tables.fib.lookup_in(s.vlan, &src) == Some(s.g),
        };
        if !owned {
            return Err(DropReason::SpoofedSource);
        }
        if !s.may_switch_locally {
            return Ok(Route::Uplink);
        }
        let g = s.g;
        let entry = self.tables.fib.guest(g);
        let dst = MacAddr::from_slice(&head[0..6]).unwrap_or_default();
        let cast = Cast::of(&dst);
        let sibling = if cast == Cast::Unicast { self.tables.fib.lookup_in(s.vlan, &dst) } else { None };
        Ok(match policy::egress_in(entry.mode, s.vlan, cast, sibling.map(|s| self.tables.fib.guest(s)).map(|e| (e.mode, e.vlan))) {
            Egress::Uplink => Route::Uplink,
            Egress::Local => match sibling {
                Some(s) => Route::Local(s),
                None => Route::Uplink,
            },
            Egress::UplinkAndLocal => Route::UplinkAndLocal,
        })
    }

    fn flush_uplink(&mut self) {
        if self.uplink_pending.is_empty() {
            // An 802.3ad bond sends its LACP frames from inside tx bursts, so an idle pass
            // still calls it (a no-op for every other port).
            self.uplink_tx.kick();
            return;
        }
        let sent = self.uplink_tx.tx(&mut self.uplink_pending);
        let left_bytes: u64 = (0..self.uplink_pending.len()).map(|i| self.uplink_pending.get(i).pkt_len() as u64).sum();
        self.stats.uplink().tx(sent as u64, self.uplink_pending_bytes - left_bytes);
        self.uplink_pending_bytes = left_bytes;
        if !self.uplink_pending.is_empty() {
            self.stats.uplink().stall(1);
        }
    }
}
