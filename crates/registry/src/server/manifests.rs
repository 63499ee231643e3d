//! `GET|HEAD|PUT|DELETE /v2/<name>/manifests/<reference>`.

use std::sync::Arc;

use bosun_image::manifest::MAX_MANIFEST_SIZE;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::error::{ApiError, Code};
use super::{Resp, State, blocking, header, response};
use crate::body::Body;
use crate::name::{Reference, RepoName};

pub(super) async fn get(
    state: &Arc<State>,
    repo: RepoName,
    reference: Reference,
    head: bool,
) -> Result<Resp, ApiError> {
    let m = blocking(state, move |s| s.manifest(&repo, &reference)).await?;
    let b = response(StatusCode::OK)
        .header("Content-Type", &m.media_type)
        .header("Content-Length", m.bytes.len())
        .header("Docker-Content-Digest", m.digest.as_str())
        .header("ETag", format!("\"{}\"", m.digest));
    let body = if head {
        Body::Empty
    } else {
        Body::full(m.bytes)
    };
    Ok(b.body(body).expect("valid response"))
}

/// Stores a manifest exactly as sent (so its digest is what the client
/// computed), after the checks [`crate::Storage::put_manifest`] makes.
pub(super) async fn put(
    state: &Arc<State>,
    repo: RepoName,
    reference: Reference,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let content_type = header(&req, "content-type").map(str::to_owned);
    let declared = header(&req, "content-length").and_then(|v| v.parse::<u64>().ok());
    let bytes = read_limited(req.into_body(), declared, MAX_MANIFEST_SIZE).await?;
    let r = repo.clone();
    let put = blocking(state, move |s| {
        s.put_manifest(&r, &reference, &bytes, content_type.as_deref())
    })
    .await?;
    let mut b = response(StatusCode::CREATED)
        .header("Location", format!("/v2/{repo}/manifests/{}", put.digest))
        .header("Docker-Content-Digest", put.digest.as_str())
        .header("Content-Length", 0);
    if let Some(subject) = &put.subject {
        b = b.header("OCI-Subject", subject.as_str());
    }
    Ok(b.body(Body::Empty).expect("valid response"))
}

pub(super) async fn delete(
    state: &Arc<State>,
    repo: RepoName,
    reference: Reference,
) -> Result<Resp, ApiError> {
    blocking(state, move |s| s.delete_manifest(&repo, &reference)).await?;
    Ok(response(StatusCode::ACCEPTED)
        .header("Content-Length", 0)
        .body(Body::Empty)
        .expect("valid response"))
}

/// Reads a whole body of at most `limit` bytes. A larger one is refused with
/// 413, after reading (and dropping) the rest of it when that is not much
/// more: a client still sending when the answer comes would see a broken
/// connection instead of the reason.
async fn read_limited(
    mut body: Incoming,
    declared: Option<u64>,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let drain_limit = 4 * limit as u64;
    let too_large = |size: String| {
        ApiError::new(
            Code::ManifestInvalid,
            format!("manifest is {size} bytes; the limit is {limit}"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if let Some(n) = declared
        && n > drain_limit
    {
        return Err(too_large(n.to_string()));
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(limit as u64) as usize);
    let mut seen = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                Code::ManifestInvalid,
                format!("manifest upload interrupted: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            seen += data.len() as u64;
            if seen > drain_limit {
                break;
            }
            if seen <= limit as u64 {
                out.extend_from_slice(&data);
            }
        }
    }
    if seen > limit as u64 {
        return Err(too_large(match declared {
            Some(n) => n.to_string(),
            None => format!("more than {limit}"),
        }));
    }
    Ok(out)
}
