//! The registry's blob upload state machine, driven over HTTP/1.1 through an
//! in-memory pipe to the real server, against a model of what every upload
//! holds. Each input is a sequence of operations: start an upload, send a
//! chunk at the right offset, send a chunk with a fuzzed Content-Range, ask
//! for the status, finish with the right or a wrong digest, cancel, reach an
//! upload through another repository, or send a request with a fuzzed
//! method and path. Checked: no response is a 5xx, the length the server
//! reports is the model's, an upload is reachable only from its repository,
//! a finished blob reads back byte for byte, and a wrong digest stores nothing.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest as _, Sha256};

struct Env {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    handler: std::sync::Arc<bosun_registry::fuzzing::Handler>,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let handler = bosun_registry::fuzzing::Handler::open(dir.path()).expect("open storage");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Env {
            _dir: dir,
            rt,
            handler: std::sync::Arc::new(handler),
        }
    })
}

const REPOS: [&str; 2] = ["fuzz/a", "b"];

struct Upload {
    repo: &'static str,
    location: String,
    data: Vec<u8>,
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

struct Reply {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn send(
    tx: &mut SendRequest<Full<Bytes>>,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Option<Reply> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "fuzz");
    for (k, v) in headers {
        b = b.header(*k, v);
    }
    let req = b.body(Full::new(Bytes::from(body))).ok()?;
    tx.ready().await.ok()?;
    let resp = tx.send_request(req).await.expect("the server answers");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("the body arrives").to_bytes();
    assert!(
        !parts.status.is_server_error(),
        "{uri}: {} {}",
        parts.status,
        String::from_utf8_lossy(&body)
    );
    Some(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn range_of(r: &Reply) -> String {
    r.headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn expected_range(len: usize) -> String {
    format!("0-{}", len.saturating_sub(1))
}

fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

async fn run(data: &[u8]) {
    let env = env();
    let (client, server) = tokio::io::duplex(64 << 10);
    let handler = env.handler.clone();
    let served = tokio::spawn(async move { handler.serve(server).await });
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .expect("handshake");
    let conn = tokio::spawn(conn);
    let mut input = Input(data);
    let mut uploads: Vec<Upload> = Vec::new();
    while let Some(op) = input.byte() {
        let pick = input.byte().unwrap_or(0);
        match op % 9 {
            0 => {
                let repo = REPOS[usize::from(pick) % REPOS.len()];
                let Some(r) = send(
                    &mut tx,
                    Method::POST,
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    vec![],
                )
                .await
                else {
                    break;
                };
                assert_eq!(r.status, StatusCode::ACCEPTED);
                let location = r.headers["location"].to_str().expect("location").to_owned();
                uploads.push(Upload {
                    repo,
                    location,
                    data: Vec::new(),
                });
            }
            _ if uploads.is_empty() => {}
            1 => {
                let n = uploads.len();
                let u = &mut uploads[usize::from(pick) % n];
                let chunk = input.bytes(usize::from(pick % 32) + 1).to_vec();
                if chunk.is_empty() {
                    continue;
                }
                let start = u.data.len();
                let range = format!("{start}-{}", start + chunk.len() - 1);
                let headers = [
                    ("content-range", range),
                    ("content-length", chunk.len().to_string()),
                ];
                let Some(r) = send(
                    &mut tx,
                    Method::PATCH,
                    &u.location.clone(),
                    &headers,
                    chunk.clone(),
                )
                .await
                else {
                    break;
                };
                assert_eq!(
                    r.status,
                    StatusCode::ACCEPTED,
                    "{}",
                    String::from_utf8_lossy(&r.body)
                );
                u.data.extend_from_slice(&chunk);
                assert_eq!(range_of(&r), expected_range(u.data.len()));
            }
            2 => {
                let i = usize::from(pick) % uploads.len();
                let n = usize::from(input.byte().unwrap_or(0) % 40);
                let Ok(range) = std::str::from_utf8(input.bytes(n)) else {
                    continue;
                };
                let range = range.to_owned();
                let len = usize::from(input.byte().unwrap_or(0) % 16);
                let chunk = input.bytes(len).to_vec();
                let location = uploads[i].location.clone();
                let headers = [("content-range", range)];
                let Some(r) =
                    send(&mut tx, Method::PATCH, &location, &headers, chunk.clone()).await
                else {
                    continue;
                };
                if r.status == StatusCode::ACCEPTED {
                    uploads[i].data.extend_from_slice(&chunk);
                }
                if r.status.is_success() {
                    assert_eq!(range_of(&r), expected_range(uploads[i].data.len()));
                }
            }
            3 => {
                let u = &uploads[usize::from(pick) % uploads.len()];
                let Some(r) = send(&mut tx, Method::GET, &u.location.clone(), &[], vec![]).await
                else {
                    break;
                };
                assert_eq!(r.status, StatusCode::NO_CONTENT);
                assert_eq!(
                    range_of(&r),
                    expected_range(u.data.len()),
                    "the server's length is the model's"
                );
            }
            4 | 5 => {
                let u = uploads.remove(usize::from(pick) % uploads.len());
                let right = op % 9 == 4;
                let digest = if right {
                    digest_of(&u.data)
                } else {
                    digest_of(&[&u.data[..], b"x"].concat())
                };
                let uri = format!("{}?digest={digest}", u.location);
                let Some(r) = send(&mut tx, Method::PUT, &uri, &[], vec![]).await else {
                    break;
                };
                let blob = format!("/v2/{}/blobs/{digest}", u.repo);
                let Some(got) = send(&mut tx, Method::GET, &blob, &[], vec![]).await else {
                    break;
                };
                if right {
                    assert_eq!(r.status, StatusCode::CREATED);
                    assert_eq!(got.status, StatusCode::OK);
                    assert_eq!(
                        &got.body[..],
                        &u.data[..],
                        "the blob reads back as uploaded"
                    );
                } else {
                    assert_eq!(r.status, StatusCode::BAD_REQUEST);
                    assert_eq!(
                        got.status,
                        StatusCode::NOT_FOUND,
                        "a wrong digest stored something"
                    );
                }
                let Some(after) = send(&mut tx, Method::GET, &u.location, &[], vec![]).await else {
                    break;
                };
                assert_eq!(
                    after.status,
                    StatusCode::NOT_FOUND,
                    "a finished upload is gone"
                );
            }
            6 => {
                let u = uploads.remove(usize::from(pick) % uploads.len());
                let Some(r) = send(&mut tx, Method::DELETE, &u.location, &[], vec![]).await else {
                    break;
                };
                assert_eq!(r.status, StatusCode::NO_CONTENT);
                let Some(after) = send(&mut tx, Method::GET, &u.location, &[], vec![]).await else {
                    break;
                };
                assert_eq!(after.status, StatusCode::NOT_FOUND);
            }
            7 => {
                let u = &uploads[usize::from(pick) % uploads.len()];
                let other = REPOS.iter().find(|r| **r != u.repo).expect("two repos");
                let uri = u.location.replacen(u.repo, other, 1);
                let Some(r) = send(&mut tx, Method::GET, &uri, &[], vec![]).await else {
                    break;
                };
                assert_eq!(
                    r.status,
                    StatusCode::NOT_FOUND,
                    "an upload is reachable from another repository"
                );
            }
            _ => {
                const METHODS: [Method; 5] = [
                    Method::GET,
                    Method::HEAD,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ];
                let method = METHODS[usize::from(pick) % METHODS.len()].clone();
                let n = usize::from(input.byte().unwrap_or(0) % 64);
                let Ok(tail) = std::str::from_utf8(input.bytes(n)) else {
                    continue;
                };
                let u = &uploads[0];
                let uri = format!("{}{tail}", u.location);
                // May change an upload: resynchronise the model from the status.
                if send(&mut tx, method, &uri, &[], vec![]).await.is_none() {
                    continue;
                }
                let location = u.location.clone();
                let Some(r) = send(&mut tx, Method::GET, &location, &[], vec![]).await else {
                    break;
                };
                if r.status == StatusCode::NOT_FOUND {
                    uploads.remove(0);
                } else {
                    assert_eq!(r.status, StatusCode::NO_CONTENT);
                    let len = uploads[0].data.len();
                    let range = range_of(&r);
                    assert!(
                        range == expected_range(len),
                        "status {range} for a model of {len} bytes after {uri}"
                    );
                }
            }
        }
    }
    // Uploads left open are cancelled, so the storage does not grow across runs.
    for u in uploads {
        let _ = send(&mut tx, Method::DELETE, &u.location, &[], vec![]).await;
    }
    drop(tx);
    let _ = conn.await;
    let _ = served.await;
}

fuzz_target!(|data: &[u8]| {
    env().rt.block_on(run(data));
});
