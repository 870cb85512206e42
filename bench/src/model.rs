//! What is measured: systems, paths, frame sizes, and the shared settings of one bench run.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::process::Command;

/// The switches compared in one run, in the order they are interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum System {
    /// dpdk-macvtap with its default idle sleep (or `--idle-sleep-max` as given to the harness).
    Macvtap,
    /// The same binary with `--idle-sleep-max 0`: pure polling, the reference for what the
    /// idle sleep costs.
    MacvtapNosleep,
    Testpmd,
    Ovs,
    Kernel,
}

impl System {
    pub const ALL: [System; 5] = [System::Macvtap, System::MacvtapNosleep, System::Testpmd, System::Ovs, System::Kernel];

    pub fn name(self) -> &'static str {
        match self {
            System::Macvtap => "dpdk-macvtap",
            System::MacvtapNosleep => "dpdk-macvtap sleep off",
            System::Testpmd => "testpmd io-fwd",
            System::Ovs => "OVS-DPDK",
            System::Kernel => "kernel macvtap",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            System::Macvtap => "macvtap",
            System::MacvtapNosleep => "macvtap-nosleep",
            System::Testpmd => "testpmd",
            System::Ovs => "ovs",
            System::Kernel => "kernel",
        }
    }

    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.key() == s)
    }

    /// Either dpdk-macvtap variant (the same binary, the idle sleep bound differs).
    pub fn is_macvtap(self) -> bool {
        matches!(self, System::Macvtap | System::MacvtapNosleep)
    }
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which way frames go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Path {
    /// One guest transmits (testpmd txonly); the uplink (`net_null`) sinks.
    GuestToUplink,
    /// The uplink replays frames addressed to the one guest; the guest sinks (rxonly).
    UplinkToGuest,
    /// The uplink replays broadcasts; N guests sink. Counted as frames delivered (all guests).
    Fanout(usize),
    /// N guests transmit at once (one testpmd, N ports, txonly); the uplink sinks.
    GuestsToUplink(usize),
    /// The uplink replays frames spread round-robin over N guests' MACs; all N sink.
    UplinkToGuests(usize),
    /// Uplink -> guests with `configured` guests holding `macs` MACs in all (the same number
    /// each), the first `connected` of them attached; frames spread over the attached guests'
    /// MACs. The MAC table's size is what changes from one to the next.
    Scale { configured: usize, macs: usize, connected: usize },
}

impl Path {
    pub fn name(self) -> String {
        match self {
            Path::GuestToUplink => "guest -> uplink".into(),
            Path::UplinkToGuest => "uplink -> guest".into(),
            Path::Fanout(n) => format!("uplink broadcast -> {n} guests"),
            Path::GuestsToUplink(n) => format!("{n} guests -> uplink"),
            Path::UplinkToGuests(n) => format!("uplink -> {n} guests"),
            Path::Scale { configured, macs, connected } => {
                format!("uplink -> guest, {configured} configured, {macs} MACs, {connected} attached")
            }
        }
    }

    pub fn key(self) -> String {
        match self {
            Path::GuestToUplink => "g2u".into(),
            Path::UplinkToGuest => "u2g".into(),
            Path::Fanout(n) => format!("fanout{n}"),
            Path::GuestsToUplink(n) => format!("g2u{n}"),
            Path::UplinkToGuests(n) => format!("u2g{n}"),
            Path::Scale { configured, .. } => format!("scale{configured}"),
        }
    }

    /// Guests attached (virtio-user ports of the generator).
    pub fn guests(self) -> usize {
        match self {
            Path::Fanout(n) | Path::GuestsToUplink(n) | Path::UplinkToGuests(n) => n,
            Path::Scale { connected, .. } => connected,
            Path::GuestToUplink | Path::UplinkToGuest => 1,
        }
    }

    /// Guests in the switch's configuration (attached or not).
    pub fn configured(self) -> usize {
        match self {
            Path::Scale { configured, .. } => configured,
            p => p.guests(),
        }
    }

    /// The guests transmit (testpmd txonly); otherwise they sink (rxonly).
    pub fn guests_send(self) -> bool {
        matches!(self, Path::GuestToUplink | Path::GuestsToUplink(_))
    }

    /// The MACs of configured guest `g` (the first is the one its port uses). Scale guests
    /// share `macs` evenly; every other path gives a guest one MAC.
    pub fn macs_of(self, g: usize) -> Vec<[u8; 6]> {
        match self {
            Path::Scale { configured, macs, .. } => {
                let per = (macs / configured.max(1)).max(1);
                (0..per).map(|k| scale_mac(g, k)).collect()
            }
            _ => vec![guest_mac(g)],
        }
    }
}

/// MAC `k` of scale guest `g` (k < 256, g < 65536): 52:55:kk:00:gg:gg.
pub fn scale_mac(g: usize, k: usize) -> [u8; 6] {
    [0x52, 0x55, k as u8, 0x00, (g >> 8) as u8, g as u8]
}

/// One cell of the matrix: a path at a frame size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Case {
    pub path: Path,
    /// Frame size on the wire, FCS included (64 = a 60-byte buffer).
    pub size: usize,
    /// The switch's control/main thread runs on its forwarding thread's core (the whole
    /// switch process pinned there), as on a host that gives the switch one core.
    #[serde(default)]
    pub shared_core: bool,
}

impl Case {
    /// Bytes in the buffer the generator builds (no FCS in software).
    pub fn buf_len(&self) -> usize {
        self.size - 4
    }

    /// Jumbo frames need jumbo MTUs and single-segment mbufs big enough for them.
    pub fn jumbo(&self) -> bool {
        self.size > 1518
    }

    pub fn label(&self) -> String {
        format!("{} {} B", self.path_name(), self.size)
    }

    /// The path's name, and where the switch's control thread ran when not apart.
    pub fn path_name(&self) -> String {
        if self.shared_core {
            format!("{}, control on worker core", self.path.name())
        } else {
            self.path.name()
        }
    }
}

/// The i-th guest's MAC: 52:54:00:00:00:(i+1).
pub fn guest_mac(i: usize) -> [u8; 6] {
    [0x52, 0x54, 0x00, 0x00, (i >> 8) as u8, (i + 1) as u8]
}

/// The host behind the uplink.
pub const EXTERNAL_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];

pub fn mac_str(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Settings shared by every measurement of one bench run.
pub struct Env {
    pub work: PathBuf,
    pub macvtap_bin: PathBuf,
    pub latgen_bin: PathBuf,
    /// Hugepages (`-m`) or `--no-huge`.
    pub hugepages: bool,
    pub warmup_s: u64,
    pub duration_s: u64,
    /// `--idle-sleep-max` for the `macvtap` system; None: the binary's default.
    /// (`macvtap-nosleep` always runs with 0.)
    pub idle_sleep_max: Option<u32>,
    seq: Cell<u32>,
    /// The first command line seen for each (system, role), for the report.
    pub commands: std::cell::RefCell<BTreeMap<String, String>>,
}

impl Env {
    pub fn new(work: PathBuf, macvtap_bin: PathBuf, latgen_bin: PathBuf, hugepages: bool, warmup_s: u64, duration_s: u64) -> Env {
        Env { work, macvtap_bin, latgen_bin, hugepages, warmup_s, duration_s, idle_sleep_max: None, seq: Cell::new(0), commands: Default::default() }
    }

    /// A fresh number for file prefixes and directories: no two processes share one.
    pub fn next_seq(&self) -> u32 {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        s
    }

    /// EAL memory options: the same for every DPDK process of one kind in every system.
    pub fn eal_mem(&self, mb: u32) -> Vec<String> {
        if self.hugepages {
            vec!["-m".into(), mb.to_string()]
        } else {
            vec!["--no-huge".into(), "-m".into(), mb.to_string()]
        }
    }

    pub fn record(&self, key: &str, cmd: &str) {
        self.commands.borrow_mut().entry(key.to_owned()).or_insert_with(|| cmd.to_owned());
    }

    pub fn record_cmd(&self, key: &str, cmd: &Command) {
        self.record(key, &crate::proc::render(cmd));
    }
}
