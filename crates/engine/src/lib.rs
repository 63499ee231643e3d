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

pub use api::{API_VERSION, MIN_API_VERSION, serve};
pub use build::ChildRuntime;
pub use engine::{Engine, EngineConfig};
pub use error::EngineError;
pub use network::NetworkConfig;
pub use shim::{exec_main, shim_main};
pub use userns::{DEFAULT_REMAP_USER, UsernsRemap};
