//! DPDK telemetry commands of the switch (`dpdk-telemetry.py`: `/macvtap/guests`,
//! `/macvtap/guest,NAME`, `/macvtap/lcores`, `/macvtap/uplink`, `/macvtap/stats`,
//! `/macvtap/version`).
//!
//! The library calls them on its own thread; the switch's state lives on the control thread.
//! So a command becomes a request on a channel, the control loop answers it between two
//! rounds (woken at once through the control socket's waker), and the telemetry thread
//! waits for the answer with a deadline: a busy control thread costs a telemetry client a
//! timeout, never the switch a lock.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};

use crate::rte::telemetry::{self, TelemetryHandler};

/// How long a telemetry client waits for the control thread.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The commands, the control socket method each one runs, and its help text.
const COMMANDS: [(&str, &str, &str); 6] = [
    ("/macvtap/version", "version", "Returns the dpdk-macvtap and DPDK versions."),
    ("/macvtap/guests", "guest-list", "Returns every guest: name, MACs, socket, mode, MTU, queues, link."),
    ("/macvtap/guest", "guest-show", "Returns one guest's configuration, queues and counters. Parameter: guest name."),
    ("/macvtap/lcores", "lcore-show", "Returns each forwarding lcore's queues and busy share."),
    ("/macvtap/uplink", "uplink-show", "Returns the uplink port and its link: state, speed, since when, changes."),
    ("/macvtap/stats", "stats", "Returns the switch's counters, or one guest's. Parameter (optional): guest name."),
];

pub struct Request {
    pub method: &'static str,
    pub params: Value,
    reply: Sender<Value>,
}

impl Request {
    pub fn answer(self, v: Value) {
        // The client may have timed out and gone: nothing to do then.
        let _ = self.reply.send(v);
    }
}

/// The telemetry thread's side.
struct Forward {
    to_control: Sender<Request>,
    wake: Option<Arc<mio::Waker>>,
}

impl TelemetryHandler for Forward {
    fn call(&self, cmd: &str, params: &str) -> Value {
        let Some(&(_, method, _)) = COMMANDS.iter().find(|(c, _, _)| *c == cmd) else {
            return json!({ "error": format!("unknown command {cmd}") });
        };
        let params = if params.is_empty() { Value::Null } else { json!({ "name": params }) };
        let (reply, answer) = crossbeam_channel::bounded(1);
        if self.to_control.send(Request { method, params, reply }).is_err() {
            return json!({ "error": "the switch is stopping" });
        }
        if let Some(w) = &self.wake {
            let _ = w.wake();
        }
        match answer.recv_timeout(ANSWER_WITHIN) {
            Ok(v) => keyed(method, v),
            Err(_) => json!({ "error": "the control thread did not answer in time" }),
        }
    }
}

/// Telemetry arrays hold only numbers or strings, so a list of objects is given as an
/// object keyed by what names each entry (a guest's name, an lcore's id).
fn keyed(method: &str, v: Value) -> Value {
    let key = match method {
        "guest-list" => "name",
        "lcore-show" => "lcore",
        _ => return v,
    };
    match v {
        Value::Array(items) => Value::Object(
            items
                .into_iter()
                .map(|item| {
                    let k = match &item[key] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k, item)
                })
                .collect(),
        ),
        other => other,
    }
}

/// Registers the commands; returns where their requests arrive. A failure is reported and
/// the switch runs without them (telemetry is a view, not a function of the switch).
pub fn register(wake: Option<Arc<mio::Waker>>) -> Option<Receiver<Request>> {
    let (to_control, requests) = crossbeam_channel::unbounded();
    if let Err(e) = telemetry::set_handler(Box::new(Forward { to_control, wake })) {
        eprintln!("dpdk-macvtap: warning: telemetry commands not available: {e}");
        return None;
    }
    for (cmd, _, help) in COMMANDS {
        if let Err(e) = telemetry::register(cmd, help) {
            eprintln!("dpdk-macvtap: warning: telemetry command {cmd} not registered: {e}");
        }
    }
    Some(requests)
}
