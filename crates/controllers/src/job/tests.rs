use super::*;

fn job(completions: Option<usize>, parallelism: usize, backoff: usize) -> Job {
    let mut spec = json!({"parallelism": parallelism, "backoffLimit": backoff,
        "template": {"metadata": {"labels": {"app": "pi"}},
                     "spec": {"restartPolicy": "Never",
                              "containers": [{"name": "c", "image": "busybox"}]}}});
    if let Some(c) = completions {
        spec["completions"] = c.into();
    }
    Job::of(&json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "job-1"},
        "spec": spec,
        "status": {},
    }))
    .unwrap()
}

fn made(j: &Job, n: usize) -> Pod {
    let mut p = j.pod();
    p["metadata"]["uid"] = format!("u{n}").into();
    p["metadata"]["name"] = format!("pi-{n}").into();
    Pod::of("Job", &p).unwrap()
}

fn with(mut p: Pod, phase: Phase) -> Pod {
    p.phase = phase;
    p.ready = phase == Phase::Running;
    p
}

fn count(actions: &[Action]) -> (usize, usize) {
    let c = actions
        .iter()
        .filter(|a| matches!(a, Action::Pod(PodWrite::Create { .. })))
        .count();
    let d = actions
        .iter()
        .filter(|a| matches!(a, Action::Pod(PodWrite::Delete { .. })))
        .count();
    (c, d)
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

#[test]
fn runs_parallelism_pods_with_the_job_labels() {
    let j = job(Some(5), 2, 6);
    let a = plan(std::slice::from_ref(&j), &[], 1000);
    assert_eq!(count(&a), (2, 0));
    let Some(Action::Pod(PodWrite::Create { pod, .. })) = a.first() else {
        unreachable!()
    };
    assert_eq!(pod["metadata"]["generateName"], "pi-");
    assert_eq!(pod["metadata"]["labels"]["job-name"], "pi");
    assert_eq!(
        pod["metadata"]["labels"]["batch.kubernetes.io/controller-uid"],
        "job-1"
    );
    assert_eq!(pod["metadata"]["labels"]["app"], "pi");
    assert_eq!(status(&a)["startTime"], format_time(1000));
    // Only what completions still need.
    let pods: Vec<Pod> = (0..4)
        .map(|i| with(made(&j, i), Phase::Succeeded))
        .collect();
    assert_eq!(count(&plan(std::slice::from_ref(&j), &pods, 1000)), (1, 0));
}

#[test]
fn completes_when_succeeded_reaches_completions() {
    let j = job(Some(2), 1, 6);
    let pods = [
        with(made(&j, 0), Phase::Succeeded),
        with(made(&j, 1), Phase::Succeeded),
    ];
    let a = plan(std::slice::from_ref(&j), &pods, 2000);
    assert_eq!(count(&a), (0, 0));
    let s = status(&a);
    assert_eq!(s["succeeded"], 2);
    assert_eq!(s["active"], 0);
    assert_eq!(s["conditions"][0]["type"], "Complete");
    assert_eq!(s["completionTime"], format_time(2000));
    // Once complete, nothing more happens.
    let mut done = j.clone();
    done.status = s;
    let again = plan(&[done], &pods, 3000);
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn backoff_limit_fails_the_job_and_stops_its_pods() {
    let j = job(Some(3), 2, 1);
    let pods = [
        with(made(&j, 0), Phase::Failed),
        with(made(&j, 1), Phase::Failed),
        with(made(&j, 2), Phase::Running),
    ];
    let a = plan(std::slice::from_ref(&j), &pods, 10);
    assert_eq!(count(&a), (0, 1));
    let s = status(&a);
    assert_eq!(s["failed"], 2);
    assert_eq!(s["conditions"][0]["type"], "Failed");
    assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
    assert!(s["completionTime"].is_null());
    // Within the limit, a failed pod is replaced.
    let a = plan(std::slice::from_ref(&j), &pods[1..], 10);
    assert_eq!(count(&a), (1, 0));
    // With OnFailure, restarts count.
    let mut on_failure = j.clone();
    on_failure.on_failure = true;
    let mut restarted = with(made(&j, 3), Phase::Running);
    restarted.restarts = 2;
    let a = plan(&[on_failure], &[restarted], 10);
    assert_eq!(
        status(&a)["conditions"][0]["reason"],
        "BackoffLimitExceeded"
    );
}

#[test]
fn a_replacement_waits_out_the_back_off() {
    let j = job(Some(1), 1, 6);
    let failed = |n: usize, at: i64| {
        let mut p = with(made(&j, n), Phase::Failed);
        p.finished_at = Some(at);
        p
    };
    // One failure at 100: nothing until 110.
    let one = [failed(0, 100)];
    assert_eq!(count(&plan(std::slice::from_ref(&j), &one, 109)), (0, 0));
    assert_eq!(count(&plan(std::slice::from_ref(&j), &one, 110)), (1, 0));
    // Three: 40 s after the last.
    let three = [failed(0, 50), failed(1, 100), failed(2, 90)];
    assert_eq!(count(&plan(std::slice::from_ref(&j), &three, 139)), (0, 0));
    assert_eq!(count(&plan(std::slice::from_ref(&j), &three, 140)), (1, 0));
    // Never more than 6 minutes.
    let many: Vec<Pod> = (0..8).map(|i| failed(i, 100)).collect();
    let patient = job(Some(1), 1, 10);
    assert_eq!(
        count(&plan(std::slice::from_ref(&patient), &many, 459)),
        (0, 0)
    );
    assert_eq!(count(&plan(&[patient], &many, 460)), (1, 0));
}

#[test]
fn a_work_queue_is_done_when_one_succeeded_and_none_run() {
    let j = job(None, 3, 6);
    assert_eq!(j.completions, None);
    let pods = [
        with(made(&j, 0), Phase::Succeeded),
        with(made(&j, 1), Phase::Running),
    ];
    let a = plan(std::slice::from_ref(&j), &pods, 10);
    assert_eq!(count(&a), (0, 0));
    assert!(status(&a)["conditions"].is_null());
    let a = plan(std::slice::from_ref(&j), &pods[..1], 10);
    assert_eq!(status(&a)["conditions"][0]["type"], "Complete");
    // No parallelism, no completions: one pod, done at one success.
    let one = Job::of(
        &json!({"metadata": {"name": "x", "namespace": "d", "uid": "u"},
                              "spec": {"template": {}}}),
    )
    .unwrap();
    assert_eq!(one.completions, Some(1));
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

/// Random completions, parallelism and backoff limits, pods succeeding or
/// failing at random: the Job never has more than `parallelism` active pods,
/// never more than `completions` successes, makes no pod once it has failed
/// more than `backoffLimit` times, and always ends Complete or Failed with
/// no active pod.
#[test]
fn never_exceeds_parallelism_and_stops_at_completions_or_backoff() {
    for seed in 1..500u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let completions = (rng.below(4) != 0).then(|| 1 + rng.below(6));
        let mut j = job(completions, 1 + rng.below(4), rng.below(4));
        let fail_odds = 1 + rng.below(4);
        let mut pods: Vec<Pod> = Vec::new();
        let mut n = 0;
        for round in 0..200 {
            let actions = plan(std::slice::from_ref(&j), &pods, round);
            let failed_before = pods.iter().filter(|p| p.phase == Phase::Failed).count();
            for a in &actions {
                match a {
                    Action::Pod(PodWrite::Create { .. }) => {
                        assert!(
                            failed_before <= j.backoff_limit,
                            "seed {seed}: a pod made past the backoff limit"
                        );
                        assert!(
                            j.finished().is_none(),
                            "seed {seed}: a pod made when finished"
                        );
                        pods.push(made(&j, n));
                        n += 1;
                    }
                    Action::Pod(PodWrite::Delete { pod, .. }) => pods.retain(|p| p.uid != pod.uid),
                    Action::Status { patch, .. } => {
                        if let (Some(st), Some(p)) = (j.status.as_object_mut(), patch.as_object()) {
                            st.extend(p.clone());
                        }
                    }
                    Action::Event { .. } => {}
                }
            }
            let active = pods.iter().filter(|p| !p.phase.terminal()).count();
            assert!(
                active <= j.parallelism,
                "seed {seed}: {active} active > {}",
                j.parallelism
            );
            let succeeded = pods.iter().filter(|p| p.phase == Phase::Succeeded).count();
            if let Some(c) = j.completions {
                assert!(succeeded <= c, "seed {seed}: {succeeded} succeeded of {c}");
            }
            if j.finished().is_some() && round > 0 {
                let again = plan(std::slice::from_ref(&j), &pods, round + 1);
                assert!(again.is_empty(), "seed {seed}: {again:?}");
                break;
            }
            // The nodes: an active pod succeeds or fails now and then.
            for p in pods.iter_mut().filter(|p| !p.phase.terminal()) {
                match rng.below(2 * fail_odds + 2) {
                    0 => p.phase = Phase::Failed,
                    1 | 2 => p.phase = Phase::Succeeded,
                    _ => p.phase = Phase::Running,
                }
            }
        }
        let fin = j.finished();
        assert!(fin.is_some(), "seed {seed}: never finished: {:?}", j.status);
        assert_eq!(j.status["active"], 0, "seed {seed}");
        let failed = pods.iter().filter(|p| p.phase == Phase::Failed).count();
        if fin == Some("Failed") {
            assert!(failed > j.backoff_limit, "seed {seed}");
        } else if let Some(c) = j.completions {
            assert_eq!(j.status["succeeded"], c, "seed {seed}");
        }
    }
}
