//! The API server over HTTPS, in process: authentication, the Status bodies of
//! bad input, optimistic concurrency, lists with selectors and paging, watches
//! (resume, selectors, bookmarks, 410 after compaction), finalizers,
//! subresources and Tables. kubectl itself drives the binary in
//! `crates/bosun/tests/kubectl.rs`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{CM, Cluster, configmap, rv};

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_requests_get_401_and_learn_nothing() {
    let c = Cluster::start().await;
    let secret = json!({"metadata": {"name": "s"}, "stringData": {"p": "hunter2"}});
    let made = c
        .call("POST", "/api/v1/namespaces/default/secrets", Some(&secret))
        .await;
    assert_eq!(made.status, 201, "{:?}", made.json());
    let paths = [
        "/api/v1/namespaces/default/secrets/s",
        "/api/v1/namespaces/default/secrets",
        "/api/v1",
        "/no/such/path",
    ];
    for token in [None, Some("wrong"), Some("")] {
        for path in paths {
            let r = c.raw("GET", path, token, &[], b"").await;
            assert_eq!(r.status, 401, "{path} with {token:?}");
            let body = r.json();
            assert_eq!(body["kind"], "Status");
            assert_eq!(body["reason"], "Unauthorized");
            assert_eq!(body["message"], "Unauthorized");
            assert!(body.get("details").is_none(), "{body}");
            let text = String::from_utf8_lossy(&r.body);
            assert!(
                !text.contains("hunter2") && !text.contains("secrets"),
                "{text}"
            );
        }
    }
    let r = c
        .raw(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            None,
            &[],
            b"{}",
        )
        .await;
    assert_eq!(r.status, 401);
    for open in ["/healthz", "/livez", "/readyz", "/version"] {
        assert_eq!(
            c.raw("GET", open, None, &[], b"").await.status,
            200,
            "{open}"
        );
    }
    let v = c.raw("GET", "/version", None, &[], b"").await.json();
    assert_eq!(v["major"], "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_kubernetes_status_and_changes_nothing() {
    let c = Cluster::start().await;
    let before = c.store.current_revision().await.unwrap();
    let token = c.token.clone();
    let json_ct = [("Content-Type", "application/json")];

    let r = c
        .raw("POST", CM, Some(&token), &json_ct, b"{\"metadata\":")
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let r = c.raw("POST", CM, Some(&token), &json_ct, b"[1,2]").await;
    assert_eq!(r.status, 400);

    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    let r = c.call("POST", CM, Some(&wrong_kind)).await;
    assert_eq!(r.status, 400, "{:?}", r.json());
    let wrong_version = json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(c.call("POST", CM, Some(&wrong_version)).await.status, 400);

    for bad in ["Upper", "under_score", "-dash", "a..b", &"x".repeat(254)] {
        let r = c.call("POST", CM, Some(&configmap(bad, json!({})))).await;
        assert_eq!(r.status, 422, "{bad}");
        let s = r.json();
        assert_eq!(s["reason"], "Invalid");
        assert_eq!(s["details"]["kind"], "ConfigMap");
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueInvalid");
    }
    let r = c
        .call("POST", CM, Some(&configmap("ok", json!({"bad key!": "v"}))))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "metadata.labels");
    let service = json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}});
    let r = c
        .call(
            "POST",
            "/api/v1/namespaces/default/services",
            Some(&service),
        )
        .await;
    assert_eq!(r.status, 422, "service names are RFC 1035 labels");
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}});
    let r = c
        .call("POST", "/api/v1/namespaces/default/pods", Some(&pod))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );

    let other_ns = json!({"metadata": {"name": "x", "namespace": "kube-system"}});
    assert_eq!(c.call("POST", CM, Some(&other_ns)).await.status, 400);
    let r = c
        .call(
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            Some(&configmap("x", json!({}))),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["details"]["kind"], "namespaces");

    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}",
        "a".repeat(4 << 20)
    );
    let r = c
        .raw("POST", CM, Some(&token), &json_ct, big.as_bytes())
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (413, Some("RequestEntityTooLarge"))
    );

    let proto = [("Content-Type", "application/vnd.kubernetes.protobuf")];
    let r = c.raw("POST", CM, Some(&token), &proto, b"k8s\0").await;
    assert_eq!(
        r.status, 415,
        "an envelope naming no kind this server decodes"
    );
    let r = c
        .raw("POST", CM, Some(&token), &proto, b"k8s\0\x0a\x09truncated")
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );

    let r = c
        .call("GET", "/api/v1/namespaces/default/widgets", None)
        .await;
    assert_eq!((r.status, r.json()["kind"].as_str()), (404, Some("Status")));
    let r = c.call("GET", "/apis/apps/v9/deployments", None).await;
    assert_eq!(r.status, 404);
    let r = c.call("GET", &format!("{CM}/missing"), None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "configmaps \"missing\" not found");
    let r = c
        .patch(
            &format!("{CM}/missing"),
            "application/merge-patch+json",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 404);

    assert_eq!(
        c.store.current_revision().await.unwrap(),
        before,
        "no refused request wrote anything"
    );

    assert_eq!(
        c.call("POST", CM, Some(&configmap("once", json!({}))))
            .await
            .status,
        201
    );
    let r = c
        .call("POST", CM, Some(&configmap("once", json!({}))))
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    let r = c
        .patch(
            &format!("{CM}/once"),
            "application/json-patch+json",
            &json!([{"op": "test", "path": "/data/k", "value": "other"}]),
        )
        .await;
    assert_eq!(r.status, 422, "a failing JSON patch test");
    let r = c
        .patch(
            &format!("{CM}/once"),
            "application/apply-patch+yaml",
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 400, "an apply needs a fieldManager");
    let r = c.call("DELETE", "/api/v1/namespaces/default", None).await;
    assert_eq!(r.status, 403, "the default namespace cannot be deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_resource_version_is_a_conflict() {
    let c = Cluster::start().await;
    let made = c
        .call("POST", CM, Some(&configmap("web", json!({}))))
        .await
        .json();
    let (uid, rv1) = (made["metadata"]["uid"].clone(), rv(&made));
    assert_eq!(uid.as_str().unwrap().len(), 36);
    assert!(made["metadata"]["creationTimestamp"].is_string());

    let mut first = made.clone();
    first["data"] = json!({"k": "first"});
    let r = c.call("PUT", &format!("{CM}/web"), Some(&first)).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let rv2 = rv(&r.json());
    assert!(rv2.parse::<i64>().unwrap() > rv1.parse::<i64>().unwrap());
    assert_eq!(r.json()["metadata"]["uid"], uid, "uid survives updates");

    let mut second = made.clone();
    second["data"] = json!({"k": "second"});
    let r = c.call("PUT", &format!("{CM}/web"), Some(&second)).await;
    assert_eq!(r.status, 409);
    let s = r.json();
    assert_eq!(s["reason"], "Conflict");
    assert!(s["message"].as_str().unwrap().contains("has been modified"));

    let r = c
        .patch(
            &format!("{CM}/web"),
            "application/merge-patch+json",
            &json!({"metadata": {"resourceVersion": rv1}, "data": {"k": "third"}}),
        )
        .await;
    assert_eq!(
        r.status, 409,
        "a resourceVersion in a patch is a precondition"
    );
    let r = c
        .raw(
            "DELETE",
            &format!("{CM}/web"),
            Some(&c.token.clone()),
            &[],
            json!({"preconditions": {"resourceVersion": rv1}})
                .to_string()
                .as_bytes(),
        )
        .await;
    assert_eq!(r.status, 409);

    let now = c.call("GET", &format!("{CM}/web"), None).await.json();
    assert_eq!(now["data"]["k"], "first");
    assert_eq!(rv(&now), rv2);

    // Without a resourceVersion an update is unconditional; with the current one, it is fine.
    let mut fresh = now.clone();
    fresh["data"] = json!({"k": "fourth"});
    assert_eq!(
        c.call("PUT", &format!("{CM}/web"), Some(&fresh))
            .await
            .status,
        200
    );
    let mut blind = fresh.clone();
    blind["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    blind["data"] = json!({"k": "fifth"});
    assert_eq!(
        c.call("PUT", &format!("{CM}/web"), Some(&blind))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_select_and_page_at_one_revision() {
    let c = Cluster::start().await;
    let tiers = ["a", "b", "c", "a", "b"];
    for (i, tier) in tiers.iter().enumerate() {
        let mut labels = json!({"tier": tier});
        if i == 3 {
            labels["skip"] = json!("yes");
        }
        let r = c
            .call("POST", CM, Some(&configmap(&format!("cm-{i}"), labels)))
            .await;
        assert_eq!(r.status, 201);
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = c.call("GET", CM, None).await.json();
    assert_eq!(all["kind"], "ConfigMapList");
    assert_eq!(names(&all).len(), 5);

    let first = c.call("GET", &format!("{CM}?limit=2"), None).await.json();
    assert_eq!(names(&first), ["cm-0", "cm-1"]);
    let token = first["metadata"]["continue"].as_str().unwrap().to_owned();
    // A write between pages is not seen: the pages are read at the first one's revision.
    c.call("POST", CM, Some(&configmap("cm-9", json!({"tier": "a"}))))
        .await;
    let mut seen = names(&first);
    let mut next = Some(token);
    while let Some(t) = next {
        let page = c
            .call("GET", &format!("{CM}?limit=2&continue={t}"), None)
            .await
            .json();
        assert_eq!(rv(&page), rv(&first));
        seen.extend(names(&page));
        next = page["metadata"]["continue"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);

    let sel = c
        .call(
            "GET",
            &format!("{CM}?labelSelector=tier%20in%20(a,b),!skip&limit=2"),
            None,
        )
        .await
        .json();
    assert_eq!(names(&sel), ["cm-0", "cm-1"], "limit counts matches");
    let t = sel["metadata"]["continue"].as_str().unwrap();
    let rest = c
        .call(
            "GET",
            &format!("{CM}?labelSelector=tier%20in%20(a,b),!skip&limit=2&continue={t}"),
            None,
        )
        .await
        .json();
    assert_eq!(names(&rest), ["cm-4", "cm-9"]);
    let ne = c
        .call("GET", &format!("{CM}?labelSelector=tier!%3Da"), None)
        .await
        .json();
    assert_eq!(names(&ne), ["cm-1", "cm-2", "cm-4"]);
    let by_name = c
        .call(
            "GET",
            "/api/v1/configmaps?fieldSelector=metadata.name%3Dcm-2,metadata.namespace%3Ddefault",
            None,
        )
        .await
        .json();
    assert_eq!(names(&by_name), ["cm-2"]);
    let r = c
        .call("GET", &format!("{CM}?fieldSelector=data.k%3Dv"), None)
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported")
    );
    let r = c
        .call("GET", &format!("{CM}?labelSelector=tier%20in%20(a"), None)
        .await;
    assert_eq!(r.status, 400);
    let r = c.call("GET", &format!("{CM}?continue=garbage"), None).await;
    assert_eq!(r.status, 400);

    // Once the first page's revision is compacted, its continue token is 410 Gone.
    let stale = c.call("GET", &format!("{CM}?limit=1"), None).await.json();
    let t = stale["metadata"]["continue"].as_str().unwrap().to_owned();
    c.call("DELETE", &format!("{CM}/cm-1"), None).await;
    let current = c.store.current_revision().await.unwrap();
    c.store.compact(current).await.unwrap();
    let r = c
        .call("GET", &format!("{CM}?limit=1&continue={t}"), None)
        .await;
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (410, Some("Expired"))
    );
    let exact = format!(
        "{CM}?resourceVersion={}&resourceVersionMatch=Exact",
        rv(&stale)
    );
    assert_eq!(c.call("GET", &exact, None).await.status, 410);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_resumes_from_a_resource_version() {
    let c = Cluster::start().await;
    let a = c
        .call("POST", CM, Some(&configmap("a", json!({}))))
        .await
        .json();
    let rv_a = rv(&a);
    let b = c
        .call("POST", CM, Some(&configmap("b", json!({}))))
        .await
        .json();
    let r = c
        .patch(
            &format!("{CM}/a"),
            "application/merge-patch+json",
            &json!({"data": {"k": "2"}}),
        )
        .await;
    let rv_a2 = rv(&r.json());
    let r = c.call("DELETE", &format!("{CM}/b"), None).await;
    assert_eq!(r.status, 200);

    // From the revision of `a`'s creation: everything after it, in order.
    let mut w = c
        .watch(&format!("{CM}?watch=1&resourceVersion={rv_a}"))
        .await
        .unwrap_or_else(|r| panic!("{}", r.json()));
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("b"))
    );
    assert_eq!(rv(&obj), rv(&b));
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["data"]["k"].as_str()),
        ("MODIFIED", Some("2"))
    );
    assert_eq!(rv(&obj), rv_a2);
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("DELETED", Some("b"))
    );
    let rv_deleted = rv(&obj);
    // Then live.
    c.call("POST", CM, Some(&configmap("c", json!({})))).await;
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("c"))
    );
    let rv_c = rv(&obj);

    // A client that saw up to the delete resumes there and gets only what followed.
    let mut resumed = c
        .watch(&format!("{CM}?watch=true&resourceVersion={rv_deleted}"))
        .await
        .unwrap_or_else(|r| panic!("{}", r.json()));
    let (ty, obj) = resumed.next().await.unwrap();
    assert_eq!((ty.as_str(), rv(&obj)), ("ADDED", rv_c.clone()));

    // Without a resourceVersion: the current objects first, as ADDED.
    let mut fresh = c.watch(&format!("{CM}?watch=1")).await.ok().unwrap();
    let mut initial = vec![];
    for _ in 0..2 {
        let (ty, obj) = fresh.next().await.unwrap();
        assert_eq!(ty, "ADDED");
        initial.push(obj["metadata"]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(initial, ["a", "c"]);

    // After compaction, the old revision is gone: 410 with reason Expired.
    let current = c.store.current_revision().await.unwrap();
    c.store.compact(current).await.unwrap();
    let gone = c
        .watch(&format!("{CM}?watch=1&resourceVersion={rv_a}"))
        .await
        .err()
        .expect("a watch from a compacted revision is refused");
    assert_eq!(gone.status, 410);
    let s = gone.json();
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_i64()),
        (Some("Expired"), Some(410))
    );
    // The watches opened before compaction are already past it and go on.
    c.call("DELETE", &format!("{CM}/c"), None).await;
    let (ty, _) = w.next().await.unwrap();
    assert_eq!(ty, "DELETED");
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_follow_selectors_and_send_bookmarks() {
    let c = Cluster::start_with(|cfg| cfg.bookmark_interval = Duration::from_millis(200)).await;
    let start = c.call("GET", CM, None).await.json();
    let mut w = c
        .watch(&format!(
            "{CM}?watch=1&labelSelector=app%3Dweb&resourceVersion={}",
            rv(&start)
        ))
        .await
        .ok()
        .unwrap();
    c.call("POST", CM, Some(&configmap("other", json!({"app": "db"}))))
        .await;
    c.call("POST", CM, Some(&configmap("web", json!({"app": "web"}))))
        .await;
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("web"))
    );
    c.patch(
        &format!("{CM}/other"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("ADDED", Some("other")),
        "an object that comes to match is added"
    );
    c.patch(
        &format!("{CM}/web"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "api"}}}),
    )
    .await;
    let (ty, obj) = w.next().await.unwrap();
    assert_eq!(
        (ty.as_str(), obj["metadata"]["name"].as_str()),
        ("DELETED", Some("web")),
        "an object that stops matching is deleted, to this watcher"
    );
    let last = rv(&obj);

    let mut b = c
        .watch(&format!(
            "{CM}?watch=1&allowWatchBookmarks=true&resourceVersion={last}"
        ))
        .await
        .ok()
        .unwrap();
    let (ty, obj) = b.next().await.unwrap();
    assert_eq!(ty, "BOOKMARK");
    assert_eq!(obj["kind"], "ConfigMap");
    assert!(rv(&obj).parse::<i64>().unwrap() >= last.parse::<i64>().unwrap());
    assert!(
        obj.get("data").is_none(),
        "a bookmark carries only its revision"
    );

    let r = c
        .watch(&format!("{CM}?watch=1&timeoutSeconds=1"))
        .await
        .ok()
        .unwrap();
    let mut r = r;
    let mut events = 0;
    while r.next().await.is_some() {
        events += 1;
    }
    assert_eq!(
        events, 2,
        "the two objects, then the stream ends at its timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizers_hold_a_deleted_object() {
    let c = Cluster::start().await;
    let mut cm = configmap("held", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(c.call("POST", CM, Some(&cm)).await.status, 201);
    let r = c.call("DELETE", &format!("{CM}/held"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    let still = c.call("GET", &format!("{CM}/held"), None).await;
    assert_eq!(still.status, 200);
    let r = c
        .patch(
            &format!("{CM}/held"),
            "application/json-patch+json",
            &json!([{"op": "add", "path": "/metadata/finalizers/-", "value": "new"}]),
        )
        .await;
    assert_eq!(
        r.status, 422,
        "no new finalizers on an object being deleted"
    );
    let r = c
        .patch(
            &format!("{CM}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.call("GET", &format!("{CM}/held"), None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_and_scale_subresources() {
    let c = Cluster::start().await;
    let deploys = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
        "status": {"replicas": 99}});
    let made = c.call("POST", deploys, Some(&d)).await.json();
    assert_eq!(made["spec"]["replicas"], 1, "defaulted");
    assert_eq!(
        made["status"],
        json!({}),
        "clients do not set status on create"
    );
    assert_eq!(made["metadata"]["generation"], 1);

    let mut with_status = made.clone();
    with_status["status"] = json!({"replicas": 1, "readyReplicas": 1});
    with_status["spec"]["replicas"] = json!(5);
    let r = c
        .call("PUT", &format!("{deploys}/web/status"), Some(&with_status))
        .await
        .json();
    assert_eq!(r["status"]["readyReplicas"], 1);
    assert_eq!(r["spec"]["replicas"], 1, "a status write leaves the spec");
    assert_eq!(r["metadata"]["generation"], 1);

    let r = c
        .patch(
            &format!("{deploys}/web"),
            "application/merge-patch+json",
            &json!({"status": {"readyReplicas": 0}, "metadata": {"labels": {"x": "y"}}}),
        )
        .await
        .json();
    assert_eq!(
        r["status"]["readyReplicas"], 1,
        "the main resource leaves status"
    );
    assert_eq!(r["metadata"]["generation"], 1, "metadata is not spec");

    let scale = c
        .call("GET", &format!("{deploys}/web/scale"), None)
        .await
        .json();
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(1))
    );
    assert_eq!(scale["status"]["selector"], "app=web");
    let r = c
        .patch(
            &format!("{deploys}/web/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": 3}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["kind"], "Scale");
    let now = c.call("GET", &format!("{deploys}/web"), None).await.json();
    assert_eq!(now["spec"]["replicas"], 3);
    assert_eq!(now["metadata"]["generation"], 2);
    let r = c
        .patch(
            &format!("{deploys}/web/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": -1}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .call(
            "GET",
            "/api/v1/namespaces/default/configmaps/x/status",
            None,
        )
        .await;
    assert_eq!(r.status, 404, "configmaps have no status subresource");
}

#[tokio::test(flavor = "multi_thread")]
async fn tables_and_discovery_for_kubectl() {
    let c = Cluster::start().await;
    let pod = json!({"metadata": {"name": "web-0", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let r = c
        .call("POST", "/api/v1/namespaces/default/pods", Some(&pod))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["status"]["phase"], "Pending");
    let accept = [(
        "Accept",
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
    )];
    let r = c
        .raw(
            "GET",
            "/api/v1/namespaces/default/pods?limit=500",
            Some(&c.token.clone()),
            &accept,
            b"",
        )
        .await;
    assert!(r.header("content-type").unwrap().contains("as=Table"));
    let t = r.json();
    assert_eq!(t["kind"], "Table");
    let cols: Vec<&str> = t["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(&cols[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(
        t["rows"][0]["cells"].as_array().unwrap()[..4],
        [json!("web-0"), json!("0/1"), json!("Pending"), json!("0")]
    );
    assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(t["rows"][0]["object"]["metadata"]["labels"]["app"], "web");

    let api = c.call("GET", "/api", None).await.json();
    assert_eq!(api["versions"], json!(["v1"]));
    let groups = c.call("GET", "/apis", None).await.json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "batch",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "autoscaling",
    ] {
        assert!(names.contains(&g), "{g} in {names:?}");
    }
    let core = c.call("GET", "/api/v1", None).await.json();
    assert_eq!(core["kind"], "APIResourceList");
    let ns = c.call("GET", "/api/v1/namespaces", None).await.json();
    let ns: Vec<&str> = ns["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    assert!(
        ns.contains(&"default") && ns.contains(&"kube-system"),
        "{ns:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn services_get_cluster_ips_and_node_ports_of_their_own() {
    let c = Cluster::start().await;
    let svcs = "/api/v1/namespaces/default/services";
    let k8s = c
        .call("GET", &format!("{svcs}/kubernetes"), None)
        .await
        .json();
    assert_eq!(k8s["spec"]["clusterIP"], "10.43.0.1");

    let svc = |name: &str, spec: Value| json!({"metadata": {"name": name}, "spec": spec});
    let a = c
        .call(
            "POST",
            svcs,
            Some(&svc("a", json!({"ports": [{"port": 80}]}))),
        )
        .await
        .json();
    let ip_a = a["spec"]["clusterIP"].as_str().unwrap().to_owned();
    assert!(ip_a.starts_with("10.43.") && ip_a != "10.43.0.1", "{ip_a}");
    assert_eq!(a["spec"]["clusterIPs"], json!([ip_a]));

    let r = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "b",
                json!({"clusterIP": ip_a, "ports": [{"port": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.json());
    assert_eq!(r.json()["details"]["causes"][0]["field"], "spec.clusterIP");
    let r = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "b",
                json!({"clusterIP": "192.168.0.1", "ports": [{"port": 80}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422);

    let np = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "np",
                json!({"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30081}]}),
            )),
        )
        .await
        .json();
    let auto = np["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&auto) && auto != 30081, "{auto}");
    assert_eq!(np["spec"]["ports"][1]["nodePort"], 30081);
    let r = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "np2",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30081}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422, "node port taken");
    let r = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "cip",
                json!({"ports": [{"port": 80, "nodePort": 30082}]}),
            )),
        )
        .await;
    assert_eq!(r.status, 422, "no node port on a ClusterIP service");

    // The cluster IP is immutable; an update without it keeps it.
    let r = c
        .patch(
            &format!("{svcs}/a"),
            "application/merge-patch+json",
            &json!({"spec": {"clusterIP": "10.43.7.7"}}),
        )
        .await;
    assert_eq!(r.status, 422);
    let mut put = a.clone();
    put["spec"].as_object_mut().unwrap().remove("clusterIP");
    put["spec"].as_object_mut().unwrap().remove("clusterIPs");
    let r = c.call("PUT", &format!("{svcs}/a"), Some(&put)).await.json();
    assert_eq!(r["spec"]["clusterIP"], json!(ip_a));

    // Deleting a service frees its addresses for the next one.
    assert_eq!(
        c.call("DELETE", &format!("{svcs}/a"), None).await.status,
        200
    );
    assert_eq!(
        c.call("DELETE", &format!("{svcs}/np"), None).await.status,
        200
    );
    let b = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "b",
                json!({"clusterIP": ip_a, "type": "NodePort",
                       "ports": [{"port": 80, "nodePort": 30081}]}),
            )),
        )
        .await;
    assert_eq!(b.status, 201, "{:?}", b.json());
    let headless = c
        .call(
            "POST",
            svcs,
            Some(&svc(
                "h",
                json!({"clusterIP": "None", "ports": [{"port": 80}]}),
            )),
        )
        .await
        .json();
    assert_eq!(headless["spec"]["clusterIP"], "None");
}

/// Polls until `path` answers 404 (the test's patience guards against a hang).
async fn until_gone(c: &Cluster, path: &str) {
    let deadline = tokio::time::Instant::now() + support::PATIENCE;
    while c.call("GET", path, None).await.status != 404 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_deletes_what_is_in_it() {
    let c = Cluster::start().await;
    let ns = json!({"metadata": {"name": "team"}});
    assert_eq!(
        c.call("POST", "/api/v1/namespaces", Some(&ns)).await.status,
        201
    );
    let team_cm = "/api/v1/namespaces/team/configmaps";
    assert_eq!(
        c.call("POST", team_cm, Some(&configmap("a", json!({}))))
            .await
            .status,
        201
    );
    let mut held = configmap("held", json!({}));
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(c.call("POST", team_cm, Some(&held)).await.status, 201);
    let secret = json!({"metadata": {"name": "s"}, "data": {}});
    assert_eq!(
        c.call("POST", "/api/v1/namespaces/team/secrets", Some(&secret))
            .await
            .status,
        201
    );
    // Something in another namespace stays.
    assert_eq!(
        c.call("POST", CM, Some(&configmap("a", json!({}))))
            .await
            .status,
        201
    );

    let r = c.call("DELETE", "/api/v1/namespaces/team", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"]["phase"], "Terminating");
    let r = c
        .call("POST", team_cm, Some(&configmap("late", json!({}))))
        .await;
    assert_eq!(r.status, 403, "no new objects in a terminating namespace");

    until_gone(&c, &format!("{team_cm}/a")).await;
    until_gone(&c, "/api/v1/namespaces/team/secrets/s").await;
    let ns_now = c.call("GET", "/api/v1/namespaces/team", None).await;
    assert_eq!(ns_now.status, 200, "held by the object with a finalizer");
    let r = c
        .patch(
            &format!("{team_cm}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.status, 200);
    until_gone(&c, "/api/v1/namespaces/team").await;
    assert_eq!(c.call("GET", &format!("{CM}/a"), None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_and_open_watches() {
    let c = Cluster::start().await;
    assert_eq!(c.raw("GET", "/metrics", None, &[], b"").await.status, 401);
    c.call("POST", CM, Some(&configmap("m", json!({})))).await;
    c.call("POST", CM, Some(&configmap("m", json!({})))).await;
    c.call("GET", &format!("{CM}/m"), None).await;
    let mut w = c.watch(&format!("{CM}?watch=1")).await.ok().unwrap();
    let (ty, _) = w.next().await.unwrap();
    assert_eq!(ty, "ADDED");
    let r = c.call("GET", "/metrics", None).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    for line in [
        "apiserver_request_total{verb=\"POST\",resource=\"configmaps\",code=\"201\"} 1",
        "apiserver_request_total{verb=\"POST\",resource=\"configmaps\",code=\"409\"} 1",
        "apiserver_request_total{verb=\"GET\",resource=\"configmaps\",code=\"200\"} 1",
        "apiserver_request_total{verb=\"WATCH\",resource=\"configmaps\",code=\"200\"} 1",
        "apiserver_registered_watchers 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    assert!(text.contains("apiserver_request_duration_seconds_count{verb=\"POST\"} 2"));
    drop(w);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_write_nothing_and_collections_delete_by_selector() {
    let c = Cluster::start().await;
    assert_eq!(
        c.call("POST", CM, Some(&configmap("real", json!({"app": "x"}))))
            .await
            .status,
        201
    );
    let before = c.store.current_revision().await.unwrap();
    let r = c
        .call(
            "POST",
            &format!("{CM}?dryRun=All"),
            Some(&configmap("dry", json!({}))),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.json()["metadata"]["uid"].is_string());
    let r = c
        .patch(
            &format!("{CM}/real?dryRun=All"),
            "application/merge-patch+json",
            &json!({"data": {"k": "dry"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.json()["data"]["k"].as_str()),
        (200, Some("dry"))
    );
    let r = c
        .call("DELETE", &format!("{CM}/real?dryRun=All"), None)
        .await;
    assert_eq!(r.status, 200);
    let r = c
        .call(
            "POST",
            "/api/v1/namespaces/nowhere/configmaps?dryRun=All",
            Some(&configmap("x", json!({}))),
        )
        .await;
    assert_eq!(r.status, 404, "a dry run checks the namespace too");
    assert_eq!(c.store.current_revision().await.unwrap(), before);
    assert_eq!(c.call("GET", &format!("{CM}/dry"), None).await.status, 404);
    assert_eq!(
        c.call("GET", &format!("{CM}/real"), None).await.json()["data"]["k"],
        "v"
    );

    for (name, app) in [("x2", "x"), ("y1", "y")] {
        c.call("POST", CM, Some(&configmap(name, json!({"app": app}))))
            .await;
    }
    let r = c
        .call("DELETE", &format!("{CM}?labelSelector=app%3Dx"), None)
        .await;
    assert_eq!(r.status, 200);
    let mut gone: Vec<String> = r.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    gone.sort();
    assert_eq!(gone, ["real", "x2"]);
    let left = c.call("GET", CM, None).await.json();
    assert_eq!(left["items"].as_array().unwrap().len(), 1);
    assert_eq!(left["items"][0]["metadata"]["name"], "y1");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_bound_once_and_evicted() {
    let c = Cluster::start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    assert_eq!(c.call("POST", pods, Some(&pod)).await.status, 201);
    let binding = |node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let r = c
        .call("POST", &format!("{pods}/p/binding"), Some(&binding("n1")))
        .await;
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (201, Some("Success"))
    );
    let bound = c.call("GET", &format!("{pods}/p"), None).await.json();
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    let by_node = c
        .call(
            "GET",
            &format!("{pods}?fieldSelector=spec.nodeName%3Dn1"),
            None,
        )
        .await
        .json();
    assert_eq!(by_node["items"].as_array().unwrap().len(), 1);
    let r = c
        .call("POST", &format!("{pods}/p/binding"), Some(&binding("n2")))
        .await;
    assert_eq!(r.status, 409, "a pod is bound once");
    let r = c
        .call(
            "POST",
            &format!("{pods}/p/binding"),
            Some(&json!({"target": {}})),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        c.call("GET", &format!("{pods}/p/binding"), None)
            .await
            .status,
        405
    );

    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": "p", "namespace": "default"}});
    let r = c
        .call("POST", &format!("{pods}/p/eviction"), Some(&eviction))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(c.call("GET", &format!("{pods}/p"), None).await.status, 404);
    let r = c
        .call("POST", &format!("{pods}/p/eviction"), Some(&eviction))
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn rbac_and_the_node_authorizer_decide_what_other_tokens_may_do() {
    let tokens = tempfile::tempdir().unwrap();
    let file = tokens.path().join("tokens.csv");
    std::fs::write(
        &file,
        "viewer-token,viewer,1\nnobody-token,nobody,2\nnode-token,system:node:n1,3,\"system:nodes\"\n",
    )
    .unwrap();
    let c = Cluster::start_with(|cfg| cfg.token_auth_file = Some(file.clone())).await;
    let as_user = |token: &'static str, method: &'static str, path: String, body: Option<Value>| {
        let c = &c;
        async move {
            let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
            c.raw(
                method,
                &path,
                Some(token),
                &[("Content-Type", "application/json")],
                &bytes,
            )
            .await
        }
    };
    let rbac = "/apis/rbac.authorization.k8s.io/v1";
    let binding = json!({"metadata": {"name": "viewer"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "viewer"}]});
    let r = c
        .call(
            "POST",
            &format!("{rbac}/clusterrolebindings"),
            Some(&binding),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.json());
    let secret = json!({"metadata": {"name": "s"}, "stringData": {"p": "hunter2"}});
    c.call("POST", "/api/v1/namespaces/default/secrets", Some(&secret))
        .await;
    c.call("POST", CM, Some(&configmap("cm", json!({})))).await;

    // The read-only role reads, and cannot write or read secrets.
    assert_eq!(
        as_user("viewer-token", "GET", CM.to_owned(), None)
            .await
            .status,
        200
    );
    assert_eq!(
        as_user(
            "viewer-token",
            "GET",
            format!("{CM}?watch=1&timeoutSeconds=1"),
            None
        )
        .await
        .status,
        200
    );
    let r = as_user(
        "viewer-token",
        "POST",
        CM.to_owned(),
        Some(configmap("x", json!({}))),
    )
    .await;
    assert_eq!(r.status, 403);
    let s = r.json();
    assert_eq!(s["reason"], "Forbidden");
    assert_eq!(
        s["message"],
        "configmaps is forbidden: User \"viewer\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"default\""
    );
    let r = as_user(
        "viewer-token",
        "GET",
        "/api/v1/namespaces/default/secrets/s".to_owned(),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("aHVudGVyMg") && !text.contains("hunter2"),
        "{text}"
    );
    assert_eq!(
        as_user("viewer-token", "GET", "/metrics".to_owned(), None)
            .await
            .status,
        403
    );
    assert_eq!(
        as_user("viewer-token", "GET", "/apis/apps/v1".to_owned(), None)
            .await
            .status,
        200,
        "discovery is open to every user"
    );

    // Nobody bound: nothing, until a RoleBinding grants one namespace.
    let r = as_user("nobody-token", "GET", CM.to_owned(), None).await;
    assert_eq!(r.status, 403);
    assert!(r.json()["message"].as_str().unwrap().contains("\"nobody\""));
    c.call(
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"metadata": {"name": "team"}})),
    )
    .await;
    let rb = json!({"metadata": {"name": "nobody-edits"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "nobody"}]});
    assert_eq!(
        c.call(
            "POST",
            &format!("{rbac}/namespaces/team/rolebindings"),
            Some(&rb)
        )
        .await
        .status,
        201
    );
    let r = as_user(
        "nobody-token",
        "POST",
        "/api/v1/namespaces/team/configmaps".to_owned(),
        Some(configmap("mine", json!({}))),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = as_user(
        "nobody-token",
        "POST",
        CM.to_owned(),
        Some(configmap("x", json!({}))),
    )
    .await;
    assert_eq!(r.status, 403, "the binding is for team only");

    // A node: its own Node and the status of its pods; never secrets.
    let node = |name: &str| json!({"metadata": {"name": name}});
    assert_eq!(
        as_user(
            "node-token",
            "POST",
            "/api/v1/nodes".to_owned(),
            Some(node("n1"))
        )
        .await
        .status,
        201
    );
    assert_eq!(
        as_user(
            "node-token",
            "POST",
            "/api/v1/nodes".to_owned(),
            Some(node("n2"))
        )
        .await
        .status,
        403
    );
    assert_eq!(
        as_user(
            "node-token",
            "GET",
            "/api/v1/namespaces/default/secrets".to_owned(),
            None
        )
        .await
        .status,
        403
    );
    let pods = "/api/v1/namespaces/default/pods";
    for (name, node) in [("mine", "n1"), ("theirs", "n2")] {
        let pod = json!({"metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]}});
        c.call("POST", pods, Some(&pod)).await;
    }
    assert_eq!(
        as_user("node-token", "GET", pods.to_owned(), None)
            .await
            .status,
        200
    );
    let running = json!({"status": {"phase": "Running"}});
    let patch_status = |pod: &str| {
        let (c, path, body) = (&c, format!("{pods}/{pod}/status"), running.to_string());
        async move {
            c.raw(
                "PATCH",
                &path,
                Some("node-token"),
                &[("Content-Type", "application/merge-patch+json")],
                body.as_bytes(),
            )
            .await
            .status
        }
    };
    assert_eq!(patch_status("mine").await, 200);
    assert_eq!(patch_status("theirs").await, 403);

    // "May I?" answers for the asking user.
    let ask = |verb: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"verb": verb, "resource": "configmaps",
                                               "namespace": "default"}}})
    };
    let ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews".to_owned();
    let r = as_user("viewer-token", "POST", ssar.clone(), Some(ask("list"))).await;
    assert_eq!(
        (r.status, r.json()["status"]["allowed"].as_bool()),
        (201, Some(true))
    );
    let r = as_user("viewer-token", "POST", ssar, Some(ask("create"))).await;
    assert_eq!(r.json()["status"]["allowed"], false);

    // Every write is in the audit log, refused ones too; reads are not.
    let audit = std::fs::read_to_string(c.dir.path().join("audit.log")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refused = lines
        .iter()
        .find(|l| l["user"] == "viewer" && l["verb"] == "create")
        .expect("the viewer's refused create");
    assert_eq!(
        (
            refused["code"].as_i64(),
            refused["resource"].as_str(),
            refused["name"].as_str()
        ),
        (Some(403), Some("configmaps"), Some("x"))
    );
    assert!(lines.iter().any(|l| l["user"] == "admin"
        && l["verb"] == "create"
        && l["resource"] == "clusterrolebindings"
        && l["code"] == 201));
    assert!(
        lines
            .iter()
            .all(|l| l["verb"] != "get" && l["verb"] != "list")
    );
}
