//! SIGINT/SIGTERM ask for a clean stop; SIGUSR1 asks for a stats dump; SIGHUP for a reload of
//! the guests file (what systemd's `ExecReload` sends). Handlers only set flags.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

pub struct Signals {
    stop: Arc<AtomicBool>,
    dump: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> std::io::Result<Signals> {
        let stop = Arc::new(AtomicBool::new(false));
        let dump = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(SIGINT, Arc::clone(&stop))?;
        signal_hook::flag::register(SIGTERM, Arc::clone(&stop))?;
        signal_hook::flag::register(SIGUSR1, Arc::clone(&dump))?;
        signal_hook::flag::register(SIGHUP, Arc::clone(&reload))?;
        Ok(Signals { stop, dump, reload })
    }

    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn take_dump_request(&self) -> bool {
        self.dump.swap(false, Ordering::Relaxed)
    }

    pub fn take_reload_request(&self) -> bool {
        self.reload.swap(false, Ordering::Relaxed)
    }
}
