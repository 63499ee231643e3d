//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's
//! leaderelection does it: a candidate takes the Lease when it is free or its
//! holder has not renewed it within `leaseDurationSeconds`, the leader renews
//! it every [`RETRY`], and every write is a compare-and-swap on the Lease's
//! resourceVersion, so two candidates never both win. A leader that cannot
//! renew for [`RENEW_DEADLINE`] (shorter than the duration) stops acting
//! before anyone else may take over.
//!
//! [`decide`] is the pure rule (Lease + identity + time → what to do);
//! [`run_while_leader`] is the loop that applies it and runs the work only
//! while it leads. Expiry compares `renewTime` with this machine's clock, so
//! the candidates' clocks are assumed to agree to well within the duration.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_api::resource;
use serde_json::{Value, json};

use crate::{Client, Error};

/// How long a Lease holds without renewal (`leaseDurationSeconds`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long a leader goes on after its last successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader renews and a candidate tries again.
pub const RETRY: Duration = Duration::from_secs(2);

/// What a Lease says about who leads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    /// `spec.holderIdentity`; empty when released.
    pub identity: String,
    /// `spec.renewTime` in seconds since the epoch.
    pub renewed: Option<i64>,
    pub duration: Duration,
    pub transitions: i64,
}

impl Holder {
    /// Reads a Lease object's spec.
    pub fn of(lease: &Value) -> Holder {
        let spec = &lease["spec"];
        Holder {
            identity: spec["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            renewed: spec["renewTime"]
                .as_str()
                .and_then(bosun_api::time::parse_time),
            duration: Duration::from_secs(
                spec["leaseDurationSeconds"]
                    .as_u64()
                    .unwrap_or(LEASE_DURATION.as_secs()),
            ),
            transitions: spec["leaseTransitions"].as_i64().unwrap_or(0),
        }
    }
}

/// What a candidate does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The Lease is free, expired, or missing: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it until about this time (seconds since the epoch).
    Wait { until: i64 },
}

/// The rule: `lease` is `None` when no Lease exists yet; `now` is seconds
/// since the epoch.
pub fn decide(lease: Option<&Holder>, me: &str, now: i64) -> Step {
    let Some(h) = lease else { return Step::Acquire };
    if h.identity == me {
        return Step::Renew;
    }
    if h.identity.is_empty() {
        return Step::Acquire;
    }
    let Some(renewed) = h.renewed else {
        return Step::Acquire;
    };
    let until = renewed.saturating_add(h.duration.as_secs() as i64);
    if now > until {
        Step::Acquire
    } else {
        Step::Wait { until }
    }
}

/// `metav1.MicroTime` for now, and the seconds it stands for.
fn micro_now() -> (String, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let base = bosun_api::time::format_time(secs);
    let stamp = format!("{}.{:06}Z", base.trim_end_matches('Z'), d.subsec_micros());
    (stamp, secs)
}

/// The Lease this candidate writes to take or renew: `current` is the Lease
/// as read (its resourceVersion makes the write a compare-and-swap).
fn lease_object(
    current: Option<&Value>,
    namespace: &str,
    name: &str,
    me: &str,
    stamp: &str,
) -> Value {
    let holder = current.map(Holder::of);
    let mut obj = current.cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        })
    });
    let spec = &mut obj["spec"];
    let taking = holder.as_ref().is_none_or(|h| h.identity != me);
    if taking {
        spec["acquireTime"] = json!(stamp);
        let before = holder.as_ref().map_or(0, |h| h.transitions);
        // A first holder is no transition; a change of holder is.
        let changed = holder.as_ref().is_some_and(|h| !h.identity.is_empty());
        spec["leaseTransitions"] = json!(before + i64::from(changed));
    }
    spec["holderIdentity"] = json!(me);
    spec["leaseDurationSeconds"] = json!(LEASE_DURATION.as_secs());
    spec["renewTime"] = json!(stamp);
    obj
}

/// One attempt to take or renew the Lease. `Ok(Some(lease))`: we hold it
/// (the Lease as written); `Ok(None)`: someone else does.
async fn try_hold(
    client: &Client,
    namespace: &str,
    name: &str,
    me: &str,
    known: Option<&Value>,
) -> Result<Option<Value>, Error> {
    let leases = resource::find("coordination.k8s.io", "v1", "leases").expect("in the table");
    let (stamp, now) = micro_now();
    // The leader writes over the Lease it last wrote; a conflict means
    // someone else wrote since (or deleted it), and the Lease is read again.
    if let Some(mine) = known {
        let obj = lease_object(Some(mine), namespace, name, me, &stamp);
        match client.update(leases, Some(namespace), &obj).await {
            Ok(written) => return Ok(Some(written)),
            Err(e) if matches!(e.code(), Some(404 | 409)) => {}
            Err(e) => return Err(e),
        }
    }
    let current = match client.get(leases, Some(namespace), name).await {
        Ok(v) => Some(v),
        Err(e) if e.code() == Some(404) => None,
        Err(e) => return Err(e),
    };
    match decide(current.as_ref().map(Holder::of).as_ref(), me, now) {
        Step::Wait { .. } => Ok(None),
        Step::Acquire | Step::Renew => {
            let obj = lease_object(current.as_ref(), namespace, name, me, &stamp);
            let written = match &current {
                Some(_) => client.update(leases, Some(namespace), &obj).await,
                None => client.create(leases, Some(namespace), &obj).await,
            };
            match written {
                Ok(v) => Ok(Some(v)),
                // Another candidate got there first.
                Err(e) if matches!(e.code(), Some(409)) => Ok(None),
                Err(e) => Err(e),
            }
        }
    }
}

/// Gives up the Lease if `identity` holds it (a clean shutdown), so that
/// another candidate need not wait out its duration: the holder is cleared,
/// as client-go's `ReleaseOnCancel` does.
pub async fn release(
    client: &Client,
    namespace: &str,
    name: &str,
    identity: &str,
) -> Result<(), Error> {
    let leases = resource::find("coordination.k8s.io", "v1", "leases").expect("in the table");
    let mut lease = match client.get(leases, Some(namespace), name).await {
        Ok(v) => v,
        Err(e) if e.code() == Some(404) => return Ok(()),
        Err(e) => return Err(e),
    };
    if Holder::of(&lease).identity != identity {
        return Ok(());
    }
    let (stamp, _) = micro_now();
    lease["spec"]["holderIdentity"] = json!("");
    lease["spec"]["leaseDurationSeconds"] = json!(1);
    lease["spec"]["renewTime"] = json!(stamp);
    match client.update(leases, Some(namespace), &lease).await {
        // Someone else wrote it meanwhile: it is not ours to release.
        Err(e) if e.code() == Some(409) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Runs `work()` only while this candidate (`identity`) holds the Lease
/// `namespace/name`: it waits to acquire it, starts the work, renews every
/// [`RETRY`], and drops (cancels) the work as soon as it has failed to renew
/// for [`RENEW_DEADLINE`] or sees another holder; then it campaigns again.
/// Never returns; drop it to stop.
pub async fn run_while_leader<F, Fut>(
    client: Client,
    namespace: &str,
    name: &str,
    identity: &str,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let mut held = loop {
            match try_hold(&client, namespace, name, identity, None).await {
                Ok(Some(lease)) => break lease,
                Ok(None) => {}
                Err(e) => eprintln!("bosun: leader election {namespace}/{name}: {e}"),
            }
            tokio::time::sleep(RETRY).await;
        };
        eprintln!("bosun: {identity} leads {namespace}/{name}");
        let job = work();
        tokio::pin!(job);
        let mut renewed = tokio::time::Instant::now();
        // Work that ends by itself keeps the Lease held anyway, so that no
        // one else starts it while this candidate is alive.
        let mut ended = false;
        let lost = loop {
            tokio::select! {
                () = &mut job, if !ended => ended = true,
                () = tokio::time::sleep(RETRY) => {}
            }
            if ended {
                tokio::time::sleep(RETRY).await;
            }
            match try_hold(&client, namespace, name, identity, Some(&held)).await {
                Ok(Some(lease)) => {
                    held = lease;
                    renewed = tokio::time::Instant::now();
                }
                Ok(None) => break "another holder took the lease",
                Err(e) => {
                    eprintln!("bosun: renewing {namespace}/{name}: {e}");
                    if renewed.elapsed() >= RENEW_DEADLINE {
                        break "could not renew the lease in time";
                    }
                }
            }
        };
        eprintln!("bosun: {identity} stopped leading {namespace}/{name}: {lost}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(by: &str, renewed: i64) -> Holder {
        Holder {
            identity: by.to_owned(),
            renewed: Some(renewed),
            duration: LEASE_DURATION,
            transitions: 0,
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", 100), Step::Acquire);
        assert_eq!(decide(Some(&held("", 100)), "a", 100), Step::Acquire);
        let never = Holder {
            renewed: None,
            ..held("b", 0)
        };
        assert_eq!(decide(Some(&never), "a", 100), Step::Acquire);
    }

    #[test]
    fn anothers_lease_holds_for_its_duration() {
        let h = held("b", 100);
        assert_eq!(decide(Some(&h), "a", 100), Step::Wait { until: 115 });
        assert_eq!(decide(Some(&h), "a", 115), Step::Wait { until: 115 });
        assert_eq!(decide(Some(&h), "a", 116), Step::Acquire);
    }

    #[test]
    fn the_holder_renews_even_when_late() {
        assert_eq!(decide(Some(&held("a", 100)), "a", 100), Step::Renew);
        assert_eq!(decide(Some(&held("a", 100)), "a", 1000), Step::Renew);
    }

    #[test]
    fn the_leader_stops_before_another_may_take_over() {
        const { assert!(RENEW_DEADLINE.as_secs() + RETRY.as_secs() < LEASE_DURATION.as_secs()) };
    }

    #[test]
    fn taking_a_lease_counts_transitions() {
        let first = lease_object(None, "kube-system", "s", "a", "T1");
        assert_eq!(first["spec"]["holderIdentity"], "a");
        assert_eq!(first["spec"]["leaseTransitions"], 0);
        assert_eq!(first["spec"]["acquireTime"], "T1");
        assert_eq!(first["metadata"]["namespace"], "kube-system");
        let renewed = lease_object(Some(&first), "kube-system", "s", "a", "T2");
        assert_eq!(renewed["spec"]["acquireTime"], "T1");
        assert_eq!(renewed["spec"]["renewTime"], "T2");
        assert_eq!(renewed["spec"]["leaseTransitions"], 0);
        let taken = lease_object(Some(&renewed), "kube-system", "s", "b", "T3");
        assert_eq!(taken["spec"]["holderIdentity"], "b");
        assert_eq!(taken["spec"]["acquireTime"], "T3");
        assert_eq!(taken["spec"]["leaseTransitions"], 1);
        assert_eq!(Holder::of(&taken).duration, LEASE_DURATION);
    }

    #[test]
    fn micro_time_is_what_kubernetes_writes() {
        let (stamp, secs) = micro_now();
        assert_eq!(stamp.len(), "2026-11-22T08:35:00.123456Z".len(), "{stamp}");
        assert_eq!(bosun_api::time::parse_time(&stamp), Some(secs));
    }
}
