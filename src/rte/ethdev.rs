//! Ethernet ports (the uplink; and, in the test guest `macvtap-guest`, virtio-user ports) and
//! their queue tokens. The switch's guests are not ethdev ports: see `vhost`.
//!
//! A port is closed when the last of its handles goes: the `Port` itself and every queue
//! token share one `Arc`, so a worker still holding a queue keeps the port open. The handle
//! also holds the pools its rx queues were filled from, so a pool outlives every port that
//! takes buffers from it, whatever order the owner drops them in.

use std::cell::Cell;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::burst::Burst;
use super::eal::EalUse;
use super::error::{check, Result, RteError};
use super::mempool::Mempool;
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u16);

impl std::fmt::Display for PortId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

struct PortHandle {
    id: PortId,
    /// Dropped after the port is closed (fields drop after `drop`): closing hands the rx
    /// rings' buffers back to these pools.
    pools: Mutex<Vec<Arc<Mempool>>>,
    _eal: EalUse,
}

/// Ports with a handle in this process: a second handle would close the port under the
/// first one's queues when it went.
static OPEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn open_ports() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    // Single inserts and removes: a panic elsewhere cannot leave the set half-changed.
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PortHandle {
    /// The one handle of port `id`; refused while another exists. `eal` was taken before
    /// anything asked EAL about the port.
    fn new(id: PortId, eal: EalUse) -> Result<Arc<PortHandle>> {
        if !open_ports().insert(id.0) {
            return Err(RteError::new("opening a port", libc::EBUSY)
                .with_detail(format!("port {id} is already open in this process")));
        }
        Ok(Arc::new(PortHandle { id, pools: Mutex::new(Vec::new()), _eal: eal }))
    }
}

impl Drop for PortHandle {
    fn drop(&mut self) {
        // SAFETY: no queue token is left (this is the last handle), so no thread polls the port.
        // Closing returns the mbufs the PMD still holds to their pool.
        unsafe {
            sys::rte_eth_dev_stop(self.id.0);
            sys::rte_eth_dev_close(self.id.0);
        }
        open_ports().remove(&self.id.0);
    }
}

/// What the driver says the port can do.
#[derive(Clone, Debug)]
pub struct PortInfo {
    pub driver: String,
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub min_mtu: u16,
    pub max_mtu: u16,
    pub max_mac_addrs: u32,
    pub max_vmdq_pools: u16,
    /// First rx queue of the VMDq pools, their total queue count, and the first pool number.
    pub vmdq_queue_base: u16,
    pub vmdq_queue_num: u16,
    pub vmdq_pool_base: u16,
    pub rss_offloads: u64,
    /// `RTE_ETH_RX_OFFLOAD_*` / `RTE_ETH_TX_OFFLOAD_*` bits the port offers.
    pub rx_offload_capa: u64,
    pub tx_offload_capa: u64,
    /// The port raises link-state-change interrupts (`RTE_ETH_DEV_INTR_LSC` in its flags):
    /// configure it with `PortConf::lsc` and be told of changes (`rte::link_events`).
    pub lsc: bool,
    /// The kernel interface behind the port (net_af_packet, net_tap), 0 for none.
    pub if_index: u32,
}

/// `RTE_ETH_DEV_INTR_LSC` (`RTE_BIT32(1)` in rte_ethdev.h, a macro bindgen cannot evaluate).
const DEV_INTR_LSC: u32 = 1 << 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EthStats {
    pub ipackets: u64,
    pub opackets: u64,
    pub ibytes: u64,
    pub obytes: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// The name of port `id` (its devargs name or PCI address), without taking a handle on it
/// (a `Port` closes its port when dropped; this may be asked about a port the switch must
/// leave alone, such as a bond's member).
pub fn port_name(id: PortId) -> Result<String> {
    let mut buf = [0 as std::ffi::c_char; 64];
    // SAFETY: buf is large enough for RTE_ETH_NAME_MAX_LEN (64).
    check("rte_eth_dev_get_name_by_port", unsafe { sys::rte_eth_dev_get_name_by_port(id.0, buf.as_mut_ptr()) })?;
    // SAFETY: DPDK wrote a NUL-terminated name into buf.
    Ok(unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned())
}

/// Configuration applied by `Port::configure`. The default: one rx and one tx queue, the
/// driver's MTU, no RSS, no offloads, no VMDq.
#[derive(Clone, Copy, Debug)]
pub struct PortConf {
    pub rx_queues: u16,
    pub tx_queues: u16,
    /// None keeps the driver's default.
    pub mtu: Option<u16>,
    /// RSS hash functions (`RTE_ETH_RSS_*`); 0 leaves RSS off.
    pub rss_hf: u64,
    /// `RTE_ETH_RX_OFFLOAD_*` bits, e.g. `RX_OFFLOAD_SCATTER`.
    pub rx_offloads: u64,
    /// `RTE_ETH_TX_OFFLOAD_*` bits, e.g. `TX_OFFLOAD_VLAN_INSERT`.
    pub tx_offloads: u64,
    /// VMDq instead of RSS: (pools, default pool). Pools are chosen by MAC alone (untagged
    /// frames accepted) and take broadcast and multicast copies.
    pub vmdq: Option<(u16, u16)>,
    /// Link-state-change interrupts on (only for a port whose `PortInfo::lsc` says it has them).
    pub lsc: bool,
    /// Rx queue interrupts set up at start (`RxQueue::arm_interrupt`), for workers that block
    /// when idle. A port without them ignores the request.
    pub rx_interrupts: bool,
}

impl Default for PortConf {
    fn default() -> Self {
        PortConf { rx_queues: 1, tx_queues: 1, mtu: None, rss_hf: 0, rx_offloads: 0, tx_offloads: 0, vmdq: None, lsc: false, rx_interrupts: false }
    }
}

/// `RTE_ETH_RX_OFFLOAD_SCATTER` (a function-like macro bindgen cannot evaluate): frames larger
/// than one mbuf arrive as chains.
pub const RX_OFFLOAD_SCATTER: u64 = 1 << 13;
/// `RTE_ETH_RX_OFFLOAD_VLAN_STRIP`: the port takes 802.1Q tags off received frames and puts
/// the TCI in the mbuf (`Mbuf::stripped_vlan`).
pub const RX_OFFLOAD_VLAN_STRIP: u64 = 1 << 0;
/// `RTE_ETH_TX_OFFLOAD_VLAN_INSERT`: the port inserts the tag an mbuf asks for
/// (`Mbuf::request_tx_vlan`).
pub const TX_OFFLOAD_VLAN_INSERT: u64 = 1 << 0;
/// `RTE_ETH_TX_OFFLOAD_MULTI_SEGS`: the port may be given chained frames to send.
pub const TX_OFFLOAD_MULTI_SEGS: u64 = 1 << 15;
/// `RTE_ETH_VMDQ_ACCEPT_UNTAG`, `_BROADCAST`, `_MULTICAST` (`RTE_BIT32(0)`, `(3)`, `(4)` in
/// rte_ethdev.h): pool selection by MAC without a VLAN, and copies of broadcast/multicast.
const VMDQ_ACCEPT_UNTAG: u32 = 1 << 0;
const VMDQ_ACCEPT_BROADCAST: u32 = 1 << 3;
const VMDQ_ACCEPT_MULTICAST: u32 = 1 << 4;

pub struct Port {
    handle: Arc<PortHandle>,
    name: String,
}

impl Port {
    /// A port EAL already created (`-a <pci>` or `--vdev`).
    pub fn from_id(id: PortId) -> Result<Port> {
        let eal = EalUse::take("opening a port")?;
        // SAFETY: EAL runs (eal); any u16 may be asked about.
        if unsafe { sys::rte_eth_dev_is_valid_port(id.0) } == 0 {
            return Err(RteError::new("rte_eth_dev_is_valid_port", libc::ENODEV)
                .with_detail(format!("no port {id} (ports available: {})", Self::count())));
        }
        let name = port_name(id)?;
        Ok(Port { handle: PortHandle::new(id, eal)?, name })
    }

    /// Probes a device from a devargs string (`net_vhost0,iface=/run/x.sock`, a PCI address...)
    /// and returns its port.
    pub fn probe(devargs: &str) -> Result<Port> {
        let c = CString::new(devargs)
            .map_err(|_| RteError::new("rte_dev_probe", libc::EINVAL).with_detail(devargs.to_owned()))?;
        let eal = EalUse::take("rte_dev_probe")?;
        // SAFETY: EAL runs (eal); c is a valid C string.
        check("rte_dev_probe", unsafe { sys::rte_dev_probe(c.as_ptr()) })
            .map_err(|e| e.with_detail(devargs.to_owned()))?;
        let name = devargs.split(',').next().unwrap_or(devargs);
        let cname = CString::new(name).unwrap_or_default();
        let mut id = 0u16;
        // SAFETY: cname is a valid C string, id a valid out-pointer.
        check("rte_eth_dev_get_port_by_name", unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) })
            .map_err(|e| e.with_detail(name.to_owned()))?;
        Ok(Port { handle: PortHandle::new(PortId(id), eal)?, name: name.to_owned() })
    }

    /// Number of ports EAL knows.
    pub fn count() -> u16 {
        // SAFETY: no preconditions once EAL is up.
        unsafe { sys::rte_eth_dev_count_avail() }
    }

    pub fn id(&self) -> PortId {
        self.handle.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn raw(&self) -> u16 {
        self.handle.id.0
    }

    pub fn info(&self) -> Result<PortInfo> {
        let mut di = sys::rte_eth_dev_info::default();
        // SAFETY: di is a valid out-pointer for the port's info.
        check("rte_eth_dev_info_get", unsafe { sys::rte_eth_dev_info_get(self.raw(), &mut di) })?;
        let driver = if di.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: the driver name is a static NUL-terminated string.
            unsafe { CStr::from_ptr(di.driver_name) }.to_string_lossy().into_owned()
        };
        Ok(PortInfo {
            driver,
            max_rx_queues: di.max_rx_queues,
            max_tx_queues: di.max_tx_queues,
            min_mtu: di.min_mtu,
            max_mtu: di.max_mtu,
            max_mac_addrs: di.max_mac_addrs,
            max_vmdq_pools: di.max_vmdq_pools,
            vmdq_queue_base: di.vmdq_queue_base,
            vmdq_queue_num: di.vmdq_queue_num,
            vmdq_pool_base: di.vmdq_pool_base,
            rss_offloads: di.flow_type_rss_offloads,
            rx_offload_capa: di.rx_offload_capa,
            tx_offload_capa: di.tx_offload_capa,
            lsc: {
                // SAFETY: when set, dev_flags points into the port's shared data, valid while
                // the port exists (it does: we hold its handle).
                let flags = if di.dev_flags.is_null() { 0 } else { unsafe { *di.dev_flags } };
                flags & DEV_INTR_LSC != 0
            },
            if_index: di.if_index,
        })
    }

    pub fn configure(&self, conf: &PortConf) -> Result<()> {
        let mut ec = sys::rte_eth_conf::default();
        if let Some(mtu) = conf.mtu {
            ec.rxmode.mtu = u32::from(mtu);
        }
        ec.rxmode.offloads = conf.rx_offloads;
        ec.txmode.offloads = conf.tx_offloads;
        ec.intr_conf.set_lsc(u32::from(conf.lsc));
        ec.intr_conf.set_rxq(u32::from(conf.rx_interrupts));
        if conf.rx_offloads & RX_OFFLOAD_SCATTER != 0 {
            ec.txmode.offloads |= TX_OFFLOAD_MULTI_SEGS;
        }
        if let Some((pools, default_pool)) = conf.vmdq {
            ec.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_VMDQ_ONLY;
            let v = &mut ec.rx_adv_conf.vmdq_rx_conf;
            v.nb_queue_pools = sys::rte_eth_nb_pools::from(pools);
            v.enable_default_pool = 1;
            v.default_pool = default_pool as u8;
            v.rx_mode = VMDQ_ACCEPT_UNTAG | VMDQ_ACCEPT_BROADCAST | VMDQ_ACCEPT_MULTICAST;
        } else if conf.rss_hf != 0 {
            ec.rxmode.mq_mode = sys::RTE_ETH_MQ_RX_RSS;
            ec.rx_adv_conf.rss_conf.rss_hf = conf.rss_hf;
        }
        // SAFETY: ec is a fully initialised rte_eth_conf.
        check("rte_eth_dev_configure", unsafe {
            sys::rte_eth_dev_configure(self.raw(), conf.rx_queues, conf.tx_queues, &ec)
        })
        .map_err(|e| e.with_detail(format!("port {} ({}): {} rx / {} tx queues", self.id(), self.name, conf.rx_queues, conf.tx_queues)))?;
        Ok(())
    }

    pub fn set_mtu(&self, mtu: u16) -> Result<()> {
        // SAFETY: plain call on a valid port.
        check("rte_eth_dev_set_mtu", unsafe { sys::rte_eth_dev_set_mtu(self.raw(), mtu) })
            .map_err(|e| e.with_detail(format!("port {} mtu {mtu}", self.name)))?;
        Ok(())
    }

    pub fn mtu(&self) -> Result<u16> {
        let mut mtu = 0u16;
        // SAFETY: mtu is a valid out-pointer.
        check("rte_eth_dev_get_mtu", unsafe { sys::rte_eth_dev_get_mtu(self.raw(), &mut mtu) })?;
        Ok(mtu)
    }

    /// Sets up rx queue `queue`; mbufs for it come from `pool`, which the port keeps until it
    /// is closed.
    pub fn rx_queue(&self, queue: u16, descriptors: u16, pool: &Arc<Mempool>) -> Result<RxQueue> {
        // Kept before the driver may take a buffer from it (a failed setup keeps it too: the
        // driver may have filled part of the ring).
        let mut pools = self.handle.pools.lock().unwrap_or_else(|e| e.into_inner());
        if !pools.iter().any(|p| Arc::ptr_eq(p, pool)) {
            pools.push(Arc::clone(pool));
        }
        drop(pools);
        // SAFETY: a null rxconf selects the driver's defaults; the pool is live and stays so
        // until the port is closed (held by the handle above).
        check("rte_eth_rx_queue_setup", unsafe {
            sys::rte_eth_rx_queue_setup(self.raw(), queue, descriptors, self.socket(), std::ptr::null(), pool.as_ptr())
        })
        .map_err(|e| e.with_detail(format!("port {} rx queue {queue}", self.name)))?;
        Ok(RxQueue { port: Arc::clone(&self.handle), queue, _unsync: PhantomData })
    }

    pub fn tx_queue(&self, queue: u16, descriptors: u16) -> Result<TxQueue> {
        // SAFETY: a null txconf selects the driver's defaults.
        check("rte_eth_tx_queue_setup", unsafe {
            sys::rte_eth_tx_queue_setup(self.raw(), queue, descriptors, self.socket(), std::ptr::null())
        })
        .map_err(|e| e.with_detail(format!("port {} tx queue {queue}", self.name)))?;
        Ok(TxQueue { port: Arc::clone(&self.handle), queue, kick_when_idle: false, _unsync: PhantomData })
    }

    fn socket(&self) -> u32 {
        // SAFETY: plain call on a valid port; -1 (unknown) becomes SOCKET_ID_ANY below.
        let s = unsafe { sys::rte_eth_dev_socket_id(self.raw()) };
        if s < 0 { sys::SOCKET_ID_ANY as u32 } else { s as u32 }
    }

    pub fn start(&self) -> Result<()> {
        // SAFETY: plain call on a configured port.
        check("rte_eth_dev_start", unsafe { sys::rte_eth_dev_start(self.raw()) })
            .map_err(|e| e.with_detail(format!("port {}", self.name)))?;
        Ok(())
    }

    pub fn stop(&self) -> Result<()> {
        // SAFETY: plain call; the app stops workers before stopping ports.
        check("rte_eth_dev_stop", unsafe { sys::rte_eth_dev_stop(self.raw()) })?;
        Ok(())
    }

    /// Link state without waiting (safe to call every few milliseconds from the control
    /// thread); a port that cannot say reads as down.
    pub fn link(&self) -> Link {
        self.link_status().unwrap_or_default()
    }

    /// Link state without waiting, or why the port could not say.
    pub fn link_status(&self) -> Result<Link> {
        let mut l = sys::rte_eth_link::default();
        // SAFETY: l is a valid out-pointer.
        check("rte_eth_link_get_nowait", unsafe { sys::rte_eth_link_get_nowait(self.raw(), &mut l) })
            .map_err(|e| e.with_detail(format!("port {}", self.name)))?;
        Ok(Link { up: l.link_status() != 0, speed_mbps: l.link_speed, full_duplex: l.link_duplex() != 0 })
    }

    pub fn mac(&self) -> Result<[u8; 6]> {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: a is a valid out-pointer.
        check("rte_eth_macaddr_get", unsafe { sys::rte_eth_macaddr_get(self.raw(), &mut a) })?;
        Ok(a.addr_bytes)
    }

    pub fn stats(&self) -> EthStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: s is a valid out-pointer; on failure it stays zeroed.
        unsafe { sys::rte_eth_stats_get(self.raw(), &mut s) };
        EthStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Extended statistics, by name (driver-specific).
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a null array asks for the count.
        let n = unsafe { sys::rte_eth_xstats_get_names(self.raw(), std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let mut names = vec![sys::rte_eth_xstat_name { name: [0; 64] }; n as usize];
        let mut vals = vec![sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: both arrays hold n entries.
        let got_names = unsafe { sys::rte_eth_xstats_get_names(self.raw(), names.as_mut_ptr(), n as u32) };
        // SAFETY: as above.
        let got_vals = unsafe { sys::rte_eth_xstats_get(self.raw(), vals.as_mut_ptr(), n as u32) };
        let m = got_names.min(got_vals).max(0) as usize;
        (0..m)
            .map(|i| {
                // SAFETY: DPDK NUL-terminates each name within its 64 bytes.
                let name = unsafe { CStr::from_ptr(names[i].name.as_ptr()) }.to_string_lossy().into_owned();
                (name, vals[i].value)
            })
            .collect()
    }

    pub fn set_promiscuous(&self, on: bool) -> Result<()> {
        // SAFETY: plain calls on a valid port.
        let (op, ret) = unsafe {
            if on {
                ("rte_eth_promiscuous_enable", sys::rte_eth_promiscuous_enable(self.raw()))
            } else {
                ("rte_eth_promiscuous_disable", sys::rte_eth_promiscuous_disable(self.raw()))
            }
        };
        check(op, ret)?;
        Ok(())
    }

    pub fn set_allmulticast(&self, on: bool) -> Result<()> {
        // SAFETY: plain calls on a valid port.
        let (op, ret) = unsafe {
            if on {
                ("rte_eth_allmulticast_enable", sys::rte_eth_allmulticast_enable(self.raw()))
            } else {
                ("rte_eth_allmulticast_disable", sys::rte_eth_allmulticast_disable(self.raw()))
            }
        };
        check(op, ret)?;
        Ok(())
    }

    /// Admits frames for `mac` (a unicast filter, or a VMDq pool's filter when `pool` > 0).
    pub fn add_mac(&self, mac: [u8; 6], pool: u32) -> Result<()> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: a is a valid address.
        check("rte_eth_dev_mac_addr_add", unsafe { sys::rte_eth_dev_mac_addr_add(self.raw(), &mut a, pool) })?;
        Ok(())
    }

    /// Makes `mac` the port's own address (a passthru guest's). Ports without the operation
    /// say ENOTSUP; DPDK refuses (EEXIST) an address that is already one of its filters.
    pub fn set_default_mac(&self, mac: [u8; 6]) -> Result<()> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: a is a valid address, only read by the call.
        check("rte_eth_dev_default_mac_addr_set", unsafe { sys::rte_eth_dev_default_mac_addr_set(self.raw(), &mut a) })?;
        Ok(())
    }

    /// Takes `mac` out of the port's filters (a guest left or changed its addresses).
    pub fn remove_mac(&self, mac: [u8; 6]) -> Result<()> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: a is a valid address.
        check("rte_eth_dev_mac_addr_remove", unsafe { sys::rte_eth_dev_mac_addr_remove(self.raw(), &mut a) })?;
        Ok(())
    }
}

/// The right to poll one rx queue: moved into exactly one worker (`Send`, not `Sync`).
pub struct RxQueue {
    port: Arc<PortHandle>,
    queue: u16,
    _unsync: PhantomData<Cell<()>>,
}

impl RxQueue {
    pub fn port(&self) -> PortId {
        self.port.id
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives into the free tail of `burst`; returns how many frames arrived. The burst
    /// owns them.
    #[inline]
    pub fn rx<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let (ptr, free) = burst.tail_mut();
        if free == 0 {
            return 0;
        }
        // SAFETY: ptr has room for `free` mbuf pointers; &mut self means no other poller.
        let n = unsafe { sys::shim_rte_eth_rx_burst(self.port.id.0, self.queue, ptr, free as u16) } as usize;
        // SAFETY: the PMD wrote n (at most `free`) received mbufs into the tail.
        unsafe { burst.commit(n) };
        n
    }

    /// Turns the queue's interrupt on and returns the file descriptor that becomes readable
    /// when a frame arrives (for an epoll of the caller's; edge-triggered use needs no read:
    /// every interrupt is a new event). The fd belongs to the port and may change when it
    /// restarts: ask again each time. On an error the interrupt is left off.
    pub fn arm_interrupt(&mut self) -> std::result::Result<std::os::fd::RawFd, RxInterrupt> {
        // SAFETY: plain call on this started port's queue; a port without the operation
        // answers -ENOTSUP without logging, so it is asked first.
        match unsafe { sys::rte_eth_dev_rx_intr_enable(self.port.id.0, self.queue) } {
            0 => {}
            e if e == -libc::ENOTSUP => return Err(RxInterrupt::Unsupported),
            _ => return Err(RxInterrupt::Failed),
        }
        // SAFETY: as above; -1 when the port set up no interrupt vectors (it has none, or was
        // not configured with `PortConf::rx_interrupts`).
        let fd = unsafe { sys::rte_eth_dev_rx_intr_ctl_q_get_fd(self.port.id.0, self.queue) };
        if fd < 0 {
            self.disarm_interrupt();
            return Err(RxInterrupt::Unsupported);
        }
        Ok(fd)
    }

    /// Turns the queue's interrupt off again (polling needs none).
    pub fn disarm_interrupt(&mut self) {
        // SAFETY: plain call on this started port's queue; failure leaves a spare interrupt.
        unsafe { sys::rte_eth_dev_rx_intr_disable(self.port.id.0, self.queue) };
    }
}

/// Why `RxQueue::arm_interrupt` gave no fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxInterrupt {
    /// The port has no rx interrupts (or was started without them): it never will.
    Unsupported,
    /// It has them, but this time turning one on failed.
    Failed,
}

/// The right to transmit on one tx queue: moved into exactly one worker.
pub struct TxQueue {
    port: Arc<PortHandle>,
    queue: u16,
    /// Call the PMD even with nothing to send (`kick`): an 802.3ad bond sends its LACP
    /// frames only from inside a tx burst.
    kick_when_idle: bool,
    _unsync: PhantomData<Cell<()>>,
}

impl TxQueue {
    pub fn port(&self) -> PortId {
        self.port.id
    }

    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Makes `kick` call the PMD (for ports that do work of their own inside tx bursts).
    pub fn set_kick_when_idle(&mut self, on: bool) {
        self.kick_when_idle = on;
    }

    /// Whether `kick` calls the PMD: the port needs a tx burst now and then even when there is
    /// nothing to send.
    pub fn kicks_when_idle(&self) -> bool {
        self.kick_when_idle
    }

    /// A tx burst of no frames, where the port needs one on passes with nothing to send
    /// (`set_kick_when_idle`); nothing otherwise.
    #[inline]
    pub fn kick(&mut self) {
        if self.kick_when_idle {
            let mut none: [*mut sys::rte_mbuf; 1] = [std::ptr::null_mut()];
            // SAFETY: a burst of zero frames: the PMD reads no entry of the array.
            unsafe { sys::shim_rte_eth_tx_burst(self.port.id.0, self.queue, none.as_mut_ptr(), 0) };
        }
    }

    /// Transmits from the front of `burst`. The PMD takes ownership of the frames it accepted
    /// (they leave the burst); the caller keeps the rest, in order, to retry or drop.
    #[inline]
    pub fn tx<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let (ptr, len) = burst.head_mut();
        if len == 0 {
            return 0;
        }
        // SAFETY: ptr holds len owned mbufs; the PMD takes the first n of them.
        let n = unsafe { sys::shim_rte_eth_tx_burst(self.port.id.0, self.queue, ptr, len as u16) } as usize;
        // SAFETY: n is the PMD's own count of the frames it took from the front.
        unsafe { burst.consume_prefix(n) };
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_has_one_handle_at_a_time() {
        crate::rte::testing::eal();
        let port = Port::probe("net_null_one_handle").expect("net_null");
        let again = Port::from_id(port.id()).err().expect("a second handle is refused");
        assert!(again.to_string().contains("already open"), "{again}");
    }
}
