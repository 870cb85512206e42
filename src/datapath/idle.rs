//! Adaptive idle sleep: a worker that has found nothing to do for a while sleeps for a short,
//! growing interval, bounded by `--idle-sleep-max`, and polls flat out again from the first
//! frame. A VM host is idle most of the day; a core spinning on empty queues is lost to the
//! VMs all that time.
//!
//! Frames that arrive while the worker sleeps wait where they always wait (the uplink's rx
//! rings, the guests' virtqueues): a sleep delays them by at most the current interval, it
//! does not drop them as long as the rings hold what arrives meanwhile. The interval starts
//! at 1 us and doubles, so a short lull costs microseconds, and only a long one reaches the
//! bound. What comes through the worker's doorbell (a change, a peer's frames, the switch's
//! own frames) ends a sleep at once (`block.rs`, `Worker::idle_sleep`).
//!
//! Past a longer lull (`--idle-block-after`), the worker may block instead, until a frame
//! or a change wakes it (`block.rs`): a timed wake-up costs this VM about 25 us of CPU, so
//! sleeping alone cannot bring an idle worker much below a tenth of a core at a bound that
//! keeps the rings from overflowing.
//!
//! Sparse traffic: a lull that lasted at least `SPARSE_GAP` from its first sleep to the
//! frame that ended it says frames come further apart than that, and sleeping through the
//! next gap would cost more wake-ups (and, on average, more delay) than blocking through it.
//! So the next lull blocks after a few empty passes instead of after `--idle-block-after` of
//! spinning and sleeps: one wake-up per frame. A lull that got as far as sleeping but ended
//! sooner goes back to the ramp, so a denser stream is polled as before rather than woken
//! frame by frame; a lull too short to sleep (the gaps inside a burst) changes nothing. The
//! lull is timed with the clock read at its first sleep and at its end, never per pass.
//!
//! Pure state, unit-tested; the worker does the sleeping and blocking, and reads the clock.

use std::time::{Duration, Instant};

/// Empty passes in a row before the first sleep: a pass over a few queues takes a fraction
/// of a microsecond, so this is a lull of some hundreds of microseconds, short enough to
/// save the core between bursts, long enough not to sleep inside one.
pub const IDLE_PASSES_BEFORE_SLEEP: u32 = 1024;

/// Empty passes before a worker whose traffic is sparse blocks again: some microseconds,
/// past the gaps between the frames of one burst.
pub const IDLE_PASSES_BEFORE_QUICK_BLOCK: u32 = 64;

/// Frames at least this far apart are sparse: blocking through the gap (one wake-up, about
/// 50 us late) beats sleeping through it, which on this VM costs some 25 us of CPU per
/// timed wake-up and up to a sleep's length of delay (the default bound, 250 us).
pub const SPARSE_GAP: Duration = Duration::from_micros(250);

/// The worker's timer slack: sleeps of a few microseconds must not be rounded up to the
/// kernel's default 50 us. (The bench's idle floor sleeps with the same.)
pub const IDLE_TIMER_SLACK_NS: u64 = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdleBackoff {
    max_us: u32,
    /// Microseconds of sleep after which the worker may block (0: never).
    block_after_us: u64,
    idle_passes: u32,
    /// The interval of the last sleep (0: not sleeping).
    current_us: u32,
    /// Microseconds slept since the lull began.
    slept_us: u64,
    /// When the lull's first sleep began (None: it has not slept).
    asleep_since: Option<Instant>,
    /// The last lull was long (module comment): this one blocks after a few passes.
    sparse: bool,
}

impl IdleBackoff {
    /// `max_us` 0: never sleep (pure polling), nor block. `block_after_us` 0: never block.
    pub fn new(max_us: u32, block_after_us: u64) -> IdleBackoff {
        let block_after_us = if max_us == 0 { 0 } else { block_after_us };
        IdleBackoff { max_us, block_after_us, idle_passes: 0, current_us: 0, slept_us: 0, asleep_since: None, sparse: false }
    }

    /// The worker found that it cannot block (a source it polls has no wake-up): from now on
    /// it only sleeps, and sparse traffic does not shorten its lulls either.
    pub fn never_block(&mut self) {
        self.block_after_us = 0;
        self.sparse = false;
    }

    /// A frame came to a watched interface (`arrival_watches`), and the pass after it found
    /// nothing: the kernel hands the frame to the watch before the driver's ring, so it may
    /// still be on its way. The lull starts again, so the worker makes its passes (and, with
    /// sparse traffic, its few passes) before it arms again, rather than blocking at once.
    pub fn restart_lull(&mut self) {
        // `asleep_since` stays: the frame, when it is found, ends the lull that began before.
        self.idle_passes = 0;
        self.current_us = 0;
        self.slept_us = 0;
    }

    /// Whether the lull has lasted long enough to block rather than sleep (asked when
    /// `after_pass` says sleep).
    #[inline]
    pub fn long_lull(&self) -> bool {
        self.block_after_us != 0 && (self.sparse || self.slept_us >= self.block_after_us)
    }

    /// After a pass that moved `moved` frames: how long to sleep now, in microseconds (0: poll
    /// on). `now` is read only at a lull's first sleep and at the end of a lull that slept.
    #[inline]
    pub fn after_pass(&mut self, moved: bool, now: impl FnOnce() -> Instant) -> u32 {
        if moved || self.max_us == 0 {
            // A lull that got as far as sleeping decides how the next one goes.
            if let Some(since) = self.asleep_since.take() {
                self.sparse = self.block_after_us != 0 && now().saturating_duration_since(since) >= SPARSE_GAP;
            }
            self.idle_passes = 0;
            self.current_us = 0;
            self.slept_us = 0;
            return 0;
        }
        let before_sleep = if self.sparse { IDLE_PASSES_BEFORE_QUICK_BLOCK } else { IDLE_PASSES_BEFORE_SLEEP };
        if self.idle_passes < before_sleep {
            self.idle_passes += 1;
            return 0;
        }
        if self.asleep_since.is_none() {
            self.asleep_since = Some(now());
        }
        self.current_us = self.current_us.saturating_mul(2).clamp(1, self.max_us);
        self.slept_us = self.slept_us.saturating_add(u64::from(self.current_us));
        self.current_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A clock the tests move by hand.
    struct Clock(Cell<Instant>);

    impl Clock {
        fn new() -> Clock {
            Clock(Cell::new(Instant::now()))
        }
        fn now(&self) -> Instant {
            self.0.get()
        }
        fn advance(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    fn idle(b: &mut IdleBackoff, c: &Clock, passes: u32) -> Vec<u32> {
        (0..passes).map(|_| b.after_pass(false, || c.now())).collect()
    }

    #[test]
    fn sleeps_after_a_lull_grow_to_the_bound_and_stop_at_the_first_frame() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(100, 0);
        assert!(idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "no sleep inside a short lull");
        assert_eq!(idle(&mut b, &c, 9), vec![1, 2, 4, 8, 16, 32, 64, 100, 100]);
        assert_eq!(b.after_pass(true, || c.now()), 0);
        assert!(idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "a frame starts the count again");
        assert_eq!(b.after_pass(false, || c.now()), 1);
    }

    #[test]
    fn zero_is_pure_polling() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(0, 1000);
        assert!(idle(&mut b, &c, 10 * IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0));
        assert!(!b.long_lull(), "pure polling never blocks either");
    }

    #[test]
    fn a_lull_is_long_once_its_sleeps_add_up_to_the_threshold_and_a_frame_ends_it() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(100, 300);
        idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP);
        // 1 + 2 + 4 + ... + 64 = 127, then 100 each: 227, 327.
        assert_eq!(idle(&mut b, &c, 8), vec![1, 2, 4, 8, 16, 32, 64, 100]);
        assert!(!b.long_lull(), "227 us");
        assert_eq!(b.after_pass(false, || c.now()), 100);
        assert!(b.long_lull(), "327 us");
        b.after_pass(true, || c.now());
        assert!(!b.long_lull(), "a frame starts a new lull");
        let never = IdleBackoff::new(100, 0);
        assert!(!never.long_lull());
    }

    /// Empty passes until the worker would arm its wake-ups (a sleep in a long lull).
    fn passes_to_block(b: &mut IdleBackoff, c: &Clock) -> u32 {
        (1..).find(|_| b.after_pass(false, || c.now()) > 0 && b.long_lull()).expect("blocks")
    }

    const RAMP: u32 = IDLE_PASSES_BEFORE_SLEEP + 11; // 1+2+...+128, then 250 three times: 1005 us

    /// A lull that lasts `gap` after the worker would block, then a frame.
    fn blocked_for(b: &mut IdleBackoff, c: &Clock, gap: Duration) -> u32 {
        let passes = passes_to_block(b, c);
        c.advance(gap);
        b.after_pass(true, || c.now());
        passes
    }

    #[test]
    fn after_a_lull_longer_than_a_sparse_gap_the_next_blocks_after_a_few_passes() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(250, 1000);
        assert_eq!(blocked_for(&mut b, &c, Duration::from_millis(5)), RAMP, "the first lull spins, then sleeps 1 ms");
        assert_eq!(blocked_for(&mut b, &c, Duration::from_millis(5)), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
        // Busy passes in a row, and a gap inside a burst, change nothing.
        b.after_pass(true, || c.now());
        idle(&mut b, &c, IDLE_PASSES_BEFORE_QUICK_BLOCK - 1);
        b.after_pass(true, || c.now());
        assert_eq!(passes_to_block(&mut b, &c), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
    }

    #[test]
    fn a_lull_that_sleeps_long_enough_makes_the_traffic_sparse_without_a_block() {
        // Frames 600 us apart with sleeps alone never reach the 1 ms threshold; the lull from
        // its first sleep to the frame is still longer than a sparse gap.
        let c = Clock::new();
        let mut b = IdleBackoff::new(250, 1000);
        idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP + 1);
        c.advance(Duration::from_micros(600));
        assert!(!b.long_lull());
        b.after_pass(true, || c.now());
        assert_eq!(passes_to_block(&mut b, &c), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
    }

    #[test]
    fn a_lull_shorter_than_a_sparse_gap_goes_back_to_the_ramp_and_a_long_one_comes_back() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(250, 1000);
        blocked_for(&mut b, &c, Duration::from_millis(5));
        // Woken after 100 us: frames come closer than a sparse gap.
        assert_eq!(blocked_for(&mut b, &c, Duration::from_micros(100)), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
        assert_eq!(blocked_for(&mut b, &c, Duration::from_millis(5)), RAMP, "back to the ramp");
        assert_eq!(passes_to_block(&mut b, &c), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1, "one long lull is enough again");
        // The same with a small bound: the gap, not the bound, decides.
        let mut b = IdleBackoff::new(10, 1000);
        blocked_for(&mut b, &c, Duration::from_millis(5));
        blocked_for(&mut b, &c, Duration::from_micros(60));
        assert!(passes_to_block(&mut b, &c) > IDLE_PASSES_BEFORE_SLEEP, "60 us apart is not sparse, whatever the bound");
    }

    #[test]
    fn a_restarted_lull_makes_its_passes_again_and_stays_sparse() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(250, 1000);
        blocked_for(&mut b, &c, Duration::from_millis(5));
        assert_eq!(passes_to_block(&mut b, &c), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1, "sparse");
        // Woken for a frame the pass after the wake-up does not see yet.
        c.advance(Duration::from_millis(5));
        b.restart_lull();
        assert_eq!(passes_to_block(&mut b, &c), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1, "a few passes again, not at once");
        let mut ramp = IdleBackoff::new(250, 1000);
        ramp.restart_lull();
        assert_eq!(passes_to_block(&mut ramp, &c), RAMP, "and not sparse where it was not");
    }

    #[test]
    fn without_blocking_sparse_traffic_changes_nothing() {
        let c = Clock::new();
        for mut b in [IdleBackoff::new(250, 0), { let mut b = IdleBackoff::new(250, 1000); b.never_block(); b }] {
            idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP + 1);
            c.advance(Duration::from_millis(5));
            b.after_pass(true, || c.now());
            assert!(idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "the full spin before sleeping");
            for _ in 0..100 {
                b.after_pass(false, || c.now());
                assert!(!b.long_lull());
            }
        }
    }

    #[test]
    fn a_bound_of_one_microsecond_stays_there() {
        let c = Clock::new();
        let mut b = IdleBackoff::new(1, 0);
        idle(&mut b, &c, IDLE_PASSES_BEFORE_SLEEP);
        assert_eq!(idle(&mut b, &c, 3), vec![1, 1, 1]);
    }
}
