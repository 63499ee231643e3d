use std::path::PathBuf;

use crate::cgroups::CgroupError;

pub use bosun_oci::ErrorKind;

/// Errors of the runtime. Messages are one line and name the field or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid container id: {0}")]
    BadId(#[from] bosun_oci::IdError),
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    ParseConfig { path: PathBuf, message: String },
    #[error("config.json: {field}: {message}")]
    InvalidConfig { field: String, message: String },
    #[error("container {id:?} is {status}, {action} needs it {wanted}")]
    WrongState {
        id: String,
        status: &'static str,
        action: &'static str,
        wanted: &'static str,
    },
    #[error("invalid signal {0:?}")]
    BadSignal(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("hook {path}: {message}")]
    Hook { path: String, message: String },
    #[error("container init failed: {0}")]
    Init(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys { context: String, source: nix::Error },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) | Error::WrongState { .. } => ErrorKind::Conflict,
            Error::BadId(_)
            | Error::ParseConfig { .. }
            | Error::InvalidConfig { .. }
            | Error::BadSignal(_)
            | Error::ReadConfig { .. }
            | Error::Unsupported(_) => ErrorKind::Invalid,
            Error::Cgroup(e) => e.kind(),
            Error::Seccomp(_) => ErrorKind::Invalid,
            Error::Hook { .. } | Error::Init(_) | Error::Io { .. } | Error::Sys { .. } => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a context string to io and nix errors at the call site.
pub(crate) trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: context(),
            source,
        })
    }
}
