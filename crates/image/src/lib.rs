//! bosun's image store.
//!
//! This slice holds the foundations: a content-addressed blob store
//! ([`ContentStore`]) whose writes are atomic and whose reads are verified, and
//! safe application of OCI layers to a directory ([`apply_layer`]), and on them
//! an [`ImageStore`]: tags, import of rootfs tarballs, unpack.

pub mod build;
mod hash;
mod images;
mod layer;
pub mod manifest;
pub mod snapshot;
mod store;
mod sys;

pub use hash::sha256_of;
pub use images::{
    CommitOptions, Committed, DEFAULT_DATA_DIR, ImageDetails, ImageError, ImageStore, ImageSummary,
    IngestGuard, LoadSource, Removed, SaveDest,
};
pub use layer::{ApplyStats, Compression, LayerError, Whiteouts, apply_layer, apply_layer_with};
pub use store::{BlobWriter, ContentStore, StoreError, VerifyingReader};
