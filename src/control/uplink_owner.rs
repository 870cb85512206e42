//! The uplink as the passthru and source modes need it. While a guest in either mode exists
//! the port is promiscuous (and all-multicast): a passthru guest takes every frame on the
//! wire, and a source-mode guest frames between other stations, neither of which a port
//! filtering by the guests' MACs would let in. While a passthru guest exists, its MAC becomes
//! the port's own (as Linux's macvlan passthru sets the lower device's address), where the
//! port allows; the port's own MAC comes back when the guest goes and at exit. A refusal is
//! printed and the switch goes on: promiscuous, the guest receives anyway.
//!
//! Thread: the control thread, after start-up, after every change of the guest set, and at
//! stop (before the port closes).

use crate::config::GuestConfig;
use crate::policy::Mode;
use crate::rte::{Port, RteError};
use crate::wire::MacAddr;

/// What this module changed on the port, so it can undo exactly that.
#[derive(Debug, Default)]
pub struct UplinkOwner {
    /// The port's MAC before anything was set (None if the port would not say).
    original: Option<MacAddr>,
    /// The passthru guest's MAC this module last tried to set, and whether the port took it.
    wanted: Option<(MacAddr, bool)>,
    /// Promiscuous mode was turned on here (steering may also need it: see `sync`).
    promiscuous: bool,
}

impl UplinkOwner {
    pub fn new(port: &Port) -> UplinkOwner {
        UplinkOwner { original: port.mac().ok().map(MacAddr::new), ..UplinkOwner::default() }
    }

    /// Brings the port in line with `guests` (the guests now published); `steering_needs`:
    /// steering made the port promiscuous for its own reasons, so it stays so. Returns the
    /// lines to print.
    pub fn sync<'a>(&mut self, port: &Port, guests: impl IntoIterator<Item = &'a GuestConfig>, steering_needs: bool) -> Vec<String> {
        let mut lines = Vec::new();
        let mut why: Option<&GuestConfig> = None;
        let mut passthru: Option<&GuestConfig> = None;
        for g in guests {
            match g.mode {
                Mode::Passthru => passthru = Some(g),
                Mode::Source if why.is_none() => why = Some(g),
                _ => {}
            }
        }
        let why = passthru.or(why);
        match (why, self.promiscuous) {
            (Some(g), false) => {
                // Multicast is admitted at start already (steering); asked again for a port
                // that forgot it across a mode change is harmless.
                let _ = port.set_allmulticast(true);
                match port.set_promiscuous(true) {
                    Ok(()) => {
                        self.promiscuous = true;
                        lines.push(format!("uplink: promiscuous (guest {} is in mode {})", g.name, g.mode));
                    }
                    Err(e) => lines.push(format!("uplink: promiscuous mode refused ({}): guest {} (mode {}) gets only what the port admits", why_not(&e), g.name, g.mode)),
                }
            }
            (None, true) => {
                self.promiscuous = false;
                if steering_needs {
                    lines.push("uplink: stays promiscuous (its MAC filters refused a guest's MAC: see uplink admission)".to_owned());
                } else {
                    match port.set_promiscuous(false) {
                        Ok(()) => lines.push("uplink: promiscuous off (no guest in mode passthru or source)".to_owned()),
                        Err(e) => lines.push(format!("uplink: promiscuous off refused ({})", why_not(&e))),
                    }
                }
            }
            _ => {}
        }
        let want = passthru.map(|g| (g.primary_mac(), g.name.as_str()));
        match (want, self.wanted) {
            (Some((mac, _)), Some((had, _))) if mac == had => {}
            (Some((mac, name)), _) => {
                let took = port.set_default_mac(mac.octets());
                lines.push(match &took {
                    Ok(()) => format!("uplink: MAC set to {mac} (passthru guest {name})"),
                    Err(e) => format!("uplink: MAC not set to {mac} (passthru guest {name}): {}; the port keeps {}", why_not(e), self.shown_original()),
                });
                self.wanted = Some((mac, took.is_ok()));
            }
            (None, Some(_)) => lines.extend(self.restore(port)),
            (None, None) => {}
        }
        lines
    }

    /// Before the guests of a change are steered: gives the port its own MAC back if the
    /// passthru guest whose MAC it carries is gone or changes (`passthru_after`: the passthru
    /// guest's MAC once the change is done). Steering a guest that takes that MAC (the
    /// passthru guest itself in another mode, or a new guest) would otherwise add it as a
    /// filter while it is still the port's own address, which the port takes as done, and
    /// `sync` restoring the port's MAC afterwards would overwrite it. Returns what to print.
    pub fn let_go_of_mac(&mut self, port: &Port, passthru_after: Option<MacAddr>) -> Option<String> {
        match self.wanted {
            Some((had, _)) if passthru_after != Some(had) => self.restore(port),
            _ => None,
        }
    }

    /// At exit: the port as it was found (its own MAC; promiscuous off unless `steering_needs`
    /// it), before it closes. Returns the lines to print.
    pub fn release(&mut self, port: &Port, steering_needs: bool) -> Vec<String> {
        self.sync(port, [], steering_needs)
    }

    /// Gives the port its own MAC back, if a passthru guest's was set; returns what to print.
    fn restore(&mut self, port: &Port) -> Option<String> {
        let (_, took) = self.wanted.take()?;
        let orig = self.original.filter(|_| took)?;
        Some(match port.set_default_mac(orig.octets()) {
            Ok(()) => format!("uplink: MAC restored to {orig}"),
            Err(e) => format!("uplink: MAC not restored to {orig}: {}", why_not(&e)),
        })
    }

    fn shown_original(&self) -> String {
        self.original.map_or_else(|| "its own".to_owned(), |m| m.to_string())
    }
}

fn why_not(e: &RteError) -> String {
    if e.is_unsupported() {
        format!("{}: not supported by the port", e.op)
    } else {
        format!("{}: {}", e.op, crate::rte::error::strerror(e.errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before a change's guests are steered, the port gives back a passthru guest's MAC only
    /// if the change drops it (the guest goes or leaves passthru), once, and `sync` then has
    /// nothing left to do for it.
    #[test]
    fn a_passthru_guests_mac_is_let_go_only_when_the_change_drops_it() {
        crate::rte::testing::eal();
        let port = Port::probe("net_null_owner").expect("net_null");
        let own = port.mac().expect("the port's MAC");
        let text = "[[guest]]\nname = \"pt\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/t/pt.sock\"\nmode = \"passthru\"\n";
        let cfg = crate::config::parse_str(text, std::path::Path::new("t.toml")).expect("config");
        let pt = &cfg.guests[0];
        let mut owner = UplinkOwner::new(&port);
        let lines = owner.sync(&port, [pt], false);
        assert!(lines.contains(&"uplink: MAC set to 52:54:00:00:00:01 (passthru guest pt)".to_owned()), "{lines:?}");
        assert_eq!(port.mac().expect("mac"), pt.primary_mac().octets());
        assert_eq!(owner.let_go_of_mac(&port, Some(pt.primary_mac())), None, "the passthru guest stays");
        assert_eq!(port.mac().expect("mac"), pt.primary_mac().octets());
        assert_eq!(owner.let_go_of_mac(&port, None), Some(format!("uplink: MAC restored to {}", MacAddr::new(own))));
        assert_eq!(port.mac().expect("mac"), own);
        assert_eq!(owner.let_go_of_mac(&port, None), None, "given back once");
        let lines = owner.sync(&port, [], false);
        assert!(!lines.iter().any(|l| l.contains("MAC")), "{lines:?}");
    }
}
