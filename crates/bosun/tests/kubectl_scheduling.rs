//! The scheduler inside `bosun server`, each rule proved by where pods land
//! (or why they do not), driven by the real kubectl. Nodes are made with
//! `kubectl apply` (a Ready condition and allocatable resources, no agent
//! behind them); pods are plain Pods with no controller.

mod cluster;
mod common;

use cluster::{Cluster, wait_until};

/// A Ready node with `cpu` cores, and extra YAML under `metadata.labels`
/// (`zone: a`) and `spec` (`taints: [...]`).
fn node(c: &Cluster, name: &str, cpu: &str, labels: &str, spec: &str) {
    let yaml = format!(
        "apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}{labels}}}
spec: {{{spec}}}
status:
  capacity: {{cpu: \"{cpu}\", memory: 8Gi, pods: \"110\"}}
  allocatable: {{cpu: \"{cpu}\", memory: 8Gi, pods: \"110\"}}
  conditions:
  - {{type: Ready, status: \"True\", reason: KubeletReady, message: ready}}
"
    );
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &yaml)]);
}

/// A pod requesting `cpu`, with extra YAML under `spec` (after `containers`).
fn pod(c: &Cluster, name: &str, cpu: &str, labels: &str, spec: &str) {
    let yaml = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}{labels}}}
spec:
  containers:
  - name: c
    image: busybox
    resources: {{requests: {{cpu: \"{cpu}\"}}}}
{spec}"
    );
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &yaml)]);
}

fn node_of(c: &Cluster, pod: &str) -> Option<String> {
    let p = c.get(&["pod", pod])?;
    p["spec"]["nodeName"].as_str().map(str::to_owned)
}

fn wait_bound(c: &Cluster, pod: &str) -> String {
    let mut at = None;
    wait_until(&format!("pod {pod} is bound"), || {
        at = node_of(c, pod);
        at.is_some()
    });
    at.unwrap()
}

/// The message of the pod's FailedScheduling event, once there is one.
fn wait_failed(c: &Cluster, pod: &str) -> String {
    let mut message = String::new();
    wait_until(&format!("a FailedScheduling event for {pod}"), || {
        let events = c
            .get(&[
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod},reason=FailedScheduling"),
            ])
            .unwrap();
        let last = events["items"].as_array().and_then(|i| i.last()).cloned();
        message = last.map_or(String::new(), |e| {
            e["message"].as_str().unwrap_or_default().to_owned()
        });
        !message.is_empty()
    });
    message
}

#[test]
fn a_pod_too_big_for_every_node_waits_with_the_reason_until_one_fits() {
    let c = Cluster::start();
    for n in ["n1", "n2", "n3"] {
        node(&c, n, "2", "", "");
    }
    pod(&c, "big", "4", "", "");
    assert_eq!(
        wait_failed(&c, "big"),
        "0/3 nodes are available: 3 Insufficient cpu."
    );
    assert_eq!(node_of(&c, "big"), None);
    let p = c.get(&["pod", "big"]).unwrap();
    let cond = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .unwrap()
        .clone();
    assert_eq!(cond["status"], "False", "{cond}");
    assert_eq!(cond["reason"], "Unschedulable");
    let described = c.ok(&["describe", "pod", "big"]);
    assert!(
        described.contains("FailedScheduling")
            && described.contains("0/3 nodes are available: 3 Insufficient cpu."),
        "{described}"
    );
    let events = c.ok(&[
        "get",
        "events",
        "-o",
        "custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,FROM:.source.component",
    ]);
    assert!(
        events.contains("Warning   FailedScheduling   big      default-scheduler"),
        "{events}"
    );
    // A node that fits joins: the pod goes there without anyone asking again.
    node(&c, "n4", "8", "", "");
    assert_eq!(wait_bound(&c, "big"), "n4");
    let p = c.get(&["pod", "big"]).unwrap();
    let scheduled = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["status"] == "True");
    assert!(scheduled, "{}", p["status"]);
    let wide = c.ok(&["get", "pod", "big", "-o", "wide"]);
    assert!(wide.contains("n4"), "{wide}");
}

#[test]
fn node_selector_and_required_affinity_choose_the_node() {
    let c = Cluster::start();
    node(&c, "plain", "4", ", zone: a", "");
    node(&c, "fast", "4", ", zone: a, disk: ssd", "");
    node(&c, "far", "4", ", zone: b", "");
    pod(&c, "wants-ssd", "100m", "", "  nodeSelector: {disk: ssd}\n");
    pod(
        &c,
        "wants-b",
        "100m",
        "",
        "  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: zone, operator: In, values: [b]}]
",
    );
    pod(
        &c,
        "wants-none",
        "100m",
        "",
        "  nodeSelector: {disk: nvme}\n",
    );
    assert_eq!(wait_bound(&c, "wants-ssd"), "fast");
    assert_eq!(wait_bound(&c, "wants-b"), "far");
    assert_eq!(
        wait_failed(&c, "wants-none"),
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
    );
    assert_eq!(node_of(&c, "wants-none"), None);
}

#[test]
fn taints_keep_pods_off_unless_tolerated() {
    let c = Cluster::start();
    let taint = "taints: [{key: dedicated, value: gpu, effect: NoSchedule}]";
    node(&c, "gpu", "4", ", kind: gpu", taint);
    node(&c, "cpu", "1", ", kind: cpu", "");
    // Too big for the untainted node, and not tolerating the other.
    pod(&c, "intolerant", "2", "", "");
    assert_eq!(
        wait_failed(&c, "intolerant"),
        "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}."
    );
    pod(
        &c,
        "tolerant",
        "2",
        "",
        "  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]\n",
    );
    assert_eq!(wait_bound(&c, "tolerant"), "gpu");
    assert_eq!(node_of(&c, "intolerant"), None);
}

#[test]
fn topology_spread_balances_pods_across_zones() {
    let c = Cluster::start();
    // Zone a has three nodes, zone b one: spreading by zone still puts half
    // the pods in b.
    for n in ["a1", "a2", "a3"] {
        node(&c, n, "8", ", zone: a", "");
    }
    node(&c, "b1", "8", ", zone: b", "");
    let spread = "  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {group: spread}}
";
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    for name in names {
        pod(&c, name, "100m", ", group: spread", spread);
        // One at a time, so each decision sees the ones before it bound.
        wait_bound(&c, name);
    }
    let in_b = names
        .iter()
        .filter(|n| node_of(&c, n).as_deref() == Some("b1"))
        .count();
    assert_eq!(in_b, 3, "half the pods in zone b");
}
