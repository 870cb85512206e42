//! The passthru and source modes in the guests file and in changes to the running switch:
//! a passthru guest alone, `sources` only in mode source, each message pinned.

use super::runtime::{apply_changes_with, parse_addition_with};
use super::tests::FakeIds;
use super::*;

fn parse(text: &str) -> Result<Config, String> {
    parse_with(text, Path::new("guests.toml"), &FakeIds).map_err(|e| e.to_string())
}

fn guest(name: &str, n: u8, extra: &str) -> String {
    format!("[[guest]]\nname = \"{name}\"\nmac = \"52:54:00:00:00:0{n}\"\nsocket = \"/run/{name}.sock\"\n{extra}")
}

fn mac(text: &str) -> MacAddr {
    text.parse().expect("valid MAC")
}

#[test]
fn a_passthru_guest_alone_is_accepted() {
    let cfg = parse(&guest("pt", 1, "mode = \"passthru\"\n")).expect("valid");
    assert_eq!(cfg.guests[0].mode, Mode::Passthru);
    assert!(cfg.guests[0].sources.is_empty());
}

#[test]
fn a_passthru_guest_beside_another_is_refused_whichever_comes_first() {
    let first = format!("{}{}", guest("pt", 1, "mode = \"passthru\"\n"), guest("vm2", 2, ""));
    assert_eq!(
        parse(&first).expect_err("two guests"),
        "guests.toml:6: guest \"vm2\": guest \"pt\" (line 1) is in mode \"passthru\" and owns the uplink alone: no other guest may be configured beside it"
    );
    let second = format!("{}{}", guest("vm1", 1, ""), guest("pt", 2, "mode = \"passthru\"\n"));
    assert_eq!(
        parse(&second).expect_err("two guests"),
        "guests.toml:9: guest \"pt\": mode = \"passthru\": a passthru guest owns the uplink alone, but guest \"vm1\" (line 1) is configured too"
    );
}

#[test]
fn sources_are_parsed_in_mode_source() {
    let cfg = parse(&guest("mon", 1, "mode = \"source\"\nsources = [\n  \"02:00:00:00:AA:01\",\n  \"02:00:00:00:aa:02\",\n]\n")).expect("valid");
    assert_eq!(cfg.guests[0].sources, [mac("02:00:00:00:aa:01"), mac("02:00:00:00:aa:02")]);
    let one = parse(&guest("mon", 1, "mode = \"source\"\nsources = \"02:00:00:00:aa:01\"\n")).expect("valid");
    assert_eq!(one.guests[0].sources, [mac("02:00:00:00:aa:01")]);
    let none = parse(&guest("mon", 1, "mode = \"source\"\n")).expect("valid");
    assert!(none.guests[0].sources.is_empty(), "no list yet: VEPA until one is set");
    // Two guests may watch the same station, and a station may be another guest.
    let two = format!(
        "{}{}",
        guest("mon", 1, "mode = \"source\"\nsources = [\"02:00:00:00:aa:01\", \"52:54:00:00:00:02\"]\n"),
        guest("mon2", 2, "mode = \"source\"\nsources = [\"02:00:00:00:aa:01\"]\n")
    );
    parse(&two).expect("valid");
}

/// (value of `sources` in a source-mode guest at line 1, line of the error, message after
/// `guest "vm1": `) for every refusal of the list itself.
#[test]
fn sources_rejections() {
    let many: Vec<String> = (0..=MAX_SOURCES).map(|i| format!("\"02:00:00:00:{:02x}:{:02x}\"", i / 256, i % 256)).collect();
    let many = format!("[{}]", many.join(", "));
    let cases: Vec<(&str, usize, String)> = vec![
        ("[\n  \"02:00:00:00:aa:01\",\n  \"02:00:00:00:aa:01\",\n]", 8, "sources = \"02:00:00:00:aa:01\": listed twice".into()),
        ("[\"52:54:00:00:00:01\"]", 6, "sources = \"52:54:00:00:00:01\": is one of the guest's own MACs".into()),
        ("[\"01:00:5e:00:00:01\"]", 6, "sources = \"01:00:5e:00:00:01\": a multicast address cannot be a source".into()),
        ("\"ff:ff:ff:ff:ff:ff\"", 6, "sources = \"ff:ff:ff:ff:ff:ff\": the broadcast address cannot be a source".into()),
        ("[\"00:00:00:00:00:00\"]", 6, "sources = \"00:00:00:00:00:00\": the all-zero address cannot be a source".into()),
        ("[1]", 6, "sources = 1: expected a MAC address string".into()),
        (&many, 6, format!("sources = {many}: lists 257 addresses; at most 256 per guest")),
    ];
    for (list, line, want) in cases {
        let text = guest("vm1", 1, &format!("mode = \"source\"\nsources = {list}\n"));
        assert_eq!(parse(&text).expect_err("refused"), format!("guests.toml:{line}: guest \"vm1\": {want}"), "for:\n{text}");
    }
    // Not in another mode.
    assert_eq!(
        parse(&guest("vm1", 1, "sources = [\"02:00:00:00:aa:01\"]\n")).expect_err("vepa"),
        "guests.toml:5: guest \"vm1\": sources = [\"02:00:00:00:aa:01\"]: only a guest in mode \"source\" has sources (this one is in mode \"vepa\")"
    );
}

fn running(text: &str) -> Vec<GuestConfig> {
    parse(text).expect("valid").guests
}

fn add(text: &str, running: &[GuestConfig]) -> Result<GuestConfig, String> {
    parse_addition_with(text, Path::new("guest-add"), running, &FakeIds).map_err(|e| e.to_string())
}

fn set(current: &GuestConfig, changes: &[(&str, Option<toml::Value>)], others: &[GuestConfig]) -> Result<GuestConfig, String> {
    let changes: Vec<(String, Option<toml::Value>)> = changes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    apply_changes_with(current, &changes, others, Path::new("guest-set"), &FakeIds).map_err(|e| e.to_string())
}

#[test]
fn at_run_time_a_passthru_guest_stays_alone() {
    let pt = running(&guest("pt", 1, "mode = \"passthru\"\n"));
    assert_eq!(
        add(&guest("vm2", 2, ""), &pt).expect_err("refused"),
        "guest-add:1: guest \"vm2\": running guest \"pt\" is in mode \"passthru\" and owns the uplink alone: no other guest may be configured beside it"
    );
    let vm1 = running(&guest("vm1", 1, ""));
    assert_eq!(
        add(&guest("pt", 2, "mode = \"passthru\"\n"), &vm1).expect_err("refused"),
        "guest-add:5: guest \"pt\": mode = \"passthru\": a passthru guest owns the uplink alone, but running guest \"vm1\" is configured too"
    );
    // Alone, it may be added, and the only guest may become one.
    assert_eq!(add(&guest("pt", 2, "mode = \"passthru\"\n"), &[]).expect("alone").mode, Mode::Passthru);
    let changed = set(&vm1[0], &[("mode", Some(toml::Value::String("passthru".into())))], &[]).expect("alone");
    assert_eq!(changed.mode, Mode::Passthru);
}

#[test]
fn sources_change_live_and_go_with_the_mode() {
    let vm1 = running(&guest("vm1", 1, ""))[0].clone();
    let list = toml::Value::Array(vec![toml::Value::String("02:00:00:00:aa:01".into())]);
    let mon = set(&vm1, &[("mode", Some(toml::Value::String("source".into()))), ("sources", Some(list))], &[]).expect("valid");
    assert_eq!(mon.sources, [mac("02:00:00:00:aa:01")]);
    assert_eq!(vm1.changed_keys(&mon), ["mode", "sources"]);
    assert!(vm1.changed_keys(&mon).iter().all(|k| LIVE_KEYS.contains(k)), "no reconnect needed");
    // Leaving mode source drops the list, unless the request keeps it (then refused).
    let back = set(&mon, &[("mode", Some(toml::Value::String("vepa".into())))], &[]).expect("valid");
    assert!(back.sources.is_empty());
    assert_eq!(
        set(&vm1, &[("sources", Some(toml::Value::String("02:00:00:00:aa:01".into())))], &[]).expect_err("vepa"),
        "guest-set: guest \"vm1\": sources = \"02:00:00:00:aa:01\": only a guest in mode \"source\" has sources (this one is in mode \"vepa\")"
    );
    // The dump writes the list (always as one), and reads back to the same guest.
    let text = dump(std::slice::from_ref(&mon));
    assert!(text.contains("sources = [\"02:00:00:00:aa:01\"]\n"), "{text}");
    let again = parse(&text).expect("dump reads back");
    assert!(again.guests[0].changed_keys(&mon).is_empty());
}
