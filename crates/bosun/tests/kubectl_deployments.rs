//! Deployments and ReplicaSets, driven by the real kubectl against `bosun
//! server` (its scheduler and controllers) and `bosun sim-nodes` (nodes that
//! run no containers but report pods Running and Ready): apply, scale,
//! `rollout status`, a rolling update watched event by event, `rollout
//! history`, `undo` and `restart`, self-healing, the progress deadline, and
//! cascading deletion.

mod cluster;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use cluster::{Cluster, kubectl_1_20, wait_until};
use serde_json::Value;

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    c.get(args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The Deployment's pods that are Running, Ready and not being deleted.
fn running(c: &Cluster, app: &str) -> Vec<Value> {
    items(c, &["pods", "-l", &format!("app={app}")])
        .into_iter()
        .filter(ready)
        .collect()
}

fn deployment(name: &str, replicas: u32, image: &str, extra_spec: &str) -> String {
    format!(
        "\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
{extra_spec}  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: {name}, image: \"{image}\"}}]
"
    )
}

fn rollout_status(c: &Cluster, name: &str) {
    let out = c.ok(&[
        "rollout",
        "status",
        &format!("deployment/{name}"),
        "--timeout=120s",
    ]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn replica_sets(c: &Cluster, app: &str) -> Vec<Value> {
    items(c, &["rs", "-l", &format!("app={app}")])
}

#[test]
fn a_deployment_runs_scales_and_heals() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(5);
    c.ok(&[
        "apply",
        "-f",
        &c.file("web.yaml", &deployment("web", 6, "nginx:1", "")),
    ]);
    rollout_status(&c, "web");
    let pods = running(&c, "web");
    assert_eq!(pods.len(), 6);
    let nodes: BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert!(nodes.len() > 1, "all on {nodes:?}");
    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    assert_eq!(wide.matches("Running").count(), 6, "{wide}");

    // One ReplicaSet, named and labelled by the template hash, owning the pods.
    let sets = replica_sets(&c, "web");
    assert_eq!(sets.len(), 1);
    let rs = &sets[0];
    let hash = rs["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap();
    assert_eq!(rs["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(
        rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs["spec"]["selector"]["matchLabels"]["pod-template-hash"],
        hash
    );
    assert_eq!(rs["status"]["readyReplicas"], 6);
    let owner = &pods[0]["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["controller"].as_bool()),
        (Some("ReplicaSet"), Some(true))
    );
    assert_eq!(owner["name"], rs["metadata"]["name"]);

    let d = c.get(&["deployment", "web"]).unwrap();
    for field in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        assert_eq!(d["status"][field], 6, "{field}: {}", d["status"]);
    }
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    let get = c.ok(&["get", "deployment", "web"]);
    assert!(get.contains("6/6"), "{get}");

    let describe = c.ok(&["describe", "deployment", "web"]);
    let line = format!(
        "NewReplicaSet:   {} (6/6 replicas created)",
        rs["metadata"]["name"].as_str().unwrap()
    );
    assert!(describe.contains(&line), "{describe}");
    assert!(
        describe.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{describe}"
    );

    c.ok(&["scale", "deployment/web", "--replicas=9"]);
    rollout_status(&c, "web");
    wait_until("9 pods run", || running(&c, "web").len() == 9);
    c.ok(&["scale", "deployment/web", "--replicas=2"]);
    wait_until("2 pods remain", || {
        items(&c, &["pods", "-l", "app=web"]).len() == 2 && running(&c, "web").len() == 2
    });
    rollout_status(&c, "web");
    let reasons = |name: &str| -> String {
        let selector = format!("involvedObject.name={name}");
        items(&c, &["events", "--field-selector", &selector])
            .iter()
            .map(|e| {
                format!(
                    "{} {}\n",
                    e["reason"].as_str().unwrap_or(""),
                    e["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let events = reasons("web");
    assert!(
        events.contains("ScalingReplicaSet Scaled up replica set web-"),
        "{events}"
    );
    assert!(events.contains("Scaled down replica set web-"), "{events}");
    let events = reasons(rs["metadata"]["name"].as_str().unwrap());
    assert!(
        events.contains("SuccessfulCreate Created pod: web-"),
        "{events}"
    );
    assert!(
        events.contains("SuccessfulDelete Deleted pod: web-"),
        "{events}"
    );

    // A deleted pod is replaced.
    let victim = running(&c, "web")[0]["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok(&["delete", "pod", &victim, "--wait=false"]);
    wait_until("the deleted pod is replaced", || {
        let pods = running(&c, "web");
        pods.len() == 2
            && pods
                .iter()
                .all(|p| p["metadata"]["name"] != victim.as_str())
    });

    // Orphaned, the ReplicaSet and pods stay; applied again, the Deployment
    // adopts the same ReplicaSet.
    c.ok(&["delete", "deployment", "web", "--cascade=orphan"]);
    wait_until("the Deployment is gone", || {
        c.get(&["deployment", "web"]).is_none()
    });
    let sets = replica_sets(&c, "web");
    assert_eq!(sets.len(), 1);
    assert!(
        sets[0]["metadata"]["ownerReferences"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
    assert_eq!(running(&c, "web").len(), 2);
    c.ok(&[
        "apply",
        "-f",
        &c.file("web.yaml", &deployment("web", 2, "nginx:1", "")),
    ]);
    rollout_status(&c, "web");
    let sets = replica_sets(&c, "web");
    assert_eq!(sets.len(), 1, "a second ReplicaSet: {sets:?}");
    assert_eq!(sets[0]["metadata"]["name"], rs["metadata"]["name"]);
    assert_eq!(
        sets[0]["metadata"]["ownerReferences"][0]["kind"],
        "Deployment"
    );

    // Deleting the Deployment takes its ReplicaSets and pods with it.
    c.ok(&["delete", "deployment", "web"]);
    wait_until("the ReplicaSet and pods are gone", || {
        replica_sets(&c, "web").is_empty() && items(&c, &["pods", "-l", "app=web"]).is_empty()
    });
}

/// Reads `kubectl get pods -w --output-watch-events -o json` output: each
/// event in turn, applied to the set of pods, yields (pods not being
/// deleted, of which available), plus every image seen Ready.
fn replay(stream: &[u8]) -> (Vec<(usize, usize)>, BTreeSet<String>) {
    let mut pods: BTreeMap<String, Value> = BTreeMap::new();
    let mut counts = Vec::new();
    let mut images = BTreeSet::new();
    for event in serde_json::Deserializer::from_slice(stream).into_iter::<Value>() {
        let Ok(event) = event else {
            break; // the last one, cut when the watcher was killed
        };
        let obj = &event["object"];
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if event["type"] == "DELETED" {
            pods.remove(&name);
        } else {
            if ready(obj) {
                images.insert(
                    obj["spec"]["containers"][0]["image"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
            pods.insert(name, obj.clone());
        }
        let live = pods
            .values()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count();
        let available = pods.values().filter(|p| ready(p)).count();
        counts.push((live, available));
    }
    (counts, images)
}

#[test]
fn a_rolling_update_keeps_availability_and_can_be_undone() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(5);
    let strategy = "  strategy:\n    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 1}\n";
    c.ok(&[
        "apply",
        "-f",
        &c.file("web.yaml", &deployment("web", 6, "nginx:1", strategy)),
    ]);
    rollout_status(&c, "web");
    wait_until("6 pods run", || running(&c, "web").len() == 6);

    // Every event of the update, from a watch that starts with all 6 ready.
    let mut watcher = c.spawn(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-w",
        "--output-watch-events",
        "-o",
        "json",
    ]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    c.ok(&["set", "image", "deployment/web", "web=nginx:2"]);
    rollout_status(&c, "web");
    wait_until("6 new pods run", || {
        let pods = running(&c, "web");
        pods.len() == 6
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
    });
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = watcher.kill();
    let mut out = Vec::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    let _ = watcher.wait();
    let (counts, images) = replay(&out);
    // From the moment the watch's first list is in: all 6 ready.
    let start = counts
        .iter()
        .position(|c| *c == (6, 6))
        .expect("the watch saw 6 ready pods");
    let counts = &counts[start..];
    assert!(counts.len() > 12, "too few events: {counts:?}");
    assert_eq!(
        images,
        BTreeSet::from(["nginx:1".to_owned(), "nginx:2".to_owned()])
    );
    for (i, (live, available)) in counts.iter().enumerate() {
        assert!(
            *available >= 5,
            "event {i}: {available} available, under 6 - maxUnavailable 1: {counts:?}"
        );
        assert!(
            *live <= 7,
            "event {i}: {live} pods, over 6 + maxSurge 1: {counts:?}"
        );
    }

    // Two revisions; the old ReplicaSet is kept at zero.
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains('1') && history.contains('2'),
        "{history}"
    );
    let one = c.ok(&["rollout", "history", "deployment/web", "--revision=1"]);
    assert!(one.contains("nginx:1"), "{one}");
    let sets = replica_sets(&c, "web");
    assert_eq!(sets.len(), 2);
    let old = sets
        .iter()
        .find(|s| s["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1")
        .expect("the old ReplicaSet keeps revision 1");
    assert_eq!(old["spec"]["replicas"], 0);
    let old_name = old["metadata"]["name"].as_str().unwrap().to_owned();

    // Undo: the template goes back, the old ReplicaSet is re-used at revision 3.
    let undo = c.ok(&["rollout", "undo", "deployment/web"]);
    assert!(undo.contains("rolled back"), "{undo}");
    rollout_status(&c, "web");
    wait_until("the old image runs again", || {
        let pods = running(&c, "web");
        pods.len() == 6
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1")
    });
    let sets = replica_sets(&c, "web");
    assert_eq!(sets.len(), 2, "no new ReplicaSet for an old template");
    let reused = sets
        .iter()
        .find(|s| s["metadata"]["name"] == old_name.as_str())
        .unwrap();
    assert_eq!(
        reused["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    assert_eq!(reused["spec"]["replicas"], 6);
    let d = c.get(&["deployment", "web"]).unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "3"
    );
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.contains('3') && !history.contains("\n1 "),
        "{history}"
    );

    // Restart: a new ReplicaSet whose pods carry the restart time.
    c.ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&c, "web");
    wait_until("restarted pods run", || {
        let pods = running(&c, "web");
        pods.len() == 6
            && pods.iter().all(|p| {
                !p["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"].is_null()
            })
    });
    assert_eq!(replica_sets(&c, "web").len(), 3);
    let d = c.get(&["deployment", "web"]).unwrap();
    let progressing = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Progressing")
        .unwrap()
        .clone();
    assert_eq!(
        progressing["reason"], "NewReplicaSetAvailable",
        "{progressing}"
    );

    // Paused, a new template waits; resumed, it rolls out.
    c.ok(&["rollout", "pause", "deployment/web"]);
    c.ok(&["set", "image", "deployment/web", "web=nginx:3"]);
    wait_until("the paused Deployment says so", || {
        let d = c.get(&["deployment", "web"]).unwrap();
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["reason"] == "DeploymentPaused")
    });
    assert_eq!(
        replica_sets(&c, "web").len(),
        3,
        "a ReplicaSet made while paused"
    );
    c.ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&c, "web");
    wait_until("nginx:3 runs", || {
        let pods = running(&c, "web");
        pods.len() == 6
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:3")
    });
}

#[test]
fn a_rollout_that_cannot_progress_fails_its_deadline() {
    let c = Cluster::start();
    // No nodes: the pods stay Pending.
    let spec = "  progressDeadlineSeconds: 2\n";
    c.ok(&[
        "apply",
        "-f",
        &c.file("stuck.yaml", &deployment("stuck", 2, "nginx", spec)),
    ]);
    let out = c.run_as(
        &c.admin(),
        &["rollout", "status", "deployment/stuck", "--timeout=120s"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "rollout status succeeded");
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let d = c.get(&["deployment", "stuck"]).unwrap();
    let available = d["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Available")
        .unwrap()
        .clone();
    assert_eq!(available["status"], "False", "{available}");
    assert_eq!(d["status"]["unavailableReplicas"], 2);
    assert_eq!(items(&c, &["pods", "-l", "app=stuck"]).len(), 2);
}

/// kubectl 1.20 reads the same status and revisions (its `rollout undo` is
/// its own client-side code, as old as the typed round trip it makes).
#[test]
fn kubectl_1_20_rolls_out_and_undoes() {
    let c = Cluster::start_for(&kubectl_1_20());
    let _sim = c.sim_nodes(3);
    c.ok(&[
        "apply",
        "-f",
        &c.file("web.yaml", &deployment("web", 3, "nginx:1", "")),
    ]);
    rollout_status(&c, "web");
    c.ok(&["set", "image", "deployment/web", "web=nginx:2"]);
    rollout_status(&c, "web");
    let undo = c.ok(&["rollout", "undo", "deployment/web", "--to-revision=1"]);
    assert!(undo.contains("rolled back"), "{undo}");
    rollout_status(&c, "web");
    wait_until("the old image runs again", || {
        let pods = running(&c, "web");
        pods.len() == 3
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1")
    });
    assert_eq!(replica_sets(&c, "web").len(), 2);
    let history = c.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('2') && history.contains('3'), "{history}");
}
