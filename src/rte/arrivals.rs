//! Frames arriving at a kernel network interface, as a descriptor that becomes readable: the
//! rx interrupt of a port that has none. DPDK 22.11's net_af_packet reads its frames from a
//! kernel interface through a packet socket of its own and offers no rx interrupts, so a
//! worker polling it could only sleep; a second packet socket on the same interface tells a
//! blocked worker that a frame came. It sees what the driver's socket sees, frames the host
//! itself sends out of the interface included (the driver forwards those too); the driver's
//! own transmissions bypass the kernel's taps (its default `qdisc_bypass`).
//!
//! A bound socket stays hooked into the interface's receive path until it is closed, and its
//! receive buffer is the smallest there is, so between blocks it holds a few frames and the
//! kernel drops the rest for it; `arm` reads away what it holds, so that the next frame is a
//! new edge for the worker's epoll. Closing a packet socket waits for an RCU grace period
//! (`datapath::arrival_watches` has it done off the worker).
//!
//! Both sockets are handed each frame in the same softirq, this one first (the newer hook),
//! so a worker may see the watch before the driver's ring holds the frame: `arm` says how many
//! frames came, and `datapath::block` does not trust a block for long when that is more than
//! the worker has received since.
//!
//! Opened and bound on the control thread at start, and on the worker that owns it after;
//! armed by that worker only.
//!
//! Not DPDK, but a socket on a raw descriptor: the crate keeps such calls in `rte`/`sys`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The most queued frames `arm` reads away; the receive buffer holds a few at most.
const DRAIN_MAX: usize = 64;

/// A packet socket that, once bound to an interface, becomes readable when a frame arrives
/// there.
pub struct ArrivalWatch {
    sock: OwnedFd,
}

impl ArrivalWatch {
    /// A packet socket that receives nothing yet (`bind` says where from). Needs CAP_NET_RAW
    /// (as net_af_packet does).
    pub fn open() -> io::Result<ArrivalWatch> {
        // SAFETY: plain socket creation; protocol 0 receives nothing until bound with one.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        let w = ArrivalWatch { sock: unsafe { OwnedFd::from_raw_fd(fd) } };
        // Only that something came matters: the smallest buffer (the kernel queues a frame
        // into an empty one whatever its size, so readiness never depends on it). Were it
        // refused, the buffer would only be larger.
        let one: i32 = 1;
        // SAFETY: `one` is an int the call reads, of the size given.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, (&one as *const i32).cast(), std::mem::size_of::<i32>() as libc::socklen_t) };
        Ok(w)
    }

    /// Hooks the socket into the receive path of the interface with index `if_index` in the
    /// switch's network namespace.
    pub fn bind(&self, if_index: u32) -> io::Result<()> {
        let if_index = i32::try_from(if_index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: sockaddr_ll is plain old data; all zero is a valid value.
        let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sa.sll_ifindex = if_index;
        // SAFETY: sa is a sockaddr_ll of the length given, only read by the call.
        let r = unsafe { libc::bind(self.sock.as_raw_fd(), (&sa as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads away what the socket holds; returns its descriptor, which becomes readable at
    /// the next frame (for an edge-triggered epoll of the caller's), and how many frames the
    /// kernel handed it since the last `arm` (those its buffer kept and those it dropped;
    /// counted after the reading, so a frame that comes meanwhile is counted now and still
    /// makes the descriptor readable).
    pub fn arm(&mut self) -> (RawFd, u64) {
        // An interface that went down (or was down at the bind) leaves an error pending
        // (ENETDOWN), which would end every wait at once: the first `recv` returns it, and
        // that takes it. (The hook is back when the interface comes up.)
        let mut byte = 0u8;
        for _ in 0..DRAIN_MAX {
            // SAFETY: reads at most one byte into `byte` (the rest of the frame is
            // discarded); non-blocking.
            let n = unsafe { libc::recv(self.sock.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_DONTWAIT) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                break;
            }
        }
        (self.sock.as_raw_fd(), self.take_handed())
    }

    /// Frames handed to the socket since the last call (the kernel's counters start again
    /// at each reading); 0 if they cannot be read.
    fn take_handed(&self) -> u64 {
        // SAFETY: tpacket_stats is plain old data; all zero is a valid value.
        let mut st: libc::tpacket_stats = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: st and len are ours, of the sizes the call writes at most.
        let r = unsafe { libc::getsockopt(self.sock.as_raw_fd(), libc::SOL_PACKET, libc::PACKET_STATISTICS, (&mut st as *mut libc::tpacket_stats).cast(), &mut len) };
        // tp_packets counts the dropped ones too (the kernel adds them before answering).
        if r < 0 {
            0
        } else {
            u64::from(st.tp_packets)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Whether `fd` becomes readable within `ms`.
    fn readable(fd: RawFd, ms: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd of ours.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    }

    /// `lo` of the calling thread's network namespace: its index, after setting it up or down.
    fn lo(up: bool) -> u32 {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("socket");
        // SAFETY: ifreq is plain old data; all zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (d, s) in req.ifr_name.iter_mut().zip(b"lo") {
            *d = *s as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS / SIOCSIFFLAGS read the name and read or write the flags of
        // the ifreq we own.
        unsafe {
            assert_eq!(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req), 0, "flags of lo");
            let f = req.ifr_ifru.ifru_flags;
            req.ifr_ifru.ifru_flags = if up { f | libc::IFF_UP as i16 } else { f & !(libc::IFF_UP as i16) };
            assert_eq!(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req), 0, "set lo up or down");
            libc::if_nametoindex(c"lo".as_ptr())
        }
    }

    /// A datagram to 127.0.0.1 crosses `lo` (out and in).
    fn send_on_lo() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.send_to(b"x", rx.local_addr().expect("addr")).expect("send");
        rx.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        rx.recv(&mut [0u8; 4]).expect("the datagram arrived");
    }

    /// In a network namespace of the test's own thread, so that only its frames cross `lo`.
    #[test]
    fn readable_at_each_frame_after_arming_and_not_for_what_came_before() {
        // SAFETY: plain call.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: a network namespace and a packet socket need root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: the namespace changes for this thread only (a new one, owned by it).
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "{}", io::Error::last_os_error());
            let lo_index = lo(true);
            let mut w = ArrivalWatch::open().expect("a packet socket");
            send_on_lo();
            assert!(!readable(w.sock.as_raw_fd(), 0), "nothing before the bind");
            w.bind(lo_index).expect("bound to lo");
            for _ in 0..50 {
                send_on_lo();
            }
            assert!(readable(w.sock.as_raw_fd(), 0), "frames came before arming");
            let (fd, handed) = w.arm();
            assert!(handed >= 100, "50 datagrams, out and in, kept or dropped: {handed}");
            assert!(!readable(fd, 0), "arming read away all it held (the kernel dropped the rest)");
            send_on_lo();
            assert!(readable(fd, 2000), "a frame after arming");
            assert_eq!(w.arm(), (fd, 2), "the datagram, out and in");
            assert_eq!(w.arm(), (fd, 0), "nothing since");
            for _ in 0..50 {
                send_on_lo();
            }
            assert_eq!(w.arm(), (fd, 100), "what the buffer dropped counts too");
            send_on_lo();
            assert!(readable(fd, 2000), "and the next one");

            // The interface goes down (an error for the socket) and up again: after arming,
            // no error ends a wait, and frames still come.
            lo(false);
            assert!(!readable(w.arm().0, 0), "no pending error");
            lo(true);
            assert!(!readable(w.arm().0, 0));
            send_on_lo();
            assert!(readable(fd, 2000), "a frame after the interface came back");
            assert!(ArrivalWatch::open().expect("socket").bind(0x7fff_fff0).is_err(), "no such interface");
        })
        .join()
        .expect("test thread");
    }
}
