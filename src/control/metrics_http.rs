//! The metrics endpoint's transport: just enough HTTP/1.x for `GET /metrics` (what Prometheus
//! and curl send), on TCP or a UNIX socket, served by the control thread between its other
//! work. Not a web server: one request per connection, the answer, then the connection
//! closes.
//!
//! A hostile or broken client costs nothing else: requests are capped at `MAX_REQUEST` bytes
//! (431/400 and close), at most `MAX_CLIENTS` connections are open (a newcomer pushes out
//! the oldest one that has not sent its request yet, or is turned away with 503 if all are
//! being answered), and a client that neither finishes its request nor reads the answer
//! within `CLIENT_DEADLINE` is dropped. All I/O is non-blocking.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token};

pub const MAX_CLIENTS: usize = 16;
/// A scrape request is a few hundred bytes; anything near this is not one.
pub const MAX_REQUEST: usize = 8192;
pub const CLIENT_DEADLINE: Duration = Duration::from_secs(10);

const LISTENER: Token = Token(usize::MAX);

/// Where the endpoint listens: `HOST:PORT` or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetricsAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl std::str::FromStr for MetricsAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some("") => Err("unix: needs a path, e.g. unix:/run/dpdk-macvtap/metrics.sock".to_owned()),
            Some(p) => Ok(MetricsAddr::Unix(PathBuf::from(p))),
            None => s
                .parse()
                .map(MetricsAddr::Tcp)
                .map_err(|_| format!("{s:?} is neither HOST:PORT (e.g. 127.0.0.1:9479) nor unix:PATH")),
        }
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Conn::Tcp(s) => s,
            Conn::Unix(s) => s,
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
        }
    }
}

struct Client {
    conn: Conn,
    since: Instant,
    request: Vec<u8>,
    /// The answer, once the request is complete, and how much of it went out.
    answer: Option<(Vec<u8>, usize)>,
}

/// What the endpoint has seen, for the control socket and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsServerStats {
    pub scrapes: u64,
    pub refused: u64,
    pub dropped: u64,
}

pub struct MetricsServer {
    poll: Poll,
    events: Events,
    listener: Listener,
    clients: Vec<Option<Client>>,
    stats: MetricsServerStats,
    /// Accepting failed for lack of resources (e.g. EMFILE): the connection stays queued and
    /// no new event would come for it, so the next round tries again.
    accept_retry: bool,
}

impl MetricsServer {
    /// Listens on `addr`. A UNIX path gets mode 0660; a stale socket file is replaced, a
    /// live one (another process answers) is an error.
    pub fn bind(addr: &MetricsAddr) -> Result<MetricsServer> {
        let poll = Poll::new().context("metrics: creating the poll")?;
        let mut listener = match addr {
            MetricsAddr::Tcp(a) => Listener::Tcp(TcpListener::bind(*a).with_context(|| format!("metrics: binding {a}"))?),
            MetricsAddr::Unix(p) => {
                super::stale_socket::clear(p, "metrics: socket")?;
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir).with_context(|| format!("metrics: creating {}", dir.display()))?;
                }
                let l = UnixListener::bind(p).with_context(|| format!("metrics: binding {}", p.display()))?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o660)).with_context(|| format!("metrics: chmod {}", p.display()))?;
                Listener::Unix(l, p.clone())
            }
        };
        match &mut listener {
            Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
            Listener::Unix(l, _) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
        }
        Ok(MetricsServer { poll, events: Events::with_capacity(64), listener, clients: Vec::new(), stats: MetricsServerStats::default(), accept_retry: false })
    }

    /// Where it listens, as a URL-ish string for the start-up line (`http://127.0.0.1:9479/metrics`).
    pub fn url(&self) -> String {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr().map_or_else(|_| "tcp:?".to_owned(), |a| format!("http://{a}/metrics")),
            Listener::Unix(_, p) => format!("unix:{} (GET /metrics)", p.display()),
        }
    }

    pub fn stats(&self) -> MetricsServerStats {
        self.stats
    }

    /// Handles whatever is ready now (never waits): accepts, reads requests, answers a
    /// complete `GET /metrics` with `render()`, writes what the sockets take.
    pub fn serve(&mut self, render: &mut dyn FnMut() -> String) {
        if self.poll.poll(&mut self.events, Some(Duration::ZERO)).is_err() {
            return;
        }
        let ready: Vec<Token> = self.events.iter().map(|e| e.token()).collect();
        // Clients first: those that hung up free their places for the ones waiting to connect.
        for &t in ready.iter().filter(|&&t| t != LISTENER) {
            self.progress(t.0, render);
        }
        if ready.contains(&LISTENER) || std::mem::take(&mut self.accept_retry) {
            self.accept();
        }
        // Deadlines, and clients whose answer is pending a writable event that already came.
        for i in 0..self.clients.len() {
            if self.clients[i].as_ref().is_some_and(|c| c.since.elapsed() > CLIENT_DEADLINE) {
                self.close(i);
                self.stats.dropped += 1;
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let conn = match &self.listener {
                Listener::Tcp(l) => l.accept().map(|(s, _)| Conn::Tcp(s)),
                Listener::Unix(l, _) => l.accept().map(|(s, _)| Conn::Unix(s)),
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::ConnectionAborted) => continue,
                Err(_) => {
                    self.accept_retry = true;
                    return;
                }
            };
            let open = self.clients.iter().filter(|c| c.is_some()).count();
            if open >= MAX_CLIENTS {
                // Full: the oldest client still waiting to send its request makes way (idle
                // or dead connections must not keep a scrape out); if every one is being
                // answered, the newcomer is turned away.
                let oldest = (0..self.clients.len())
                    .filter(|&i| self.clients[i].as_ref().is_some_and(|c| c.answer.is_none()))
                    .min_by_key(|&i| self.clients[i].as_ref().map(|c| c.since));
                match oldest {
                    Some(i) => {
                        self.close(i);
                        self.stats.dropped += 1;
                    }
                    None => {
                        // Best effort; the connection closes when `conn` drops.
                        let _ = conn.write(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                        self.stats.refused += 1;
                        continue;
                    }
                }
            }
            let slot = self.clients.iter().position(Option::is_none).unwrap_or(self.clients.len());
            if self.poll.registry().register(conn.source(), Token(slot), Interest::READABLE | Interest::WRITABLE).is_err() {
                continue;
            }
            let c = Client { conn, since: Instant::now(), request: Vec::new(), answer: None };
            if slot == self.clients.len() {
                self.clients.push(Some(c));
            } else {
                self.clients[slot] = Some(c);
            }
        }
    }

    fn close(&mut self, i: usize) {
        if let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) {
            let _ = self.poll.registry().deregister(c.conn.source());
        }
    }

    fn progress(&mut self, i: usize, render: &mut dyn FnMut() -> String) {
        let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) else { return };
        let keep = self.step(&mut c, render);
        if keep {
            self.clients[i] = Some(c);
        } else {
            let _ = self.poll.registry().deregister(c.conn.source());
        }
    }

    /// Reads, answers, writes; false once the client is done with (or gone).
    fn step(&mut self, c: &mut Client, render: &mut dyn FnMut() -> String) -> bool {
        let mut eof = false;
        if c.answer.is_none() {
            let mut buf = [0u8; 2048];
            loop {
                match c.conn.read(&mut buf) {
                    // The client is done sending (`printf ... | nc -N` half-closes right after
                    // its request): answer what arrived, if it is a whole request.
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.request.extend_from_slice(&buf[..n]);
                        if c.request.len() > MAX_REQUEST {
                            c.answer = Some((response(431, "Request Header Fields Too Large", "text/plain", "request too large\n"), 0));
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return false,
                }
            }
            if c.answer.is_none() {
                match find(&c.request, b"\r\n\r\n").or_else(|| find(&c.request, b"\n\n")) {
                    Some(end) => {
                        let head = String::from_utf8_lossy(&c.request[..end]).into_owned();
                        let (a, scraped) = answer(&head, render);
                        self.stats.scrapes += u64::from(scraped);
                        c.answer = Some((a, 0));
                    }
                    None if eof => return false, // left before finishing its request
                    None => return true,         // more of the request to come
                }
            }
        }
        let Some((body, sent)) = c.answer.as_mut() else { return false };
        while *sent < body.len() {
            match c.conn.write(&body[*sent..]) {
                Ok(0) => return false,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = &self.listener {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The answer to a request head, and whether it was a scrape.
fn answer(head: &str, render: &mut dyn FnMut() -> String) -> (Vec<u8>, bool) {
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split_whitespace();
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) || parts.next().is_some() {
        return (response(400, "Bad Request", "text/plain", "not an HTTP/1.x request line\n"), false);
    }
    let path = target.unwrap_or("").split('?').next().unwrap_or("");
    match (method, path) {
        (Some("GET"), "/metrics") => (response(200, "OK", CONTENT_TYPE, &render()), true),
        (Some("GET"), "/") => (response(200, "OK", "text/plain", "dpdk-macvtap: metrics at /metrics\n"), false),
        (Some("GET" | "HEAD"), _) => (response(404, "Not Found", "text/plain", "not found; metrics are at /metrics\n"), false),
        _ => (response(405, "Method Not Allowed", "text/plain", "only GET\n"), false),
    }
}

/// The OpenMetrics text format, which Prometheus asks for first and parses natively.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn response(code: u16, reason: &str, ctype: &str, body: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_why_not() {
        assert_eq!("127.0.0.1:9479".parse::<MetricsAddr>(), Ok(MetricsAddr::Tcp("127.0.0.1:9479".parse().expect("addr"))));
        assert_eq!("unix:/run/x.sock".parse::<MetricsAddr>(), Ok(MetricsAddr::Unix("/run/x.sock".into())));
        assert!("unix:".parse::<MetricsAddr>().is_err());
        assert!("localhost".parse::<MetricsAddr>().is_err_and(|e| e.contains("neither HOST:PORT")));
    }

    #[test]
    fn answers_scrapes_and_refuses_the_rest() {
        let mut render = || "m_total 1\n# EOF\n".to_owned();
        let (ok, scraped) = answer("GET /metrics HTTP/1.1\r\nHost: x", &mut render);
        let ok = String::from_utf8(ok).expect("utf8");
        assert!(scraped && ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nm_total 1\n# EOF\n"), "{ok}");
        assert!(ok.contains("Content-Length: 16\r\n"), "{ok}");
        for (req, code) in [("GET /nope HTTP/1.0", "404"), ("POST /metrics HTTP/1.1", "405"), ("garbage", "400"), ("GET /metrics", "400")] {
            let (a, scraped) = answer(req, &mut render);
            assert!(!scraped);
            assert!(String::from_utf8_lossy(&a).starts_with(&format!("HTTP/1.1 {code} ")), "{req}");
        }
    }

    /// A real socket: a scrape, a request too large, a client that sends nothing.
    #[test]
    fn serves_over_a_unix_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.sock");
        let mut srv = MetricsServer::bind(&MetricsAddr::Unix(path.clone())).expect("bind");
        let mut render = || "x_total 7\n# EOF\n".to_owned();
        let ask = |srv: &mut MetricsServer, render: &mut dyn FnMut() -> String, req: &[u8]| -> String {
            let mut s = std::os::unix::net::UnixStream::connect(&path).expect("connect");
            s.write_all(req).expect("write");
            s.set_nonblocking(true).expect("nonblocking");
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                srv.serve(render);
                let mut buf = [0u8; 4096];
                match s.read(&mut buf) {
                    Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                assert!(Instant::now() < deadline, "no full answer: {:?}", String::from_utf8_lossy(&out));
                std::thread::yield_now();
            }
        };
        let a = ask(&mut srv, &mut render, b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(a.ends_with("x_total 7\n# EOF\n"), "{a}");
        let big = vec![b'a'; MAX_REQUEST + 10];
        let a = ask(&mut srv, &mut render, &big);
        assert!(a.starts_with("HTTP/1.1 431 "), "{a}");
        assert_eq!(srv.stats().scrapes, 1);
        drop(srv);
        assert!(!path.exists(), "the socket file goes with the server");
    }
}
