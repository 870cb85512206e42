//! The control socket's methods (and the telemetry commands, which reuse them): JSON in,
//! JSON out, on the control thread. Every change goes through `Switch::apply`.

use std::path::Path;

use serde_json::{json, Value};

use super::change::{Applied, Batch};
use super::report::{busy_sleep_percent, control_json, guest_name, stats_json};
use super::switch::Switch;
use crate::cli::VERSION;
use crate::config::{self, GuestConfig, VhostRole, LIVE_KEYS};
use crate::control::socket::{RpcError, SUBSCRIBE};
use crate::fib::GuestId;
use crate::stats::PortCounters;

/// Every method, for `help`-like listings and the telemetry command names.
pub const METHODS: [&str; 16] = [
    "version",
    "guest-list",
    "guest-show",
    "guest-add",
    "guest-del",
    "guest-set",
    "stats",
    "lcore-show",
    "uplink-show",
    "rebalance",
    "reload",
    "config-dump",
    "announce",
    "hairpin-check",
    "hairpin-status",
    SUBSCRIBE,
];

impl Switch {
    /// Serves one request.
    pub fn call(&mut self, method: &str, params: &Value) -> Result<Value, RpcError> {
        match method {
            "version" => Ok(json!({ "version": VERSION, "dpdk": crate::rte::eal::version() })),
            "guest-list" => Ok(Value::Array(self.running.guests.iter().map(|(id, r)| self.guest_summary(id, &r.cfg)).collect())),
            "guest-show" => {
                let (id, cfg) = self.named(params)?;
                Ok(self.guest_detail(id, &cfg))
            }
            "guest-add" => self.guest_add(params),
            "guest-del" => {
                let (id, _) = self.named(params)?;
                let done = self.apply(Batch { remove: vec![id], ..Batch::default() }).map_err(refused)?;
                let last = done.removed.first();
                let mut v = json!({ "removed": last.map(|s| s.name.clone()), "counters": last.map(|s| counters_json(&s.counters)) });
                timings(&mut v, &done);
                Ok(v)
            }
            "guest-set" => self.guest_set(params),
            "stats" => match params.get("name") {
                None | Some(Value::Null) => {
                    let control = control_json(&self.running.steering, &self.running.guests, &self.asg);
                    let mut v = stats_json(&self.snapshot(), &control, self.mempool_at_start, None);
                    let side = |offload: bool| if offload { "offload" } else { "software" };
                    v["uplink_vlan"] = json!({ "rx_strip": side(self.vlan_offload.rx_strip), "tx_insert": side(self.vlan_offload.tx_insert) });
                    Ok(v)
                }
                Some(_) => {
                    let (id, cfg) = self.named(params)?;
                    let s = self.registry.guest(id).map(|s| counters_json(&s.counters));
                    Ok(json!({ "name": cfg.name, "link": link(self.watch.is_up(id)), "counters": s }))
                }
            },
            "lcore-show" => Ok(self.lcores_json()),
            "uplink-show" => Ok(self.uplink_json()),
            // The server makes the connection a subscriber once this answers.
            SUBSCRIBE => Ok(self.subscribed_json()),
            "rebalance" => match self.rebalance(true) {
                Ok(msg) => Ok(json!({ "moved": true, "message": msg })),
                Err(why) => Ok(json!({ "moved": false, "message": format!("nothing moved ({why})") })),
            },
            "reload" => self.reload().map_err(refused).map(|d| applied_json(&d)),
            "config-dump" => Ok(json!({ "toml": config::dump(&self.running.guests.configs()) })),
            "announce" => {
                let guest = match params.get("name") {
                    None | Some(Value::Null) => None,
                    Some(_) => Some(self.named(params)?.0),
                };
                Ok(json!(self.announce(guest)))
            }
            "hairpin-check" => Ok(self.hairpin_check()),
            "hairpin-status" => Ok(self.hairpin_json()),
            other => Err(RpcError::method_not_found(other)),
        }
    }

    /// The guest named by `params.name`.
    fn named(&self, params: &Value) -> Result<(GuestId, GuestConfig), RpcError> {
        let name = params.get("name").and_then(Value::as_str).ok_or_else(|| RpcError::invalid_params("expected {\"name\": GUEST}"))?;
        self.running
            .guests
            .by_name(name)
            .map(|(id, r)| (id, r.cfg.clone()))
            .ok_or_else(|| RpcError::refused(format!("guest {name:?} does not exist")))
    }

    fn guest_add(&mut self, params: &Value) -> Result<Value, RpcError> {
        let text = match (params.get("toml"), params.get("guest")) {
            (Some(Value::String(t)), None) => t.clone(),
            (None, Some(Value::Object(keys))) => {
                // The same keys as a [[guest]] table, as JSON: turned into TOML so that one
                // validator (with its messages) serves the file and the socket.
                let table: toml::Value = serde_json::from_value(Value::Object(keys.clone())).map_err(|e| RpcError::invalid_params(format!("guest: {e}")))?;
                let doc = toml::Value::Table(toml::map::Map::from_iter([("guest".to_owned(), toml::Value::Array(vec![table]))]));
                toml::to_string(&doc).map_err(|e| RpcError::invalid_params(format!("guest: {e}")))?
            }
            _ => return Err(RpcError::invalid_params("expected {\"toml\": \"[[guest]] ...\"} or {\"guest\": {KEY: VALUE, ...}}")),
        };
        let g = config::parse_addition(&text, Path::new("guest-add"), &self.running.guests.configs()).map_err(refused)?;
        let name = g.name.clone();
        let done = self.apply(Batch { add: vec![g], ..Batch::default() }).map_err(refused)?;
        let mut v = json!({ "added": name });
        timings(&mut v, &done);
        Ok(v)
    }

    fn guest_set(&mut self, params: &Value) -> Result<Value, RpcError> {
        let (id, current) = self.named(params)?;
        let Some(Value::Object(set)) = params.get("set") else {
            return Err(RpcError::invalid_params("expected {\"name\": GUEST, \"set\": {KEY: VALUE, ...}}"));
        };
        // null unsets a key (its default applies: `lcore` unpins the guest, whose queues stay
        // where they are until a rebalance moves them).
        let mut changes = Vec::with_capacity(set.len());
        for (k, v) in set {
            let v: Option<toml::Value> = serde_json::from_value(v.clone()).map_err(|e| RpcError::invalid_params(format!("{k}: {e}")))?;
            changes.push((k.clone(), v));
        }
        let others: Vec<GuestConfig> = self.running.guests.iter().filter(|(i, _)| *i != id).map(|(_, r)| r.cfg.clone()).collect();
        let next = config::apply_changes(&current, &changes, &others, Path::new("guest-set")).map_err(refused)?;
        let keys = current.changed_keys(&next);
        let fixed: Vec<&str> = keys.iter().copied().filter(|k| !LIVE_KEYS.contains(k)).collect();
        if !fixed.is_empty() {
            return Err(RpcError::refused(format!(
                "guest {:?}: {} cannot change while the guest is connected (the VM would have to reconnect): remove and add the guest, or edit the guests file and reload; live keys are {}",
                current.name,
                fixed.join(", "),
                LIVE_KEYS.join(", ")
            )));
        }
        let mut v = json!({ "changed": current.name, "keys": keys });
        if !keys.is_empty() {
            let done = self.apply(Batch { change: vec![(id, next)], ..Batch::default() }).map_err(refused)?;
            timings(&mut v, &done);
        }
        Ok(v)
    }

    /// Re-reads the guests file and applies the difference, whole or not at all.
    pub fn reload(&mut self) -> anyhow::Result<Applied> {
        let new = config::load(&self.settings.guests_file)?;
        let running = self.running.guests.configs();
        let d = config::diff(&running, &new);
        if d.is_empty() {
            println!("reload {}: no change", self.settings.guests_file.display());
            return Ok(Applied::default());
        }
        let id = |name: &str| self.running.guests.id_of(name);
        let mut b = Batch { source: Some(self.settings.guests_file.display().to_string()), ..Batch::default() };
        b.remove.extend(d.removed.iter().filter_map(|n| id(n)));
        for (name, i) in &d.recreated {
            b.remove.extend(id(name));
            b.add.push(new.guests[*i].clone());
        }
        b.add.extend(d.added.iter().map(|&i| new.guests[i].clone()));
        b.change.extend(d.changed.iter().filter_map(|(name, i)| id(name).map(|g| (g, new.guests[*i].clone()))));
        let summary = format!(
            "reload {}: {} added, {} removed, {} changed, {} re-created",
            self.settings.guests_file.display(),
            d.added.len(),
            d.removed.len(),
            d.changed.len(),
            d.recreated.len()
        );
        let mut done = self.apply(b)?;
        // The guests re-created are reported as such, not as added and removed; one whose new
        // socket could not start (see `change`) stays among the removed, with its reason in
        // `failed`.
        let recreated: Vec<String> = d.recreated.iter().map(|(n, _)| n.clone()).filter(|n| done.added.contains(n)).collect();
        done.added.retain(|n| !recreated.contains(n));
        done.removed.retain(|s| !recreated.contains(&s.name));
        println!("{summary}");
        done.recreated = recreated;
        Ok(done)
    }

    fn guest_summary(&self, id: GuestId, g: &GuestConfig) -> Value {
        json!({
            "name": g.name,
            "macs": g.macs.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "socket": g.socket.display().to_string(),
            "vhost": role(g),
            "mode": g.mode.to_string(),
            "mtu": g.mtu,
            "vlan": (g.vlan != 0).then_some(g.vlan),
            "queues": g.queues,
            "link": link(self.watch.is_up(id)),
        })
    }

    fn guest_detail(&self, id: GuestId, g: &GuestConfig) -> Value {
        let mut v = self.guest_summary(id, g);
        let d = &self.asg.delivery;
        let lcore_of = |q: u16| self.asg.workers.get(d.owner(id.index(), q)).map(|w| w.lcore);
        v["lcore"] = json!(g.lcore);
        if g.mode == crate::policy::Mode::Source {
            v["sources"] = json!(g.sources.iter().map(|m| m.to_string()).collect::<Vec<_>>());
        }
        v["active_queues"] = json!(self.links.active_queues(id.index()));
        v["queue_lcores"] = Value::Array((0..g.queues).map(|q| json!({ "queue": q, "lcore": lcore_of(q) })).collect());
        v["steering"] = json!(self.running.steering.guest(id).map(|s| s.to_string()));
        v["counters"] = json!(self.registry.guest(id).map(|s| counters_json(&s.counters)));
        v
    }

    fn lcores_json(&self) -> Value {
        let snap = self.registry.snapshot();
        Value::Array(
            self.asg
                .workers
                .iter()
                .enumerate()
                .map(|(w, plan)| {
                    let (busy, sleep) = busy_sleep_percent(&snap, w);
                    let blocked = snap.workers.get(w).map(|s| s.percent_of_time(s.blocked_cycles));
                    let per_copy = snap.workers.get(w).filter(|s| s.enqueue_calls > 0).map(|s| s.enqueue_frames as f64 / s.enqueue_calls as f64);
                    json!({
                        "lcore": plan.lcore,
                        "busy_percent": (busy * 10.0).round() / 10.0,
                        "sleep_percent": (sleep * 10.0).round() / 10.0,
                        "blocked_percent": blocked.map(|b| (b * 10.0).round() / 10.0),
                        "wakes": snap.workers.get(w).map(|s| s.wakes),
                        "frames_per_copy": per_copy.map(|f| (f * 10.0).round() / 10.0),
                        "uplink_rx": plan.uplink_rx,
                        "uplink_tx": plan.uplink_tx,
                        "guest_queues": plan.guest_queues.iter().map(|&(g, q)| json!({ "guest": guest_name(&self.running.guests, g), "queue": q })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    }
}

fn role(g: &GuestConfig) -> &'static str {
    match g.vhost {
        VhostRole::Server => "server",
        VhostRole::Client => "client",
    }
}

fn link(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

pub fn counters_json(c: &PortCounters) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn applied_json(d: &Applied) -> Value {
    let mut v = json!({
        "added": d.added,
        "removed": d.removed.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "changed": d.changed,
        "recreated": d.recreated,
        "failed": d.failed,
    });
    timings(&mut v, d);
    v
}

/// How long a change took and how long the workers paused for it, in microseconds.
fn timings(v: &mut Value, d: &Applied) {
    v["took_us"] = json!(d.took.as_micros() as u64);
    v["workers_paused_us"] = json!(d.paused.as_micros() as u64);
}

/// A refusal: the error's whole chain, on one line.
fn refused(e: impl Into<anyhow::Error>) -> RpcError {
    RpcError::refused(format!("{:#}", e.into()))
}
