//! Applying an OCI layer (a tar stream, maybe gzip-compressed) to a directory,
//! safely: no entry can write outside it.

mod compression;
mod error;
mod extract;
mod meta;
mod path;
mod whiteout;

use std::fs;
use std::io::{self, Read};
use std::path::Path;

pub use compression::Compression;
pub use error::LayerError;

use extract::Applier;
pub(crate) use whiteout::OVERLAY_OPAQUE;

/// How the whiteouts of a layer are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Whiteouts {
    /// Onto a merged tree that holds the layers below: `.wh.NAME` deletes
    /// `NAME`, `.wh..wh..opq` deletes what lower layers put in its directory.
    #[default]
    Delete,
    /// Into an empty directory that becomes one layer of an overlayfs mount:
    /// `.wh.NAME` becomes a 0/0 character device `NAME` (overlayfs's
    /// whiteout) and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
    /// directory. Nothing is deleted. Needs root (`trusted.*` xattrs, and
    /// mknod of whiteouts on kernels before 5.8).
    Overlay,
}

/// What a layer application did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyStats {
    /// Entries read, whiteouts and skipped ones included.
    pub entries: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub whiteouts: u64,
    /// Extended attributes set (from PAX `SCHILY.xattr.*` records).
    pub xattrs: u64,
    /// Character and block devices created.
    pub devices: u64,
    pub fifos: u64,
    /// Device nodes this process may not create (mknod fails with `EPERM`,
    /// as it does without `CAP_MKNOD` or in a user namespace): skipped,
    /// leaving whatever a lower layer put at their path.
    pub skipped: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
}

/// Extracts the layer read from `reader` into the existing directory `root`,
/// applying whiteouts to what lower layers left there.
///
/// Refused (the error names the entry): names with a `..` component, entries
/// whose parent is a symlink or not a directory, hard links whose target is
/// outside the root, missing, or reached through a symlink. Absolute names are
/// taken relative to `root`. Modes, owners, extended attributes and file and
/// directory mtimes are preserved; owners other than the caller's need root.
/// On error, `root` holds the entries applied so far: the caller discards the
/// snapshot.
pub fn apply_layer(
    root: &Path,
    reader: impl Read,
    compression: Compression,
) -> Result<ApplyStats, LayerError> {
    apply_layer_with(root, reader, compression, Whiteouts::Delete)
}

/// [`apply_layer`], with the choice of how whiteouts are applied. With
/// [`Whiteouts::Overlay`], `root` must be empty: the result is the layer's own
/// diff in overlayfs's format, not a merged tree.
pub fn apply_layer_with(
    root: &Path,
    reader: impl Read,
    compression: Compression,
    whiteouts: Whiteouts,
) -> Result<ApplyStats, LayerError> {
    // The root is the caller's choice and may itself be reached through a symlink.
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(LayerError::Root {
                path: root.to_owned(),
                source: io::ErrorKind::NotADirectory.into(),
            });
        }
        Err(source) => {
            return Err(LayerError::Root {
                path: root.to_owned(),
                source,
            });
        }
    }
    if whiteouts == Whiteouts::Overlay {
        // An overlay layer is this layer's diff alone: anything already there
        // would silently become part of it.
        let mut children = fs::read_dir(root).map_err(|source| LayerError::Root {
            path: root.to_owned(),
            source,
        })?;
        if children.next().is_some() {
            return Err(LayerError::RootNotEmpty {
                path: root.to_owned(),
            });
        }
    }
    let reader = compression.decoder(reader).map_err(LayerError::Read)?;
    extract(root, reader, whiteouts)
}

fn extract<R: Read>(
    root: &Path,
    reader: R,
    whiteouts: Whiteouts,
) -> Result<ApplyStats, LayerError> {
    let mut archive = tar::Archive::new(reader);
    let mut applier = Applier::new(root, whiteouts);
    for entry in archive.entries().map_err(LayerError::Read)? {
        applier.entry(entry.map_err(LayerError::Read)?)?;
    }
    // Read to the end, so that a verifying reader underneath checks its digest
    // and a corrupt compressed tail is noticed.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(LayerError::Read)?;
    applier.finish()
}
