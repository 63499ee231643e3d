//! OCI whiteouts: `.wh.<name>` deletes `<name>` from the layers below;
//! `.wh..wh..opq` in a directory hides everything the layers below put there.
//! Neither marker is itself created.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::layer::LayerError;
use crate::layer::extract::{Applier, io_error};
use crate::layer::path::remove_any;

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// What follows the prefix in `.wh..wh..opq`.
const OPAQUE: &[u8] = b".wh..opq";

impl Applier<'_> {
    /// Applies the whiteout entry `rel`, whose file name is `.wh.` + `hidden`.
    pub(crate) fn whiteout(
        &mut self,
        entry: &str,
        rel: &Path,
        hidden: &[u8],
    ) -> Result<(), LayerError> {
        self.stats.whiteouts += 1;
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
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(LayerError::BadWhiteout {
                entry: entry.to_owned(),
            });
        }
        let victim = parent.join(OsStr::from_bytes(hidden));
        remove_any(&victim).map_err(|e| io_error(entry, "remove", &victim, e))
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
