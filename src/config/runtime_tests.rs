//! `dump`, and the validation of changes to the running switch, each message pinned.

use super::runtime::{apply_changes_with, parse_addition_with};
use super::tests::FakeIds;
use super::*;

fn parse(text: &str) -> Config {
    parse_with(text, Path::new("guests.toml"), &FakeIds)
        .unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
}

/// Two running guests: vm1 (one MAC) and vm2 (two MACs).
fn running() -> Vec<GuestConfig> {
    parse(
        "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/vm1.sock\"\n\
         [[guest]]\nname = \"vm2\"\nmac = [\"52:54:00:00:00:02\", \"52:54:00:00:00:12\"]\nsocket = \"/run/vm2.sock\"\n",
    )
    .guests
}

fn mac(text: &str) -> MacAddr {
    text.parse().expect("valid MAC")
}

/// A config that uses every key, and every form of it worth round-tripping.
const EVERY_KEY: &str = r#"# comment
[[guest]]
name = "vm1"
mac = "52:54:00:00:00:01"
socket = "/run/dpdk-macvtap/vm1.sock"

[[guest]]
name = "vm.2"
mac = ["52:54:00:00:00:02", "52:54:00:00:00:12", "52:54:00:00:00:22"]
socket = '/run/odd "dir"\ with\backslash/vm2.sock'
queues = 8
mode = "private"
mtu = 9000
vhost = "client"
owner = "qemu"
group = "kvm"
socket_mode = "600"
lcore = 3

[[guest]]
name = "vm3"
mac = "02:00:00:00:00:03"
socket = "/run/vm3.sock"
mode = "bridge"
mtu = 68
owner = 0
group = "1000"
socket_mode = "0007"
lcore = 0
"#;

fn without_lines(guests: &[GuestConfig]) -> Vec<GuestConfig> {
    guests
        .iter()
        .cloned()
        .map(|mut g| {
            g.line = 0;
            g
        })
        .collect()
}

#[test]
fn dump_reads_back_as_the_same_guests() {
    let cfg = parse(EVERY_KEY);
    let text = dump(&cfg.guests);
    // parse_str, not the test lookup: the dump holds numeric ids only.
    let back = parse_str(&text, Path::new("dump.toml"))
        .unwrap_or_else(|e| panic!("dump must be a valid guests file: {e}\n{text}"));
    assert_eq!(without_lines(&back.guests), without_lines(&cfg.guests));
    assert!(cfg
        .guests
        .iter()
        .zip(&back.guests)
        .all(|(a, b)| a.changed_keys(b).is_empty()));
    // And a dump of the dump is the same text.
    assert_eq!(dump(&back.guests), text);
}

#[test]
fn dump_text_gives_every_key() {
    let cfg = parse(EVERY_KEY);
    assert_eq!(
        dump(&cfg.guests),
        r#"# dpdk-macvtap guests file: the running guests (config-dump).

[[guest]]
name = "vm1"
mac = "52:54:00:00:00:01"
socket = "/run/dpdk-macvtap/vm1.sock"
queues = 1
mode = "vepa"
mtu = 1500
vhost = "server"
socket_mode = "0660"

[[guest]]
name = "vm.2"
mac = ["52:54:00:00:00:02", "52:54:00:00:00:12", "52:54:00:00:00:22"]
socket = "/run/odd \"dir\"\\ with\\backslash/vm2.sock"
queues = 8
mode = "private"
mtu = 9000
vhost = "client"
owner = 107
group = 36
socket_mode = "0600"
lcore = 3

[[guest]]
name = "vm3"
mac = "02:00:00:00:00:03"
socket = "/run/vm3.sock"
queues = 1
mode = "bridge"
mtu = 68
vhost = "server"
owner = 0
group = 1000
socket_mode = "0007"
lcore = 0
"#
    );
}

#[test]
fn dump_escapes_control_characters_on_one_line() {
    let mut g = running().remove(0);
    g.socket = PathBuf::from("/run/a\nb\tc\u{1}\u{7f}é.sock");
    let text = dump(std::slice::from_ref(&g));
    assert!(
        text.contains("socket = \"/run/a\\nb\\tc\\u0001\\u007Fé.sock\"\n"),
        "{text}"
    );
    let back = parse_str(&text, Path::new("dump.toml")).expect("valid");
    assert_eq!(back.guests[0].socket, g.socket);
}

#[test]
fn dump_of_no_guests_says_so() {
    assert_eq!(
        dump(&[]),
        "# dpdk-macvtap guests file: the running guests (config-dump).\n\
         # No guest is running; a guests file needs at least one [[guest]].\n"
    );
}

// ---- parse_addition ----

fn add(text: &str, running: &[GuestConfig]) -> Result<GuestConfig, ConfigError> {
    parse_addition_with(text, Path::new("guest-add"), running, &FakeIds)
}

fn add_err(text: &str, running: &[GuestConfig]) -> String {
    match add(text, running) {
        Ok(g) => panic!("expected an error for:\n{text}\ngot {g:?}"),
        Err(e) => e.to_string(),
    }
}

const VM3: &str =
    "[[guest]]\nname = \"vm3\"\nmac = \"52:54:00:00:00:03\"\nsocket = \"/run/vm3.sock\"\n";

#[test]
fn addition_is_validated_like_a_file_entry() {
    let g = add(
        &format!("{VM3}mtu = 9000\nowner = \"qemu\"\nlcore = 2\n"),
        &running(),
    )
    .expect("valid addition");
    assert_eq!(g.name, "vm3");
    assert_eq!(g.macs, [mac("52:54:00:00:00:03")]);
    assert_eq!(
        (g.mtu, g.owner, g.lcore, g.line),
        (9000, Some(107), Some(2), 1)
    );
    // Comments and blank lines around the table are fine; line is the header's in the text.
    let g = add(&format!("# a comment\n\n{VM3}"), &running()).expect("valid addition");
    assert_eq!(g.line, 3);
    // With nothing running.
    add(VM3, &[]).expect("valid addition");
}

#[test]
fn addition_rejections() {
    let vm3 = |extra: &str| format!("{VM3}{extra}\n");
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "guest-add: no [[guest]] table; exactly one is expected"),
        ("# only a comment\n".into(), "guest-add: no [[guest]] table; exactly one is expected"),
        (
            format!("{VM3}\n[[guest]]\nname = \"vm4\"\n"),
            "guest-add:6: guest \"vm4\": a second [[guest]] table; exactly one is expected",
        ),
        (
            format!("{VM3}[[guest]]\n[[guest]]\n"),
            "guest-add:5: a second [[guest]] table; exactly one is expected",
        ),
        ("name = \"vm3\"\n".into(), "guest-add:1: unknown field `name`, expected `guest`"),
        ("[[guest]\n".into(), "guest-add:1: invalid table header; expected `.`, `]]`"),
        // the file's own checks, with lines of the text
        (
            vm3("mtu = 10"),
            "guest-add:5: guest \"vm3\": mtu = 10: must be between 68 and 9000",
        ),
        (
            vm3("colour = \"red\""),
            "guest-add:5: guest \"vm3\": colour = \"red\": unknown key (accepted: name, mac, socket, queues, mode, sources, mtu, vhost, owner, group, socket_mode, lcore, vlan)",
        ),
        (
            "[[guest]]\nname = \"vm3\"\nsocket = \"/run/vm3.sock\"\n".into(),
            "guest-add:1: guest \"vm3\": missing required key \"mac\"",
        ),
        // duplicates against the running guests
        (
            VM3.replace("vm3\"", "vm1\""),
            "guest-add:2: guest \"vm1\": name = \"vm1\": name already used by a running guest",
        ),
        (
            VM3.replace("52:54:00:00:00:03", "52:54:00:00:00:01"),
            "guest-add:3: guest \"vm3\": mac = \"52:54:00:00:00:01\": already used by running guest \"vm1\"",
        ),
        (
            VM3.replace("\"52:54:00:00:00:03\"", "[\"52:54:00:00:00:03\", \"52:54:00:00:00:12\"]"),
            "guest-add:3: guest \"vm3\": mac = \"52:54:00:00:00:12\": already used by running guest \"vm2\"",
        ),
        (
            VM3.replace("/run/vm3.sock", "/run/vm2.sock"),
            "guest-add:4: guest \"vm3\": socket = \"/run/vm2.sock\": already used by running guest \"vm2\"",
        ),
        // and against itself, as in a file
        (
            VM3.replace("\"52:54:00:00:00:03\"", "[\"52:54:00:00:00:03\", \"52:54:00:00:00:03\"]"),
            "guest-add:3: guest \"vm3\": mac = \"52:54:00:00:00:03\": already used by guest \"vm3\" (line 1)",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(add_err(&text, &running()), want, "for text:\n{text}");
    }
}

#[test]
fn addition_is_refused_when_the_switch_is_full() {
    let mut one = running().remove(0);
    one.vhost = VhostRole::Client;
    let full: Vec<GuestConfig> = (0..MAX_GUESTS).map(|_| one.clone()).collect();
    assert_eq!(
        add_err(VM3, &full),
        "guest-add:1: guest \"vm3\": 1024 guests are already running: DPDK's vhost library serves at most 1024 vhost-user sockets"
    );
    // Fewer, but the vhost library's descriptors are used up: vm3, served, takes two.
    assert_eq!(
        add_err(VM3, &full[2..]),
        "guest-add:1: guest \"vm3\": 1023 guests need 1024 of the 1023 descriptors DPDK's vhost library watches \
         (a guest the switch serves takes 2, its socket and its connection; one it connects to (vhost = \"client\") takes 1)"
    );
    // Room (the copies of vm1 are not distinct, which only vm1's keys see).
    add(VM3, &full[3..]).expect("room for one more");
}

// ---- apply_settings / apply_changes ----

/// What `apply_changes` takes.
type Changes = Vec<(String, Option<toml::Value>)>;

fn set(pairs: &[(&str, toml::Value)]) -> Changes {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some(v.clone())))
        .collect()
}

/// Applies `changes` to running vm1, with vm2 as the other running guest.
fn change(changes: &[(String, Option<toml::Value>)]) -> Result<GuestConfig, ConfigError> {
    let guests = running();
    apply_changes_with(
        &guests[0],
        changes,
        &guests[1..],
        Path::new("guest-set"),
        &FakeIds,
    )
}

fn change_err(changes: &[(String, Option<toml::Value>)]) -> String {
    match change(changes) {
        Ok(g) => panic!("expected an error for {changes:?}, got {g:?}"),
        Err(e) => e.to_string(),
    }
}

fn int(n: i64) -> toml::Value {
    toml::Value::Integer(n)
}

fn s(text: &str) -> toml::Value {
    toml::Value::String(text.to_owned())
}

#[test]
fn settings_replace_keys_and_keep_the_rest() {
    let guests = running();
    let mut vm1 = guests[0].clone();
    vm1.line = 42;
    let set = vec![
        ("mtu".to_owned(), int(9000)),
        ("mode".to_owned(), s("bridge")),
        (
            "mac".to_owned(),
            toml::Value::Array(vec![s("52:54:00:00:00:01"), s("52:54:00:00:00:31")]),
        ),
        ("lcore".to_owned(), int(5)),
    ];
    let new = apply_settings(&vm1, &set, &guests[1..], Path::new("guest-set")).expect("valid");
    assert_eq!(new.line, 42);
    assert_eq!(
        (new.mtu, new.mode, new.lcore),
        (9000, Mode::Bridge, Some(5))
    );
    assert_eq!(
        new.macs,
        [mac("52:54:00:00:00:01"), mac("52:54:00:00:00:31")]
    );
    assert_eq!(new.changed_keys(&vm1), ["mac", "mode", "mtu", "lcore"]);
    // Nothing given: the same guest.
    let same = apply_settings(&vm1, &[], &guests[1..], Path::new("guest-set")).expect("valid");
    assert_eq!(same, vm1);
}

#[test]
fn every_key_may_be_set_and_names_resolve() {
    let new = change(&set(&[
        ("name", s("vm9")),
        ("socket", s("/run/with \"quote\".sock")),
        ("queues", int(4)),
        ("vhost", s("client")),
        ("owner", s("qemu")),
        ("group", s("36")),
        ("socket_mode", s("0600")),
    ]))
    .expect("valid");
    assert_eq!(new.name, "vm9");
    assert_eq!(new.socket, PathBuf::from("/run/with \"quote\".sock"));
    assert_eq!(
        (
            new.queues,
            new.vhost.clone(),
            new.owner,
            new.group,
            new.socket_mode
        ),
        (4, VhostRole::Client, Some(107), Some(36), 0o600)
    );
    assert_eq!(
        new.changed_keys(&running()[0]),
        [
            "name",
            "socket",
            "queues",
            "vhost",
            "owner",
            "group",
            "socket_mode"
        ]
    );
}

#[test]
fn unset_restores_the_default() {
    let pinned = change(&set(&[
        ("lcore", int(2)),
        ("owner", int(5)),
        ("mtu", int(9000)),
    ]))
    .expect("valid");
    let others = &running()[1..];
    let unset = |key: &str| (key.to_owned(), None);
    let back = apply_changes_with(
        &pinned,
        &[
            unset("lcore"),
            unset("owner"),
            unset("mtu"),
            unset("not-there"),
        ],
        others,
        Path::new("guest-set"),
        &FakeIds,
    )
    .expect("valid");
    assert_eq!((back.lcore, back.owner, back.mtu), (None, None, 1500));
}

#[test]
fn vlan_is_live_and_unset_means_untagged() {
    let tagged = change(&set(&[("vlan", int(10))])).expect("valid");
    assert_eq!(tagged.vlan, 10);
    assert_eq!(tagged.changed_keys(&running()[0]), ["vlan"]);
    assert!(LIVE_KEYS.contains(&"vlan"), "moving a guest between VLANs is one publication");
    let back = apply_changes_with(&tagged, &[("vlan".to_owned(), None)], &running()[1..], Path::new("guest-set"), &FakeIds).expect("valid");
    assert_eq!(back.vlan, 0);
}

#[test]
fn json_values_convert_to_changes() {
    // How the server turns a guest-set request's "set" object into changes.
    let json = serde_json::json!({"mtu": 9000, "mode": "private", "mac": ["52:54:00:00:00:41"], "lcore": null});
    let changes: Changes = json
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            let v = serde_json::from_value::<Option<toml::Value>>(v.clone()).expect("converts");
            (k.clone(), v)
        })
        .collect();
    let new = change(&changes).expect("valid");
    assert_eq!((new.mtu, new.mode, new.lcore), (9000, Mode::Private, None));
    assert_eq!(new.macs, [mac("52:54:00:00:00:41")]);
}

#[test]
fn settings_rejections() {
    let mut table = toml::Table::new();
    table.insert("a".into(), int(1));
    let date: toml::Value = toml::Value::Datetime("1979-05-27".parse().expect("date"));
    let cases: Vec<(Changes, &str)> = vec![
        (
            set(&[("mtu", int(10))]),
            "guest-set: guest \"vm1\": mtu = 10: must be between 68 and 9000",
        ),
        (
            set(&[("mtu", toml::Value::Float(9000.0))]),
            "guest-set: guest \"vm1\": mtu = 9000.0: expected an integer",
        ),
        (
            set(&[("mode", s("passthru"))]),
            "guest-set: guest \"vm1\": mode = \"passthru\": a passthru guest owns the uplink alone, but running guest \"vm2\" is configured too",
        ),
        (
            set(&[("lcore", int(128))]),
            "guest-set: guest \"vm1\": lcore = 128: must be between 0 and 127",
        ),
        (
            set(&[("vlan", int(4095))]),
            "guest-set: guest \"vm1\": vlan = 4095: must be between 1 and 4094",
        ),
        (
            set(&[("queues", toml::Value::Table(table))]),
            "guest-set: guest \"vm1\": queues = { a = 1 }: expected an integer",
        ),
        (
            set(&[("mtu", toml::Value::Array(vec![date]))]),
            "guest-set: guest \"vm1\": mtu = [1979-05-27]: expected an integer",
        ),
        (
            set(&[("socket_mode", int(660))]),
            "guest-set: guest \"vm1\": socket_mode = 660: must be a quoted octal string such as \"0660\"",
        ),
        (
            set(&[("owner", s("nobody-here"))]),
            "guest-set: guest \"vm1\": owner = \"nobody-here\": no such user in /etc/passwd (accounts from NSS/LDAP need a numeric uid)",
        ),
        (
            set(&[("name", s("vm 1"))]),
            "guest-set: guest \"vm 1\": name = \"vm 1\": may only contain A-Z a-z 0-9 _ . - (found ' ')",
        ),
        // unknown keys, however spelt
        (
            set(&[("colour", s("red"))]),
            "guest-set: guest \"vm1\": colour = \"red\": unknown key (accepted: name, mac, socket, queues, mode, sources, mtu, vhost, owner, group, socket_mode, lcore, vlan)",
        ),
        (
            set(&[("my key\n\"x\"", int(1))]),
            "guest-set: guest \"vm1\": my key\n\"x\" = 1: unknown key (accepted: name, mac, socket, queues, mode, sources, mtu, vhost, owner, group, socket_mode, lcore, vlan)",
        ),
        // required keys cannot be unset
        (
            vec![("mac".to_owned(), None)],
            "guest-set: guest \"vm1\": missing required key \"mac\"",
        ),
        // duplicates against the other running guests, and within the guest
        (
            set(&[("name", s("vm2"))]),
            "guest-set: guest \"vm2\": name = \"vm2\": name already used by a running guest",
        ),
        (
            set(&[("mac", s("52:54:00:00:00:12"))]),
            "guest-set: guest \"vm1\": mac = \"52:54:00:00:00:12\": already used by running guest \"vm2\"",
        ),
        (
            set(&[("socket", s("/run/vm2.sock"))]),
            "guest-set: guest \"vm1\": socket = \"/run/vm2.sock\": already used by running guest \"vm2\"",
        ),
        (
            set(&[(
                "mac",
                toml::Value::Array(vec![s("52:54:00:00:00:01"), s("52:54:00:00:00:01")]),
            )]),
            "guest-set: guest \"vm1\": mac = \"52:54:00:00:00:01\": already used by guest \"vm1\"",
        ),
    ];
    for (changes, want) in cases {
        assert_eq!(change_err(&changes), want, "for {changes:?}");
        let e = change(&changes).expect_err("rejected");
        assert_eq!(
            e.problem().map(|p| p.line),
            Some(None),
            "no line for {changes:?}"
        );
    }
}

#[test]
fn a_guest_keeps_its_own_mac_and_socket() {
    // Claims come from the others only: re-stating vm1's own values is not a duplicate.
    let new = change(&set(&[
        ("mac", s("52:54:00:00:00:01")),
        ("socket", s("/run/vm1.sock")),
        ("name", s("vm1")),
    ]))
    .expect("valid");
    assert!(new.changed_keys(&running()[0]).is_empty());
}

// ---- changed_keys, LIVE_KEYS, diff ----

#[test]
fn changed_keys_names_each_differing_key() {
    let a = running().remove(0);
    let mut b = a.clone();
    b.line = 99;
    assert!(a.changed_keys(&b).is_empty());
    type Edit = fn(&mut GuestConfig);
    let edits: Vec<(&str, Edit)> = vec![
        ("name", |g| g.name.push('x')),
        ("mac", |g| g.macs.push(MacAddr::new([2, 0, 0, 0, 0, 9]))),
        ("socket", |g| g.socket = PathBuf::from("/run/other.sock")),
        ("queues", |g| g.queues = 2),
        ("mode", |g| g.mode = Mode::Private),
        ("sources", |g| g.sources.push(MacAddr::new([2, 0, 0, 0, 0, 0xa]))),
        ("mtu", |g| g.mtu = 9000),
        ("vhost", |g| g.vhost = VhostRole::Client),
        ("owner", |g| g.owner = Some(0)),
        ("group", |g| g.group = Some(0)),
        ("socket_mode", |g| g.socket_mode = 0o600),
        ("lcore", |g| g.lcore = Some(1)),
        ("vlan", |g| g.vlan = 10),
    ];
    let mut all = a.clone();
    for (key, edit) in &edits {
        let mut b = a.clone();
        edit(&mut b);
        assert_eq!(a.changed_keys(&b), [*key]);
        edit(&mut all);
    }
    let every: Vec<&str> = edits.iter().map(|(k, _)| *k).collect();
    assert_eq!(a.changed_keys(&all), every);
    // The same names, in the same order, as the file's keys.
    assert_eq!(every, guest::KEYS);
    assert!(LIVE_KEYS.iter().all(|k| guest::KEYS.contains(k)));
    // MAC order matters: the first is the primary.
    let mut c = running().remove(1);
    let d = c.clone();
    c.macs.reverse();
    assert_eq!(c.changed_keys(&d), ["mac"]);
}

fn names(cfg: &Config, at: &[usize]) -> Vec<String> {
    at.iter().map(|&i| cfg.guests[i].name.clone()).collect()
}

#[test]
fn diff_sorts_guests_by_what_changed() {
    let old = parse(
        "[[guest]]\nname = \"same\"\nmac = \"02:00:00:00:00:01\"\nsocket = \"/run/same.sock\"\n\
         [[guest]]\nname = \"gone\"\nmac = \"02:00:00:00:00:02\"\nsocket = \"/run/gone.sock\"\n\
         [[guest]]\nname = \"live\"\nmac = \"02:00:00:00:00:03\"\nsocket = \"/run/live.sock\"\n\
         [[guest]]\nname = \"redo\"\nmac = \"02:00:00:00:00:04\"\nsocket = \"/run/redo.sock\"\n",
    );
    // Reordered, "gone" removed, its socket and MAC taken by the new "new", "live" changed
    // in live keys only, "redo" changed in queues (and mtu).
    let new = parse(
        "[[guest]]\nname = \"new\"\nmac = \"02:00:00:00:00:02\"\nsocket = \"/run/gone.sock\"\n\
         [[guest]]\nname = \"redo\"\nmac = \"02:00:00:00:00:04\"\nsocket = \"/run/redo.sock\"\nqueues = 2\nmtu = 9000\n\
         [[guest]]\nname = \"live\"\nmac = \"02:00:00:00:00:13\"\nsocket = \"/run/live.sock\"\nmode = \"bridge\"\nmtu = 9000\nlcore = 1\n\
         [[guest]]\nname = \"same\"\nmac = \"02:00:00:00:00:01\"\nsocket = \"/run/same.sock\"\n",
    );
    let d = diff(&old.guests, &new);
    assert_eq!(
        d,
        ConfigDiff {
            added: vec![0],
            removed: vec!["gone".into()],
            changed: vec![("live".into(), 2)],
            recreated: vec![("redo".into(), 1)],
        }
    );
    assert_eq!(names(&new, &d.added), ["new"]);
    assert!(!d.is_empty());
}

#[test]
fn diff_of_the_running_file_is_empty() {
    let cfg = parse(EVERY_KEY);
    let d = diff(&cfg.guests, &cfg);
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(d, ConfigDiff::default());
    // The same guests at other lines and in another order are the same guests.
    let mut shuffled = cfg.clone();
    shuffled.guests.reverse();
    for g in &mut shuffled.guests {
        g.line += 100;
    }
    assert!(diff(&cfg.guests, &shuffled).is_empty());
    // The dump, read back, is the running state.
    let back = parse(&dump(&cfg.guests));
    assert!(diff(&cfg.guests, &back).is_empty());
}

#[test]
fn diff_of_swaps() {
    let old = running();
    // vm1 and vm2 swap their MACs: both change live, and the applier must update the MAC
    // table as a whole.
    let macs_swapped = parse(
        "[[guest]]\nname = \"vm1\"\nmac = [\"52:54:00:00:00:02\", \"52:54:00:00:00:12\"]\nsocket = \"/run/vm1.sock\"\n\
         [[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/vm2.sock\"\n",
    );
    let d = diff(&old, &macs_swapped);
    assert_eq!(d.changed, [("vm1".to_owned(), 0), ("vm2".to_owned(), 1)]);
    assert!(d.added.is_empty() && d.removed.is_empty() && d.recreated.is_empty());
    // Names swapped (each name now has the other's MACs and socket): both recreated.
    let names_swapped = parse(
        "[[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/vm1.sock\"\n\
         [[guest]]\nname = \"vm1\"\nmac = [\"52:54:00:00:00:02\", \"52:54:00:00:00:12\"]\nsocket = \"/run/vm2.sock\"\n",
    );
    let d = diff(&old, &names_swapped);
    assert_eq!(d.recreated, [("vm2".to_owned(), 0), ("vm1".to_owned(), 1)]);
    assert!(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
    // A rename is a removal and an addition.
    let renamed = parse(
        "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/vm1.sock\"\n\
         [[guest]]\nname = \"vm2b\"\nmac = [\"52:54:00:00:00:02\", \"52:54:00:00:00:12\"]\nsocket = \"/run/vm2.sock\"\n",
    );
    let d = diff(&old, &renamed);
    assert_eq!((d.added, d.removed), (vec![1], vec!["vm2".to_owned()]));
}
