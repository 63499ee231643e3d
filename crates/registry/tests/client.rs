//! The pull/push client against the in-process server, directly and through
//! a fake front that demands bearer tokens or breaks transfers.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_image::ImageStore;
use bosun_oci::{Digest, ImageRef};
use bosun_registry::{
    Client, ClientError, ClientOptions, Credentials, Outcome, Platform, Progress, Silent,
};
use common::front::{self, Behaviour};
use common::*;
use reqwest::StatusCode;

/// Records what a transfer reported, per blob.
#[derive(Default)]
struct Recorder {
    outcomes: Mutex<Vec<(Digest, Outcome)>>,
    retries: Mutex<u32>,
}

impl Progress for Recorder {
    fn start(&self, _: &Digest, _: u64) {}
    fn advance(&self, _: &Digest, _: u64) {}
    fn finish(&self, digest: &Digest, outcome: &Outcome) {
        self.outcomes
            .lock()
            .unwrap()
            .push((digest.clone(), outcome.clone()));
    }
    fn retry(&self, _: &Digest, _: u32, _: &ClientError) {
        *self.retries.lock().unwrap() += 1;
    }
}

impl Recorder {
    fn all(&self, want: &Outcome) -> bool {
        let o = self.outcomes.lock().unwrap();
        !o.is_empty() && o.iter().all(|(_, got)| got == want)
    }
}

/// A store holding a two-file rootfs image of a few MiB (large enough that
/// uploads stream) named `name`.
fn store_with_image(name: &str) -> (tempfile::TempDir, ImageStore, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/hostname", b"bosun\n".to_vec()),
        ("data/noise", noise(3 << 20, 42)),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, path, &data[..]).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let digest = store
        .import(&bytes[..], None, &name.parse().unwrap())
        .unwrap();
    (dir, store, digest)
}

fn client(options: ClientOptions) -> Client {
    Client::new(ClientOptions {
        retry_delay: Some(Duration::from_millis(10)),
        ..options
    })
    .unwrap()
}

fn reference(host: &str, path: &str) -> ImageRef {
    format!("{host}/{path}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_preserves_the_digest_and_skips_what_exists() {
    let r = start().await;
    let host = r.base.trim_start_matches("http://").to_owned();
    let (_d, store, digest) = store_with_image("app:1");
    let c = client(ClientOptions::default());

    let dest = reference(&host, "team/app:1");
    let pushed = c
        .push(&store, "app:1", &dest, Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(pushed, digest);

    let again = Arc::new(Recorder::default());
    c.push(&store, "app:1", &dest, again.clone()).await.unwrap();
    assert!(again.all(&Outcome::Present), "a second push sends no blob");

    let fresh = tempfile::tempdir().unwrap();
    let other = ImageStore::open(fresh.path()).unwrap();
    let pulled = c
        .pull(&other, &dest, &Platform::default(), Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(pulled, digest, "the digest survives the round trip");
    assert_eq!(other.resolve(&dest.to_string()).unwrap(), digest);
    let rootfs = fresh.path().join("rootfs");
    other.unpack(&dest.to_string(), &rootfs).unwrap();
    assert_eq!(
        std::fs::read(rootfs.join("data/noise")).unwrap(),
        noise(3 << 20, 42)
    );

    let again = Arc::new(Recorder::default());
    c.pull(&other, &dest, &Platform::default(), again.clone())
        .await
        .unwrap();
    assert!(
        again.all(&Outcome::Present),
        "a second pull fetches no blob"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_another_repository_mounts_the_blobs() {
    let r = start().await;
    let host = r.base.trim_start_matches("http://").to_owned();
    let (_d, store, _) = store_with_image("app:1");
    let c = client(ClientOptions::default());
    // The image is known locally under the first repository's name.
    let first = reference(&host, "first/app:1");
    store.tag("app:1", &first).unwrap();
    c.push(&store, "app:1", &first, Arc::new(Silent))
        .await
        .unwrap();

    let progress = Arc::new(Recorder::default());
    c.push(
        &store,
        "app:1",
        &reference(&host, "second/app:1"),
        progress.clone(),
    )
    .await
    .unwrap();
    assert!(
        progress.all(&Outcome::Mounted("first/app".into())),
        "{:?}",
        progress.outcomes.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_picks_linux_amd64_from_an_index() {
    let r = start().await;
    let http = common::client();
    let host = r.base.trim_start_matches("http://").to_owned();
    // Two single-layer images; the index lists arm64 first.
    let mut entries = Vec::new();
    let mut amd64 = String::new();
    for (arch, layer) in [("arm64", &b"arm layer"[..]), ("amd64", b"amd layer")] {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        push_blob(&http, &r, "multi", config.as_bytes()).await;
        push_blob(&http, &r, "multi", layer).await;
        let m = image_manifest(config.as_bytes(), &[layer], "");
        let d = sha256(m.as_bytes());
        let resp = put_manifest(&http, &r, "multi", &d, OCI_MANIFEST, &m).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        entries.push(format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","size":{},"digest":"{d}","platform":{{"architecture":"{arch}","os":"linux"}}}}"#,
            m.len()
        ));
        if arch == "amd64" {
            amd64 = d;
        }
    }
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
        entries.join(",")
    );
    let resp = put_manifest(&http, &r, "multi", "latest", OCI_INDEX, &index).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let c = client(ClientOptions::default());
    let pulled = c
        .pull(
            &store,
            &reference(&host, "multi"),
            &Platform::default(),
            Arc::new(Silent),
        )
        .await
        .unwrap();
    assert_eq!(pulled.to_string(), amd64);

    let err = c
        .pull(
            &store,
            &reference(&host, "multi"),
            &"linux/s390x".parse().unwrap(),
            Arc::new(Silent),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("linux/s390x") && text.contains("linux/arm64"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_needs_the_right_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let r = start_with(Options {
        htpasswd: Some(htpasswd),
        ..Options::default()
    })
    .await;
    let host = r.base.trim_start_matches("http://").to_owned();
    let (_d, store, digest) = store_with_image("app:1");
    let dest = reference(&host, "app:1");

    let err = client(ClientOptions::default())
        .push(&store, "app:1", &dest, Arc::new(Silent))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ClientError::Unauthorized { .. }) && text.contains(&host),
        "names the registry: {text}"
    );

    let wrong = ClientOptions {
        credentials: Credentials::parse("alice:nope"),
        ..ClientOptions::default()
    };
    let err = client(wrong)
        .push(&store, "app:1", &dest, Arc::new(Silent))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");

    let right = ClientOptions {
        credentials: Credentials::parse("alice:s3cret"),
        ..ClientOptions::default()
    };
    let pushed = client(right)
        .push(&store, "app:1", &dest, Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(pushed, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_with_the_credentials() {
    let r = start().await;
    let (_d, store, digest) = store_with_image("app:1");
    let direct = reference(r.base.trim_start_matches("http://"), "team/app:1");
    client(ClientOptions::default())
        .push(&store, "app:1", &direct, Arc::new(Silent))
        .await
        .unwrap();

    let (front, seen) = front::start(
        r.base.clone(),
        Behaviour {
            bearer: true,
            token_creds: true,
            ..Behaviour::default()
        },
    )
    .await;
    let via_front = reference(&front, "team/app:1");
    let dir = tempfile::tempdir().unwrap();
    let other = ImageStore::open(dir.path()).unwrap();

    let err = client(ClientOptions::default())
        .pull(&other, &via_front, &Platform::default(), Arc::new(Silent))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Unauthorized { .. }), "{err}");

    let with_creds = ClientOptions {
        credentials: Credentials::parse("bob:pw"),
        ..ClientOptions::default()
    };
    let pulled = client(with_creds)
        .pull(&other, &via_front, &Platform::default(), Arc::new(Silent))
        .await
        .unwrap();
    assert_eq!(pulled, digest);
    let seen = seen.lock().unwrap();
    let last = seen.token_requests.last().unwrap();
    assert!(
        last.contains("service=fake-registry")
            && last.contains("scope=repository%3Ateam%2Fapp%3Apull"),
        "token request asks for this repository: {last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_downloads_resume_with_range() {
    let r = start().await;
    let (_d, store, digest) = store_with_image("app:1");
    let direct = reference(r.base.trim_start_matches("http://"), "app:1");
    client(ClientOptions::default())
        .push(&store, "app:1", &direct, Arc::new(Silent))
        .await
        .unwrap();

    let (front, seen) = front::start(
        r.base.clone(),
        Behaviour {
            break_blobs: true,
            ..Behaviour::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let other = ImageStore::open(dir.path()).unwrap();
    let progress = Arc::new(Recorder::default());
    let pulled = client(ClientOptions::default())
        .pull(
            &other,
            &reference(&front, "app:1"),
            &Platform::default(),
            progress.clone(),
        )
        .await
        .unwrap();
    assert_eq!(pulled, digest);
    assert!(
        *progress.retries.lock().unwrap() >= 1,
        "a retry was reported"
    );
    let seen = seen.lock().unwrap();
    assert!(!seen.broken.is_empty(), "the front broke a download");
    assert!(
        seen.range_requests
            .iter()
            .any(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "the retry resumed with a Range: {:?}",
        seen.range_requests
    );
    other
        .unpack(
            &reference(&front, "app:1").to_string(),
            &dir.path().join("rootfs"),
        )
        .expect("the resumed layer is intact");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_registry_repository_and_code() {
    let r = start().await;
    let host = r.base.trim_start_matches("http://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    let err = client(ClientOptions::default())
        .pull(
            &store,
            &reference(&host, "no/such:tag"),
            &Platform::default(),
            Arc::new(Silent),
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("{host}/no/such"))
            && text.contains("fetching manifest tag")
            && text.contains("404")
            && text.contains("MANIFEST_UNKNOWN"),
        "{text}"
    );
    let err = client(ClientOptions::default())
        .pull(
            &store,
            &format!("{host}/a@{}", sha256(b"x")).parse().unwrap(),
            &Platform::default(),
            Arc::new(Silent),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NAME:TAG@DIGEST"), "{err}");
}
