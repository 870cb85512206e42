//! The guests file as TOML shapes it, before any meaning is given to it.
//!
//! Every guest table is read as a map of spanned keys to spanned values instead of a typed
//! struct, so that unknown keys and wrongly typed values are reported by our validator, with
//! the guest's name and the key's line, rather than by serde without either. Array elements
//! keep their own spans so a bad MAC in a multi-line list points at its own line.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file. Only `[[guest]]` is known at the top level.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub guest: Vec<Spanned<RawTable>>,
}

/// Key order in a `BTreeMap` is alphabetical; `entries` restores file order.
pub(super) type RawTable = BTreeMap<Spanned<String>, Spanned<RawValue>>;

/// A key and its value, with their spans.
pub(super) struct Entry<'a> {
    pub key: &'a str,
    pub key_span: Range<usize>,
    pub value: &'a RawValue,
    pub value_span: Range<usize>,
}

/// The table's entries in the order they appear in the file.
pub(super) fn entries(table: &RawTable) -> Vec<Entry<'_>> {
    let mut out: Vec<Entry<'_>> = table
        .iter()
        .map(|(k, v)| Entry {
            key: k.get_ref(),
            key_span: k.span(),
            value: v.get_ref(),
            value_span: v.span(),
        })
        .collect();
    out.sort_by_key(|e| e.key_span.start);
    out
}

/// Any TOML value, plus the span of each element when it is an array.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RawValue {
    pub value: toml::Value,
    pub items: Vec<Range<usize>>,
}

impl RawValue {
    fn plain(value: toml::Value) -> Self {
        RawValue {
            value,
            items: Vec::new(),
        }
    }
}

impl fmt::Display for RawValue {
    /// TOML syntax, so the message shows the value the way it was (or could have been)
    /// written, and the way `dump` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&super::dump::TomlText(&self.value), f)
    }
}

impl<'de> Deserialize<'de> for RawValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawValueVisitor)
    }
}

struct RawValueVisitor;

impl<'de> Visitor<'de> for RawValueVisitor {
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<RawValue, E> {
        Ok(RawValue::plain(toml::Value::Boolean(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::plain(toml::Value::Integer(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        let v = i64::try_from(v).map_err(|_| E::custom("integer out of range"))?;
        Ok(RawValue::plain(toml::Value::Integer(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::plain(toml::Value::Float(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::plain(toml::Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::plain(toml::Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut values = Vec::new();
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<toml::Value>>()? {
            items.push(item.span());
            values.push(item.into_inner());
        }
        Ok(RawValue {
            value: toml::Value::Array(values),
            items,
        })
    }

    /// Inline tables and datetimes (which toml hands over as a one-key map) alike.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawValue, A::Error> {
        toml::Value::deserialize(MapAccessDeserializer::new(map)).map(RawValue::plain)
    }
}

/// 1-based line number of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_spans_of_keys_values_and_array_items() {
        let text = "[[guest]]\nname = \"vm1\"\nmac = [\n  \"a\",\n  \"b\",\n]\nwhen = 1979-05-27\n";
        let file: RawFile = toml::from_str(text).expect("valid TOML");
        assert_eq!(file.guest.len(), 1);
        assert_eq!(line_of(text, file.guest[0].span().start), 1);
        let entries = entries(file.guest[0].get_ref());
        let keys: Vec<&str> = entries.iter().map(|e| e.key).collect();
        assert_eq!(keys, ["name", "mac", "when"]);
        let mac = &entries[1];
        assert_eq!(line_of(text, mac.key_span.start), 3);
        let item_lines: Vec<usize> = mac
            .value
            .items
            .iter()
            .map(|s| line_of(text, s.start))
            .collect();
        assert_eq!(item_lines, [4, 5]);
        assert_eq!(mac.value.to_string(), "[\"a\", \"b\"]");
        assert_eq!(entries[2].value.to_string(), "1979-05-27");
    }

    #[test]
    fn line_of_counts_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
