use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn service(name: &str, selector: Option<&[(&str, &str)]>, ports: Vec<ServicePort>) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: labels(&[("team", "a")]),
        selector: selector.map(labels),
        ports,
        headless: false,
        publish_not_ready: false,
    }
}

fn port(name: &str, target: TargetPort) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: "TCP".into(),
        app_protocol: None,
        target,
    }
}

fn pod(name: &str, ip: Option<&str>, ready: bool) -> Pod {
    Pod {
        namespace: "default".into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        labels: labels(&[("app", "web")]),
        ip: ip.map(str::to_owned),
        ready,
        terminating: false,
        finished: false,
        node_name: Some("node-0".into()),
        hostname: None,
        subdomain: None,
        ports: vec![ContainerPort {
            name: "http".into(),
            port: 8080,
            protocol: "TCP".into(),
        }],
    }
}

/// What the server would hold: the objects the actions made, read back the
/// way the caches read them.
#[derive(Default, Debug)]
struct World {
    endpoints: Vec<Endpoints>,
    slices: Vec<Slice>,
    version: u64,
}

impl World {
    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            self.version += 1;
            let rv = self.version.to_string();
            match a {
                Action::Create { body } | Action::Update { body } => {
                    let mut body = body.clone();
                    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
                    body["metadata"]["resourceVersion"] = json!(rv);
                    body["metadata"]["uid"] = json!(format!("obj-{name}"));
                    if Kind::of(&body) == Kind::Endpoints {
                        if let Action::Create { .. } = a {
                            assert!(
                                !self.endpoints.iter().any(|e| e.name == name),
                                "created twice: {name}"
                            );
                        }
                        self.endpoints.retain(|e| e.name != name);
                        self.endpoints.push(Endpoints::of(&body).unwrap());
                    } else {
                        if let Action::Create { .. } = a {
                            assert!(
                                !self.slices.iter().any(|e| e.name == name),
                                "created twice: {name}"
                            );
                        }
                        self.slices.retain(|e| e.name != name);
                        self.slices.push(Slice::of(&body).unwrap());
                    }
                }
                Action::Delete {
                    kind: Kind::Endpoints,
                    name,
                    ..
                } => self.endpoints.retain(|e| &e.name != name),
                Action::Delete {
                    kind: Kind::Slice,
                    name,
                    ..
                } => self.slices.retain(|e| &e.name != name),
            }
        }
    }

    fn plan(&self, services: &[Service], pods: &[Pod]) -> Vec<Action> {
        let pods: Vec<Arc<Pod>> = pods.iter().cloned().map(Arc::new).collect();
        plan(services, &pods, &self.endpoints, &self.slices)
    }

    /// Plans and applies until nothing is left to do; the number of rounds
    /// that wrote anything.
    fn settle(&mut self, services: &[Service], pods: &[Pod]) -> usize {
        for round in 0..5 {
            let actions = self.plan(services, pods);
            if actions.is_empty() {
                return round;
            }
            self.apply(&actions);
        }
        panic!("no fixed point: {:#?}", self.plan(services, pods));
    }

    fn ep(&self, name: &str) -> &Endpoints {
        self.endpoints
            .iter()
            .find(|e| e.name == name)
            .expect("endpoints")
    }

    fn slices_of(&self, svc: &str) -> Vec<&Slice> {
        self.slices.iter().filter(|s| s.service == svc).collect()
    }
}

fn ips(list: &Value) -> Vec<&str> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|a| a["ip"].as_str().unwrap())
        .collect()
}

#[test]
fn ready_pods_are_addresses_and_others_not_ready_ones() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Name("http".into()))],
    );
    let mut terminating = pod("e", Some("10.0.0.5"), true);
    terminating.terminating = true;
    let mut other = pod("d", Some("10.0.0.4"), true);
    other.labels = labels(&[("app", "db")]);
    let pods = vec![
        pod("a", Some("10.0.0.1"), true),
        pod("b", Some("10.0.0.2"), false),
        pod("c", None, true),
        other,
        terminating,
    ];
    let mut w = World::default();
    assert_eq!(w.settle(std::slice::from_ref(&svc), &pods), 1);
    let ep = w.ep("web");
    assert_eq!(ep.labels[ENDPOINTS_MANAGED_BY], ENDPOINTS_CONTROLLER);
    assert_eq!(ep.labels["team"], "a");
    let subsets = ep.subsets.as_array().unwrap();
    assert_eq!(subsets.len(), 1, "{subsets:#?}");
    assert_eq!(ips(&subsets[0]["addresses"]), ["10.0.0.1"]);
    assert_eq!(ips(&subsets[0]["notReadyAddresses"]), ["10.0.0.2"]);
    assert_eq!(
        subsets[0]["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        subsets[0]["addresses"][0]["targetRef"],
        json!({"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"})
    );
    assert_eq!(subsets[0]["addresses"][0]["nodeName"], "node-0");

    let slices = w.slices_of("web");
    assert_eq!(slices.len(), 1);
    let sl = slices[0];
    assert_eq!(sl.owner.as_deref(), Some("uid-web"));
    assert_eq!(sl.address_type, "IPv4");
    assert!(
        sl.name.starts_with("web-") && sl.name.len() == 9,
        "{}",
        sl.name
    );
    let conds: Vec<(String, Value)> = sl
        .endpoints
        .iter()
        .map(|e| {
            (
                e["addresses"][0].as_str().unwrap().to_owned(),
                e["conditions"].clone(),
            )
        })
        .collect();
    assert_eq!(
        conds,
        [
            (
                "10.0.0.1".to_owned(),
                json!({"ready": true, "serving": true, "terminating": false})
            ),
            (
                "10.0.0.2".to_owned(),
                json!({"ready": false, "serving": false, "terminating": false})
            ),
            (
                "10.0.0.5".to_owned(),
                json!({"ready": false, "serving": true, "terminating": true})
            ),
        ]
    );
}

#[test]
fn named_ports_resolve_per_pod_into_subsets_and_slice_groups() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("web", TargetPort::Name("http".into()))],
    );
    let a = pod("a", Some("10.0.0.1"), true);
    let mut b = pod("b", Some("10.0.0.2"), true);
    b.ports[0].port = 9090;
    let mut c = pod("c", Some("10.0.0.3"), true);
    c.ports[0].name = "other".into();
    let mut w = World::default();
    w.settle(&[svc], &[a, b, c]);
    let subsets = w.ep("web").subsets.as_array().unwrap().clone();
    let got: Vec<(Vec<&str>, i64)> = subsets
        .iter()
        .map(|s| {
            (
                ips(&s["addresses"]),
                s["ports"][0]["port"].as_i64().unwrap(),
            )
        })
        .collect();
    // c names no port "http": it is in no subset.
    assert_eq!(got, [(vec!["10.0.0.1"], 8080), (vec!["10.0.0.2"], 9090)]);
    let mut slices: Vec<(i64, usize)> = w
        .slices_of("web")
        .iter()
        .map(|s| {
            (
                s.ports.first().map_or(0, |p| p["port"].as_i64().unwrap()),
                s.endpoints.len(),
            )
        })
        .collect();
    slices.sort();
    // c is in a slice without ports, as in Kubernetes.
    assert_eq!(slices, [(0, 1), (8080, 1), (9090, 1)]);
}

#[test]
fn services_without_a_selector_are_left_alone() {
    let svc = service("ext", None, vec![port("", TargetPort::Number(80))]);
    let mut w = World::default();
    w.endpoints.push(Endpoints {
        namespace: "default".into(),
        name: "ext".into(),
        uid: "u".into(),
        resource_version: "1".into(),
        labels: BTreeMap::new(),
        annotations: Map::new(),
        subsets: normalize(&json!([{"addresses": [{"ip": "192.0.2.1"}]}])),
    });
    assert!(
        w.plan(&[svc], &[pod("a", Some("10.0.0.1"), true)])
            .is_empty()
    );
}

#[test]
fn managed_endpoints_of_a_deleted_service_go_and_others_stay() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let pods = [pod("a", Some("10.0.0.1"), true)];
    let mut w = World::default();
    w.settle(&[svc], &pods);
    let mut mine = w.ep("web").clone();
    mine.name = "gone".into();
    let mut users = mine.clone();
    users.name = "users".into();
    users.labels.clear();
    w.endpoints.push(mine);
    w.endpoints.push(users);
    let actions = w.plan(&[], &pods);
    let deleted: Vec<&str> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete {
                kind: Kind::Endpoints,
                name,
                ..
            } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["web", "gone"]);
    // The slices are owned by the Service: the garbage collector's.
    assert!(actions.iter().all(|a| matches!(
        a,
        Action::Delete {
            kind: Kind::Endpoints,
            ..
        }
    )));
}

#[test]
fn a_service_without_endpoints_keeps_one_empty_slice() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let mut w = World::default();
    w.settle(std::slice::from_ref(&svc), &[]);
    let slices = w.slices_of("web");
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty() && slices[0].ports.is_empty());
    assert_eq!(w.ep("web").subsets, Value::Null);
    // Pods come: the placeholder is reused, not replaced.
    let placeholder = slices[0].name.clone();
    let pods = [pod("a", Some("10.0.0.1"), true)];
    w.settle(std::slice::from_ref(&svc), &pods);
    let slices = w.slices_of("web");
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].name, placeholder);
    assert_eq!(slices[0].endpoints.len(), 1);
    // And go: it is emptied again.
    w.settle(&[svc], &[]);
    assert_eq!(w.slices_of("web").len(), 1);
    assert!(w.slices_of("web")[0].endpoints.is_empty());
}

#[test]
fn big_services_get_slices_of_100_and_one_change_writes_one_slice() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let mut pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i}"),
                Some(&format!("10.0.{}.{}", i / 200, i % 200)),
                true,
            )
        })
        .collect();
    let mut w = World::default();
    w.settle(std::slice::from_ref(&svc), &pods);
    let mut sizes: Vec<usize> = w
        .slices_of("web")
        .iter()
        .map(|s| s.endpoints.len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    // One pod turns not ready: one slice and the Endpoints are rewritten.
    pods[7].ready = false;
    let actions = w.plan(std::slice::from_ref(&svc), &pods);
    assert_eq!(actions.len(), 2, "{actions:#?}");
    assert!(actions.iter().all(|a| matches!(a, Action::Update { .. })));
    w.apply(&actions);
    // One pod goes and another comes: the newcomer takes the free place.
    pods.remove(0);
    pods.push(pod("new", Some("10.0.9.9"), true));
    let actions = w.plan(std::slice::from_ref(&svc), &pods);
    let slice_writes = actions
        .iter()
        .filter(|a| matches!(a, Action::Update { body } if body["kind"] == "EndpointSlice"))
        .count();
    assert!(slice_writes <= 2, "{actions:#?}");
    assert!(!actions.iter().any(|a| matches!(a, Action::Create { .. })));
    w.apply(&actions);
    assert_eq!(w.settle(&[svc], &pods), 0);
}

#[test]
fn settled_services_are_skipped_until_something_of_theirs_changes() {
    let web = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let mut db = service(
        "db",
        Some(&[("app", "db")]),
        vec![port("", TargetPort::Number(80))],
    );
    db.uid = "uid-db".into();
    let mut pods = vec![
        pod("a", Some("10.0.0.1"), true),
        pod("b", Some("10.0.0.2"), true),
    ];
    pods[1].labels = labels(&[("app", "db")]);
    let services = [web, db];
    let mut w = World::default();
    w.settle(&services, &pods);
    let mut settled = Settled::default();
    let arcs = |pods: &[Pod]| pods.iter().cloned().map(Arc::new).collect::<Vec<_>>();
    assert!(
        plan_settled(
            &services,
            &arcs(&pods),
            &w.endpoints,
            &w.slices,
            &mut settled
        )
        .is_empty()
    );
    assert_eq!(settled.0.len(), 2);
    // A pod of web changes: web is planned again, db is not looked at.
    pods[0].ready = false;
    let actions = plan_settled(
        &services,
        &arcs(&pods),
        &w.endpoints,
        &w.slices,
        &mut settled,
    );
    assert_eq!(actions.len(), 2, "{actions:#?}");
    assert!(
        settled
            .0
            .contains_key(&("default".to_owned(), "db".to_owned()))
    );
    assert!(
        !settled
            .0
            .contains_key(&("default".to_owned(), "web".to_owned()))
    );
    // Someone deletes db's Endpoints: its resourceVersion is gone, so it is
    // planned again and they are made anew.
    w.endpoints.retain(|e| e.name != "db");
    let actions = plan_settled(
        &services,
        &arcs(&pods),
        &w.endpoints,
        &w.slices,
        &mut settled,
    );
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::Create { body } if body["metadata"]["name"] == "db")),
        "{actions:#?}"
    );
}

#[test]
fn endpoints_stop_at_1000_addresses_ready_first() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let pods: Vec<Pod> = (0..1100)
        .map(|i| {
            pod(
                &format!("p{i}"),
                Some(&format!("10.1.{}.{}", i / 250, i % 250)),
                i % 2 == 0,
            )
        })
        .collect();
    let mut w = World::default();
    w.settle(&[svc], &pods);
    let ep = w.ep("web");
    assert_eq!(ep.annotations[OVER_CAPACITY], "truncated");
    let s = &ep.subsets[0];
    assert_eq!(ips(&s["addresses"]).len(), 550);
    assert_eq!(ips(&s["notReadyAddresses"]).len(), 450);
    let in_slices: usize = w.slices_of("web").iter().map(|s| s.endpoints.len()).sum();
    assert_eq!(in_slices, 1100);
}

#[test]
fn a_recreated_service_does_not_reuse_the_old_ones_slices() {
    let svc = service(
        "web",
        Some(&[("app", "web")]),
        vec![port("", TargetPort::Number(80))],
    );
    let pods = [pod("a", Some("10.0.0.1"), true)];
    let mut w = World::default();
    w.settle(std::slice::from_ref(&svc), &pods);
    let old = w.slices_of("web")[0].name.clone();
    let mut again = svc;
    again.uid = "uid-web-2".into();
    w.settle(&[again], &pods);
    let slices = w.slices_of("web");
    assert_eq!(slices.len(), 1);
    assert_eq!(slices[0].owner.as_deref(), Some("uid-web-2"));
    // The old slice was rewritten under the new owner rather than deleted
    // and made again.
    assert_eq!(slices[0].name, old);
}

#[test]
fn objects_read_back_from_json() {
    let svc = Service::of(&json!({
        "metadata": {"namespace": "ns", "name": "s", "uid": "u"},
        "spec": {"selector": {"app": "x"}, "clusterIP": "None", "ports": [
            {"name": "a", "port": 80, "targetPort": "http", "protocol": "UDP"},
            {"port": 81},
        ]},
    }))
    .unwrap();
    assert!(svc.headless);
    assert_eq!(svc.ports[0].target, TargetPort::Name("http".into()));
    assert_eq!(svc.ports[0].protocol, "UDP");
    assert_eq!(svc.ports[1].target, TargetPort::Number(81));
    let no_selector = Service::of(&json!({
        "metadata": {"namespace": "ns", "name": "s", "uid": "u"}, "spec": {"selector": {}},
    }))
    .unwrap();
    assert_eq!(no_selector.selector, None);
    let p = Pod::of(&json!({
        "metadata": {"namespace": "ns", "name": "p", "uid": "u", "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "n", "containers": [{"ports": [{"name": "http", "containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    assert!(p.ready && p.terminating && !p.finished);
    assert_eq!(p.ports[0].port, 80);
    assert_eq!(p.ports[0].protocol, "TCP");
}

/// splitmix64: a small seeded generator (proptest is not in the lock file);
/// every failure names its seed.
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

fn gen_pod(r: &mut Rng, i: usize) -> Pod {
    let app = ["web", "db", "cache"][r.below(3) as usize];
    let mut p = pod(&format!("p{i}"), None, r.chance(60));
    p.namespace = ["default", "other"][r.below(2) as usize].into();
    p.labels = labels(&[("app", app)]);
    if r.chance(30) {
        p.labels.insert("tier".into(), "front".into());
    }
    if r.chance(85) {
        p.ip = Some(format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256));
    }
    p.terminating = r.chance(10);
    p.finished = r.chance(5);
    p.ports.clear();
    for name in ["http", "metrics", "grpc"] {
        if r.chance(60) {
            p.ports.push(ContainerPort {
                name: name.into(),
                port: 8000 + r.below(4) as i64,
                protocol: if r.chance(10) { "UDP" } else { "TCP" }.into(),
            });
        }
    }
    p
}

fn gen_service(r: &mut Rng, i: usize) -> Service {
    let mut sel = vec![("app", ["web", "db", "cache"][r.below(3) as usize])];
    if r.chance(20) {
        sel.push(("tier", "front"));
    }
    let mut svc = service(&format!("s{i}"), Some(&sel), Vec::new());
    svc.namespace = ["default", "other"][r.below(2) as usize].into();
    if r.chance(10) {
        svc.selector = None;
    }
    svc.headless = r.chance(20);
    svc.publish_not_ready = r.chance(10);
    let nports = r.below(3);
    for j in 0..nports {
        let target = if r.chance(50) {
            TargetPort::Name(["http", "metrics", "grpc", "none"][r.below(4) as usize].into())
        } else {
            TargetPort::Number(9000 + r.below(3) as i64)
        };
        svc.ports.push(ServicePort {
            name: format!("p{j}"),
            protocol: if r.chance(10) { "UDP" } else { "TCP" }.into(),
            app_protocol: None,
            target,
        });
    }
    svc
}

/// For random pods, services and ports: the Endpoints' ready addresses are
/// exactly the selected ready pods with an address (and a port the service
/// reaches), each with exactly its resolved ports; not-ready ones likewise;
/// the slices hold every selected live pod with an address once, ready
/// exactly when it is ready and not terminating, at most 100 a slice; and a
/// second plan over the result writes nothing.
#[test]
fn property_endpoints_are_exactly_the_ready_selected_pods() {
    for seed in 1..300u64 {
        let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let services: Vec<Service> = (0..1 + r.below(4) as usize)
            .map(|i| gen_service(&mut r, i))
            .collect();
        let npods = if r.chance(10) {
            150 + r.below(150)
        } else {
            r.below(30)
        } as usize;
        let mut pods: Vec<Pod> = (0..npods).map(|i| gen_pod(&mut r, i)).collect();
        let mut w = World::default();
        w.settle(&services, &pods);
        check(seed, &w, &services, &pods);
        let mut settled = Settled::default();
        let arcs = |pods: &[Pod]| pods.iter().cloned().map(Arc::new).collect::<Vec<_>>();
        let quiet = plan_settled(
            &services,
            &arcs(&pods),
            &w.endpoints,
            &w.slices,
            &mut settled,
        );
        assert!(quiet.is_empty(), "seed {seed}: {quiet:#?}");
        // Churn: some pods change, go or come; the world follows.
        for p in pods.iter_mut() {
            if r.chance(20) {
                p.ready = !p.ready;
            }
        }
        pods.retain(|_| !r.chance(10));
        pods.extend((0..r.below(20) as usize).map(|i| gen_pod(&mut r, 10_000 + i)));
        // What was settled and did not change is skipped, and nothing else.
        assert_eq!(
            plan_settled(
                &services,
                &arcs(&pods),
                &w.endpoints,
                &w.slices,
                &mut settled
            ),
            w.plan(&services, &pods),
            "seed {seed}"
        );
        w.settle(&services, &pods);
        check(seed, &w, &services, &pods);
    }
}

fn check(seed: u64, w: &World, services: &[Service], pods: &[Pod]) {
    for svc in services {
        let ours = |e: &&Endpoints| e.namespace == svc.namespace && e.name == svc.name;
        let Some(_) = &svc.selector else {
            assert!(
                !w.endpoints.iter().any(|e| ours(&e)),
                "seed {seed}: {svc:?} got endpoints"
            );
            continue;
        };
        let selected: Vec<&Pod> = pods.iter().filter(|p| selects(svc, p)).collect();
        let resolved = |p: &Pod| -> BTreeMap<String, i64> {
            svc.ports
                .iter()
                .filter_map(|sp| Some((sp.name.clone(), resolve(sp, p)?)))
                .collect()
        };
        let reachable = |p: &Pod| !resolved(p).is_empty() || (svc.ports.is_empty() && svc.headless);
        let live = |p: &&&Pod| p.ip.is_some() && !p.finished;
        let want_ready: BTreeMap<&str, BTreeMap<String, i64>> = selected
            .iter()
            .filter(live)
            .filter(|p| (svc.publish_not_ready || (p.ready && !p.terminating)) && reachable(p))
            .map(|p| (p.ip.as_deref().unwrap(), resolved(p)))
            .collect();
        let want_not_ready: BTreeMap<&str, BTreeMap<String, i64>> = selected
            .iter()
            .filter(live)
            .filter(|p| !p.ready && !svc.publish_not_ready && !p.terminating && reachable(p))
            .map(|p| (p.ip.as_deref().unwrap(), resolved(p)))
            .collect();
        let ep = w
            .endpoints
            .iter()
            .find(ours)
            .unwrap_or_else(|| panic!("seed {seed}: no endpoints for {svc:?}"));
        let (mut got_ready, mut got_not_ready) = (BTreeMap::new(), BTreeMap::new());
        for s in ep.subsets.as_array().into_iter().flatten() {
            let ports: BTreeMap<String, i64> = s["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        p["port"].as_i64().unwrap(),
                    )
                })
                .collect();
            for ip in ips(&s["addresses"]) {
                assert!(
                    got_ready.insert(ip, ports.clone()).is_none(),
                    "seed {seed}: {ip} twice"
                );
            }
            for ip in ips(&s["notReadyAddresses"]) {
                assert!(
                    got_not_ready.insert(ip, ports.clone()).is_none(),
                    "seed {seed}: {ip} twice"
                );
            }
        }
        assert_eq!(
            got_ready, want_ready,
            "seed {seed}: ready addresses of {svc:#?}"
        );
        assert_eq!(
            got_not_ready, want_not_ready,
            "seed {seed}: not-ready addresses of {svc:#?}"
        );

        let slices: Vec<&Slice> = w
            .slices
            .iter()
            .filter(|s| s.namespace == svc.namespace && s.service == svc.name)
            .collect();
        assert!(!slices.is_empty(), "seed {seed}: no slice for {svc:?}");
        let mut in_slices: BTreeMap<String, bool> = BTreeMap::new();
        for sl in &slices {
            assert!(sl.endpoints.len() <= MAX_PER_SLICE, "seed {seed}");
            assert_eq!(sl.owner.as_deref(), Some(svc.uid.as_str()), "seed {seed}");
            for e in &sl.endpoints {
                let ip = e["addresses"][0].as_str().unwrap().to_owned();
                let ready = e["conditions"]["ready"] == true;
                assert!(
                    in_slices.insert(ip, ready).is_none(),
                    "seed {seed}: twice in slices"
                );
            }
        }
        let want: BTreeMap<String, bool> = selected
            .iter()
            .filter(live)
            .map(|p| {
                let ready = svc.publish_not_ready || (p.ready && !p.terminating);
                (p.ip.clone().unwrap(), ready)
            })
            .collect();
        assert_eq!(in_slices, want, "seed {seed}: slices of {svc:#?}");
    }
}
