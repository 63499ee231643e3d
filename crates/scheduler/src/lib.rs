//! The scheduler's pure core: [`schedule`] picks a node for a pod from a
//! [`Snapshot`] of nodes and bound pods, with Kubernetes' default filter and
//! score plugins, and explains a failure in kube-scheduler's words. No IO and
//! no clock. [`run`] is the loop around it: watches, the queue with back-off,
//! bindings, conditions and events.

mod model;
mod plugins;
mod quantity;
mod queue;
mod run;

use std::cell::{Ref, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use bosun_api::ErrorKind;

pub use model::{Node, Pod, Resources};
pub use quantity::parse_milli;
pub use run::{Options, run};

/// A Pod or Node field the scheduler could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("invalid quantity {input:?}: {reason}")]
    Quantity { input: String, reason: &'static str },
    #[error("{path}: {reason}")]
    Field { path: String, reason: &'static str },
}

impl ParseError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// The nodes and the pods bound to them, as the scheduler sees them at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub(crate) nodes: Vec<Node>,
    pub(crate) pods: Vec<Pod>,
    /// Per node (by index): requested resources, scoring requests, pod indexes.
    pub(crate) used: Vec<Resources>,
    pub(crate) score_used: Vec<Resources>,
    pub(crate) pods_on: Vec<Vec<usize>>,
    /// The node index of each pod in `pods`.
    pod_node: Vec<usize>,
    /// Pods by one label (key, value): selectors with `matchLabels` read only these.
    by_label: BTreeMap<(String, String), Vec<usize>>,
    /// Pods with required anti-affinity, which every new pod must check.
    anti: Vec<usize>,
    index: BTreeMap<String, usize>,
    /// Per (namespace, selector) asked about: how many bound pods it selects on
    /// each node. A workload's pods all ask the same, so spread and affinity
    /// read these instead of every matching pod; `assume` keeps them current.
    matching: RefCell<HashMap<(String, model::Selector), Vec<u32>>>,
    /// Per topology key asked about: each node's domain.
    domains: RefCell<HashMap<String, Arc<Domains>>>,
}

/// The values one topology key takes over the nodes, numbered, and each
/// node's number (`None`: the node lacks the label), so that counting pods per
/// domain is indexing, not hashing strings.
#[derive(Debug, Default)]
pub(crate) struct Domains {
    pub(crate) of_node: Vec<Option<u32>>,
    pub(crate) count: usize,
}

/// How many selectors' counts a snapshot remembers before starting over.
const REMEMBERED_SELECTORS: usize = 256;

impl Snapshot {
    /// Pods that are not bound, or bound to a node not in `nodes`, hold no resources;
    /// finished pods (Succeeded, Failed) are left out.
    pub fn new(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let n = nodes.len();
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let mut snap = Snapshot {
            nodes,
            pods: Vec::new(),
            used: vec![Resources::default(); n],
            score_used: vec![Resources::default(); n],
            pods_on: vec![Vec::new(); n],
            pod_node: Vec::new(),
            by_label: BTreeMap::new(),
            anti: Vec::new(),
            index,
            matching: RefCell::default(),
            domains: RefCell::default(),
        };
        for pod in pods {
            snap.assume(pod);
        }
        snap
    }

    /// Adds a bound pod, as the scheduling loop does after a binding succeeds.
    pub fn assume(&mut self, pod: Pod) {
        if pod.terminal {
            return;
        }
        let Some(&i) = pod.node_name.as_ref().and_then(|n| self.index.get(n)) else {
            return;
        };
        self.used[i].add(&pod.requests);
        self.score_used[i].add(&pod.score_requests);
        let at = self.pods.len();
        self.pods_on[i].push(at);
        self.pod_node.push(i);
        for (k, v) in &pod.labels {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .push(at);
        }
        if !pod.anti_affinity.is_empty() {
            self.anti.push(at);
        }
        for ((ns, sel), counts) in self.matching.get_mut().iter_mut() {
            if *ns == pod.namespace && sel.matches(&pod.labels) {
                counts[i] += 1;
            }
        }
        self.pods.push(pod);
    }

    /// Each node's domain for the topology `key`.
    pub(crate) fn domains(&self, key: &str) -> Arc<Domains> {
        if let Some(d) = self.domains.borrow().get(key) {
            return d.clone();
        }
        let mut numbers: HashMap<&str, u32> = HashMap::new();
        let of_node = (self.nodes.iter())
            .map(|n| {
                let v = n.labels.get(key)?;
                let next = numbers.len() as u32;
                Some(*numbers.entry(v).or_insert(next))
            })
            .collect();
        let d = Arc::new(Domains {
            of_node,
            count: numbers.len(),
        });
        // Nodes never change within a snapshot, so neither do these.
        self.domains.borrow_mut().insert(key.to_owned(), d.clone());
        d
    }

    /// How many bound pods in `namespace` that `sel` selects are on each node
    /// (by index).
    pub(crate) fn matching(&self, namespace: &str, sel: &model::Selector) -> Ref<'_, Vec<u32>> {
        let key = (namespace.to_owned(), sel.clone());
        if !self.matching.borrow().contains_key(&key) {
            let mut counts = vec![0u32; self.nodes.len()];
            for (p, i) in self.candidates(sel) {
                if p.namespace == namespace && sel.matches(&p.labels) {
                    counts[i] += 1;
                }
            }
            let mut memo = self.matching.borrow_mut();
            if memo.len() >= REMEMBERED_SELECTORS {
                memo.clear();
            }
            memo.insert(key.clone(), counts);
        }
        Ref::map(self.matching.borrow(), |m| &m[&key])
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// What the bound pods request of `node`, if it is in the snapshot.
    pub fn requested(&self, node: &str) -> Option<Resources> {
        self.index.get(node).map(|&i| self.used[i])
    }

    /// Bound pods that `sel` may match, with their node index: with `matchLabels`,
    /// only the pods carrying its first label; otherwise all. The caller still matches.
    pub(crate) fn candidates<'a>(
        &'a self,
        sel: &model::Selector,
    ) -> Box<dyn Iterator<Item = (&'a Pod, usize)> + 'a> {
        match sel.labels.iter().next() {
            Some((k, v)) => Box::new(
                self.by_label
                    .get(&(k.clone(), v.clone()))
                    .into_iter()
                    .flatten()
                    .map(|&p| (&self.pods[p], self.pod_node[p])),
            ),
            None => Box::new(self.pods.iter().zip(self.pod_node.iter().copied())),
        }
    }

    /// Bound pods with required anti-affinity, with their node.
    pub(crate) fn with_anti_affinity(&self) -> impl Iterator<Item = (&Pod, &Node)> {
        self.anti
            .iter()
            .map(|&p| (&self.pods[p], &self.nodes[self.pod_node[p]]))
    }
}

/// Where the pod goes, or why it goes nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind(String),
    Unschedulable(Unschedulable),
}

/// Every node's reasons for refusing the pod, from the first filter that refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    pub nodes: usize,
    pub reasons: BTreeMap<String, Vec<String>>,
}

impl fmt::Display for Unschedulable {
    /// kube-scheduler's message: "0/5 nodes are available: 3 Insufficient cpu, 2 …."
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            return f.write_str("no nodes available to schedule pods");
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in self.reasons.values().flatten() {
            *counts.entry(r).or_default() += 1;
        }
        let mut parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

/// Every feasible node's total score and every other node's reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub scores: BTreeMap<String, i64>,
    pub reasons: BTreeMap<String, Vec<String>>,
}

/// Node indexes with their scores, and the others with their reasons.
type Outcome = (Vec<(usize, i64)>, Vec<(usize, Vec<String>)>);

/// How many feasible nodes are enough to choose from among `n`:
/// kube-scheduler's adaptive `percentageOfNodesToScore` (all of a small
/// cluster; 50 % less 1 % per 125 nodes, at least 5 % and 100 nodes), so a
/// decision in a big cluster does not read every node.
fn enough(n: usize) -> usize {
    if n < 100 {
        return n;
    }
    let percent = 50usize.saturating_sub(n / 125).max(5);
    (n * percent / 100).max(100)
}

/// Filters nodes from `start` on, wrapping, until `enough` pass (or all
/// were tried, which an unschedulable pod always needs for its message), and
/// scores those.
fn filter_and_score(snapshot: &Snapshot, pod: &Pod, start: usize, enough: usize) -> Outcome {
    let pre = plugins::PreFilter::new(snapshot, pod);
    let n = snapshot.nodes.len();
    let mut feasible = Vec::new();
    let mut refused = Vec::new();
    for i in (start..n).chain(0..start.min(n)) {
        match plugins::filter(snapshot, &pre, pod, i) {
            Ok(()) => feasible.push(i),
            Err(why) => refused.push((i, why)),
        }
        if feasible.len() >= enough {
            break;
        }
    }
    (plugins::score(snapshot, &pre, pod, &feasible), refused)
}

/// Runs the filters on every node and scores the nodes that pass.
pub fn evaluate(snapshot: &Snapshot, pod: &Pod) -> Evaluation {
    let n = snapshot.nodes.len();
    let (scores, refused) = filter_and_score(snapshot, pod, 0, n);
    let name = |i: usize| snapshot.nodes[i].name.clone();
    Evaluation {
        scores: scores.into_iter().map(|(i, s)| (name(i), s)).collect(),
        reasons: refused.into_iter().map(|(i, r)| (name(i), r)).collect(),
    }
}

/// Picks the best-scoring node. In a cluster of 100 nodes or more only
/// enough feasible nodes are scored, found from a place `seed` picks (as
/// kube-scheduler does); `seed` also chooses among equal scores (ordered by
/// name), so a caller passing the same seed gets the same answer.
pub fn schedule(snapshot: &Snapshot, pod: &Pod, seed: u64) -> Decision {
    let n = snapshot.nodes.len();
    let start = (seed % n.max(1) as u64) as usize;
    let (scores, refused) = filter_and_score(snapshot, pod, start, enough(n));
    let Some(best) = scores.iter().map(|(_, s)| *s).max() else {
        let name = |i: usize| snapshot.nodes[i].name.clone();
        return Decision::Unschedulable(Unschedulable {
            nodes: snapshot.nodes.len(),
            reasons: refused.into_iter().map(|(i, r)| (name(i), r)).collect(),
        });
    };
    let mut top: Vec<&str> = scores
        .iter()
        .filter(|(_, s)| *s == best)
        .map(|(i, _)| snapshot.nodes[*i].name.as_str())
        .collect();
    top.sort_unstable();
    Decision::Bind(top[(seed % top.len() as u64) as usize].to_owned())
}

#[cfg(test)]
mod tests;
