//! Load generator for `bench/apiserver`: drives a running `bosun server` over
//! HTTPS (its CA and admin token from its data directory) and prints one JSON
//! line of results.
//!
//! 1. Churn: `--watchers` watches on one namespace's configmaps, then
//!    `--writes` creates paced at `--rate`/s; for each write, its latency and the
//!    time from just before the request until the last watcher has the event.
//! 2. Bulk: `--pods` pods created by `--concurrency` writers, then one
//!    unpaged list of all of them (JSON) and a kubectl-style paged list (Table,
//!    `limit=500`).
#![allow(clippy::print_stdout, reason = "a benchmark tool prints its results")]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Clone)]
struct Client {
    addr: String,
    token: String,
    tls: TlsConnector,
}

impl Client {
    async fn connect(&self) -> Res<SendRequest<Full<Bytes>>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self
            .tls
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        Ok(sender)
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        accept: &str,
        body: Option<&Value>,
    ) -> Request<Full<Bytes>> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(Full::new(bytes))
            .expect("a valid request")
    }
}

/// Sends a request on `conn` and reads the whole answer.
async fn call(
    c: &Client,
    conn: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    accept: &str,
    body: Option<&Value>,
) -> Res<(u16, Bytes)> {
    conn.ready().await?;
    let resp = conn
        .send_request(c.request(method, path, accept, body))
        .await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Args {
    addr: String,
    data_dir: PathBuf,
    watchers: usize,
    writes: usize,
    rate: f64,
    pods: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        addr: String::new(),
        data_dir: PathBuf::new(),
        watchers: 500,
        writes: 500,
        rate: 50.0,
        pods: 30_000,
        concurrency: 16,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => a.addr = v,
            "--data-dir" => a.data_dir = v.into(),
            "--watchers" => a.watchers = v.parse().expect("--watchers N"),
            "--writes" => a.writes = v.parse().expect("--writes N"),
            "--rate" => a.rate = v.parse().expect("--rate N"),
            "--pods" => a.pods = v.parse().expect("--pods N"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.addr.is_empty(), "--addr HOST:PORT is needed");
    a
}

/// Per write name: watchers that have seen it, and when the last one did.
type Seen = Arc<Mutex<HashMap<String, (usize, Instant)>>>;

async fn watcher(
    c: Client,
    path: String,
    seen: Seen,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Res<()> {
    let mut conn = c.connect().await?;
    conn.ready().await?;
    let resp = conn
        .send_request(c.request(Method::GET, &path, "application/json", None))
        .await?;
    assert_eq!(resp.status(), 200, "watch refused");
    let _ = ready.send(()).await;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        buf.extend_from_slice(data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let now = Instant::now();
            let ev: Value = serde_json::from_slice(&line)?;
            if ev["type"] != "ADDED" {
                continue;
            }
            let name = ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut s = seen.lock().expect("seen");
            let e = s.entry(name).or_insert((0, now));
            e.0 += 1;
            e.1 = e.1.max(now);
        }
    }
    Ok(())
}

async fn churn(c: &Client, a: &Args) -> Res<Value> {
    let mut conn = c.connect().await?;
    let ns = json!({"metadata": {"name": "bench-churn"}});
    call(
        c,
        &mut conn,
        Method::POST,
        "/api/v1/namespaces",
        "application/json",
        Some(&ns),
    )
    .await?;
    let base = "/api/v1/namespaces/bench-churn/configmaps";
    let (_, list) = call(c, &mut conn, Method::GET, base, "application/json", None).await?;
    let rv = serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let seen: Seen = Arc::default();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(a.watchers);
    for _ in 0..a.watchers {
        let path = format!("{base}?watch=1&resourceVersion={rv}");
        tokio::spawn(watcher(c.clone(), path, seen.clone(), ready_tx.clone()));
    }
    for _ in 0..a.watchers {
        ready_rx.recv().await.ok_or("a watcher failed to start")?;
    }
    let mut sent = HashMap::new();
    let mut write_ms = Vec::new();
    let start = Instant::now();
    for i in 0..a.writes {
        let due = start + Duration::from_secs_f64(i as f64 / a.rate);
        tokio::time::sleep_until(due.into()).await;
        let name = format!("cm-{i}");
        let body = json!({"metadata": {"name": name}, "data": {"k": "v".repeat(256)}});
        let t0 = Instant::now();
        let (status, _) = call(
            c,
            &mut conn,
            Method::POST,
            base,
            "application/json",
            Some(&body),
        )
        .await?;
        write_ms.push(ms(t0.elapsed()));
        assert_eq!(status, 201, "create failed");
        sent.insert(name, t0);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = {
            let s = seen.lock().expect("seen");
            sent.keys()
                .all(|n| s.get(n).is_some_and(|(count, _)| *count >= a.watchers))
        };
        if done {
            break;
        }
        if Instant::now() > deadline {
            return Err("not every watcher saw every write within 120 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = seen.lock().expect("seen");
    let mut to_all: Vec<f64> = sent.iter().map(|(n, t0)| ms(s[n].1 - *t0)).collect();
    to_all.sort_by(f64::total_cmp);
    write_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "watchers": a.watchers, "writes": a.writes, "rate": a.rate,
        "write_p50_ms": percentile(&write_ms, 0.5), "write_p99_ms": percentile(&write_ms, 0.99),
        "to_all_p50_ms": percentile(&to_all, 0.5), "to_all_p99_ms": percentile(&to_all, 0.99),
        "to_all_max_ms": to_all.last().copied().unwrap_or(0.0),
    }))
}

async fn bulk(c: &Client, a: &Args) -> Res<Value> {
    let mut conn = c.connect().await?;
    let ns = json!({"metadata": {"name": "bench-pods"}});
    call(
        c,
        &mut conn,
        Method::POST,
        "/api/v1/namespaces",
        "application/json",
        Some(&ns),
    )
    .await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (c, n, conc) = (c.clone(), a.pods, a.concurrency);
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await?;
            for i in (w..n).step_by(conc) {
                let pod = json!({"metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench"}},
                    "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}});
                let (status, _) = call(&c, &mut conn, Method::POST, "/api/v1/namespaces/bench-pods/pods",
                    "application/json", Some(&pod)).await?;
                if status != 201 {
                    return Err::<(), Box<dyn std::error::Error + Send + Sync>>("pod create failed".into());
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let create_secs = start.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let (status, body) = call(
        c,
        &mut conn,
        Method::GET,
        "/api/v1/pods",
        "application/json",
        None,
    )
    .await?;
    let list_ms = ms(t0.elapsed());
    assert_eq!(status, 200);
    let items = serde_json::from_slice::<Value>(&body)?["items"]
        .as_array()
        .map_or(0, Vec::len);
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let t0 = Instant::now();
    let (mut rows, mut next) = (0, String::new());
    loop {
        let path = if next.is_empty() {
            "/api/v1/pods?limit=500".to_owned()
        } else {
            format!("/api/v1/pods?limit=500&continue={next}")
        };
        let (_, body) = call(c, &mut conn, Method::GET, &path, table, None).await?;
        let t: Value = serde_json::from_slice(&body)?;
        rows += t["rows"].as_array().map_or(0, Vec::len);
        match t["metadata"]["continue"].as_str() {
            Some(n) if !n.is_empty() => next = n.to_owned(),
            _ => break,
        }
    }
    let paged_ms = ms(t0.elapsed());
    Ok(json!({
        "pods": a.pods, "concurrency": a.concurrency, "create_per_sec": a.pods as f64 / create_secs,
        "list_all_json_ms": list_ms, "list_all_json_items": items, "list_bytes": body.len(),
        "list_paged_table_ms": paged_ms, "list_paged_table_rows": rows,
    }))
}

fn main() -> Res<()> {
    let a = args();
    let token = std::fs::read_to_string(a.data_dir.join("admin.token"))?
        .trim()
        .to_owned();
    let ca = std::fs::read(a.data_dir.join("pki/ca.crt"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert?)?;
    }
    let tls = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = Client {
        addr: a.addr.clone(),
        token,
        tls: TlsConnector::from(Arc::new(tls)),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let churn = if a.watchers > 0 && a.writes > 0 {
            churn(&client, &a).await?
        } else {
            Value::Null
        };
        let bulk = if a.pods > 0 {
            bulk(&client, &a).await?
        } else {
            Value::Null
        };
        println!("{}", json!({"churn": churn, "bulk": bulk}));
        Ok(())
    })
}
