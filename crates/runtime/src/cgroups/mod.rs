//! Control groups, v1 and v2, chosen at run time from what the host mounted.
//!
//! A [`Cgroup`] is resolved once (at `create`) into absolute directories and then
//! persisted in the container's state, so later commands act on exactly the same
//! directories even if the caller's own cgroup or the mounts changed meanwhile.

mod devices;
mod fs;
mod stats;
mod system;
mod v1;
mod v2;

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};

use bosun_oci::ContainerId;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;

pub(crate) use stats::Stats;
pub(crate) use system::{Hierarchy, System};

/// Errors of cgroup management. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no usable cgroup file system is mounted (according to {0})")]
    NoCgroupFs(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot create cgroup directory {path}: {source}")]
    Mkdir { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup directory {path}: {source}")]
    Rmdir { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: unexpected {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("cgroups path {0:?}: \"..\" components are not allowed")]
    DotDot(PathBuf),
    #[error("cgroups path {0:?} names the root of the hierarchy")]
    RootPath(PathBuf),
    #[error("{field}: {reason}")]
    Unsupported { field: String, reason: String },
    #[error("{field}: invalid value {value}: {reason}")]
    InvalidValue {
        field: String,
        value: String,
        reason: String,
    },
    #[error("cgroup {0} does not exist")]
    Gone(PathBuf),
    #[error("{path} did not become {wanted} after {attempts} attempts")]
    Timeout {
        path: PathBuf,
        wanted: &'static str,
        attempts: u32,
    },
    #[error("cannot {op} the device filter program for {path}: {source}{log}")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        source: nix::Error,
        log: String,
    },
}

impl CgroupError {
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::NoCgroupFs(_) | CgroupError::Timeout { .. } => ErrorKind::Unavailable,
            CgroupError::Read { source, .. }
            | CgroupError::Mkdir { source, .. }
            | CgroupError::Rmdir { source, .. } => io_kind(source),
            CgroupError::Write { source, .. } => match source.raw_os_error() {
                Some(libc::EINVAL | libc::ERANGE | libc::EOVERFLOW) => ErrorKind::Invalid,
                _ => io_kind(source),
            },
            CgroupError::Parse { .. } => ErrorKind::Internal,
            CgroupError::DotDot(_)
            | CgroupError::RootPath(_)
            | CgroupError::Unsupported { .. }
            | CgroupError::InvalidValue { .. } => ErrorKind::Invalid,
            CgroupError::Gone(_) => ErrorKind::NotFound,
            CgroupError::Bpf { source, .. } => match source {
                nix::Error::EPERM | nix::Error::EACCES => ErrorKind::Forbidden,
                nix::Error::EINVAL => ErrorKind::Invalid,
                _ => ErrorKind::Internal,
            },
        }
    }

    fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn invalid(field: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        CgroupError::InvalidValue {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Forbidden,
        io::ErrorKind::ResourceBusy | io::ErrorKind::DirectoryNotEmpty => ErrorKind::Conflict,
        _ => ErrorKind::Internal,
    }
}

/// One directory of the cgroup in one hierarchy, with the hierarchy's mount point
/// so that `create` knows where its own ancestors start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Dir {
    root: PathBuf,
    path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "version", rename_all = "lowercase")]
enum Layout {
    /// Controller name ("cpu", "memory", …) → its directory; controllers mounted
    /// together share one directory.
    V1 {
        controllers: BTreeMap<String, Dir>,
    },
    V2 {
        dir: Dir,
    },
}

/// A container's cgroup in every hierarchy that controls resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cgroup {
    layout: Layout,
    /// The directories `create` made, in the order it made them, so that `destroy`
    /// never removes a cgroup someone else owns.
    #[serde(default)]
    created: Vec<PathBuf>,
}

impl Cgroup {
    /// linux.cgroupsPath: absolute → relative to each hierarchy root; relative →
    /// below the caller's own cgroup for that hierarchy; None → "<id>" (as runc does).
    pub(crate) fn resolve(
        cgroups_path: Option<&Path>,
        id: &ContainerId,
    ) -> Result<Self, CgroupError> {
        Self::resolve_in(&System::host()?, cgroups_path, id)
    }

    pub(crate) fn resolve_in(
        system: &System,
        cgroups_path: Option<&Path>,
        id: &ContainerId,
    ) -> Result<Self, CgroupError> {
        let wanted = Wanted::parse(cgroups_path, id)?;
        let place = |root: &Path, own: &Path| match &wanted {
            Wanted::Absolute(rel) => Dir {
                root: root.to_path_buf(),
                path: root.join(rel),
            },
            Wanted::Relative(rel) => Dir {
                root: root.to_path_buf(),
                path: root.join(own).join(rel),
            },
        };
        let layout = if let Some(unified) = system.v2_root() {
            Layout::V2 {
                dir: place(&unified.dir, &unified.own),
            }
        } else {
            let mut controllers = BTreeMap::new();
            for h in system.v1_resource_hierarchies() {
                let dir = place(&h.dir, &h.own);
                for c in &h.controllers {
                    controllers.entry(c.clone()).or_insert_with(|| dir.clone());
                }
            }
            if controllers.is_empty() {
                return Err(CgroupError::NoCgroupFs(PathBuf::from(system::MOUNTINFO)));
            }
            Layout::V1 { controllers }
        };
        Ok(Cgroup {
            layout,
            created: Vec::new(),
        })
    }

    /// mkdir the cgroup in every hierarchy and prepare it to take processes; on
    /// failure removes again whatever it made.
    pub(crate) fn create(&mut self) -> Result<(), CgroupError> {
        let made = self.make_dirs().and_then(|()| self.prepare());
        if let Err(e) = made {
            // The original error is what the caller needs; a failed cleanup of
            // directories we just made would only hide it.
            let _ = self.destroy();
            self.created.clear();
            return Err(e);
        }
        Ok(())
    }

    /// Creates every missing directory from each hierarchy root down, recording
    /// each one it made.
    fn make_dirs(&mut self) -> Result<(), CgroupError> {
        for dir in self.unique_dirs() {
            let rel = dir.path.strip_prefix(&dir.root).unwrap_or(Path::new(""));
            let mut cur = dir.root.clone();
            for comp in rel.components() {
                cur.push(comp);
                match std::fs::create_dir(&cur) {
                    Ok(()) => self.created.push(cur.clone()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(CgroupError::Mkdir { path: cur, source }),
                }
            }
        }
        Ok(())
    }

    /// What the kernel needs before the first process can join: cpuset values
    /// on v1, controllers enabled in the parents on v2.
    fn prepare(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => match controllers.get("cpuset") {
                Some(dir) => v1::copy_cpuset_down(dir),
                None => Ok(()),
            },
            Layout::V2 { dir } => v2::enable_controllers(dir, &self.created),
        }
    }

    /// Writes linux.resources; only the fields that are set, so that `update`
    /// leaves the others as they are. Device rules go through `apply_devices`.
    pub(crate) fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => v1::apply(controllers, resources),
            Layout::V2 { dir } => v2::apply(&dir.path, resources),
        }
    }

    /// Installs the device allow-list: the user's rules in order, then the
    /// runtime's default allows; the last matching rule wins, default deny.
    pub(crate) fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let rules = devices::with_defaults(rules)?;
        match &self.layout {
            Layout::V1 { controllers } => match controllers.get("devices") {
                Some(dir) => devices::apply_v1(&dir.path, &rules),
                None => Err(CgroupError::unsupported(
                    "linux.resources.devices",
                    "the devices cgroup controller is not mounted",
                )),
            },
            Layout::V2 { dir } => devices::apply_v2(&dir.path, &rules),
        }
    }

    /// Moves a process into the cgroup in every hierarchy.
    #[cfg(test)]
    pub(crate) fn add_pid(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.unique_dirs() {
            fs::write(&dir.path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Move the calling (single-threaded) process into the cgroup.
    ///
    /// On v1 this writes "0" to `tasks`: moving only the current thread skips the
    /// kernel's global threadgroup lock, whose write side waits for an RCU grace
    /// period (5–15 ms here, per write to `cgroup.procs`). The caller must be
    /// single-threaded, so the thread is the whole process.
    pub(crate) fn join_self(&self) -> Result<(), CgroupError> {
        let file = match &self.layout {
            Layout::V1 { .. } => "tasks",
            Layout::V2 { .. } => "cgroup.procs",
        };
        for dir in self.unique_dirs() {
            fs::write(&dir.path.join(file), "0")?;
        }
        Ok(())
    }

    /// Every process in the cgroup or below it, sorted and deduplicated.
    pub(crate) fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dirs = self.unique_dirs();
        self.ensure_exists()?;
        let mut pids = Vec::new();
        for dir in dirs {
            fs::collect_procs(&dir.path, &mut pids)?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freezes every process and waits, bounded, until the kernel says frozen.
    pub(crate) fn freeze(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => v1::set_frozen(freezer_dir(controllers)?, true),
            Layout::V2 { dir } => v2::set_frozen(&dir.path, true),
        }
    }

    pub(crate) fn thaw(&self) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => v1::set_frozen(freezer_dir(controllers)?, false),
            Layout::V2 { dir } => v2::set_frozen(&dir.path, false),
        }
    }

    pub(crate) fn is_frozen(&self) -> Result<bool, CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => v1::is_frozen(freezer_dir(controllers)?),
            Layout::V2 { dir } => v2::is_frozen(&dir.path),
        }
    }

    /// How many processes the OOM killer has killed in this cgroup.
    pub(crate) fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        self.ensure_exists()?;
        match &self.layout {
            Layout::V1 { controllers } => match controllers.get("memory") {
                Some(dir) => stats::keyed_value(&dir.path.join("memory.oom_control"), "oom_kill"),
                None => Ok(0),
            },
            Layout::V2 { dir } => stats::keyed_value(&dir.path.join("memory.events"), "oom_kill"),
        }
    }

    /// Usage counters in the shape of `runc events --stats`; absent files read as zero.
    pub(crate) fn stats(&self) -> Result<Stats, CgroupError> {
        self.ensure_exists()?;
        match &self.layout {
            Layout::V1 { controllers } => Ok(stats::v1(controllers)),
            Layout::V2 { dir } => Ok(stats::v2(&dir.path)),
        }
    }

    /// Removes what `create` made, deepest first, including cgroups the container
    /// made below its own. Idempotent.
    pub(crate) fn destroy(&self) -> Result<(), CgroupError> {
        let own: Vec<PathBuf> = self.unique_dirs().into_iter().map(|d| d.path).collect();
        let mut first_err = None;
        for dir in self.created.iter().rev() {
            let removed = if own.contains(dir) {
                fs::remove_tree(dir)
            } else {
                // An ancestor we made may since hold other containers' cgroups
                // (say "/bosun" for "/bosun/a" and "/bosun/b"); those stay.
                fs::remove_if_unused(dir)
            };
            if let Err(e) = removed {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    #[allow(
        dead_code,
        reason = "interface for callers that branch on the version; none does yet"
    )]
    pub(crate) fn is_v2(&self) -> bool {
        matches!(self.layout, Layout::V2 { .. })
    }

    /// The host's v1 hierarchies (named ones included) so the rootfs code can
    /// mount the same inside a container; empty on v2.
    pub(crate) fn v1_hierarchies() -> Result<Vec<Hierarchy>, CgroupError> {
        Ok(System::host()?.v1_hierarchies())
    }

    /// Every distinct directory, in a stable order.
    fn unique_dirs(&self) -> Vec<Dir> {
        match &self.layout {
            Layout::V1 { controllers } => {
                let mut dirs: Vec<Dir> = Vec::new();
                for d in controllers.values() {
                    if !dirs.iter().any(|x| x.path == d.path) {
                        dirs.push(d.clone());
                    }
                }
                dirs
            }
            Layout::V2 { dir } => vec![dir.clone()],
        }
    }

    /// Reading counters of a removed cgroup must say so rather than report zeros.
    fn ensure_exists(&self) -> Result<(), CgroupError> {
        match self.unique_dirs().into_iter().find(|d| !d.path.is_dir()) {
            Some(d) => Err(CgroupError::Gone(d.path)),
            None => Ok(()),
        }
    }
}

fn freezer_dir(controllers: &BTreeMap<String, Dir>) -> Result<&Path, CgroupError> {
    controllers
        .get("freezer")
        .map(|d| d.path.as_path())
        .ok_or_else(|| {
            CgroupError::unsupported("freezer", "the freezer cgroup controller is not mounted")
        })
}

/// linux.cgroupsPath after validation, without its leading "/".
#[derive(Debug)]
enum Wanted {
    Absolute(PathBuf),
    Relative(PathBuf),
}

impl Wanted {
    fn parse(cgroups_path: Option<&Path>, id: &ContainerId) -> Result<Self, CgroupError> {
        let Some(path) = cgroups_path.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(Wanted::Relative(PathBuf::from(id.as_str())));
        };
        let mut rel = PathBuf::new();
        for comp in path.components() {
            match comp {
                Component::Normal(c) => rel.push(c),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(CgroupError::DotDot(path.to_path_buf()));
                }
            }
        }
        if rel.as_os_str().is_empty() {
            return Err(CgroupError::RootPath(path.to_path_buf()));
        }
        Ok(if path.is_absolute() {
            Wanted::Absolute(rel)
        } else {
            Wanted::Relative(rel)
        })
    }
}

#[cfg(test)]
mod tests;
