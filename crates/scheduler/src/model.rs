//! The typed view of the few Pod and Node fields the plugins read, parsed once at
//! the edge from the API's JSON.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ParseError;
use crate::quantity::parse_milli;

/// Requests or allocatable: cpu in millicores, memory and ephemeral storage in
/// thousandths of a byte (so fractional quantities stay exact), pods as a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub cpu: i128,
    pub memory: i128,
    pub ephemeral: i128,
    pub pods: i128,
}

impl Resources {
    pub(crate) fn add(&mut self, other: &Resources) {
        self.cpu += other.cpu;
        self.memory += other.memory;
        self.ephemeral += other.ephemeral;
        self.pods += other.pods;
    }

    fn max(&mut self, other: &Resources) {
        self.cpu = self.cpu.max(other.cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral = self.ephemeral.max(other.ephemeral);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Requirement {
    pub(crate) key: String,
    pub(crate) op: Op,
    pub(crate) values: Vec<String>,
}

impl Requirement {
    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let int = |s: &str| s.parse::<i64>().ok();
        match (self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt | Op::Lt, None) => false,
            (op, Some(v)) => match (int(v), self.values.first().and_then(|x| int(x))) {
                (Some(have), Some(bound)) if op == Op::Gt => have > bound,
                (Some(have), Some(bound)) => have < bound,
                _ => false,
            },
        }
    }
}

/// One node selector term: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NodeTerm {
    pub(crate) expressions: Vec<Requirement>,
    pub(crate) fields: Vec<Requirement>,
}

impl NodeTerm {
    pub(crate) fn matches(&self, node: &Node) -> bool {
        // An empty term selects nothing, as in Kubernetes.
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions
            .iter()
            .all(|r| r.matches(node.labels.get(&r.key).map(String::as_str)))
            && self
                .fields
                .iter()
                .all(|r| r.key == "metadata.name" && r.matches(Some(&node.name)))
    }
}

/// A `metav1.LabelSelector`; `None` in an owner means "selects nothing".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct Selector {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) expressions: Vec<Requirement>,
}

impl Selector {
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self
                .expressions
                .iter()
                .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodAffinityTerm {
    pub(crate) selector: Option<Selector>,
    /// Empty means every namespace (an empty `namespaceSelector`).
    pub(crate) namespaces: Vec<String>,
    pub(crate) all_namespaces: bool,
    pub(crate) topology_key: String,
}

impl PodAffinityTerm {
    pub(crate) fn selects(&self, pod: &Pod) -> bool {
        (self.all_namespaces || self.namespaces.contains(&pod.namespace))
            && self
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&pod.labels))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Taint {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) effect: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Toleration {
    pub(crate) key: String,
    pub(crate) exists: bool,
    pub(crate) value: String,
    pub(crate) effect: String,
}

impl Toleration {
    pub(crate) fn tolerates(&self, taint: &Taint) -> bool {
        (self.effect.is_empty() || self.effect == taint.effect)
            && (self.key.is_empty() && self.exists || self.key == taint.key)
            && (self.exists || self.value == taint.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpreadConstraint {
    pub(crate) max_skew: i64,
    pub(crate) topology_key: String,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub(crate) hard: bool,
    pub(crate) selector: Option<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HostPort {
    pub(crate) protocol: String,
    pub(crate) ip: String,
    pub(crate) port: i64,
}

impl HostPort {
    pub(crate) fn conflicts(&self, other: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0" || ip == "::";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || wild(&self.ip) || wild(&other.ip))
    }
}

/// What the scheduler reads of a Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) node_name: Option<String>,
    pub(crate) requests: Resources,
    /// Requests with Kubernetes' non-zero defaults (100m, 200Mi) for scoring only.
    pub(crate) score_requests: Resources,
    pub(crate) host_ports: Vec<HostPort>,
    pub(crate) node_selector: BTreeMap<String, String>,
    pub(crate) required_nodes: Option<Vec<NodeTerm>>,
    pub(crate) preferred_nodes: Vec<(i64, NodeTerm)>,
    pub(crate) tolerations: Vec<Toleration>,
    pub(crate) affinity: Vec<PodAffinityTerm>,
    pub(crate) anti_affinity: Vec<PodAffinityTerm>,
    /// Weighted preferred terms: scores only.
    pub(crate) preferred_affinity: Vec<(i64, PodAffinityTerm)>,
    pub(crate) preferred_anti_affinity: Vec<(i64, PodAffinityTerm)>,
    pub(crate) spread: Vec<SpreadConstraint>,
    pub(crate) images: Vec<String>,
    /// Succeeded or Failed: holds no resources any more.
    pub(crate) terminal: bool,
}

/// What the scheduler reads of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) allocatable: Resources,
    pub(crate) unschedulable: bool,
    /// Includes the not-ready/unreachable taint a missing Ready condition implies.
    pub(crate) taints: Vec<Taint>,
    /// (names, size in bytes) from `status.images`.
    pub(crate) images: Vec<(Vec<String>, i64)>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn field_err(path: &str, reason: &'static str) -> ParseError {
    ParseError::Field {
        path: path.to_owned(),
        reason,
    }
}

fn requirements(v: &Value, key: &str, path: &str) -> Result<Vec<Requirement>, ParseError> {
    arr(v, key)
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("{path}.{key}[{i}]");
            let op = match r.get("operator").and_then(Value::as_str) {
                Some("In") => Op::In,
                Some("NotIn") => Op::NotIn,
                Some("Exists") => Op::Exists,
                Some("DoesNotExist") => Op::DoesNotExist,
                Some("Gt") => Op::Gt,
                Some("Lt") => Op::Lt,
                _ => return Err(field_err(&format!("{at}.operator"), "unknown operator")),
            };
            let values = arr(r, "values")
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            let key = r.get("key").and_then(Value::as_str).unwrap_or_default();
            Ok(Requirement {
                key: key.to_owned(),
                op,
                values,
            })
        })
        .collect()
}

fn node_term(v: &Value, path: &str) -> Result<NodeTerm, ParseError> {
    Ok(NodeTerm {
        expressions: requirements(v, "matchExpressions", path)?,
        fields: requirements(v, "matchFields", path)?,
    })
}

fn selector(v: Option<&Value>, path: &str) -> Result<Option<Selector>, ParseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => Ok(Some(Selector {
            labels: string_map(v.get("matchLabels")),
            expressions: requirements(v, "matchExpressions", path)?,
        })),
    }
}

fn pod_terms(
    v: Option<&Value>,
    namespace: &str,
    path: &str,
) -> Result<Vec<PodAffinityTerm>, ParseError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let key = "requiredDuringSchedulingIgnoredDuringExecution";
    arr(v, key)
        .iter()
        .enumerate()
        .map(|(i, t)| pod_term(t, namespace, &format!("{path}.{key}[{i}]")))
        .collect()
}

/// The weighted `preferredDuringSchedulingIgnoredDuringExecution` terms.
fn preferred_pod_terms(
    v: Option<&Value>,
    namespace: &str,
    path: &str,
) -> Result<Vec<(i64, PodAffinityTerm)>, ParseError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let key = "preferredDuringSchedulingIgnoredDuringExecution";
    arr(v, key)
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = format!("{path}.{key}[{i}].podAffinityTerm");
            let term = pod_term(
                p.get("podAffinityTerm").unwrap_or(&Value::Null),
                namespace,
                &at,
            )?;
            Ok((p.get("weight").and_then(Value::as_i64).unwrap_or(0), term))
        })
        .collect()
}

fn pod_term(t: &Value, namespace: &str, at: &str) -> Result<PodAffinityTerm, ParseError> {
    let mut namespaces: Vec<String> = arr(t, "namespaces")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    let all_namespaces = t
        .get("namespaceSelector")
        .and_then(Value::as_object)
        .is_some_and(|m| {
            m.values()
                .all(|v| v.as_object().is_none_or(|o| o.is_empty()))
        });
    if namespaces.is_empty() {
        namespaces.push(namespace.to_owned());
    }
    Ok(PodAffinityTerm {
        selector: selector(t.get("labelSelector"), &format!("{at}.labelSelector"))?,
        namespaces,
        all_namespaces,
        topology_key: str_at(t, &["topologyKey"]).unwrap_or_default().to_owned(),
    })
}

fn quantity(list: Option<&Value>, name: &str, path: &str) -> Result<Option<i128>, ParseError> {
    match list.and_then(|l| l.get(name)) {
        None => Ok(None),
        Some(Value::String(s)) => parse_milli(s).map(Some),
        Some(Value::Number(n)) => parse_milli(&n.to_string()).map(Some),
        Some(_) => Err(field_err(&format!("{path}.{name}"), "not a quantity")),
    }
}

fn container_requests(c: &Value, path: &str) -> Result<(Resources, Resources), ParseError> {
    let list = c.get("resources").and_then(|r| r.get("requests"));
    let at = format!("{path}.resources.requests");
    let cpu = quantity(list, "cpu", &at)?;
    let memory = quantity(list, "memory", &at)?;
    let exact = Resources {
        cpu: cpu.unwrap_or(0),
        memory: memory.unwrap_or(0),
        ephemeral: quantity(list, "ephemeral-storage", &at)?.unwrap_or(0),
        pods: 0,
    };
    let scored = Resources {
        cpu: cpu.unwrap_or(100),
        memory: memory.unwrap_or(200 * (1 << 20) * 1000),
        ..exact
    };
    Ok((exact, scored))
}

impl Pod {
    /// Reads a Pod object; a malformed quantity or operator is an error naming the field.
    pub fn parse(obj: &Value) -> Result<Pod, ParseError> {
        let meta = obj.get("metadata").unwrap_or(&Value::Null);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let namespace = str_at(meta, &["namespace"]).unwrap_or("default").to_owned();
        let mut requests = Resources::default();
        let mut score_requests = Resources::default();
        let mut host_ports = Vec::new();
        let mut images = Vec::new();
        for (i, c) in arr(spec, "containers").iter().enumerate() {
            let (exact, scored) = container_requests(c, &format!("spec.containers[{i}]"))?;
            requests.add(&exact);
            score_requests.add(&scored);
            images.extend(str_at(c, &["image"]).map(str::to_owned));
            for p in arr(c, "ports") {
                if let Some(port) = p.get("hostPort").and_then(Value::as_i64).filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: str_at(p, &["protocol"]).unwrap_or("TCP").to_owned(),
                        ip: str_at(p, &["hostIP"]).unwrap_or_default().to_owned(),
                        port,
                    });
                }
            }
        }
        // Init containers run one at a time before the others: the pod needs the
        // largest of them or the sum of the app containers, whichever is more.
        for (i, c) in arr(spec, "initContainers").iter().enumerate() {
            let (exact, scored) = container_requests(c, &format!("spec.initContainers[{i}]"))?;
            requests.max(&exact);
            score_requests.max(&scored);
        }
        if let Some(overhead) = spec.get("overhead") {
            let o = Resources {
                cpu: quantity(Some(overhead), "cpu", "spec.overhead")?.unwrap_or(0),
                memory: quantity(Some(overhead), "memory", "spec.overhead")?.unwrap_or(0),
                ..Resources::default()
            };
            requests.add(&o);
            score_requests.add(&o);
        }
        requests.pods = 1;
        score_requests.pods = 1;
        let affinity = spec.get("affinity").unwrap_or(&Value::Null);
        let node_aff = affinity.get("nodeAffinity");
        let required_nodes = match node_aff
            .and_then(|a| a.get("requiredDuringSchedulingIgnoredDuringExecution"))
        {
            None => None,
            Some(sel) => Some(
                arr(sel, "nodeSelectorTerms")
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        node_term(
                            t,
                            &format!("spec.affinity.nodeAffinity.required.nodeSelectorTerms[{i}]"),
                        )
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        let preferred_nodes = node_aff
            .map(|a| arr(a, "preferredDuringSchedulingIgnoredDuringExecution"))
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let at = format!("spec.affinity.nodeAffinity.preferred[{i}].preference");
                let term = node_term(p.get("preference").unwrap_or(&Value::Null), &at)?;
                Ok((p.get("weight").and_then(Value::as_i64).unwrap_or(0), term))
            })
            .collect::<Result<_, ParseError>>()?;
        let tolerations = arr(spec, "tolerations")
            .iter()
            .map(|t| Toleration {
                key: str_at(t, &["key"]).unwrap_or_default().to_owned(),
                exists: str_at(t, &["operator"]) == Some("Exists"),
                value: str_at(t, &["value"]).unwrap_or_default().to_owned(),
                effect: str_at(t, &["effect"]).unwrap_or_default().to_owned(),
            })
            .collect();
        let spread = arr(spec, "topologySpreadConstraints")
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let at = format!("spec.topologySpreadConstraints[{i}]");
                let max_skew = c.get("maxSkew").and_then(Value::as_i64).unwrap_or(1);
                if max_skew < 1 {
                    return Err(field_err(&format!("{at}.maxSkew"), "must be at least 1"));
                }
                Ok(SpreadConstraint {
                    max_skew,
                    topology_key: str_at(c, &["topologyKey"]).unwrap_or_default().to_owned(),
                    hard: str_at(c, &["whenUnsatisfiable"]) != Some("ScheduleAnyway"),
                    selector: selector(c.get("labelSelector"), &format!("{at}.labelSelector"))?,
                })
            })
            .collect::<Result<_, _>>()?;
        let terminal = matches!(
            str_at(obj, &["status", "phase"]),
            Some("Succeeded" | "Failed")
        );
        Ok(Pod {
            name: str_at(meta, &["name"]).unwrap_or_default().to_owned(),
            labels: string_map(meta.get("labels")),
            node_name: str_at(spec, &["nodeName"])
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            requests,
            score_requests,
            host_ports,
            node_selector: string_map(spec.get("nodeSelector")),
            required_nodes,
            preferred_nodes,
            tolerations,
            affinity: pod_terms(
                affinity.get("podAffinity"),
                &namespace,
                "spec.affinity.podAffinity",
            )?,
            anti_affinity: pod_terms(
                affinity.get("podAntiAffinity"),
                &namespace,
                "spec.affinity.podAntiAffinity",
            )?,
            preferred_affinity: preferred_pod_terms(
                affinity.get("podAffinity"),
                &namespace,
                "spec.affinity.podAffinity",
            )?,
            preferred_anti_affinity: preferred_pod_terms(
                affinity.get("podAntiAffinity"),
                &namespace,
                "spec.affinity.podAntiAffinity",
            )?,
            spread,
            images,
            namespace,
            terminal,
        })
    }

    /// The node this pod is bound to, if any.
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// Marks the pod bound to `node` (what the scheduling loop assumes after binding).
    pub fn bind_to(&mut self, node: &str) {
        self.node_name = Some(node.to_owned());
    }
}

impl Node {
    /// Reads a Node object; a malformed allocatable quantity is an error naming it.
    pub fn parse(obj: &Value) -> Result<Node, ParseError> {
        let meta = obj.get("metadata").unwrap_or(&Value::Null);
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let status = obj.get("status").unwrap_or(&Value::Null);
        let alloc = status.get("allocatable").or_else(|| status.get("capacity"));
        let at = "status.allocatable";
        let allocatable = Resources {
            cpu: quantity(alloc, "cpu", at)?.unwrap_or(0),
            memory: quantity(alloc, "memory", at)?.unwrap_or(0),
            ephemeral: quantity(alloc, "ephemeral-storage", at)?.unwrap_or(0),
            pods: quantity(alloc, "pods", at)?.unwrap_or(0) / 1000,
        };
        let mut taints: Vec<Taint> = arr(spec, "taints")
            .iter()
            .map(|t| Taint {
                key: str_at(t, &["key"]).unwrap_or_default().to_owned(),
                value: str_at(t, &["value"]).unwrap_or_default().to_owned(),
                effect: str_at(t, &["effect"]).unwrap_or_default().to_owned(),
            })
            .collect();
        // The node lifecycle controller taints nodes whose Ready condition is not
        // True; until it has, the condition itself stands for the taint.
        let ready = arr(status, "conditions")
            .iter()
            .find(|c| str_at(c, &["type"]) == Some("Ready"))
            .and_then(|c| str_at(c, &["status"]));
        let implied = match ready {
            Some("True") => None,
            Some("False") => Some("node.kubernetes.io/not-ready"),
            _ => Some("node.kubernetes.io/unreachable"),
        };
        if let Some(key) = implied
            && !taints
                .iter()
                .any(|t| t.key == key && t.effect != "PreferNoSchedule")
        {
            taints.push(Taint {
                key: key.to_owned(),
                value: String::new(),
                effect: "NoSchedule".to_owned(),
            });
        }
        let images = arr(status, "images")
            .iter()
            .map(|i| {
                let names = arr(i, "names")
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_owned))
                    .collect();
                (
                    names,
                    i.get("sizeBytes").and_then(Value::as_i64).unwrap_or(0),
                )
            })
            .collect();
        Ok(Node {
            name: str_at(meta, &["name"]).unwrap_or_default().to_owned(),
            labels: string_map(meta.get("labels")),
            allocatable,
            unschedulable: spec
                .get("unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            taints,
            images,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn allocatable(&self) -> Resources {
        self.allocatable
    }
}
