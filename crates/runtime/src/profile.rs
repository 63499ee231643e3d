//! The default security profile, Docker's: capabilities, masked and read-only
//! paths, and a seccomp allow-list whose rules depend on the capabilities a
//! container ends up with. Also the parser of Docker's seccomp profile format
//! (`--security-opt seccomp=PROFILE.json`), which the default profile shares:
//! both become a [`SeccompProfile`] and are resolved the same way into the OCI
//! `linux.seccomp` the runtime loads.

mod docker_default;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Docker's default capability set (bounding, effective and permitted).
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability up to Linux 5.9 (`--privileged`, `--cap-add ALL`).
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities of [`ALL_CAPS`] this process's bounding set holds: what
/// `--privileged` can grant, since no process gives more than it has (some
/// sandboxes withhold a few from everything they start).
pub fn held_caps() -> Vec<String> {
    let held = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
    ALL_CAPS
        .iter()
        .filter(|name| held.iter().any(|c| c.to_string() == **name))
        .map(|c| c.to_string())
        .collect()
}

/// Hidden from the container: a file under `/dev/null`, a directory under an
/// empty read-only tmpfs. They leak host facts (hardware, kernel addresses,
/// other tenants' keys, timers usable as side channels, power readings).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// [`MASKED_PATHS`] and each CPU's `thermal_throttle` directory in sysfs
/// (its interrupt counts are a side channel, like `/proc/interrupts`).
pub fn masked_paths() -> Vec<String> {
    let mut paths: Vec<String> = MASKED_PATHS.iter().map(|p| p.to_string()).collect();
    let mut cpus: Vec<String> = std::fs::read_dir("/sys/devices/system/cpu")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("cpu")
                .is_some_and(|i| i.parse::<u32>().is_ok())
        })
        .map(|n| format!("/sys/devices/system/cpu/{n}/thermal_throttle"))
        .filter(|p| std::path::Path::new(p).exists())
        .collect();
    cpus.sort();
    paths.append(&mut cpus);
    paths
}

/// Read-only: host-wide kernel settings that proc does not namespace.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A seccomp profile in Docker's JSON format: OCI's fields plus `archMap`,
/// and per rule `includes`/`excludes` conditions on the container's
/// capabilities, the architecture and the kernel version.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeccompProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    syscalls: Option<Vec<Rule>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Condition>,
    #[serde(default)]
    excludes: Option<Condition>,
}

/// `includes` holds when all of its parts hold, `excludes` when any does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// What a profile is resolved against besides the capabilities.
#[derive(Debug, Clone, Copy)]
struct Host {
    /// Go's name of the architecture (`amd64`), as profiles spell it.
    arch: &'static str,
    native: Option<Arch>,
    kernel: (u32, u32),
}

impl Host {
    fn this() -> Host {
        let (arch, native) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", Some(Arch::ScmpArchX86_64)),
            "x86" => ("386", Some(Arch::ScmpArchX86)),
            "aarch64" => ("arm64", Some(Arch::ScmpArchAarch64)),
            "arm" => ("arm", Some(Arch::ScmpArchArm)),
            "s390x" => ("s390x", Some(Arch::ScmpArchS390x)),
            "riscv64" => ("riscv64", Some(Arch::ScmpArchRiscv64)),
            "powerpc64" => ("ppc64le", Some(Arch::ScmpArchPpc64le)),
            "loongarch64" => ("loong64", Some(Arch::ScmpArchLoongarch64)),
            other => (other, None),
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Host {
            arch,
            native,
            kernel: parse_kernel(&release).unwrap_or((0, 0)),
        }
    }
}

/// `6.1.0-18-amd64` → (6, 1).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn invalid(what: String) -> Error {
    Error::Seccomp(format!("profile: {what}"))
}

impl SeccompProfile {
    /// Parse a profile in Docker's format (also plain OCI `linux.seccomp`).
    pub fn from_json(json: &str) -> Result<SeccompProfile> {
        let de = &mut serde_json::Deserializer::from_str(json);
        let profile: SeccompProfile = serde_path_to_error::deserialize(de)
            .map_err(|e| invalid(format!("{}: {}", e.path(), e.inner())))?;
        if profile
            .architectures
            .as_ref()
            .is_some_and(|a| !a.is_empty())
            && profile.arch_map.as_ref().is_some_and(|a| !a.is_empty())
        {
            return Err(invalid(
                "use either \"architectures\" or \"archMap\", not both".into(),
            ));
        }
        if profile.listener_path.is_some() {
            return Err(invalid(
                "listenerPath: SCMP_ACT_NOTIFY is not supported".into(),
            ));
        }
        for (i, r) in profile.syscalls.iter().flatten().enumerate() {
            let has_names = r.names.as_ref().is_some_and(|n| !n.is_empty());
            match (&r.name, has_names) {
                (Some(_), true) => {
                    return Err(invalid(format!(
                        "syscalls[{i}]: use either \"name\" or \"names\", not both"
                    )));
                }
                (None, false) => {
                    return Err(invalid(format!("syscalls[{i}]: no syscall names")));
                }
                _ => {}
            }
            for c in [&r.includes, &r.excludes].into_iter().flatten() {
                if let Some(k) = &c.min_kernel
                    && parse_kernel(k).is_none()
                {
                    return Err(invalid(format!("syscalls[{i}]: bad minKernel {k:?}")));
                }
            }
        }
        Ok(profile)
    }

    /// The OCI `linux.seccomp` for a container whose bounding set is `caps`,
    /// on this machine's architecture and kernel.
    pub fn resolve(&self, caps: &[String]) -> LinuxSeccomp {
        self.resolve_for(caps, Host::this())
    }

    fn resolve_for(&self, caps: &[String], host: Host) -> LinuxSeccomp {
        let mut arches: Vec<Arch> = self.architectures.clone().unwrap_or_default();
        for m in self.arch_map.iter().flatten() {
            if Some(m.architecture) == host.native {
                arches.push(m.architecture);
                arches.extend(m.sub_architectures.iter().flatten().copied());
            }
        }
        let has = |c: &String| caps.iter().any(|have| have == c);
        let kernel_at_least = |k: &Option<String>| {
            k.as_deref()
                .and_then(parse_kernel)
                .is_some_and(|want| host.kernel >= want)
        };
        let mut syscalls = Vec::new();
        for r in self.syscalls.iter().flatten() {
            if let Some(ex) = &r.excludes {
                let arch = ex.arches.iter().flatten().any(|a| a == host.arch);
                let cap = ex.caps.iter().flatten().any(has);
                if arch || cap || kernel_at_least(&ex.min_kernel) {
                    continue;
                }
            }
            if let Some(inc) = &r.includes {
                let arch = inc
                    .arches
                    .as_ref()
                    .is_none_or(|a| a.is_empty() || a.iter().any(|a| a == host.arch));
                let cap = inc.caps.iter().flatten().all(has);
                let kernel = inc.min_kernel.is_none() || kernel_at_least(&inc.min_kernel);
                if !(arch && cap && kernel) {
                    continue;
                }
            }
            let names = match &r.name {
                Some(n) => vec![n.clone()],
                None => r.names.clone().unwrap_or_default(),
            };
            let mut sc = LinuxSyscall::default();
            sc.set_names(names);
            sc.set_action(r.action);
            sc.set_errno_ret(r.errno_ret);
            sc.set_args(r.args.clone().filter(|a| !a.is_empty()));
            syscalls.push(sc);
        }
        let mut out = LinuxSeccomp::default();
        out.set_default_action(self.default_action);
        out.set_default_errno_ret(self.default_errno_ret);
        out.set_architectures(Some(arches).filter(|a| !a.is_empty()));
        out.set_flags(self.flags.clone().filter(|f| !f.is_empty()));
        out.set_syscalls(Some(syscalls));
        out
    }
}

/// The default profile in the shared form (see `docker_default` for the data).
pub(crate) fn default_profile() -> SeccompProfile {
    use docker_default as d;
    let allow = |names: &[&str]| Rule {
        names: Some(names.iter().map(|n| n.to_string()).collect()),
        action: LinuxSeccompAction::ScmpActAllow,
        ..Rule::default()
    };
    let caps = |c: &str| Some(vec![c.to_owned()]);
    let arg = |index: usize, value: u64, op: LinuxSeccompOperator| {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .value(value)
            .op(op)
            .build()
            .expect("every field is set")
    };
    let mut rules = vec![allow(d::ALLOWED)];
    rules.push(Rule {
        includes: Some(Condition {
            min_kernel: Some(d::FROM_KERNEL.0.into()),
            ..Condition::default()
        }),
        ..allow(d::FROM_KERNEL.1)
    });
    rules.push(Rule {
        args: Some(vec![arg(
            0,
            d::SOCKET_FAMILY_DENIED,
            LinuxSeccompOperator::ScmpCmpNe,
        )]),
        ..allow(&["socket"])
    });
    // One rule per value: conditions within a rule are and-ed.
    for p in d::PERSONALITIES {
        rules.push(Rule {
            args: Some(vec![arg(0, *p, LinuxSeccompOperator::ScmpCmpEq)]),
            ..allow(&["personality"])
        });
    }
    for (arches, names) in d::BY_ARCH {
        rules.push(Rule {
            includes: Some(Condition {
                arches: Some(arches.iter().map(|a| a.to_string()).collect()),
                ..Condition::default()
            }),
            ..allow(names)
        });
    }
    for (cap, names) in d::BY_CAPABILITY {
        rules.push(Rule {
            includes: Some(Condition {
                caps: caps(cap),
                ..Condition::default()
            }),
            ..allow(names)
        });
    }
    // Without CAP_SYS_ADMIN: clone without namespace flags, clone3 not at all.
    let s390 = || Some(vec!["s390".to_owned(), "s390x".to_owned()]);
    for (index, on_s390) in [(0, false), (1, true)] {
        let clone_flags = arg(
            index,
            d::CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        );
        rules.push(Rule {
            args: Some(vec![clone_flags]),
            includes: on_s390.then(|| Condition {
                arches: s390(),
                ..Condition::default()
            }),
            excludes: Some(Condition {
                caps: caps("CAP_SYS_ADMIN"),
                arches: (!on_s390).then(s390).flatten(),
                ..Condition::default()
            }),
            ..allow(&["clone"])
        });
    }
    rules.push(Rule {
        names: Some(vec!["clone3".into()]),
        action: LinuxSeccompAction::ScmpActErrno,
        errno_ret: Some(d::CLONE3_ERRNO),
        excludes: Some(Condition {
            caps: caps("CAP_SYS_ADMIN"),
            ..Condition::default()
        }),
        ..Rule::default()
    });
    let native_family = |a: Arch, subs: &[Arch]| ArchMap {
        architecture: a,
        sub_architectures: Some(subs.to_vec()),
    };
    SeccompProfile {
        default_action: LinuxSeccompAction::ScmpActErrno,
        default_errno_ret: Some(1),
        architectures: None,
        arch_map: Some(vec![
            native_family(
                Arch::ScmpArchX86_64,
                &[Arch::ScmpArchX86, Arch::ScmpArchX32],
            ),
            native_family(Arch::ScmpArchAarch64, &[Arch::ScmpArchArm]),
            native_family(Arch::ScmpArchS390x, &[Arch::ScmpArchS390]),
            native_family(Arch::ScmpArchRiscv64, &[]),
            native_family(Arch::ScmpArchPpc64le, &[]),
            native_family(Arch::ScmpArchLoongarch64, &[]),
        ]),
        flags: None,
        listener_path: None,
        syscalls: Some(rules),
    }
}

/// The default seccomp profile for a container whose bounding set is `caps`.
pub fn default_seccomp(caps: &[String]) -> LinuxSeccomp {
    default_profile().resolve(caps)
}

#[cfg(test)]
mod tests;
