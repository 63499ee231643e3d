//! OpenAPI v3 documents (`/openapi/v3` and one per group version) from the
//! resource table, and the field validation they promise.
//!
//! What is published is what the server checks: every kind's top-level fields
//! and `ObjectMeta`'s, typed; below `spec`, `status` and the other kind-specific
//! fields the schemas are open (`x-kubernetes-preserve-unknown-fields`). kubectl
//! reads these documents, skips its own schema validation and asks the server
//! for `fieldValidation=Strict`, which refuses an unknown top-level or metadata
//! field (a `sepc:` typo) with 400; `Warn` (the default) accepts it with a
//! `Warning` header, `Ignore` says nothing.

use bosun_api::Resource;
use bosun_api::resource::{RESOURCES, group_version};
use serde_json::{Map, Value, json};

/// The fields of `ObjectMeta` a client may send.
const META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// A kind's top-level fields besides `apiVersion`, `kind` and `metadata`.
fn top_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "ConfigMap" => &["data", "binaryData", "immutable"],
        "Secret" => &["data", "stringData", "type", "immutable"],
        "ServiceAccount" => &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
        "Endpoints" => &["subsets"],
        "Event" => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        "EndpointSlice" => &["addressType", "endpoints", "ports"],
        "SelfSubjectAccessReview" => &["spec", "status"],
        "Lease" => &["spec"],
        "Role" | "ClusterRole" => &["rules", "aggregationRule"],
        "RoleBinding" | "ClusterRoleBinding" => &["subjects", "roleRef"],
        _ => &["spec", "status"],
    }
}

/// Fields of `obj` (top level and metadata) that `res`'s schema does not have.
pub(crate) fn unknown_fields(res: &Resource, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Value::Object(m) = obj else {
        return out;
    };
    let top = top_fields(res.kind);
    for k in m.keys() {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && !top.contains(&k.as_str()) {
            out.push(k.clone());
        }
    }
    if let Some(Value::Object(meta)) = m.get("metadata") {
        for k in meta.keys() {
            if !META_FIELDS.contains(&k.as_str()) {
                out.push(format!("metadata.{k}"));
            }
        }
    }
    out
}

/// The fields a patch document sets, as an object to check with [`unknown_fields`]:
/// a merge-style patch is one already; a JSON patch's `add`/`replace`/`copy`/`move`
/// targets are turned into one.
pub(crate) fn patched_fields(json_patch: bool, doc: &Value) -> Value {
    if !json_patch {
        let mut d = doc.clone();
        // Directives of strategic merge patches are not fields.
        if let Some(m) = d.as_object_mut() {
            m.retain(|k, _| !k.starts_with('$'));
            if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                meta.retain(|k, _| !k.starts_with('$'));
            }
        }
        return d;
    }
    let mut out = Map::new();
    for op in doc.as_array().into_iter().flatten() {
        if !matches!(op["op"].as_str(), Some("add" | "replace" | "copy" | "move")) {
            continue;
        }
        let path = op["path"].as_str().unwrap_or_default();
        let mut parts = path
            .split('/')
            .skip(1)
            .map(|p| p.replace("~1", "/").replace("~0", "~"));
        let Some(first) = parts.next().filter(|p| !p.is_empty()) else {
            continue;
        };
        if first == "metadata" {
            if let Some(second) = parts.next() {
                let meta = out.entry("metadata").or_insert_with(|| json!({}));
                meta[second] = Value::Null;
            }
        } else {
            out.insert(first, Value::Null);
        }
    }
    Value::Object(out)
}

fn schema_name(r: &Resource) -> String {
    let group = if r.group.is_empty() { "core" } else { r.group };
    format!("io.bosun.{group}.{}.{}", r.version, r.kind)
}

const META_SCHEMA: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn kind_schema(r: &Resource) -> Value {
    let mut props = Map::new();
    props.insert(
        "apiVersion".into(),
        json!({"type": "string", "description": "The versioned schema of this object."}),
    );
    props.insert(
        "kind".into(),
        json!({"type": "string", "description": "The REST resource this object represents."}),
    );
    props.insert(
        "metadata".into(),
        json!({"allOf": [{"$ref": format!("#/components/schemas/{META_SCHEMA}")}],
               "description": "Standard object metadata."}),
    );
    for f in top_fields(r.kind) {
        props.insert(
            (*f).into(),
            json!({"x-kubernetes-preserve-unknown-fields": true,
                   "description": "Not described by this server: any value is accepted here."}),
        );
    }
    json!({
        "type": "object",
        "description": format!("{} ({}).", r.kind, group_version(r.group, r.version)),
        "properties": props,
        "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": r.kind}],
    })
}

fn meta_schema() -> Value {
    let mut props = Map::new();
    for f in META_FIELDS {
        let ty = match *f {
            "labels" | "annotations" => json!({"type": "object",
                "additionalProperties": {"type": "string", "default": ""}}),
            "finalizers" => json!({"type": "array", "items": {"type": "string", "default": ""}}),
            "ownerReferences" | "managedFields" => json!({"type": "array",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}),
            "generation" | "deletionGracePeriodSeconds" => {
                json!({"type": "integer", "format": "int64"})
            }
            _ => json!({"type": "string"}),
        };
        props.insert((*f).into(), ty);
    }
    json!({"type": "object", "description": "Standard object metadata.", "properties": props})
}

/// `/openapi/v3`: where each group version's document is.
pub(crate) fn index() -> Value {
    let mut paths = Map::new();
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    for (g, v) in gvs {
        let path = doc_path(g, v);
        let hash = fnv(&document(g, v).map(|d| d.to_string()).unwrap_or_default());
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash:016X}")}),
        );
    }
    json!({ "paths": paths })
}

fn doc_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Content hash for kubectl's cache (FNV-1a; not a security boundary).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The OpenAPI v3 document of one group version; `None` if it is not served.
pub(crate) fn document(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut schemas = Map::new();
    schemas.insert(META_SCHEMA.into(), meta_schema());
    let mut paths = Map::new();
    let field_validation = json!({"name": "fieldValidation", "in": "query", "schema": {"type": "string"},
        "description": "Strict, Warn or Ignore: what to do with fields the schema does not have."});
    let base = format!("/{}", doc_path(group, version));
    for r in kinds {
        let name = schema_name(r);
        schemas.insert(name.clone(), kind_schema(r));
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}}});
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [field_validation],
                "requestBody": body,
                "responses": ok,
            })
        };
        let (collection, item) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{base}/{}", r.plural),
                format!("{base}/{}/{{name}}", r.plural),
            )
        };
        paths.insert(collection, json!({"post": op("post")}));
        if r.verbs.contains(&"get") {
            paths.insert(item, json!({"put": op("put"), "patch": op("patch")}));
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0-bosun"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::resource::find;

    #[test]
    fn unknown_fields_are_found() {
        let cm = find("", "v1", "configmaps").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {},
                         "metadata": {"name": "x", "lables": {}}, "sepc": {}});
        assert_eq!(unknown_fields(cm, &obj), ["sepc", "metadata.lables"]);
        let pod = find("", "v1", "pods").unwrap();
        assert!(unknown_fields(pod, &json!({"spec": {"anything": 1}, "status": {}})).is_empty());
        let patched = patched_fields(
            true,
            &json!([{"op": "add", "path": "/metadata/labels/x", "value": "1"},
                    {"op": "add", "path": "/bogus", "value": 1},
                    {"op": "remove", "path": "/other"}]),
        );
        assert_eq!(unknown_fields(pod, &patched), ["bogus"]);
        let smp = patched_fields(
            false,
            &json!({"$setElementOrder/x": [], "metadata": {"$patch": "x"}}),
        );
        assert!(unknown_fields(pod, &smp).is_empty());
    }

    #[test]
    fn documents() {
        let idx = index();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="));
        let doc = document("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        let schema = &doc["components"]["schemas"]["io.bosun.apps.v1.Deployment"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["group"],
            "apps"
        );
        assert!(document("apps", "v9").is_none());
        let core = document("", "v1").unwrap();
        assert!(core["paths"].get("/api/v1/namespaces/{name}").is_some());
    }
}
