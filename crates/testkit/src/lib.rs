//! Fixtures for bosun's tests. A dev-dependency only.
//!
//! - [`require_root`]: root tests fail loudly when not root, never skip.
//! - [`Bundle`]: an OCI bundle around a busybox rootfs built from Debian's
//!   `busybox-static`, with a config you can edit as JSON.
//! - [`ConsoleSocket`]: the receiving end of `--console-socket`.
//! - [`unique_id`]: container ids that do not collide across parallel tests.
#![allow(clippy::print_stdout, reason = "test helpers")]

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Panic unless running as root: a root test must never pass by skipping.
pub fn require_root() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (namespaces, cgroups, mounts); run the suite as root"
    );
}

/// A container id unique to this process and call.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Build a busybox rootfs at `dir`: the static binary plus one symlink per applet.
pub fn busybox_rootfs(dir: &Path) -> std::io::Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin)?;
    for d in [
        "proc", "sys", "dev", "etc", "tmp", "root", "usr/bin", "sbin",
    ] {
        std::fs::create_dir_all(dir.join(d))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("copy {BUSYBOX} (install busybox-static): {e}"),
        )
    })?;
    let out = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            symlink("busybox", bin.join(applet))?;
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnobody:x:65534:\n")?;
    std::fs::write(dir.join("etc/hostname"), "busybox\n")?;
    Ok(())
}

/// A busybox rootfs at `dir` plus the host's C toolchain (gcc, as, ld and what
/// they load, the static libc): enough to build a static C program inside a
/// container with `gcc -static`, without any network. Needs `build-essential`.
pub fn toolchain_rootfs(dir: &Path) -> std::io::Result<()> {
    busybox_rootfs(dir)?;
    let which = |prog: &str| -> std::io::Result<PathBuf> {
        let out = std::process::Command::new("gcc")
            .arg(format!("-print-prog-name={prog}"))
            .output()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("gcc (install build-essential): {e}"))
            })?;
        let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let path = if name.contains('/') {
            PathBuf::from(name)
        } else {
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()?;
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        };
        std::fs::canonicalize(&path)
    };
    let gcc = std::fs::canonicalize("/usr/bin/gcc")?;
    let mut programs = vec![gcc.clone()];
    for prog in ["cc1", "collect2", "lto-wrapper", "as", "ld"] {
        programs.push(which(prog)?);
    }
    let gcc_lib = which("cc1")?
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| std::io::Error::other("cc1 has no directory"))?;
    let mut files: Vec<PathBuf> = programs.clone();
    for entry in std::fs::read_dir(&gcc_lib)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".o") || name.ends_with(".a") || name == "liblto_plugin.so" {
            files.push(path);
        }
    }
    for f in ["crt1.o", "crti.o", "crtn.o", "libc.a"] {
        files.push(PathBuf::from("/usr/lib/x86_64-linux-gnu").join(f));
    }
    // Every C compilation includes this one implicitly.
    files.push(PathBuf::from("/usr/include/stdc-predef.h"));
    // The shared libraries every program (and the LTO plugin) loads.
    let mut libs = Vec::new();
    for f in programs.iter().chain([&gcc_lib.join("liblto_plugin.so")]) {
        let out = std::process::Command::new("ldd").arg(f).output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.push(PathBuf::from(p));
            }
        }
    }
    for f in files.iter().chain(&libs) {
        let dest = dir.join(f.strip_prefix("/").unwrap_or(f));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // Follows links: the image gets the real files under the names used.
        std::fs::copy(f, &dest)
            .map_err(|e| std::io::Error::new(e.kind(), format!("copy {}: {e}", f.display())))?;
    }
    // `lib64` holds the dynamic loader's canonical path on amd64.
    for (link, target) in [
        ("usr/bin/gcc", gcc.as_path()),
        ("usr/bin/cc", gcc.as_path()),
    ] {
        let _ = std::fs::remove_file(dir.join(link));
        symlink(target, dir.join(link))?;
    }
    for prog in ["as", "ld"] {
        let real = which(prog)?;
        let link = dir.join("usr/bin").join(prog);
        if !link.exists() {
            symlink(&real, &link)?;
        }
    }
    Ok(())
}

/// An OCI bundle in a temp directory: `config.json` and a busybox `rootfs`.
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
    pub config: Value,
}

impl Bundle {
    /// A busybox bundle with bosun's default spec, no terminal, writable root.
    pub fn busybox() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bosun-bundle-")
            .tempdir()
            .expect("temp dir");
        busybox_rootfs(&dir.path().join("rootfs")).expect("busybox rootfs");
        let mut config =
            serde_json::to_value(bosun_runtime::default_spec(None)).expect("spec json");
        config["process"]["terminal"] = Value::Bool(false);
        config["root"]["readonly"] = Value::Bool(false);
        config["root"]["path"] = Value::String("rootfs".into());
        let b = Self { dir, config };
        b.save();
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Set `process.args` and save.
    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.config["process"]["args"] = args.iter().map(|a| Value::String((*a).into())).collect();
        self.save();
        self
    }

    /// Edit the config as JSON and save.
    pub fn edit(&mut self, f: impl FnOnce(&mut Value)) -> &mut Self {
        f(&mut self.config);
        self.save();
        self
    }

    pub fn save(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("config json");
        std::fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

/// The listening end of `--console-socket`: receives the pty master the runtime sends.
#[derive(Debug)]
pub struct ConsoleSocket {
    _dir: tempfile::TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bosun-console-")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        Self {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accept one connection and receive the terminal master sent over it.
    pub fn receive(&self) -> OwnedFd {
        let (stream, _) = self.listener.accept().expect("accept console connection");
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = nix::sys::socket::recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .expect("recvmsg on console socket");
        for c in msg.cmsgs().expect("control messages") {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the descriptor was just received over SCM_RIGHTS; we own it.
                #[allow(unsafe_code, reason = "taking ownership of a received descriptor")]
                return unsafe { OwnedFd::from_raw_fd(fds[0]) };
            }
        }
        panic!("no descriptor received on the console socket");
    }
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}
