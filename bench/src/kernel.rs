//! The Linux kernel macvtap in VEPA mode, where the path is comparable: a process reads or
//! writes `/dev/tapN` in place of the guest, a veth is the lower device, and the far end of
//! the veth plays the uplink. Everything lives in a private network namespace that is
//! deleted afterwards (also on failure: `Netns` removes it on drop).
//!
//! ```text
//!  netns mvtbench-<pid>:   [tap process] /dev/tapN -- macvtap mvtI (vepa) -- vlow ==veth== vext [uplink side]
//! ```
//!
//! - guest -> uplink: the writer (core 0) writes frames into the tap; rate = vext rx_packets
//!   over the window. The kernel does the switching in the writer's syscalls and in the
//!   softirq of the same CPU, so here generator and "switch" share core 0 and core 1 idles.
//! - uplink -> guest(s): an AF_PACKET sender on vext (core 1) injects frames to the guest's
//!   MAC (or broadcast); the kernel switches them in that sender's softirq on core 1; the
//!   reader (core 0) polls every tap fd and counts frames over the window.
//!
//! Frames through a macvtap fd carry a 10-byte virtio-net header (IFF_VNET_HDR is on by
//! default); writes prepend a zero header, reads skip it.

use std::ffi::CString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::model::{guest_mac, mac_str, Case, Env, Path, EXTERNAL_MAC};
use crate::proc::{self, Proc};
use crate::systems::SwitchFigures;
use crate::Results;

const VNET_HDR: usize = 10;

/// `macvtap-bench tap`: the process standing in for the guest (or the uplink host).
#[derive(clap::Args, Debug)]
pub struct TapArgs {
    /// write: frames into the first --dev; read: count frames from every --dev;
    /// inject: frames out of --iface through AF_PACKET.
    #[arg(long)]
    mode: String,
    #[arg(long)]
    dev: Vec<PathBuf>,
    #[arg(long)]
    iface: Option<String>,
    /// Frame buffer length (FCS excluded).
    #[arg(long, default_value_t = 60)]
    len: usize,
    #[arg(long)]
    dst: Option<String>,
    #[arg(long)]
    src: Option<String>,
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    #[arg(long, default_value_t = 4)]
    secs: u64,
    /// A counter file read at the window's edges (write mode), e.g. vext's rx_packets.
    #[arg(long)]
    counter: Option<PathBuf>,
    /// Where the window's rate goes (frames per second), as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let v: Vec<u8> = s.split(':').map(|x| u8::from_str_radix(x, 16)).collect::<Result<_, _>>()?;
    v.try_into().map_err(|_| anyhow::anyhow!("bad MAC {s}"))
}

fn read_counter(p: &std::path::Path) -> u64 {
    std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

pub fn tap_main(a: TapArgs) -> Result<()> {
    let end_warm = Instant::now() + Duration::from_secs(a.warmup);
    let end = end_warm + Duration::from_secs(a.secs);
    let mut frame = vec![0u8; VNET_HDR + a.len];
    let dst = parse_mac(a.dst.as_deref().unwrap_or("ff:ff:ff:ff:ff:ff"))?;
    let src = parse_mac(a.src.as_deref().unwrap_or("02:00:00:00:00:fe"))?;
    frame[VNET_HDR..].copy_from_slice(&crate::pcap::frame(dst, src, a.len, 0));
    let rate = match a.mode.as_str() {
        "write" => {
            let dev = a.dev.first().context("--dev")?;
            let fd = open(dev, false)?;
            let counter = a.counter.clone().context("--counter")?;
            let mut c0 = None;
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if c0.is_none() && now >= end_warm {
                    c0 = Some((read_counter(&counter), now));
                }
                // SAFETY: fd is open; frame is a valid buffer of that length.
                unsafe { libc::write(fd, frame.as_ptr().cast(), frame.len()) };
            }
            let (c0, t0) = c0.unwrap_or((0, end_warm));
            (read_counter(&counter) - c0) as f64 / t0.elapsed().as_secs_f64()
        }
        "read" => {
            let fds: Vec<i32> = a.dev.iter().map(|d| open(d, true)).collect::<Result<_>>()?;
            let mut buf = vec![0u8; 65536];
            let (mut n, mut t0) = (0u64, None);
            loop {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if t0.is_none() && now >= end_warm {
                    t0 = Some(now);
                    n = 0;
                }
                for &fd in &fds {
                    // Drain what is queued on this fd (non-blocking).
                    for _ in 0..64 {
                        // SAFETY: fd is open; buf is valid for its length.
                        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                        if r <= 0 {
                            break;
                        }
                        n += 1;
                    }
                }
            }
            n as f64 / t0.map(|t| t.elapsed().as_secs_f64()).unwrap_or(1.0)
        }
        "inject" => {
            let iface = a.iface.as_deref().context("--iface")?;
            let fd = packet_socket(iface)?;
            let body = &frame[VNET_HDR..];
            while Instant::now() < end {
                for _ in 0..256 {
                    // SAFETY: fd is a bound AF_PACKET socket; body is a valid buffer.
                    unsafe { libc::send(fd, body.as_ptr().cast(), body.len(), 0) };
                }
            }
            0.0
        }
        m => bail!("unknown --mode {m}"),
    };
    if let Some(j) = a.json {
        std::fs::write(j, serde_json::json!({ "pps": rate }).to_string())?;
    }
    Ok(())
}

fn open(dev: &std::path::Path, nonblock: bool) -> Result<i32> {
    let c = CString::new(dev.as_os_str().as_encoded_bytes())?;
    let flags = libc::O_RDWR | if nonblock { libc::O_NONBLOCK } else { 0 };
    // SAFETY: c is a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        bail!("open {}: {}", dev.display(), std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn packet_socket(iface: &str) -> Result<i32> {
    let name = CString::new(iface)?;
    // SAFETY: plain socket calls; sll is fully initialised before bind.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ALL as u16).to_be() as i32);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let idx = libc::if_nametoindex(name.as_ptr());
        if idx == 0 {
            bail!("no interface {iface}");
        }
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = idx as i32;
        if libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32) < 0 {
            bail!("bind {iface}: {}", std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// A private network namespace with the veth and the macvtaps; deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn ip(&self, args: &str) -> Result<String> {
        proc::run(Command::new("ip").arg("-n").arg(&self.name).args(args.split_whitespace()))
    }

    fn exec(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes the veth and every macvtap on it.
        let _ = proc::run(Command::new("ip").args(["netns", "delete", &self.name]));
    }
}

fn setup(env: &Env, guests: usize, mtu: u32) -> Result<(Netns, Vec<PathBuf>)> {
    let ns = Netns { name: format!("mvtbench-{}-{}", std::process::id(), env.next_seq()) };
    proc::run(Command::new("ip").args(["netns", "add", &ns.name]))?;
    ns.ip("link set lo up")?;
    ns.ip("link add vlow type veth peer name vext")?;
    ns.ip(&format!("link set vlow mtu {mtu} up"))?;
    ns.ip(&format!("link set vext mtu {mtu} up"))?;
    let mut devs = Vec::new();
    for i in 0..guests {
        ns.ip(&format!("link add link vlow name mvt{i} type macvtap mode vepa"))?;
        ns.ip(&format!("link set mvt{i} address {} mtu {mtu} up", mac_str(guest_mac(i))))?;
        // The tap's char device: its numbers are in the namespace's sysfs; make our own node.
        let out = proc::run(ns.exec().args(["sh", "-c", &format!("cat /sys/class/net/mvt{i}/ifindex; cat /sys/class/net/mvt{i}/macvtap/tap*/dev")]))?;
        let mut l = out.lines();
        let ifindex = l.next().context("ifindex")?.trim().to_owned();
        let dev = l.next().context("tap dev numbers")?.trim().to_owned();
        let (maj, min) = dev.split_once(':').context("major:minor")?;
        let node = env.work.join(format!("tap{ifindex}-{}", ns.name));
        let _ = std::fs::remove_file(&node);
        proc::run(Command::new("mknod").arg(&node).args(["c", maj, min]))?;
        devs.push(node);
    }
    env.record(
        "kernel/setup",
        &format!(
            "ip netns add NS; ip -n NS link add vlow type veth peer name vext; ip -n NS link set vlow|vext mtu {mtu} up; \
             for each guest i: ip -n NS link add link vlow name mvtI type macvtap mode vepa; ip -n NS link set mvtI address MAC_I up; \
             mknod /dev/tapN from /sys/class/net/mvtI/macvtap/tapN/dev"
        ),
    );
    Ok((ns, devs))
}

/// The kernel macvtap's rate for `case`, measured on the guest side like the others
/// (frames into vext for guest -> uplink; frames read from the taps otherwise).
pub fn measure(env: &Env, case: &Case) -> Result<Option<(f64, SwitchFigures)>> {
    let me = std::env::current_exe()?;
    let mtu = if case.jumbo() { 9000 } else { 1500 };
    let (ns, devs) = setup(env, case.path.guests(), mtu)?;
    let seq = env.next_seq();
    let json = env.work.join(format!("kernel-{}-{}-{seq}.json", case.path.key(), case.size));
    let common = |c: &mut Command| {
        c.args(["--len", &case.buf_len().to_string(), "--warmup", &env.warmup_s.to_string(), "--secs", &env.duration_s.to_string()]);
    };
    let mut procs = Vec::new();
    match case.path {
        Path::GuestToUplink => {
            let mut c = ns.exec();
            c.args(["taskset", "-c", "0"]).arg(&me).args(["tap", "--mode", "write", "--dev"]).arg(&devs[0]);
            c.args(["--dst", &mac_str(EXTERNAL_MAC), "--src", &mac_str(guest_mac(0)), "--counter", "/sys/class/net/vext/statistics/rx_packets", "--json"]).arg(&json);
            common(&mut c);
            procs.push(Proc::spawn("tap writer", c, &env.work.join(format!("kernel-w-{seq}.log")))?);
        }
        _ => {
            let dst = if let Path::Fanout(_) = case.path { "ff:ff:ff:ff:ff:ff".to_owned() } else { mac_str(guest_mac(0)) };
            let mut r = ns.exec();
            r.args(["taskset", "-c", "0"]).arg(&me).args(["tap", "--mode", "read"]);
            for d in &devs {
                r.arg("--dev").arg(d);
            }
            r.arg("--json").arg(&json);
            common(&mut r);
            procs.push(Proc::spawn("tap reader", r, &env.work.join(format!("kernel-r-{seq}.log")))?);
            let mut i = ns.exec();
            i.args(["taskset", "-c", "1"]).arg(&me).args(["tap", "--mode", "inject", "--iface", "vext", "--dst", &dst, "--src", &mac_str(EXTERNAL_MAC)]);
            common(&mut i);
            procs.push(Proc::spawn("uplink injector", i, &env.work.join(format!("kernel-i-{seq}.log")))?);
        }
    }
    for p in &procs {
        env.record(&format!("kernel/{} ({})", p.name, case.path.key()), &p.cmdline);
    }
    let t0 = Instant::now();
    let limit = Duration::from_secs(env.warmup_s + env.duration_s + 20);
    while procs.iter_mut().any(|p| p.alive()) && t0.elapsed() < limit {
        crate::nap(Duration::from_millis(100))?;
    }
    let logs: Vec<String> = procs.into_iter().map(|p| p.stop(Duration::from_secs(3))).collect();
    drop(ns);
    let text = std::fs::read_to_string(&json).with_context(|| format!("no result from the tap process: {}", logs.join("\n")))?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let pps = v["pps"].as_f64().unwrap_or(0.0);
    if pps <= 0.0 {
        bail!("no frames counted: {}", logs.join("\n"));
    }
    Ok(Some((pps, SwitchFigures::default())))
}

pub fn report_section(res: &Results, o: &mut String) {
    if !res.samples.iter().any(|s| s.system == crate::model::System::Kernel) {
        return;
    }
    let _ = writeln!(
        o,
        "\n## Kernel macvtap: how it was measured\n\n\
A process stands in for the guest on `/dev/tapN` of a macvtap (mode vepa) whose lower device is a veth, in a private network namespace; \
the veth's peer plays the uplink. Guest -> uplink: the writer (core 0) writes frames into the tap; rate = the peer's rx_packets over the window; \
the kernel switches in the writer's own syscalls and softirq, so guest and switch share core 0 (core 1 idles). \
Uplink -> guest(s): an AF_PACKET sender on the peer (core 1, where the kernel's switching then runs) injects frames to the guest's MAC or broadcast; \
a reader on core 0 polls every tap fd. One syscall per frame on each side: this is the kernel's path as a QEMU/vhost-net-less process sees it, \
not a vhost-net VM. No cycles/packet figure (the work is spread over syscalls and softirqs)."
    );
}
