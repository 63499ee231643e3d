//! The engine's errors, each with the HTTP status the Docker API gives it.

use bosun_oci::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No such container, image, network, volume or exec.
    #[error("{0}")]
    NotFound(String),
    /// A name, port or state conflict (Docker answers 409).
    #[error("{0}")]
    Conflict(String),
    /// A bad field or parameter (400), naming what was wrong.
    #[error("{0}")]
    Invalid(String),
    /// The container is not in a state the operation works on (409 in Docker).
    #[error("{0}")]
    NotRunning(String),
    /// A request body over the engine's limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Anything the engine itself failed at (500).
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Conflict(_) | Self::NotRunning(_) => ErrorKind::Conflict,
            Self::Invalid(_) | Self::TooLarge(_) => ErrorKind::Invalid,
            Self::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The Docker API's status code for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::Conflict(_) | Self::NotRunning(_) => 409,
            Self::Invalid(_) => 400,
            Self::TooLarge(_) => 413,
            Self::Internal(_) => 500,
        }
    }

    pub(crate) fn internal(context: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {e}"))
    }
}

impl From<bosun_image::ImageError> for EngineError {
    fn from(e: bosun_image::ImageError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.to_string()),
            ErrorKind::Invalid => Self::Invalid(e.to_string()),
            ErrorKind::Conflict => Self::Conflict(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<bosun_image::snapshot::SnapshotError> for EngineError {
    fn from(e: bosun_image::snapshot::SnapshotError) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.to_string()),
            ErrorKind::Conflict => Self::Conflict(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<bosun_runtime::Error> for EngineError {
    fn from(e: bosun_runtime::Error) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::NotFound(e.to_string()),
            ErrorKind::Conflict => Self::NotRunning(e.to_string()),
            ErrorKind::Invalid => Self::Invalid(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

pub(crate) type Result<T, E = EngineError> = std::result::Result<T, E>;
