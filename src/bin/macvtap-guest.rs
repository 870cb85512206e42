//! A virtio-user guest for tests, the demo and the benches: it attaches to a vhost-user socket
//! the way a VM's virtio-net device would, and sends/receives exact frames on command.
//!
//! `macvtap-guest [EAL args] -- --socket PATH [--server] [--queues N] [--mac MAC]`
//! prints `ready mac=<mac>` once the link is up, then answers one command per stdin line:
//! `send HEX [COUNT]`, `stream DST SRC LEN COUNT`, `recv TIMEOUT_MS [MAX]`, `count IDLE_MS`,
//! `stats`, `quit` (replies: `sent N`, `frame HEX`.. `done N`, `counted N bytes=B`,
//! `stats rx=N tx=N`, `bye`, or `error MESSAGE`).

use std::io::{BufRead, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

use dpdk_macvtap::args::split_eal_args;
use dpdk_macvtap::rte::{Burst, Eal, Mbuf, Mempool, Port, PortConf, RxQueue, TxQueue};
use dpdk_macvtap::wire::MacAddr;

/// Ethertype of generated frames (IEEE local experimental), so nothing on the path parses them.
const STREAM_ETHERTYPE: u16 = 0x88b5;
const MAX_FRAME: usize = 9018;
const LINK_POLL: Duration = Duration::from_millis(20);

#[derive(Parser, Debug)]
#[command(name = "macvtap-guest", version, about = "virtio-user test guest for dpdk-macvtap")]
struct Cli {
    /// vhost-user socket of the guest port.
    #[arg(long)]
    socket: PathBuf,
    /// Own the socket (the switch connects as a vhost-user client).
    #[arg(long)]
    server: bool,
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// MAC of the virtio device (what a VM's `-device virtio-net-pci,mac=` sets).
    #[arg(long)]
    mac: Option<MacAddr>,
    /// Seconds to wait for the link before giving up.
    #[arg(long, default_value_t = 60)]
    link_timeout: u64,
}

struct Guest {
    pool: Mempool,
    rx: Vec<RxQueue>,
    tx: TxQueue,
    rx_frames: u64,
    tx_frames: u64,
}

impl Guest {
    fn frame_mbuf(&self, bytes: &[u8]) -> Result<Mbuf> {
        let mut m = Mbuf::alloc(&self.pool).ok_or_else(|| anyhow!("mempool empty"))?;
        let room = m.append(bytes.len() as u16).ok_or_else(|| anyhow!("frame of {} bytes does not fit an mbuf", bytes.len()))?;
        room.copy_from_slice(bytes);
        Ok(m)
    }

    /// Sends every frame `make(i)` for i in 0..count, retrying while the ring is full;
    /// gives up after a second without progress.
    fn send_frames(&mut self, count: u64, mut make: impl FnMut(u64, &mut [u8]) -> usize) -> Result<u64> {
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
            let n = self.tx.tx(&mut burst) as u64;
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

    /// Polls every rx queue once; calls `f` for each frame.
    fn poll(&mut self, mut f: impl FnMut(&Mbuf)) -> usize {
        let mut total = 0;
        for q in &mut self.rx {
            let mut b: Burst = Burst::new();
            let n = q.rx(&mut b);
            for m in b.drain() {
                f(&m);
            }
            total += n;
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

fn run(cli: Cli, eal_args: Vec<String>) -> Result<()> {
    let eal = Eal::init(&eal_args).context("EAL")?;
    let pool = Mempool::pktmbuf("guest_pool", 4095, 64, (MAX_FRAME + 128 + 1024) as u16, eal.socket_id())?;
    let mut devargs = format!(
        "net_virtio_user0,path={},queues={},server={}",
        cli.socket.display(),
        cli.queues,
        u8::from(cli.server)
    );
    if let Some(mac) = cli.mac {
        devargs.push_str(&format!(",mac={mac}"));
    }
    if cli.server {
        // A socket left by a previous guest process that did not close its port.
        if std::fs::symlink_metadata(&cli.socket).map(|m| m.file_type().is_socket()).unwrap_or(false) {
            std::fs::remove_file(&cli.socket).with_context(|| format!("removing stale {}", cli.socket.display()))?;
        }
    }
    let port = Port::probe(&devargs)?;
    port.configure(&PortConf { rx_queues: cli.queues, tx_queues: cli.queues, mtu: Some(9000), rss_hf: 0 })
        .or_else(|_| port.configure(&PortConf { rx_queues: cli.queues, tx_queues: cli.queues, mtu: None, rss_hf: 0 }))?;
    let rx = (0..cli.queues).map(|q| port.rx_queue(q, 1024, &pool)).collect::<Result<Vec<_>, _>>()?;
    let tx = port.tx_queue(0, 1024)?;
    for q in 1..cli.queues {
        // Extra tx queues exist so the device negotiates `queues` pairs; we send on queue 0.
        drop(port.tx_queue(q, 1024)?);
    }
    port.start()?;
    let deadline = Instant::now() + Duration::from_secs(cli.link_timeout);
    while !port.link().up {
        if Instant::now() > deadline {
            bail!("link of {} did not come up in {} s", cli.socket.display(), cli.link_timeout);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mac = MacAddr::new(port.mac()?);
    let mut guest = Guest { pool, rx, tx, rx_frames: 0, tx_frames: 0 };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    writeln!(out, "ready mac={mac}")?;
    out.flush()?;

    // Commands arrive on a reader thread so that, between them, this thread keeps reading the
    // link state: virtio-user in server mode only re-accepts a restarted switch when it does.
    let (tx_lines, rx_lines) = crossbeam_channel::unbounded::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx_lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut link_up = true;
    let mut reconnected = false;
    loop {
        let line = match rx_lines.recv_timeout(LINK_POLL) {
            Ok(line) => line,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let up = port.link().up;
                if up != link_up {
                    link_up = up;
                    reconnected |= up;
                    writeln!(out, "link {}", if up { "up" } else { "down" })?;
                    out.flush()?;
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
                // thread after a server-mode reconnect, and closing the port then panics in
                // that thread. The switch under test sees the same disconnect either way.
                std::process::exit(0);
            }
            break;
        }
        match command(&mut guest, &words, &mut out) {
            Ok(()) => {}
            Err(e) => writeln!(out, "error {e:#}")?,
        }
        out.flush()?;
    }
    drop(guest);
    drop(port);
    drop(eal);
    Ok(())
}

fn number<T: std::str::FromStr>(words: &[&str], i: usize, what: &str, default: Option<T>) -> Result<T> {
    match words.get(i) {
        Some(w) => w.parse().map_err(|_| anyhow!("{what}: not a number: {w}")),
        None => default.ok_or_else(|| anyhow!("missing {what}")),
    }
}

fn command(g: &mut Guest, words: &[&str], out: &mut impl Write) -> Result<()> {
    match words[0] {
        "send" => {
            let bytes = unhex(words.get(1).ok_or_else(|| anyhow!("send HEX [COUNT]"))?)?;
            let count: u64 = number(words, 2, "COUNT", Some(1))?;
            let sent = g.send_frames(count, |_, buf| {
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
            if !(18..=MAX_FRAME).contains(&len) {
                bail!("LEN must be 18..={MAX_FRAME}");
            }
            let sent = g.send_frames(count, |seq, buf| {
                buf[..len].fill(0);
                buf[0..6].copy_from_slice(&dst.octets());
                buf[6..12].copy_from_slice(&src.octets());
                buf[12..14].copy_from_slice(&STREAM_ETHERTYPE.to_be_bytes());
                buf[14..18].copy_from_slice(&(seq as u32).to_be_bytes());
                len
            })?;
            writeln!(out, "sent {sent}")?;
        }
        "recv" => {
            let timeout: u64 = number(words, 1, "TIMEOUT_MS", None)?;
            let max: usize = number(words, 2, "MAX", Some(usize::MAX))?;
            let deadline = Instant::now() + Duration::from_millis(timeout);
            let mut frames = Vec::new();
            while frames.len() < max && Instant::now() < deadline {
                if g.poll(|m| frames.push(m.to_vec())) == 0 {
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
            for f in &frames {
                writeln!(out, "frame {}", hex(f))?;
            }
            writeln!(out, "done {}", frames.len())?;
        }
        "count" => {
            let idle: u64 = number(words, 1, "IDLE_MS", None)?;
            let (mut n, mut bytes) = (0u64, 0u64);
            let mut last = Instant::now();
            while last.elapsed() < Duration::from_millis(idle) {
                let got = g.poll(|m| {
                    n += 1;
                    bytes += m.pkt_len() as u64;
                });
                if got > 0 {
                    last = Instant::now();
                } else {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            writeln!(out, "counted {n} bytes={bytes}")?;
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
