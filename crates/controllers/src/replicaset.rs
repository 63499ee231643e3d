//! The ReplicaSet controller: keeps `spec.replicas` pods matching each
//! ReplicaSet's selector, as Kubernetes' does.
//!
//! - Pods are made from the template (`generateName: <set>-`, a controller
//!   owner reference with `blockOwnerDeletion`, so the garbage collector takes
//!   them with their set); failed, finished and deleted pods are replaced.
//! - A surplus is deleted in Kubernetes' order: unscheduled first, then
//!   pending, then not ready, then ready for the shortest time, then the most
//!   restarted, then the newest.
//! - Orphans matching a selector are adopted; owned pods that stop matching
//!   are released.
//! - Status: replicas, fullyLabeledReplicas, readyReplicas, availableReplicas
//!   (ready for `minReadySeconds`), observedGeneration.
//!
//! [`plan`] decides from snapshots of sets and pods plus [`Pending`]: the
//! creations and deletions this controller made that the pod watch has not
//! shown yet (Kubernetes' "expectations"), without which a lagging cache
//! would make it create or delete twice. [`run`] mirrors sets and pods through
//! watches (never a list per change) and issues writes concurrently, at most
//! [`IN_FLIGHT`] at a time, so that thousands of pods a second can be made.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_api::selector::LabelSelector;
use bosun_client::events::{EventType, Recorder};
use bosun_client::{Client, DeleteParams, Error, Patch, Watcher};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

/// How many writes the controller has in flight at once: the store commits
/// concurrent writes in one batch, so this, not latency, bounds throughput.
pub const IN_FLIGHT: usize = 128;

/// How long a creation or deletion the watch has not shown is trusted; after
/// that the cache is believed again (Kubernetes waits five minutes).
const EXPECTATION_TTL: i64 = 60;

/// More pods than this made or deleted in one go are reported in one event,
/// not one each, so that a 10,000-pod scale-up does not double the writes.
const EVENTS_EACH: usize = 10;

/// A pod's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Pending,
    Unknown,
    Running,
    Succeeded,
    Failed,
}

/// What the controllers read of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The uid of its controller (the owner reference with `controller: true`).
    pub controller: Option<String>,
    pub deleting: bool,
    pub phase: Phase,
    /// Bound to a node.
    pub scheduled: bool,
    /// Since when its Ready condition is True (unix seconds), if it is.
    pub ready_since: Option<i64>,
    pub created: i64,
    pub restarts: i64,
}

impl Pod {
    pub fn of(v: &Value) -> Option<Pod> {
        let m = &v["metadata"];
        let ready = v["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True");
        Some(Pod {
            uid: m["uid"].as_str()?.to_owned(),
            name: m["name"].as_str()?.to_owned(),
            namespace: m["namespace"].as_str().unwrap_or_default().to_owned(),
            labels: labels(&m["labels"]),
            controller: controller_of(v),
            deleting: !m["deletionTimestamp"].is_null(),
            phase: match v["status"]["phase"].as_str() {
                Some("Running") => Phase::Running,
                Some("Succeeded") => Phase::Succeeded,
                Some("Failed") => Phase::Failed,
                Some("Unknown") => Phase::Unknown,
                _ => Phase::Pending,
            },
            scheduled: v["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            ready_since: ready.map(|c| time(&c["lastTransitionTime"]).unwrap_or(0)),
            created: time(&m["creationTimestamp"]).unwrap_or(0),
            restarts: v["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["restartCount"].as_i64())
                .sum(),
        })
    }

    /// Counts toward a set's replicas: not finished and not being deleted.
    pub fn active(&self) -> bool {
        !self.deleting && !matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }

    fn available(&self, min_ready_seconds: i64, now: i64) -> bool {
        self.ready_since
            .is_some_and(|t| min_ready_seconds == 0 || t + min_ready_seconds <= now)
    }

    fn pod_ref(&self) -> PodRef {
        PodRef {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            uid: self.uid.clone(),
        }
    }
}

/// A ReplicaSet's status fields this controller owns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    pub replicas: i64,
    pub fully_labeled_replicas: i64,
    pub ready_replicas: i64,
    pub available_replicas: i64,
    pub observed_generation: i64,
}

impl Status {
    fn of(s: &Value) -> Status {
        let n = |k: &str| s[k].as_i64().unwrap_or(0);
        Status {
            replicas: n("replicas"),
            fully_labeled_replicas: n("fullyLabeledReplicas"),
            ready_replicas: n("readyReplicas"),
            available_replicas: n("availableReplicas"),
            observed_generation: n("observedGeneration"),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "replicas": self.replicas,
            "fullyLabeledReplicas": self.fully_labeled_replicas,
            "readyReplicas": self.ready_replicas,
            "availableReplicas": self.available_replicas,
            "observedGeneration": self.observed_generation,
        })
    }
}

/// A ReplicaSet as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSet {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    pub replicas: i64,
    /// `None`: the selector cannot be read, and the set is left alone.
    pub selector: Option<LabelSelector>,
    pub template_labels: BTreeMap<String, String>,
    pub min_ready_seconds: i64,
    pub deleting: bool,
    pub status: Status,
    /// The pod template, as pods are made from it.
    pub template: Value,
}

impl ReplicaSet {
    pub fn of(v: &Value) -> Option<ReplicaSet> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        Some(ReplicaSet {
            uid: m["uid"].as_str()?.to_owned(),
            name: m["name"].as_str()?.to_owned(),
            namespace: m["namespace"].as_str().unwrap_or_default().to_owned(),
            generation: m["generation"].as_i64().unwrap_or(0),
            replicas: spec["replicas"].as_i64().unwrap_or(1).max(0),
            selector: selector(&spec["selector"]),
            template_labels: labels(&spec["template"]["metadata"]["labels"]),
            min_ready_seconds: spec["minReadySeconds"].as_i64().unwrap_or(0).max(0),
            deleting: !m["deletionTimestamp"].is_null(),
            status: Status::of(&v["status"]),
            template: spec["template"].clone(),
        })
    }
}

/// Which pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// One step toward the sets' desired state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make `count` pods from the set's template.
    Create { set: Arc<ReplicaSet>, count: usize },
    /// Delete these pods of the set.
    Delete {
        set: Arc<ReplicaSet>,
        pods: Vec<PodRef>,
    },
    /// Make the set the controller of an orphan that matches it.
    Adopt { set: Arc<ReplicaSet>, pod: PodRef },
    /// Drop the set's owner reference from a pod that no longer matches.
    Release { set: Arc<ReplicaSet>, pod: PodRef },
    /// Write the set's status.
    Status {
        set: Arc<ReplicaSet>,
        status: Status,
    },
}

/// What to do, and when to look again if nothing changes before.
#[derive(Debug, Default)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Seconds until a ready pod becomes available (its `minReadySeconds`
    /// pass), which changes a status with no event to say so.
    pub wake_in: Option<i64>,
}

/// What this controller did that the pod watch has not shown yet.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Pods made (uid → set uid, when) not yet seen.
    created: HashMap<String, (String, i64)>,
    /// Pods deleted (uid → when) still seen.
    deleted: HashMap<String, i64>,
}

impl Pending {
    pub fn created(&mut self, pod_uid: String, set_uid: String, now: i64) {
        self.created.insert(pod_uid, (set_uid, now));
    }

    pub fn deleted(&mut self, pod_uid: String, now: i64) {
        self.deleted.insert(pod_uid, now);
    }

    /// Forgets what the watch now shows, and what is too old to trust.
    pub fn settle(&mut self, seen: &HashSet<&str>, now: i64) {
        self.created
            .retain(|uid, (_, t)| !seen.contains(uid.as_str()) && *t + EXPECTATION_TTL > now);
        self.deleted
            .retain(|uid, t| seen.contains(uid.as_str()) && *t + EXPECTATION_TTL > now);
    }

    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.deleted.is_empty()
    }
}

/// Kubernetes' order for choosing pods to delete: the first is deleted first.
fn deletion_rank(p: &Pod) -> impl Ord {
    let phase = match p.phase {
        Phase::Pending => 0,
        Phase::Unknown => 1,
        _ => 2,
    };
    (
        p.scheduled,
        phase,
        p.ready_since.is_some(),
        // Ready for less time first: a later transition sorts first.
        std::cmp::Reverse(p.ready_since.unwrap_or(0)),
        std::cmp::Reverse(p.restarts),
        std::cmp::Reverse(p.created),
        p.name.clone(),
    )
}

/// What to do for every set, given every pod; `now` in unix seconds.
pub fn plan(sets: &[Arc<ReplicaSet>], pods: &[Arc<Pod>], pending: &Pending, now: i64) -> Plan {
    let mut owned: HashMap<&str, Vec<&Pod>> = HashMap::new();
    let mut orphans: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        match &p.controller {
            Some(c) => owned.entry(c.as_str()).or_default().push(p),
            None if !p.deleting => orphans.entry(p.namespace.as_str()).or_default().push(p),
            None => {}
        }
    }
    let mut seen: HashSet<&str> = HashSet::new();
    let mut unseen_created: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        seen.insert(p.uid.as_str());
    }
    for (uid, (set, _)) in &pending.created {
        if !seen.contains(uid.as_str()) {
            *unseen_created.entry(set.as_str()).or_default() += 1;
        }
    }
    let mut adopted: HashSet<&str> = HashSet::new();
    let mut sorted: Vec<&Arc<ReplicaSet>> = sets.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut out = Plan::default();
    for set in sorted {
        let Some(selector) = set.selector.as_ref().filter(|s| !s.is_empty()) else {
            continue;
        };
        // Pods that would not match could never count: making them would
        // never end (Kubernetes' validation refuses such a set).
        if set.deleting || !selector.matches(&set.template_labels) {
            continue;
        }
        let mut mine: Vec<&Pod> = Vec::new();
        for p in owned.get(set.uid.as_str()).into_iter().flatten() {
            if selector.matches(&p.labels) {
                mine.push(p);
            } else if !p.deleting {
                out.actions.push(Action::Release {
                    set: set.clone(),
                    pod: p.pod_ref(),
                });
            }
        }
        for p in orphans.get(set.namespace.as_str()).into_iter().flatten() {
            if selector.matches(&p.labels) && adopted.insert(p.uid.as_str()) {
                out.actions.push(Action::Adopt {
                    set: set.clone(),
                    pod: p.pod_ref(),
                });
                mine.push(p);
            }
        }
        let active: Vec<&Pod> = mine.into_iter().filter(|p| p.active()).collect();
        let mut deletable: Vec<&Pod> = active
            .iter()
            .copied()
            .filter(|p| !pending.deleted.contains_key(&p.uid))
            .collect();
        let expected = deletable.len() + unseen_created.get(set.uid.as_str()).copied().unwrap_or(0);
        let want = set.replicas as usize;
        if expected < want {
            out.actions.push(Action::Create {
                set: set.clone(),
                count: want - expected,
            });
        } else if expected > want {
            let surplus = (expected - want).min(deletable.len());
            deletable.sort_by_key(|p| deletion_rank(p));
            out.actions.push(Action::Delete {
                set: set.clone(),
                pods: deletable[..surplus].iter().map(|p| p.pod_ref()).collect(),
            });
        }
        let mut status = Status {
            replicas: active.len() as i64,
            observed_generation: set.generation,
            ..Status::default()
        };
        for p in &active {
            if set
                .template_labels
                .iter()
                .all(|(k, v)| p.labels.get(k) == Some(v))
            {
                status.fully_labeled_replicas += 1;
            }
            if let Some(since) = p.ready_since {
                status.ready_replicas += 1;
                if p.available(set.min_ready_seconds, now) {
                    status.available_replicas += 1;
                } else {
                    let left = since + set.min_ready_seconds - now;
                    out.wake_in = Some(out.wake_in.map_or(left, |w| w.min(left)));
                }
            }
        }
        if status != set.status {
            out.actions.push(Action::Status {
                set: set.clone(),
                status,
            });
        }
    }
    out
}

/// The pod a set makes: its template, named after it, owned by it.
pub fn pod_for(set: &ReplicaSet) -> Value {
    let t = &set.template;
    let mut meta = t["metadata"].as_object().cloned().unwrap_or_default();
    meta.remove("name");
    meta.remove("creationTimestamp");
    meta.insert("generateName".into(), format!("{}-", set.name).into());
    meta.insert("namespace".into(), set.namespace.clone().into());
    meta.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": set.name,
            "uid": set.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": t["spec"]})
}

pub fn pods() -> &'static Resource {
    resource::find("", "v1", "pods").expect("in the table")
}

pub fn replicasets() -> &'static Resource {
    resource::find("apps", "v1", "replicasets").expect("in the table")
}

/// Enough of a set for an event about it.
fn event_object(set: &ReplicaSet) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": set.name, "namespace": set.namespace, "uid": set.uid}})
}

/// Does one action. Conflicts and objects gone meanwhile are not errors: the
/// next plan sees the new state.
pub async fn reconcile(
    client: &Client,
    recorder: &Recorder,
    gate: &Arc<Semaphore>,
    pending: &Mutex<Pending>,
    action: &Action,
) -> Result<(), Error> {
    let done = match action {
        Action::Create { set, count } => create(client, recorder, gate, pending, set, *count).await,
        Action::Delete { set, pods: list } => {
            delete(client, recorder, gate, pending, set, list).await
        }
        Action::Adopt { set, pod } => {
            edit_owner(client, pod, |refs| {
                if refs.iter().any(|r| r["controller"] == true) {
                    return false;
                }
                refs.push(json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": set.name,
                    "uid": set.uid, "controller": true, "blockOwnerDeletion": true,
                }));
                true
            })
            .await
        }
        Action::Release { set, pod } => {
            edit_owner(client, pod, |refs| {
                let before = refs.len();
                refs.retain(|r| r["uid"] != set.uid.as_str());
                refs.len() != before
            })
            .await
        }
        Action::Status { set, status } => client
            .patch_status(
                replicasets(),
                Some(&set.namespace),
                &set.name,
                &Patch::Merge(json!({"status": status.to_json()})),
            )
            .await
            .map(drop),
    };
    match done {
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
        other => other,
    }
}

/// Makes `count` pods in Kubernetes' slow-start batches (1, 2, 4, … each
/// concurrent): a template the server refuses fails once, not `count` times.
async fn create(
    client: &Client,
    recorder: &Recorder,
    gate: &Arc<Semaphore>,
    pending: &Mutex<Pending>,
    set: &Arc<ReplicaSet>,
    count: usize,
) -> Result<(), Error> {
    let pod = Arc::new(pod_for(set));
    let mut made: Vec<String> = Vec::new();
    let mut batch = 1;
    let mut result = Ok(());
    while made.len() < count && result.is_ok() {
        let n = batch.min(count - made.len());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, gate, pod) = (client.clone(), gate.clone(), pod.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                client
                    .create(pods(), pod["metadata"]["namespace"].as_str(), &pod)
                    .await
            });
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(v)) => {
                    let uid = v["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                    pending.lock().unwrap_or_else(|p| p.into_inner()).created(
                        uid,
                        set.uid.clone(),
                        unix_now(),
                    );
                    made.push(
                        v["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                }
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(Error::Config(format!("a create task: {e}"))),
            }
        }
        batch *= 2;
    }
    if let Err(e) = &result {
        let msg = format!("Error creating: {e}");
        let _ = recorder
            .record(&event_object(set), EventType::Warning, "FailedCreate", &msg)
            .await;
    }
    report(recorder, set, "SuccessfulCreate", "Created", &made).await;
    result
}

async fn delete(
    client: &Client,
    recorder: &Recorder,
    gate: &Arc<Semaphore>,
    pending: &Mutex<Pending>,
    set: &Arc<ReplicaSet>,
    list: &[PodRef],
) -> Result<(), Error> {
    let mut tasks = tokio::task::JoinSet::new();
    for p in list {
        let (client, gate, p) = (client.clone(), gate.clone(), p.clone());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let params = DeleteParams {
                propagation_policy: None,
                uid: Some(p.uid.clone()),
            };
            let r = client
                .delete(pods(), Some(&p.namespace), &p.name, &params)
                .await;
            (p, r)
        });
    }
    let mut done = Vec::new();
    let mut result = Ok(());
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((p, Ok(_))) => {
                pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .deleted(p.uid.clone(), unix_now());
                done.push(p.name);
            }
            Ok((_, Err(e))) if matches!(e.code(), Some(404 | 409)) => {}
            Ok((_, Err(e))) => result = Err(e),
            Err(e) => result = Err(Error::Config(format!("a delete task: {e}"))),
        }
    }
    report(recorder, set, "SuccessfulDelete", "Deleted", &done).await;
    result
}

/// One event per pod, as Kubernetes records, or one for the lot when many.
async fn report(recorder: &Recorder, set: &ReplicaSet, reason: &str, verb: &str, names: &[String]) {
    let obj = event_object(set);
    if names.len() <= EVENTS_EACH {
        for n in names {
            let _ = recorder
                .record(&obj, EventType::Normal, reason, &format!("{verb} pod: {n}"))
                .await;
        }
    } else {
        let msg = format!("{verb} {} pods: {}, …", names.len(), names[..3].join(", "));
        let _ = recorder.record(&obj, EventType::Normal, reason, &msg).await;
    }
}

/// Reads the pod, changes its owner references with `change` (which says
/// whether it changed anything) and writes it back at the version read.
async fn edit_owner(
    client: &Client,
    pod: &PodRef,
    change: impl FnOnce(&mut Vec<Value>) -> bool,
) -> Result<(), Error> {
    let mut cur = client.get(pods(), Some(&pod.namespace), &pod.name).await?;
    if cur["metadata"]["uid"] != pod.uid.as_str() || !cur["metadata"]["deletionTimestamp"].is_null()
    {
        return Ok(());
    }
    let mut refs = cur["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !change(&mut refs) {
        return Ok(());
    }
    cur["metadata"]["ownerReferences"] = Value::Array(refs);
    client
        .update(pods(), Some(&pod.namespace), &cur)
        .await
        .map(drop)
}

/// The labels of a `metadata.labels` object.
pub fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// The uid of an object's controller.
pub fn controller_of(v: &Value) -> Option<String> {
    v["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["controller"] == true)
        .and_then(|o| o["uid"].as_str())
        .map(str::to_owned)
}

/// A `metav1.LabelSelector` (matchLabels and matchExpressions), parsed; an
/// unreadable one is `None`.
pub fn selector(v: &Value) -> Option<LabelSelector> {
    let mut parts = Vec::new();
    for (k, val) in v["matchLabels"].as_object().into_iter().flatten() {
        parts.push(format!("{k}={}", val.as_str()?));
    }
    for e in v["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str()?;
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str()? {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        });
    }
    LabelSelector::parse(&parts.join(",")).ok()
}

pub(crate) fn time(v: &Value) -> Option<i64> {
    bosun_api::time::parse_time(v.as_str()?)
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A watched set kept in memory, like [`bosun_client::Cache`], that also
/// says whether the first list has arrived: planning from an empty pod cache
/// would make every set's pods again.
#[derive(Debug)]
pub(crate) struct Mirror<T> {
    objects: Mutex<HashMap<String, T>>,
    synced: AtomicBool,
    changed: Arc<Notify>,
}

impl<T: Clone + Send + 'static> Mirror<T> {
    pub(crate) fn new(changed: Arc<Notify>) -> Arc<Mirror<T>> {
        Arc::new(Mirror {
            objects: Mutex::default(),
            synced: AtomicBool::new(false),
            changed,
        })
    }

    pub(crate) fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub(crate) fn snapshot(&self) -> Vec<T> {
        let map = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        map.values().cloned().collect()
    }

    /// Keeps the mirror equal to what `watcher` watches, forever.
    pub(crate) async fn reflect(
        self: Arc<Self>,
        mut watcher: Watcher,
        map: impl Fn(&Value) -> Option<T>,
    ) {
        use bosun_client::Event;
        let uid = |v: &Value| v["metadata"]["uid"].as_str().map(str::to_owned);
        loop {
            let Ok(event) = watcher.next().await else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            {
                let mut objects = self.objects.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Event::Restarted(items) => {
                        objects.clear();
                        for v in &items {
                            if let (Some(u), Some(t)) = (uid(v), map(v)) {
                                objects.insert(u, t);
                            }
                        }
                        self.synced.store(true, Ordering::Release);
                    }
                    Event::Applied(v) => match (uid(&v), map(&v)) {
                        (Some(u), Some(t)) => {
                            objects.insert(u, t);
                        }
                        (Some(u), None) => {
                            objects.remove(&u);
                        }
                        _ => {}
                    },
                    Event::Deleted(v) => {
                        if let Some(u) = uid(&v) {
                            objects.remove(&u);
                        }
                    }
                }
            }
            self.changed.notify_one();
        }
    }
}

/// Waits for a change, or `wake_in` seconds if given (else the resync).
pub(crate) async fn changed_or(notify: &Notify, wake_in: Option<i64>) {
    match wake_in {
        Some(s) => {
            let wait = Duration::from_secs(s.max(0) as u64) + Duration::from_millis(100);
            let _ = tokio::time::timeout(wait.min(crate::RESYNC), notify.notified()).await;
            tokio::time::sleep(crate::SETTLE).await;
        }
        None => crate::changed(notify).await,
    }
}

/// Runs the controller until the future is dropped.
pub async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let sets: Arc<Mirror<Arc<ReplicaSet>>> = Mirror::new(notify.clone());
    let all_pods: Arc<Mirror<Arc<Pod>>> = Mirror::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(
        sets.clone()
            .reflect(Watcher::new(client.clone(), replicasets(), None), |v| {
                ReplicaSet::of(v).map(Arc::new)
            }),
    );
    tasks.spawn(
        all_pods
            .clone()
            .reflect(Watcher::new(client.clone(), pods(), None), |v| {
                Pod::of(v).map(Arc::new)
            }),
    );
    let recorder = Recorder::new(client.clone(), "replicaset-controller");
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let pending = Arc::new(Mutex::new(Pending::default()));
    // Sets with work under way are not planned again until it is done (their
    // Pending entries are then complete), but the others are: one set's
    // 10,000 pods do not hold up another's.
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut running = tokio::task::JoinSet::new();
    let mut wake_in = None;
    loop {
        changed_or(&notify, wake_in).await;
        while running.try_join_next().is_some() {}
        if !sets.synced() || !all_pods.synced() {
            continue;
        }
        // Busy first, Pending second: a set that finished in between has
        // all it did in the Pending copy.
        let was_busy = busy.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (s, p) = (sets.snapshot(), all_pods.snapshot());
        let now = unix_now();
        let snapshot = {
            let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
            let seen: HashSet<&str> = p.iter().map(|p| p.uid.as_str()).collect();
            pending.settle(&seen, now);
            pending.clone()
        };
        let planned = plan(&s, &p, &snapshot, now);
        wake_in = planned.wake_in;
        let mut by_set: HashMap<String, Vec<Action>> = HashMap::new();
        for action in planned.actions {
            by_set
                .entry(set_of(&action).uid.clone())
                .or_default()
                .push(action);
        }
        for (uid, actions) in by_set {
            if was_busy.contains(&uid)
                || !busy
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(uid.clone())
            {
                continue;
            }
            let (client, recorder, gate, pending, busy, notify) = (
                client.clone(),
                recorder.clone(),
                gate.clone(),
                pending.clone(),
                busy.clone(),
                notify.clone(),
            );
            running.spawn(async move {
                for action in &actions {
                    if let Err(e) = reconcile(&client, &recorder, &gate, &pending, action).await {
                        eprintln!("bosun controllers: replicaset: {}: {e}", describe(action));
                    }
                }
                busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&uid);
                notify.notify_one();
            });
        }
    }
}

fn set_of(action: &Action) -> &Arc<ReplicaSet> {
    match action {
        Action::Create { set, .. }
        | Action::Delete { set, .. }
        | Action::Adopt { set, .. }
        | Action::Release { set, .. }
        | Action::Status { set, .. } => set,
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Create { set, count } => {
            format!("create {count} pods of {}/{}", set.namespace, set.name)
        }
        Action::Delete { set, pods } => format!(
            "delete {} pods of {}/{}",
            pods.len(),
            set.namespace,
            set.name
        ),
        Action::Adopt { set, pod } => format!("adopt {} into {}", pod.name, set.name),
        Action::Release { set, pod } => format!("release {} from {}", pod.name, set.name),
        Action::Status { set, .. } => format!("status of {}/{}", set.namespace, set.name),
    }
}

#[cfg(test)]
mod tests;
