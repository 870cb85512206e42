//! vhost-user guest ports through DPDK's vhost library, called directly: each guest is a
//! socket, not an ethdev port (Debian's DPDK allows only 32 ethdev ports, and the direct calls
//! skip the PMD's per-burst bookkeeping).
//!
//! Threads: the library runs its own control thread, which calls `VhostEvents` when a guest's
//! driver comes up (`new_device`) and before its memory goes away (`destroy_device`). The
//! handler must not return from `destroy_device` while a worker can still use that vid; the
//! caller's `GuestLinks` implements that handshake.
//!
//! Live migration: the library offers dirty page logging (`VHOST_F_LOG_ALL`, `LOG_SHMFD`) and
//! the announce (`GUEST_ANNOUNCE`, `SEND_RARP`) as long as we neither disable them nor register
//! with `RTE_VHOST_USER_ASYNC_COPY`, and logs what `enqueue`/`dequeue` write into the guest.
//! Guest memory must be written through those calls only (tests/migration.rs).

use std::ffi::{c_char, c_int, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;

use super::burst::Burst;
use super::eal::EalUse;
use super::error::{check, Result, RteError};
use super::mempool::Mempool;
use super::vhost_links::Device;
use crate::sys;

/// Offloads a guest may negotiate that would hand us frames with unfinished checksums or
/// oversized segments: we forward frames as they are, so guests must complete them
/// (VIRTIO_NET_F_CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN, GUEST_UFO, HOST_TSO4/6,
/// HOST_ECN, HOST_UFO).
pub const OFFLOAD_FEATURES: u64 = (1 << 0) | (1 << 1) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 14);

/// The guest's receive virtqueue of pair `q` (we enqueue into it).
#[inline]
pub fn guest_rx_vq(q: u16) -> u16 {
    2 * q
}

/// The guest's transmit virtqueue of pair `q` (we dequeue from it).
#[inline]
pub fn guest_tx_vq(q: u16) -> u16 {
    2 * q + 1
}

/// What the application does when a guest's device appears or goes.
pub trait VhostEvents: Send + Sync + 'static {
    /// The guest's driver is ready on socket `path`; `queue_pairs` it set up. Return false to
    /// refuse the device.
    fn new_device(&self, path: &str, vid: i32, queue_pairs: u16) -> bool;
    /// The device is going away; must not return while anyone may still use `vid`.
    fn destroy_device(&self, path: &str, vid: i32);
}

static EVENTS: OnceLock<Box<dyn VhostEvents>> = OnceLock::new();

/// Installs the process-wide event handler (the vhost library's callbacks carry no context).
pub fn set_events(handler: Box<dyn VhostEvents>) -> Result<()> {
    EVENTS
        .set(handler)
        .map_err(|_| RteError::new("rte_vhost_driver_callback_register", libc::EALREADY).with_detail("vhost events set twice"))
}

fn ifname(vid: c_int) -> String {
    let mut buf = [0 as c_char; 4096];
    // SAFETY: buf is writable for its length; the library NUL-terminates.
    if unsafe { sys::rte_vhost_get_ifname(vid, buf.as_mut_ptr(), buf.len()) } != 0 {
        return String::new();
    }
    // SAFETY: as above.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// We poll every virtqueue, so a guest must not kick us: a kick is an eventfd write, a
/// syscall in the guest for every batch it posts (with kicks on, a testpmd guest sent 14%
/// fewer 64-byte frames per second through us). The library keeps the setting for a vring
/// that is not ready yet and applies it when it is. Not from `vring_state_changed`: the
/// library calls that with the vring's lock held, which this call takes too. The library writes
/// the used ring's flags here without logging the page for a migration, so this runs only when
/// a device starts: before a migration's first pass copies all memory, or on the destination.
fn suppress_kicks(vid: c_int, vring: u16) {
    // SAFETY: vid names a live device (called from its own callbacks). A failure only leaves
    // kicks on, which costs the guest time but loses nothing.
    unsafe { sys::rte_vhost_enable_guest_notification(vid, vring, 0) };
}

/// `VHOST_F_LOG_ALL`: set in the negotiated features while a live migration logs the pages
/// the backend writes.
const F_LOG_ALL: u64 = 1 << 26;

/// Whether a live migration is copying the guest's memory now: nothing may then write it
/// except `enqueue`/`dequeue`, which log what they write (`guest_kicks_on`/`_off` do not).
pub fn migrating(dev: &Device<'_>) -> bool {
    let mut features = 0u64;
    // SAFETY: dev is live for this pass; features is a valid out-pointer.
    let ok = unsafe { sys::rte_vhost_get_negotiated_features(dev.vid(), &mut features) } == 0;
    // A device that cannot say is taken as migrating: the caller then writes nothing.
    !ok || features & F_LOG_ALL != 0
}

/// Asks the guest to kick when it posts frames on its transmit queue `q`, for a worker
/// about to block (see `suppress_kicks` for why kicks are off otherwise); returns the kick
/// eventfd, which becomes readable at the guest's next kick. The fd is the library's and
/// may be closed when the device goes; the caller only waits on it (epoll drops a closed
/// fd by itself) and never reads it. Writes the used ring's flags unlogged: not while
/// `migrating`. The caller needs a full fence between this and its last look at the queue,
/// or a frame posted meanwhile is neither seen nor kicked for.
pub fn guest_kicks_on(dev: &Device<'_>, q: u16) -> Option<std::os::fd::RawFd> {
    // SAFETY: dev is live for this pass (its memory mapped); the call takes the vring's lock,
    // which the library never holds while waiting for a worker.
    if unsafe { sys::rte_vhost_enable_guest_notification(dev.vid(), guest_tx_vq(q), 1) } != 0 {
        return None;
    }
    vring(dev, guest_tx_vq(q)).map(|v| v.kickfd).filter(|&fd| fd >= 0)
}

/// What the library has of vring `vring_idx` of `dev` now: its ring addresses, eventfds and
/// size. The call (DPDK 22.11) copies them without the queue's lock, so while the vhost-user
/// thread changes them (new ring addresses, a new memory table, an IOTLB invalidation) they
/// may be stale or null: good for a hint or an fd to wait on, never to dereference.
#[inline]
fn vring(dev: &Device<'_>, vring_idx: u16) -> Option<sys::rte_vhost_vring> {
    let mut vring = sys::rte_vhost_vring::default();
    // SAFETY: dev is live for this pass, so the device and its virtqueues exist; vring is a
    // valid out-pointer.
    (unsafe { sys::rte_vhost_get_vhost_vring(dev.vid(), vring_idx, &mut vring) } == 0).then_some(vring)
}

/// Kicks off again once the worker polls (the same unlogged write as `guest_kicks_on`).
pub fn guest_kicks_off(dev: &Device<'_>, q: u16) {
    // SAFETY: dev is live for this pass.
    unsafe { sys::rte_vhost_enable_guest_notification(dev.vid(), guest_tx_vq(q), 0) };
}

extern "C" fn on_new_device(vid: c_int) -> c_int {
    super::boundary::no_unwind("the vhost new_device callback", || {
        // SAFETY: vid names a device the library is setting up.
        let vrings = unsafe { sys::rte_vhost_get_vring_num(vid) };
        for v in 0..vrings {
            suppress_kicks(vid, v);
        }
        match EVENTS.get() {
            Some(h) if h.new_device(&ifname(vid), vid, vrings / 2) => 0,
            _ => -1,
        }
    })
}

extern "C" fn on_destroy_device(vid: c_int) {
    super::boundary::no_unwind("the vhost destroy_device callback", || {
        if let Some(h) = EVENTS.get() {
            h.destroy_device(&ifname(vid), vid);
        }
    })
}

struct Ops(sys::rte_vhost_device_ops);
// SAFETY: the table holds only function pointers and a null reserved slot; it is never written.
unsafe impl Sync for Ops {}
// SAFETY: as above.
unsafe impl Send for Ops {}

static OPS: OnceLock<Ops> = OnceLock::new();

fn ops() -> *const sys::rte_vhost_device_ops {
    let ops = OPS.get_or_init(|| {
        Ops(sys::rte_vhost_device_ops {
            new_device: Some(on_new_device),
            destroy_device: Some(on_destroy_device),
            ..Default::default()
        })
    });
    &ops.0
}

/// A registered vhost-user socket. Dropping it unregisters (destroying a connected device
/// first, through `destroy_device`).
pub struct VhostSocket {
    path: CString,
    _eal: EalUse,
}

impl VhostSocket {
    /// Registers and starts the socket: in server mode the library creates and listens on it;
    /// in client mode it connects, and reconnects whenever the peer comes back.
    pub fn start(path: &Path, client: bool, disabled_features: u64) -> Result<VhostSocket> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| RteError::new("rte_vhost_driver_register", libc::EINVAL).with_detail(path.display().to_string()))?;
        let flags = if client { u64::from(sys::RTE_VHOST_USER_CLIENT) } else { 0 };
        let what = || path.display().to_string();
        let eal = EalUse::take("rte_vhost_driver_register")?;
        // SAFETY: c is a valid C string.
        check("rte_vhost_driver_register", unsafe { sys::rte_vhost_driver_register(c.as_ptr(), flags) })
            .map_err(|e| e.with_detail(what()))?;
        // From here on, Drop unregisters whatever fails next.
        let sock = VhostSocket { path: c, _eal: eal };
        // SAFETY: the path was registered above.
        check("rte_vhost_driver_disable_features", unsafe { sys::rte_vhost_driver_disable_features(sock.path.as_ptr(), disabled_features) })
            .map_err(|e| e.with_detail(what()))?;
        // SAFETY: ops() is a static table that lives for the process.
        check("rte_vhost_driver_callback_register", unsafe { sys::rte_vhost_driver_callback_register(sock.path.as_ptr(), ops()) })
            .map_err(|e| e.with_detail(what()))?;
        // SAFETY: the path is registered with callbacks.
        check("rte_vhost_driver_start", unsafe { sys::rte_vhost_driver_start(sock.path.as_ptr()) })
            .map_err(|e| e.with_detail(what()))?;
        Ok(sock)
    }
}

impl Drop for VhostSocket {
    fn drop(&mut self) {
        // SAFETY: the path was registered by `start`; unregistering destroys its device, if
        // any, through our callback, which waits for the workers to let go of it.
        unsafe { sys::rte_vhost_driver_unregister(self.path.as_ptr()) };
    }
}

/// Copies frames from the front of `burst` into the guest's receive queue `q` of `dev`;
/// returns how many it took. The library copies: the caller still owns every frame, sent or
/// not, and frees them all. A `Device` exists only while its guest's memory is mapped (see
/// `vhost_links`).
#[inline]
pub fn enqueue<const N: usize>(dev: &Device<'_>, q: u16, burst: &mut Burst<N>) -> usize {
    let (ptr, len) = burst.head_mut();
    if len == 0 {
        return 0;
    }
    // SAFETY: ptr holds len valid mbufs that the library only reads; dev is live for this
    // pass, so the device's memory stays mapped during the call.
    unsafe { sys::rte_vhost_enqueue_burst(dev.vid(), guest_rx_vq(q), ptr, len as u16) as usize }
}

/// Hints the CPU to load what `enqueue` into the guest's receive queue `q` reads first on a
/// split ring (QEMU's default): the avail index, which the guest's core writes as it posts
/// buffers, so a cache miss per call otherwise. Meant for the next queue while the copy into
/// the current one runs. On a packed ring it loads the driver's event area instead, to
/// little use and no harm (not measured).
#[inline]
pub fn prefetch_rx_ring(dev: &Device<'_>, q: u16) {
    if let Some(v) = vring(dev, guest_rx_vq(q)) {
        // SAFETY: both members of the union are raw pointers of one size, so reading `avail`
        // is valid whichever the library wrote; the address (possibly stale or null, see
        // `vring`) is only prefetched, a hint that never faults, never dereferenced.
        super::mbuf::prefetch(unsafe { v.__bindgen_anon_2.avail } as *const u8);
    }
}

/// Takes up to `max` frames the guest sent on queue `q` into the free tail of `burst`
/// (buffers from `pool`); the burst owns them.
#[inline]
pub fn dequeue<const N: usize>(dev: &Device<'_>, q: u16, pool: &Mempool, burst: &mut Burst<N>, max: usize) -> usize {
    let (ptr, free) = burst.tail_mut();
    let free = free.min(max);
    if free == 0 {
        return 0;
    }
    // SAFETY: ptr has room for `free` pointers; the library fills them with mbufs from pool;
    // dev is live for this pass.
    let n = unsafe { sys::rte_vhost_dequeue_burst(dev.vid(), guest_tx_vq(q), pool.as_ptr(), ptr, free as u16) } as usize;
    // SAFETY: the library wrote n (at most `free`) new mbufs into the tail.
    unsafe { burst.commit(n) };
    n
}
