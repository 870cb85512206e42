//! Safe wrappers over DPDK: the only hand-written `unsafe` in the crate, each block with a
//! `// SAFETY:` line. Fallible calls return `RteError { op, errno }`; nothing here panics on
//! a DPDK failure, logs per packet, or allocates on the fast path (`RxQueue::rx`, `TxQueue::tx`,
//! `Burst`).

mod boundary;
pub mod burst;
pub mod eal;
pub mod error;
pub mod ethdev;
pub mod flow;
pub mod lcore;
pub mod mbuf;
pub mod mempool;
pub mod ring;
pub mod telemetry;
pub mod vhost;

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
