//! Two API servers on one etcd (Debian's etcd-server, started by the test):
//! each sees the other's writes and watch events, and their resourceVersions
//! are one sequence, so a stale write through either is a conflict.

mod support;

#[path = "../../store/tests/support/etcd.rs"]
#[allow(dead_code, reason = "the store's harness; this test uses part of it")]
mod etcd;

use serde_json::json;
use support::{CM, Cluster, configmap, rv};

#[tokio::test(flavor = "multi_thread")]
async fn two_api_servers_share_one_etcd() {
    let etcd = etcd::EtcdCluster::start(1);
    let endpoints = etcd.endpoints();
    let a = Cluster::start_with(|c| c.etcd_endpoints = Some(endpoints.clone())).await;
    let b = Cluster::start_with(|c| c.etcd_endpoints = Some(endpoints.clone())).await;

    let start = b.call("GET", CM, None).await.json();
    let mut watch = b
        .watch(&format!("{CM}?watch=1&resourceVersion={}", rv(&start)))
        .await
        .unwrap_or_else(|r| panic!("{}", r.json()));

    let made = a
        .call("POST", CM, Some(&configmap("shared", json!({}))))
        .await;
    assert_eq!(made.status, 201);
    let made = made.json();
    let (ty, obj) = watch.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("shared"))
    );
    assert_eq!(rv(&obj), rv(&made), "one revision sequence");

    let seen = b.call("GET", &format!("{CM}/shared"), None).await.json();
    assert_eq!(seen["metadata"]["uid"], made["metadata"]["uid"]);
    let r = b
        .call("POST", CM, Some(&configmap("shared", json!({}))))
        .await;
    assert_eq!(r.status, 409, "already created through the other server");

    let mut newer = seen.clone();
    newer["data"] = json!({"by": "b"});
    assert_eq!(
        b.call("PUT", &format!("{CM}/shared"), Some(&newer))
            .await
            .status,
        200
    );
    let mut stale = made.clone();
    stale["data"] = json!({"by": "a"});
    let r = a.call("PUT", &format!("{CM}/shared"), Some(&stale)).await;
    assert_eq!(r.status, 409, "{:?}", r.json());
    let (ty, obj) = watch.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["data"]["by"].as_str()),
        ("MODIFIED", Some("b"))
    );

    assert_eq!(
        a.call("DELETE", &format!("{CM}/shared"), None).await.status,
        200
    );
    let (ty, _) = watch.next().await.unwrap();
    assert_eq!(ty, "DELETED");
    assert_eq!(
        b.call("GET", &format!("{CM}/shared"), None).await.status,
        404
    );
}
