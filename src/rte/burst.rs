//! Fixed-capacity arrays of owned mbufs: what rx fills and tx drains, without allocating.

use super::mbuf::Mbuf;
use crate::sys;

/// Frames moved per rx/tx call.
pub const BURST: usize = 32;

/// Up to `N` owned mbufs in `[0, len)`. Rx fills the free tail; tx consumes the sent prefix
/// and keeps the rest in order at the front; dropping the burst frees whatever it still owns,
/// so an early return never leaks.
pub struct Burst<const N: usize = BURST> {
    slots: [*mut sys::rte_mbuf; N],
    len: usize,
}

// SAFETY: the burst exclusively owns the mbuf references in it; they may move between threads.
unsafe impl<const N: usize> Send for Burst<N> {}

impl<const N: usize> Default for Burst<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Burst<N> {
    pub const CAPACITY: usize = N;

    pub const fn new() -> Self {
        Burst { slots: [std::ptr::null_mut(); N], len: 0 }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn free_slots(&self) -> usize {
        N - self.len
    }

    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        self.slots[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    /// Borrow the i-th frame without taking it.
    #[inline]
    pub fn get(&self, i: usize) -> &Mbuf {
        assert!(i < self.len);
        // SAFETY: slots[..len] hold owned, non-null mbufs; Mbuf is repr(transparent) over the pointer.
        unsafe { &*(self.slots.as_ptr().add(i) as *const Mbuf) }
    }

    /// Asks the CPU to start loading the first cache line of every frame's data (the headers
    /// the classifier reads), so that frames written by a NIC's DMA are not one cache miss
    /// each, in turn.
    #[inline]
    pub fn prefetch_headers(&self) {
        for i in 0..self.len {
            let m = self.get(i);
            super::mbuf::prefetch(m.data().as_ptr());
        }
    }

    /// Moves every frame out, in order; frames not taken when the iterator drops are freed.
    #[inline]
    pub fn drain(&mut self) -> Drain<'_, N> {
        let len = self.len;
        self.len = 0;
        Drain { burst: self, next: 0, end: len }
    }

    /// Frees every frame (one bulk call).
    pub fn free_all(&mut self) {
        if self.len > 0 {
            // SAFETY: slots[..len] are owned references, released once here.
            unsafe { sys::rte_pktmbuf_free_bulk(self.slots.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Raw view of the free tail for an rx call; `commit` records how many it filled.
    #[inline]
    pub(crate) fn tail_mut(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        // SAFETY: len <= N, so the pointer is within (or one past) the array.
        (unsafe { self.slots.as_mut_ptr().add(self.len) }, N - self.len)
    }

    #[inline]
    pub(crate) fn commit(&mut self, filled: usize) {
        debug_assert!(self.len + filled <= N);
        self.len += filled;
    }

    /// Raw view of the owned frames for a tx call.
    #[inline]
    pub(crate) fn head_mut(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        (self.slots.as_mut_ptr(), self.len)
    }

    /// The first `n` frames now belong to someone else (a PMD took them); keep the rest in order.
    #[inline]
    pub(crate) fn consume_prefix(&mut self, n: usize) {
        debug_assert!(n <= self.len);
        self.slots.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

impl<const N: usize> Drop for Burst<N> {
    fn drop(&mut self) {
        self.free_all();
    }
}

/// See `Burst::drain`.
pub struct Drain<'a, const N: usize> {
    burst: &'a mut Burst<N>,
    next: usize,
    end: usize,
}

impl<const N: usize> Iterator for Drain<'_, N> {
    type Item = Mbuf;

    #[inline]
    fn next(&mut self) -> Option<Mbuf> {
        if self.next == self.end {
            return None;
        }
        let raw = self.burst.slots[self.next];
        self.next += 1;
        // SAFETY: slots[next] was owned by the burst and is handed out exactly once.
        Some(unsafe { Mbuf::from_raw(raw) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.end - self.next, Some(self.end - self.next))
    }
}

impl<const N: usize> Drop for Drain<'_, N> {
    fn drop(&mut self) {
        for m in self.by_ref() {
            drop(m);
        }
    }
}
