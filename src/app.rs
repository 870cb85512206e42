//! Start-up and shut-down order.
//!
//! Up: config -> EAL -> pool -> uplink queues -> queue assignment -> guest sockets -> MAC
//! table -> uplink start -> steering -> peer rings -> workers.
//! Down: workers stop and drop their queues -> final stats -> flow rules removed -> guest
//! sockets unregistered -> uplink closes (returning the mbufs its rings hold) -> pool checked
//! for leaks and freed -> EAL cleans up. An error half-way unwinds in the same order (locals
//! drop in reverse), after `StopOnDrop` has told any launched worker to stop.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::cli::{AssignMode, Cli, VERSION};
use crate::config::{self, Config, GuestConfig, VhostRole};
use crate::control::steering::{self, GuestSteering, Steering};
use crate::control::vmdq::RxScope;
use crate::control::rebalance::{Outcome, Rebalancer};
use crate::control::{assign, Assignment, GuestEvents, GuestLinks, Handover, LinkWatch, Signals, WorkerPlan};
use crate::datapath::{Worker, WorkerQueues, WorkerShared};
use crate::fib::MacTable;
use crate::rte::ring::{self, Consumer, Producer};
use crate::rte::vhost::VhostSocket;
use crate::rte::{self, lcore, Eal, LcoreId, Mempool, Port, PortConf, PortId};
use crate::stats::{StatsRegistry, StatsSnapshot};
use crate::wire::MacAddr;

const MEMPOOL_CACHE: u32 = 256;
const CONTROL_TICK: Duration = Duration::from_millis(20);
/// Frames in flight from one worker to another; a full ring drops (counted as dispatch_full).
const PEER_RING: u32 = 1024;
/// Descriptors for an uplink rx queue no worker polls.
const IDLE_DESCRIPTORS: u16 = 64;
/// Peers are tracked in a 64-bit mask per flooded frame.
const MAX_WORKERS: usize = 64;

/// What the process reports at exit (also used by tests through the JSON file).
pub struct ExitReport {
    pub mempool_in_use_at_start: u32,
    pub mempool_in_use_at_exit: u32,
}

pub fn run(cli: Cli, eal_args: Vec<String>) -> Result<ExitReport> {
    let cfg = config::load(&cli.guests)?;
    let signals = Signals::install().context("installing signal handlers")?;

    let eal = Eal::init(&eal_args).context("initialising EAL (options before `--`)")?;
    let workers = eal.worker_lcores();
    if workers.is_empty() {
        bail!("no worker lcore: give EAL at least two (e.g. -l 0-1); the main lcore runs the control plane, the others forward");
    }
    if workers.len() > MAX_WORKERS {
        bail!("{} worker lcores: at most {MAX_WORKERS} are supported", workers.len());
    }
    println!("dpdk-macvtap {VERSION}, running on {}", rte::eal::version());

    let max_mtu = cli.uplink_mtu.unwrap_or(1500).max(cfg.max_mtu());
    let data_room = mbuf_data_room(max_mtu);
    let pool = Arc::new(Mempool::pktmbuf("mvt_pool", cli.mbufs, MEMPOOL_CACHE, data_room, eal.socket_id())?);
    // The baseline every buffer must return to once the ports are closed.
    let mempool_at_start = pool.in_use();

    let uplink = open_uplink(&cli.port)?;
    let uplink_mtu = cli.uplink_mtu.unwrap_or(cfg.max_mtu());
    let info = uplink.info()?;
    let tx_queues = workers.len() as u16;
    if info.max_tx_queues < tx_queues {
        bail!(
            "uplink {} ({}) has {} tx queue(s) but {} workers need one each: use fewer lcores or give the port more queues (e.g. qpairs=N for net_af_packet, queues=N for net_tap)",
            uplink.name(), info.driver, info.max_tx_queues, workers.len()
        );
    }
    // One rx queue per worker where the port has them, spread by the port's RSS (or, for
    // net_af_packet, the kernel's fanout hash).
    let rx_queues = tx_queues.min(info.max_rx_queues).max(1);
    let rss = PortConf { rx_queues, tx_queues, rss_hf: if rx_queues > 1 { info.rss_offloads } else { 0 }, ..PortConf::default() };
    uplink.configure(&rss)?;

    let lcore_ids: Vec<u32> = workers.iter().map(|l| l.0).collect();
    let queue_counts: Vec<u16> = cfg.guests.iter().map(|g| g.queues).collect();
    let pins: Vec<Option<u16>> = cfg.guests.iter().map(|g| g.lcore).collect();
    let mut asg = assign(&lcore_ids, rx_queues, &queue_counts, &pins).map_err(|e| {
        let g = &cfg.guests[e.guest];
        anyhow!("{}:{}: guest {:?}: {e}", cfg.path.display(), g.line, g.name)
    })?;
    // VMDq changes the queue layout, so it is chosen before the queues are set up.
    let mut vmdq = steering::plan_vmdq(&uplink, &info, &cfg, &asg);
    let mut scopes: Vec<Vec<RxScope>> = asg.workers.iter().map(|w| vec![RxScope::All; w.uplink_rx.len()]).collect();
    if let Ok((plan, _)) = &vmdq {
        let conf = PortConf { rx_queues: plan.rx_queues, rss_hf: 0, vmdq: Some((plan.pools, plan.default_pool)), ..rss };
        match uplink.configure(&conf) {
            Ok(()) => {
                for (w, plan_w) in asg.workers.iter_mut().enumerate() {
                    let (queues, sc) = plan.queues_of(w).into_iter().unzip();
                    plan_w.uplink_rx = queues;
                    scopes[w] = sc;
                }
            }
            Err(e) => {
                vmdq = Err(format!("VMDq configuration refused: {e}"));
                uplink.configure(&rss)?;
            }
        }
    }
    let configured_rx = vmdq.as_ref().map_or(rx_queues, |(p, _)| p.rx_queues);
    if uplink.mtu().ok() != Some(uplink_mtu) {
        // Some PMDs (net_af_packet) advertise a 1518-byte limit to ethdev yet carry whatever
        // the kernel interface's MTU allows; a refusal is a warning, and the per-guest MTU
        // checks still apply.
        if let Err(e) = uplink.set_mtu(uplink_mtu) {
            eprintln!("dpdk-macvtap: warning: uplink refuses MTU {uplink_mtu} ({e}); frames up to the device's own limit still pass");
        }
    }
    // Every configured queue must be set up; one nobody polls (a VMDq pool's other queues)
    // gets a small ring, since it holds its buffers for as long as the port runs.
    let polled: Vec<bool> = (0..configured_rx).map(|q| asg.workers.iter().any(|w| w.uplink_rx.contains(&q))).collect();
    let mut uplink_rx: Vec<Option<rte::RxQueue>> = (0..configured_rx)
        .map(|q| uplink.rx_queue(q, if polled[usize::from(q)] { cli.descriptors } else { IDLE_DESCRIPTORS }, &pool).map(Some))
        .collect::<Result<_, _>>()?;
    let mut uplink_tx: Vec<Option<rte::TxQueue>> =
        (0..tx_queues).map(|q| uplink.tx_queue(q, cli.descriptors).map(Some)).collect::<Result<_, _>>()?;

    let links = GuestLinks::new(cfg.guests.len(), workers.len());
    let sockets = cfg.guests.iter().map(|g| (g.socket.display().to_string(), g.queues)).collect();
    rte::vhost::set_events(Box::new(GuestEvents::new(sockets, Arc::clone(&links))))?;
    let started = Instant::now();
    let mut guest_sockets = Vec::with_capacity(cfg.guests.len());
    for g in &cfg.guests {
        guest_sockets.push(open_guest(g).with_context(|| format!("guest {:?} ({}:{})", g.name, cfg.path.display(), g.line))?);
    }
    let guests_took = started.elapsed();
    let table = Arc::new(MacTable::from_config(&cfg)?);
    let delivery = Arc::new(asg.delivery.clone());

    uplink.start()?;
    let steering = steering::install(&uplink, &cfg, &asg, &vmdq);
    // Only guests whose filters went into their own pool get broadcast copies there.
    let pooled: Vec<bool> = steering.guests.iter().map(|g| matches!(g, GuestSteering::Pool { .. })).collect();
    print_summary(&cfg, &uplink, uplink_mtu, configured_rx, tx_queues, &pool, &steering);
    println!("{} guest sockets set up in {} ms", cfg.guests.len(), guests_took.as_millis());

    // A ring from every worker to every other worker that owns guest queues (or may come to,
    // when queues move by load).
    let measure = cli.assign == AssignMode::Cycles;
    let owners: Vec<bool> = (0..workers.len()).map(|w| measure || !asg.workers[w].guest_queues.is_empty()).collect();
    let mut to_peers: Vec<Vec<(usize, Producer)>> = (0..workers.len()).map(|_| Vec::new()).collect();
    let mut from_peers: Vec<Vec<Consumer>> = (0..workers.len()).map(|_| Vec::new()).collect();
    for (a, outgoing) in to_peers.iter_mut().enumerate() {
        for (b, &owns) in owners.iter().enumerate() {
            if a != b && owns {
                let (p, c) = ring::spsc(&format!("mvt_r{a}_{b}"), PEER_RING, eal.socket_id())?;
                outgoing.push((b, p));
                from_peers[b].push(c);
            }
        }
    }

    let mut watch = LinkWatch::new(cfg.guests.len());
    let mut registry = StatsRegistry::new(cfg.guests.iter().map(|g| g.name.clone()).collect(), asg.delivery.slots());
    let handover = Handover::new(workers.len());
    let stop = Arc::new(AtomicBool::new(false));
    let held_by_rings = pool.in_use() - mempool_at_start;
    let mut launched = Vec::with_capacity(workers.len());
    // Declared after `launched`, so on an early return it drops first: the workers are told
    // to stop before `launched` waits for them.
    let _stop_on_error = StopOnDrop(Arc::clone(&stop));
    for (wi, plan) in asg.workers.iter().enumerate() {
        let queues = WorkerQueues {
            index: wi,
            uplink_rx: plan.uplink_rx.iter().filter_map(|&q| uplink_rx[usize::from(q)].take()).collect(),
            uplink_scope: std::mem::take(&mut scopes[wi]),
            uplink_tx: uplink_tx[usize::from(plan.uplink_tx)].take().context("uplink tx queue assigned twice")?,
            guest_queues: plan.guest_ids(),
            to_peers: std::mem::take(&mut to_peers[wi]),
            from_peers: std::mem::take(&mut from_peers[wi]),
        };
        println!("{}", lcore_line(&cfg, plan));
        let shared = WorkerShared {
            table: Arc::clone(&table),
            delivery: Arc::clone(&delivery),
            links: Arc::clone(&links),
            pool: Arc::clone(&pool),
            stats: registry.add_shard(),
            measure,
            pooled: pooled.clone(),
            handover: Arc::clone(&handover),
            stop: Arc::clone(&stop),
        };
        let worker = Worker::new(queues, shared);
        launched.push(lcore::launch(LcoreId(plan.lcore), move || worker.run())?);
    }
    println!("lcore {}: control plane", eal.main_lcore());
    println!("dpdk-macvtap: forwarding ({} guests, {} workers)", cfg.guests.len(), workers.len());

    let mut steering = steering;
    let pinned: Vec<bool> = pins.iter().map(Option::is_some).collect();
    let mut rebalancer = Rebalancer::new(asg, &pinned, Arc::clone(&handover), &registry);
    let interval = Duration::from_secs(cli.stats_interval);
    let mut next_stats = Instant::now() + interval;
    let rebalance_every = Duration::from_secs(cli.rebalance_interval);
    let mut next_rebalance = Instant::now() + rebalance_every;
    while !signals.stop_requested() {
        for (g, up) in watch.poll(&links) {
            println!("guest {}: link {}", cfg.guests[g].name, if up { "up" } else { "down" });
        }
        if cli.stats_interval > 0 && Instant::now() >= next_stats {
            let snap = snapshot(&registry, &watch);
            println!("stats: {}{}", snap.summary_line(), busy_line(&snap, rebalancer.assignment()));
            next_stats += interval;
        }
        let requested = signals.take_rebalance_request();
        if requested && !measure {
            println!("rebalance: queue load is not measured; start with --assign cycles");
        }
        if measure && (requested || Instant::now() >= next_rebalance) {
            match rebalancer.run(&registry) {
                Outcome::Moved { proposal, load, before } => {
                    println!("rebalance: {}", describe_moves(&cfg, &before, &proposal, &load));
                    for plan in &rebalancer.assignment().workers {
                        println!("{}", lcore_line(&cfg, plan));
                    }
                    for line in steering.retarget(&uplink, &cfg, rebalancer.assignment()) {
                        println!("rebalance: {line}");
                    }
                }
                Outcome::Kept(why) if requested => println!("rebalance: nothing moved ({why})"),
                Outcome::Kept(_) => {}
            }
            next_rebalance = Instant::now() + rebalance_every;
        }
        if signals.take_dump_request() {
            if let Some(path) = &cli.stats_json {
                let s = snapshot(&registry, &watch);
                if let Err(e) = write_json(path, &s, &report(&steering, &cfg, rebalancer.assignment()), mempool_at_start, None) {
                    eprintln!("dpdk-macvtap: stats dump: {e:#}");
                }
            }
        }
        std::thread::sleep(CONTROL_TICK);
    }

    println!("dpdk-macvtap: stopping");
    stop.store(true, Ordering::Relaxed);
    for l in launched {
        l.join();
    }
    let last = snapshot(&registry, &watch);
    // Ports' own counters, read before they close: what the PMDs saw, beside what we counted.
    println!("final port {} ({}): {:?}", uplink.id(), uplink.name(), uplink.stats());
    // Rules go before the port they are installed on.
    let steering_desc = report(&steering, &cfg, rebalancer.assignment());
    drop(steering);
    // Unregistering a connected socket destroys its device; the workers have stopped, so
    // the handshake returns at once.
    drop(guest_sockets);
    drop(uplink);
    let mempool_at_exit = pool.in_use();
    println!("final: {}{}", last.summary_line(), busy_line(&last, rebalancer.assignment()));
    println!(
        "mempool in use at exit: {mempool_at_exit} (at start: {mempool_at_start}; held by port rx rings while running: {held_by_rings})"
    );
    if let Some(path) = &cli.stats_json {
        write_json(path, &last, &steering_desc, mempool_at_start, Some(mempool_at_exit))?;
    }
    drop(pool);
    drop(eal);
    println!("dpdk-macvtap: stopped");
    Ok(ExitReport { mempool_in_use_at_start: mempool_at_start, mempool_in_use_at_exit: mempool_at_exit })
}

/// Sets the workers' stop flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Each worker's share of its time spent moving frames, from its own TSC accounting.
fn busy_line(s: &StatsSnapshot, asg: &Assignment) -> String {
    let mut out = String::new();
    for (w, plan) in s.workers.iter().zip(&asg.workers) {
        let total = w.busy_cycles + w.idle_cycles;
        let pct = if total == 0 { 0.0 } else { 100.0 * w.busy_cycles as f64 / total as f64 };
        let cpp = w.busy_cycles.checked_div(w.frames).unwrap_or(0);
        out.push_str(&format!(" | lcore {} busy {pct:.0}% {cpp} cyc/frame", plan.lcore));
    }
    out
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

/// A guest's vhost-user socket, listening (server) or connecting (client).
fn open_guest(g: &GuestConfig) -> Result<VhostSocket> {
    let client = g.vhost == VhostRole::Client;
    if !client {
        prepare_socket_path(&g.socket)?;
    }
    let sock = VhostSocket::start(&g.socket, client, rte::vhost::OFFLOAD_FEATURES)?;
    if !client {
        set_socket_access(g)?;
    }
    Ok(sock)
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

/// `lcore 1: uplink rx [0], uplink tx q0, guest queues [vm1:0 vm3:0]`
fn lcore_line(cfg: &Config, plan: &WorkerPlan) -> String {
    let queues = plan.guest_queues.iter().map(|&(g, q)| format!("{}:{q}", cfg.guests[g].name)).collect::<Vec<_>>().join(" ");
    format!("lcore {}: uplink rx {:?}, uplink tx q{}, guest queues [{queues}]", plan.lcore, plan.uplink_rx, plan.uplink_tx)
}

#[allow(clippy::too_many_arguments)]
fn print_summary(cfg: &Config, uplink: &Port, mtu: u16, rxq: u16, txq: u16, pool: &Mempool, steering: &Steering) {
    let info = uplink.info().ok();
    let mac = uplink.mac().map(MacAddr::new).unwrap_or_default();
    println!(
        "uplink: port {} {} (driver {}), mac {mac}, mtu {mtu}, {rxq} rx / {txq} tx queues",
        uplink.id(), uplink.name(), info.map(|i| i.driver).unwrap_or_default()
    );
    println!("uplink steering: {}", steering.port_summary);
    println!("uplink admission: {}", steering.admission);
    for (g, st) in cfg.guests.iter().zip(&steering.guests) {
        let macs = g.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(",");
        let role = match g.vhost {
            VhostRole::Server => format!("server, mode {:o}", g.socket_mode),
            VhostRole::Client => "client".to_owned(),
        };
        println!(
            "guest {}: mac {macs}, socket {} ({role}), queues {}, mode {}, mtu {}, steering {st}",
            g.name, g.socket.display(), g.queues, g.mode, g.mtu
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

/// Steering and queue assignment, for the JSON export.
fn report(steering: &Steering, cfg: &Config, asg: &Assignment) -> serde_json::Value {
    let lcores: Vec<serde_json::Value> = asg
        .workers
        .iter()
        .map(|w| {
            serde_json::json!({
                "lcore": w.lcore,
                "uplink_rx": w.uplink_rx,
                "guest_queues": w.guest_queues.iter().map(|&(g, q)| format!("{}:{q}", cfg.guests[g].name)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "steering": steering.describe(), "assignment": lcores })
}

/// What a rebalance moved and the loads it expects, e.g. `vm3:0 lcore 1 -> 2; lcore 1 busy
/// 97% -> ~49%, lcore 2 busy 3% -> ~51%`.
fn describe_moves(cfg: &Config, before: &Assignment, p: &crate::control::balance::Proposal, load: &crate::control::balance::Load) -> String {
    let moves: Vec<String> = p
        .moves
        .iter()
        .map(|&(slot, from, to)| {
            let (g, q) = before.delivery.slot_queue(slot);
            let lc = |w: u16| before.workers[usize::from(w)].lcore;
            format!("{}:{q} lcore {} -> {}", cfg.guests[g].name, lc(from), lc(to))
        })
        .collect();
    let loads: Vec<String> = before
        .workers
        .iter()
        .enumerate()
        .map(|(w, plan)| format!("lcore {} busy {:.0}% -> ~{:.0}%", plan.lcore, 100.0 * load.share(p.before[w], w), 100.0 * load.share(p.after[w], w)))
        .collect();
    format!("{}; {}", moves.join(", "), loads.join(", "))
}

fn write_json(path: &Path, s: &StatsSnapshot, control: &serde_json::Value, at_start: u32, at_exit: Option<u32>) -> Result<()> {
    let mut v = serde_json::to_value(s)?;
    v["steering"] = control["steering"].clone();
    v["assignment"] = control["assignment"].clone();
    v["mempool_in_use_at_start"] = serde_json::json!(at_start);
    v["mempool_in_use_at_exit"] = serde_json::json!(at_exit);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&v)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
