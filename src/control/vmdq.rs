//! Steering by VMDq pools, for ports that have them but no `rte_flow`: each guest's MACs go
//! into a pool of its own (`rte_eth_dev_mac_addr_add` with the pool), the pool's first rx
//! queue is polled by the worker that owns the guest, and a default pool takes every frame
//! no guest pool matches. Pure planning here, unit-tested without a NIC.
//!
//! Broadcast and multicast: the port copies them to every pool that accepts them, so the copy
//! on a guest's pool is for that guest alone, and the copy on the default pool is flooded to
//! the guests without a pool only (see `RxScope`). Without that split each guest would get
//! one copy per pool.

/// What the port says about its pools (`rte_eth_dev_info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmdqCaps {
    pub max_pools: u16,
    /// First rx queue of the VMDq pools, and how many queues the pools have in all.
    pub queue_base: u16,
    pub queue_num: u16,
    /// Pool index the port's MAC filter numbering starts at.
    pub pool_base: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmdqPlan {
    /// Pools to configure (a size the API takes: 8, 16, 32 or 64).
    pub pools: u16,
    pub queues_per_pool: u16,
    /// The last pool: frames for no guest pool, and guests left without one.
    pub default_pool: u16,
    /// Per guest: its pool, or None when the pools ran out.
    pub guest_pool: Vec<Option<u16>>,
    /// Rx queues to configure and set up (every one up to the last pool's).
    pub rx_queues: u16,
    /// The queues to poll: (queue, worker index, scope). Only a pool's first queue receives
    /// (VMDq without RSS), so one per pool in use.
    pub polled: Vec<(u16, usize, RxScope)>,
}

impl VmdqPlan {
    /// The pool number `rte_eth_dev_mac_addr_add` expects for pool `p`.
    pub fn mac_pool(&self, caps: &VmdqCaps, p: u16) -> u32 {
        u32::from(caps.pool_base) + u32::from(p)
    }

    pub fn first_queue(&self, caps: &VmdqCaps, p: u16) -> u16 {
        caps.queue_base + p * self.queues_per_pool
    }

    /// The rx queues worker `w` polls, in order, with their scopes.
    pub fn queues_of(&self, w: usize) -> Vec<(u16, RxScope)> {
        self.polled.iter().filter(|&&(_, o, _)| o == w).map(|&(q, _, s)| (q, s)).collect()
    }
}

pub use crate::view::RxScope;

/// Pool counts the ethdev API can configure.
const POOL_SIZES: [u16; 4] = [8, 16, 32, 64];

/// A plan for `guests` guests whose queue 0 is owned by `owner[g]`; the default pool's
/// queue goes to worker 0. Err says why the port cannot be steered this way.
pub fn plan(caps: &VmdqCaps, owner: &[usize]) -> Result<VmdqPlan, String> {
    let guests = owner.len();
    let fitting: Vec<u16> = POOL_SIZES.iter().copied().filter(|&p| p <= caps.max_pools).collect();
    let Some(&largest) = fitting.last() else {
        return Err(format!("{} VMDq pools (at least {} needed)", caps.max_pools, POOL_SIZES[0]));
    };
    // Enough for every guest plus the default pool where possible, else as many as there are.
    let pools = fitting.iter().copied().find(|&p| usize::from(p) > guests).unwrap_or(largest);
    let queues_per_pool = caps.queue_num / pools;
    if queues_per_pool == 0 {
        return Err(format!("{} VMDq queues for {pools} pools", caps.queue_num));
    }
    let default_pool = pools - 1;
    let guest_pool: Vec<Option<u16>> = (0..guests).map(|g| (g < usize::from(default_pool)).then_some(g as u16)).collect();
    let mut p = VmdqPlan { pools, queues_per_pool, default_pool, guest_pool, rx_queues: 0, polled: Vec::new() };
    p.rx_queues = p.first_queue(caps, default_pool) + queues_per_pool;
    let mut polled: Vec<(u16, usize, RxScope)> =
        p.guest_pool.iter().enumerate().filter_map(|(g, pool)| pool.map(|pool| (p.first_queue(caps, pool), owner[g], RxScope::Guest(g)))).collect();
    polled.push((p.first_queue(caps, default_pool), 0, RxScope::Unpooled));
    p.polled = polled;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Like an 82599: 64 pools over 128 queues, starting at queue 0.
    const IXGBE: VmdqCaps = VmdqCaps { max_pools: 64, queue_base: 0, queue_num: 128, pool_base: 0 };

    #[test]
    fn each_guest_gets_a_pool_and_its_owner_polls_it() {
        let p = plan(&IXGBE, &[0, 1, 0]).expect("plan");
        assert_eq!((p.pools, p.queues_per_pool, p.default_pool), (8, 16, 7));
        assert_eq!(p.guest_pool, vec![Some(0), Some(1), Some(2)]);
        assert_eq!(p.rx_queues, 128);
        assert_eq!(p.queues_of(0), vec![(0, RxScope::Guest(0)), (32, RxScope::Guest(2)), (112, RxScope::Unpooled)]);
        assert_eq!(p.queues_of(1), vec![(16, RxScope::Guest(1))]);
    }

    #[test]
    fn pools_grow_with_guests_and_run_out_at_the_largest_size() {
        let p = plan(&IXGBE, &[0; 8]).expect("plan");
        assert_eq!((p.pools, p.queues_per_pool), (16, 8));
        let p = plan(&IXGBE, &[0; 100]).expect("plan");
        assert_eq!((p.pools, p.queues_per_pool, p.default_pool), (64, 2, 63));
        assert_eq!(p.guest_pool.iter().filter(|x| x.is_some()).count(), 63);
        assert_eq!(p.guest_pool[63], None);
        assert_eq!(p.polled.len(), 64);
        assert_eq!(p.polled.last(), Some(&(126, 0, RxScope::Unpooled)));
    }

    #[test]
    fn queue_and_pool_numbering_follow_the_port() {
        // Like an X710: the VMDq queues come after the PF's own, pools numbered from 1.
        let caps = VmdqCaps { max_pools: 32, queue_base: 64, queue_num: 128, pool_base: 1 };
        let p = plan(&caps, &[1, 0]).expect("plan");
        assert_eq!((p.pools, p.queues_per_pool), (8, 16));
        assert_eq!(p.first_queue(&caps, 1), 80);
        assert_eq!(p.mac_pool(&caps, 1), 2);
        assert_eq!(p.rx_queues, 64 + 128);
        assert_eq!(p.queues_of(1), vec![(64, RxScope::Guest(0))]);
    }

    #[test]
    fn ports_without_enough_pools_or_queues_are_refused() {
        assert_eq!(plan(&VmdqCaps::default(), &[0]), Err("0 VMDq pools (at least 8 needed)".to_owned()));
        let caps = VmdqCaps { max_pools: 8, queue_base: 0, queue_num: 4, pool_base: 0 };
        assert_eq!(plan(&caps, &[0]), Err("4 VMDq queues for 8 pools".to_owned()));
    }
}
