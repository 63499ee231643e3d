//! The distribution spec's error responses:
//! `{"errors":[{"code":…,"message":…,"detail":…}]}` with the status each
//! code goes with.

use bosun_oci::ErrorKind;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::name::NameError;
use crate::storage::StorageError;

/// The spec's error codes (plus `RANGE_INVALID`, which distribution uses for
/// 416, and `UNKNOWN` for failures of the server itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    RangeInvalid,
    Unknown,
}

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::RangeInvalid => "RANGE_INVALID",
            Code::Unknown => "UNKNOWN",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown
            | Code::BlobUploadUnknown
            | Code::ManifestUnknown
            | Code::NameUnknown => StatusCode::NOT_FOUND,
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// One error response.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    /// `(code, message, detail)`; several for a manifest missing several blobs.
    pub(crate) errors: Vec<(Code, String, Value)>,
    /// Extra response headers (`Range` on a 416, `WWW-Authenticate` on a 401).
    pub(crate) headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
            errors: vec![(code, message.into(), Value::Null)],
            headers: Vec::new(),
        }
    }

    pub(crate) fn detail(mut self, detail: Value) -> Self {
        if let Some(first) = self.errors.first_mut() {
            first.2 = detail;
        }
        self
    }

    pub(crate) fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        let errors: Vec<Value> = self
            .errors
            .iter()
            .map(|(code, message, detail)| {
                let mut e = json!({"code": code.as_str(), "message": message});
                if !detail.is_null() {
                    e["detail"] = detail.clone();
                }
                e
            })
            .collect();
        serde_json::to_vec(&json!({ "errors": errors })).expect("errors serialise")
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::Unknown, message)
    }
}

impl From<NameError> for ApiError {
    fn from(e: NameError) -> Self {
        match e {
            NameError::Repository(_) | NameError::TooLong(_) => {
                ApiError::new(Code::NameInvalid, e.to_string())
            }
            NameError::Tag(_) => ApiError::new(Code::ManifestInvalid, e.to_string()),
            NameError::Digest { .. } => ApiError::new(Code::DigestInvalid, e.to_string()),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let message = e.to_string();
        match e {
            StorageError::BlobUnknown { digest, .. } => {
                ApiError::new(Code::BlobUnknown, message).detail(json!({ "digest": digest }))
            }
            StorageError::ManifestUnknown { .. } => ApiError::new(Code::ManifestUnknown, message),
            StorageError::NameUnknown(name) => {
                ApiError::new(Code::NameUnknown, message).detail(json!({ "name": name.as_str() }))
            }
            StorageError::UploadUnknown { .. } => ApiError::new(Code::BlobUploadUnknown, message),
            StorageError::ManifestInvalid(_) => ApiError::new(Code::ManifestInvalid, message),
            StorageError::ManifestBlobUnknown { missing, .. } => ApiError {
                status: Code::ManifestBlobUnknown.status(),
                errors: missing
                    .into_iter()
                    .map(|d| {
                        let text =
                            format!("manifest references blob {d}, unknown to the repository");
                        (Code::ManifestBlobUnknown, text, json!({ "digest": d }))
                    })
                    .collect(),
                headers: Vec::new(),
            },
            StorageError::DigestInvalid { expected, actual } => {
                ApiError::new(Code::DigestInvalid, message)
                    .detail(json!({ "expected": expected, "actual": actual }))
            }
            other => match other.kind() {
                ErrorKind::Invalid => ApiError::new(Code::DigestInvalid, message),
                ErrorKind::NotFound => ApiError::new(Code::BlobUnknown, message),
                ErrorKind::Forbidden => ApiError::new(Code::Denied, message),
                _ => ApiError::internal(message),
            },
        }
    }
}
