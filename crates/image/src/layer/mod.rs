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
    /// Device nodes and fifos, which this version does not create.
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
    extract(root, compression.decoder(reader).map_err(LayerError::Read)?)
}

fn extract<R: Read>(root: &Path, reader: R) -> Result<ApplyStats, LayerError> {
    let mut archive = tar::Archive::new(reader);
    let mut applier = Applier::new(root);
    for entry in archive.entries().map_err(LayerError::Read)? {
        applier.entry(entry.map_err(LayerError::Read)?)?;
    }
    // Read to the end, so that a verifying reader underneath checks its digest
    // and a corrupt compressed tail is noticed.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(LayerError::Read)?;
    applier.finish()
}
