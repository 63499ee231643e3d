//! The fallback for user-namespaced containers where idmapped mounts are
//! missing (kernels before 5.12, overlayfs before 5.19, file systems that do
//! not support them): a copy of each layer with its owners shifted into the
//! mapping, made once per mapping and shared by every container that uses
//! it, as Docker does for `--userns-remap`. The committed snapshots are
//! never changed.
//!
//! ```text
//! snapshots/remap/<map>/<n>    snapshot <n>'s fs, owners shifted by the mapping <map>
//! ```
//!
//! A copy is made in a temp dir and renamed into place under the store lock,
//! so a reader sees a whole copy or none; it goes with its snapshot in
//! [`gc`](super::Snapshotter::gc).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt, fchown, lchown,
    symlink,
};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use crate::sha256_of;
use crate::snapshot::idmap::format_map;
use crate::snapshot::layout::{FS, Layout};
use crate::snapshot::{IdMap, IdRange, SnapshotError};

/// The directory name of a mapping's copies: a digest of the uid and gid
/// maps, so two engines with the same mapping share them.
pub(crate) fn map_key(map: &IdMap) -> String {
    let text = format!("{}|{}", format_map(map.uids()), format_map(map.gids()));
    sha256_of(text.as_bytes()).hex()[..16].to_owned()
}

/// The lowers of an overlay, each replaced by its copy for `map` (made now
/// if missing). Lowers that are not committed snapshots (the empty lower)
/// are root-owned directories with nothing in them and stay as they are.
pub(crate) fn lowers(
    layout: &Layout,
    lowers: &[PathBuf],
    map: &IdMap,
) -> Result<Vec<PathBuf>, SnapshotError> {
    let key = map_key(map);
    let mut out = Vec::with_capacity(lowers.len());
    for lower in lowers {
        let Some(n) = snapshot_number(layout, lower) else {
            out.push(lower.clone());
            continue;
        };
        let dest = layout.remap_dir(&key, n);
        if !dest.exists() {
            make_copy(layout, n, lower, &dest, map)?;
        }
        out.push(dest);
    }
    Ok(out)
}

/// `n` when `lower` is `<root>/<n>/fs`.
fn snapshot_number(layout: &Layout, lower: &Path) -> Option<u64> {
    if lower.file_name()? != FS {
        return None;
    }
    let dir = lower.parent()?;
    let n: u64 = dir.file_name()?.to_str()?.parse().ok()?;
    (layout.snapshot_dir(n) == dir).then_some(n)
}

fn make_copy(
    layout: &Layout,
    n: u64,
    src: &Path,
    dest: &Path,
    map: &IdMap,
) -> Result<(), SnapshotError> {
    let temp = layout.temp_dir()?;
    let staged = temp.path().join(FS);
    copy_tree(src, &staged, map)?;
    let lock = layout.lock_exclusive()?;
    if dest.exists() {
        // Another container with this mapping was quicker; ours goes with `temp`.
        return Ok(());
    }
    // Collected while we copied (its number may be reused by a new
    // snapshot, which must not find this copy).
    if !layout.snapshot_dir(n).exists() {
        return Err(SnapshotError::io(
            "copy",
            src,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    }
    let parent = dest.parent().expect("remap/<map>/<n> has a parent");
    fs::create_dir_all(parent).map_err(|e| SnapshotError::io("create", parent, e))?;
    fs::rename(&staged, dest).map_err(|e| SnapshotError::io("move into place", dest, e))?;
    drop(lock);
    Ok(())
}

/// The host id a container id is stored as: shifted through `ranges`, or
/// the kernel's overflow id when the mapping has none for it (what an
/// idmapped mount shows for such an id too).
fn host_id(ranges: &[IdRange], id: u32) -> u32 {
    ranges
        .iter()
        .find(|r| id >= r.inside && id - r.inside < r.count)
        .map_or(super::idmap::OVERFLOW_ID, |r| r.outside + (id - r.inside))
}

/// Copies the tree `src` to `dst` (which must not exist): every entry with
/// its type, contents, mode (set-id bits included), extended attributes
/// (overlay's opaque and whiteout markers among them), times and hard
/// links, owned by the host ids its owners map to.
pub(crate) fn copy_tree(src: &Path, dst: &Path, map: &IdMap) -> Result<(), SnapshotError> {
    let mut links = HashMap::new();
    copy_entry(src, dst, map, &mut links)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |e| SnapshotError::io(op, path, e)
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    map: &IdMap,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<(), SnapshotError> {
    let meta = fs::symlink_metadata(src).map_err(|e| SnapshotError::io("stat", src, e))?;
    let ft = meta.file_type();
    let (uid, gid) = (
        host_id(map.uids(), meta.uid()),
        host_id(map.gids(), meta.gid()),
    );
    if !ft.is_dir() && meta.nlink() > 1 {
        if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
            return fs::hard_link(first, dst).map_err(io("link", dst));
        }
        links.insert((meta.dev(), meta.ino()), dst.to_owned());
    }
    if ft.is_dir() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dst)
            .map_err(io("create", dst))?;
        let entries = fs::read_dir(src).map_err(io("list", src))?;
        for entry in entries {
            let entry = entry.map_err(io("list", src))?;
            copy_entry(&entry.path(), &dst.join(entry.file_name()), map, links)?;
        }
        lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io("chmod", dst))?;
    } else if ft.is_file() {
        let mut from = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(src)
            .map_err(io("open", src))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)
            .map_err(io("create", dst))?;
        io::copy(&mut from, &mut to).map_err(io("copy into", dst))?;
        own_file(&to, uid, gid, meta.mode()).map_err(io("chown", dst))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io("read", src))?;
        symlink(&target, dst).map_err(io("create", dst))?;
        lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
    } else {
        let kind = if ft.is_char_device() {
            SFlag::S_IFCHR
        } else if ft.is_block_device() {
            SFlag::S_IFBLK
        } else if ft.is_fifo() {
            SFlag::S_IFIFO
        } else {
            SFlag::S_IFSOCK
        };
        mknod(dst, kind, Mode::from_bits_truncate(0o600), meta.rdev())
            .map_err(|e| SnapshotError::io("mknod", dst, e.into()))?;
        lchown(dst, Some(uid), Some(gid)).map_err(io("chown", dst))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io("chmod", dst))?;
    }
    copy_xattrs(src, dst, ft.is_symlink())?;
    let time = |s: i64, ns: i64| TimeSpec::new(s, ns);
    utimensat(
        AT_FDCWD,
        dst,
        &time(meta.atime(), meta.atime_nsec()),
        &time(meta.mtime(), meta.mtime_nsec()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| SnapshotError::io("set the times of", dst, e.into()))
}

/// chown before chmod: a chown clears the set-id bits the mode restores.
fn own_file(file: &File, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    fchown(file, Some(uid), Some(gid))?;
    file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
}

fn copy_xattrs(src: &Path, dst: &Path, is_symlink: bool) -> Result<(), SnapshotError> {
    let names = xattr::list(src).map_err(|e| SnapshotError::io("list xattrs of", src, e))?;
    for name in names {
        let Some(value) =
            xattr::get(src, &name).map_err(|e| SnapshotError::io("read xattr of", src, e))?
        else {
            continue;
        };
        match xattr::set(dst, &name, &value) {
            Ok(()) => {}
            // Only trusted.* and security.* go on a symlink; a user.* one
            // cannot have been there either.
            Err(e) if is_symlink && e.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => return Err(SnapshotError::io("set xattr of", dst, e)),
        }
    }
    Ok(())
}
