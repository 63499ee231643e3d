//! The three PATCH formats kubectl sends: JSON merge patch (RFC 7386), JSON
//! patch (RFC 6902) and strategic merge patch, which merges lists of the
//! built-in kinds by a key (`containers` by `name`) instead of replacing them.

use serde_json::{Map, Value};

/// A patch format, from the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Json,
    Strategic,
}

impl PatchType {
    pub(crate) fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            _ => None,
        }
    }
}

/// Applies `patch` to `doc`; the message says why a patch cannot apply (400).
pub(crate) fn apply(kind: PatchType, doc: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".to_owned());
            }
            merge(doc, patch);
            Ok(())
        }
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("invalid JSON patch: {e}"))?;
            json_patch::patch(doc, &ops).map_err(|e| e.to_string())
        }
        PatchType::Strategic => {
            let Value::Object(p) = patch else {
                return Err("a strategic merge patch must be a JSON object".to_owned());
            };
            let Value::Object(d) = doc else {
                return Err("the object is not a JSON object".to_owned());
            };
            strategic_map(d, p, &mut Vec::new())
        }
    }
}

/// RFC 7386: objects merge key by key, `null` deletes, anything else replaces.
pub(crate) fn merge(doc: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *doc = patch.clone();
        return;
    };
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let d = doc.as_object_mut().expect("made an object above");
    for (k, v) in p {
        if v.is_null() {
            d.remove(k);
        } else {
            merge(d.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The key that identifies items of the list at `path` (field names from the
/// root), for the lists of the built-in kinds that merge; `None`: replace.
pub(crate) fn merge_key(path: &[String]) -> Option<&'static str> {
    let field = path.last()?.as_str();
    let in_container = path[..path.len() - 1].iter().any(|p| {
        matches!(
            p.as_str(),
            "containers" | "initContainers" | "ephemeralContainers"
        )
    });
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" => "name",
        "env" | "volumes" | "imagePullSecrets" | "resourceClaims" => "name",
        "ports" if in_container => "containerPort",
        "ports" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars that merge as sets.
fn merges_as_set(path: &[String]) -> bool {
    path.last().is_some_and(|f| f == "finalizers") && path.len() == 2 && path[0] == "metadata"
}

/// A patch value with its directives removed, for places where it is stored as is.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|i| i.get("$patch").is_none())
                .map(clean)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn strategic_map(
    doc: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            if let Value::Object(m) = clean(&Value::Object(patch.clone())) {
                *doc = m;
            }
            return Ok(());
        }
        Some("delete") => {
            doc.clear();
            return Ok(());
        }
        Some(other) => return Err(format!("unknown $patch directive {other:?}")),
        None => {}
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(gone)) = (doc.get_mut(field), pv) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            // `$setElementOrder/...` and `$retainKeys` only order or prune what
            // the merge already produced; the merge result stands without them.
            continue;
        }
        path.push(k.clone());
        match (doc.get_mut(k), pv) {
            (_, Value::Null) => {
                doc.remove(k);
            }
            (Some(Value::Object(d)), Value::Object(p)) => strategic_map(d, p, path)?,
            (Some(Value::Array(d)), Value::Array(p)) => {
                if let Some(key) = merge_key(path) {
                    merge_list(d, p, key, path)?;
                } else if merges_as_set(path) {
                    for item in p {
                        if !d.contains(item) {
                            d.push(item.clone());
                        }
                    }
                } else {
                    *d = p.iter().map(clean).collect();
                }
            }
            (_, pv) => {
                doc.insert(k.clone(), clean(pv));
            }
        }
        path.pop();
    }
    Ok(())
}

fn merge_list(
    doc: &mut Vec<Value>,
    patch: &[Value],
    key: &str,
    path: &mut Vec<String>,
) -> Result<(), String> {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *doc = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(clean)
            .collect();
        return Ok(());
    }
    for item in patch {
        let Value::Object(p) = item else {
            return Err(format!(
                "{}: items of a merging list must be objects",
                path.join(".")
            ));
        };
        let Some(id) = p.get(key) else {
            return Err(format!(
                "{}: an item has no merge key {key:?}",
                path.join(".")
            ));
        };
        let pos = doc.iter().position(|d| d.get(key) == Some(id));
        match (p.get("$patch").and_then(Value::as_str), pos) {
            (Some("delete"), Some(i)) => {
                doc.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => {
                if let Value::Object(d) = &mut doc[i] {
                    strategic_map(d, p, path)?;
                }
            }
            (_, None) => doc.push(clean(item)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(kind: PatchType, mut doc: Value, patch: Value) -> Value {
        apply(kind, &mut doc, &patch).unwrap();
        doc
    }

    #[test]
    fn merge_patch() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"x": "y"}});
        let out = run(
            PatchType::Merge,
            doc,
            json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": "z"}),
        );
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}}, "data": "z"})
        );
        assert!(apply(PatchType::Merge, &mut json!({}), &json!([1])).is_err());
    }

    #[test]
    fn json_patch() {
        let out = run(
            PatchType::Json,
            json!({"data": {"a": "1"}}),
            json!([{"op": "add", "path": "/data/b", "value": "2"},
                   {"op": "remove", "path": "/data/a"}]),
        );
        assert_eq!(out, json!({"data": {"b": "2"}}));
        let mut doc = json!({"data": {}});
        let failing = json!([{"op": "add", "path": "/data/b", "value": 1},
                             {"op": "test", "path": "/data/b", "value": 2}]);
        assert!(apply(PatchType::Json, &mut doc, &failing).is_err());
        assert_eq!(
            doc,
            json!({"data": {}}),
            "a failed JSON patch changes nothing"
        );
        assert!(apply(PatchType::Json, &mut doc, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn strategic_lists_merge_by_key() {
        let doc = json!({"metadata": {"finalizers": ["a"]}, "spec": {
            "containers": [
                {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}],
                 "args": ["x"]},
                {"name": "side", "image": "busybox"}
            ],
            "tolerations": [{"key": "a"}]
        }});
        let patch = json!({
            "metadata": {"finalizers": ["b", "a"]},
            "spec": {
                "$setElementOrder/containers": [{"name": "web"}, {"name": "new"}],
                "containers": [
                    {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 443}],
                     "args": ["y"]},
                    {"name": "side", "$patch": "delete"},
                    {"name": "new", "image": "redis"}
                ],
                "tolerations": [{"key": "b"}]
            }
        });
        let out = run(PatchType::Strategic, doc, patch);
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let c = &out["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(c[0]["image"], "nginx:2");
        assert_eq!(
            c[0]["ports"],
            json!([{"containerPort": 80}, {"containerPort": 443}])
        );
        assert_eq!(c[0]["args"], json!(["y"]));
        assert_eq!(c[1], json!({"name": "new", "image": "redis"}));
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "b"}]));
        assert!(out["spec"].get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn strategic_directives() {
        let doc = json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "sel": {"a": "1"}},
                         "metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({
            "spec": {"ports": [{"port": 90}, {"$patch": "replace"}],
                     "sel": {"$patch": "replace", "b": "2"}},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}
        });
        let out = run(PatchType::Strategic, doc, patch);
        assert_eq!(out["spec"]["ports"], json!([{"port": 90}]));
        assert_eq!(out["spec"]["sel"], json!({"b": "2"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
        let mut doc = json!({"spec": {"containers": [{"name": "a"}]}});
        let no_key = json!({"spec": {"containers": [{"image": "x"}]}});
        assert!(apply(PatchType::Strategic, &mut doc, &no_key).is_err());
    }
}
