//! Safe wrappers over DPDK: the only hand-written `unsafe` in the crate, each block with a
//! `// SAFETY:` line. Fallible calls return `RteError { op, errno }`; nothing here panics on
//! a DPDK failure, logs per packet, or allocates on the fast path (`RxQueue::rx`, `TxQueue::tx`,
//! `Burst`).
//!
//! What the types enforce: a queue token keeps its port open (they share an `Arc`); an mbuf
//! is freed once (`Mbuf` owns one reference) and written only while it is the only one; a
//! vhost call needs a `vhost_links::Device`, which cannot outlive the worker pass it was read
//! in; a port has one handle and keeps the pools its rx rings take from until it is closed;
//! a pool dropped while any buffer is still out is left allocated rather than freed under it;
//! EAL is cleaned up only once no pool, port, ring, vhost socket, flow rule, link callback or
//! lcore launch is alive (`eal::EalUse`), and none can be made after. The application's
//! teardown order (`app::switch`) is what makes that clean-up happen at exit rather than being
//! skipped. Not guarded: the free functions that ask EAL about a port or an lcore by number
//! (`Port::count`, `bond`'s calls on a `PortId`, `lcore::current`) assume it runs; the switch
//! calls them only between start-up and teardown.

pub mod arrivals;
pub mod bond;
mod boundary;
pub mod burst;
pub mod eal;
pub mod error;
pub mod ethdev;
pub mod fine_wait;
pub mod flow;
pub mod kernel_if;
pub mod lcore;
pub mod link_events;
pub mod mbuf;
pub mod mempool;
pub mod ring;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
pub mod vhost;
pub mod vhost_links;

pub use burst::{Burst, BURST};
pub use eal::Eal;
pub use error::{Result, RteError};
pub use ethdev::{EthStats, Link, Port, PortConf, PortId, PortInfo, RxQueue, TxQueue};
pub use lcore::LcoreId;
pub use mbuf::Mbuf;
pub use mempool::Mempool;

/// Bytes reserved at the front of every mbuf (`RTE_PKTMBUF_HEADROOM`).
pub const fn sys_headroom() -> usize {
    crate::sys::RTE_PKTMBUF_HEADROOM as usize
}
