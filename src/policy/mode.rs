//! The vocabulary of the policy table: modes, cast kinds, frame origins and egress verdicts.

use std::fmt;
use std::str::FromStr;

use crate::wire::MacAddr;

/// A guest's forwarding mode, named as in `ip link add ... type macvlan mode NAME`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Mode {
    /// Everything goes to the uplink; guests reach each other only through an external
    /// switch that reflects frames (802.1Qbg VEPA, "hairpin").
    #[default]
    Vepa,
    /// Like VEPA, but no guest traffic reaches this guest even when reflected.
    Private,
    /// Guests in bridge mode are switched locally among themselves.
    Bridge,
    /// One guest owns the whole port: it sees everything on it and may send from any MAC.
    Passthru,
    /// VEPA, plus a copy of every frame from the uplink whose *source* MAC is in the guest's
    /// `sources` list (Linux receives by source only in this mode; see `table.rs`).
    Source,
}

impl Mode {
    /// Its position in [`Mode::ALL`], for tables indexed by mode.
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Every mode, in the order error messages list them.
    pub const ALL: [Mode; 5] = [
        Mode::Vepa,
        Mode::Private,
        Mode::Bridge,
        Mode::Passthru,
        Mode::Source,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Vepa => "vepa",
            Mode::Private => "private",
            Mode::Bridge => "bridge",
            Mode::Passthru => "passthru",
            Mode::Source => "source",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A mode name that is none of [`Mode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode {0:?} (accepted: vepa, private, bridge, passthru, source)")]
pub struct ModeParseError(pub String);

impl FromStr for Mode {
    type Err = ModeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ModeParseError(s.to_owned()))
    }
}

/// Whether a frame goes to one station or to a group. Broadcast is a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cast {
    Unicast,
    Multicast,
}

impl Cast {
    #[inline]
    pub fn of(dst: &MacAddr) -> Cast {
        if dst.is_multicast() {
            Cast::Multicast
        } else {
            Cast::Unicast
        }
    }
}

/// Where the source MAC of a frame received from the uplink comes from, relative to the
/// guest being considered for delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Not a guest of this switch.
    External,
    /// Another guest of this switch, in the given mode: the frame was reflected.
    Sibling(Mode),
    /// The guest under consideration sent it: its own frame reflected back.
    Itself,
}

/// Where a frame sent by a guest goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Egress {
    Uplink,
    /// Switched to sibling guest(s) only; never seen on the wire.
    Local,
    /// Sent to the uplink and also copied to the siblings `deliver_local` allows.
    UplinkAndLocal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
            let json = serde_json::to_string(&m).expect("serialize");
            assert_eq!(json, format!("\"{m}\""));
        }
        assert_eq!(Mode::default(), Mode::Vepa);
    }

    #[test]
    fn unknown_mode_lists_the_accepted_ones() {
        let err = "VEPA".parse::<Mode>().expect_err("names are lowercase");
        assert_eq!(
            err.to_string(),
            "unknown mode \"VEPA\" (accepted: vepa, private, bridge, passthru, source)"
        );
    }

    #[test]
    fn broadcast_is_multicast() {
        assert_eq!(Cast::of(&MacAddr::BROADCAST), Cast::Multicast);
        assert_eq!(
            Cast::of(&MacAddr::new([0x33, 0x33, 0, 0, 0, 1])),
            Cast::Multicast
        );
        assert_eq!(
            Cast::of(&MacAddr::new([0x52, 0x54, 0, 0, 0, 1])),
            Cast::Unicast
        );
    }
}
