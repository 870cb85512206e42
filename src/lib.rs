//! dpdk-macvtap: each virtual machine gets its own MAC address on a physical port, as with
//! Linux macvlan/macvtap, forwarded by DPDK poll-mode workers.
//!
//! Layers, dependencies pointing one way:
//! - `sys`: generated bindings plus a C shim for DPDK's static-inline functions; no logic.
//! - `rte`: safe wrappers; the only hand-written `unsafe` in the crate.
//! - domain modules (`wire`, `fib`, `policy`, `config`, `stats`, `view`, `datapath`, `control`, `app`):
//!   safe Rust. `wire`, `fib`, `policy`, `config` and `stats` never touch DPDK.

// The compiler holds the layering: `unsafe` only in the FFI (`sys`) and its wrappers (`rte`).
#![deny(unsafe_code)]

pub mod args;
#[allow(unsafe_code)]
pub mod sys;
#[allow(unsafe_code)]
pub mod rte;

pub mod wire;
pub mod config;
pub mod fib;
pub mod policy;
pub mod stats;
pub mod view;
pub mod datapath;
pub mod control;
pub mod cli;
pub mod app;
