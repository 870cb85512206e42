//! Validation of one `[[guest]]` table into a [`GuestConfig`], and of what guests must not
//! share (names, MACs, socket paths).
//!
//! Checks run in a fixed order (unknown keys first, since a misspelt key usually explains a
//! "missing" one; then the required keys; then the optional ones) and the first failure
//! ends the parse: one precise message beats a page of consequential ones.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::{ConfigError, Problem};
use super::ids::{numeric_id, IdLookup};
use super::raw::{entries, line_of, Entry, RawTable, RawValue};
use super::{GuestConfig, VhostRole, MAX_MTU, MAX_QUEUES, MAX_SOURCES, MIN_MTU};
use crate::policy::Mode;
use crate::wire::vlan::{MAX_VID, MIN_VID};
use crate::wire::MacAddr;

/// Every key a guest table may hold, in the order error messages list them (and `dump`
/// writes them).
pub(super) const KEYS: [&str; 13] = [
    "name",
    "mac",
    "socket",
    "queues",
    "mode",
    "sources",
    "mtu",
    "vhost",
    "owner",
    "group",
    "socket_mode",
    "lcore",
    "vlan",
];
/// Long enough for libvirt-style domain names, short enough for a column of stats output.
pub(super) const MAX_NAME_LEN: usize = 32;
/// `sizeof(sockaddr_un.sun_path)` on Linux minus the terminating NUL.
pub(super) const MAX_SOCKET_PATH: usize = 107;
const DEFAULT_QUEUES: u16 = 1;
const DEFAULT_MTU: u16 = 1500;
const DEFAULT_SOCKET_MODE: u32 = 0o660;
/// DPDK's RTE_MAX_LCORE in Debian's build is 128; larger ids cannot name an lcore.
const MAX_LCORE_ID: u16 = 127;

/// The text being parsed, for turning byte offsets into `FILE:LINE`.
pub(super) struct Source<'a> {
    pub text: &'a str,
    /// What messages name as the file (a path, or e.g. `guest-add` for control requests).
    pub path: &'a Path,
    /// False when `text` was generated (`guest-set`): its line numbers would mean nothing to
    /// the operator, so messages leave them out.
    pub lines: bool,
}

impl Source<'_> {
    /// A problem not tied to one key.
    pub fn problem(
        &self,
        line: Option<usize>,
        guest: Option<String>,
        reason: String,
    ) -> ConfigError {
        Problem {
            path: self.path.to_path_buf(),
            line: line.filter(|_| self.lines),
            guest,
            key: None,
            value: None,
            reason,
        }
        .into()
    }
}

/// Who holds a name, MAC or socket path, for the "already used by" messages.
#[derive(Clone, Debug)]
enum Holder {
    /// A guest of the text under validation, with its header line if lines are shown.
    Text { name: String, line: Option<usize> },
    /// A guest the switch is running (`guest-add`, `guest-set`); its line is in another text.
    Running { name: String },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Text {
                name,
                line: Some(line),
            } => write!(f, "guest {name:?} (line {line})"),
            Holder::Text { name, line: None } => write!(f, "guest {name:?}"),
            Holder::Running { name } => write!(f, "running guest {name:?}"),
        }
    }
}

/// What earlier guests (and earlier MACs of the same guest) already took, with who took it
/// for the "already used by" message. Seeded from the running guests when a change to the
/// running switch is validated, so that one duplicate check serves files and changes alike.
#[derive(Default)]
pub(super) struct Claims {
    names: HashMap<String, Holder>,
    macs: HashMap<MacAddr, Holder>,
    sockets: HashMap<PathBuf, Holder>,
    /// The guest in mode passthru, if one was seen: it owns the uplink alone.
    passthru: Option<Holder>,
}

impl Claims {
    /// Everything `running` holds, claimed in the running guests' names.
    pub fn running(running: &[GuestConfig]) -> Self {
        let mut claims = Claims::default();
        for g in running {
            let holder = Holder::Running {
                name: g.name.clone(),
            };
            for mac in &g.macs {
                claims.macs.insert(*mac, holder.clone());
            }
            claims.sockets.insert(socket_key(&g.socket), holder.clone());
            if g.mode == Mode::Passthru {
                claims.passthru = Some(holder.clone());
            }
            claims.names.insert(g.name.clone(), holder);
        }
        claims
    }

    /// One guest claimed so far (the earliest in the text, else a running one by name), for
    /// "a passthru guest cannot share the uplink with ..." messages.
    fn some_guest(&self) -> Option<&Holder> {
        self.names.values().min_by_key(|h| match h {
            Holder::Text { name, line } => (0, line.unwrap_or(0), name.clone()),
            Holder::Running { name } => (1, 0, name.clone()),
        })
    }
}

/// One guest table under validation.
struct GuestCx<'a> {
    src: &'a Source<'a>,
    line: usize,
    /// The raw `name` string if there is one, valid or not (see [`raw_name`]).
    name: Option<String>,
}

impl GuestCx<'_> {
    fn problem(
        &self,
        offset: usize,
        key: &str,
        value: Option<String>,
        reason: String,
    ) -> ConfigError {
        Problem {
            path: self.src.path.to_path_buf(),
            line: Some(line_of(self.src.text, offset)).filter(|_| self.src.lines),
            guest: self.name.clone(),
            key: Some(key.to_owned()),
            value,
            reason,
        }
        .into()
    }

    /// Who this guest is, as a holder of what it claims.
    fn holder(&self, name: &str) -> Holder {
        Holder::Text {
            name: name.to_owned(),
            line: Some(self.line).filter(|_| self.src.lines),
        }
    }

    /// An error about a whole key's value.
    fn bad(&self, e: &Entry<'_>, reason: impl Into<String>) -> ConfigError {
        self.problem(
            e.value_span.start,
            e.key,
            Some(e.value.to_string()),
            reason.into(),
        )
    }

    fn missing(&self, key: &str) -> ConfigError {
        self.src.problem(
            Some(self.line),
            self.name.clone(),
            format!("missing required key {key:?}"),
        )
    }

    fn string<'e>(&self, e: &Entry<'e>) -> Result<&'e str, ConfigError> {
        e.value
            .value
            .as_str()
            .ok_or_else(|| self.bad(e, "expected a string"))
    }

    fn integer_in(&self, e: &Entry<'_>, lo: u16, hi: u16) -> Result<u16, ConfigError> {
        let n = e
            .value
            .value
            .as_integer()
            .ok_or_else(|| self.bad(e, "expected an integer"))?;
        u16::try_from(n)
            .ok()
            .filter(|v| (lo..=hi).contains(v))
            .ok_or_else(|| self.bad(e, format!("must be between {lo} and {hi}")))
    }
}

/// Validates one guest table and records its claims.
pub(super) fn validate(
    src: &Source<'_>,
    table: &Spanned<RawTable>,
    claims: &mut Claims,
    ids: &dyn IdLookup,
) -> Result<GuestConfig, ConfigError> {
    let entries = entries(table.get_ref());
    let find = |key: &str| entries.iter().find(|e| e.key == key);
    let cx = GuestCx {
        src,
        line: line_of(src.text, table.span().start),
        name: raw_name(table),
    };

    if let Some(e) = entries.iter().find(|e| !KEYS.contains(&e.key)) {
        let reason = format!("unknown key (accepted: {})", KEYS.join(", "));
        return Err(cx.problem(e.key_span.start, e.key, Some(e.value.to_string()), reason));
    }
    let name_e = find("name").ok_or_else(|| cx.missing("name"))?;
    let mac_e = find("mac").ok_or_else(|| cx.missing("mac"))?;
    let socket_e = find("socket").ok_or_else(|| cx.missing("socket"))?;

    let name = cx.string(name_e)?.to_owned();
    check_name(&name).map_err(|r| cx.bad(name_e, r))?;
    if let Some(holder) = claims.names.get(&name) {
        let reason = match holder {
            Holder::Text {
                line: Some(line), ..
            } => format!("name already used by the guest at line {line}"),
            Holder::Text { line: None, .. } => "name already used by another guest".into(),
            Holder::Running { .. } => "name already used by a running guest".into(),
        };
        return Err(cx.bad(name_e, reason));
    }

    let macs = macs(&cx, mac_e, &name, claims)?;

    let socket = PathBuf::from(cx.string(socket_e)?);
    check_socket(&socket).map_err(|r| cx.bad(socket_e, r))?;
    if let Some(holder) = claims.sockets.get(&socket_key(&socket)) {
        return Err(cx.bad(socket_e, format!("already used by {holder}")));
    }

    let queues = match find("queues") {
        Some(e) => cx.integer_in(e, 1, MAX_QUEUES)?,
        None => DEFAULT_QUEUES,
    };
    let mtu = match find("mtu") {
        Some(e) => cx.integer_in(e, MIN_MTU, MAX_MTU)?,
        None => DEFAULT_MTU,
    };
    let mode = match find("mode") {
        Some(e) => mode(&cx, e)?,
        None => Mode::default(),
    };
    passthru_alone(&cx, find("mode"), mode, claims)?;
    let sources = match find("sources") {
        Some(e) if mode != Mode::Source => {
            return Err(cx.bad(e, format!("only a guest in mode \"source\" has sources (this one is in mode {:?})", mode.name())))
        }
        Some(e) => sources(&cx, e, &macs)?,
        None => Vec::new(),
    };
    let vhost = match find("vhost") {
        Some(e) => match cx.string(e)? {
            "server" => VhostRole::Server,
            "client" => VhostRole::Client,
            other => {
                return Err(cx.bad(
                    e,
                    format!("unknown vhost role {other:?} (accepted: server, client)"),
                ))
            }
        },
        None => VhostRole::default(),
    };
    let owner = find("owner")
        .map(|e| account_id(&cx, e, |n| ids.uid(n)))
        .transpose()?;
    let group = find("group")
        .map(|e| account_id(&cx, e, |n| ids.gid(n)))
        .transpose()?;
    let socket_mode = match find("socket_mode") {
        Some(e) => match &e.value.value {
            toml::Value::String(s) => octal_mode(s).map_err(|r| cx.bad(e, r))?,
            _ => return Err(cx.bad(e, "must be a quoted octal string such as \"0660\"")),
        },
        None => DEFAULT_SOCKET_MODE,
    };

    // Pinning a guest's queues to one forwarding lcore (like Open vSwitch's pmd-rxq-affinity);
    // whether that lcore is a worker is checked at start-up, when the lcores are known.
    let lcore = find("lcore")
        .map(|e| cx.integer_in(e, 0, MAX_LCORE_ID))
        .transpose()?;
    // 802.1Q VLAN id; absent means untagged (0 inside the switch, never written).
    // A passthru guest owns the whole wire, tags included: it sees the uplink's frames as
    // they come and tags its own, so a VLAN of its own would mean nothing.
    let vlan = match find("vlan") {
        Some(e) if mode == Mode::Passthru => {
            return Err(cx.bad(e, "a guest in mode \"passthru\" owns the whole uplink, VLAN tags included: it has no vlan of its own"))
        }
        Some(e) => cx.integer_in(e, MIN_VID, MAX_VID)?,
        None => 0,
    };

    claims.names.insert(name.clone(), cx.holder(&name));
    claims.sockets.insert(socket_key(&socket), cx.holder(&name));
    if mode == Mode::Passthru {
        claims.passthru = Some(cx.holder(&name));
    }
    Ok(GuestConfig {
        name,
        macs,
        socket,
        queues,
        mode,
        sources,
        mtu,
        vhost,
        owner,
        group,
        socket_mode,
        lcore,
        vlan,
        line: cx.line,
    })
}

/// The table's `name` if it is a string, valid or not: the best label for messages.
pub(super) fn raw_name(table: &Spanned<RawTable>) -> Option<String> {
    table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "name")
        .and_then(|(_, v)| v.get_ref().value.as_str())
        .map(str::to_owned)
}

/// `mac` is one string or a non-empty list of them; each must be a fresh unicast address.
fn macs(
    cx: &GuestCx<'_>,
    e: &Entry<'_>,
    name: &str,
    claims: &mut Claims,
) -> Result<Vec<MacAddr>, ConfigError> {
    if matches!(&e.value.value, toml::Value::Array(items) if items.is_empty()) {
        return Err(cx.bad(e, "must list at least one MAC address"));
    }
    station_macs(cx, e, "a guest's MAC", |mac| {
        if let Some(holder) = claims.macs.get(&mac) {
            return Err(format!("already used by {holder}"));
        }
        claims.macs.insert(mac, cx.holder(name));
        Ok(())
    })
}

/// `sources` (mode source): stations whose frames the guest also receives. One string or a
/// list (empty: none yet); unicast, each once, none of the guest's own MACs (its own frames
/// reflected back are not what it asked for), at most `MAX_SOURCES`. Other guests' MACs are
/// allowed: their frames reflected by a hairpin switch are copied too (see
/// `policy::deliver_by_source`).
fn sources(cx: &GuestCx<'_>, e: &Entry<'_>, own: &[MacAddr]) -> Result<Vec<MacAddr>, ConfigError> {
    if let toml::Value::Array(items) = &e.value.value {
        if items.len() > MAX_SOURCES {
            return Err(cx.bad(e, format!("lists {} addresses; at most {MAX_SOURCES} per guest", items.len())));
        }
    }
    let mut seen = Vec::new();
    station_macs(cx, e, "a source", |mac| {
        if own.contains(&mac) {
            return Err("is one of the guest's own MACs".into());
        }
        if seen.contains(&mac) {
            return Err("listed twice".into());
        }
        seen.push(mac);
        Ok(())
    })
}

/// `e`'s value as station addresses (one string or a list): each parsed, unicast and
/// non-zero (`what` names it in messages: "a guest's MAC"), then `check`ed by the caller. An
/// error points at the offending element's own line.
fn station_macs(
    cx: &GuestCx<'_>,
    e: &Entry<'_>,
    what: &str,
    mut check: impl FnMut(MacAddr) -> Result<(), String>,
) -> Result<Vec<MacAddr>, ConfigError> {
    // Pair each text with the offset its error should point at.
    let texts: Vec<(&toml::Value, usize)> = match &e.value.value {
        toml::Value::Array(items) => items
            .iter()
            .zip(e.value.items.iter().map(|s| s.start))
            .collect(),
        single => vec![(single, e.value_span.start)],
    };
    let mut macs = Vec::with_capacity(texts.len());
    for (value, offset) in texts {
        let shown = RawValue {
            value: value.clone(),
            items: Vec::new(),
        }
        .to_string();
        let bad = |reason: String| cx.problem(offset, e.key, Some(shown.clone()), reason);
        let text = value
            .as_str()
            .ok_or_else(|| bad("expected a MAC address string".into()))?;
        let mac: MacAddr = text
            .parse()
            .map_err(|err: crate::wire::MacParseError| bad(err.reason.to_string()))?;
        if mac.is_broadcast() {
            return Err(bad(format!("the broadcast address cannot be {what}")));
        }
        if mac.is_multicast() {
            return Err(bad(format!("a multicast address cannot be {what}")));
        }
        if mac.is_zero() {
            return Err(bad(format!("the all-zero address cannot be {what}")));
        }
        check(mac).map_err(bad)?;
        macs.push(mac);
    }
    Ok(macs)
}

/// A passthru guest owns the uplink: refused beside any other guest, whichever comes first.
fn passthru_alone(cx: &GuestCx<'_>, mode_e: Option<&Entry<'_>>, mode: Mode, claims: &Claims) -> Result<(), ConfigError> {
    if let Some(owner) = &claims.passthru {
        let reason = format!("{owner} is in mode \"passthru\" and owns the uplink alone: no other guest may be configured beside it");
        return Err(cx.src.problem(Some(cx.line), cx.name.clone(), reason));
    }
    match (mode_e, claims.some_guest()) {
        (Some(e), Some(other)) if mode == Mode::Passthru => {
            Err(cx.bad(e, format!("a passthru guest owns the uplink alone, but {other} is configured too")))
        }
        _ => Ok(()),
    }
}

fn mode(cx: &GuestCx<'_>, e: &Entry<'_>) -> Result<Mode, ConfigError> {
    let text = cx.string(e)?;
    match text.parse::<Mode>() {
        Ok(m) => Ok(m),
        Err(err) => Err(cx.bad(e, err.to_string())),
    }
}

/// A uid/gid given as a number, a string of digits, or an account name.
fn account_id(
    cx: &GuestCx<'_>,
    e: &Entry<'_>,
    by_name: impl Fn(&str) -> Result<u32, String>,
) -> Result<u32, ConfigError> {
    let range = || {
        format!(
            "must be a name or a numeric id between 0 and {}",
            u32::MAX - 1
        )
    };
    match &e.value.value {
        toml::Value::Integer(n) => u32::try_from(*n)
            .ok()
            .filter(|&id| id != u32::MAX)
            .ok_or_else(|| cx.bad(e, range())),
        toml::Value::String(s) if s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty() => {
            numeric_id(s).ok_or_else(|| cx.bad(e, range()))
        }
        toml::Value::String(s) => by_name(s).map_err(|reason| cx.bad(e, reason)),
        _ => Err(cx.bad(e, range())),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("may only contain A-Z a-z 0-9 _ . - (found {c:?})"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} characters long; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    Ok(())
}

fn check_socket(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    use std::os::unix::ffi::OsStrExt;
    if path.as_os_str().as_bytes().contains(&0) {
        return Err("contains a NUL byte, which no socket path can hold".into());
    }
    if path.file_name().is_none() {
        return Err("names a directory, not a socket".into());
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "is {len} bytes long; a unix socket path holds at most {MAX_SOCKET_PATH}"
        ));
    }
    Ok(())
}

/// What two socket paths must not share: the same file, however it is spelt
/// (`dir/vm1.sock` and `dir/../dir/vm1.sock`, or a symlinked directory). The socket itself
/// need not exist yet, so its directory is resolved where it exists, and the rest is
/// normalised by its components (`.` dropped, `..` taking one away).
pub fn socket_key(path: &Path) -> PathBuf {
    // The deepest ancestor that exists is resolved (symlinks such as /var/run -> /run
    // included); the components below it, which do not exist yet, are normalised.
    let mut base = path;
    let mut rest: Vec<&std::ffi::OsStr> = Vec::new();
    let resolved = loop {
        match std::fs::canonicalize(base) {
            Ok(p) => break p,
            Err(_) => match (base.parent(), base.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name);
                    base = parent;
                }
                // Ends in `..` (or is the root): normalise all of it instead.
                _ => {
                    rest.extend(base.components().rev().map(|c| c.as_os_str()));
                    break PathBuf::new();
                }
            },
        }
    };
    let mut out = resolved;
    for c in rest.iter().rev().flat_map(|n| Path::new(n).components()) {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Permission bits written as octal text, "0660" or "660". Quoted on purpose: a bare TOML
/// integer 660 is decimal and would silently mean 0o1224.
fn octal_mode(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("must be octal permission bits such as \"0660\"".into());
    }
    match u32::from_str_radix(text, 8) {
        Ok(bits) if bits <= 0o777 => Ok(bits),
        _ => Err("must be at most 0777 (no setuid, setgid or sticky bits)".into()),
    }
}
