//! Counters: per-port packet/byte/drop counts and per-worker cycle accounting.
//!
//! Role: let the datapath count everything (every dropped frame has a [`DropReason`]) at the
//! cost of a few relaxed stores, and let the control thread read consistent-enough totals.
//!
//! Invariants: each [`StatsShard`] is written by exactly one worker thread, so counters are
//! bumped with a relaxed load + store instead of an atomic read-modify-write; readers on
//! other threads only load. Shards are cache-padded so workers never share a cache line.
//! Totals are sums over shards taken at slightly different instants: each counter is exact
//! and monotonic, but a snapshot is not an atomic cut across counters.
//!
//! Threads: workers write their own shard (no allocation, no locks); the control thread
//! creates shards through [`StatsRegistry`] and takes [`StatsSnapshot`]s.

mod cell;
mod origin;
mod reason;
mod registry;
mod snapshot;

pub use cell::{PortCell, PortCounters};
pub use origin::{Hairpin, OriginStats};
pub use reason::{DropCounts, DropReason};
pub use registry::{StatsRegistry, StatsShard};
pub use snapshot::{GuestStats, StatsSnapshot, Wake, Wakes, WorkerStats};
