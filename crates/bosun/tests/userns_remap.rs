//! `bosun engine --userns-remap`: the docker CLI against an engine whose
//! containers run in a user namespace, checked from the host (the
//! process's uid, the owners of what it writes) and from inside; and the
//! same checks with `--userns=host` and without the flag, where root is
//! the host's root, so that none of them can pass vacuously. Root tests.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::engine::TestEngine;

const REMAP_USER: &str = "bosunremap";

/// The first id of `user`'s range in a subordinate id file, and how many
/// lines name the user there.
fn subordinate(file: &str, user: &str) -> (u32, usize) {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.split(':').next() == Some(user))
        .collect();
    assert!(!lines.is_empty(), "{file} has no range for {user}: {text}");
    let start = lines[0].split(':').nth(1).unwrap().parse().unwrap();
    (start, lines.len())
}

/// The real uid and gid of a host process (`/proc/PID/status`).
fn host_ids(pid: &str) -> (u32, u32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u32 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("Uid:"), field("Gid:"))
}

fn owner(path: &Path) -> (u32, u32) {
    let m =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.uid(), m.gid())
}

/// Runs a detached container whose script writes its findings into the
/// volume `vol` (mounted at /data) and then sleeps; returns its id, pid
/// and the volume's host path once the script is done.
fn run_probe(e: &TestEngine, extra: &[&str], vol: &str) -> (String, String, PathBuf) {
    let script = "id -u > /data/id; cat /proc/self/uid_map > /data/map; \
                  stat -c %u:%g /bin/busybox /etc/passwd > /data/image-owners; \
                  touch /data/made /made-here; echo ok > /data/done; sleep 60";
    let volume = format!("{vol}:/data");
    let mut args = vec!["run", "-d", "-v", &volume];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    let id = e.docker_ok(&args).trim().to_owned();
    let pid = e
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", &id])
        .trim()
        .to_owned();
    let data = PathBuf::from(
        e.docker_ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", vol])
            .trim(),
    );
    e.eventually("the probe's script", || data.join("done").exists());
    (id, pid, data)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// The container's upper directory (its writable layer) on the host.
fn upper(e: &TestEngine, id: &str) -> PathBuf {
    e.data.join("snapshots/active").join(id).join("upper")
}

/// A host directory owned by real root, that others may enter but not
/// write: what a bind mount of a host path looks like.
fn root_owned_dir(e: &TestEngine, name: &str) -> PathBuf {
    let dir = e.dir.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert_eq!(owner(&dir), (0, 0));
    dir
}

#[test]
fn remapped_root_is_the_subordinate_id_on_the_host_and_root_inside() {
    let mut e = TestEngine::start_with(&["--userns-remap", "default"]);
    let (uid, uid_lines) = subordinate("/etc/subuid", REMAP_USER);
    let (gid, gid_lines) = subordinate("/etc/subgid", REMAP_USER);
    assert_eq!((uid_lines, gid_lines), (1, 1));
    assert!(uid >= 100_000 && gid >= 100_000, "{uid} {gid}");

    let info = e.docker_ok(&["info", "--format", "{{.SecurityOptions}}"]);
    assert!(info.contains("name=userns"), "{info}");
    let (id, pid, data) = run_probe(&e, &[], "remapped");
    // From the host: the container's root is the first subordinate id...
    assert_eq!(host_ids(&pid), (uid, gid));
    // ...and so is whatever it writes, in a volume or in its own layer.
    assert_eq!(owner(&data.join("made")), (uid, gid));
    let upper = upper(&e, &id);
    assert_eq!(owner(&upper.join("made-here")), (uid, gid));
    assert_eq!(owner(&upper), (uid, gid), "the upper is the mapped root's");
    // From inside: root, with the mapping, and an image owned by root.
    assert_eq!(read(&data.join("id")).trim(), "0");
    let map: Vec<String> = read(&data.join("map"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(map, ["0", &uid.to_string(), "65536"]);
    assert_eq!(read(&data.join("image-owners")), "0:0\n0:0\n");
    // The image's layers on disk were not copied or changed: still root's.
    let layers: Vec<PathBuf> = std::fs::read_dir(e.data.join("snapshots"))
        .unwrap()
        .map(|d| d.unwrap().path().join("fs"))
        .filter(|p| p.join("bin/busybox").exists())
        .collect();
    assert_eq!(layers.len(), 1, "one snapshot of the image: {layers:?}");
    assert_eq!(owner(&layers[0].join("bin/busybox")), (0, 0));

    // Exec joins the same user namespace.
    assert_eq!(e.docker_ok(&["exec", &id, "id", "-u"]).trim(), "0");
    let exec_map = e.docker_ok(&["exec", &id, "cat", "/proc/self/uid_map"]);
    assert_eq!(
        exec_map.split_whitespace().collect::<Vec<_>>(),
        ["0", &uid.to_string(), "65536"]
    );

    // A host path owned by real root is not writable by the remapped root,
    // even as "root" with CAP_DAC_OVERRIDE inside.
    let host_dir = root_owned_dir(&e, "hostdir");
    let bind = format!("{}:/h", host_dir.display());
    let out = e.docker(&["run", "--rm", "-v", &bind, "busybox", "touch", "/h/x"]);
    assert!(!out.status.success(), "the write went through");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!host_dir.join("x").exists());

    // The container's /etc files are its root's to change.
    e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo 10.0.0.9 extra >> /etc/hosts && echo x > /etc/hostname",
    ]);
    // An export too: the image's files and the container's own are root's.
    let export = e
        .docker_command()
        .args(["export", &id])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(export.status.success());
    let list = std::process::Command::new("tar")
        .args(["-tv", "--numeric-owner", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut tar| {
            use std::io::Write;
            tar.stdin.take().unwrap().write_all(&export.stdout)?;
            tar.wait_with_output()
        })
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for name in ["bin/busybox", "made-here"] {
        let line = list
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} not in the export: {list}"));
        assert!(line.contains(" 0/0 "), "{line}");
    }

    // `docker cp` both ways: copied in, root's inside and the mapped root's
    // on the host; copied out, root's in the tar.
    let src = e.dir.path().join("cp-src");
    std::fs::write(&src, "copied\n").unwrap();
    e.docker_ok(&["cp", src.to_str().unwrap(), &format!("{id}:/copied")]);
    let inside = e.docker_ok(&["exec", &id, "stat", "-c", "%u:%g", "/copied"]);
    assert_eq!(inside.trim(), "0:0");
    assert_eq!(owner(&upper.join("copied")), (uid, gid));
    let out = e
        .docker_command()
        .args(["cp", &format!("{id}:/made-here"), "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = tar::Archive::new(&out.stdout[..]);
    let first = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (first.header().uid().unwrap(), first.header().gid().unwrap()),
        (0, 0)
    );

    // A commit gives the layer the container's ids, not the host's.
    e.docker_ok(&["commit", &id, "committed:1"]);
    let owners = e.docker_ok(&[
        "run",
        "--rm",
        "--userns=host",
        "committed:1",
        "stat",
        "-c",
        "%u:%g",
        "/made-here",
    ]);
    assert_eq!(owners.trim(), "0:0");
    e.docker_ok(&["rm", "-f", &id]);

    // Containers and volumes of the mapping live under <data>/<uid>.<gid>.
    let state = e.data.join(format!("{uid}.{gid}"));
    assert!(state.join("containers").is_dir());
    assert!(data.starts_with(&state), "{}", data.display());

    // A restart neither adds a second range nor loses the containers.
    let kept = e
        .docker_ok(&["create", "busybox", "true"])
        .trim()
        .to_owned();
    e.stop();
    e.spawn();
    assert_eq!(subordinate("/etc/subuid", REMAP_USER), (uid, 1));
    assert_eq!(subordinate("/etc/subgid", REMAP_USER), (gid, 1));
    assert_eq!(e.docker_ok(&["ps", "-aq", "--no-trunc"]).trim(), kept);
}

#[test]
fn userns_host_opts_a_container_out_and_the_guard_is_visibly_off() {
    let e = TestEngine::start_with(&["--userns-remap", "default"]);
    let (_, pid, data) = run_probe(&e, &["--userns=host"], "hostns");
    assert_eq!(host_ids(&pid), (0, 0));
    assert_eq!(owner(&data.join("made")), (0, 0));
    assert_eq!(read(&data.join("id")).trim(), "0");
    let map: Vec<String> = read(&data.join("map"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(map, ["0", "0", "4294967295"]);
    // The same write to a root-owned host path now succeeds.
    let host_dir = root_owned_dir(&e, "hostdir");
    let bind = format!("{}:/h", host_dir.display());
    e.docker_ok(&[
        "run",
        "--rm",
        "--userns=host",
        "-v",
        &bind,
        "busybox",
        "touch",
        "/h/x",
    ]);
    assert_eq!(owner(&host_dir.join("x")), (0, 0));

    // Docker's rules: privileged and the host's network need --userns=host
    // (checked at create, which is where Docker refuses them).
    for (flag, message) in [
        (
            "--privileged",
            "privileged mode is incompatible with user namespaces",
        ),
        (
            "--network=host",
            "cannot share the host's network namespace",
        ),
    ] {
        let out = e.docker(&["create", flag, "busybox", "true"]);
        assert!(!out.status.success(), "{flag} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{flag}: {err}");
        e.docker_ok(&["create", "--userns=host", flag, "busybox", "true"]);
    }
    // The host's network really is the host's with the opt-out.
    let host_link = std::fs::read_link("/proc/self/ns/net").unwrap();
    let inside = e.docker_ok(&[
        "run",
        "--rm",
        "--userns=host",
        "--network=host",
        "busybox",
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(inside.trim(), host_link.to_str().unwrap());
    let out = e.docker(&["run", "--rm", "--userns=bogus", "busybox", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER mode"));
}

#[test]
fn without_the_flag_container_root_is_host_root() {
    let e = TestEngine::start();
    let (id, pid, data) = run_probe(&e, &[], "plain");
    assert_eq!(host_ids(&pid), (0, 0));
    assert_eq!(owner(&data.join("made")), (0, 0));
    assert_eq!(owner(&upper(&e, &id).join("made-here")), (0, 0));
    let info = e.docker_ok(&["info", "--format", "{{.SecurityOptions}}"]);
    assert!(!info.contains("name=userns"), "{info}");
    let map: Vec<String> = read(&data.join("map"))
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(map, ["0", "0", "4294967295"]);
    // No per-mapping state directory either.
    let dirs: Vec<String> = std::fs::read_dir(&e.data)
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('.'))
        .collect();
    assert!(dirs.is_empty(), "{dirs:?}");
}

#[test]
fn remapped_containers_get_their_network_and_can_share_it() {
    let e = TestEngine::start_with(&["--userns-remap", "default"]);
    let prefix = format!("inet 10.89.{}.", e.subnet_third);
    e.docker_ok(&["run", "-d", "--name", "net1", "busybox", "sleep", "60"]);
    let own = e.docker_ok(&["exec", "net1", "ip", "-4", "addr", "show", "eth0"]);
    assert!(own.contains(&prefix), "{own}");
    // Another remapped container joins its network (and so its user
    // namespace, which owns that network namespace).
    let shared = e.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "container:net1",
        "busybox",
        "sh",
        "-c",
        "ip -4 addr show eth0; cat /proc/self/uid_map",
    ]);
    assert!(shared.contains(&prefix), "{shared}");
    let (uid, _) = subordinate("/etc/subuid", REMAP_USER);
    assert!(shared.contains(&uid.to_string()), "{shared}");
    // The gateway answers from inside the remapped container.
    e.docker_ok(&["exec", "net1", "ping", "-c", "1", "-W", "5", &e.gateway()]);
}

/// The layer copies of the `copy` fallback, by mapping (`snapshots/remap/<map>/<n>`).
fn layer_copies(e: &TestEngine) -> Vec<PathBuf> {
    let remap = e.data.join("snapshots/remap");
    let mut out = Vec::new();
    for key in std::fs::read_dir(&remap).unwrap() {
        for copy in std::fs::read_dir(key.unwrap().path()).unwrap() {
            out.push(copy.unwrap().path());
        }
    }
    out
}

/// `--userns-layers copy` is the fallback for kernels without idmapped
/// mounts (forced here, since this kernel has them): the container sees the
/// same as with idmapped mounts, from a copy of the layer made once for the
/// mapping; `idmap` makes no copy, so the check cannot pass vacuously.
#[test]
fn the_copy_fallback_shows_the_same_container_from_one_shared_copy() {
    let e = TestEngine::start_with(&["--userns-remap", "default", "--userns-layers", "copy"]);
    let (uid, _) = subordinate("/etc/subuid", REMAP_USER);
    let (gid, _) = subordinate("/etc/subgid", REMAP_USER);
    let (id, pid, data) = run_probe(&e, &[], "copied");
    assert_eq!(host_ids(&pid), (uid, gid));
    assert_eq!(read(&data.join("id")).trim(), "0");
    assert_eq!(read(&data.join("image-owners")), "0:0\n0:0\n");
    assert_eq!(owner(&upper(&e, &id).join("made-here")), (uid, gid));
    // One copy of the image's one layer, owned by the mapped root; the
    // snapshot itself is still the image's (root's).
    let copies = layer_copies(&e);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(owner(&copies[0].join("bin/busybox")), (uid, gid));
    let snapshot = e
        .data
        .join("snapshots")
        .join(copies[0].file_name().unwrap())
        .join("fs");
    assert_eq!(owner(&snapshot.join("bin/busybox")), (0, 0));
    let copied_inode = std::fs::metadata(copies[0].join("bin/busybox"))
        .unwrap()
        .ino();
    // A second container shares the copy rather than making another.
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "stat",
        "-c",
        "%u:%g",
        "/bin/busybox",
    ]);
    assert_eq!(out.trim(), "0:0");
    assert_eq!(layer_copies(&e), copies);
    assert_eq!(
        std::fs::metadata(copies[0].join("bin/busybox"))
            .unwrap()
            .ino(),
        copied_inode
    );
    e.docker_ok(&["rm", "-f", &id]);
    drop(e);

    let e = TestEngine::start_with(&["--userns-remap", "default", "--userns-layers", "idmap"]);
    let out = e.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "stat",
        "-c",
        "%u:%g",
        "/bin/busybox",
    ]);
    assert_eq!(out.trim(), "0:0");
    assert!(layer_copies(&e).is_empty(), "idmapped mounts copy nothing");
}

#[test]
fn help_names_the_flag_and_bad_specs_are_refused() {
    let out = std::process::Command::new(common::bosun())
        .args(["help", "engine"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--userns-remap"), "{text}");
    assert!(text.contains("--userns-layers"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::bosun())
        .arg("engine")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["-H", "unix:///nonexistent/bosun-userns-test.sock"])
        .args(["--userns-remap", "default", "--userns-layers", "chown"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--userns-layers \"chown\": expected auto, idmap or copy"),
        "{err}"
    );
    for (spec, message) in [
        ("a:b:c", "expected default, USER[:GROUP] or UID[:GID]"),
        ("no-such-user-here", "no user \"no-such-user-here\""),
        // root exists but has no subordinate range.
        ("root", "no subordinate range"),
    ] {
        let out = std::process::Command::new(common::bosun())
            .arg("engine")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["-H", "unix:///nonexistent/bosun-userns-test.sock"])
            .args(["--userns-remap", spec])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{spec}: {err}");
    }
}
