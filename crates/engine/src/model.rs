//! The Docker Engine API's container shapes, as far as bosun reads them, and
//! the record the engine keeps per container.
//!
//! Request fields are lenient the way dockerd's are: unknown fields are
//! ignored, `null` means "not set", and `Cmd`/`Entrypoint` may be a string or
//! a list. What the engine does not act on is not parsed at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `null` reads as the type's default.
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's strslice: `"a b"` is one element, `["a","b"]` two, `null` none.
fn strslice<'de, D>(d: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<S>::deserialize(d)? {
        None => None,
        Some(S::One(s)) => Some(vec![s]),
        Some(S::Many(v)) => Some(v),
    })
}

/// Docker's `Config` (the image-independent part of a container).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Config {
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "nullable")]
    pub domainname: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(deserialize_with = "nullable")]
    pub exposed_ports: BTreeMap<String, Value>,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub stdin_once: bool,
    #[serde(deserialize_with = "nullable")]
    pub env: Vec<String>,
    #[serde(deserialize_with = "strslice")]
    pub cmd: Option<Vec<String>>,
    pub healthcheck: Option<Healthcheck>,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    #[serde(deserialize_with = "nullable")]
    pub volumes: BTreeMap<String, Value>,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    #[serde(deserialize_with = "strslice")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    #[serde(
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct Healthcheck {
    #[serde(deserialize_with = "nullable")]
    pub test: Vec<String>,
    /// Nanoseconds, as Docker sends them.
    #[serde(deserialize_with = "nullable")]
    pub interval: i64,
    #[serde(deserialize_with = "nullable")]
    pub timeout: i64,
    #[serde(deserialize_with = "nullable")]
    pub start_period: i64,
    #[serde(deserialize_with = "nullable")]
    pub retries: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct PortBinding {
    #[serde(deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(deserialize_with = "nullable")]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct RestartPolicy {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

/// One entry of `HostConfig.Mounts` (`--mount`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct MountRequest {
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    #[serde(deserialize_with = "nullable")]
    pub target: String,
    #[serde(deserialize_with = "nullable")]
    pub read_only: bool,
}

/// Docker's `HostConfig`: how the container sits on this host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct HostConfig {
    #[serde(deserialize_with = "nullable")]
    pub binds: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub network_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    #[serde(deserialize_with = "nullable")]
    pub restart_policy: RestartPolicy,
    #[serde(deserialize_with = "nullable")]
    pub auto_remove: bool,
    #[serde(deserialize_with = "nullable")]
    pub cap_add: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub cap_drop: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub dns: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub extra_hosts: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    /// `--userns`: "" (the engine's default) or "host".
    #[serde(deserialize_with = "nullable")]
    pub userns_mode: String,
    /// `--security-opt`: `seccomp=…`, `no-new-privileges`, … (see `spec::security`).
    #[serde(deserialize_with = "nullable")]
    pub security_opt: Vec<String>,
    /// Replace the default masked and read-only paths when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_paths: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readonly_paths: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    pub init: Option<bool>,
    #[serde(deserialize_with = "nullable")]
    pub memory: i64,
    #[serde(deserialize_with = "nullable")]
    pub nano_cpus: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    pub pids_limit: Option<i64>,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<MountRequest>,
    #[serde(deserialize_with = "nullable")]
    pub tmpfs: BTreeMap<String, String>,
    #[serde(deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    /// The terminal's rows and columns at start (the client's window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u16; 2]>,
}

/// `POST /containers/create`: Config fields at the top level, plus these.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct CreateRequest {
    #[serde(flatten)]
    pub config: Config,
    #[serde(deserialize_with = "nullable")]
    pub host_config: HostConfig,
    #[serde(deserialize_with = "nullable")]
    pub networking_config: NetworkingConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct NetworkingConfig {
    #[serde(deserialize_with = "nullable")]
    pub endpoints_config: BTreeMap<String, Option<EndpointRequest>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub(crate) struct EndpointRequest {
    #[serde(deserialize_with = "nullable")]
    pub aliases: Vec<String>,
}

/// A container's life cycle, as Docker names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    /// Has a live process (the shim is supervising one).
    pub(crate) fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Paused)
    }
}

/// Docker's `State`, as the engine tracks it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    pub error: String,
    /// Set by `docker stop`/`kill`, so `unless-stopped` and `always` stay down.
    pub stopped_by_user: bool,
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<Value>,
}

/// A published port as set up: what `docker port` and `ps` show.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Published {
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
}

/// The container's place on one network while it runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub network: String,
    pub network_id: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    pub host_veth: String,
    pub aliases: Vec<String>,
}

/// A mount as `inspect` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    pub name: Option<String>,
    pub source: String,
    pub destination: String,
    pub rw: bool,
}

/// Everything the engine keeps about one container, saved atomically in
/// `<data>/containers/<id>/record.json` at every change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Record {
    pub id: String,
    /// Without Docker's leading slash.
    pub name: String,
    pub created: String,
    /// What the user asked for (`busybox`, `sha256:…`).
    pub image: String,
    /// The config digest (Docker's image id).
    pub image_id: String,
    /// The manifest the rootfs is made of.
    pub manifest: String,
    pub config: Config,
    pub host_config: HostConfig,
    /// Aliases asked for per network at create.
    pub aliases: BTreeMap<String, Vec<String>>,
    pub state: State,
    pub restart_count: u32,
    pub endpoints: Vec<Endpoint>,
    pub ports: Vec<Published>,
    pub mounts: Vec<MountPoint>,
    /// The process the spec runs (Docker's Path and Args).
    pub path: String,
    pub args: Vec<String>,
}

impl Record {
    pub(crate) fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The network the container joins by default (`bridge` when unset).
    pub(crate) fn network_mode(&self) -> &str {
        match self.host_config.network_mode.as_str() {
            "" | "default" => "bridge",
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_cli_create_body_parses() {
        // The shape the docker CLI sends, nulls and all.
        let body = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
            "AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,
            "StdinOnce":false,"Env":null,"Cmd":["echo","hi"],"Image":"busybox",
            "Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},
            "HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},
            "NetworkMode":"default","PortBindings":{"80/tcp":[{"HostIp":"","HostPort":"8080"}]},
            "RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,
            "CapAdd":null,"CapDrop":null,"Dns":[],"ExtraHosts":null,"Memory":0,
            "PidsLimit":null,"Mounts":null,"Init":null},
            "NetworkingConfig":{"EndpointsConfig":{}}}"#;
        let req: CreateRequest = serde_json::from_str(body).expect("parses");
        assert_eq!(req.config.cmd, Some(vec!["echo".into(), "hi".into()]));
        assert_eq!(req.config.entrypoint, None);
        assert!(req.host_config.auto_remove);
        assert_eq!(
            req.host_config.port_bindings["80/tcp"]
                .as_ref()
                .map(|b| b[0].host_port.as_str()),
            Some("8080")
        );
    }

    #[test]
    fn strslice_takes_a_string() {
        let c: Config = serde_json::from_str(r#"{"Entrypoint":"/bin/sh"}"#).expect("parses");
        assert_eq!(c.entrypoint, Some(vec!["/bin/sh".into()]));
    }
}
