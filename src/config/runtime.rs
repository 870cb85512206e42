//! Changes to the running switch: a guest added (`guest-add`), a guest's keys changed
//! (`guest-set`), and a re-read guests file compared with what runs (`reload`).
//!
//! There is one validator, the file's (`guest.rs`): an addition is a one-guest file, a
//! `guest-set` is the running guest written out as a table (as `dump` writes it) with the
//! requested keys replaced. What must stay unique across guests is checked by seeding the
//! file's `Claims` with the running guests, so a change is accepted exactly when the file
//! holding the running guests plus the change would be, and says why not in the same words.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use toml::Spanned;

use super::guest::{self, Claims, Source};
use super::ids::{self, IdLookup};
use super::raw::{line_of, RawTable};
use super::{dump, max_guests_why, read_tables, vhost_fds, vhost_fds_why, Config, ConfigError, GuestConfig, MAX_GUESTS, VHOST_FDS};

/// The keys that can change while the guest stays connected; a change to any other key
/// needs the guest's vhost-user device torn down and created again, so the VM reconnects.
///
/// Why these: `mac`, `mode`, `sources`, `mtu` and `vlan` live only in the switch's own
/// forwarding state (the MAC table, the policy table, the source table, the per-guest
/// frame-length limit, the (VLAN, MAC) keys and flood lists), which is rebuilt and swapped in
/// one publication without touching the vhost-user connection (so a guest moved between
/// VLANs is in the old one up to a pass and in the new one from the next, never in both or
/// neither); `lcore` only moves which worker
/// polls the guest's queues, as a rebalance does. The others are fixed when the device is
/// set up: `socket`, `vhost`, `owner`, `group` and `socket_mode` describe the socket itself
/// (created, chowned and chmodded once), `queues` is what the driver negotiated, and `name`
/// is the guest's identity (a renamed guest is another guest).
///
/// Note for `mtu`: the guest is not told; it must set its own interface MTU. For `lcore`:
/// whether it names a forwarding lcore is not known here (see `control::assign`).
pub const LIVE_KEYS: [&str; 6] = ["mac", "mode", "sources", "mtu", "lcore", "vlan"];

/// Validates `text`, one `[[guest]]` table in guests-file syntax, as a guest to add to the
/// `running` ones: the file's checks, plus no name, MAC or socket path of a running guest,
/// plus room for one more guest. `label` stands for the file name in messages (the server
/// passes `guest-add`); line numbers are lines of `text`, and the result's `line` too.
pub fn parse_addition(
    text: &str,
    label: &Path,
    running: &[GuestConfig],
) -> Result<GuestConfig, ConfigError> {
    parse_addition_with(text, label, running, &ids::EtcFiles::default())
}

pub(super) fn parse_addition_with(
    text: &str,
    label: &Path,
    running: &[GuestConfig],
    ids: &dyn IdLookup,
) -> Result<GuestConfig, ConfigError> {
    let src = Source {
        text,
        path: label,
        lines: true,
    };
    let tables = read_tables(&src)?;
    let table = only_table(&src, &tables)?;
    // Before the guest's own checks: when the switch is full, nothing else matters.
    if running.len() >= MAX_GUESTS {
        return Err(src.problem(
            Some(line_of(text, table.span().start)),
            guest::raw_name(table),
            format!(
                "{} guests are already running: {}",
                running.len(),
                max_guests_why()
            ),
        ));
    }
    let added = guest::validate(&src, table, &mut Claims::running(running), ids)?;
    let need = running.iter().map(vhost_fds).sum::<usize>() + vhost_fds(&added);
    if need > VHOST_FDS {
        return Err(src.problem(Some(line_of(text, table.span().start)), Some(added.name.clone()), vhost_fds_why(running.len() + 1, need)));
    }
    Ok(added)
}

/// `current` with the keys of `set` replaced, validated as the file would validate it, and
/// against `others` (every running guest except `current`) for duplicate names, MACs and
/// socket paths. Any key of the file may be given, and an unknown key gets the file's
/// unknown-key error. Messages name `label` (the server passes `guest-set`), the guest, the
/// key and the value, but no line: the table validated is generated, not written by anyone.
///
/// Which changed keys the running guest can take without reconnecting is the caller's
/// decision: compare the result with [`GuestConfig::changed_keys`] and [`LIVE_KEYS`]. The
/// result keeps `current.line`.
pub fn apply_settings(
    current: &GuestConfig,
    set: &[(String, toml::Value)],
    others: &[GuestConfig],
    label: &Path,
) -> Result<GuestConfig, ConfigError> {
    let changes: Vec<(String, Option<toml::Value>)> = set
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    apply_changes(current, &changes, others, label)
}

/// [`apply_settings`] where a key may also be unset (`None`): the key is removed from the
/// table, so the file's default applies (e.g. `lcore` unset: the guest is no longer pinned, as
/// `"lcore": null` asks in a `guest-set` request; `owner` back to "leave as created"). Unsetting `name`,
/// `mac` or `socket` gets the file's missing-key error. A JSON request's values convert with
/// `serde_json::from_value::<Option<toml::Value>>` (null is `None`).
pub fn apply_changes(
    current: &GuestConfig,
    changes: &[(String, Option<toml::Value>)],
    others: &[GuestConfig],
    label: &Path,
) -> Result<GuestConfig, ConfigError> {
    apply_changes_with(current, changes, others, label, &ids::EtcFiles::default())
}

pub(super) fn apply_changes_with(
    current: &GuestConfig,
    changes: &[(String, Option<toml::Value>)],
    others: &[GuestConfig],
    label: &Path,
    ids: &dyn IdLookup,
) -> Result<GuestConfig, ConfigError> {
    let mut entries = dump::settings(current);
    // Leaving mode source drops the list with it (the key belongs to that mode only), unless
    // the request says something about `sources` itself.
    let leaves_source = changes.iter().any(|(k, v)| k == "mode" && v.as_ref().and_then(toml::Value::as_str) != Some("source"));
    if leaves_source && !changes.iter().any(|(k, _)| k == "sources") {
        entries.retain(|(k, _)| k != "sources");
    }
    for (key, value) in changes {
        let at = entries.iter().position(|(k, _)| k == key);
        match (at, value) {
            (Some(i), Some(v)) => entries[i].1 = v.clone(),
            (None, Some(v)) => entries.push((key.clone(), v.clone())),
            (Some(i), None) => {
                entries.remove(i);
            }
            (None, None) => {}
        }
    }
    let text = dump::table_text(&entries);
    let src = Source {
        text: &text,
        path: label,
        lines: false,
    };
    let tables = read_tables(&src)?;
    let table = only_table(&src, &tables)?;
    let mut changed = guest::validate(&src, table, &mut Claims::running(others), ids)?;
    changed.line = current.line;
    Ok(changed)
}

/// The single `[[guest]]` table a control request must hold.
fn only_table<'t>(
    src: &Source<'_>,
    tables: &'t [Spanned<RawTable>],
) -> Result<&'t Spanned<RawTable>, ConfigError> {
    match tables {
        [one] => Ok(one),
        [] => Err(src.problem(
            None,
            None,
            "no [[guest]] table; exactly one is expected".into(),
        )),
        [_, second, ..] => Err(src.problem(
            Some(line_of(src.text, second.span().start)),
            guest::raw_name(second),
            "a second [[guest]] table; exactly one is expected".into(),
        )),
    }
}

impl GuestConfig {
    /// The keys (as the guests file spells them, in its order) whose values differ between
    /// `self` and `other`; `line` is not a setting and is ignored. MAC order counts: the
    /// first MAC is the primary.
    pub fn changed_keys(&self, other: &GuestConfig) -> Vec<&'static str> {
        [
            ("name", self.name != other.name),
            ("mac", self.macs != other.macs),
            ("socket", self.socket != other.socket),
            ("queues", self.queues != other.queues),
            ("mode", self.mode != other.mode),
            ("sources", self.sources != other.sources),
            ("mtu", self.mtu != other.mtu),
            ("vhost", self.vhost != other.vhost),
            ("owner", self.owner != other.owner),
            ("group", self.group != other.group),
            ("socket_mode", self.socket_mode != other.socket_mode),
            ("lcore", self.lcore != other.lcore),
            ("vlan", self.vlan != other.vlan),
        ]
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
    }
}

/// What `reload` must do to turn the running guests into a new guests file. Guests are
/// matched by name (a renamed guest is removed and added).
///
/// Applying it: the new `Config` was validated as a whole, so it is consistent in itself,
/// but not with the running guests halfway through: a MAC or socket path may move from one
/// guest to another (a removed guest's socket taken by an added one, two guests swapping
/// MACs, names swapped so both are recreated). The applier must therefore remove before it
/// adds: first `removed` and the old side of `recreated`, then `changed` (all MAC changes in
/// one MAC-table update, not guest by guest), then the new side of `recreated` and `added`.
/// Indices are into `new.guests`, whose order is the file's, not the running order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Guests only in the new file: their index in `new.guests`.
    pub added: Vec<usize>,
    /// Running guests not in the new file, by name, in running order.
    pub removed: Vec<String>,
    /// Guests whose changed keys are all in [`LIVE_KEYS`]: name, index in `new.guests`.
    pub changed: Vec<(String, usize)>,
    /// Guests with a changed key outside [`LIVE_KEYS`], to be removed and added again (the
    /// VM reconnects): name, index in `new.guests`.
    pub recreated: Vec<(String, usize)>,
}

impl ConfigDiff {
    /// Nothing to do: the new file describes exactly the running guests (perhaps in another
    /// order, or with other line numbers).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.recreated.is_empty()
    }
}

/// Compares the `running` guests with a validated `new` guests file; see [`ConfigDiff`].
/// `added`, `changed` and `recreated` are in the new file's order.
pub fn diff(running: &[GuestConfig], new: &Config) -> ConfigDiff {
    let old_by_name: HashMap<&str, &GuestConfig> =
        running.iter().map(|g| (g.name.as_str(), g)).collect();
    let new_names: HashSet<&str> = new.guests.iter().map(|g| g.name.as_str()).collect();
    let mut out = ConfigDiff {
        removed: running
            .iter()
            .filter(|g| !new_names.contains(g.name.as_str()))
            .map(|g| g.name.clone())
            .collect(),
        ..ConfigDiff::default()
    };
    for (i, g) in new.guests.iter().enumerate() {
        let Some(old) = old_by_name.get(g.name.as_str()) else {
            out.added.push(i);
            continue;
        };
        let keys = old.changed_keys(g);
        if keys.is_empty() {
            continue;
        }
        if keys.iter().all(|k| LIVE_KEYS.contains(k)) {
            out.changed.push((g.name.clone(), i));
        } else {
            out.recreated.push((g.name.clone(), i));
        }
    }
    out
}
