//! Child processes of a measurement: spawned with their output in a log file, signalled by
//! their own pid (never by name), and always reaped, so a failed run leaves nothing behind.
//!
//! Runs on the orchestrator's main thread only.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A command line as it is run, kept for the report ("exact commands").
pub fn render(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!("{}={} ", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.contains('"') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// A running child whose stdout and stderr go to `log`. Dropping it kills and reaps it.
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    pub cmdline: String,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let cmdline = render(&cmd);
        let child = cmd.spawn().with_context(|| format!("starting {name}: {cmdline}"))?;
        Ok(Proc { name: name.to_owned(), log: log.to_owned(), cmdline, child: Some(child) })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the child has not exited.
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the log contains `needle`; fails if the child exits first or time runs out.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_for_every(needle, timeout, Duration::from_millis(50))
    }

    /// `wait_for`, looking every `poll` (the idle bench's probe window ends within 5 ms of its
    /// last line).
    pub fn wait_for_every(&mut self, needle: &str, timeout: Duration, poll: Duration) -> Result<()> {
        let t0 = Instant::now();
        loop {
            if self.log_text().contains(needle) {
                return Ok(());
            }
            if !self.alive() {
                bail!("{} exited before printing {needle:?}; log {}:\n{}", self.name, self.log.display(), tail(&self.log_text(), 25));
            }
            if t0.elapsed() > timeout {
                bail!("{} did not print {needle:?} within {timeout:?}; log {}:\n{}", self.name, self.log.display(), tail(&self.log_text(), 25));
            }
            if crate::stopping() {
                bail!("stopped by signal");
            }
            std::thread::sleep(poll);
        }
    }

    pub fn signal(&self, sig: i32) {
        let pid = self.pid();
        if pid > 0 {
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// SIGINT, then SIGKILL if it has not exited after `grace`. Returns the log.
    pub fn stop(mut self, grace: Duration) -> String {
        self.finish(grace);
        self.log_text()
    }

    fn finish(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else { return };
        if matches!(c.try_wait(), Ok(None)) {
            // SAFETY: as in `signal`.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let t0 = Instant::now();
            while matches!(c.try_wait(), Ok(None)) && t0.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(c.try_wait(), Ok(None)) {
                eprintln!("bench: {} ignored SIGINT for {grace:?}; killing it", self.name);
                let _ = c.kill();
            }
        }
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.finish(Duration::from_secs(3));
    }
}

/// Runs a short command to completion; fails with its output if it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let line = render(cmd);
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {line}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{line} failed ({}):\n{}", out.status, tail(&text, 20));
    }
    Ok(text)
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Kills the process whose pid is in `pidfile`, if any (daemons that detached themselves).
pub fn kill_pidfile(pidfile: &Path) {
    let Ok(s) = std::fs::read_to_string(pidfile) else { return };
    let Ok(pid) = s.trim().parse::<i32>() else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) with signal 0 only checks existence; then SIGTERM/SIGKILL to that pid.
    unsafe {
        if libc::kill(pid, 0) != 0 {
            return;
        }
        libc::kill(pid, libc::SIGTERM);
    }
    for _ in 0..60 {
        // SAFETY: as above.
        if unsafe { libc::kill(pid, 0) } != 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
