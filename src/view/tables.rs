//! The tables one publication hands the workers, and each worker's own part of them. Built
//! on the control thread (all the allocation of a change happens there); read-only after.

use std::sync::Arc;

use super::unicasts::{Unicast, UnicastIndex, NO_BATCH};
use super::{DeliveryMap, SourceTable};
use crate::fib::{GuestId, MacTable};
use crate::policy::{self, Cast, Mode, Origin};
use crate::wire::vlan::VID_COUNT;

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
    /// Its VLAN id (0: untagged).
    pub vlan: u16,
}

impl GuestFlags {
    /// Whether its own VMDq pool's frames of VLAN `vlan` are its own (the port's pools sort
    /// by MAC alone).
    #[inline]
    pub fn pooled_in(self, vlan: u16) -> bool {
        self.pooled && self.vlan == vlan
    }
}

/// What every worker reads per frame, as of one publication.
#[derive(Debug)]
pub struct Tables {
    pub fib: MacTable,
    pub delivery: DeliveryMap,
    /// Indexed by guest id (`fib.id_bound()` entries).
    pub flags: Vec<GuestFlags>,
    pub floods: FloodLists,
    /// The guest whose mode owns the uplink (passthru), if any: it gets every frame.
    pub passthru: Option<GuestId>,
    /// Guests that receive by source MAC (mode source); empty when there are none.
    pub sources: SourceTable,
    /// The uplink's link as the control thread last saw it. While false, workers take no
    /// frame from guests (they wait in their virtqueues, see `datapath::link_down`).
    pub uplink_up: bool,
}

/// Which flood list a frame takes: by its VLAN and where it came from (see
/// `FloodLists::key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodKey(usize);

/// For every kind of flood in every VLAN a guest uses, the guests whose mode and VLAN take
/// it, worked out once per publication so that a broadcast costs per receiving guest rather
/// than per configured guest with a policy lookup each (a VLAN's floods never walk the other
/// VLANs' guests). Only the policy is settled here: a guest's link and size are checked per
/// frame, and the sender itself is skipped by the caller.
#[derive(Debug)]
pub struct FloodLists {
    /// `PER_VLAN` lists per VLAN segment, the segment's at `segment * PER_VLAN`; within it,
    /// [0]: from outside; [1 + m]: reflected from a sibling in mode m; [1 + MODES + m]: a
    /// bridge-mode guest's local flood, from a sender in mode m; the last: nobody.
    lists: Vec<Vec<GuestId>>,
    /// By VLAN id: its segment, or `NO_SEGMENT` when no guest is in it. Untagged (0) is
    /// always segment 0.
    segment: Box<[u16]>,
}

const MODES: usize = Mode::ALL.len();
const PER_VLAN: usize = 2 + 2 * MODES;
const NO_SEGMENT: u16 = u16::MAX;

impl Default for FloodLists {
    fn default() -> Self {
        let mut segment = vec![NO_SEGMENT; VID_COUNT].into_boxed_slice();
        segment[0] = 0;
        FloodLists { lists: vec![Vec::new(); PER_VLAN], segment }
    }
}

impl FloodLists {
    fn new(fib: &MacTable, delivery: &DeliveryMap) -> FloodLists {
        let guests: Vec<(GuestId, Mode, u16)> = delivery.guests().iter().filter_map(|&g| fib.get(g).map(|e| (g, e.mode, e.vlan))).collect();
        let mut vlans = vec![0u16];
        for &(_, _, v) in &guests {
            if !vlans.contains(&v) {
                vlans.push(v);
            }
        }
        let mut out = FloodLists::default();
        out.lists.clear();
        for (i, &vlan) in vlans.iter().enumerate() {
            out.segment[usize::from(vlan)] = i as u16;
            let taking = |ok: &dyn Fn(Mode, u16) -> bool| guests.iter().filter(|(_, m, v)| ok(*m, *v)).map(|&(g, _, _)| g).collect::<Vec<_>>();
            out.lists.push(taking(&|m, v| policy::deliver_from_uplink_in(m, v, vlan, Origin::External, Cast::Multicast)));
            for src in Mode::ALL {
                out.lists.push(taking(&|m, v| policy::deliver_from_uplink_in(m, v, vlan, Origin::Sibling(src), Cast::Multicast)));
            }
            for src in Mode::ALL {
                out.lists.push(taking(&|m, v| policy::deliver_local_in(src, vlan, m, v)));
            }
            out.lists.push(Vec::new());
        }
        out
    }

    /// Whether any guest is in VLAN `vlan` (untagged always counts): a tagged frame for a
    /// VLAN nobody uses is dropped before any lookup.
    #[inline]
    pub fn has_vlan(&self, vlan: u16) -> bool {
        self.segment.get(usize::from(vlan)).is_some_and(|&s| s != NO_SEGMENT)
    }

    /// The list for a flood in VLAN `vlan` (0: untagged): `local` (a bridge-mode guest's own,
    /// switched inside the host) or from the uplink; `source_mode`, the mode of the guest that
    /// sent it, if one did. A VLAN nobody uses has empty lists.
    #[inline]
    pub fn key(&self, vlan: u16, local: bool, source_mode: Option<Mode>) -> FloodKey {
        let segment = match self.segment.get(usize::from(vlan)) {
            Some(&s) if s != NO_SEGMENT => usize::from(s),
            _ => return FloodKey(usize::MAX),
        };
        FloodKey(segment * PER_VLAN + match (local, source_mode) {
            (false, None) => 0,
            (false, Some(m)) => 1 + m.index(),
            (true, Some(m)) => 1 + MODES + m.index(),
            (true, None) => 1 + 2 * MODES,
        })
    }

    #[inline]
    pub fn list(&self, k: FloodKey) -> &[GuestId] {
        self.lists.get(k.0).map_or(&[], Vec::as_slice)
    }
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
                    Some(e) => GuestFlags { pooled: pooled(id), may_switch_locally: !policy::egress_always_uplink(e.mode), vlan: e.vlan },
                    None => GuestFlags::default(),
                }
            })
            .collect();
        let floods = FloodLists::new(&fib, &delivery);
        let passthru = delivery.guests().iter().copied().find(|&g| fib.get(g).is_some_and(|e| policy::owns_uplink(e.mode)));
        Tables { fib, delivery, flags, floods, passthru, sources: SourceTable::default(), uplink_up: true }
    }

    /// These tables with `sources` (built from the same guests and MAC table), keeping only
    /// guests the delivery map lists, as for everything else a worker reads.
    pub fn with_sources(mut self, mut sources: SourceTable) -> Tables {
        let listed: std::collections::HashSet<GuestId> = self.delivery.guests().iter().copied().collect();
        sources.retain_guests(|g| listed.contains(&g));
        self.sources = sources;
        self
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
    /// The common case's answer (also in the worker's `UnicastIndex`, by MAC); its `max_len`
    /// is the guest's size limit for every unicast from the uplink.
    pub unicast: Unicast,
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
    /// (guest, queue) pairs the worker serves in both directions; a worker keeps one batch
    /// per pair, in this order.
    pub guest_queues: Vec<(GuestId, u16)>,
    /// Indexed by guest id.
    pub to_guest: Vec<ToGuest>,
    /// Untagged unicasts' answers by destination MAC.
    pub unicasts: UnicastIndex,
}

impl WorkerView {
    /// Worker `me`'s view of `tables`.
    pub fn new(tables: &Arc<Tables>, me: usize) -> WorkerView {
        let d = &tables.delivery;
        let guest_queues: Vec<(GuestId, u16)> = d
            .guests()
            .iter()
            .flat_map(|&g| (0..d.queues(g.index())).map(move |q| (g, q)))
            .filter(|&(g, q)| d.owner(g.index(), q) == me)
            .collect();
        let modes: Vec<Mode> = tables.fib.guests().map(|g| g.mode).collect();
        let local = d.local_single_slots(me);
        // The batch of each guest's queue 0 here, if this worker has it.
        let mut batch_of_first = vec![NO_BATCH; tables.fib.id_bound()];
        for (b, &(g, q)) in guest_queues.iter().enumerate() {
            if let (0, Some(first)) = (q, batch_of_first.get_mut(g.index())) {
                *first = b as u16;
            }
        }
        let to_guest: Vec<ToGuest> = (0..tables.fib.id_bound())
            .map(|i| {
                let id = GuestId(i as u16);
                match tables.fib.get(id) {
                    Some(e) => {
                        let local_slot = local.get(i).copied().unwrap_or(NO_SLOT);
                        let needs_source = policy::unicast_depends_on_origin(e.mode, &modes);
                        let takes_unicast = policy::deliver_from_uplink(e.mode, Origin::External, Cast::Unicast);
                        let common = local_slot != NO_SLOT && !needs_source && takes_unicast;
                        let batch = if common { batch_of_first[i] } else { NO_BATCH };
                        ToGuest { unicast: Unicast { guest: id, batch, max_len: e.max_frame_len }, local_slot, needs_source, takes_unicast }
                    }
                    None => ToGuest {
                        unicast: Unicast { guest: id, batch: NO_BATCH, max_len: 0 },
                        local_slot: NO_SLOT,
                        needs_source: false,
                        takes_unicast: false,
                    },
                }
            })
            .collect();
        let unicasts = UnicastIndex::new(&tables.fib, |g| to_guest[g.index()].unicast);
        WorkerView { tables: Arc::clone(tables), guest_queues, to_guest, unicasts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists hold exactly the guests the policy table admits for each kind of flood.
    #[test]
    fn flood_lists_follow_the_policy_table() {
        let text = "[[guest]]\nname = \"v\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/tmp/v.sock\"\n\n\
                    [[guest]]\nname = \"p\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/tmp/p.sock\"\nmode = \"private\"\n\n\
                    [[guest]]\nname = \"b\"\nmac = \"52:54:00:00:00:03\"\nsocket = \"/tmp/b.sock\"\nmode = \"bridge\"\n\n\
                    [[guest]]\nname = \"c\"\nmac = \"52:54:00:00:00:04\"\nsocket = \"/tmp/c.sock\"\nmode = \"bridge\"\n";
        let cfg = crate::config::parse_str(text, std::path::Path::new("t.toml")).expect("config");
        let fib = MacTable::from_config(&cfg).expect("table");
        let mut d = DeliveryMap::default();
        for i in 0..4 {
            d.insert(GuestId(i), &[0]);
        }
        let t = Tables::new(fib, d, |_| false);
        let f = &t.floods;
        let all = [GuestId(0), GuestId(1), GuestId(2), GuestId(3)];
        for (local, src) in [(false, None), (false, Some(Mode::Vepa)), (true, Some(Mode::Bridge)), (true, Some(Mode::Vepa)), (true, None)] {
            let want: Vec<GuestId> = all
                .iter()
                .copied()
                .filter(|&g| {
                    let dst = t.fib.guest(g).mode;
                    match (local, src) {
                        (false, None) => policy::deliver_from_uplink(dst, Origin::External, Cast::Multicast),
                        (false, Some(m)) => policy::deliver_from_uplink(dst, Origin::Sibling(m), Cast::Multicast),
                        (true, Some(m)) => policy::deliver_local(m, dst),
                        (true, None) => false,
                    }
                })
                .collect();
            assert_eq!(f.list(f.key(0, local, src)), want.as_slice(), "local {local}, from {src:?}");
        }
        // The private guest takes floods from outside, never a sibling's.
        assert!(f.list(f.key(0, false, None)).contains(&GuestId(1)));
        assert!(!f.list(f.key(0, false, Some(Mode::Vepa))).contains(&GuestId(1)));
        assert_eq!(f.list(f.key(0, true, Some(Mode::Bridge))), &[GuestId(2), GuestId(3)]);
    }

    /// A worker's answer for a guest's untagged unicast names the batch of the guest's one
    /// queue when the worker owns it and the guest's mode takes any unicast (the batch
    /// `fill_slots` gives that queue: its place in `guest_queues`), and no batch otherwise;
    /// the worker's index answers each untagged MAC with its guest's answer and knows no
    /// tagged guest's MAC.
    #[test]
    fn a_workers_unicast_answers_name_the_batches_of_its_own_single_queues() {
        use crate::fib::MacTableBuilder;
        use crate::wire::MacAddr;
        let mac = |g: usize, k: u8| MacAddr([0x52, 0x54, 0, k, 0, g as u8]);
        // (mode, VLAN, owner of each queue)
        let build = |guests: &[(Mode, u16, &[u16])]| {
            let mut b = MacTableBuilder::default();
            let mut d = DeliveryMap::default();
            for (g, &(mode, vlan, owners)) in guests.iter().enumerate() {
                let id = GuestId(g as u16);
                b.add_guest_in_vlan(id, vlan, &format!("g{g}"), &[mac(g, 0), mac(g, 1)], mode, 1514 + g as u32).expect("distinct MACs");
                d.insert(id, owners);
            }
            Arc::new(Tables::new(b.build(1), d, |_| false))
        };
        let guests: [(Mode, u16, &[u16]); 5] = [(Mode::Vepa, 0, &[1]), (Mode::Vepa, 0, &[0]), (Mode::Vepa, 0, &[0, 1]), (Mode::Vepa, 10, &[0]), (Mode::Vepa, 0, &[1, 0])];
        let tables = build(&guests);
        let mut batches = Vec::new();
        for me in 0..2 {
            let view = WorkerView::new(&tables, me);
            for (g, &(_, vlan, owners)) in guests.iter().enumerate() {
                let to = view.to_guest[g].unicast;
                assert_eq!((to.guest, to.max_len), (GuestId(g as u16), 1514 + g as u32));
                if owners == [me as u16] {
                    assert_eq!(view.guest_queues.get(usize::from(to.batch)), Some(&(GuestId(g as u16), 0)), "worker {me}, guest {g}");
                    batches.push((me, g));
                } else {
                    assert_eq!(to.batch, NO_BATCH, "worker {me}, guest {g}");
                }
                for k in 0..2 {
                    assert_eq!(view.unicasts.get(&mac(g, k)), (vlan == 0).then_some(to), "worker {me}, guest {g}, MAC {k}");
                }
            }
        }
        assert_eq!(batches, [(0, 1), (0, 3), (1, 0)]);
        // A private guest refuses its siblings' frames: who sent it decides, never the batch.
        let tables = build(&[(Mode::Vepa, 0, &[0]), (Mode::Private, 0, &[0])]);
        let view = WorkerView::new(&tables, 0);
        assert_eq!(view.to_guest[1].unicast.batch, NO_BATCH);
        assert_eq!(view.unicasts.get(&mac(1, 0)), Some(view.to_guest[1].unicast));
    }

    /// Per VLAN: a VLAN's lists hold its own guests only, the untagged lists none of the
    /// tagged guests, and a VLAN nobody uses has empty lists.
    #[test]
    fn flood_lists_are_per_vlan() {
        let guest = |n: u8, extra: &str| format!("[[guest]]\nname = \"g{n}\"\nmac = \"52:54:00:00:00:0{n}\"\nsocket = \"/tmp/g{n}.sock\"\n{extra}\n");
        let text = [guest(1, "vlan = 10"), guest(2, "vlan = 10\nmode = \"bridge\""), guest(3, "vlan = 20\nmode = \"bridge\""), guest(4, ""), guest(5, "mode = \"bridge\"")].concat();
        let cfg = crate::config::parse_str(&text, std::path::Path::new("t.toml")).expect("config");
        let fib = MacTable::from_config(&cfg).expect("table");
        let mut d = DeliveryMap::default();
        for i in 0..5 {
            d.insert(GuestId(i), &[0]);
        }
        let t = Tables::new(fib, d, |_| false);
        let f = &t.floods;
        let [g1, g2, g3, g4, g5] = [0, 1, 2, 3, 4].map(GuestId);
        assert_eq!(f.list(f.key(10, false, None)), &[g1, g2]);
        assert_eq!(f.list(f.key(20, false, None)), &[g3]);
        assert_eq!(f.list(f.key(0, false, None)), &[g4, g5]);
        assert_eq!(f.list(f.key(10, false, Some(Mode::Vepa))), &[g1, g2], "a VEPA sibling's reflection, in its VLAN");
        assert_eq!(f.list(f.key(10, true, Some(Mode::Bridge))), &[g2], "a bridge guest's local flood reaches its VLAN's bridge guests only");
        assert_eq!(f.list(f.key(0, true, Some(Mode::Bridge))), &[g5]);
        assert!(f.list(f.key(30, false, None)).is_empty());
        assert!(f.has_vlan(0) && f.has_vlan(10) && f.has_vlan(20));
        assert!(!f.has_vlan(30) && !f.has_vlan(4095) && !f.has_vlan(5000));
    }
}
