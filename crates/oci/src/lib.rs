//! OCI types that every bosun crate shares, with no IO.
//!
//! The runtime spec (`config.json`) comes from the `oci-spec` crate and is
//! re-exported as [`spec`]; this crate adds the typed values that are parsed
//! once at the edge: [`ContainerId`], [`Digest`], [`ImageRef`], and the
//! [`ErrorKind`] every library error maps to.

mod digest;
mod id;
mod kind;
mod reference;
mod time;

pub use digest::{Algorithm, Digest, DigestError};
pub use id::{ContainerId, IdError};
pub use kind::ErrorKind;
pub use reference::{DEFAULT_REGISTRY, DEFAULT_TAG, ImageRef, ReferenceError};
pub use time::UtcTime;

/// The OCI runtime spec types (`config.json`, `state.json`, features).
pub use oci_spec::runtime as spec;
