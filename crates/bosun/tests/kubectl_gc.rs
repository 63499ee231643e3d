//! Delete propagation over ownerReferences, driven by the real kubectl (the
//! one on PATH, or $BOSUN_KUBECTL, and 1.20) against `bosun server`, whose garbage
//! collector (the `controllers` crate) runs beside the API server: owner
//! chains are ConfigMaps owning ConfigMaps, made by hand. Also the `default`
//! ServiceAccount every namespace gets, and `kubectl delete` waiting while a
//! finalizer holds an object.

mod cluster;
mod common;

use cluster::{Cluster, kubectl_1_20, wait_until};
use serde_json::Value;

/// A ConfigMap owned by the ConfigMaps `owners` (name, uid, blockOwnerDeletion),
/// maybe held by a finalizer of its own.
fn dependent(name: &str, owners: &[(&str, &str, bool)], hold: bool) -> String {
    let refs: Vec<String> = owners
        .iter()
        .map(|(n, uid, block)| {
            format!(
                "  - {{apiVersion: v1, kind: ConfigMap, name: {n}, uid: {uid}, blockOwnerDeletion: {block}}}\n"
            )
        })
        .collect();
    let finalizers = if hold {
        "  finalizers: [example.com/hold]\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{finalizers}  ownerReferences:\n{}data: {{a: b}}\n",
        refs.concat()
    )
}

fn uid(c: &Cluster, name: &str) -> String {
    c.get(&["configmap", name]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn make(c: &Cluster, name: &str, owners: &[(&str, bool)], hold: bool) -> String {
    let owners: Vec<(String, String, bool)> = owners
        .iter()
        .map(|(o, block)| ((*o).to_owned(), uid(c, o), *block))
        .collect();
    let refs: Vec<(&str, &str, bool)> = owners
        .iter()
        .map(|(n, u, b)| (n.as_str(), u.as_str(), *b))
        .collect();
    let yaml = dependent(name, &refs, hold);
    c.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &c.file(&format!("{name}.yaml"), &yaml),
    ]);
    uid(c, name)
}

fn owner(c: &Cluster, name: &str) -> String {
    c.ok(&["create", "configmap", name, "--from-literal=a=b"]);
    uid(c, name)
}

fn gone(c: &Cluster, name: &str) -> bool {
    c.get(&["configmap", name]).is_none()
}

fn unhold(c: &Cluster, name: &str) {
    c.ok(&[
        "patch",
        "configmap",
        name,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
}

#[test]
fn kubectl_delete_cascade_background_collects_the_dependents_after() {
    delete_cascade_background_collects_the_dependents_after(Cluster::start());
}

#[test]
fn kubectl_1_20_delete_cascade_background_collects_the_dependents_after() {
    delete_cascade_background_collects_the_dependents_after(Cluster::start_for(&kubectl_1_20()));
}

fn delete_cascade_background_collects_the_dependents_after(c: Cluster) {
    owner(&c, "top");
    make(&c, "mid", &[("top", true)], false);
    make(&c, "leaf", &[("mid", false)], false);
    make(&c, "other", &[("top", false)], false);
    // A dependent with a second owner that stays keeps living, without the gone one.
    owner(&c, "keeper");
    make(&c, "shared", &[("top", false), ("keeper", false)], false);
    assert_eq!(
        c.ok(&["delete", "configmap", "top", "--cascade=background"])
            .trim(),
        "configmap \"top\" deleted"
    );
    assert!(gone(&c, "top"));
    wait_until("the dependents are collected", || {
        gone(&c, "mid") && gone(&c, "leaf") && gone(&c, "other")
    });
    wait_until("the shared dependent drops the gone owner", || {
        let refs = c.get(&["configmap", "shared"]).unwrap()["metadata"]["ownerReferences"].clone();
        refs.as_array()
            .is_some_and(|r| r.len() == 1 && r[0]["name"] == "keeper")
    });
    // A dependent made for an owner that never existed is collected too.
    let yaml = dependent(
        "stray2",
        &[("nobody", "00000000-0000-0000-0000-000000000000", false)],
        false,
    );
    c.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &c.file("stray2.yaml", &yaml),
    ]);
    wait_until("a dependent of nobody is collected", || gone(&c, "stray2"));
    assert!(!gone(&c, "keeper"));
}

#[test]
fn kubectl_delete_cascade_foreground_holds_the_owner_until_dependents_are_gone() {
    delete_cascade_foreground_holds_the_owner_until_dependents_are_gone(Cluster::start());
}

#[test]
fn kubectl_1_20_delete_cascade_foreground_holds_the_owner_until_dependents_are_gone() {
    delete_cascade_foreground_holds_the_owner_until_dependents_are_gone(Cluster::start_for(
        &kubectl_1_20(),
    ));
}

fn delete_cascade_foreground_holds_the_owner_until_dependents_are_gone(c: Cluster) {
    let top = owner(&c, "top");
    make(&c, "held", &[("top", true)], true);
    make(&c, "free", &[("top", true)], false);
    make(&c, "leaf", &[("free", true)], false);
    let mut kubectl = c.spawn(&[
        "delete",
        "configmap",
        "top",
        "--cascade=foreground",
        "--timeout=300s",
    ]);
    wait_until("the free dependents go, leaf first", || {
        gone(&c, "free") && gone(&c, "leaf")
    });
    wait_until("the held dependent is being deleted", || {
        !c.get(&["configmap", "held"]).unwrap()["metadata"]["deletionTimestamp"].is_null()
    });
    // The owner is held meanwhile, and kubectl still waits for it.
    assert!(
        kubectl.try_wait().unwrap().is_none(),
        "kubectl did not wait"
    );
    let top_now = c.get(&["configmap", "top"]).expect("the owner is held");
    assert_eq!(top_now["metadata"]["uid"], top.as_str());
    assert!(!top_now["metadata"]["deletionTimestamp"].is_null());
    assert_eq!(
        top_now["metadata"]["finalizers"],
        serde_json::json!(["foregroundDeletion"])
    );
    // The last dependent lets go: then the owner goes, and kubectl returns.
    unhold(&c, "held");
    let out = kubectl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap \"top\" deleted"
    );
    assert!(gone(&c, "top") && gone(&c, "held"));
}

#[test]
fn kubectl_delete_cascade_orphan_leaves_dependents_without_the_reference() {
    delete_cascade_orphan_leaves_dependents_without_the_reference(Cluster::start());
}

#[test]
fn kubectl_1_20_delete_cascade_orphan_leaves_dependents_without_the_reference() {
    delete_cascade_orphan_leaves_dependents_without_the_reference(Cluster::start_for(
        &kubectl_1_20(),
    ));
}

fn delete_cascade_orphan_leaves_dependents_without_the_reference(c: Cluster) {
    owner(&c, "top");
    owner(&c, "second");
    make(&c, "a", &[("top", true)], false);
    make(&c, "b", &[("top", false), ("second", false)], false);
    c.ok(&["delete", "configmap", "top", "--cascade=orphan"]);
    assert!(gone(&c, "top"));
    let a = c.get(&["configmap", "a"]).expect("orphaned, not deleted");
    assert!(a["metadata"]["ownerReferences"].is_null(), "{a}");
    let b = c.get(&["configmap", "b"]).expect("orphaned, not deleted");
    let refs: Vec<&Value> = b["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["name"], "second");
    // orphanDependents, the older spelling, through the API.
    owner(&c, "old");
    make(&c, "c", &[("old", false)], false);
    let auth = format!(
        "Authorization: Bearer {}",
        std::fs::read_to_string(c.data().join("admin.token"))
            .unwrap()
            .trim()
    );
    let (code, body) = c.curl(
        &[
            "-X",
            "DELETE",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"orphanDependents":true}"#,
        ],
        "/api/v1/namespaces/default/configmaps/old",
    );
    assert_eq!(code, 200, "{body}");
    wait_until("the owner goes once orphaning is done", || gone(&c, "old"));
    assert!(c.get(&["configmap", "c"]).unwrap()["metadata"]["ownerReferences"].is_null());
    // A policy that does not exist is refused, and nothing changes.
    let (code, body) = c.curl(
        &[
            "-X",
            "DELETE",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"propagationPolicy":"Sideways"}"#,
        ],
        "/api/v1/namespaces/default/configmaps/second",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("propagationPolicy"), "{body}");
    assert!(!gone(&c, "second"));
}

#[test]
fn kubectl_delete_waits_while_a_finalizer_holds_the_object() {
    delete_waits_while_a_finalizer_holds_the_object(Cluster::start());
}

#[test]
fn kubectl_1_20_delete_waits_while_a_finalizer_holds_the_object() {
    delete_waits_while_a_finalizer_holds_the_object(Cluster::start_for(&kubectl_1_20()));
}

fn delete_waits_while_a_finalizer_holds_the_object(c: Cluster) {
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  finalizers: [example.com/hold]\n";
    c.ok(&[
        "apply",
        "--validate=false",
        "-f",
        &c.file("held.yaml", yaml),
    ]);
    let mut kubectl = c.spawn(&["delete", "configmap", "held", "--timeout=300s"]);
    wait_until("the object is marked for deletion", || {
        !c.get(&["configmap", "held"]).unwrap()["metadata"]["deletionTimestamp"].is_null()
    });
    assert!(
        kubectl.try_wait().unwrap().is_none(),
        "kubectl did not wait"
    );
    assert!(!gone(&c, "held"));
    unhold(&c, "held");
    let out = kubectl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(gone(&c, "held"));
}

#[test]
fn every_namespace_gets_a_default_service_account() {
    let c = Cluster::start();
    wait_until("default has its account", || {
        c.get(&["serviceaccount", "default", "-n", "default"])
            .is_some()
    });
    c.ok(&["create", "namespace", "team"]);
    wait_until("a new namespace gets its account", || {
        c.get(&["serviceaccount", "default", "-n", "team"])
            .is_some()
    });
    // Deleted, it comes back.
    c.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    wait_until("the account is made again", || {
        c.get(&["serviceaccount", "default", "-n", "team"])
            .is_some()
    });
    // kubectl create token works for it.
    let token = c.ok(&["create", "token", "default", "-n", "team"]);
    assert_eq!(token.trim().split('.').count(), 3);
}
