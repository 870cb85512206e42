//! Link-state-change interrupts of a port (`RTE_ETH_EVENT_INTR_LSC`).
//!
//! Thread: DPDK calls the callback on its interrupt thread, which also serves every other
//! device's interrupts, so the callback only runs the caller's `notify` (meant to set a flag
//! and wake the control thread, which then reads the link itself) and never blocks on the
//! switch. The callback carries no context pointer: the one `notify` of the process lives in
//! a static, so nothing the callback reads can be freed under it.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex, PoisonError};

use super::eal::EalUse;
use super::error::{check, Result};
use super::ethdev::{Port, PortId};
use crate::sys;

type Notify = Arc<dyn Fn() + Send + Sync>;

/// What the callback runs; `None` while nobody listens.
static NOTIFY: Mutex<Option<Notify>> = Mutex::new(None);

fn current() -> Option<Notify> {
    // A panic cannot leave an Option half-written: a poisoned lock is still usable.
    NOTIFY.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

unsafe extern "C" fn on_lsc(_port: u16, _event: sys::rte_eth_event_type, _arg: *mut c_void, _ret: *mut c_void) -> c_int {
    super::boundary::no_unwind("the link state change callback", || {
        if let Some(n) = current() {
            n();
        }
        0
    })
}

/// While it lives, `notify` runs after every link change of its port. Dropping it
/// unregisters the callback (before the port closes: keep it in a field dropped earlier).
pub struct LinkEvents {
    port: PortId,
    _eal: EalUse,
}

impl LinkEvents {
    /// Registers for `port`'s link changes; the port must have been configured with
    /// `PortConf::lsc`. One registration per process (the switch has one uplink).
    pub fn register(port: &Port, notify: Notify) -> Result<LinkEvents> {
        let eal = EalUse::take("rte_eth_dev_callback_register")?;
        *NOTIFY.lock().unwrap_or_else(PoisonError::into_inner) = Some(notify);
        // SAFETY: on_lsc is a valid callback for the process's lifetime and ignores its
        // argument, so a null one is fine.
        let rc = unsafe { sys::rte_eth_dev_callback_register(port.id().0, sys::RTE_ETH_EVENT_INTR_LSC, Some(on_lsc), std::ptr::null_mut()) };
        if let Err(e) = check("rte_eth_dev_callback_register", rc) {
            *NOTIFY.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Err(e.with_detail(format!("port {}", port.name())));
        }
        Ok(LinkEvents { port: port.id(), _eal: eal })
    }
}

impl Drop for LinkEvents {
    fn drop(&mut self) {
        loop {
            // SAFETY: the same (callback, argument) pair that was registered.
            let rc = unsafe { sys::rte_eth_dev_callback_unregister(self.port.0, sys::RTE_ETH_EVENT_INTR_LSC, Some(on_lsc), std::ptr::null_mut()) };
            // -EAGAIN: the callback is running right now; it finishes quickly (it only
            // notifies), so try again.
            if rc != -libc::EAGAIN {
                break;
            }
            std::thread::yield_now();
        }
        *NOTIFY.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}
