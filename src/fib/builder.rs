//! Assembles a [`MacTable`] on the control thread, refusing anything that would make a
//! lookup ambiguous (macvlan likewise refuses a second device with an address already in
//! use on the port).

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use super::table::{key, GuestEntry, MacTable};
use super::{FibError, GuestId};
use crate::config::MAX_GUESTS;
use crate::policy::Mode;
use crate::wire::MacAddr;

/// Collects guests, then freezes them into a table. A failed `add_guest` leaves the builder
/// as it was, so the caller may report the error and carry on with the other guests.
#[derive(Debug, Default)]
pub struct MacTableBuilder {
    /// Keyed by (VLAN, MAC): what the table looks up.
    by_mac: HashMap<u64, GuestId, FxBuildHasher>,
    /// Keyed by the MAC alone, whatever its VLAN: who holds it, for the duplicate check.
    owner: HashMap<u64, GuestId, FxBuildHasher>,
    /// Indexed by id; None for an id not in use.
    guests: Vec<Option<GuestEntry>>,
}

impl MacTableBuilder {
    /// Adds a guest owning `macs`, with the lowest id not yet taken.
    pub fn add_guest(
        &mut self,
        name: &str,
        macs: &[MacAddr],
        mode: Mode,
        max_frame_len: u32,
    ) -> Result<GuestId, FibError> {
        let free = self.guests.iter().position(Option::is_none).unwrap_or(self.guests.len());
        // MAX_GUESTS fits in a u16, so the conversion only fails past it.
        let id = u16::try_from(free).map(GuestId).map_err(|_| FibError::TooManyGuests)?;
        self.add_guest_as(id, name, macs, mode, max_frame_len)
    }

    /// Adds a guest owning `macs` under id `id` (the switch keeps a guest's id for its whole
    /// life, so a table built after a change names every other guest as before).
    pub fn add_guest_as(
        &mut self,
        id: GuestId,
        name: &str,
        macs: &[MacAddr],
        mode: Mode,
        max_frame_len: u32,
    ) -> Result<GuestId, FibError> {
        self.add_guest_in_vlan(id, 0, name, macs, mode, max_frame_len)
    }

    /// `add_guest_as` for a guest in VLAN `vlan` (0: untagged): its MACs are keyed by
    /// (VLAN, MAC). A MAC stays one guest's on the whole switch, whatever the VLANs: the
    /// port's MAC filters, VMDq pools and steering rules are per MAC (see README, "VLANs").
    pub fn add_guest_in_vlan(
        &mut self,
        id: GuestId,
        vlan: u16,
        name: &str,
        macs: &[MacAddr],
        mode: Mode,
        max_frame_len: u32,
    ) -> Result<GuestId, FibError> {
        if id.index() >= MAX_GUESTS {
            return Err(FibError::TooManyGuests);
        }
        if let Some(Some(other)) = self.guests.get(id.index()) {
            return Err(FibError::IdTaken { id, first: other.name.to_string(), second: name.to_owned() });
        }
        if macs.is_empty() {
            return Err(FibError::NoMac {
                guest: name.to_owned(),
            });
        }
        // Check everything before inserting anything, so an error leaves no partial guest.
        for (i, mac) in macs.iter().enumerate() {
            if mac.is_multicast() || mac.is_zero() {
                return Err(FibError::NotUnicast {
                    guest: name.to_owned(),
                    mac: *mac,
                });
            }
            let first = match self.owner.get(&key(0, mac)) {
                Some(owner) => self.guests[owner.index()].as_ref().map(|g| g.name.to_string()),
                None if macs[..i].contains(mac) => Some(name.to_owned()),
                None => None,
            };
            if let Some(first) = first {
                return Err(FibError::DuplicateMac {
                    mac: *mac,
                    first,
                    second: name.to_owned(),
                });
            }
        }
        for mac in macs {
            self.by_mac.insert(key(vlan, mac), id);
            self.owner.insert(key(0, mac), id);
        }
        if self.guests.len() <= id.index() {
            self.guests.resize(id.index() + 1, None);
        }
        self.guests[id.index()] = Some(GuestEntry {
            id,
            name: name.into(),
            macs: macs.into(),
            mode,
            max_frame_len,
            vlan,
        });
        Ok(id)
    }

    pub fn build(self, epoch: u64) -> MacTable {
        MacTable::from_parts(self.by_mac, self.guests, epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::FibError;

    fn mac(last: u16) -> MacAddr {
        let [hi, lo] = last.to_be_bytes();
        MacAddr::new([0x52, 0x54, 0x00, 0x00, hi, lo])
    }

    #[test]
    fn lookup_and_ownership() {
        let mut b = MacTableBuilder::default();
        let vm1 = b
            .add_guest("vm1", &[mac(1), mac(0x11)], Mode::Vepa, 1518)
            .expect("vm1");
        let vm2 = b
            .add_guest("vm2", &[mac(2)], Mode::Private, 9018)
            .expect("vm2");
        let t = b.build(7);

        assert_eq!((vm1, vm2), (GuestId(0), GuestId(1)));
        assert_eq!(t.epoch(), 7);
        assert_eq!(t.len(), 2);
        assert!(!t.is_empty());
        assert_eq!(t.lookup(&mac(1)), Some(vm1));
        assert_eq!(t.lookup(&mac(0x11)), Some(vm1));
        assert_eq!(t.lookup(&mac(2)), Some(vm2));
        assert_eq!(t.lookup(&mac(3)), None);
        assert_eq!(t.lookup(&MacAddr::BROADCAST), None);
        assert!(t.owns(vm1, &mac(0x11)));
        assert!(!t.owns(vm2, &mac(0x11)));
        assert!(!t.owns(vm2, &mac(3)));

        let e = t.guest(vm2);
        assert_eq!(
            (e.id, &*e.name, e.mode, e.max_frame_len),
            (vm2, "vm2", Mode::Private, 9018)
        );
        assert_eq!(&*t.guest(vm1).macs, &[mac(1), mac(0x11)]);
        assert_eq!(t.get(GuestId(2)), None);
        assert_eq!(t.guests().count(), 2);
    }

    #[test]
    fn refuses_duplicates_and_leaves_the_builder_unchanged() {
        let mut b = MacTableBuilder::default();
        b.add_guest("vm1", &[mac(1)], Mode::Vepa, 1518)
            .expect("vm1");

        let across = b
            .add_guest("vm2", &[mac(2), mac(1)], Mode::Vepa, 1518)
            .expect_err("dup");
        assert_eq!(
            across.to_string(),
            "MAC 52:54:00:00:00:01 is claimed by both guest \"vm1\" and guest \"vm2\""
        );
        let within = b
            .add_guest("vm3", &[mac(3), mac(3)], Mode::Vepa, 1518)
            .expect_err("dup");
        assert_eq!(
            within,
            FibError::DuplicateMac {
                mac: mac(3),
                first: "vm3".into(),
                second: "vm3".into()
            }
        );

        let t = b.build(0);
        assert_eq!(t.len(), 1);
        assert_eq!(
            t.lookup(&mac(2)),
            None,
            "the failed guest left nothing behind"
        );
    }

    /// Keys are (VLAN, MAC): a guest is found only in its own VLAN, its sources are its own
    /// only there, and a MAC is one guest's whatever the VLANs.
    #[test]
    fn lookups_are_per_vlan_and_macs_stay_unique() {
        let mut b = MacTableBuilder::default();
        let v10 = b.add_guest_in_vlan(GuestId(0), 10, "v10", &[mac(1), mac(0x11)], Mode::Vepa, 1518).expect("v10");
        let v20 = b.add_guest_in_vlan(GuestId(1), 20, "v20", &[mac(2)], Mode::Bridge, 1518).expect("v20");
        let plain = b.add_guest("plain", &[mac(3)], Mode::Vepa, 1518).expect("untagged");
        let across = b.add_guest_in_vlan(GuestId(5), 20, "again", &[mac(1)], Mode::Vepa, 1518).expect_err("same MAC, other VLAN");
        assert_eq!(across, FibError::DuplicateMac { mac: mac(1), first: "v10".into(), second: "again".into() });
        let t = b.build(0);

        assert_eq!(t.lookup_in(10, &mac(1)), Some(v10));
        assert_eq!(t.lookup_in(10, &mac(0x11)), Some(v10));
        assert_eq!(t.lookup_in(20, &mac(1)), None, "not in another VLAN");
        assert_eq!(t.lookup(&mac(1)), None, "nor untagged");
        assert_eq!(t.lookup_in(20, &mac(2)), Some(v20));
        assert_eq!(t.lookup(&mac(3)), Some(plain));
        assert_eq!(t.lookup_in(0, &mac(3)), Some(plain));
        assert_eq!(t.lookup_in(10, &mac(3)), None, "an untagged guest is in no VLAN");
        assert!(t.owns(v10, &mac(0x11)) && t.owns(v20, &mac(2)) && t.owns(plain, &mac(3)));
        assert!(!t.owns(v20, &mac(1)) && !t.owns(plain, &mac(2)));
        assert_eq!((t.guest(v10).vlan, t.guest(v20).vlan, t.guest(plain).vlan), (10, 20, 0));
        assert_eq!(t.get(GuestId(5)), None, "the refused guest left nothing");
    }

    #[test]
    fn refuses_non_station_addresses() {
        let mut b = MacTableBuilder::default();
        for bad in [
            MacAddr::BROADCAST,
            MacAddr::ZERO,
            MacAddr::new([0x01, 0, 0x5e, 0, 0, 1]),
        ] {
            let e = b
                .add_guest("vm1", &[bad], Mode::Vepa, 1518)
                .expect_err("not unicast");
            assert_eq!(
                e.to_string(),
                format!("guest \"vm1\": {bad} is not a unicast station address")
            );
        }
        let e = b
            .add_guest("vm1", &[], Mode::Vepa, 1518)
            .expect_err("no MAC");
        assert_eq!(e.to_string(), "guest \"vm1\" has no MAC address");
        assert!(b.build(0).is_empty());
    }

    #[test]
    fn holds_max_guests_and_no_more() {
        let mut b = MacTableBuilder::default();
        for i in 0..MAX_GUESTS {
            let id = b
                .add_guest(&format!("g{i}"), &[mac(i as u16)], Mode::Vepa, 1518)
                .expect("fits");
            assert_eq!(id.index(), i);
        }
        assert_eq!(
            b.add_guest("extra", &[mac(0xffff)], Mode::Vepa, 1518),
            Err(FibError::TooManyGuests)
        );
        let t = b.build(1);
        assert_eq!(t.len(), MAX_GUESTS);
        for i in 0..MAX_GUESTS {
            assert_eq!(t.lookup(&mac(i as u16)), Some(GuestId(i as u16)));
        }
    }

    #[test]
    fn from_config_numbers_guests_in_file_order() {
        let cfg = crate::config::parse_str(
            crate::config::DEMO_GUESTS_TOML,
            std::path::Path::new("demo.toml"),
        )
        .expect("demo config is valid");
        let t = MacTable::from_config(&cfg).expect("demo table");
        assert_eq!(t.epoch(), 0);
        assert_eq!(t.lookup(&cfg.guests[1].primary_mac()), Some(GuestId(1)));
        assert_eq!(&*t.guest(GuestId(0)).name, "vm1");
        assert_eq!(t.guest(GuestId(0)).max_frame_len, 1518);
    }
}
