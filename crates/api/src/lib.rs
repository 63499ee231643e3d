//! Cluster objects in Kubernetes JSON shape, with no IO.
//!
//! Objects travel and are stored as JSON (`serde_json::Value`): the server keeps
//! every field a client sends and types only what it must read. This crate owns
//! the [`resource`] table (what discovery announces), [`ObjectMeta`], the
//! [`Status`] bodies of errors, name and label rules ([`name`]), label and field
//! [`selector`]s, and Kubernetes timestamps.

pub mod meta;
pub mod name;
pub mod resource;
pub mod selector;
pub mod status;
pub mod time;

/// The class of every error, shared with the node side.
pub use bosun_oci::ErrorKind;
pub use meta::{MetaError, ObjectMeta};
pub use resource::{Resource, Subresource};
pub use selector::{FieldSelector, LabelSelector, SelectorError};
pub use status::{Cause, Reason, Status};
