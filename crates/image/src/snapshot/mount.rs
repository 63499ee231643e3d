//! Overlay mounts: the option string, mount and unmount, and finding our
//! mounts in `/proc/self/mountinfo`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::snapshot::SnapshotError;

/// mount(2) copies at most one page of options; 4 KiB is the smallest page
/// Linux has, so the limit holds everywhere.
const MAX_OPTIONS: usize = 4096 - 1;
/// overlayfs's own limit on lower layers (`OVL_MAX_STACK`).
const MAX_LOWERS: usize = 500;

/// Fixed for every mount: uppers stay plain directories of files, so that
/// [`super::diff`] can read them and they can become lowers of any mount.
/// Without redirect_dir, renaming a lower directory fails with EXDEV and
/// tools copy instead; without metacopy, a chmod copies the whole file up;
/// without index, hard links to lower files are broken on copy-up.
const FIXED: &str = ",index=off,redirect_dir=off,metacopy=off";

/// The options of an overlay mount of `lowers` (topmost first, at least
/// one) under `upper`, or [`SnapshotError::TooManyLayers`] with how many of
/// them would fit.
pub(crate) fn options(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, SnapshotError> {
    let tail = format!(
        ",upperdir={},workdir={}{FIXED}",
        upper.display(),
        work.display()
    );
    let mut data = String::from("lowerdir=");
    let mut fitting = 0;
    for (i, lower) in lowers.iter().enumerate() {
        if i > 0 {
            data.push(':');
        }
        data.push_str(&lower.to_string_lossy());
        if data.len() + tail.len() <= MAX_OPTIONS && i < MAX_LOWERS {
            fitting = i + 1;
        }
    }
    if fitting < lowers.len() {
        return Err(SnapshotError::TooManyLayers {
            layers: lowers.len(),
            max: fitting,
        });
    }
    data.push_str(&tail);
    Ok(data)
}

pub(crate) fn mount_overlay(options: &str, target: &Path) -> Result<(), SnapshotError> {
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options),
    )
    .map_err(|e| SnapshotError::Mount {
        target: target.to_owned(),
        source: e.into(),
    })
}

pub(crate) fn unmount(target: &Path) -> Result<(), SnapshotError> {
    umount2(target, MntFlags::empty()).map_err(|e| SnapshotError::Unmount {
        target: target.to_owned(),
        source: e.into(),
    })
}

/// Where overlays whose upper directory is `upper` are mounted, in this
/// process's mount namespace.
pub(crate) fn mounts_of(upper: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let path = "/proc/self/mountinfo";
    let text = fs::read_to_string(path).map_err(|e| SnapshotError::io("read", path, e))?;
    Ok(overlay_mounts(&text, upper))
}

/// Parses mountinfo lines (`proc(5)`): the fifth field is the mount point;
/// after the ` - ` separator come the type, the source and the superblock
/// options, where overlayfs lists `upperdir=`.
fn overlay_mounts(mountinfo: &str, upper: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(&"overlay"), Some(options)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        let matches = options
            .split(',')
            .filter_map(|o| o.strip_prefix("upperdir="))
            .any(|dir| Path::new(&unescape(dir)) == upper);
        if matches {
            out.push(PathBuf::from(unescape(point)));
        }
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = bytes.get(i + 1..i + 4)
            && let Ok(octal) = std::str::from_utf8(octal)
            && let Ok(byte) = u8::from_str_radix(octal, 8)
        {
            out.push(byte);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `target` is the mount point of one of `points`, comparing
/// canonical paths as mountinfo shows them.
pub(crate) fn is_mount_point(points: &[PathBuf], target: &Path) -> io::Result<bool> {
    let target = fs::canonicalize(target)?;
    Ok(points.contains(&target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_overlays_by_upper_dir() {
        let mountinfo = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 22 0:39 / /tmp/a\\040b rw,relatime shared:2 - overlay overlay rw,lowerdir=/l,upperdir=/s/active/k/upper,workdir=/s/active/k/work
46 22 0:40 / /tmp/other rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/s/active/k2/upper,workdir=/s/active/k2/work
47 22 0:41 / /tmp/c rw - overlay overlay rw,lowerdir=/l,upperdir=/s/active/sp\\040ace/upper,workdir=/w
";
        assert_eq!(
            overlay_mounts(mountinfo, Path::new("/s/active/k/upper")),
            [PathBuf::from("/tmp/a b")]
        );
        assert_eq!(
            overlay_mounts(mountinfo, Path::new("/s/active/sp ace/upper")),
            [PathBuf::from("/tmp/c")]
        );
        assert!(overlay_mounts(mountinfo, Path::new("/s/active/k")).is_empty());
    }

    #[test]
    fn options_fit_in_a_page_or_say_how_many_would() {
        let lowers: Vec<PathBuf> = (1..=3)
            .map(|n| PathBuf::from(format!("/d/snapshots/{n}/fs")))
            .collect();
        let opts = options(&lowers, Path::new("/d/u"), Path::new("/d/w")).unwrap();
        assert_eq!(
            opts,
            "lowerdir=/d/snapshots/1/fs:/d/snapshots/2/fs:/d/snapshots/3/fs,\
             upperdir=/d/u,workdir=/d/w,index=off,redirect_dir=off,metacopy=off"
        );

        // With the default data directory and a 64-character key, what fits.
        let root = "/var/lib/bosun/snapshots";
        let key = "k".repeat(64);
        let upper = PathBuf::from(format!("{root}/active/{key}/upper"));
        let work = PathBuf::from(format!("{root}/active/{key}/work"));
        let many: Vec<PathBuf> = (1..=400)
            .map(|n| PathBuf::from(format!("{root}/{}/fs", 1000 + n)))
            .collect();
        let Err(SnapshotError::TooManyLayers { layers, max }) = options(&many, &upper, &work)
        else {
            panic!("400 layers should not fit");
        };
        assert_eq!(layers, 400);
        // Documented on `Snapshotter`: about 120 layers (Docker allows 125).
        assert!((115..=125).contains(&max), "{max}");
        let opts = options(&many[..max], &upper, &work).unwrap();
        assert!(opts.len() <= MAX_OPTIONS);
        assert!(options(&many[..max + 1], &upper, &work).is_err());
    }

    #[test]
    fn overlayfs_takes_at_most_500_lowers() {
        let lowers: Vec<PathBuf> = (0..501).map(|n| PathBuf::from(format!("{n}"))).collect();
        let err = options(&lowers, Path::new("u"), Path::new("w")).unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::TooManyLayers {
                    layers: 501,
                    max: 500
                }
            ),
            "{err}"
        );
    }
}
