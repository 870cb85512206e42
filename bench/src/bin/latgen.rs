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

fn open(id: u16, pool: &Mempool) -> Result<(Port, dpdk_macvtap::rte::RxQueue, dpdk_macvtap::rte::TxQueue)> {
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
    let pool = Mempool::pktmbuf("latgen", 8191, 256, 2048 + 128, eal.socket_id())?;
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
