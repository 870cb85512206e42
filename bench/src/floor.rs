//! What a timed sleep costs on this machine with nothing else in the loop: a thread on the
//! worker's core that only sleeps the bound at a time (with the worker's own timer slack,
//! `IDLE_TIMER_SLACK_NS`), read from /proc the way the idle worker is. An idle worker cannot
//! cost less than this at the same bound; what it costs above it is its own pass between sleeps.
//! On a VM each wake-up also pays for the hypervisor's timer, which is most of it here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cpu;

/// The core the switch's forwarding thread is pinned to in every bench topology.
const WORKER_CORE: usize = 1;

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct FloorSample {
    pub bound_us: u32,
    pub run: usize,
    /// utime + stime over the window, % of one core (as `IdleSample::cpu_pct`).
    pub cpu_pct: f64,
    /// schedstat run time over the window, % of one core.
    pub sched_pct: Option<f64>,
    pub wakeups_per_s: f64,
}

/// Sleeps `bound_us` at a time on the worker's core for `window` and returns what it cost.
pub fn measure(bound_us: u32, window: Duration, run: usize) -> Result<FloorSample> {
    if bound_us == 0 {
        bail!("a bound of 0 never sleeps: nothing to measure");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tid_tx, tid_rx) = mpsc::channel();
    let sleeper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            pin_and_tighten_slack();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            if tid_tx.send(tid).is_err() {
                return;
            }
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_micros(u64::from(bound_us)));
            }
        })
    };
    let tid = tid_rx.recv().context("the sleeping thread did not start")?;
    let pid = std::process::id() as i32;
    let before = cpu::read_thread(pid, tid);
    std::thread::sleep(window);
    let after = cpu::read_thread(pid, tid);
    stop.store(true, Ordering::Relaxed);
    sleeper.join().map_err(|_| anyhow::anyhow!("the sleeping thread panicked"))?;
    let (cpu_pct, sched_pct, wakeups_per_s) = cpu::shares(&before?, &after?);
    Ok(FloorSample { bound_us, run, cpu_pct, sched_pct, wakeups_per_s })
}

/// On the worker's core, with the worker's timer slack (best effort: a failure to pin leaves
/// the thread where the scheduler puts it, which the report's core figures would show).
fn pin_and_tighten_slack() {
    core_affinity::set_for_current(core_affinity::CoreId { id: WORKER_CORE });
    dpdk_macvtap::rte::lcore::set_timer_slack_ns(dpdk_macvtap::datapath::IDLE_TIMER_SLACK_NS);
}
