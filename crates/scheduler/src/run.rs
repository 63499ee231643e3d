//! The scheduling loop: watches Nodes and Pods, keeps the [`Snapshot`] of
//! nodes and bound pods up to date, and places each waiting pod with
//! [`schedule`]. A placed pod is assumed in the snapshot at once, so the next
//! decision sees it, while its binding goes to the API server with many
//! others in flight; a failed binding un-assumes and re-queues it. A pod that
//! fits nowhere gets `PodScheduled=False` and a `FailedScheduling` event and
//! waits in the queue's back-off, retried early when the cluster changes.
//!
//! [`State`] is what the loop knows, changed only by its methods (no IO, the
//! time passed in); [`run`] feeds it watch events and does the writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_api::{Subresource, resource};
use bosun_client::events::{EventType, Recorder};
use bosun_client::{Client, Error, Event, Patch, Watcher};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::queue::{MAX_BACKOFF, Queue};
use crate::{Decision, Node, Pod, Snapshot, schedule};

/// What the loop is told to be.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `spec.schedulerName` this scheduler serves (an empty one means it too).
    pub name: String,
    /// Bindings and status writes in flight at once.
    pub max_in_flight: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            name: "default-scheduler".to_owned(),
            max_in_flight: 256,
        }
    }
}

/// Pods decided in one pass before the loop looks at new events again.
const BATCH: usize = 512;

/// A pod waiting for a node.
#[derive(Debug, Clone)]
struct Waiting {
    pod: Pod,
    /// What an event about it names: apiVersion, kind, metadata.
    object: Value,
}

/// Something to write to the API server.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Write {
    Bind {
        uid: String,
        namespace: String,
        name: String,
        node: String,
    },
    /// `PodScheduled=False` and a `FailedScheduling` event.
    Unschedulable { object: Value, message: String },
}

/// What the loop knows of the cluster.
#[derive(Debug, Default)]
pub(crate) struct State {
    scheduler: String,
    nodes: HashMap<String, Node>,
    /// Pods the API server has bound, by uid.
    bound: HashMap<String, Pod>,
    /// Pods this loop bound whose binding the watch has not shown yet.
    assumed: HashMap<String, Pod>,
    waiting: HashMap<String, Waiting>,
    queue: Queue<String>,
    /// `None` when a node changed or a pod went away: rebuilt before the next pass.
    snapshot: Option<Snapshot>,
    /// The last failure reported per pod, and when.
    reported: HashMap<String, (String, Instant)>,
    seed: u64,
}

fn uid(obj: &Value) -> Option<String> {
    obj["metadata"]["uid"].as_str().map(str::to_owned)
}

impl State {
    pub(crate) fn new(scheduler: &str) -> State {
        State {
            scheduler: scheduler.to_owned(),
            ..State::default()
        }
    }

    fn invalidate(&mut self) {
        self.snapshot = None;
        self.queue.cluster_changed();
    }

    fn ours(&self, obj: &Value) -> bool {
        let name = obj["spec"]["schedulerName"].as_str().unwrap_or_default();
        name.is_empty() || name == self.scheduler
    }

    /// A pod was added or changed.
    pub(crate) fn pod_applied(&mut self, obj: &Value) {
        let Some(uid) = uid(obj) else { return };
        let pod = match Pod::parse(obj) {
            Ok(p) => p,
            Err(e) => {
                // Nothing can place it until it changes; say so once.
                self.forget_waiting(&uid);
                eprintln!(
                    "bosun scheduler: pod {}/{}: {e}",
                    obj["metadata"]["namespace"].as_str().unwrap_or_default(),
                    obj["metadata"]["name"].as_str().unwrap_or_default()
                );
                return;
            }
        };
        if pod.node_name.is_some() {
            self.forget_waiting(&uid);
            let assumed = self.assumed.remove(&uid);
            let before = self.bound.insert(uid, pod.clone());
            // The snapshot already holds what this loop assumed; anything
            // else about a bound pod (another scheduler's binding, a pod that
            // finished) changes what nodes have left.
            let known = before.or(assumed);
            if known.as_ref() != Some(&pod) {
                self.invalidate();
            }
            return;
        }
        let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
        if deleting || pod.terminal || !self.ours(obj) {
            self.forget_waiting(&uid);
            return;
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"]["namespace"],
                "uid": uid,
                "resourceVersion": obj["metadata"]["resourceVersion"],
            },
        });
        let changed = self.waiting.get(&uid).is_none_or(|w| w.pod != pod);
        self.waiting.insert(uid.clone(), Waiting { pod, object });
        if changed {
            self.queue.add(uid);
        }
    }

    fn forget_waiting(&mut self, uid: &String) {
        self.waiting.remove(uid);
        self.queue.forget(uid);
        self.reported.remove(uid);
    }

    /// A pod was deleted.
    pub(crate) fn pod_deleted(&mut self, obj: &Value) {
        let Some(uid) = uid(obj) else { return };
        self.forget_waiting(&uid);
        let held = self.bound.remove(&uid).is_some() | self.assumed.remove(&uid).is_some();
        if held {
            self.invalidate();
        }
    }

    /// The whole set of pods, after the watch listed again.
    pub(crate) fn pods_listed(&mut self, items: &[Value]) {
        let present: std::collections::HashSet<String> = items.iter().filter_map(uid).collect();
        let gone: Vec<String> = (self.bound.keys())
            .chain(self.assumed.keys())
            .chain(self.waiting.keys())
            .filter(|u| !present.contains(*u))
            .cloned()
            .collect();
        for u in gone {
            self.forget_waiting(&u);
            self.bound.remove(&u);
            self.assumed.remove(&u);
        }
        for obj in items {
            self.pod_applied(obj);
        }
        self.invalidate();
    }

    pub(crate) fn node_applied(&mut self, obj: &Value) {
        match Node::parse(obj) {
            Ok(node) => {
                // Heartbeats change nothing the filters read.
                if self.nodes.get(&node.name) != Some(&node) {
                    self.nodes.insert(node.name.clone(), node);
                    self.invalidate();
                }
            }
            Err(e) => {
                let name = obj["metadata"]["name"].as_str().unwrap_or_default();
                eprintln!("bosun scheduler: node {name} left out: {e}");
                if self.nodes.remove(name).is_some() {
                    self.invalidate();
                }
            }
        }
    }

    pub(crate) fn node_deleted(&mut self, obj: &Value) {
        if let Some(name) = obj["metadata"]["name"].as_str()
            && self.nodes.remove(name).is_some()
        {
            self.invalidate();
        }
    }

    pub(crate) fn nodes_listed(&mut self, items: &[Value]) {
        self.nodes.clear();
        for obj in items {
            self.node_applied(obj);
        }
        self.invalidate();
    }

    /// A binding this loop sent failed: the pod is no longer assumed, and
    /// (unless the watch has meanwhile shown it bound or gone) waits its
    /// back-off.
    pub(crate) fn binding_failed(&mut self, uid: &str, now: Instant) {
        if self.assumed.remove(uid).is_some() {
            self.snapshot = None;
        }
        if self.waiting.contains_key(uid) {
            self.queue.failed(uid.to_owned(), now);
        }
    }

    /// The pod's condition could not be written: the next failure reports
    /// again, even with the same message.
    pub(crate) fn report_failed(&mut self, uid: &str) {
        self.reported.remove(uid);
    }

    pub(crate) fn has_work(&self, now: Instant) -> bool {
        self.queue.has_ready(now)
    }

    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.queue.next_due()
    }

    /// The snapshot for the next pass, built again if something went away.
    fn take_snapshot(&mut self) -> Snapshot {
        match self.snapshot.take() {
            Some(s) => s,
            None => {
                let mut nodes: Vec<Node> = self.nodes.values().cloned().collect();
                nodes.sort_by(|a, b| a.name.cmp(&b.name));
                let pods = self.bound.values().chain(self.assumed.values()).cloned();
                Snapshot::new(nodes, pods.collect())
            }
        }
    }

    /// Takes up to `max` waiting pods off the queue with what the pass needs.
    fn next_batch(&mut self, now: Instant, max: usize) -> (Snapshot, Vec<(String, Pod)>) {
        let batch = self
            .queue
            .pop(now, max)
            .into_iter()
            .filter_map(|u| {
                let pod = self.waiting.get(&u)?.pod.clone();
                Some((u, pod))
            })
            .collect();
        (self.take_snapshot(), batch)
    }

    /// Applies a pass's decisions: bound pods are assumed, the others wait.
    /// Returns what to write.
    fn decided(
        &mut self,
        snapshot: Snapshot,
        decisions: Vec<(String, Pod, Decision)>,
        now: Instant,
    ) -> Vec<Write> {
        let mut writes = Vec::new();
        for (uid, pod, decision) in decisions {
            let Some(waiting) = self.waiting.get(&uid) else {
                continue;
            };
            match decision {
                Decision::Bind(node) => {
                    writes.push(Write::Bind {
                        uid: uid.clone(),
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        node,
                    });
                    self.assumed.insert(uid, pod);
                }
                Decision::Unschedulable(why) => {
                    let message = why.to_string();
                    let fresh = match self.reported.get(&uid) {
                        Some((m, at)) => *m != message || now.duration_since(*at) >= MAX_BACKOFF,
                        None => true,
                    };
                    if fresh {
                        writes.push(Write::Unschedulable {
                            object: waiting.object.clone(),
                            message: message.clone(),
                        });
                        self.reported.insert(uid.clone(), (message, now));
                    }
                    self.queue.failed(uid, now);
                }
            }
        }
        // Nothing changed the state during the pass (the loop awaits it), so
        // the snapshot with this pass's pods assumed is the current one.
        self.snapshot = Some(snapshot);
        writes
    }

    fn next_seed(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.seed
    }
}

/// Decides every pod of a batch against the snapshot, assuming each placed
/// pod before deciding the next.
fn decide(
    mut snapshot: Snapshot,
    batch: Vec<(String, Pod)>,
    seed: u64,
) -> (Snapshot, Vec<(String, Pod, Decision)>) {
    let mut out = Vec::with_capacity(batch.len());
    for (i, (uid, mut pod)) in batch.into_iter().enumerate() {
        let decision = schedule(&snapshot, &pod, seed.wrapping_add(i as u64));
        if let Decision::Bind(node) = &decision {
            pod.bind_to(node);
            snapshot.assume(pod.clone());
        }
        out.push((uid, pod, decision));
    }
    (snapshot, out)
}

/// What reaches the loop: watch events and the outcome of its writes.
#[derive(Debug)]
enum Input {
    Pods(Event),
    Nodes(Event),
    Written(Done),
}

/// How a write ended, for the pod (by uid) it was about.
#[derive(Debug)]
enum Done {
    Bound {
        uid: String,
        ok: bool,
    },
    /// `PodScheduled=False` written (or not: a stale version, say).
    Reported {
        uid: String,
        ok: bool,
    },
}

async fn watch(client: Client, plural: &'static str, tx: mpsc::UnboundedSender<Input>) {
    let res = resource::find("", "v1", plural).expect("in the table");
    let mut watcher = Watcher::new(client, res, None);
    loop {
        match watcher.next().await {
            Ok(event) => {
                let input = match plural {
                    "pods" => Input::Pods(event),
                    _ => Input::Nodes(event),
                };
                if tx.send(input).is_err() {
                    return;
                }
            }
            Err(e) => {
                eprintln!("bosun scheduler: watching {plural}: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn apply(state: &mut State, input: Input, now: Instant) -> usize {
    match input {
        Input::Pods(Event::Applied(v)) => state.pod_applied(&v),
        Input::Pods(Event::Deleted(v)) => state.pod_deleted(&v),
        Input::Pods(Event::Restarted(items)) => state.pods_listed(&items),
        Input::Nodes(Event::Applied(v)) => state.node_applied(&v),
        Input::Nodes(Event::Deleted(v)) => state.node_deleted(&v),
        Input::Nodes(Event::Restarted(items)) => state.nodes_listed(&items),
        Input::Written(done) => {
            match done {
                // A bound pod stays assumed (and off the queue) until the
                // watch shows it bound: an older event of it may still be on
                // the way.
                Done::Bound { ok: true, .. } | Done::Reported { ok: true, .. } => {}
                Done::Bound { uid, ok: false } => state.binding_failed(&uid, now),
                Done::Reported { uid, ok: false } => state.report_failed(&uid),
            }
            return 1;
        }
    }
    0
}

/// Schedules pods until the future is dropped (which stops its watches and
/// writes too).
pub async fn run(client: Client, options: Options) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watches = JoinSet::new();
    watches.spawn(watch(client.clone(), "nodes", tx.clone()));
    watches.spawn(watch(client.clone(), "pods", tx.clone()));
    let recorder = Recorder::new(client.clone(), options.name.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(options.max_in_flight.max(1)));
    let mut writes = JoinSet::new();
    // Writes decided but not finished; decisions stop running ahead of the
    // API server past a few rounds of in-flight writes.
    let mut outstanding = 0usize;
    let ahead = options.max_in_flight.max(1) * 4;
    let mut state = State::new(&options.name);
    loop {
        let now = Instant::now();
        if !(state.has_work(now) && outstanding < ahead) {
            let due = state.next_due();
            let input = match due {
                Some(due) => tokio::select! {
                    input = rx.recv() => input,
                    () = tokio::time::sleep_until(due.into()) => None,
                },
                None => rx.recv().await,
            };
            if let Some(input) = input {
                outstanding -= apply(&mut state, input, Instant::now());
            }
        }
        while let Ok(input) = rx.try_recv() {
            outstanding -= apply(&mut state, input, Instant::now());
        }
        while writes.try_join_next().is_some() {}
        let now = Instant::now();
        if !(state.has_work(now) && outstanding < ahead) {
            continue;
        }
        let (snapshot, batch) = state.next_batch(now, BATCH);
        let seed = state.next_seed();
        let Ok((snapshot, decisions)) =
            tokio::task::spawn_blocking(move || decide(snapshot, batch, seed)).await
        else {
            // The pass panicked: start again from the watches' view.
            state.snapshot = None;
            continue;
        };
        for write in state.decided(snapshot, decisions, Instant::now()) {
            outstanding += 1;
            let (client, recorder, permits, tx) = (
                client.clone(),
                recorder.clone(),
                permits.clone(),
                tx.clone(),
            );
            writes.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let done = perform(&client, &recorder, write).await;
                let _ = tx.send(Input::Written(done));
            });
        }
    }
}

/// Does one write and says how it went.
async fn perform(client: &Client, recorder: &Recorder, write: Write) -> Done {
    let pods = resource::find("", "v1", "pods").expect("in the table");
    match write {
        Write::Bind {
            uid,
            namespace,
            name,
            node,
        } => {
            let body = json!({
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let result = client
                .create_subresource(pods, Some(&namespace), &name, Subresource::Binding, &body)
                .await;
            if let Err(e) = &result
                && !matches!(e.code(), Some(404 | 409))
            {
                eprintln!("bosun scheduler: binding {namespace}/{name} to {node}: {e}");
            }
            Done::Bound {
                uid,
                ok: result.is_ok(),
            }
        }
        Write::Unschedulable { object, message } => {
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let stamp = bosun_api::time::format_time(unix_now());
            // Only the version decided on: a pod bound meanwhile keeps its condition.
            let patch = Patch::Merge(json!({
                "metadata": {"resourceVersion": object["metadata"]["resourceVersion"]},
                "status": {"conditions": [{
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
                "lastProbeTime": null,
                "lastTransitionTime": stamp,
            }]},
            }));
            let status = client
                .patch_status(pods, Some(namespace), name, &patch)
                .await;
            let quiet = |e: &Error| matches!(e.code(), Some(404 | 409));
            if let Some(e) = status.as_ref().err().filter(|e| !quiet(e)) {
                eprintln!("bosun scheduler: status of {namespace}/{name}: {e}");
            }
            let gone = status.as_ref().is_err_and(|e| e.code() == Some(404));
            if !gone
                && let Err(e) = recorder
                    .record(&object, EventType::Warning, "FailedScheduling", &message)
                    .await
                && !quiet(&e)
            {
                eprintln!("bosun scheduler: event for {namespace}/{name}: {e}");
            }
            Done::Reported {
                uid: object["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                ok: status.is_ok(),
            }
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cpu: &str) -> Value {
        json!({
            "metadata": {"name": name},
            "status": {
                "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        })
    }

    fn pod(name: &str, cpu: &str) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "5"},
            "spec": {"containers": [{"name": "c", "image": "x",
                "resources": {"requests": {"cpu": cpu}}}]},
        })
    }

    fn bound(mut v: Value, node: &str) -> Value {
        v["spec"]["nodeName"] = json!(node);
        v
    }

    /// One pass as the loop runs it.
    fn pass(state: &mut State, now: Instant) -> Vec<Write> {
        let (snapshot, batch) = state.next_batch(now, BATCH);
        let seed = state.next_seed();
        let (snapshot, decisions) = decide(snapshot, batch, seed);
        state.decided(snapshot, decisions, now)
    }

    fn binds(writes: &[Write]) -> Vec<(String, String)> {
        writes
            .iter()
            .filter_map(|w| match w {
                Write::Bind { name, node, .. } => Some((name.clone(), node.clone())),
                Write::Unschedulable { .. } => None,
            })
            .collect()
    }

    #[test]
    fn each_decision_sees_the_pods_placed_before_it() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "1"), node("n2", "1")]);
        for p in ["a", "b", "c"] {
            s.pod_applied(&pod(p, "600m"));
        }
        let w = pass(&mut s, t);
        let placed = binds(&w);
        assert_eq!(placed.len(), 2, "{w:?}");
        assert_ne!(placed[0].1, placed[1].1);
        let Write::Unschedulable { message, .. } = &w[2] else {
            panic!("{w:?}")
        };
        assert_eq!(message, "0/2 nodes are available: 2 Insufficient cpu.");
        // Nothing more to do until the back-off ends.
        assert!(!s.has_work(t));
        assert!(s.has_work(t + Duration::from_secs(1)));
    }

    #[test]
    fn a_new_node_retries_the_waiting_pod_at_once() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "1")]);
        s.pod_applied(&pod("big", "2"));
        assert!(binds(&pass(&mut s, t)).is_empty());
        // A heartbeat changes nothing.
        let mut beat = node("n1", "1");
        beat["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2026-01-01T00:00:00Z");
        s.node_applied(&beat);
        assert!(!s.has_work(t));
        s.node_applied(&node("n2", "4"));
        assert!(s.has_work(t));
        assert_eq!(binds(&pass(&mut s, t)), [("big".into(), "n2".into())]);
    }

    #[test]
    fn the_same_failure_is_reported_once_per_back_off_cap() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "1")]);
        s.pod_applied(&pod("big", "2"));
        assert_eq!(pass(&mut s, t).len(), 1);
        s.node_applied(&node("n1", "1.5"));
        // Same message ("1 Insufficient cpu"): not written again so soon.
        assert!(pass(&mut s, t).is_empty());
        s.node_applied(&node("n2", "1"));
        assert_eq!(pass(&mut s, t).len(), 1, "a new message is reported");
        let later = t + MAX_BACKOFF;
        assert_eq!(pass(&mut s, later).len(), 1);
        // A report that could not be written is made again at the next failure.
        s.report_failed("uid-big");
        s.node_applied(&node("n1", "1.2"));
        assert_eq!(pass(&mut s, later).len(), 1);
    }

    #[test]
    fn a_failed_binding_frees_the_node_and_requeues() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "1")]);
        s.pod_applied(&pod("a", "1"));
        assert_eq!(binds(&pass(&mut s, t)).len(), 1);
        s.pod_applied(&pod("b", "1"));
        assert!(binds(&pass(&mut s, t)).is_empty(), "a holds the node");
        s.binding_failed("uid-a", t);
        // Both wait out their back-off; then one of them gets the node.
        assert!(!s.has_work(t));
        let w = pass(&mut s, t + Duration::from_secs(1));
        assert_eq!(binds(&w).len(), 1, "{w:?}");
    }

    #[test]
    fn bound_pods_hold_resources_until_deleted() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "1")]);
        s.pods_listed(&[bound(pod("old", "1"), "n1")]);
        s.pod_applied(&pod("new", "1"));
        assert!(binds(&pass(&mut s, t)).is_empty());
        s.pod_deleted(&bound(pod("old", "1"), "n1"));
        assert_eq!(binds(&pass(&mut s, t)), [("new".into(), "n1".into())]);
        // The watch confirms the binding: still one pod's worth used.
        s.pod_applied(&bound(pod("new", "1"), "n1"));
        s.pod_applied(&pod("third", "1"));
        assert!(binds(&pass(&mut s, t)).is_empty());
    }

    #[test]
    fn other_schedulers_and_deleted_pods_are_left_alone() {
        let t = Instant::now();
        let mut s = State::new("default-scheduler");
        s.nodes_listed(&[node("n1", "4")]);
        let mut other = pod("other", "1");
        other["spec"]["schedulerName"] = json!("custom");
        s.pod_applied(&other);
        let mut going = pod("going", "1");
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        s.pod_applied(&going);
        let mut named = pod("named", "1");
        named["spec"]["schedulerName"] = json!("default-scheduler");
        s.pod_applied(&named);
        assert_eq!(binds(&pass(&mut s, t)), [("named".into(), "n1".into())]);
    }
}
