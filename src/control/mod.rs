//! The control plane, on the main lcore: guest lifecycle (vhost events, links), queue
//! assignment and moves by load, steering on the uplink (and its promiscuous mode and MAC
//! for the passthru and source modes), the uplink's link, signals, and the control socket
//! (with its event stream).
//! It never touches a queue; it changes what the workers see only by publishing a new
//! `view::WorkerView` through `view::Handover`.

mod assign;
pub mod balance;
pub mod events;
mod guest_events;
pub mod metrics_http;
pub mod rebalance;
mod signals;
pub mod socket;
pub mod stale_socket;
pub mod steering;
pub mod uplink_owner;
pub mod uplink_link;
pub mod vmdq;

pub use assign::{assign, AssignError, Assignment, WorkerPlan};
pub use guest_events::{EventsHandle, GuestEvents, LinkWatch};
pub use signals::Signals;
