//! Command-line definitions (the application's options: EAL's come before `--`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// How guest queues are given to worker lcores (`lcore = N` in guests.toml pins either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AssignMode {
    /// In guest order, one queue per worker in turn.
    Roundrobin,
    /// Round-robin at start, then by the cycles each queue costs, measured while forwarding:
    /// re-checked every --rebalance-interval seconds and on `dpdk-macvtapctl rebalance`.
    Cycles,
}

pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (built against DPDK ", env!("MACVTAP_DPDK_VERSION"), ")");

#[derive(Parser, Debug, Clone)]
#[command(
    name = "dpdk-macvtap",
    version = VERSION,
    about = "Gives each VM its own MAC on an uplink port, with VEPA forwarding (like Linux macvtap), at DPDK speed",
    override_usage = "dpdk-macvtap [EAL options] -- --port <PORT> --guests <FILE> [OPTIONS]",
    after_help = "EAL options go before `--`, ours after, e.g.:\n  \
        dpdk-macvtap -l 2-5 -a 0000:03:00.0 -- --port 0 --guests /etc/dpdk-macvtap/guests.toml\n  \
        dpdk-macvtap -l 0-1 --no-huge -m 1024 --vdev net_af_packet0,iface=eth1 -- --port 0 --guests guests.toml\n\
        The main lcore runs the control plane; every other lcore in -l forwards."
)]
pub struct Cli {
    /// Uplink: a port id EAL created (from -a or --vdev), or devargs to probe (e.g. net_tap0,iface=up0,
    /// or a bond over ports EAL created: net_bonding0,mode=1,slave=0000:03:00.0,slave=0000:03:00.1).
    #[arg(long)]
    pub port: String,

    /// With an active-backup bond as the uplink, over net_af_packet members (whose link the
    /// switch follows through their kernel interface's carrier): milliseconds a member's
    /// carrier must be back before the bond uses it again, for the partner's port to forward
    /// by then (a Linux bridge port takes about 0.5 s). DPDK 22.11's bond refuses its own
    /// up_delay devarg. 0 .. 60000.
    #[arg(long, default_value_t = 0, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub bond_up_delay: u64,

    /// Guests file (TOML, one [[guest]] table per VM).
    #[arg(long)]
    pub guests: PathBuf,

    /// Seconds between one-line stats summaries on stdout (0: none; at most a day).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub stats_interval: u64,

    /// Write the counters as JSON to this file at exit and on SIGUSR1.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,

    /// Packet buffers in the pool shared by all ports (1023 .. 16777215). Default: 16383, or
    /// more when the lcores, queues and descriptors can hold more at once (refused if given
    /// and fewer than that).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1023..=16_777_215))]
    pub mbufs: Option<u32>,

    /// MTU of the uplink (68 .. 9000); defaults to the largest guest MTU. Guests added at run
    /// time may have up to this MTU.
    #[arg(long, value_parser = clap::value_parser!(u16).range(i64::from(crate::config::MIN_MTU)..=i64::from(crate::config::MAX_MTU)))]
    pub uplink_mtu: Option<u16>,

    /// Descriptors per uplink rx/tx queue (64 .. 4096).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(64..=4096))]
    pub descriptors: u16,

    /// Guest queue to lcore assignment.
    #[arg(long, value_enum, default_value_t = AssignMode::Roundrobin)]
    pub assign: AssignMode,

    /// With --assign cycles: seconds between load checks (queues move only when the busiest
    /// lcore would get at least 25% lighter); `dpdk-macvtapctl rebalance` checks now.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub rebalance_interval: u64,

    /// Longest sleep, in microseconds, of a worker that found nothing to do for a while (it
    /// polls flat out again from the first frame); 0: never sleep (pure polling, for the
    /// lowest latency at the cost of a core per worker).
    #[arg(long, default_value_t = DEFAULT_IDLE_SLEEP_MAX_US, value_parser = clap::value_parser!(u32).range(0..=MAX_IDLE_SLEEP_US))]
    pub idle_sleep_max: u32,

    /// Once a worker's idle sleeps add up to this many microseconds, it blocks instead, until
    /// a frame or a change wakes it (guests' kicks and the uplink's rx interrupts turned on
    /// meanwhile; for net_af_packet, which has none, frames arriving at its kernel
    /// interface, when one worker polls all of its queues), so an idle switch costs next to
    /// no CPU; only where every queue it polls can wake it (net_ring, net_null, a bond over
    /// members other than net_af_packet, an active-backup bond and an 802.3ad bond that
    /// sends its LACP frames on idle passes keep the workers polling it sleeping). Sparse
    /// traffic blocks sooner: after a lull of 250 us or more from its first
    /// sleep to the frame that ended it, the next lull blocks after a few empty passes; a
    /// shorter lull goes back to this threshold. 0: never block.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = DEFAULT_IDLE_BLOCK_AFTER_US, value_parser = clap::value_parser!(u64).range(0..=60_000_000))]
    pub idle_block_after: u64,

    /// Longest a blocked worker waits, in milliseconds, before it looks at its queues anyway
    /// (and publishes its counters) with nothing having woken it. Its counters can be that
    /// stale, and a frame whose wake-up the vhost library took away (a guest replacing a
    /// vring's kick fd while the worker blocks) that late.
    #[arg(long, value_name = "MS", default_value_t = crate::datapath::DEFAULT_BLOCK_LIMIT.as_millis() as u64, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub idle_block_limit: u64,

    /// Tag and untag VLAN guests' frames in software even where the uplink port offers VLAN
    /// strip and insert offloads (which are used by default).
    #[arg(long)]
    pub no_vlan_offload: bool,
    /// Milliseconds the uplink's link must stay up after coming back before guests' frames
    /// flow again (they wait in their virtqueues meanwhile); for a partner that forwards only
    /// a while after carrier returns (a Linux bridge: up to a second; a switch port running
    /// STP without portfast: far longer). A link that goes down is followed at once.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub uplink_up_delay: u64,

    /// Serve the counters for Prometheus (OpenMetrics text, `GET /metrics`) on HOST:PORT
    /// (e.g. 127.0.0.1:9479) or unix:PATH; off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<crate::control::metrics_http::MetricsAddr>,

    /// No VEPA hairpin self-test at start-up (once the uplink's link is up, the switch sends
    /// two probe frames to find out whether the external switch reflects frames back to
    /// their port, and prints the verdict); `dpdk-macvtapctl hairpin-check` still runs one.
    #[arg(long)]
    pub no_hairpin_check: bool,

    /// The control socket (`dpdk-macvtapctl --control PATH`).
    #[arg(long, default_value = DEFAULT_CONTROL)]
    pub control: PathBuf,

    /// No control socket (the switch then runs with the guests file's guests only).
    #[arg(long, conflicts_with = "control")]
    pub no_control: bool,

    /// Owner of the control socket (user name or uid; default: the switch's own).
    #[arg(long)]
    pub control_owner: Option<String>,

    /// Group of the control socket (group name or gid).
    #[arg(long)]
    pub control_group: Option<String>,

    /// Permission bits of the control socket, in octal: who may change the switch.
    #[arg(long, default_value = "0660", value_parser = parse_octal_mode)]
    pub control_mode: u32,
}

/// The default bound of a worker's idle sleep (see bench/README.md for how it was chosen).
pub const DEFAULT_IDLE_SLEEP_MAX_US: u32 = 250;
impl Cli {
    /// `--idle-block-after` as it applies: 0 (never block) under pure polling too.
    pub fn idle_block_after_us(&self) -> u64 {
        if self.idle_sleep_max == 0 {
            0
        } else {
            self.idle_block_after
        }
    }
}

/// The default lull before an idle worker blocks (bench/README.md, "Blocking through a long
/// lull"): a few of the longest sleeps. A frame wakes a blocked worker at once, where a
/// sleeping one waits out its sleep, so frames a few milliseconds apart arrive sooner with
/// the worker blocked between them (76 us median against 150 at 200 frames a second). It is
/// the threshold for a lull after busy traffic; once traffic is sparse the worker blocks
/// sooner (`datapath::idle`).
pub const DEFAULT_IDLE_BLOCK_AFTER_US: u64 = 1_000;
/// Above this, frames would wait longer than any rx ring holds them at line rate.
pub const MAX_IDLE_SLEEP_US: i64 = 10_000;

/// Where the control socket is unless `--control` says otherwise.
pub const DEFAULT_CONTROL: &str = "/run/dpdk-macvtap/control.sock";

fn parse_octal_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not a permission mode (octal, 0000..0777)")),
    }
}
