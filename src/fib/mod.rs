//! The forwarding table: which guest owns which MAC.
//!
//! Role: answer "who owns this destination?" and "may this guest send from this source?"
//! for every frame, in O(1) and without allocating, however many guests there are.
//!
//! Invariants: a [`MacTable`] is immutable once built. Every MAC maps to exactly one guest,
//! every MAC is unicast and non-zero, and a guest keeps its `GuestId` across tables (ids of
//! removed guests are holes until reused). A change is a new table, published to the
//! workers through `view::Handover` like every other change.
//!
//! Threads: the control thread builds tables with [`MacTableBuilder`] (which allocates);
//! workers read it inside the published `view::Tables` (an `Arc`) with no locks, since
//! nothing mutates it.

mod builder;
mod table;

pub use builder::MacTableBuilder;
pub(crate) use table::key;
pub use table::{GuestEntry, MacTable};

use crate::wire::MacAddr;

/// A guest's id: stable for the guest's whole life on the switch, below `MAX_GUESTS`, and
/// the index of every per-guest array (tables, stats cells, vhost links).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct GuestId(pub u16);

impl GuestId {
    #[inline]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// Why a guest could not be added to a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    #[error("MAC {mac} is claimed by both guest {first:?} and guest {second:?}")]
    DuplicateMac {
        mac: MacAddr,
        first: String,
        second: String,
    },
    /// Multicast, broadcast and all-zero addresses cannot identify one station.
    #[error("guest {guest:?}: {mac} is not a unicast station address")]
    NotUnicast { guest: String, mac: MacAddr },
    #[error("guest {guest:?} has no MAC address")]
    NoMac { guest: String },
    #[error("more than {} guests", crate::config::MAX_GUESTS)]
    TooManyGuests,
    #[error("guest id {} is held by guest {first:?}, so guest {second:?} cannot take it", id.0)]
    IdTaken { id: GuestId, first: String, second: String },
}
