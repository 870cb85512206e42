//! Command-line definitions of `dpdk-macvtapctl` (clap derive).
//!
//! Role: only the shape of the command line. Turning a parsed command into a request is
//! `request.rs`'s job, so the argument types stay close to what the user typed.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::request::Assignment;

/// Where the switch listens unless told otherwise (the switch's own `--control` default).
pub const DEFAULT_CONTROL: &str = "/run/dpdk-macvtap/control.sock";
/// Environment variable naming the socket when `--control` is not given.
pub const CONTROL_ENV: &str = "DPDK_MACVTAP_CONTROL";
/// Help heading of the options every command takes (they may also follow the command), so
/// a command's own flags are not interleaved with them in its help.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "dpdk-macvtapctl",
    version = env!("CARGO_PKG_VERSION"),
    about = "Queries and changes a running dpdk-macvtap switch through its control socket",
    after_help = "Examples:\n  \
        dpdk-macvtapctl guest-list\n  \
        dpdk-macvtapctl guest-add --name vm3 --mac 52:54:00:00:00:03 --socket /run/dpdk-macvtap/vm3.sock\n  \
        dpdk-macvtapctl guest-set vm1 mtu=9000 mode=private lcore=none\n  \
        dpdk-macvtapctl --json stats vm1\n  \
        dpdk-macvtapctl call guest-show '{\"name\":\"vm1\"}'\n  \
        dpdk-macvtapctl top\n  \
        dpdk-macvtapctl events | while read -r t what; do ...; done\n\
        Exit status: 0 success, 1 the switch refused or failed the request, 2 usage error or cannot connect."
)]
pub struct Cli {
    /// Control socket of the switch [env: DPDK_MACVTAP_CONTROL] [default: /run/dpdk-macvtap/control.sock]
    // Not clap's `env`/`default_value`: the `env` feature is not enabled for this crate, and
    // resolving it by hand (`control_path`) keeps "empty variable = unset" explicit.
    #[arg(long, value_name = "PATH", global = true, help_heading = GLOBAL)]
    pub control: Option<PathBuf>,

    /// Print the switch's result as pretty JSON instead of human-readable text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Seconds allowed for connecting and getting the reply (1-3600).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        global = true,
        help_heading = GLOBAL,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub timeout: u64,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--control`, else a non-empty `$DPDK_MACVTAP_CONTROL`, else the default path.
    pub fn control_path(&self) -> PathBuf {
        resolve_control(self.control.clone(), std::env::var_os(CONTROL_ENV))
    }
}

/// The precedence rule, separated from the process environment so it can be tested.
pub fn resolve_control(flag: Option<PathBuf>, env: Option<std::ffi::OsString>) -> PathBuf {
    flag.or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Version of the running switch (and of the DPDK it was built against).
    Version,
    /// One line per guest: name, MACs, mode, MTU, queues, link, socket.
    GuestList,
    /// Everything about one guest, with its counters.
    GuestShow {
        /// Guest name.
        name: String,
    },
    /// Add a guest, from flags, a file holding one [[guest]] table, or TOML text.
    GuestAdd(Box<GuestAdd>),
    /// Remove a guest (its vhost-user socket is closed); prints its final counters.
    GuestDel {
        /// Guest name.
        name: String,
    },
    /// Change keys of a running guest, e.g. `guest-set vm1 mtu=9000 mode=private`.
    ///
    /// Values are TOML values (9000, "text", true, ["a", "b"]); anything that is not valid
    /// TOML is sent as a plain string. `mac=A,B` (and `sources=A,B`) sends a list; `lcore=none`
    /// unpins; `vlan=none` makes the guest untagged.
    GuestSet {
        /// Guest name.
        name: String,
        /// KEY=VALUE pairs (keys as in the guests file).
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = crate::request::parse_assignment)]
        assignments: Vec<Assignment>,
    },
    /// Packet, byte and drop counters: all ports, or one guest.
    Stats {
        /// Guest name (default: every port and worker).
        name: Option<String>,
    },
    /// Which guest queues and uplink queues each forwarding lcore serves, and how busy it is.
    LcoreShow,
    /// The uplink port and its link: state, speed, since when, changes, how it is followed.
    UplinkShow,
    /// Print the switch's events, one line each, until interrupted: uplink link up/down,
    /// guest link up/down (a vhost-user client connected or went), guest added/removed.
    ///
    /// The first line is the state the events then change. With --json, the subscription's
    /// reply and then each event notification exactly as the switch sent them (JSON-RPC
    /// 2.0, one per line). Exits 1 when the switch closes the stream (it stopped).
    Events,
    /// Re-assign guest queues to lcores by measured cost now.
    Rebalance,
    /// Re-read the guests file and apply the differences (all or nothing).
    Reload,
    /// Print the running state as a guests file.
    ConfigDump,
    /// Re-announce guest MACs on the uplink (a RARP frame per MAC, 5 rounds over about a
    /// second, as QEMU's announce-self), so the external switch relearns where they are.
    Announce {
        /// Guest name (default: every guest).
        name: Option<String>,
    },
    /// Run the VEPA hairpin self-test now: does the external switch reflect frames back to
    /// the port they came from (which VEPA guests need to reach each other)? Waits for the
    /// verdict (at most about a second) and prints it.
    HairpinCheck,
    /// Live view of rates, like top: per guest and uplink, packets and bits per second and
    /// drops per second by reason; per lcore, busy and asleep shares and frames per second.
    ///
    /// Samples the stats method every interval and shows the rates between the last two
    /// samples, busiest guests first. Rx is what the switch received from a port, tx what
    /// it delivered to it. Keys: q, Esc or Ctrl-C quit. If the switch goes away, the view
    /// shows why and keeps trying. --once prints the table once instead (no terminal
    /// control; with --json, the rates as JSON) and exits.
    #[command(visible_alias = "monitor")]
    Top(TopArgs),
    /// Send any method with raw JSON params and print the raw JSON result.
    Call {
        /// Method name, e.g. guest-show.
        method: String,
        /// Params as JSON, e.g. '{"name":"vm1"}' (default: none).
        #[arg(value_name = "JSON-PARAMS", value_parser = parse_json)]
        params: Option<serde_json::Value>,
    },
}

/// `top`: how often, and whether to stay.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct TopArgs {
    /// Seconds between samples (1-3600).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub interval: u64,
    /// Take two samples one interval apart, print the table (or with --json the rates) once
    /// and exit; no terminal control, for scripts.
    #[arg(long)]
    pub once: bool,
}

/// Which side of the vhost-user socket the switch takes (the guests file's `vhost`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VhostRole {
    /// The switch creates the socket; QEMU connects.
    Server,
    /// QEMU creates the socket (server=on); the switch connects.
    Client,
}

impl VhostRole {
    pub fn name(self) -> &'static str {
        match self {
            VhostRole::Server => "server",
            VhostRole::Client => "client",
        }
    }
}

/// `guest-add`: the flags build one `[[guest]]` table; `--file` and `--toml` bring one.
///
/// Values are not validated here beyond their types: the switch validates the table with
/// the same code that reads the guests file, and its message names the key and the reason.
#[derive(Args, Debug, Default)]
#[command(group(
    ArgGroup::new("flags")
        .multiple(true)
        .args(["name", "mac", "socket", "queues", "mode", "sources", "mtu", "vhost", "owner", "group", "socket_mode", "lcore", "vlan"])
))]
pub struct GuestAdd {
    /// Guest name.
    #[arg(long, required_unless_present_any = ["file", "toml"])]
    pub name: Option<String>,
    /// MAC address; repeat the flag or give a comma-separated list for several.
    #[arg(long, value_name = "MAC", value_delimiter = ',', required_unless_present_any = ["file", "toml"])]
    pub mac: Vec<String>,
    /// Path of the guest's vhost-user socket.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["file", "toml"])]
    pub socket: Option<String>,
    /// Queue pairs.
    #[arg(long, value_name = "N")]
    pub queues: Option<u16>,
    /// Forwarding mode (vepa, private, bridge, passthru, source).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
    /// With --mode source: stations whose frames the guest also receives; repeat the flag or
    /// give a comma-separated list.
    #[arg(long, value_name = "MAC", value_delimiter = ',')]
    pub sources: Vec<String>,
    /// MTU.
    #[arg(long, value_name = "N")]
    pub mtu: Option<u16>,
    /// Vhost-user role of the switch.
    #[arg(long, value_enum)]
    pub vhost: Option<VhostRole>,
    /// Owner of the socket the switch creates (user name or uid).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Group of the socket the switch creates (group name or gid).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Permission bits of the socket the switch creates, octal (e.g. 0660).
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,
    /// Pin the guest's queues to this forwarding lcore.
    #[arg(long, value_name = "N")]
    pub lcore: Option<u16>,
    /// 802.1Q VLAN id (1-4094) of the guest's frames on the uplink (default: untagged).
    #[arg(long, value_name = "VID")]
    pub vlan: Option<u16>,
    /// File holding exactly one [[guest]] table ("-": standard input).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["flags", "toml"])]
    pub file: Option<PathBuf>,
    /// TOML text holding exactly one [[guest]] table.
    #[arg(long, value_name = "TEXT", conflicts_with = "flags")]
    pub toml: Option<String>,
}

fn parse_json(s: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not valid JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn control_path_precedence() {
        let flag = Some(PathBuf::from("/tmp/a.sock"));
        let env = Some(std::ffi::OsString::from("/tmp/b.sock"));
        assert_eq!(
            resolve_control(flag.clone(), env.clone()),
            PathBuf::from("/tmp/a.sock")
        );
        assert_eq!(resolve_control(None, env), PathBuf::from("/tmp/b.sock"));
        assert_eq!(
            resolve_control(None, Some("".into())),
            PathBuf::from(DEFAULT_CONTROL)
        );
        assert_eq!(resolve_control(None, None), PathBuf::from(DEFAULT_CONTROL));
    }

    #[test]
    fn global_options_and_timeout_range() {
        let cli = Cli::try_parse_from(["ctl", "guest-list", "--json", "--timeout", "3600"])
            .expect("valid");
        assert!(cli.json);
        assert_eq!(cli.timeout, 3600);
        for bad in ["0", "3601", "-1", "x"] {
            let err = Cli::try_parse_from(["ctl", "--timeout", bad, "version"])
                .expect_err("out of range");
            assert_eq!(err.exit_code(), 2, "--timeout {bad}");
        }
    }

    #[test]
    fn guest_add_sources_are_exclusive() {
        let ok = |args: &[&str]| {
            let mut v = vec!["ctl", "guest-add"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v)
        };
        let cli = ok(&[
            "--name", "vm3", "--mac", "a,b", "--mac", "c", "--socket", "/s",
        ])
        .expect("flags");
        match cli.command {
            Command::GuestAdd(g) => assert_eq!(g.mac, ["a", "b", "c"]),
            other => panic!("parsed as {other:?}"),
        }
        assert!(ok(&["--file", "g.toml"]).is_ok());
        assert!(ok(&["--toml", "[[guest]]"]).is_ok());
        assert!(ok(&["--name", "vm3"]).is_err(), "mac and socket missing");
        assert!(ok(&["--file", "g.toml", "--mtu", "9000"]).is_err());
        assert!(ok(&["--toml", "x", "--name", "vm3"]).is_err());
        assert!(ok(&["--file", "g.toml", "--toml", "x"]).is_err());
        assert!(ok(&[]).is_err());
    }

    #[test]
    fn top_interval_once_and_alias() {
        let top = |args: &[&str]| {
            let mut v = vec!["ctl"];
            v.extend_from_slice(args);
            Cli::try_parse_from(v).map(|cli| match cli.command {
                Command::Top(t) => t,
                other => panic!("parsed as {other:?}"),
            })
        };
        assert_eq!(
            top(&["top"]).expect("defaults"),
            TopArgs {
                interval: 1,
                once: false
            }
        );
        assert_eq!(
            top(&["monitor", "--once", "--interval", "3600"]).expect("alias"),
            TopArgs {
                interval: 3600,
                once: true
            }
        );
        for bad in ["0", "3601", "-1", "0.5"] {
            let err = top(&["top", "--interval", bad]).expect_err("out of range");
            assert_eq!(err.exit_code(), 2, "--interval {bad}");
        }
    }

    #[test]
    fn guest_set_needs_assignments_and_call_needs_json() {
        assert!(Cli::try_parse_from(["ctl", "guest-set", "vm1"]).is_err());
        assert!(Cli::try_parse_from(["ctl", "guest-set", "vm1", "mtu"]).is_err());
        assert!(Cli::try_parse_from(["ctl", "call", "version", "{"]).is_err());
        let cli =
            Cli::try_parse_from(["ctl", "call", "stats", "{\"name\":\"vm1\"}"]).expect("valid");
        match cli.command {
            Command::Call { method, params } => {
                assert_eq!(method, "stats");
                assert_eq!(params, Some(serde_json::json!({"name": "vm1"})));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
