//! Assignment by measured load: given what each guest queue cost over the last interval,
//! which worker should own it. Pure: unit-tested without EAL.
//!
//! Greedy, heaviest queue first, each onto the worker with the least load so far (ties stay
//! where they are, so an idle queue never moves for nothing). A worker starts with the load
//! that cannot move: its uplink rx queues, ring hand-offs, and pinned guests. The proposal
//! is applied only when it cuts the busiest worker's load by a clear margin, because every
//! move pauses the workers for a moment.

/// Cycles measured over one interval.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Per guest queue slot: busy cycles, summed over the workers that served it.
    pub slot: Vec<u64>,
    /// Per worker: busy cycles not spent on a guest queue (uplink rx, classification, rings).
    pub base: Vec<u64>,
    /// Per worker: every cycle of the interval, busy or idle.
    pub total: Vec<u64>,
}

impl Load {
    /// `cycles` (an estimate for worker `w`) as a share of that worker's interval.
    pub fn share(&self, cycles: u64, w: usize) -> f64 {
        if self.total[w] == 0 {
            0.0
        } else {
            cycles as f64 / self.total[w] as f64
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// New owner per slot.
    pub owners: Vec<u16>,
    /// Estimated busy cycles per worker with the current owners, and with the new ones.
    pub before: Vec<u64>,
    pub after: Vec<u64>,
    /// (slot, from worker, to worker).
    pub moves: Vec<(usize, u16, u16)>,
}

/// Apply only if the busiest worker's load drops by at least this share...
pub const MIN_GAIN: f64 = 0.25;
/// ...and that worker is at least this busy: below it, nobody waits for a core.
pub const MIN_BUSY: f64 = 0.10;

pub fn propose(owners: &[u16], pinned: &[bool], load: &Load) -> Proposal {
    let workers = load.base.len();
    let mut before = load.base.clone();
    for (s, &o) in owners.iter().enumerate() {
        before[usize::from(o)] += load.slot[s];
    }
    let mut after = load.base.clone();
    let mut new_owners = owners.to_vec();
    let mut movable = Vec::new();
    for (s, &o) in owners.iter().enumerate() {
        // A queue that cost nothing has nothing to gain from a move.
        if pinned[s] || load.slot[s] == 0 {
            after[usize::from(o)] += load.slot[s];
        } else {
            movable.push(s);
        }
    }
    // Heaviest first; equal loads in slot order, so the result does not depend on sorting.
    movable.sort_by(|&a, &b| load.slot[b].cmp(&load.slot[a]).then(a.cmp(&b)));
    for s in movable {
        let current = usize::from(owners[s]);
        let least = (0..workers).min_by_key(|&w| (after[w], w != current, w)).unwrap_or(current);
        after[least] += load.slot[s];
        new_owners[s] = least as u16;
    }
    let moves = owners
        .iter()
        .zip(&new_owners)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(s, (&a, &b))| (s, a, b))
        .collect();
    Proposal { owners: new_owners, before, after, moves }
}

/// Why a proposal is not worth a pause, if it is not.
pub fn hold_back(p: &Proposal, load: &Load) -> Option<String> {
    if p.moves.is_empty() {
        return Some("no queue would move".to_owned());
    }
    let busiest = |cycles: &[u64]| (0..cycles.len()).map(|w| load.share(cycles[w], w)).fold(0.0, f64::max);
    let (now, then) = (busiest(&p.before), busiest(&p.after));
    if now < MIN_BUSY {
        return Some(format!("busiest lcore at {:.0}%, below {:.0}%", now * 100.0, MIN_BUSY * 100.0));
    }
    if then > now * (1.0 - MIN_GAIN) {
        return Some(format!("busiest lcore {:.0}% -> {:.0}%, less than {:.0}% better", now * 100.0, then * 100.0, MIN_GAIN * 100.0));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(slot: &[u64], base: &[u64]) -> Load {
        Load { slot: slot.to_vec(), base: base.to_vec(), total: vec![1000; base.len()] }
    }

    #[test]
    fn two_heavy_queues_on_one_worker_are_split() {
        // Round-robin put slots 0 and 2 (busy) on worker 0, slots 1 and 3 (idle) on worker 1.
        let l = load(&[400, 0, 380, 0], &[50, 50]);
        let p = propose(&[0, 1, 0, 1], &[false; 4], &l);
        assert_eq!(p.before, vec![830, 50]);
        assert_eq!(p.owners, vec![0, 1, 1, 1]);
        assert_eq!(p.after, vec![450, 430]);
        assert_eq!(p.moves, vec![(2, 0, 1)]);
        // Worker 1 has the lighter base: the heaviest queue goes there, the idle ones stay.
        let l = load(&[400, 0, 380, 0], &[60, 50]);
        let p = propose(&[0, 1, 0, 1], &[false; 4], &l);
        assert_eq!(p.owners, vec![1, 1, 0, 1]);
        assert_eq!(hold_back(&p, &l), None);
    }

    #[test]
    fn idle_queues_stay_put() {
        let l = load(&[0, 0, 0, 0], &[0, 0]);
        let p = propose(&[0, 1, 0, 1], &[false; 4], &l);
        assert_eq!(p.owners, vec![0, 1, 0, 1]);
        assert_eq!(hold_back(&p, &l).as_deref(), Some("no queue would move"));
    }

    #[test]
    fn pinned_queues_do_not_move_but_count() {
        // Slot 0 is pinned to worker 0 and heavy: the other busy queue goes elsewhere.
        let l = load(&[500, 300, 10], &[0, 0]);
        let p = propose(&[0, 0, 0], &[true, false, false], &l);
        assert_eq!(p.owners, vec![0, 1, 1]);
        assert_eq!(p.after, vec![500, 310]);
        // Pinned and alone on its worker: nothing to gain.
        let l = load(&[900, 10], &[0, 0]);
        let p = propose(&[0, 1], &[true, false], &l);
        assert!(p.moves.is_empty());
    }

    #[test]
    fn small_gains_and_idle_machines_are_left_alone() {
        let l = load(&[300, 280, 250], &[0, 0]);
        let p = propose(&[0, 0, 1], &[false; 3], &l);
        // 580 vs 250 -> 300 vs 530: the busiest goes from 58% to 53%.
        assert_eq!(p.after, vec![300, 530]);
        assert_eq!(hold_back(&p, &l).as_deref(), Some("busiest lcore 58% -> 53%, less than 25% better"));
        let l = load(&[40, 40], &[0, 0]);
        let p = propose(&[0, 0], &[false; 2], &l);
        assert_eq!(hold_back(&p, &l).as_deref(), Some("busiest lcore at 8%, below 10%"));
    }

    #[test]
    fn base_load_is_taken_into_account() {
        // Worker 1 is already busy with the uplink: both queues are better off on worker 0.
        let l = load(&[100, 100], &[0, 600]);
        let p = propose(&[0, 1], &[false; 2], &l);
        assert_eq!(p.owners, vec![0, 0]);
        assert_eq!((p.before, p.after), (vec![100, 700], vec![200, 600]));
    }
}
