//! Frames the switch itself sends on the uplink (MAC re-announcements, hairpin self-test
//! probes), counted apart from guest traffic, and the self-test's verdict as reported.

use serde::ser::{Serialize, SerializeMap, Serializer};

/// Frames the switch originated. The control thread counts what it queued and what it could
/// not; the workers count what they sent and what was still queued when they stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct OriginStats {
    /// RARP announcements queued (one per MAC per round).
    pub announces: u64,
    /// Hairpin probes queued (two per check).
    pub probes: u64,
    /// Handed to the uplink by the workers.
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Not queued: the ring to the worker was full.
    pub dropped_ring_full: u64,
    /// Not built: the packet pool had no buffer.
    pub dropped_no_buffer: u64,
    /// Still queued (in the ring or a worker's hands) when the workers stopped: freed.
    pub dropped_at_stop: u64,
}

impl OriginStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_ring_full + self.dropped_no_buffer + self.dropped_at_stop
    }
}

/// What the last completed VEPA hairpin self-test found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hairpin {
    /// No check completed yet (none asked, `--no-hairpin-check`, or one under way).
    #[default]
    Unknown,
    /// The probe addressed to our own port came back.
    Reflects,
    /// It did not, within the deadline.
    DoesNotReflect,
}

impl Hairpin {
    /// Stable key, for JSON and metrics.
    pub fn key(self) -> &'static str {
        match self {
            Hairpin::Unknown => "unknown",
            Hairpin::Reflects => "reflects",
            Hairpin::DoesNotReflect => "does_not_reflect",
        }
    }

    /// What it means, for people.
    pub fn message(self) -> &'static str {
        match self {
            Hairpin::Unknown => "unknown",
            Hairpin::Reflects => "external switch reflects (hairpin on)",
            Hairpin::DoesNotReflect => "does not reflect: VEPA guests cannot reach each other through it",
        }
    }

    pub const ALL: [Hairpin; 3] = [Hairpin::Unknown, Hairpin::Reflects, Hairpin::DoesNotReflect];
}

/// `{"state": "reflects", "message": "external switch reflects (hairpin on)"}`
impl Serialize for Hairpin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("state", self.key())?;
        map.serialize_entry("message", self.message())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_serialize_with_key_and_message() {
        assert_eq!(
            serde_json::to_value(Hairpin::DoesNotReflect).expect("json"),
            serde_json::json!({"state": "does_not_reflect", "message": "does not reflect: VEPA guests cannot reach each other through it"})
        );
        let keys: Vec<&str> = Hairpin::ALL.map(Hairpin::key).to_vec();
        assert_eq!(keys, ["unknown", "reflects", "does_not_reflect"]);
    }
}
