//! Property tests: for random guest sets (modes, MACs), random frames and an external switch
//! that does or does not reflect, the decisions the datapath takes from the published tables
//! (MAC lookup, the worker's `UnicastIndex` and `ToGuest`'s unicast shortcut, the flood lists, the egress route) deliver each
//! frame to exactly the guests macvlan's semantics name, each once, or drop it under exactly
//! one reason.
//!
//! `Model` walks the tables the way `datapath::ingress` (`deliver_received`'s first step and
//! `classify`: `uplink_frame`) and
//! `datapath::egress::check_from_guest` (`guest_frame`) do, question for question (the
//! datapath adds only what the tables cannot know: links, sizes, queues, pools).
//! `oracle_sibling` is the specification, written without the tables or the policy module.
//! Modes: VEPA, private and bridge (the
//! others have semantics of their own, tested where they are defined).

use std::sync::Arc;

use proptest::prelude::*;

use super::{DeliveryMap, Tables, WorkerView};
use crate::fib::{GuestId, MacTableBuilder};
use crate::policy::{self, Cast, Egress, Mode, Origin};
use crate::stats::DropReason;
use crate::wire::MacAddr;

const EXTERNAL: MacAddr = MacAddr([0x02, 0, 0, 0, 0xee, 0x01]);
const NOBODY: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0xff, 0x99]);
const MULTICAST: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
const LINK_LOCAL: MacAddr = MacAddr([0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e]);

/// Guest `i`'s `k`th MAC.
fn guest_mac(i: usize, k: usize) -> MacAddr {
    MacAddr([0x52, 0x54, 0, k as u8, 0, i as u8])
}

/// What the uplink side does with one received frame.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Dropped before any copy, for this one reason.
    Dropped(DropReason),
    /// One copy per guest the frame names: delivered (None) or refused for a reason.
    Copies(Vec<(GuestId, Option<DropReason>)>),
}

struct Model {
    tables: Arc<Tables>,
    view: WorkerView,
}

impl Model {
    fn new(guests: &[(Mode, usize)]) -> Model {
        let mut b = MacTableBuilder::default();
        let mut d = DeliveryMap::default();
        for (i, &(mode, n_macs)) in guests.iter().enumerate() {
            let macs: Vec<MacAddr> = (0..n_macs).map(|k| guest_mac(i, k)).collect();
            let g = b.add_guest(&format!("vm{i}"), &macs, mode, 1514).expect("distinct MACs");
            d.insert(g, &[0]);
        }
        let tables = Arc::new(Tables::new(b.build(1), d, |_| false));
        let view = WorkerView::new(&tables, 0);
        Model { tables, view }
    }

    fn mode(&self, g: GuestId) -> Mode {
        self.tables.fib.guest(g).mode
    }

    /// `classify` on a frame from the uplink (every guest up and big enough).
    fn uplink_frame(&self, dst: MacAddr, src: MacAddr) -> Outcome {
        let fib = &self.tables.fib;
        if dst.is_multicast() {
            if dst.is_link_local_group() {
                return Outcome::Dropped(DropReason::LinkLocal);
            }
            let source = fib.lookup(&src);
            let key = self.tables.floods.key(0, false, source.map(|s| self.mode(s)));
            let copies: Vec<_> = self.tables.floods.list(key).iter().filter(|&&g| Some(g) != source).map(|&g| (g, None)).collect();
            return if copies.is_empty() { Outcome::Dropped(DropReason::NoDestination) } else { Outcome::Copies(copies) };
        }
        // `deliver_received`'s first step asks the worker's index, the general path the MAC
        // table: both must answer alike.
        let found = self.view.unicasts.get(&dst);
        let Some(g) = fib.lookup(&dst) else {
            assert_eq!(found, None, "the index knows {dst} and the MAC table does not");
            return Outcome::Dropped(DropReason::UnknownDest);
        };
        let to = self.view.to_guest[g.index()];
        assert_eq!(found, Some(to.unicast), "the index's answer for {dst} is not its guest's");
        if to.unicast.batch_for(64).is_some() {
            // The common case: straight into the guest's batch.
            return Outcome::Copies(vec![(g, None)]);
        }
        let admitted = if to.needs_source {
            let origin = match fib.lookup(&src) {
                None => Origin::External,
                Some(s) if s == g => Origin::Itself,
                Some(s) => Origin::Sibling(self.mode(s)),
            };
            policy::deliver_from_uplink(self.mode(g), origin, Cast::Unicast)
        } else {
            to.takes_unicast
        };
        Outcome::Copies(vec![(g, if admitted { None } else { Some(DropReason::PolicyDenied) })])
    }

    /// `check_from_guest` and what follows for guest `s`'s frame to `dst`: the guests it is
    /// delivered to inside the host, and whether it goes out of the uplink.
    fn guest_frame(&self, s: GuestId, dst: MacAddr) -> (Vec<GuestId>, bool) {
        if !self.tables.flags(s).may_switch_locally {
            return (vec![], true);
        }
        let cast = Cast::of(&dst);
        let sibling = if cast == Cast::Unicast { self.tables.fib.lookup(&dst) } else { None };
        match policy::egress(self.mode(s), cast, sibling.map(|t| self.mode(t))) {
            Egress::Uplink => (vec![], true),
            Egress::Local => match sibling {
                Some(t) => (vec![t], false),
                None => (vec![], true),
            },
            Egress::UplinkAndLocal => {
                let key = self.tables.floods.key(0, true, Some(self.mode(s)));
                (self.tables.floods.list(key).iter().copied().filter(|&g| g != s).collect(), true)
            }
        }
    }

    /// Every guest that ends up with guest `s`'s frame to `dst`, with repeats: locally, and
    /// (when the external switch reflects) from the uplink.
    fn receivers_of_guest_frame(&self, s: GuestId, dst: MacAddr, hairpin: bool) -> Vec<GuestId> {
        let (mut got, out) = self.guest_frame(s, dst);
        if out && hairpin {
            if let Outcome::Copies(c) = self.uplink_frame(dst, guest_mac(s.index(), 0)) {
                got.extend(c.into_iter().filter(|(_, refused)| refused.is_none()).map(|(g, _)| g));
            }
        }
        got.sort_unstable();
        got
    }
}

/// macvlan's semantics for VEPA, private and bridge guests: whether guest `t` gets a frame
/// guest `s` sent to it (or broadcast). Bridge guests reach each other inside the host;
/// otherwise only a reflecting external switch brings the frame back, and a private guest
/// neither reaches nor is reached by a sibling.
fn oracle_sibling(s: Mode, t: Mode, hairpin: bool) -> bool {
    (s == Mode::Bridge && t == Mode::Bridge) || (hairpin && s != Mode::Private && t != Mode::Private)
}

fn modes() -> impl Strategy<Value = Vec<(Mode, usize)>> {
    prop::collection::vec((prop::sample::select(vec![Mode::Vepa, Mode::Private, Mode::Bridge]), 1usize..3), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// From the wire: a unicast to a guest's MAC is for that guest alone (whichever of its
    /// MACs); a broadcast or multicast for every guest; anything else is one drop.
    #[test]
    fn frames_from_the_wire(guests in modes(), pick in any::<prop::sample::Index>(), k in 0usize..2, kind in 0u8..4) {
        let m = Model::new(&guests);
        let all: Vec<GuestId> = (0..guests.len()).map(|i| GuestId(i as u16)).collect();
        let t = pick.index(guests.len());
        let (dst, want) = match kind {
            0 => (guest_mac(t, k % guests[t].1), Outcome::Copies(vec![(GuestId(t as u16), None)])),
            1 => (NOBODY, Outcome::Dropped(DropReason::UnknownDest)),
            2 => (if k == 0 { MacAddr::BROADCAST } else { MULTICAST }, Outcome::Copies(all.iter().map(|&g| (g, None)).collect())),
            _ => (LINK_LOCAL, Outcome::Dropped(DropReason::LinkLocal)),
        };
        prop_assert_eq!(m.uplink_frame(dst, EXTERNAL), want);
    }

    /// From a guest to a sibling, or broadcast: each sibling the semantics name gets it
    /// exactly once (locally, or reflected, never both), no other guest gets it, and the
    /// sender never gets its own frame back.
    #[test]
    fn frames_from_a_guest(guests in modes(), from in any::<prop::sample::Index>(), to in any::<prop::sample::Index>(), bcast in any::<bool>(), hairpin in any::<bool>()) {
        let m = Model::new(&guests);
        let s = from.index(guests.len());
        let t = to.index(guests.len());
        let sg = GuestId(s as u16);
        let got = if bcast {
            m.receivers_of_guest_frame(sg, MacAddr::BROADCAST, hairpin)
        } else {
            m.receivers_of_guest_frame(sg, guest_mac(t, 0), hairpin)
        };
        let want: Vec<GuestId> = (0..guests.len())
            .filter(|&i| i != s && (bcast || i == t) && oracle_sibling(guests[s].0, guests[i].0, hairpin))
            .map(|i| GuestId(i as u16))
            .collect();
        if !bcast && t == s {
            // To its own MAC: a bridge guest gets it back inside the host (as macvlan's
            // bridge mode forwards to the owner of the destination); the others out of the
            // uplink, and a reflected copy comes back unless private.
            let back = guests[s].0 == Mode::Bridge || (hairpin && guests[s].0 != Mode::Private);
            prop_assert_eq!(got, if back { vec![sg] } else { vec![] });
        } else {
            prop_assert_eq!(got, want);
        }
    }

    /// A reflected frame from the uplink names exactly one outcome: copies for distinct
    /// guests (the sender never among a flood's), or one drop.
    #[test]
    fn every_uplink_frame_has_one_outcome(guests in modes(), from in any::<prop::sample::Index>(), to in any::<prop::sample::Index>(), kind in 0u8..3) {
        let m = Model::new(&guests);
        let s = from.index(guests.len());
        let dst = match kind {
            0 => guest_mac(to.index(guests.len()), 0),
            1 => MacAddr::BROADCAST,
            _ => NOBODY,
        };
        match m.uplink_frame(dst, guest_mac(s, 0)) {
            Outcome::Dropped(r) => prop_assert!(matches!(r, DropReason::UnknownDest | DropReason::NoDestination), "{:?}", r),
            Outcome::Copies(c) => {
                prop_assert!(!c.is_empty());
                let mut ids: Vec<GuestId> = c.iter().map(|(g, _)| *g).collect();
                ids.sort_unstable();
                ids.dedup();
                prop_assert_eq!(ids.len(), c.len(), "a guest named twice: {:?}", c);
                if kind == 1 {
                    prop_assert!(!ids.contains(&GuestId(s as u16)), "the sender got its own broadcast");
                }
            }
        }
    }
}
