//! The application: a running [`Switch`] and the control loop that serves it.
//!
//! - `switch`: what the running switch holds, start-up, teardown order, and `publish`, the
//!   one way its state reaches the workers;
//! - `change`: applying a batch of guest changes (reload, add, remove, set) whole or not at all;
//! - `requests`: the control socket's methods;
//! - `tick`: periodic jobs and signals; `uplink_watch`: the uplink's link and the event
//!   stream's queue; `telemetry`: DPDK telemetry commands; `metrics`: the
//!   OpenMetrics document;
//! - `guests`, `uplink`, `sizing`, `workers`, `report`: the running guests and their sockets,
//!   the uplink's set-up, the pool's size, the workers' launch and stop, and what is printed
//!   and exported;
//! - `originate`, `announce`, `hairpin`: frames the switch itself sends on the uplink (through
//!   the workers), MAC re-announcements, and the VEPA hairpin self-test.

mod announce;
mod bond;
mod change;
mod guests;
mod hairpin;
mod metrics;
mod originate;
mod report;
mod requests;
mod sizing;
mod switch;
mod telemetry;
mod tick;
mod uplink;
mod uplink_watch;
mod workers;

use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::cli::Cli;
use crate::config;
use crate::control::metrics_http::MetricsServer;
use crate::control::socket::{ControlServer, SocketAccess};
use crate::control::Signals;

pub use requests::METHODS;
pub use announce::Announced;
pub use switch::{ExitReport, Switch};

/// How long the control thread waits for a request before looking at links, timers and
/// signals again.
const CONTROL_TICK: Duration = Duration::from_millis(20);

pub fn run(cli: Cli, eal_args: Vec<String>) -> Result<ExitReport> {
    let cfg = config::load(&cli.guests)?;
    let access = control_access(&cli)?;
    let signals = Signals::install().context("installing signal handlers")?;
    // Bound before the switch starts: a second switch on the same socket is refused before it
    // touches EAL, and a client that connects early is answered once the switch runs.
    let mut server = match access {
        Some(a) => Some(ControlServer::bind(&cli.control, &a)?),
        None => None,
    };
    if let Some(s) = &server {
        println!("control socket: {}", s.path().display());
    }
    let mut metrics = cli.metrics.as_ref().map(MetricsServer::bind).transpose()?;
    if let Some(m) = &metrics {
        println!("metrics: {}", m.url());
    }
    let mut switch = Switch::start(&cli, &eal_args, cfg)?;
    // systemd (Type=notify): the guests' sockets exist and the workers forward.
    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&switch.status_line())]);
    let requests = telemetry::register(server.as_ref().map(ControlServer::waker));
    switch.watch_uplink_interrupts(server.as_ref().map(ControlServer::waker));
    let mut timers = tick::Timers::new(&switch);
    while !signals.stop_requested() {
        match &mut server {
            Some(s) => s.serve(CONTROL_TICK, &mut |method, params| switch.call(method, params)),
            None => std::thread::sleep(CONTROL_TICK),
        }
        if let Some(m) = &mut metrics {
            m.serve(&mut || switch.metrics_text());
        }
        if let Some(rx) = &requests {
            while let Ok(req) = rx.try_recv() {
                let answer = switch.call(req.method, &req.params).unwrap_or_else(|e| serde_json::json!({ "error": e.message }));
                req.answer(answer);
            }
        }
        if switch.tick(&mut timers, &signals) {
            notify(&[sd_notify::NotifyState::Status(&switch.status_line())]);
        }
        // Taken every round, subscribers or not, so they never pile up.
        for event in switch.take_events() {
            if let Some(s) = &mut server {
                s.notify(crate::control::events::METHOD, &event);
            }
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    // The sockets go first: nobody can ask for a change of a switch that is stopping.
    drop(server);
    drop(metrics);
    switch.stop()
}

/// Tells systemd (when it started us with `Type=notify`: `$NOTIFY_SOCKET` is set); a failure
/// to tell it is not the switch's failure.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        eprintln!("dpdk-macvtap: warning: notifying systemd: {e}");
    }
}

/// The control socket's owner, group and mode, resolved before anything starts (None: no
/// socket).
fn control_access(cli: &Cli) -> Result<Option<SocketAccess>> {
    if cli.no_control {
        return Ok(None);
    }
    let owner = cli.control_owner.as_deref().map(config::resolve_user).transpose().map_err(|e| anyhow!("--control-owner: {e}"))?;
    let group = cli.control_group.as_deref().map(config::resolve_group).transpose().map_err(|e| anyhow!("--control-group: {e}"))?;
    Ok(Some(SocketAccess { owner, group, mode: cli.control_mode }))
}
