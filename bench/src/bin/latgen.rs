//! `macvtap-latgen`: the latency generator. Two virtio-user guests in one process on one
//! core: guest A sends frames to guest B's MAC with the TSC of their construction inside,
//! the switch carries them A -> uplink -> (loopback vdev) -> uplink -> B, and B's receive
//! time minus that stamp goes into an HDR histogram. Both ends read the same TSC, so no
//! clock synchronisation is involved.
//!
//! `macvtap-latgen [EAL: --vdev A --vdev B] -- --mac-a M --mac-b M --size 64 --rate PPS
//!   --warmup S --secs S --json FILE` (`--rate 0`: as fast as A's queue takes frames).
//!
//! Pacing: before each burst the generator computes how many frames are due at `rate`
//! since the start and sends at most a burst of those, so low rates go out in small bursts.
//! Frames A's queue refuses are freed and counted (`tx_refused`), never re-stamped.
//!
//! Burst mode (`--idle-secs S`, for the idle sleep): once the links are up the process
//! sleeps S seconds (no polling, so the switch sees nothing at all), then sends each burst of
//! `--bursts` (the first after that idle period, the others after `--idle-between-ms`),
//! times every frame of it, and then sends `--wake-probes` single frames, each after
//! `--wake-gap-ms` of idle, to time how long a sleeping switch takes to pass the first frame
//! on. Frames A's queue refuses are offered again, as a guest's driver does (it waits for
//! room), unless `--no-retry`: then they are dropped and counted, as a NIC drops what arrives
//! at a full rx ring (A then plays the wire behind a vhost uplink).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;

use dpdk_macvtap::args::split_eal_args;
use dpdk_macvtap::rte::eal::rdtsc;
use dpdk_macvtap::rte::{Burst, Eal, Mbuf, Mempool, Port, PortConf, PortId, BURST};
use dpdk_macvtap::wire::MacAddr;

const MAGIC: u32 = 0x6c61_7467; // "latg"
const ETHERTYPE: u16 = 0x88b5;
const DESCRIPTORS: u16 = 1024;

#[derive(Parser, Debug)]
#[command(name = "macvtap-latgen", about = "timestamping guest-to-guest latency generator (virtio-user)")]
struct Cli {
    #[arg(long)]
    mac_a: MacAddr,
    #[arg(long)]
    mac_b: MacAddr,
    /// Frame size, FCS included.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Offered frames per second; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    #[arg(long, default_value_t = 3)]
    secs: u64,
    #[arg(long)]
    json: PathBuf,
    /// Burst mode: sleep this many seconds once the links are up, then send the bursts.
    #[arg(long)]
    idle_secs: Option<f64>,
    /// Burst mode: one burst per value, N frames as fast as A's queue takes them, or
    /// N@PPS: N frames paced at PPS frames per second (frames are stamped when due).
    #[arg(long, value_delimiter = ',', default_value = "1024")]
    bursts: Vec<String>,
    /// Burst mode: idle time before each burst after the first.
    #[arg(long, default_value_t = 1000)]
    idle_between_ms: u64,
    /// Burst mode: drop (and count) frames A's queue refuses instead of offering them again.
    #[arg(long)]
    no_retry: bool,
    /// Burst mode: single frames sent after the bursts, each after `--wake-gap-ms` of idle.
    #[arg(long, default_value_t = 0)]
    wake_probes: usize,
    #[arg(long, default_value_t = 100)]
    wake_gap_ms: u64,
}

/// One burst after an idle period (burst mode).
#[derive(serde::Serialize, Default)]
struct BurstReport {
    frames: usize,
    /// Pacing, frames per second (0: as fast as A's queue takes them).
    rate_pps: u64,
    idle_ms: u64,
    /// Accepted by A's queue.
    sent: u64,
    /// Refused by A's queue and dropped (`--no-retry`), or not sent within a second.
    refused: u64,
    /// Arrived at B.
    received: u64,
    /// First frame of the burst: handed to A -> received at B.
    first_ns: u64,
    /// First frame handed to A -> last frame received at B.
    last_ns: u64,
    /// First frame handed to A -> last frame accepted by A's queue.
    send_ns: u64,
    p50_ns: u64,
    p99_ns: u64,
    max_ns: u64,
}

#[derive(serde::Serialize, Default)]
struct WakeReport {
    gap_ms: u64,
    sent: u64,
    received: u64,
    /// Handed to A -> received at B, per probe (0: lost).
    ns: Vec<u64>,
}

#[derive(serde::Serialize)]
struct BurstModeReport {
    idle_secs: f64,
    retry: bool,
    bursts: Vec<BurstReport>,
    wake: WakeReport,
}

#[derive(serde::Serialize)]
struct Report {
    offered_pps: u64,
    sent: u64,
    tx_refused: u64,
    received: u64,
    /// Frames received at B per second over the measurement window.
    rx_pps: f64,
    /// Frames sent in the window that did not arrive before the drain ended.
    lost: u64,
    p50_ns: u64,
    p99_ns: u64,
    p999_ns: u64,
    max_ns: u64,
    samples: u64,
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let (eal_args, app_args) = split_eal_args(argv);
    let cli = Cli::parse_from(app_args);
    if let Err(e) = run(cli, eal_args) {
        eprintln!("macvtap-latgen: {e:#}");
        std::process::exit(1);
    }
}

fn open(id: u16, pool: &std::sync::Arc<Mempool>) -> Result<(Port, dpdk_macvtap::rte::RxQueue, dpdk_macvtap::rte::TxQueue)> {
    let p = Port::from_id(PortId(id)).with_context(|| format!("port {id} (give two --vdev net_virtio_user)"))?;
    p.configure(&PortConf::default())?;
    let rx = p.rx_queue(0, DESCRIPTORS, pool)?;
    let tx = p.tx_queue(0, DESCRIPTORS)?;
    p.start()?;
    Ok((p, rx, tx))
}

fn run(cli: Cli, eal_args: Vec<String>) -> Result<()> {
    if cli.size < 64 || cli.size > 1518 {
        bail!("--size {}: 64..1518", cli.size);
    }
    let eal = Eal::init(&eal_args).context("EAL")?;
    let hz = eal.tsc_hz();
    let pool = std::sync::Arc::new(Mempool::pktmbuf("latgen", 8191, 256, 2048 + 128, eal.socket_id())?);
    let (pa, rx_a, mut tx_a) = open(0, &pool)?;
    let (pb, mut rx_b, tx_b) = open(1, &pool)?;
    let t_link = Instant::now();
    while !(pa.link().up && pb.link().up) {
        if t_link.elapsed() > Duration::from_secs(30) {
            bail!("links not up after 30 s (A {:?}, B {:?})", pa.link(), pb.link());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("latgen: links up");
    if let Some(idle) = cli.idle_secs {
        let mut g = Gen { hz, len: cli.size - 4, mac_a: cli.mac_a, mac_b: cli.mac_b, pool: &pool, tx_a, rx_b };
        let r = burst_mode(&cli, idle, &mut g)?;
        std::fs::write(&cli.json, serde_json::to_string_pretty(&r)?)?;
        let b0 = r.bursts.first();
        println!(
            "latgen: burst of {} after {idle} s idle: {} received, first frame {} ns",
            b0.map(|b| b.frames).unwrap_or(0),
            b0.map(|b| b.received).unwrap_or(0),
            b0.map(|b| b.first_ns).unwrap_or(0)
        );
        let Gen { tx_a, rx_b, .. } = g;
        drop((rx_a, rx_b, tx_a, tx_b, pa, pb));
        drop(pool);
        drop(eal);
        return Ok(());
    }

    let len = cli.size - 4;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).map_err(|e| anyhow!("{e}"))?;
    let ns_per_tick = 1e9 / hz as f64;
    let t0 = rdtsc();
    let warm_end = t0 + cli.warmup * hz;
    let end = warm_end + cli.secs * hz;
    let (mut sent, mut refused, mut received, mut seq) = (0u64, 0u64, 0u64, 0u64);
    let (mut sent_window, mut rx_window) = (0u64, 0u64);
    let mut tx: Burst = Burst::new();
    let mut rx: Burst = Burst::new();
    let mut now = t0;
    // Run, then drain for 200 ms so frames in flight are counted.
    let drain_end = end + hz / 5;
    while now < drain_end {
        if now < end {
            let due = if cli.rate == 0 {
                BURST as u64
            } else {
                let want = ((now - t0) as u128 * cli.rate as u128 / hz as u128) as u64;
                want.saturating_sub(sent + refused).min(BURST as u64)
            };
            for _ in 0..due {
                let Some(mut m) = Mbuf::alloc(&pool) else { break };
                let Some(buf) = m.append(len as u16) else { break };
                buf.fill(0);
                buf[0..6].copy_from_slice(&cli.mac_b.octets());
                buf[6..12].copy_from_slice(&cli.mac_a.octets());
                buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
                buf[14..18].copy_from_slice(&MAGIC.to_be_bytes());
                buf[18..26].copy_from_slice(&seq.to_be_bytes());
                buf[26..34].copy_from_slice(&rdtsc().to_be_bytes());
                seq += 1;
                if tx.push(m).is_err() {
                    break;
                }
            }
            let queued = tx.len() as u64;
            let n = tx_a.tx(&mut tx) as u64;
            sent += n;
            if now >= warm_end {
                sent_window += n;
            }
            refused += queued - n;
            tx.free_all();
        }
        rx_b.rx(&mut rx);
        let t_rx = rdtsc();
        for m in rx.drain() {
            let d = m.data();
            if d.len() < 34 || d[14..18] != MAGIC.to_be_bytes() {
                continue;
            }
            received += 1;
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&d[26..34]);
            let stamp = u64::from_be_bytes(ts);
            if stamp >= warm_end && stamp < end {
                rx_window += 1;
                let ns = (t_rx.saturating_sub(stamp) as f64 * ns_per_tick) as u64;
                let _ = hist.record(ns.max(1));
            }
        }
        now = rdtsc();
    }
    let r = Report {
        offered_pps: cli.rate,
        sent,
        tx_refused: refused,
        received,
        rx_pps: rx_window as f64 / cli.secs as f64,
        lost: sent_window.saturating_sub(rx_window),
        p50_ns: hist.value_at_quantile(0.5),
        p99_ns: hist.value_at_quantile(0.99),
        p999_ns: hist.value_at_quantile(0.999),
        max_ns: hist.max(),
        samples: hist.len(),
    };
    std::fs::write(&cli.json, serde_json::to_string_pretty(&r)?)?;
    println!("latgen: rx {:.3} Mpps p50 {} ns p99 {} ns", r.rx_pps / 1e6, r.p50_ns, r.p99_ns);
    // Ports close (returning their mbufs) before the pool goes.
    drop((rx, tx, rx_a, rx_b, tx_a, tx_b, pa, pb));
    drop(pool);
    drop(eal);
    Ok(())
}

/// What burst mode sends with: A's tx queue, B's rx queue, the frame template.
struct Gen<'p> {
    hz: u64,
    len: usize,
    mac_a: MacAddr,
    mac_b: MacAddr,
    pool: &'p Mempool,
    tx_a: dpdk_macvtap::rte::TxQueue,
    rx_b: dpdk_macvtap::rte::RxQueue,
}

/// Burst ids start here for the wake-up probes.
const WAKE_ID: u32 = 1_000_000;

impl Gen<'_> {
    fn frame(&self, id: u32, seq: u64) -> Option<Mbuf> {
        let mut m = Mbuf::alloc(self.pool)?;
        let buf = m.append(self.len as u16)?;
        buf.fill(0);
        buf[0..6].copy_from_slice(&self.mac_b.octets());
        buf[6..12].copy_from_slice(&self.mac_a.octets());
        buf[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
        buf[14..18].copy_from_slice(&MAGIC.to_be_bytes());
        buf[18..26].copy_from_slice(&seq.to_be_bytes());
        buf[26..34].copy_from_slice(&rdtsc().to_be_bytes());
        buf[34..38].copy_from_slice(&id.to_be_bytes());
        Some(m)
    }

    /// Receives what B has; calls `f(id, seq, stamp, t_rx)` per generator frame.
    fn poll_b(&mut self, rx: &mut Burst, mut f: impl FnMut(u32, u64, u64, u64)) {
        self.rx_b.rx(rx);
        let t_rx = rdtsc();
        for m in rx.drain() {
            let d = m.data();
            if d.len() < 38 || d[14..18] != MAGIC.to_be_bytes() {
                continue;
            }
            let be64 = |r: std::ops::Range<usize>| u64::from_be_bytes(d[r].try_into().unwrap_or([0; 8]));
            let id = u32::from_be_bytes(d[34..38].try_into().unwrap_or([0; 4]));
            f(id, be64(18..26), be64(26..34), t_rx);
        }
    }

    fn ns(&self, ticks: u64) -> u64 {
        (ticks as f64 * 1e9 / self.hz as f64) as u64
    }

    /// Sends `n` frames as fast as A's queue takes them (retrying refused ones unless
    /// `!retry`), then waits up to a second for them at B.
    fn burst(&mut self, id: u32, n: usize, rate: u64, retry: bool, idle_ms: u64) -> Result<BurstReport> {
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).map_err(|e| anyhow!("{e}"))?;
        let mut r = BurstReport { frames: n, rate_pps: rate, idle_ms, ..Default::default() };
        let mut tx: Burst = Burst::new();
        let mut rx: Burst = Burst::new();
        let t0 = rdtsc();
        let send_deadline = t0 + self.hz;
        let (mut built, mut t_first_rx, mut t_last_rx, mut t_sent) = (0usize, 0u64, 0u64, t0);
        let mut seen = vec![false; n];
        let mut on_rx = |gid: u32, seq: u64, stamp: u64, t_rx: u64, r: &mut BurstReport, hist: &mut Histogram<u64>, hz: u64| {
            if gid != id || seq as usize >= n || seen[seq as usize] {
                return;
            }
            seen[seq as usize] = true;
            r.received += 1;
            if t_first_rx == 0 {
                t_first_rx = t_rx;
            }
            if seq == 0 {
                r.first_ns = (t_rx.saturating_sub(stamp) as f64 * 1e9 / hz as f64) as u64;
            }
            t_last_rx = t_rx;
            let _ = hist.record(((t_rx.saturating_sub(stamp) as f64 * 1e9 / hz as f64) as u64).max(1));
        };
        let hz = self.hz;
        while (r.sent + r.refused) < n as u64 {
            let due = if rate == 0 { n } else { ((rdtsc() - t0) as u128 * rate as u128 / self.hz as u128) as usize + 1 };
            while built < n.min(due) && tx.free_slots() > 0 {
                let Some(m) = self.frame(id, built as u64) else { break };
                if tx.push(m).is_err() {
                    break;
                }
                built += 1;
            }
            let k = self.tx_a.tx(&mut tx) as u64;
            if k > 0 {
                r.sent += k;
                t_sent = rdtsc();
            }
            let now = rdtsc();
            if !retry || now > send_deadline {
                r.refused += tx.len() as u64;
                tx.free_all();
                if now > send_deadline {
                    r.refused += (n - built) as u64;
                    built = n;
                }
            }
            self.poll_b(&mut rx, |g, q, st, t| on_rx(g, q, st, t, &mut r, &mut hist, hz));
        }
        let drain_end = rdtsc() + self.hz;
        while r.received < r.sent && rdtsc() < drain_end {
            self.poll_b(&mut rx, |g, q, st, t| on_rx(g, q, st, t, &mut r, &mut hist, hz));
        }
        if r.first_ns == 0 && t_first_rx != 0 {
            // Frame 0 was dropped: time the first that arrived from the burst's start.
            r.first_ns = self.ns(t_first_rx.saturating_sub(t0));
        }
        r.last_ns = if t_last_rx != 0 { self.ns(t_last_rx.saturating_sub(t0)) } else { 0 };
        r.send_ns = self.ns(t_sent.saturating_sub(t0));
        r.p50_ns = hist.value_at_quantile(0.5);
        r.p99_ns = hist.value_at_quantile(0.99);
        r.max_ns = hist.max();
        Ok(r)
    }
}

fn burst_mode(cli: &Cli, idle_secs: f64, g: &mut Gen<'_>) -> Result<BurstModeReport> {
    println!("latgen: idle for {idle_secs} s");
    std::thread::sleep(Duration::from_secs_f64(idle_secs));
    let mut out = BurstModeReport { idle_secs, retry: !cli.no_retry, bursts: Vec::new(), wake: WakeReport { gap_ms: cli.wake_gap_ms, ..Default::default() } };
    for (i, spec) in cli.bursts.iter().enumerate() {
        let (n, rate) = match spec.split_once('@') {
            Some((n, r)) => (n.trim().parse::<usize>(), r.trim().parse::<u64>()),
            None => (spec.trim().parse::<usize>(), Ok(0)),
        };
        let (Ok(n), Ok(rate)) = (n, rate) else { bail!("--bursts {spec:?}: give N or N@PPS") };
        let idle_ms = if i == 0 {
            (idle_secs * 1000.0) as u64
        } else {
            std::thread::sleep(Duration::from_millis(cli.idle_between_ms));
            cli.idle_between_ms
        };
        out.bursts.push(g.burst(i as u32, n, rate, !cli.no_retry, idle_ms)?);
    }
    println!("latgen: bursts sent");
    for k in 0..cli.wake_probes {
        std::thread::sleep(Duration::from_millis(cli.wake_gap_ms));
        let b = g.burst(WAKE_ID + k as u32, 1, 0, true, cli.wake_gap_ms)?;
        out.wake.sent += b.sent;
        out.wake.received += b.received;
        out.wake.ns.push(if b.received > 0 { b.first_ns } else { 0 });
    }
    // The harness reads the switch's CPU between "bursts sent" and this line: its cost
    // while frames trickle in.
    println!("latgen: probes done");
    Ok(out)
}
