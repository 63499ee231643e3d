use std::io;
use std::path::PathBuf;

use bosun_oci::ErrorKind;

/// Errors of layer extraction. Every message names the tar entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("extraction root {path}: {source}")]
    Root { path: PathBuf, source: io::Error },
    #[error("extraction root {path} is not empty, as an overlay layer's must be")]
    RootNotEmpty { path: PathBuf },
    #[error("layer media type {0:?} is not a layer this store can apply")]
    UnknownMediaType(String),
    #[error("cannot read layer: {0}")]
    Read(io::Error),
    #[error("layer entry {entry:?}: bad {field} in tar header: {source}")]
    BadHeader {
        entry: String,
        field: &'static str,
        source: io::Error,
    },
    #[error("layer entry {entry:?} has a \"..\" component, which could escape the root")]
    ParentDir { entry: String },
    #[error("layer entry {entry:?} would be written through symlink {symlink:?}")]
    ThroughSymlink { entry: String, symlink: String },
    #[error("layer entry {entry:?}: parent {parent:?} is not a directory")]
    NotADirectory { entry: String, parent: String },
    #[error("layer entry {entry:?}: parent {parent:?} does not exist")]
    MissingParent { entry: String, parent: String },
    #[error("layer entry {entry:?} is not a directory and cannot replace the root")]
    RootEntry { entry: String },
    #[error("layer entry {entry:?} is a whiteout of no valid name")]
    BadWhiteout { entry: String },
    #[error("layer entry {entry:?}: hard link target {target:?} has a \"..\" component")]
    LinkParentDir { entry: String, target: String },
    #[error("layer entry {entry:?}: hard link target {target:?} goes through symlink {symlink:?}")]
    LinkThroughSymlink {
        entry: String,
        target: String,
        symlink: String,
    },
    #[error("layer entry {entry:?}: hard link target {target:?} {reason}")]
    BadLinkTarget {
        entry: String,
        target: String,
        reason: &'static str,
    },
    #[error("layer entry {entry:?}: empty link target")]
    EmptyLinkTarget { entry: String },
    #[error("layer entry {entry:?}: extended attribute {xattr:?} is reserved for overlayfs")]
    ForbiddenXattr { entry: String, xattr: String },
    #[error("layer entry {entry:?}: unsupported tar entry type {kind:?}")]
    UnsupportedType { entry: String, kind: char },
    #[error("layer entry {entry:?}: cannot {op} {path}: {source}")]
    Io {
        entry: String,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl LayerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            LayerError::Root { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            LayerError::Root { .. } => ErrorKind::Invalid,
            LayerError::RootNotEmpty { .. } => ErrorKind::Conflict,
            LayerError::Read(e) => match e.kind() {
                io::ErrorKind::InvalidData
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::Other => ErrorKind::Invalid,
                _ => ErrorKind::Internal,
            },
            LayerError::Io { source, .. } => match source.kind() {
                io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                _ => ErrorKind::Internal,
            },
            LayerError::UnknownMediaType(_)
            | LayerError::BadHeader { .. }
            | LayerError::ParentDir { .. }
            | LayerError::ThroughSymlink { .. }
            | LayerError::NotADirectory { .. }
            | LayerError::MissingParent { .. }
            | LayerError::RootEntry { .. }
            | LayerError::BadWhiteout { .. }
            | LayerError::LinkParentDir { .. }
            | LayerError::LinkThroughSymlink { .. }
            | LayerError::BadLinkTarget { .. }
            | LayerError::EmptyLinkTarget { .. }
            | LayerError::ForbiddenXattr { .. }
            | LayerError::UnsupportedType { .. } => ErrorKind::Invalid,
        }
    }
}
