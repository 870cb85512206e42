//! EAL start-up and clean-up: once per process, from the main thread.

use std::ffi::{c_char, CString};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::{Result, RteError};
use super::lcore::LcoreId;
use crate::sys;

static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// How many wrappers of things EAL holds are alive (pools, ports, rings, vhost sockets, flow
/// rules, link callbacks, lcore launches: each holds an [`EalUse`]), with `NOT_RUNNING` set
/// before EAL is up and once it was cleaned up. `rte_eal_cleanup` frees EAL's memory and stops
/// its threads, so it runs only when nothing built on EAL is left, and nothing is built after.
static USES: AtomicUsize = AtomicUsize::new(NOT_RUNNING);
const NOT_RUNNING: usize = 1 << (usize::BITS - 1);

/// One thing built on EAL, alive: while any exists EAL is not cleaned up (dropping [`Eal`]
/// first leaves EAL's memory to the end of the process rather than freeing it under them).
/// A wrapper drops it after releasing what it wraps (struct fields drop after `Drop::drop`).
pub(crate) struct EalUse(());

impl EalUse {
    /// Fails before EAL is up and after it was cleaned up: nothing can be built on it then.
    pub(crate) fn take(op: &'static str) -> Result<EalUse> {
        let mut now = USES.load(Ordering::SeqCst);
        loop {
            if now & NOT_RUNNING != 0 {
                return Err(RteError::new(op, libc::ENODEV).with_detail("EAL is not running"));
            }
            match USES.compare_exchange_weak(now, now + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Ok(EalUse(())),
                Err(seen) => now = seen,
            }
        }
    }

    /// Keeps EAL up to the end of the process: for something left allocated on purpose (a
    /// pool dropped with buffers still out), which EAL's clean-up would free under them.
    pub(crate) fn keep_to_exit(&self) {
        USES.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for EalUse {
    fn drop(&mut self) {
        USES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The initialised EAL. Dropping it runs `rte_eal_cleanup` once nothing built on EAL is left
/// (see [`EalUse`]); `app` drops it last, so that clean-up runs. Not `Send`: clean-up belongs
/// to the main thread.
pub struct Eal {
    _main_thread: PhantomData<*const ()>,
}

impl Eal {
    /// `args[0]` is the program name, the rest are EAL options (what came before `--`).
    pub fn init<S: AsRef<str>>(args: &[S]) -> Result<Eal> {
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(RteError::new("rte_eal_init", libc::EALREADY)
                .with_detail("EAL is initialised once per process"));
        }
        let owned: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.as_ref()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| RteError::new("rte_eal_init", libc::EINVAL).with_detail("argument with a NUL byte"))?;
        // EAL may keep pointers into argv (and reorders it), so the strings live for the process.
        let argv: &'static mut [*mut c_char] = Box::leak(
            owned.into_iter().map(|c| c.into_raw()).collect::<Vec<_>>().into_boxed_slice(),
        );
        let argc = i32::try_from(argv.len()).unwrap_or(i32::MAX);
        // SAFETY: argv holds argc valid NUL-terminated strings that are never freed.
        let parsed = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if parsed < 0 {
            EAL_STARTED.store(false, Ordering::SeqCst);
            return Err(RteError::from_rte_errno("rte_eal_init"));
        }
        if (parsed as usize) + 1 < argv.len() {
            let rest = args[parsed as usize + 1..].iter().map(|a| a.as_ref()).collect::<Vec<_>>().join(" ");
            return Err(RteError::new("rte_eal_init", libc::EINVAL)
                .with_detail(format!("not EAL options: {rest} (put application options after `--`)")));
        }
        USES.fetch_and(!NOT_RUNNING, Ordering::SeqCst);
        Ok(Eal { _main_thread: PhantomData })
    }

    pub fn main_lcore(&self) -> LcoreId {
        // SAFETY: EAL is initialised (self exists).
        LcoreId(unsafe { sys::rte_get_main_lcore() })
    }

    /// The enabled lcores other than the main one, in EAL order.
    pub fn worker_lcores(&self) -> Vec<LcoreId> {
        let mut out = Vec::new();
        let mut i = u32::MAX; // rte_get_next_lcore(-1, ..) starts from the first lcore
        loop {
            // SAFETY: EAL is initialised; the call only reads its lcore configuration.
            i = unsafe { sys::rte_get_next_lcore(i, 1, 0) };
            if i >= sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(LcoreId(i));
        }
    }

    pub fn lcore_count(&self) -> u32 {
        // SAFETY: EAL is initialised.
        unsafe { sys::rte_lcore_count() }
    }

    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised, so the TSC frequency has been calibrated.
        unsafe { sys::rte_get_tsc_hz() }
    }

    pub fn socket_id(&self) -> i32 {
        // SAFETY: reads the calling thread's NUMA socket, set up by EAL.
        unsafe { sys::rte_socket_id() as i32 }
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // With something built on EAL still alive, EAL stays up until the process ends.
        if USES.compare_exchange(0, NOT_RUNNING, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return;
        }
        // SAFETY: nothing built on EAL is alive and nothing can be built any more (USES), and
        // this is the main thread (Eal is not Send).
        unsafe { sys::rte_eal_cleanup() };
    }
}

/// Ends the process at once with `code`: no destructors, no atexit handlers, no flushing
/// (flush what must be seen first). For a process whose DPDK threads are known to be in a
/// state where an orderly exit crashes them (see `macvtap-guest`'s quit).
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns; skipping destructors is the point.
    unsafe { libc::_exit(code) }
}

/// DPDK's version string, e.g. "DPDK 22.11.11".
pub fn version() -> String {
    // SAFETY: rte_version returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(sys::rte_version()) }.to_string_lossy().into_owned()
}

/// TSC cycles, for the workers' own busy/idle accounting.
#[inline(always)]
pub fn rdtsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: no preconditions.
        unsafe { sys::shim_rte_rdtsc() }
    }
}
