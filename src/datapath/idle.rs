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
//! Pure state, unit-tested; the worker does the sleeping.

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
    idle_passes: u32,
    /// The interval of the last sleep (0: not sleeping).
    current_us: u32,
}

impl IdleBackoff {
    /// `max_us` 0: never sleep (pure polling).
    pub fn new(max_us: u32) -> IdleBackoff {
        IdleBackoff { max_us, idle_passes: 0, current_us: 0 }
    }

    /// After a pass that moved `moved` frames: how long to sleep now, in microseconds (0: poll
    /// on).
    #[inline]
    pub fn after_pass(&mut self, moved: bool) -> u32 {
        if moved || self.max_us == 0 {
            self.idle_passes = 0;
            self.current_us = 0;
            return 0;
        }
        if self.idle_passes < IDLE_PASSES_BEFORE_SLEEP {
            self.idle_passes += 1;
            return 0;
        }
        self.current_us = self.current_us.saturating_mul(2).clamp(1, self.max_us);
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
        let mut b = IdleBackoff::new(100);
        assert!(idle(&mut b, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "no sleep inside a short lull");
        assert_eq!(idle(&mut b, 9), vec![1, 2, 4, 8, 16, 32, 64, 100, 100]);
        assert_eq!(b.after_pass(true), 0);
        assert!(idle(&mut b, IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0), "a frame starts the count again");
        assert_eq!(b.after_pass(false), 1);
    }

    #[test]
    fn zero_is_pure_polling() {
        let mut b = IdleBackoff::new(0);
        assert!(idle(&mut b, 10 * IDLE_PASSES_BEFORE_SLEEP).iter().all(|&s| s == 0));
    }

    #[test]
    fn a_bound_of_one_microsecond_stays_there() {
        let mut b = IdleBackoff::new(1);
        idle(&mut b, IDLE_PASSES_BEFORE_SLEEP);
        assert_eq!(idle(&mut b, 3), vec![1, 1, 1]);
    }
}
