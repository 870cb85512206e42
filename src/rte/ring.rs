//! Single-producer/single-consumer rings of mbufs between two workers: how a frame that one
//! worker received reaches the worker that owns its destination virtqueue.

use std::cell::Cell;
use std::ffi::{c_void, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::burst::Burst;
use super::eal::EalUse;
use super::error::{Result, RteError};
use crate::sys;

struct RingHandle {
    raw: NonNull<sys::rte_ring>,
    _eal: EalUse,
}

// SAFETY: the handle is only the ring's address; rte_ring_free may run on any EAL thread,
// and it runs once, when both ends are gone.
unsafe impl Send for RingHandle {}
// SAFETY: as above; shared references only reach the SP/SC functions through the two ends,
// each of which is owned by one thread.
unsafe impl Sync for RingHandle {}

impl Drop for RingHandle {
    fn drop(&mut self) {
        // The two ends may go in either order (workers stop independently), so frames can be
        // enqueued after the consumer left: free whatever is still in the ring.
        let mut slots = [std::ptr::null_mut::<c_void>(); 32];
        loop {
            // SAFETY: both ends are gone, so this is the only consumer; slots has room for 32.
            let n = unsafe { sys::shim_rte_ring_dequeue_burst(self.raw.as_ptr(), slots.as_mut_ptr(), 32) };
            if n == 0 {
                break;
            }
            // SAFETY: the ring only ever carries owned mbuf references; each is freed once here.
            unsafe { sys::rte_pktmbuf_free_bulk(slots.as_mut_ptr() as *mut *mut sys::rte_mbuf, n) };
        }
        // SAFETY: nobody references the ring any more, and it is empty.
        unsafe { sys::rte_ring_free(self.raw.as_ptr()) };
    }
}

/// Creates a ring of `capacity` entries (exact) and returns its two ends.
pub fn spsc(name: &str, capacity: u32, socket: i32) -> Result<(Producer, Consumer)> {
    let c = CString::new(name).map_err(|_| RteError::new("rte_ring_create", libc::EINVAL).with_detail(name))?;
    let flags = sys::RING_F_SP_ENQ | sys::RING_F_SC_DEQ | sys::RING_F_EXACT_SZ;
    let eal = EalUse::take("rte_ring_create")?;
    // SAFETY: c is a valid C string; flags are DPDK's.
    let raw = unsafe { sys::rte_ring_create(c.as_ptr(), capacity, socket, flags) };
    let raw = NonNull::new(raw)
        .ok_or_else(|| RteError::from_rte_errno("rte_ring_create").with_detail(format!("{name}: {capacity} entries")))?;
    let h = Arc::new(RingHandle { raw, _eal: eal });
    Ok((
        Producer { ring: Arc::clone(&h), _unsync: PhantomData },
        Consumer { ring: h, _unsync: PhantomData },
    ))
}

/// The enqueuing end: owned by one worker.
pub struct Producer {
    ring: Arc<RingHandle>,
    _unsync: PhantomData<Cell<()>>,
}

/// The dequeuing end: owned by one worker.
pub struct Consumer {
    ring: Arc<RingHandle>,
    _unsync: PhantomData<Cell<()>>,
}

impl Producer {
    /// Moves as many frames as fit from the front of `burst` into the ring; the rest stay in
    /// the burst (the caller drops or retries them).
    #[inline]
    pub fn enqueue<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let (ptr, len) = burst.head_mut();
        if len == 0 {
            return 0;
        }
        // SAFETY: ptr holds len owned mbufs; the ring takes ownership of the first n.
        let n = unsafe {
            sys::shim_rte_ring_enqueue_burst(self.ring.raw.as_ptr(), ptr as *const *mut c_void, len as u32)
        } as usize;
        // SAFETY: n is the ring's own count of the frames it took from the front.
        unsafe { burst.consume_prefix(n) };
        n
    }
}

impl Consumer {
    /// Moves frames from the ring into the free tail of `burst`.
    #[inline]
    pub fn dequeue<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let (ptr, free) = burst.tail_mut();
        if free == 0 {
            return 0;
        }
        // SAFETY: ptr has room for `free` pointers; each dequeued mbuf becomes the burst's.
        let n = unsafe { sys::shim_rte_ring_dequeue_burst(self.ring.raw.as_ptr(), ptr as *mut *mut c_void, free as u32) }
            as usize;
        // SAFETY: the ring wrote n (at most `free`) owned mbufs into the tail.
        unsafe { burst.commit(n) };
        n
    }
}
