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

    /// Records that an rx call wrote `filled` owned mbufs into the tail `tail_mut` gave.
    ///
    /// # Safety
    /// `filled` is at most the room `tail_mut` reported, and the first `filled` entries of
    /// that tail were written by the call, each an mbuf reference now owned by nobody else
    /// (the tail holds stale pointers of frames already given away otherwise).
    #[inline]
    pub(crate) unsafe fn commit(&mut self, filled: usize) {
        debug_assert!(self.len + filled <= N);
        self.len += filled;
    }

    /// Raw view of the owned frames for a tx call.
    #[inline]
    pub(crate) fn head_mut(&mut self) -> (*mut *mut sys::rte_mbuf, usize) {
        (self.slots.as_mut_ptr(), self.len)
    }

    /// The first `n` frames now belong to someone else (a PMD took them); keep the rest in order.
    ///
    /// # Safety
    /// Whoever `head_mut`'s frames were offered to took exactly the first `n` (a count it
    /// returned): the burst would otherwise free frames it no longer owns, or lose some.
    #[inline]
    pub(crate) unsafe fn consume_prefix(&mut self, n: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rte::mempool::Mempool;
    use crate::rte::testing::pool;

    /// `n` frames from `pool`, tagged 0..n so that their order can be read back.
    fn tagged(pool: &Mempool, n: u32) -> Vec<Mbuf> {
        (0..n)
            .map(|i| {
                let mut m = Mbuf::alloc(pool).expect("a free mbuf");
                assert!(m.set_tag(i));
                m
            })
            .collect()
    }

    fn tags<const N: usize>(b: &Burst<N>) -> Vec<u32> {
        (0..b.len()).map(|i| b.get(i).tag()).collect()
    }

    #[test]
    fn push_fills_in_order_and_gives_back_what_does_not_fit() {
        let p = pool("ut_burst_push", 15);
        let mut b: Burst<4> = Burst::new();
        let mut refused = Vec::new();
        for m in tagged(&p, 6) {
            if let Err(m) = b.push(m) {
                refused.push(m.tag());
            }
        }
        assert_eq!((tags(&b), b.free_slots(), refused), (vec![0, 1, 2, 3], 0, vec![4, 5]));
        assert_eq!(p.in_use(), 4, "the refused frames came back and were freed");
        drop(b);
        assert_eq!(p.in_use(), 0, "dropping a burst frees what it holds");
    }

    /// What a tx call leaves: the sent prefix is gone (the PMD owns it), the rest moves to the
    /// front in order, and the free tail is where the next frames go.
    #[test]
    fn consume_prefix_keeps_the_rest_in_order() {
        let p = pool("ut_burst_prefix", 15);
        let mut b: Burst<8> = Burst::new();
        for m in tagged(&p, 6) {
            assert!(b.push(m).is_ok());
        }
        // Stand in for the PMD: take the first two references, as a tx call would.
        let (head, len) = b.head_mut();
        assert_eq!(len, 6);
        // SAFETY: the two first slots hold owned mbufs; consume_prefix below forgets them.
        let sent: Vec<Mbuf> = (0..2).map(|i| unsafe { Mbuf::from_raw(*head.add(i)) }).collect();
        // SAFETY: exactly those two were taken.
        unsafe { b.consume_prefix(2) };
        assert_eq!((tags(&b), b.free_slots()), (vec![2, 3, 4, 5], 4));
        assert_eq!(sent.iter().map(Mbuf::tag).collect::<Vec<_>>(), [0, 1]);
        drop(sent);
        // SAFETY: none was taken.
        unsafe { b.consume_prefix(0) };
        assert_eq!(tags(&b), [2, 3, 4, 5], "nothing sent: nothing moves");
        assert_eq!(p.in_use(), 4);
        b.free_all();
        assert_eq!((b.len(), p.in_use()), (0, 0));
    }

    /// What an rx call does: fills the free tail, then `commit` counts what it wrote.
    #[test]
    fn tail_and_commit_append_after_what_is_held() {
        let p = pool("ut_burst_tail", 15);
        let mut b: Burst<4> = Burst::new();
        for m in tagged(&p, 1) {
            assert!(b.push(m).is_ok());
        }
        let (tail, room) = b.tail_mut();
        assert_eq!(room, 3);
        for (i, m) in tagged(&p, 2).into_iter().enumerate() {
            let mut m = m;
            assert!(m.set_tag(10 + i as u32));
            // SAFETY: `tail` has room for 3; each slot written once, then committed.
            unsafe { *tail.add(i) = m.into_raw() };
        }
        // SAFETY: the two first tail slots were just written with owned mbufs.
        unsafe { b.commit(2) };
        assert_eq!(tags(&b), [0, 10, 11]);
        drop(b);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn drain_hands_out_in_order_and_frees_what_is_not_taken() {
        let p = pool("ut_burst_drain", 15);
        let mut b: Burst<8> = Burst::new();
        for m in tagged(&p, 5) {
            assert!(b.push(m).is_ok());
        }
        let mut it = b.drain();
        assert_eq!(it.size_hint(), (5, Some(5)));
        let first: Vec<Mbuf> = it.by_ref().take(2).collect();
        drop(it);
        assert_eq!(first.iter().map(Mbuf::tag).collect::<Vec<_>>(), [0, 1]);
        assert_eq!((b.len(), p.in_use()), (0, 2), "the three not taken were freed with the iterator");
        drop(first);
        assert_eq!(p.in_use(), 0);
        // The burst is usable again after a drain.
        for m in tagged(&p, 3) {
            assert!(b.push(m).is_ok());
        }
        assert_eq!(b.drain().map(|m| m.tag()).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(p.in_use(), 0);
    }
}
