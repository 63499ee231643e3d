//! Images over the content store: tags, manifests, configs, import and unpack.
//!
//! Layout under the data directory: `content/` is a [`ContentStore`];
//! `images/refs.json` maps fully qualified tags to manifest digests;
//! `images/lock` is `flock`ed by every writer of `refs.json` (and by `remove`
//! while it sweeps blobs). Readers take no lock: `refs.json` is replaced by
//! rename, so they see the old map or the new one, never half of one.

mod archive;
mod commit;
mod error;
mod import;
mod time;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bosun_oci::{Digest, ImageRef};
use oci_spec::image::{ImageConfiguration, ImageManifest};

pub use archive::{LoadSource, SaveDest};
pub use commit::{CommitOptions, Committed};
pub use error::ImageError;
pub(crate) use time::now_rfc3339 as now;

use crate::hash::Hasher;
use crate::{ApplyStats, Compression, ContentStore, StoreError, Whiteouts, apply_layer_with};
use import::tag_name;

/// Where `--data-dir` points when not given.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/bosun";

type Refs = BTreeMap<String, Digest>;

/// The images of one data directory. Cheap to open; several instances, in one
/// process or many, may use the same directory at once.
#[derive(Debug, Clone)]
pub struct ImageStore {
    content: ContentStore,
    // `<data-dir>/images`
    images: PathBuf,
}

/// One tag, as `image ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub name: ImageRef,
    /// The manifest digest.
    pub digest: Digest,
    /// The config digest, which is what Docker calls the image id.
    pub id: Digest,
    /// Config plus (compressed) layers, in bytes.
    pub size: u64,
    pub created: Option<String>,
}

/// Everything `image inspect` shows.
#[derive(Debug, Clone)]
pub struct ImageDetails {
    pub digest: Digest,
    pub id: Digest,
    pub tags: Vec<ImageRef>,
    pub size: u64,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

/// What `remove` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    pub untagged: Vec<ImageRef>,
    pub deleted: Vec<Digest>,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, ImageError> {
        let content = ContentStore::new(&data_dir.join("content"))?;
        let images = data_dir.join("images");
        fs::create_dir_all(&images).map_err(|e| ImageError::io("create", &images, e))?;
        Ok(Self { content, images })
    }

    /// The data directory this store lives in; the builder and snapshotter
    /// keep their own state beside it.
    pub fn data_dir(&self) -> &Path {
        self.images.parent().unwrap_or(&self.images)
    }

    /// The blobs, for callers that move them around (pull, push, save).
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Every tag, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let refs = self.read_refs()?;
        let mut out = Vec::with_capacity(refs.len());
        for (name, digest) in refs {
            let Ok(name) = name.parse::<ImageRef>() else {
                continue;
            };
            let manifest = self.manifest(&digest)?;
            let config = self.config(&manifest)?;
            out.push(ImageSummary {
                name,
                id: descriptor_digest(manifest.config().digest())?,
                size: image_size(&manifest),
                created: config.created().clone(),
                digest,
            });
        }
        Ok(out)
    }

    /// The manifest digest of a tag (`busybox` means `docker.io/library/busybox:latest`),
    /// a `name@digest`, or a unique prefix of an image id or manifest digest.
    pub fn resolve(&self, name_or_id: &str) -> Result<Digest, ImageError> {
        let refs = self.read_refs()?;
        if let Ok(r) = name_or_id.parse::<ImageRef>() {
            if let Some(d) = r.digest() {
                if refs.values().any(|v| v == d) {
                    return Ok(d.clone());
                }
            } else if let Some(d) = refs.get(&r.to_string()) {
                return Ok(d.clone());
            }
        }
        let hex = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ImageError::NotFound(name_or_id.to_owned()));
        }
        let mut found = BTreeSet::new();
        for manifest_digest in refs.values().collect::<BTreeSet<_>>() {
            if manifest_digest.hex().starts_with(hex) {
                found.insert(manifest_digest.clone());
                continue;
            }
            let manifest = self.manifest(manifest_digest)?;
            if manifest.config().digest().digest().starts_with(hex) {
                found.insert(manifest_digest.clone());
            }
        }
        let mut found = found.into_iter();
        match (found.next(), found.next()) {
            (Some(d), None) => Ok(d),
            (None, _) => Err(ImageError::NotFound(name_or_id.to_owned())),
            (Some(_), Some(_)) => Err(ImageError::Ambiguous(name_or_id.to_owned())),
        }
    }

    pub fn inspect(&self, name_or_id: &str) -> Result<ImageDetails, ImageError> {
        let digest = self.resolve(name_or_id)?;
        let manifest = self.manifest(&digest)?;
        let config = self.config(&manifest)?;
        let tags = self
            .read_refs()?
            .into_iter()
            .filter(|(_, d)| *d == digest)
            .filter_map(|(n, _)| n.parse().ok())
            .collect();
        Ok(ImageDetails {
            id: descriptor_digest(manifest.config().digest())?,
            size: image_size(&manifest),
            tags,
            manifest,
            config,
            digest,
        })
    }

    /// Points `dst` at the image `src` names; returns the manifest digest.
    pub fn tag(&self, src: &str, dst: &ImageRef) -> Result<Digest, ImageError> {
        let digest = self.resolve(src)?;
        self.tag_manifest(&digest, dst, src)?;
        Ok(digest)
    }

    /// Points `dst` at the image manifest `manifest`, whose blobs someone
    /// (a pull, a load, a build) has put in [`Self::content`] while holding an
    /// [`IngestGuard`].
    pub fn set_tag(&self, dst: &ImageRef, manifest: &Digest) -> Result<(), ImageError> {
        self.tag_manifest(manifest, dst, manifest.as_str())
    }

    fn tag_manifest(&self, digest: &Digest, dst: &ImageRef, src: &str) -> Result<(), ImageError> {
        let name = tag_name(dst)?;
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        // `src` may have been removed between resolve and lock, or a sweep may have
        // stopped half-way (a crash): tag only an image whose every blob is there.
        if !self.content.exists(digest)? {
            return Err(ImageError::NotFound(src.to_owned()));
        }
        for blob in blobs_of(&self.manifest(digest)?)? {
            if !self.content.exists(&blob)? {
                return Err(ImageError::NotFound(format!(
                    "{src} (blob {blob} is missing)"
                )));
            }
        }
        refs.insert(name, digest.clone());
        self.write_refs(&refs)
    }

    /// Announces that this process is putting blobs into the store that no tag
    /// reaches yet. Sweeps (`remove`, `gc`) leave blobs alone while any guard
    /// is held, so a pull or build is never robbed of a layer it shares with
    /// an image being removed. Hold it until the final [`Self::set_tag`].
    pub fn ingest_guard(&self) -> Result<IngestGuard, ImageError> {
        let file = self.open_lock_file("ingest.lock")?;
        let path = self.images.join("ingest.lock");
        file.lock_shared()
            .map_err(|e| ImageError::io("lock", &path, e))?;
        Ok(IngestGuard { _file: file })
    }

    /// The image manifest stored under `digest`.
    pub fn image_manifest(&self, digest: &Digest) -> Result<ImageManifest, ImageError> {
        self.manifest(digest)
    }

    /// Every tag with the manifest digest it points at.
    pub fn tags(&self) -> Result<Vec<(ImageRef, Digest)>, ImageError> {
        Ok(self
            .read_refs()?
            .into_iter()
            .filter_map(|(n, d)| n.parse().ok().map(|n| (n, d)))
            .collect())
    }

    /// Deletes every blob no tag reaches (and stale temp files), unless a
    /// pull, load or build is under way, in which case it waits for it.
    /// Returns the deleted digests.
    pub fn gc(&self) -> Result<Vec<Digest>, ImageError> {
        let _exclusive = self.exclusive_ingest()?;
        self.gc_locked()
    }

    /// Waits until no pull, load or build holds an [`IngestGuard`], then keeps
    /// new ones out until dropped.
    pub(crate) fn exclusive_ingest(&self) -> Result<File, ImageError> {
        let ingest = self.open_lock_file("ingest.lock")?;
        ingest
            .lock()
            .map_err(|e| ImageError::io("lock", self.images.join("ingest.lock"), e))?;
        Ok(ingest)
    }

    /// [`Self::gc`] for a caller holding [`Self::exclusive_ingest`].
    pub(crate) fn gc_locked(&self) -> Result<Vec<Digest>, ImageError> {
        let _lock = self.lock()?;
        let refs = self.read_refs()?;
        let mut live = BTreeSet::new();
        for d in refs.values() {
            live.insert(d.clone());
            live.extend(blobs_of(&self.manifest(d)?)?);
        }
        let mut deleted = Vec::new();
        for d in self.content.list()? {
            if live.contains(&d) {
                continue;
            }
            match self.content.delete(&d) {
                Ok(()) => deleted.push(d),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // No ingest is running (the caller holds its lock exclusively): any
        // temp file left is from a writer that died.
        self.content.remove_temp_files(std::time::Duration::ZERO)?;
        Ok(deleted)
    }

    /// Untags `name` (or, given an id, the one tag that points at it). When no
    /// tag is left on the manifest, deletes the manifest, its config and the
    /// layers no remaining image uses.
    pub fn remove(&self, name_or_id: &str) -> Result<Removed, ImageError> {
        let _lock = self.lock()?;
        let mut refs = self.read_refs()?;
        let key = match name_or_id.parse::<ImageRef>() {
            Ok(r) if r.digest().is_none() && refs.contains_key(&r.to_string()) => r.to_string(),
            _ => {
                let digest = self.resolve(name_or_id)?;
                let mut tags = refs.iter().filter(|(_, d)| **d == digest).map(|(n, _)| n);
                match (tags.next(), tags.next()) {
                    (Some(n), None) => n.clone(),
                    (None, _) => return Err(ImageError::NotFound(name_or_id.to_owned())),
                    (Some(_), Some(_)) => {
                        return Err(ImageError::Conflict(format!(
                            "image {name_or_id} has several tags; remove them by name"
                        )));
                    }
                }
            }
        };
        let Some(digest) = refs.remove(&key) else {
            return Err(ImageError::NotFound(name_or_id.to_owned()));
        };
        self.write_refs(&refs)?;
        let mut removed = Removed {
            untagged: key.parse().into_iter().collect(),
            deleted: Vec::new(),
        };
        if refs.values().any(|d| *d == digest) {
            return Ok(removed);
        }
        // A pull or build in progress may be about to tag blobs this image
        // shares with it; then leave the sweep to a later `gc`.
        let ingest = self.open_lock_file("ingest.lock")?;
        if ingest.try_lock().is_err() {
            return Ok(removed);
        }
        // Mark: every blob a remaining tag reaches. Sweep: this image's others.
        // Refs are written first, so a crash here leaves unreferenced blobs,
        // never a tag without its blobs.
        let mut live = BTreeSet::new();
        for d in refs.values().collect::<BTreeSet<_>>() {
            live.insert(d.clone());
            // The untag is done; with an unreadable manifest we cannot know
            // what it keeps alive, so we delete nothing rather than fail.
            match self.manifest(d).and_then(|m| blobs_of(&m)) {
                Ok(blobs) => live.extend(blobs),
                Err(_) => return Ok(removed),
            }
        }
        let mut candidates = vec![digest.clone()];
        if let Ok(manifest) = self.manifest(&digest) {
            candidates.extend(blobs_of(&manifest)?);
        }
        for d in candidates {
            if live.contains(&d) {
                continue;
            }
            match self.content.delete(&d) {
                Ok(()) => removed.deleted.push(d),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// Applies the image's layers in order into `dest` (created if missing),
    /// checking each layer's uncompressed digest against the config's diff_id.
    pub fn unpack(&self, name_or_id: &str, dest: &Path) -> Result<(), ImageError> {
        let digest = self.resolve(name_or_id)?;
        let layers = self.layers(&digest)?;
        fs::create_dir_all(dest).map_err(|e| ImageError::io("create", dest, e))?;
        for layer in &layers {
            self.apply_verified(layer, dest, Whiteouts::Delete)?;
        }
        Ok(())
    }

    /// The layers of the image manifest `manifest`, bottom first, each with
    /// the diff_id its config gives it.
    pub(crate) fn layers(&self, manifest: &Digest) -> Result<Vec<ImageLayer>, ImageError> {
        let manifest = self.manifest(manifest)?;
        let config = self.config(&manifest)?;
        let config_digest = descriptor_digest(manifest.config().digest())?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::BadBlob {
                what: "image config",
                digest: config_digest,
                reason: format!(
                    "{} diff_ids for {} layers",
                    diff_ids.len(),
                    manifest.layers().len()
                ),
            });
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob = descriptor_digest(layer.digest())?;
            let diff_id = diff_id.parse().map_err(|e| ImageError::BadBlob {
                what: "image config",
                digest: config_digest.clone(),
                reason: format!("diff_id {diff_id:?}: {e}"),
            })?;
            let compression =
                Compression::from_media_type(layer.media_type()).map_err(|source| {
                    ImageError::Layer {
                        layer: blob.clone(),
                        source,
                    }
                })?;
            layers.push(ImageLayer {
                blob,
                compression,
                diff_id,
            });
        }
        Ok(layers)
    }

    /// Applies `layer` to `dest`, failing unless its uncompressed digest is
    /// its diff_id. On failure `dest` holds part of the layer: the caller
    /// discards it.
    pub(crate) fn apply_verified(
        &self,
        layer: &ImageLayer,
        dest: &Path,
        whiteouts: Whiteouts,
    ) -> Result<ApplyStats, ImageError> {
        let (stats, actual) = self
            .apply_one(&layer.blob, layer.compression, dest, whiteouts)
            .map_err(|e| self.blame_corruption(&layer.blob, e))?;
        if actual != layer.diff_id {
            return Err(ImageError::DiffIdMismatch {
                layer: layer.blob.clone(),
                expected: layer.diff_id.clone(),
                actual,
            });
        }
        Ok(stats)
    }

    /// Applies one layer blob and returns the digest of its uncompressed tar.
    fn apply_one(
        &self,
        blob: &Digest,
        compression: Compression,
        dest: &Path,
        whiteouts: Whiteouts,
    ) -> Result<(ApplyStats, Digest), ImageError> {
        let mut raw = self.content.open(blob)?;
        let layer_err = |source| ImageError::Layer {
            layer: blob.clone(),
            source,
        };
        let read_err = |e: io::Error| ImageError::Layer {
            layer: blob.clone(),
            source: crate::LayerError::Read(e),
        };
        let (stats, digest) = {
            let plain = compression.decoder(&mut raw).map_err(read_err)?;
            let mut hashing = Hashing {
                inner: plain,
                hasher: Hasher::default(),
            };
            let stats = apply_layer_with(dest, &mut hashing, Compression::None, whiteouts)
                .map_err(layer_err)?;
            // The tar's end marker may come before the end of the stream; the
            // diff_id covers all of it.
            io::copy(&mut hashing, &mut io::sink()).map_err(read_err)?;
            (stats, hashing.hasher.finish())
        };
        // The blob is trusted only once its digest is checked at its end.
        io::copy(&mut raw, &mut io::sink()).map_err(read_err)?;
        Ok((stats, digest))
    }

    /// A damaged blob usually shows up first as a bad gzip stream or tar
    /// header; when it does, the digest mismatch is the error worth reporting.
    fn blame_corruption(&self, blob: &Digest, err: ImageError) -> ImageError {
        if let ImageError::Layer { .. } = err
            && let Ok(mut reader) = self.content.open(blob)
            && let Err(e) = io::copy(&mut reader, &mut io::sink())
            && let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<StoreError>())
            && let StoreError::Corrupt { expected, actual } = inner
        {
            return StoreError::Corrupt {
                expected: expected.clone(),
                actual: actual.clone(),
            }
            .into();
        }
        err
    }

    fn manifest(&self, digest: &Digest) -> Result<ImageManifest, ImageError> {
        let bytes = self.content.get(digest)?;
        ImageManifest::from_reader(&bytes[..]).map_err(|e| ImageError::BadBlob {
            what: "manifest",
            digest: digest.clone(),
            reason: e.to_string(),
        })
    }

    fn config(&self, manifest: &ImageManifest) -> Result<ImageConfiguration, ImageError> {
        let digest = descriptor_digest(manifest.config().digest())?;
        let bytes = self.content.get(&digest)?;
        ImageConfiguration::from_reader(&bytes[..]).map_err(|e| ImageError::BadBlob {
            what: "image config",
            digest,
            reason: e.to_string(),
        })
    }

    fn images_dir(&self) -> &Path {
        &self.images
    }

    fn refs_path(&self) -> PathBuf {
        self.images.join("refs.json")
    }

    /// Takes the writers' lock; it is released when the file is dropped (or the
    /// process dies, which is why it is `flock`, not a lock file's existence).
    fn lock(&self) -> Result<File, ImageError> {
        let file = self.open_lock_file("lock")?;
        file.lock()
            .map_err(|e| ImageError::io("lock", self.images.join("lock"), e))?;
        Ok(file)
    }

    fn open_lock_file(&self, name: &str) -> Result<File, ImageError> {
        let path = self.images.join(name);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| ImageError::io("open", &path, e))
    }

    fn read_refs(&self) -> Result<Refs, ImageError> {
        let path = self.refs_path();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| ImageError::Refs { path, source })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Refs::new()),
            Err(e) => Err(ImageError::io("read", &path, e)),
        }
    }

    /// Callers hold the lock, so one temp name per store suffices.
    fn write_refs(&self, refs: &Refs) -> Result<(), ImageError> {
        let path = self.refs_path();
        let temp = self.images.join(".refs.json.tmp");
        let bytes = serde_json::to_vec_pretty(refs).map_err(|source| ImageError::Refs {
            path: path.clone(),
            source,
        })?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&temp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.images)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            ImageError::io("write", &path, e)
        })
    }
}

/// One layer of an image, as unpack and the snapshotter apply it.
#[derive(Debug, Clone)]
pub(crate) struct ImageLayer {
    pub(crate) blob: Digest,
    pub(crate) compression: Compression,
    /// The digest of the uncompressed tar, from the image config.
    pub(crate) diff_id: Digest,
}

/// Held while blobs are put in the store ahead of their tag; see
/// [`ImageStore::ingest_guard`]. Released on drop, or when the process dies.
#[derive(Debug)]
pub struct IngestGuard {
    _file: File,
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn image_size(manifest: &ImageManifest) -> u64 {
    manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>()
}

fn blobs_of(manifest: &ImageManifest) -> Result<Vec<Digest>, ImageError> {
    std::iter::once(manifest.config())
        .chain(manifest.layers())
        .map(|d| descriptor_digest(d.digest()))
        .collect()
}

pub(super) fn descriptor_digest(d: &oci_spec::image::Digest) -> Result<Digest, ImageError> {
    d.to_string().parse().map_err(|e| ImageError::Build {
        what: "descriptor",
        reason: format!("digest {d}: {e}"),
    })
}

pub(crate) fn oci_digest(d: &Digest) -> Result<oci_spec::image::Digest, ImageError> {
    d.as_str().parse().map_err(|e| ImageError::Build {
        what: "descriptor",
        reason: format!("digest {d}: {e:?}"),
    })
}
