//! Child processes driven over stdin/stdout: the switch and the test guests.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{eal_test_args, hex, mac, unhex, unique, Netns};

/// How many lines of each stream a failure message shows (the end, where the cause usually is).
const REPORT_LINES: usize = 200;

/// Set MVT_TEST_ECHO=1 to see children's output live (with `--nocapture`).
fn echo() -> bool {
    std::env::var_os("MVT_TEST_ECHO").is_some_and(|v| v != "0")
}

/// Reads `from` line by line into `seen`, and into `to` if given; ends at EOF, i.e. when the
/// child (and anything that inherited the pipe) exited.
fn pump(
    from: impl Read + Send + 'static,
    seen: Arc<Mutex<Vec<String>>>,
    to: Option<std::sync::mpsc::Sender<String>>,
    label: String,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if echo() {
                eprintln!("[{label}] {line}");
            }
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(line.clone());
            if let Some(to) = &to {
                // The receiver is gone only when the Proc is being dropped; keep draining the
                // pipe anyway so the child never blocks on a full one.
                let _ = to.send(line);
            }
        }
    })
}

/// A child process with its stdout delivered line by line, stderr kept for failure messages,
/// and a SIGKILL on drop if it still runs, so that a failing test leaves nothing behind.
pub struct Proc {
    pub name: String,
    pid: i32,
    // Mutexes only so the methods can take `&self`: a Proc is used from one test thread.
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    lines: Receiver<String>,
    stdout_seen: Arc<Mutex<Vec<String>>>,
    stderr_seen: Arc<Mutex<Vec<String>>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    /// Removed once the child is gone (DPDK runtime directories).
    cleanup: Vec<PathBuf>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves nothing half-updated worth refusing.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Proc {
    /// Spawns `cmd` with piped stdin/stdout/stderr. `name` labels it in messages.
    pub fn spawn(mut cmd: Command, name: &str) -> Proc {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        let (tx, lines) = channel();
        let stdout_seen = Arc::new(Mutex::new(Vec::new()));
        let stderr_seen = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            pump(out, stdout_seen.clone(), Some(tx), name.to_owned()),
            pump(err, stderr_seen.clone(), None, format!("{name} stderr")),
        ];
        if echo() {
            eprintln!("[{name}] started pid {}: {cmd:?}", child.id());
        }
        Proc {
            name: name.to_owned(),
            pid: child.id() as i32,
            stdin: Mutex::new(child.stdin.take()),
            child: Mutex::new(child),
            lines,
            stdout_seen,
            stderr_seen,
            readers: Mutex::new(readers),
            cleanup: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process still runs (false once it exited, whether or not anyone waited).
    pub fn running(&self) -> bool {
        matches!(lock(&self.child).try_wait(), Ok(None))
    }

    /// Removes `path` (file or directory) after the process is gone.
    pub fn cleanup_after(&mut self, path: PathBuf) {
        self.cleanup.push(path);
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        lock(&self.stdout_seen).clone()
    }

    pub fn stderr_lines(&self) -> Vec<String> {
        lock(&self.stderr_seen).clone()
    }

    /// Everything seen so far on stdout and stderr, for failure messages.
    pub fn report(&self) -> String {
        fn tail(lines: &[String]) -> String {
            let skip = lines.len().saturating_sub(REPORT_LINES);
            let mut s = if skip > 0 { format!("  ... {skip} earlier lines\n") } else { String::new() };
            for l in &lines[skip..] {
                s.push_str("  ");
                s.push_str(l);
                s.push('\n');
            }
            s
        }
        format!(
            "--- {} (pid {}) stdout:\n{}--- {} stderr:\n{}---",
            self.name,
            self.pid,
            tail(&self.stdout_lines()),
            self.name,
            tail(&self.stderr_lines())
        )
    }

    /// Gives the reader threads a moment to reach EOF, so that a report made right after the
    /// process exited includes its last stderr lines (stdout may close before stderr).
    fn settle_readers(&self) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while lock(&self.readers).iter().any(|h| !h.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Why a reader came up empty: the exit status if the child is gone.
    fn status_note(&self) -> String {
        // Stdout closes a moment before the exit status is collectable.
        let deadline = Instant::now() + Duration::from_millis(500);
        loop {
            match lock(&self.child).try_wait() {
                Ok(Some(st)) => return format!("exited with {st}"),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                _ => return "closed its stdout but is still running".to_owned(),
            }
        }
    }

    /// The next stdout line, or `None` if `timeout` passes first. Panics if stdout closed.
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                let note = self.status_note();
                self.settle_readers();
                panic!("{} {note}\n{}", self.name, self.report());
            }
        }
    }

    /// Returns the first stdout line starting with `prefix`, skipping others. Panics, showing
    /// all the output, on timeout or if the process exits first.
    pub fn wait_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => {}
                None => panic!("{}: no line starting with {prefix:?} within {timeout:?}\n{}", self.name, self.report()),
            }
        }
    }

    pub fn send_line(&self, line: &str) {
        let written = match lock(&self.stdin).as_mut() {
            Some(stdin) => stdin.write_all(format!("{line}\n").as_bytes()).and_then(|()| stdin.flush()),
            None => panic!("{}: stdin already closed", self.name),
        };
        if let Err(e) = written {
            let note = self.status_note();
            panic!("{}: writing {line:?} to stdin: {e} ({note})\n{}", self.name, self.report());
        }
    }

    /// Closes stdin, which the guest takes as end of commands.
    pub fn close_stdin(&self) {
        *lock(&self.stdin) = None;
    }

    /// Sends a signal (libc::SIGINT, SIGTERM, ...) if the process still runs.
    pub fn signal(&self, sig: i32) {
        // Holding the lock keeps anyone from reaping the child between the check and the kill.
        let mut child = lock(&self.child);
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: kill(2) with the pid of our own unreaped child: the pid cannot have been
            // reused, because the child has not been waited for.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits for the process to exit: its exit code, or 128 + signal if a signal killed it.
    /// On timeout it is killed and the test fails.
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let status = loop {
            let polled = lock(&self.child).try_wait();
            match polled {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let mut child = lock(&self.child);
                    let _ = child.kill();
                    let _ = child.wait();
                    drop(child);
                    panic!("{} did not exit within {timeout:?}; killed\n{}", self.name, self.report());
                }
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        };
        self.join_readers();
        status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// After exit: lets the readers reach EOF so the collected output is complete.
    fn join_readers(&self) {
        let readers: Vec<_> = lock(&self.readers).drain(..).collect();
        for r in readers {
            let _ = r.join();
        }
    }

    /// All stdout lines, joined; complete once [`Proc::wait_exit`] returned.
    pub fn stdout_text(&self) -> String {
        let mut s = self.stdout_lines().join("\n");
        s.push('\n');
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        for p in &self.cleanup {
            let _ = std::fs::remove_dir_all(p).or_else(|_| std::fs::remove_file(p));
        }
    }
}

/// Runs the switch (or another DPDK process) started with `--file-prefix=file_prefix` to its
/// exit, then removes the runtime files EAL left (a process that exits with an error does
/// not remove them).
pub fn run_to_exit(cmd: &mut Command, file_prefix: &str) -> std::process::Output {
    let out = cmd.output().expect("running the binary");
    let _ = std::fs::remove_dir_all(dpdk_runtime_dir(file_prefix));
    out
}

/// Where DPDK 22.11 keeps a process's runtime files when it runs as root.
fn dpdk_runtime_dir(file_prefix: &str) -> PathBuf {
    PathBuf::from("/var/run/dpdk").join(file_prefix)
}

/// A running `macvtap-guest`: a virtio-user port on a vhost-user socket, driven by its
/// line protocol (see src/bin/macvtap-guest.rs).
pub struct Guest {
    pub proc: Proc,
    /// From its `ready mac=` line (all zero until then).
    pub mac: [u8; 6],
}

/// Generous: on 2 cores a guest competes with a busy-polling switch for CPU.
const GUEST_READY: Duration = Duration::from_secs(70);
const GUEST_REPLY: Duration = Duration::from_secs(120);

impl Guest {
    /// Starts a guest as a vhost-user client of `socket` and waits until its link is up.
    /// `prefix` (short) becomes part of its unique DPDK file prefix.
    pub fn start(socket: &Path, prefix: &str) -> Guest {
        Guest::start_with(socket, prefix, &[])
    }

    /// Like [`Guest::start`], with extra application arguments (`--server`, `--mac M`, `--queues N`).
    pub fn start_with(socket: &Path, prefix: &str, extra: &[&str]) -> Guest {
        let mut g = Guest::spawn(socket, prefix, extra);
        g.wait_ready();
        g
    }

    /// Starts a guest without waiting for its link (for a `--server` guest the switch must
    /// connect first); call [`Guest::wait_ready`] afterwards.
    pub fn spawn(socket: &Path, prefix: &str, extra: &[&str]) -> Guest {
        let file_prefix = unique(prefix);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_macvtap-guest"));
        cmd.args(["--no-huge", "-m", "256", "--no-pci", "--log-level=lib.eal:warning", "-l", "0"])
            .arg(format!("--file-prefix={file_prefix}"))
            .arg("--")
            .arg("--socket")
            .arg(socket)
            .args(extra);
        let mut proc = Proc::spawn(cmd, &format!("guest {file_prefix}"));
        proc.cleanup_after(dpdk_runtime_dir(&file_prefix));
        Guest { proc, mac: [0; 6] }
    }

    pub fn wait_ready(&mut self) {
        let line = self.proc.wait_line("ready", GUEST_READY);
        if let Some(m) = line.split_whitespace().find_map(|w| w.strip_prefix("mac=")) {
            self.mac = mac(m);
        }
    }

    /// Sends a command and returns the rest of the first reply line starting with `expect `;
    /// an `error` reply fails the test.
    fn ask(&self, cmd: &str, expect: &str, timeout: Duration) -> String {
        self.proc.send_line(cmd);
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.proc.next_line(left) else {
                panic!("{}: no `{expect}` reply to `{}` within {timeout:?}\n{}", self.proc.name, short(cmd), self.proc.report());
            };
            if let Some(rest) = line.strip_prefix(expect).and_then(|r| r.strip_prefix(' ')) {
                return rest.to_owned();
            }
            if line.starts_with("error") {
                panic!("{} answered `{}` with: {line}\n{}", self.proc.name, short(cmd), self.proc.report());
            }
        }
    }

    fn number<T: std::str::FromStr>(&self, word: &str, line: &str) -> T {
        word.parse().unwrap_or_else(|_| panic!("{}: unexpected reply {line:?}", self.proc.name))
    }

    /// Sends `frame` `count` times; returns how many were sent.
    pub fn send(&self, frame: &[u8], count: u32) -> u32 {
        let r = self.ask(&format!("send {} {count}", hex(frame)), "sent", GUEST_REPLY);
        self.number(&r, &r)
    }

    /// Sends `count` frames of `len` bytes, ethertype 0x88b5, payload a big-endian u32
    /// sequence number then zeroes; returns how many were sent.
    pub fn stream(&self, dst: [u8; 6], src: [u8; 6], len: usize, count: u32) -> u32 {
        let cmd = format!("stream {} {} {len} {count}", super::mac_str(dst), super::mac_str(src));
        let r = self.ask(&cmd, "sent", GUEST_REPLY);
        self.number(&r, &r)
    }

    /// Like [`Guest::stream`], numbering the frames from `first` (so that several streams
    /// make one sequence per source MAC).
    pub fn stream_from(&self, dst: [u8; 6], src: [u8; 6], len: usize, count: u32, first: u32) -> u32 {
        let cmd = format!("stream {} {} {len} {count} {first}", super::mac_str(dst), super::mac_str(src));
        let r = self.ask(&cmd, "sent", GUEST_REPLY);
        self.number(&r, &r)
    }

    /// Receives until `idle_ms` pass without a frame and checks the sequence numbers of
    /// stream frames per source MAC: (frames, flows, numbers skipped, frames out of order).
    pub fn seqcheck(&self, idle_ms: u64) -> SeqCheck {
        let r = self.ask(&format!("seqcheck {idle_ms}"), "checked", Duration::from_secs(600));
        let mut w = r.split_whitespace();
        let frames = self.number(w.next().unwrap_or(""), &r);
        let mut field = |k: &str| -> u64 { self.number(w.next().and_then(|x| x.strip_prefix(k)).unwrap_or(""), &r) };
        SeqCheck { frames, flows: field("flows="), gaps: field("gaps="), late: field("late=") }
    }

    /// Runs `send` on this thread while another checks what reaches this guest
    /// (`seqcheck(idle_ms)`); returns the guest, what `send` returned and what it saw.
    pub fn receive_while<T>(self, idle_ms: u64, send: impl FnOnce() -> T) -> (Guest, T, SeqCheck) {
        std::thread::scope(|s| {
            let reader = s.spawn(move || {
                let got = self.seqcheck(idle_ms);
                (self, got)
            });
            let sent = send();
            let (g, got) = reader.join().expect("reader");
            (g, sent, got)
        })
    }

    /// Frames received within `timeout_ms`, at most `max`.
    pub fn recv(&self, timeout_ms: u64, max: usize) -> Vec<Vec<u8>> {
        self.proc.send_line(&format!("recv {timeout_ms} {max}"));
        let deadline = Instant::now() + Duration::from_millis(timeout_ms) + GUEST_REPLY;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.proc.next_line(left) else {
                panic!("{}: no `done` after recv\n{}", self.proc.name, self.proc.report());
            };
            if let Some(h) = line.strip_prefix("frame ") {
                frames.push(unhex(h));
            } else if let Some(n) = line.strip_prefix("done ") {
                let n: usize = self.number(n, &line);
                assert_eq!(n, frames.len(), "{}: `{line}` after {} frame lines", self.proc.name, frames.len());
                return frames;
            } else if line.starts_with("error") {
                panic!("{} answered recv with: {line}\n{}", self.proc.name, self.proc.report());
            }
        }
    }

    /// Receives until `idle_ms` pass without a frame: (frames, bytes).
    pub fn count(&self, idle_ms: u64) -> (u64, u64) {
        let r = self.ask(&format!("count {idle_ms}"), "counted", Duration::from_secs(600));
        let mut w = r.split_whitespace();
        let n = self.number(w.next().unwrap_or(""), &r);
        let b = self.number(w.next().and_then(|x| x.strip_prefix("bytes=")).unwrap_or(""), &r);
        (n, b)
    }

    /// The guest's own totals: (rx, tx) frames.
    pub fn stats(&self) -> (u64, u64) {
        let r = self.ask("stats", "stats", GUEST_REPLY);
        let field = |k: &str| -> u64 {
            let v = r.split_whitespace().find_map(|w| w.strip_prefix(k)).unwrap_or("");
            self.number(v, &r)
        };
        (field("rx="), field("tx="))
    }

    /// Asks the guest to quit and checks it says `bye` and exits 0.
    pub fn quit(mut self) {
        self.proc.send_line("quit");
        self.proc.wait_line("bye", GUEST_REPLY);
        let code = self.proc.wait_exit(Duration::from_secs(20));
        assert_eq!(code, 0, "{} exited with {code} after quit\n{}", self.proc.name, self.proc.report());
    }
}

/// What `Guest::seqcheck` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqCheck {
    pub frames: u64,
    pub flows: u64,
    pub gaps: u64,
    pub late: u64,
}

/// A command for messages, without kilobytes of hex.
fn short(cmd: &str) -> String {
    if cmd.len() > 80 {
        format!("{}...", &cmd[..80])
    } else {
        cmd.to_owned()
    }
}

/// A running `dpdk-macvtap`.
pub struct Switch {
    pub proc: Proc,
    pub file_prefix: String,
}

const SWITCH_START: Duration = Duration::from_secs(60);

impl Switch {
    /// Starts the switch (inside `netns` if given) with the `test` EAL profile, a unique file
    /// prefix and lcores 0-1, then `eal` and, after `--`, `app`; waits until it forwards.
    pub fn start(netns: Option<&Netns>, eal: &[String], app: &[String]) -> Switch {
        let s = Switch::spawn(netns, eal, app);
        s.proc.wait_line("dpdk-macvtap: forwarding", SWITCH_START);
        s
    }

    /// Like [`Switch::start`] without waiting, for tests that expect start-up to fail.
    pub fn spawn(netns: Option<&Netns>, eal: &[String], app: &[String]) -> Switch {
        Switch::spawn_env(netns, eal, app, &[])
    }

    /// Like [`Switch::spawn`], with extra environment variables (`NOTIFY_SOCKET`).
    pub fn spawn_env(netns: Option<&Netns>, eal: &[String], app: &[String], env: &[(&str, &str)]) -> Switch {
        let file_prefix = unique("sw");
        let bin = env!("CARGO_BIN_EXE_dpdk-macvtap");
        // `ip netns exec` execs the program in place, so the pid (and signals) are the switch's.
        let mut cmd = match netns {
            Some(ns) => ns.command(bin),
            None => Command::new(bin),
        };
        cmd.args(eal_test_args()).arg(format!("--file-prefix={file_prefix}"));
        // Lcores 0-1 unless the test lays them out itself (e.g. --lcores=0@0,1@1,2@1 for two
        // workers on this 2-core machine).
        if !eal.iter().any(|a| a == "-l" || a.starts_with("--lcores")) {
            cmd.args(["-l", "0-1"]);
        }
        cmd.args(eal)
            .arg("--")
            .args(app)
            .envs(env.iter().copied());
        let mut proc = Proc::spawn(cmd, &format!("dpdk-macvtap {file_prefix}"));
        proc.cleanup_after(dpdk_runtime_dir(&file_prefix));
        Switch { proc, file_prefix }
    }

    /// Stops the switch and fails the test unless it exited 0 with every mbuf back in its pool.
    /// Returns all of its stdout.
    pub fn stop_clean(self) -> String {
        self.proc.signal(libc::SIGINT);
        self.stop_clean_after_signal()
    }

    /// For a switch already told to stop (SIGTERM, SIGINT): waits, and fails the test unless
    /// it exited 0 with every mbuf back in its pool. Returns all of its stdout.
    pub fn stop_clean_after_signal(mut self) -> String {
        let name = self.proc.name.clone();
        let code = self.proc.wait_exit(Duration::from_secs(20));
        let out = self.proc.stdout_text();
        assert_eq!(code, 0, "{name} exit status\n{out}");
        assert!(out.contains("mempool in use at exit: 0 (at start: 0;"), "{name}: mbufs leaked at exit\n{out}");
        out
    }

    /// SIGINT, then waits up to 20 s: (exit code, all stdout).
    pub fn stop(mut self) -> (i32, String) {
        self.proc.signal(libc::SIGINT);
        let code = self.proc.wait_exit(Duration::from_secs(20));
        (code, self.proc.stdout_text())
    }
}
