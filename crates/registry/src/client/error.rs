use bosun_image::manifest::ManifestError;
use bosun_image::{ImageError, StoreError};
use bosun_oci::{Digest, ErrorKind};

/// Errors of pull and push. Every message names the registry and repository
/// (`target`, as in `registry-1.docker.io/library/busybox`) and what was
/// being done.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{target}: {what}: {source}")]
    Http {
        target: String,
        what: String,
        source: reqwest::Error,
    },
    /// The registry answered with an error status; `errors` are the codes and
    /// messages of its error body, when it sent one.
    #[error("{target}: {what}: the registry answered {status}{}", errors_suffix(.errors))]
    Registry {
        target: String,
        what: String,
        status: u16,
        errors: Vec<(String, String)>,
    },
    #[error("{target}: {what}: authentication required; {hint}")]
    Unauthorized {
        target: String,
        what: String,
        hint: String,
    },
    #[error("{target}: {what}: content hashes to {actual}, expected {expected}")]
    DigestMismatch {
        target: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// A transfer that broke off without an HTTP error (a short body).
    #[error("{target}: {what}: {reason}")]
    Interrupted {
        target: String,
        what: String,
        reason: String,
    },
    /// The registry broke the protocol (a bad header, too much data).
    #[error("{target}: {what}: {reason}")]
    Protocol {
        target: String,
        what: String,
        reason: String,
    },
    #[error("{target}: {0}", target = .1)]
    Manifest(ManifestError, String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Http { .. } | ClientError::Interrupted { .. } => ErrorKind::Unavailable,
            ClientError::Registry { status, .. } => match status {
                401 | 403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 => ErrorKind::Conflict,
                429 | 500.. => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            },
            ClientError::Unauthorized { .. } => ErrorKind::Forbidden,
            ClientError::DigestMismatch { .. } | ClientError::Protocol { .. } => ErrorKind::Invalid,
            ClientError::Manifest(e, _) => e.kind(),
            ClientError::Invalid(_) => ErrorKind::Invalid,
            ClientError::Image(e) => e.kind(),
            ClientError::Store(e) => e.kind(),
        }
    }

    /// Whether trying the same transfer again may succeed: the connection
    /// failed, or the registry said it is overloaded or briefly unwell.
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            ClientError::Http { .. } | ClientError::Interrupted { .. } => true,
            ClientError::Registry { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

fn errors_suffix(errors: &[(String, String)]) -> String {
    if errors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = errors
        .iter()
        .map(|(code, message)| {
            if message.is_empty() {
                code.clone()
            } else {
                format!("{code}: {message}")
            }
        })
        .collect();
    format!(" ({})", parts.join("; "))
}
