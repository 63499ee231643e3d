//! The Docker Engine API over HTTP/1.1 on a unix socket: routing, version
//! negotiation, error bodies, streaming bodies and connection hijacking.
//! Handlers live in `containers.rs` and `system.rs`; they translate requests
//! into [`Engine`] calls and never hold engine state of their own.

mod build;
mod containers;
mod networks;
mod stream;
mod system;
mod transfer;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::UnixListener;

use crate::engine::Engine;
use crate::error::EngineError;

/// The newest API version served; the docker CLI negotiates down to it.
pub const API_VERSION: &str = "1.47";
/// The oldest accepted in a `/v1.NN/` path.
pub const MIN_API_VERSION: &str = "1.24";

/// A response body. Its error aborts a streamed response part-way (the status
/// line has gone out), so the client sees a broken transfer, not a short one.
pub(crate) type Body = BoxBody<Bytes, std::io::Error>;

/// Largest JSON request body read into memory (tar bodies stream).
const MAX_JSON_BODY: usize = 16 << 20;

/// A client gets this long to send a request's headers, counted from the
/// connection's start or the end of its previous response: one that trickles
/// them (slowloris) or keeps an idle connection open is cut off, so neither
/// holds a task and a descriptor forever. As the registry and API server.
const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// [`serve`]'s connection limit unless told otherwise: well below the 20000
/// descriptors a root process gets here, with room for logs, shims and layers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Serve the API on `listener` until `shutdown` resolves, with at most
/// `max_connections` connections at once: at the limit it stops accepting,
/// so a flood of idle connections waits in the kernel's backlog instead of
/// taking a descriptor and a task each (the header timeout frees the places
/// of idle ones). Connections in flight (hijacked streams, follows) end with
/// the process.
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let places = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = places.clone().acquire_owned() => {
                permit.expect("the connection semaphore is never closed")
            }
            () = &mut shutdown => return,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    // Out of file descriptors and the like: retrying at once
                    // would spin; back off and keep serving.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let _place = permit;
            let service = hyper::service::service_fn(move |req| {
                let engine = engine.clone();
                async move { Ok::<_, Infallible>(route(engine, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub(crate) fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn ok_json(value: &Value) -> Response<Body> {
    json_response(StatusCode::OK, value)
}

pub(crate) fn no_content() -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub(crate) fn status_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// Docker's error body: `{"message": "..."}` with the error's status.
pub(crate) fn error_response(e: &EngineError) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, &json!({"message": e.to_string()}))
}

/// A parsed request: the path after the version prefix, split, and the query.
#[derive(Debug)]
pub(crate) struct Call {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
}

impl Call {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The 404 for a path no handler serves.
    pub(crate) fn not_found(&self) -> EngineError {
        EngineError::NotFound(format!(
            "page not found: {} /{}",
            self.method,
            self.segments.join("/")
        ))
    }

    /// Docker's booleans: `1`, `true`, `True`; absent is false.
    pub(crate) fn flag(&self, name: &str) -> bool {
        self.param(name)
            .is_some_and(|v| matches!(v, "1" | "true" | "True" | "TRUE"))
    }

    pub(crate) fn int(&self, name: &str) -> Result<Option<i64>, EngineError> {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                EngineError::Invalid(format!("invalid value for {name}: {v:?} is not a number"))
            }),
        }
    }

    /// The `filters` parameter: `{"key":["v",…]}` or the old `{"key":{"v":true}}`.
    pub(crate) fn filters(&self) -> Result<Vec<(String, String)>, EngineError> {
        let Some(raw) = self.param("filters").filter(|f| !f.is_empty()) else {
            return Ok(Vec::new());
        };
        let v: Value = serde_json::from_str(raw)
            .map_err(|e| EngineError::Invalid(format!("invalid filters: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| EngineError::Invalid("invalid filters: not an object".into()))?;
        let mut out = Vec::new();
        for (k, vals) in obj {
            match vals {
                Value::Array(a) => {
                    for x in a {
                        out.push((k.clone(), x.as_str().unwrap_or_default().to_owned()));
                    }
                }
                Value::Object(m) => {
                    for x in m.keys() {
                        out.push((k.clone(), x.clone()));
                    }
                }
                _ => {
                    return Err(EngineError::Invalid(format!(
                        "invalid filters: {k} is not a list"
                    )));
                }
            }
        }
        Ok(out)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// `/v1.47/containers/json` → (Some("1.47"), "/containers/json").
fn strip_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let (ver, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if ver.split('.').count() == 2 && ver.split('.').all(|p| p.parse::<u32>().is_ok()) {
            let tail_start = path.len() - tail.len() - 1;
            return (Some(ver), &path[tail_start..]);
        }
    }
    (None, path)
}

fn version_key(v: &str) -> (u32, u32) {
    let (a, b) = v.split_once('.').unwrap_or((v, "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

async fn route(engine: Arc<Engine>, req: Request<Incoming>) -> Response<Body> {
    let raw_path = req.uri().path().to_owned();
    let (version, path) = strip_version(&raw_path);
    if let Some(v) = version {
        if version_key(v) > version_key(API_VERSION) {
            return error_response(&EngineError::Invalid(format!(
                "client version {v} is too new. Maximum supported API version is {API_VERSION}"
            )));
        }
        if version_key(v) < version_key(MIN_API_VERSION) {
            return error_response(&EngineError::Invalid(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, \
                 please upgrade your client to a newer version"
            )));
        }
    }
    let call = Call {
        method: req.method().clone(),
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query: parse_query(req.uri().query()),
    };
    let mut response = match dispatch(&engine, call, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    let h = response.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("bosun/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    response
}

/// Read a JSON body (empty means `{}`), naming what was wrong.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, EngineError> {
    let bytes = read_body(req, MAX_JSON_BODY).await?;
    decode_json(&bytes)
}

fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EngineError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes)
        .map_err(|e| EngineError::Invalid(format!("invalid JSON body: {e}")))
}

/// Everything the server does with a request's bytes before an [`Engine`]
/// is asked anything: the version prefix, the path segments and query, the
/// filters, and the JSON body as the handler of that path decodes and checks
/// it. The fuzz targets in `fuzz/` drive it; it touches no state.
pub(crate) fn decode_request(method: &str, target: &str, body: &[u8]) -> Result<(), EngineError> {
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| EngineError::Invalid(format!("invalid method {method:?}")))?;
    let (path, query) = target
        .split_once('?')
        .map_or((target, None), |(p, q)| (p, Some(q)));
    let (_, path) = strip_version(path);
    let call = Call {
        method,
        segments: path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect(),
        query: parse_query(query),
    };
    call.filters()?;
    call.int("t")?;
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["containers", "create"] => {
            let req: crate::model::CreateRequest = decode_json(body)?;
            check_create_request(&req)?;
            match call.param("name") {
                Some(n) if !crate::volumes::valid_name(n.trim_start_matches('/')) => Err(
                    EngineError::Invalid(format!("invalid container name {n:?}")),
                ),
                _ => Ok(()),
            }
        }
        ["containers", _, "update"] => decode_json::<containers::Update>(body).map(drop),
        ["containers", _, "exec"] => decode_json::<crate::exec::ExecRequest>(body).map(drop),
        ["networks", "create"] => decode_json::<networks::CreateNetwork>(body).map(drop),
        ["networks", _, "connect" | "disconnect"] => {
            decode_json::<networks::Connect>(body).map(drop)
        }
        ["volumes", "create"] => decode_json::<system::VolumeCreate>(body).map(drop),
        _ => Ok(()),
    }
}

/// Write a (possibly large) request body to `path`, refusing more than
/// `limit` bytes (with what the body is); on failure nothing is left.
pub(crate) async fn spool_body(
    req: Request<Incoming>,
    path: &std::path::Path,
    limit: Option<(u64, &str)>,
) -> Result<(), EngineError> {
    use tokio::io::AsyncWriteExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::internal(dir.display(), e))?;
    }
    let result = async {
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| EngineError::internal("store the request body", e))?;
        let mut body = req.into_body();
        let mut total = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| EngineError::Invalid(format!("the body was cut short: {e}")))?;
            if let Ok(data) = frame.into_data() {
                total += data.len() as u64;
                if let Some((max, what)) = limit
                    && total > max
                {
                    return Err(EngineError::Invalid(format!(
                        "{what} is larger than {} GiB",
                        max >> 30
                    )));
                }
                file.write_all(&data)
                    .await
                    .map_err(|e| EngineError::internal("store the request body", e))?;
            }
        }
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

pub(crate) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, EngineError> {
    let limited = http_body_util::Limited::new(req.into_body(), limit);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| match e.is::<http_body_util::LengthLimitError>() {
            true => EngineError::TooLarge(format!(
                "the request body is over the limit of {limit} bytes"
            )),
            false => EngineError::Invalid(format!("cannot read the request body: {e}")),
        })
}

/// The checks `Engine::create` makes of a create body before it looks at
/// the image (with an image that contributes nothing).
fn check_create_request(req: &crate::model::CreateRequest) -> Result<(), EngineError> {
    let image = crate::spec::ImageDefaults::default();
    crate::spec::command(&req.config, &image)?;
    crate::spec::capabilities(&req.host_config)?;
    crate::spec::environment(&req.config, &image, "x")?;
    crate::spec::resources(&req.host_config)?;
    crate::network::parse_port_bindings(&req.host_config.port_bindings)?;
    if !req.config.stop_signal.is_empty() {
        bosun_runtime::parse_signal(&req.config.stop_signal)
            .map_err(|e| EngineError::Invalid(format!("StopSignal: {e}")))?;
    }
    Ok(())
}

async fn dispatch(
    engine: &Arc<Engine>,
    call: Call,
    req: Request<Incoming>,
) -> Result<Response<Body>, EngineError> {
    let seg: Vec<&str> = call.segments.iter().map(String::as_str).collect();
    match (call.method.clone(), seg.as_slice()) {
        (Method::GET | Method::HEAD, ["_ping"]) => Ok(system::ping(&call.method)),
        (Method::GET, ["version"]) => Ok(system::version()),
        (Method::GET, ["info"]) => Ok(system::info(engine)),
        (Method::GET, ["events"]) => system::events(engine, &call),
        (Method::GET, ["system", "df"]) => system::df(engine),
        (Method::POST, ["build"]) => build::build(engine, call, req).await,
        (Method::POST, ["commit"]) => {
            let container = call
                .param("container")
                .ok_or_else(|| EngineError::Invalid("commit needs a container".into()))?;
            if call
                .query
                .iter()
                .any(|(k, v)| k == "changes" && !v.is_empty())
            {
                return Err(EngineError::Invalid(
                    "commit --change is not supported: the image gets the container's configuration"
                        .into(),
                ));
            }
            let tag = match (
                call.param("repo").filter(|r| !r.is_empty()),
                call.param("tag"),
            ) {
                (Some(r), Some(t)) if !t.is_empty() => Some(format!("{r}:{t}")),
                (Some(r), _) => Some(r.to_owned()),
                (None, _) => None,
            };
            let tag = tag
                .map(|t| {
                    t.parse()
                        .map_err(|e| EngineError::Invalid(format!("invalid reference {t:?}: {e}")))
                })
                .transpose()?;
            let pause = call.param("pause").is_none_or(|p| p != "0" && p != "false");
            let id = engine.commit(
                container,
                tag,
                call.param("comment").unwrap_or(""),
                call.param("author").unwrap_or(""),
                pause,
            )?;
            Ok(json_response(StatusCode::CREATED, &json!({"Id": id})))
        }
        (_, ["containers", ..]) => containers::dispatch(engine, call, req).await,
        (_, ["exec", ..]) => containers::dispatch_exec(engine, call, req).await,
        (_, ["images", ..]) => system::images(engine, call, req).await,
        (_, ["volumes", ..]) => system::volumes(engine, call, req).await,
        (_, ["networks", ..]) => networks::dispatch(engine, call, req).await,
        _ => Err(call.not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_stripped_and_compared() {
        assert_eq!(
            strip_version("/v1.47/containers/json"),
            (Some("1.47"), "/containers/json")
        );
        assert_eq!(strip_version("/_ping"), (None, "/_ping"));
        assert_eq!(strip_version("/volumes/v1.x"), (None, "/volumes/v1.x"));
        assert!(version_key("1.50") > version_key("1.47"));
        assert!(version_key("1.9") < version_key("1.24"));
    }

    #[test]
    fn queries_decode() {
        let q = parse_query(Some("fromImage=docker.io%2Flibrary%2Fbusybox&tag=latest&a"));
        assert_eq!(
            q[0],
            ("fromImage".into(), "docker.io/library/busybox".into())
        );
        assert_eq!(q[2], ("a".into(), String::new()));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn filters_both_shapes() {
        let call = |f: &str| Call {
            method: Method::GET,
            segments: vec![],
            query: vec![("filters".into(), f.into())],
        };
        let a = call(r#"{"status":["running","exited"]}"#)
            .filters()
            .expect("list");
        assert_eq!(a.len(), 2);
        let b = call(r#"{"label":{"a=b":true}}"#).filters().expect("map");
        assert_eq!(b, vec![("label".to_string(), "a=b".to_string())]);
        assert!(call("[").filters().is_err());
    }
}
