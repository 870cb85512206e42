//! A worker's watches on the kernel interfaces its uplink reads (`rte::arrivals`), the wake-up
//! of an uplink without rx interrupts (net_af_packet, a bond over such members).
//!
//! A watch is a packet socket hooked into the interface's receive path, which costs the
//! kernel some work per arriving frame whether or not the worker blocks (about 4 % of what an
//! af_packet uplink carried at saturation here). So a worker that moved `RELEASE_RATE` frames
//! a second or more over a `WINDOW` lets its watches go: at that rate frames come closer
//! together than it would block between anyway. It makes them again the next time it arms
//! its wake-ups (a socket, two options and a bind each). Closing a packet socket
//! waits for an RCU grace period (milliseconds), which a worker must not: a thread of its own,
//! on the control thread's core, closes what the workers let go (`spawn_closer`).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::rte::arrivals::ArrivalWatch;

/// How long the worker's traffic is measured before it decides to let its watches go.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Frames a second (any direction) at which the watches go: frames 100 us apart, closer than
/// the gaps a worker blocks through (`idle::SPARSE_GAP`, 250 us).
pub const RELEASE_RATE: u64 = 10_000;

/// Watches let go, on their way to the closing thread.
pub type Released = Sender<ArrivalWatch>;

/// The thread that closes the watches workers let go; it ends once every worker has dropped
/// its `Released` (the channel holds a few; a worker whose send finds it full keeps the
/// watch until its next busy second).
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
}

impl ArrivalWatches {
    /// Watches on `ifaces`, made now so that an error shows at start-up. `tsc_hz`: the TSC's
    /// frequency; `now`: the TSC.
    pub fn new(ifaces: Vec<u32>, released: Released, tsc_hz: u64, now: u64) -> io::Result<ArrivalWatches> {
        let mut w = ArrivalWatches { watches: Vec::with_capacity(ifaces.len()), ifaces, released, tsc_hz, window_start: now, window_frames: 0 };
        w.make()?;
        Ok(w)
    }

    fn make(&mut self) -> io::Result<()> {
        while self.watches.len() < self.ifaces.len() {
            let w = ArrivalWatch::new(self.ifaces[self.watches.len()])?;
            self.watches.push(w);
        }
        Ok(())
    }

    /// Makes the watches let go since, and hands each armed one's descriptor to `watch`
    /// (which registers it for the wait); false if one could not be made or registered.
    pub fn arm(&mut self, mut watch: impl FnMut(RawFd) -> bool, now: u64) -> bool {
        if self.watches.len() < self.ifaces.len() {
            // A failure keeps what was made; the rest is tried at the next arming.
            if self.make().is_err() {
                return false;
            }
            (self.window_start, self.window_frames) = (now, 0);
        }
        self.watches.iter_mut().all(|w| watch(w.arm()))
    }

    /// Between passes with nothing armed, the worker having moved `frames` since it last
    /// said: at the end of a window at `RELEASE_RATE` or more, lets the watches go.
    pub fn release_if_busy(&mut self, now: u64, frames: u64) {
        if self.watches.is_empty() {
            return;
        }
        self.window_frames += frames;
        let cycles = u128::from(now.wrapping_sub(self.window_start));
        if cycles * 1000 < u128::from(self.tsc_hz) * WINDOW.as_millis() {
            return;
        }
        // frames / (cycles / tsc_hz) >= RELEASE_RATE
        let busy = u128::from(self.window_frames) * u128::from(self.tsc_hz) >= u128::from(RELEASE_RATE) * cycles;
        (self.window_start, self.window_frames) = (now, 0);
        if !busy {
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
    pub fn hooked(&self) -> bool {
        !self.watches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `lo` is interface 1 in every network namespace.
    const LO: u32 = 1;

    #[test]
    fn let_go_after_a_busy_window_and_made_again_at_arming() {
        if !root() {
            eprintln!("skipped: a packet socket needs CAP_NET_RAW (run as root)");
            return;
        }
        let (tx, rx) = crossbeam_channel::bounded(4);
        // A TSC of 1000 Hz: a window is 1000 cycles, the rate RELEASE_RATE frames per 1000.
        let mut w = ArrivalWatches::new(vec![LO], tx, 1000, 0).expect("a watch on lo");
        assert!(w.hooked());
        w.release_if_busy(999, RELEASE_RATE);
        assert!(w.hooked(), "the window is not over");
        w.release_if_busy(2000, 0);
        assert!(w.hooked(), "RELEASE_RATE frames in two seconds: below the rate");
        w.release_if_busy(3000, RELEASE_RATE);
        assert!(!w.hooked(), "a window at the rate: let go");
        assert_eq!(rx.try_iter().count(), 1, "handed to the closer");
        w.release_if_busy(9000, 0);

        let mut fds = Vec::new();
        let register = |fd| {
            fds.push(fd);
            true
        };
        assert!(w.arm(register, 10_000));
        assert!(w.hooked() && fds.len() == 1, "made again when the worker arms");
        w.release_if_busy(10_500, 5 * RELEASE_RATE);
        assert!(w.hooked(), "the new watch's window starts when it was made");
        assert!(!w.arm(|_| false, 10_600), "a descriptor that cannot be registered fails the arming");
    }

    /// Whether the tests run with the effective user id 0.
    fn root() -> bool {
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
    }
}
