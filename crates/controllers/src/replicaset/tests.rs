use super::*;

fn set(uid: &str, replicas: i64, app: &str) -> Arc<ReplicaSet> {
    let mut v = json!({
        "metadata": {"name": format!("rs-{uid}"), "namespace": "default", "uid": uid, "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {"metadata": {"labels": {"app": app, "extra": "x"}},
                         "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
        },
    });
    if replicas < 0 {
        v["spec"]["replicas"] = json!(0);
    }
    Arc::new(ReplicaSet::of(&v).unwrap())
}

fn pod(uid: &str, owner: Option<&str>, app: &str) -> Pod {
    Pod {
        uid: uid.into(),
        name: format!("pod-{uid}"),
        namespace: "default".into(),
        labels: [("app".to_owned(), app.to_owned())].into(),
        controller: owner.map(str::to_owned),
        deleting: false,
        phase: Phase::Running,
        scheduled: true,
        ready_since: Some(0),
        created: 0,
        restarts: 0,
    }
}

fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

fn creates(plan: &Plan) -> usize {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::Create { count, .. } => *count,
            _ => 0,
        })
        .sum()
}

fn deleted(plan: &Plan) -> Vec<String> {
    plan.actions
        .iter()
        .flat_map(|a| match a {
            Action::Delete { pods, .. } => pods.iter().map(|p| p.uid.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn creates_the_missing_and_replaces_failed_pods() {
    let s = set("a", 3, "web");
    let mut failed = pod("f", Some("a"), "web");
    failed.phase = Phase::Failed;
    let pods = arcs(vec![pod("1", Some("a"), "web"), failed]);
    let plan = plan(std::slice::from_ref(&s), &pods, &Pending::default(), 100);
    assert_eq!(creates(&plan), 2, "{plan:?}");
    // Pods made but not seen yet count: no second creation.
    let mut pending = Pending::default();
    pending.created("new1".into(), "a".into(), 100);
    pending.created("new2".into(), "a".into(), 100);
    assert_eq!(creates(&super::plan(&[s], &pods, &pending, 100)), 0);
}

#[test]
fn deletes_the_surplus_in_kubernetes_order() {
    let s = set("a", 2, "web");
    let mut unscheduled = pod("u", Some("a"), "web");
    unscheduled.scheduled = false;
    unscheduled.ready_since = None;
    unscheduled.phase = Phase::Pending;
    let mut not_ready = pod("n", Some("a"), "web");
    not_ready.ready_since = None;
    let mut newer = pod("new", Some("a"), "web");
    newer.ready_since = Some(50);
    let old = pod("old", Some("a"), "web");
    let pods = arcs(vec![old.clone(), newer, not_ready, unscheduled]);
    assert_eq!(
        deleted(&plan(
            std::slice::from_ref(&s),
            &pods,
            &Pending::default(),
            100
        )),
        ["u", "n"]
    );
    let s1 = set("a", 1, "web");
    assert_eq!(
        deleted(&plan(
            std::slice::from_ref(&s1),
            &pods,
            &Pending::default(),
            100
        )),
        ["u", "n", "new"]
    );
    // Deletions not yet seen are not made again.
    let mut pending = Pending::default();
    pending.deleted("u".into(), 100);
    assert_eq!(deleted(&plan(&[s], &pods, &pending, 100)), ["n"]);
}

#[test]
fn adopts_orphans_and_releases_pods_that_stop_matching() {
    let s = set("a", 2, "web");
    let pods = arcs(vec![
        pod("o", None, "web"),
        pod("other", None, "db"),
        pod("moved", Some("a"), "db"),
        pod("mine", Some("a"), "web"),
    ]);
    let plan = plan(&[s], &pods, &Pending::default(), 100);
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Adopt { pod, .. } if pod.uid == "o"))
    );
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Release { pod, .. } if pod.uid == "moved"))
    );
    assert_eq!(creates(&plan), 0, "the adopted orphan counts: {plan:?}");
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Adopt { pod, .. } if pod.uid == "other"))
    );
}

#[test]
fn a_template_its_selector_does_not_match_makes_nothing() {
    let mut s = (*set("a", 3, "web")).clone();
    s.template_labels = [("app".to_owned(), "db".to_owned())].into();
    assert!(
        plan(&[Arc::new(s)], &[], &Pending::default(), 100)
            .actions
            .is_empty()
    );
}

#[test]
fn status_counts_ready_and_available_after_min_ready_seconds() {
    let v = json!({
        "metadata": {"name": "rs", "namespace": "default", "uid": "a", "generation": 4},
        "spec": {"replicas": 2, "minReadySeconds": 10, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web", "tier": "f"}}}},
    });
    let s = Arc::new(ReplicaSet::of(&v).unwrap());
    let mut young = pod("y", Some("a"), "web");
    young.ready_since = Some(95);
    let mut labelled = pod("l", Some("a"), "web");
    labelled.labels.insert("tier".into(), "f".into());
    let plan = plan(&[s], &arcs(vec![young, labelled]), &Pending::default(), 100);
    let status = plan.actions.iter().find_map(|a| match a {
        Action::Status { status, .. } => Some(status.clone()),
        _ => None,
    });
    assert_eq!(
        status,
        Some(Status {
            replicas: 2,
            fully_labeled_replicas: 1,
            ready_replicas: 2,
            available_replicas: 1,
            observed_generation: 4,
        })
    );
    assert_eq!(plan.wake_in, Some(5));
}

#[test]
fn reads_selectors_with_expressions() {
    let sel = selector(&json!({"matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                             {"key": "canary", "operator": "DoesNotExist"}]}))
    .unwrap();
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert!(sel.matches(&l(&[("app", "web"), ("tier", "b")])));
    assert!(!sel.matches(&l(&[("app", "web"), ("tier", "c")])));
    assert!(!sel.matches(&l(&[("app", "web"), ("tier", "a"), ("canary", "1")])));
    assert!(selector(&json!({"matchExpressions": [{"key": "k", "operator": "Bogus"}]})).is_none());
}

#[test]
fn pods_are_made_from_the_template_and_owned() {
    let s = set("a", 1, "web");
    let p = pod_for(&s);
    assert_eq!(p["metadata"]["generateName"], "rs-a-");
    assert_eq!(p["metadata"]["labels"]["app"], "web");
    let owner = &p["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["uid"].as_str(), owner["controller"].as_bool()),
        (Some("a"), Some(true))
    );
    assert_eq!(owner["blockOwnerDeletion"], true);
    assert_eq!(p["spec"]["containers"][0]["image"], "nginx");
}

/// A small deterministic generator (xorshift), as in the gc's tests.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random sets and pods (owned, orphaned, mislabelled, failed, being
/// deleted), planned against a cache that lags the world by a random number
/// of steps (never going back) while `Pending` records what was done, as `run` does: creations
/// never push a set above its replicas, and it converges to exactly
/// `replicas` active matching pods per set.
#[test]
fn replica_sets_converge_to_exactly_their_replicas() {
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let apps = ["web", "db", "api"];
        let sets: Vec<Arc<ReplicaSet>> = (0..1 + rng.below(3))
            .map(|i| set(&format!("s{i}"), rng.below(6) as i64, apps[i]))
            .collect();
        let mut world: Vec<Pod> = Vec::new();
        for i in 0..rng.below(12) {
            let app = apps[rng.below(3)];
            let owner = match rng.below(3) {
                0 => None,
                _ => Some(sets[rng.below(sets.len())].uid.as_str()),
            };
            let mut p = pod(&format!("p{i}"), owner, app);
            match rng.below(6) {
                0 => p.phase = Phase::Failed,
                1 => p.deleting = true,
                2 => p.ready_since = None,
                _ => {}
            }
            world.push(p);
        }
        let active = |w: &[Pod], s: &ReplicaSet| {
            w.iter()
                .filter(|p| p.controller.as_deref() == Some(&s.uid) && p.active())
                .filter(|p| s.selector.as_ref().unwrap().matches(&p.labels))
                .count()
        };
        // What each set may claim at the start: its own pods and matching orphans.
        let start: Vec<usize> = sets
            .iter()
            .map(|s| {
                let orphans = world
                    .iter()
                    .filter(|p| p.controller.is_none() && p.active())
                    .filter(|p| s.selector.as_ref().unwrap().matches(&p.labels))
                    .count();
                active(&world, s) + orphans
            })
            .collect();
        let mut history: Vec<Vec<Pod>> = vec![world.clone()];
        let mut pending = Pending::default();
        let mut next = 0;
        let mut quiet = 0;
        let mut seen_at = 0;
        for step in 0..200 {
            // The cache catches up by a random amount, never going back.
            seen_at = (seen_at + rng.below(3)).min(history.len() - 1);
            let cache = arcs(history[seen_at].clone());
            let seen: HashSet<&str> = cache.iter().map(|p| p.uid.as_str()).collect();
            pending.settle(&seen, step);
            let plan = plan(&sets, &cache, &pending, step);
            let mut acted = false;
            for a in &plan.actions {
                match a {
                    Action::Create { set, count } => {
                        for _ in 0..*count {
                            next += 1;
                            let mut p = pod(&format!("n{next}"), Some(&set.uid), "");
                            p.labels = set.template_labels.clone();
                            pending.created(p.uid.clone(), set.uid.clone(), step);
                            world.push(p);
                        }
                        acted = true;
                    }
                    Action::Delete { pods, .. } => {
                        for r in pods {
                            world.retain(|p| p.uid != r.uid);
                            pending.deleted(r.uid.clone(), step);
                        }
                        acted = true;
                    }
                    Action::Adopt { set, pod } => {
                        if let Some(p) = world
                            .iter_mut()
                            .find(|p| p.uid == pod.uid && p.controller.is_none())
                        {
                            p.controller = Some(set.uid.clone());
                        }
                        acted = true;
                    }
                    Action::Release { pod, .. } => {
                        if let Some(p) = world.iter_mut().find(|p| p.uid == pod.uid) {
                            p.controller = None;
                        }
                        acted = true;
                    }
                    Action::Status { .. } => {}
                }
            }
            for (i, s) in sets.iter().enumerate() {
                let n = active(&world, s);
                assert!(
                    n <= (s.replicas as usize).max(start[i]),
                    "seed {seed} step {step}: {} has {n} pods for {} replicas",
                    s.name,
                    s.replicas
                );
            }
            history.push(world.clone());
            quiet = if acted { 0 } else { quiet + 1 };
            if quiet > 3 && pending.is_empty() && seen_at == history.len() - 1 {
                break;
            }
        }
        for s in &sets {
            assert_eq!(
                active(&world, s),
                s.replicas as usize,
                "seed {seed}: {} did not converge",
                s.name
            );
        }
    }
}
