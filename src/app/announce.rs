//! Re-announcing guest MACs on the uplink, so the external switch (re)learns at once which
//! port they are on: after the uplink's link comes back (the link-state handler calls
//! `Switch::announce_all`), and on `dpdk-macvtapctl announce [GUEST]`.
//!
//! One RARP frame per MAC per round (`wire::announce`), `ANNOUNCE_ROUNDS` rounds with
//! growing gaps, as QEMU's announce-self. The first round goes at once; the others are sent
//! by the control loop's tick when due, so nothing waits. Each round announces the MACs the
//! guests have then (a guest removed in between is no longer announced; one added is).

use std::time::Instant;

use super::originate::Kind;
use super::switch::Switch;
use crate::fib::GuestId;
use crate::wire::announce::{gap_after, write_announce, ANNOUNCE_LEN, ANNOUNCE_ROUNDS};
use crate::wire::vlan;
use crate::wire::VLAN_TAG_LEN;

/// One announcement under way: whose MACs, the next round, when it is due.
#[derive(Clone, Copy, Debug)]
struct Job {
    /// None: every guest.
    guest: Option<GuestId>,
    round: u32,
    due: Instant,
}

/// The announcements under way.
#[derive(Default)]
pub(super) struct Announcer {
    jobs: Vec<Job>,
}

/// What starting an announcement did.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Announced {
    /// Guests and MACs announced per round.
    pub guests: usize,
    pub macs: usize,
    pub rounds: u32,
    /// Frames of the first round queued for the uplink (the rest follow on schedule).
    pub queued: usize,
}

impl Switch {
    /// Announces every MAC of every guest on the uplink, now and in the rounds that follow:
    /// what the uplink's link-up handler calls.
    pub fn announce_all(&mut self) -> Announced {
        self.announce(None)
    }

    /// Announces the MACs of `guest` (every guest: None); the first round now.
    pub fn announce(&mut self, guest: Option<GuestId>) -> Announced {
        let (guests, macs, queued) = self.announce_round(guest);
        let now = Instant::now();
        if ANNOUNCE_ROUNDS > 1 {
            // A new announcement of the same guests replaces one under way: its schedule
            // starts again, rather than two overlapping.
            self.announcer.jobs.retain(|j| j.guest != guest);
            self.announcer.jobs.push(Job { guest, round: 1, due: now + gap_after(0) });
        }
        Announced { guests, macs, rounds: ANNOUNCE_ROUNDS, queued }
    }

    /// Sends the rounds that are due (from the control loop's tick).
    pub(super) fn announce_due(&mut self, now: Instant) {
        let due: Vec<Job> = self.announcer.jobs.iter().copied().filter(|j| j.due <= now).collect();
        if due.is_empty() {
            return;
        }
        self.announcer.jobs.retain(|j| j.due > now);
        for j in due {
            self.announce_round(j.guest);
            if j.round + 1 < ANNOUNCE_ROUNDS {
                self.announcer.jobs.push(Job { guest: j.guest, round: j.round + 1, due: now + gap_after(j.round) });
            }
        }
    }

    /// One round: a frame per MAC of `guest` (or of every guest), spread over the workers.
    /// Returns (guests, MACs, frames queued).
    fn announce_round(&mut self, guest: Option<GuestId>) -> (usize, usize, usize) {
        let mut frames: Vec<[u8; ANNOUNCE_LEN]> = Vec::new();
        // A VLAN guest's MAC is announced in its VLAN: that is where the external switch must
        // learn it.
        let mut tagged: Vec<[u8; ANNOUNCE_LEN + VLAN_TAG_LEN]> = Vec::new();
        let mut guests = 0;
        for (id, r) in self.running.guests.iter() {
            if guest.is_some_and(|g| g != id) {
                continue;
            }
            guests += 1;
            for &mac in &r.cfg.macs {
                let mut f = [0u8; ANNOUNCE_LEN];
                write_announce(&mut f, mac);
                if r.cfg.vlan == 0 {
                    frames.push(f);
                } else {
                    let mut t = [0u8; ANNOUNCE_LEN + VLAN_TAG_LEN];
                    t[VLAN_TAG_LEN..].copy_from_slice(&f);
                    // A whole header is there: the insert cannot fail.
                    vlan::insert(&mut t, r.cfg.vlan);
                    tagged.push(t);
                }
            }
        }
        let queued = self.running.origin.send(Kind::Announce, &frames, false) + self.running.origin.send(Kind::Announce, &tagged, false);
        (guests, frames.len() + tagged.len(), queued)
    }
}
