//! From a container record and its image to the OCI bundle config the runtime
//! runs. Pure: every input is passed in, so the rules (Docker's entrypoint/cmd
//! merge, env override, capabilities, resources) are tested without a container.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{EngineError, Result};
use crate::model::{Config, HostConfig, MountPoint};

pub(crate) use bosun_runtime::DEFAULT_CAPS;
use bosun_runtime::{ALL_CAPS, SeccompProfile};

/// What the image's config contributes (the fields a container inherits).
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageDefaults {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub volumes: Vec<String>,
    pub stop_signal: String,
    pub exposed_ports: Vec<String>,
}

/// Docker's rule: the container's entrypoint or the image's, then the
/// container's cmd, or the image's cmd unless the entrypoint was overridden.
pub(crate) fn command(config: &Config, image: &ImageDefaults) -> Result<Vec<String>> {
    let entrypoint = config
        .entrypoint
        .clone()
        .or_else(|| image.entrypoint.clone())
        .unwrap_or_default();
    let cmd = match (&config.cmd, &config.entrypoint) {
        (Some(c), _) => c.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone().unwrap_or_default(),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() || args[0].is_empty() {
        return Err(EngineError::Invalid("no command specified".into()));
    }
    Ok(args)
}

/// The image's environment overridden key by key by the container's, with the
/// variables Docker always sets.
pub(crate) fn environment(
    config: &Config,
    image: &ImageDefaults,
    hostname: &str,
) -> Result<Vec<String>> {
    let mut env: Vec<String> = Vec::new();
    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
        set_env(
            &mut env,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
    }
    set_env(&mut env, &format!("HOSTNAME={hostname}"));
    for e in &image.env {
        set_env(&mut env, e);
    }
    for e in &config.env {
        if e.is_empty() || e.starts_with('=') {
            return Err(EngineError::Invalid(format!(
                "invalid environment variable {e:?}: it needs a name"
            )));
        }
        // `-e NAME` without a value is resolved by the client; a bare name
        // that reaches us means "unset", as in Docker.
        if e.contains('=') {
            set_env(&mut env, e);
        }
    }
    if config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    Ok(env)
}

/// Set `KEY=value` in `env`, replacing an earlier value of KEY.
pub(crate) fn set_env(env: &mut Vec<String>, kv: &str) {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    let k = key(kv);
    env.retain(|e| key(e) != k);
    env.push(kv.to_owned());
}

/// The capability set after `--cap-add`/`--cap-drop` (names with or without
/// the `CAP_` prefix, any case, and `ALL`).
pub(crate) fn capabilities(host: &HostConfig) -> Result<Vec<String>> {
    if host.privileged {
        return Ok(bosun_runtime::held_caps());
    }
    let norm = |c: &str| -> Result<String> {
        let up = c.to_ascii_uppercase();
        let name = match up.starts_with("CAP_") {
            true => up,
            false => format!("CAP_{up}"),
        };
        if name == "CAP_ALL" || ALL_CAPS.contains(&name.as_str()) {
            Ok(name)
        } else {
            Err(EngineError::Invalid(format!("unknown capability: {c:?}")))
        }
    };
    let add: Vec<String> = host
        .cap_add
        .iter()
        .map(|c| norm(c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = host
        .cap_drop
        .iter()
        .map(|c| norm(c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = match add.iter().any(|c| c == "CAP_ALL") {
        true => bosun_runtime::held_caps(),
        false => DEFAULT_CAPS.iter().map(|c| c.to_string()).collect(),
    };
    if drop.iter().any(|c| c == "CAP_ALL") {
        caps.clear();
    }
    for c in add.into_iter().filter(|c| c != "CAP_ALL") {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps.retain(|c| !drop.contains(c));
    Ok(caps)
}

/// The container's seccomp filter (`--security-opt seccomp=…`).
#[derive(Debug, Clone)]
pub(crate) enum Seccomp {
    /// The default profile, resolved against the container's capabilities.
    Default,
    Unconfined,
    /// A profile in Docker's format (the CLI sends the file's content).
    Custom(Box<SeccompProfile>),
}

/// What `HostConfig.SecurityOpt` asks for.
#[derive(Debug, Clone)]
pub(crate) struct Security {
    pub seccomp: Seccomp,
    pub no_new_privileges: bool,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub system_paths: bool,
}

/// Parse `--security-opt` values the way Docker's daemon does: `KEY=VALUE`
/// (or the older `KEY:VALUE`). Options bosun cannot honour are refused rather
/// than ignored, since a user asking for a confinement expects to get it.
pub(crate) fn security(host: &HostConfig) -> Result<Security> {
    let mut sec = Security {
        seccomp: Seccomp::Default,
        no_new_privileges: false,
        system_paths: true,
    };
    for opt in &host.security_opt {
        let (key, value) = match opt.find(['=', ':']) {
            Some(i) => (&opt[..i], Some(&opt[i + 1..])),
            None => (opt.as_str(), None),
        };
        // A profile's JSON can be long; its start is enough to recognise it.
        let shown: String = match opt.chars().count() > 60 {
            true => opt.chars().take(60).chain(['…']).collect(),
            false => opt.clone(),
        };
        let bad =
            |why: &str| EngineError::Invalid(format!("invalid --security-opt {shown:?}: {why}"));
        match (key, value) {
            ("no-new-privileges", None) => sec.no_new_privileges = true,
            ("no-new-privileges", Some(v)) => {
                sec.no_new_privileges = v
                    .parse()
                    .map_err(|_| bad("no-new-privileges takes true or false"))?;
            }
            ("seccomp", Some("unconfined")) => sec.seccomp = Seccomp::Unconfined,
            ("seccomp", Some("builtin" | "")) => sec.seccomp = Seccomp::Default,
            ("seccomp", Some(json)) if json.trim_start().starts_with('{') => {
                let p = SeccompProfile::from_json(json).map_err(|e| bad(&e.to_string()))?;
                sec.seccomp = Seccomp::Custom(Box::new(p));
            }
            ("seccomp", _) => {
                return Err(bad(
                    "seccomp takes unconfined, builtin or a profile's JSON (the client reads the file)",
                ));
            }
            ("systempaths", Some("unconfined")) => sec.system_paths = false,
            // There is no AppArmor or SELinux confinement to lift.
            ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            ("apparmor" | "label", _) => {
                return Err(bad(&format!("{key} is not supported on this engine")));
            }
            _ => {
                return Err(bad(
                    "known options are seccomp=unconfined|builtin|<profile JSON>, \
                     no-new-privileges[=true|false], systempaths=unconfined, \
                     apparmor=unconfined and label=disable",
                ));
            }
        }
    }
    Ok(sec)
}

/// How the container gets its network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetNs {
    /// The host's (`--network host`).
    Host,
    /// A new one (bridge networks get a veth in it after create; `none` stays empty).
    New,
    /// Another container's (`--network container:ID`).
    Join(PathBuf),
}

/// The user namespace of a remapped container (`--userns-remap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UserNs<'a> {
    /// A new one: container ids map to the host's through these ranges.
    New {
        uids: &'a [bosun_image::snapshot::IdRange],
        gids: &'a [bosun_image::snapshot::IdRange],
    },
    /// Another container's (`--network container:ID`: joining a network
    /// namespace from inside a user namespace that does not own it would
    /// leave the container unable to mount its sysfs, so Docker shares both).
    Join(PathBuf),
}

/// Everything the spec is made from, resolved by the caller.
#[derive(Debug)]
pub(crate) struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a Config,
    pub host: &'a HostConfig,
    pub args: &'a [String],
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    pub rootfs: &'a Path,
    pub netns: NetNs,
    /// `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`: (destination, source).
    pub etc_files: Vec<(&'static str, PathBuf)>,
    pub mounts: &'a [MountPoint],
    /// None: the host's user namespace.
    pub userns: Option<UserNs<'a>>,
    /// The host's devices (`linux.devices` entries), for `--privileged` only.
    pub host_devices: Vec<Value>,
}

pub(crate) fn build(input: &SpecInput<'_>) -> Result<Value> {
    let mut spec = serde_json::to_value(bosun_runtime::default_spec(None))
        .map_err(|e| EngineError::internal("default spec", e))?;
    let caps = capabilities(input.host)?;
    let security = security(input.host)?;
    let rlimits = spec["process"]["rlimits"].clone();
    spec["root"] = json!({"path": input.rootfs, "readonly": input.host.readonly_rootfs});
    spec["hostname"] = json!(input.hostname);
    spec["process"] = json!({
        "terminal": input.config.tty,
        "args": input.args,
        "env": input.env,
        "cwd": input.cwd,
        "user": {"uid": input.uid, "gid": input.gid, "additionalGids": input.additional_gids},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": rlimits,
        "noNewPrivileges": security.no_new_privileges,
    });
    // As in Docker, --privileged runs unfiltered even with a profile given.
    spec["linux"]["seccomp"] = match (&security.seccomp, input.host.privileged) {
        (Seccomp::Unconfined, _) | (_, true) => Value::Null,
        (Seccomp::Default, false) => to_json(bosun_runtime::default_seccomp(&caps))?,
        (Seccomp::Custom(p), false) => to_json(p.resolve(&caps))?,
    };
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        match &input.netns {
            NetNs::Host => ns.retain(|n| n["type"] != "network"),
            NetNs::New => {}
            NetNs::Join(path) => {
                for n in ns.iter_mut().filter(|n| n["type"] == "network") {
                    n["path"] = json!(path);
                }
            }
        }
    }
    if let Some(userns) = &input.userns {
        user_namespace(&mut spec, userns);
    }
    // Flat (`/bosun-<id>`), not under a shared `/bosun` parent: the runtime
    // removes a container's own cgroup, and a parent would outlive them all.
    spec["linux"]["cgroupsPath"] = json!(format!("/bosun-{}", input.id));
    if input.host.init == Some(true) {
        // The runtime's own reaper as PID 1 (`--init`).
        spec["annotations"]["run.bosun.init"] = json!("true");
    }
    // The docker CLI turns `systempaths=unconfined` into empty lists here.
    if let Some(paths) = &input.host.masked_paths {
        spec["linux"]["maskedPaths"] = json!(paths);
    }
    if let Some(paths) = &input.host.readonly_paths {
        spec["linux"]["readonlyPaths"] = json!(paths);
    }
    if input.host.privileged || !security.system_paths {
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
    }
    spec["linux"]["resources"] = resources(input.host)?;
    if input.host.privileged {
        // Docker's --privileged: every host device, reachable through the
        // device cgroup, and /sys and the cgroup tree writable.
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
        spec["linux"]["devices"] = json!(input.host_devices);
    }
    let mounts = spec["mounts"]
        .as_array_mut()
        .expect("the default spec has mounts");
    if input.host.privileged {
        for m in mounts.iter_mut() {
            if (m["type"] == "sysfs" || m["type"] == "cgroup")
                && let Some(opts) = m["options"].as_array_mut()
            {
                opts.retain(|o| o != "ro");
                opts.push(json!("rw"));
            }
        }
    }
    for (dest, src) in &input.etc_files {
        mounts.push(json!({
            "destination": dest, "type": "bind", "source": src,
            "options": ["rbind", "rprivate"],
        }));
    }
    for m in input.mounts {
        let rw = if m.rw { "rw" } else { "ro" };
        let mount = match m.kind.as_str() {
            "tmpfs" => {
                // Docker's defaults, then what `--tmpfs DST:OPTS` adds or overrides.
                let mut options = vec!["nosuid", "nodev", "noexec", rw];
                let extra = input.host.tmpfs.get(&m.destination).map(String::as_str);
                options.extend(extra.unwrap_or("").split(',').filter(|o| !o.is_empty()));
                json!({
                    "destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                    "options": options,
                })
            }
            _ => json!({
                "destination": m.destination, "type": "bind", "source": m.source,
                "options": ["rbind", "rprivate", rw],
            }),
        };
        mounts.push(mount);
    }
    Ok(spec)
}

fn to_json(s: oci_spec::runtime::LinuxSeccomp) -> Result<Value> {
    serde_json::to_value(s).map_err(|e| EngineError::internal("seccomp profile", e))
}

/// `--privileged`: the host's character and block devices under `/dev`, as
/// `linux.devices` entries (pseudo-terminals and the shared memory and queue
/// file systems stay the container's own).
pub(crate) fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![PathBuf::from("/dev")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                if !["/dev/pts", "/dev/shm", "/dev/mqueue"].contains(&path.to_str().unwrap_or("")) {
                    dirs.push(path);
                }
                continue;
            }
            let kind = match (ft.is_char_device(), ft.is_block_device()) {
                (true, _) => "c",
                (_, true) => "b",
                _ => continue,
            };
            // The container's console and terminals are its own.
            if path == Path::new("/dev/console") || path == Path::new("/dev/ptmx") {
                continue;
            }
            let rdev = meta.rdev();
            out.push(json!({
                "path": path, "type": kind,
                "major": nix::sys::stat::major(rdev), "minor": nix::sys::stat::minor(rdev),
                "fileMode": meta.mode() & 0o7777, "uid": meta.uid(), "gid": meta.gid(),
            }));
        }
    }
    out.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    out
}

/// Adds the user namespace (new, with the mappings, or joined by path).
fn user_namespace(spec: &mut Value, userns: &UserNs<'_>) {
    let ns = match userns {
        UserNs::New { uids, gids } => {
            let map = |ranges: &[bosun_image::snapshot::IdRange]| -> Value {
                ranges
                    .iter()
                    .map(|r| json!({"containerID": r.inside, "hostID": r.outside, "size": r.count}))
                    .collect()
            };
            spec["linux"]["uidMappings"] = map(uids);
            spec["linux"]["gidMappings"] = map(gids);
            json!({"type": "user"})
        }
        UserNs::Join(path) => json!({"type": "user", "path": path}),
    };
    if let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() {
        namespaces.retain(|n| n["type"] != "user");
        namespaces.push(ns);
    }
}

/// `-m`, `--cpus`, `--cpu-shares`, `--cpuset-cpus`, `--pids-limit`.
pub(crate) fn resources(host: &HostConfig) -> Result<Value> {
    let mut r = json!({"devices": [{"allow": false, "access": "rwm"}]});
    if host.memory < 0 || host.nano_cpus < 0 || host.cpu_shares < 0 {
        return Err(EngineError::Invalid(
            "Memory, NanoCpus and CpuShares cannot be negative".into(),
        ));
    }
    if host.memory > 0 {
        if host.memory < 6 * 1024 * 1024 {
            return Err(EngineError::Invalid(
                "Minimum memory limit allowed is 6MB".into(),
            ));
        }
        r["memory"] = json!({"limit": host.memory});
    }
    let mut cpu = json!({});
    if host.nano_cpus > 0 {
        let period: i64 = 100_000;
        cpu["period"] = json!(period);
        cpu["quota"] = json!(host.nano_cpus * period / 1_000_000_000);
    }
    if host.cpu_shares > 0 {
        cpu["shares"] = json!(host.cpu_shares);
    }
    if !host.cpuset_cpus.is_empty() {
        cpu["cpus"] = json!(host.cpuset_cpus);
    }
    if cpu.as_object().is_some_and(|o| !o.is_empty()) {
        r["cpu"] = cpu;
    }
    if let Some(limit) = host.pids_limit.filter(|l| *l > 0) {
        r["pids"] = json!({"limit": limit});
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["serve".into()]),
            env: vec!["PATH=/bin".into(), "A=image".into()],
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let mut c = Config::default();
        assert_eq!(command(&c, &image()).expect("cmd"), ["/entry", "serve"]);
        c.cmd = Some(vec!["other".into()]);
        assert_eq!(command(&c, &image()).expect("cmd"), ["/entry", "other"]);
        c.cmd = None;
        c.entrypoint = Some(vec!["/bin/sh".into()]);
        assert_eq!(command(&c, &image()).expect("cmd"), ["/bin/sh"]);
        let e = command(&Config::default(), &ImageDefaults::default()).expect_err("empty");
        assert!(e.to_string().contains("no command"));
    }

    #[test]
    fn env_overrides_by_key() {
        let c = Config {
            env: vec!["A=mine".into(), "B=2".into()],
            tty: true,
            ..Default::default()
        };
        let env = environment(&c, &image(), "h").expect("env");
        assert!(env.contains(&"A=mine".to_string()));
        assert!(!env.contains(&"A=image".to_string()));
        assert!(env.contains(&"PATH=/bin".to_string()));
        assert!(env.contains(&"HOSTNAME=h".to_string()));
        assert!(env.contains(&"TERM=xterm".to_string()));
        let bad = Config {
            env: vec!["=x".into()],
            ..Default::default()
        };
        assert!(environment(&bad, &image(), "h").is_err());
    }

    #[test]
    fn capabilities_add_drop_all() {
        let mut h = HostConfig::default();
        assert_eq!(capabilities(&h).expect("caps").len(), DEFAULT_CAPS.len());
        h.cap_add = vec!["net_admin".into()];
        h.cap_drop = vec!["CAP_CHOWN".into(), "MKNOD".into()];
        let caps = capabilities(&h).expect("caps");
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        h.cap_drop = vec!["ALL".into()];
        assert_eq!(capabilities(&h).expect("caps"), ["CAP_NET_ADMIN"]);
        h.cap_add = vec!["WIZARDRY".into()];
        assert!(capabilities(&h).is_err());
    }

    #[test]
    fn security_options_parse_like_dockers() {
        let parse = |opts: &[&str]| {
            security(&HostConfig {
                security_opt: opts.iter().map(|o| o.to_string()).collect(),
                ..Default::default()
            })
        };
        let s = parse(&[]).expect("none");
        assert!(matches!(s.seccomp, Seccomp::Default) && !s.no_new_privileges && s.system_paths);
        for nnp in [
            "no-new-privileges",
            "no-new-privileges=true",
            "no-new-privileges:true",
        ] {
            assert!(parse(&[nnp]).expect(nnp).no_new_privileges, "{nnp}");
        }
        assert!(
            !parse(&["no-new-privileges=false"])
                .expect("false")
                .no_new_privileges
        );
        let s = parse(&["seccomp=unconfined", "systempaths=unconfined"]).expect("unconfined");
        assert!(matches!(s.seccomp, Seccomp::Unconfined) && !s.system_paths);
        let json = r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        assert!(matches!(
            parse(&[json]).expect("json").seccomp,
            Seccomp::Custom(_)
        ));
        for (bad, says) in [
            ("seccomp=/tmp/profile.json", "the client reads the file"),
            ("seccomp={\"syscalls\": []}", "defaultAction"),
            ("no-new-privileges=maybe", "true or false"),
            ("apparmor=docker-default", "apparmor is not supported"),
            ("wizardry=on", "known options are"),
        ] {
            let e = parse(&[bad]).expect_err(bad).to_string();
            assert!(
                e.contains(says) && e.contains("--security-opt"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn resources_map_to_cgroup_settings() {
        let h = HostConfig {
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            pids_limit: Some(50),
            ..Default::default()
        };
        let r = resources(&h).expect("resources");
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 150_000);
        assert_eq!(r["pids"]["limit"], 50);
        let tiny = HostConfig {
            memory: 1024,
            ..Default::default()
        };
        assert!(resources(&tiny).is_err());
    }
}
