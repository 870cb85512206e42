//! Every configuration error, each pinned to its exact message.

use super::*;

/// Accounts for tests, independent of the host (qemu = uid 107, kvm = gid 36).
pub(super) struct FakeIds;

impl ids::IdLookup for FakeIds {
    fn uid(&self, name: &str) -> Result<u32, String> {
        match name {
            "qemu" => Ok(107),
            _ => Err(
                "no such user in /etc/passwd (accounts from NSS/LDAP need a numeric uid)".into(),
            ),
        }
    }

    fn gid(&self, name: &str) -> Result<u32, String> {
        match name {
            "kvm" => Ok(36),
            _ => Err(
                "no such group in /etc/group (accounts from NSS/LDAP need a numeric gid)".into(),
            ),
        }
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    parse_with(text, Path::new("guests.toml"), &FakeIds)
}

fn ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|e| panic!("expected a valid config, got: {e}"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const VM1: &str = "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/dpdk-macvtap/vm1.sock\"\n";

/// The first guest is always `VM1` (lines 1-4); `extra` is appended to it as more keys.
fn vm1_with(extra: &str) -> String {
    format!("{VM1}{extra}\n")
}

#[test]
fn minimal_guest_gets_all_defaults() {
    let cfg = ok(VM1);
    assert_eq!(cfg.path, PathBuf::from("guests.toml"));
    assert_eq!(cfg.guests.len(), 1);
    let g = &cfg.guests[0];
    assert_eq!(g.name, "vm1");
    assert_eq!(
        g.macs,
        ["52:54:00:00:00:01".parse::<MacAddr>().expect("mac")]
    );
    assert_eq!(g.primary_mac(), g.macs[0]);
    assert_eq!(g.socket, PathBuf::from("/run/dpdk-macvtap/vm1.sock"));
    assert_eq!(g.queues, 1);
    assert_eq!(g.mode, Mode::Vepa);
    assert_eq!(g.mtu, 1500);
    assert_eq!(g.max_frame_len(), 1518);
    assert_eq!(g.vhost, VhostRole::Server);
    assert_eq!(g.owner, None);
    assert_eq!(g.group, None);
    assert_eq!(g.socket_mode, 0o660);
    assert_eq!(g.line, 1);
    assert_eq!(cfg.max_mtu(), 1500);
}

#[test]
fn every_optional_key() {
    let cfg = ok(&vm1_with(
        "queues = 4\nmode = \"private\"\nmtu = 9000\nvhost = \"client\"\nowner = \"qemu\"\ngroup = \"kvm\"\nsocket_mode = \"0600\"\n\
         [[guest]]\nname = \"vm2\"\nmac = [\"52:54:00:00:00:02\", \"52:54:00:00:00:12\"]\n\
         socket = \"/run/vm2.sock\"\nowner = 0\ngroup = \"1000\"\nsocket_mode = \"640\"",
    ));
    let (a, b) = (&cfg.guests[0], &cfg.guests[1]);
    assert_eq!((a.queues, a.mode, a.mtu), (4, Mode::Private, 9000));
    assert_eq!(
        (a.vhost.clone(), a.owner, a.group, a.socket_mode),
        (VhostRole::Client, Some(107), Some(36), 0o600)
    );
    assert_eq!(a.max_frame_len(), 9018);
    assert_eq!(b.line, 12);
    assert_eq!(b.macs.len(), 2);
    assert_eq!(b.primary_mac().to_string(), "52:54:00:00:00:02");
    assert_eq!(
        (b.owner, b.group, b.socket_mode),
        (Some(0), Some(1000), 0o640)
    );
    assert_eq!(cfg.max_mtu(), 9000);
}

#[test]
fn demo_config_is_valid() {
    let cfg = ok(DEMO_GUESTS_TOML);
    let names: Vec<&str> = cfg.guests.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["vm1", "vm2"]);
    assert_eq!(cfg.guests[1].primary_mac().to_string(), "52:54:00:00:00:02");
    assert_eq!(
        cfg.guests[1].socket,
        PathBuf::from("/tmp/dpdk-macvtap-demo/vm2.sock")
    );
}

#[test]
fn example_file_is_valid() {
    let text = include_str!("../../dpdk-config/guests.example.toml");
    let cfg = ok(text);
    assert_eq!(cfg.guests.len(), 2);
}

#[test]
fn load_names_the_file_it_cannot_read() {
    let e = load(Path::new("/nonexistent/guests.toml")).expect_err("missing file");
    assert!(matches!(e, ConfigError::Io { .. }));
    assert_eq!(
        e.to_string(),
        "/nonexistent/guests.toml: cannot read: No such file or directory (os error 2)"
    );
}

#[test]
fn error_exposes_its_parts() {
    let e = parse(&vm1_with("mtu = 1")).expect_err("bad mtu");
    let p = e.problem().expect("content error");
    assert_eq!(
        (p.line, p.guest.as_deref(), p.key.as_deref()),
        (Some(5), Some("vm1"), Some("mtu"))
    );
}

/// (file text, exact message) for every rejection.
#[test]
fn rejections() {
    let vm2 = |body: &str| vm1_with(&format!("\n[[guest]]\nname = \"vm2\"\n{body}"));
    let cases: Vec<(String, &str)> = vec![
        // syntax and shape
        (
            vm1_with("queues = "),
            "guests.toml:5: invalid string; expected `\"`, `'`",
        ),
        ("[[guest]]\nname = \"a\"\n[guests]\nx = 1\n".into(), "guests.toml:3: unknown field `guests`, expected `guest`"),
        ("[guest]\nname = \"vm1\"\n".into(), "guests.toml:1: invalid type: map, expected a sequence"),
        (String::new(), "guests.toml: no [[guest]] entries"),
        ("# nothing here\n".into(), "guests.toml: no [[guest]] entries"),
        // keys
        (
            vm1_with("colour = \"red\""),
            "guests.toml:5: guest \"vm1\": colour = \"red\": unknown key (accepted: name, mac, socket, queues, mode, sources, mtu, vhost, owner, group, socket_mode, lcore, vlan)",
        ),
        (
            "[[guest]]\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/a.sock\"\n".into(),
            "guests.toml:1: missing required key \"name\"",
        ),
        ("[[guest]]\nname = \"vm1\"\nsocket = \"/run/a.sock\"\n".into(), "guests.toml:1: guest \"vm1\": missing required key \"mac\""),
        ("[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\n".into(), "guests.toml:1: guest \"vm1\": missing required key \"socket\""),
        // name
        (VM1.replace("\"vm1\"", "\"\""), "guests.toml:2: guest \"\": name = \"\": must not be empty"),
        (
            VM1.replace("\"vm1\"", "\"vm 1\""),
            "guests.toml:2: guest \"vm 1\": name = \"vm 1\": may only contain A-Z a-z 0-9 _ . - (found ' ')",
        ),
        (
            VM1.replace("\"vm1\"", &format!("\"{}\"", "v".repeat(33))),
            "guests.toml:2: guest \"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\": name = \"vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv\": is 33 characters long; the limit is 32",
        ),
        (VM1.replace("\"vm1\"", "7"), "guests.toml:2: name = 7: expected a string"),
        (
            format!("{VM1}[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/run/b.sock\"\n"),
            "guests.toml:6: guest \"vm1\": name = \"vm1\": name already used by the guest at line 1",
        ),
        // mac
        (
            VM1.replace("52:54:00:00:00:01", "52:54:00:00:01"),
            "guests.toml:3: guest \"vm1\": mac = \"52:54:00:00:01\": expected six octets separated by ':' or '-', found 5 group(s)",
        ),
        (
            VM1.replace("52:54:00:00:00:01", "01:00:5e:00:00:01"),
            "guests.toml:3: guest \"vm1\": mac = \"01:00:5e:00:00:01\": a multicast address cannot be a guest's MAC",
        ),
        (
            VM1.replace("52:54:00:00:00:01", "ff:ff:ff:ff:ff:ff"),
            "guests.toml:3: guest \"vm1\": mac = \"ff:ff:ff:ff:ff:ff\": the broadcast address cannot be a guest's MAC",
        ),
        (
            VM1.replace("52:54:00:00:00:01", "00:00:00:00:00:00"),
            "guests.toml:3: guest \"vm1\": mac = \"00:00:00:00:00:00\": the all-zero address cannot be a guest's MAC",
        ),
        (
            VM1.replace("\"52:54:00:00:00:01\"", "[]"),
            "guests.toml:3: guest \"vm1\": mac = []: must list at least one MAC address",
        ),
        (VM1.replace("\"52:54:00:00:00:01\"", "5"), "guests.toml:3: guest \"vm1\": mac = 5: expected a MAC address string"),
        (
            VM1.replace("\"52:54:00:00:00:01\"", "[\n  \"52:54:00:00:00:01\",\n  \"52:54:00:00:00:01\",\n]"),
            "guests.toml:5: guest \"vm1\": mac = \"52:54:00:00:00:01\": already used by guest \"vm1\" (line 1)",
        ),
        (
            vm2("mac = \"52:54:00:00:00:01\"\nsocket = \"/run/b.sock\""),
            "guests.toml:8: guest \"vm2\": mac = \"52:54:00:00:00:01\": already used by guest \"vm1\" (line 1)",
        ),
        // socket
        (
            vm2("mac = \"52:54:00:00:00:02\"\nsocket = \"/run/dpdk-macvtap/vm1.sock\""),
            "guests.toml:9: guest \"vm2\": socket = \"/run/dpdk-macvtap/vm1.sock\": already used by guest \"vm1\" (line 1)",
        ),
        (
            VM1.replace("/run/dpdk-macvtap/vm1.sock", "vm1.sock"),
            "guests.toml:4: guest \"vm1\": socket = \"vm1.sock\": must be an absolute path",
        ),
        // numbers
        (vm1_with("queues = 0"), "guests.toml:5: guest \"vm1\": queues = 0: must be between 1 and 8"),
        (vm1_with("queues = 9"), "guests.toml:5: guest \"vm1\": queues = 9: must be between 1 and 8"),
        (vm1_with("queues = -1"), "guests.toml:5: guest \"vm1\": queues = -1: must be between 1 and 8"),
        (vm1_with("queues = \"2\""), "guests.toml:5: guest \"vm1\": queues = \"2\": expected an integer"),
        (vm1_with("mtu = 1979-05-27"), "guests.toml:5: guest \"vm1\": mtu = 1979-05-27: expected an integer"),
        (vm1_with("mtu = 67"), "guests.toml:5: guest \"vm1\": mtu = 67: must be between 68 and 9000"),
        (vm1_with("mtu = 9001"), "guests.toml:5: guest \"vm1\": mtu = 9001: must be between 68 and 9000"),
        // mode and vhost
        (
            vm1_with("mode = \"foo\""),
            "guests.toml:5: guest \"vm1\": mode = \"foo\": unknown mode \"foo\" (accepted: vepa, private, bridge, passthru, source)",
        ),
        (
            vm1_with("vhost = \"both\""),
            "guests.toml:5: guest \"vm1\": vhost = \"both\": unknown vhost role \"both\" (accepted: server, client)",
        ),
        // socket permissions
        (
            vm1_with("socket_mode = \"rw-rw----\""),
            "guests.toml:5: guest \"vm1\": socket_mode = \"rw-rw----\": must be octal permission bits such as \"0660\"",
        ),
        (
            vm1_with("socket_mode = \"0689\""),
            "guests.toml:5: guest \"vm1\": socket_mode = \"0689\": must be octal permission bits such as \"0660\"",
        ),
        (
            vm1_with("socket_mode = \"1777\""),
            "guests.toml:5: guest \"vm1\": socket_mode = \"1777\": must be at most 0777 (no setuid, setgid or sticky bits)",
        ),
        (
            vm1_with("socket_mode = 660"),
            "guests.toml:5: guest \"vm1\": socket_mode = 660: must be a quoted octal string such as \"0660\"",
        ),
        (
            vm1_with("owner = \"nobody-here\""),
            "guests.toml:5: guest \"vm1\": owner = \"nobody-here\": no such user in /etc/passwd (accounts from NSS/LDAP need a numeric uid)",
        ),
        (
            vm1_with("group = \"nogroup-here\""),
            "guests.toml:5: guest \"vm1\": group = \"nogroup-here\": no such group in /etc/group (accounts from NSS/LDAP need a numeric gid)",
        ),
        (
            vm1_with("owner = -1"),
            "guests.toml:5: guest \"vm1\": owner = -1: must be a name or a numeric id between 0 and 4294967294",
        ),
        (
            vm1_with("lcore = 128"),
            "guests.toml:5: guest \"vm1\": lcore = 128: must be between 0 and 127",
        ),
        (
            vm1_with("vlan = 0"),
            "guests.toml:5: guest \"vm1\": vlan = 0: must be between 1 and 4094",
        ),
        (
            vm1_with("vlan = 4095"),
            "guests.toml:5: guest \"vm1\": vlan = 4095: must be between 1 and 4094",
        ),
        (
            vm1_with("vlan = \"10\""),
            "guests.toml:5: guest \"vm1\": vlan = \"10\": expected an integer",
        ),
        (
            vm1_with("group = \"4294967295\""),
            "guests.toml:5: guest \"vm1\": group = \"4294967295\": must be a name or a numeric id between 0 and 4294967294",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(err(&text), want, "for file:\n{text}");
    }
}

#[test]
fn socket_path_length_limit() {
    let fits = format!("/{}", "s".repeat(106));
    ok(&VM1.replace("/run/dpdk-macvtap/vm1.sock", &fits));
    let too_long = format!("{fits}s");
    assert_eq!(
        err(&VM1.replace("/run/dpdk-macvtap/vm1.sock", &too_long)),
        format!("guests.toml:4: guest \"vm1\": socket = \"{too_long}\": is 108 bytes long; a unix socket path holds at most 107")
    );
}

#[test]
fn guest_count_limit() {
    let guest = |i: usize| {
        format!(
            "[[guest]]\nname = \"g{i}\"\nmac = \"02:00:00:00:{:02x}:{:02x}\"\nsocket = \"/run/g{i}.sock\"\n",
            i >> 8,
            i & 0xff
        )
    };
    // Served guests take two of the vhost library's descriptors each: 511 fit, not 512.
    let mut text: String = (0..511).map(guest).collect();
    assert_eq!(ok(&text).guests.len(), 511);
    text.push_str(&guest(511));
    assert_eq!(
        err(&text),
        format!(
            "guests.toml:{}: guest \"g511\": 512 guests need 1024 of the 1023 descriptors DPDK's vhost library watches \
             (a guest the switch serves takes 2, its socket and its connection; one it connects to (vhost = \"client\") takes 1)",
            4 * 511 + 1
        )
    );
    // Guests the switch connects to take one: 1023 fit, not 1024.
    let client = |i: usize| guest(i) + "vhost = \"client\"\n";
    let mut text: String = (0..1023).map(client).collect();
    assert_eq!(ok(&text).guests.len(), 1023);
    text.push_str(&client(1023));
    assert!(err(&text).starts_with(&format!("guests.toml:{}: guest \"g1023\": 1024 guests need 1024 of the 1023", 5 * 1023 + 1)), "{}", err(&text));
    // And the id space: never more than MAX_GUESTS tables.
    text.push_str(&client(MAX_GUESTS));
    assert_eq!(
        err(&text),
        format!(
            "guests.toml:{}: more than 1024 guests: DPDK's vhost library serves at most 1024 vhost-user sockets",
            5 * MAX_GUESTS + 1
        )
    );
}

#[test]
fn one_socket_under_two_spellings_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let base = dir.path().file_name().and_then(|n| n.to_str()).expect("name");
    let text = format!(
        "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"{d}/vm1.sock\"\n\n\
         [[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"{d}/../{base}/./vm1.sock\"\n"
    );
    assert_eq!(
        err(&text),
        format!("guests.toml:9: guest \"vm2\": socket = \"{d}/../{base}/./vm1.sock\": already used by guest \"vm1\" (line 1)")
    );
    // Where the directory does not exist yet, the spelling is normalised by its components.
    let text = "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/nonexistent/a/vm1.sock\"\n\n\
                [[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/nonexistent/b/../a/vm1.sock\"\n";
    assert!(err(text).contains("already used by guest \"vm1\""), "{}", err(text));
}

#[test]
fn a_nul_byte_in_a_socket_path_is_refused_at_its_line() {
    let text = "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/tmp/a\\u0000b.sock\"\n";
    assert_eq!(err(text), "guests.toml:4: guest \"vm1\": socket = \"/tmp/a\\u0000b.sock\": contains a NUL byte, which no socket path can hold");
}

#[test]
fn a_socket_reached_through_a_symlinked_directory_is_the_same_socket() {
    // Debian links /var/run to /run; the directories below need not exist yet.
    assert!(std::fs::canonicalize("/var/run").is_ok_and(|p| p == Path::new("/run")), "this test needs /var/run -> /run");
    let text = "[[guest]]\nname = \"vm1\"\nmac = \"52:54:00:00:00:01\"\nsocket = \"/run/mvt-not-there/vm1.sock\"\n\n\
                [[guest]]\nname = \"vm2\"\nmac = \"52:54:00:00:00:02\"\nsocket = \"/var/run/mvt-not-there/vm1.sock\"\n";
    assert!(err(text).contains("already used by guest \"vm1\""), "{}", err(text));
}
