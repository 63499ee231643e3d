//! File operations inside an image's root file system, where every path is
//! read the way the container would read it: symlinks are followed, but an
//! absolute target or a `..` never leaves the root.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

/// Linux's own limit on symlinks followed in one lookup.
const MAX_LINKS: usize = 40;

/// The host path of `path` inside `root`, symlinks resolved within `root`.
/// Components that do not exist (yet) are appended as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<PathBuf> = components(path);
    pending.reverse();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part.as_os_str() == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&part);
        match fs::symlink_metadata(root.join(&candidate)) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::other(format!(
                        "too many symbolic links resolving {}",
                        path.display()
                    )));
                }
                let target = fs::read_link(root.join(&candidate))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut parts = components(&target);
                parts.reverse();
                pending.extend(parts);
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == io::ErrorKind::NotFound => resolved = candidate,
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(resolved))
}

/// Normal components and `..`, in order; `.` and the root are dropped.
fn components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(PathBuf::from(p)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

/// Creates `path` inside `root` and any missing parents (mode 0755, root
/// owned), resolving each component inside the root. Returns the host path.
pub(crate) fn mkdir_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut sofar = PathBuf::from("/");
    let mut host = root.to_path_buf();
    for part in components(path) {
        sofar.push(&part);
        host = resolve_in_root(root, &sofar)?;
        match fs::symlink_metadata(&host) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a directory", sofar.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&host)?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(host)
}

/// How copied files are owned and moded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CopyAttrs {
    /// `--chown`; without it files belong to root, as in Docker.
    pub(crate) owner: Option<(u32, u32)>,
    /// `--chmod`; without it the source's mode bits are kept.
    pub(crate) mode: Option<u32>,
}

/// Copies `src` (a host path outside the rootfs) to `dst` (already resolved
/// inside the rootfs), recursively, with `keep` deciding which relative paths
/// under `src` take part (the .dockerignore rules). Symlinks are copied as
/// links; an existing file at a destination is replaced.
pub(crate) fn copy_tree(
    src: &Path,
    dst: &Path,
    attrs: CopyAttrs,
    keep: &dyn Fn(&Path) -> bool,
) -> io::Result<()> {
    copy_entry(src, dst, Path::new(""), attrs, keep)
}

fn copy_entry(
    src: &Path,
    dst: &Path,
    rel: &Path,
    attrs: CopyAttrs,
    keep: &dyn Fn(&Path) -> bool,
) -> io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    let (uid, gid) = attrs.owner.unwrap_or((0, 0));
    let ft = meta.file_type();
    if ft.is_dir() {
        match fs::symlink_metadata(dst) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                fs::remove_file(dst)?;
                fs::create_dir(dst)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(dst)?,
            Err(e) => return Err(e),
        }
        let mut names: Vec<_> = fs::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let child_rel = rel.join(&name);
            if !keep(&child_rel) {
                continue;
            }
            copy_entry(&src.join(&name), &dst.join(&name), &child_rel, attrs, keep)?;
        }
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid))?;
        let mode = attrs.mode.unwrap_or(meta.mode() & 0o7777);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
        set_mtime(dst, &meta)?;
        return Ok(());
    }
    remove_existing(dst)?;
    if ft.is_symlink() {
        symlink(fs::read_link(src)?, dst)?;
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid))?;
    } else if ft.is_file() {
        fs::copy(src, dst)?;
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid))?;
        let mode = attrs.mode.unwrap_or(meta.mode() & 0o7777);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))?;
        set_mtime(dst, &meta)?;
    } else {
        // Sockets, fifos and devices in a build context are not copied,
        // as in Docker.
    }
    Ok(())
}

/// Writes `bytes` as a file at `dst` (resolved inside the rootfs).
pub(crate) fn write_file(dst: &Path, bytes: &[u8], attrs: CopyAttrs) -> io::Result<()> {
    remove_existing(dst)?;
    fs::write(dst, bytes)?;
    let (uid, gid) = attrs.owner.unwrap_or((0, 0));
    std::os::unix::fs::lchown(dst, Some(uid), Some(gid))?;
    fs::set_permissions(dst, fs::Permissions::from_mode(attrs.mode.unwrap_or(0o644)))
}

fn remove_existing(dst: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is a directory", dst.display()),
        )),
        Ok(_) => fs::remove_file(dst),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_mtime(dst: &Path, meta: &fs::Metadata) -> io::Result<()> {
    let f = fs::File::open(dst)?;
    let times = fs::FileTimes::new().set_modified(meta.modified()?);
    f.set_times(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        symlink("/etc", r.join("usr/etc-abs")).unwrap();
        symlink("../../../../../../outside", r.join("usr/escape")).unwrap();
        assert_eq!(
            resolve_in_root(r, Path::new("/bin/sh")).unwrap(),
            r.join("usr/bin/sh")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("usr/etc-abs/passwd")).unwrap(),
            r.join("etc/passwd")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/usr/escape/x")).unwrap(),
            r.join("outside/x")
        );
        assert_eq!(
            resolve_in_root(r, Path::new("/../../a/./b/../c")).unwrap(),
            r.join("a/c")
        );
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_in_root(r, Path::new("/loop/x")).is_err());
    }

    #[test]
    fn mkdir_follows_links_and_refuses_files() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("real")).unwrap();
        symlink("/real", r.join("link")).unwrap();
        let made = mkdir_in_root(r, Path::new("/link/a/b")).unwrap();
        assert_eq!(made, r.join("real/a/b"));
        assert!(made.is_dir());
        fs::write(r.join("file"), b"x").unwrap();
        assert!(mkdir_in_root(r, Path::new("/file/sub")).is_err());
    }
}
