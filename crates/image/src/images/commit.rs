//! `docker commit`: a container's writable layer (an overlay upper directory)
//! on top of its image, stored as a new image.

use std::path::Path;

use bosun_oci::{Digest, ImageRef};
use serde_json::{Value, json};

use super::descriptor_digest;
use super::{ImageError, ImageStore};
use crate::hash::{Hasher, HashingWriter};
use crate::snapshot::IdMap;

/// What the new image gets besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// Fields of the image config's `config` object (OCI casing: `Cmd`,
    /// `Entrypoint`, `Env`, …) that replace the base image's.
    pub config: serde_json::Map<String, Value>,
    pub author: String,
    pub comment: String,
    /// The history entry's `created_by`.
    pub created_by: String,
    pub tag: Option<ImageRef>,
}

/// The committed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub manifest: Digest,
    /// The config digest (Docker's image id).
    pub id: Digest,
}

impl ImageStore {
    /// Store `upper` (overlay format: whiteouts as 0/0 devices) as a layer
    /// over the image whose manifest is `base`, and the new image.
    pub fn commit_upper(
        &self,
        base: &Digest,
        upper: &Path,
        opts: &CommitOptions,
    ) -> Result<Committed, ImageError> {
        self.commit_upper_with(base, upper, opts, None)
    }

    /// [`Self::commit_upper`] of a container that ran in a user namespace:
    /// the layer gets the container's ids, not the host's its upper holds.
    pub fn commit_upper_unmapped(
        &self,
        base: &Digest,
        upper: &Path,
        opts: &CommitOptions,
        map: &IdMap,
    ) -> Result<Committed, ImageError> {
        self.commit_upper_with(base, upper, opts, Some(map))
    }

    fn commit_upper_with(
        &self,
        base: &Digest,
        upper: &Path,
        opts: &CommitOptions,
        ids: Option<&IdMap>,
    ) -> Result<Committed, ImageError> {
        let _guard = self.ingest_guard()?;
        let manifest = self.manifest(base)?;
        let config_digest = descriptor_digest(manifest.config().digest())?;
        let mut config: Value = serde_json::from_slice(&self.content.get(&config_digest)?)
            .map_err(|e| ImageError::BadBlob {
                what: "image config",
                digest: config_digest.clone(),
                reason: e.to_string(),
            })?;

        let blob = self.content.writer()?;
        let gz = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
        let mut tee = HashingWriter {
            inner: gz,
            hasher: Hasher::default(),
        };
        match ids {
            Some(map) => crate::snapshot::diff_unmapped(upper, &mut tee, map),
            None => crate::snapshot::diff(upper, &mut tee),
        }
        .map_err(|e| ImageError::io("diff", upper, std::io::Error::other(e.to_string())))?;
        let diff_id = tee.hasher.finish();
        let blob = tee
            .inner
            .finish()
            .map_err(|e| ImageError::io("write the layer of", upper, e))?;
        let (layer, size) = blob.commit(None)?;

        let now = super::time::now_rfc3339();
        config["created"] = json!(now);
        if !opts.author.is_empty() {
            config["author"] = json!(opts.author);
        }
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(diff_id.to_string())),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [diff_id.to_string()]}),
        }
        let mut entry = json!({"created": now, "created_by": opts.created_by});
        if !opts.comment.is_empty() {
            entry["comment"] = json!(opts.comment);
        }
        if !opts.author.is_empty() {
            entry["author"] = json!(opts.author);
        }
        match config["history"].as_array_mut() {
            Some(h) => h.push(entry),
            None => config["history"] = json!([entry]),
        }
        if !config["config"].is_object() {
            config["config"] = json!({});
        }
        for (k, v) in &opts.config {
            config["config"][k] = v.clone();
        }
        let config_bytes = serde_json::to_vec(&config).expect("JSON values serialise");
        oci_spec::image::ImageConfiguration::from_reader(&config_bytes[..]).map_err(|e| {
            ImageError::Conflict(format!("the committed image config is not valid: {e}"))
        })?;
        let id = self.content.put(&config_bytes)?;

        let mut layers: Vec<Value> = manifest
            .layers()
            .iter()
            .map(|l| {
                json!({"mediaType": l.media_type().to_string(), "digest": l.digest().to_string(), "size": l.size()})
            })
            .collect();
        layers.push(json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.to_string(),
            "size": size,
        }));
        let new_manifest = json!({
            "schemaVersion": 2,
            "mediaType": crate::manifest::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": id.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let manifest_bytes = serde_json::to_vec(&new_manifest).expect("JSON values serialise");
        let digest = self.content.put(&manifest_bytes)?;
        if let Some(tag) = &opts.tag {
            self.set_tag(tag, &digest)?;
        }
        Ok(Committed {
            manifest: digest,
            id,
        })
    }
}
