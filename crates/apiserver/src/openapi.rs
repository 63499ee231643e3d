//! OpenAPI documents and the field validation they promise, from Kubernetes'
//! own schemas of the served kinds (`schema`): `/openapi/v2` (JSON, or the
//! protobuf older kubectl asks for, `gnostic`) and `/openapi/v3` with one
//! document per group version.
//!
//! kubectl 1.27 and later read the documents, find that PATCH takes
//! `fieldValidation` and ask the server for `Strict`, which refuses a field
//! the schema lacks at any depth (`spec.containers[0].imagee`) with 400; `Warn`
//! (the default) accepts it with a `Warning` header, `Ignore` says nothing. A
//! value of the wrong type is refused whatever `fieldValidation` says, as
//! Kubernetes' decoder refuses it. Older kubectl validates on its side with
//! the v2 document, and computes strategic merge patches from the patch
//! strategies and merge keys it carries.
//!
//! Documents are made on first request and kept, with the hashes and ETags
//! kubectl caches them by.

mod gnostic;
mod schema;

use std::sync::OnceLock;

use bosun_api::Resource;
use bosun_api::resource::RESOURCES;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::http::{self, JSON, Query, Resp};
use schema::{Body, Findings, schemas};

/// What a request body sets that `res`'s schema refuses. `content_type` says
/// how to read it: a JSON patch names paths, a strategic merge patch carries
/// directives; anything else is (a merge patch of) an object.
pub(crate) fn check(res: &Resource, content_type: &str, body: &Value) -> Findings {
    let shape = match content_type {
        "application/json-patch+json" => Body::JsonPatch,
        "application/strategic-merge-patch+json" => Body::Strategic,
        _ => Body::Object,
    };
    schemas().check(res, body, shape)
}

const VERSION: &str = "v1.33.0-bosun";

/// A finished document: its bytes and the hash kubectl caches it by.
pub(crate) struct Doc {
    pub(crate) bytes: Bytes,
    pub(crate) hash: String,
}

impl Doc {
    fn new(bytes: Vec<u8>) -> Doc {
        let hash = format!("{:016X}", fnv(&bytes));
        Doc {
            bytes: bytes.into(),
            hash,
        }
    }
}

/// Content hash for caches (FNV-1a; not a security boundary).
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The group versions served, in table order.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut gvs: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !gvs.contains(&(r.group, r.version)) {
            gvs.push((r.group, r.version));
        }
    }
    gvs
}

fn doc_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3/<path>` for every group version, made once.
fn v3_documents() -> &'static [(String, Doc)] {
    static DOCS: OnceLock<Vec<(String, Doc)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .filter_map(|(g, v)| {
                let d = document(g, v)?;
                let bytes = serde_json::to_vec(&d).expect("a Value always serializes");
                Some((doc_path(g, v), Doc::new(bytes)))
            })
            .collect()
    })
}

/// The OpenAPI v3 document of one group version, with its hash; `None` if
/// the group version is not served.
pub(crate) fn v3(group: &str, version: &str) -> Option<&'static Doc> {
    let path = doc_path(group, version);
    v3_documents()
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, d)| d)
}

/// `/openapi/v3`: where each group version's document is.
pub(crate) fn index() -> Value {
    let mut paths = Map::new();
    for (path, doc) in v3_documents() {
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", doc.hash)}),
        );
    }
    json!({ "paths": paths })
}

/// `/openapi/v2` as JSON and as gnostic protobuf, made once.
pub(crate) fn v2(protobuf: bool) -> &'static Doc {
    static JSON: OnceLock<Doc> = OnceLock::new();
    static PROTO: OnceLock<Doc> = OnceLock::new();
    if protobuf {
        PROTO.get_or_init(|| Doc::new(gnostic::encode(&swagger())))
    } else {
        JSON.get_or_init(|| {
            Doc::new(serde_json::to_vec(&swagger()).expect("a Value always serializes"))
        })
    }
}

/// A document with its ETag; 304 when the client has it already.
fn cached(doc: &Doc, content_type: &str, headers: &HeaderMap) -> Resp {
    let etag = format!("\"{}\"", doc.hash);
    let mut resp = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        let mut r = Response::new(http::Body::Full(None));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(http::Body::Full(Some(doc.bytes.clone())));
        if let Ok(v) = HeaderValue::from_str(content_type) {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `GET /openapi/v2`: protobuf when the client asks for it (kubectl does),
/// JSON otherwise.
pub(crate) fn serve_v2(headers: &HeaderMap) -> Resp {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let proto = accept.split(',').any(|m| {
        m.trim()
            .starts_with("application/com.github.proto-openapi.spec.v2")
    });
    if proto {
        // kubectl asks for `...spec.v2@v1.0+protobuf`, but `@` has no place in
        // a Content-Type (Go's parser refuses it): the answer says `.v1.0`.
        cached(
            v2(true),
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            headers,
        )
    } else {
        cached(v2(false), JSON, headers)
    }
}

/// `GET /openapi/v3/<group version>`: with the current `hash` the document
/// may be cached for good; with an old one the client is sent to the new.
pub(crate) fn serve_v3(group: &str, version: &str, q: &Query, headers: &HeaderMap) -> Option<Resp> {
    let doc = v3(group, version)?;
    match q.get("hash") {
        Some(h) if h != doc.hash => {
            let mut r = Response::new(http::Body::Full(None));
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            let to = format!("/openapi/v3/{}?hash={}", doc_path(group, version), doc.hash);
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            Some(r)
        }
        Some(_) => {
            let mut r = cached(doc, JSON, headers);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            Some(r)
        }
        None => Some(cached(doc, JSON, headers)),
    }
}

/// The paths of a resource: its collection and its objects.
fn resource_paths(r: &Resource) -> (String, String) {
    let base = format!("/{}", doc_path(r.group, r.version));
    if r.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", r.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{base}/{}", r.plural),
            format!("{base}/{}/{{name}}", r.plural),
        )
    }
}

/// The query parameters of writes kubectl looks for before it sends them.
const WRITE_PARAMS: &[(&str, &str)] = &[
    (
        "dryRun",
        "When present (All), the request is checked and answered but nothing is stored.",
    ),
    (
        "fieldManager",
        "The name of the actor making these changes.",
    ),
    (
        "fieldValidation",
        "Strict, Warn or Ignore: what to do with fields the schema does not have.",
    ),
];

/// The Swagger 2.0 document of everything served.
fn swagger() -> Value {
    let s = schemas();
    let mut paths = Map::new();
    for r in RESOURCES {
        let Some(kind) = s.kind(r) else {
            continue;
        };
        let reference = json!({"$ref": format!("#/definitions/{kind}")});
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |verb: &str, body: bool| {
            let mut params: Vec<Value> = Vec::new();
            if body {
                params.push(
                    json!({"name": "body", "in": "body", "required": true, "schema": reference}),
                );
                for (name, description) in WRITE_PARAMS {
                    params.push(json!({"name": name, "in": "query", "type": "string",
                                       "uniqueItems": true, "description": description}));
                }
            }
            if verb == "patch" {
                params.push(
                    json!({"name": "force", "in": "query", "type": "boolean", "uniqueItems": true,
                                   "description": "Force is going to \"force\" Apply requests."}),
                );
            }
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "consumes": if verb == "patch" {
                    json!(["application/json-patch+json", "application/merge-patch+json",
                           "application/strategic-merge-patch+json", "application/apply-patch+yaml"])
                } else {
                    json!(["*/*"])
                },
                "produces": ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
                "parameters": params,
                "responses": {"200": {"description": "OK", "schema": reference}},
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        let (collection, item) = resource_paths(r);
        paths.insert(collection, json!({"post": op("post", true)}));
        if r.verbs.contains(&"get") {
            paths.insert(
                item,
                json!({"get": op("get", false), "put": op("put", true), "patch": op("patch", true),
                       "delete": op("delete", false)}),
            );
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": VERSION},
        "paths": paths,
        "definitions": s.definitions,
    })
}

/// A v2 schema as OpenAPI v3 has it: references into `components`, and a
/// reference with siblings (a field's description) wrapped in `allOf`, as
/// Kubernetes publishes them.
fn v3_schema(s: &Value) -> Value {
    let Value::Object(m) = s else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let v = match k.as_str() {
            "$ref" => Value::String(
                v.as_str()
                    .unwrap_or_default()
                    .replace("#/definitions/", "#/components/schemas/"),
            ),
            "properties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(p, ps)| (p.clone(), v3_schema(ps)))
                    .collect(),
            ),
            "items" | "additionalProperties" => v3_schema(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    if m.len() > 1
        && let Some(r) = out.remove("$ref")
    {
        out.insert("allOf".into(), json!([{"$ref": r}]));
    }
    Value::Object(out)
}

/// Every definition `roots` reach.
fn closure(roots: Vec<String>) -> Vec<String> {
    let s = schemas();
    let mut seen: Vec<String> = Vec::new();
    let mut todo = roots;
    while let Some(name) = todo.pop() {
        if seen.contains(&name) {
            continue;
        }
        if let Some(d) = s.definitions.get(&name) {
            refs(d, &mut todo);
        }
        seen.push(name);
    }
    seen.sort();
    seen
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(name) = schema::ref_name(v) {
                out.push(name.to_owned());
            }
            m.values().for_each(|x| refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// The OpenAPI v3 document of one group version; `None` if it is not served.
fn document(group: &str, version: &str) -> Option<Value> {
    let s = schemas();
    let kinds: Vec<&Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if kinds.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut roots = Vec::new();
    for r in kinds {
        let Some(kind) = s.kind(r) else {
            continue;
        };
        roots.push(kind.to_owned());
        let schema_ref = json!({"$ref": format!("#/components/schemas/{kind}")});
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let body = json!({"content": {"application/json": {"schema": schema_ref}}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref}}}});
        let params: Vec<Value> = WRITE_PARAMS
            .iter()
            .map(|(name, description)| {
                json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true},
                       "description": description})
            })
            .collect();
        let op = |verb: &str| {
            json!({
                "operationId": format!("{verb}{}", r.kind),
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "requestBody": body,
                "responses": ok,
            })
        };
        let (collection, item) = resource_paths(r);
        paths.insert(collection, json!({"post": op("post")}));
        if r.verbs.contains(&"get") {
            paths.insert(item, json!({"put": op("put"), "patch": op("patch")}));
        }
    }
    let schemas: Map<String, Value> = closure(roots)
        .into_iter()
        .filter_map(|n| {
            let d = v3_schema(s.definitions.get(&n)?);
            Some((n, d))
        })
        .collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_documents_carry_the_real_schemas() {
        let idx = index();
        let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = &v3("apps", "v1").unwrap().hash;
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        let doc = document("apps", "v1").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"][0]["group"],
            "apps"
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            containers["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        let resources = &schemas["io.k8s.api.core.v1.Container"]["properties"]["resources"];
        assert_eq!(
            resources["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"
        );
        assert!(v3("apps", "v9").is_none());
        let core = document("", "v1").unwrap();
        assert!(core["paths"].get("/api/v1/namespaces/{name}").is_some());
    }

    #[test]
    fn v2_has_every_definition_and_the_write_paths() {
        let doc: Value = serde_json::from_slice(&v2(false).bytes).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(doc["definitions"]["io.k8s.api.core.v1.Container"].is_object());
        assert_ne!(v2(true).hash, v2(false).hash);
    }
}
