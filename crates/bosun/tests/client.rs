//! The `client` crate against a real `bosun server`: the verbs with their
//! errors, a watcher that follows changes and lists again once its version
//! has been compacted away (410), and client-certificate authentication.

mod cluster;
mod common;

use base64::Engine;
use bosun_api::resource;
use bosun_client::{Auth, Client, Config, DeleteParams, Event, Patch, Watcher};
use cluster::{Cluster, wait_until};
use serde_json::{Value, json};

/// The admin kubeconfig's server, CA and token, read as the client's config.
fn admin_config(c: &Cluster) -> Config {
    let text = std::fs::read_to_string(c.admin()).unwrap();
    let field = |name: &str| {
        let prefix = format!("{name}: ");
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
            .unwrap()
            .to_owned()
    };
    let ca = base64::engine::general_purpose::STANDARD
        .decode(field("certificate-authority-data"))
        .unwrap();
    Config {
        server: field("server"),
        ca_pem: String::from_utf8(ca).unwrap(),
        auth: Auth::Token(field("token")),
    }
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap()
}

fn names(items: &[Value]) -> Vec<&str> {
    let mut n: Vec<&str> = items.iter().map(name).collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_does_the_verbs_and_its_watcher_relists_after_compaction() {
    let c = Cluster::start_with(&["--compaction-interval", "1"]);
    let client = Client::new(&admin_config(&c)).unwrap();
    // Secrets: no controller makes any (one may publish ConfigMaps in every namespace).
    let secrets = resource::find("", "v1", "secrets").unwrap();
    let ns = Some("default");
    let secret = |n: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": n}});
    let a = client.create(secrets, ns, &secret("a")).await.unwrap();
    let e = client.create(secrets, ns, &secret("a")).await.unwrap_err();
    assert_eq!(e.code(), Some(409), "{e}");

    let mut w = Watcher::new(client.clone(), secrets, ns);
    let Event::Restarted(items) = w.next().await.unwrap() else {
        panic!("a watcher starts with the list")
    };
    assert_eq!(names(&items), ["a"]);
    client.create(secrets, ns, &secret("b")).await.unwrap();
    assert!(matches!(w.next().await.unwrap(), Event::Applied(v) if name(&v) == "b"));

    // update is a compare-and-swap on the resourceVersion read.
    let mut stale = a.clone();
    stale["metadata"]["labels"] = json!({"k": "v"});
    client
        .patch(
            secrets,
            ns,
            "a",
            &Patch::Merge(json!({"metadata": {"labels": {"k": "1"}}})),
        )
        .await
        .unwrap();
    let e = client.update(secrets, ns, &stale).await.unwrap_err();
    assert_eq!(e.code(), Some(409), "{e}");
    assert!(
        matches!(w.next().await.unwrap(), Event::Applied(v) if v["metadata"]["labels"]["k"] == "1")
    );
    let fresh = client.get(secrets, ns, "a").await.unwrap();
    let mut next = fresh.clone();
    next["metadata"]["labels"]["k"] = "2".into();
    client.update(secrets, ns, &next).await.unwrap();
    assert!(
        matches!(w.next().await.unwrap(), Event::Applied(v) if v["metadata"]["labels"]["k"] == "2")
    );
    client
        .delete(secrets, ns, "b", &DeleteParams::default())
        .await
        .unwrap();
    assert!(matches!(w.next().await.unwrap(), Event::Deleted(v) if name(&v) == "b"));
    let e = client.get(secrets, ns, "b").await.unwrap_err();
    assert_eq!(e.code(), Some(404));

    // A watcher whose version is compacted away before it watches lists again.
    let mut late = Watcher::new(client.clone(), secrets, ns);
    let Event::Restarted(_) = late.next().await.unwrap() else {
        panic!("a watcher starts with the list")
    };
    let old = client.list(secrets, ns).await.unwrap().resource_version;
    client.create(secrets, ns, &secret("c")).await.unwrap();
    let auth = format!(
        "Authorization: Bearer {}",
        std::fs::read_to_string(c.data().join("admin.token"))
            .unwrap()
            .trim()
    );
    wait_until("the old version is compacted", || {
        let (code, _) = c.curl(
            &["-H", &auth],
            &format!(
                "/api/v1/namespaces/default/secrets?resourceVersion={old}&resourceVersionMatch=Exact"
            ),
        );
        code == 410
    });
    match late.next().await.unwrap() {
        Event::Restarted(items) => assert_eq!(names(&items), ["a", "c"]),
        other => panic!("expected a relist, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_authenticates_with_a_certificate() {
    let c = Cluster::start();
    c.certs("ctl", "jane", &["system:masters"]);
    let dir = c.dir.path().join("ctl");
    let mut config = admin_config(&c);
    config.auth = Auth::Certificate {
        cert_pem: std::fs::read_to_string(dir.join("client.crt")).unwrap(),
        key_pem: std::fs::read_to_string(dir.join("client.key")).unwrap(),
    };
    let client = Client::new(&config).unwrap();
    let nss = resource::find("", "v1", "namespaces").unwrap();
    let list = client.list(nss, None).await.unwrap();
    assert!(names(&list.items).contains(&"kube-system"));
    // Another server's CA is not trusted.
    let other = Cluster::start();
    config.ca_pem = admin_config(&other).ca_pem;
    let e = Client::new(&config)
        .unwrap()
        .list(nss, None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), None, "{e}");
    assert_eq!(e.kind(), bosun_api::ErrorKind::Unavailable);
}
