//! What the workers see: the state they read per frame, built by the control plane and
//! published to them between passes. The control plane builds and publishes; the datapath
//! only reads. Nothing here touches a queue or a frame.
//!
//! - [`Tables`]: the immutable per-publication tables every worker shares (MAC table,
//!   queue ownership, per-guest flags), and [`WorkerView`], one worker's part of it (its
//!   queues, its per-guest delivery entries, its [`UnicastIndex`]).
//! - [`Handover`]: the one way a new `WorkerView` reaches the workers, for every kind of
//!   change (guests added, removed or changed, queues moved by load): built and allocated on
//!   the control thread, taken by each worker between two passes, and the previous one
//!   handed back so that it is freed on the control thread after every worker let go.
//! - [`Doorbells`]: how whoever gives a worker work (a publication, a peer's frames, the
//!   switch's own) wakes it while it sleeps or blocks between passes.
//! - [`GuestLinks`]: which guests have a live vhost device, written by the vhost library's
//!   thread, with the handshake that keeps a device usable until no worker can touch it (it
//!   lives in `rte::vhost_links`, beside the vhost calls whose safety it provides).
//! - [`DeliveryMap`], [`RxScope`]: which worker owns each guest queue; which guests an uplink
//!   rx queue's floods are for.
//! - [`SourceTable`]: which guests (mode source) receive frames by their source MAC; part of
//!   `Tables`, so it is published like the rest.
//!
//! Guest ids ([`GuestId`](crate::fib::GuestId)) are stable for a guest's whole life on the
//! switch and below `MAX_GUESTS`, so every per-guest array a worker or a stats shard holds
//! is sized once, at start, and never reallocated.

mod delivery;
mod doorbell;
mod handover;
mod scope;
mod sources;
mod tables;
mod unicasts;
#[cfg(test)]
mod truth_props;

pub use delivery::{DeliveryMap, MAX_SLOTS, NO_OWNER};
pub use doorbell::{Doorbells, DOORBELL};
pub use handover::Handover;
pub use crate::rte::vhost_links::{Device, GuestLinks, WorkerLinks};
pub use scope::RxScope;
pub use sources::SourceTable;
pub use tables::{FloodKey, GuestFlags, Tables, ToGuest, WorkerView, NO_SLOT};
pub use unicasts::{Unicast, UnicastIndex, NO_BATCH};
