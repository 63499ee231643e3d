use super::*;

const AMD64: Host = Host {
    arch: "amd64",
    native: Some(Arch::ScmpArchX86_64),
    kernel: (6, 1),
};

fn caps(extra: &[&str]) -> Vec<String> {
    DEFAULT_CAPS
        .iter()
        .chain(extra)
        .map(|c| c.to_string())
        .collect()
}

/// Rules naming `name`, as (action, errno, has argument conditions).
fn rules_for(s: &LinuxSeccomp, name: &str) -> Vec<(LinuxSeccompAction, Option<u32>, bool)> {
    s.syscalls()
        .iter()
        .flatten()
        .filter(|r| r.names().iter().any(|n| n == name))
        .map(|r| (r.action(), r.errno_ret(), r.args().is_some()))
        .collect()
}

fn allowed_outright(s: &LinuxSeccomp, name: &str) -> bool {
    rules_for(s, name).contains(&(LinuxSeccompAction::ScmpActAllow, None, false))
}

#[test]
fn default_profile_denies_what_docker_denies() {
    let s = default_profile().resolve_for(&caps(&[]), AMD64);
    crate::seccomp::check(&s).expect("the default profile compiles");
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(s.default_errno_ret(), Some(1));
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
    );
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "reboot",
        "swapon",
        "swapoff",
    ] {
        assert!(rules_for(&s, name).is_empty(), "{name} has a rule");
    }
    assert!(allowed_outright(&s, "read"));
    assert!(
        allowed_outright(&s, "chroot"),
        "CAP_SYS_CHROOT is a default"
    );
    assert!(allowed_outright(&s, "ptrace"), "kernel 6.1 is past 4.8");
    assert!(allowed_outright(&s, "arch_prctl"));
    assert!(!allowed_outright(&s, "riscv_flush_icache"));
    assert_eq!(
        rules_for(&s, "clone"),
        [(LinuxSeccompAction::ScmpActAllow, None, true)],
        "clone only without namespace flags"
    );
    assert_eq!(
        rules_for(&s, "clone3"),
        [(LinuxSeccompAction::ScmpActErrno, Some(38), false)]
    );
    let old = default_profile().resolve_for(
        &caps(&[]),
        Host {
            kernel: (4, 4),
            ..AMD64
        },
    );
    assert!(!allowed_outright(&old, "ptrace"));
}

#[test]
fn capabilities_unlock_their_syscalls() {
    let s = default_profile().resolve_for(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]), AMD64);
    crate::seccomp::check(&s).expect("compiles");
    for name in [
        "mount", "unshare", "setns", "clone", "clone3", "kcmp", "bpf",
    ] {
        assert!(allowed_outright(&s, name), "{name}");
    }
    assert!(
        rules_for(&s, "clone").iter().all(|r| !r.2),
        "no masked clone rule"
    );
    assert!(rules_for(&s, "init_module").is_empty());
    let none = default_profile().resolve_for(&[], AMD64);
    assert!(
        rules_for(&none, "chroot").is_empty(),
        "cap-drop ALL drops chroot"
    );
}

#[test]
fn never_allowed_syscalls_are_in_no_table() {
    use docker_default as d;
    for name in d::NEVER_ALLOWED {
        assert!(!d::ALLOWED.contains(name), "{name}");
        assert!(!d::FROM_KERNEL.1.contains(name), "{name}");
        assert!(
            d::BY_CAPABILITY.iter().all(|(_, n)| !n.contains(name)),
            "{name}"
        );
        assert!(d::BY_ARCH.iter().all(|(_, n)| !n.contains(name)), "{name}");
    }
    let mut sorted = d::ALLOWED.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), d::ALLOWED.len(), "ALLOWED has duplicates");
}

#[test]
fn docker_format_conditions_resolve() {
    let p = SeccompProfile::from_json(
        r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                    {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [], "comment": ""},
            {"name": "chmod", "action": "SCMP_ACT_ERRNO"},
            {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["iopl"], "action": "SCMP_ACT_ERRNO", "includes": {"arches": ["arm64"]}},
            {"names": ["kcmp"], "action": "SCMP_ACT_ERRNO", "includes": {"minKernel": "99.0"}},
            {"names": ["tee"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_CHOWN", "CAP_BPF"]}}
        ]}"#,
    )
    .expect("parses");
    let s = p.resolve_for(&caps(&[]), AMD64);
    crate::seccomp::check(&s).expect("compiles");
    assert_eq!(
        s.architectures().as_deref(),
        Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86][..])
    );
    let errno = |n: &str| rules_for(&s, n).first().map(|r| (r.0, r.1));
    assert_eq!(
        errno("mkdirat"),
        Some((LinuxSeccompAction::ScmpActErrno, Some(13)))
    );
    assert_eq!(
        errno("chmod"),
        Some((LinuxSeccompAction::ScmpActErrno, None))
    );
    assert!(errno("unshare").is_some());
    assert!(errno("iopl").is_none() && errno("kcmp").is_none());
    assert!(
        errno("tee").is_none(),
        "includes.caps needs every capability"
    );
    let admin = p.resolve_for(&caps(&["CAP_SYS_ADMIN", "CAP_BPF"]), AMD64);
    assert!(rules_for(&admin, "unshare").is_empty());
    assert!(!rules_for(&admin, "tee").is_empty());
}

#[test]
fn bad_profiles_are_refused_with_the_place() {
    let err = |json: &str| SeccompProfile::from_json(json).unwrap_err().to_string();
    let e = err(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_DANCE"}]}"#,
    );
    assert!(
        e.contains("syscalls[0].action") && e.contains("SCMP_ACT_DANCE"),
        "{e}"
    );
    let e = err(r#"{"syscalls": []}"#);
    assert!(e.contains("defaultAction"), "{e}");
    let e = err(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
    );
    assert!(e.contains("archMap"), "{e}");
    let e = err(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
    );
    assert!(e.contains("syscalls[0]") && e.contains("names"), "{e}");
    let e = err(
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
    );
    assert!(e.contains("minKernel"), "{e}");
    assert!(err("not json").contains("seccomp profile"));
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(parse_kernel("6.18.44-fc-v595\n"), Some((6, 18)));
    assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel("5"), Some((5, 0)));
    assert_eq!(parse_kernel("x"), None);
}
