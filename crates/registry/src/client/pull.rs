//! `pull`: manifest (through an index to one platform), then config and
//! layers into the content store, then the tag.

use std::sync::Arc;

use bosun_image::manifest::{
    ACCEPTED_MANIFEST_TYPES, MAX_MANIFEST_SIZE, Manifest, descriptor_digest, select_platform,
};
use bosun_image::{BlobWriter, ContentStore, ImageStore};
use bosun_oci::{Digest, ImageRef};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};

use super::{
    ATTEMPTS, Client, ClientError, Outcome, Platform, Progress, Session, for_each_parallel,
};
use crate::body::{Coalesce, spawn_writer};

/// A manifest as fetched: its bytes, digest and declared media type.
struct Fetched {
    bytes: Vec<u8>,
    digest: Digest,
    media_type: Option<String>,
}

impl Client {
    /// Pulls `reference` into `store` and tags it; returns the digest of the
    /// image manifest stored (for a multi-platform image, `platform`'s).
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &ImageRef,
        platform: &Platform,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest, ClientError> {
        let tag_ref = tag_of(reference)?;
        let session =
            Arc::new(self.session(reference.registry(), reference.repository(), "pull")?);
        let wanted = match reference.digest() {
            Some(d) => d.to_string(),
            None => reference.tag().unwrap_or("latest").to_owned(),
        };
        let mut fetched = fetch_manifest(&session, &wanted, reference.digest()).await?;
        let mut manifest = parse(&session, &fetched)?;
        if let Manifest::Index(index) = &manifest {
            let chosen = select_platform(index, &platform.os, &platform.arch)
                .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))?;
            let digest = descriptor_digest(chosen)
                .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))?;
            fetched = fetch_manifest(&session, digest.as_str(), Some(&digest)).await?;
            manifest = parse(&session, &fetched)?;
        }
        let Manifest::Image(image) = manifest else {
            return Err(session.protocol(
                "reading the manifest",
                "an index points at another index".to_owned(),
            ));
        };

        // Blobs of an image not yet tagged must survive a concurrent gc.
        let guard = blocking(store.clone(), |s| s.ingest_guard().map_err(Into::into)).await?;
        let mut blobs = Vec::new();
        for d in std::iter::once(image.config()).chain(image.layers()) {
            let digest = descriptor_digest(d)
                .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))?;
            blobs.push((digest, d.size()));
        }
        let client = self.clone();
        let content = store.content().clone();
        for_each_parallel(blobs, |(digest, size)| {
            let (client, session, content, progress) = (
                client.clone(),
                session.clone(),
                content.clone(),
                progress.clone(),
            );
            async move {
                client
                    .fetch_blob(&session, content, digest, size, progress)
                    .await
            }
        })
        .await?;

        let bytes = fetched.bytes;
        let digest = fetched.digest.clone();
        blocking(store.clone(), move |s| {
            let stored = s.content().put(&bytes)?;
            debug_assert_eq!(stored, digest);
            s.set_tag(&tag_ref, &digest)?;
            Ok(())
        })
        .await?;
        drop(guard);
        Ok(fetched.digest)
    }

    /// Downloads one blob into the content store unless it is there already.
    /// A broken transfer resumes from where it stopped when the registry
    /// honours `Range`, and starts over otherwise.
    async fn fetch_blob(
        &self,
        session: &Session,
        content: ContentStore,
        digest: Digest,
        size: u64,
        progress: Arc<dyn Progress>,
    ) -> Result<(), ClientError> {
        let present = {
            let (c, d) = (content.clone(), digest.clone());
            blocking_raw(move || c.exists(&d).map_err(Into::into)).await?
        };
        if present {
            progress.finish(&digest, &Outcome::Present);
            return Ok(());
        }
        progress.start(&digest, size);
        let what = format!("fetching blob {digest}");
        let mut writer: Option<BlobWriter> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .fetch_attempt(
                    session,
                    &content,
                    &digest,
                    size,
                    &mut writer,
                    &progress,
                    &what,
                )
                .await;
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    progress.retry(&digest, attempt, &e);
                    tokio::time::sleep(self.retry_delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let writer = writer.take().expect("a finished download has its writer");
        let d = digest.clone();
        blocking_raw(move || writer.commit(Some(&d)).map_err(Into::into))
            .await
            .map_err(|e| match e {
                ClientError::Store(bosun_image::StoreError::DigestMismatch {
                    expected,
                    actual,
                }) => ClientError::DigestMismatch {
                    target: session.target().to_owned(),
                    what: what.clone(),
                    expected,
                    actual,
                },
                e => e,
            })?;
        progress.finish(&digest, &Outcome::Transferred);
        Ok(())
    }

    /// One GET of a blob, appending to `writer` (made, or remade when the
    /// registry ignores the range). Leaves the writer in place whatever
    /// happens, with everything received so far.
    #[allow(
        clippy::too_many_arguments,
        reason = "one attempt of fetch_blob's loop"
    )]
    async fn fetch_attempt(
        &self,
        session: &Session,
        content: &ContentStore,
        digest: &Digest,
        size: u64,
        writer: &mut Option<BlobWriter>,
        progress: &Arc<dyn Progress>,
        what: &str,
    ) -> Result<(), ClientError> {
        let have = writer.as_ref().map_or(0, BlobWriter::len);
        if have == size && size > 0 {
            return Ok(());
        }
        let url = session.url(&format!("blobs/{digest}"));
        let response = session
            .send(what, |http| {
                let request = http.get(url.clone());
                if have > 0 {
                    request.header(RANGE, format!("bytes={have}-"))
                } else {
                    request
                }
            })
            .await?;
        let response = session
            .check(
                response,
                what,
                &[StatusCode::OK, StatusCode::PARTIAL_CONTENT],
            )
            .await?;
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {have}-")));
        if !resumed || writer.is_none() {
            if have > 0 {
                // The registry sent the whole blob again: start over.
                progress.start(digest, size);
            }
            let c = content.clone();
            *writer = Some(blocking_raw(move || c.writer().map_err(Into::into)).await?);
        }
        let start = writer.as_ref().map_or(0, BlobWriter::len);
        let (tx, handle) = spawn_writer(writer.take().expect("writer made above"));
        let mut chunks = Coalesce::default();
        let mut received = start;
        let mut response = response;
        let mut failure = None;
        loop {
            match response.chunk().await {
                Ok(Some(data)) => {
                    received += data.len() as u64;
                    progress.advance(digest, data.len() as u64);
                    if received > size {
                        failure = Some(session.protocol(
                            what,
                            format!(
                                "the registry sent more than the {size} bytes the manifest says"
                            ),
                        ));
                        break;
                    }
                    if let Some(chunk) = chunks.push(&data)
                        && tx.send(chunk).await.is_err()
                    {
                        break; // the writer failed; its error is below
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failure = Some(session.http_error(what, e));
                    break;
                }
            }
        }
        // Also after a failure: the next attempt resumes after what arrived.
        if let Some(rest) = chunks.finish() {
            let _ = tx.send(rest).await;
        }
        drop(tx);
        let (w, written) = handle
            .await
            .map_err(|e| ClientError::Invalid(format!("writer task failed: {e}")))?;
        *writer = Some(w);
        written.map_err(|e| {
            ClientError::Invalid(format!(
                "{}: {what}: cannot write to the store: {e}",
                session.target()
            ))
        })?;
        if let Some(e) = failure {
            // Too many bytes is not a transfer hiccup: drop what we have.
            if received > size {
                *writer = None;
            }
            return Err(e);
        }
        if received != size {
            return Err(ClientError::Interrupted {
                target: session.target().to_owned(),
                what: what.to_owned(),
                reason: format!("the blob ended after {received} of {size} bytes"),
            });
        }
        Ok(())
    }
}

/// GETs a manifest, refusing one over the size limit before reading it, and
/// checks it against `expected` when the reference pinned a digest.
async fn fetch_manifest(
    session: &Session,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<Fetched, ClientError> {
    let what = format!("fetching manifest {reference}");
    let url = session.url(&format!("manifests/{reference}"));
    let accept = ACCEPTED_MANIFEST_TYPES.join(", ");
    let response = session
        .send(&what, |http| http.get(url.clone()).header(ACCEPT, &accept))
        .await?;
    let mut response = session.check(response, &what, &[StatusCode::OK]).await?;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_MANIFEST_SIZE as u64)
    {
        return Err(session.protocol(
            &what,
            format!("manifest is larger than the {MAX_MANIFEST_SIZE}-byte limit"),
        ));
    }
    let media_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| session.http_error(&what, e))?
    {
        if bytes.len() + chunk.len() > MAX_MANIFEST_SIZE {
            return Err(session.protocol(
                &what,
                format!("manifest is larger than the {MAX_MANIFEST_SIZE}-byte limit"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let digest = bosun_image::sha256_of(&bytes);
    if let Some(expected) = expected
        && *expected != digest
    {
        return Err(ClientError::DigestMismatch {
            target: session.target().to_owned(),
            what,
            expected: expected.clone(),
            actual: digest,
        });
    }
    Ok(Fetched {
        bytes,
        digest,
        media_type,
    })
}

fn parse(session: &Session, fetched: &Fetched) -> Result<Manifest, ClientError> {
    Manifest::parse(&fetched.bytes, fetched.media_type.as_deref())
        .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))
}

/// The name the pulled image is tagged with: the reference without its
/// digest. The image store tags images by name:tag only.
fn tag_of(reference: &ImageRef) -> Result<ImageRef, ClientError> {
    let Some(tag) = reference.tag() else {
        return Err(ClientError::Invalid(format!(
            "{reference}: pulling by digest alone is not supported (the image store keeps \
             tagged images); name a tag too: NAME:TAG@DIGEST"
        )));
    };
    format!("{}:{tag}", reference.name())
        .parse()
        .map_err(|e| ClientError::Invalid(format!("{reference}: {e}")))
}

/// Runs image-store work (file system, hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: ImageStore,
    f: impl FnOnce(&ImageStore) -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    blocking_raw(move || f(&store)).await
}

pub(super) async fn blocking_raw<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ClientError::Invalid(format!("storage task failed: {e}")))?
}
