//! Turning a parsed command into the method name and `params` of one request.
//!
//! Role: everything the client decides about what to send — the `[[guest]]` TOML built from
//! `guest-add` flags, and the typed values of `guest-set KEY=VALUE`. Validation of the values
//! themselves is left to the switch, which owns the rules and names the bad key in its reply.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::args::{Command, GuestAdd};

/// One request to send: `params` is `None` when the method takes none (the key is omitted).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub params: Option<Value>,
}

impl Request {
    fn new(method: &str, params: Option<Value>) -> Self {
        Request {
            method: method.to_owned(),
            params,
        }
    }
}

/// Why a request could not be built. `Usage` is a command-line mistake (exit 2, like clap's);
/// `Local` is a failure on this side, e.g. an unreadable `--file` (exit 1).
#[derive(Debug, PartialEq)]
pub enum BuildError {
    Usage {
        command: &'static str,
        message: String,
    },
    Local(String),
}

/// The request for `command`.
pub fn build(command: &Command) -> Result<Request, BuildError> {
    let name_param = |name: &str| Some(serde_json::json!({ "name": name }));
    Ok(match command {
        Command::Version => Request::new("version", None),
        Command::GuestList => Request::new("guest-list", None),
        Command::GuestShow { name } => Request::new("guest-show", name_param(name)),
        Command::GuestAdd(add) => {
            let text = guest_add_text(add, read_source)?;
            Request::new("guest-add", Some(serde_json::json!({ "toml": text })))
        }
        Command::GuestDel { name } => Request::new("guest-del", name_param(name)),
        Command::GuestSet { name, assignments } => {
            let set = set_object(assignments).map_err(|message| BuildError::Usage {
                command: "guest-set",
                message,
            })?;
            Request::new(
                "guest-set",
                Some(serde_json::json!({ "name": name, "set": set })),
            )
        }
        Command::Stats { name } => Request::new("stats", name.as_deref().and_then(name_param)),
        Command::LcoreShow => Request::new("lcore-show", None),
        Command::UplinkShow => Request::new("uplink-show", None),
        // What `events` sends first; main hands it to `events::run`, which keeps the connection.
        Command::Events => Request::new("events.subscribe", None),
        Command::Rebalance => Request::new("rebalance", None),
        Command::Reload => Request::new("reload", None),
        Command::ConfigDump => Request::new("config-dump", None),
        Command::Announce { name } => Request::new("announce", name.as_deref().and_then(name_param)),
        Command::HairpinCheck => Request::new("hairpin-check", None),
        Command::Call { method, params } => Request::new(method, params.clone()),
        // What `top` sends, again and again; main hands it to `top::run`, not to one call.
        Command::Top(_) => Request::new("stats", None),
    })
}

// ---------------------------------------------------------------------------------------
// guest-add

/// The TOML text for `guest-add`: `--toml` verbatim, `--file` verbatim (so the line numbers in
/// the switch's messages are the file's own), or one table built from the flags.
/// `read` is injected so tests need no files.
fn guest_add_text(
    add: &GuestAdd,
    read: impl Fn(&Path) -> std::io::Result<String>,
) -> Result<String, BuildError> {
    if let Some(text) = &add.toml {
        return Ok(text.clone());
    }
    if let Some(path) = &add.file {
        return read(path)
            .map_err(|e| BuildError::Local(format!("cannot read {}: {e}", path.display())));
    }
    guest_toml(add).map_err(BuildError::Local)
}

/// Reads `--file`; `-` is standard input.
fn read_source(path: &Path) -> std::io::Result<String> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
    }
}

/// `mac` is a string for one address and a list for several, as people write it by hand.
#[derive(Serialize)]
#[serde(untagged)]
enum Macs<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// One `[[guest]]` table. A struct (not a `toml::Table`) so the keys come out in the guests
/// file's usual order, name first, rather than alphabetically.
#[derive(Serialize)]
struct GuestTable<'a> {
    name: &'a str,
    mac: Macs<'a>,
    socket: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    queues: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    sources: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vhost: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    /// A quoted string, as the guests file requires ("0660"), never an integer.
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lcore: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<u16>,
}

#[derive(Serialize)]
struct GuestFile<'a> {
    guest: [GuestTable<'a>; 1],
}

/// Serialises the flags with the `toml` crate, which does the quoting and escaping.
/// `owner`/`group` stay strings even when numeric: the guests file accepts "107" as a uid.
fn guest_toml(add: &GuestAdd) -> Result<String, String> {
    // clap's `required_unless_present_any` guarantees these when neither --file nor --toml
    // was given; the checks keep this function total.
    let name = add.name.as_deref().ok_or("guest-add needs --name")?;
    let socket = add.socket.as_deref().ok_or("guest-add needs --socket")?;
    let mac = match add.mac.as_slice() {
        [] => return Err("guest-add needs --mac".into()),
        [one] => Macs::One(one),
        many => Macs::Many(many),
    };
    let file = GuestFile {
        guest: [GuestTable {
            name,
            mac,
            socket,
            queues: add.queues,
            mode: add.mode.as_deref(),
            sources: &add.sources,
            mtu: add.mtu,
            vhost: add.vhost.map(|v| v.name()),
            owner: add.owner.as_deref(),
            group: add.group.as_deref(),
            socket_mode: add.socket_mode.as_deref(),
            lcore: add.lcore,
            vlan: add.vlan,
        }],
    };
    toml::to_string(&file).map_err(|e| format!("cannot build the guest table: {e}"))
}

// ---------------------------------------------------------------------------------------
// guest-set

/// One `KEY=VALUE` of `guest-set`, its value already typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub key: String,
    pub value: Value,
}

/// clap value parser for `KEY=VALUE`. The value is read as TOML (so `9000` is a number and
/// `["a","b"]` a list), falling back to a plain string for bare words such as `private`;
/// `mac=A,B` (and `sources=A,B`) becomes a list and `lcore=none` and `vlan=none` (or `null`) become null, TOML having no null.
pub fn parse_assignment(arg: &str) -> Result<Assignment, String> {
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {arg:?}"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("missing key before '=' in {arg:?}"));
    }
    let value = match key {
        "lcore" | "vlan" if matches!(raw.trim(), "none" | "null") => Value::Null,
        "mac" | "sources" => mac_value(raw),
        _ => toml_value(raw).unwrap_or_else(|| Value::String(raw.to_owned())),
    };
    Ok(Assignment {
        key: key.to_owned(),
        value,
    })
}

/// `raw` as a single TOML value, or `None` if it is not exactly one valid value. Parsing
/// `v = RAW` as a whole document would also accept `9000\nmode = "x"`; the key count check
/// keeps one argument one value.
fn toml_value(raw: &str) -> Option<Value> {
    let table = toml::from_str::<toml::Table>(&format!("v = {raw}")).ok()?;
    if table.len() != 1 {
        return None;
    }
    table.get("v").map(toml_to_json)
}

/// A MAC list as TOML (`["a","b"]` or `"a"`), else split on commas; one address stays a
/// string because the protocol takes either.
fn mac_value(raw: &str) -> Value {
    if let Some(v @ (Value::String(_) | Value::Array(_))) = toml_value(raw) {
        return v;
    }
    let mut items: Vec<Value> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Value::String(s.to_owned()))
        .collect();
    match items.len() {
        1 => items.remove(0),
        // Zero items (`mac=`) goes as an empty string so the switch reports it.
        0 => Value::String(raw.to_owned()),
        _ => Value::Array(items),
    }
}

/// TOML to JSON by hand: serde would turn a datetime into toml's internal marker table, and
/// JSON cannot hold NaN or infinities; both become the text TOML would print.
fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

/// The `set` object; a key given twice is a usage error rather than last-one-wins, since
/// either choice would silently drop something the user typed.
fn set_object(assignments: &[Assignment]) -> Result<Map<String, Value>, String> {
    let mut seen = HashSet::new();
    let mut set = Map::new();
    for a in assignments {
        if !seen.insert(a.key.as_str()) {
            return Err(format!("key {:?} given more than once", a.key));
        }
        set.insert(a.key.clone(), a.value.clone());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::VhostRole;
    use serde_json::json;

    fn value(arg: &str) -> Value {
        parse_assignment(arg).expect("valid assignment").value
    }

    #[test]
    fn assignment_values_are_typed_as_toml() {
        assert_eq!(value("mtu=9000"), json!(9000));
        assert_eq!(value("mode=private"), json!("private"), "bare word: string");
        assert_eq!(
            value("mode=\"private\""),
            json!("private"),
            "quoted TOML string"
        );
        assert_eq!(value("flag=true"), json!(true));
        assert_eq!(value("x=1.5"), json!(1.5));
        assert_eq!(value("x=[1, 2]"), json!([1, 2]));
        assert_eq!(value("x={a = 1}"), json!({"a": 1}));
        assert_eq!(
            value("x=0660"),
            json!("0660"),
            "leading zero is not TOML: string"
        );
        assert_eq!(
            value("x=1979-05-27"),
            json!("1979-05-27"),
            "datetime as its text"
        );
        assert_eq!(value("x=nan"), json!("NaN"), "JSON has no NaN");
        assert_eq!(value("x="), json!(""));
        assert_eq!(value("x=a=b"), json!("a=b"), "split at the first '='");
        assert_eq!(
            value("x=1\ny = 2"),
            json!("1\ny = 2"),
            "one argument is one value"
        );
        assert_eq!(value(" mtu =9000").to_string(), "9000");
        assert_eq!(
            parse_assignment(" mtu =9000").expect("valid").key,
            "mtu",
            "key trimmed"
        );
    }

    #[test]
    fn assignment_special_keys() {
        assert_eq!(value("lcore=none"), Value::Null);
        assert_eq!(value("lcore=null"), Value::Null);
        assert_eq!(value("lcore=3"), json!(3));
        assert_eq!(value("vlan=none"), Value::Null);
        assert_eq!(value("vlan=10"), json!(10));
        assert_eq!(value("mode=none"), json!("none"), "null only for lcore and vlan");
        assert_eq!(value("mac=52:54:00:00:00:01"), json!("52:54:00:00:00:01"));
        assert_eq!(
            value("mac=52:54:00:00:00:01, 52:54:00:00:00:02"),
            json!(["52:54:00:00:00:01", "52:54:00:00:00:02"])
        );
        assert_eq!(
            value("mac=[\"52:54:00:00:00:01\"]"),
            json!(["52:54:00:00:00:01"]),
            "TOML list kept"
        );
        assert_eq!(value("mac="), json!(""));
    }

    #[test]
    fn assignment_errors() {
        assert!(parse_assignment("mtu").is_err());
        assert!(parse_assignment("=9000").is_err());
        let a = |s| parse_assignment(s).expect("valid");
        assert_eq!(
            set_object(&[a("mtu=1"), a("mode=bridge")]).map(Value::Object),
            Ok(json!({"mtu": 1, "mode": "bridge"}))
        );
        assert_eq!(
            set_object(&[a("mtu=1"), a("mtu=2")]),
            Err("key \"mtu\" given more than once".into())
        );
    }

    fn flags() -> GuestAdd {
        GuestAdd {
            name: Some("vm3".into()),
            mac: vec!["52:54:00:00:00:03".into()],
            socket: Some("/run/dpdk-macvtap/vm3.sock".into()),
            ..GuestAdd::default()
        }
    }

    fn parsed(text: &str) -> toml::Table {
        let doc: toml::Table = toml::from_str(text).expect("valid TOML");
        let guests = doc["guest"].as_array().expect("[[guest]] array");
        assert_eq!(guests.len(), 1, "exactly one guest in:\n{text}");
        assert_eq!(doc.len(), 1, "nothing but [[guest]] in:\n{text}");
        guests[0].as_table().expect("table").clone()
    }

    #[test]
    fn minimal_flags_make_a_minimal_table() {
        let text = guest_toml(&flags()).expect("toml");
        assert_eq!(
            text,
            "[[guest]]\nname = \"vm3\"\nmac = \"52:54:00:00:00:03\"\nsocket = \"/run/dpdk-macvtap/vm3.sock\"\n"
        );
        let g = parsed(&text);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn sources_make_a_list() {
        let add = GuestAdd { mode: Some("source".into()), sources: vec!["02:00:00:00:aa:01".into()], ..flags() };
        let g = parsed(&guest_toml(&add).expect("toml"));
        assert_eq!(g["mode"].as_str(), Some("source"));
        assert_eq!(g["sources"], toml::Value::Array(vec![toml::Value::String("02:00:00:00:aa:01".into())]));
        assert_eq!(parse_assignment("sources=02:00:00:00:aa:01,02:00:00:00:aa:02").map(|a| a.value), Ok(json!(["02:00:00:00:aa:01", "02:00:00:00:aa:02"])));
        assert_eq!(parse_assignment("sources=[]").map(|a| a.value), Ok(json!([])));
    }

    #[test]
    fn every_flag_round_trips_with_escaping() {
        let add = GuestAdd {
            name: Some("we\"ird\\name\n".into()),
            mac: vec!["52:54:00:00:00:03".into(), "52:54:00:00:00:13".into()],
            socket: Some("/run/x y/'vm3'.sock".into()),
            queues: Some(4),
            mode: Some("private".into()),
            mtu: Some(9000),
            vhost: Some(VhostRole::Client),
            owner: Some("107".into()),
            group: Some("kvm".into()),
            socket_mode: Some("0660".into()),
            lcore: Some(2),
            ..GuestAdd::default()
        };
        let text = guest_toml(&add).expect("toml");
        let g = parsed(&text);
        let want: toml::Table = toml::from_str(
            r#"
            name = "we\"ird\\name\n"
            mac = ["52:54:00:00:00:03", "52:54:00:00:00:13"]
            socket = "/run/x y/'vm3'.sock"
            queues = 4
            mode = "private"
            mtu = 9000
            vhost = "client"
            owner = "107"
            group = "kvm"
            socket_mode = "0660"
            lcore = 2
            "#,
        )
        .expect("valid");
        assert_eq!(g, want);
        assert!(
            text.starts_with("[[guest]]\nname = "),
            "name first:\n{text}"
        );
    }

    #[test]
    fn file_and_toml_are_sent_verbatim() {
        let from_toml = GuestAdd {
            toml: Some("[[guest]]\nname = 'vm4'\n".into()),
            ..GuestAdd::default()
        };
        let never = |_: &Path| -> std::io::Result<String> { panic!("no file to read") };
        assert_eq!(
            guest_add_text(&from_toml, never),
            Ok("[[guest]]\nname = 'vm4'\n".into())
        );
        let from_file = GuestAdd {
            file: Some("g.toml".into()),
            ..GuestAdd::default()
        };
        let text = guest_add_text(&from_file, |p| {
            assert_eq!(p, Path::new("g.toml"));
            Ok("# mine\n[[guest]]\n".into())
        });
        assert_eq!(text, Ok("# mine\n[[guest]]\n".into()));
        let missing = guest_add_text(&from_file, |_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        });
        assert!(
            matches!(&missing, Err(BuildError::Local(m)) if m.starts_with("cannot read g.toml: ")),
            "{missing:?}"
        );
    }

    #[test]
    fn requests_for_commands() {
        let req = build(&Command::Stats { name: None }).expect("request");
        assert_eq!(req, Request::new("stats", None));
        let req = build(&Command::Stats {
            name: Some("vm1".into()),
        })
        .expect("request");
        assert_eq!(req.params, Some(json!({"name": "vm1"})));
        let req = build(&Command::GuestSet {
            name: "vm1".into(),
            assignments: vec![
                parse_assignment("mtu=9000").expect("valid"),
                parse_assignment("lcore=none").expect("valid"),
            ],
        })
        .expect("request");
        assert_eq!(req.method, "guest-set");
        assert_eq!(
            req.params,
            Some(json!({"name": "vm1", "set": {"mtu": 9000, "lcore": null}}))
        );
        let dup = build(&Command::GuestSet {
            name: "vm1".into(),
            assignments: vec![
                parse_assignment("mtu=1").expect("valid"),
                parse_assignment("mtu=2").expect("valid"),
            ],
        });
        assert!(matches!(
            dup,
            Err(BuildError::Usage {
                command: "guest-set",
                ..
            })
        ));
        let req = build(&Command::GuestAdd(Box::new(flags()))).expect("request");
        assert_eq!(req.method, "guest-add");
        let text = req
            .params
            .as_ref()
            .and_then(|p| p["toml"].as_str())
            .expect("toml param");
        assert_eq!(parsed(text)["name"].as_str(), Some("vm3"));
    }
}
