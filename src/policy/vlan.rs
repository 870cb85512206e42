//! The VLAN partition over the mode tables: guests in different VLANs (untagged being VLAN
//! 0) are on different segments, as macvlan devices on different VLAN sub-interfaces of one
//! port would be (`eth0.10` and `eth0.20` are two lower devices, each with its own macvlan
//! port). Within one VLAN the mode tables of `table.rs` apply unchanged; across VLANs nothing
//! is delivered inside the host, whatever the modes (a bridge-mode guest switches locally
//! only within its VLAN), and the external switch decides, as for VEPA.

use super::{deliver_from_uplink, deliver_local, egress, Cast, Egress, Mode, Origin};

/// Whether a frame of VLAN `frame_vlan` and a guest of VLAN `guest_vlan` share a segment.
#[inline]
pub fn same_segment(frame_vlan: u16, guest_vlan: u16) -> bool {
    frame_vlan == guest_vlan
}

/// `deliver_from_uplink` for a frame that arrived in VLAN `frame_vlan` (its tag, or 0) and a
/// guest in `dst_vlan`. `origin` is judged within the frame's VLAN (the source is looked up
/// there), so a sibling is always one of the same VLAN.
#[inline]
pub fn deliver_from_uplink_in(dst_mode: Mode, dst_vlan: u16, frame_vlan: u16, origin: Origin, cast: Cast) -> bool {
    same_segment(frame_vlan, dst_vlan) && deliver_from_uplink(dst_mode, origin, cast)
}

/// `deliver_local` between a sender in `src_vlan` and a sibling in `dst_vlan`.
#[inline]
pub fn deliver_local_in(src_mode: Mode, src_vlan: u16, dst_mode: Mode, dst_vlan: u16) -> bool {
    same_segment(src_vlan, dst_vlan) && deliver_local(src_mode, dst_mode)
}

/// `egress` for a sender in `src_vlan`; `dst_sibling` is the (mode, VLAN) of the guest owning
/// a unicast destination. A guest of another VLAN is no sibling: the frame goes out.
#[inline]
pub fn egress_in(src_mode: Mode, src_vlan: u16, cast: Cast, dst_sibling: Option<(Mode, u16)>) -> Egress {
    let sibling = dst_sibling.filter(|&(_, v)| same_segment(src_vlan, v)).map(|(m, _)| m);
    egress(src_mode, cast, sibling)
}

#[cfg(test)]
mod tests {
    //! The mode tables are pinned in `table.rs`; here, that the partition leaves them whole
    //! within a VLAN and empty across VLANs, for every mode, origin and cast.

    use super::*;

    const VLANS: [(u16, u16); 4] = [(0, 0), (10, 10), (0, 10), (10, 20)];

    fn origins() -> Vec<Origin> {
        [Origin::External, Origin::Itself].into_iter().chain(Mode::ALL.map(Origin::Sibling)).collect()
    }

    #[test]
    fn from_uplink_is_the_mode_table_within_a_vlan_and_nothing_across() {
        for (frame, guest) in VLANS {
            for dst in Mode::ALL {
                for origin in origins() {
                    for cast in [Cast::Unicast, Cast::Multicast] {
                        let want = frame == guest && deliver_from_uplink(dst, origin, cast);
                        assert_eq!(deliver_from_uplink_in(dst, guest, frame, origin, cast), want, "{dst} in {guest}, frame in {frame}, {origin:?} {cast:?}");
                    }
                }
            }
        }
        // The two halves of the rule, by example: an outside broadcast tagged 10 reaches a
        // VEPA guest of VLAN 10 only; an untagged one reaches untagged guests only.
        assert!(deliver_from_uplink_in(Mode::Vepa, 10, 10, Origin::External, Cast::Multicast));
        assert!(!deliver_from_uplink_in(Mode::Vepa, 10, 0, Origin::External, Cast::Multicast));
        assert!(!deliver_from_uplink_in(Mode::Vepa, 0, 10, Origin::External, Cast::Unicast));
    }

    #[test]
    fn local_delivery_stays_inside_one_vlan() {
        for (a, b) in VLANS {
            for src in Mode::ALL {
                for dst in Mode::ALL {
                    assert_eq!(deliver_local_in(src, a, dst, b), a == b && deliver_local(src, dst), "{src} in {a} -> {dst} in {b}");
                }
            }
        }
        assert!(deliver_local_in(Mode::Bridge, 10, Mode::Bridge, 10));
        assert!(!deliver_local_in(Mode::Bridge, 10, Mode::Bridge, 20));
    }

    #[test]
    fn a_bridge_guest_of_another_vlan_is_reached_through_the_uplink() {
        for (a, b) in VLANS {
            for src in Mode::ALL {
                for dst in Mode::ALL {
                    for cast in [Cast::Unicast, Cast::Multicast] {
                        let want = if a == b { egress(src, cast, Some(dst)) } else { egress(src, cast, None) };
                        assert_eq!(egress_in(src, a, cast, Some((dst, b))), want, "{src} in {a} -> {dst} in {b}, {cast:?}");
                    }
                }
            }
        }
        assert_eq!(egress_in(Mode::Bridge, 10, Cast::Unicast, Some((Mode::Bridge, 10))), Egress::Local);
        assert_eq!(egress_in(Mode::Bridge, 10, Cast::Unicast, Some((Mode::Bridge, 20))), Egress::Uplink);
        assert_eq!(egress_in(Mode::Bridge, 10, Cast::Multicast, None), Egress::UplinkAndLocal);
    }
}
