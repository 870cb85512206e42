//! An owned packet buffer (`rte_mbuf` chain) that is freed exactly once.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use super::mempool::Mempool;
use crate::sys;

/// `RTE_MBUF_F_RX_VLAN_STRIPPED`: the port removed an 802.1Q tag; its TCI is in `vlan_tci`.
const RX_VLAN_STRIPPED: u64 = 1 << 6;
/// `RTE_MBUF_F_TX_VLAN`: the port is to insert a tag with `vlan_tci` on send.
const TX_VLAN: u64 = 1 << 57;

/// One reference to an mbuf chain. Dropping it frees the reference (`rte_pktmbuf_free`);
/// `into_raw` hands it to DPDK instead. Extra references for multicast come from `share`.
///
/// Writes (`data_mut`, `append`, `chain`, `set_tag`) go through only while this is the one
/// reference (`is_exclusive`): once shared, the handles may sit on other threads, reading,
/// and a write through any of them would race with those reads.
#[repr(transparent)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf reference may move between threads; freeing it from any EAL thread is allowed.
unsafe impl Send for Mbuf {}

impl Mbuf {
    pub fn alloc(pool: &Mempool) -> Option<Mbuf> {
        // SAFETY: pool is a live pktmbuf pool.
        NonNull::new(unsafe { sys::shim_rte_pktmbuf_alloc(pool.as_ptr()) }).map(Mbuf)
    }

    /// # Safety
    /// `raw` must be a valid mbuf reference that the caller owns and gives up.
    #[inline]
    pub unsafe fn from_raw(raw: *mut sys::rte_mbuf) -> Mbuf {
        // SAFETY: the caller guarantees raw is a valid (non-null) owned mbuf.
        Mbuf(unsafe { NonNull::new_unchecked(raw) })
    }

    #[inline]
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let raw = self.0.as_ptr();
        std::mem::forget(self);
        raw
    }

    #[inline]
    fn head(&self) -> &sys::rte_mbuf {
        // SAFETY: self owns a reference to a live mbuf.
        unsafe { self.0.as_ref() }
    }

    /// Length of the whole frame (all segments).
    #[inline]
    pub fn pkt_len(&self) -> usize {
        self.head().pkt_len as usize
    }

    #[inline]
    pub fn nb_segs(&self) -> u16 {
        self.head().nb_segs
    }

    /// The first segment's bytes: the whole frame unless it is chained.
    #[inline]
    pub fn data(&self) -> &[u8] {
        let m = self.head();
        // SAFETY: buf_addr + data_off .. + data_len is the segment's initialised data.
        unsafe {
            std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize)
        }
    }

    /// Whether this is the only reference to the frame (then nobody else can read it while
    /// it is written: another reference would need `share`, which takes this handle).
    /// Every segment is asked, not only the first: a thread freeing its reference to a chain
    /// releases the first segment before it reads the next one's link, and a writer that went
    /// by the first alone could change that link under it (`chain`).
    #[inline]
    pub fn is_exclusive(&self) -> bool {
        // SAFETY: self holds a reference to the chain while the walk and the reads run.
        let alone = unsafe { chain(self.0.as_ptr()) }.all(|seg| unsafe { refcnt_of(seg) }.load(Ordering::Relaxed) == 1);
        if !alone {
            return false;
        }
        // The counts are read relaxed; the last other owner dropped its reference with a
        // release decrement. This orders its reads before our writes (as `Arc::get_mut`).
        std::sync::atomic::fence(Ordering::Acquire);
        true
    }

    /// Mutable first segment; None if the frame is shared.
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        if !self.is_exclusive() {
            return None;
        }
        let m = self.head();
        let (addr, off, len) = (m.buf_addr as *mut u8, m.data_off as usize, m.data_len as usize);
        // SAFETY: as in `data`, and &mut self with refcnt 1 means no other reader.
        Some(unsafe { std::slice::from_raw_parts_mut(addr.add(off), len) })
    }

    /// Grows the last segment by `len` bytes and returns them; None if the tailroom is short
    /// or the frame is shared.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        if !self.is_exclusive() {
            return None;
        }
        // SAFETY: self owns the only reference; rte_pktmbuf_append checks the tailroom.
        let p = unsafe { sys::shim_rte_pktmbuf_append(self.0.as_ptr(), len) };
        // SAFETY: on success p points at len writable bytes inside the mbuf.
        NonNull::new(p as *mut u8).map(|p| unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), len as usize) })
    }

    /// Appends `tail` after the last segment of `self`; gives `tail` back if either is shared.
    pub fn chain(&mut self, tail: Mbuf) -> Result<(), Mbuf> {
        if !self.is_exclusive() || !tail.is_exclusive() {
            return Err(tail);
        }
        // SAFETY: both are the only references to distinct chains; on success tail is owned
        // by self's chain.
        let ret = unsafe { sys::shim_rte_pktmbuf_chain(self.0.as_ptr(), tail.0.as_ptr()) };
        if ret == 0 {
            std::mem::forget(tail);
            Ok(())
        } else {
            Err(tail)
        }
    }

    /// Iterates over the segments' data.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        // SAFETY: the walk borrows self, which holds a reference to the chain.
        unsafe { chain(self.0.as_ptr()) }.map(|seg| {
            // SAFETY: seg is a live segment; buf_addr + data_off .. + data_len is its data.
            let m = unsafe { &*seg };
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts((m.buf_addr as *const u8).add(m.data_off as usize), m.data_len as usize) }
        })
    }

    /// A copy of the whole frame, all segments joined.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.pkt_len());
        for s in self.segments() {
            v.extend_from_slice(s);
        }
        v
    }

    /// A 32-bit tag the application may set on a received frame (DPDK's `hash.usr`): the
    /// datapath writes the destination here before handing a frame to another worker.
    #[inline]
    pub fn tag(&self) -> u32 {
        // SAFETY: every variant of the hash union is plain data; reading u32 is always valid.
        unsafe { self.head().__bindgen_anon_2.hash.usr }
    }

    /// Sets the tag; false (and nothing written) if the frame is shared: tag it before
    /// sharing, and every reference carries the tag.
    #[inline]
    #[must_use]
    pub fn set_tag(&mut self, tag: u32) -> bool {
        if !self.is_exclusive() {
            return false;
        }
        // SAFETY: the only reference, held through &mut: nobody else reads the metadata.
        unsafe { (*self.0.as_ptr()).__bindgen_anon_2.hash.usr = tag };
        true
    }

    /// The TCI of the 802.1Q tag the port took off this frame (VLAN strip offload), if it did.
    #[inline]
    pub fn stripped_vlan(&self) -> Option<u16> {
        let m = self.head();
        (m.ol_flags & RX_VLAN_STRIPPED != 0).then_some(m.vlan_tci)
    }

    /// Removes the 802.1Q tag after the addresses (the caller saw one there): the addresses
    /// move over the tag and the frame starts 4 bytes later. False, and nothing changed, if
    /// the frame is shared or its first segment holds no whole tag.
    #[inline]
    #[must_use]
    pub fn strip_vlan(&mut self) -> bool {
        let Some(data) = self.data_mut() else { return false };
        if !crate::wire::vlan::strip(data) {
            return false;
        }
        let tag = crate::wire::VLAN_TAG_LEN as u16;
        // SAFETY: the only reference, held through &mut; the first segment holds more than
        // `tag` bytes (checked by `strip`), so the offsets stay inside its data.
        unsafe {
            let m = &mut *self.0.as_ptr();
            m.data_off += tag;
            m.data_len -= tag;
            m.pkt_len -= u32::from(tag);
        }
        true
    }

    /// Puts an 802.1Q tag with `tci` after the addresses, in the headroom. False, and nothing
    /// changed, if the frame is shared, has less than 4 bytes of headroom or no whole header.
    #[inline]
    #[must_use]
    pub fn insert_vlan(&mut self, tci: u16) -> bool {
        let tag = crate::wire::VLAN_TAG_LEN as u16;
        if !self.is_exclusive() || self.head().data_off < tag || usize::from(self.head().data_len) < crate::wire::ETHER_HDR_LEN {
            return false;
        }
        // SAFETY: the only reference, held through &mut; `tag` bytes of headroom exist, so
        // the grown first segment stays inside the buffer.
        let data = unsafe {
            let m = &mut *self.0.as_ptr();
            m.data_off -= tag;
            m.data_len += tag;
            m.pkt_len += u32::from(tag);
            std::slice::from_raw_parts_mut((m.buf_addr as *mut u8).add(usize::from(m.data_off)), usize::from(m.data_len))
        };
        crate::wire::vlan::insert(data, tci)
    }

    /// Asks the port to insert an 802.1Q tag with `tci` when it sends this frame (VLAN insert
    /// offload; only for a port configured with it). False if the frame is shared: the
    /// request is in the frame's metadata, which every reference sees.
    #[inline]
    #[must_use]
    pub fn request_tx_vlan(&mut self, tci: u16) -> bool {
        if !self.is_exclusive() {
            return false;
        }
        // SAFETY: the only reference, held through &mut: nobody else reads the metadata.
        unsafe {
            let m = &mut *self.0.as_ptr();
            m.vlan_tci = tci;
            m.ol_flags |= TX_VLAN;
        }
        true
    }

    #[inline]
    pub fn refcnt(&self) -> u16 {
        // SAFETY: self holds a reference to the frame.
        unsafe { refcnt_of(self.0.as_ptr()) }.load(Ordering::Relaxed)
    }

    /// A second reference to the same frame (every segment's refcount + 1): each reference
    /// is freed once, and the buffers return to the pool when the last one goes.
    ///
    /// Done here rather than through DPDK's inline `rte_pktmbuf_refcnt_update`, which Rust
    /// can only reach through an out-of-line C call: a flood takes a reference per receiving
    /// guest, and that call was a tenth of a flooding worker's time. Same protocol as DPDK's:
    /// an increment needs no ordering (as `Arc::clone`: the holder's reference keeps the
    /// segment alive), and a count of 1 is ours alone, so it is stored rather than added to
    /// with a locked instruction.
    #[inline]
    pub fn share(&self) -> Mbuf {
        // SAFETY: self holds a reference to the chain.
        unsafe { add_refs(self.0.as_ptr(), 1) };
        Mbuf(self.0)
    }
}

/// References to one frame for a loop that hands out up to `n` of them (a flood, one per
/// receiving guest): the count is raised by `n` once, on every segment, instead of once per
/// reference, and what the loop did not take is given back when this goes (after which the
/// frame's own reference is freed as any other). With every reference taken, a flood costs one
/// update of the count, and none that is atomic when the frame was ours alone.
pub struct Shares {
    frame: Mbuf,
    spare: u16,
}

/// At most this many references are taken ahead: a count is 16 bits, and every worker may be
/// inside a flood of the same frame at once (64 workers x 257 stays far below the limit
/// `add_refs` enforces, with the references queued besides).
const MAX_SHARES_AHEAD: u16 = 256;

/// A count past this is a runaway (references taken and never freed): the process aborts
/// rather than let the 16-bit count wrap and free a buffer still in use (as `Arc` does).
const REFCNT_LIMIT: u16 = 0x8000;

impl Mbuf {
    /// Up to `n` more references to this frame (see `Shares`); more than that are taken one
    /// by one.
    #[inline]
    pub fn shares(self, n: usize) -> Shares {
        let n = n.min(usize::from(MAX_SHARES_AHEAD)) as u16;
        if n > 0 {
            // SAFETY: self holds a reference to the chain.
            unsafe { add_refs(self.0.as_ptr(), n) };
        }
        Shares { frame: self, spare: n }
    }
}

impl Shares {
    /// The frame, to read.
    #[inline]
    pub fn frame(&self) -> &Mbuf {
        &self.frame
    }

    /// Another reference to the frame.
    #[inline]
    pub fn take(&mut self) -> Mbuf {
        if self.spare == 0 {
            return self.frame.share();
        }
        self.spare -= 1;
        Mbuf(self.frame.0)
    }
}

impl Drop for Shares {
    fn drop(&mut self) {
        if self.spare > 0 {
            // SAFETY: `frame` keeps the chain alive through the walk.
            for seg in unsafe { chain(self.frame.0.as_ptr()) } {
                // Never reaches 0: `frame` still holds its own reference. Acquire and release,
                // as DPDK's own decrements: when this leaves 1, the free that follows takes
                // DPDK's unsynchronised "count is 1" path, and the other holders' reads must
                // come before the buffer goes back to the pool.
                // SAFETY: seg is a segment of the chain `frame` keeps alive.
                unsafe { refcnt_of(seg) }.fetch_sub(self.spare, Ordering::AcqRel);
            }
        }
        // `frame` drops next: its own reference, freed as any other.
    }
}

/// Adds `n` (at most `MAX_SHARES_AHEAD`) references on every segment of the chain starting
/// at `seg`. Aborts the process on a runaway count (`REFCNT_LIMIT`).
///
/// # Safety
/// `seg` heads a chain the caller holds a reference to, alive for the whole call.
#[inline]
unsafe fn add_refs(head: *mut sys::rte_mbuf, n: u16) {
    // SAFETY: the caller keeps the chain alive for the whole call.
    for seg in unsafe { chain(head) } {
        // SAFETY: seg is a segment of the chain the caller keeps alive.
        let count = unsafe { refcnt_of(seg) };
        let now = count.load(Ordering::Relaxed);
        if now == 1 {
            count.store(1 + n, Ordering::Relaxed);
        } else if count.fetch_add(n, Ordering::Relaxed) > REFCNT_LIMIT {
            // Below 0x8000 + 256 nothing has wrapped yet; the next add could.
            std::process::abort();
        }
    }
}

/// The segments of the chain that starts at `head`, first to last.
///
/// # Safety
/// The caller holds a reference to the chain for as long as it uses the iterator.
#[inline]
unsafe fn chain(head: *mut sys::rte_mbuf) -> impl Iterator<Item = *mut sys::rte_mbuf> {
    // SAFETY: every segment reached is part of the chain the caller keeps alive.
    std::iter::successors(NonNull::new(head), |seg| NonNull::new(unsafe { (*seg.as_ptr()).next })).map(NonNull::as_ptr)
}

/// The reference count of a segment, as the atomic DPDK treats it as.
///
/// # Safety
/// `seg` is a segment of a chain the caller holds a reference to, and the caller does not
/// use the result after letting that reference go.
#[inline]
unsafe fn refcnt_of<'a>(seg: *mut sys::rte_mbuf) -> &'a AtomicU16 {
    // SAFETY: seg is live while the caller uses the count (the function's contract), and
    // `refcnt` is an aligned u16. DPDK updates it atomically (`rte_mbuf_refcnt_*`); the one
    // plain write (a PMD re-arming a buffer taken from the pool) happens before the buffer is
    // handed to anyone, through the pool and the ring, so it never races with these accesses.
    unsafe { AtomicU16::from_ptr(std::ptr::addr_of_mut!((*seg).refcnt)) }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self owns exactly one reference, released here once.
        unsafe { sys::shim_rte_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// Hints the CPU to load the cache line at `p` (no effect on other architectures).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch(p as *const i8, core::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rte::testing::pool;

    fn frame(p: &Mempool, bytes: &[u8]) -> Mbuf {
        let mut m = Mbuf::alloc(p).expect("mbuf");
        m.append(bytes.len() as u16).expect("room").copy_from_slice(bytes);
        m
    }

    #[test]
    fn shared_references_count_on_every_segment_and_free_once_each() {
        let p = pool("mbuf_share", 16);
        let mut head = frame(&p, &[1; 60]);
        assert!(head.chain(frame(&p, &[2; 40])).is_ok(), "chain");
        assert!(head.is_exclusive());
        let copies: Vec<Mbuf> = (0..3).map(|_| head.share()).collect();
        assert_eq!(head.refcnt(), 4);
        assert_eq!(head.segments().count(), 2);
        // SAFETY: the second segment is live while `head` holds the chain.
        let tail = unsafe { &*head.head().next };
        assert_eq!(tail.refcnt, 4, "the chained segment counts every reference too");
        assert!(!head.is_exclusive());
        let mut head = head;
        assert!(head.data_mut().is_none(), "no writes through a shared frame");
        assert_eq!(p.in_use(), 2);
        drop(copies);
        assert_eq!(head.refcnt(), 1);
        assert!(head.data_mut().is_some());
        assert_eq!(p.in_use(), 2);
        drop(head);
        assert_eq!(p.in_use(), 0, "both segments back once the last reference went");
    }

    #[test]
    fn shares_taken_ahead_are_given_back_and_more_come_one_by_one() {
        let p = pool("mbuf_shares", 16);
        let mut head = frame(&p, &[1; 60]);
        assert!(head.chain(frame(&p, &[2; 40])).is_ok(), "chain");
        let mut ahead = head.shares(3);
        let taken: Vec<Mbuf> = (0..2).map(|_| ahead.take()).collect();
        assert_eq!(taken[0].refcnt(), 4, "the frame's own, and three ahead");
        drop(ahead);
        assert_eq!(taken[0].refcnt(), 2, "the unused one given back and the frame's own freed");
        drop(taken);
        assert_eq!(p.in_use(), 0);

        let mut ahead = frame(&p, &[3; 60]).shares(1);
        let taken: Vec<Mbuf> = (0..3).map(|_| ahead.take()).collect();
        drop(ahead);
        assert_eq!(taken[2].refcnt(), 3, "past the ones taken ahead, one at a time");
        drop(taken);
        assert_eq!(p.in_use(), 0, "every reference freed once");
    }
}
