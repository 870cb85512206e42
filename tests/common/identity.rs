//! The counters' identities (defined in the switch's `stats::reason` and README): per
//! direction, what entered equals what went on plus what was dropped, and every copy made for
//! a guest was delivered or dropped. Checked on a stats JSON: the export at exit, or the
//! control socket's `stats` reply.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::Ctl;

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no counter {key} in {v}"))
}

/// The sum of a drops map (`rx_drops`, `tx_drops`, `drops`).
pub fn drop_sum(v: &Value, key: &str) -> u64 {
    v[key].as_object().unwrap_or_else(|| panic!("no {key} map in {v}")).values().map(|x| x.as_u64().unwrap_or(0)).sum()
}

/// Every identity that does not hold, said with its numbers (empty when all hold).
pub fn identity_errors(v: &Value) -> Vec<String> {
    let up = &v["uplink"];
    let guests = v["guests"].as_array().unwrap_or_else(|| panic!("no guests in {v}"));
    let mut errors = Vec::new();
    let mut check = |what: String, left: u64, right: u64| {
        if left != right {
            errors.push(format!("{what}: {left} != {right}"));
        }
    };
    check(
        "uplink rx_packets = forwarded + rx_drops".into(),
        n(up, "rx_packets"),
        n(up, "forwarded") + drop_sum(up, "rx_drops"),
    );
    let mut copies = n(up, "copies");
    let (mut taken, mut to_uplink) = (0, 0);
    for g in guests {
        let name = g["name"].as_str().unwrap_or("?");
        check(
            format!("{name} rx_packets = forwarded + rx_drops"),
            n(g, "rx_packets"),
            n(g, "forwarded") + drop_sum(g, "rx_drops"),
        );
        check(format!("{name} drops = rx_drops + tx_drops"), drop_sum(g, "drops"), drop_sum(g, "rx_drops") + drop_sum(g, "tx_drops"));
        copies += n(g, "copies");
        taken += n(g, "tx_packets") + drop_sum(g, "tx_drops");
        to_uplink += n(g, "forwarded") - n(g, "local");
    }
    check("copies made = copies delivered + copies dropped".into(), copies, taken);
    check(
        "guests' frames for the uplink = uplink tx_packets + tx_drops".into(),
        to_uplink,
        n(up, "tx_packets") + drop_sum(up, "tx_drops"),
    );
    check("uplink local".into(), n(up, "local"), 0);
    errors
}

pub fn assert_identities(v: &Value, when: &str) {
    let errors = identity_errors(v);
    assert!(errors.is_empty(), "{when}: {}\n{v:#}", errors.join("; "));
}

/// Polls the control socket's `stats` until `settled` says the load has all arrived and the
/// identities hold (a frame in flight between workers may make them miss for an instant);
/// returns that reply. Fails with the last reply at the deadline.
pub fn wait_settled(ctl: &Ctl, timeout: Duration, settled: impl Fn(&Value) -> bool) -> Value {
    wait_stats(ctl, timeout, |v| settled(v) && identity_errors(v).is_empty())
}

/// Polls the control socket's `stats` until `done` holds; returns that reply. Fails with the
/// last reply (and which identities miss) at the deadline.
pub fn wait_stats(ctl: &Ctl, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = ctl.json(&["stats"]);
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "counters did not settle ({:?}):\n{v:#}", identity_errors(&v));
        std::thread::sleep(Duration::from_millis(20));
    }
}
