//! Per-kind defaulting and validation: what the server fills in on a write
//! (a pod starts `Pending`, a secret's `stringData` becomes `data`) and what
//! it refuses with `422 Invalid` beyond the metadata rules.

use base64::Engine;
use bosun_api::Cause;
use bosun_api::name::dns1123_label;
use serde_json::{Map, Value, json};

/// Fills in defaults of a new or updated object of `kind`.
pub(crate) fn default(kind: &str, obj: &mut Value) -> Result<(), Cause> {
    let Value::Object(o) = obj else {
        return Ok(());
    };
    match kind {
        "Secret" => {
            o.entry("type").or_insert_with(|| json!("Opaque"));
            if let Some(Value::Object(plain)) = o.remove("stringData") {
                let data = o.entry("data").or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                let data = data.as_object_mut().expect("made an object above");
                for (k, v) in plain {
                    let Value::String(s) = v else {
                        return Err(Cause::invalid(
                            format!("stringData[{k:?}]"),
                            &v.to_string(),
                            "must be a string",
                        ));
                    };
                    let enc = base64::engine::general_purpose::STANDARD.encode(s);
                    data.insert(k, Value::String(enc));
                }
            }
        }
        "Service" => {
            let spec = object_at(o, "spec");
            spec.entry("type").or_insert_with(|| json!("ClusterIP"));
            spec.entry("sessionAffinity")
                .or_insert_with(|| json!("None"));
            if let Some(Value::Array(ports)) = spec.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.entry("protocol").or_insert_with(|| json!("TCP"));
                    if let Some(port) = p.get("port").cloned() {
                        p.entry("targetPort").or_insert(port);
                    }
                }
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" => {
            object_at(o, "spec")
                .entry("replicas")
                .or_insert_with(|| json!(1));
            if kind == "Deployment" {
                deployment_defaults(object_at(o, "spec"));
            }
        }
        _ => {}
    }
    workload_defaults(kind, o);
    Ok(())
}

/// The defaults Kubernetes gives DaemonSets, StatefulSets and Jobs: kubectl
/// reads them (`rollout status` refuses a set whose strategy type is not
/// `RollingUpdate`), and so do their controllers.
fn workload_defaults(kind: &str, o: &mut Map<String, Value>) {
    let spec = match kind {
        "DaemonSet" | "StatefulSet" | "Job" => object_at(o, "spec"),
        _ => return,
    };
    if kind == "Job" {
        // Neither set: one pod to one success; parallelism alone: a work queue.
        if !spec.contains_key("parallelism") {
            spec.insert("parallelism".into(), json!(1));
            spec.entry("completions").or_insert_with(|| json!(1));
        }
        spec.entry("backoffLimit").or_insert_with(|| json!(6));
        spec.entry("completionMode")
            .or_insert_with(|| json!("NonIndexed"));
        spec.entry("suspend").or_insert_with(|| json!(false));
        return;
    }
    spec.entry("revisionHistoryLimit")
        .or_insert_with(|| json!(10));
    if kind == "StatefulSet" {
        spec.entry("podManagementPolicy")
            .or_insert_with(|| json!("OrderedReady"));
    }
    let strategy = object_at(spec, "updateStrategy");
    let rolling_update = *strategy
        .entry("type")
        .or_insert_with(|| json!("RollingUpdate"))
        == "RollingUpdate";
    if rolling_update {
        let rolling = object_at(strategy, "rollingUpdate");
        if kind == "StatefulSet" {
            rolling.entry("partition").or_insert_with(|| json!(0));
        } else {
            rolling.entry("maxUnavailable").or_insert_with(|| json!(1));
            rolling.entry("maxSurge").or_insert_with(|| json!(0));
        }
    }
}

/// A Deployment's defaults, as Kubernetes sets them (`kubectl describe`
/// prints the strategy; the controller reads the same values when absent).
fn deployment_defaults(spec: &mut Map<String, Value>) {
    spec.entry("revisionHistoryLimit")
        .or_insert_with(|| json!(10));
    spec.entry("progressDeadlineSeconds")
        .or_insert_with(|| json!(600));
    let strategy = object_at(spec, "strategy");
    if *strategy
        .entry("type")
        .or_insert_with(|| json!("RollingUpdate"))
        == "RollingUpdate"
    {
        let rolling = object_at(strategy, "rollingUpdate");
        rolling.entry("maxSurge").or_insert_with(|| json!("25%"));
        rolling
            .entry("maxUnavailable")
            .or_insert_with(|| json!("25%"));
    }
}

/// Gives a new pod the NoExecute tolerations of `node.kubernetes.io/not-ready`
/// and `unreachable` for `seconds`, unless it tolerates them already (what
/// kube-apiserver's DefaultTolerationSeconds admission does), so that its
/// pods are evicted from a lost node after that long, not at once.
pub(crate) fn default_tolerations(pod: &mut Value, (not_ready, unreachable): (i64, i64)) {
    let Value::Object(o) = pod else {
        return;
    };
    let spec = object_at(o, "spec");
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        return;
    }
    let list = list.as_array_mut().expect("checked above");
    for (key, seconds) in [
        ("node.kubernetes.io/not-ready", not_ready),
        ("node.kubernetes.io/unreachable", unreachable),
    ] {
        let tolerated = list.iter().any(|t| {
            let k = t["key"].as_str().unwrap_or_default();
            let e = t["effect"].as_str().unwrap_or_default();
            (k == key || k.is_empty()) && (e == "NoExecute" || e.is_empty())
        });
        if !tolerated {
            list.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": seconds}),
            );
        }
    }
}

/// The status an object of `kind` starts with (clients do not set status on
/// create, except a node agent registering its node).
pub(crate) fn initial_status(kind: &str, old: Option<&Value>) -> Option<Value> {
    match kind {
        "Pod" => Some(json!({"phase": "Pending"})),
        "Namespace" => Some(json!({"phase": "Active"})),
        "Node" => old.cloned(),
        _ => Some(json!({})),
    }
}

fn object_at<'a>(o: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = o.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("made an object above")
}

/// The causes of a `422` in the kind's own fields.
pub(crate) fn validate(kind: &str, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match kind {
        "Pod" => containers(&obj["spec"], "spec", &mut causes),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            if kind != "Job" && !obj["spec"]["selector"].is_object() {
                causes.push(Cause::required("spec.selector"));
            }
            if let Some(r) = obj["spec"].get("replicas")
                && r.as_i64().is_none_or(|n| n < 0)
            {
                causes.push(Cause::invalid(
                    "spec.replicas",
                    &r.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            containers(
                &obj["spec"]["template"]["spec"],
                "spec.template.spec",
                &mut causes,
            );
        }
        "Service" => {
            for (i, p) in obj["spec"]["ports"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .enumerate()
            {
                if p["port"].as_i64().is_none_or(|n| !(1..=65535).contains(&n)) {
                    causes.push(Cause::invalid(
                        format!("spec.ports[{i}].port"),
                        &p["port"].to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        "Secret" => {
            for (k, v) in obj["data"].as_object().into_iter().flatten() {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    causes.push(Cause::invalid(
                        format!("data[{k:?}]"),
                        "<secret value>",
                        "must be base64-encoded bytes",
                    ));
                }
            }
        }
        _ => {}
    }
    causes
}

/// What an update may not change: a ConfigMap's or Secret's data once
/// `immutable` is set, a workload's selector, and a pod's spec beyond its
/// images, active deadline, tolerations and grace period.
pub(crate) fn immutable(kind: &str, cur: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match kind {
        "ConfigMap" | "Secret" if cur["immutable"] == Value::Bool(true) => {
            for field in ["data", "binaryData", "immutable"] {
                if cur.get(field) != new.get(field) {
                    causes.push(Cause {
                        reason: "FieldValueForbidden",
                        field: field.to_owned(),
                        message: "Forbidden: field is immutable when `immutable` is set".to_owned(),
                    });
                }
            }
        }
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "Job"
            if cur["spec"]["selector"] != new["spec"]["selector"] =>
        {
            causes.push(Cause::immutable("spec.selector"));
        }
        "Pod" => {
            let mutable_removed = |spec: &Value| {
                let mut spec = spec.clone();
                if let Some(m) = spec.as_object_mut() {
                    for f in [
                        "activeDeadlineSeconds",
                        "tolerations",
                        "terminationGracePeriodSeconds",
                    ] {
                        m.remove(f);
                    }
                    for list in ["containers", "initContainers"] {
                        if let Some(Value::Array(cs)) = m.get_mut(list) {
                            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                                c.remove("image");
                            }
                        }
                    }
                }
                spec
            };
            if mutable_removed(&cur["spec"]) != mutable_removed(&new["spec"]) {
                causes.push(Cause {
                    reason: "FieldValueForbidden",
                    field: "spec".to_owned(),
                    message: "Forbidden: pod updates may not change fields other than \
                              `spec.containers[*].image`, `spec.initContainers[*].image`, \
                              `spec.activeDeadlineSeconds`, `spec.tolerations` and \
                              `spec.terminationGracePeriodSeconds`"
                        .to_owned(),
                });
            }
        }
        _ => {}
    }
    causes
}

fn containers(spec: &Value, at: &str, causes: &mut Vec<Cause>) {
    let list = spec["containers"].as_array().map_or(&[][..], Vec::as_slice);
    if list.is_empty() {
        causes.push(Cause::required(format!("{at}.containers")));
    }
    for (i, c) in list.iter().enumerate() {
        match c["name"].as_str() {
            None | Some("") => causes.push(Cause::required(format!("{at}.containers[{i}].name"))),
            Some(n) => {
                if let Err(why) = dns1123_label(n) {
                    causes.push(Cause::invalid(format!("{at}.containers[{i}].name"), n, why));
                }
            }
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push(Cause::required(format!("{at}.containers[{i}].image")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_kubernetes_defaults() {
        let mut d = json!({"spec": {"selector": {}}});
        default("Deployment", &mut d).unwrap();
        assert_eq!(
            d["spec"],
            json!({"selector": {}, "replicas": 1, "revisionHistoryLimit": 10,
                   "progressDeadlineSeconds": 600,
                   "strategy": {"type": "RollingUpdate",
                                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}})
        );
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        default("Deployment", &mut d).unwrap();
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn pods_tolerate_lost_nodes_for_a_while() {
        let mut pod = json!({"spec": {"containers": []}});
        default_tolerations(&mut pod, (60, 30));
        let keys: Vec<(&str, i64)> = pod["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap(),
                    t["tolerationSeconds"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                ("node.kubernetes.io/not-ready", 60),
                ("node.kubernetes.io/unreachable", 30)
            ]
        );
        assert_eq!(pod["spec"]["tolerations"][0]["effect"], "NoExecute");
        // A pod's own toleration of either (or of everything) is kept as is.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                         "effect": "NoExecute", "tolerationSeconds": 5});
        let mut pod = json!({"spec": {"tolerations": [own.clone()]}});
        default_tolerations(&mut pod, (60, 60));
        let list = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0], own);
        let mut everything = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_tolerations(&mut everything, (60, 60));
        assert_eq!(
            everything["spec"]["tolerations"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn secrets() {
        let mut s = json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        default("Secret", &mut s).unwrap();
        assert_eq!(
            s,
            json!({"type": "Opaque", "data": {"a": "aGk=", "b": "eA=="}})
        );
        assert!(validate("Secret", &s).is_empty());
        assert_eq!(validate("Secret", &json!({"data": {"a": "!!"}})).len(), 1);
    }

    #[test]
    fn immutable_fields() {
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        assert!(immutable("ConfigMap", &cm, &cm).is_empty());
        let changed = json!({"immutable": true, "data": {"a": "2"}});
        assert_eq!(immutable("ConfigMap", &cm, &changed)[0].field, "data");
        let mutable = json!({"data": {"a": "1"}});
        assert!(immutable("ConfigMap", &mutable, &changed).is_empty());
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "a"}]}});
        let new_image = json!({"spec": {"containers": [{"name": "c", "image": "b"}]}});
        assert!(immutable("Pod", &pod, &new_image).is_empty());
        let new_name = json!({"spec": {"containers": [{"name": "d", "image": "a"}]}});
        assert_eq!(immutable("Pod", &pod, &new_name).len(), 1);
        let d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}}});
        let d2 = json!({"spec": {"selector": {"matchLabels": {"a": "c"}}}});
        assert_eq!(immutable("Deployment", &d, &d2)[0].field, "spec.selector");
    }

    #[test]
    fn pods_and_services() {
        let causes = validate("Pod", &json!({"spec": {"containers": [{"name": "Bad"}]}}));
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.containers[0].name", "spec.containers[0].image"]
        );
        assert_eq!(validate("Pod", &json!({}))[0].field, "spec.containers");
        let mut svc = json!({"spec": {"ports": [{"port": 80}]}});
        default("Service", &mut svc).unwrap();
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert!(validate("Service", &svc).is_empty());
        assert_eq!(
            validate("Service", &json!({"spec": {"ports": [{"port": 0}]}})).len(),
            1
        );
    }
}
