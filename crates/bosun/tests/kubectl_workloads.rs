//! DaemonSets, StatefulSets and Jobs, driven by the real kubectl against
//! `bosun server` (its scheduler and controllers) and `bosun sim-nodes`
//! (nodes that run no containers but report pods Running, and end a pod
//! annotated `sim.bosun.dev/exit-code` with that code).

mod cluster;
mod common;

use std::io::Read;

use cluster::{Cluster, wait_until};
use serde_json::Value;

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    c.get(args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

/// The reasons of the events recorded on objects named `name`.
fn reasons(c: &Cluster, name: &str) -> Vec<String> {
    let selector = format!("involvedObject.name={name}");
    items(c, &["events", "--field-selector", &selector])
        .iter()
        .filter_map(|e| e["reason"].as_str().map(str::to_owned))
        .collect()
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The nodes the DaemonSet's pods run on (Running and Ready ones), sorted.
fn daemon_nodes(c: &Cluster) -> Vec<String> {
    let mut nodes: Vec<String> = items(c, &["pods", "-l", "app=agent"])
        .iter()
        .filter(|p| ready(p))
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_owned())
        .collect();
    nodes.sort();
    nodes
}

const DAEMONSET: &str = "\
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: busybox}]
";

#[test]
fn a_daemonset_lands_one_pod_per_node_and_follows_nodes() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(3);
    c.ok(&["apply", "-f", &c.file("ds.yaml", DAEMONSET)]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    assert_eq!(daemon_nodes(&c), ["sim-0", "sim-1", "sim-2"]);
    let ds = c.get(&["ds", "agent"]).unwrap();
    for field in [
        "desiredNumberScheduled",
        "currentNumberScheduled",
        "numberReady",
        "numberAvailable",
        "updatedNumberScheduled",
    ] {
        assert_eq!(ds["status"][field], 3, "{field}: {}", ds["status"]);
    }
    assert_eq!(ds["status"]["observedGeneration"], 1);
    let table = c.ok(&["get", "ds", "agent"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert!(
        table.starts_with("NAME") && table.contains("NODE SELECTOR"),
        "{table}"
    );
    assert_eq!(
        row[..7],
        ["agent", "3", "3", "3", "3", "3", "<none>"],
        "{table}"
    );
    // Each pod is pinned to its node by node affinity, and tolerates a
    // node that is not ready.
    let pod = &items(&c, &["pods", "-l", "app=agent"])[0];
    let term = &pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0]["matchFields"][0];
    assert_eq!(term["values"][0], pod["spec"]["nodeName"]);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let events = reasons(&c, "agent");
    assert!(events.iter().any(|r| r == "SuccessfulCreate"), "{events:?}");

    // A new template rolls out to every node.
    c.ok(&["set", "image", "ds/agent", "agent=busybox:2"]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_until("every daemon pod runs the new image", || {
        let pods = items(&c, &["pods", "-l", "app=agent"]);
        pods.len() == 3
            && pods
                .iter()
                .all(|p| ready(p) && p["spec"]["containers"][0]["image"] == "busybox:2")
    });
    assert_eq!(daemon_nodes(&c), ["sim-0", "sim-1", "sim-2"]);

    // A node joins: it gets a pod.
    let extra = c.sim_nodes_with("extra", 1, &[]);
    wait_until("the joining node runs a daemon pod", || {
        daemon_nodes(&c) == ["extra-0", "sim-0", "sim-1", "sim-2"]
    });
    // It leaves: its pod goes and the status counts three again.
    drop(extra);
    c.ok(&["delete", "node", "extra-0"]);
    wait_until("the daemon pod of the node that left is gone", || {
        items(&c, &["pods", "-l", "app=agent"]).len() == 3
            && c.get(&["ds", "agent"]).unwrap()["status"]["desiredNumberScheduled"] == 3
    });
    assert_eq!(daemon_nodes(&c), ["sim-0", "sim-1", "sim-2"]);

    // A node it may not run on: a nodeSelector leaves it out.
    c.ok(&["label", "node", "sim-1", "disk=hdd"]);
    c.ok(&[
        "patch",
        "ds",
        "agent",
        "--type=merge",
        "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"hdd"}}}}}"#,
    ]);
    let out = c.ok(&["rollout", "status", "ds/agent", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    wait_until("only the selected node runs a daemon pod", || {
        items(&c, &["pods", "-l", "app=agent"]).len() == 1
    });
    assert_eq!(daemon_nodes(&c), ["sim-1"]);
}

const STATEFULSET: &str = "\
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
";

#[test]
fn a_statefulset_makes_web_0_1_2_in_order() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(3);
    // Every change to the set's pods, in the order the server made them.
    let mut watch = c.spawn(&[
        "get",
        "pods",
        "-l",
        "app=nginx",
        "--watch",
        "-o",
        r#"jsonpath={.metadata.name} {.status.phase} {.status.conditions[?(@.type=="Ready")].status}{"\n"}"#,
    ]);
    c.ok(&["apply", "-f", &c.file("sts.yaml", STATEFULSET)]);
    let out = c.ok(&["rollout", "status", "sts/web", "--timeout=120s"]);
    assert!(
        out.contains("3 new pods have been updated") || out.contains("complete"),
        "{out}"
    );
    let sts = c.get(&["sts", "web"]).unwrap();
    let status = &sts["status"];
    for field in [
        "replicas",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
    ] {
        assert_eq!(status[field], 3, "{field}: {status}");
    }
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    assert_eq!(status["observedGeneration"], 1);
    let table = c.ok(&["get", "sts", "web"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..2], ["web", "3/3"], "{table}");
    let _ = watch.kill();
    let mut lines = String::new();
    watch
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut lines)
        .unwrap();
    let _ = watch.wait();
    // web-i first appears only after web-(i-1) was seen Running and Ready.
    let seen: Vec<(&str, bool)> = lines
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next()?;
            Some((
                name,
                w.next() == Some("Running") && w.next() == Some("True"),
            ))
        })
        .collect();
    for i in 1..3 {
        let first = seen
            .iter()
            .position(|(n, _)| *n == format!("web-{i}"))
            .unwrap_or_else(|| panic!("web-{i} never seen:\n{lines}"));
        let prev = format!("web-{}", i - 1);
        assert!(
            seen[..first].iter().any(|(n, r)| *n == prev && *r),
            "web-{i} was made before {prev} was ready:\n{lines}"
        );
    }
    // Stable identity.
    let pod = c.get(&["pod", "web-1"]).unwrap();
    assert_eq!(pod["spec"]["hostname"], "web-1");
    assert_eq!(pod["spec"]["subdomain"], "nginx");
    assert_eq!(
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-1"
    );
    assert_eq!(
        pod["metadata"]["labels"]["controller-revision-hash"],
        status["updateRevision"]
    );
    // A deleted pod comes back with its name.
    let uid = pod["metadata"]["uid"].clone();
    c.ok(&["delete", "pod", "web-1"]);
    wait_until("web-1 is made again", || {
        c.get(&["pod", "web-1"])
            .is_some_and(|p| p["metadata"]["uid"] != uid && ready(&p))
    });
    // A new template rolls out, the highest ordinal first, to a new revision.
    let before = status["updateRevision"].clone();
    c.ok(&["set", "image", "sts/web", "nginx=nginx:2"]);
    c.ok(&["rollout", "status", "sts/web", "--timeout=120s"]);
    wait_until("every pod is of the new revision", || {
        let sts = c.get(&["sts", "web"]).unwrap();
        let s = &sts["status"];
        s["updateRevision"] != before
            && s["currentRevision"] == s["updateRevision"]
            && s["readyReplicas"] == 3
            && items(&c, &["pods", "-l", "app=nginx"])
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:2")
    });
    // Scaling down removes the highest ordinals.
    c.ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_until("web-1 and web-2 are gone", || {
        items(&c, &["pods", "-l", "app=nginx"]).len() == 1
    });
    assert!(c.get(&["pod", "web-0"]).is_some());
}

fn job(name: &str, exit_code: u8, completions: u32, parallelism: u32, backoff: u32) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata: {{name: {name}}}
spec:
  completions: {completions}
  parallelism: {parallelism}
  backoffLimit: {backoff}
  template:
    metadata:
      annotations: {{sim.bosun.dev/exit-code: \"{exit_code}\"}}
    spec:
      restartPolicy: Never
      containers: [{{name: c, image: busybox}}]
"
    )
}

#[test]
fn a_job_runs_to_completion() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(2);
    c.ok(&["apply", "-f", &c.file("job.yaml", &job("pi", 0, 3, 2, 6))]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/pi",
        "--timeout=120s",
    ]);
    let j = c.get(&["job", "pi"]).unwrap();
    assert_eq!(j["status"]["succeeded"], 3, "{}", j["status"]);
    assert_eq!(j["status"]["active"], 0);
    assert!(j["status"]["startTime"].is_string() && j["status"]["completionTime"].is_string());
    let pods = items(&c, &["pods", "-l", "job-name=pi"]);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded"));
    assert!(pods.iter().all(|p| {
        p["metadata"]["labels"]["batch.kubernetes.io/controller-uid"] == j["metadata"]["uid"]
    }));
    let out = c.ok(&["get", "job", "pi"]);
    assert!(out.contains("Complete") && out.contains("3/3"), "{out}");
}

#[test]
fn a_failing_job_respects_its_backoff_limit() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(2);
    c.ok(&[
        "apply",
        "-f",
        &c.file("job.yaml", &job("fails", 1, 1, 1, 2)),
    ]);
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/fails",
        "--timeout=120s",
    ]);
    let j = c.get(&["job", "fails"]).unwrap();
    let failed = j["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    // backoffLimit 2: the third failure ends it, and no pod is made after.
    assert_eq!(j["status"]["failed"], 3, "{}", j["status"]);
    let pods = items(&c, &["pods", "-l", "job-name=fails"]);
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Failed"));
    // Each replacement waited out the back-off after the failure before it:
    // 10 s, then 20 s.
    let time = |v: &Value| bosun_api::time::parse_time(v.as_str().unwrap()).unwrap();
    let mut runs: Vec<(i64, i64)> = pods
        .iter()
        .map(|p| {
            (
                time(&p["metadata"]["creationTimestamp"]),
                time(&p["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]),
            )
        })
        .collect();
    runs.sort();
    for (i, pair) in runs.windows(2).enumerate() {
        let waited = pair[1].0 - pair[0].1;
        assert!(
            waited >= 10 << i,
            "replacement {i} after {waited} s: {runs:?}"
        );
    }
    let events = reasons(&c, "fails");
    assert!(
        events.iter().any(|r| r == "BackoffLimitExceeded"),
        "{events:?}"
    );
}
