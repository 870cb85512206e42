//! The source table (mode source): which guests get a copy of a frame from the uplink by its
//! *source* MAC, as Linux's macvlan_forward_source does.
//!
//! Built on the control thread together with the other tables of a publication (from the
//! guests' `sources` and the MAC table of the same publication, so the policy for a listed
//! MAC that belongs to a guest is settled here, not per frame) and read by the workers
//! without locks. A frame from a source nobody lists costs one hash lookup; with no guest in
//! source mode the table is empty and the datapath does not look at all.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;

use crate::config::GuestConfig;
use crate::fib::{GuestId, MacTable};
use crate::policy::{self, Origin};
use crate::wire::MacAddr;

/// Source MAC -> the guests that receive its frames by source.
#[derive(Debug, Default)]
pub struct SourceTable {
    by_mac: HashMap<u64, Box<[GuestId]>, FxBuildHasher>,
}

impl SourceTable {
    /// The table for `guests` (id and config) against `fib`, the MAC table they are published
    /// with: a listed MAC that belongs to a guest is kept only where
    /// `policy::deliver_by_source` lets that guest's frames through.
    pub fn build<'a>(guests: impl IntoIterator<Item = (GuestId, &'a GuestConfig)>, fib: &MacTable) -> SourceTable {
        let mut lists: HashMap<u64, Vec<GuestId>, FxBuildHasher> = HashMap::default();
        for (id, g) in guests {
            for src in &g.sources {
                // In the guest's own VLAN: a sibling there (a private one, say) is the one whose
                // reflected frames the policy must judge. (MACs are unique on the switch.)
                let origin = match fib.lookup_in(g.vlan, src) {
                    None => Origin::External,
                    Some(owner) if owner == id => Origin::Itself,
                    Some(owner) => Origin::Sibling(fib.guest(owner).mode),
                };
                if policy::deliver_by_source(g.mode, origin) {
                    lists.entry(src.as_u64()).or_default().push(id);
                }
            }
        }
        SourceTable { by_mac: lists.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect() }
    }

    /// No guest receives by source: the datapath skips the lookup.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.by_mac.is_empty()
    }

    /// The guests listing `src`, if any. O(1), no allocation.
    #[inline]
    pub fn lookup(&self, src: &MacAddr) -> Option<&[GuestId]> {
        self.by_mac.get(&src.as_u64()).map(|l| &l[..])
    }

    /// Keeps only the guests `keep` admits (those the delivery map lists: a worker needs
    /// their queues to deliver).
    pub(super) fn retain_guests(&mut self, keep: impl Fn(GuestId) -> bool) {
        self.by_mac.retain(|_, list| {
            let kept: Vec<GuestId> = list.iter().copied().filter(|&g| keep(g)).collect();
            *list = kept.into_boxed_slice();
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().expect("mac")
    }

    fn table(text: &str) -> (SourceTable, crate::config::Config) {
        let cfg = crate::config::parse_str(text, std::path::Path::new("t.toml")).expect("config");
        let fib = MacTable::from_config(&cfg).expect("fib");
        let ids = cfg.guests.iter().enumerate().map(|(i, g)| (GuestId(i as u16), g));
        (SourceTable::build(ids, &fib), cfg)
    }

    const GUESTS: &str = "\
[[guest]]\nname = \"mon\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/tmp/mon.sock\"\nmode = \"source\"\n\
sources = [\"02:00:00:00:aa:01\", \"02:00:00:00:aa:02\", \"52:54:00:00:00:02\", \"52:54:00:00:00:03\"]\n\
[[guest]]\nname = \"mon2\"\nmac = \"52:54:00:00:00:04\"\nsocket = \"/tmp/mon2.sock\"\nmode = \"source\"\n\
sources = \"02:00:00:00:aa:02\"\n\
[[guest]]\nname = \"v\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/tmp/v.sock\"\n\
[[guest]]\nname = \"p\"\nmac = \"52:54:00:00:00:03\"\nsocket = \"/tmp/p.sock\"\nmode = \"private\"\n";

    #[test]
    fn lists_every_guest_by_each_source() {
        let (t, _) = table(GUESTS);
        assert!(!t.is_empty());
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:01")), Some(&[GuestId(0)][..]));
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:02")), Some(&[GuestId(0), GuestId(1)][..]), "two guests may list one station");
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:03")), None, "an unlisted source");
        assert_eq!(t.lookup(&mac("52:54:00:00:00:01")), None, "a guest's own MAC is never a source");
    }

    /// A sibling's MAC follows the policy table: a VEPA sibling's reflected frames are copied,
    /// a private sibling's are not (private isolation).
    #[test]
    fn siblings_follow_the_policy() {
        let (t, _) = table(GUESTS);
        assert_eq!(t.lookup(&mac("52:54:00:00:00:02")), Some(&[GuestId(0)][..]));
        assert_eq!(t.lookup(&mac("52:54:00:00:00:03")), None);
    }

    /// The same in a VLAN: the private sibling is found in the source guest's VLAN, so its
    /// reflected frames are still not copied.
    #[test]
    fn siblings_follow_the_policy_in_a_vlan() {
        let tagged = GUESTS.replace("mode = \"source\"\n", "mode = \"source\"\nvlan = 10\n").replace("mode = \"private\"\n", "mode = \"private\"\nvlan = 10\n");
        let (t, cfg) = table(&tagged);
        assert_eq!(cfg.guests[3].vlan, 10, "{tagged}");
        assert_eq!(t.lookup(&mac("52:54:00:00:00:03")), None, "private isolation holds in VLAN 10");
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:01")), Some(&[GuestId(0)][..]));
    }

    #[test]
    fn no_source_guest_no_table() {
        let (t, _) = table("[[guest]]\nname = \"v\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/tmp/v.sock\"\n");
        assert!(t.is_empty());
        let (t, _) = table("[[guest]]\nname = \"s\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/tmp/v.sock\"\nmode = \"source\"\nsources = []\n");
        assert!(t.is_empty(), "a source-mode guest with an empty list adds nothing");
    }

    #[test]
    fn retain_drops_guests_and_empty_entries() {
        let (mut t, _) = table(GUESTS);
        t.retain_guests(|g| g != GuestId(0));
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:01")), None);
        assert_eq!(t.lookup(&mac("02:00:00:00:aa:02")), Some(&[GuestId(1)][..]));
    }
}
