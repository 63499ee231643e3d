//! Blobs and uploads: `GET|HEAD|DELETE /v2/<name>/blobs/<digest>`,
//! `POST /v2/<name>/blobs/uploads/` (start, monolithic, mount) and
//! `GET|PATCH|PUT|DELETE /v2/<name>/blobs/uploads/<id>`.

use std::sync::Arc;

use bosun_oci::Digest;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;
use tokio::sync::mpsc;

use super::error::{ApiError, Code};
use super::route::query_get;
use super::{Resp, State, blocking, header, response};
use crate::body::{Body, Coalesce, spawn_writer, stream_blob};
use crate::name::{RepoName, UploadId, parse_digest};

pub(super) async fn get(
    state: &Arc<State>,
    repo: RepoName,
    digest: Digest,
    head: bool,
    req: &Request<Incoming>,
) -> Result<Resp, ApiError> {
    let d = digest.clone();
    let size = blocking(state, move |s| s.blob_size(&repo, &d)).await?;
    let range = match header(req, "range") {
        Some(h) if size > 0 => parse_range(h, size)?,
        _ => None,
    };
    let (status, start, end) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end),
        None => (StatusCode::OK, 0, size.saturating_sub(1)),
    };
    let len = if size == 0 { 0 } else { end + 1 - start };
    let mut b = response(status)
        .header("Content-Type", "application/octet-stream")
        .header("Content-Length", len)
        .header("Docker-Content-Digest", digest.as_str())
        .header("ETag", format!("\"{digest}\""))
        .header("Accept-Ranges", "bytes")
        // Content-addressed: what a digest names never changes.
        .header("Cache-Control", "max-age=31536000");
    if range.is_some() {
        b = b.header("Content-Range", format!("bytes {start}-{end}/{size}"));
    }
    let body = if head || len == 0 {
        Body::Empty
    } else {
        stream_blob(state.storage.content().clone(), digest, start, end, None)
    };
    Ok(b.body(body).expect("valid response"))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` (> 0)
/// bytes. Several ranges are not supported: the whole blob is served, as
/// HTTP allows. A range past the end is a 416.
fn parse_range(h: &str, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            Code::RangeInvalid,
            format!("range {h:?} is not within {size} bytes"),
        )
        .header("Content-Range", format!("bytes */{size}"))
    };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Err(unsatisfiable());
    };
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| unsatisfiable());
    let (start, end) = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => return Err(unsatisfiable()),
        (true, false) => {
            let n = num(b)?.min(size);
            if n == 0 {
                return Err(unsatisfiable());
            }
            (size - n, size - 1)
        }
        (false, true) => (num(a)?, size - 1),
        (false, false) => (num(a)?, num(b)?.min(size - 1)),
    };
    if start > end || start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

pub(super) async fn delete(
    state: &Arc<State>,
    repo: RepoName,
    digest: Digest,
) -> Result<Resp, ApiError> {
    blocking(state, move |s| s.unlink_blob(&repo, &digest)).await?;
    Ok(response(StatusCode::ACCEPTED)
        .header("Content-Length", 0)
        .body(Body::Empty)
        .expect("valid response"))
}

/// `POST …/blobs/uploads/`: a mount (`mount`+`from`), a whole blob in one
/// request (`digest`), or the start of an upload session.
pub(super) async fn start_upload(
    state: &Arc<State>,
    repo: RepoName,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    if let (Some(mount), Some(from)) = (query_get(query, "mount"), query_get(query, "from")) {
        let digest = parse_digest(mount)?;
        let from: RepoName = from.parse()?;
        let (r, d) = (repo.clone(), digest.clone());
        if blocking(state, move |s| s.mount_blob(&r, &from, &d)).await? {
            return Ok(created(&repo, &digest));
        }
        // Not mountable: the spec says to start an ordinary upload instead.
    } else if let Some(digest) = query_get(query, "digest") {
        let digest = parse_digest(digest)?;
        return monolithic(state, repo, digest, req.into_body()).await;
    }
    let r = repo.clone();
    let id = blocking(state, move |s| s.start_upload(&r)).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &repo, &id, 0))
}

/// The whole blob in the POST: streamed into the content store, verified,
/// linked. Nothing is stored if the body is cut short or does not match.
async fn monolithic(
    state: &Arc<State>,
    repo: RepoName,
    digest: Digest,
    body: Incoming,
) -> Result<Resp, ApiError> {
    let writer = blocking(state, |s| Ok(s.content().writer()?)).await?;
    let (tx, handle) = spawn_writer(writer);
    let pumped = pump(body, tx).await;
    let (writer, written) = handle
        .await
        .map_err(|e| ApiError::internal(format!("writer task failed: {e}")))?;
    let written = written.map_err(|e| ApiError::internal(format!("cannot store the blob: {e}")))?;
    pumped.map_err(|e| interrupted(e, written))?;
    let (r, d) = (repo.clone(), digest.clone());
    blocking(state, move |s| {
        writer.commit(Some(&d))?;
        s.link_blob(&r, &d)
    })
    .await?;
    Ok(created(&repo, &digest))
}

pub(super) async fn upload_status(
    state: &Arc<State>,
    repo: RepoName,
    id: UploadId,
) -> Result<Resp, ApiError> {
    let (r, i) = (repo.clone(), id.clone());
    let len = blocking(state, move |s| s.upload_len(&r, &i)).await?;
    Ok(upload_response(StatusCode::NO_CONTENT, &repo, &id, len))
}

/// A chunk (with `Content-Range`, which must start where the upload ends) or
/// the rest of the stream (without). What arrives is kept even when the
/// client goes away, so the upload can be resumed from the status it reports.
pub(super) async fn patch_upload(
    state: &Arc<State>,
    repo: RepoName,
    id: UploadId,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let lock = state.upload_lock(&id);
    let _guard = lock.lock().await;
    let len = append(state, &repo, &id, req).await?;
    Ok(upload_response(StatusCode::ACCEPTED, &repo, &id, len))
}

/// `PUT …?digest=`: an optional last chunk, then verification and commit.
pub(super) async fn finish_upload(
    state: &Arc<State>,
    repo: RepoName,
    id: UploadId,
    query: &[(String, String)],
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let digest = query_get(query, "digest")
        .ok_or_else(|| ApiError::new(Code::DigestInvalid, "the digest parameter is required"))?;
    let digest = parse_digest(digest)?;
    let lock = state.upload_lock(&id);
    let _guard = lock.lock().await;
    append(state, &repo, &id, req).await?;
    let (r, i, d) = (repo.clone(), id.clone(), digest.clone());
    blocking(state, move |s| s.finish_upload(&r, &i, &d)).await?;
    state.forget_upload(&id);
    Ok(created(&repo, &digest))
}

pub(super) async fn cancel_upload(
    state: &Arc<State>,
    repo: RepoName,
    id: UploadId,
) -> Result<Resp, ApiError> {
    let lock = state.upload_lock(&id);
    let _guard = lock.lock().await;
    let i = id.clone();
    blocking(state, move |s| s.cancel_upload(&repo, &i)).await?;
    state.forget_upload(&id);
    Ok(response(StatusCode::NO_CONTENT)
        .body(Body::Empty)
        .expect("valid response"))
}

/// Appends a request body to an upload (the caller holds the upload's lock)
/// and returns the upload's new length.
async fn append(
    state: &Arc<State>,
    repo: &RepoName,
    id: &UploadId,
    req: Request<Incoming>,
) -> Result<u64, ApiError> {
    let range = header(&req, "content-range")
        .map(parse_content_range)
        .transpose()?;
    let declared = header(&req, "content-length").and_then(|v| v.parse::<u64>().ok());
    let (r, i) = (repo.clone(), id.clone());
    let (file, len) = blocking(state, move |s| s.open_upload(&r, &i)).await?;
    if let Some((start, end)) = range {
        if start != len {
            return Err(ApiError::new(
                Code::RangeInvalid,
                format!("chunk starts at {start}, but the upload has {len} bytes"),
            )
            .detail(json!({ "size": len }))
            .header("Location", format!("/v2/{repo}/blobs/uploads/{id}"))
            .header("Range", format!("0-{}", len.saturating_sub(1)))
            .header("Docker-Upload-UUID", id.as_str()));
        }
        // In u128: `0-18446744073709551615` is 2^64 bytes, one more than u64 holds.
        let chunk = u128::from(end) + 1 - u128::from(start);
        if declared.is_some_and(|d| u128::from(d) != chunk) {
            return Err(ApiError::new(
                Code::SizeInvalid,
                format!(
                    "Content-Range {start}-{end} is {chunk} bytes, Content-Length says {}",
                    declared.unwrap_or_default()
                ),
            ));
        }
    }
    if declared == Some(0) {
        return Ok(len);
    }
    let (tx, handle) = spawn_writer(EarlyWriteback::new(file));
    let pumped = pump(req.into_body(), tx).await;
    let (_file, written) = handle
        .await
        .map_err(|e| ApiError::internal(format!("writer task failed: {e}")))?;
    let written =
        written.map_err(|e| ApiError::internal(format!("cannot write upload {id}: {e}")))?;
    pumped.map_err(|e| interrupted(e, len + written))?;
    Ok(len + written)
}

/// Upload data with its writeback started as it arrives: every few MiB the
/// file is synced, on the writer thread while the network keeps filling the
/// channel, so the fsync that makes the finished blob durable (on the
/// client's critical path, in the closing PUT) finds little left to write.
struct EarlyWriteback {
    file: std::fs::File,
    unsynced: usize,
}

impl EarlyWriteback {
    const EVERY: usize = 8 << 20;

    fn new(file: std::fs::File) -> Self {
        Self { file, unsynced: 0 }
    }
}

impl std::io::Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n;
        if self.unsynced >= Self::EVERY {
            self.file.sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// `start-end`, also in the `bytes start-end/total` form some clients send.
fn parse_content_range(h: &str) -> Result<(u64, u64), ApiError> {
    let bad = || {
        ApiError::new(Code::RangeInvalid, format!("invalid Content-Range {h:?}"))
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
    };
    let spec = h.trim();
    let spec = spec
        .strip_prefix("bytes")
        .map(str::trim_start)
        .unwrap_or(spec);
    let spec = spec.split('/').next().unwrap_or(spec);
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b.trim().parse().map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    Ok((start, end))
}

/// Why moving a request body stopped early.
#[derive(Debug)]
pub(super) enum PumpError {
    /// The client's stream failed (it went away, or sent less than it said).
    Client(hyper::Error),
    /// The writer stopped; its own error says why.
    Writer,
}

/// Feeds a request body to a writer thread in large chunks. Whatever arrived
/// before an error is handed over too.
pub(super) async fn pump(mut body: Incoming, tx: mpsc::Sender<Bytes>) -> Result<(), PumpError> {
    let mut chunks = Coalesce::default();
    let result = loop {
        match body.frame().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(PumpError::Client(e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data()
                    && let Some(chunk) = chunks.push(&data)
                    && tx.send(chunk).await.is_err()
                {
                    return Err(PumpError::Writer);
                }
            }
        }
    };
    if let Some(rest) = chunks.finish()
        && tx.send(rest).await.is_err()
    {
        return Err(PumpError::Writer);
    }
    result
}

fn interrupted(e: PumpError, len: u64) -> ApiError {
    match e {
        PumpError::Client(e) => ApiError::new(
            Code::BlobUploadInvalid,
            format!("upload interrupted at {len} bytes: {e}"),
        ),
        PumpError::Writer => ApiError::internal("the upload writer stopped"),
    }
}

fn created(repo: &RepoName, digest: &Digest) -> Resp {
    response(StatusCode::CREATED)
        .header("Location", format!("/v2/{repo}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest.as_str())
        .header("Content-Length", 0)
        .body(Body::Empty)
        .expect("valid response")
}

/// The headers of every upload response: where to continue, and how much
/// the server has (`0-0` when empty, as docker-registry says it).
fn upload_response(status: StatusCode, repo: &RepoName, id: &UploadId, len: u64) -> Resp {
    response(status)
        .header("Location", format!("/v2/{repo}/blobs/uploads/{id}"))
        .header("Range", format!("0-{}", len.saturating_sub(1)))
        .header("Docker-Upload-UUID", id.as_str())
        .header("Blob-Upload-Session-ID", id.as_str())
        .header("Content-Length", 0)
        .body(Body::Empty)
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range("bytes=50-500", 100).unwrap(), Some((50, 99)));
        assert_eq!(parse_range("bytes=0-1,5-6", 100).unwrap(), None);
        assert_eq!(parse_range("items=0-1", 100).unwrap(), None);
        for bad in [
            "bytes=100-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=x-1",
            "bytes=-",
        ] {
            assert!(parse_range(bad, 100).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99").unwrap(), (0, 99));
        assert_eq!(
            parse_content_range("bytes 100-199/1000").unwrap(),
            (100, 199)
        );
        assert!(parse_content_range("9-1").is_err());
        assert!(parse_content_range("nonsense").is_err());
    }
}
