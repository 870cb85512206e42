//! Forwarding modes: which guests may see which frames, as pure functions.
//!
//! Role: the single place that decides reachability between guests and the uplink, so the
//! datapath only asks questions (`deliver_from_uplink`, `deliver_by_source`, `owns_uplink`,
//! `any_source`, `egress`, `deliver_local`) and acts on
//! the answer. The oracle is Linux macvlan (drivers/net/macvlan.c); each rule names the
//! function it mirrors, and each deliberate difference is marked "Differs from macvlan".
//!
//! Invariants: the functions are total over every (mode, origin, cast) combination and
//! their whole truth tables are spelled out in the tests of `table.rs`, so any change of
//! semantics shows up as a diff of those tables. No allocation, no panics.
//!
//! Threads: any; called per frame by the datapath workers.

mod mode;
mod table;
mod vlan;

pub use mode::{Cast, Egress, Mode, ModeParseError, Origin};
pub use table::{any_source, deliver_by_source, deliver_from_uplink, deliver_local, egress, egress_always_uplink, owns_uplink, unicast_depends_on_origin};
pub use vlan::{deliver_from_uplink_in, deliver_local_in, egress_in, same_segment};
