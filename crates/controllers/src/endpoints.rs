//! Endpoints and EndpointSlices: what Kubernetes' endpoint and endpointslice
//! controllers keep for every Service with a selector.
//!
//! - **Endpoints** (`v1`, named like the Service): one subset per set of
//!   resolved ports, `addresses` for ready pods and `notReadyAddresses` for
//!   the others (terminating pods are left out), at most 1,000 addresses
//!   (then `endpoints.kubernetes.io/over-capacity: truncated`), labelled
//!   `endpoints.kubernetes.io/managed-by: endpoint-controller`. The ones so
//!   labelled whose Service is gone are deleted.
//! - **EndpointSlices** (`discovery.k8s.io/v1`, IPv4): every pod with an
//!   address, terminating ones too, with `ready`/`serving`/`terminating`
//!   conditions; one group of slices per set of resolved ports, at most 100
//!   endpoints a slice; owned by the Service (the garbage collector removes
//!   them with it). A Service with no endpoints keeps one empty slice, as in
//!   Kubernetes. Endpoints stay in the slice they are in while they live, and
//!   a slice is written only when what it holds changes, so a change to one
//!   pod rewrites one slice of a big Service, never all of them.
//!
//! Services without a selector are left alone: their Endpoints and slices are
//! the user's. [`plan`] decides from the caches; [`reconcile`] writes one
//! object, with its resourceVersion as a precondition (a 409 means the cache
//! lags: the next plan sees the newer object). New slices get names derived
//! from the Service's uid and a counter, so a plan run on a lagging cache
//! repeats a create (409) instead of making a second slice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_client::{Cache, Client, DeleteParams, Error, Selector, Watcher, reflect};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
pub const SLICE_CONTROLLER: &str = "endpointslice-controller.k8s.io";
pub const ENDPOINTS_MANAGED_BY: &str = "endpoints.kubernetes.io/managed-by";
pub const ENDPOINTS_CONTROLLER: &str = "endpoint-controller";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";

/// Kubernetes' limits: endpoints per slice (`--max-endpoints-per-slice`)
/// and addresses per Endpoints object.
pub const MAX_PER_SLICE: usize = 100;
pub const MAX_ENDPOINTS: usize = 1000;

/// A Service's port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePort {
    pub name: String,
    pub protocol: String,
    pub app_protocol: Option<String>,
    pub target: TargetPort,
}

/// `targetPort`: a number, or the name of a container port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetPort {
    Number(i64),
    Name(String),
}

/// What the controller reads of a Service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.selector`; `None` (absent or empty): the endpoints are the user's.
    pub selector: Option<BTreeMap<String, String>>,
    pub ports: Vec<ServicePort>,
    /// `clusterIP: None`.
    pub headless: bool,
    pub publish_not_ready: bool,
}

/// A container port, as `targetPort` names resolve against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerPort {
    pub name: String,
    pub port: i64,
    pub protocol: String,
}

/// What the controller reads of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Option<String>,
    /// Its Ready condition is True.
    pub ready: bool,
    /// It has a deletionTimestamp.
    pub terminating: bool,
    /// Succeeded or Failed: it will never serve again.
    pub finished: bool,
    pub node_name: Option<String>,
    pub hostname: Option<String>,
    pub subdomain: Option<String>,
    pub ports: Vec<ContainerPort>,
}

/// An Endpoints object as the controller compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: Map<String, Value>,
    /// Normalized (see [`normalize`]).
    pub subsets: Value,
}

/// An EndpointSlice this controller manages.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub service: String,
    /// The uid of the Service that controls it.
    pub owner: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub address_type: String,
    /// Normalized and sorted by name.
    pub ports: Vec<Value>,
    /// Normalized and sorted by [`endpoint_key`].
    pub endpoints: Vec<Value>,
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

fn s(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Service {
    pub fn of(v: &Value) -> Option<Service> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        let selector = string_map(&spec["selector"]);
        let ports = spec["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let target = match &p["targetPort"] {
                    Value::String(name) => TargetPort::Name(name.clone()),
                    Value::Number(n) => TargetPort::Number(n.as_i64()?),
                    _ => TargetPort::Number(p["port"].as_i64()?),
                };
                Some(ServicePort {
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    protocol: s(&p["protocol"]).unwrap_or_else(|| "TCP".into()),
                    app_protocol: s(&p["appProtocol"]),
                    target,
                })
            })
            .collect();
        Some(Service {
            namespace: s(&m["namespace"])?,
            name: s(&m["name"])?,
            uid: s(&m["uid"])?,
            labels: string_map(&m["labels"]),
            selector: (!selector.is_empty()).then_some(selector),
            ports,
            headless: spec["clusterIP"] == "None",
            publish_not_ready: spec["publishNotReadyAddresses"] == true,
        })
    }
}

impl Pod {
    pub fn of(v: &Value) -> Option<Pod> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        let status = &v["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let ip = s(&status["podIP"]).or_else(|| s(&status["podIPs"][0]["ip"]));
        let ports = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| {
                Some(ContainerPort {
                    name: p["name"].as_str().unwrap_or_default().to_owned(),
                    port: p["containerPort"].as_i64()?,
                    protocol: s(&p["protocol"]).unwrap_or_else(|| "TCP".into()),
                })
            })
            .collect();
        Some(Pod {
            namespace: s(&m["namespace"])?,
            name: s(&m["name"])?,
            uid: s(&m["uid"])?,
            labels: string_map(&m["labels"]),
            ip,
            ready,
            terminating: !m["deletionTimestamp"].is_null(),
            finished: matches!(status["phase"].as_str(), Some("Succeeded" | "Failed")),
            node_name: s(&spec["nodeName"]),
            hostname: s(&spec["hostname"]),
            subdomain: s(&spec["subdomain"]),
            ports,
        })
    }
}

impl Endpoints {
    pub fn of(v: &Value) -> Option<Endpoints> {
        let m = &v["metadata"];
        Some(Endpoints {
            namespace: s(&m["namespace"])?,
            name: s(&m["name"])?,
            uid: s(&m["uid"])?,
            resource_version: m["resourceVersion"].as_str().unwrap_or_default().to_owned(),
            labels: string_map(&m["labels"]),
            annotations: m["annotations"].as_object().cloned().unwrap_or_default(),
            subsets: normalize(&v["subsets"]),
        })
    }

    fn managed(&self) -> bool {
        self.labels.get(ENDPOINTS_MANAGED_BY).map(String::as_str) == Some(ENDPOINTS_CONTROLLER)
    }
}

impl Slice {
    pub fn of(v: &Value) -> Option<Slice> {
        let m = &v["metadata"];
        let labels = string_map(&m["labels"]);
        if labels.get(SLICE_MANAGED_BY).map(String::as_str) != Some(SLICE_CONTROLLER) {
            return None;
        }
        let owner = m["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["kind"] == "Service" && o["controller"] == true)
            .and_then(|o| s(&o["uid"]));
        let mut ports: Vec<Value> = v["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(normalize)
            .collect();
        ports.sort_by(port_order);
        let mut endpoints: Vec<Value> = v["endpoints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(normalize)
            .collect();
        endpoints.sort_by_cached_key(endpoint_key);
        Some(Slice {
            namespace: s(&m["namespace"])?,
            name: s(&m["name"])?,
            uid: s(&m["uid"])?,
            resource_version: m["resourceVersion"].as_str().unwrap_or_default().to_owned(),
            service: labels.get(SERVICE_NAME_LABEL).cloned().unwrap_or_default(),
            owner,
            address_type: v["addressType"].as_str().unwrap_or_default().to_owned(),
            labels,
            ports,
            endpoints,
        })
    }
}

/// `value` without nulls, empty strings, empty lists and empty objects (at
/// any depth; an empty `value` is `null`), so that what the controller wrote
/// and what it reads back compare equal however the server spells an absent
/// field.
pub fn normalize(value: &Value) -> Value {
    let out = match value {
        Value::Array(a) => Value::Array(a.iter().map(normalize).filter(|v| !v.is_null()).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !v.is_null())
                .collect(),
        ),
        other => other.clone(),
    };
    let empty = match &out {
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if empty { Value::Null } else { out }
}

/// Identifies an endpoint of a slice across plans: the pod's uid, or for
/// endpoints without one, the address.
pub fn endpoint_key(e: &Value) -> String {
    match e["targetRef"]["uid"].as_str() {
        Some(uid) => format!("pod:{uid}"),
        None => format!("ip:{}", e["addresses"][0].as_str().unwrap_or_default()),
    }
}

fn port_order(a: &Value, b: &Value) -> std::cmp::Ordering {
    let key = |p: &Value| {
        (
            p["name"].as_str().unwrap_or_default().to_owned(),
            p["port"].as_i64(),
            p["protocol"].as_str().unwrap_or_default().to_owned(),
        )
    };
    key(a).cmp(&key(b))
}

/// One write.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create this object (Endpoints or EndpointSlice, by its `kind`).
    Create { body: Value },
    /// Replace it; `body` carries the resourceVersion it was planned from.
    Update { body: Value },
    Delete {
        kind: Kind,
        namespace: String,
        name: String,
        uid: String,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (verb, kind, ns, name) = match self {
            Action::Create { body } | Action::Update { body } => (
                if matches!(self, Action::Create { .. }) {
                    "create"
                } else {
                    "update"
                },
                Kind::of(body),
                body["metadata"]["namespace"].as_str().unwrap_or_default(),
                body["metadata"]["name"].as_str().unwrap_or_default(),
            ),
            Action::Delete {
                kind,
                namespace,
                name,
                ..
            } => ("delete", *kind, namespace.as_str(), name.as_str()),
        };
        write!(f, "{verb} {kind:?} {ns}/{name}")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Endpoints,
    Slice,
}

impl Kind {
    fn resource(self) -> &'static Resource {
        match self {
            Kind::Endpoints => resource::find("", "v1", "endpoints"),
            Kind::Slice => resource::find("discovery.k8s.io", "v1", "endpointslices"),
        }
        .expect("in the table")
    }

    fn of(body: &Value) -> Kind {
        if body["kind"] == "EndpointSlice" {
            Kind::Slice
        } else {
            Kind::Endpoints
        }
    }
}

/// The port a service port reaches on `pod`: a number as is, a name through
/// the pod's container ports of the same protocol; `None` if it names none.
fn resolve(port: &ServicePort, pod: &Pod) -> Option<i64> {
    match &port.target {
        TargetPort::Number(n) => Some(*n),
        TargetPort::Name(name) => pod
            .ports
            .iter()
            .find(|c| &c.name == name && c.protocol == port.protocol)
            .map(|c| c.port),
    }
}

/// `pod`'s resolved ports for `svc`, as endpoint ports (unresolvable ones
/// left out, as Kubernetes does).
fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<Value> {
    let mut ports: Vec<Value> = svc
        .ports
        .iter()
        .filter_map(|p| {
            let mut v = json!({"name": p.name, "port": resolve(p, pod)?, "protocol": p.protocol});
            if let Some(a) = &p.app_protocol {
                v["appProtocol"] = json!(a);
            }
            Some(normalize(&v))
        })
        .collect();
    ports.sort_by(port_order);
    ports
}

fn target_ref(pod: &Pod) -> Value {
    json!({"kind": "Pod", "namespace": pod.namespace, "name": pod.name, "uid": pod.uid})
}

/// The pod's hostname in the service's DNS, when its subdomain is the service.
fn hostname<'a>(svc: &Service, pod: &'a Pod) -> Option<&'a str> {
    (pod.subdomain.as_deref() == Some(svc.name.as_str()))
        .then_some(pod.hostname.as_deref())
        .flatten()
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    pod.namespace == svc.namespace
        && svc
            .selector
            .as_ref()
            .is_some_and(|sel| sel.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
}

fn ipv4(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>().is_ok()
}

/// An address of an Endpoints subset: whether it is ready, its IP, itself.
type Address = (bool, String, Value);

/// The desired Endpoints object of `svc`, given the pods it selects.
pub fn desired_endpoints(svc: &Service, pods: &[&Pod], annotations: &Map<String, Value>) -> Value {
    // Addresses grouped by the ports they resolve to: one subset each.
    let mut groups: BTreeMap<String, (Vec<Value>, Vec<Address>)> = BTreeMap::new();
    for pod in pods {
        let Some(ip) = pod.ip.as_deref() else {
            continue;
        };
        if pod.finished || (pod.terminating && !svc.publish_not_ready) {
            continue;
        }
        let ports = endpoint_ports(svc, pod);
        if ports.is_empty() && !(svc.ports.is_empty() && svc.headless) {
            continue;
        }
        let mut addr = json!({"ip": ip, "targetRef": target_ref(pod)});
        if let Some(n) = &pod.node_name {
            addr["nodeName"] = json!(n);
        }
        if let Some(h) = hostname(svc, pod) {
            addr["hostname"] = json!(h);
        }
        let ready = pod.ready || svc.publish_not_ready;
        let key = Value::Array(ports.clone()).to_string();
        let group = groups.entry(key).or_insert_with(|| (ports, Vec::new()));
        group.1.push((ready, ip.to_owned(), addr));
    }
    // Over capacity: ready addresses are kept first.
    let total: usize = groups.values().map(|g| g.1.len()).sum();
    let mut truncated = false;
    if total > MAX_ENDPOINTS {
        truncated = true;
        let mut all: Vec<(bool, String, String)> = groups
            .iter()
            .flat_map(|(k, g)| {
                g.1.iter()
                    .map(move |(r, ip, _)| (*r, ip.clone(), k.clone()))
            })
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let keep: HashSet<(String, String)> = all
            .into_iter()
            .take(MAX_ENDPOINTS)
            .map(|(_, ip, k)| (k, ip))
            .collect();
        for (k, g) in groups.iter_mut() {
            g.1.retain(|(_, ip, _)| keep.contains(&(k.clone(), ip.clone())));
        }
    }
    let subsets: Vec<Value> = groups
        .into_values()
        .filter(|g| !g.1.is_empty())
        .map(|(ports, mut addrs)| {
            addrs.sort_by(|a, b| a.1.cmp(&b.1));
            let (ready, not_ready): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.0);
            let strip = |l: Vec<Address>| l.into_iter().map(|a| a.2).collect::<Vec<_>>();
            normalize(&json!({
                "addresses": strip(ready),
                "notReadyAddresses": strip(not_ready),
                "ports": ports,
            }))
        })
        .collect();
    let mut labels: Map<String, Value> = svc
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(ENDPOINTS_MANAGED_BY.into(), json!(ENDPOINTS_CONTROLLER));
    if svc.headless {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    let mut annotations = annotations.clone();
    annotations.remove(OVER_CAPACITY);
    if truncated {
        annotations.insert(OVER_CAPACITY.into(), json!("truncated"));
    }
    let mut meta = json!({"name": svc.name, "namespace": svc.namespace, "labels": labels});
    if !annotations.is_empty() {
        meta["annotations"] = Value::Object(annotations);
    }
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, "subsets": subsets})
}

/// The endpoint of `pod` in `svc`'s slices, or `None` if it has none.
fn slice_endpoint(svc: &Service, pod: &Pod) -> Option<Value> {
    let ip = pod.ip.as_deref().filter(|ip| ipv4(ip))?;
    if pod.finished {
        return None;
    }
    let serving = pod.ready || svc.publish_not_ready;
    let mut e = json!({
        "addresses": [ip],
        "conditions": {
            "ready": serving && (!pod.terminating || svc.publish_not_ready),
            "serving": serving,
            "terminating": pod.terminating,
        },
        "targetRef": target_ref(pod),
    });
    if let Some(n) = &pod.node_name {
        e["nodeName"] = json!(n);
    }
    if let Some(h) = hostname(svc, pod) {
        e["hostname"] = json!(h);
    }
    Some(normalize(&e))
}

fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels.clone();
    labels.insert(SERVICE_NAME_LABEL.into(), svc.name.clone());
    labels.insert(SLICE_MANAGED_BY.into(), SLICE_CONTROLLER.into());
    if svc.headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn slice_body(svc: &Service, name: &str, ports: &[Value], endpoints: &[Value]) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": svc.namespace,
            "labels": slice_labels(svc),
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": svc.name, "uid": svc.uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// A new slice's name: the Service's name and five characters from its uid
/// and `n`, in the alphabet of Kubernetes' generated names.
pub fn slice_name(svc: &Service, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    // FNV-1a: stable across runs and builds, which the std hasher is not.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in svc.uid.bytes().chain(n.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let suffix: String = (0..5)
        .map(|i| ALPHABET[((h >> (i * 8)) % ALPHABET.len() as u64) as usize] as char)
        .collect();
    let base: String = svc.name.chars().take(57).collect();
    format!("{base}-{suffix}")
}

/// What to write so that every Service with a selector has its Endpoints and
/// slices, and no managed Endpoints outlive their Service.
pub fn plan(
    services: &[Service],
    pods: &[Arc<Pod>],
    endpoints: &[Endpoints],
    slices: &[Slice],
) -> Vec<Action> {
    plan_settled(services, pods, endpoints, slices, &mut Settled::default())
}

/// The Services a plan found nothing to do for, each with a hash of all its
/// objects depend on (the Service, its pods, its objects' resourceVersions):
/// until that changes, the next plan skips it. At 30,000 pods behind 100
/// Services (release build, this 2-core machine, others building) a full
/// plan took 0.66–1.1 s, a settled one 70 ms.
#[derive(Debug, Default)]
pub struct Settled(HashMap<(String, String), u64>);

fn fingerprint(svc: &Service, pods: &[&Pod], ep: Option<&&Endpoints>, slices: &[&Slice]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    // Fixed keys: fingerprints are compared across plans. Pods and slices
    // are summed, so their order (a cache's) does not matter.
    let state =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    let one = |h: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
        let mut hasher = state.build_hasher();
        h(&mut hasher);
        hasher.finish()
    };
    let mut sum = one(&|h| svc.hash(h));
    for p in pods {
        sum = sum.wrapping_add(one(&|h| p.hash(h)));
    }
    if let Some(e) = ep {
        sum = sum.wrapping_add(one(&|h| (&e.uid, &e.resource_version).hash(h)));
    }
    for sl in slices {
        sum = sum.wrapping_add(one(&|h| (&sl.uid, &sl.resource_version).hash(h)));
    }
    sum
}

/// [`plan`], skipping the Services `settled` says are unchanged since a plan
/// found nothing to do for them, and remembering those it finds settled now.
pub fn plan_settled(
    services: &[Service],
    pods: &[Arc<Pod>],
    endpoints: &[Endpoints],
    slices: &[Slice],
    settled: &mut Settled,
) -> Vec<Action> {
    // Pods by namespace and label, so that a Service reads only the pods
    // that carry one of its selector's labels.
    let mut by_label: HashMap<(&str, &str, &str), Vec<&Pod>> = HashMap::new();
    for p in pods {
        for (k, v) in &p.labels {
            by_label
                .entry((p.namespace.as_str(), k.as_str(), v.as_str()))
                .or_default()
                .push(p);
        }
    }
    let existing_ep: HashMap<(&str, &str), &Endpoints> = endpoints
        .iter()
        .map(|e| ((e.namespace.as_str(), e.name.as_str()), e))
        .collect();
    let mut slices_of: HashMap<(&str, &str), Vec<&Slice>> = HashMap::new();
    let mut slice_names: HashSet<(&str, &str)> = HashSet::new();
    for sl in slices {
        slices_of
            .entry((sl.namespace.as_str(), sl.service.as_str()))
            .or_default()
            .push(sl);
        slice_names.insert((sl.namespace.as_str(), sl.name.as_str()));
    }
    let mut actions = Vec::new();
    let mut known: HashSet<(&str, &str)> = HashSet::new();
    for svc in services {
        known.insert((svc.namespace.as_str(), svc.name.as_str()));
        let Some(selector) = &svc.selector else {
            continue;
        };
        let candidates = selector
            .iter()
            .map(|(k, v)| {
                by_label
                    .get(&(svc.namespace.as_str(), k.as_str(), v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|c| c.len())
            .unwrap_or_default();
        let selected: Vec<&Pod> = candidates
            .iter()
            .copied()
            .filter(|p| selects(svc, p))
            .collect();
        let key = (svc.namespace.as_str(), svc.name.as_str());
        let current = existing_ep.get(&key);
        let mine = slices_of.remove(&key).unwrap_or_default();
        let fp = fingerprint(svc, &selected, current, &mine);
        let memo_key = (svc.namespace.clone(), svc.name.clone());
        if settled.0.get(&memo_key) == Some(&fp) {
            continue;
        }
        let before = actions.len();
        // Endpoints.
        let empty = Map::new();
        let mut want =
            desired_endpoints(svc, &selected, current.map_or(&empty, |c| &c.annotations));
        match current {
            None => actions.push(Action::Create { body: want }),
            Some(cur) => {
                let labels = string_map(&want["metadata"]["labels"]);
                let annotations = want["metadata"]["annotations"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                if cur.labels != labels
                    || cur.annotations != annotations
                    || cur.subsets != normalize(&want["subsets"])
                {
                    want["metadata"]["resourceVersion"] = json!(cur.resource_version);
                    actions.push(Action::Update { body: want });
                }
            }
        }
        // Slices.
        plan_slices(svc, &selected, &mine, &slice_names, &mut actions);
        if actions.len() == before {
            settled.0.insert(memo_key, fp);
        } else {
            settled.0.remove(&memo_key);
        }
    }
    settled
        .0
        .retain(|(ns, name), _| known.contains(&(ns.as_str(), name.as_str())));
    for e in endpoints {
        if e.managed() && !known.contains(&(e.namespace.as_str(), e.name.as_str())) {
            actions.push(Action::Delete {
                kind: Kind::Endpoints,
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                uid: e.uid.clone(),
            });
        }
    }
    // Slices of Services that are gone are left to the garbage collector
    // (they are owned); those of a selector-less Service are the user's.
    actions
}

fn plan_slices(
    svc: &Service,
    pods: &[&Pod],
    existing: &[&Slice],
    taken: &HashSet<(&str, &str)>,
    actions: &mut Vec<Action>,
) {
    // Desired endpoints, grouped by their port set.
    let mut want: BTreeMap<String, (Vec<Value>, BTreeMap<String, Value>)> = BTreeMap::new();
    for pod in pods {
        if let Some(e) = slice_endpoint(svc, pod) {
            let ports = endpoint_ports(svc, pod);
            let group = want
                .entry(Value::Array(ports.clone()).to_string())
                .or_insert_with(|| (ports, BTreeMap::new()));
            group.1.insert(endpoint_key(&e), e);
        }
    }
    let mut existing: Vec<&Slice> = existing.to_vec();
    existing.sort_by(|a, b| a.name.cmp(&b.name));
    let labels = slice_labels(svc);
    // Slices of another incarnation of the Service, or of another address
    // type, are not reused.
    let (usable, foreign): (Vec<&Slice>, Vec<&Slice>) = existing
        .into_iter()
        .partition(|sl| sl.owner.as_deref() == Some(svc.uid.as_str()) && sl.address_type == "IPv4");
    let mut deletes: Vec<&Slice> = foreign;
    // What each kept slice will hold.
    let mut result: Vec<(&Slice, String, Vec<Value>)> = Vec::new();
    let mut placed: HashSet<String> = HashSet::new();
    for sl in usable {
        let pk = Value::Array(sl.ports.clone()).to_string();
        let Some((_, group)) = want.get(&pk) else {
            deletes.push(sl);
            continue;
        };
        let kept: Vec<Value> = sl
            .endpoints
            .iter()
            .filter_map(|e| {
                let k = endpoint_key(e);
                let w = group.get(&k)?;
                placed.insert(k).then(|| w.clone())
            })
            .collect();
        result.push((sl, pk, kept));
    }
    let mut creates: Vec<(Vec<Value>, Vec<Value>)> = Vec::new();
    for (pk, (ports, group)) in &want {
        let mut rest = group
            .iter()
            .filter(|(k, _)| !placed.contains(*k))
            .map(|(_, e)| e.clone())
            .peekable();
        // Fill slices with room first (the fullest first, so slices stay few).
        let mut room: Vec<usize> = (0..result.len())
            .filter(|&i| &result[i].1 == pk && result[i].2.len() < MAX_PER_SLICE)
            .collect();
        room.sort_by_key(|&i| std::cmp::Reverse(result[i].2.len()));
        for i in room {
            while result[i].2.len() < MAX_PER_SLICE {
                let Some(e) = rest.next() else { break };
                result[i].2.push(e);
            }
        }
        while rest.peek().is_some() {
            let chunk: Vec<Value> = rest.by_ref().take(MAX_PER_SLICE).collect();
            creates.push((ports.clone(), chunk));
        }
    }
    // A slice left empty goes, unless the Service has no endpoints at all:
    // then one empty slice stays (Kubernetes' placeholder).
    let mut updates: Vec<(&Slice, Vec<Value>, Vec<Value>)> = Vec::new();
    for (sl, _, eps) in result {
        if eps.is_empty() {
            deletes.push(sl);
        } else {
            updates.push((sl, sl.ports.clone(), eps));
        }
    }
    if want.is_empty() && creates.is_empty() && updates.is_empty() {
        creates.push((Vec::new(), Vec::new()));
    }
    // A slice about to be deleted is rewritten instead, where one must be made.
    deletes.sort_by(|a, b| a.name.cmp(&b.name));
    let mut deletes = deletes.into_iter();
    let mut n = 0;
    for (ports, eps) in creates {
        match deletes.next() {
            Some(sl) => updates.push((sl, ports, eps)),
            None => {
                let name = loop {
                    let name = slice_name(svc, n);
                    n += 1;
                    if !taken.contains(&(svc.namespace.as_str(), name.as_str())) {
                        break name;
                    }
                };
                actions.push(Action::Create {
                    body: slice_body(svc, &name, &ports, &eps),
                });
            }
        }
    }
    for sl in deletes {
        actions.push(Action::Delete {
            kind: Kind::Slice,
            namespace: sl.namespace.clone(),
            name: sl.name.clone(),
            uid: sl.uid.clone(),
        });
    }
    for (sl, ports, mut eps) in updates {
        eps.sort_by_cached_key(endpoint_key);
        let same = sl.ports == ports
            && sl.endpoints == eps
            && sl.labels == labels
            && sl.owner.as_deref() == Some(svc.uid.as_str())
            && sl.address_type == "IPv4";
        if !same {
            let mut body = slice_body(svc, &sl.name, &ports, &eps);
            body["metadata"]["resourceVersion"] = json!(sl.resource_version);
            actions.push(Action::Update { body });
        }
    }
}

/// Does one action. Conflicts and vanished objects are not errors: the
/// next plan sees the newer state.
pub async fn reconcile(client: &Client, action: &Action) -> Result<(), Error> {
    let done = match action {
        Action::Create { body } => {
            let ns = body["metadata"]["namespace"].as_str();
            client
                .create(Kind::of(body).resource(), ns, body)
                .await
                .map(drop)
        }
        Action::Update { body } => {
            let ns = body["metadata"]["namespace"].as_str();
            client
                .update(Kind::of(body).resource(), ns, body)
                .await
                .map(drop)
        }
        Action::Delete {
            kind,
            namespace,
            name,
            uid,
        } => {
            let params = DeleteParams {
                propagation_policy: None,
                uid: Some(uid.clone()),
            };
            client
                .delete(kind.resource(), Some(namespace), name, &params)
                .await
                .map(drop)
        }
    };
    match done {
        Err(e) if matches!(e.code(), Some(404 | 409)) => Ok(()),
        other => other,
    }
}

/// How many writes are in flight at once: the store commits concurrent
/// writes in one batch, so one at a time would cap the controller at a few
/// hundred a second.
const IN_FLIGHT: usize = 64;

/// Runs the controller until the future is dropped.
pub(crate) async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let find = |g, p| resource::find(g, "v1", p).expect("in the table");
    let services: Cache<Service> = Cache::new(notify.clone());
    let pods: Cache<Arc<Pod>> = Cache::new(notify.clone());
    let eps: Cache<Endpoints> = Cache::new(notify.clone());
    let slices: Cache<Slice> = Cache::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Watcher::new(client.clone(), find("", "services"), None),
        services.clone(),
        Service::of,
    ));
    tasks.spawn(reflect(
        Watcher::new(client.clone(), find("", "pods"), None),
        pods.clone(),
        |v| Pod::of(v).map(Arc::new),
    ));
    tasks.spawn(reflect(
        Watcher::new(client.clone(), find("", "endpoints"), None),
        eps.clone(),
        Endpoints::of,
    ));
    tasks.spawn(reflect(
        Watcher::new(
            client.clone(),
            find("discovery.k8s.io", "endpointslices"),
            None,
        )
        .selecting(Selector::labels(format!(
            "{SLICE_MANAGED_BY}={SLICE_CONTROLLER}"
        ))),
        slices.clone(),
        Slice::of,
    ));
    let limit = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut settled = Settled::default();
    loop {
        crate::changed(&notify).await;
        if !(services.synced() && pods.synced() && eps.synced() && slices.synced()) {
            continue;
        }
        let actions = plan_settled(
            &services.snapshot(),
            &pods.snapshot(),
            &eps.snapshot(),
            &slices.snapshot(),
            &mut settled,
        );
        let mut writes = tokio::task::JoinSet::new();
        for action in actions {
            let client = client.clone();
            let limit = limit.clone();
            writes.spawn(async move {
                let _permit = limit.acquire().await;
                if let Err(e) = reconcile(&client, &action).await {
                    eprintln!("bosun controllers: endpoints: {action}: {e}");
                }
            });
        }
        while writes.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests;
