//! OCI whiteouts: `.wh.<name>` deletes `<name>` from the layers below;
//! `.wh..wh..opq` in a directory hides everything the layers below put there.
//! Neither marker is itself created: onto a merged tree they delete, into an
//! overlay layer they become overlayfs's own markers.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use crate::layer::extract::{Applier, io_error};
use crate::layer::path::{Found, lookup, remove_any};
use crate::layer::{LayerError, Whiteouts};

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// What follows the prefix in `.wh..wh..opq`.
const OPAQUE: &[u8] = b".wh..opq";
/// overlayfs's mark of a directory that hides the same directory below.
pub(crate) const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

impl Applier<'_> {
    /// Applies the whiteout entry `rel`, whose file name is `.wh.` + `hidden`.
    pub(crate) fn whiteout(
        &mut self,
        entry: &str,
        rel: &Path,
        hidden: &[u8],
    ) -> Result<(), LayerError> {
        self.stats.whiteouts += 1;
        if self.whiteouts == Whiteouts::Overlay {
            return self.overlay_whiteout(entry, rel, hidden);
        }
        let parent = match self.parents(entry, rel, false) {
            Ok(parent) => parent,
            // Nothing is below a directory that does not exist.
            Err(LayerError::MissingParent { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let parent_rel = rel.parent().unwrap_or(Path::new(""));
        if hidden == OPAQUE {
            return self.clear_lower(entry, &parent, parent_rel);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`): nothing to apply.
            return Ok(());
        }
        check_hidden(entry, hidden)?;
        let victim = parent.join(OsStr::from_bytes(hidden));
        remove_any(&victim).map_err(|e| io_error(entry, "remove", &victim, e))
    }

    /// The same whiteout, written in overlayfs's format into a layer of its
    /// own. The directory holding it is made if missing: overlayfs looks for
    /// a whiteout only in the same directory of an upper layer.
    fn overlay_whiteout(
        &mut self,
        entry: &str,
        rel: &Path,
        hidden: &[u8],
    ) -> Result<(), LayerError> {
        let is_opaque = hidden == OPAQUE;
        if !is_opaque && hidden.starts_with(WHITEOUT_PREFIX) {
            return Ok(());
        }
        if !is_opaque {
            check_hidden(entry, hidden)?;
        }
        let parent = self.parents(entry, rel, true)?;
        if is_opaque {
            return set_opaque(entry, &parent);
        }
        let victim = parent.join(OsStr::from_bytes(hidden));
        match lookup(&victim).map_err(|e| io_error(entry, "inspect", &victim, e))? {
            Found::Missing => {
                mknod(&victim, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| io_error(entry, "create whiteout", &victim, e.into()))?;
                let parent_rel = rel.parent().unwrap_or(Path::new(""));
                self.whited
                    .insert(parent_rel.join(OsStr::from_bytes(hidden)));
                Ok(())
            }
            // A whiteout hides only lower layers' entries, never this layer's
            // (OCI image spec); a non-directory here already hides the lower
            // one, but a directory merges with it unless it is opaque.
            Found::Dir => set_opaque(entry, &victim),
            Found::Symlink | Found::Other => Ok(()),
        }
    }

    /// Removes from `abs` (relative `rel`) everything this layer did not write.
    /// A directory this layer wrote over a lower one keeps only what this layer
    /// put in it, so the walk goes down into those.
    fn clear_lower(&self, entry: &str, abs: &Path, rel: &Path) -> Result<(), LayerError> {
        let children = fs::read_dir(abs).map_err(|e| io_error(entry, "list", abs, e))?;
        for child in children {
            let child = child.map_err(|e| io_error(entry, "list", abs, e))?;
            let name = child.file_name();
            let child_abs = abs.join(&name);
            let child_rel = rel.join(&name);
            if !self.written.contains(&child_rel) {
                remove_any(&child_abs).map_err(|e| io_error(entry, "remove", &child_abs, e))?;
                continue;
            }
            // `DirEntry::file_type` does not follow symlinks.
            let file_type = child
                .file_type()
                .map_err(|e| io_error(entry, "inspect", &child_abs, e))?;
            if file_type.is_dir() {
                self.clear_lower(entry, &child_abs, &child_rel)?;
            }
        }
        Ok(())
    }
}

fn check_hidden(entry: &str, hidden: &[u8]) -> Result<(), LayerError> {
    if matches!(hidden, b"" | b"." | b"..") {
        return Err(LayerError::BadWhiteout {
            entry: entry.to_owned(),
        });
    }
    Ok(())
}

/// Marks the directory at `path` opaque for overlayfs.
pub(crate) fn set_opaque(entry: &str, path: &Path) -> Result<(), LayerError> {
    xattr::set(path, OVERLAY_OPAQUE, b"y").map_err(|e| {
        io_error(
            entry,
            "set extended attribute",
            &path.join(OVERLAY_OPAQUE),
            e,
        )
    })
}
