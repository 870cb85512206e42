//! `dpdk-macvtapctl top` (alias `monitor`): a live view of a running switch, like `top` or
//! `ovs-appctl dpif-netdev/pmd-perf-show`.
//!
//! Role: sample the switch's `stats` method every interval, turn two successive samples into
//! rates (`Rates::between`), lay them out for a screen (`render`), and either print that once
//! (`--once`: no terminal control, for scripts) or keep a full-screen view up to date until
//! q, Q, Esc or Ctrl-C (`live`).
//!
//! Counters only grow while a port exists. One that went backwards means the port was
//! removed and re-added (or the switch restarted) between two samples: its rates for that
//! interval are 0, never a wrapped-around huge number. A guest in only the newer sample has
//! no rate yet (`-`, JSON null); one in only the older sample is gone and not shown.
//!
//! Threads: the live view samples on a thread of its own, so a slow or stuck switch never
//! delays the keys; the screen is drawn by the main thread only. The terminal is restored by
//! `Terminal`'s Drop, by a panic hook (the release profile aborts on panic, so no Drop runs
//! then), and on SIGTERM, SIGHUP and SIGINT, which end the view like `q`.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::args::{Cli, TopArgs};
use crate::rpc::{self, RpcError};

/// Width of the table `--once` prints (a terminal's width is used in the live view).
pub const ONCE_WIDTH: usize = 80;
/// How often the live view looks at the keyboard, signals and new samples.
const POLL: Duration = Duration::from_millis(100);
/// Label of the uplink's row: parentheses cannot appear in a guest name, so it cannot be
/// mistaken for a guest.
const UPLINK: &str = "(uplink)";

// ---------------------------------------------------------------------------------------
// Entry point

pub fn run(cli: &Cli, args: &TopArgs) -> ExitCode {
    if cli.json && !args.once {
        crate::usage_error(
            "top",
            "--json needs --once (the live view is for a terminal; --once --json prints the rates once)".into(),
        );
    }
    let path = cli.control_path();
    let timeout = Duration::from_secs(cli.timeout);
    let interval = Duration::from_secs(args.interval);
    if args.once {
        return once(&path, timeout, interval, cli.json);
    }
    if !io::stdout().is_terminal() {
        return crate::fail(
            2,
            "top: the live view needs a terminal (standard output is not one); --once prints the table once",
        );
    }
    match live(path, timeout, args.interval) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::fail(1, &format!("top: {e}")),
    }
}

/// `--once`: two samples one interval apart, one table (or the rates as JSON), exit.
fn once(path: &Path, timeout: Duration, interval: Duration, json: bool) -> ExitCode {
    let started = Instant::now();
    let result = (|| -> Result<(Option<String>, Rates), RpcError> {
        let version = version(path, timeout)?;
        let (t1, first) = sample(path, timeout)?;
        std::thread::sleep(interval.saturating_sub(t1.elapsed()));
        let (t2, second) = sample(path, timeout)?;
        let seconds = t2.duration_since(t1).as_secs_f64();
        Ok((version, Rates::between(Some(&first), &second, seconds)))
    })();
    let (version, rates) = match result {
        Ok(r) => r,
        Err(e) => return crate::fail(e.exit_code(), &e.to_string()),
    };
    let text = if json {
        match serde_json::to_string_pretty(&rates) {
            Ok(mut s) => {
                s.push('\n');
                s
            }
            Err(e) => return crate::fail(1, &format!("cannot write the rates as JSON: {e}")),
        }
    } else {
        let header = Header {
            version: version.as_deref(),
            uptime: started.elapsed(),
            interval: interval.as_secs(),
        };
        let mut s = render(&header, &Body::Rates(&rates), ONCE_WIDTH, None).join("\n");
        s.push('\n');
        s
    };
    crate::print(&text)
}

/// The switch's version string (`0.1.0 (built against DPDK 22.11.11)`), if it gives one.
fn version(path: &Path, timeout: Duration) -> Result<Option<String>, RpcError> {
    let reply = rpc::call(path, "version", None, crate::REQUEST_ID, timeout)?;
    Ok(reply
        .result
        .get("version")
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// One `stats` document, parsed, and when it was taken (the middle of the exchange: the
/// switch reads its counters somewhere between our request and its reply).
fn sample(path: &Path, timeout: Duration) -> Result<(Instant, Sample), RpcError> {
    let sent = Instant::now();
    let reply = rpc::call(path, "stats", None, crate::REQUEST_ID, timeout)?;
    let at = sent + sent.elapsed() / 2;
    let sample = Sample::from_stats(&reply.result).map_err(RpcError::Protocol)?;
    Ok((at, sample))
}

// ---------------------------------------------------------------------------------------
// Samples: what one `stats` document says, reduced to what the view needs

/// One port's cumulative counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub drops: BTreeMap<String, u64>,
}

impl Counters {
    /// A port's counters, nested under `counters` (guest-show) or flattened into the port's
    /// object (the stats document). A missing counter reads as 0 in both samples, so its
    /// rate is 0 rather than an error.
    fn from_port(port: &Map<String, Value>) -> Counters {
        let c = port
            .get("counters")
            .and_then(Value::as_object)
            .unwrap_or(port);
        let n = |key: &str| c.get(key).and_then(Value::as_u64).unwrap_or(0);
        let drops = c
            .get("drops")
            .and_then(Value::as_object)
            .map(|d| {
                d.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Counters {
            rx_packets: n("rx_packets"),
            rx_bytes: n("rx_bytes"),
            tx_packets: n("tx_packets"),
            tx_bytes: n("tx_bytes"),
            drops,
        }
    }

    /// What was counted since `earlier`, or `None` if any counter went backwards (the port
    /// was reset in between). A drop reason missing on one side counts as 0 there.
    fn since(&self, earlier: &Counters) -> Option<Counters> {
        let mut drops = BTreeMap::new();
        for reason in self.drops.keys().chain(earlier.drops.keys()) {
            let now = self.drops.get(reason).copied().unwrap_or(0);
            let then = earlier.drops.get(reason).copied().unwrap_or(0);
            drops.insert(reason.clone(), now.checked_sub(then)?);
        }
        Some(Counters {
            rx_packets: self.rx_packets.checked_sub(earlier.rx_packets)?,
            rx_bytes: self.rx_bytes.checked_sub(earlier.rx_bytes)?,
            tx_packets: self.tx_packets.checked_sub(earlier.tx_packets)?,
            tx_bytes: self.tx_bytes.checked_sub(earlier.tx_bytes)?,
            drops,
        })
    }
}

/// A port: its link state as the switch words it (`up`, `down`), if it has one, and counters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PortSample {
    pub link: Option<String>,
    pub counters: Counters,
}

impl PortSample {
    fn from_port(port: &Map<String, Value>) -> PortSample {
        let link = match (port.get("link"), port.get("link_up")) {
            (Some(Value::String(s)), _) => Some(s.clone()),
            (Some(Value::Bool(up)), _) | (None, Some(Value::Bool(up))) => {
                Some(if *up { "up" } else { "down" }.to_owned())
            }
            _ => None,
        };
        PortSample {
            link,
            counters: Counters::from_port(port),
        }
    }
}

/// One worker's loop accounting, and where the assignment puts it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkerSample {
    pub lcore: Option<u64>,
    pub busy_cycles: u64,
    pub idle_cycles: u64,
    pub sleep_cycles: u64,
    pub frames: u64,
    /// What it serves, e.g. `uplink 0; vm1:0 vm2:0` (empty if the document does not say).
    pub queues: String,
}

/// One `stats` document.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub uplink: PortSample,
    pub guests: Vec<(String, PortSample)>,
    pub workers: Vec<WorkerSample>,
}

impl Sample {
    /// Reads the whole stats document (`uplink`, `guests[]`, `workers[]`, `assignment[]`,
    /// the latter two index-aligned). The switch is written independently: what the view
    /// cannot do without is an error, everything else defaults.
    pub fn from_stats(doc: &Value) -> Result<Sample, String> {
        let doc = doc
            .as_object()
            .ok_or_else(|| format!("the stats result is not an object: {}", short(doc)))?;
        let uplink = doc
            .get("uplink")
            .and_then(Value::as_object)
            .ok_or("the stats result has no uplink object")?;
        let guests = doc
            .get("guests")
            .and_then(Value::as_array)
            .ok_or("the stats result has no guests list")?
            .iter()
            .map(|g| {
                let g = g.as_object().ok_or_else(|| {
                    format!("a guest in the stats result is not an object: {}", short(g))
                })?;
                let name = g.get("name").and_then(Value::as_str).ok_or_else(|| {
                    format!(
                        "a guest in the stats result has no name: {}",
                        short(&Value::Object(g.clone()))
                    )
                })?;
                Ok((name.to_owned(), PortSample::from_port(g)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let empty = Vec::new();
        let assignment = doc
            .get("assignment")
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        let workers = doc
            .get("workers")
            .and_then(Value::as_array)
            .unwrap_or(&empty)
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let n = |key: &str| w.get(key).and_then(Value::as_u64).unwrap_or(0);
                let plan = assignment.get(i);
                WorkerSample {
                    lcore: plan.and_then(|p| p.get("lcore")).and_then(Value::as_u64),
                    busy_cycles: n("busy_cycles"),
                    idle_cycles: n("idle_cycles"),
                    sleep_cycles: n("sleep_cycles"),
                    frames: n("frames"),
                    queues: plan.map(queues_of).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Sample {
            uplink: PortSample::from_port(uplink),
            guests,
            workers,
        })
    }
}

/// `uplink 0; vm1:0 vm2:0` from an assignment entry
/// (`{"uplink_rx": [0], "guest_queues": ["vm1:0", "vm2:0"]}`).
fn queues_of(plan: &Value) -> String {
    let list = |key: &str, sep: &str| {
        plan.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(sep)
            })
            .unwrap_or_default()
    };
    let uplink = list("uplink_rx", ",");
    let guests = list("guest_queues", " ");
    match (uplink.is_empty(), guests.is_empty()) {
        (true, _) => guests,
        (false, true) => format!("uplink {uplink}"),
        (false, false) => format!("uplink {uplink}; {guests}"),
    }
}

/// A value cut short for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(120) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s,
    }
}

// ---------------------------------------------------------------------------------------
// Rates between two samples

/// A port's rates. All of them are `None` together when the port has no earlier sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PortRates {
    /// The guest's name; `None` (and not in the JSON) for the uplink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub link: Option<String>,
    pub rx_pps: Option<f64>,
    pub rx_bps: Option<f64>,
    pub tx_pps: Option<f64>,
    pub tx_bps: Option<f64>,
    pub drops_per_s: Option<BTreeMap<String, f64>>,
}

impl PortRates {
    fn between(
        name: Option<&str>,
        earlier: Option<&PortSample>,
        now: &PortSample,
        seconds: f64,
    ) -> PortRates {
        let mut r = PortRates {
            name: name.map(str::to_owned),
            link: now.link.clone(),
            ..PortRates::default()
        };
        let Some(earlier) = earlier else {
            return r;
        };
        // Reset in between: every rate of this interval is 0 (the reasons are still listed).
        let zero = || Counters {
            drops: now.counters.drops.keys().map(|k| (k.clone(), 0)).collect(),
            ..Counters::default()
        };
        let d = now.counters.since(&earlier.counters).unwrap_or_else(zero);
        let per_s = |n: u64| round2(n as f64 / seconds);
        r.rx_pps = Some(per_s(d.rx_packets));
        r.rx_bps = Some(per_s(d.rx_bytes.saturating_mul(8)));
        r.tx_pps = Some(per_s(d.tx_packets));
        r.tx_bps = Some(per_s(d.tx_bytes.saturating_mul(8)));
        r.drops_per_s = Some(d.drops.into_iter().map(|(k, n)| (k, per_s(n))).collect());
        r
    }

    /// rx + tx packets per second, what guests are sorted by (0 while unknown).
    fn traffic(&self) -> f64 {
        self.rx_pps.unwrap_or(0.0) + self.tx_pps.unwrap_or(0.0)
    }

    /// All drops per second, `None` while unknown.
    fn drops_total(&self) -> Option<f64> {
        self.drops_per_s.as_ref().map(|d| d.values().sum())
    }

    /// Non-zero drop reasons, most frequent first (ties by name).
    fn top_reasons(&self) -> Vec<(&str, f64)> {
        let mut v: Vec<(&str, f64)> = self
            .drops_per_s
            .iter()
            .flatten()
            .filter(|(_, &n)| n > 0.0)
            .map(|(k, &n)| (k.as_str(), n))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        v
    }
}

/// One forwarding lcore's shares of its time and its frame rate over the interval.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LcoreRates {
    pub lcore: Option<u64>,
    pub busy_percent: Option<f64>,
    pub sleep_percent: Option<f64>,
    pub frames_per_s: Option<f64>,
    #[serde(skip)]
    pub queues: String,
}

impl LcoreRates {
    fn between(earlier: Option<&WorkerSample>, now: &WorkerSample, seconds: f64) -> LcoreRates {
        let mut r = LcoreRates {
            lcore: now.lcore,
            queues: now.queues.clone(),
            ..LcoreRates::default()
        };
        let Some(e) = earlier else {
            return r;
        };
        let deltas = (
            now.busy_cycles.checked_sub(e.busy_cycles),
            now.idle_cycles.checked_sub(e.idle_cycles),
            now.sleep_cycles.checked_sub(e.sleep_cycles),
        );
        r.frames_per_s = Some(round2(now.frames.saturating_sub(e.frames) as f64 / seconds));
        // Shares need a measured interval: none if the counters went back or did not move.
        if let (Some(busy), Some(idle), Some(sleep)) = deltas {
            let total = busy as f64 + idle as f64 + sleep as f64;
            if total > 0.0 {
                r.busy_percent = Some(round2(busy as f64 * 100.0 / total));
                r.sleep_percent = Some(round2(sleep as f64 * 100.0 / total));
            }
        }
        r
    }
}

/// Everything the view shows, from two samples. Also the `--once --json` output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Seconds between the two samples; `None` when there was only one.
    pub seconds: Option<f64>,
    pub uplink: PortRates,
    /// Busiest first (rx + tx packets per second), ties by name.
    pub guests: Vec<PortRates>,
    pub lcores: Vec<LcoreRates>,
}

impl Rates {
    /// Rates over the `seconds` from `earlier` to `now`; with no earlier sample (or no time
    /// between them) only names and link states are known.
    pub fn between(earlier: Option<&Sample>, now: &Sample, seconds: f64) -> Rates {
        let earlier = earlier.filter(|_| seconds > 0.0 && seconds.is_finite());
        let old_guests: HashMap<&str, &PortSample> = earlier
            .map(|e| e.guests.iter().map(|(n, p)| (n.as_str(), p)).collect())
            .unwrap_or_default();
        let mut guests: Vec<PortRates> = now
            .guests
            .iter()
            .map(|(name, port)| {
                PortRates::between(
                    Some(name),
                    old_guests.get(name.as_str()).copied(),
                    port,
                    seconds,
                )
            })
            .collect();
        guests.sort_by(|a, b| {
            b.traffic()
                .total_cmp(&a.traffic())
                .then_with(|| a.name.cmp(&b.name))
        });
        let lcores = now
            .workers
            .iter()
            .enumerate()
            .map(|(i, w)| LcoreRates::between(earlier.and_then(|e| e.workers.get(i)), w, seconds))
            .collect();
        Rates {
            seconds: earlier.map(|_| round2(seconds)),
            uplink: PortRates::between(None, earlier.map(|e| &e.uplink), &now.uplink, seconds),
            guests,
            lcores,
        }
    }
}

/// Rates are shown with at most 3 significant digits; 2 decimals keep the JSON readable.
fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

// ---------------------------------------------------------------------------------------
// Layout

/// `1.23k`, `16.3M`, `163G`: at most 3 significant digits and a unit (k, M, G, T, P), so a
/// value never takes more than 5 columns; below 10 one decimal (`0.5`), else whole numbers.
pub fn human(x: f64) -> String {
    if !x.is_finite() || x <= 0.0 {
        return "0".into();
    }
    if x < 9.95 {
        return trim_point_zero(format!("{x:.1}"));
    }
    if x < 999.5 {
        return format!("{x:.0}");
    }
    let mut scaled = x;
    for unit in ["k", "M", "G", "T", "P"] {
        scaled /= 1000.0;
        if scaled < 9.995 {
            return format!("{scaled:.2}{unit}");
        }
        if scaled < 99.95 {
            return format!("{scaled:.1}{unit}");
        }
        if scaled < 999.5 {
            return format!("{scaled:.0}{unit}");
        }
    }
    format!("{scaled:.0}P")
}

/// `5.0` -> `5`, so that whole small numbers look like the large ones.
fn trim_point_zero(s: String) -> String {
    match s.strip_suffix(".0") {
        Some(t) => t.to_owned(),
        None => s,
    }
}

fn human_opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), human)
}

/// `H:MM:SS`, hours unbounded.
pub fn hms(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// What the switch sends is shown on a terminal: control characters (an escape sequence
/// in a name or a message) must not reach it.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The first `width` characters of `s`.
fn cut(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// `s` in at most `width` characters: whole, or cut with a `+` at the end (not a character
/// a guest name may contain, so a cut name is never taken for another guest's).
fn shorten(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_owned()
    } else {
        let mut t = cut(s, width.saturating_sub(1));
        t.push('+');
        t
    }
}

/// `s` in exactly `width` columns: shortened, or padded.
fn fit(s: &str, width: usize) -> String {
    format!("{:<width$}", shorten(s, width))
}

/// Words of `text` in lines of at most `width` characters (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let word = cut(word, width);
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// The first line: the switch and the view.
pub struct Header<'a> {
    /// The `version` method's string; `None` until the switch answered it.
    pub version: Option<&'a str>,
    /// How long the view has been running.
    pub uptime: Duration,
    /// Seconds between samples.
    pub interval: u64,
}

/// What fills the screen below the header.
pub enum Body<'a> {
    /// Nothing sampled yet.
    Waiting(&'a str),
    Rates(&'a Rates),
    /// The last sample failed; the view retries every interval.
    Error(&'a str),
}

/// Widths of the columns after NAME: LINK, RX-PPS, RX-BIT/S, TX-PPS, TX-BIT/S, each
/// preceded by two spaces, and the two before DROP/S.
const FIXED_COLUMNS: usize = 2 + 4 + 2 + 6 + 2 + 8 + 2 + 6 + 2 + 8 + 2;
/// What DROP/S keeps at least before NAME may widen (`16.3M unknown_dest +1`): with 80
/// columns, names of up to 15 characters are shown whole.
const DROP_COLUMN: usize = 21;

/// The screen as lines of at most `width` characters; with `height`, at most that many
/// lines, guests cut first (`... N more guests`), the lcores kept.
pub fn render(header: &Header, body: &Body, width: usize, height: Option<usize>) -> Vec<String> {
    let mut lines = vec![header_line(header, width)];
    match body {
        Body::Waiting(what) => lines.extend(wrap(&clean(what), width)),
        Body::Error(message) => {
            lines.extend(wrap(&format!("error: {}", clean(message)), width));
            lines.push(cut(
                &format!("retrying every {} s; q quits", header.interval),
                width,
            ));
        }
        Body::Rates(rates) => {
            lines.push(cut(&totals_line(rates), width));
            lines.push(String::new());
            tables(rates, width, height, &mut lines);
        }
    }
    if let Some(h) = height {
        lines.truncate(h);
    }
    lines
}

/// `dpdk-macvtap VERSION` on the left, `view up H:MM:SS, every N s` on the right; the
/// version gives way when the line is too short for both, but not below its first words.
fn header_line(h: &Header, width: usize) -> String {
    let left = clean(&format!(
        "dpdk-macvtap {}",
        h.version.unwrap_or("(version unknown)")
    ));
    let right = format!("view up {}, every {} s", hms(h.uptime), h.interval);
    let room = width.saturating_sub(right.len() + 2).max(18);
    let left = cut(&left, room);
    let pad = width
        .saturating_sub(left.chars().count() + right.len())
        .max(2);
    cut(&format!("{left}{}{right}", " ".repeat(pad)), width)
        .trim_end()
        .to_owned()
}

/// Guests, their summed packet rates, and every drop of the switch (bit rates are per row:
/// with them the line would not fit 80 columns).
fn totals_line(r: &Rates) -> String {
    let n = r.guests.len();
    let up = r
        .guests
        .iter()
        .filter(|g| g.link.as_deref() == Some("up"))
        .count();
    let guests = format!("{n} guest{} ({up} up)", if n == 1 { "" } else { "s" });
    if r.seconds.is_none() {
        return format!("total: {guests}; rates from the next sample on");
    }
    let sum = |f: fn(&PortRates) -> Option<f64>| r.guests.iter().filter_map(f).sum::<f64>();
    let drops: f64 = std::iter::once(&r.uplink)
        .chain(&r.guests)
        .filter_map(PortRates::drops_total)
        .sum();
    format!(
        "total: {guests}, rx {} pps, tx {} pps; drops {}/s (all ports)",
        human(sum(|g| g.rx_pps)),
        human(sum(|g| g.tx_pps)),
        human(drops),
    )
}

/// The port table (uplink, then guests) and the lcore table.
fn tables(r: &Rates, width: usize, height: Option<usize>, lines: &mut Vec<String>) {
    let longest = r
        .guests
        .iter()
        .filter_map(|g| g.name.as_deref())
        .map(|n| n.chars().count())
        .chain([UPLINK.len()])
        .max()
        .unwrap_or(0);
    let name_width = longest.min(
        width
            .saturating_sub(FIXED_COLUMNS + DROP_COLUMN)
            .max(UPLINK.len()),
    );
    let drop_width = width.saturating_sub(name_width + FIXED_COLUMNS);
    let row = |name: &str, cells: [String; 6]| {
        let [link, rx_pps, rx_bps, tx_pps, tx_bps, drops] = cells;
        let line = format!(
            "{}  {link:<4}  {rx_pps:>6}  {rx_bps:>8}  {tx_pps:>6}  {tx_bps:>8}  {drops}",
            fit(&clean(name), name_width)
        );
        cut(line.trim_end(), width)
    };
    let port_row = |name: &str, p: &PortRates| {
        row(
            name,
            [
                clean(p.link.as_deref().unwrap_or("-")),
                human_opt(p.rx_pps),
                human_opt(p.rx_bps),
                human_opt(p.tx_pps),
                human_opt(p.tx_bps),
                drops_cell(p, drop_width),
            ],
        )
    };
    let lcore_header = "LCORE  BUSY  ASLEEP  FRAMES/S  QUEUES";
    // Lines after the guests: a blank one, the lcore header, one per lcore.
    let after = 2 + r.lcores.len();
    lines.push(row(
        "NAME",
        [
            "LINK",
            "RX-PPS",
            "RX-BIT/S",
            "TX-PPS",
            "TX-BIT/S",
            "DROP/S (reason)",
        ]
        .map(String::from),
    ));
    lines.push(port_row(UPLINK, &r.uplink));
    let room = height.map_or(usize::MAX, |h| h.saturating_sub(lines.len() + after));
    let shown = if r.guests.len() > room {
        room.saturating_sub(1)
    } else {
        r.guests.len()
    };
    for g in &r.guests[..shown] {
        lines.push(port_row(g.name.as_deref().unwrap_or("-"), g));
    }
    if shown < r.guests.len() && room > 0 {
        let more = r.guests.len() - shown;
        lines.push(format!(
            "... {more} more guest{}",
            if more == 1 { "" } else { "s" }
        ));
    }
    lines.push(String::new());
    lines.push(cut(lcore_header, width));
    let percent = |p: Option<f64>| p.map_or_else(|| "-".into(), |p| format!("{p:.0}%"));
    for l in &r.lcores {
        let lcore = l.lcore.map_or_else(|| "-".into(), |n| n.to_string());
        let line = format!(
            "{lcore:>5}  {:>4}  {:>6}  {:>8}  {}",
            percent(l.busy_percent),
            percent(l.sleep_percent),
            human_opt(l.frames_per_s),
            clean(&l.queues)
        );
        lines.push(cut(line.trim_end(), width));
    }
}

/// `16.3M unknown_dest`, `1.2k guest_down +2` (two more reasons), `0`, or `-` while unknown;
/// in `width` columns, the reason's name is cut rather than the count of the others.
fn drops_cell(p: &PortRates, width: usize) -> String {
    let Some(total) = p.drops_total() else {
        return "-".into();
    };
    let reasons = p.top_reasons();
    let Some((top, _)) = reasons.first() else {
        return human(total);
    };
    let total = human(total);
    let others = match reasons.len() - 1 {
        0 => String::new(),
        n => format!(" +{n}"),
    };
    let room = width.saturating_sub(total.len() + 1 + others.len());
    if room < 4 {
        // No room for a recognisable name: the total alone.
        return total;
    }
    format!("{total} {}{others}", shorten(&clean(top), room))
}

// ---------------------------------------------------------------------------------------
// The live view

/// Whether the terminal is in our modes; `restore` undoes them once, whoever calls first
/// (Drop, the panic hook).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Owns the terminal while the view runs: raw mode, alternate screen, hidden cursor.
struct Terminal;

impl Terminal {
    fn enter() -> io::Result<Terminal> {
        // Before anything changes, so that a panic from here on restores the terminal even
        // where no Drop runs (panic = "abort").
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            default(info);
        }));
        crossterm::terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let guard = Terminal;
        crossterm::execute!(
            io::stdout(),
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        )?;
        Ok(guard)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // Nothing to do about a failure here: the terminal is all we could report it on.
        let _ = crossterm::execute!(
            io::stdout(),
            crossterm::cursor::Show,
            crossterm::terminal::LeaveAlternateScreen
        );
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// One sampling round, sent from the sampling thread to the view.
struct Tick {
    at: Instant,
    version: Option<String>,
    stats: Result<Sample, String>,
}

/// Samples `stats` every `interval` (and `version` until the switch has answered it) and
/// sends the results until the view hangs up.
fn sampler(path: PathBuf, timeout: Duration, interval: Duration, ticks: mpsc::Sender<Tick>) {
    let mut version = None;
    let mut next = Instant::now();
    loop {
        if version.is_none() {
            version = self::version(&path, timeout).ok().flatten();
        }
        let (at, stats) = match sample(&path, timeout) {
            Ok((at, s)) => (at, Ok(s)),
            Err(e) => (Instant::now(), Err(e.to_string())),
        };
        // After a failure the switch may come back as another version.
        let reached = stats.is_ok();
        if ticks
            .send(Tick {
                at,
                version: version.clone(),
                stats,
            })
            .is_err()
        {
            return;
        }
        if !reached {
            version = None;
        }
        // A fixed schedule; a late round (slow switch) is followed by the next at once.
        next += interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
        std::thread::sleep(next - now);
    }
}

/// What the view shows between ticks.
enum State {
    Waiting,
    Rates(Rates),
    Error(String),
}

/// The full-screen view, until a quitting key or signal.
fn live(path: PathBuf, timeout: Duration, interval_s: u64) -> io::Result<()> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

    let interval = Duration::from_secs(interval_s);
    // SIGINT too: in raw mode Ctrl-C is a key, but `kill -INT` still comes as a signal.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGINT,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    let started = Instant::now();
    let waiting = format!("connecting to {} ...", path.display());
    let (tx, ticks) = mpsc::channel();
    std::thread::Builder::new()
        .name("sampler".into())
        .spawn(move || sampler(path, timeout, interval, tx))?;

    let terminal = Terminal::enter()?;
    let mut out = io::stdout();
    let mut state = State::Waiting;
    let mut version: Option<String> = None;
    let mut last: Option<(Instant, Sample)> = None;
    let mut dirty = true;
    while !stop.load(Ordering::SeqCst) {
        if dirty {
            let (cols, rows) = crossterm::terminal::size()?;
            let header = Header {
                version: version.as_deref(),
                uptime: started.elapsed(),
                interval: interval_s,
            };
            let body = match &state {
                State::Waiting => Body::Waiting(&waiting),
                State::Rates(r) => Body::Rates(r),
                State::Error(e) => Body::Error(e),
            };
            let lines = render(&header, &body, usize::from(cols), Some(usize::from(rows)));
            draw(&mut out, &lines, rows)?;
            dirty = false;
        }
        if event::poll(POLL)? {
            match event::read()? {
                Event::Key(k) if k.kind != KeyEventKind::Release => {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q' | 'Q') | KeyCode::Esc) {
                        break;
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        loop {
            match ticks.try_recv() {
                Ok(tick) => {
                    if tick.version.is_some() {
                        version = tick.version;
                    }
                    state = match tick.stats {
                        Ok(now) => {
                            let rates = match &last {
                                Some((t, before)) => Rates::between(
                                    Some(before),
                                    &now,
                                    tick.at.saturating_duration_since(*t).as_secs_f64(),
                                ),
                                None => Rates::between(None, &now, 0.0),
                            };
                            last = Some((tick.at, now));
                            State::Rates(rates)
                        }
                        Err(e) => {
                            // Rates across an outage would mix two runs of the switch.
                            last = None;
                            State::Error(e)
                        }
                    };
                    dirty = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    return Err(io::Error::other("the sampling thread stopped"));
                }
            }
        }
    }
    drop(terminal);
    Ok(())
}

/// Each line cleared and rewritten in place (no full-screen clear, no flicker), then the
/// rest of the screen cleared. Lines are cleared before they are written: clearing after a
/// line that fills the width would erase its last character on many terminals.
fn draw(out: &mut impl Write, lines: &[String], rows: u16) -> io::Result<()> {
    use crossterm::cursor::MoveTo;
    use crossterm::style::Print;
    use crossterm::terminal::{Clear, ClearType};

    let mut y: u16 = 0;
    for line in lines {
        if y >= rows {
            break;
        }
        crossterm::queue!(
            out,
            MoveTo(0, y),
            Clear(ClearType::CurrentLine),
            Print(line)
        )?;
        y += 1;
    }
    if y < rows {
        crossterm::queue!(out, MoveTo(0, y), Clear(ClearType::FromCursorDown))?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A stats document shaped like the switch's (flattened counters, link_up, workers and
    /// assignment index-aligned).
    fn doc(uplink: (u64, u64, u64), guests: &[(&str, bool, [u64; 5])], worker: [u64; 4]) -> Value {
        let drops = |unknown: u64, down: u64| json!({"runt": 0, "unknown_dest": unknown, "guest_down": down, "uplink_full": 0});
        json!({
            "uplink": {"rx_packets": uplink.0, "rx_bytes": uplink.1, "tx_packets": 0,
                       "tx_bytes": 0, "drops": drops(uplink.2, 0), "stalls": 0},
            "guests": guests.iter().map(|(name, up, c)| json!({
                "name": name, "link_up": up, "rx_packets": c[0], "rx_bytes": c[1],
                "tx_packets": c[2], "tx_bytes": c[3], "drops": drops(0, c[4]), "stalls": 0
            })).collect::<Vec<_>>(),
            "workers": [{"busy_cycles": worker[0], "idle_cycles": worker[1],
                         "sleep_cycles": worker[2], "frames": worker[3]}],
            "assignment": [{"lcore": 1, "uplink_rx": [0], "guest_queues": ["vm1:0", "vm2:0"]}],
            "steering": {"rules": 0}
        })
    }

    fn sample(v: &Value) -> Sample {
        Sample::from_stats(v).expect("valid document")
    }

    fn guest<'a>(r: &'a Rates, name: &str) -> &'a PortRates {
        r.guests
            .iter()
            .find(|g| g.name.as_deref() == Some(name))
            .expect("guest listed")
    }

    #[test]
    fn rates_from_two_samples() {
        let a = sample(&doc(
            (1000, 64_000, 10),
            &[
                ("vm1", true, [100, 10_000, 50, 5_000, 0]),
                ("vm2", false, [0, 0, 0, 0, 0]),
            ],
            [100, 800, 100, 0],
        ));
        let b = sample(&doc(
            (3000, 192_000, 2010),
            &[
                ("vm1", true, [300, 30_000, 250, 25_000, 4]),
                ("vm2", false, [0, 0, 0, 0, 2]),
            ],
            [400, 1400, 200, 1000],
        ));
        let r = Rates::between(Some(&a), &b, 2.0);
        assert_eq!(r.seconds, Some(2.0));
        assert_eq!(r.uplink.name, None);
        assert_eq!(r.uplink.link, None);
        assert_eq!(r.uplink.rx_pps, Some(1000.0));
        assert_eq!(r.uplink.rx_bps, Some(512_000.0));
        assert_eq!(r.uplink.tx_pps, Some(0.0));
        assert_eq!(r.uplink.drops_total(), Some(1000.0));
        assert_eq!(r.uplink.top_reasons(), [("unknown_dest", 1000.0)]);
        let vm1 = guest(&r, "vm1");
        assert_eq!(vm1.link.as_deref(), Some("up"));
        assert_eq!((vm1.rx_pps, vm1.rx_bps), (Some(100.0), Some(80_000.0)));
        assert_eq!((vm1.tx_pps, vm1.tx_bps), (Some(100.0), Some(80_000.0)));
        assert_eq!(vm1.drops_per_s.as_ref().expect("known")["guest_down"], 2.0);
        assert_eq!(guest(&r, "vm2").link.as_deref(), Some("down"));
        assert_eq!(r.lcores.len(), 1);
        let l = &r.lcores[0];
        assert_eq!(l.lcore, Some(1));
        // busy 300, idle 600, asleep 100 of 1000 cycles.
        assert_eq!((l.busy_percent, l.sleep_percent), (Some(30.0), Some(10.0)));
        assert_eq!(l.frames_per_s, Some(500.0));
        assert_eq!(l.queues, "uplink 0; vm1:0 vm2:0");
    }

    #[test]
    fn a_counter_that_went_back_is_a_reset_not_a_huge_rate() {
        // vm1 was removed and re-added between the samples: its counters started again.
        let a = sample(&doc(
            (10, 640, 0),
            &[("vm1", true, [1_000_000, 64_000_000, 5, 320, 7])],
            [9, 9, 9, 9],
        ));
        let b = sample(&doc(
            (20, 1280, 0),
            &[("vm1", true, [40, 2_560, 9, 576, 0])],
            [5, 5, 5, 5],
        ));
        let r = Rates::between(Some(&a), &b, 1.0);
        let vm1 = guest(&r, "vm1");
        assert_eq!(
            (vm1.rx_pps, vm1.rx_bps, vm1.tx_pps, vm1.tx_bps),
            (Some(0.0), Some(0.0), Some(0.0), Some(0.0)),
            "tx went up, but the port as a whole was reset"
        );
        assert_eq!(vm1.drops_total(), Some(0.0));
        assert!(vm1.top_reasons().is_empty());
        // The uplink moved forward and keeps its rate.
        assert_eq!(r.uplink.rx_pps, Some(10.0));
        // The worker's counters went back too (the switch restarted): no shares, 0 frames/s.
        let l = &r.lcores[0];
        assert_eq!(
            (l.busy_percent, l.sleep_percent, l.frames_per_s),
            (None, None, Some(0.0))
        );
        // One drop reason going back is enough.
        let mut c = a.uplink.counters.clone();
        c.drops.insert("runt".into(), 0);
        let mut earlier = c.clone();
        earlier.drops.insert("runt".into(), 1);
        assert_eq!(c.since(&earlier), None);
    }

    #[test]
    fn a_guest_in_only_one_sample() {
        let a = sample(&doc(
            (0, 0, 0),
            &[("old", true, [5, 5, 5, 5, 0])],
            [0, 0, 0, 0],
        ));
        let b = sample(&doc(
            (0, 0, 0),
            &[("new", true, [500, 500, 500, 500, 0])],
            [0, 0, 0, 0],
        ));
        let r = Rates::between(Some(&a), &b, 1.0);
        // Removed: gone from the view. Added: listed, rates not known yet.
        assert_eq!(r.guests.len(), 1);
        let new = guest(&r, "new");
        assert_eq!(new.link.as_deref(), Some("up"));
        assert_eq!(
            (new.rx_pps, new.tx_bps, new.drops_per_s.as_ref()),
            (None, None, None)
        );
        // Counters that did not move give a measured 0, shares need cycles to have moved.
        assert_eq!(r.uplink.rx_pps, Some(0.0));
        assert_eq!(r.lcores[0].busy_percent, None);
        // A single sample: names and links, no rate anywhere.
        let first = Rates::between(None, &b, 0.0);
        assert_eq!(first.seconds, None);
        assert_eq!(first.uplink.rx_pps, None);
        assert_eq!(first.lcores[0].frames_per_s, None);
        assert_eq!(
            Rates::between(Some(&a), &b, 0.0).seconds,
            None,
            "no time between them"
        );
    }

    #[test]
    fn guests_sorted_by_traffic_then_name() {
        let a = sample(&doc(
            (0, 0, 0),
            &[
                ("idle", false, [0; 5]),
                ("b", true, [0; 5]),
                ("a", true, [0; 5]),
                ("busy", true, [0; 5]),
                ("rxonly", true, [0; 5]),
            ],
            [0; 4],
        ));
        let b = sample(&doc(
            (0, 0, 0),
            &[
                ("idle", false, [0; 5]),
                ("b", true, [10, 0, 10, 0, 0]),
                ("a", true, [15, 0, 5, 0, 0]),
                ("busy", true, [1000, 0, 1, 0, 0]),
                ("rxonly", true, [30, 0, 0, 0, 0]),
                ("added", true, [99_999, 0, 0, 0, 0]),
            ],
            [0; 4],
        ));
        let r = Rates::between(Some(&a), &b, 1.0);
        let order: Vec<&str> = r.guests.iter().filter_map(|g| g.name.as_deref()).collect();
        // a and b both 20 pps: by name. The new guest has no rate yet: with the idle one.
        assert_eq!(order, ["busy", "rxonly", "a", "b", "added", "idle"]);
    }

    #[test]
    fn documents_the_view_cannot_use_are_errors() {
        for (bad, want) in [
            (json!([1]), "not an object"),
            (json!({"guests": []}), "no uplink"),
            (json!({"uplink": {}}), "no guests list"),
            (json!({"uplink": {}, "guests": [1]}), "not an object"),
            (
                json!({"uplink": {}, "guests": [{"rx_packets": 1}]}),
                "has no name",
            ),
        ] {
            let err = Sample::from_stats(&bad).expect_err("refused");
            assert!(err.contains(want), "{bad}: {err}");
        }
        // Nested counters (as guest-show has them), a link string, no workers: fine.
        let s = sample(
            &json!({"uplink": {}, "guests": [{"name": "vm1", "link": "up",
            "counters": {"rx_packets": 3, "drops": {"runt": 1}}}]}),
        );
        assert_eq!(s.guests[0].1.link.as_deref(), Some("up"));
        assert_eq!(s.guests[0].1.counters.rx_packets, 3);
        assert_eq!(s.guests[0].1.counters.drops["runt"], 1);
        assert!(s.workers.is_empty());
    }

    #[test]
    fn units() {
        let cases = [
            (0.0, "0"),
            (-1.0, "0"),
            (f64::NAN, "0"),
            (0.04, "0"),
            (0.34, "0.3"),
            (5.0, "5"),
            (9.96, "10"),
            (42.4, "42"),
            (999.0, "999"),
            (999.6, "1.00k"),
            (1234.0, "1.23k"),
            (9_994.0, "9.99k"),
            (9_996.0, "10.0k"),
            (16_302_656.0, "16.3M"),
            (99_960.0, "100k"),
            (999_499.0, "999k"),
            (999_500.0, "1.00M"),
            (8_350_000_000.0, "8.35G"),
            (100e9, "100G"),
            (1.5e12, "1.50T"),
            (2e18, "2000P"),
        ];
        for (x, want) in cases {
            assert_eq!(human(x), want, "{x}");
        }
        assert_eq!(hms(Duration::from_secs(0)), "0:00:00");
        assert_eq!(hms(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(hms(Duration::from_secs(100 * 3600 + 59)), "100:00:59");
    }

    /// Two guests, the uplink dropping everything, one lcore: the screen of the README.
    fn sample_rates() -> Rates {
        let a = sample(&doc(
            (0, 0, 0),
            &[
                ("vm2", false, [0; 5]),
                ("web-frontend-01", true, [0; 5]),
                ("a-very-long-guest-name", true, [0; 5]),
            ],
            [0, 0, 0, 0],
        ));
        let b = sample(&doc(
            (16_302_656, 1_043_369_984, 16_302_656),
            &[
                ("vm2", false, [0, 0, 0, 0, 0]),
                (
                    "web-frontend-01",
                    true,
                    [1_500, 2_250_000, 2_000, 3_000_000, 3],
                ),
                ("a-very-long-guest-name", true, [12, 1_200, 0, 0, 0]),
            ],
            [9_000, 0, 1_000, 16_304_155],
        ));
        let mut r = Rates::between(Some(&a), &b, 1.0);
        r.uplink
            .drops_per_s
            .as_mut()
            .expect("known")
            .insert("runt".into(), 2.0);
        r
    }

    #[test]
    fn screen_in_80_columns() {
        let header = Header {
            version: Some("0.1.0 (built against DPDK 22.11.11)"),
            uptime: Duration::from_secs(3725),
            interval: 1,
        };
        let lines = render(&header, &Body::Rates(&sample_rates()), 80, None);
        let text = lines.join("\n");
        assert_eq!(
            text,
            "\
dpdk-macvtap 0.1.0 (built against DPDK 22.11.11)      view up 1:02:05, every 1 s
total: 3 guests (2 up), rx 1.51k pps, tx 2.00k pps; drops 16.3M/s (all ports)
\n\
NAME             LINK  RX-PPS  RX-BIT/S  TX-PPS  TX-BIT/S  DROP/S (reason)
(uplink)         -      16.3M     8.35G       0         0  16.3M unknown_dest +1
web-frontend-01  up     1.50k     18.0M   2.00k     24.0M  3 guest_down
a-very-long-gu+  up        12     9.60k       0         0  0
vm2              down       0         0       0         0  0
\n\
LCORE  BUSY  ASLEEP  FRAMES/S  QUEUES
    1   90%     10%     16.3M  uplink 0; vm1:0 vm2:0"
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 80), "{text}");
    }

    #[test]
    fn screen_cut_to_the_terminal() {
        let header = Header {
            version: Some("0.1.0"),
            uptime: Duration::from_secs(5),
            interval: 2,
        };
        let rates = sample_rates();
        // 2 header + blank + table header + uplink + blank + lcore header + 1 lcore = 8 fixed.
        let lines = render(&header, &Body::Rates(&rates), 60, Some(10));
        assert_eq!(lines.len(), 10);
        assert_eq!(
            lines[0],
            "dpdk-macvtap 0.1.0                view up 0:00:05, every 2 s"
        );
        assert_eq!(
            lines[4],
            "(uplink)  -      16.3M     8.35G       0         0  16.3M"
        );
        assert!(lines[5].starts_with("web-fro+  up "), "{lines:?}");
        assert_eq!(lines[6], "... 2 more guests");
        assert_eq!(lines[8], "LCORE  BUSY  ASLEEP  FRAMES/S  QUEUES");
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        // Everything fits: no "more" line.
        let all = render(&header, &Body::Rates(&rates), 80, Some(11));
        assert_eq!(all.len(), 11);
        assert!(!all.iter().any(|l| l.starts_with("...")), "{all:?}");
        // Too short even for the fixed part: cut, no more than the height.
        assert_eq!(render(&header, &Body::Rates(&rates), 80, Some(3)).len(), 3);
    }

    #[test]
    fn drop_cell_keeps_the_count_of_other_reasons() {
        let mut p = PortRates {
            drops_per_s: Some(BTreeMap::from([
                ("guest_queue_full".to_owned(), 999_000.0),
                ("runt".to_owned(), 1.0),
                ("oversize".to_owned(), 1.0),
                ("guest_down".to_owned(), 0.0),
            ])),
            ..PortRates::default()
        };
        assert_eq!(drops_cell(&p, 40), "999k guest_queue_full +2");
        assert_eq!(drops_cell(&p, 21), "999k guest_queue_+ +2");
        assert_eq!(drops_cell(&p, 11), "999k");
        // Ties by name: oversize before runt.
        assert_eq!(p.top_reasons()[1..], [("oversize", 1.0), ("runt", 1.0)]);
        p.drops_per_s = Some(BTreeMap::from([("runt".to_owned(), 0.0)]));
        assert_eq!(drops_cell(&p, 21), "0");
        p.drops_per_s = None;
        assert_eq!(drops_cell(&p, 21), "-");
    }

    #[test]
    fn error_and_waiting_screens() {
        let header = Header {
            version: None,
            uptime: Duration::from_secs(61),
            interval: 1,
        };
        let msg = "cannot connect to /tmp/top-ctl.sock: Connection refused (os error 111); is dpdk-macvtap running with --control /tmp/top-ctl.sock?\x1b[2J";
        assert_eq!(
            render(&header, &Body::Error(msg), 80, Some(24)).join("\n"),
            "\
dpdk-macvtap (version unknown)                        view up 0:01:01, every 1 s
error: cannot connect to /tmp/top-ctl.sock: Connection refused (os error 111);
is dpdk-macvtap running with --control /tmp/top-ctl.sock??[2J
retrying every 1 s; q quits"
        );
        let first = Rates::between(
            None,
            &sample(&doc((0, 0, 0), &[("vm1", true, [0; 5])], [0; 4])),
            0.0,
        );
        let lines = render(&header, &Body::Rates(&first), 80, None);
        assert_eq!(
            lines[1],
            "total: 1 guest (1 up); rates from the next sample on"
        );
        assert_eq!(
            lines[4],
            "(uplink)  -          -         -       -         -  -"
        );
        assert_eq!(
            lines[8],
            "    1     -       -         -  uplink 0; vm1:0 vm2:0"
        );
        assert_eq!(
            render(
                &header,
                &Body::Waiting("connecting to /x.sock ..."),
                20,
                None
            ),
            ["dpdk-macvtap (vers", "connecting to", "/x.sock ..."].map(String::from)
        );
    }

    #[test]
    fn json_of_the_rates() {
        let a = sample(&doc((0, 0, 0), &[("vm1", true, [0; 5])], [0, 0, 0, 0]));
        let b = sample(&doc(
            (3, 192, 3),
            &[("vm1", true, [1, 64, 0, 0, 0])],
            [1, 2, 1, 3],
        ));
        let mut r = Rates::between(Some(&a), &b, 3.0);
        r.guests.push(PortRates {
            name: Some("new".into()),
            link: Some("down".into()),
            ..PortRates::default()
        });
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(
            v,
            json!({
                "seconds": 3.0,
                "uplink": {"link": null, "rx_pps": 1.0, "rx_bps": 512.0, "tx_pps": 0.0, "tx_bps": 0.0,
                           "drops_per_s": {"guest_down": 0.0, "runt": 0.0, "unknown_dest": 1.0, "uplink_full": 0.0}},
                "guests": [
                    {"name": "vm1", "link": "up", "rx_pps": 0.33, "rx_bps": 170.67, "tx_pps": 0.0, "tx_bps": 0.0,
                     "drops_per_s": {"guest_down": 0.0, "runt": 0.0, "unknown_dest": 0.0, "uplink_full": 0.0}},
                    {"name": "new", "link": "down", "rx_pps": null, "rx_bps": null, "tx_pps": null, "tx_bps": null,
                     "drops_per_s": null}
                ],
                "lcores": [{"lcore": 1, "busy_percent": 25.0, "sleep_percent": 25.0, "frames_per_s": 1.0}]
            })
        );
        // Keys in the order a person reads them, not sorted.
        let text = serde_json::to_string(&r).expect("serializes");
        assert!(
            text.starts_with(r#"{"seconds":3.0,"uplink":{"link":null,"rx_pps":1.0,"#),
            "{text}"
        );
    }
}
