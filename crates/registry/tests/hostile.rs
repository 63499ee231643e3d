//! Hostile and broken input: wrong digests, cut-off uploads, oversized and
//! invalid manifests, bad names, references to blobs that are not there.
//! Each must be refused with the spec's error code and leave nothing behind.

mod common;

use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_mismatch_stores_nothing() {
    let r = start().await;
    let c = client();
    let claimed = sha256(b"what the client says");

    // Monolithic POST.
    let resp = c
        .post(r.url(&format!("/v2/app/blobs/uploads/?digest={claimed}")))
        .body(noise(2 << 20, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");

    // Chunked, then the closing PUT.
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    c.patch(r.url(&location))
        .body(noise(1 << 20, 2))
        .send()
        .await
        .unwrap();
    let resp = c
        .put(r.url(&format!("{location}?digest={claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");

    let resp = c
        .head(r.url(&format!("/v2/app/blobs/{claimed}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(
        r.blob_files().is_empty(),
        "no blob and no temp file: {:?}",
        r.blob_files()
    );
    assert_eq!(r.uploads(), 0, "the failed upload is discarded");

    // A PUT without a digest, or with a malformed one.
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    let resp = c.put(r.url(&location)).send().await.unwrap();
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let resp = c
        .put(r.url(&format!("{location}?digest=sha256:short")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
}

/// A monolithic upload whose connection ends before its Content-Length:
/// nothing becomes visible and no temp file stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_upload_stores_nothing() {
    let r = start().await;
    let data = noise(2 << 20, 3);
    let digest = sha256(&data);
    let addr = r.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v2/app/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Length: {}\r\n\r\n",
        data.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..data.len() / 2]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 201"),
        "a cut-off upload must not be created: {answer}"
    );
    // The writer thread finishes after the connection: wait for its cleanup.
    for _ in 0..50 {
        if r.blob_files().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        r.blob_files().is_empty(),
        "left behind: {:?}",
        r.blob_files()
    );
    let resp = client()
        .head(r.url(&format!("/v2/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_manifest_is_refused_with_its_limit() {
    let r = start().await;
    let c = client();
    let padding = "x".repeat(4 << 20);
    let big = image_manifest(
        b"{}",
        &[],
        &format!(r#","annotations":{{"pad":"{padding}"}}"#),
    );
    let resp = put_manifest(&c, &r, "app", "big", OCI_MANIFEST, &big).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_INVALID");
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("4194304"), "names the limit: {message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_tags_and_references() {
    let r = start().await;
    let c = client();
    for path in [
        "/v2/UPPER/tags/list",
        "/v2/a..b/tags/list",
        "/v2/a//b/tags/list",
        "/v2/-a/blobs/uploads/",
        "/v2/a%2F..%2Fb/tags/list",
    ] {
        let resp = c.get(r.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(error_code(resp).await, "NAME_INVALID", "{path}");
    }
    let long = format!("/v2/{}/tags/list", "a".repeat(300));
    let resp = c.get(r.url(&long)).send().await.unwrap();
    assert_eq!(error_code(resp).await, "NAME_INVALID");

    push_blob(&c, &r, "app", b"{}").await;
    let m = image_manifest(b"{}", &[], "");
    for tag in [".hidden", "-dash", "a%2Fb", &"t".repeat(129)] {
        let resp = put_manifest(&c, &r, "app", tag, OCI_MANIFEST, &m).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{tag}");
    }
    // A digest reference must match the content.
    let resp = put_manifest(&c, &r, "app", &sha256(b"other"), OCI_MANIFEST, &m).await;
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
    let resp = c.get(r.url("/v2/app/blobs/md5:abc")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "DIGEST_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_referencing_missing_blobs() {
    let r = start().await;
    let c = client();
    push_blob(&c, &r, "app", b"{}").await;
    let m = image_manifest(b"{}", &[b"never pushed", b"nor this"], "");
    let resp = put_manifest(&c, &r, "app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "one error per missing blob: {body}");
    for (e, layer) in errors.iter().zip([&b"never pushed"[..], b"nor this"]) {
        assert_eq!(e["code"], "MANIFEST_BLOB_UNKNOWN");
        assert_eq!(e["detail"]["digest"], sha256(layer));
    }
    let resp = c.get(r.url("/v2/app/manifests/v1")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "nothing was tagged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_manifests() {
    let r = start().await;
    let c = client();
    push_blob(&c, &r, "app", b"{}").await;
    let good = image_manifest(b"{}", &[], "");
    let wrong_size = good.replace(r#""size":2"#, r#""size":3"#);
    let schema1 = r#"{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}"#;
    for (what, media_type, body) in [
        ("not JSON", OCI_MANIFEST, "{nope"),
        ("a JSON array", OCI_MANIFEST, "[]"),
        (
            "schema 1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            schema1,
        ),
        ("type mismatch", OCI_INDEX, good.as_str()),
        ("size mismatch", OCI_MANIFEST, wrong_size.as_str()),
    ] {
        let resp = put_manifest(&c, &r, "app", "v1", media_type, body).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(error_code(resp).await, "MANIFEST_INVALID", "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_methods_and_unknown_things() {
    let r = start().await;
    let c = client();
    let resp = c.put(r.url("/v2/app/tags/list")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(resp).await, "UNSUPPORTED");
    let resp = c
        .delete(r.url(&format!("/v2/app/blobs/{}", sha256(b"x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");
    let resp = c
        .delete(r.url("/v2/app/manifests/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
}
