//! The forwarding workers as the control thread holds them: the rings between them, their
//! launch on the EAL worker lcores, and their stop. Dropping `Workers` stops and waits for
//! every launched worker, so an error anywhere after the launch cannot leave one running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::control::Assignment;
use crate::datapath::{origin_channel, spawn_closer, ArrivalWatches, Blocker, OriginSender, Released, ProbeSeen, VlanOffload, Worker, WorkerQueues, WorkerShared};
use crate::rte::eal::rdtsc;
use crate::rte::lcore::{self, Launched};
use crate::rte::ring::{self, Consumer, Producer};
use crate::rte::{LcoreId, Mempool, RxQueue, TxQueue};
use crate::stats::StatsRegistry;
use crate::view::{Doorbells, GuestLinks, Handover, RxScope, Tables, WorkerView};

/// Frames in flight from one worker to another; a full ring drops (counted as peer_ring_full).
pub const PEER_RING: u32 = 1024;
/// Frames the control thread may queue for one worker to send on the uplink (announcements,
/// probes); what does not fit is dropped and counted by the control thread.
pub const ORIGIN_RING: u32 = 512;

/// What the launch needs beside the assignment.
pub struct Launch<'a> {
    pub uplink_rx: Vec<Option<RxQueue>>,
    pub uplink_tx: Vec<Option<TxQueue>>,
    pub scopes: Vec<Vec<RxScope>>,
    pub tables: &'a Arc<Tables>,
    pub links: &'a Arc<GuestLinks>,
    pub pool: &'a Arc<Mempool>,
    pub handover: &'a Arc<Handover>,
    pub registry: &'a mut StatsRegistry,
    pub measure: bool,
    pub idle_sleep_max_us: u32,
    /// `Cli::idle_block_after_us` (0: workers never block).
    pub idle_block_after_us: u64,
    /// `--idle-block-limit`.
    pub idle_block_limit: std::time::Duration,
    /// The kernel interfaces whose frames wake a blocked worker in place of the uplink's rx
    /// interrupts (`uplink::arrival_ifaces`).
    pub arrival_ifaces: &'a [u32],
    /// The TSC's frequency.
    pub tsc_hz: u64,
    /// Each worker's poller, from `Doorbells::new` with `bells`.
    pub polls: Vec<mio::Poll>,
    pub bells: &'a Arc<Doorbells>,
    pub socket_id: i32,
    pub vlan_offload: VlanOffload,
    /// Where workers note the hairpin probes that come back.
    pub probes: &'a Arc<ProbeSeen>,
}

pub struct Workers {
    stop: Arc<AtomicBool>,
    launched: Vec<Launched<()>>,
    /// A stopping worker waits until every worker has left its loop (see
    /// `Worker::wind_down`): the ones never launched are said stopped for them.
    handover: Arc<Handover>,
    /// To wake blocked workers for the stop.
    bells: Arc<Doorbells>,
    planned: usize,
    /// The thread closing the interface watches workers let go; it ends after them.
    closer: Option<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Rings between every pair of workers (guests may land on any worker at run time), then
    /// one worker per plan of `asg`, each with its queues and its view of `tables`. Also
    /// returns the control thread's ends of the workers' origin rings, in worker order.
    pub fn launch(asg: &Assignment, mut l: Launch<'_>) -> Result<(Workers, Vec<OriginSender>)> {
        let n = asg.workers.len();
        let mut to_peers: Vec<Vec<(usize, Producer)>> = (0..n).map(|_| Vec::new()).collect();
        let mut from_peers: Vec<Vec<Consumer>> = (0..n).map(|_| Vec::new()).collect();
        for (a, outgoing) in to_peers.iter_mut().enumerate() {
            for b in (0..n).filter(|&b| b != a) {
                let (p, c) = ring::spsc(&format!("mvt_r{a}_{b}"), PEER_RING, l.socket_id)?;
                outgoing.push((b, p));
                from_peers[b].push(c);
            }
        }
        let mut workers = Workers {
            stop: Arc::new(AtomicBool::new(false)),
            launched: Vec::with_capacity(n),
            handover: Arc::clone(l.handover),
            bells: Arc::clone(l.bells),
            planned: n,
            closer: None,
        };
        // Dropped at the end of this function: the closer ends once the workers' copies go.
        let released = if l.idle_block_after_us > 0 && !l.arrival_ifaces.is_empty() {
            let (tx, h) = spawn_closer().context("starting the thread that closes interface watches")?;
            workers.closer = Some(h);
            Some(tx)
        } else {
            None
        };
        anyhow::ensure!(l.polls.len() == n, "one poller per worker ({} for {n})", l.polls.len());
        let mut polls = std::mem::take(&mut l.polls).into_iter();
        let mut senders = Vec::with_capacity(n);
        for (wi, plan) in asg.workers.iter().enumerate() {
            let (sender, origin) = origin_channel(&format!("mvt_o{wi}"), ORIGIN_RING, l.socket_id, l.probes, l.bells, wi)?;
            senders.push(sender);
            let queues = WorkerQueues {
                index: wi,
                uplink_rx: plan.uplink_rx.iter().filter_map(|&q| l.uplink_rx[usize::from(q)].take()).collect(),
                uplink_scope: std::mem::take(&mut l.scopes[wi]),
                uplink_tx: l.uplink_tx[usize::from(plan.uplink_tx)].take().context("uplink tx queue assigned twice")?,
                to_peers: std::mem::take(&mut to_peers[wi]),
                from_peers: std::mem::take(&mut from_peers[wi]),
                origin,
            };
            let shared = WorkerShared {
                view: WorkerView::new(l.tables, wi),
                links: Arc::clone(l.links),
                pool: Arc::clone(l.pool),
                stats: l.registry.add_shard(),
                measure: l.measure,
                handover: Arc::clone(l.handover),
                stop: Arc::clone(&workers.stop),
                idle_sleep_max_us: l.idle_sleep_max_us,
                idle_block_after_us: l.idle_block_after_us,
                blocker: Blocker::new(
                    polls.next().context("one poller per worker")?,
                    Arc::clone(l.bells),
                    l.idle_block_after_us > 0,
                    l.idle_block_limit,
                    l.idle_sleep_max_us,
                    released.as_ref().filter(|_| !plan.uplink_rx.is_empty()).and_then(|r| arrival_watches(wi, l.arrival_ifaces, r, l.tsc_hz)),
                ),
                vlan_offload: l.vlan_offload,
            };
            let worker = Worker::new(queues, shared);
            // On an error, `workers` drops: the ones launched so far are stopped and waited for.
            workers.launched.push(lcore::launch(LcoreId(plan.lcore), move || worker.run())?);
        }
        Ok((workers, senders))
    }

    /// Tells every worker to stop and waits for them.
    pub fn stop(&mut self) {
        // Workers are launched in index order: the rest never ran.
        for w in self.launched.len()..self.planned {
            self.handover.worker_stopped(w);
        }
        self.planned = self.launched.len();
        self.stop.store(true, Ordering::Relaxed);
        self.bells.ring_all();
        for l in self.launched.drain(..) {
            l.join();
        }
        // The workers' ends of its channel went with them.
        if let Some(h) = self.closer.take() {
            let _ = h.join();
        }
    }
}

/// Worker `wi`'s watches on `ifaces`; none if they cannot be made (the worker then sleeps
/// through lulls, as where nothing can wake it), said once per worker.
fn arrival_watches(wi: usize, ifaces: &[u32], released: &Released, tsc_hz: u64) -> Option<ArrivalWatches> {
    ArrivalWatches::new(ifaces.to_vec(), released.clone(), tsc_hz, rdtsc())
        .map_err(|e| eprintln!("dpdk-macvtap: warning: worker {wi}: cannot watch the uplink's kernel interfaces for frames ({e}); it sleeps through lulls instead of blocking"))
        .ok()
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}
