//! `guests.toml` -> a validated, immutable [`Config`].
//!
//! Role: the only reader of the guests file. Everything downstream (MAC table, vhost ports,
//! socket permissions) may trust a `Config`: names, MACs and socket paths are unique, every
//! MAC is a usable unicast address, numbers are in range, and accounts are resolved to ids.
//!
//! Errors say where and what: `FILE:LINE: guest "NAME": KEY = VALUE: reason` (parts that are
//! unknown are left out). The first problem found stops the parse.
//!
//! Thread: the control thread, at start-up and on reload. Allocates and reads files freely.
//!
//! Owner/group names are resolved from `/etc/passwd` and `/etc/group` only (see `ids.rs`):
//! NSS/LDAP accounts must be given as numeric ids.

mod error;
mod guest;
mod ids;
mod raw;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::policy::Mode;
use crate::wire::{MacAddr, ETHER_HDR_LEN, VLAN_TAG_LEN};

pub use error::{ConfigError, Problem};

pub const MAX_GUESTS: usize = 4096;
pub const MAX_QUEUES: u16 = 8;
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

/// One validated guest.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub name: String,
    /// Never empty; the first is the primary.
    pub macs: Vec<MacAddr>,
    pub socket: PathBuf,
    pub queues: u16,
    pub mode: Mode,
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
    /// 1-based line of this guest's `[[guest]]` header, for later messages.
    pub line: usize,
}

impl GuestConfig {
    pub fn primary_mac(&self) -> MacAddr {
        // Validation guarantees at least one MAC; the fallback only keeps this panic-free.
        self.macs.first().copied().unwrap_or_default()
    }

    /// Largest frame the guest may send or receive, without CRC: the MTU plus the Ethernet
    /// header plus one VLAN tag (guests may tag their own traffic).
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
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_str(&text, path)
}

/// Validates guests-file `text`; `path` is used in messages and kept in the result.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
    parse_with(text, path, &ids::EtcFiles::default())
}

fn parse_with(text: &str, path: &Path, ids: &dyn ids::IdLookup) -> Result<Config, ConfigError> {
    let problem = |line: Option<usize>, reason: String| -> ConfigError {
        Problem {
            path: path.to_path_buf(),
            line,
            guest: None,
            key: None,
            value: None,
            reason,
        }
        .into()
    };
    let file: raw::RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| raw::line_of(text, s.start));
        // toml's messages can span lines (a hint below the summary); keep one line.
        problem(line, e.message().trim().replace('\n', "; "))
    })?;
    if file.guest.is_empty() {
        return Err(problem(None, "no [[guest]] entries".into()));
    }
    if let Some(extra) = file.guest.get(MAX_GUESTS) {
        let line = raw::line_of(text, extra.span().start);
        return Err(problem(
            Some(line),
            format!("more than {MAX_GUESTS} guests"),
        ));
    }
    let src = guest::Source { text, path };
    let mut claims = guest::Claims::default();
    let guests = file
        .guest
        .iter()
        .map(|table| guest::validate(&src, table, &mut claims, ids))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        path: path.to_path_buf(),
        guests,
    })
}
