//! Running Rust closures on EAL worker lcores, and joining them.

use std::ffi::{c_int, c_void};
use std::fmt;
use std::sync::{Arc, Mutex};

use super::eal::EalUse;
use super::error::{check, Result};
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LcoreId(pub u32);

impl fmt::Display for LcoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The lcore the calling thread runs on (`u32::MAX` for a thread EAL does not know).
pub fn current() -> LcoreId {
    // SAFETY: reads a thread-local; no preconditions.
    LcoreId(unsafe { sys::shim_rte_lcore_id() })
}

/// Sets the calling thread's timer slack (how late the kernel may wake it from a sleep);
/// Linux's default of 50 us would make every short sleep at least that long. A failure
/// leaves the default, which only makes sleeps longer.
pub fn set_timer_slack_ns(ns: u64) {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and affects only this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong) };
}

type Job = Box<dyn FnOnce() + Send + 'static>;

unsafe extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `launch`, handed to exactly one lcore.
    let job = unsafe { Box::from_raw(arg as *mut Job) };
    super::boundary::no_unwind("a worker lcore", job);
    0
}

/// A closure running on a worker lcore. `join` waits for it; dropping also waits, so an lcore
/// never outlives what it borrowed from the launcher's scope through `Arc`s.
pub struct Launched<T> {
    lcore: LcoreId,
    result: Arc<Mutex<Option<T>>>,
    joined: bool,
    _eal: EalUse,
}

/// Runs `f` on `lcore`, which must be an idle worker lcore.
pub fn launch<T, F>(lcore: LcoreId, f: F) -> Result<Launched<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let eal = EalUse::take("rte_eal_remote_launch")?;
    let result = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&result);
    let job: Job = Box::new(move || {
        let value = f();
        if let Ok(mut s) = slot.lock() {
            *s = Some(value);
        }
    });
    let arg = Box::into_raw(Box::new(job)) as *mut c_void;
    // SAFETY: trampoline matches lcore_function_t; arg is a valid leaked Box<Job>.
    let ret = unsafe { sys::rte_eal_remote_launch(Some(trampoline), arg, lcore.0) };
    if let Err(e) = check("rte_eal_remote_launch", ret) {
        // SAFETY: the launch failed, so no lcore took ownership of arg.
        drop(unsafe { Box::from_raw(arg as *mut Job) });
        return Err(e.with_detail(format!("lcore {lcore}")));
    }
    Ok(Launched { lcore, result, joined: false, _eal: eal })
}

impl<T> Launched<T> {
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Waits for the closure to return and hands back its value.
    pub fn join(mut self) -> Option<T> {
        self.wait();
        self.result.lock().ok().and_then(|mut s| s.take())
    }

    fn wait(&mut self) {
        if !self.joined {
            // SAFETY: the lcore was launched by us; waiting has no other precondition.
            unsafe { sys::rte_eal_wait_lcore(self.lcore.0) };
            self.joined = true;
        }
    }
}

impl<T> Drop for Launched<T> {
    fn drop(&mut self) {
        self.wait();
    }
}
