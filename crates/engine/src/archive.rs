//! `docker cp`: the archive endpoints. Paths are resolved inside the
//! container's root file system (symlinks followed within it, never out of
//! it), or inside the source of the volume or bind mount that covers them.
//! A stopped container's writable layer is mounted for the while.

use std::path::{Path, PathBuf};

use bosun_image::snapshot::Active;
use serde_json::json;

use crate::engine::{Container, Engine};
use crate::error::{EngineError, Result};

/// A path of a container on the host, and the mount made to reach it.
pub(crate) struct Located {
    pub host: PathBuf,
    mounted: Option<(Active, PathBuf)>,
}

impl Drop for Located {
    fn drop(&mut self) {
        if let Some((active, rootfs)) = &self.mounted {
            let _ = active.unmount(rootfs);
        }
    }
}

/// Docker's stat header (`X-Docker-Container-Path-Stat`), as JSON: Go's
/// FileMode bits for directories and links.
pub(crate) fn stat_json(path: &Path, name: &str) -> Result<serde_json::Value> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|_| {
        EngineError::NotFound(format!("Could not find the file {name} in container"))
    })?;
    let mut mode = meta.mode() & 0o7777;
    if meta.is_dir() {
        mode |= 1 << 31;
    }
    let link = if meta.file_type().is_symlink() {
        mode |= 1 << 27;
        std::fs::read_link(path)
            .map(|l| l.display().to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let secs = meta.mtime();
    Ok(json!({
        "name": Path::new(name).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into()),
        "size": meta.len(),
        "mode": mode,
        "mtime": crate::time::rfc3339_nano(secs, 0),
        "linkTarget": link,
    }))
}

impl Engine {
    /// Where `path` of the container is on the host, mounting a stopped
    /// container's file system if needed.
    pub(crate) fn locate(&self, c: &Container, path: &str) -> Result<Located> {
        if !path.starts_with('/') {
            return Err(EngineError::Invalid(format!(
                "path {path:?} must be absolute"
            )));
        }
        let rec = c.record();
        let inside = Path::new(path);
        // The innermost mount covering the path wins.
        let mount = rec
            .mounts
            .iter()
            .filter(|m| inside.starts_with(&m.destination))
            .max_by_key(|m| m.destination.len());
        if let Some(m) = mount {
            if m.kind == "tmpfs" {
                return Err(EngineError::Invalid(format!(
                    "{path} is on a tmpfs mount of the container, which the engine cannot reach"
                )));
            }
            let rest = inside.strip_prefix(&m.destination).unwrap_or(Path::new(""));
            let host = bosun_image::build::resolve_in_root(Path::new(&m.source), rest)
                .map_err(|e| EngineError::Invalid(format!("{path}: {e}")))?;
            return Ok(Located {
                host,
                mounted: None,
            });
        }
        let rootfs = c.dir.join("rootfs");
        let mounted = if rec.state.status.is_live() {
            None
        } else {
            let active = self.snapshotter().active(&c.id)?;
            match self.remap_of(&rec) {
                Some(map) => active.mount_idmapped(&rootfs, map)?,
                None => active.mount(&rootfs)?,
            }
            Some((active, rootfs.clone()))
        };
        let host = bosun_image::build::resolve_in_root(&rootfs, inside)
            .map_err(|e| EngineError::Invalid(format!("{path}: {e}")))?;
        Ok(Located { host, mounted })
    }

    /// `GET /containers/{id}/archive`: the path as a tar, under its own name.
    pub(crate) fn archive_out(
        &self,
        name_or_id: &str,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<()> {
        let c = self.find(name_or_id)?;
        let _frozen = self.freeze_for_copy(&c)?;
        let located = self.locate(&c, path)?;
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_owned())
            .unwrap_or_else(|| ".".into());
        let meta = std::fs::symlink_metadata(&located.host).map_err(|_| {
            EngineError::NotFound(format!(
                "Could not find the file {path} in container {}",
                c.id
            ))
        })?;
        let dir = meta.is_dir();
        let written = match self.remap_of(&c.record()) {
            Some(map) => crate::engine::tar_unmapped(out, map, |tar| {
                append_located(tar, dir, &name, &located.host)
            }),
            None => {
                let mut tar = tar::Builder::new(out);
                tar.follow_symlinks(false);
                append_located(&mut tar, dir, &name, &located.host).and_then(|()| tar.finish())
            }
        };
        written.map_err(|e| EngineError::internal("archive", e))
    }

    /// `PUT /containers/{id}/archive`: unpack a tar into the directory `path`.
    pub(crate) fn archive_in(&self, name_or_id: &str, path: &str, tar_file: &Path) -> Result<()> {
        let c = self.find(name_or_id)?;
        let _frozen = self.freeze_for_copy(&c)?;
        let located = self.locate(&c, path)?;
        let meta = std::fs::metadata(&located.host).map_err(|_| {
            EngineError::NotFound(format!(
                "Could not find the file {path} in container {}",
                c.id
            ))
        })?;
        if !meta.is_dir() {
            return Err(EngineError::Invalid(format!("{path} is not a directory")));
        }
        let f = std::fs::File::open(tar_file).map_err(|e| EngineError::internal("archive", e))?;
        let mut archive = tar::Archive::new(f);
        archive.set_preserve_permissions(true);
        // tar refuses entries that would land outside the directory, also
        // through links the container made.
        let bad =
            |e: std::io::Error| EngineError::Invalid(format!("cannot extract into {path}: {e}"));
        let Some(map) = self.remap_of(&c.record()) else {
            return archive.unpack(&located.host).map_err(bad);
        };
        // A remapped container's root gets what it is given, as in Docker;
        // host root's files would be nobody's inside.
        let (uid, gid) = map.root();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let rel = entry.path().map_err(bad)?.into_owned();
            if entry.unpack_in(&located.host).map_err(bad)? {
                std::os::unix::fs::lchown(located.host.join(&rel), Some(uid), Some(gid))
                    .map_err(|e| EngineError::internal("chown the copied files", e))?;
            }
        }
        Ok(())
    }
}

/// `host` into `tar` under `name`: a directory with everything below it.
fn append_located<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    dir: bool,
    name: &std::ffi::OsStr,
    host: &Path,
) -> std::io::Result<()> {
    match dir {
        true => tar.append_dir_all(name, host),
        false => tar.append_path_with_name(host, name),
    }
}
