use std::io;
use std::path::PathBuf;

use bosun_oci::{Digest, ErrorKind};

use crate::ImageError;

/// Errors of the snapshotter. Messages name the image, chain, layer, key or
/// path at fault.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("image {manifest}: {source}")]
    Image {
        manifest: Digest,
        // Boxed: the image store's errors are large, and this enum is in
        // every result of the snapshotter.
        source: Box<ImageError>,
    },
    #[error(transparent)]
    Images(Box<ImageError>),
    #[error("layer {layer} (chain {chain}): {source}")]
    Layer {
        chain: Digest,
        layer: Digest,
        source: Box<ImageError>,
    },
    #[error("no snapshot of chain {0}; prepare its image again")]
    ChainNotFound(Digest),
    #[error("active snapshot {0:?} not found")]
    ActiveNotFound(String),
    #[error("active snapshot {0:?} already exists")]
    ActiveExists(String),
    #[error("active snapshot key {key:?} is not valid: {reason}")]
    BadKey { key: String, reason: &'static str },
    #[error("active snapshot {key:?} is mounted at {target}; unmount it first")]
    Mounted { key: String, target: PathBuf },
    #[error("{target} is not a mount of active snapshot {key:?}")]
    NotMounted { key: String, target: PathBuf },
    #[error(
        "{layers} layers do not fit in one overlay mount from this data directory \
         (at most {max}: overlayfs takes at most 500, and the mount options one page)"
    )]
    TooManyLayers { layers: usize, max: usize },
    #[error("snapshot directory {path} cannot be used: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
    #[error("snapshot store entry {path} is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("upper directory entry {path} cannot be written as a layer: {reason}")]
    Unsupported { path: PathBuf, reason: &'static str },
    #[error("cannot write the layer: {0}")]
    Write(io::Error),
    #[error("user namespace mapping cannot be used: {reason}")]
    BadIdMap { reason: String },
    #[error(
        "cannot make an idmapped mount of {path}: {source} \
         (idmapped mounts need Linux 5.12, and 5.19 to stack them in overlayfs)"
    )]
    Idmap { path: PathBuf, source: io::Error },
    #[error("cannot mount overlay at {target}: {source}")]
    Mount { target: PathBuf, source: io::Error },
    #[error("cannot unmount {target}: {source}")]
    Unmount { target: PathBuf, source: io::Error },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl SnapshotError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            SnapshotError::Image { source, .. }
            | SnapshotError::Layer { source, .. }
            | SnapshotError::Images(source) => source.kind(),
            SnapshotError::ChainNotFound(_) | SnapshotError::ActiveNotFound(_) => {
                ErrorKind::NotFound
            }
            SnapshotError::ActiveExists(_)
            | SnapshotError::Mounted { .. }
            | SnapshotError::NotMounted { .. } => ErrorKind::Conflict,
            SnapshotError::BadKey { .. }
            | SnapshotError::TooManyLayers { .. }
            | SnapshotError::BadPath { .. }
            | SnapshotError::Unsupported { .. } => ErrorKind::Invalid,
            SnapshotError::Corrupt { .. } | SnapshotError::Write(_) => ErrorKind::Internal,
            SnapshotError::BadIdMap { .. } | SnapshotError::Idmap { .. } => ErrorKind::Unavailable,
            SnapshotError::Mount { source, .. }
            | SnapshotError::Unmount { source, .. }
            | SnapshotError::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::ResourceBusy => ErrorKind::Conflict,
                _ => ErrorKind::Internal,
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
