//! OpenAPI as kubectl fetches and caches it (`/openapi/v2` as JSON and gnostic
//! protobuf, `/openapi/v3` documents by hash, ETags), and the field validation
//! the documents promise, at every depth of a request body.

mod support;

use serde_json::json;
use support::Cluster;

const PB: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

#[tokio::test]
async fn openapi_v2_is_json_or_protobuf_with_an_etag() {
    let c = Cluster::start().await;
    let token = c.token.clone();
    let json = c.call("GET", "/openapi/v2", None).await;
    assert_eq!(json.status, 200);
    assert_eq!(json.header("content-type"), Some("application/json"));
    let doc = json.json();
    assert_eq!(doc["swagger"], "2.0");
    let containers = &doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    let etag = json.header("etag").expect("an ETag").to_owned();

    let pb = c
        .raw("GET", "/openapi/v2", Some(&token), &[("Accept", PB)], b"")
        .await;
    assert_eq!(pb.status, 200);
    assert_eq!(
        pb.header("content-type"),
        Some("application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
    );
    // Document.swagger (field 1) = "2.0".
    assert_eq!(&pb.body[..5], b"\x0a\x032.0");
    let pb_etag = pb.header("etag").expect("an ETag").to_owned();
    assert_ne!(pb_etag, etag, "each representation has its own");
    assert_eq!(pb.header("vary"), Some("Accept"));

    let again = c
        .raw(
            "GET",
            "/openapi/v2",
            Some(&token),
            &[("Accept", PB), ("If-None-Match", &pb_etag)],
            b"",
        )
        .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    let stale = c
        .raw(
            "GET",
            "/openapi/v2",
            Some(&token),
            &[("Accept", PB), ("If-None-Match", "\"0\"")],
            b"",
        )
        .await;
    assert_eq!(stale.status, 200);
}

#[tokio::test]
async fn openapi_v3_documents_are_immutable_by_hash() {
    let c = Cluster::start().await;
    let index = c.call("GET", "/openapi/v3", None).await.json();
    let url = index["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("the core group's document")
        .to_owned();
    let doc = c.call("GET", &url, None).await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.header("cache-control"), Some("public, immutable"));
    let schemas = &doc.json()["components"]["schemas"];
    let resources = &schemas["io.k8s.api.core.v1.Container"]["properties"]["resources"];
    assert_eq!(
        resources["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"
    );
    let old = c.call("GET", "/openapi/v3/api/v1?hash=0123", None).await;
    assert_eq!(old.status, 301);
    assert_eq!(old.header("location"), Some(url.as_str()));
    assert_eq!(
        c.call("GET", "/openapi/v3/apis/apps/v9", None).await.status,
        404
    );
}

#[tokio::test]
async fn field_validation_reaches_nested_fields_and_types() {
    let c = Cluster::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |container: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": [container]}})
    };
    let typo = pod(json!({"name": "c", "image": "nginx", "imagee": "x"}));
    let before = c.store.current_revision().await.unwrap();

    let strict = c
        .call(
            "POST",
            &format!("{pods}?fieldValidation=Strict"),
            Some(&typo),
        )
        .await;
    assert_eq!(strict.status, 400);
    let msg = strict.json()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("unknown field \"spec.containers[0].imagee\""),
        "{msg}"
    );
    // A value of the wrong type is refused whatever fieldValidation says.
    let mistyped = pod(json!({"name": "c", "image": "nginx", "ports": [{"containerPort": "80"}]}));
    let ignored = c
        .call(
            "POST",
            &format!("{pods}?fieldValidation=Ignore"),
            Some(&mistyped),
        )
        .await;
    assert_eq!(ignored.status, 400);
    let msg = ignored.json()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("spec.containers[0].ports[0].containerPort: expected integer, got string"),
        "{msg}"
    );
    assert_eq!(c.store.current_revision().await.unwrap(), before);

    // Warn (the default) stores it and says why in a Warning header.
    let warned = c.call("POST", pods, Some(&typo)).await;
    assert_eq!(warned.status, 201);
    let warning = warned.header("warning").unwrap_or_default();
    assert!(warning.contains("spec.containers[0].imagee"), "{warning}");

    // Patches: a strategic merge patch's directives are not fields; what a JSON
    // patch adds is checked where it lands.
    let smp = json!({"spec": {"$setElementOrder/containers": [{"name": "c"}],
                              "containers": [{"name": "c", "image": "nginx:2"}]}});
    let ok = c
        .patch(
            &format!("{pods}/p?fieldValidation=Strict"),
            "application/strategic-merge-patch+json",
            &smp,
        )
        .await;
    assert_eq!(ok.status, 200, "{:?}", String::from_utf8_lossy(&ok.body));
    let bad = json!([{"op": "add", "path": "/spec/containers/0/env",
                      "value": [{"name": "A", "valeu": "1"}]}]);
    let refused = c
        .patch(
            &format!("{pods}/p?fieldValidation=Strict"),
            "application/json-patch+json",
            &bad,
        )
        .await;
    assert_eq!(refused.status, 400);
    let msg = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("spec.containers[0].env[0].valeu"), "{msg}");
}
