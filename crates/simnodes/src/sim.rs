//! The IO of simulated nodes: registration, then one loop that owns every
//! node's and pod's state, fed by two watches (our nodes, bound pods) and
//! a heartbeat tick, and that hands each write to a task of its own. Writes
//! are bounded by semaphores (pods and heartbeats apart, so a burst of pods
//! never starves the Leases) and report back to the loop over a channel; the
//! loop itself never waits on the server.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_api::{ErrorKind, Resource, resource};
use bosun_client::{Client, DeleteParams, Event, Patch, Selector, Watcher};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::cidr::{self, Ipv4Net, Pool};
use crate::status::{self, Capacity, NodeSpec};
use crate::{Error, Options, schedule};

/// Pod status writes in flight at once: the store commits concurrent writes
/// in one batch, so throughput follows how many wait together (3,000 pods/s
/// at 50 ms a write under load needs 150).
const POD_WRITES: usize = 256;
/// Lease and node status writes in flight at once, apart from the pods', so
/// that a burst of pods never holds up every heartbeat (5,000 nodes need 500
/// renewals a second).
const HEARTBEAT_WRITES: usize = 64;
/// Writes in flight while registering or cleaning up.
const SETUP_WRITES: usize = 64;
/// Nodes' InternalIPs come from here, clear of pod and service ranges.
const NODE_IPS: &str = "10.40.0.0/16";
/// A write that failed for a reason that may pass is tried again after this.
const RETRY: Duration = Duration::from_secs(1);

fn res(group: &str, version: &str, plural: &str) -> &'static Resource {
    resource::find(group, version, plural).expect("a resource of the table")
}

fn nodes_res() -> &'static Resource {
    res("", "v1", "nodes")
}
fn pods_res() -> &'static Resource {
    res("", "v1", "pods")
}
fn leases_res() -> &'static Resource {
    res("coordination.k8s.io", "v1", "leases")
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn now() -> i64 {
    now_micros() / 1_000_000
}

fn api(what: impl Into<String>) -> impl FnOnce(bosun_client::Error) -> Error {
    let what = what.into();
    move |source| Error::Api { what, source }
}

/// One simulated node.
#[derive(Debug)]
struct NodeState {
    spec: NodeSpec,
    uid: String,
    pool: Pool,
    /// The heartbeat annotation says stop: no Lease, no status, no pods.
    stopped: bool,
    /// Deleted by someone: left alone.
    gone: bool,
    /// The Ready condition as last seen on the server.
    ready: bool,
    /// When Ready last became True, for the condition's lastTransitionTime.
    transition: i64,
    lease_busy: bool,
    status_busy: bool,
    /// When the status was last posted: a node seen not Ready is put right
    /// at most once a lease interval (a lagging watch would repeat it).
    status_posted: Option<std::time::Instant>,
    /// Pods bound here that wait for a free address.
    waiting: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Starting,
    Running,
    Finished,
    Deleting,
}

#[derive(Debug)]
struct PodState {
    node: u32,
    ip: Option<Ipv4Addr>,
    stage: Stage,
}

/// A pod told to exit by its annotation: what is needed to write the exit.
#[derive(Debug)]
struct ExitPlan {
    namespace: String,
    name: String,
    code: i32,
    policy: String,
    /// The status last written (its containers' running state).
    status: Value,
    restarts: u64,
}

/// A pod status write; kept whole so that it can be retried.
#[derive(Debug, Clone)]
struct PodWrite {
    namespace: String,
    name: String,
    uid: String,
    status: Value,
    /// Running (start) or the exit (and whether it ends the pod).
    kind: WriteKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    Start,
    /// Ready again after someone said otherwise.
    Reassert,
    Exit {
        terminal: bool,
    },
}

/// What the loop hears from its tasks.
#[derive(Debug)]
enum Input {
    Pods(Event),
    Nodes(Event),
    /// Pods of a node that resumed heart-beating.
    Resumed(Vec<Value>),
    PodWritten(PodWrite, Result<(), ErrorKind>),
    Retry(PodWrite),
    ExitDue(String),
    Lease(u32),
    Status(u32, bool),
    Trouble(String),
}

/// Simulated nodes, registered and ready to [`run`](SimNodes::run).
#[derive(Debug)]
pub struct SimNodes {
    client: Client,
    capacity: Capacity,
    nodes: Vec<NodeState>,
    by_name: HashMap<String, u32>,
    pods: HashMap<String, PodState>,
    exits: HashMap<String, ExitPlan>,
    tx: mpsc::UnboundedSender<Input>,
    rx: mpsc::UnboundedReceiver<Input>,
    pod_permits: Arc<Semaphore>,
    beat_permits: Arc<Semaphore>,
    trouble: Trouble,
}

impl SimNodes {
    /// Registers the nodes (making those that do not exist, taking over those
    /// that do) with their Leases, giving each a pod CIDR no other node holds.
    pub async fn register(client: Client, opts: &Options) -> Result<SimNodes, Error> {
        opts.check()?;
        ensure_namespace(&client).await?;
        let names: Vec<String> = (0..opts.count).map(|i| opts.node_name(i)).collect();
        let by_name: HashMap<String, u32> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        let existing = client
            .list(nodes_res(), None)
            .await
            .map_err(api("listing nodes"))?
            .items;
        let range = opts.pod_cidr();
        let mut taken = Vec::new();
        let mut node_ips = Pool::new(NODE_IPS.parse().expect("a valid CIDR"));
        let mut kept: HashMap<u32, (Ipv4Net, Option<Ipv4Addr>)> = HashMap::new();
        for n in &existing {
            let name = n["metadata"]["name"].as_str().unwrap_or_default();
            let cidrs: Vec<Ipv4Net> = n["spec"]["podCIDRs"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(std::iter::once(&n["spec"]["podCIDR"]))
                .filter_map(|c| c.as_str()?.parse().ok())
                .collect();
            let ip = n["status"]["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str()?.parse().ok());
            if let Some(ip) = ip {
                node_ips.claim(ip);
            }
            taken.extend(cidrs.iter().copied());
            if let Some(&i) = by_name.get(name)
                && let Some(c) = cidrs
                    .first()
                    .filter(|c| cidr::usable(c) >= u64::from(opts.capacity.pods))
            {
                kept.insert(i, (*c, ip));
            }
        }
        let fresh = opts.count as usize - kept.len();
        let mut blocks = cidr::assign_blocks(&range, opts.node_cidr_mask, fresh, &taken)
            .ok_or_else(|| {
                Error::Exhausted(format!(
                    "--pod-cidr {range}: other nodes hold so much of it that {fresh} more \
                     /{} node CIDRs do not fit (pass another --pod-cidr)",
                    opts.node_cidr_mask
                ))
            })?
            .into_iter();
        let mut nodes = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let (pod_cidr, ip) = match kept.get(&(i as u32)) {
                Some((c, ip)) => (*c, *ip),
                None => (blocks.next().expect("enough blocks were assigned"), None),
            };
            let ip = match ip {
                Some(ip) => ip,
                None => node_ips
                    .allocate()
                    .ok_or_else(|| Error::Exhausted(format!("no InternalIP left in {NODE_IPS}")))?,
            };
            let spec = NodeSpec {
                name: name.clone(),
                prefix: opts.prefix.clone(),
                pod_cidr,
                ip,
            };
            nodes.push(NodeState {
                pool: Pool::new(pod_cidr),
                spec,
                uid: String::new(),
                stopped: false,
                gone: false,
                ready: true,
                transition: now(),
                lease_busy: false,
                status_busy: false,
                status_posted: None,
                waiting: Vec::new(),
            });
        }
        // Registering thousands of nodes takes a while on a busy server:
        // those done already keep their Leases fresh meanwhile, or the first
        // ones would be NotReady before the last is made.
        let registered: Registered = Default::default();
        let keeper = tokio::spawn(keep_alive(client.clone(), registered.clone()));
        let uids = bounded(
            nodes.iter().map(|n| {
                let client = client.clone();
                let spec = n.spec.clone();
                let cap = opts.capacity.clone();
                let exists = by_name
                    .get(&spec.name)
                    .is_some_and(|i| kept.contains_key(i))
                    || existing.iter().any(|e| e["metadata"]["name"] == *spec.name);
                let registered = registered.clone();
                async move {
                    let uid = register_node(&client, &spec, &cap, exists).await?;
                    let mut r = registered.lock().unwrap_or_else(|p| p.into_inner());
                    r.push((spec.name.clone(), uid.clone()));
                    Ok(uid)
                }
            }),
            SETUP_WRITES,
        )
        .await;
        keeper.abort();
        for (n, uid) in nodes.iter_mut().zip(uids) {
            n.uid = uid?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(SimNodes {
            client,
            capacity: opts.capacity.clone(),
            nodes,
            by_name,
            pods: HashMap::new(),
            exits: HashMap::new(),
            tx,
            rx,
            pod_permits: Arc::new(Semaphore::new(POD_WRITES)),
            beat_permits: Arc::new(Semaphore::new(HEARTBEAT_WRITES)),
            trouble: Trouble::default(),
        })
    }

    /// The nodes' names, in index order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.spec.name.as_str())
    }

    /// Heart-beats and runs pods until `stop` completes.
    pub async fn run(&mut self, stop: impl std::future::Future<Output = ()>) {
        let watchers = [
            forward(
                Watcher::new(self.client.clone(), pods_res(), None)
                    .selecting(Selector::fields("spec.nodeName!=")),
                self.tx.clone(),
                Input::Pods,
            ),
            forward(
                Watcher::new(self.client.clone(), nodes_res(), None),
                self.tx.clone(),
                Input::Nodes,
            ),
        ];
        let mut ticker = tokio::time::interval(schedule::tick());
        let mut tick: u64 = 0;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = ticker.tick() => {
                    self.heartbeat(tick);
                    tick += 1;
                    self.trouble.report();
                }
                Some(input) = self.rx.recv() => self.on(input),
            }
        }
        for w in watchers {
            w.abort();
        }
    }

    /// Deletes the nodes and their Leases.
    pub async fn cleanup(&self) -> Result<(), Error> {
        let done = bounded(
            self.nodes.iter().map(|n| {
                let client = self.client.clone();
                let name = n.spec.name.clone();
                async move {
                    let gone = |r: Result<Value, bosun_client::Error>| match r {
                        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
                        _ => Ok(()),
                    };
                    let opts = DeleteParams::default();
                    gone(client.delete(nodes_res(), None, &name, &opts).await)
                        .map_err(api(format!("deleting node {name}")))?;
                    let lease = client
                        .delete(leases_res(), Some(status::LEASE_NAMESPACE), &name, &opts)
                        .await;
                    gone(lease).map_err(api(format!("deleting lease {name}")))
                }
            }),
            SETUP_WRITES,
        )
        .await;
        done.into_iter().collect()
    }

    fn on(&mut self, input: Input) {
        match input {
            Input::Pods(Event::Restarted(items)) => {
                let seen: std::collections::HashSet<&str> = items
                    .iter()
                    .filter_map(|p| p["metadata"]["uid"].as_str())
                    .collect();
                let gone: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|u| !seen.contains(u.as_str()))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.forget(&uid);
                }
                for p in &items {
                    self.on_pod(p);
                }
            }
            Input::Pods(Event::Applied(p)) => self.on_pod(&p),
            Input::Pods(Event::Deleted(p)) => {
                if let Some(uid) = p["metadata"]["uid"].as_str() {
                    self.forget(uid);
                }
            }
            Input::Resumed(items) => {
                for p in &items {
                    self.on_pod(p);
                }
            }
            Input::Nodes(Event::Restarted(items)) => {
                let mut seen = vec![false; self.nodes.len()];
                for n in &items {
                    if let Some(i) = self.index(n) {
                        seen[i as usize] = true;
                        self.on_node(i, n);
                    }
                }
                for (n, seen) in self.nodes.iter_mut().zip(seen) {
                    n.gone = !seen;
                }
            }
            Input::Nodes(Event::Applied(n)) => {
                if let Some(i) = self.index(&n) {
                    self.on_node(i, &n);
                }
            }
            Input::Nodes(Event::Deleted(n)) => {
                if let Some(i) = self.index(&n) {
                    self.nodes[i as usize].gone = true;
                }
            }
            Input::PodWritten(w, result) => self.written(w, result),
            Input::Retry(w) => {
                if self.pods.contains_key(&w.uid) {
                    self.write_pod(w);
                }
            }
            Input::ExitDue(uid) => self.exit(&uid),
            Input::Lease(i) => self.nodes[i as usize].lease_busy = false,
            Input::Trouble(what) => self.trouble.add(what),
            Input::Status(i, ok) => {
                let n = &mut self.nodes[i as usize];
                n.status_busy = false;
                if ok {
                    n.ready = true;
                }
            }
        }
    }

    fn index(&self, obj: &Value) -> Option<u32> {
        let name = obj["metadata"]["name"].as_str()?;
        self.by_name.get(name).copied()
    }

    fn on_node(&mut self, i: u32, obj: &Value) {
        let stop = obj["metadata"]["annotations"][status::HEARTBEAT_ANNOTATION] == "stop";
        let ready = obj["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let n = &mut self.nodes[i as usize];
        n.gone = false;
        n.ready = ready;
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            n.uid = uid.to_owned();
        }
        if stop {
            n.stopped = true;
            return;
        }
        if n.stopped {
            // Back: heart-beat now, and run what was bound while away.
            n.stopped = false;
            self.renew(i);
            self.post_status(i);
            let client = self.client.clone();
            let tx = self.tx.clone();
            let field = format!("spec.nodeName={}", self.nodes[i as usize].spec.name);
            tokio::spawn(async move {
                loop {
                    match client
                        .list_selected(pods_res(), None, &Selector::fields(field.clone()))
                        .await
                    {
                        Ok(list) => {
                            let _ = tx.send(Input::Resumed(list.items));
                            return;
                        }
                        Err(_) => tokio::time::sleep(RETRY).await,
                    }
                }
            });
        } else if !ready
            && n.status_posted
                .is_none_or(|t| t.elapsed() >= schedule::LEASE_RENEW)
        {
            // Marked NotReady while heart-beating (a lease late under load):
            // say Ready again, as the kubelet's next status would.
            self.post_status(i);
        }
    }

    fn heartbeat(&mut self, tick: u64) {
        let due: Vec<schedule::Due> = schedule::due(tick, self.nodes.len() as u32).collect();
        for d in due {
            let n = &self.nodes[d.index as usize];
            if n.stopped || n.gone {
                continue;
            }
            self.renew(d.index);
            if d.status {
                self.post_status(d.index);
            }
        }
    }

    fn renew(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if n.lease_busy {
            return;
        }
        n.lease_busy = true;
        let (client, tx, permits) = (
            self.client.clone(),
            self.tx.clone(),
            self.beat_permits.clone(),
        );
        let (name, uid) = (n.spec.name.clone(), n.uid.clone());
        let asked = std::time::Instant::now();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Err(e) = renew_lease(&client, &name, &uid).await {
                Trouble::note(&tx, format!("renewing lease {name}: {e}"));
            } else if asked.elapsed() > schedule::LEASE_RENEW {
                Trouble::note(
                    &tx,
                    format!(
                        "renewing lease {name} took {} s (the server is overloaded: nodes may \
                         turn NotReady)",
                        asked.elapsed().as_secs()
                    ),
                );
            }
            let _ = tx.send(Input::Lease(i));
        });
    }

    fn post_status(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if n.status_busy {
            return;
        }
        n.status_busy = true;
        n.status_posted = Some(std::time::Instant::now());
        let t = now();
        if !n.ready {
            n.transition = t;
        }
        let body = json!({"status": status::node_status(&n.spec, &self.capacity, t, n.transition)});
        let (client, tx, permits) = (
            self.client.clone(),
            self.tx.clone(),
            self.beat_permits.clone(),
        );
        let name = n.spec.name.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let r = client
                .patch_status(nodes_res(), None, &name, &Patch::Merge(body))
                .await;
            if let Err(e) = &r {
                Trouble::note(&tx, format!("posting the status of node {name}: {e}"));
            }
            let _ = tx.send(Input::Status(i, r.is_ok()));
        });
    }

    fn on_pod(&mut self, pod: &Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str() else {
            return;
        };
        let Some(&i) = pod["spec"]["nodeName"]
            .as_str()
            .and_then(|n| self.by_name.get(n))
        else {
            return;
        };
        let node = &self.nodes[i as usize];
        if node.gone || node.stopped {
            // No kubelet there: the pod waits for it (a resume lists it again).
            return;
        }
        let stage = self.pods.get(uid).map(|p| p.stage);
        if !pod["metadata"]["deletionTimestamp"].is_null() {
            if stage != Some(Stage::Deleting) {
                self.delete_pod(i, pod, uid);
            }
            return;
        }
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        if stage == Some(Stage::Running) && phase == "Running" && !status::is_ready(pod) {
            // Someone said it is not ready (the node lifecycle controller, while
            // the node was silent): as the kubelet's status manager, say again
            // what is true.
            self.reassert(pod, uid);
        }
        if stage.is_some() {
            return;
        }
        match phase {
            "Succeeded" | "Failed" => {
                self.pods.insert(
                    uid.to_owned(),
                    PodState {
                        node: i,
                        ip: None,
                        stage: Stage::Finished,
                    },
                );
            }
            "Running" => self.adopt(i, pod, uid),
            _ => self.start(i, pod, uid),
        }
    }

    fn reassert(&mut self, pod: &Value, uid: &str) {
        if let Some(p) = self.pods.get_mut(uid) {
            p.stage = Stage::Starting;
        }
        self.write_pod(PodWrite {
            namespace: text(&pod["metadata"]["namespace"]),
            name: text(&pod["metadata"]["name"]),
            uid: uid.to_owned(),
            status: status::ready_again(&pod["status"], now()),
            kind: WriteKind::Reassert,
        });
    }

    /// A pod already running here (this process ran before): its address
    /// stays taken, its exit (if it has one) is planned again.
    fn adopt(&mut self, i: u32, pod: &Value, uid: &str) {
        let ip = pod["status"]["podIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .filter(|ip| self.nodes[i as usize].pool.claim(*ip));
        self.pods.insert(
            uid.to_owned(),
            PodState {
                node: i,
                ip,
                stage: Stage::Running,
            },
        );
        if let Some(plan) = exit_plan(pod, pod["status"].clone()) {
            let due = status::run_time(plan.restarts);
            self.exits.insert(uid.to_owned(), plan);
            self.exit_after(uid, due);
        }
        if !status::is_ready(pod) {
            self.reassert(pod, uid);
        }
    }

    fn start(&mut self, i: u32, pod: &Value, uid: &str) {
        let node = &mut self.nodes[i as usize];
        let wanted = pod["status"]["podIP"].as_str().and_then(|s| s.parse().ok());
        let ip = match wanted.filter(|ip| node.pool.claim(*ip)) {
            Some(ip) => ip,
            None => match node.pool.allocate() {
                Some(ip) => ip,
                None => {
                    node.waiting.push(pod.clone());
                    return;
                }
            },
        };
        let running = status::running(pod, ip, node.spec.ip, now());
        if let Some(plan) = exit_plan(pod, running.clone()) {
            self.exits.insert(uid.to_owned(), plan);
        }
        self.pods.insert(
            uid.to_owned(),
            PodState {
                node: i,
                ip: Some(ip),
                stage: Stage::Starting,
            },
        );
        self.write_pod(PodWrite {
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            name: pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            uid: uid.to_owned(),
            status: running,
            kind: WriteKind::Start,
        });
    }

    /// Writes a pod's status, only if the pod is still the one with this uid
    /// (a JSON patch that tests it first: a pod deleted and made again under
    /// the same name is left alone).
    fn write_pod(&self, w: PodWrite) {
        let (client, tx, permits) = (
            self.client.clone(),
            self.tx.clone(),
            self.pod_permits.clone(),
        );
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let patch = Patch::Json(json!([
                {"op": "test", "path": "/metadata/uid", "value": w.uid},
                {"op": "add", "path": "/status", "value": w.status},
            ]));
            let r = client
                .patch_status(pods_res(), Some(&w.namespace), &w.name, &patch)
                .await;
            let r = r.map(drop).map_err(|e| {
                if !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Invalid) {
                    Trouble::note(&tx, format!("pod {}/{}: {e}", w.namespace, w.name));
                }
                e.kind()
            });
            let _ = tx.send(Input::PodWritten(w, r));
        });
    }

    fn written(&mut self, w: PodWrite, result: Result<(), ErrorKind>) {
        let Some(p) = self.pods.get_mut(&w.uid) else {
            return;
        };
        match result {
            Ok(()) => match w.kind {
                WriteKind::Reassert => {
                    if p.stage == Stage::Starting {
                        p.stage = Stage::Running;
                    }
                }
                WriteKind::Start => {
                    if p.stage == Stage::Starting {
                        p.stage = Stage::Running;
                        if let Some(plan) = self.exits.get(&w.uid) {
                            let due = status::run_time(plan.restarts);
                            self.exit_after(&w.uid, due);
                        }
                    }
                }
                WriteKind::Exit { terminal: true } => {
                    p.stage = Stage::Finished;
                    let (node, ip) = (p.node, p.ip.take());
                    self.exits.remove(&w.uid);
                    if let Some(ip) = ip {
                        self.release(node, ip);
                    }
                }
                WriteKind::Exit { terminal: false } => {
                    if let Some(plan) = self.exits.get_mut(&w.uid) {
                        plan.restarts += 1;
                        plan.status = w.status;
                        let due = status::run_time(plan.restarts);
                        self.exit_after(&w.uid, due);
                    }
                }
            },
            // Gone, or replaced by another pod of the same name (the uid test
            // failed). Its Deleted event may have come before this pod had a
            // state (it waited for an address): free what it holds now.
            Err(ErrorKind::NotFound | ErrorKind::Invalid) => self.forget(&w.uid),
            Err(_) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY).await;
                    let _ = tx.send(Input::Retry(w));
                });
            }
        }
    }

    fn exit_after(&self, uid: &str, due: Duration) {
        let tx = self.tx.clone();
        let uid = uid.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(due).await;
            let _ = tx.send(Input::ExitDue(uid));
        });
    }

    fn exit(&mut self, uid: &str) {
        let Some(p) = self.pods.get(uid) else {
            return;
        };
        let Some(plan) = self.exits.get(uid) else {
            return;
        };
        if p.stage != Stage::Running || self.nodes[p.node as usize].stopped {
            // Not yet running, or its node is down: try again later.
            self.exit_after(uid, RETRY);
            return;
        }
        let terminal = !status::restarts(&plan.policy, plan.code);
        let st = status::exited(&plan.status, uid, &plan.policy, plan.code, now());
        self.write_pod(PodWrite {
            namespace: plan.namespace.clone(),
            name: plan.name.clone(),
            uid: uid.to_owned(),
            status: st,
            kind: WriteKind::Exit { terminal },
        });
    }

    fn delete_pod(&mut self, i: u32, pod: &Value, uid: &str) {
        let p = self.pods.entry(uid.to_owned()).or_insert(PodState {
            node: i,
            ip: None,
            stage: Stage::Deleting,
        });
        p.stage = Stage::Deleting;
        let (client, tx, permits) = (
            self.client.clone(),
            self.tx.clone(),
            self.pod_permits.clone(),
        );
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = pod["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let params = DeleteParams {
            uid: Some(uid.to_owned()),
            ..DeleteParams::default()
        };
        // As the kubelet (1.27+) does, a running pod's containers stop (exit 0
        // after their SIGTERM) and the pod ends in a terminal phase first.
        let stopped = (pod["status"]["phase"] == "Running").then(|| {
            let st = status::exited(&pod["status"], uid, "Never", 0, now());
            Patch::Json(json!([
                {"op": "test", "path": "/metadata/uid", "value": uid},
                {"op": "add", "path": "/status", "value": st},
            ]))
        });
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Some(patch) = stopped
                && let Err(e) = client
                    .patch_status(pods_res(), Some(&ns), &name, &patch)
                    .await
                && !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Invalid)
            {
                Trouble::note(&tx, format!("stopping pod {ns}/{name}: {e}"));
            }
            // The kubelet's last word once the containers stopped (grace
            // period 0; this server deletes pods at once anyway): the server
            // removes it, or keeps it while finalizers hold it.
            if let Err(e) = client.delete(pods_res(), Some(&ns), &name, &params).await
                && !matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Conflict)
            {
                Trouble::note(&tx, format!("deleting pod {ns}/{name}: {e}"));
            }
        });
    }

    /// A pod is gone: its address is free for the next.
    fn forget(&mut self, uid: &str) {
        self.exits.remove(uid);
        if let Some(p) = self.pods.remove(uid)
            && let Some(ip) = p.ip
        {
            self.release(p.node, ip);
        }
    }

    fn release(&mut self, node: u32, ip: Ipv4Addr) {
        let n = &mut self.nodes[node as usize];
        n.pool.release(ip);
        if let Some(pod) = n.waiting.pop()
            && let Some(uid) = pod["metadata"]["uid"].as_str()
        {
            let uid = uid.to_owned();
            self.start(node, &pod, &uid);
        }
    }
}

/// The exit a pod's annotation asks for, if any (a bad value is ignored).
fn exit_plan(pod: &Value, status: Value) -> Option<ExitPlan> {
    let code: i32 = pod["metadata"]["annotations"][status::EXIT_CODE_ANNOTATION]
        .as_str()?
        .trim()
        .parse()
        .ok()?;
    let containers = status["containerStatuses"].as_array()?;
    if containers.is_empty() || containers.iter().any(|c| c["state"]["running"].is_null()) {
        // Already exited for good (a terminated state is final here).
        return None;
    }
    let restarts = containers[0]["restartCount"].as_u64().unwrap_or(0);
    Some(ExitPlan {
        namespace: text(&pod["metadata"]["namespace"]),
        name: text(&pod["metadata"]["name"]),
        code,
        policy: pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_owned(),
        status,
        restarts,
    })
}

/// Renews a node's Lease, making it again if it is gone.
async fn renew_lease(client: &Client, name: &str, uid: &str) -> Result<(), bosun_client::Error> {
    let renew = status::micro_time(now_micros());
    let patch = Patch::Merge(json!({"spec": status::lease_spec(name, &renew)}));
    let ns = Some(status::LEASE_NAMESPACE);
    match client.patch(leases_res(), ns, name, &patch).await {
        Err(e) if e.kind() == ErrorKind::NotFound => client
            .create(leases_res(), ns, &status::lease(name, uid, &renew))
            .await
            .map(drop),
        other => other.map(drop),
    }
}

/// Nodes registered so far (name, uid).
type Registered = Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Renews the Leases of the nodes registered so far, every interval, until
/// aborted (errors are left to the next round).
async fn keep_alive(client: Client, registered: Registered) {
    loop {
        tokio::time::sleep(schedule::LEASE_RENEW).await;
        let nodes = registered.lock().unwrap_or_else(|p| p.into_inner()).clone();
        bounded(
            nodes.into_iter().map(|(name, uid)| {
                let client = client.clone();
                async move {
                    let _ = renew_lease(&client, &name, &uid).await;
                }
            }),
            HEARTBEAT_WRITES,
        )
        .await;
    }
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Makes `kube-node-lease` if it is missing.
async fn ensure_namespace(client: &Client) -> Result<(), Error> {
    let ns = res("", "v1", "namespaces");
    match client.get(ns, None, status::LEASE_NAMESPACE).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let body = json!({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": status::LEASE_NAMESPACE}});
            match client.create(ns, None, &body).await {
                Err(e) if e.kind() != ErrorKind::Conflict => Err(api(format!(
                    "creating namespace {}",
                    status::LEASE_NAMESPACE
                ))(e)),
                _ => Ok(()),
            }
        }
        Err(e) => Err(api(format!(
            "reading namespace {}",
            status::LEASE_NAMESPACE
        ))(e)),
    }
}

/// Creates (or takes over) one node and its Lease; returns the node's uid.
async fn register_node(
    client: &Client,
    spec: &NodeSpec,
    cap: &Capacity,
    exists: bool,
) -> Result<String, Error> {
    let t = now();
    let node = status::node(spec, cap, t);
    let what = || format!("registering node {}", spec.name);
    let created = if exists {
        None
    } else {
        match client.create(nodes_res(), None, &node).await {
            Ok(v) => Some(v),
            Err(e) if e.kind() == ErrorKind::Conflict => None,
            Err(e) => return Err(api(what())(e)),
        }
    };
    let obj = match created {
        Some(v) => v,
        None => {
            // Someone's (or an earlier run's): our labels, pod CIDR if it
            // has none, and a fresh status.
            let patch = json!({"metadata": {"labels": status::node_labels(spec)},
                               "spec": {"podCIDR": spec.pod_cidr.to_string(),
                                        "podCIDRs": [spec.pod_cidr.to_string()]}});
            let mut cur = client
                .get(nodes_res(), None, &spec.name)
                .await
                .map_err(api(what()))?;
            let patch = if cur["spec"]["podCIDR"].is_string() {
                json!({"metadata": patch["metadata"]})
            } else {
                patch
            };
            cur = client
                .patch(nodes_res(), None, &spec.name, &Patch::Merge(patch))
                .await
                .map_err(api(what()))?;
            let body = json!({"status": node["status"]});
            client
                .patch_status(nodes_res(), None, &spec.name, &Patch::Merge(body))
                .await
                .map_err(api(what()))?;
            cur
        }
    };
    let uid = obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let renew = status::micro_time(now_micros());
    let ns = Some(status::LEASE_NAMESPACE);
    let lease = status::lease(&spec.name, &uid, &renew);
    match client.create(leases_res(), ns, &lease).await {
        Err(e) if e.kind() == ErrorKind::Conflict => {
            client
                .update(leases_res(), ns, &lease)
                .await
                .map_err(api(format!("taking over lease {}", spec.name)))?;
        }
        Err(e) => return Err(api(format!("creating lease {}", spec.name))(e)),
        Ok(_) => {}
    }
    Ok(uid)
}

/// Runs `jobs` with at most `limit` at once; results in order.
async fn bounded<T: Send + 'static>(
    jobs: impl Iterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
    limit: usize,
) -> Vec<T> {
    let permits = Arc::new(Semaphore::new(limit));
    let handles: Vec<JoinHandle<T>> = jobs
        .map(|job| {
            let permits = permits.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await;
                job.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a registration task panicked"));
    }
    out
}

/// Feeds a watcher's events into the loop; errors are retried (the watcher
/// resumes or relists).
fn forward(
    mut watcher: Watcher,
    tx: mpsc::UnboundedSender<Input>,
    wrap: fn(Event) -> Input,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match watcher.next().await {
                Ok(e) => {
                    if tx.send(wrap(e)).is_err() {
                        return;
                    }
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            }
        }
    })
}

/// Failed (or late) writes, told on stderr at most once every 10 s so that a server
/// in trouble does not drown the terminal.
#[derive(Debug, Default)]
struct Trouble {
    count: u64,
    last: Option<String>,
    told: Option<std::time::Instant>,
}

impl Trouble {
    fn note(tx: &mpsc::UnboundedSender<Input>, what: String) {
        let _ = tx.send(Input::Trouble(what));
    }

    fn add(&mut self, what: String) {
        self.count += 1;
        self.last = Some(what);
    }

    fn report(&mut self) {
        let Some(last) = &self.last else {
            return;
        };
        if self
            .told
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        eprintln!(
            "bosun sim-nodes: {} writes failed or were late (the last: {last})",
            self.count
        );
        self.count = 0;
        self.last = None;
        self.told = Some(std::time::Instant::now());
    }
}
