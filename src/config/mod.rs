//! `guests.toml` -> a validated, immutable [`Config`].
//!
//! Role: the only reader of the guests file. Everything downstream (MAC table, vhost ports,
//! socket permissions) may trust a `Config`: names, MACs and socket paths are unique, every
//! MAC is a usable unicast address, numbers are in range, and accounts are resolved to ids.
//!
//! Errors say where and what: `FILE:LINE: guest "NAME": KEY = VALUE: reason` (parts that are
//! unknown are left out). The first problem found stops the parse.
//!
//! It also validates changes to the running switch (the control socket's `guest-add`,
//! `guest-set` and `reload`), with the very same validator and messages as the file, so a
//! guest accepted at run time is one the file would have accepted: see `runtime.rs`
//! ([`parse_addition`], [`apply_settings`], [`diff`]) and `dump.rs` ([`dump`], the running
//! guests written back as a guests file for `config-dump`).
//!
//! Thread: the control thread, at start-up, on reload and on control requests. Allocates
//! and reads files freely.
//!
//! Owner/group names are resolved from `/etc/passwd` and `/etc/group` only (see `ids.rs`):
//! NSS/LDAP accounts must be given as numeric ids.

mod dump;
mod error;
mod guest;
mod ids;
mod raw;
mod runtime;
#[cfg(test)]
mod modes_tests;
#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::policy::Mode;
use crate::wire::{MacAddr, ETHER_HDR_LEN, VLAN_TAG_LEN};

pub use dump::dump;
pub use guest::socket_key;
pub use error::{ConfigError, Problem};
pub use ids::{resolve_group, resolve_user};
pub use runtime::{apply_changes, apply_settings, diff, parse_addition, ConfigDiff, LIVE_KEYS};

/// At most this many guests, in a file or running. Each guest is one vhost-user socket, and
/// DPDK's vhost library as Debian builds it keeps its sockets in a fixed array of
/// `MAX_VHOST_DEVICE` (1024) entries: `rte_vhost_driver_register` fails for the 1025th.
/// Refusing it here gives the reason at the guest's line instead of a failure at start-up.
pub const MAX_GUESTS: usize = 1024;
/// Descriptors DPDK 22.11's vhost library watches at once: its one set holds 1024, one of
/// them its own wake-up pipe. A guest the switch serves (vhost server) takes two, its
/// listening socket and, once the VM is there, its connection; a guest the switch connects
/// to (client) takes one. Past this the library cannot listen for (or talk to) the next
/// guest, so the file and a runtime add are refused before anything starts.
pub const VHOST_FDS: usize = 1023;

/// What guest `g` takes of [`VHOST_FDS`].
pub fn vhost_fds(g: &GuestConfig) -> usize {
    match g.vhost {
        VhostRole::Server => 2,
        VhostRole::Client => 1,
    }
}

/// Why a guest set that needs `need` of [`VHOST_FDS`] is refused.
fn vhost_fds_why(guests: usize, need: usize) -> String {
    format!(
        "{guests} guests need {need} of the {VHOST_FDS} descriptors DPDK's vhost library watches \
         (a guest the switch serves takes 2, its socket and its connection; one it connects to (vhost = \"client\") takes 1)"
    )
}
pub const MAX_QUEUES: u16 = 8;
/// Source MACs one source-mode guest may list (`sources`). A bound so a file cannot make
/// the source table (one entry per listed MAC, rebuilt on every change) arbitrarily large;
/// 256 stations per monitoring guest is far beyond the uses of Linux source mode (a few
/// authenticated stations per port).
pub const MAX_SOURCES: usize = 256;
/// The IPv4 minimum (RFC 791).
pub const MIN_MTU: u16 = 68;
pub const MAX_MTU: u16 = 9000;

/// Two guests for the demo and for tests that need a config without a file.
pub const DEMO_GUESTS_TOML: &str = r#"# dpdk-macvtap demo: two VEPA guests.
[[guest]]
name = "vm1"
mac = "52:54:00:00:00:01"
socket = "/tmp/dpdk-macvtap-demo/vm1.sock"

[[guest]]
name = "vm2"
mac = "52:54:00:00:00:02"
socket = "/tmp/dpdk-macvtap-demo/vm2.sock"
"#;

/// Which side of the vhost-user socket we are.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VhostRole {
    /// We create and listen on the socket; QEMU connects (QEMU `server=off`).
    #[default]
    Server,
    /// QEMU listens; we connect and reconnect when it restarts (QEMU `server=on`).
    Client,
}

impl VhostRole {
    /// The name the guests file uses.
    pub fn name(&self) -> &'static str {
        match self {
            VhostRole::Server => "server",
            VhostRole::Client => "client",
        }
    }
}

/// One validated guest.
///
/// `==` compares `line` too; [`GuestConfig::changed_keys`] compares the settings only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig {
    pub name: String,
    /// Never empty; the first is the primary.
    pub macs: Vec<MacAddr>,
    pub socket: PathBuf,
    pub queues: u16,
    pub mode: Mode,
    /// Mode source: frames from the uplink whose source MAC is listed here reach this guest
    /// too. Empty in every other mode.
    pub sources: Vec<MacAddr>,
    pub mtu: u16,
    pub vhost: VhostRole,
    /// uid to chown the socket to (server role).
    pub owner: Option<u32>,
    /// gid to chown the socket to (server role).
    pub group: Option<u32>,
    /// Permission bits for the socket (server role); default 0o660.
    pub socket_mode: u32,
    /// EAL lcore whose worker serves all of this guest's queues; None: assigned round-robin.
    pub lcore: Option<u16>,
    /// 802.1Q VLAN id 1..4094 of the guest's frames on the uplink; 0: untagged.
    pub vlan: u16,
    /// 1-based line of this guest's `[[guest]]` header, for later messages (in the guests
    /// file, or in the `guest-add` text for a guest added at run time).
    pub line: usize,
}

impl GuestConfig {
    pub fn primary_mac(&self) -> MacAddr {
        // Validation guarantees at least one MAC; the fallback only keeps this panic-free.
        self.macs.first().copied().unwrap_or_default()
    }

    /// Largest frame the guest may send or receive, without CRC: the MTU plus the Ethernet
    /// header plus one VLAN tag (a passthru guest's own tags; a tagged frame on its way in
    /// before the tag comes off).
    pub fn max_frame_len(&self) -> usize {
        usize::from(self.mtu) + ETHER_HDR_LEN + VLAN_TAG_LEN
    }
}

/// The validated guests file.
#[derive(Clone, Debug)]
pub struct Config {
    pub path: PathBuf,
    /// In file order; a guest's index here is its `fib::GuestId`.
    pub guests: Vec<GuestConfig>,
}

impl Config {
    /// The largest guest MTU, which sizes the uplink and the mbufs; 1500 with no guests.
    pub fn max_mtu(&self) -> u16 {
        self.guests.iter().map(|g| g.mtu).max().unwrap_or(1500)
    }
}

/// Reads and validates the guests file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Io {
        path: path.to_path_buf(),
        reason,
    })?;
    parse_str(&text, path)
}

/// Validates guests-file `text`; `path` is used in messages and kept in the result.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_with(text, path, &ids::EtcFiles::default())
}

fn parse_with(text: &str, path: &Path, ids: &dyn ids::IdLookup) -> Result<Config, ConfigError> {
    let src = guest::Source {
        text,
        path,
        lines: true,
    };
    let tables = read_tables(&src)?;
    if tables.is_empty() {
        return Err(src.problem(None, None, "no [[guest]] entries".into()));
    }
    if let Some(extra) = tables.get(MAX_GUESTS) {
        let line = raw::line_of(text, extra.span().start);
        return Err(src.problem(
            Some(line),
            None,
            format!("more than {MAX_GUESTS} guests: {}", max_guests_why()),
        ));
    }
    let mut claims = guest::Claims::default();
    let guests = tables
        .iter()
        .map(|table| guest::validate(&src, table, &mut claims, ids))
        .collect::<Result<Vec<_>, _>>()?;
    // The first guest past the vhost library's descriptors, at its line.
    let mut need = 0;
    for (i, g) in guests.iter().enumerate() {
        need += vhost_fds(g);
        if need > VHOST_FDS {
            let line = raw::line_of(text, tables[i].span().start);
            return Err(src.problem(Some(line), Some(g.name.clone()), vhost_fds_why(i + 1, need)));
        }
    }
    Ok(Config {
        path: path.to_path_buf(),
        guests,
    })
}

/// Why there is a [`MAX_GUESTS`], for the messages that enforce it.
fn max_guests_why() -> String {
    format!("DPDK's vhost library serves at most {MAX_GUESTS} vhost-user sockets")
}

/// The `[[guest]]` tables of `src`, after TOML syntax and the top-level shape are checked.
fn read_tables(src: &guest::Source<'_>) -> Result<Vec<toml::Spanned<raw::RawTable>>, ConfigError> {
    let file: raw::RawFile = toml::from_str(src.text).map_err(|e| {
        let line = e.span().map(|s| raw::line_of(src.text, s.start));
        // toml's messages can span lines (a hint below the summary); keep one line.
        src.problem(line, None, e.message().trim().replace('\n', "; "))
    })?;
    Ok(file.guest)
}
