//! What a live migration needs from a guest's vhost-user socket, asked the way QEMU asks it:
//! `VHOST_USER_GET_FEATURES` and `VHOST_USER_GET_PROTOCOL_FEATURES` over the real socket of
//! the real switch, in both vhost roles.
//!
//! QEMU refuses to migrate a VM whose vhost-user backend lacks `VHOST_F_LOG_ALL` (it could not
//! learn which guest pages the backend wrote) and needs `VHOST_USER_PROTOCOL_F_LOG_SHMFD` to
//! share the dirty log with it. After the switch-over, the destination announces the VM's MAC:
//! the guest itself when it negotiated `VIRTIO_NET_F_GUEST_ANNOUNCE` (which needs the control
//! queue), otherwise the backend, asked by `VHOST_USER_SEND_RARP` (`F_RARP`). The rest of a
//! migration (the dirty log filled during a copy, the announce leaving the uplink, the bridge
//! relearning) needs a front end that migrates, which only a VM is: `dpdk-config/migrate-vm.sh`.
//!
//! These two requests need no file descriptors, so a plain `UnixStream` speaks them; every
//! later set-up step (`SET_MEM_TABLE`, `SET_LOG_BASE`) passes descriptors.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::*;

const GET_FEATURES: u32 = 1;
const GET_PROTOCOL_FEATURES: u32 = 15;
/// Protocol version 1, in the flags of every message.
const VERSION: u32 = 1;
const REPLY: u32 = 1 << 2;

const VIRTIO_NET_F_CTRL_VQ: u32 = 17;
const VIRTIO_NET_F_GUEST_ANNOUNCE: u32 = 21;
const VHOST_F_LOG_ALL: u32 = 26;
const VHOST_USER_F_PROTOCOL_FEATURES: u32 = 30;
const PROTOCOL_F_LOG_SHMFD: u32 = 1;
const PROTOCOL_F_RARP: u32 = 2;
/// The offloads the switch turns off (src/rte/vhost.rs, OFFLOAD_FEATURES): CSUM, GUEST_CSUM,
/// GUEST_TSO4/6, GUEST_ECN, GUEST_UFO, HOST_TSO4/6, HOST_ECN, HOST_UFO.
const OFFLOADS: [u32; 10] = [0, 1, 7, 8, 9, 10, 11, 12, 13, 14];

/// Sends a request without payload and returns the u64 of its reply.
fn ask_u64(s: &mut UnixStream, request: u32) -> u64 {
    let mut msg = Vec::with_capacity(12);
    for word in [request, VERSION, 0] {
        msg.extend_from_slice(&word.to_ne_bytes());
    }
    s.write_all(&msg).unwrap_or_else(|e| panic!("sending request {request}: {e}"));
    let mut reply = [0u8; 20];
    s.read_exact(&mut reply).unwrap_or_else(|e| panic!("reply to request {request}: {e}"));
    let word = |i: usize| u32::from_ne_bytes(reply[i..i + 4].try_into().expect("4 bytes"));
    assert_eq!(word(0), request, "the reply answers request {request}: {reply:02x?}");
    assert_eq!(word(4), VERSION | REPLY, "reply flags: {reply:02x?}");
    assert_eq!(word(8), 8, "a u64 payload: {reply:02x?}");
    u64::from_ne_bytes(reply[12..20].try_into().expect("8 bytes"))
}

/// Asks both feature sets on a fresh connection and checks what a migration needs.
fn check_offer(mut s: UnixStream, role: &str) {
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let f = ask_u64(&mut s, GET_FEATURES);
    let has = |bit: u32| f & (1u64 << bit) != 0;
    assert!(has(VHOST_F_LOG_ALL), "{role}: VHOST_F_LOG_ALL offered (QEMU blocks migration without it): {f:#x}");
    assert!(has(VHOST_USER_F_PROTOCOL_FEATURES), "{role}: protocol features offered: {f:#x}");
    assert!(
        has(VIRTIO_NET_F_GUEST_ANNOUNCE) && has(VIRTIO_NET_F_CTRL_VQ),
        "{role}: GUEST_ANNOUNCE and the control queue it needs offered: {f:#x}"
    );
    for bit in OFFLOADS {
        assert!(!has(bit), "{role}: offload bit {bit} is turned off: {f:#x}");
    }
    let p = ask_u64(&mut s, GET_PROTOCOL_FEATURES);
    assert!(p & (1 << PROTOCOL_F_LOG_SHMFD) != 0, "{role}: LOG_SHMFD (the dirty log shared as a memfd): {p:#x}");
    assert!(p & (1 << PROTOCOL_F_RARP) != 0, "{role}: RARP (the backend's announce for guests without GUEST_ANNOUNCE): {p:#x}");
}

/// Waits for the switch, in the client role, to connect to our listener.
fn accept_within(l: &UnixListener, timeout: Duration) -> UnixStream {
    l.set_nonblocking(true).expect("nonblocking listener");
    let deadline = Instant::now() + timeout;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).expect("blocking stream");
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "the switch did not connect to the client-role socket within {timeout:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn both_vhost_roles_offer_dirty_logging_and_the_announce() {
    let mut sw = LabSwitch::start(
        &[("srv", "52:54:00:00:00:01", ""), ("cli", "52:54:00:00:00:02", "vhost = \"client\"")],
        LabOpts::default(),
    );
    check_offer(UnixStream::connect(sw.sock("srv")).expect("connect to the server-role socket"), "server role");

    // The switch retries its client connection every second until someone listens.
    let l = UnixListener::bind(sw.sock("cli")).expect("listen on the client-role socket");
    check_offer(accept_within(&l, Duration::from_secs(10)), "client role");

    // The probes never set a device up: no link came up, and the switch stops clean.
    let v = sw.stop();
    for name in ["srv", "cli"] {
        assert_eq!(guest_stats(&v, name)["link_up"], false, "{name}: {v}");
    }
}
