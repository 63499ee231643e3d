//! A small client of the engine's Docker API over its unix socket: hyper's
//! HTTP/1 connection on a tokio `UnixStream`, one connection per request (the
//! CLI makes a handful per invocation, and a hijacked attach or exec owns its
//! connection anyway).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HOST, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Where the engine listens unless `-H` or `BOSUN_HOST` says otherwise.
pub(crate) const DEFAULT_HOST: &str = "unix:///run/bosun/engine.sock";

/// An error the daemon answered with (4xx/5xx and its `message`).
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for ApiError {}

/// The bidirectional stream of a hijacked attach or exec.
pub(crate) type Hijacked = TokioIo<hyper::upgrade::Upgraded>;

#[derive(Debug, Clone)]
pub(crate) struct EngineClient {
    host: String,
    socket: PathBuf,
}

/// Percent-encode a query value or path segment (RFC 3986 unreserved kept).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `path?k=v&…` with the values encoded.
pub(crate) fn with_query(path: &str, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let q: Vec<String> = query
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    format!("{path}?{}", q.join("&"))
}

impl EngineClient {
    /// `unix:///absolute/path` (or a bare absolute path).
    pub(crate) fn new(host: &str) -> Result<Self> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if !path.starts_with('/') {
            bail!("-H {host:?}: only unix:///absolute/path sockets are supported");
        }
        Ok(Self {
            host: host.to_owned(),
            socket: PathBuf::from(path),
        })
    }

    async fn connect(
        &self,
    ) -> Result<(
        hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        tokio::task::JoinHandle<()>,
    )> {
        let stream = UnixStream::connect(&self.socket).await.with_context(|| {
            format!(
                "Cannot connect to the bosun engine at {}. Is the engine running?",
                self.host
            )
        })?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the engine")?;
        // The connection is driven by its own task; `with_upgrades` lets a
        // 101 answer hand the socket over to the caller.
        let driver = tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok((sender, driver))
    }

    fn build(method: Method, path: &str, body: Option<&Value>) -> Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "bosun")
            .header("User-Agent", concat!("bosun/", env!("CARGO_PKG_VERSION")));
        let bytes = match body {
            Some(v) => {
                req = req.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v)?)
            }
            None => Bytes::new(),
        };
        Ok(req.body(Full::new(bytes))?)
    }

    /// Send a request; the response is returned whatever its status.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>> {
        let (mut sender, _driver) = self.connect().await?;
        let req = Self::build(method, path, body)?;
        let resp = sender
            .send_request(req)
            .await
            .context("the engine closed the connection")?;
        Ok(resp)
    }

    /// Send raw bytes (a tar archive); the response whatever its status.
    pub(crate) async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Response<Incoming>> {
        let (mut sender, _driver) = self.connect().await?;
        let mut req = Self::build(method, path, None)?;
        *req.body_mut() = Full::new(body);
        req.headers_mut().insert(
            CONTENT_TYPE,
            hyper::header::HeaderValue::from_str(content_type)?,
        );
        sender
            .send_request(req)
            .await
            .context("the engine closed the connection")
    }

    /// The whole body of a successful answer; an error status becomes `ApiError`.
    pub(crate) async fn bytes(resp: Response<Incoming>) -> Result<Bytes> {
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status.is_client_error() || status.is_server_error() {
            return Err(api_error(status, &bytes).into());
        }
        Ok(bytes)
    }

    /// Send a request whose answer streams; an error status becomes `ApiError`.
    pub(crate) async fn stream(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response<Incoming>> {
        let resp = self.send(method, path, body).await?;
        if resp.status().is_client_error() || resp.status().is_server_error() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            return Err(api_error(status, &bytes).into());
        }
        Ok(resp)
    }

    /// Send a request and read the whole answer: JSON, or `Null` when empty.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let resp = self.stream(method, path, body).await?;
        let bytes = resp.into_body().collect().await?.to_bytes();
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).context("the engine's answer is not JSON")
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(Method::POST, path, body).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// POST with `Upgrade: tcp`; on `101` the connection becomes a raw
    /// bidirectional stream (attach, exec start).
    pub(crate) async fn upgrade(&self, path: &str, body: Option<&Value>) -> Result<Hijacked> {
        let (mut sender, _driver) = self.connect().await?;
        let mut req = Self::build(Method::POST, path, body)?;
        req.headers_mut().insert(
            CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        req.headers_mut()
            .insert(UPGRADE, hyper::header::HeaderValue::from_static("tcp"));
        let resp = sender
            .send_request(req)
            .await
            .context("the engine closed the connection")?;
        match resp.status() {
            StatusCode::SWITCHING_PROTOCOLS => {
                let upgraded = hyper::upgrade::on(resp)
                    .await
                    .context("take over the attached connection")?;
                Ok(TokioIo::new(upgraded))
            }
            status => {
                let bytes = resp.into_body().collect().await?.to_bytes();
                if status.is_success() {
                    bail!("the engine did not upgrade the connection ({status})");
                }
                Err(api_error(status, &bytes).into())
            }
        }
    }
}

fn api_error(status: StatusCode, body: &[u8]) -> ApiError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if text.is_empty() {
                status.to_string()
            } else {
                text
            }
        });
    ApiError { status, message }
}

/// The `ApiError` inside an `anyhow` error, if the daemon answered one.
pub(crate) fn api_status(e: &anyhow::Error) -> Option<&ApiError> {
    e.downcast_ref::<ApiError>()
}

/// Reads a multiplexed stream (8-byte headers: stream, 0, 0, 0, size) in
/// whatever chunks it arrives, yielding whole or partial frame payloads.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    header: Vec<u8>,
    kind: u8,
    left: usize,
}

impl Demux {
    /// Feed bytes; `out(kind, payload)` gets each piece of payload
    /// (kind 1 = stdout, 2 = stderr, 0 = stdin echoed on stdout).
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut impl FnMut(u8, &[u8])) {
        while !data.is_empty() {
            if self.left == 0 {
                let need = 8 - self.header.len();
                let take = need.min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 8 {
                    self.kind = self.header[0];
                    self.left = u32::from_be_bytes([
                        self.header[4],
                        self.header[5],
                        self.header[6],
                        self.header[7],
                    ]) as usize;
                    self.header.clear();
                }
                continue;
            }
            let take = self.left.min(data.len());
            out(self.kind, &data[..take]);
            self.left -= take;
            data = &data[take..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demux_across_chunk_boundaries() {
        let mut wire = vec![1, 0, 0, 0, 0, 0, 0, 3];
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 2]);
        wire.extend_from_slice(b"de");
        for split in 0..wire.len() {
            let mut d = Demux::default();
            let mut got: Vec<(u8, Vec<u8>)> = Vec::new();
            let mut out = |k: u8, b: &[u8]| match got.last_mut() {
                Some((lk, v)) if *lk == k => v.extend_from_slice(b),
                _ => got.push((k, b.to_vec())),
            };
            d.feed(&wire[..split], &mut out);
            d.feed(&wire[split..], &mut out);
            assert_eq!(got, vec![(1, b"abc".to_vec()), (2, b"de".to_vec())]);
        }
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query("/images/create", &[("fromImage", "a/b:c".into())]),
            "/images/create?fromImage=a%2Fb%3Ac"
        );
        assert_eq!(with_query("/x", &[]), "/x");
        assert!(EngineClient::new("tcp://x:1").is_err());
    }
}
