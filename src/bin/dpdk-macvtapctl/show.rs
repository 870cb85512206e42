//! Human-readable rendering of results (the default; `--json` bypasses this module).
//!
//! Role: turn each method's result into aligned tables or `key: value` lines. The server is
//! written independently, so every renderer is defensive: a missing field shows as `-`, a
//! field it does not know is still printed (as JSON when it is not a plain value), and a
//! result of an unexpected shape is printed as pretty JSON rather than guessed at.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Drop reasons in the protocol's order; reasons the server adds later follow these.
const DROP_REASONS: [&str; 21] = [
    "runt",
    "oversize",
    "unknown_dest",
    "spoofed_source",
    "guest_queue_full",
    "guest_down",
    "uplink_full",
    "policy_denied",
    "peer_ring_full",
    "link_local",
    "slot_not_owned",
    "no_peer_ring",
    "untaggable",
    "no_destination",
    "pool_duplicate",
    "stopped",
    "vlan_unknown",
    "vlan_tagged",
    "no_buffer",
    "hairpin_probe",
    "uplink_down",
];

/// Counter keys in display order (drops are summarised separately).
const COUNTERS: [&str; 4] = ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"];

/// Pretty JSON, for `--json`, `call` and results of an unexpected shape.
pub fn json(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// The human rendering of `result`, the answer to `method`.
pub fn human(method: &str, result: &Value) -> String {
    let rendered = match method {
        "version" => result.as_object().map(version),
        "guest-list" => guest_list(result),
        "guest-show" => result.as_object().map(guest_show),
        "guest-add" => result.as_object().and_then(guest_added),
        "guest-del" => result.as_object().and_then(guest_removed),
        "guest-set" => result.as_object().and_then(guest_changed),
        "stats" => result.as_object().and_then(stats),
        "lcore-show" => lcore_show(result),
        "uplink-show" => result.as_object().and_then(uplink_show),
        "rebalance" => result.as_object().and_then(rebalance),
        "reload" => result.as_object().map(reload),
        "announce" => result.as_object().and_then(announced),
        "hairpin-check" | "hairpin-status" => result.as_object().and_then(hairpin),
        // The guests file exactly as the switch wrote it, so it can be redirected to a file.
        "config-dump" => result
            .get("toml")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    rendered.unwrap_or_else(|| json(result))
}

// ---------------------------------------------------------------------------------------
// Building blocks

/// A value as a table cell or after `key:`: strings unquoted, null as `-`, lists of plain
/// values comma-separated, anything else as compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(items) if items.iter().all(is_plain) => {
            items.iter().map(text).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

fn is_plain(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn field(obj: &Map<String, Value>, key: &str) -> String {
    obj.get(key).map_or_else(|| "-".into(), text)
}

/// Columns padded to their widest cell; numbers right-aligned. The last column is not
/// padded, so no line ends in spaces.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let header: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        let all: Vec<&Vec<String>> = std::iter::once(&header).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|c| {
                all.iter()
                    .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in all {
            let mut line = String::new();
            for (c, width) in widths.iter().enumerate() {
                let cell = row.get(c).map_or("", String::as_str);
                if c > 0 {
                    line.push_str("  ");
                }
                if self.right.get(c).copied().unwrap_or(false) {
                    let _ = write!(line, "{cell:>width$}");
                } else {
                    let _ = write!(line, "{cell:<width$}");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned.
#[derive(Default)]
struct Lines(Vec<(String, String)>);

impl Lines {
    fn push(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.push((key.into(), value.into()));
    }

    /// Every key of `obj` not in `known`, so fields the client does not know yet still show.
    fn extras(&mut self, obj: &Map<String, Value>, known: &[&str]) {
        for (k, v) in obj {
            if !known.contains(&k.as_str()) {
                self.push(k.clone(), text(v));
            }
        }
    }

    fn render(&self) -> String {
        let width = self
            .0
            .iter()
            .map(|(k, _)| k.chars().count() + 1)
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in &self.0 {
            let key = format!("{k}:");
            let _ = writeln!(out, "{key:<width$} {v}");
        }
        out
    }
}

/// Sum of the drop counts, or `None` if `drops` is not an object of counts.
fn drops_total(drops: &Value) -> Option<u64> {
    drops
        .as_object()?
        .values()
        .try_fold(0u64, |sum, v| v.as_u64().map(|n| sum.saturating_add(n)))
}

/// Non-zero reasons as `runt 3, oversize 2`, protocol order first.
fn nonzero_reasons(drops: &Value) -> String {
    let Some(obj) = drops.as_object() else {
        return String::new();
    };
    let known = DROP_REASONS.iter().filter_map(|r| obj.get_key_value(*r));
    let others = obj
        .iter()
        .filter(|(k, _)| !DROP_REASONS.contains(&k.as_str()));
    known
        .chain(others)
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(k, v)| format!("{k} {}", text(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `5 (runt 3, oversize 2)`, `0`, or the raw value if it is not a map of counts.
fn drops_summary(drops: &Value) -> String {
    match drops_total(drops) {
        Some(0) => "0".into(),
        Some(total) => format!("{total} ({})", nonzero_reasons(drops)),
        None => text(drops),
    }
}

/// A port's counters: nested under `counters` (guest-show, stats NAME) or flattened into the
/// port's object (the `--stats-json` document the switch already writes).
fn counters_of(port: &Map<String, Value>) -> &Map<String, Value> {
    port.get("counters")
        .and_then(Value::as_object)
        .unwrap_or(port)
}

/// `link: "up"`, or the stats document's `link_up: true`.
fn link_of(port: &Map<String, Value>) -> String {
    match (port.get("link"), port.get("link_up")) {
        (Some(link), _) => text(link),
        (None, Some(Value::Bool(up))) => if *up { "up" } else { "down" }.into(),
        (None, Some(other)) => text(other),
        (None, None) => "-".into(),
    }
}

fn counter_lines(lines: &mut Lines, counters: &Map<String, Value>) {
    for key in COUNTERS {
        lines.push(key, field(counters, key));
    }
    lines.push(
        "drops",
        counters
            .get("drops")
            .map_or_else(|| "-".into(), drops_summary),
    );
    // What `drops` adds up, per direction (rx: frames from the port, tx: to it), and where
    // the frames went: shown when the server sends them.
    for key in ["forwarded", "local", "copies"] {
        if counters.contains_key(key) {
            lines.push(key, field(counters, key));
        }
    }
    for key in ["rx_drops", "tx_drops"] {
        if let Some(d) = counters.get(key) {
            lines.push(key, drops_summary(d));
        }
    }
    lines.push("stalls", field(counters, "stalls"));
    let mut known = COUNTERS.to_vec();
    known.extend(["forwarded", "local", "copies", "rx_drops", "tx_drops", "drops", "stalls"]);
    lines.extras(counters, &known);
}

// ---------------------------------------------------------------------------------------
// One renderer per method

fn version(obj: &Map<String, Value>) -> String {
    let version = field(obj, "version");
    let mut out = format!("dpdk-macvtap {version}\n");
    let mut lines = Lines::default();
    // The version string normally names DPDK already; say it again only if it does not.
    if let Some(dpdk) = obj.get("dpdk").map(text) {
        if !version.contains(&dpdk) {
            lines.push("dpdk", dpdk);
        }
    }
    lines.extras(obj, &["version", "dpdk"]);
    out.push_str(&lines.render());
    out
}

fn guest_list(result: &Value) -> Option<String> {
    let guests = result.as_array()?;
    let mut table = Table::new(&[
        ("NAME", false),
        ("MACS", false),
        ("MODE", false),
        ("MTU", true),
        ("QUEUES", true),
        ("LINK", false),
        ("SOCKET", false),
    ]);
    for g in guests {
        let g = g.as_object()?;
        // MACs joined without spaces so the column stays one word per guest.
        let macs = match g.get("macs") {
            Some(Value::Array(m)) if m.iter().all(is_plain) => {
                m.iter().map(text).collect::<Vec<_>>().join(",")
            }
            Some(other) => text(other),
            None => "-".into(),
        };
        table.rows.push(vec![
            field(g, "name"),
            macs,
            field(g, "mode"),
            field(g, "mtu"),
            field(g, "queues"),
            field(g, "link"),
            field(g, "socket"),
        ]);
    }
    Some(table.render())
}

/// `guest-show`'s plain fields, in the order they are printed.
const GUEST_FIELDS: [&str; 8] = ["name", "macs", "socket", "vhost", "mode", "mtu", "queues", "active_queues"];
/// Fields `guest-show` prints in a way of its own.
const GUEST_SPECIAL: [&str; 6] = ["vlan", "lcore", "link", "steering", "queue_lcores", "counters"];

fn guest_show(obj: &Map<String, Value>) -> String {
    let mut lines = Lines::default();
    for key in GUEST_FIELDS {
        if let Some(v) = obj.get(key) {
            lines.push(key, text(v));
        }
    }
    if let Some(v) = obj.get("vlan") {
        // null: the guest's frames are untagged on the uplink.
        lines.push("vlan", if v.is_null() { "none".into() } else { text(v) });
    }
    if let Some(v) = obj.get("lcore") {
        // null: the guest is not pinned, its queues go wherever the assignment puts them.
        lines.push("lcore", if v.is_null() { "none".into() } else { text(v) });
    }
    for key in ["link", "steering"] {
        if let Some(v) = obj.get(key) {
            lines.push(key, text(v));
        }
    }
    if let Some(v) = obj.get("queue_lcores") {
        lines.push("queue_lcores", queue_lcores(v));
    }
    match obj.get("counters") {
        Some(Value::Object(c)) => counter_lines(&mut lines, c),
        Some(other) => lines.push("counters", text(other)),
        None => {}
    }
    let known: Vec<&str> = GUEST_FIELDS.iter().chain(&GUEST_SPECIAL).copied().collect();
    lines.extras(obj, &known);
    lines.render()
}

/// `q0 lcore 1, q1 lcore 2`; raw text if the list is not of `{queue, lcore}` objects.
fn queue_lcores(v: &Value) -> String {
    let pairs: Option<Vec<String>> = v.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| {
                let o = item.as_object()?;
                Some(format!(
                    "q{} lcore {}",
                    text(o.get("queue")?),
                    text(o.get("lcore")?)
                ))
            })
            .collect()
    });
    match pairs {
        Some(p) if p.is_empty() => "none".into(),
        Some(p) => p.join(", "),
        None => text(v),
    }
}

fn guest_added(obj: &Map<String, Value>) -> Option<String> {
    let name = obj.get("added")?;
    let mut out = format!("added guest {}\n", text(name));
    let mut lines = Lines::default();
    lines.extras(obj, &["added"]);
    out.push_str(&lines.render());
    Some(out)
}

fn guest_removed(obj: &Map<String, Value>) -> Option<String> {
    let name = obj.get("removed")?;
    let mut out = format!("removed guest {}; final counters:\n", text(name));
    let mut lines = Lines::default();
    match obj.get("counters") {
        Some(Value::Object(c)) => counter_lines(&mut lines, c),
        Some(other) => lines.push("counters", text(other)),
        None => {}
    }
    lines.extras(obj, &["removed", "counters"]);
    out.push_str(&lines.render());
    Some(out)
}

fn guest_changed(obj: &Map<String, Value>) -> Option<String> {
    let name = obj.get("changed")?;
    let keys = match obj.get("keys") {
        Some(Value::Array(k)) if k.is_empty() => "nothing".into(),
        Some(k) => text(k),
        None => "-".into(),
    };
    let mut out = format!("changed guest {}: {keys}\n", text(name));
    let mut lines = Lines::default();
    lines.extras(obj, &["changed", "keys"]);
    out.push_str(&lines.render());
    Some(out)
}

/// Whole document (has `guests`) or one guest (has `counters`).
fn stats(obj: &Map<String, Value>) -> Option<String> {
    let mut table = Table::new(&[
        ("GUEST", false),
        ("LINK", false),
        ("RX_PACKETS", true),
        ("RX_BYTES", true),
        ("TX_PACKETS", true),
        ("TX_BYTES", true),
        ("DROPS", true),
        ("STALLS", true),
    ]);
    let row = |name: String, c: &Map<String, Value>, link: String| {
        let mut cells = vec![name, link];
        cells.extend(COUNTERS.iter().map(|k| field(c, k)));
        cells.push(drops_cell(c));
        cells.push(field(c, "stalls"));
        cells
    };
    // (port, non-zero drop reasons), listed under the table.
    let mut reasons: Vec<(String, String)> = Vec::new();
    let mut note_reasons = |port: &str, c: &Map<String, Value>| {
        let nonzero = c.get("drops").map(nonzero_reasons).unwrap_or_default();
        if !nonzero.is_empty() {
            reasons.push((port.to_owned(), nonzero));
        }
    };

    let mut after = Lines::default();
    if let Some(guests) = obj.get("guests") {
        for g in guests.as_array()? {
            let g = g.as_object()?;
            let name = field(g, "name");
            note_reasons(&name, counters_of(g));
            table.rows.push(row(name, counters_of(g), link_of(g)));
        }
        if let Some(up) = obj.get("uplink") {
            let c = counters_of(up.as_object()?);
            note_reasons("uplink", c);
            // Its own line, not a table row, so it cannot be mistaken for a guest named
            // "uplink" (a valid guest name).
            after.push(
                "uplink",
                format!(
                    "rx {} packets {} bytes, tx {} packets {} bytes, drops {}, stalls {}",
                    field(c, "rx_packets"),
                    field(c, "rx_bytes"),
                    field(c, "tx_packets"),
                    field(c, "tx_bytes"),
                    drops_cell(c),
                    field(c, "stalls"),
                ),
            );
        }
        if let Some(workers) = obj.get("workers") {
            match workers.as_array() {
                Some(ws) => {
                    for (i, w) in ws.iter().enumerate() {
                        after.push(format!("worker {i}"), worker(w));
                    }
                }
                None => after.push("workers", text(workers)),
            }
        }
        if let Some(Value::Object(o)) = obj.get("originated") {
            after.push("originated", originated(o));
        }
        if let Some(m) = obj.get("hairpin").and_then(|h| h.get("message")).and_then(Value::as_str) {
            after.push("hairpin", m);
        }
        if let Some(l) = obj.get("uplink_link").and_then(Value::as_object) {
            after.push("uplink link", link_text(l));
        }
        after.extras(obj, &["guests", "uplink", "workers", "originated", "hairpin", "uplink_link"]);
    } else if obj.contains_key("counters") {
        let name = field(obj, "name");
        note_reasons(&name, counters_of(obj));
        table.rows.push(row(name, counters_of(obj), link_of(obj)));
        after.extras(obj, &["name", "link", "link_up", "counters"]);
    } else {
        return None;
    }

    let mut out = table.render();
    for (port, list) in reasons {
        after.push(format!("drops {port}"), list);
    }
    out.push_str(&after.render());
    Some(out)
}

/// Frames the switch sent itself: `tx 6 packets 360 bytes (4 announces, 2 probes queued), dropped 0`.
fn originated(o: &Map<String, Value>) -> String {
    let dropped: u64 = ["dropped_ring_full", "dropped_no_buffer", "dropped_at_stop"].iter().filter_map(|k| o.get(*k).and_then(Value::as_u64)).sum();
    format!(
        "tx {} packets {} bytes ({} announces, {} probes queued), dropped {dropped}",
        field(o, "tx_packets"),
        field(o, "tx_bytes"),
        field(o, "announces"),
        field(o, "probes"),
    )
}

/// The uplink's link: `up (10000 Mb/s, full duplex) since TIME, 2 changes`.
fn link_text(l: &Map<String, Value>) -> String {
    let state = field(l, "state");
    let detail = if state == "up" {
        let speed = l.get("speed_mbps").and_then(Value::as_u64).map_or_else(|| "speed unknown".to_owned(), |m| format!("{m} Mb/s"));
        format!(" ({speed}, {} duplex)", field(l, "duplex"))
    } else {
        String::new()
    };
    format!("{state}{detail} since {}, {} changes", field(l, "since"), field(l, "changes"))
}

/// `uplink-show`: the port, then its link and how the switch follows it.
fn uplink_show(obj: &Map<String, Value>) -> Option<String> {
    let link = obj.get("link")?.as_object()?;
    let mut lines = Lines::default();
    lines.push(
        "uplink",
        format!("port {} {} (driver {}), mac {}, mtu {}", field(obj, "port"), field(obj, "name"), field(obj, "driver"), field(obj, "mac"), field(obj, "mtu")),
    );
    lines.push("link", link_text(link));
    let carrier = match link.get("kernel_interface") {
        Some(Value::String(k)) => format!(" and the carrier of kernel interface {k}"),
        _ => String::new(),
    };
    lines.push("followed by", format!("{}{carrier}", field(link, "detection")));
    let errors = field(link, "errors");
    match link.get("last_error") {
        Some(Value::String(e)) => lines.push("link errors", format!("{errors} (last: {e})")),
        _ => lines.push("link errors", errors),
    }
    lines.extras(obj, &["port", "name", "driver", "mac", "mtu", "link"]);
    Some(lines.render())
}

/// Total drops of a port, or the raw value if `drops` is not a map of counts.
fn drops_cell(c: &Map<String, Value>) -> String {
    c.get("drops").map_or_else(
        || "-".into(),
        |d| drops_total(d).map_or_else(|| text(d), |t| t.to_string()),
    )
}

/// `busy 10.0%, asleep 85.0%, 18 frames` from a worker's cycle counters.
fn worker(w: &Value) -> String {
    let Some(o) = w.as_object() else {
        return text(w);
    };
    let busy = o.get("busy_cycles").and_then(Value::as_u64);
    let idle = o.get("idle_cycles").and_then(Value::as_u64);
    // A switch without the sleep counter: its workers never sleep, and nothing is shown.
    let sleep = o.get("sleep_cycles").and_then(Value::as_u64);
    let share = match (busy, idle) {
        (Some(b), Some(i)) if b.saturating_add(i).saturating_add(sleep.unwrap_or(0)) > 0 => {
            let total = b.saturating_add(i).saturating_add(sleep.unwrap_or(0)) as f64;
            let mut s = format!("{:.1}%", b as f64 * 100.0 / total);
            if let Some(z) = sleep {
                let _ = write!(s, ", asleep {:.1}%", z as f64 * 100.0 / total);
            }
            s
        }
        _ => "-".into(),
    };
    let mut s = format!("busy {share}");
    if let Some(f) = o.get("frames") {
        let _ = write!(s, ", {} frames", text(f));
    }
    s
}

/// Like `ovs-appctl dpif-netdev/pmd-rxq-show`: one block per forwarding lcore.
fn lcore_show(result: &Value) -> Option<String> {
    let mut out = String::new();
    for l in result.as_array()? {
        let l = l.as_object()?;
        // `{:.0}` rounds half to even: 12.5 shows as 12%, as in the protocol's example.
        let busy = match l.get("busy_percent").and_then(Value::as_f64) {
            Some(p) => format!("{p:.0}%"),
            None => "-".into(),
        };
        let blocked = match l.get("blocked_percent").and_then(Value::as_f64) {
            Some(b) if b > 0.0 => format!(" (blocked {b:.0}%)"),
            _ => String::new(),
        };
        let asleep = match l.get("sleep_percent").and_then(Value::as_f64) {
            Some(p) => format!(", asleep {p:.0}%{blocked}"),
            None => String::new(),
        };
        let _ = writeln!(out, "lcore {}: busy {busy}{asleep}", field(l, "lcore"));
        let rx = l.get("uplink_rx").filter(|v| !v.is_null());
        let tx = l.get("uplink_tx").filter(|v| !v.is_null());
        let rx_empty = rx.map_or(true, |v| v.as_array().is_some_and(Vec::is_empty));
        if !rx_empty || tx.is_some() {
            let rx = match rx {
                Some(Value::Array(q)) => format!("[{}]", text(&Value::Array(q.clone()))),
                Some(other) => text(other),
                None => "[]".into(),
            };
            let tx = match tx {
                Some(Value::Number(n)) => format!("q{n}"),
                Some(other) => text(other),
                None => "-".into(),
            };
            let _ = writeln!(out, "  uplink rx {rx}, tx {tx}");
        }
        match l.get("guest_queues") {
            Some(Value::Array(qs)) => {
                for q in qs {
                    match q.as_object() {
                        Some(q) => {
                            let _ = writeln!(
                                out,
                                "  guest {} queue {}",
                                field(q, "guest"),
                                field(q, "queue")
                            );
                        }
                        None => {
                            let _ = writeln!(out, "  {}", text(q));
                        }
                    }
                }
            }
            Some(other) => {
                let _ = writeln!(out, "  guest_queues: {}", text(other));
            }
            None => {}
        }
        for (k, v) in l {
            if ![
                "lcore",
                "busy_percent",
                "sleep_percent",
                "blocked_percent",
                "uplink_rx",
                "uplink_tx",
                "guest_queues",
            ]
            .contains(&k.as_str())
            {
                let _ = writeln!(out, "  {k}: {}", text(v));
            }
        }
    }
    Some(out)
}

/// `announcing 3 MACs of 2 guests: 5 rounds, 3 frames queued now`
fn announced(obj: &Map<String, Value>) -> Option<String> {
    let n = |k: &str| obj.get(k).and_then(Value::as_u64);
    Some(format!(
        "announcing {} MACs of {} guests: {} rounds, {} frames queued now\n",
        n("macs")?,
        n("guests")?,
        n("rounds")?,
        n("queued")?
    ))
}

/// `hairpin: external switch reflects (hairpin on)`, and the probe MACs.
fn hairpin(obj: &Map<String, Value>) -> Option<String> {
    let message = obj.get("message")?.as_str()?;
    let mut out = match obj.get("checking") {
        Some(Value::Bool(true)) => format!("hairpin: {message} (a check is still under way)\n"),
        _ => format!("hairpin: {message}\n"),
    };
    let mut lines = Lines::default();
    if let Some(Value::Array(macs)) = obj.get("probe_macs") {
        lines.push("probe macs", macs.iter().map(text).collect::<Vec<_>>().join(" "));
    }
    lines.extras(obj, &["state", "message", "checking", "probe_macs"]);
    out.push_str(&lines.render());
    Some(out)
}

fn rebalance(obj: &Map<String, Value>) -> Option<String> {
    let mut out = match (obj.get("message"), obj.get("moved")) {
        (Some(Value::String(m)), _) => format!("{m}\n"),
        (_, Some(Value::Bool(true))) => "queues moved\n".into(),
        (_, Some(Value::Bool(false))) => "nothing moved\n".into(),
        _ => return None,
    };
    let mut lines = Lines::default();
    lines.extras(obj, &["message", "moved"]);
    out.push_str(&lines.render());
    Some(out)
}

/// What a reload did; `failed` goes to stderr (see main), timings after the changes.
fn reload(obj: &Map<String, Value>) -> String {
    const LISTS: [&str; 5] = ["added", "removed", "changed", "recreated", "failed"];
    const TIMES: [&str; 2] = ["took_us", "workers_paused_us"];
    let mut lines = Lines::default();
    for key in LISTS {
        match obj.get(key) {
            Some(Value::Array(names)) if names.is_empty() => {}
            Some(v) if key != "failed" => lines.push(key, text(v)),
            _ => {}
        }
    }
    let changed = !lines.0.is_empty();
    let known: Vec<&str> = LISTS.iter().chain(&TIMES).copied().collect();
    lines.extras(obj, &known);
    if !changed {
        return "no changes\n".into();
    }
    for key in TIMES {
        if let Some(v) = obj.get(key) {
            lines.push(key, text(v));
        }
    }
    lines.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn counters() -> Value {
        json!({
            "rx_packets": 10, "rx_bytes": 640, "tx_packets": 8, "tx_bytes": 512,
            "drops": {"runt": 3, "oversize": 0, "guest_down": 2, "new_reason": 1},
            "stalls": 0
        })
    }

    #[test]
    fn guest_list_is_an_aligned_table() {
        let result = json!([
            {"name": "vm1", "macs": ["52:54:00:00:00:01"], "socket": "/run/dpdk-macvtap/vm1.sock",
             "vhost": "server", "mode": "vepa", "mtu": 1500, "queues": 1, "link": "up"},
            {"name": "web-frontend", "macs": ["52:54:00:00:00:02", "52:54:00:00:00:12"],
             "socket": "/run/vm2.sock", "vhost": "client", "mode": "private", "mtu": 9000,
             "queues": 4, "link": "down"}
        ]);
        assert_eq!(
            human("guest-list", &result),
            "\
NAME          MACS                                 MODE      MTU  QUEUES  LINK  SOCKET
vm1           52:54:00:00:00:01                    vepa     1500       1  up    /run/dpdk-macvtap/vm1.sock
web-frontend  52:54:00:00:00:02,52:54:00:00:00:12  private  9000       4  down  /run/vm2.sock
"
        );
        assert_eq!(
            human("guest-list", &json!([])),
            "NAME  MACS  MODE  MTU  QUEUES  LINK  SOCKET\n"
        );
    }

    #[test]
    fn guest_show_splits_drops_by_direction_when_the_server_does() {
        let mut c = counters();
        c["forwarded"] = json!(7);
        c["local"] = json!(1);
        c["copies"] = json!(2);
        c["rx_drops"] = json!({"runt": 3, "new_reason": 1});
        c["tx_drops"] = json!({"guest_down": 2, "oversize": 0});
        let out = human("guest-show", &json!({"name": "vm1", "counters": c}));
        let tail: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("drops:")).collect();
        assert_eq!(
            tail,
            [
                "drops:      6 (runt 3, guest_down 2, new_reason 1)",
                "forwarded:  7",
                "local:      1",
                "copies:     2",
                "rx_drops:   4 (runt 3, new_reason 1)",
                "tx_drops:   2 (guest_down 2)",
                "stalls:     0"
            ]
        );
    }

    #[test]
    fn guest_show_is_key_value_lines_with_nonzero_drops() {
        let result = json!({
            "name": "vm1", "macs": ["52:54:00:00:00:01", "52:54:00:00:00:11"],
            "socket": "/run/dpdk-macvtap/vm1.sock", "vhost": "server", "mode": "vepa",
            "mtu": 1500, "queues": 2, "lcore": null, "link": "up", "active_queues": 2, "vlan": 10,
            "queue_lcores": [{"queue": 0, "lcore": 1}, {"queue": 1, "lcore": 2}],
            "steering": "vmdq pool 1",
            "counters": counters(),
            "future_field": {"a": 1}
        });
        assert_eq!(
            human("guest-show", &result),
            "\
name:          vm1
macs:          52:54:00:00:00:01, 52:54:00:00:00:11
socket:        /run/dpdk-macvtap/vm1.sock
vhost:         server
mode:          vepa
mtu:           1500
queues:        2
active_queues: 2
vlan:          10
lcore:         none
link:          up
steering:      vmdq pool 1
queue_lcores:  q0 lcore 1, q1 lcore 2
rx_packets:    10
rx_bytes:      640
tx_packets:    8
tx_bytes:      512
drops:         6 (runt 3, guest_down 2, new_reason 1)
stalls:        0
future_field:  {\"a\":1}
"
        );
    }

    #[test]
    fn stats_document_and_single_guest() {
        // The document as --stats-json writes it: counters flattened, link_up a bool.
        let mut vm1 = counters();
        vm1["name"] = json!("vm1");
        vm1["link_up"] = json!(true);
        let doc = json!({
            "uplink": {"rx_packets": 100, "rx_bytes": 6400, "tx_packets": 90, "tx_bytes": 5760,
                       "drops": {"unknown_dest": 4}, "stalls": 1},
            "guests": [vm1, {"name": "vm2", "link": "down", "counters": {
                "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0,
                "drops": {"runt": 0}, "stalls": 0}}],
            "workers": [{"busy_cycles": 100, "idle_cycles": 900, "frames": 18}],
            "originated": {"announces": 4, "probes": 2, "tx_packets": 6, "tx_bytes": 360,
                           "dropped_ring_full": 1, "dropped_no_buffer": 0, "dropped_at_stop": 0},
            "hairpin": {"state": "reflects", "message": "external switch reflects (hairpin on)"}
        });
        assert_eq!(
            human("stats", &doc),
            "\
GUEST  LINK  RX_PACKETS  RX_BYTES  TX_PACKETS  TX_BYTES  DROPS  STALLS
vm1    up            10       640           8       512      6       0
vm2    down           0         0           0         0      0       0
uplink:       rx 100 packets 6400 bytes, tx 90 packets 5760 bytes, drops 4, stalls 1
worker 0:     busy 10.0%, 18 frames
originated:   tx 6 packets 360 bytes (4 announces, 2 probes queued), dropped 1
hairpin:      external switch reflects (hairpin on)
drops vm1:    runt 3, guest_down 2, new_reason 1
drops uplink: unknown_dest 4
"
        );
        let one = json!({"name": "vm1", "link": "up", "counters": counters()});
        assert_eq!(
            human("stats", &one),
            "\
GUEST  LINK  RX_PACKETS  RX_BYTES  TX_PACKETS  TX_BYTES  DROPS  STALLS
vm1    up            10       640           8       512      6       0
drops vm1: runt 3, guest_down 2, new_reason 1
"
        );
    }

    #[test]
    fn announce_and_hairpin() {
        assert_eq!(
            human("announce", &json!({"guests": 2, "macs": 3, "rounds": 5, "queued": 3})),
            "announcing 3 MACs of 2 guests: 5 rounds, 3 frames queued now\n"
        );
        assert_eq!(
            human(
                "hairpin-status",
                &json!({"state": "reflects", "message": "external switch reflects (hairpin on)", "checking": false,
                        "probe_macs": ["0a:00:00:00:00:10", "0a:00:00:00:00:11"]})
            ),
            "hairpin: external switch reflects (hairpin on)\nprobe macs: 0a:00:00:00:00:10 0a:00:00:00:00:11\n"
        );
        assert_eq!(
            human("hairpin-check", &json!({"state": "unknown", "message": "unknown", "checking": true, "probe_macs": null})),
            "hairpin: unknown (a check is still under way)\n"
        );
    }

    #[test]
    fn lcore_show_like_pmd_rxq_show() {
        let result = json!([
            {"lcore": 1, "busy_percent": 12.5, "uplink_rx": [0], "uplink_tx": 0,
             "guest_queues": [{"guest": "vm1", "queue": 0}, {"guest": "vm2", "queue": 1}]},
            {"lcore": 2, "busy_percent": null, "uplink_rx": [], "uplink_tx": null,
             "guest_queues": []},
            {"lcore": 3, "busy_percent": 0.2, "sleep_percent": 99.7, "blocked_percent": 97.1,
             "uplink_rx": [], "uplink_tx": 1, "guest_queues": []}
        ]);
        assert_eq!(
            human("lcore-show", &result),
            "\
lcore 1: busy 12%
  uplink rx [0], tx q0
  guest vm1 queue 0
  guest vm2 queue 1
lcore 2: busy -
lcore 3: busy 0%, asleep 100% (blocked 97%)
  uplink rx [], tx q1
"
        );
    }

    #[test]
    fn small_results() {
        assert_eq!(
            human(
                "version",
                &json!({"version": "0.1.0 (built against DPDK 22.11.11)", "dpdk": "22.11.11"})
            ),
            "dpdk-macvtap 0.1.0 (built against DPDK 22.11.11)\n"
        );
        assert_eq!(
            human("guest-add", &json!({"added": "vm3"})),
            "added guest vm3\n"
        );
        assert_eq!(
            human(
                "guest-set",
                &json!({"changed": "vm1", "keys": ["mtu", "mode"]})
            ),
            "changed guest vm1: mtu, mode\n"
        );
        assert_eq!(
            human(
                "rebalance",
                &json!({"moved": false, "message": "nothing moved (balanced)"})
            ),
            "nothing moved (balanced)\n"
        );
        assert_eq!(
            human(
                "reload",
                &json!({"added": ["vm3"], "removed": [], "changed": ["vm1", "vm2"], "recreated": [], "failed": [], "took_us": 310, "workers_paused_us": 4})
            ),
            "added:             vm3\nchanged:           vm1, vm2\ntook_us:           310\nworkers_paused_us: 4\n"
        );
        assert_eq!(
            human(
                "reload",
                &json!({"added": [], "removed": [], "changed": [], "recreated": [], "failed": [], "took_us": 0, "workers_paused_us": 0})
            ),
            "no changes\n"
        );
        assert_eq!(
            human(
                "config-dump",
                &json!({"toml": "[[guest]]\nname = \"vm1\"\n"})
            ),
            "[[guest]]\nname = \"vm1\"\n"
        );
        let del = human(
            "guest-del",
            &json!({"removed": "vm3", "counters": counters()}),
        );
        assert!(
            del.starts_with("removed guest vm3; final counters:\nrx_packets: 10\n"),
            "{del}"
        );
    }

    #[test]
    fn unexpected_shapes_fall_back_to_json() {
        for (method, result) in [
            ("guest-list", json!({"not": "a list"})),
            ("guest-list", json!([1, 2])),
            ("guest-show", json!("vm1")),
            ("guest-add", json!({"other": 1})),
            ("stats", json!({"guests": "x"})),
            ("stats", json!([1])),
            ("lcore-show", json!([null])),
            ("config-dump", json!({"toml": 5})),
            ("no-such-method", json!({"a": 1})),
        ] {
            assert_eq!(human(method, &result), json(&result), "{method}");
        }
        // Wrongly typed fields inside a known shape are shown, not fatal.
        let odd = json!({"name": ["x"], "mtu": "big", "counters": {"drops": "lots"}});
        let text = human("guest-show", &odd);
        assert!(text.contains("mtu:        big\n"), "{text}");
        assert!(text.contains("drops:      lots\n"), "{text}");
        assert!(text.contains("rx_packets: -\n"), "{text}");
    }
}
