//! The Deployment controller: rolls a Deployment's pod template out through
//! ReplicaSets, as Kubernetes' does, so that kubectl's client-side `rollout
//! status`, `history`, `undo` and `restart` work unchanged.
//!
//! - Each template gets a ReplicaSet named `<deployment>-<hash>`, the hash (of
//!   the template and `status.collisionCount`, in Kubernetes' alphabet) also
//!   as the `pod-template-hash` label on its selector, labels and template. A
//!   template equal to an old set's (`rollout undo`) re-uses that set.
//! - `deployment.kubernetes.io/revision` on the sets and the Deployment: the
//!   new set gets one more than the highest old revision (so an undone-to set
//!   moves to the top); `desired-replicas` and `max-replicas` on each scaled
//!   set. Old sets scaled to zero beyond `revisionHistoryLimit` are deleted.
//! - RollingUpdate: the new set grows while the total stays within replicas +
//!   maxSurge (rounded up), old sets shrink while the available pods stay at
//!   or above replicas − maxUnavailable (rounded down), unavailable old pods
//!   first. Recreate: old sets go to zero, and once their pods are gone the
//!   new set is scaled up. `spec.paused` stops the rollout but not scaling.
//! - Status: replicas, updated, ready, available and unavailable replicas,
//!   observedGeneration, and the Available and Progressing conditions
//!   (`NewReplicaSetAvailable` when complete, `ProgressDeadlineExceeded` when
//!   no progress was made for `progressDeadlineSeconds`).
//!
//! [`plan`] decides from snapshots of Deployments and ReplicaSets (the sets'
//! status says how many pods are ready and available; the ReplicaSet
//! controller keeps it); [`reconcile`] does one action.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bosun_api::Resource;
use bosun_api::resource;
use bosun_api::selector::LabelSelector;
use bosun_client::events::{EventType, Recorder};
use bosun_client::{Client, DeleteParams, Error, Patch, Watcher};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::replicaset::{Mirror, changed_or, controller_of, labels, selector, time, unix_now};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const HASH_LABEL: &str = "pod-template-hash";

/// Annotations of a Deployment not copied to its sets (Kubernetes' list).
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// An `IntOrString` of maxSurge/maxUnavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Count(i64),
    Percent(i64),
}

impl Amount {
    fn of(v: &Value, default: Amount) -> Amount {
        if let Some(n) = v.as_i64() {
            return Amount::Count(n.max(0));
        }
        v.as_str()
            .and_then(|s| s.strip_suffix('%'))
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(default, |p| Amount::Percent(p.max(0)))
    }

    /// The amount of `total`; percentages rounded up or down.
    pub fn of_total(self, total: i64, up: bool) -> i64 {
        match self {
            Amount::Count(n) => n,
            Amount::Percent(p) if up => (p * total + 99) / 100,
            Amount::Percent(p) => p * total / 100,
        }
    }
}

/// How a new template replaces the old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Recreate,
    RollingUpdate { surge: Amount, unavailable: Amount },
}

/// A Deployment as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    pub replicas: i64,
    /// `None`: unreadable, and the Deployment is left alone.
    pub selector: Option<LabelSelector>,
    pub selector_raw: Value,
    /// The pod template as written.
    pub template: Value,
    pub strategy: Strategy,
    pub min_ready_seconds: i64,
    pub history_limit: i64,
    /// `progressDeadlineSeconds` (Kubernetes' default is 600).
    pub progress_deadline: Option<i64>,
    pub paused: bool,
    pub annotations: BTreeMap<String, String>,
    pub deleting: bool,
    pub status: Value,
    pub collision_count: i64,
}

impl Deployment {
    pub fn of(v: &Value) -> Option<Deployment> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        let rolling = &spec["strategy"]["rollingUpdate"];
        let strategy = match spec["strategy"]["type"].as_str() {
            Some("Recreate") => Strategy::Recreate,
            _ => Strategy::RollingUpdate {
                surge: Amount::of(&rolling["maxSurge"], Amount::Percent(25)),
                unavailable: Amount::of(&rolling["maxUnavailable"], Amount::Percent(25)),
            },
        };
        Some(Deployment {
            uid: m["uid"].as_str()?.to_owned(),
            name: m["name"].as_str()?.to_owned(),
            namespace: m["namespace"].as_str().unwrap_or_default().to_owned(),
            generation: m["generation"].as_i64().unwrap_or(0),
            replicas: spec["replicas"].as_i64().unwrap_or(1).max(0),
            selector: selector(&spec["selector"]),
            selector_raw: spec["selector"].clone(),
            template: spec["template"].clone(),
            strategy,
            min_ready_seconds: spec["minReadySeconds"].as_i64().unwrap_or(0).max(0),
            history_limit: spec["revisionHistoryLimit"].as_i64().unwrap_or(10),
            progress_deadline: match &spec["progressDeadlineSeconds"] {
                Value::Null => Some(600),
                d => d.as_i64().filter(|d| *d < i64::from(i32::MAX)),
            },
            paused: spec["paused"] == true,
            annotations: labels(&m["annotations"]),
            deleting: !m["deletionTimestamp"].is_null(),
            status: v["status"].clone(),
            collision_count: v["status"]["collisionCount"].as_i64().unwrap_or(0),
        })
    }

    /// maxSurge and maxUnavailable resolved against replicas, as Kubernetes
    /// does: surge rounds up, unavailable down, and both zero means one
    /// unavailable. Recreate has neither.
    pub fn surge_and_unavailable(&self) -> (i64, i64) {
        match self.strategy {
            Strategy::Recreate => (0, 0),
            Strategy::RollingUpdate { surge, unavailable } => {
                let s = surge.of_total(self.replicas, true);
                let u = unavailable.of_total(self.replicas, false);
                if s == 0 && u == 0 {
                    (0, 1)
                } else {
                    (s, u.min(self.replicas))
                }
            }
        }
    }
}

/// A ReplicaSet as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Set {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The uid of its controller.
    pub controller: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub replicas: i64,
    /// Its template, compared with a Deployment's: [`comparable`].
    pub template: Value,
    pub annotations: BTreeMap<String, String>,
    pub created: i64,
    pub generation: i64,
    pub observed_generation: i64,
    /// Pods it has (status.replicas), ready ones and available ones.
    pub current: i64,
    pub ready: i64,
    pub available: i64,
    pub deleting: bool,
    pub resource_version: u64,
    /// The object as read, for writing it back.
    pub raw: Arc<Value>,
}

impl Set {
    pub fn of(v: &Value) -> Option<Set> {
        let m = &v["metadata"];
        let st = &v["status"];
        Some(Set {
            uid: m["uid"].as_str()?.to_owned(),
            name: m["name"].as_str()?.to_owned(),
            namespace: m["namespace"].as_str().unwrap_or_default().to_owned(),
            controller: controller_of(v),
            labels: labels(&m["labels"]),
            replicas: v["spec"]["replicas"].as_i64().unwrap_or(1).max(0),
            template: comparable(&v["spec"]["template"]),
            annotations: labels(&m["annotations"]),
            created: time(&m["creationTimestamp"]).unwrap_or(0),
            generation: m["generation"].as_i64().unwrap_or(0),
            observed_generation: st["observedGeneration"].as_i64().unwrap_or(0),
            current: st["replicas"].as_i64().unwrap_or(0),
            ready: st["readyReplicas"].as_i64().unwrap_or(0),
            available: st["availableReplicas"].as_i64().unwrap_or(0),
            deleting: !m["deletionTimestamp"].is_null(),
            resource_version: m["resourceVersion"]
                .as_str()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            raw: Arc::new(v.clone()),
        })
    }

    fn revision(&self) -> i64 {
        self.annotations
            .get(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }
}

/// A pod template reduced for comparison (Kubernetes' `EqualIgnoreHash`):
/// without the hash label, and without nulls and empty objects or lists,
/// which a client's typed round trip adds or drops (`creationTimestamp:
/// null`, `resources: {}`), so `rollout undo`'s copy equals the original.
pub fn comparable(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(l) = t["metadata"]["labels"].as_object_mut() {
        l.remove(HASH_LABEL);
    }
    prune(&mut t);
    t
}

fn prune(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for x in m.values_mut() {
                prune(x);
            }
            m.retain(|_, x| !empty(x));
        }
        Value::Array(a) => a.iter_mut().for_each(prune),
        _ => {}
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The pod-template-hash: FNV-1a (32 bits) of the comparable template and
/// the collision count, its decimal digits spelled in Kubernetes' alphabet
/// of characters that make no words.
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(comparable(template).to_string().as_bytes());
    if collision_count > 0 {
        eat(&(collision_count as u32).to_le_bytes());
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect()
}

/// One step of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this ReplicaSet for the Deployment.
    Create {
        deployment: Arc<Deployment>,
        set: Value,
    },
    /// Give a set these replicas and annotations.
    Scale {
        deployment: Arc<Deployment>,
        set: Arc<Set>,
        replicas: i64,
        annotations: BTreeMap<String, String>,
    },
    /// Delete an old set (beyond the revision history).
    Delete { set: Arc<Set> },
    /// Make the Deployment the controller of an orphaned set it selects.
    Adopt {
        deployment: Arc<Deployment>,
        set: Arc<Set>,
    },
    /// Set the Deployment's revision annotation.
    Annotate {
        deployment: Arc<Deployment>,
        revision: String,
    },
    /// Write the Deployment's status.
    Status {
        deployment: Arc<Deployment>,
        status: Value,
    },
}

/// What to do, and when to look again if nothing changes before.
#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Seconds until a progress deadline passes.
    pub wake_in: Option<i64>,
}

/// A set as this plan leaves it.
struct View {
    set: Arc<Set>,
    replicas: i64,
    annotations: BTreeMap<String, String>,
}

/// What to do for every Deployment, given every ReplicaSet; `now` in unix
/// seconds.
pub fn plan(deployments: &[Arc<Deployment>], sets: &[Arc<Set>], now: i64) -> Plan {
    let mut owned: HashMap<&str, Vec<&Arc<Set>>> = HashMap::new();
    let mut orphans: Vec<&Arc<Set>> = Vec::new();
    for s in sets {
        match &s.controller {
            Some(c) => owned.entry(c.as_str()).or_default().push(s),
            None if !s.deleting => orphans.push(s),
            None => {}
        }
    }
    let mut adopted: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out = Plan::default();
    for d in deployments {
        let template_labels = labels(&d.template["metadata"]["labels"]);
        let Some(selector) = d.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        if d.deleting || !selector.matches(&template_labels) {
            continue;
        }
        // Orphaned sets it selects are adopted first (`delete --cascade=orphan`
        // and apply again): planned once they are its own.
        let mut adopting = false;
        for s in &orphans {
            if s.namespace == d.namespace && selector.matches(&s.labels) && adopted.insert(&s.uid) {
                out.actions.push(Action::Adopt {
                    deployment: d.clone(),
                    set: (*s).clone(),
                });
                adopting = true;
            }
        }
        if adopting {
            continue;
        }
        let mine = owned.get(d.uid.as_str()).map_or(&[][..], Vec::as_slice);
        plan_one(d, mine, now, &mut out);
    }
    out
}

fn plan_one(d: &Arc<Deployment>, mine: &[&Arc<Set>], now: i64, out: &mut Plan) {
    let want = comparable(&d.template);
    let mut sets: Vec<&Arc<Set>> = mine.to_vec();
    sets.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let new_set = sets
        .iter()
        .find(|s| !s.deleting && s.template == want)
        .copied();
    let mut olds: Vec<View> = sets
        .iter()
        .filter(|s| new_set.is_none_or(|n| n.uid != s.uid))
        .map(|s| View {
            set: (*s).clone(),
            replicas: s.replicas,
            annotations: s.annotations.clone(),
        })
        .collect();
    let max_old = olds.iter().map(|v| v.set.revision()).max().unwrap_or(0);
    let (surge, unavailable) = d.surge_and_unavailable();
    let scaled = |annotations: &mut BTreeMap<String, String>| {
        annotations.insert(DESIRED_REPLICAS.into(), d.replicas.to_string());
        annotations.insert(MAX_REPLICAS.into(), (d.replicas + surge).to_string());
    };
    let mut new = new_set.map(|s| {
        let mut annotations = s.annotations.clone();
        copy_annotations(d, &mut annotations);
        if s.revision() <= max_old {
            let old_rev = s.revision();
            annotations.insert(REVISION.into(), (max_old + 1).to_string());
            if old_rev > 0 {
                let mut history: Vec<String> = annotations
                    .get(REVISION_HISTORY)
                    .map(|h| h.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                history.push(old_rev.to_string());
                annotations.insert(REVISION_HISTORY.into(), history.join(","));
            }
        }
        if !annotations.contains_key(DESIRED_REPLICAS) {
            scaled(&mut annotations);
        }
        View {
            set: s.clone(),
            replicas: s.replicas,
            annotations,
        }
    });
    let mut created = None;
    let mut stop = false;
    // Resized (an active set was last sized for another replica count) or
    // paused: resize the sets as they are, roll nothing.
    let desired = d.replicas.to_string();
    let resized = new
        .iter()
        .chain(olds.iter())
        .filter(|v| v.set.replicas > 0)
        .any(|v| v.set.annotations.get(DESIRED_REPLICAS) != Some(&desired));
    if d.paused || resized {
        scale(d, new.as_mut(), &mut olds, surge);
    } else if d.strategy == Strategy::Recreate {
        let mut scaling_down = false;
        for v in olds.iter_mut().filter(|v| v.replicas > 0) {
            v.replicas = 0;
            scaled(&mut v.annotations);
            scaling_down = true;
        }
        let pods_left = olds.iter().any(|v| v.set.current > 0);
        if !scaling_down && !pods_left {
            match &mut new {
                Some(n) => {
                    if n.replicas != d.replicas {
                        scaled(&mut n.annotations);
                    }
                    n.replicas = d.replicas;
                }
                None => created = Some(d.replicas),
            }
        }
    } else {
        // RollingUpdate: first the new set grows (then nothing else this
        // round), else the old ones shrink.
        // Pods a set still has count until they are gone, not only what it
        // is asked for (Kubernetes counts only the latter, so a scale-up
        // racing a scale-down can briefly exceed the surge).
        let total: i64 = olds
            .iter()
            .chain(new.iter())
            .map(|v| v.replicas.max(v.set.current))
            .sum();
        let current_new = new.as_ref().map_or(0, |n| n.replicas);
        let target = if current_new >= d.replicas {
            d.replicas
        } else {
            let room = d.replicas + surge - total;
            if room <= 0 {
                current_new
            } else {
                current_new + room.min(d.replicas - current_new)
            }
        };
        match &mut new {
            None => {
                created = Some(target);
                stop = true;
            }
            Some(n) => {
                if n.replicas != target {
                    scaled(&mut n.annotations);
                    stop = target > n.replicas;
                    n.replicas = target;
                }
            }
        }
        if !stop {
            let n = new.as_ref().expect("stop unless there is a new set");
            scale_down_old(d, &mut olds, n, unavailable);
        }
    }
    let new_name = match created {
        Some(replicas) => {
            let hash = template_hash(&d.template, d.collision_count);
            let set = new_set_object(d, &hash, replicas, max_old + 1, surge);
            let name = set["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            out.actions.push(Action::Create {
                deployment: d.clone(),
                set,
            });
            Some(name)
        }
        None => new.as_ref().map(|n| n.set.name.clone()),
    };
    for v in new.iter().chain(olds.iter()) {
        if v.replicas != v.set.replicas || v.annotations != v.set.annotations {
            out.actions.push(Action::Scale {
                deployment: d.clone(),
                set: v.set.clone(),
                replicas: v.replicas,
                annotations: v.annotations.clone(),
            });
        }
    }
    let revision = match (&new, created) {
        (_, Some(_)) => Some((max_old + 1).to_string()),
        (Some(n), None) => n.annotations.get(REVISION).cloned(),
        (None, None) => None,
    };
    if let Some(rev) = revision
        && d.annotations.get(REVISION) != Some(&rev)
    {
        out.actions.push(Action::Annotate {
            deployment: d.clone(),
            revision: rev,
        });
    }
    let status = status(
        d,
        new.as_ref(),
        &olds,
        new_name.as_deref(),
        created.is_some(),
        now,
    );
    if !d.paused
        && let Some(deadline) = d.progress_deadline
        && let Some(c) = condition(&status, "Progressing")
        && c["reason"] != "NewReplicaSetAvailable"
        && c["reason"] != "ProgressDeadlineExceeded"
        && let Some(t) = time(&c["lastUpdateTime"])
    {
        let left = (t + deadline - now + 1).max(1);
        out.wake_in = Some(out.wake_in.map_or(left, |w| w.min(left)));
    }
    if complete(d, &status) && created.is_none() {
        cleanup(d, &olds, out);
    }
    if status != d.status {
        out.actions.push(Action::Status {
            deployment: d.clone(),
            status,
        });
    }
}

/// Kubernetes' `scale`: the only set with pods (or else the newest) takes
/// every replica; a saturated new set leaves the old ones none; otherwise,
/// rolling, every set with pods grows or shrinks in proportion to its size
/// (by the `max-replicas` it was last sized for), leftovers to the largest.
fn scale(d: &Deployment, new: Option<&mut View>, olds: &mut [View], surge: i64) {
    fn set_to(d: &Deployment, v: &mut View, replicas: i64, surge: i64) {
        v.replicas = replicas;
        v.annotations
            .insert(DESIRED_REPLICAS.into(), d.replicas.to_string());
        v.annotations
            .insert(MAX_REPLICAS.into(), (d.replicas + surge).to_string());
    }
    let has_new = new.is_some();
    let mut all: Vec<&mut View> = olds.iter_mut().collect();
    all.extend(new);
    let active: Vec<usize> = (0..all.len()).filter(|&i| all[i].replicas > 0).collect();
    match active[..] {
        [] => {
            if let Some(v) = all.last_mut() {
                set_to(d, v, d.replicas, surge);
            }
            return;
        }
        [one] => {
            set_to(d, all[one], d.replicas, surge);
            return;
        }
        _ => {}
    }
    let last = all.len() - 1;
    if has_new && all[last].replicas == d.replicas && all[last].set.available == d.replicas {
        for i in active.into_iter().filter(|&i| i != last) {
            set_to(d, all[i], 0, surge);
        }
        return;
    }
    if d.strategy == Strategy::Recreate {
        return;
    }
    let total: i64 = active.iter().map(|&i| all[i].replicas).sum();
    let allowed = if d.replicas > 0 {
        d.replicas + surge
    } else {
        0
    };
    let to_add = allowed - total;
    let mut order = active;
    order.sort_by(|&a, &b| {
        let (a, b) = (&all[a], &all[b]);
        let age = if to_add > 0 {
            b.set.created.cmp(&a.set.created)
        } else {
            a.set.created.cmp(&b.set.created)
        };
        b.replicas.cmp(&a.replicas).then(age)
    });
    let mut added = 0;
    let mut sizes: Vec<(usize, i64)> = Vec::new();
    for &i in &order {
        let v = &all[i];
        let p = proportion(d, v, to_add, added, surge);
        added += p;
        sizes.push((i, v.replicas + p));
    }
    if let Some(first) = sizes.first_mut() {
        first.1 = (first.1 + to_add - added).max(0);
    }
    for (i, size) in sizes {
        set_to(d, all[i], size, surge);
    }
}

/// Kubernetes' `GetProportion`: how many of `to_add` (of which `added` are
/// given out) a set gets, by its share of the size it was last sized for.
fn proportion(d: &Deployment, v: &View, to_add: i64, added: i64, surge: i64) -> i64 {
    if v.replicas == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if d.replicas == 0 {
        -v.replicas
    } else {
        let annotated = v
            .set
            .annotations
            .get(MAX_REPLICAS)
            .and_then(|m| m.parse::<i64>().ok())
            .filter(|m| *m > 0)
            .unwrap_or_else(|| d.status["replicas"].as_i64().unwrap_or(0).max(1));
        let size = (v.replicas * (d.replicas + surge)) as f64 / annotated as f64;
        size.round() as i64 - v.replicas
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Kubernetes' `reconcileOldReplicaSets`: unavailable old pods go first
/// (they hold nothing up), then available ones while enough stay available.
fn scale_down_old(d: &Deployment, olds: &mut [View], new: &View, max_unavailable: i64) {
    let old_total: i64 = olds.iter().map(|v| v.replicas).sum();
    if old_total == 0 {
        return;
    }
    let all_total = old_total + new.replicas;
    let min_available = d.replicas - max_unavailable;
    let new_unavailable = new.replicas - new.set.available.min(new.replicas);
    let max_down = all_total - min_available - new_unavailable;
    if max_down <= 0 {
        return;
    }
    let mut cleaned = 0;
    for v in olds.iter_mut() {
        if cleaned >= max_down {
            break;
        }
        let unhealthy = v.replicas - v.set.available;
        if v.replicas == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_down - cleaned).min(unhealthy);
        v.replicas -= down;
        cleaned += down;
    }
    // A set's status lags its scale-down: it cannot keep more available
    // pods than it is asked for (Kubernetes reads the status alone, and can
    // scale down twice on a stale one).
    let available: i64 = olds
        .iter()
        .chain([new])
        .map(|v| v.set.available.min(v.replicas))
        .sum();
    if available > min_available {
        let total_down = available - min_available;
        let mut done = 0;
        for v in olds.iter_mut() {
            if done >= total_down {
                break;
            }
            if v.replicas == 0 {
                continue;
            }
            let down = v.replicas.min(total_down - done);
            v.replicas -= down;
            done += down;
        }
    }
    for v in olds.iter_mut() {
        if v.replicas != v.set.replicas {
            v.annotations
                .insert(DESIRED_REPLICAS.into(), d.replicas.to_string());
            let (surge, _) = d.surge_and_unavailable();
            v.annotations
                .insert(MAX_REPLICAS.into(), (d.replicas + surge).to_string());
        }
    }
}

/// Copies the Deployment's own annotations (change-cause and the like) to
/// its new set, as `rollout history` reads them there.
fn copy_annotations(d: &Deployment, to: &mut BTreeMap<String, String>) {
    for (k, v) in &d.annotations {
        if !NOT_COPIED.contains(&k.as_str()) {
            to.insert(k.clone(), v.clone());
        }
    }
}

/// The ReplicaSet for the Deployment's current template.
fn new_set_object(d: &Deployment, hash: &str, replicas: i64, revision: i64, surge: i64) -> Value {
    let mut template = d.template.clone();
    if !template["metadata"].is_object() {
        template["metadata"] = json!({});
    }
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    template["metadata"]["labels"][HASH_LABEL] = hash.into();
    let mut selector = d.selector_raw.clone();
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"][HASH_LABEL] = hash.into();
    let mut annotations = BTreeMap::new();
    copy_annotations(d, &mut annotations);
    annotations.insert(REVISION.into(), revision.to_string());
    annotations.insert(DESIRED_REPLICAS.into(), d.replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), (d.replicas + surge).to_string());
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", d.name),
            "namespace": d.namespace,
            "labels": template["metadata"]["labels"],
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "Deployment", "name": d.name,
                "uid": d.uid, "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d.min_ready_seconds,
            "selector": selector,
            "template": template,
        },
    })
}

fn condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// Kubernetes' `SetDeploymentCondition`: the same status and reason change
/// nothing; a new reason keeps the transition time; a new status is new.
fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let cur = conditions.iter().position(|c| c["type"] == kind);
    let mut transition = now.to_owned();
    if let Some(i) = cur {
        let c = &conditions[i];
        if c["status"] == status && c["reason"] == reason {
            return;
        }
        if c["status"] == status {
            transition = c["lastTransitionTime"].as_str().unwrap_or(now).to_owned();
        }
        conditions.remove(i);
    }
    conditions.push(json!({
        "type": kind, "status": status, "lastUpdateTime": now,
        "lastTransitionTime": transition, "reason": reason, "message": message,
    }));
}

fn complete(d: &Deployment, status: &Value) -> bool {
    let n = |k: &str| status[k].as_i64().unwrap_or(0);
    n("updatedReplicas") == d.replicas
        && n("replicas") == d.replicas
        && n("availableReplicas") == d.replicas
        && n("observedGeneration") >= d.generation
}

fn status(
    d: &Deployment,
    new: Option<&View>,
    olds: &[View],
    new_name: Option<&str>,
    created: bool,
    now: i64,
) -> Value {
    let all = || new.into_iter().chain(olds.iter());
    let available: i64 = all().map(|v| v.set.available).sum();
    let total: i64 = all().map(|v| v.replicas).sum();
    let mut status = json!({
        "observedGeneration": d.generation,
        "replicas": all().map(|v| v.set.current).sum::<i64>(),
        "updatedReplicas": new.map_or(0, |n| n.set.current),
        "readyReplicas": all().map(|v| v.set.ready).sum::<i64>(),
        "availableReplicas": available,
        "unavailableReplicas": (total - available).max(0),
    });
    if d.collision_count > 0 {
        status["collisionCount"] = d.collision_count.into();
    }
    let stamp = bosun_api::time::format_time(now);
    let mut conditions: Vec<Value> = d.status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (_, max_unavailable) = d.surge_and_unavailable();
    if available >= d.replicas - max_unavailable {
        set_condition(
            &mut conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            &stamp,
        );
    } else {
        set_condition(
            &mut conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            &stamp,
        );
    }
    if d.progress_deadline.is_some() {
        progressing(
            d,
            &mut status,
            &mut conditions,
            new_name,
            created,
            &stamp,
            now,
        );
    }
    status["conditions"] = Value::Array(conditions);
    status
}

/// The Progressing condition, as Kubernetes' `syncRolloutStatus`.
fn progressing(
    d: &Deployment,
    status: &mut Value,
    conditions: &mut Vec<Value>,
    new_name: Option<&str>,
    created: bool,
    stamp: &str,
    now: i64,
) {
    let find = |c: &Vec<Value>| c.iter().position(|c| c["type"] == "Progressing");
    if d.paused {
        set_condition(
            conditions,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            stamp,
        );
        return;
    }
    if find(conditions).is_some_and(|i| conditions[i]["reason"] == "DeploymentPaused") {
        set_condition(
            conditions,
            "Progressing",
            "Unknown",
            "DeploymentResumed",
            "Deployment is resumed",
            stamp,
        );
    }
    let Some(name) = new_name else {
        return;
    };
    if created {
        set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set {name:?}"),
            stamp,
        );
    } else if find(conditions).is_none() {
        set_condition(
            conditions,
            "Progressing",
            "True",
            "FoundNewReplicaSet",
            &format!("Found new replica set {name:?}"),
            stamp,
        );
    }
    let n = |s: &Value, k: &str| s[k].as_i64().unwrap_or(0);
    let old = &d.status;
    let moved = n(status, "updatedReplicas") > n(old, "updatedReplicas")
        || n(status, "replicas") - n(status, "updatedReplicas")
            < n(old, "replicas") - n(old, "updatedReplicas")
        || n(status, "readyReplicas") > n(old, "readyReplicas")
        || n(status, "availableReplicas") > n(old, "availableReplicas");
    if complete(d, status) {
        set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet {name:?} has successfully progressed."),
            stamp,
        );
    } else if moved {
        // Progress always moves the update time (the deadline's start).
        let transition = find(conditions)
            .map(|i| conditions.remove(i))
            .filter(|c| c["status"] == "True")
            .and_then(|c| c["lastTransitionTime"].as_str().map(str::to_owned))
            .unwrap_or_else(|| stamp.to_owned());
        conditions.push(json!({
            "type": "Progressing", "status": "True", "lastUpdateTime": stamp,
            "lastTransitionTime": transition, "reason": "ReplicaSetUpdated",
            "message": format!("ReplicaSet {name:?} is progressing."),
        }));
    } else if let Some(i) = find(conditions) {
        let c = &conditions[i];
        let timed_out = match c["reason"].as_str() {
            Some("NewReplicaSetAvailable") => false,
            Some("ProgressDeadlineExceeded") => true,
            _ => match (time(&c["lastUpdateTime"]), d.progress_deadline) {
                (Some(t), Some(deadline)) => t + deadline < now,
                _ => false,
            },
        };
        if timed_out {
            set_condition(
                conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet {name:?} has timed out progressing."),
                stamp,
            );
        }
    }
}

/// Deletes the oldest sets beyond `revisionHistoryLimit` that have no pods.
fn cleanup(d: &Deployment, olds: &[View], out: &mut Plan) {
    let mut alive: Vec<&View> = olds.iter().filter(|v| !v.set.deleting).collect();
    let mut excess = alive.len() as i64 - d.history_limit.max(0);
    if excess <= 0 {
        return;
    }
    alive.sort_by_key(|v| (v.set.revision(), v.set.created));
    for v in alive {
        if excess == 0 {
            break;
        }
        let s = &v.set;
        if s.replicas != 0
            || v.replicas != 0
            || s.current != 0
            || s.observed_generation < s.generation
        {
            continue;
        }
        out.actions.push(Action::Delete { set: s.clone() });
        excess -= 1;
    }
}

pub fn deployments() -> &'static Resource {
    resource::find("apps", "v1", "deployments").expect("in the table")
}

fn replicasets() -> &'static Resource {
    crate::replicaset::replicasets()
}

fn event_object(d: &Deployment) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": d.name, "namespace": d.namespace, "uid": d.uid}})
}

async fn scaled_event(recorder: &Recorder, d: &Deployment, set: &str, from: i64, to: i64) {
    let how = if to > from { "up" } else { "down" };
    let msg = format!("Scaled {how} replica set {set} from {from} to {to}");
    let _ = recorder
        .record(
            &event_object(d),
            EventType::Normal,
            "ScalingReplicaSet",
            &msg,
        )
        .await;
}

/// Does one action; the answer is the written object's (uid,
/// resourceVersion), which the next plan waits to see. Conflicts and objects
/// gone meanwhile are not errors.
pub async fn reconcile(
    client: &Client,
    recorder: &Recorder,
    action: &Action,
) -> Result<Option<(String, u64)>, Error> {
    let written = |v: &Value| {
        let m = &v["metadata"];
        let rv = m["resourceVersion"].as_str().and_then(|r| r.parse().ok());
        Some((m["uid"].as_str()?.to_owned(), rv?))
    };
    let done = match action {
        Action::Create { deployment: d, set } => {
            match client.create(replicasets(), Some(&d.namespace), set).await {
                Ok(v) => {
                    let name = set["metadata"]["name"].as_str().unwrap_or_default();
                    let to = set["spec"]["replicas"].as_i64().unwrap_or(0);
                    scaled_event(recorder, d, name, 0, to).await;
                    Ok(written(&v))
                }
                Err(e) if e.code() == Some(409) => collided(client, d, set).await.map(|()| None),
                Err(e) => Err(e),
            }
        }
        Action::Scale {
            deployment: d,
            set,
            replicas,
            annotations,
        } => {
            let mut obj = (*set.raw).clone();
            obj["spec"]["replicas"] = (*replicas).into();
            obj["metadata"]["annotations"] = json!(annotations);
            let r = client
                .update(replicasets(), Some(&set.namespace), &obj)
                .await;
            if r.is_ok() && *replicas != set.replicas {
                scaled_event(recorder, d, &set.name, set.replicas, *replicas).await;
            }
            r.map(|v| written(&v))
        }
        Action::Adopt { deployment: d, set } => {
            let mut cur = client
                .get(replicasets(), Some(&set.namespace), &set.name)
                .await?;
            let refs = cur["metadata"]["ownerReferences"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if cur["metadata"]["uid"] != set.uid.as_str()
                || refs.iter().any(|r| r["controller"] == true)
            {
                return Ok(None);
            }
            let mut refs = refs;
            refs.push(json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "name": d.name,
                "uid": d.uid, "controller": true, "blockOwnerDeletion": true,
            }));
            cur["metadata"]["ownerReferences"] = Value::Array(refs);
            client
                .update(replicasets(), Some(&set.namespace), &cur)
                .await
                .map(|v| written(&v))
        }
        Action::Delete { set } => {
            let params = DeleteParams {
                propagation_policy: None,
                uid: Some(set.uid.clone()),
            };
            client
                .delete(replicasets(), Some(&set.namespace), &set.name, &params)
                .await
                .map(|_| None)
        }
        Action::Annotate {
            deployment: d,
            revision,
        } => {
            let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
            client
                .patch(
                    deployments(),
                    Some(&d.namespace),
                    &d.name,
                    &Patch::Merge(patch),
                )
                .await
                .map(|v| written(&v))
        }
        Action::Status {
            deployment: d,
            status,
        } => client
            .patch_status(
                deployments(),
                Some(&d.namespace),
                &d.name,
                &Patch::Merge(json!({"status": status})),
            )
            .await
            .map(|v| written(&v)),
    };
    match done {
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(None),
        other => other,
    }
}

/// A set of the new set's name exists: if it is not this Deployment's with
/// this template (a hash collision, or another owner), the collision count
/// goes up and the next hash differs, as in Kubernetes.
async fn collided(client: &Client, d: &Deployment, set: &Value) -> Result<(), Error> {
    let name = set["metadata"]["name"].as_str().unwrap_or_default();
    let cur = client.get(replicasets(), Some(&d.namespace), name).await?;
    let ours = controller_of(&cur).as_deref() == Some(d.uid.as_str())
        && comparable(&cur["spec"]["template"]) == comparable(&d.template);
    if ours {
        return Ok(());
    }
    let patch = json!({"status": {"collisionCount": d.collision_count + 1}});
    client
        .patch_status(
            deployments(),
            Some(&d.namespace),
            &d.name,
            &Patch::Merge(patch),
        )
        .await
        .map(drop)
}

/// What the controller wrote and waits to see in its caches before planning
/// a Deployment again: planning from sets it has just scaled, as the cache
/// still shows them, would scale them twice.
#[derive(Debug, Default)]
struct Awaited(HashMap<String, (Vec<(String, u64)>, i64)>);

impl Awaited {
    /// Forgets the writes now seen, and those too old to wait for.
    fn settle(&mut self, versions: &HashMap<&str, u64>, now: i64) {
        self.0.retain(|_, (writes, at)| {
            *at + 10 >= now
                && !writes
                    .iter()
                    .all(|(uid, rv)| versions.get(uid.as_str()).is_some_and(|seen| seen >= rv))
        });
    }
}

/// Runs the controller until the future is dropped.
pub async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let ds: Arc<Mirror<(Arc<Deployment>, u64)>> = Mirror::new(notify.clone());
    let sets: Arc<Mirror<Arc<Set>>> = Mirror::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        ds.clone()
            .reflect(Watcher::new(client.clone(), deployments(), None), |v| {
                let rv = v["metadata"]["resourceVersion"].as_str()?.parse().ok()?;
                Some((Arc::new(Deployment::of(v)?), rv))
            }),
    );
    tasks.spawn(
        sets.clone()
            .reflect(Watcher::new(client.clone(), replicasets(), None), |v| {
                Set::of(v).map(Arc::new)
            }),
    );
    let recorder = Recorder::new(client.clone(), "deployment-controller");
    let awaited = Arc::new(Mutex::new(Awaited::default()));
    let mut wake_in = None;
    loop {
        changed_or(&notify, wake_in).await;
        if !ds.synced() || !sets.synced() {
            continue;
        }
        let (all_ds, all_sets) = (ds.snapshot(), sets.snapshot());
        let now = unix_now();
        let mut versions: HashMap<&str, u64> = all_sets
            .iter()
            .map(|s| (s.uid.as_str(), s.resource_version))
            .collect();
        for (d, rv) in &all_ds {
            versions.insert(d.uid.as_str(), *rv);
        }
        let ready: Vec<Arc<Deployment>> = {
            let mut awaited = awaited.lock().unwrap_or_else(|e| e.into_inner());
            awaited.settle(&versions, now);
            all_ds
                .iter()
                .filter(|(d, _)| !awaited.0.contains_key(&d.uid))
                .map(|(d, _)| d.clone())
                .collect()
        };
        let planned = plan(&ready, &all_sets, now);
        wake_in = planned.wake_in;
        let mut running = tokio::task::JoinSet::new();
        for action in planned.actions {
            let (client, recorder, awaited) = (client.clone(), recorder.clone(), awaited.clone());
            running.spawn(async move {
                let d = match &action {
                    Action::Create { deployment, .. }
                    | Action::Scale { deployment, .. }
                    | Action::Annotate { deployment, .. }
                    | Action::Adopt { deployment, .. }
                    | Action::Status { deployment, .. } => Some(deployment.uid.clone()),
                    Action::Delete { .. } => None,
                };
                match reconcile(&client, &recorder, &action).await {
                    Ok(Some(w)) => {
                        if let Some(d) = d {
                            let mut awaited = awaited.lock().unwrap_or_else(|e| e.into_inner());
                            let entry = awaited.0.entry(d).or_insert_with(|| (Vec::new(), now));
                            entry.0.push(w);
                            entry.1 = now;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("bosun controllers: deployment: {}: {e}", describe(&action))
                    }
                }
            });
        }
        while running.join_next().await.is_some() {}
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Create { set, .. } => format!("create replica set {}", set["metadata"]["name"]),
        Action::Scale { set, replicas, .. } => {
            format!("scale {}/{} to {replicas}", set.namespace, set.name)
        }
        Action::Delete { set } => format!("delete {}/{}", set.namespace, set.name),
        Action::Adopt { set, .. } => format!("adopt {}/{}", set.namespace, set.name),
        Action::Annotate { deployment, .. } => {
            format!("annotate {}/{}", deployment.namespace, deployment.name)
        }
        Action::Status { deployment, .. } => {
            format!("status of {}/{}", deployment.namespace, deployment.name)
        }
    }
}

#[cfg(test)]
mod tests;
