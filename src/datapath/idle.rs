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
//! Pure state, unit-tested; the worker does the sleeping and blocking.

/// Empty passes in a row before the first sleep: a pass over a few queues takes a fraction
/// of a microsecond, so this is a lull of some hundreds of microseconds, short enough to
/// save the core between bursts, long enough not to sleep inside one.
pub const IDLE_PASSES_BEFORE_SLEEP: u32 = 1024;

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
}

impl IdleBackoff {
    /// `max_us` 0: never sleep (pure polling), nor block. `block_after_us` 0: never block.
    pub fn new(max_us: u32, block_after_us: u64) -> IdleBackoff {
        let block_after_us = if max_us == 0 { 0 } else { block_after_us };
        IdleBackoff { max_us, block_after_us, idle_passes: 0, current_us: 0, slept_us: 0 }
    }

    /// Whether the lull has lasted long enough to block rather than sleep (asked when
    /// `after_pass` says sleep).
    #[inline]
    pub fn long_lull(&self) -> bool {
        self.block_after_us != 0 && self.slept_us >= self.block_after_us
    }

    /// After a pass that moved `moved` frames: how long to sleep now, in microseconds (0: poll
    /// on).
    #[inline]
    pub fn after_pass(&mut self, moved: bool) -> u32 {
        if moved || self.max_us == 0 {
            self.idle_passes = 0;
            self.current_us = 0;
            self.slept_us = 0;
            return 0;
        }
        if self.idle_passes < IDLE_PASSES_BEFORE_SLEEP {
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

    #[test]
    fn a_bound_of_one_microsecond_stays_there() {
        let mut b = IdleBackoff::new(1, 0);
        idle(&mut b, IDLE_PASSES_BEFORE_SLEEP);
        assert_eq!(idle(&mut b, 3), vec![1, 1, 1]);
    }
}
