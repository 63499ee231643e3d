use std::io;
use std::path::PathBuf;

use bosun_image::StoreError;
use bosun_image::manifest::ManifestError;
use bosun_oci::{Digest, ErrorKind};

use crate::name::{RepoName, UploadId};

/// Errors of the registry's storage. Messages name the repository, digest,
/// upload or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {digest} is not in repository {repo}")]
    BlobUnknown { repo: RepoName, digest: Digest },
    #[error("manifest {reference} is not in repository {repo}")]
    ManifestUnknown { repo: RepoName, reference: String },
    #[error("repository {0} is not known")]
    NameUnknown(RepoName),
    #[error("upload {id} is not known in repository {repo}")]
    UploadUnknown { repo: RepoName, id: UploadId },
    #[error("manifest is not valid: {0}")]
    ManifestInvalid(String),
    #[error(
        "manifest references {} unknown to repository {repo}: {}",
        plural(.missing.len()),
        list(.missing)
    )]
    ManifestBlobUnknown {
        repo: RepoName,
        missing: Vec<Digest>,
    },
    #[error("content hashes to {actual}, but the digest given is {expected}")]
    DigestInvalid { expected: Digest, actual: Digest },
    #[error("{0} is locked by a running registry server; stop it before garbage collection")]
    Locked(PathBuf),
    #[error(transparent)]
    Store(StoreError),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::BlobUnknown { .. }
            | StorageError::ManifestUnknown { .. }
            | StorageError::NameUnknown(_)
            | StorageError::UploadUnknown { .. } => ErrorKind::NotFound,
            StorageError::ManifestInvalid(_)
            | StorageError::ManifestBlobUnknown { .. }
            | StorageError::DigestInvalid { .. } => ErrorKind::Invalid,
            StorageError::Locked(_) => ErrorKind::Conflict,
            StorageError::Store(e) => e.kind(),
            StorageError::Io { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<StoreError> for StorageError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DigestMismatch { expected, actual } => {
                StorageError::DigestInvalid { expected, actual }
            }
            other => StorageError::Store(other),
        }
    }
}

impl From<ManifestError> for StorageError {
    fn from(e: ManifestError) -> Self {
        StorageError::ManifestInvalid(e.to_string())
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "a blob".to_owned()
    } else {
        format!("{n} blobs")
    }
}

fn list(digests: &[Digest]) -> String {
    let names: Vec<&str> = digests.iter().map(Digest::as_str).collect();
    names.join(", ")
}
