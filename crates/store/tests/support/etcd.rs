//! Real etcd members (Debian's `etcd-server`) on free loopback ports in a temp
//! directory, killed when the value is dropped. Missing etcd is a failure, never
//! a skip: the conformance suite must run against it.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a cluster may take to elect a leader before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct EtcdCluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

#[derive(Debug)]
struct Member {
    name: String,
    client: String,
    child: Option<Child>,
    log: PathBuf,
}

/// A port nobody listens on right now (the kernel's pick for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub(crate) fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("bosun-etcd-")
            .tempdir()
            .expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.into_iter().enumerate() {
            let name = format!("m{i}");
            let client = format!("http://127.0.0.1:{client}");
            let peer = format!("http://127.0.0.1:{peer}");
            let log = dir.path().join(format!("{name}.log"));
            let out = File::create(&log).expect("etcd log file");
            let child = Command::new("etcd")
                .args(["--name", &name])
                .arg("--data-dir")
                .arg(dir.path().join(&name))
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "bosun-test"])
                // Progress notifications are how a watch on etcd learns the
                // current revision while nothing changes (bookmarks).
                .args(["--experimental-watch-progress-notify-interval", "500ms"])
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log file"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run etcd ({e}): install Debian's etcd-server \
                         (scripts/install-deps.sh); the store's tests need it"
                    )
                });
            members.push(Member {
                name,
                client,
                child: Some(child),
                log,
            });
        }
        let cluster = EtcdCluster { dir, members };
        cluster.wait_healthy();
        cluster
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        for m in &self.members {
            loop {
                if health(&m.client) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} did not become healthy; its log:\n{}",
                    m.name,
                    std::fs::read_to_string(&m.log).unwrap_or_default()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// `http://127.0.0.1:A,http://127.0.0.1:B,...`
    pub(crate) fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn endpoint(&self, i: usize) -> &str {
        &self.members[i].client
    }

    /// SIGKILLs member `i`.
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `GET /health` answers `{"health":"true"}` once the member has a leader. A
/// blocking HTTP/1.0 exchange: the harness runs outside any runtime's IO.
fn health(client: &str) -> bool {
    use std::io::{Read, Write};
    let addr = client.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains(r#""health":"true""#)
}
