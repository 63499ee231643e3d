//! What the pod-owning controllers (DaemonSet, StatefulSet, Job) share: the
//! view of an owned pod, `metav1.LabelSelector` and node selector terms read
//! from JSON, template hashes, owner references, expectations (writes not yet
//! seen through the watch) and bounded concurrent reconciling.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use bosun_api::Resource;
use bosun_api::resource;
use bosun_client::events::{EventType, Recorder};
use bosun_client::{Client, DeleteParams, Error};
use serde_json::{Value, json};

/// The label holding the hash of the template a pod was made from.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// How many writes a controller keeps in flight: the store group-commits
/// concurrent writes, so one at a time would cap a controller at one fsync each.
const IN_FLIGHT: usize = 64;

/// How long a write of ours not yet seen through the watch is assumed done.
const EXPECT_FOR: Duration = Duration::from_secs(30);

pub fn pods() -> &'static Resource {
    resource::find("", "v1", "pods").expect("in the table")
}

/// A pod, as its owning controller reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// The uid of its controller (the ownerReference with `controller: true`).
    pub owner: String,
    pub labels: BTreeMap<String, String>,
    pub phase: Phase,
    /// The Ready condition is True.
    pub ready: bool,
    /// `spec.nodeName`, or before binding the node a required
    /// `matchFields` term on `metadata.name` names (a DaemonSet pod's).
    pub node: Option<String>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// Container restarts (a Job with `OnFailure` counts them as failures).
    pub restarts: u32,
    /// When its last container ended (Unix seconds), if they all did.
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

impl Pod {
    /// The pod, if its controller is of `kind`.
    pub fn of(kind: &str, v: &Value) -> Option<Pod> {
        let m = &v["metadata"];
        let owner = m["ownerReferences"]
            .as_array()?
            .iter()
            .find(|o| o["controller"] == true && o["kind"] == kind)?;
        let s = |f: &Value| f.as_str().map(str::to_owned);
        let status = &v["status"];
        let phase = match status["phase"].as_str() {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            _ => Phase::Pending,
        };
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let node = s(&v["spec"]["nodeName"])
            .filter(|n| !n.is_empty())
            .or_else(|| affinity_node(&v["spec"]));
        let restarts = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["restartCount"].as_u64())
            .sum::<u64>() as u32;
        let finished_at = status["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                c["state"]["terminated"]["finishedAt"]
                    .as_str()
                    .and_then(bosun_api::time::parse_time)
            })
            .collect::<Option<Vec<i64>>>()
            .and_then(|t| t.into_iter().max());
        Some(Pod {
            uid: s(&m["uid"])?,
            name: s(&m["name"])?,
            namespace: s(&m["namespace"]).unwrap_or_default(),
            owner: s(&owner["uid"])?,
            labels: string_map(&m["labels"]),
            phase,
            ready,
            node,
            deleting: !m["deletionTimestamp"].is_null(),
            restarts,
            finished_at,
        })
    }

    /// Running and Ready: what OrderedReady waits for, what counts as available.
    pub fn running_ready(&self) -> bool {
        self.phase == Phase::Running && self.ready && !self.deleting
    }

    pub fn hash(&self) -> Option<&str> {
        self.labels.get(REVISION_HASH).map(String::as_str)
    }
}

/// The node a pod's required node affinity pins it to with `matchFields`
/// on `metadata.name` (how a DaemonSet pod names its node before binding).
fn affinity_node(spec: &Value) -> Option<String> {
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?;
    terms.iter().find_map(|t| {
        t["matchFields"].as_array()?.iter().find_map(|f| {
            let values = f["values"].as_array()?;
            (f["key"] == "metadata.name" && f["operator"] == "In" && values.len() == 1)
                .then(|| values[0].as_str().map(str::to_owned))
                .flatten()
        })
    })
}

pub fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// One requirement of a label selector or node selector term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: String,
    pub values: Vec<String>,
}

impl Requirement {
    fn list(v: &Value) -> Vec<Requirement> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some(Requirement {
                    key: r["key"].as_str()?.to_owned(),
                    op: r["operator"].as_str()?.to_owned(),
                    values: r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect(),
                })
            })
            .collect()
    }

    pub fn matches(&self, value: Option<&str>) -> bool {
        let int = |s: &str| s.parse::<i64>().ok();
        let bound = self.values.first().and_then(|b| int(b));
        match (self.op.as_str(), value) {
            ("In", Some(v)) => self.values.iter().any(|x| x == v),
            ("NotIn", v) => v.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            ("Exists", v) => v.is_some(),
            ("DoesNotExist", v) => v.is_none(),
            ("Gt", Some(v)) => int(v).zip(bound).is_some_and(|(v, b)| v > b),
            ("Lt", Some(v)) => int(v).zip(bound).is_some_and(|(v, b)| v < b),
            _ => false,
        }
    }
}

/// A `metav1.LabelSelector`; the empty one selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub labels: BTreeMap<String, String>,
    pub expressions: Vec<Requirement>,
}

impl Selector {
    pub fn of(v: &Value) -> Selector {
        Selector {
            labels: string_map(&v["matchLabels"]),
            expressions: Requirement::list(&v["matchExpressions"]),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self
                .expressions
                .iter()
                .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

/// One node selector term: every requirement holds. The empty term selects
/// no node, as in Kubernetes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTerm {
    pub expressions: Vec<Requirement>,
    pub fields: Vec<Requirement>,
}

impl NodeTerm {
    /// The terms of a pod spec's required node affinity.
    pub fn required(spec: &Value) -> Vec<NodeTerm> {
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| NodeTerm {
                expressions: Requirement::list(&t["matchExpressions"]),
                fields: Requirement::list(&t["matchFields"]),
            })
            .collect()
    }

    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches(Some(name)))
    }
}

/// A short stable hash of a pod template, in Kubernetes' alphabet for names
/// (no vowels, no look-alikes), as the `controller-revision-hash` label.
pub fn template_hash(template: &Value) -> String {
    // serde_json's maps are sorted, so equal templates print equal.
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut out = String::new();
    let mut n = h;
    for _ in 0..10 {
        out.push(ALPHABET[(n % 27) as usize] as char);
        n = (n / 27) ^ h.rotate_left(7);
    }
    out
}

/// Who owns what a controller makes: enough to write an ownerReference and
/// to record an event on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn reference(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
               "uid": self.uid, "controller": true, "blockOwnerDeletion": true})
    }

    /// The owner as an object, for the event recorder.
    pub fn object(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind,
               "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid}})
    }
}

/// A pod made from `template` for `owner`: the template's metadata and spec,
/// `labels` added, the controller reference set.
pub fn pod_from(template: &Value, owner: &Owner, labels: &BTreeMap<String, String>) -> Value {
    let t = &template["metadata"];
    let mut all = string_map(&t["labels"]);
    all.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    let mut meta = json!({"namespace": owner.namespace, "labels": all,
                          "ownerReferences": [owner.reference()]});
    if let Some(a) = t["annotations"].as_object().filter(|a| !a.is_empty()) {
        meta["annotations"] = Value::Object(a.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]})
}

/// A pod write a controller plans.
#[derive(Debug, Clone, PartialEq)]
pub enum PodWrite {
    Create { owner: Owner, pod: Value },
    Delete { owner: Owner, pod: Pod },
}

/// Does one pod write and records the event Kubernetes' controllers record.
/// Returns what the expectations learn: the pod made, or the uid deleted.
pub async fn write_pod(
    client: &Client,
    events: &Recorder,
    write: &PodWrite,
) -> Result<Seen, Error> {
    match write {
        PodWrite::Create { owner, pod } => {
            match client.create(pods(), Some(&owner.namespace), pod).await {
                Ok(made) => {
                    let name = made["metadata"]["name"].as_str().unwrap_or_default();
                    let msg = format!("Created pod: {name}");
                    let _ = events
                        .record(&owner.object(), EventType::Normal, "SuccessfulCreate", &msg)
                        .await;
                    Ok(Pod::of(owner.kind, &made).map_or(Seen::Nothing, Seen::Created))
                }
                // The name is taken (a StatefulSet's pod not yet seen): the watch will show it.
                Err(e) if e.code() == Some(409) => Ok(Seen::Nothing),
                Err(e) => {
                    let msg = format!("Error creating: {e}");
                    let _ = events
                        .record(&owner.object(), EventType::Warning, "FailedCreate", &msg)
                        .await;
                    Err(e)
                }
            }
        }
        PodWrite::Delete { owner, pod } => {
            let params = DeleteParams {
                propagation_policy: None,
                uid: Some(pod.uid.clone()),
            };
            match client
                .delete(pods(), Some(&pod.namespace), &pod.name, &params)
                .await
            {
                Ok(_) => {
                    let msg = format!("Deleted pod: {}", pod.name);
                    let _ = events
                        .record(&owner.object(), EventType::Normal, "SuccessfulDelete", &msg)
                        .await;
                    Ok(Seen::Deleted(pod.uid.clone()))
                }
                Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(Seen::Deleted(pod.uid.clone())),
                Err(e) => Err(e),
            }
        }
    }
}

/// What a write tells the expectations.
#[derive(Debug, Clone)]
pub enum Seen {
    Created(Pod),
    Deleted(String),
    /// The owner with this uid now has these status fields.
    Status(String, Value),
    Nothing,
}

/// Writes of ours the watch has not shown yet, so that the next plan does
/// not make a pod twice or count a deleted one (Kubernetes' expectations).
#[derive(Debug, Default)]
pub struct Expectations {
    created: HashMap<String, (Pod, Instant)>,
    deleted: HashMap<String, Instant>,
    /// Status fields written, by owner uid: a plan on a cache that lags
    /// would otherwise write them again (a Job's startTime restamped).
    status: HashMap<String, (serde_json::Map<String, Value>, Instant)>,
}

impl Expectations {
    pub fn learn(&mut self, seen: Seen) {
        match seen {
            Seen::Created(p) => {
                self.created.insert(p.uid.clone(), (p, Instant::now()));
            }
            Seen::Deleted(uid) => {
                self.created.remove(&uid);
                self.deleted.insert(uid, Instant::now());
            }
            Seen::Status(uid, Value::Object(fields)) => {
                let entry = self
                    .status
                    .entry(uid)
                    .or_insert_with(|| (serde_json::Map::new(), Instant::now()));
                entry.0.extend(fields);
                entry.1 = Instant::now();
            }
            Seen::Status(..) | Seen::Nothing => {}
        }
    }

    /// The cached `status` of the owner `uid` with the fields written since
    /// laid over it, until the cache shows them all (or a while passed).
    pub fn status_view(&mut self, uid: &str, status: &mut Value) {
        let Some((fields, at)) = self.status.get(uid) else {
            return;
        };
        let caught_up = fields.iter().all(|(k, v)| status.get(k) == Some(v));
        if caught_up || at.elapsed() >= EXPECT_FOR {
            self.status.remove(uid);
            return;
        }
        if !status.is_object() {
            *status = Value::Object(serde_json::Map::new());
        }
        if let Some(s) = status.as_object_mut() {
            s.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }

    /// The cached pods corrected by what is expected; an expectation ends
    /// when the cache agrees or after a while (the watch missed nothing, the
    /// object changed again).
    pub fn view(&mut self, mut cached: Vec<Pod>) -> Vec<Pod> {
        let now = Instant::now();
        let have: std::collections::HashSet<String> =
            cached.iter().map(|p| p.uid.clone()).collect();
        self.created
            .retain(|uid, (_, at)| !have.contains(uid) && now - *at < EXPECT_FOR);
        self.deleted
            .retain(|uid, at| have.contains(uid) && now - *at < EXPECT_FOR);
        cached.retain(|p| !self.deleted.contains_key(&p.uid));
        cached.extend(self.created.values().map(|(p, _)| p.clone()));
        cached
    }
}

/// Runs `work` on every item with at most [`IN_FLIGHT`] at once; returns the
/// results in completion order.
pub async fn concurrently<T, R, F, Fut>(items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut out = Vec::new();
    for item in items {
        if set.len() >= IN_FLIGHT
            && let Some(Ok(r)) = set.join_next().await
        {
            out.push(r);
        }
        set.spawn(work(item));
    }
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out
}

/// Writes the planned actions (at most [`IN_FLIGHT`] at once) and learns
/// what each did, so the next plan sees it before the watch does; failures
/// are logged under `controller` and left to the next plan.
pub async fn write_all<A, F, Fut>(
    controller: &str,
    actions: Vec<A>,
    expect: &mut Expectations,
    reconcile: F,
) where
    A: std::fmt::Debug + Send + 'static,
    F: Fn(A) -> Fut,
    Fut: Future<Output = (Result<Seen, Error>, A)> + Send + 'static,
{
    for (r, a) in concurrently(actions, reconcile).await {
        match r {
            Ok(seen) => expect.learn(seen),
            Err(e) => eprintln!("bosun controllers: {controller}: {a:?}: {e}"),
        }
    }
}

/// Merges `patch` into the status of `owner` (a `res`); a conflict or a
/// vanished owner is left to the next plan.
pub async fn write_status(
    client: &Client,
    res: &Resource,
    owner: &Owner,
    patch: &Value,
) -> Result<Seen, Error> {
    let done = client
        .patch_status(
            res,
            Some(&owner.namespace),
            &owner.name,
            &bosun_client::Patch::Merge(json!({"status": patch})),
        )
        .await;
    match done {
        Ok(_) => Ok(Seen::Status(owner.uid.clone(), patch.clone())),
        Err(e) if !matches!(e.code(), Some(404 | 409)) => Err(e),
        Err(_) => Ok(Seen::Nothing),
    }
}

/// The status fields `want` sets that `have` lacks or has otherwise: the
/// merge patch to write, if any.
pub fn status_patch(have: &Value, want: &Value) -> Option<Value> {
    let want = want.as_object()?;
    let diff: serde_json::Map<String, Value> = want
        .iter()
        .filter(|(k, v)| have.get(k.as_str()) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!diff.is_empty()).then_some(Value::Object(diff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_terms() {
        let sel = Selector::of(&json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}));
        let labels = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert!(sel.matches(&labels(&[("app", "web")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(Selector::default().matches(&labels(&[])));
        let spec = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}});
        let terms = NodeTerm::required(&spec);
        assert!(terms[0].matches("n1", &labels(&[])));
        assert!(!terms[0].matches("n2", &labels(&[])));
        assert_eq!(affinity_node(&spec).as_deref(), Some("n1"));
        assert!(!NodeTerm::default().matches("n1", &labels(&[])));
    }

    #[test]
    fn hashes_are_stable_and_tell_templates_apart() {
        let a = json!({"spec": {"containers": [{"image": "a"}]}});
        let b = json!({"spec": {"containers": [{"image": "b"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert!(bosun_api::name::label_value(&template_hash(&a)).is_ok());
    }

    #[test]
    fn written_status_shows_until_the_cache_has_it() {
        let mut e = Expectations::default();
        e.learn(Seen::Status("u".into(), json!({"startTime": "t1"})));
        let mut stale = json!({});
        e.status_view("u", &mut stale);
        assert_eq!(stale, json!({"startTime": "t1"}));
        let mut other = json!({"active": 1});
        e.status_view("v", &mut other);
        assert_eq!(other, json!({"active": 1}));
        // The cache caught up: the memory goes, later changes show as they are.
        let mut fresh = json!({"startTime": "t1"});
        e.status_view("u", &mut fresh);
        let mut changed = json!({"startTime": "t2"});
        e.status_view("u", &mut changed);
        assert_eq!(changed, json!({"startTime": "t2"}));
    }

    #[test]
    fn only_changed_status_fields_are_patched() {
        let have = json!({"replicas": 1, "readyReplicas": 1});
        assert_eq!(status_patch(&have, &json!({"replicas": 1})), None);
        assert_eq!(
            status_patch(&have, &json!({"replicas": 2, "readyReplicas": 1})),
            Some(json!({"replicas": 2}))
        );
    }
}
