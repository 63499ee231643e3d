//! Hostile HTTP at the socket: path traversal in repository names, upload
//! ids, tags and digests (plain, percent-encoded, NUL), oversized and too
//! many headers, a Content-Range at the end of the number range, clients that
//! trickle their headers or send nothing, and more connections than the server
//! takes at once. Each gets a clean 4xx (or is cut off, or waits) and leaves
//! the data directory exactly as it was.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every path under `dir` with its size (directories as 0): what "changes
/// nothing on disk" is compared on.
fn tree(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            if meta.is_dir() {
                out.insert(rel, 0);
                walk(root, &e.path(), out);
            } else {
                out.insert(rel, meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a fresh connection and returns the status the server answers.
async fn raw(r: &Registry, head: &str, body: &[u8]) -> u16 {
    let addr = r.base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    // A server that refuses early may close before reading the rest.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{head:?}: no status in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_in_names_ids_tags_and_digests_is_refused_and_writes_nothing() {
    let r = start().await;
    let c = client();
    let digest = push_blob(&c, &r, "app", b"{}").await;
    // An upload in progress, whose id a traversal might try to reach.
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    let before = tree(r.dir.path());
    for (method, path) in [
        ("GET", "/v2/../../etc/tags/list"),
        ("GET", "/v2/app/../other/tags/list"),
        ("POST", "/v2/%2e%2e/%2e%2e/x/blobs/uploads/"),
        ("POST", "/v2/app%2f..%2f..%2fx/blobs/uploads/"),
        ("POST", "/v2/app%00x/blobs/uploads/"),
        ("POST", "/v2/./app/blobs/uploads/"),
        ("GET", "/v2/app/blobs/uploads/..%2f..%2fblobs"),
        ("PATCH", "/v2/app/blobs/uploads/../../../etc"),
        ("PUT", "/v2/app/blobs/uploads/%2e%2e?digest=sha256:0"),
        ("DELETE", "/v2/app/blobs/uploads/.."),
        ("PUT", "/v2/app/manifests/..%2f..%2fx"),
        ("PUT", "/v2/app/manifests/a%00b"),
        ("GET", "/v2/app/manifests/.."),
        ("GET", "/v2/app/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd"),
        ("DELETE", "/v2/app/blobs/sha256%3a..%2f..%2fx"),
        ("GET", &format!("/v2/app/blobs/{digest}%00")),
    ] {
        let status = raw(
            &r,
            &format!("{method} {path} HTTP/1.1\r\nContent-Length: 2"),
            b"{}",
        )
        .await;
        assert!((400..500).contains(&status), "{method} {path}: {status}");
    }
    // The upload is reachable from its own repository only.
    let other = location.replacen("/app/", "/other/", 1);
    let status = raw(&r, &format!("GET {other} HTTP/1.1"), b"").await;
    assert_eq!(status, 404, "an upload reached through another repository");
    assert_eq!(
        tree(r.dir.path()),
        before,
        "a refused request changed the data directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_too_many_headers_are_431() {
    let r = start().await;
    let before = tree(r.dir.path());
    let many: String = (0..200).map(|i| format!("\r\nX-H{i}: v")).collect();
    let status = raw(
        &r,
        &format!("POST /v2/app/blobs/uploads/ HTTP/1.1{many}"),
        b"",
    )
    .await;
    assert_eq!(status, 431, "200 headers");
    let big = format!(
        "POST /v2/app/blobs/uploads/ HTTP/1.1\r\nX-Big: {}",
        "a".repeat(1 << 20)
    );
    assert_eq!(raw(&r, &big, b"").await, 431, "a 1 MiB header");
    let long = format!("GET /v2/{}/tags/list HTTP/1.1", "a/".repeat(64 << 10));
    let status = raw(&r, &long, b"").await;
    assert!((400..500).contains(&status), "a 128 KiB path: {status}");
    assert_eq!(tree(r.dir.path()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_range_at_the_end_of_u64_is_refused() {
    let r = start().await;
    let c = client();
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    let before = tree(r.dir.path());
    for range in ["0-18446744073709551615", "bytes 0-18446744073709551615/*"] {
        let head =
            format!("PATCH {location} HTTP/1.1\r\nContent-Range: {range}\r\nContent-Length: 1");
        let status = raw(&r, &head, b"x").await;
        assert!((400..500).contains(&status), "{range}: {status}");
    }
    assert_eq!(tree(r.dir.path()), before);
    let resp = c.get(r.url(&location)).send().await.unwrap();
    assert_eq!(header(&resp, "range"), "0-0", "the upload is still empty");
}

/// Reads until the server closes the connection (or sends an answer and
/// closes it); panics if it has not after `PATIENCE`, a hang guard.
async fn closed_by_server(s: &mut tokio::net::tcp::OwnedReadHalf) {
    const PATIENCE: Duration = Duration::from_secs(300);
    let mut buf = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server cut the slow client off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_and_do_not_block_others() {
    let r = start().await;
    let addr = r.base.trim_start_matches("http://").to_owned();
    // Slowloris: a request line, then header bytes one at a time, forever.
    let (mut slow_read, mut slow_write) = TcpStream::connect(&addr).await.unwrap().into_split();
    let trickle = tokio::spawn(async move {
        slow_write
            .write_all(b"GET /v2/ HTTP/1.1\r\n")
            .await
            .unwrap();
        for b in b"X-Slow: 1\r\n".iter().cycle() {
            if slow_write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // And a client that connects and says nothing.
    let (mut idle_read, _idle_write) = TcpStream::connect(&addr).await.unwrap().into_split();
    // Others are served meanwhile.
    let c = client();
    for _ in 0..3 {
        let resp = c.get(r.url("/v2/")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    tokio::join!(
        closed_by_server(&mut slow_read),
        closed_by_server(&mut idle_read)
    );
    trickle.abort();
    let resp = c.get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_a_place_frees() {
    let r = start_with(Options {
        max_connections: 2,
        ..Options::default()
    })
    .await;
    let addr = r.base.trim_start_matches("http://").to_owned();
    // Two clients that say nothing hold both places (the kernel hands
    // connections to accept in the order they came).
    let first = TcpStream::connect(&addr).await.unwrap();
    let second = TcpStream::connect(&addr).await.unwrap();
    let call = raw(&r, "GET /v2/ HTTP/1.1", b"");
    tokio::pin!(call);
    // A slow machine could only make this look pass without a limit, never
    // fail with one; the answer after a place frees is the real check.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut call)
            .await
            .is_err(),
        "a third connection was served while two held the only places"
    );
    drop(first);
    let status = tokio::time::timeout(Duration::from_secs(300), call)
        .await
        .expect("served once a place was free");
    assert_eq!(status, 200);
    drop(second);
    assert_eq!(raw(&r, "GET /v2/ HTTP/1.1", b"").await, 200);
}
