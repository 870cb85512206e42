//! Zero-copy views of Ethernet frames and the MAC address type.
//!
//! Role: give the rest of the crate typed access to frame headers without copying them out of
//! the packet buffer (smoltcp style: a view wraps any `T: AsRef<[u8]>`, checked once on
//! construction, then its accessors cannot fail).
//!
//! Invariants: a view built with `new_checked` always covers at least its header, so the
//! accessors index without further checks. Nothing here allocates or logs.
//!
//! Threads: any. The datapath workers use it per frame; config and fib use [`MacAddr`].

pub mod announce;
mod ethernet;
pub mod flow;
mod mac;
pub mod vlan;
pub mod probe;

pub use ethernet::{ethertype, EthernetFrame, ETHER_CRC_LEN, ETHER_HDR_LEN, VLAN_TAG_LEN};
pub use mac::{MacAddr, MacParseError, MacParseReason};

/// A buffer too short for the header a view needs.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum WireError {
    #[error("{layer} header truncated: need {need} bytes, have {have}")]
    Truncated {
        layer: &'static str,
        need: usize,
        have: usize,
    },
}
