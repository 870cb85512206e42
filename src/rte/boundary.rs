//! Where Rust is called from C (lcore launch, vhost and telemetry callbacks): a panic must not
//! unwind into DPDK's frames, whose state it would leave half-changed. It is caught at the
//! boundary and the process aborts with a message (the release profile aborts on panic anyway;
//! this keeps debug builds and tests from unwinding through C too).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, which is called from C as `what`; aborts the process if it panics.
pub(crate) fn no_unwind<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            let _ = writeln!(std::io::stderr(), "dpdk-macvtap: {what} panicked: {msg}; aborting");
            std::process::abort();
        }
    }
}
