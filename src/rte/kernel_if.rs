//! The kernel network interface behind a port (net_af_packet, net_tap: `PortInfo::if_index`),
//! asked for its flags. DPDK 22.11's net_af_packet reports its link up from start to stop
//! whatever the interface does, so the switch reads the interface's carrier itself.
//!
//! Not DPDK, but an `ioctl` on a raw descriptor: the crate keeps such calls in `rte`/`sys`.

use std::ffi::{c_char, CStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub struct KernelIface {
    /// A datagram socket to ask through (any family answers SIOCGIFFLAGS), in the switch's
    /// network namespace, where the interface is.
    sock: OwnedFd,
    name: [c_char; libc::IFNAMSIZ],
}

impl KernelIface {
    /// The interface with index `if_index` in the switch's network namespace.
    pub fn from_index(if_index: u32) -> io::Result<KernelIface> {
        let mut name = [0 as c_char; libc::IFNAMSIZ];
        // SAFETY: name has the IFNAMSIZ bytes if_indextoname writes at most.
        if unsafe { libc::if_indextoname(if_index, name.as_mut_ptr()) }.is_null() {
            return Err(io::Error::last_os_error());
        }
        Self::with_name(name)
    }

    /// The interface named `name` (it need not exist yet: `running` says false while it
    /// does not). Err for a name no interface can have (empty, too long, a NUL byte).
    pub fn from_name(name: &str) -> io::Result<KernelIface> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is no interface name")));
        }
        let mut buf = [0 as c_char; libc::IFNAMSIZ];
        for (d, s) in buf.iter_mut().zip(name.bytes()) {
            *d = s as c_char;
        }
        Self::with_name(buf)
    }

    /// `name`: NUL-terminated within its IFNAMSIZ bytes.
    fn with_name(name: [c_char; libc::IFNAMSIZ]) -> io::Result<KernelIface> {
        // SAFETY: plain socket creation; the descriptor is owned from here on.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a new descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(KernelIface { sock, name })
    }

    /// The interface's index now (0 if there is no such interface any more).
    pub fn index(&self) -> u32 {
        // SAFETY: name is NUL-terminated within its IFNAMSIZ bytes.
        unsafe { libc::if_nametoindex(self.name.as_ptr()) }
    }

    pub fn name(&self) -> String {
        // SAFETY: if_indextoname wrote a NUL-terminated name into the array.
        unsafe { CStr::from_ptr(self.name.as_ptr()) }.to_string_lossy().into_owned()
    }

    /// Whether the interface is up with carrier (IFF_UP and IFF_RUNNING): what a frame
    /// sent into it needs to go anywhere. Err if it cannot be asked (e.g. it is gone).
    pub fn running(&self) -> io::Result<bool> {
        // SAFETY: ifreq is plain old data; all zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        req.ifr_name = self.name;
        // SAFETY: SIOCGIFFLAGS reads the name and writes ifru_flags of the ifreq we own.
        if unsafe { libc::ioctl(self.sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = i32::from(unsafe { req.ifr_ifru.ifru_flags });
        Ok(flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0)
    }
}
