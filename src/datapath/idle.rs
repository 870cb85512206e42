//! Adaptive idle sleep: a worker that has found nothing to do for a while sleeps for a short,
//! growing interval, bounded by `--idle-sleep-max`, and polls flat out again from the first
//! frame. A VM host is idle most of the day; a core spinning on empty queues is lost to the
//! VMs all that time.
//!
//! Frames that arrive while the worker sleeps wait where they always wait (the uplink's rx
//! rings, the guests' virtqueues): a sleep delays them by at most the current interval, it
//! does not drop them as long as the rings hold what arrives meanwhile. The interval starts
//! at 1 us and doubles, so a short lull costs microseconds, and only a long one reaches the
//! bound.
//!
//! Past a longer lull (`--idle-block-after`), the worker may block instead, until a frame
//! or a change wakes it (`block.rs`): a timed wake-up costs this VM about 25 us of CPU, so
//! sleeping alone cannot bring an idle worker much below a tenth of a core at a bound that
//! keeps the rings from overflowing.
//!
//! Sparse traffic: when a frame woke the worker from a block that had lasted at least a
//! sleep at the bound, frames are coming further apart than a sleep, and sleeping through
//! the next gap would cost more wake-ups (and, on average, more delay) than blocking. So the
//! next lull blocks after a few empty passes instead of after `--idle-block-after` of
//! spinning and sleeps: one wake-up per frame. Any lull that does not end that way (a frame
//! sooner than a sleep at the bound, or found while sleeping) goes back to the ramp, so a
//! denser stream is polled as before rather than woken frame by frame.
//!
//! Pure state, unit-tested; the worker does the sleeping and blocking.

/// Empty passes in a row before the first sleep: a pass over a few queues takes a fraction
/// of a microsecond, so this is a lull of some hundreds of microseconds, short enough to
/// save the core between bursts, long enough not to sleep inside one.
pub const IDLE_PASSES_BEFORE_SLEEP: u32 = 1024;

/// Empty passes before a worker whose traffic is sparse blocks again: some microseconds,
/// past the gaps between the frames of one burst.
pub const IDLE_PASSES_BEFORE_QUICK_BLOCK: u32 = 64;

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
    /// The last pass followed a block that an event ended after at least a sleep at the
    /// bound (`woke`).
    woke_from_long_block: bool,
    /// The last lull ended that way: this one blocks after a few passes (module comment).
    sparse: bool,
}

impl IdleBackoff {
    /// `max_us` 0: never sleep (pure polling), nor block. `block_after_us` 0: never block.
    pub fn new(max_us: u32, block_after_us: u64) -> IdleBackoff {
        let block_after_us = if max_us == 0 { 0 } else { block_after_us };
        IdleBackoff { max_us, block_after_us, idle_passes: 0, current_us: 0, slept_us: 0, woke_from_long_block: false, sparse: false }
    }

    /// Whether the lull has lasted long enough to block rather than sleep (asked when
    /// `after_pass` says sleep).
    #[inline]
    pub fn long_lull(&self) -> bool {
        self.block_after_us != 0 && (self.sparse || self.slept_us >= self.block_after_us)
    }

    /// An event (not the block's limit) ended a block that lasted `blocked`; the next pass
    /// tells whether it brought a frame.
    pub fn woke(&mut self, blocked: std::time::Duration) {
        self.woke_from_long_block = blocked.as_micros() >= u128::from(self.max_us);
    }

    /// After a pass that moved `moved` frames: how long to sleep now, in microseconds (0: poll
    /// on).
    #[inline]
    pub fn after_pass(&mut self, moved: bool) -> u32 {
        if moved || self.max_us == 0 {
            // A lull that got as far as sleeping decides how the next one goes; a shorter one
            // (the gaps inside a burst) says nothing either way.
            if self.current_us > 0 {
                self.sparse = self.woke_from_long_block;
            }
            self.woke_from_long_block = false;
            self.idle_passes = 0;
            self.current_us = 0;
            self.slept_us = 0;
            return 0;
        }
        // Whatever woke the worker brought nothing.
        self.woke_from_long_block = false;
        let before_sleep = if self.sparse { IDLE_PASSES_BEFORE_QUICK_BLOCK } else { IDLE_PASSES_BEFORE_SLEEP };
        if self.idle_passes < before_sleep {
            self.idle_passes += 1;
            return 0;
        }
        self.current_us = self.current_us.saturating_mul(2).clamp(1, self.max_us);
        self.slept_us = self.slept_us.saturating_add(u64::from(self.current_us));
        self.current_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn idle(b: &mut IdleBackoff, passes: u32) -> Vec<u32> {
        (0..passes).map(|_| b.after_pass(false)).collect()
    }

    #[test]
    fn sleeps_after_a_lull_grow_to_the_bound_and_stop_at_the_first_frame() {
        let mut b = IdleBackoff::new(100, 0);
        assert!(idle(&mut b, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "no sleep inside a short lull");
        assert_eq!(idle(&mut b, 9), vec![1, 2, 4, 8, 16, 32, 64, 100, 100]);
        assert_eq!(b.after_pass(true), 0);
        assert!(idle(&mut b, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "a frame starts the count again");
        assert_eq!(b.after_pass(false), 1);
    }

    #[test]
    fn zero_is_pure_polling() {
        let mut b = IdleBackoff::new(0, 1000);
        assert!(idle(&mut b, 10 * IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0));
        assert!(!b.long_lull(), "pure polling never blocks either");
    }

    #[test]
    fn a_lull_is_long_once_its_sleeps_add_up_to_the_threshold_and_a_frame_ends_it() {
        let mut b = IdleBackoff::new(100, 300);
        idle(&mut b, IDLE_PASSES_BEFORE_SLEEP);
        // 1 + 2 + 4 + ... + 64 = 127, then 100 each: 227, 327.
        assert_eq!(idle(&mut b, 8), vec![1, 2, 4, 8, 16, 32, 64, 100]);
        assert!(!b.long_lull(), "227 us");
        assert_eq!(b.after_pass(false), 100);
        assert!(b.long_lull(), "327 us");
        b.after_pass(true);
        assert!(!b.long_lull(), "a frame starts a new lull");
        let never = IdleBackoff::new(100, 0);
        assert!(!never.long_lull());
    }

    /// Empty passes until the worker would arm its wake-ups (a sleep in a long lull).
    fn passes_to_block(b: &mut IdleBackoff) -> u32 {
        (1..).find(|_| b.after_pass(false) > 0 && b.long_lull()).expect("blocks")
    }

    const RAMP: u32 = IDLE_PASSES_BEFORE_SLEEP + 11; // 1+2+...+128, then 250 three times: 1005 us

    #[test]
    fn a_frame_that_ends_a_long_block_makes_the_next_lull_block_after_a_few_passes() {
        let mut b = IdleBackoff::new(250, 1000);
        assert_eq!(passes_to_block(&mut b), RAMP, "the first lull spins, then sleeps 1 ms");
        b.woke(Duration::from_millis(5));
        b.after_pass(true);
        assert_eq!(passes_to_block(&mut b), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
        b.woke(Duration::from_millis(5));
        b.after_pass(true);
        // Busy passes in a row, and a gap inside a burst, change nothing.
        b.after_pass(true);
        idle(&mut b, IDLE_PASSES_BEFORE_QUICK_BLOCK - 1);
        b.after_pass(true);
        assert_eq!(passes_to_block(&mut b), IDLE_PASSES_BEFORE_QUICK_BLOCK + 1);
    }

    #[test]
    fn a_short_block_an_empty_wake_or_a_frame_found_asleep_go_back_to_the_ramp() {
        let sparse = || {
            let mut b = IdleBackoff::new(250, 1000);
            passes_to_block(&mut b);
            b.woke(Duration::from_millis(5));
            b.after_pass(true);
            passes_to_block(&mut b);
            b
        };
        // Woken after 100 us: frames come closer than a sleep at the bound.
        let mut b = sparse();
        b.woke(Duration::from_micros(100));
        b.after_pass(true);
        assert_eq!(passes_to_block(&mut b), RAMP);
        // Woken by something that brought no frame (a publication), then a frame while asleep.
        let mut b = sparse();
        b.woke(Duration::from_millis(5));
        assert!(b.after_pass(false) > 0 && b.long_lull(), "the lull goes on, blocking again");
        b.after_pass(true);
        assert_eq!(passes_to_block(&mut b), RAMP);
        // Woken by the block's limit (the worker does not call `woke`), then a frame.
        let mut b = sparse();
        b.after_pass(false);
        b.after_pass(true);
        assert_eq!(passes_to_block(&mut b), RAMP);
    }

    #[test]
    fn never_blocking_stays_never_blocking() {
        let mut b = IdleBackoff::new(250, 0);
        b.woke(Duration::from_millis(5));
        b.after_pass(true);
        for _ in 0..2 * IDLE_PASSES_BEFORE_SLEEP {
            b.after_pass(false);
            assert!(!b.long_lull());
        }
        assert_eq!(b.after_pass(false), 250, "sleeps at the bound");
    }

    #[test]
    fn a_bound_of_one_microsecond_stays_there() {
        let mut b = IdleBackoff::new(1, 0);
        idle(&mut b, IDLE_PASSES_BEFORE_SLEEP);
        assert_eq!(idle(&mut b, 3), vec![1, 1, 1]);
    }
}
