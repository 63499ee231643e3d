//! Delete propagation as the API server alone does it (no garbage collector
//! runs in this process): which finalizers each policy puts on the object,
//! switching policies on a second delete, deletecollection with a policy, and
//! what is refused.

mod support;

use serde_json::{Value, json};
use support::Cluster;

const CM: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "labels": {"set": "x"}}, "data": {"a": "b"}})
}

async fn finalizers(c: &Cluster, name: &str) -> Value {
    let r = c.call("GET", &format!("{CM}/{name}"), None).await;
    assert_eq!(r.status, 200, "{name} is gone");
    r.json()["metadata"]["finalizers"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn policies_put_their_finalizers_and_background_deletes_at_once() {
    let c = Cluster::start().await;
    for name in ["fg", "or", "bg", "old"] {
        assert_eq!(c.call("POST", CM, Some(&configmap(name))).await.status, 201);
    }
    let delete = |name: &'static str, body: Value| {
        let c = &c;
        async move { c.call("DELETE", &format!("{CM}/{name}"), Some(&body)).await }
    };
    let r = delete("fg", json!({"propagationPolicy": "Foreground"})).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(finalizers(&c, "fg").await, json!(["foregroundDeletion"]));
    let r = delete("or", json!({"propagationPolicy": "Orphan"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(finalizers(&c, "or").await, json!(["orphan"]));
    assert_eq!(
        delete("bg", json!({"propagationPolicy": "Background"}))
            .await
            .status,
        200
    );
    assert_eq!(c.call("GET", &format!("{CM}/bg"), None).await.status, 404);
    // The older spelling.
    assert_eq!(
        delete("old", json!({"orphanDependents": true}))
            .await
            .status,
        200
    );
    assert_eq!(finalizers(&c, "old").await, json!(["orphan"]));

    // A second delete may change the policy: Orphan to Foreground swaps the
    // finalizers, Background removes them and the object goes.
    assert_eq!(
        delete("or", json!({"propagationPolicy": "Foreground"}))
            .await
            .status,
        200
    );
    assert_eq!(finalizers(&c, "or").await, json!(["foregroundDeletion"]));
    let r = c
        .call(
            "DELETE",
            &format!("{CM}/or?propagationPolicy=Background"),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.call("GET", &format!("{CM}/or"), None).await.status, 404);

    // Bad options change nothing.
    let r = delete("fg", json!({"propagationPolicy": "Sideways"})).await;
    assert_eq!(r.status, 400);
    assert!(r.json()["message"].as_str().unwrap().contains("Sideways"));
    let r = delete(
        "fg",
        json!({"propagationPolicy": "Orphan", "orphanDependents": false}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(finalizers(&c, "fg").await, json!(["foregroundDeletion"]));
    // A dry run marks nothing.
    assert_eq!(
        c.call("POST", CM, Some(&configmap("dry"))).await.status,
        201
    );
    let r = c
        .call(
            "DELETE",
            &format!("{CM}/dry"),
            Some(&json!({"propagationPolicy": "Orphan", "dryRun": ["All"]})),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(finalizers(&c, "dry").await.is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn deletecollection_takes_a_policy() {
    let c = Cluster::start().await;
    for name in ["a", "b"] {
        assert_eq!(c.call("POST", CM, Some(&configmap(name))).await.status, 201);
    }
    let r = c
        .call(
            "DELETE",
            &format!("{CM}?labelSelector=set%3Dx"),
            Some(&json!({"propagationPolicy": "Orphan"})),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    for name in ["a", "b"] {
        assert_eq!(finalizers(&c, name).await, json!(["orphan"]));
    }
}
