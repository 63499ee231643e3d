//! The scheduling queue: pods waiting for a node, in arrival order, and pods
//! that did not fit, held back for a while (1 s, doubling to 10 s) unless the
//! cluster changes in a way that could make them fit. Pure: the caller
//! passes the time.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

pub(crate) const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In `active`, waiting to be scheduled.
    Active,
    /// Handed out by `pop`: being scheduled or bound.
    Taken,
    /// Held back until this time (also in `backoff`).
    Backoff(Instant),
}

#[derive(Debug)]
struct Entry {
    place: Place,
    /// Failed attempts so far; sets the next back-off.
    attempts: u32,
}

/// Pods (by key) waiting to be scheduled.
#[derive(Debug)]
pub(crate) struct Queue<K: Ord + Hash + Clone> {
    active: VecDeque<K>,
    backoff: BTreeSet<(Instant, K)>,
    entries: HashMap<K, Entry>,
}

impl<K: Ord + Hash + Clone> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            active: VecDeque::new(),
            backoff: BTreeSet::new(),
            entries: HashMap::new(),
        }
    }
}

/// The back-off after `attempts` failures: 1 s, 2 s, 4 s, 8 s, then 10 s.
pub(crate) fn backoff_for(attempts: u32) -> Duration {
    let doubled = INITIAL_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF)
}

impl<K: Ord + Hash + Clone> Queue<K> {
    /// A pod that is new or changed: queued now, or, if it was held back,
    /// retried now (its change may be what it needed). One being scheduled
    /// stays where it is.
    pub(crate) fn add(&mut self, key: K) {
        match self.entries.get_mut(&key) {
            None => {
                self.entries.insert(
                    key.clone(),
                    Entry {
                        place: Place::Active,
                        attempts: 0,
                    },
                );
                self.active.push_back(key);
            }
            Some(e) => {
                if let Place::Backoff(until) = e.place {
                    self.backoff.remove(&(until, key.clone()));
                    e.place = Place::Active;
                    self.active.push_back(key);
                }
            }
        }
    }

    /// A pod that did not fit (or whose binding failed): held back, longer
    /// each time.
    pub(crate) fn failed(&mut self, key: K, now: Instant) {
        let e = self.entries.entry(key.clone()).or_insert(Entry {
            place: Place::Taken,
            attempts: 0,
        });
        match e.place {
            Place::Backoff(until) => {
                self.backoff.remove(&(until, key.clone()));
            }
            Place::Active => self.active.retain(|k| *k != key),
            Place::Taken => {}
        }
        e.attempts = e.attempts.saturating_add(1);
        let until = now + backoff_for(e.attempts);
        e.place = Place::Backoff(until);
        self.backoff.insert((until, key));
    }

    /// Nodes were added or changed, or pods went away: every held-back pod
    /// may fit now, so all are retried at once.
    pub(crate) fn cluster_changed(&mut self) {
        for (_, key) in std::mem::take(&mut self.backoff) {
            if let Some(e) = self.entries.get_mut(&key) {
                e.place = Place::Active;
                self.active.push_back(key);
            }
        }
    }

    /// The pod is bound or gone: no longer queued, its attempts forgotten.
    pub(crate) fn forget(&mut self, key: &K) {
        if let Some(e) = self.entries.remove(key) {
            match e.place {
                Place::Backoff(until) => {
                    self.backoff.remove(&(until, key.clone()));
                }
                Place::Active => self.active.retain(|k| k != key),
                Place::Taken => {}
            }
        }
    }

    /// Up to `max` pods to schedule now, oldest first; held-back pods whose
    /// time has come join the end of the line first.
    pub(crate) fn pop(&mut self, now: Instant, max: usize) -> Vec<K> {
        while let Some((until, _)) = self.backoff.first() {
            if *until > now {
                break;
            }
            let (_, key) = self.backoff.pop_first().expect("just looked");
            if let Some(e) = self.entries.get_mut(&key) {
                e.place = Place::Active;
                self.active.push_back(key);
            }
        }
        let n = max.min(self.active.len());
        let out: Vec<K> = self.active.drain(..n).collect();
        for k in &out {
            if let Some(e) = self.entries.get_mut(k) {
                e.place = Place::Taken;
            }
        }
        out
    }

    /// When the first held-back pod is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.backoff.first().map(|(t, _)| *t)
    }

    /// Whether a pod is ready to be popped now.
    pub(crate) fn has_ready(&self, now: Instant) -> bool {
        !self.active.is_empty() || self.next_due().is_some_and(|t| t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let got: Vec<u64> = (1..=6).map(|a| backoff_for(a).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(backoff_for(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn pops_in_arrival_order_and_each_once() {
        let t = Instant::now();
        let mut q = Queue::default();
        for k in ["a", "b", "c"] {
            q.add(k);
        }
        q.add("a");
        assert_eq!(q.pop(t, 2), ["a", "b"]);
        // Taken pods are not queued again by a change.
        q.add("a");
        assert_eq!(q.pop(t, 10), ["c"]);
        assert!(q.pop(t, 10).is_empty());
        assert!(!q.has_ready(t));
    }

    #[test]
    fn a_failed_pod_waits_out_its_backoff() {
        let t = Instant::now();
        let mut q = Queue::default();
        q.add("p");
        assert_eq!(q.pop(t, 1), ["p"]);
        q.failed("p", t);
        assert_eq!(q.next_due(), Some(t + secs(1)));
        assert!(q.pop(t + Duration::from_millis(999), 1).is_empty());
        assert_eq!(q.pop(t + secs(1), 1), ["p"]);
        q.failed("p", t + secs(1));
        assert_eq!(q.next_due(), Some(t + secs(3)));
        assert!(q.pop(t + secs(2), 1).is_empty());
        assert_eq!(q.pop(t + secs(3), 1), ["p"]);
    }

    #[test]
    fn a_cluster_change_retries_held_back_pods_at_once() {
        let t = Instant::now();
        let mut q = Queue::default();
        q.add("p");
        q.add("q");
        q.pop(t, 2);
        q.failed("p", t);
        q.failed("q", t);
        q.failed("q", t);
        assert!(!q.has_ready(t));
        q.cluster_changed();
        assert!(q.has_ready(t));
        assert_eq!(q.pop(t, 10), ["p", "q"]);
        // The attempts are kept: the next failure waits longer.
        q.failed("q", t);
        assert_eq!(q.next_due(), Some(t + secs(4)));
    }

    #[test]
    fn a_change_to_a_held_back_pod_retries_it() {
        let t = Instant::now();
        let mut q = Queue::default();
        q.add("p");
        q.pop(t, 1);
        q.failed("p", t);
        q.add("p");
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop(t, 1), ["p"]);
    }

    #[test]
    fn forgotten_pods_are_gone_wherever_they_were() {
        let t = Instant::now();
        let mut q = Queue::default();
        for k in ["a", "b", "c"] {
            q.add(k);
        }
        q.pop(t, 1);
        q.failed("a", t);
        q.forget(&"a");
        q.forget(&"b");
        assert_eq!(q.next_due(), None);
        assert_eq!(q.pop(t + secs(60), 10), ["c"]);
        // A forgotten pod that comes back starts with no attempts.
        q.add("a");
        q.pop(t, 1);
        q.failed("a", t);
        assert_eq!(q.next_due(), Some(t + secs(1)));
    }
}
