use super::*;
use crate::workload::Phase;

fn ds(spec_extra: Value) -> DaemonSet {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    DaemonSet::of(&json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-1", "generation": 2},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}}, "spec": spec}},
        "status": {},
    }))
    .unwrap()
}

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        taints: taints
            .iter()
            .map(|(k, e)| Taint {
                key: (*k).into(),
                value: String::new(),
                effect: (*e).into(),
            })
            .collect(),
    }
}

fn pod(d: &DaemonSet, name: &str, node: &str, hash: &str, ready: bool) -> Pod {
    Pod {
        uid: format!("uid-{name}"),
        name: name.into(),
        namespace: "default".into(),
        owner: d.owner.uid.clone(),
        labels: BTreeMap::from([(REVISION_HASH.to_owned(), hash.to_owned())]),
        phase: if ready {
            Phase::Running
        } else {
            Phase::Pending
        },
        ready,
        node: Some(node.into()),
        deleting: false,
        restarts: 0,
        finished_at: None,
    }
}

fn creates(actions: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Pod(PodWrite::Create { pod, .. }) => Some(
                Pod::of("DaemonSet", &with_uid(pod, "x"))
                    .and_then(|p| p.node)
                    .unwrap(),
            ),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn deletes(actions: &[Action]) -> Vec<String> {
    let mut v: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Pod(PodWrite::Delete { pod, .. }) => Some(pod.name.clone()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

fn with_uid(pod: &Value, uid: &str) -> Value {
    let mut p = pod.clone();
    p["metadata"]["uid"] = uid.into();
    p["metadata"]["name"] =
        format!("{}{uid}", p["metadata"]["generateName"].as_str().unwrap()).into();
    p
}

#[test]
fn one_pod_per_eligible_node_pinned_by_affinity() {
    let d = ds(json!({"nodeSelector": {"disk": "ssd"}}));
    let nodes = [
        node("a", &[("disk", "ssd")], &[]),
        node("b", &[("disk", "hdd")], &[]),
        node("c", &[("disk", "ssd")], &[("dedicated", "NoSchedule")]),
        node(
            "d",
            &[("disk", "ssd")],
            &[("node.kubernetes.io/unschedulable", "NoSchedule")],
        ),
    ];
    let actions = plan(std::slice::from_ref(&d), &nodes, &[]);
    assert_eq!(creates(&actions), ["a", "d"]);
    let Some(Action::Pod(PodWrite::Create { pod, .. })) = actions.first() else {
        panic!("{actions:?}")
    };
    assert_eq!(pod["metadata"]["generateName"], "agent-");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["metadata"]["labels"]["app"], "agent");
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/not-ready"
                && t["effect"] == "NoExecute"
                && t["operator"] == "Exists")
    );
    assert!(pod["spec"]["nodeName"].is_null(), "the scheduler binds it");
    let status = actions.iter().find_map(|a| match a {
        Action::Status { patch, .. } => Some(patch.clone()),
        _ => None,
    });
    let status = status.unwrap();
    assert_eq!(status["desiredNumberScheduled"], 2);
    assert_eq!(status["currentNumberScheduled"], 0);
    assert_eq!(status["observedGeneration"], 2);
}

#[test]
fn template_affinity_terms_each_get_the_node() {
    let d = ds(
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
        {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
    );
    assert_eq!(
        d.should_run(&node("a", &[("zone", "z1")], &[])),
        (true, true)
    );
    assert_eq!(
        d.should_run(&node("b", &[("zone", "z2")], &[])),
        (false, false)
    );
    let pod = d.pod_for("a");
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(term["matchExpressions"][0]["key"], "zone");
    assert_eq!(term["matchFields"][0]["values"][0], "a");
}

#[test]
fn taints_noschedule_keeps_running_pods_noexecute_evicts() {
    let d = ds(json!({}));
    assert_eq!(
        d.should_run(&node("a", &[], &[("x", "NoSchedule")])),
        (false, true)
    );
    assert_eq!(
        d.should_run(&node("a", &[], &[("x", "NoExecute")])),
        (false, false)
    );
    // The default tolerations cover a node that is not ready or unreachable.
    let gone = node("a", &[], &[("node.kubernetes.io/unreachable", "NoExecute")]);
    assert_eq!(d.should_run(&gone), (true, true));
    let tolerant = ds(json!({"tolerations": [{"key": "x", "operator": "Exists"}]}));
    assert_eq!(
        tolerant.should_run(&node("a", &[], &[("x", "NoExecute")])),
        (true, true)
    );
}

#[test]
fn nodes_leaving_extra_and_finished_pods_are_cleaned_up() {
    let d = ds(json!({}));
    let h = d.hash.clone();
    let mut done = pod(&d, "agent-done", "a", &h, false);
    done.phase = Phase::Failed;
    let pods = [
        pod(&d, "agent-1", "a", &h, true),
        pod(&d, "agent-2", "a", &h, false),
        pod(&d, "agent-3", "gone", &h, true),
        done,
    ];
    let actions = plan(
        std::slice::from_ref(&d),
        &[node("a", &[], &[]), node("b", &[], &[])],
        &pods,
    );
    assert_eq!(deletes(&actions), ["agent-2", "agent-3", "agent-done"]);
    assert_eq!(creates(&actions), ["b"]);
}

#[test]
fn rolling_update_respects_max_unavailable() {
    let d = ds(json!({}));
    let nodes: Vec<Node> = (0..4).map(|i| node(&format!("n{i}"), &[], &[])).collect();
    let old: Vec<Pod> = (0..4)
        .map(|i| pod(&d, &format!("agent-{i}"), &format!("n{i}"), "old", true))
        .collect();
    // maxUnavailable 1 by default: one old pod at a time.
    assert_eq!(
        deletes(&plan(std::slice::from_ref(&d), &nodes, &old)),
        ["agent-0"]
    );
    // One node already without an available pod: none more.
    let mut busy = old.clone();
    busy[0] = pod(&d, "agent-new", "n0", &d.hash, false);
    assert!(deletes(&plan(std::slice::from_ref(&d), &nodes, &busy)).is_empty());
    // OnDelete leaves old pods alone.
    let mut on_delete = d.clone();
    on_delete.max_unavailable = None;
    assert!(deletes(&plan(&[on_delete], &nodes, &old)).is_empty());
    let mut wide = d.clone();
    wide.max_unavailable = Some(IntOrPercent::Percent(50));
    assert_eq!(deletes(&plan(&[wide], &nodes, &old)).len(), 2);
}

/// A small deterministic generator (xorshift), as in gc/tests.rs: every
/// failure names its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random nodes (labels, taints, some leaving and joining), random pods
/// (duplicates, stale, finished, on unknown nodes), the template changing:
/// plan, apply the writes (binding each new pod to its node and making it
/// ready), repeat; the plan converges to exactly one updated pod on each
/// eligible node and none elsewhere, and a rolling update never has more
/// than maxUnavailable eligible nodes without an available pod beyond those
/// that had none to begin with.
#[test]
fn plan_converges_to_one_pod_per_eligible_node() {
    for seed in 1..300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut d = if rng.below(2) == 0 {
            ds(json!({"nodeSelector": {"role": "worker"}}))
        } else {
            ds(
                json!({"tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
            )
        };
        let mut nodes: Vec<Node> = (0..1 + rng.below(8))
            .map(|i| {
                let role = ["worker", "infra"][rng.below(2)];
                let taint = ["gpu", "dedicated", "node.kubernetes.io/not-ready"][rng.below(3)];
                let effect = ["NoSchedule", "NoExecute"][rng.below(2)];
                if rng.below(3) == 0 {
                    node(&format!("n{i}"), &[("role", role)], &[(taint, effect)])
                } else {
                    node(&format!("n{i}"), &[("role", role)], &[])
                }
            })
            .collect();
        let mut pods: Vec<Pod> = Vec::new();
        let mut next = 0;
        for _ in 0..rng.below(10) {
            let n = format!("n{}", rng.below(10));
            let mut p = pod(
                &d,
                &format!("p{next}"),
                &n,
                ["old", "x"][rng.below(2)],
                rng.below(2) == 0,
            );
            if rng.below(5) == 0 {
                p.phase = Phase::Failed;
            }
            pods.push(p);
            next += 1;
        }
        if rng.below(2) == 0 {
            d.max_unavailable = Some(IntOrPercent::Int(1 + rng.below(2)));
        }
        for round in 0..30 {
            if round == 3 && rng.below(2) == 0 {
                nodes.pop();
                nodes.push(node("joined", &[("role", "worker")], &[]));
            }
            let eligible: Vec<&Node> = nodes.iter().filter(|n| d.should_run(n).0).collect();
            let unavailable_before = eligible
                .iter()
                .filter(|n| {
                    !pods
                        .iter()
                        .any(|p| p.node.as_deref() == Some(&n.name) && p.running_ready())
                })
                .count();
            let actions = plan(std::slice::from_ref(&d), &nodes, &pods);
            let writes = actions
                .iter()
                .filter(|a| matches!(a, Action::Pod(_)))
                .count();
            for a in &actions {
                match a {
                    Action::Pod(PodWrite::Delete { pod, .. }) => pods.retain(|p| p.uid != pod.uid),
                    Action::Pod(PodWrite::Create { pod, .. }) => {
                        let made =
                            Pod::of("DaemonSet", &with_uid(pod, &format!("{next}"))).unwrap();
                        next += 1;
                        assert!(
                            nodes
                                .iter()
                                .any(|n| Some(&n.name) == made.node.as_ref() && d.should_run(n).0),
                            "seed {seed}: a pod for an ineligible node"
                        );
                        pods.push(made);
                    }
                    Action::Status { patch, .. } => {
                        d.status = {
                            let mut s = d.status.clone();
                            if let (Some(s), Some(p)) = (s.as_object_mut(), patch.as_object()) {
                                s.extend(p.clone());
                            }
                            s
                        }
                    }
                }
            }
            if let Some(max) = d.max_unavailable {
                let unavailable_after = eligible
                    .iter()
                    .filter(|n| {
                        !pods
                            .iter()
                            .any(|p| p.node.as_deref() == Some(&n.name) && p.running_ready())
                    })
                    .count();
                assert!(
                    unavailable_after <= unavailable_before.max(max.scaled(eligible.len())),
                    "seed {seed} round {round}: {unavailable_after} unavailable"
                );
            }
            // Converged: the plan saw everything ready and did nothing.
            if writes == 0 && round > 4 && pods.iter().all(|p| p.running_ready()) {
                break;
            }
            // The node agent: some new pods start.
            for p in pods.iter_mut().filter(|p| p.phase == Phase::Pending) {
                if rng.below(2) == 0 {
                    p.phase = Phase::Running;
                    p.ready = true;
                }
            }
        }
        for n in &nodes {
            let here: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.node.as_deref() == Some(&n.name))
                .collect();
            let (run, keep) = d.should_run(n);
            if run {
                assert_eq!(here.len(), 1, "seed {seed}: node {} has {here:?}", n.name);
                assert_eq!(here[0].hash(), Some(d.hash.as_str()), "seed {seed}");
            } else if !keep {
                assert!(here.is_empty(), "seed {seed}: node {} has {here:?}", n.name);
            }
        }
        assert!(
            pods.iter()
                .all(|p| nodes.iter().any(|n| Some(&n.name) == p.node.as_ref())),
            "seed {seed}: a pod on a node that left"
        );
        let eligible = nodes.iter().filter(|n| d.should_run(n).0).count();
        assert_eq!(d.status["desiredNumberScheduled"], eligible, "seed {seed}");
    }
}
