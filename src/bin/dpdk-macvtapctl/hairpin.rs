//! `hairpin-check`: the switch starts the check and answers at once (its control loop never
//! waits); the verdict is ready within about a second, so the client asks `hairpin-status`
//! until the check is over.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::rpc::{self, Reply, RpcError};

/// Between two status requests.
const POLL: Duration = Duration::from_millis(50);

/// The first status reply whose check is over (`"checking": false`), starting from `reply`;
/// the last one seen if `timeout` passes first.
pub fn wait_verdict(path: &Path, mut reply: Reply, timeout: Duration) -> Result<Reply, RpcError> {
    let deadline = Instant::now() + timeout;
    while reply.result.get("checking").and_then(|c| c.as_bool()) == Some(true) && Instant::now() < deadline {
        std::thread::sleep(POLL);
        reply = rpc::call(path, "hairpin-status", None, super::REQUEST_ID, timeout)?;
    }
    Ok(reply)
}
