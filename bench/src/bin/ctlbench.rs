//! How long the control plane takes to change a running switch: a guest added, removed and
//! changed (`guest-add`, `guest-del`, `guest-set`) with many other guests configured, and how
//! long the workers pause for each change. The switch itself reports both (`took_us`: the
//! change on its control thread; `workers_paused_us`: from handing the workers the new view to
//! the last of them running on it); the client's round trip is measured here.
//!
//! Three cases: an idle worker; a worker saturated by the uplink (`net_null` generates frames
//! as fast as the worker takes them, all to unknown MACs), which is when a pause costs most;
//! and that saturated worker sharing one core with the control thread, as a user with few
//! cores runs it.
//!
//! With `--runs N` the cases are measured N times, and with `--idle-sleep-max A,B` (bounds in
//! µs, `default` = the binary's own) once per bound in each run, interleaved (run 1: A, B;
//! run 2: A, B; ...); the report then gives, per bound, the median (min–max) over runs of each
//! run's median, and every run's table.
//!
//! `macvtap-ctlbench [--guests 255] [--cycles 200] [--runs 1] [--idle-sleep-max default]
//!   [--switch-bin PATH] [--out FILE.md]`

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "macvtap-ctlbench", about = "Times guest add/remove/change on a running dpdk-macvtap")]
struct Args {
    /// Guests configured besides the one added and removed.
    #[arg(long, default_value_t = 255)]
    guests: usize,
    /// Add/remove cycles per case.
    #[arg(long, default_value_t = 200)]
    cycles: usize,
    #[arg(long, default_value = "target/release/dpdk-macvtap")]
    switch_bin: PathBuf,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Times to measure every case (interleaved over the bounds).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The switch's `--idle-sleep-max` per variant, µs; `default`: the binary's own.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    idle_sleep_max: Vec<String>,
}

/// One timed operation: (client round trip, switch's own time, workers' pause), microseconds.
type Sample = (u64, u64, u64);

struct Switch {
    child: Child,
    control: PathBuf,
}

impl Switch {
    fn start(bin: &Path, dir: &Path, guests: &Path, busy: bool, lcores: &str, prefix: &str, sleep: Option<u32>) -> Result<Switch> {
        let control = dir.join("control.sock");
        // net_null with no-rx=1 receives nothing (an idle worker); without it, it hands the
        // worker a full burst on every poll.
        let vdev = if busy { "net_null0" } else { "net_null0,no-rx=1" };
        let mut child = Command::new(bin)
            .args(["--no-huge", "-m", "1024", "--no-pci", "--log-level=lib.eal:warning", "--lcores", lcores])
            .arg(format!("--file-prefix={prefix}"))
            .arg(format!("--vdev={vdev}"))
            .args(["--", "--port", "0", "--stats-interval", "0", "--guests"])
            .arg(guests)
            .arg("--control")
            .arg(&control)
            .args(sleep.map(|us| vec!["--idle-sleep-max".to_owned(), us.to_string()]).unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(out).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("dpdk-macvtap: forwarding") => break,
                Some(Ok(_)) => {}
                _ => bail!("the switch exited before forwarding"),
            }
            if Instant::now() > deadline {
                bail!("the switch did not start within 60 s");
            }
        }
        // Keep reading its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Switch { child, control })
    }

    fn stop(mut self) -> Result<()> {
        // SIGINT: a clean stop, with its leak check.
        Command::new("kill").args(["-INT", &self.child.id().to_string()]).status()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the switch exited with {status}");
        }
        Ok(())
    }
}

fn call(conn: &mut BufReader<UnixStream>, method: &str, params: Value) -> Result<(Value, u64)> {
    let req = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
    let t0 = Instant::now();
    writeln!(conn.get_mut(), "{req}")?;
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let rtt = t0.elapsed().as_micros() as u64;
    let reply: Value = serde_json::from_str(&line)?;
    if let Some(e) = reply.get("error") {
        bail!("{method}: {e}");
    }
    Ok((reply["result"].clone(), rtt))
}

fn sample(conn: &mut BufReader<UnixStream>, method: &str, params: Value) -> Result<Sample> {
    let (r, rtt) = call(conn, method, params)?;
    let us = |k: &str| r[k].as_u64().ok_or_else(|| anyhow!("{method}: no {k} in {r}"));
    Ok((rtt, us("took_us")?, us("workers_paused_us")?))
}

fn guest_toml(dir: &Path, i: usize) -> String {
    format!("[[guest]]\nname = \"g{i:04}\"\nmac = \"52:54:00:10:{:02x}:{:02x}\"\nsocket = \"{}/g{i:04}.sock\"\n", i / 256, i % 256, dir.display())
}

/// (median, 90th percentile, maximum) of one column.
fn summary(samples: &[Sample], col: impl Fn(&Sample) -> u64) -> (u64, u64, u64) {
    let mut v: Vec<u64> = samples.iter().map(col).collect();
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9), at(1.0))
}

/// The cases: (uplink generates frames, --lcores, name).
const CASES: [(bool, &str, &str); 3] = [
    (false, "0@0,1@1", "idle worker"),
    (true, "0@0,1@1", "worker saturated by the uplink"),
    (true, "0@0,1@0", "saturated worker on the control thread's core"),
];
const OPS: [&str; 3] = ["guest-add", "guest-del", "guest-set mtu"];

/// Per (case index, operation index), the samples of one run.
type Rows = Vec<(usize, usize, Vec<Sample>)>;

/// One run of every case with one bound.
fn one_run(args: &Args, dir: &Path, file: &Path, sleep: Option<u32>, tag: &str) -> Result<Rows> {
    let mut out = Vec::new();
    for (i, (busy, lcores, _)) in CASES.into_iter().enumerate() {
        let sw = Switch::start(&args.switch_bin, dir, file, busy, lcores, &format!("bctl{tag}{i}"), sleep)?;
        let mut conn = BufReader::new(UnixStream::connect(&sw.control)?);
        let add = json!({ "toml": guest_toml(dir, args.guests) });
        let name = format!("g{:04}", args.guests);
        let (mut adds, mut dels, mut sets) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..args.cycles {
            adds.push(sample(&mut conn, "guest-add", add.clone())?);
            let mtu = if i % 2 == 0 { 1400 } else { 1500 };
            sets.push(sample(&mut conn, "guest-set", json!({ "name": "g0000", "set": { "mtu": mtu } }))?);
            dels.push(sample(&mut conn, "guest-del", json!({ "name": name }))?);
        }
        drop(conn);
        sw.stop()?;
        out.push((i, 0, adds));
        out.push((i, 1, dels));
        out.push((i, 2, sets));
    }
    Ok(out)
}

fn table(rows: &Rows) -> String {
    let mut t = String::from("| case | operation | round trip | switch | workers paused |\n|---|---|---|---|---|\n");
    for (c, op, s) in rows {
        let f = |(a, b, c): (u64, u64, u64)| format!("{a} / {b} / {c}");
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            CASES[*c].2,
            OPS[*op],
            f(summary(s, |x| x.0)),
            f(summary(s, |x| x.1)),
            f(summary(s, |x| x.2))
        ));
    }
    t
}

fn bound_label(b: Option<u32>) -> String {
    match b {
        None => "the binary's default --idle-sleep-max".into(),
        Some(0) => "--idle-sleep-max 0 (pure polling)".into(),
        Some(us) => format!("--idle-sleep-max {us}"),
    }
}

/// Median, min, max.
fn mmm(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    if v.len() == 1 {
        return v[0].to_string();
    }
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 };
    format!("{med} ({}–{})", v[0], v[n - 1])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bounds: Vec<Option<u32>> = args
        .idle_sleep_max
        .iter()
        .map(|b| if b == "default" { Ok(None) } else { b.parse::<u32>().map(Some).map_err(|e| anyhow!("--idle-sleep-max {b:?}: {e}")) })
        .collect::<Result<_>>()?;
    if args.runs == 0 || bounds.is_empty() {
        bail!("nothing to measure");
    }
    let dir = std::env::temp_dir().join(format!("macvtap-ctlbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("guests.toml");
    std::fs::write(&file, (0..args.guests).map(|i| guest_toml(&dir, i)).collect::<String>())?;
    let mut report = format!(
        "# Control plane: changing a running switch\n\n{} guests configured, plus one added and removed {} times per case; \
         1 worker (lcore 1; on core 1, or on core 0 with the control thread where the case says so); median / p90 / max in microseconds.\n\
         `round trip` is the client's (request written to reply read), `switch` the change on the control thread \
         (`took_us`), `workers paused` the publication (`workers_paused_us`).\n\n",
        args.guests, args.cycles
    );
    // results[run][bound] = rows
    let mut results: Vec<Vec<Rows>> = Vec::new();
    for run in 0..args.runs {
        let mut per_bound = Vec::new();
        for (k, &b) in bounds.iter().enumerate() {
            eprintln!("ctlbench: run {} / {}, {}", run + 1, args.runs, bound_label(b));
            per_bound.push(one_run(&args, &dir, &file, b, &format!("{run}x{k}x"))?);
        }
        results.push(per_bound);
    }
    let _ = std::fs::remove_dir_all(&dir);
    if args.runs == 1 && bounds.len() == 1 {
        report.push_str(&table(&results[0][0]));
    } else {
        report.push_str(&format!(
            "{} runs, interleaved over {} (run 1: each in turn; run 2: ...). First: per bound, the median (min–max) over runs \
             of each run's median, µs; then every run's table (median / p90 / max).\n\n",
            args.runs,
            bounds.iter().map(|&b| bound_label(b)).collect::<Vec<_>>().join(", ")
        ));
        for (k, &b) in bounds.iter().enumerate() {
            report.push_str(&format!("## {}: medians over runs\n\n| case | operation | round trip | switch | workers paused |\n|---|---|---|---|---|\n", bound_label(b)));
            for (row, (c, op, _)) in results[0][k].iter().enumerate() {
                let col = |f: fn(&Sample) -> u64| mmm(results.iter().map(|r| summary(&r[k][row].2, f).0).collect());
                report.push_str(&format!("| {} | {} | {} | {} | {} |\n", CASES[*c].2, OPS[*op], col(|x| x.0), col(|x| x.1), col(|x| x.2)));
            }
            report.push('\n');
        }
        report.push_str("## Every run\n\n");
        for (run, per_bound) in results.iter().enumerate() {
            for (k, &b) in bounds.iter().enumerate() {
                report.push_str(&format!("### Run {}, {}\n\n{}\n", run + 1, bound_label(b), table(&per_bound[k])));
            }
        }
    }
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
