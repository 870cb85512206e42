//! The uplink's link as the control thread follows it: the state last seen, since when, how
//! many times it changed, and the port's errors. Pure bookkeeping (the caller reads the port
//! and says when), so it is unit-tested without DPDK.
//!
//! A port that fails to report its link keeps the state last seen (an error is not a link
//! change: acting on it would stop every guest for a driver hiccup); errors are counted and
//! the first of a run is reported.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};

use super::events::rfc3339;
use crate::rte::Link;

/// `RTE_ETH_SPEED_NUM_UNKNOWN`: the port does not know its speed (virtual ports).
const SPEED_UNKNOWN: u32 = u32::MAX;

/// How the switch learns of changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    /// The port's link-state-change interrupt wakes the control thread.
    Interrupt,
    /// The control thread reads the link on every round (every 20 ms at most).
    Polling,
}

impl Detection {
    pub fn name(self) -> &'static str {
        match self {
            Detection::Interrupt => "interrupt",
            Detection::Polling => "polling",
        }
    }
}

/// What one look at the port found.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    Same,
    /// The link went up or down (the new state is `UplinkLink::link`).
    Changed,
    /// The port could not say, after saying before: worth one line.
    FirstError(String),
    /// It still cannot.
    Error,
}

#[derive(Debug)]
pub struct UplinkLink {
    pub link: Link,
    pub since: SystemTime,
    pub changes: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub detection: Detection,
    /// The kernel interface whose carrier is read too (a port backed by one).
    pub kernel_iface: Option<String>,
    /// How long the link must stay up after coming back before it counts as up
    /// (`--uplink-up-delay`).
    pub up_delay: Duration,
    /// Since when the port has said up while the link still counts as down.
    up_since: Option<Instant>,
    failing: bool,
}

impl UplinkLink {
    /// The state read at start. A port that cannot say at start is taken as up, as it was
    /// before the switch followed links: stopping every guest because a driver has no link
    /// report would make such a port useless (the error is counted and shown).
    pub fn new(first: Result<Link, String>, detection: Detection, now: SystemTime) -> UplinkLink {
        let assumed = Link { up: true, speed_mbps: SPEED_UNKNOWN, full_duplex: true };
        let mut u = UplinkLink { link: assumed, since: now, changes: 0, errors: 0, last_error: None, detection, kernel_iface: None, up_delay: Duration::ZERO, up_since: None, failing: false };
        match first {
            Ok(l) => u.link = l,
            Err(e) => u.fail(e),
        }
        u
    }

    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.last_error = Some(e);
        self.failing = true;
    }

    /// Records one look at the port, at `now` (`mono`: the same moment on the monotonic
    /// clock, which times `up_delay`).
    pub fn observe(&mut self, r: Result<Link, String>, now: SystemTime, mono: Instant) -> Seen {
        match r {
            Err(e) => {
                let first = !self.failing;
                self.fail(e.clone());
                if first {
                    Seen::FirstError(e)
                } else {
                    Seen::Error
                }
            }
            Ok(l) => {
                self.failing = false;
                if !l.up {
                    self.up_since = None;
                } else if !self.link.up && !self.up_delay.is_zero() {
                    let since = *self.up_since.get_or_insert(mono);
                    if mono.duration_since(since) < self.up_delay {
                        return Seen::Same;
                    }
                    self.up_since = None;
                }
                if l.up == self.link.up {
                    // Speed or duplex may settle after the link came up: kept, not a change.
                    self.link = l;
                    return Seen::Same;
                }
                self.link = l;
                self.since = now;
                self.changes += 1;
                Seen::Changed
            }
        }
    }

    /// `link up (10000 Mb/s, full duplex)` or `link down`.
    pub fn describe(&self) -> String {
        if !self.link.up {
            return "link down".to_owned();
        }
        let speed = match self.link.speed_mbps {
            0 | SPEED_UNKNOWN => "speed unknown".to_owned(),
            s => format!("{s} Mb/s"),
        };
        format!("link up ({speed}, {} duplex)", if self.link.full_duplex { "full" } else { "half" })
    }

    pub fn state(&self) -> &'static str {
        if self.link.up {
            "up"
        } else {
            "down"
        }
    }

    /// The speed to report: None when the link is down or the port does not know it.
    pub fn speed(&self) -> Option<u32> {
        Some(self.link.speed_mbps).filter(|&s| self.link.up && s != 0 && s != SPEED_UNKNOWN)
    }

    /// For the stats document, the control socket and `uplink-show`.
    pub fn json(&self) -> Value {
        json!({
            "state": self.state(),
            "speed_mbps": self.speed(),
            "duplex": if self.link.up { Some(if self.link.full_duplex { "full" } else { "half" }) } else { None },
            "since": rfc3339(self.since),
            "changes": self.changes,
            "detection": self.detection.name(),
            "kernel_interface": self.kernel_iface,
            "up_delay_ms": self.up_delay.as_millis() as u64,
            "errors": self.errors,
            "last_error": self.last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn up(speed: u32) -> Result<Link, String> {
        Ok(Link { up: true, speed_mbps: speed, full_duplex: true })
    }

    #[test]
    fn changes_are_counted_once_and_errors_keep_the_state() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t = |s: u64| t0 + Duration::from_secs(s);
        let m0 = Instant::now();
        let mut u = UplinkLink::new(up(10_000), Detection::Polling, t0);
        let u_observe = |u: &mut UplinkLink, r, s| u.observe(r, t(s), m0 + Duration::from_secs(s));
        assert_eq!(u.describe(), "link up (10000 Mb/s, full duplex)");
        assert_eq!(u_observe(&mut u, up(10_000), 1), Seen::Same);
        assert_eq!(u_observe(&mut u, Ok(Link::default()), 2), Seen::Changed);
        assert_eq!((u.describe(), u.changes, u.since, u.speed()), ("link down".to_owned(), 1, t(2), None));
        assert_eq!(u_observe(&mut u, Ok(Link::default()), 3), Seen::Same);
        assert_eq!(u_observe(&mut u, Err("EIO".into()), 4), Seen::FirstError("EIO".into()));
        assert_eq!(u_observe(&mut u, Err("EIO".into()), 5), Seen::Error);
        assert_eq!((u.link.up, u.changes, u.errors), (false, 1, 2), "an error is not a change");
        assert_eq!(u_observe(&mut u, up(SPEED_UNKNOWN), 6), Seen::Changed);
        assert_eq!(u.describe(), "link up (speed unknown, full duplex)");
        assert_eq!(u_observe(&mut u, up(25_000), 7), Seen::Same, "speed settling is not a change");
        let j = u.json();
        assert_eq!((j["state"].as_str(), j["speed_mbps"].as_u64(), j["changes"].as_u64()), (Some("up"), Some(25_000), Some(2)));
        assert_eq!((j["errors"].as_u64(), j["last_error"].as_str(), j["detection"].as_str()), (Some(2), Some("EIO"), Some("polling")));
        assert_eq!(j["since"], "1970-01-01T00:16:46.000Z");
    }

    #[test]
    fn a_port_that_cannot_say_at_start_is_taken_as_up() {
        let mut u = UplinkLink::new(Err("ENOTSUP".into()), Detection::Interrupt, SystemTime::UNIX_EPOCH);
        assert_eq!((u.link.up, u.errors, u.changes), (true, 1, 0));
        assert_eq!(u.json()["speed_mbps"], Value::Null);
        let m = Instant::now();
        assert_eq!(u.observe(Err("ENOTSUP".into()), SystemTime::UNIX_EPOCH, m), Seen::Error, "the start's error was reported");
        assert_eq!(u.observe(Ok(Link::default()), SystemTime::UNIX_EPOCH, m), Seen::Changed);
        assert_eq!(u.json()["duplex"], Value::Null);
    }

    #[test]
    fn up_counts_only_after_the_delay_and_down_at_once() {
        let t = SystemTime::UNIX_EPOCH;
        let m0 = Instant::now();
        let ms = |n: u64| m0 + Duration::from_millis(n);
        let mut u = UplinkLink::new(up(1_000), Detection::Polling, t);
        u.up_delay = Duration::from_millis(500);
        assert_eq!(u.observe(Ok(Link::default()), t, ms(0)), Seen::Changed, "down at once");
        assert_eq!(u.observe(up(1_000), t, ms(100)), Seen::Same);
        assert_eq!(u.observe(up(1_000), t, ms(599)), Seen::Same);
        assert_eq!(u.observe(Ok(Link::default()), t, ms(600)), Seen::Same, "a flap restarts the wait");
        assert_eq!(u.observe(up(1_000), t, ms(700)), Seen::Same);
        assert_eq!(u.observe(up(1_000), t, ms(1_199)), Seen::Same);
        assert_eq!(u.observe(up(1_000), t, ms(1_200)), Seen::Changed);
        assert_eq!((u.link.up, u.changes), (true, 2));
    }
}
