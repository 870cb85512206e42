//! The tables one publication hands the workers, and each worker's own part of them. Built
//! on the control thread (all the allocation of a change happens there); read-only after.

use std::sync::Arc;

use super::DeliveryMap;
use crate::fib::{GuestId, MacTable};
use crate::policy::{self, Cast, Mode, Origin};

/// See `ToGuest::local_slot`.
pub const NO_SLOT: u32 = u32::MAX;

/// Per guest id, what every worker needs to know beside its MAC table entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestFlags {
    /// It has a VMDq pool of its own, whose queue gets its broadcast copies.
    pub pooled: bool,
    /// Its mode may keep a frame inside the host (bridge mode); only then does egress look
    /// at the destination.
    pub may_switch_locally: bool,
}

/// What every worker reads per frame, as of one publication.
#[derive(Debug)]
pub struct Tables {
    pub fib: MacTable,
    pub delivery: DeliveryMap,
    /// Indexed by guest id (`fib.id_bound()` entries).
    pub flags: Vec<GuestFlags>,
}

impl Tables {
    /// `pooled(id)`: whether the guest has a VMDq pool of its own.
    ///
    /// Every guest the delivery map lists must be in the MAC table: workers look a listed
    /// guest's entry up without checking (a flood walks the list). A listed guest the table
    /// lacks is a bug in the caller; it is taken out of the map rather than left for a worker
    /// to trip on.
    pub fn new(fib: MacTable, mut delivery: DeliveryMap, pooled: impl Fn(GuestId) -> bool) -> Tables {
        let strays: Vec<GuestId> = delivery.guests().iter().copied().filter(|&g| fib.get(g).is_none()).collect();
        debug_assert!(strays.is_empty(), "guests {strays:?} have queues but no MAC table entry");
        for g in strays {
            delivery.remove(g);
        }
        let flags = (0..fib.id_bound())
            .map(|i| {
                let id = GuestId(i as u16);
                match fib.get(id) {
                    Some(e) => GuestFlags { pooled: pooled(id), may_switch_locally: !policy::egress_always_uplink(e.mode) },
                    None => GuestFlags::default(),
                }
            })
            .collect();
        Tables { fib, delivery, flags }
    }

    #[inline]
    pub fn flags(&self, g: GuestId) -> GuestFlags {
        self.flags.get(g.index()).copied().unwrap_or_default()
    }
}

/// Per guest: what delivering a unicast from the uplink needs, packed so that a frame
/// touches one small entry (the per-guest lookups were a visible share of a 64-byte frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToGuest {
    /// Frames longer than this are oversize for the guest.
    pub max_len: u32,
    /// Its queue slot when it has a single queue and this worker owns it, else `NO_SLOT`.
    pub local_slot: u32,
    /// The policy may refuse a unicast by who sent it (a private guest exists), so the source
    /// must be looked up.
    pub needs_source: bool,
    /// When it need not: whether the guest's mode takes unicast from the uplink at all.
    pub takes_unicast: bool,
}

/// One worker's part of a publication.
#[derive(Debug)]
pub struct WorkerView {
    pub tables: Arc<Tables>,
    /// (guest, queue) pairs the worker serves in both directions.
    pub guest_queues: Vec<(GuestId, u16)>,
    /// Indexed by guest id.
    pub to_guest: Vec<ToGuest>,
}

impl WorkerView {
    /// Worker `me`'s view of `tables`.
    pub fn new(tables: &Arc<Tables>, me: usize) -> WorkerView {
        let d = &tables.delivery;
        let guest_queues = d
            .guests()
            .iter()
            .flat_map(|&g| (0..d.queues(g.index())).map(move |q| (g, q)))
            .filter(|&(g, q)| d.owner(g.index(), q) == me)
            .collect();
        let modes: Vec<Mode> = tables.fib.guests().map(|g| g.mode).collect();
        let local = d.local_single_slots(me);
        let to_guest = (0..tables.fib.id_bound())
            .map(|i| match tables.fib.get(GuestId(i as u16)) {
                Some(e) => ToGuest {
                    max_len: e.max_frame_len,
                    local_slot: local.get(i).copied().unwrap_or(NO_SLOT),
                    needs_source: policy::unicast_depends_on_origin(e.mode, &modes),
                    takes_unicast: policy::deliver_from_uplink(e.mode, Origin::External, Cast::Unicast),
                },
                None => ToGuest { max_len: 0, local_slot: NO_SLOT, needs_source: false, takes_unicast: false },
            })
            .collect();
        WorkerView { tables: Arc::clone(tables), guest_queues, to_guest }
    }
}
