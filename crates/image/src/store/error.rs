use std::io;
use std::path::PathBuf;

use bosun_oci::{Digest, ErrorKind};

/// Errors of the content store. Messages name the digest or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("content hashes to {actual}, expected {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {expected} is corrupt on disk: its content hashes to {actual}")]
    Corrupt { expected: Digest, actual: Digest },
    #[error("digest {0}: the content store keeps sha256 blobs only")]
    Algorithm(Digest),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot read the content being stored: {0}")]
    Source(io::Error),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::DigestMismatch { .. } | StoreError::Algorithm(_) => ErrorKind::Invalid,
            StoreError::Corrupt { .. } => ErrorKind::Internal,
            StoreError::Io { source, .. } => io_kind(source),
            // The caller's stream failed (a dropped upload, a truncated file).
            StoreError::Source(_) => ErrorKind::Unavailable,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Internal,
    }
}
