//! A point-in-time sum of all shards, for logs, JSON export and tests.

use std::fmt::Write as _;

use super::{DropCounts, DropReason, Hairpin, OriginStats, PortCounters};

/// One guest's totals.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GuestStats {
    /// The guest's id (not exported: names are what users know).
    #[serde(skip)]
    pub id: crate::fib::GuestId,
    pub name: String,
    #[serde(flatten)]
    pub counters: PortCounters,
    /// Not a counter: the control thread fills it from vhost state; false until then.
    pub link_up: bool,
}

/// One worker's loop accounting, in TSC cycles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerStats {
    pub busy_cycles: u64,
    /// Polling that found nothing.
    pub idle_cycles: u64,
    /// Asleep (idle sleep): not polling at all. Includes `blocked_cycles`.
    pub sleep_cycles: u64,
    /// The part of `sleep_cycles` spent blocked until an event (`--idle-block-after`).
    pub blocked_cycles: u64,
    /// Blocks begun: one more than the `wakes` while the worker blocks.
    pub blocks: u64,
    /// How the worker's blocks ended.
    pub wakes: Wakes,
    pub frames: u64,
    /// Copy calls into guests and the frames given to them.
    pub enqueue_calls: u64,
    pub enqueue_frames: u64,
}

impl WorkerStats {
    /// `cycles` as a share of the worker's time since start (busy, idle and asleep), in
    /// percent; 0 before it has counted any.
    pub fn percent_of_time(&self, cycles: u64) -> f64 {
        let total = self.busy_cycles + self.idle_cycles + self.sleep_cycles;
        if total == 0 {
            0.0
        } else {
            100.0 * cycles as f64 / total as f64
        }
    }
}

/// Why a blocked worker woke, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Wakes {
    /// A guest kicked: it posted frames to send.
    pub kick: u64,
    /// An uplink rx queue's interrupt: frames arrived.
    pub uplink: u64,
    /// Its doorbell: a change, a peer worker's frames, a frame of the switch's own, the stop.
    pub doorbell: u64,
    /// Nothing within the block's time limit.
    pub timeout: u64,
}

impl Wakes {
    pub fn get(&self, why: Wake) -> u64 {
        match why {
            Wake::Kick => self.kick,
            Wake::Uplink => self.uplink,
            Wake::Doorbell => self.doorbell,
            Wake::Timeout => self.timeout,
        }
    }
}

/// Why a block ended (what `Wakes` counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    Kick,
    /// An uplink rx interrupt, or a frame at a watched kernel interface (net_af_packet).
    Uplink,
    Doorbell,
    Timeout,
}

impl Wake {
    pub const ALL: [Wake; 4] = [Wake::Kick, Wake::Uplink, Wake::Doorbell, Wake::Timeout];

    /// As in the JSON (`Wakes`' fields) and the metrics' `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            Wake::Kick => "kick",
            Wake::Uplink => "uplink",
            Wake::Doorbell => "doorbell",
            Wake::Timeout => "timeout",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct StatsSnapshot {
    pub uplink: PortCounters,
    /// In `GuestId` order.
    pub guests: Vec<GuestStats>,
    /// In shard creation order.
    pub workers: Vec<WorkerStats>,
    /// Frames the switch itself sent on the uplink (not counted in `uplink`).
    pub originated: OriginStats,
    /// Not a counter: the last VEPA hairpin self-test's verdict, filled in by the control
    /// thread.
    pub hairpin: Hairpin,
    /// Not a counter: the uplink's link as the control thread follows it (`state`,
    /// `changes`, ...), filled in by it; absent until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uplink_link: Option<serde_json::Value>,
}

impl StatsSnapshot {
    pub fn guest(&self, name: &str) -> Option<&GuestStats> {
        self.guests.iter().find(|g| g.name == name)
    }

    /// Drops of every port, by reason.
    pub fn drops(&self) -> DropCounts {
        self.guests
            .iter()
            .fold(self.uplink.drops, |acc, g| acc + g.counters.drops)
    }

    /// One line for periodic logs, e.g.
    /// `uplink rx 10 tx 8 | vm1 rx 4 tx 5 | vm2 rx 4 tx 5 | drops 3: runt 1, unknown_dest 2`.
    /// Packet counts only; only reasons with drops are listed.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "uplink rx {} tx {}",
            self.uplink.rx_packets, self.uplink.tx_packets
        );
        for g in &self.guests {
            // Writing into a String cannot fail.
            let _ = write!(
                line,
                " | {} rx {} tx {}",
                g.name, g.counters.rx_packets, g.counters.tx_packets
            );
        }
        let drops = self.drops();
        let _ = write!(line, " | drops {}", drops.total());
        let nonzero: Vec<String> = DropReason::ALL
            .into_iter()
            .filter(|&r| drops[r] != 0)
            .map(|r| format!("{} {}", r.name(), drops[r]))
            .collect();
        if !nonzero.is_empty() {
            let _ = write!(line, ": {}", nonzero.join(", "));
        }
        if self.originated.tx_packets != 0 || self.originated.dropped() != 0 {
            let _ = write!(line, " | originated {} (dropped {})", self.originated.tx_packets, self.originated.dropped());
        }
        let _ = write!(line, " | hairpin {}", self.hairpin.key());
        if let Some(l) = &self.uplink_link {
            let _ = write!(line, " | uplink link {} ({} changes)", l["state"].as_str().unwrap_or("?"), l["changes"].as_u64().unwrap_or(0));
        }
        line
    }

    pub fn to_json_pretty(&self) -> String {
        // Only plain structs, integers and strings: serialisation cannot fail, but the
        // fallback keeps this panic-free and still valid JSON.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StatsSnapshot {
        let mut uplink = PortCounters {
            rx_packets: 10,
            tx_packets: 8,
            ..Default::default()
        };
        uplink.drops.0[DropReason::UnknownDest.index()] = 2;
        let mut vm1 = PortCounters {
            rx_packets: 4,
            tx_packets: 5,
            rx_bytes: 256,
            ..Default::default()
        };
        vm1.drops.0[DropReason::Runt.index()] = 1;
        StatsSnapshot {
            uplink,
            guests: vec![
                GuestStats {
                    id: Default::default(),
                    name: "vm1".into(),
                    counters: vm1,
                    link_up: true,
                },
                GuestStats {
                    id: Default::default(),
                    name: "vm2".into(),
                    counters: PortCounters {
                        rx_packets: 4,
                        tx_packets: 5,
                        ..Default::default()
                    },
                    link_up: false,
                },
            ],
            workers: vec![WorkerStats {
                busy_cycles: 100,
                idle_cycles: 900,
                sleep_cycles: 0,
                frames: 18,
                ..WorkerStats::default()
            }],
            originated: OriginStats::default(),
            hairpin: Hairpin::Reflects,
            uplink_link: None,
        }
    }

    #[test]
    fn summary_line_lists_ports_and_nonzero_drops() {
        assert_eq!(
            sample().summary_line(),
            "uplink rx 10 tx 8 | vm1 rx 4 tx 5 | vm2 rx 4 tx 5 | drops 3: runt 1, unknown_dest 2 | hairpin reflects"
        );
        let quiet = StatsSnapshot {
            uplink: PortCounters::default(),
            guests: vec![],
            workers: vec![],
            originated: OriginStats { tx_packets: 10, dropped_ring_full: 1, ..OriginStats::default() },
            hairpin: Hairpin::Unknown,
            uplink_link: None,
        };
        assert_eq!(quiet.summary_line(), "uplink rx 0 tx 0 | drops 0 | originated 10 (dropped 1) | hairpin unknown");
        let down = StatsSnapshot { uplink_link: Some(serde_json::json!({"state": "down", "changes": 3})), ..quiet };
        assert_eq!(down.summary_line(), "uplink rx 0 tx 0 | drops 0 | originated 10 (dropped 1) | hairpin unknown | uplink link down (3 changes)");
    }

    #[test]
    fn json_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&sample().to_json_pretty()).expect("valid JSON");
        let vm1 = &v["guests"][0];
        assert_eq!(vm1["name"], "vm1");
        assert_eq!(
            vm1["rx_bytes"], 256,
            "counters are flattened into the guest object"
        );
        assert_eq!(vm1["link_up"], true);
        assert_eq!(vm1["drops"]["runt"], 1);
        for port in [&v["uplink"], vm1, &v["guests"][1]] {
            let drops = port["drops"].as_object().expect("drops is an object");
            let keys: Vec<&str> = drops.keys().map(String::as_str).collect();
            let mut want = DropReason::ALL.map(DropReason::name).to_vec();
            want.sort_unstable();
            let mut keys_sorted = keys.clone();
            keys_sorted.sort_unstable();
            assert_eq!(keys_sorted, want, "every reason present");
            for key in ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "stalls"] {
                assert!(port[key].is_u64(), "{key} present");
            }
        }
        assert_eq!(v["uplink"]["drops"]["unknown_dest"], 2);
        assert_eq!(
            v["workers"][0],
            serde_json::json!({"busy_cycles": 100, "idle_cycles": 900, "sleep_cycles": 0, "blocked_cycles": 0, "blocks": 0,
                "wakes": {"kick": 0, "uplink": 0, "doorbell": 0, "timeout": 0}, "frames": 18, "enqueue_calls": 0, "enqueue_frames": 0})
        );
        assert_eq!(v["hairpin"]["state"], "reflects");
        assert_eq!(v["originated"]["tx_packets"], 0);
    }

    #[test]
    fn lookup_by_name() {
        let s = sample();
        assert_eq!(s.guest("vm2").map(|g| g.counters.tx_packets), Some(5));
        assert!(s.guest("vm9").is_none());
        assert_eq!(s.drops().total(), 3);
    }
}
