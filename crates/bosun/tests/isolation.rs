//! Isolation, each property observed from inside a busybox container.

mod common;

use common::*;
use serde_json::{Value, json};

#[test]
fn init_is_pid_1_of_its_own_pid_namespace() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sh", "-c", "echo $$; ps -o pid | wc -l"]);
    let out = rt.run_ok(&b, &unique_id("pid1"));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1"), "{out}");
    // header + sh + ps + wc: nothing of the host is visible.
    let visible: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(visible <= 4, "host processes visible: {out}");
}

#[test]
fn own_hostname_and_domainname() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["hostname"] = json!("inside");
        c["domainname"] = json!("bosun.test");
    });
    b.args(&["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"]);
    assert_eq!(rt.run_ok(&b, &unique_id("uts")), "inside\nbosun.test\n");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "inside");
}

#[test]
fn new_network_namespace_has_only_loopback() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&["sh", "-c", "ls /sys/class/net"]);
    assert_eq!(
        rt.run_ok(&b, &unique_id("net"))
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo"]
    );
}

#[test]
fn host_files_are_invisible() {
    let rt = Rt::new();
    let marker = tempfile::NamedTempFile::new().unwrap();
    let path = marker.path().to_str().unwrap().to_owned();
    let mut b = Bundle::busybox();
    b.args(&[
        "sh",
        "-c",
        &format!(
            "test -e {path} && echo visible || echo hidden; test -e /bin/busybox && echo own-root"
        ),
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("fs")), "hidden\nown-root\n");
}

#[test]
fn masked_paths_read_as_empty() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    std::fs::write(b.rootfs().join("etc/secret"), "top secret\n").unwrap();
    std::fs::create_dir_all(b.rootfs().join("secrets")).unwrap();
    std::fs::write(b.rootfs().join("secrets/key"), "k").unwrap();
    b.edit(|c| {
        let masked = c["linux"]["maskedPaths"].as_array_mut().unwrap();
        masked.push(json!("/etc/secret"));
        masked.push(json!("/secrets"));
    });
    b.args(&[
        "sh",
        "-c",
        "echo \"[$(cat /etc/secret)]\"; ls /secrets | wc -l",
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("mask")), "[]\n0\n");
}

#[test]
fn readonly_paths_are_unwritable() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    std::fs::create_dir_all(b.rootfs().join("data")).unwrap();
    b.edit(|c| {
        c["linux"]["readonlyPaths"]
            .as_array_mut()
            .unwrap()
            .push(json!("/data"))
    });
    b.args(&["sh", "-c", "touch /data/x 2>&1; touch /tmp/y && echo tmp-ok; echo 1 > /proc/sys/kernel/ns_last_pid 2>&1 || echo sys-ro"]);
    let out = rt.run_ok(&b, &unique_id("ro"));
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmp-ok"), "{out}");
    assert!(out.contains("sys-ro"), "{out}");
    assert!(!b.rootfs().join("data/x").exists());
}

#[test]
fn read_only_root() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["root"]["readonly"] = json!(true));
    b.args(&["sh", "-c", "touch /newfile 2>&1; true"]);
    assert!(
        rt.run_ok(&b, &unique_id("rootro"))
            .contains("Read-only file system")
    );
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
fn default_capabilities_forbid_mknod_and_sethostname() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&[
        "sh",
        "-c",
        "mknod /tmp/n c 1 3 2>&1; hostname evil 2>&1; hostname; grep CapEff /proc/self/status",
    ]);
    let out = rt.run_ok(&b, &unique_id("caps"));
    assert!(
        out.contains("mknod: /tmp/n: Operation not permitted"),
        "{out}"
    );
    assert!(
        out.contains("hostname: sethostname: Operation not permitted"),
        "{out}"
    );
    assert!(!out.contains("\nevil\n"), "{out}");
    // AUDIT_WRITE, KILL, NET_BIND_SERVICE = bits 29, 5, 10.
    assert!(out.contains("CapEff:\t0000000020000420"), "{out}");
}

#[test]
fn granted_capability_allows_mknod() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_MKNOD"));
        }
    });
    b.args(&["sh", "-c", "mknod /tmp/n c 1 3 && echo made"]);
    assert_eq!(rt.run_ok(&b, &unique_id("mknod")), "made\n");
}

#[test]
fn seccomp_denies_listed_syscall() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["linux"]["seccomp"] = deny_syscalls(&["mkdir", "mkdirat"], 13));
    b.args(&[
        "sh",
        "-c",
        "mkdir /tmp/d 2>&1; touch /tmp/f && echo touch-ok",
    ]);
    let out = rt.run_ok(&b, &unique_id("seccomp"));
    assert!(
        out.contains("mkdir: can't create directory '/tmp/d': Permission denied"),
        "{out}"
    );
    assert!(out.contains("touch-ok"), "{out}");
}

#[test]
fn seccomp_with_no_new_privileges_and_argument_filter() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    // Deny chmod to mode 0700 only; any other mode passes.
    b.edit(|c| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                { "names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                  "args": [{ "index": 1, "value": 448, "op": "SCMP_CMP_EQ" }] },
                { "names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                  "args": [{ "index": 2, "value": 448, "op": "SCMP_CMP_EQ" }] }
            ]
        });
    });
    b.args(&["sh", "-c", "touch /tmp/a; chmod 644 /tmp/a && echo a-ok; chmod 700 /tmp/a 2>&1; grep NoNewPrivs /proc/self/status"]);
    let out = rt.run_ok(&b, &unique_id("seccomp-args"));
    assert!(out.contains("a-ok"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn user_namespace_maps_root_to_unprivileged_uid() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    b.args(&["sh", "-c", "id -u; cat /proc/self/uid_map; sleep 30"]);
    let id = unique_id("userns");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.ok(&["start", &id]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("100000"),
        "{uid_line}"
    );
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    rt.ok(&["delete", &id]);

    // And from inside: uid 0, with the mapping we asked for.
    b.args(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    let out = rt.run_ok(&b, &unique_id("userns2"));
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["0", "0", "100000", "65536"], "{out}");
}

#[test]
fn ipc_and_cgroup_namespaces_are_private() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.args(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/ipc; readlink /proc/self/ns/cgroup; cat /proc/self/cgroup",
    ]);
    let out = rt.run_ok(&b, &unique_id("ipc"));
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let host_cg = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_ne!(lines[0], host_ipc.to_str().unwrap());
    assert_ne!(lines[1], host_cg.to_str().unwrap());
    // Inside its cgroup namespace the container sees itself at the root.
    for l in &lines[2..] {
        assert!(l.ends_with(":/"), "cgroup path not namespaced: {out}");
    }
}

#[test]
fn joins_an_existing_network_namespace_by_path() {
    let rt = Rt::new();
    let mut a = Bundle::busybox();
    a.args(&["sleep", "60"]);
    let first = unique_id("netowner");
    rt.start_detached(&a, &first);
    let pid = rt.state(&first)["pid"].as_i64().unwrap();
    let ns_path = format!("/proc/{pid}/ns/net");
    let want = std::fs::read_link(&ns_path).unwrap();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
            if ns["type"] == "network" {
                ns["path"] = Value::String(ns_path.clone());
            }
        }
    });
    b.args(&["readlink", "/proc/self/ns/net"]);
    assert_eq!(
        rt.run_ok(&b, &unique_id("netjoin")).trim(),
        want.to_str().unwrap()
    );
}

#[test]
fn user_groups_and_umask_apply() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| {
        c["process"]["user"] =
            json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 63})
    });
    b.args(&["sh", "-c", "id -u; id -g; id -G; umask"]);
    assert_eq!(
        rt.run_ok(&b, &unique_id("user")),
        "1000\n1001\n1001 10 20\n0077\n"
    );
}

#[test]
fn sysctls_are_set_in_the_container_only() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}));
    b.args(&[
        "sh",
        "-c",
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("sysctl")), "1\n1234\n");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni")
            .unwrap()
            .trim(),
        "1234"
    );
}

#[test]
fn cgroup_filesystem_inside_shows_the_containers_own_limits() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 42}));
    b.args(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    ]);
    assert_eq!(rt.run_ok(&b, &unique_id("cgfs")), "42\n");
}

#[test]
fn overlay_and_tmpfs_mounts_with_options() {
    let rt = Rt::new();
    let mut b = Bundle::busybox();
    let layers = tempfile::tempdir().unwrap();
    for d in ["lower", "upper", "work"] {
        std::fs::create_dir_all(layers.path().join(d)).unwrap();
    }
    std::fs::write(layers.path().join("lower/from-lower"), "lower\n").unwrap();
    let p = |d: &str| layers.path().join(d).display().to_string();
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({"destination": "/merged", "type": "overlay", "source": "overlay",
            "options": [format!("lowerdir={}", p("lower")), format!("upperdir={}", p("upper")), format!("workdir={}", p("work"))]}));
        mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "size=1m", "mode=700"]}));
    });
    b.args(&["sh", "-c", "cat /merged/from-lower; echo new > /merged/from-container; stat -c %a /scratch; grep ' /scratch ' /proc/self/mounts | grep -c noexec"]);
    assert_eq!(rt.run_ok(&b, &unique_id("overlay")), "lower\n700\n1\n");
    assert_eq!(
        std::fs::read_to_string(layers.path().join("upper/from-container")).unwrap(),
        "new\n"
    );
}
