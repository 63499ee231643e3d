//! `import`: a root file system tarball becomes a one-layer OCI image.

use std::io::{self, BufRead, BufReader, Read, Write};

use bosun_oci::{Digest, ImageRef};
use flate2::write::GzEncoder;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use super::{ImageError, ImageStore, oci_digest};
use crate::Compression;
use crate::hash::Hasher;

/// Docker's default for images that set none; without it `sh -c` finds nothing.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ImageStore {
    /// Imports a root file system tarball (plain or gzip; `None` detects it) as a
    /// one-layer image tagged `name`, and returns the manifest digest.
    ///
    /// The layer is recompressed with gzip while streaming into the content
    /// store, and the tar headers are read on the way, so garbage is refused
    /// before anything is stored. Entries are not vetted here: `unpack` applies the safety rules.
    pub fn import(
        &self,
        reader: impl Read,
        compression: Option<Compression>,
        name: &ImageRef,
    ) -> Result<Digest, ImageError> {
        tag_name(name)?;
        let mut input = BufReader::new(reader);
        let compression = match compression {
            Some(c) => c,
            None => {
                let head = input
                    .fill_buf()
                    .map_err(|e| ImageError::NotATar(e.to_string()))?;
                Compression::detect(head).map_err(ImageError::Import)?
            }
        };
        let plain = compression
            .decoder(input)
            .map_err(|e| ImageError::NotATar(e.to_string()))?;

        let _guard = self.ingest_guard()?;
        let blob = self.content.writer()?;
        let encoder = GzEncoder::new(blob, flate2::Compression::default());
        let mut tee = Tee {
            inner: plain,
            hasher: Hasher::default(),
            sink: encoder,
        };
        check_tar(&mut tee)?;
        let diff_id = tee.hasher.finish();
        let blob = tee
            .sink
            .finish()
            .map_err(|e| ImageError::io("write", self.images_dir(), e))?;
        let (layer, layer_size) = blob.commit(None)?;

        let now = super::time::now_rfc3339();
        let build = |what| {
            move |e: oci_spec::OciSpecError| ImageError::Build {
                what,
                reason: e.to_string(),
            }
        };
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .created(now.clone())
            .config(
                ConfigBuilder::default()
                    .env(vec![DEFAULT_PATH.to_owned()])
                    .build()
                    .map_err(build("config"))?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.to_string()])
                    .build()
                    .map_err(build("config"))?,
            )
            .history(vec![
                HistoryBuilder::default()
                    .created(now)
                    .created_by("bosun image import")
                    .comment("imported from tarball")
                    .build()
                    .map_err(build("config"))?,
            ])
            .build()
            .map_err(build("config"))?;
        let config_bytes = config.to_string().map_err(build("config"))?.into_bytes();
        let config_digest = self.content.put(&config_bytes)?;

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes.len() as u64,
                oci_digest(&config_digest)?,
            ))
            .layers(vec![Descriptor::new(
                MediaType::ImageLayerGzip,
                layer_size,
                oci_digest(&layer)?,
            )])
            .build()
            .map_err(build("manifest"))?;
        let manifest_bytes = manifest
            .to_string()
            .map_err(build("manifest"))?
            .into_bytes();
        let manifest_digest = self.content.put(&manifest_bytes)?;

        // Checks, under the lock, that every blob is still there.
        self.set_tag(name, &manifest_digest)?;
        Ok(manifest_digest)
    }
}

/// The string a tag is stored under; a reference must name a tag, not a digest.
pub(crate) fn tag_name(name: &ImageRef) -> Result<String, ImageError> {
    if name.digest().is_some() || name.tag().is_none() {
        return Err(ImageError::Conflict(format!(
            "{name}: a tag name cannot carry a digest"
        )));
    }
    Ok(name.to_string())
}

/// Reads every tar header (and the bytes after the end-of-archive marker), so
/// the whole stream passes through the tee's hash and encoder.
fn check_tar<R: Read>(tee: &mut R) -> Result<(), ImageError> {
    let bad = |e: io::Error| ImageError::NotATar(e.to_string());
    let mut entries = 0usize;
    {
        let mut archive = tar::Archive::new(&mut *tee);
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            entry.path().map_err(bad)?;
            io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
            entries += 1;
        }
    }
    io::copy(tee, &mut io::sink()).map_err(bad)?;
    if entries == 0 {
        return Err(ImageError::NotATar("no entries".to_owned()));
    }
    Ok(())
}

/// Passes what it reads through a hasher and into a writer.
struct Tee<R, W> {
    inner: R,
    hasher: Hasher,
    sink: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.sink.write_all(&buf[..n])?;
        Ok(n)
    }
}
