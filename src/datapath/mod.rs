//! The forwarding workers: one per EAL worker lcore, each owning its queues outright.
//!
//! Hot-path rules here: no allocation after `Worker::new`, no locks, no syscalls, no logging,
//! no `Result`; every frame that is not handed to a PMD is freed once and counted under a
//! `DropReason`.

mod dispatch;
mod egress;
mod ingress;
mod tag;
mod worker;

pub use worker::{Worker, WorkerQueues, WorkerShared};
