use std::io;
use std::path::PathBuf;

use bosun_oci::{Digest, ErrorKind};

use crate::{LayerError, StoreError};

/// Errors of the image store. Messages name the image, digest or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("{0:?} matches several images; use a longer id or a name")]
    Ambiguous(String),
    #[error("{0}")]
    Conflict(String),
    #[error("input is not a tar archive: {0}")]
    NotATar(String),
    #[error("not a usable image archive: {0}")]
    BadArchive(String),
    #[error("{what} {digest} is not valid: {reason}")]
    BadBlob {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("layer {layer} unpacks to {actual}, but the image config's diff_id is {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {layer}: {source}")]
    Layer { layer: Digest, source: LayerError },
    #[error("{0}")]
    Import(LayerError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("tag file {path} is corrupt: {source}")]
    Refs {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot build the image {what}: {reason}")]
    Build { what: &'static str, reason: String },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Store(e) => e.kind(),
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Ambiguous(_) | ImageError::NotATar(_) | ImageError::BadArchive(_) => {
                ErrorKind::Invalid
            }
            ImageError::Import(e) => e.kind(),
            ImageError::Conflict(_) => ErrorKind::Conflict,
            // Content in the store that does not hold together is damage, not bad input.
            ImageError::BadBlob { .. }
            | ImageError::DiffIdMismatch { .. }
            | ImageError::Refs { .. }
            | ImageError::Build { .. } => ErrorKind::Internal,
            ImageError::Layer { source, .. } => source.kind(),
            ImageError::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            },
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
