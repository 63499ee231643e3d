//! `bosun sim-nodes` against `bosun server`, seen through the real kubectl:
//! nodes Ready with Leases that are renewed, pods bound by hand going
//! Running with an address from their node's pod CIDR, deletion, the
//! heartbeat and exit-code annotations, `--cleanup`, and bad flags.

mod cluster;
mod common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster::{Cluster, wait_until};
use common::bosun;
use serde_json::Value;

fn lease_renewed(c: &Cluster, node: &str) -> String {
    c.get(&["lease", "-n", "kube-node-lease", node]).unwrap()["spec"]["renewTime"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A pod no scheduler takes (its own schedulerName): it stays unbound
/// until the test binds it, or lands on `node` directly.
fn pod(c: &Cluster, name: &str, node: Option<&str>, annotations: &str, policy: &str) {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  annotations: {{{annotations}}}\n\
         spec:\n  schedulerName: by-hand\n  restartPolicy: {policy}\n{node}  containers:\n  \
         - {{name: app, image: busybox}}\n  - {{name: side, image: nginx:1.27}}\n"
    );
    c.ok(&["apply", "-f", &c.file(&format!("{name}.yaml"), &yaml)]);
}

/// `POST pods/NAME/binding`, as a scheduler binds.
fn bind(c: &Cluster, name: &str, node: &str) {
    let token = std::fs::read_to_string(c.data().join("admin.token")).unwrap();
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{name}"}},"target":{{"apiVersion":"v1","kind":"Node","name":"{node}"}}}}"#
    );
    let (code, out) = c.curl(
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {}", token.trim()),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
        ],
        &format!("/api/v1/namespaces/default/pods/{name}/binding"),
    );
    assert_eq!(code, 201, "binding {name} to {node}: {out}");
}

fn get_pod(c: &Cluster, name: &str) -> Option<Value> {
    c.get(&["pod", name])
}

fn phase(c: &Cluster, name: &str) -> String {
    get_pod(c, name).map_or_else(String::new, |p| {
        p["status"]["phase"].as_str().unwrap_or_default().to_owned()
    })
}

fn wait_phase(c: &Cluster, name: &str, want: &str) -> Value {
    wait_until(&format!("pod {name} is {want}"), || phase(c, name) == want);
    get_pod(c, name).unwrap()
}

fn cidr_contains(cidr: &str, ip: &str) -> bool {
    let (net, len) = cidr.split_once('/').unwrap();
    let (net, len): (Ipv4Addr, u32) = (net.parse().unwrap(), len.parse().unwrap());
    let ip: Ipv4Addr = ip.parse().unwrap();
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net)
}

fn condition<'a>(obj: &'a Value, kind: &str) -> &'a Value {
    obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {obj}"))
}

#[test]
fn nodes_register_ready_and_renew_their_leases() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(5);
    let out = c.ok(&["get", "nodes", "--no-headers"]);
    let ready: Vec<&str> = out
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
        .collect();
    assert_eq!(ready.len(), 5, "{out}");
    let nodes = c.get(&["nodes"]).unwrap();
    let mut cidrs = Vec::new();
    for n in nodes["items"].as_array().unwrap() {
        let name = n["metadata"]["name"].as_str().unwrap();
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], name);
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(n["status"]["allocatable"]["cpu"], "8");
        assert_eq!(n["status"]["allocatable"]["memory"], "32Gi");
        assert_eq!(n["status"]["allocatable"]["pods"], "110");
        for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            assert_eq!(condition(n, kind)["status"], "False", "{name} {kind}");
        }
        assert_eq!(n["status"]["addresses"][0]["type"], "InternalIP");
        cidrs.push(n["spec"]["podCIDR"].as_str().unwrap().to_owned());
    }
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(
        cidrs.len(),
        5,
        "each node has a pod CIDR of its own: {cidrs:?}"
    );
    assert!(
        cidrs
            .iter()
            .all(|c| c.starts_with("10.42.") && c.ends_with("/24"))
    );
    let lease = c.get(&["lease", "-n", "kube-node-lease", "sim-3"]).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "sim-3");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first = lease_renewed(&c, "sim-3");
    wait_until("the lease of sim-3 is renewed", || {
        lease_renewed(&c, "sim-3") != first
    });
}

#[test]
fn bound_pods_run_with_addresses_from_their_nodes_cidr_and_deleted_ones_go() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(3);
    pod(&c, "web", None, "", "Always");
    assert_eq!(phase(&c, "web"), "Pending");
    bind(&c, "web", "sim-1");
    let web = wait_phase(&c, "web", "Running");
    let node = c.get(&["node", "sim-1"]).unwrap();
    let cidr = node["spec"]["podCIDR"].as_str().unwrap();
    let ip = web["status"]["podIP"].as_str().unwrap().to_owned();
    assert!(cidr_contains(cidr, &ip), "{ip} is not in {cidr}");
    assert_eq!(web["status"]["podIPs"][0]["ip"], ip.as_str());
    assert_eq!(
        web["status"]["hostIP"],
        node["status"]["addresses"][0]["address"]
    );
    assert!(web["status"]["startTime"].is_string());
    for kind in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert_eq!(condition(&web, kind)["status"], "True", "{kind}");
    }
    let containers = web["status"]["containerStatuses"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    for s in containers {
        assert_eq!(s["ready"], true);
        assert_eq!(s["started"], true);
        assert_eq!(s["restartCount"], 0);
        assert!(s["state"]["running"]["startedAt"].is_string());
        assert!(s["containerID"].as_str().unwrap().starts_with("sim://"));
    }
    assert_eq!(containers[1]["image"], "nginx:1.27");
    let wide = c.ok(&["get", "pod", "web", "-o", "wide", "--no-headers"]);
    assert!(
        wide.contains("Running") && wide.contains(&ip) && wide.contains("sim-1"),
        "{wide}"
    );

    // Two pods on one node never share an address; a freed one is reused.
    pod(&c, "api", Some("sim-1"), "", "Always");
    let api = wait_phase(&c, "api", "Running");
    let api_ip = api["status"]["podIP"].as_str().unwrap().to_owned();
    assert_ne!(api_ip, ip);
    assert!(cidr_contains(cidr, &api_ip));
    c.ok(&["delete", "pod", "web", "--wait=false"]);
    wait_until("pod web is gone", || get_pod(&c, "web").is_none());
    pod(&c, "web2", Some("sim-1"), "", "Always");
    let web2 = wait_phase(&c, "web2", "Running");
    assert_eq!(
        web2["status"]["podIP"],
        ip.as_str(),
        "the freed address is reused"
    );
}

#[test]
fn a_pod_held_by_a_finalizer_is_finished_and_removed_once_released() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(1);
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n\
                spec:\n  nodeName: sim-0\n  containers:\n  - {name: app, image: busybox}\n";
    c.ok(&["apply", "-f", &c.file("held.yaml", yaml)]);
    wait_phase(&c, "held", "Running");
    c.ok(&["delete", "pod", "held", "--wait=false"]);
    let p = get_pod(&c, "held").unwrap();
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    // Its containers stop and it ends, as a kubelet finishes a deleted pod.
    let p = wait_phase(&c, "held", "Succeeded");
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0, "{p}");
    c.ok(&[
        "patch",
        "pod",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    wait_until("pod held is gone", || get_pod(&c, "held").is_none());
}

#[test]
fn a_node_told_to_stop_heart_beating_stops_and_resumes_when_told() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(2);
    c.ok(&["annotate", "node", "sim-0", "sim.bosun.dev/heartbeat=stop"]);
    // A renewal already on its way may still land: take the time after it.
    std::thread::sleep(Duration::from_secs(2));
    let frozen = lease_renewed(&c, "sim-0");
    let other = lease_renewed(&c, "sim-1");
    // While stopped, its pods are not run either.
    pod(&c, "waits", Some("sim-0"), "", "Always");
    // Longer than a renewal interval (10 s): a live node renews in it.
    let start = Instant::now();
    wait_until("sim-1 renews its lease", || {
        lease_renewed(&c, "sim-1") != other
    });
    std::thread::sleep(Duration::from_secs(12).saturating_sub(start.elapsed()));
    assert_eq!(
        lease_renewed(&c, "sim-0"),
        frozen,
        "a stopped node renewed its lease"
    );
    assert_eq!(phase(&c, "waits"), "Pending");
    c.ok(&["annotate", "node", "sim-0", "sim.bosun.dev/heartbeat-"]);
    wait_until("sim-0 renews its lease again", || {
        lease_renewed(&c, "sim-0") != frozen
    });
    wait_phase(&c, "waits", "Running");
    let node = c.get(&["node", "sim-0"]).unwrap();
    assert_eq!(condition(&node, "Ready")["status"], "True");
}

#[test]
fn the_exit_code_annotation_ends_or_restarts_pods_by_restart_policy() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(2);
    let exit = |code: i32| format!("sim.bosun.dev/exit-code: \"{code}\"");
    pod(&c, "done", Some("sim-0"), &exit(0), "Never");
    pod(&c, "broken", Some("sim-1"), &exit(3), "Never");
    pod(&c, "retries", Some("sim-1"), &exit(1), "OnFailure");
    let done = wait_phase(&c, "done", "Succeeded");
    let t = &done["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 0);
    assert_eq!(t["reason"], "Completed");
    assert_eq!(condition(&done, "Ready")["status"], "False");
    let broken = wait_phase(&c, "broken", "Failed");
    let t = &broken["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    wait_until("pod retries restarted", || {
        get_pod(&c, "retries").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        })
    });
    let retries = get_pod(&c, "retries").unwrap();
    assert_eq!(retries["status"]["phase"], "Running");
    let s = &retries["status"]["containerStatuses"][0];
    assert_eq!(s["lastState"]["terminated"]["exitCode"], 1);
    assert!(s["state"]["running"].is_object());
    let out = c.ok(&["get", "pods", "--no-headers"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("done ") && l.contains("Completed")),
        "{out}"
    );
}

#[test]
fn cleanup_deletes_the_nodes_and_their_leases() {
    let c = Cluster::start();
    let mut sim = c.sim_nodes_with("gone", 3, &["--cleanup"]);
    let status = sim.terminate();
    assert!(status.success(), "sim-nodes exited with {status}");
    let nodes = c.ok(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("gone-"), "{nodes}");
    let leases = c.ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
    assert!(!leases.contains("gone-"), "{leases}");
}

fn sim_nodes(args: &[&str]) -> (i32, String) {
    let out = Command::new(bosun())
        .arg("sim-nodes")
        .args(args)
        .output()
        .expect("spawn bosun sim-nodes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_get_clear_errors_and_register_nothing() {
    let c = Cluster::start();
    let admin = c.admin();
    let k = admin.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--kubeconfig", k, "--count", "0"],
            "--count must be at least 1",
        ),
        (vec!["--kubeconfig", k], "--count is required"),
        (vec!["--count", "3"], "--kubeconfig is required"),
        (
            vec!["--kubeconfig", k, "--count", "-2"],
            "--count \"-2\": want a whole number",
        ),
        (
            vec!["--kubeconfig", k, "--count", "3", "--memory", "32GB"],
            "--memory: \"32GB\" is not a quantity",
        ),
        (
            vec!["--kubeconfig", k, "--count", "3", "--cpu", "0"],
            "--cpu: \"0\" is not a quantity (it must be more than zero",
        ),
        (
            vec!["--kubeconfig", k, "--count", "3", "--prefix", "Not_A_Name"],
            "--prefix \"Not_A_Name\"",
        ),
        (
            vec![
                "--kubeconfig",
                k,
                "--count",
                "300",
                "--pod-cidr",
                "10.42.0.0/16",
            ],
            "holds only 256 /24 node CIDRs",
        ),
        (
            vec!["--kubeconfig", k, "--count", "3", "--bogus"],
            "unexpected argument \"--bogus\"",
        ),
    ] {
        let (code, err) = sim_nodes(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let missing = c.dir.path().join("no-such.kubeconfig");
    let (code, err) = sim_nodes(&["--kubeconfig", missing.to_str().unwrap(), "--count", "3"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("kubeconfig {}", missing.display())),
        "{err}"
    );
    let nodes = c.ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.trim().is_empty(), "bad flags registered {nodes}");
}

#[test]
fn a_restarted_process_takes_over_its_nodes_and_another_gets_other_cidrs() {
    let c = Cluster::start();
    let sim = c.sim_nodes(2);
    pod(&c, "before", Some("sim-0"), "", "Always");
    let before = wait_phase(&c, "before", "Running");
    let cidr = c.get(&["node", "sim-0"]).unwrap()["spec"]["podCIDR"].clone();
    drop(sim);
    let _again = c.sim_nodes(2);
    assert_eq!(c.get(&["node", "sim-0"]).unwrap()["spec"]["podCIDR"], cidr);
    // The running pod keeps its address, so a new pod gets another.
    pod(&c, "after", Some("sim-0"), "", "Always");
    let after = wait_phase(&c, "after", "Running");
    assert_ne!(after["status"]["podIP"], before["status"]["podIP"]);
    assert_eq!(phase(&c, "before"), "Running");
    // A second process's nodes get CIDRs and addresses no other node holds.
    let _more = c.sim_nodes_with("more", 2, &[]);
    let nodes = c.get(&["nodes"]).unwrap();
    let items = nodes["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let mut cidrs: Vec<&str> = items
        .iter()
        .map(|n| n["spec"]["podCIDR"].as_str().unwrap())
        .collect();
    let mut ips: Vec<&str> = items
        .iter()
        .map(|n| n["status"]["addresses"][0]["address"].as_str().unwrap())
        .collect();
    cidrs.sort();
    cidrs.dedup();
    ips.sort();
    ips.dedup();
    assert_eq!((cidrs.len(), ips.len()), (4, 4), "{cidrs:?} {ips:?}");
}

#[test]
fn a_pod_marked_not_ready_on_a_live_node_is_ready_again() {
    let c = Cluster::start();
    let _sim = c.sim_nodes(1);
    pod(&c, "web", Some("sim-0"), "", "Always");
    wait_phase(&c, "web", "Running");
    // What the node lifecycle controller writes while a node is silent.
    let p = get_pod(&c, "web").unwrap();
    let conditions: Vec<Value> = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cond| {
            let mut cond = cond.clone();
            if cond["type"] == "Ready" {
                cond["status"] = "False".into();
                cond["reason"] = "NodeNotReady".into();
            }
            cond
        })
        .collect();
    let patch = serde_json::json!({"status": {"conditions": conditions}}).to_string();
    c.ok(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    wait_until("pod web is Ready again", || {
        get_pod(&c, "web").is_some_and(|p| condition(&p, "Ready")["status"] == "True")
    });
}
