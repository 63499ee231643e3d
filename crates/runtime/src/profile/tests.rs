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
    assert!(err("not json").starts_with("seccomp: profile: "));
}

#[test]
fn kernel_versions_parse() {
    assert_eq!(parse_kernel("6.18.44-fc-v595\n"), Some((6, 18)));
    assert_eq!(parse_kernel("4.8"), Some((4, 8)));
    assert_eq!(parse_kernel("5"), Some((5, 0)));
    assert_eq!(parse_kernel("x"), None);
}

/// The profile table of docs/security.md, made from the data above. The Docker
/// column states what Docker 28's daemon does (moby `oci/defaults.go` and
/// `profiles/seccomp/default.json`), checked by reading them.
fn profile_table() -> String {
    use docker_default as d;
    let short = |c: &str| c.trim_start_matches("CAP_").to_owned();
    let code = |names: &[&str]| {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut rows: Vec<[String; 3]> = vec![
        [
            format!("Capabilities ({})", DEFAULT_CAPS.len()),
            DEFAULT_CAPS
                .iter()
                .map(|c| short(c))
                .collect::<Vec<_>>()
                .join(", "),
            "same 14".into(),
        ],
        [
            format!("Masked paths ({} + one per CPU)", MASKED_PATHS.len()),
            code(&MASKED_PATHS) + ", `/sys/devices/system/cpu/cpu*/thermal_throttle`",
            "same".into(),
        ],
        [
            format!("Read-only paths ({})", READONLY_PATHS.len()),
            code(&READONLY_PATHS),
            "same".into(),
        ],
        [
            "Seccomp default action".into(),
            "`SCMP_ACT_ERRNO` (EPERM) for every syscall not allowed below".into(),
            "same".into(),
        ],
        [
            "Allowed to every container".into(),
            format!(
                "{} syscalls (`profile/docker_default.rs`, `ALLOWED`)",
                d::ALLOWED.len()
            ),
            "same allow-list".into(),
        ],
        [
            format!("Allowed from kernel {}", d::FROM_KERNEL.0),
            code(d::FROM_KERNEL.1),
            "same".into(),
        ],
        [
            "`clone`".into(),
            "only without namespace flags, unless CAP_SYS_ADMIN".into(),
            "same".into(),
        ],
        [
            "`clone3`".into(),
            "ENOSYS unless CAP_SYS_ADMIN (libc falls back to `clone`)".into(),
            "same".into(),
        ],
        [
            "`socket`".into(),
            "every family but AF_VSOCK".into(),
            "same".into(),
        ],
        [
            "`personality`".into(),
            "Linux personas and the query only".into(),
            "same".into(),
        ],
    ];
    for (cap, names) in d::BY_CAPABILITY {
        rows.push([
            format!("Only with {}", short(cap)),
            code(names),
            "same".into(),
        ]);
    }
    rows.push([
        "Never allowed (notable)".into(),
        code(d::NEVER_ALLOWED),
        "same".into(),
    ]);
    rows.push([
        "Devices".into(),
        "the OCI defaults (`null`, `zero`, `full`, `random`, `urandom`, `tty`, `ptmx`); \
         the device cgroup refuses `mknod` and use of any other"
            .into(),
        "same devices; its cgroup allows `mknod` of any device but not its use".into(),
    ]);
    let mut out = String::from("| | bosun | Docker 28 |\n|---|---|---|\n");
    for [a, b, c] in rows {
        out += &format!("| {a} | {b} | {c} |\n");
    }
    out
}

/// docs/security.md carries [`profile_table`] between markers; rewrite it
/// with `BOSUN_BLESS=1 cargo test -p bosun-runtime profile`.
#[test]
fn security_doc_table_matches_the_profile() {
    const BEGIN: &str = "<!-- profile-table: begin -->\n";
    const END: &str = "<!-- profile-table: end -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md");
    let doc = std::fs::read_to_string(&path).expect("docs/security.md");
    let start = doc.find(BEGIN).expect("begin marker") + BEGIN.len();
    let end = doc.find(END).expect("end marker");
    let table = profile_table();
    if std::env::var_os("BOSUN_BLESS").is_some() {
        let new = format!("{}{table}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, new).expect("write docs/security.md");
        return;
    }
    assert_eq!(
        doc[start..end],
        table,
        "docs/security.md is out of date: BOSUN_BLESS=1 cargo test -p bosun-runtime profile"
    );
}

#[test]
fn runtime_spec_bundles_carry_the_profile() {
    let spec = crate::default_spec(None);
    let linux = spec.linux().as_ref().expect("linux");
    let s = linux.seccomp().as_ref().expect("a seccomp profile");
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert!(allowed_outright(s, "read"));
    assert!(rules_for(s, "mount").is_empty() && rules_for(s, "keyctl").is_empty());
    // runc's three capabilities: no CAP_SYS_CHROOT, so no chroot either.
    assert!(rules_for(s, "chroot").is_empty());
    let masked = linux.masked_paths().as_ref().expect("masked paths");
    assert!(MASKED_PATHS.iter().all(|p| masked.iter().any(|m| m == p)));
    let ro = linux.readonly_paths().as_ref().expect("read-only paths");
    assert_eq!(ro, &READONLY_PATHS.map(String::from).to_vec());
}
