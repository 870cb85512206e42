//! Guests written back as a guests file: what `config-dump` prints, and the text `guest-set`
//! validates (the running guest as a table, with the requested keys replaced).
//!
//! Every key is written explicitly, defaults included, so the dump says exactly what runs
//! and does not change meaning if a later version changes a default. Values are written by
//! hand rather than through `toml`'s serializer: key order stays the file's (the serializer
//! sorts keys), strings are always one-line basic strings (a socket path may hold quotes,
//! backslashes or even newlines), and datetimes print as datetimes (toml 0.8.23 prints them
//! as its internal marker table).

use std::fmt::{self, Write as _};

use super::GuestConfig;

/// Says what the text is; `#` lines are ignored when the dump is read back.
const HEADER: &str = "# dpdk-macvtap guests file: the running guests (config-dump).\n";

/// The running `guests` as a valid guests file: one `[[guest]]` per guest, every key given.
///
/// With no guests the result is only comments, which the switch does not load as a guests
/// file (a file must hold at least one guest).
pub fn dump(guests: &[GuestConfig]) -> String {
    let mut out = String::from(HEADER);
    if guests.is_empty() {
        out.push_str("# No guest is running; a guests file needs at least one [[guest]].\n");
    }
    for g in guests {
        out.push('\n');
        out.push_str(&table_text(&settings(g)));
    }
    out
}

/// `g` as the keys and values of its `[[guest]]` table, in the file's key order. Keys whose
/// value is "unset" (no owner, no group, no lcore, no vlan) are left out, which is how a file says it.
pub(super) fn settings(g: &GuestConfig) -> Vec<(String, toml::Value)> {
    use toml::Value::{Array, Integer, String as Str};
    let mac = match g.macs.as_slice() {
        [one] => Str(one.to_string()),
        several => Array(several.iter().map(|m| Str(m.to_string())).collect()),
    };
    let mut out = vec![
        ("name", Str(g.name.clone())),
        ("mac", mac),
        // Always UTF-8: the path was read from a TOML string.
        ("socket", Str(g.socket.to_string_lossy().into_owned())),
        ("queues", Integer(g.queues.into())),
        ("mode", Str(g.mode.name().to_owned())),
    ];
    // Only mode source has the key (the file refuses it elsewhere); always a list there.
    if g.mode == crate::policy::Mode::Source {
        out.push(("sources", Array(g.sources.iter().map(|m| Str(m.to_string())).collect())));
    }
    out.extend([("mtu", Integer(g.mtu.into())), ("vhost", Str(g.vhost.name().to_owned()))]);
    // Numeric ids: the names they came from may not resolve the same way (or at all) where
    // the dump is read back.
    if let Some(uid) = g.owner {
        out.push(("owner", Integer(uid.into())));
    }
    if let Some(gid) = g.group {
        out.push(("group", Integer(gid.into())));
    }
    // Quoted octal, the only form the file accepts (a bare 660 would be decimal).
    out.push(("socket_mode", Str(format!("{:04o}", g.socket_mode))));
    if let Some(lcore) = g.lcore {
        out.push(("lcore", Integer(lcore.into())));
    }
    if g.vlan != 0 {
        out.push(("vlan", Integer(g.vlan.into())));
    }
    out.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// One `[[guest]]` table holding `entries`, one `key = value` line each.
pub(super) fn table_text(entries: &[(String, toml::Value)]) -> String {
    let mut out = String::from("[[guest]]\n");
    for (key, value) in entries {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{} = {}", KeyText(key), TomlText(value));
    }
    out
}

/// A value in TOML syntax, on one line.
pub(super) struct TomlText<'a>(pub &'a toml::Value);

impl fmt::Display for TomlText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            toml::Value::String(s) => basic_string(s, f),
            toml::Value::Integer(i) => write!(f, "{i}"),
            // toml's own text for floats: "1.0" rather than "1", and nan/inf spelt as TOML does.
            toml::Value::Float(_) => fmt::Display::fmt(self.0, f),
            toml::Value::Boolean(b) => write!(f, "{b}"),
            toml::Value::Datetime(d) => fmt::Display::fmt(d, f),
            toml::Value::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    fmt::Display::fmt(&TomlText(item), f)?;
                }
                f.write_str("]")
            }
            toml::Value::Table(table) if table.is_empty() => f.write_str("{}"),
            toml::Value::Table(table) => {
                f.write_str("{ ")?;
                for (i, (key, value)) in table.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{} = {}", KeyText(key), TomlText(value))?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// A key, bare when TOML allows it, else quoted (an unknown key given to `guest-set` may be
/// any string, and must still reach the validator as that key).
struct KeyText<'a>(&'a str);

impl fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bare = !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if bare {
            f.write_str(self.0)
        } else {
            basic_string(self.0, f)
        }
    }
}

/// `s` as a TOML basic string: `"` and `\` escaped, and every control character, so the
/// string stays on one line.
fn basic_string(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c if c.is_control() => write!(f, "\\u{:04X}", u32::from(c))?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}
