//! 48-bit IEEE MAC addresses: classification, text form and serialisation.
//!
//! The text form is six two-digit hex octets separated by one consistent separator (`:` or
//! `-`), printed lowercase with `:`. Parsing is strict on purpose: a config typo such as a
//! five-octet address must fail loudly instead of being padded into some other station.

use std::fmt;
use std::str::FromStr;

/// A MAC address, most significant octet first (wire order).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    pub const fn new(o: [u8; 6]) -> Self {
        MacAddr(o)
    }

    /// The I/G (group) bit: set for multicast, and therefore for broadcast too.
    #[inline]
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    #[inline]
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    #[inline]
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast()
    }

    /// An IEEE 802.1D reserved group address, 01:80:c2:00:00:00 to 0f (PAUSE, LACP, STP,
    /// LLDP, 802.1X...): link-local, for the device at the other end of the wire only.
    /// Bridges never forward them, and neither does the switch to its guests.
    #[inline]
    pub fn is_link_local_group(&self) -> bool {
        let [a, b, c, d, e, f] = self.0;
        [a, b, c, d, e] == [0x01, 0x80, 0xc2, 0x00, 0x00] && f <= 0x0f
    }

    #[inline]
    pub fn is_zero(&self) -> bool {
        *self == Self::ZERO
    }

    /// The U/L bit: set for addresses not assigned by an OUI owner (e.g. made-up VM MACs).
    #[inline]
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    #[inline]
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The six octets in the low 48 bits: a key that hashes as one integer.
    #[inline]
    pub fn as_u64(&self) -> u64 {
        let [a, b, c, d, e, f] = self.0;
        u64::from_be_bytes([0, 0, a, b, c, d, e, f])
    }

    /// The address in the first six bytes of `b`, or `None` when `b` is shorter.
    #[inline]
    pub fn from_slice(b: &[u8]) -> Option<MacAddr> {
        let octets: [u8; 6] = b.get(..6)?.try_into().ok()?;
        Some(MacAddr(octets))
    }
}

/// What is wrong with a MAC address text, without the text itself (see [`MacParseError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacParseReason {
    #[error("expected six octets separated by ':' or '-', found {0} group(s)")]
    OctetCount(usize),
    #[error("octet {index} ({text:?}) is not two hex digits")]
    BadOctet { index: usize, text: String },
    #[error("mixes ':' and '-' separators")]
    MixedSeparators,
}

/// A MAC address text that did not parse; the message echoes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {input:?}: {reason}")]
pub struct MacParseError {
    pub input: String,
    pub reason: MacParseReason,
}

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason| MacParseError {
            input: s.to_owned(),
            reason,
        };
        if s.contains(':') && s.contains('-') {
            return Err(fail(MacParseReason::MixedSeparators));
        }
        let groups: Vec<&str> = s.split([':', '-']).collect();
        if groups.len() != 6 {
            return Err(fail(MacParseReason::OctetCount(groups.len())));
        }
        let mut octets = [0u8; 6];
        for (index, (slot, text)) in octets.iter_mut().zip(&groups).enumerate() {
            // from_str_radix alone would accept "+f" and single digits; demand exactly two.
            let two_hex = text.len() == 2 && text.bytes().all(|b| b.is_ascii_hexdigit());
            match u8::from_str_radix(text, 16) {
                Ok(v) if two_hex => *slot = v,
                _ => {
                    return Err(fail(MacParseReason::BadOctet {
                        index,
                        text: (*text).to_owned(),
                    }))
                }
            }
        }
        Ok(MacAddr(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("fixture MAC parses")
    }

    #[test]
    fn parses_both_separators_and_prints_lowercase() {
        let want = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(mac("52:54:00:AB:cd:EF"), want);
        assert_eq!(mac("52-54-00-ab-cd-ef"), want);
        assert_eq!(want.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(format!("{want:?}"), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn parse_errors_name_the_problem_and_echo_input() {
        let cases = [
            (
                "52:54:00:00:00",
                "invalid MAC address \"52:54:00:00:00\": expected six octets separated by ':' or '-', found 5 group(s)",
            ),
            (
                "52:54:00:00:00:01:02",
                "invalid MAC address \"52:54:00:00:00:01:02\": expected six octets separated by ':' or '-', found 7 group(s)",
            ),
            (
                "52:54:0:00:00:01",
                "invalid MAC address \"52:54:0:00:00:01\": octet 2 (\"0\") is not two hex digits",
            ),
            (
                "52:54:00:00:00:+1",
                "invalid MAC address \"52:54:00:00:00:+1\": octet 5 (\"+1\") is not two hex digits",
            ),
            (
                "52:54:00:zz:00:01",
                "invalid MAC address \"52:54:00:zz:00:01\": octet 3 (\"zz\") is not two hex digits",
            ),
            (
                "52:54-00:00:00:01",
                "invalid MAC address \"52:54-00:00:00:01\": mixes ':' and '-' separators",
            ),
            (
                "",
                "invalid MAC address \"\": expected six octets separated by ':' or '-', found 1 group(s)",
            ),
        ];
        for (input, msg) in cases {
            let err = input.parse::<MacAddr>().expect_err(input);
            assert_eq!(err.to_string(), msg);
            assert_eq!(err.input, input);
        }
    }

    #[test]
    fn classification() {
        let uni = mac("52:54:00:00:00:01");
        assert!(uni.is_unicast() && !uni.is_multicast() && !uni.is_broadcast());
        assert!(uni.is_locally_administered());
        assert!(!mac("00:1b:21:00:00:01").is_locally_administered());

        let mcast = mac("01:00:5e:00:00:01");
        assert!(mcast.is_multicast() && !mcast.is_unicast() && !mcast.is_broadcast());

        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(MacAddr::ZERO.is_zero() && MacAddr::ZERO.is_unicast());
        assert_eq!(MacAddr::default(), MacAddr::ZERO);
    }

    #[test]
    fn from_slice_takes_the_first_six_bytes() {
        let bytes = [1, 2, 3, 4, 5, 6, 7];
        assert_eq!(
            MacAddr::from_slice(&bytes),
            Some(MacAddr::new([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(MacAddr::from_slice(&bytes[..5]), None);
        assert_eq!(MacAddr::new([9; 6]).octets(), [9; 6]);
    }

    #[test]
    fn serializes_as_text() {
        let json = serde_json::to_string(&mac("52:54:00:00:00:0a")).expect("serialize");
        assert_eq!(json, "\"52:54:00:00:00:0a\"");
    }
}
