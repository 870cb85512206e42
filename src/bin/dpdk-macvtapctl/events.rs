//! `dpdk-macvtapctl events`: subscribes to the switch's event stream and prints one line per
//! event until interrupted (or until the switch closes the connection).
//!
//! Unlike every other command this keeps the connection: after the reply to
//! `events.subscribe` (the state the events then change, printed first) the switch sends one
//! JSON-RPC notification per line. `--timeout` bounds connecting and that reply; the events
//! themselves may be hours apart.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::args::Cli;
use crate::rpc::{self, RpcError};

const SUBSCRIBE: &str = "events.subscribe";
const ID: u64 = 1;

pub fn run(cli: &Cli) -> ExitCode {
    match stream(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dpdk-macvtapctl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn stream(cli: &Cli) -> Result<ExitCode, RpcError> {
    let timeout = Duration::from_secs(cli.timeout);
    let deadline = Instant::now() + timeout;
    let path = cli.control_path();
    let mut sock = rpc::connect(&path, timeout)?;
    rpc::send(&mut sock, rpc::request_line(SUBSCRIBE, None, ID).as_bytes(), deadline, timeout)?;
    let io = |what| move |source| RpcError::Io { what, source };
    sock.set_read_timeout(Some(timeout)).map_err(io("cannot read the reply"))?;
    // Buffered, so that events arriving with the reply are not lost.
    let mut reader = BufReader::new(sock);
    let mut line = Vec::new();
    match reader.read_until(b'\n', &mut line) {
        Ok(0) => return Err(RpcError::Closed),
        Ok(_) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return Err(RpcError::Timeout { timeout }),
        Err(e) => return Err(io("cannot read the reply")(e)),
    }
    let state = rpc::parse_reply(trim(&line), ID)?;
    if !emit(&if cli.json { String::from_utf8_lossy(trim(&line)).into_owned() } else { subscribed(&path.display().to_string(), &state) }) {
        return Ok(ExitCode::SUCCESS);
    }
    reader.get_ref().set_read_timeout(None).map_err(io("cannot read events"))?;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                eprintln!("dpdk-macvtapctl: the switch closed the event stream");
                return Ok(ExitCode::from(1));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("cannot read events")(e)),
        }
        let text = if cli.json {
            String::from_utf8_lossy(trim(&line)).into_owned()
        } else {
            match serde_json::from_slice::<Value>(trim(&line)) {
                Ok(v) if v["method"] == "event" => event(&v["params"]),
                // A reply or anything else the switch may add: shown as it came.
                _ => String::from_utf8_lossy(trim(&line)).into_owned(),
            }
        };
        if !emit(&text) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Prints one line now (a pipe reader such as `while read` sees it at once); false when the
/// reader has gone, which ends the command without an error.
fn emit(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|()| out.flush()).is_ok()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

/// `uplink link up (10000 Mb/s, full duplex)`, `uplink link down`.
fn uplink(v: &Value) -> String {
    if s(v, "state") != "up" {
        return format!("uplink link {}", s(v, "state"));
    }
    let speed = v.get("speed_mbps").and_then(Value::as_u64).map_or_else(|| "speed unknown".to_owned(), |m| format!("{m} Mb/s"));
    format!("uplink link up ({speed}, {} duplex)", s(v, "duplex"))
}

/// The first line: `subscribed to events of PATH: uplink link up (...); guests vm1 up, vm2 down`.
fn subscribed(path: &str, state: &Value) -> String {
    let guests: Vec<String> = state["guests"].as_array().map_or_else(Vec::new, |gs| gs.iter().map(|g| format!("{} {}", s(g, "guest"), s(g, "state"))).collect());
    let guests = if guests.is_empty() { "no guests".to_owned() } else { format!("guests {}", guests.join(", ")) };
    format!("subscribed to events of {path}: {}; {guests}", uplink(&state["uplink"]))
}

/// `TIME uplink link down`, `TIME guest vm1 link up`, `TIME guest vm3 added`.
fn event(p: &Value) -> String {
    let what = match s(p, "event") {
        "uplink-link" => uplink(p),
        "guest-link" => format!("guest {} link {}", s(p, "guest"), s(p, "state")),
        "guest-added" => format!("guest {} added", s(p, "guest")),
        "guest-removed" => format!("guest {} removed", s(p, "guest")),
        _ => p.to_string(),
    };
    format!("{} {what}", s(p, "time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_as_one_line_each() {
        let t = "2026-12-01T18:40:05.123Z";
        assert_eq!(event(&json!({"time": t, "event": "uplink-link", "state": "down", "speed_mbps": null, "duplex": null})), format!("{t} uplink link down"));
        assert_eq!(event(&json!({"time": t, "event": "uplink-link", "state": "up", "speed_mbps": 10000, "duplex": "full"})), format!("{t} uplink link up (10000 Mb/s, full duplex)"));
        assert_eq!(event(&json!({"time": t, "event": "uplink-link", "state": "up", "speed_mbps": null, "duplex": "full"})), format!("{t} uplink link up (speed unknown, full duplex)"));
        assert_eq!(event(&json!({"time": t, "event": "guest-link", "guest": "vm1", "state": "up"})), format!("{t} guest vm1 link up"));
        assert_eq!(event(&json!({"time": t, "event": "guest-added", "guest": "vm3"})), format!("{t} guest vm3 added"));
        assert_eq!(event(&json!({"time": t, "event": "guest-removed", "guest": "vm3"})), format!("{t} guest vm3 removed"));
        assert_eq!(event(&json!({"time": t, "event": "new-kind", "x": 1})), format!(r#"{t} {{"event":"new-kind","time":"{t}","x":1}}"#));
        let state = json!({"subscribed": true, "uplink": {"state": "down"}, "guests": [{"guest": "vm1", "state": "up"}, {"guest": "vm2", "state": "down"}]});
        assert_eq!(subscribed("/run/c.sock", &state), "subscribed to events of /run/c.sock: uplink link down; guests vm1 up, vm2 down");
        assert_eq!(subscribed("/c", &json!({"uplink": {"state": "up", "speed_mbps": 100, "duplex": "half"}, "guests": []})), "subscribed to events of /c: uplink link up (100 Mb/s, half duplex); no guests");
    }
}
