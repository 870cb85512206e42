//! A virtio-user guest for tests, the demo and the benches: it attaches to vhost-user sockets
//! the way a VM's virtio-net devices would, and sends/receives exact frames on command.
//!
//! `macvtap-guest [EAL args] -- --socket PATH [--socket PATH ...] [--server] [--queues N] [--mac MAC]`
//! prints `ready mac=<mac of port 0>` once every port's link is up, then answers one command
//! per stdin line:
//! - `send HEX [COUNT]`, `sendp PORT HEX [COUNT]` -> `sent N`
//! - `stream DST SRC LEN COUNT [FIRST]` -> `sent N` (ethertype 0x88b5, 4-byte sequence number
//!   counting from FIRST, 0 by default)
//! - `recv TIMEOUT_MS [MAX]` -> `frame HEX` per frame (any port), then `done N`
//! - `recvq TIMEOUT_MS [MAX]` -> `frameq PORT QUEUE HEX` per frame, then `done N`
//! - `count IDLE_MS` -> `counted N bytes=B`
//! - `seqcheck IDLE_MS` -> `checked N flows=F gaps=G late=L`: receives until idle and checks
//!   the `stream` sequence numbers per source MAC (each flow from 0, every number once, in
//!   order: `gaps` numbers skipped, `late` frames older than one already seen)
//! - `stats` -> `stats rx=N tx=N`; `quit` -> `bye`; failures -> `error MESSAGE`
//!
//! Between commands it reports `link up`/`link down` of port 0 (`link P up|down` of others).

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use dpdk_macvtap::args::split_eal_args;
use dpdk_macvtap::rte::ethdev::RX_OFFLOAD_SCATTER;
use dpdk_macvtap::rte::{Burst, Eal, Mbuf, Mempool, Port, PortConf, RxQueue, TxQueue};
use dpdk_macvtap::wire::MacAddr;

/// Ethertype of generated frames (IEEE local experimental), so nothing on the path parses them.
const STREAM_ETHERTYPE: u16 = 0x88b5;
const MAX_FRAME: usize = 9018;
const LINK_POLL: Duration = Duration::from_millis(20);
/// Virtqueue size per queue (virtio-user's default); the pool is sized for every ring.
const QUEUE_SIZE: u32 = 256;
/// 2 KB buffers: jumbo frames are sent and received as chains.
const DATA_ROOM: u16 = 2048 + 128;

#[derive(Parser, Debug)]
#[command(name = "macvtap-guest", version, about = "virtio-user test guest for dpdk-macvtap")]
struct Cli {
    /// vhost-user socket of a guest port (repeat for several ports in one process).
    #[arg(long, required = true)]
    socket: Vec<PathBuf>,
    /// Own the sockets (the switch connects as a vhost-user client).
    #[arg(long)]
    server: bool,
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// MAC of port 0's virtio device (what a VM's `-device virtio-net-pci,mac=` sets).
    #[arg(long)]
    mac: Option<MacAddr>,
    /// Seconds to wait for the links before giving up.
    #[arg(long, default_value_t = 60)]
    link_timeout: u64,
}

struct GuestPort {
    port: Port,
    rx: Vec<RxQueue>,
    tx: TxQueue,
}

struct Guest {
    pool: Arc<Mempool>,
    ports: Vec<GuestPort>,
    /// Frames received while a send command ran (a VM receives while it sends); the next
    /// receiving command takes them first.
    backlog: VecDeque<(usize, usize, Vec<u8>)>,
    rx_frames: u64,
    tx_frames: u64,
}

impl Guest {
    /// One frame as a chain of pool buffers.
    fn frame_mbuf(&self, bytes: &[u8]) -> Result<Mbuf> {
        let seg = usize::from(DATA_ROOM) - dpdk_macvtap::rte::sys_headroom();
        let mut chunks = bytes.chunks(seg);
        let mut head = self.segment(chunks.next().unwrap_or(&[]))?;
        for c in chunks {
            let s = self.segment(c)?;
            head.chain(s).map_err(|_| anyhow!("chaining segments"))?;
        }
        Ok(head)
    }

    fn segment(&self, bytes: &[u8]) -> Result<Mbuf> {
        let mut m = Mbuf::alloc(&self.pool).ok_or_else(|| anyhow!("mempool empty"))?;
        let room = m.append(bytes.len() as u16).ok_or_else(|| anyhow!("{} bytes do not fit an mbuf", bytes.len()))?;
        room.copy_from_slice(bytes);
        Ok(m)
    }

    /// Sends every frame `make(i)` for i in 0..count from `port`, retrying while the ring is
    /// full; gives up after a second without progress.
    fn send_frames(&mut self, port: usize, count: u64, mut make: impl FnMut(u64, &mut [u8]) -> usize) -> Result<u64> {
        if port >= self.ports.len() {
            bail!("no port {port} (have {})", self.ports.len());
        }
        let mut burst: Burst = Burst::new();
        let mut scratch = vec![0u8; MAX_FRAME];
        let (mut made, mut sent) = (0u64, 0u64);
        let mut last_progress = Instant::now();
        while sent < count {
            while made < count && burst.free_slots() > 0 {
                let len = make(made, &mut scratch);
                let m = self.frame_mbuf(&scratch[..len])?;
                if burst.push(m).is_err() {
                    bail!("burst full");
                }
                made += 1;
            }
            let n = self.ports[port].tx.tx(&mut burst) as u64;
            self.receive_into_backlog();
            if n > 0 {
                sent += n;
                last_progress = Instant::now();
            } else if last_progress.elapsed() > Duration::from_secs(1) {
                break;
            } else {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        self.tx_frames += sent;
        Ok(sent)
    }

    fn receive_into_backlog(&mut self) {
        let mut got = Vec::new();
        self.poll_ports(|p, q, m| got.push((p, q, m.to_vec())));
        self.backlog.extend(got);
    }

    /// Hands out the backlog, then polls every rx queue of every port once;
    /// calls `f(port, queue, frame)` for each frame.
    fn poll(&mut self, mut f: impl FnMut(usize, usize, &[u8])) -> usize {
        let mut total = 0;
        while let Some((p, q, frame)) = self.backlog.pop_front() {
            f(p, q, &frame);
            total += 1;
        }
        total + self.poll_ports(|p, q, m| f(p, q, &m.to_vec()))
    }

    fn poll_ports(&mut self, mut f: impl FnMut(usize, usize, &Mbuf)) -> usize {
        let mut total = 0;
        for (pi, p) in self.ports.iter_mut().enumerate() {
            for (qi, q) in p.rx.iter_mut().enumerate() {
                let mut b: Burst = Burst::new();
                let n = q.rx(&mut b);
                for m in b.drain() {
                    f(pi, qi, &m);
                }
                total += n;
            }
        }
        self.rx_frames += total as u64;
        total
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let (eal_args, app_args) = split_eal_args(argv);
    let cli = Cli::parse_from(app_args);
    if let Err(e) = run(cli, eal_args) {
        eprintln!("macvtap-guest: {e:#}");
        std::process::exit(1);
    }
}

fn open_port(i: usize, cli: &Cli, pool: &Arc<Mempool>) -> Result<GuestPort> {
    let path = &cli.socket[i];
    if cli.server {
        // A socket left by a previous guest process that did not close its port.
        if std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false) {
            std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
        }
    } else if !path.exists() {
        bail!("{} does not exist (is the switch running?)", path.display());
    }
    let mut devargs = format!(
        "net_virtio_user{i},path={},queues={},queue_size={QUEUE_SIZE},server={}",
        path.display(),
        cli.queues,
        u8::from(cli.server)
    );
    if let (0, Some(mac)) = (i, cli.mac) {
        devargs.push_str(&format!(",mac={mac}"));
    }
    let port = Port::probe(&devargs)?;
    let conf = PortConf { rx_queues: cli.queues, tx_queues: cli.queues, mtu: Some(9000), rx_offloads: RX_OFFLOAD_SCATTER, ..PortConf::default() };
    port.configure(&conf).or_else(|_| port.configure(&PortConf { mtu: None, rx_offloads: 0, ..conf }))?;
    let rx = (0..cli.queues).map(|q| port.rx_queue(q, QUEUE_SIZE as u16, pool)).collect::<Result<Vec<_>, _>>()?;
    let tx = port.tx_queue(0, QUEUE_SIZE as u16)?;
    for q in 1..cli.queues {
        // The device negotiates `queues` pairs only if every tx queue exists; we send on 0.
        drop(port.tx_queue(q, QUEUE_SIZE as u16)?);
    }
    port.start()?;
    Ok(GuestPort { port, rx, tx })
}

fn run(cli: Cli, eal_args: Vec<String>) -> Result<()> {
    let eal = Eal::init(&eal_args).context("EAL")?;
    let ring_buffers = cli.socket.len() as u32 * u32::from(cli.queues) * QUEUE_SIZE;
    let pool = Arc::new(Mempool::pktmbuf("guest_pool", 2 * ring_buffers + 4095, 64, DATA_ROOM, eal.socket_id())?);
    let ports = (0..cli.socket.len()).map(|i| open_port(i, &cli, &pool)).collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + Duration::from_secs(cli.link_timeout);
    for (i, p) in ports.iter().enumerate() {
        while !p.port.link().up {
            if Instant::now() > deadline {
                bail!("link of {} did not come up in {} s", cli.socket[i].display(), cli.link_timeout);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let mac = MacAddr::new(ports[0].port.mac()?);
    let mut guest = Guest { pool, ports, backlog: VecDeque::new(), rx_frames: 0, tx_frames: 0 };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready mac={mac}")?;
    out.flush()?;

    // Commands arrive on a reader thread so that, between them, this thread keeps reading the
    // link states: virtio-user in server mode only re-accepts a restarted switch when it does.
    let (tx_lines, rx_lines) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx_lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut link_up = vec![true; guest.ports.len()];
    let mut reconnected = false;
    loop {
        let line = match rx_lines.recv_timeout(LINK_POLL) {
            Ok(line) => line,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                for (i, p) in guest.ports.iter().enumerate() {
                    let up = p.port.link().up;
                    if up != link_up[i] {
                        link_up[i] = up;
                        reconnected |= up;
                        let state = if up { "up" } else { "down" };
                        if i == 0 {
                            writeln!(out, "link {state}")?;
                        } else {
                            writeln!(out, "link {i} {state}")?;
                        }
                        out.flush()?;
                    }
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if words[0] == "quit" {
            writeln!(out, "bye")?;
            out.flush()?;
            if reconnected {
                // DPDK 22.11's virtio-user leaves a closed fd registered with the interrupt
                // thread after a server-mode reconnect, and closing the port (or the process's
                // orderly exit, which closes it through a destructor) then panics in that
                // thread. _exit skips all of that; the switch under test sees the same
                // disconnect either way.
                dpdk_macvtap::rte::eal::exit_immediately(0);
            }
            break;
        }
        if let Err(e) = command(&mut guest, &words, &mut out) {
            writeln!(out, "error {e:#}")?;
        }
        out.flush()?;
    }
    drop(guest);
    drop(eal);
    Ok(())
}

fn number<T: std::str::FromStr>(words: &[&str], i: usize, what: &str, default: Option<T>) -> Result<T> {
    match words.get(i) {
        Some(w) => w.parse().map_err(|_| anyhow!("{what}: not a number: {w}")),
        None => default.ok_or_else(|| anyhow!("missing {what}")),
    }
}

/// Receives until `max` frames or the timeout; `f(port, queue, bytes)` for each.
fn receive(g: &mut Guest, timeout_ms: u64, max: usize, mut f: impl FnMut(usize, usize, Vec<u8>)) -> usize {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut n = 0;
    while n < max && Instant::now() < deadline {
        if g.poll(|p, q, m| {
            n += 1;
            f(p, q, m.to_vec());
        }) == 0
        {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    n
}

fn command(g: &mut Guest, words: &[&str], out: &mut impl Write) -> Result<()> {
    match words[0] {
        "send" | "sendp" => {
            let (port, at) = if words[0] == "sendp" { (number(words, 1, "PORT", None)?, 2) } else { (0usize, 1) };
            let bytes = unhex(words.get(at).ok_or_else(|| anyhow!("send HEX [COUNT] / sendp PORT HEX [COUNT]"))?)?;
            if bytes.len() > MAX_FRAME {
                bail!("frame longer than {MAX_FRAME}");
            }
            let count: u64 = number(words, at + 1, "COUNT", Some(1))?;
            let sent = g.send_frames(port, count, |_, buf| {
                buf[..bytes.len()].copy_from_slice(&bytes);
                bytes.len()
            })?;
            writeln!(out, "sent {sent}")?;
        }
        "stream" => {
            let dst: MacAddr = words.get(1).ok_or_else(|| anyhow!("stream DST SRC LEN COUNT"))?.parse()?;
            let src: MacAddr = words.get(2).ok_or_else(|| anyhow!("stream DST SRC LEN COUNT"))?.parse()?;
            let len: usize = number(words, 3, "LEN", None)?;
            let count: u64 = number(words, 4, "COUNT", None)?;
            let first: u32 = number(words, 5, "FIRST", Some(0))?;
            if !(18..=MAX_FRAME).contains(&len) {
                bail!("LEN must be 18..={MAX_FRAME}");
            }
            let sent = g.send_frames(0, count, |seq, buf| {
                buf[..len].fill(0);
                buf[0..6].copy_from_slice(&dst.octets());
                buf[6..12].copy_from_slice(&src.octets());
                buf[12..14].copy_from_slice(&STREAM_ETHERTYPE.to_be_bytes());
                buf[14..18].copy_from_slice(&first.wrapping_add(seq as u32).to_be_bytes());
                len
            })?;
            writeln!(out, "sent {sent}")?;
        }
        "recv" | "recvq" => {
            let timeout: u64 = number(words, 1, "TIMEOUT_MS", None)?;
            let max: usize = number(words, 2, "MAX", Some(usize::MAX))?;
            let mut frames = Vec::new();
            receive(g, timeout, max, |p, q, f| frames.push((p, q, f)));
            for (p, q, f) in &frames {
                if words[0] == "recv" {
                    writeln!(out, "frame {}", hex(f))?;
                } else {
                    writeln!(out, "frameq {p} {q} {}", hex(f))?;
                }
            }
            writeln!(out, "done {}", frames.len())?;
        }
        "count" => {
            let idle: u64 = number(words, 1, "IDLE_MS", None)?;
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut last = Instant::now();
            while last.elapsed() < Duration::from_millis(idle) {
                let got = g.poll(|_, _, m| {
                    n += 1;
                    bytes += m.len() as u64;
                });
                if got > 0 {
                    last = Instant::now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            writeln!(out, "counted {n} bytes={bytes}")?;
        }
        "seqcheck" => {
            let idle: u64 = number(words, 1, "IDLE_MS", None)?;
            // Per source MAC: the next sequence number expected.
            let mut next: std::collections::HashMap<[u8; 6], u32> = std::collections::HashMap::new();
            let (mut n, mut gaps, mut late) = (0u64, 0u64, 0u64);
            let mut last = Instant::now();
            while last.elapsed() < Duration::from_millis(idle) {
                let got = g.poll(|_, _, m| {
                    n += 1;
                    if m.len() < 18 || m[12..14] != STREAM_ETHERTYPE.to_be_bytes() {
                        return;
                    }
                    let mut src = [0u8; 6];
                    src.copy_from_slice(&m[6..12]);
                    let seq = u32::from_be_bytes([m[14], m[15], m[16], m[17]]);
                    let want = next.entry(src).or_insert(0);
                    if seq < *want {
                        late += 1;
                    } else {
                        gaps += u64::from(seq - *want);
                        *want = seq + 1;
                    }
                });
                if got > 0 {
                    last = Instant::now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            writeln!(out, "checked {n} flows={} gaps={gaps} late={late}", next.len())?;
        }
        "stats" => writeln!(out, "stats rx={} tx={}", g.rx_frames, g.tx_frames)?,
        other => bail!("unknown command {other:?}"),
    }
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        bail!("odd-length hex");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|_| anyhow!("bad hex at {i}")))
        .collect()
}
