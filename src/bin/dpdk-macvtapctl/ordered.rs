//! `--json` output that keeps the switch's key order.
//!
//! Role: `serde_json::Value` sorts object keys (the crate is built without `preserve_order`,
//! and turning that feature on would change every map in the switch too), so `--json` would
//! print `active_queues` before `name`. This minimal JSON tree keeps objects as lists of
//! pairs, so the result is printed exactly as sent, only re-indented.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose objects remember key order (and, like the text, any duplicate key).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// The `result` member of a reply line, pretty-printed in the server's key order; `None` if
/// the line has no `result` (the caller has already validated it, so that is not expected).
pub fn pretty_result(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Reply {
        result: Option<Json>,
    }
    // `Option` so that `"result": null` is `Some(Json::Null)` here, not a missing field.
    let reply: Reply = serde_json::from_slice(line).ok()?;
    let result = reply.result.unwrap_or(Json::Null);
    let mut text = serde_json::to_string_pretty(&result).ok()?;
    text.push('\n');
    Some(text)
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Number(n) => n.serialize(s),
            Json::String(v) => s.serialize_str(v),
            Json::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Object(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
        Json::deserialize(d)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        // JSON text cannot hold NaN or infinities, so this only guards other deserializers.
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut pairs = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Json>()? {
            pairs.push((k, v));
        }
        Ok(Json::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_values() {
        let line = br#"{"jsonrpc":"2.0","id":1,"result":{"name":"vm1","mtu":1500,"macs":["a"],"lcore":null,"busy":12.5,"neg":-3,"big":18446744073709551615,"nested":{"z":1,"a":true}}}"#;
        assert_eq!(
            pretty_result(line).as_deref(),
            Some(
                "{\n  \"name\": \"vm1\",\n  \"mtu\": 1500,\n  \"macs\": [\n    \"a\"\n  ],\n  \"lcore\": null,\n  \"busy\": 12.5,\n  \"neg\": -3,\n  \"big\": 18446744073709551615,\n  \"nested\": {\n    \"z\": 1,\n    \"a\": true\n  }\n}\n"
            )
        );
    }

    #[test]
    fn null_and_missing_results() {
        assert_eq!(
            pretty_result(br#"{"id":1,"result":null}"#).as_deref(),
            Some("null\n")
        );
        assert_eq!(
            pretty_result(br#"{"result":"x\n\u00e9"}"#).as_deref(),
            Some("\"x\\n\u{e9}\"\n")
        );
        assert_eq!(pretty_result(b"not json"), None);
    }
}
