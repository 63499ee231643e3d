//! bosun's single-host engine: containers from images, run by the bosun
//! runtime under a per-container shim, with logs, exec, volumes and networks,
//! served over the Docker Engine API so the docker CLI and SDKs work unchanged.
//!
//! Entry points: [`Engine::open`] + [`Engine::restore`] + [`serve`] for the
//! daemon; [`shim_main`] and [`exec_main`] for the supervisor processes the
//! engine starts (the binary dispatches to them before any thread exists).

#![recursion_limit = "256"]

mod api;
mod archive;
mod build;
mod dns;
mod engine;
mod error;
mod exec;
mod fsutil;
mod health;
mod logs;
mod model;
mod network;
mod shim;
mod spec;
mod time;
mod userns;
mod volumes;

pub use api::{API_VERSION, DEFAULT_MAX_CONNECTIONS, MIN_API_VERSION, serve};
pub use build::ChildRuntime;
pub use engine::{Engine, EngineConfig};
pub use error::EngineError;
pub use network::NetworkConfig;
pub use shim::{exec_main, shim_main};
pub use userns::{DEFAULT_REMAP_USER, UsernsRemap};

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::EngineError;

    /// Decodes and checks a request (method, path with query, body) the way
    /// the API server does before it asks the engine anything. Touches no state.
    pub fn decode_request(method: &str, target: &str, body: &[u8]) -> Result<(), EngineError> {
        crate::api::decode_request(method, target, body)
    }
}
