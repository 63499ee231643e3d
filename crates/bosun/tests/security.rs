//! The default isolation profile, attacked through the real docker CLI against
//! `bosun engine` (root). Every attack is shown to fail in a default container
//! and to get through (or find the guard absent) once that guard is lifted
//! (`--privileged`, `seccomp=unconfined`, `--cap-add`, `systempaths=unconfined`),
//! so no test here passes because the attack was broken to begin with. Host
//! state an attack aims at (sysctls, cgroup files) is compared before and after.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::engine::TestEngine;

/// `tests/security/syscall.c`, built static into `dir`: one syscall per
/// argument, printing `NAME ok` or `NAME ERRNO`.
fn build_probe(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/security/syscall.c");
    let out = dir.join("syscall");
    let status = Command::new("cc")
        .args(["-static", "-O", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run cc (build-essential)");
    assert!(status.success(), "cc -static {} failed", src.display());
    out
}

struct Probe {
    /// Holds the binary; removed when the test ends.
    _dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Probe {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("bosun-probe-")
            .tempdir()
            .unwrap();
        let bin = build_probe(dir.path());
        Probe { _dir: dir, bin }
    }

    /// Run the probe in a new container with `flags`; errno name per call.
    fn run(&self, e: &TestEngine, flags: &[&str], calls: &[&str]) -> BTreeMap<String, String> {
        let mount = format!("{}:/probe:ro", self.bin.display());
        let mut args = vec!["run", "--rm", "-v", &mount];
        args.extend_from_slice(flags);
        args.push("busybox");
        args.push("/probe");
        args.extend_from_slice(calls);
        let out = e.docker_ok(&args);
        let results: BTreeMap<String, String> = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(results.len(), calls.len(), "probe output: {out}");
        results
    }
}

/// `docker run --rm FLAGS busybox sh -c SCRIPT`, stdout and stderr together.
fn sh(e: &TestEngine, flags: &[&str], script: &str) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(flags);
    args.extend(["busybox", "sh", "-c", script]);
    let out = e.docker(&args);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Syscalls Docker's default profile refuses to a default container.
const DENIED: [&str; 18] = [
    "keyctl",
    "add_key",
    "unshare_user",
    "unshare_mount",
    "clone_newuts",
    "setns",
    "mount",
    "umount2",
    "bpf",
    "perf_event_open",
    "finit_module",
    "delete_module",
    "kexec_load",
    "open_by_handle_at",
    "reboot",
    "swapon",
    "swapoff",
    "clone3",
];

#[test]
fn seccomp_refuses_dangerous_syscalls_until_it_is_lifted() {
    let e = TestEngine::start();
    let p = Probe::new();
    let mut calls = DENIED.to_vec();
    calls.push("clone_plain");
    let default = p.run(&e, &[], &calls);
    for name in DENIED {
        // clone3 gets ENOSYS so that libc falls back to clone, as under Docker.
        let want = if name == "clone3" { "ENOSYS" } else { "EPERM" };
        assert_eq!(
            default[name], want,
            "{name} in a default container: {default:?}"
        );
    }
    assert_eq!(default["clone_plain"], "ok", "fork must keep working");

    // Privileged: no filter, every capability; each call reaches the kernel
    // and gets its own answer (ok, EBADF, ENOENT, EINVAL, ENOSYS, …).
    let privileged = p.run(&e, &["--privileged"], &calls);
    for name in &calls {
        assert_ne!(
            privileged[*name], "EPERM",
            "{name} privileged: {privileged:?}"
        );
    }
    // seccomp=unconfined alone: what needs no capability gets through; what
    // does is still stopped, by the kernel now.
    let unconfined = p.run(
        &e,
        &["--security-opt", "seccomp=unconfined"],
        &["keyctl", "unshare_user", "clone3", "mount"],
    );
    assert_eq!(unconfined["keyctl"], "ok", "{unconfined:?}");
    assert_eq!(unconfined["unshare_user"], "ok", "{unconfined:?}");
    assert_eq!(unconfined["clone3"], "ok", "{unconfined:?}");
    assert_eq!(
        unconfined["mount"], "EPERM",
        "CAP_SYS_ADMIN is still missing"
    );

    // The same attacks with busybox's own tools.
    let attack = "unshare -U true 2>&1 && echo unshared; \
                  mkdir -p /tmp/m; mount -t tmpfs tmpfs /tmp/m 2>&1 && echo mounted; true";
    let out = sh(&e, &[], attack);
    assert!(
        !out.contains("unshared") && !out.contains("mounted"),
        "{out}"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    let out = sh(&e, &["--privileged"], attack);
    assert!(out.contains("unshared") && out.contains("mounted"), "{out}");
}

#[test]
fn seccomp_rules_follow_the_capabilities_granted() {
    let e = TestEngine::start();
    let p = Probe::new();
    let admin = p.run(
        &e,
        &["--cap-add", "SYS_ADMIN"],
        &[
            "mount",
            "umount2",
            "unshare_mount",
            "clone_newuts",
            "clone3",
            "setns",
            "keyctl",
            "finit_module",
        ],
    );
    assert_eq!(admin["mount"], "ENODEV", "an unknown type: {admin:?}");
    assert_eq!(admin["umount2"], "ENOENT", "{admin:?}");
    assert_eq!(admin["unshare_mount"], "ok", "{admin:?}");
    assert_eq!(admin["clone_newuts"], "ok", "{admin:?}");
    assert_eq!(admin["clone3"], "ok", "{admin:?}");
    assert_eq!(admin["setns"], "EBADF", "{admin:?}");
    // No capability unlocks the keyring, and CAP_SYS_ADMIN is not CAP_SYS_MODULE.
    assert_eq!(admin["keyctl"], "EPERM", "{admin:?}");
    assert_eq!(admin["finit_module"], "EPERM", "{admin:?}");
    let module = p.run(&e, &["--cap-add", "SYS_MODULE"], &["finit_module", "mount"]);
    assert_ne!(module["finit_module"], "EPERM", "{module:?}");
    assert_eq!(module["mount"], "EPERM", "{module:?}");
    // Dropping CAP_SYS_CHROOT takes chroot out of the profile as well.
    let out = sh(
        &e,
        &["--cap-drop", "SYS_CHROOT"],
        "chroot / true 2>&1 || echo refused",
    );
    assert!(out.contains("refused"), "{out}");
    let out = sh(&e, &[], "chroot / true && echo chrooted");
    assert_eq!(out, "chrooted\n");
}

#[test]
fn custom_profile_file_and_bad_security_options() {
    let e = TestEngine::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "syscalls": [
    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "comment": "test"}
  ]
}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let script = "mkdir /tmp/d 2>&1 && echo made; grep Seccomp: /proc/self/status";
    let out = sh(&e, &["--security-opt", &opt], script);
    assert!(!out.contains("made"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    let out = sh(&e, &[], script);
    assert!(out.contains("made"), "{out}");
    // Docker's rule: --privileged runs unfiltered even with a profile given.
    let out = sh(&e, &["--privileged", "--security-opt", &opt], script);
    assert!(out.contains("made") && out.contains("Seccomp:\t0"), "{out}");

    std::fs::write(&profile, r#"{"syscalls": []}"#).unwrap();
    let out = e.docker(&["create", "--security-opt", &opt, "busybox", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--security-opt") && err.contains("defaultAction"),
        "{err}"
    );
    let out = e.docker(&["create", "--security-opt", "wizardry=on", "busybox", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("wizardry=on") && err.contains("known options"),
        "{err}"
    );
    assert_eq!(e.docker_ok(&["ps", "-aq"]), "", "nothing was created");
}

#[test]
fn capability_sets_and_no_new_privileges_show_in_proc_status() {
    let e = TestEngine::start();
    let status = |flags: &[&str]| -> BTreeMap<String, String> {
        sh(
            &e,
            flags,
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
        )
        .lines()
        .filter_map(|l| l.split_once(":\t"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let default = status(&[]);
    // Docker's 14 default capabilities.
    assert_eq!(default["CapEff"], "00000000a80425fb", "{default:?}");
    assert_eq!(default["CapBnd"], "00000000a80425fb", "{default:?}");
    assert_eq!(default["NoNewPrivs"], "0");
    assert_eq!(default["Seccomp"], "2", "filtered");
    for opt in [
        "no-new-privileges",
        "no-new-privileges=true",
        "no-new-privileges:true",
    ] {
        assert_eq!(status(&["--security-opt", opt])["NoNewPrivs"], "1", "{opt}");
    }
    assert_eq!(
        status(&["--security-opt", "no-new-privileges=false"])["NoNewPrivs"],
        "0"
    );
    let none = status(&["--cap-drop", "ALL"]);
    assert_eq!(none["CapEff"], "0000000000000000", "{none:?}");
    assert_eq!(none["CapBnd"], "0000000000000000", "{none:?}");
    let admin = status(&["--cap-add", "SYS_ADMIN"]);
    assert_eq!(
        admin["CapEff"], "00000000a82425fb",
        "bit 21 added: {admin:?}"
    );
    // Every capability the engine holds (all 41, unless a sandbox withholds some).
    let ours = std::fs::read_to_string("/proc/self/status").unwrap();
    let held = ours
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .unwrap()
        .to_owned();
    let privileged = status(&["--privileged"]);
    assert_eq!(privileged["CapEff"], held, "{privileged:?}");
    assert_eq!(privileged["Seccomp"], "0", "no filter: {privileged:?}");
    assert_eq!(
        status(&["--security-opt", "seccomp=unconfined"])["Seccomp"],
        "0"
    );
}

/// Host sysctls an escape would aim at, none of them namespaced.
const HOST_SYSCTLS: [&str; 5] = [
    "kernel/core_pattern",
    "kernel/modprobe",
    "kernel/sysrq",
    "kernel/panic",
    "vm/overcommit_memory",
];

/// The ones of [`HOST_SYSCTLS`] this kernel has (it may lack modules or sysrq).
fn present_sysctls() -> Vec<&'static str> {
    HOST_SYSCTLS
        .into_iter()
        .filter(|s| Path::new("/proc/sys").join(s).exists())
        .collect()
}

fn host_sysctls() -> Vec<(String, String)> {
    present_sysctls()
        .iter()
        .map(|s| {
            let v = std::fs::read_to_string(Path::new("/proc/sys").join(s)).unwrap_or_default();
            (s.to_string(), v)
        })
        .collect()
}

#[test]
fn proc_sys_and_sysrq_trigger_are_read_only() {
    let e = TestEngine::start();
    let before = host_sysctls();
    let attack: String = [
        "echo '|/bin/evil %p' > /proc/sys/kernel/core_pattern",
        "echo /bin/evil > /proc/sys/kernel/modprobe",
        "echo 0 > /proc/sys/kernel/sysrq",
        "echo 1 > /proc/sys/kernel/panic",
        "echo 2 > /proc/sys/vm/overcommit_memory",
        "sysctl -w kernel.panic=2",
        "echo h > /proc/sysrq-trigger",
    ]
    .iter()
    .map(|c| format!("{c} 2>&1 && echo WROTE; "))
    .collect();
    let out = sh(&e, &[], &attack);
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert_eq!(host_sysctls(), before, "a host sysctl changed");

    // Privileged, /proc/sys is writable: write each value back unchanged.
    let rewrite: String = present_sysctls()
        .iter()
        .map(|s| format!("v=$(cat /proc/sys/{s}); echo \"$v\" > /proc/sys/{s} && echo WROTE {s}; "))
        .collect();
    // A kernel without magic SysRq has no trigger to write to.
    let sysrq = Path::new("/proc/sysrq-trigger").exists();
    let rewrite = match sysrq {
        true => rewrite + "echo h > /proc/sysrq-trigger && echo WROTE sysrq",
        false => rewrite,
    };
    let out = sh(&e, &["--privileged"], &rewrite);
    assert_eq!(out.contains("WROTE sysrq"), sysrq, "{out}");
    for s in present_sysctls() {
        assert!(out.contains(&format!("WROTE {s}")), "{out}");
    }
    assert_eq!(
        host_sysctls(),
        before,
        "rewriting the same values changed them"
    );
}

fn host_release_agents() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for d in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let f = d.path().join("release_agent");
        if let Ok(v) = std::fs::read_to_string(&f) {
            out.push((f, v));
        }
    }
    out
}

#[test]
fn cgroup_tree_is_read_only_and_release_agent_is_out_of_reach() {
    let e = TestEngine::start();
    let before = host_release_agents();
    // The container's own memory limit (v1 or v2), the notify_on_release +
    // release_agent route, a new cgroup, and mounting a fresh hierarchy.
    let script = "if [ -e /sys/fs/cgroup/cgroup.controllers ]; then \
                    f=/sys/fs/cgroup/memory.max; d=/sys/fs/cgroup; \
                  else f=/sys/fs/cgroup/memory/memory.limit_in_bytes; d=/sys/fs/cgroup/memory; fi; \
                  echo 33554432 > $f 2>&1 && echo WROTE limit; \
                  echo 1 > $d/notify_on_release 2>&1 && echo WROTE notify; \
                  echo /evil > $d/release_agent 2>&1 && echo WROTE agent; \
                  mkdir $d/escape 2>&1 && echo WROTE mkdir; \
                  mkdir -p /tmp/m; mount -t cgroup -o memory cgroup /tmp/m 2>&1 && echo WROTE mount; \
                  echo limit $(cat $f)";
    let out = sh(&e, &["-m", "64m"], script);
    assert!(!out.contains("WROTE"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("limit 67108864"), "{out}");
    assert_eq!(host_release_agents(), before);
    let out = sh(&e, &["-m", "64m", "--privileged"], script);
    assert!(out.contains("WROTE limit"), "{out}");
    assert!(out.contains("limit 33554432"), "{out}");
    assert_eq!(host_release_agents(), before);
}

#[test]
fn masked_paths_read_empty_until_systempaths_unconfined() {
    let e = TestEngine::start();
    let present: Vec<&str> = bosun_runtime::MASKED_PATHS
        .iter()
        .copied()
        .filter(|p| Path::new(p).exists())
        .collect();
    assert!(present.contains(&"/proc/interrupts"), "{present:?}");
    let script: String = present
        .iter()
        .map(|p| {
            format!(
                "if [ -d {p} ]; then echo {p} $(ls -A {p} | wc -l); \
                 else echo {p} $(cat {p} | wc -c); fi; "
            )
        })
        .collect();
    let sizes = |flags: &[&str]| -> BTreeMap<String, u64> {
        sh(&e, flags, &script)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(p, n)| (p.to_owned(), n.trim().parse().unwrap_or(u64::MAX)))
            .collect()
    };
    let masked = sizes(&[]);
    assert_eq!(masked.len(), present.len(), "{masked:?}");
    assert!(masked.values().all(|n| *n == 0), "{masked:?}");
    for flags in [
        &["--security-opt", "systempaths=unconfined"][..],
        &["--privileged"][..],
    ] {
        let open = sizes(flags);
        assert!(open["/proc/interrupts"] > 0, "{flags:?}: {open:?}");
        if present.contains(&"/sys/firmware") {
            assert!(open["/sys/firmware"] > 0, "{flags:?}: {open:?}");
        }
    }
    // The read-only paths come back with systempaths=unconfined too.
    let out = sh(
        &e,
        &["--security-opt", "systempaths=unconfined"],
        "grep -E ' /proc/sys ' /proc/self/mountinfo | wc -l",
    );
    assert_eq!(out.trim(), "0", "no read-only /proc/sys bind");
}

/// The first whole disk in /proc/partitions: (name, major, minor).
fn host_disk() -> (String, u32, u32) {
    let parts = std::fs::read_to_string("/proc/partitions").unwrap();
    parts
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.get(3)?.to_string(),
                f[0].parse().ok()?,
                f[1].parse().ok()?,
            ))
        })
        .next()
        .expect("a disk in /proc/partitions")
}

/// A host character device outside the defaults that this (root) process can
/// read: (path, major, minor). Some sandboxes refuse even root the disk.
fn readable_host_char_device() -> (String, u64, u64) {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    for path in ["/dev/vcs", "/dev/cpu_dma_latency", "/dev/hwrng"] {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mut buf = [0u8; 4];
        let readable = meta.file_type().is_char_device()
            && std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut buf).is_ok());
        if readable {
            let rdev = meta.rdev();
            return (path.into(), libc_major(rdev), libc_minor(rdev));
        }
    }
    panic!("no readable character device among /dev/vcs, /dev/cpu_dma_latency, /dev/hwrng");
}

fn libc_major(rdev: u64) -> u64 {
    ((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0xfff)
}

fn libc_minor(rdev: u64) -> u64 {
    ((rdev >> 12) & 0xffff_ff00) | (rdev & 0xff)
}

#[test]
fn only_default_devices_and_host_devices_stay_out_of_reach() {
    let e = TestEngine::start();
    let (disk, major, minor) = host_disk();
    let (chr, cmajor, cminor) = readable_host_char_device();
    // Docker's device cgroup lets mknod through and refuses the open; bosun's
    // refuses the mknod already. Either way not one byte is read.
    let script = format!(
        "ls /dev; echo END; \
         mknod /tmp/disk b {major} {minor} 2>&1; head -c 512 /tmp/disk 2>&1; \
         mknod /tmp/chr c {cmajor} {cminor} 2>&1 && echo MADE; head -c 4 /tmp/chr 2>&1; echo; \
         echo disk $(head -c 512 /tmp/disk 2>/dev/null | wc -c); \
         echo chr $(head -c 4 /tmp/chr 2>/dev/null | wc -c)"
    );
    let out = sh(&e, &[], &script);
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("\ndisk 0\nchr 0\n"), "{out}");
    let names: Vec<&str> = out.lines().take_while(|l| *l != "END").collect();
    assert!(!names.contains(&disk.as_str()), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("loop")), "{names:?}");
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        assert!(names.contains(&dev), "{dev} missing: {names:?}");
    }
    // Privileged: the host's devices are there, and a node made for one works.
    let out = sh(
        &e,
        &["--privileged"],
        &format!("{script}; echo host $(head -c 4 {chr} | wc -c)"),
    );
    assert!(out.contains(&format!("\n{disk}\n")), "host devices: {out}");
    assert!(out.contains("MADE") && out.contains("\nchr 4\n"), "{out}");
    assert!(out.contains("\nhost 4\n"), "{out}");
}

#[test]
fn read_only_root_user_and_tmpfs_options() {
    let e = TestEngine::start();
    let out = sh(
        &e,
        &[
            "--read-only",
            "--tmpfs",
            "/run:size=1m,mode=1777",
            "--user",
            "1000:1000",
        ],
        "touch /x 2>&1; touch /run/ok && echo tmpfs-ok; id -u; id -g; \
         grep CapEff /proc/self/status; stat -c %a /run; df -k /run | tail -1",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("tmpfs-ok\n1000\n1000\n"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    assert!(out.contains("\n1777\n"), "{out}");
    let df: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(df.get(1), Some(&"1024"), "{out}");
    // Without --read-only the root is writable and the user is root.
    let out = sh(&e, &[], "touch /x && echo root-ok; id -u");
    assert_eq!(out, "root-ok\n0\n");
}

#[test]
fn bosun_run_security_opt_reads_the_profile_file_like_docker() {
    let e = TestEngine::start();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let run = |opts: &[&str]| {
        let mut c = Command::new(common::bosun());
        c.env("BOSUN_HOST", format!("unix://{}", e.socket.display()))
            .args(["run", "--rm"]);
        for o in opts {
            c.args(["--security-opt", o]);
        }
        let out = c
            .args([
                "busybox",
                "sh",
                "-c",
                "mkdir /tmp/d 2>&1 && echo made; grep NoNewPrivs /proc/self/status",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run bosun");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let opt = format!("seccomp={}", profile.display());
    let out = run(&[&opt, "no-new-privileges"]);
    assert!(
        !out.contains("made") && out.contains("Operation not permitted"),
        "{out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    let out = run(&[]);
    assert!(
        out.contains("made") && out.contains("NoNewPrivs:\t0"),
        "{out}"
    );
    let out = run(&["seccomp=/nonexistent/profile.json"]);
    assert!(
        out.contains("cannot read /nonexistent/profile.json"),
        "{out}"
    );
}
