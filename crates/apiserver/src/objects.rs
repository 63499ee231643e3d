//! The generic verbs over the store: get, list, create, update, patch, delete,
//! deletecollection, for every resource of the table and its `status` and
//! `scale` subresources.
//!
//! Objects are stored as JSON under `/registry/<group>/<plural>/[<ns>/]<name>`
//! without `metadata.resourceVersion`: the store's mod revision is the
//! resourceVersion, set on every read, and every write is a compare-and-swap on
//! it, so a stale writer gets 409 and nothing is half written.

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::Arc;

use base64::Engine;
use bosun_api::meta::{field_value, meta_mut};
use bosun_api::name::NameRule;
use bosun_api::resource::{self, Resource, Subresource};
use bosun_api::time::format_time;
use bosun_api::{FieldSelector, LabelSelector, ObjectMeta, Reason, Status};
use bosun_store::{Compare, Key, KeyRange, KeyValue, Op, OpResult, Revision, Txn};
use bytes::Bytes;
use hyper::HeaderMap;
use serde_json::{Value, json};

use crate::State;
use crate::http::{self, JSON, Query, Resp, TABLE, json_response};
use crate::patch::{self, PatchType};
use crate::route::Target;
use crate::table::{self, Include};
use crate::{alloc, kinds, namespaces, openapi, protobuf, ssa};

pub(crate) type ApiResult<T> = Result<T, Status>;

fn group_dir(res: &Resource) -> &'static str {
    if res.group.is_empty() {
        "core"
    } else {
        res.group
    }
}

/// The key prefix of a resource's objects, in one namespace or all.
pub(crate) fn prefix(res: &Resource, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("/registry/{}/{}/{ns}/", group_dir(res), res.plural),
        None => format!("/registry/{}/{}/", group_dir(res), res.plural),
    }
}

pub(crate) fn key(res: &Resource, namespace: Option<&str>, name: &str) -> Key {
    let k = format!("{}{name}", prefix(res, namespace));
    Key::try_from(k).expect("a key with a prefix is never empty")
}

/// Maps a store failure to the Status a client expects.
pub(crate) fn store_error(e: bosun_store::Error, res: &Resource, name: &str) -> Status {
    use bosun_store::Error as E;
    match e {
        E::NotFound { .. } => Status::not_found(res, name),
        E::AlreadyExists { .. } => Status::already_exists(res, name),
        E::Conflict { .. } => Status::modified(res, name),
        E::Compacted {
            requested,
            compacted,
        } => Status::expired(format!(
            "too old resource version: {requested} ({compacted})"
        )),
        E::FutureRevision { requested, current } => Status::new(
            Reason::Timeout,
            format!("Too large resource version: {requested}, current: {current}"),
        ),
        e if e.kind() == bosun_api::ErrorKind::Unavailable => {
            Status::new(Reason::ServiceUnavailable, e.to_string())
        }
        e => Status::internal(e.to_string()),
    }
}

/// A stored object with its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> ApiResult<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| Status::internal(format!("stored object {}: {e}", kv.key)))?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub(crate) fn set_rv(obj: &mut Value, rev: Revision) {
    meta_mut(obj).insert("resourceVersion".into(), rev.to_string().into());
}

fn encode(obj: &mut Value) -> Bytes {
    meta_mut(obj).remove("resourceVersion");
    serde_json::to_vec(obj)
        .expect("a Value always serializes")
        .into()
}

/// Writes `value` at `key` (or deletes it, for `None`) if the key's mod revision
/// is still `expected` (zero: absent), and in the same transaction takes the
/// allocation keys in `new` but not `old` and releases those in `old` only.
/// Returns the revision of the write.
#[allow(clippy::too_many_arguments, reason = "one transaction, spelled out")]
pub(crate) async fn commit(
    state: &State,
    res: &Resource,
    name: &str,
    key: &Key,
    expected: Revision,
    value: Option<Bytes>,
    old: &BTreeSet<Key>,
    new: &BTreeSet<Key>,
) -> ApiResult<Revision> {
    commit_guarded(state, res, name, key, expected, value, old, new, None).await
}

/// [`commit`], also requiring `guard` (another key, such as the object's
/// namespace) to be unchanged; if it changed, the answer is a Conflict.
#[allow(clippy::too_many_arguments, reason = "one transaction, spelled out")]
async fn commit_guarded(
    state: &State,
    res: &Resource,
    name: &str,
    key: &Key,
    expected: Revision,
    value: Option<Bytes>,
    old: &BTreeSet<Key>,
    new: &BTreeSet<Key>,
    guard: Option<&KeyValue>,
) -> ApiResult<Revision> {
    let add: Vec<&Key> = new.difference(old).collect();
    let owner = Bytes::copy_from_slice(key.as_bytes());
    let mut compares = vec![Compare {
        key: key.clone(),
        mod_revision: expected,
    }];
    let mut success = vec![match value {
        Some(v) => Op::Put(key.clone(), v),
        None => Op::Delete(key.clone()),
    }];
    let mut failure = vec![Op::Get(key.clone())];
    for k in &add {
        compares.push(Compare {
            key: (*k).clone(),
            mod_revision: Revision::ZERO,
        });
        success.push(Op::Put((*k).clone(), owner.clone()));
        failure.push(Op::Get((*k).clone()));
    }
    success.extend(old.difference(new).map(|k| Op::Delete(k.clone())));
    if let Some(g) = guard {
        compares.push(Compare {
            key: g.key.clone(),
            mod_revision: g.mod_revision,
        });
        failure.push(Op::Get(g.key.clone()));
    }
    let done = state
        .store
        .txn(Txn {
            compares,
            success,
            failure,
        })
        .await
        .map_err(|e| store_error(e, res, name))?;
    let mut results = done.results.into_iter();
    if !done.succeeded
        && let Some(g) = guard
        && let Some(OpResult::Get(now)) = results.as_slice().last()
        && now.as_ref().map(|kv| kv.mod_revision) != Some(g.mod_revision)
    {
        return Err(Status::conflict(
            res,
            name,
            &format!("{} changed during the request", g.key),
        ));
    }
    if done.succeeded {
        return Ok(match results.next() {
            Some(OpResult::Put(kv)) => kv.mod_revision,
            _ => done.revision,
        });
    }
    match results.next() {
        Some(OpResult::Get(Some(kv))) if kv.mod_revision != expected => {
            if expected == Revision::ZERO {
                Err(Status::already_exists(res, name))
            } else {
                Err(Status::modified(res, name))
            }
        }
        Some(OpResult::Get(None)) if expected != Revision::ZERO => {
            Err(Status::not_found(res, name))
        }
        _ => {
            // The object was as expected: an address was taken meanwhile.
            let taken = add
                .iter()
                .zip(results)
                .find(|(_, r)| matches!(r, OpResult::Get(Some(_))))
                .map(|(k, _)| alloc::describe(k));
            let (field, value) = taken.unwrap_or(("spec", String::new()));
            Err(Status::invalid(
                res,
                name,
                vec![bosun_api::Cause::invalid(
                    field,
                    &value,
                    "provided value is already allocated",
                )],
            ))
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn bad_request(e: impl std::fmt::Display) -> Status {
    Status::bad_request(e.to_string())
}

/// Parses a JSON request body into an object of `res` (kind and apiVersion
/// filled in when absent, refused when they name another kind).
pub(crate) fn parse_body(res: &Resource, headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = http::content_type(headers);
    if ct == protobuf::MEDIA_TYPE {
        let obj = protobuf::decode(body).map_err(|e| match e {
            protobuf::ProtoError::Malformed(m) => {
                bad_request(format!("the protobuf request body is malformed: {m}"))
            }
            protobuf::ProtoError::Unsupported(m) => Status::new(Reason::UnsupportedMediaType, m),
        })?;
        return check_type(res, obj);
    }
    if !(ct.is_empty() || ct == JSON || ct.ends_with("+json")) {
        return Err(Status::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json (got {ct:?})"
            ),
        ));
    }
    let obj: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))?;
    check_type(res, obj)
}

/// A TokenRequest body (JSON or protobuf, as kubectl sends it).
fn parse_token_request(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}));
    }
    parse_body(&crate::sa::TOKEN_REQUEST, headers, body)
}

/// Fills in an object's kind and apiVersion when absent; refuses other ones.
fn check_type(res: &Resource, mut obj: Value) -> ApiResult<Value> {
    let Value::Object(map) = &mut obj else {
        return Err(bad_request("the request body must be a JSON object"));
    };
    let want = res.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("apiVersion".into(), want.clone().into());
        }
        Some(v) if v == want => {}
        Some(v) => {
            return Err(bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
    }
    match map.get("kind").and_then(Value::as_str) {
        None | Some("") => {
            map.insert("kind".into(), res.kind.into());
        }
        Some(k) if k == res.kind => {}
        Some(k) => {
            return Err(bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                res.kind
            )));
        }
    }
    Ok(obj)
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// The label and field selectors of a list or watch.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    pub(crate) fn from_query(res: &Resource, q: &Query) -> ApiResult<Filter> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())
            .map_err(bad_request)?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())
            .map_err(bad_request)?;
        if let Some(f) = fields.fields().find(|f| !res.supports_field(f)) {
            return Err(bad_request(format!(
                "field label not supported: {f} (for {})",
                res.qualified_plural()
            )));
        }
        Ok(Filter { labels, fields })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        (self.labels.is_empty() || self.labels.matches(&labels_of(obj)))
            && self.fields.matches(|f| field_value(obj, f))
    }
}

/// How a response is printed: the object itself, or a Table.
pub(crate) struct Output {
    pub(crate) table: bool,
    pub(crate) include: Include,
}

impl Output {
    pub(crate) fn from_request(headers: &HeaderMap, q: &Query) -> ApiResult<Output> {
        Ok(Output {
            table: http::wants_table(headers),
            include: Include::parse(q.get("includeObject")).map_err(bad_request)?,
        })
    }

    fn one(&self, res: &Resource, code: u16, obj: &Value) -> Resp {
        if self.table {
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            let t = table::table(res, std::slice::from_ref(obj), meta, now(), self.include);
            json_response(code, TABLE, &t)
        } else {
            json_response(code, JSON, obj)
        }
    }
}

/// The verbs other than watch, with `fieldValidation` applied to what the
/// request sets (see `openapi`): Strict refuses unknown fields, Warn (the
/// default) names them in `Warning` headers, Ignore says nothing; values of
/// the wrong type are refused whatever it says.
pub(crate) async fn handle(
    state: &Arc<State>,
    method: &hyper::Method,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Resp> {
    use hyper::Method;
    let ct = http::content_type(headers);
    let sets_fields = matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && t.sub.is_none()
        && ct != protobuf::MEDIA_TYPE;
    let found = match serde_json::from_slice::<Value>(body) {
        Ok(doc) if sets_fields => openapi::check(t.res, &ct, &doc),
        // Malformed bodies are refused below with their own message.
        _ => Default::default(),
    };
    if !found.invalid.is_empty() {
        return Err(bad_request(format!(
            "{} in body is invalid: {}",
            t.res.kind,
            found.invalid.join(", ")
        )));
    }
    let unknown = found.unknown;
    let warnings = match q.non_empty("fieldValidation").unwrap_or("Warn") {
        "Strict" if !unknown.is_empty() => {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field {f:?}"))
                .collect();
            return Err(bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        "Strict" | "Ignore" => Vec::new(),
        "Warn" => unknown,
        other => {
            return Err(bad_request(format!(
                "fieldValidation: unsupported value {other:?} (Strict, Warn or Ignore)"
            )));
        }
    };
    let mut resp = dispatch(state, method, t, q, headers, body).await?;
    for f in warnings {
        if let Ok(v) =
            hyper::header::HeaderValue::from_str(&format!("299 - \"unknown field \\\"{f}\\\"\""))
        {
            resp.headers_mut().append("warning", v);
        }
    }
    Ok(resp)
}

async fn dispatch(
    state: &Arc<State>,
    method: &hyper::Method,
    t: &Target,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResult<Resp> {
    use hyper::Method;
    let out = Output::from_request(headers, q)?;
    let not_allowed = || {
        Status::new(
            Reason::MethodNotAllowed,
            format!("the server does not allow this method on the requested resource: {method}"),
        )
    };
    if t.res.namespaced && t.namespace.is_none() && *method != Method::GET {
        return Err(not_allowed());
    }
    let res = t.res;
    if res.kind == "SelfSubjectAccessReview" {
        // POSTs are answered by `auth::review`; nothing else is served.
        return Err(not_allowed());
    }
    if let Some(sub @ (Subresource::Binding | Subresource::Eviction | Subresource::Token)) = t.sub {
        let (&Method::POST, Some(name)) = (method, &t.name) else {
            return Err(not_allowed());
        };
        let done = match sub {
            Subresource::Binding => bind(state, t, name, body).await?,
            Subresource::Token => {
                let request = parse_token_request(headers, body)?;
                crate::sa::token_request(state, t, name, request, now()).await?
            }
            _ => evict(state, t, name, body).await?,
        };
        return Ok(http::json_response(201, JSON, &done));
    }
    match (method, &t.name) {
        (&Method::GET, Some(name)) => {
            let obj = get(state, t, name).await?;
            let obj = match t.sub {
                Some(Subresource::Scale) => scale_of(&obj),
                _ => obj,
            };
            Ok(out.one(res, 200, &obj))
        }
        (&Method::GET, None) => list(state, t, q, &out).await,
        (&Method::POST, None) => {
            let obj = parse_body(res, headers, body)?;
            let obj = create(state, res, t.namespace.as_deref(), obj, q.dry_run()).await?;
            Ok(out.one(res, 201, &obj))
        }
        (&Method::PUT | &Method::PATCH, Some(name)) => {
            let obj = if *method == Method::PUT {
                update(state, t, name, headers, body, q.dry_run()).await?
            } else {
                patch(state, t, name, q, headers, body, q.dry_run()).await?
            };
            let obj = match t.sub {
                Some(Subresource::Scale) => scale_of(&obj),
                _ => obj,
            };
            Ok(out.one(res, 200, &obj))
        }
        (&Method::DELETE, Some(name)) if t.sub.is_none() => {
            let opts = delete_options(body, q)?;
            let dry_run = q.dry_run() || opts.dry_run;
            let obj = delete(state, t, name, &opts, dry_run).await?;
            if res.kind == "Namespace" && !dry_run {
                // The namespace is Terminating: its contents go in the background
                // (kubectl waits for the namespace to disappear).
                tokio::spawn(namespaces::finish(state.clone(), name.clone()));
            }
            Ok(out.one(res, 200, &obj))
        }
        (&Method::DELETE, None) => delete_collection(state, t, q, body).await,
        _ => Err(not_allowed()),
    }
}

async fn get(state: &State, t: &Target, name: &str) -> ApiResult<Value> {
    let res = t.res;
    let kv = state
        .store
        .get(&key(res, t.namespace.as_deref(), name), None)
        .await
        .map_err(|e| store_error(e, res, name))?
        .ok_or_else(|| Status::not_found(res, name))?;
    decode(&kv)
}

/// A `continue` token: the revision of the first page and the last key read.
fn continue_token(rev: Revision, last: &Key) -> String {
    let start = String::from_utf8_lossy(last.as_bytes()).into_owned();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"rv": rev.get(), "start": start}).to_string())
}

fn parse_continue(token: &str, prefix: &str) -> ApiResult<(Revision, Key)> {
    let invalid = || bad_request("continue key is not valid");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| invalid())?;
    let rev = v["rv"]
        .as_i64()
        .and_then(|r| Revision::new(r).ok())
        .ok_or_else(invalid)?;
    let start = v["start"].as_str().ok_or_else(invalid)?;
    // A token may only continue within the list it came from.
    if !start.starts_with(prefix) {
        return Err(invalid());
    }
    Ok((rev, Key::try_from(start).map_err(|_| invalid())?))
}

/// The revision a list reads at: `None` (current) unless an exact one is asked for.
async fn list_revision(state: &State, q: &Query) -> ApiResult<Option<Revision>> {
    let rv = match q.non_empty("resourceVersion") {
        None | Some("0") => return Ok(None),
        Some(rv) => rv
            .parse::<Revision>()
            .map_err(|e| bad_request(format!("resourceVersion: {e}")))?,
    };
    match q.non_empty("resourceVersionMatch") {
        Some("Exact") => Ok(Some(rv)),
        None | Some("NotOlderThan") => {
            let current = state
                .store
                .current_revision()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if rv > current {
                return Err(Status::new(
                    Reason::Timeout,
                    format!("Too large resource version: {rv}, current: {current}"),
                ));
            }
            Ok(None)
        }
        Some(other) => Err(bad_request(format!(
            "resourceVersionMatch: unsupported value {other:?}"
        ))),
    }
}

/// Every matching object of a list, read at one revision.
pub(crate) struct Listed {
    pub(crate) items: Vec<Value>,
    pub(crate) revision: Revision,
}

pub(crate) async fn read_list(state: &State, t: &Target, filter: &Filter) -> ApiResult<Listed> {
    let mut items = Vec::new();
    let (revision, _) = read_each(state, t, filter, None, None, None, &mut |obj| {
        items.push(obj);
        Ok(())
    })
    .await?;
    Ok(Listed { items, revision })
}

/// Store pages read for a list without a limit: memory stays at one page of
/// stored bytes whatever the list's length.
const LIST_PAGE: usize = 1000;

/// Calls `each` with every matching object of a list, in key order, at most
/// `limit`, all read at one revision; returns that revision and the continue
/// token when more remain.
#[allow(clippy::too_many_arguments, reason = "a list's parameters")]
async fn read_each(
    state: &State,
    t: &Target,
    filter: &Filter,
    limit: Option<usize>,
    cont: Option<&str>,
    at: Option<Revision>,
    each: &mut (dyn FnMut(Value) -> ApiResult<()> + Send),
) -> ApiResult<(Revision, Option<String>)> {
    let res = t.res;
    let prefix = prefix(res, t.namespace.as_deref());
    let whole = KeyRange::prefix(&prefix);
    let (mut range, mut at) = match cont {
        Some(token) => {
            let (rev, last) = parse_continue(token, &prefix)?;
            (whole.continue_after(&last), Some(rev))
        }
        None => (whole.clone(), at),
    };
    let mut found = 0;
    loop {
        let want = limit.map_or(LIST_PAGE, |l| l.saturating_sub(found).clamp(1, LIST_PAGE));
        let got = state
            .store
            .range(&range, at, NonZeroUsize::new(want))
            .await
            .map_err(|e| match e {
                bosun_store::Error::Compacted { .. } if cont.is_some() => Status::expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ),
                e => store_error(e, res, ""),
            })?;
        at = Some(got.revision);
        let count = got.kvs.len();
        for (i, kv) in got.kvs.iter().enumerate() {
            let obj = decode(kv)?;
            if filter.matches(&obj) {
                each(obj)?;
                found += 1;
            }
            let full = limit.is_some_and(|l| found >= l);
            if full && (i + 1 < count || got.more) {
                return Ok((got.revision, Some(continue_token(got.revision, &kv.key))));
            }
        }
        match got.kvs.last() {
            Some(last) if got.more => range = whole.continue_after(&last.key),
            _ => return Ok((got.revision, None)),
        }
    }
}

async fn list(state: &State, t: &Target, q: &Query, out: &Output) -> ApiResult<Resp> {
    let filter = Filter::from_query(t.res, q)?;
    let limit = match q.non_empty("limit") {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Some(n as usize),
            Ok(_) => None,
            Err(_) => return Err(bad_request(format!("limit: invalid value {l:?}"))),
        },
    };
    let at = list_revision(state, q).await?;
    // The answer is written as the objects are read, each dropped once
    // written, so a list of 30,000 pods never holds 30,000 decoded objects.
    // `metadata` comes last because the continue token is known only then.
    let mut body = Vec::new();
    let now = now();
    let (kind, api_version) = if out.table {
        ("Table".to_owned(), "meta.k8s.io/v1".to_owned())
    } else {
        (t.res.list_kind(), t.res.api_version())
    };
    body.extend_from_slice(
        format!("{{\"kind\":{kind:?},\"apiVersion\":{api_version:?},").as_bytes(),
    );
    if out.table {
        body.extend_from_slice(b"\"columnDefinitions\":");
        write_json(&mut body, &table::column_definitions(t.res));
        body.extend_from_slice(b",\"rows\":[");
    } else {
        body.extend_from_slice(b"\"items\":[");
    }
    let mut first = true;
    let (revision, next) = read_each(
        state,
        t,
        &filter,
        limit,
        q.non_empty("continue"),
        at,
        &mut |obj| {
            if !first {
                body.push(b',');
            }
            first = false;
            if out.table {
                write_json(&mut body, &table::row(t.res.kind, &obj, now, out.include));
            } else {
                write_json(&mut body, &obj);
            }
            Ok(())
        },
    )
    .await?;
    let mut meta = json!({"resourceVersion": revision.to_string()});
    if let Some(next) = next {
        meta["continue"] = next.into();
    }
    body.extend_from_slice(b"],\"metadata\":");
    write_json(&mut body, &meta);
    body.extend_from_slice(b"}\n");
    let ct = if out.table { TABLE } else { JSON };
    Ok(http::bytes_response(200, ct, body))
}

fn write_json(buf: &mut Vec<u8>, v: &Value) {
    serde_json::to_writer(buf, v).expect("a Value always serializes");
}

/// Letters Kubernetes uses for generated name suffixes (no vowels: no words).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn generated_name(base: &str) -> ApiResult<String> {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).map_err(|e| Status::internal(e.to_string()))?;
    let base = &base[..base.len().min(58)];
    let suffix: String = bytes
        .iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect();
    Ok(format!("{base}{suffix}"))
}

fn new_uid() -> ApiResult<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Status::internal(e.to_string()))?;
    // RFC 4122 version 4, variant 1.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::pki::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// Puts the URL's namespace into the object, or refuses a different one.
fn reconcile_namespace(res: &Resource, obj: &mut Value, url_ns: Option<&str>) -> ApiResult<()> {
    let meta = meta_mut(obj);
    if !res.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let url_ns = url_ns.unwrap_or_default();
    match meta.get("namespace").and_then(Value::as_str) {
        None | Some("") => {
            meta.insert("namespace".into(), url_ns.into());
            Ok(())
        }
        Some(ns) if ns == url_ns => Ok(()),
        Some(_) => Err(bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
    }
}

fn invalid_if_any(res: &Resource, name: &str, obj: &Value, meta: &ObjectMeta) -> ApiResult<()> {
    let mut causes = meta.validate(NameRule::for_kind(res.kind));
    causes.extend(kinds::validate(res.kind, obj));
    if causes.is_empty() {
        Ok(())
    } else {
        Err(Status::invalid(res, name, causes))
    }
}

/// The checks [`create`] makes of a new object that need no store: namespace,
/// metadata, defaults, initial status and validation (without the addresses
/// `alloc` assigns). For the fuzz targets.
pub(crate) fn check_new_object(
    res: &Resource,
    namespace: Option<&str>,
    obj: &mut Value,
) -> ApiResult<()> {
    reconcile_namespace(res, obj, namespace)?;
    let meta = ObjectMeta::of(obj).map_err(bad_request)?;
    kinds::default(res.kind, obj).map_err(|c| Status::invalid(res, &meta.name, vec![c]))?;
    if res.has(Subresource::Status) {
        let given = obj.get("status").cloned();
        if let Some(s) = kinds::initial_status(res.kind, given.as_ref()) {
            obj["status"] = s;
        }
    }
    invalid_if_any(res, &meta.name, obj, &meta)
}

/// Creates an object (also used to make the built-in namespaces at start).
pub(crate) async fn create(
    state: &State,
    res: &'static Resource,
    namespace: Option<&str>,
    obj: Value,
    dry_run: bool,
) -> ApiResult<Value> {
    create_managed(state, res, namespace, obj, dry_run, None).await
}

/// Sets `metadata.managedFields` (only server-side apply decides them).
pub(crate) fn set_managed(obj: &mut Value, managed: Value) {
    meta_mut(obj).insert("managedFields".into(), managed);
}

/// [`create`], with the `managedFields` server-side apply computed (`None`:
/// whatever the client sent is dropped).
async fn create_managed(
    state: &State,
    res: &'static Resource,
    namespace: Option<&str>,
    mut obj: Value,
    dry_run: bool,
    managed: Option<Value>,
) -> ApiResult<Value> {
    reconcile_namespace(res, &mut obj, namespace)?;
    let meta = ObjectMeta::of(&obj).map_err(bad_request)?;
    if meta.name.is_empty() && !meta.generate_name.is_empty() {
        let name = generated_name(&meta.generate_name)?;
        meta_mut(&mut obj).insert("name".into(), name.into());
    }
    let meta = ObjectMeta::of(&obj).map_err(bad_request)?;
    kinds::default(res.kind, &mut obj).map_err(|c| Status::invalid(res, &meta.name, vec![c]))?;
    if res.kind == "Pod" {
        kinds::default_tolerations(&mut obj, state.default_toleration_seconds);
    }
    if res.has(Subresource::Status) {
        let given = obj.get("status").cloned();
        match kinds::initial_status(res.kind, given.as_ref()) {
            Some(s) => obj["status"] = s,
            None => {
                obj.as_object_mut().map(|o| o.remove("status"));
            }
        }
    }
    alloc::assign(&state.store, res, &meta.name, &mut obj, None).await?;
    invalid_if_any(res, &meta.name, &obj, &meta)?;
    let m = meta_mut(&mut obj);
    for server_owned in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
    ] {
        m.remove(server_owned);
    }
    m.insert("uid".into(), new_uid()?.into());
    m.insert("creationTimestamp".into(), format_time(now()).into());
    m.insert("generation".into(), 1.into());
    m.remove("resourceVersion");
    if let Some(managed) = managed {
        m.insert("managedFields".into(), managed);
    }
    let namespace = namespace.filter(|_| res.namespaced);
    if dry_run {
        if let Some(ns) = namespace {
            live_namespace(state, ns).await?;
        }
        return Ok(obj);
    }
    let k = key(res, namespace, &meta.name);
    let held = alloc::held(&obj);
    let bytes = encode(&mut obj);
    let mut attempt = 0;
    loop {
        attempt += 1;
        // The namespace must exist and not be terminating, and stay so until the
        // write: it is a compare of the same transaction, so a namespace being
        // deleted meanwhile cannot end up with a new object inside.
        let guard = match namespace {
            Some(ns) => Some(live_namespace(state, ns).await?),
            None => None,
        };
        let written = commit_guarded(
            state,
            res,
            &meta.name,
            &k,
            Revision::ZERO,
            Some(bytes.clone()),
            &BTreeSet::new(),
            &held,
            guard.as_ref(),
        )
        .await;
        match written {
            Ok(rev) => {
                set_rv(&mut obj, rev);
                return Ok(obj);
            }
            Err(s) if s.reason == Reason::Conflict && attempt < PATCH_ATTEMPTS => {}
            Err(s) => return Err(s),
        }
    }
}

/// The namespace `ns` as stored, if it exists and is not being deleted.
async fn live_namespace(state: &State, ns: &str) -> ApiResult<KeyValue> {
    let namespaces = resource::find("", "v1", "namespaces").expect("in the table");
    let kv = state
        .store
        .get(&key(namespaces, None, ns), None)
        .await
        .map_err(|e| store_error(e, namespaces, ns))?
        .ok_or_else(|| Status::not_found(namespaces, ns))?;
    if !decode(&kv)?["metadata"]["deletionTimestamp"].is_null() {
        return Err(Status::new(
            Reason::Forbidden,
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        ));
    }
    Ok(kv)
}

/// The current version of an object, for a read-modify-write.
async fn current(state: &State, t: &Target, name: &str) -> ApiResult<(KeyValue, Value)> {
    let kv = state
        .store
        .get(&key(t.res, t.namespace.as_deref(), name), None)
        .await
        .map_err(|e| store_error(e, t.res, name))?
        .ok_or_else(|| Status::not_found(t.res, name))?;
    let obj = decode(&kv)?;
    Ok((kv, obj))
}

fn rv_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
}

/// Everything but metadata and status: what a change of bumps `generation`.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

async fn update(
    state: &State,
    t: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<Value> {
    let res = t.res;
    let body_res = match t.sub {
        Some(Subresource::Scale) => &SCALE,
        _ => res,
    };
    let mut obj = parse_body(body_res, headers, body)?;
    let meta = ObjectMeta::of(&obj).map_err(bad_request)?;
    if !meta.name.is_empty() && meta.name != name {
        return Err(bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta.name
        )));
    }
    if t.sub != Some(Subresource::Scale) {
        reconcile_namespace(res, &mut obj, t.namespace.as_deref())?;
    }
    let (kv, cur) = current(state, t, name).await?;
    if let Some(rv) = rv_of(&obj)
        && rv != kv.mod_revision.to_string()
    {
        return Err(Status::modified(res, name));
    }
    let new = match t.sub {
        Some(Subresource::Scale) => apply_scale(res, name, &cur, &obj)?,
        _ => obj,
    };
    write_update(state, t, name, &kv, cur, new, dry_run, None).await
}

/// Writes `new` over `cur` (read at `kv`): server-owned metadata carried over,
/// status or spec kept depending on the subresource, generation bumped on a
/// change of spec, and the object deleted once its last finalizer is gone.
#[allow(clippy::too_many_arguments, reason = "the parts of one write")]
async fn write_update(
    state: &State,
    t: &Target,
    name: &str,
    kv: &KeyValue,
    cur: Value,
    mut new: Value,
    dry_run: bool,
    managed: Option<Value>,
) -> ApiResult<Value> {
    let res = t.res;
    match t.sub {
        Some(Subresource::Status) => {
            let status = new.get("status").cloned().unwrap_or(json!({}));
            new = cur.clone();
            new["status"] = status;
        }
        _ if res.has(Subresource::Status) => match cur.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|o| o.remove("status"));
            }
        },
        _ => {}
    }
    {
        let cm = cur["metadata"].as_object().cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        for owned in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ] {
            match cm.get(owned) {
                Some(v) => m.insert(owned.into(), v.clone()),
                None => m.remove(owned),
            };
        }
        m.remove("resourceVersion");
        // Field ownership changes only through server-side apply.
        match managed.or_else(|| cm.get("managedFields").cloned()) {
            Some(v) => m.insert("managedFields".into(), v),
            None => m.remove("managedFields"),
        };
    }
    let meta = ObjectMeta::of(&new).map_err(bad_request)?;
    kinds::default(res.kind, &mut new).map_err(|c| Status::invalid(res, name, vec![c]))?;
    alloc::assign(&state.store, res, name, &mut new, Some(&cur)).await?;
    invalid_if_any(res, name, &new, &meta)?;
    let frozen = kinds::immutable(res.kind, &cur, &new);
    if !frozen.is_empty() {
        return Err(Status::invalid(res, name, frozen));
    }
    let old_meta = ObjectMeta::of(&cur).map_err(bad_request)?;
    if old_meta.deletion_timestamp.is_some()
        && let Some(added) = meta
            .finalizers
            .iter()
            .find(|f| !old_meta.finalizers.contains(f))
    {
        return Err(Status::invalid(
            res,
            name,
            vec![bosun_api::Cause::invalid(
                "metadata.finalizers",
                added,
                "no new finalizers can be added if the object is being deleted",
            )],
        ));
    }
    if spec_part(&new) != spec_part(&cur) {
        meta_mut(&mut new).insert("generation".into(), (old_meta.generation + 1).into());
    }
    let mut unchanged = cur.clone();
    meta_mut(&mut unchanged).remove("resourceVersion");
    if new == unchanged {
        // No write, no new resourceVersion: what Kubernetes does for a no-op.
        return Ok(cur);
    }
    if dry_run {
        set_rv(&mut new, kv.mod_revision);
        return Ok(new);
    }
    let (old_held, new_held) = (alloc::held(&cur), alloc::held(&new));
    if meta.deletion_timestamp.is_some() && meta.finalizers.is_empty() {
        let rev = commit(
            state,
            res,
            name,
            &kv.key,
            kv.mod_revision,
            None,
            &old_held,
            &BTreeSet::new(),
        )
        .await?;
        set_rv(&mut new, rev);
        return Ok(new);
    }
    let bytes = encode(&mut new);
    let rev = commit(
        state,
        res,
        name,
        &kv.key,
        kv.mod_revision,
        Some(bytes),
        &old_held,
        &new_held,
    )
    .await?;
    set_rv(&mut new, rev);
    Ok(new)
}

/// How many times a patch without a resourceVersion precondition is retried
/// when another writer got there first (it is re-applied to the new version).
const PATCH_ATTEMPTS: usize = 5;

async fn patch(
    state: &State,
    t: &Target,
    name: &str,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<Value> {
    let res = t.res;
    let ct = http::content_type(headers);
    if ct == "application/apply-patch+yaml" {
        return server_side_apply(state, t, name, q, body, dry_run).await;
    }
    let Some(kind) = PatchType::from_content_type(&ct) else {
        return Err(Status::new(
            Reason::UnsupportedMediaType,
            format!("the server does not support the patch type {ct:?}"),
        ));
    };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the patch is not valid JSON: {e}")))?;
    let precondition = match kind {
        PatchType::Json => doc.as_array().is_some_and(|ops| {
            ops.iter()
                .any(|op| op["path"] == "/metadata/resourceVersion")
        }),
        _ => !doc["metadata"]["resourceVersion"].is_null(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (kv, cur) = current(state, t, name).await?;
        let mut view = match t.sub {
            Some(Subresource::Scale) => scale_of(&cur),
            _ => cur.clone(),
        };
        patch::apply(kind, &mut view, &doc).map_err(|why| {
            Status::unprocessable(format!(
                "the patch could not be applied to {} {name:?}: {why}",
                res.qualified_plural()
            ))
        })?;
        if let Some(rv) = rv_of(&view)
            && rv != kv.mod_revision.to_string()
        {
            return Err(Status::modified(res, name));
        }
        if ObjectMeta::of(&view).map_err(bad_request)?.name != name {
            return Err(bad_request("a patch may not change metadata.name"));
        }
        let new = match t.sub {
            Some(Subresource::Scale) => apply_scale(res, name, &cur, &view)?,
            _ => view,
        };
        match write_update(state, t, name, &kv, cur, new, dry_run, None).await {
            Err(s) if s.reason == Reason::Conflict && !precondition && attempt < PATCH_ATTEMPTS => {
                continue;
            }
            other => return other,
        }
    }
}

/// `PATCH` with `application/apply-patch+yaml`: server-side apply (see `ssa`).
/// Creates the object when it does not exist.
async fn server_side_apply(
    state: &State,
    t: &Target,
    name: &str,
    q: &Query,
    body: &[u8],
    dry_run: bool,
) -> ApiResult<Value> {
    let res = t.res;
    if t.sub.is_some() {
        return Err(Status::new(
            Reason::MethodNotAllowed,
            "server-side apply to a subresource is not supported yet",
        ));
    }
    let Some(manager) = q.non_empty("fieldManager") else {
        return Err(bad_request(
            "PATCH with application/apply-patch+yaml requires the fieldManager parameter",
        ));
    };
    let force = q.flag("force");
    // kubectl sends JSON, which is YAML too; other YAML is refused, not guessed at.
    let applied: Value = serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "the apply configuration must be JSON (YAML in JSON form): {e}"
        ))
    })?;
    let mut applied = check_type(res, applied)?;
    let meta = ObjectMeta::of(&applied).map_err(bad_request)?;
    if meta.name.is_empty() {
        meta_mut(&mut applied).insert("name".into(), name.into());
    } else if meta.name != name {
        return Err(bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            meta.name
        )));
    }
    reconcile_namespace(res, &mut applied, t.namespace.as_deref())?;
    let api_version = res.api_version();
    let failed = |e: ssa::ApplyError| {
        let conflicts = match e {
            ssa::ApplyError::Conflicts(c) => c,
            ssa::ApplyError::Invalid(why) => {
                return bad_request(format!("the apply configuration does not merge: {why}"));
            }
        };
        let causes: Vec<bosun_api::Cause> = conflicts
            .iter()
            .map(|(f, owner)| bosun_api::Cause {
                reason: "FieldManagerConflict",
                field: ssa::display(f),
                message: format!("conflict with {owner:?} using {api_version}"),
            })
            .collect();
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.message, c.field))
            .collect();
        let n = causes.len();
        Status::conflict_with_causes(
            res,
            name,
            format!(
                "Apply failed with {n} conflict{}: {}",
                if n == 1 { "" } else { "s" },
                list.join("; ")
            ),
            causes,
        )
    };
    for _ in 0..PATCH_ATTEMPTS {
        match current(state, t, name).await {
            Err(s) if s.reason == Reason::NotFound => {
                let merged = ssa::apply(None, &applied, manager, &api_version, force, now())
                    .map_err(failed)?;
                let managed = merged["metadata"]["managedFields"].clone();
                match create_managed(
                    state,
                    res,
                    t.namespace.as_deref(),
                    merged,
                    dry_run,
                    Some(managed),
                )
                .await
                {
                    Err(s) if s.reason == Reason::AlreadyExists => continue,
                    other => return other,
                }
            }
            Err(s) => return Err(s),
            Ok((kv, cur)) => {
                let merged = ssa::apply(Some(&cur), &applied, manager, &api_version, force, now())
                    .map_err(failed)?;
                let managed = merged["metadata"]["managedFields"].clone();
                match write_update(state, t, name, &kv, cur, merged, dry_run, Some(managed)).await {
                    Err(s) if s.reason == Reason::Conflict && s.causes().is_empty() => continue,
                    other => return other,
                }
            }
        }
    }
    Err(Status::modified(res, name))
}

/// What a DELETE body may say.
#[derive(Debug, Default)]
pub(crate) struct DeleteOptions {
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
    /// `None`: the default (Background), and finalizers left as they are.
    propagation: Option<Propagation>,
}

/// What happens to an object's dependents (objects whose ownerReferences
/// name it) when it is deleted; the garbage collector (the `controllers`
/// crate) does the work the finalizers ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Propagation {
    /// The owner goes at once; the collector deletes the dependents after.
    Background,
    /// The owner is held by `foregroundDeletion` until the dependents that
    /// block it (`blockOwnerDeletion`) are gone.
    Foreground,
    /// The owner is held by `orphan` until its dependents no longer name it.
    Orphan,
}

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

impl Propagation {
    fn parse(v: &str) -> ApiResult<Propagation> {
        match v {
            "Background" => Ok(Propagation::Background),
            "Foreground" => Ok(Propagation::Foreground),
            "Orphan" => Ok(Propagation::Orphan),
            other => Err(bad_request(format!(
                "propagationPolicy: unsupported value {other:?} (Background, Foreground or Orphan)"
            ))),
        }
    }

    /// The finalizers of an object deleted with this policy, as Kubernetes
    /// sets them: the policy's own finalizer, and not the other one.
    fn finalizers(self, current: &[String]) -> Vec<String> {
        let (add, remove) = match self {
            Propagation::Background => (None, [FOREGROUND, ORPHAN]),
            Propagation::Foreground => (Some(FOREGROUND), [ORPHAN, ORPHAN]),
            Propagation::Orphan => (Some(ORPHAN), [FOREGROUND, FOREGROUND]),
        };
        let mut out: Vec<String> = current
            .iter()
            .filter(|f| !remove.contains(&f.as_str()))
            .cloned()
            .collect();
        if let Some(add) = add.filter(|a| !out.iter().any(|f| f == a)) {
            out.push(add.to_owned());
        }
        out
    }
}

/// The options of a DELETE: its body, and `propagationPolicy` or
/// `orphanDependents` in the query when the body does not say.
fn delete_options(body: &[u8], q: &Query) -> ApiResult<DeleteOptions> {
    let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the DeleteOptions body is not valid JSON: {e}")))?
    };
    let s = |p: &str| v["preconditions"][p].as_str().map(str::to_owned);
    let policy = v["propagationPolicy"]
        .as_str()
        .or_else(|| q.non_empty("propagationPolicy"));
    let orphan = v["orphanDependents"]
        .as_bool()
        .or_else(|| q.get("orphanDependents").map(|o| o == "true"));
    let propagation = match (policy, orphan) {
        (Some(_), Some(_)) => {
            return Err(Status::new(
                Reason::Invalid,
                "DeleteOptions: orphanDependents and propagationPolicy cannot both be set",
            ));
        }
        (Some(p), None) => Some(Propagation::parse(p)?),
        (None, Some(true)) => Some(Propagation::Orphan),
        (None, Some(false)) => Some(Propagation::Background),
        (None, None) => None,
    };
    Ok(DeleteOptions {
        uid: s("uid"),
        resource_version: s("resourceVersion"),
        dry_run: v["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "All")),
        propagation,
    })
}

/// Namespaces Kubernetes itself needs; deleting them is refused.
const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub(crate) async fn delete(
    state: &State,
    t: &Target,
    name: &str,
    opts: &DeleteOptions,
    dry_run: bool,
) -> ApiResult<Value> {
    let res = t.res;
    if res.kind == "Namespace" && PROTECTED_NAMESPACES.contains(&name) {
        return Err(Status::new(
            Reason::Forbidden,
            format!("namespaces {name:?} is forbidden: this namespace may not be deleted"),
        ));
    }
    for _ in 0..PATCH_ATTEMPTS {
        let (kv, cur) = current(state, t, name).await?;
        let meta = ObjectMeta::of(&cur).map_err(bad_request)?;
        if let Some(uid) = opts.uid.as_deref().filter(|u| *u != meta.uid) {
            return Err(Status::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta.uid
                ),
            ));
        }
        if let Some(rv) = opts
            .resource_version
            .as_deref()
            .filter(|rv| *rv != kv.mod_revision.to_string())
        {
            return Err(Status::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    kv.mod_revision
                ),
            ));
        }
        if dry_run {
            return Ok(cur);
        }
        let finalizers = match opts.propagation {
            Some(p) => p.finalizers(&meta.finalizers),
            None => meta.finalizers.clone(),
        };
        // A namespace is held until its contents are gone (`namespaces::finish`).
        let held = !finalizers.is_empty() || res.kind == "Namespace";
        if held {
            if meta.deletion_timestamp.is_some() && finalizers == meta.finalizers {
                return Ok(cur);
            }
            // Finalizers hold the object: mark it and let their owners remove them.
            let mut marked = cur.clone();
            let m = meta_mut(&mut marked);
            if meta.deletion_timestamp.is_none() {
                m.insert("deletionTimestamp".into(), format_time(now()).into());
                m.insert("deletionGracePeriodSeconds".into(), 0.into());
            }
            if finalizers != meta.finalizers {
                m.insert("finalizers".into(), json!(finalizers));
            }
            if res.kind == "Namespace" {
                marked["status"] = json!({"phase": "Terminating"});
            }
            let held = alloc::held(&cur);
            let bytes = encode(&mut marked);
            let written = commit(
                state,
                res,
                name,
                &kv.key,
                kv.mod_revision,
                Some(bytes),
                &held,
                &held,
            )
            .await;
            match written {
                Ok(rev) => {
                    set_rv(&mut marked, rev);
                    return Ok(marked);
                }
                Err(s) if s.reason == Reason::Conflict && opts.resource_version.is_none() => {
                    continue;
                }
                Err(s) => return Err(s),
            }
        }
        let deleted = commit(
            state,
            res,
            name,
            &kv.key,
            kv.mod_revision,
            None,
            &alloc::held(&cur),
            &BTreeSet::new(),
        )
        .await;
        match deleted {
            Ok(_) => return Ok(cur),
            Err(s) if s.reason == Reason::Conflict && opts.resource_version.is_none() => {}
            Err(s) => return Err(s),
        }
    }
    Err(Status::modified(res, name))
}

async fn delete_collection(state: &State, t: &Target, q: &Query, body: &[u8]) -> ApiResult<Resp> {
    let filter = Filter::from_query(t.res, q)?;
    let opts = delete_options(body, q)?;
    let listed = read_list(state, t, &filter).await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let meta = ObjectMeta::of(&obj).map_err(bad_request)?;
        let one = Target {
            namespace: (!meta.namespace.is_empty()).then_some(meta.namespace.clone()),
            ..t.clone()
        };
        match delete(state, &one, &meta.name, &opts, q.dry_run() || opts.dry_run).await {
            Ok(o) => deleted.push(o),
            // Deleted by someone else meanwhile: the collection is still gone.
            Err(s) if s.reason == Reason::NotFound => {}
            Err(s) => return Err(s),
        }
    }
    Ok(http::ok(&json!({
        "kind": t.res.list_kind(),
        "apiVersion": t.res.api_version(),
        "metadata": {"resourceVersion": listed.revision.to_string()},
        "items": deleted,
    })))
}

/// `pods/<name>/binding`: puts the pod on the node the Binding names, once.
async fn bind(state: &State, t: &Target, name: &str, body: &[u8]) -> ApiResult<Value> {
    let res = t.res;
    let binding: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))?;
    let Some(node) = binding["target"]["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(Status::invalid(
            res,
            name,
            vec![bosun_api::Cause::required("target.name")],
        ));
    };
    for _ in 0..PATCH_ATTEMPTS {
        let (kv, cur) = current(state, t, name).await?;
        if let Some(bound) = cur["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(Status::conflict(
                res,
                name,
                &format!("pod {name} is already assigned to node {bound:?}"),
            ));
        }
        if !cur["metadata"]["deletionTimestamp"].is_null() {
            return Err(Status::conflict(res, name, "the pod is being deleted"));
        }
        let mut new = cur.clone();
        new["spec"]["nodeName"] = json!(node);
        let condition = json!({"type": "PodScheduled", "status": "True",
                               "lastTransitionTime": format_time(now())});
        match new["status"]["conditions"].as_array_mut() {
            Some(list) => {
                list.retain(|c| c["type"] != "PodScheduled");
                list.push(condition);
            }
            None => new["status"]["conditions"] = json!([condition]),
        }
        let held = alloc::held(&cur);
        let bytes = encode(&mut new);
        match commit(
            state,
            res,
            name,
            &kv.key,
            kv.mod_revision,
            Some(bytes),
            &held,
            &held,
        )
        .await
        {
            Ok(_) => return Ok(bosun_api::status::success(Some((res, name)))),
            Err(s) if s.reason == Reason::Conflict => {}
            Err(s) => return Err(s),
        }
    }
    Err(Status::modified(res, name))
}

/// `pods/<name>/eviction`: deletes the pod, honouring the Eviction's
/// `deleteOptions` preconditions. (No PodDisruptionBudgets are served yet, so
/// none can refuse it.)
async fn evict(state: &State, t: &Target, name: &str, body: &[u8]) -> ApiResult<Value> {
    let eviction: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the request body is not valid JSON: {e}")))?
    };
    let opts = match eviction.get("deleteOptions") {
        Some(o) => delete_options(o.to_string().as_bytes(), &Query::default())?,
        None => DeleteOptions::default(),
    };
    let one = Target {
        sub: None,
        ..t.clone()
    };
    delete(state, &one, name, &opts, opts.dry_run).await?;
    Ok(bosun_api::status::success(Some((t.res, name))))
}

/// The resource a scale subresource body is checked against.
static SCALE: Resource = Resource {
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    plural: "scale",
    singular: "scale",
    short_names: &[],
    namespaced: true,
    categories: &[],
    subresources: &[],
    verbs: &["get", "patch", "update"],
    fields: &[],
};

/// The `autoscaling/v1 Scale` view of a workload.
fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector: Vec<String> = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
            "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {
            "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": selector.join(","),
        },
    })
}

/// The workload with the replicas a Scale asks for.
fn apply_scale(res: &Resource, name: &str, cur: &Value, scale: &Value) -> ApiResult<Value> {
    let replicas = &scale["spec"]["replicas"];
    let Some(n) = replicas.as_i64().filter(|n| *n >= 0) else {
        return Err(Status::invalid(
            res,
            name,
            vec![bosun_api::Cause::invalid(
                "spec.replicas",
                &replicas.to_string(),
                "must be greater than or equal to 0",
            )],
        ));
    };
    let mut new = cur.clone();
    new["spec"]["replicas"] = n.into();
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_policies_set_their_finalizers() {
        let f = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let held = f(&["example.com/hold", ORPHAN]);
        assert_eq!(
            Propagation::Foreground.finalizers(&held),
            f(&["example.com/hold", FOREGROUND])
        );
        assert_eq!(
            Propagation::Background.finalizers(&held),
            f(&["example.com/hold"])
        );
        assert_eq!(Propagation::Orphan.finalizers(&held), held);
        assert_eq!(Propagation::Orphan.finalizers(&[]), f(&[ORPHAN]));
        let q = Query::default();
        let opts = |b: &str| delete_options(b.as_bytes(), &q);
        assert_eq!(opts("").unwrap().propagation, None);
        assert_eq!(
            opts(r#"{"propagationPolicy":"Foreground"}"#)
                .unwrap()
                .propagation,
            Some(Propagation::Foreground)
        );
        assert_eq!(
            opts(r#"{"orphanDependents":true}"#).unwrap().propagation,
            Some(Propagation::Orphan)
        );
        assert!(opts(r#"{"propagationPolicy":"Sideways"}"#).is_err());
        assert!(opts(r#"{"propagationPolicy":"Orphan","orphanDependents":true}"#).is_err());
    }

    #[test]
    fn keys_and_tokens() {
        let pods = resource::find("", "v1", "pods").unwrap();
        let k = key(pods, Some("default"), "web");
        assert_eq!(k.as_bytes(), b"/registry/core/pods/default/web");
        let d = resource::find("apps", "v1", "deployments").unwrap();
        assert_eq!(prefix(d, None), "/registry/apps/deployments/");
        let token = continue_token(Revision::new(7).unwrap(), &k);
        let (rev, last) = parse_continue(&token, "/registry/core/pods/").unwrap();
        assert_eq!((rev.get(), last), (7, k));
        assert!(parse_continue(&token, "/registry/core/secrets/").is_err());
        assert!(parse_continue("garbage", "/registry/").is_err());
    }

    #[test]
    fn uids_and_names() {
        let u = new_uid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        let n = generated_name("web-").unwrap();
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
    }

    #[test]
    fn scale_views() {
        let d = json!({"metadata": {"name": "web", "resourceVersion": "5"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}});
        let s = scale_of(&d);
        assert_eq!(s["spec"]["replicas"], 2);
        assert_eq!(s["status"]["selector"], "app=web");
        let res = resource::find("apps", "v1", "deployments").unwrap();
        let new = apply_scale(res, "web", &d, &json!({"spec": {"replicas": 4}})).unwrap();
        assert_eq!(new["spec"]["replicas"], 4);
        assert!(apply_scale(res, "web", &d, &json!({"spec": {"replicas": -1}})).is_err());
    }
}
