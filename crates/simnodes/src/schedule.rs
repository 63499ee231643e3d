//! When each node heart-beats. Like the kubelet, a node renews its Lease
//! every [`LEASE_RENEW`] and posts its status every [`STATUS_EVERY`] lease
//! rounds when nothing changed; thousands of nodes are spread over the
//! interval so that the server sees a steady trickle, never a burst.

use std::time::Duration;

/// The kubelet's default lease renewal interval.
pub(crate) const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's `leaseDurationSeconds` (the kubelet's default).
pub(crate) const LEASE_DURATION_SECONDS: u32 = 40;
/// Status every 30 lease rounds: the kubelet's 5 minutes.
pub(crate) const STATUS_EVERY: u64 = 30;
/// Ticks per lease interval.
pub(crate) const BUCKETS: u32 = 100;

/// The tick length: one bucket of the lease interval.
pub(crate) fn tick() -> Duration {
    LEASE_RENEW / BUCKETS
}

/// A node's heartbeat due at a tick: its index, and whether its status is
/// due as well as its Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub index: u32,
    pub status: bool,
}

/// The heartbeats of `count` nodes due at `tick` (counted from 0): node `i`
/// renews in bucket `i % BUCKETS` of every interval, and posts its status in
/// one round of every `STATUS_EVERY`: nodes in index order, an even share
/// a round.
pub(crate) fn due(tick: u64, count: u32) -> impl Iterator<Item = Due> {
    let bucket = (tick % u64::from(BUCKETS)) as u32;
    let round = tick / u64::from(BUCKETS);
    (bucket..count)
        .step_by(BUCKETS as usize)
        .map(move |index| Due {
            index,
            status: u64::from(index) * STATUS_EVERY / u64::from(count) == round % STATUS_EVERY,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_renews_once_an_interval_and_buckets_are_even() {
        for count in [1u32, 5, 99, 100, 101, 5000] {
            let mut seen = vec![0u32; count as usize];
            let mut sizes = Vec::new();
            // The second interval, to check rounds after the first as well.
            for tick in u64::from(BUCKETS)..2 * u64::from(BUCKETS) {
                let d: Vec<Due> = due(tick, count).collect();
                sizes.push(d.len());
                for x in d {
                    seen[x.index as usize] += 1;
                }
            }
            assert!(seen.iter().all(|n| *n == 1), "count {count}");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "count {count}: buckets from {min} to {max}");
        }
    }

    #[test]
    fn each_node_posts_its_status_once_in_status_every_rounds_and_rounds_are_spread() {
        let count = 5000;
        let mut statuses = vec![0u32; count as usize];
        let mut per_round = Vec::new();
        for round in 0..STATUS_EVERY {
            let mut n = 0;
            for b in 0..u64::from(BUCKETS) {
                for d in due(round * u64::from(BUCKETS) + b, count).filter(|d| d.status) {
                    statuses[d.index as usize] += 1;
                    n += 1;
                }
            }
            per_round.push(n);
        }
        assert!(statuses.iter().all(|n| *n == 1));
        // 5,000 nodes over 30 rounds: 166 or 167 a round, never a burst.
        let (min, max) = (
            per_round.iter().min().unwrap(),
            per_round.iter().max().unwrap(),
        );
        assert!(max - min <= 1, "{per_round:?}");
    }

    #[test]
    fn the_interval_is_the_kubelets() {
        assert_eq!(tick() * BUCKETS, Duration::from_secs(10));
        assert_eq!(LEASE_RENEW * STATUS_EVERY as u32, Duration::from_secs(300));
    }
}
