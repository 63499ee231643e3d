//! Properties of `schedule` over generated clusters. A small seeded generator
//! (proptest is not in the lock file): every case is reproducible from the
//! seed printed on failure.

use std::collections::BTreeMap;

use bosun_scheduler::{Decision, Node, Pod, Snapshot, evaluate, schedule};
use serde_json::{Value, json};

/// splitmix64: tiny, and good enough to vary cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

const CASES: u64 = 400;

fn gen_node(r: &mut Rng, i: usize) -> Value {
    let name = format!("n{i}");
    let mut n = json!({
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name,
            "zone": format!("z{}", r.below(3)),
        }},
        "spec": {},
        "status": {
            "allocatable": {
                "cpu": format!("{}m", 500 + r.below(8) * 500),
                "memory": format!("{}Mi", 512 + r.below(8) * 512),
                "pods": format!("{}", 1 + r.below(6)),
            },
            "conditions": [{"type": "Ready", "status": if r.chance(90) { "True" } else { "False" }}],
        },
    });
    if r.chance(10) {
        n["spec"]["unschedulable"] = json!(true);
    }
    if r.chance(25) {
        let effect = ["NoSchedule", "NoExecute", "PreferNoSchedule"][r.below(3) as usize];
        n["spec"]["taints"] =
            json!([{"key": "k", "value": format!("v{}", r.below(2)), "effect": effect}]);
    }
    if r.chance(30) {
        n["status"]["images"] = json!([{"names": ["app:1"], "sizeBytes": 300_000_000}]);
    }
    n
}

fn gen_pod(r: &mut Rng, i: usize) -> Value {
    let app = format!("a{}", r.below(2));
    let mut c = json!({"name": "c", "image": "app:1", "resources": {"requests": {
        "cpu": format!("{}m", r.below(1500)),
        "memory": format!("{}Mi", r.below(1500)),
    }}});
    if r.chance(20) {
        c["ports"] = json!([{"containerPort": 80, "hostPort": 8000 + r.below(2)}]);
    }
    let mut p = json!({
        "metadata": {"name": format!("p{i}"), "namespace": "default", "labels": {"app": app}},
        "spec": {"containers": [c]},
    });
    if r.chance(20) {
        p["spec"]["nodeSelector"] = json!({"zone": format!("z{}", r.below(3))});
    }
    if r.chance(30) {
        p["spec"]["tolerations"] =
            json!([{"key": "k", "operator": "Equal", "value": format!("v{}", r.below(2))}]);
    }
    let selector = json!({"matchLabels": {"app": app}});
    if r.chance(15) {
        let key = if r.chance(50) {
            "zone"
        } else {
            "kubernetes.io/hostname"
        };
        p["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            [{"labelSelector": selector, "topologyKey": key}]}});
    }
    if r.chance(15) {
        let when = if r.chance(50) {
            "DoNotSchedule"
        } else {
            "ScheduleAnyway"
        };
        p["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1 + r.below(2),
            "topologyKey": "zone", "whenUnsatisfiable": when, "labelSelector": selector}]);
    }
    p
}

struct Case {
    nodes: Vec<Value>,
    bound: Vec<Value>,
    pod: Value,
}

fn gen_case(seed: u64) -> Case {
    let mut r = Rng(seed);
    let nodes: Vec<Value> = (0..1 + r.below(6) as usize)
        .map(|i| gen_node(&mut r, i))
        .collect();
    let mut bound = Vec::new();
    for i in 0..r.below(8) as usize {
        let mut p = gen_pod(&mut r, 100 + i);
        p["spec"]["nodeName"] = json!(format!("n{}", r.below(nodes.len() as u64)));
        bound.push(p);
    }
    let pod = gen_pod(&mut r, 0);
    Case { nodes, bound, pod }
}

fn snapshot(nodes: &[Value], pods: &[Value]) -> Snapshot {
    Snapshot::new(
        nodes.iter().map(|n| Node::parse(n).unwrap()).collect(),
        pods.iter().map(|p| Pod::parse(p).unwrap()).collect(),
    )
}

/// The checks a reader can verify from the JSON alone, written apart from the plugins.
fn plainly_fits(snap: &Snapshot, node_json: &Value, pod_json: &Value) -> Result<(), String> {
    let node = Node::parse(node_json).unwrap();
    let have = node.allocatable();
    let used = snap.requested(node.name()).unwrap();
    let req = &pod_json["spec"]["containers"][0]["resources"]["requests"];
    let milli = |q: &Value| bosun_scheduler::parse_milli(q.as_str().unwrap()).unwrap();
    if used.cpu + milli(&req["cpu"]) > have.cpu {
        return Err("cpu over allocatable".into());
    }
    if used.memory + milli(&req["memory"]) > have.memory {
        return Err("memory over allocatable".into());
    }
    if used.pods + 1 > have.pods {
        return Err("pods over allocatable".into());
    }
    if node_json["spec"]["unschedulable"] == json!(true) {
        return Err("unschedulable".into());
    }
    if node_json["status"]["conditions"][0]["status"] != json!("True") {
        return Err("not ready".into());
    }
    if let Some(zone) = pod_json["spec"]["nodeSelector"]["zone"].as_str()
        && node_json["metadata"]["labels"]["zone"] != json!(zone)
    {
        return Err("selector".into());
    }
    let taint = &node_json["spec"]["taints"][0];
    if matches!(taint["effect"].as_str(), Some("NoSchedule" | "NoExecute"))
        && pod_json["spec"]["tolerations"][0]["value"] != taint["value"]
    {
        return Err("taint".into());
    }
    Ok(())
}

#[test]
fn a_bound_node_passes_every_filter_and_has_the_top_score() {
    for seed in 0..CASES {
        let case = gen_case(seed);
        let snap = snapshot(&case.nodes, &case.bound);
        let pod = Pod::parse(&case.pod).unwrap();
        let eval = evaluate(&snap, &pod);
        if let Decision::Bind(name) = schedule(&snap, &pod, seed) {
            let node = case
                .nodes
                .iter()
                .find(|n| n["metadata"]["name"] == json!(name))
                .unwrap();
            plainly_fits(&snap, node, &case.pod)
                .unwrap_or_else(|e| panic!("seed {seed}: {name}: {e}"));
            assert!(!eval.reasons.contains_key(&name), "seed {seed}");
            let top = eval.scores.values().max().unwrap();
            assert_eq!(eval.scores[&name], *top, "seed {seed}: {:?}", eval.scores);
        }
    }
}

#[test]
fn every_node_is_feasible_or_has_a_reason() {
    let mut unschedulable = 0;
    for seed in 0..CASES {
        let case = gen_case(seed);
        let snap = snapshot(&case.nodes, &case.bound);
        let pod = Pod::parse(&case.pod).unwrap();
        let eval = evaluate(&snap, &pod);
        assert_eq!(
            eval.scores.len() + eval.reasons.len(),
            case.nodes.len(),
            "seed {seed}"
        );
        assert!(eval.reasons.values().all(|r| !r.is_empty()), "seed {seed}");
        if let Decision::Unschedulable(u) = schedule(&snap, &pod, seed) {
            unschedulable += 1;
            assert_eq!(u.reasons.len(), case.nodes.len(), "seed {seed}");
            let msg = u.to_string();
            let prefix = format!("0/{} nodes are available: ", case.nodes.len());
            let counted: usize = msg
                .strip_prefix(&prefix)
                .unwrap()
                .split(", ")
                .map(|part| part.split(' ').next().unwrap().parse::<usize>().unwrap())
                .sum();
            let reasons: usize = u.reasons.values().map(Vec::len).sum();
            assert_eq!(counted, reasons, "seed {seed}: {msg}");
        }
    }
    // The generator must exercise both outcomes, or this test proves little.
    assert!(
        unschedulable > CASES / 10 && unschedulable < CASES * 9 / 10,
        "{unschedulable}"
    );
}

#[test]
fn a_fitting_node_makes_an_unschedulable_pod_schedulable() {
    let mut checked = 0;
    for seed in 0..CASES {
        let case = gen_case(seed);
        let pod = Pod::parse(&case.pod).unwrap();
        if !matches!(
            schedule(&snapshot(&case.nodes, &case.bound), &pod, seed),
            Decision::Unschedulable(_)
        ) {
            continue;
        }
        // A fresh zone satisfies any spread or anti-affinity (the pod's or a bound
        // pod's), unless the pod's selector pins a zone.
        let pinned = case.pod["spec"]["nodeSelector"]["zone"].as_str();
        let zone_rules = case.pod["spec"]["affinity"]
            .to_string()
            .contains("\"zone\"")
            || case
                .bound
                .iter()
                .any(|b| b["spec"]["affinity"].to_string().contains("\"zone\""))
            || case.pod["spec"]["topologySpreadConstraints"]
                .to_string()
                .contains("DoNotSchedule");
        if pinned.is_some() && zone_rules {
            continue;
        }
        let mut nodes = case.nodes.clone();
        nodes.push(json!({
            "metadata": {"name": "big", "labels": {"kubernetes.io/hostname": "big",
                "zone": pinned.unwrap_or("fresh")}},
            "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]},
        }));
        let d = schedule(&snapshot(&nodes, &case.bound), &pod, seed);
        assert_eq!(d, Decision::Bind("big".into()), "seed {seed}");
        checked += 1;
    }
    assert!(checked > CASES / 10, "{checked}");
}

#[test]
fn scheduling_one_by_one_never_overcommits() {
    for seed in 0..CASES / 4 {
        let mut r = Rng(seed ^ 0x5eed);
        let nodes: Vec<Value> = (0..1 + r.below(5) as usize)
            .map(|i| gen_node(&mut r, i))
            .collect();
        let mut snap = snapshot(&nodes, &[]);
        let mut placed: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for i in 0..30 {
            let json = gen_pod(&mut r, i);
            let mut pod = Pod::parse(&json).unwrap();
            if let Decision::Bind(name) = schedule(&snap, &pod, r.next()) {
                pod.bind_to(&name);
                snap.assume(pod);
                placed.entry(name).or_default().push(json);
            }
        }
        for node in snap.nodes() {
            let have = node.allocatable();
            let used = snap.requested(node.name()).unwrap();
            assert!(
                used.cpu <= have.cpu && used.memory <= have.memory && used.pods <= have.pods,
                "seed {seed}: {} {used:?} > {have:?}",
                node.name()
            );
            // Host ports stay unique per node.
            let ports: Vec<u64> = placed
                .get(node.name())
                .into_iter()
                .flatten()
                .filter_map(|p| p["spec"]["containers"][0]["ports"][0]["hostPort"].as_u64())
                .collect();
            let mut unique = ports.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(
                unique.len(),
                ports.len(),
                "seed {seed}: ports on {}",
                node.name()
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_decision() {
    for seed in 0..CASES / 4 {
        let case = gen_case(seed);
        let pod = Pod::parse(&case.pod).unwrap();
        let a = schedule(&snapshot(&case.nodes, &case.bound), &pod, seed);
        let b = schedule(&snapshot(&case.nodes, &case.bound), &pod, seed);
        assert_eq!(a, b, "seed {seed}");
    }
}
