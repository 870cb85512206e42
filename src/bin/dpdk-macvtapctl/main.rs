//! `dpdk-macvtapctl`: the control client (placeholder until the client lands).
fn main() {}
