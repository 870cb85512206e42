//! Start-up and shut-down order.
//!
//! Up: config -> EAL -> pool -> uplink -> guest ports -> MAC table -> start ports -> workers.
//! Down: workers stop and drop their queues -> final stats -> ports close (returning the mbufs
//! PMDs hold) -> pool is checked for leaks and freed -> EAL cleans up.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cli::{Cli, VERSION};
use crate::config::{self, Config, GuestConfig, VhostRole};
use crate::control::{round_robin, LinkWatch, Signals};
use crate::datapath::{Worker, WorkerQueues};
use crate::fib::{GuestId, MacTable};
use crate::rte::{self, lcore, Eal, Mempool, Port, PortConf, PortId};
use crate::stats::{StatsRegistry, StatsSnapshot};
use crate::wire::MacAddr;

const VHOST_DESCRIPTORS: u16 = 1024;
const MEMPOOL_CACHE: u32 = 256;
const CONTROL_TICK: Duration = Duration::from_millis(20);

/// What the process reports at exit (also used by tests through the JSON file).
pub struct ExitReport {
    pub mempool_in_use_at_start: u32,
    pub mempool_in_use_at_exit: u32,
}

pub fn run(cli: Cli, eal_args: Vec<String>) -> Result<ExitReport> {
    let cfg = config::load(&cli.guests)?;
    refuse_unimplemented(&cfg)?;
    let signals = Signals::install().context("installing signal handlers")?;

    let eal = Eal::init(&eal_args).context("initialising EAL (options before `--`)")?;
    let workers = eal.worker_lcores();
    if workers.is_empty() {
        bail!("no worker lcore: give EAL at least two (e.g. -l 0-1); the main lcore runs the control plane, the others forward");
    }
    println!("dpdk-macvtap {VERSION}, running on {}", rte::eal::version());

    let max_mtu = cli.uplink_mtu.unwrap_or(1500).max(cfg.max_mtu());
    let data_room = mbuf_data_room(max_mtu);
    let pool = Mempool::pktmbuf("mvt_pool", cli.mbufs, MEMPOOL_CACHE, data_room, eal.socket_id())?;
    // The baseline every buffer must return to once the ports are closed.
    let mempool_at_start = pool.in_use();

    let uplink = open_uplink(&cli.port)?;
    let uplink_mtu = cli.uplink_mtu.unwrap_or(cfg.max_mtu());
    let info = uplink.info()?;
    let tx_queues = workers.len() as u16;
    if info.max_tx_queues < tx_queues {
        bail!(
            "uplink {} ({}) has {} tx queue(s) but {} workers need one each: use fewer lcores or give the port more queues (e.g. qpairs=N for net_af_packet)",
            uplink.name(), info.driver, info.max_tx_queues, workers.len()
        );
    }
    uplink.configure(&PortConf { rx_queues: 1, tx_queues, mtu: None })?;
    if uplink.mtu().ok() != Some(uplink_mtu) {
        // Some PMDs (net_af_packet) advertise a 1518-byte limit to ethdev yet carry whatever
        // the kernel interface's MTU allows; a refusal is a warning, and the per-guest MTU
        // checks still apply.
        if let Err(e) = uplink.set_mtu(uplink_mtu) {
            eprintln!("dpdk-macvtap: warning: uplink refuses MTU {uplink_mtu} ({e}); frames up to the device's own limit still pass");
        }
    }
    let uplink_rx = uplink.rx_queue(0, cli.descriptors, &pool)?;
    let mut uplink_tx: Vec<_> = (0..tx_queues).map(|q| uplink.tx_queue(q, cli.descriptors)).collect::<Result<_, _>>()?;

    let mut guest_ports = Vec::with_capacity(cfg.guests.len());
    let mut guest_queues = Vec::with_capacity(cfg.guests.len());
    for (i, g) in cfg.guests.iter().enumerate() {
        let (port, rxq, txq) = open_guest(i, g, &pool).with_context(|| format!("guest {:?} ({}:{})", g.name, cfg.path.display(), g.line))?;
        guest_ports.push(port);
        guest_queues.push((Some(rxq), Some(txq)));
    }
    let table = Arc::new(MacTable::from_config(&cfg)?);

    uplink.start()?;
    for p in &guest_ports {
        p.start()?;
    }
    print_summary(&cfg, &uplink, uplink_mtu, &guest_ports, &pool);

    let mut links = LinkWatch::new(cfg.guests.len());
    let mut registry = StatsRegistry::new(cfg.guests.iter().map(|g| g.name.clone()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let plans = round_robin(workers.len(), 1, cfg.guests.len());
    let mut uplink_rx = Some(uplink_rx);
    let held_by_rings = pool.in_use() - mempool_at_start;
    let mut launched = Vec::with_capacity(workers.len());
    for ((lc, plan), txq) in workers.iter().zip(&plans).zip(uplink_tx.drain(..)) {
        let queues = WorkerQueues {
            uplink_rx: plan.uplink_rx.iter().filter_map(|_| uplink_rx.take()).collect(),
            uplink_tx: txq,
            guest_rx: plan.guest_rx.iter().filter_map(|&g| guest_queues[g].0.take().map(|q| (GuestId(g as u16), q))).collect(),
            guest_tx: plan.guest_tx.iter().filter_map(|&g| guest_queues[g].1.take().map(|q| (GuestId(g as u16), q))).collect(),
        };
        println!(
            "lcore {lc}: uplink rx {:?}, uplink tx q{}, from guests [{}], to guests [{}]",
            plan.uplink_rx, plan.uplink_tx, names(&cfg, &plan.guest_rx), names(&cfg, &plan.guest_tx)
        );
        let worker = Worker::new(queues, Arc::clone(&table), links.flags(), registry.add_shard(), Arc::clone(&stop));
        launched.push(lcore::launch(*lc, move || worker.run())?);
    }
    println!("lcore {}: control plane", eal.main_lcore());
    println!("dpdk-macvtap: forwarding ({} guests, {} workers)", cfg.guests.len(), workers.len());

    let interval = Duration::from_secs(cli.stats_interval);
    let mut next_stats = Instant::now() + interval;
    while !signals.stop_requested() {
        for ch in links.poll(&guest_ports) {
            println!("guest {}: link {}", cfg.guests[ch.guest].name, if ch.up { "up" } else { "down" });
        }
        if cli.stats_interval > 0 && Instant::now() >= next_stats {
            println!("stats: {}", snapshot(&registry, &links).summary_line());
            next_stats += interval;
        }
        if signals.take_dump_request() {
            if let Some(path) = &cli.stats_json {
                write_json(path, &snapshot(&registry, &links), mempool_at_start, None)?;
            }
        }
        std::thread::sleep(CONTROL_TICK);
    }

    println!("dpdk-macvtap: stopping");
    stop.store(true, Ordering::Relaxed);
    for l in launched {
        l.join();
    }
    let last = snapshot(&registry, &links);
    // Ports' own counters, read before they close: what the PMDs saw, beside what we counted.
    println!("final port {} ({}): {:?}", uplink.id(), uplink.name(), uplink.stats());
    for (g, p) in cfg.guests.iter().zip(&guest_ports) {
        println!("final port {} (guest {}): {:?}", p.id(), g.name, p.stats());
    }
    drop(guest_ports);
    drop(uplink);
    let mempool_at_exit = pool.in_use();
    println!("final: {}", last.summary_line());
    println!(
        "mempool in use at exit: {mempool_at_exit} (at start: {mempool_at_start}; held by port rx rings while running: {held_by_rings})"
    );
    if let Some(path) = &cli.stats_json {
        write_json(path, &last, mempool_at_start, Some(mempool_at_exit))?;
    }
    drop(pool);
    drop(eal);
    println!("dpdk-macvtap: stopped");
    Ok(ExitReport { mempool_in_use_at_start: mempool_at_start, mempool_in_use_at_exit: mempool_at_exit })
}

/// Config that parses but that this build does not forward yet is refused at start, not
/// silently mishandled.
fn refuse_unimplemented(cfg: &Config) -> Result<()> {
    for g in &cfg.guests {
        if g.queues > 1 {
            bail!(
                "{}:{}: guest {:?}: queues = {}: multiqueue guests are not implemented yet (use queues = 1)",
                cfg.path.display(), g.line, g.name, g.queues
            );
        }
    }
    Ok(())
}

/// Big enough for the largest frame in one segment: net_af_packet copies a whole frame into
/// one mbuf without checking its size.
fn mbuf_data_room(mtu: u16) -> u16 {
    let frame = usize::from(mtu) + crate::wire::ETHER_HDR_LEN + crate::wire::VLAN_TAG_LEN + crate::wire::ETHER_CRC_LEN;
    let room = frame.max(2048).next_multiple_of(1024);
    (room + rte::sys_headroom()) as u16
}

fn open_uplink(spec: &str) -> Result<Port> {
    match spec.parse::<u16>() {
        Ok(id) => Ok(Port::from_id(PortId(id))?),
        Err(_) => Ok(Port::probe(spec)?),
    }
}

fn open_guest(i: usize, g: &GuestConfig, pool: &Mempool) -> Result<(Port, rte::RxQueue, rte::TxQueue)> {
    let client = g.vhost == VhostRole::Client;
    if !client {
        prepare_socket_path(&g.socket)?;
    }
    let devargs = format!("net_vhost{i},iface={},queues={},client={}", g.socket.display(), g.queues, u8::from(client));
    let port = Port::probe(&devargs)?;
    port.configure(&PortConf { rx_queues: g.queues, tx_queues: g.queues, mtu: None })?;
    if !client {
        // The vhost PMD creates the socket when the port is configured.
        set_socket_access(g)?;
    }
    let rxq = port.rx_queue(0, VHOST_DESCRIPTORS, pool)?;
    let txq = port.tx_queue(0, VHOST_DESCRIPTORS)?;
    Ok((port, rxq, txq))
}

/// Creates the socket's directory; removes a stale socket left by a previous run (a regular
/// file in the way is an error, not something to delete).
fn prepare_socket_path(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?
        }
        Ok(_) => bail!("{} exists and is not a socket", path.display()),
        Err(_) => {}
    }
    Ok(())
}

/// So an unprivileged QEMU can connect: the seed's "no root for the VM".
fn set_socket_access(g: &GuestConfig) -> Result<()> {
    std::fs::set_permissions(&g.socket, std::fs::Permissions::from_mode(g.socket_mode))
        .with_context(|| format!("chmod {:o} {}", g.socket_mode, g.socket.display()))?;
    if g.owner.is_some() || g.group.is_some() {
        std::os::unix::fs::chown(&g.socket, g.owner, g.group)
            .with_context(|| format!("chown {:?}:{:?} {}", g.owner, g.group, g.socket.display()))?;
    }
    Ok(())
}

fn names(cfg: &Config, idx: &[usize]) -> String {
    idx.iter().map(|&i| cfg.guests[i].name.as_str()).collect::<Vec<_>>().join(" ")
}

fn print_summary(cfg: &Config, uplink: &Port, mtu: u16, guests: &[Port], pool: &Mempool) {
    let info = uplink.info().ok();
    let mac = uplink.mac().map(MacAddr::new).unwrap_or_default();
    println!(
        "uplink: port {} {} (driver {}), mac {mac}, mtu {mtu}, steering: software (one rx queue, classified by destination MAC)",
        uplink.id(), uplink.name(), info.map(|i| i.driver).unwrap_or_default()
    );
    for (g, p) in cfg.guests.iter().zip(guests) {
        let macs = g.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",");
        let role = match g.vhost {
            VhostRole::Server => format!("server, mode {:o}", g.socket_mode),
            VhostRole::Client => "client".to_owned(),
        };
        println!(
            "guest {}: mac {macs}, socket {} ({role}), port {} {}, queues {}, mode {}, mtu {}",
            g.name, g.socket.display(), p.id(), p.name(), g.queues, g.mode, g.mtu
        );
    }
    println!("mempool: {} mbufs of {} bytes", pool.available() + pool.in_use(), pool.data_room());
}

fn snapshot(reg: &StatsRegistry, links: &LinkWatch) -> StatsSnapshot {
    let mut s = reg.snapshot();
    for (i, g) in s.guests.iter_mut().enumerate() {
        g.link_up = links.is_up(i);
    }
    s
}

fn write_json(path: &Path, s: &StatsSnapshot, at_start: u32, at_exit: Option<u32>) -> Result<()> {
    let mut v = serde_json::to_value(s)?;
    v["mempool_in_use_at_start"] = serde_json::json!(at_start);
    v["mempool_in_use_at_exit"] = serde_json::json!(at_exit);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&v)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
