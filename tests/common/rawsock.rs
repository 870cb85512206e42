//! AF_PACKET sockets inside network namespaces.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::Netns;

// Kernel ABI values (linux/if_packet.h), stable since they were introduced; spelled out here
// because not every libc release exports them for every target.
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_OUTGOING: u8 = 4;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// struct tpacket_auxdata of linux/if_packet.h.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Larger than any frame a test sends (9000-byte MTU plus headers) and than a GRO aggregate.
const RX_BUF: usize = 65536 + 4;

/// An AF_PACKET raw socket bound to one interface of one namespace, seeing every ethertype.
///
/// Received frames are returned exactly as they were on the wire: the kernel moves a VLAN tag
/// out of the frame into metadata before packet sockets see it, and [`RawSocket::recv_timeout`]
/// puts it back, so tests can compare tagged frames byte for byte.
pub struct RawSocket {
    fd: OwnedFd,
    /// "namespace/interface", for messages.
    pub name: String,
}

fn errno<T>(what: &str) -> io::Result<T> {
    let e = io::Error::last_os_error();
    Err(io::Error::new(e.kind(), format!("{what}: {e}")))
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: `value` lives across the call and the length passed is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        errno("setsockopt")
    }
}

/// Opens and binds the socket in the calling thread's network namespace, after moving the
/// thread into `netns` if given. Only the calling thread changes namespace, and the socket
/// keeps the namespace it was created in for its whole life.
fn open_here(netns: Option<&str>, ifname: &str) -> io::Result<OwnedFd> {
    if let Some(ns) = netns {
        let nsfile = std::fs::File::open(format!("/var/run/netns/{ns}"))?;
        // SAFETY: nsfile is an open namespace file; setns changes only this thread's namespace,
        // and this thread exists only to open the socket.
        if unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return errno(&format!("setns({ns})"));
        }
    }
    // Protocol 0 receives nothing until bind names one, so frames of other interfaces cannot
    // slip in between socket() and bind().
    // SAFETY: plain socket(2) call; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return errno("socket(AF_PACKET)");
    }
    // SAFETY: raw is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // Tests often send a burst and read it afterwards; the default buffer (~200 KB) would drop
    // most of 10000 frames. FORCE passes rmem_max (we are root); plain SO_RCVBUF is the fallback.
    let big = 8 << 20;
    if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, big).is_err() {
        setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, big)?;
    }
    setsockopt_int(raw, libc::SOL_PACKET, PACKET_AUXDATA, 1)?;

    let cname = std::ffi::CString::new(ifname).map_err(|_| io::Error::other("NUL in interface name"))?;
    // SAFETY: cname is a valid NUL-terminated string; this resolves in the thread's namespace.
    let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if ifindex == 0 {
        return errno(&format!("if_nametoindex({ifname})"));
    }
    // SAFETY: sockaddr_ll is plain old data, for which all zeroes is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: sll is a fully initialised sockaddr_ll and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return errno(&format!("bind({ifname})"));
    }
    Ok(fd)
}

impl RawSocket {
    /// Opens a socket on `ifname` in `netns` (the current namespace when `None`).
    pub fn open(netns: Option<&Netns>, ifname: &str) -> RawSocket {
        let ns = netns.map(|n| n.name.clone());
        let name = format!("{}/{ifname}", ns.as_deref().unwrap_or("(root)"));
        let ifn = ifname.to_owned();
        // A throwaway thread enters the namespace, so the test thread's own namespace (and
        // every other thread's) stays untouched.
        let opened = std::thread::spawn(move || open_here(ns.as_deref(), &ifn))
            .join()
            .unwrap_or_else(|_| panic!("thread opening raw socket on {name} panicked"));
        match opened {
            Ok(fd) => RawSocket { fd, name },
            Err(e) => panic!("raw socket on {name}: {e}"),
        }
    }

    /// Stops this socket from seeing frames sent out of its interface (by anyone), leaving
    /// only what arrives on it.
    pub fn ignore_outgoing(&self) {
        setsockopt_int(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            .unwrap_or_else(|e| panic!("PACKET_IGNORE_OUTGOING on {}: {e}", self.name));
    }

    pub fn try_send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: frame is a valid slice for the length passed; the socket is bound, so no
        // destination address is needed.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return errno("send");
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!("sent {n} of {} bytes", frame.len())));
        }
        Ok(())
    }

    pub fn send(&self, frame: &[u8]) {
        self.try_send(frame)
            .unwrap_or_else(|e| panic!("sending {} bytes on {}: {e}", frame.len(), self.name));
    }

    /// Sends `frames` at a pace the lab's veths, AF_PACKET rings and a guest process on this
    /// 2-core machine keep up with (a millisecond after every 16), counting each in `sent`.
    pub fn send_paced<F: AsRef<[u8]>>(&self, frames: impl IntoIterator<Item = F>, sent: Option<&std::sync::atomic::AtomicU64>) {
        for (i, f) in frames.into_iter().enumerate() {
            self.send(f.as_ref());
            if let Some(n) = sent {
                n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if i % 16 == 15 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Waits until the socket is readable or `t` passes.
    fn readable(&self, t: Duration) -> bool {
        let deadline = Instant::now() + t;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Round up: a 0.5 ms remainder must not turn into a busy non-blocking loop.
            let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
            let mut pfd = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: pfd is one valid pollfd, and 1 is the count passed.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc > 0 {
                return true;
            }
            if rc == 0 {
                return false;
            }
            let e = io::Error::last_os_error();
            assert!(e.kind() == io::ErrorKind::Interrupted, "poll on {}: {e}", self.name);
        }
    }

    /// Reads one frame without blocking: `Some((frame, outgoing))`, or `None` if none is queued.
    /// `outgoing` is true for frames sent out of the interface rather than received on it.
    fn recv_now(&self) -> Option<(Vec<u8>, bool)> {
        let mut buf = vec![0u8; RX_BUF];
        // u64 elements keep the control buffer aligned for cmsghdr.
        let mut control = [0u64; 16];
        // SAFETY: all-zero is a valid sockaddr_ll and msghdr (null pointers, zero lengths).
        let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: as above.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_name = (&mut from as *mut libc::sockaddr_ll).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control);
        // SAFETY: msg points at buffers that outlive the call, with their true sizes.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
                return None;
            }
            panic!("recvmsg on {}: {e}", self.name);
        }
        buf.truncate(n as usize);

        let mut aux: Option<TpacketAuxdata> = None;
        // SAFETY: msg was filled by recvmsg; the CMSG macros walk only within msg_controllen,
        // and the auxdata payload is read unaligned because cmsg data need not be aligned for it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    aux = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<TpacketAuxdata>()));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if let Some(a) = aux {
            // A tag stripped on receive comes back here; TPID defaults to 802.1Q when the
            // kernel did not record which one it was.
            if a.tp_status & TP_STATUS_VLAN_VALID != 0 && buf.len() >= 12 {
                let tpid = if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 { a.tp_vlan_tpid } else { 0x8100 };
                let mut tag = [0u8; 4];
                tag[..2].copy_from_slice(&tpid.to_be_bytes());
                tag[2..].copy_from_slice(&a.tp_vlan_tci.to_be_bytes());
                buf.splice(12..12, tag);
            }
        }
        Some((buf, from.sll_pkttype == PACKET_OUTGOING))
    }

    /// The next frame, waiting up to `t`: `(frame, outgoing)`.
    pub fn recv_timeout(&self, t: Duration) -> Option<(Vec<u8>, bool)> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(f) = self.recv_now() {
                return Some(f);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.readable(left) {
                return None;
            }
        }
    }

    /// Every frame until `idle` passes without one.
    pub fn collect(&self, idle: Duration) -> Vec<(Vec<u8>, bool)> {
        std::iter::from_fn(|| self.recv_timeout(idle)).collect()
    }

    /// Only the frames received on the interface, until `idle` passes without any frame.
    pub fn collect_incoming(&self, idle: Duration) -> Vec<Vec<u8>> {
        self.collect(idle).into_iter().filter(|(_, out)| !out).map(|(f, _)| f).collect()
    }

    /// A receive buffer of `bytes` (a stream's receiver that falls behind for a moment then
    /// finds the frames waiting instead of dropped).
    pub fn set_rcvbuf(&self, bytes: i32) {
        setsockopt_int(self.fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, bytes)
            .unwrap_or_else(|e| panic!("SO_RCVBUFFORCE {bytes} on {}: {e}", self.name));
    }

    /// Frames the kernel dropped for this socket (its buffer full) since the last call: a
    /// stream's receiver checks it is 0, so that every frame missing was lost on the path.
    pub fn take_drops(&self) -> u64 {
        // struct tpacket_stats of linux/if_packet.h: packets, drops; reading resets both.
        let mut st = [0u32; 2];
        let mut len = std::mem::size_of_val(&st) as libc::socklen_t;
        // SAFETY: st has room for the `len` bytes passed, and len is a valid in/out pointer.
        let rc = unsafe { libc::getsockopt(self.fd.as_raw_fd(), libc::SOL_PACKET, PACKET_STATISTICS, st.as_mut_ptr().cast(), &mut len) };
        assert!(rc == 0, "PACKET_STATISTICS on {}: {}", self.name, io::Error::last_os_error());
        u64::from(st[1])
    }

    /// The next frame's first `buf.len()` bytes into `buf`, waiting up to `t`: its length
    /// (at most `buf.len()`), or `None`. No allocation and no VLAN tag restored: for counting
    /// long streams by their headers.
    pub fn recv_into(&self, buf: &mut [u8], t: Duration) -> Option<usize> {
        let deadline = Instant::now() + t;
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n >= 0 {
                return Some(n as usize);
            }
            let e = io::Error::last_os_error();
            assert!(matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted), "recv on {}: {e}", self.name);
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.readable(left) {
                return None;
            }
        }
    }

    /// Discards what is queued now; returns how many frames that was.
    pub fn drain(&self) -> usize {
        std::iter::from_fn(|| self.recv_now()).count()
    }
}
