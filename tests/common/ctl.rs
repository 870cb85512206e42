//! `dpdk-macvtapctl` as a test runs it: the real client binary against a switch's control
//! socket, with its exit status, output and errors.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Ctl {
    pub socket: PathBuf,
}

/// What one run of the client did.
pub struct CtlRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ctl {
    pub fn new(socket: &Path) -> Ctl {
        Ctl { socket: socket.to_path_buf() }
    }

    pub fn run(&self, args: &[&str]) -> CtlRun {
        self.run_in(Command::new(env!("CARGO_BIN_EXE_dpdk-macvtapctl")), args)
    }

    /// Runs the client through `cmd` (e.g. `setpriv ... dpdk-macvtapctl`), which must be set
    /// up to exec it.
    pub fn run_in(&self, mut cmd: Command, args: &[&str]) -> CtlRun {
        let out = cmd.arg("--control").arg(&self.socket).args(args).output().expect("running dpdk-macvtapctl");
        CtlRun {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `--json ARGS`, which must succeed: the result.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let r = self.run(&all);
        assert_eq!(r.code, 0, "dpdk-macvtapctl {args:?} failed: {}{}", r.stdout, r.stderr);
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("dpdk-macvtapctl {args:?}: not JSON ({e}): {}", r.stdout))
    }

    /// ARGS, which the switch must refuse (exit 1): the message.
    pub fn refused(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 1, "dpdk-macvtapctl {args:?} should be refused: {}{}", r.stdout, r.stderr);
        r.stderr
    }

    /// One guest's counters from `stats NAME`.
    pub fn guest_counters(&self, name: &str) -> serde_json::Value {
        self.json(&["stats", name])["counters"].clone()
    }
}
