//! The application's own DPDK telemetry commands, for `dpdk-telemetry.py` and other clients
//! of DPDK's telemetry socket (`/var/run/dpdk/<prefix>/dpdk_telemetry.v2`).
//!
//! One process-wide [`TelemetryHandler`] answers every command registered here: DPDK calls a
//! shared `extern "C"` callback on its telemetry thread (one thread per connected client, so
//! possibly concurrently), which hands `(command, params)` to the handler and turns the JSON
//! it returns into DPDK's `struct rte_tel_data`. A panic in the handler must not unwind into
//! C: it is reported on stderr and the process aborts. Registration works before or after EAL
//! initialisation; the socket exists only once the EAL is up (and without `--no-telemetry`).
//!
//! # JSON -> telemetry mapping (DPDK 22.11)
//!
//! DPDK 22.11's telemetry data is narrower than JSON, so the handler's value is mapped:
//!
//! | JSON                                   | telemetry                                           |
//! |----------------------------------------|-----------------------------------------------------|
//! | object                                 | dict (at the top, or a dict container in a dict)    |
//! | number that fits `u64`                 | u64                                                 |
//! | negative integer that fits `i32`       | int                                                 |
//! | other negative integer, float          | string: the number's JSON text (`"-5000000000"`, `"1.5"`) |
//! | `true` / `false`                       | u64 `1` / `0`                                       |
//! | string                                 | string, see "Strings" below                         |
//! | `null` in an object                    | the entry is left out                               |
//! | array of scalars                       | array: u64 if every item is a u64 or bool, else int if every item fits `i32`, else strings (each item's JSON text; `null` is `"null"`, bools `"true"`/`"false"`) |
//! | top-level array of arrays of scalars   | array of array containers                           |
//! | any other array (holding objects, or arrays below the top level) | dict keyed by position: `{"0": .., "1": ..}` |
//! | top-level `null`                       | `null` (the reply is `{"/cmd": null}`)              |
//! | top-level number or bool               | string: its JSON text (22.11 has no top-level number) |
//!
//! That is because 22.11 accepts only arrays of u64/int/string (not dicts or other
//! containers) inside an array, and only dicts and scalar arrays inside a dict.
//!
//! Limits (`rte_telemetry.h`, lib/telemetry/telemetry.c), each cut marked where the shape
//! allows it:
//! - A dict keeps at most 256 entries: past that, the first 255 and `"_truncated": N`, the
//!   number of entries left out (`_truncated_2` if the handler used `_truncated` itself).
//! - An array keeps at most 512 items: a string array ends with `"(N more not shown)"` after
//!   511, an array of containers with `["(N more not shown)"]`; a numeric array keeps the
//!   first 512, unmarked (22.11 arrays hold one type).
//! - A reply allocates at most [`MAX_CONTAINERS`] nested containers (each is a ~66 KiB
//!   `rte_tel_data`), plus one for a marker: a dict value past that reads
//!   `"(not shown: reply too large)"`, array containers past that count in the marker.
//! - DPDK writes a reply into 16 KiB and would silently leave out whatever does not fit (and
//!   write invalid JSON for a top-level string that does not). So the reply is cut to fit
//!   first, from its end: a dict or array keeps its entries in order up to the first that
//!   does not fit (which, if it is a container, is cut down the same way) and then carries the
//!   marker above, counting what it lost; a top-level string is shortened.
//!
//! Keys: 22.11 takes only ASCII letters, digits, `_` and `/` in a dict key, so every other
//! character becomes `_`; keys are cut to 127 bytes, and a key that collides with one already
//! in the dict (after that) gets `_2`, `_3`, .. appended.
//!
//! Strings: values are cut to 127 bytes (8191 for a top-level string). Only printable ASCII,
//! tab, CR and LF are passed on; any other character becomes one `?`. 22.11's JSON writer
//! indexes a table with a signed `char`, so a byte >= 0x80 reads outside it (and control
//! characters are dropped), which is why non-ASCII text must not reach it.

use std::collections::HashSet;
use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

use super::error::{Result, RteError};
use crate::sys;

/// Longest command name DPDK 22.11 takes (`MAX_CMD_LEN` - 1 in lib/telemetry/telemetry.c).
pub const MAX_COMMAND_LEN: usize = 55;
/// Longest help text DPDK 22.11 takes (`RTE_TEL_MAX_STRING_LEN` - 1).
pub const MAX_HELP_LEN: usize = sys::RTE_TEL_MAX_STRING_LEN as usize - 1;
/// Nested containers one reply may allocate.
pub const MAX_CONTAINERS: usize = 128;

const MAX_STRING: usize = sys::RTE_TEL_MAX_STRING_LEN as usize - 1;
const MAX_TOP_STRING: usize = sys::RTE_TEL_MAX_SINGLE_STRING_LEN as usize - 1;
const MAX_DICT: usize = sys::RTE_TEL_MAX_DICT_ENTRIES as usize;
const MAX_ARRAY: usize = sys::RTE_TEL_MAX_ARRAY_ENTRIES as usize;
const TRUNCATED_KEY: &str = "_truncated";
const TOO_LARGE: &str = "(not shown: reply too large)";

const OP: &str = "rte_telemetry_register_cmd";

/// Whatever answers a command: called on DPDK's telemetry thread with (command, params);
/// returns JSON. `params` is what the client sent after the first `,` (empty if nothing).
pub trait TelemetryHandler: Send + Sync + 'static {
    fn call(&self, cmd: &str, params: &str) -> Value;
}

static HANDLER: OnceLock<Box<dyn TelemetryHandler>> = OnceLock::new();
/// Commands registered through `register`: DPDK 22.11 accepts a name twice (and the later
/// registration shadows the earlier), so duplicates are refused here.
static REGISTERED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the process-wide handler, once. Commands registered before it answer `null`.
pub fn set_handler(h: Box<dyn TelemetryHandler>) -> Result<()> {
    HANDLER
        .set(h)
        .map_err(|_| RteError::new(OP, libc::EALREADY).with_detail("telemetry handler set twice"))
}

/// Registers `cmd` with DPDK's telemetry, answered by the handler. `cmd` starts with `/`, has
/// only ASCII letters, digits, `_` and `/`, and at most [`MAX_COMMAND_LEN`] bytes; `help` is
/// printable ASCII (tab, CR, LF allowed) of at most [`MAX_HELP_LEN`] bytes. A name is
/// registered once per process (DPDK cannot unregister). DPDK's own commands (`/ethdev/..`,
/// `/eal/..`) are not known here: use a prefix of the application's own, such as `/macvtap/`.
pub fn register(cmd: &str, help: &str) -> Result<()> {
    let invalid = |why: String| RteError::new(OP, libc::EINVAL).with_detail(format!("{cmd:?}: {why}"));
    validate_command(cmd).map_err(invalid)?;
    validate_help(help).map_err(invalid)?;
    let c_cmd = CString::new(cmd).map_err(|_| invalid("NUL in the name".into()))?;
    let c_help = CString::new(help).map_err(|_| invalid("NUL in the help text".into()))?;

    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if registered.iter().any(|c| c == cmd) {
        return Err(RteError::new(OP, libc::EEXIST).with_detail(format!("{cmd:?} is already registered")));
    }
    // SAFETY: both strings are NUL-terminated and only read (the library copies them); the
    // callback is a plain function that lives for the process and never unwinds.
    let ret = unsafe { sys::rte_telemetry_register_cmd(c_cmd.as_ptr(), Some(on_command), c_help.as_ptr()) };
    if ret < 0 {
        return Err(RteError::new(OP, ret).with_detail(cmd.to_owned()));
    }
    registered.push(cmd.to_owned());
    Ok(())
}

/// DPDK 22.11's rules for a command name (`rte_telemetry_register_cmd`).
fn validate_command(cmd: &str) -> std::result::Result<(), String> {
    if !cmd.starts_with('/') {
        return Err("a command starts with '/'".into());
    }
    if cmd.len() > MAX_COMMAND_LEN {
        return Err(format!("a command has at most {MAX_COMMAND_LEN} bytes, not {}", cmd.len()));
    }
    match cmd.chars().find(|&c| !is_name_char(c)) {
        Some(c) => Err(format!("{c:?} is not allowed in a command (only ASCII letters, digits, '_' and '/')")),
        None => Ok(()),
    }
}

/// The help text reaches the same JSON writer as any string (`/help,<cmd>`), so it is held to
/// what that writer passes on intact.
fn validate_help(help: &str) -> std::result::Result<(), String> {
    if help.len() > MAX_HELP_LEN {
        return Err(format!("help text has at most {MAX_HELP_LEN} bytes, not {}", help.len()));
    }
    match help.chars().find(|&c| !is_safe_text_char(c)) {
        Some(c) => Err(format!("{c:?} in the help text (only printable ASCII)")),
        None => Ok(()),
    }
}

/// Characters 22.11 allows in a command name and a dict key (`valid_name`).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '/'
}

/// Characters 22.11's JSON writer passes on intact (it escapes `"`, `\`, tab, CR and LF).
fn is_safe_text_char(c: char) -> bool {
    c == ' ' || c.is_ascii_graphic() || c == '\t' || c == '\r' || c == '\n'
}

/// `s` for a telemetry string of at most `max` bytes: each character the JSON writer cannot
/// carry becomes `?`, so every character is one byte and the cut is at a character boundary.
fn text(s: &str, max: usize) -> CString {
    let bytes: Vec<u8> = s
        .chars()
        .take(max)
        .map(|c| if is_safe_text_char(c) { c as u8 } else { b'?' })
        .collect();
    CString::new(bytes).unwrap_or_default() // no NUL: '\0' is not a safe character
}

/// `key` made into a valid, unique dict key of at most 127 bytes.
fn dict_key(key: &str, used: &mut HashSet<String>) -> CString {
    let base: String = key
        .chars()
        .take(MAX_STRING)
        .map(|c| if is_name_char(c) { c } else { '_' })
        .collect();
    let mut k = base.clone();
    let mut n = 2usize;
    while used.contains(&k) {
        let suffix = format!("_{n}");
        k = base.clone();
        k.truncate(MAX_STRING - suffix.len()); // ASCII: any length is a boundary
        k.push_str(&suffix);
        n += 1;
    }
    used.insert(k.clone());
    CString::new(k).unwrap_or_default() // only name characters, no NUL
}

/// A reply in the shapes DPDK 22.11 accepts; built from the handler's JSON without touching
/// DPDK (`plan`), then written into the library's data (`emit_top`).
#[derive(Debug, Clone, PartialEq)]
enum Top {
    Null,
    Str(CString),
    Dict(Dict),
    Array(ScalarArray),
    /// Array containers, then `["(N more not shown)"]` if `more` > 0.
    Containers { arrays: Vec<ScalarArray>, more: usize },
}

/// Entries, then `"_truncated": omitted` if `omitted` > 0.
#[derive(Debug, Clone, PartialEq)]
struct Dict {
    entries: Vec<(CString, DictVal)>,
    omitted: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum DictVal {
    Str(CString),
    Int(i32),
    U64(u64),
    Dict(Dict),
    Array(ScalarArray),
}

#[derive(Debug, Clone, PartialEq)]
enum ScalarArray {
    /// Items, then `"(N more not shown)"` if `more` > 0.
    Str { items: Vec<CString>, more: usize },
    Int(Vec<i32>),
    U64(Vec<u64>),
}

impl ScalarArray {
    fn value_type(&self) -> sys::rte_tel_value_type {
        match self {
            ScalarArray::Str { .. } => sys::RTE_TEL_STRING_VAL,
            ScalarArray::Int(_) => sys::RTE_TEL_INT_VAL,
            ScalarArray::U64(_) => sys::RTE_TEL_U64_VAL,
        }
    }
}

impl Dict {
    /// The truncation entry, under a key no kept entry uses.
    fn marker(&self) -> Option<(CString, u64)> {
        if self.omitted == 0 {
            return None;
        }
        let mut used: HashSet<String> =
            self.entries.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        Some((dict_key(TRUNCATED_KEY, &mut used), self.omitted))
    }
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Bool(b) => Some(u64::from(*b)),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn as_i32(v: &Value) -> Option<i32> {
    match v {
        Value::Bool(b) => Some(i32::from(*b)),
        Value::Number(n) => n.as_i64().and_then(|i| i32::try_from(i).ok()),
        _ => None,
    }
}

/// A scalar as a string: a string as itself, anything else as its JSON text.
fn scalar_text(v: &Value, max: usize) -> CString {
    match v {
        Value::String(s) => text(s, max),
        other => text(&other.to_string(), max),
    }
}

fn more_not_shown(n: usize) -> CString {
    text(&format!("({n} more not shown)"), MAX_STRING)
}

/// Turns the handler's JSON into a `Top` within DPDK's entry limits, counting nested
/// containers against `MAX_CONTAINERS`.
struct Planner {
    containers_left: usize,
}

impl Planner {
    fn take_container(&mut self) -> bool {
        if self.containers_left == 0 {
            return false;
        }
        self.containers_left -= 1;
        true
    }

    fn top(&mut self, v: &Value) -> Top {
        match v {
            Value::Null => Top::Null,
            Value::Object(map) => Top::Dict(self.dict(map.iter().map(|(k, v)| (k.clone(), v)))),
            Value::Array(items) if items.iter().all(is_scalar) => Top::Array(scalar_array(items)),
            Value::Array(items)
                if items.iter().all(|i| matches!(i, Value::Array(inner) if inner.iter().all(is_scalar))) =>
            {
                self.containers(items)
            }
            Value::Array(items) => Top::Dict(self.indexed(items)),
            scalar => Top::Str(scalar_text(scalar, MAX_TOP_STRING)),
        }
    }

    /// Items that are all arrays of scalars, as an array of array containers.
    fn containers(&mut self, items: &[Value]) -> Top {
        let shown = if items.len() > MAX_ARRAY { MAX_ARRAY - 1 } else { items.len() };
        let mut arrays = Vec::new();
        for item in &items[..shown] {
            if !self.take_container() {
                break;
            }
            if let Value::Array(inner) = item {
                arrays.push(scalar_array(inner));
            }
        }
        Top::Containers { more: items.len() - arrays.len(), arrays }
    }

    fn indexed(&mut self, items: &[Value]) -> Dict {
        self.dict(items.iter().enumerate().map(|(i, v)| (i.to_string(), v)))
    }

    fn dict<'v>(&mut self, entries: impl Iterator<Item = (String, &'v Value)>) -> Dict {
        let entries: Vec<(String, &Value)> = entries.filter(|(_, v)| !v.is_null()).collect();
        let shown = if entries.len() > MAX_DICT { MAX_DICT - 1 } else { entries.len() };
        let mut used = HashSet::new();
        let mut out = Vec::with_capacity(shown);
        for (k, v) in &entries[..shown] {
            let key = dict_key(k, &mut used);
            out.push((key, self.dict_value(v)));
        }
        Dict { entries: out, omitted: (entries.len() - shown) as u64 }
    }

    /// Not called for `null` (left out of dicts).
    fn dict_value(&mut self, v: &Value) -> DictVal {
        let container = !is_scalar(v);
        if container && !self.take_container() {
            return DictVal::Str(text(TOO_LARGE, MAX_STRING));
        }
        match v {
            Value::Object(map) => DictVal::Dict(self.dict(map.iter().map(|(k, v)| (k.clone(), v)))),
            Value::Array(items) if items.iter().all(is_scalar) => DictVal::Array(scalar_array(items)),
            Value::Array(items) => DictVal::Dict(self.indexed(items)),
            other => {
                if let Some(u) = as_u64(other) {
                    DictVal::U64(u)
                } else if let Some(i) = as_i32(other) {
                    DictVal::Int(i)
                } else {
                    DictVal::Str(scalar_text(other, MAX_STRING))
                }
            }
        }
    }
}

/// Scalars as one typed array: u64 if all fit, else int if all fit, else strings.
fn scalar_array(items: &[Value]) -> ScalarArray {
    if !items.is_empty() {
        if let Some(u) = items.iter().map(as_u64).collect::<Option<Vec<u64>>>() {
            return ScalarArray::U64(u.into_iter().take(MAX_ARRAY).collect());
        }
        if let Some(i) = items.iter().map(as_i32).collect::<Option<Vec<i32>>>() {
            return ScalarArray::Int(i.into_iter().take(MAX_ARRAY).collect());
        }
    }
    let shown = if items.len() > MAX_ARRAY { MAX_ARRAY - 1 } else { items.len() };
    ScalarArray::Str {
        items: items[..shown].iter().map(|v| scalar_text(v, MAX_STRING)).collect(),
        more: items.len() - shown,
    }
}

// DPDK writes a reply as compact JSON into MAX_OUTPUT bytes, and leaves out whatever does not
// fit (a top-level string that does not fit leaves invalid JSON). So the plan is cut to fit,
// with the sizes below being exactly what DPDK writes for it.

/// DPDK's reply buffer (`MAX_OUTPUT_LEN` in lib/telemetry/telemetry.c).
const MAX_OUTPUT: usize = 16 * 1024;
/// Kept free: DPDK's writers want a byte or two past each piece.
const SLACK: usize = 16;
/// Room for a truncation marker with its comma: `,"_truncated_257":18446744073709551615`,
/// `,"(N more not shown)"`, `,["(N more not shown)"]`.
const MARKER_ROOM: usize = 48;
/// Smallest room a container is cut down into (rather than left out).
const MIN_CONTAINER: usize = 2 + MARKER_ROOM;

/// Bytes of the reply's body for command `cmd`: all but `{"<cmd>":` and `}`.
fn output_budget(cmd: &str) -> usize {
    MAX_OUTPUT - (cmd.len() + 4) - 1 - SLACK
}

/// Bytes DPDK writes for one byte of a string (`"`, `\`, tab, CR and LF are escaped; no other
/// control character reaches it).
fn byte_size(b: u8) -> usize {
    if matches!(b, b'"' | b'\\' | b'\t' | b'\r' | b'\n') {
        2
    } else {
        1
    }
}

/// A string as DPDK writes it, quoted.
fn str_size(s: &CStr) -> usize {
    2 + s.to_bytes().iter().map(|&b| byte_size(b)).sum::<usize>()
}

/// `[..]` or `{..}` around `n` pieces of `sum` bytes.
fn list_size(n: usize, sum: usize) -> usize {
    2 + sum + n.saturating_sub(1)
}

fn num_size(n: impl ToString) -> usize {
    n.to_string().len()
}

impl ScalarArray {
    fn size(&self) -> usize {
        match self {
            ScalarArray::Str { items, more } => {
                let marker = (*more > 0).then(|| str_size(&more_not_shown(*more)));
                let sizes = items.iter().map(|s| str_size(s)).chain(marker);
                list_size(items.len() + usize::from(marker.is_some()), sizes.sum())
            }
            ScalarArray::Int(v) => list_size(v.len(), v.iter().map(|&i| num_size(i)).sum()),
            ScalarArray::U64(v) => list_size(v.len(), v.iter().map(|&u| num_size(u)).sum()),
        }
    }

    /// Keeps the items that fit in `budget` (at least `MIN_CONTAINER`) bytes.
    fn fit(self, budget: usize) -> ScalarArray {
        if self.size() <= budget {
            return self;
        }
        fn keep<T>(v: Vec<T>, mut used: usize, budget: usize, size: impl Fn(&T) -> usize) -> Vec<T> {
            v.into_iter()
                .take_while(|x| {
                    used += size(x) + 1;
                    used <= budget
                })
                .collect()
        }
        match self {
            ScalarArray::Str { items, more } => {
                let total = items.len();
                let items = keep(items, 2 + MARKER_ROOM, budget, |s| str_size(s));
                ScalarArray::Str { more: more + total - items.len(), items }
            }
            ScalarArray::Int(v) => ScalarArray::Int(keep(v, 2, budget, |&i| num_size(i))),
            ScalarArray::U64(v) => ScalarArray::U64(keep(v, 2, budget, |&u| num_size(u))),
        }
    }
}

impl DictVal {
    fn size(&self) -> usize {
        match self {
            DictVal::Str(s) => str_size(s),
            DictVal::Int(i) => num_size(*i),
            DictVal::U64(u) => num_size(*u),
            DictVal::Dict(d) => d.size(),
            DictVal::Array(a) => a.size(),
        }
    }
}

impl Dict {
    fn size(&self) -> usize {
        let entry = |k: &CStr, v: usize| str_size(k) + 1 + v;
        let marker = self.marker().map(|(k, n)| entry(&k, num_size(n)));
        let sizes = self.entries.iter().map(|(k, v)| entry(k, v.size())).chain(marker);
        list_size(self.entries.len() + usize::from(marker.is_some()), sizes.sum())
    }

    /// Keeps the entries that fit in `budget` (at least `MIN_CONTAINER`) bytes, in order: the
    /// first that does not fit is cut down if it is a container, and ends the dict.
    fn fit(self, budget: usize) -> Dict {
        if self.size() <= budget {
            return self;
        }
        let total = self.entries.len();
        let mut used = 2 + MARKER_ROOM;
        let mut kept = Vec::new();
        for (k, v) in self.entries {
            let overhead = str_size(&k) + 2; // ':' and ','
            let size = overhead + v.size();
            if used + size <= budget {
                used += size;
                kept.push((k, v));
                continue;
            }
            let room = budget.saturating_sub(used + overhead);
            if room >= MIN_CONTAINER {
                match v {
                    DictVal::Dict(d) => kept.push((k, DictVal::Dict(d.fit(room)))),
                    DictVal::Array(a) => kept.push((k, DictVal::Array(a.fit(room)))),
                    _ => {}
                }
            }
            break;
        }
        Dict { omitted: self.omitted + (total - kept.len()) as u64, entries: kept }
    }
}

impl Top {
    /// Cut to fit `budget` bytes (`output_budget`).
    fn fit(self, budget: usize) -> Top {
        match self {
            Top::Null => Top::Null,
            Top::Str(s) => {
                let mut size = 2;
                let bytes: Vec<u8> = s
                    .into_bytes()
                    .into_iter()
                    .take_while(|&b| {
                        size += byte_size(b);
                        size <= budget
                    })
                    .collect();
                Top::Str(CString::new(bytes).unwrap_or_default()) // bytes of a CString: no NUL
            }
            Top::Dict(d) => Top::Dict(d.fit(budget)),
            Top::Array(a) => Top::Array(a.fit(budget)),
            Top::Containers { arrays, more } => {
                let total = arrays.len();
                let mut used = 2 + MARKER_ROOM;
                let mut kept = Vec::new();
                for a in arrays {
                    let size = a.size() + 1;
                    if used + size <= budget {
                        used += size;
                        kept.push(a);
                        continue;
                    }
                    if budget.saturating_sub(used + 1) >= MIN_CONTAINER {
                        kept.push(a.fit(budget - used - 1));
                    }
                    break;
                }
                Top::Containers { more: more + total - kept.len(), arrays: kept }
            }
        }
    }
}

/// The handler's answer to `cmd` in the shapes and sizes DPDK 22.11 accepts.
fn plan(v: &Value, cmd: &str) -> Top {
    Planner { containers_left: MAX_CONTAINERS }.top(v).fit(output_budget(cmd))
}

/// Writes `top` into `d`, the data of the running callback. Failures (a container DPDK could
/// not allocate) leave the entry out; the plan already respects every rule and limit.
///
/// # Safety
/// `d` is the `rte_tel_data` DPDK passed to the callback that is running.
unsafe fn emit_top(d: NonNull<sys::rte_tel_data>, top: &Top) {
    let d = d.as_ptr();
    match top {
        Top::Null => {} // DPDK zeroed `d`: RTE_TEL_NULL, written as `null`
        Top::Str(s) => {
            // SAFETY: d is valid (caller); s is NUL-terminated and copied by the library.
            unsafe { sys::rte_tel_data_string(d, s.as_ptr()) };
        }
        // SAFETY: d is valid (caller).
        Top::Dict(entries) => unsafe { emit_dict(d, entries) },
        // SAFETY: d is valid (caller).
        Top::Array(array) => unsafe { emit_array(d, array) },
        Top::Containers { arrays, more } => {
            // SAFETY: d is valid (caller); RTE_TEL_CONTAINER is a valid type.
            unsafe { sys::rte_tel_data_start_array(d, sys::RTE_TEL_CONTAINER) };
            let marker = (*more > 0).then(|| ScalarArray::Str { items: vec![more_not_shown(*more)], more: 0 });
            for array in arrays.iter().chain(&marker) {
                // SAFETY: d is valid and an array of containers; the child is a started
                // scalar array, the only kind such an array takes.
                let child = unsafe {
                    attach(Some(array.value_type()), |c| sys::rte_tel_data_add_array_container(d, c, 0))
                };
                if let Some(child) = child {
                    // SAFETY: child is a live container, owned by d until DPDK has written it.
                    unsafe { emit_array(child, array) };
                }
            }
        }
    }
}

/// Allocates a container, starts it as an array of `kind` (or as a dict for `None`) and hands
/// it to its parent through `add` (with keep = 0: the library frees it after writing the
/// reply). Nothing is in the container yet, so if `add` refuses it, freeing it here frees all
/// of it. Returns it for filling.
///
/// # Safety
/// `add` adds its argument to a parent that lives until the reply is written.
unsafe fn attach(
    kind: Option<sys::rte_tel_value_type>,
    add: impl FnOnce(*mut sys::rte_tel_data) -> c_int,
) -> Option<*mut sys::rte_tel_data> {
    // SAFETY: no preconditions; returns malloc'd memory or NULL.
    let c = NonNull::new(unsafe { sys::rte_tel_data_alloc() })?.as_ptr();
    match kind {
        // SAFETY: c is a fresh allocation of a whole rte_tel_data; starting it sets its type
        // and length, all that is read before entries are added. `t` is a valid enum value.
        Some(t) => unsafe { sys::rte_tel_data_start_array(c, t) },
        // SAFETY: as above.
        None => unsafe { sys::rte_tel_data_start_dict(c) },
    };
    if add(c) < 0 {
        // SAFETY: the parent refused c, so nothing else points at it; it holds no containers.
        unsafe { sys::rte_tel_data_free(c) };
        return None;
    }
    Some(c)
}

/// # Safety
/// `d` is a live `rte_tel_data` of the running callback (its own or a container it owns).
unsafe fn emit_dict(d: *mut sys::rte_tel_data, dict: &Dict) {
    // SAFETY: d is valid (caller).
    unsafe { sys::rte_tel_data_start_dict(d) };
    let marker = dict.marker().map(|(k, n)| (k, DictVal::U64(n)));
    // The plan holds at most 256 entries with the marker, keys that are valid names under 128
    // bytes and strings under 128 bytes; the library copies keys and strings.
    for (key, val) in dict.entries.iter().chain(&marker) {
        let k = key.as_ptr();
        match val {
            // SAFETY: d is a started dict (above); k and s are NUL-terminated (CString).
            DictVal::Str(s) => unsafe { sys::rte_tel_data_add_dict_string(d, k, s.as_ptr()) },
            // SAFETY: as above.
            DictVal::Int(i) => unsafe { sys::rte_tel_data_add_dict_int(d, k, *i) },
            // SAFETY: as above.
            DictVal::U64(u) => unsafe { sys::rte_tel_data_add_dict_u64(d, k, *u) },
            DictVal::Dict(sub) => {
                // SAFETY: d outlives the reply; a started dict is a container a dict takes.
                if let Some(c) = unsafe { attach(None, |c| sys::rte_tel_data_add_dict_container(d, k, c, 0)) } {
                    // SAFETY: c is a live container owned by d.
                    unsafe { emit_dict(c, sub) };
                }
                0
            }
            DictVal::Array(array) => {
                // SAFETY: d outlives the reply; a started scalar array is a container a dict takes.
                let c = unsafe {
                    attach(Some(array.value_type()), |c| sys::rte_tel_data_add_dict_container(d, k, c, 0))
                };
                if let Some(c) = c {
                    // SAFETY: c is a live container owned by d.
                    unsafe { emit_array(c, array) };
                }
                0
            }
        };
    }
}

/// # Safety
/// As `emit_dict`.
unsafe fn emit_array(d: *mut sys::rte_tel_data, array: &ScalarArray) {
    // SAFETY: d is valid (caller); the type is a valid enum value.
    unsafe { sys::rte_tel_data_start_array(d, array.value_type()) };
    // The plan holds at most 512 items with the marker; strings are under 128 bytes and
    // copied by the library.
    match array {
        ScalarArray::Str { items, more } => {
            let marker = (*more > 0).then(|| more_not_shown(*more));
            for s in items.iter().chain(&marker) {
                // SAFETY: d is a started string array (above); s is NUL-terminated.
                unsafe { sys::rte_tel_data_add_array_string(d, s.as_ptr()) };
            }
        }
        ScalarArray::Int(items) => {
            for &i in items {
                // SAFETY: d is a started int array (above).
                unsafe { sys::rte_tel_data_add_array_int(d, i) };
            }
        }
        ScalarArray::U64(items) => {
            for &u in items {
                // SAFETY: d is a started u64 array (above).
                unsafe { sys::rte_tel_data_add_array_u64(d, u) };
            }
        }
    }
}

/// C string from DPDK, or "" for NULL (`params` is NULL when the client sent none).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for the returned lifetime.
unsafe fn c_str<'a>(p: *const c_char) -> std::borrow::Cow<'a, str> {
    if p.is_null() {
        return "".into();
    }
    // SAFETY: non-NULL, NUL-terminated (caller).
    unsafe { CStr::from_ptr(p) }.to_string_lossy()
}

/// The one callback of every command registered here.
extern "C" fn on_command(cmd: *const c_char, params: *const c_char, info: *mut sys::rte_tel_data) -> c_int {
    super::boundary::no_unwind("telemetry handler", || {
        let (Some(handler), Some(info)) = (HANDLER.get(), NonNull::new(info)) else {
            return -1; // DPDK replies {"<cmd>": null}
        };
        // SAFETY: DPDK passes the command and the parameters (or NULL) as C strings that
        // live for the callback.
        let (cmd, params) = unsafe { (c_str(cmd), c_str(params)) };
        let top = plan(&handler.call(&cmd, &params), &cmd);
        // SAFETY: info is the data DPDK passed to this running callback.
        unsafe { emit_top(info, &top) };
        0 // never negative once containers are attached: DPDK frees them only when writing
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use serde_json::json;

    /// The JSON DPDK writes for a plan (what a client reads under the command's name).
    fn rendered(top: &Top) -> Value {
        fn s(c: &CStr) -> Value {
            Value::String(c.to_string_lossy().into_owned())
        }
        fn array(a: &ScalarArray) -> Value {
            match a {
                ScalarArray::Str { items, more } => {
                    let marker = (*more > 0).then(|| more_not_shown(*more));
                    items.iter().chain(&marker).map(|c| s(c)).collect()
                }
                ScalarArray::Int(v) => v.iter().map(|&i| json!(i)).collect(),
                ScalarArray::U64(v) => v.iter().map(|&u| json!(u)).collect(),
            }
        }
        fn dict(d: &Dict) -> Value {
            let mut m = serde_json::Map::new();
            for (k, v) in &d.entries {
                let v = match v {
                    DictVal::Str(x) => s(x),
                    DictVal::Int(i) => json!(i),
                    DictVal::U64(u) => json!(u),
                    DictVal::Dict(sub) => dict(sub),
                    DictVal::Array(a) => array(a),
                };
                m.insert(k.to_string_lossy().into_owned(), v);
            }
            if let Some((k, n)) = d.marker() {
                m.insert(k.to_string_lossy().into_owned(), json!(n));
            }
            Value::Object(m)
        }
        match top {
            Top::Null => Value::Null,
            Top::Str(x) => s(x),
            Top::Dict(d) => dict(d),
            Top::Array(a) => array(a),
            Top::Containers { arrays, more } => {
                let marker = (*more > 0).then(|| json!([s(&more_not_shown(*more))]));
                arrays.iter().map(array).chain(marker).collect()
            }
        }
    }

    /// Bytes DPDK writes for the body of a reply, by the plan's own reckoning.
    fn size(top: &Top) -> usize {
        match top {
            Top::Null => 4,
            Top::Str(s) => str_size(s),
            Top::Dict(d) => d.size(),
            Top::Array(a) => a.size(),
            Top::Containers { arrays, more } => {
                let marker = (*more > 0).then(|| 2 + str_size(&more_not_shown(*more)));
                let sizes = arrays.iter().map(ScalarArray::size).chain(marker);
                list_size(arrays.len() + usize::from(marker.is_some()), sizes.sum())
            }
        }
    }

    const CMD: &str = "/macvtap/test";

    fn through(v: Value) -> Value {
        rendered(&plan(&v, CMD))
    }

    /// A reply that exercises every mapping; the ignored end-to-end test serves it too.
    fn sample() -> Value {
        json!({
            "name": "sw0",
            "up": true,
            "guests": 2,
            "delta": -3,
            "big_negative": -5_000_000_000i64,
            "ratio": 0.5,
            "gone": null,
            "bad key!": "x",
            "ports": [0, 1],
            "temps": [-1, 2],
            "mixed": [1, "a", null, 1.5],
            "nested": {"a": {"b": [1, 2, 3]}},
            "guest_list": [{"id": 1, "mac": "52:54:00:00:00:01"}, {"id": 2, "mac": "52:54:00:00:00:02"}],
            "café": "naïve"
        })
    }

    /// Far more than DPDK's 16 KiB reply.
    fn big() -> Value {
        (0..300).map(|i| (format!("k{i:03}"), json!("v".repeat(100)))).collect()
    }

    #[test]
    fn command_names_follow_dpdk_rules() {
        assert!(validate_command("/macvtap/test").is_ok());
        assert!(validate_command("/a_b/C9").is_ok());
        assert!(validate_command("macvtap").is_err());
        assert!(validate_command("/mac-vtap").is_err());
        assert!(validate_command("/mac vtap").is_err());
        assert!(validate_command("/macvtap,x").is_err());
        assert!(validate_command("/é").is_err());
        assert!(validate_command("/a\0").is_err());
        assert!(validate_command(&format!("/{}", "a".repeat(54))).is_ok());
        assert!(validate_command(&format!("/{}", "a".repeat(55))).is_err());
    }

    #[test]
    fn help_is_short_printable_ascii() {
        assert!(validate_help("Per-guest counters. Params: guest id").is_ok());
        assert!(validate_help(&"h".repeat(127)).is_ok());
        assert!(validate_help(&"h".repeat(128)).is_err());
        assert!(validate_help("naïve").is_err());
        assert!(validate_help("a\u{1}b").is_err());
    }

    #[test]
    fn register_refuses_bad_names_before_calling_dpdk() {
        let Err(e) = register("no-slash", "") else { panic!("registered a name without '/'") };
        assert_eq!((e.op, e.errno), (OP, libc::EINVAL));
        assert!(e.detail.as_deref().unwrap_or("").contains("no-slash"));
        let Err(e) = register("/ok", &"h".repeat(200)) else { panic!("registered a 200-byte help") };
        assert_eq!(e.errno, libc::EINVAL);
    }

    #[test]
    fn strings_are_cut_at_127_ascii_bytes() {
        assert_eq!(text(&"a".repeat(300), MAX_STRING).as_bytes().len(), 127);
        // Multi-byte characters become one '?' each, so the cut never splits one.
        let t = text(&"é".repeat(200), MAX_STRING);
        assert_eq!(t.as_bytes(), "?".repeat(127).as_bytes());
        assert_eq!(text("a\"b\\c\td\ne\0f\u{7f}", MAX_STRING).to_str().ok(), Some("a\"b\\c\td\ne?f?"));
        assert_eq!(text("x".repeat(9000).as_str(), MAX_TOP_STRING).as_bytes().len(), 8191);
    }

    #[test]
    fn keys_are_sanitised_cut_and_unique() {
        let mut used = HashSet::new();
        let mut key = |k: &str| dict_key(k, &mut used).to_string_lossy().into_owned();
        assert_eq!(key("rx_pkts/q0"), "rx_pkts/q0");
        assert_eq!(key("a-b"), "a_b");
        assert_eq!(key("a.b"), "a_b_2");
        assert_eq!(key("a b"), "a_b_3");
        assert_eq!(key("é"), "_");
        assert_eq!(key(&"k".repeat(200)).len(), 127);
        let long2 = key(&"k".repeat(300));
        assert_eq!(long2.len(), 127);
        assert!(long2.ends_with("_2"));
    }

    #[test]
    fn json_maps_to_the_shapes_dpdk_takes() {
        assert_eq!(
            through(sample()),
            json!({
                "name": "sw0",
                "up": 1,
                "guests": 2,
                "delta": -3,
                "big_negative": "-5000000000",
                "ratio": "0.5",
                "bad_key_": "x",
                "ports": [0, 1],
                "temps": [-1, 2],
                "mixed": ["1", "a", "null", "1.5"],
                "nested": {"a": {"b": [1, 2, 3]}},
                "guest_list": {"0": {"id": 1, "mac": "52:54:00:00:00:01"}, "1": {"id": 2, "mac": "52:54:00:00:00:02"}},
                "caf_": "na?ve"
            })
        );
        assert!(matches!(plan(&sample(), CMD), Top::Dict(_)));
        assert_eq!(plan(&json!(null), CMD), Top::Null);
        assert_eq!(through(json!(42)), json!("42"));
        assert_eq!(through(json!(true)), json!("true"));
        assert_eq!(through(json!("hi")), json!("hi"));
        assert_eq!(through(json!([])), json!([]));
        assert_eq!(through(json!([1, [2]])), json!({"0": 1, "1": [2]}));
        assert_eq!(
            plan(&json!([[1, 2], ["a", -1], [], [-7]]), CMD),
            Top::Containers {
                arrays: vec![
                    ScalarArray::U64(vec![1, 2]),
                    ScalarArray::Str { items: vec![text("a", MAX_STRING), text("-1", MAX_STRING)], more: 0 },
                    ScalarArray::Str { items: vec![], more: 0 },
                    ScalarArray::Int(vec![-7]),
                ],
                more: 0,
            }
        );
        // Below the top, an array of arrays is a dict by position.
        assert_eq!(through(json!({"m": [[1], [2]]})), json!({"m": {"0": [1], "1": [2]}}));
        assert_eq!(through(json!([i64::from(i32::MIN), 1])), json!([i32::MIN, 1]));
        assert_eq!(through(json!([-1, u64::MAX])), json!(["-1", u64::MAX.to_string()]));
        // A user key named like the marker does not hide it.
        let many: serde_json::Map<String, Value> =
            (0..300).map(|i| (format!("k{i:03}"), json!(i))).chain([("_truncated".into(), json!("mine"))]).collect();
        let out = through(Value::Object(many));
        assert_eq!((out["_truncated"].clone(), out["_truncated_2"].clone()), (json!("mine"), json!(46)));
    }

    #[test]
    fn entry_limits_are_respected_with_a_marker() {
        let many: serde_json::Map<String, Value> = (0..300).map(|i| (format!("k{i:03}"), json!(i))).collect();
        let Top::Dict(d) = plan(&Value::Object(many), CMD) else { panic!("a dict") };
        assert_eq!((d.entries.len(), d.omitted), (255, 45));

        let Top::Array(ScalarArray::U64(u)) = plan(&json!((0..600).collect::<Vec<u64>>()), CMD) else {
            panic!("u64")
        };
        assert!(u.len() <= 512);
        let strings: Vec<String> = (0..600).map(|i| format!("s{i}")).collect();
        let Top::Array(ScalarArray::Str { items, more }) = plan(&json!(strings), CMD) else { panic!("strings") };
        assert_eq!((items.len(), more), (511, 89));

        // The container budget comes before the 512-entry limit.
        let arrays: Vec<Value> = (0..600).map(|i| json!([i])).collect();
        let Top::Containers { arrays, more } = plan(&Value::Array(arrays), CMD) else { panic!("containers") };
        assert_eq!((arrays.len(), more), (MAX_CONTAINERS, 600 - MAX_CONTAINERS));

        // Deep nesting stops at the container budget.
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!({ "d": deep });
        }
        let mut v = through(deep);
        let mut depth = 0;
        while let Some(inner) = v.get("d").cloned() {
            v = inner;
            depth += 1;
        }
        assert_eq!(depth, MAX_CONTAINERS + 1);
        assert_eq!(v, json!(TOO_LARGE));
    }

    #[test]
    fn replies_are_cut_to_dpdk_output_buffer() {
        let budget = output_budget(CMD);
        let nested_big = json!({"a": 1, "inner": big(), "z": 2});
        let big_strings: Vec<String> = (0..600).map(|i| format!("{i}").repeat(60)).collect();
        let big_arrays: Vec<Value> = (0..100).map(|_| json!((0..100).collect::<Vec<u64>>())).collect();
        let cases =
            [sample(), big(), nested_big.clone(), json!(big_strings), Value::Array(big_arrays), json!("\"".repeat(9000))];
        for v in cases {
            let top = plan(&v, CMD);
            let compact = serde_json::to_string(&rendered(&top)).expect("JSON");
            // The size model is what a compact JSON writer (serde's, DPDK's) writes.
            assert_eq!(size(&top), compact.len(), "{compact}");
            assert!(compact.len() <= budget);
        }
        // Entries are kept in order and the marker counts the rest.
        let out = through(big());
        let kept = out.as_object().map_or(0, |m| m.len()) - 1;
        assert!(kept > 100, "{kept}");
        assert_eq!(out["_truncated"], json!(300 - kept));
        assert!((0..kept).all(|i| out.get(format!("k{i:03}")).is_some()));
        // A container that does not fit is cut down, and ends its dict.
        let out = through(nested_big);
        assert_eq!(out["a"], json!(1));
        assert!(out["inner"]["_truncated"].as_u64().unwrap_or(0) > 45);
        assert_eq!((out.get("z"), &out["_truncated"]), (None, &json!(1)));
        // A top-level string of quotes is cut so that, escaped, it still fits.
        let Top::Str(s) = plan(&json!("\"".repeat(9000)), CMD) else { panic!("a string") };
        assert_eq!(s.as_bytes().len(), (budget - 2) / 2);
    }

    /// End to end through a real EAL and `dpdk-telemetry.py` (Debian's `dpdk` package); needs
    /// root for /var/run/dpdk. Run alone: `cargo test --lib telemetry -- --ignored`.
    #[test]
    #[ignore]
    fn dpdk_telemetry_py_reads_a_registered_command() {
        struct Sample;
        impl TelemetryHandler for Sample {
            fn call(&self, cmd: &str, params: &str) -> Value {
                match params {
                    "" => sample(),
                    "arrays" => json!([[1, 2], ["a", -1], [], [-7]]),
                    "text" => json!("plain \"text\"\n"),
                    "none" => Value::Null,
                    "big" => big(),
                    p => json!({ "cmd": cmd, "params": p }),
                }
            }
        }
        let args =
            ["x", "--no-huge", "-m", "256", "--no-pci", "--file-prefix", "teltest", "-l", "0", "--log-level", "error"];
        let _eal = crate::rte::Eal::init(&args).expect("EAL init");
        set_handler(Box::new(Sample)).expect("handler");
        register(CMD, "Test command of the telemetry wrapper").expect("register");
        let Err(e) = register(CMD, "again") else { panic!("registered twice") };
        assert_eq!(e.errno, libc::EEXIST);

        let input = ["", ",guest 3", ",arrays", ",text", ",none", ",big"].map(|p| format!("{CMD}{p}\n")).concat()
            + "/help,/macvtap/test\n";
        let mut child = std::process::Command::new("/usr/bin/dpdk-telemetry.py")
            .args(["-f", "teltest"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("dpdk-telemetry.py");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        let out = child.wait_with_output().expect("output");
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        eprintln!("dpdk-telemetry.py <<< {input:?}\n{out}");
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();

        let reply = |v: Value| json!({ CMD: rendered(&plan(&v, CMD)) });
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[0], reply(sample()));
        assert_eq!(lines[1], json!({ CMD: { "cmd": CMD, "params": "guest 3" } }));
        assert_eq!(lines[2], json!({ CMD: [[1, 2], ["a", "-1"], [], [-7]] }));
        assert_eq!(lines[3], json!({ CMD: "plain \"text\"\n" }));
        assert_eq!(lines[4], json!({ CMD: null }));
        assert_eq!(lines[5], reply(big()));
        assert_eq!(lines[6], json!({ "/help": { CMD: "Test command of the telemetry wrapper" } }));
    }
}
