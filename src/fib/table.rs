//! The immutable MAC -> guest snapshot the workers read.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::{FibError, GuestId, MacTableBuilder};
use crate::config::{Config, GuestConfig};
use crate::policy::Mode;
use crate::wire::MacAddr;

/// What the datapath needs to know about one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEntry {
    pub id: GuestId,
    pub name: Box<str>,
    /// Never empty; the first is the primary.
    pub macs: Box<[MacAddr]>,
    pub mode: Mode,
    /// Frames longer than this (header included, CRC excluded) are dropped as oversize.
    pub max_frame_len: u32,
    /// Its 802.1Q VLAN id on the uplink; 0: untagged.
    pub vlan: u16,
}

/// MAC -> guest, read-only. Build with [`MacTableBuilder`] or [`MacTable::from_config`].
#[derive(Debug, Clone)]
pub struct MacTable {
    /// Keyed by the MAC packed into a u64: hashing one integer with Fx is a multiply and a
    /// rotate, cheaper than feeding six bytes (plus a length) through `Hash for [u8; 6]`.
    by_mac: HashMap<u64, GuestId, FxBuildHasher>,
    /// Indexed by id; None for an id not in use.
    guests: Box<[Option<GuestEntry>]>,
    epoch: u64,
}

/// The six octets in the low 48 bits and the VLAN id above them; distinct (VLAN, MAC) pairs
/// give distinct keys, and VLAN 0 (untagged) gives the MAC alone. The top 4 bits are never
/// set (a VLAN id is below 4096).
#[inline(always)]
pub(crate) fn key(vlan: u16, mac: &MacAddr) -> u64 {
    let [a, b, c, d, e, f] = mac.0;
    let [h, l] = vlan.to_be_bytes();
    u64::from_be_bytes([h, l, a, b, c, d, e, f])
}

impl MacTable {
    pub(super) fn from_parts(
        by_mac: HashMap<u64, GuestId, FxBuildHasher>,
        guests: Vec<Option<GuestEntry>>,
        epoch: u64,
    ) -> Self {
        MacTable {
            by_mac,
            guests: guests.into_boxed_slice(),
            epoch,
        }
    }

    /// The untagged guest owning `mac`, if any. O(1), no allocation.
    #[inline]
    pub fn lookup(&self, mac: &MacAddr) -> Option<GuestId> {
        self.lookup_in(0, mac)
    }

    /// The guest owning `mac` in VLAN `vlan` (0: untagged), if any. O(1), no allocation.
    #[inline]
    pub fn lookup_in(&self, vlan: u16, mac: &MacAddr) -> Option<GuestId> {
        self.by_mac.get(&key(vlan, mac)).copied()
    }

    /// Anti-spoofing: may guest `id` send frames with source `mac`?
    #[inline]
    pub fn owns(&self, id: GuestId, mac: &MacAddr) -> bool {
        self.get(id).is_some_and(|e| self.lookup_in(e.vlan, mac) == Some(id))
    }

    /// # Panics
    /// If no guest has `id` in this table. Workers only ask for ids this table returned or
    /// that the same publication's delivery map lists; others use [`MacTable::get`].
    #[inline]
    pub fn guest(&self, id: GuestId) -> &GuestEntry {
        match self.get(id) {
            Some(g) => g,
            None => panic!("guest id {} is not in this table", id.0),
        }
    }

    #[inline]
    pub fn get(&self, id: GuestId) -> Option<&GuestEntry> {
        self.guests.get(id.index()).and_then(Option::as_ref)
    }

    /// The guests, by id.
    pub fn guests(&self) -> impl Iterator<Item = &GuestEntry> {
        self.guests.iter().flatten()
    }

    /// One past the highest id in use: the length per-guest arrays need.
    pub fn id_bound(&self) -> usize {
        self.guests.len()
    }

    pub fn len(&self) -> usize {
        self.guests().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Generation number given at build time (the publication it was built for), for
    /// messages and tests; the handover's own epoch is what workers acknowledge.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The table for a validated config, at epoch 0. `GuestId(i)` is `cfg.guests[i]`.
    pub fn from_config(cfg: &Config) -> Result<MacTable, FibError> {
        let ids: Vec<GuestId> = (0..cfg.guests.len()).map(|i| GuestId(i as u16)).collect();
        Self::from_guests(ids.iter().copied().zip(&cfg.guests), 0)
    }

    /// The table for guests under the ids given.
    pub fn from_guests<'a>(guests: impl IntoIterator<Item = (GuestId, &'a GuestConfig)>, epoch: u64) -> Result<MacTable, FibError> {
        let mut builder = MacTableBuilder::default();
        for (id, g) in guests {
            let max_frame_len = u32::try_from(g.max_frame_len()).unwrap_or(u32::MAX);
            builder.add_guest_in_vlan(id, g.vlan, &g.name, &g.macs, g.mode, max_frame_len)?;
        }
        Ok(builder.build(epoch))
    }
}
