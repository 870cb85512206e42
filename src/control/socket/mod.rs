//! The control socket server: the transport of the runtime control plane.
//!
//! A UNIX stream socket (default `/run/dpdk-macvtap/control.sock`) that speaks line-delimited
//! JSON-RPC 2.0: one request object per line, one reply line per request, in order:
//!
//! ```text
//! -> {"jsonrpc":"2.0","id":1,"method":"guest-show","params":{"name":"vm1"}}
//! <- {"jsonrpc":"2.0","id":1,"result":{...}}
//! <- {"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"guest \"vm9\" does not exist"}}
//! ```
//!
//! This module owns the transport, the framing, the envelope, the limits and the protocol
//! errors; the methods are the switch's: [`ControlServer::serve`] calls the handler it is
//! given with `(method, params)` and sends back what it returns.
//!
//! # Thread
//!
//! The server lives on the control thread, in the same loop as link tracking, rebalancing
//! and stats, never on a worker: the handler runs synchronously on that thread, so it can
//! change control-plane state without locks and talks to workers the way the rest of the
//! control plane does (atomics and handovers). Nothing here ever blocks: sockets are
//! non-blocking and polled with mio, so one client that neither sends nor reads delays no
//! other client, and the control loop keeps its rhythm ([`ControlServer::waker`] lets
//! another thread cut a wait short, e.g. on shutdown).
//!
//! # Limits, and why
//!
//! Every client-controlled resource is bounded, because the switch runs for months as root
//! and a client may be buggy, stuck or hostile (within the socket's permissions):
//! - a request line is at most [`MAX_LINE`] bytes; a longer one gets a -32600 reply and the
//!   connection is closed (a reader cannot resynchronize in the middle of a line, and it
//!   bounds the input buffer per client);
//! - at most [`MAX_CLIENTS`] connections: the next one gets one error line and is closed
//!   (bounds descriptors and buffers);
//! - replies a client does not read: once more than [`MAX_PENDING_OUTPUT`] bytes of them
//!   are unsent, the client's further requests wait unanswered (in its line buffer and the
//!   kernel's) until it reads; if it takes nothing for [`WRITE_STALL_TIMEOUT`], it is
//!   disconnected. This bounds output memory to the limit plus one reply per client, and
//!   never drops a client that reads: one that pipelines requests whose replies add up to
//!   more than the limit (`stats` twice, say) is only slowed to the pace it reads at, which
//!   dropping at the limit would not allow, since replies are produced faster than any
//!   client can read them;
//! - an incomplete line kept for more than [`PARTIAL_LINE_TIMEOUT`] disconnects the client
//!   (a stuck or slow-drip writer holds a slot); an idle client between requests may stay;
//! - an event subscriber (below) whose unread notifications pass [`MAX_PENDING_OUTPUT`] is
//!   disconnected at once (counted as `dropped_slow`): notifications come from the switch,
//!   not from its requests, so there is nothing to hold back instead.
//!
//! # Event stream
//!
//! A client that calls [`SUBSCRIBE`] (and whose handler answers it without error: the reply
//! is the state the events then change) receives, after that reply, one JSON-RPC
//! notification per line for each event [`ControlServer::notify`] is given:
//! `{"jsonrpc":"2.0","method":"event","params":{...}}`. It may keep sending requests.
//!
//! The socket is created with its final owner and mode before it gets its name (see
//! [`ControlServer::bind`]), so it is never reachable with the process umask's permissions.
//! Writes to a client that left fail with EPIPE rather than killing the process because the
//! Rust runtime ignores SIGPIPE; the switch must keep it ignored.

mod client;
mod rpc;
#[cfg(test)]
mod tests;

use std::fs::{self, DirBuilder, Permissions};
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::Value;

use client::{Client, Line};
pub use rpc::RpcError;

/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 64;
/// Longest request line, in bytes, without its line ending.
pub const MAX_LINE: usize = 65536;
/// Most reply bytes a client may leave unread before its further requests wait.
pub const MAX_PENDING_OUTPUT: usize = 1 << 20;
/// Longest a client may keep an incomplete request line.
pub const PARTIAL_LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a client's pending replies may go without the socket taking a byte.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The method that subscribes a connection to the event stream (see the module doc).
pub const SUBSCRIBE: &str = "events.subscribe";

/// How long a connection being closed by the server waits for the client to close its side
/// (see `Client::closing`).
const LINGER: Duration = Duration::from_secs(2);
/// Bytes read from one client per round: a client that writes without pause gets its turn
/// and then waits for the next round, instead of starving the others.
const READ_BUDGET: usize = 256 * 1024;
/// Connections accepted per round, for the same reason.
const ACCEPT_BUDGET: usize = 64;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
/// Client `i` (index in `ControlServer::clients`) has token `FIRST_CLIENT + i`.
const FIRST_CLIENT: usize = 2;

/// Who may use the socket: ownership and mode applied to the socket file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketAccess {
    /// uid to give the socket; `None` keeps the switch's.
    pub owner: Option<u32>,
    /// gid to give the socket; `None` keeps the switch's.
    pub group: Option<u32>,
    /// Permission bits (at most 0o777); connecting needs write permission.
    pub mode: u32,
}

impl Default for SocketAccess {
    /// Owner and group may connect, others may not.
    fn default() -> SocketAccess {
        SocketAccess { owner: None, group: None, mode: 0o660 }
    }
}

/// The server's limits. [`Default`] is the protocol's; tests shorten the timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections at once, counting those being closed.
    pub max_clients: usize,
    /// Longest request line in bytes, without "\n" or "\r\n".
    pub max_line: usize,
    /// Unsent reply bytes past which a client's further requests wait until it reads.
    pub max_pending_output: usize,
    /// Longest an incomplete request line may wait for its end.
    pub partial_line_timeout: Duration,
    /// Longest unsent replies may wait without the client taking any.
    pub write_stall_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_clients: MAX_CLIENTS,
            max_line: MAX_LINE,
            max_pending_output: MAX_PENDING_OUTPUT,
            partial_line_timeout: PARTIAL_LINE_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
        }
    }
}

/// Counters since the server was bound, for the switch to show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// Connections accepted and served.
    pub accepted: u64,
    /// Connections turned away because [`Limits::max_clients`] were connected.
    pub rejected_too_many: u64,
    /// Clients disconnected because they did not read their replies (none taken for
    /// [`Limits::write_stall_timeout`]).
    pub dropped_slow: u64,
    /// Clients disconnected after a request line longer than [`Limits::max_line`].
    pub dropped_long_line: u64,
    /// Clients disconnected for keeping an incomplete line too long.
    pub dropped_idle: u64,
    /// Request lines received (empty lines aside), well-formed or not.
    pub requests: u64,
    /// Error replies sent, by the server or the handler.
    pub errors: u64,
}

/// The switch's side of the protocol: called with (method, params) for each request, returns
/// the result or the error to send back. See [`ControlServer::serve`].
pub type Handler<'a> = dyn FnMut(&str, &Value) -> Result<Value, RpcError> + 'a;

/// Why a client is disconnected.
enum Disconnect {
    /// It closed, or its socket failed: not counted.
    Gone,
    Slow,
    Idle,
}

/// The control socket, its clients, and their buffers. See the module doc.
pub struct ControlServer {
    path: PathBuf,
    /// (device, inode) of the socket file bound: `Drop` removes the path only if it still is
    /// this socket, not one that a later instance put there.
    inode: (u64, u64),
    listener: UnixListener,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// Indexed by token - `FIRST_CLIENT`; a freed slot is reused by the next client.
    clients: Vec<Option<Client>>,
    /// Tokens to service next round although no event may come for them (edge-triggered
    /// readiness): clients whose read budget ran out, the listener after its accept budget.
    backlog: Vec<Token>,
    /// Accepting failed for lack of resources (e.g. EMFILE): try again next round.
    accept_retry: bool,
    limits: Limits,
    stats: ServerStats,
}

impl ControlServer {
    /// Binds the control socket at `path` with the default [`Limits`].
    ///
    /// Creates the directory (mode 0755) if missing. If `path` exists: a socket that accepts a
    /// connection belongs to a live process, so binding is refused ("control socket PATH:
    /// another process serves it"); a socket that refuses connections is a stale one left by a process that died,
    /// and is removed; anything else is refused and left alone.
    ///
    /// The socket is bound in a private (0700) directory beside `path`, given its owner,
    /// group and mode there, and only then linked at `path`, so nobody can connect while it
    /// still has the umask's permissions; linking (unlike renaming) also never replaces a
    /// file that appeared meanwhile.
    pub fn bind(path: &Path, access: &SocketAccess) -> anyhow::Result<ControlServer> {
        ControlServer::bind_with_limits(path, access, Limits::default())
    }

    /// [`bind`](ControlServer::bind) with other limits.
    pub fn bind_with_limits(path: &Path, access: &SocketAccess, limits: Limits) -> anyhow::Result<ControlServer> {
        let what = || format!("control socket {}", path.display());
        if access.mode & !0o777 != 0 {
            bail!("{}: mode {:#o} has bits beyond 0o777", what(), access.mode);
        }
        let Some(name) = path.file_name() else { bail!("{}: not a file name", what()) };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        create_dirs(dir).with_context(|| format!("{}: creating directory {}", what(), dir.display()))?;
        super::stale_socket::clear(path, "control socket")?;

        let poll = Poll::new().with_context(|| format!("{}: creating the poller", what()))?;
        let waker = Waker::new(poll.registry(), WAKER).with_context(|| format!("{}: creating the waker", what()))?;

        let (listener, inode) = bind_private(path, dir, name, access)?;
        // From here on, dropping `server` (on an error below) removes the socket file.
        let mut server = ControlServer {
            path: path.to_path_buf(),
            inode,
            listener,
            poll,
            events: Events::with_capacity(256),
            waker: Arc::new(waker),
            clients: Vec::new(),
            backlog: Vec::new(),
            accept_retry: false,
            limits,
            stats: ServerStats::default(),
        };
        server
            .poll
            .registry()
            .register(&mut server.listener, LISTENER, Interest::READABLE)
            .with_context(|| format!("{}: registering with the poller", what()))?;
        Ok(server)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `wake()` on it, from any thread, makes a `serve` in progress return.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Clients connected, including those being closed.
    pub fn clients(&self) -> usize {
        self.clients.iter().flatten().count()
    }

    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Clients subscribed to the event stream.
    pub fn subscribers(&self) -> usize {
        self.clients.iter().flatten().filter(|c| c.subscribed && c.closing.is_none()).count()
    }

    /// Sends `{"jsonrpc":"2.0","method":METHOD,"params":PARAMS}` to every subscriber, as far
    /// as its socket takes it now (the rest goes out as it reads). A subscriber whose unread
    /// output passes the limit is disconnected: it does not read, and the switch will not
    /// keep its events for it without bound.
    pub fn notify(&mut self, method: &str, params: &Value) {
        let now = Instant::now();
        let mut line = Vec::new();
        rpc::encode_notification(&mut line, method, params);
        for slot in 0..self.clients.len() {
            let Some(client) = self.clients[slot].as_mut().filter(|c| c.subscribed && c.closing.is_none()) else { continue };
            client.output.buf().extend_from_slice(&line);
            let why = match client.output.flush(&client.stream, now) {
                Err(_) => Disconnect::Gone,
                Ok(()) if client.output.pending() > self.limits.max_pending_output => Disconnect::Slow,
                Ok(()) => continue,
            };
            self.remove(slot, why);
        }
    }

    /// One round: waits up to `timeout` for activity (less when a client's deadline comes
    /// first; not at all when work is left from the previous round), accepts clients, reads
    /// what they sent, and for each complete request line calls `handler(method, params)`,
    /// one at a time, in arrival order per client, queuing its reply; writes what the sockets
    /// take; disconnects clients past a limit. Returns when the round is done, when woken,
    /// or on timeout. `params` is an object or `Null`. Unknown methods are the handler's to
    /// refuse ([`RpcError::method_not_found`]).
    pub fn serve(&mut self, timeout: Duration, handler: &mut Handler<'_>) {
        let mut work = std::mem::take(&mut self.backlog);
        let wait = if work.is_empty() {
            match self.next_deadline() {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(timeout),
                None => timeout,
            }
        } else {
            Duration::ZERO
        };
        // The only error epoll_wait can give on a valid descriptor is EINTR (a signal, which
        // the control loop handles itself): the round is simply empty.
        let _ = self.poll.poll(&mut self.events, Some(wait));
        // Whatever the event (readable, writable, hangup, error), a client is serviced the
        // same way: write what is pending, answer, read; each step finds out what applies.
        for event in self.events.iter() {
            add_work(&mut work, event.token());
        }
        if std::mem::take(&mut self.accept_retry) {
            add_work(&mut work, LISTENER);
        }
        for token in work {
            match token {
                LISTENER => self.accept(),
                WAKER => {}
                Token(t) => self.service(t - FIRST_CLIENT, handler),
            }
        }
        self.expire(Instant::now());
    }

    fn accept(&mut self) {
        for _ in 0..ACCEPT_BUDGET {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted) => continue,
                // Out of descriptors or memory: the connection stays queued; no new event
                // would come for it, so retry next round.
                Err(_) => {
                    self.accept_retry = true;
                    return;
                }
            };
            if self.clients() >= self.limits.max_clients {
                self.stats.rejected_too_many += 1;
                reject(&stream, self.limits.max_clients);
                continue;
            }
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(slot) => slot,
                None => {
                    self.clients.push(None);
                    self.clients.len() - 1
                }
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self.poll.registry().register(&mut stream, Token(FIRST_CLIENT + slot), interest).is_err() {
                continue; // Dropping the stream closes it; the client sees EOF.
            }
            self.clients[slot] = Some(Client::new(stream, self.limits.max_line));
            self.stats.accepted += 1;
        }
        add_work(&mut self.backlog, LISTENER);
    }

    fn service(&mut self, slot: usize, handler: &mut Handler<'_>) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else { return };
        let now = Instant::now();
        let gone = |_| Disconnect::Gone;
        let mut outcome = client.output.flush(&client.stream, now).map_err(gone);
        if outcome.is_ok() {
            match process_input(client, &self.limits, &mut self.stats, handler, now) {
                Ok(true) => add_work(&mut self.backlog, Token(FIRST_CLIENT + slot)),
                Ok(false) => {}
                Err(why) => outcome = Err(why),
            }
        }
        if outcome.is_ok() {
            outcome = client.output.flush(&client.stream, now).map_err(gone);
        }
        if outcome.is_ok() && client.closing.is_some() && !client.write_shut && client.output.pending() == 0 {
            // Last reply out: EOF tells the client it was the last.
            let _ = client.stream.shutdown(Shutdown::Write);
            client.write_shut = true;
        }
        match outcome {
            Ok(()) if client.finished() => self.remove(slot, Disconnect::Gone),
            Ok(()) => {}
            Err(why) => self.remove(slot, why),
        }
    }

    /// Disconnects clients past a deadline.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.clients.len() {
            let Some(client) = &mut self.clients[slot] else { continue };
            let why = if client.closing.is_some_and(|t| now >= t) {
                Disconnect::Gone
            } else if client.output.stalled_since().is_some_and(|t| now >= t + self.limits.write_stall_timeout) {
                Disconnect::Slow
            } else if client.input.since().is_some_and(|t| now >= t + self.limits.partial_line_timeout)
                // Past the output limit its input is not being read: its line may be whole.
                && client.output.pending() <= self.limits.max_pending_output
            {
                // Say why, if the socket takes it; the connection goes either way.
                let error = RpcError::invalid_request(format!(
                    "request line incomplete for more than {} s",
                    self.limits.partial_line_timeout.as_secs_f64()
                ));
                rpc::encode_reply(client.output.buf(), &Value::Null, &Err(error));
                self.stats.errors += 1;
                let _ = client.output.flush(&client.stream, now);
                Disconnect::Idle
            } else {
                continue;
            };
            self.remove(slot, why);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let (partial, stall) = (self.limits.partial_line_timeout, self.limits.write_stall_timeout);
        self.clients.iter().flatten().filter_map(|c| c.deadline(partial, stall)).min()
    }

    fn remove(&mut self, slot: usize, why: Disconnect) {
        let Some(mut client) = self.clients.get_mut(slot).and_then(Option::take) else { return };
        match why {
            Disconnect::Gone => {}
            Disconnect::Slow => self.stats.dropped_slow += 1,
            Disconnect::Idle => self.stats.dropped_idle += 1,
        }
        // Closing the descriptor would unregister it too; explicit is clearer. The client
        // sees EOF, or ECONNRESET if it had sent bytes not read yet.
        let _ = self.poll.registry().deregister(&mut client.stream);
    }
}

impl std::ops::Drop for ControlServer {
    /// Removes the socket file, unless it is no longer the one this server bound (another
    /// instance replaced it after this one was declared stale, or an admin removed it).
    fn drop(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.inode {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("clients", &self.clients())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Adds `token` to `work` unless it is there already: a token is serviced once per round.
fn add_work(work: &mut Vec<Token>, token: Token) {
    if !work.contains(&token) {
        work.push(token);
    }
}

/// Answers the client's buffered request lines and reads more, until its socket is drained,
/// its unsent replies pass the limit, or the round's read budget is spent.
/// Ok(true): come back next round, though no event may come (the budget ran out).
///
/// Past the limit it stops answering; what it sent stays in its line buffer and the
/// kernel's. It resumes on the writable event that comes when the client reads.
fn process_input(
    client: &mut Client,
    limits: &Limits,
    stats: &mut ServerStats,
    handler: &mut Handler<'_>,
    now: Instant,
) -> Result<bool, Disconnect> {
    let Client { stream, input, output, read_closed, closing, subscribed, .. } = client;
    let mut budget = READ_BUDGET;
    loop {
        if closing.is_some() {
            // Being closed: drain and ignore input until the client closes its side.
            input.discard();
        } else {
            loop {
                if output.pending() > limits.max_pending_output {
                    // Let the socket take what it can before judging.
                    output.flush(stream, now).map_err(|_| Disconnect::Gone)?;
                    if output.pending() > limits.max_pending_output {
                        return Ok(false);
                    }
                }
                match input.next_line(now) {
                    Line::Complete(line) => *subscribed |= answer(line, handler, stats, output.buf()),
                    Line::TooLong => {
                        stats.requests += 1;
                        stats.errors += 1;
                        stats.dropped_long_line += 1;
                        let message = format!("request line longer than {} bytes", limits.max_line);
                        rpc::encode_reply(output.buf(), &Value::Null, &Err(RpcError::invalid_request(message)));
                        *closing = Some(now + LINGER);
                        break;
                    }
                    Line::NeedMore => break,
                }
            }
            if closing.is_some() {
                continue;
            }
        }
        if *read_closed {
            return Ok(false);
        }
        if budget == 0 {
            return Ok(true);
        }
        match input.fill(&*stream) {
            Ok(0) => {
                // EOF. A last line without its '\n' (`printf '{...}' | socat - UNIX:...`) is
                // still answered: the client may have shut only its writing side.
                *read_closed = true;
                input.mark_eof();
            }
            Ok(n) => budget = budget.saturating_sub(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Disconnect::Gone),
        }
    }
}

/// Answers one request line into `out`; a blank line gets no reply. Returns whether it was
/// a subscription the handler accepted.
fn answer(line: &[u8], handler: &mut Handler<'_>, stats: &mut ServerStats, out: &mut Vec<u8>) -> bool {
    if line.iter().all(u8::is_ascii_whitespace) {
        return false;
    }
    stats.requests += 1;
    let mut subscribed = false;
    let (id, outcome) = match rpc::parse_request(line) {
        Ok(request) => {
            let outcome = handler(&request.method, &request.params);
            subscribed = request.method == SUBSCRIBE && outcome.is_ok();
            (request.id, outcome)
        }
        Err((id, error)) => (id, Err(error)),
    };
    if outcome.is_err() {
        stats.errors += 1;
    }
    rpc::encode_reply(out, &id, &outcome);
    subscribed
}

/// Turns away a connection over the limit with one error line.
fn reject(mut stream: &UnixStream, max_clients: usize) {
    let mut line = Vec::new();
    let error = RpcError::refused(format!("too many control clients ({max_clients})"));
    rpc::encode_reply(&mut line, &Value::Null, &Err(error));
    // A new socket's buffer takes a short line whole; should it not, the client only misses
    // the explanation.
    let _ = stream.write(&line);
    let _ = stream.shutdown(Shutdown::Both);
}

/// Creates `dir` and its missing parents, each with mode 0755 whatever the umask (clients
/// running as another user must be able to reach the socket).
fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    loop {
        match fs::symlink_metadata(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(d);
                match d.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => d = parent,
                    _ => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for d in missing.into_iter().rev() {
        match DirBuilder::new().mode(0o755).create(d) {
            Ok(()) => fs::set_permissions(d, Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Binds the listener in a fresh 0700 directory beside `path`, applies `access` there, and
/// links it at `path`. Returns the listener and the socket's (device, inode).
fn bind_private(
    path: &Path,
    dir: &Path,
    name: &std::ffi::OsStr,
    access: &SocketAccess,
) -> anyhow::Result<(UnixListener, (u64, u64))> {
    let what = || format!("control socket {}", path.display());
    let mut private_name = std::ffi::OsString::from(".");
    private_name.push(name);
    private_name.push(format!(".{}", std::process::id()));
    let private = dir.join(private_name);
    // 0700 whatever the umask can add: nobody but us can reach into it.
    let mkdir = || DirBuilder::new().mode(0o700).create(&private);
    if let Err(e) = mkdir() {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e).with_context(|| format!("{}: creating {}", what(), private.display()));
        }
        // Left by an earlier process with our pid (containers reuse pids) that died while
        // binding: clear it, but only if it holds nothing else.
        let _ = fs::remove_file(private.join("s"));
        fs::remove_dir(&private)
            .and_then(|()| mkdir())
            .with_context(|| format!("{}: creating {} (it existed)", what(), private.display()))?;
    }
    let temp = private.join("s");
    let result = (|| -> anyhow::Result<(UnixListener, (u64, u64))> {
        let listener = UnixListener::bind(&temp).with_context(|| format!("{}: bind at {}", what(), temp.display()))?;
        if access.owner.is_some() || access.group.is_some() {
            std::os::unix::fs::chown(&temp, access.owner, access.group)
                .with_context(|| format!("{}: chown to {:?}:{:?}", what(), access.owner, access.group))?;
        }
        fs::set_permissions(&temp, Permissions::from_mode(access.mode))
            .with_context(|| format!("{}: chmod {:#o}", what(), access.mode))?;
        let meta = fs::symlink_metadata(&temp).with_context(what)?;
        fs::hard_link(&temp, path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => anyhow::anyhow!("{}: a file appeared there while binding", what()),
            _ => anyhow::Error::new(e).context(format!("{}: linking it into place", what())),
        })?;
        Ok((listener, (meta.dev(), meta.ino())))
    })();
    let _ = fs::remove_file(&temp);
    let _ = fs::remove_dir(&private);
    result
}
