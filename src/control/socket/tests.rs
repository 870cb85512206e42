//! The server over real UNIX sockets in a temporary directory. The server runs on a thread
//! of its own (`Running`), as on the switch's control thread; clients are plain blocking std
//! sockets with read timeouts, and every outcome is awaited with a deadline.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// The switch's stand-in.
fn handler(method: &str, params: &Value) -> Result<Value, RpcError> {
    match method {
        "echo" => Ok(params.clone()),
        "big" => {
            let bytes = params.get("bytes").and_then(Value::as_u64).ok_or_else(|| RpcError::invalid_params("bytes"))?;
            Ok(Value::String("x".repeat(bytes as usize)))
        }
        "refuse" => Err(RpcError::refused("guest \"vm9\" does not exist")),
        SUBSCRIBE => Ok(json!({ "subscribed": true })),
        _ => Err(RpcError::method_not_found(method)),
    }
}

/// A server serving on its own thread, publishing its counters after every round.
struct Running {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    seen: Arc<Mutex<(ServerStats, usize)>>,
    thread: Option<JoinHandle<ControlServer>>,
}

impl Running {
    fn start(mut server: ControlServer) -> Running {
        let path = server.path().to_path_buf();
        let stop = Arc::new(AtomicBool::new(false));
        let waker = server.waker();
        let seen = Arc::new(Mutex::new((server.stats(), server.clients())));
        let thread = std::thread::spawn({
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            move || {
                while !stop.load(Ordering::Relaxed) {
                    server.serve(Duration::from_secs(1), &mut handler);
                    *seen.lock().expect("lock") = (server.stats(), server.clients());
                }
                server
            }
        });
        Running { path, stop, waker, seen, thread: Some(thread) }
    }

    fn stats(&self) -> ServerStats {
        self.seen.lock().expect("lock").0
    }

    fn clients(&self) -> usize {
        self.seen.lock().expect("lock").1
    }

    /// Waits until `cond(stats, clients)`, or panics at the deadline.
    fn wait_for(&self, what: &str, cond: impl Fn(&ServerStats, usize) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (stats, clients) = *self.seen.lock().expect("lock");
            if cond(&stats, clients) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {stats:?}, {clients} clients");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn connect(&self) -> TestClient {
        TestClient::connect(&self.path)
    }

    fn stop(mut self) -> ControlServer {
        self.halt().expect("server thread")
    }

    fn halt(&mut self) -> Option<ControlServer> {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake().expect("wake");
        self.thread.take().map(|t| t.join().expect("server thread panicked"))
    }
}

impl std::ops::Drop for Running {
    fn drop(&mut self) {
        self.halt();
    }
}

struct TestClient {
    stream: StdStream,
    reader: BufReader<StdStream>,
}

impl TestClient {
    fn connect(path: &Path) -> TestClient {
        let stream = StdStream::connect(path).expect("connect");
        // The read timeout is each reply's deadline.
        stream.set_read_timeout(Some(DEADLINE)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        TestClient { stream, reader }
    }

    fn send(&mut self, data: &str) {
        self.stream.write_all(data.as_bytes()).expect("send");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("reply");
        assert!(n > 0, "EOF instead of a reply");
        assert!(line.ends_with('\n'), "reply without its newline: {line}");
        line
    }

    fn reply(&mut self) -> Value {
        let line = self.line();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?} is not JSON: {e}"))
    }

    fn call(&mut self, request: &str) -> Value {
        self.send(request);
        self.send("\n");
        self.reply()
    }

    /// Reads everything until the connection ends (EOF or an error); returns how many bytes.
    fn read_to_close(&mut self) -> usize {
        let mut got = 0;
        let mut buf = vec![0; 1 << 16];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
        }
    }

    /// The server closed the connection (EOF; ECONNRESET if it left bytes we sent unread).
    fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "more after the last reply: {}", String::from_utf8_lossy(&rest)),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }
}

fn error(reply: &Value) -> (i64, &str) {
    let e = &reply["error"];
    (e["code"].as_i64().expect("code"), e["message"].as_str().expect("message"))
}

fn socket_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("run").join("control.sock")
}

fn serve_default(dir: &tempfile::TempDir) -> Running {
    Running::start(ControlServer::bind(&socket_path(dir), &SocketAccess::default()).expect("bind"))
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn round_trip_echoes_the_id_verbatim() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    c.send(r#"{"jsonrpc":"2.0","id":1,"method":"echo","params":{"name":"vm1"}}"#);
    c.send("\n");
    assert_eq!(c.line(), "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"name\":\"vm1\"}}\n");
    for id in [json!("abc"), json!({"nested": [1, 2.5, null]}), json!(-7), json!(null)] {
        let reply = c.call(&json!({"jsonrpc": "2.0", "id": id, "method": "echo"}).to_string());
        assert_eq!(reply, json!({"jsonrpc": "2.0", "id": id, "result": null}), "params absent -> Null");
    }
    let reply = c.call(r#"{"jsonrpc":"2.0","method":"echo","params":null}"#);
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": null, "result": null}), "no id -> null");
    let reply = c.call(r#"{"jsonrpc":"2.0","id":2,"method":"refuse"}"#);
    assert_eq!(reply["id"], 2);
    assert_eq!(error(&reply), (RpcError::REFUSED, "guest \"vm9\" does not exist"));
    let reply = c.call(r#"{"jsonrpc":"2.0","id":3,"method":"frobnicate"}"#);
    assert_eq!(error(&reply), (RpcError::METHOD_NOT_FOUND, "unknown method \"frobnicate\""));
    let reply = c.call(r#"{"jsonrpc":"2.0","id":4,"method":"big","params":{}}"#);
    assert_eq!(error(&reply).0, RpcError::INVALID_PARAMS);
    // Counters are published after the round that sent the reply: wait for them.
    server.wait_for("the counters", |s, _| (s.accepted, s.requests, s.errors) == (1, 9, 3));
}

#[test]
fn requests_in_one_write_are_answered_in_order_and_blank_lines_ignored() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    c.send("{\"id\":1,\"method\":\"echo\"}\n\n  \r\n{\"id\":2,\"method\":\"echo\"}\r\n");
    assert_eq!(c.reply()["id"], 1);
    assert_eq!(c.reply()["id"], 2);
    let many: String = (0..500).map(|i| format!("{{\"id\":{i},\"method\":\"echo\",\"params\":{{\"i\":{i}}}}}\n")).collect();
    c.send(&many);
    for i in 0..500 {
        assert_eq!(c.reply(), json!({"jsonrpc": "2.0", "id": i, "result": {"i": i}}));
    }
    server.wait_for("request count", |s, _| s.requests == 502);
}

#[test]
fn a_request_split_across_writes_is_reassembled() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    let request = r#"{"jsonrpc":"2.0","id":"split","method":"echo","params":{"x":"yz"}}"#;
    for piece in request.as_bytes().chunks(7) {
        c.stream.write_all(piece).expect("send");
        // Not deciding anything: gives the server a chance to see each piece on its own.
        std::thread::sleep(Duration::from_millis(2));
    }
    c.send("\r");
    std::thread::sleep(Duration::from_millis(2));
    c.send("\n");
    assert_eq!(c.reply(), json!({"jsonrpc": "2.0", "id": "split", "result": {"x": "yz"}}));
}

#[test]
fn garbage_gets_a_parse_error_and_the_connection_stays() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    let reply = c.call("this is not json");
    assert_eq!(reply["id"], Value::Null);
    assert_eq!(error(&reply).0, RpcError::PARSE_ERROR);
    let reply = c.call("{\"id\":5,\"method\":\"echo\"");
    assert_eq!((reply["id"].clone(), error(&reply).0), (Value::Null, RpcError::PARSE_ERROR));
    c.stream.write_all(b"\xff\xfe\n").expect("send");
    assert_eq!(error(&c.reply()).0, RpcError::PARSE_ERROR);
    assert_eq!(c.call(r#"{"id":6,"method":"echo"}"#)["result"], Value::Null);
    server.wait_for("the error count", |s, _| s.errors == 3 && s.requests == 4);
}

#[test]
fn what_is_not_a_request_object_is_an_invalid_request() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    for (request, id) in [
        (r#"[{"id":1,"method":"echo"}]"#, Value::Null),
        ("42", Value::Null),
        (r#"{"id":1}"#, json!(1)),
        (r#"{"id":2,"method":["echo"]}"#, json!(2)),
        (r#"{"id":3,"method":"echo","params":[1,2]}"#, json!(3)),
        (r#"{"id":4,"method":"echo","params":"vm1"}"#, json!(4)),
    ] {
        let reply = c.call(request);
        assert_eq!(reply["id"], id, "{request}");
        assert_eq!(error(&reply).0, RpcError::INVALID_REQUEST, "{request}");
    }
    assert_eq!(c.call(r#"{"id":5,"method":"echo","params":{}}"#)["result"], json!({}));
}

#[test]
fn a_line_longer_than_the_limit_gets_an_error_then_eof() {
    let dir = tempdir();
    let server = serve_default(&dir);
    // Exactly at the limit is fine (padding is JSON whitespace).
    let mut c = server.connect();
    let request = r#"{"id":1,"method":"echo"}"#;
    c.send(&format!("{request}{}\n", " ".repeat(MAX_LINE - request.len())));
    assert_eq!(c.reply()["id"], 1);

    let mut c = server.connect();
    c.send(&"a".repeat(70 * 1024));
    let reply = c.reply();
    assert_eq!(reply["id"], Value::Null);
    assert_eq!(error(&reply), (RpcError::INVALID_REQUEST, "request line longer than 65536 bytes"));
    c.expect_closed();
    server.wait_for("the long-line client to be dropped", |s, n| s.dropped_long_line == 1 && n == 1);
    // The first client is unaffected.
    let mut first = server.connect();
    assert_eq!(first.call(r#"{"id":2,"method":"echo"}"#)["id"], 2);
}

#[test]
fn the_client_over_the_limit_gets_one_error_line_and_is_closed() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut clients: Vec<TestClient> = (0..MAX_CLIENTS).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.call(&format!(r#"{{"id":{i},"method":"echo"}}"#))["id"], i);
    }
    let mut extra = server.connect();
    let reply = extra.reply();
    assert_eq!(error(&reply), (RpcError::REFUSED, "too many control clients (64)"));
    extra.expect_closed();
    server.wait_for("the rejection", |s, n| s.rejected_too_many == 1 && n == MAX_CLIENTS);

    // A slot freed is a slot for the next one.
    drop(clients.pop());
    server.wait_for("a client to leave", |_, n| n == MAX_CLIENTS - 1);
    let mut next = server.connect();
    assert_eq!(next.call(r#"{"id":"next","method":"echo"}"#)["id"], "next");
    server.wait_for("the accepted count", |s, _| s.accepted == MAX_CLIENTS as u64 + 1);
}

fn serve_with(dir: &tempfile::TempDir, limits: Limits) -> Running {
    Running::start(ControlServer::bind_with_limits(&socket_path(dir), &SocketAccess::default(), limits).expect("bind"))
}

fn big_requests(n: usize, bytes: usize) -> String {
    (0..n).map(|i| format!("{{\"id\":{i},\"method\":\"big\",\"params\":{{\"bytes\":{bytes}}}}}\n")).collect()
}

#[test]
fn a_client_that_does_not_read_is_dropped_and_others_are_still_served() {
    let dir = tempdir();
    let server = serve_with(&dir, Limits { write_stall_timeout: Duration::from_millis(300), ..Limits::default() });
    let mut reader = server.connect();
    let mut sluggard = server.connect();
    // 200 replies of 64 KiB: far more than socket buffers and the 1 MiB allowance.
    sluggard.send(&big_requests(200, 65536));
    server.wait_for("the slow client to be dropped", |s, n| s.dropped_slow == 1 && n == 1);
    // Answering stopped at the limit: the rest were never run.
    let answered = server.stats().requests;
    assert!(answered < 200 && answered * 65536 < 4 * MAX_PENDING_OUTPUT as u64, "{answered} answered");
    assert_eq!(reader.call(r#"{"id":"alive","method":"echo"}"#)["id"], "alive");
    // What the kernel had taken is still readable, then the connection ends.
    let got = sluggard.read_to_close();
    assert!(got < 200 * 65536, "the server kept writing to a dropped client ({got} bytes)");
}

#[test]
fn a_client_reading_slowly_gets_all_its_replies_in_order() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    // 64 replies of 100 KB, 6 MB in all: far past the output limit, all in one write.
    c.send(&big_requests(64, 100_000));
    server.wait_for("the first answers", |s, _| s.requests > 0);
    // Not deciding anything by time: the server must stop at the limit however long we wait,
    // so looking later can only make a wrong answer more likely to show.
    std::thread::sleep(Duration::from_millis(200));
    let answered = server.stats().requests;
    assert!(answered < 64, "answered all {answered} without the client reading");
    for i in 0..64 {
        let reply = c.reply();
        assert_eq!((reply["id"].as_u64(), reply["result"].as_str().map(str::len)), (Some(i), Some(100_000)));
    }
    server.wait_for("all answered", |s, _| s.requests == 64);
    assert_eq!(server.stats().dropped_slow, 0);
}

#[test]
fn one_large_reply_to_a_reading_client_is_not_slow() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    let reply = c.call(&format!(r#"{{"id":1,"method":"big","params":{{"bytes":{}}}}}"#, 3 * MAX_PENDING_OUTPUT));
    assert_eq!(reply["result"].as_str().map(str::len), Some(3 * MAX_PENDING_OUTPUT));
    assert_eq!(c.call(r#"{"id":2,"method":"echo"}"#)["id"], 2);
    assert_eq!(server.stats().dropped_slow, 0);
}

#[test]
fn replies_to_a_client_that_left_are_discarded() {
    let dir = tempdir();
    let server = serve_default(&dir);
    {
        let mut gone = server.connect();
        gone.send("{\"id\":1,\"method\":\"big\",\"params\":{\"bytes\":4000000}}\n{\"id\":2,\"method\":\"echo\"}\n");
    }
    {
        let mut half = server.connect();
        half.send("{\"id\":1,\"method\":\"echo\"}\n{\"id\":2,\"method\":\"ech");
    }
    // The first left before its replies were written; the second left mid-line (its last
    // line still counts as a request, answered into the void). How many of the first's
    // requests ran depends on when the server noticed it had gone.
    server.wait_for("both to be gone", |s, n| s.accepted == 2 && n == 0 && s.requests >= 3);
    let mut c = server.connect();
    assert_eq!(c.call(r#"{"id":3,"method":"echo"}"#)["id"], 3);
    let stats = server.stats();
    assert_eq!((stats.dropped_slow, stats.dropped_idle, stats.dropped_long_line), (0, 0, 0));
}

#[test]
fn a_last_line_without_newline_is_answered_after_a_half_close() {
    let dir = tempdir();
    let server = serve_default(&dir);
    let mut c = server.connect();
    c.send(r#"{"id":9,"method":"echo","params":{"a":1}}"#);
    c.stream.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(c.reply(), json!({"jsonrpc": "2.0", "id": 9, "result": {"a": 1}}));
    c.expect_closed();
    server.wait_for("the client to be done", |_, n| n == 0);
}

#[test]
fn a_partial_line_kept_too_long_disconnects_but_an_idle_client_may_stay() {
    let dir = tempdir();
    let limits = Limits { partial_line_timeout: Duration::from_millis(200), ..Limits::default() };
    let server = serve_with(&dir, limits);
    let mut idle = server.connect();
    assert_eq!(idle.call(r#"{"id":1,"method":"echo"}"#)["id"], 1);
    let mut stuck = server.connect();
    stuck.send(r#"{"id":2,"method":"ec"#);
    let reply = stuck.reply();
    assert_eq!(error(&reply).0, RpcError::INVALID_REQUEST, "{reply}");
    stuck.expect_closed();
    server.wait_for("the stuck client to be dropped", |s, n| s.dropped_idle == 1 && n == 1);
    // Well past the timeout, the idle client is still there and served.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.clients(), 1);
    assert_eq!(idle.call(r#"{"id":3,"method":"echo"}"#)["id"], 3);
}

#[test]
fn a_client_that_never_takes_its_reply_is_dropped_after_the_stall_timeout() {
    let dir = tempdir();
    let limits = Limits { write_stall_timeout: Duration::from_millis(200), ..Limits::default() };
    let server = serve_with(&dir, limits);
    let mut c = server.connect();
    // One large reply, never read: not over the pending limit by itself, but stuck.
    c.send("{\"id\":1,\"method\":\"big\",\"params\":{\"bytes\":900000}}\n");
    server.wait_for("the stalled client to be dropped", |s, n| s.dropped_slow == 1 && n == 0);
}

#[test]
fn serve_returns_when_woken() {
    let dir = tempdir();
    let mut server = ControlServer::bind(&socket_path(&dir), &SocketAccess::default()).expect("bind");
    let waker = server.waker();
    let started = Instant::now();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        waker.wake().expect("wake");
    });
    server.serve(Duration::from_secs(60), &mut handler);
    assert!(started.elapsed() < Duration::from_secs(30), "serve waited for its timeout");
    t.join().expect("waker thread");
}

#[test]
fn serve_can_be_interleaved_with_a_client_on_one_thread() {
    let dir = tempdir();
    let mut server = ControlServer::bind(&socket_path(&dir), &SocketAccess::default()).expect("bind");
    let mut c = StdStream::connect(server.path()).expect("connect");
    c.set_nonblocking(true).expect("nonblocking");
    c.write_all(b"{\"id\":1,\"method\":\"echo\"}\n").expect("send");
    let mut got = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !got.ends_with(b"\n") {
        assert!(Instant::now() < deadline, "no reply");
        server.serve(Duration::from_millis(10), &mut handler);
        let mut buf = [0; 256];
        match c.read(&mut buf) {
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}\n");
    assert_eq!(server.clients(), 1);
}

#[test]
fn a_stale_socket_is_replaced() {
    let dir = tempdir();
    let path = socket_path(&dir);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    drop(StdListener::bind(&path).expect("bind")); // The file stays; nobody listens.
    let server = Running::start(ControlServer::bind(&path, &SocketAccess::default()).expect("bind over a stale socket"));
    assert_eq!(server.connect().call(r#"{"id":1,"method":"echo"}"#)["id"], 1);
}

#[test]
fn a_live_socket_is_refused() {
    let dir = tempdir();
    let path = socket_path(&dir);
    let first = ControlServer::bind(&path, &SocketAccess::default()).expect("bind");
    let e = ControlServer::bind(&path, &SocketAccess::default()).expect_err("second bind");
    assert_eq!(format!("{e:#}"), format!("control socket {}: another process serves it; not taking it over", path.display()));
    // Also when the other process is not one of us.
    drop(first);
    let _other = StdListener::bind(&path).expect("bind");
    let e = ControlServer::bind(&path, &SocketAccess::default()).expect_err("bind over a live listener");
    assert!(format!("{e:#}").contains("another process serves"), "{e:#}");
    assert!(path.exists(), "the live socket was removed");
}

#[test]
fn a_file_that_is_not_a_socket_is_refused_and_left_alone() {
    let dir = tempdir();
    let path = socket_path(&dir);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, "precious").expect("write");
    let e = ControlServer::bind(&path, &SocketAccess::default()).expect_err("bind over a file");
    let message = format!("{e:#}");
    assert!(message.contains(&path.display().to_string()) && message.contains("not a socket"), "{message}");
    assert_eq!(fs::read_to_string(&path).expect("read"), "precious");
    // Nothing left behind beside it either.
    let entries: Vec<_> = fs::read_dir(path.parent().expect("parent")).expect("ls").collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn mode_and_ownership_are_applied_and_the_directory_created() {
    let dir = tempdir();
    let path = dir.path().join("a").join("b").join("control.sock");
    let server = ControlServer::bind(&path, &SocketAccess::default()).expect("bind");
    let meta = fs::symlink_metadata(&path).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    for d in [dir.path().join("a"), dir.path().join("a").join("b")] {
        assert_eq!(fs::metadata(&d).expect("stat").permissions().mode() & 0o777, 0o755, "{}", d.display());
    }
    // Only the socket is left in its directory (the private bind directory is gone).
    assert_eq!(fs::read_dir(path.parent().expect("parent")).expect("ls").count(), 1);
    drop(server);

    // Our own uid and gid: allowed whether or not the tests run as root.
    let me = fs::metadata(dir.path()).expect("stat");
    let access = SocketAccess { owner: Some(me.uid()), group: Some(me.gid()), mode: 0o600 };
    let _server = ControlServer::bind(&path, &access).expect("bind");
    let meta = fs::symlink_metadata(&path).expect("stat");
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid(), meta.gid()), (0o600, me.uid(), me.gid()));

    let e = ControlServer::bind(&dir.path().join("x.sock"), &SocketAccess { mode: 0o4660, ..SocketAccess::default() })
        .expect_err("setuid mode");
    assert!(format!("{e:#}").contains("beyond 0o777"), "{e:#}");
}

#[test]
fn the_socket_is_removed_on_drop_unless_it_was_replaced() {
    let dir = tempdir();
    let path = socket_path(&dir);
    let server = Running::start(ControlServer::bind(&path, &SocketAccess::default()).expect("bind"));
    let mut c = server.connect();
    assert_eq!(c.call(r#"{"id":1,"method":"echo"}"#)["id"], 1);
    drop(server.stop());
    assert!(!path.exists(), "socket file left behind");

    let server = ControlServer::bind(&path, &SocketAccess::default()).expect("bind");
    fs::remove_file(&path).expect("rm");
    let _other = StdListener::bind(&path).expect("another socket at the same path");
    drop(server);
    assert!(path.exists(), "removed a socket that was not its own");
}

/// Serves on this thread until `cond(server)` holds, or panics at the deadline.
fn serve_until(server: &mut ControlServer, what: &str, cond: impl Fn(&ControlServer) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond(server) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {server:?}");
        server.serve(Duration::from_millis(5), &mut handler);
    }
}

#[test]
fn subscribers_get_notifications_after_their_reply_and_others_do_not() {
    let dir = tempdir();
    let mut server = ControlServer::bind(&socket_path(&dir), &SocketAccess::default()).expect("bind");
    let mut sub = TestClient::connect(server.path());
    let mut other = TestClient::connect(server.path());
    sub.send("{\"id\":1,\"method\":\"events.subscribe\"}\n");
    other.send("{\"id\":2,\"method\":\"events.subscribe\",\"params\":{\"x\":1}}\n{\"id\":3,\"method\":\"refuse\"}\n");
    serve_until(&mut server, "the subscription", |s| s.subscribers() == 2 && s.stats().requests == 3);
    server.notify("event", &json!({ "n": 1 }));
    server.notify("event", &json!({ "n": 2 }));
    assert_eq!(sub.reply(), json!({ "jsonrpc": "2.0", "id": 1, "result": { "subscribed": true } }));
    assert_eq!(sub.line(), "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"n\":1}}\n");
    assert_eq!(sub.reply()["params"]["n"], 2);
    // The second client subscribed too (params are the handler's business); its refused
    // request comes before the events, which come in order.
    assert_eq!(other.reply()["id"], 2);
    assert_eq!(other.reply()["id"], 3);
    assert_eq!(other.reply()["params"]["n"], 1);
    // A client that did not subscribe gets only its replies.
    let mut plain = TestClient::connect(server.path());
    plain.send("{\"id\":4,\"method\":\"echo\",\"params\":{\"a\":1}}\n");
    serve_until(&mut server, "the echo", |s| s.stats().requests == 4);
    server.notify("event", &json!({ "n": 3 }));
    assert_eq!(plain.reply()["result"], json!({ "a": 1 }));
    plain.send("{\"id\":5,\"method\":\"echo\"}\n");
    serve_until(&mut server, "the second echo", |s| s.stats().requests == 5);
    assert_eq!(plain.reply()["id"], 5, "no notification in between");
    assert_eq!(sub.reply()["params"]["n"], 3);
}

#[test]
fn a_subscriber_that_does_not_read_is_dropped_at_the_output_limit() {
    let dir = tempdir();
    let limits = Limits { max_pending_output: 64 * 1024, ..Limits::default() };
    let mut server = ControlServer::bind_with_limits(&socket_path(&dir), &SocketAccess::default(), limits).expect("bind");
    let mut sluggard = TestClient::connect(server.path());
    let mut reader = TestClient::connect(server.path());
    sluggard.send("{\"id\":1,\"method\":\"events.subscribe\"}\n");
    reader.send("{\"id\":1,\"method\":\"events.subscribe\"}\n");
    serve_until(&mut server, "the subscriptions", |s| s.subscribers() == 2);
    assert_eq!(reader.reply()["id"], 1);
    let big = "x".repeat(16 * 1024);
    let mut sent = 0;
    // Socket buffers take some; past them, 64 KiB unread drops the subscriber. The reader
    // keeps up and stays.
    while server.subscribers() == 2 {
        assert!(sent < 10_000, "the slow subscriber was never dropped: {server:?}");
        server.notify("event", &json!({ "n": sent, "pad": big }));
        assert_eq!(reader.reply()["params"]["n"], sent);
        sent += 1;
    }
    assert_eq!(server.stats().dropped_slow, 1);
    assert_eq!(server.clients(), 1);
    server.notify("event", &json!({ "n": "last" }));
    assert_eq!(reader.reply()["params"]["n"], "last");
    // What its socket had taken is readable, then EOF (or a reset).
    let got = sluggard.read_to_close();
    assert!(got < sent * big.len() + 4096, "the server kept writing to a dropped subscriber ({got} bytes)");
}
