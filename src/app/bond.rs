//! A bonded uplink: DPDK's bonding PMD (`net_bonding`) over member ports. The switch uses the
//! bond as any other port; what it adds is here, all on the control thread:
//!
//! - refusing a bond *member* as the uplink (the bond drives its members: a switch polling
//!   one directly would take its frames away from the bond, or fight over its queues);
//! - for 802.3ad, LACP frames on dedicated queues where every member allows it, else through
//!   the data queues with a tx burst on idle passes too (the bond sends LACP frames only from
//!   inside tx bursts; see `TxQueue::kick`);
//! - active-backup over `net_af_packet` members, which never report a link change: following
//!   their kernel interfaces' carrier and moving the bond off a member that lost it (and back
//!   to the primary `--bond-up-delay` after its carrier returned);
//! - the start-up line, and a line when a carrier, the member in use or the LACP aggregation
//!   changes.
//!
//! Otherwise the bond itself detects member links (interrupts, or polling members without
//! them) and fails over; it sees only what the member's PMD reports.

use std::time::{Duration, Instant};

use crate::rte::bond::{Bond, BondMode};
use crate::rte::ethdev::port_name;
use crate::rte::kernel_if::KernelIface;
use crate::rte::{Port, PortId, TxQueue};

/// The bond members named in one devargs string (`net_bonding0,mode=1,slave=A,slave=B`):
/// DPDK 22.11 says `slave=`, later versions `member=`. None if it is not a bond.
fn members_in(devargs: &str) -> Option<(&str, Vec<&str>)> {
    let mut parts = devargs.split(',');
    let name = parts.next()?.trim();
    if !(name.starts_with("net_bonding") || name.starts_with("eth_bond")) {
        return None;
    }
    let members = parts.filter_map(|kv| kv.split_once('=')).filter(|(k, _)| matches!(k.trim(), "slave" | "member")).map(|(_, v)| v.trim()).collect();
    Some((name, members))
}

/// Refuses an uplink that is a member of a bond named in `devargs` (the `--vdev` values and
/// the `--port` spec). A member is named by its port name (`net_af_packet0`, a PCI address)
/// or port id.
pub fn refuse_member(uplink: &Port, devargs: &[String]) -> Result<(), String> {
    let id = uplink.id().to_string();
    for d in devargs {
        let Some((bond, members)) = members_in(d) else { continue };
        if members.iter().any(|&m| m == uplink.name() || m == id) {
            return Err(format!(
                "--port: port {id} ({}) is a member of bond {bond} ({d}): the bond drives its members; give the bond as the uplink (its port id, or its devargs)",
                uplink.name()
            ));
        }
    }
    Ok(())
}

/// A member as printed: `0 net_af_packet0`.
fn member_name(id: PortId) -> String {
    format!("{id} {}", port_name(id).unwrap_or_else(|_| "?".to_owned()))
}

fn list(ids: &[PortId]) -> String {
    format!("[{}]", ids.iter().map(|&m| member_name(m)).collect::<Vec<_>>().join(", "))
}

/// The kernel interface behind a `net_af_packet` member, from its `--vdev` devargs.
fn af_packet_iface(member: &str, devargs: &[String]) -> Option<String> {
    let d = devargs.iter().find(|d| d.split(',').next().map(str::trim) == Some(member))?;
    super::uplink::af_packet_args(d)?.find(|(k, _)| k.trim() == "iface").map(|(_, v)| v.trim().to_owned())
}

/// Whether kernel interface `iface` is up with carrier (down, or gone, counts as none): the
/// same question the link watcher asks of the uplink's own interface.
fn carrier(iface: &KernelIface) -> bool {
    iface.running().unwrap_or(false)
}

/// A member whose PMD never reports a link change (DPDK 22.11's net_af_packet says "up"
/// from start to stop), followed through its kernel interface's carrier instead.
struct Watched {
    id: PortId,
    iface: KernelIface,
    /// The carrier as the bond uses it: the kernel's, a carrier that came back once it held
    /// for `up_delay`.
    carrier: bool,
    /// Since when the kernel's carrier differs from `carrier`.
    changed: Option<Instant>,
}

/// The bond the uplink is, as the control thread follows it.
pub struct BondUplink {
    bond: Bond,
    mode: BondMode,
    /// 802.3ad without dedicated queues: workers call the bond's tx on idle passes.
    kick: bool,
    /// What `poll` last reported.
    in_use: Vec<PortId>,
    /// Active-backup: the primary the bond started with, used again whenever it has carrier
    /// (as the bond does on its own when it sees links, and Linux's default).
    preferred: Option<PortId>,
    watched: Vec<Watched>,
    /// The kernel interfaces behind its net_af_packet members (their arrivals wake blocked
    /// workers: `rte::arrivals`).
    af_packet_ifaces: Vec<String>,
    /// `--bond-up-delay`: a partner's port may take a while to forward after its link comes
    /// up (a Linux bridge port: about half a second here).
    up_delay: Duration,
    /// The bond moved from one set of members in use to another since `take_moved` was last
    /// asked: the external switch must relearn the guests' MACs on the new member.
    moved: bool,
}

impl BondUplink {
    /// `Some` if `port` is a bond. Called once it is configured (members known) and before it
    /// starts (dedicated LACP queues can only be chosen then). `devargs`: the `--vdev`s, to
    /// find the kernel interfaces of net_af_packet members; `up_delay`: `--bond-up-delay`.
    /// Returns the lines to print.
    pub fn prepare(port: &Port, driver: &str, devargs: &[String], up_delay: Duration) -> Option<(BondUplink, Vec<String>)> {
        let bond = Bond::of(port, driver)?;
        let mut b = BondUplink { bond, mode: BondMode::RoundRobin, kick: false, in_use: Vec::new(), preferred: None, watched: Vec::new(), af_packet_ifaces: Vec::new(), up_delay, moved: false };
        let mut lines = Vec::new();
        b.mode = match bond.mode() {
            Ok(m) => m,
            Err(e) => {
                lines.push(format!("uplink bond: mode unknown ({e}); no bond handling"));
                return Some((b, lines));
            }
        };
        let members = bond.members().unwrap_or_default();
        let mut line = format!("uplink bond: {}, members {}", b.mode.describe(), list(&members));
        if b.mode == BondMode::ActiveBackup {
            b.preferred = bond.primary();
            if let Some(p) = b.preferred {
                line.push_str(&format!(", primary {}", member_name(p)));
            }
        }
        if b.mode == BondMode::Lacp {
            match bond.enable_lacp_queues() {
                Ok(()) => line.push_str("; LACP frames on dedicated queues"),
                Err(e) => {
                    b.kick = true;
                    line.push_str(&format!("; LACP frames through the data queues, sent on idle passes too (dedicated queues refused: {e})"));
                }
            }
        }
        lines.push(line);
        for &m in &members {
            let Some(iface) = port_name(m).ok().and_then(|n| af_packet_iface(&n, devargs)) else { continue };
            b.af_packet_ifaces.push(iface.clone());
            let how = match b.mode {
                BondMode::ActiveBackup => format!(
                    "the switch follows the carrier of {iface} and moves the bond off it while it has none (back {} ms after it returns: --bond-up-delay)",
                    up_delay.as_millis()
                ),
                BondMode::Lacp => "802.3ad still drops it when its partner's LACP frames stop (3 s with a fast partner, 90 s with a slow one)".to_owned(),
                _ => "the bond cannot fail over from it".to_owned(),
            };
            lines.push(format!("uplink bond: member {} (net_af_packet) never reports a link change (DPDK 22.11): {how}", member_name(m)));
            if b.mode == BondMode::ActiveBackup {
                match KernelIface::from_name(&iface) {
                    Ok(k) => b.watched.push(Watched { id: m, carrier: carrier(&k), changed: None, iface: k }),
                    Err(e) => lines.push(format!("uplink bond: member {}: cannot follow {iface}'s carrier ({e})", member_name(m))),
                }
            }
        }
        Some((b, lines))
    }

    /// The kernel interfaces behind its net_af_packet members, by name.
    pub fn af_packet_ifaces(&self) -> &[String] {
        &self.af_packet_ifaces
    }

    /// Whether workers must call the bond's tx on idle passes (802.3ad's LACP frames).
    pub fn kicks_when_idle(&self) -> bool {
        self.kick
    }

    /// Whether the bond receives from every member (not active-backup or TLB, which read the
    /// member in use only).
    pub fn reads_every_member(&self) -> bool {
        !matches!(self.mode, BondMode::ActiveBackup | BondMode::Tlb)
    }

    /// The bond's mode as printed (`active-backup (mode=1)`).
    pub fn describe_mode(&self) -> &'static str {
        self.mode.describe()
    }

    /// How many members the bond has.
    pub fn member_count(&self) -> usize {
        self.bond.members().map_or(0, |m| m.len())
    }

    /// Sets the uplink's tx queues up for what the bond needs on idle passes.
    pub fn set_up_tx(&self, tx: &mut [Option<TxQueue>]) {
        for q in tx.iter_mut().flatten() {
            q.set_kick_when_idle(self.kick);
        }
    }

    /// The members traffic goes over now: in active-backup the one in use, in 802.3ad those
    /// LACP aggregated both ways, else those whose link is up.
    fn members_in_use(&self) -> Vec<PortId> {
        let active = self.bond.active_members().unwrap_or_default();
        match self.mode {
            BondMode::ActiveBackup => self.bond.primary().filter(|p| active.contains(p)).into_iter().collect(),
            BondMode::Lacp => active.into_iter().filter(|&m| self.bond.lacp_state(m).is_ok_and(|s| s.distributing())).collect(),
            _ => active,
        }
    }

    /// Whether `m` can carry traffic as far as the switch knows (a member it does not watch:
    /// the bond knows).
    fn has_carrier(&self, m: PortId) -> bool {
        !self.watched.iter().any(|w| w.id == m && !w.carrier)
    }

    /// Active-backup over watched members: the member the bond should use now, if not the
    /// one it uses: the preferred one if it has carrier, else the current one if it has, else
    /// the first member with carrier.
    fn failover_target(&self) -> Option<PortId> {
        let current = self.bond.primary();
        let target = self
            .preferred
            .filter(|&p| self.has_carrier(p))
            .or(current.filter(|&c| self.has_carrier(c)))
            .or_else(|| self.bond.members().unwrap_or_default().into_iter().find(|&m| self.has_carrier(m)))?;
        (Some(target) != current).then_some(target)
    }

    /// Whether every member is watched through its kernel carrier and none has it: the
    /// uplink is down whatever the bond (which never hears of it) reports.
    pub fn carrier_lost(&self) -> bool {
        let members = self.bond.members().unwrap_or_default();
        !members.is_empty() && members.iter().all(|&m| self.watched.iter().any(|w| w.id == m && !w.carrier))
    }

    /// Whether the bond moved to other members since the last call (see `moved`).
    pub fn take_moved(&mut self) -> bool {
        std::mem::take(&mut self.moved)
    }

    /// Follows the watched members' carrier (moving an active-backup bond off a member that
    /// lost it, and back to its primary when that has it again), and reports what changed:
    /// a carrier, or the members in use (the first call reports the start-up state).
    pub fn poll(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let now = Instant::now();
        for w in &mut self.watched {
            let kernel = carrier(&w.iface);
            if kernel == w.carrier {
                w.changed = None;
                continue;
            }
            let since = *w.changed.get_or_insert_with(|| {
                lines.push(format!("uplink bond: member {} ({}) carrier {}", member_name(w.id), w.iface.name(), if kernel { "up" } else { "down" }));
                now
            });
            if !kernel || now.duration_since(since) >= self.up_delay {
                w.carrier = kernel;
                w.changed = None;
            }
        }
        if let Some(target) = self.failover_target() {
            if let Err(e) = self.bond.set_primary(target) {
                lines.push(format!("uplink bond: cannot move to member {}: {e}", member_name(target)));
            }
        }
        let now = self.members_in_use();
        if now != self.in_use {
            let what = match self.mode {
                BondMode::ActiveBackup => "sending on",
                BondMode::Lacp => "LACP aggregated",
                _ => "members up",
            };
            lines.push(format!("uplink bond: {what} {} (was {})", list(&now), list(&self.in_use)));
            self.moved |= !self.in_use.is_empty() && !now.is_empty();
            self.in_use = now;
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_from_bond_devargs_only() {
        assert_eq!(members_in("net_bonding0,mode=1,slave=net_af_packet0,slave=net_af_packet1"), Some(("net_bonding0", vec!["net_af_packet0", "net_af_packet1"])));
        assert_eq!(members_in("net_bonding1,mode=4,member=0000:03:00.0, member=1"), Some(("net_bonding1", vec!["0000:03:00.0", "1"])));
        assert_eq!(members_in("net_af_packet0,iface=slave"), None);
        assert_eq!(members_in("net_bonding0"), Some(("net_bonding0", vec![])));
    }

    #[test]
    fn af_packet_members_are_found_by_name_in_the_vdevs() {
        let vdevs = ["net_af_packet0,iface=bnd0".to_owned(), "net_af_packet1, iface = bnd1 ,qpairs=2".to_owned(), "net_tap0,iface=tp0".to_owned()];
        assert_eq!(af_packet_iface("net_af_packet0", &vdevs).as_deref(), Some("bnd0"));
        assert_eq!(af_packet_iface("net_af_packet1", &vdevs).as_deref(), Some("bnd1"));
        assert_eq!(af_packet_iface("net_tap0", &vdevs), None, "not af_packet");
        assert_eq!(af_packet_iface("net_af_packet2", &vdevs), None);
        assert!(!carrier(&KernelIface::from_name("no-such-if0").expect("a valid name")), "no interface, no carrier");
        assert!(KernelIface::from_name("a-name-far-too-long").is_err());
    }
}
