//! The store's one error type. Both backends map their failures onto the same
//! variants, so the API server handles `Compacted` (410 Gone), `Conflict` (409) and
//! the rest the same way whatever the backend.

use std::sync::Arc;

use bosun_oci::ErrorKind;

use crate::types::{Key, Revision};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("key {key} not found")]
    NotFound { key: Key },
    #[error("key {key} already exists (mod revision {mod_revision})")]
    AlreadyExists { key: Key, mod_revision: Revision },
    #[error("key {key} was modified: expected mod revision {expected}, found {actual}")]
    Conflict {
        key: Key,
        expected: Revision,
        actual: Revision,
    },
    /// The revision's history is gone: relist (the API server's 410 Gone).
    #[error("revision {requested} is too old: the store is compacted up to revision {compacted}")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    #[error("revision {requested} is in the future (the store is at revision {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    #[error("invalid key: {reason}")]
    InvalidKey { reason: &'static str },
    #[error("invalid revision {input:?}: {reason}")]
    InvalidRevision { input: String, reason: &'static str },
    #[error("a transaction branch writes key {key} twice")]
    DuplicateKeyInTxn { key: Key },
    #[error("invalid etcd endpoint {input:?}: {reason}")]
    InvalidEndpoint { input: String, reason: String },
    /// A watch after its terminal error, or a store whose writer has stopped.
    #[error("the store is closed")]
    Closed,
    #[error("embedded store {path}: {source}")]
    Storage {
        path: String,
        /// Shared: one failed commit fails every write of its batch.
        #[source]
        source: Arc<redb::Error>,
    },
    #[error("embedded store: corrupt {what} record")]
    Corrupt { what: &'static str },
    #[error("embedded store: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A request to etcd failed in transport (refused, reset, timed out) on every
    /// endpoint; for a write, whether it was applied is unknown.
    #[error("etcd {endpoint}: {source}")]
    Http {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// etcd answered with an error status (`code` is the gRPC code).
    #[error("etcd {endpoint}: {message} (grpc code {code})")]
    Etcd {
        endpoint: String,
        code: i32,
        message: String,
    },
    /// A watch could not be kept open: its stream broke again and again, or etcd
    /// cancelled it for another reason than compaction.
    #[error("etcd {endpoint}: watch lost: {reason}")]
    WatchLost { endpoint: String, reason: String },
    #[error("etcd {endpoint}: unexpected response: {reason}")]
    Protocol { endpoint: String, reason: String },
}

/// gRPC status codes etcd answers with.
const GRPC_INVALID_ARGUMENT: i32 = 3;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_FAILED_PRECONDITION: i32 = 9;
const GRPC_UNAVAILABLE: i32 = 14;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            // Compacted is a conflict with the current state: the caller re-reads
            // (relists) and carries on, as after a revision conflict.
            Error::AlreadyExists { .. } | Error::Conflict { .. } | Error::Compacted { .. } => {
                ErrorKind::Conflict
            }
            // A future revision exists soon: retry later (Kubernetes answers 504).
            Error::FutureRevision { .. }
            | Error::Closed
            | Error::Http { .. }
            | Error::WatchLost { .. } => ErrorKind::Unavailable,
            Error::InvalidKey { .. }
            | Error::InvalidRevision { .. }
            | Error::DuplicateKeyInTxn { .. }
            | Error::InvalidEndpoint { .. } => ErrorKind::Invalid,
            Error::Storage { source, .. } => match **source {
                // Another process holds the data dir.
                redb::Error::DatabaseAlreadyOpen => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Etcd { code, .. } => match *code {
                GRPC_INVALID_ARGUMENT | GRPC_FAILED_PRECONDITION => ErrorKind::Invalid,
                GRPC_UNAVAILABLE | GRPC_DEADLINE_EXCEEDED => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Corrupt { .. } | Error::Io { .. } | Error::Protocol { .. } => {
                ErrorKind::Internal
            }
        }
    }
}
