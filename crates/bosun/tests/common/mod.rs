//! Shared helpers for the runtime's end-to-end tests: drive the real binary the
//! way podman or containerd would.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    reason = "each test file uses a different subset"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod engine;

use serde_json::Value;

pub use bosun_testkit::{Bundle, ConsoleSocket, require_root, unique_id};

pub fn bosun() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bosun"))
}

/// A runtime state root of our own, cleaned up (containers force-deleted) on drop.
pub struct Rt {
    root: tempfile::TempDir,
}

impl Rt {
    pub fn new() -> Self {
        require_root();
        Self {
            root: tempfile::Builder::new()
                .prefix("bosun-rt-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(bosun());
        c.arg("runtime").arg("--root").arg(self.root.path());
        c
    }

    /// Run a runtime command with stdin closed and both streams captured.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn bosun")
    }

    /// Run a runtime command that must succeed; returns stdout.
    ///
    /// Output goes through files, not pipes: a created container inherits the
    /// runtime's stdio, and a pipe would stay open for as long as it lives.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.exec_files(args);
        assert!(
            out.status.success(),
            "bosun runtime {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Like `exec`, with stdout and stderr sent to temp files.
    pub fn exec_files(&self, args: &[&str]) -> Output {
        let mut out = tempfile::tempfile().unwrap();
        let mut err = tempfile::tempfile().unwrap();
        let status = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(err.try_clone().unwrap())
            .status()
            .expect("spawn bosun");
        let read = |f: &mut std::fs::File| {
            use std::io::{Read, Seek};
            let mut v = Vec::new();
            f.seek(std::io::SeekFrom::Start(0)).unwrap();
            f.read_to_end(&mut v).unwrap();
            v
        };
        Output {
            status,
            stdout: read(&mut out),
            stderr: read(&mut err),
        }
    }

    /// `run` a bundle in the foreground; returns (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle, id: &str) -> (i32, String, String) {
        let out = self.exec(&["run", "--bundle", bundle.path().to_str().unwrap(), id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `run` that must exit 0; returns stdout.
    pub fn run_ok(&self, bundle: &Bundle, id: &str) -> String {
        let (code, out, err) = self.run(bundle, id);
        assert_eq!(
            code, 0,
            "container {id} exited {code}; stdout: {out}; stderr: {err}"
        );
        out
    }

    /// create (stdio detached to /dev/null) + start.
    pub fn start_detached(&self, bundle: &Bundle, id: &str) {
        self.ok(&["create", "--bundle", bundle.path().to_str().unwrap(), id]);
        self.ok(&["start", id]);
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state json")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Poll until `cond` holds (bounded: 10 s).
    pub fn wait_until(&self, mut cond: impl FnMut() -> bool) {
        for _ in 0..2000 {
            if cond() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("condition not reached within 10 s");
    }

    /// Poll until the container reports `status` (bounded: 10 s).
    pub fn wait_status(&self, id: &str, status: &str) {
        for _ in 0..2000 {
            if self.status(id) == status {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!(
            "container {id} never became {status} (is {})",
            self.status(id)
        );
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.root.path()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.exec(&["delete", "--force", &id]);
            }
        }
    }
}

/// Give the bundle its own cgroup path so a test can look for leftovers.
pub fn own_cgroup(bundle: &mut Bundle, id: &str) -> String {
    let path = format!("/bosun-test/{id}");
    bundle.edit(|c| c["linux"]["cgroupsPath"] = Value::String(path.clone()));
    path
}

/// Every directory this cgroup path would have under any mounted hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = entry.path().join(path.trim_start_matches('/'));
        if p.exists() {
            out.push(p);
        }
    }
    let unified = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
    if unified.exists() && !out.contains(&unified) {
        out.push(unified);
    }
    out
}

pub fn mount_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count()
}

/// A minimal seccomp profile: allow everything except the named syscalls, which
/// fail with `errno`.
pub fn deny_syscalls(names: &[&str], errno: u32) -> Value {
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [{ "names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno }]
    })
}
