//! An in-process `bosun registry` on an ephemeral loopback port, and small
//! helpers for talking the distribution protocol to it.
#![allow(dead_code, reason = "each test file uses a different subset")]

pub(crate) mod front;

use std::path::PathBuf;

use bosun_registry::{Server, ServerConfig, TlsFiles};
use reqwest::{Response, StatusCode};
use tokio::sync::oneshot;

pub(crate) struct Registry {
    /// `http://127.0.0.1:PORT` (or https).
    pub(crate) base: String,
    pub(crate) dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
pub(crate) struct Options {
    pub(crate) htpasswd: Option<PathBuf>,
    pub(crate) tls: Option<TlsFiles>,
    /// Reuse a directory (a restart).
    pub(crate) dir: Option<tempfile::TempDir>,
    /// `ServerConfig::max_connections`; 0 for the default.
    pub(crate) max_connections: usize,
}

pub(crate) async fn start() -> Registry {
    start_with(Options::default()).await
}

pub(crate) async fn start_with(opts: Options) -> Registry {
    let dir = opts.dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let server = Server::bind(ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        htpasswd: opts.htpasswd,
        tls: opts.tls,
        max_connections: match opts.max_connections {
            0 => bosun_registry::DEFAULT_MAX_CONNECTIONS,
            n => n,
        },
    })
    .await
    .expect("server starts");
    let base = format!("{scheme}://{}", server.local_addr());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Registry {
        base,
        dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl Registry {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server and hands back its directory.
    pub(crate) async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// Files in the content store's blob directory, temp files included.
    pub(crate) fn blob_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join("blobs/sha256"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Uploads in progress on disk.
    pub(crate) fn uploads(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("uploads"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    bosun_image::sha256_of(bytes).to_string()
}

/// Deterministic bytes that do not compress.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The first error code of a spec error body.
pub(crate) async fn error_code(resp: Response) -> String {
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_else(|e| {
        panic!("status {status}: error body is not JSON: {e}");
    });
    body["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_owned()
}

pub(crate) fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header in a {} response", resp.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Pushes a blob in one POST; panics unless the registry created it.
pub(crate) async fn push_blob(
    c: &reqwest::Client,
    r: &Registry,
    repo: &str,
    bytes: &[u8],
) -> String {
    let digest = sha256(bytes);
    let resp = c
        .post(r.url(&format!("/v2/{repo}/blobs/uploads/?digest={digest}")))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::CREATED,
        "monolithic push of {digest}"
    );
    digest
}

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An image manifest over blobs (config first), as compact JSON.
pub(crate) fn image_manifest(config: &[u8], layers: &[&[u8]], extra: &str) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|l| {
            format!(
                r#"{{"mediaType":"{OCI_LAYER}","size":{},"digest":"{}"}}"#,
                l.len(),
                sha256(l)
            )
        })
        .collect();
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","size":{},"digest":"{}"}},"layers":[{}]{extra}}}"#,
        config.len(),
        sha256(config),
        layers.join(",")
    )
}

pub(crate) async fn put_manifest(
    c: &reqwest::Client,
    r: &Registry,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &str,
) -> Response {
    c.put(r.url(&format!("/v2/{repo}/manifests/{reference}")))
        .header("Content-Type", media_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}
