//! Blocking through a long lull: a worker whose sleeps have added up to `--idle-block-after`
//! (or, while its traffic is sparse, that has made a few empty passes: `idle.rs`) arms the
//! wake-ups its queues offer (its guests' kicks, turned on for their transmit
//! queues; its uplink rx queues' interrupts), takes one more look at everything, and if that
//! finds nothing waits in `epoll` until one fires or someone rings its doorbell
//! (`view::Doorbells`: a publication, a peer's frames, an origin post, a new guest device,
//! the stop). Then it turns everything off again and polls. A blocked worker costs next to
//! no CPU (a wake-up per `--idle-block-limit`), which no timed sleep can match (`idle.rs`).
//!
//! An uplink whose port has no rx interrupts but reads a kernel interface (net_af_packet, or
//! a bond over such members) wakes the worker through frames arriving at that interface
//! instead (`arrival_watches`).
//!
//! A worker blocks only when every source it polls can wake it: not with an uplink rx queue
//! whose port has neither (net_ring, net_null, a bond over other members or one that reads a
//! single member), nor when it polls an 802.3ad bond that needs tx bursts on idle passes for
//! its LACP frames, nor while a
//! guest is being migrated (turning kicks on writes the guest's used ring unlogged, see
//! `rte::vhost::guest_kicks_on`); it then goes on with timed sleeps, and after a failed
//! attempt lets about one block limit of sleeps pass before trying again. Turning kicks off
//! after a block may write while a migration that began during it runs: what it writes (the
//! used ring's no-notify flag; with EVENT_IDX nothing) is what every backend sets for itself
//! when it starts (the destination's does), so a stale copy there is harmless.
//!
//! Even blocked, a worker wakes after `--idle-block-limit` (`DEFAULT_BLOCK_LIMIT`): the
//! counters it publishes stay that fresh, and a wake-up the vhost library can take away
//! costs at most that much. It can: a guest that replaces a vring's kick fd on a running
//! device (`VHOST_USER_SET_VRING_KICK`) leaves the worker waiting on the old one until its
//! next block, and a `net_vhost` uplink whose peer reconnects starts with its notifications
//! off.
//!
//! Races that lose nothing: an fd already readable when it is registered reports once (a
//! kick fd is never read, so one a guest ever kicked always does), and the pass after
//! arming looks at every queue anyway, so those first events are dropped (except the
//! doorbell's: a ring then means something changed that arming did not see, a guest's new
//! device for one, so the worker does not block and arms afresh; and an interface watch's,
//! emptied by arming: a frame came since, which the driver's ring may not hold yet when the
//! last look reads it, since the kernel hands it to the watch first). A kick or interrupt after
//! that pass, or a ring, ends the wait; the worker then polls at once, and arms again only
//! if that pass finds nothing.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::arrival_watches::ArrivalWatches;
use super::worker::Worker;
use crate::fib::GuestId;
use crate::rte::ethdev::RxInterrupt;
use crate::rte::fine_wait::{self, Waited};
use crate::rte::vhost;
pub use crate::stats::Wake;
use crate::view::{Doorbells, DOORBELL};

/// The longest a blocked worker waits without an event, unless `--idle-block-limit` says.
pub const DEFAULT_BLOCK_LIMIT: Duration = Duration::from_millis(100);

/// The longest a block lasts after an arming that read more frames away from an interface
/// watch than the worker had received since the arming before: the driver's ring may get one
/// of them only after the last look (`rte::arrivals`).
const BLOCK_AFTER_HELD_FRAME: Duration = Duration::from_millis(1);

/// Arrivals in a row that a worker finds nothing after, before it stops arming for a while.
const ARRIVALS_FOR_NOTHING: u32 = 8;

const UPLINK: Token = Token(1);
const KICK: Token = Token(2);
/// A watch on a kernel interface the uplink reads (`arrival_watches`).
const ARRIVAL: Token = Token(3);

/// A guest queue whose kicks are on.
struct ArmedKick {
    guest: GuestId,
    queue: u16,
    /// The device the kicks were turned on for. One that replaced it (after a reconnection)
    /// starts with kicks off, and is left alone unless the library gave it the same vid
    /// (it reuses them): turning its kicks off then changes nothing.
    vid: i32,
}

/// A worker's means to block: its poller (with its doorbell registered), and what is armed.
pub struct Blocker {
    poll: Poll,
    events: Events,
    bells: Arc<Doorbells>,
    /// Off with `--idle-block-after 0` or `--idle-sleep-max 0`.
    enabled: bool,
    /// In place of the uplink rx queues' interrupts (the port has none): the kernel
    /// interfaces the port reads, watched for arriving frames. None: interrupts.
    arrivals: Option<ArrivalWatches>,
    /// An uplink rx queue of this worker turned out to have no interrupt (the port has
    /// none) and there is no interface to watch, or its tx queue needs idle passes: it never
    /// blocks.
    uplink_deaf: bool,
    /// Sleeps left before arming is tried again after it failed (a guest being migrated, a
    /// queue without a kick fd, an interrupt that would not turn on), rather than the
    /// syscalls of arming and disarming every sleep.
    backoff: u32,
    /// What `backoff` starts from: as many sleeps at the bound as one block limit.
    backoff_sleeps: u32,
    /// How long a block lasts without an event.
    limit: Duration,
    /// Between `arm` and `disarm`.
    armed: bool,
    /// The doorbell rang, or a frame came to a watched interface, while arming: do not
    /// block this time.
    rung: bool,
    /// A frame came to a watched interface while arming (a part of `rung`), or it ended
    /// the last block: the driver's ring may not hold it yet.
    arrived: bool,
    /// Arrivals in a row after which the worker found nothing (`arrived_for_nothing`).
    for_nothing: u32,
    kicks: Vec<ArmedKick>,
    /// Every fd registered in `poll` by `arm` (the doorbell's stays).
    fds: Vec<RawFd>,
    /// Timed sleeps wait on `poll`, so that the doorbell ends them (`sleep`); false with
    /// `--idle-sleep-max 0`, or where the kernel cannot wait that finely (tried once here).
    fine_sleeps: bool,
    /// Peers ring this worker's doorbell: it sleeps or blocks (not with pure polling).
    rung_by_peers: bool,
}

impl Blocker {
    /// `poll` has the worker's doorbell registered (`Doorbells::new`); `arrivals`: what
    /// wakes it for its uplink rx queues where the port has no rx interrupts (None: their
    /// interrupts). Nothing is allocated after this (room for a kick per guest queue slot and
    /// a few uplink queues).
    pub fn new(poll: Poll, bells: Arc<Doorbells>, enabled: bool, limit: Duration, sleep_max_us: u32, arrivals: Option<ArrivalWatches>) -> Blocker {
        let backoff_sleeps = (limit.as_micros() / u128::from(sleep_max_us.max(1))).clamp(1, u128::from(u32::MAX)) as u32;
        let poll_fd = poll.as_raw_fd();
        Blocker {
            poll,
            events: Events::with_capacity(64),
            bells,
            enabled,
            arrivals,
            uplink_deaf: false,
            backoff: 0,
            backoff_sleeps,
            limit,
            armed: false,
            rung: false,
            arrived: false,
            for_nothing: 0,
            kicks: Vec::with_capacity(crate::view::MAX_SLOTS),
            fds: Vec::with_capacity(crate::view::MAX_SLOTS + 64),
            // A wait that returns at once says whether the kernel (and any seccomp filter)
            // allows it; nothing is registered yet but the doorbell, which nobody rang.
            fine_sleeps: sleep_max_us > 0 && fine_wait::wait(poll_fd, Duration::ZERO) != Waited::Unsupported,
            // `enabled` (blocking) implies sleeping.
            rung_by_peers: sleep_max_us > 0,
        }
    }

    pub fn armed(&self) -> bool {
        self.armed
    }

    /// Wakes worker `w` if it sleeps or blocks (after this worker made frames for it
    /// visible). Every worker has the same settings, so this one's say whether peers do.
    #[inline]
    pub fn ring_peer(&self, w: usize) {
        if self.rung_by_peers {
            self.bells.ring(w);
        }
    }

    /// A timed sleep of worker `me` for `d`, which its doorbell ends (see `Worker::idle_sleep`);
    /// true if it was rung (or woken by a signal) before `d` ran out.
    pub fn sleep(&mut self, me: usize, d: Duration) -> bool {
        // Armed, the flag is the block's: clearing it after the sleep would lose a ring.
        debug_assert!(!self.armed);
        if self.fine_sleeps {
            self.bells.set_asleep(me, true);
            let waited = fine_wait::wait(self.poll.as_raw_fd(), d);
            self.bells.set_asleep(me, false);
            if waited != Waited::Unsupported {
                return waited == Waited::Event;
            }
            self.fine_sleeps = false;
        }
        std::thread::sleep(d);
        false
    }

    /// Registers `fd` to end a wait; false if it cannot (the caller then does not block).
    fn watch(&mut self, fd: RawFd, token: Token) -> bool {
        watch_in(&self.poll, &mut self.fds, fd, token)
    }

    /// Drops the events already pending (see the module's comment), noting a ring or an
    /// arrival. A kick fd
    /// is never read, so every one a guest ever kicked reports once when registered: with
    /// more of them than `events` holds, it takes several rounds.
    fn take_stale_events(&mut self) {
        while self.poll.poll(&mut self.events, Some(Duration::ZERO)).is_ok() {
            let mut n = 0;
            for e in self.events.iter() {
                self.rung |= e.token() == DOORBELL || e.token() == ARRIVAL;
                self.arrived |= e.token() == ARRIVAL;
                n += 1;
            }
            if n < self.events.capacity() {
                return;
            }
        }
    }

    /// Waits for an event or the block's limit; says which came first.
    fn wait(&mut self) -> Wake {
        let limit = if self.arrivals.as_ref().is_some_and(ArrivalWatches::held) { self.limit.min(BLOCK_AFTER_HELD_FRAME) } else { self.limit };
        if self.poll.poll(&mut self.events, Some(limit)).is_err() {
            // EINTR (a signal for the process landed on this thread): counted as a timeout;
            // the worker looks at everything anyway.
            return Wake::Timeout;
        }
        let mut why = Wake::Timeout;
        for e in self.events.iter() {
            self.arrived |= e.token() == ARRIVAL;
            why = match e.token() {
                KICK => Wake::Kick,
                UPLINK | ARRIVAL if why != Wake::Kick => Wake::Uplink,
                DOORBELL if why == Wake::Timeout => Wake::Doorbell,
                _ => why,
            };
        }
        why
    }

    /// Watches every kernel interface the uplink reads; false if one cannot be. `seen`: the
    /// uplink frames the worker has received so far.
    fn watch_arrivals(&mut self, seen: u64) -> bool {
        let (poll, fds) = (&self.poll, &mut self.fds);
        match self.arrivals.as_mut() {
            Some(a) => a.arm(|fd| watch_in(poll, fds, fd, ARRIVAL), seen),
            None => true,
        }
    }

    /// Whether a frame came to a watched interface while arming, or ended the last block:
    /// the pass after that found nothing, the worker should look a while longer before it
    /// blocks again (`IdleBackoff::restart_lull`).
    pub fn arrived(&self) -> bool {
        self.arrived
    }

    /// A frame came to a watched interface and the pass after found nothing. Mostly it is on
    /// its way to the driver's ring; but frames the driver never takes (another member of
    /// the bond than the one it reads, fragments its fanout merges) would keep waking the
    /// worker, which would then never sleep: after `ARRIVALS_FOR_NOTHING` in a row it sleeps
    /// for about one block limit before it arms again.
    pub fn arrived_for_nothing(&mut self) {
        self.for_nothing += 1;
        if self.for_nothing >= ARRIVALS_FOR_NOTHING {
            self.for_nothing = 0;
            self.backoff = self.backoff_sleeps;
        }
    }

    /// The pass after an arrival found frames.
    pub fn arrival_found(&mut self) {
        self.for_nothing = 0;
    }

    /// Between passes, with the TSC read at `now` and `frames` moved since the last call:
    /// a worker whose traffic is dense lets its interface watches go (`arrival_watches`).
    pub fn count_traffic(&mut self, now: u64, frames: u64) {
        if !self.armed {
            if let Some(a) = self.arrivals.as_mut() {
                a.count(now, frames);
            }
        }
    }

    fn unwatch_all(&mut self) {
        for fd in self.fds.drain(..) {
            // A kick fd the library closed meanwhile left the epoll set by itself.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        }
    }
}

/// Registers `fd` in `poll` to end a wait, noting it in `fds` (room for it reserved); false
/// if it cannot be.
fn watch_in(poll: &Poll, fds: &mut Vec<RawFd>, fd: RawFd, token: Token) -> bool {
    if fds.len() == fds.capacity() {
        return false;
    }
    match poll.registry().register(&mut SourceFd(&fd), token, Interest::READABLE) {
        Ok(()) => {
            fds.push(fd);
            true
        }
        // Two queues sharing one fd (one interrupt vector for several rx queues).
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => true,
        Err(_) => false,
    }
}

impl Worker {
    /// An idle worker's timed sleep, between passes. Parked (`WorkerLinks::park`) as when it
    /// blocks, so a guest's detach does not wait for it. It waits on its poller, which holds
    /// only its doorbell between blocks, so that a publication, a peer's frames or an origin
    /// post end the sleep at once rather than wait it out (a publication waits for every
    /// worker). No last look is needed before it, unlike a block: a ring that comes before
    /// the flag is set only leaves the sleep to run its course, as a plain sleep would. A
    /// ring that comes after the wait ended leaves an event that ends the next sleep early,
    /// or that the next arming takes as a change (`take_stale_events`): either is harmless.
    pub(super) fn idle_sleep(&mut self, d: Duration) {
        let _parked = self.links.park();
        self.blocker.sleep(self.me, d);
    }

    /// After a pass that found nothing in a long lull: arms every wake-up, so that the next
    /// pass is the last look before blocking. False (nothing left armed) where some source
    /// cannot wake the worker; it then sleeps as before.
    pub(super) fn arm_wakeups(&mut self) -> bool {
        if !self.blocker.enabled || self.blocker.uplink_deaf {
            return false;
        }
        // Dense traffic on an uplink watched through its kernel interface: sleeps only.
        if self.blocker.arrivals.as_ref().is_some_and(ArrivalWatches::dense) {
            return false;
        }
        // An 802.3ad bond without dedicated LACP queues sends its LACP frames only from inside
        // a tx burst (`TxQueue::kick`): a blocked worker would hold them back, and the
        // partner gives up on the link after 3 s without them. A worker with guest queues
        // only may block: the bond's own workers, which poll it, send them.
        if self.uplink_tx.kicks_when_idle() && !self.uplink_rx.is_empty() {
            self.blocker.uplink_deaf = true;
            self.idle.never_block();
            return false;
        }
        if self.blocker.backoff > 0 {
            self.blocker.backoff -= 1;
            return false;
        }
        // Frames the uplink's tx queue has not taken yet: no event would say it has room.
        // The switch's own frames wait while the link is down (`poll_once`), and the
        // link-up publication rings the doorbell: they do not keep the worker awake then.
        if !self.uplink_pending.is_empty() || (self.tables.uplink_up && self.origin_pending()) {
            return false;
        }
        // Nothing is written into a guest's ring while any of them is being migrated.
        if self.any_guest_migrating() {
            self.blocker.backoff = self.blocker.backoff_sleeps;
            return false;
        }
        self.blocker.rung = false;
        self.blocker.arrived = false;
        self.blocker.armed = true;
        // From here on whoever gives this worker work rings (see `view::doorbell`).
        self.blocker.bells.set_asleep(self.me, true);
        if !self.blocker.watch_arrivals(self.uplink_received) {
            self.disarm_wakeups();
            self.blocker.backoff = self.blocker.backoff_sleeps;
            return false;
        }
        let interrupts = if self.blocker.arrivals.is_none() { self.uplink_rx.len() } else { 0 };
        for i in 0..interrupts {
            let ok = match self.uplink_rx[i].arm_interrupt() {
                Ok(fd) => self.blocker.watch(fd, UPLINK),
                Err(RxInterrupt::Unsupported) => {
                    self.blocker.uplink_deaf = true;
                    self.idle.never_block();
                    false
                }
                Err(RxInterrupt::Failed) => false,
            };
            if !ok {
                self.disarm_wakeups();
                self.blocker.backoff = self.blocker.backoff_sleeps;
                return false;
            }
        }
        // While the uplink is down no guest is polled (`link_down.rs`): their kicks would
        // wake the worker for nothing. The link's return is a publication, which rings.
        let guests = if self.tables.uplink_up { self.guest_queues.all().len() } else { 0 };
        for i in 0..guests {
            let (g, q) = self.guest_queues.all()[i];
            let armed = {
                // A guest without a device sends nothing; its device's arrival rings the bell.
                let Some(dev) = self.links.device(g.index()) else { continue };
                if q >= self.links.active_queues(g.index()) {
                    continue;
                }
                self.blocker.kicks.push(ArmedKick { guest: g, queue: q, vid: dev.vid() });
                vhost::guest_kicks_on(&dev, q)
            };
            if !armed.is_some_and(|fd| self.blocker.watch(fd, KICK)) {
                self.disarm_wakeups();
                self.blocker.backoff = self.blocker.backoff_sleeps;
                return false;
            }
        }
        // Kicks on (and `asleep` set) before the last look at the queues.
        fence(Ordering::SeqCst);
        self.blocker.take_stale_events();
        true
    }

    /// Whether a live migration is copying the memory of a guest this worker polls.
    fn any_guest_migrating(&self) -> bool {
        self.guest_queues.all().iter().any(|&(g, _)| self.links.device(g.index()).is_some_and(|d| vhost::migrating(&d)))
    }

    /// After the pass that followed `arm_wakeups`: blocks if it moved nothing and nothing
    /// changed, then turns every wake-up off. Returns why the block ended, if it blocked.
    pub(super) fn block_or_disarm(&mut self, moved: usize) -> Option<Wake> {
        let mut woke = None;
        if moved == 0 && !self.blocker.rung && !self.stopping() && self.handover.published() == self.epoch {
            self.links.pass_done();
            self.stats.add_block();
            let _parked = self.links.park();
            woke = Some(self.blocker.wait());
        }
        self.disarm_wakeups();
        woke
    }

    /// Turns every armed wake-up off (the uplink's interrupts, the guests' kicks; a watched
    /// interface's socket only leaves the epoll set).
    pub(super) fn disarm_wakeups(&mut self) {
        self.blocker.bells.set_asleep(self.me, false);
        if self.blocker.arrivals.is_none() {
            for q in self.uplink_rx.iter_mut() {
                q.disarm_interrupt();
            }
        }
        self.blocker.unwatch_all();
        for k in self.blocker.kicks.drain(..) {
            if let Some(dev) = self.links.device(k.guest.index()).filter(|d| d.vid() == k.vid) {
                vhost::guest_kicks_off(&dev, k.queue);
            }
        }
        self.blocker.armed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn blocker(limit_ms: u64) -> (Blocker, Arc<Doorbells>) {
        let (bells, mut polls) = Doorbells::new(1).expect("doorbells");
        let poll = polls.pop().expect("poll");
        (Blocker::new(poll, Arc::clone(&bells), true, Duration::from_millis(limit_ms), 250, None), bells)
    }

    /// A socket stands in for a kick fd: readable after a write, never read.
    #[test]
    fn old_readiness_is_dropped_and_each_new_event_ends_a_wait_with_its_reason() {
        let (mut b, bells) = blocker(50);
        let (mut tx, rx) = UnixStream::pair().expect("pair");
        tx.write_all(b"k").expect("kick before arming");
        assert!(b.watch(rx.as_raw_fd(), KICK));
        assert!(b.watch(rx.as_raw_fd(), KICK), "the same fd twice (queues sharing one) is fine");
        b.take_stale_events();
        assert!(!b.rung);
        assert_eq!(b.wait(), Wake::Timeout, "a kick from before arming does not end the wait");
        tx.write_all(b"k").expect("kick");
        assert_eq!(b.wait(), Wake::Kick);
        assert_eq!(b.wait(), Wake::Timeout, "an edge ends one wait only");

        bells.set_asleep(0, true);
        bells.ring(0);
        b.take_stale_events();
        assert!(b.rung, "a ring while arming is remembered: the worker does not block");
        bells.ring(0);
        assert_eq!(b.wait(), Wake::Timeout, "that ring cleared the flag: one ring per block");
        bells.set_asleep(0, true);
        bells.ring(0);
        assert_eq!(b.wait(), Wake::Doorbell);
        b.unwatch_all();
        tx.write_all(b"k").expect("kick");
        assert_eq!(b.wait(), Wake::Timeout, "nothing watched any more");

        // An interface watch is emptied when armed: readable by the time it is registered, a
        // frame came since, maybe not in the driver's ring yet at the last look.
        b.rung = false;
        let (mut frame, watch) = UnixStream::pair().expect("pair");
        frame.write_all(b"f").expect("a frame");
        assert!(b.watch(watch.as_raw_fd(), ARRIVAL));
        b.take_stale_events();
        assert!(b.rung, "an arrival while arming: the worker does not block");
        frame.write_all(b"f").expect("a frame");
        assert_eq!(b.wait(), Wake::Uplink, "a frame at a watched interface is the uplink's wake-up");
    }

    /// A ring ends a timed sleep (here one of a minute; the ringer rings until it does).
    #[test]
    fn a_ring_ends_a_timed_sleep() {
        let (mut b, bells) = blocker(50);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (d, bl) = (Arc::clone(&done), Arc::clone(&bells));
        let ringer = std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) {
                bl.ring(0);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        if !b.fine_sleeps {
            done.store(true, Ordering::SeqCst);
            ringer.join().expect("ringer");
            eprintln!("skipped: this kernel has no epoll_pwait2");
            return;
        }
        let t = std::time::Instant::now();
        let rung = b.sleep(0, Duration::from_secs(60));
        done.store(true, Ordering::SeqCst);
        ringer.join().expect("ringer");
        assert!(rung && t.elapsed() < Duration::from_secs(30), "the ring ended the sleep ({:?})", t.elapsed());
        // A ring between the wake-up and the flag's clearing may have left an event.
        b.take_stale_events();
        bells.ring(0);
        assert!(!b.sleep(0, Duration::from_millis(1)), "awake again, the worker is not rung");
    }

    #[test]
    fn stale_events_beyond_one_poll_are_all_dropped() {
        let (mut b, _bells) = blocker(50);
        let pairs: Vec<(UnixStream, UnixStream)> = (0..150).map(|_| UnixStream::pair().expect("pair")).collect();
        for (tx, rx) in &pairs {
            (&*tx).write_all(b"k").expect("kick");
            assert!(b.watch(rx.as_raw_fd(), KICK));
        }
        b.take_stale_events();
        assert_eq!(b.wait(), Wake::Timeout, "150 old kicks, more than one poll returns, all dropped");
    }
}
