//! bosun's OCI runtime: it turns an OCI bundle into an isolated process.
//!
//! Synchronous by design: it forks, joins namespaces and changes credentials,
//! which is only sound in a single-threaded process. The `bosun` binary
//! dispatches here before any thread or async runtime exists.
//!
//! Entry points: [`Runtime`] (one method per runc verb), [`default_spec`] and
//! [`features`] for `spec` and `features`, [`parse_signal`] for `kill`; the
//! default security profile (Docker's) in [`default_seccomp`], [`DEFAULT_CAPS`],
//! [`MASKED_PATHS`] and [`READONLY_PATHS`], and [`SeccompProfile`] for
//! profiles in Docker's format.

mod cgroups;
mod channel;
mod config;
mod console;
mod container;
mod error;
mod exe;
mod hooks;
mod inroot;
mod launch;
mod passwd;
mod process;
mod profile;
mod reaper;
mod rootfs;
mod seccomp;
mod signal;
mod spec;
mod state;
mod sys;
mod wait;

pub use container::{Attached, CreateOptions, ExecOptions, ExitCode, Runtime};
pub use error::{Error, ErrorKind, Result};
pub use exe::reexec_protected;
pub use profile::{
    ALL_CAPS, DEFAULT_CAPS, MASKED_PATHS, READONLY_PATHS, SeccompProfile, default_seccomp,
    held_caps, masked_paths,
};
pub use signal::parse_signal;
pub use spec::{default_spec, features};
pub use state::{State, Status, now_rfc3339};

/// Set a terminal's window size (for supervisors holding a master end).
pub fn set_winsize(fd: std::os::fd::BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    sys::set_winsize(fd, rows, cols).map_err(|source| Error::Sys {
        context: "set terminal size".into(),
        source,
    })
}
