//! The DaemonSet controller: one pod of each DaemonSet on every node it
//! should run on, as Kubernetes' does.
//!
//! - A node is eligible when the template's `nodeName` (if any), nodeSelector
//!   and required node affinity select it and its taints are tolerated
//!   (`NoSchedule` and `NoExecute`); an untolerated `NoSchedule` taint keeps
//!   a running pod, an untolerated `NoExecute` one does not.
//! - Pods get the tolerations Kubernetes adds to daemon pods (not-ready and
//!   unreachable `NoExecute`, disk/memory/pid pressure and unschedulable
//!   `NoSchedule`, network-unavailable for host-network pods) and, as since
//!   Kubernetes 1.12, a required node affinity on `metadata.name` that pins
//!   each to its node: the scheduler binds them, so resources and host ports
//!   are checked like any pod's.
//! - Extra pods on a node go (the oldest is kept only as far as the cache
//!   tells; here: the first by name), finished pods are replaced, pods on
//!   nodes that left or stopped being eligible are deleted.
//! - `RollingUpdate`: pods of an older template are deleted while at most
//!   `maxUnavailable` nodes lack an available pod; `OnDelete` leaves them.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_client::events::Recorder;
use bosun_client::{Cache, Client, Error, Watcher, reflect};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::workload::{
    self, Expectations, NodeTerm, Owner, Pod, PodWrite, REVISION_HASH, Seen, Selector,
};

pub fn daemonsets() -> &'static Resource {
    resource::find("apps", "v1", "daemonsets").expect("in the table")
}

pub fn nodes() -> &'static Resource {
    resource::find("", "v1", "nodes").expect("in the table")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    pub key: String,
    pub exists: bool,
    pub value: String,
    pub effect: String,
}

impl Toleration {
    fn tolerates(&self, t: &Taint) -> bool {
        (self.effect.is_empty() || self.effect == t.effect)
            && (self.key.is_empty() && self.exists || self.key == t.key)
            && (self.exists || self.value == t.value)
    }

    fn json(&self) -> Value {
        let mut v = json!({"key": self.key, "operator": if self.exists {"Exists"} else {"Equal"},
                           "effect": self.effect});
        if !self.exists {
            v["value"] = self.value.clone().into();
        }
        v
    }
}

/// A node, as this controller reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl Node {
    pub fn of(v: &Value) -> Option<Node> {
        Some(Node {
            name: v["metadata"]["name"].as_str()?.to_owned(),
            labels: workload::string_map(&v["metadata"]["labels"]),
            taints: v["spec"]["taints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| {
                    Some(Taint {
                        key: t["key"].as_str()?.to_owned(),
                        value: t["value"].as_str().unwrap_or_default().to_owned(),
                        effect: t["effect"].as_str()?.to_owned(),
                    })
                })
                .collect(),
        })
    }
}

/// A DaemonSet, as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonSet {
    pub owner: Owner,
    pub generation: i64,
    pub selector: Selector,
    /// The template with the default tolerations added, as pods get it.
    pub template: Value,
    pub hash: String,
    pub node_name: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub terms: Vec<NodeTerm>,
    pub tolerations: Vec<Toleration>,
    /// `None`: `OnDelete`.
    pub max_unavailable: Option<IntOrPercent>,
    pub status: Value,
    pub deleting: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(usize),
    Percent(usize),
}

impl IntOrPercent {
    pub fn of(v: &Value, default: IntOrPercent) -> IntOrPercent {
        match v {
            Value::Number(n) => IntOrPercent::Int(n.as_u64().unwrap_or(0) as usize),
            Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .map_or(default, IntOrPercent::Percent),
            _ => default,
        }
    }

    /// Of `total`, rounding up (as Kubernetes does for maxUnavailable of
    /// DaemonSets), at least one so an update can progress.
    pub fn scaled(self, total: usize) -> usize {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => (total * p).div_ceil(100),
        }
        .max(1)
    }
}

fn default_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: key.to_owned(),
        exists: true,
        value: String::new(),
        effect: effect.to_owned(),
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

impl DaemonSet {
    pub fn of(v: &Value) -> Option<DaemonSet> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        let mut template = spec["template"].clone();
        let pod_spec = &template["spec"];
        let mut tolerations: Vec<Toleration> = pod_spec["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Toleration {
                key: t["key"].as_str().unwrap_or_default().to_owned(),
                exists: t["operator"] == "Exists",
                value: t["value"].as_str().unwrap_or_default().to_owned(),
                effect: t["effect"].as_str().unwrap_or_default().to_owned(),
            })
            .collect();
        let node_name = pod_spec["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_owned);
        let node_selector = workload::string_map(&pod_spec["nodeSelector"]);
        let terms = NodeTerm::required(pod_spec);
        let hash = workload::template_hash(&template);
        for d in default_tolerations(pod_spec["hostNetwork"] == true) {
            if !tolerations
                .iter()
                .any(|t| t.key == d.key && t.effect == d.effect && t.exists)
            {
                tolerations.push(d);
            }
        }
        template["spec"]["tolerations"] = tolerations.iter().map(Toleration::json).collect();
        let strategy = &spec["updateStrategy"];
        let max_unavailable = (strategy["type"] != "OnDelete").then(|| {
            IntOrPercent::of(
                &strategy["rollingUpdate"]["maxUnavailable"],
                IntOrPercent::Int(1),
            )
        });
        Some(DaemonSet {
            owner: Owner {
                api_version: "apps/v1",
                kind: "DaemonSet",
                namespace: m["namespace"].as_str()?.to_owned(),
                name: m["name"].as_str()?.to_owned(),
                uid: m["uid"].as_str()?.to_owned(),
            },
            generation: m["generation"].as_i64().unwrap_or(0),
            selector: Selector::of(&spec["selector"]),
            template,
            hash,
            node_name,
            node_selector,
            terms,
            tolerations,
            max_unavailable,
            status: v["status"].clone(),
            deleting: !m["deletionTimestamp"].is_null(),
        })
    }

    fn selects(&self, node: &Node) -> bool {
        self.node_name.as_ref().is_none_or(|n| *n == node.name)
            && self
                .node_selector
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
            && (self.terms.is_empty()
                || self
                    .terms
                    .iter()
                    .any(|t| t.matches(&node.name, &node.labels)))
    }

    fn untolerated(&self, node: &Node, effect: &str) -> bool {
        node.taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !self.tolerations.iter().any(|tol| tol.tolerates(t)))
    }

    /// Whether a new pod belongs on `node`, and whether a pod already there
    /// may stay.
    pub fn should_run(&self, node: &Node) -> (bool, bool) {
        if !self.selects(node) || self.untolerated(node, "NoExecute") {
            return (false, false);
        }
        (!self.untolerated(node, "NoSchedule"), true)
    }

    /// The pod for `node`: the template, pinned to the node by a required
    /// node affinity term on `metadata.name` (added to each of the
    /// template's terms, or the only term).
    pub fn pod_for(&self, node: &str) -> Value {
        let labels = BTreeMap::from([(REVISION_HASH.to_owned(), self.hash.clone())]);
        let mut pod = workload::pod_from(&self.template, &self.owner, &labels);
        pod["metadata"]["generateName"] = format!("{}-", self.owner.name).into();
        let field = json!({"key": "metadata.name", "operator": "In", "values": [node]});
        let mut terms: Vec<Value> = pod["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if terms.is_empty() {
            terms.push(json!({}));
        }
        for t in &mut terms {
            t["matchFields"] = json!([field]);
        }
        let spec = &mut pod["spec"];
        if !spec["affinity"].is_object() {
            spec["affinity"] = json!({});
        }
        if !spec["affinity"]["nodeAffinity"].is_object() {
            spec["affinity"]["nodeAffinity"] = json!({});
        }
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] =
            json!({"nodeSelectorTerms": terms});
        pod
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Pod(PodWrite),
    /// Merge-patch the DaemonSet's status.
    Status {
        owner: Owner,
        patch: Value,
    },
}

/// What to do, given every DaemonSet, node and daemon pod.
pub fn plan(sets: &[DaemonSet], nodes: &[Node], pods: &[Pod]) -> Vec<Action> {
    let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        by_owner.entry(p.owner.as_str()).or_default().push(p);
    }
    let mut actions = Vec::new();
    for ds in sets.iter().filter(|d| !d.deleting) {
        let mine = by_owner.remove(ds.owner.uid.as_str()).unwrap_or_default();
        plan_one(ds, nodes, &mine, &mut actions);
    }
    actions
}

fn plan_one(ds: &DaemonSet, nodes: &[Node], pods: &[&Pod], actions: &mut Vec<Action>) {
    let mut on_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    let mut delete: Vec<&Pod> = Vec::new();
    for p in pods.iter().filter(|p| !p.deleting) {
        match p.node.as_deref() {
            Some(n) => on_node.entry(n).or_default().push(p),
            None => delete.push(p),
        }
    }
    let known: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // Pods on nodes that left.
    for (name, list) in &on_node {
        if !known.contains_key(name) {
            delete.extend(list.iter().copied());
        }
    }
    let mut create: Vec<&str> = Vec::new();
    let (mut desired, mut scheduled, mut misscheduled) = (0, 0, 0);
    let (mut ready, mut available, mut updated) = (0, 0, 0);
    // Old-template pods by availability, candidates for a rolling update.
    let (mut old_ready, mut old_unready): (Vec<&Pod>, Vec<&Pod>) = (Vec::new(), Vec::new());
    for node in nodes {
        let (run, keep) = ds.should_run(node);
        let mut here: Vec<&Pod> = on_node.get(node.name.as_str()).cloned().unwrap_or_default();
        here.sort_by(|a, b| a.name.cmp(&b.name));
        if !keep {
            if !here.is_empty() {
                misscheduled += 1;
            }
            delete.extend(here);
            continue;
        }
        if run {
            desired += 1;
        } else if !here.is_empty() {
            misscheduled += 1;
        }
        // Finished pods are replaced.
        let (done, live): (Vec<&Pod>, Vec<&Pod>) =
            here.into_iter().partition(|p| p.phase.terminal());
        delete.extend(done);
        // One pod a node: the extra go (updated ones kept first).
        let mut live = live;
        live.sort_by_key(|p| (p.hash() != Some(ds.hash.as_str()), !p.running_ready()));
        if live.len() > 1 {
            delete.extend(live.drain(1..));
        }
        match live.first() {
            None if run => create.push(&node.name),
            None => {}
            Some(p) => {
                if run {
                    scheduled += 1;
                }
                if p.running_ready() {
                    ready += 1;
                    available += 1;
                }
                if p.hash() == Some(ds.hash.as_str()) {
                    updated += 1;
                } else if p.running_ready() {
                    old_ready.push(p);
                } else {
                    old_unready.push(p);
                }
            }
        }
    }
    if let Some(max) = ds.max_unavailable {
        // Unavailable old pods go at once; available ones only while the
        // number of nodes without an available pod stays within the bound.
        delete.extend(old_unready);
        let unavailable = desired - available.min(desired);
        let room = max.scaled(desired).saturating_sub(unavailable);
        old_ready.sort_by(|a, b| a.name.cmp(&b.name));
        delete.extend(old_ready.into_iter().take(room));
    }
    for p in delete {
        actions.push(Action::Pod(PodWrite::Delete {
            owner: ds.owner.clone(),
            pod: p.clone(),
        }));
    }
    for node in create {
        actions.push(Action::Pod(PodWrite::Create {
            owner: ds.owner.clone(),
            pod: ds.pod_for(node),
        }));
    }
    let want = json!({
        "desiredNumberScheduled": desired,
        "currentNumberScheduled": scheduled,
        "numberMisscheduled": misscheduled,
        "numberReady": ready,
        "numberAvailable": available,
        "numberUnavailable": desired - available.min(desired),
        "updatedNumberScheduled": updated,
        "observedGeneration": ds.generation,
    });
    if let Some(patch) = workload::status_patch(&ds.status, &want) {
        actions.push(Action::Status {
            owner: ds.owner.clone(),
            patch,
        });
    }
}

/// Does one action; a conflict or a vanished object is left to the next plan.
pub async fn reconcile(client: &Client, events: &Recorder, action: &Action) -> Result<Seen, Error> {
    match action {
        Action::Pod(w) => workload::write_pod(client, events, w).await,
        Action::Status { owner, patch } => {
            workload::write_status(client, daemonsets(), owner, patch).await
        }
    }
}

/// Watches DaemonSets, nodes and daemon pods; plans on every change.
pub async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let sets: Cache<DaemonSet> = Cache::new(notify.clone());
    let node_cache: Cache<Node> = Cache::new(notify.clone());
    let pod_cache: Cache<Pod> = Cache::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Watcher::new(client.clone(), daemonsets(), None),
        sets.clone(),
        DaemonSet::of,
    ));
    tasks.spawn(reflect(
        Watcher::new(client.clone(), nodes(), None),
        node_cache.clone(),
        Node::of,
    ));
    tasks.spawn(reflect(
        // Only DaemonSet pods (made with the revision label, which StatefulSet pods also carry): every other pod would cost a decode here and a send
        // there (a Deployment's thousands).
        Watcher::new(client.clone(), workload::pods(), None).selecting(
            bosun_client::Selector::labels(
                "controller-revision-hash,!statefulset.kubernetes.io/pod-name",
            ),
        ),
        pod_cache.clone(),
        |v| Pod::of("DaemonSet", v),
    ));
    let events = Recorder::new(client.clone(), "daemonset-controller");
    let mut expect = Expectations::default();
    loop {
        crate::changed(&notify).await;
        // Before every first list, an empty cache would read as "no pods".
        if !(sets.synced() && node_cache.synced() && pod_cache.synced()) {
            continue;
        }
        let mut owners = sets.snapshot();
        // No DaemonSet: no copy of every node (thousands, changing all the time).
        if owners.is_empty() {
            continue;
        }
        let pods = expect.view(pod_cache.snapshot());
        for o in &mut owners {
            expect.status_view(&o.owner.uid, &mut o.status);
        }
        let actions = plan(&owners, &node_cache.snapshot(), &pods);
        let (client, events) = (client.clone(), events.clone());
        workload::write_all("daemonset", actions, &mut expect, move |a| {
            let (client, events) = (client.clone(), events.clone());
            async move { (reconcile(&client, &events, &a).await, a) }
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
