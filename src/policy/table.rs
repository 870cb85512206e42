//! The mode truth tables, as exhaustive matches (the compiler proves every combination is
//! answered; the tests pin each answer).
//!
//! `Source` is treated exactly like `Vepa` by destination, as sender and as receiver, and on
//! top of that receives by *source* MAC (`deliver_by_source`). Differs from macvlan on
//! purpose: Linux delivers to a source-mode device by source only, never by its own address
//! (macvlan_handle_frame hands a unicast for it to the lower device, and its broadcast masks
//! leave it out), which would leave a VM without ARP replies; here a source-mode guest is a
//! VEPA guest that also sees the listed stations' traffic.
//!
//! `Passthru` owns the uplink: `owns_uplink` (everything from the uplink, link-local
//! groups included) and `any_source` (no anti-spoofing); it never has siblings, so its
//! sibling columns below only matter for frames that spoof a former guest's address.

use super::{Cast, Egress, Mode, Origin};

/// Uplink -> guest: may a guest in `dst_mode` receive this frame from the uplink?
///
/// For unicast this is asked only for the guest owning the destination MAC; for multicast it
/// is asked once per guest. `origin` is judged from that guest's point of view.
#[inline]
pub fn deliver_from_uplink(dst_mode: Mode, origin: Origin, cast: Cast) -> bool {
    use Cast::{Multicast, Unicast};
    use Mode::{Bridge, Passthru, Private, Source, Vepa};
    use Origin::{External, Itself, Sibling};

    match (dst_mode, origin, cast) {
        // macvlan_handle_frame: a passthru port has one device and hands it every frame; even
        // its own reflected multicast goes back ("forward to original port").
        (Passthru, _, _) => true,
        // macvlan_handle_frame (unicast: lookup by destination only) and
        // macvlan_process_broadcast (no source device: flood to every mode).
        (_, External, _) => true,
        // macvlan_broadcast never hands a flood back to its source device.
        // Differs from macvlan for private: Linux forwards a private device's reflected
        // multicast to itself; a guest gains nothing from hearing its own ARP/NDP echoed.
        (_, Itself, Multicast) => false,
        // Differs from macvlan: its unicast path ignores the source, so a private device would
        // receive its own reflected unicast. Private promises nothing comes back.
        (Private, Itself, Unicast) => false,
        // macvlan_handle_frame unicast path: destination decides, source is not looked at.
        (_, Itself, Unicast) => true,
        // Private isolation holds even through a hairpin switch. For multicast this is
        // macvlan_process_broadcast (its masks for VEPA and bridge sources omit PRIVATE);
        // differs from macvlan for unicast, which Linux delivers regardless of source.
        (Private, Sibling(_), _) => false,
        // A private sender is isolated in both directions: macvlan_handle_frame sends its
        // reflected multicast only back to itself. Differs for unicast (see above).
        // Passthru has no siblings, so such a source can only be spoofed.
        (_, Sibling(Private | Passthru), _) => false,
        // macvlan_handle_frame: reflected unicast is delivered by destination.
        (_, Sibling(_), Unicast) => true,
        // macvlan_process_broadcast: a VEPA source floods to VEPA and bridge devices.
        (Vepa | Bridge | Source, Sibling(Vepa | Source), Multicast) => true,
        // macvlan_process_broadcast: a bridge source floods to VEPA devices only; bridge
        // devices already got the frame locally on the way out (macvlan_queue_xmit).
        (Vepa | Source, Sibling(Bridge), Multicast) => true,
        (Bridge, Sibling(Bridge), Multicast) => false,
    }
}

/// Whether a guest in `mode` owns the uplink: it receives every frame the uplink receives,
/// whatever its destination, and no other guest may exist beside it (config enforces that).
///
/// macvlan_handle_frame: a passthru port hands its one device every unicast
/// (`list_first_or_null_rcu`, no lookup) and every multicast. Link-local group frames
/// (01:80:c2:00:00:0x: STP, LACP, LLDP) included: the other modes leave them to the switch's
/// own end of the wire, but a passthru guest *is* that end (a nested bridge or LLDP agent in
/// the VM wants them), as Linux passes them to its rx handler. PAUSE never gets this far: the
/// port's MAC consumes it.
#[inline]
pub fn owns_uplink(mode: Mode) -> bool {
    mode == Mode::Passthru
}

/// Whether a guest in `mode` may send from any source MAC: anti-spoofing is off. Only
/// passthru: the guest owns the port, and a bridge nested in it forwards other stations'
/// frames (macvlan passthru lets the device's upper bridge do the same).
#[inline]
pub fn any_source(mode: Mode) -> bool {
    mode == Mode::Passthru
}

/// Uplink -> guest by *source* MAC: may a guest in `dst_mode` whose `sources` list holds the
/// frame's source receive a copy, when the source is `origin` from its point of view?
///
/// macvlan_forward_source: every source-mode device listing the source gets a copy, unicast
/// or multicast, whatever the destination. Differs from macvlan: a private sibling's
/// reflected frames are not copied (private promises no other guest sees its traffic, the
/// rule `deliver_from_uplink` keeps), and a guest's own MACs cannot be listed (config refuses
/// them), so `Itself` never matches. Linux's MACVLAN_FLAG_NODST (a matched frame goes to the
/// source-mode devices only, not to its destination) is not offered: a matched frame also
/// goes where its destination sends it.
#[inline]
pub fn deliver_by_source(dst_mode: Mode, origin: Origin) -> bool {
    match (dst_mode, origin) {
        (Mode::Source, Origin::External) => true,
        (Mode::Source, Origin::Itself | Origin::Sibling(Mode::Private | Mode::Passthru)) => false,
        (Mode::Source, Origin::Sibling(_)) => true,
        (Mode::Vepa | Mode::Private | Mode::Bridge | Mode::Passthru, _) => false,
    }
}

/// Guest -> ?: where does a frame sent by a guest in `src_mode` go?
///
/// `dst_sibling` is `Some(mode)` when the (unicast) destination MAC belongs to another guest;
/// it is ignored for multicast.
#[inline]
pub fn egress(src_mode: Mode, cast: Cast, dst_sibling: Option<Mode>) -> Egress {
    // All from macvlan_queue_xmit: only a bridge-mode sender looks at the destination;
    // every other mode goes straight to the lower device ("xmit_world").
    match (src_mode, cast, dst_sibling) {
        // macvlan_broadcast(.., MACVLAN_MODE_BRIDGE) to the bridge siblings, then xmit_world.
        (Mode::Bridge, Cast::Multicast, _) => Egress::UplinkAndLocal,
        // dest->mode == MACVLAN_MODE_BRIDGE: forwarded inside the host, never on the wire.
        (Mode::Bridge, Cast::Unicast, Some(Mode::Bridge)) => Egress::Local,
        _ => Egress::Uplink,
    }
}

/// Multicast switched locally (after `egress` said `UplinkAndLocal`): may the sibling in
/// `dst_mode` receive a copy? The sender itself is never asked: the caller skips it, as
/// macvlan_broadcast skips its source device.
#[inline]
pub fn deliver_local(src_mode: Mode, dst_mode: Mode) -> bool {
    // macvlan_queue_xmit floods with mode mask MACVLAN_MODE_BRIDGE, from bridge senders only.
    src_mode == Mode::Bridge && dst_mode == Mode::Bridge
}

/// Whether every frame a guest in `src_mode` sends goes to the uplink and nowhere else, so
/// the datapath need not look at its destinations. Derived from `egress` by enumeration.
pub fn egress_always_uplink(src_mode: Mode) -> bool {
    let siblings = Mode::ALL.iter().map(|&m| Some(m)).chain([None]);
    siblings.flat_map(|d| [egress(src_mode, Cast::Unicast, d), egress(src_mode, Cast::Multicast, d)]).all(|e| e == Egress::Uplink)
}

/// Whether `deliver_from_uplink(dst_mode, origin, Unicast)` can differ between origins when
/// the siblings' modes are among `sibling_modes`. When it cannot, the datapath may skip
/// looking up a unicast frame's source. Derived from the table itself, so it cannot drift.
pub fn unicast_depends_on_origin(dst_mode: Mode, sibling_modes: &[Mode]) -> bool {
    let first = deliver_from_uplink(dst_mode, Origin::External, Cast::Unicast);
    let mut origins = sibling_modes.iter().map(|&m| Origin::Sibling(m)).chain([Origin::Itself]);
    origins.any(|o| deliver_from_uplink(dst_mode, o, Cast::Unicast) != first)
}

#[cfg(test)]
mod tests {
    //! The complete truth tables. Row and column orders follow `Mode::ALL`
    //! (vepa, private, bridge, passthru, source). Editing semantics means editing these.

    use super::*;

    const Y: bool = true;
    const N: bool = false;

    /// Column order of the delivery tables.
    fn origins() -> [Origin; 7] {
        let [v, pr, b, pa, s] = Mode::ALL;
        [
            Origin::External,
            Origin::Itself,
            Origin::Sibling(v),
            Origin::Sibling(pr),
            Origin::Sibling(b),
            Origin::Sibling(pa),
            Origin::Sibling(s),
        ]
    }

    #[rustfmt::skip]
    const FROM_UPLINK_UNICAST: [[bool; 7]; 5] = [
        //             ext self  s:vepa s:priv s:bridge s:pass s:src
        /* vepa     */ [Y,   Y,    Y,     N,     Y,       N,     Y],
        /* private  */ [Y,   N,    N,     N,     N,       N,     N],
        /* bridge   */ [Y,   Y,    Y,     N,     Y,       N,     Y],
        /* passthru */ [Y,   Y,    Y,     Y,     Y,       Y,     Y],
        /* source   */ [Y,   Y,    Y,     N,     Y,       N,     Y],
    ];

    #[rustfmt::skip]
    const FROM_UPLINK_MULTICAST: [[bool; 7]; 5] = [
        //             ext self  s:vepa s:priv s:bridge s:pass s:src
        /* vepa     */ [Y,   N,    Y,     N,     Y,       N,     Y],
        /* private  */ [Y,   N,    N,     N,     N,       N,     N],
        /* bridge   */ [Y,   N,    Y,     N,     N,       N,     Y],
        /* passthru */ [Y,   Y,    Y,     Y,     Y,       Y,     Y],
        /* source   */ [Y,   N,    Y,     N,     Y,       N,     Y],
    ];

    #[test]
    fn deliver_from_uplink_matches_the_table() {
        for (cast, table) in [
            (Cast::Unicast, &FROM_UPLINK_UNICAST),
            (Cast::Multicast, &FROM_UPLINK_MULTICAST),
        ] {
            for (dst, row) in Mode::ALL.into_iter().zip(table) {
                for (origin, &want) in origins().into_iter().zip(row) {
                    assert_eq!(
                        deliver_from_uplink(dst, origin, cast),
                        want,
                        "deliver_from_uplink({dst}, {origin:?}, {cast:?})"
                    );
                }
            }
        }
    }

    use Egress::{Local as L, Uplink as U, UplinkAndLocal as UL};

    #[rustfmt::skip]
    const EGRESS_UNICAST: [[Egress; 6]; 5] = [
        //             no sibling  vepa private bridge passthru source
        /* vepa     */ [U,         U,   U,      U,     U,       U],
        /* private  */ [U,         U,   U,      U,     U,       U],
        /* bridge   */ [U,         U,   U,      L,     U,       U],
        /* passthru */ [U,         U,   U,      U,     U,       U],
        /* source   */ [U,         U,   U,      U,     U,       U],
    ];

    /// Multicast ignores `dst_sibling`; the test checks that for every value of it.
    #[rustfmt::skip]
    const EGRESS_MULTICAST: [Egress; 5] = [
        /* vepa */ U, /* private */ U, /* bridge */ UL, /* passthru */ U, /* source */ U,
    ];

    #[test]
    fn egress_matches_the_table() {
        let siblings = [None].into_iter().chain(Mode::ALL.map(Some));
        for (i, src) in Mode::ALL.into_iter().enumerate() {
            for (j, sibling) in siblings.clone().enumerate() {
                assert_eq!(
                    egress(src, Cast::Unicast, sibling),
                    EGRESS_UNICAST[i][j],
                    "egress({src}, Unicast, {sibling:?})"
                );
                assert_eq!(
                    egress(src, Cast::Multicast, sibling),
                    EGRESS_MULTICAST[i],
                    "egress({src}, Multicast, {sibling:?})"
                );
            }
        }
    }

    #[rustfmt::skip]
    const LOCAL: [[bool; 5]; 5] = [
        //             to: vepa priv bridge pass source
        /* vepa     */ [N,   N,   N,     N,   N],
        /* private  */ [N,   N,   N,     N,   N],
        /* bridge   */ [N,   N,   Y,     N,   N],
        /* passthru */ [N,   N,   N,     N,   N],
        /* source   */ [N,   N,   N,     N,   N],
    ];

    #[test]
    fn deliver_local_matches_the_table() {
        for (src, row) in Mode::ALL.into_iter().zip(&LOCAL) {
            for (dst, &want) in Mode::ALL.into_iter().zip(row) {
                assert_eq!(deliver_local(src, dst), want, "deliver_local({src}, {dst})");
            }
        }
    }

    /// Whatever egress switches locally must not also come back from the uplink to the same
    /// receivers: the two halves of the bridge rule must agree.
    #[test]
    fn bridge_multicast_is_never_delivered_twice() {
        for dst in Mode::ALL {
            let local = deliver_local(Mode::Bridge, dst);
            let reflected =
                deliver_from_uplink(dst, Origin::Sibling(Mode::Bridge), Cast::Multicast);
            assert!(
                !(local && reflected),
                "bridge -> {dst} would get two copies"
            );
        }
    }
}

#[cfg(test)]
mod mode_tests {
    //! The passthru and source rules: who owns the uplink, who may spoof, who receives by
    //! source. Rows follow `Mode::ALL` (vepa, private, bridge, passthru, source).

    use super::*;

    const Y: bool = true;
    const N: bool = false;

    #[test]
    fn only_passthru_owns_the_uplink_and_may_send_from_any_mac() {
        const OWNS: [bool; 5] = [N, N, N, Y, N];
        for (m, &want) in Mode::ALL.iter().zip(&OWNS) {
            assert_eq!(owns_uplink(*m), want, "owns_uplink({m})");
            assert_eq!(any_source(*m), want, "any_source({m})");
        }
    }

    /// Columns: external, itself, sibling vepa, private, bridge, passthru, source.
    #[rustfmt::skip]
    const BY_SOURCE: [[bool; 7]; 5] = [
        //             ext self  s:vepa s:priv s:bridge s:pass s:src
        /* vepa     */ [N,   N,    N,     N,     N,       N,     N],
        /* private  */ [N,   N,    N,     N,     N,       N,     N],
        /* bridge   */ [N,   N,    N,     N,     N,       N,     N],
        /* passthru */ [N,   N,    N,     N,     N,       N,     N],
        /* source   */ [Y,   N,    Y,     N,     Y,       N,     Y],
    ];

    fn origins() -> [Origin; 7] {
        let [v, pr, b, pa, s] = Mode::ALL;
        [Origin::External, Origin::Itself, Origin::Sibling(v), Origin::Sibling(pr), Origin::Sibling(b), Origin::Sibling(pa), Origin::Sibling(s)]
    }

    #[test]
    fn deliver_by_source_matches_the_table() {
        for (dst, row) in Mode::ALL.into_iter().zip(&BY_SOURCE) {
            for (origin, &want) in origins().into_iter().zip(row) {
                assert_eq!(deliver_by_source(dst, origin), want, "deliver_by_source({dst}, {origin:?})");
            }
        }
    }

    /// The datapath copies by source only for unicast: whatever multicast a source match
    /// admits, the flood already gives a source-mode guest. Pinned here, so a change to either
    /// rule that breaks it shows up.
    #[test]
    fn multicast_by_source_is_already_in_the_flood() {
        for origin in origins() {
            if deliver_by_source(Mode::Source, origin) {
                assert!(deliver_from_uplink(Mode::Source, origin, Cast::Multicast), "{origin:?}");
            }
        }
    }

    /// A source-mode guest is VEPA for its own traffic, both ways.
    #[test]
    fn source_mode_is_vepa_by_destination() {
        for origin in origins() {
            let as_vepa = |o: Origin| match o {
                Origin::Sibling(Mode::Source) => Origin::Sibling(Mode::Vepa),
                o => o,
            };
            for cast in [Cast::Unicast, Cast::Multicast] {
                assert_eq!(deliver_from_uplink(Mode::Source, origin, cast), deliver_from_uplink(Mode::Vepa, as_vepa(origin), cast), "{origin:?} {cast:?}");
            }
        }
        assert!(egress_always_uplink(Mode::Source));
    }
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    #[test]
    fn only_bridge_mode_keeps_frames_in_the_host() {
        let local: Vec<Mode> = Mode::ALL.into_iter().filter(|&m| !egress_always_uplink(m)).collect();
        assert_eq!(local, vec![Mode::Bridge]);
    }

    #[test]
    fn vepa_among_vepa_does_not_need_the_source() {
        assert!(!unicast_depends_on_origin(Mode::Vepa, &[Mode::Vepa]));
        assert!(!unicast_depends_on_origin(Mode::Vepa, &[Mode::Vepa, Mode::Source]));
    }

    #[test]
    fn a_private_guest_anywhere_makes_the_source_matter() {
        assert!(unicast_depends_on_origin(Mode::Vepa, &[Mode::Vepa, Mode::Private]));
        assert!(unicast_depends_on_origin(Mode::Private, &[Mode::Private]));
    }

    #[test]
    fn agrees_with_the_table_for_every_mode_set() {
        for dst in Mode::ALL {
            for sib in Mode::ALL {
                let origins = [Origin::External, Origin::Itself, Origin::Sibling(sib)];
                let answers: Vec<bool> = origins.iter().map(|&o| deliver_from_uplink(dst, o, Cast::Unicast)).collect();
                let varies = answers.iter().any(|&a| a != answers[0]);
                assert_eq!(unicast_depends_on_origin(dst, &[sib]), varies, "{dst:?} with a {sib:?} sibling");
            }
        }
    }
}
