//! One test or more per plugin, each by outcome: where the pod goes or what
//! the message says.

use serde_json::{Value, json};

use crate::{Decision, Node, Pod, Snapshot, evaluate, schedule};

fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "web:1",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
    })
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut v;
    for k in &path[..path.len() - 1] {
        at = at.as_object_mut().unwrap().entry(*k).or_insert(json!({}));
    }
    at[path[path.len() - 1]] = value;
    v
}

fn bound(v: Value, node: &str) -> Value {
    with(v, &["spec", "nodeName"], json!(node))
}

fn snap(nodes: &[Value], pods: &[Value]) -> Snapshot {
    Snapshot::new(
        nodes.iter().map(|n| Node::parse(n).unwrap()).collect(),
        pods.iter().map(|p| Pod::parse(p).unwrap()).collect(),
    )
}

fn decide(nodes: &[Value], pods: &[Value], p: Value) -> Decision {
    schedule(&snap(nodes, pods), &Pod::parse(&p).unwrap(), 0)
}

fn message(d: Decision) -> String {
    match d {
        Decision::Unschedulable(u) => u.to_string(),
        Decision::Bind(n) => panic!("bound to {n}"),
    }
}

fn bind(d: Decision) -> String {
    match d {
        Decision::Bind(n) => n,
        Decision::Unschedulable(u) => panic!("{u}"),
    }
}

#[test]
fn message_counts_and_sorts_like_kube_scheduler() {
    let taint = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    let nodes = [
        node("a", "1", "1Gi"),
        node("b", "1", "1Gi"),
        node("c", "1", "1Gi"),
        with(node("d", "8", "8Gi"), &["spec", "taints"], taint.clone()),
        with(node("e", "8", "8Gi"), &["spec", "taints"], taint),
    ];
    assert_eq!(
        message(decide(&nodes, &[], pod("p", "2", "100Mi"))),
        "0/5 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}, 3 Insufficient cpu."
    );
    assert_eq!(
        message(decide(&[], &[], pod("p", "1", "1Mi"))),
        "no nodes available to schedule pods"
    );
}

#[test]
fn resources_count_bound_pods_and_report_each_shortage() {
    let nodes = [node("a", "2", "1Gi")];
    let running = [bound(pod("x", "1500m", "512Mi"), "a")];
    assert_eq!(
        message(decide(&nodes, &running, pod("p", "1", "600Mi"))),
        "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
    );
    assert_eq!(
        bind(decide(&nodes, &running, pod("p", "500m", "512Mi"))),
        "a"
    );
    // Finished pods hold nothing.
    let done = [with(
        running[0].clone(),
        &["status", "phase"],
        json!("Succeeded"),
    )];
    assert_eq!(bind(decide(&nodes, &done, pod("p", "2", "1Gi"))), "a");
    let full = with(
        node("a", "8", "8Gi"),
        &["status", "allocatable", "pods"],
        json!("1"),
    );
    assert_eq!(
        message(decide(
            &[full],
            &[bound(pod("x", "1", "1Mi"), "a")],
            pod("p", "1", "1Mi")
        )),
        "0/1 nodes are available: 1 Too many pods."
    );
}

#[test]
fn init_containers_need_their_largest_not_their_sum() {
    let p = with(
        pod("p", "500m", "1Mi"),
        &["spec", "initContainers"],
        json!([{"name": "i", "resources": {"requests": {"cpu": "1500m"}}},
               {"name": "j", "resources": {"requests": {"cpu": "1"}}}]),
    );
    assert_eq!(Pod::parse(&p).unwrap().requests.cpu, 1500);
}

#[test]
fn unschedulable_and_not_ready_nodes() {
    let cordoned = with(
        node("a", "4", "4Gi"),
        &["spec", "unschedulable"],
        json!(true),
    );
    let not_ready = with(
        node("b", "4", "4Gi"),
        &["status", "conditions"],
        json!([{"type": "Ready", "status": "False"}]),
    );
    let unknown = with(node("c", "4", "4Gi"), &["status", "conditions"], json!([]));
    assert_eq!(
        message(decide(
            &[cordoned.clone(), not_ready, unknown],
            &[],
            pod("p", "1", "1Mi")
        )),
        "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
         1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 1 node(s) were unschedulable."
    );
    let tolerant = with(
        pod("p", "1", "1Mi"),
        &["spec", "tolerations"],
        json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
    );
    assert_eq!(bind(decide(&[cordoned], &[], tolerant)), "a");
}

#[test]
fn taints_and_tolerations() {
    let tainted = |name, effect| {
        with(
            node(name, "4", "4Gi"),
            &["spec", "taints"],
            json!([{"key": "k", "value": "v", "effect": effect}]),
        )
    };
    let plain = pod("p", "1", "1Mi");
    assert_eq!(
        message(decide(&[tainted("a", "NoExecute")], &[], plain.clone())),
        "0/1 nodes are available: 1 node(s) had untolerated taint {k: v}."
    );
    let equal = with(
        plain.clone(),
        &["spec", "tolerations"],
        json!([{"key": "k", "value": "v"}]),
    );
    assert_eq!(bind(decide(&[tainted("a", "NoSchedule")], &[], equal)), "a");
    let wrong = with(
        plain.clone(),
        &["spec", "tolerations"],
        json!([{"key": "k", "value": "w"}]),
    );
    assert!(matches!(
        decide(&[tainted("a", "NoSchedule")], &[], wrong),
        Decision::Unschedulable(_)
    ));
    let only_effect = with(
        plain.clone(),
        &["spec", "tolerations"],
        json!([{"operator": "Exists", "effect": "NoExecute"}]),
    );
    assert_eq!(
        bind(decide(
            &[tainted("a", "NoExecute")],
            &[],
            only_effect.clone()
        )),
        "a"
    );
    assert!(matches!(
        decide(&[tainted("a", "NoSchedule")], &[], only_effect),
        Decision::Unschedulable(_)
    ));
    // PreferNoSchedule never filters, only scores lower.
    let nodes = [tainted("a", "PreferNoSchedule"), node("b", "4", "4Gi")];
    assert_eq!(bind(decide(&nodes, &[], plain.clone())), "b");
    assert_eq!(bind(decide(&nodes[..1], &[], plain)), "a");
}

#[test]
fn node_selector_and_required_affinity() {
    let zone = |name, z: &str| {
        with(
            node(name, "4", "4Gi"),
            &["metadata", "labels", "zone"],
            json!(z),
        )
    };
    let gen_ = |name, g: &str| with(zone(name, "z1"), &["metadata", "labels", "gen"], json!(g));
    let nodes = [
        zone("a", "z1"),
        zone("b", "z2"),
        gen_("c", "3"),
        gen_("d", "5"),
    ];
    let sel = with(
        pod("p", "1", "1Mi"),
        &["spec", "nodeSelector"],
        json!({"zone": "z2"}),
    );
    assert_eq!(bind(decide(&nodes, &[], sel)), "b");
    let req = |exprs: Value, fields: Value| {
        with(
            pod("p", "1", "1Mi"),
            &[
                "spec",
                "affinity",
                "nodeAffinity",
                "requiredDuringSchedulingIgnoredDuringExecution",
            ],
            json!({"nodeSelectorTerms": [{"matchExpressions": exprs, "matchFields": fields}]}),
        )
    };
    let only = |p| {
        let e = evaluate(&snap(&nodes, &[]), &Pod::parse(&p).unwrap());
        e.scores.into_keys().collect::<Vec<_>>()
    };
    assert_eq!(
        only(req(
            json!([{"key": "gen", "operator": "Gt", "values": ["4"]}]),
            json!([])
        )),
        ["d"]
    );
    assert_eq!(
        only(req(
            json!([{"key": "gen", "operator": "Lt", "values": ["4"]}]),
            json!([])
        )),
        ["c"]
    );
    assert_eq!(
        only(req(
            json!([{"key": "gen", "operator": "Exists"}]),
            json!([])
        )),
        ["c", "d"]
    );
    assert_eq!(
        only(req(
            json!([{"key": "gen", "operator": "DoesNotExist"}]),
            json!([])
        )),
        ["a", "b"]
    );
    assert_eq!(
        only(req(
            json!([{"key": "zone", "operator": "NotIn", "values": ["z1"]}]),
            json!([])
        )),
        ["b"]
    );
    assert_eq!(
        only(req(
            json!([]),
            json!([{"key": "metadata.name", "operator": "In", "values": ["c", "a"]}])
        )),
        ["a", "c"]
    );
    let none = req(
        json!([{"key": "zone", "operator": "In", "values": ["z9"]}]),
        json!([]),
    );
    assert_eq!(
        message(decide(&nodes, &[], none)),
        "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."
    );
    let bad = req(
        json!([{"key": "zone", "operator": "Near", "values": []}]),
        json!([]),
    );
    let err = Pod::parse(&bad).unwrap_err();
    assert!(
        err.to_string().contains("matchExpressions[0].operator"),
        "{err}"
    );
}

#[test]
fn preferred_affinity_wins_among_equals() {
    let nodes = [
        node("a", "4", "4Gi"),
        with(
            node("b", "4", "4Gi"),
            &["metadata", "labels", "disk"],
            json!("ssd"),
        ),
    ];
    let p = with(
        pod("p", "1", "1Mi"),
        &[
            "spec",
            "affinity",
            "nodeAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
        json!([{"weight": 10, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}]),
    );
    assert_eq!(bind(decide(&nodes, &[], p)), "b");
}

#[test]
fn host_ports_conflict_per_protocol_and_ip() {
    let ported = |name, port: i64, proto: &str, ip: &str| {
        let mut p = pod(name, "100m", "1Mi");
        p["spec"]["containers"][0]["ports"] =
            json!([{"containerPort": 80, "hostPort": port, "protocol": proto, "hostIP": ip}]);
        p
    };
    let nodes = [node("a", "4", "4Gi")];
    let running = [bound(ported("x", 8080, "TCP", ""), "a")];
    assert_eq!(
        message(decide(
            &nodes,
            &running,
            ported("p", 8080, "TCP", "10.0.0.1")
        )),
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
    );
    assert_eq!(
        bind(decide(&nodes, &running, ported("p", 8080, "UDP", ""))),
        "a"
    );
    assert_eq!(
        bind(decide(&nodes, &running, ported("p", 8081, "TCP", ""))),
        "a"
    );
    let specific = [bound(ported("x", 8080, "TCP", "10.0.0.1"), "a")];
    assert_eq!(
        bind(decide(
            &nodes,
            &specific,
            ported("p", 8080, "TCP", "10.0.0.2")
        )),
        "a"
    );
}

fn zoned(name: &str, zone: &str) -> Value {
    with(
        node(name, "8", "8Gi"),
        &["metadata", "labels", "zone"],
        json!(zone),
    )
}

#[test]
fn topology_spread_do_not_schedule() {
    let nodes = [zoned("a", "z1"), zoned("b", "z2"), node("c", "8", "8Gi")];
    let spread = |p: Value, when: &str| {
        with(
            p,
            &["spec", "topologySpreadConstraints"],
            json!([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
                    "labelSelector": {"matchLabels": {"app": "web"}}}]),
        )
    };
    let running = [bound(pod("x", "1", "1Mi"), "a")];
    // A single domain never skews.
    assert_eq!(
        bind(decide(
            &nodes[..1],
            &running,
            spread(pod("p", "1", "1Mi"), "DoNotSchedule")
        )),
        "a"
    );
    assert_eq!(
        message(decide(
            &nodes,
            &running,
            with(
                spread(pod("p", "1", "1Mi"), "DoNotSchedule"),
                &["spec", "nodeName"],
                json!("a")
            )
        )),
        "0/3 nodes are available: 1 node(s) didn't match pod topology spread constraints, \
         2 node(s) didn't match the requested node name."
    );
    assert_eq!(
        bind(decide(
            &nodes,
            &running,
            spread(pod("p", "1", "1Mi"), "DoNotSchedule")
        )),
        "b"
    );
    let e = evaluate(
        &snap(&nodes, &running),
        &Pod::parse(&spread(pod("p", "1", "1Mi"), "DoNotSchedule")).unwrap(),
    );
    assert_eq!(
        e.reasons["c"],
        ["node(s) didn't match pod topology spread constraints (missing required label)"]
    );
    // ScheduleAnyway only scores: the emptier zone wins, the full one still fits.
    assert_eq!(
        bind(decide(
            &nodes[..2],
            &running,
            spread(pod("p", "1", "1Mi"), "ScheduleAnyway")
        )),
        "b"
    );
    assert_eq!(
        bind(decide(
            &nodes[..1],
            &running,
            spread(pod("p", "1", "1Mi"), "ScheduleAnyway")
        )),
        "a"
    );
}

fn pod_term(kind: &str, p: Value, key: &str) -> Value {
    with(
        p,
        &[
            "spec",
            "affinity",
            kind,
            "requiredDuringSchedulingIgnoredDuringExecution",
        ],
        json!([{"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                "topologyKey": key}]),
    )
}

#[test]
fn pod_anti_affinity_both_ways() {
    let nodes = [zoned("a", "z1"), zoned("b", "z1"), zoned("c", "z2")];
    let running = [bound(pod("x", "1", "1Mi"), "a")];
    let anti = pod_term("podAntiAffinity", pod("p", "1", "1Mi"), "zone");
    assert_eq!(
        message(decide(&nodes[..2], &running, anti.clone())),
        "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
    );
    assert_eq!(bind(decide(&nodes, &running, anti)), "c");
    // The running pod's own anti-affinity keeps the newcomer off its zone.
    let running = [bound(
        pod_term("podAntiAffinity", pod("x", "1", "1Mi"), "zone"),
        "a",
    )];
    assert_eq!(
        message(decide(&nodes[..2], &running, pod("p", "1", "1Mi"))),
        "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules."
    );
}

#[test]
fn pod_affinity_follows_its_group_and_lets_the_first_start() {
    let nodes = [zoned("a", "z1"), zoned("b", "z2")];
    let aff = pod_term("podAffinity", pod("p", "1", "1Mi"), "zone");
    let running = [bound(pod("x", "1", "1Mi"), "b")];
    assert_eq!(bind(decide(&nodes, &running, aff.clone())), "b");
    // No pod of the group exists yet, and the pod is of the group: it may start anywhere.
    assert!(matches!(
        decide(&nodes, &[], aff.clone()),
        Decision::Bind(_)
    ));
    let stranger = with(aff, &["metadata", "labels"], json!({"app": "db"}));
    assert_eq!(
        message(decide(&nodes, &[], stranger)),
        "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."
    );
}

#[test]
fn least_allocated_prefers_the_emptier_node() {
    let nodes = [node("a", "4", "4Gi"), node("b", "4", "4Gi")];
    let running = [bound(pod("x", "2", "2Gi"), "a")];
    assert_eq!(bind(decide(&nodes, &running, pod("p", "1", "1Gi"))), "b");
}

#[test]
fn balanced_allocation_prefers_even_shares() {
    // Same free share in total; on b the pod would leave cpu and memory uneven.
    let nodes = [node("a", "4", "4Gi"), node("b", "4", "4Gi")];
    let running = [
        bound(pod("x", "1", "1Gi"), "a"),
        bound(pod("y", "2", "1Mi"), "b"),
        bound(pod("z", "0", "1023Mi"), "b"),
    ];
    let e = evaluate(
        &snap(&nodes, &running),
        &Pod::parse(&pod("p", "1", "1Gi")).unwrap(),
    );
    assert!(e.scores["a"] > e.scores["b"], "{e:?}");
}

#[test]
fn image_locality_prefers_nodes_with_the_image() {
    let nodes = [
        node("a", "4", "4Gi"),
        with(
            node("b", "4", "4Gi"),
            &["status", "images"],
            json!([{"names": ["web:1"], "sizeBytes": 500_000_000}]),
        ),
    ];
    assert_eq!(bind(decide(&nodes, &[], pod("p", "1", "1Mi"))), "b");
}

#[test]
fn seed_picks_among_ties_deterministically() {
    let nodes = [
        node("a", "4", "4Gi"),
        node("b", "4", "4Gi"),
        node("c", "4", "4Gi"),
    ];
    let s = snap(&nodes, &[]);
    let p = Pod::parse(&pod("p", "1", "1Mi")).unwrap();
    let picks: Vec<String> = (0..3).map(|seed| bind(schedule(&s, &p, seed))).collect();
    assert_eq!(picks, ["a", "b", "c"]);
    assert_eq!(bind(schedule(&s, &p, 4)), "b");
}

#[test]
fn image_names_compare_in_their_full_form() {
    use crate::plugins::normalize_image as n;
    assert_eq!(n("nginx"), "docker.io/library/nginx:latest");
    assert_eq!(n("me/app:1"), "docker.io/me/app:1");
    assert_eq!(
        n("registry.local:5000/app"),
        "registry.local:5000/app:latest"
    );
    assert_eq!(n("localhost/app@sha256:ab"), "localhost/app@sha256:ab");
    let nodes = [
        node("a", "4", "4Gi"),
        with(
            node("b", "4", "4Gi"),
            &["status", "images"],
            json!([{"names": ["docker.io/library/web:1"], "sizeBytes": 500_000_000}]),
        ),
    ];
    assert_eq!(bind(decide(&nodes, &[], pod("p", "1", "1Mi"))), "b");
}

#[test]
fn big_clusters_score_a_sample_but_search_them_all() {
    assert_eq!(crate::enough(50), 50);
    assert_eq!(crate::enough(100), 100);
    assert_eq!(crate::enough(1000), 420);
    assert_eq!(crate::enough(5000), 500);
    assert_eq!(crate::enough(20_000), 1000);
    let nodes: Vec<Value> = (0..300)
        .map(|i| node(&format!("n{i:03}"), "1", "1Gi"))
        .collect();
    // Only one node fits; whatever the starting point, it is found.
    let mut fits = nodes.clone();
    fits[7] = node("n007", "8", "1Gi");
    let s = snap(&fits, &[]);
    let p = Pod::parse(&pod("p", "4", "1Mi")).unwrap();
    for seed in [0, 8, 150, 299, 12345] {
        assert_eq!(bind(schedule(&s, &p, seed)), "n007");
    }
    // None fits: every node is in the message.
    let s = snap(&nodes, &[]);
    assert_eq!(
        message(schedule(&s, &p, 3)),
        "0/300 nodes are available: 300 Insufficient cpu."
    );
}

#[test]
fn counts_remembered_per_selector_follow_assumed_pods() {
    let zoned = |name: &str, zone: &str| {
        with(
            node(name, "8", "8Gi"),
            &["metadata", "labels", "zone"],
            json!(zone),
        )
    };
    let nodes = [zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")];
    let mut s = snap(&nodes, &[]);
    let spread = json!([{"maxSkew": 1, "topologyKey": "zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
    let mut zones = Vec::new();
    for i in 0..6 {
        let p = with(
            pod(&format!("p{i}"), "100m", "1Mi"),
            &["spec", "topologySpreadConstraints"],
            spread.clone(),
        );
        let mut p = Pod::parse(&p).unwrap();
        // Each decision reads the counts the earlier ones left behind.
        let n = bind(schedule(&s, &p, i));
        zones.push(if n == "b1" { "b" } else { "a" });
        p.bind_to(&n);
        s.assume(p);
    }
    let in_b = zones.iter().filter(|z| **z == "b").count();
    assert_eq!(in_b, 3, "{zones:?}");
}

#[test]
fn preferred_pod_affinity_draws_and_anti_affinity_repels() {
    let nodes = [
        node("n1", "8", "8Gi"),
        node("n2", "8", "8Gi"),
        node("n3", "8", "8Gi"),
    ];
    let mut db = bound(pod("db", "100m", "1Mi"), "n2");
    db["metadata"]["labels"] = json!({"app": "db"});
    let web = bound(pod("web", "100m", "1Mi"), "n1");
    let term = |app: &str| {
        json!([{"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": {"app": app}}}}])
    };
    let near_db = with(
        pod("near-db", "100m", "1Mi"),
        &["spec", "affinity", "podAffinity"],
        json!({"preferredDuringSchedulingIgnoredDuringExecution": term("db")}),
    );
    for seed in 0..3 {
        let d = schedule(
            &snap(&nodes, &[db.clone(), web.clone()]),
            &Pod::parse(&near_db).unwrap(),
            seed,
        );
        assert_eq!(bind(d), "n2");
    }
    // Away from web (on n1) and, by equal weight, from db (on n2), though n3
    // is the busiest.
    let mut filler = bound(pod("filler", "2", "1Gi"), "n3");
    filler["metadata"]["labels"] = json!({"app": "other"});
    let mut away = with(
        pod("away", "100m", "1Mi"),
        &["spec", "affinity", "podAntiAffinity"],
        json!({"preferredDuringSchedulingIgnoredDuringExecution": term("web")}),
    );
    let more = term("db").as_array().unwrap()[0].clone();
    away["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array_mut()
        .unwrap()
        .push(more);
    for seed in 0..3 {
        let d = schedule(
            &snap(&nodes, &[db.clone(), web.clone(), filler.clone()]),
            &Pod::parse(&away).unwrap(),
            seed,
        );
        assert_eq!(bind(d), "n3");
    }
}
