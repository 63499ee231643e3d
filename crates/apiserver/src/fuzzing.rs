//! Entry points for the fuzz targets in `fuzz/`: what the server does with a
//! request's bytes before it touches the store, reached through the same
//! functions the handlers call. Not an API; hidden from the docs.

use bosun_api::{FieldSelector, LabelSelector, ObjectMeta};
use hyper::HeaderMap;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use crate::objects;
use crate::patch::{self, PatchType};
use crate::route::{self, Route};
use crate::ssa;

/// Decodes a create request for `path` (with its query): the route, the
/// selectors of the query, the body in `content_type` (JSON or protobuf),
/// then the namespace, defaults, initial status and validation a create
/// applies. `Err` carries the Status message the client would get.
pub fn decode_object(target: &str, content_type: &str, body: &[u8]) -> Result<Value, String> {
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let q = crate::http::Query::parse(query);
    if let Some(s) = q.non_empty("labelSelector") {
        LabelSelector::parse(s).map_err(|e| e.to_string())?;
    }
    if let Some(s) = q.non_empty("fieldSelector") {
        FieldSelector::parse(s).map_err(|e| e.to_string())?;
    }
    let Some(Route::Objects(t)) = route::parse(path) else {
        return Err(format!("no resource at {path:?}"));
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    let mut obj = objects::parse_body(t.res, &headers, body).map_err(|s| s.message)?;
    objects::check_new_object(t.res, t.namespace.as_deref(), &mut obj).map_err(|s| s.message)?;
    Ok(obj)
}

/// Applies a PATCH body of `content_type` (merge, JSON or strategic merge
/// patch) to `doc`.
pub fn apply_patch(content_type: &str, doc: &mut Value, body: &[u8]) -> Result<(), String> {
    let kind = PatchType::from_content_type(content_type)
        .ok_or_else(|| format!("unsupported patch type {content_type:?}"))?;
    let patch: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    patch::apply(kind, doc, &patch)
}

/// Server-side apply of `applied` by `manager` over `live` (`None`: a new
/// object); conflicts are an error unless `force`.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, String> {
    let api_version = applied["apiVersion"].as_str().unwrap_or("v1");
    ssa::apply(live, applied, manager, api_version, force, 0).map_err(|e| match e {
        ssa::ApplyError::Conflicts(c) => format!("{} conflicts", c.len()),
        ssa::ApplyError::Invalid(why) => why,
    })
}

/// The object's metadata as the server reads it.
pub fn object_meta(obj: &Value) -> Result<ObjectMeta, String> {
    ObjectMeta::of(obj).map_err(|e| e.to_string())
}
