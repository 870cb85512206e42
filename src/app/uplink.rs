//! The uplink port at start: opened (or probed), configured with a queue pair per worker
//! (or VMDq pools where the port steers that way), its MTU set and its queues set up.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::bond::BondUplink;
use crate::config::GuestConfig;
use crate::control::steering;
use crate::control::vmdq::{VmdqCaps, VmdqPlan};
use crate::control::Assignment;
use crate::datapath::VlanOffload;
use crate::rte::ethdev::{RX_OFFLOAD_VLAN_STRIP, TX_OFFLOAD_VLAN_INSERT};
use crate::rte::kernel_if::KernelIface;
use crate::rte::{Mempool, Port, PortConf, PortId, PortInfo, RxQueue, TxQueue};
use crate::view::RxScope;

/// Descriptors for an uplink rx queue no worker polls.
const IDLE_DESCRIPTORS: u16 = 64;

/// The uplink, configured, before its queues are set up (they need the pool, which is sized
/// from them).
pub struct Layout {
    pub port: Port,
    /// Descriptors for each rx queue to set up (a queue nobody polls gets a small ring).
    pub rx_descriptors: Vec<u16>,
    pub tx_queues: u16,
    pub tx_descriptors: u16,
    pub scopes: Vec<Vec<RxScope>>,
    pub vmdq: Result<(VmdqPlan, VmdqCaps), String>,
}

/// The uplink, configured, with its queues ready to hand to the workers.
pub struct Uplink {
    pub port: Port,
    pub rx: Vec<Option<RxQueue>>,
    pub tx: Vec<Option<TxQueue>>,
    /// Per worker, the flood scope of each rx queue it polls.
    pub scopes: Vec<Vec<RxScope>>,
    pub vmdq: Result<(VmdqPlan, VmdqCaps), String>,
    pub rx_queues: u16,
    pub tx_queues: u16,
}

/// The VLAN offloads to use: those the port offers, unless `allowed` is false
/// (`--no-vlan-offload`).
pub fn vlan_offload(info: &PortInfo, allowed: bool) -> VlanOffload {
    VlanOffload {
        rx_strip: allowed && info.rx_offload_capa & RX_OFFLOAD_VLAN_STRIP != 0,
        tx_insert: allowed && info.tx_offload_capa & TX_OFFLOAD_VLAN_INSERT != 0,
    }
}

/// `uplink vlan: ...` of the start-up summary: who tags and untags VLAN guests' frames.
pub fn describe_vlan(v: VlanOffload, info: &PortInfo, allowed: bool) -> String {
    let why = |offered: bool| match (offered, allowed) {
        (true, true) => "",
        (true, false) => " (--no-vlan-offload)",
        (false, _) => " (the port has no such offload)",
    };
    let side = |on: bool| if on { "port offload" } else { "software" };
    format!(
        "rx tag removal by {}{}, tx tag insertion by {}{}",
        side(v.rx_strip),
        why(info.rx_offload_capa & RX_OFFLOAD_VLAN_STRIP != 0),
        side(v.tx_insert),
        why(info.tx_offload_capa & TX_OFFLOAD_VLAN_INSERT != 0)
    )
}

/// net_af_packet's defaults (DPDK 22.11): a 4096-byte block holding two 2048-byte frames.
const AF_PACKET_BLOCKSZ: u64 = 4096;
const AF_PACKET_FRAMESZ: u64 = 2048;

/// Refuses a net_af_packet ring layout that stalls: DPDK 22.11's PMD reads ring frame `i` at
/// `i * framesz`, but the kernel lays frames out block by block, so unless a block holds a
/// whole number of frames the PMD soon reads where no frame is and the uplink stops
/// receiving. `devargs` is one `--vdev` value or `--port` spec; other drivers pass.
pub fn check_af_packet(devargs: &str) -> Result<(), String> {
    let Some(args) = af_packet_args(devargs) else { return Ok(()) };
    let (mut block, mut frame) = (AF_PACKET_BLOCKSZ, AF_PACKET_FRAMESZ);
    for (k, v) in args {
        let n = || v.trim().parse::<u64>().map_err(|_| format!("{devargs}: {k}={v} is not a number"));
        match k.trim() {
            "blocksz" => block = n()?,
            "framesz" => frame = n()?,
            _ => {}
        }
    }
    if frame == 0 || block % frame != 0 {
        return Err(format!(
            "{devargs}: blocksz={block} is not a multiple of framesz={frame}: DPDK 22.11's net_af_packet would stop receiving after a few frames \
             (it reads frame i at i*framesz); e.g. blocksz=36864,framesz=9216 for jumbo frames"
        ));
    }
    Ok(())
}

/// The `key=value` arguments (as written) of `devargs`, a `--vdev` value, when it names a
/// net_af_packet device; None for any other driver.
pub fn af_packet_args(devargs: &str) -> Option<impl Iterator<Item = (&str, &str)>> {
    let mut parts = devargs.split(',');
    let name = parts.next()?.trim();
    (name.starts_with("net_af_packet") || name.starts_with("eth_af_packet")).then(|| parts.filter_map(|kv| kv.split_once('=')))
}

/// `check_af_packet` for every `--vdev` among the EAL arguments.
pub fn check_vdevs(eal_args: &[String]) -> Result<(), String> {
    vdevs(eal_args).iter().try_for_each(|v| check_af_packet(v))
}

/// The value of every `--vdev` among the EAL arguments.
pub fn vdevs(eal_args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = eal_args.iter();
    while let Some(a) = it.next() {
        let value = match a.strip_prefix("--vdev=") {
            Some(v) => Some(v.to_owned()),
            None if a == "--vdev" => it.next().cloned(),
            None => None,
        };
        out.extend(value);
    }
    out
}

/// The kernel interfaces (index, name) whose arriving frames wake a blocked worker in place
/// of rx interrupts the uplink does not have (`datapath::block`): net_af_packet's, or those
/// of a bond's net_af_packet members. Empty for any other port (a bond's members without a
/// kernel interface leave its workers sleeping: they would miss those members' frames).
/// Err: why a bond over net_af_packet members gets none (its workers sleep), to print.
pub fn arrival_ifaces(info: &PortInfo, bond: Option<&BondUplink>) -> Result<Vec<(u32, String)>, String> {
    if info.driver == "net_af_packet" && info.if_index != 0 {
        return Ok(KernelIface::from_index(info.if_index).map(|k| (info.if_index, k.name())).into_iter().collect());
    }
    let named = |k: KernelIface| (k.index(), k.name());
    let Some(b) = bond else { return Ok(Vec::new()) };
    let found: Vec<(u32, String)> = b.af_packet_ifaces().iter().filter_map(|n| KernelIface::from_name(n).ok()).map(named).filter(|(i, _)| *i != 0).collect();
    if found.is_empty() || found.len() != b.member_count() {
        return Ok(Vec::new());
    }
    if !b.reads_every_member() {
        return Err(format!("in {} it reads only the member in use (the others' frames would wake the workers); idle workers sleep", b.describe_mode()));
    }
    if b.kicks_when_idle() {
        return Err("802.3ad sends its LACP frames from the workers' idle passes: the workers polling it never block".to_owned());
    }
    Ok(found)
}

pub fn open(spec: &str) -> Result<Port> {
    match spec.parse::<u16>() {
        Ok(id) => Ok(Port::from_id(PortId(id))?),
        Err(_) => Ok(Port::probe(spec)?),
    }
}

/// The queue pairs the uplink gets for `workers` workers: a tx queue each, and an rx queue
/// each where the port has them (spread by the port's RSS, or for net_af_packet the
/// kernel's fanout hash).
pub fn queue_counts(port: &Port, workers: usize) -> Result<(PortInfo, u16, u16)> {
    let info = port.info()?;
    let tx_queues = workers as u16;
    if info.max_tx_queues < tx_queues {
        bail!(
            "uplink {} ({}) has {} tx queue(s) but {} workers need one each: use fewer lcores or give the port more queues (e.g. qpairs=N for net_af_packet, queues=N for net_tap)",
            port.name(), info.driver, info.max_tx_queues, workers
        );
    }
    let rx_queues = tx_queues.min(info.max_rx_queues).max(1);
    Ok((info, rx_queues, tx_queues))
}

/// Configures `port` with the queues `queue_counts` gave, for the start-up guests (ids
/// 0..n); fills in each worker plan's uplink rx queues when VMDq changes them.
#[allow(clippy::too_many_arguments)]
pub fn configure(port: Port, info: &PortInfo, rx_queues: u16, tx_queues: u16, guests: &[GuestConfig], asg: &mut Assignment, mtu: u16, descriptors: u16, vlan: VlanOffload, rx_interrupts: bool) -> Result<Layout> {
    let mut rss = PortConf {
        rx_queues,
        tx_queues,
        rss_hf: if rx_queues > 1 { info.rss_offloads } else { 0 },
        rx_offloads: if vlan.rx_strip { RX_OFFLOAD_VLAN_STRIP } else { 0 },
        tx_offloads: if vlan.tx_insert { TX_OFFLOAD_VLAN_INSERT } else { 0 },
        // Link-state interrupts where the port has them: the switch follows the link
        // (app::uplink_watch).
        lsc: info.lsc,
        // Where the port has them, workers block on them in a long lull; ports without them
        // ignore the request, and one that refuses it runs without (workers then only sleep).
        rx_interrupts,
        ..PortConf::default()
    };
    if let Err(e) = port.configure(&rss) {
        if !rx_interrupts {
            return Err(e.into());
        }
        rss.rx_interrupts = false;
        port.configure(&rss)?;
        println!("uplink: no rx interrupts ({e}): idle workers sleep, never block");
    }
    // VMDq changes the queue layout, so it is chosen before the queues are set up.
    let mut vmdq = steering::plan_vmdq(&port, info, guests, asg);
    let mut scopes: Vec<Vec<RxScope>> = asg.workers.iter().map(|w| vec![RxScope::All; w.uplink_rx.len()]).collect();
    if let Ok((plan, _)) = &vmdq {
        let conf = PortConf { rx_queues: plan.rx_queues, rss_hf: 0, vmdq: Some((plan.pools, plan.default_pool)), ..rss };
        match port.configure(&conf) {
            Ok(()) => {
                for (w, plan_w) in asg.workers.iter_mut().enumerate() {
                    let (queues, sc) = plan.queues_of(w).into_iter().unzip();
                    plan_w.uplink_rx = queues;
                    scopes[w] = sc;
                }
            }
            Err(e) => {
                vmdq = Err(format!("VMDq configuration refused: {e}"));
                port.configure(&rss)?;
            }
        }
    }
    let configured_rx = vmdq.as_ref().map_or(rx_queues, |(p, _)| p.rx_queues);
    if port.mtu().ok() != Some(mtu) {
        // Some PMDs (net_af_packet) advertise a 1518-byte limit to ethdev yet carry whatever
        // the kernel interface's MTU allows; a refusal is a warning, and the per-guest MTU
        // checks still apply.
        if let Err(e) = port.set_mtu(mtu) {
            eprintln!("dpdk-macvtap: warning: uplink refuses MTU {mtu} ({e}); frames up to the device's own limit still pass");
        }
    }
    // Every configured queue must be set up; one nobody polls (a VMDq pool's other queues)
    // gets a small ring, since it holds its buffers for as long as the port runs.
    let rx_descriptors = (0..configured_rx)
        .map(|q| if asg.workers.iter().any(|w| w.uplink_rx.contains(&q)) { descriptors } else { IDLE_DESCRIPTORS })
        .collect();
    Ok(Layout { port, rx_descriptors, tx_queues, tx_descriptors: descriptors, scopes, vmdq })
}

impl Layout {
    /// Sets the queues up, their rx rings filled from `pool`.
    pub fn setup(self, pool: &Arc<Mempool>) -> Result<Uplink> {
        let Layout { port, rx_descriptors, tx_queues, tx_descriptors, scopes, vmdq } = self;
        let rx = rx_descriptors.iter().enumerate().map(|(q, &d)| port.rx_queue(q as u16, d, pool).map(Some)).collect::<Result<_, _>>()?;
        let tx = (0..tx_queues).map(|q| port.tx_queue(q, tx_descriptors).map(Some)).collect::<Result<_, _>>()?;
        let rx_queues = rx_descriptors.len() as u16;
        Ok(Uplink { port, rx, tx, scopes, vmdq, rx_queues, tx_queues })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn af_packet_layouts_that_stall_are_refused() {
        assert_eq!(check_af_packet("net_af_packet0,iface=eth1"), Ok(()));
        assert_eq!(check_af_packet("net_af_packet0,iface=eth1,blocksz=36864,framesz=9216,framecnt=256"), Ok(()));
        assert_eq!(check_af_packet("net_tap0,blocksz=3"), Ok(()), "not af_packet");
        let e = check_af_packet("net_af_packet0,iface=up0,blocksz=16384,framesz=9248").expect_err("stalls");
        assert!(e.starts_with("net_af_packet0,iface=up0,blocksz=16384,framesz=9248: blocksz=16384 is not a multiple of framesz=9248"), "{e}");
        assert!(check_af_packet("net_af_packet0,framesz=3000").is_err(), "the default 4096-byte block");
        assert!(check_af_packet("net_af_packet0,framesz=0").is_err());
        assert!(check_af_packet("net_af_packet0,blocksz=big").is_err_and(|e| e.contains("blocksz=big is not a number")));
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check_vdevs(&args(&["-l", "0-1", "--vdev", "net_af_packet0,blocksz=5000"])).is_err());
        assert!(check_vdevs(&args(&["--vdev=net_af_packet0,blocksz=5000"])).is_err());
        assert_eq!(check_vdevs(&args(&["--vdev=net_null0", "--no-huge"])), Ok(()));
    }
}
