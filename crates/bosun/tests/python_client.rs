//! `bosun server` driven by the Python `kubernetes` client (Debian's
//! python3-kubernetes, run with Debian's /usr/bin/python3): lists with paging,
//! watches that resume from a resourceVersion and get bookmarks, and 410 Gone
//! for a resourceVersion that compaction removed.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::bosun;

const PYTHON: &str = "/usr/bin/python3";

/// A running `bosun server`, killed when the test ends however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(bosun())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn bosun server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on https://"), "{line:?}");
    Running(child)
}

/// Runs a Python script with the kubeconfig as its argument; it prints "ok" last.
fn python(script: &str, kubeconfig: &Path) {
    let found = Command::new(PYTHON)
        .args(["-c", "import kubernetes"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the Python kubernetes client is needed: install the Debian package \
         python3-kubernetes (scripts/install-deps.sh does)"
    );
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .arg(kubeconfig)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "python failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

const PAGING_AND_WATCH: &str = r#"
import sys
from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
for i in range(7):
    v1.create_namespaced_config_map("default", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name=f"cm-{i}", labels={"app": "py"}),
        data={"i": str(i)}))
v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="other")))

names, cont, pages = [], None, 0
while True:
    page = v1.list_namespaced_config_map(
        "default", label_selector="app=py", limit=3, _continue=cont)
    pages += 1
    names += [c.metadata.name for c in page.items]
    cont = page.metadata._continue
    if not cont:
        break
assert names == [f"cm-{i}" for i in range(7)], names
assert pages == 3, pages
listed = page.metadata.resource_version

# Changes after the list; a watch from its resourceVersion sees exactly them.
v1.patch_namespaced_config_map("cm-0", "default", {"data": {"i": "changed"}})
v1.delete_namespaced_config_map("cm-1", "default")
v1.patch_namespaced_config_map("other", "default", {"data": {"x": "y"}})
w = watch.Watch()
seen = []
for event in w.stream(v1.list_namespaced_config_map, "default",
                      label_selector="app=py", resource_version=listed,
                      allow_watch_bookmarks=True, _request_timeout=120):
    if event["type"] == "BOOKMARK":
        # Bookmarks come every --bookmark-interval; one after the changes ends the test.
        if len(seen) == 2:
            rv = event["raw_object"]["metadata"]["resourceVersion"]
            assert int(rv) >= int(listed), rv
            w.stop()
        continue
    obj = event["object"]
    seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("i")))
assert seen == [("MODIFIED", "cm-0", "changed"), ("DELETED", "cm-1", "1")], seen
print("ok")
"#;

const GONE: &str = r#"
import sys, time
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
first = v1.create_namespaced_config_map("default", client.V1ConfigMap(
    metadata=client.V1ObjectMeta(name="first")))
old = first.metadata.resource_version
# The server compacts every second; wait (bounded) until the old revision is gone.
deadline = time.time() + 120
while True:
    v1.patch_namespaced_config_map("first", "default", {"data": {"t": str(time.time())}})
    try:
        v1.list_namespaced_config_map("default", resource_version=old,
                                      resource_version_match="Exact")
    except ApiException as e:
        assert e.status == 410, e
        break
    assert time.time() < deadline, "never compacted"
    time.sleep(0.2)
try:
    for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default",
                                  resource_version=old, _request_timeout=120):
        raise AssertionError("a watch from a compacted revision delivered an event")
except ApiException as e:
    assert e.status == 410, e
print("ok")
"#;

#[test]
fn python_client_pages_watches_resumes_and_gets_bookmarks() {
    let dir = tempfile::tempdir().unwrap();
    let _server = start(dir.path(), &["--bookmark-interval", "1"]);
    python(PAGING_AND_WATCH, &dir.path().join("admin.kubeconfig"));
}

#[test]
fn python_client_gets_410_for_a_compacted_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    let _server = start(dir.path(), &["--compaction-interval", "1"]);
    python(GONE, &dir.path().join("admin.kubeconfig"));
}
