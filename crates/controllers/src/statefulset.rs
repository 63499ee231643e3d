//! The StatefulSet controller: pods with stable names `<set>-0` …
//! `<set>-(n-1)`, each with hostname = its name and subdomain = the set's
//! governing service, as Kubernetes' does.
//!
//! - `OrderedReady` (the default): ordinal i+1 is made only once 0..=i are
//!   Running and Ready; scaling down removes the highest ordinal first, one
//!   at a time, and only while the rest are Running and Ready.
//! - `Parallel`: every missing pod is made and every surplus one deleted at once.
//! - A pod that is deleted (or finished) is made again with the same name.
//! - `RollingUpdate` (the default): once every pod exists and is ready, the
//!   highest-ordinal pod of an older template (at or above `partition`) is
//!   deleted, to be made again from the new one; `OnDelete` waits for users.
//! - Revisions are `<set>-<template hash>`, in each pod's
//!   `controller-revision-hash` label and the status' `currentRevision` /
//!   `updateRevision` (no ControllerRevision objects are kept).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_client::events::Recorder;
use bosun_client::{Cache, Client, Error, Selector, Watcher, reflect};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::workload::{self, Expectations, Owner, Pod, PodWrite, REVISION_HASH, Seen};

pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

pub fn statefulsets() -> &'static Resource {
    resource::find("apps", "v1", "statefulsets").expect("in the table")
}

/// A StatefulSet, as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct StatefulSet {
    pub owner: Owner,
    pub generation: i64,
    pub replicas: usize,
    pub template: Value,
    /// `<name>-<template hash>`.
    pub revision: String,
    pub service_name: String,
    pub parallel: bool,
    /// `None`: `OnDelete`; else the partition (ordinals below it keep
    /// their revision).
    pub partition: Option<usize>,
    pub status: Value,
    pub deleting: bool,
}

impl StatefulSet {
    pub fn of(v: &Value) -> Option<StatefulSet> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        let name = m["name"].as_str()?.to_owned();
        let template = spec["template"].clone();
        let strategy = &spec["updateStrategy"];
        Some(StatefulSet {
            owner: Owner {
                api_version: "apps/v1",
                kind: "StatefulSet",
                namespace: m["namespace"].as_str()?.to_owned(),
                uid: m["uid"].as_str()?.to_owned(),
                name: name.clone(),
            },
            generation: m["generation"].as_i64().unwrap_or(0),
            replicas: spec["replicas"].as_u64().unwrap_or(1) as usize,
            revision: format!("{name}-{}", workload::template_hash(&template)),
            template,
            service_name: spec["serviceName"].as_str().unwrap_or_default().to_owned(),
            parallel: spec["podManagementPolicy"] == "Parallel",
            partition: (strategy["type"] != "OnDelete")
                .then(|| strategy["rollingUpdate"]["partition"].as_u64().unwrap_or(0) as usize),
            status: v["status"].clone(),
            deleting: !m["deletionTimestamp"].is_null(),
        })
    }

    fn pod_name(&self, ordinal: usize) -> String {
        format!("{}-{ordinal}", self.owner.name)
    }

    /// The ordinal of a pod of this set, by its name.
    fn ordinal(&self, pod: &Pod) -> Option<usize> {
        let rest = pod.name.strip_prefix(&self.owner.name)?.strip_prefix('-')?;
        rest.parse()
            .ok()
            .filter(|_| !rest.starts_with('+') && (rest == "0" || !rest.starts_with('0')))
    }

    /// Pod `ordinal` of the current template.
    pub fn pod_for(&self, ordinal: usize) -> Value {
        let name = self.pod_name(ordinal);
        let labels = BTreeMap::from([
            (REVISION_HASH.to_owned(), self.revision.clone()),
            (POD_NAME.to_owned(), name.clone()),
            (POD_INDEX.to_owned(), ordinal.to_string()),
        ]);
        let mut pod = workload::pod_from(&self.template, &self.owner, &labels);
        pod["metadata"]["name"] = name.clone().into();
        pod["spec"]["hostname"] = name.into();
        if !self.service_name.is_empty() {
            pod["spec"]["subdomain"] = self.service_name.clone().into();
        }
        pod
    }

    /// The revision every pod had before the current update, as recorded.
    fn current_revision(&self) -> String {
        self.status["currentRevision"]
            .as_str()
            .filter(|r| !r.is_empty())
            .unwrap_or(&self.revision)
            .to_owned()
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Pod(PodWrite),
    /// Merge-patch the StatefulSet's status.
    Status {
        owner: Owner,
        patch: Value,
    },
}

/// What to do, given every StatefulSet and the pods they control.
pub fn plan(sets: &[StatefulSet], pods: &[Pod]) -> Vec<Action> {
    let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        by_owner.entry(p.owner.as_str()).or_default().push(p);
    }
    let mut actions = Vec::new();
    for s in sets.iter().filter(|s| !s.deleting) {
        let mine = by_owner.remove(s.owner.uid.as_str()).unwrap_or_default();
        plan_one(s, &mine, &mut actions);
    }
    actions
}

fn plan_one(set: &StatefulSet, pods: &[&Pod], actions: &mut Vec<Action>) {
    let delete = |p: &Pod| {
        Action::Pod(PodWrite::Delete {
            owner: set.owner.clone(),
            pod: p.clone(),
        })
    };
    let mut by_ordinal: BTreeMap<usize, &Pod> = BTreeMap::new();
    for p in pods {
        match set.ordinal(p) {
            Some(i) => {
                by_ordinal.insert(i, p);
            }
            // Not a name this set makes: not ours to keep.
            None if !p.deleting => actions.push(delete(p)),
            None => {}
        }
    }
    let healthy = |p: &Pod| p.running_ready();
    let mut writes = Vec::new();
    // Make the missing and replace the finished, in order.
    for i in 0..set.replicas {
        match by_ordinal.get(&i) {
            None => writes.push(Action::Pod(PodWrite::Create {
                owner: set.owner.clone(),
                pod: set.pod_for(i),
            })),
            Some(p) if p.phase.terminal() && !p.deleting => writes.push(delete(p)),
            Some(p) if healthy(p) => continue,
            Some(_) => {}
        }
        if !set.parallel {
            break;
        }
    }
    let all_healthy = (0..set.replicas).all(|i| by_ordinal.get(&i).is_some_and(|p| healthy(p)));
    // Surplus pods go, the highest ordinal first.
    let surplus: Vec<&Pod> = by_ordinal
        .range(set.replicas..)
        .rev()
        .map(|(_, p)| *p)
        .filter(|p| !p.deleting)
        .collect();
    if set.parallel {
        writes.extend(surplus.iter().map(|p| delete(p)));
    } else if all_healthy && let Some(p) = surplus.first() {
        writes.push(delete(p));
    }
    // Roll the highest-ordinal pod of an old revision, once all are ready
    // and no other write is under way.
    if let Some(partition) = set.partition
        && writes.is_empty()
        && surplus.is_empty()
        && all_healthy
        && let Some(p) = (partition..set.replicas)
            .rev()
            .filter_map(|i| by_ordinal.get(&i))
            .find(|p| p.hash() != Some(set.revision.as_str()))
    {
        writes.push(delete(p));
    }
    actions.extend(writes);

    let live: Vec<&Pod> = by_ordinal
        .values()
        .copied()
        .filter(|p| !p.deleting)
        .collect();
    let updated = live
        .iter()
        .filter(|p| p.hash() == Some(set.revision.as_str()))
        .count();
    let ready = live.iter().filter(|p| healthy(p)).count();
    let done = updated == set.replicas && live.len() == set.replicas && ready == set.replicas;
    let current_revision = if done {
        set.revision.clone()
    } else {
        set.current_revision()
    };
    let current = live
        .iter()
        .filter(|p| p.hash() == Some(current_revision.as_str()))
        .count();
    let want = json!({
        "observedGeneration": set.generation,
        "replicas": live.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": set.revision,
        "collisionCount": 0,
    });
    if let Some(patch) = workload::status_patch(&set.status, &want) {
        actions.push(Action::Status {
            owner: set.owner.clone(),
            patch,
        });
    }
}

/// Does one action; a conflict or a vanished object is left to the next plan.
pub async fn reconcile(client: &Client, events: &Recorder, action: &Action) -> Result<Seen, Error> {
    match action {
        Action::Pod(w) => workload::write_pod(client, events, w).await,
        Action::Status { owner, patch } => {
            workload::write_status(client, statefulsets(), owner, patch).await
        }
    }
}

/// Watches StatefulSets and their pods; plans on every change.
pub async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let sets: Cache<StatefulSet> = Cache::new(notify.clone());
    let pod_cache: Cache<Pod> = Cache::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Watcher::new(client.clone(), statefulsets(), None),
        sets.clone(),
        StatefulSet::of,
    ));
    tasks.spawn(reflect(
        // Only StatefulSet pods: every other pod would cost a decode here and a send
        // there (a Deployment's thousands).
        Watcher::new(client.clone(), workload::pods(), None)
            .selecting(Selector::labels("statefulset.kubernetes.io/pod-name")),
        pod_cache.clone(),
        |v| Pod::of("StatefulSet", v),
    ));
    let events = Recorder::new(client.clone(), "statefulset-controller");
    let mut expect = Expectations::default();
    loop {
        crate::changed(&notify).await;
        // Before every first list, an empty cache would read as "no pods".
        if !(sets.synced() && pod_cache.synced()) {
            continue;
        }
        let pods = expect.view(pod_cache.snapshot());
        let mut owners = sets.snapshot();
        for o in &mut owners {
            expect.status_view(&o.owner.uid, &mut o.status);
        }
        let actions = plan(&owners, &pods);
        let (client, events) = (client.clone(), events.clone());
        workload::write_all("statefulset", actions, &mut expect, move |a| {
            let (client, events) = (client.clone(), events.clone());
            async move { (reconcile(&client, &events, &a).await, a) }
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
