//! Hardware steering with `rte_flow`: one rule per guest MAC sends its frames to the rx queue
//! of the worker that owns the guest, so the NIC does the classification.
//!
//! Rules are always validated before they are created; a port that refuses (ENOTSUP/ENOSYS
//! for every vdev here, EINVAL for patterns it cannot match) is reported, and the caller
//! falls back to software dispatch.

use std::ffi::CStr;
use std::ptr::NonNull;

use super::eal::EalUse;
use super::error::{Result, RteError};
use super::ethdev::PortId;
use crate::sys;

/// What a rule matches: frames whose destination MAC, under `mask`, equals `mac`, and with
/// `vlan`, an 802.1Q tag of that VLAN id (without, any frame, tagged or not).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthDstMatch {
    pub mac: [u8; 6],
    pub mask: [u8; 6],
    pub vlan: Option<u16>,
}

impl EthDstMatch {
    /// Exactly this unicast address.
    pub fn exact(mac: [u8; 6]) -> Self {
        EthDstMatch { mac, mask: [0xff; 6], vlan: None }
    }

    /// Exactly this unicast address, tagged with VLAN id `vlan` (1..4094).
    pub fn exact_in(mac: [u8; 6], vlan: u16) -> Self {
        EthDstMatch { vlan: Some(vlan), ..Self::exact(mac) }
    }

    /// Every broadcast and multicast frame (the group bit).
    pub fn group() -> Self {
        EthDstMatch { mac: [0x01, 0, 0, 0, 0, 0], mask: [0x01, 0, 0, 0, 0, 0], vlan: None }
    }
}

/// The 12 VLAN id bits of a TCI, big-endian as rte_flow wants it.
const VID_MASK: u16 = 0x0fff;

/// The C structures of one rule. They reference each other by pointer, so they live in one
/// boxed value that does not move while DPDK reads it.
struct RuleParts {
    attr: sys::rte_flow_attr,
    spec: sys::rte_flow_item_eth,
    mask: sys::rte_flow_item_eth,
    vlan_spec: sys::rte_flow_item_vlan,
    vlan_mask: sys::rte_flow_item_vlan,
    queue: sys::rte_flow_action_queue,
    pattern: [sys::rte_flow_item; 3],
    actions: [sys::rte_flow_action; 2],
}

fn eth_item(dst: [u8; 6]) -> sys::rte_flow_item_eth {
    let mut e = sys::rte_flow_item_eth::default();
    // Only the destination address is matched; source and type stay zero in spec and mask.
    e.__bindgen_anon_1.__bindgen_anon_1.dst = sys::rte_ether_addr { addr_bytes: dst };
    e
}

fn vlan_item(tci: u16) -> sys::rte_flow_item_vlan {
    let mut v = sys::rte_flow_item_vlan::default();
    v.__bindgen_anon_1.__bindgen_anon_1.tci = tci.to_be();
    v
}

impl RuleParts {
    fn new(m: EthDstMatch, queue: u16) -> Box<RuleParts> {
        let mut attr = sys::rte_flow_attr::default();
        attr.set_ingress(1);
        let mut p = Box::new(RuleParts {
            attr,
            spec: eth_item(m.mac),
            mask: eth_item(m.mask),
            vlan_spec: vlan_item(m.vlan.unwrap_or(0)),
            vlan_mask: vlan_item(VID_MASK),
            queue: sys::rte_flow_action_queue { index: queue },
            pattern: [sys::rte_flow_item::default(); 3],
            actions: [sys::rte_flow_action::default(); 2],
        });
        p.pattern[0] = sys::rte_flow_item {
            type_: sys::RTE_FLOW_ITEM_TYPE_ETH,
            spec: &p.spec as *const _ as *const _,
            last: std::ptr::null(),
            mask: &p.mask as *const _ as *const _,
        };
        let mut end = 1;
        if m.vlan.is_some() {
            // The frame has a tag, and the tag's VLAN id is this one (priority bits ignored).
            p.spec.set_has_vlan(1);
            p.mask.set_has_vlan(1);
            p.pattern[1] = sys::rte_flow_item {
                type_: sys::RTE_FLOW_ITEM_TYPE_VLAN,
                spec: &p.vlan_spec as *const _ as *const _,
                last: std::ptr::null(),
                mask: &p.vlan_mask as *const _ as *const _,
            };
            end = 2;
        }
        p.pattern[end].type_ = sys::RTE_FLOW_ITEM_TYPE_END;
        p.actions[0] = sys::rte_flow_action { type_: sys::RTE_FLOW_ACTION_TYPE_QUEUE, conf: &p.queue as *const _ as *const _ };
        p.actions[1].type_ = sys::RTE_FLOW_ACTION_TYPE_END;
        p
    }
}

/// The errno of a failed rte_flow call: `rte_flow_validate` returns `-errno`; `rte_flow_create`
/// returns NULL (`ret` None) and leaves the reason in `rte_errno`.
fn flow_errno(ret: Option<i32>, rte_errno: impl FnOnce() -> i32) -> i32 {
    match ret {
        Some(r) if r < 0 => -r,
        _ => rte_errno(),
    }
}

fn flow_error(op: &'static str, ret: Option<i32>, err: &sys::rte_flow_error) -> RteError {
    let errno = flow_errno(ret, || RteError::from_rte_errno(op).errno);
    let msg = if err.message.is_null() {
        String::from("no message")
    } else {
        // SAFETY: the PMD sets message to a static NUL-terminated string.
        unsafe { CStr::from_ptr(err.message) }.to_string_lossy().into_owned()
    };
    RteError::new(op, errno).with_detail(msg)
}

/// Asks the port whether it would accept the rule, without installing it.
pub fn validate(port: PortId, m: EthDstMatch, queue: u16) -> Result<()> {
    let parts = RuleParts::new(m, queue);
    let mut err = sys::rte_flow_error::default();
    // SAFETY: every pointer in parts points into the same live box; err is a valid out-pointer.
    let ret = unsafe { sys::rte_flow_validate(port.0, &parts.attr, parts.pattern.as_ptr(), parts.actions.as_ptr(), &mut err) };
    if ret != 0 {
        return Err(flow_error("rte_flow_validate", Some(ret), &err));
    }
    Ok(())
}

/// An installed rule; destroyed on drop (before its port closes: `app` drops rules first).
pub struct FlowRule {
    port: PortId,
    raw: NonNull<sys::rte_flow>,
    _eal: EalUse,
}

// SAFETY: a rule handle is only used from the control thread that created and destroys it;
// moving it between threads is harmless.
unsafe impl Send for FlowRule {}

impl FlowRule {
    pub fn create(port: PortId, m: EthDstMatch, queue: u16) -> Result<FlowRule> {
        validate(port, m, queue)?;
        let eal = EalUse::take("rte_flow_create")?;
        let parts = RuleParts::new(m, queue);
        let mut err = sys::rte_flow_error::default();
        // SAFETY: as in validate.
        let raw = unsafe { sys::rte_flow_create(port.0, &parts.attr, parts.pattern.as_ptr(), parts.actions.as_ptr(), &mut err) };
        NonNull::new(raw).map(|raw| FlowRule { port, raw, _eal: eal }).ok_or_else(|| flow_error("rte_flow_create", None, &err))
    }
}

impl Drop for FlowRule {
    fn drop(&mut self) {
        let mut err = sys::rte_flow_error::default();
        // SAFETY: raw is a rule created on this port and destroyed once, here.
        unsafe { sys::rte_flow_destroy(self.port.0, self.raw.as_ptr(), &mut err) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_create_reports_rte_errno_not_its_null_return() {
        // validate: the return value says it.
        assert_eq!(flow_errno(Some(-libc::ENOTSUP), || 0), libc::ENOTSUP);
        // create: NULL, and the reason in rte_errno (it once came out as EPERM, from -(-1)).
        assert_eq!(flow_errno(None, || libc::ENOSYS), libc::ENOSYS);
        assert_ne!(flow_errno(None, || libc::ENOTSUP), libc::EPERM);
    }

    fn dst_of(item: &sys::rte_flow_item, spec: bool) -> [u8; 6] {
        let p = if spec { item.spec } else { item.mask } as *const sys::rte_flow_item_eth;
        // SAFETY: the test built these items from rte_flow_item_eth values that are still alive.
        unsafe { (*p).__bindgen_anon_1.__bindgen_anon_1.dst.addr_bytes }
    }

    #[test]
    fn exact_mac_rule_is_eth_dst_to_queue() {
        let mac = [0x52, 0x54, 0, 0, 0, 7];
        let r = RuleParts::new(EthDstMatch::exact(mac), 3);
        assert_eq!(r.attr.ingress(), 1);
        assert_eq!(r.attr.egress(), 0);
        assert_eq!(r.pattern[0].type_, sys::RTE_FLOW_ITEM_TYPE_ETH);
        assert_eq!(dst_of(&r.pattern[0], true), mac);
        assert_eq!(dst_of(&r.pattern[0], false), [0xff; 6]);
        assert!(r.pattern[0].last.is_null());
        assert_eq!(r.pattern[1].type_, sys::RTE_FLOW_ITEM_TYPE_END);
        assert_eq!(r.actions[0].type_, sys::RTE_FLOW_ACTION_TYPE_QUEUE);
        // SAFETY: conf points at r.queue.
        assert_eq!(unsafe { (*(r.actions[0].conf as *const sys::rte_flow_action_queue)).index }, 3);
        assert_eq!(r.actions[1].type_, sys::RTE_FLOW_ACTION_TYPE_END);
    }

    #[test]
    fn a_vlan_guests_rule_matches_its_tag_too() {
        let mac = [0x52, 0x54, 0, 0, 0, 8];
        let r = RuleParts::new(EthDstMatch::exact_in(mac, 10), 1);
        assert_eq!(r.pattern[0].type_, sys::RTE_FLOW_ITEM_TYPE_ETH);
        assert_eq!(dst_of(&r.pattern[0], true), mac);
        assert_eq!((r.spec.has_vlan(), r.mask.has_vlan()), (1, 1), "tagged frames only");
        assert_eq!(r.pattern[1].type_, sys::RTE_FLOW_ITEM_TYPE_VLAN);
        // SAFETY: spec and mask point at r.vlan_spec and r.vlan_mask; the union's views are
        // plain data.
        let (spec, mask) = unsafe {
            let s = &*(r.pattern[1].spec as *const sys::rte_flow_item_vlan);
            let m = &*(r.pattern[1].mask as *const sys::rte_flow_item_vlan);
            (s.__bindgen_anon_1.__bindgen_anon_1, m.__bindgen_anon_1.__bindgen_anon_1)
        };
        assert_eq!((u16::from_be(spec.tci), u16::from_be(mask.tci)), (10, 0x0fff), "the VLAN id, not the priority");
        assert_eq!((spec.inner_type, mask.inner_type), (0, 0));
        assert_eq!(r.pattern[2].type_, sys::RTE_FLOW_ITEM_TYPE_END);
        // Without a VLAN the rule is as it always was.
        let plain = RuleParts::new(EthDstMatch::exact(mac), 1);
        assert_eq!((plain.spec.has_vlan(), plain.mask.has_vlan()), (0, 0));
        assert_eq!(plain.pattern[1].type_, sys::RTE_FLOW_ITEM_TYPE_END);
    }

    #[test]
    fn group_rule_matches_only_the_group_bit() {
        let r = RuleParts::new(EthDstMatch::group(), 0);
        assert_eq!(dst_of(&r.pattern[0], true), [1, 0, 0, 0, 0, 0]);
        assert_eq!(dst_of(&r.pattern[0], false), [1, 0, 0, 0, 0, 0]);
        // SAFETY: spec points at r.spec.
        let spec = unsafe { &*(r.pattern[0].spec as *const sys::rte_flow_item_eth) };
        // SAFETY: reading the plain-data union view.
        let s = unsafe { spec.__bindgen_anon_1.__bindgen_anon_1 };
        assert_eq!((s.src.addr_bytes, s.type_), ([0; 6], 0), "source and type are not matched");
    }
}
