//! An API server in the test process on a free loopback port with its own data
//! directory, and a small HTTPS client that trusts the server's CA and shows
//! status codes, bodies and watch streams exactly as sent.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bosun_apiserver::{Config, Server};
use bosun_store::Store;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// Guards against a hang (a stream that never delivers); not a performance bound.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub token: String,
    pub store: Store,
    connector: TlsConnector,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut Config)) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("bosun-apiserver-")
            .tempdir()
            .unwrap();
        let mut config = Config::new(dir.path().to_owned(), "127.0.0.1:0".parse().unwrap());
        tune(&mut config);
        let server = Server::bind(config).await.expect("bind the API server");
        let addr = server.local_addr();
        let store = server.store();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let ca = std::fs::read(dir.path().join("pki/ca.crt")).unwrap();
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Cluster {
            dir,
            addr,
            token,
            store,
            connector: TlsConnector::from(Arc::new(tls)),
            stop: Some(stop),
        }
    }

    /// A TLS connection to the server, trusting its CA.
    pub async fn connect(&self) -> TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        self.connector
            .connect(name, tcp)
            .await
            .expect("TLS with the server's CA")
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> TlsStream<TcpStream> {
        let mut s = self.connect().await;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        // A server that refuses the body early (413) may close before reading it.
        let _ = s.write_all(body).await;
        let _ = s.flush().await;
        s
    }

    /// A request with a chosen token (`None`: no Authorization header).
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut s = self.send(method, path, token, headers, body).await;
        let mut raw = Vec::new();
        // A server that closes without close_notify is still a complete answer.
        let _ = s.read_to_end(&mut raw).await;
        let (status, headers, rest) = parse_head(&raw);
        let body = if headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
        {
            dechunk(rest).0
        } else {
            rest.to_vec()
        };
        Response {
            status,
            headers,
            body,
        }
    }

    /// An authenticated request with a JSON body (or none).
    pub async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = [("Content-Type", "application/json")];
        self.raw(method, path, Some(&self.token.clone()), &ct, &bytes)
            .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Response {
        let ct = [("Content-Type", content_type)];
        self.raw(
            "PATCH",
            path,
            Some(&self.token.clone()),
            &ct,
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Opens a watch; `Err` is the response when the server refuses it.
    pub async fn watch(&self, path: &str) -> Result<WatchStream, Response> {
        let mut s = self
            .send("GET", path, Some(&self.token.clone()), &[], b"")
            .await;
        let mut buf = Vec::new();
        let split = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed before answering the watch");
            buf.extend_from_slice(&chunk[..n]);
        };
        let (status, headers, _) = parse_head(&buf);
        if status != 200 {
            let _ = s.read_to_end(&mut buf).await;
            let (status, headers, rest) = parse_head(&buf);
            return Err(Response {
                status,
                headers,
                body: rest.to_vec(),
            });
        }
        Ok(WatchStream {
            stream: s,
            raw: buf[split + 4..].to_vec(),
            data: Vec::new(),
            headers,
        })
    }
}

fn parse_head(raw: &[u8]) -> (u16, Vec<(String, String)>, &[u8]) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    (status, headers, &raw[split + 4..])
}

/// Decodes the complete chunks of `raw`: (data, bytes consumed, ended).
fn dechunk(raw: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = raw[pos..].windows(2).position(|w| w == b"\r\n") else {
            return (out, pos, false);
        };
        let size_text = String::from_utf8_lossy(&raw[pos..pos + eol]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("a chunk size");
        let start = pos + eol + 2;
        if size == 0 {
            return (out, start, true);
        }
        if raw.len() < start + size + 2 {
            return (out, pos, false);
        }
        out.extend_from_slice(&raw[start..start + size]);
        pos = start + size + 2;
    }
}

/// The events of a watch, one JSON line at a time.
pub struct WatchStream {
    stream: TlsStream<TcpStream>,
    raw: Vec<u8>,
    data: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl WatchStream {
    /// The next event as `(type, object)`; `None` when the server ended the stream.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        tokio::time::timeout(PATIENCE, self.next_inner())
            .await
            .expect("no watch event within the test's patience")
    }

    async fn next_inner(&mut self) -> Option<(String, Value)> {
        loop {
            let (data, used, ended) = dechunk(&self.raw);
            self.data.extend_from_slice(&data);
            self.raw.drain(..used);
            if let Some(nl) = self.data.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.data.drain(..=nl).collect();
                let v: Value = serde_json::from_slice(&line).expect("a JSON event line");
                return Some((v["type"].as_str().unwrap().to_owned(), v["object"].clone()));
            }
            if ended {
                return None;
            }
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.raw.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The resourceVersion of an object or list.
pub fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("no resourceVersion in {v}"))
        .to_owned()
}

pub fn configmap(name: &str, labels: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    })
}

pub const CM: &str = "/api/v1/namespaces/default/configmaps";
