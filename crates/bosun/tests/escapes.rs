//! The container-escape classes the runtime must resist, each attack reproduced
//! against a real container; next to each, the same attack shown to work where
//! the guard is absent, so that none of these tests can pass vacuously.

mod common;

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::json;

/// The host's bosun binary as it is now: held open, so that a rebuild of the
/// test binary (a new file at the same path) is not mistaken for an overwrite.
struct HostBinary(File);

impl HostBinary {
    fn hold() -> Self {
        Self(File::open(bosun()).unwrap())
    }

    fn sha256(&self) -> String {
        sha256(Path::new(&format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        )))
    }

    fn dev_ino(&self) -> (u64, u64) {
        let m = self.0.metadata().unwrap();
        (
            std::os::unix::fs::MetadataExt::dev(&m),
            std::os::unix::fs::MetadataExt::ino(&m),
        )
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// What an attacker keeps of a process's executable: an `O_PATH` descriptor
/// of `/proc/PID/exe`, which outlives the process.
fn hold_exe(pid: i64) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap()
}

/// The second half of CVE-2019-5736: reopen the held executable for writing.
fn reopen_for_writing(held: &File) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", held.as_raw_fd()))
}

fn on_read_only_mount(held: &File) -> bool {
    let st =
        nix::sys::statvfs::statvfs(format!("/proc/self/fd/{}", held.as_raw_fd()).as_str()).unwrap();
    st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
}

fn pid_of(rt: &Rt, id: &str) -> i64 {
    rt.state(id)["pid"].as_i64().unwrap()
}

/// The refusal a write to the runtime's view gets: EROFS, or ETXTBSY while some
/// other `bosun` (a test running beside this one) executes the same file.
fn assert_write_refused(held: &File) {
    match reopen_for_writing(held) {
        Ok(_) => panic!("the runtime binary was reopened for writing"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::EROFS | libc::ETXTBSY)),
            "unexpected error {e}"
        ),
    }
}

// --- 1. /proc/self/exe (CVE-2019-5736) ---------------------------------------

#[test]
fn runtime_exe_cannot_be_reopened_for_writing() {
    let rt = Rt::new();
    let host = HostBinary::hold();
    let before = host.sha256();
    let mut b = Bundle::busybox();
    b.args(&["true"]);
    let id = unique_id("exe");
    // A created container's process is the runtime, waiting to exec.
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let held = hold_exe(pid_of(&rt, &id));
    assert!(
        on_read_only_mount(&held),
        "the runtime's /proc/PID/exe is on a writable mount"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_write_refused(&held);
    assert_eq!(host.sha256(), before, "the host's bosun binary changed");
}

#[test]
fn plain_exe_can_be_reopened_for_writing() {
    // Guard absent: a binary started without the runtime's protection, attacked
    // the same way, is written through /proc/PID/exe once its process is gone.
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sleep");
    std::fs::copy(bosun_testkit::BUSYBOX, &copy).unwrap();
    let before = sha256(&copy);
    // Named `sleep`, busybox runs its sleep applet.
    let mut child = Command::new(&copy).arg("60").spawn().unwrap();
    let held = hold_exe(i64::from(child.id()));
    assert!(!on_read_only_mount(&held));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut w = reopen_for_writing(&held).expect("a plain exe reopens for writing");
    std::io::Write::write_all(&mut w, b"overwritten").unwrap();
    drop(w);
    assert_ne!(sha256(&copy), before);
}

#[test]
fn shebang_proc_self_exe_gets_a_read_only_runtime() {
    // The image's entry point names the runtime as its interpreter: the kernel
    // resolves /proc/self/exe while the runtime execs it, so the container's
    // process runs the runtime's own file. It is made to wait (a bosun client
    // waiting for an answer on a socket we hold) while we look at it.
    let rt = Rt::new();
    let host = HostBinary::hold();
    let before = host.sha256();
    let hold = tempfile::tempdir().unwrap();
    let listener = std::os::unix::net::UnixListener::bind(hold.path().join("s")).unwrap();
    let mut b = Bundle::busybox();
    let evil = b.rootfs().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe logs\n").unwrap();
    std::fs::set_permissions(&evil, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hold_dir = hold.path().to_str().unwrap().to_owned();
    b.edit(|c| {
        c["process"]["args"] = json!(["/evil"]);
        c["process"]["env"]
            .as_array_mut()
            .unwrap()
            .push(json!("BOSUN_HOST=unix:///hold/s"));
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/hold", "type": "bind", "source": hold_dir, "options": ["rbind"]
        }));
    });
    // A test build of bosun is dynamically linked: lend it the host's loader.
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for dir in [
            "/lib64",
            "/lib/x86_64-linux-gnu",
            "/usr/lib/x86_64-linux-gnu",
        ] {
            if Path::new(dir).exists() {
                mounts.push(json!({
                    "destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro"]
                }));
            }
        }
    });
    let id = unique_id("shebang");
    rt.start_detached(&b, &id);
    let mut conn = accept_while_running(&rt, &id, &listener);
    let mut request = [0u8; 256];
    let n = std::io::Read::read(&mut conn, &mut request).unwrap();
    assert!(
        String::from_utf8_lossy(&request[..n]).contains("HTTP/1.1"),
        "not a bosun client's request: {:?}",
        String::from_utf8_lossy(&request[..n])
    );
    let pid = pid_of(&rt, &id);
    let held = hold_exe(pid);
    let meta = held.metadata().unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::dev(&meta),
            std::os::unix::fs::MetadataExt::ino(&meta)
        ),
        host.dev_ino(),
        "the container's process is not the runtime's file"
    );
    assert!(
        on_read_only_mount(&held),
        "the container's process runs the runtime from a writable mount"
    );
    rt.ok(&["delete", "--force", &id]);
    assert_write_refused(&held);
    assert_eq!(host.sha256(), before, "the host's bosun binary changed");
}

/// Accept the container's connection; fails (instead of hanging) if the
/// container stops first.
fn accept_while_running(
    rt: &Rt,
    id: &str,
    listener: &std::os::unix::net::UnixListener,
) -> std::os::unix::net::UnixStream {
    listener.set_nonblocking(true).unwrap();
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false).unwrap();
                return conn;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let status = rt.status(id);
                assert_eq!(status, "running", "the container never connected");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn container_cannot_open_the_runtime_while_it_sets_up() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sleep", "60"]);
    let id = unique_id("dumpable");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let probe = [
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/exe > /dev/null 2>&1 && echo readable || echo denied; readlink /proc/1/fd/0 > /dev/null 2>&1 && echo fds || echo no-fds",
    ];
    // PID 1 is still the runtime: neither its binary nor its descriptors.
    assert_eq!(rt.ok(&probe), "denied\nno-fds\n");
    // Guard absent: once PID 1 is the container's own program, the same probe
    // reaches it.
    rt.ok(&["start", &id]);
    rt.wait_status(&id, "running");
    assert_eq!(rt.ok(&probe), "readable\nfds\n");
}

// --- 2. Leaked descriptors and working directory (CVE-2024-21626) ------------

/// Run `bosun runtime ARGS` with a host directory open on descriptor `fd`,
/// inherited without close-on-exec (what a careless caller leaks).
fn with_host_fd(rt: &Rt, fd: u8, host_dir: &Path, args: &[&str]) -> std::process::Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("exec {fd}<\"$1\"; shift; exec \"$@\""))
        .arg("sh")
        .arg(host_dir)
        .arg(bosun())
        .arg("runtime")
        .arg("--root")
        .arg(rt.root())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    let read = |mut f: File| {
        use std::io::{Read, Seek};
        let mut s = String::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut s).unwrap();
        s.into_bytes()
    };
    std::process::Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

fn host_dir_with_marker() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("host-marker"), "host").unwrap();
    dir
}

fn fd_list(out: &std::process::Output) -> Vec<u32> {
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fds: Vec<u32> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

#[test]
fn host_fds_do_not_reach_the_container() {
    let rt = Rt::new();
    let host = host_dir_with_marker();
    let mut b = Bundle::busybox();
    // The glob's directory is the only descriptor the shell itself opens (3).
    b.args(&["sh", "-c", "cd /proc/self/fd && echo *"]);
    let bundle = b.path().to_str().unwrap().to_owned();
    let id = unique_id("fds");
    let out = with_host_fd(&rt, 9, host.path(), &["run", "--bundle", &bundle, &id]);
    assert_eq!(fd_list(&out), [0, 1, 2, 3], "init");
    // The same through exec, into a running container.
    b.args(&["sleep", "60"]);
    let id = unique_id("fdsx");
    rt.start_detached(&b, &id);
    let out = with_host_fd(
        &rt,
        9,
        host.path(),
        &["exec", &id, "sh", "-c", "cd /proc/self/fd && echo *"],
    );
    assert_eq!(fd_list(&out), [0, 1, 2, 3], "exec");
}

#[test]
fn preserved_fds_do_reach_the_container() {
    // Guard visibly off: a descriptor passed on purpose is the host directory.
    let rt = Rt::new();
    let host = host_dir_with_marker();
    let mut b = Bundle::busybox();
    b.args(&["ls", "/proc/self/fd/3/"]);
    let bundle = b.path().to_str().unwrap().to_owned();
    let id = unique_id("keep");
    let out = with_host_fd(
        &rt,
        3,
        host.path(),
        &["run", "--preserve-fds", "1", "--bundle", &bundle, &id],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "host-marker\n");
}

#[test]
fn cwd_through_a_descriptor_is_refused() {
    let rt = Rt::new();
    let host = host_dir_with_marker();
    let mut b = Bundle::busybox();
    b.args(&["touch", "escaped"]);
    let bundle = b.path().to_str().unwrap().to_owned();
    // Leaked (closed before the lookup) and passed on purpose (a magic link,
    // refused): the working directory never becomes the host's directory.
    for (fd, extra) in [(9u8, None), (3, Some("1"))] {
        b.edit(|c| c["process"]["cwd"] = json!(format!("/proc/self/fd/{fd}")));
        let id = unique_id("cwd");
        let mut args = vec!["run"];
        if let Some(n) = extra {
            args.extend(["--preserve-fds", n]);
        }
        args.extend(["--bundle", &bundle, &id]);
        let out = with_host_fd(&rt, fd, host.path(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fd {fd}: the container ran");
        assert!(err.contains("process.cwd"), "fd {fd}: {err}");
        assert!(!rt.root().join(&id).exists(), "fd {fd}: state left behind");
    }
    // exec --cwd, into a running container.
    b.args(&["sleep", "60"]);
    b.edit(|c| c["process"]["cwd"] = json!("/"));
    let id = unique_id("cwdx");
    rt.start_detached(&b, &id);
    let out = with_host_fd(
        &rt,
        3,
        host.path(),
        &[
            "exec",
            "--preserve-fds",
            "1",
            "--cwd",
            "/proc/self/fd/3",
            &id,
            "touch",
            "escaped",
        ],
    );
    assert!(!out.status.success(), "exec ran");
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.cwd"));
    let names: Vec<_> = std::fs::read_dir(host.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["host-marker"], "the host directory changed");
}

// --- 3. Symlinks in the rootfs where the runtime mounts and makes files ------

/// Host files and directories the rootfs's symlinks point at, with what they
/// held, to compare afterwards.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for f in ["hosts", "resolv.conf", "hostname", "null", "console"] {
            std::fs::write(dir.path().join(f), format!("host {f}\n")).unwrap();
        }
        for d in ["dev", "pts", "shm", "mqueue"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Relative link text from `from` (inside the rootfs) to a host path:
    /// enough `..` to climb out of any root.
    fn relative(&self, name: &str) -> String {
        format!("{}{}", "../".repeat(24), self.path(name).display())
    }

    fn assert_untouched(&self) {
        for f in ["hosts", "resolv.conf", "hostname", "null", "console"] {
            let p = self.path(f);
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert!(meta.file_type().is_file(), "{} was replaced", p.display());
            assert_eq!(
                std::fs::read_to_string(&p).unwrap(),
                format!("host {f}\n"),
                "{} changed",
                p.display()
            );
        }
        for d in ["dev", "pts", "shm", "mqueue"] {
            let p = self.path(d);
            assert_eq!(
                std::fs::read_dir(&p).unwrap().count(),
                0,
                "something was made in {}",
                p.display()
            );
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(self.dir.path().to_str().unwrap()),
            "a mount landed outside the rootfs"
        );
    }
}

/// The files the engine bind-mounts over the image's (`/etc/hosts`, …).
fn bind_etc_files(b: &mut Bundle) {
    for f in ["hosts", "resolv.conf", "hostname"] {
        std::fs::write(b.path().join(f), format!("bundle {f}\n")).unwrap();
    }
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        for f in ["hosts", "resolv.conf", "hostname"] {
            mounts.push(json!({
                "destination": format!("/etc/{f}"), "type": "bind",
                "source": f, "options": ["rbind", "rprivate"]
            }));
        }
    });
}

#[test]
fn etc_files_and_dev_through_symlinks_stay_inside() {
    let rt = Rt::new();
    let out = Outside::new();
    let mut b = Bundle::busybox();
    let root = b.rootfs();
    let _ = std::fs::remove_file(root.join("etc/hostname"));
    symlink(out.path("hosts"), root.join("etc/hosts")).unwrap();
    symlink(out.relative("resolv.conf"), root.join("etc/resolv.conf")).unwrap();
    symlink(out.path("hostname"), root.join("etc/hostname")).unwrap();
    // All of /dev (the tmpfs, pts, shm, mqueue, device nodes) through one link.
    let _ = std::fs::remove_dir_all(root.join("dev"));
    symlink(out.path("dev"), root.join("dev")).unwrap();
    bind_etc_files(&mut b);
    b.args(&[
        "sh",
        "-c",
        "cat /etc/hosts /etc/resolv.conf /etc/hostname; echo x > /dev/null && echo null-ok; test -d /dev/pts && test -d /dev/shm && echo dirs-ok",
    ]);
    let got = rt.run_ok(&b, &unique_id("etc"));
    assert_eq!(
        got,
        "bundle hosts\nbundle resolv.conf\nbundle hostname\nnull-ok\ndirs-ok\n"
    );
    out.assert_untouched();
    // Guard absent: the same link followed by a plain write lands on the host.
    std::fs::write(root.join("etc/hosts"), "written through the link\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(out.path("hosts")).unwrap(),
        "written through the link\n"
    );
}

#[test]
fn dev_entries_through_symlinks_stay_inside() {
    // No tmpfs on /dev: the image's own /dev, whose entries are links out.
    let rt = Rt::new();
    let out = Outside::new();
    let mut b = Bundle::busybox();
    let root = b.rootfs();
    let dev = root.join("dev");
    let _ = std::fs::remove_dir_all(&dev);
    std::fs::create_dir_all(&dev).unwrap();
    symlink(out.path("null"), dev.join("null")).unwrap();
    symlink(out.relative("console"), dev.join("console")).unwrap();
    symlink(out.path("pts"), dev.join("pts")).unwrap();
    symlink(out.relative("shm"), dev.join("shm")).unwrap();
    symlink(out.path("mqueue"), dev.join("mqueue")).unwrap();
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/dev");
    });
    b.args(&[
        "sh",
        "-c",
        "test -c /dev/null && echo null-is-a-device; test -d /dev/pts && test -d /dev/shm && echo dirs-ok",
    ]);
    let got = rt.run_ok(&b, &unique_id("dev"));
    assert_eq!(got, "null-is-a-device\ndirs-ok\n");
    out.assert_untouched();
    // Guard absent: the link, followed, is the host's file.
    assert_eq!(
        std::fs::read_to_string(dev.join("console")).unwrap(),
        "host console\n"
    );
}

#[test]
fn magic_link_mount_destinations_are_refused() {
    // /proc/self/root is the runtime's (the host's) root while it mounts: a
    // destination through it is refused, not followed.
    let rt = Rt::new();
    let out = Outside::new();
    let mut b = Bundle::busybox();
    let root = b.rootfs();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let _ = std::fs::remove_file(root.join("etc/hosts"));
    symlink(
        format!("/proc/self/root{}", out.path("hosts").display()),
        root.join("etc/hosts"),
    )
    .unwrap();
    bind_etc_files(&mut b);
    b.args(&["true"]);
    let (code, _, err) = rt.run(&b, &unique_id("magic"));
    assert_ne!(code, 0);
    assert!(err.contains("/etc/hosts"), "{err}");
    out.assert_untouched();
    // Guard absent: followed by this (host) process, the link is the host's file.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        "host hosts\n"
    );
}

#[test]
fn proc_and_sys_through_a_symlink_are_refused() {
    let rt = Rt::new();
    for dest in ["proc", "sys"] {
        let mut b = Bundle::busybox();
        let root = b.rootfs();
        std::fs::remove_dir(root.join(dest)).unwrap();
        std::fs::create_dir(root.join("elsewhere")).unwrap();
        symlink("/elsewhere", root.join(dest)).unwrap();
        b.args(&["true"]);
        let id = unique_id("procln");
        let (code, _, err) = rt.run(&b, &id);
        assert_ne!(code, 0, "{dest}");
        assert!(err.contains("symlink"), "{dest}: {err}");
        assert!(!rt.root().join(&id).exists(), "{dest}: state left behind");
    }
    // Guard absent: any other mount follows such a link (inside the root).
    let mut b = Bundle::busybox();
    let root = b.rootfs();
    std::fs::create_dir(root.join("elsewhere")).unwrap();
    symlink("/elsewhere", root.join("data")).unwrap();
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs"}))
    });
    b.args(&[
        "sh",
        "-c",
        "touch /data/x && test -e /elsewhere/x && echo followed",
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("dataln")), "followed\n");
}

/// The freezer state of an engine container's cgroup: v1's `freezer.state`,
/// or v2's `frozen` in `cgroup.events` (as FROZEN/THAWED).
fn freezer_state(id: &str) -> String {
    let v1 = format!("/sys/fs/cgroup/freezer/bosun-{id}/freezer.state");
    if let Ok(s) = std::fs::read_to_string(&v1) {
        return s.trim().to_owned();
    }
    let v2 = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|root| format!("{root}/bosun-{id}/cgroup.events"))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("no freezer for container {id}"));
    match v2.lines().any(|l| l == "frozen 1") {
        true => "FROZEN".into(),
        false => "THAWED".into(),
    }
}

/// `docker cp` resolves a path inside a running container, then uses it: a
/// container process that swaps a path component for a symlink in between
/// would redirect the copy onto the host (the CVE-2018-15664 class). The
/// engine freezes the container for the whole copy, as Docker does: while a
/// copy out is held open the container is FROZEN, before and after THAWED.
#[test]
fn docker_cp_freezes_the_container_while_it_copies() {
    use std::io::{Read, Write};
    let e = common::engine::TestEngine::start();
    let id = e
        .docker_ok(&[
            "run",
            "-d",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/big.tmp bs=1M count=32 && mv /big.tmp /big && sleep 600",
        ])
        .trim()
        .to_owned();
    e.eventually("the big file is written", || {
        e.docker(&["exec", &id, "test", "-f", "/big"])
            .status
            .success()
    });
    assert_eq!(freezer_state(&id), "THAWED");
    // A copy out whose client reads nothing stays in progress: 32 MiB do not
    // fit in the socket's and the stream's buffers.
    let mut copy = std::os::unix::net::UnixStream::connect(&e.socket).unwrap();
    copy.write_all(
        format!("GET /containers/{id}/archive?path=/big HTTP/1.1\r\nHost: docker\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut head = [0u8; 12];
    copy.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    e.eventually("the container is frozen while the copy runs", || {
        freezer_state(&id) == "FROZEN"
    });
    assert_eq!(
        e.docker_ok(&["inspect", "-f", "{{.State.Status}}", &id])
            .trim(),
        "running",
        "the freeze is the engine's own, not a pause"
    );
    drop(copy);
    e.eventually("the container thaws when the copy ends", || {
        freezer_state(&id) == "THAWED"
    });
    e.docker_ok(&["exec", &id, "true"]);
    e.docker_ok(&["rm", "-f", &id]);
}
