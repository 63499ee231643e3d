//! The host's view of cgroups: which hierarchies are mounted where, and which
//! cgroup the calling process is in. Parsed from text so tests can fake a host.

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

pub(super) const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUP: &str = "/proc/self/cgroup";
/// Where distributions mount cgroups; a cgroup2 mount here means the host is v2.
const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// Super options of cgroup mounts that configure the hierarchy instead of naming a controller.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "none",
    "all",
    "noprefix",
    "clone_children",
    "xattr",
    "cpuset_v2_mode",
    "favordynmods",
    "nsdelegate",
    "memory_localevents",
    "memory_recursiveprot",
    "memory_hugetlb_accounting",
    "pids_localevents",
];

/// A v1 hierarchy as mounted on the host, for mounting the same inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// The mount point's last component, e.g. "cpu", "cpu,cpuacct" or "systemd".
    pub(crate) dir_name: String,
    /// The controllers and name of the hierarchy as mount options, e.g. "cpu" or "name=systemd".
    pub(crate) options: String,
}

#[derive(Debug, Clone)]
struct Mount {
    /// The directory of the cgroup file system that is mounted (usually "/").
    fs_root: PathBuf,
    point: PathBuf,
    cgroup2: bool,
    super_options: Vec<String>,
}

impl Mount {
    fn controllers(&self) -> impl Iterator<Item = &str> {
        self.super_options
            .iter()
            .map(String::as_str)
            .filter(|o| !o.contains('=') && !NOT_CONTROLLERS.contains(o))
    }

    fn hierarchy_options(&self) -> Vec<&str> {
        self.super_options
            .iter()
            .map(String::as_str)
            .filter(|o| {
                o.starts_with("name=") || (!o.contains('=') && !NOT_CONTROLLERS.contains(o))
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
struct OwnCgroup {
    /// Empty for the v2 line ("0::/path").
    controllers: Vec<String>,
    path: PathBuf,
}

/// One hierarchy ready for placing a cgroup in it.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// The mount point, as a path to open (prefixed by the fake root in tests).
    pub(super) dir: PathBuf,
    /// The caller's own cgroup relative to `dir`.
    pub(super) own: PathBuf,
    pub(super) controllers: Vec<String>,
}

/// What the host mounted and where the caller sits.
#[derive(Debug, Clone)]
pub(crate) struct System {
    root: PathBuf,
    mounts: Vec<Mount>,
    own: Vec<OwnCgroup>,
}

impl System {
    /// The real host, as this process sees it.
    pub(crate) fn host() -> Result<Self, CgroupError> {
        let read = |p: &str| {
            std::fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
        Ok(Self::parse(
            Path::new("/"),
            &read(MOUNTINFO)?,
            &read(PROC_CGROUP)?,
        ))
    }

    /// `root` is prefixed to every mount point, so that tests can point at a fake tree.
    pub(crate) fn parse(root: &Path, mountinfo: &str, proc_cgroup: &str) -> Self {
        let mounts = mountinfo.lines().filter_map(parse_mount_line).collect();
        let own = proc_cgroup
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ':');
                let _id = parts.next()?;
                let controllers = parts.next()?;
                let path = parts.next()?;
                Some(OwnCgroup {
                    controllers: controllers
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    path: PathBuf::from(path),
                })
            })
            .collect();
        System {
            root: root.to_path_buf(),
            mounts,
            own,
        }
    }

    fn on_disk(&self, point: &Path) -> PathBuf {
        self.root.join(point.strip_prefix("/").unwrap_or(point))
    }

    /// The caller's cgroup inside `mount`, relative to the mount point.
    fn own_in(&self, mount: &Mount, own: Option<&OwnCgroup>) -> PathBuf {
        let Some(own) = own else {
            return PathBuf::new();
        };
        // A mount of a sub-tree (fs_root not "/") shows the caller's cgroup
        // below that sub-tree; in a cgroup namespace the paths are already
        // relative to the namespace root, so then nothing is stripped.
        let rel = own.path.strip_prefix(&mount.fs_root).unwrap_or(&own.path);
        rel.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// The unified hierarchy when the host runs cgroup v2 only.
    pub(super) fn v2_root(&self) -> Option<Resolved> {
        let at_default = self
            .mounts
            .iter()
            .find(|m| m.cgroup2 && m.point == Path::new(CGROUP_MOUNT));
        let mount = match at_default {
            Some(m) => m,
            // Without any v1 controller the unified hierarchy is all there is,
            // wherever it is mounted.
            None if self.v1_resource_hierarchies().is_empty() => {
                self.mounts.iter().find(|m| m.cgroup2)?
            }
            None => return None,
        };
        let own = self.own.iter().find(|o| o.controllers.is_empty());
        Some(Resolved {
            dir: self.on_disk(&mount.point),
            own: self.own_in(mount, own),
            controllers: Vec::new(),
        })
    }

    /// The v1 hierarchies that carry at least one controller, one per hierarchy.
    pub(super) fn v1_resource_hierarchies(&self) -> Vec<Resolved> {
        let mut out: Vec<Resolved> = Vec::new();
        for m in self.mounts.iter().filter(|m| !m.cgroup2) {
            let controllers: Vec<String> = m.controllers().map(str::to_owned).collect();
            let Some(first) = controllers.first() else {
                continue;
            };
            // The same hierarchy may be mounted twice (bind mounts); the first wins.
            if out.iter().any(|r| r.controllers.contains(first)) {
                continue;
            }
            let own = self.own.iter().find(|o| o.controllers.contains(first));
            out.push(Resolved {
                dir: self.on_disk(&m.point),
                own: self.own_in(m, own),
                controllers,
            });
        }
        out
    }

    /// All v1 hierarchies including named ones; empty when the host is v2.
    pub(crate) fn v1_hierarchies(&self) -> Vec<Hierarchy> {
        if self.v2_root().is_some() {
            return Vec::new();
        }
        let mut out: Vec<Hierarchy> = Vec::new();
        for m in self.mounts.iter().filter(|m| !m.cgroup2) {
            let options = m.hierarchy_options().join(",");
            if options.is_empty() || out.iter().any(|h| h.options == options) {
                continue;
            }
            let dir_name = m
                .point
                .file_name()
                .map_or_else(|| options.clone(), |n| n.to_string_lossy().into_owned());
            out.push(Hierarchy { dir_name, options });
        }
        out
    }
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mount_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let left: Vec<&str> = left.split(' ').collect();
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_options = right.next().unwrap_or("");
    let cgroup2 = match fstype {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return None,
    };
    Some(Mount {
        fs_root: PathBuf::from(unescape(left.get(3)?)),
        point: PathBuf::from(unescape(left.get(4)?)),
        cgroup2,
        super_options: super_options.split(',').map(str::to_owned).collect(),
    })
}

/// mountinfo writes space, tab, newline and backslash as three octal digits.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(code) = bytes
                .get(i + 1..i + 4)
                .and_then(|d| std::str::from_utf8(d).ok())
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
