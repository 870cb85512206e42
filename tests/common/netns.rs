//! Network namespaces and the hairpin lab built from them.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{unique, RawSocket};

/// Runs a command to completion, failing the test with its stderr if it fails.
pub fn run_cmd(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    run_cmd(Command::new("ip").args(args))
}

/// A network namespace, deleted on drop. Its links have IPv6 disabled, so the kernel sends
/// nothing on them by itself (router solicitations, MLD reports) and every frame a test sees
/// is one it caused.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Netns {
        // A leftover of a killed run with the same name (same pid) would make `add` fail.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        let ns = Netns { name: name.to_owned() };
        // `default` must be set before any link is created: links copy it when they are.
        ns.run(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// `ip netns exec NAME program`, for the caller to add arguments, pipes, and spawn.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `args` inside the namespace; fails the test with its stderr if it fails.
    pub fn run(&self, args: &[&str]) {
        self.output(args);
    }

    /// Like [`Netns::run`], returning stdout.
    pub fn output(&self, args: &[&str]) -> String {
        let (program, rest) = args.split_first().expect("Netns::run needs a program");
        run_cmd(self.command(program).args(rest))
    }

    /// Waits until `dev` has carrier: a veth reports it asynchronously after `link set up`, and
    /// a process that opens it before then would see the link down.
    pub fn wait_carrier(&self, dev: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.command("cat").arg(format!("/sys/class/net/{dev}/carrier")).output();
            if matches!(&out, Ok(o) if o.stdout.starts_with(b"1")) {
                return;
            }
            assert!(Instant::now() < deadline, "{dev} in {} has no carrier after {timeout:?}", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // No panic here: drop also runs while a failed test unwinds, and a second panic aborts.
        match Command::new("ip").args(["netns", "del", &self.name]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("ip netns del {}: {}", self.name, String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("ip netns del {}: {e}", self.name),
        }
    }
}

/// Interface names inside the lab. They can be fixed because each lab has namespaces of its
/// own; only the namespace names are unique.
const UPLINK: &str = "mvtup0";
const UPLINK_BR: &str = "mvtup0-br";
const EXT: &str = "ext0";
const EXT_BR: &str = "ext0-br";
const BRIDGE: &str = "br0";

/// The topology of dpdk-config/lab.sh:
///
/// ```text
///   sw: mvtup0 <--veth--> br: mvtup0-br --[br0]-- ext0-br <--veth--> ext: ext0
/// ```
///
/// The switch under test runs in `sw` with `mvtup0` as its uplink; `br0` is the adjacent
/// bridge of 802.1Qbg, whose hairpin mode on `mvtup0-br` decides whether guest-to-guest frames
/// come back; `ext0` is an external host. Dropping the lab deletes the namespaces and with
/// them every link.
pub struct HairpinLab {
    pub sw: Netns,
    pub br: Netns,
    pub ext: Netns,
    /// The switch's uplink, in `sw`.
    pub uplink: String,
    pub ext_mac: [u8; 6],
}

impl HairpinLab {
    pub fn new() -> HairpinLab {
        let id = unique("lab");
        let lab = HairpinLab {
            sw: Netns::new(&format!("mvt-{id}-sw")),
            br: Netns::new(&format!("mvt-{id}-br")),
            ext: Netns::new(&format!("mvt-{id}-ext")),
            uplink: UPLINK.to_owned(),
            ext_mac: [0x02, 0x00, 0x00, 0x00, 0xee, 0x01],
        };
        let (sw, br, ext) = (&lab.sw.name, &lab.br.name, &lab.ext.name);
        // Each pair is created inside its namespace with the peer moved there on creation, so
        // the root namespace (and other labs) never see these names.
        ip(&["-n", sw, "link", "add", UPLINK, "type", "veth", "peer", "name", UPLINK_BR, "netns", br]);
        let ext_mac = super::mac_str(lab.ext_mac);
        ip(&["-n", ext, "link", "add", EXT, "address", &ext_mac, "type", "veth", "peer", "name", EXT_BR, "netns", br]);
        // STP off and forward_delay 0, or the ports would drop frames while listening/learning;
        // snooping off, or multicast would be filtered by group state nobody creates.
        ip(&["-n", br, "link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"]);
        for port in [UPLINK_BR, EXT_BR] {
            ip(&["-n", br, "link", "set", port, "master", BRIDGE]);
        }
        for dev in [BRIDGE, UPLINK_BR, EXT_BR] {
            ip(&["-n", br, "link", "set", dev, "up"]);
        }
        ip(&["-n", sw, "link", "set", UPLINK, "up"]);
        ip(&["-n", ext, "link", "set", EXT, "up"]);
        lab.sw.wait_carrier(UPLINK, Duration::from_secs(5));
        lab.ext.wait_carrier(EXT, Duration::from_secs(5));
        lab
    }

    /// on: the bridge may send a frame back out of the port it came in on (VEPA's reflective
    /// relay, which lets guests behind one uplink reach each other). off: it never does.
    pub fn set_hairpin(&self, on: bool) {
        self.br.run(&["bridge", "link", "set", "dev", UPLINK_BR, "hairpin", if on { "on" } else { "off" }]);
    }

    /// Takes the bridge's end of the switch's uplink veth down or up: the uplink loses or
    /// regains its carrier, as when the cable to a real switch is pulled and put back.
    pub fn set_uplink_peer(&self, up: bool) {
        ip(&["-n", &self.br.name, "link", "set", UPLINK_BR, if up { "up" } else { "down" }]);
    }

    /// Sets the MTU of every link on the path, the bridge last: the bridge's MTU may not exceed
    /// what its ports allow when raising it.
    pub fn set_uplink_mtu(&self, mtu: u32) {
        let mtu = mtu.to_string();
        ip(&["-n", &self.sw.name, "link", "set", UPLINK, "mtu", &mtu]);
        ip(&["-n", &self.ext.name, "link", "set", EXT, "mtu", &mtu]);
        for dev in [UPLINK_BR, EXT_BR, BRIDGE] {
            ip(&["-n", &self.br.name, "link", "set", dev, "mtu", &mtu]);
        }
    }

    /// The `--vdev` EAL argument that opens the uplink with DPDK's AF_PACKET PMD.
    pub fn uplink_vdev(&self) -> String {
        format!("--vdev=net_af_packet0,iface={}", self.uplink)
    }

    /// The external host: sends from and receives on `ext0`.
    pub fn ext_socket(&self) -> RawSocket {
        RawSocket::open(Some(&self.ext), EXT)
    }

    /// A capture on the bridge's uplink port, which sees both directions: frames from the
    /// switch arrive as incoming, frames the bridge sends to the switch (hairpin reflections
    /// included) as outgoing.
    pub fn bridge_port_capture(&self) -> RawSocket {
        RawSocket::open(Some(&self.br), UPLINK_BR)
    }

    /// A socket on the uplink itself, in `sw`: stands in for the switch when testing the lab,
    /// or watches what reaches the uplink while the switch runs.
    pub fn uplink_socket(&self) -> RawSocket {
        RawSocket::open(Some(&self.sw), &self.uplink)
    }

    /// `bridge fdb show` of the bridge, for failure messages and learning checks.
    pub fn fdb(&self) -> String {
        self.br.output(&["bridge", "fdb", "show", "br", BRIDGE])
    }
}

impl Default for HairpinLab {
    fn default() -> Self {
        Self::new()
    }
}
