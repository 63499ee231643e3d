//! The container life cycle and its on-disk record.
//!
//! ```text
//!   create ──► Created ──start──► Running ◄──resume── Paused
//!                 │                  │ └──pause──────────▲
//!                 └──────kill────────┴──(process exits)──► Stopped ──delete──► (gone)
//! ```
//!
//! Status is never stored: it is derived from the record and the live system
//! (is the init pid alive and the same process, is the exec fifo still there,
//! is the cgroup frozen), so a crash of any runtime command cannot leave a
//! stale status behind.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use bosun_oci::ContainerId;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: ContainerId,
    pub(crate) pid: i32,
    /// Start time of `pid` in clock ticks since boot, to tell our process from a
    /// later one that reused its pid.
    pub(crate) pid_start: u64,
    pub(crate) bundle: PathBuf,
    pub(crate) rootfs: PathBuf,
    pub(crate) created: String,
    pub(crate) owner: String,
    pub(crate) annotations: HashMap<String, String>,
    pub(crate) cgroup: Cgroup,
    /// Whether the runtime created the container's pid namespace; if not, other
    /// processes may share it and `kill --all`/delete must use the cgroup.
    pub(crate) own_pid_ns: bool,
}

/// The OCI `state` document, as `runc state` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    /// bosun's addition: the kernel OOM-killed a process of this (stopped) container.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

pub(crate) const OCI_VERSION: &str = "1.2.0";

/// The directory of one container under the runtime root.
#[derive(Debug, Clone)]
pub(crate) struct StateDir {
    pub(crate) path: PathBuf,
}

impl StateDir {
    pub(crate) fn new(root: &Path, id: &ContainerId) -> Self {
        Self {
            path: root.join(id.as_str()),
        }
    }

    /// Make the directory; fails with `AlreadyExists` if the id is taken.
    pub(crate) fn create(&self, id: &ContainerId) -> Result<()> {
        if let Some(parent) = self.path.parent() {
            std::fs::create_dir_all(parent)
                .ctx(|| format!("create state root {}", parent.display()))?;
        }
        match std::fs::create_dir(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => Err(e).ctx(|| format!("create state dir {}", self.path.display())),
        }
    }

    pub(crate) fn fifo(&self) -> PathBuf {
        self.path.join("exec.fifo")
    }

    pub(crate) fn config(&self) -> PathBuf {
        self.path.join("config.json")
    }

    fn record_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    pub(crate) fn load(&self, id: &ContainerId) -> Result<Record> {
        let bytes = match std::fs::read(self.record_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()));
            }
            Err(e) => return Err(e).ctx(|| format!("read {}", self.record_path().display())),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Io {
            context: format!("parse {}", self.record_path().display()),
            source: e.into(),
        })
    }

    /// Write the record atomically: a reader sees the old record or the new one.
    pub(crate) fn save(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec(record).map_err(|e| Error::Io {
            context: "serialize state".into(),
            source: e.into(),
        })?;
        write_atomic(&self.record_path(), &bytes)
    }

    pub(crate) fn remove(&self) -> Result<()> {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).ctx(|| format!("remove {}", self.path.display())),
        }
    }
}

/// Write `bytes` to `path` through a temp file and rename, so readers see the old
/// content or the new, never a mix. No fsync: runtime state lives in /run (tmpfs)
/// and does not outlive a reboot anyway, like runc's.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.ctx(|| format!("write {}", path.display()))
}

/// The start time (field 22 of `/proc/PID/stat`) and whether the process is a zombie.
pub(crate) fn proc_start(pid: i32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

impl Record {
    /// Is the recorded init process still alive (and still ours)?
    pub(crate) fn init_alive(&self) -> bool {
        matches!(proc_start(self.pid), Some((start, false)) if start == self.pid_start)
    }

    pub(crate) fn status(&self, dir: &StateDir) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.fifo().exists() {
            return Status::Created;
        }
        if self.cgroup.is_frozen().unwrap_or(false) {
            return Status::Paused;
        }
        Status::Running
    }

    pub(crate) fn to_state(&self, status: Status) -> State {
        State {
            oci_version: OCI_VERSION.into(),
            id: self.id.to_string(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.annotations.clone(),
            oom_killed: false,
        }
    }
}

/// The name of `uid` from /etc/passwd, or the number.
pub(crate) fn user_name(uid: u32) -> String {
    crate::passwd::field(uid, 0).unwrap_or_else(|| uid.to_string())
}

/// Now as an RFC 3339 UTC timestamp with nanoseconds, like runc's `created`.
pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

pub(crate) fn rfc3339(secs: i64, nanos: u32) -> String {
    format!(
        "{}.{nanos:09}Z",
        bosun_oci::UtcTime::from_unix(secs).date_time()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_000_000, 0), "2026-11-18T11:06:40.000000000Z");
    }

    #[test]
    fn own_process_is_alive_and_not_zombie() {
        let (start, zombie) = proc_start(std::process::id() as i32).unwrap();
        assert!(start > 0);
        assert!(!zombie);
    }
}
