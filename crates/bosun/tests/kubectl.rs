//! `bosun server` driven by the real kubectl (the one on PATH, or $BOSUN_KUBECTL;
//! the scenario, watch, explain and validation tests also with 1.27 and 1.20):
//! discovery, apply, get in every output form, watch, label, annotate, the
//! three patch types, scale, delete, explain, and the errors kubectl shows for
//! bad input. Each test runs its own server on a free loopback port with its
//! own data directory, HOME and kubectl cache.
//!
//! Every `apply` validates (kubectl's default). kubectl 1.33 reads the
//! server's OpenAPI v3 and asks for `fieldValidation=Strict`; 1.27 and 1.20
//! read OpenAPI v2 as protobuf, and 1.20 validates on its side with it and
//! computes its strategic merge patches from the patch strategies it carries.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::bosun;
use serde_json::Value;

const VIEWER_TOKEN: &str = "viewer-0123456789abcdef";

/// Guards against a hang; never a performance bound.
const PATIENCE: Duration = Duration::from_secs(120);

/// A running `bosun server`, killed when the test ends however it ends.
struct Cluster {
    child: Child,
    dir: tempfile::TempDir,
    addr: String,
    kubectl: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails unless `program` runs.
fn need_kubectl(program: &str) {
    let found = Command::new(program)
        .args(["version", "--client"])
        .env("HOME", std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{program} is needed by this test (kubectl 1.27 or later on PATH, or \
         BOSUN_KUBECTL; BOSUN_KUBECTL_OLD for 1.27, BOSUN_KUBECTL_1_20 for 1.20, \
         which scripts/install-deps.sh unpacks into /opt/kubectl-1.20)"
    );
}

/// The newest kubectl: the one on PATH (the Cloud SDK's dispatcher runs the
/// build matching the server's 1.33), or $BOSUN_KUBECTL.
fn kubectl_new() -> String {
    std::env::var("BOSUN_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// An older kubectl: $BOSUN_KUBECTL_OLD, else the 1.27 build installed beside
/// the dispatcher on PATH.
fn kubectl_old() -> String {
    if let Ok(p) = std::env::var("BOSUN_KUBECTL_OLD") {
        return p;
    }
    let out = Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let dir = std::path::Path::new(&path)
        .parent()
        .unwrap_or(std::path::Path::new("/"));
    dir.join("kubectl.1.27").to_string_lossy().into_owned()
}

/// kubectl 1.20: $BOSUN_KUBECTL_1_20, else Debian's `kubernetes-client` as
/// scripts/install-deps.sh unpacks it (installing it would replace the
/// kubectl on PATH).
fn kubectl_1_20() -> String {
    std::env::var("BOSUN_KUBECTL_1_20")
        .unwrap_or_else(|_| "/opt/kubectl-1.20/usr/bin/kubectl".to_owned())
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_for(&kubectl_new())
    }

    fn start_old() -> Cluster {
        Cluster::start_for(&kubectl_old())
    }

    fn start_1_20() -> Cluster {
        Cluster::start_for(&kubectl_1_20())
    }

    fn start_for(kubectl: &str) -> Cluster {
        need_kubectl(kubectl);
        let dir = tempfile::Builder::new()
            .prefix("bosun-kubectl-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        // A second user, with no rights until a test binds a role to it.
        let tokens = dir.path().join("tokens.csv");
        std::fs::write(&tokens, format!("{VIEWER_TOKEN},viewer,1000\n")).unwrap();
        let mut child = Command::new(bosun())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--token-auth-file")
            .arg(&tokens)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bosun server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("bosun server did not say where it listens: {line:?}"))
            .to_owned();
        Cluster {
            child,
            dir,
            addr,
            kubectl: kubectl.to_owned(),
        }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data/admin.kubeconfig")
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.dir.path().join("home"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("spawn kubectl")
    }

    /// Runs kubectl, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl, which must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}

const OBJECTS: &str = "\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  labels: {app: web}
data:
  index: hello
---
apiVersion: v1
kind: Secret
metadata:
  name: web-secret
  labels: {app: web}
stringData:
  password: s3cret
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {app: web}
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  labels: {app: web, tier: front}
spec:
  containers:
  - name: nginx
    image: nginx:1.25
    ports:
    - containerPort: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
";

#[test]
fn kubectl_get_apply_label_annotate_patch_scale_delete() {
    get_apply_label_annotate_patch_scale_delete(&Cluster::start());
}

#[test]
fn kubectl_1_27_get_apply_label_annotate_patch_scale_delete() {
    get_apply_label_annotate_patch_scale_delete(&Cluster::start_old());
}

#[test]
fn kubectl_1_20_get_apply_label_annotate_patch_scale_delete() {
    get_apply_label_annotate_patch_scale_delete(&Cluster::start_1_20());
}

fn get_apply_label_annotate_patch_scale_delete(c: &Cluster) {
    let out = c.run(&["get", "nodes"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No resources found"));
    let ns = c.ok(&["get", "namespaces", "-o", "name"]);
    assert!(lines(&ns).contains(&"namespace/kube-system"), "{ns}");

    let objects = c.file("objects.yaml", OBJECTS);
    let applied = c.ok(&["apply", "-f", &objects]);
    assert_eq!(
        lines(&applied),
        [
            "configmap/web-config created",
            "secret/web-secret created",
            "service/web created",
            "pod/web-0 created",
            "deployment.apps/web created"
        ]
    );

    let cm = c.json(&["get", "configmap", "web-config"]);
    assert_eq!(cm["data"]["index"], "hello");
    assert!(cm["metadata"]["uid"].is_string());
    let password = c.ok(&[
        "get",
        "secret",
        "web-secret",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(password, "czNjcmV0", "stringData is stored base64 in data");
    let yaml = c.ok(&["get", "pod", "web-0", "-o", "yaml"]);
    assert!(
        yaml.contains("name: web-0") && yaml.contains("phase: Pending"),
        "{yaml}"
    );
    // describe reads the pod (protobuf preferred, JSON answered) and its events.
    let described = c.ok(&["describe", "pod", "web-0"]);
    let field = |name: &str| {
        described
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {described}"))
    };
    assert_eq!(field("Name:"), "web-0");
    assert_eq!(field("Namespace:"), "default");
    assert_eq!(field("Status:"), "Pending");
    assert!(
        described.contains("Image:") && described.contains("nginx:1.25"),
        "{described}"
    );

    let wide = c.ok(&["get", "pods", "-o", "wide"]);
    let header = lines(&wide)[0]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        header,
        "NAME READY STATUS RESTARTS AGE IP NODE NOMINATED NODE READINESS GATES"
    );
    let row: Vec<&str> = lines(&wide)[1].split_whitespace().collect();
    assert_eq!(&row[..4], ["web-0", "0/1", "Pending", "0"]);
    let svc = c.ok(&["get", "services"]);
    let web: Vec<&str> = lines(&svc)
        .into_iter()
        .find(|l| l.starts_with("web "))
        .unwrap_or_else(|| panic!("no web service in {svc}"))
        .split_whitespace()
        .collect();
    assert_eq!(web[1], "ClusterIP", "{svc}");
    assert!(
        web[2].starts_with("10.43."),
        "a cluster IP is allocated: {svc}"
    );

    let selected = c.ok(&["get", "configmaps,secrets", "-l", "app=web", "-o", "name"]);
    assert_eq!(
        lines(&selected),
        ["configmap/web-config", "secret/web-secret"]
    );
    let none = c.ok(&["get", "configmaps", "-l", "app in (db),!tier", "-o", "name"]);
    assert_eq!(none, "");
    let pending = c.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Pending",
        "-o",
        "name",
    ]);
    // The Deployment's pods too, as its controllers make them: with no node
    // they stay Pending.
    let pending = lines(&pending);
    assert!(pending.contains(&"pod/web-0"), "{pending:?}");
    let template_hash = |name: &str| {
        name.strip_prefix("pod/web-")
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(hash, id)| hash.len() >= 8 && id.len() == 5)
    };
    assert!(
        pending
            .iter()
            .all(|p| *p == "pod/web-0" || template_hash(p)),
        "only web-0 and the Deployment's pods are Pending: {pending:?}"
    );
    let running = c.ok(&[
        "get",
        "pods",
        "--field-selector",
        "status.phase=Running",
        "-o",
        "name",
    ]);
    assert_eq!(running, "");
    let all = c.ok(&["get", "all", "-o", "name"]);
    for want in ["pod/web-0", "service/web", "deployment.apps/web"] {
        assert!(lines(&all).contains(&want), "{want} in {all}");
    }

    // Re-applied after an edit: kubectl sends a strategic merge patch.
    let edited = OBJECTS
        .replace("index: hello", "index: changed")
        .replace("image: nginx:1.25", "image: nginx:1.26");
    let edited = c.file("edited.yaml", &edited);
    let applied = c.ok(&["apply", "-f", &edited]);
    assert!(
        lines(&applied).contains(&"configmap/web-config configured"),
        "{applied}"
    );
    assert!(
        lines(&applied).contains(&"service/web unchanged"),
        "{applied}"
    );
    assert_eq!(
        c.json(&["get", "cm", "web-config"])["data"]["index"],
        "changed"
    );
    let deploy = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(deploy["metadata"]["generation"], 2);

    assert_eq!(
        c.ok(&["label", "pod", "web-0", "env=prod"]).trim(),
        "pod/web-0 labeled"
    );
    // kubectl 1.27 prints "annotate", later ones "annotated".
    let annotated = c.ok(&["annotate", "pod", "web-0", "note=hello world"]);
    assert!(annotated.starts_with("pod/web-0 annotate"), "{annotated}");
    let pod = c.json(&["get", "pod", "web-0"]);
    assert_eq!(pod["metadata"]["labels"]["env"], "prod");
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello world");
    // kubectl checks label values itself; a patch reaches the server's check.
    let err = c.fails(&[
        "patch",
        "pod",
        "web-0",
        "--type",
        "merge",
        "-p",
        r#"{"metadata":{"labels":{"bad":"-value-"}}}"#,
    ]);
    assert!(
        err.contains("is invalid") && err.contains("metadata.labels"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "pods", "-l", "env=prod", "-o", "name"])
            .trim(),
        "pod/web-0"
    );

    c.ok(&[
        "patch",
        "cm",
        "web-config",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"extra":"1"}}"#,
    ]);
    c.ok(&[
        "patch",
        "cm",
        "web-config",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/data/index","value":"json"}]"#,
    ]);
    // Strategic (kubectl's default): containers merge by name.
    c.ok(&[
        "patch",
        "pod",
        "web-0",
        "-p",
        r#"{"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}"#,
    ]);
    let cm = c.json(&["get", "cm", "web-config"]);
    assert_eq!(cm["data"]["extra"], "1");
    assert_eq!(cm["data"]["index"], "json");
    let pod = c.json(&["get", "pod", "web-0"]);
    let containers = pod["spec"]["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0]["image"], "nginx:2");
    assert_eq!(
        containers[0]["ports"][0]["containerPort"], 80,
        "kept by the merge"
    );
    let err = c.fails(&[
        "patch",
        "cm",
        "web-config",
        "--type",
        "json",
        "-p",
        r#"[{"op":"test","path":"/data/index","value":"nope"}]"#,
    ]);
    assert!(err.contains("could not be applied"), "{err}");

    assert_eq!(
        c.ok(&["scale", "deployment", "web", "--replicas=3"]).trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );

    assert_eq!(
        c.ok(&["delete", "pod", "web-0"]).trim(),
        "pod \"web-0\" deleted"
    );
    let err = c.fails(&["get", "pod", "web-0"]);
    assert!(err.contains("pods \"web-0\" not found"), "{err}");
    c.ok(&["delete", "-f", &edited, "--ignore-not-found"]);
    // The Deployment's ReplicaSets and pods go after it, collected by the
    // garbage collector in the background.
    let start = std::time::Instant::now();
    loop {
        let left = c.ok(&["get", "all", "-o", "name"]);
        if left.trim() == "service/kubernetes" {
            break;
        }
        assert!(start.elapsed() < PATIENCE, "still there: {left}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn kubectl_get_watch_sees_changes_by_another_client() {
    get_watch_sees_changes_by_another_client(&Cluster::start());
}

#[test]
fn kubectl_1_27_get_watch_sees_changes_by_another_client() {
    get_watch_sees_changes_by_another_client(&Cluster::start_old());
}

#[test]
fn kubectl_1_20_get_watch_sees_changes_by_another_client() {
    get_watch_sees_changes_by_another_client(&Cluster::start_1_20());
}

fn get_watch_sees_changes_by_another_client(c: &Cluster) {
    let first = c.file(
        "first.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n",
    );
    let second = c.file(
        "second.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n",
    );
    c.ok(&["apply", "-f", &first]);
    let mut watcher = c
        .command()
        .args(["get", "configmaps", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kubectl get --watch");
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        rx.recv_timeout(PATIENCE)
            .expect("kubectl get --watch printed nothing more")
    };
    // The list first: once it is printed, the watch is open.
    assert_eq!(next(), "configmap/first");
    c.ok(&["apply", "-f", &second]);
    assert_eq!(next(), "configmap/second");
    c.ok(&["label", "configmap", "first", "seen=yes"]);
    assert_eq!(next(), "configmap/first");
    c.ok(&["delete", "configmap", "second"]);
    assert_eq!(next(), "configmap/second");
    let _ = watcher.kill();
    let _ = watcher.wait();
    reader.join().unwrap();
}

#[test]
fn kubectl_watch_resumes_from_a_resource_version() {
    watch_resumes_from_a_resource_version(&Cluster::start());
}

#[test]
fn kubectl_1_20_watch_resumes_from_a_resource_version() {
    watch_resumes_from_a_resource_version(&Cluster::start_1_20());
}

fn watch_resumes_from_a_resource_version(c: &Cluster) {
    let cm = |name: &str| {
        c.file(
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n"),
        )
    };
    c.ok(&["apply", "-f", &cm("a")]);
    let seen = c.json(&["get", "configmap", "a"]);
    let rv = seen["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    c.ok(&["apply", "-f", &cm("b")]);
    c.ok(&["label", "configmap", "a", "x=1"]);
    c.ok(&["delete", "configmap", "b"]);
    // The server ends the stream after timeoutSeconds; the events are what
    // happened after `rv`, in order.
    let stream = c.ok(&[
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ),
    ]);
    let events: Vec<(String, String)> = lines(&stream)
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["type"].as_str().unwrap().to_owned(),
                v["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")];
    assert_eq!(
        events,
        want.map(|(t, n)| (t.to_owned(), n.to_owned())),
        "{stream}"
    );
}

#[test]
fn kubectl_shows_the_servers_errors() {
    shows_the_servers_errors(&Cluster::start());
}

#[test]
fn kubectl_1_20_shows_the_servers_errors() {
    shows_the_servers_errors(&Cluster::start_1_20());
}

fn shows_the_servers_errors(c: &Cluster) {
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: https://{}\n", c.addr)),
        "{kubeconfig}"
    );
    // kubectl words a 401 as "You must be logged in" (with the reason it read).
    let err = c.fails(&["get", "pods", "--token=wrong"]);
    assert!(err.contains("You must be logged in to the server"), "{err}");
    // Without any credentials kubectl asks for a user name on stdin instead of
    // sending a request; the server's 401 to that is tested in the apiserver's
    // own tests.

    let malformed = c.file("bad.json", "{bad json");
    let err = c.fails(&[
        "create",
        "--raw",
        "/api/v1/namespaces/default/configmaps",
        "-f",
        &malformed,
    ]);
    assert!(err.contains("BadRequest"), "{err}");

    let bad_name = c.file(
        "bad-name.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n",
    );
    let err = c.fails(&["apply", "-f", &bad_name]);
    assert!(
        err.contains("is invalid") && err.contains("metadata.name"),
        "{err}"
    );

    let ok = c.file(
        "ok.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\ndata:\n  k: v\n",
    );
    c.ok(&["apply", "-f", &ok]);
    let stale = c.ok(&["get", "configmap", "ok", "-o", "json"]);
    let stale = c.file("stale.json", &stale);
    c.ok(&["label", "configmap", "ok", "moved=on"]);
    let err = c.fails(&["replace", "-f", &stale]);
    assert!(
        err.contains("Conflict") || err.contains("has been modified"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "cm", "ok", "-o", "jsonpath={.metadata.labels.moved}"]),
        "on",
        "the stale replace changed nothing"
    );
    let err = c.fails(&["get", "widgets"]);
    assert!(err.contains("doesn't have a resource type"), "{err}");
}

#[test]
fn kubectl_deletes_a_namespace_with_its_contents() {
    deletes_a_namespace_with_its_contents(&Cluster::start());
}

#[test]
fn kubectl_1_20_deletes_a_namespace_with_its_contents() {
    deletes_a_namespace_with_its_contents(&Cluster::start_1_20());
}

fn deletes_a_namespace_with_its_contents(c: &Cluster) {
    let objects = c.file(
        "team.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: team\n",
    );
    c.ok(&["apply", "-f", &objects]);
    assert_eq!(
        c.ok(&["get", "configmaps", "-n", "team", "-o", "name"])
            .trim(),
        "configmap/settings"
    );
    // kubectl waits until the namespace is gone.
    assert_eq!(
        c.ok(&["delete", "namespace", "team"]).trim(),
        "namespace \"team\" deleted"
    );
    let err = c.fails(&["get", "namespace", "team"]);
    assert!(err.contains("not found"), "{err}");
    let err = c.fails(&["get", "configmap", "settings", "-n", "team"]);
    assert!(err.contains("not found"), "{err}");
    let err = c.fails(&["delete", "namespace", "kube-system"]);
    assert!(err.contains("may not be deleted"), "{err}");
}

/// Removes what the server adds and JSON's nulls, so that kubectl's own
/// rendering of an object and the server's copy of it can be compared.
fn normalized(mut v: Value, server_fields: &[&str]) -> Value {
    fn drop_nulls(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(drop_nulls);
            }
            Value::Array(a) => a.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    drop_nulls(&mut v);
    let obj = v.as_object_mut().unwrap();
    obj.remove("status");
    let meta = obj.get_mut("metadata").unwrap().as_object_mut().unwrap();
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "generation",
        "namespace",
    ] {
        meta.remove(f);
    }
    for f in server_fields {
        match (f.strip_prefix("spec."), f.strip_prefix("metadata.")) {
            (Some(f), _) => obj["spec"].as_object_mut().unwrap().remove(f),
            (_, Some(f)) => obj["metadata"].as_object_mut().unwrap().remove(f),
            _ => obj.remove(*f),
        };
    }
    v
}

#[test]
fn kubectl_create_sends_protobuf_and_the_server_keeps_every_field() {
    create_sends_protobuf_and_the_server_keeps_every_field(&Cluster::start());
}

#[test]
fn kubectl_1_20_create_sends_protobuf_and_the_server_keeps_every_field() {
    create_sends_protobuf_and_the_server_keeps_every_field(&Cluster::start_1_20());
}

fn create_sends_protobuf_and_the_server_keeps_every_field(c: &Cluster) {
    // (command after `create`, kind/name to read back, fields the server adds)
    let cases: &[(&[&str], &str, &[&str])] = &[
        (&["namespace", "team"], "namespace/team", &[]),
        (
            &[
                "configmap",
                "c1",
                "--from-literal=a=b",
                "--from-literal=x=y",
            ],
            "configmap/c1",
            &[],
        ),
        (
            &["secret", "generic", "s1", "--from-literal=p=q"],
            "secret/s1",
            &["type"],
        ),
        (&["serviceaccount", "sa1"], "serviceaccount/sa1", &[]),
        (
            &[
                "deployment",
                "web",
                "--image=nginx:1.25",
                "--replicas=2",
                "--port=80",
            ],
            "deployment/web",
            // Defaults, and the controller's revision annotation.
            &[
                "spec.strategy",
                "spec.revisionHistoryLimit",
                "spec.progressDeadlineSeconds",
                "metadata.annotations",
            ],
        ),
        (
            &["service", "nodeport", "svc1", "--tcp=80:8080"],
            "service/svc1",
            &[
                "spec.clusterIP",
                "spec.clusterIPs",
                "spec.sessionAffinity",
                "spec.ports",
            ],
        ),
        (
            &["job", "j1", "--image=busybox", "--", "echo", "hi"],
            "job/j1",
            // Kubernetes' Job defaults.
            &[
                "spec.backoffLimit",
                "spec.completionMode",
                "spec.completions",
                "spec.parallelism",
                "spec.suspend",
            ],
        ),
    ];
    for (args, what, server_fields) in cases {
        let mut dry = vec!["create"];
        dry.extend_from_slice(args);
        let real = dry.clone();
        // Before `--`: what follows it is the job's command.
        let at = dry.iter().position(|a| *a == "--").unwrap_or(dry.len());
        dry.splice(at..at, ["--dry-run=client", "-o", "json"]);
        let expected: Value = serde_json::from_str(&c.ok(&dry)).unwrap();
        c.ok(&real);
        let actual = c.json(&["get", what]);
        assert_eq!(
            normalized(actual.clone(), server_fields),
            normalized(expected, server_fields),
            "{what}"
        );
        if *what == "service/svc1" {
            let port = &actual["spec"]["ports"][0];
            assert_eq!(
                (port["port"].as_i64(), port["targetPort"].as_i64()),
                (Some(80), Some(8080))
            );
            assert!(
                port["nodePort"].as_i64().is_some(),
                "a node port is allocated"
            );
        }
    }
    assert_eq!(c.ok(&["auth", "can-i", "delete", "secrets"]).trim(), "yes");
}

#[test]
fn kubectl_apply_server_side_with_two_field_managers() {
    apply_server_side_with_two_field_managers(&Cluster::start());
}

#[test]
fn kubectl_1_20_apply_server_side_with_two_field_managers() {
    apply_server_side_with_two_field_managers(&Cluster::start_1_20());
}

fn apply_server_side_with_two_field_managers(c: &Cluster) {
    let deployment = |replicas: u32, image: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  \
             replicas: {replicas}\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    \
             metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: nginx\n        \
             image: {image}\n"
        )
    };
    let first = c.file("first.yaml", &deployment(2, "nginx:1.25"));
    let out = c.ok(&["apply", "--server-side", "-f", &first]);
    assert_eq!(out.trim(), "deployment.apps/web serverside-applied");
    // Raw: kubectl 1.20 has no --show-managed-fields (and always shows them).
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/apps/v1/namespaces/default/deployments/web",
    ]);
    let d: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(d["metadata"]["managedFields"][0]["operation"], "Apply");

    // Another manager wants 3 replicas: a conflict on .spec.replicas, nothing written.
    let other = c.file(
        "other.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n",
    );
    // kubectl 1.20 validates on its side, where a partial configuration lacks
    // required fields; later ones leave it to the server, which takes it.
    let validate = if c.kubectl == kubectl_1_20() {
        "--validate=false"
    } else {
        "--validate=true"
    };
    let err = c.fails(&[
        "apply",
        "--server-side",
        validate,
        "--field-manager=autoscaler",
        "-f",
        &other,
    ]);
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas") && err.contains("kubectl"),
        "{err}"
    );
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "2"
    );
    // Forced, the field changes owner and value.
    c.ok(&[
        "apply",
        "--server-side",
        validate,
        "--field-manager=autoscaler",
        "--force-conflicts",
        "-f",
        &other,
    ]);
    assert_eq!(
        c.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]),
        "3"
    );
    // The first manager re-applying its configuration now conflicts in turn.
    let err = c.fails(&["apply", "--server-side", "-f", &first]);
    assert!(err.contains("autoscaler"), "{err}");
    // A change of a field only it owns is fine (the other manager set replicas only).
    let newer = c.file("newer.yaml", &deployment(3, "nginx:1.26"));
    c.ok(&["apply", "--server-side", "-f", &newer]);
    let d = c.json(&["get", "deployment", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
}

#[test]
fn kubectl_validates_through_openapi_v3_and_field_validation() {
    let c = Cluster::start();
    let typo = c.file(
        "typo.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\ndata:\n  a: b\ndtaa:\n  x: y\n",
    );
    // Default validation: kubectl reads /openapi/v3 and asks for Strict.
    let err = c.fails(&["apply", "-f", &typo]);
    assert!(err.contains("unknown field \"dtaa\""), "{err}");
    assert!(c.fails(&["get", "configmap", "t"]).contains("not found"));
    let out = c.run(&["apply", "--validate=warn", "-f", &typo]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Warning: unknown field \"dtaa\""),
        "{stderr}"
    );
    assert_eq!(
        c.ok(&["get", "configmap", "t", "-o", "jsonpath={.data.a}"]),
        "b"
    );
    let explained = c.ok(&["explain", "deployments"]);
    assert!(
        explained.contains("KIND:")
            && explained.contains("Deployment")
            && explained.contains("spec"),
        "{explained}"
    );
}

#[test]
fn kubectl_explains_and_validates_nested_fields() {
    explains_and_validates_nested_fields(&Cluster::start());
}

#[test]
fn kubectl_1_27_explains_and_validates_nested_fields() {
    explains_and_validates_nested_fields(&Cluster::start_old());
}

#[test]
fn kubectl_1_20_explains_and_validates_nested_fields() {
    explains_and_validates_nested_fields(&Cluster::start_1_20());
}

/// `explain` walks the published schemas below the top level, and `apply`
/// (validation on) refuses a misspelt or ill-typed field deep in a pod: the
/// newer kubectl through the server's strict field validation, 1.20 on its
/// side with OpenAPI v2; either way nothing is stored.
fn explains_and_validates_nested_fields(c: &Cluster) {
    let containers = c.ok(&["explain", "pods.spec.containers"]);
    assert!(
        containers.contains("KIND:") && containers.contains("Pod"),
        "{containers}"
    );
    for field in ["image", "imagePullPolicy", "livenessProbe", "volumeMounts"] {
        assert!(containers.contains(field), "{field} in {containers}");
    }
    let resources = c.ok(&[
        "explain",
        "deployment.spec.template.spec.containers.resources",
    ]);
    assert!(
        resources.contains("limits") && resources.contains("requests"),
        "{resources}"
    );
    assert!(
        c.fails(&["explain", "pods.spec.nosuchfield"])
            .contains("nosuchfield")
    );

    let pod = |extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nested\nspec:\n  containers:\n  \
             - name: c\n    image: nginx\n{extra}"
        )
    };
    let typo = c.file("typo.yaml", &pod("    imagee: nginx:2\n"));
    let err = c.fails(&["apply", "-f", &typo]);
    assert!(
        err.contains("unknown field") && err.contains("imagee"),
        "{err}"
    );
    let mistyped = c.file(
        "mistyped.yaml",
        &pod("    ports:\n    - containerPort: eighty\n"),
    );
    let err = c.fails(&["apply", "-f", &mistyped]);
    assert!(err.contains("containerPort"), "{err}");
    assert!(c.fails(&["get", "pod", "nested"]).contains("not found"));
    let good = c.file("good.yaml", &pod("    ports:\n    - containerPort: 80\n"));
    assert_eq!(c.ok(&["apply", "-f", &good]).trim(), "pod/nested created");
}

#[test]
fn kubectl_as_a_user_bound_to_the_view_role() {
    as_a_user_bound_to_the_view_role(&Cluster::start());
}

#[test]
fn kubectl_1_20_as_a_user_bound_to_the_view_role() {
    as_a_user_bound_to_the_view_role(&Cluster::start_1_20());
}

fn as_a_user_bound_to_the_view_role(c: &Cluster) {
    let token = format!("--token={VIEWER_TOKEN}");
    let err = c.fails(&[&token, "get", "configmaps"]);
    assert!(
        err.contains("Forbidden") && err.contains("\"viewer\""),
        "{err}"
    );
    let binding = c.file(
        "binding.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  \
         name: viewer\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  \
         name: view\nsubjects:\n- kind: User\n  name: viewer\n",
    );
    c.ok(&["apply", "-f", &binding]);
    c.ok(&["create", "configmap", "cfg", "--from-literal=a=b"]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "s",
        "--from-literal=p=hunter2",
    ]);
    assert_eq!(
        c.ok(&[&token, "get", "configmaps", "cfg", "-o", "name"])
            .trim(),
        "configmap/cfg"
    );
    let err = c.fails(&[&token, "get", "secret", "s", "-o", "json"]);
    assert!(
        err.contains("Forbidden") && !err.contains("aHVudGVyMg"),
        "{err}"
    );
    let err = c.fails(&[&token, "create", "configmap", "x", "--from-literal=a=b"]);
    assert!(err.contains("is forbidden"), "{err}");
    // `auth can-i` answers for the asking user (and exits 1 for "no").
    assert_eq!(
        c.ok(&[&token, "auth", "can-i", "list", "pods"]).trim(),
        "yes"
    );
    let out = c.run(&[&token, "auth", "can-i", "create", "pods"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
    assert_eq!(c.ok(&["auth", "can-i", "create", "pods"]).trim(), "yes");
}

#[test]
fn kubectl_get_watch_prints_the_servers_table_rows() {
    get_watch_prints_the_servers_table_rows(&Cluster::start());
}

#[test]
fn kubectl_1_20_get_watch_prints_the_servers_table_rows() {
    get_watch_prints_the_servers_table_rows(&Cluster::start_1_20());
}

fn get_watch_prints_the_servers_table_rows(c: &Cluster) {
    let cm = |name: &str, keys: usize| {
        let data: String = (0..keys).map(|i| format!("  k{i}: v\n")).collect();
        c.file(
            &format!("{name}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{data}"),
        )
    };
    c.ok(&["apply", "-f", &cm("first", 1)]);
    let mut watcher = c
        .command()
        .args(["get", "configmaps", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn kubectl get --watch");
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = || {
        let line = rx
            .recv_timeout(PATIENCE)
            .expect("kubectl get --watch printed nothing more");
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(next()[..], ["NAME", "DATA", "AGE"]);
    assert_eq!(next()[..2], ["first", "1"]);
    // The watch event's Table row carries the server's DATA column.
    c.ok(&["apply", "-f", &cm("second", 3)]);
    assert_eq!(next()[..2], ["second", "3"]);
    let _ = watcher.kill();
    let _ = watcher.wait();
    reader.join().unwrap();
}
