//! bosun's controllers. Each module is one controller: a pure `plan()` over
//! what it observes (unit- and property-tested) and a thin `reconcile()` that
//! does one planned action through the [`bosun_client::Client`]. [`run`]
//! starts them all; they talk to the API server only through the client, so
//! they run inside `bosun server` or anywhere else.

pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod nodelifecycle;
pub mod replicaset;
pub mod serviceaccounts;
pub mod statefulset;
pub mod workload;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bosun_api::resource;
use bosun_client::{Cache, Client, Watcher, reflect};
use tokio::sync::Notify;

/// How long a burst of changes is let settle before planning (one plan for
/// many events), and how often a controller re-plans with no change at all
/// (to retry what failed).
const SETTLE: Duration = Duration::from_millis(50);
const RESYNC: Duration = Duration::from_secs(10);

/// What `bosun server` may tune of the controllers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub node_lifecycle: nodelifecycle::Settings,
}

/// Runs every controller until the future is dropped.
pub async fn run(client: Client) {
    run_with(client, Options::default()).await;
}

/// [`run`], tuned. Each controller is a task of its own, so their plans
/// run on every worker thread at once rather than taking turns in one task;
/// dropping this future (a lost Lease) aborts them all.
pub async fn run_with(client: Client, options: Options) {
    let mut controllers = tokio::task::JoinSet::new();
    controllers.spawn(nodelifecycle::run(client.clone(), options.node_lifecycle));
    controllers.spawn(run_gc(client.clone()));
    controllers.spawn(run_serviceaccounts(client.clone()));
    controllers.spawn(endpoints::run(client.clone()));
    controllers.spawn(daemonset::run(client.clone()));
    controllers.spawn(statefulset::run(client.clone()));
    controllers.spawn(job::run(client.clone()));
    controllers.spawn(replicaset::run(client.clone()));
    controllers.spawn(deployment::run(client));
    // They run until aborted; one that panicked is reported, the others go on.
    while let Some(done) = controllers.join_next().await {
        if let Err(e) = done
            && e.is_panic()
        {
            eprintln!("bosun controllers: a controller panicked: {e}");
        }
    }
}

/// Waits for a change (or the resync period).
async fn changed(notify: &Notify) {
    let _ = tokio::time::timeout(RESYNC, notify.notified()).await;
    tokio::time::sleep(SETTLE).await;
}

async fn run_gc(client: Client) {
    let notify = Arc::new(Notify::new());
    let mut caches = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for res in gc::watched() {
        let cache: Cache<gc::Node> = Cache::new(notify.clone());
        caches.push(cache.clone());
        let watcher = Watcher::new(client.clone(), res, None);
        tasks.spawn(reflect(watcher, cache, move |v| gc::Node::of(res, v)));
    }
    loop {
        changed(&notify).await;
        let nodes: Vec<gc::Node> = caches.iter().flat_map(Cache::snapshot).collect();
        let mut checked = gc::Checked::default();
        for action in gc::plan(&nodes) {
            if let Err(e) = gc::reconcile(&client, &action, &mut checked).await {
                eprintln!("bosun controllers: garbage collector: {action:?}: {e}");
            }
        }
    }
}

async fn run_serviceaccounts(client: Client) {
    let notify = Arc::new(Notify::new());
    let namespaces = resource::find("", "v1", "namespaces").expect("in the table");
    let ns_cache: Cache<serviceaccounts::Namespace> = Cache::new(notify.clone());
    let sa_cache: Cache<String> = Cache::new(notify.clone());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(reflect(
        Watcher::new(client.clone(), namespaces, None),
        ns_cache.clone(),
        |v| {
            Some(serviceaccounts::Namespace {
                name: v["metadata"]["name"].as_str()?.to_owned(),
                terminating: !v["metadata"]["deletionTimestamp"].is_null(),
            })
        },
    ));
    tasks.spawn(reflect(
        Watcher::new(client.clone(), serviceaccounts::accounts(), None),
        sa_cache.clone(),
        |v| {
            (v["metadata"]["name"] == serviceaccounts::DEFAULT)
                .then(|| v["metadata"]["namespace"].as_str().map(str::to_owned))
                .flatten()
        },
    ));
    loop {
        changed(&notify).await;
        let have: HashSet<String> = sa_cache.snapshot().into_iter().collect();
        for ns in serviceaccounts::plan(&ns_cache.snapshot(), &have) {
            if let Err(e) = serviceaccounts::reconcile(&client, &ns).await {
                eprintln!("bosun controllers: service accounts: {ns}: {e}");
            }
        }
    }
}
