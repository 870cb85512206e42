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

    /// The frames the switch itself has sent on the uplink so far (announcements, probes).
    pub fn originated(&self) -> u64 {
        self.json(&["stats"])["originated"]["tx_packets"].as_u64().expect("originated tx_packets")
    }

    /// One worker's counters (`stats` JSON `workers[w]`).
    pub fn worker(&self, w: usize) -> serde_json::Value {
        self.json(&["stats"])["workers"][w].clone()
    }

    /// How many of worker `w`'s blocks ended for reason `why` (kick, uplink, doorbell,
    /// timeout).
    pub fn wake_count(&self, w: usize, why: &str) -> u64 {
        self.worker(w)["wakes"][why].as_u64().unwrap_or_else(|| panic!("no wakes.{why}"))
    }

    /// Once worker `w` blocks, `send` sends `frame`: `g` receives it (alone) within 5 s, and
    /// it ended the block as an uplink wake-up. `what` names the frame in a failure.
    pub fn uplink_frame_wakes(&self, w: usize, g: &super::Guest, frame: &[u8], send: impl FnOnce(&[u8]), what: &str) {
        self.wait_blocked(w);
        let before = self.wake_count(w, "uplink");
        send(frame);
        assert_eq!(g.recv(5000, 1), vec![frame.to_vec()], "{what}, sent while worker {w} blocked");
        assert!(self.wake_count(w, "uplink") > before, "{what} woke worker {w}: {}", self.worker(w));
    }

    /// Returns once worker `w` blocks: it has begun one block more than it has ended. With a
    /// block limit of a minute (the tests that call this set one) it then stays blocked until
    /// a kick, an interrupt or its doorbell, so a wake-up that is missed fails the test's next
    /// deadline (5 s for a frame, 1.5 s of silence for a burst, 20 s for the exit).
    pub fn wait_blocked(&self, w: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let v = self.worker(w);
            let n = |k: &str| v["wakes"][k].as_u64().expect("wakes");
            let ended = n("kick") + n("uplink") + n("doorbell") + n("timeout");
            if v["blocks"].as_u64().expect("blocks") > ended {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "worker {w} never blocked: {v}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
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
