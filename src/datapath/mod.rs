//! The forwarding workers: one per EAL worker lcore, each owning its queues outright.
//!
//! Hot-path rules here: no allocation after `Worker::new`, no locks, no syscalls (an idle
//! worker's sleep and block aside, `idle.rs` and `block.rs`, and the doorbell of a peer
//! that sleeps or blocks), no logging, no `Result`. A frame is either handed to the uplink PMD (which then owns it), copied into a
//! guest by the vhost library and freed here, or freed once and counted under a `DropReason`.

mod arrival_watches;
mod block;
mod dispatch;
mod egress;
mod guest_queues;
mod idle;
mod ingress;
mod modes;
mod originate;
mod link_down;
mod reassign;
mod tag;
mod vlan;
mod worker;

pub use arrival_watches::{spawn_closer, ArrivalWatches, Released};
pub use block::{Blocker, DEFAULT_BLOCK_LIMIT};
pub use idle::{IdleBackoff, IDLE_TIMER_SLACK_NS};
pub use ingress::RX_BURSTS_PER_PASS;
pub use vlan::VlanOffload;
pub use originate::{origin_channel, OriginQueue, OriginSender, ProbeSeen};
pub use worker::{Worker, WorkerQueues, WorkerShared, UPLINK_PENDING};
