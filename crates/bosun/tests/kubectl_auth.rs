//! Authentication beyond the admin token, driven by the real kubectl (the one
//! on PATH, or $BOSUN_KUBECTL): client certificates minted by `bosun server
//! certs` and service-account tokens from `kubectl create token`, each
//! authorized by RBAC; and what is refused (another CA's certificate, forged,
//! expired or stale tokens) gets a 401 that says nothing.

mod cluster;
mod common;

use std::process::Command;

use base64::Engine;
use cluster::Cluster;
use common::bosun;
use serde_json::Value;

/// What a 401 must be: Kubernetes' bare Status, nothing about what exists.
fn bare_unauthorized(body: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["code"], 401, "{body}");
    assert_eq!(v["message"], "Unauthorized", "{body}");
    assert!(v["details"].is_null(), "{body}");
}

const ROLE: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: default}
rules:
- apiGroups: ['']
  resources: [configmaps]
  verbs: [get, list]
";

/// A RoleBinding of `cm-reader` to one subject (as YAML: kubectl's `create
/// rolebinding` sends protobuf, which the server does not decode for RBAC kinds).
fn binding(name: &str, kind: &str, subject: &str) -> String {
    let ns = if kind == "ServiceAccount" {
        ", namespace: default"
    } else {
        ""
    };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: {name}, namespace: default}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}}\n\
         subjects:\n- {{kind: {kind}, name: {subject:?}{ns}}}\n"
    )
}

#[test]
fn kubectl_with_a_client_certificate_is_the_user_it_names() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "cm1", "--from-literal=a=1"]);
    c.ok(&["apply", "-f", &c.file("role.yaml", ROLE)]);
    c.ok(&[
        "apply",
        "-f",
        &c.file("bind.yaml", &binding("jane-reads", "User", "jane")),
    ]);
    c.ok(&[
        "apply",
        "-f",
        &c.file("bind2.yaml", &binding("devs-read", "Group", "devs")),
    ]);
    let jane = c.certs("jane", "jane", &[]);
    assert_eq!(
        c.ok_as(&jane, &["get", "configmap", "cm1", "-o", "name"])
            .trim(),
        "configmap/cm1"
    );
    let err = c.fails_as(&jane, &["delete", "configmap", "cm1"]);
    assert!(
        err.contains(
            "User \"jane\" cannot delete resource \"configmaps\" in API group \"\" in the namespace \"default\""
        ),
        "{err}"
    );
    let err = c.fails_as(&jane, &["get", "secrets"]);
    assert!(err.contains("Forbidden"), "{err}");
    assert_eq!(
        c.ok_as(&jane, &["auth", "can-i", "list", "configmaps"])
            .trim(),
        "yes"
    );

    // O is a group: bob is allowed only through devs.
    let bob = c.certs("bob", "bob", &["devs"]);
    c.ok_as(&bob, &["get", "configmaps"]);
    let eve = c.certs("eve", "eve", &["others"]);
    let err = c.fails_as(&eve, &["get", "configmaps"]);
    assert!(err.contains("User \"eve\" cannot list"), "{err}");

    // A node's certificate goes through the node authorizer: its own Node yes, secrets no.
    let node = c.certs("node", "system:node:n1", &["system:nodes"]);
    c.ok_as(
        &node,
        &[
            "apply",
            "--validate=false",
            "-f",
            &c.file(
                "n1.yaml",
                "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n",
            ),
        ],
    );
    c.fails_as(
        &node,
        &[
            "apply",
            "--validate=false",
            "-f",
            &c.file(
                "n2.yaml",
                "apiVersion: v1\nkind: Node\nmetadata: {name: n2}\n",
            ),
        ],
    );
    let err = c.fails_as(&node, &["get", "secrets", "-A"]);
    assert!(err.contains("Forbidden"), "{err}");

    // The admin kubeconfig (a token) still works beside certificates.
    c.ok(&["get", "nodes", "n1"]);
}

#[test]
fn a_certificate_from_another_ca_is_unauthorized() {
    let c = Cluster::start();
    let other = Cluster::start();
    // Signed by the other server's CA, for a user this server knows nothing of.
    let stranger = other.certs("stranger", "admin", &["system:masters"]);
    // Pointed at the first server, whose CA the kubeconfig trusts.
    let text = std::fs::read_to_string(&stranger)
        .unwrap()
        .replace(&other.addr, &c.addr)
        .replace(
            &field(
                &std::fs::read_to_string(other.admin()).unwrap(),
                "certificate-authority-data",
            ),
            &field(
                &std::fs::read_to_string(c.admin()).unwrap(),
                "certificate-authority-data",
            ),
        );
    let path = c.dir.path().join("stranger.kubeconfig");
    std::fs::write(&path, text).unwrap();
    let err = c.fails_as(&path, &["get", "configmaps"]);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );

    // What curl sees: a bare 401 Status, with or without that certificate.
    let dir = other.dir.path().join("stranger");
    let cert = dir.join("client.crt");
    let key = dir.join("client.key");
    let (code, body) = c.curl(
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        "/api/v1/namespaces/default/secrets",
    );
    assert_eq!(code, 401, "{body}");
    bare_unauthorized(&body);
    let (code, body) = c.curl(&[], "/api/v1/namespaces/kube-system/configmaps/nope");
    assert_eq!(code, 401, "{body}");
    bare_unauthorized(&body);

    // The same certificate works where its CA is the server's.
    let mine = c.certs("mine", "admin", &["system:masters"]);
    let dir = c.dir.path().join("mine");
    let (code, body) = c.curl(
        &[
            "--cert",
            dir.join("client.crt").to_str().unwrap(),
            "--key",
            dir.join("client.key").to_str().unwrap(),
        ],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 200, "{body}");
    c.ok_as(&mine, &["get", "configmaps"]);
}

fn field(kubeconfig: &str, name: &str) -> String {
    let prefix = format!("{name}: ");
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {name} in {kubeconfig}"))
        .to_owned()
}

#[test]
fn bosun_server_certs_refuses_bad_input() {
    let c = Cluster::start();
    let out = Command::new(bosun())
        .args(["server", "certs", "--data-dir"])
        .arg(c.data())
        .args(["--out"])
        .arg(c.dir.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--user is required"));
    assert!(!c.dir.path().join("x").exists());
    let out = Command::new(bosun())
        .args(["server", "certs", "--data-dir"])
        .arg(c.dir.path().join("nowhere"))
        .args(["--user", "u", "--out"])
        .arg(c.dir.path().join("y"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin.kubeconfig"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!c.dir.path().join("y").exists());
    assert!(!c.dir.path().join("nowhere").exists());
}

#[test]
fn kubectl_create_token_gives_a_service_account_its_rbac() {
    let c = Cluster::start();
    c.ok(&["create", "configmap", "cm1", "--from-literal=a=1"]);
    c.ok(&["apply", "-f", &c.file("role.yaml", ROLE)]);
    c.ok(&["create", "serviceaccount", "robot"]);
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "bind.yaml",
            &binding("robot-reads", "ServiceAccount", "robot"),
        ),
    ]);
    let token = c.ok(&["create", "token", "robot"]).trim().to_owned();
    let robot = c.token_kubeconfig("robot.kubeconfig", &token);
    assert_eq!(
        c.ok_as(&robot, &["get", "configmap", "cm1", "-o", "name"])
            .trim(),
        "configmap/cm1"
    );
    let err = c.fails_as(&robot, &["delete", "configmap", "cm1"]);
    assert!(
        err.contains("User \"system:serviceaccount:default:robot\" cannot delete"),
        "{err}"
    );
    assert_eq!(
        c.ok_as(&robot, &["auth", "can-i", "get", "configmaps"])
            .trim(),
        "yes"
    );

    // The token is a JWT naming the account, its uid, the issuer and an expiry.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let claims: Value = serde_json::from_slice(&b64url(parts[1])).unwrap();
    let uid = c.ok(&["get", "sa", "robot", "-o", "jsonpath={.metadata.uid}"]);
    assert_eq!(claims["sub"], "system:serviceaccount:default:robot");
    assert_eq!(
        claims["kubernetes.io"]["serviceaccount"]["uid"],
        uid.as_str()
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The groups of service accounts: a binding to system:serviceaccounts:default
    // lets another account of the namespace read too.
    c.ok(&["create", "serviceaccount", "other"]);
    let other = c.token_kubeconfig(
        "other.kubeconfig",
        c.ok(&["create", "token", "other", "--duration=20m"]).trim(),
    );
    c.fails_as(&other, &["get", "configmaps"]);
    c.ok(&[
        "apply",
        "-f",
        &c.file(
            "bind-group.yaml",
            &binding("sas-read", "Group", "system:serviceaccounts:default"),
        ),
    ]);
    c.ok_as(&other, &["get", "configmaps"]);

    // Forged: the payload names another account under the same signature.
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = "system:serviceaccount:default:other".into();
    forged_claims["kubernetes.io"]["serviceaccount"]["name"] = "other".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    let auth = |t: &str| format!("Authorization: Bearer {t}");
    let (code, body) = c.curl(
        &["-H", &auth(&forged)],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 401, "{body}");
    bare_unauthorized(&body);
    // Meant for another audience.
    let vault = c.ok(&["create", "token", "robot", "--audience=vault"]);
    let (code, body) = c.curl(
        &["-H", &auth(vault.trim())],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 401, "{body}");
    bare_unauthorized(&body);
    // Too short a lifetime is refused, as Kubernetes does.
    let err = c.fails_as(&c.admin(), &["create", "token", "robot", "--duration=1m"]);
    assert!(err.contains("10 minutes"), "{err}");
    let err = c.fails_as(&c.admin(), &["create", "token", "nobody"]);
    assert!(err.contains("not found"), "{err}");

    // The account deleted and made again under the same name: a new uid, and
    // the old token is refused.
    c.ok(&["delete", "serviceaccount", "robot"]);
    let (code, body) = c.curl(
        &["-H", &auth(&token)],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 401, "{body}");
    c.ok(&["create", "serviceaccount", "robot"]);
    let (code, body) = c.curl(
        &["-H", &auth(&token)],
        "/api/v1/namespaces/default/configmaps",
    );
    assert_eq!(code, 401, "{body}");
    bare_unauthorized(&body);
    let err = c.fails_as(&robot, &["get", "configmaps"]);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
    // A fresh token for the new account works.
    let fresh = c.token_kubeconfig(
        "fresh.kubeconfig",
        c.ok(&["create", "token", "robot"]).trim(),
    );
    c.ok_as(&fresh, &["get", "configmap", "cm1"]);
}

fn b64url(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}
