//! A `bosun server` for kubectl tests (auth, controllers): its own data
//! directory, free loopback port, kubectl HOME and cache; killed on drop.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::common::bosun;

/// Guards against a hang; never a performance bound.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

/// Waits until `done` holds, failing after [`PATIENCE`] with `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < PATIENCE, "gave up waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A running `bosun server`, killed when the test ends however it ends.
pub struct Cluster {
    child: Child,
    pub dir: tempfile::TempDir,
    pub addr: String,
    kubectl: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest kubectl: the one on PATH, or $BOSUN_KUBECTL.
fn kubectl() -> String {
    std::env::var("BOSUN_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned())
}

/// kubectl 1.20: $BOSUN_KUBECTL_1_20, else Debian's `kubernetes-client` as
/// scripts/install-deps.sh unpacks it.
pub fn kubectl_1_20() -> String {
    std::env::var("BOSUN_KUBECTL_1_20")
        .unwrap_or_else(|_| "/opt/kubectl-1.20/usr/bin/kubectl".to_owned())
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A server driven by the kubectl at `program` (which must exist: a
    /// missing one fails the test rather than skipping it).
    pub fn start_for(program: &str) -> Cluster {
        let found = Command::new(program)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{program} is needed by this test (BOSUN_KUBECTL_1_20, or \
             scripts/install-deps.sh unpacks it into /opt/kubectl-1.20)"
        );
        let mut c = Cluster::start_with(&[]);
        c.kubectl = program.to_owned();
        c
    }

    /// A server with more flags.
    pub fn start_with(flags: &[&str]) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("bosun-cluster-")
            .tempdir()
            .unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        let mut child = Command::new(bosun())
            .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(flags)
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
            kubectl: kubectl(),
        }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn admin(&self) -> PathBuf {
        self.data().join("admin.kubeconfig")
    }

    pub fn run_as(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", self.dir.path().join("home"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn kubectl")
    }

    /// kubectl as `kubeconfig`'s user, which must succeed; returns stdout.
    pub fn ok_as(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.run_as(kubeconfig, args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl as `kubeconfig`'s user, which must fail; returns stderr.
    pub fn fails_as(&self, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.run_as(kubeconfig, args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should have failed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_as(&self.admin(), args)
    }

    /// kubectl as the admin, which must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_as(&self.admin(), args)
    }

    /// `kubectl get ... -o json`, or `None` if it is not there.
    pub fn get(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = vec!["get"];
        all.extend(args);
        all.extend(["-o", "json"]);
        let out = self.run_as(&self.admin(), &all);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("NotFound"), "kubectl {all:?}: {err}");
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap())
    }

    /// kubectl as the admin, left running.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new(&self.kubectl)
            .env("KUBECONFIG", self.admin())
            .env("HOME", self.dir.path().join("home"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl")
    }

    pub fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// `bosun server certs`: a kubeconfig with a client certificate.
    pub fn certs(&self, out: &str, user: &str, groups: &[&str]) -> PathBuf {
        let out = self.dir.path().join(out);
        let mut cmd = Command::new(bosun());
        cmd.args(["server", "certs", "--data-dir"])
            .arg(self.data())
            .args(["--user", user, "--out"])
            .arg(&out);
        for g in groups {
            cmd.args(["--group", g]);
        }
        let done = cmd.output().expect("spawn bosun server certs");
        assert!(
            done.status.success(),
            "bosun server certs: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let path = String::from_utf8_lossy(&done.stdout).trim().to_owned();
        assert_eq!(PathBuf::from(&path), out.join("kubeconfig"));
        out.join("kubeconfig")
    }

    /// A kubeconfig for this server with a bearer token.
    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        let admin = std::fs::read_to_string(self.admin()).unwrap();
        let ca = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
            .unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    \
                 server: https://{}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  \
                 user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    \
                 user: u\n    namespace: default\ncurrent-context: c\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// A raw HTTPS request with curl (what the body of a refusal says).
    pub fn curl(&self, extra: &[&str], path: &str) -> (u16, String) {
        let ca = self.data().join("pki/ca.crt");
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&ca)
            .args(extra)
            .args(["-w", "\n%{http_code}"])
            .arg(format!("https://{}{path}", self.addr))
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }
}

/// A running `bosun sim-nodes` (its nodes Ready), killed when dropped.
pub struct SimNodes {
    child: Child,
    pub prefix: String,
    pub count: usize,
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimNodes {
    /// The name of node `i`.
    pub fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// SIGTERM, as an operator stops it; waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal sim-nodes");
        self.child.wait().expect("wait for sim-nodes")
    }
}

impl Cluster {
    /// `count` simulated nodes `sim-0` … (see `bosun sim-nodes --help`),
    /// returned once all of them are Ready.
    pub fn sim_nodes(&self, count: usize) -> SimNodes {
        self.sim_nodes_with("sim", count, &[])
    }

    /// Simulated nodes named `prefix-N`, with more flags.
    pub fn sim_nodes_with(&self, prefix: &str, count: usize, flags: &[&str]) -> SimNodes {
        let child = Command::new(bosun())
            .arg("sim-nodes")
            .arg("--kubeconfig")
            .arg(self.admin())
            .args(["--count", &count.to_string(), "--prefix", prefix])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn bosun sim-nodes");
        let mut sim = SimNodes {
            child,
            prefix: prefix.to_owned(),
            count,
        };
        let names: Vec<String> = (0..count).map(|i| sim.node(i)).collect();
        wait_until(&format!("{count} simulated nodes are Ready"), || {
            if let Ok(Some(status)) = sim.child.try_wait() {
                panic!("bosun sim-nodes exited early: {status}");
            }
            let Some(list) = self.get(&["nodes"]) else {
                return false;
            };
            let ready = |n: &serde_json::Value| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            };
            let items = list["items"].as_array().cloned().unwrap_or_default();
            names.iter().all(|name| {
                items
                    .iter()
                    .any(|n| n["metadata"]["name"] == name.as_str() && ready(n))
            })
        });
        sim
    }
}
