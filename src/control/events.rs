//! What the event stream of the control socket carries (`events.subscribe`, see
//! `control::socket`): link changes of the uplink and of guests, guests added and removed.
//! Built on the control thread as things happen; the control loop hands them to the socket
//! server after each round.
//!
//! Each event is the `params` of one `{"jsonrpc":"2.0","method":"event","params":{...}}`
//! line: `{"time": RFC 3339 UTC, "event": KIND, ...}` with KIND one of
//! - `uplink-link`: `state` ("up" or "down"), `speed_mbps` (null if unknown), `duplex`;
//! - `guest-link`: `guest`, `state` (a vhost-user client connected and its driver is ready,
//!   or it went);
//! - `guest-added`, `guest-removed`: `guest` (control socket, reload or SIGHUP).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// The notification method name.
pub const METHOD: &str = "event";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    UplinkLink { up: bool, speed_mbps: Option<u32>, full_duplex: bool },
    GuestLink { guest: String, up: bool },
    GuestAdded { guest: String },
    GuestRemoved { guest: String },
}

fn state(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

impl Event {
    /// The notification's params, stamped with `at`.
    pub fn params(&self, at: SystemTime) -> Value {
        let time = rfc3339(at);
        match self {
            Event::UplinkLink { up, speed_mbps, full_duplex } => json!({
                "time": time,
                "event": "uplink-link",
                "state": state(*up),
                "speed_mbps": speed_mbps,
                "duplex": if *up { Some(if *full_duplex { "full" } else { "half" }) } else { None },
            }),
            Event::GuestLink { guest, up } => json!({ "time": time, "event": "guest-link", "guest": guest, "state": state(*up) }),
            Event::GuestAdded { guest } => json!({ "time": time, "event": "guest-added", "guest": guest }),
            Event::GuestRemoved { guest } => json!({ "time": time, "event": "guest-removed", "guest": guest }),
        }
    }
}

/// `2026-12-01T18:40:05.123Z`: UTC, milliseconds (times before 1970 read as 1970).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, day) = civil_date(days);
    format!("{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rest / 3600, rest / 60 % 60, rest % 60, d.subsec_millis())
}

/// (year, month, day) of the proleptic Gregorian calendar, `days` after 1970-01-01: counted
/// in 400-year eras of 146,097 days from 0000-03-01, so that the leap day ends each year.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of the era, 0..146096
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // year of the era
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(1_000_000_000, 999)), "2001-09-09T01:46:40.999Z");
        assert_eq!(rfc3339(at(1_709_164_799, 0)), "2024-02-28T23:59:59.000Z");
        assert_eq!(rfc3339(at(1_735_689_600, 0)), "2025-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(4_107_542_400, 0)), "2100-03-01T00:00:00.000Z", "2100 is not a leap year");
    }

    #[test]
    fn params_per_kind() {
        let t = at(0, 0);
        let down = Event::UplinkLink { up: false, speed_mbps: None, full_duplex: false }.params(t);
        assert_eq!(down, json!({"time": "1970-01-01T00:00:00.000Z", "event": "uplink-link", "state": "down", "speed_mbps": null, "duplex": null}));
        let up = Event::UplinkLink { up: true, speed_mbps: Some(10_000), full_duplex: true }.params(t);
        assert_eq!((up["state"].as_str(), up["speed_mbps"].as_u64(), up["duplex"].as_str()), (Some("up"), Some(10_000), Some("full")));
        assert_eq!(Event::GuestLink { guest: "vm1".into(), up: true }.params(t)["state"], "up");
        assert_eq!(Event::GuestAdded { guest: "vm3".into() }.params(t)["event"], "guest-added");
        assert_eq!(Event::GuestRemoved { guest: "vm3".into() }.params(t)["guest"], "vm3");
    }
}
