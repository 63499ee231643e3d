//! Loading and validating a bundle's `config.json`.
//!
//! Everything that can be checked before any process or directory exists is checked
//! here, so that a bad config fails with a message naming the field and leaves
//! nothing behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A validated bundle: the spec plus the absolute rootfs path.
#[derive(Debug, Clone)]
pub(crate) struct Bundle {
    pub(crate) dir: PathBuf,
    pub(crate) rootfs: PathBuf,
    pub(crate) spec: Spec,
    /// The config as read, kept so the state directory gets the user's bytes
    /// without running the whole serializer.
    pub(crate) raw: Vec<u8>,
}

/// Read `config.json` from `bundle_dir` and validate it.
pub(crate) fn load(bundle_dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(bundle_dir).map_err(|source| Error::ReadConfig {
        path: bundle_dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|source| Error::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let spec = parse(&text).map_err(|message| Error::ParseConfig {
        path: path.clone(),
        message,
    })?;
    let rootfs = validate(&spec, &dir)?;
    Ok(Bundle {
        dir,
        rootfs,
        spec,
        raw: text,
    })
}

/// Parse config JSON, naming the JSON path of the field at fault on error.
pub(crate) fn parse(text: &[u8]) -> std::result::Result<Spec, String> {
    let de = &mut serde_json::Deserializer::from_slice(text);
    match serde_path_to_error::deserialize::<_, Spec>(de) {
        Ok(spec) => Ok(spec),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            Err(if path == "." {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            })
        }
    }
}

/// Check what serde cannot: relations between fields and the host.
/// Returns the absolute rootfs path.
pub(crate) fn validate(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root", "missing"))?;
    let rootfs = bundle.join(root.path());
    if !rootfs.is_dir() {
        return Err(Error::invalid(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid(
            "process.args",
            "must name the program to run",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(
            "process.cwd",
            format!("{:?} is not an absolute path", process.cwd()),
        ));
    }
    if let Some(rlimits) = process.rlimits() {
        for (i, r) in rlimits.iter().enumerate() {
            if r.soft() > r.hard() {
                return Err(Error::invalid(
                    format!("process.rlimits[{i}]"),
                    format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
                ));
            }
        }
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::invalid("linux", "missing"))?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = HashSet::new();
    for (i, ns) in namespaces.iter().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}].type"),
                format!("namespace {} is listed twice", ns.typ()),
            ));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}].type"),
                "time namespaces are not supported",
            ));
        }
        if let Some(p) = ns.path()
            && !p.exists()
        {
            return Err(Error::invalid(
                format!("linux.namespaces[{i}].path"),
                format!("{} does not exist", p.display()),
            ));
        }
    }
    if !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Mount)
    {
        return Err(Error::invalid(
            "linux.namespaces",
            "a mount namespace is required",
        ));
    }
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    for (field, maps) in [
        ("uidMappings", linux.uid_mappings()),
        ("gidMappings", linux.gid_mappings()),
    ] {
        match maps {
            Some(m) if !m.is_empty() => {
                if !has(LinuxNamespaceType::User) {
                    return Err(Error::invalid(
                        format!("linux.{field}"),
                        "mappings are set but there is no user namespace",
                    ));
                }
                for (i, map) in m.iter().enumerate() {
                    if map.size() == 0 {
                        return Err(Error::invalid(
                            format!("linux.{field}[{i}].size"),
                            "must be > 0",
                        ));
                    }
                    if map.host_id().checked_add(map.size()).is_none()
                        || map.container_id().checked_add(map.size()).is_none()
                    {
                        return Err(Error::invalid(
                            format!("linux.{field}[{i}]"),
                            "range overflows the 32-bit id space",
                        ));
                    }
                }
            }
            _ if new_user => {
                return Err(Error::invalid(
                    format!("linux.{field}"),
                    "a new user namespace needs at least one mapping",
                ));
            }
            _ => {}
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::invalid(
            "hostname",
            "setting it needs a uts namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(Error::invalid(
            "domainname",
            "setting it needs a uts namespace",
        ));
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return Err(Error::invalid(
                format!("mounts[{i}].destination"),
                format!("{:?} is not an absolute path", m.destination()),
            ));
        }
        if m.destination()
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(Error::invalid(
                format!("mounts[{i}].destination"),
                format!("{:?} contains \"..\"", m.destination()),
            ));
        }
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        if is_bind {
            let src = m.source().as_ref().ok_or_else(|| {
                Error::invalid(format!("mounts[{i}].source"), "a bind mount needs a source")
            })?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            if !src.exists() {
                return Err(Error::invalid(
                    format!("mounts[{i}].source"),
                    format!("{} does not exist", src.display()),
                ));
            }
        } else if m.typ().as_deref().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!("mounts[{i}].type"), "missing"));
        }
        for opt in m.options().iter().flatten() {
            crate::rootfs::parse_mount_option(opt)
                .map_err(|message| Error::invalid(format!("mounts[{i}].options"), message))?;
        }
    }
    if let Some(p) = linux.rootfs_propagation() {
        crate::rootfs::parse_propagation(p).ok_or_else(|| {
            Error::invalid("linux.rootfsPropagation", format!("unknown value {p:?}"))
        })?;
    }
    for (key, _) in linux.sysctl().iter().flatten() {
        if key
            .split(['.', '/'])
            .any(|part| part.is_empty() || part == "..")
        {
            return Err(Error::invalid("linux.sysctl", format!("bad key {key:?}")));
        }
    }
    if let Some(cg) = linux.cgroups_path()
        && cg
            .components()
            .any(|c| c == std::path::Component::ParentDir)
    {
        return Err(Error::invalid(
            "linux.cgroupsPath",
            format!("{} contains \"..\"", cg.display()),
        ));
    }
    for (i, dev) in linux.devices().iter().flatten().enumerate() {
        if !dev.path().is_absolute() || !dev.path().starts_with("/dev") {
            return Err(Error::invalid(
                format!("linux.devices[{i}].path"),
                format!("{:?} must be an absolute path under /dev", dev.path()),
            ));
        }
    }
    for (kind, hooks) in hook_lists(spec) {
        for (i, h) in hooks.iter().enumerate() {
            if !h.path().is_absolute() {
                return Err(Error::invalid(
                    format!("hooks.{kind}[{i}].path"),
                    format!("{:?} is not an absolute path", h.path()),
                ));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err(Error::invalid(
                    format!("hooks.{kind}[{i}].timeout"),
                    "must be > 0",
                ));
            }
        }
    }
    if let Some(seccomp) = linux.seccomp() {
        crate::seccomp::check(seccomp)?;
    }
    Ok(rootfs)
}

fn hook_lists(spec: &Spec) -> Vec<(&'static str, &[oci_spec::runtime::Hook])> {
    let Some(h) = spec.hooks() else {
        return Vec::new();
    };
    [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
        ("poststart", h.poststart()),
        ("poststop", h.poststop()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_the_bad_field() {
        let json =
            br#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"pid"},{"type":"bogus"}]}}"#;
        let err = parse(json).unwrap_err();
        assert!(err.starts_with("linux.namespaces[1].type:"), "{err}");
        assert!(err.contains("bogus"), "{err}");
    }
}
