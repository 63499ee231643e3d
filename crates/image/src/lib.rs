//! bosun's image store.
//!
//! This slice holds the foundations: a content-addressed blob store
//! ([`ContentStore`]) whose writes are atomic and whose reads are verified, and
//! safe application of OCI layers to a directory ([`apply_layer`]).

mod hash;
mod layer;
mod store;

pub use hash::sha256_of;
pub use layer::{ApplyStats, Compression, LayerError, apply_layer};
pub use store::{ContentStore, StoreError, VerifyingReader};
