//! The running switch: what it holds, in the order it lets go of it, and the one path by
//! which its guests' state reaches the workers (`publish`).
//!
//! Up: EAL -> uplink opened, start-up assignment, uplink configured for it -> pool (sized
//! from that layout) -> uplink queues -> guest sockets -> uplink start -> steering -> tables
//! (they need steering's pools) -> workers.
//! Down (`stop`, or dropping a half-started switch): workers stop -> (`stop` only: the
//! uplink's MAC and promiscuous mode given back, final counters read) -> the control
//! thread's ends of the origin rings go -> flow rules and filters go -> guest sockets are
//! unregistered -> the link-state callback is unregistered -> the uplink closes (returning
//! the buffers its rings hold) -> the pool is checked for leaks and freed -> EAL cleans up.
//! The order is the field order of `Running`, then `pool`, then `eal`: written once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::announce::Announcer;
use super::bond::BondUplink;
use super::guests::{GuestSet, RunningGuest};
use super::hairpin::HairpinCheck;
use super::originate::Originator;
use super::sizing::{self, Demand};
use super::workers::{ORIGIN_RING, PEER_RING};
use super::uplink;
use super::workers::{Launch, Workers};
use crate::cli::{AssignMode, Cli, VERSION};
use crate::config::{Config, GuestConfig, MAX_GUESTS};
use crate::control::rebalance::Rebalancer;
use crate::control::steering::{self, Steering};
use crate::control::uplink_owner::UplinkOwner;
use crate::control::events::Event;
use crate::control::uplink_link::UplinkLink;
use crate::control::{assign, Assignment, EventsHandle, GuestEvents, LinkWatch};
use crate::fib::{GuestId, MacTable};
use crate::rte::kernel_if::KernelIface;
use crate::rte::link_events::LinkEvents;
use crate::rte::{self, Eal, Mempool, Port};
use crate::stats::{StatsRegistry, StatsSnapshot};
use crate::datapath::{ProbeSeen, VlanOffload, RX_BURSTS_PER_PASS, UPLINK_PENDING};
use crate::view::{DeliveryMap, Doorbells, GuestLinks, Handover, SourceTable, Tables, WorkerView, MAX_SLOTS};

const MEMPOOL_CACHE: u32 = 256;
/// Packet buffers when `--mbufs` is not given and the worst case needs no more.
const DEFAULT_MBUFS: u32 = 16383;
/// Peers are tracked in a 64-bit mask per flooded frame.
const MAX_WORKERS: usize = 64;

/// What the process reports at exit (also used by tests through the JSON file).
pub struct ExitReport {
    pub mempool_in_use_at_start: u32,
    pub mempool_in_use_at_exit: u32,
}

/// Everything that holds packet buffers, flow rules or guest devices, in teardown order.
pub(super) struct Running {
    pub workers: Workers,
    /// The control thread's ends of the workers' origin rings: freed once the workers, which
    /// empty them at stop, are gone.
    pub origin: Originator,
    /// Rules and filters go before the port they are installed on.
    pub steering: Steering,
    /// Unregistering a connected socket destroys its device; with the workers stopped, the
    /// handshake returns at once.
    pub guests: GuestSet,
    /// The link-state callback goes before the port it is registered on.
    pub link_events: Option<LinkEvents>,
    pub uplink: Port,
}

/// Settings from the command line the running switch keeps using.
pub(super) struct Settings {
    pub guests_file: std::path::PathBuf,
    pub stats_interval: Duration,
    pub stats_json: Option<std::path::PathBuf>,
    pub measure: bool,
    pub rebalance_every: Duration,
}

pub struct Switch {
    pub(super) running: Running,
    /// Checked for leaks once `running` is gone, freed before EAL.
    pub(super) pool: Arc<Mempool>,
    pub(super) eal: Eal,
    pub(super) settings: Settings,
    /// Which worker serves which queue, as last published.
    pub(super) asg: Assignment,
    /// The tables the workers run on (the control thread's own reference).
    pub(super) tables: Arc<Tables>,
    pub(super) handover: Arc<Handover>,
    pub(super) links: Arc<GuestLinks>,
    pub(super) events: Arc<GuestEvents>,
    pub(super) registry: StatsRegistry,
    pub(super) watch: LinkWatch,
    pub(super) rebalancer: Rebalancer,
    pub(super) uplink_mtu: u16,
    pub(super) mempool_at_start: u32,
    pub(super) held_by_rings: u32,
    /// The pool against what the guest set can take out of it (source-mode guests' copies).
    pub(super) budget: sizing::Budget,
    /// The longest a worker went without forwarding for the last publication.
    pub(super) last_pause: Duration,
    pub(super) epoch: u64,
    /// A change of the guest set since the control loop last looked (for its status line).
    pub(super) guests_changed: bool,
    /// Which VLAN work the uplink port does (the rest is the workers' software).
    pub(super) vlan_offload: VlanOffload,
    /// What the passthru and source modes changed on the uplink (promiscuous mode, its MAC).
    pub(super) owner: UplinkOwner,
    /// MAC re-announcements under way.
    pub(super) announcer: Announcer,
    pub(super) hairpin: HairpinCheck,
    /// The uplink's bond, if it is one (followed by `tick`).
    pub(super) bond: Option<BondUplink>,
    /// The uplink's link as last seen (what `Tables::uplink_up` is built from).
    pub(super) uplink_link: UplinkLink,
    /// The kernel interface behind the uplink, whose carrier is part of its link.
    pub(super) uplink_iface: Option<KernelIface>,
    /// Events for the control socket's subscribers, until the control loop takes them.
    pub(super) pending_events: Vec<(std::time::SystemTime, Event)>,
}

impl Switch {
    pub fn start(cli: &Cli, eal_args: &[String], cfg: Config) -> Result<Switch> {
        uplink::check_vdevs(eal_args).and_then(|()| uplink::check_af_packet(&cli.port)).map_err(|e| anyhow!(e))?;
        let eal = Eal::init(eal_args).context("initialising EAL (options before `--`)")?;
        let lcores = eal.worker_lcores();
        if lcores.is_empty() {
            bail!("no worker lcore: give EAL at least two (e.g. -l 0-1); the main lcore runs the control plane, the others forward");
        }
        if lcores.len() > MAX_WORKERS {
            bail!("{} worker lcores: at most {MAX_WORKERS} are supported", lcores.len());
        }
        println!("dpdk-macvtap {VERSION}, running on {}", rte::eal::version());

        let port = uplink::open(&cli.port)?;
        let mut devargs = uplink::vdevs(eal_args);
        devargs.push(cli.port.clone());
        super::bond::refuse_member(&port, &devargs).map_err(|e| anyhow!(e))?;
        let (info, rx_queues, tx_queues) = uplink::queue_counts(&port, lcores.len())?;
        let lcore_ids: Vec<u32> = lcores.iter().map(|l| l.0).collect();
        let queue_counts: Vec<u16> = cfg.guests.iter().map(|g| g.queues).collect();
        let pins: Vec<Option<u16>> = cfg.guests.iter().map(|g| g.lcore).collect();
        let mut asg = assign(&lcore_ids, rx_queues, &queue_counts, &pins).map_err(|e| {
            let g = &cfg.guests[e.guest];
            anyhow!("{}:{}: guest {:?}: {e}", cfg.path.display(), g.line, g.name)
        })?;
        let uplink_mtu = cli.uplink_mtu.unwrap_or(cfg.max_mtu());
        let vlan_offload = uplink::vlan_offload(&info, !cli.no_vlan_offload);
        // Rx interrupts let an idle worker block rather than sleep (`datapath::block`).
        let rx_interrupts = cli.idle_block_after_us() > 0;
        let layout = uplink::configure(port, &info, rx_queues, tx_queues, &cfg.guests, &mut asg, uplink_mtu, cli.descriptors, vlan_offload, rx_interrupts)?;
        let bond = BondUplink::prepare(&layout.port, &info.driver, &devargs, Duration::from_millis(cli.bond_up_delay)).map(|(b, lines)| {
            lines.iter().for_each(|l| println!("{l}"));
            b
        });
        // Where the uplink has no rx interrupts but reads kernel interfaces, their frames wake
        // blocked workers instead: only where one worker polls all of its rx queues, since a
        // watch sees every frame of the interface.
        let pollers = asg.workers.iter().filter(|p| !p.uplink_rx.is_empty()).count();
        let arrivals = if rx_interrupts { uplink::arrival_ifaces(&info, bond.as_ref()) } else { Ok(Vec::new()) };
        let (arrival_ifaces, wake_line) = match arrivals {
            Ok(a) if a.is_empty() => (Vec::new(), None),
            Ok(a) => {
                let names = a.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", ");
                let s = if a.len() > 1 { "s" } else { "" };
                if pollers == 1 {
                    (a.iter().map(|&(i, _)| i).collect(), Some(format!("{} has no rx interrupts; a blocked worker wakes for frames arriving at kernel interface{s} {names}", info.driver)))
                } else {
                    (Vec::new(), Some(format!("none: {} has no rx interrupts, and its frames are spread over {pollers} workers' queues (a watch on kernel interface{s} {names} would wake them all); idle workers sleep", info.driver)))
                }
            }
            Err(why) => (Vec::new(), Some(format!("none: {} has no rx interrupts, and {why}", info.driver))),
        };
        let demand = Demand {
            rx_descriptors: &layout.rx_descriptors,
            tx_queues,
            tx_descriptors: cli.descriptors,
            workers: lcores.len(),
            peer_ring: PEER_RING,
            origin_ring: ORIGIN_RING,
            lcores: lcores.len() + 1,
            cache: MEMPOOL_CACHE,
            uplink_pending: UPLINK_PENDING,
            rx_bursts: RX_BURSTS_PER_PASS,
            source_queues: sizing::source_queues(&cfg.guests),
        };
        let mbufs = sizing::pool_size(cli.mbufs, DEFAULT_MBUFS, &demand).map_err(|e| anyhow!(e))?;
        let budget = sizing::Budget::new(mbufs, &demand);
        let max_mtu = cli.uplink_mtu.unwrap_or(1500).max(cfg.max_mtu());
        let pool = Arc::new(Mempool::pktmbuf("mvt_pool", mbufs, MEMPOOL_CACHE, mbuf_data_room(max_mtu)?, eal.socket_id())?);
        // The baseline every buffer must return to once the ports are closed.
        let mempool_at_start = pool.in_use();
        let mut up = layout.setup(&pool)?;
        if let Some(b) = &bond {
            b.set_up_tx(&mut up.tx);
        }

        let links = GuestLinks::new(MAX_GUESTS, lcores.len());
        // Each worker's poller, and the doorbells that wake it when it blocks.
        let (bells, polls) = Doorbells::new(lcores.len()).context("creating the workers' pollers")?;
        let events = GuestEvents::new(Arc::clone(&links), Arc::clone(&bells));
        rte::vhost::set_events(Box::new(EventsHandle(Arc::clone(&events))))?;
        let mut registry = StatsRegistry::new(MAX_GUESTS, MAX_SLOTS);
        let started = Instant::now();
        let mut guests = GuestSet::default();
        for (i, g) in cfg.guests.iter().enumerate() {
            let id = GuestId(i as u16);
            let running = RunningGuest::start(g, id, &events).with_context(|| format!("{}:{}: guest {:?}", cfg.path.display(), g.line, g.name))?;
            guests.insert(id, running);
            registry.add_guest(id, &g.name);
        }
        let guests_took = started.elapsed();

        up.port.start().map_err(|e| {
            let hint = if rx_interrupts { " (with rx interrupts, for --idle-block-after: --idle-block-after 0 starts it without)" } else { "" };
            anyhow!("starting the uplink{hint}: {e}")
        })?;
        let steering = steering::install(&up.port, &cfg.guests, &asg, &up.vmdq);
        let fib = MacTable::from_config(&cfg)?;
        let sources = SourceTable::build(cfg.guests.iter().enumerate().map(|(i, g)| (GuestId(i as u16), g)), &fib);
        let (uplink_link, uplink_iface) = super::uplink_watch::first_look(&up.port, &info, Duration::from_millis(cli.uplink_up_delay));
        let mut tables = Tables::new(fib, asg.delivery.clone(), |g| steering.pooled(g)).with_sources(sources);
        tables.uplink_up = uplink_link.link.up;
        let tables = Arc::new(tables);
        super::report::print_summary(&guests, &up.port, uplink_mtu, up.rx_queues, up.tx_queues, &pool, &steering);
        super::report::print_uplink_link(&uplink_link);
        println!("uplink vlan: {}", uplink::describe_vlan(vlan_offload, &info, !cli.no_vlan_offload));
        if let Some(l) = wake_line {
            println!("uplink wake-ups: {l}");
        }
        let mut owner = UplinkOwner::new(&up.port);
        for line in owner.sync(&up.port, &cfg.guests, steering.is_promiscuous()) {
            println!("{line}");
        }
        println!("{} guest sockets set up in {} ms", cfg.guests.len(), guests_took.as_millis());

        let measure = cli.assign == AssignMode::Cycles;
        let handover = Handover::new(lcores.len(), Arc::clone(&bells));
        let uplink::Uplink { port, rx, tx, scopes, .. } = up;
        let probes = Arc::new(ProbeSeen::default());
        let (workers, senders) = Workers::launch(
            &asg,
            Launch { uplink_rx: rx, uplink_tx: tx, scopes, tables: &tables, links: &links, pool: &pool, handover: &handover, registry: &mut registry, measure, idle_sleep_max_us: cli.idle_sleep_max, idle_block_after_us: cli.idle_block_after_us(), idle_block_limit: Duration::from_millis(cli.idle_block_limit), arrival_ifaces: &arrival_ifaces, tsc_hz: eal.tsc_hz(), polls, bells: &bells, socket_id: eal.socket_id(), vlan_offload, probes: &probes },
        )?;
        let origin = Originator::new(senders, Arc::clone(&pool));
        let held_by_rings = pool.in_use() - mempool_at_start;
        for plan in &asg.workers {
            println!("{}", super::report::lcore_line(&guests, plan));
        }
        println!("lcore {}: control plane", eal.main_lcore());
        println!("dpdk-macvtap: forwarding ({} guests, {} workers)", cfg.guests.len(), lcores.len());
        let rebalancer = Rebalancer::new(&registry);
        Ok(Switch {
            running: Running { workers, origin, steering, guests, link_events: None, uplink: port },
            pool,
            eal,
            settings: Settings {
                guests_file: cli.guests.clone(),
                stats_interval: Duration::from_secs(cli.stats_interval),
                stats_json: cli.stats_json.clone(),
                measure,
                rebalance_every: Duration::from_secs(cli.rebalance_interval),
            },
            asg,
            tables,
            handover,
            links,
            events,
            registry,
            watch: LinkWatch::new(MAX_GUESTS),
            rebalancer,
            uplink_mtu,
            mempool_at_start,
            held_by_rings,
            budget,
            last_pause: Duration::ZERO,
            epoch: 0,
            guests_changed: false,
            vlan_offload,
            owner,
            announcer: Announcer::default(),
            hairpin: HairpinCheck::new(probes, !cli.no_hairpin_check),
            bond,
            uplink_link,
            uplink_iface,
            pending_events: Vec::new(),
        })
    }

    /// Tables for `guests` (id, config) over `delivery`; fails only on a conflict the
    /// validation should have caught, before anything changed.
    pub(super) fn build_tables<'a>(&self, guests: impl IntoIterator<Item = (GuestId, &'a GuestConfig)> + Clone, delivery: DeliveryMap) -> Result<Arc<Tables>> {
        let fib = MacTable::from_guests(guests.clone(), self.epoch + 1)?;
        let sources = SourceTable::build(guests, &fib);
        let steering = &self.running.steering;
        let mut tables = Tables::new(fib, delivery, |g| steering.pooled(g)).with_sources(sources);
        tables.uplink_up = self.uplink_link.link.up;
        Ok(Arc::new(tables))
    }

    /// After a change of the guest set: the uplink's promiscuous mode and MAC as the passthru
    /// and source modes need them (see `control::uplink_owner`).
    pub(super) fn sync_uplink_owner(&mut self) {
        let guests: Vec<&GuestConfig> = self.running.guests.iter().map(|(_, r)| &r.cfg).collect();
        for line in self.owner.sync(&self.running.uplink, guests, self.running.steering.is_promiscuous()) {
            println!("{line}");
        }
    }

    /// The one way a change reaches the workers: each gets its view of `tables` (under
    /// `self.asg`) between two passes; returns once all run on it, and frees the old ones.
    pub(super) fn publish(&mut self, tables: Arc<Tables>) {
        let views = (0..self.asg.workers.len()).map(|w| WorkerView::new(&tables, w)).collect();
        let epoch = self.handover.publish(views);
        self.handover.wait_adopted(epoch);
        let cycles = self.handover.wait_resumed(epoch);
        let hz = self.eal.tsc_hz().max(1);
        self.last_pause = Duration::from_nanos((u128::from(cycles) * 1_000_000_000 / u128::from(hz)).min(u128::from(u64::MAX)) as u64);
        self.epoch = epoch;
        // The control thread's reference was the last one to the old tables: freed here.
        self.tables = tables;
    }

    /// Counters now, with link states.
    pub(super) fn snapshot(&self) -> StatsSnapshot {
        let mut s = self.registry.snapshot();
        for g in s.guests.iter_mut() {
            g.link_up = self.watch.is_up(g.id);
        }
        reported(&mut s, &self.running.origin, self.hairpin_verdict());
        s.uplink_link = Some(self.uplink_link.json());
        s
    }

    /// Link changes since the last look, as lines.
    pub(super) fn poll_links(&mut self) -> Vec<String> {
        let ids = self.running.guests.ids();
        let now = std::time::SystemTime::now();
        let mut lines = Vec::new();
        for (g, up) in self.watch.poll(&self.links, &ids) {
            if let Some(r) = self.running.guests.get(g) {
                lines.push(format!("guest {}: link {}", r.cfg.name, if up { "up" } else { "down" }));
                self.pending_events.push((now, Event::GuestLink { guest: r.cfg.name.clone(), up }));
            }
        }
        lines
    }

    /// Stops the workers, reports, and lets go of everything in order.
    pub fn stop(self) -> Result<ExitReport> {
        println!("dpdk-macvtap: stopping");
        let hairpin = self.hairpin_verdict();
        let Switch { mut running, pool, eal, settings, asg, registry, watch, mempool_at_start, held_by_rings, mut owner, uplink_link, .. } = self;
        running.workers.stop();
        // The port as it was found (its own MAC, not promiscuous for a passthru or source
        // guest), before it closes.
        for line in owner.release(&running.uplink, running.steering.is_promiscuous()) {
            println!("{line}");
        }
        let mut last = registry.snapshot();
        for g in last.guests.iter_mut() {
            g.link_up = watch.is_up(g.id);
        }
        reported(&mut last, &running.origin, hairpin);
        last.uplink_link = Some(uplink_link.json());
        // Ports' own counters, read before they close: what the PMDs saw, beside what we counted.
        println!("final port {} ({}): {:?}", running.uplink.id(), running.uplink.name(), running.uplink.stats());
        let control = super::report::control_json(&running.steering, &running.guests, &asg);
        drop(running);
        let mempool_at_exit = pool.in_use();
        println!("final: {}{}", last.summary_line(), super::report::busy_line(&last, &asg));
        println!("mempool in use at exit: {mempool_at_exit} (at start: {mempool_at_start}; held by port rx rings while running: {held_by_rings})");
        if let Some(path) = &settings.stats_json {
            super::report::write_json(path, &last, &control, mempool_at_start, Some(mempool_at_exit))?;
        }
        drop(pool);
        drop(eal);
        println!("dpdk-macvtap: stopped");
        Ok(ExitReport { mempool_in_use_at_start: mempool_at_start, mempool_in_use_at_exit: mempool_at_exit })
    }
}

/// Adds to `s` what only the control thread knows: the frames it queued for the uplink (or
/// could not) and the last hairpin verdict.
fn reported(s: &mut StatsSnapshot, origin: &Originator, hairpin: crate::stats::Hairpin) {
    let c = origin.counts();
    let o = &mut s.originated;
    o.announces = c.announces;
    o.probes = c.probes;
    o.dropped_ring_full = c.dropped_ring_full;
    o.dropped_no_buffer = c.dropped_no_buffer;
    s.hairpin = hairpin;
}

/// Big enough for the largest frame in one segment: net_af_packet copies a whole frame into
/// one mbuf without checking its size.
fn mbuf_data_room(mtu: u16) -> Result<u16> {
    let frame = usize::from(mtu) + crate::wire::ETHER_HDR_LEN + crate::wire::VLAN_TAG_LEN + crate::wire::ETHER_CRC_LEN;
    let room = frame.max(2048).next_multiple_of(1024) + rte::sys_headroom();
    // MTUs are at most MAX_MTU (9000), so this fits; the check keeps a wider limit from
    // ever truncating the size silently.
    u16::try_from(room).map_err(|_| anyhow!("MTU {mtu} needs {room}-byte packet buffers, more than DPDK's 65535"))
}
