//! The container process's own attributes: executable lookup, rlimits, user,
//! capabilities, no_new_privs and seccomp, applied in the order that keeps each
//! step permitted.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability};
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{Capabilities, LinuxSeccomp, PosixRlimitType, Process};

use crate::error::{Context, Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An executable resolved inside the container, with its argv and environment.
#[derive(Debug)]
pub(crate) struct Exec {
    pub(crate) path: CString,
    pub(crate) args: Vec<CString>,
    pub(crate) env: Vec<CString>,
}

fn cstring(s: &str, field: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(field, format!("{s:?} contains a NUL byte")))
}

/// Find `args[0]` the way execvp would, using the container's PATH.
pub(crate) fn resolve_exec(process: &Process) -> Result<Exec> {
    let args = process.args().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|kv| kv.starts_with("HOME=")) {
        // Like runc and crun: the user's home from the container's /etc/passwd.
        env.push(format!("HOME={}", home_of(process.user().uid())));
    }
    let first = args
        .first()
        .ok_or_else(|| Error::invalid("process.args", "empty"))?;
    let path = if first.contains('/') {
        PathBuf::from(first)
    } else {
        let search = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(first))
            .find(|p| is_executable(p))
            .ok_or_else(|| {
                Error::invalid(
                    "process.args[0]",
                    format!("executable {first:?} not found in $PATH"),
                )
            })?
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(Error::invalid(
                "process.args[0]",
                format!("{} is not a file", path.display()),
            ));
        }
        Err(e) => {
            return Err(Error::invalid(
                "process.args[0]",
                format!("{}: {e}", path.display()),
            ));
        }
    }
    Ok(Exec {
        path: cstring(&path.to_string_lossy(), "process.args[0]")?,
        args: args
            .iter()
            .map(|a| cstring(a, "process.args"))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| cstring(e, "process.env"))
            .collect::<Result<_>>()?,
    })
}

/// The home directory of `uid` in the container's /etc/passwd, or `/`.
fn home_of(uid: u32) -> String {
    crate::passwd::field(uid, 5)
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_owned())
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub(crate) fn apply_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().iter().flatten() {
        setrlimit(resource(r.typ()), r.soft(), r.hard()).ctx(|| {
            format!(
                "process.rlimits: set {:?} to {}:{}",
                r.typ(),
                r.soft(),
                r.hard()
            )
        })?;
    }
    Ok(())
}

pub(crate) fn apply_oom_score_adj(process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .ctx(|| format!("process.oomScoreAdj: set {adj}"))?;
    }
    Ok(())
}

fn cap_set(
    set: Option<&Capabilities>,
    field: &str,
    supported: &HashSet<Capability>,
) -> Result<HashSet<Capability>> {
    let mut out = HashSet::new();
    for c in set.into_iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Capability = name
            .parse()
            .map_err(|_| Error::invalid(field, format!("unknown capability {name}")))?;
        // A capability this kernel does not know cannot be held anyway; runc skips it too.
        if supported.contains(&cap) {
            out.insert(cap);
        }
    }
    Ok(out)
}

/// A seccomp filter still to be loaded right before execve.
pub(crate) type Pending = Option<libseccomp::ScmpFilterContext>;

/// Switch to the configured user and capability sets. Returns the seccomp filter if
/// it must still be loaded (when no_new_privs is set it is loaded last; without it
/// loading needs CAP_SYS_ADMIN, so it happens here, before capabilities are dropped).
pub(crate) fn finalize(process: &Process, seccomp: Option<&LinuxSeccomp>) -> Result<Pending> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    let filter = seccomp.map(crate::seccomp::compile).transpose()?;
    let pending = match filter {
        Some(f) if !nnp => {
            crate::seccomp::load(&f)?;
            None
        }
        other => other,
    };
    let caps = process.capabilities().as_ref();
    let supported = caps::runtime::thread_all_supported();
    let current_bounding = caps::read(None, CapSet::Bounding).unwrap_or_default();
    let set = |s: Option<&Capabilities>, name: &str| {
        cap_set(s, &format!("process.capabilities.{name}"), &supported)
    };
    let bounding = set(caps.and_then(|c| c.bounding().as_ref()), "bounding")?;
    let effective = set(caps.and_then(|c| c.effective().as_ref()), "effective")?;
    let permitted = set(caps.and_then(|c| c.permitted().as_ref()), "permitted")?;
    let inheritable = set(caps.and_then(|c| c.inheritable().as_ref()), "inheritable")?;
    let ambient = set(caps.and_then(|c| c.ambient().as_ref()), "ambient")?;

    for cap in current_bounding.difference(&bounding) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|e| Error::Init(format!("drop {cap} from the bounding set: {e}")))?;
    }

    let user = process.user();
    let uid = Uid::from_raw(user.uid());
    let gid = Gid::from_raw(user.gid());
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    match setgroups(&groups) {
        Ok(()) => {}
        // setgroups is denied in a user namespace with setgroups=deny; fine when none are asked for.
        Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
        Err(e) => {
            return Err(e).ctx(|| format!("process.user.additionalGids: setgroups {groups:?}"));
        }
    }
    setresgid(gid, gid, gid).ctx(|| format!("process.user.gid: setgid {gid}"))?;
    nix::sys::prctl::set_keepcaps(true).ctx(|| "keep capabilities".into())?;
    setresuid(uid, uid, uid).ctx(|| format!("process.user.uid: setuid {uid}"))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "keep capabilities off".into())?;

    let cap_err = |set: &str, e: caps::errors::CapsError| {
        Error::Init(format!("process.capabilities.{set}: {e}"))
    };
    caps::set(
        None,
        CapSet::Effective,
        &effective
            .intersection(&caps::read(None, CapSet::Permitted).unwrap_or_default())
            .copied()
            .collect(),
    )
    .map_err(|e| cap_err("effective", e))?;
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| cap_err("inheritable", e))?;
    caps::set(None, CapSet::Permitted, &permitted).map_err(|e| cap_err("permitted", e))?;
    caps::set(None, CapSet::Effective, &effective).map_err(|e| cap_err("effective", e))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| cap_err("ambient", e))?;
    for cap in &ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(|e| cap_err("ambient", e))?;
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "process.noNewPrivileges".into())?;
    }
    Ok(pending)
}

/// The last step: load a pending seccomp filter and replace this process image.
pub(crate) fn exec(cmd: &Exec, pending: Pending) -> Result<std::convert::Infallible> {
    if let Some(filter) = pending {
        crate::seccomp::load(&filter)?;
    }
    crate::sys::reset_signals();
    let e = nix::unistd::execve(&cmd.path, &cmd.args, &cmd.env).unwrap_err();
    Err(Error::Sys {
        context: format!("exec {:?}", cmd.path),
        source: e,
    })
}
