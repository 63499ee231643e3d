//! Node failure, seen through the real kubectl against `bosun server` (a
//! short node monitor grace period and default tolerations, so the test
//! takes seconds, not minutes) and `bosun sim-nodes`: a node that stops
//! heart-beating turns NotReady and gets the unreachable taints, its pods are
//! evicted after their toleration and re-created on the other nodes (a pod
//! that tolerates the taint for ever stays, not Ready), and when it comes
//! back it is Ready, untainted and takes pods again (and that pod is Ready
//! again).

mod cluster;
mod common;

use cluster::{Cluster, wait_until};
use serde_json::Value;

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn items(c: &Cluster, args: &[&str]) -> Vec<Value> {
    c.get(args)
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

fn condition<'a>(obj: &'a Value, kind: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && condition(pod, "Ready").is_some_and(|c| c["status"] == "True")
}

/// The Deployment's live, ready pods: (name, node).
fn running(c: &Cluster) -> Vec<(String, String)> {
    items(c, &["pods", "-l", "app=web"])
        .iter()
        .filter(|p| ready(p))
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_owned(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn events(c: &Cluster, reason: &str) -> Vec<Value> {
    items(c, &["events", "-A"])
        .into_iter()
        .filter(|e| e["reason"] == reason)
        .collect()
}

fn lifecycle_taints(node: &Value) -> Vec<(String, String)> {
    let mut t: Vec<(String, String)> = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["key"] == UNREACHABLE || t["key"] == "node.kubernetes.io/not-ready")
        .map(|t| {
            assert!(t["timeAdded"].is_string(), "{t}");
            (
                t["key"].as_str().unwrap().to_owned(),
                t["effect"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    t.sort();
    t
}

#[test]
fn a_lost_node_is_tainted_its_pods_move_and_it_comes_back() {
    let c = Cluster::start_with(&[
        // sim-nodes renews Leases every 10 s: the grace must be longer (the
        // default is 40 s, four renewals).
        "--node-monitor-grace-period",
        "20s",
        "--default-unreachable-toleration-seconds",
        "10",
        "--default-not-ready-toleration-seconds",
        "10",
    ]);
    let _sim = c.sim_nodes(3);
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n\
                      spec:\n  replicas: 6\n  selector: {matchLabels: {app: web}}\n  template:\n    \
                      metadata: {labels: {app: web}}\n    spec:\n      \
                      containers: [{name: web, image: nginx:1.27}]\n";
    c.ok(&["apply", "-f", &c.file("web.yaml", deployment)]);
    wait_until("6 pods run", || running(&c).len() == 6);
    let pods = running(&c);
    let lost = pods[0].1.clone();
    let on_lost: Vec<String> = pods
        .iter()
        .filter(|(_, n)| *n == lost)
        .map(|(p, _)| p.clone())
        .collect();

    // The API server gave every pod the default tolerations.
    let pod = c.get(&["pod", &on_lost[0]]).unwrap();
    let tol = pod["spec"]["tolerations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == UNREACHABLE)
        .unwrap_or_else(|| panic!("no default toleration: {pod}"));
    assert_eq!(tol["effect"], "NoExecute");
    assert_eq!(tol["tolerationSeconds"], 10);

    // A pod that tolerates the node's loss for ever.
    let stays = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: stays}}\nspec:\n  nodeName: {lost}\n  \
         tolerations: [{{key: {UNREACHABLE}, operator: Exists, effect: NoExecute}}]\n  \
         containers: [{{name: app, image: nginx:1.27}}]\n"
    );
    c.ok(&["apply", "-f", &c.file("stays.yaml", &stays)]);
    wait_until("the tolerant pod runs", || {
        c.get(&["pod", "stays"]).is_some_and(|p| ready(&p))
    });

    c.ok(&["annotate", "node", &lost, "sim.bosun.dev/heartbeat=stop"]);
    wait_until("the silent node is NotReady and tainted", || {
        let node = c.get(&["node", &lost]).unwrap();
        let unknown = condition(&node, "Ready")
            .is_some_and(|r| r["status"] == "Unknown" && r["reason"] == "NodeStatusUnknown");
        unknown
            && lifecycle_taints(&node)
                == [
                    (UNREACHABLE.to_owned(), "NoExecute".to_owned()),
                    (UNREACHABLE.to_owned(), "NoSchedule".to_owned()),
                ]
    });
    let table = c.ok(&["get", "node", &lost]);
    assert!(table.contains("NotReady"), "{table}");
    assert!(
        events(&c, "NodeNotReady")
            .iter()
            .any(|e| e["involvedObject"]["kind"] == "Node"
                && e["involvedObject"]["name"] == lost.as_str()),
        "no NodeNotReady event for {lost}"
    );

    wait_until("the pods are re-created on the other nodes", || {
        let now = running(&c);
        now.len() == 6 && now.iter().all(|(_, n)| *n != lost)
    });
    let evicted: Vec<String> = events(&c, "TaintManagerEviction")
        .iter()
        .map(|e| e["involvedObject"]["name"].as_str().unwrap().to_owned())
        .collect();
    for p in &on_lost {
        assert!(
            evicted.contains(p),
            "no eviction event for {p}: {evicted:?}"
        );
        assert!(c.get(&["pod", p]).is_none(), "{p} is still there");
    }
    let status = c.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    // The tolerant pod stays, no longer Ready (its node cannot say).
    let stays = c.get(&["pod", "stays"]).expect("the tolerant pod stays");
    assert!(!ready(&stays), "{stays}");
    assert!(!evicted.contains(&"stays".to_owned()));

    // The node comes back: Ready, untainted, and it takes pods again.
    c.ok(&["annotate", "node", &lost, "sim.bosun.dev/heartbeat-"]);
    wait_until("the node is Ready and untainted", || {
        let node = c.get(&["node", &lost]).unwrap();
        condition(&node, "Ready").is_some_and(|r| r["status"] == "True")
            && lifecycle_taints(&node).is_empty()
    });
    wait_until("the tolerant pod is Ready again", || {
        c.get(&["pod", "stays"]).is_some_and(|p| ready(&p))
    });
    let pinned = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: pinned}}\nspec:\n  \
         nodeSelector: {{kubernetes.io/hostname: {lost}}}\n  \
         containers: [{{name: app, image: nginx:1.27}}]\n"
    );
    c.ok(&["apply", "-f", &c.file("pinned.yaml", &pinned)]);
    wait_until("a pod is scheduled onto the node again", || {
        c.get(&["pod", "pinned"])
            .is_some_and(|p| p["spec"]["nodeName"] == lost.as_str() && ready(&p))
    });
}
