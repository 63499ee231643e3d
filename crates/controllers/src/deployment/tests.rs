use super::*;

fn deployment(replicas: i64, image: &str, strategy: Value) -> Deployment {
    Deployment::of(&json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d1", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }))
    .unwrap()
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// A set made from what a Create action asked for, with these pods.
fn made(obj: &Value, uid: &str, created: i64) -> Set {
    let mut v = obj.clone();
    v["metadata"]["uid"] = uid.into();
    v["metadata"]["generation"] = 1.into();
    v["metadata"]["resourceVersion"] = "1".into();
    v["status"]["observedGeneration"] = 1.into();
    let mut s = Set::of(&v).unwrap();
    s.created = created;
    s
}

#[test]
fn amounts_round_as_kubernetes_does() {
    let d = deployment(10, "a", rolling(json!("25%"), json!("25%")));
    assert_eq!(d.surge_and_unavailable(), (3, 2));
    let d = deployment(3, "a", rolling(json!(0), json!("10%")));
    assert_eq!(
        d.surge_and_unavailable(),
        (0, 1),
        "both zero after rounding: one"
    );
    let d = deployment(4, "a", rolling(json!(2), json!(9)));
    assert_eq!(
        d.surge_and_unavailable(),
        (2, 4),
        "never more unavailable than replicas"
    );
    let d = deployment(4, "a", json!({}));
    assert_eq!(d.surge_and_unavailable(), (1, 1), "defaults 25%/25%");
}

#[test]
fn the_hash_is_stable_and_ignores_what_round_trips_change() {
    let t = json!({"metadata": {"labels": {"app": "web"}},
                   "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let round_tripped = json!({"metadata": {"labels": {"app": "web", HASH_LABEL: "x"}, "creationTimestamp": null},
                   "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {}}]}});
    let h = template_hash(&t, 0);
    assert_eq!(h, template_hash(&round_tripped, 0));
    assert_ne!(h, template_hash(&t, 1));
    assert!(
        h.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{h}"
    );
    let other = json!({"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}});
    assert_ne!(h, template_hash(&other, 0));
}

#[test]
fn a_new_deployment_gets_a_replica_set_of_revision_one() {
    let d = Arc::new(deployment(3, "nginx", json!({})));
    let plan = plan(std::slice::from_ref(&d), &[], 100);
    let Some(Action::Create { set, .. }) = plan.actions.first() else {
        panic!("{plan:?}");
    };
    let hash = template_hash(&d.template, 0);
    assert_eq!(set["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(set["metadata"]["labels"][HASH_LABEL], hash.as_str());
    assert_eq!(
        set["spec"]["selector"]["matchLabels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(
        set["spec"]["template"]["metadata"]["labels"][HASH_LABEL],
        hash.as_str()
    );
    assert_eq!(set["spec"]["replicas"], 3);
    assert_eq!(set["metadata"]["annotations"][REVISION], "1");
    assert_eq!(set["metadata"]["annotations"][DESIRED_REPLICAS], "3");
    assert_eq!(set["metadata"]["ownerReferences"][0]["controller"], true);
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Annotate { revision, .. } if revision == "1"))
    );
    let status = plan.actions.iter().find_map(|a| match a {
        Action::Status { status, .. } => Some(status),
        _ => None,
    });
    let c = condition(status.unwrap(), "Progressing").unwrap();
    assert_eq!(c["reason"], "NewReplicaSetCreated");
    assert_eq!(plan.wake_in, Some(601));
}

#[test]
fn undo_reuses_the_old_set_and_moves_its_revision_up() {
    let v1 = deployment(2, "nginx:1", json!({}));
    let v2 = deployment(2, "nginx:2", json!({}));
    let mut old = made(
        &new_set_object(&v1, &template_hash(&v1.template, 0), 0, 1, 1),
        "s1",
        1,
    );
    old.replicas = 0;
    let cur = made(
        &new_set_object(&v2, &template_hash(&v2.template, 0), 2, 2, 1),
        "s2",
        2,
    );
    // The Deployment's template is v1's again, as `rollout undo` patches it.
    let d = Arc::new(v1);
    let plan = plan(&[d], &[Arc::new(old), Arc::new(cur)], 100);
    assert!(
        !plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Create { .. })),
        "{plan:?}"
    );
    let bumped = plan.actions.iter().find_map(|a| match a {
        Action::Scale {
            set, annotations, ..
        } if set.uid == "s1" => Some(annotations.clone()),
        _ => None,
    });
    let bumped = bumped.expect("the old set is scaled up again");
    assert_eq!(bumped[REVISION], "3");
    assert_eq!(bumped[REVISION_HISTORY], "1");
    assert!(
        plan.actions
            .iter()
            .any(|a| matches!(a, Action::Annotate { revision, .. } if revision == "3"))
    );
}

#[test]
fn recreate_scales_old_sets_to_zero_before_the_new_one_grows() {
    let v1 = deployment(3, "a", json!({"type": "Recreate"}));
    let mut old = made(
        &new_set_object(&v1, &template_hash(&v1.template, 0), 3, 1, 0),
        "s1",
        1,
    );
    old.current = 3;
    let d = Arc::new(deployment(3, "b", json!({"type": "Recreate"})));
    let p = plan(std::slice::from_ref(&d), &[Arc::new(old.clone())], 100);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Scale { replicas: 0, .. }))
    );
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Create { .. })));
    // Scaled to zero but pods still there: wait.
    old.replicas = 0;
    let p = plan(std::slice::from_ref(&d), &[Arc::new(old.clone())], 100);
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::Create { .. })),
        "{p:?}"
    );
    old.current = 0;
    let p = plan(std::slice::from_ref(&d), &[Arc::new(old)], 100);
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Create { set, .. } if set["spec"]["replicas"] == 3))
    );
}

#[test]
fn progress_completes_or_times_out() {
    let mut d = deployment(2, "a", json!({}));
    let mut s = made(
        &new_set_object(&d, &template_hash(&d.template, 0), 2, 1, 1),
        "s1",
        1,
    );
    d.annotations.insert(REVISION.into(), "1".into());
    d.status = json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                        "lastUpdateTime": "1970-01-01T00:00:10Z", "lastTransitionTime": "1970-01-01T00:00:10Z"}]});
    s.current = 2;
    let status_of = |p: &Plan| {
        p.actions.iter().find_map(|a| match a {
            Action::Status { status, .. } => Some(status.clone()),
            _ => None,
        })
    };
    // No progress for more than 600 s.
    let p = plan(&[Arc::new(d.clone())], &[Arc::new(s.clone())], 700);
    let st = status_of(&p).unwrap();
    assert_eq!(
        condition(&st, "Progressing").unwrap()["reason"],
        "ProgressDeadlineExceeded"
    );
    assert_eq!(condition(&st, "Progressing").unwrap()["status"], "False");
    assert_eq!(condition(&st, "Available").unwrap()["status"], "False");
    // Before the deadline: nothing new, and a wake-up at the deadline.
    let p = plan(&[Arc::new(d.clone())], &[Arc::new(s.clone())], 300);
    let st = status_of(&p).unwrap();
    assert_eq!(
        condition(&st, "Progressing").unwrap()["reason"],
        "ReplicaSetUpdated"
    );
    assert_eq!(p.wake_in, Some(311));
    // Every pod available: complete.
    s.ready = 2;
    s.available = 2;
    let p = plan(&[Arc::new(d)], &[Arc::new(s)], 700);
    let st = status_of(&p).unwrap();
    assert_eq!(
        condition(&st, "Progressing").unwrap()["reason"],
        "NewReplicaSetAvailable"
    );
    assert_eq!(st["availableReplicas"], 2);
    assert_eq!(st["unavailableReplicas"], 0);
}

#[test]
fn old_sets_beyond_the_history_limit_are_deleted() {
    let mut d = deployment(1, "new", json!({}));
    d.history_limit = 1;
    let mut sets = Vec::new();
    for (i, image) in ["a", "b", "c"].iter().enumerate() {
        let old = deployment(1, image, json!({}));
        let mut s = made(
            &new_set_object(&old, &template_hash(&old.template, 0), 0, i as i64 + 1, 1),
            &format!("s{i}"),
            i as i64,
        );
        s.replicas = 0;
        sets.push(Arc::new(s));
    }
    let mut cur = made(
        &new_set_object(&d, &template_hash(&d.template, 0), 1, 4, 1),
        "cur",
        9,
    );
    (cur.current, cur.ready, cur.available) = (1, 1, 1);
    sets.push(Arc::new(cur));
    d.annotations.insert(REVISION.into(), "4".into());
    let p = plan(&[Arc::new(d)], &sets, 100);
    let deleted: Vec<&str> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { set } => Some(set.uid.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["s0", "s1"]);
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll_out() {
    let v1 = deployment(2, "a", json!({}));
    let mut old = made(
        &new_set_object(&v1, &template_hash(&v1.template, 0), 2, 1, 1),
        "s1",
        1,
    );
    old.current = 2;
    let mut d = deployment(5, "b", json!({}));
    d.paused = true;
    let p = plan(&[Arc::new(d)], &[Arc::new(old)], 100);
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::Create { .. })),
        "{p:?}"
    );
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::Scale { replicas: 5, .. }))
    );
}

#[test]
fn resizing_mid_rollout_scales_every_set_in_proportion() {
    let v1 = deployment(10, "a", json!({}));
    let v2 = deployment(10, "b", json!({}));
    let mut old = made(
        &new_set_object(&v1, &template_hash(&v1.template, 0), 6, 1, 3),
        "s1",
        1,
    );
    let mut cur = made(
        &new_set_object(&v2, &template_hash(&v2.template, 0), 5, 2, 3),
        "s2",
        2,
    );
    (old.current, old.available) = (6, 6);
    (cur.current, cur.available) = (5, 0);
    // 20 replicas with 25% surge: 25 pods allowed, 11 now, 14 to add. Each
    // set was sized for 13: 6 → round(6 × 25 / 13) = 12, 5 → 10; the 3 left
    // over go to the largest.
    let d = Arc::new(deployment(20, "b", json!({})));
    let p = plan(&[d], &[Arc::new(old), Arc::new(cur)], 100);
    let sizes: BTreeMap<&str, i64> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Scale {
                set,
                replicas,
                annotations,
                ..
            } => {
                assert_eq!(annotations[DESIRED_REPLICAS], "20");
                assert_eq!(annotations[MAX_REPLICAS], "25");
                Some((set.uid.as_str(), *replicas))
            }
            _ => None,
        })
        .collect();
    assert_eq!(sizes, BTreeMap::from([("s1", 15), ("s2", 10)]));
}

#[test]
fn orphaned_sets_it_selects_are_adopted_before_anything_else() {
    let d = deployment(2, "a", json!({}));
    let mut orphan = made(
        &new_set_object(&d, &template_hash(&d.template, 0), 2, 1, 1),
        "s1",
        1,
    );
    orphan.controller = None;
    let mut other = orphan.clone();
    other.uid = "s2".into();
    other.labels = [("app".to_owned(), "db".to_owned())].into();
    let p = plan(&[Arc::new(d)], &[Arc::new(orphan), Arc::new(other)], 100);
    assert_eq!(p.actions.len(), 1, "{p:?}");
    assert!(matches!(&p.actions[0], Action::Adopt { set, .. } if set.uid == "s1"));
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

    fn amount(&mut self) -> Value {
        if self.below(2) == 0 {
            json!(self.below(4))
        } else {
            json!(format!("{}%", self.below(60)))
        }
    }
}

/// A set and its pods (true: available), with the ReplicaSet controller
/// modelled as instant: it makes missing pods (not yet available) and
/// deletes unavailable ones first; its status catches up at random.
struct Sim {
    set: Set,
    pods: Vec<bool>,
    /// What its status says (pods, available): it lags.
    reported: (i64, i64),
}

struct World {
    d: Deployment,
    sims: Vec<Sim>,
    next: i64,
}

impl World {
    fn step(&mut self, now: i64) {
        let sets: Vec<Arc<Set>> = self
            .sims
            .iter()
            .map(|s| {
                let mut set = s.set.clone();
                (set.current, set.available) = s.reported;
                set.ready = set.available;
                Arc::new(set)
            })
            .collect();
        let plan = plan(&[Arc::new(self.d.clone())], &sets, now);
        for a in plan.actions {
            match a {
                Action::Create { set, .. } => {
                    self.next += 1;
                    let s = made(&set, &format!("s{}", self.next), self.next);
                    self.sims.push(Sim {
                        set: s,
                        pods: Vec::new(),
                        reported: (0, 0),
                    });
                }
                Action::Scale {
                    set,
                    replicas,
                    annotations,
                    ..
                } => {
                    let sim = self.sims.iter_mut().find(|s| s.set.uid == set.uid).unwrap();
                    sim.set.replicas = replicas;
                    sim.set.annotations = annotations;
                }
                Action::Delete { set } => self.sims.retain(|s| s.set.uid != set.uid),
                Action::Adopt { .. } => unreachable!("no orphans here"),
                Action::Annotate { revision, .. } => {
                    self.d.annotations.insert(REVISION.into(), revision);
                }
                Action::Status { status, .. } => self.d.status = status,
            }
        }
        for s in &mut self.sims {
            while s.pods.len() as i64 > s.set.replicas {
                let i = s.pods.iter().position(|a| !a).unwrap_or(0);
                s.pods.remove(i);
            }
            while (s.pods.len() as i64) < s.set.replicas {
                s.pods.push(false);
            }
        }
    }

    fn pods(&self) -> (i64, i64) {
        let all = self.sims.iter().map(|s| s.pods.len() as i64).sum();
        let available = self
            .sims
            .iter()
            .flat_map(|s| &s.pods)
            .filter(|a| **a)
            .count() as i64;
        (all, available)
    }

    fn ripen(&mut self, rng: &mut Rng) {
        for s in &mut self.sims {
            if rng.below(2) == 0 {
                let available = s.pods.iter().filter(|a| **a).count() as i64;
                s.reported = (s.pods.len() as i64, available);
            }
            for p in &mut s.pods {
                if rng.below(3) == 0 {
                    *p = true;
                }
            }
        }
    }
}

/// A rolled-out Deployment gets a new template (sometimes a new replica
/// count with it or during the rollout, scaled in proportion): at every step
/// the pods stay within replicas + maxSurge and the available ones at or
/// above replicas − maxUnavailable (when not resized), and it converges to
/// the new template's set alone, complete, revision 2.
#[test]
fn rolling_updates_respect_surge_and_unavailability_and_converge() {
    for seed in 1..300u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let replicas = 1 + rng.below(12) as i64;
        let mut strategy = rolling(rng.amount(), rng.amount());
        if strategy["rollingUpdate"]["maxSurge"] == 0
            && strategy["rollingUpdate"]["maxUnavailable"] == 0
        {
            strategy["rollingUpdate"]["maxSurge"] = json!(1);
        }
        let mut w = World {
            d: deployment(replicas, "v1", strategy.clone()),
            sims: Vec::new(),
            next: 0,
        };
        for t in 0..100 {
            w.step(t);
            w.ripen(&mut rng);
        }
        assert_eq!(
            w.pods(),
            (replicas, replicas),
            "seed {seed}: v1 did not roll out"
        );
        // A third resize with the new template, a third later, mid-rollout.
        let (new_replicas, resize_at) = match rng.below(3) {
            0 => (1 + rng.below(12) as i64, 100),
            1 => (1 + rng.below(12) as i64, 101 + rng.below(10) as i64),
            _ => (replicas, 100),
        };
        let mut d = deployment(
            if resize_at == 100 {
                new_replicas
            } else {
                replicas
            },
            "v2",
            strategy,
        );
        d.generation = 2;
        d.annotations = w.d.annotations.clone();
        d.status = w.d.status.clone();
        w.d = d;
        let (surge, unavailable) = w.d.surge_and_unavailable();
        for t in 100..300 {
            if t == resize_at && t > 100 {
                w.d.replicas = new_replicas;
                w.d.generation = 3;
            }
            w.step(t);
            let (all, available) = w.pods();
            if new_replicas == replicas {
                assert!(
                    all <= replicas + surge,
                    "seed {seed} t {t}: {all} pods > {replicas} + {surge}"
                );
                assert!(
                    available >= replicas - unavailable,
                    "seed {seed} t {t}: {available} available < {replicas} - {unavailable}"
                );
            }
            w.ripen(&mut rng);
        }
        assert_eq!(
            w.sims.iter().filter(|s| s.set.replicas > 0).count(),
            1,
            "seed {seed}"
        );
        let cur = w.sims.iter().find(|s| s.set.replicas > 0).unwrap();
        assert_eq!(cur.set.template, comparable(&w.d.template), "seed {seed}");
        assert_eq!(cur.pods, vec![true; new_replicas as usize], "seed {seed}");
        assert_eq!(cur.set.annotations[REVISION], "2", "seed {seed}");
        assert_eq!(w.d.annotations[REVISION], "2", "seed {seed}");
        let c = condition(&w.d.status, "Progressing").unwrap();
        assert_eq!(c["reason"], "NewReplicaSetAvailable", "seed {seed}");
    }
}
