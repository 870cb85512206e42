//! The control plane, on the main lcore: guest link tracking, queue assignment and moves,
//! periodic stats, signals.
//! It never touches a queue; it talks to workers only through atomics and shared snapshots.

mod assign;
pub mod balance;
mod handover;
mod links;
pub mod rebalance;
mod signals;
pub mod socket;
pub mod steering;
pub mod vmdq;

pub use assign::{assign, AssignError, Assignment, DeliveryMap, WorkerPlan};
pub use handover::{Handover, WorkerUpdate};
pub use links::{GuestEvents, GuestLinks, LinkWatch};
pub use signals::Signals;
