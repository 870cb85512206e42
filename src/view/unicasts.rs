//! One worker's answer for an untagged unicast from the uplink, by destination MAC: the guest,
//! and when the frame is the common case (the guest's one queue is this worker's, and its mode
//! takes any unicast from outside) the batch it joins. One probe into one 16-byte entry
//! replaces the MAC table's lookup, the per-guest entry and the slot's batch index, three
//! dependent loads per frame (bench/README.md, "One probe per frame").
//!
//! The table is built once per publication on the control thread and only read after; it
//! never changes under a worker. Open addressing with linear probing, a quarter to half full:
//! even half full, a known MAC is found in 1.5 probes on average and an unknown one ends at an
//! empty entry after 2.5, mostly within one cache line (four entries to a line).

use crate::fib::{self, GuestId, MacTable};
use crate::wire::MacAddr;

/// `Unicast::batch` when the frame is not the common case for this worker.
pub const NO_BATCH: u16 = u16::MAX;

/// What a worker does with an untagged unicast for one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unicast {
    pub guest: GuestId,
    /// The index, in the worker's batches, of the guest's one queue when this worker owns it
    /// and the guest's mode takes every unicast from outside whoever sent it; else `NO_BATCH`.
    pub batch: u16,
    /// Frames longer than this are oversize for the guest.
    pub max_len: u32,
}

impl Unicast {
    /// The batch a frame of `len` bytes joins, if it is the common case.
    #[inline(always)]
    pub fn batch_for(self, len: usize) -> Option<u16> {
        (self.batch != NO_BATCH && len <= self.max_len as usize).then_some(self.batch)
    }
}

/// Never a key: `fib::key` leaves the top bits clear.
const EMPTY: u64 = u64::MAX;

/// 16 bytes, aligned to them, so that no entry straddles two cache lines.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
struct Entry {
    key: u64,
    to: Unicast,
}

const VACANT: Entry = Entry { key: EMPTY, to: Unicast { guest: GuestId(0), batch: NO_BATCH, max_len: 0 } };

/// Untagged MAC -> `Unicast`, for one worker. See the module doc.
#[derive(Debug)]
pub struct UnicastIndex {
    entries: Box<[Entry]>,
    /// `entries.len() - 1` (a power of two less one).
    mask: usize,
    /// 64 less log2 of `entries.len()`: the hash is the product's top bits.
    shift: u32,
}

impl UnicastIndex {
    /// The index of every untagged MAC in `table`, its guest's answer from `to(guest)`.
    pub fn new(table: &MacTable, to: impl Fn(GuestId) -> Unicast) -> UnicastIndex {
        let macs: Vec<(&MacAddr, GuestId)> = table.guests().filter(|e| e.vlan == 0).flat_map(|e| e.macs.iter().map(move |m| (m, e.id))).collect();
        let len = (2 * macs.len()).next_power_of_two().max(2);
        let mut index = UnicastIndex { entries: vec![VACANT; len].into_boxed_slice(), mask: len - 1, shift: 64 - len.trailing_zeros() };
        for (mac, g) in macs {
            let k = fib::key(0, mac);
            let mut i = index.home(k);
            while index.entries[i].key != EMPTY {
                i = (i + 1) & index.mask;
            }
            index.entries[i] = Entry { key: k, to: to(g) };
        }
        index
    }

    #[inline(always)]
    fn home(&self, k: u64) -> usize {
        // Fibonacci hashing: the top bits of the product depend on every bit of the MAC, so
        // MACs that differ in their last octet only (a host's VMs) spread over the table.
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The answer for a unicast to `mac`, if an untagged guest owns it.
    #[inline(always)]
    pub fn get(&self, mac: &MacAddr) -> Option<Unicast> {
        let k = fib::key(0, mac);
        let mut i = self.home(k);
        loop {
            // `home` and the mask keep `i` in the table: were they wrong, this panics rather
            // than call a guest's MAC unknown.
            let e = &self.entries[i];
            if e.key == k {
                return Some(e.to);
            }
            if e.key == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }

    /// How many MACs it holds.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.key != EMPTY).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fib::MacTableBuilder;
    use crate::policy::Mode;

    fn mac(i: u32) -> MacAddr {
        let b = i.to_be_bytes();
        MacAddr([0x52, 0x54, b[0], b[1], b[2], b[3]])
    }

    /// Every untagged MAC answers with its guest's entry; tagged guests' MACs, and MACs nobody
    /// has, answer nothing; whatever the table's size, with MACs that differ in one octet.
    #[test]
    fn answers_each_untagged_mac_with_its_guests_entry() {
        for (guests, per_guest) in [(1u32, 1u32), (2, 1), (8, 3), (64, 64), (990, 5)] {
            let mut b = MacTableBuilder::default();
            for g in 0..guests {
                let macs: Vec<MacAddr> = (0..per_guest).map(|k| mac(g * per_guest + k)).collect();
                let vlan = if g % 7 == 6 { 10 } else { 0 };
                b.add_guest_in_vlan(GuestId(g as u16), vlan, &format!("g{g}"), &macs, Mode::Vepa, 1514).expect("distinct MACs");
            }
            let fib = b.build(1);
            let answer = |g: GuestId| Unicast { guest: g, batch: g.0 ^ 3, max_len: 1000 + u32::from(g.0) };
            let index = UnicastIndex::new(&fib, answer);
            let mut untagged = 0;
            for g in 0..guests {
                for k in 0..per_guest {
                    let got = index.get(&mac(g * per_guest + k));
                    if g % 7 == 6 {
                        assert_eq!(got, None, "guest {g} is tagged");
                    } else {
                        assert_eq!(got, Some(answer(GuestId(g as u16))), "guest {g} MAC {k}");
                        untagged += 1;
                    }
                }
            }
            assert_eq!(index.len(), untagged);
            for other in guests * per_guest..guests * per_guest + 500 {
                assert_eq!(index.get(&mac(other)), None);
            }
        }
    }

    /// MACs whose home is the table's last entry: the second and third wrap to its start,
    /// and a lookup that misses walks past all three to the first empty entry.
    #[test]
    fn probes_wrap_around_the_end_of_the_table() {
        let last = |o: u8| MacAddr([0x52, 0x54, 0, 0, 0, o]);
        let homed_last = [0x07, 0x0f, 0x14];
        let mut b = MacTableBuilder::default();
        for (g, &o) in homed_last.iter().enumerate() {
            b.add_guest(&format!("g{g}"), &[last(o)], Mode::Vepa, 1514).expect("distinct MACs");
        }
        let index = UnicastIndex::new(&b.build(1), |g| Unicast { guest: g, batch: g.0, max_len: 1514 });
        assert_eq!((index.entries.len(), index.len()), (8, 3));
        for (g, &o) in homed_last.iter().enumerate() {
            assert_eq!(index.home(fib::key(0, &last(o))), index.mask, "{o:#x} is homed at the last entry");
            assert_eq!(index.get(&last(o)).map(|u| u.guest), Some(GuestId(g as u16)), "{o:#x}");
        }
        assert_eq!(index.home(fib::key(0, &last(0x1c))), index.mask);
        assert_eq!(index.get(&last(0x1c)), None);
    }

    #[test]
    fn an_empty_index_answers_nothing() {
        let empty = UnicastIndex::new(&MacTableBuilder::default().build(1), |g| Unicast { guest: g, batch: 0, max_len: 0 });
        assert_eq!(empty.len(), 0);
        assert_eq!(empty.get(&MacAddr([0; 6])), None);
        assert_eq!(empty.get(&mac(1)), None);
    }

    #[test]
    fn the_common_case_needs_a_batch_and_a_fitting_length() {
        let u = Unicast { guest: GuestId(1), batch: 4, max_len: 1514 };
        assert_eq!(u.batch_for(1514), Some(4));
        assert_eq!(u.batch_for(1515), None);
        assert_eq!(Unicast { batch: NO_BATCH, ..u }.batch_for(64), None);
    }
}
