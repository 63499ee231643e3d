//! bosun's registry: an OCI distribution server ([`Server`]) over a
//! directory ([`Storage`]), and the client that pulls images from any
//! registry into the local image store and pushes them back.

mod body;
mod client;
mod name;
mod server;
mod storage;

pub use client::{
    Client, ClientError, ClientOptions, Credentials, Outcome, Platform, Progress, Silent,
};
pub use name::{NameError, Reference, RepoName, Tag, UploadId};
pub use server::{DEFAULT_MAX_CONNECTIONS, Server, ServerConfig, ServerError, TlsFiles};
pub use storage::{
    GcReport, PutManifest, Referrer, ServerLock, Storage, StorageError, StoredManifest,
};

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::server::Handler;
}
