//! Kubernetes' default filter and score plugins over a [`Snapshot`].
//!
//! Filters run in kube-scheduler's order and a node reports the reasons of the
//! first one that refuses it, so the message says what Kubernetes would say.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::Snapshot;
use crate::model::{Node, Pod, Taint};

const UNSCHEDULABLE: &str = "node(s) were unschedulable";
const NODE_NAME: &str = "node(s) didn't match the requested node name";
const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
const SPREAD: &str = "node(s) didn't match pod topology spread constraints";
const SPREAD_LABEL: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const EXISTING_ANTI: &str = "node(s) didn't satisfy existing pods anti-affinity rules";
const POD_AFFINITY: &str = "node(s) didn't match pod affinity rules";
const POD_ANTI: &str = "node(s) didn't match pod anti-affinity rules";

type Domain = (String, String);

/// For one spread constraint: matching pods per domain (eligible nodes only),
/// the least of them, and whether the pod counts itself.
#[derive(Debug)]
struct Counts {
    domains: Arc<crate::Domains>,
    per_domain: Vec<i64>,
    min: i64,
    self_match: i64,
}

impl Counts {
    /// The count in node `i`'s domain; `None` if it lacks the key.
    fn at(&self, i: usize) -> Option<i64> {
        self.domains.of_node[i].map(|d| self.per_domain[d as usize])
    }
}

/// What the filters compute once per pod rather than once per node.
#[derive(Debug)]
pub(crate) struct PreFilter {
    /// Per hard spread constraint.
    spread: Vec<Counts>,
    /// Per soft spread constraint.
    soft_spread: Vec<Counts>,
    /// Per affinity term: domains holding a matching pod.
    affinity: Vec<BTreeSet<String>>,
    anti_affinity: Vec<BTreeSet<String>>,
    /// Domains an existing pod's required anti-affinity forbids to this pod.
    forbidden: BTreeSet<Domain>,
    tolerates_unschedulable: bool,
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.labels.get(key).map(String::as_str)
}

fn node_affinity_ok(pod: &Pod, node: &Node) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_nodes
            .as_ref()
            .is_none_or(|terms| terms.iter().any(|t| t.matches(node)))
}

impl PreFilter {
    pub(crate) fn new(snap: &Snapshot, pod: &Pod) -> PreFilter {
        let eligible: Vec<bool> = snap
            .nodes
            .iter()
            .map(|n| node_affinity_ok(pod, n))
            .collect();
        let count = |key: &str, sel: &Option<crate::model::Selector>| {
            // Every eligible domain counts, even with no matching pod: it is the minimum.
            let per_node = sel.as_ref().map(|s| snap.matching(&pod.namespace, s));
            let domains = snap.domains(key);
            let mut per_domain = vec![0i64; domains.count];
            let mut present = vec![false; domains.count];
            for (i, d) in domains.of_node.iter().enumerate() {
                if eligible[i]
                    && let Some(d) = d
                {
                    present[*d as usize] = true;
                    per_domain[*d as usize] += per_node.as_ref().map_or(0, |c| i64::from(c[i]));
                }
            }
            let min = (per_domain.iter().zip(&present))
                .filter(|(_, p)| **p)
                .map(|(c, _)| *c)
                .min()
                .unwrap_or(0);
            let self_match = i64::from(sel.as_ref().is_some_and(|s| s.matches(&pod.labels)));
            Counts {
                domains,
                per_domain,
                min,
                self_match,
            }
        };
        let spread = pod
            .spread
            .iter()
            .filter(|c| c.hard)
            .map(|c| count(&c.topology_key, &c.selector))
            .collect();
        let soft_spread = pod
            .spread
            .iter()
            .filter(|c| !c.hard)
            .map(|c| count(&c.topology_key, &c.selector))
            .collect();
        let domains = |terms: &[crate::model::PodAffinityTerm]| {
            terms
                .iter()
                .map(|t| {
                    let Some(sel) = &t.selector else {
                        return BTreeSet::new();
                    };
                    if t.all_namespaces {
                        return snap
                            .candidates(sel)
                            .filter(|(p, _)| t.selects(p))
                            .filter_map(|(_, i)| {
                                label(&snap.nodes[i], &t.topology_key).map(str::to_owned)
                            })
                            .collect();
                    }
                    let mut found = BTreeSet::new();
                    for ns in &t.namespaces {
                        let per_node = snap.matching(ns, sel);
                        for (i, n) in per_node.iter().enumerate() {
                            if *n > 0
                                && let Some(v) = label(&snap.nodes[i], &t.topology_key)
                            {
                                found.insert(v.to_owned());
                            }
                        }
                    }
                    found
                })
                .collect()
        };
        let mut forbidden = BTreeSet::new();
        for (existing, node) in snap.with_anti_affinity() {
            for t in existing.anti_affinity.iter().filter(|t| t.selects(pod)) {
                if let Some(v) = label(node, &t.topology_key) {
                    forbidden.insert((t.topology_key.clone(), v.to_owned()));
                }
            }
        }
        let unschedulable_taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        };
        PreFilter {
            tolerates_unschedulable: pod
                .tolerations
                .iter()
                .any(|t| t.tolerates(&unschedulable_taint)),
            spread,
            soft_spread,
            affinity: domains(&pod.affinity),
            anti_affinity: domains(&pod.anti_affinity),
            forbidden,
        }
    }
}

/// The first NoSchedule/NoExecute taint the pod does not tolerate.
fn untolerated<'a>(pod: &Pod, node: &'a Node, effects: &[&str]) -> impl Iterator<Item = &'a Taint> {
    node.taints.iter().filter(move |t| {
        effects.contains(&t.effect.as_str()) && !pod.tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

pub(crate) fn filter(
    snap: &Snapshot,
    pre: &PreFilter,
    pod: &Pod,
    i: usize,
) -> Result<(), Vec<String>> {
    let node = &snap.nodes[i];
    let fail = |r: &str| Err(vec![r.to_owned()]);
    if node.unschedulable && !pre.tolerates_unschedulable {
        return fail(UNSCHEDULABLE);
    }
    if pod.node_name.as_ref().is_some_and(|n| *n != node.name) {
        return fail(NODE_NAME);
    }
    if let Some(t) = untolerated(pod, node, &["NoSchedule", "NoExecute"]).next() {
        return fail(&format!(
            "node(s) had untolerated taint {{{}: {}}}",
            t.key, t.value
        ));
    }
    if !node_affinity_ok(pod, node) {
        return fail(AFFINITY);
    }
    // Most pods ask for no host port; skip reading the node's pods for them.
    let mut used_ports = snap.pods_on[i]
        .iter()
        .flat_map(|&p| &snap.pods[p].host_ports);
    if !pod.host_ports.is_empty()
        && used_ports.any(|u| pod.host_ports.iter().any(|w| w.conflicts(u)))
    {
        return fail(PORTS);
    }
    let (have, used, want) = (&node.allocatable, &snap.used[i], &pod.requests);
    let mut short = Vec::new();
    if used.pods + 1 > have.pods {
        short.push("Too many pods".to_owned());
    }
    for (name, w, u, h) in [
        ("cpu", want.cpu, used.cpu, have.cpu),
        ("memory", want.memory, used.memory, have.memory),
        (
            "ephemeral-storage",
            want.ephemeral,
            used.ephemeral,
            have.ephemeral,
        ),
    ] {
        if w > 0 && w > h - u {
            short.push(format!("Insufficient {name}"));
        }
    }
    if !short.is_empty() {
        return Err(short);
    }
    for (c, counts) in pod.spread.iter().filter(|c| c.hard).zip(&pre.spread) {
        let Some(here) = counts.at(i) else {
            return fail(SPREAD_LABEL);
        };
        if here + counts.self_match - counts.min > c.max_skew {
            return fail(SPREAD);
        }
    }
    if pre
        .forbidden
        .iter()
        .any(|(k, v)| label(node, k) == Some(v.as_str()))
    {
        return fail(EXISTING_ANTI);
    }
    // The first pod of a group that selects itself may go anywhere its terms'
    // topology keys exist, or no group could ever start.
    let none_anywhere = pre.affinity.iter().all(BTreeSet::is_empty);
    let selects_self = pod.affinity.iter().all(|t| t.selects(pod));
    for (t, domains) in pod.affinity.iter().zip(&pre.affinity) {
        let ok = match label(node, &t.topology_key) {
            None => false,
            Some(v) => domains.contains(v) || none_anywhere && selects_self,
        };
        if !ok {
            return fail(POD_AFFINITY);
        }
    }
    for (t, domains) in pod.anti_affinity.iter().zip(&pre.anti_affinity) {
        if label(node, &t.topology_key).is_some_and(|v| domains.contains(v)) {
            return fail(POD_ANTI);
        }
    }
    Ok(())
}

const MAX: i64 = 100;

/// Scales raw values to 0..=MAX; `reverse` makes the smallest raw value best.
fn normalize(raw: &[i64], reverse: bool) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|&r| match (reverse, max) {
            (false, 0) => 0,
            (false, m) => r * MAX / m,
            (true, _) if max == min => MAX,
            (true, _) => (max - r) * MAX / (max - min),
        })
        .collect()
}

fn fraction(requested: i128, allocatable: i128) -> f64 {
    if allocatable <= 0 {
        1.0
    } else {
        (requested as f64 / allocatable as f64).min(1.0)
    }
}

/// Weighted sum of the default score plugins for each feasible node index.
pub(crate) fn score(
    snap: &Snapshot,
    pre: &PreFilter,
    pod: &Pod,
    feasible: &[usize],
) -> Vec<(usize, i64)> {
    let mut total = vec![0i64; feasible.len()];
    let mut add = |weight: i64, scores: Vec<i64>| {
        for (t, s) in total.iter_mut().zip(scores) {
            *t += weight * s;
        }
    };
    let frac = |i: usize| {
        let (have, used) = (&snap.nodes[i].allocatable, &snap.score_used[i]);
        (
            fraction(used.cpu + pod.score_requests.cpu, have.cpu),
            fraction(used.memory + pod.score_requests.memory, have.memory),
        )
    };
    // NodeResourcesFit, LeastAllocated: free share after placing the pod.
    add(
        1,
        feasible
            .iter()
            .map(|&i| {
                let (c, m) = frac(i);
                (((1.0 - c) + (1.0 - m)) / 2.0 * MAX as f64) as i64
            })
            .collect(),
    );
    // NodeResourcesBalancedAllocation: cpu and memory shares close together.
    add(
        1,
        feasible
            .iter()
            .map(|&i| {
                let (c, m) = frac(i);
                ((1.0 - (c - m).abs() / 2.0) * MAX as f64) as i64
            })
            .collect(),
    );
    // ImageLocality: bytes of the pod's images already present, scaled by how
    // many nodes have them (a ubiquitous image is no reason to pick a node).
    // Each image's share of nodes is computed once per pod, not once per node.
    let n = snap.nodes.len().max(1) as f64;
    let has = |node: &Node, image: &str| {
        node.images
            .iter()
            .find(|(names, _)| names.iter().any(|x| normalize_image(x) == image))
            .map(|(_, size)| *size)
    };
    let wanted: Vec<(String, f64)> = pod
        .images
        .iter()
        .map(|img| {
            let img = normalize_image(img);
            let share = snap.nodes.iter().filter(|n| has(n, &img).is_some()).count() as f64 / n;
            (img, share)
        })
        .collect();
    let containers = pod.images.len().max(1) as f64;
    let (min_t, max_t) = (
        23.0 * 1024.0 * 1024.0,
        1000.0 * 1024.0 * 1024.0 * containers,
    );
    add(
        1,
        feasible
            .iter()
            .map(|&i| {
                let sum: f64 = wanted
                    .iter()
                    .filter_map(|(img, share)| Some(has(&snap.nodes[i], img)? as f64 * share))
                    .sum();
                let clamped = sum.clamp(min_t, max_t);
                ((clamped - min_t) / (max_t - min_t) * MAX as f64) as i64
            })
            .collect(),
    );
    // NodeAffinity, preferred terms.
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&i| {
            pod.preferred_nodes
                .iter()
                .filter(|(_, t)| t.matches(&snap.nodes[i]))
                .map(|(w, _)| *w)
                .sum()
        })
        .collect();
    add(2, normalize(&raw, false));
    // TaintToleration: fewer untolerated PreferNoSchedule taints is better.
    let raw: Vec<i64> = feasible
        .iter()
        .map(|&i| untolerated(pod, &snap.nodes[i], &["PreferNoSchedule"]).count() as i64)
        .collect();
    add(3, normalize(&raw, true));
    // PodTopologySpread, ScheduleAnyway: fewer matching pods in the node's domains.
    if !pre.soft_spread.is_empty() {
        let soft = pod.spread.iter().filter(|c| !c.hard);
        let soft: Vec<_> = soft.zip(&pre.soft_spread).collect();
        let raw: Vec<i64> = feasible
            .iter()
            .map(|&i| {
                soft.iter()
                    .map(|(_, counts)| counts.at(i).unwrap_or(0))
                    .sum()
            })
            .collect();
        add(2, normalize(&raw, true));
    }
    // InterPodAffinity, preferred terms: matching pods in the node's domain,
    // times the term's weight (anti-affinity subtracts), scaled from the least
    // to the most. (Existing pods' preferences toward this pod are not counted.)
    if !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty() {
        let mut raw = vec![0i64; feasible.len()];
        let terms = (pod.preferred_affinity.iter().map(|(w, t)| (*w, t)))
            .chain(pod.preferred_anti_affinity.iter().map(|(w, t)| (-*w, t)));
        for (weight, t) in terms {
            let per_domain = matching_per_domain(snap, t);
            let domains = snap.domains(&t.topology_key);
            for (r, &i) in raw.iter_mut().zip(feasible) {
                if let Some(d) = domains.of_node[i] {
                    *r += weight * per_domain[d as usize];
                }
            }
        }
        add(2, normalize_span(&raw));
    }
    feasible.iter().copied().zip(total).collect()
}

/// How many bound pods `t` selects in each domain of its topology key.
fn matching_per_domain(snap: &Snapshot, t: &crate::model::PodAffinityTerm) -> Vec<i64> {
    let domains = snap.domains(&t.topology_key);
    let mut per_domain = vec![0i64; domains.count];
    let Some(sel) = &t.selector else {
        return per_domain;
    };
    if t.all_namespaces {
        for (p, i) in snap.candidates(sel) {
            if t.selects(p)
                && let Some(d) = domains.of_node[i]
            {
                per_domain[d as usize] += 1;
            }
        }
        return per_domain;
    }
    for ns in &t.namespaces {
        let per_node = snap.matching(ns, sel);
        for (n, d) in per_node.iter().zip(&domains.of_node) {
            if let Some(d) = d {
                per_domain[*d as usize] += i64::from(*n);
            }
        }
    }
    per_domain
}

/// Scales raw values from their least (0) to their most (MAX); all equal: 0.
fn normalize_span(raw: &[i64]) -> Vec<i64> {
    let max = raw.iter().copied().max().unwrap_or(0);
    let min = raw.iter().copied().min().unwrap_or(0);
    raw.iter()
        .map(|&r| {
            if max == min {
                0
            } else {
                (r - min) * MAX / (max - min)
            }
        })
        .collect()
}

/// Docker's short names (`nginx`, `me/app:1`) in the full form nodes report
/// (`docker.io/library/nginx:latest`), so a pod's image matches `status.images`.
pub(crate) fn normalize_image(image: &str) -> String {
    let (first, _) = image.split_once('/').unwrap_or(("", image));
    let has_registry = first.contains(['.', ':']) || first == "localhost";
    let mut full = match (image.contains('/'), has_registry) {
        (false, _) => format!("docker.io/library/{image}"),
        (true, false) => format!("docker.io/{image}"),
        (true, true) => image.to_owned(),
    };
    let last = full.rsplit('/').next().unwrap_or_default();
    if !last.contains([':', '@']) {
        full.push_str(":latest");
    }
    full
}
