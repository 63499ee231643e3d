//! The schemas of the served kinds, Kubernetes 1.33's own (OpenAPI v2
//! definitions in `schemas/kubernetes.json`, made by `cargo xtask openapi`),
//! and what the server checks with them: fields a request sets that the
//! schema does not have (what `fieldValidation` is about) and values of the
//! wrong type (always refused, as Kubernetes' decoder refuses them).
//!
//! The definitions are parsed on first use and kept: every write checks its
//! body against them.

use std::sync::OnceLock;

use bosun_api::Resource;
use bosun_api::resource::RESOURCES;
use serde_json::{Map, Value};

static SOURCE: &str = include_str!("../../schemas/kubernetes.json");

/// `resource.Quantity` is a string in the schema but a number in many
/// manifests (`cpu: 1`), which Kubernetes accepts.
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";

pub(crate) struct Schemas {
    pub(crate) definitions: Map<String, Value>,
    /// The definition of each entry of `RESOURCES`, by index.
    kinds: Vec<Option<String>>,
}

pub(crate) fn schemas() -> &'static Schemas {
    static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(SOURCE).expect("schemas/kubernetes.json is JSON");
        let definitions = match doc["definitions"].take() {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let kinds = RESOURCES
            .iter()
            .map(|r| {
                definitions
                    .iter()
                    .find(|(_, d)| has_gvk(d, r))
                    .map(|(name, _)| name.clone())
            })
            .collect();
        Schemas { definitions, kinds }
    })
}

fn has_gvk(def: &Value, r: &Resource) -> bool {
    def["x-kubernetes-group-version-kind"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|g| g["group"] == r.group && g["version"] == r.version && g["kind"] == r.kind)
}

/// The name of a definition a `$ref` points at.
pub(crate) fn ref_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/definitions/"))
}

/// What a request body sets that its kind's schema refuses.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// Paths of fields the schema does not have (`spec.containers[0].foo`).
    pub(crate) unknown: Vec<String>,
    /// Values of the wrong type, each with its path.
    pub(crate) invalid: Vec<String>,
}

/// The shape of a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    /// An object, or a merge patch of one.
    Object,
    /// A strategic merge patch: `$`-keys are directives, not fields.
    Strategic,
    /// An RFC 6902 JSON patch: the paths and values it adds or replaces.
    JsonPatch,
}

impl Schemas {
    /// The definition of `res`'s kind.
    pub(crate) fn kind(&self, res: &Resource) -> Option<&str> {
        let i = RESOURCES
            .iter()
            .position(|r| (r.group, r.version, r.kind) == (res.group, res.version, res.kind))?;
        self.kinds[i].as_deref()
    }

    fn def(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    /// Checks a request body for `res` (kinds without a schema pass).
    pub(crate) fn check(&self, res: &Resource, body: &Value, shape: Body) -> Findings {
        let mut out = Findings::default();
        let Some(root) = self.kind(res).and_then(|k| self.def(k)) else {
            return out;
        };
        match shape {
            Body::Object | Body::Strategic => {
                let mut path = String::new();
                self.walk(root, body, &mut path, shape == Body::Strategic, &mut out);
            }
            Body::JsonPatch => {
                for op in body.as_array().into_iter().flatten() {
                    let Some(p) = op["path"].as_str() else {
                        continue;
                    };
                    if !matches!(op["op"].as_str(), Some("add" | "replace" | "copy" | "move")) {
                        continue;
                    }
                    let segs: Vec<String> = p
                        .split('/')
                        .skip(1)
                        .map(|s| s.replace("~1", "/").replace("~0", "~"))
                        .collect();
                    let mut path = String::new();
                    let Some(schema) = self.at(root, &segs, &mut path, &mut out) else {
                        continue;
                    };
                    if let Some(v) = op
                        .get("value")
                        .filter(|_| op["op"] != "copy" && op["op"] != "move")
                    {
                        self.walk(schema, v, &mut path, false, &mut out);
                    }
                }
            }
        }
        out
    }

    /// Follows a `$ref` (or `allOf` of one) to the schema it names.
    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        while let Some(name) = ref_name(schema) {
            match self.def(name) {
                Some(d) => schema = d,
                None => break,
            }
        }
        schema
    }

    /// The schema at a JSON pointer's segments; `None` where anything goes
    /// or the path names a field the schema lacks (recorded in `out`).
    fn at<'a>(
        &'a self,
        mut schema: &'a Value,
        segs: &[String],
        path: &mut String,
        out: &mut Findings,
    ) -> Option<&'a Value> {
        for seg in segs {
            if ref_name(schema) == Some(QUANTITY) {
                return None;
            }
            schema = self.resolve(schema);
            match schema["type"].as_str() {
                Some("array") => {
                    path.push_str(&format!("[{seg}]"));
                    schema = schema.get("items")?;
                }
                Some("object") => {
                    push_key(path, seg);
                    if let Some(p) = schema["properties"].get(seg.as_str()) {
                        schema = p;
                    } else if let Some(a) = schema.get("additionalProperties") {
                        schema = a;
                    } else if schema.get("properties").is_some() {
                        out.unknown.push(path.clone());
                        return None;
                    } else {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        Some(schema)
    }

    fn walk(&self, schema: &Value, v: &Value, path: &mut String, smp: bool, out: &mut Findings) {
        if v.is_null() {
            return;
        }
        if ref_name(schema) == Some(QUANTITY) {
            if !v.is_string() && !v.is_number() {
                out.invalid.push(mistyped(path, "quantity", v));
            }
            return;
        }
        let schema = self.resolve(schema);
        let Some(ty) = schema["type"].as_str() else {
            return;
        };
        let len = path.len();
        match (ty, v) {
            ("object", Value::Object(m)) => {
                let props = schema["properties"].as_object();
                let extra = schema.get("additionalProperties");
                if props.is_none() && extra.is_none() {
                    return;
                }
                for (k, x) in m {
                    if smp && k.starts_with('$') {
                        continue;
                    }
                    push_key(path, k);
                    match props.and_then(|p| p.get(k)).or(extra) {
                        Some(s) => self.walk(s, x, path, smp, out),
                        None => out.unknown.push(path.clone()),
                    }
                    path.truncate(len);
                }
            }
            ("array", Value::Array(items)) => {
                let Some(item) = schema.get("items") else {
                    return;
                };
                for (i, x) in items.iter().enumerate() {
                    path.push_str(&format!("[{i}]"));
                    self.walk(item, x, path, smp, out);
                    path.truncate(len);
                }
            }
            // SMP writes `$patch: replace` lists as objects of directives.
            ("array", Value::Object(m)) if smp && m.keys().all(|k| k.starts_with('$')) => {}
            ("string", Value::String(_)) | ("boolean", Value::Bool(_)) => {}
            ("string", Value::Number(n))
                if schema["format"] == "int-or-string" && (n.is_i64() || n.is_u64()) => {}
            ("integer", Value::Number(n)) if n.is_i64() || n.is_u64() => {}
            ("number", Value::Number(_)) => {}
            _ => {
                let want = match schema["format"].as_str() {
                    Some("int-or-string") => "integer or string",
                    _ => ty,
                };
                out.invalid.push(mistyped(path, want, v));
            }
        }
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

fn mistyped(path: &str, want: &str, got: &Value) -> String {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let at = if path.is_empty() { "the object" } else { path };
    format!("{at}: expected {want}, got {got}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_api::resource::find;
    use serde_json::json;

    #[test]
    fn every_served_kind_has_its_schema() {
        let s = schemas();
        for r in RESOURCES {
            assert!(
                s.kind(r).is_some(),
                "no schema for {} {}",
                r.version,
                r.kind
            );
        }
        assert_eq!(
            s.kind(find("apps", "v1", "deployments").unwrap()),
            Some("io.k8s.api.apps.v1.Deployment")
        );
    }

    #[test]
    fn nested_fields_are_checked() {
        let s = schemas();
        let pod = find("", "v1", "pods").unwrap();
        let obj = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "x", "lables": {}, "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always",
                "ports": [{"containerPort": "80"}], "bogus": 1,
                "resources": {"limits": {"cpu": 1, "memory": "1Gi"}},
                "livenessProbe": {"httpGet": {"port": "http"}}}],
                "terminationGracePeriodSeconds": 30, "sepc": null},
            "sepc": {}});
        let f = s.check(pod, &obj, Body::Object);
        assert_eq!(
            f.unknown,
            [
                "metadata.lables",
                "sepc",
                "spec.containers[0].bogus",
                "spec.sepc"
            ]
        );
        assert_eq!(
            f.invalid,
            ["spec.containers[0].ports[0].containerPort: expected integer, got string"]
        );
        let smp = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}],
            "containers": [{"name": "c", "$patch": "delete"}]}, "metadata": {"labels": {"a": null}}});
        assert_eq!(s.check(pod, &smp, Body::Strategic), Findings::default());
        assert_eq!(s.check(pod, &smp, Body::Object).unknown.len(), 2);
        let patch = json!([{"op": "add", "path": "/metadata/labels/x", "value": "1"},
                           {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "A", "valu": "1"}},
                           {"op": "replace", "path": "/spec/activeDeadlineSeconds", "value": true},
                           {"op": "add", "path": "/bogus", "value": 1},
                           {"op": "remove", "path": "/other"}]);
        let f = s.check(pod, &patch, Body::JsonPatch);
        assert_eq!(f.unknown, ["spec.containers[0].env[-].valu", "bogus"]);
        assert_eq!(
            f.invalid,
            ["spec.activeDeadlineSeconds: expected integer, got boolean"]
        );
    }
}
