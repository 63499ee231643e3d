//! `push`: each blob the registry lacks (asked with HEAD) is mounted from a
//! repository of the same registry that has it, or uploaded (POST, then one
//! streamed PUT); then the manifest, byte for byte.

use std::sync::Arc;

use bosun_image::manifest::{Manifest, OCI_MANIFEST, descriptor_digest};
use bosun_image::{ContentStore, ImageStore};
use bosun_oci::{Digest, ImageRef};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use super::pull::blocking_raw;
use super::{ATTEMPTS, Client, ClientError, Outcome, Progress, Session, for_each_parallel};
use crate::body::{CHUNK, stream_blob};

impl Client {
    /// Pushes the image `source` (a name or id in `store`) to `dest`;
    /// returns the manifest digest, which is the same on both sides.
    pub async fn push(
        &self,
        store: &ImageStore,
        source: &str,
        dest: &ImageRef,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest, ClientError> {
        let reference = match (dest.tag(), dest.digest()) {
            (Some(tag), _) => tag.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        let (src, st) = (source.to_owned(), store.clone());
        let (registry, repo) = (dest.registry().to_owned(), dest.repository().to_owned());
        let (digest, bytes, mount_from) = blocking_raw(move || {
            let digest = st.resolve(&src)?;
            let bytes = st.content().get(&digest)?;
            // Another repository of the same registry that this image was
            // pulled from (or pushed to under another name) holds its blobs:
            // they can be mounted rather than sent again.
            let mut from: Vec<String> = st
                .tags()?
                .into_iter()
                .filter(|(r, m)| *m == digest && r.registry() == registry && r.repository() != repo)
                .map(|(r, _)| r.repository().to_owned())
                .collect();
            from.sort();
            from.dedup();
            Ok((digest, bytes, from))
        })
        .await?;

        let mut session = self.session(dest.registry(), dest.repository(), "pull,push")?;
        for from in &mount_from {
            session.add_pull_scope(from);
        }
        let session = Arc::new(session);
        let manifest = Manifest::parse(&bytes, None)
            .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))?;
        let Manifest::Image(image) = &manifest else {
            return Err(ClientError::Invalid(format!(
                "{source}: the image store holds image manifests only, not indexes"
            )));
        };
        let media_type = image
            .media_type()
            .as_ref()
            .map_or(OCI_MANIFEST.to_owned(), |t| t.to_string());
        let mut blobs = Vec::new();
        for d in std::iter::once(image.config()).chain(image.layers()) {
            let digest = descriptor_digest(d)
                .map_err(|e| ClientError::Manifest(e, session.target().to_owned()))?;
            blobs.push((digest, d.size()));
        }

        let client = self.clone();
        let content = store.content().clone();
        let mount_from = Arc::new(mount_from);
        for_each_parallel(blobs, |(digest, size)| {
            let (client, session, content, progress, from) = (
                client.clone(),
                session.clone(),
                content.clone(),
                progress.clone(),
                mount_from.clone(),
            );
            async move {
                client
                    .push_blob(&session, content, digest, size, &from, progress)
                    .await
            }
        })
        .await?;

        let what = format!("pushing manifest {reference}");
        let url = session.url(&format!("manifests/{reference}"));
        let body = Bytes::from(bytes);
        let response = session
            .send(&what, |http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, &media_type)
                    .body(body.clone())
            })
            .await?;
        let response = session
            .check(response, &what, &[StatusCode::CREATED, StatusCode::OK])
            .await?;
        if let Some(theirs) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok())
            && theirs != digest
        {
            return Err(ClientError::DigestMismatch {
                target: session.target().to_owned(),
                what,
                expected: digest,
                actual: theirs,
            });
        }
        Ok(digest)
    }

    async fn push_blob(
        &self,
        session: &Session,
        content: ContentStore,
        digest: Digest,
        size: u64,
        mount_from: &[String],
        progress: Arc<dyn Progress>,
    ) -> Result<(), ClientError> {
        let what = format!("checking blob {digest}");
        let url = session.url(&format!("blobs/{digest}"));
        let response = session.send(&what, |http| http.head(url.clone())).await?;
        match response.status() {
            StatusCode::OK => {
                progress.finish(&digest, &Outcome::Present);
                return Ok(());
            }
            StatusCode::NOT_FOUND => {}
            _ => {
                session
                    .check(response, &what, &[StatusCode::OK, StatusCode::NOT_FOUND])
                    .await?;
            }
        }
        let mut location = None;
        // One source is enough: a refused mount opens an upload, which is used.
        if let Some(from) = mount_from.first() {
            let what = format!("mounting blob {digest} from {from}");
            let mut url = session.url("blobs/uploads/");
            url.query_pairs_mut()
                .append_pair("mount", digest.as_str())
                .append_pair("from", from);
            let response = session.send(&what, |http| http.post(url.clone())).await?;
            let response = session
                .check(
                    response,
                    &what,
                    &[StatusCode::CREATED, StatusCode::ACCEPTED],
                )
                .await?;
            if response.status() == StatusCode::CREATED {
                progress.finish(&digest, &Outcome::Mounted(from.clone()));
                return Ok(());
            }
            location = Some(upload_location(session, &response, &what)?);
        }

        progress.start(&digest, size);
        let what = format!("uploading blob {digest}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .upload_attempt(
                    session,
                    &content,
                    &digest,
                    size,
                    location.take(),
                    &progress,
                    &what,
                )
                .await;
            match result {
                Ok(()) => break,
                Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                    progress.retry(&digest, attempt, &e);
                    progress.start(&digest, size);
                    tokio::time::sleep(self.retry_delay(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        progress.finish(&digest, &Outcome::Transferred);
        Ok(())
    }

    /// POST for an upload (unless one is open already), then the whole blob
    /// in one PUT: streamed from the store when large, in memory when small.
    #[allow(clippy::too_many_arguments, reason = "one attempt of push_blob's loop")]
    async fn upload_attempt(
        &self,
        session: &Session,
        content: &ContentStore,
        digest: &Digest,
        size: u64,
        location: Option<reqwest::Url>,
        progress: &Arc<dyn Progress>,
        what: &str,
    ) -> Result<(), ClientError> {
        let mut url = match location {
            Some(l) => l,
            None => {
                let start = session.url("blobs/uploads/");
                let response = session.send(what, |http| http.post(start.clone())).await?;
                let response = session
                    .check(response, what, &[StatusCode::ACCEPTED])
                    .await?;
                upload_location(session, &response, what)?
            }
        };
        url.query_pairs_mut().append_pair("digest", digest.as_str());
        let small = if size <= CHUNK as u64 {
            let (c, d) = (content.clone(), digest.clone());
            Some(Bytes::from(
                blocking_raw(move || c.get(&d).map_err(Into::into)).await?,
            ))
        } else {
            None
        };
        let response = session
            .send(what, |http| {
                let request = http
                    .put(url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size);
                match &small {
                    Some(bytes) => request.body(bytes.clone()),
                    None => {
                        let (progress, d) = (progress.clone(), digest.clone());
                        let body = stream_blob(
                            content.clone(),
                            digest.clone(),
                            0,
                            size - 1,
                            Some(Box::new(move |n| progress.advance(&d, n))),
                        );
                        request.body(reqwest::Body::wrap(body))
                    }
                }
            })
            .await?;
        if small.is_some() {
            progress.advance(digest, size);
        }
        session
            .check(response, what, &[StatusCode::CREATED])
            .await?;
        Ok(())
    }
}

fn upload_location(
    session: &Session,
    response: &reqwest::Response,
    what: &str,
) -> Result<reqwest::Url, ClientError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| session.protocol(what, "the upload has no Location".to_owned()))?;
    session.resolve(location, what)
}
