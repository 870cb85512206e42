//! One JSON-RPC exchange over the switch's UNIX control socket.
//!
//! Role: connect, send one request line, read exactly one reply line, and check that the
//! reply is a well-formed answer to this request. One deadline covers the whole exchange,
//! so `--timeout` bounds how long the command can hang, however the server misbehaves.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A reply longer than this is refused rather than buffered without bound. The largest
/// legitimate replies (stats and config-dump of a few hundred guests) are far smaller.
const MAX_REPLY: usize = 64 << 20;

/// Everything that can go wrong with one call; `exit_code` maps them onto the CLI's statuses.
#[derive(Debug)]
pub enum RpcError {
    /// The socket could not be connected (missing, refused, permission, bad path).
    Connect { path: PathBuf, source: io::Error },
    /// Connecting took longer than the timeout (the switch's listen backlog is full).
    ConnectTimeout { path: PathBuf, timeout: Duration },
    /// Sending or receiving failed after the connection was made.
    Io {
        what: &'static str,
        source: io::Error,
    },
    /// No complete reply within the timeout.
    Timeout { timeout: Duration },
    /// The switch closed the connection without sending anything.
    Closed,
    /// The reply is not a JSON-RPC answer to our request.
    Protocol(String),
    /// The switch answered with an error object; its code adds nothing for a person (the
    /// message says it all) and every server error exits 1, so only the message is kept.
    Server { message: String },
}

impl RpcError {
    /// 2 when the switch could not be reached (like a usage error, nothing happened),
    /// 1 for everything after a connection was made.
    pub fn exit_code(&self) -> u8 {
        match self {
            RpcError::Connect { .. } | RpcError::ConnectTimeout { .. } => 2,
            _ => 1,
        }
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcError::Connect { path, source } => {
                let p = path.display();
                write!(f, "cannot connect to {p}: {source}")?;
                // The hint depends on why: a wrong or stale path, or a permission problem.
                match source.kind() {
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        "; the switch sets who may connect with --control-owner, --control-group and --control-mode"
                    ),
                    io::ErrorKind::InvalidInput => Ok(()),
                    _ => write!(f, "; is dpdk-macvtap running with --control {p}?"),
                }
            }
            RpcError::ConnectTimeout { path, timeout } => write!(
                f,
                "cannot connect to {}: no answer within {} s (is the switch stuck or overloaded?)",
                path.display(),
                timeout.as_secs_f64()
            ),
            RpcError::Io { what, source } => write!(f, "{what}: {source}"),
            RpcError::Timeout { timeout } => write!(
                f,
                "no reply from the switch within {} s (raise --timeout for slow operations)",
                timeout.as_secs_f64()
            ),
            RpcError::Closed => f.write_str("the switch closed the connection without replying"),
            RpcError::Protocol(m) => write!(f, "unexpected reply from the switch: {m}"),
            RpcError::Server { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for RpcError {}

/// A successful reply: its `result`, and the line it came in (for `--json`, which prints
/// the result in the server's own key order).
#[derive(Debug)]
pub struct Reply {
    pub result: Value,
    pub line: Vec<u8>,
}

/// Sends `method` with `params` (omitted when `None`) under request `id` and returns the
/// reply's `result`.
pub fn call(
    path: &Path,
    method: &str,
    params: Option<&Value>,
    id: u64,
    timeout: Duration,
) -> Result<Reply, RpcError> {
    let deadline = Instant::now() + timeout;
    let mut stream = connect(path, timeout)?;
    let line = request_line(method, params, id);
    let sent = send(&mut stream, line.as_bytes(), deadline, timeout);
    // A switch that refuses us (too many clients, line too long) writes one error line and
    // closes, which can make our write fail; the error line is still worth reading.
    let reply = match (sent, read_line(&mut stream, deadline, timeout)) {
        (_, Ok(reply)) => reply,
        (Err(e), Err(_)) => return Err(e),
        (Ok(()), Err(e)) => return Err(e),
    };
    let result = parse_reply(&reply, id)?;
    Ok(Reply {
        result,
        line: reply,
    })
}

/// One request line (with its newline).
pub fn request_line(method: &str, params: Option<&Value>, id: u64) -> String {
    let mut request = serde_json::Map::new();
    request.insert("jsonrpc".into(), "2.0".into());
    request.insert("id".into(), id.into());
    request.insert("method".into(), method.into());
    if let Some(p) = params {
        request.insert("params".into(), p.clone());
    }
    // serde_json escapes control characters, so the request is always exactly one line.
    let mut line = Value::Object(request).to_string();
    line.push('\n');
    line
}

/// `UnixStream::connect` has no timeout and blocks while the listener's backlog is full,
/// so it runs on a helper thread; on timeout the thread is left behind and dies with the
/// process (this is a one-shot command).
pub fn connect(path: &Path, timeout: Duration) -> Result<UnixStream, RpcError> {
    let (tx, rx) = mpsc::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            // The receiver may be gone after a timeout; nothing to do then.
            let _ = tx.send(UnixStream::connect(&target));
        });
    if let Err(source) = spawned {
        return Err(RpcError::Io {
            what: "cannot start the connecting thread",
            source,
        });
    }
    match rx.recv_timeout(timeout) {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(source)) => Err(RpcError::Connect {
            path: path.to_path_buf(),
            source,
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(RpcError::ConnectTimeout {
            path: path.to_path_buf(),
            timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(RpcError::Connect {
            path: path.to_path_buf(),
            source: io::Error::other("the connecting thread ended without a result"),
        }),
    }
}

/// Time left before `deadline`, or `Timeout` once it has passed (a zero socket timeout
/// would mean "block forever", so it must never be set).
fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, RpcError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(RpcError::Timeout { timeout })
    } else {
        Ok(left)
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub fn send(
    stream: &mut UnixStream,
    mut bytes: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), RpcError> {
    let io_err = |source| RpcError::Io {
        what: "cannot send the request",
        source,
    };
    while !bytes.is_empty() {
        stream
            .set_write_timeout(Some(remaining(deadline, timeout)?))
            .map_err(io_err)?;
        match stream.write(bytes) {
            Ok(0) => return Err(io_err(io::ErrorKind::WriteZero.into())),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(RpcError::Timeout { timeout }),
            Err(e) => return Err(io_err(e)),
        }
    }
    Ok(())
}

/// Reads up to and excluding the first newline. Anything after it is ignored: one request,
/// one reply. A final line without its newline (the server closed right after writing it)
/// is accepted; an empty stream is `Closed`.
fn read_line(
    stream: &mut UnixStream,
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<u8>, RpcError> {
    let io_err = |source| RpcError::Io {
        what: "cannot read the reply",
        source,
    };
    let mut line = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline, timeout)?))
            .map_err(io_err)?;
        match stream.read(&mut chunk) {
            Ok(0) if line.is_empty() => return Err(RpcError::Closed),
            Ok(0) => return Ok(line),
            Ok(n) => {
                let got = &chunk[..n];
                if let Some(end) = got.iter().position(|&b| b == b'\n') {
                    line.extend_from_slice(&got[..end]);
                    return Ok(line);
                }
                line.extend_from_slice(got);
                if line.len() > MAX_REPLY {
                    return Err(RpcError::Protocol(format!(
                        "reply longer than {MAX_REPLY} bytes"
                    )));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(RpcError::Timeout { timeout }),
            // The server reset the connection after a partial line: report what we know.
            Err(e) if !line.is_empty() => {
                return Err(RpcError::Protocol(format!(
                    "connection lost in the middle of the reply ({e})"
                )))
            }
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Checks the reply's shape and id and extracts `result`, or the error's message.
pub fn parse_reply(line: &[u8], id: u64) -> Result<Value, RpcError> {
    let shown = || {
        let text = String::from_utf8_lossy(line);
        let mut short: String = text.chars().take(200).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        short
    };
    let reply: Value = serde_json::from_slice(line)
        .map_err(|e| RpcError::Protocol(format!("not JSON ({e}): {}", shown())))?;
    let Value::Object(mut reply) = reply else {
        return Err(RpcError::Protocol(format!(
            "not a JSON object: {}",
            shown()
        )));
    };
    let reply_id = reply.get("id").cloned().unwrap_or(Value::Null);
    let error = reply.remove("error");
    // The server uses a null id for errors it cannot attach to a request (a line it could
    // not parse, too many clients): those still explain what happened.
    let id_ok = reply_id == id || (reply_id.is_null() && error.is_some());
    if !id_ok {
        return Err(RpcError::Protocol(format!(
            "reply id {reply_id} does not match request id {id}"
        )));
    }
    if let Some(error) = error {
        return Err(server_error(error));
    }
    reply
        .remove("result")
        .ok_or_else(|| RpcError::Protocol(format!("neither result nor error: {}", shown())))
}

/// The error object's message; an error that does not follow the protocol is shown whole
/// rather than lost.
fn server_error(error: Value) -> RpcError {
    let message = match error.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => format!("the switch returned an error: {error}"),
    };
    RpcError::Server { message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;
    use std::thread::JoinHandle;

    const T: Duration = Duration::from_secs(5);

    /// What the in-test server does with the one request it reads.
    enum Behaviour {
        /// Reply with this line (a newline is added).
        Reply(fn(&Value) -> String),
        /// Read the request, then close without a word.
        Close,
        /// Read the request and keep the connection open without replying.
        Silent(Duration),
    }

    /// A one-connection server on a real socket in a temporary directory; the thread returns
    /// the request it received, parsed.
    fn serve(behaviour: Behaviour) -> (tempfile::TempDir, PathBuf, JoinHandle<Value>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            reader.read_line(&mut line).expect("read request");
            assert!(line.ends_with('\n'), "request is one line: {line:?}");
            let request: Value = serde_json::from_str(&line).expect("request is JSON");
            let mut stream = stream;
            match behaviour {
                Behaviour::Reply(f) => {
                    let mut reply = f(&request);
                    reply.push('\n');
                    stream.write_all(reply.as_bytes()).expect("write reply");
                }
                Behaviour::Close => {}
                Behaviour::Silent(d) => std::thread::sleep(d),
            }
            request
        });
        (dir, path, handle)
    }

    #[test]
    fn result_is_returned_and_request_is_well_formed() {
        // Written by hand, not with json!(), whose keys come out sorted: the reply's key
        // order ("name" before "mtu") must survive into the line kept for --json.
        let (_dir, path, server) = serve(Behaviour::Reply(|req| {
            format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{{"name":"vm1","mtu":1500}}}}"#,
                req["id"]
            )
        }));
        let params = json!({"name": "vm1"});
        let reply = call(&path, "guest-show", Some(&params), 7, T).expect("result");
        assert_eq!(reply.result, json!({"name": "vm1", "mtu": 1500}));
        assert_eq!(
            crate::ordered::pretty_result(&reply.line).as_deref(),
            Some("{\n  \"name\": \"vm1\",\n  \"mtu\": 1500\n}\n")
        );
        let request = server.join().expect("server thread");
        assert_eq!(
            request,
            json!({"jsonrpc": "2.0", "id": 7, "method": "guest-show", "params": {"name": "vm1"}})
        );
    }

    #[test]
    fn params_are_omitted_when_none_and_null_result_is_a_result() {
        let (_dir, path, server) = serve(Behaviour::Reply(|req| {
            json!({"jsonrpc": "2.0", "id": req["id"], "result": null}).to_string()
        }));
        assert_eq!(
            call(&path, "version", None, 1, T).expect("result").result,
            Value::Null
        );
        let request = server.join().expect("server thread");
        assert!(request.get("params").is_none(), "{request}");
    }

    #[test]
    fn error_reply_gives_its_message() {
        let (_dir, path, server) = serve(Behaviour::Reply(|req| {
            json!({"jsonrpc": "2.0", "id": req["id"],
                   "error": {"code": -32000, "message": "guest \"vm9\" does not exist"}})
            .to_string()
        }));
        let err = call(&path, "guest-show", Some(&json!({"name": "vm9"})), 1, T)
            .expect_err("error reply");
        assert!(matches!(&err, RpcError::Server { .. }), "{err:?}");
        assert_eq!(err.to_string(), "guest \"vm9\" does not exist");
        assert_eq!(err.exit_code(), 1);
        server.join().expect("server thread");
    }

    #[test]
    fn null_id_error_is_accepted_but_null_id_result_is_not() {
        let (_dir, path, server) = serve(Behaviour::Reply(|_| {
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"too many clients"}}"#
                .into()
        }));
        let err = call(&path, "version", None, 1, T).expect_err("error reply");
        assert_eq!(err.to_string(), "too many clients");
        server.join().expect("server thread");

        let (_dir, path, server) = serve(Behaviour::Reply(|_| {
            r#"{"jsonrpc":"2.0","id":2,"result":{}}"#.into()
        }));
        let err = call(&path, "version", None, 1, T).expect_err("wrong id");
        assert_eq!(
            err.to_string(),
            "unexpected reply from the switch: reply id 2 does not match request id 1"
        );
        server.join().expect("server thread");
    }

    #[test]
    fn server_closing_without_reply_is_an_error() {
        let (_dir, path, server) = serve(Behaviour::Close);
        let err = call(&path, "reload", None, 1, T).expect_err("closed");
        assert!(matches!(err, RpcError::Closed), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the switch closed the connection without replying"
        );
        assert_eq!(err.exit_code(), 1);
        server.join().expect("server thread");
    }

    #[test]
    fn silent_server_times_out() {
        let (_dir, path, server) = serve(Behaviour::Silent(Duration::from_secs(1)));
        let started = Instant::now();
        let err = call(&path, "reload", None, 1, Duration::from_millis(300)).expect_err("timeout");
        assert!(matches!(err, RpcError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
        server.join().expect("server thread");
    }

    #[test]
    fn odd_replies_are_errors_not_panics() {
        for (reply, want) in [
            ("not json", "not JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"jsonrpc":"2.0","id":1}"#, "neither result nor error"),
        ] {
            let err = parse_reply(reply.as_bytes(), 1).expect_err(reply);
            assert!(err.to_string().contains(want), "{reply}: {err}");
        }
        let err = parse_reply(br#"{"id":1,"error":"boom"}"#, 1).expect_err("error");
        assert_eq!(err.to_string(), "the switch returned an error: \"boom\"");
        let err = parse_reply(br#"{"id":1,"error":{"code":"x"}}"#, 1).expect_err("error");
        assert_eq!(
            err.to_string(),
            "the switch returned an error: {\"code\":\"x\"}"
        );
        assert_eq!(
            parse_reply(br#"{"id":1,"result":[1],"extra":true}"#, 1).expect("result"),
            json!([1])
        );
    }

    #[test]
    fn missing_socket_is_a_connect_error_naming_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nobody.sock");
        let err = call(&path, "version", None, 1, T).expect_err("no socket");
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot connect to {}: ", path.display())),
            "{msg}"
        );
        assert!(msg.contains("No such file or directory"), "{msg}");
        assert!(
            msg.contains(&format!("--control {}", path.display())),
            "{msg}"
        );
    }

    #[test]
    fn stale_socket_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).expect("bind"));
        let err = call(&path, "version", None, 1, T).expect_err("refused");
        assert!(
            matches!(&err, RpcError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
    }
}
