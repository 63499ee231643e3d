//! `save` and `load`: images in and out of OCI image layouts (a directory, or
//! a tar of one) and, on load, Docker's `docker save` archives.
//!
//! A saved layout names each image twice, as Docker 25+ does: the
//! `io.containerd.image.name` annotation carries the full reference and
//! `org.opencontainers.image.ref.name` the tag alone (what `skopeo
//! oci:DIR:TAG` and `umoci` look up). A `manifest.json` in Docker's format is
//! written beside `index.json`, so `docker load` reads the archive too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use bosun_oci::{Digest, ImageRef};
use oci_spec::image::{
    Descriptor, ImageIndexBuilder, ImageManifestBuilder, MediaType, SCHEMA_VERSION,
};
use serde_json::Value;

use super::{ImageError, ImageStore, blobs_of, oci_digest};
use crate::Compression;
use crate::manifest::{self, HOST_ARCH, HOST_OS, Manifest, descriptor_digest};

/// The annotation holding a full image reference (containerd, Docker).
pub(super) const NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation, by convention the tag alone in a layout.
pub(super) const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;
/// index.json, manifest.json and friends are small; a bigger one is garbage.
const MAX_METADATA: u64 = 16 << 20;

impl ImageStore {
    /// Writes the named images as an OCI layout: into a new directory, or as
    /// a tar stream.
    pub fn save(&self, names: &[&str], dest: SaveDest<'_>) -> Result<(), ImageError> {
        let images = self.save_plan(names)?;
        match dest {
            SaveDest::Dir(dir) => self.save_dir(&images, dir),
            SaveDest::Stream(out) => self.save_tar(&images, out),
        }
    }

    /// Reads images from an OCI layout directory, or a tar (plain or gzip) of
    /// an OCI layout or a `docker save` archive, and tags them. `fallback`
    /// names an image whose archive carries only a bare tag (or none).
    /// Returns the names loaded.
    pub fn load(
        &self,
        source: LoadSource<'_>,
        fallback: Option<&ImageRef>,
    ) -> Result<Vec<ImageRef>, ImageError> {
        let _guard = self.ingest_guard()?;
        let mut files = Files::default();
        match source {
            LoadSource::Dir(dir) => files.read_dir(self, dir)?,
            LoadSource::Stream(reader) => files.read_tar(self, reader)?,
        }
        let images = if let Some(index) = files.meta.get("index.json") {
            self.images_from_index(index, &files)?
        } else if let Some(manifest) = files.meta.get("manifest.json") {
            self.images_from_docker(manifest, &files)?
        } else {
            return Err(ImageError::BadArchive(
                "neither an OCI layout (index.json) nor a docker archive (manifest.json)".into(),
            ));
        };
        if images.is_empty() {
            return Err(ImageError::BadArchive("the archive holds no image".into()));
        }
        let mut loaded = Vec::new();
        for (name, digest) in images {
            let name = match (name, fallback) {
                (Some(LoadName::Full(r)), _) => r,
                (Some(LoadName::Tag(tag)), Some(f)) => with_tag(f, &tag)?,
                (None, Some(f)) => f.clone(),
                (Some(LoadName::Tag(tag)), None) => {
                    return Err(ImageError::Conflict(format!(
                        "the archive names an image only by the tag {tag:?}; give a name for it"
                    )));
                }
                (None, None) => {
                    return Err(ImageError::Conflict(format!(
                        "the archive's image {digest} has no name; give a name for it"
                    )));
                }
            };
            self.set_tag(&name, &digest)?;
            loaded.push(name);
        }
        Ok(loaded)
    }

    /// (name, manifest digest, manifest bytes) for every named image.
    fn save_plan(&self, names: &[&str]) -> Result<Vec<SavedImage>, ImageError> {
        if names.is_empty() {
            return Err(ImageError::Conflict("save: name at least one image".into()));
        }
        let tags = self.tags()?;
        let mut out = Vec::new();
        for name in names {
            let digest = self.resolve(name)?;
            let reference = match name.parse::<ImageRef>() {
                Ok(r) if r.digest().is_none() && tags.iter().any(|(t, _)| *t == r) => Some(r),
                _ => tags
                    .iter()
                    .find(|(_, d)| *d == digest)
                    .map(|(t, _)| t.clone()),
            };
            let bytes = self.content.get(&digest)?;
            out.push(SavedImage {
                reference,
                manifest: self.manifest(&digest)?,
                digest,
                size: bytes.len() as u64,
            });
        }
        Ok(out)
    }

    fn index_json(&self, images: &[SavedImage]) -> Result<Vec<u8>, ImageError> {
        let mut manifests = Vec::new();
        for image in images {
            let mut d = Descriptor::new(
                MediaType::ImageManifest,
                image.size,
                oci_digest(&image.digest)?,
            );
            if let Some(r) = &image.reference {
                let mut ann = std::collections::HashMap::new();
                ann.insert(NAME_ANNOTATION.to_owned(), r.to_string());
                if let Some(tag) = r.tag() {
                    ann.insert(REF_ANNOTATION.to_owned(), tag.to_owned());
                }
                d.set_annotations(Some(ann));
            }
            manifests.push(d);
        }
        let index = ImageIndexBuilder::default()
            .schema_version(SCHEMA_VERSION)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| ImageError::Build {
                what: "index",
                reason: e.to_string(),
            })?;
        index
            .to_string()
            .map(String::into_bytes)
            .map_err(|e| ImageError::Build {
                what: "index",
                reason: e.to_string(),
            })
    }

    fn docker_manifest_json(&self, images: &[SavedImage]) -> Result<Vec<u8>, ImageError> {
        let entries: Vec<Value> = images
            .iter()
            .map(|image| {
                let config = descriptor_digest(image.manifest.config())?;
                let layers = image
                    .manifest
                    .layers()
                    .iter()
                    .map(|l| descriptor_digest(l).map(|d| blob_path(&d)))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(serde_json::json!({
                    "Config": blob_path(&config),
                    "RepoTags": image.reference.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "Layers": layers,
                }))
            })
            .collect::<Result<_, manifest::ManifestError>>()
            .map_err(manifest_error)?;
        serde_json::to_vec(&entries).map_err(|e| ImageError::Build {
            what: "manifest.json",
            reason: e.to_string(),
        })
    }

    fn save_blobs(&self, images: &[SavedImage]) -> Result<BTreeSet<Digest>, ImageError> {
        let mut blobs = BTreeSet::new();
        for image in images {
            blobs.insert(image.digest.clone());
            blobs.extend(blobs_of(&image.manifest)?);
        }
        Ok(blobs)
    }

    fn save_dir(&self, images: &[SavedImage], dir: &Path) -> Result<(), ImageError> {
        if dir.exists()
            && fs::read_dir(dir)
                .map_err(|e| ImageError::io("read", dir, e))?
                .next()
                .is_some()
        {
            return Err(ImageError::Conflict(format!(
                "{} is not empty; save into a new directory",
                dir.display()
            )));
        }
        let blob_dir = dir.join("blobs/sha256");
        fs::create_dir_all(&blob_dir).map_err(|e| ImageError::io("create", &blob_dir, e))?;
        for digest in self.save_blobs(images)? {
            let path = blob_dir.join(digest.hex());
            let mut src = self.content.open(&digest)?;
            let mut dst = File::create(&path).map_err(|e| ImageError::io("create", &path, e))?;
            io::copy(&mut src, &mut dst).map_err(|e| ImageError::io("write", &path, e))?;
        }
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            fs::write(&path, bytes).map_err(|e| ImageError::io("write", &path, e))
        };
        write("manifest.json", &self.docker_manifest_json(images)?)?;
        write("oci-layout", LAYOUT_FILE.as_bytes())?;
        // Last: a layout is complete once its index exists.
        write("index.json", &self.index_json(images)?)
    }

    fn save_tar(&self, images: &[SavedImage], out: &mut dyn Write) -> Result<(), ImageError> {
        let werr = |e: io::Error| ImageError::io("write", "the output", e);
        let mut tar = tar::Builder::new(out);
        let dir = |name: &str, tar: &mut tar::Builder<&mut dyn Write>| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, name, io::empty())
        };
        dir("blobs/", &mut tar).map_err(werr)?;
        dir("blobs/sha256/", &mut tar).map_err(werr)?;
        let file = |name: &str, bytes: &[u8], tar: &mut tar::Builder<&mut dyn Write>| {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(bytes.len() as u64);
            tar.append_data(&mut h, name, bytes)
        };
        file("oci-layout", LAYOUT_FILE.as_bytes(), &mut tar).map_err(werr)?;
        for digest in self.save_blobs(images)? {
            let size = self.content.size(&digest)?;
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_size(size);
            let src = self.content.open(&digest)?;
            tar.append_data(&mut h, blob_path(&digest), src)
                .map_err(werr)?;
        }
        file("index.json", &self.index_json(images)?, &mut tar).map_err(werr)?;
        file(
            "manifest.json",
            &self.docker_manifest_json(images)?,
            &mut tar,
        )
        .map_err(werr)?;
        tar.into_inner().map_err(werr)?.flush().map_err(werr)
    }

    fn images_from_index(
        &self,
        index: &[u8],
        files: &Files,
    ) -> Result<Vec<(Option<LoadName>, Digest)>, ImageError> {
        let Manifest::Index(index) =
            Manifest::parse(index, Some(manifest::OCI_INDEX)).map_err(manifest_error)?
        else {
            return Err(ImageError::BadArchive(
                "index.json is not an image index".into(),
            ));
        };
        let mut out = Vec::new();
        for d in index.manifests() {
            let name = d.annotations().as_ref().and_then(|a| {
                a.get(NAME_ANNOTATION)
                    .and_then(|n| n.parse().ok().map(LoadName::Full))
                    .or_else(|| a.get(REF_ANNOTATION).map(|r| LoadName::parse(r)))
            });
            let top = descriptor_digest(d).map_err(manifest_error)?;
            files.require(&top)?;
            out.push((name, self.resolve_platform(top)?));
        }
        Ok(out)
    }

    /// Follows an index (nested ones too) down to the linux/amd64 manifest,
    /// checking every blob that image needs arrived.
    fn resolve_platform(&self, mut digest: Digest) -> Result<Digest, ImageError> {
        for _ in 0..8 {
            let bytes = self.content.get(&digest)?;
            match Manifest::parse(&bytes, None).map_err(manifest_error)? {
                Manifest::Image(m) => {
                    for blob in blobs_of(&m)? {
                        if !self.content.exists(&blob)? {
                            return Err(ImageError::NotFound(format!(
                                "blob {blob} of manifest {digest} is not in the archive"
                            )));
                        }
                    }
                    return Ok(digest);
                }
                Manifest::Index(i) => {
                    let d = manifest::select_platform(&i, HOST_OS, HOST_ARCH)
                        .map_err(manifest_error)?;
                    digest = descriptor_digest(d).map_err(manifest_error)?;
                }
            }
        }
        Err(ImageError::BadArchive("indexes nested too deeply".into()))
    }

    /// A `docker save` archive: `manifest.json` lists configs and layer tars by
    /// path; we store them as blobs and write an OCI manifest for each image.
    fn images_from_docker(
        &self,
        manifest_json: &[u8],
        files: &Files,
    ) -> Result<Vec<(Option<LoadName>, Digest)>, ImageError> {
        let bad = |what: &str| ImageError::BadArchive(format!("manifest.json: {what}"));
        let entries: Vec<Value> = serde_json::from_slice(manifest_json)
            .map_err(|e| ImageError::BadArchive(format!("manifest.json: {e}")))?;
        let strings = |v: Option<&Value>| -> Option<Vec<String>> {
            v?.as_array()?
                .iter()
                .map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let mut out = Vec::new();
        for entry in entries {
            let config = entry
                .get("Config")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("an entry has no Config"))?;
            let layer_paths =
                strings(entry.get("Layers")).ok_or_else(|| bad("an entry has no Layers list"))?;
            let tags = strings(entry.get("RepoTags")).unwrap_or_default();
            let (config, config_size) = files.blob_at(config)?;
            let mut layers = Vec::new();
            for path in &layer_paths {
                let (digest, size) = files.blob_at(path)?;
                let media_type = match self.sniff(&digest)? {
                    Compression::Gzip => MediaType::ImageLayerGzip,
                    Compression::Zstd => MediaType::ImageLayerZstd,
                    Compression::None => MediaType::ImageLayer,
                };
                layers.push(Descriptor::new(media_type, size, oci_digest(&digest)?));
            }
            let manifest = ImageManifestBuilder::default()
                .schema_version(SCHEMA_VERSION)
                .media_type(MediaType::ImageManifest)
                .config(Descriptor::new(
                    MediaType::ImageConfig,
                    config_size,
                    oci_digest(&config)?,
                ))
                .layers(layers)
                .build()
                .and_then(|m| m.to_string())
                .map_err(|e| ImageError::Build {
                    what: "manifest",
                    reason: e.to_string(),
                })?;
            let digest = self.content.put(manifest.as_bytes())?;
            if tags.is_empty() {
                out.push((None, digest.clone()));
            }
            for tag in tags {
                let name = tag.parse().map(LoadName::Full).map_err(|e| {
                    ImageError::BadArchive(format!("manifest.json: RepoTags {tag:?}: {e}"))
                })?;
                out.push((Some(name), digest.clone()));
            }
        }
        Ok(out)
    }

    fn sniff(&self, digest: &Digest) -> Result<Compression, ImageError> {
        let mut reader = BufReader::new(self.content.open(digest)?);
        let head = reader
            .fill_buf()
            .map_err(|e| ImageError::io("read", digest.as_str(), e))?;
        Compression::detect(head).map_err(|source| ImageError::Layer {
            layer: digest.clone(),
            source,
        })
    }
}

/// Where `save` writes.
pub enum SaveDest<'a> {
    Dir(&'a Path),
    Stream(&'a mut dyn Write),
}

/// What `load` reads.
pub enum LoadSource<'a> {
    Dir(&'a Path),
    /// A tar, plain or gzip.
    Stream(&'a mut dyn Read),
}

impl std::fmt::Debug for SaveDest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveDest::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            SaveDest::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl std::fmt::Debug for LoadSource<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadSource::Dir(d) => f.debug_tuple("Dir").field(d).finish(),
            LoadSource::Stream(_) => f.write_str("Stream"),
        }
    }
}

struct SavedImage {
    reference: Option<ImageRef>,
    digest: Digest,
    size: u64,
    manifest: oci_spec::image::ImageManifest,
}

enum LoadName {
    Full(ImageRef),
    Tag(String),
}

impl LoadName {
    /// A layout's ref name is a bare tag by convention, but may be a full
    /// reference; anything with a `/` or `:` (or `@`) is taken as one.
    fn parse(s: &str) -> Self {
        if s.contains(['/', ':', '@'])
            && let Ok(r) = s.parse()
        {
            return LoadName::Full(r);
        }
        LoadName::Tag(s.to_owned())
    }
}

fn with_tag(base: &ImageRef, tag: &str) -> Result<ImageRef, ImageError> {
    format!("{}:{tag}", base.name())
        .parse()
        .map_err(|e| ImageError::Conflict(format!("tag {tag:?} from the archive: {e}")))
}

/// What an archive held: blobs went straight into the store; small metadata
/// files are kept in memory; other files (docker-archive layers and configs)
/// are stored too and remembered by path.
#[derive(Default)]
struct Files {
    meta: BTreeMap<String, Vec<u8>>,
    by_path: BTreeMap<String, (Digest, u64)>,
    blobs: BTreeSet<Digest>,
}

impl Files {
    fn add(
        &mut self,
        store: &ImageStore,
        path: &str,
        reader: &mut dyn Read,
    ) -> Result<(), ImageError> {
        let path = normalise(path)?;
        if matches!(
            path.as_str(),
            "index.json" | "manifest.json" | "oci-layout" | "repositories"
        ) {
            let mut bytes = Vec::new();
            reader
                .take(MAX_METADATA + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| ImageError::BadArchive(format!("{path}: {e}")))?;
            if bytes.len() as u64 > MAX_METADATA {
                return Err(ImageError::BadArchive(format!(
                    "{path} is larger than {MAX_METADATA} bytes"
                )));
            }
            self.meta.insert(path, bytes);
            return Ok(());
        }
        let expected = path
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .map(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>())
            .transpose()
            .map_err(|e| ImageError::BadArchive(format!("{path}: {e}")))?;
        let (digest, size) =
            store
                .content
                .ingest(reader, expected.as_ref())
                .map_err(|e| match e {
                    crate::StoreError::DigestMismatch { .. } => {
                        ImageError::BadArchive(format!("{path}: {e}"))
                    }
                    e => e.into(),
                })?;
        self.blobs.insert(digest.clone());
        self.by_path.insert(path, (digest, size));
        Ok(())
    }

    fn read_tar(&mut self, store: &ImageStore, reader: &mut dyn Read) -> Result<(), ImageError> {
        let mut input = BufReader::new(reader);
        let head = input
            .fill_buf()
            .map_err(|e| ImageError::BadArchive(e.to_string()))?;
        let plain = Compression::detect(head)
            .map_err(ImageError::Import)?
            .decoder(input)
            .map_err(|e| ImageError::BadArchive(e.to_string()))?;
        let bad = |e: io::Error| ImageError::BadArchive(e.to_string());
        let mut archive = tar::Archive::new(plain);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
            self.add(store, &path, &mut entry)?;
        }
        Ok(())
    }

    fn read_dir(&mut self, store: &ImageStore, dir: &Path) -> Result<(), ImageError> {
        let walk = |rel: &Path| -> Result<Vec<PathBuf>, ImageError> {
            let full = dir.join(rel);
            let mut out = Vec::new();
            for entry in fs::read_dir(&full).map_err(|e| ImageError::io("read", &full, e))? {
                let entry = entry.map_err(|e| ImageError::io("read", &full, e))?;
                out.push(rel.join(entry.file_name()));
            }
            Ok(out)
        };
        let mut pending = walk(Path::new(""))?;
        while let Some(rel) = pending.pop() {
            let full = dir.join(&rel);
            let meta = fs::symlink_metadata(&full).map_err(|e| ImageError::io("stat", &full, e))?;
            if meta.is_dir() {
                pending.extend(walk(&rel)?);
            } else if meta.is_file() {
                let mut f = File::open(&full).map_err(|e| ImageError::io("open", &full, e))?;
                self.add(store, &rel.to_string_lossy(), &mut f)?;
            }
        }
        Ok(())
    }

    fn blob_at(&self, path: &str) -> Result<(Digest, u64), ImageError> {
        let key = normalise(path)?;
        self.by_path.get(&key).cloned().ok_or_else(|| {
            ImageError::BadArchive(format!(
                "manifest.json names {path:?}, which is not in the archive"
            ))
        })
    }

    fn require(&self, digest: &Digest) -> Result<(), ImageError> {
        if self.blobs.contains(digest) {
            Ok(())
        } else {
            Err(ImageError::BadArchive(format!(
                "index.json names {digest}, which is not in the archive"
            )))
        }
    }
}

/// `./a/b` and `a/b` are the same member; `..` and absolute paths are not allowed.
fn normalise(path: &str) -> Result<String, ImageError> {
    let mut parts = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            _ => {
                return Err(ImageError::BadArchive(format!(
                    "archive member {path:?} leaves the archive"
                )));
            }
        }
    }
    Ok(parts.join("/"))
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn manifest_error(e: manifest::ManifestError) -> ImageError {
    ImageError::BadArchive(e.to_string())
}
