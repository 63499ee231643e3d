//! HTTP plumbing: the response body (whole, or a stream of watch events),
//! query strings, content negotiation, and Status responses.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use bosun_api::Status;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;

/// A response body: bytes in memory, or watch events as they come.
#[derive(Debug)]
pub(crate) enum Body {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

pub(crate) type Resp = Response<Body>;

pub(crate) const JSON: &str = "application/json";
pub(crate) const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

pub(crate) fn json_response(code: u16, content_type: &str, body: &Value) -> Resp {
    let mut bytes = serde_json::to_vec(body).expect("a Value always serializes");
    bytes.push(b'\n');
    let mut resp = Response::new(Body::Full(Some(bytes.into())));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON)),
    );
    resp
}

/// A response of bytes already encoded as `content_type`.
pub(crate) fn bytes_response(code: u16, content_type: &str, body: Vec<u8>) -> Resp {
    let mut resp = Response::new(Body::Full(Some(body.into())));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static(JSON)),
    );
    resp
}

pub(crate) fn ok(body: &Value) -> Resp {
    json_response(200, JSON, body)
}

pub(crate) fn status_response(status: &Status) -> Resp {
    json_response(status.code(), JSON, &status.to_json())
}

pub(crate) fn text(code: u16, body: &'static str) -> Resp {
    let mut resp = Response::new(Body::Full(Some(Bytes::from_static(body.as_bytes()))));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn text_owned(code: u16, body: String) -> Resp {
    let mut resp = Response::new(Body::Full(Some(Bytes::from(body))));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    resp
}

/// Query parameters, percent-decoded; empty pairs (`?&limit=5`) are skipped.
#[derive(Debug, Default)]
pub(crate) struct Query(HashMap<String, String>);

impl Query {
    pub(crate) fn parse(q: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for pair in q.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(k), decode(v));
        }
        Query(map)
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A parameter that is present and not empty.
    pub(crate) fn non_empty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "True"))
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

/// `%XX` and `+` decoding; invalid escapes are kept as they are.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Whether the client asked for a `meta.k8s.io/v1` Table (kubectl's `get`).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get("accept").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|media| {
        let params: Vec<&str> = media.split(';').map(str::trim).collect();
        params.first() == Some(&JSON)
            && params.contains(&"as=Table")
            && params.contains(&"g=meta.k8s.io")
            && (params.contains(&"v=v1") || params.contains(&"v=v1beta1"))
    })
}

/// The media type of a request body, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = Query::parse(Some(
            "&labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&&limit=",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        assert_eq!(q.non_empty("limit"), None);
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
        assert_eq!(Query::parse(None).get("a"), None);
    }

    #[test]
    fn table_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            "accept",
            HeaderValue::from_static(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
            ),
        );
        assert!(wants_table(&h));
        h.insert("accept", HeaderValue::from_static("application/json"));
        assert!(!wants_table(&h));
    }
}
