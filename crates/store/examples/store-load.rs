//! The load generator of `bench/store`: the same load against the embedded store
//! and against a real etcd (started here, on loopback, in a temp dir), one JSON
//! object per backend on stdout.
//!
//! ```text
//! store-load [--backends embedded,etcd] [--seq-writes N] [--writes N]
//!            [--concurrency 16,64] [--watchers N] [--fanout-writes N] [--rate N]
//!            [--value-bytes N]
//! ```
//! Phases, each on its own key prefix of one store per backend:
//! - `seq`: one writer, each create waiting for its acknowledgement;
//! - `conc`: C writers at once, `--writes` creates in all, for each C;
//! - `fanout`: `--watchers` watches open on one prefix, then `--fanout-writes`
//!   creates at `--rate` per second; for each write, the time from just before
//!   the create call until the last watcher has received its event.
//!
//! Data dirs are made under `$TMPDIR` (default `/tmp`) for both backends, so both
//! write to the same disk.

#[allow(dead_code, reason = "the harness has more than the benchmark uses")]
#[path = "../tests/support/etcd.rs"]
mod etcd;

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_store::{Key, KeyRange, Revision, Store, WatchEvent};
use bytes::Bytes;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct Args {
    backends: Vec<String>,
    seq_writes: usize,
    writes: usize,
    concurrency: Vec<usize>,
    watchers: usize,
    fanout_writes: usize,
    rate: u64,
    value_bytes: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        backends: vec!["embedded".into(), "etcd".into()],
        seq_writes: 2000,
        writes: 20000,
        concurrency: vec![16, 64],
        watchers: 500,
        fanout_writes: 200,
        rate: 50,
        value_bytes: 1024,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let num = || -> usize {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: not a number"))
        };
        match flag.as_str() {
            "--backends" => a.backends = value.split(',').map(str::to_owned).collect(),
            "--seq-writes" => a.seq_writes = num(),
            "--writes" => a.writes = num(),
            "--concurrency" => {
                a.concurrency = value
                    .split(',')
                    .map(|c| c.parse().expect("--concurrency: numbers"))
                    .collect()
            }
            "--watchers" => a.watchers = num(),
            "--fanout-writes" => a.fanout_writes = num(),
            "--rate" => a.rate = num() as u64,
            "--value-bytes" => a.value_bytes = num(),
            _ => panic!("unknown flag {flag}"),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    // As many workers as this machine has cores: the etcd run shares them with etcd.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    for backend in &args.backends {
        let result = rt.block_on(run_backend(backend, &args));
        let mut out = std::io::stdout().lock();
        writeln!(out, "{result}").expect("stdout");
        out.flush().expect("stdout");
    }
}

async fn run_backend(backend: &str, args: &Args) -> Value {
    // Keep whatever owns the data (temp dir, etcd process) alive for the run.
    let (store, _dir, _cluster) = match backend {
        "embedded" => {
            let dir = tempfile::Builder::new()
                .prefix("bosun-store-bench-")
                .tempdir()
                .expect("temp dir");
            let store = Store::open_embedded(dir.path()).await.expect("open");
            (store, Some(dir), None)
        }
        "etcd" => {
            let cluster = tokio::task::spawn_blocking(|| etcd::EtcdCluster::start(1))
                .await
                .expect("etcd");
            let store = Store::etcd(cluster.endpoints().parse().expect("endpoints")).expect("etcd");
            (store, None, Some(cluster))
        }
        other => panic!("unknown backend {other}"),
    };
    let value = Bytes::from(vec![b'x'; args.value_bytes]);
    // Warm up connections, caches and the file.
    writes(&store, "/bench/warmup/", 200, 8, &value).await;

    let seq = writes(&store, "/bench/seq/", args.seq_writes, 1, &value).await;
    let mut conc = Vec::new();
    for &c in &args.concurrency {
        conc.push(writes(&store, &format!("/bench/conc{c}/"), args.writes, c, &value).await);
    }
    let fanout = fanout(&store, args, &value).await;
    json!({
        "backend": backend,
        "value_bytes": args.value_bytes,
        "seq": seq,
        "conc": conc,
        "fanout": fanout,
    })
}

/// `n` creates from `c` concurrent writers; rate and latency percentiles.
async fn writes(store: &Store, prefix: &str, n: usize, c: usize, value: &Bytes) -> Value {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..c {
        let store = store.clone();
        let value = value.clone();
        let prefix = prefix.to_owned();
        let mine = n / c + usize::from(t < n % c);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            for i in 0..mine {
                let k = Key::try_from(format!("{prefix}{t:03}/{i:08}")).expect("key");
                let t0 = Instant::now();
                store.create(&k, value.clone()).await.expect("create");
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for t in tasks {
        lat.extend(t.await.expect("writer"));
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    json!({
        "concurrency": c,
        "writes": n,
        "secs": secs,
        "per_sec": n as f64 / secs,
        "p50_ms": ms(pct(&lat, 0.50)),
        "p99_ms": ms(pct(&lat, 0.99)),
    })
}

/// Watchers open, then paced writes; per write, the time until every watcher has it.
async fn fanout(store: &Store, args: &Args, value: &Bytes) -> Value {
    let from = store.current_revision().await.expect("revision");
    let range = KeyRange::prefix("/bench/fan/");
    let epoch = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.watchers {
        let mut w = store.watch(&range, from).await.expect("watch");
        let m = args.fanout_writes;
        tasks.push(tokio::spawn(async move {
            // (revision, when it arrived)
            let mut got: Vec<(Revision, Duration)> = Vec::with_capacity(m);
            while got.len() < m {
                match w.recv().await.expect("watch") {
                    WatchEvent::Put { kv, .. } => got.push((kv.mod_revision, epoch.elapsed())),
                    WatchEvent::Delete { .. } | WatchEvent::Progress { .. } => {}
                }
            }
            got
        }));
    }
    let sent: Arc<std::sync::Mutex<Vec<(Revision, Duration)>>> = Arc::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1) as u32);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut write_lat = Vec::new();
    for i in 0..args.fanout_writes {
        tick.tick().await;
        let k = Key::try_from(format!("/bench/fan/{i:08}")).expect("key");
        let t0 = epoch.elapsed();
        let kv = store.create(&k, value.clone()).await.expect("create");
        write_lat.push(epoch.elapsed() - t0);
        sent.lock().expect("lock").push((kv.mod_revision, t0));
    }
    let mut last_arrival: std::collections::HashMap<Revision, Duration> = Default::default();
    let mut all_pairs = Vec::new();
    let sent = sent.lock().expect("lock").clone();
    let sent_at: std::collections::HashMap<Revision, Duration> = sent.iter().copied().collect();
    for t in tasks {
        for (rev, at) in t.await.expect("watcher") {
            let e = last_arrival.entry(rev).or_default();
            *e = (*e).max(at);
            if let Some(s) = sent_at.get(&rev) {
                all_pairs.push(at.saturating_sub(*s));
            }
        }
    }
    let mut to_all: Vec<Duration> = sent
        .iter()
        .map(|(rev, t0)| last_arrival[rev].saturating_sub(*t0))
        .collect();
    to_all.sort();
    all_pairs.sort();
    write_lat.sort();
    json!({
        "watchers": args.watchers,
        "writes": args.fanout_writes,
        "rate": args.rate,
        "to_all_p50_ms": ms(pct(&to_all, 0.50)),
        "to_all_p99_ms": ms(pct(&to_all, 0.99)),
        "to_all_max_ms": ms(*to_all.last().unwrap_or(&Duration::ZERO)),
        "each_p50_ms": ms(pct(&all_pairs, 0.50)),
        "write_p50_ms": ms(pct(&write_lat, 0.50)),
    })
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
