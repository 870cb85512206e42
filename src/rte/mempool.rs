//! Packet buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::error::{Result, RteError};
use crate::sys;

/// A pktmbuf pool. DPDK pools are thread-safe (lock-free ring plus a per-lcore cache), hence
/// `Send + Sync`. It must outlive every port queue set up with it: `app` drops pools after ports.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
}

// SAFETY: rte_mempool operations are safe from any EAL or registered thread.
unsafe impl Send for Mempool {}
// SAFETY: as above; shared access only calls thread-safe DPDK functions.
unsafe impl Sync for Mempool {}

impl Mempool {
    /// `data_room` includes the headroom (`RTE_PKTMBUF_HEADROOM`).
    pub fn pktmbuf(name: &str, n: u32, cache: u32, data_room: u16, socket: i32) -> Result<Mempool> {
        let cname = CString::new(name)
            .map_err(|_| RteError::new("rte_pktmbuf_pool_create", libc::EINVAL).with_detail(name))?;
        // SAFETY: cname is a valid C string; the other arguments are plain integers.
        let raw = unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        NonNull::new(raw)
            .map(|raw| Mempool { raw })
            .ok_or_else(|| {
                RteError::from_rte_errno("rte_pktmbuf_pool_create")
                    .with_detail(format!("{name}: {n} mbufs of {data_room} bytes"))
            })
    }

    /// Mbufs currently taken from the pool (in rings, in flight, or leaked).
    pub fn in_use(&self) -> u32 {
        // SAFETY: self.raw is a live pool.
        unsafe { sys::rte_mempool_in_use_count(self.raw.as_ptr()) }
    }

    pub fn available(&self) -> u32 {
        // SAFETY: self.raw is a live pool.
        unsafe { sys::rte_mempool_avail_count(self.raw.as_ptr()) }
    }

    pub fn data_room(&self) -> u16 {
        // SAFETY: self.raw is a live pktmbuf pool (created by rte_pktmbuf_pool_create).
        unsafe { sys::shim_rte_pktmbuf_data_room_size(self.raw.as_ptr()) }
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rte_mempool {
        self.raw.as_ptr()
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: no queue or mbuf refers to the pool any more (ports were closed first).
        unsafe { sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}
