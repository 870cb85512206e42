//! DPDK's bonding PMD (`net_bonding`) seen from the port it creates: its mode, its member
//! ports, which of them carry traffic, and 802.3ad's per-member LACP state. Control thread
//! only. DPDK 22.11 calls members "slaves" in its API; we say members.
//!
//! A bond made from `--vdev net_bonding0,...,slave=X` gets its members when it is first
//! configured, so before that `members` is empty.

use super::error::{check, Result, RteError};
use super::ethdev::{Port, PortId};
use crate::sys;

/// `net_bonding`, as `rte_eth_dev_info` names the driver.
pub const DRIVER: &str = "net_bonding";

/// `BONDING_MODE_*` of rte_eth_bond.h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BondMode {
    RoundRobin,
    ActiveBackup,
    Balance,
    Broadcast,
    Lacp,
    Tlb,
    Alb,
}

impl BondMode {
    fn from_raw(m: i32) -> Option<BondMode> {
        Some(match m {
            0 => BondMode::RoundRobin,
            1 => BondMode::ActiveBackup,
            2 => BondMode::Balance,
            3 => BondMode::Broadcast,
            4 => BondMode::Lacp,
            5 => BondMode::Tlb,
            6 => BondMode::Alb,
            _ => return None,
        })
    }

    /// The name users know it by (and the `mode=` number of the devargs).
    pub fn describe(self) -> &'static str {
        match self {
            BondMode::RoundRobin => "round-robin (mode=0)",
            BondMode::ActiveBackup => "active-backup (mode=1)",
            BondMode::Balance => "balance-xor (mode=2)",
            BondMode::Broadcast => "broadcast (mode=3)",
            BondMode::Lacp => "802.3ad (mode=4)",
            BondMode::Tlb => "balance-tlb (mode=5)",
            BondMode::Alb => "balance-alb (mode=6)",
        }
    }
}

/// LACP actor/partner state bits (IEEE 802.1AX), as `rte_eth_bond_8023ad.h` defines them.
pub const LACP_SYNCHRONIZATION: u8 = 0x08;
pub const LACP_COLLECTING: u8 = 0x10;
pub const LACP_DISTRIBUTING: u8 = 0x20;
pub const LACP_DEFAULTED: u8 = 0x40;

/// One member's LACP state, ours (actor) and what its partner last said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LacpState {
    pub actor: u8,
    pub partner: u8,
}

impl LacpState {
    /// Aggregated both ways: we and the partner collect and distribute on this member.
    pub fn distributing(self) -> bool {
        let both = LACP_SYNCHRONIZATION | LACP_COLLECTING | LACP_DISTRIBUTING;
        self.actor & both == both && self.partner & both == both
    }
}

/// A bonding port (a `Port` whose driver is `net_bonding`), by id: the handle does not keep
/// the port open; the `Port` it was made from does.
#[derive(Clone, Copy, Debug)]
pub struct Bond {
    id: PortId,
}

/// Members are at most RTE_MAX_ETHPORTS; this is room for them all.
const MAX_MEMBERS: usize = sys::RTE_MAX_ETHPORTS as usize;

impl Bond {
    /// `Some` if `port` is a bonding port.
    pub fn of(port: &Port, driver: &str) -> Option<Bond> {
        (driver == DRIVER).then_some(Bond { id: port.id() })
    }

    pub fn mode(self) -> Result<BondMode> {
        // SAFETY: plain call on a port id; a non-bonding port is refused with -1.
        let m = unsafe { sys::rte_eth_bond_mode_get(self.id.0) };
        BondMode::from_raw(m).ok_or_else(|| RteError::new("rte_eth_bond_mode_get", libc::EINVAL))
    }

    fn list(self, op: &'static str, active: bool) -> Result<Vec<PortId>> {
        let mut ids = [0u16; MAX_MEMBERS];
        // SAFETY: ids has room for MAX_MEMBERS port ids, the length we pass.
        let n = unsafe {
            if active {
                sys::rte_eth_bond_active_slaves_get(self.id.0, ids.as_mut_ptr(), MAX_MEMBERS as u16)
            } else {
                sys::rte_eth_bond_slaves_get(self.id.0, ids.as_mut_ptr(), MAX_MEMBERS as u16)
            }
        };
        let n = check(op, n)? as usize;
        Ok(ids[..n.min(MAX_MEMBERS)].iter().map(|&i| PortId(i)).collect())
    }

    /// Every member, in the order they were added.
    pub fn members(self) -> Result<Vec<PortId>> {
        self.list("rte_eth_bond_slaves_get", false)
    }

    /// The members the bond sends and receives on now (link up; in active-backup, the one
    /// in use first).
    pub fn active_members(self) -> Result<Vec<PortId>> {
        self.list("rte_eth_bond_active_slaves_get", true)
    }

    /// The primary member (active-backup prefers it whenever its link is up).
    pub fn primary(self) -> Option<PortId> {
        // SAFETY: plain call on a port id.
        let p = unsafe { sys::rte_eth_bond_primary_get(self.id.0) };
        u16::try_from(p).ok().map(PortId)
    }

    /// Active-backup: sends and receives on `member` from now on (a worker's next burst
    /// reads it), and makes it promiscuous if the bond is (the bond applies that to the member
    /// in use only, and does not move it along here). A member the bond has no link on is
    /// refused.
    pub fn set_primary(self, member: PortId) -> Result<()> {
        // SAFETY: plain call on port ids; the bond checks that `member` is one of its own.
        let r = unsafe { sys::rte_eth_bond_primary_set(self.id.0, member.0) };
        check("rte_eth_bond_primary_set", r)?;
        if self.primary() != Some(member) {
            return Err(RteError::new("rte_eth_bond_primary_set", libc::ENOLINK).with_detail(format!("member {member} is not active")));
        }
        // SAFETY: plain calls on valid port ids.
        if unsafe { sys::rte_eth_promiscuous_get(self.id.0) } == 1 {
            // SAFETY: as above.
            check("rte_eth_promiscuous_enable", unsafe { sys::rte_eth_promiscuous_enable(member.0) })?;
        }
        Ok(())
    }

    /// 802.3ad: LACP frames on a queue pair of their own on every member (a flow rule steers
    /// them there), so they need not wait behind data. Only while the bond is stopped, after
    /// it was configured (so that its members are known); refused where a member has no
    /// rte_flow or no spare queue.
    pub fn enable_lacp_queues(self) -> Result<()> {
        // SAFETY: plain call on a port id; the bond checks its state and members itself.
        let r = unsafe { sys::rte_eth_bond_8023ad_dedicated_queues_enable(self.id.0) };
        check("rte_eth_bond_8023ad_dedicated_queues_enable", r).map(|_| ())
    }

    /// 802.3ad: `member`'s LACP state.
    pub fn lacp_state(self, member: PortId) -> Result<LacpState> {
        let mut info = sys::rte_eth_bond_8023ad_slave_info::default();
        // SAFETY: info is a valid out-pointer; the call checks both ids.
        let r = unsafe { sys::rte_eth_bond_8023ad_slave_info(self.id.0, member.0, &mut info) };
        check("rte_eth_bond_8023ad_slave_info", r)?;
        Ok(LacpState { actor: info.actor_state, partner: info.partner_state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributing_needs_both_ends_in_sync_collecting_and_distributing() {
        let full = LACP_SYNCHRONIZATION | LACP_COLLECTING | LACP_DISTRIBUTING | 0x05;
        assert!(LacpState { actor: full, partner: full }.distributing());
        assert!(!LacpState { actor: full, partner: full & !LACP_DISTRIBUTING }.distributing());
        assert!(!LacpState { actor: full & !LACP_SYNCHRONIZATION, partner: full }.distributing());
        assert!(!LacpState { actor: full | LACP_DEFAULTED, partner: 0 }.distributing(), "a defaulted partner never answered");
        assert_eq!(BondMode::from_raw(4), Some(BondMode::Lacp));
        assert_eq!(BondMode::from_raw(7), None);
    }
}
