use super::*;
use crate::workload::Phase;

fn sts(replicas: usize, parallel: bool) -> StatefulSet {
    StatefulSet::of(&json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "sts-1", "generation": 1},
        "spec": {"replicas": replicas, "serviceName": "nginx",
                 "podManagementPolicy": if parallel {"Parallel"} else {"OrderedReady"},
                 "selector": {"matchLabels": {"app": "nginx"}},
                 "template": {"metadata": {"labels": {"app": "nginx"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {},
    }))
    .unwrap()
}

/// The pod as the server would store it (a uid added), read back.
fn made(pod: &Value, uid: &str) -> Pod {
    let mut p = pod.clone();
    p["metadata"]["uid"] = uid.into();
    Pod::of("StatefulSet", &p).unwrap()
}

fn creates(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Pod(PodWrite::Create { pod, .. }) => {
                Some(pod["metadata"]["name"].as_str().unwrap().to_owned())
            }
            _ => None,
        })
        .collect()
}

fn deletes(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Pod(PodWrite::Delete { pod, .. }) => Some(pod.name.clone()),
            _ => None,
        })
        .collect()
}

fn status(actions: &[Action]) -> Value {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Status { patch, .. } => Some(patch.clone()),
            _ => None,
        })
        .unwrap_or(Value::Null)
}

fn ready(mut p: Pod) -> Pod {
    p.phase = Phase::Running;
    p.ready = true;
    p
}

#[test]
fn ordered_ready_makes_one_at_a_time_with_stable_identity() {
    let s = sts(3, false);
    let a = plan(std::slice::from_ref(&s), &[]);
    assert_eq!(creates(&a), ["web-0"]);
    let Some(Action::Pod(PodWrite::Create { pod, .. })) = a.first() else {
        unreachable!()
    };
    assert_eq!(pod["spec"]["hostname"], "web-0");
    assert_eq!(pod["spec"]["subdomain"], "nginx");
    assert_eq!(pod["metadata"]["labels"][POD_NAME], "web-0");
    assert_eq!(pod["metadata"]["labels"]["app"], "nginx");
    assert_eq!(
        pod["metadata"]["labels"][REVISION_HASH],
        s.revision.as_str()
    );
    let web0 = made(pod, "u0");
    // Pending: wait.
    assert!(creates(&plan(std::slice::from_ref(&s), std::slice::from_ref(&web0))).is_empty());
    // Ready: the next one.
    let a = plan(std::slice::from_ref(&s), &[ready(web0.clone())]);
    assert_eq!(creates(&a), ["web-1"]);
    assert_eq!(status(&a)["readyReplicas"], 1);
    assert_eq!(status(&a)["replicas"], 1);
}

#[test]
fn parallel_makes_all_and_scale_down_goes_in_reverse() {
    let s = sts(3, true);
    assert_eq!(
        creates(&plan(std::slice::from_ref(&s), &[])),
        ["web-0", "web-1", "web-2"]
    );
    let pods: Vec<Pod> = (0..4)
        .map(|i| ready(made(&s.pod_for(i), &format!("u{i}"))))
        .collect();
    let ordered = sts(2, false);
    assert_eq!(
        deletes(&plan(std::slice::from_ref(&ordered), &pods)),
        ["web-3"]
    );
    let mut unready = pods.clone();
    unready[0].ready = false;
    assert!(deletes(&plan(std::slice::from_ref(&ordered), &unready)).is_empty());
    assert_eq!(
        deletes(&plan(&[sts(1, true)], &pods)),
        ["web-3", "web-2", "web-1"]
    );
}

#[test]
fn a_deleted_or_failed_pod_comes_back_with_its_name() {
    let s = sts(3, false);
    let mut pods: Vec<Pod> = (0..3)
        .map(|i| ready(made(&s.pod_for(i), &format!("u{i}"))))
        .collect();
    let a = plan(std::slice::from_ref(&s), &pods);
    assert!(creates(&a).is_empty() && deletes(&a).is_empty(), "{a:?}");
    pods.remove(1);
    assert_eq!(creates(&plan(std::slice::from_ref(&s), &pods)), ["web-1"]);
    pods[0].phase = Phase::Failed;
    assert_eq!(deletes(&plan(std::slice::from_ref(&s), &pods)), ["web-0"]);
}

#[test]
fn rolling_update_goes_from_the_highest_ordinal_and_moves_the_revision() {
    let old = sts(3, false);
    let pods: Vec<Pod> = (0..3)
        .map(|i| ready(made(&old.pod_for(i), &format!("u{i}"))))
        .collect();
    let mut s = old.clone();
    s.template["spec"]["containers"][0]["image"] = "nginx:2".into();
    s.revision = format!("web-{}", workload::template_hash(&s.template));
    s.status = json!({"currentRevision": old.revision});
    let a = plan(std::slice::from_ref(&s), &pods);
    assert_eq!(deletes(&a), ["web-2"]);
    assert_eq!(status(&a)["updateRevision"], s.revision.as_str());
    assert_eq!(status(&a)["currentRevision"], Value::Null, "unchanged");
    assert_eq!(status(&a)["currentReplicas"], 3);
    // With every pod updated and ready, the current revision follows.
    let new: Vec<Pod> = (0..3)
        .map(|i| ready(made(&s.pod_for(i), &format!("n{i}"))))
        .collect();
    let a = plan(std::slice::from_ref(&s), &new);
    assert_eq!(status(&a)["currentRevision"], s.revision.as_str());
    // A partition keeps the ordinals below it.
    s.partition = Some(2);
    let mut mixed = pods.clone();
    mixed[2] = new[2].clone();
    assert!(deletes(&plan(std::slice::from_ref(&s), &mixed)).is_empty());
}

/// A small deterministic generator (xorshift), as in gc/tests.rs.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Random replica counts changing over time, pods becoming ready, failing
/// and being deleted by someone else at random: under OrderedReady no pod
/// with ordinal i+1 is ever made while 0..=i are not all Running and Ready,
/// at most one pod is created or deleted per plan, and when the world stays
/// still the set converges to exactly pods 0..n, all of the template.
#[test]
fn ordered_ready_never_makes_i_plus_1_before_i_is_ready() {
    for seed in 1..400u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let parallel = rng.below(4) == 0;
        let mut s = sts(rng.below(6), parallel);
        let mut pods: Vec<Pod> = Vec::new();
        let mut uid = 0;
        for round in 0..80 {
            let calm = round >= 50;
            if !calm && rng.below(10) == 0 {
                s.replicas = rng.below(6);
            }
            let actions = plan(std::slice::from_ref(&s), &pods);
            let writes = actions
                .iter()
                .filter(|a| matches!(a, Action::Pod(_)))
                .count();
            if !parallel {
                assert!(writes <= 1, "seed {seed}: {writes} writes at once");
            }
            for a in &actions {
                match a {
                    Action::Pod(PodWrite::Create { pod, .. }) => {
                        let p = made(pod, &format!("u{uid}"));
                        uid += 1;
                        let i = s.ordinal(&p).unwrap();
                        assert!(
                            i < s.replicas,
                            "seed {seed}: made ordinal {i} of {}",
                            s.replicas
                        );
                        if !parallel {
                            for j in 0..i {
                                assert!(
                                    pods.iter()
                                        .any(|q| s.ordinal(q) == Some(j) && q.running_ready()),
                                    "seed {seed}: made {} before ordinal {j} was ready",
                                    p.name
                                );
                            }
                        }
                        assert!(
                            !pods.iter().any(|q| q.name == p.name),
                            "seed {seed}: two pods named {}",
                            p.name
                        );
                        pods.push(p);
                    }
                    Action::Pod(PodWrite::Delete { pod, .. }) => pods.retain(|p| p.uid != pod.uid),
                    Action::Status { patch, .. } => {
                        if let (Some(st), Some(p)) = (s.status.as_object_mut(), patch.as_object()) {
                            st.extend(p.clone());
                        }
                    }
                }
            }
            // The nodes: pods start (or fail); someone deletes one now and then.
            for p in pods.iter_mut() {
                match (p.phase, rng.below(4)) {
                    (Phase::Pending, 0 | 1) => {
                        p.phase = Phase::Running;
                        p.ready = true;
                    }
                    (Phase::Running, 0) if !calm => p.phase = Phase::Failed,
                    _ => {}
                }
            }
            if !calm && !pods.is_empty() && rng.below(8) == 0 {
                let i = rng.below(pods.len());
                pods.remove(i);
            }
        }
        let mut names: Vec<String> = pods.iter().map(|p| p.name.clone()).collect();
        names.sort();
        let mut want: Vec<String> = (0..s.replicas).map(|i| format!("web-{i}")).collect();
        want.sort();
        assert_eq!(names, want, "seed {seed}");
        assert!(pods.iter().all(|p| p.running_ready()), "seed {seed}");
        assert_eq!(s.status["readyReplicas"], s.replicas, "seed {seed}");
        assert_eq!(
            s.status["currentRevision"], s.status["updateRevision"],
            "seed {seed}"
        );
    }
}
