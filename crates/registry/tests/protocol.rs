//! The distribution protocol, endpoint by endpoint, against an in-process
//! server on a loopback port.

mod common;

use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_with_the_api_version() {
    let r = start().await;
    let resp = client().get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    let resp = client()
        .get(r.url("/v2/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_post_then_head_and_get() {
    let r = start().await;
    let c = client();
    let data = noise(3 << 20, 1);
    let digest = push_blob(&c, &r, "team/app", &data).await;

    let resp = c
        .head(r.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), data.len().to_string());
    assert_eq!(header(&resp, "docker-content-digest"), digest);

    let resp = c
        .get(r.url(&format!("/v2/team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), data);

    // Blobs are per repository: another name does not see it.
    let resp = c
        .head(r.url(&format!("/v2/other/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = c
        .get(r.url(&format!("/v2/other/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, "BLOB_UNKNOWN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_then_put_with_the_whole_blob() {
    let r = start().await;
    let c = client();
    let data = noise(100_000, 2);
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location = header(&resp, "location");
    let uuid = header(&resp, "docker-upload-uuid");
    assert!(
        location.ends_with(&uuid),
        "{location} names the upload {uuid}"
    );
    assert_eq!(header(&resp, "range"), "0-0");

    let resp = c
        .put(r.url(&format!("{location}?digest={}", sha256(&data))))
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/app/blobs/{}", sha256(&data))
    );
    assert_eq!(r.uploads(), 0, "the upload is gone once committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upload_in_order_out_of_order_and_status() {
    let r = start().await;
    let c = client();
    let data = noise(300_000, 3);
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let mut location = header(&resp, "location");
    let chunks = [(0usize, 100_000usize), (100_000, 250_000)];
    for (start, end) in chunks {
        let resp = c
            .patch(r.url(&location))
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("{start}-{}", end - 1))
            .body(data[start..end].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), format!("0-{}", end - 1));
        location = header(&resp, "location");
    }

    // A chunk that does not start where the upload ends is refused with the
    // current range, and changes nothing.
    let resp = c
        .patch(r.url(&location))
        .header("Content-Range", "260000-299999")
        .body(data[260_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "range"), "0-249999");
    assert_eq!(header(&resp, "location"), location);

    let resp = c.get(r.url(&location)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-249999");

    // The last chunk rides on the closing PUT.
    let resp = c
        .put(r.url(&format!("{location}?digest={}", sha256(&data))))
        .header("Content-Range", "250000-299999")
        .body(data[250_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = c
        .get(r.url(&format!("/v2/app/blobs/{}", sha256(&data))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_patch_without_content_range_then_empty_put() {
    let r = start().await;
    let c = client();
    let data = noise(2 << 20, 4);
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    let resp = c
        .patch(r.url(&location))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), format!("0-{}", data.len() - 1));
    let resp = c
        .put(r.url(&format!(
            "{}?digest={}",
            header(&resp, "location"),
            sha256(&data)
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_requests_get_partial_content() {
    let r = start().await;
    let c = client();
    let data = noise(2_500_000, 5);
    let digest = push_blob(&c, &r, "app", &data).await;
    let url = r.url(&format!("/v2/app/blobs/{digest}"));
    for (range, lo, hi) in [
        ("bytes=10-19", 10usize, 20usize),
        ("bytes=2000000-", 2_000_000, data.len()),
        ("bytes=-100", data.len() - 100, data.len()),
        // Across the server's 1 MiB read chunks.
        ("bytes=1048570-1048600", 1_048_570, 1_048_601),
    ] {
        let resp = c.get(&url).header("Range", range).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes {lo}-{}/{}", hi - 1, data.len())
        );
        assert_eq!(resp.bytes().await.unwrap(), data[lo..hi], "{range}");
    }
    let resp = c
        .get(&url)
        .header("Range", format!("bytes={}-", data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&resp, "content-range"),
        format!("bytes */{}", data.len())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_upload_is_gone() {
    let r = start().await;
    let c = client();
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");
    c.patch(r.url(&location))
        .body(vec![1u8; 1000])
        .send()
        .await
        .unwrap();
    let resp = c.delete(r.url(&location)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c.get(r.url(&location)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(r.uploads(), 0);
    // An upload id is only valid in its own repository, and made-up ids are unknown.
    let resp = c.post(r.url("/v2/a/blobs/uploads/")).send().await.unwrap();
    let location = header(&resp, "location").replace("/v2/a/", "/v2/b/");
    let resp = c.get(r.url(&location)).send().await.unwrap();
    assert_eq!(error_code(resp).await, "BLOB_UPLOAD_UNKNOWN");
    let resp = c
        .get(r.url("/v2/a/blobs/uploads/../../etc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_repository_mount() {
    let r = start().await;
    let c = client();
    let digest = push_blob(&c, &r, "source", b"shared layer").await;
    let resp = c
        .post(r.url(&format!(
            "/v2/target/blobs/uploads/?mount={digest}&from=source"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/target/blobs/{digest}")
    );
    let resp = c
        .head(r.url(&format!("/v2/target/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Not in the source repository: an ordinary upload starts instead.
    let resp = c
        .post(r.url(&format!(
            "/v2/third/blobs/uploads/?mount={digest}&from=nowhere"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "location").starts_with("/v2/third/blobs/uploads/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_by_tag_and_digest_are_stored_byte_for_byte() {
    let r = start().await;
    let c = client();
    push_blob(&c, &r, "app", b"{}").await;
    push_blob(&c, &r, "app", b"layer one").await;
    // Odd spacing: the stored bytes, not a re-serialisation, must come back.
    let manifest = image_manifest(b"{}", &[b"layer one"], "").replace(",", ",  ");
    let digest = sha256(manifest.as_bytes());
    let resp = put_manifest(&c, &r, "app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/app/manifests/{digest}")
    );

    for reference in ["v1", digest.as_str()] {
        let resp = c
            .get(r.url(&format!("/v2/app/manifests/{reference}")))
            .header("Accept", OCI_MANIFEST)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(resp.text().await.unwrap(), manifest);
        let resp = c
            .head(r.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), manifest.len().to_string());
    }

    // A Docker schema 2 manifest keeps its media type.
    let docker = image_manifest(b"{}", &[b"layer one"], "")
        .replace(
            OCI_MANIFEST,
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .replace(OCI_CONFIG, "application/vnd.docker.container.image.v1+json");
    let docker_type = "application/vnd.docker.distribution.manifest.v2+json";
    let resp = put_manifest(&c, &r, "app", "docker", docker_type, &docker).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = c
        .get(r.url("/v2/app/manifests/docker"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "content-type"), docker_type);

    // An index over the two manifests; then one over a manifest the
    // repository does not have.
    let entry = |d: &str, size: usize, t: &str| {
        format!(
            r#"{{"mediaType":"{t}","size":{size},"digest":"{d}","platform":{{"architecture":"amd64","os":"linux"}}}}"#
        )
    };
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{},{}]}}"#,
        entry(&digest, manifest.len(), OCI_MANIFEST),
        entry(&sha256(docker.as_bytes()), docker.len(), docker_type)
    );
    let resp = put_manifest(&c, &r, "app", "multi", OCI_INDEX, &index).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let missing = sha256(b"no such manifest");
    let bad_index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entry(&missing, 10, OCI_MANIFEST)
    );
    let resp = put_manifest(&c, &r, "app", "bad", OCI_INDEX, &bad_index).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(error_code(resp).await, "MANIFEST_BLOB_UNKNOWN");

    // Delete a tag, then the manifest by digest: its other tags go too.
    let resp = c
        .delete(r.url("/v2/app/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    put_manifest(&c, &r, "app", "v1-again", OCI_MANIFEST, &manifest).await;
    let resp = c
        .delete(r.url(&format!("/v2/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for reference in ["v1", "v1-again", digest.as_str(), "multi"] {
        let resp = c
            .get(r.url(&format!("/v2/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{reference}");
        assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
    }
    let tags: serde_json::Value = c
        .get(r.url("/v2/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!(["docker"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_catalog_paginate_with_link_headers() {
    let r = start().await;
    let c = client();
    for repo in ["b/two", "a/one", "c"] {
        push_blob(&c, &r, repo, b"{}").await;
        let m = image_manifest(b"{}", &[], "");
        for tag in ["v3", "v1", "latest", "v2"] {
            let resp = put_manifest(&c, &r, repo, tag, OCI_MANIFEST, &m).await;
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
    }
    let resp = c.get(r.url("/v2/a/one/tags/list")).send().await.unwrap();
    assert!(resp.headers().get("link").is_none());
    let all: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(all["name"], "a/one");
    assert_eq!(all["tags"], serde_json::json!(["latest", "v1", "v2", "v3"]));

    let resp = c
        .get(r.url("/v2/a/one/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "link"),
        "</v2/a/one/tags/list?n=2&last=v1>; rel=\"next\""
    );
    let page: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["latest", "v1"]));
    let resp = c
        .get(r.url("/v2/a/one/tags/list?n=2&last=v1"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("link").is_none(), "last page");
    let page: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["v2", "v3"]));
    let page: serde_json::Value = c
        .get(r.url("/v2/a/one/tags/list?n=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["tags"], serde_json::json!([]));

    let resp = c.get(r.url("/v2/nope/tags/list")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(resp).await, "NAME_UNKNOWN");

    let all: serde_json::Value = c
        .get(r.url("/v2/_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all["repositories"],
        serde_json::json!(["a/one", "b/two", "c"])
    );
    let resp = c.get(r.url("/v2/_catalog?n=1")).send().await.unwrap();
    assert_eq!(
        header(&resp, "link"),
        "</v2/_catalog?n=1&last=a/one>; rel=\"next\""
    );
    let page: serde_json::Value = c
        .get(r.url("/v2/_catalog?n=5&last=a/one"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["repositories"], serde_json::json!(["b/two", "c"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_list_manifests_with_a_subject() {
    let r = start().await;
    let c = client();
    push_blob(&c, &r, "app", b"{}").await;
    let subject = image_manifest(b"{}", &[], "");
    let subject_digest = sha256(subject.as_bytes());
    put_manifest(&c, &r, "app", "v1", OCI_MANIFEST, &subject).await;
    let subject_field = format!(
        r#","subject":{{"mediaType":"{OCI_MANIFEST}","size":{},"digest":"{subject_digest}"}}"#,
        subject.len()
    );
    let mut pushed = Vec::new();
    for (kind, note) in [
        ("application/x-sbom", "a"),
        ("application/x-signature", "b"),
    ] {
        let extra =
            format!(r#","artifactType":"{kind}","annotations":{{"note":"{note}"}}{subject_field}"#);
        let m = image_manifest(b"{}", &[], &extra);
        let d = sha256(m.as_bytes());
        let resp = put_manifest(&c, &r, "app", &d, OCI_MANIFEST, &m).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), subject_digest);
        pushed.push((d, kind, m.len()));
    }
    let resp = c
        .get(r.url(&format!("/v2/app/referrers/{subject_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let index: serde_json::Value = resp.json().await.unwrap();
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for entry in listed {
        let (_, kind, size) = pushed
            .iter()
            .find(|(d, _, _)| entry["digest"] == d.as_str())
            .expect("a pushed referrer");
        assert_eq!(entry["artifactType"], *kind);
        assert_eq!(entry["size"], *size as u64);
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert!(entry["annotations"]["note"].is_string());
    }

    let resp = c
        .get(r.url(&format!(
            "/v2/app/referrers/{subject_digest}?artifactType=application/x-signature"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "oci-filters-applied"), "artifactType");
    let index: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(index["manifests"][0]["digest"], pushed[1].0.as_str());

    // Nothing refers to this one: an empty index, never a 404.
    let resp = c
        .get(r.url(&format!("/v2/app/referrers/{}", sha256(b"x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let index: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(index["manifests"], serde_json::json!([]));
    let resp = c
        .get(r.url("/v2/app/referrers/sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// A client that goes away in the middle of a chunk leaves what it sent;
/// the status says how much, and the upload resumes from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_resumes_after_a_dropped_connection() {
    let r = start().await;
    let c = client();
    let data = noise(3 << 20, 6);
    let resp = c
        .post(r.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let location = header(&resp, "location");

    let sent = 1_500_000;
    let addr = r.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 0-{}\r\nContent-Length: {}\r\n\r\n",
        data.len() - 1,
        data.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&data[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream.shutdown().await.unwrap();
    // The server answers (or just closes) once it sees the end of the stream.
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink).await;
    drop(stream);

    let mut range = String::new();
    for _ in 0..50 {
        let resp = c.get(r.url(&location)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        range = header(&resp, "range");
        if range == format!("0-{}", sent - 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(range, format!("0-{}", sent - 1), "the bytes received stay");

    let resp = c
        .patch(r.url(&location))
        .header("Content-Range", format!("{sent}-{}", data.len() - 1))
        .body(data[sent..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = c
        .put(r.url(&format!("{location}?digest={}", sha256(&data))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = c
        .get(r.url(&format!("/v2/app/blobs/{}", sha256(&data))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
}

/// Pushes of the same blob at once: each completes, and the stored blob is
/// whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_the_same_blob() {
    let r = start().await;
    let data = noise(4 << 20, 7);
    let digest = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (url, data, digest) = (
            r.url(&format!("/v2/repo{i}/blobs/uploads/")),
            data.clone(),
            digest.clone(),
        );
        let base = r.base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let resp = c.post(&url).send().await.unwrap();
            let location = header(&resp, "location");
            let resp = c
                .put(format!("{base}{location}?digest={digest}"))
                .body(data)
                .send()
                .await
                .unwrap();
            resp.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    let got = client()
        .get(r.url(&format!("/v2/repo3/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&got), digest);
    assert_eq!(r.blob_files(), [digest.trim_start_matches("sha256:")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_a_bcrypt_htpasswd_file() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let r = start_with(Options {
        htpasswd: Some(htpasswd),
        ..Options::default()
    })
    .await;
    let c = client();
    let resp = c.get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, "www-authenticate"),
        "Basic realm=\"bosun-registry\""
    );
    assert_eq!(error_code(resp).await, "UNAUTHORIZED");
    let resp = c
        .get(r.url("/v2/_catalog"))
        .basic_auth("alice", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        // The second time comes from the verified-credentials cache.
        let resp = c
            .get(r.url("/v2/_catalog"))
            .basic_auth("alice", Some("s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_certificate_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A server certificate, not a CA one (which rustls refuses to serve).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl (Debian package openssl) makes the test certificate");
    assert!(status.success(), "openssl req failed");
    let r = start_with(Options {
        tls: Some(bosun_registry::TlsFiles {
            cert: cert.clone(),
            key,
        }),
        ..Options::default()
    })
    .await;
    assert!(r.base.starts_with("https://"));
    let trusted = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let resp = trusted.get(r.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let data = noise(2 << 20, 9);
    let resp = trusted
        .post(r.url(&format!("/v2/app/blobs/uploads/?digest={}", sha256(&data))))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = trusted
        .get(r.url(&format!("/v2/app/blobs/{}", sha256(&data))))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);

    // Without the certificate the client refuses the server, and plain HTTP
    // gets no API answer.
    assert!(client().get(r.url("/v2/")).send().await.is_err());
    let plain = r.url("/v2/").replace("https://", "http://");
    let answered = client().get(plain).send().await.map(|r| r.status());
    assert!(
        !matches!(answered, Ok(StatusCode::OK)),
        "plain HTTP must not be served: {answered:?}"
    );
}
