use std::time::Duration;

use bosun_image::sha256_of;

use super::*;

fn repo(name: &str) -> RepoName {
    name.parse().unwrap()
}

fn tag(name: &str) -> Reference {
    Reference::Tag(name.parse().unwrap())
}

/// Uploads `bytes` to `repo` the way a server does.
fn push_blob(s: &Storage, r: &RepoName, bytes: &[u8]) -> Digest {
    let id = s.start_upload(r).unwrap();
    let (mut f, len) = s.open_upload(r, &id).unwrap();
    assert_eq!(len, 0);
    std::io::Write::write_all(&mut f, bytes).unwrap();
    let (d, size) = s.finish_upload(r, &id, &sha256_of(bytes)).unwrap();
    assert_eq!(size, bytes.len() as u64);
    d
}

fn image_manifest(config: &[u8], layers: &[&[u8]]) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","size":{},"digest":"{}"}}"#,
                l.len(),
                sha256_of(l)
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":{},"digest":"{}"}},"layers":[{}]}}"#,
        config.len(),
        sha256_of(config),
        layers.join(",")
    )
}

#[test]
fn manifest_round_trip_preserves_bytes_and_media_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("team/app");
    push_blob(&s, &r, b"{}");
    push_blob(&s, &r, b"layer");
    let text = image_manifest(b"{}", &[b"layer"]);
    let put = s
        .put_manifest(
            &r,
            &tag("v1"),
            text.as_bytes(),
            Some(bosun_image::manifest::OCI_MANIFEST),
        )
        .unwrap();
    assert_eq!(put.digest, sha256_of(text.as_bytes()));
    let got = s.manifest(&r, &tag("v1")).unwrap();
    assert_eq!(got.bytes, text.as_bytes());
    assert_eq!(got.media_type, bosun_image::manifest::OCI_MANIFEST);
    assert_eq!(s.tags(&r).unwrap(), ["v1"]);
    assert_eq!(s.repositories().unwrap(), ["team/app"]);
}

#[test]
fn manifest_with_missing_blobs_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("app");
    push_blob(&s, &r, b"{}");
    // The layer exists in another repository only: not visible here.
    push_blob(&s, &repo("other"), b"layer");
    let text = image_manifest(b"{}", &[b"layer"]);
    let err = s
        .put_manifest(&r, &tag("v1"), text.as_bytes(), None)
        .unwrap_err();
    match err {
        StorageError::ManifestBlobUnknown { missing, .. } => {
            assert_eq!(missing, [sha256_of(b"layer")])
        }
        other => panic!("expected MANIFEST_BLOB_UNKNOWN, got {other}"),
    }
    assert!(matches!(
        s.manifest(&r, &tag("v1")),
        Err(StorageError::ManifestUnknown { .. })
    ));
}

#[test]
fn upload_with_the_wrong_digest_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("app");
    let id = s.start_upload(&r).unwrap();
    let (mut f, _) = s.open_upload(&r, &id).unwrap();
    std::io::Write::write_all(&mut f, b"evil").unwrap();
    let err = s.finish_upload(&r, &id, &sha256_of(b"good")).unwrap_err();
    assert!(matches!(err, StorageError::DigestInvalid { .. }), "{err}");
    assert!(s.content().list().unwrap().is_empty());
    assert!(matches!(
        s.upload_len(&r, &id),
        Err(StorageError::UploadUnknown { .. })
    ));
    assert_eq!(fs::read_dir(dir.path().join("uploads")).unwrap().count(), 0);
}

#[test]
fn uploads_belong_to_their_repository() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let id = s.start_upload(&repo("a")).unwrap();
    assert!(matches!(
        s.upload_len(&repo("b"), &id),
        Err(StorageError::UploadUnknown { .. })
    ));
    assert_eq!(s.upload_len(&repo("a"), &id).unwrap(), 0);
}

#[test]
fn gc_sweeps_unreferenced_blobs_and_refuses_while_a_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("app");
    let config = push_blob(&s, &r, b"{}");
    let layer = push_blob(&s, &r, b"layer");
    let orphan = push_blob(&s, &r, b"orphan");
    let text = image_manifest(b"{}", &[b"layer"]);
    let put = s
        .put_manifest(&r, &tag("v1"), text.as_bytes(), None)
        .unwrap();

    let lock = s.lock_shared().unwrap();
    assert!(matches!(
        s.gc(Duration::from_secs(3600)),
        Err(StorageError::Locked(_))
    ));
    drop(lock);

    let report = s.gc(Duration::from_secs(3600)).unwrap();
    assert_eq!(report.blobs_deleted, std::slice::from_ref(&orphan));
    assert_eq!(report.links_removed, 1);
    let mut left = s.content().list().unwrap();
    left.sort();
    let mut want = vec![config, layer, put.digest];
    want.sort();
    assert_eq!(left, want);
    assert!(matches!(
        s.blob_size(&r, &orphan),
        Err(StorageError::BlobUnknown { .. })
    ));
}

#[test]
fn deleting_a_manifest_removes_its_tags_and_referrer_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = Storage::open(dir.path()).unwrap();
    let r = repo("app");
    push_blob(&s, &r, b"{}");
    let text = image_manifest(b"{}", &[]);
    let subject = s
        .put_manifest(&r, &tag("v1"), text.as_bytes(), None)
        .unwrap()
        .digest;
    let referrer = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-sig","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","size":2,"digest":"{}"}},"layers":[],"subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":{},"digest":"{subject}"}}}}"#,
        sha256_of(b"{}"),
        text.len()
    );
    let d = sha256_of(referrer.as_bytes());
    let put = s
        .put_manifest(&r, &Reference::Digest(d.clone()), referrer.as_bytes(), None)
        .unwrap();
    assert_eq!(put.subject.as_ref(), Some(&subject));
    let listed = s.referrers(&r, &subject, None).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].artifact_type.as_deref(),
        Some("application/x-sig")
    );
    assert!(s.referrers(&r, &subject, Some("other")).unwrap().is_empty());

    s.delete_manifest(&r, &Reference::Digest(d)).unwrap();
    assert!(s.referrers(&r, &subject, None).unwrap().is_empty());
    s.delete_manifest(&r, &Reference::Digest(subject)).unwrap();
    assert!(s.tags(&r).unwrap().is_empty());
}
