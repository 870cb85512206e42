//! The JSON-RPC 2.0 envelope: one request line in, one reply line out. Pure (no I/O), so the
//! framing rules are tested without sockets.

use std::fmt;

use serde_json::Value;

/// An error reply: `{"code": .., "message": ..}`. Handlers return it for requests they refuse;
/// the server makes its own for requests it cannot parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    /// The line is not JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// JSON, but not a request: not an object, no string `method`, `params` not an object.
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A parameter is missing or has the wrong type.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The reply could not be produced (a bug, not the client's fault).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The switch refused: validation error, unknown guest, a limit; the message says why.
    pub const REFUSED: i64 = -32000;

    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError { code, message: message.into() }
    }

    pub fn parse_error(detail: impl fmt::Display) -> RpcError {
        RpcError::new(Self::PARSE_ERROR, format!("parse error: {detail}"))
    }

    pub fn invalid_request(message: impl Into<String>) -> RpcError {
        RpcError::new(Self::INVALID_REQUEST, message)
    }

    pub fn method_not_found(method: &str) -> RpcError {
        // Quoted as JSON quotes it, so the client sees the name it sent.
        RpcError::new(Self::METHOD_NOT_FOUND, format!("unknown method {}", Value::from(method)))
    }

    pub fn invalid_params(message: impl Into<String>) -> RpcError {
        RpcError::new(Self::INVALID_PARAMS, message)
    }

    pub fn refused(message: impl Into<String>) -> RpcError {
        RpcError::new(Self::REFUSED, message)
    }
}

/// A handler's `anyhow` error is a refusal; its whole context chain is the message, the way
/// the switch prints errors on the command line.
impl From<anyhow::Error> for RpcError {
    fn from(e: anyhow::Error) -> RpcError {
        RpcError::refused(format!("{e:#}"))
    }
}

/// A well-formed request.
#[derive(Debug, PartialEq)]
pub(super) struct Request {
    pub id: Value,
    pub method: String,
    /// An object, or `Null` when the request had none.
    pub params: Value,
}

/// Parses one request line (without its line ending). On failure, also returns the id to
/// echo: the request's own when it was an object with one, else null.
pub(super) fn parse_request(line: &[u8]) -> Result<Request, (Value, RpcError)> {
    let value: Value = serde_json::from_slice(line).map_err(|e| (Value::Null, RpcError::parse_error(e)))?;
    let Value::Object(mut request) = value else {
        return Err((Value::Null, RpcError::invalid_request("request is not a JSON object")));
    };
    let id = request.remove("id").unwrap_or(Value::Null);
    let invalid = |id: Value, message: &str| Err((id, RpcError::invalid_request(message)));
    // Absent is accepted so a person can type requests by hand; anything else must be 2.0.
    match request.get("jsonrpc") {
        None => {}
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return invalid(id, r#""jsonrpc" must be "2.0""#),
    }
    let method = match request.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => return invalid(id, r#""method" is not a string"#),
        None => return invalid(id, r#"request has no "method""#),
    };
    let params = match request.remove("params") {
        None | Some(Value::Null) => Value::Null,
        Some(params @ Value::Object(_)) => params,
        Some(_) => return invalid(id, r#""params" must be an object or null"#),
    };
    Ok(Request { id, method, params })
}

/// Appends the reply line for `id` (with its '\n') to `out`. Written by hand rather than as a
/// `Value` so the members come in the conventional order (jsonrpc, id, result/error) whatever
/// serde_json's map ordering.
pub(super) fn encode_reply(out: &mut Vec<u8>, id: &Value, outcome: &Result<Value, RpcError>) {
    let start = out.len();
    if write_reply(out, id, outcome).is_err() {
        // Unreachable in practice (a Vec never fails and a Value always serializes), but a
        // half-written line would desynchronize the client, so replace it with a whole one.
        out.truncate(start);
        out.extend_from_slice(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"reply could not be encoded"}}"#);
        out.push(b'\n');
    }
}

/// Appends a notification line (no id: nothing answers it), members in the conventional
/// order: `{"jsonrpc":"2.0","method":...,"params":...}`.
pub(super) fn encode_notification(out: &mut Vec<u8>, method: &str, params: &Value) {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","method":"#);
    // A str and a Value always serialize into a Vec.
    let _ = serde_json::to_writer(&mut *out, method);
    out.extend_from_slice(br#","params":"#);
    let _ = serde_json::to_writer(&mut *out, params);
    out.extend_from_slice(b"}\n");
}

fn write_reply(out: &mut Vec<u8>, id: &Value, outcome: &Result<Value, RpcError>) -> serde_json::Result<()> {
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut *out, id)?;
    match outcome {
        Ok(result) => {
            out.extend_from_slice(br#","result":"#);
            serde_json::to_writer(&mut *out, result)?;
            out.push(b'}');
        }
        Err(e) => {
            out.extend_from_slice(br#","error":{"code":"#);
            serde_json::to_writer(&mut *out, &e.code)?;
            out.extend_from_slice(br#","message":"#);
            serde_json::to_writer(&mut *out, &e.message)?;
            out.extend_from_slice(b"}}");
        }
    }
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(line: &str) -> Result<Request, (Value, RpcError)> {
        parse_request(line.as_bytes())
    }

    fn code(line: &str) -> (Value, i64) {
        match parse(line) {
            Ok(r) => panic!("{line} parsed as {r:?}"),
            Err((id, e)) => (id, e.code),
        }
    }

    #[test]
    fn parses_requests() {
        let r = parse(r#"{"jsonrpc":"2.0","id":{"a":[1]},"method":"guest-show","params":{"name":"vm1"}}"#)
            .expect("valid");
        assert_eq!(r, Request { id: json!({"a":[1]}), method: "guest-show".into(), params: json!({"name":"vm1"}) });
        let r = parse(r#"{"method":"version"}"#).expect("valid");
        assert_eq!((r.id, r.params), (Value::Null, Value::Null));
        let r = parse(r#"{"id":"x","method":"version","params":null}"#).expect("valid");
        assert_eq!((r.id, r.params), (json!("x"), Value::Null));
    }

    #[test]
    fn rejects_what_is_not_a_request() {
        assert_eq!(code("nonsense"), (Value::Null, RpcError::PARSE_ERROR));
        assert_eq!(code(r#"{"id":1,"method":"x""#), (Value::Null, RpcError::PARSE_ERROR));
        assert_eq!(code(r#"{"id":1} {"id":2}"#), (Value::Null, RpcError::PARSE_ERROR));
        assert_eq!(code(r#"[{"id":1,"method":"x"}]"#), (Value::Null, RpcError::INVALID_REQUEST));
        assert_eq!(code("3"), (Value::Null, RpcError::INVALID_REQUEST));
        assert_eq!(code(r#"{"id":1}"#), (json!(1), RpcError::INVALID_REQUEST));
        assert_eq!(code(r#"{"id":2,"method":7}"#), (json!(2), RpcError::INVALID_REQUEST));
        assert_eq!(code(r#"{"id":3,"method":"x","params":[1]}"#), (json!(3), RpcError::INVALID_REQUEST));
        assert_eq!(code(r#"{"id":4,"method":"x","params":"a"}"#), (json!(4), RpcError::INVALID_REQUEST));
        assert_eq!(code(r#"{"jsonrpc":"1.0","id":5,"method":"x"}"#), (json!(5), RpcError::INVALID_REQUEST));
        assert_eq!(parse_request(b"{\"method\":\"\xff\"}").map_err(|(_, e)| e.code), Err(RpcError::PARSE_ERROR));
    }

    #[test]
    fn encodes_replies_in_conventional_order() {
        let mut out = Vec::new();
        encode_reply(&mut out, &json!(7), &Ok(json!({"z":1,"a":"\n"})));
        encode_reply(&mut out, &Value::Null, &Err(RpcError::method_not_found("gu\"est")));
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text,
            concat!(
                r#"{"jsonrpc":"2.0","id":7,"result":{"a":"\n","z":1}}"#,
                "\n",
                r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"unknown method \"gu\\\"est\""}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn encodes_notifications() {
        let mut out = Vec::new();
        encode_notification(&mut out, "event", &json!({"event": "uplink-link", "state": "down"}));
        assert_eq!(String::from_utf8(out).expect("utf-8"), "{\"jsonrpc\":\"2.0\",\"method\":\"event\",\"params\":{\"event\":\"uplink-link\",\"state\":\"down\"}}\n");
    }

    #[test]
    fn anyhow_errors_are_refusals_with_their_context() {
        let e = anyhow::anyhow!("mac already used").context("guest \"vm3\"");
        assert_eq!(RpcError::from(e), RpcError::refused("guest \"vm3\": mac already used"));
    }
}
