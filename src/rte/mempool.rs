//! Packet buffer pools.

use std::ffi::CString;
use std::ptr::NonNull;

use super::eal::EalUse;
use super::error::{Result, RteError};
use crate::sys;

/// A pktmbuf pool. DPDK pools are thread-safe (lock-free ring plus a per-lcore cache), hence
/// `Send + Sync`.
///
/// Dropped with buffers still out (an `Mbuf` alive, a ring or virtqueue holding one), the pool
/// is left allocated rather than freed under them: freeing would return its memory to EAL,
/// which may hand the pages back to the kernel, and whoever still reads a buffer (a vhost
/// backend copying a frame out of this process's memory) would read zeros. Ports keep the
/// pools their rx rings are filled from (`Port::rx_queue`), so those buffers are back before
/// the pool is dropped.
pub struct Mempool {
    raw: NonNull<sys::rte_mempool>,
    eal: EalUse,
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
        let eal = EalUse::take("rte_pktmbuf_pool_create")?;
        // SAFETY: cname is a valid C string; the other arguments are plain integers.
        let raw = unsafe { sys::rte_pktmbuf_pool_create(cname.as_ptr(), n, cache, 0, data_room, socket) };
        NonNull::new(raw)
            .map(|raw| Mempool { raw, eal })
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
        if self.in_use() > 0 {
            // Leaked on purpose (see the type's documentation), and EAL with it.
            self.eal.keep_to_exit();
            return;
        }
        // SAFETY: every buffer is back in the pool, so no mbuf, ring or queue refers to it,
        // and nothing can take one any more (this is its only handle).
        unsafe { sys::rte_mempool_free(self.raw.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::sync::Arc;

    use crate::rte::ethdev::{Port, PortConf};
    use crate::rte::testing::pool;
    use crate::rte::Mbuf;
    use crate::sys;

    /// Whether EAL still has a pool of that name (a freed pool is gone from its list).
    fn allocated(name: &str) -> bool {
        let c = CString::new(name).expect("name");
        // SAFETY: c is a valid C string; lookup only reads EAL's list of pools.
        !unsafe { sys::rte_mempool_lookup(c.as_ptr()) }.is_null()
    }

    #[test]
    fn a_pool_dropped_with_a_buffer_out_stays_allocated_under_it() {
        let p = pool("drop_with_out", 8);
        let mut m = Mbuf::alloc(&p).expect("mbuf");
        drop(p);
        assert!(allocated("drop_with_out"), "freed under a live buffer");
        m.append(4).expect("room").copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(m.data(), &[1, 2, 3, 4]);
    }

    #[test]
    fn a_pool_with_every_buffer_back_is_freed() {
        let p = pool("drop_all_back", 8);
        drop(Mbuf::alloc(&p).expect("mbuf"));
        drop(p);
        assert!(!allocated("drop_all_back"));
    }

    /// The pool an rx queue is filled from lives until the port is closed, even when its owner
    /// lets go of it first (net_null takes buffers only when polled, so none is out here).
    #[test]
    fn a_port_keeps_its_rx_pool_until_it_is_closed() {
        let p = Arc::new(pool("port_keeps", 64));
        let port = Port::probe("net_null_mempool_keep").expect("net_null");
        port.configure(&PortConf { rx_queues: 1, tx_queues: 1, ..PortConf::default() }).expect("configure");
        let rx = port.rx_queue(0, 32, &p).expect("rx queue");
        drop(p);
        assert!(allocated("port_keeps"), "freed while the port may still take buffers from it");
        drop(rx);
        drop(port);
        assert!(!allocated("port_keeps"), "the port closed and gave it back");
    }
}
