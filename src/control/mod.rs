//! The control plane, on the main lcore: guest link tracking, periodic stats, signals.
//! It never touches a queue; it talks to workers only through atomics and shared snapshots.

mod assign;
mod links;
mod signals;
pub mod steering;

pub use assign::{assign, AssignError, Assignment, DeliveryMap, WorkerPlan};
pub use links::{GuestEvents, GuestLinks, LinkWatch};
pub use signals::Signals;
