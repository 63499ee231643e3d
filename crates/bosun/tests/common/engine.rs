//! A `bosun engine` of a test's own: its data dir, socket, exec root, bridge,
//! subnet and nftables table are unique, so tests run side by side; on drop
//! every container is removed, the engine stopped, and its bridge and table
//! deleted, and the test fails if a mount, veth or process of it is left.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{bosun, require_root};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct TestEngine {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub exec_root: PathBuf,
    pub socket: PathBuf,
    pub bridge: String,
    pub table: String,
    pub subnet_third: u32,
    /// Daemon flags beyond the harness's own (kept for restarts).
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl TestEngine {
    /// A running engine with the `busybox` image (a static busybox rootfs
    /// with /var/www/index.html) in its store.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`Self::start`], with more `bosun engine` flags
    /// (`--userns-remap default`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        require_root();
        assert!(
            Command::new("docker").arg("--version").output().is_ok(),
            "the docker CLI is needed by this test"
        );
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Distinct per process and per engine within it.
        let tag = (std::process::id() % 997) * 8 + n;
        let dir = tempfile::Builder::new()
            .prefix("bosun-eng-")
            .tempdir()
            .unwrap();
        // Searchable (not listable) by others, as /var/lib is: under
        // `--userns-remap` the runtime reaches the rootfs as the mapped root.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )
        .unwrap();
        let data = dir.path().join("data");
        let short = format!("{:x}", tag);
        let exec_root = PathBuf::from(format!("/run/bosun-test/e{short}"));
        let _ = std::fs::remove_dir_all(&exec_root);
        let mut engine = Self {
            socket: exec_root.join("engine.sock"),
            exec_root,
            data,
            bridge: format!("bt{short}"),
            table: format!("bosuntest{short}"),
            subnet_third: 100 + tag % 150,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            dir,
            child: None,
        };
        engine.import_busybox();
        engine.spawn();
        engine
    }

    fn import_busybox(&self) {
        let rootfs = self.dir.path().join("rootfs");
        bosun_testkit::busybox_rootfs(&rootfs).unwrap();
        std::fs::create_dir_all(rootfs.join("var/www")).unwrap();
        std::fs::write(rootfs.join("var/www/index.html"), "hello-from-bosun\n").unwrap();
        let tarball = self.dir.path().join("busybox.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success());
        let out = Command::new(bosun())
            .args(["image", "--data-dir"])
            .arg(&self.data)
            .arg("import")
            .arg(&tarball)
            .arg("busybox:latest")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn subnet(&self) -> String {
        format!("10.89.{}.0/24", self.subnet_third)
    }

    pub fn gateway(&self) -> String {
        format!("10.89.{}.1", self.subnet_third)
    }

    /// Start the engine process and wait until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("engine.log")).unwrap();
        let child = Command::new(bosun())
            .arg("engine")
            .arg("--data-dir")
            .arg(&self.data)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .arg("--exec-root")
            .arg(&self.exec_root)
            .args([
                "--bridge",
                &self.bridge,
                "--subnet",
                &self.subnet(),
                "--nft-table",
                &self.table,
            ])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn bosun engine");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                let _ = s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.contains("200 OK") {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the engine exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the engine did not answer within 60 s: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("engine.log")).unwrap_or_default()
    }

    /// SIGKILL the engine, as a crash would; containers stay.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM the engine and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if c.try_wait().unwrap().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("the engine did not stop on SIGTERM");
        }
    }

    pub fn docker_command(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT");
        c
    }

    /// Run the docker CLI with stdin closed.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Run the docker CLI; it must succeed; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}\nengine log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Poll `f` until it is true or 60 s pass (a slow, loaded machine).
    pub fn eventually(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{what}: not within 60 s\nengine log:\n{}", self.log());
    }

    /// What `GET path` on `addr` answers (a minimal HTTP/1.0 client).
    pub fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }

    /// nftables rules in our table that carry an owner (published ports).
    pub fn owned_rules(&self) -> usize {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.table])
            .output()
            .unwrap();
        // The networks' own NAT rules carry `net-…`; containers' carry their id.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("comment \"") && !l.contains("comment \"net-"))
            .count()
    }

    /// Interfaces whose master is our bridge.
    pub fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    fn mounts_under(path: &Path) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .filter(|m| Path::new(m).starts_with(path))
            .collect()
    }
}

impl Drop for TestEngine {
    fn drop(&mut self) {
        let mut leftovers = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        if self.child.is_some() {
            let listed = self.docker(&["ps", "-aq", "--no-trunc"]);
            ids = String::from_utf8_lossy(&listed.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            for id in &ids {
                let _ = self.docker(&["rm", "-f", id]);
            }
            // Networks a failed test left: their bridges would outlive the engine.
            let _ = self.docker(&["network", "prune", "-f"]);
            if self.owned_rules() != 0 {
                leftovers.push(format!("{} published-port rules", self.owned_rules()));
            }
            if self.veths() != 0 {
                leftovers.push(format!("{} veths on {}", self.veths(), self.bridge));
            }
            self.stop();
        }
        let mounts = Self::mounts_under(self.dir.path());
        for m in &mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        if !mounts.is_empty() {
            leftovers.push(format!("mounts {mounts:?}"));
        }
        let shims = Command::new("pgrep")
            .args(["-f", &format!("engine-shim.*{}", self.exec_root.display())])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0);
        if shims != 0 {
            let _ = Command::new("pkill")
                .args([
                    "-9",
                    "-f",
                    &format!("engine-shim.*{}", self.exec_root.display()),
                ])
                .status();
            leftovers.push(format!("{shims} shims"));
        }
        // Every container's cgroups (spec cgroupsPath /bosun-<id>) are gone.
        for id in &ids {
            let left: Vec<String> = std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|c| c.path().join(format!("bosun-{id}")))
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect();
            if !left.is_empty() {
                leftovers.push(format!("cgroups {left:?}"));
            }
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
        let _ = std::fs::remove_dir_all(&self.exec_root);
        if !std::thread::panicking() {
            assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        }
    }
}
