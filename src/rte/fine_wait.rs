//! A wait on an epoll set with a timeout to the nanosecond: `epoll_pwait2` (Linux 5.11). An
//! idle worker's timed sleep is one, on its own poller with its doorbell registered, so that a
//! publication or a peer's frames end the sleep at once rather than after it (`mio`'s waits
//! round timeouts up to milliseconds, far longer than a worker's sleeps of 1-250 us).
//!
//! Not DPDK, but a raw system call: the crate keeps such calls in `rte`/`sys`.

use std::os::fd::RawFd;
use std::time::Duration;

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waited {
    /// An event came (or a signal interrupted the wait).
    Event,
    /// The timeout passed.
    Timeout,
    /// The call failed other than by a signal: no `epoll_pwait2` in the kernel (before
    /// 5.11), or a seccomp filter that refuses it. The caller sleeps another way.
    Unsupported,
}

// The call takes the kernel's 64-bit timespec, which libc's is on 64-bit targets only.
const _: () = assert!(std::mem::size_of::<libc::timespec>() == 16);

/// Waits at most `timeout` for an event on the epoll set `epoll`, taking up to a few of its
/// events (their readiness is consumed, as any wait on the set would).
pub fn wait(epoll: RawFd, timeout: Duration) -> Waited {
    let ts = libc::timespec { tv_sec: timeout.as_secs() as libc::time_t, tv_nsec: timeout.subsec_nanos() as libc::c_long };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `events` has room for the 4 events announced; `ts` is a valid timespec read
    // by the call; no signal mask (null), so its size is not read.
    let n = unsafe { libc::syscall(libc::SYS_epoll_pwait2, epoll, events.as_mut_ptr(), events.len() as libc::c_int, &ts as *const libc::timespec, std::ptr::null::<libc::sigset_t>(), 0usize) };
    match n {
        0 => Waited::Timeout,
        n if n > 0 => Waited::Event,
        _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => Waited::Event,
        // Taking any other error for an event would turn every sleep into a spin.
        _ => Waited::Unsupported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Instant;

    #[test]
    fn a_short_timeout_is_kept_and_an_event_ends_the_wait_early() {
        let poll = mio::Poll::new().expect("poll");
        let waker = mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker");
        let fd = poll.as_raw_fd();
        if wait(fd, Duration::ZERO) == Waited::Unsupported {
            eprintln!("skipped: this kernel has no epoll_pwait2");
            return;
        }
        // A wait rounded up to a millisecond would never take less; a loaded machine may
        // make one take longer now and then, so the shortest of a few is what counts.
        let mut shortest = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            assert_eq!(wait(fd, Duration::from_micros(200)), Waited::Timeout);
            let took = t.elapsed();
            assert!(took >= Duration::from_micros(200), "not before the timeout: {took:?}");
            shortest = shortest.min(took);
        }
        assert!(shortest < Duration::from_millis(1), "rounded up to a millisecond: {shortest:?}");
        waker.wake().expect("wake");
        let t = Instant::now();
        assert_eq!(wait(fd, Duration::from_secs(10)), Waited::Event);
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!(wait(fd, Duration::ZERO), Waited::Timeout, "the event was taken");
    }
}
