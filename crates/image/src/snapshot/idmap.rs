//! Idmapped overlay mounts, for containers in a user namespace: the
//! committed snapshots stay as they are on disk (owned by the image's ids)
//! and are shown to the overlay through idmapped bind mounts, so a remapped
//! container sees its image root-owned without a copy of any layer.
//!
//! Each lower is cloned with `open_tree`, given the mapping with
//! `mount_setattr(MOUNT_ATTR_IDMAP)`, attached under `snapshots/idmap/`
//! (overlay takes its layers as paths, and a detached mount as a layer needs
//! kernel 6.15), stacked, and detached again: overlayfs keeps private clones
//! of its layers, so the attached copies are only needed while it mounts.
//! The upper directory is owned by the mapped root and not idmapped: what
//! the container writes is stored under its host ids, never as host root.
//!
//! The mount points are never removed recursively: a process that dies
//! between attach and detach leaves a live mount of a layer there, and a
//! recursive delete would go through it into the layer. [`sweep`] detaches
//! and `rmdir`s what dead processes left.

use std::fmt::Write as _;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::mount::{MntFlags, umount2};

use crate::snapshot::{SnapshotError, mount};
use crate::sys;

/// What the kernel shows for an id a namespace does not map.
pub(crate) const OVERFLOW_ID: u32 = 65534;

/// One line of a uid or gid map: `count` ids from `inside` (the
/// container's) map to as many from `outside` (the host's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// How a user-namespaced container's layers are shown to it with their
/// owners shifted into its mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayerMapping {
    /// Idmapped mounts where the kernel and file system have them, else
    /// copies (decided on the first mount that fails for want of them).
    #[default]
    Auto,
    /// Idmapped mounts only: a kernel without them fails the mount.
    Idmap,
    /// A copy of each layer with shifted owners, made once per mapping and
    /// shared: what Docker does. Costs the disk of the copies and the time
    /// of the first copy.
    Copy,
}

impl std::str::FromStr for LayerMapping {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(LayerMapping::Auto),
            "idmap" => Ok(LayerMapping::Idmap),
            "copy" => Ok(LayerMapping::Copy),
            _ => Err(format!("{s:?}: expected auto, idmap or copy")),
        }
    }
}

/// A uid and gid mapping, with a user namespace that carries it for
/// idmapped mounts. Made once (it costs a short-lived child process) and
/// used for every mount.
#[derive(Debug)]
pub struct IdMap {
    uids: Vec<IdRange>,
    gids: Vec<IdRange>,
    userns: OwnedFd,
    layers: LayerMapping,
    /// `Auto` found idmapped mounts missing: copies from now on.
    fell_back: AtomicBool,
}

impl IdMap {
    /// Checks the ranges (each map non-empty, the container's root mapped)
    /// and makes the user namespace.
    pub fn new(uids: Vec<IdRange>, gids: Vec<IdRange>) -> Result<Self, SnapshotError> {
        for (what, ranges) in [("uid", &uids), ("gid", &gids)] {
            if !ranges.iter().any(|r| r.inside == 0 && r.count > 0) {
                return Err(SnapshotError::BadIdMap {
                    reason: format!("the {what} map does not map the container's root (id 0)"),
                });
            }
        }
        let userns = sys::user_namespace(&format_map(&uids), &format_map(&gids)).map_err(|e| {
            SnapshotError::BadIdMap {
                reason: format!("the kernel refused it as a user namespace: {e}"),
            }
        })?;
        Ok(Self {
            uids,
            gids,
            userns,
            layers: LayerMapping::Auto,
            fell_back: AtomicBool::new(false),
        })
    }

    /// The same mapping, with its layers shown as `layers` says.
    pub fn with_layers(mut self, layers: LayerMapping) -> Self {
        self.layers = layers;
        self
    }

    /// Whether layers are shown through copies: asked for, or `Auto` found
    /// idmapped mounts missing.
    pub fn copies_layers(&self) -> bool {
        !self.uses_idmapped_mounts()
    }

    pub(crate) fn uses_idmapped_mounts(&self) -> bool {
        match self.layers {
            LayerMapping::Idmap => true,
            LayerMapping::Copy => false,
            LayerMapping::Auto => !self.fell_back.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn may_fall_back(&self) -> bool {
        self.layers == LayerMapping::Auto
    }

    pub(crate) fn fall_back(&self) {
        self.fell_back.store(true, Ordering::Relaxed);
    }

    pub fn uids(&self) -> &[IdRange] {
        &self.uids
    }

    pub fn gids(&self) -> &[IdRange] {
        &self.gids
    }

    /// The container's uid and gid for host ids (65534, the kernel's
    /// overflow id, where the map has none).
    pub fn to_container(&self, uid: u32, gid: u32) -> (u32, u32) {
        let inside = |m: &[IdRange], id: u32| {
            m.iter()
                .find(|r| id >= r.outside && id - r.outside < r.count)
                .map_or(OVERFLOW_ID, |r| r.inside + (id - r.outside))
        };
        (inside(&self.uids, uid), inside(&self.gids, gid))
    }

    /// The host uid and gid of the container's root.
    pub fn root(&self) -> (u32, u32) {
        let host = |m: &[IdRange]| m.iter().find(|r| r.inside == 0).map_or(0, |r| r.outside);
        (host(&self.uids), host(&self.gids))
    }
}

/// `inside outside count` lines, as `/proc/PID/uid_map` takes them.
pub(crate) fn format_map(ranges: &[IdRange]) -> String {
    let mut out = String::new();
    for r in ranges {
        let _ = writeln!(out, "{} {} {}", r.inside, r.outside, r.count);
    }
    out
}

/// Mounts overlay at `target` with `lowers` idmapped through `map` and
/// `upper` (made owned by the mapped root) as it is. `idmap_dir` holds the
/// short-lived mount points.
pub(crate) fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    map: &IdMap,
    idmap_dir: &Path,
) -> Result<(), SnapshotError> {
    chown_upper(upper, map)?;
    sweep(idmap_dir);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = idmap_dir.join(format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).map_err(|e| SnapshotError::io("create", &dir, e))?;
    let mut attached = Attached {
        dir,
        points: Vec::new(),
    };
    for (i, lower) in lowers.iter().enumerate() {
        let tree =
            sys::idmapped_tree(lower, map.userns.as_fd()).map_err(|e| SnapshotError::Idmap {
                path: lower.clone(),
                source: e,
            })?;
        let point = attached.dir.join(i.to_string());
        fs::create_dir(&point).map_err(|e| SnapshotError::io("create", &point, e))?;
        sys::attach(tree.as_fd(), &point).map_err(|e| {
            let _ = fs::remove_dir(&point);
            SnapshotError::io("attach an idmapped mount at", &point, e)
        })?;
        attached.points.push(point);
    }
    let options = mount::options(&attached.points, upper, work)?;
    mount::mount_overlay(&options, target)
    // `attached` detaches the lowers here: the overlay holds its own clones.
}

/// Makes the upper owned by the mapped root: its root is the container's
/// `/`, and what is below it was written by the container (or copied up
/// with the ids the lower shows it).
pub(crate) fn chown_upper(upper: &Path, map: &IdMap) -> Result<(), SnapshotError> {
    let (uid, gid) = map.root();
    nix::unistd::chown(
        upper,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| SnapshotError::io("chown", upper, e.into()))
}

/// Whether an idmapped overlay mount failed for want of the feature: no
/// `mount_setattr` or `open_tree` (before 5.12), a file system that cannot
/// be idmapped, or an overlayfs that refuses idmapped layers (before 5.19).
pub(crate) fn is_unsupported(e: &SnapshotError) -> bool {
    let errno = |source: &std::io::Error| source.raw_os_error();
    match e {
        SnapshotError::Idmap { source, .. } => matches!(
            errno(source),
            Some(libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP | libc::EPERM)
        ),
        SnapshotError::Mount { source, .. } => errno(source) == Some(libc::EINVAL),
        _ => false,
    }
}

/// Idmapped lowers attached for one mount; detached and their directories
/// removed (never recursively) when dropped.
struct Attached {
    dir: PathBuf,
    points: Vec<PathBuf>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        for p in &self.points {
            let _ = umount2(p, MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(p);
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Detaches and removes what processes that died mid-mount left in
/// `idmap_dir` (entries `<pid>-<n>` whose pid is gone).
fn sweep(idmap_dir: &Path) {
    let Ok(entries) = fs::read_dir(idmap_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split_once('-'))
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        if let Ok(points) = fs::read_dir(&dir) {
            for p in points.flatten() {
                let _ = umount2(&p.path(), MntFlags::MNT_DETACH);
                let _ = fs::remove_dir(p.path());
            }
        }
        let _ = fs::remove_dir(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_written_as_the_kernel_reads_them() {
        let r = [
            IdRange {
                inside: 0,
                outside: 100000,
                count: 65536,
            },
            IdRange {
                inside: 65536,
                outside: 300000,
                count: 10,
            },
        ];
        assert_eq!(format_map(&r), "0 100000 65536\n65536 300000 10\n");
    }

    #[test]
    fn only_a_missing_feature_falls_back_to_copies() {
        let errno = |n| std::io::Error::from_raw_os_error(n);
        let idmap = |n| SnapshotError::Idmap {
            path: "/l".into(),
            source: errno(n),
        };
        let mount = |n| SnapshotError::Mount {
            target: "/t".into(),
            source: errno(n),
        };
        for e in [
            idmap(libc::ENOSYS),
            idmap(libc::EINVAL),
            mount(libc::EINVAL),
        ] {
            assert!(is_unsupported(&e), "{e}");
        }
        for e in [idmap(libc::ENOENT), mount(libc::EBUSY), mount(libc::ENOSPC)] {
            assert!(!is_unsupported(&e), "{e}");
        }
        assert_eq!("copy".parse(), Ok(LayerMapping::Copy));
        assert!("chown".parse::<LayerMapping>().is_err());
    }
}
