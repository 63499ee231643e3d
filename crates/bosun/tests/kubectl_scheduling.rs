//! The scheduler inside `bosun server`, each rule proved by where pods land
//! (or why they do not), driven by the real kubectl. Nodes are made with
//! `kubectl apply` (a Ready condition and allocatable resources, no agent
//! behind them); pods are plain Pods with no controller. Also: leader
//! election between two servers on one etcd (Debian's etcd-server), and the
//! scheduler as a process of its own (`--components`, `--kubeconfig`).

mod cluster;
mod common;

#[path = "../../store/tests/support/etcd.rs"]
#[allow(dead_code, reason = "the store's harness; this test uses part of it")]
mod etcd;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use cluster::{Cluster, wait_until};
use serde_json::Value;

/// The nodes here have no agent renewing a Lease: the node lifecycle
/// controller's grace period is stretched past any test's length, so that a
/// slow run does not see them turn NotReady (40 s by default).
const HAND_MADE_NODES: &[&str] = &["--node-monitor-grace-period", "5m"];

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
    let c = Cluster::start_with(HAND_MADE_NODES);
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
    let c = Cluster::start_with(HAND_MADE_NODES);
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
    let c = Cluster::start_with(HAND_MADE_NODES);
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
    let c = Cluster::start_with(HAND_MADE_NODES);
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

/// The holder of the Lease `kube-system/name`, if there is one.
fn holder(c: &Cluster, lease: &str) -> Option<String> {
    let l = c.get(&["lease", "-n", "kube-system", lease])?;
    l["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

/// Every node each pod was ever seen bound to, from a `kubectl get -w -o json`
/// stream (objects one after another).
fn bindings_seen(stream: &[u8]) -> BTreeMap<String, Vec<String>> {
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in serde_json::Deserializer::from_slice(stream).into_iter::<Value>() {
        let v = v.expect("kubectl's watch output is JSON");
        let items = match v["kind"].as_str() {
            Some("List") => v["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![v],
        };
        for p in items {
            if let (Some(name), Some(node)) = (
                p["metadata"]["name"].as_str(),
                p["spec"]["nodeName"].as_str(),
            ) {
                let nodes = seen.entry(name.to_owned()).or_default();
                if nodes.last().map(String::as_str) != Some(node) {
                    nodes.push(node.to_owned());
                }
            }
        }
    }
    seen
}

#[test]
fn of_two_servers_on_one_etcd_one_schedules_and_the_other_takes_over() {
    let etcd = etcd::EtcdCluster::start(1);
    let endpoints = etcd.endpoints();
    let mut servers = [
        Some(Cluster::start_with(&[
            "--etcd-endpoints",
            &endpoints,
            "--node-monitor-grace-period",
            "5m",
        ])),
        Some(Cluster::start_with(&[
            "--etcd-endpoints",
            &endpoints,
            "--node-monitor-grace-period",
            "5m",
        ])),
    ];
    let first = servers[0].as_ref().unwrap();
    let mut leader = String::new();
    wait_until("a server holds the kube-scheduler lease", || {
        leader = holder(first, "kube-scheduler").unwrap_or_default();
        !leader.is_empty()
    });
    let lead = servers
        .iter()
        .position(|c| leader.contains(&format!("_{}_", c.as_ref().unwrap().addr)))
        .unwrap_or_else(|| panic!("the holder {leader:?} names neither server"));
    let c = servers[1 - lead].take().unwrap();
    assert!(
        holder(&c, "kube-controller-manager").is_some(),
        "the controllers elect a leader too"
    );
    for n in ["n1", "n2", "n3"] {
        node(&c, n, "4", "", "");
    }
    let before = ["p1", "p2", "p3"];
    for p in before {
        pod(&c, p, "1", "", "");
    }
    let placed: Vec<String> = before.iter().map(|p| wait_bound(&c, p)).collect();
    // From here on, every binding the survivor's API shows.
    let mut watch = c.spawn(&["get", "pods", "--watch", "-o", "json"]);
    // The leader dies; the survivor's scheduler takes over once its lease
    // runs out, and binds what was created meanwhile.
    drop(servers[lead].take());
    let after = ["q1", "q2", "q3"];
    for p in after {
        pod(&c, p, "1", "", "");
    }
    for p in after {
        wait_bound(&c, p);
    }
    let now = holder(&c, "kube-scheduler").unwrap();
    assert!(now.contains(&format!("_{}_", c.addr)), "{now}");
    let lease = c
        .get(&["lease", "-n", "kube-system", "kube-scheduler"])
        .unwrap();
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 15);
    // Binding a bound pod again is refused.
    let binding = c.file(
        "binding.json",
        r#"{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p1"},"target":{"kind":"Node","name":"n3"}}"#,
    );
    let refused = c.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/p1/binding",
        "-f",
        &binding,
    ]);
    assert!(refused.contains("already assigned"), "{refused}");
    for (p, n) in before.iter().zip(&placed) {
        assert_eq!(node_of(&c, p).as_ref(), Some(n), "{p} kept its node");
    }
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let seen = bindings_seen(&out.stdout);
    for p in before.iter().chain(&after) {
        assert_eq!(seen.get(*p).map(Vec::len), Some(1), "{p}: {seen:?}");
    }
}

/// A child process killed when the test ends however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_scheduler_process_of_its_own_binds_for_a_server_that_runs_none() {
    let c = Cluster::start_with(&[
        "--components",
        "controllers",
        "--node-monitor-grace-period",
        "5m",
    ]);
    node(&c, "n1", "4", "", "");
    pod(&c, "p", "1", "", "");
    wait_until("the controllers hold their lease", || {
        holder(&c, "kube-controller-manager").is_some()
    });
    assert_eq!(holder(&c, "kube-scheduler"), None, "no scheduler runs");
    assert_eq!(node_of(&c, "p"), None);
    let sched = Killed(
        Command::new(common::bosun())
            .args(["server", "--components", "scheduler", "--kubeconfig"])
            .arg(c.admin())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn bosun server --components scheduler"),
    );
    assert_eq!(wait_bound(&c, "p"), "n1");
    let who = holder(&c, "kube-scheduler").unwrap();
    assert!(who.contains(&format!("_{}_", sched.0.id())), "{who}");
    // Stopped cleanly, it gives the Lease up rather than leave it to expire.
    let mut sched = sched;
    let pid = nix::unistd::Pid::from_raw(sched.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(sched.0.wait().unwrap().success());
    assert_eq!(holder(&c, "kube-scheduler").as_deref(), Some(""));
    // Bad component names are refused before anything starts.
    let out = Command::new(common::bosun())
        .args([
            "server",
            "--components",
            "scheduler,kubelet",
            "--kubeconfig",
        ])
        .arg(c.admin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown component \"kubelet\""), "{err}");
}
