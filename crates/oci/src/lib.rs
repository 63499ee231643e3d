//! OCI types that every bosun crate shares, with no IO.
//!
//! The runtime spec (`config.json`) comes from the `oci-spec` crate and is
//! re-exported as [`spec`]; this crate adds the typed values that are parsed
//! once at the edge, such as [`ContainerId`].

mod id;

pub use id::{ContainerId, IdError};

/// The OCI runtime spec types (`config.json`, `state.json`, features).
pub use oci_spec::runtime as spec;
