//! Server-side printing: `meta.k8s.io/v1 Table`s with the columns kubectl
//! users know (`get pods` shows READY, STATUS, RESTARTS, AGE; `-o wide` adds
//! the columns of priority 1).

use bosun_api::Resource;
use bosun_api::time::{human_age, parse_time};
use serde_json::{Value, json};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub(crate) fn parse(v: Option<&str>) -> Result<Include, String> {
        match v {
            None | Some("" | "Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(format!("includeObject: unsupported value {other:?}")),
        }
    }
}

/// (name, type, priority, description)
type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = (
    "Name",
    "string",
    0,
    "Name must be unique within a namespace.",
);
const AGE: Column = ("Age", "string", 0, "The time since the object was created.");

fn columns(kind: &str) -> Vec<Column> {
    let mut cols = vec![NAME];
    let extra: &[Column] = match kind {
        "Pod" => &[
            (
                "Ready",
                "string",
                0,
                "Ready containers out of all containers.",
            ),
            (
                "Status",
                "string",
                0,
                "The aggregate state of the containers.",
            ),
            ("Restarts", "string", 0, "Restarts of the containers."),
            AGE,
            ("IP", "string", 1, "The pod's IP address."),
            ("Node", "string", 1, "The node the pod is bound to."),
            (
                "Nominated Node",
                "string",
                1,
                "The node nominated by preemption.",
            ),
            (
                "Readiness Gates",
                "string",
                1,
                "Readiness gates met out of all.",
            ),
        ],
        "Node" => &[
            ("Status", "string", 0, "The node's readiness."),
            ("Roles", "string", 0, "The node's roles, from its labels."),
            AGE,
            ("Version", "string", 0, "The node agent's version."),
            ("Internal-IP", "string", 1, "The node's internal address."),
            ("External-IP", "string", 1, "The node's external address."),
            ("OS-Image", "string", 1, "The node's operating system."),
            ("Kernel-Version", "string", 1, "The node's kernel."),
            (
                "Container-Runtime",
                "string",
                1,
                "The node's container runtime.",
            ),
        ],
        "Service" => &[
            ("Type", "string", 0, "How the service is exposed."),
            ("Cluster-IP", "string", 0, "The service's virtual IP."),
            ("External-IP", "string", 0, "Addresses outside the cluster."),
            ("Port(s)", "string", 0, "The service's ports."),
            AGE,
            (
                "Selector",
                "string",
                1,
                "The labels of the pods it routes to.",
            ),
        ],
        "Endpoints" => &[
            ("Endpoints", "string", 0, "The ready addresses and ports."),
            AGE,
        ],
        "EndpointSlice" => &[
            ("AddressType", "string", 0, "IPv4, IPv6 or FQDN."),
            ("Ports", "string", 0, "The slice's ports."),
            ("Endpoints", "string", 0, "The endpoints' addresses."),
            AGE,
        ],
        "ConfigMap" => &[("Data", "integer", 0, "Number of keys."), AGE],
        "Secret" => &[
            ("Type", "string", 0, "The secret's type."),
            ("Data", "integer", 0, "Number of keys."),
            AGE,
        ],
        "Namespace" => &[("Status", "string", 0, "The namespace's phase."), AGE],
        "Deployment" => &[
            ("Ready", "string", 0, "Ready replicas out of desired."),
            (
                "Up-to-date",
                "integer",
                0,
                "Replicas of the current template.",
            ),
            ("Available", "integer", 0, "Available replicas."),
            AGE,
            ("Containers", "string", 1, "Container names."),
            ("Images", "string", 1, "Container images."),
            ("Selector", "string", 1, "The label selector."),
        ],
        "ReplicaSet" => &[
            ("Desired", "integer", 0, "Desired replicas."),
            ("Current", "integer", 0, "Current replicas."),
            ("Ready", "integer", 0, "Ready replicas."),
            AGE,
        ],
        "DaemonSet" => &[
            ("Desired", "integer", 0, "Nodes that should run the pod."),
            ("Current", "integer", 0, "Nodes that run the pod."),
            ("Ready", "integer", 0, "Nodes whose pod is ready."),
            (
                "Up-to-date",
                "integer",
                0,
                "Nodes whose pod is of the current template.",
            ),
            ("Available", "integer", 0, "Nodes whose pod is available."),
            (
                "Node Selector",
                "string",
                0,
                "The template's node selector.",
            ),
            AGE,
            ("Containers", "string", 1, "Container names."),
            ("Images", "string", 1, "Container images."),
            ("Selector", "string", 1, "The label selector."),
        ],
        "StatefulSet" => &[
            ("Ready", "string", 0, "Ready replicas out of desired."),
            AGE,
            ("Containers", "string", 1, "Container names."),
            ("Images", "string", 1, "Container images."),
        ],
        "Job" => &[
            (
                "Status",
                "string",
                0,
                "Running, Complete, Failed or Suspended.",
            ),
            (
                "Completions",
                "string",
                0,
                "Succeeded pods out of those needed.",
            ),
            (
                "Duration",
                "string",
                0,
                "How long the job ran or has been running.",
            ),
            AGE,
            ("Containers", "string", 1, "Container names."),
            ("Images", "string", 1, "Container images."),
            ("Selector", "string", 1, "The label selector."),
        ],
        _ => &[AGE],
    };
    cols.extend_from_slice(extra);
    cols
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(obj, |v, p| v.get(p))?.as_str()
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(obj, |v, p| v.get(p))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn or_none(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("<none>").to_owned()
}

fn items<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    path.iter()
        .try_fold(obj, |v, p| v.get(p))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn age(obj: &Value, now: i64) -> String {
    str_at(obj, &["metadata", "creationTimestamp"])
        .and_then(parse_time)
        .map_or_else(|| "<unknown>".to_owned(), |t| human_age(now - t))
}

fn pod_cells(obj: &Value, now: i64) -> Vec<Value> {
    let containers = items(obj, &["spec", "containers"]).len();
    let statuses = items(obj, &["status", "containerStatuses"]);
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready") == Some(&Value::Bool(true)))
        .count();
    let restarts: i64 = statuses.iter().map(|s| int_at(s, &["restartCount"])).sum();
    let mut reason = str_at(obj, &["status", "reason"])
        .or_else(|| str_at(obj, &["status", "phase"]))
        .unwrap_or("Pending")
        .to_owned();
    // A waiting or terminated container says more than the phase (as kubectl's
    // own printer does): ContainerCreating, CrashLoopBackOff, Completed, ...
    for s in statuses.iter().rev() {
        if let Some(r) = str_at(s, &["state", "waiting", "reason"]).filter(|r| !r.is_empty()) {
            reason = r.to_owned();
        } else if let Some(r) =
            str_at(s, &["state", "terminated", "reason"]).filter(|r| !r.is_empty())
        {
            reason = r.to_owned();
        }
    }
    if obj["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        reason = "Terminating".to_owned();
    }
    let gates = items(obj, &["spec", "readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                items(obj, &["status", "conditions"])
                    .iter()
                    .any(|c| c.get("type") == g.get("conditionType") && c["status"] == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        json!(format!("{ready}/{containers}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(obj, now)),
        json!(or_none(str_at(obj, &["status", "podIP"]))),
        json!(or_none(str_at(obj, &["spec", "nodeName"]))),
        json!(or_none(str_at(obj, &["status", "nominatedNodeName"]))),
        json!(gates),
    ]
}

fn node_cells(obj: &Value, now: i64) -> Vec<Value> {
    let ready = items(obj, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == "Ready")
        // As kubectl prints it: a Ready condition that is not True (False,
        // or Unknown once the node lifecycle controller stops hearing from
        // the node) is NotReady; only a node without one is Unknown.
        .map(|c| {
            if c["status"] == "True" {
                "Ready"
            } else {
                "NotReady"
            }
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_owned();
    if obj["spec"]["unschedulable"] == Value::Bool(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<&str> = obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flat_map(|l| l.keys())
        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
        .collect();
    let address = |ty: &str| {
        items(obj, &["status", "addresses"])
            .iter()
            .find(|a| a["type"] == ty)
            .and_then(|a| a["address"].as_str())
    };
    let info = |f: &str| or_none(str_at(obj, &["status", "nodeInfo", f]));
    vec![
        json!(status),
        json!(if roles.is_empty() {
            "<none>".to_owned()
        } else {
            roles.join(",")
        }),
        json!(age(obj, now)),
        json!(info("kubeletVersion")),
        json!(or_none(address("InternalIP"))),
        json!(or_none(address("ExternalIP"))),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

/// At most three of `list`, then how many more, as kubectl's printers do.
fn at_most_three(list: Vec<String>, empty: &str) -> String {
    match list.len() {
        0 => empty.to_owned(),
        n if n > 3 => format!("{} + {} more...", list[..3].join(","), n - 3),
        _ => list.join(","),
    }
}

/// An Endpoints' ready `ip:port`s (bare IPs for a subset without ports).
fn endpoints_cell(obj: &Value) -> String {
    let subsets = items(obj, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list = Vec::new();
    for ss in subsets {
        let addrs = items(ss, &["addresses"]);
        let ip = |a: &Value| a["ip"].as_str().unwrap_or_default().to_owned();
        match items(ss, &["ports"]) {
            [] => list.extend(addrs.iter().map(ip)),
            ports => {
                for p in ports {
                    for a in addrs {
                        let ip = ip(a);
                        let host = if ip.contains(':') {
                            format!("[{ip}]")
                        } else {
                            ip
                        };
                        list.push(format!("{host}:{}", p["port"]));
                    }
                }
            }
        }
    }
    // Subsets with only not-ready addresses print nothing, as in kubectl.
    if list.is_empty() {
        String::new()
    } else {
        at_most_three(list, "")
    }
}

fn endpoint_slice_cells(obj: &Value, now: i64) -> Vec<Value> {
    let ports: Vec<String> = items(obj, &["ports"])
        .iter()
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_owned(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let addresses: Vec<String> = items(obj, &["endpoints"])
        .iter()
        .flat_map(|e| items(e, &["addresses"]))
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    vec![
        json!(str_at(obj, &["addressType"]).unwrap_or_default()),
        json!(at_most_three(ports, "<unset>")),
        json!(at_most_three(addresses, "<unset>")),
        json!(age(obj, now)),
    ]
}

fn service_cells(obj: &Value, now: i64) -> Vec<Value> {
    let ty = str_at(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    let mut external: Vec<String> = items(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    for ing in items(obj, &["status", "loadBalancer", "ingress"]) {
        if let Some(a) = ing["ip"].as_str().or(ing["hostname"].as_str()) {
            external.push(a.to_owned());
        }
    }
    let external = match (ty, external.is_empty()) {
        (_, false) => external.join(","),
        ("LoadBalancer", true) => "<pending>".to_owned(),
        ("ExternalName", true) => or_none(str_at(obj, &["spec", "externalName"])),
        _ => "<none>".to_owned(),
    };
    let ports: Vec<String> = items(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    let selector: Vec<String> = obj["spec"]["selector"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    vec![
        json!(ty),
        json!(or_none(str_at(obj, &["spec", "clusterIP"]))),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".to_owned()
        } else {
            ports.join(",")
        }),
        json!(age(obj, now)),
        json!(if selector.is_empty() {
            "<none>".to_owned()
        } else {
            selector.join(",")
        }),
    ]
}

fn count_keys(obj: &Value, fields: &[&str]) -> usize {
    fields
        .iter()
        .filter_map(|f| obj.get(f).and_then(Value::as_object))
        .map(serde_json::Map::len)
        .sum()
}

fn deployment_cells(obj: &Value, now: i64) -> Vec<Value> {
    let desired = obj["spec"]
        .get("replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let containers = items(obj, &["spec", "template", "spec", "containers"]);
    let join = |f: &str| {
        containers
            .iter()
            .filter_map(|c| c[f].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let selector: Vec<String> = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    vec![
        json!(format!(
            "{}/{desired}",
            int_at(obj, &["status", "readyReplicas"])
        )),
        json!(int_at(obj, &["status", "updatedReplicas"])),
        json!(int_at(obj, &["status", "availableReplicas"])),
        json!(age(obj, now)),
        json!(join("name")),
        json!(join("image")),
        json!(or_none(Some(&selector.join(",")))),
    ]
}

/// A workload's containers, images and (if `selector`) label selector, as
/// `-o wide` shows them.
fn template_cells(obj: &Value, selector: bool) -> Vec<Value> {
    let containers = items(obj, &["spec", "template", "spec", "containers"]);
    let join = |f: &str| {
        containers
            .iter()
            .filter_map(|c| c[f].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut cells = vec![json!(join("name")), json!(join("image"))];
    if selector {
        let labels: Vec<String> = obj["spec"]["selector"]["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect();
        cells.push(json!(or_none(Some(&labels.join(",")))));
    }
    cells
}

/// A Job's STATUS, COMPLETIONS and DURATION, as kubectl prints them.
fn job_cells(obj: &Value, now: i64) -> Vec<Value> {
    let spec = &obj["spec"];
    let status = &obj["status"];
    let succeeded = int_at(obj, &["status", "succeeded"]);
    let completions = match (spec["completions"].as_i64(), spec["parallelism"].as_i64()) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    };
    let condition = |t: &str| {
        items(obj, &["status", "conditions"])
            .iter()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let state = if condition("Complete") {
        "Complete"
    } else if condition("Failed") {
        "Failed"
    } else if spec["suspend"] == true {
        "Suspended"
    } else {
        "Running"
    };
    let start = status["startTime"].as_str().and_then(parse_time);
    let end = status["completionTime"]
        .as_str()
        .and_then(parse_time)
        .unwrap_or(now);
    let duration = start.map_or(String::new(), |s| human_age(end - s));
    let mut cells = vec![
        json!(state),
        json!(completions),
        json!(duration),
        json!(age(obj, now)),
    ];
    cells.extend(template_cells(obj, true));
    cells
}

fn cells(kind: &str, obj: &Value, now: i64) -> Vec<Value> {
    let name = json!(str_at(obj, &["metadata", "name"]).unwrap_or_default());
    let rest = match kind {
        "Pod" => pod_cells(obj, now),
        "Node" => node_cells(obj, now),
        "Service" => service_cells(obj, now),
        "Endpoints" => vec![json!(endpoints_cell(obj)), json!(age(obj, now))],
        "EndpointSlice" => endpoint_slice_cells(obj, now),
        "ConfigMap" => vec![
            json!(count_keys(obj, &["data", "binaryData"])),
            json!(age(obj, now)),
        ],
        "Secret" => vec![
            json!(str_at(obj, &["type"]).unwrap_or("Opaque")),
            json!(count_keys(obj, &["data"])),
            json!(age(obj, now)),
        ],
        "Namespace" => vec![
            json!(str_at(obj, &["status", "phase"]).unwrap_or("Active")),
            json!(age(obj, now)),
        ],
        "Deployment" => deployment_cells(obj, now),
        "ReplicaSet" => vec![
            json!(int_at(obj, &["spec", "replicas"])),
            json!(int_at(obj, &["status", "replicas"])),
            json!(int_at(obj, &["status", "readyReplicas"])),
            json!(age(obj, now)),
        ],
        "DaemonSet" => {
            let status = |f: &str| json!(int_at(obj, &["status", f]));
            let node_selector: Vec<String> = obj["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            let mut cells = vec![
                status("desiredNumberScheduled"),
                status("currentNumberScheduled"),
                status("numberReady"),
                status("updatedNumberScheduled"),
                status("numberAvailable"),
                json!(or_none(Some(&node_selector.join(",")))),
                json!(age(obj, now)),
            ];
            cells.extend(template_cells(obj, true));
            cells
        }
        "StatefulSet" => {
            let mut cells = vec![
                json!(format!(
                    "{}/{}",
                    int_at(obj, &["status", "readyReplicas"]),
                    obj["spec"]["replicas"].as_i64().unwrap_or(1)
                )),
                json!(age(obj, now)),
            ];
            cells.extend(template_cells(obj, false));
            cells
        }
        "Job" => job_cells(obj, now),
        _ => vec![json!(age(obj, now))],
    };
    std::iter::once(name).chain(rest).collect()
}

pub(crate) fn row(kind: &str, obj: &Value, now: i64, include: Include) -> Value {
    let mut row = json!({"cells": cells(kind, obj, now)});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            });
        }
        Include::Object => row["object"] = obj.clone(),
    }
    row
}

/// The Table columns of a kind.
pub(crate) fn column_definitions(res: &Resource) -> Value {
    Value::Array(
        columns(res.kind)
            .iter()
            .map(|(name, ty, priority, description)| {
                json!({
                    "name": name,
                    "type": ty,
                    "format": if *name == "Name" { "name" } else { "" },
                    "description": description,
                    "priority": priority,
                })
            })
            .collect(),
    )
}

/// A Table of `objects`; `list_meta` is the list's metadata (resourceVersion, continue).
pub(crate) fn table(
    res: &Resource,
    objects: &[Value],
    list_meta: Value,
    now: i64,
    include: Include,
) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": column_definitions(res),
        "rows": objects.iter().map(|o| row(res.kind, o, now, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::resource::find;

    #[test]
    fn pod_rows() {
        let pods = find("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web", "creationTimestamp": "2026-11-18T11:06:40Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"ready": true, "restartCount": 2},
                {"ready": false, "restartCount": 1,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let t = table(
            pods,
            std::slice::from_ref(&pod),
            json!({}),
            1_795_000_000 + 300,
            Include::Metadata,
        );
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 9);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "1/2",
                "CrashLoopBackOff",
                "3",
                "5m",
                "10.42.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        let cols = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(cols[4]["name"], "Age");
        assert_eq!(cols[5]["priority"], 1);
    }

    #[test]
    fn endpoints_and_slices() {
        let eps = find("", "v1", "endpoints").unwrap();
        let ep = json!({"metadata": {"name": "web"}, "subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
             "notReadyAddresses": [{"ip": "10.0.0.9"}],
             "ports": [{"port": 80}, {"name": "m", "port": 9090}]},
        ]});
        let none = json!({"metadata": {"name": "empty"}});
        let t = table(eps, &[ep, none], json!({}), 0, Include::None);
        assert_eq!(
            t["rows"][0]["cells"][1],
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:9090 + 1 more..."
        );
        assert_eq!(t["rows"][1]["cells"][1], "<none>");
        let slices = find("discovery.k8s.io", "v1", "endpointslices").unwrap();
        let sl = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4",
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]});
        let placeholder = json!({"metadata": {"name": "web-xyz"}, "addressType": "IPv4"});
        let t = table(slices, &[sl, placeholder], json!({}), 0, Include::None);
        let cols: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Name", "AddressType", "Ports", "Endpoints", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[1..4],
            [json!("IPv4"), json!("80"), json!("10.0.0.1,10.0.0.2")]
        );
        assert_eq!(
            t["rows"][1]["cells"].as_array().unwrap()[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn other_kinds() {
        let svc = find("", "v1", "services").unwrap();
        let s = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "clusterIP": "10.43.0.9", "ports": [{"port": 80, "nodePort": 30080}],
            "selector": {"app": "web"}}});
        let t = table(svc, &[s], json!({}), 0, Include::None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "web",
                "NodePort",
                "10.43.0.9",
                "<none>",
                "80:30080/TCP",
                "<unknown>",
                "app=web"
            ])
        );
        assert!(t["rows"][0].get("object").is_none());
        let cm = find("", "v1", "configmaps").unwrap();
        let t = table(
            cm,
            &[json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})],
            json!({}),
            0,
            Include::Object,
        );
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["rows"][0]["object"]["data"]["a"], "1");
        let lease = find("coordination.k8s.io", "v1", "leases").unwrap();
        let t = table(
            lease,
            &[json!({"metadata": {"name": "l"}})],
            json!({}),
            0,
            Include::None,
        );
        assert_eq!(t["rows"][0]["cells"], json!(["l", "<unknown>"]));
    }
}
