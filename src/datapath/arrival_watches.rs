//! A worker's watches on the kernel interfaces its uplink reads (`rte::arrivals`), the wake-up
//! of an uplink without rx interrupts (net_af_packet, a bond over such members). Only for a
//! worker that polls all of the uplink's rx queues: a watch sees every frame of the
//! interface, and would wake a worker for the frames of another worker's queues.
//!
//! A watch is a packet socket hooked into the interface's receive path, which costs the
//! kernel some work per arriving frame whether or not the worker blocks (about 4 % of what an
//! af_packet uplink carried at saturation here). So a worker that moved `RELEASE_RATE` frames
//! a second or more over a `WINDOW` lets its watches go and, until a window goes by below
//! that rate, sleeps through its lulls rather than blocking: at that rate frames come about
//! as close together as the gaps it blocks through, and each block would make the watches
//! again. After a quieter window, the next time it arms its wake-ups it makes them again (a
//! socket, an option and a bind each).
//!
//! Closing a packet socket waits for an RCU grace period (milliseconds), which a worker must
//! not: a thread of its own, on the control thread's core, closes what the workers let go,
//! and the sockets whose bind failed (`spawn_closer`).
//!
//! Threads: made on the control thread at start, then the worker's alone (between passes,
//! while arming and at its counters' tick).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::rte::arrivals::ArrivalWatch;

/// How long the worker's traffic is measured before it decides whether it is dense.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Frames a second (any direction) from which the traffic is dense: frames 100 us apart,
/// closer than the gaps a worker blocks through (`idle::SPARSE_GAP`, 250 us).
pub const RELEASE_RATE: u64 = 10_000;

/// Sockets on their way to the closing thread.
pub type Released = Sender<ArrivalWatch>;

/// The thread that closes the sockets workers let go; it ends once every worker has dropped
/// its `Released`. (The channel holds 64; a worker whose send finds it full keeps the watch
/// until its next dense window.)
pub fn spawn_closer() -> io::Result<(Released, std::thread::JoinHandle<()>)> {
    let (tx, rx): (Released, Receiver<ArrivalWatch>) = crossbeam_channel::bounded(64);
    let h = std::thread::Builder::new().name("mvt-closer".into()).spawn(move || rx.iter().for_each(drop))?;
    Ok((tx, h))
}

pub struct ArrivalWatches {
    ifaces: Vec<u32>,
    /// One per interface while hooked; empty once let go.
    watches: Vec<ArrivalWatch>,
    released: Released,
    /// The TSC's frequency.
    tsc_hz: u64,
    /// TSC at the start of the current window, and the frames moved since.
    window_start: u64,
    window_frames: u64,
    /// The last window was at `RELEASE_RATE` or more: no watch, no block.
    dense: bool,
    /// More frames came to the watches than the worker received from the uplink between the
    /// last two armings: one of them may not be in the driver's ring yet.
    held: bool,
    /// The worker's count of uplink frames at the last arming.
    seen: u64,
    /// Of the frames that came before the last arming, those the worker had not received:
    /// counted once more at the next arming, where they may arrive late. (Only once: frames
    /// the driver never takes, a full ring's or the fragments its fanout merges, must not
    /// hold every block after.)
    owed: u64,
    /// The watches were made since the last arming: `seen` is from before.
    fresh: bool,
}

impl ArrivalWatches {
    /// Watches on `ifaces`, made now so that an error shows at start-up. `tsc_hz`: the TSC's
    /// frequency; `now`: the TSC.
    pub fn new(ifaces: Vec<u32>, released: Released, tsc_hz: u64, now: u64) -> io::Result<ArrivalWatches> {
        let mut w = ArrivalWatches { watches: Vec::with_capacity(ifaces.len()), ifaces, released, tsc_hz, window_start: now, window_frames: 0, dense: false, held: false, seen: 0, owed: 0, fresh: true };
        w.make()?;
        Ok(w)
    }

    /// Makes the watches missing; stops at the first that fails (the next arming tries again).
    fn make(&mut self) -> io::Result<()> {
        while self.watches.len() < self.ifaces.len() {
            let w = ArrivalWatch::open()?;
            if let Err(e) = w.bind(self.ifaces[self.watches.len()]) {
                self.close(w);
                return Err(e);
            }
            self.watches.push(w);
            self.fresh = true;
        }
        Ok(())
    }

    /// Has the closing thread close `w` (here, only if 64 sockets already wait for it).
    fn close(&self, w: ArrivalWatch) {
        if let Err(e) = self.released.try_send(w) {
            // 64 sockets waiting to be closed: this one waits for its grace period here.
            drop(e.into_inner());
        }
    }

    /// Whether the worker's traffic is dense now: it does not block (and has no watch).
    pub fn dense(&self) -> bool {
        self.dense
    }

    /// Whether more frames came to the watches than the worker received from the uplink between
    /// the last two armings (`rte::arrivals`: the driver's ring may not hold one of them yet).
    pub fn held(&self) -> bool {
        self.held
    }

    /// Makes the watches let go since, and hands each armed one's descriptor to `watch`
    /// (which registers it for the wait); false if one could not be made or registered, or
    /// while the traffic is dense. `seen`: the uplink frames the worker has received so far.
    pub fn arm(&mut self, mut watch: impl FnMut(RawFd) -> bool, seen: u64) -> bool {
        if self.dense || self.make().is_err() {
            return false;
        }
        if std::mem::take(&mut self.fresh) {
            (self.seen, self.owed) = (seen, 0);
        }
        let mut came = 0;
        let mut ok = true;
        for w in self.watches.iter_mut() {
            let (fd, handed) = w.arm();
            came += handed;
            ok = ok && watch(fd);
        }
        let received = seen.wrapping_sub(self.seen);
        self.held = came + self.owed > received;
        self.owed = came.saturating_sub(received);
        self.seen = seen;
        ok
    }

    /// Between passes with nothing armed, the worker having moved `frames` since it last
    /// said, at TSC `now`: at the end of a window, whether the traffic is dense; if it is,
    /// lets the watches go.
    pub fn count(&mut self, now: u64, frames: u64) {
        self.window_frames += frames;
        let cycles = u128::from(now.wrapping_sub(self.window_start));
        if cycles * 1000 < u128::from(self.tsc_hz) * WINDOW.as_millis() {
            return;
        }
        // frames / (cycles / tsc_hz) >= RELEASE_RATE
        self.dense = u128::from(self.window_frames) * u128::from(self.tsc_hz) >= u128::from(RELEASE_RATE) * cycles;
        (self.window_start, self.window_frames) = (now, 0);
        if !self.dense {
            return;
        }
        while let Some(w) = self.watches.pop() {
            if let Err(e) = self.released.try_send(w) {
                self.watches.push(e.into_inner());
                return;
            }
        }
    }

    /// Whether the watches are hooked in now.
    #[cfg(test)]
    fn hooked(&self) -> bool {
        !self.watches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo` is interface 1 in every network namespace.
    const LO: u32 = 1;

    /// Watches on `lo` with a TSC of 1000 Hz (a window is 1000 cycles, the rate RELEASE_RATE
    /// frames per 1000), and the closer's end of their channel; None (the test is skipped)
    /// without root: a packet socket needs CAP_NET_RAW.
    fn on_lo() -> Option<(ArrivalWatches, Receiver<ArrivalWatch>)> {
        let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
        if !root {
            eprintln!("skipped: a packet socket needs CAP_NET_RAW (run as root)");
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(4);
        Some((ArrivalWatches::new(vec![LO], tx, 1000, 0).expect("a watch on lo"), rx))
    }

    #[test]
    fn let_go_while_the_traffic_is_dense_and_made_again_after() {
        let Some((mut w, rx)) = on_lo() else { return };
        assert!(w.hooked() && !w.dense());
        w.count(999, RELEASE_RATE);
        assert!(w.hooked(), "the window is not over");
        w.count(2000, 0);
        assert!(w.hooked() && !w.dense(), "RELEASE_RATE frames in two seconds: below the rate");
        w.count(3000, RELEASE_RATE);
        assert!(!w.hooked() && w.dense(), "a window at the rate: let go");
        assert_eq!(rx.try_iter().count(), 1, "handed to the closer");
        let mut fds = Vec::new();
        let mut register = |fd| {
            fds.push(fd);
            true
        };
        assert!(!w.arm(&mut register, 0), "no arming while the traffic is dense");
        assert!(!w.hooked());
        w.count(4000, RELEASE_RATE - 1);
        assert!(!w.dense(), "a quieter window");
        assert!(w.arm(&mut register, 0));
        assert!(w.hooked() && fds.len() == 1, "made again when the worker arms");
        assert!(!w.arm(|_| false, 0), "a descriptor that cannot be registered fails the arming");

        let (tx, rx) = crossbeam_channel::bounded(4);
        assert!(ArrivalWatches::new(vec![0x7fff_fff0], tx, 1000, 0).is_err(), "no such interface");
        assert_eq!(rx.try_iter().count(), 1, "the socket whose bind failed is closed by the closer too");
    }

    #[test]
    fn held_when_more_frames_came_than_the_worker_received() {
        let Some((mut w, _rx)) = on_lo() else { return };
        let register = |_| true;
        assert!(w.arm(register, 0));
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        // A datagram to this host crosses lo out and in: two frames. (Other traffic on lo
        // only adds to them; the "worker" counts below are far above it.)
        let datagram = || {
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").send_to(b"x", rx.local_addr().expect("addr")).expect("send");
            rx.recv(&mut [0u8; 4]).expect("the datagram");
        };
        datagram();
        assert!(w.arm(register, 0));
        assert!(w.held(), "frames came that the worker has not received");
        assert!(w.arm(register, 1_000_000));
        assert!(!w.held(), "it received them (and more) since");
        for _ in 0..50 {
            datagram();
        }
        assert!(w.arm(register, 1_000_001));
        assert!(w.held(), "100 frames came, one received: the buffer's drops count too");
        assert!(w.arm(register, 1_000_001));
        assert!(w.held(), "those not received are owed once more");
        // 50 received since: more than lo's own traffic in a moment, fewer than the 99 owed.
        assert!(w.arm(register, 1_000_051));
        assert!(!w.held(), "and then forgiven");
    }
}
