//! For unit tests that need real mbufs: EAL started once per test process (no hugepages, no
//! PCI, in memory, one lcore) and never cleaned up, and a small pool per test, so that each
//! test can count what it leaks on its own pool while others run beside it.

use std::sync::Once;

use super::eal::Eal;
use super::mempool::Mempool;

/// Starts EAL for this test process, once.
pub fn eal() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        let prefix = format!("--file-prefix=mvt-unit-{}", std::process::id());
        let args = ["unit-tests", "--no-huge", "-m", "64", "--no-pci", "--no-shconf", "--no-telemetry", "-l", "0", "--log-level=lib.eal:error", &prefix];
        let eal = Eal::init(&args).unwrap_or_else(|e| panic!("EAL for unit tests ({}): {e}", args.join(" ")));
        // With --no-shconf (no multi-process channel) and no telemetry, nothing uses EAL's
        // runtime directory once it is up; it would outlive every test process otherwise.
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/mvt-unit-{}", std::process::id()));
        // Lives as long as the process: clean-up would pull memory from under other tests.
        std::mem::forget(eal);
    });
}

/// A pool of `n` mbufs named `name` (unique per test), after starting EAL.
pub fn pool(name: &str, n: u32) -> Mempool {
    eal();
    Mempool::pktmbuf(name, n, 0, 2176, -1).unwrap_or_else(|e| panic!("pool {name}: {e}"))
}
