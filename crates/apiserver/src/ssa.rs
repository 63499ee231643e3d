//! Server-side apply: an applied configuration is its manager's whole intent
//! for the fields it sets. The server remembers which manager applied which
//! fields (`metadata.managedFields`, `FieldsV1`), refuses to change a field
//! another applier owns unless forced (409, one cause per field), merges the
//! configuration into the object (maps by key, the built-in keyed lists by
//! their merge key, everything else replaced), and removes the fields the
//! manager applied before but no longer does, when no one else owns them.
//!
//! Ownership is recorded for appliers only: plain updates and patches leave
//! `managedFields` as they are (Kubernetes records them as `Update` managers).

use std::collections::BTreeSet;

use bosun_api::time::format_time;
use serde_json::{Map, Value, json};

use crate::patch;

/// One step into an object: a map field, or the item of a keyed list (the
/// canonical JSON of its key, `{"name":"nginx"}`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Elem {
    Field(String),
    Key(String),
}

pub(crate) type FieldPath = Vec<Elem>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

fn names(path: &[Elem]) -> Vec<String> {
    path.iter()
        .filter_map(|e| match e {
            Elem::Field(f) => Some(f.clone()),
            Elem::Key(_) => None,
        })
        .collect()
}

/// The fields a configuration sets: its leaves (scalars, lists without a merge
/// key, empty maps) and, for keyed lists, each item and its fields. `apiVersion`,
/// `kind`, `status` and the identity parts of `metadata` are not fields anyone owns.
pub(crate) fn fields_of(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Value::Object(m) = obj else {
        return out;
    };
    for (k, v) in m {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for owned in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = v.get(owned) {
                        let mut path = vec![
                            Elem::Field("metadata".to_owned()),
                            Elem::Field(owned.to_owned()),
                        ];
                        walk(v, &mut path, &mut out);
                    }
                }
            }
            _ => walk(v, &mut vec![Elem::Field(k.clone())], &mut out),
        }
    }
    out
}

/// The key of an item of a keyed list, as canonical JSON.
fn item_key(item: &Value, key: &str) -> Option<String> {
    let id = item.get(key)?;
    Some(json!({ key: id }).to_string())
}

fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, c) in m {
                path.push(Elem::Field(k.clone()));
                walk(c, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            let key = patch::merge_key(&names(path));
            let keys: Option<Vec<String>> =
                key.and_then(|k| items.iter().map(|i| item_key(i, k)).collect());
            match keys {
                Some(keys) => {
                    for (item, k) in items.iter().zip(keys) {
                        path.push(Elem::Key(k));
                        out.insert(path.clone());
                        walk(item, path, out);
                        path.pop();
                    }
                }
                // Lists without a merge key are one field, owned whole.
                None => {
                    out.insert(path.clone());
                }
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if there is one.
pub(crate) fn get_at<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    let mut cur = obj;
    for e in path {
        cur = match e {
            Elem::Field(f) => cur.get(f)?,
            Elem::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).ok()?;
                cur.as_array()?
                    .iter()
                    .find(|item| key.iter().all(|(kf, kv)| item.get(kf) == Some(kv)))?
            }
        };
    }
    Some(cur)
}

/// Removes what `path` names (a map field, or a keyed list's item).
fn remove_at(obj: &mut Value, path: &[Elem]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for e in parent {
        let next = match e {
            Elem::Field(f) => cur.get_mut(f),
            Elem::Key(k) => {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                    return;
                };
                cur.as_array_mut().and_then(|items| {
                    items
                        .iter_mut()
                        .find(|item| key.iter().all(|(kf, kv)| item.get(kf) == Some(kv)))
                })
            }
        };
        let Some(next) = next else { return };
        cur = next;
    }
    match last {
        Elem::Field(f) => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(f);
            }
        }
        Elem::Key(k) => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
                return;
            };
            if let Some(items) = cur.as_array_mut() {
                items.retain(|item| !key.iter().all(|(kf, kv)| item.get(kf) == Some(kv)));
            }
        }
    }
}

/// `.spec.replicas`, `.spec.containers[name="nginx"].image`: how a conflict names a field.
pub(crate) fn display(path: &[Elem]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let inner: Vec<String> = key.iter().map(|(f, v)| format!("{f}={v}")).collect();
                s.push_str(&format!("[{}]", inner.join(",")));
            }
        }
    }
    s
}

/// `FieldsV1` JSON of a field set.
pub(crate) fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for e in path {
            let k = match e {
                Elem::Field(f) => format!("f:{f}"),
                Elem::Key(k) => format!("k:{k}"),
            };
            node = node
                .entry(k)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("made an object");
        }
        if matches!(path.last(), Some(Elem::Key(_))) {
            node.insert(".".to_owned(), json!({}));
        }
    }
    Value::Object(root)
}

/// The field set of `FieldsV1` JSON (the inverse of [`to_fields_v1`]).
pub(crate) fn from_fields_v1(v: &Value) -> FieldSet {
    fn go(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        for (k, child) in m {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let e = if let Some(f) = k.strip_prefix("f:") {
                Elem::Field(f.to_owned())
            } else if let Some(key) = k.strip_prefix("k:") {
                Elem::Key(key.to_owned())
            } else {
                continue;
            };
            path.push(e);
            if child.as_object().is_some_and(Map::is_empty) {
                out.insert(path.clone());
            } else {
                go(child, path, out);
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// A manager's entry of `managedFields`.
#[derive(Debug, Clone)]
pub(crate) struct Managed {
    pub(crate) manager: String,
    pub(crate) operation: String,
    pub(crate) api_version: String,
    pub(crate) time: Option<String>,
    pub(crate) fields: FieldSet,
}

pub(crate) fn managed_of(obj: &Value) -> Vec<Managed> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| Managed {
            manager: e["manager"].as_str().unwrap_or_default().to_owned(),
            operation: e["operation"].as_str().unwrap_or_default().to_owned(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
            time: e["time"].as_str().map(str::to_owned),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

pub(crate) fn managed_json(entries: &[Managed]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                })
            })
            .collect(),
    )
}

/// Fields another applier owns that this apply would change: (field, owner).
pub(crate) fn conflicts(
    live: &Value,
    applied: &Value,
    manager: &str,
    managed: &[Managed],
    fields: &FieldSet,
) -> Vec<(FieldPath, String)> {
    let mut out = Vec::new();
    for f in fields {
        if matches!(f.last(), Some(Elem::Key(_))) {
            // An item's presence: several appliers may share a list item.
            continue;
        }
        if get_at(live, f) == get_at(applied, f) {
            continue;
        }
        for m in managed {
            if m.manager != manager && m.operation == "Apply" && m.fields.contains(f) {
                out.push((f.clone(), m.manager.clone()));
            }
        }
    }
    out
}

/// Why an apply was refused.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// Fields another applier owns, with their owner (409).
    Conflicts(Vec<(FieldPath, String)>),
    /// The configuration does not merge (a keyed list item without its key).
    Invalid(String),
}

/// Applies `applied` for `manager` to `live` (`None`: the object is new).
/// `Err` lists the conflicts; with `force`, the fields change owner instead.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: i64,
) -> Result<Value, ApplyError> {
    let empty = json!({});
    let live_obj = live.unwrap_or(&empty);
    let mut managed = managed_of(live_obj);
    let fields = fields_of(applied);
    let found = conflicts(live_obj, applied, manager, &managed, &fields);
    if !found.is_empty() && !force {
        return Err(ApplyError::Conflicts(found));
    }
    for (f, owner) in &found {
        if let Some(m) = managed
            .iter_mut()
            .find(|m| &m.manager == owner && m.operation == "Apply")
        {
            m.fields.remove(f);
        }
    }
    let before = managed
        .iter()
        .find(|m| m.manager == manager && m.operation == "Apply")
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    let mut merged = live_obj.clone();
    let mut intent = applied.clone();
    if let Some(m) = intent.as_object_mut() {
        m.remove("status");
    }
    // Strategic merge is the same merge for the built-in kinds: maps by key,
    // keyed lists by their merge key, other lists replaced.
    patch::apply(patch::PatchType::Strategic, &mut merged, &intent).map_err(ApplyError::Invalid)?;
    // What this manager applied before and no longer does goes, unless owned
    // by someone else too. Shallowest first: an item goes whole, while it can
    // still be found by its key (its fields are then already gone with it).
    let mut dropped: Vec<&FieldPath> = before
        .difference(&fields)
        .filter(|f| {
            !managed
                .iter()
                .any(|m| m.manager != manager && m.fields.contains(*f))
        })
        .collect();
    dropped.sort_by_key(|f| f.len());
    for f in dropped {
        remove_at(&mut merged, f);
    }
    managed.retain(|m| !(m.manager == manager && m.operation == "Apply"));
    managed.push(Managed {
        manager: manager.to_owned(),
        operation: "Apply".to_owned(),
        api_version: api_version.to_owned(),
        time: Some(format_time(now)),
        fields,
    });
    crate::objects::set_managed(&mut merged, managed_json(&managed));
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": replicas,
                        "template": {"spec": {"containers": [{"name": "nginx", "image": image}]}}}})
    }

    #[test]
    fn fields_and_their_wire_form() {
        let f = fields_of(&deployment(2, "nginx"));
        let shown: Vec<String> = f.iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            [
                ".metadata.labels.app",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"nginx\"]",
                ".spec.template.spec.containers[name=\"nginx\"].image",
                ".spec.template.spec.containers[name=\"nginx\"].name",
            ]
        );
        let v1 = to_fields_v1(&f);
        assert_eq!(
            v1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["."],
            json!({})
        );
        assert_eq!(from_fields_v1(&v1), f);
    }

    #[test]
    fn two_appliers_conflict_unless_forced() {
        let first = apply(None, &deployment(2, "nginx:1"), "a", "apps/v1", false, 0).unwrap();
        assert_eq!(first["spec"]["replicas"], 2);
        assert_eq!(first["metadata"]["managedFields"][0]["manager"], "a");
        // The same values from another manager: shared, no conflict.
        let shared = apply(
            Some(&first),
            &deployment(2, "nginx:1"),
            "b",
            "apps/v1",
            false,
            0,
        )
        .unwrap();
        assert_eq!(
            shared["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // A different value of a field "a" owns: conflict.
        let b_only = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let Err(ApplyError::Conflicts(err)) =
            apply(Some(&first), &b_only, "b", "apps/v1", false, 0)
        else {
            panic!("a conflict");
        };
        assert_eq!(err.len(), 1);
        assert_eq!(
            (display(&err[0].0), err[0].1.as_str()),
            (".spec.replicas".to_owned(), "a")
        );
        // Forced: "b" takes the field over.
        let forced = apply(Some(&first), &b_only, "b", "apps/v1", true, 0).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        let a = managed_of(&forced)
            .into_iter()
            .find(|m| m.manager == "a")
            .unwrap();
        assert!(!a.fields.iter().any(|f| display(f) == ".spec.replicas"));
        // Now "a" re-applying its old value conflicts with "b".
        assert!(
            apply(
                Some(&forced),
                &deployment(2, "nginx:1"),
                "a",
                "apps/v1",
                false,
                0
            )
            .is_err()
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed() {
        let mut with_extra = deployment(2, "nginx");
        with_extra["metadata"]["labels"]["tier"] = json!("front");
        let first = apply(None, &with_extra, "a", "apps/v1", false, 0).unwrap();
        assert_eq!(first["metadata"]["labels"]["tier"], "front");
        let again = apply(
            Some(&first),
            &deployment(2, "nginx"),
            "a",
            "apps/v1",
            false,
            0,
        )
        .unwrap();
        assert!(again["metadata"]["labels"].get("tier").is_none());
        assert_eq!(again["metadata"]["labels"]["app"], "web");
        // Containers merge by name; one applied no more is removed.
        let mut two = deployment(2, "nginx");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "busybox"}));
        let first = apply(None, &two, "a", "apps/v1", false, 0).unwrap();
        let again = apply(
            Some(&first),
            &deployment(2, "nginx"),
            "a",
            "apps/v1",
            false,
            0,
        )
        .unwrap();
        let names: Vec<&str> = again["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["nginx"]);
    }
}
