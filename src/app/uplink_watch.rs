//! Following the uplink's link, and the event stream's queue.
//!
//! The control thread reads the link every round (`rte_eth_link_get_nowait`: for a port with
//! link-state interrupts a copy of what its interrupt handler stored, else the driver's own
//! look, e.g. an ioctl for net_af_packet). Where the port has the interrupt, its callback
//! wakes the control thread, so a change is seen at once rather than within a round. A
//! change is printed, counted, sent to event subscribers and published to the workers
//! (`Tables::uplink_up`): while down they take nothing from guests (`datapath::link_down`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::report::guest_name;
use super::switch::Switch;
use crate::control::events::Event;
use crate::control::uplink_link::{Detection, Seen, UplinkLink};
use crate::rte::kernel_if::KernelIface;
use crate::rte::link_events::LinkEvents;
use crate::rte::{Link, Port, PortInfo};

/// The uplink's link at start (the port started), and the kernel interface read with it.
pub(super) fn first_look(port: &Port, info: &PortInfo, up_delay: Duration) -> (UplinkLink, Option<KernelIface>) {
    let detection = if info.lsc { Detection::Interrupt } else { Detection::Polling };
    let iface = kernel_iface(info);
    let mut link = UplinkLink::new(read_link(port, iface.as_ref()), detection, SystemTime::now());
    link.kernel_iface = iface.as_ref().map(KernelIface::name);
    link.up_delay = up_delay;
    (link, iface)
}

/// The kernel interface behind the uplink, if it has one the switch can ask (a failure is
/// reported and the port's own report stands alone).
fn kernel_iface(info: &PortInfo) -> Option<KernelIface> {
    if info.if_index == 0 {
        return None;
    }
    KernelIface::from_index(info.if_index)
        .map_err(|e| eprintln!("dpdk-macvtap: warning: uplink's kernel interface #{} cannot be asked for its carrier ({e}); following the port's own link report", info.if_index))
        .ok()
}

/// The uplink's link: what the port says, and down as well when the kernel interface behind
/// it is down or has no carrier (DPDK 22.11's net_af_packet reports up whatever it does).
fn read_link(port: &Port, iface: Option<&KernelIface>) -> Result<Link, String> {
    let mut l = port.link_status().map_err(|e| e.to_string())?;
    if let Some(k) = iface {
        l.up &= k.running().map_err(|e| format!("kernel interface {}: {e}", k.name()))?;
    }
    Ok(l)
}

impl Switch {
    /// Where the uplink raises link-state interrupts, has them wake the control thread
    /// through `wake` (the control socket's waker; without one the round's timeout bounds
    /// the delay). A failure leaves polling, which works either way.
    pub fn watch_uplink_interrupts(&mut self, wake: Option<Arc<mio::Waker>>) {
        if self.uplink_link.detection != Detection::Interrupt {
            return;
        }
        let notify = move || {
            if let Some(w) = &wake {
                // A failed wake only delays the look to the next round.
                let _ = w.wake();
            }
        };
        match LinkEvents::register(&self.running.uplink, Arc::new(notify)) {
            Ok(reg) => self.running.link_events = Some(reg),
            Err(e) => {
                eprintln!("dpdk-macvtap: warning: uplink link-state interrupt not available ({e}); polling the link instead");
                self.uplink_link.detection = Detection::Polling;
            }
        }
    }

    /// One look at the uplink's link: on a change, the line to print (also queued as an
    /// event and published to the workers). Returns whether the state changed.
    pub(super) fn poll_uplink(&mut self) -> bool {
        let now = SystemTime::now();
        let bond_down = self.bond.as_ref().is_some_and(|b| b.carrier_lost());
        let seen = read_link(&self.running.uplink, self.uplink_iface.as_ref()).map(|mut l| {
            // A bond over members that never report their link says up; their carriers say.
            l.up &= !bond_down;
            l
        });
        match self.uplink_link.observe(seen, now, std::time::Instant::now()) {
            Seen::Same | Seen::Error => false,
            Seen::FirstError(e) => {
                eprintln!("dpdk-macvtap: warning: uplink link state unavailable ({e}); keeping {}", self.uplink_link.describe());
                false
            }
            Seen::Changed => {
                let l = &self.uplink_link;
                println!("uplink: {}", l.describe());
                let ev = Event::UplinkLink { up: l.link.up, speed_mbps: l.speed(), full_duplex: l.link.full_duplex };
                self.pending_events.push((now, ev));
                self.republish();
                if self.uplink_link.link.up {
                    self.on_uplink_up();
                }
                true
            }
        }
    }

    /// The link came back: besides forwarding again, every guest MAC is re-announced (a RARP
    /// per MAC, in rounds), so the external switch, which may have flushed or moved them while
    /// the link was down, relearns at once which port they are on.
    fn on_uplink_up(&mut self) {
        let a = self.announce_all();
        println!("uplink: re-announcing {} MAC(s) of {} guest(s), {} rounds", a.macs, a.guests, a.rounds);
    }

    /// The current guests and assignment again, with the current link state: the one
    /// publication path carries `Tables::uplink_up` to the workers.
    fn republish(&mut self) {
        let configs: Vec<_> = self.running.guests.iter().map(|(id, r)| (id, r.cfg.clone())).collect();
        match self.build_tables(configs.iter().map(|(id, g)| (*id, g)), self.asg.delivery.clone()) {
            Ok(tables) => self.publish(tables),
            // The running guests passed validation together: this cannot happen; the workers
            // keep what they run on, and the next change retries.
            Err(e) => eprintln!("dpdk-macvtap: internal error: uplink link change not published: {e:#}"),
        }
    }

    /// Queues `guest-added` / `guest-removed` events for a batch that applied.
    pub(super) fn note_applied(&mut self, removed: &[String], added: &[String]) {
        let now = SystemTime::now();
        self.pending_events.extend(removed.iter().map(|g| (now, Event::GuestRemoved { guest: g.clone() })));
        self.pending_events.extend(added.iter().map(|g| (now, Event::GuestAdded { guest: g.clone() })));
    }

    /// The events since the last call, as notification params, oldest first.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.pending_events.drain(..).map(|(at, ev)| ev.params(at)).collect()
    }

    /// `events.subscribe`: the state the events that follow change.
    pub(super) fn subscribed_json(&self) -> Value {
        let guests: Vec<Value> = self
            .running
            .guests
            .ids()
            .into_iter()
            .map(|g| json!({ "guest": guest_name(&self.running.guests, g.index()), "state": if self.watch.is_up(g) { "up" } else { "down" } }))
            .collect();
        json!({ "subscribed": true, "uplink": self.uplink_link.json(), "guests": guests })
    }

    /// `uplink-show`: the port and its link.
    pub(super) fn uplink_json(&self) -> Value {
        let port = &self.running.uplink;
        let info = port.info().ok();
        json!({
            "port": port.id().0,
            "name": port.name(),
            "driver": info.as_ref().map(|i| i.driver.clone()),
            "mac": port.mac().ok().map(|m| crate::wire::MacAddr::new(m).to_string()),
            "mtu": self.uplink_mtu,
            "link": self.uplink_link.json(),
        })
    }
}
