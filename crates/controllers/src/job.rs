//! The Job controller: runs pods until `completions` of them succeed, at most
//! `parallelism` at once, giving up after `backoffLimit` failures, as
//! Kubernetes' does.
//!
//! - Succeeded and failed pods are kept (they are the Job's record) and
//!   counted; with `restartPolicy: OnFailure` container restarts count as
//!   failures too, since the pod itself does not fail.
//! - `completions` unset: the Job is done once any pod has succeeded and none
//!   is active (a work queue).
//! - Done: condition `Complete` and `completionTime`; given up: condition
//!   `Failed` with reason `BackoffLimitExceeded`, and the active pods deleted.
//! - Pods get `batch.kubernetes.io/controller-uid`, `controller-uid`,
//!   `batch.kubernetes.io/job-name` and `job-name` labels; the Job's pods are
//!   those it controls (ownerReference), so a selector is not needed unless
//!   `manualSelector` is set, and then it is the user's to keep right.
//! - A failed pod's replacement waits 10 s after its end, doubling with each
//!   failure up to 6 minutes (re-planned at the controllers' 10 s resync).
//! - Not here: Indexed completion, `activeDeadlineSeconds`, `suspend`, pod
//!   failure policies and `ttlSecondsAfterFinished`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bosun_api::Resource;
use bosun_api::resource;
use bosun_api::time::format_time;
use bosun_client::events::{EventType, Recorder};
use bosun_client::{Cache, Client, Error, Selector, Watcher, reflect};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::workload::{self, Expectations, Owner, Phase, Pod, PodWrite, Seen};

/// The back-off before a failed pod's replacement: 10 s, doubling, at most 6 minutes.
const BACKOFF_BASE: i64 = 10;
const BACKOFF_MAX: i64 = 360;

pub fn jobs() -> &'static Resource {
    resource::find("batch", "v1", "jobs").expect("in the table")
}

/// A Job, as this controller reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub owner: Owner,
    pub parallelism: usize,
    pub completions: Option<usize>,
    pub backoff_limit: usize,
    pub on_failure: bool,
    pub template: Value,
    pub status: Value,
    pub deleting: bool,
}

impl Job {
    pub fn of(v: &Value) -> Option<Job> {
        let m = &v["metadata"];
        let spec = &v["spec"];
        Some(Job {
            owner: Owner {
                api_version: "batch/v1",
                kind: "Job",
                namespace: m["namespace"].as_str()?.to_owned(),
                name: m["name"].as_str()?.to_owned(),
                uid: m["uid"].as_str()?.to_owned(),
            },
            parallelism: spec["parallelism"].as_u64().unwrap_or(1) as usize,
            completions: match &spec["completions"] {
                Value::Null => {
                    // Kubernetes defaults an unset completions to 1 unless
                    // parallelism is set (then it is a work queue).
                    spec["parallelism"].is_null().then_some(1)
                }
                c => c.as_u64().map(|c| c as usize),
            },
            backoff_limit: spec["backoffLimit"].as_u64().unwrap_or(6) as usize,
            on_failure: spec["template"]["spec"]["restartPolicy"] == "OnFailure",
            template: spec["template"].clone(),
            status: v["status"].clone(),
            deleting: !m["deletionTimestamp"].is_null(),
        })
    }

    /// The labels every pod of this Job carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let (uid, name) = (&self.owner.uid, &self.owner.name);
        BTreeMap::from([
            ("batch.kubernetes.io/controller-uid".to_owned(), uid.clone()),
            ("controller-uid".to_owned(), uid.clone()),
            ("batch.kubernetes.io/job-name".to_owned(), name.clone()),
            ("job-name".to_owned(), name.clone()),
        ])
    }

    pub fn pod(&self) -> Value {
        let mut pod = workload::pod_from(&self.template, &self.owner, &self.labels());
        pod["metadata"]["generateName"] = format!("{}-", self.owner.name).into();
        pod
    }

    /// Already finished: `Complete` or `Failed` is True.
    fn finished(&self) -> Option<&str> {
        self.status["conditions"]
            .as_array()?
            .iter()
            .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
            .and_then(|c| c["type"].as_str())
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Pod(PodWrite),
    /// Merge-patch the Job's status.
    Status {
        owner: Owner,
        patch: Value,
    },
    /// Record an event on the Job.
    Event {
        owner: Owner,
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

/// What to do, given every Job and its pods, at `now` (Unix seconds).
pub fn plan(jobs: &[Job], pods: &[Pod], now: i64) -> Vec<Action> {
    let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
    for p in pods {
        by_owner.entry(p.owner.as_str()).or_default().push(p);
    }
    let mut actions = Vec::new();
    for j in jobs.iter().filter(|j| !j.deleting) {
        let mine = by_owner.remove(j.owner.uid.as_str()).unwrap_or_default();
        plan_one(j, &mine, now, &mut actions);
    }
    actions
}

fn plan_one(job: &Job, pods: &[&Pod], now: i64, actions: &mut Vec<Action>) {
    let mut active: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| !p.phase.terminal() && !p.deleting)
        .collect();
    active.sort_by(|a, b| a.name.cmp(&b.name));
    let succeeded = pods.iter().filter(|p| p.phase == Phase::Succeeded).count();
    let mut failed = pods.iter().filter(|p| p.phase == Phase::Failed).count();
    if job.on_failure {
        failed += pods.iter().map(|p| p.restarts as usize).sum::<usize>();
    }
    let delete = |p: &Pod| {
        Action::Pod(PodWrite::Delete {
            owner: job.owner.clone(),
            pod: p.clone(),
        })
    };
    let stamp = format_time(now);
    let mut conditions: Vec<Value> = job.status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut completion_time = job.status["completionTime"].clone();
    let finished = job.finished().map(str::to_owned);
    let complete = match job.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    let mut keep = active.len();
    match finished.as_deref() {
        // Finished: nothing runs any more.
        Some(_) => {
            actions.extend(active.iter().map(|p| delete(p)));
            keep = 0;
        }
        None if failed > job.backoff_limit => {
            actions.extend(active.iter().map(|p| delete(p)));
            keep = 0;
            let message = "Job has reached the specified backoff limit";
            conditions.push(condition("Failed", "BackoffLimitExceeded", message, &stamp));
            actions.push(Action::Event {
                owner: job.owner.clone(),
                warning: true,
                reason: "BackoffLimitExceeded",
                message: message.to_owned(),
            });
        }
        None if complete => {
            actions.extend(active.iter().map(|p| delete(p)));
            keep = 0;
            conditions.push(condition("Complete", "", "", &stamp));
            completion_time = stamp.clone().into();
            actions.push(Action::Event {
                owner: job.owner.clone(),
                warning: false,
                reason: "Completed",
                message: "Job completed".to_owned(),
            });
        }
        None => {
            let wanted = match job.completions {
                Some(c) => job.parallelism.min(c - succeeded),
                // A work queue: once one succeeded, no new pods.
                None if succeeded > 0 => active.len().min(job.parallelism),
                None => job.parallelism,
            };
            if active.len() > wanted {
                // Parallelism lowered: the newest-named pods go.
                actions.extend(active[wanted..].iter().map(|p| delete(p)));
                keep = wanted;
            }
            // After a failure, a replacement waits 10 s, doubling with each
            // failure up to 6 minutes, counted from the last one's end.
            let last_failure = pods
                .iter()
                .filter(|p| p.phase == Phase::Failed)
                .filter_map(|p| p.finished_at)
                .max();
            let failures = pods.iter().filter(|p| p.phase == Phase::Failed).count() as u32;
            let backing_off = last_failure.is_some_and(|at| {
                let delay = (BACKOFF_BASE << failures.saturating_sub(1).min(6)).min(BACKOFF_MAX);
                now < at + delay
            });
            let wanted = if backing_off { active.len() } else { wanted };
            for _ in active.len()..wanted {
                actions.push(Action::Pod(PodWrite::Create {
                    owner: job.owner.clone(),
                    pod: job.pod(),
                }));
            }
        }
    }
    let ready = active[..keep].iter().filter(|p| p.running_ready()).count();
    let mut want = json!({
        "active": keep,
        "ready": ready,
        "succeeded": succeeded,
        "failed": failed,
        "startTime": job.status["startTime"].as_str().map_or(Value::from(stamp), Value::from),
    });
    if !conditions.is_empty() {
        want["conditions"] = conditions.into();
    }
    if !completion_time.is_null() {
        want["completionTime"] = completion_time;
    }
    if let Some(patch) = workload::status_patch(&job.status, &want) {
        actions.push(Action::Status {
            owner: job.owner.clone(),
            patch,
        });
    }
}

fn condition(kind: &str, reason: &str, message: &str, stamp: &str) -> Value {
    let mut c = json!({"type": kind, "status": "True", "lastProbeTime": stamp,
                       "lastTransitionTime": stamp});
    if !reason.is_empty() {
        c["reason"] = reason.into();
        c["message"] = message.into();
    }
    c
}

/// Does one action; a conflict or a vanished object is left to the next plan.
pub async fn reconcile(client: &Client, events: &Recorder, action: &Action) -> Result<Seen, Error> {
    match action {
        Action::Pod(w) => workload::write_pod(client, events, w).await,
        Action::Status { owner, patch } => {
            workload::write_status(client, jobs(), owner, patch).await
        }
        Action::Event {
            owner,
            warning,
            reason,
            message,
        } => {
            let kind = if *warning {
                EventType::Warning
            } else {
                EventType::Normal
            };
            events
                .record(&owner.object(), kind, reason, message)
                .await
                .map(|()| Seen::Nothing)
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Watches Jobs and their pods; plans on every change.
pub async fn run(client: Client) {
    let notify = Arc::new(Notify::new());
    let job_cache: Cache<Job> = Cache::new(notify.clone());
    let pod_cache: Cache<Pod> = Cache::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Watcher::new(client.clone(), jobs(), None),
        job_cache.clone(),
        Job::of,
    ));
    tasks.spawn(reflect(
        // Only Job pods: every other pod would cost a decode here and a send
        // there (a Deployment's thousands).
        Watcher::new(client.clone(), workload::pods(), None)
            .selecting(Selector::labels("batch.kubernetes.io/controller-uid")),
        pod_cache.clone(),
        |v| Pod::of("Job", v),
    ));
    let events = Recorder::new(client.clone(), "job-controller");
    let mut expect = Expectations::default();
    loop {
        crate::changed(&notify).await;
        // Before every first list, an empty cache would read as "no pods".
        if !(job_cache.synced() && pod_cache.synced()) {
            continue;
        }
        let pods = expect.view(pod_cache.snapshot());
        let mut owners = job_cache.snapshot();
        for o in &mut owners {
            expect.status_view(&o.owner.uid, &mut o.status);
        }
        let actions = plan(&owners, &pods, unix_now());
        let (client, events) = (client.clone(), events.clone());
        workload::write_all("job", actions, &mut expect, move |a| {
            let (client, events) = (client.clone(), events.clone());
            async move { (reconcile(&client, &events, &a).await, a) }
        })
        .await;
    }
}

#[cfg(test)]
mod tests;
