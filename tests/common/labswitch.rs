//! The switch under test inside a `HairpinLab`: net_af_packet uplink on the lab's veth,
//! guests from a generated guests.toml in a temp dir, counters exported to JSON at exit.

use std::path::PathBuf;
use std::time::Duration;

use super::{require_root, Guest, HairpinLab, Switch};

/// A guest table entry: name, MAC, and extra TOML lines (`mtu = 9000`, `queues = 4`...).
pub type GuestSpec<'a> = (&'a str, &'a str, &'a str);

#[derive(Default)]
pub struct LabOpts<'a> {
    /// MTU 9000 on every link of the lab, and an AF_PACKET ring that holds such frames.
    pub jumbo: bool,
    /// Extra net_af_packet devargs (`qpairs=2`).
    pub vdev_opts: &'a str,
    /// Extra EAL arguments (`--lcores=...`).
    pub eal: &'a [&'a str],
    /// Extra switch arguments (`--assign cycles`).
    pub app: &'a [&'a str],
    /// Run the start-up hairpin self-test (off by default: see `switch_args`).
    pub hairpin_check: bool,
}

pub struct LabSwitch {
    /// First, so that it is dropped first (fields drop in order): after a failed test the
    /// switch is killed before its namespaces and its directory go.
    sw: Option<Switch>,
    pub lab: HairpinLab,
    pub dir: tempfile::TempDir,
    pub json: PathBuf,
}

impl LabSwitch {
    pub fn start(guests: &[GuestSpec<'_>], opts: LabOpts<'_>) -> LabSwitch {
        require_root();
        let lab = HairpinLab::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::new();
        for (name, mac, extra) in guests {
            text.push_str(&super::guest_toml(dir.path(), name, mac, extra));
        }
        std::fs::write(dir.path().join("guests.toml"), text).expect("guests.toml");
        if opts.jumbo {
            lab.set_uplink_mtu(9000);
        }
        let mut vdev = lab.uplink_vdev();
        if opts.jumbo {
            // net_af_packet requires a ring frame's data (framesz - 32) to fit one mbuf (the
            // switch sizes its mbufs for the largest guest MTU: 9216 bytes of data at 9000),
            // and a block to hold a whole number of frames, or it stops receiving.
            vdev.push_str(",blocksz=36864,framesz=9216,framecnt=256");
        }
        if !opts.vdev_opts.is_empty() {
            vdev.push(',');
            vdev.push_str(opts.vdev_opts);
        }
        let mut eal = vec![vdev];
        eal.extend(opts.eal.iter().map(|s| s.to_string()));
        let json = dir.path().join("stats.json");
        let mut app = super::switch_args(&dir.path().join("guests.toml"), &json, 0);
        if opts.hairpin_check {
            app.retain(|a| a != super::NO_HAIRPIN_CHECK);
        }
        app.extend(opts.app.iter().map(|s| s.to_string()));
        let sw = Switch::start(Some(&lab.sw), &eal, &app);
        LabSwitch { sw: Some(sw), lab, dir, json }
    }

    pub fn sock(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.sock"))
    }

    /// Starts a guest on `name`'s socket and waits until the switch sees its link.
    pub fn guest(&self, name: &str) -> Guest {
        self.guest_with(name, &[])
    }

    pub fn guest_with(&self, name: &str, extra: &[&str]) -> Guest {
        let g = Guest::start_with(&self.sock(name), name, extra);
        self.switch().proc.wait_line(&format!("guest {name}: link up"), Duration::from_secs(30));
        g
    }

    /// The control client for this switch's socket.
    pub fn ctl(&self) -> super::Ctl {
        super::Ctl::new(&super::control_socket(&self.dir.path().join("guests.toml")))
    }

    /// The guests file the switch was started with (a reload re-reads it).
    pub fn guests_file(&self) -> PathBuf {
        self.dir.path().join("guests.toml")
    }

    pub fn switch(&self) -> &Switch {
        self.sw.as_ref().expect("switch running")
    }

    /// Stops the switch, checks the clean, leak-free exit, returns the final counters.
    pub fn stop(&mut self) -> serde_json::Value {
        self.sw.take().expect("switch running").stop_clean();
        super::stats_json(&self.json)
    }
}

pub fn guest_stats<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["guests"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no guest {name} in {v}"))
}

pub fn drops(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason].as_u64().unwrap_or_else(|| panic!("no drop counter {reason} in {v}"))
}

pub fn total_drops(v: &serde_json::Value) -> u64 {
    v["drops"].as_object().expect("drops object").values().map(|x| x.as_u64().unwrap_or(0)).sum()
}
