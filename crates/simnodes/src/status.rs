//! The objects a simulated node writes: its Node (capacity, conditions,
//! addresses, nodeInfo), its Lease, and the status of its pods as the kubelet
//! would report them running, exited or restarted. Pure: the caller passes
//! the clock's reading.

use std::net::Ipv4Addr;
use std::time::Duration;

use bosun_api::time::format_time;
use serde_json::{Value, json};

use crate::cidr::Ipv4Net;
use crate::schedule::LEASE_DURATION_SECONDS;

/// Where nodes' Leases live (the kubelet's namespace).
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";
/// A node with this annotation set to `stop` stops heart-beating.
pub(crate) const HEARTBEAT_ANNOTATION: &str = "sim.bosun.dev/heartbeat";
/// A pod with this annotation exits with that code after a short run.
pub(crate) const EXIT_CODE_ANNOTATION: &str = "sim.bosun.dev/exit-code";
/// The label every simulated node carries (value: the process's prefix).
pub(crate) const NODE_LABEL: &str = "sim.bosun.dev/node";

/// What each node offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub ephemeral_storage: String,
}

/// One simulated node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeSpec {
    pub name: String,
    pub prefix: String,
    pub pod_cidr: Ipv4Net,
    pub ip: Ipv4Addr,
}

/// `metav1.MicroTime`: RFC 3339 with microseconds, what Leases carry.
pub(crate) fn micro_time(unix_micros: i64) -> String {
    let secs = unix_micros.div_euclid(1_000_000);
    let micros = unix_micros.rem_euclid(1_000_000);
    let t = format_time(secs);
    format!("{}.{micros:06}Z", t.trim_end_matches('Z'))
}

/// A new Node with its status, as the kubelet registers one.
pub(crate) fn node(n: &NodeSpec, cap: &Capacity, now: i64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": n.name,
            "labels": node_labels(n),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": n.pod_cidr.to_string(), "podCIDRs": [n.pod_cidr.to_string()]},
        "status": node_status(n, cap, now, now),
    })
}

pub(crate) fn node_labels(n: &NodeSpec) -> Value {
    json!({
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "sim",
        NODE_LABEL: n.prefix,
    })
}

/// A node's status: Ready since `transition`, heard from at `heartbeat`.
pub(crate) fn node_status(n: &NodeSpec, cap: &Capacity, heartbeat: i64, transition: i64) -> Value {
    let (hb, tr) = (format_time(heartbeat), format_time(transition));
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": hb, "lastTransitionTime": tr})
    };
    let resources = json!({
        "cpu": cap.cpu,
        "memory": cap.memory,
        "pods": cap.pods.to_string(),
        "ephemeral-storage": cap.ephemeral_storage,
    });
    json!({
        "capacity": resources,
        "allocatable": resources,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                      "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                      "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID",
                      "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": n.ip.to_string()},
            {"type": "Hostname", "address": n.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": n.name,
            "systemUUID": n.name,
            "bootID": n.name,
            "kernelVersion": "sim",
            "osImage": "bosun sim-nodes",
            "containerRuntimeVersion": "sim://0.1.0",
            "kubeletVersion": "v1.33.0-sim",
            "kubeProxyVersion": "v1.33.0-sim",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    })
}

/// A node's Lease, held by the node itself and owned by its Node object (so
/// the garbage collector removes it with the node).
pub(crate) fn lease(node: &str, node_uid: &str, renew: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}],
        },
        "spec": lease_spec(node, renew),
    })
}

pub(crate) fn lease_spec(node: &str, renew: &str) -> Value {
    json!({
        "holderIdentity": node,
        "leaseDurationSeconds": LEASE_DURATION_SECONDS,
        "renewTime": renew,
    })
}

fn container_id(uid: &str, name: &str, restarts: u64) -> String {
    format!("sim://{uid}/{name}/{restarts}")
}

/// The status of `pod` once its containers run: every condition True, each
/// init container completed, each container running and ready.
pub(crate) fn running(pod: &Value, ip: Ipv4Addr, host: Ipv4Addr, now: i64) -> Value {
    let t = format_time(now);
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let status = &pod["status"];
    let scheduled_at = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "PodScheduled")
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(&t)
        .to_owned();
    let start = status["startTime"].as_str().unwrap_or(&t).to_owned();
    let condition = |kind: &str, at: &str| json!({"type": kind, "status": "True", "lastProbeTime": null, "lastTransitionTime": at});
    let base = |c: &Value| {
        let name = c["name"].as_str().unwrap_or_default();
        let image = c["image"].as_str().unwrap_or_default();
        json!({
            "name": name,
            "image": image,
            "imageID": format!("sim://{image}"),
            "containerID": container_id(uid, name, 0),
            "restartCount": 0,
        })
    };
    let containers: Vec<Value> = list(&pod["spec"]["containers"])
        .map(|c| {
            let mut s = base(c);
            s["ready"] = true.into();
            s["started"] = true.into();
            s["state"] = json!({"running": {"startedAt": t}});
            s
        })
        .collect();
    let inits: Vec<Value> = list(&pod["spec"]["initContainers"])
        .map(|c| {
            let mut s = base(c);
            s["ready"] = true.into();
            s["started"] = false.into();
            s["state"] = json!({"terminated": {"exitCode": 0, "reason": "Completed",
                                 "startedAt": t, "finishedAt": t,
                                 "containerID": s["containerID"].clone()}});
            s
        })
        .collect();
    let mut out = json!({
        "phase": "Running",
        "conditions": [
            condition("PodReadyToStartContainers", &t),
            condition("Initialized", &t),
            condition("Ready", &t),
            condition("ContainersReady", &t),
            condition("PodScheduled", &scheduled_at),
        ],
        "hostIP": host.to_string(),
        "hostIPs": [{"ip": host.to_string()}],
        "podIP": ip.to_string(),
        "podIPs": [{"ip": ip.to_string()}],
        "startTime": start,
        "containerStatuses": containers,
    });
    if !inits.is_empty() {
        out["initContainerStatuses"] = inits.into();
    }
    if let Some(q) = status.get("qosClass") {
        out["qosClass"] = q.clone();
    }
    out
}

/// Whether a pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Value) -> bool {
    list(&pod["status"]["conditions"]).any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// A running pod's `status` with its containers ready again: Ready and
/// ContainersReady True (from `now` if they were not), everything else kept.
pub(crate) fn ready_again(status: &Value, now: i64) -> Value {
    let t = format_time(now);
    let mut out = status.clone();
    for c in out["conditions"].as_array_mut().into_iter().flatten() {
        if (c["type"] == "Ready" || c["type"] == "ContainersReady") && c["status"] != "True" {
            c["status"] = "True".into();
            c["lastTransitionTime"] = t.clone().into();
            if let Some(o) = c.as_object_mut() {
                o.remove("reason");
                o.remove("message");
            }
        }
    }
    for c in out["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        if c["state"]["running"].is_object() {
            c["ready"] = true.into();
        }
    }
    out
}

fn list(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// Whether the kubelet would start a container again after it exited with
/// `code` under the pod's `restartPolicy` (default Always).
pub(crate) fn restarts(policy: &str, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => true,
    }
}

/// The status after every container of a pod whose status is `running`
/// exited with `code`: terminal (phase Succeeded for 0, Failed otherwise)
/// or, if [`restarts`] says so, running again with restartCount + 1 and the
/// exit as `lastState`.
pub(crate) fn exited(running: &Value, uid: &str, policy: &str, code: i32, now: i64) -> Value {
    let t = format_time(now);
    let reason = if code == 0 { "Completed" } else { "Error" };
    let again = restarts(policy, code);
    let mut out = running.clone();
    for c in out["containerStatuses"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        let started = c["state"]["running"]["startedAt"].clone();
        let terminated = json!({"exitCode": code, "reason": reason, "startedAt": started,
                                "finishedAt": t, "containerID": c["containerID"].clone()});
        if again {
            let count = c["restartCount"].as_u64().unwrap_or(0) + 1;
            let name = c["name"].as_str().unwrap_or_default().to_owned();
            c["restartCount"] = count.into();
            c["lastState"] = json!({"terminated": terminated});
            c["containerID"] = container_id(uid, &name, count).into();
            c["state"] = json!({"running": {"startedAt": t}});
        } else {
            c["state"] = json!({"terminated": terminated});
            c["ready"] = false.into();
            c["started"] = false.into();
        }
    }
    if !again {
        out["phase"] = if code == 0 { "Succeeded" } else { "Failed" }.into();
        for c in out["conditions"].as_array_mut().into_iter().flatten() {
            if c["type"] == "Ready" || c["type"] == "ContainersReady" {
                c["status"] = "False".into();
                c["reason"] = "PodCompleted".into();
                c["lastTransitionTime"] = t.clone().into();
            }
        }
    }
    out
}

/// How long a container of a pod with the exit-code annotation runs before
/// it exits: a short first run, then the kubelet's crash-loop back-off (10 s
/// doubling up to 5 minutes) stands for the wait before each restart.
pub(crate) fn run_time(restarts: u64) -> Duration {
    match restarts {
        0 => Duration::from_secs(1),
        n => Duration::from_secs((10u64 << (n - 1).min(5)).min(300)),
    }
}

#[cfg(test)]
mod tests;
